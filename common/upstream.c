/*
 * upstream: resolving and connecting to the smart host.  See upstream.h.
 *
 * One struct upstream_conn per attempt, driven by the caller's event
 * loop: an evdns lookup (answered at once for numeric hosts and
 * /etc/hosts), then a non-blocking connect() to each address in turn with
 * one event for "writable or timed out", then the result, delivered from a
 * fresh event so that no callback runs on the caller's stack.  The lookup's
 * callback finds the attempt through a small indirection that a
 * cancellation clears, since evdns calls it even for a cancelled lookup.
 */
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "addr.h"
#include "smtpproto.h"

/* The lookup's way back to its attempt; c is NULL once cancelled. */
struct upstream_dns_arg {
	struct upstream_conn *c;	/* borrowed, NULL: cancelled */
};

struct upstream_conn {
	struct event_base *base;	/* borrowed */
	struct evdns_base *dns;		/* borrowed */
	char *host;			/* owned */
	unsigned port;
	bool loopback_only;
	unsigned secs;
	unsigned resolve_secs;
	upstream_cb cb;
	void *arg;
	uint64_t id;
	struct upstream_dns_arg *da;	/* owned by the lookup while pending */
	struct evdns_getaddrinfo_request *req;	/* pending lookup or NULL */
	struct evutil_addrinfo *ai;	/* owned: the host's addresses */
	struct evutil_addrinfo *cur;	/* borrowed: the one tried */
	int fd;				/* the socket being connected, -1 */
	struct event *ev;		/* owned: connect or done event */
	char lasterr[UPSTREAM_REASON_MAX];
	struct upstream_result res;
};

static void upstream_next(struct upstream_conn *);

struct evdns_base *
upstream_dns_new(struct event_base *base)
{
	struct evdns_base *dns = evdns_base_new(base, 0);

	if (dns == NULL)
		return NULL;
	if (evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL,
	    "/etc/resolv.conf") != 0)
		evdns_base_load_hosts(dns, NULL);
	return dns;
}

unsigned
upstream_connect_secs(unsigned t)
{
	return t > 0 && t < UPSTREAM_CONNECT_SECS ? t : UPSTREAM_CONNECT_SECS;
}

/* Frees an attempt (the socket too, unless it was handed over). */
static void
upstream_free(struct upstream_conn *c)
{
	if (c->da != NULL)
		c->da->c = NULL;	/* the lookup frees its arg */
	if (c->req != NULL)
		evdns_getaddrinfo_cancel(c->req);
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->fd >= 0)
		close(c->fd);
	if (c->ai != NULL)
		evutil_freeaddrinfo(c->ai);
	free(c->host);
	free(c);
}

void
upstream_cancel(struct upstream_conn *c)
{
	if (c != NULL)
		upstream_free(c);
}

/* The result is ready: deliver it, then free the attempt. */
static void
upstream_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_conn *c = arg;

	c->res.fd = c->fd;
	c->fd = -1;
	c->cb(c->arg, c->id, &c->res);
	upstream_free(c);
}

/* Ends the attempt: the callback comes from a fresh event. */
static void
upstream_finish(struct upstream_conn *c, enum upstream_status st)
{
	struct timeval now = { 0, 0 };

	c->res.status = st;
	if (c->ev != NULL)
		event_free(c->ev);
	c->ev = event_new(c->base, -1, 0, upstream_done_cb, c);
	if (c->ev == NULL || event_add(c->ev, &now) < 0) {
		/* Out of memory in the loop: say so at once, as a failure. */
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		c->res.status = UPSTREAM_UNREACHED;
		snprintf(c->res.reason, sizeof(c->res.reason), "out of memory");
		c->cb(c->arg, c->id, &c->res);
		upstream_free(c);
	}
}

/* Appends "what" to a ", "- or "; "-separated list in buf[sz]. */
static void
upstream_list_add(char *buf, size_t sz, const char *sep, const char *what)
{
	size_t o = strlen(buf);

	if (o + 1 < sz)
		snprintf(buf + o, sz - o, "%s%s", o > 0 ? sep : "", what);
}

/* One address failed with err (an errno, ETIMEDOUT, or EPERM for the
 * plaintext rule): remember it and try the next. */
static void
upstream_failed(struct upstream_conn *c, int err)
{
	const char *why = err == ETIMEDOUT ? "timed out" : strerror(err);
	enum smtpproto_local w;
	char item[160];

	if (err == EPERM) {
		c->res.nplaintext++;
		snprintf(c->lasterr, sizeof(c->lasterr), "refusing %s: tls = "
		    "\"none\" allows only a loopback address", c->res.peer);
		why = "not a loopback address (tls = \"none\")";
	} else {
		c->res.nrefused += err == ECONNREFUSED;
		c->res.ntimedout += err == ETIMEDOUT;
		c->res.nunreachable += err == ENETUNREACH ||
		    err == EHOSTUNREACH || err == EADDRNOTAVAIL;
		snprintf(c->lasterr, sizeof(c->lasterr), "connect to %s: %s",
		    c->res.peer, why);
	}
	/* The advice is the last address's, as the log's reason says. */
	if (err == EPERM)
		c->res.advice = smtpproto_advice_local(
		    SMTPPROTO_LOCAL_PLAINTEXT);
	else if (smtpproto_local_connect(err, &w))
		c->res.advice = smtpproto_advice_local(w);
	snprintf(item, sizeof(item), "%s: %s", c->res.ip, err == ETIMEDOUT ?
	    "no answer (timeout)" : why);
	upstream_list_add(c->res.tried, sizeof(c->res.tried), "; ", item);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	upstream_next(c);
}

/* The socket became writable (connected or failed) or timed out. */
static void
upstream_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_conn *c = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	if (what & EV_TIMEOUT)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		upstream_failed(c, err);
		return;
	}
	c->res.reason[0] = '\0';
	upstream_finish(c, UPSTREAM_CONNECTED);
}

/*
 * Starts a connection to c->cur: 0 when it is under way, else the errno.
 * Nagle is off: a pipelined batch, a QUIT or a body's last segment must
 * leave at once, not wait for the ACK of the previous segment.
 */
static int
upstream_start(struct upstream_conn *c)
{
	const struct evutil_addrinfo *a = c->cur;
	struct timeval tv = { .tv_sec = (time_t)c->secs };
	int one = 1;

	c->fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, a->ai_protocol);
	if (c->fd == -1)
		return errno;
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, a->ai_addr, (socklen_t)a->ai_addrlen) == -1 &&
	    errno != EINPROGRESS)
		return errno;
	if (c->ev != NULL)
		event_free(c->ev);
	c->ev = event_new(c->base, c->fd, EV_WRITE, upstream_connect_cb, c);
	if (c->ev == NULL || event_add(c->ev, &tv) < 0)
		return ENOMEM;
	return 0;
}

/* Tries the next address; the result when none is left. */
static void
upstream_next(struct upstream_conn *c)
{
	int err;

	c->cur = c->cur == NULL ? c->ai : c->cur->ai_next;
	if (c->cur == NULL) {
		snprintf(c->res.reason, sizeof(c->res.reason), "cannot connect "
		    "to %.200s: %.280s", c->host, c->lasterr[0] != '\0' ?
		    c->lasterr : "no address");
		upstream_finish(c, UPSTREAM_UNREACHED);
		return;
	}
	addr_sockaddr_str(c->cur->ai_addr, c->res.ip, sizeof(c->res.ip));
	snprintf(c->res.peer, sizeof(c->res.peer), "%s[%s]:%u", c->host,
	    c->res.ip, c->port);
	if (c->loopback_only && !addr_is_loopback(c->cur->ai_addr)) {
		/* The password would leave the host in clear text (e.g.
		 * "localhost" missing from /etc/hosts). */
		upstream_failed(c, EPERM);
		return;
	}
	if ((err = upstream_start(c)) != 0)
		upstream_failed(c, err);
}

/* The host's addresses: list them and connect to the first. */
static void
upstream_dns_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
	struct upstream_dns_arg *da = arg;
	struct upstream_conn *c = da->c;
	struct evutil_addrinfo *a;
	char ip[64];

	free(da);
	if (c == NULL) {		/* cancelled */
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	c->da = NULL;
	c->req = NULL;
	if (c->ev != NULL) {		/* the lookup's timer */
		event_free(c->ev);
		c->ev = NULL;
	}
	if (result != 0 || ai == NULL) {
		c->res.gai_error = result != 0 ? result : EVUTIL_EAI_NONAME;
		snprintf(c->res.reason, sizeof(c->res.reason), "cannot resolve "
		    "%s: %s", c->host, evutil_gai_strerror(c->res.gai_error));
		c->res.advice = smtpproto_advice_local(SMTPPROTO_LOCAL_RESOLVE);
		upstream_finish(c, UPSTREAM_UNRESOLVED);
		return;
	}
	c->ai = ai;
	for (a = ai; a != NULL; a = a->ai_next)
		upstream_list_add(c->res.addrs, sizeof(c->res.addrs), ", ",
		    addr_sockaddr_str(a->ai_addr, ip, sizeof(ip)));
	upstream_next(c);
}

/* The lookup took too long (no name server answers): give up on it. */
static void
upstream_resolve_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_conn *c = arg;

	c->da->c = NULL;	/* the lookup's callback frees its arg */
	c->da = NULL;
	evdns_getaddrinfo_cancel(c->req);
	c->req = NULL;
	c->res.gai_error = EVUTIL_EAI_AGAIN;
	snprintf(c->res.reason, sizeof(c->res.reason), "cannot resolve %s: "
	    "no answer within %u seconds", c->host, c->resolve_secs);
	c->res.advice = smtpproto_advice_local(SMTPPROTO_LOCAL_RESOLVE);
	upstream_finish(c, UPSTREAM_UNRESOLVED);
}

/* Bounds the lookup (best effort: without memory evdns's own timeouts
 * still end it). */
static void
upstream_arm_resolve(struct upstream_conn *c)
{
	struct timeval tv = { .tv_sec = (time_t)c->resolve_secs };

	c->ev = evtimer_new(c->base, upstream_resolve_timeout_cb, c);
	if (c->ev != NULL)
		evtimer_add(c->ev, &tv);
}

int
upstream_connect(struct event_base *base, struct evdns_base *dns,
    const struct upstream_target *t, upstream_cb cb, void *arg, uint64_t id,
    struct upstream_conn **cp)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct upstream_conn *c;
	char port[16];

	*cp = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	c->fd = -1;
	c->res.fd = -1;
	if ((c->host = strdup(t->host)) == NULL ||
	    (c->da = malloc(sizeof(*c->da))) == NULL) {
		free(c->host);
		free(c);
		return -ENOMEM;
	}
	c->base = base;
	c->dns = dns;
	c->port = t->port;
	c->loopback_only = t->loopback_only;
	c->secs = t->secs > 0 ? t->secs : UPSTREAM_CONNECT_SECS;
	c->resolve_secs = t->resolve_secs > 0 ? t->resolve_secs : c->secs;
	c->cb = cb;
	c->arg = arg;
	c->id = id;
	c->da->c = c;
	snprintf(c->res.peer, sizeof(c->res.peer), "%s", c->host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%u", t->port);
	*cp = c;
	/* Numeric hosts and /etc/hosts answer before this returns; the
	 * result still comes from a fresh event (upstream_finish()). */
	req = evdns_getaddrinfo(dns, c->host, port, &hints, upstream_dns_cb,
	    c->da);
	if (req != NULL && c->da != NULL) {
		c->req = req;
		upstream_arm_resolve(c);
	}
	return 0;
}
