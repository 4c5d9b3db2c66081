/*
 * relay: the outbound SMTP session to the smart host.  See relay.h.
 *
 * Two layers of dispatch, as in the inbound session: relay_readcb() and
 * relay_eventcb() deal with bytes, connects, handshakes, EOF and errors;
 * only complete, bounded replies (common/reply.c) reach relay_on_reply(),
 * which dispatches on the state.  Independent facts (TLS verified, EHLO
 * answered, authenticated) are flags; the transaction (one message with
 * its pending recipients) is its own struct.  Every way a session ends
 * goes through relay_close() with a reason=, and the memory is freed from
 * a fresh event.  What a reply means apart from the session (docs/relay.md's
 * classification) is in relay_reply.c, logging in (AUTH with a password or
 * an OAuth token) in relay_auth.c, the session's struct in
 * relay_private.h; the protocol's words (EHLO keywords, AUTH encoders,
 * advice) are common/smtpproto.c's, resolving and connecting
 * common/upstream.c's.
 *
 * Security rules that hold whatever the upstream says: AUTH and MAIL are
 * only ever sent once RF_TLS is set, which only a verified handshake sets
 * (or tls = "none", the explicit opt-in, which connects to loopback
 * addresses only); the TLS mode, host and user are those the session
 * began with, whatever a reload says meanwhile; after STARTTLS all
 * earlier knowledge (EHLO keywords, any bytes the server sent behind the
 * 220) is discarded (RFC 3207 §4.2); the password is read for the session,
 * used, and wiped, and only log_dialogue() (which masks it) sees the lines
 * that carry it.
 */
#include "relay.h"
#include "relay_private.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "body.h"
#include "addr.h"
#include "cfg.h"
#include "dsnparam.h"
#include "lineio.h"
#include "log.h"
#include "queue.h"
#include "oauth.h"
#include "reply.h"
#include "smtpproto.h"
#include "tls.h"
#include "upstream.h"
#include "token.h"

#define RELAY_QUIT_TIMEOUT	10	/* seconds to wait for 221 */
#define RELAY_BODY_HIGH		(256 * 1024)	/* output queued at most */
#define RELAY_BODY_LOW		(64 * 1024)	/* refill below this */
/* Pipelined transactions (relay_can_send): at most this many in flight
 * per session, each with a body of at most RELAY_PIPE_BODY octets. */
#define RELAY_PIPE_DEPTH	8
#define RELAY_PIPE_BODY		(64 * 1024)


/* A deferred free finds its session again by id (STYLE: async results). */
struct relay_id_arg {
	struct relay_env *env;		/* borrowed */
	uint64_t id;
};

static void relay_txn_end(struct relay_session *, bool);
static void relay_body_pump(struct relay_session *);

/* The state's name, for the debug log. */
static const char *
relay_strstate(enum relay_state st)
{
	static const char *const names[] = {
		"init", "connecting", "handshake", "greeting",
		"ehlo", "starttls", "token", "auth", "ready", "envelope", "body", "dot",
		"rset", "quit", "dead",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ?
	    names[st] : "?";
}

/* Moves to a new state; every transition is logged at debug level. */
void
relay_enter_state(struct relay_session *s, enum relay_state st)
{
	log_msg(LOG_DEBUG, NULL, "relay session=%" PRIu64 " state %s -> %s",
	    s->id, relay_strstate(s->state), relay_strstate(st));
	s->state = st;
}

/* ---- output ---- */

/* Sends one command line; the dialogue log masks AUTH payloads. */
void
relay_send_line(struct relay_session *s, const char *line)
{
	char buf[QUEUE_MAX_ADDR + 256];
	int n;

	log_dialogue("upstream", ">", line, 0);
	n = snprintf(buf, sizeof(buf), "%s\r\n", line);
	if (n < 0 || (size_t)n >= sizeof(buf))
		n = snprintf(buf, sizeof(buf), "NOOP\r\n");
	/* One add, one TLS record: the output writes at once on add. */
	evbuffer_add(s->batch != NULL ? s->batch :
	    bufferevent_get_output(s->bev), buf, (size_t)n);
}

/* Wipes and frees a credential buffer once the output has taken it. */
static void
relay_secret_cleanup(const void *data, size_t len, void *arg)
{
	smtpproto_line_free(arg, len);
}

/*
 * Sends a line carrying a credential, made by an smtpproto encoder (which
 * left room for the CRLF): the bytes go by reference and are wiped once
 * written, so no copy of them stays in freed memory.  Takes line.
 */
int
relay_send_secret(struct relay_session *s, char *line, size_t len,
    int after_auth)
{
	log_dialogue("upstream", ">", line, after_auth);
	memcpy(line + len, "\r\n", 3);
	if (evbuffer_add_reference(bufferevent_get_output(s->bev), line,
	    len + 2, relay_secret_cleanup, line) < 0) {
		smtpproto_line_free(line, len + 2);
		return -ENOMEM;
	}
	return 0;
}

/* (Re)arms the session timer. */
void
relay_arm(struct relay_session *s, unsigned secs)
{
	struct timeval tv = { .tv_sec = secs };

	evtimer_add(s->timer, &tv);
}

/* The reply timeout: upstream.timeout. */
void
relay_expect(struct relay_session *s, enum relay_state st)
{
	relay_enter_state(s, st);
	relay_arm(s, s->env->cfg->upstream.timeout);
}

/* ---- the transaction ---- */

/* Frees a transaction (closes its body file); accepts NULL. */
static void
relay_txn_free(struct relay_txn *t)
{
	if (t == NULL)
		return;
	if (t->fd >= 0)
		close(t->fd);
	free(t->rcpt);
	free(t->rstate);
	free(t);
}

/* A transaction for the pending recipients of m; NULL on no memory. */
static struct relay_txn *
relay_txn_new(struct relay_session *s, struct queue_msg *m)
{
	struct relay_txn *t;
	size_t i, n = 0;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->fd = -1;
	t->msg = m;
	t->rcpt = calloc(m->nrcpt, sizeof(*t->rcpt));
	t->rstate = calloc(m->nrcpt, 1);
	if (t->rcpt == NULL || t->rstate == NULL) {
		relay_txn_free(t);
		return NULL;
	}
	for (i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_PENDING)
			t->rcpt[n++].index = i;
	t->nrcpt = n;
	snprintf(t->res.relay, sizeof(t->res.relay), "%s", s->peer);
	t->res.dsn = (s->ext & SMTPPROTO_EXT_DSN) != 0;
	return t;
}

/* Sets the message's fate (the first one given wins). */
static void
relay_txn_fail(struct relay_txn *t, enum relay_outcome o,
    enum relay_pause pause, const char *reply)
{
	if (t->failed)
		return;
	t->failed = true;
	t->res.outcome = o;
	t->res.pause = pause;
	t->res.advice = NULL;
	snprintf(t->res.reply, sizeof(t->res.reply), "%s", reply);
}

/* Sets the message's fate from the current reply, with its advice. */
static void
relay_txn_refused(struct relay_session *s, enum relay_outcome o,
    enum relay_pause pause, const char *rs)
{
	struct relay_txn *t = s->txn;
	bool was = t->failed;

	relay_txn_fail(t, o, pause, rs);
	if (!was)
		t->res.advice = smtpproto_advice_reply(&s->reply);
}

/* The MAIL command for m, with the parameters the upstream takes. */
static int
relay_mail_line(struct relay_session *s, const struct queue_msg *m,
    char *buf, size_t sz)
{
	const char *from = m->from;
	int n;

	if (m->from[0] != '\0' && !(m->flags & QUEUE_F_DSN) &&
	    s->env->cfg->rewrite.envelope_from != NULL)
		from = s->env->cfg->rewrite.envelope_from;
	n = snprintf(buf, sz, "MAIL FROM:<%s>", from);
	if (s->ext & SMTPPROTO_EXT_SIZE)
		n += snprintf(buf + n, sz - (size_t)n, " SIZE=%" PRIu64,
		    m->size);
	if ((m->flags & QUEUE_F_8BITMIME) && (s->ext & SMTPPROTO_EXT_8BITMIME))
		n += snprintf(buf + n, sz - (size_t)n, " BODY=8BITMIME");
	if ((m->flags & QUEUE_F_SMTPUTF8) && (s->ext & SMTPPROTO_EXT_SMTPUTF8))
		n += snprintf(buf + n, sz - (size_t)n, " SMTPUTF8");
	/* RFC 3461 §6.2: the DSN request goes on only to a DSN server. */
	if (m->ret != QUEUE_RET_UNSET && (s->ext & SMTPPROTO_EXT_DSN))
		n += snprintf(buf + n, sz - (size_t)n, " RET=%s",
		    m->ret == QUEUE_RET_FULL ? "FULL" : "HDRS");
	if (m->envid != NULL && (s->ext & SMTPPROTO_EXT_DSN))
		n += snprintf(buf + n, sz - (size_t)n, " ENVID=%s", m->envid);
	return n > 0 && (size_t)n < sz ? 0 : -ENAMETOOLONG;
}

/* The RCPT command for recipient rc, with NOTIFY/ORCPT for a DSN server. */
static void
relay_rcpt_line(struct relay_session *s, const struct queue_rcpt *rc,
    char *buf, size_t sz)
{
	char notify[64];
	size_t i;
	int n;

	n = snprintf(buf, sz, "RCPT TO:<%s>", rc->addr);
	if (!(s->ext & SMTPPROTO_EXT_DSN) || n < 0 || (size_t)n >= sz)
		return;
	if (rc->notify != 0) {
		dsnparam_notify_format(rc->notify, notify, sizeof(notify));
		for (i = 0; notify[i] != '\0'; i++)
			notify[i] = (char)toupper((unsigned char)notify[i]);
		n += snprintf(buf + n, sz - (size_t)n, " NOTIFY=%s", notify);
	}
	if (rc->orcpt != NULL && n > 0 && (size_t)n < sz)
		snprintf(buf + n, sz - (size_t)n, " ORCPT=%s", rc->orcpt);
}

/* Sends envelope command k of t: 0 MAIL, 1..nrcpt RCPT, nrcpt+1 DATA. */
static void
relay_envelope_cmd(struct relay_session *s, struct relay_txn *t, size_t k)
{
	char line[QUEUE_MAX_ADDR + DSNPARAM_ORCPT_MAX + 128];

	if (k == 0) {
		if (relay_mail_line(s, t->msg, line, sizeof(line)) < 0)
			snprintf(line, sizeof(line), "MAIL FROM:<>");
	} else if (k <= t->nrcpt)
		relay_rcpt_line(s, &t->msg->rcpt[t->rcpt[k - 1].index], line,
		    sizeof(line));
	else if (t->bdat)
		snprintf(line, sizeof(line), "BDAT %" PRIu64 " LAST",
		    t->msg->size + (t->bdat_crlf ? 2 : 0));
	else
		snprintf(line, sizeof(line), "DATA");
	relay_send_line(s, line);
	t->nsent++;
}

/*
 * Sends what may go now: with PIPELINING (RFC 2920) MAIL, every RCPT and
 * DATA at once; else the next command once the previous one is answered.
 */
static void
relay_envelope_push(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	size_t total = t->nrcpt + 2;

	if (s->ext & SMTPPROTO_EXT_PIPELINING) {
		/* One write for the group (RFC 2920 §3.1). */
		s->batch = evbuffer_new();
		while (t->nsent < total)
			relay_envelope_cmd(s, t, t->nsent);
		if (s->batch != NULL) {
			evbuffer_add_buffer(bufferevent_get_output(s->bev),
			    s->batch);
			evbuffer_free(s->batch);
			s->batch = NULL;
		}
		if (t->bdat)
			relay_body_pump(s);	/* the chunk follows at once */
	} else if (t->nsent == t->nreplied && t->nsent < total)
		relay_envelope_cmd(s, t, t->nsent);
}

/*
 * CHUNKING (RFC 3030) with PIPELINING: the whole transaction, MAIL, the
 * RCPTs, "BDAT n LAST" and the n body octets, goes in one write and costs
 * one round trip, against two with DATA (the 354 is awaited).  The body
 * is sent as stored, without dot-stuffing (BDAT has no terminator), plus
 * a CRLF when it lacks one, as the DATA path adds; n counts it.  Decides
 * and prepares that for t; 0 or a negative errno (reading the body).
 */
static int
relay_bdat_prepare(struct relay_session *s, struct relay_txn *t)
{
	char tail[2];
	ssize_t n;

	if ((s->ext & (SMTPPROTO_EXT_CHUNKING | SMTPPROTO_EXT_PIPELINING)) !=
	    (SMTPPROTO_EXT_CHUNKING | SMTPPROTO_EXT_PIPELINING))
		return 0;
	t->bdat = true;
	if (t->msg->size < 2) {
		t->bdat_crlf = true;
		return 0;
	}
	n = pread(t->fd, tail, 2,
	    (off_t)(t->msg->body_offset + t->msg->size - 2));
	if (n < 0)
		return -errno;
	t->bdat_crlf = n != 2 || tail[0] != '\r' || tail[1] != '\n';
	return 0;
}

/* Recipients of m still to be sent. */
static size_t
relay_npending(const struct queue_msg *m)
{
	size_t i, n = 0;

	for (i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_PENDING)
			n++;
	return n;
}

/*
 * Reads t's whole body into out, as "BDAT n LAST" sends it (the CRLF it
 * may lack included), and closes the file; 0 or a negative errno.
 */
static int
relay_bdat_read(struct relay_txn *t, struct evbuffer *out)
{
	char in[BODY_CHUNK];
	uint64_t left = t->msg->size;
	ssize_t got;

	while (left > 0) {
		got = read(t->fd, in, left < sizeof(in) ? (size_t)left :
		    sizeof(in));
		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		if (evbuffer_add(out, in, (size_t)got) < 0)
			return -ENOMEM;
		left -= (uint64_t)got;
	}
	if (t->bdat_crlf && evbuffer_add(out, "\r\n", 2) < 0)
		return -ENOMEM;
	close(t->fd);
	t->fd = -1;
	return 0;
}

/*
 * Sends t behind the transactions in flight, whole and in one write:
 * RSET, so that the server starts afresh whatever became of the one
 * before (a refused chunk may leave its transaction open), then MAIL, the
 * RCPTs, "BDAT n LAST" and the body.  Its replies are read once it is at
 * the head (relay_txn_end()).  0 or a negative errno; nothing is sent
 * then.
 */
static int
relay_pipe_send(struct relay_session *s, struct relay_txn *t)
{
	struct evbuffer *body;
	int r;

	if ((r = relay_bdat_prepare(s, t)) < 0)
		return r;
	if ((body = evbuffer_new()) == NULL)
		return -ENOMEM;
	if ((r = relay_bdat_read(t, body)) < 0 ||
	    (s->batch = evbuffer_new()) == NULL) {
		evbuffer_free(body);
		return r < 0 ? r : -ENOMEM;
	}
	relay_send_line(s, "RSET");
	t->rset = true;
	while (t->nsent < t->nrcpt + 2)
		relay_envelope_cmd(s, t, t->nsent);
	evbuffer_add_buffer(s->batch, body);
	evbuffer_free(body);
	evbuffer_add_buffer(bufferevent_get_output(s->bev), s->batch);
	evbuffer_free(s->batch);
	s->batch = NULL;
	TAILQ_INSERT_TAIL(&s->behind, t, entry);
	s->nbehind++;
	return 0;
}

bool
relay_can_send(const struct relay_session *s, const struct queue_msg *m)
{
	const struct relay_txn *t = s->txn;

	if (s->state == RELAY_READY && t == NULL)
		return true;
	/* Behind a transaction whose chunk is out (RELAY_DOT with BDAT):
	 * a small message with something to send, and room in the window
	 * and in the output. */
	return s->state == RELAY_DOT && t != NULL && t->bdat &&
	    s->nbehind + 1 < RELAY_PIPE_DEPTH &&
	    m->size <= RELAY_PIPE_BODY && relay_npending(m) > 0 &&
	    (!(m->flags & QUEUE_F_SMTPUTF8) ||
	    (s->ext & SMTPPROTO_EXT_SMTPUTF8)) &&
	    evbuffer_get_length(bufferevent_get_output(s->bev)) + m->size <
	    RELAY_BODY_HIGH;
}

int
relay_send(struct relay_session *s, struct queue_msg *m)
{
	struct relay_txn *t;
	int r;

	if (!relay_can_send(s, m))
		return -EBUSY;
	if (!(s->flags & RF_TLS) && s->tls != CFG_TLS_NONE)
		return -EPERM;	/* unreachable by construction: a last guard */
	if ((t = relay_txn_new(s, m)) == NULL)
		return -ENOMEM;
	/* Opened now: a record that is gone never starts a transaction. */
	if ((r = queue_body_open(s->env->queue, m, &t->fd)) < 0) {
		relay_txn_free(t);
		return r;
	}
	log_msg(LOG_DEBUG, m->id, "relay session=%" PRIu64 " nrcpt=%zu%s",
	    s->id, t->nrcpt, s->txn != NULL ? " pipelined" : "");
	if (s->txn != NULL) {
		if ((r = relay_pipe_send(s, t)) < 0) {
			relay_txn_free(t);
			return r;
		}
		s->nmsgs++;
		return 0;
	}
	s->txn = t;
	s->nmsgs++;
	if ((m->flags & QUEUE_F_SMTPUTF8) && !(s->ext & SMTPPROTO_EXT_SMTPUTF8))
		/* RFC 6531 §3.4: no downgrade; the message cannot go. */
		relay_txn_fail(t, RELAY_PERMFAIL, RELAY_PAUSE_NONE,
		    "554 5.6.7 the message needs SMTPUTF8 and the upstream "
		    "does not offer it");
	if (t->failed || t->nrcpt == 0) {
		/* Ends from a fresh event: no callback before we return. */
		struct timeval now = { 0, 0 };

		s->flags |= RF_ENDNOW;
		relay_enter_state(s, RELAY_ENVELOPE);
		evtimer_add(s->timer, &now);
		return 0;
	}
	relay_expect(s, RELAY_ENVELOPE);
	if ((r = relay_bdat_prepare(s, t)) < 0) {
		s->txn = NULL;
		s->nmsgs--;
		relay_txn_free(t);
		return r;
	}
	relay_envelope_push(s);
	return 0;
}

/*
 * Reports the transaction: every recipient gets its final outcome (its own
 * RCPT reply, or the message's) and the scheduler hears about it.
 */
static void
relay_txn_finish(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	struct relay_env *env = s->env;
	size_t i;

	for (i = 0; i < t->nrcpt; i++) {
		if (t->rstate[i] == RCPT_REFUSED)
			continue;
		t->rcpt[i].outcome = t->res.outcome;
		snprintf(t->rcpt[i].reply, sizeof(t->rcpt[i].reply), "%s",
		    t->res.reply);
	}
	t->res.rcpt = t->rcpt;
	t->res.nrcpt = t->nrcpt;
	s->txn = NULL;
	env->ops->done(env->arg, s->id, t->msg, &t->res);
	relay_txn_free(t);
}

/* Authenticated and idle: the scheduler may hand over a message. */
void
relay_ready(struct relay_session *s)
{
	struct relay_env *env = s->env;

	relay_enter_state(s, RELAY_READY);
	evtimer_del(s->timer);
	s->flags |= RF_WASREADY;
	env->ops->ready(env->arg, s->id);
}

/*
 * Ends the transaction and goes on: with the next one, already sent
 * behind it (its own RSET comes first); else RSET after a failure, or
 * ready.
 */
static void
relay_txn_end(struct relay_session *s, bool rset)
{
	struct relay_env *env = s->env;

	relay_txn_finish(s);
	if (s->state == RELAY_DEAD)
		return;
	if ((s->txn = TAILQ_FIRST(&s->behind)) != NULL) {
		TAILQ_REMOVE(&s->behind, s->txn, entry);
		s->nbehind--;
		relay_expect(s, RELAY_DOT);
		env->ops->ready(env->arg, s->id);	/* room for one more */
		return;
	}
	if (rset) {
		relay_send_line(s, "RSET");
		relay_expect(s, RELAY_RSET);
	} else
		relay_ready(s);
}

/* ---- replies ---- */

/* Formats the current reply for logs and results. */
static const char *
relay_reply_str(struct relay_session *s, char *buf, size_t sz)
{
	return reply_summary(&s->reply, buf, sz);
}

/* Sends EHLO with our host name. */
static void
relay_send_ehlo(struct relay_session *s)
{
	char line[600];

	snprintf(line, sizeof(line), "EHLO %s", s->env->cfg->hostname);
	relay_send_line(s, line);
	relay_expect(s, RELAY_EHLO);
}

/* A failure reply during session setup: close with its meaning. */
void
relay_setup_failed(struct relay_session *s, enum relay_stage stage,
    const char *what)
{
	enum relay_pause pause;
	enum relay_outcome o = relay_classify(stage, &s->reply, &pause);
	char rs[RELAY_REPLY_MAX], reason[RELAY_REPLY_MAX];

	if (o == RELAY_OK)
		o = RELAY_TEMPFAIL;
	s->advice = smtpproto_advice_reply(&s->reply);
	relay_reply_str(s, rs, sizeof(rs));
	snprintf(reason, sizeof(reason), "%s: %.*s", what, 400, rs);
	relay_close(s, o, pause, reason);
}

static void relay_start_tls(struct relay_session *);

/* The 220 greeting: EHLO next. */
static void
relay_on_greeting(struct relay_session *s)
{
	if (s->reply.code != 220) {
		relay_setup_failed(s, RELAY_STAGE_GREETING, "greeting");
		return;
	}
	relay_send_ehlo(s);
}

/* The EHLO reply: STARTTLS first, AUTH once TLS is verified. */
static void
relay_on_ehlo(struct relay_session *s)
{
	struct smtpproto_ehlo ehlo;

	if (reply_class(&s->reply) != 2) {
		relay_setup_failed(s, RELAY_STAGE_EHLO, "EHLO refused");
		return;
	}
	smtpproto_ehlo_parse(&s->reply, &ehlo);
	s->ext = ehlo.ext;
	s->flags |= RF_EHLO;
	if (s->flags & RF_TLS) {
		relay_start_auth(s);
		return;
	}
	if (s->tls == CFG_TLS_NONE) {
		relay_start_auth(s);
		return;
	}
	if (!(s->ext & SMTPPROTO_EXT_STARTTLS)) {
		/* Never fall back to plain text (RFC 3207 §4). */
		s->advice = smtpproto_advice_local(SMTPPROTO_LOCAL_NO_STARTTLS);
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "the upstream does not offer STARTTLS: refusing to send "
		    "credentials or mail in clear text (wrong port? use "
		    "tls = \"implicit\" for port 465)");
		return;
	}
	relay_send_line(s, "STARTTLS");
	relay_expect(s, RELAY_STARTTLS);
}

/* The reply to STARTTLS: 220 starts the handshake. */
static void
relay_on_starttls(struct relay_session *s)
{
	if (s->reply.code != 220) {
		relay_setup_failed(s, RELAY_STAGE_STARTTLS, "STARTTLS refused");
		return;
	}
	relay_start_tls(s);
}

/* One reply to the envelope: MAIL, one RCPT or DATA, in order. */
static void relay_envelope_continue(struct relay_session *);
static void relay_on_bdat(struct relay_session *);
static void relay_on_dot(struct relay_session *);

static void
relay_on_envelope(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	enum relay_pause pause;
	enum relay_outcome o;
	char rs[RELAY_REPLY_MAX];
	size_t k;

	if (t->rset) {
		/* The RSET sent before a pipelined transaction. */
		t->rset = false;
		if (reply_class(&s->reply) != 2)
			relay_close(s, RELAY_OK, RELAY_PAUSE_NONE,
			    relay_reply_str(s, rs, sizeof(rs)));
		else
			relay_arm(s, s->env->cfg->upstream.timeout);
		return;
	}
	k = t->nreplied++;
	if (t->bdat && k == t->nrcpt + 1) {
		relay_on_bdat(s);
		return;
	}
	relay_reply_str(s, rs, sizeof(rs));
	if (k == 0) {
		o = relay_classify(RELAY_STAGE_MAIL, &s->reply, &pause);
		if (reply_class(&s->reply) != 2)
			relay_txn_refused(s, o == RELAY_OK ? RELAY_TEMPFAIL : o,
			    pause, rs);
	} else if (k <= t->nrcpt) {
		struct relay_rcpt_result *rr = &t->rcpt[k - 1];

		if (t->failed) {
			/* After a refused MAIL, the 503s are no verdict. */
			;
		} else if (reply_class(&s->reply) == 2) {
			t->rstate[k - 1] = RCPT_ACCEPTED;
			t->naccepted++;
		} else {
			o = relay_classify(RELAY_STAGE_RCPT, &s->reply, &pause);
			t->rstate[k - 1] = RCPT_REFUSED;
			rr->outcome = o == RELAY_OK ? RELAY_TEMPFAIL : o;
			snprintf(rr->reply, sizeof(rr->reply), "%s", rs);
			if (o == RELAY_PAUSE)
				relay_txn_refused(s, o, pause, rs);
		}
	} else {
		if (s->reply.code == 354 && !t->failed && t->naccepted > 0) {
			relay_body_pump(s);
			return;
		}
		if (s->reply.code == 354) {
			/* A server that says 354 with nothing to send to. */
			relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
			    "354 to DATA without an accepted recipient");
			return;
		}
		o = relay_classify(RELAY_STAGE_DATA, &s->reply, &pause);
		relay_txn_refused(s, o == RELAY_OK ? RELAY_TEMPFAIL : o, pause,
		    rs);
	}
	if (s->reply.code == 421) {
		relay_txn_refused(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, rs);
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, rs);
		return;
	}
	relay_envelope_continue(s);
}

/* After an envelope reply: send the next command, wait, or end. */
static void
relay_envelope_continue(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	size_t total = t->nrcpt + 2;

	if (!(s->ext & SMTPPROTO_EXT_PIPELINING) && !t->failed &&
	    !(t->nreplied == t->nrcpt + 1 && t->naccepted == 0) &&
	    t->nreplied < total) {
		relay_envelope_push(s);
		relay_arm(s, s->env->cfg->upstream.timeout);
		return;
	}
	if ((s->ext & SMTPPROTO_EXT_PIPELINING) && t->nreplied < t->nsent) {
		relay_arm(s, s->env->cfg->upstream.timeout);
		return;
	}
	if (!t->failed)
		relay_txn_fail(t, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "no recipient accepted");
	relay_txn_end(s, true);
}

/* ---- the body ---- */

/* Opens the body after 354 and starts streaming it. */
static int
relay_body_open(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	int r;

	if (t->fd < 0 &&
	    (r = queue_body_open(s->env->queue, t->msg, &t->fd)) < 0)
		return r;
	t->left = t->msg->size;
	t->bol = true;
	t->last[0] = '\r';
	t->last[1] = '\n';
	bufferevent_setwatermark(s->bev, EV_WRITE, RELAY_BODY_LOW, 0);
	relay_enter_state(s, RELAY_BODY);
	return 0;
}

/* Ends the body: CRLF if the content lacks one, then "." CRLF. */
static void
relay_body_end(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	struct evbuffer *out = bufferevent_get_output(s->bev);

	close(t->fd);
	t->fd = -1;
	if (t->bdat) {
		/* The chunk is complete; its reply is the message's fate. */
		if (t->bdat_crlf)
			evbuffer_add(out, "\r\n", 2);
	} else {
		if (t->last[0] != '\r' || t->last[1] != '\n')
			evbuffer_add(out, "\r\n", 2);
		evbuffer_add(out, ".\r\n", 3);
		log_dialogue("upstream", ">", ".", 0);
	}
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
	relay_expect(s, RELAY_DOT);
}

/*
 * Streams the body from the spool, re-doing dot-stuffing (RFC 5321
 * §4.5.2), never holding more than RELAY_BODY_HIGH bytes in the output;
 * the write callback calls again as the output drains.
 */
static void
relay_body_pump(struct relay_session *s)
{
	static char in[BODY_CHUNK], stuffed[2 * BODY_CHUNK];
	struct relay_txn *t = s->txn;
	struct evbuffer *out;
	size_t want, n;
	ssize_t got;
	int r;

	if (s->state != RELAY_BODY && (r = relay_body_open(s)) < 0) {
		char reason[RELAY_REPLY_MAX];

		snprintf(reason, sizeof(reason), "cannot read the spool: %s",
		    strerror(-r));
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, reason);
		return;
	}
	out = bufferevent_get_output(s->bev);
	while (t->left > 0 && evbuffer_get_length(out) < RELAY_BODY_HIGH) {
		want = t->left < sizeof(in) ? (size_t)t->left : sizeof(in);
		got = read(t->fd, in, want);
		if (got <= 0) {
			relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
			    got < 0 ? "spool read error" : "spool file "
			    "shorter than its size");
			return;
		}
		if (t->bdat)
			evbuffer_add(out, in, (size_t)got);
		else {
			n = body_stuff(in, (size_t)got, &t->bol, stuffed);
			evbuffer_add(out, stuffed, n);
		}
		if (got >= 2)
			memcpy(t->last, in + got - 2, 2);
		else {
			t->last[0] = t->last[1];
			t->last[1] = in[0];
		}
		t->left -= (uint64_t)got;
	}
	relay_arm(s, s->env->cfg->upstream.timeout);
	if (t->left == 0)
		relay_body_end(s);
}

/*
 * The reply to "BDAT n LAST": after a refused MAIL or with no recipient
 * accepted it decides nothing (the server had to read the chunk anyway);
 * else it decides for every accepted recipient, as the final dot's does.
 */
static void
relay_on_bdat(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	char rs[RELAY_REPLY_MAX];

	if (!t->failed && t->naccepted > 0) {
		relay_on_dot(s);
		return;
	}
	if (s->reply.code == 421) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    relay_reply_str(s, rs, sizeof(rs)));
		return;
	}
	relay_envelope_continue(s);
}

/* The reply to the final dot decides for every accepted recipient. */
static void
relay_on_dot(struct relay_session *s)
{
	struct relay_txn *t = s->txn;
	enum relay_pause pause;
	enum relay_outcome o;
	char rs[RELAY_REPLY_MAX], q[2 * RELAY_REPLY_MAX];

	relay_reply_str(s, rs, sizeof(rs));
	o = relay_classify(RELAY_STAGE_DOT, &s->reply, &pause);
	if (o == RELAY_OK && reply_class(&s->reply) != 2)
		o = RELAY_TEMPFAIL;
	if (o != RELAY_OK)
		t->res.advice = smtpproto_advice_reply(&s->reply);
	if (o == RELAY_TEMPFAIL)
		log_msg(LOG_NOTICE, t->msg->id, "temporary failure after the "
		    "final dot: the upstream may deliver the message anyway, "
		    "and the retry may duplicate it (RFC 1047) reply=\"%s\"",
		    log_quote(q, sizeof(q), rs));
	t->res.outcome = o;
	t->res.pause = pause;
	snprintf(t->res.reply, sizeof(t->res.reply), "%s", rs);
	t->failed = o != RELAY_OK;
	if (s->reply.code == 421) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, rs);
		return;
	}
	relay_txn_end(s, o != RELAY_OK);
}

/* ---- dispatch ---- */

/* A complete reply arrived: what it means depends on the state. */
static void
relay_on_reply(struct relay_session *s)
{
	char rs[RELAY_REPLY_MAX];

	switch (s->state) {
	case RELAY_GREETING:
		relay_on_greeting(s);
		break;
	case RELAY_EHLO:
		relay_on_ehlo(s);
		break;
	case RELAY_STARTTLS:
		relay_on_starttls(s);
		break;
	case RELAY_AUTH:
		relay_on_auth(s);
		break;
	case RELAY_ENVELOPE:
		relay_on_envelope(s);
		break;
	case RELAY_BODY:
	case RELAY_DOT:
		/* With BDAT the envelope's replies come while and after the
		 * chunk is sent; the last of them is the chunk's. */
		if (s->txn != NULL && s->txn->bdat)
			relay_on_envelope(s);
		else if (s->state == RELAY_DOT)
			relay_on_dot(s);
		else
			relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
			    relay_reply_str(s, rs, sizeof(rs)));
		break;
	case RELAY_RSET:
		if (reply_class(&s->reply) == 2)
			relay_ready(s);
		else
			relay_close(s, RELAY_OK, RELAY_PAUSE_NONE,
			    relay_reply_str(s, rs, sizeof(rs)));
		break;
	case RELAY_QUIT:
		relay_close(s, RELAY_OK, RELAY_PAUSE_NONE, "quit");
		break;
	default:
		/* Unsolicited: an idle timeout (451 4.4.2), a 421... */
		relay_close(s, s->txn != NULL ? RELAY_TEMPFAIL : RELAY_OK,
		    RELAY_PAUSE_NONE, relay_reply_str(s, rs, sizeof(rs)));
		break;
	}
}

/* Takes one reply line from in; false when none is complete yet. */
static bool
relay_read_line(struct relay_session *s, struct evbuffer *in)
{
	char line[REPLY_LINE_MAX + 3];
	size_t len;
	int r;

	switch (lineio_get(in, REPLY_LINE_MAX + 2, NULL, line, &len)) {
	case LINEIO_AGAIN:
		return false;
	case LINEIO_TOO_LONG:
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "reply line too long");
		return false;
	case LINEIO_LINE:
		break;
	}
	log_dialogue("upstream", "<", line, 0);
	r = reply_feed(&s->reply, line, len);
	if (r == -EAGAIN)
		return true;
	if (r < 0) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "malformed reply from the upstream");
		return false;
	}
	relay_on_reply(s);
	return true;
}

/* Input: complete reply lines go to relay_read_line(). */
static void
relay_readcb(struct bufferevent *bev, void *arg)
{
	struct relay_session *s = arg;

	/* A switch to TLS replaces s->bev: stop reading the old one. */
	while (s->state != RELAY_DEAD && s->state != RELAY_HANDSHAKE &&
	    bev == s->bev)
		if (!relay_read_line(s, bufferevent_get_input(bev)))
			break;
}

/* Output drained: stream more of the body. */
static void
relay_writecb(struct bufferevent *bev, void *arg)
{
	struct relay_session *s = arg;

	if (s->state == RELAY_BODY && s->txn != NULL && s->txn->fd >= 0)
		relay_body_pump(s);
}

/* ---- connection and TLS ---- */

static void relay_eventcb(struct bufferevent *, short, void *);

/* Wraps the connection in TLS: implicit at connect, or after 220. */
static void
relay_start_tls(struct relay_session *s)
{
	const char *host = s->host;
	struct bufferevent *tb;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char reason[RELAY_REPLY_MAX];
	SSL_CTX *ctx;
	SSL *ssl;

	/* RFC 3207 §4.2: nothing sent before the handshake may count. */
	evbuffer_drain(in, evbuffer_get_length(in));
	s->flags &= ~(RF_EHLO | RF_TLS);
	s->ext = 0;
	ctx = s->env->ops->tls_ctx(s->env->arg, reason, sizeof(reason));
	if (ctx == NULL) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, reason);
		return;
	}
	if (tls_ssl_new(ctx, host, &ssl) < 0) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "cannot set up TLS");
		return;
	}
	tb = bufferevent_openssl_filter_new(s->env->base, s->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (tb == NULL) {
		SSL_free(ssl);
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "cannot set up TLS");
		return;
	}
	s->bev = tb;
	s->ssl = ssl;
	bufferevent_setcb(tb, relay_readcb, relay_writecb, relay_eventcb, s);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	relay_enter_state(s, RELAY_HANDSHAKE);
	relay_arm(s, s->env->cfg->upstream.timeout);
}

/* The handshake is done: only a verified peer goes on. */
static void
relay_tls_done(struct relay_session *s)
{
	char desc[128];

	if (!tls_verified(s->ssl)) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "TLS peer not verified");
		return;
	}
	s->flags |= RF_TLS;
	log_msg(LOG_INFO, NULL, "relay session=%" PRIu64 " tls=\"%s\" "
	    "verified=%s relay=%s", s->id, tls_describe(s->ssl, desc,
	    sizeof(desc)), s->host, s->peer);
	if (s->tls == CFG_TLS_IMPLICIT &&
	    !(s->flags & RF_EHLO)) {
		relay_expect(s, RELAY_GREETING);
		return;
	}
	relay_send_ehlo(s);
}

/* Connected over TCP to s->peer. */
static void
relay_connected(struct relay_session *s)
{
	log_msg(LOG_INFO, NULL, "relay session=%" PRIu64 " connected "
	    "relay=%s", s->id, s->peer);
	if (s->tls == CFG_TLS_IMPLICIT)
		relay_start_tls(s);
	else
		relay_expect(s, RELAY_GREETING);
}

/* Connect, handshake done, EOF and errors. */
static void
relay_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct relay_session *s = arg;
	char reason[RELAY_REPLY_MAX];

	if (bev != s->bev || s->state == RELAY_DEAD)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		if (s->state == RELAY_HANDSHAKE)
			relay_tls_done(s);
		return;
	}
	if (s->state == RELAY_HANDSHAKE) {
		s->advice = smtpproto_advice_local(smtpproto_local_cert(
		    SSL_get_verify_result(s->ssl)));
		tls_error_string(s->ssl, bufferevent_get_openssl_error(bev),
		    reason, sizeof(reason));
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, reason);
		return;
	}
	if (s->state == RELAY_QUIT) {
		relay_close(s, RELAY_OK, RELAY_PAUSE_NONE, "quit");
		return;
	}
	snprintf(reason, sizeof(reason), "lost connection in state %s%s",
	    relay_strstate(s->state), (what & BEV_EVENT_EOF) ? "" :
	    " (error)");
	relay_close(s, (s->flags & RF_WASREADY) && s->txn == NULL ?
	    RELAY_OK : RELAY_TEMPFAIL, RELAY_PAUSE_NONE, reason);
}

/* Formats "host[ip]:port" for an address. */
static void
relay_format_peer(struct relay_session *s, const struct sockaddr *sa)
{
	char ip[64];

	snprintf(s->peer, sizeof(s->peer), "%s[%s]:%u", s->host,
	    addr_sockaddr_str(sa, ip, sizeof(ip)), s->port);
}

bool
relay_is_loopback(const struct sockaddr *sa)
{
	return addr_is_loopback(sa);
}

/* Takes the connected socket: a bufferevent over it, then the greeting. */
static void
relay_take_socket(struct relay_session *s, int fd)
{
	s->bev = bufferevent_socket_new(s->env->base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		close(fd);
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "out of memory");
		return;
	}
	bufferevent_setcb(s->bev, relay_readcb, relay_writecb, relay_eventcb,
	    s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	relay_connected(s);
}

/* The outcome of resolving and connecting (common/upstream.c). */
static void
relay_connect_cb(void *arg, uint64_t id, const struct upstream_result *res)
{
	struct relay_session *s = relay_lookup(arg, id);

	if (s == NULL || s->state != RELAY_CONNECTING) {
		/* Unreachable: closing a session cancels its attempt. */
		if (res->fd >= 0)
			close(res->fd);
		return;
	}
	s->conn = NULL;
	snprintf(s->peer, sizeof(s->peer), "%s", res->peer);
	if (res->nplaintext > 0)
		log_msg(LOG_WARNING, NULL, "relay session=%" PRIu64 " refused "
		    "addresses of %s: tls = \"none\" allows only a loopback "
		    "address (%s)", s->id, s->host, res->tried);
	if (res->status != UPSTREAM_CONNECTED) {
		s->advice = res->advice;
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, res->reason);
		return;
	}
	relay_take_socket(s, res->fd);
}

/*
 * Resolves the host and connects to its addresses in turn, the way the
 * doctor does (common/upstream.c): with tls = "none", loopback ones only.
 */
static void
relay_connect(struct relay_session *s)
{
	struct upstream_target t = {
		.host = s->host,
		.port = s->port,
		.loopback_only = s->tls == CFG_TLS_NONE,
		.secs = upstream_connect_secs(s->env->cfg->upstream.timeout),
		.resolve_secs = s->env->cfg->upstream.timeout,
	};

	relay_enter_state(s, RELAY_CONNECTING);
	if (upstream_connect(s->env->base, s->env->dns, &t, relay_connect_cb,
	    s->env, s->id, &s->conn) < 0)
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "out of memory");
}

/* The one timer: start, connect timeout, reply timeout, deferred end. */
static void
relay_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_session *s = arg;
	char reason[RELAY_REPLY_MAX];

	if (s->flags & RF_ENDNOW) {
		s->flags &= ~RF_ENDNOW;
		relay_txn_end(s, false);
		return;
	}
	switch (s->state) {
	case RELAY_INIT:
		if (s->bev != NULL)	/* relay_new_fd(): connected already */
			relay_connected(s);
		else
			relay_connect(s);
		return;
	case RELAY_QUIT:
		relay_close(s, RELAY_OK, RELAY_PAUSE_NONE, "quit (no 221)");
		return;
	default:
		snprintf(reason, sizeof(reason), "timeout in state %s",
		    relay_strstate(s->state));
		relay_close(s, (s->flags & RF_WASREADY) && s->txn == NULL ?
		    RELAY_OK : RELAY_TEMPFAIL, RELAY_PAUSE_NONE, reason);
		return;
	}
}

/* ---- life cycle ---- */

/* Frees a session; only from a fresh event or at exit. */
static void
relay_free(struct relay_session *s)
{
	struct relay_txn *t;

	TAILQ_REMOVE(s->env->sessions, s, entry);
	upstream_cancel(s->conn);
	relay_txn_free(s->txn);
	while ((t = TAILQ_FIRST(&s->behind)) != NULL) {
		TAILQ_REMOVE(&s->behind, t, entry);
		relay_txn_free(t);
	}
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	if (s->timer != NULL)
		event_free(s->timer);
	cfg_secret_clear(&s->secret);
	oauth_secret_free(&s->token);
	free(s->host);
	free(s->username);
	free(s);
}

/* The deferred free, finding the session by id. */
static void
relay_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay_id_arg *da = arg;
	struct relay_session *s = relay_lookup(da->env, da->id);

	free(da);
	if (s != NULL)
		relay_free(s);
}

/*
 * Reports s->txn, in flight as the session ends, deferred.  It may have
 * been delivered all the same (RFC 1047), which is logged, when its final
 * dot or its chunk is out (out), no reply of its own refused it, with BDAT
 * a recipient was or may yet have been accepted, and the session does not
 * end on a 421 (after which the server takes nothing more).
 */
static void
relay_txn_lost(struct relay_session *s, bool out, const char *reason,
    const char *q)
{
	struct relay_txn *t = s->txn;

	if (out && !t->failed && !(s->reply.done && s->reply.code == 421) &&
	    (!t->bdat || t->naccepted > 0 || t->nreplied < t->nrcpt + 1)) {
		t->res.dot_sent = true;
		log_msg(LOG_WARNING, t->msg->id, "connection lost after the "
		    "final dot, before the reply: the message may have been "
		    "delivered; the retry may duplicate it (RFC 1047) relay=%s "
		    "reason=\"%s\"", s->peer, q);
	}
	if (!t->failed || t->res.outcome == RELAY_OK)
		relay_txn_fail(t, RELAY_TEMPFAIL, RELAY_PAUSE_NONE, reason);
	t->failed = true;
	relay_txn_finish(s);
}

/*
 * Ends the session: a message in flight is reported first (deferred, and
 * the RFC 1047 window logged when the dot was out), then closed(), then the
 * memory goes from a fresh event.
 */
void
relay_close(struct relay_session *s, enum relay_outcome o,
    enum relay_pause pause, const char *reason)
{
	struct relay_env *env = s->env;
	struct relay_end end = { 0 };
	struct relay_id_arg *da;
	struct relay_txn *t = s->txn;
	enum relay_state was = s->state;
	char q[2 * RELAY_REPLY_MAX];

	if (s->state == RELAY_DEAD)
		return;
	log_quote(q, sizeof(q), reason);
	relay_enter_state(s, RELAY_DEAD);
	evtimer_del(s->timer);
	upstream_cancel(s->conn);
	s->conn = NULL;
	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	cfg_secret_clear(&s->secret);
	oauth_secret_free(&s->token);
	if (was == RELAY_TOKEN && env->token != NULL)
		token_cancel(env->token, s->id);
	if (t != NULL)
		relay_txn_lost(s, was == RELAY_DOT, reason, q);
	/* Sent whole behind it, not answered: deferred too. */
	while ((t = TAILQ_FIRST(&s->behind)) != NULL) {
		TAILQ_REMOVE(&s->behind, t, entry);
		s->nbehind--;
		s->txn = t;
		relay_txn_lost(s, true, reason, q);
	}
	log_msg(o == RELAY_OK ? LOG_INFO : LOG_NOTICE, NULL, "relay session=%"
	    PRIu64 " closed relay=%s messages=%u outcome=%s reason=\"%s\"",
	    s->id, s->peer[0] != '\0' ? s->peer : s->host,
	    s->nmsgs, relay_stroutcome(o), q);
	end.was_ready = (s->flags & RF_WASREADY) != 0;
	end.outcome = o;
	end.pause = pause;
	end.advice = s->advice;
	snprintf(end.reason, sizeof(end.reason), "%s", reason);
	env->ops->closed(env->arg, s->id, &end);
	if ((da = malloc(sizeof(*da))) != NULL) {
		da->env = env;
		da->id = s->id;
		if (event_base_once(env->base, -1, EV_TIMEOUT, relay_free_cb,
		    da, NULL) == 0)
			return;
		free(da);
	}
	/* Leaks rather than frees on a stack that may use it. */
	log_msg(LOG_ERR, NULL, "relay session=%" PRIu64 " cannot schedule "
	    "its free", s->id);
}

struct relay_session *
relay_new(struct relay_env *env, uint64_t id)
{
	const struct cfg_upstream *u = &env->cfg->upstream;
	struct relay_session *s;
	struct timeval now = { 0, 0 };

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->id = id;
	s->env = env;
	s->tls = u->tls;
	s->auth = env->token != NULL ? u->auth : CFG_AUTH_PASSWORD;
	s->port = u->port;
	reply_init(&s->reply);
	if ((s->host = strdup(u->host)) == NULL ||
	    (u->username != NULL &&
	    (s->username = strdup(u->username)) == NULL) ||
	    (s->timer = evtimer_new(env->base, relay_timercb, s)) == NULL) {
		free(s->host);
		free(s->username);
		free(s);
		return NULL;
	}
	TAILQ_INIT(&s->behind);
	TAILQ_INSERT_TAIL(env->sessions, s, entry);
	/* Starts from a fresh event: no callback before we return. */
	evtimer_add(s->timer, &now);
	return s;
}

struct relay_session *
relay_new_fd(struct relay_env *env, uint64_t id, int fd)
{
	struct relay_session *s;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)(void *)&ss, &len) == -1)
		return NULL;
	/* The plaintext rule of upstream_connect(): loopback only (a
	 * socketpair is local too). */
	if (env->cfg->upstream.tls == CFG_TLS_NONE && ss.ss_family != AF_UNIX &&
	    !relay_is_loopback((struct sockaddr *)(void *)&ss))
		return NULL;
	if ((s = relay_new(env, id)) == NULL)
		return NULL;
	s->bev = bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		/* Not started yet (the timer has not run): free at once. */
		relay_free(s);
		return NULL;
	}
	relay_format_peer(s, (struct sockaddr *)(void *)&ss);
	bufferevent_setcb(s->bev, relay_readcb, relay_writecb, relay_eventcb,
	    s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	return s;
}

/* Finds a session by id, dead ones (free pending) included. */
struct relay_session *
relay_lookup(struct relay_env *env, uint64_t id)
{
	struct relay_session *s;

	TAILQ_FOREACH(s, env->sessions, entry)
		if (s->id == id)
			return s;
	return NULL;
}

struct relay_session *
relay_find(struct relay_env *env, uint64_t id)
{
	struct relay_session *s = relay_lookup(env, id);

	return s != NULL && s->state != RELAY_DEAD ? s : NULL;
}

void
relay_quit(struct relay_session *s, const char *reason)
{
	if (s->state == RELAY_DEAD || s->state == RELAY_QUIT)
		return;
	if (s->state != RELAY_READY) {
		relay_close(s, RELAY_OK, RELAY_PAUSE_NONE, reason);
		return;
	}
	log_msg(LOG_DEBUG, NULL, "relay session=%" PRIu64 " quit reason=\"%s\"",
	    s->id, reason);
	relay_send_line(s, "QUIT");
	relay_enter_state(s, RELAY_QUIT);
	relay_arm(s, RELAY_QUIT_TIMEOUT);
}

void
relay_stop(struct relay_session *s)
{
	if (s->state == RELAY_DOT || s->state == RELAY_DEAD)
		return;	/* the reply decides: no duplicate for a stop */
	if (s->state == RELAY_READY) {
		relay_quit(s, "stopping");
		return;
	}
	/* Before the final dot the upstream has committed to nothing. */
	relay_close(s, RELAY_OK, RELAY_PAUSE_NONE, "stopping");
}

int
relay_env_init(struct relay_env *env)
{
	if ((env->sessions = malloc(sizeof(*env->sessions))) == NULL)
		return -ENOMEM;
	TAILQ_INIT(env->sessions);
	return 0;
}

void
relay_env_free(struct relay_env *env)
{
	struct relay_session *s;

	if (env->sessions == NULL)
		return;
	while ((s = TAILQ_FIRST(env->sessions)) != NULL)
		relay_free(s);
	free(env->sessions);
	env->sessions = NULL;
}
