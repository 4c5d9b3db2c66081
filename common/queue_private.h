/*
 * queue_private.h: what queue.c shares with queue_maildrop.c and
 * queue_recover.c and with nobody else.  The on-disk format is described
 * at the top of queue.c; its parsing and formatting are in
 * queue_format.h.
 */
#ifndef SMARTRELAY_QUEUE_PRIVATE_H
#define SMARTRELAY_QUEUE_PRIVATE_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "queue.h"
#include "queue_format.h"

#define QUEUE_JOURNAL_SUFFIX	".state"
#define QUEUE_READ_FIRST	4096		/* most envelopes fit */
#define QUEUE_JOURNAL_MAX	(64u << 20)
#define QUEUE_WRITER_BUFSIZE	16384		/* per writer, envelope..commit */
/* "ID.state" and a ".NN" suffix for corrupt/. */
#define QUEUE_NAME_MAX		(QUEUE_ID_LEN + sizeof(QUEUE_JOURNAL_SUFFIX) + 4)

struct queue {
	char *dir;		/* owned: the spool path as given */
	int dirfd;		/* the spool directory */
	int tmpfd;		/* tmp/ */
	int msgfd;		/* msg/ */
	int corruptfd;		/* corrupt/ */
};

struct queue_writer {
	struct queue *q;	/* borrowed */
	char id[QUEUE_ID_LEN + 1];
	int fd;			/* tmp/ID, locked; -1 once closed */
	int error;		/* sticky first failure (negative errno) */
	bool have_envelope;
	bool committed;
	bool eightbit;		/* a body byte >= 0x80 was seen */
	unsigned flags;
	off_t flags_off;	/* where the flags digits are in the file */
	uint64_t size;		/* body bytes so far */
	char *buf;		/* owned, QUEUE_WRITER_BUFSIZE, or NULL */
	size_t buflen;
	bool flushed;		/* bytes went to the file already */
	struct queue_msg *msg;	/* owned, NULL: the envelope as parsed
				   from buf, for queue_writer_take() */
	enum queue_ret ret;	/* from queue_writer_dsn() */
	const char *envid;	/* borrowed until the envelope, NULL */
	const struct queue_dsn_rcpt *dsn_rcpt;	/* borrowed likewise, NULL */
};

/* One name found in msg/ by recovery. */
struct queue_ent {
	char id[QUEUE_ID_LEN + 1];
	bool journal;		/* ID.state rather than ID */
};

/* Builds "ID.state" (queue.c). */
void queue_journal_name(char name[QUEUE_NAME_MAX], const char *id);
/* Loads record and (when it may exist) journal into a new message. */
int queue_load_one(struct queue *q, const char *id, bool journal,
    struct queue_msg **mp);
/* Reads up to len bytes at off, stopping early only at end of file. */
ssize_t queue_pread_full(int fd, void *buf, size_t len, off_t off);
/* Records a writer's first failure and removes its tmp file. */
int queue_writer_fail(struct queue_writer *w, int r);
/* Writes out a writer's buffer. */
int queue_writer_flush(struct queue_writer *w);
/* Opens a directory stream on a fresh descriptor for dirfd. */
DIR *queue_opendir(int dirfd);
/* Lists msg/ (records and journals) into a growing array. */
int queue_scan_msg(struct queue *q, struct queue_ent **entsp, size_t *np);
/* Sorts by id (arrival order), a record before its journal. */
int queue_ent_cmp(const void *a, const void *b);

/* Sets *err to "spool DIR[/WHAT]: reason" for an opening failure r. */
void queue_open_error(char **err, const char *dir, const char *what, int r);

#endif
