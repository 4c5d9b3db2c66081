/*
 * scheduler: the scheduler (prefix sched_).  See scheduler.h.
 *
 * Where a message is: SM_DUE (in s->due, FIFO, waiting for a session),
 * SM_WAITING (in the heap, until due_ms), SM_INFLIGHT (handed to the
 * session conn->id, in its conn's inflight list: several when the session
 * pipelines them, docs/relay.md), SM_REMOVING (done, record unlinked,
 * waiting for the fsync of msg/: sched_removal.c).  Every change of the
 * spool state happens here, right after the relay reported the reply that
 * caused it, so a crash re-sends at most what was in flight (docs/spool.md).
 *
 * Sessions are opened from sched_run(), which a zero-delay "kick" event
 * runs: never inside a relay callback or an inbound session's stack.  A
 * session reports back through relay_ops with its id; struct sched_conn is
 * found by that id, and dropped when the session says it closed.
 */
#include "scheduler.h"
#include "scheduler_private.h"
#include "token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "cfg.h"
#include "dsn.h"
#include "log.h"
#include "queue.h"
#include "reply.h"
#include "smtpproto.h"
#include "tls.h"
#include "upstream.h"

#define SCHED_IDLE_HOLD_MS	5000	/* idle session, then QUIT */
#define SCHED_DSN_RETRY_MS	60000	/* a notice could not be queued */
#define SCHED_READ_RETRY_MS	60000	/* a record could not be read */
#define SCHED_LOAD_BATCH	64	/* records read per loader event */
#define SCHED_LOAD_BUDGET_US	2000	/* ... or this long, at most */
#define SCHED_FULL_RETRY_MS	5000	/* no room to record an outcome */
#define SCHED_FIX_MAX		2100	/* " fix=\"...\"" quoted for a log line */

static void sched_kick(struct sched *);
static void sched_finish(struct sched *, struct sched_msg *);
static void sched_delay_check(struct sched *, struct queue_msg *,
    const struct relay_result *);
static void sched_loader_cb(evutil_socket_t, short, void *);
static void sched_enqueue(struct sched *, struct sched_msg *, time_t);

const char *
sched_strupstream(enum sched_upstream st)
{
	switch (st) {
	case SCHED_UP_OK:
		return "ok";
	case SCHED_UP_RETRYING:
		return "retrying";
	case SCHED_UP_PAUSED_CREDENTIALS:
		return "paused-credentials";
	case SCHED_UP_PAUSED_QUOTA:
		return "paused-quota";
	}
	return "?";
}

/* Monotonic microseconds, for time budgets. */
static uint64_t
sched_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Wall-clock milliseconds (the spool stores wall-clock times). */
static uint64_t
sched_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* "2026-11-27T10:01:00Z" for ms since the epoch. */
static const char *
sched_fmt_time(uint64_t ms, char *buf, size_t sz)
{
	time_t t = (time_t)((ms + 999) / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

uint64_t
sched_backoff_ms(const struct cfg_retry *r, unsigned attempt, uint32_t rnd)
{
	uint64_t base = (uint64_t)r->initial * 1000;
	uint64_t max = (uint64_t)r->max * 1000;
	unsigned i;

	for (i = 1; i < attempt && base < max; i++)
		base *= 2;
	if (base > max)
		base = max;
	/* +-10% jitter, so that retries of many messages spread out. */
	base = base * (900 + (uint64_t)rnd * 200 / UINT32_MAX) / 1000;
	return base > 0 ? base : 1;
}

/* A random number for the jitter. */
static uint32_t
sched_random(void)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint32_t)random();
	return r;
}

/* Arms the timer for the heap's top (or the next probe). */
static void
sched_arm(struct sched *s)
{
	uint64_t now = sched_now_ms(), when;
	struct timeval tv;

	if (s->stopping || (s->nheap == 0 && s->ndue == 0)) {
		evtimer_del(s->timer);
		return;
	}
	when = s->nheap > 0 ? s->heap[0]->due_ms : UINT64_MAX;
	/* Due messages wait for the next probe of a failing upstream. */
	if (s->ndue > 0 && s->state != SCHED_UP_OK && s->retry_ms < when)
		when = s->retry_ms;
	if (s->ndue > 0 && s->full_ms > now && s->full_ms < when)
		when = s->full_ms;
	if (when == UINT64_MAX) {
		evtimer_del(s->timer);
		return;
	}
	when = when > now ? when - now : 0;
	tv.tv_sec = (time_t)(when / 1000);
	tv.tv_usec = (suseconds_t)(when % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

/* ---- where a message is ---- */

/* Takes e out of the due list or the heap (not in flight). */
static void
sched_detach(struct sched *s, struct sched_msg *e)
{
	if (e->where == SM_DUE) {
		TAILQ_REMOVE(&s->due, e, entry);
		s->ndue--;
	} else if (e->where == SM_WAITING)
		sched_heap_remove(s, e);
	else
		s->ninflight--;
}

/* Appends e to the due list. */
static void
sched_make_due(struct sched *s, struct sched_msg *e)
{
	e->where = SM_DUE;
	TAILQ_INSERT_TAIL(&s->due, e, entry);
	s->ndue++;
}

/* Puts e back at the head of the due list (a session did not take it). */
static void
sched_make_due_first(struct sched *s, struct sched_msg *e)
{
	e->where = SM_DUE;
	TAILQ_INSERT_HEAD(&s->due, e, entry);
	s->ndue++;
}

/* Puts e in the heap until when; due at once if memory runs out. */
static void
sched_make_waiting(struct sched *s, struct sched_msg *e, uint64_t when)
{
	e->where = SM_WAITING;
	e->due_ms = when;
	if (sched_heap_push(s, e) < 0)
		sched_make_due(s, e);
}

/* Takes e out of the loader's list (its record is read or it goes). */
static void
sched_lazy_drop(struct sched *s, struct sched_msg *e)
{
	if (e->lazy_idx == SIZE_MAX)
		return;
	s->lazy[e->lazy_idx] = NULL;
	e->lazy_idx = SIZE_MAX;
}

/* Frees an entry and its message; accepts NULL. */
void
sched_msg_free(struct sched *s, struct sched_msg *e)
{
	if (e == NULL)
		return;
	sched_lazy_drop(s, e);
	queue_msg_free(e->m);
	free(e->dlv);
	free(e);
}

/*
 * Reads the record of a message recovered at start (docs/spool.md,
 * "Recovery"), if not done yet.  0: e->m is set; when e is attached (in
 * the due list or the heap) and its journal gives another schedule than
 * the hint it was queued with, it has moved to that place (the journal is
 * authoritative).  Otherwise e is no longer where it was: forgotten
 * (record gone, or unreadable and moved to corrupt/), or, on a read error,
 * waiting to be tried again.
 */
static int
sched_load(struct sched *s, struct sched_msg *e, bool attached)
{
	struct queue_msg *m;
	int r;

	if (e->m != NULL)
		return 0;
	sched_lazy_drop(s, e);
	if ((r = queue_load_stub(s->queue, &e->st, &m)) == 0) {
		e->m = m;
		s->nread++;
		if (attached && m->next_attempt != e->st.next_attempt) {
			sched_detach(s, e);
			sched_enqueue(s, e, m->next_attempt);
		}
		return 0;
	}
	if (attached)
		sched_detach(s, e);
	if (r == -ENOENT || r == -EBADMSG) {
		if (r == -EBADMSG)
			s->ncorrupt++;
		log_msg(LOG_WARNING, e->st.id, "%s", r == -ENOENT ?
		    "record gone from the spool, forgotten" :
		    "record unreadable, moved to corrupt/");
		sched_msg_free(s, e);
		return r;
	}
	log_msg(LOG_ERR, e->st.id, "spool error=\"%s\"", strerror(-r));
	sched_make_waiting(s, e, sched_now_ms() + SCHED_READ_RETRY_MS);
	return r;
}

/* ---- outcomes ---- */

/* Reply of recipient i in res, or NULL when it was not in it. */
static const char *
sched_rcpt_reply(const struct relay_result *res, size_t i)
{
	size_t k;

	for (k = 0; res != NULL && k < res->nrcpt; k++)
		if (res->rcpt[k].index == i)
			return res->rcpt[k].reply;
	return NULL;
}

/*
 * " fix=\"...\"": the advice table's fix for an upstream reply or a
 * failure (common/smtpproto_advice.c), with this configuration's names, to
 * end a log line; "" when the table has none.
 */
static const char *
sched_fix(const struct sched *s, const struct smtpproto_advice *a,
    char *buf, size_t sz)
{
	struct smtpproto_advice_vars v;
	char fix[1024], q[SCHED_FIX_MAX - 8];

	if (a == NULL)
		return "";
	smtpproto_advice_vars_cfg(s->cfg, &v);
	snprintf(buf, sz, " fix=\"%s\"", log_quote(q, sizeof(q),
	    smtpproto_advice_format(a, &v, fix, sizeof(fix))));
	return buf;
}

/* Fails every pending recipient: the message is too old. */
static void
sched_give_up(struct sched *s, struct sched_msg *e, const char *reason)
{
	struct queue_msg *m;
	char why[QUEUE_MAX_REPLY], q[RELAY_REPLY_MAX + 16], ta[LOG_ADDR_MAX];
	size_t i;
	int r;

	if (sched_load(s, e, false) < 0)
		return;
	m = e->m;
	snprintf(why, sizeof(why), "554 5.4.7 delivery time expired after "
	    "%us; last error: %s", s->cfg->retry.give_up_after, reason);
	for (i = 0; i < m->nrcpt; i++) {
		if (m->rcpt[i].state != QUEUE_RCPT_PENDING)
			continue;
		if ((r = queue_set_rcpt(s->queue, m, i, QUEUE_RCPT_FAILED,
		    why)) < 0)
			log_msg(LOG_ERR, m->id, "spool error=\"%s\"",
			    strerror(-r));
		m->rcpt[i].state = QUEUE_RCPT_FAILED;
		log_msg(LOG_NOTICE, m->id, "expired to=%s attempts=%u "
		    "reason=\"%s\"", log_addr(ta, sizeof(ta), m->rcpt[i].addr),
		    m->attempts,
		    log_quote(q, sizeof(q), reason));
	}
	sched_finish(s, e);
}

/* When e fails for good: retry.give_up_after after its arrival. */
static uint64_t
sched_deadline_ms(const struct sched *s, const struct sched_msg *e)
{
	return ((uint64_t)e->st.arrival + s->cfg->retry.give_up_after) * 1000;
}

/*
 * The message's last deferral reason (mailq shows it): what a pending
 * recipient was told (e.g. "450 4.2.1" to RCPT, rather than the "503 RCPT
 * first" that a pipelined DATA then got), else the transaction's reply.
 */
static const char *
sched_defer_reason(const struct queue_msg *m, const struct relay_result *res,
    const char *reason)
{
	const char *why;
	size_t i;

	for (i = 0; res != NULL && i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_PENDING &&
		    (why = sched_rcpt_reply(res, i)) != NULL && *why != '\0')
			return why;
	return reason;
}

/*
 * Defers e after a transaction that tried it: one more attempt counted,
 * the next one after the backoff, recorded in the spool; or gives up when
 * the message is older than retry.give_up_after.
 */
static void
sched_defer(struct sched *s, struct sched_msg *e, const char *reason,
    const struct relay_result *res)
{
	struct queue_msg *m = e->m;
	uint64_t now = sched_now_ms(), deadline = sched_deadline_ms(s, e), when;
	unsigned attempts = m->attempts + 1;
	char nb[32], q[RELAY_REPLY_MAX + 16], ta[LOG_ADDR_MAX];
	char fix[SCHED_FIX_MAX];
	const char *why;
	bool is_reply;
	size_t i;
	int r;

	if (now >= deadline) {
		sched_give_up(s, e, reason);
		return;
	}
	when = now + sched_backoff_ms(&s->cfg->retry, attempts,
	    sched_random());
	if (when > deadline)
		when = deadline;
	r = queue_set_schedule(s->queue, m, attempts,
	    (time_t)((when + 999) / 1000), sched_defer_reason(m, res, reason));
	if (r == -ENOENT) {
		/* Removed from the spool behind our back: forget it. */
		log_msg(LOG_WARNING, m->id, "record gone from the spool, "
		    "forgotten");
		sched_msg_free(s, e);
		return;
	} else if (r < 0) {
		log_msg(LOG_ERR, m->id, "spool error=\"%s\"", strerror(-r));
		m->attempts = attempts;
	}
	for (i = 0; i < m->nrcpt; i++) {
		if (m->rcpt[i].state != QUEUE_RCPT_PENDING)
			continue;
		why = sched_rcpt_reply(res, i);
		if (why == NULL || why[0] == '\0')
			why = reason;
		log_msg(LOG_INFO, m->id, "deferred to=%s attempt=%u next=%s "
		    "reason=\"%s\"%s", log_addr(ta, sizeof(ta),
		    m->rcpt[i].addr), attempts,
		    sched_fmt_time(when, nb, sizeof(nb)),
		    log_quote(q, sizeof(q), why), sched_fix(s,
		    smtpproto_advice_text(why, &is_reply), fix, sizeof(fix)));
	}
	sched_delay_check(s, m, res);
	sched_make_waiting(s, e, when);
}

/* Logs one delivery. */
void
sched_log_delivered(struct sched *s, const struct queue_msg *m,
    const struct relay_rcpt_result *rr, const struct relay_result *res)
{
	char q[RELAY_REPLY_MAX + 16], ta[LOG_ADDR_MAX];

	s->last_delivery = time(NULL);
	s->failures = 0;
	log_msg(LOG_INFO, m->id, "delivered to=%s relay=%s delay=%llds "
	    "reply=\"%s\"", log_addr(ta, sizeof(ta), m->rcpt[rr->index].addr),
	    res->relay, (long long)(s->last_delivery - m->arrival),
	    log_quote(q, sizeof(q), rr->reply));
}

/*
 * True when this transaction delivered every recipient still pending and
 * no notice will be due: none failed before, none is to be reported as
 * relayed (NOTIFY=SUCCESS to an upstream without DSN).
 */
static bool
sched_all_delivered(const struct queue_msg *m, const struct relay_result *res)
{
	size_t i, k;

	for (i = 0; i < m->nrcpt; i++) {
		if (m->rcpt[i].state == QUEUE_RCPT_FAILED ||
		    m->rcpt[i].relayed)
			return false;
		if (m->rcpt[i].state != QUEUE_RCPT_PENDING)
			continue;
		if (!res->dsn && (m->rcpt[i].notify & QUEUE_NOTIFY_SUCCESS))
			return false;
		for (k = 0; k < res->nrcpt; k++)
			if (res->rcpt[k].index == i)
				break;
		if (k == res->nrcpt || res->rcpt[k].outcome != RELAY_OK)
			return false;
	}
	return true;
}

/*
 * The common case of sched_on_done(): every recipient delivered, nothing
 * to notify.  Then the removal of the record is the durable outcome
 * (docs/spool.md, "Removing a message"), and the journal lines that would
 * precede it are not written: one directory fsync, shared and off the
 * loop (sched_unlink), instead of three fsyncs in the loop.  The
 * deliveries are logged once that fsync is done.  The window in which a
 * crash re-sends is the same (from the upstream's reply to one durable
 * write).  If the removal fails, the outcomes are journaled as usual.
 * True when e is no longer the caller's.
 */
static bool
sched_done_fast(struct sched *s, struct sched_msg *e,
    const struct relay_result *res)
{
	if (!sched_all_delivered(e->m, res) ||
	    (e->dlv = sched_delivery_new(res)) == NULL)
		return false;
	if (sched_unlink(s, e) == 0)
		return true;
	free(e->dlv);
	e->dlv = NULL;
	return false;
}

/* Records one recipient's final outcome from a transaction. */
void
sched_record_rcpt(struct sched *s, struct queue_msg *m,
    const struct relay_rcpt_result *rr, const struct relay_result *res)
{
	enum queue_rcpt_state st;
	char q[RELAY_REPLY_MAX + 16], ta[LOG_ADDR_MAX], fix[SCHED_FIX_MAX];
	bool relayed, is_reply;
	int r;

	if (rr->outcome == RELAY_OK)
		st = QUEUE_RCPT_DELIVERED;
	else if (rr->outcome == RELAY_PERMFAIL)
		st = QUEUE_RCPT_FAILED;
	else
		return;
	log_addr(ta, sizeof(ta), m->rcpt[rr->index].addr);
	/* NOTIFY=SUCCESS and an upstream without DSN: we say "relayed". */
	relayed = st == QUEUE_RCPT_DELIVERED && !res->dsn &&
	    (m->rcpt[rr->index].notify & QUEUE_NOTIFY_SUCCESS);
	r = relayed ? queue_set_relayed(s->queue, m, rr->index, rr->reply) :
	    queue_set_rcpt(s->queue, m, rr->index, st, rr->reply);
	if (r < 0) {
		log_msg(LOG_ERR, m->id, "spool error=\"%s\" to=%s",
		    strerror(-r), ta);
		m->rcpt[rr->index].state = st;
		m->rcpt[rr->index].relayed = relayed;
	}
	if (st == QUEUE_RCPT_DELIVERED)
		sched_log_delivered(s, m, rr, res);
	else
		log_msg(LOG_NOTICE, m->id, "bounced to=%s relay=%s "
		    "reply=\"%s\"%s", ta, res->relay,
		    log_quote(q, sizeof(q), rr->reply), sched_fix(s,
		    smtpproto_advice_text(rr->reply, &is_reply), fix,
		    sizeof(fix)));
}

/* Queues m's notice of this kind to `to` and logs it; NULL on failure. */
static struct queue_msg *
sched_notice(struct sched *s, struct queue_msg *m, const char *to,
    enum dsn_kind kind)
{
	struct queue_msg *dsn = NULL;
	char ta[LOG_ADDR_MAX];
	int r;

	if ((r = dsn_queue(s->queue, s->cfg, m, to, kind, &dsn)) < 0) {
		log_msg(LOG_ERR, m->id, "cannot queue the delivery status "
		    "notification kind=%s error=\"%s\"", kind == DSN_FINAL ?
		    "final" : "delayed", strerror(-r));
		return NULL;
	}
	log_msg(LOG_INFO, m->id, "notification id=%s to=%s kind=%s",
	    dsn->id, log_addr(ta, sizeof(ta), to), kind == DSN_FINAL ?
	    "final" : "delayed");
	log_msg(LOG_INFO, dsn->id, "queued from=<> size=%" PRIu64
	    " nrcpt=1 notification-for=%s", dsn->size, m->id);
	return dsn;
}

/*
 * The message is done: queue its notice if one is due, then remove it.
 * If the notice cannot be queued, the message stays and tries again.
 */
static void
sched_finish(struct sched *s, struct sched_msg *e)
{
	struct queue_msg *m = e->m, *dsn = NULL;
	const char *to = dsn_recipient(s->cfg, m);
	int r;

	if (to != NULL && dsn_wanted(s->cfg, m) &&
	    (dsn = sched_notice(s, m, to, DSN_FINAL)) == NULL) {
		sched_make_waiting(s, e, sched_now_ms() + SCHED_DSN_RETRY_MS);
		return;
	}
	/* sched_unlink() logs "removed" once that is durable. */
	if ((r = sched_unlink(s, e)) < 0) {
		log_msg(LOG_ERR, m->id, "spool error=\"%s\"", strerror(-r));
		sched_msg_free(s, e);
	}
	if (dsn != NULL)
		sched_add(s, dsn);
}

/*
 * Gives m's pending recipients the reply of the attempt in res (in memory
 * only, for the notice: a deferral is journaled per message).
 */
static void
sched_pending_replies(struct queue_msg *m, const struct relay_result *res)
{
	const char *why;
	char *dup;
	size_t i;

	for (i = 0; res != NULL && i < m->nrcpt; i++) {
		if (m->rcpt[i].state != QUEUE_RCPT_PENDING ||
		    (why = sched_rcpt_reply(res, i)) == NULL || *why == '\0' ||
		    (dup = strdup(why)) == NULL)
			continue;
		free(m->rcpt[i].reply);
		m->rcpt[i].reply = dup;
	}
}

/*
 * The "delayed" notice (RFC 3464 Action: delayed), once per message, when
 * it is still queued bounces.delay_warning after its arrival.  Checked
 * when an attempt was deferred (res: its replies) and when a failing
 * upstream leaves it waiting (res NULL), so it is sent at the first of
 * those past the delay.  The mark is journaled before the notice is
 * queued: a crash in between loses the warning rather than sending it
 * twice, and a restart never repeats it.
 */
static void
sched_delay_check(struct sched *s, struct queue_msg *m,
    const struct relay_result *res)
{
	const char *to = dsn_recipient(s->cfg, m);
	struct queue_msg *dsn;
	time_t now = time(NULL);
	int r;

	if (to == NULL || !dsn_delay_wanted(s->cfg, m, now))
		return;
	sched_pending_replies(m, res);
	if ((r = queue_set_delay_notice(s->queue, m, now)) < 0) {
		log_msg(LOG_ERR, m->id, "spool error=\"%s\"", strerror(-r));
		return;
	}
	if ((dsn = sched_notice(s, m, to, DSN_DELAYED)) != NULL)
		sched_add(s, dsn);
}

/* ---- the upstream state ---- */

/* Changes the upstream state, logging the change. */
static void
sched_set_state(struct sched *s, enum sched_upstream st)
{
	if (s->state == st)
		return;
	log_msg(st == SCHED_UP_OK ? LOG_INFO : LOG_WARNING, NULL,
	    "upstream state=%s was=%s", sched_strupstream(st),
	    sched_strupstream(s->state));
	s->state = st;
}

/*
 * A session authenticated: the upstream works.  After a quota pause that
 * proves nothing yet, so the failure count (and the backoff) stays until
 * a message is delivered.
 */
static void
sched_upstream_ok(struct sched *s)
{
	if (s->state != SCHED_UP_PAUSED_QUOTA)
		s->failures = 0;
	s->reply[0] = '\0';
	s->advice = NULL;
	sched_set_state(s, SCHED_UP_OK);
}

/*
 * Fails the due messages older than retry.give_up_after: those that wait
 * for a failing upstream expire at its first failure past their deadline.
 */
static void
sched_expire_due(struct sched *s, const char *reason)
{
	uint64_t now = sched_now_ms();
	struct sched_msg *e, *next;

	for (e = TAILQ_FIRST(&s->due); e != NULL; e = next) {
		next = TAILQ_NEXT(e, entry);
		if (now < sched_deadline_ms(s, e)) {
			if (e->m != NULL)	/* else checked once read */
				sched_delay_check(s, e->m, NULL);
			continue;
		}
		sched_detach(s, e);
		sched_give_up(s, e, reason);
	}
}

/*
 * Says what to do about a paused upstream, from the advice the relay found
 * for it (common/smtpproto_advice.c), with this configuration's names
 * filled in.
 */
static void
sched_log_advice(const struct sched *s, enum sched_upstream st,
    const char *reason, const struct smtpproto_advice *advice)
{
	struct smtpproto_advice_vars v;
	char fix[1024], q[RELAY_REPLY_MAX + 16];

	if (advice == NULL)
		return;
	smtpproto_advice_vars_cfg(s->cfg, &v);
	log_msg(LOG_ERR, NULL, "upstream %s: reason=\"%s\" fix: %s",
	    st == SCHED_UP_PAUSED_CREDENTIALS ? "login refused" : "failure",
	    log_quote(q, sizeof(q), reason),
	    smtpproto_advice_format(advice, &v, fix, sizeof(fix)));
}

/*
 * The upstream failed (a session could not get ready, or an account
 * problem): back off, quit idle sessions.  The due messages just wait for
 * the next probe (sched_arm()): the failure is not theirs, so nothing is
 * written per message.  A write and an fdatasync for each would stall the
 * loop at every failed probe (a minute for 100,000 messages).  Only those
 * past retry.give_up_after fail, and none during a pause or while
 * upstream.ca_file does not load: the account or the configuration is at
 * fault, not the message.
 */
static void
sched_upstream_fail(struct sched *s, enum sched_upstream st,
    const char *reason, const struct smtpproto_advice *advice)
{
	struct sched_conn *c, *next;
	struct relay_session *rs;
	char nb[32], q[RELAY_REPLY_MAX + 16], fix[SCHED_FIX_MAX];
	bool pause = st == SCHED_UP_PAUSED_CREDENTIALS ||
	    st == SCHED_UP_PAUSED_QUOTA || s->tls_broken;

	s->failures++;
	s->gen++;
	s->retry_ms = sched_now_ms() + sched_backoff_ms(&s->cfg->retry,
	    s->failures, sched_random());
	snprintf(s->reply, sizeof(s->reply), "%s", reason);
	s->advice = advice;
	sched_set_state(s, st);
	log_msg(pause ? LOG_ERR : LOG_WARNING, NULL, "upstream %s failures=%u "
	    "next=%s reason=\"%s\"%s", pause ? "paused" : "unavailable",
	    s->failures, sched_fmt_time(s->retry_ms, nb, sizeof(nb)),
	    log_quote(q, sizeof(q), reason), pause ? "" : sched_fix(s,
	    advice, fix, sizeof(fix)));
	if (pause)
		sched_log_advice(s, st, reason, advice);
	if (!pause)
		sched_expire_due(s, reason);
	/* Idle sessions quit now; the others when they are next ready. */
	for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (!c->ready || c->ninflight > 0 || c->quitting ||
		    (rs = relay_find(&s->env, c->id)) == NULL)
			continue;
		c->quitting = true;
		relay_quit(rs, "upstream not usable");
	}
	sched_arm(s);
}

/* ---- sessions ---- */

/* Finds our side of a session by its id. */
static struct sched_conn *
sched_conn_find(struct sched *s, uint64_t id)
{
	struct sched_conn *c;

	TAILQ_FOREACH(c, &s->conns, entry)
		if (c->id == id)
			return c;
	return NULL;
}

/* Drops our side of a session that has ended. */
static void
sched_conn_free(struct sched *s, struct sched_conn *c)
{
	TAILQ_REMOVE(&s->conns, c, entry);
	s->nconns--;
	if (c->idle != NULL)
		event_free(c->idle);
	free(c);
	sched_check_stopped(s);
}

/* The idle hold is over: QUIT. */
static void
sched_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched_conn *c = arg;
	struct relay_session *rs = relay_find(&c->s->env, c->id);

	if (rs != NULL && c->ninflight == 0) {
		c->quitting = true;
		relay_quit(rs, "idle");
	}
}

/* Opens one more session. */
static void
sched_open(struct sched *s)
{
	struct sched_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->s = s;
	TAILQ_INIT(&c->inflight);
	c->id = s->next_id++;
	c->gen = s->gen;
	if ((c->idle = evtimer_new(s->base, sched_idle_cb, c)) == NULL ||
	    relay_new(&s->env, c->id) == NULL) {
		if (c->idle != NULL)
			event_free(c->idle);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&s->conns, c, entry);
	s->nconns++;
}

/*
 * Makes room in e's journal before it goes upstream (queue_reserve()).
 * When the spool is full nothing goes upstream for a few seconds (no
 * attempt counted, no new session): sending anyway could leave a delivery
 * unrecorded, and a restart would send it again.
 */
static bool
sched_room(struct sched *s, struct sched_msg *e)
{
	int r;

	if (sched_now_ms() < s->full_ms)
		return false;
	if ((r = queue_reserve(s->queue, e->m)) == 0 || r == -ENOENT)
		return true;	/* -ENOENT: relay_send() forgets it */
	log_msg(LOG_WARNING, e->m->id, "spool full: nothing is relayed until "
	    "outcomes can be recorded error=\"%s\" retry=%ums",
	    strerror(-r), SCHED_FULL_RETRY_MS);
	s->full_ms = sched_now_ms() + SCHED_FULL_RETRY_MS;
	sched_arm(s);
	return false;
}

/*
 * Hands the session the next due message; false when there is none it
 * takes now (c->ready is false then if the session itself cannot).
 */
static bool
sched_feed_one(struct sched *s, struct sched_conn *c,
    struct relay_session *rs)
{
	struct timeval hold = { SCHED_IDLE_HOLD_MS / 1000,
	    (SCHED_IDLE_HOLD_MS % 1000) * 1000 };
	struct sched_msg *e;
	int r;

	/* Recovered messages are read first; some move or go then. */
	while ((e = TAILQ_FIRST(&s->due)) != NULL &&
	    (e->m == NULL || queue_msg_done(e->m))) {
		if (e->m == NULL) {
			sched_load(s, e, true);
			continue;
		}
		/* Recovered after its last outcome, before its removal. */
		sched_detach(s, e);
		sched_finish(s, e);
	}
	if (e != NULL && !relay_can_send(rs, e->m)) {
		c->ready = false;	/* until it says ready again */
		return false;
	}
	if (e == NULL || !sched_room(s, e)) {
		evtimer_add(c->idle, &hold);
		return false;
	}
	evtimer_del(c->idle);
	sched_detach(s, e);
	e->where = SM_INFLIGHT;
	s->ninflight++;
	TAILQ_INSERT_TAIL(&c->inflight, e, entry);
	c->ninflight++;
	c->sent++;
	if ((r = relay_send(rs, e->m)) == 0)
		return true;
	TAILQ_REMOVE(&c->inflight, e, entry);
	c->ninflight--;
	s->ninflight--;
	c->sent--;
	if (r == -ENOENT) {
		/* Removed from the spool behind our back: forget it. */
		log_msg(LOG_WARNING, e->m->id, "record gone from the spool, "
		    "forgotten");
		sched_msg_free(s, e);
		return true;
	}
	sched_make_due_first(s, e);
	c->ready = false;
	if (c->ninflight == 0) {
		c->quitting = true;
		relay_quit(rs, "cannot take a message");
	}
	return false;
}

/*
 * Gives a session that takes messages its next ones (several when it
 * pipelines them), or lets it go once nothing is in flight.
 */
static void
sched_feed(struct sched *s, struct sched_conn *c)
{
	struct relay_session *rs = relay_find(&s->env, c->id);
	unsigned max = s->cfg->upstream.messages_per_connection;

	if (rs == NULL || !c->ready || c->quitting)
		return;
	if (s->stopping || s->state != SCHED_UP_OK || c->sent >= max) {
		if (c->ninflight > 0)
			return;		/* their replies first */
		c->quitting = true;
		relay_quit(rs, s->stopping ? "stopping" : s->state !=
		    SCHED_UP_OK ? "upstream not usable" :
		    "messages_per_connection reached");
		return;
	}
	while (c->ready && c->sent < max && sched_feed_one(s, c, rs))
		;
}

/* Opens sessions for the due messages the open ones cannot take. */
static void
sched_open_sessions(struct sched *s)
{
	const struct cfg_upstream *u = &s->cfg->upstream;
	struct sched_conn *c;
	uint64_t capacity = 0;

	if (s->ndue == 0 || s->stopping || sched_now_ms() < s->full_ms)
		return;
	if (s->state != SCHED_UP_OK) {
		/* One probe at a time, once the backoff is over. */
		if (sched_now_ms() >= s->retry_ms && s->nconns == 0)
			sched_open(s);
		return;
	}
	TAILQ_FOREACH(c, &s->conns, entry)
		if (!c->quitting && c->sent < u->messages_per_connection)
			capacity += u->messages_per_connection - c->sent;
	while (s->nconns < u->connections && s->ndue > capacity) {
		sched_open(s);
		capacity += u->messages_per_connection;
	}
}

/* Moves what is due from the heap, feeds idle sessions, opens new ones. */
static void
sched_run(struct sched *s)
{
	uint64_t now = sched_now_ms();
	struct sched_conn *c, *next;
	struct sched_msg *e;

	if (s->stopping)
		return;
	while (s->nheap > 0 && s->heap[0]->due_ms <= now) {
		e = s->heap[0];
		sched_detach(s, e);
		if (e->m != NULL && queue_msg_done(e->m))
			sched_finish(s, e);
		else
			sched_make_due(s, e);
	}
	sched_arm(s);
	for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		sched_feed(s, c);
	}
	sched_open_sessions(s);
}

/* The kick event. */
static void
sched_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_run(arg);
}

/* Runs sched_run() from a fresh event, soon. */
static void
sched_kick(struct sched *s)
{
	struct timeval now = { 0, 0 };

	if (!evtimer_pending(s->kick, NULL))
		evtimer_add(s->kick, &now);
}

/* Something waiting is due. */
static void
sched_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	sched_run(arg);
}

/* ---- relay callbacks ---- */

/* A session is ready: the upstream works; feed it. */
static void
sched_on_ready(void *arg, uint64_t id)
{
	struct sched *s = arg;
	struct sched_conn *c = sched_conn_find(s, id);

	if (c == NULL)
		return;
	c->ready = true;
	if (s->state != SCHED_UP_OK && c->gen == s->gen) {
		sched_upstream_ok(s);
		sched_kick(s);	/* more sessions for the backlog */
	}
	sched_feed(s, c);
}

/* A transaction ended: record each recipient, then finish, pause or defer. */
static void
sched_on_done(void *arg, uint64_t id, struct queue_msg *m,
    const struct relay_result *res)
{
	struct sched *s = arg;
	struct sched_conn *c = sched_conn_find(s, id);
	struct sched_msg *e;
	size_t i;

	if (c == NULL)
		return;
	TAILQ_FOREACH(e, &c->inflight, entry)
		if (e->m == m)
			break;
	if (e == NULL)
		return;
	TAILQ_REMOVE(&c->inflight, e, entry);
	c->ninflight--;
	sched_detach(s, e);
	if (sched_done_fast(s, e, res))
		return;
	for (i = 0; i < res->nrcpt; i++)
		sched_record_rcpt(s, m, &res->rcpt[i], res);
	if (queue_msg_done(m)) {
		sched_finish(s, e);
		return;
	}
	if (res->outcome == RELAY_PAUSE) {
		enum sched_upstream st = res->pause == RELAY_PAUSE_QUOTA ?
		    SCHED_UP_PAUSED_QUOTA : SCHED_UP_PAUSED_CREDENTIALS;

		/* Not the message's fault: nothing bounces, all wait.  The
		 * messages pipelined behind the first refused one bring the
		 * same news: one pause, counted once. */
		sched_make_due(s, e);
		if (s->state != st || c->gen == s->gen)
			sched_upstream_fail(s, st, res->reply, res->advice);
		return;
	}
	sched_defer(s, e, res->reply, res);
	sched_arm(s);
}

/* A session ended; before ready, that is an upstream failure. */
static void
sched_on_closed(void *arg, uint64_t id, const struct relay_end *end)
{
	struct sched *s = arg;
	struct sched_conn *c = sched_conn_find(s, id);
	bool counts;

	if (c == NULL)
		return;
	counts = c->gen == s->gen && !s->stopping;
	sched_conn_free(s, c);
	if (counts && !end->was_ready && end->outcome == RELAY_PAUSE) {
		sched_upstream_fail(s, end->pause == RELAY_PAUSE_QUOTA ?
		    SCHED_UP_PAUSED_QUOTA : SCHED_UP_PAUSED_CREDENTIALS,
		    end->reason, end->advice);
	} else if (counts && !end->was_ready && end->outcome != RELAY_OK)
		sched_upstream_fail(s, SCHED_UP_RETRYING, end->reason,
		    end->advice);
	sched_kick(s);
}

/*
 * The TLS context, made for the first handshake: loading OpenSSL and a
 * trust store costs 2-3 MiB, which an idle daemon, or one whose upstream
 * is down, does not pay (docs/performance.md).  When it cannot be made (a
 * ca_file that looks like PEM but does not parse, out of memory) the session
 * ends before ready, which fails the upstream with this reason; as with
 * a pause, nothing expires meanwhile (s->tls_broken): a local
 * configuration error must not bounce mail.  Each probe tries again, so
 * fixing the file is enough.
 */
static SSL_CTX *
sched_tls_ctx(void *arg, char *reason, size_t sz)
{
	struct sched *s = arg;
	char *err = NULL, q[RELAY_REPLY_MAX + 16];
	int r;

	if (s->ssl_ctx != NULL)
		return s->ssl_ctx;
	if ((r = tls_ctx_new(s->ca_file, &s->ssl_ctx, &err)) < 0) {
		snprintf(reason, sz, "%.400s; fix upstream.ca_file (nothing "
		    "expires meanwhile)", err != NULL ? err : strerror(-r));
		free(err);
		s->tls_broken = true;
		log_msg(LOG_ERR, NULL, "tls error=\"%s\"",
		    log_quote(q, sizeof(q), reason));
		return NULL;
	}
	s->tls_broken = false;
	return s->ssl_ctx;
}

/* ---- the interface ---- */

int
sched_new(struct event_base *base, const struct cfg *cfg, struct queue *q,
    struct sched **sp, char **err)
{
	struct sched *s;
	int r;

	*sp = NULL;
	*err = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -ENOMEM;
	s->base = base;
	s->cfg = cfg;
	s->queue = q;
	s->next_id = 1;
	TAILQ_INIT(&s->due);
	TAILQ_INIT(&s->removing);
	TAILQ_INIT(&s->conns);
	s->ops.ready = sched_on_ready;
	s->ops.done = sched_on_done;
	s->ops.closed = sched_on_closed;
	s->ops.tls_ctx = sched_tls_ctx;
	/* The TLS context waits for the first handshake: sched_tls_ctx(). */
	if ((r = tls_ca_file_check(cfg->upstream.ca_file, err)) < 0)
		goto fail;
	r = -ENOMEM;
	if ((cfg->upstream.ca_file != NULL &&
	    (s->ca_file = strdup(cfg->upstream.ca_file)) == NULL) ||
	    (s->dns = upstream_dns_new(base)) == NULL ||
	    (s->timer = evtimer_new(base, sched_timer_cb, s)) == NULL ||
	    (s->kick = evtimer_new(base, sched_kick_cb, s)) == NULL ||
	    (s->token = token_new(base, s->dns)) == NULL ||
	    (s->loader = evtimer_new(base, sched_loader_cb, s)) == NULL ||
	    relay_env_init(&s->env) < 0)
		goto fail;
	token_set_cfg(s->token, cfg);
	s->env.token = s->token;
	s->env.base = base;
	s->env.dns = s->dns;
	s->env.cfg = cfg;
	s->env.queue = q;
	s->env.ops = &s->ops;
	s->env.arg = s;
	*sp = s;
	return 0;
fail:
	sched_free(s);
	return r;
}

void
sched_free(struct sched *s)
{
	struct sched_conn *c;
	struct sched_msg *e;
	size_t i;

	if (s == NULL)
		return;
	s->stopped = NULL;	/* no callback from the teardown */
	sched_removals_finish(s);
	relay_env_free(&s->env);
	token_free(s->token);
	while ((c = TAILQ_FIRST(&s->conns)) != NULL) {
		while ((e = TAILQ_FIRST(&c->inflight)) != NULL) {
			TAILQ_REMOVE(&c->inflight, e, entry);
			sched_msg_free(s, e);
		}
		sched_conn_free(s, c);
	}
	while ((e = TAILQ_FIRST(&s->due)) != NULL) {
		TAILQ_REMOVE(&s->due, e, entry);
		sched_msg_free(s, e);
	}
	for (i = 0; i < s->nheap; i++)
		sched_msg_free(s, s->heap[i]);
	free(s->heap);
	free(s->lazy);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->kick != NULL)
		event_free(s->kick);
	if (s->loader != NULL)
		event_free(s->loader);
	if (s->dns != NULL)
		evdns_base_free(s->dns, 0);
	tls_ctx_free(s->ssl_ctx);
	free(s->ca_file);
	free(s);
}

/* Queues a new entry, due at next_attempt (seconds; 0: now). */
static void
sched_enqueue(struct sched *s, struct sched_msg *e, time_t next_attempt)
{
	uint64_t when = (uint64_t)next_attempt * 1000;

	if (s->state != SCHED_UP_OK && when < s->retry_ms)
		when = s->retry_ms;
	if (when > sched_now_ms())
		sched_make_waiting(s, e, when);
	else
		sched_make_due(s, e);
	sched_arm(s);
	sched_kick(s);
}

void
sched_add(struct sched *s, struct queue_msg *m)
{
	struct sched_msg *e;

	if ((e = calloc(1, sizeof(*e))) == NULL) {
		log_msg(LOG_ERR, m->id, "out of memory: delivery waits for a "
		    "restart");
		queue_msg_free(m);
		return;
	}
	e->m = m;
	e->lazy_idx = SIZE_MAX;
	memcpy(e->st.id, m->id, sizeof(e->st.id));
	e->st.arrival = m->arrival;
	e->st.journal = true;
	if (queue_msg_done(m)) {
		/* Recovered after its last outcome, before its removal. */
		sched_finish(s, e);
		return;
	}
	sched_enqueue(s, e, m->next_attempt);
}

int
sched_add_stub(struct sched *s, const struct queue_stub *st)
{
	struct sched_msg *e, **l;
	size_t cap;

	if (s->nlazy == s->lazycap) {
		cap = s->lazycap ? s->lazycap * 2 : 1024;
		if ((l = reallocarray(s->lazy, cap, sizeof(*l))) == NULL)
			return -ENOMEM;
		s->lazy = l;
		s->lazycap = cap;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return -ENOMEM;
	e->st = *st;
	e->lazy_idx = s->nlazy;
	s->lazy[s->nlazy++] = e;
	sched_enqueue(s, e, st->next_attempt);
	if (s->nlazy == 1)
		event_active(s->loader, EV_TIMEOUT, 0);
	return 0;
}

/*
 * The loader: reads the records of recovered messages in id order, a few
 * at a time (at most SCHED_LOAD_BATCH or SCHED_LOAD_BUDGET_US per event),
 * so that sessions go on meanwhile.  A session that needs one first reads
 * it itself (sched_feed).  Records that turn out complete are removed,
 * unreadable ones moved to corrupt/, as recovery used to do before ready.
 */
static void
sched_loader_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	struct timeval zero = { 0, 0 };
	uint64_t t0 = sched_mono_us();
	struct sched_msg *e;
	unsigned n = 0;

	while (s->lazy_next < s->nlazy && n < SCHED_LOAD_BATCH &&
	    sched_mono_us() - t0 < SCHED_LOAD_BUDGET_US) {
		if ((e = s->lazy[s->lazy_next++]) == NULL)
			continue;
		n++;
		if (sched_load(s, e, true) == 0 && queue_msg_done(e->m)) {
			sched_detach(s, e);
			sched_finish(s, e);
		}
	}
	if (s->lazy_next < s->nlazy) {
		evtimer_add(s->loader, &zero);
		return;
	}
	log_msg(LOG_INFO, NULL, "recovery records_read=%zu corrupt=%zu",
	    s->nread, s->ncorrupt);
	free(s->lazy);
	s->lazy = NULL;
	s->nlazy = s->lazy_next = s->lazycap = 0;
	sched_kick(s);
}

int
sched_flush(struct sched *s, const char *id)
{
	struct sched_msg *e;
	size_t i = 0;
	int n = 0;

	while (i < s->nheap) {
		e = s->heap[i];
		if (id != NULL && strcmp(e->st.id, id) != 0) {
			i++;
			continue;
		}
		sched_detach(s, e);
		sched_make_due(s, e);
		n++;
	}
	if (id != NULL && n == 0) {
		TAILQ_FOREACH(e, &s->due, entry)
			if (strcmp(e->st.id, id) == 0)
				n++;
		if (n == 0)
			return -ENOENT;
	}
	s->retry_ms = 0;
	sched_arm(s);
	sched_kick(s);
	return n;
}

/* Finds a message by id wherever it is. */
static struct sched_msg *
sched_find(struct sched *s, const char *id)
{
	struct sched_conn *c;
	struct sched_msg *e;
	size_t i;

	TAILQ_FOREACH(e, &s->due, entry)
		if (strcmp(e->st.id, id) == 0)
			return e;
	for (i = 0; i < s->nheap; i++)
		if (strcmp(s->heap[i]->st.id, id) == 0)
			return s->heap[i];
	TAILQ_FOREACH(c, &s->conns, entry)
		TAILQ_FOREACH(e, &c->inflight, entry)
			if (strcmp(e->st.id, id) == 0)
				return e;
	TAILQ_FOREACH(e, &s->removing, entry)
		if (strcmp(e->st.id, id) == 0)
			return e;
	return NULL;
}

int
sched_remove(struct sched *s, const char *id)
{
	struct sched_msg *e = sched_find(s, id);

	if (e == NULL)
		return -ENOENT;
	/* Removing: its journal must outlive the record's unlink. */
	if (e->where == SM_INFLIGHT || e->where == SM_REMOVING)
		return -EBUSY;
	sched_detach(s, e);
	sched_msg_free(s, e);
	sched_arm(s);
	return 0;
}

void
sched_stop(struct sched *s, void (*stopped)(void *), void *arg)
{
	struct sched_conn *c, *next;
	struct relay_session *rs;

	s->stopping = true;
	s->stopped = stopped;
	s->stopped_arg = arg;
	sched_check_stopped(s);
	evtimer_del(s->timer);
	evtimer_del(s->kick);
	/* relay_stop() may close (and drop c) at once: iterate safely. */
	for (c = TAILQ_FIRST(&s->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		/* Not marked quitting: one after its dot quits when ready. */
		if ((rs = relay_find(&s->env, c->id)) != NULL)
			relay_stop(rs);
	}
}

unsigned
sched_sessions(const struct sched *s)
{
	return s->nconns;
}

bool
sched_drained(const struct sched *s)
{
	return s->nconns == 0 && s->nremoving == 0;
}

/* After sched_stop(): tells each time nothing is left (sched_drained). */
void
sched_check_stopped(struct sched *s)
{
	if (s->stopping && sched_drained(s) && s->stopped != NULL)
		s->stopped(s->stopped_arg);
}

void
sched_foreach(const struct sched *s, sched_visit_fn *fn, void *arg)
{
	const struct sched_msg *e;
	const struct sched_conn *c;
	size_t i;

	TAILQ_FOREACH(e, &s->due, entry)
		fn(arg, e->m, &e->st, false);
	for (i = 0; i < s->nheap; i++)
		fn(arg, s->heap[i]->m, &s->heap[i]->st, false);
	TAILQ_FOREACH(c, &s->conns, entry)
		TAILQ_FOREACH(e, &c->inflight, entry)
			fn(arg, e->m, &e->st, true);
}

size_t
sched_count(const struct sched *s)
{
	return s->ndue + s->nheap + s->ninflight;
}

/*
 * The TLS settings of a reload: checked, and the context rebuilt at once
 * when there is one (a new ca_file, or new contents in the same file or
 * the system store, apply to the next session), or was tried and
 * failed; otherwise only the path is kept for when a session needs a
 * context.  On an error the previous
 * settings (path and context) stay.
 */
static int
sched_set_tls(struct sched *s, const char *ca_file, char **err)
{
	SSL_CTX *ctx = NULL;
	char *copy = NULL;
	int r;

	if ((r = tls_ca_file_check(ca_file, err)) < 0)
		return r;
	if (ca_file != NULL && (copy = strdup(ca_file)) == NULL)
		return -ENOMEM;
	if ((s->ssl_ctx != NULL || s->tls_broken) &&
	    (r = tls_ctx_new(ca_file, &ctx, err)) < 0) {
		free(copy);
		return r;
	}
	free(s->ca_file);
	s->ca_file = copy;
	if (ctx != NULL) {
		/* Sessions hold their own SSL references; the old context
		 * is freed when the last of them goes (OpenSSL refcounts). */
		tls_ctx_free(s->ssl_ctx);
		s->ssl_ctx = ctx;
		s->tls_broken = false;
	}
	return 0;
}

int
sched_set_cfg(struct sched *s, const struct cfg *cfg, char **err)
{
	*err = NULL;
	s->cfg = cfg;
	s->env.cfg = cfg;
	token_set_cfg(s->token, cfg);
	sched_kick(s);
	return sched_set_tls(s, cfg->upstream.ca_file, err);
}

const struct token *
sched_token(const struct sched *s)
{
	return s->token;
}

void
sched_status(const struct sched *s, struct sched_status *st)
{
	struct sched_msg *e;
	size_t i;

	memset(st, 0, sizeof(*st));
	st->state = s->state;
	st->reply = s->reply;
	st->advice = s->state != SCHED_UP_OK ? s->advice : NULL;
	st->retry_at = (time_t)(s->retry_ms / 1000);
	st->messages = sched_count(s);
	st->last_delivery = s->last_delivery;
	st->sessions = s->nconns;
	TAILQ_FOREACH(e, &s->due, entry)
		if (st->oldest == 0 || e->st.arrival < st->oldest)
			st->oldest = e->st.arrival;
	for (i = 0; i < s->nheap; i++)
		if (st->oldest == 0 || s->heap[i]->st.arrival < st->oldest)
			st->oldest = s->heap[i]->st.arrival;
}
