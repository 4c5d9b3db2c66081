/*
 * queue_maildrop: listing the spool, and the maildrop through which local
 * users submit (see queue.h; the format is described at the top of queue.c).
 */
#include "queue.h"
#include "queue_private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The maildrop (added with the smartrelay tool; docs/spool.md "The
 * maildrop").  Local users submit through the sendmail interface without
 * access to tmp/ and msg/: the tool, installed setgid to the submitters'
 * group, writes a complete version 1 record into the maildrop and the daemon
 * copies it into msg/ through an ordinary writer:
 *
 *   maildrop/      01730: group may create files, but not list or remove
 *                  others' (sticky)
 *   maildrop/tmp/  01730: records being written, like tmp/
 *
 * (The daemon sets no setgid bit on the directories: a hardened unit with
 * RestrictSUIDSGID= may not; it keeps one that tmpfiles.d set.  A record
 * made by root, whose group is not the maildrop's, is given the maildrop's
 * group.)
 *
 * A struct queue opened by queue_maildrop_open() has maildrop/tmp as its
 * tmp directory and maildrop/ as its msg directory, so the writer, the id
 * rules and queue_remove() work unchanged.  Records are made group-readable
 * (0640) as soon as they are created: the daemon reads them through the
 * group, since the submitting user owns them.  A submitter may not be able
 * to open maildrop/ for reading, which fsync() on a directory needs; then
 * the rename is made durable with syncfs() on the record instead.
 *
 * Everything in the maildrop is untrusted: queue_maildrop_load() opens
 * without following links or blocking on FIFOs, refuses other file types
 * and hard links, and bounds what it reads.
 */

/* Opens a directory for reading, or only as a path when we may not read it. */
static int
queue_open_dir_at(int dirfd, const char *name)
{
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 && errno == EACCES)
		fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd == -1 ? -errno : fd;
}

int
queue_open_existing(const char *dir, struct queue **qp, char **err)
{
	static const char *const subs[] = { "tmp", "msg", "corrupt" };
	struct queue *q;
	const char *what = dir;
	int *fds[3], fd, i, r;

	*qp = NULL;
	if (err != NULL)
		*err = NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -ENOMEM;
	q->dirfd = q->tmpfd = q->msgfd = q->corruptfd = -1;
	fds[0] = &q->tmpfd;
	fds[1] = &q->msgfd;
	fds[2] = &q->corruptfd;
	if ((q->dir = strdup(dir)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	q->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (q->dirfd == -1) {
		r = -errno;
		goto fail;
	}
	for (i = 0; i < 3; i++) {
		what = subs[i];
		fd = openat(q->dirfd, subs[i], O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC);
		if (fd == -1) {
			r = -errno;
			goto fail;
		}
		*fds[i] = fd;
	}
	*qp = q;
	return 0;
fail:
	queue_open_error(err, dir, what, r);
	queue_close(q);
	return r;
}

int
queue_list(struct queue *q, char (**idsp)[QUEUE_ID_LEN + 1], size_t *np)
{
	struct queue_ent *ents;
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n, i, k = 0;
	int r;

	*idsp = NULL;
	*np = 0;
	if ((r = queue_scan_msg(q, &ents, &n)) < 0)
		return r;
	if (n > 0)
		qsort(ents, n, sizeof(*ents), queue_ent_cmp);
	if ((ids = calloc(n > 0 ? n : 1, sizeof(*ids))) == NULL) {
		free(ents);
		return -ENOMEM;
	}
	for (i = 0; i < n; i++)
		if (!ents[i].journal)
			memcpy(ids[k++], ents[i].id, sizeof(ids[0]));
	free(ents);
	*idsp = ids;
	*np = k;
	return 0;
}

time_t
queue_id_time(const char *id)
{
	uint64_t v = 0;
	size_t i;

	if (!queue_id_valid(id))
		return 0;
	for (i = 0; i < QUEUE_ID_LEN; i++)
		v = v << 4 | (uint64_t)(id[i] <= '9' ? id[i] - '0' :
		    id[i] - 'A' + 10);
	return (time_t)((v >> 12) / 1000000u);
}

/*
 * Creates name in dirfd with mode (whatever the umask), or gives an existing
 * one that mode; a setgid bit the administrator set is kept.
 */
static int
queue_mkdir_mode(int dirfd, const char *name, mode_t mode, bool *created)
{
	struct stat st;
	int fd, r = 0;

	if (mkdirat(dirfd, name, 0700) == 0)
		*created = true;
	else if (errno != EEXIST)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1)
		return -errno;
	if (fstat(fd, &st) == -1)
		r = -errno;
	else if ((st.st_mode & 07777) != (mode | (st.st_mode & S_ISGID)) &&
	    fchmod(fd, mode | (st.st_mode & S_ISGID)) == -1)
		r = -errno;
	close(fd);
	return r;
}

/* Makes maildrop/ and maildrop/tmp, and lets the group search the spool. */
static int
queue_maildrop_create(int dirfd, const char **what)
{
	struct stat st;
	bool created = false;
	int fd, r;

	*what = "";
	if (fstat(dirfd, &st) == -1)
		return -errno;
	if (!(st.st_mode & S_IXGRP) &&
	    fchmod(dirfd, (st.st_mode & 07777) | S_IXGRP) == -1)
		return -errno;
	*what = "maildrop";
	if ((r = queue_mkdir_mode(dirfd, "maildrop", QUEUE_MAILDROP_MODE,
	    &created)) < 0)
		return r;
	if (created && fsync(dirfd) == -1)
		return -errno;
	fd = openat(dirfd, "maildrop", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	created = false;
	*what = "maildrop/tmp";
	r = queue_mkdir_mode(fd, "tmp", QUEUE_MAILDROP_MODE, &created);
	if (r == 0 && created && fsync(fd) == -1)
		r = -errno;
	/* The submitters' group is the maildrop's: tmp/ gets it too. */
	if (r == 0 && (fstat(fd, &st) == -1 || fchownat(fd, "tmp", (uid_t)-1,
	    st.st_gid, AT_SYMLINK_NOFOLLOW) == -1))
		r = -errno;
	close(fd);
	return r;
}

int
queue_maildrop_open(const char *spool, bool create, struct queue **qp,
    char **err)
{
	struct queue *q;
	const char *what = "";
	int r;

	*qp = NULL;
	if (err != NULL)
		*err = NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -ENOMEM;
	q->dirfd = q->tmpfd = q->msgfd = q->corruptfd = -1;
	if ((q->dir = strdup(spool)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	if ((r = queue_open_dir_at(AT_FDCWD, spool)) < 0)
		goto fail;
	q->dirfd = r;
	if (create && (r = queue_maildrop_create(q->dirfd, &what)) < 0)
		goto fail;
	what = "maildrop";
	if ((r = queue_open_dir_at(q->dirfd, "maildrop")) < 0)
		goto fail;
	q->msgfd = r;
	what = "maildrop/tmp";
	if ((r = queue_open_dir_at(q->msgfd, "tmp")) < 0)
		goto fail;
	q->tmpfd = r;
	*qp = q;
	return 0;
fail:
	if (err != NULL && r != -ENOMEM && asprintf(err, "spool %s%s%s: %s",
	    spool, *what != '\0' ? "/" : "", what, strerror(-r)) == -1)
		*err = NULL;
	queue_close(q);
	return r;
}

int
queue_maildrop_writer_new(struct queue *md, struct queue_writer **wp)
{
	struct stat dir, st;
	int r;

	if ((r = queue_writer_new(md, wp)) < 0)
		return r;
	/* The daemon reads (and recovery locks) it through the group. */
	if (fchmod((*wp)->fd, 0640) == -1 || fstat(md->msgfd, &dir) == -1 ||
	    fstat((*wp)->fd, &st) == -1 || (st.st_gid != dir.st_gid &&
	    fchown((*wp)->fd, (uid_t)-1, dir.st_gid) == -1)) {
		r = -errno;
		queue_writer_free(*wp);
		*wp = NULL;
	}
	return r;
}

int
queue_maildrop_commit(struct queue_writer *w)
{
	int r, dir = 0;

	if ((r = queue_writer_sync(w)) < 0 ||
	    (r = queue_writer_publish(w)) < 0)
		return r;
	/*
	 * A submitter cannot open maildrop/ for fsync(); syncfs() on the
	 * record commits the rename as well (the filesystem of both).
	 */
	if (fsync(w->q->msgfd) == -1 &&
	    (errno != EBADF || syncfs(w->fd) == -1))
		dir = -errno;
	return queue_writer_finish(w, dir);
}

int
queue_maildrop_load(struct queue *md, const char *id, size_t envelope_max,
    struct queue_msg **mp, int *fdp, struct stat *stp)
{
	struct queue_msg *m = NULL;
	struct stat st;
	char *buf = NULL, *nbuf;
	size_t cap = QUEUE_READ_FIRST, have = 0, off;
	ssize_t n;
	int fd, r;

	*mp = NULL;
	if (fdp != NULL)
		*fdp = -1;
	if (!queue_id_valid(id))
		return -EINVAL;
	fd = openat(md->msgfd, id, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC);
	if (fd == -1)
		return errno == ELOOP ? -EBADMSG : -errno;
	if (fstat(fd, &st) == -1) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		r = -EBADMSG;
		goto out;
	}
	if (stp != NULL)
		*stp = st;
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (buf = malloc(cap)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		if ((n = queue_pread_full(fd, buf + have, cap - have,
		    (off_t)have)) < 0) {
			r = (int)n;
			goto out;
		}
		have += (size_t)n;
		r = queue_parse_envelope(buf, have, m, &off);
		if (r != -EAGAIN)
			break;
		if (have < cap || cap >= envelope_max) {
			r = -EBADMSG;
			goto out;
		}
		cap = cap * 4 < envelope_max ? cap * 4 : envelope_max;
		if ((nbuf = realloc(buf, cap)) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		buf = nbuf;
	}
	if (r < 0)
		goto out;
	if (strcmp(m->id, id) != 0 || (uint64_t)st.st_size < off) {
		r = -EBADMSG;
		goto out;
	}
	m->size = (uint64_t)st.st_size - off;
	if (fdp != NULL) {
		if (lseek(fd, (off_t)off, SEEK_SET) == -1) {
			r = -errno;
			goto out;
		}
		*fdp = fd;
		fd = -1;
	}
	*mp = m;
	m = NULL;
out:
	free(buf);
	queue_msg_free(m);
	if (fd != -1)
		close(fd);
	return r;
}

int
queue_maildrop_clean(struct queue *md, time_t unreadable_after)
{
	struct dirent *de;
	struct stat st;
	time_t now = time(NULL);
	DIR *d;
	int fd, r = 0;

	if ((d = queue_opendir(md->tmpfd)) == NULL)
		return -errno;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (!queue_id_valid(de->d_name))
			continue;
		fd = openat(md->tmpfd, de->d_name, O_RDONLY | O_CLOEXEC |
		    O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
		if (fd == -1) {
			/* Not ours to read: only age can tell it is dead. */
			if (fstatat(md->tmpfd, de->d_name, &st,
			    AT_SYMLINK_NOFOLLOW) == 0 &&
			    (!S_ISREG(st.st_mode) ||
			    st.st_mtime + unreadable_after < now))
				unlinkat(md->tmpfd, de->d_name, 0);
			continue;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			unlinkat(md->tmpfd, de->d_name, 0);
		close(fd);
	}
	if (errno != 0)
		r = -errno;
	closedir(d);
	return r;
}

int
queue_maildrop_move_aside(struct queue *md, const char *id, char *dst,
    size_t dstsz)
{
	int fd, i, r = -EEXIST;

	if (!queue_id_valid(id))
		return -EINVAL;
	fd = openat(md->dirfd, "corrupt", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd == -1)
		return -errno;
	for (i = 0; i < 100 && r == -EEXIST; i++) {
		if (i == 0)
			snprintf(dst, dstsz, "maildrop-%s", id);
		else
			snprintf(dst, dstsz, "maildrop-%s.%d", id, i);
		r = renameat2(md->msgfd, id, fd, dst, RENAME_NOREPLACE) == -1 ?
		    -errno : 0;
		if (r == -EINVAL || r == -ENOSYS)	/* as in queue.c */
			r = renameat(md->msgfd, id, fd, dst) == -1 ? -errno : 0;
	}
	if (r == 0 && (fsync(fd) == -1 || fsync(md->msgfd) == -1))
		r = -errno;
	close(fd);
	return r;
}

int
queue_maildrop_stat(struct queue *md, const char *name, struct stat *st)
{
	if (fstatat(md->msgfd, name, st, AT_SYMLINK_NOFOLLOW) == -1)
		return -errno;
	return 0;
}
