/*
 * cli_sendmail: the sendmail interface (docs/cli.md).
 *
 * A submission reads the message from stdin and stores it in the maildrop
 * (common/queue.c), from where the daemon moves it into the queue.  The
 * input goes through three stages:
 *
 *   1. sm_input(): the sendmail conventions.  A line holding only "."
 *      ends the input unless -i; LF and CRLF line ends become CRLF.
 *   2. sm_content(): the header section is buffered (bounded) so that -t
 *      can take the recipients from To/Cc/Bcc before the envelope is
 *      written; Bcc is removed, and From: is added when missing.
 *   3. sm_data(): the content is dot-stuffed and fed to the inbound
 *      session's DATA filter (body.c), which normalises bare CR and LF,
 *      adds Date: and Message-ID:, and counts the size.
 *
 * Exit 0 only once the record is durably in the maildrop; otherwise a
 * sysexits(3) status and one line on stderr.  -bs speaks SMTP on
 * stdin/stdout with the inbound session's replies, storing each message
 * the same way.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "addr.h"
#include "body.h"
#include "cfg.h"
#include "cli.h"
#include "cli_msg.h"
#include "dsnparam.h"
#include "header.h"
#include "lineio.h"
#include "queue.h"
#include "smtpproto.h"

#define SM_HEADER_MAX	(1u << 20)	/* bytes of a buffered header section */
#define SM_READ_CHUNK	65536
#define SM_LINE_MAX	512		/* -bs command lines, with CRLF */
#define SM_ERRORS_MAX	20		/* -bs: then 421 */
#define SM_NAME_MAX	200		/* bytes of -F in the From: field */
/* "From: \"" NAME (each byte may be escaped) "\" <" ADDR ">\r\n" */
#define SM_FROM_MAX	(2 * SM_NAME_MAX + ADDR_MAX + 16)

enum sm_mode {
	SM_SUBMIT,		/* -bm, the default */
	SM_SMTP,		/* -bs */
	SM_MAILQ,		/* -bp */
	SM_FLUSH,		/* -q */
	SM_NEWALIASES,		/* -bi, -I, newaliases: aliases are in the config */
	SM_VERIFY,		/* -bv: how addresses would be routed */
	SM_DAEMON,		/* -bd, -bl: is the daemon running? */
	SM_IGNORE,		/* -bh, -bH, -q30m: nothing to do, as Postfix */
};

/* Stage 1: where the input is relative to lines. */
enum sm_in {
	SM_IN_BOL,		/* at a line start */
	SM_IN_DOT,		/* "." at a line start */
	SM_IN_DOTCR,		/* "." CR at a line start */
	SM_IN_TEXT,		/* inside a line */
	SM_IN_CR,		/* CR inside a line */
};

struct sm {
	struct cli *cli;		/* borrowed */
	/* options */
	enum sm_mode mode;
	bool extract;			/* -t */
	bool ignore_dots;		/* -i, -oi */
	const char *from_arg;		/* borrowed: -f/-r, NULL: the user */
	const char *fullname;		/* borrowed: -F */
	bool qtime;			/* -q with an interval */
	/* RFC 3461 DSN requests (docs/cli.md), read by sm_dsn_opts() */
	const char *dsn_notify;		/* borrowed: -N, NULL if not given */
	const char *dsn_ret;		/* borrowed: -R */
	const char *dsn_envid;		/* borrowed: -V */
	unsigned notify;		/* -N as QUEUE_NOTIFY_*, 0: none */
	enum queue_ret ret;		/* -R */
	char envid[DSNPARAM_ENVID_MAX + 1];	/* -V as xtext, "": none */
	const char **args;		/* owned array of borrowed argv words: */
	size_t nargs;			/* the recipients (-bv: the addresses) */
	bool verify_failed;		/* -bv: an address is undeliverable */
	/* envelope */
	char from[ADDR_MAX];
	char **rcpt;			/* owned array of owned addresses */
	size_t nrcpt;
	unsigned flags;			/* QUEUE_F_* */
	struct queue_dsn_rcpt *dsn;	/* owned, during sm_envelope() only */
	/* spool */
	struct queue *md;		/* owned: the maildrop */
	struct queue_writer *w;		/* owned */
	int error;			/* first write error, negative errno */
	bool too_big;
	/* stage 1 */
	enum sm_in in;
	bool ended;			/* the input ended with a "." line */
	/* stage 2 */
	bool in_headers;
	bool mbox_from;			/* still at the start: skip "From " */
	char *hdr;			/* owned: the buffered header section */
	size_t hdrlen, hdrcap, hdrscan;
	/* stage 3 */
	bool data_bol;			/* stage 3 is at a line start */
	char date[64];
	char msgid[ADDR_MAX + 64];
	char fromline[SM_FROM_MAX];	/* added when the message has no From: */
	const struct cfg *cfg;		/* borrowed: cli->cfg, for the rules */
	struct hdr_opts ho;		/* header rules (header.h) */
	struct body body;
};

/* ---- options ------------------------------------------------------------ */

/* Options that take a value (attached or as the next argument). */
static bool
sm_takes_value(char c)
{
	return strchr("ABCFLNORVXfhopr", c) != NULL;
}

/* -bX: the mode letter, as Postfix's sendmail knows them. */
static int
sm_mode(struct sm *s, const char *v)
{
	static const struct {
		char letter;
		enum sm_mode mode;
	} modes[] = {
		{ 'm', SM_SUBMIT }, { 's', SM_SMTP }, { 'p', SM_MAILQ },
		{ 'i', SM_NEWALIASES }, { 'v', SM_VERIFY }, { 'd', SM_DAEMON },
		{ 'l', SM_DAEMON }, { 'h', SM_IGNORE }, { 'H', SM_IGNORE },
	};
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (v[0] == modes[i].letter && v[1] == '\0') {
			s->mode = modes[i].mode;
			return 0;
		}
	cli_err(s->cli, "unsupported: -b%.20s (smartrelay knows -bm, -bs, "
	    "-bp, -bv, -bi, -bd, -bl, -bh, -bH)", v);
	return EX_USAGE;
}

/*
 * -q: alone (or -qR SITE: there is one smart host) retry now; -q with an
 * interval ("-q30m", a daemon's schedule) does nothing, as in Postfix.
 */
static int
sm_queue_opt(struct sm *s, const char *v)
{
	if (*v == '\0' || *v == 'R') {
		s->mode = SM_FLUSH;
		return 0;
	}
	if (*v >= '0' && *v <= '9') {
		s->qtime = true;
		return 0;
	}
	cli_err(s->cli, "-q%.20s is not implemented", v);
	return EX_USAGE;
}

/* Handles one option letter with its value (NULL for flags). */
static int
sm_option(struct sm *s, char c, const char *v)
{
	struct cli *cli = s->cli;

	switch (c) {
	case 'C':
		cli->cfg_path = v;
		cli->cfg_explicit = true;
		break;
	case 'f':
	case 'r':
		s->from_arg = v;
		break;
	case 'F':
		s->fullname = v;
		break;
	case 'o':
		if (strcmp(v, "i") == 0)
			s->ignore_dots = true;
		break;		/* other -oX: legacy, ignored */
	case 'i':
		s->ignore_dots = true;
		break;
	case 't':
		s->extract = true;
		break;
	case 'v':
		cli->verbose = true;
		break;
	case 'b':
		return sm_mode(s, v);
	case 'q':
		return sm_queue_opt(s, v);
	case 'I':
		s->mode = SM_NEWALIASES;
		break;
	case 'N':
		s->dsn_notify = v;
		break;
	case 'R':
		s->dsn_ret = v;
		break;
	case 'V':
		s->dsn_envid = v;
		break;
	case 'A': case 'B': case 'L': case 'O': case 'X': case 'h': case 'p':
	case 'd': case 'e': case 'G': case 'U': case 'm': case 'n': case 'x':
	case 'c':
		break;		/* accepted and ignored */
	default:
		cli_err(cli, "unknown option -%c", c);
		return EX_USAGE;
	}
	return 0;
}

/*
 * One option word ("-ti", "-fa@b", "-f" "a@b", "-oi", "-bs"), like getopt:
 * -b, -o, -q, -d and -e take the rest of their word.  *i moves past a
 * value taken from the next argument.
 */
static int
sm_option_word(struct sm *s, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *v;
	int j, r;

	for (j = 1; a[j] != '\0'; j++) {
		v = NULL;
		if (strchr("bqde", a[j]) != NULL || (a[j] == 'o' &&
		    a[j + 1] != '\0'))
			v = a + j + 1;
		else if (sm_takes_value(a[j])) {
			if (a[j + 1] != '\0')
				v = a + j + 1;
			else if (*i + 1 < argc)
				v = argv[++*i];
			else {
				cli_err(s->cli, "option -%c needs a value",
				    a[j]);
				return EX_USAGE;
			}
		}
		if ((r = sm_option(s, a[j], v)) != 0)
			return r;
		if (v != NULL)
			break;
	}
	return 0;
}

/* Options that do not go together (as Postfix's sendmail checks them). */
static int
sm_check_mode(struct sm *s)
{
	if (s->extract && s->mode != SM_SUBMIT) {
		cli_err(s->cli, "-t can be used only in delivery mode");
		return EX_USAGE;
	}
	if (s->qtime && s->mode != SM_DAEMON)
		s->mode = SM_IGNORE;	/* -q30m: a schedule, nothing to do */
	if (s->nargs > 0 && s->mode != SM_SUBMIT && s->mode != SM_VERIFY) {
		cli_err(s->cli, "this mode takes no recipients (\"%.100s\")",
		    s->args[0]);
		return EX_USAGE;
	}
	if (s->nargs == 0 && s->mode == SM_VERIFY) {
		cli_err(s->cli, "-bv needs the addresses to verify");
		return EX_USAGE;
	}
	return 0;
}

/*
 * -N, -R and -V (RFC 3461): the NOTIFY of every recipient, RET and ENVID
 * (as xtext), as an SMTP client would give them.  A bad value is ignored
 * with a warning, as Postfix's sendmail does: the message still goes.
 */
static void
sm_dsn_opts(struct sm *s)
{
	const char *v;

	if ((v = s->dsn_notify) != NULL &&
	    dsnparam_notify(v, strlen(v), &s->notify) < 0)
		cli_err(s->cli, "warning: bad -N value \"%.100s\" ignored "
		    "(never, or a list of success, delay, failure)", v);
	if ((v = s->dsn_ret) != NULL) {
		if (strcasecmp(v, "full") == 0)
			s->ret = QUEUE_RET_FULL;
		else if (strcasecmp(v, "hdrs") == 0)
			s->ret = QUEUE_RET_HDRS;
		else
			cli_err(s->cli, "warning: bad -R value \"%.100s\" ignored "
			    "(full or hdrs)", v);
	}
	if ((v = s->dsn_envid) != NULL && (*v == '\0' ||
	    dsnparam_xtext_encode(v, s->envid, sizeof(s->envid)) < 0)) {
		s->envid[0] = '\0';
		cli_err(s->cli, "warning: bad -V value ignored (an envelope "
		    "id of 1 to 100 characters, fewer with spaces or '+')");
	}
}

/*
 * Parses the command line with GNU-style permutation, as Postfix's
 * sendmail does on Linux: options may follow recipients
 * ("sendmail rcpt@x -f me@y"), "--" ends the options, and nothing that
 * starts with '-' ever becomes a recipient, not even after "--" (a
 * mistyped option must not turn into an address).  The recipients go to
 * s->args in their order.  Returns 0 or a sysexits status.
 */
static int
sm_parse(struct sm *s, int argc, char **argv)
{
	bool options = true;
	int i, r;

	if ((s->args = calloc((size_t)argc + 1, sizeof(*s->args))) == NULL)
		return EX_OSERR;
	for (i = 1; i < argc; i++) {
		if (options && strcmp(argv[i], "--") == 0) {
			options = false;
			continue;
		}
		if (options && argv[i][0] == '-' && argv[i][1] != '\0') {
			if ((r = sm_option_word(s, argc, argv, &i)) != 0)
				return r;
			continue;
		}
		if (argv[i][0] == '-') {
			cli_err(s->cli, "\"%.100s\": a recipient may not start "
			    "with '-'", argv[i]);
			return EX_USAGE;
		}
		s->args[s->nargs++] = argv[i];
	}
	sm_dsn_opts(s);
	return sm_check_mode(s);
}

/* ---- addresses ---------------------------------------------------------- */

/* Sets the envelope sender; a bare name gets a domain.  0 or -EINVAL. */
static int
sm_set_from(struct sm *s, const char *addr)
{
	snprintf(s->from, sizeof(s->from), "%s", addr);
	if (smtpproto_qualify_sender(s->cli->cfg, s->from, sizeof(s->from)) < 0
	    || (*s->from != '\0' && addr_check_mailbox(s->from) < 0))
		return -EINVAL;
	if (!addr_is_ascii(s->from))
		s->flags |= QUEUE_F_SMTPUTF8;
	return 0;
}

/* The envelope sender: -f, else the invoking user's login name. */
static int
sm_sender(struct sm *s)
{
	char addr[ADDR_MAX];
	const char *rest, *v = s->from_arg;
	struct passwd *pw;

	if (v == NULL) {
		if ((pw = getpwuid(getuid())) == NULL) {
			cli_err(s->cli, "no user name for uid %u",
			    (unsigned)getuid());
			return EX_NOUSER;
		}
		v = pw->pw_name;
	}
	if (*v == '\0')
		*addr = '\0';		/* -f "": the null sender */
	else if (addr_parse_path(v, addr, sizeof(addr), &rest) < 0 ||
	    *rest != '\0' || *addr == '-')
		goto bad;
	if (sm_set_from(s, addr) == 0)
		return 0;
bad:
	cli_err(s->cli, "bad sender address \"%.100s\"", v);
	return EX_DATAERR;
}

/*
 * Resolves one recipient as the inbound session does (common/smtpproto.c);
 * one that starts with '-' is refused too (Postfix's allow_min_user = no:
 * a mistyped option).  Returns 0, or EX_DATAERR with *why.
 */
static int
sm_resolve(struct sm *s, const char *in, char *out, size_t outsz,
    const char **why)
{
	int r = smtpproto_rcpt_addr(s->cli->cfg, in, out, outsz);

	if (r == -EDESTADDRREQ)
		*why = "recipient address needs a domain (no alias and no "
		    "local_domain)";
	else if (r < 0)
		*why = "bad recipient address";
	else if (*out == '-')
		*why = "an address may not start with '-'";
	else
		return 0;
	return EX_DATAERR;
}

/* Adds a recipient (address-list element) to the envelope, once. */
static int
sm_add_rcpt(void *arg, const char *in)
{
	struct sm *s = arg;
	char addr[ADDR_MAX];
	const char *why;
	char **nr;
	size_t i;
	int r;

	if ((r = sm_resolve(s, in, addr, sizeof(addr), &why)) != 0) {
		cli_err(s->cli, "%.200s: %s", in, why);
		return r;
	}
	for (i = 0; i < s->nrcpt; i++)
		if (strcasecmp(s->rcpt[i], addr) == 0)
			return 0;
	if (s->nrcpt >= s->cli->cfg->limits.recipients) {
		cli_err(s->cli, "too many recipients (limits.recipients is "
		    "%u)", s->cli->cfg->limits.recipients);
		return EX_DATAERR;
	}
	if ((nr = reallocarray(s->rcpt, s->nrcpt + 1, sizeof(*nr))) == NULL)
		return EX_OSERR;
	s->rcpt = nr;
	if ((s->rcpt[s->nrcpt] = strdup(addr)) == NULL)
		return EX_OSERR;
	s->nrcpt++;
	if (!addr_is_ascii(addr))
		s->flags |= QUEUE_F_SMTPUTF8;
	return 0;
}

/* ---- the spool ---------------------------------------------------------- */

/* A storage problem: one line, EX_TEMPFAIL. */
static int
sm_store_error(struct sm *s, const char *what, int r)
{
	cli_err(s->cli, "cannot store the message (%s): %s", what,
	    strerror(-r));
	return EX_TEMPFAIL;
}

/*
 * Opens the maildrop.  Only the daemon (or tmpfiles.d) creates it: made
 * here by root it would belong to root, and the daemon could not use it.
 */
static int
sm_open_maildrop(struct sm *s)
{
	char *err = NULL;
	int r;

	cli_priv_on(s->cli);
	r = queue_maildrop_open(s->cli->cfg->spool, false, &s->md, &err);
	cli_priv_off(s->cli);
	if (r < 0) {
		cli_err(s->cli, "cannot store the message: %s%s",
		    err != NULL ? err : strerror(-r), r == -ENOENT ?
		    " (the spool is not set up: start smartrelayd once or "
		    "run systemd-tmpfiles --create)" : "");
		free(err);
		return EX_TEMPFAIL;
	}
	return 0;
}

/* Starts a record in maildrop/tmp. */
static int
sm_start_writer(struct sm *s)
{
	int r;

	cli_priv_on(s->cli);
	r = queue_maildrop_writer_new(s->md, &s->w);
	cli_priv_off(s->cli);
	if (r < 0)
		return sm_store_error(s, "maildrop", r);
	return 0;
}

/* Commits the record into the maildrop, durably. */
static int
sm_commit(struct sm *s)
{
	int r;

	cli_priv_on(s->cli);
	r = queue_maildrop_commit(s->w);
	cli_priv_off(s->cli);
	if (r < 0)
		return sm_store_error(s, "commit", r);
	return 0;
}

/* DATA filter output: into the record unless it is already lost. */
static void
sm_body_out(void *arg, const char *buf, size_t len)
{
	struct sm *s = arg;
	int r;

	if (s->error != 0 || s->too_big)
		return;
	if (s->body.size > s->cli->cfg->limits.message_size) {
		s->too_big = true;
		return;
	}
	if ((r = queue_writer_write(s->w, buf, len)) < 0)
		s->error = r;
}

/* Hands -N/-R/-V to the writer: the same NOTIFY for every recipient. */
static int
sm_dsn_request(struct sm *s)
{
	size_t i;

	if (s->notify == 0 && s->ret == QUEUE_RET_UNSET && *s->envid == '\0')
		return 0;
	if (s->notify != 0) {
		if ((s->dsn = calloc(s->nrcpt, sizeof(*s->dsn))) == NULL)
			return -ENOMEM;
		for (i = 0; i < s->nrcpt; i++)
			s->dsn[i].notify = s->notify;
	}
	return queue_writer_dsn(s->w, s->ret, *s->envid != '\0' ? s->envid :
	    NULL, s->dsn);
}

/* Writes the envelope and prepares the DATA filter. */
static int
sm_envelope(struct sm *s)
{
	const char *id = queue_writer_id(s->w);
	time_t now = time(NULL);
	char date[48];
	struct tm tm;
	int r;

	if ((r = sm_dsn_request(s)) == 0)
		r = queue_writer_envelope(s->w, s->from,
		    (const char *const *)s->rcpt, s->nrcpt, s->flags, now);
	free(s->dsn);
	s->dsn = NULL;
	if (r < 0)
		return sm_store_error(s, "envelope", r);
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	snprintf(s->date, sizeof(s->date), "Date: %s\r\n", date);
	snprintf(s->msgid, sizeof(s->msgid), "Message-ID: <%s.%lld@%s>\r\n",
	    id, (long long)now, s->cli->cfg->hostname);
	if (*s->fromline == '\0')
		hdr_from_line(s->fromline, sizeof(s->fromline), s->from,
		    s->cli->cfg->hostname);
	s->cfg = s->cli->cfg;
	s->ho = (struct hdr_opts){ .cfg = &s->cfg, .from = s->fromline,
	    .date = s->date, .msgid = s->msgid };
	body_init(&s->body, &s->ho, sm_body_out, s);
	s->data_bol = true;
	return 0;
}

/* ---- stage 3: into the DATA filter -------------------------------------- */

/* Feeds content to body.c as SMTP DATA: a "." at a line start is doubled. */
static void
sm_data(struct sm *s, const char *p, size_t len)
{
	size_t i, start = 0;

	for (i = 0; i < len; i++) {
		if (s->data_bol && p[i] == '.') {
			body_feed(&s->body, p + start, i - start);
			body_feed(&s->body, ".", 1);
			start = i;
		}
		/* Stage 1 makes every LF part of a CRLF. */
		s->data_bol = p[i] == '\n';
	}
	body_feed(&s->body, p + start, len - start);
}

/* Flushes the DATA filter; a header section it could not process fails. */
static void
sm_body_finish(struct sm *s)
{
	int r = body_finish(&s->body);

	if (r < 0 && s->error == 0)
		s->error = r;
}

/* Ends the data: the CRLF "." CRLF that body.c waits for. */
static void
sm_data_end(struct sm *s)
{
	if (!s->data_bol)
		body_feed(&s->body, "\r\n", 2);
	body_feed(&s->body, ".\r\n", 3);
	sm_body_finish(s);
}

/* ---- stage 2: the header section ---------------------------------------- */

/*
 * "From: Name <addr>" for -F / the user's full name, or "From: addr".  The
 * name is cut (at SM_NAME_MAX bytes, or earlier if buf is short) so that
 * the line always ends with its CRLF.
 */
static void
sm_from_header(struct sm *s, char *buf, size_t sz)
{
	const char *name = s->fullname;
	struct passwd *pw;
	char gecos[256] = "";
	size_t i, n = 0, tail = strlen(s->from) + sizeof("\" <>\r\n");

	if (name == NULL && s->from_arg == NULL &&
	    (pw = getpwuid(getuid())) != NULL && pw->pw_gecos != NULL) {
		snprintf(gecos, sizeof(gecos), "%.*s",
		    (int)strcspn(pw->pw_gecos, ","), pw->pw_gecos);
		name = gecos;
	}
	if (name == NULL || *name == '\0') {
		snprintf(buf, sz, "From: <%s>\r\n", s->from);
		return;
	}
	/* A quoted-string: no CR/LF, '"' and '\' escaped. */
	n = (size_t)snprintf(buf, sz, "From: \"");
	for (i = 0; name[i] != '\0' && n + 2 + tail <= sz && i < SM_NAME_MAX;
	    i++) {
		if (name[i] == '\r' || name[i] == '\n')
			continue;
		if (name[i] == '"' || name[i] == '\\')
			buf[n++] = '\\';
		buf[n++] = name[i];
	}
	snprintf(buf + n, sz - n, "\" <%s>\r\n", s->from);
}

/* Takes the recipients of one To/Cc/Bcc field (-t). */
static int
sm_extract(struct sm *s, const char *field, size_t len)
{
	char *v;
	int r;

	if ((v = cli_hdr_value(field, len)) == NULL)
		return EX_OSERR;
	r = cli_addr_list(v, sm_add_rcpt, s);
	free(v);
	return r == -ENOMEM ? EX_OSERR : r;
}

/* The field starting at hdr[*pos] (with its continuation lines). */
static bool
sm_next_field(const struct sm *s, size_t end, size_t *pos, const char **f,
    size_t *len)
{
	const char *p = s->hdr + *pos, *e = s->hdr + end, *nl;

	if (*pos >= end)
		return false;
	*f = p;
	do {
		nl = memmem(p, (size_t)(e - p), "\r\n", 2);
		p = nl != NULL ? nl + 2 : e;
	} while (p < e && (*p == ' ' || *p == '\t'));
	*len = (size_t)(p - *f);
	*pos += *len;
	return true;
}

/*
 * The header section is complete (hdr[0..end)): takes the -t recipients,
 * writes the envelope, then passes the section on to the DATA filter,
 * whose header module (header.c) removes Bcc: and adds the From: made
 * here when there is none.
 */
static int
sm_headers_done(struct sm *s, size_t end)
{
	size_t pos = 0, len;
	const char *f;
	int r;

	s->in_headers = false;
	while (sm_next_field(s, end, &pos, &f, &len)) {
		if (s->extract && (cli_hdr_is(f, len, "To") ||
		    cli_hdr_is(f, len, "Cc") || cli_hdr_is(f, len, "Bcc")) &&
		    (r = sm_extract(s, f, len)) != 0)
			return r;
	}
	if (s->nrcpt == 0) {
		cli_err(s->cli, "no recipient addresses found in the To:, "
		    "Cc: and Bcc: headers");
		return EX_DATAERR;
	}
	if (*s->from != '\0')
		sm_from_header(s, s->fromline, sizeof(s->fromline));
	if ((r = sm_envelope(s)) != 0)
		return r;
	sm_data(s, s->hdr, s->hdrlen);
	free(s->hdr);
	s->hdr = NULL;
	s->hdrlen = s->hdrcap = 0;
	return 0;
}

/*
 * An mbox separator line, "From sender date" (git format-patch, a saved
 * mailbox), or its quoted form ">From ": skipped at the very start of the
 * input, with or without -t, as Postfix's sendmail does.
 */
static bool
sm_is_mbox_from(const char *line, size_t len)
{
	size_t i = 0;

	while (i < len && line[i] == '>')
		i++;
	return len - i >= 5 && memcmp(line + i, "From ", 5) == 0;
}

/* Stage 2: buffers the header section until its end shows. */
static int
sm_content(struct sm *s, const char *p, size_t len)
{
	const char *nl;
	size_t ls, le, cap;
	char *nh;

	if (!s->in_headers) {
		sm_data(s, p, len);
		return 0;
	}
	if (s->hdrlen + len > SM_HEADER_MAX) {
		cli_err(s->cli, "the header section is larger than %u bytes",
		    SM_HEADER_MAX);
		return EX_DATAERR;
	}
	if (s->hdrlen + len > s->hdrcap) {
		cap = s->hdrcap == 0 ? 8192 : s->hdrcap;
		while (cap < s->hdrlen + len)
			cap *= 2;
		if ((nh = realloc(s->hdr, cap)) == NULL)
			return EX_OSERR;
		s->hdr = nh;
		s->hdrcap = cap;
	}
	memcpy(s->hdr + s->hdrlen, p, len);
	s->hdrlen += len;
	while ((nl = memmem(s->hdr + s->hdrscan, s->hdrlen - s->hdrscan,
	    "\r\n", 2)) != NULL) {
		ls = s->hdrscan;
		le = (size_t)(nl - s->hdr);
		s->hdrscan = le + 2;
		if (s->mbox_from && sm_is_mbox_from(s->hdr + ls, le - ls)) {
			memmove(s->hdr + ls, s->hdr + le + 2,
			    s->hdrlen - le - 2);
			s->hdrlen -= le + 2 - ls;
			s->hdrscan = ls;
			continue;
		}
		s->mbox_from = false;
		if (le == ls || (ls == 0 && (s->hdr[0] == ' ' ||
		    s->hdr[0] == '\t')) || (s->hdr[ls] != ' ' &&
		    s->hdr[ls] != '\t' && !cli_hdr_field_start(s->hdr + ls,
		    le - ls)))
			return sm_headers_done(s, ls);
	}
	return 0;
}

/* ---- stage 1: sendmail's input conventions ------------------------------ */

/*
 * One input byte through stage 1; writes at most 5 bytes to out.  A bare
 * CR ends a line exactly as in the DATA filter (body.c), before any
 * header work: "To: a\rBcc: x\r" is two header lines, so the Bcc: is seen
 * and removed.  A line holding only "." ends the input unless -i; a "."
 * line ended by a bare CR is content, as in the DATA filter.
 */
static size_t
sm_in_byte(struct sm *s, char c, char *out)
{
	size_t n = 0;

	switch (s->in) {
	case SM_IN_CR:
		s->in = SM_IN_BOL;
		out[n++] = '\r';
		out[n++] = '\n';
		return c == '\n' ? n : n + sm_in_byte(s, c, out + n);
	case SM_IN_DOTCR:
		if (c == '\n') {
			s->ended = true;
			return 0;
		}
		memcpy(out, ".\r\n", 3);
		s->in = SM_IN_BOL;
		return 3 + sm_in_byte(s, c, out + 3);
	case SM_IN_DOT:
		if (c == '\n') {
			s->ended = true;
			return 0;
		}
		if (c == '\r') {
			s->in = SM_IN_DOTCR;
			return 0;
		}
		out[n++] = '.';
		s->in = SM_IN_TEXT;
		return n + sm_in_byte(s, c, out + n);
	case SM_IN_BOL:
		if (c == '.' && !s->ignore_dots) {
			s->in = SM_IN_DOT;
			return 0;
		}
		break;
	case SM_IN_TEXT:
		break;
	}
	if (c == '\r') {
		s->in = SM_IN_CR;
		return 0;
	}
	if (c == '\n') {
		s->in = SM_IN_BOL;
		memcpy(out, "\r\n", 2);
		return 2;
	}
	s->in = SM_IN_TEXT;
	*out = c;
	return 1;
}

/* Turns input bytes into content: every line end becomes CRLF. */
static int
sm_input(struct sm *s, const char *p, size_t len)
{
	static char out[5 * SM_READ_CHUNK];
	size_t i, n = 0;

	for (i = 0; i < len && !s->ended; i++)
		n += sm_in_byte(s, p[i], out + n);
	return n > 0 ? sm_content(s, out, n) : 0;
}

/* End of input: completes the last line and the header section. */
static int
sm_input_end(struct sm *s)
{
	int r = 0;

	if (s->in == SM_IN_CR || s->in == SM_IN_TEXT)
		r = sm_content(s, "\r\n", 2);
	/* A "." alone on the last line, without a line end, ends it too. */
	if (r == 0 && s->in_headers)
		r = sm_headers_done(s, s->hdrlen);
	if (r == 0)
		sm_data_end(s);
	return r;
}

/* The outcome of the DATA filter: 0 or a sysexits status with a line. */
static int
sm_body_status(struct sm *s)
{
	if (s->body.nul) {
		cli_err(s->cli, "the message contains NUL bytes; not sent");
		return EX_DATAERR;
	}
	if (s->too_big) {
		cli_err(s->cli, "the message is larger than %" PRIu64
		    " bytes (limits.message_size); not sent",
		    s->cli->cfg->limits.message_size);
		return EX_DATAERR;
	}
	if (s->error != 0)
		return sm_store_error(s, "write", s->error);
	return 0;
}

/* Reads stdin through the stages until its end or a lone dot. */
static int
sm_read_message(struct sm *s)
{
	static char buf[SM_READ_CHUNK];
	ssize_t n;
	int r;

	s->in = SM_IN_BOL;
	s->in_headers = true;
	s->mbox_from = true;
	for (;;) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			cli_err(s->cli, "reading the message: %s",
			    strerror(errno));
			return EX_IOERR;
		}
		if (n == 0)
			break;
		if ((r = sm_input(s, buf, (size_t)n)) != 0)
			return r;
		if (s->ended)
			break;
	}
	if ((r = sm_input_end(s)) != 0)
		return r;
	return sm_body_status(s);
}

/* Tells the daemon; -v says where the message is. */
static void
sm_announce(struct sm *s, const char *id)
{
	bool up = cli_kick(s->cli);

	if (s->cli->verbose)
		fprintf(stderr, "%s: stored as %s in the maildrop; %s\n",
		    s->cli->prog, id, up ? "smartrelayd notified" :
		    "smartrelayd is not running, it will be sent after it "
		    "starts");
}

static void
sm_free(struct sm *s)
{
	size_t i;

	queue_writer_free(s->w);
	s->w = NULL;
	for (i = 0; i < s->nrcpt; i++)
		free(s->rcpt[i]);
	free(s->rcpt);
	s->rcpt = NULL;
	s->nrcpt = 0;
	free(s->hdr);
	s->hdr = NULL;
	s->hdrlen = s->hdrcap = s->hdrscan = 0;
	body_free(&s->body);
	*s->fromline = '\0';
}

/* sendmail [options] [recipients] < message */
static int
sm_submit(struct sm *s)
{
	char id[QUEUE_ID_LEN + 1];
	size_t i;
	int r;

	if ((r = sm_sender(s)) != 0)
		return r;
	for (i = 0; i < s->nargs; i++) {
		r = cli_addr_list(s->args[i], sm_add_rcpt, s);
		if (r != 0)
			return r == -ENOMEM ? EX_OSERR : r;
	}
	if (s->nrcpt == 0 && !s->extract) {
		cli_err(s->cli, "no recipients: give them as arguments or "
		    "use -t");
		return EX_DATAERR;
	}
	if ((r = sm_open_maildrop(s)) != 0 || (r = sm_start_writer(s)) != 0)
		return r;
	if ((r = sm_read_message(s)) != 0 || (r = sm_commit(s)) != 0)
		return r;
	memcpy(id, queue_writer_id(s->w), sizeof(id));
	sm_announce(s, id);
	return 0;
}

/* ---- -bs: SMTP on stdin and stdout -------------------------------------- */

/* The -bs dialogue: the inbound session's commands and replies. */
struct sm_smtp {
	struct sm *s;			/* borrowed: the transaction */
	struct evbuffer *in;		/* owned: input not yet used */
	bool eof;
	bool longline;			/* dropping an over-long line */
	bool helo;			/* EHLO/HELO seen */
	bool mail;			/* in a transaction */
	unsigned nerrors;
};

/* Sends one reply; fmt may hold several lines separated by "\r\n". */
static void sm_reply(struct sm_smtp *, const char *, ...)
	__attribute__((format(printf, 2, 3)));

static void
sm_reply(struct sm_smtp *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputs("\r\n", stdout);
	fflush(stdout);
	if (*fmt == '4' || *fmt == '5')
		t->nerrors++;
}

/* Reads more input; false at end of input or on an error. */
static bool
sm_fill(struct sm_smtp *t)
{
	char buf[SM_READ_CHUNK];
	ssize_t n;

	if (t->eof)
		return false;
	do
		n = read(STDIN_FILENO, buf, sizeof(buf));
	while (n == -1 && errno == EINTR);
	if (n <= 0 || evbuffer_add(t->in, buf, (size_t)n) < 0) {
		t->eof = true;
		return false;
	}
	return true;
}

/*
 * The next command line without its line end (common/lineio.c, as the
 * inbound session reads them); NULL at end of input.  A line over
 * SM_LINE_MAX is answered 500 5.5.2 and skipped.
 */
static char *
sm_line(struct sm_smtp *t, char *line)
{
	size_t n;

	for (;;) {
		switch (lineio_get(t->in, SM_LINE_MAX, &t->longline, line,
		    &n)) {
		case LINEIO_AGAIN:
			if (!sm_fill(t))
				return NULL;
			continue;
		case LINEIO_TOO_LONG:
			sm_reply(t, "500 5.5.2 Error: line too long");
			continue;
		case LINEIO_LINE:
			break;
		}
		if (strlen(line) != n) {
			sm_reply(t, "500 5.5.2 Error: NUL byte in command");
			continue;
		}
		return line;
	}
}

/* Feeds DATA bytes to the filter; false when the input ends first. */
static bool
sm_smtp_body(struct sm_smtp *t)
{
	struct evbuffer_iovec v;

	for (;;) {
		while (evbuffer_peek(t->in, -1, NULL, &v, 1) > 0 &&
		    v.iov_len > 0) {
			evbuffer_drain(t->in, body_feed(&t->s->body,
			    v.iov_base, v.iov_len));
			if (t->s->body.raw == BODY_END)
				return true;
		}
		if (!sm_fill(t))
			return false;
	}
}

/* Ends the transaction (RSET, HELO, after DATA). */
static void
sm_txn_end(struct sm_smtp *t)
{
	sm_free(t->s);
	t->s->flags = 0;
	t->s->error = 0;
	t->s->too_big = false;
	t->mail = false;
}

static void
sm_smtp_mail(struct sm_smtp *t, const char *args)
{
	struct sm *s = t->s;
	char addr[ADDR_MAX], reply[SMTPPROTO_REPLY_MAX];
	struct smtpproto_mail mp;
	const char *rest;
	int r;

	if (!t->helo) {
		sm_reply(t, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (t->mail) {
		sm_reply(t, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (strncasecmp(args, "FROM:", 5) != 0) {
		sm_reply(t, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (addr_parse_path(args + 5, addr, sizeof(addr), &rest) < 0) {
		sm_reply(t, "501 5.1.3 Bad sender address syntax");
		return;
	}
	/* -bs offers no DSN (yet): RET= and ENVID= are refused. */
	if (smtpproto_mail_params(rest, s->cli->cfg->limits.message_size,
	    false, &mp, reply, sizeof(reply)) < 0) {
		sm_reply(t, "%s", reply);
		return;
	}
	s->flags = mp.flags;
	if (sm_set_from(s, addr) < 0) {
		sm_reply(t, "501 5.1.3 Bad sender address syntax");
		return;
	}
	cli_priv_on(s->cli);
	r = queue_maildrop_writer_new(s->md, &s->w);
	cli_priv_off(s->cli);
	if (r < 0) {
		sm_reply(t, "452 4.3.1 Insufficient system storage");
		return;
	}
	t->mail = true;
	sm_reply(t, "250 2.1.0 Ok");
}

static void
sm_smtp_rcpt(struct sm_smtp *t, const char *args)
{
	struct sm *s = t->s;
	char addr[ADDR_MAX], reply[SMTPPROTO_REPLY_MAX];
	char **nr;

	if (!t->mail) {
		sm_reply(t, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (strncasecmp(args, "TO:", 3) != 0) {
		sm_reply(t, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (s->nrcpt >= s->cli->cfg->limits.recipients) {
		sm_reply(t, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (smtpproto_rcpt(s->cli->cfg, args + 3, addr, sizeof(addr), NULL,
	    reply, sizeof(reply)) < 0) {
		sm_reply(t, "%s", reply);
		return;
	}
	if ((nr = reallocarray(s->rcpt, s->nrcpt + 1, sizeof(*nr))) == NULL ||
	    (nr[s->nrcpt] = strdup(addr)) == NULL) {
		if (nr != NULL)
			s->rcpt = nr;
		sm_reply(t, "452 4.3.1 Insufficient system resources");
		return;
	}
	s->rcpt = nr;
	s->nrcpt++;
	if (!addr_is_ascii(addr))
		s->flags |= QUEUE_F_SMTPUTF8;
	sm_reply(t, "250 2.1.5 Ok");
}

/* DATA: the raw bytes go to body.c until CRLF.CRLF, then commit. */
static void
sm_smtp_data(struct sm_smtp *t, const char *args)
{
	struct sm *s = t->s;
	char id[QUEUE_ID_LEN + 1];

	if (!t->mail || s->nrcpt == 0) {
		sm_reply(t, "503 5.5.1 Error: need %s command",
		    t->mail ? "RCPT" : "MAIL");
		return;
	}
	if (*args != '\0') {
		sm_reply(t, "501 5.5.4 Syntax: DATA");
		return;
	}
	if (sm_envelope(s) != 0) {
		sm_reply(t, "451 4.3.0 Error: queue file write error");
		sm_txn_end(t);
		return;
	}
	sm_reply(t, "354 End data with <CR><LF>.<CR><LF>");
	if (!sm_smtp_body(t)) {
		sm_txn_end(t);
		return;		/* end of input inside DATA */
	}
	sm_body_finish(s);
	memcpy(id, queue_writer_id(s->w), sizeof(id));
	if (s->body.nul)
		sm_reply(t, "554 5.6.0 Error: message contains NUL bytes, "
		    "not queued");
	else if (s->too_big)
		sm_reply(t, "552 5.3.4 Error: message size exceeds fixed "
		    "limit of %" PRIu64 " bytes",
		    s->cli->cfg->limits.message_size);
	else if (s->error != 0 || sm_commit(s) != 0)
		sm_reply(t, "451 4.3.0 Error: queue file write error");
	else {
		sm_reply(t, "250 2.0.0 Ok: queued as %s", id);
		sm_announce(s, id);
	}
	sm_txn_end(t);
}

/* Runs one command line; false after QUIT. */
static bool
sm_smtp_command(struct sm_smtp *t, const char *line)
{
	const struct cfg *cfg = t->s->cli->cfg;
	size_t len = strcspn(line, " ");
	const char *args = line + len + strspn(line + len, " ");

#define IS(w) (len == sizeof(w) - 1 && strncasecmp(line, w, len) == 0)
	if (IS("EHLO") || IS("HELO")) {
		if (*args == '\0') {
			sm_reply(t, "501 5.5.4 Syntax: %.4s hostname", line);
			return true;
		}
		sm_txn_end(t);
		t->helo = true;
		if (IS("HELO"))
			sm_reply(t, "250 %s", cfg->hostname);
		else
			sm_reply(t, "250-%s Hello %.*s\r\n250-PIPELINING\r\n"
			    "250-SIZE %" PRIu64 "\r\n250-8BITMIME\r\n"
			    "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n"
			    "250 HELP", cfg->hostname,
			    (int)strcspn(args, " "), args,
			    cfg->limits.message_size);
	} else if (IS("MAIL"))
		sm_smtp_mail(t, args);
	else if (IS("RCPT"))
		sm_smtp_rcpt(t, args);
	else if (IS("DATA"))
		sm_smtp_data(t, args);
	else if (IS("RSET")) {
		sm_txn_end(t);
		sm_reply(t, "250 2.0.0 Ok");
	} else if (IS("NOOP"))
		sm_reply(t, "250 2.0.0 Ok");
	else if (IS("VRFY"))
		sm_reply(t, "252 2.5.2 Cannot VRFY user, but will accept "
		    "message and attempt delivery");
	else if (IS("HELP"))
		sm_reply(t, "214-2.0.0 smartrelay: a relay to one smart host"
		    "\r\n214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET "
		    "NOOP QUIT HELP VRFY\r\n214 2.0.0 End of HELP info");
	else if (IS("QUIT")) {
		sm_reply(t, "221 2.0.0 Bye");
		return false;
	} else if (IS("STARTTLS") || IS("AUTH") || IS("BDAT") || IS("EXPN") ||
	    IS("ETRN"))
		sm_reply(t, "502 5.5.1 Error: command not implemented");
	else
		sm_reply(t, "500 5.5.1 Error: command not recognized");
#undef IS
	if (t->nerrors > SM_ERRORS_MAX) {
		sm_reply(t, "421 4.7.0 %s Error: too many errors, closing",
		    cfg->hostname);
		return false;
	}
	return true;
}

/* sendmail -bs */
static int
sm_smtp(struct sm *s)
{
	static struct sm_smtp t;
	char line[SM_LINE_MAX + 1];
	int r;

	t.s = s;
	if ((t.in = evbuffer_new()) == NULL)
		return EX_OSERR;
	if ((r = sm_open_maildrop(s)) != 0) {
		evbuffer_free(t.in);
		printf("421 4.3.0 %s Error: cannot store mail now\r\n",
		    s->cli->cfg->hostname);
		return r;
	}
	sm_reply(&t, "220 %s ESMTP smartrelay (sendmail -bs)",
	    s->cli->cfg->hostname);
	while (sm_line(&t, line) != NULL)
		if (!sm_smtp_command(&t, line))
			break;
	sm_txn_end(&t);
	evbuffer_free(t.in);
	return 0;
}

/* ---- -bi, -bv, -bd: the modes without a message -------------------------- */

/*
 * newaliases, -bi, -I: there is no alias database to build; say where the
 * aliases are.  Exit 0, so that package scripts and configuration
 * management handlers that run newaliases succeed.
 */
static int
sm_newaliases(struct sm *s)
{
	printf("%s: smartrelay has no alias database to build: aliases live "
	    "in rewrite.aliases in %s (reload smartrelayd to apply them: "
	    "systemctl reload smartrelay)\n", s->cli->prog, s->cli->cfg_path);
	return 0;
}

/* One -bv address: how it would be rewritten and where it would go. */
static int
sm_verify_one(void *arg, const char *in)
{
	struct sm *s = arg;
	const struct cfg *cfg = s->cli->cfg;
	char addr[ADDR_MAX], bare[ADDR_MAX];
	const char *why, *how = "", *rest;
	size_t i;

	if (sm_resolve(s, in, addr, sizeof(addr), &why) != 0) {
		printf("%s: undeliverable: %s\n", in, why);
		s->verify_failed = true;
		return 0;
	}
	if (addr_parse_path(in, bare, sizeof(bare), &rest) == 0 &&
	    addr_is_bare(bare)) {
		how = " (rewrite.local_domain)";
		for (i = 0; i < cfg->rewrite.naliases; i++)
			if (strcasecmp(cfg->rewrite.aliases[i].name, bare) == 0)
				how = " (rewrite.aliases)";
	}
	printf("%s -> <%s>%s: deliverable: relayed to %s port %u\n", in, addr,
	    how, cfg->upstream.host, cfg->upstream.port);
	return 0;
}

/*
 * -bv ADDR...: the routing of each address, one line each, nothing sent.
 * Exit 0 when every address is deliverable, else EX_DATAERR.
 */
static int
sm_verify(struct sm *s)
{
	size_t i;
	int r;

	for (i = 0; i < s->nargs; i++)
		if ((r = cli_addr_list(s->args[i], sm_verify_one, s)) != 0)
			return r == -ENOMEM ? EX_OSERR : r;
	return s->verify_failed ? EX_DATAERR : 0;
}

/*
 * -bd, -bl: Postfix's sendmail runs "postfix start".  smartrelayd runs in
 * the foreground under systemd and is not started by sendmail: exit 0 when
 * it runs, else say how to start it and exit EX_UNAVAILABLE.
 */
static int
sm_daemon(struct sm *s)
{
	if (cli_daemon_up(s->cli))
		return 0;
	cli_err(s->cli, "smartrelayd is not running; sendmail does not start "
	    "it: systemctl start smartrelay");
	return EX_UNAVAILABLE;
}

/* ---- entry -------------------------------------------------------------- */

/* Runs the mode the options chose. */
static int
sm_run(struct sm *s)
{
	struct cli *c = s->cli;
	int r;

	if (s->mode == SM_NEWALIASES)
		return sm_newaliases(s);
	if (s->mode == SM_IGNORE)
		return 0;
	if ((r = cli_load_cfg(c)) != 0)
		return r;
	switch (s->mode) {
	case SM_MAILQ:
		return cli_list(c, false);
	case SM_FLUSH:
		return cli_do_flush(c, NULL, 0);
	case SM_VERIFY:
		return sm_verify(s);
	case SM_DAEMON:
		return sm_daemon(s);
	case SM_SMTP:
		return sm_smtp(s);
	default:
		return sm_submit(s);
	}
}

int
cli_sendmail(struct cli *c, int argc, char **argv)
{
	struct sm s = { .cli = c, .mode = SM_SUBMIT };
	int r;

	if ((r = sm_parse(&s, argc, argv)) == 0)
		r = sm_run(&s);
	sm_free(&s);
	queue_close(s.md);
	free(s.args);
	return r;
}

int
cli_newaliases(struct cli *c, int argc, char **argv)
{
	struct sm s = { .cli = c, .mode = SM_NEWALIASES };
	int r;

	if ((r = sm_parse(&s, argc, argv)) == 0)
		r = sm_run(&s);
	free(s.args);
	return r;
}
