/*
 * smtp: the inbound ESMTP session.  See smtp.h.
 *
 * Two layers of dispatch: smtp_readcb() handles bytes (lines, DATA, long
 * lines), smtp_eventcb() handles EOF, errors and the idle timeout; only
 * complete, length-checked lines reach smtp_command().  Every way a session
 * ends goes through smtp_close() with a reason=, and the memory is freed
 * from a fresh event, never on a stack that may still use it.
 */
#include "smtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "addr.h"
#include "body.h"
#include "cfg.h"
#include "commit.h"
#include "dsnparam.h"
#include "lineio.h"
#include "log.h"
#include "queue.h"
#include "smtpproto.h"

#define SMTP_LINE_MAX		512	/* RFC 5321 §4.5.3.1.4, with CRLF */
#define SMTP_ERRORS_MAX		20	/* then 421 and close */
#define SMTP_CMDS_SLACK		100	/* commands per message beyond RCPTs */
#define SMTP_OUTPUT_MAX		(64 * 1024)	/* unread replies: stop reading */
#define SMTP_INPUT_MAX		(256 * 1024)	/* unparsed input: stop reading */

enum smtp_state {
	SMTP_CONNECTED,		/* greeted, waiting for EHLO/HELO */
	SMTP_HELO,		/* ready for MAIL */
	SMTP_MAIL,		/* MAIL accepted, waiting for RCPT */
	SMTP_RCPT,		/* at least one RCPT accepted */
	SMTP_BODY,		/* reading DATA */
	SMTP_COMMIT,		/* waiting for the queue commit; input waits */
	SMTP_QUIT,		/* last reply sent, closing */
};

#define SF_EHLO		0x01	/* EHLO (not HELO) was used */
#define SF_LONGLINE	0x02	/* discarding an over-long line */
#define SF_DEAD		0x04	/* closed; free pending */
#define SF_SHUTDOWN	0x08	/* close after the commit being waited for */
#define SF_EOF		0x10	/* the client sent EOF during a commit */
#define SF_PAUSED	0x20	/* reading stopped until replies are out */

struct smtp_txn {
	char from[ADDR_MAX];
	char **rcpt;			/* owned array of owned addresses */
	size_t nrcpt;
	struct queue_dsn_rcpt *dsn;	/* owned array parallel to rcpt, NULL
					 * until a RCPT has DSN parameters;
					 * its orcpt strings owned */
	struct dsnparam_mail dsn_mail;	/* RET=, ENVID= (RFC 3461) */
	unsigned flags;			/* QUEUE_F_* */
	struct queue_writer *writer;	/* owned */
	int error;			/* first spool error, negative errno */
	bool too_big;
	char date[64];			/* "Date: ...\r\n" if missing */
	char msgid[ADDR_MAX + 32];	/* "Message-ID: ...\r\n" if missing */
	char fromline[ADDR_MAX + 16];	/* "From: ...\r\n" if missing */
	struct hdr_opts ho;		/* header rules: the server's cfg */
	struct body body;
};

struct smtp_session {
	uint64_t id;
	struct smtp_server *srv;	/* borrowed */
	struct bufferevent *bev;	/* owned */
	enum smtp_state state;
	unsigned flags;			/* SF_* */
	char addr[INET6_ADDRSTRLEN];	/* client address */
	char helo[SMTP_LINE_MAX];
	struct smtp_txn *txn;		/* owned, NULL outside transactions */
	unsigned nerrors;
	unsigned ncmds;			/* commands since the last queued message */
	unsigned nqueued;
	TAILQ_ENTRY(smtp_session) entry;
};

struct smtp_cmd {
	const char *name;
	/* Checks order and syntax; replies and returns -1 on a problem. */
	int (*check)(struct smtp_session *, const char *);
	/* Does the work. */
	void (*proceed)(struct smtp_session *, const char *);
};

static void smtp_close(struct smtp_session *, const char *);
static void smtp_bound(struct smtp_session *);

static const char *
smtp_strstate(enum smtp_state st)
{
	switch (st) {
	case SMTP_CONNECTED:
		return "connected";
	case SMTP_HELO:
		return "helo";
	case SMTP_MAIL:
		return "mail";
	case SMTP_RCPT:
		return "rcpt";
	case SMTP_BODY:
		return "body";
	case SMTP_COMMIT:
		return "commit";
	case SMTP_QUIT:
		return "quit";
	}
	return "?";
}

/* Moves to a new state; every transition is logged at debug level. */
static void
smtp_enter_state(struct smtp_session *s, enum smtp_state st)
{
	log_msg(LOG_DEBUG, NULL, "smtp session=%" PRIu64 " state %s -> %s",
	    s->id, smtp_strstate(s->state), smtp_strstate(st));
	s->state = st;
}

/*
 * Queues reply bytes.  When nothing waits in the output and no further
 * command is buffered (the client waits for this reply), they go with one
 * send() at once: through the bufferevent, every reply would cost two
 * epoll_ctl calls (the write event enabled, then disabled once drained)
 * and a writev (docs/performance.md).  Whatever the socket does not take
 * goes through the bufferevent, which also reports errors.  The session is
 * plain TCP (there is no STARTTLS inbound): a TLS session would have to
 * go through its bufferevent only.
 */
static void
smtp_write(struct smtp_session *s, const char *buf, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	ssize_t n = 0;

	if (evbuffer_get_length(out) == 0 &&
	    evbuffer_get_length(bufferevent_get_input(s->bev)) == 0) {
		n = send(bufferevent_getfd(s->bev), buf, len,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0)
			n = 0;
	}
	if ((size_t)n < len)
		evbuffer_add(out, buf + n, len - (size_t)n);
}

/* Sends one reply line (or several, separated by "\r\n" in fmt). */
static void smtp_reply(struct smtp_session *, const char *, ...)
	__attribute__((format(printf, 2, 3)));

static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf) - 2)
		n = snprintf(buf, sizeof(buf), "451 4.3.0 Reply too long");
	log_dialogue("client", ">", buf, 0);
	memcpy(buf + n, "\r\n", 2);
	if (buf[0] == '5' || buf[0] == '4')
		s->nerrors++;
	smtp_write(s, buf, (size_t)n + 2);
}

static void
smtp_txn_free(struct smtp_txn *t)
{
	size_t i;

	if (t == NULL)
		return;
	queue_writer_free(t->writer);
	for (i = 0; i < t->nrcpt; i++) {
		free(t->rcpt[i]);
		if (t->dsn != NULL)
			free((char *)t->dsn[i].orcpt);
	}
	free(t->rcpt);
	free(t->dsn);
	body_free(&t->body);
	free(t);
}

/* Ends the transaction (RSET, EHLO, end of DATA). */
static void
smtp_txn_end(struct smtp_session *s)
{
	smtp_txn_free(s->txn);
	s->txn = NULL;
	if (s->state > SMTP_HELO)
		smtp_enter_state(s, SMTP_HELO);
}

/* ---- checks ---- */

static int
smtp_check_helo(struct smtp_session *s, const char *args)
{
	if (*args == '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: EHLO hostname");
		return -1;
	}
	return 0;
}

static int
smtp_check_mail(struct smtp_session *s, const char *args)
{
	if (s->state == SMTP_CONNECTED) {
		smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return -1;
	}
	if (s->state != SMTP_HELO) {
		smtp_reply(s, "503 5.5.1 Error: nested MAIL command");
		return -1;
	}
	if (strncasecmp(args, "FROM:", 5) != 0) {
		smtp_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return -1;
	}
	return 0;
}

static int
smtp_check_rcpt(struct smtp_session *s, const char *args)
{
	if (s->state != SMTP_MAIL && s->state != SMTP_RCPT) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return -1;
	}
	if (strncasecmp(args, "TO:", 3) != 0) {
		smtp_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return -1;
	}
	if (s->txn->nrcpt >= s->srv->cfg->limits.recipients) {
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		return -1;
	}
	return 0;
}

static int
smtp_check_data(struct smtp_session *s, const char *args)
{
	if (s->state != SMTP_RCPT) {
		smtp_reply(s, "503 5.5.1 Error: need %s command",
		    s->state == SMTP_MAIL ? "RCPT" : "MAIL");
		return -1;
	}
	if (*args != '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: DATA");
		return -1;
	}
	return 0;
}

static int
smtp_check_none(struct smtp_session *s, const char *args)
{
	return 0;
}

/* ---- proceeds ---- */

/* Keeps the client's EHLO/HELO name, printable ASCII only (it goes into
 * the Received: header). */
static void
smtp_set_helo(struct smtp_session *s, const char *args)
{
	size_t i, len = strcspn(args, " ");

	if (len >= sizeof(s->helo))
		len = sizeof(s->helo) - 1;
	for (i = 0; i < len; i++)
		s->helo[i] = (args[i] > 0x20 && args[i] < 0x7f) ? args[i] : '?';
	s->helo[len] = '\0';
}

static void
smtp_proceed_ehlo(struct smtp_session *s, const char *args)
{
	const struct cfg *cfg = s->srv->cfg;

	smtp_set_helo(s, args);
	smtp_txn_end(s);
	s->flags |= SF_EHLO;
	smtp_enter_state(s, SMTP_HELO);
	smtp_reply(s, "250-%s Hello %s [%s]\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE %" PRIu64 "\r\n"
	    "250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250-SMTPUTF8\r\n"
	    "250-DSN\r\n"
	    "250 HELP", cfg->hostname, s->helo, s->addr,
	    cfg->limits.message_size);
}

static void
smtp_proceed_helo(struct smtp_session *s, const char *args)
{
	smtp_set_helo(s, args);
	smtp_txn_end(s);
	s->flags &= ~SF_EHLO;
	smtp_enter_state(s, SMTP_HELO);
	smtp_reply(s, "250 %s", s->srv->cfg->hostname);
}

static void
smtp_proceed_mail(struct smtp_session *s, const char *args)
{
	struct smtp_txn *t;
	struct smtpproto_mail mp;
	char reply[SMTPPROTO_REPLY_MAX];
	const char *rest;
	int r;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		smtp_reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	r = addr_parse_path(args + 5, t->from, sizeof(t->from), &rest);
	if (r < 0) {
		smtp_reply(s, "501 5.1.3 Bad sender address syntax");
		goto fail;
	}
	if (smtpproto_mail_params(rest, s->srv->cfg->limits.message_size, true,
	    &mp, reply, sizeof(reply)) < 0) {
		smtp_reply(s, "%s", reply);
		goto fail;
	}
	t->flags |= mp.flags;
	t->dsn_mail = mp.dsn;
	if (!addr_is_ascii(t->from))
		t->flags |= QUEUE_F_SMTPUTF8;
	/* Too long to qualify: kept as given. */
	(void)smtpproto_qualify_sender(s->srv->cfg, t->from, sizeof(t->from));
	if ((r = queue_writer_new(s->srv->queue, &t->writer)) < 0) {
		log_msg(LOG_ERR, NULL, "spool error=\"%s\" client=[%s]",
		    strerror(-r), s->addr);
		smtp_reply(s, "452 4.3.1 Insufficient system storage");
		goto fail;
	}
	s->txn = t;
	smtp_enter_state(s, SMTP_MAIL);
	smtp_reply(s, "250 2.1.0 Ok");
	return;
fail:
	smtp_txn_free(t);
}

/*
 * Keeps the DSN request of the recipient being added (index t->nrcpt);
 * the array is made at the first recipient that has one.
 */
static int
smtp_rcpt_dsn(struct smtp_txn *t, const struct dsnparam_rcpt *d)
{
	struct queue_dsn_rcpt *nd;
	size_t cap = t->nrcpt + 1;

	if (t->dsn == NULL && d->notify == 0 && d->orcpt[0] == '\0')
		return 0;
	if ((nd = reallocarray(t->dsn, cap, sizeof(*nd))) == NULL)
		return -ENOMEM;
	if (t->dsn == NULL)
		memset(nd, 0, cap * sizeof(*nd));
	t->dsn = nd;
	nd[t->nrcpt].notify = d->notify;
	nd[t->nrcpt].orcpt = NULL;
	if (d->orcpt[0] != '\0' &&
	    (nd[t->nrcpt].orcpt = strdup(d->orcpt)) == NULL)
		return -ENOMEM;
	return 0;
}

static void
smtp_proceed_rcpt(struct smtp_session *s, const char *args)
{
	const struct cfg *cfg = s->srv->cfg;
	struct smtp_txn *t = s->txn;
	char addr[ADDR_MAX], reply[SMTPPROTO_REPLY_MAX];
	struct dsnparam_rcpt d;
	char **rcpt;

	if (smtpproto_rcpt(cfg, args + 3, addr, sizeof(addr), &d, reply,
	    sizeof(reply)) < 0) {
		smtp_reply(s, "%s", reply);
		return;
	}
	if (!addr_is_ascii(addr))
		t->flags |= QUEUE_F_SMTPUTF8;
	rcpt = reallocarray(t->rcpt, t->nrcpt + 1, sizeof(*t->rcpt));
	if (rcpt == NULL) {
		smtp_reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	t->rcpt = rcpt;
	if ((t->rcpt[t->nrcpt] = strdup(addr)) == NULL ||
	    smtp_rcpt_dsn(t, &d) < 0) {
		free(t->rcpt[t->nrcpt]);
		smtp_reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	t->nrcpt++;
	smtp_enter_state(s, SMTP_RCPT);
	smtp_reply(s, "250 2.1.5 Ok");
}

/* Body output: into the spool file unless the message is already lost. */
static void
smtp_body_out(void *arg, const char *buf, size_t len)
{
	struct smtp_session *s = arg;
	struct smtp_txn *t = s->txn;
	int r;

	if (t->error != 0 || t->too_big)
		return;
	if (t->body.size > s->srv->cfg->limits.message_size) {
		t->too_big = true;
		return;
	}
	if ((r = queue_writer_write(t->writer, buf, len)) < 0)
		t->error = r;
}

/* Writes the Received: header (RFC 5321 §4.4) and prepares Date/Message-ID. */
static int
smtp_write_trace(struct smtp_session *s, struct smtp_txn *t, time_t now)
{
	const char *host = s->srv->cfg->hostname;
	const char *id = queue_writer_id(t->writer);
	char date[48], hdr[2048], forpart[ADDR_MAX + 16] = "";
	const char *with;
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (t->nrcpt == 1)
		snprintf(forpart, sizeof(forpart), "\r\n\tfor <%s>",
		    t->rcpt[0]);
	if (t->flags & QUEUE_F_SMTPUTF8)
		with = "UTF8SMTP";
	else
		with = (s->flags & SF_EHLO) ? "ESMTP" : "SMTP";
	snprintf(hdr, sizeof(hdr), "Received: from %s ([%s])\r\n"
	    "\tby %s (smartrelay) with %s id %s%s;\r\n\t%s\r\n",
	    s->helo, s->addr, host, with, id, forpart, date);
	snprintf(t->date, sizeof(t->date), "Date: %s\r\n", date);
	snprintf(t->msgid, sizeof(t->msgid), "Message-ID: <%s.%lld@%s>\r\n",
	    id, (long long)now, host);
	if (hdr_from_line(t->fromline, sizeof(t->fromline), t->from, host) < 0)
		return -ENAMETOOLONG;
	return queue_writer_write(t->writer, hdr, strlen(hdr));
}

static void
smtp_proceed_data(struct smtp_session *s, const char *args)
{
	struct smtp_txn *t = s->txn;
	time_t now = time(NULL);
	int r;

	r = queue_writer_dsn(t->writer, t->dsn_mail.ret,
	    t->dsn_mail.envid[0] != '\0' ? t->dsn_mail.envid : NULL, t->dsn);
	if (r == 0)
		r = queue_writer_envelope(t->writer, t->from,
		    (const char *const *)t->rcpt, t->nrcpt, t->flags, now);
	if (r == 0)
		r = smtp_write_trace(s, t, now);
	if (r < 0) {
		log_msg(LOG_ERR, queue_writer_id(t->writer),
		    "spool error=\"%s\"", strerror(-r));
		smtp_reply(s, "451 4.3.0 Error: queue file write error");
		smtp_txn_end(s);
		return;
	}
	t->ho = (struct hdr_opts){ .cfg = &s->srv->cfg, .from = t->fromline,
	    .date = t->date, .msgid = t->msgid };
	body_init(&t->body, &t->ho, smtp_body_out, s);
	smtp_enter_state(s, SMTP_BODY);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
smtp_proceed_rset(struct smtp_session *s, const char *args)
{
	smtp_txn_end(s);
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_proceed_noop(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_proceed_vrfy(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "252 2.5.2 Cannot VRFY user, but will accept message "
	    "and attempt delivery");
}

static void
smtp_proceed_help(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "214-2.0.0 smartrelay: a relay to one smart host\r\n"
	    "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT "
	    "HELP VRFY\r\n"
	    "214 2.0.0 End of HELP info");
}

static void
smtp_proceed_quit(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "221 2.0.0 Bye");
	smtp_close(s, "quit");
}

static void
smtp_proceed_unimpl(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "502 5.5.1 Error: command not implemented");
}

static const struct smtp_cmd smtp_cmds[] = {
	{ "EHLO", smtp_check_helo, smtp_proceed_ehlo },
	{ "HELO", smtp_check_helo, smtp_proceed_helo },
	{ "MAIL", smtp_check_mail, smtp_proceed_mail },
	{ "RCPT", smtp_check_rcpt, smtp_proceed_rcpt },
	{ "DATA", smtp_check_data, smtp_proceed_data },
	{ "RSET", smtp_check_none, smtp_proceed_rset },
	{ "NOOP", smtp_check_none, smtp_proceed_noop },
	{ "VRFY", smtp_check_none, smtp_proceed_vrfy },
	{ "HELP", smtp_check_none, smtp_proceed_help },
	{ "QUIT", smtp_check_none, smtp_proceed_quit },
	{ "STARTTLS", smtp_check_none, smtp_proceed_unimpl },
	{ "AUTH", smtp_check_none, smtp_proceed_unimpl },
	{ "BDAT", smtp_check_none, smtp_proceed_unimpl },
	{ "EXPN", smtp_check_none, smtp_proceed_unimpl },
	{ "ETRN", smtp_check_none, smtp_proceed_unimpl },
};

/* Dispatches one complete command line (CRLF removed). */
static void
smtp_command(struct smtp_session *s, const char *line)
{
	const struct smtp_cmd *cmd = NULL;
	size_t i, len = strcspn(line, " ");
	const char *args = line + len;

	log_dialogue("client", "<", line, 0);
	while (*args == ' ')
		args++;
	for (i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++) {
		if (strlen(smtp_cmds[i].name) == len &&
		    strncasecmp(smtp_cmds[i].name, line, len) == 0) {
			cmd = &smtp_cmds[i];
			break;
		}
	}
	if (cmd == NULL)
		smtp_reply(s, "500 5.5.1 Error: command not recognized");
	else if (cmd->check(s, args) == 0)
		cmd->proceed(s, args);
	smtp_bound(s);
}

/*
 * Every input is bounded: errors, and lines per queued message.  Counts
 * the line just answered (a command, or one refused before it was parsed).
 */
static void
smtp_bound(struct smtp_session *s)
{
	if (s->state == SMTP_QUIT)
		return;
	if (s->nerrors > SMTP_ERRORS_MAX || ++s->ncmds > SMTP_CMDS_SLACK +
	    s->srv->cfg->limits.recipients) {
		smtp_reply(s, "421 4.7.0 %s Error: too many errors or "
		    "commands, closing", s->srv->cfg->hostname);
		smtp_close(s, "too many errors");
	}
}

/* Answers the end of DATA once the commit ended (result 0: durable). */
static void
smtp_committed(struct smtp_session *s, const char *id, int result)
{
	if (result < 0)
		smtp_reply(s, "451 4.3.0 Error: queue file write error");
	else {
		smtp_reply(s, "250 2.0.0 Ok: queued as %s", id);
		s->nqueued++;
		s->ncmds = 0;
	}
	smtp_txn_end(s);
}

/* A commit ended: log it and hand the message on (the session may be gone). */
static void
smtp_hand_on(struct smtp_server *srv, struct queue_writer *w, int result,
    const char *client)
{
	const char *id = queue_writer_id(w);
	char fa[LOG_ADDR_MAX];
	struct queue_msg *m;
	int r;

	if (result < 0) {
		log_msg(LOG_ERR, id, "spool error=\"%s\"", strerror(-result));
		return;
	}
	/* The writer parsed the envelope it wrote: no need to read it back. */
	if (queue_writer_take(w, &m) < 0 &&
	    (r = queue_load(srv->queue, id, &m)) < 0) {
		/* Durable, so the next start recovers it. */
		log_msg(LOG_ERR, id, "queued but not loaded error=\"%s\"",
		    strerror(-r));
		return;
	}
	log_msg(LOG_INFO, id, "queued from=%s size=%" PRIu64 " nrcpt=%zu "
	    "client=[%s]", log_addr(fa, sizeof(fa), m->from), m->size,
	    m->nrcpt, client);
	srv->queued(srv->queued_arg, m);
}

/* Finds a session waiting for its commit by id. */
static struct smtp_session *
smtp_find_committing(struct smtp_server *srv, uint64_t id)
{
	struct smtp_session *s;

	TAILQ_FOREACH(s, &srv->sessions, entry)
		if (s->id == id)
			return s->state == SMTP_COMMIT ? s : NULL;
	return NULL;
}

static void smtp_readcb(struct bufferevent *, void *);

void
smtp_commit_done(void *arg, uint64_t token, struct queue_writer *w,
    int result)
{
	struct smtp_server *srv = arg;
	struct smtp_session *s = smtp_find_committing(srv, token);

	smtp_hand_on(srv, w, result, s != NULL ? s->addr : "gone");
	if (s != NULL) {
		smtp_committed(s, queue_writer_id(w), result);
		if (s->flags & SF_SHUTDOWN) {
			smtp_reply(s, "421 4.3.2 %s Service shutting down",
			    srv->cfg->hostname);
			smtp_close(s, "shutdown");
		} else {
			/* Pipelined commands waited for this reply. */
			smtp_readcb(s->bev, s);
			if ((s->flags & SF_EOF) && s->state != SMTP_COMMIT)
				smtp_close(s, "lost connection");
		}
	}
	queue_writer_free(w);
}

/*
 * End of DATA: the message is complete.  It is committed (fsync, rename,
 * directory fsync) in the background when there is a committer, inline
 * otherwise; the 250 goes out only once that succeeded.
 */
static void
smtp_data_end(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	struct queue_writer *w;
	int r;

	if ((r = body_finish(&t->body)) < 0 && t->error == 0)
		t->error = r;
	if (t->body.nul) {
		smtp_reply(s, "554 5.6.0 Error: message contains NUL bytes, "
		    "not queued");
		smtp_txn_end(s);
		return;
	}
	if (t->too_big) {
		smtp_reply(s, "552 5.3.4 Error: message size exceeds fixed "
		    "limit of %" PRIu64 " bytes",
		    s->srv->cfg->limits.message_size);
		smtp_txn_end(s);
		return;
	}
	w = t->writer;
	if (t->error == 0 && s->srv->committer != NULL &&
	    commit_submit(s->srv->committer, w, s->id) == 0) {
		t->writer = NULL;
		smtp_enter_state(s, SMTP_COMMIT);
		return;
	}
	if ((r = t->error) == 0)
		r = queue_writer_commit(w);
	smtp_hand_on(s->srv, w, r, s->addr);
	smtp_committed(s, queue_writer_id(w), r);
}

/* Feeds DATA bytes to the filter; true when the end of data was reached. */
static bool
smtp_read_body(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	size_t used;

	while (evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
		used = body_feed(&s->txn->body, v.iov_base, v.iov_len);
		evbuffer_drain(in, used);
		if (s->txn->body.raw == BODY_END) {
			smtp_data_end(s);
			return true;
		}
	}
	return false;
}

/* Takes one line from in; false when no complete line is there yet. */
static bool
smtp_read_line(struct smtp_session *s, struct evbuffer *in)
{
	char line[SMTP_LINE_MAX + 1];
	bool skip = (s->flags & SF_LONGLINE) != 0;
	size_t len;

	switch (lineio_get(in, SMTP_LINE_MAX, &skip, line, &len)) {
	case LINEIO_AGAIN:
		s->flags = skip ? s->flags | SF_LONGLINE :
		    s->flags & ~SF_LONGLINE;
		return false;
	case LINEIO_TOO_LONG:
		s->flags &= ~SF_LONGLINE;
		smtp_reply(s, "500 5.5.2 Error: line too long");
		smtp_bound(s);
		return true;
	case LINEIO_LINE:
		break;
	}
	if (strlen(line) != len) {
		smtp_reply(s, "500 5.5.2 Error: NUL byte in command");
		smtp_bound(s);
		return true;
	}
	smtp_command(s, line);
	return true;
}

static void
smtp_readcb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (s->state != SMTP_QUIT && s->state != SMTP_COMMIT) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) >
		    SMTP_OUTPUT_MAX) {
			/* The client does not read its replies: wait. */
			s->flags |= SF_PAUSED;
			bufferevent_disable(bev, EV_READ);
			break;
		}
		if (s->state == SMTP_BODY) {
			if (!smtp_read_body(s, in))
				break;
		} else if (!smtp_read_line(s, in))
			break;
	}
}

static void
smtp_free(struct smtp_session *s)
{
	struct smtp_server *srv = s->srv;

	TAILQ_REMOVE(&srv->sessions, s, entry);
	srv->nsessions--;
	smtp_txn_free(s->txn);
	bufferevent_free(s->bev);
	free(s);
	if (srv->nsessions == 0 && srv->drained != NULL)
		srv->drained(srv->drained_arg);
}

static void
smtp_free_cb(evutil_socket_t fd, short what, void *arg)
{
	smtp_free(arg);
}

/* Frees the session from a fresh event, never on this stack. */
static void
smtp_free_later(struct smtp_session *s)
{
	if (s->flags & SF_DEAD)
		return;
	s->flags |= SF_DEAD;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	event_base_once(s->srv->base, -1, EV_TIMEOUT, smtp_free_cb, s, NULL);
}

/* Output drained: free a closing session, or resume a paused one. */
static void
smtp_writecb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SMTP_QUIT) {
		smtp_free_later(s);
		return;
	}
	if (s->flags & SF_PAUSED) {
		s->flags &= ~SF_PAUSED;
		bufferevent_enable(bev, EV_READ);
		smtp_readcb(bev, s);
	}
}

/* Ends the session: logs why and frees once the output is flushed. */
static void
smtp_close(struct smtp_session *s, const char *reason)
{
	if (s->state == SMTP_QUIT)
		return;
	log_msg(LOG_INFO, NULL, "disconnect client=[%s] reason=\"%s\" "
	    "queued=%u", s->addr, reason, s->nqueued);
	smtp_enter_state(s, SMTP_QUIT);
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		smtp_free_later(s);
}

static void
smtp_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
		/* Idle: say so; the write timeout bounds sending that. */
		smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded",
		    s->srv->cfg->hostname);
		smtp_close(s, "idle timeout");
		return;
	}
	if ((what & BEV_EVENT_EOF) && s->state == SMTP_COMMIT) {
		/* Its 250 and any pipelined commands are still to come. */
		s->flags |= SF_EOF;
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_WRITING)) {
		/* A half-closed client still reads the replies we owe it. */
		smtp_close(s, s->txn != NULL ? "lost connection in "
		    "transaction" : "lost connection");
		return;
	}
	/* A write timeout (the client does not read) or an error: go now. */
	smtp_close(s, (what & BEV_EVENT_TIMEOUT) ? "write timeout" :
	    "connection error");
	smtp_free_later(s);
}

/* Sends a refusal straight on the socket (best effort) and closes it. */
static void
smtp_refuse(int fd, const char *reply, const char *why, const char *addr)
{
	ssize_t n;

	log_msg(LOG_NOTICE, NULL, "refused client=[%s] reason=\"%s\"", addr,
	    why);
	n = write(fd, reply, strlen(reply));
	(void)n;
	close(fd);
}

void
smtp_server_init(struct smtp_server *srv)
{
	memset(srv, 0, sizeof(*srv));
	TAILQ_INIT(&srv->sessions);
	srv->next_id = 1;
}

void
smtp_accept(struct smtp_server *srv, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	const struct cfg *cfg = srv->cfg;
	struct timeval tv = { .tv_sec = cfg->limits.idle_timeout };
	struct smtp_session *s;
	char addr[INET6_ADDRSTRLEN];

	addr_sockaddr_str(sa, addr, sizeof(addr));
	if (sa->sa_family != AF_UNIX &&
	    !cfg_net_match(cfg->allow, cfg->nallow, sa)) {
		smtp_refuse(fd, "554 5.7.1 Error: access denied\r\n",
		    "not in allow", addr);
		return;
	}
	if (srv->nsessions >= cfg->limits.clients) {
		smtp_refuse(fd, "421 4.7.0 Error: too many connections, "
		    "try again later\r\n", "too many clients", addr);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		smtp_refuse(fd, "421 4.3.2 Error: out of memory\r\n",
		    "out of memory", addr);
		return;
	}
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		free(s);
		smtp_refuse(fd, "421 4.3.2 Error: out of memory\r\n",
		    "out of memory", addr);
		return;
	}
	s->id = srv->next_id++;
	s->srv = srv;
	memcpy(s->addr, addr, sizeof(addr));
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	srv->nsessions++;
	bufferevent_setcb(s->bev, smtp_readcb, smtp_writecb, smtp_eventcb, s);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_INPUT_MAX);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	log_msg(LOG_INFO, NULL, "connect client=[%s] session=%" PRIu64, addr,
	    s->id);
	smtp_reply(s, "220 %s ESMTP smartrelay", cfg->hostname);
}

void
smtp_shutdown(struct smtp_server *srv, void (*drained)(void *), void *arg)
{
	struct smtp_session *s;

	srv->drained = drained;
	srv->drained_arg = arg;
	if (srv->nsessions == 0 && drained != NULL)
		drained(arg);

	TAILQ_FOREACH(s, &srv->sessions, entry) {
		if (s->state == SMTP_QUIT)
			continue;
		if (s->state == SMTP_COMMIT) {
			/* Its 250 (or 451) comes first. */
			s->flags |= SF_SHUTDOWN;
			continue;
		}
		smtp_reply(s, "421 4.3.2 %s Service shutting down",
		    srv->cfg->hostname);
		smtp_close(s, "shutdown");
	}
}
