/*
 * smtp: the inbound ESMTP session (docs/smtp.md), what legacy software talks to.
 *
 * One struct smtp_session per client connection, driven by a libevent
 * bufferevent.  The session is a state machine (enum smtp_state) with a
 * command table that pairs a check (syntax and order, 5xx replies, no side
 * effects) with a proceed (the work).  The transaction (envelope, open spool
 * file, DATA filter) is its own struct, created at MAIL and freed at the end
 * of DATA or at RSET.  A 250 after DATA is sent only after the queue commit
 * (fsync, rename, directory fsync) succeeded.
 */
#ifndef SMARTRELAY_SMTP_H
#define SMARTRELAY_SMTP_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct event_base;
struct cfg;
struct queue;
struct queue_msg;
struct queue_writer;
struct committer;
struct smtp_session;

struct smtp_server {
	struct event_base *base;	/* borrowed */
	const struct cfg *cfg;		/* borrowed; replaced on reload */
	struct queue *queue;		/* borrowed */
	struct committer *committer;	/* borrowed; NULL: commit inline */
	unsigned nsessions;		/* open sessions */
	TAILQ_HEAD(, smtp_session) sessions;	/* borrowed: each frees itself */
	uint64_t next_id;		/* session ids */
	/* A message was committed; the callee owns m. */
	void (*queued)(void *arg, struct queue_msg *m);
	void *queued_arg;
	/* After smtp_shutdown(): the last session is gone. */
	void (*drained)(void *arg);
	void *drained_arg;
};

/* Prepares srv; the caller fills base, cfg, queue and queued. */
void smtp_server_init(struct smtp_server *srv);
/* Takes over an accepted connection: refuses it or starts a session. */
void smtp_accept(struct smtp_server *srv, int fd, const struct sockaddr *sa,
    socklen_t salen);
/*
 * The committer's callback (arg is the server): a message committed, or
 * failed to, in the background; answers its session if it still exists and
 * hands the message to srv->queued.  Takes w.
 */
void smtp_commit_done(void *arg, uint64_t token, struct queue_writer *w,
    int result);
/*
 * Ends every session with 421 (shutdown); drained(arg) is called once the
 * last one is gone (from the event loop, or at once when there is none).
 */
void smtp_shutdown(struct smtp_server *srv, void (*drained)(void *),
    void *arg);

#endif
