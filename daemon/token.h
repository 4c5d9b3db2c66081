/*
 * token: the daemon's OAuth 2.0 access token for upstream.auth = "xoauth2"
 * (docs/oauth.md).
 *
 * One struct token per daemon, owned by the scheduler.  It caches the
 * access token and hands it to every relay session that logs in; it asks
 * the token endpoint (common/oauth_http.c, on the event loop) only when
 * there is no token, when the cached one expires within a margin (a tenth
 * of its lifetime, at most five minutes), or when a session reports that
 * the upstream refused it (token_stale(), the XOAUTH2 401 challenge).  So
 * sessions share one token, and a backlog drained over many sessions
 * costs one token request, never one per message or per session.
 * Sessions that ask while a request is in flight wait for the same one.
 *
 * A refresh reads the client secret and the refresh token from their
 * files (so running `smartrelay oauth` again needs no restart), and when
 * the answer carries a new refresh token it replaces the file (atomically,
 * durably, mode 0600) before the access token is used.  The token lives
 * in a struct oauth_secret: out of core dumps, wiped when replaced.
 *
 * Results come through a callback with the session's 64-bit id, from a
 * fresh event (or at once from token_get() when the cache is good).
 */
#ifndef SMARTRELAY_TOKEN_H
#define SMARTRELAY_TOKEN_H

#include <stdint.h>
#include <time.h>

#include "oauth.h"

struct cfg;
struct event_base;
struct evdns_base;
struct token;

/*
 * The token, or why there is none: tok is NULL and st says what (the
 * advice is oauth_advice(st)), why one line without secrets.  tok is
 * borrowed for the call.
 */
typedef void (*token_cb)(void *arg, uint64_t id,
    const struct oauth_secret *tok, enum oauth_status st, const char *why);

/* What `smartrelay status` shows about the token. */
struct token_info {
	time_t valid_until;		/* 0: no token */
	time_t last_refresh;		/* last token request that worked */
	time_t last_error_at;		/* 0: none since the last success */
	enum oauth_status last_status;
	char last_error[256];		/* "" when none */
	unsigned requests;		/* token requests made since start */
	int refreshing;			/* a request is in flight */
};

/* Makes the manager; nothing is requested until token_get(). */
struct token *token_new(struct event_base *base, struct evdns_base *dns);
/* Cancels a request in flight (no callbacks), wipes, frees; NULL is fine. */
void token_free(struct token *t);

/*
 * The configuration to use from now on (borrowed).  A change of the
 * endpoint, client, grant, files or CA drops the cached token.
 */
void token_set_cfg(struct token *t, const struct cfg *cfg);

/*
 * Asks for a token for session id.  Returns 1 when the cached one was
 * copied into out at once (no callback); 0 when cb will be called later
 * (never from inside this call); -EIO when the request could not start
 * (*st and why[sz] say why: a file, the CA), -ENOMEM.
 */
int token_get(struct token *t, uint64_t id, struct oauth_secret *out,
    token_cb cb, void *arg, enum oauth_status *st, char *why, size_t sz);
/* Session id no longer waits (it ended). */
void token_cancel(struct token *t, uint64_t id);
/*
 * The upstream refused tok: when it is the cached one, drop it so that
 * the next token_get() asks the endpoint.
 */
void token_stale(struct token *t, const struct oauth_secret *tok);

void token_info(const struct token *t, struct token_info *out);

#endif
