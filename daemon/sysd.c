/*
 * sysd: notifications to systemd.  See sysd.h.
 */
#include "sysd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#define SYSD_STATUS_MAX		256
#define SYSD_STATUS_POLL_SEC	1

struct sysd {
	int enabled;			/* NOTIFY_SOCKET is set */
	int stopping;			/* STOPPING=1 sent: status frozen */
	uint64_t watchdog_usec;		/* ping interval, 0: none */
	struct event *watchdog;		/* owned, NULL without a watchdog */
	struct event *poll;		/* owned, NULL when not enabled */
	sysd_status_fn *status;		/* NULL: no status line */
	void *status_arg;		/* borrowed */
	char sent[SYSD_STATUS_MAX];	/* the last STATUS= sent */
};

/* Fills buf with the daemon's status line, or "" without a callback. */
static void
sysd_status_line(struct sysd *sd, char *buf, size_t bufsz)
{
	buf[0] = '\0';
	if (sd->status != NULL)
		sd->status(sd->status_arg, buf, bufsz);
}

static void
sysd_watchdogcb(evutil_socket_t fd, short what, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
}

static void
sysd_pollcb(evutil_socket_t fd, short what, void *arg)
{
	sysd_update(arg);
}

/* Adds a persistent timer firing every usec microseconds. */
static struct event *
sysd_timer(struct event_base *base, uint64_t usec, event_callback_fn cb,
    void *arg)
{
	struct timeval tv = { .tv_sec = (time_t)(usec / 1000000),
	    .tv_usec = (suseconds_t)(usec % 1000000) };
	struct event *ev;

	if ((ev = event_new(base, -1, EV_PERSIST, cb, arg)) == NULL)
		return NULL;
	if (event_add(ev, &tv) < 0) {
		event_free(ev);
		return NULL;
	}
	return ev;
}

int
sysd_open(struct event_base *base, sysd_status_fn *status, void *arg,
    struct sysd **sdp)
{
	struct sysd *sd;
	uint64_t usec = 0;
	const char *ns = getenv("NOTIFY_SOCKET");

	if ((sd = calloc(1, sizeof(*sd))) == NULL)
		return -ENOMEM;
	sd->enabled = ns != NULL && *ns != '\0';
	sd->status = status;
	sd->status_arg = arg;
	/* > 0 when WATCHDOG_USEC is set and WATCHDOG_PID is us (or unset). */
	if (sd->enabled && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* sd_watchdog_enabled(3): ping at half the period. */
		sd->watchdog_usec = usec / 2 > 0 ? usec / 2 : 1;
		sd->watchdog = sysd_timer(base, sd->watchdog_usec,
		    sysd_watchdogcb, sd);
		if (sd->watchdog == NULL)
			goto nomem;
	}
	if (sd->enabled && status != NULL) {
		sd->poll = sysd_timer(base, SYSD_STATUS_POLL_SEC * 1000000ULL,
		    sysd_pollcb, sd);
		if (sd->poll == NULL)
			goto nomem;
	}
	*sdp = sd;
	return 0;
nomem:
	sysd_free(sd);
	return -ENOMEM;
}

void
sysd_free(struct sysd *sd)
{
	if (sd == NULL)
		return;
	if (sd->watchdog != NULL)
		event_free(sd->watchdog);
	if (sd->poll != NULL)
		event_free(sd->poll);
	free(sd);
}

uint64_t
sysd_watchdog_interval(const struct sysd *sd)
{
	return sd != NULL ? sd->watchdog_usec : 0;
}

void
sysd_ready(struct sysd *sd)
{
	if (sd == NULL || !sd->enabled)
		return;
	sysd_status_line(sd, sd->sent, sizeof(sd->sent));
	sd_notifyf(0, "READY=1\nSTATUS=%s", sd->sent);
}

void
sysd_reloading(struct sysd *sd)
{
	struct timespec ts;
	unsigned long long usec;

	if (sd == NULL || !sd->enabled)
		return;
	/* systemd matches the reload to this signal by CLOCK_MONOTONIC. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	usec = (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL;
	snprintf(sd->sent, sizeof(sd->sent), "reloading configuration");
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s", usec,
	    sd->sent);
}

void
sysd_stopping(struct sysd *sd)
{
	if (sd == NULL || !sd->enabled)
		return;
	/* Later updates would overwrite the "stopping" status. */
	sd->stopping = 1;
	if (sd->poll != NULL)
		event_del(sd->poll);
	snprintf(sd->sent, sizeof(sd->sent), "stopping");
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void
sysd_update(struct sysd *sd)
{
	char line[SYSD_STATUS_MAX];

	if (sd == NULL || !sd->enabled || sd->stopping || sd->status == NULL)
		return;
	sysd_status_line(sd, line, sizeof(line));
	if (strcmp(line, sd->sent) == 0)
		return;
	memcpy(sd->sent, line, sizeof(sd->sent));
	sd_notifyf(0, "STATUS=%s", sd->sent);
}
