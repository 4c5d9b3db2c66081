/*
 * ctl: the daemon's control socket.  See ctl.h and common/ctlproto.h.
 *
 * Each connection carries one request.  ctl_readcb() collects the line
 * (bounded by CTLP_LINE_MAX), ctl_request() answers it into the output
 * buffer, and the connection is freed from a fresh event once the reply is
 * written, or at the first error or timeout.
 */
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "build-config.h"
#include "ctlproto.h"
#include "lineio.h"
#include "log.h"

#define CTL_CONN_MAX	64	/* connections at once; more are closed */
#define CTL_TIMEOUT	10	/* seconds for a whole exchange */

struct ctl_conn {
	struct ctl *ctl;		/* borrowed */
	struct bufferevent *bev;	/* owned */
	uid_t uid;			/* the peer's, from SO_PEERCRED */
	pid_t pid;
	bool done;			/* reply queued; free once written */
	bool error;			/* LIST ran out of memory */
	bool closing;			/* the free is scheduled */
	TAILQ_ENTRY(ctl_conn) entry;
};

struct ctl {
	struct event_base *base;	/* borrowed */
	struct ctl_ops ops;
	int fd;				/* the listening socket */
	struct event *ev;		/* owned: accept */
	char *spool;			/* owned */
	time_t started;
	unsigned nconn;
	TAILQ_HEAD(, ctl_conn) conns;	/* owned */
};

static void
ctl_conn_free(struct ctl_conn *cc)
{
	if (cc == NULL)
		return;
	TAILQ_REMOVE(&cc->ctl->conns, cc, entry);
	cc->ctl->nconn--;
	bufferevent_free(cc->bev);
	free(cc);
}

static void
ctl_conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	ctl_conn_free(arg);
}

/* Frees the connection from a fresh event (never on this stack). */
static void
ctl_conn_close(struct ctl_conn *cc)
{
	if (cc->closing)
		return;
	cc->closing = true;
	bufferevent_disable(cc->bev, EV_READ | EV_WRITE);
	if (event_base_once(cc->ctl->base, -1, EV_TIMEOUT, ctl_conn_free_cb,
	    cc, NULL) == -1)
		log_msg(LOG_ERR, NULL, "ctl error=\"cannot schedule free\"");
}

/* Appends one reply line. */
static void ctl_out(struct ctl_conn *, const char *, ...)
	__attribute__((format(printf, 2, 3)));

static void
ctl_out(struct ctl_conn *cc, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(cc->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\n", 1);
}

/* True when the peer may change the queue: root or our own user. */
static bool
ctl_privileged(const struct ctl_conn *cc)
{
	return cc->uid == 0 || cc->uid == geteuid();
}

static void
ctl_do_status(struct ctl_conn *cc)
{
	struct ctlp_status st = { 0 };
	char buf[2048];
	int n;

	snprintf(st.version, sizeof(st.version), "%s", SMARTRELAY_VERSION);
	st.pid = (long)getpid();
	st.started = cc->ctl->started;
	if (cc->ctl->ops.status != NULL)
		cc->ctl->ops.status(cc->ctl->ops.arg, &st);
	if ((n = ctlp_status_format(&st, buf, sizeof(buf))) < 0) {
		ctl_out(cc, "ERR %d status too long", EX_SOFTWARE);
		return;
	}
	evbuffer_add(bufferevent_get_output(cc->bev), buf, (size_t)n);
	ctl_out(cc, "OK");
}

/* FLUSH and DELETE: one line per id, ERR 67 when one was unknown. */
static void
ctl_do_ids(struct ctl_conn *cc, enum ctlp_verb verb, char **ids, size_t n)
{
	const struct ctl_ops *ops = &cc->ctl->ops;
	const char *done = verb == CTLP_FLUSH ? "flushed" : "deleted";
	size_t i, unknown = 0, failed = 0;
	int r;

	if (!ctl_privileged(cc)) {
		log_msg(LOG_NOTICE, NULL, "ctl refused command=%s uid=%u "
		    "pid=%ld", verb == CTLP_FLUSH ? "FLUSH" : "DELETE",
		    (unsigned)cc->uid, (long)cc->pid);
		ctl_out(cc, "ERR %d only root and the daemon's user may "
		    "change the queue", EX_NOPERM);
		return;
	}
	if (verb == CTLP_FLUSH && n == 0) {
		log_msg(LOG_INFO, NULL, "flush all by=%u", (unsigned)cc->uid);
		if (ops->flush != NULL)
			ops->flush(ops->arg, NULL);
		ctl_out(cc, "OK");
		return;
	}
	if (n == 0) {
		ctl_out(cc, "ERR %d DELETE needs queue ids", EX_USAGE);
		return;
	}
	for (i = 0; i < n; i++) {
		if (verb == CTLP_FLUSH)
			r = ops->flush != NULL ? ops->flush(ops->arg, ids[i]) :
			    -ENOSYS;
		else
			r = ops->del != NULL ? ops->del(ops->arg, ids[i],
			    cc->uid) : -ENOSYS;
		if (r == 0)
			ctl_out(cc, "%s %s", done, ids[i]);
		else if (r == -ENOENT) {
			ctl_out(cc, "unknown %s", ids[i]);
			unknown++;
		} else {
			ctl_out(cc, "error %s %s", ids[i], strerror(-r));
			failed++;
		}
	}
	if (failed > 0)
		ctl_out(cc, "ERR %d %zu of %zu could not be %s", EX_TEMPFAIL,
		    failed, n, done);
	else if (unknown > 0)
		ctl_out(cc, "ERR %d %zu unknown queue id%s", EX_NOUSER,
		    unknown, unknown == 1 ? "" : "s");
	else
		ctl_out(cc, "OK");
}

/* One message of a LIST reply; bodies are never shown. */
static void
ctl_list_one(void *ctx, const struct queue_msg *m, const struct queue_stub *st,
    bool inflight, const char *reason)
{
	struct ctl_conn *cc = ctx;
	char *lines;

	if (cc->error)
		return;
	if ((lines = ctlp_list_format(m, st, inflight, reason)) == NULL) {
		cc->error = true;
		return;
	}
	evbuffer_add(bufferevent_get_output(cc->bev), lines, strlen(lines));
	free(lines);
}

/*
 * LIST: the queue for anyone who can connect (mailq for any local user, as
 * Postfix's showq), envelopes only, never message contents.
 */
static void
ctl_do_list(struct ctl_conn *cc)
{
	if (cc->ctl->ops.list != NULL)
		cc->ctl->ops.list(cc->ctl->ops.arg, ctl_list_one, cc);
	if (cc->error)
		ctl_out(cc, "ERR %d out of memory", EX_TEMPFAIL);
	else
		ctl_out(cc, "OK");
}

/* Answers one request line. */
static void
ctl_request(struct ctl_conn *cc, char *line)
{
	static char *ids[CTLP_MAX_ARGS];
	enum ctlp_verb verb;
	const char *bad;
	size_t n;
	int r;

	r = ctlp_parse_request(line, &verb, ids, CTLP_MAX_ARGS, &n, &bad);
	if (r == -E2BIG) {
		ctl_out(cc, "ERR %d at most %d ids per request", EX_USAGE,
		    CTLP_MAX_ARGS);
		return;
	}
	if (r == -EINVAL) {
		ctl_out(cc, "ERR %d not a queue id: %.40s", EX_DATAERR, bad);
		return;
	}
	if (r < 0) {
		ctl_out(cc, "ERR %d unknown command", EX_USAGE);
		return;
	}
	switch (verb) {
	case CTLP_STATUS:
		ctl_do_status(cc);
		break;
	case CTLP_FLUSH:
	case CTLP_DELETE:
		ctl_do_ids(cc, verb, ids, n);
		break;
	case CTLP_MAILDROP:
		if (cc->ctl->ops.maildrop != NULL)
			cc->ctl->ops.maildrop(cc->ctl->ops.arg);
		ctl_out(cc, "OK");
		break;
	case CTLP_LIST:
		ctl_do_list(cc);
		break;
	}
}

static void
ctl_readcb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *cc = arg;
	char *line;
	size_t len;
	enum lineio_status st;

	if (cc->done || (line = malloc(CTLP_LINE_MAX + 1)) == NULL)
		return;
	st = lineio_get(bufferevent_get_input(bev), CTLP_LINE_MAX, NULL, line,
	    &len);
	if (st == LINEIO_AGAIN) {
		free(line);
		return;
	}
	if (st == LINEIO_TOO_LONG)
		ctl_out(cc, "ERR %d request too long", EX_USAGE);
	else if (strlen(line) != len)
		ctl_out(cc, "ERR %d NUL byte in request", EX_USAGE);
	else
		ctl_request(cc, line);
	free(line);
	cc->done = true;
	bufferevent_disable(bev, EV_READ);
}

/* The reply is out: close. */
static void
ctl_writecb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *cc = arg;

	if (cc->done)
		ctl_conn_close(cc);
}

static void
ctl_eventcb(struct bufferevent *bev, short what, void *arg)
{
	ctl_conn_close(arg);
}

/* A client connected: learn who it is and wait for its request. */
static void
ctl_acceptcb(evutil_socket_t lfd, short what, void *arg)
{
	struct ctl *c = arg;
	struct timeval tv = { .tv_sec = CTL_TIMEOUT };
	struct ctl_conn *cc;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int fd;

	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1)
		return;
	if (c->nconn >= CTL_CONN_MAX ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1 ||
	    (cc = calloc(1, sizeof(*cc))) == NULL) {
		close(fd);
		return;
	}
	cc->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (cc->bev == NULL) {
		close(fd);
		free(cc);
		return;
	}
	cc->ctl = c;
	cc->uid = cred.uid;
	cc->pid = cred.pid;
	TAILQ_INSERT_TAIL(&c->conns, cc, entry);
	c->nconn++;
	bufferevent_setcb(cc->bev, ctl_readcb, ctl_writecb, ctl_eventcb, cc);
	bufferevent_set_timeouts(cc->bev, &tv, &tv);
	bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
}

/* Removes spool/ctl (through a short path when the spool's is long). */
static void
ctl_unlink(const char *spool)
{
	struct sockaddr_un sun;
	socklen_t len;
	int dirfd;

	if (ctlp_sockaddr(spool, &sun, &len, &dirfd) < 0)
		return;
	unlink(sun.sun_path);
	if (dirfd != -1)
		close(dirfd);
}

/* Binds and listens on spool/ctl, replacing a dead socket. */
static int
ctl_listen(const char *spool, gid_t group, int *fdp)
{
	struct sockaddr_un sun;
	socklen_t len;
	int fd = -1, probe, dirfd, r;

	if ((r = ctlp_connect(spool, &probe)) == 0) {
		close(probe);
		return -EADDRINUSE;
	}
	if ((r = ctlp_sockaddr(spool, &sun, &len, &dirfd)) < 0)
		return r;
	if (unlink(sun.sun_path) == -1 && errno != ENOENT) {
		r = -errno;
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sun, len) == -1) {
		r = -errno;
		goto out;
	}
	/* Before listen(): nobody connects while the mode is the umask's. */
	if ((group != (gid_t)-1 && chown(sun.sun_path, (uid_t)-1, group) ==
	    -1 && errno != EPERM) || chmod(sun.sun_path, 0660) == -1 ||
	    listen(fd, 16) == -1) {
		r = -errno;
		goto out;
	}
	*fdp = fd;
	fd = -1;
	r = 0;
out:
	if (fd != -1)
		close(fd);
	if (dirfd != -1)
		close(dirfd);
	return r;
}

int
ctl_open(struct event_base *base, const char *spool, gid_t group,
    const struct ctl_ops *ops, struct ctl **cp, char **err)
{
	struct ctl *c;
	int r;

	*cp = NULL;
	*err = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	c->fd = -1;
	c->base = base;
	c->ops = *ops;
	c->started = time(NULL);
	TAILQ_INIT(&c->conns);
	if ((c->spool = strdup(spool)) == NULL) {
		free(c);
		return -ENOMEM;
	}
	if ((r = ctl_listen(spool, group, &c->fd)) < 0) {
		if (r == -EADDRINUSE)
			r = asprintf(err, "control socket %s/%s: another "
			    "smartrelayd is running on this spool", spool,
			    CTLP_SOCKET_NAME) == -1 ? -ENOMEM : -EADDRINUSE;
		else if (asprintf(err, "control socket %s/%s: %s", spool,
		    CTLP_SOCKET_NAME, strerror(-r)) == -1)
			*err = NULL;
		free(c->spool);
		free(c);
		return r;
	}
	c->ev = event_new(base, c->fd, EV_READ | EV_PERSIST, ctl_acceptcb, c);
	if (c->ev == NULL || event_add(c->ev, NULL) == -1) {
		ctl_free(c);
		return -ENOMEM;
	}
	*cp = c;
	return 0;
}

void
ctl_free(struct ctl *c)
{
	struct ctl_conn *cc;

	if (c == NULL)
		return;
	while ((cc = TAILQ_FIRST(&c->conns)) != NULL)
		ctl_conn_free(cc);
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->fd != -1) {
		close(c->fd);
		ctl_unlink(c->spool);
	}
	free(c->spool);
	free(c);
}
