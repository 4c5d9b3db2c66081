/*
 * cli_oauth: "smartrelay oauth", the first OAuth sign-in, and the token
 * request "smartrelay test" makes (docs/oauth.md).
 *
 * A person consents once; the result is the refresh token file the
 * daemon uses from then on.  Two flows:
 *   - the device code flow (RFC 8628), Microsoft's: POST the device
 *     authorisation endpoint, print the URL and the code, poll the token
 *     endpoint (authorization_pending: wait; slow_down: wait 5 s more;
 *     expired_token, access_denied: stop);
 *   - the installed-app flow with PKCE (RFC 7636, RFC 8252), Google's:
 *     print the authorisation URL with an S256 challenge and a state, then
 *     take the redirect on http://127.0.0.1:PORT/ (a listener open for
 *     the sign-in only) or a code pasted on stdin, and exchange it with
 *     the verifier.
 * The refresh token is written atomically, mode 0600, owned like its
 * directory when run as root (so the daemon's user can replace it), and
 * checked at once with one token request.
 *
 * All protocol work (request bodies, JSON answers, errors and advice, the
 * file) is common/oauth.c's and the HTTPS client common/oauth_http.c's,
 * the daemon's own, run here on a private event base: there is no second
 * implementation.  No token is ever printed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "cfg.h"
#include "cli.h"
#include "oauth.h"
#include "oauth_http.h"
#include "tls.h"

#define OAUTH_HTTP_SECS		30	/* per request of the tool */
#define OAUTH_WAIT_SECS		600	/* for the person to sign in */
#define OAUTH_REQ_MAX		8192	/* the browser's redirect request */
#define GOOGLE_AUTH_URL		"https://accounts.google.com/o/oauth2/v2/auth"
#define DEVICE_GRANT		"urn:ietf:params:oauth:grant-type:device_code"

/* One run of "smartrelay oauth". */
struct oa {
	struct cli *c;			/* borrowed */
	const struct cfg_oauth *o;	/* borrowed: c->cfg's */
	SSL_CTX *ctx;			/* owned */
	const char *auth_url;		/* borrowed: --auth-url, or NULL */
	const char *device_url;		/* borrowed: --device-url, or NULL */
	int flow;			/* 'b' browser (PKCE), 'd' device */
	unsigned port;			/* --port, 0: any */
	struct oauth_secret cs;		/* the client secret, len 0: none */
	struct oauth_secret body;	/* a request body */
	struct oauth_secret answer;	/* an answer */
};

/* ---- shared with the doctor ---- */

/* POSTs body to url and reads a token answer into t. */
static enum oauth_status
oa_post_token(SSL_CTX *ctx, const char *url, const struct oauth_secret *body,
    struct oauth_secret *answer, struct oauth_token *t, char *why, size_t sz)
{
	char *err = NULL;
	int status, r;

	r = oauth_http_post_wait(ctx, url, body, OAUTH_HTTP_SECS, &status,
	    answer, &err);
	if (r < 0) {
		snprintf(why, sz, "%s: %s", url, err ? err : strerror(-r));
		free(err);
		return OAUTH_TEMP;
	}
	return oauth_parse_token(status, answer->buf, answer->len, t, why,
	    sz);
}

/* The owner a written token file gets: its directory's, when root. */
static void
oa_file_owner(const char *path, uid_t *uid, gid_t *gid)
{
	char *copy = strdup(path);
	struct stat st;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (copy != NULL && geteuid() == 0 && stat(dirname(copy), &st) == 0) {
		*uid = st.st_uid;
		*gid = st.st_gid;
	}
	free(copy);
}

/* Stores a refresh token in the configured file. */
static int
oa_store(const struct cfg_oauth *o, const struct oauth_secret *rt,
    char *why, size_t sz)
{
	char *err = NULL;
	uid_t uid;
	gid_t gid;
	int r;

	oa_file_owner(o->refresh_token_file, &uid, &gid);
	r = oauth_write_file(o->refresh_token_file, rt->buf, rt->len, uid,
	    gid, &err);
	if (r < 0)
		snprintf(why, sz, "%s", err ? err : strerror(-r));
	free(err);
	return r;
}

/* Reads the client secret (when configured) into cs. */
static int
oa_read_secret(const struct cfg_oauth *o, struct oauth_secret *cs,
    char *why, size_t sz)
{
	char *err = NULL;
	int r = 0;

	if (o->client_secret_file != NULL &&
	    (r = oauth_read_file(o->client_secret_file, cs, &err)) < 0)
		snprintf(why, sz, "%s", err ? err : strerror(-r));
	free(err);
	return r;
}

enum oauth_status
cli_oauth_token(const struct cfg *cfg, struct oauth_secret *access,
    long *expires_in, bool *rotated, char *why, size_t sz)
{
	const struct cfg_oauth *o = &cfg->upstream.oauth;
	struct oauth_secret cs = { 0 }, rt = { 0 }, body = { 0 }, ans = { 0 };
	struct oauth_token t = { 0 };
	enum oauth_status st = OAUTH_LOCAL;
	SSL_CTX *ctx = NULL;
	char *err = NULL;

	*rotated = false;
	if (oauth_secret_init(&cs, CFG_OAUTH_SECRET_MAX) < 0 ||
	    oauth_secret_init(&rt, CFG_OAUTH_SECRET_MAX) < 0 ||
	    oauth_secret_init(&body, 4 * CFG_OAUTH_SECRET_MAX) < 0 ||
	    oauth_secret_init(&ans, OAUTH_ANSWER_MAX) < 0 ||
	    oauth_token_init(&t) < 0) {
		snprintf(why, sz, "out of memory");
		goto out;
	}
	if (oa_read_secret(o, &cs, why, sz) < 0)
		goto out;
	if (o->grant == CFG_GRANT_REFRESH_TOKEN &&
	    oauth_read_file(o->refresh_token_file, &rt, &err) < 0) {
		snprintf(why, sz, "%s (run `smartrelay oauth` to write it)",
		    err ? err : "cannot read the refresh token file");
		goto out;
	}
	if (tls_ctx_new(o->ca_file, &ctx, &err) < 0) {
		snprintf(why, sz, "oauth.ca_file: %s", err ? err : "?");
		goto out;
	}
	if (oauth_token_request(o, &cs, &rt, &body) < 0) {
		snprintf(why, sz, "the token request does not fit");
		goto out;
	}
	st = oa_post_token(ctx, o->token_url, &body, &ans, &t, why, sz);
	if (st == OAUTH_OK && t.refresh.len > 0 &&
	    !oauth_secret_equal(&t.refresh, &rt)) {
		/* Rotated: the old one may stop working; keep the new one. */
		if (oa_store(o, &t.refresh, why, sz) < 0)
			st = OAUTH_LOCAL;
		else
			*rotated = true;
	}
	if (st == OAUTH_OK) {
		oauth_secret_set(access, t.access.buf, t.access.len);
		*expires_in = t.expires_in;
	}
out:
	free(err);
	tls_ctx_free(ctx);
	oauth_token_free(&t);
	oauth_secret_free(&cs);
	oauth_secret_free(&rt);
	oauth_secret_free(&body);
	oauth_secret_free(&ans);
	return st;
}

/* ---- helpers of the sign-in ---- */

/* Replaces a final "/token" of the token URL with tail (Microsoft's and
 * RFC 8414-style layouts). */
static char *
oa_sibling_url(const char *token_url, const char *tail)
{
	size_t n = strlen(token_url);
	char *url;

	if (n < 6 || strcmp(token_url + n - 6, "/token") != 0)
		return NULL;
	if (asprintf(&url, "%.*s/%s", (int)(n - 6), token_url, tail) == -1)
		return NULL;
	return url;
}

/* base64url without padding (RFC 7636 appendix A). */
static void
oa_b64url(const unsigned char *raw, size_t n, char *out)
{
	char *p;

	EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
	for (p = out; *p != '\0'; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
		else if (*p == '=') {
			*p = '\0';
			break;
		}
	}
}

/* Fails the run with the status's advice; returns the exit status. */
static int
oa_fail(struct oa *a, enum oauth_status st, const char *why)
{
	cli_err(a->c, "oauth: %s", why);
	fprintf(stderr, "fix: %s\n", oauth_advice(st, a->o));
	if (st == OAUTH_TEMP)
		return EX_TEMPFAIL;
	return st == OAUTH_LOCAL ? EX_CANTCREAT : 1;
}

/* Stores the refresh token of a sign-in, then checks it once. */
static int
oa_finish(struct oa *a, const struct oauth_token *t)
{
	struct oauth_secret access = { 0 };
	enum oauth_status st;
	char why[600];
	bool rotated;
	long life = 0;

	if (t->refresh.len == 0)
		return oa_fail(a, OAUTH_REFUSED, "the sign-in worked but the "
		    "answer has no refresh token (Microsoft: the scope needs "
		    "offline_access; Google: access_type=offline)");
	if (oa_store(a->o, &t->refresh, why, sizeof(why)) < 0)
		return oa_fail(a, OAUTH_LOCAL, why);
	printf("wrote the refresh token to %s (mode 0600)\n",
	    a->o->refresh_token_file);
	if (oauth_secret_init(&access, CFG_OAUTH_SECRET_MAX) < 0)
		return EX_OSERR;
	st = cli_oauth_token(a->c->cfg, &access, &life, &rotated, why,
	    sizeof(why));
	oauth_secret_free(&access);
	if (st != OAUTH_OK)
		return oa_fail(a, st, why);
	printf("checked: the token endpoint gives an access token for %lds "
	    "with it%s\nthe daemon uses it from its next login; "
	    "`smartrelay flush` retries now\n", life,
	    rotated ? " (and rotated the refresh token)" : "");
	return 0;
}

/* Adds client_id and, when there is one, the client secret. */
static int
oa_form_client(struct oa *a)
{
	int r = oauth_form_add(&a->body, "client_id", a->o->client_id,
	    strlen(a->o->client_id));

	if (r == 0 && a->cs.len > 0)
		r = oauth_form_add(&a->body, "client_secret", a->cs.buf,
		    a->cs.len);
	return r;
}

/* ---- the device code flow (RFC 8628) ---- */

/* Asks for a device code; OAUTH_OK fills d. */
static enum oauth_status
oa_device_start(struct oa *a, struct oauth_device *d, char *why, size_t sz)
{
	char *url = a->device_url != NULL ? strdup(a->device_url) :
	    oa_sibling_url(a->o->token_url, "devicecode");
	char *err = NULL;
	int status, r;

	if (url == NULL) {
		snprintf(why, sz, "no device authorisation URL: give "
		    "--device-url");
		return OAUTH_REFUSED;
	}
	oauth_secret_clear(&a->body);
	r = oauth_form_add(&a->body, "client_id", a->o->client_id,
	    strlen(a->o->client_id));
	if (r == 0 && a->o->scope != NULL)
		r = oauth_form_add(&a->body, "scope", a->o->scope,
		    strlen(a->o->scope));
	if (r == 0)
		r = oauth_http_post_wait(a->ctx, url, &a->body,
		    OAUTH_HTTP_SECS, &status, &a->answer, &err);
	free(url);
	if (r < 0) {
		snprintf(why, sz, "%s", err ? err : strerror(-r));
		free(err);
		return OAUTH_TEMP;
	}
	return oauth_parse_device(status, a->answer.buf, a->answer.len, d,
	    why, sz);
}

/* Polls the token endpoint until the person has signed in. */
static enum oauth_status
oa_device_poll(struct oa *a, struct oauth_device *d, struct oauth_token *t,
    char *why, size_t sz)
{
	time_t end = time(NULL) + d->expires_in;
	long interval = d->interval;
	enum oauth_status st = OAUTH_EXPIRED;

	snprintf(why, sz, "the code expired before the sign-in");
	while (time(NULL) < end) {
		sleep((unsigned)interval);
		oauth_secret_clear(&a->body);
		if (oauth_form_add(&a->body, "grant_type", DEVICE_GRANT,
		    strlen(DEVICE_GRANT)) < 0 || oauth_form_add(&a->body,
		    "device_code", d->device_code.buf, d->device_code.len) <
		    0 || oa_form_client(a) < 0)
			return OAUTH_LOCAL;
		st = oa_post_token(a->ctx, a->o->token_url, &a->body,
		    &a->answer, t, why, sz);
		if (st == OAUTH_SLOW_DOWN)
			interval += 5;	/* RFC 8628 §3.5 */
		else if (st != OAUTH_PENDING)
			return st;
	}
	return st == OAUTH_PENDING ? OAUTH_EXPIRED : st;
}

static int
oa_device(struct oa *a)
{
	struct oauth_device d;
	struct oauth_token t;
	enum oauth_status st;
	char why[600];
	int r;

	if (oauth_device_init(&d) < 0 || oauth_token_init(&t) < 0)
		return EX_OSERR;
	st = oa_device_start(a, &d, why, sizeof(why));
	if (st != OAUTH_OK) {
		r = oa_fail(a, st, why);
		goto out;
	}
	printf("To sign in, open %s in a browser (on any device) and enter "
	    "the code %s\nSign in as the mailbox %s; the code is valid for %ld "
	    "minutes. Waiting...\n", d.verification_uri, d.user_code,
	    a->c->cfg->upstream.username, d.expires_in / 60);
	fflush(stdout);
	st = oa_device_poll(a, &d, &t, why, sizeof(why));
	r = st == OAUTH_OK ? oa_finish(a, &t) : oa_fail(a, st, why);
out:
	oauth_device_free(&d);
	oauth_token_free(&t);
	return r;
}

/* ---- the installed-app flow with PKCE (RFC 7636, RFC 8252) ---- */

/* The loopback listener for the redirect; its port in *port. */
static int
oa_listen(unsigned want, unsigned *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)want);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 4) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -errno;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

/* The value of key in a query string ("a=1&code=..."), decoded. */
static char *
oa_query_get(const char *query, const char *key)
{
	struct evkeyvalq q;
	const char *v;
	char *out = NULL;

	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(query, &q) == 0 &&
	    (v = evhttp_find_header(&q, key)) != NULL)
		out = strdup(v);
	evhttp_clear_headers(&q);
	return out;
}

/* Builds the authorisation URL into a->body (it is not a secret). */
static int
oa_auth_url(struct oa *a, const char *redirect, const char *challenge,
    const char *state, char **urlp)
{
	const char *base = a->auth_url;
	char *derived = NULL;
	int r;

	if (base == NULL && a->o->provider == CFG_OAUTH_GOOGLE)
		base = GOOGLE_AUTH_URL;
	if (base == NULL)
		base = derived = oa_sibling_url(a->o->token_url, "authorize");
	if (base == NULL)
		return -EINVAL;
	oauth_secret_clear(&a->body);
#define ADD(k, v) oauth_form_add(&a->body, k, v, strlen(v))
	r = ADD("client_id", a->o->client_id);
	if (r == 0) r = ADD("redirect_uri", redirect);
	if (r == 0) r = ADD("response_type", "code");
	if (r == 0) r = ADD("scope", a->o->scope ? a->o->scope : "");
	if (r == 0) r = ADD("code_challenge", challenge);
	if (r == 0) r = ADD("code_challenge_method", "S256");
	if (r == 0) r = ADD("state", state);
	if (r == 0) r = ADD("access_type", "offline");
	if (r == 0) r = ADD("prompt", "consent");
#undef ADD
	if (r == 0 && asprintf(urlp, "%s?%s", base, a->body.buf) == -1)
		r = -ENOMEM;
	free(derived);
	return r;
}

/* Reads the browser's request on the loopback; the code or NULL. */
static char *
oa_take_redirect(int lfd, const char *state, char *why, size_t sz)
{
	static const char page[] = "HTTP/1.1 200 OK\r\nContent-Type: "
	    "text/plain\r\nConnection: close\r\n\r\nsmartrelay: the sign-in "
	    "is done; you can close this window.\r\n";
	char req[OAUTH_REQ_MAX], *q, *sp, *code = NULL, *st = NULL;
	ssize_t n;
	size_t len = 0;
	int fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return NULL;
	while (len + 1 < sizeof(req) && (n = read(fd, req + len,
	    sizeof(req) - 1 - len)) > 0) {
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	req[len] = '\0';
	if (strncmp(req, "GET /", 5) == 0 && (sp = strchr(req + 4, ' ')) !=
	    NULL && (*sp = '\0', q = strchr(req + 4, '?')) != NULL) {
		code = oa_query_get(q + 1, "code");
		st = oa_query_get(q + 1, "state");
		if (code == NULL && (sp = oa_query_get(q + 1, "error")))
			snprintf(why, sz, "the provider answered %s", sp), free(sp);
	}
	(void)!write(fd, page, sizeof(page) - 1);
	close(fd);
	if (code != NULL && (st == NULL || strcmp(st, state) != 0)) {
		snprintf(why, sz, "the redirect's state does not match: not "
		    "our sign-in");
		free(code);
		code = NULL;
	}
	free(st);
	return code;
}

/* Reads a pasted code (or the whole redirect address) from stdin. */
static char *
oa_take_pasted(char *why, size_t sz)
{
	char line[OAUTH_REQ_MAX], *q, *e;

	if (fgets(line, sizeof(line), stdin) == NULL)
		return NULL;
	line[strcspn(line, "\r\n")] = '\0';
	if ((q = strchr(line, '?')) != NULL)
		return oa_query_get(q + 1, "code");
	if (strncmp(line, "code=", 5) == 0)
		return oa_query_get(line, "code");
	for (e = line; *e == ' '; e++)
		;
	if (*e == '\0') {
		snprintf(why, sz, "nothing pasted");
		return NULL;
	}
	return strdup(e);
}

/* Waits for the redirect or a pasted code. */
static char *
oa_wait_code(int lfd, const char *state, char *why, size_t sz)
{
	struct pollfd p[2] = { { .fd = lfd, .events = POLLIN },
	    { .fd = STDIN_FILENO, .events = POLLIN } };
	time_t end = time(NULL) + OAUTH_WAIT_SECS;
	char *code;

	snprintf(why, sz, "no sign-in within %d minutes",
	    OAUTH_WAIT_SECS / 60);
	while (time(NULL) < end) {
		if (poll(p, 2, 1000) <= 0)
			continue;
		if (p[0].revents & POLLIN) {
			if ((code = oa_take_redirect(lfd, state, why, sz)))
				return code;
		} else if (p[1].revents & POLLIN)
			return oa_take_pasted(why, sz);
		else if (p[1].revents & (POLLHUP | POLLERR))
			p[1].fd = -1;	/* stdin closed: the browser only */
	}
	return NULL;
}

/* Exchanges the code and its verifier for tokens. */
static enum oauth_status
oa_exchange(struct oa *a, const char *code, const char *verifier,
    const char *redirect, struct oauth_token *t, char *why, size_t sz)
{
	int r;

	oauth_secret_clear(&a->body);
	r = oauth_form_add(&a->body, "grant_type", "authorization_code", 18);
	if (r == 0)
		r = oauth_form_add(&a->body, "code", code, strlen(code));
	if (r == 0)
		r = oauth_form_add(&a->body, "redirect_uri", redirect,
		    strlen(redirect));
	if (r == 0)
		r = oauth_form_add(&a->body, "code_verifier", verifier,
		    strlen(verifier));
	if (r == 0)
		r = oa_form_client(a);
	if (r < 0) {
		snprintf(why, sz, "the request does not fit");
		return OAUTH_LOCAL;
	}
	return oa_post_token(a->ctx, a->o->token_url, &a->body, &a->answer,
	    t, why, sz);
}

static int
oa_browser(struct oa *a)
{
	unsigned char rnd[32], hash[32];
	char verifier[64], challenge[64], state[32], redirect[64], why[600];
	char *url = NULL, *code = NULL;
	struct oauth_token t = { 0 };
	enum oauth_status st;
	unsigned port = 0;
	int lfd, r;

	if ((lfd = oa_listen(a->port, &port)) < 0) {
		cli_err(a->c, "oauth: cannot listen on 127.0.0.1:%u: %s",
		    a->port, strerror(-lfd));
		return EX_OSERR;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1 || oauth_token_init(&t) < 0) {
		close(lfd);
		return EX_OSERR;
	}
	oa_b64url(rnd, sizeof(rnd), verifier);
	EVP_Digest(verifier, strlen(verifier), hash, NULL, EVP_sha256(), NULL);
	oa_b64url(hash, sizeof(hash), challenge);
	RAND_bytes(rnd, 12);
	oa_b64url(rnd, 12, state);
	snprintf(redirect, sizeof(redirect), "http://127.0.0.1:%u/", port);
	if (oa_auth_url(a, redirect, challenge, state, &url) < 0) {
		r = oa_fail(a, OAUTH_REFUSED, "no authorisation URL: give "
		    "--auth-url");
		goto out;
	}
	printf("To sign in, open this address in a browser on this machine "
	    "and sign in as %s:\n\n%s\n\nThe browser then comes back to %s, "
	    "which this command serves. From another machine, paste the "
	    "address the browser ends on (or its code) here and press "
	    "Enter.\n", a->c->cfg->upstream.username, url, redirect);
	fflush(stdout);
	if ((code = oa_wait_code(lfd, state, why, sizeof(why))) == NULL) {
		r = oa_fail(a, OAUTH_DENIED, why);
		goto out;
	}
	st = oa_exchange(a, code, verifier, redirect, &t, why, sizeof(why));
	r = st == OAUTH_OK ? oa_finish(a, &t) : oa_fail(a, st, why);
out:
	close(lfd);
	explicit_bzero(verifier, sizeof(verifier));
	if (code != NULL)
		explicit_bzero(code, strlen(code));
	free(code);
	free(url);
	oauth_token_free(&t);
	return r;
}

/* ---- the command ---- */

/* "oauth [--browser|--device] [--auth-url U] [--device-url U] [--port N]" */
static int
oa_args(struct oa *a, int argc, char **argv)
{
	char *end;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--browser") == 0)
			a->flow = 'b';
		else if (strcmp(argv[i], "--device") == 0)
			a->flow = 'd';
		else if (strcmp(argv[i], "--auth-url") == 0 && i + 1 < argc)
			a->auth_url = argv[++i];
		else if (strcmp(argv[i], "--device-url") == 0 && i + 1 < argc)
			a->device_url = argv[++i];
		else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			errno = 0;
			a->port = (unsigned)strtoul(argv[++i], &end, 10);
			if (errno || *end != '\0' || a->port > 65535)
				return -1;
		} else
			return -1;
	}
	return 0;
}

/* Checks that the configuration asks for a sign-in at all. */
static int
oa_check_cfg(struct oa *a)
{
	const struct cfg *cfg = a->c->cfg;
	struct oauth_secret access = { 0 };
	enum oauth_status st;
	char why[600];
	bool rotated;
	long life = 0;

	if (cfg->upstream.auth != CFG_AUTH_XOAUTH2) {
		cli_err(a->c, "oauth: %s has upstream.auth = \"password\"; set "
		    "auth = \"xoauth2\" and an upstream.oauth group first "
		    "(docs/oauth.md)", cfg->path);
		return EX_CONFIG;
	}
	if (a->o->grant == CFG_GRANT_REFRESH_TOKEN)
		return 0;
	/* client_credentials: nobody signs in; check the secret once. */
	if (oauth_secret_init(&access, CFG_OAUTH_SECRET_MAX) < 0)
		return EX_OSERR;
	st = cli_oauth_token(cfg, &access, &life, &rotated, why, sizeof(why));
	oauth_secret_free(&access);
	if (st != OAUTH_OK)
		return oa_fail(a, st, why);
	printf("grant = \"client_credentials\" needs no sign-in: the token "
	    "endpoint gives an access token for %lds\n", life);
	return -1;
}

int
cli_oauth(struct cli *c, int argc, char **argv)
{
	struct oa a = { .c = c };
	char why[600], *err = NULL;
	int r;

	if (oa_args(&a, argc, argv) < 0) {
		cli_err(c, "usage: smartrelay [-c FILE] oauth [--browser|"
		    "--device] [--auth-url URL] [--device-url URL] "
		    "[--port N]");
		return EX_USAGE;
	}
	if ((r = cli_load_cfg(c)) != 0)
		return r;
	a.o = &c->cfg->upstream.oauth;
	if ((r = oa_check_cfg(&a)) != 0)
		return r < 0 ? 0 : r;
	if (a.flow == 0)
		a.flow = a.o->provider == CFG_OAUTH_GOOGLE ? 'b' : 'd';
	if (oauth_secret_init(&a.cs, CFG_OAUTH_SECRET_MAX) < 0 ||
	    oauth_secret_init(&a.body, 4 * CFG_OAUTH_SECRET_MAX) < 0 ||
	    oauth_secret_init(&a.answer, OAUTH_ANSWER_MAX) < 0)
		r = EX_OSERR;
	else if (oa_read_secret(a.o, &a.cs, why, sizeof(why)) < 0)
		r = oa_fail(&a, OAUTH_LOCAL, why);
	else if (tls_ctx_new(a.o->ca_file, &a.ctx, &err) < 0) {
		cli_err(c, "oauth: oauth.ca_file: %s", err ? err : "?");
		r = EX_CONFIG;
	} else
		r = a.flow == 'b' ? oa_browser(&a) : oa_device(&a);
	free(err);
	tls_ctx_free(a.ctx);
	oauth_secret_free(&a.cs);
	oauth_secret_free(&a.body);
	oauth_secret_free(&a.answer);
	return r;
}
