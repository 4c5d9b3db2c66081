/*
 * Unit tests for common/upstream.c, the resolve-and-connect of the relay
 * and the doctor, on loopback: a listening port is connected to, a closed
 * one is refused, tls = "none" never connects to a non-loopback address,
 * the result never comes on the caller's stack, and a cancelled attempt
 * says nothing.  Also addr_sockaddr_str() and addr_is_loopback().
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "addr.h"
#include "smtpproto.h"
#include "upstream.h"

/* A name server for attempt()'s resolver, NULL: none; its timeout. */
static const char *nameserver;
static const char *ns_timeout = "0.2";
static unsigned resolve_secs;

struct run {
	struct event_base *base;
	struct evdns_base *dns;
	struct upstream_result res;
	int calls;
	uint64_t id;
};

static void
on_result(void *arg, uint64_t id, const struct upstream_result *res)
{
	struct run *r = arg;

	r->res = *res;
	r->id = id;
	r->calls++;
}

/* Connects to host:port and runs the loop until the result came. */
static void
attempt(struct run *r, const char *host, unsigned port, bool loopback_only)
{
	struct upstream_target t = { .host = host, .port = port,
	    .loopback_only = loopback_only, .secs = 5,
	    .resolve_secs = resolve_secs };
	struct upstream_conn *c;

	memset(r, 0, sizeof(*r));
	assert_non_null(r->base = event_base_new());
	assert_non_null(r->dns = evdns_base_new(r->base, 0));
	if (nameserver != NULL) {
		assert_int_equal(evdns_base_nameserver_ip_add(r->dns,
		    nameserver), 0);
		evdns_base_set_option(r->dns, "timeout:", ns_timeout);
		evdns_base_set_option(r->dns, "attempts:", "1");
	}
	assert_int_equal(upstream_connect(r->base, r->dns, &t, on_result, r,
	    42, &c), 0);
	assert_non_null(c);
	/* Numeric hosts resolve at once, yet nothing comes on this stack. */
	assert_int_equal(r->calls, 0);
	while (r->calls == 0)	/* 1: nothing left to wait for */
		assert_int_equal(event_base_loop(r->base, EVLOOP_ONCE), 0);
	assert_int_equal(r->calls, 1);
	assert_true(r->id == 42);
}

static void
done(struct run *r)
{
	if (r->res.fd >= 0)
		close(r->res.fd);
	evdns_base_free(r->dns, 0);
	event_base_free(r->base);
}

/* A listening socket on 127.0.0.1; its port. */
static int
listener(unsigned *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void
test_connects_to_a_listener(void **state)
{
	unsigned port;
	int ls = listener(&port);
	char peer[64];
	struct run r;

	attempt(&r, "127.0.0.1", port, true);
	assert_int_equal(r.res.status, UPSTREAM_CONNECTED);
	assert_true(r.res.fd >= 0);
	assert_string_equal(r.res.addrs, "127.0.0.1");
	assert_string_equal(r.res.ip, "127.0.0.1");
	snprintf(peer, sizeof(peer), "127.0.0.1[127.0.0.1]:%u", port);
	assert_string_equal(r.res.peer, peer);
	assert_string_equal(r.res.reason, "");
	assert_null(r.res.advice);
	/* The socket really is connected to the listener. */
	assert_int_equal(write(r.res.fd, "x", 1), 1);
	done(&r);
	close(ls);
}

static void
test_refused(void **state)
{
	unsigned port;
	int ls = listener(&port);
	char want[128];
	struct run r;

	close(ls);		/* nothing listens there now */
	attempt(&r, "127.0.0.1", port, false);
	assert_int_equal(r.res.status, UPSTREAM_UNREACHED);
	assert_int_equal(r.res.fd, -1);
	assert_int_equal(r.res.nrefused, 1);
	snprintf(want, sizeof(want), "cannot connect to 127.0.0.1: connect "
	    "to 127.0.0.1[127.0.0.1]:%u: Connection refused", port);
	assert_string_equal(r.res.reason, want);
	assert_string_equal(r.res.tried, "127.0.0.1: Connection refused");
	assert_ptr_equal(r.res.advice,
	    smtpproto_advice_local(SMTPPROTO_LOCAL_REFUSED));
	done(&r);
}

static void
test_plaintext_only_to_loopback(void **state)
{
	struct run r;

	/* TEST-NET-1: never reached, refused before any connect(). */
	attempt(&r, "192.0.2.1", 587, true);
	assert_int_equal(r.res.status, UPSTREAM_UNREACHED);
	assert_int_equal(r.res.nplaintext, 1);
	assert_string_equal(r.res.reason, "cannot connect to 192.0.2.1: "
	    "refusing 192.0.2.1[192.0.2.1]:587: tls = \"none\" allows only a "
	    "loopback address");
	assert_ptr_equal(r.res.advice,
	    smtpproto_advice_local(SMTPPROTO_LOCAL_PLAINTEXT));
	done(&r);
}

/* A UDP socket on loopback that never answers; its "ip:port". */
static int
silent_server(char *buf, size_t sz)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int ns = socket(AF_INET, SOCK_DGRAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(ns, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(ns, (struct sockaddr *)&sin, &len), 0);
	snprintf(buf, sz, "127.0.0.1:%u", ntohs(sin.sin_port));
	return ns;
}

/* The lookup is bounded by the attempt, whatever the resolver waits. */
static void
test_resolve_timeout(void **state)
{
	char server[64];
	int ns = silent_server(server, sizeof(server));
	struct run r;

	nameserver = server;
	ns_timeout = "30";
	resolve_secs = 1;
	attempt(&r, "smtp.example.invalid", 587, false);
	nameserver = NULL;
	ns_timeout = "0.2";
	resolve_secs = 0;
	close(ns);
	assert_int_equal(r.res.status, UPSTREAM_UNRESOLVED);
	assert_string_equal(r.res.reason, "cannot resolve "
	    "smtp.example.invalid: no answer within 1 seconds");
	done(&r);
}

static void
test_unresolved(void **state)
{
	char server[64];
	int ns = silent_server(server, sizeof(server));
	struct run r;

	/* A name server that never answers, asked once, briefly. */
	nameserver = server;
	attempt(&r, "smtp.example.invalid", 587, false);
	nameserver = NULL;
	close(ns);
	assert_int_equal(r.res.status, UPSTREAM_UNRESOLVED);
	assert_int_not_equal(r.res.gai_error, 0);
	assert_int_equal(strncmp(r.res.reason, "cannot resolve "
	    "smtp.example.invalid: ", 37), 0);
	assert_ptr_equal(r.res.advice,
	    smtpproto_advice_local(SMTPPROTO_LOCAL_RESOLVE));
	done(&r);
}

static void
test_cancel_says_nothing(void **state)
{
	struct upstream_target t = { .host = "127.0.0.1", .port = 9,
	    .secs = 5 };
	struct upstream_conn *c;
	struct run r = { 0 };

	assert_non_null(r.base = event_base_new());
	assert_non_null(r.dns = evdns_base_new(r.base, 0));
	assert_int_equal(upstream_connect(r.base, r.dns, &t, on_result, &r,
	    1, &c), 0);
	upstream_cancel(c);
	assert_int_equal(event_base_loop(r.base, EVLOOP_NONBLOCK), 1);
	assert_int_equal(r.calls, 0);
	r.res.fd = -1;
	done(&r);
}

static void
test_connect_secs(void **state)
{
	assert_int_equal(upstream_connect_secs(300), UPSTREAM_CONNECT_SECS);
	assert_int_equal(upstream_connect_secs(10), 10);
	assert_int_equal(upstream_connect_secs(0), UPSTREAM_CONNECT_SECS);
}

static void
test_sockaddr(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr un = { .sa_family = AF_UNIX };
	char buf[64];

	inet_pton(AF_INET, "127.1.2.3", &sin.sin_addr);
	assert_string_equal(addr_sockaddr_str((struct sockaddr *)&sin, buf,
	    sizeof(buf)), "127.1.2.3");
	assert_true(addr_is_loopback((struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.0.2.1", &sin.sin_addr);
	assert_false(addr_is_loopback((struct sockaddr *)&sin));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6.sin6_addr);
	assert_true(addr_is_loopback((struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	assert_string_equal(addr_sockaddr_str((struct sockaddr *)&sin6, buf,
	    sizeof(buf)), "2001:db8::1");
	assert_false(addr_is_loopback((struct sockaddr *)&sin6));
	assert_string_equal(addr_sockaddr_str(&un, buf, sizeof(buf)),
	    "unknown");
	assert_false(addr_is_loopback(&un));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connects_to_a_listener),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_plaintext_only_to_loopback),
		cmocka_unit_test(test_unresolved),
		cmocka_unit_test(test_resolve_timeout),
		cmocka_unit_test(test_cancel_says_nothing),
		cmocka_unit_test(test_connect_secs),
		cmocka_unit_test(test_sockaddr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
