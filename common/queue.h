/*
 * queue: the durable spool (docs/spool.md).  Shared by the daemon and the
 * smartrelay tool; the on-disk format is documented at the top of queue.c
 * and in docs/spool.md.
 *
 * A message is written through a struct queue_writer into a temporary file
 * and becomes visible only through queue_writer_commit(): file fsync, rename
 * into place, directory fsync.  After commit returns 0 the message survives
 * kill -9 and power loss; before, it leaves no trace after queue_recover().
 * Per-recipient outcomes and the schedule are appended to a per-message
 * state journal with fsync, so a restart never re-sends to a recipient that
 * already succeeded.
 *
 * Error convention: 0 or a negative errno; nothing here logs.  Functions
 * that take char **err set it (malloc'd) where a human message helps.
 * Different writers may commit concurrently from different threads.
 */
#ifndef SMARTRELAY_QUEUE_H
#define SMARTRELAY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define QUEUE_ID_LEN		16	/* hex digits */
#define QUEUE_FORMAT_VERSION	1

/* Message flags, from the client's MAIL parameters and the body seen. */
#define QUEUE_F_8BITMIME	0x01	/* BODY=8BITMIME or 8-bit bytes seen */
#define QUEUE_F_SMTPUTF8	0x02	/* client asked SMTPUTF8 */
#define QUEUE_F_DSN		0x04	/* a delivery status notification we made */

/*
 * The DSN request (RFC 3461, docs/smtp.md): NOTIFY per recipient (0: not
 * given, which means FAILURE and DELAY), RET per message.  The bits are
 * those of dsnparam.h.
 */
#define QUEUE_NOTIFY_NEVER	0x01
#define QUEUE_NOTIFY_SUCCESS	0x02
#define QUEUE_NOTIFY_FAILURE	0x04
#define QUEUE_NOTIFY_DELAY	0x08

enum queue_ret {
	QUEUE_RET_UNSET,		/* not given: the headers */
	QUEUE_RET_FULL,
	QUEUE_RET_HDRS,
};

enum queue_rcpt_state {
	QUEUE_RCPT_PENDING,
	QUEUE_RCPT_DELIVERED,
	QUEUE_RCPT_FAILED,
};

struct queue_rcpt {
	char *addr;			/* owned: the address relayed to */
	enum queue_rcpt_state state;
	time_t updated;			/* time of the last state change */
	char *reply;			/* owned, NULL: last upstream reply */
	unsigned notify;		/* QUEUE_NOTIFY_*, 0: not given */
	char *orcpt;			/* owned, NULL: ORCPT "type;xtext" */
	bool relayed;			/* delivered to an upstream without DSN:
					 * a "relayed" notice is due */
};

struct queue_msg {
	char id[QUEUE_ID_LEN + 1];
	time_t arrival;
	char *from;			/* owned: "" for the null sender <> */
	struct queue_rcpt *rcpt;	/* owned array */
	size_t nrcpt;
	unsigned flags;			/* QUEUE_F_* */
	uint64_t size;			/* body bytes */
	uint64_t body_offset;		/* where the body starts in the file */
	unsigned attempts;		/* delivery attempts so far */
	time_t next_attempt;		/* 0: as soon as possible */
	char *last_reply;		/* owned, NULL: last reply of any attempt */
	enum queue_ret ret;		/* RET= */
	char *envid;			/* owned, NULL: ENVID= (xtext) */
	time_t delay_notice;		/* when the "delayed" notice was queued;
					 * 0: not yet */
	bool journal_synced;		/* this process fsynced msg/ since the
					 * journal exists (queue.c, "Room for
					 * the outcome"); false when loaded */
};

/* One recipient's DSN request, for queue_writer_dsn(). */
struct queue_dsn_rcpt {
	unsigned notify;		/* QUEUE_NOTIFY_*, 0: not given */
	const char *orcpt;		/* borrowed, NULL: not given */
};

struct queue;
struct queue_writer;

/* Input bounds, enforced when writing and when parsing a record. */
#define QUEUE_MAX_RCPT		10000	/* recipients per message */
#define QUEUE_MAX_ADDR		1024	/* bytes of one address */
#define QUEUE_MAX_REPLY		1000	/* bytes of a stored upstream reply */

/* Opens (creating if needed, mode 0700) the spool directory tree. */
int queue_open(const char *dir, struct queue **qp, char **err);
void queue_close(struct queue *q);
const char *queue_dir(const struct queue *q);

/* Makes a fresh id: time-ordered, unique within this spool. */
void queue_new_id(char id[QUEUE_ID_LEN + 1]);
bool queue_id_valid(const char *id);

/* Starts a new message in a temporary file. */
int queue_writer_new(struct queue *q, struct queue_writer **wp);
const char *queue_writer_id(const struct queue_writer *w);
/* Writes the envelope; called once, before any body byte. */
int queue_writer_envelope(struct queue_writer *w, const char *from,
    const char *const *rcpts, size_t nrcpt, unsigned flags, time_t arrival);
/*
 * Sets the DSN request written with the envelope; called before
 * queue_writer_envelope(), never needed when there is none.  rcpt (NULL:
 * none) has one entry per envelope recipient; envid, rcpt and its strings
 * are borrowed until the envelope is written, which checks them (-EINVAL).
 */
int queue_writer_dsn(struct queue_writer *w, enum queue_ret ret,
    const char *envid, const struct queue_dsn_rcpt *rcpt);
/* Appends body bytes (buffered; the buffer is small and bounded). */
int queue_writer_write(struct queue_writer *w, const void *buf, size_t len);
uint64_t queue_writer_size(const struct queue_writer *w);
/* Flushes, fsyncs, renames into place and fsyncs the directory. */
int queue_writer_commit(struct queue_writer *w);
/*
 * queue_writer_commit() in steps, so that many commits share one directory
 * fsync (group commit): queue_writer_sync() flushes and fsyncs the file,
 * queue_writer_publish() renames it into msg/, queue_sync_dir() fsyncs msg/
 * once for every writer published before it, and queue_writer_finish()
 * completes each of them with that result (on failure the record is
 * unlinked again and the writer fails).  Only after finish returned 0 is the
 * message durable and may be acknowledged.
 */
int queue_writer_sync(struct queue_writer *w);
int queue_writer_publish(struct queue_writer *w);
int queue_sync_dir(struct queue *q);
int queue_writer_finish(struct queue_writer *w, int dir_result);
/*
 * After a commit: the message as a queue_load() of it would give (the
 * caller owns *mp), without reading the record back; -ENOENT when the
 * writer cannot tell (then use queue_load()).
 */
int queue_writer_take(struct queue_writer *w, struct queue_msg **mp);
/* Frees the writer; an uncommitted temporary file is removed. */
void queue_writer_free(struct queue_writer *w);

/*
 * Start-up recovery in two steps, so that a daemon knows its whole queue
 * without reading every record (docs/spool.md, "Recovery"):
 *
 * queue_scan() removes temporary files and orphaned journals and lists
 * every committed message from the directory and the inodes alone, no file
 * being read: the id, and when it is due, from the modification time that
 * queue_set_schedule() gives the journal.  That time is a hint: the journal
 * read with the record stays authoritative (a crash may lose a hint, and
 * journals written by older versions have none).  *stubsp is a malloc'd
 * array sorted by id (arrival order); free() it.
 *
 * queue_load_stub() then loads one of them (record and journal).  A record
 * that cannot be parsed is moved to corrupt/ (with its journal) and the
 * call returns -EBADMSG; -ENOENT means it was removed meanwhile.
 *
 * queue_recover() is both at once: it loads every message and hands it to
 * cb (which takes ownership), counting the records moved aside in
 * *ncorrupt.
 */
struct queue_stub {
	char id[QUEUE_ID_LEN + 1];
	time_t arrival;			/* the second encoded in the id */
	time_t next_attempt;		/* the journal's hint; 0: now */
	bool journal;			/* msg/ID.state exists */
};

int queue_scan(struct queue *q, struct queue_stub **stubsp, size_t *np,
    char **err);
int queue_load_stub(struct queue *q, const struct queue_stub *st,
    struct queue_msg **mp);
int queue_recover(struct queue *q, void (*cb)(struct queue_msg *, void *),
    void *arg, size_t *ncorrupt, char **err);
/* Loads one message by id. */
int queue_load(struct queue *q, const char *id, struct queue_msg **mp);
void queue_msg_free(struct queue_msg *m);

/* Opens the body read-only; the returned fd is positioned at its start. */
int queue_body_open(struct queue *q, const struct queue_msg *m, int *fdp);

/*
 * Makes room in m's journal for one transaction's outcome before m is sent
 * upstream: creates msg/ID.state if it does not exist (its directory entry
 * is made durable by the first append, not here) and allocates
 * (fallocate, keeping the size) the blocks that a line per recipient and a
 * schedule line need without their reply texts.  A full spool then refuses
 * to start the transaction (-ENOSPC, -EDQUOT) instead of failing to record
 * a delivery the upstream has already accepted, which a restart would send
 * again.  Filesystems without fallocate() get only the journal created.
 */
int queue_reserve(struct queue *q, const struct queue_msg *m);
/*
 * Durably records recipient i's new state and the reply that caused it.
 * When the spool is full the line is written once more without the reply,
 * into the room queue_reserve() made.
 */
int queue_set_rcpt(struct queue *q, struct queue_msg *m, size_t i,
    enum queue_rcpt_state state, const char *reply);
/*
 * queue_set_rcpt() for a recipient delivered to an upstream that does not
 * offer DSN while it asked NOTIFY=SUCCESS: the "relayed" notice is due
 * (m->rcpt[i].relayed), recorded in the same journal write.
 */
int queue_set_relayed(struct queue *q, struct queue_msg *m, size_t i,
    const char *reply);
/* Durably records that the "delayed" notice for m was queued at t. */
int queue_set_delay_notice(struct queue *q, struct queue_msg *m, time_t t);
/* Durably records an attempt: count, next attempt time, last reply. */
int queue_set_schedule(struct queue *q, struct queue_msg *m,
    unsigned attempts, time_t next, const char *reply);
/* True when no recipient is pending any more. */
bool queue_msg_done(const struct queue_msg *m);
/* Removes the message and its journal. */
int queue_remove(struct queue *q, const char *id);
/*
 * queue_remove() in steps, so that the directory fsync between them can be
 * shared and run elsewhere: queue_remove_record() unlinks msg/ID; only once
 * a queue_sync_dir() that started after it returned 0 may
 * queue_remove_journal() unlink msg/ID.state (a missing journal is fine).
 * Until then a crash may bring the record back, with its journal.
 */
int queue_remove_record(struct queue *q, const char *id);
int queue_remove_journal(struct queue *q, const char *id);

/*
 * Internal, exposed for the fuzzers and the tests.
 *
 * queue_parse_envelope() parses a record's envelope from the first len bytes
 * of a record file into *m, which it zeroes first.  On success it sets
 * m->body_offset and *body_offset to the first body byte (m->size is left to
 * the caller: file size - body_offset); free the fields with
 * queue_msg_free() on a heap-allocated m.  Returns -EAGAIN when buf ends
 * inside the envelope (read more), -EBADMSG when the record is malformed,
 * -ENOTSUP for a format version newer than this build, -ENOMEM; on error *m
 * holds nothing to free.
 *
 * queue_journal_apply() applies a state journal held in buf to m (parsed
 * from the same message): every '\n'-terminated line whose checksum is
 * right, in order.  It returns how many lines it ignored (torn, corrupt or
 * of an unknown kind), or -ENOMEM.
 */
int queue_parse_envelope(const char *buf, size_t len, struct queue_msg *m,
    size_t *body_offset);
int queue_journal_apply(struct queue_msg *m, const char *buf, size_t len);

/*
 * Listing and the maildrop (the smartrelay tool and the daemon's pickup).
 *
 * queue_open_existing() is queue_open() without creating anything (the tool
 * must not create a spool as the wrong user).  queue_list() returns the ids
 * of the committed records, sorted (arrival order); free(*idsp).
 * queue_id_time() is the arrival second encoded in an id (0 if invalid).
 *
 * The maildrop (see queue.c, docs/spool.md) is where local users submit: a
 * struct queue from queue_maildrop_open() writes into spool/maildrop/tmp and
 * commits into spool/maildrop.  create (the daemon, as the spool's owner)
 * makes the directories with QUEUE_MAILDROP_MODE and lets the spool's group
 * search the spool directory; without it nothing is created.
 * queue_maildrop_writer_new() and queue_maildrop_commit() replace
 * queue_writer_new() and queue_writer_commit() for it (the record is made
 * group-readable; the rename is made durable even when the caller cannot
 * read the directory).  queue_remove() removes a maildrop record.
 *
 * queue_maildrop_load() parses an untrusted maildrop record: no links, no
 * FIFOs or devices, no hard links, at most envelope_max bytes of envelope
 * (-EBADMSG otherwise).  With fdp it also returns the file positioned at the
 * body; stp (may be NULL) receives its stat (the owner is the submitter).
 * queue_maildrop_clean() removes records being written by writers that
 * died: unlocked ones at once, ones it cannot even open once they are older
 * than unreadable_after seconds.  queue_maildrop_stat() is lstat() of a
 * name in maildrop/ ("." for the directory itself).
 * queue_maildrop_move_aside() moves maildrop/ID, which the daemon refuses,
 * to the spool's corrupt/ as "maildrop-ID" (".N" added rather than
 * replacing a file there); dst (at least QUEUE_ID_LEN + 16 bytes) receives
 * that name.
 */
#define QUEUE_MAILDROP_MODE	01730

struct stat;

int queue_open_existing(const char *dir, struct queue **qp, char **err);
int queue_list(struct queue *q, char (**idsp)[QUEUE_ID_LEN + 1], size_t *np);
time_t queue_id_time(const char *id);
int queue_maildrop_open(const char *spool, bool create, struct queue **qp,
    char **err);
int queue_maildrop_writer_new(struct queue *md, struct queue_writer **wp);
int queue_maildrop_commit(struct queue_writer *w);
int queue_maildrop_load(struct queue *md, const char *id, size_t envelope_max,
    struct queue_msg **mp, int *fdp, struct stat *stp);
int queue_maildrop_clean(struct queue *md, time_t unreadable_after);
int queue_maildrop_move_aside(struct queue *md, const char *id, char *dst,
    size_t dstsz);
int queue_maildrop_stat(struct queue *md, const char *name, struct stat *st);

#endif
