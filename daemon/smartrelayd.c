/*
 * smartrelayd: the daemon.  Loads the configuration, recovers the queue,
 * opens the listening sockets, tells systemd it is ready and runs the event
 * loop until SIGTERM.  It always stays in the foreground.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "build-config.h"
#include "cfg.h"
#include "listen.h"
#include "log.h"
#include "queue.h"
#include "smtp.h"

#define STOP_GRACE_SECONDS	10

struct daemon {
	struct cfg *cfg;		/* owned */
	struct queue *queue;		/* owned */
	struct event_base *base;	/* owned */
	struct listen_set *listen;	/* owned */
	struct smtp_server smtp;
	struct event *sigterm;		/* owned */
	struct event *sigint;		/* owned */
	struct event *stop_timer;	/* owned */
	size_t nqueued;			/* messages in the queue */
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: smartrelayd [-c FILE] [-t|--check-config] "
	    "[-d|--debug] [-V|--version] [-h|--help]\n"
	    "  -c, --config FILE   configuration (default %s)\n"
	    "  -t, --check-config  validate the configuration and exit\n"
	    "  -d, --debug         log SMTP dialogues (AUTH payloads masked)\n"
	    "  -V, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n",
	    SMARTRELAY_DEFAULT_CONFIG);
}

/* Prints every collected problem, one "file:line: message" per line. */
static void
print_errors(const struct cfg_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->msgs[i]);
}

/* --check-config: syntax, schema and the checks that touch the system. */
static int
check_config(const char *path)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = NULL;
	int bad;

	if (cfg_load(path, &cfg, &errs) == 0)
		cfg_check_runtime(cfg, &errs);
	print_errors(&errs);
	bad = errs.n > 0 || cfg == NULL;
	if (!bad)
		printf("%s: configuration ok\n", path);
	cfg_errors_clear(&errs);
	cfg_free(cfg);
	return bad ? EX_CONFIG : 0;
}

/* A message was committed by a session. */
static void
daemon_queued(void *arg, struct queue_msg *m)
{
	struct daemon *d = arg;

	d->nqueued++;
	queue_msg_free(m);
}

/* A message was found in the spool at start-up. */
static void
daemon_recovered(struct queue_msg *m, void *arg)
{
	struct daemon *d = arg;

	d->nqueued++;
	queue_msg_free(m);
}

static void
daemon_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	log_msg(LOG_WARNING, NULL, "stop grace period over, sessions=%u",
	    d->smtp.nsessions);
	event_base_loopexit(d->base, NULL);
}

/* SIGTERM/SIGINT: stop accepting, end sessions, leave once they are gone. */
static void
daemon_signal_stop(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct timeval tv = { .tv_sec = STOP_GRACE_SECONDS };

	sd_notify(0, "STOPPING=1");
	log_msg(LOG_INFO, NULL, "stopping signal=%s",
	    sig == SIGTERM ? "TERM" : "INT");
	listen_close(d->listen);
	d->listen = NULL;
	smtp_shutdown(&d->smtp);
	event_del(d->sigterm);
	event_del(d->sigint);
	evtimer_add(d->stop_timer, &tv);
}

/* Ends the loop once every session is gone after a stop signal. */
static void
daemon_check_done(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	if (d->listen == NULL && d->smtp.nsessions == 0)
		event_base_loopexit(d->base, NULL);
}

static int
daemon_start(struct daemon *d)
{
	char *err = NULL;
	size_t ncorrupt = 0;
	int r;

	if ((r = queue_open(d->cfg->spool, &d->queue, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "spool=%s error=\"%s\"", d->cfg->spool,
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_CANTCREAT;
	}
	r = queue_recover(d->queue, daemon_recovered, d, &ncorrupt, &err);
	if (r < 0) {
		log_msg(LOG_ERR, NULL, "recovery error=\"%s\"",
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_IOERR;
	}
	if (ncorrupt > 0)
		log_msg(LOG_WARNING, NULL, "recovery corrupt=%zu moved to "
		    "%s/corrupt", ncorrupt, d->cfg->spool);
	log_msg(LOG_INFO, NULL, "recovered messages=%zu", d->nqueued);

	if ((d->base = event_base_new()) == NULL)
		return EX_OSERR;
	smtp_server_init(&d->smtp);
	d->smtp.base = d->base;
	d->smtp.cfg = d->cfg;
	d->smtp.queue = d->queue;
	d->smtp.queued = daemon_queued;
	d->smtp.queued_arg = d;
	if ((r = listen_open(&d->smtp, &d->listen, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "error=\"%s\"",
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_UNAVAILABLE;
	}
	d->sigterm = evsignal_new(d->base, SIGTERM, daemon_signal_stop, d);
	d->sigint = evsignal_new(d->base, SIGINT, daemon_signal_stop, d);
	d->stop_timer = evtimer_new(d->base, daemon_stop_timeout, d);
	if (d->sigterm == NULL || d->sigint == NULL || d->stop_timer == NULL)
		return EX_OSERR;
	evsignal_add(d->sigterm, NULL);
	evsignal_add(d->sigint, NULL);
	return 0;
}

static void
daemon_free(struct daemon *d)
{
	listen_close(d->listen);
	if (d->sigterm != NULL)
		event_free(d->sigterm);
	if (d->sigint != NULL)
		event_free(d->sigint);
	if (d->stop_timer != NULL)
		event_free(d->stop_timer);
	if (d->base != NULL)
		event_base_free(d->base);
	queue_close(d->queue);
	cfg_free(d->cfg);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "debug", no_argument, NULL, 'd' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = SMARTRELAY_DEFAULT_CONFIG;
	struct cfg_errors errs = { 0 };
	struct daemon d = { 0 };
	struct event *tick;
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	int ch, check = 0, debug = 0, r;

	while ((ch = getopt_long(argc, argv, "c:tdVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'd':
			debug = 1;
			break;
		case 'V':
			printf("smartrelayd %s\n", SMARTRELAY_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EX_USAGE;
	}
	if (check)
		return check_config(path);

	log_init("smartrelayd", debug);
	if (cfg_load(path, &d.cfg, &errs) < 0) {
		print_errors(&errs);
		cfg_errors_clear(&errs);
		return EX_CONFIG;
	}
	signal(SIGPIPE, SIG_IGN);
	/* Over a file size limit, write() must fail (EFBIG), not kill us. */
	signal(SIGXFSZ, SIG_IGN);
	if ((r = daemon_start(&d)) != 0) {
		daemon_free(&d);
		return r;
	}
	log_msg(LOG_INFO, NULL, "ready version=%s queue=%zu sockets=%zu",
	    SMARTRELAY_VERSION, d.nqueued, listen_count(d.listen));
	sd_notifyf(0, "READY=1\nSTATUS=queue=%zu", d.nqueued);
	tick = event_new(d.base, -1, EV_PERSIST, daemon_check_done, &d);
	event_add(tick, &tv);
	event_base_dispatch(d.base);
	event_free(tick);
	log_msg(LOG_INFO, NULL, "stopped");
	daemon_free(&d);
	return 0;
}
