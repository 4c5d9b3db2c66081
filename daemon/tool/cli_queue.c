/*
 * cli_queue: the queue commands of the smartrelay tool: queue (mailq),
 * flush, delete and status (docs/cli.md).
 *
 * The listing reads the spool itself, so it works whether or not the
 * daemon runs (it needs the rights of root or of the daemon's user); it
 * never runs recovery, which would delete files still being written.
 * flush and delete talk to the daemon over the control socket when it
 * runs: it owns the schedule, and a message it is delivering must not
 * vanish under it.  With the daemon stopped, delete removes the files
 * itself and flush has nothing to do.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "cli.h"
#include "ctlproto.h"
#include "dsnparam.h"
#include "oauth.h"
#include "queue.h"
#include "smtpproto.h"

#define CLI_JSON_VERSION	1
#define CLI_ENVELOPE_MAX	(16u << 20)

/* One listed message: from msg/ (active) or from the maildrop. */
struct cli_entry {
	struct queue_msg *m;		/* owned */
	bool maildrop;
	bool active;			/* the daemon is sending it (LIST) */
};

struct cli_listing {
	struct cli_entry *e;		/* owned array */
	size_t n;
	size_t nmaildrop;
	uint64_t bytes;
	size_t nerrors;			/* records that could not be read */
};

/* ---- JSON output -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (max n bytes), 0 if invalid. */
static size_t
cli_utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* Prints s as a JSON string (NULL: null); invalid UTF-8 becomes U+FFFD. */
static void
cli_json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, len;

	if (s == NULL) {
		fputs("null", f);
		return;
	}
	len = strlen(s);
	fputc('"', f);
	while (len > 0) {
		if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p);
			n = 1;
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p);
			n = 1;
		} else if ((n = cli_utf8_len(p, len)) == 0) {
			fputs("\\ufffd", f);
			n = 1;
		} else
			fwrite(p, 1, n, f);
		p += n;
		len -= n;
	}
	fputc('"', f);
}

/* A time as a JSON number, or null for 0 (unknown / none). */
static void
cli_json_time(FILE *f, time_t t)
{
	if (t == 0)
		fputs("null", f);
	else
		fprintf(f, "%lld", (long long)t);
}

static const char *
cli_rcpt_state(enum queue_rcpt_state st)
{
	switch (st) {
	case QUEUE_RCPT_PENDING:
		return "pending";
	case QUEUE_RCPT_DELIVERED:
		return "delivered";
	case QUEUE_RCPT_FAILED:
		return "failed";
	}
	return "unknown";
}

static void
cli_json_msg(FILE *f, const struct cli_entry *e)
{
	const struct queue_msg *m = e->m;
	size_t i;

	fprintf(f, "{\"id\":\"%s\",\"queue\":\"%s\",\"arrival\":%lld,"
	    "\"size\":%" PRIu64 ",\"sender\":", m->id,
	    e->maildrop ? "maildrop" : "active", (long long)m->arrival,
	    m->size);
	cli_json_str(f, m->from);
	fprintf(f, ",\"attempts\":%u,\"next_attempt\":", m->attempts);
	cli_json_time(f, m->next_attempt);
	fputs(",\"last_reply\":", f);
	cli_json_str(f, m->last_reply);
	fputs(",\"recipients\":[", f);
	for (i = 0; i < m->nrcpt; i++) {
		fputs(i > 0 ? ",{\"address\":" : "{\"address\":", f);
		cli_json_str(f, m->rcpt[i].addr);
		fprintf(f, ",\"state\":\"%s\",\"updated\":",
		    cli_rcpt_state(m->rcpt[i].state));
		cli_json_time(f, m->rcpt[i].updated);
		fputs(",\"reply\":", f);
		cli_json_str(f, m->rcpt[i].reply);
		fputc('}', f);
	}
	fputs("]}", f);
}

static void
cli_json_listing(FILE *f, const char *spool, const struct cli_listing *l)
{
	size_t i;

	fprintf(f, "{\"version\":%d,\"spool\":", CLI_JSON_VERSION);
	cli_json_str(f, spool);
	fputs(",\"messages\":[", f);
	for (i = 0; i < l->n; i++) {
		if (i > 0)
			fputc(',', f);
		fputs("\n  ", f);
		cli_json_msg(f, &l->e[i]);
	}
	fprintf(f, "%s],\"unreadable\":%zu}\n", l->n > 0 ? "\n" : "",
	    l->nerrors);
}

/* ---- human output ------------------------------------------------------- */

static const char *
cli_fmt_time(char *buf, size_t sz, time_t t)
{
	struct tm tm;

	if (t == 0)
		return "-";
	localtime_r(&t, &tm);
	strftime(buf, sz, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

/* "3d 4h", "2h 5m", "4m 10s", "12s". */
static const char *
cli_fmt_age(char *buf, size_t sz, time_t secs)
{
	long long s = secs < 0 ? 0 : (long long)secs;

	if (s >= 86400)
		snprintf(buf, sz, "%lldd %lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, sz, "%lldh %lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, sz, "%lldm %llds", s / 60, s % 60);
	else
		snprintf(buf, sz, "%llds", s);
	return buf;
}

/*
 * One message in Postfix's mailq format (its showq): "ID[*] SIZE ARRIVAL
 * SENDER", the last deferral reason in parentheses, then one indented line
 * per pending recipient.
 */
static void
cli_postfix_msg(FILE *f, const struct cli_entry *e)
{
	const struct queue_msg *m = e->m;
	const char *reason;
	char when[32] = "";
	struct tm tm;
	size_t i;
	int pad;

	if (localtime_r(&m->arrival, &tm) != NULL)
		strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
	fprintf(f, "%-10s%c%8" PRIu64 " %-20.20s %s\n", m->id,
	    e->active ? '*' : ' ', m->size, when,
	    *m->from != '\0' ? m->from : "MAILER-DAEMON");
	if ((reason = m->last_reply) == NULL && e->maildrop)
		reason = "waiting in the maildrop for smartrelayd";
	if (reason != NULL) {
		pad = 76 - (int)strlen(reason);
		fprintf(f, "%*s(%s)\n", pad > 0 ? pad : 0, "", reason);
	}
	for (i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_PENDING)
			fprintf(f, "%41s%s\n", "", m->rcpt[i].addr);
}

/*
 * The listing in Postfix's format, which monitoring parses (check_mailq
 * -M postfix reads the last line, Zabbix counts lines starting with an id
 * character); the "Total requests" line is Sendmail's, for parsers of its
 * format (check_mailq -M sendmail), and starts with blanks, so that it is
 * neither a message line nor the last line.
 */
static void
cli_human_listing(FILE *f, const struct cli_listing *l)
{
	size_t i;

	if (l->nerrors > 0)
		fprintf(stderr, "mailq: %zu queue record%s could not be read\n",
		    l->nerrors, l->nerrors == 1 ? "" : "s");
	if (l->n == 0) {
		fprintf(f, "Mail queue is empty\n");
		return;
	}
	fprintf(f, "%-10s %8s %-20s %s\n", "-Queue ID-", "--Size--",
	    "----Arrival Time----", "-Sender/Recipient-------");
	for (i = 0; i < l->n; i++) {
		if (i > 0)
			fputc('\n', f);
		cli_postfix_msg(f, &l->e[i]);
	}
	fprintf(f, "\n\t\tTotal requests: %zu\n", l->n);
	fprintf(f, "-- %" PRIu64 " Kbytes in %zu Request%s.\n", l->bytes / 1024,
	    l->n, l->n == 1 ? "" : "s");
}

/* ---- reading the spool -------------------------------------------------- */

static int
cli_listing_add(struct cli_listing *l, struct queue_msg *m, bool maildrop)
{
	struct cli_entry *ne;

	ne = reallocarray(l->e, l->n + 1, sizeof(*ne));
	if (ne == NULL) {
		queue_msg_free(m);
		return -ENOMEM;
	}
	l->e = ne;
	l->e[l->n].m = m;
	l->e[l->n].maildrop = maildrop;
	l->e[l->n].active = false;
	l->n++;
	l->bytes += m->size;
	if (maildrop)
		l->nmaildrop++;
	return 0;
}

static void
cli_listing_free(struct cli_listing *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		queue_msg_free(l->e[i].m);
	free(l->e);
}

/* Loads every record of q (the queue, or the maildrop) into l. */
static int
cli_read_queue(struct queue *q, bool maildrop, struct cli_listing *l)
{
	char (*ids)[QUEUE_ID_LEN + 1];
	struct queue_msg *m;
	size_t n, i;
	int r;

	if ((r = queue_list(q, &ids, &n)) < 0)
		return r;
	for (i = 0; i < n && r == 0; i++) {
		if (maildrop)
			r = queue_maildrop_load(q, ids[i], CLI_ENVELOPE_MAX,
			    &m, NULL, NULL);
		else
			r = queue_load(q, ids[i], &m);
		if (r == -ENOENT) {
			r = 0;		/* delivered or picked up meanwhile */
			continue;
		}
		if (r == -ENOMEM)
			break;
		if (r < 0) {
			l->nerrors++;
			r = 0;
			continue;
		}
		r = cli_listing_add(l, m, maildrop);
	}
	free(ids);
	return r;
}

/* Reads the queue and the maildrop; a sysexits status on failure. */
static int
cli_read_spool(struct cli *c, struct cli_listing *l)
{
	struct queue *q = NULL, *md = NULL;
	char *err = NULL;
	int r;

	/*
	 * No queue yet (the daemon never ran, e.g. just after a package
	 * install): nothing is queued, but sendmail may already have filled
	 * the maildrop, which tmpfiles.d creates.
	 */
	r = queue_open_existing(c->cfg->spool, &q, &err);
	if (r == -ENOENT) {
		free(err);
		err = NULL;
		r = 0;
	} else if (r < 0) {
		if (r == -EACCES)
			cli_err(c, "%s (only root and the owner of the spool "
			    "may list the queue)", err != NULL ? err :
			    strerror(-r));
		else
			cli_err(c, "%s", err != NULL ? err : strerror(-r));
		free(err);
		return r == -EACCES ? EX_NOPERM : EX_IOERR;
	}
	if (q != NULL)
		r = cli_read_queue(q, false, l);
	if (r == 0 && queue_maildrop_open(c->cfg->spool, false, &md,
	    NULL) == 0) {
		r = cli_read_queue(md, true, l);
		if (r == -EACCES || r == -EBADF)
			r = 0;	/* a maildrop we may not list */
	}
	queue_close(md);
	queue_close(q);
	if (r < 0) {
		cli_err(c, "reading the spool %s: %s", c->cfg->spool,
		    strerror(-r));
		return EX_IOERR;
	}
	return 0;
}

/* Connects to the daemon; -ENOENT/-ECONNREFUSED when it is not running. */
static int
cli_connect(const struct cli *c, int *fdp)
{
	int r;

	cli_priv_on(c);
	r = ctlp_connect(c->cfg->spool, fdp);
	cli_priv_off(c);
	return r;
}

static bool
cli_daemon_down(int r)
{
	return r == -ENOENT || r == -ECONNREFUSED;
}

/* ---- the listing from the daemon (LIST) ---------------------------------- */

struct cli_list_ctx {
	struct cli_listing *l;		/* borrowed */
	int error;			/* -ENOMEM or -EPROTO */
};

/* "<>" or xtext into a malloc'd address. */
static char *
cli_list_addr(const char *w)
{
	char *a;

	if (strcmp(w, "<>") == 0)
		return strdup("");
	if ((a = malloc(strlen(w) + 1)) != NULL)
		dsnparam_xtext_decode(w, a, strlen(w) + 1);
	return a;
}

/* "msg ID ARRIVAL SIZE ATTEMPTS NEXT STATUS SENDER": a new entry. */
static int
cli_list_msg(struct cli_listing *l, char *rest)
{
	char id[QUEUE_ID_LEN + 2], status[16], sender[3 * QUEUE_MAX_ADDR + 1];
	long long arrival, next;
	unsigned long long size;
	struct queue_msg *m;
	unsigned attempts;

	if (sscanf(rest, "%17s %lld %llu %u %lld %15s %3072s", id, &arrival,
	    &size, &attempts, &next, status, sender) != 7 ||
	    !queue_id_valid(id))
		return -EPROTO;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -ENOMEM;
	memcpy(m->id, id, sizeof(m->id));
	m->arrival = (time_t)arrival;
	m->size = size;
	m->attempts = attempts;
	m->next_attempt = (time_t)next;
	if ((m->from = cli_list_addr(sender)) == NULL ||
	    cli_listing_add(l, m, false) < 0) {
		if (m->from == NULL)
			queue_msg_free(m);
		return -ENOMEM;
	}
	l->e[l->n - 1].active = strcmp(status, "active") == 0;
	return 0;
}

/* "rcpt ID STATE ADDRESS": a recipient of the last entry. */
static int
cli_list_rcpt(struct queue_msg *m, char *rest)
{
	char state[16], addr[3 * QUEUE_MAX_ADDR + 1];
	struct queue_rcpt *nr;

	if (sscanf(rest, "%*s %15s %3072s", state, addr) != 2)
		return -EPROTO;
	if ((nr = reallocarray(m->rcpt, m->nrcpt + 1, sizeof(*nr))) == NULL)
		return -ENOMEM;
	m->rcpt = nr;
	memset(&nr[m->nrcpt], 0, sizeof(*nr));
	nr[m->nrcpt].state = strcmp(state, "delivered") == 0 ?
	    QUEUE_RCPT_DELIVERED : strcmp(state, "failed") == 0 ?
	    QUEUE_RCPT_FAILED : QUEUE_RCPT_PENDING;
	if ((nr[m->nrcpt].addr = cli_list_addr(addr)) == NULL)
		return -ENOMEM;
	m->nrcpt++;
	return 0;
}

/* One data line of a LIST reply. */
static void
cli_list_line(void *arg, const char *line)
{
	struct cli_list_ctx *x = arg;
	struct cli_listing *l = x->l;
	struct queue_msg *m = l->n > 0 ? l->e[l->n - 1].m : NULL;
	char buf[CTLP_LINE_MAX + 1], *rest;
	const char *text;
	int r = 0;

	if (x->error != 0)
		return;
	snprintf(buf, sizeof(buf), "%s", line);
	rest = buf + strcspn(buf, " ");
	if (*rest == ' ')
		*rest++ = '\0';
	if (strcmp(buf, "msg") == 0)
		r = cli_list_msg(l, rest);
	else if (m == NULL || strncmp(rest, m->id, QUEUE_ID_LEN) != 0)
		r = -EPROTO;
	else if (strcmp(buf, "rcpt") == 0)
		r = cli_list_rcpt(m, rest);
	else if (strcmp(buf, "reason") == 0) {
		text = rest + QUEUE_ID_LEN + (rest[QUEUE_ID_LEN] == ' ');
		free(m->last_reply);
		if ((m->last_reply = strdup(text)) == NULL)
			r = -ENOMEM;
	}
	x->error = r;
}

/*
 * The queue as the daemon holds it, for any user (envelopes only).
 * Returns 0, 1 when the daemon is not running, or a sysexits status.
 */
static int
cli_read_daemon(struct cli *c, struct cli_listing *l)
{
	struct cli_list_ctx x = { l, 0 };
	char *err = NULL;
	int fd, r;

	if ((r = cli_connect(c, &fd)) < 0)
		return cli_daemon_down(r) ? 1 : EX_TEMPFAIL;
	r = ctlp_call(fd, "LIST", cli_list_line, &x, &err);
	close(fd);
	if (r == 0 && x.error == 0)
		return 0;
	cli_err(c, "listing the queue: %s", err != NULL ? err : x.error != 0 ?
	    strerror(-x.error) : r < 0 ? strerror(-r) : "refused");
	free(err);
	return r > 0 ? r : EX_TEMPFAIL;
}

/*
 * mailq: from the daemon when it runs (any user; '*' marks what it is
 * sending), else from the spool, which only root and the daemon's user
 * may read.  --json reads the spool when it may (it holds every
 * recipient's reply), else asks the daemon.
 */
int
cli_list(struct cli *c, bool json)
{
	struct cli_listing l = { 0 };
	int r;

	if (json && cli_is_admin(c))
		r = cli_read_spool(c, &l);
	else if ((r = cli_read_daemon(c, &l)) == 1) {
		if (!cli_is_admin(c)) {
			cli_err(c, "mail queue report unavailable: smartrelayd "
			    "is not running (only root and the owner of the "
			    "spool may read it directly)");
			return EX_UNAVAILABLE;
		}
		r = cli_read_spool(c, &l);
	}
	if (r != 0) {
		cli_listing_free(&l);
		return r;
	}
	if (json)
		cli_json_listing(stdout, c->cfg->spool, &l);
	else
		cli_human_listing(stdout, &l);
	cli_listing_free(&l);
	return 0;
}

int
cli_queue(struct cli *c, int argc, char **argv)
{
	bool json = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else {
			cli_err(c, "usage: smartrelay queue [--json]");
			return EX_USAGE;
		}
	}
	if ((r = cli_load_cfg(c)) != 0)
		return r;
	return cli_list(c, json);
}

/* ---- the control socket ------------------------------------------------- */

bool
cli_kick(const struct cli *c)
{
	int fd, r;

	if (cli_connect(c, &fd) < 0)
		return false;
	r = ctlp_call(fd, "MAILDROP", NULL, NULL, NULL);
	close(fd);
	return r == 0;
}

bool
cli_daemon_up(const struct cli *c)
{
	int fd, r;

	if (cli_connect(c, &fd) < 0)
		return false;
	r = ctlp_call(fd, "STATUS", NULL, NULL, NULL);
	close(fd);
	return r == 0;
}

/* Prints a FLUSH/DELETE data line: "ID: flushed", "ID: unknown queue id". */
static void
cli_print_result(void *arg, const char *line)
{
	const char *sp = strchr(line, ' ');

	if (sp == NULL)
		return;
	if (strncmp(line, "unknown ", 8) == 0)
		fprintf(stderr, "%s: %s: no such message in the queue\n",
		    (const char *)arg, sp + 1);
	else if (strncmp(line, "error ", 6) == 0)
		fprintf(stderr, "%s: %s\n", (const char *)arg, sp + 1);
	else
		printf("%s: %.*s\n", sp + 1, (int)(sp - line), line);
}

/* Builds "VERB ID ID..." after checking the ids. */
static int
cli_request(struct cli *c, const char *verb, char **ids, size_t n,
    char **reqp)
{
	size_t i, len = strlen(verb) + 1;
	char *req;

	for (i = 0; i < n; i++) {
		if (!queue_id_valid(ids[i])) {
			cli_err(c, "not a queue id: \"%s\" (16 hex digits, as "
			    "shown by mailq)", ids[i]);
			return EX_DATAERR;
		}
		len += QUEUE_ID_LEN + 1;
	}
	if (n > CTLP_MAX_ARGS) {
		cli_err(c, "at most %d ids at once", CTLP_MAX_ARGS);
		return EX_USAGE;
	}
	if ((req = malloc(len)) == NULL) {
		cli_err(c, "out of memory");
		return EX_OSERR;
	}
	strcpy(req, verb);
	for (i = 0; i < n; i++) {
		strcat(req, " ");
		strcat(req, ids[i]);
	}
	*reqp = req;
	return 0;
}

/* Sends a FLUSH or DELETE request and turns the reply into a status. */
static int
cli_call_ids(struct cli *c, int fd, const char *req)
{
	char *err = NULL;
	int r;

	r = ctlp_call(fd, req, cli_print_result, (void *)c->prog, &err);
	if (r < 0) {
		cli_err(c, "control socket: %s", strerror(-r));
		r = EX_TEMPFAIL;
	} else if (r > 0 && r != EX_NOUSER)
		cli_err(c, "%s", err != NULL ? err : "failed");
	free(err);
	return r;
}

int
cli_do_flush(struct cli *c, char **ids, size_t n)
{
	char *req = NULL;
	int fd, r;

	if ((r = cli_request(c, "FLUSH", ids, n, &req)) != 0)
		return r;
	if ((r = cli_connect(c, &fd)) < 0) {
		if (cli_daemon_down(r))
			cli_err(c, "the daemon is not running (queued mail is "
			    "tried as soon as it starts)");
		else
			cli_err(c, "control socket %s/%s: %s", c->cfg->spool,
			    CTLP_SOCKET_NAME, strerror(-r));
		free(req);
		return EX_UNAVAILABLE;
	}
	r = cli_call_ids(c, fd, req);
	if (r == 0 && n == 0)
		printf("flush: every message is due now\n");
	close(fd);
	free(req);
	return r;
}

int
cli_flush(struct cli *c, int argc, char **argv)
{
	int r;

	if ((r = cli_load_cfg(c)) != 0)
		return r;
	return cli_do_flush(c, argv + 1, (size_t)(argc - 1));
}

/* delete with the daemon stopped: the files go directly. */
static int
cli_delete_offline(struct cli *c, char **ids, size_t n)
{
	struct queue *q = NULL, *md = NULL;
	char *err = NULL;
	size_t i, unknown = 0;
	int r, status = 0;

	if (!cli_is_admin(c)) {
		cli_err(c, "only root and the owner of %s may delete "
		    "messages", c->cfg->spool);
		return EX_NOPERM;
	}
	if ((r = queue_open_existing(c->cfg->spool, &q, &err)) < 0) {
		cli_err(c, "%s", err != NULL ? err : strerror(-r));
		free(err);
		return r == -EACCES ? EX_NOPERM : EX_IOERR;
	}
	if (queue_maildrop_open(c->cfg->spool, false, &md, NULL) < 0)
		md = NULL;
	for (i = 0; i < n; i++) {
		r = queue_remove(q, ids[i]);
		if (r == -ENOENT && md != NULL)
			r = queue_remove(md, ids[i]);
		if (r == 0)
			printf("%s: deleted\n", ids[i]);
		else if (r == -ENOENT) {
			cli_err(c, "%s: no such message in the queue", ids[i]);
			unknown++;
		} else {
			cli_err(c, "%s: %s", ids[i], strerror(-r));
			status = EX_IOERR;
		}
	}
	queue_close(md);
	queue_close(q);
	if (status == 0 && unknown > 0)
		status = EX_NOUSER;
	return status;
}

int
cli_delete(struct cli *c, int argc, char **argv)
{
	char *req = NULL;
	size_t n = (size_t)(argc - 1);
	int fd, r;

	if (n == 0) {
		cli_err(c, "usage: smartrelay delete ID...");
		return EX_USAGE;
	}
	if ((r = cli_load_cfg(c)) != 0)
		return r;
	if ((r = cli_request(c, "DELETE", argv + 1, n, &req)) != 0)
		return r;
	if ((r = cli_connect(c, &fd)) < 0) {
		free(req);
		if (cli_daemon_down(r))
			return cli_delete_offline(c, argv + 1, n);
		cli_err(c, "control socket %s/%s: %s", c->cfg->spool,
		    CTLP_SOCKET_NAME, strerror(-r));
		return r == -EACCES ? EX_NOPERM : EX_UNAVAILABLE;
	}
	r = cli_call_ids(c, fd, req);
	close(fd);
	free(req);
	return r;
}

/* ---- status ------------------------------------------------------------- */

/* What status knows; running false: from the spool alone. */
struct cli_status {
	bool running;
	struct ctlp_status st;
	bool spool_known;		/* the spool could be read */
	size_t maildrop;
};

static void
cli_status_line(void *arg, const char *line)
{
	ctlp_status_line(arg, line);
}

/* With the daemon down: counts what is in the spool, if we may read it. */
static void
cli_status_spool(struct cli *c, struct cli_status *s)
{
	struct cli_listing l = { 0 };
	struct queue *q = NULL, *md = NULL;
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n;

	int r = queue_open_existing(c->cfg->spool, &q, NULL);

	if (r == -ENOENT)
		s->spool_known = true;	/* no queue yet: nothing queued */
	else if (r < 0)
		return;
	if (q != NULL && queue_list(q, &ids, &n) == 0) {
		s->spool_known = true;
		s->st.queued = n;
		s->st.oldest = n > 0 ? queue_id_time(ids[0]) : 0;
		free(ids);
	}
	if (queue_maildrop_open(c->cfg->spool, false, &md, NULL) == 0 &&
	    queue_list(md, &ids, &n) == 0) {
		s->maildrop = n;
		if (n > 0 && (s->st.oldest == 0 ||
		    queue_id_time(ids[0]) < s->st.oldest))
			s->st.oldest = queue_id_time(ids[0]);
		free(ids);
	}
	queue_close(md);
	queue_close(q);
	cli_listing_free(&l);
}

static const char *
cli_upstream_words(enum ctlp_upstream u)
{
	switch (u) {
	case CTLP_UP_OK:
		return "ok";
	case CTLP_UP_RETRYING:
		return "retrying (temporary failures, backing off)";
	case CTLP_UP_PAUSED_AUTH:
		return "paused: the upstream refused the credentials";
	case CTLP_UP_PAUSED_QUOTA:
		return "paused: the upstream's sending limit is reached";
	case CTLP_UP_UNKNOWN:
		break;
	}
	return "unknown (no delivery attempted yet)";
}

/* The fix for the upstream's last problem, worded for this config. */
static const char *
cli_status_fix(const struct cli *c, const struct ctlp_status *st, char *buf,
    size_t sz)
{
	const struct smtpproto_advice *a;
	struct smtpproto_advice_vars v;

	if (st->advice[0] == '\0' ||
	    (a = smtpproto_advice_by_key(st->advice)) == NULL)
		return NULL;
	smtpproto_advice_vars_cfg(c->cfg, &v);
	return smtpproto_advice_format(a, &v, buf, sz);
}

/* The advice for a token status name ("invalid_grant"...), or NULL. */
static const char *
cli_token_advice(const struct cli *c, const char *name)
{
	enum oauth_status st;

	for (st = OAUTH_TEMP; st <= OAUTH_LOCAL; st++)
		if (strcmp(name, oauth_status_name(st)) == 0)
			return oauth_advice(st, &c->cfg->upstream.oauth);
	return NULL;
}

/* The OAuth lines of status (docs/oauth.md): never the token itself. */
static void
cli_status_token(const struct cli *c, const struct ctlp_status *st,
    time_t now)
{
	const char *advice = cli_token_advice(c, st->token_status);
	char t[32];

	if (st->token_valid_until > now)
		printf("oauth token:   valid until %s", cli_fmt_time(t,
		    sizeof(t), st->token_valid_until));
	else
		printf("oauth token:   none cached (one is requested at the "
		    "next login)");
	printf(", %u request%s since start\n", st->token_requests,
	    st->token_requests == 1 ? "" : "s");
	if (st->token_last_refresh != 0)
		printf("last refresh:  %s\n", cli_fmt_time(t, sizeof(t),
		    st->token_last_refresh));
	if (st->token_error[0] != '\0')
		printf("token error:   %s: %s\n", st->token_status,
		    st->token_error);
	if (st->token_error[0] != '\0' && advice != NULL)
		printf("fix:           %s\n", advice);
}

static void
cli_status_human(const struct cli *c, const struct cli_status *s)
{
	const struct ctlp_status *st = &s->st;
	time_t now = time(NULL);
	char t[32], a[32], fix[1024];

	if (s->running)
		printf("daemon:        running (pid %ld, version %s, up %s)\n",
		    st->pid, st->version, cli_fmt_age(a, sizeof(a),
		    now - st->started));
	else
		printf("daemon:        not running\n");
	if (!s->running && !s->spool_known)
		printf("queue:         unknown (the spool is not readable)\n");
	else {
		printf("queue:         %zu message%s", st->queued,
		    st->queued == 1 ? "" : "s");
		if (s->maildrop > 0)
			printf(" (and %zu in the maildrop)", s->maildrop);
		if (st->oldest != 0)
			printf(", oldest %s old", cli_fmt_age(a, sizeof(a),
			    now - st->oldest));
		putchar('\n');
	}
	if (!s->running) {
		printf("last delivery: unknown (daemon not running)\n"
		    "upstream:      unknown (daemon not running)\n");
		return;
	}
	if (st->last_delivery != 0)
		printf("last delivery: %s (%s ago)\n", cli_fmt_time(t,
		    sizeof(t), st->last_delivery), cli_fmt_age(a, sizeof(a),
		    now - st->last_delivery));
	else
		printf("last delivery: none since the daemon started\n");
	printf("upstream:      %s", cli_upstream_words(st->upstream));
	if (st->upstream_since != 0 && st->upstream != CTLP_UP_UNKNOWN)
		printf(", since %s", cli_fmt_time(t, sizeof(t),
		    st->upstream_since));
	putchar('\n');
	if (st->next_attempt != 0)
		printf("next attempt:  %s\n", cli_fmt_time(t, sizeof(t),
		    st->next_attempt));
	if (st->reply[0] != '\0')
		printf("last reply:    %s\n", st->reply);
	if (cli_status_fix(c, st, fix, sizeof(fix)) != NULL)
		printf("fix:           %s\n", fix);
	if (st->oauth)
		cli_status_token(c, st, now);
}

static void
cli_status_json(const struct cli *c, const struct cli_status *s)
{
	const struct ctlp_status *st = &s->st;
	bool known = s->running || s->spool_known;
	char fix[1024];

	printf("{\"version\":%d,\"daemon\":{\"running\":%s", CLI_JSON_VERSION,
	    s->running ? "true" : "false");
	if (s->running) {
		printf(",\"pid\":%ld,\"version\":", st->pid);
		cli_json_str(stdout, st->version);
		printf(",\"started\":%lld", (long long)st->started);
	}
	printf("},\"spool\":");
	cli_json_str(stdout, c->cfg->spool);
	printf(",\"queue\":{\"messages\":");
	if (known)
		printf("%zu", st->queued);
	else
		printf("null");
	printf(",\"maildrop\":");
	if (!s->running && s->spool_known)
		printf("%zu", s->maildrop);
	else
		printf("null");
	printf(",\"oldest_arrival\":");
	cli_json_time(stdout, st->oldest);
	printf("},\"last_delivery\":");
	cli_json_time(stdout, st->last_delivery);
	printf(",\"upstream\":{\"state\":");
	if (s->running)
		cli_json_str(stdout, ctlp_upstream_name(st->upstream));
	else
		printf("null");
	printf(",\"since\":");
	cli_json_time(stdout, st->upstream_since);
	printf(",\"next_attempt\":");
	cli_json_time(stdout, st->next_attempt);
	printf(",\"reply\":");
	cli_json_str(stdout, st->reply[0] != '\0' ? st->reply : NULL);
	printf(",\"advice\":");
	cli_json_str(stdout, st->advice[0] != '\0' ? st->advice : NULL);
	printf(",\"fix\":");
	cli_json_str(stdout, cli_status_fix(c, st, fix, sizeof(fix)));
	printf("}");
	if (st->oauth) {
		printf(",\"oauth\":{\"valid_until\":");
		cli_json_time(stdout, st->token_valid_until);
		printf(",\"last_refresh\":");
		cli_json_time(stdout, st->token_last_refresh);
		printf(",\"requests\":%u,\"status\":", st->token_requests);
		cli_json_str(stdout, st->token_status);
		printf(",\"last_error\":");
		cli_json_str(stdout, st->token_error[0] != '\0' ?
		    st->token_error : NULL);
		printf("}");
	}
	printf("}\n");
}

int
cli_status(struct cli *c, int argc, char **argv)
{
	struct cli_status s = { 0 };
	char *err = NULL;
	bool json = false;
	int fd, i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else {
			cli_err(c, "usage: smartrelay status [--json]");
			return EX_USAGE;
		}
	}
	if ((r = cli_load_cfg(c)) != 0)
		return r;
	if ((r = cli_connect(c, &fd)) == 0) {
		r = ctlp_call(fd, "STATUS", cli_status_line, &s.st, &err);
		close(fd);
		if (r != 0) {
			cli_err(c, "status: %s", r < 0 ? strerror(-r) :
			    err != NULL ? err : "refused");
			free(err);
			return EX_TEMPFAIL;
		}
		s.running = true;
	} else if (cli_daemon_down(r))
		cli_status_spool(c, &s);
	else {
		cli_err(c, "control socket %s/%s: %s", c->cfg->spool,
		    CTLP_SOCKET_NAME, strerror(-r));
		return r == -EACCES ? EX_NOPERM : EX_UNAVAILABLE;
	}
	if (json)
		cli_status_json(c, &s);
	else
		cli_status_human(c, &s);
	/* Like an init script's status: 3 when the daemon is not running. */
	return s.running ? 0 : 3;
}
