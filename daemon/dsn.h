/*
 * dsn: delivery status notifications for permanent failures (RFC 3464,
 * docs/relay.md).
 *
 * When every recipient of a message is done and some failed, the
 * scheduler asks for one notice: a multipart/report message (a human
 * explanation, a message/delivery-status part with one block per failed
 * recipient, and the original header section as text/rfc822-headers),
 * queued like any other message with the null sender <> and QUEUE_F_DSN,
 * so it is relayed upstream with the same guarantees.
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

#include "queue.h"

struct cfg;

/* Where the notice for m goes; NULL: none is ever sent. */
const char *dsn_recipient(const struct cfg *cfg, const struct queue_msg *m);

/* True when m has a failed recipient and a notice is due. */
bool dsn_wanted(const struct cfg *cfg, const struct queue_msg *m);

/*
 * Writes and commits the notice for m's failed recipients, sent to `to`;
 * *dsnp gets the new message as loaded from the spool (the caller owns it).
 */
int dsn_queue(struct queue *q, const struct cfg *cfg,
    const struct queue_msg *m, const char *to, struct queue_msg **dsnp);

#endif
