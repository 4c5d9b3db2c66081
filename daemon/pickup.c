/*
 * pickup: the maildrop into the queue.  See pickup.h.
 */
#include "pickup.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "addr.h"
#include "cfg.h"
#include "log.h"
#include "queue.h"

#define PICKUP_BATCH		256	/* records at start-up, before READY */
#define PICKUP_UNREADABLE	60	/* seconds before an unreadable one goes */
#define PICKUP_STALE_TMP	86400	/* for maildrop/tmp files we cannot lock */
#define PICKUP_CHUNK		16384

struct pickup {
	struct event_base *base;	/* borrowed */
	const struct cfg *cfg;		/* borrowed */
	struct queue *queue;		/* borrowed: the real queue */
	struct queue *md;		/* owned: the maildrop */
	pickup_queued_fn *queued;
	void *arg;
	struct event *timer;		/* owned: the fallback scan */
	struct event *kick;		/* owned: the next step of a run */
	gid_t group;			/* of maildrop/ */
	/* The run in progress: one record per event, so the loop goes on. */
	char (*ids)[QUEUE_ID_LEN + 1];	/* owned; NULL: no run */
	size_t nids, next;
	bool again;			/* kicked during the run: scan again */
};

/* Copy state of one record: the body is normalised on the way. */
struct pickup_copy {
	struct queue_writer *w;		/* borrowed */
	uint64_t size;			/* body bytes written */
	bool cr;			/* the last byte written was a CR */
	bool bol;			/* output is at a line start */
	bool nul;			/* a NUL byte was seen */
};

/* Why an envelope is refused, or NULL when it is acceptable. */
static const char *
pickup_check(const struct pickup *p, const struct queue_msg *m)
{
	size_t i;

	if (*m->from != '\0' && addr_check_mailbox(m->from) < 0)
		return "bad sender address";
	if (m->nrcpt == 0)
		return "no recipients";
	if (m->nrcpt > p->cfg->limits.recipients)
		return "too many recipients";
	for (i = 0; i < m->nrcpt; i++)
		if (addr_check_mailbox(m->rcpt[i].addr) < 0)
			return "bad recipient address";
	if (m->size > 2 * p->cfg->limits.message_size + 2)
		return "message too big";
	return NULL;
}

/*
 * Writes buf with every line end made CRLF (bare CR and bare LF alike):
 * the relay relies on stored bodies having no other line ends.
 */
static int
pickup_write(struct pickup_copy *c, const char *buf, size_t len)
{
	char out[2 * PICKUP_CHUNK];
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (buf[i] == '\0')
			c->nul = true;
		if (buf[i] == '\n' && c->cr) {
			c->cr = false;
			continue;
		}
		c->cr = buf[i] == '\r';
		if (buf[i] == '\r' || buf[i] == '\n') {
			out[n++] = '\r';
			out[n++] = '\n';
			c->bol = true;
		} else {
			out[n++] = buf[i];
			c->bol = false;
		}
	}
	c->size += n;
	return n > 0 ? queue_writer_write(c->w, out, n) : 0;
}

/* Copies the body from fd; the message must end with a line end. */
static int
pickup_copy_body(struct pickup_copy *c, int fd)
{
	char buf[PICKUP_CHUNK];
	ssize_t n;
	int r;

	c->bol = true;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		if (n == 0)
			break;
		if ((r = pickup_write(c, buf, (size_t)n)) < 0)
			return r;
	}
	if (!c->bol)
		return pickup_write(c, "\r\n", 2);
	return 0;
}

/* The trace header for a local submission (RFC 5321 §4.4). */
static int
pickup_received(struct pickup *p, struct queue_writer *w,
    const struct queue_msg *m, uid_t uid, time_t now)
{
	char date[48], hdr[2048], forpart[QUEUE_MAX_ADDR + 16] = "";
	struct tm tm;
	int n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (m->nrcpt == 1 && strlen(m->rcpt[0].addr) < ADDR_MAX)
		snprintf(forpart, sizeof(forpart), "\r\n\tfor <%s>",
		    m->rcpt[0].addr);
	n = snprintf(hdr, sizeof(hdr), "Received: by %s (smartrelay, from "
	    "userid %u)\r\n\tid %s%s;\r\n\t%s\r\n", p->cfg->hostname,
	    (unsigned)uid, queue_writer_id(w), forpart, date);
	if (n < 0 || (size_t)n >= sizeof(hdr))
		return -ENAMETOOLONG;
	return queue_writer_write(w, hdr, (size_t)n);
}

/*
 * Copies one checked maildrop record into the queue and commits it.
 * Returns 0, -EBADMSG (content refused: *why says why) or -errno.
 */
static int
pickup_copy(struct pickup *p, const struct queue_msg *m, int fd, uid_t uid,
    struct queue_writer **wp, const char **why)
{
	struct pickup_copy c = { 0 };
	struct queue_dsn_rcpt *dsn;
	const char **rcpts;
	unsigned flags = m->flags & (QUEUE_F_8BITMIME | QUEUE_F_SMTPUTF8);
	time_t now = time(NULL);
	size_t i;
	int r;

	rcpts = calloc(m->nrcpt, sizeof(*rcpts));
	dsn = calloc(m->nrcpt, sizeof(*dsn));
	if (rcpts == NULL || dsn == NULL) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < m->nrcpt; i++) {
		rcpts[i] = m->rcpt[i].addr;
		/* The DSN request (sendmail -N/-R/-V, or -bs) goes along. */
		dsn[i].notify = m->rcpt[i].notify;
		dsn[i].orcpt = m->rcpt[i].orcpt;
		if (!addr_is_ascii(rcpts[i]))
			flags |= QUEUE_F_SMTPUTF8;
	}
	if (!addr_is_ascii(m->from))
		flags |= QUEUE_F_SMTPUTF8;
	if ((r = queue_writer_new(p->queue, wp)) < 0)
		goto out;
	c.w = *wp;
	if ((r = queue_writer_dsn(c.w, m->ret, m->envid, dsn)) < 0 ||
	    (r = queue_writer_envelope(c.w, m->from, rcpts, m->nrcpt, flags,
	    now)) < 0 || (r = pickup_received(p, c.w, m, uid, now)) < 0 ||
	    (r = pickup_copy_body(&c, fd)) < 0)
		goto out;
	if (c.nul) {
		*why = "NUL byte in the message";
		r = -EBADMSG;
	} else if (c.size > p->cfg->limits.message_size) {
		*why = "message too big";
		r = -EBADMSG;
	} else
		r = queue_writer_commit(c.w);
out:
	free(rcpts);
	free(dsn);
	return r;
}

/*
 * Moves a refused maildrop record to corrupt/, saying why: the tool told its
 * user the message was accepted, so it is kept for the administrator.
 */
static void
pickup_reject(struct pickup *p, const char *mdid, uid_t uid, const char *why)
{
	char dst[QUEUE_ID_LEN + 16];
	int r;

	if ((r = queue_maildrop_move_aside(p->md, mdid, dst, sizeof(dst))) < 0)
		log_msg(LOG_ERR, NULL, "maildrop=%s uid=%u rejected "
		    "reason=\"%s\" error=\"cannot move to %s/corrupt: %s\"",
		    mdid, (unsigned)uid, why, p->cfg->spool, strerror(-r));
	else
		log_msg(LOG_WARNING, NULL, "maildrop=%s uid=%u rejected "
		    "reason=\"%s\" moved=%s/corrupt/%s", mdid, (unsigned)uid,
		    why, p->cfg->spool, dst);
}

/*
 * A record that cannot be loaded: refused at once when it is malformed, but
 * one we may not read yet gets a little time first (it may be in the making
 * by a tool of another version).
 */
static void
pickup_unloadable(struct pickup *p, const char *mdid, int r)
{
	struct stat st;
	char why[128];

	if (queue_maildrop_stat(p->md, mdid, &st) < 0)
		return;
	if ((r == -EACCES || r == -EPERM) && S_ISREG(st.st_mode) &&
	    st.st_mtime + PICKUP_UNREADABLE >= time(NULL))
		return;
	snprintf(why, sizeof(why), "%s", r == -EBADMSG ? "malformed record, "
	    "or not a regular file with one link" : r == -ENOTSUP ?
	    "record format version not supported" : strerror(-r));
	pickup_reject(p, mdid, st.st_uid, why);
}

/*
 * Moves one maildrop record into the queue.  Returns 1 when a message was
 * queued, 0 when the record was refused or is gone, -errno when it must
 * wait for a later run (the queue cannot store it now).
 */
static int
pickup_one(struct pickup *p, const char *mdid)
{
	struct queue_writer *w = NULL;
	struct queue_msg *m = NULL, *nm;
	const char *why = NULL;
	size_t envmax = (p->cfg->limits.recipients + 16) *
	    (QUEUE_MAX_ADDR + 8);
	struct stat st;
	char id[QUEUE_ID_LEN + 1], fa[LOG_ADDR_MAX];
	int fd = -1, r;

	r = queue_maildrop_load(p->md, mdid, envmax, &m, &fd, &st);
	if (r == -ENOENT)
		return 0;
	if (r == -EACCES || r == -EPERM || r == -EBADMSG || r == -ENOTSUP) {
		pickup_unloadable(p, mdid, r);
		return 0;
	}
	if (r < 0) {
		log_msg(LOG_ERR, NULL, "maildrop=%s error=\"%s\"", mdid,
		    strerror(-r));
		return r;
	}
	if ((why = pickup_check(p, m)) != NULL) {
		pickup_reject(p, mdid, st.st_uid, why);
		r = 0;
		goto out;
	}
	r = pickup_copy(p, m, fd, st.st_uid, &w, &why);
	if (r == -EBADMSG) {
		pickup_reject(p, mdid, st.st_uid, why);
		r = 0;
		goto out;
	}
	if (r < 0) {
		log_msg(LOG_ERR, w != NULL ? queue_writer_id(w) : NULL,
		    "maildrop=%s spool error=\"%s\"", mdid, strerror(-r));
		goto out;
	}
	memcpy(id, queue_writer_id(w), sizeof(id));
	/* Committed: a crash from here on duplicates, never loses. */
	if ((r = queue_remove(p->md, mdid)) < 0 && r != -ENOENT)
		log_msg(LOG_ERR, id, "maildrop=%s remove error=\"%s\" "
		    "(the message may be queued twice)", mdid, strerror(-r));
	log_msg(LOG_INFO, id, "queued from=%s size=%" PRIu64 " nrcpt=%zu "
	    "uid=%u maildrop=%s", log_addr(fa, sizeof(fa), m->from),
	    queue_writer_size(w), m->nrcpt, (unsigned)st.st_uid, mdid);
	if ((r = queue_writer_take(w, &nm)) == 0 ||
	    (r = queue_load(p->queue, id, &nm)) == 0)
		p->queued(p->arg, nm);
	else
		log_msg(LOG_ERR, id, "load error=\"%s\"", strerror(-r));
	r = 1;
out:
	queue_writer_free(w);
	queue_msg_free(m);
	if (fd != -1)
		close(fd);
	return r;
}

/*
 * The next step once the loop has polled: a zero timeout, not
 * event_active(), which libevent would run again before any I/O.
 */
static void
pickup_schedule(struct pickup *p)
{
	const struct timeval now = { 0, 0 };

	if (event_add(p->kick, &now) == -1)
		log_msg(LOG_ERR, NULL, "maildrop error=\"cannot schedule a "
		    "scan\"");
}

/*
 * One step of a run: a scan starts it, then each step picks up one record.
 * Returns 1 when a message was queued.
 */
static size_t
pickup_step(struct pickup *p)
{
	int r = 0;

	if (p->ids == NULL) {
		p->next = p->nids = 0;
		p->again = false;
		if ((r = queue_maildrop_clean(p->md, PICKUP_STALE_TMP)) < 0)
			log_msg(LOG_WARNING, NULL, "maildrop clean "
			    "error=\"%s\"", strerror(-r));
		if ((r = queue_list(p->md, &p->ids, &p->nids)) < 0) {
			log_msg(LOG_ERR, NULL, "maildrop scan error=\"%s\"",
			    strerror(-r));
			return 0;
		}
		r = 0;
	}
	if (p->next < p->nids)
		r = pickup_one(p, p->ids[p->next++]);
	if (r >= 0 && p->next < p->nids) {
		pickup_schedule(p);
		return (size_t)r;
	}
	/* The run ends; when the queue cannot store, the timer tries again. */
	free(p->ids);
	p->ids = NULL;
	if (r >= 0 && p->again)
		pickup_schedule(p);
	return r > 0 ? 1 : 0;
}

size_t
pickup_run(struct pickup *p)
{
	size_t queued = 0, i;

	for (i = 0; i < PICKUP_BATCH; i++) {
		queued += pickup_step(p);
		if (p->ids == NULL)
			break;
	}
	return queued;
}

static void
pickup_cb(evutil_socket_t fd, short what, void *arg)
{
	pickup_step(arg);
}

static void
pickup_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	pickup_kick(arg);
}

void
pickup_kick(struct pickup *p)
{
	if (p->ids != NULL)
		p->again = true;
	else
		pickup_schedule(p);
}

int
pickup_open(struct event_base *base, const struct cfg *cfg,
    struct queue *queue, pickup_queued_fn *queued, void *arg,
    struct pickup **pp, char **err)
{
	struct timeval tv = { .tv_sec = PICKUP_INTERVAL };
	struct pickup *p;
	struct stat st;
	int r;

	*pp = NULL;
	*err = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -ENOMEM;
	p->base = base;
	p->cfg = cfg;
	p->queue = queue;
	p->queued = queued;
	p->arg = arg;
	p->group = (gid_t)-1;
	if ((r = queue_maildrop_open(cfg->spool, true, &p->md, err)) < 0)
		goto fail;
	if (queue_maildrop_stat(p->md, ".", &st) == 0)
		p->group = st.st_gid;
	p->timer = event_new(base, -1, EV_PERSIST, pickup_timer_cb, p);
	p->kick = event_new(base, -1, 0, pickup_cb, p);
	if (p->timer == NULL || p->kick == NULL ||
	    event_add(p->timer, &tv) == -1) {
		r = -ENOMEM;
		goto fail;
	}
	*pp = p;
	return 0;
fail:
	pickup_free(p);
	return r;
}

void
pickup_free(struct pickup *p)
{
	if (p == NULL)
		return;
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->kick != NULL)
		event_free(p->kick);
	free(p->ids);
	queue_close(p->md);
	free(p);
}

void
pickup_set_cfg(struct pickup *p, const struct cfg *cfg)
{
	p->cfg = cfg;
}

gid_t
pickup_group(const struct pickup *p)
{
	return p->group;
}

int
pickup_remove(struct pickup *p, const char *id)
{
	return queue_remove(p->md, id);
}
