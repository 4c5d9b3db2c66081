/*
 * oauth_http: one HTTPS POST with evhttp over OpenSSL.  See oauth_http.h.
 *
 * Lifetime: evhttp calls oauth_http_done() (and, on failures, first
 * oauth_http_error()) from inside its own code, and frees the request
 * after it returns; so those callbacks only record the outcome and
 * activate h->finish.  oauth_http_finish() then runs from a fresh event,
 * calls the user's callback and frees the connection.  A deadline timer
 * (the same event, armed with the timeout) ends a stalled exchange: a
 * server that trickles one byte a minute would otherwise keep evhttp's
 * per-read timeout from ever firing.
 */
#include "oauth_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <openssl/err.h>

#include "tls.h"

#define HTTP_HEADERS_MAX	(16 * 1024)
#define HTTP_ERR_MAX		256

struct oauth_http {
	struct event_base *base;	/* borrowed */
	struct evhttp_connection *conn;	/* owned */
	struct evhttp_request *req;	/* owned by conn; NULL once done */
	struct bufferevent *bev;	/* owned by conn */
	SSL *ssl;			/* owned by bev */
	struct event *finish;		/* owned: deadline, then delivery */
	oauth_http_cb cb;
	void *arg;			/* borrowed: the caller's */
	int status;			/* HTTP status, -1: none */
	int finished;			/* the outcome is recorded */
	struct oauth_secret answer;	/* the body received */
	char err[HTTP_ERR_MAX];
};

/* Wipes and frees the request body once the connection has written it. */
static void
oauth_http_body_cleanup(const void *data, size_t len, void *arg)
{
	explicit_bzero(arg, len);
	free(arg);
}

/* Wipes an evbuffer's bytes in place (before libevent frees them). */
static void
oauth_http_wipe_buffer(struct evbuffer *b)
{
	struct evbuffer_iovec v[16];
	size_t done;
	int i, n;

	if (b == NULL)
		return;
	while (evbuffer_get_length(b) > 0) {
		n = evbuffer_peek(b, -1, NULL, v, 16);
		done = 0;
		for (i = 0; i < n && i < 16; i++) {
			explicit_bzero(v[i].iov_base, v[i].iov_len);
			done += v[i].iov_len;
		}
		if (done == 0)
			break;
		evbuffer_drain(b, done);
	}
}

/* Records the outcome once and schedules the delivery. */
static void
oauth_http_settle(struct oauth_http *h, int status, const char *why)
{
	if (h->finished)
		return;
	h->finished = 1;
	h->status = status;
	if (why != NULL)
		snprintf(h->err, sizeof(h->err), "%s", why);
	event_del(h->finish);
	event_active(h->finish, EV_TIMEOUT, 0);
}

/* Why the TLS layer failed, when it did. */
static const char *
oauth_http_tls_reason(struct oauth_http *h, char *buf, size_t sz)
{
	unsigned long e = h->bev != NULL ?
	    bufferevent_get_openssl_error(h->bev) : 0;

	if (e == 0 && (h->ssl == NULL ||
	    SSL_get_verify_result(h->ssl) == X509_V_OK))
		return NULL;
	return tls_error_string(h->ssl, e, buf, sz);
}

/* evhttp's error callback: remembers why there will be no answer. */
static void
oauth_http_error(enum evhttp_request_error e, void *arg)
{
	struct oauth_http *h = arg;
	char tls[200], why[HTTP_ERR_MAX];
	const char *what = "connection failed";

	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		what = "timed out";
		break;
	case EVREQ_HTTP_EOF:
		what = "connection closed before the answer";
		break;
	case EVREQ_HTTP_INVALID_HEADER:
		what = "invalid or too large HTTP headers";
		break;
	case EVREQ_HTTP_DATA_TOO_LONG:
		what = "answer too large";
		break;
	default:
		break;
	}
	if (oauth_http_tls_reason(h, tls, sizeof(tls)) != NULL)
		snprintf(why, sizeof(why), "TLS: %s", tls);
	else
		snprintf(why, sizeof(why), "%s", what);
	h->req = NULL;
	oauth_http_settle(h, -1, why);
}

/* evhttp's request callback: the answer, or NULL after an error. */
static void
oauth_http_done(struct evhttp_request *req, void *arg)
{
	struct oauth_http *h = arg;
	struct evbuffer *in;
	size_t len;
	int code;

	h->req = NULL;
	if (req == NULL || (code = evhttp_request_get_response_code(req)) ==
	    0) {
		oauth_http_settle(h, -1, "connection failed");
		return;
	}
	in = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(in);
	if (len > OAUTH_ANSWER_MAX || len > h->answer.cap) {
		oauth_http_wipe_buffer(in);
		oauth_http_settle(h, -1, "answer too large");
		return;
	}
	evbuffer_copyout(in, h->answer.buf, len);
	h->answer.len = len;
	h->answer.buf[len] = '\0';
	oauth_http_wipe_buffer(in);
	oauth_http_settle(h, code, NULL);
}

/* The deadline, or the delivery of a recorded outcome. */
static void
oauth_http_finish(evutil_socket_t fd, short what, void *arg)
{
	struct oauth_http *h = arg;
	oauth_http_cb cb = h->cb;
	void *cbarg = h->arg;

	if (!h->finished) {
		/* The deadline.  Cancelling calls oauth_http_error(), which
		 * finds the outcome already recorded. */
		h->finished = 1;
		h->status = -1;
		snprintf(h->err, sizeof(h->err), "timed out (no complete "
		    "answer within the deadline)");
		if (h->req != NULL)
			evhttp_cancel_request(h->req);
		h->req = NULL;
	}
	h->cb = NULL;
	cb(cbarg, h->status, &h->answer, h->status < 0 ? h->err : NULL);
	oauth_http_free(h);
}

void
oauth_http_free(struct oauth_http *h)
{
	if (h == NULL)
		return;
	h->finished = 1;	/* cancelling must not schedule a delivery */
	if (h->req != NULL)
		evhttp_cancel_request(h->req);
	if (h->conn != NULL)
		evhttp_connection_free(h->conn);	/* frees bev and ssl */
	if (h->finish != NULL)
		event_free(h->finish);
	oauth_secret_free(&h->answer);
	free(h);
}

/* Splits url into host, port and path; only https:// is accepted. */
static int
oauth_http_parse_url(const char *url, char *host, size_t hostsz, int *port,
    char *path, size_t pathsz)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);
	const char *scheme, *h, *p, *q;
	int r = -EINVAL;

	if (u == NULL)
		return -EINVAL;
	scheme = evhttp_uri_get_scheme(u);
	h = evhttp_uri_get_host(u);
	p = evhttp_uri_get_path(u);
	q = evhttp_uri_get_query(u);
	if (scheme != NULL && strcasecmp(scheme, "https") == 0 && h != NULL &&
	    h[0] != '\0' && (size_t)snprintf(host, hostsz, "%s", h) < hostsz &&
	    (size_t)snprintf(path, pathsz, "%s%s%s", p && p[0] ? p : "/",
	    q ? "?" : "", q ? q : "") < pathsz) {
		*port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) :
		    443;
		r = 0;
	}
	evhttp_uri_free(u);
	return r;
}

/* Makes the TLS bufferevent and the connection to host:port. */
static int
oauth_http_connect(struct oauth_http *h, struct evdns_base *dns,
    SSL_CTX *ctx, const char *host, int port, unsigned timeout)
{
	char bare[256];
	size_t n = strlen(host);

	/* evhttp gives an IPv6 literal in brackets; TLS wants it bare. */
	if (host[0] == '[' && n > 2 && n < sizeof(bare) + 2)
		snprintf(bare, sizeof(bare), "%.*s", (int)(n - 2), host + 1);
	else
		snprintf(bare, sizeof(bare), "%s", host);
	if (tls_ssl_new(ctx, bare, &h->ssl) < 0)
		return -ENOMEM;
	h->bev = bufferevent_openssl_socket_new(h->base, -1, h->ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE |
	    BEV_OPT_DEFER_CALLBACKS);
	if (h->bev == NULL) {
		SSL_free(h->ssl);
		h->ssl = NULL;
		return -ENOMEM;
	}
	/* Token endpoints often close without a TLS close_notify. */
	bufferevent_openssl_set_allow_dirty_shutdown(h->bev, 1);
	h->conn = evhttp_connection_base_bufferevent_new(h->base, dns, h->bev,
	    bare, (unsigned short)port);
	if (h->conn == NULL) {
		bufferevent_free(h->bev);	/* frees ssl */
		h->bev = NULL;
		h->ssl = NULL;
		return -ENOMEM;
	}
	evhttp_connection_set_timeout(h->conn, (int)timeout);
	evhttp_connection_set_retries(h->conn, 0);
	evhttp_connection_set_max_body_size(h->conn, OAUTH_ANSWER_MAX);
	evhttp_connection_set_max_headers_size(h->conn, HTTP_HEADERS_MAX);
	return 0;
}

/* Makes the request: headers, the body by reference, the deadline. */
static int
oauth_http_send(struct oauth_http *h, const char *host, const char *path,
    const struct oauth_secret *form, unsigned timeout)
{
	struct timeval tv = { .tv_sec = timeout };
	struct evkeyvalq *hd;
	char *copy;

	if ((h->req = evhttp_request_new(oauth_http_done, h)) == NULL)
		return -ENOMEM;
	evhttp_request_set_error_cb(h->req, oauth_http_error);
	hd = evhttp_request_get_output_headers(h->req);
	evhttp_add_header(hd, "Host", host);
	evhttp_add_header(hd, "Content-Type",
	    "application/x-www-form-urlencoded");
	evhttp_add_header(hd, "Accept", "application/json");
	evhttp_add_header(hd, "User-Agent", "smartrelay");
	evhttp_add_header(hd, "Connection", "close");
	if ((copy = malloc(form->len + 1)) == NULL)
		return -ENOMEM;
	memcpy(copy, form->buf, form->len);
	if (evbuffer_add_reference(evhttp_request_get_output_buffer(h->req),
	    copy, form->len, oauth_http_body_cleanup, copy) < 0) {
		explicit_bzero(copy, form->len);
		free(copy);
		return -ENOMEM;
	}
	evtimer_add(h->finish, &tv);
	if (evhttp_make_request(h->conn, h->req, EVHTTP_REQ_POST, path) < 0) {
		h->req = NULL;	/* evhttp freed it */
		return -EIO;
	}
	return 0;
}

int
oauth_http_post(struct event_base *base, struct evdns_base *dns,
    SSL_CTX *ctx, const char *url, const struct oauth_secret *form,
    unsigned timeout, oauth_http_cb cb, void *arg, struct oauth_http **hp,
    char **err)
{
	struct oauth_http *h;
	char host[256], path[1024];
	int port, r;

	*hp = NULL;
	*err = NULL;
	if (oauth_http_parse_url(url, host, sizeof(host), &port, path,
	    sizeof(path)) < 0) {
		if (asprintf(err, "not an https:// URL: %s", url) == -1)
			*err = NULL;
		return -EINVAL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -ENOMEM;
	h->base = base;
	h->cb = cb;
	h->arg = arg;
	h->status = -1;
	r = oauth_secret_init(&h->answer, OAUTH_ANSWER_MAX);
	if (r == 0 && (h->finish = evtimer_new(base, oauth_http_finish, h)) ==
	    NULL)
		r = -ENOMEM;
	if (r == 0)
		r = oauth_http_connect(h, dns, ctx, host, port, timeout);
	if (r == 0)
		r = oauth_http_send(h, host, path, form, timeout);
	if (r < 0) {
		oauth_http_free(h);
		if (asprintf(err, "cannot start the request: %s",
		    strerror(-r)) == -1)
			*err = NULL;
		return r;
	}
	*hp = h;
	return 0;
}

/* The blocking form's result. */
struct oauth_http_wait {
	int done;
	int status;
	struct oauth_secret *answer;	/* borrowed: the caller's */
	char *err;			/* owned until handed over */
};

static void
oauth_http_wait_cb(void *arg, int status, const struct oauth_secret *answer,
    const char *err)
{
	struct oauth_http_wait *w = arg;

	w->done = 1;
	w->status = status;
	if (status > 0 && oauth_secret_set(w->answer, answer->buf,
	    answer->len) < 0)
		w->status = -1;
	if (err != NULL)
		w->err = strdup(err);
}

int
oauth_http_post_wait(SSL_CTX *ctx, const char *url,
    const struct oauth_secret *form, unsigned timeout, int *status,
    struct oauth_secret *answer, char **err)
{
	struct oauth_http_wait w = { .answer = answer };
	struct event_base *base = event_base_new();
	struct oauth_http *h;
	int r;

	*status = -1;
	*err = NULL;
	if (base == NULL)
		return -ENOMEM;
	r = oauth_http_post(base, NULL, ctx, url, form, timeout,
	    oauth_http_wait_cb, &w, &h, err);
	while (r == 0 && !w.done && event_base_loop(base, EVLOOP_ONCE) == 0)
		;
	if (r == 0 && !w.done)
		oauth_http_free(h);	/* the loop ran dry: cannot happen */
	event_base_free(base);
	if (r < 0)
		return r;
	*status = w.status;
	if (w.status > 0) {
		free(w.err);
		return 0;
	}
	*err = w.err != NULL ? w.err : strdup("no answer");
	return -EIO;
}
