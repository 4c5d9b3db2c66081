/*
 * smartrelayd: the daemon.  Loads the configuration, recovers the queue,
 * opens the listening sockets, tells systemd it is ready and runs the event
 * loop until SIGTERM.  It always stays in the foreground.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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
#include "commit.h"
#include "ctl.h"
#include "ctlproto.h"
#include "listen.h"
#include "log.h"
#include "pickup.h"
#include "queue.h"
#include "scheduler.h"
#include "smtp.h"
#include "smtpproto.h"
#include "sysd.h"
#include "token.h"

#define STOP_GRACE_SECONDS	10

struct daemon {
	struct cfg *cfg;		/* owned */
	struct queue *queue;		/* owned */
	struct event_base *base;	/* owned */
	struct listen_set *listen;	/* owned */
	struct smtp_server smtp;
	struct committer *commit;	/* owned: group commit of new mail */
	struct sched *sched;		/* owned: the queue and the relay */
	struct pickup *pickup;		/* owned: local submissions */
	struct ctl *ctl;		/* owned: the control socket */
	struct event *sigterm;		/* owned */
	struct event *sigint;		/* owned */
	struct event *sighup;		/* owned */
	struct event *stop_timer;	/* owned */
	struct sysd *sysd;		/* owned */
	const char *cfg_path;		/* borrowed: argv, re-read on SIGHUP */
	int stopping;			/* SIGTERM/SIGINT seen */
	int exit_status;		/* main's return value */
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

	sched_add(d->sched, m);
	d->nqueued = sched_count(d->sched);
	sysd_update(d->sysd);
}

/*
 * Start-up recovery (docs/spool.md, "Recovery"): the directory listing and
 * the journals give every queued message and when it is due; the records
 * themselves are read by the scheduler after READY.
 */
static int
daemon_recover(struct daemon *d)
{
	struct queue_stub *stubs;
	char *err = NULL;
	size_t n, i;
	int r;

	if ((r = queue_scan(d->queue, &stubs, &n, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "recovery error=\"%s\"",
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_IOERR;
	}
	for (i = 0; i < n && r == 0; i++)
		r = sched_add_stub(d->sched, &stubs[i]);
	free(stubs);
	if (r < 0) {
		log_msg(LOG_ERR, NULL, "recovery error=\"%s\"", strerror(-r));
		return EX_OSERR;
	}
	d->nqueued = sched_count(d->sched);
	log_msg(LOG_INFO, NULL, "recovered messages=%zu", d->nqueued);
	return 0;
}

/* The upstream state for STATUS=: ok, retrying, paused-... */
static const char *
daemon_upstream_state(const struct daemon *d)
{
	struct sched_status st;

	sched_status(d->sched, &st);
	return sched_strupstream(st.state);
}

/* The systemd STATUS= line: "queue=N upstream=STATE". */
static void
daemon_status(void *arg, char *buf, size_t bufsz)
{
	struct daemon *d = arg;

	d->nqueued = sched_count(d->sched);
	snprintf(buf, bufsz, "queue=%zu upstream=%s", d->nqueued,
	    daemon_upstream_state(d));
}

/* ---- the control socket (ctl.h) and the maildrop (pickup.h) ---- */

/* STATUS: the OAuth token's state, never the token (docs/oauth.md). */
static void
daemon_ctl_token(const struct daemon *d, struct ctlp_status *st)
{
	struct token_info ti;
	char *p;

	if (d->cfg->upstream.auth != CFG_AUTH_XOAUTH2)
		return;
	token_info(sched_token(d->sched), &ti);
	st->oauth = true;
	st->token_valid_until = ti.valid_until;
	st->token_last_refresh = ti.last_refresh;
	st->token_requests = ti.requests;
	snprintf(st->token_status, sizeof(st->token_status), "%s",
	    ti.last_error[0] != '\0' ? oauth_status_name(ti.last_status) :
	    ti.refreshing ? "refreshing" : "ok");
	snprintf(st->token_error, sizeof(st->token_error), "%s",
	    ti.last_error);
	for (p = st->token_error; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/* STATUS: the scheduler's view of the queue and the upstream. */
static void
daemon_ctl_status(void *arg, struct ctlp_status *st)
{
	static const enum ctlp_upstream map[] = {
		[SCHED_UP_OK] = CTLP_UP_OK,
		[SCHED_UP_RETRYING] = CTLP_UP_RETRYING,
		[SCHED_UP_PAUSED_CREDENTIALS] = CTLP_UP_PAUSED_AUTH,
		[SCHED_UP_PAUSED_QUOTA] = CTLP_UP_PAUSED_QUOTA,
	};
	struct daemon *d = arg;
	struct sched_status ss;

	sched_status(d->sched, &ss);
	st->queued = ss.messages;
	st->oldest = ss.oldest;
	st->last_delivery = ss.last_delivery;
	st->upstream = (unsigned)ss.state < sizeof(map) / sizeof(map[0]) ?
	    map[ss.state] : CTLP_UP_UNKNOWN;
	st->next_attempt = ss.state != SCHED_UP_OK ? ss.retry_at : 0;
	snprintf(st->reply, sizeof(st->reply), "%s",
	    ss.reply != NULL ? ss.reply : "");
	snprintf(st->advice, sizeof(st->advice), "%s",
	    ss.advice != NULL ? ss.advice->key : "");
	daemon_ctl_token(d, st);
}

/* FLUSH: retry now (the scheduler also lifts a pause). */
static int
daemon_ctl_flush(void *arg, const char *id)
{
	struct daemon *d = arg;
	int r;

	if ((r = sched_flush(d->sched, id)) < 0)
		return r;
	log_msg(LOG_INFO, id, "flush due=%d", r);
	return 0;
}

/*
 * DELETE: the scheduler forgets the message (refused with -EBUSY while an
 * upstream transaction is using it), then the record and its journal go;
 * a message still in the maildrop too.
 */
static int
daemon_ctl_delete(void *arg, const char *id, uid_t by)
{
	struct daemon *d = arg;
	int r;

	if ((r = sched_remove(d->sched, id)) == -EBUSY)
		return r;
	d->nqueued = sched_count(d->sched);
	r = queue_remove(d->queue, id);
	if (r == -ENOENT)
		r = pickup_remove(d->pickup, id);
	if (r == 0)
		log_msg(LOG_NOTICE, id, "deleted by=%u", (unsigned)by);
	return r;
}

/* MAILDROP: the tool stored a submission. */
static void
daemon_ctl_maildrop(void *arg)
{
	struct daemon *d = arg;

	pickup_kick(d->pickup);
}

/* LIST: what the scheduler holds, with a reason for each waiting message. */
struct daemon_list {
	ctl_list_fn *out;
	void *ctx;
	const char *upstream;		/* borrowed: the upstream's problem */
};

static void
daemon_list_one(void *arg, const struct queue_msg *m,
    const struct queue_stub *st, bool inflight)
{
	struct daemon_list *l = arg;
	const char *reason = m != NULL ? m->last_reply : NULL;

	/* A pause or an unreachable upstream is recorded per message
	 * nowhere (docs/relay.md); it is every waiting message's reason. */
	if (!inflight && l->upstream != NULL && (reason == NULL ||
	    m->attempts == 0))
		reason = l->upstream;
	l->out(l->ctx, m, st, inflight, reason);
}

static void
daemon_ctl_list(void *arg, ctl_list_fn *out, void *ctx)
{
	struct daemon *d = arg;
	struct sched_status ss;
	struct daemon_list l = { out, ctx, NULL };

	sched_status(d->sched, &ss);
	if (ss.state != SCHED_UP_OK && ss.reply != NULL && *ss.reply != '\0')
		l.upstream = ss.reply;
	sched_foreach(d->sched, daemon_list_one, &l);
}

/*
 * The local side: moves what waits in the maildrop into the queue (before
 * READY), then opens the control socket.
 */
static int
daemon_local_start(struct daemon *d)
{
	const struct ctl_ops ops = {
		.status = daemon_ctl_status,
		.flush = daemon_ctl_flush,
		.del = daemon_ctl_delete,
		.maildrop = daemon_ctl_maildrop,
		.list = daemon_ctl_list,
		.arg = d,
	};
	char *err = NULL;
	size_t n;
	int r;

	if ((r = pickup_open(d->base, d->cfg, d->queue, daemon_queued, d,
	    &d->pickup, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "maildrop error=\"%s\"",
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_CANTCREAT;
	}
	if ((n = pickup_run(d->pickup)) > 0)
		log_msg(LOG_INFO, NULL, "maildrop picked_up=%zu", n);
	if ((r = ctl_open(d->base, d->cfg->spool, pickup_group(d->pickup),
	    &ops, &d->ctl, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "error=\"%s\"",
		    err != NULL ? err : strerror(-r));
		free(err);
		return r == -EADDRINUSE ? EX_TEMPFAIL : EX_CANTCREAT;
	}
	return 0;
}

static void
daemon_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	log_msg(LOG_WARNING, NULL, "stop grace period over, sessions=%u",
	    d->smtp.nsessions);
	event_base_loopexit(d->base, NULL);
}

/*
 * After a stop signal, inbound and relay sessions report when their last
 * one is gone; once both are, the loop ends (no polling: the grace timer
 * is the only other way out).
 */
static void
daemon_drained(void *arg)
{
	struct daemon *d = arg;

	if (d->stopping && d->smtp.nsessions == 0 &&
	    sched_drained(d->sched))
		event_base_loopexit(d->base, NULL);
}

/* SIGTERM/SIGINT: stop accepting, end sessions, leave once they are gone. */
static void
daemon_signal_stop(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	struct timeval tv = { .tv_sec = STOP_GRACE_SECONDS };

	sysd_stopping(d->sysd);
	d->stopping = 1;
	log_msg(LOG_INFO, NULL, "stopping signal=%s",
	    sig == SIGTERM ? "TERM" : "INT");
	listen_close(d->listen);
	d->listen = NULL;
	smtp_shutdown(&d->smtp, daemon_drained, d);
	sched_stop(d->sched, daemon_drained, d);
	event_del(d->sigterm);
	event_del(d->sigint);
	event_del(d->sighup);
	evtimer_add(d->stop_timer, &tv);
}


/* True when both configurations list the same `listen` addresses. */
static int
daemon_same_listen(const struct cfg *a, const struct cfg *b)
{
	size_t i;

	if (a->nlisten != b->nlisten)
		return 0;
	for (i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i], b->listen[i]) != 0)
			return 0;
	return 1;
}

/*
 * Binds the `listen` addresses of ncfg in place of the current ones.  The
 * old sockets close first (the same address cannot be bound twice); when
 * the new ones fail, the old ones are bound again.  Returns 0 or -errno.
 */
static int
daemon_rebind(struct daemon *d, const struct cfg *ncfg)
{
	const struct cfg *old = d->smtp.cfg;
	char *err = NULL, q[1024];
	int r, r2;

	listen_close(d->listen);
	d->listen = NULL;
	d->smtp.cfg = ncfg;
	if ((r = listen_open(&d->smtp, &d->listen, &err)) == 0)
		return 0;
	log_msg(LOG_ERR, NULL, "reload error=\"%s\"",
	    log_quote(q, sizeof(q), err != NULL ? err : strerror(-r)));
	free(err);
	err = NULL;
	d->smtp.cfg = old;
	if ((r2 = listen_open(&d->smtp, &d->listen, &err)) < 0) {
		/* No sockets at all: exit so that systemd restarts us. */
		log_msg(LOG_CRIT, NULL, "listen error=\"%s\" exiting",
		    log_quote(q, sizeof(q), err != NULL ? err : strerror(-r2)));
		free(err);
		d->exit_status = EX_UNAVAILABLE;
		event_base_loopexit(d->base, NULL);
	}
	return r;
}

/* Logs why a new configuration was refused. */
static void
daemon_reload_errors(const struct cfg_errors *errs)
{
	char q[1024];
	size_t i;

	for (i = 0; i < errs->n; i++)
		log_msg(LOG_ERR, NULL, "reload error=\"%s\"",
		    log_quote(q, sizeof(q), errs->msgs[i]));
}

/*
 * Loads the configuration again and puts it in force, or keeps the old one
 * when the new one is invalid.  Sessions read srv->cfg afresh at every
 * command and keep no pointers into it, so the old one can go at once.
 */
static int
daemon_reload(struct daemon *d)
{
	struct cfg_errors errs = { 0 };
	struct cfg *ncfg = NULL;
	char *spool, *err = NULL;

	if (cfg_load(d->cfg_path, &ncfg, &errs) < 0) {
		daemon_reload_errors(&errs);
		cfg_errors_clear(&errs);
		return -EINVAL;
	}
	cfg_errors_clear(&errs);
	if (!listen_activated(d->listen) &&
	    !daemon_same_listen(d->cfg, ncfg) &&
	    daemon_rebind(d, ncfg) < 0) {
		cfg_free(ncfg);
		return -EADDRNOTAVAIL;
	}
	if (strcmp(ncfg->spool, d->cfg->spool) != 0) {
		/* The queue stays open on the old spool: keep its path. */
		log_msg(LOG_WARNING, NULL, "reload spool=%s kept: a new "
		    "spool=%s needs a restart", d->cfg->spool, ncfg->spool);
		spool = ncfg->spool;
		ncfg->spool = d->cfg->spool;
		d->cfg->spool = spool;
	}
	if (sched_set_cfg(d->sched, ncfg, &err) < 0) {
		log_msg(LOG_ERR, NULL, "reload tls error=\"%s\" kept=previous "
		    "TLS settings", err != NULL ? err : "?");
		free(err);
	}
	d->smtp.cfg = ncfg;
	pickup_set_cfg(d->pickup, ncfg);
	cfg_free(d->cfg);
	d->cfg = ncfg;
	return 0;
}

/* SIGHUP: reload the configuration (docs/configuration.md), telling systemd about it. */
static void
daemon_signal_reload(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	sysd_reloading(d->sysd);
	log_msg(LOG_INFO, NULL, "reloading config=%s", d->cfg_path);
	if (daemon_reload(d) == 0)
		log_msg(LOG_INFO, NULL, "reloaded config=%s", d->cfg_path);
	else
		log_msg(LOG_ERR, NULL, "reload failed config=%s "
		    "kept=previous", d->cfg_path);
	sysd_ready(d->sysd);
}

static int
daemon_start(struct daemon *d)
{
	char *err = NULL;
	int r;

	if ((r = queue_open(d->cfg->spool, &d->queue, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "spool=%s error=\"%s\"", d->cfg->spool,
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_CANTCREAT;
	}
	/* The scheduler takes the recovered messages: it comes first. */
	if ((d->base = event_base_new()) == NULL)
		return EX_OSERR;
	if ((r = sched_new(d->base, d->cfg, d->queue, &d->sched, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "relay error=\"%s\"",
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_CONFIG;
	}
	if ((r = daemon_recover(d)) != 0)
		return r;

	smtp_server_init(&d->smtp);
	d->smtp.base = d->base;
	d->smtp.cfg = d->cfg;
	d->smtp.queue = d->queue;
	d->smtp.queued = daemon_queued;
	d->smtp.queued_arg = d;
	if ((r = commit_new(d->base, d->queue, smtp_commit_done, &d->smtp,
	    &d->commit)) < 0) {
		log_msg(LOG_ERR, NULL, "committer error=\"%s\"", strerror(-r));
		return EX_OSERR;
	}
	d->smtp.committer = d->commit;
	sched_set_committer(d->sched, d->commit);
	if ((r = daemon_local_start(d)) != 0)
		return r;
	if ((r = listen_open(&d->smtp, &d->listen, &err)) < 0) {
		log_msg(LOG_ERR, NULL, "error=\"%s\"",
		    err != NULL ? err : strerror(-r));
		free(err);
		return EX_UNAVAILABLE;
	}
	d->sigterm = evsignal_new(d->base, SIGTERM, daemon_signal_stop, d);
	d->sigint = evsignal_new(d->base, SIGINT, daemon_signal_stop, d);
	d->sighup = evsignal_new(d->base, SIGHUP, daemon_signal_reload, d);
	d->stop_timer = evtimer_new(d->base, daemon_stop_timeout, d);
	if (d->sigterm == NULL || d->sigint == NULL || d->sighup == NULL ||
	    d->stop_timer == NULL)
		return EX_OSERR;
	if (sysd_open(d->base, daemon_status, d, &d->sysd) < 0)
		return EX_OSERR;
	if (sysd_watchdog_interval(d->sysd) > 0)
		log_msg(LOG_INFO, NULL, "watchdog interval=%" PRIu64 "ms",
		    sysd_watchdog_interval(d->sysd) / 1000);
	evsignal_add(d->sigterm, NULL);
	evsignal_add(d->sigint, NULL);
	evsignal_add(d->sighup, NULL);
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
	if (d->sighup != NULL)
		event_free(d->sighup);
	sysd_free(d->sysd);
	if (d->stop_timer != NULL)
		event_free(d->stop_timer);
	commit_free(d->commit);
	ctl_free(d->ctl);
	pickup_free(d->pickup);
	sched_free(d->sched);
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
	d.cfg_path = path;
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
	sysd_ready(d.sysd);
	event_base_dispatch(d.base);
	log_msg(LOG_INFO, NULL, "stopped");
	daemon_free(&d);
	return d.exit_status;
}
