/*
 * listen: the listening sockets.  See listen.h.
 */
#include "listen.h"

#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <systemd/sd-daemon.h>

#include "cfg.h"
#include "log.h"
#include "smtp.h"

#define LISTEN_MAX	32
#define LISTEN_BACKLOG	256

struct listen_set {
	struct evconnlistener *l[LISTEN_MAX];	/* owned */
	size_t n;
	int activated;			/* sockets came from systemd */
	struct smtp_server *srv;	/* borrowed */
	struct event *resume;		/* owned: re-enables after EMFILE */
};

/* Sets *err to a formatted message, or NULL when memory is short. */
static void __attribute__((format(printf, 2, 3)))
listen_err(char **err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) == -1)
		*err = NULL;
	va_end(ap);
}

static void
listen_acceptcb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listen_set *ls = arg;

	smtp_accept(ls->srv, fd, sa, (socklen_t)salen);
}

static void
listen_resumecb(evutil_socket_t fd, short what, void *arg)
{
	struct listen_set *ls = arg;
	size_t i;

	for (i = 0; i < ls->n; i++)
		evconnlistener_enable(ls->l[i]);
}

/* accept() failed (EMFILE, ENFILE...): pause a second rather than spin. */
static void
listen_errorcb(struct evconnlistener *l, void *arg)
{
	struct listen_set *ls = arg;
	struct timeval tv = { .tv_sec = 1 };
	size_t i;

	log_msg(LOG_WARNING, NULL, "accept error=\"%s\" pausing=1s",
	    strerror(errno));
	for (i = 0; i < ls->n; i++)
		evconnlistener_disable(ls->l[i]);
	evtimer_add(ls->resume, &tv);
}

/* Wraps a listening fd in an evconnlistener. */
static int
listen_add(struct listen_set *ls, int fd, char **err)
{
	struct evconnlistener *l;

	if (ls->n == LISTEN_MAX) {
		close(fd);
		listen_err(err, "more than %d listening sockets", LISTEN_MAX);
		return -EMFILE;
	}
	evutil_make_socket_nonblocking(fd);
	l = evconnlistener_new(ls->srv->base, listen_acceptcb, ls,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l == NULL) {
		close(fd);
		listen_err(err, "cannot listen: out of memory");
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(l, listen_errorcb);
	ls->l[ls->n++] = l;
	return 0;
}

/* Binds one "host:port" entry (every address it resolves to). */
static int
listen_bind(struct listen_set *ls, const char *spec, char **err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	char host[256], port[8];
	unsigned portnum;
	int fd, one = 1, r;

	if (cfg_parse_listen(spec, host, sizeof(host), &portnum) < 0) {
		listen_err(err, "listen \"%s\": bad address", spec);
		return -EINVAL;
	}
	snprintf(port, sizeof(port), "%u", portnum);
	r = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints,
	    &res);
	if (r != 0) {
		listen_err(err, "listen \"%s\": %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd == -1)
			goto fail;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			    sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
		    listen(fd, LISTEN_BACKLOG) == -1) {
			close(fd);
			goto fail;
		}
		if ((r = listen_add(ls, fd, err)) < 0) {
			freeaddrinfo(res);
			return r;
		}
		log_msg(LOG_INFO, NULL, "listening on=%s", spec);
	}
	freeaddrinfo(res);
	return 0;
fail:
	r = -errno;
	listen_err(err, "listen \"%s\": %s", spec, strerror(errno));
	freeaddrinfo(res);
	return r;
}

int
listen_open(struct smtp_server *srv, struct listen_set **lsp, char **err)
{
	struct listen_set *ls;
	int n, i, r = 0;
	size_t k;

	if ((ls = calloc(1, sizeof(*ls))) == NULL)
		return -ENOMEM;
	ls->srv = srv;
	ls->resume = evtimer_new(srv->base, listen_resumecb, ls);
	if (ls->resume == NULL) {
		free(ls);
		return -ENOMEM;
	}
	n = sd_listen_fds(1);
	if (n > 0) {
		ls->activated = 1;
		for (i = 0; i < n && r == 0; i++)
			r = listen_add(ls, SD_LISTEN_FDS_START + i, err);
		if (r == 0)
			log_msg(LOG_INFO, NULL, "listening sockets=%d "
			    "from=systemd", n);
	} else {
		for (k = 0; k < srv->cfg->nlisten && r == 0; k++)
			r = listen_bind(ls, srv->cfg->listen[k], err);
	}
	if (r < 0) {
		listen_close(ls);
		return r;
	}
	*lsp = ls;
	return 0;
}

size_t
listen_count(const struct listen_set *ls)
{
	return ls->n;
}

int
listen_activated(const struct listen_set *ls)
{
	return ls->activated;
}

void
listen_close(struct listen_set *ls)
{
	size_t i;

	if (ls == NULL)
		return;
	for (i = 0; i < ls->n; i++)
		evconnlistener_free(ls->l[i]);
	if (ls->resume != NULL)
		event_free(ls->resume);
	free(ls);
}
