/*
 * queue_recover: the spool at start-up (docs/spool.md, "Recovery").  Lists
 * msg/ without reading a record (queue_scan(): the whole queue and when
 * each message is due, from the directory and the journals' times, so
 * that the daemon can report ready at once), reads a listed record later
 * (queue_load_stub()), removes temporary files and orphaned journals, and
 * moves records it cannot read to corrupt/.  The rules it follows are
 * those at the top of queue.c.
 */
#include "queue.h"
#include "queue_private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Opens a directory stream on a fresh descriptor for dirfd. */
DIR *
queue_opendir(int dirfd)
{
	DIR *d;
	int fd;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return NULL;
	if ((d = fdopendir(fd)) == NULL)
		close(fd);
	return d;
}

/* Deletes tmp files that no live writer holds locked. */
static int
queue_clean_tmp(struct queue *q)
{
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	if ((d = queue_opendir(q->tmpfd)) == NULL)
		return -errno;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		fd = openat(q->tmpfd, de->d_name, O_RDONLY | O_CLOEXEC |
		    O_NOFOLLOW | O_NONBLOCK);
		if (fd == -1) {
			if (errno == ELOOP)
				unlinkat(q->tmpfd, de->d_name, 0);
			continue;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			unlinkat(q->tmpfd, de->d_name, 0);
		close(fd);
	}
	if (errno != 0)
		r = -errno;
	closedir(d);
	return r;
}

/* Classifies one name of msg/; false for names that are not ours. */
static bool
queue_ent_parse(const char *name, struct queue_ent *e)
{
	size_t len = strlen(name);

	if (len == QUEUE_ID_LEN)
		e->journal = false;
	else if (len == QUEUE_ID_LEN + sizeof(QUEUE_JOURNAL_SUFFIX) - 1 &&
	    strcmp(name + QUEUE_ID_LEN, QUEUE_JOURNAL_SUFFIX) == 0)
		e->journal = true;
	else
		return false;
	memcpy(e->id, name, QUEUE_ID_LEN);
	e->id[QUEUE_ID_LEN] = '\0';
	return queue_id_valid(e->id);
}

/* Lists msg/ into a growing array of records and journals. */
int
queue_scan_msg(struct queue *q, struct queue_ent **entsp, size_t *np)
{
	struct queue_ent *ents = NULL, *ne, e;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int r = 0;

	if ((d = queue_opendir(q->msgfd)) == NULL)
		return -errno;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!queue_ent_parse(de->d_name, &e))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 1024 : cap * 2;
			if ((ne = reallocarray(ents, cap, sizeof(*ne))) ==
			    NULL) {
				errno = ENOMEM;
				break;
			}
			ents = ne;
		}
		ents[n++] = e;
	}
	if (errno != 0) {
		r = -errno;
		free(ents);
		ents = NULL;
		n = 0;
	}
	closedir(d);
	*entsp = ents;
	*np = n;
	return r;
}

/* Sorts by id (arrival order), a record before its journal. */
int
queue_ent_cmp(const void *a, const void *b)
{
	const struct queue_ent *x = a, *y = b;
	int c = memcmp(x->id, y->id, QUEUE_ID_LEN);

	return c != 0 ? c : (int)x->journal - (int)y->journal;
}

/* Moves msg/name to corrupt/, never replacing an earlier one there. */
static int
queue_move_aside(struct queue *q, const char *name)
{
	char dst[QUEUE_NAME_MAX + 4];
	int i;

	for (i = 0; i < 100; i++) {
		if (i == 0)
			snprintf(dst, sizeof(dst), "%s", name);
		else
			snprintf(dst, sizeof(dst), "%s.%d", name, i);
		if (renameat2(q->msgfd, name, q->corruptfd, dst,
		    RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EINVAL || errno == ENOSYS)
			return renameat(q->msgfd, name, q->corruptfd, dst) ==
			    -1 ? -errno : 0;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/* True for load errors that mean "this record's content is bad". */
static bool
queue_err_corrupt(int r)
{
	return r == -EBADMSG || r == -ENOTSUP || r == -EFBIG || r == -EIO;
}

/*
 * The schedule hint of a journal: its modification time when that is in
 * the future (queue_set_schedule() sets it to the next attempt), else 0.
 */
static void
queue_stub_schedule(struct queue *q, struct queue_stub *st, time_t now)
{
	char jname[QUEUE_NAME_MAX];
	struct stat sb;

	queue_journal_name(jname, st->id);
	if (fstatat(q->msgfd, jname, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	    sb.st_mtime > now)
		st->next_attempt = sb.st_mtime;
}

/* Turns the sorted directory listing into stubs, removing orphans. */
static int
queue_stubs_from(struct queue *q, const struct queue_ent *ents, size_t n,
    struct queue_stub **stubsp, size_t *np)
{
	char jname[QUEUE_NAME_MAX];
	struct queue_stub *stubs, *st;
	time_t now = time(NULL);
	size_t i, k = 0;

	if ((stubs = calloc(n > 0 ? n : 1, sizeof(*stubs))) == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (ents[i].journal) {
			/* A journal without a record: an orphan. */
			queue_journal_name(jname, ents[i].id);
			unlinkat(q->msgfd, jname, 0);
			continue;
		}
		st = &stubs[k++];
		memcpy(st->id, ents[i].id, sizeof(st->id));
		st->arrival = queue_id_time(st->id);
		st->journal = i + 1 < n && ents[i + 1].journal &&
		    strcmp(ents[i + 1].id, st->id) == 0;
		if (st->journal) {
			i++;
			queue_stub_schedule(q, st, now);
		}
	}
	*stubsp = stubs;
	*np = k;
	return 0;
}

int
queue_scan(struct queue *q, struct queue_stub **stubsp, size_t *np,
    char **err)
{
	struct queue_ent *ents = NULL;
	const char *what = "tmp";
	size_t n = 0;
	int r;

	*stubsp = NULL;
	*np = 0;
	if (err != NULL)
		*err = NULL;
	if ((r = queue_clean_tmp(q)) < 0)
		goto fail;
	what = "msg";
	if ((r = queue_scan_msg(q, &ents, &n)) < 0)
		goto fail;
	if (n > 0)
		qsort(ents, n, sizeof(*ents), queue_ent_cmp);
	r = queue_stubs_from(q, ents, n, stubsp, np);
	free(ents);
	if (r == 0)
		return 0;
fail:
	if (err != NULL && asprintf(err, "spool %s/%s: %s", q->dir, what,
	    strerror(-r)) == -1)
		*err = NULL;
	return r;
}

int
queue_load_stub(struct queue *q, const struct queue_stub *st,
    struct queue_msg **mp)
{
	char jname[QUEUE_NAME_MAX];
	int r;

	*mp = NULL;
	if (!queue_id_valid(st->id))
		return -EINVAL;
	if ((r = queue_load_one(q, st->id, st->journal, mp)) == 0 ||
	    !queue_err_corrupt(r))
		return r;
	queue_journal_name(jname, st->id);
	if ((r = queue_move_aside(q, st->id)) < 0 ||
	    (st->journal && (r = queue_move_aside(q, jname)) < 0) ||
	    fsync(q->corruptfd) == -1 || fsync(q->msgfd) == -1)
		return r < 0 ? r : -errno;
	return -EBADMSG;
}

int
queue_recover(struct queue *q, void (*cb)(struct queue_msg *, void *),
    void *arg, size_t *ncorrupt, char **err)
{
	struct queue_stub *stubs;
	struct queue_msg *m;
	size_t n, i, bad = 0;
	int r;

	if (ncorrupt != NULL)
		*ncorrupt = 0;
	if ((r = queue_scan(q, &stubs, &n, err)) < 0)
		return r;
	for (i = 0; i < n; i++) {
		if ((r = queue_load_stub(q, &stubs[i], &m)) == 0) {
			cb(m, arg);
			continue;
		}
		if (r == -EBADMSG)
			bad++;
		else if (r != -ENOENT)	/* -ENOENT: removed meanwhile */
			break;
	}
	if (r < 0 && r != -EBADMSG && r != -ENOENT && err != NULL &&
	    asprintf(err, "spool %s/msg/%s: %s", q->dir, stubs[i].id,
	    strerror(-r)) == -1)
		*err = NULL;
	free(stubs);
	if (ncorrupt != NULL)
		*ncorrupt = bad;
	return r < 0 && r != -EBADMSG && r != -ENOENT ? r : 0;
}
