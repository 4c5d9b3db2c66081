/*
 * ctl: the daemon's control socket (docs/cli.md, "The control socket").
 *
 * A unix stream socket at SPOOL/ctl through which the smartrelay tool asks
 * for the status, flushes and deletes messages, and announces maildrop
 * submissions.  The protocol (one request line, data lines, a final OK or
 * ERR line, then close) is in common/ctlproto.h.  The peer's credentials
 * come from SO_PEERCRED: FLUSH and DELETE are refused unless the peer is
 * root or runs as the daemon's own user.  What the commands do is up to
 * the daemon, through struct ctl_ops.
 *
 * The socket is mode 0660 with the group of the maildrop, so that the
 * setgid tool of any local user can reach it.  At start an existing socket
 * that answers means another daemon owns the spool: ctl_open() fails with
 * -EADDRINUSE; a dead one is replaced.
 */
#ifndef SMARTRELAY_CTL_H
#define SMARTRELAY_CTL_H

#include <stdbool.h>
#include <sys/types.h>

struct ctlp_status;
struct event_base;
struct ctl;
struct queue_msg;
struct queue_stub;

/* One queued message for LIST (see ctlp_list_format()). */
typedef void ctl_list_fn(void *ctx, const struct queue_msg *m,
    const struct queue_stub *st, bool inflight, const char *reason);

struct ctl_ops {
	/* Fills st (version, pid and started are already set). */
	void (*status)(void *arg, struct ctlp_status *st);
	/* Retry id now (NULL: everything): 0, or -ENOENT. */
	int (*flush)(void *arg, const char *id);
	/* Removes id from the scheduler and the spool: 0, -ENOENT, -errno. */
	int (*del)(void *arg, const char *id, uid_t by);
	/* A submission is waiting in the maildrop. */
	void (*maildrop)(void *arg);
	/* Calls out for every queued message, with its last deferral reason. */
	void (*list)(void *arg, ctl_list_fn *out, void *ctx);
	void *arg;
};

/* Listens on spool/ctl; group (-1: leave it) owns the socket file. */
int ctl_open(struct event_base *base, const char *spool, gid_t group,
    const struct ctl_ops *ops, struct ctl **cp, char **err);
/*
 * Closes the socket, removes its file and drops open connections; call it
 * once the event loop has stopped.
 */
void ctl_free(struct ctl *c);

#endif
