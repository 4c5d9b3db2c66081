/*
 * pickup: moves local submissions from the maildrop into the queue.
 *
 * The sendmail interface of the smartrelay tool (setgid to the submitters'
 * group) leaves complete records in SPOOL/maildrop (see common/queue.c and
 * docs/spool.md).  The pickup treats each as untrusted input: it parses the
 * record strictly and within bounds, checks the envelope (addresses,
 * recipient count, size), normalises the body to CRLF lines, refuses NUL
 * bytes, prepends a Received: header naming the submitting uid (the file's
 * owner), and commits a new record through an ordinary queue writer.  Only
 * after that commit is the maildrop file removed, so a crash in between
 * duplicates a message rather than losing it.  Each new message goes to the
 * same callback as messages received over SMTP.
 *
 * It runs at start-up (before READY), when the tool announces a
 * submission over the control socket, and every PICKUP_INTERVAL seconds as
 * a fallback.  A run lists the maildrop, then picks up one record per event
 * (a zero timeout), so that sessions and the watchdog go on in between; a
 * kick during a run only asks for another scan after it.  A record that is
 * bad is moved to the spool's corrupt/ and logged; one that cannot be
 * copied now (disk full) stays for the next run.
 */
#ifndef SMARTRELAY_PICKUP_H
#define SMARTRELAY_PICKUP_H

#include <stddef.h>
#include <sys/types.h>

#define PICKUP_INTERVAL	5	/* seconds between fallback scans */

struct cfg;
struct event_base;
struct queue;
struct queue_msg;
struct pickup;

/* A message was committed into the queue; the callee owns m. */
typedef void pickup_queued_fn(void *arg, struct queue_msg *m);

/*
 * Creates the maildrop if needed (owned by us, QUEUE_MAILDROP_MODE) and
 * starts the fallback timer.  cfg is borrowed (see pickup_set_cfg()).
 */
int pickup_open(struct event_base *base, const struct cfg *cfg,
    struct queue *queue, pickup_queued_fn *queued, void *arg,
    struct pickup **pp, char **err);
void pickup_free(struct pickup *p);
/* The configuration changed (reload). */
void pickup_set_cfg(struct pickup *p, const struct cfg *cfg);
/* The group of the maildrop: who may submit (and use the control socket). */
gid_t pickup_group(const struct pickup *p);
/*
 * At start-up: picks up the maildrop now, at most PICKUP_BATCH records (the
 * event loop does the rest); returns how many messages were queued.
 */
size_t pickup_run(struct pickup *p);
/* Schedules a scan from the event loop (a submission was announced). */
void pickup_kick(struct pickup *p);
/* Removes a record still waiting in the maildrop: 0, -ENOENT, -errno. */
int pickup_remove(struct pickup *p, const char *id);

#endif
