/*
 * scheduler: the scheduler between the queue and the upstream (docs/spool.md,
 * §6).  Its prefix is sched_; the file is not "sched.h", which would
 * shadow the system header that pthread.h includes.
 *
 * It holds every queued message in memory (struct queue_msg, owned), each
 * either due (waiting for a session), waiting for its next attempt (a heap
 * ordered by time, one libevent timer for its top), or in flight in a
 * relay session.  It opens at most upstream.connections sessions, feeds
 * each up to upstream.messages_per_connection messages, quits idle
 * sessions after a short hold, and records every outcome durably in the
 * spool (queue_set_rcpt, queue_set_schedule) before it acts on it.
 *
 * The upstream has a state: ok, retrying (connection, TLS or protocol
 * failures), paused for credentials (AUTH rejected) or paused for quota
 * (550 5.4.5).  While it is not ok, one session at a time probes it when
 * the backoff is over, and the due messages wait for that probe in memory:
 * an upstream failure is recorded nowhere per message (with 100,000 queued
 * messages, a journal write each would block the loop at every probe).
 * Nothing bounces for a pause.  Messages retry with
 * exponential backoff (retry.initial doubling up to retry.max, +-10%
 * jitter) and fail for good after retry.give_up_after, which produces one
 * delivery status notification (dsn.c) unless the sender is <>.
 *
 * Only this module logs delivery outcomes (delivered, deferred, bounced,
 * expired) and upstream state changes.
 */
#ifndef SMARTRELAY_SCHED_H
#define SMARTRELAY_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "relay.h"

struct cfg;
struct cfg_retry;
struct event_base;
struct queue;
struct queue_msg;
struct queue_stub;
struct sched;
struct smtpproto_advice;
struct token;

enum sched_upstream {
	SCHED_UP_OK,
	SCHED_UP_RETRYING,
	SCHED_UP_PAUSED_CREDENTIALS,
	SCHED_UP_PAUSED_QUOTA,
};

struct sched_status {
	enum sched_upstream state;
	const char *reply;		/* borrowed: last upstream problem */
	/* What to do about it (static table), NULL: no advice. */
	const struct smtpproto_advice *advice;
	time_t retry_at;		/* next probe when not ok */
	size_t messages;		/* in the queue */
	time_t oldest;			/* arrival of the oldest, 0: none */
	time_t last_delivery;		/* 0: none since start */
	unsigned sessions;		/* open upstream sessions */
};

/*
 * Makes the scheduler and the resolver, and checks upstream.ca_file (the
 * TLS context itself is made for the first TLS handshake).  Messages may be
 * added at once (recovery); delivery starts when the loop runs.
 */
int sched_new(struct event_base *base, const struct cfg *cfg,
    struct queue *q, struct sched **sp, char **err);
/*
 * Frees everything, sessions included (no callbacks, nothing logged but
 * the removals it completes: a stop that ran out of time left them).
 */
void sched_free(struct sched *s);
/*
 * Removals (their directory fsyncs) go to c's worker threads from now on
 * (commit_sync_dir()); without, or after sched_set_committer(s, NULL),
 * they run in the loop.  c must outlive s or be unset first.
 */
struct committer;
void sched_set_committer(struct sched *s, struct committer *c);

/* Takes ownership of a queued message (new or recovered). */
void sched_add(struct sched *s, struct queue_msg *m);
/*
 * Queues a message recovered at start from what queue_scan() knows (id,
 * schedule) without its record, which the scheduler reads later: a loader
 * event reads the records in the background once the loop runs, and a
 * session reads one first when it needs it.  -ENOMEM: not queued.
 */
int sched_add_stub(struct sched *s, const struct queue_stub *st);
/*
 * Retry now: the message with this id, or all when id is NULL; lifts a
 * pause.  Returns how many messages were due, or -ENOENT.
 */
int sched_flush(struct sched *s, const char *id);
/*
 * Forgets a message (smartrelay delete: the caller then removes the spool
 * record with queue_remove()).  -EBUSY while it is in flight (an upstream
 * transaction is using it: try again), -ENOENT when unknown.
 */
int sched_remove(struct sched *s, const char *id);
/*
 * Graceful stop: no new sessions or transactions; idle sessions QUIT,
 * busy ones finish their message first.  stopped(arg) is called when the
 * last session has ended and no removal waits for its fsync any more
 * (sched_drained(); at once when nothing is left, perhaps more than once).
 */
void sched_stop(struct sched *s, void (*stopped)(void *), void *arg);
/* Open sessions (0 once a stop has completed). */
unsigned sched_sessions(const struct sched *s);
/* No open session and no removal waiting for its directory fsync. */
bool sched_drained(const struct sched *s);
/* Messages in the queue. */
size_t sched_count(const struct sched *s);
/*
 * Calls fn for every queued message (for the queue listing): m is NULL for
 * a message recovered at start whose record is not read yet (then only the
 * stub is known); inflight is true while a relay session sends it.
 */
typedef void sched_visit_fn(void *arg, const struct queue_msg *m,
    const struct queue_stub *st, bool inflight);
void sched_foreach(const struct sched *s, sched_visit_fn *fn, void *arg);
/*
 * A new configuration after a reload; cfg is used from now on in any case
 * (the old one may be freed).  The TLS settings are checked and the TLS
 * context, if one was made, is rebuilt: on an error (bad ca_file) the
 * previous settings stay and *err says why.
 */
int sched_set_cfg(struct sched *s, const struct cfg *cfg, char **err);
/* The OAuth token manager (for `smartrelay status`). */
const struct token *sched_token(const struct sched *s);

void sched_status(const struct sched *s, struct sched_status *st);
/* "ok", "retrying", "paused-credentials", "paused-quota". */
const char *sched_strupstream(enum sched_upstream st);

/*
 * The delay before attempt number attempt + 1, in milliseconds:
 * retry.initial * 2^(attempt - 1), at most retry.max, times a jitter factor
 * in [0.9, 1.1] taken from rnd (0..UINT32_MAX).  Exposed for the tests.
 */
uint64_t sched_backoff_ms(const struct cfg_retry *r, unsigned attempt,
    uint32_t rnd);

#endif
