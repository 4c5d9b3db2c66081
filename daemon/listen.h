/*
 * listen: the listening sockets.  Binds every `listen` address of the
 * configuration (IPv4 and IPv6, IPV6_V6ONLY so both families can share a
 * port), or takes the sockets systemd passes (LISTEN_FDS), and hands each
 * accepted connection to smtp_accept().
 *
 * Error convention: 0 or a negative errno, with a message in *err.
 */
#ifndef SMARTRELAY_LISTEN_H
#define SMARTRELAY_LISTEN_H

#include <stddef.h>

struct smtp_server;
struct listen_set;

/* Opens the sockets: systemd's when it passed some, else cfg->listen. */
int listen_open(struct smtp_server *srv, struct listen_set **lsp,
    char **err);
/* How many sockets, and whether they came from systemd. */
size_t listen_count(const struct listen_set *ls);
int listen_activated(const struct listen_set *ls);
/* Stops accepting and closes the sockets; accepts NULL. */
void listen_close(struct listen_set *ls);

#endif
