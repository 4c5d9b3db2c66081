/*
 * relay_private.h: the relay session's insides, shared by relay.c (the
 * connection, the state machine, the transaction and the body) and
 * relay_auth.c (AUTH with a password or an OAuth token) and by nobody
 * else; see relay.h for the interface.
 */
#ifndef SMARTRELAY_RELAY_PRIVATE_H
#define SMARTRELAY_RELAY_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "cfg.h"
#include "oauth.h"
#include "relay.h"
#include "reply.h"
#include "smtpproto.h"

struct bufferevent;
struct evbuffer;
struct event;
struct upstream_conn;

enum relay_state {
	RELAY_INIT,		/* created, starts from a fresh event */
	RELAY_CONNECTING,	/* resolving and connecting (upstream.c) */
	RELAY_HANDSHAKE,	/* TLS handshake (implicit or after STARTTLS) */
	RELAY_GREETING,		/* waiting for 220 */
	RELAY_EHLO,		/* EHLO sent */
	RELAY_STARTTLS,		/* STARTTLS sent */
	RELAY_TOKEN,		/* waiting for an OAuth access token */
	RELAY_AUTH,		/* AUTH sent, exchange in progress */
	RELAY_READY,		/* idle, authenticated: ready for a message */
	RELAY_ENVELOPE,		/* MAIL/RCPT/DATA sent, replies pending */
	RELAY_BODY,		/* streaming the body */
	RELAY_DOT,		/* final dot sent, waiting for the reply */
	RELAY_RSET,		/* RSET sent after a failed transaction */
	RELAY_QUIT,		/* QUIT sent */
	RELAY_DEAD,		/* closed; free pending */
};

#define RF_TLS		0x01	/* TLS active and verified */
#define RF_EHLO		0x02	/* EHLO answered since the last TLS start */
#define RF_AUTHED	0x04	/* AUTH succeeded */
#define RF_WASREADY	0x08	/* reached RELAY_READY once */
#define RF_ENDNOW	0x10	/* end the transaction from the timer */

/* Per-recipient progress inside a transaction. */
enum relay_rstate {
	RCPT_UNANSWERED,	/* RCPT not answered (yet) */
	RCPT_ACCEPTED,		/* 250 to RCPT: the message's fate decides */
	RCPT_REFUSED,		/* its own RCPT reply decided */
};

struct relay_txn {
	struct queue_msg *msg;		/* borrowed: the scheduler owns it */
	struct relay_rcpt_result *rcpt;	/* owned: one per pending recipient */
	unsigned char *rstate;		/* owned: enum relay_rstate each */
	size_t nrcpt;
	size_t nsent;		/* envelope commands sent: MAIL, RCPTs, DATA
				   (or BDAT) */
	size_t nreplied;	/* envelope replies received */
	size_t naccepted;	/* RCPTs accepted */
	bool failed;		/* MAIL or DATA refused: the message's fate */
	int fd;			/* body file, -1 when closed */
	uint64_t left;		/* body bytes not read yet */
	bool bol;		/* dot-stuffing: at a line start */
	char last[2];		/* last two body bytes sent */
	bool bdat;		/* CHUNKING: one "BDAT n LAST" (relay_bdat_*) */
	bool bdat_crlf;		/* BDAT: the stored body lacks its final CRLF */
	bool rset;		/* sent behind another: its RSET's reply is
				   the next one due (relay_pipe_send) */
	struct relay_result res;
	TAILQ_ENTRY(relay_txn) entry;	/* in relay_session.behind */
};

TAILQ_HEAD(relay_txn_list, relay_txn);

struct relay_session {
	uint64_t id;
	struct relay_env *env;		/* borrowed */
	/* The upstream as configured when the session began: a reload must
	 * not change the TLS mode (or the peer) under a live session. */
	enum cfg_tls tls;
	char *host;			/* owned */
	unsigned port;
	char *username;			/* owned, NULL: no AUTH */
	enum cfg_auth auth;		/* password or xoauth2, at the start */
	enum relay_state state;
	unsigned flags;			/* RF_* */
	unsigned ext;			/* SMTPPROTO_EXT_* of the last EHLO */
	struct bufferevent *bev; /* owned (a TLS filter owns the socket) */
	SSL *ssl;			/* borrowed from bev once it is TLS */
	struct event *timer;		/* owned: connect/reply timeout */
	struct upstream_conn *conn;	/* owned: resolving and connecting */
	char peer[300];			/* "host[ip]:port" */
	/* What to do about the failure that ends the session (static). */
	const struct smtpproto_advice *advice;
	struct reply reply;		/* the reply being read */
	struct cfg_secret secret;	/* password while AUTH LOGIN needs it */
	enum smtpproto_mech mech;	/* the AUTH mechanism in use */
	unsigned auth_step;		/* 334 prompts answered */
	struct oauth_secret token;	/* the access token while AUTH needs it */
	bool token_cached;		/* it came from the cache, not fresh */
	bool token_retried;		/* a refused token was renewed once */
	struct relay_txn *txn;		/* owned, NULL outside transactions:
					   the one whose replies come next */
	/* Owned: transactions sent whole behind txn, without waiting for
	 * its replies (RFC 2920, RFC 3030), oldest first. */
	struct relay_txn_list behind;
	unsigned nbehind;
	struct evbuffer *batch;		/* owned: pipelined commands being
					   gathered, else NULL */
	unsigned nmsgs;			/* transactions carried */
	TAILQ_ENTRY(relay_session) entry;
};

TAILQ_HEAD(relay_list, relay_session);

/* ---- relay.c, for relay_auth.c ---- */

/* Moves to a new state; every transition is logged at debug level. */
void relay_enter_state(struct relay_session *s, enum relay_state st);
/* Sends one command line; the dialogue log masks AUTH payloads. */
void relay_send_line(struct relay_session *s, const char *line);
/* Sends a line made by an smtpproto encoder (room for CRLF); takes it. */
int relay_send_secret(struct relay_session *s, char *line, size_t len,
    int after_auth);
/* (Re)arms the session timer. */
void relay_arm(struct relay_session *s, unsigned secs);
/* Enters st with the reply timeout, upstream.timeout. */
void relay_expect(struct relay_session *s, enum relay_state st);
/* Authenticated and idle: the scheduler may hand over a message. */
void relay_ready(struct relay_session *s);
/* A failure reply during session setup: close with its meaning. */
void relay_setup_failed(struct relay_session *s, enum relay_stage stage,
    const char *what);
/* Ends the session (see relay.c); memory goes from a fresh event. */
void relay_close(struct relay_session *s, enum relay_outcome o,
    enum relay_pause pause, const char *reason);
/* Finds a session by id, dead ones (free pending) included. */
struct relay_session *relay_lookup(struct relay_env *env, uint64_t id);

/* ---- relay_auth.c ---- */

/* Logs in once TLS is verified (or skips it without a user name). */
void relay_start_auth(struct relay_session *s);
/* A reply during AUTH: 334 challenges, then 235 or a refusal. */
void relay_on_auth(struct relay_session *s);

#endif
