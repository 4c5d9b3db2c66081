/*
 * dsn: delivery status notifications (RFC 3464, docs/relay.md).
 *
 * A notice is a multipart/report message (a human explanation, a
 * message/delivery-status part with one block per recipient it reports,
 * and the original message or its header section), queued like any other
 * message with the null sender <> and QUEUE_F_DSN, so it is relayed
 * upstream with the same guarantees.  Two kinds:
 *
 *   DSN_FINAL    when every recipient of a message is done: its failed
 *                recipients (Action: failed) unless they asked
 *                NOTIFY=NEVER or a NOTIFY without FAILURE, and those
 *                delivered to an upstream without DSN that asked
 *                NOTIFY=SUCCESS (Action: relayed, RFC 3461 §6.2.1).
 *   DSN_DELAYED  once per message, when it is still queued
 *                bounces.delay_warning after its arrival: its pending
 *                recipients that asked NOTIFY=DELAY or gave no NOTIFY
 *                (Action: delayed).
 *
 * The per-message and per-recipient fields carry the client's ENVID
 * (Original-Envelope-Id) and ORCPT (Original-Recipient), decoded from
 * xtext.  RET=FULL returns the whole original in a failure notice
 * (message/rfc822, up to DSN_FULL_MAX bytes); otherwise, and in every
 * other notice, only its header section (text/rfc822-headers).
 *
 * Who gets it: the envelope sender, or bounces.to when the sender is a
 * local address (its domain is rewrite.local_domain or our host name),
 * falling back to rewrite.envelope_from (the account the mail went out
 * as).  Never anyone for a message whose sender is <> or which is itself a
 * notice, so notices never loop.
 *
 * Error convention: 0 or a negative errno; nothing here logs.
 */
#ifndef SMARTRELAY_DSN_H
#define SMARTRELAY_DSN_H

#include <stdbool.h>
#include <time.h>

#include "queue.h"

struct cfg;

/* Where the notice for m goes; NULL: none is ever sent. */
const char *dsn_recipient(const struct cfg *cfg, const struct queue_msg *m);

enum dsn_kind {
	DSN_FINAL,
	DSN_DELAYED,
};

/* The largest original a RET=FULL failure notice returns whole. */
#define DSN_FULL_MAX		(1u << 20)

/* True when m, done, has a recipient a DSN_FINAL notice reports. */
bool dsn_wanted(const struct cfg *cfg, const struct queue_msg *m);

/*
 * True when the DSN_DELAYED notice for m is due at now: bounces.
 * delay_warning is set and has passed since the arrival, none was queued
 * yet, and a pending recipient wants it.
 */
bool dsn_delay_wanted(const struct cfg *cfg, const struct queue_msg *m,
    time_t now);

/*
 * Writes and commits the notice of this kind for m, sent to `to`; *dsnp
 * gets the new message as loaded from the spool (the caller owns it).
 */
int dsn_queue(struct queue *q, const struct cfg *cfg,
    const struct queue_msg *m, const char *to, enum dsn_kind kind,
    struct queue_msg **dsnp);

#endif
