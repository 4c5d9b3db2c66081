/*
 * commit: group commit of new messages, off the event loop.  See commit.h.
 *
 * Jobs move from `pending` (filled by the loop) to a worker and then to
 * `finished` (emptied by the loop when the eventfd fires).  Each worker
 * fsyncs and renames its record on its own, so file fsyncs run in parallel;
 * the directory fsyncs are shared: renames are numbered, and one fsync of
 * msg/ makes every rename numbered before it started durable, so a worker
 * whose rename is already covered, or will be by the fsync under way, just
 * waits for it (classic group commit).  The workers touch nothing of
 * libevent and nothing of a session: a job carries only the writer and the
 * session's 64-bit id (the token), which the done callback uses to find the
 * session, if it still exists.  A job without a writer (commit_sync_dir())
 * is only a change to msg/ already made by the loop, a removed record,
 * numbered like a rename: it waits for the same shared fsyncs, so removals
 * and new messages share them too.
 */
#include "commit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

#include "queue.h"

#define COMMIT_THREADS	4

struct commit_job {
	struct queue_writer *w;		/* owned; NULL: commit_sync_dir() */
	commit_synced_fn *synced;	/* commit_sync_dir()'s callback */
	void *arg;			/* borrowed: its argument */
	uint64_t token;
	int result;
	TAILQ_ENTRY(commit_job) entry;
};
TAILQ_HEAD(commit_list, commit_job);

struct committer {
	struct queue *q;		/* borrowed */
	commit_done_fn *done;
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct commit_list pending;	/* guarded by lock */
	struct commit_list finished;	/* guarded by lock */
	bool stopping;			/* guarded by lock */
	uint64_t renamed;		/* changes to msg/ (renames, removals)
					 * numbered; guarded by lock */
	uint64_t durable;		/* changes covered by a dir fsync */
	uint64_t failed;		/* changes whose dir fsync failed */
	int fail_error;			/* that failure */
	bool syncing;			/* a dir fsync is under way */
	pthread_cond_t synced;		/* a dir fsync ended */
	int efd;			/* eventfd: "finished has jobs" */
	struct event *ev;		/* owned */
	pthread_t threads[COMMIT_THREADS];
	int nthreads;
};

/*
 * Waits until the directory entry made by rename number seq is durable:
 * runs a directory fsync covering every rename so far if none is under
 * way, else waits for the one under way (and perhaps runs the next).
 * Called and returns with c->lock held.  Returns 0 or a negative errno.
 */
static int
commit_dir_durable(struct committer *c, uint64_t seq)
{
	uint64_t target;
	int r;

	while (c->durable < seq && c->failed < seq) {
		if (c->syncing) {
			pthread_cond_wait(&c->synced, &c->lock);
			continue;
		}
		c->syncing = true;
		target = c->renamed;
		pthread_mutex_unlock(&c->lock);
		r = queue_sync_dir(c->q);
		pthread_mutex_lock(&c->lock);
		c->syncing = false;
		if (r == 0)
			c->durable = target;
		else {
			c->failed = target;
			c->fail_error = r;
		}
		pthread_cond_broadcast(&c->synced);
	}
	return c->durable >= seq ? 0 : c->fail_error;
}

/* Commits one job: fsync the file, rename it, share a directory fsync. */
static void
commit_one(struct committer *c, struct commit_job *j)
{
	uint64_t seq;
	int dir;

	if (j->w == NULL) {
		/* The change was made before the job was submitted. */
		pthread_mutex_lock(&c->lock);
		seq = ++c->renamed;
		j->result = commit_dir_durable(c, seq);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	j->result = queue_writer_sync(j->w);
	if (j->result == 0)
		j->result = queue_writer_publish(j->w);
	if (j->result < 0)
		return;
	pthread_mutex_lock(&c->lock);
	seq = ++c->renamed;
	dir = commit_dir_durable(c, seq);
	pthread_mutex_unlock(&c->lock);
	j->result = queue_writer_finish(j->w, dir);
}

static void *
commit_worker(void *arg)
{
	struct committer *c = arg;
	struct commit_job *j;
	uint64_t one = 1;
	ssize_t w;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (TAILQ_EMPTY(&c->pending) && !c->stopping)
			pthread_cond_wait(&c->wake, &c->lock);
		if (c->stopping)
			break;
		j = TAILQ_FIRST(&c->pending);
		TAILQ_REMOVE(&c->pending, j, entry);
		pthread_mutex_unlock(&c->lock);
		commit_one(c, j);
		pthread_mutex_lock(&c->lock);
		TAILQ_INSERT_TAIL(&c->finished, j, entry);
		/* EAGAIN only when the counter is huge: the loop wakes anyway. */
		w = write(c->efd, &one, sizeof(one));
		(void)w;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* In the loop: hands every finished commit to the callback. */
static void
commit_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct committer *c = arg;
	struct commit_list done;
	struct commit_job *j;
	uint64_t count;

	if (read(c->efd, &count, sizeof(count)) != sizeof(count))
		return;
	TAILQ_INIT(&done);
	pthread_mutex_lock(&c->lock);
	TAILQ_CONCAT(&done, &c->finished, entry);
	pthread_mutex_unlock(&c->lock);
	while ((j = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, j, entry);
		if (j->w == NULL)
			j->synced(j->arg, j->token, j->result);
		else
			c->done(c->arg, j->token, j->w, j->result);
		free(j);
	}
}

int
commit_new(struct event_base *base, struct queue *q, commit_done_fn *done,
    void *arg, struct committer **cp)
{
	struct committer *c;
	int r;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	c->q = q;
	c->done = done;
	c->arg = arg;
	TAILQ_INIT(&c->pending);
	TAILQ_INIT(&c->finished);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->wake, NULL);
	pthread_cond_init(&c->synced, NULL);
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd == -1) {
		r = -errno;
		goto fail;
	}
	c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, commit_readcb,
	    c);
	if (c->ev == NULL || event_add(c->ev, NULL) == -1) {
		r = -ENOMEM;
		goto fail;
	}
	for (; c->nthreads < COMMIT_THREADS; c->nthreads++) {
		r = -pthread_create(&c->threads[c->nthreads], NULL,
		    commit_worker, c);
		if (r < 0)
			goto fail;
	}
	*cp = c;
	return 0;
fail:
	commit_free(c);
	return r;
}

/* Queues a job for the workers; takes j. */
static void
commit_enqueue(struct committer *c, struct commit_job *j)
{
	pthread_mutex_lock(&c->lock);
	TAILQ_INSERT_TAIL(&c->pending, j, entry);
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

int
commit_submit(struct committer *c, struct queue_writer *w, uint64_t token)
{
	struct commit_job *j;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -ENOMEM;
	j->w = w;
	j->token = token;
	commit_enqueue(c, j);
	return 0;
}

int
commit_sync_dir(struct committer *c, commit_synced_fn *synced, void *arg,
    uint64_t token)
{
	struct commit_job *j;

	if ((j = calloc(1, sizeof(*j))) == NULL)
		return -ENOMEM;
	j->synced = synced;
	j->arg = arg;
	j->token = token;
	commit_enqueue(c, j);
	return 0;
}

/* Frees jobs that will never reach the callback. */
static void
commit_drop(struct commit_list *list)
{
	struct commit_job *j;

	while ((j = TAILQ_FIRST(list)) != NULL) {
		TAILQ_REMOVE(list, j, entry);
		queue_writer_free(j->w);
		free(j);
	}
}

void
commit_free(struct committer *c)
{
	int i;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->wake);
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < c->nthreads; i++)
		pthread_join(c->threads[i], NULL);
	commit_drop(&c->pending);
	commit_drop(&c->finished);
	if (c->ev != NULL)
		event_free(c->ev);
	if (c->efd != -1)
		close(c->efd);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->wake);
	pthread_cond_destroy(&c->synced);
	free(c);
}
