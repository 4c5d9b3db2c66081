/*
 * commit: group commit of new messages, off the event loop.
 *
 * A 250 after DATA waits for two fsyncs (the record, then msg/).  Done
 * inline, they stall every session for each message.  Here sessions hand
 * their finished writers to a few worker threads, which fsync and rename
 * records in parallel and share the fsyncs of msg/ between all renames made
 * before each (queue_writer_sync/publish, queue_sync_dir,
 * queue_writer_finish).  A 250 still means exactly what docs/smtp.md says: the
 * callback runs in the loop thread only after the record and the directory
 * are on stable storage.  The scheduler's removals use the same directory
 * fsyncs (commit_sync_dir()), so that they too stay off the loop.
 *
 * Error convention: 0 or a negative errno.
 */
#ifndef SMARTRELAY_COMMIT_H
#define SMARTRELAY_COMMIT_H

#include <stdint.h>

struct event_base;
struct queue;
struct queue_writer;
struct committer;

/*
 * Called in the loop thread when a commit ended: result is 0 (durable) or
 * a negative errno.  The callee owns w (free it with queue_writer_free).
 */
typedef void commit_done_fn(void *arg, uint64_t token,
    struct queue_writer *w, int result);

int commit_new(struct event_base *base, struct queue *q, commit_done_fn *done,
    void *arg, struct committer **cp);
/* Takes w and commits it; done() gets token back.  -ENOMEM: not taken. */
int commit_submit(struct committer *c, struct queue_writer *w,
    uint64_t token);
/*
 * Called in the loop thread once every change to msg/ made before the
 * commit_sync_dir() that asked for it is durable (result 0), or the fsync
 * failed (a negative errno).
 */
typedef void commit_synced_fn(void *arg, uint64_t token, int result);
/*
 * Makes the changes to msg/ made so far (records unlinked by
 * queue_remove_record()) durable with a directory fsync shared with the
 * commits; synced() gets token back.  -ENOMEM: not taken.
 */
int commit_sync_dir(struct committer *c, commit_synced_fn *synced, void *arg,
    uint64_t token);
/*
 * Stops the workers after the batches they are in; commits not started are
 * dropped (their temporary files removed: none was acknowledged), and so
 * are directory syncs, without their callbacks.
 */
void commit_free(struct committer *c);

#endif
