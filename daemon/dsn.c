/*
 * dsn: RFC 3464 delivery status notifications.  See dsn.h.
 *
 * By default a notice carries the original header section only
 * (text/rfc822-headers, RFC 6522), never the body: a message that failed
 * for its size must not fail again as a notice, and a notice stays small.
 * Only a failure notice for a message sent with RET=FULL (RFC 3461 §4.3)
 * returns the whole original, as message/rfc822, when it is at most
 * DSN_FULL_MAX bytes and needs no SMTPUTF8 (message/global is not made).
 */
#include "dsn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "cfg.h"
#include "dsnparam.h"

#define DSN_HEADERS_MAX		(32 * 1024)	/* original headers kept */
#define DSN_LINE_MAX		900		/* under RFC 5322's 998 */

/* The domain of an address, or "" for a bare name. */
static const char *
dsn_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

/* True when the sender is one of ours: bare, local_domain or hostname. */
static bool
dsn_sender_local(const struct cfg *cfg, const char *from)
{
	const char *d = dsn_domain(from);

	if (*d == '\0')
		return true;
	if (cfg->rewrite.local_domain != NULL &&
	    strcasecmp(d, cfg->rewrite.local_domain) == 0)
		return true;
	return cfg->hostname != NULL && strcasecmp(d, cfg->hostname) == 0;
}

const char *
dsn_recipient(const struct cfg *cfg, const struct queue_msg *m)
{
	if (m->from[0] == '\0' || (m->flags & QUEUE_F_DSN))
		return NULL;
	if (!dsn_sender_local(cfg, m->from))
		return m->from;
	if (cfg->bounces_to != NULL)
		return cfg->bounces_to;
	if (cfg->rewrite.envelope_from != NULL)
		return cfg->rewrite.envelope_from;
	return m->from;
}

/* What a notice of this kind says about recipient rc: "failed",
 * "relayed", "delayed", or NULL when it does not report it. */
static const char *
dsn_action(const struct queue_rcpt *rc, enum dsn_kind kind)
{
	/* No NOTIFY (RFC 3461 §4.1): failures and delays are reported. */
	unsigned notify = rc->notify != 0 ? rc->notify :
	    QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY;

	if (kind == DSN_DELAYED)
		return rc->state == QUEUE_RCPT_PENDING &&
		    (notify & QUEUE_NOTIFY_DELAY) ? "delayed" : NULL;
	if (rc->state == QUEUE_RCPT_FAILED && (notify & QUEUE_NOTIFY_FAILURE))
		return "failed";
	if (rc->state == QUEUE_RCPT_DELIVERED && rc->relayed &&
	    (notify & QUEUE_NOTIFY_SUCCESS))
		return "relayed";
	return NULL;
}

/* True when a DSN_FINAL notice for m reports a recipient as action. */
static bool
dsn_reports_action(const struct queue_msg *m, const char *action)
{
	const char *a;
	size_t i;

	for (i = 0; i < m->nrcpt; i++)
		if ((a = dsn_action(&m->rcpt[i], DSN_FINAL)) != NULL &&
		    strcmp(a, action) == 0)
			return true;
	return false;
}

/* True when a notice of this kind would report one of m's recipients. */
static bool
dsn_reports(const struct queue_msg *m, enum dsn_kind kind)
{
	size_t i;

	for (i = 0; i < m->nrcpt; i++)
		if (dsn_action(&m->rcpt[i], kind) != NULL)
			return true;
	return false;
}

bool
dsn_wanted(const struct cfg *cfg, const struct queue_msg *m)
{
	return dsn_recipient(cfg, m) != NULL && dsn_reports(m, DSN_FINAL);
}

bool
dsn_delay_wanted(const struct cfg *cfg, const struct queue_msg *m,
    time_t now)
{
	return cfg->delay_warning > 0 && m->delay_notice == 0 &&
	    now - m->arrival >= (time_t)cfg->delay_warning &&
	    dsn_recipient(cfg, m) != NULL && dsn_reports(m, DSN_DELAYED);
}

/* RFC 5322 date of t. */
static const char *
dsn_date(time_t t, char *buf, size_t sz)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, sz, "%a, %d %b %Y %H:%M:%S %z", &tm);
	return buf;
}

/*
 * The enhanced status in a stored reply "550 5.1.1 ...", when its class
 * is cls ('2', '4' or '5'); else cls.0.0.
 */
static void
dsn_status(const char *reply, char cls, char *buf, size_t sz)
{
	size_t n;

	snprintf(buf, sz, "%c.0.0", cls);
	if (reply == NULL || strlen(reply) < 10 || (reply[3] != ' ' &&
	    reply[3] != '-') || reply[4] != cls || reply[5] != '.')
		return;
	n = strspn(reply + 4, "0123456789.");
	if (n >= 5 && n < sz && (reply[4 + n] == ' ' || reply[4 + n] == '\0'))
		snprintf(buf, sz, "%.*s", (int)n, reply + 4);
}

/* Appends printf output to the writer. */
static int dsn_put(struct queue_writer *, const char *, ...)
	__attribute__((format(printf, 2, 3)));

static int
dsn_put(struct queue_writer *w, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	return queue_writer_write(w, buf, (size_t)n);
}

/* The Subject: and the first sentence of the human-readable part. */
static void
dsn_words(const struct queue_msg *m, enum dsn_kind kind,
    const char **subject, const char **text)
{
	if (kind == DSN_DELAYED) {
		*subject = "Delayed Mail (still being retried)";
		*text = "Your message could not be delivered yet to one or "
		    "more recipients.\r\nIt is still queued and will be "
		    "retried; there is nothing to do now.";
	} else if (dsn_reports_action(m, "failed")) {
		*subject = "Undelivered Mail Returned to Sender";
		*text = "Your message could not be delivered to one or more "
		    "recipients.";
	} else {
		*subject = "Successful Mail Delivery Report";
		*text = "Your message was relayed to the recipients below. "
		    "The next server does\r\nnot offer delivery "
		    "notifications, so no further notice will come.";
	}
}

/* The header section and the human-readable part. */
static int
dsn_write_head(struct queue_writer *w, const struct cfg *cfg,
    const struct queue_msg *m, enum dsn_kind kind, bool full,
    const char *to, const char *boundary)
{
	const char *subject, *text, *action;
	char date[64];
	size_t i;
	int r;

	dsn_words(m, kind, &subject, &text);
	r = dsn_put(w, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\nSubject: %s\r\n"
	    "Date: %s\r\nMessage-ID: <%s.dsn@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;"
	    "\r\n\tboundary=\"%s\"\r\n\r\n"
	    "This is a MIME-encapsulated message.\r\n\r\n--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This is the mail system at host %s (smartrelay).\r\n\r\n"
	    "%s\r\n%s are attached below.\r\n\r\n",
	    cfg->hostname, to, subject, dsn_date(time(NULL), date,
	    sizeof(date)), queue_writer_id(w), cfg->hostname, boundary,
	    boundary, cfg->hostname, text, full ? "The message and its "
	    "headers" : "Its headers");
	for (i = 0; r == 0 && i < m->nrcpt; i++)
		if ((action = dsn_action(&m->rcpt[i], kind)) != NULL)
			r = dsn_put(w, "<%s>: %s: %.*s\r\n", m->rcpt[i].addr,
			    action, DSN_LINE_MAX, m->rcpt[i].reply != NULL ?
			    m->rcpt[i].reply : kind == DSN_DELAYED &&
			    m->last_reply != NULL ? m->last_reply : action);
	return r;
}

/* The per-message fields (RFC 3464 §2.2). */
static int
dsn_write_msg_fields(struct queue_writer *w, const struct cfg *cfg,
    const struct queue_msg *m, const char *boundary)
{
	char date[64], envid[DSNPARAM_ENVID_MAX + 1];
	int r;

	r = dsn_put(w, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n", boundary);
	if (r == 0 && m->envid != NULL) {
		dsnparam_xtext_decode(m->envid, envid, sizeof(envid));
		r = dsn_put(w, "Original-Envelope-Id: %s\r\n", envid);
	}
	if (r == 0)
		r = dsn_put(w, "Reporting-MTA: dns; %s\r\n"
		    "X-Smartrelay-Queue-ID: %s\r\nArrival-Date: %s\r\n",
		    cfg->hostname, m->id, dsn_date(m->arrival, date,
		    sizeof(date)));
	return r;
}

/* The per-recipient fields of rc (RFC 3464 §2.3). */
static int
dsn_write_rcpt_fields(struct queue_writer *w, const struct cfg *cfg,
    const struct queue_msg *m, const struct queue_rcpt *rc,
    const char *action)
{
	char date[64], status[16], orcpt[DSNPARAM_ORCPT_MAX + 1];
	const char *reply = rc->reply, *semi;
	char cls = action[0] == 'f' ? '5' : action[0] == 'r' ? '2' : '4';
	int r = dsn_put(w, "\r\n");

	if (action[0] == 'd' && reply == NULL)
		reply = m->last_reply;
	if (r == 0 && rc->orcpt != NULL) {
		dsnparam_xtext_decode(rc->orcpt, orcpt, sizeof(orcpt));
		semi = strchr(orcpt, ';');
		r = dsn_put(w, "Original-Recipient: %.*s; %s\r\n",
		    (int)(semi - orcpt), orcpt, semi + 1);
	}
	dsn_status(reply, cls, status, sizeof(status));
	if (r == 0)
		r = dsn_put(w, "Final-Recipient: rfc822; %s\r\nAction: %s\r\n"
		    "Status: %s\r\nRemote-MTA: dns; %s\r\n", rc->addr,
		    action, status, cfg->upstream.host);
	if (r == 0 && reply != NULL)
		r = dsn_put(w, "Diagnostic-Code: smtp; %.*s\r\n",
		    DSN_LINE_MAX, reply);
	else if (r == 0 && action[0] == 'f')
		r = dsn_put(w, "Diagnostic-Code: smtp; failed\r\n");
	if (r == 0 && rc->updated != 0)
		r = dsn_put(w, "Last-Attempt-Date: %s\r\n",
		    dsn_date(rc->updated, date, sizeof(date)));
	if (r == 0 && action[0] == 'd')
		r = dsn_put(w, "Will-Retry-Until: %s\r\n", dsn_date(m->arrival +
		    (time_t)cfg->retry.give_up_after, date, sizeof(date)));
	return r;
}

/* The message/delivery-status part (RFC 3464 §2). */
static int
dsn_write_status(struct queue_writer *w, const struct cfg *cfg,
    const struct queue_msg *m, enum dsn_kind kind, const char *boundary)
{
	const char *action;
	size_t i;
	int r;

	r = dsn_write_msg_fields(w, cfg, m, boundary);
	for (i = 0; r == 0 && i < m->nrcpt; i++)
		if ((action = dsn_action(&m->rcpt[i], kind)) != NULL)
			r = dsn_write_rcpt_fields(w, cfg, m, &m->rcpt[i],
			    action);
	return r;
}

/* Copies the whole original (RET=FULL), in chunks. */
static int
dsn_copy_full(struct queue_writer *w, int fd)
{
	char buf[16384];
	ssize_t n;
	int r;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if ((r = queue_writer_write(w, buf, (size_t)n)) < 0)
			return r;
	return n < 0 ? -errno : 0;
}

/* Copies the original header section (up to the blank line, bounded). */
static int
dsn_copy_headers(struct queue_writer *w, int fd)
{
	char *buf, *end;
	size_t len = 0, keep;
	ssize_t n;
	int r;

	if ((buf = malloc(DSN_HEADERS_MAX)) == NULL)
		return -ENOMEM;
	while (len < DSN_HEADERS_MAX &&
	    (n = read(fd, buf + len, DSN_HEADERS_MAX - len)) > 0)
		len += (size_t)n;
	end = memmem(buf, len, "\r\n\r\n", 4);
	if (end != NULL)
		keep = (size_t)(end - buf) + 2;
	else {
		/* Cut after the last complete line. */
		for (keep = len; keep > 0 && buf[keep - 1] != '\n'; keep--)
			;
	}
	r = queue_writer_write(w, buf, keep);
	free(buf);
	return r;
}

/* The third part: the original message (full) or its header section. */
static int
dsn_write_original(struct queue_writer *w, struct queue *q,
    const struct queue_msg *m, enum dsn_kind kind, bool full,
    const char *boundary)
{
	int fd, r;

	r = dsn_put(w, "\r\n--%s\r\nContent-Description: %s%s\r\n"
	    "Content-Type: %s\r\n\r\n", boundary, kind == DSN_FINAL &&
	    dsn_reports_action(m, "failed") ? "Undelivered " : "",
	    full ? "Message" : "Message Headers",
	    full ? "message/rfc822" : "text/rfc822-headers");
	if (r < 0)
		return r;
	if ((r = queue_body_open(q, m, &fd)) < 0)
		return r;
	r = full ? dsn_copy_full(w, fd) : dsn_copy_headers(w, fd);
	close(fd);
	if (r == 0)
		r = dsn_put(w, "\r\n--%s--\r\n", boundary);
	return r;
}

/* True when the notice returns the whole original (RET=FULL, failed). */
static bool
dsn_full(const struct queue_msg *m, enum dsn_kind kind)
{
	return kind == DSN_FINAL && m->ret == QUEUE_RET_FULL &&
	    dsn_reports_action(m, "failed") && m->size <= DSN_FULL_MAX &&
	    !(m->flags & QUEUE_F_SMTPUTF8);
}

int
dsn_queue(struct queue *q, const struct cfg *cfg, const struct queue_msg *m,
    const char *to, enum dsn_kind kind, struct queue_msg **dsnp)
{
	struct queue_writer *w = NULL;
	const char *rcpts[1] = { to };
	char boundary[QUEUE_ID_LEN + 64], id[QUEUE_ID_LEN + 1];
	unsigned flags = QUEUE_F_DSN;
	bool full = dsn_full(m, kind);
	int r;

	*dsnp = NULL;
	if (!addr_is_ascii(to))
		flags |= QUEUE_F_SMTPUTF8;
	if ((r = queue_writer_new(q, &w)) < 0)
		return r;
	snprintf(id, sizeof(id), "%s", queue_writer_id(w));
	snprintf(boundary, sizeof(boundary), "%s.dsn/%.40s", id,
	    cfg->hostname);
	if ((r = queue_writer_envelope(w, "", rcpts, 1, flags,
	    time(NULL))) < 0 ||
	    (r = dsn_write_head(w, cfg, m, kind, full, to, boundary)) < 0 ||
	    (r = dsn_write_status(w, cfg, m, kind, boundary)) < 0 ||
	    (r = dsn_write_original(w, q, m, kind, full, boundary)) < 0 ||
	    (r = queue_writer_commit(w)) < 0)
		goto out;
	if (queue_writer_take(w, dsnp) < 0)
		r = queue_load(q, id, dsnp);
out:
	queue_writer_free(w);
	return r;
}
