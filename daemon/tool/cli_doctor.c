/*
 * cli_doctor: "smartrelay test", the upstream doctor (docs/cli.md).
 *
 * A small blocking SMTP client, separate from the daemon's asynchronous
 * relay, that walks through what the relay does with the configured
 * upstream and stops at the first step that fails: the configuration and
 * the password, name resolution, the TCP connection, STARTTLS or implicit
 * TLS with the certificate chain and name, EHLO, AUTH and, with --to, a
 * short test message.  Each step prints one line, "STEP ok DETAIL" or
 * "STEP FAILED DETAIL"; a failure is followed by what it means and how to
 * fix it, in the words of docs/relay.md's failure table.  It uses the same
 * TLS setup (tls.c), reply parser (reply.c) and password reader (cfg.c)
 * as the daemon, so what it sees is what the relay will see.
 *
 * The password is only ever in a struct cfg_secret and in the AUTH line
 * being sent, both wiped after use; with -v the dialogue is printed with
 * AUTH payloads masked by log_mask_line().
 *
 * Exit status: 0 when every step passed, 1 when one failed, 78
 * (EX_CONFIG) when the configuration or the password cannot be used, 64
 * on a bad command line.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "addr.h"
#include "cfg.h"
#include "cli.h"
#include "lineio.h"
#include "log.h"
#include "oauth.h"
#include "reply.h"
#include "smtpproto.h"
#include "tls.h"
#include "upstream.h"

#define DOC_GREETING_SECS	5	/* before suspecting implicit TLS */
#define DOC_PLAIN_PEEK_MS	1500	/* implicit TLS: does it talk first? */
#define DOC_REPLY_SECS_MAX	60	/* cap on upstream.timeout */
#define DOC_WRAP		78	/* explanation width */
#define DOC_INDENT		"          "
#define DOC_APP_PW_URL		"https://myaccount.google.com/apppasswords"

/* One run of the doctor. */
struct doc {
	const struct cfg *cfg;		/* borrowed */
	const char *to;			/* borrowed: --to, NULL: no message */
	const char *explain;		/* borrowed: --explain, NULL: none */
	bool verbose;			/* print the dialogue */
	unsigned timeout;		/* seconds per reply */

	char *pw_path;			/* owned: where the password came from */
	bool pw_credential;		/* from $CREDENTIALS_DIRECTORY */
	bool pw_spaces;			/* spaces inside were removed */
	bool pw_app_like;		/* 16 letters, like an App Password */
	size_t pw_len;
	struct oauth_secret token;	/* auth = "xoauth2": the access token */

	struct event_base *base;	/* owned: for resolving and connecting */
	struct evdns_base *dns;		/* owned */
	struct upstream_result up;	/* how connecting went */
	bool up_done;
	int fd;				/* the connection, -1: none */
	SSL_CTX *ctx;			/* owned */
	SSL *ssl;			/* owned, NULL: plain text */
	bool gmail;			/* the server says it is Gmail */
	bool alive;			/* in step: a QUIT makes sense */

	struct evbuffer *in;		/* owned: received, not yet parsed */
	struct reply reply;		/* the last reply */
	struct smtpproto_ehlo ehlo;	/* what the last EHLO offered */

	bool cert_seen;			/* the verify callback saw the leaf */
	char cert_names[512];		/* its DNS and IP names, CN */
	char cert_issuer[256];
	char cert_subject[256];
};

/* ---- output ---- */

/* Prints one step: "resolve   ok     detail". */
static void __attribute__((format(printf, 3, 4)))
doc_step(const char *step, bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("%-9s %-6s ", step, ok ? "ok" : "FAILED");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Prints a paragraph, indented and wrapped at word boundaries. */
static void __attribute__((format(printf, 1, 2)))
doc_explain(const char *fmt, ...)
{
	char buf[4096];
	const char *p = buf;
	size_t col = 0, w, indent = strlen(DOC_INDENT);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		w = strcspn(p, " ");
		if (col > 0 && col + 1 + w > DOC_WRAP) {
			putchar('\n');
			col = 0;
		}
		if (col == 0) {
			fputs(DOC_INDENT, stdout);
			col = indent;
		} else {
			putchar(' ');
			col++;
		}
		fwrite(p, 1, w, stdout);
		col += w;
		p += w;
	}
	if (col > 0)
		putchar('\n');
}

/* The advice vars for this run: the password's real place. */
static void
doc_advice_vars(const struct doc *d, struct smtpproto_advice_vars *v)
{
	smtpproto_advice_vars_cfg(d->cfg, v);
	if (d->pw_path != NULL)
		v->password_file = d->pw_path;
}

/* Prints the table's advice (common/smtpproto_advice.c) for a row. */
static void
doc_advise(const struct doc *d, const struct smtpproto_advice *a)
{
	struct smtpproto_advice_vars v;
	char fix[2048];

	doc_advice_vars(d, &v);
	doc_explain("%s", smtpproto_advice_format(a, &v, fix, sizeof(fix)));
}

/* The last reply on one line, shortened for the step line. */
static const char *
doc_reply_str(const struct doc *d, char *buf, size_t bufsz)
{
	reply_summary(&d->reply, buf, bufsz);
	return buf;
}

/* Prints one dialogue line with -v, AUTH payloads masked. */
static void
doc_trace(const struct doc *d, const char *dir, const char *line,
    bool after_auth)
{
	char masked[1024];

	if (!d->verbose)
		return;
	if (*dir == '>')
		log_mask_line(masked, sizeof(masked), line, after_auth);
	else
		snprintf(masked, sizeof(masked), "%.1000s", line);
	printf("    %s %s\n", dir, masked);
}

/* ---- I/O ---- */

/* Sets the socket's read and write timeouts. */
static void
doc_set_timeout(int fd, unsigned secs)
{
	struct timeval tv = { .tv_sec = (time_t)secs };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Writes all of buf; 0 or a negative errno. */
static int
doc_write(struct doc *d, const char *buf, size_t len)
{
	ssize_t n;
	int r;

	while (len > 0) {
		if (d->ssl != NULL) {
			r = SSL_write(d->ssl, buf, (int)len);
			if (r <= 0) {
				ERR_clear_error();
				return -EPIPE;
			}
			n = r;
		} else {
			n = send(d->fd, buf, len, MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1)
				return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads more bytes into d->in; 0, -ETIMEDOUT, -ECONNRESET (closed). */
static int
doc_fill(struct doc *d)
{
	char buf[4096];
	ssize_t n;
	int r;

	if (d->ssl != NULL) {
		r = SSL_read(d->ssl, buf, (int)sizeof(buf));
		if (r > 0)
			return evbuffer_add(d->in, buf, (size_t)r) == 0 ? 0 :
			    -ENOMEM;
		r = SSL_get_error(d->ssl, r);
		ERR_clear_error();
		if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
			return -ETIMEDOUT;
		if (r == SSL_ERROR_SYSCALL && (errno == EAGAIN ||
		    errno == EWOULDBLOCK))
			return -ETIMEDOUT;
		return -ECONNRESET;
	}
	do
		n = recv(d->fd, buf, sizeof(buf), 0);
	while (n == -1 && errno == EINTR);
	if (n > 0)
		return evbuffer_add(d->in, buf, (size_t)n) == 0 ? 0 : -ENOMEM;
	if (n == 0)
		return -ECONNRESET;
	return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
}

/* Reads one whole reply into d->reply (common/lineio.c reads the lines,
 * as in the relay); 0 or a negative errno. */
static int
doc_read_reply(struct doc *d)
{
	char line[REPLY_LINE_MAX + 3];
	enum lineio_status st;
	size_t len;
	int r;

	reply_init(&d->reply);
	for (;;) {
		while ((st = lineio_get(d->in, REPLY_LINE_MAX + 2, NULL, line,
		    &len)) == LINEIO_AGAIN)
			if ((r = doc_fill(d)) < 0) {
				d->alive = false;
				return r;
			}
		if (st == LINEIO_TOO_LONG) {
			d->alive = false;
			return -EBADMSG;
		}
		doc_trace(d, "<", line, false);
		r = reply_feed(&d->reply, line, len);
		if (r == 0)
			return 0;
		if (r != -EAGAIN) {
			d->alive = false;
			return r;
		}
	}
}

/*
 * Sends one command line and reads its reply.  after_auth: the line
 * answers a 334 challenge (traced as "***"; AUTH lines are masked too).
 */
static int
doc_cmd(struct doc *d, const char *line, bool after_auth)
{
	size_t len = strlen(line);
	char *buf;
	int r;

	doc_trace(d, ">", line, after_auth);
	if ((buf = malloc(len + 3)) == NULL)
		return -ENOMEM;
	memcpy(buf, line, len);
	memcpy(buf + len, "\r\n", 3);
	r = doc_write(d, buf, len + 2);
	explicit_bzero(buf, len + 2);
	free(buf);
	if (r < 0) {
		d->alive = false;
		return r;
	}
	return doc_read_reply(d);
}

/* Words for an I/O error while waiting for the server. */
static const char *
doc_io_error(int r)
{
	switch (-r) {
	case ETIMEDOUT:
		return "no answer in time";
	case ECONNRESET:
		return "the server closed the connection";
	case EBADMSG:
	case E2BIG:
		return "the server's reply is not valid SMTP";
	default:
		return strerror(-r);
	}
}

/* A failed exchange: the step fails with the I/O error or the reply. */
static void
doc_cmd_failed(struct doc *d, const char *step, const char *what, int r)
{
	char rs[600];

	if (r < 0)
		doc_step(step, false, "%s: %s", what, doc_io_error(r));
	else
		doc_step(step, false, "%s", doc_reply_str(d, rs, sizeof(rs)));
	if (r == -ETIMEDOUT)
		doc_explain("The server accepted the connection but did not "
		    "answer within %u seconds (upstream.timeout, at most %d "
		    "here). It may be overloaded, or something between here "
		    "and there (a proxy, a firewall doing inspection) holds "
		    "the connection.", d->timeout, DOC_REPLY_SECS_MAX);
	else if (r == -ECONNRESET)
		doc_explain("The server hung up. Servers do this to clients "
		    "they do not want (an address on a block list, too many "
		    "connections) and on protocol errors.");
	else if (r >= 0 && d->reply.code == 421)
		doc_advise(d, smtpproto_advice_reply(&d->reply));
}

/* ---- step 1: configuration and password ---- */

/*
 * Where cfg_read_password() takes the password from: the systemd
 * credential when it exists, else upstream.password_file.
 */
static char *
doc_password_path(const struct cfg *cfg, bool *credential)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char *path;

	*credential = false;
	if (dir != NULL && *dir != '\0') {
		if (asprintf(&path, "%s/%s", dir, CFG_CREDENTIAL_NAME) == -1)
			return NULL;
		if (access(path, F_OK) == 0 || errno != ENOENT) {
			*credential = true;
			return path;
		}
		free(path);
	}
	return cfg->upstream.password_file != NULL ?
	    strdup(cfg->upstream.password_file) : NULL;
}

/* True when the host name is Google's. */
static bool
doc_host_is_gmail(const char *host)
{
	size_t n = strlen(host);

	return strcasecmp(host, "smtp.gmail.com") == 0 ||
	    strcasecmp(host, "smtp.googlemail.com") == 0 ||
	    (n > 11 && strcasecmp(host + n - 11, ".google.com") == 0);
}

/* True when s is 16 ASCII letters, the shape of a Google App Password. */
static bool
doc_app_password_like(const struct cfg_secret *s)
{
	size_t i;

	if (s->len != 16)
		return false;
	for (i = 0; i < s->len; i++)
		if (!isalpha((unsigned char)s->buf[i]))
			return false;
	return true;
}

/* Explains why the password could not be read. */
static void
doc_password_help(const struct doc *d, int r)
{
	const char *p = d->pw_path;

	if (p == NULL) {
		doc_explain("smartrelay has no password to log in with. Put it "
		    "on the first line of a file readable only by the "
		    "daemon's user (mode 0600) and name it in the "
		    "configuration: upstream.password_file = "
		    "\"/etc/smartrelay/app-password\". Under systemd you may "
		    "instead pass it with LoadCredential=%s:/path/to/file in "
		    "the unit: the daemon then reads "
		    "$CREDENTIALS_DIRECTORY/%s, which takes precedence over "
		    "password_file.", CFG_CREDENTIAL_NAME, CFG_CREDENTIAL_NAME);
		return;
	}
	if (d->pw_credential)
		doc_explain("CREDENTIALS_DIRECTORY is set, so the password is "
		    "taken from %s (systemd LoadCredential=) and "
		    "upstream.password_file is not used.", p);
	switch (-r) {
	case ENOENT:
		doc_explain("%s does not exist. Create it with the password "
		    "on its first line, owned by the daemon's user and "
		    "readable only by it (chmod 600), or set "
		    "upstream.password_file to the right file.", p);
		break;
	case EACCES:
		doc_explain("You may not read %s as the user running this "
		    "test. That is expected for a private file (mode 0600): "
		    "run the test as root, or as the file's owner.", p);
		break;
	case EPERM:
		doc_explain("Other users of this machine can read %s and so "
		    "send mail as you. Make it private: chmod 600 %s (owned "
		    "by the daemon's user). smartrelay refuses to use it "
		    "until then.", p, p);
		break;
	default:
		doc_explain("The first line of %s must hold the password "
		    "(spaces are removed, as Google shows App Passwords in "
		    "groups of four).", p);
		break;
	}
}

/* Step 1 with auth = "xoauth2": one token request (docs/oauth.md). */
static bool
doc_token(struct doc *d)
{
	const struct cfg_oauth *o = &d->cfg->upstream.oauth;
	enum oauth_status st;
	char why[600];
	bool rotated;
	long life = 0;

	if (oauth_secret_init(&d->token, CFG_OAUTH_SECRET_MAX) < 0)
		return false;
	st = cli_oauth_token(d->cfg, &d->token, &life, &rotated, why,
	    sizeof(why));
	if (st != OAUTH_OK) {
		doc_step("token", false, "%s: %s", oauth_status_name(st), why);
		doc_explain("%s", oauth_advice(st, o));
		return false;
	}
	doc_step("token", true, "%s grant, access token for %lds from %s%s",
	    cfg_grant_name(o->grant), life, o->token_url, rotated ?
	    " (a new refresh token was stored)" : "");
	return true;
}

/* Step 1: the configuration and the password source. */
static bool
doc_check_config(struct doc *d)
{
	const struct cfg_upstream *u = &d->cfg->upstream;
	struct cfg_secret s;
	char *err = NULL;
	int r;

	doc_step("config", true, "%s: upstream %s port %u, tls = \"%s\", "
	    "user %s", d->cfg->path, u->host, u->port, cfg_tls_name(u->tls),
	    u->username != NULL ? u->username : "(none: no AUTH)");
	if (u->username == NULL)
		return true;
	if (u->auth == CFG_AUTH_XOAUTH2)
		return doc_token(d);
	d->pw_path = doc_password_path(d->cfg, &d->pw_credential);
	r = cfg_read_password(d->cfg, &s, &err);
	if (r < 0) {
		doc_step("password", false, "%s", err != NULL ? err :
		    strerror(-r));
		free(err);
		doc_password_help(d, r);
		return false;
	}
	d->pw_len = s.len;
	d->pw_app_like = doc_app_password_like(&s);
	d->pw_spaces = s.inner_spaces;
	cfg_secret_clear(&s);
	doc_step("password", true, "%s%s, %zu characters%s",
	    d->pw_credential ? "systemd credential " : "",
	    d->pw_path != NULL ? d->pw_path : "?", d->pw_len,
	    d->pw_spaces ? " (the spaces inside were removed)" : "");
	if (doc_host_is_gmail(u->host) && !d->pw_app_like)
		doc_explain("note: Google accounts need an App Password (16 "
		    "letters, shown as four groups of four), not the account "
		    "password: this one is %zu characters long. Create one "
		    "at %s (it needs 2-Step Verification on the account).",
		    d->pw_len, DOC_APP_PW_URL);
	if (doc_host_is_gmail(u->host) && strchr(u->username, '@') == NULL)
		doc_explain("note: upstream.username should be the full "
		    "address (you@gmail.com), not \"%s\".", u->username);
	return true;
}

/* ---- steps 2 and 3: resolve and connect, as the relay does ---- */

/* The attempt's result, kept for the steps; ends the event loop. */
static void
doc_connect_cb(void *arg, uint64_t id, const struct upstream_result *res)
{
	struct doc *d = arg;

	d->up = *res;
	d->fd = res->fd;
	d->up_done = true;
	event_base_loopbreak(d->base);
}

/*
 * Resolves and connects with common/upstream.c, the relay's own code: the
 * same resolver, address order, connect timeout and tls = "none" rule, so
 * that what the doctor sees is what the relay will see.  Only this part
 * runs an event loop; the steps after it use the socket directly.
 */
static int
doc_upstream(struct doc *d)
{
	const struct cfg_upstream *u = &d->cfg->upstream;
	struct upstream_target t = {
		.host = u->host,
		.port = u->port,
		.loopback_only = u->tls == CFG_TLS_NONE,
		.secs = upstream_connect_secs(u->timeout),
		.resolve_secs = d->timeout,
	};
	struct upstream_conn *c;

	if ((d->in = evbuffer_new()) == NULL ||
	    (d->base = event_base_new()) == NULL ||
	    (d->dns = upstream_dns_new(d->base)) == NULL ||
	    upstream_connect(d->base, d->dns, &t, doc_connect_cb, d, 0, &c) <
	    0)
		return -ENOMEM;
	while (!d->up_done)
		if (event_base_loop(d->base, EVLOOP_ONCE) != 0) {
			upstream_cancel(c);	/* nothing more will come */
			return -EIO;
		}
	return 0;
}

/* Explains why no address could be reached: each kind of failure once. */
static void
doc_connect_help(const struct doc *d)
{
	const struct upstream_result *u = &d->up;

	if (u->nplaintext > 0)
		doc_advise(d, smtpproto_advice_local(
		    SMTPPROTO_LOCAL_PLAINTEXT));
	if (u->ntimedout > 0)
		doc_advise(d, smtpproto_advice_local(SMTPPROTO_LOCAL_TIMEOUT));
	if (u->nrefused > 0)
		doc_advise(d, smtpproto_advice_local(SMTPPROTO_LOCAL_REFUSED));
	if (u->nunreachable > 0)
		doc_advise(d, smtpproto_advice_local(
		    SMTPPROTO_LOCAL_UNREACHABLE));
}

/* Steps 2 and 3: the addresses, and the first that accepts. */
static bool
doc_connect(struct doc *d)
{
	const struct cfg_upstream *u = &d->cfg->upstream;
	int r;

	if ((r = doc_upstream(d)) < 0) {
		doc_step("resolve", false, "%s", strerror(-r));
		return false;
	}
	if (d->up.status == UPSTREAM_UNRESOLVED) {
		doc_step("resolve", false, "%s: %s", u->host,
		    evutil_gai_strerror(d->up.gai_error));
		if (d->up.gai_error == EVUTIL_EAI_AGAIN)
			doc_explain("The DNS server did not answer.");
		doc_advise(d, d->up.advice);
		return false;
	}
	doc_step("resolve", true, "%s: %s", u->host, d->up.addrs);
	if (d->up.status != UPSTREAM_CONNECTED) {
		doc_step("connect", false, "port %u: %s", u->port,
		    d->up.tried);
		doc_connect_help(d);
		return false;
	}
	/* From here on, blocking I/O with timeouts. */
	fcntl(d->fd, F_SETFL, fcntl(d->fd, F_GETFL) & ~O_NONBLOCK);
	doc_set_timeout(d->fd, d->timeout);
	doc_step("connect", true, "%s port %u%s%s%s", d->up.ip, u->port,
	    d->up.tried[0] != '\0' ? " (" : "", d->up.tried,
	    d->up.tried[0] != '\0' ? ")" : "");
	return true;
}

/* ---- step 4: TLS ---- */

/* Appends the leaf certificate's names to d->cert_names. */
static void
doc_cert_names(struct doc *d, X509 *x)
{
	GENERAL_NAMES *gens;
	const GENERAL_NAME *g;
	char name[256], *p = d->cert_names;
	size_t o = 0, sz = sizeof(d->cert_names);
	int i, n;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		name[0] = '\0';
		if (g->type == GEN_DNS)
			snprintf(name, sizeof(name), "%.*s",
			    ASN1_STRING_length(g->d.dNSName),
			    (const char *)ASN1_STRING_get0_data(g->d.dNSName));
		else if (g->type == GEN_IPADD && ASN1_STRING_length(
		    g->d.iPAddress) == 4)
			inet_ntop(AF_INET, ASN1_STRING_get0_data(g->d.iPAddress),
			    name, sizeof(name));
		else if (g->type == GEN_IPADD && ASN1_STRING_length(
		    g->d.iPAddress) == 16)
			inet_ntop(AF_INET6, ASN1_STRING_get0_data(
			    g->d.iPAddress), name, sizeof(name));
		if (name[0] == '\0')
			continue;
		n = snprintf(p + o, sz - o, "%s%s", o > 0 ? ", " : "", name);
		if (n > 0 && (size_t)n < sz - o)
			o += (size_t)n;
	}
	GENERAL_NAMES_free(gens);
	if (o == 0 && X509_NAME_get_text_by_NID(X509_get_subject_name(x),
	    NID_commonName, name, sizeof(name)) > 0)
		snprintf(p, sz, "%s (common name)", name);
}

/* Remembers the server's certificate, whatever the verification says. */
static int
doc_verify_cb(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct doc *d = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	X509 *x = X509_STORE_CTX_get0_cert(sctx);

	if (d == NULL || d->cert_seen || x == NULL)
		return ok;
	d->cert_seen = true;
	doc_cert_names(d, x);
	X509_NAME_oneline(X509_get_subject_name(x), d->cert_subject,
	    sizeof(d->cert_subject));
	X509_NAME_oneline(X509_get_issuer_name(x), d->cert_issuer,
	    sizeof(d->cert_issuer));
	return ok;
}

/* Explains a certificate that did not verify. */
static void
doc_cert_help(const struct doc *d, long v)
{
	enum smtpproto_local w = smtpproto_local_cert(v);

	if (w == SMTPPROTO_LOCAL_CERT_NAME)
		doc_explain("The certificate is for %s, but upstream.host is "
		    "\"%s\": the names do not match.",
		    d->cert_names[0] != '\0' ? d->cert_names : "other names",
		    d->cfg->upstream.host);
	doc_advise(d, smtpproto_advice_local(w));
	if (strstr(d->cert_subject, "No SNI") != NULL)
		doc_explain("The server sent its \"No SNI provided\" "
		    "certificate: it did not get our server name, which "
		    "happens when upstream.host is an IP address. Use the host "
		    "name.");
}

/* True when the reason of an OpenSSL error means "this is not TLS". */
static bool
doc_not_tls(unsigned long e)
{
	int reason = ERR_GET_REASON(e);

	return ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    (reason == SSL_R_WRONG_VERSION_NUMBER ||
	    reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
	    reason == SSL_R_RECORD_LENGTH_MISMATCH ||
	    reason == SSL_R_UNEXPECTED_RECORD);
}

/* The handshake failed: say why and what to do. */
static void
doc_tls_failed(struct doc *d, int r, int syserr)
{
	unsigned long e = ERR_peek_error();
	long v = SSL_get_verify_result(d->ssl);
	char why[512];

	if (d->cert_seen && v != X509_V_OK) {
		doc_step("tls", false, "certificate verify failed: %s "
		    "(certificate for %s, issued by %s)",
		    X509_verify_cert_error_string(v), d->cert_names,
		    d->cert_issuer);
		ERR_clear_error();
		doc_cert_help(d, v);
		return;
	}
	if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ||
	    (r == SSL_ERROR_SYSCALL && (syserr == EAGAIN ||
	    syserr == EWOULDBLOCK))) {
		ERR_clear_error();
		doc_step("tls", false, "no answer to the TLS handshake within "
		    "%u seconds", d->timeout);
		doc_explain("%s", d->cfg->upstream.tls == CFG_TLS_IMPLICIT ?
		    "The server does not answer a TLS handshake: this port "
		    "speaks plain SMTP first: use tls = \"starttls\" (port "
		    "587)." : "The server accepted STARTTLS but does not go "
		    "on with the handshake (a broken server, or a middlebox "
		    "that interferes with STARTTLS).");
		return;
	}
	if (e != 0 && doc_not_tls(e)) {
		ERR_clear_error();
		doc_step("tls", false, "the server did not answer with TLS");
		if (d->cfg->upstream.tls == CFG_TLS_IMPLICIT)
			doc_advise(d, smtpproto_advice_local(
			    SMTPPROTO_LOCAL_PLAIN_PORT));
		else
			doc_explain("The server sent something else than a TLS "
			    "handshake after agreeing to STARTTLS.");
		return;
	}
	tls_error_string(d->ssl, e, why, sizeof(why));
	if (e == 0 && r == SSL_ERROR_SYSCALL)
		snprintf(why, sizeof(why), "the server closed the connection "
		    "during the TLS handshake");
	doc_step("tls", false, "%s", why);
	if (e != 0 && ERR_GET_REASON(e) == SSL_R_UNSUPPORTED_PROTOCOL)
		doc_explain("The server offers no TLS version smartrelay "
		    "accepts (TLS 1.2 or newer).");
	else
		doc_advise(d, smtpproto_advice_local(SMTPPROTO_LOCAL_TLS));
}

/* Handshake over d->fd; prints the tls step.  True when verified. */
static bool
doc_handshake(struct doc *d)
{
	char desc[128];
	int r, err;

	if (tls_ssl_new(d->ctx, d->cfg->upstream.host, &d->ssl) < 0 ||
	    SSL_set_fd(d->ssl, d->fd) != 1) {
		doc_step("tls", false, "cannot set up TLS for %s",
		    d->cfg->upstream.host);
		return false;
	}
	SSL_set_app_data(d->ssl, d);
	SSL_set_verify(d->ssl, SSL_VERIFY_PEER, doc_verify_cb);
	errno = 0;
	r = SSL_connect(d->ssl);
	err = errno;
	if (r != 1 || !tls_verified(d->ssl)) {
		doc_tls_failed(d, SSL_get_error(d->ssl, r), err);
		SSL_free(d->ssl);
		d->ssl = NULL;
		return false;
	}
	doc_step("tls", true, "%s, certificate for %s verified (issued by "
	    "%s)", tls_describe(d->ssl, desc, sizeof(desc)),
	    d->cert_names[0] != '\0' ? d->cert_names : d->cfg->upstream.host,
	    d->cert_issuer);
	return true;
}

/*
 * Implicit TLS: a server that talks first speaks plain SMTP (a 220
 * greeting), which is what port 587 does; a TLS server waits for us.
 */
static bool
doc_implicit_tls(struct doc *d)
{
	struct pollfd pfd = { .fd = d->fd, .events = POLLIN };
	char peek[128];
	ssize_t n = 0;

	if (poll(&pfd, 1, DOC_PLAIN_PEEK_MS) == 1)
		n = recv(d->fd, peek, sizeof(peek) - 1, MSG_PEEK);
	if (n >= 3 && isdigit((unsigned char)peek[0]) &&
	    isdigit((unsigned char)peek[1]) &&
	    isdigit((unsigned char)peek[2])) {
		peek[n] = '\0';
		peek[strcspn(peek, "\r\n")] = '\0';
		doc_step("tls", false, "the server sent \"%s\" in plain text "
		    "instead of a TLS handshake", peek);
		doc_advise(d, smtpproto_advice_local(
		    SMTPPROTO_LOCAL_PLAIN_PORT));
		return false;
	}
	return doc_handshake(d);
}

/* ---- the SMTP steps ---- */

/* EHLO; prints the step with the keywords that matter. */
static bool
doc_ehlo(struct doc *d, bool tls)
{
	char line[600], size[32];
	int r;

	snprintf(line, sizeof(line), "EHLO %s", d->cfg->hostname);
	r = doc_cmd(d, line, false);
	if (r < 0 || reply_class(&d->reply) != 2) {
		doc_cmd_failed(d, "ehlo", "EHLO", r);
		if (r >= 0 && d->reply.code != 421)
			doc_explain("The server refused our EHLO %s "
			    "(hostname in the configuration; the default is "
			    "this machine's name). Set hostname to a real "
			    "domain name.", d->cfg->hostname);
		return false;
	}
	smtpproto_ehlo_parse(&d->reply, &d->ehlo);
	if (!tls) {
		doc_step("ehlo", true, "%s", d->ehlo.ext & SMTPPROTO_EXT_STARTTLS ?
		    "STARTTLS offered" : "no STARTTLS");
		return true;
	}
	if (d->ehlo.size != 0)
		snprintf(size, sizeof(size), "%" PRIu64, d->ehlo.size);
	doc_step("ehlo", true, "AUTH %s; SIZE %s",
	    d->ehlo.ext & SMTPPROTO_EXT_AUTH ? d->ehlo.auth : "not offered",
	    !(d->ehlo.ext & SMTPPROTO_EXT_SIZE) ? "not offered" :
	    d->ehlo.size != 0 ? size : "no limit");
	return true;
}

/*
 * True when the server answers a TLS handshake: it completes, or fails
 * only on our verification of the certificate.
 */
static bool
doc_tls_probe(struct doc *d)
{
	SSL *ssl;
	bool tls;

	if (tls_ssl_new(d->ctx, d->cfg->upstream.host, &ssl) < 0)
		return false;
	SSL_set_fd(ssl, d->fd);
	tls = SSL_connect(ssl) == 1 ||
	    SSL_get_verify_result(ssl) != X509_V_OK;
	SSL_free(ssl);
	ERR_clear_error();
	return tls;
}

/*
 * The greeting.  With STARTTLS a server that says nothing may be waiting
 * for a TLS handshake (port 465): try one to tell.
 */
static bool
doc_greeting(struct doc *d)
{
	struct pollfd pfd = { .fd = d->fd, .events = POLLIN };
	bool starttls = d->cfg->upstream.tls == CFG_TLS_STARTTLS;
	char rs[600];
	int r;

	if (d->ssl == NULL && poll(&pfd, 1, DOC_GREETING_SECS * 1000) == 0) {
		doc_step("greeting", false, "no greeting within %d seconds",
		    DOC_GREETING_SECS);
		if (starttls && doc_tls_probe(d))
			doc_advise(d, smtpproto_advice_local(
			    SMTPPROTO_LOCAL_TLS_PORT));
		else
			doc_explain("An SMTP server greets its clients at "
			    "once. Check upstream.host and upstream.port.");
		return false;
	}
	r = doc_read_reply(d);
	if (r < 0 || d->reply.code != 220) {
		doc_cmd_failed(d, "greeting", "greeting", r);
		return false;
	}
	d->alive = true;
	d->gmail |= strstr(d->reply.text, "gsmtp") != NULL ||
	    strstr(d->reply.text, "smtp.gmail.com") != NULL;
	doc_step("greeting", true, "%s", doc_reply_str(d, rs, sizeof(rs)));
	return true;
}

/* Step 4 for STARTTLS: EHLO, STARTTLS offered and accepted, handshake. */
static bool
doc_starttls(struct doc *d)
{
	int r;

	if (!doc_ehlo(d, false))
		return false;
	if (!(d->ehlo.ext & SMTPPROTO_EXT_STARTTLS)) {
		doc_step("starttls", false, "not offered by %s port %u",
		    d->cfg->upstream.host, d->cfg->upstream.port);
		doc_advise(d, smtpproto_advice_local(
		    SMTPPROTO_LOCAL_NO_STARTTLS));
		return false;
	}
	r = doc_cmd(d, "STARTTLS", false);
	if (r < 0 || d->reply.code != 220) {
		doc_cmd_failed(d, "starttls", "STARTTLS", r);
		return false;
	}
	d->alive = false;
	if (evbuffer_get_length(d->in) > 0) {
		/* RFC 3207 §5: nothing may precede the handshake. */
		doc_step("starttls", false, "the server sent data after 220");
		return false;
	}
	doc_step("starttls", true, "220 ready to start TLS");
	if (!doc_handshake(d))
		return false;
	d->alive = true;
	return true;
}

/* ---- step 6: AUTH ---- */

/* Sends a credential line made by an smtpproto encoder and frees it. */
static int
doc_send_secret(struct doc *d, int r, char *line, size_t len,
    bool after_auth)
{
	if (r < 0)
		return r;
	r = doc_cmd(d, line, after_auth);
	smtpproto_line_free(line, len);
	return r;
}

/* AUTH PLAIN with an initial response (RFC 4616). */
static int
doc_auth_plain(struct doc *d, const char *user, const struct cfg_secret *s)
{
	char *line;
	size_t len;
	int r;

	r = smtpproto_auth_plain(user, s->buf, s->len, &line, &len);
	return doc_send_secret(d, r, line, len, false);
}

/* AUTH LOGIN: the user name, then the password, each after a 334. */
static int
doc_auth_login(struct doc *d, const char *user, const struct cfg_secret *s)
{
	char *line;
	size_t len;
	unsigned step;
	int r;

	r = smtpproto_auth_login(&line, &len);
	if ((r = doc_send_secret(d, r, line, len, false)) < 0)
		return r;
	for (step = 0; step < 2 && d->reply.code == 334; step++) {
		r = smtpproto_auth_login_step(step, user, s->buf, s->len,
		    &line, &len);
		if ((r = doc_send_secret(d, r, line, len, true)) < 0)
			return r;
	}
	return r;
}

/* Explains an AUTH refusal (docs/relay.md, the failure table). */
static void
doc_auth_help(const struct doc *d)
{
	const struct reply *rp = &d->reply;
	const struct smtpproto_advice *a = smtpproto_advice_reply(rp);
	const char *pw = d->pw_path != NULL ? d->pw_path : "the password file";

	if (a != NULL)
		doc_advise(d, a);
	else if (rp->code == 538)
		doc_explain("The server wants encryption before AUTH.");
	else if (rp->code == 504)
		doc_explain("The server does not accept this AUTH mechanism "
		    "here.");
	else if (reply_class(rp) == 4)
		doc_explain("A temporary refusal: try again later.");
	else
		doc_explain("The server refused the login: check "
		    "upstream.username and the password.");
	if ((rp->code == 535 || rp->code == 534) && d->gmail &&
	    !d->pw_app_like)
		doc_explain("The password used is %zu characters long; a "
		    "Google App Password is 16 letters.", d->pw_len);
	if (rp->code == 535 && d->pw_spaces)
		doc_explain("The password in %s contains spaces, which "
		    "smartrelay removed (it was normalised, as Google shows "
		    "App Passwords in groups of four): if your password "
		    "really contains spaces, that is the problem.", pw);
}

/* The AUTH step fails: no mechanism we can use; why, in words. */
static bool
doc_no_mech(const struct doc *d, const char *why)
{
	doc_step("auth", false, "the server offers %s%s",
	    d->ehlo.ext & SMTPPROTO_EXT_AUTH ? "only AUTH " : "no AUTH",
	    d->ehlo.ext & SMTPPROTO_EXT_AUTH ? d->ehlo.auth : "");
	doc_explain("%s", why);
	return false;
}

/* Step 6 with auth = "xoauth2": OAUTHBEARER when offered, else XOAUTH2. */
static bool
doc_auth_oauth(struct doc *d)
{
	const char *user = d->cfg->upstream.username;
	enum smtpproto_mech mech = smtpproto_oauth_choose(d->ehlo.ext);
	char rs[600], *line;
	size_t len;
	int r;

	if (mech == SMTPPROTO_MECH_NONE)
		return doc_no_mech(d, "auth = \"xoauth2\" needs AUTH XOAUTH2 "
		    "or OAUTHBEARER, which this server does not offer here. "
		    "Check upstream.host and upstream.port.");
	r = mech == SMTPPROTO_MECH_OAUTHBEARER ?
	    smtpproto_auth_oauthbearer(user, d->cfg->upstream.host,
	    d->cfg->upstream.port, d->token.buf, d->token.len, &line, &len) :
	    smtpproto_auth_xoauth2(user, d->token.buf, d->token.len, &line,
	    &len);
	r = doc_send_secret(d, r, line, len, false);
	if (r >= 0 && d->reply.code == 334)	/* the 401 error challenge */
		r = doc_cmd(d, smtpproto_oauth_abort(mech), true);
	if (r < 0 || d->reply.code != 235) {
		doc_cmd_failed(d, "auth", "AUTH", r);
		if (r >= 0 && reply_class(&d->reply) == 5)
			doc_explain("The server refused a fresh access token: "
			    "check that upstream.username is the account "
			    "that signed in with `smartrelay oauth`, and the "
			    "scope (Google: https://mail.google.com/; "
			    "Microsoft 365: SMTP.Send, and SMTP AUTH allowed "
			    "for the mailbox).");
		return false;
	}
	doc_step("auth", true, "%s as %s: %s", smtpproto_mech_name(mech),
	    user, doc_reply_str(d, rs, sizeof(rs)));
	return true;
}

/* Step 6: log in with upstream.username and the password. */
static bool
doc_auth(struct doc *d)
{
	const char *user = d->cfg->upstream.username;
	enum smtpproto_mech mech = smtpproto_auth_choose(d->ehlo.ext);
	struct cfg_secret s;
	char *err = NULL, rs[600];
	int r;

	if (user == NULL) {
		doc_step("auth", true, "skipped: no upstream.username");
		return true;
	}
	if (d->cfg->upstream.auth == CFG_AUTH_XOAUTH2)
		return doc_auth_oauth(d);
	if (mech == SMTPPROTO_MECH_NONE)
		return doc_no_mech(d, "smartrelay logs in with AUTH PLAIN or "
		    "LOGIN, which this server does not offer on this "
		    "connection. Check upstream.host and upstream.port.");
	if ((r = cfg_read_password(d->cfg, &s, &err)) < 0) {
		doc_step("auth", false, "%s", err != NULL ? err : strerror(-r));
		free(err);
		return false;
	}
	r = mech == SMTPPROTO_MECH_PLAIN ? doc_auth_plain(d, user, &s) :
	    doc_auth_login(d, user, &s);
	cfg_secret_clear(&s);
	if (r < 0 || d->reply.code != 235) {
		doc_cmd_failed(d, "auth", "AUTH", r);
		if (r >= 0 && d->reply.code != 421)
			doc_auth_help(d);
		return false;
	}
	doc_step("auth", true, "%s as %s: %s", smtpproto_mech_name(mech),
	    user, doc_reply_str(d, rs, sizeof(rs)));
	return true;
}

/* ---- step 7: the test message ---- */

/* Explains a refusal of the test message at MAIL, RCPT or the dot. */
static void
doc_send_help(const struct doc *d, const char *stage, const char *from)
{
	const struct reply *rp = &d->reply;
	const struct smtpproto_advice *a = smtpproto_advice_reply(rp);

	if (strcmp(stage, "RCPT") == 0 && reply_class(rp) == 5) {
		doc_explain("The recipient %s was refused: check the address "
		    "(the rest of the setup works).", d->to);
		if (a != NULL)
			doc_advise(d, a);
	} else if (a != NULL) {
		doc_advise(d, a);
		if (rp->code == 552 && d->ehlo.size != 0)
			doc_explain("This server's SIZE is %" PRIu64 ".",
			    d->ehlo.size);
	} else if (strcmp(stage, "MAIL") == 0 && reply_class(rp) == 5)
		doc_explain("The server refused the sender %s. Gmail only "
		    "sends as the account itself or its verified \"Send mail "
		    "as\" addresses: set rewrite.envelope_from to the account "
		    "address.", from);
	else if (reply_class(rp) == 4)
		doc_explain("A temporary refusal (%u): the server is busy or "
		    "throttling. Try again later; smartrelay keeps mail "
		    "queued and retries.", rp->code);
	else
		doc_explain("The server refused the test message at %s.",
		    stage);
}

/* Makes the test message with its final dot; its length or -E2BIG. */
static int
doc_make_message(const struct doc *d, const char *from, char *buf,
    size_t bufsz)
{
	char date[64], msgid[128];
	unsigned char rnd[8];
	time_t now = time(NULL);
	struct tm tm;
	int n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		memset(rnd, 0, sizeof(rnd));
	snprintf(msgid, sizeof(msgid), "<smartrelay-test.%lld.%02x%02x%02x"
	    "%02x%02x%02x%02x%02x@%s>", (long long)now, rnd[0], rnd[1],
	    rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], d->cfg->hostname);
	n = snprintf(buf, bufsz,
	    "From: <%s>\r\n"
	    "To: <%s>\r\n"
	    "Subject: smartrelay test\r\n"
	    "Date: %s\r\n"
	    "Message-ID: %s\r\n"
	    "Auto-Submitted: auto-generated\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "\r\n"
	    "This is a test message from \"smartrelay test\" on %s,\r\n"
	    "sent through %s port %u.\r\n"
	    "If you read this, the upstream settings work.\r\n"
	    ".\r\n", from, d->to, date, msgid, d->cfg->hostname,
	    d->cfg->upstream.host, d->cfg->upstream.port);
	if (n < 0 || (size_t)n >= bufsz)
		return -E2BIG;
	return n;
}

/* One envelope command; false (with the step printed) when refused. */
static bool
doc_envelope(struct doc *d, const char *line, const char *stage,
    unsigned want, const char *from)
{
	int r = doc_cmd(d, line, false);

	if (r >= 0 && d->reply.code == want)
		return true;
	doc_cmd_failed(d, "send", stage, r);
	if (r >= 0 && d->reply.code != 421)
		doc_send_help(d, stage, from);
	return false;
}

/* Step 7: MAIL, RCPT, DATA and the message. */
static bool
doc_send(struct doc *d)
{
	const struct cfg *cfg = d->cfg;
	const char *from = cfg->rewrite.envelope_from != NULL ?
	    cfg->rewrite.envelope_from : cfg->upstream.username != NULL ?
	    cfg->upstream.username : "";
	char line[ADDR_MAX + 64], rs[600], msg[2048];
	int r, n;

	if ((n = doc_make_message(d, from, msg, sizeof(msg))) < 0) {
		doc_step("send", false, "the test message does not fit");
		return false;
	}
	/* SIZE= counts the message without its final ".CRLF". */
	if (d->ehlo.ext & SMTPPROTO_EXT_SIZE)
		snprintf(line, sizeof(line), "MAIL FROM:<%s> SIZE=%d", from,
		    n - 3);
	else
		snprintf(line, sizeof(line), "MAIL FROM:<%s>", from);
	if (!doc_envelope(d, line, "MAIL", 250, from))
		return false;
	snprintf(line, sizeof(line), "RCPT TO:<%s>", d->to);
	if (!doc_envelope(d, line, "RCPT", 250, from))
		return false;
	if (!doc_envelope(d, "DATA", "DATA", 354, from))
		return false;
	if (d->verbose)
		printf("    > (the message, %d bytes)\n    > .\n", n - 3);
	if ((r = doc_write(d, msg, (size_t)n)) == 0)
		r = doc_read_reply(d);
	if (r < 0 || reply_class(&d->reply) != 2) {
		doc_cmd_failed(d, "send", "end of data", r);
		if (r >= 0 && d->reply.code != 421)
			doc_send_help(d, "the end of the message", from);
		return false;
	}
	doc_step("send", true, "from <%s> to <%s>: %s", from, d->to,
	    doc_reply_str(d, rs, sizeof(rs)));
	return true;
}

/* ---- the run ---- */

/* QUIT, quietly when an earlier step failed. */
static void
doc_quit(struct doc *d, bool report)
{
	char rs[600];
	int r;

	if (d->fd == -1 || !d->alive)
		return;
	if (!report)
		doc_set_timeout(d->fd, DOC_GREETING_SECS);
	r = doc_cmd(d, "QUIT", false);
	if (!report)
		return;
	if (r == 0)
		doc_step("quit", true, "%s", doc_reply_str(d, rs, sizeof(rs)));
	else
		doc_step("quit", true, "(the server closed the connection)");
}

/* Steps 2 to 7 over the network; true when all passed. */
static bool
doc_network(struct doc *d)
{
	enum cfg_tls tls = d->cfg->upstream.tls;
	char *err = NULL;

	if (!doc_connect(d))
		return false;
	if (tls != CFG_TLS_NONE &&
	    tls_ctx_new(d->cfg->upstream.ca_file, &d->ctx, &err) < 0) {
		doc_step("tls", false, "%s", err != NULL ? err : "no context");
		doc_explain("upstream.ca_file must be a PEM file of CA "
		    "certificates; without it the system store is used.");
		free(err);
		return false;
	}
	if (tls == CFG_TLS_IMPLICIT && !doc_implicit_tls(d))
		return false;
	if (!doc_greeting(d))
		return false;
	if (tls == CFG_TLS_STARTTLS && !doc_starttls(d))
		return false;
	if (tls == CFG_TLS_NONE)
		doc_step("tls", true, "skipped: insecure_plaintext on a "
		    "loopback host");
	if (!doc_ehlo(d, true) || !doc_auth(d))
		return false;
	if (d->to != NULL && !doc_send(d))
		return false;
	doc_quit(d, true);
	return true;
}

/* Frees what the run holds (NULL-safe fields). */
static void
doc_free(struct doc *d)
{
	if (d->ssl != NULL) {
		SSL_shutdown(d->ssl);
		SSL_free(d->ssl);
	}
	if (d->fd != -1)
		close(d->fd);
	tls_ctx_free(d->ctx);
	if (d->dns != NULL)
		evdns_base_free(d->dns, 0);
	if (d->base != NULL)
		event_base_free(d->base);
	free(d->pw_path);
	oauth_secret_free(&d->token);
	if (d->in != NULL)
		evbuffer_free(d->in);
	ERR_clear_error();
}

/*
 * --explain: what smartrelay makes of an upstream reply ("535 5.7.8 ...",
 * lines separated by newlines) or of an advice row's key
 * ("connect-refused"): the same table and words as the log, `status` and
 * the doctor.  0 when the table has advice for it, 1 when not.
 */
static int
doc_explain_reply(struct doc *d)
{
	const struct smtpproto_advice *a;
	bool is_reply = true;

	if ((a = smtpproto_advice_by_key(d->explain)) == NULL)
		a = smtpproto_advice_text(d->explain, &is_reply);
	if (a == NULL) {
		printf("no advice for \"%s\"%s\n", d->explain, is_reply ? "" :
		    " (not an SMTP reply)");
		return 1;
	}
	printf("advice:   %s\nmeaning:  %s\nsmartrelay: %s\nfix:\n", a->key,
	    a->meaning, smtpproto_straction(a->action));
	doc_advise(d, a);
	return 0;
}

/* "test [--to ADDR] [-v]": arguments into d; EX_USAGE when wrong. */
static int
doc_args(struct cli *c, struct doc *d, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
			d->to = argv[++i];
		else if (strncmp(argv[i], "--to=", 5) == 0)
			d->to = argv[i] + 5;
		else if (strcmp(argv[i], "--explain") == 0 && i + 1 < argc)
			d->explain = argv[++i];
		else if (strcmp(argv[i], "-v") == 0 ||
		    strcmp(argv[i], "--verbose") == 0 ||
		    strcmp(argv[i], "--debug") == 0)
			d->verbose = true;
		else {
			cli_err(c, "usage: smartrelay [-c FILE] test "
			    "[--to ADDR] [-v] | test --explain REPLY");
			return EX_USAGE;
		}
	}
	if (d->to != NULL && (addr_check_mailbox(d->to) < 0 ||
	    strlen(d->to) >= ADDR_MAX)) {
		cli_err(c, "test: --to %s: not a valid address (user@domain)",
		    d->to);
		return EX_USAGE;
	}
	return 0;
}

int
cli_doctor(struct cli *c, int argc, char **argv)
{
	struct doc d = { .fd = -1 };
	int r;

	if ((r = doc_args(c, &d, argc, argv)) != 0)
		return r;
	if ((r = cli_load_cfg(c)) != 0)
		return r;
	d.cfg = c->cfg;
	if (d.explain != NULL)
		return doc_explain_reply(&d);
	d.timeout = d.cfg->upstream.timeout;
	if (d.timeout > DOC_REPLY_SECS_MAX || d.timeout == 0)
		d.timeout = DOC_REPLY_SECS_MAX;
	/* Each line as it happens: some steps take seconds. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!doc_check_config(&d))
		r = EX_CONFIG;
	else if (!doc_network(&d)) {
		doc_quit(&d, false);
		r = 1;
	}
	if (r == 0)
		printf("all checks passed%s\n", d.to != NULL ?
		    ": check that the test message arrived" : "");
	else
		printf("stopped at the first failure (%s)\n", r == EX_CONFIG ?
		    "the configuration" : "see above");
	doc_free(&d);
	return r;
}
