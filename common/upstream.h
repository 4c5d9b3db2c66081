/*
 * upstream: how smartrelay reaches its smart host, shared by the relay
 * (daemon/relay.c) and the doctor (`smartrelay test`,
 * daemon/tool/cli_doctor.c), so that what the doctor sees is what the
 * relay will see by construction: the same resolver (libevent's evdns
 * with /etc/resolv.conf and /etc/hosts, upstream_dns_new()), the same
 * order of addresses (as the resolver returns them, IPv4 and IPv6), the
 * same rule for tls = "none" (loopback addresses only: the password would
 * otherwise leave the host in clear text), and the same connect timeout
 * per address (upstream_connect_secs()).  The relay wraps the connected
 * socket in a bufferevent; the doctor, a blocking client, runs an event
 * loop only until the connection is made and then reads and writes the
 * socket itself.
 *
 * upstream_connect() resolves the host and tries each address in turn
 * until one accepts; the result comes once, from the event loop (never
 * before upstream_connect() returns), with the connected socket or what
 * went wrong with each address.  upstream_cancel() stops it without a
 * callback.  The callback carries the caller's 64-bit id.
 *
 * Error convention: 0 or a negative errno; nothing here logs.
 */
#ifndef SMARTRELAY_UPSTREAM_H
#define SMARTRELAY_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct evdns_base;
struct smtpproto_advice;
struct upstream_conn;

#define UPSTREAM_CONNECT_SECS	30	/* per address, at most */
#define UPSTREAM_REASON_MAX	512

/* Where to connect. */
struct upstream_target {
	const char *host;		/* borrowed: upstream.host */
	unsigned port;
	bool loopback_only;		/* tls = "none": loopback addresses only */
	unsigned secs;			/* connect timeout per address */
	unsigned resolve_secs;		/* for the name lookup (0: secs) */
};

/* How it ended. */
enum upstream_status {
	UPSTREAM_CONNECTED,		/* fd is connected */
	UPSTREAM_UNRESOLVED,		/* the name did not resolve */
	UPSTREAM_UNREACHED,		/* no address accepted a connection */
};

struct upstream_result {
	enum upstream_status status;
	int fd;				/* connected, non-blocking, TCP_NODELAY;
					   the callee owns it; else -1 */
	int gai_error;			/* EVUTIL_EAI_* for UPSTREAM_UNRESOLVED */
	char peer[300];			/* "host[ip]:port", the one connected or
					   the last tried */
	char ip[64];			/* its numeric address */
	char addrs[512];		/* the addresses, "ip, ip" */
	char tried[1024];		/* per failed address "ip: why", "; " */
	/* As the relay reports it: "cannot resolve HOST: ...", "cannot
	 * connect to HOST: connect to host[ip]:port: ..." ("" when
	 * connected). */
	char reason[UPSTREAM_REASON_MAX];
	unsigned nrefused, ntimedout, nunreachable, nplaintext;
	/* What to do about the failure (static table), NULL when none. */
	const struct smtpproto_advice *advice;
};

/* The result; res is valid during the call only, its fd is the callee's. */
typedef void (*upstream_cb)(void *arg, uint64_t id,
    const struct upstream_result *res);

/* The resolver the daemon and the doctor use: resolv.conf and hosts. */
struct evdns_base *upstream_dns_new(struct event_base *base);
/* The connect timeout per address for an upstream.timeout of t. */
unsigned upstream_connect_secs(unsigned t);
/*
 * Starts resolving and connecting; *cp is the attempt (for
 * upstream_cancel()), freed after the callback.  -ENOMEM.
 */
int upstream_connect(struct event_base *base, struct evdns_base *dns,
    const struct upstream_target *t, upstream_cb cb, void *arg, uint64_t id,
    struct upstream_conn **cp);
/* Stops an attempt whose callback has not come; no callback follows. */
void upstream_cancel(struct upstream_conn *c);

#endif
