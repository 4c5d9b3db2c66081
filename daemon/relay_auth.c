/*
 * relay_auth: logging in to the upstream (RFC 4954), a part of the relay
 * session (relay.c) kept apart by role: AUTH PLAIN, else LOGIN, with the
 * password read afresh for every session (docs/relay.md), or XOAUTH2 /
 * OAUTHBEARER with an access token from daemon/token.c (docs/oauth.md),
 * renewed once when the server refuses a cached one.  The lines are made
 * by the shared encoders of common/smtpproto.c and sent by reference so
 * that the credential is wiped once written; the password and the token
 * are wiped as soon as the exchange no longer needs them.
 */
#include "relay_private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "token.h"

static void relay_start_oauth(struct relay_session *);

/* Sends the first AUTH line of s->mech (common/smtpproto.c encodes it). */
static int
relay_auth_first(struct relay_session *s)
{
	char *line;
	size_t len;
	int r;

	if (s->mech == SMTPPROTO_MECH_PLAIN) {
		r = smtpproto_auth_plain(s->username, s->secret.buf,
		    s->secret.len, &line, &len);
		cfg_secret_clear(&s->secret);
	} else
		r = smtpproto_auth_login(&line, &len);
	return r < 0 ? r : relay_send_secret(s, line, len, 0);
}

/* Logs in: PLAIN when offered, else LOGIN, password read afresh. */
void
relay_start_auth(struct relay_session *s)
{
	const struct cfg *cfg = s->env->cfg;
	char *err = NULL, reason[RELAY_REPLY_MAX];
	int r;

	if (!(s->flags & RF_TLS) && s->tls != CFG_TLS_NONE) {
		/* Unreachable by construction: a last guard. */
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "TLS not verified: refusing to log in");
		return;
	}
	if (s->username == NULL) {
		relay_ready(s);
		return;
	}
	if (s->auth == CFG_AUTH_XOAUTH2) {
		relay_start_oauth(s);
		return;
	}
	if ((s->mech = smtpproto_auth_choose(s->ext)) == SMTPPROTO_MECH_NONE) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "the upstream offers neither AUTH PLAIN nor AUTH LOGIN");
		return;
	}
	/* Read for every session, so that fixing the file needs no restart. */
	if ((r = cfg_read_password(cfg, &s->secret, &err)) < 0) {
		snprintf(reason, sizeof(reason), "cannot read the password: "
		    "%s", err != NULL ? err : strerror(-r));
		free(err);
		relay_close(s, RELAY_PAUSE, RELAY_PAUSE_CREDENTIALS, reason);
		return;
	}
	s->auth_step = 0;
	if (relay_auth_first(s) < 0) {
		cfg_secret_clear(&s->secret);
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "out of memory");
		return;
	}
	relay_expect(s, RELAY_AUTH);
}

/* ---- OAuth: XOAUTH2 and OAUTHBEARER (docs/oauth.md) ---- */

/* No token: the account's problem, never the messages'. */
static void
relay_token_failed(struct relay_session *s, enum oauth_status st,
    const char *why)
{
	char reason[RELAY_REPLY_MAX];

	snprintf(reason, sizeof(reason), "OAuth token %s: %.300s",
	    oauth_status_name(st), why);
	relay_close(s, RELAY_PAUSE, RELAY_PAUSE_CREDENTIALS, reason);
}

/* Sends AUTH with the token: OAUTHBEARER when offered, else XOAUTH2. */
static void
relay_send_oauth(struct relay_session *s)
{
	enum smtpproto_mech mech = smtpproto_oauth_choose(s->ext);
	char *line = NULL;
	size_t len;
	int r;

	r = mech == SMTPPROTO_MECH_OAUTHBEARER ?
	    smtpproto_auth_oauthbearer(s->username, s->host, s->port,
	    s->token.buf, s->token.len, &line, &len) :
	    smtpproto_auth_xoauth2(s->username, s->token.buf, s->token.len,
	    &line, &len);
	if (r == 0)
		r = relay_send_secret(s, line, len, 0);
	if (r < 0) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    r == -EINVAL ? "upstream.username cannot go into an OAuth "
		    "login" : "out of memory");
		return;
	}
	s->mech = mech;
	s->auth_step = 0;
	relay_expect(s, RELAY_AUTH);
}

/* The token manager's answer, found by session id. */
static void
relay_token_cb(void *arg, uint64_t id, const struct oauth_secret *tok,
    enum oauth_status st, const char *why)
{
	struct relay_session *s = relay_lookup(arg, id);

	if (s == NULL || s->state != RELAY_TOKEN)
		return;
	if (tok == NULL || oauth_secret_set(&s->token, tok->buf, tok->len) <
	    0) {
		relay_token_failed(s, st, why);
		return;
	}
	s->token_cached = false;
	relay_send_oauth(s);
}

/* Gets a token (cached, or from the endpoint), then logs in with it. */
static void
relay_start_oauth(struct relay_session *s)
{
	enum oauth_status st;
	char why[RELAY_REPLY_MAX];
	int r;

	if (smtpproto_oauth_choose(s->ext) == SMTPPROTO_MECH_NONE) {
		relay_close(s, RELAY_PAUSE, RELAY_PAUSE_CREDENTIALS,
		    "the upstream offers neither AUTH XOAUTH2 nor OAUTHBEARER: "
		    "auth = \"xoauth2\" cannot log in there (check "
		    "upstream.host and upstream.port)");
		return;
	}
	if (s->token.buf == NULL &&
	    oauth_secret_init(&s->token, CFG_OAUTH_SECRET_MAX) < 0) {
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "out of memory");
		return;
	}
	r = token_get(s->env->token, s->id, &s->token, relay_token_cb, s->env,
	    &st, why, sizeof(why));
	if (r == 1) {
		s->token_cached = true;
		relay_send_oauth(s);
	} else if (r == 0) {
		relay_enter_state(s, RELAY_TOKEN);
		relay_arm(s, s->env->cfg->upstream.timeout + 60);
	} else if (r == -EIO)
		relay_token_failed(s, st, why);
	else
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "out of memory");
}

/*
 * A 334 during an OAuth AUTH is the error challenge (base64 JSON, status
 * 401): answer it so that the server ends the exchange with its 535.
 */
static void
relay_oauth_challenge(struct relay_session *s)
{
	relay_send_line(s, s->auth_step++ > 0 ? "*" :
	    smtpproto_oauth_abort(s->mech));
	relay_arm(s, s->env->cfg->upstream.timeout);
}

/*
 * The token was refused.  A token from the cache may have been revoked or
 * expired early: drop it and try once more with a fresh one, in the same
 * session.  A fresh token refused means the account or the scope is wrong.
 */
static bool
relay_oauth_retry(struct relay_session *s)
{
	if (s->auth != CFG_AUTH_XOAUTH2 || !s->token_cached ||
	    s->token_retried || reply_class(&s->reply) != 5)
		return false;
	s->token_retried = true;
	token_stale(s->env->token, &s->token);
	oauth_secret_clear(&s->token);
	relay_start_oauth(s);
	return true;
}

/* Answers a 334 of AUTH LOGIN: the user name, then the password. */
static void
relay_auth_login_step(struct relay_session *s)
{
	char *line;
	size_t len;
	int r;

	r = s->mech != SMTPPROTO_MECH_LOGIN ? -EPROTO :
	    smtpproto_auth_login_step(s->auth_step, s->username,
	    s->secret.buf, s->secret.len, &line, &len);
	if (r == 0) {
		if (s->auth_step == 1)
			cfg_secret_clear(&s->secret);
		r = relay_send_secret(s, line, len, 1);
	} else if (r == -EPROTO) {
		/* Unexpected challenge: cancel the exchange (RFC 4954 §4). */
		relay_send_line(s, "*");
		r = 0;
	}
	s->auth_step++;
	if (r < 0)
		relay_close(s, RELAY_TEMPFAIL, RELAY_PAUSE_NONE,
		    "out of memory");
	else
		relay_arm(s, s->env->cfg->upstream.timeout);
}

/* Replies during AUTH: 334 challenges, then 235 or a refusal. */
void
relay_on_auth(struct relay_session *s)
{
	if (s->reply.code == 334 && s->auth == CFG_AUTH_XOAUTH2) {
		relay_oauth_challenge(s);
		return;
	}
	if (s->reply.code == 334 && s->auth_step < 3) {
		relay_auth_login_step(s);
		return;
	}
	cfg_secret_clear(&s->secret);
	if (reply_class(&s->reply) != 2 && relay_oauth_retry(s))
		return;
	oauth_secret_free(&s->token);
	if (reply_class(&s->reply) == 2) {
		s->flags |= RF_AUTHED;
		log_msg(LOG_INFO, NULL, "relay session=%" PRIu64
		    " authenticated user=%s relay=%s", s->id,
		    s->username, s->peer);
		relay_ready(s);
		return;
	}
	relay_setup_failed(s, RELAY_STAGE_AUTH, "AUTH rejected");
}
