/*
 * oauth: the OAuth 2.0 token protocol as smartrelay speaks it (RFC 6749
 * §4.1, §4.4, §6; RFC 8628 device flow; RFC 7636 PKCE; docs/oauth.md).
 *
 * Shared by the daemon's token client (daemon/token.c) and by
 * `smartrelay oauth` / `smartrelay test` in the tool, so that there is one
 * implementation of what goes into a token request and of what an answer
 * means: building form-encoded request bodies, reading the JSON answers
 * (with jansson), classifying errors into what the user must do, and
 * keeping the refresh token file (read by the rules of password_file,
 * replaced atomically and durably).  The HTTPS transport is oauth_http.c.
 *
 * Secrets (client secret, refresh and access tokens, the request bodies
 * that carry them, the answers) live in struct oauth_secret: memory of its
 * own, kept out of core dumps (MADV_DONTDUMP) and wiped when freed.  No
 * function here logs or puts a secret into an error message.
 *
 * Error convention: 0 or a negative errno; a human message in *err
 * (malloc'd) where it helps.
 */
#ifndef SMARTRELAY_OAUTH_H
#define SMARTRELAY_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "cfg.h"

#define OAUTH_ANSWER_MAX	(64 * 1024)	/* bytes of a token answer */
#define OAUTH_ERROR_MAX		64		/* the "error" code kept */
#define OAUTH_DESC_MAX		256		/* error_description kept */

/* A secret in memory kept out of core dumps; wiped on clear and free. */
struct oauth_secret {
	char *buf;			/* owned: mmap'd, NUL-terminated */
	size_t len;
	size_t cap;
};

/* What a token endpoint's answer means (RFC 6749 §5.2, RFC 8628 §3.5). */
enum oauth_status {
	OAUTH_OK,
	OAUTH_TEMP,		/* unreachable, timeout, 5xx, garbage: later */
	OAUTH_INVALID_GRANT,	/* refresh token revoked or expired */
	OAUTH_INVALID_CLIENT,	/* client id or secret wrong */
	OAUTH_REFUSED,		/* another 4xx error: scope, request... */
	OAUTH_PENDING,		/* device flow: the person has not signed in */
	OAUTH_SLOW_DOWN,	/* device flow: poll less often */
	OAUTH_EXPIRED,		/* device flow: the code expired */
	OAUTH_DENIED,		/* the person declined */
	OAUTH_LOCAL,		/* a file of ours: unreadable, unwritable */
};

/* A token endpoint's answer. */
struct oauth_token {
	struct oauth_secret access;	/* access_token */
	struct oauth_secret refresh;	/* a new refresh_token, len 0: none */
	long expires_in;		/* seconds; 0 when not given */
	char error[OAUTH_ERROR_MAX];	/* "invalid_grant", "" when none */
	char desc[OAUTH_DESC_MAX];	/* error_description, printable */
};

/* A device authorisation answer (RFC 8628 §3.2). */
struct oauth_device {
	struct oauth_secret device_code;
	char user_code[64];
	char verification_uri[512];
	long interval;			/* seconds between polls */
	long expires_in;
};

/* Allocates cap bytes out of core dumps; -ENOMEM. */
int oauth_secret_init(struct oauth_secret *s, size_t cap);
/* Wipes the content (keeps the memory). */
void oauth_secret_clear(struct oauth_secret *s);
/* Wipes and frees; accepts a zeroed or freed struct. */
void oauth_secret_free(struct oauth_secret *s);
/* Replaces the content; -E2BIG when it does not fit. */
int oauth_secret_set(struct oauth_secret *s, const char *v, size_t n);
/* Appends; -E2BIG when it does not fit. */
int oauth_secret_append(struct oauth_secret *s, const char *v, size_t n);
/* True when both hold the same bytes (constant time for equal lengths). */
bool oauth_secret_equal(const struct oauth_secret *a,
    const struct oauth_secret *b);

/* Prepares and frees token and device answers. */
int oauth_token_init(struct oauth_token *t);
void oauth_token_free(struct oauth_token *t);
int oauth_device_init(struct oauth_device *d);
void oauth_device_free(struct oauth_device *d);

/* Appends "key=value" (percent-encoded, '&' between pairs) to a body. */
int oauth_form_add(struct oauth_secret *body, const char *key,
    const char *val, size_t vlen);
/*
 * The token request of the configured grant: refresh_token (with the
 * refresh token) or client_credentials, with client_id, the client secret
 * when there is one (len 0: none), and the scope where the provider takes
 * it.  Replaces body.
 */
int oauth_token_request(const struct cfg_oauth *o,
    const struct oauth_secret *client_secret,
    const struct oauth_secret *refresh, struct oauth_secret *body);

/*
 * Reads a token endpoint's answer: HTTP status and body.  Fills t and
 * returns what it means; why[sz] gets a one-line explanation without any
 * secret ("HTTP 400 invalid_grant: Token has been expired or revoked.").
 */
enum oauth_status oauth_parse_token(int http_status, const char *body,
    size_t len, struct oauth_token *t, char *why, size_t sz);
/* Reads a device authorisation answer; OAUTH_OK or an error as above. */
enum oauth_status oauth_parse_device(int http_status, const char *body,
    size_t len, struct oauth_device *d, char *why, size_t sz);

/* "ok", "temporary", "invalid_grant", ... */
const char *oauth_status_name(enum oauth_status st);
/*
 * What the user should do about st, in plain words: the fix of its row
 * in the one advice table (common/smtpproto_advice.c, docs/oauth.md).
 */
const char *oauth_advice(enum oauth_status st, const struct cfg_oauth *o);

/* Reads a secret file (client secret, refresh token) into s. */
int oauth_read_file(const char *path, struct oauth_secret *s, char **err);
/*
 * Replaces path with the token, durably and atomically: a temporary file
 * in the same directory, mode 0600 (owner uid/gid when not -1), written,
 * fsync'd, renamed over path, the directory fsync'd.  Either the old or
 * the new token is in path after a crash, never a mix.
 */
int oauth_write_file(const char *path, const char *tok, size_t len,
    uid_t uid, gid_t gid, char **err);

#endif
