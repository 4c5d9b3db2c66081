/*
 * oauth_http: one HTTPS POST to an OAuth endpoint (docs/oauth.md).
 *
 * libevent's HTTP client (evhttp) over an OpenSSL bufferevent: the
 * certificate chain and the host name are verified (common/tls.c, SNI
 * set), the answer is bounded (OAUTH_ANSWER_MAX bytes of body, 16 KiB of
 * headers), and the whole exchange has a deadline, so a stalled endpoint
 * costs at most `timeout` seconds.  The request body (it carries the
 * client secret and the refresh token) goes to the connection by
 * reference and is wiped once written; the answer is copied into a struct
 * oauth_secret and the connection's copy wiped.
 *
 * The daemon runs requests on its event loop (oauth_http_post, the result
 * through a callback from a fresh event); the tool, a blocking program,
 * calls oauth_http_post_wait(), which runs the same code on a private
 * event base.  So there is one HTTP client for both.
 *
 * Error convention: 0 or a negative errno; a human message in *err
 * (malloc'd).  Nothing here logs.
 */
#ifndef SMARTRELAY_OAUTH_HTTP_H
#define SMARTRELAY_OAUTH_HTTP_H

#include <openssl/ssl.h>

#include "oauth.h"

struct event_base;
struct evdns_base;
struct oauth_http;

/*
 * The result: status is the HTTP status (> 0), or -1 when there was no
 * HTTP answer (then err says why: DNS, connect, TLS, timeout, too large).
 * answer is borrowed for the call and wiped after it.
 */
typedef void (*oauth_http_cb)(void *arg, int status,
    const struct oauth_secret *answer, const char *err);

/*
 * Starts a POST of form (application/x-www-form-urlencoded) to url
 * (https://host[:port]/path) with ctx (borrowed; it must outlive the
 * request).  dns NULL: blocking resolution.  The callback comes once,
 * from a fresh event, unless oauth_http_free() cancels it first.
 */
int oauth_http_post(struct event_base *base, struct evdns_base *dns,
    SSL_CTX *ctx, const char *url, const struct oauth_secret *form,
    unsigned timeout, oauth_http_cb cb, void *arg, struct oauth_http **hp,
    char **err);
/* Cancels a request in flight (no callback) and frees it; NULL is fine. */
void oauth_http_free(struct oauth_http *h);

/*
 * The same, blocking, for the tool: *status and answer (which the caller
 * initialised) are filled; returns 0 when there was an HTTP answer, else
 * a negative errno with *err.
 */
int oauth_http_post_wait(SSL_CTX *ctx, const char *url,
    const struct oauth_secret *form, unsigned timeout, int *status,
    struct oauth_secret *answer, char **err);

#endif
