/*
 * dsn: RFC 3464 delivery status notifications.  See dsn.h.
 *
 * The notice carries the original header section only (text/rfc822-headers,
 * RFC 6522), never the body: a message that failed for its size must not
 * fail again as a notice, and a notice stays small.
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

bool
dsn_wanted(const struct cfg *cfg, const struct queue_msg *m)
{
	size_t i;

	if (dsn_recipient(cfg, m) == NULL)
		return false;
	for (i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_FAILED)
			return true;
	return false;
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

/* The enhanced status in a stored reply "550 5.1.1 ...", else 5.0.0. */
static void
dsn_status(const char *reply, char *buf, size_t sz)
{
	size_t n;

	snprintf(buf, sz, "5.0.0");
	if (reply == NULL || strlen(reply) < 10 || reply[3] != ' ' ||
	    reply[4] != '5' || reply[5] != '.')
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

/* The header section and the human-readable part. */
static int
dsn_write_head(struct queue_writer *w, const struct cfg *cfg,
    const struct queue_msg *m, const char *to, const char *boundary)
{
	char date[64];
	size_t i;
	int r;

	r = dsn_put(w, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\nSubject: Undelivered Mail Returned to Sender\r\n"
	    "Date: %s\r\nMessage-ID: <%s.dsn@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;"
	    "\r\n\tboundary=\"%s\"\r\n\r\n"
	    "This is a MIME-encapsulated message.\r\n\r\n--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This is the mail system at host %s (smartrelay).\r\n\r\n"
	    "Your message could not be delivered to one or more recipients."
	    "\r\nIts headers are attached below.\r\n\r\n",
	    cfg->hostname, to, dsn_date(time(NULL), date, sizeof(date)),
	    queue_writer_id(w), cfg->hostname, boundary, boundary,
	    cfg->hostname);
	for (i = 0; r == 0 && i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_FAILED)
			r = dsn_put(w, "<%s>: %.*s\r\n", m->rcpt[i].addr,
			    DSN_LINE_MAX, m->rcpt[i].reply != NULL ?
			    m->rcpt[i].reply : "failed");
	return r;
}

/* The message/delivery-status part (RFC 3464 §2). */
static int
dsn_write_status(struct queue_writer *w, const struct cfg *cfg,
    const struct queue_msg *m, const char *boundary)
{
	char date[64], status[16];
	size_t i;
	int r;

	r = dsn_put(w, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n"
	    "Reporting-MTA: dns; %s\r\nX-Smartrelay-Queue-ID: %s\r\n"
	    "Arrival-Date: %s\r\n", boundary, cfg->hostname, m->id,
	    dsn_date(m->arrival, date, sizeof(date)));
	for (i = 0; r == 0 && i < m->nrcpt; i++) {
		const struct queue_rcpt *rc = &m->rcpt[i];

		if (rc->state != QUEUE_RCPT_FAILED)
			continue;
		dsn_status(rc->reply, status, sizeof(status));
		r = dsn_put(w, "\r\nFinal-Recipient: rfc822; %s\r\n"
		    "Action: failed\r\nStatus: %s\r\nRemote-MTA: dns; %s\r\n"
		    "Diagnostic-Code: smtp; %.*s\r\nLast-Attempt-Date: %s\r\n",
		    rc->addr, status, cfg->upstream.host, DSN_LINE_MAX,
		    rc->reply != NULL ? rc->reply : "failed",
		    dsn_date(rc->updated ? rc->updated : time(NULL), date,
		    sizeof(date)));
	}
	return r;
}

/* Copies the original header section (up to the blank line, bounded). */
static int
dsn_write_headers(struct queue_writer *w, struct queue *q,
    const struct queue_msg *m, const char *boundary)
{
	char *buf, *end;
	size_t len = 0, keep;
	ssize_t n;
	int fd, r;

	r = dsn_put(w, "\r\n--%s\r\nContent-Description: Undelivered Message "
	    "Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
	if (r < 0)
		return r;
	if ((r = queue_body_open(q, m, &fd)) < 0)
		return r;
	if ((buf = malloc(DSN_HEADERS_MAX)) == NULL) {
		close(fd);
		return -ENOMEM;
	}
	while (len < DSN_HEADERS_MAX &&
	    (n = read(fd, buf + len, DSN_HEADERS_MAX - len)) > 0)
		len += (size_t)n;
	close(fd);
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
	if (r == 0)
		r = dsn_put(w, "\r\n--%s--\r\n", boundary);
	return r;
}

int
dsn_queue(struct queue *q, const struct cfg *cfg, const struct queue_msg *m,
    const char *to, struct queue_msg **dsnp)
{
	struct queue_writer *w = NULL;
	const char *rcpts[1] = { to };
	char boundary[QUEUE_ID_LEN + 64], id[QUEUE_ID_LEN + 1];
	unsigned flags = QUEUE_F_DSN;
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
	    (r = dsn_write_head(w, cfg, m, to, boundary)) < 0 ||
	    (r = dsn_write_status(w, cfg, m, boundary)) < 0 ||
	    (r = dsn_write_headers(w, q, m, boundary)) < 0 ||
	    (r = queue_writer_commit(w)) < 0)
		goto out;
	r = queue_load(q, id, dsnp);
out:
	queue_writer_free(w);
	return r;
}
