/*
 * sysd: the daemon's conversation with systemd (docs/systemd.md), through
 * sd_notify(3).
 *
 * READY=1 once the queue is recovered and the sockets listen, RELOADING=1
 * (with MONOTONIC_USEC=, as Type=notify-reload expects) while a SIGHUP
 * reload runs, STOPPING=1 on SIGTERM.  STATUS= carries a one-line summary
 * ("queue=3 upstream=ok") that the daemon builds through a callback; it is
 * re-read every second and after sysd_update(), and sent only when it
 * changed.  When the service manager asks for a watchdog (WATCHDOG_USEC=),
 * WATCHDOG=1 is sent from the event loop at half the period, so a stuck loop
 * stops the pings and systemd restarts us.
 *
 * Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op.
 *
 * Error convention: 0 or a negative errno; nothing here logs.
 */
#ifndef SMARTRELAY_SYSD_H
#define SMARTRELAY_SYSD_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sysd;

/* Writes the current status line ("queue=N upstream=STATE") into buf. */
typedef void sysd_status_fn(void *arg, char *buf, size_t bufsz);

/*
 * Sets up the notifier on base: the status poll and, when WATCHDOG_USEC is
 * set for this process, the watchdog timer.  status may be NULL.
 */
int sysd_open(struct event_base *base, sysd_status_fn *status, void *arg,
    struct sysd **sdp);
/* Removes the timers; accepts NULL. */
void sysd_free(struct sysd *sd);

/* The watchdog ping interval in microseconds, 0 when there is none. */
uint64_t sysd_watchdog_interval(const struct sysd *sd);

/* READY=1 with the current STATUS=: start-up or a reload is complete. */
void sysd_ready(struct sysd *sd);
/* RELOADING=1 with MONOTONIC_USEC=: a reload has begun. */
void sysd_reloading(struct sysd *sd);
/* STOPPING=1: a graceful stop has begun. */
void sysd_stopping(struct sysd *sd);
/* Re-reads the status line now and sends it if it changed. */
void sysd_update(struct sysd *sd);

#endif
