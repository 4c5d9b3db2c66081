/*
 * token: the cached OAuth access token and its refresh.  See token.h.
 *
 * States: no token, a valid token (until mono_expiry - margin), a request
 * in flight (t->http != NULL, sessions queued in t->waiters).  A refresh
 * goes: read the files, build the request (common/oauth.c), POST it
 * (common/oauth_http.c), read the answer, store a rotated refresh token,
 * cache the access token, answer every waiter.  Any failure answers every
 * waiter with the status; the relay turns that into a pause of the queue
 * (nothing bounces), and the scheduler's backoff decides when the next
 * session, and so the next request, comes.
 *
 * Writing the rotated refresh token is a small synchronous write, fsync
 * and rename on the event loop; it happens at most once an hour, and the
 * ordering (the new token durable before the access token that came with
 * it is used) is what lets a crash at any instant leave a token that
 * works (docs/oauth.md).
 */
#include "token.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cfg.h"
#include "log.h"
#include "oauth_http.h"
#include "tls.h"

#define TOKEN_MARGIN_MAX	300	/* refresh this long before expiry */
#define TOKEN_DEFAULT_LIFE	600	/* when expires_in is missing */
#define TOKEN_HTTP_TIMEOUT	60	/* seconds per request, at most */

struct token_waiter {
	uint64_t id;
	token_cb cb;
	void *arg;			/* borrowed: the relay's */
};

struct token {
	struct event_base *base;	/* borrowed */
	struct evdns_base *dns;		/* borrowed */
	const struct cfg *cfg;		/* borrowed; replaced on reload */
	char *sig;			/* owned: what the cache depends on */
	SSL_CTX *ctx;			/* owned, made at the first request */
	struct oauth_secret access;	/* the cached token, len 0: none */
	struct timespec expiry;		/* CLOCK_MONOTONIC */
	time_t lifetime;		/* seconds the last token lived */
	struct oauth_http *http;	/* owned: request in flight or NULL */
	struct oauth_secret body;	/* the request being sent */
	struct token_waiter *waiters;	/* owned array */
	size_t nwaiters, waiters_cap;
	struct token_info info;
};

/* Seconds on the monotonic clock. */
static time_t
token_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* True when the cached token is good for a while yet. */
static bool
token_fresh(const struct token *t)
{
	time_t margin = t->lifetime / 10;

	if (margin > TOKEN_MARGIN_MAX)
		margin = TOKEN_MARGIN_MAX;
	return t->access.len > 0 && token_mono() + margin < t->expiry.tv_sec;
}

/* Forgets the cached token. */
static void
token_drop(struct token *t)
{
	oauth_secret_clear(&t->access);
	t->info.valid_until = 0;
}

struct token *
token_new(struct event_base *base, struct evdns_base *dns)
{
	struct token *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->base = base;
	t->dns = dns;
	if (oauth_secret_init(&t->access, CFG_OAUTH_SECRET_MAX) < 0 ||
	    oauth_secret_init(&t->body, 4 * CFG_OAUTH_SECRET_MAX) < 0) {
		token_free(t);
		return NULL;
	}
	return t;
}

void
token_free(struct token *t)
{
	if (t == NULL)
		return;
	oauth_http_free(t->http);
	oauth_secret_free(&t->access);
	oauth_secret_free(&t->body);
	tls_ctx_free(t->ctx);
	free(t->waiters);
	free(t->sig);
	free(t);
}

/* What the cached token depends on, as one string. */
static char *
token_signature(const struct cfg *cfg)
{
	const struct cfg_oauth *o = &cfg->upstream.oauth;
	char *sig;

	if (asprintf(&sig, "%s|%s|%s|%s|%s|%s|%d|%s", o->token_url ?
	    o->token_url : "", o->client_id ? o->client_id : "",
	    o->client_secret_file ? o->client_secret_file : "",
	    o->refresh_token_file ? o->refresh_token_file : "",
	    o->ca_file ? o->ca_file : "", o->scope ? o->scope : "",
	    (int)o->grant, cfg->upstream.username ?
	    cfg->upstream.username : "") == -1)
		return NULL;
	return sig;
}

void
token_set_cfg(struct token *t, const struct cfg *cfg)
{
	char *sig = token_signature(cfg);

	t->cfg = cfg;
	if (sig != NULL && t->sig != NULL && strcmp(sig, t->sig) == 0) {
		free(sig);
		return;
	}
	/* Another endpoint, client or CA: nothing cached still holds.  A
	 * request in flight finishes under the old settings. */
	free(t->sig);
	t->sig = sig;
	token_drop(t);
	tls_ctx_free(t->ctx);
	t->ctx = NULL;
}

/* Remembers a waiting session. */
static int
token_wait(struct token *t, uint64_t id, token_cb cb, void *arg)
{
	struct token_waiter *w;
	size_t cap;

	if (t->nwaiters == t->waiters_cap) {
		cap = t->waiters_cap ? 2 * t->waiters_cap : 8;
		if ((w = reallocarray(t->waiters, cap, sizeof(*w))) == NULL)
			return -ENOMEM;
		t->waiters = w;
		t->waiters_cap = cap;
	}
	t->waiters[t->nwaiters++] = (struct token_waiter){ id, cb, arg };
	return 0;
}

void
token_cancel(struct token *t, uint64_t id)
{
	size_t i;

	for (i = 0; i < t->nwaiters; i++)
		if (t->waiters[i].id == id)
			t->waiters[i].cb = NULL;
}

void
token_stale(struct token *t, const struct oauth_secret *tok)
{
	if (t->access.len > 0 && oauth_secret_equal(&t->access, tok)) {
		log_msg(LOG_INFO, NULL, "oauth access token refused by the "
		    "upstream: asking for a new one");
		token_drop(t);
	}
}

/* Answers every waiter; the list is detached first (they may ask again). */
static void
token_answer(struct token *t, enum oauth_status st, const char *why)
{
	struct token_waiter *w = t->waiters;
	size_t i, n = t->nwaiters;

	t->waiters = NULL;
	t->nwaiters = t->waiters_cap = 0;
	for (i = 0; i < n; i++)
		if (w[i].cb != NULL)
			w[i].cb(w[i].arg, w[i].id, st == OAUTH_OK ? &t->access :
			    NULL, st, why);
	free(w);
}

/* Records and logs a failed refresh. */
static void
token_note_failure(struct token *t, enum oauth_status st, const char *why)
{
	char q[300], a[700];

	t->info.last_error_at = time(NULL);
	t->info.last_status = st;
	snprintf(t->info.last_error, sizeof(t->info.last_error), "%s", why);
	log_msg(st == OAUTH_TEMP ? LOG_WARNING : LOG_ERR, NULL,
	    "oauth token request failed status=%s reason=\"%s\" fix=\"%s\"",
	    oauth_status_name(st), log_quote(q, sizeof(q), why),
	    log_quote(a, sizeof(a), oauth_advice(st,
	    &t->cfg->upstream.oauth)));
}

/* Records and logs a failed refresh, then answers the waiters. */
static void
token_failed(struct token *t, enum oauth_status st, const char *why)
{
	token_note_failure(t, st, why);
	token_answer(t, st, why);
}

/* Stores a rotated refresh token before anything uses the new access. */
static int
token_store_rotated(struct token *t, const struct oauth_token *ans,
    char *why, size_t sz)
{
	const char *path = t->cfg->upstream.oauth.refresh_token_file;
	char *err = NULL;
	int r;

	if (ans->refresh.len == 0 || path == NULL)
		return 0;
	r = oauth_write_file(path, ans->refresh.buf, ans->refresh.len,
	    (uid_t)-1, (gid_t)-1, &err);
	if (r < 0)
		snprintf(why, sz, "the provider sent a new refresh token but "
		    "it cannot be stored: %s", err ? err : strerror(-r));
	else
		log_msg(LOG_INFO, NULL, "oauth refresh token rotated file=%s",
		    path);
	free(err);
	return r;
}

/* Takes a good answer: store, cache, record. */
static void
token_accept(struct token *t, const struct oauth_token *ans)
{
	char why[600];

	if (token_store_rotated(t, ans, why, sizeof(why)) < 0) {
		token_failed(t, OAUTH_LOCAL, why);
		return;
	}
	t->lifetime = ans->expires_in > 0 ? ans->expires_in :
	    TOKEN_DEFAULT_LIFE;
	oauth_secret_set(&t->access, ans->access.buf, ans->access.len);
	t->expiry.tv_sec = token_mono() + t->lifetime;
	t->info.last_refresh = time(NULL);
	t->info.valid_until = t->info.last_refresh + t->lifetime;
	t->info.last_error_at = 0;
	t->info.last_error[0] = '\0';
	t->info.last_status = OAUTH_OK;
	log_msg(LOG_INFO, NULL, "oauth access token obtained expires_in=%ld "
	    "requests=%u", (long)t->lifetime, t->info.requests);
	token_answer(t, OAUTH_OK, "ok");
}

/* The endpoint answered (or not): from a fresh event. */
static void
token_http_done(void *arg, int status, const struct oauth_secret *answer,
    const char *err)
{
	struct token *t = arg;
	struct oauth_token ans;
	enum oauth_status st;
	char why[300];

	t->http = NULL;
	t->info.refreshing = 0;
	oauth_secret_clear(&t->body);
	if (status < 0) {
		snprintf(why, sizeof(why), "token endpoint %s: %s",
		    t->cfg->upstream.oauth.token_url, err ? err : "no answer");
		token_failed(t, OAUTH_TEMP, why);
		return;
	}
	if (oauth_token_init(&ans) < 0) {
		token_failed(t, OAUTH_TEMP, "out of memory");
		return;
	}
	st = oauth_parse_token(status, answer->buf, answer->len, &ans, why,
	    sizeof(why));
	if (st == OAUTH_OK)
		token_accept(t, &ans);
	else
		token_failed(t, st, why);
	oauth_token_free(&ans);
}

/* Reads the client secret and refresh token, builds the request body. */
static int
token_build(struct token *t, char *why, size_t sz)
{
	const struct cfg_oauth *o = &t->cfg->upstream.oauth;
	struct oauth_secret cs = { 0 }, rt = { 0 };
	char *err = NULL;
	int r;

	if ((r = oauth_secret_init(&cs, CFG_OAUTH_SECRET_MAX)) < 0 ||
	    (r = oauth_secret_init(&rt, CFG_OAUTH_SECRET_MAX)) < 0)
		goto out;
	if (o->client_secret_file != NULL &&
	    (r = oauth_read_file(o->client_secret_file, &cs, &err)) < 0)
		goto out;
	if (o->grant == CFG_GRANT_REFRESH_TOKEN &&
	    (r = oauth_read_file(o->refresh_token_file, &rt, &err)) < 0)
		goto out;
	r = oauth_token_request(o, &cs, &rt, &t->body);
out:
	if (r < 0)
		snprintf(why, sz, "%s%s", err ? err : strerror(-r),
		    r == -ENOENT ? " (run `smartrelay oauth` to write it)" :
		    "");
	free(err);
	oauth_secret_free(&cs);
	oauth_secret_free(&rt);
	return r;
}

/*
 * Starts a request to the token endpoint.  OAUTH_OK when it is in flight;
 * else the failure, recorded and logged, with why[sz].
 */
static enum oauth_status
token_refresh(struct token *t, char *why, size_t sz)
{
	const struct cfg *cfg = t->cfg;
	unsigned timeout = cfg->upstream.timeout < TOKEN_HTTP_TIMEOUT ?
	    cfg->upstream.timeout : TOKEN_HTTP_TIMEOUT;
	enum oauth_status st = OAUTH_LOCAL;
	char *err = NULL;
	int r;

	if (token_build(t, why, sz) < 0)
		goto fail;
	if (t->ctx == NULL && (r = tls_ctx_new(cfg->upstream.oauth.ca_file,
	    &t->ctx, &err)) < 0) {
		snprintf(why, sz, "oauth.ca_file: %s", err ? err :
		    strerror(-r));
		goto fail;
	}
	t->info.requests++;
	log_msg(LOG_INFO, NULL, "oauth token request url=%s grant=%s",
	    cfg->upstream.oauth.token_url,
	    cfg_grant_name(cfg->upstream.oauth.grant));
	r = oauth_http_post(t->base, t->dns, t->ctx,
	    cfg->upstream.oauth.token_url, &t->body, timeout, token_http_done,
	    t, &t->http, &err);
	if (r == 0) {
		t->info.refreshing = 1;
		return OAUTH_OK;
	}
	st = OAUTH_TEMP;
	snprintf(why, sz, "%s", err ? err : strerror(-r));
fail:
	free(err);
	oauth_secret_clear(&t->body);
	token_note_failure(t, st, why);
	return st;
}

int
token_get(struct token *t, uint64_t id, struct oauth_secret *out,
    token_cb cb, void *arg, enum oauth_status *st, char *why, size_t sz)
{
	*st = OAUTH_OK;
	why[0] = '\0';
	if (t->cfg == NULL)
		return -EINVAL;
	if (t->http == NULL && token_fresh(t))
		return oauth_secret_set(out, t->access.buf, t->access.len) <
		    0 ? -E2BIG : 1;
	if (t->http == NULL) {
		token_drop(t);
		if ((*st = token_refresh(t, why, sz)) != OAUTH_OK)
			return -EIO;
	}
	return token_wait(t, id, cb, arg);
}

void
token_info(const struct token *t, struct token_info *out)
{
	*out = t->info;
	if (t->access.len == 0)
		out->valid_until = 0;
}
