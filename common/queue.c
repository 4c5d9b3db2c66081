/*
 * queue: the durable spool (docs/spool.md).  See queue.h for the API and
 * docs/spool.md for the operator's view.  This file does the files, their
 * fsync ordering and recovery; queue_format.c parses and formats the text
 * described below (envelope and journal lines), queue_maildrop.c lists the
 * spool and runs the maildrop.
 *
 * Layout.  The spool directory holds three directories, all mode 0700:
 *
 *   tmp/       records being written (tmp/ID); never read by anyone else
 *   msg/       committed records (msg/ID) and their state journals
 *              (msg/ID.state)
 *   corrupt/   records (and journals) recovery could not parse, moved aside
 *              and never deleted by smartrelay
 *   maildrop/  01730: local submissions waiting for the daemon, as version 1
 *              records; maildrop/tmp/ holds those being written (see "The
 *              maildrop" in queue_maildrop.c)
 *   ctl        the daemon's control socket (daemon/ctl.c)
 *
 * The spool directory itself is 0700, or 0710 once the daemon has made
 * the maildrop (its group may then traverse it, nothing more).
 *
 * Ids are 16 upper-case hex digits: microseconds since the epoch in the high
 * 52 bits (good until 2112), a per-process random salt or a counter in the
 * low 12 bits, strictly increasing within a process.  So ids sort in arrival
 * order and never contain '/' or '.'.
 *
 * Record, format version 1 (msg/ID).  A text envelope, one "key value" line
 * each, then the body bytes exactly as the session gave them (CRLF lines):
 *
 *   SMARTRELAY-QUEUE 1
 *   id 0006123A9C3F2A17
 *   arrival 1700000000
 *   flags 00000001
 *   from <alice@example.org>
 *   rcpt <bob@example.net>
 *   rcpt <carol@example.com>
 *   body
 *   Received: from ...<CRLF>...
 *
 * The first line names the format version; the reader dispatches on it and
 * keeps a parser for every version it ever wrote.  "from <>" is the null
 * sender.  flags is fixed-width hex so that commit can set QUEUE_F_8BITMIME
 * in place once it has seen an 8-bit body byte.  "body" ends the envelope;
 * body_offset is the byte after it, and the body size is the file size minus
 * body_offset.  Bounds: lines up to QUEUE_LINE_MAX bytes, no control bytes
 * (NUL, CR...) in the envelope, 1..QUEUE_MAX_RCPT recipients, addresses up
 * to QUEUE_MAX_ADDR bytes, the envelope up to QUEUE_ENVELOPE_MAX bytes.
 *
 * The DSN request (RFC 3461, docs/smtp.md), present only when the client
 * gave one, is kept in optional keys of version 1 (see "Evolving" below):
 *
 *   ret hdrs                       RET=: "full" or "hdrs"; once, after from
 *   envid QP+2Bid                  ENVID=, as xtext; once, after from
 *   rcpt <bob@example.net>
 *   notify success,delay           NOTIFY= of the recipient just above:
 *                                  "never" or success/failure/delay
 *   orcpt rfc822;bob@example.net   ORCPT= of that recipient, as given
 *
 * A record without them (every record written before they existed) is a
 * request with no parameters: failures are notified, RET means headers.
 * They stay optional keys rather than a version 2 on purpose: a daemon of
 * the previous version still running while a newer sendmail writes to the
 * maildrop delivers such a record (without the DSN extras) instead of
 * refusing it.
 *
 * Evolving the format: a field that an older reader may safely ignore is a
 * new key within the same version (readers skip unknown keys made of
 * [a-z0-9-]).  A field an older reader must not ignore is a key starting with
 * '!' (readers refuse records with an unknown '!' key), or a new version
 * number.  A reader refuses versions newer than its own; refused records go
 * to corrupt/, whence they can be moved back after upgrading.
 *
 * State journal (msg/ID.state), append-only, one event per line:
 *
 *   CRC32 rcpt I STATE TIME[ REPLY]      STATE: pending delivered failed
 *   CRC32 sched ATTEMPTS NEXT[ REPLY]
 *   CRC32 dsn relayed I                  recipient I went to an upstream
 *                                        without DSN: its "relayed" notice
 *                                        is due (written with its rcpt line)
 *   CRC32 dsn delayed TIME               the "delayed" notice was queued
 *
 * CRC32 is 8 upper-case hex digits of the IEEE CRC-32 of the rest of the line
 * after its space; REPLY is the upstream reply sanitised to one printable
 * ASCII line.  Each append is one write() of a whole line, then fdatasync();
 * the first append to a journal in a process also fsyncs msg/, since an
 * fdatasync does not make the file's directory entry durable (see "Room for
 * the outcome").  On load, lines are applied in
 * order, the last event winning; a line with a bad checksum, no final '\n'
 * (torn by a crash) or an unknown kind is ignored (so an older reader
 * skips the "dsn" events).  An append of two lines ("rcpt" and "dsn
 * relayed") is one write.  Before appending to a
 * journal that does not end in '\n', the file is truncated after its last
 * '\n', so a torn tail never glues onto a new line.
 *
 * Commit (the order is what makes a 250 durable, docs/smtp.md):
 *   write tmp/ID; fsync(tmp/ID); rename(tmp/ID, msg/ID); fsync(msg/).
 * A crash before the rename leaves only tmp/ID, which recovery deletes; after
 * the directory fsync the record is durable.  If the directory fsync fails,
 * msg/ID is unlinked again and the commit fails, so the client retries.
 *
 * Room for the outcome: before a message goes upstream, queue_reserve()
 * creates its journal and allocates the blocks its recipient lines will
 * need (fallocate with FALLOC_FL_KEEP_SIZE, sized for lines without reply
 * texts).  It does not fsync msg/: until a line is appended the journal is
 * empty, and an empty journal lost by a crash is the same as none (the
 * message is due at once either way).  The append that first puts a line
 * in it fsyncs msg/ after its fdatasync (m->journal_synced tells that this
 * process did so since the journal exists), so a message relayed without
 * an append (all delivered: see "Removal") costs no journal fsync at all.
 * If the spool fills up meanwhile, a recipient line that does not fit is
 * written again without its reply, into that room: a delivery the
 * upstream accepted is always recorded, so a restart never sends it twice
 * (docs/reliability.md).  A full spool makes
 * queue_reserve() fail, and the message waits instead of going upstream.
 *
 * Removal: unlink(msg/ID); fsync(msg/); unlink(msg/ID.state).  The record
 * goes first and durably, so no crash can leave a record without its
 * journal's lines (which would re-send to recipients already delivered); a
 * journal without a record is an orphan that recovery removes.  For the
 * same reason a journal is only created while its record exists, and a new
 * message never takes an id for which msg/ID or msg/ID.state exists.
 * queue_remove() does the three steps; the daemon does them apart
 * (queue_remove_record(), then a queue_sync_dir() on a worker thread that
 * covers every record unlinked before it, then queue_remove_journal()), so
 * that the directory fsync is shared and leaves the event loop.
 *
 * Recovery (docs/spool.md) is two steps: queue_scan() lists msg/ and
 * stats the journals, so the whole queue and its schedule are known from
 * the directory and the inodes; queue_load_stub() then reads each record
 * and journal.  The schedule hint is the journal's mtime, which each
 * append sets to the message's next attempt before its fdatasync; the
 * journal's lines stay authoritative.
 *
 * Concurrency.  struct queue is immutable after queue_open() (directory fds
 * and the path), so different writers may be used and committed from
 * different threads and processes (the daemon and the sendmail tool) at the
 * same time.  A writer holds flock(LOCK_EX) on its tmp file; recovery
 * deletes only tmp files it can lock, so a sendmail running while the daemon
 * starts is not disturbed.  Journal appends to one message must be
 * serialised by its owner (the scheduler).
 */
#include "queue.h"
#include "queue_private.h"

#include "dsnparam.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static _Atomic uint64_t queue_id_last;
static _Atomic unsigned queue_id_salt;	/* 0x1000 | 12 random bits, or 0 */

/* Reads up to len bytes at offset off, stopping early only at end of file. */
ssize_t
queue_pread_full(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Writes all of buf; a short write without errno is reported as ENOSPC. */
static int
queue_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		if (n == 0)
			return -ENOSPC;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Builds "ID.state". */
void
queue_journal_name(char name[QUEUE_NAME_MAX], const char *id)
{
	snprintf(name, QUEUE_NAME_MAX, "%s%s", id, QUEUE_JOURNAL_SUFFIX);
}

/* 0 when name exists in dirfd, -ENOENT when not, else -errno. */
static int
queue_exists(int dirfd, const char *name)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	return -errno;
}

/* ---- ids ---------------------------------------------------------------- */

/* The low 12 bits of the first id of the second: random per process. */
static unsigned
queue_id_salt_get(void)
{
	unsigned s = atomic_load(&queue_id_salt);
	unsigned short r;

	if (s != 0)
		return s & 0xfff;
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (unsigned short)(getpid() ^ time(NULL));
	s = 0x1000u | (r & 0xfffu);
	atomic_store(&queue_id_salt, s);
	return s & 0xfff;
}

void
queue_new_id(char id[QUEUE_ID_LEN + 1])
{
	struct timespec ts;
	uint64_t now, cand, prev, next;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	cand = now << 12 | queue_id_salt_get();
	prev = atomic_load(&queue_id_last);
	do {
		next = cand > prev ? cand : prev + 1;
	} while (!atomic_compare_exchange_weak(&queue_id_last, &prev, next));
	snprintf(id, QUEUE_ID_LEN + 1, "%016" PRIX64, next);
}

/* ---- open and close ----------------------------------------------------- */

/* mkdir -p: missing parents 0755, the last component 0700. */
static int
queue_mkdir_p(const char *path, bool *created)
{
	char *p, *s;
	int r = 0;

	*created = false;
	if ((p = strdup(path)) == NULL)
		return -ENOMEM;
	for (s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) == -1 && errno != EEXIST) {
			r = -errno;
			goto out;
		}
		*s = '/';
	}
	if (mkdir(p, 0700) == 0)
		*created = true;
	else if (errno != EEXIST)
		r = -errno;
out:
	free(p);
	return r;
}

/* fsyncs the directory that contains path. */
static int
queue_fsync_parent(const char *path)
{
	char *p, *slash;
	int fd, r = 0;

	if ((p = strdup(path)) == NULL)
		return -ENOMEM;
	while ((slash = strrchr(p, '/')) != NULL && slash[1] == '\0' &&
	    slash != p)
		*slash = '\0';
	slash = strrchr(p, '/');
	if (slash == NULL)
		strcpy(p, ".");
	else if (slash == p)
		p[1] = '\0';
	else
		*slash = '\0';
	fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || fsync(fd) == -1)
		r = -errno;
	if (fd != -1)
		close(fd);
	free(p);
	return r;
}

/* Creates (0700) and opens one subdirectory of the spool. */
static int
queue_open_sub(int dirfd, const char *name, int *fdp, bool *created)
{
	if (mkdirat(dirfd, name, 0700) == 0)
		*created = true;
	else if (errno != EEXIST)
		return -errno;
	*fdp = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return *fdp == -1 ? -errno : 0;
}

void
queue_open_error(char **err, const char *dir, const char *what, int r)
{
	if (err != NULL && r != -ENOMEM && asprintf(err, "spool %s%s%s: %s",
	    dir, what == dir ? "" : "/", what == dir ? "" : what,
	    strerror(-r)) == -1)
		*err = NULL;
}

int
queue_open(const char *dir, struct queue **qp, char **err)
{
	struct queue *q;
	bool created, subcreated = false;
	const char *what = dir;
	int r;

	*qp = NULL;
	if (err != NULL)
		*err = NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -ENOMEM;
	q->dirfd = q->tmpfd = q->msgfd = q->corruptfd = -1;
	if ((q->dir = strdup(dir)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = queue_mkdir_p(dir, &created)) < 0)
		goto fail;
	if ((q->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		r = -errno;
		goto fail;
	}
	what = "tmp";
	if ((r = queue_open_sub(q->dirfd, "tmp", &q->tmpfd, &subcreated)) < 0)
		goto fail;
	what = "msg";
	if ((r = queue_open_sub(q->dirfd, "msg", &q->msgfd, &subcreated)) < 0)
		goto fail;
	what = "corrupt";
	if ((r = queue_open_sub(q->dirfd, "corrupt", &q->corruptfd,
	    &subcreated)) < 0)
		goto fail;
	what = dir;
	if (subcreated && fsync(q->dirfd) == -1) {
		r = -errno;
		goto fail;
	}
	if (created && (r = queue_fsync_parent(dir)) < 0)
		goto fail;
	*qp = q;
	return 0;
fail:
	queue_open_error(err, dir, what, r);
	queue_close(q);
	return r;
}

void
queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	if (q->corruptfd != -1)
		close(q->corruptfd);
	if (q->msgfd != -1)
		close(q->msgfd);
	if (q->tmpfd != -1)
		close(q->tmpfd);
	if (q->dirfd != -1)
		close(q->dirfd);
	free(q->dir);
	free(q);
}

const char *
queue_dir(const struct queue *q)
{
	return q->dir;
}

/* ---- writer ------------------------------------------------------------- */

/*
 * Creates and locks tmp/ID.  -EEXIST asks for another id: the name is taken
 * in tmp/ or msg/ (record or journal), or recovery is deleting our file.
 */
static int
queue_tmp_create(struct queue *q, const char *id, int *fdp)
{
	char jname[QUEUE_NAME_MAX];
	struct stat st;
	int fd, r;

	fd = openat(q->tmpfd, id, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC,
	    0600);
	if (fd == -1)
		return -errno;
	/* Recovery unlinks a tmp file only while it holds this lock. */
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		r = errno == EWOULDBLOCK ? -EEXIST : -errno;
		close(fd);
		return r;
	}
	if (fstat(fd, &st) == -1) {
		r = -errno;
		close(fd);
		return r;
	}
	if (st.st_nlink == 0) {
		close(fd);
		return -EEXIST;
	}
	queue_journal_name(jname, id);
	if ((r = queue_exists(q->msgfd, id)) == 0 ||
	    (r == -ENOENT && (r = queue_exists(q->msgfd, jname)) == 0))
		r = -EEXIST;
	if (r != -ENOENT) {
		unlinkat(q->tmpfd, id, 0);
		close(fd);
		return r;
	}
	*fdp = fd;
	return 0;
}

int
queue_writer_new(struct queue *q, struct queue_writer **wp)
{
	struct queue_writer *w;
	int tries, r = -EEXIST;

	*wp = NULL;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -ENOMEM;
	w->q = q;
	w->fd = -1;
	for (tries = 0; tries < 100 && r == -EEXIST; tries++) {
		queue_new_id(w->id);
		r = queue_tmp_create(q, w->id, &w->fd);
	}
	if (r < 0) {
		free(w);
		return r;
	}
	*wp = w;
	return 0;
}

const char *
queue_writer_id(const struct queue_writer *w)
{
	return w->id;
}

uint64_t
queue_writer_size(const struct queue_writer *w)
{
	return w->size;
}

/* Records the first failure: the tmp file goes at once (frees disk space). */
int
queue_writer_fail(struct queue_writer *w, int r)
{
	w->error = r;
	if (w->fd != -1) {
		unlinkat(w->q->tmpfd, w->id, 0);
		close(w->fd);
		w->fd = -1;
	}
	free(w->buf);
	w->buf = NULL;
	w->buflen = 0;
	return r;
}

int
queue_writer_flush(struct queue_writer *w)
{
	int r;

	if (w->buflen == 0)
		return 0;
	if ((r = queue_write_all(w->fd, w->buf, w->buflen)) < 0)
		return queue_writer_fail(w, r);
	w->buflen = 0;
	w->flushed = true;
	return 0;
}

/* Buffers len bytes; large pieces go straight to the file. */
static int
queue_writer_put(struct queue_writer *w, const void *p, size_t len)
{
	int r;

	if (len <= QUEUE_WRITER_BUFSIZE - w->buflen) {
		memcpy(w->buf + w->buflen, p, len);
		w->buflen += len;
		return 0;
	}
	if ((r = queue_writer_flush(w)) < 0)
		return r;
	if (len >= QUEUE_WRITER_BUFSIZE) {
		if ((r = queue_write_all(w->fd, p, len)) < 0)
			return queue_writer_fail(w, r);
		w->flushed = true;
		return 0;
	}
	memcpy(w->buf, p, len);
	w->buflen = len;
	return 0;
}

/* True for an address the envelope can hold: no control bytes, bounded. */
static bool
queue_addr_ok(const char *addr, bool empty_ok)
{
	size_t i, len;

	if (addr == NULL)
		return false;
	len = strlen(addr);
	if ((len == 0 && !empty_ok) || len > QUEUE_MAX_ADDR)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)addr[i] < 0x20 || addr[i] == 0x7f)
			return false;
	return true;
}

/* Buffers one "key <addr>" line. */
static int
queue_writer_addr(struct queue_writer *w, const char *key, const char *addr)
{
	int r;

	if ((r = queue_writer_put(w, key, strlen(key))) < 0 ||
	    (r = queue_writer_put(w, " <", 2)) < 0 ||
	    (r = queue_writer_put(w, addr, strlen(addr))) < 0 ||
	    (r = queue_writer_put(w, ">\n", 2)) < 0)
		return r;
	return 0;
}

int
queue_writer_dsn(struct queue_writer *w, enum queue_ret ret,
    const char *envid, const struct queue_dsn_rcpt *rcpt)
{
	if (w->have_envelope || w->committed || (unsigned)ret >
	    QUEUE_RET_HDRS)
		return -EINVAL;
	w->ret = ret;
	w->envid = envid;
	w->dsn_rcpt = rcpt;
	return 0;
}

/* True when the DSN request set with queue_writer_dsn() can be written. */
static bool
queue_writer_dsn_ok(const struct queue_writer *w, size_t nrcpt)
{
	const struct queue_dsn_rcpt *d;
	size_t i;

	if (w->envid != NULL &&
	    !dsnparam_envid_ok(w->envid, strlen(w->envid)))
		return false;
	for (i = 0; w->dsn_rcpt != NULL && i < nrcpt; i++) {
		d = &w->dsn_rcpt[i];
		if (!dsnparam_notify_ok(d->notify) || (d->orcpt != NULL &&
		    !dsnparam_orcpt_ok(d->orcpt, strlen(d->orcpt))))
			return false;
	}
	return true;
}

/* Buffers "key value\n". */
static int
queue_writer_kv(struct queue_writer *w, const char *key, const char *v)
{
	int r;

	if ((r = queue_writer_put(w, key, strlen(key))) < 0 ||
	    (r = queue_writer_put(w, " ", 1)) < 0 ||
	    (r = queue_writer_put(w, v, strlen(v))) < 0 ||
	    (r = queue_writer_put(w, "\n", 1)) < 0)
		return r;
	return 0;
}

/* Buffers recipient i's line and its DSN lines, if any. */
static int
queue_writer_rcpt(struct queue_writer *w, const char *addr, size_t i)
{
	const struct queue_dsn_rcpt *d;
	char notify[64];
	int r;

	if ((r = queue_writer_addr(w, "rcpt", addr)) < 0 ||
	    w->dsn_rcpt == NULL)
		return r;
	d = &w->dsn_rcpt[i];
	if (d->notify != 0) {
		dsnparam_notify_format(d->notify, notify, sizeof(notify));
		if ((r = queue_writer_kv(w, "notify", notify)) < 0)
			return r;
	}
	if (d->orcpt != NULL && (r = queue_writer_kv(w, "orcpt",
	    d->orcpt)) < 0)
		return r;
	return 0;
}

/*
 * Parses the envelope just buffered, with the parser recovery uses, so
 * that queue_writer_take() can hand over the message without reading the
 * record back.  Not when the envelope did not fit in the buffer, or
 * memory runs out: queue_load() then does it.
 */
static void
queue_writer_parse(struct queue_writer *w)
{
	struct queue_msg *m;
	size_t off;

	if (w->flushed || (m = calloc(1, sizeof(*m))) == NULL)
		return;
	if (queue_parse_envelope(w->buf, w->buflen, m, &off) == 0 &&
	    off == w->buflen && strcmp(m->id, w->id) == 0)
		w->msg = m;
	else {
		queue_msg_clear(m);
		free(m);
	}
}

int
queue_writer_take(struct queue_writer *w, struct queue_msg **mp)
{
	*mp = NULL;
	if (!w->committed || w->msg == NULL)
		return -ENOENT;
	*mp = w->msg;
	w->msg = NULL;
	(*mp)->size = w->size;
	if (w->eightbit)
		(*mp)->flags |= QUEUE_F_8BITMIME;
	return 0;
}

int
queue_writer_envelope(struct queue_writer *w, const char *from,
    const char *const *rcpts, size_t nrcpt, unsigned flags, time_t arrival)
{
	char head[128];
	size_t i;
	int n, r;

	if (w->error != 0)
		return w->error;
	if (w->have_envelope || w->committed || arrival < 0 ||
	    !queue_addr_ok(from, true) || nrcpt == 0 ||
	    nrcpt > QUEUE_MAX_RCPT || rcpts == NULL ||
	    !queue_writer_dsn_ok(w, nrcpt))
		return -EINVAL;
	for (i = 0; i < nrcpt; i++)
		if (!queue_addr_ok(rcpts[i], false))
			return -EINVAL;
	if ((w->buf = malloc(QUEUE_WRITER_BUFSIZE)) == NULL)
		return -ENOMEM;
	n = snprintf(head, sizeof(head), "%s%d\nid %s\narrival %lld\nflags ",
	    QUEUE_MAGIC, QUEUE_FORMAT_VERSION, w->id, (long long)arrival);
	w->flags_off = n;
	w->flags = flags;
	n += snprintf(head + n, sizeof(head) - (size_t)n, "%08X\n", flags);
	if ((r = queue_writer_put(w, head, (size_t)n)) < 0 ||
	    (r = queue_writer_addr(w, "from", from)) < 0)
		return r;
	if (w->ret != QUEUE_RET_UNSET && (r = queue_writer_kv(w, "ret",
	    w->ret == QUEUE_RET_FULL ? "full" : "hdrs")) < 0)
		return r;
	if (w->envid != NULL && (r = queue_writer_kv(w, "envid",
	    w->envid)) < 0)
		return r;
	for (i = 0; i < nrcpt; i++)
		if ((r = queue_writer_rcpt(w, rcpts[i], i)) < 0)
			return r;
	if ((r = queue_writer_put(w, "body\n", 5)) < 0)
		return r;
	w->have_envelope = true;
	w->envid = NULL;
	w->dsn_rcpt = NULL;
	queue_writer_parse(w);
	return 0;
}

/* True when a byte of buf has its high bit set. */
static bool
queue_has_8bit(const unsigned char *p, size_t len)
{
	uint64_t word, acc = 0;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&word, p + i, 8);
		acc |= word;
	}
	for (; i < len; i++)
		acc |= p[i];
	return (acc & UINT64_C(0x8080808080808080)) != 0;
}

int
queue_writer_write(struct queue_writer *w, const void *buf, size_t len)
{
	if (w->error != 0)
		return w->error;
	if (!w->have_envelope || w->committed)
		return -EINVAL;
	if (!w->eightbit && queue_has_8bit(buf, len))
		w->eightbit = true;
	w->size += len;
	return queue_writer_put(w, buf, len);
}

int
queue_writer_sync(struct queue_writer *w)
{
	char digits[9];
	ssize_t n;
	int r;

	if (w->error != 0)
		return w->error;
	if (!w->have_envelope || w->committed)
		return -EINVAL;
	if ((r = queue_writer_flush(w)) < 0)
		return r;
	if (w->eightbit && !(w->flags & QUEUE_F_8BITMIME)) {
		snprintf(digits, sizeof(digits), "%08X",
		    w->flags | QUEUE_F_8BITMIME);
		n = pwrite(w->fd, digits, 8, w->flags_off);
		if (n != 8)
			return queue_writer_fail(w, n == -1 ? -errno : -EIO);
	}
	if (fsync(w->fd) == -1)
		return queue_writer_fail(w, -errno);
	return 0;
}

int
queue_writer_publish(struct queue_writer *w)
{
	if (w->error != 0)
		return w->error;
	if (renameat(w->q->tmpfd, w->id, w->q->msgfd, w->id) == -1)
		return queue_writer_fail(w, -errno);
	return 0;
}

int
queue_sync_dir(struct queue *q)
{
	return fsync(q->msgfd) == -1 ? -errno : 0;
}

int
queue_writer_finish(struct queue_writer *w, int dir_result)
{
	if (w->error != 0)
		return w->error;
	if (dir_result < 0) {
		/* Not durable: take it back so that the client retries. */
		unlinkat(w->q->msgfd, w->id, 0);
		close(w->fd);
		w->fd = -1;
		return queue_writer_fail(w, dir_result);
	}
	close(w->fd);
	w->fd = -1;
	free(w->buf);
	w->buf = NULL;
	w->committed = true;
	return 0;
}

int
queue_writer_commit(struct queue_writer *w)
{
	int r;

	if ((r = queue_writer_sync(w)) < 0 ||
	    (r = queue_writer_publish(w)) < 0)
		return r;
	return queue_writer_finish(w, queue_sync_dir(w->q));
}

void
queue_writer_free(struct queue_writer *w)
{
	if (w == NULL)
		return;
	if (w->fd != -1) {
		if (!w->committed)
			unlinkat(w->q->tmpfd, w->id, 0);
		close(w->fd);
	}
	free(w->buf);
	queue_msg_free(w->msg);
	free(w);
}

/* ---- journal appends (lines: queue_format.c) --------------------------- */

/* Before an append: cuts a torn tail back to just after the last '\n'. */
static int
queue_journal_repair(int fd)
{
	struct stat st;
	char last, *buf;
	ssize_t n;
	off_t keep = 0;
	int r = 0;

	if (fstat(fd, &st) == -1)
		return -errno;
	if (st.st_size == 0)
		return 0;
	if ((n = queue_pread_full(fd, &last, 1, st.st_size - 1)) < 0)
		return (int)n;
	if (n == 1 && last == '\n')
		return 0;
	if (st.st_size > QUEUE_JOURNAL_MAX)
		return -EFBIG;
	if ((buf = malloc((size_t)st.st_size)) == NULL)
		return -ENOMEM;
	n = queue_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	for (keep = n; keep > 0 && buf[keep - 1] != '\n'; keep--)
		continue;
	if (ftruncate(fd, keep) == -1)
		r = -errno;
out:
	free(buf);
	return r;
}

/*
 * Opens msg/ID.state for appending, creating it while the record exists;
 * *created tells that it is new (its directory entry not yet durable).
 * A torn tail is cut first.  Returns the fd or a negative errno.
 */
static int
queue_journal_open(struct queue *q, const char *id, bool *created)
{
	char name[QUEUE_NAME_MAX];
	int fd, r;

	queue_journal_name(name, id);
	*created = true;
	fd = openat(q->msgfd, name, O_RDWR | O_APPEND | O_CREAT | O_EXCL |
	    O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1 && errno == EEXIST) {
		*created = false;
		fd = openat(q->msgfd, name, O_RDWR | O_APPEND | O_CLOEXEC |
		    O_NOFOLLOW);
	}
	if (fd == -1)
		return -errno;
	if (*created && (r = queue_exists(q->msgfd, id)) < 0) {
		/* The record is gone: a journal must not outlive it. */
		unlinkat(q->msgfd, name, 0);
		close(fd);
		return r;
	}
	if (!*created && (r = queue_journal_repair(fd)) < 0) {
		close(fd);
		return r;
	}
	return fd;
}

/* Room for "CRC32 rcpt I delivered TIME\n" and "CRC32 dsn relayed I\n". */
#define QUEUE_JOURNAL_SHORT	96	/* with a "dsn relayed I" line */

int
queue_reserve(struct queue *q, const struct queue_msg *m)
{
	struct stat st;
	bool created;
	int fd, r = 0;

	if ((fd = queue_journal_open(q, m->id, &created)) < 0)
		return fd;
	if (fstat(fd, &st) == -1) {
		r = -errno;
		goto out;
	}
	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, st.st_size,
	    (off_t)(m->nrcpt + 1) * QUEUE_JOURNAL_SHORT) == -1 &&
	    errno != EOPNOTSUPP && errno != ENOSYS) {
		r = -errno;
		goto out;
	}
	/* No fsync of msg/: the first append does it (see the top). */
out:
	close(fd);
	return r;
}

/*
 * Durably appends one journal line per payload (at most two) to
 * msg/ID.state, in one write.  With mtime > 0, the journal's modification
 * time becomes mtime before the fdatasync (the schedule hint read by
 * queue_scan()).  msg/ is fsynced too unless this process did it already
 * since the journal exists (m->journal_synced): a journal made by
 * queue_reserve(), or by an earlier process, may not have a durable
 * directory entry yet.
 */
static int
queue_journal_append(struct queue *q, struct queue_msg *m,
    const char *const *payloads, size_t np, time_t mtime)
{
	struct timespec times[2] = { { .tv_nsec = UTIME_OMIT },
	    { .tv_sec = mtime } };
	char line[2 * (QUEUE_LINE_MAX + 1)];
	size_t len = 0, l, k;
	bool created;
	struct stat st;
	ssize_t n;
	int fd, r = 0;

	if (np == 0 || np > 2)
		return -EINVAL;
	for (k = 0; k < np; k++) {
		if ((r = queue_journal_format(line + len, payloads[k],
		    &l)) < 0)
			return r;
		len += l;
	}
	if ((fd = queue_journal_open(q, m->id, &created)) < 0)
		return fd;
	if (created)
		m->journal_synced = false;
	if (fstat(fd, &st) == -1) {
		r = -errno;
		goto out;
	}
	do
		n = write(fd, line, len);
	while (n == -1 && errno == EINTR);
	if (n != (ssize_t)len) {
		r = n == -1 ? -errno : -ENOSPC;
		if (n > 0 && ftruncate(fd, st.st_size) == -1)
			r = -errno;	/* the next append repairs it */
		goto out;
	}
	/* A hint only: the line just written stays authoritative. */
	if (mtime > 0)
		(void)futimens(fd, times);
	if (fdatasync(fd) == -1 ||
	    (!m->journal_synced && fsync(q->msgfd) == -1))
		r = -errno;
	else
		m->journal_synced = true;
out:
	close(fd);
	return r;
}

/* queue_set_rcpt(), with the "relayed" line when relayed. */
static int
queue_set_rcpt_line(struct queue *q, struct queue_msg *m, size_t i,
    enum queue_rcpt_state state, const char *reply, bool relayed)
{
	static const char *const names[] = { "pending", "delivered",
	    "failed" };
	char clean[QUEUE_MAX_REPLY + 1], payload[QUEUE_LINE_MAX];
	char extra[64];
	const char *lines[2] = { payload, extra };
	char *dup = NULL;
	time_t now = time(NULL);
	size_t rlen;
	int r;

	if (i >= m->nrcpt || (unsigned)state > QUEUE_RCPT_FAILED)
		return -EINVAL;
	rlen = queue_sanitize(clean, reply);
	if (rlen > 0 && (dup = strdup(clean)) == NULL)
		return -ENOMEM;
	snprintf(payload, sizeof(payload), "rcpt %zu %s %lld%s%s", i,
	    names[state], (long long)now, rlen > 0 ? " " : "", clean);
	snprintf(extra, sizeof(extra), "dsn relayed %zu", i);
	r = queue_journal_append(q, m, lines, relayed ? 2 : 1,
	    m->next_attempt);
	if ((r == -ENOSPC || r == -EDQUOT || r == -EFBIG) && rlen > 0) {
		/* Full: the state matters, the reply does not (see above). */
		snprintf(payload, sizeof(payload), "rcpt %zu %s %lld", i,
		    names[state], (long long)now);
		r = queue_journal_append(q, m, lines, relayed ? 2 : 1,
		    m->next_attempt);
	}
	if (r < 0) {
		free(dup);
		return r;
	}
	m->rcpt[i].state = state;
	m->rcpt[i].updated = now;
	m->rcpt[i].relayed = relayed;
	free(m->rcpt[i].reply);
	m->rcpt[i].reply = dup;
	return 0;
}

int
queue_set_rcpt(struct queue *q, struct queue_msg *m, size_t i,
    enum queue_rcpt_state state, const char *reply)
{
	return queue_set_rcpt_line(q, m, i, state, reply, false);
}

int
queue_set_relayed(struct queue *q, struct queue_msg *m, size_t i,
    const char *reply)
{
	return queue_set_rcpt_line(q, m, i, QUEUE_RCPT_DELIVERED, reply,
	    true);
}

int
queue_set_delay_notice(struct queue *q, struct queue_msg *m, time_t t)
{
	char payload[64];
	const char *lines[1] = { payload };
	int r;

	if (t <= 0)
		return -EINVAL;
	snprintf(payload, sizeof(payload), "dsn delayed %lld", (long long)t);
	if ((r = queue_journal_append(q, m, lines, 1,
	    m->next_attempt)) < 0)
		return r;
	m->delay_notice = t;
	return 0;
}

int
queue_set_schedule(struct queue *q, struct queue_msg *m, unsigned attempts,
    time_t next, const char *reply)
{
	char clean[QUEUE_MAX_REPLY + 1], payload[QUEUE_LINE_MAX];
	const char *lines[1] = { payload };
	char *dup = NULL;
	size_t rlen;
	int r;

	if (next < 0)
		return -EINVAL;
	rlen = queue_sanitize(clean, reply);
	if (rlen > 0 && (dup = strdup(clean)) == NULL)
		return -ENOMEM;
	snprintf(payload, sizeof(payload), "sched %u %lld%s%s", attempts,
	    (long long)next, rlen > 0 ? " " : "", clean);
	if ((r = queue_journal_append(q, m, lines, 1, next)) < 0) {
		free(dup);
		return r;
	}
	m->attempts = attempts;
	m->next_attempt = next;
	free(m->last_reply);
	m->last_reply = dup;
	return 0;
}

bool
queue_msg_done(const struct queue_msg *m)
{
	size_t i;

	for (i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_PENDING)
			return false;
	return true;
}

/* ---- loading ------------------------------------------------------------ */

/* Reads and parses msg/ID's envelope: the first 4 KiB, more if needed. */
static int
queue_read_record(struct queue *q, const char *id, struct queue_msg *m)
{
	char first[QUEUE_READ_FIRST], *buf = first, *nbuf;
	size_t cap = sizeof(first), have, off;
	struct stat st;
	ssize_t n;
	int fd, r;

	fd = openat(q->msgfd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return errno == ELOOP ? -EBADMSG : -errno;
	if (fstat(fd, &st) == -1) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EBADMSG;
		goto out;
	}
	if ((n = queue_pread_full(fd, buf, cap, 0)) < 0) {
		r = (int)n;
		goto out;
	}
	have = (size_t)n;
	while ((r = queue_parse_envelope(buf, have, m, &off)) == -EAGAIN) {
		if (have < cap || cap >= QUEUE_ENVELOPE_MAX) {
			r = -EBADMSG;	/* the file ends inside the envelope */
			goto out;
		}
		cap = cap * 4 < QUEUE_ENVELOPE_MAX ? cap * 4 :
		    QUEUE_ENVELOPE_MAX;
		if ((nbuf = realloc(buf == first ? NULL : buf, cap)) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		if (buf == first)
			memcpy(nbuf, first, have);
		buf = nbuf;
		n = queue_pread_full(fd, buf + have, cap - have, (off_t)have);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		have += (size_t)n;
	}
	if (r < 0)
		goto out;
	if (strcmp(m->id, id) != 0 || (uint64_t)st.st_size < off) {
		queue_msg_clear(m);
		r = -EBADMSG;
		goto out;
	}
	m->size = (uint64_t)st.st_size - off;
out:
	if (buf != first)
		free(buf);
	close(fd);
	return r;
}

/* Applies msg/ID.state to m; a missing journal is fine. */
static int
queue_read_journal(struct queue *q, struct queue_msg *m)
{
	char name[QUEUE_NAME_MAX], *buf;
	struct stat st;
	ssize_t n;
	int fd, r = 0;

	queue_journal_name(name, m->id);
	fd = openat(q->msgfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return errno == ENOENT ? 0 : errno == ELOOP ? -EBADMSG : -errno;
	if (fstat(fd, &st) == -1) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > QUEUE_JOURNAL_MAX) {
		r = !S_ISREG(st.st_mode) ? -EBADMSG : -EFBIG;
		goto out;
	}
	if (st.st_size == 0)
		goto out;
	if ((buf = malloc((size_t)st.st_size)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	n = queue_pread_full(fd, buf, (size_t)st.st_size, 0);
	r = n < 0 ? (int)n : queue_journal_apply(m, buf, (size_t)n);
	if (r > 0)
		r = 0;
	free(buf);
out:
	close(fd);
	return r;
}

/* Loads record and (when it may exist) journal into a new message. */
int
queue_load_one(struct queue *q, const char *id, bool journal,
    struct queue_msg **mp)
{
	struct queue_msg *m;
	int r;

	*mp = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -ENOMEM;
	if ((r = queue_read_record(q, id, m)) < 0) {
		free(m);
		return r;
	}
	if (journal && (r = queue_read_journal(q, m)) < 0) {
		queue_msg_free(m);
		return r;
	}
	*mp = m;
	return 0;
}

int
queue_load(struct queue *q, const char *id, struct queue_msg **mp)
{
	*mp = NULL;
	if (!queue_id_valid(id))
		return -EINVAL;
	return queue_load_one(q, id, true, mp);
}

int
queue_body_open(struct queue *q, const struct queue_msg *m, int *fdp)
{
	int fd;

	*fdp = -1;
	if (!queue_id_valid(m->id))
		return -EINVAL;
	fd = openat(q->msgfd, m->id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return -errno;
	if (lseek(fd, (off_t)m->body_offset, SEEK_SET) == -1) {
		close(fd);
		return -errno;
	}
	*fdp = fd;
	return 0;
}

int
queue_remove_record(struct queue *q, const char *id)
{
	if (!queue_id_valid(id))
		return -EINVAL;
	return unlinkat(q->msgfd, id, 0) == -1 ? -errno : 0;
}

int
queue_remove_journal(struct queue *q, const char *id)
{
	char name[QUEUE_NAME_MAX];

	if (!queue_id_valid(id))
		return -EINVAL;
	queue_journal_name(name, id);
	if (unlinkat(q->msgfd, name, 0) == -1 && errno != ENOENT)
		return -errno;
	return 0;
}

int
queue_remove(struct queue *q, const char *id)
{
	int r, rj;

	/* Record first, durably: see "Removal" at the top of this file. */
	if ((r = queue_remove_record(q, id)) == -EINVAL)
		return r;
	if (r == 0 && (r = queue_sync_dir(q)) < 0)
		return r;
	rj = queue_remove_journal(q, id);
	return r < 0 ? r : rj;
}
