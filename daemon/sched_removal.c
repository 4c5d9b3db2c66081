/*
 * sched_removal: removing messages that are done from the spool
 * (docs/spool.md, "Removing a message").  The record is unlinked in the
 * loop; the fsync of msg/ that makes this durable runs on the commit
 * workers (daemon/commit.c), shared with inbound commits and with every
 * removal made before it; only then are the deliveries logged and the
 * journal unlinked.  Meanwhile the message is SM_REMOVING (scheduler.c).
 */
#include "scheduler_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "commit.h"
#include "log.h"
#include "queue.h"

/* A fast delivery's result, kept until its removal is durable. */
struct sched_delivery {
	struct relay_result res;	/* res.rcpt points at rcpt[] */
	struct relay_rcpt_result rcpt[];
};

/* A copy of res (and its recipients) that outlives the callback. */
struct sched_delivery *
sched_delivery_new(const struct relay_result *res)
{
	struct sched_delivery *d;

	d = malloc(sizeof(*d) + res->nrcpt * sizeof(d->rcpt[0]));
	if (d == NULL)
		return NULL;
	d->res = *res;
	memcpy(d->rcpt, res->rcpt, res->nrcpt * sizeof(d->rcpt[0]));
	d->res.rcpt = d->rcpt;
	return d;
}

/*
 * A removal is over.  When its record's unlink is durable (r == 0), the
 * deliveries it stands for are logged and the journal goes.  When the
 * directory fsync failed, a crash could bring the record back: the
 * outcomes of a fast delivery are journaled as without the fast path,
 * and the journal stays (a record that comes back finds them there; an
 * orphan journal goes at the next start).
 */
static void
sched_removed_one(struct sched *s, struct sched_msg *e, int r)
{
	struct queue_msg *m = e->m;
	struct sched_delivery *d = e->dlv;
	size_t k;
	int rj;

	if (r < 0)
		log_msg(LOG_ERR, m->id, "spool error=\"%s\" removal not "
		    "durable, journal kept", strerror(-r));
	for (k = 0; d != NULL && k < d->res.nrcpt; k++) {
		if (r < 0)
			sched_record_rcpt(s, m, &d->rcpt[k], &d->res);
		else
			sched_log_delivered(s, m, &d->rcpt[k], &d->res);
	}
	if (r == 0) {
		if ((rj = queue_remove_journal(s->queue, m->id)) < 0)
			log_msg(LOG_ERR, m->id, "spool error=\"%s\"",
			    strerror(-rj));
		log_msg(LOG_INFO, m->id, "removed");
	}
	sched_msg_free(s, e);
}

static void sched_sync_start(struct sched *);

/*
 * Directory sync number gen is over (r: its result): completes every
 * removal it covers, starts the next sync for those that came after.
 */
static void
sched_synced(void *arg, uint64_t gen, int r)
{
	struct sched *s = arg;
	struct sched_msg *e;

	s->syncing = false;
	while ((e = TAILQ_FIRST(&s->removing)) != NULL && e->sync_gen <= gen) {
		TAILQ_REMOVE(&s->removing, e, entry);
		s->nremoving--;
		sched_removed_one(s, e, r);
	}
	sched_sync_start(s);
	sched_check_stopped(s);
}

/*
 * Has the records unlinked so far made durable: one directory fsync on
 * the committer's threads (shared with inbound commits), or in the loop
 * when there is no committer or no memory for the job.  While one is
 * under way, later removals wait for the next, so under load one fsync
 * covers many removals.
 */
static void
sched_sync_start(struct sched *s)
{
	uint64_t gen;

	if (s->syncing || TAILQ_EMPTY(&s->removing))
		return;
	gen = s->sync_gen++;
	if (s->committer != NULL &&
	    commit_sync_dir(s->committer, sched_synced, s, gen) == 0) {
		s->syncing = true;
		return;
	}
	sched_synced(s, gen, queue_sync_dir(s->queue));
}

/*
 * Removes a message that is done from the spool: its record is unlinked
 * now, the directory fsync that makes this durable comes later
 * (sched_sync_start), and only then is the removal logged and the journal
 * unlinked (queue.c, "Removal").  Meanwhile e is SM_REMOVING: never sent
 * again, not listed, not deleted, and a stop waits for it.  e is no longer
 * the caller's, unless a negative errno comes back.
 */
int
sched_unlink(struct sched *s, struct sched_msg *e)
{
	int r;

	if ((r = queue_remove_record(s->queue, e->st.id)) < 0 && r != -ENOENT)
		return r;
	e->where = SM_REMOVING;
	e->sync_gen = s->sync_gen;
	TAILQ_INSERT_TAIL(&s->removing, e, entry);
	s->nremoving++;
	sched_sync_start(s);
	return 0;
}

/* Removals a stop did not wait for (out of time) end here, in the loop. */
void
sched_removals_finish(struct sched *s)
{
	s->committer = NULL;
	if (!TAILQ_EMPTY(&s->removing))
		sched_synced(s, s->sync_gen, queue_sync_dir(s->queue));
}

void
sched_set_committer(struct sched *s, struct committer *c)
{
	s->committer = c;
}
