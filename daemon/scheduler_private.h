/*
 * scheduler_private.h: the scheduler's state, shared by scheduler.c and
 * sched_heap.c and by nobody else (the rest of the daemon sees only the
 * opaque struct sched of scheduler.h).
 */
#ifndef SMARTRELAY_SCHEDULER_PRIVATE_H
#define SMARTRELAY_SCHEDULER_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include <openssl/ssl.h>

#include "queue.h"
#include "relay.h"
#include "scheduler.h"

enum sched_where {
	SM_DUE,
	SM_WAITING,
	SM_INFLIGHT,
	SM_REMOVING,		/* done: record unlinked, waiting for the
				   directory fsync (scheduler.c, "removal") */
};

struct committer;
struct sched_delivery;

struct sched_msg {
	struct queue_msg *m;		/* owned; NULL until the record of a
					   message recovered at start is read */
	struct queue_stub st;		/* id, arrival, and how to load m */
	size_t lazy_idx;		/* slot in s->lazy, or SIZE_MAX */
	enum sched_where where;
	uint64_t due_ms;		/* SM_WAITING: when it is due */
	size_t heap_idx;		/* SM_WAITING: index in s->heap */
	uint64_t sync_gen;		/* SM_REMOVING: the directory sync
					   that covers its unlink */
	struct sched_delivery *dlv;	/* owned, NULL: SM_REMOVING after
					   sched_done_fast(), the deliveries
					   to log once the removal is durable */
	/* SM_DUE: in s->due; SM_INFLIGHT: in its conn's inflight;
	 * SM_REMOVING: in s->removing */
	TAILQ_ENTRY(sched_msg) entry;
};

TAILQ_HEAD(sched_msg_list, sched_msg);

struct sched_conn {
	uint64_t id;			/* the relay session's id */
	unsigned sent;			/* messages handed to it */
	unsigned gen;			/* s->gen when it was opened */
	/* Borrowed: handed to the session, in that order (its done()s
	 * come in the same order). */
	struct sched_msg_list inflight;
	unsigned ninflight;
	bool ready;			/* it takes a message (relay_ops.ready
					   came, no relay_send() refused since) */
	bool quitting;
	struct event *idle;		/* owned: QUIT after the idle hold */
	struct sched *s;		/* borrowed */
	TAILQ_ENTRY(sched_conn) entry;
};

struct sched {
	struct event_base *base;	/* borrowed */
	const struct cfg *cfg;		/* borrowed */
	struct queue *queue;		/* borrowed */
	struct committer *committer;	/* borrowed, NULL: removals fsync
					   msg/ in the loop */
	struct evdns_base *dns;		/* owned */
	SSL_CTX *ssl_ctx;		/* owned, NULL until a handshake */
	struct token *token;		/* owned: OAuth access tokens */
	char *ca_file;			/* owned: what ssl_ctx trusts (NULL:
					 * the system store) */
	bool tls_broken;		/* ca_file did not load: nothing
					 * expires until it does */
	struct relay_ops ops;
	struct relay_env env;
	TAILQ_HEAD(, sched_msg) due;	/* owned entries */
	size_t ndue;
	struct sched_msg **heap;	/* owned array of owned entries */
	size_t nheap, heapcap;
	size_t ninflight;
	TAILQ_HEAD(, sched_msg) removing; /* owned entries, by sync_gen */
	size_t nremoving;
	uint64_t sync_gen;		/* the next directory sync's number */
	bool syncing;			/* one is with the committer */
	TAILQ_HEAD(, sched_conn) conns;	/* owned */
	unsigned nconns;
	uint64_t next_id;
	struct event *timer;		/* owned: the heap's top is due */
	struct event *kick;		/* owned: run sched_run() soon */
	struct event *loader;		/* owned: reads recovered records */
	struct sched_msg **lazy;	/* owned array of borrowed entries
					   whose record is not read yet (NULL
					   slots: read or forgotten since) */
	size_t nlazy, lazy_next, lazycap;
	size_t nread, ncorrupt;		/* recovered records read, moved */
	enum sched_upstream state;
	unsigned failures;		/* upstream failures in a row */
	unsigned gen;			/* bumped at each upstream failure */
	uint64_t retry_ms;		/* next probe when not ok */
	char reply[RELAY_REPLY_MAX];	/* last upstream problem */
	/* What to do about it (static table), NULL: no advice. */
	const struct smtpproto_advice *advice;
	time_t last_delivery;
	uint64_t full_ms;		/* spool full: nothing goes upstream
					 * before this time */
	bool stopping;
	void (*stopped)(void *);		/* after sched_stop(): none left */
	void *stopped_arg;
};

/*
 * sched_heap.c: the messages waiting for their next attempt, a binary
 * min-heap on due_ms in s->heap.  Push sets e->heap_idx; remove takes e
 * out from wherever it is.
 */
int sched_heap_push(struct sched *s, struct sched_msg *e);
void sched_heap_remove(struct sched *s, struct sched_msg *e);

/* ---- scheduler.c, for sched_removal.c ---- */

/* Frees an entry and its message; accepts NULL. */
void sched_msg_free(struct sched *s, struct sched_msg *e);
/* Logs one delivery. */
void sched_log_delivered(struct sched *s, const struct queue_msg *m,
    const struct relay_rcpt_result *rr, const struct relay_result *res);
/* Records one recipient's final outcome from a transaction. */
void sched_record_rcpt(struct sched *s, struct queue_msg *m,
    const struct relay_rcpt_result *rr, const struct relay_result *res);
/* After sched_stop(): tells each time nothing is left (sched_drained). */
void sched_check_stopped(struct sched *s);

/*
 * sched_removal.c: removing a message that is done.  sched_unlink() takes
 * e (SM_REMOVING until the fsync of msg/ is done) unless a negative errno
 * comes back; sched_delivery_new() copies a relay result for the log
 * lines written then (NULL: out of memory).
 */
int sched_unlink(struct sched *s, struct sched_msg *e);
struct sched_delivery *sched_delivery_new(const struct relay_result *res);
/* At teardown: completes the removals still waiting, in the loop. */
void sched_removals_finish(struct sched *s);

#endif
