/*
 * relay: the outbound SMTP client session to the smart host (docs/relay.md).
 *
 * One struct relay_session per upstream connection, driven by libevent: it
 * resolves upstream.host (evdns, /etc/hosts honoured), connects to each
 * address in turn with a connect timeout, does STARTTLS (or implicit TLS)
 * with a verified certificate, EHLO again, AUTH PLAIN (LOGIN as fallback)
 * with the password read afresh for this session, and then carries
 * messages one after the other: MAIL/RCPT/DATA (pipelined when offered),
 * the body streamed from the spool with dot-stuffing, or, with CHUNKING and
 * PIPELINING, MAIL/RCPT/"BDAT n LAST" and the body unstuffed in one write;
 * RSET after a failed transaction, QUIT at the end.  With CHUNKING and
 * PIPELINING, small messages also go behind the one in flight without
 * waiting for its replies ("RSET" first), several per round trip.
 *
 * The relay decides nothing about queues and records nothing: the
 * scheduler hands it a message with relay_send() when the session reports
 * that it is ready (and, while relay_can_send() says so, more behind it),
 * and gets per-recipient outcomes back through relay_ops.done, in the
 * order the messages were handed over.  A session that ends, for whatever
 * reason, reports it once through relay_ops.closed (after a done() for
 * every message in flight) and frees itself from a fresh event.
 * Callbacks carry the session's 64-bit id, never a pointer the callee
 * should keep.
 */
#ifndef SMARTRELAY_RELAY_H
#define SMARTRELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct cfg;
struct event_base;
struct evdns_base;
struct queue;
struct queue_msg;
struct reply;
struct relay_session;
struct smtpproto_advice;
struct sockaddr;
struct token;

/* What a reply (or a local event) means for a message or the queue. */
enum relay_outcome {
	RELAY_OK,		/* delivered */
	RELAY_TEMPFAIL,		/* defer, retry with backoff */
	RELAY_PERMFAIL,		/* failed for good: bounce */
	RELAY_PAUSE,		/* the account's problem: pause the queue */
};

/* Why the queue pauses (with RELAY_PAUSE). */
enum relay_pause {
	RELAY_PAUSE_NONE,
	RELAY_PAUSE_CREDENTIALS,	/* 535, 534, 454 at AUTH */
	RELAY_PAUSE_QUOTA,		/* 550 5.4.5 daily sending limit */
};

/* Where in the dialogue a reply came; classification depends on it. */
enum relay_stage {
	RELAY_STAGE_GREETING,
	RELAY_STAGE_EHLO,
	RELAY_STAGE_STARTTLS,
	RELAY_STAGE_AUTH,
	RELAY_STAGE_MAIL,
	RELAY_STAGE_RCPT,
	RELAY_STAGE_DATA,
	RELAY_STAGE_DOT,
};

#define RELAY_REPLY_MAX		512	/* bytes of a reply kept in results */

/* The final word on one recipient of a transaction. */
struct relay_rcpt_result {
	size_t index;			/* into msg->rcpt */
	enum relay_outcome outcome;
	char reply[RELAY_REPLY_MAX];	/* the reply (or reason) deciding it */
};

/* What became of one message handed over with relay_send(). */
struct relay_result {
	enum relay_outcome outcome;	/* of the message as a whole */
	enum relay_pause pause;
	char reply[RELAY_REPLY_MAX];	/* the deciding reply or reason */
	char relay[300];		/* "host[ip]:port" */
	bool dot_sent;			/* lost after the final dot: maybe
					   delivered (RFC 1047) */
	bool dsn;			/* the upstream offered DSN: the
					   request was passed on (RFC 3461) */
	/* What to do about it (the table of common/smtpproto_advice.c,
	 * static), NULL when there is no advice. */
	const struct smtpproto_advice *advice;
	struct relay_rcpt_result *rcpt;	/* borrowed, valid during done() */
	size_t nrcpt;
};

/* How a session ended. */
struct relay_end {
	bool was_ready;			/* it reached the authenticated state */
	enum relay_outcome outcome;	/* TEMPFAIL or PAUSE when it failed
					   before being ready, else OK */
	enum relay_pause pause;
	char reason[RELAY_REPLY_MAX];
	/* What to do about the failure (static table), NULL when none. */
	const struct smtpproto_advice *advice;
};

struct relay_ops {
	/* Authenticated, and idle (relay_send() or relay_quit() it) or with
	 * room behind the messages in flight (see relay_can_send()). */
	void (*ready)(void *arg, uint64_t id);
	/* The message's transaction is over; the session goes on. */
	void (*done)(void *arg, uint64_t id, struct queue_msg *m,
	    const struct relay_result *res);
	/* The session has ended; it must not be used any more. */
	void (*closed)(void *arg, uint64_t id, const struct relay_end *end);
	/*
	 * The TLS context for a handshake about to start (borrowed; made on
	 * first use, so OpenSSL is loaded only once TLS is spoken).  NULL
	 * with the reason in reason[sz] when it cannot be made.
	 */
	SSL_CTX *(*tls_ctx)(void *arg, char *reason, size_t sz);
};

/* What all sessions share; owned by the scheduler. */
struct relay_env {
	struct event_base *base;	/* borrowed */
	struct evdns_base *dns;		/* borrowed */
	const struct cfg *cfg;		/* borrowed; replaced on reload */
	struct queue *queue;		/* borrowed */
	const struct relay_ops *ops;	/* borrowed */
	struct token *token;		/* borrowed: OAuth access tokens */
	void *arg;
	struct relay_list *sessions;	/* owned: live sessions, by id */
};

/* Prepares env's session list; the caller fills the other fields. */
int relay_env_init(struct relay_env *env);
/* Frees every session still alive (without callbacks) and the list. */
void relay_env_free(struct relay_env *env);

/* Starts a session (resolve, connect...); NULL on out of memory. */
struct relay_session *relay_new(struct relay_env *env, uint64_t id);
/*
 * Starts a session on a socket already connected to the upstream: no
 * resolution, no connect; fd belongs to the session from then on (the
 * caller keeps it when NULL comes back).  With tls = "none" the peer must
 * be a loopback address or a socketpair.  The unit tests drive the session
 * over a socketpair with it (tests/unit/test_relay.c).
 */
struct relay_session *relay_new_fd(struct relay_env *env, uint64_t id,
    int fd);
/* Finds a live session by id. */
struct relay_session *relay_find(struct relay_env *env, uint64_t id);
/*
 * Whether relay_send() takes m now: the session is idle and ready, or m
 * can go behind the transactions in flight (CHUNKING and PIPELINING, the
 * one in flight has its chunk out, m is at most 64 KiB, fewer than 8 in
 * flight).  A session that is not idle says ready() again when the one
 * in flight is answered.
 */
bool relay_can_send(const struct relay_session *s, const struct queue_msg *m);
/*
 * Hands the session a message (borrowed until done(), which never comes
 * before this returns).  A negative errno when the session cannot take
 * it: -EBUSY (see relay_can_send()), -ENOMEM, or the error opening or
 * reading the body (-ENOENT: the record is gone); the caller keeps the
 * message.
 */
int relay_send(struct relay_session *s, struct queue_msg *m);
/* Ends the session politely: QUIT when idle, else right away. */
void relay_quit(struct relay_session *s, const char *reason);
/*
 * Shutdown: QUIT when idle; transactions whose final dot (or chunk) is out
 * wait for their replies (ending them then could duplicate the messages);
 * anything else ends now, the message in flight being deferred.
 */
void relay_stop(struct relay_session *s);

/*
 * Classifies a reply at a stage into the actions of docs/relay.md's
 * failure table.  *pause tells which pause for RELAY_PAUSE.  Exposed for
 * the tests.
 */
enum relay_outcome relay_classify(enum relay_stage stage,
    const struct reply *r, enum relay_pause *pause);
const char *relay_stroutcome(enum relay_outcome o);
/*
 * True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: the only addresses
 * a session with tls = "none" connects to.  Exposed for the tests.
 */
bool relay_is_loopback(const struct sockaddr *sa);

#endif
