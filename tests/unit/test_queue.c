/*
 * Unit tests of the queue module: what is on disk after commits, crashes,
 * journal updates and failures, observed through the public API and the
 * spool directory itself.
 *
 * Heavy cases are sized by the environment so that they can run under
 * valgrind: QUEUE_TEST_BIG_MB (default 30), QUEUE_TEST_CRASH_ROUNDS
 * (default 30), QUEUE_TEST_FUZZ (default 20000 mutations).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_env.h"

#include "queue.h"
#include "queue_format.h"

struct fixture {
	char dir[256];
	struct queue *q;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	char *err = NULL;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/queue-test.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	/* The spool itself is created below the temporary directory. */
	strcat(f->dir, "/spool/q");
	assert_int_equal(queue_open(f->dir, &f->q, &err), 0);
	assert_null(err);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char *top = strdup(f->dir);

	queue_close(f->q);
	*strstr(top, "/spool/q") = '\0';
	test_rmtree(top);
	free(top);
	free(f);
	return 0;
}

/* Counts the entries of spool subdirectory sub. */
static int
count_dir(struct fixture *f, const char *sub)
{
	char path[512];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", f->dir, sub);
	assert_non_null(d = opendir(path));
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
spool_path(struct fixture *f, char *buf, size_t size, const char *sub,
    const char *name)
{
	snprintf(buf, size, "%s/%s/%s", f->dir, sub, name);
}

static void
write_file(const char *path, const void *buf, size_t len, int oflags)
{
	int fd = open(path, O_WRONLY | O_CREAT | oflags, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

static uint64_t
fnv1a(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

#define FNV_INIT UINT64_C(0xcbf29ce484222325)

/* Writes and commits one message; returns its id in id. */
static void
put_msg(struct fixture *f, const char *from, const char *const *rcpts,
    size_t nrcpt, const void *body, size_t len, char id[QUEUE_ID_LEN + 1])
{
	struct queue_writer *w;

	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, from, rcpts, nrcpt, 0,
	    1700000000), 0);
	assert_int_equal(queue_writer_write(w, body, len), 0);
	assert_int_equal(queue_writer_commit(w), 0);
	strcpy(id, queue_writer_id(w));
	queue_writer_free(w);
}

/* Reads a message's whole body (small ones) through queue_body_open. */
static char *
read_body(struct fixture *f, const struct queue_msg *m, size_t *lenp)
{
	char *buf = malloc(m->size + 1);
	size_t done = 0;
	ssize_t n;
	int fd;

	assert_non_null(buf);
	assert_int_equal(queue_body_open(f->q, m, &fd), 0);
	while ((n = read(fd, buf + done, m->size + 1 - done)) > 0)
		done += (size_t)n;
	close(fd);
	assert_int_equal(done, m->size);
	*lenp = done;
	return buf;
}

static void
count_cb(struct queue_msg *m, void *arg)
{
	(*(size_t *)arg)++;
	queue_msg_free(m);
}

/* ---- round trips -------------------------------------------------------- */

static void
test_roundtrip(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { "bob@example.net", "carol@example.com",
	    "\"odd>name\"@example.org" };
	const char body[] = "Subject: caf\xc3\xa9\r\n\r\nbin \x01\x7f\xff\xfe"
	    "\r\n.\r\n..dot\r\n";
	char id[QUEUE_ID_LEN + 1], *got;
	struct queue_msg *m;
	size_t len;

	put_msg(f, "", rcpts, 3, body, sizeof(body) - 1, id);
	assert_true(queue_id_valid(id));
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_string_equal(m->id, id);
	assert_string_equal(m->from, "");
	assert_int_equal(m->nrcpt, 3);
	assert_string_equal(m->rcpt[2].addr, rcpts[2]);
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_PENDING);
	assert_int_equal(m->arrival, 1700000000);
	/* 8-bit bytes in the body set the flag at commit. */
	assert_int_equal(m->flags, QUEUE_F_8BITMIME);
	assert_int_equal(m->size, sizeof(body) - 1);
	assert_int_equal(m->attempts, 0);
	assert_false(queue_msg_done(m));
	got = read_body(f, m, &len);
	assert_memory_equal(got, body, sizeof(body) - 1);
	free(got);
	queue_msg_free(m);
	queue_msg_free(NULL);
}

static void
test_flags_kept(void **state)
{
	struct fixture *f = *state;
	const char *rcpt = "x@y";
	struct queue_writer *w;
	struct queue_msg *m;
	char id[QUEUE_ID_LEN + 1];

	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, "a@b", &rcpt, 1,
	    QUEUE_F_SMTPUTF8 | QUEUE_F_DSN, 5), 0);
	assert_int_equal(queue_writer_write(w, "7bit\r\n", 6), 0);
	assert_int_equal(queue_writer_size(w), 6);
	assert_int_equal(queue_writer_commit(w), 0);
	/* A second commit is refused and changes nothing. */
	assert_int_equal(queue_writer_commit(w), -EINVAL);
	strcpy(id, queue_writer_id(w));
	queue_writer_free(w);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->flags, QUEUE_F_SMTPUTF8 | QUEUE_F_DSN);
	assert_string_equal(m->from, "a@b");
	queue_msg_free(m);
}

static void
test_envelope_rejects(void **state)
{
	struct fixture *f = *state;
	const char *bad_cr[] = { "a@b\r\nrcpt <evil@x>" };
	const char *empty[] = { "" };
	const char *ok[] = { "ok@x" };
	const char **many;
	struct queue_writer *w;
	size_t i;

	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_write(w, "x", 1), -EINVAL);
	assert_int_equal(queue_writer_commit(w), -EINVAL);
	assert_int_equal(queue_writer_envelope(w, "a@b", bad_cr, 1, 0, 1),
	    -EINVAL);
	assert_int_equal(queue_writer_envelope(w, "a\n@b", ok, 1, 0, 1),
	    -EINVAL);
	assert_int_equal(queue_writer_envelope(w, "a@b", empty, 1, 0, 1),
	    -EINVAL);
	assert_int_equal(queue_writer_envelope(w, "a@b", ok, 0, 0, 1),
	    -EINVAL);
	many = calloc(QUEUE_MAX_RCPT + 1, sizeof(*many));
	assert_non_null(many);
	for (i = 0; i <= QUEUE_MAX_RCPT; i++)
		many[i] = "r@x";
	assert_int_equal(queue_writer_envelope(w, "a@b", many,
	    QUEUE_MAX_RCPT + 1, 0, 1), -EINVAL);
	free(many);
	queue_writer_free(w);
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(count_dir(f, "msg"), 0);
}

static void
test_many_rcpts(void **state)
{
	struct fixture *f = *state;
	enum { N = 3000 };
	char (*addrs)[64] = calloc(N, sizeof(*addrs));
	const char **rcpts = calloc(N, sizeof(*rcpts));
	char id[QUEUE_ID_LEN + 1];
	struct queue_msg *m;
	size_t i, ncorrupt, n = 0;

	assert_non_null(addrs);
	assert_non_null(rcpts);
	for (i = 0; i < N; i++) {
		snprintf(addrs[i], sizeof(addrs[i]),
		    "recipient-%05zu@example.org", i);
		rcpts[i] = addrs[i];
	}
	/* The envelope (~100 KiB) is far longer than the first read. */
	put_msg(f, "sender@example.org", rcpts, N, "hi\r\n", 4, id);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->nrcpt, N);
	for (i = 0; i < N; i++)
		assert_string_equal(m->rcpt[i].addr, addrs[i]);
	assert_int_equal(m->size, 4);
	queue_msg_free(m);
	assert_int_equal(queue_recover(f->q, count_cb, &n, &ncorrupt, NULL),
	    0);
	assert_int_equal(ncorrupt, 0);
	assert_int_equal(n, 1);
	free(rcpts);
	free(addrs);
}

static void
test_big_body(void **state)
{
	struct fixture *f = *state;
	long mb = env_num("QUEUE_TEST_BIG_MB", 30);
	size_t total = (size_t)mb << 20, done = 0, chunk, len;
	const char *rcpt = "big@example.org";
	unsigned char buf[7001];
	uint64_t hin = FNV_INIT, hout = FNV_INIT;
	struct queue_writer *w;
	struct mallinfo2 mi;
	size_t before, peak = 0;
	struct queue_msg *m;
	char id[QUEUE_ID_LEN + 1];
	unsigned seed = 1;
	ssize_t n;
	int fd, i;

	mi = mallinfo2();
	before = mi.uordblks;
	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, "a@b", &rcpt, 1, 0, 1), 0);
	while (done < total) {
		chunk = total - done < sizeof(buf) ? total - done :
		    sizeof(buf);
		for (i = 0; i < (int)chunk; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (unsigned char)(seed >> 16);
		}
		hin = fnv1a(hin, buf, chunk);
		assert_int_equal(queue_writer_write(w, buf, chunk), 0);
		done += chunk;
		mi = mallinfo2();
		if (mi.uordblks > peak)
			peak = mi.uordblks;
	}
	/* Memory stays bounded: one small buffer, not the body. */
	assert_true(peak - before < 64 * 1024);
	assert_int_equal(queue_writer_size(w), total);
	assert_int_equal(queue_writer_commit(w), 0);
	strcpy(id, queue_writer_id(w));
	queue_writer_free(w);

	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->size, total);
	assert_int_equal(queue_body_open(f->q, m, &fd), 0);
	len = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		hout = fnv1a(hout, buf, (size_t)n);
		len += (size_t)n;
	}
	close(fd);
	assert_int_equal(len, total);
	assert_true(hin == hout);
	queue_msg_free(m);
}

/* ---- ids ---------------------------------------------------------------- */

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_ids(void **state)
{
	enum { N = 10000 };
	char (*ids)[QUEUE_ID_LEN + 1] = calloc(N, sizeof(*ids));
	int i;

	(void)state;
	assert_non_null(ids);
	for (i = 0; i < N; i++) {
		queue_new_id(ids[i]);
		assert_true(queue_id_valid(ids[i]));
		/* Time-ordered: strictly increasing within a process. */
		if (i > 0)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	}
	qsort(ids, N, sizeof(*ids), cmp_id);
	for (i = 1; i < N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
	free(ids);

	assert_true(queue_id_valid("0123456789ABCDEF"));
	assert_false(queue_id_valid(NULL));
	assert_false(queue_id_valid(""));
	assert_false(queue_id_valid("../x"));
	assert_false(queue_id_valid("../../etc/passwd"));
	assert_false(queue_id_valid("0123456789abcdef"));
	assert_false(queue_id_valid("0123456789ABCDE"));
	assert_false(queue_id_valid("0123456789ABCDEF0"));
	assert_false(queue_id_valid("0123456789ABCDE/"));
	assert_false(queue_id_valid("0123456789ABCDE."));
	assert_false(queue_id_valid("0123456789ABCDEF.state"));
	assert_false(queue_id_valid(" 123456789ABCDEF"));
}

static void
test_api_rejects_bad_ids(void **state)
{
	struct fixture *f = *state;
	struct queue_msg *m;

	assert_int_equal(queue_load(f->q, "../x", &m), -EINVAL);
	assert_null(m);
	assert_int_equal(queue_remove(f->q, "../../etc/passwd"), -EINVAL);
	assert_int_equal(queue_remove(f->q, ""), -EINVAL);
	assert_int_equal(queue_load(f->q, "0123456789ABCDEF", &m), -ENOENT);
	assert_int_equal(queue_remove(f->q, "0123456789ABCDEF"), -ENOENT);
}

/* ---- crashes before commit ---------------------------------------------- */

static void
test_uncommitted(void **state)
{
	struct fixture *f = *state;
	const char *rcpt = "x@y";
	struct queue_writer *w, *live;
	char path[512], *err = NULL;
	size_t n = 0, ncorrupt = 9;

	/* Freed without commit: gone at once. */
	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, "a@b", &rcpt, 1, 0, 1), 0);
	assert_int_equal(queue_writer_write(w, "abc", 3), 0);
	assert_int_equal(count_dir(f, "tmp"), 1);
	queue_writer_free(w);
	assert_int_equal(count_dir(f, "tmp"), 0);

	/* Leftovers of a dead process (no lock held) go at recovery. */
	spool_path(f, path, sizeof(path), "tmp", "0000000000000001");
	write_file(path, "SMARTRELAY-QUEUE 1\nid", 21, O_EXCL);
	spool_path(f, path, sizeof(path), "tmp", "junk");
	write_file(path, "x", 1, O_EXCL);
	/* A live writer (another process, say sendmail) is left alone. */
	assert_int_equal(queue_writer_new(f->q, &live), 0);
	assert_int_equal(queue_writer_envelope(live, "a@b", &rcpt, 1, 0, 1),
	    0);
	assert_int_equal(queue_recover(f->q, count_cb, &n, &ncorrupt, &err),
	    0);
	assert_null(err);
	assert_int_equal(n, 0);
	assert_int_equal(ncorrupt, 0);
	assert_int_equal(count_dir(f, "tmp"), 1);
	assert_int_equal(count_dir(f, "msg"), 0);
	assert_int_equal(queue_writer_write(live, "body\r\n", 6), 0);
	assert_int_equal(queue_writer_commit(live), 0);
	queue_writer_free(live);
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(queue_recover(f->q, count_cb, &n, &ncorrupt, NULL),
	    0);
	assert_int_equal(n, 1);
}

/* ---- journal ------------------------------------------------------------ */

struct collect {
	struct queue_msg *msgs[64];
	size_t n;
};

static void
collect_cb(struct queue_msg *m, void *arg)
{
	struct collect *c = arg;

	assert_true(c->n < 64);
	c->msgs[c->n++] = m;
}

static void
collect_free(struct collect *c)
{
	while (c->n > 0)
		queue_msg_free(c->msgs[--c->n]);
}

static void
reopen(struct fixture *f)
{
	queue_close(f->q);
	assert_int_equal(queue_open(f->dir, &f->q, NULL), 0);
}

static void
test_journal_replay(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { "a@x", "b@x", "c@x" };
	char id[QUEUE_ID_LEN + 1], id2[QUEUE_ID_LEN + 1];
	struct collect c = { .n = 0 };
	struct queue_msg *m;
	size_t ncorrupt;

	put_msg(f, "s@x", rcpts, 3, "b\r\n", 3, id);
	put_msg(f, "s@x", rcpts, 1, "c\r\n", 3, id2);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    "250 2.0.0 OK 1700000000 x1si.1 - gsmtp"), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 2, QUEUE_RCPT_FAILED,
	    "550-5.1.1 The email account\r\n550 5.1.1 does not exist\t\x01"
	    "\xc3\xa9"), 0);
	assert_int_equal(queue_set_schedule(f->q, m, 2, 1700000600,
	    "421 4.7.0 Try again later"), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 3, QUEUE_RCPT_DELIVERED,
	    NULL), -EINVAL);
	assert_int_equal(queue_set_schedule(f->q, m, 3, -1, NULL), -EINVAL);
	assert_string_equal(m->rcpt[2].reply,
	    "550-5.1.1 The email account 550 5.1.1 does not exist ???");
	assert_false(queue_msg_done(m));
	queue_msg_free(m);

	reopen(f);
	assert_int_equal(queue_recover(f->q, collect_cb, &c, &ncorrupt, NULL),
	    0);
	assert_int_equal(ncorrupt, 0);
	assert_int_equal(c.n, 2);
	/* Handed over in arrival (id) order. */
	assert_string_equal(c.msgs[0]->id, id);
	assert_string_equal(c.msgs[1]->id, id2);
	m = c.msgs[0];
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_string_equal(m->rcpt[0].reply,
	    "250 2.0.0 OK 1700000000 x1si.1 - gsmtp");
	assert_true(m->rcpt[0].updated > 1700000000);
	assert_int_equal(m->rcpt[1].state, QUEUE_RCPT_PENDING);
	assert_null(m->rcpt[1].reply);
	assert_int_equal(m->rcpt[2].state, QUEUE_RCPT_FAILED);
	assert_string_equal(m->rcpt[2].reply,
	    "550-5.1.1 The email account 550 5.1.1 does not exist ???");
	assert_int_equal(m->attempts, 2);
	assert_int_equal(m->next_attempt, 1700000600);
	assert_string_equal(m->last_reply, "421 4.7.0 Try again later");
	assert_int_equal(c.msgs[1]->attempts, 0);

	/* The last event wins; the message becomes done. */
	assert_int_equal(queue_set_rcpt(f->q, m, 1, QUEUE_RCPT_DELIVERED,
	    "250 ok"), 0);
	assert_true(queue_msg_done(m));
	collect_free(&c);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_true(queue_msg_done(m));
	queue_msg_free(m);
}

static void
journal_path(struct fixture *f, const char *id, char *buf, size_t size)
{
	char name[64];

	snprintf(name, sizeof(name), "%s.state", id);
	spool_path(f, buf, size, "msg", name);
}

/*
 * A full spool: a state whose line with its reply does not fit is recorded
 * without the reply.  RLIMIT_FSIZE stands in for the full disk (a short
 * write); queue_reserve() on a really full one is tested in
 * tests/scenario/test_diskfull.py (fallocate ignores RLIMIT_FSIZE).
 */
static void
test_journal_full(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { "a@x", "b@x" };
	char id[QUEUE_ID_LEN + 1], path[512], reply[900];
	struct queue_msg *m;
	struct rlimit old, lim;
	void (*oldsig)(int);
	struct stat st;

	put_msg(f, "s@x", rcpts, 2, "b\r\n", 3, id);
	journal_path(f, id, path, sizeof(path));
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(queue_reserve(f->q, m), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	memset(reply, 'r', sizeof(reply) - 1);
	memcpy(reply, "250 ", 4);
	reply[sizeof(reply) - 1] = '\0';

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	oldsig = signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 200;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    reply), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size > 0 && st.st_size < 64);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	queue_msg_free(m);

	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_null(m->rcpt[0].reply);
	assert_int_equal(m->rcpt[1].state, QUEUE_RCPT_PENDING);
	/* With room again the reply is kept. */
	assert_int_equal(queue_set_rcpt(f->q, m, 1, QUEUE_RCPT_DELIVERED,
	    reply), 0);
	queue_msg_free(m);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_string_equal(m->rcpt[1].reply, reply);
	queue_msg_free(m);
}

static void
test_journal_torn(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { "a@x", "b@x", "c@x", "d@x" };
	char id[QUEUE_ID_LEN + 1], path[512], buf[4096];
	struct queue_msg *m;
	struct stat st;
	ssize_t n;
	int fd;

	put_msg(f, "s@x", rcpts, 4, "b\r\n", 3, id);
	journal_path(f, id, path, sizeof(path));
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    "250 a"), 0);

	/* A torn line (crash in the middle of an append). */
	write_file(path, "1234ABCD rcpt 1 deliv", 21, O_APPEND);
	queue_msg_free(m);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_int_equal(m->rcpt[1].state, QUEUE_RCPT_PENDING);
	/* The next append cuts the torn tail and still lands whole. */
	assert_int_equal(queue_set_rcpt(f->q, m, 1, QUEUE_RCPT_FAILED,
	    "550 b"), 0);
	/* A whole garbage line, then a valid line truncated mid-way. */
	write_file(path, "garbage line\n", 13, O_APPEND);
	assert_int_equal(queue_set_rcpt(f->q, m, 2, QUEUE_RCPT_DELIVERED,
	    "250 c"), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 4), 0);
	queue_msg_free(m);

	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_int_equal(m->rcpt[1].state, QUEUE_RCPT_FAILED);
	assert_string_equal(m->rcpt[1].reply, "550 b");
	assert_int_equal(m->rcpt[2].state, QUEUE_RCPT_PENDING);
	assert_int_equal(queue_set_rcpt(f->q, m, 3, QUEUE_RCPT_DELIVERED,
	    "250 d"), 0);
	queue_msg_free(m);

	/* On disk: every line but the garbage one is whole and checks. */
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	assert_true(n > 0 && buf[n - 1] == '\n');
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(queue_journal_apply(m, buf, (size_t)n), 1);
	assert_int_equal(m->rcpt[3].state, QUEUE_RCPT_DELIVERED);
	assert_int_equal(m->rcpt[2].state, QUEUE_RCPT_PENDING);
	queue_msg_free(m);
}

static void
test_orphan_journal(void **state)
{
	struct fixture *f = *state;
	const char *rcpt = "a@x";
	char id[QUEUE_ID_LEN + 1], path[512];
	struct queue_msg *m;
	size_t n = 0, ncorrupt;

	put_msg(f, "s@x", &rcpt, 1, "b\r\n", 3, id);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    "250"), 0);
	/* A crash between the two unlinks of queue_remove. */
	spool_path(f, path, sizeof(path), "msg", id);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(count_dir(f, "msg"), 1);
	/* An append for a record that is gone creates nothing new... */
	journal_path(f, id, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    "250"), -ENOENT);
	assert_int_equal(count_dir(f, "msg"), 0);
	/* ...and an orphan left over goes at recovery. */
	write_file(path, "x\n", 2, O_EXCL);
	spool_path(f, path, sizeof(path), "msg", "README");
	write_file(path, "not ours\n", 9, O_EXCL);
	assert_int_equal(queue_recover(f->q, count_cb, &n, &ncorrupt, NULL),
	    0);
	assert_int_equal(n, 0);
	assert_int_equal(ncorrupt, 0);
	/* Only the unrelated file is left. */
	assert_int_equal(count_dir(f, "msg"), 1);
	queue_msg_free(m);
}

/*
 * queue_scan lists every message without reading a record: the schedule
 * comes from the journal's mtime hint; orphans and tmp files go.
 * queue_load_stub reads the record, the journal being authoritative, and
 * moves an unreadable record aside.
 */
static void
test_scan(void **state)
{
	struct fixture *f = *state;
	const char *rcpt = "a@x";
	char id[3][QUEUE_ID_LEN + 1], path[512];
	time_t later = time(NULL) + 3600;
	struct queue_stub *st;
	struct queue_msg *m;
	size_t n, i;

	for (i = 0; i < 3; i++)
		put_msg(f, "s@x", &rcpt, 1, "b\r\n", 3, id[i]);
	assert_int_equal(queue_load(f->q, id[1], &m), 0);
	assert_int_equal(queue_set_schedule(f->q, m, 2, later, "451 x"), 0);
	queue_msg_free(m);
	assert_int_equal(queue_load(f->q, id[2], &m), 0);
	assert_int_equal(queue_set_schedule(f->q, m, 1, 0, NULL), 0);
	queue_msg_free(m);
	/* An orphan journal and a dead writer's tmp file. */
	spool_path(f, path, sizeof(path), "msg", "0000000000000001.state");
	write_file(path, "x\n", 2, O_EXCL);
	spool_path(f, path, sizeof(path), "tmp", "0000000000000002");
	write_file(path, "x", 1, O_EXCL);
	/* The record of id[0] becomes unreadable: the scan cannot tell. */
	spool_path(f, path, sizeof(path), "msg", id[0]);
	write_file(path, "garbage\n", 8, O_TRUNC);

	assert_int_equal(queue_scan(f->q, &st, &n, NULL), 0);
	assert_int_equal(n, 3);
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(count_dir(f, "msg"), 5);
	for (i = 0; i < 3; i++) {
		assert_string_equal(st[i].id, id[i]);
		assert_int_equal(st[i].arrival, queue_id_time(id[i]));
		assert_int_equal(st[i].journal, i > 0);
	}
	assert_int_equal(st[0].next_attempt, 0);
	assert_int_equal(st[1].next_attempt, later);
	assert_int_equal(st[2].next_attempt, 0);

	assert_int_equal(queue_load_stub(f->q, &st[0], &m), -EBADMSG);
	assert_null(m);
	assert_int_equal(count_dir(f, "corrupt"), 1);
	/* The hint lost (a crash, an older version): the journal decides. */
	spool_path(f, path, sizeof(path), "msg", id[1]);
	strcat(path, ".state");
	assert_int_equal(utimes(path, NULL), 0);
	assert_int_equal(queue_load_stub(f->q, &st[1], &m), 0);
	assert_int_equal(m->attempts, 2);
	assert_int_equal(m->next_attempt, later);
	assert_string_equal(m->last_reply, "451 x");
	queue_msg_free(m);
	assert_int_equal(queue_remove(f->q, id[2]), 0);
	assert_int_equal(queue_load_stub(f->q, &st[2], &m), -ENOENT);
	free(st);
}

/* Asserts that two messages hold the same envelope and state. */
static void
assert_same_msg(const struct queue_msg *a, const struct queue_msg *b)
{
	size_t i;

	assert_string_equal(a->id, b->id);
	assert_int_equal(a->arrival, b->arrival);
	assert_string_equal(a->from, b->from);
	assert_int_equal(a->nrcpt, b->nrcpt);
	for (i = 0; i < a->nrcpt; i++) {
		assert_string_equal(a->rcpt[i].addr, b->rcpt[i].addr);
		assert_int_equal(a->rcpt[i].state, b->rcpt[i].state);
		assert_int_equal(a->rcpt[i].notify, b->rcpt[i].notify);
		assert_true((a->rcpt[i].orcpt == NULL) ==
		    (b->rcpt[i].orcpt == NULL));
		if (a->rcpt[i].orcpt != NULL)
			assert_string_equal(a->rcpt[i].orcpt,
			    b->rcpt[i].orcpt);
	}
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->body_offset, b->body_offset);
	assert_int_equal(a->attempts, b->attempts);
	assert_int_equal(a->next_attempt, b->next_attempt);
	assert_int_equal(a->ret, b->ret);
	assert_true((a->envid == NULL) == (b->envid == NULL));
	if (a->envid != NULL)
		assert_string_equal(a->envid, b->envid);
}

/*
 * queue_writer_take gives what queue_load would read back (DSN keys, the
 * 8BITMIME flag set at commit, sizes, offsets), only after the commit; a
 * writer whose envelope did not fit its buffer says so.
 */
static void
test_writer_take(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { "a@x", "b@x" }, *one = "c@x";
	const struct queue_dsn_rcpt d[] = {
		{ QUEUE_NOTIFY_SUCCESS, "rfc822;a@x" }, { 0, NULL },
	};
	char *big = malloc(QUEUE_MAX_ADDR + 1);
	const char *bigp = big;
	struct queue_writer *w;
	struct queue_msg *m, *l;
	int i;

	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_HDRS, "e1", d), 0);
	assert_int_equal(queue_writer_envelope(w, "", rcpts, 2, 0, 7), 0);
	assert_int_equal(queue_writer_write(w, "caf\xc3\xa9\r\n", 7), 0);
	assert_int_equal(queue_writer_take(w, &m), -ENOENT);
	assert_int_equal(queue_writer_commit(w), 0);
	assert_int_equal(queue_writer_take(w, &m), 0);
	assert_int_equal(queue_writer_take(w, &l), -ENOENT);
	assert_true(m->flags & QUEUE_F_8BITMIME);
	assert_int_equal(m->size, 7);
	assert_int_equal(queue_load(f->q, m->id, &l), 0);
	assert_same_msg(m, l);
	queue_msg_free(m);
	queue_msg_free(l);
	queue_writer_free(w);

	/* An envelope larger than the writer's buffer: load it instead. */
	memset(big, 'x', QUEUE_MAX_ADDR);
	memcpy(big + QUEUE_MAX_ADDR - 2, "@x", 2);
	big[QUEUE_MAX_ADDR] = '\0';
	assert_int_equal(queue_writer_new(f->q, &w), 0);
	{
		const char *many[20];

		for (i = 0; i < 20; i++)
			many[i] = bigp;
		assert_int_equal(queue_writer_envelope(w, one, many, 20, 0,
		    7), 0);
	}
	assert_int_equal(queue_writer_write(w, "b\r\n", 3), 0);
	assert_int_equal(queue_writer_commit(w), 0);
	assert_int_equal(queue_writer_take(w, &m), -ENOENT);
	queue_writer_free(w);
	free(big);
}

static void
test_remove(void **state)
{
	struct fixture *f = *state;
	const char *rcpt = "a@x";
	char id[QUEUE_ID_LEN + 1], id2[QUEUE_ID_LEN + 1];
	struct queue_msg *m;

	put_msg(f, "s@x", &rcpt, 1, "b\r\n", 3, id);
	put_msg(f, "s@x", &rcpt, 1, "b\r\n", 3, id2);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(queue_set_schedule(f->q, m, 1, 0, NULL), 0);
	queue_msg_free(m);
	assert_int_equal(count_dir(f, "msg"), 3);
	assert_int_equal(queue_remove(f->q, id), 0);
	assert_int_equal(count_dir(f, "msg"), 1);
	assert_int_equal(queue_load(f->q, id, &m), -ENOENT);
	assert_int_equal(queue_remove(f->q, id), -ENOENT);
	assert_int_equal(queue_load(f->q, id2, &m), 0);
	queue_msg_free(m);
}

/* ---- corrupt records ---------------------------------------------------- */

static void
test_corrupt(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *id, *text;
	} recs[] = {
		{ "0000000000000A01", "garbage\x00\xff" },
		{ "0000000000000A02", "SMARTRELAY-QUEUE 1\nid 0000000000000A02"
		    "\narrival 1\nflags 00000000\nfrom <a@b>\nrcpt <c@d>\n" },
		{ "0000000000000A03", "SMARTRELAY-QUEUE 2\nid 0000000000000A03"
		    "\nbody\n" },
		{ "0000000000000A04", "SMARTRELAY-QUEUE 1\nid 0000000000000B04"
		    "\narrival 1\nflags 00000000\nfrom <a@b>\nrcpt <c@d>\n"
		    "body\nx" },
		{ "0000000000000A05", "SMARTRELAY-QUEUE 1\nid 0000000000000A05"
		    "\narrival 1\nflags 00000000\nfrom <a@b>\nrcpt <c@d>\n"
		    "!must-understand 1\nbody\nx" },
		{ "0000000000000A06", "" },
	};
	const char good[] = "SMARTRELAY-QUEUE 1\nid 0000000000000A07\n"
	    "x-future-field whatever\narrival 7\nflags 00000000\nfrom <>\n"
	    "rcpt <c@d>\nbody\nhello";
	char path[512], name[64];
	struct collect c = { .n = 0 };
	size_t i, ncorrupt = 0;

	for (i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
		spool_path(f, path, sizeof(path), "msg", recs[i].id);
		write_file(path, recs[i].text, strlen(recs[i].text) +
		    (i == 0 ? 2 : 0), O_EXCL);
	}
	journal_path(f, "0000000000000A05", path, sizeof(path));
	write_file(path, "keep me\n", 8, O_EXCL);
	spool_path(f, path, sizeof(path), "msg", "0000000000000A07");
	write_file(path, good, sizeof(good) - 1, O_EXCL);

	assert_int_equal(queue_recover(f->q, collect_cb, &c, &ncorrupt, NULL),
	    0);
	assert_int_equal(ncorrupt, 6);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.msgs[0]->id, "0000000000000A07");
	assert_int_equal(c.msgs[0]->size, 5);
	assert_int_equal(c.msgs[0]->arrival, 7);
	collect_free(&c);
	/* Moved aside with their journal, never deleted. */
	assert_int_equal(count_dir(f, "corrupt"), 7);
	assert_int_equal(count_dir(f, "msg"), 1);
	for (i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
		spool_path(f, path, sizeof(path), "corrupt", recs[i].id);
		assert_int_equal(access(path, F_OK), 0);
	}
	snprintf(name, sizeof(name), "%s.state", "0000000000000A05");
	spool_path(f, path, sizeof(path), "corrupt", name);
	assert_int_equal(access(path, F_OK), 0);

	/* A second corrupt record of the same name does not replace it. */
	spool_path(f, path, sizeof(path), "msg", "0000000000000A01");
	write_file(path, "again", 5, O_EXCL);
	assert_int_equal(queue_recover(f->q, count_cb, &i, &ncorrupt, NULL),
	    0);
	assert_int_equal(ncorrupt, 1);
	assert_int_equal(count_dir(f, "corrupt"), 8);
}

/* ---- disk errors -------------------------------------------------------- */

static void
test_write_error(void **state)
{
	struct fixture *f = *state;
	const char *rcpt = "a@x";
	struct queue_writer *w;
	struct rlimit old, lim;
	void (*oldsig)(int);
	char buf[8192];
	int r = 0, i;

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	oldsig = signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 64 * 1024;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

	/* Fails while streaming: the error is sticky, the file goes. */
	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, "a@b", &rcpt, 1, 0, 1), 0);
	for (i = 0; i < 64 && r == 0; i++)
		r = queue_writer_write(w, buf, sizeof(buf));
	assert_int_equal(r, -EFBIG);
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(queue_writer_write(w, buf, 1), -EFBIG);
	assert_int_equal(queue_writer_commit(w), -EFBIG);
	queue_writer_free(w);

	/* Fails at commit: the last bytes were still buffered. */
	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, "a@b", &rcpt, 1, 0, 1), 0);
	for (i = 0; i < 64; i++)
		assert_int_equal(queue_writer_write(w, buf, 1024), 0);
	assert_int_equal(queue_writer_write(w, buf, 10), 0);
	assert_int_equal(queue_writer_commit(w), -EFBIG);
	queue_writer_free(w);

	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, oldsig);
	assert_int_equal(count_dir(f, "tmp"), 0);
	assert_int_equal(count_dir(f, "msg"), 0);
}

static void
test_open_error(void **state)
{
	struct fixture *f = *state;
	char path[512], *err = NULL;
	struct queue *q;

	/* A file where the spool should be. */
	snprintf(path, sizeof(path), "%s/file", f->dir);
	write_file(path, "x", 1, O_EXCL);
	strcat(path, "/spool");
	assert_int_equal(queue_open(path, &q, &err), -ENOTDIR);
	assert_null(q);
	assert_non_null(err);
	assert_non_null(strstr(err, path));
	free(err);
}

/* ---- concurrency and crashes -------------------------------------------- */

struct thread_arg {
	struct queue *q;
	int n;
	int failures;
};

static void *
thread_main(void *p)
{
	struct thread_arg *a = p;
	const char *rcpt = "t@x";
	struct queue_writer *w;
	int i;

	for (i = 0; i < a->n; i++) {
		if (queue_writer_new(a->q, &w) != 0) {
			a->failures++;
			continue;
		}
		if (queue_writer_envelope(w, "a@b", &rcpt, 1, 0, 1) != 0 ||
		    queue_writer_write(w, "hello\r\n", 7) != 0 ||
		    queue_writer_commit(w) != 0)
			a->failures++;
		queue_writer_free(w);
	}
	return NULL;
}

static void
test_threads(void **state)
{
	struct fixture *f = *state;
	struct thread_arg args[4];
	pthread_t th[4];
	size_t n = 0, ncorrupt;
	int i;

	for (i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){ f->q, 25, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, thread_main,
		    &args[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].failures, 0);
	}
	assert_int_equal(queue_recover(f->q, count_cb, &n, &ncorrupt, NULL),
	    0);
	assert_int_equal(n, 100);
	assert_int_equal(ncorrupt, 0);
}

/* Child of the crash test: commits messages until killed. */
static void
crash_child(const char *dir, int wfd, unsigned seed)
{
	static char body[65536];
	const char *rcpts[] = { "x@example.org", "y@example.org" };
	struct queue_writer *w;
	struct queue *q;
	char line[QUEUE_ID_LEN + 2], head[40];
	size_t len, hl, i, off;
	uint64_t h;

	if (queue_open(dir, &q, NULL) != 0)
		_exit(2);
	for (;;) {
		seed = seed * 1103515245u + 12345u;
		len = 100 + (seed >> 8) % (sizeof(body) - 200);
		hl = 32;	/* "X-Hash: " 16 hex "\r\n" and padding */
		for (i = hl; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			body[i] = (char)(seed >> 16);
		}
		h = fnv1a(FNV_INIT, body + hl, len - hl);
		snprintf(head, sizeof(head), "X-Hash: %016" PRIx64 "\r\n    \r\n",
		    h);
		memcpy(body, head, hl);
		if (queue_writer_new(q, &w) != 0 ||
		    queue_writer_envelope(w, "c@example.org", rcpts, 2, 0,
		    time(NULL)) != 0)
			_exit(3);
		/* Written in uneven pieces, as a session would. */
		for (off = 0; off < len; off += 3000)
			if (queue_writer_write(w, body + off, len - off <
			    3000 ? len - off : 3000) != 0)
				_exit(4);
		if (queue_writer_commit(w) != 0)
			_exit(5);
		snprintf(line, sizeof(line), "%s\n", queue_writer_id(w));
		queue_writer_free(w);
		if (write(wfd, line, QUEUE_ID_LEN + 1) != QUEUE_ID_LEN + 1)
			_exit(6);
	}
}

struct crash_check {
	struct fixture *f;
	char (*seen)[QUEUE_ID_LEN + 1];
	size_t nseen, cap;
	size_t bad;
};

/* Checks that a recovered message's body matches the hash it carries. */
static void
crash_cb(struct queue_msg *m, void *arg)
{
	struct crash_check *c = arg;
	char *body, hex[17];
	size_t len;

	body = read_body(c->f, m, &len);
	if (len < 32 || memcmp(body, "X-Hash: ", 8) != 0 ||
	    m->nrcpt != 2 ||
	    (snprintf(hex, sizeof(hex), "%016" PRIx64,
	    fnv1a(FNV_INIT, body + 32, len - 32)),
	    memcmp(body + 8, hex, 16) != 0))
		c->bad++;
	free(body);
	if (c->nseen == c->cap) {
		c->cap = c->cap == 0 ? 256 : c->cap * 2;
		assert_non_null(c->seen = realloc(c->seen,
		    c->cap * sizeof(*c->seen)));
	}
	strcpy(c->seen[c->nseen++], m->id);
	queue_msg_free(m);
}

static void
test_crash(void **state)
{
	struct fixture *f = *state;
	long rounds = env_num("QUEUE_TEST_CRASH_ROUNDS", 30), r;
	char (*reported)[QUEUE_ID_LEN + 1] = NULL;
	size_t nrep = 0, cap = 0, ncorrupt, i;
	struct crash_check c = { .f = f };
	char buf[4096], part[QUEUE_ID_LEN + 1];
	size_t plen = 0;
	unsigned seed = (unsigned)time(NULL);
	ssize_t n;
	pid_t pid;
	int fds[2], status, k;

	for (r = 0; r < rounds; r++) {
		assert_int_equal(pipe(fds), 0);
		seed = seed * 1103515245u + 12345u;
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(f->dir, fds[1], seed);
		}
		close(fds[1]);
		usleep(1000 + (seed >> 8) % 40000);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		plen = 0;
		while ((n = read(fds[0], buf, sizeof(buf))) > 0) {
			for (k = 0; k < n; k++) {
				if (buf[k] != '\n') {
					assert_true(plen < QUEUE_ID_LEN);
					part[plen++] = buf[k];
					continue;
				}
				part[plen] = '\0';
				plen = 0;
				if (nrep == cap) {
					cap = cap == 0 ? 256 : cap * 2;
					assert_non_null(reported = realloc(
					    reported, cap * sizeof(*reported)));
				}
				strcpy(reported[nrep++], part);
			}
		}
		close(fds[0]);

		/* Recover after every crash, as the daemon would. */
		c.nseen = 0;
		assert_int_equal(queue_recover(f->q, crash_cb, &c, &ncorrupt,
		    NULL), 0);
		assert_int_equal(ncorrupt, 0);
		assert_int_equal(c.bad, 0);
		assert_int_equal(count_dir(f, "tmp"), 0);
		for (i = 0; i < nrep; i++) {
			assert_non_null(bsearch(reported[i], c.seen, c.nseen,
			    sizeof(*c.seen), cmp_id));
		}
	}
	assert_true(nrep > 0);
	print_message("crash: %ld rounds, %zu acknowledged messages, all "
	    "recovered intact (%zu in spool)\n", rounds, nrep, c.nseen);
	free(reported);
	free(c.seen);
}

/* ---- the DSN request (RFC 3461) ----------------------------------------- */

static void
test_dsn_roundtrip(void **state)
{
	struct fixture *f = *state;
	const char *rcpts[] = { "a@x", "b@x", "c@x" };
	const struct queue_dsn_rcpt d[] = {
		{ QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY,
		    "rfc822;A+2Bx@x" },
		{ QUEUE_NOTIFY_NEVER, NULL },
		{ 0, NULL },
	};
	struct queue_writer *w;
	struct queue_msg *m;
	char id[QUEUE_ID_LEN + 1], path[PATH_MAX], rec[1024];
	int fd;
	ssize_t n;

	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_HDRS, "env+2Bid", d),
	    0);
	assert_int_equal(queue_writer_envelope(w, "s@x", rcpts, 3, 0, 7), 0);
	/* Once the envelope is written, the request is fixed. */
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_FULL, NULL, NULL),
	    -EINVAL);
	assert_int_equal(queue_writer_write(w, "b\r\n", 3), 0);
	assert_int_equal(queue_writer_commit(w), 0);
	strcpy(id, queue_writer_id(w));
	queue_writer_free(w);

	/* The keys an older reader skips, each recipient's after its line. */
	spool_path(f, path, sizeof(path), "msg", id);
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_true((n = read(fd, rec, sizeof(rec) - 1)) > 0);
	close(fd);
	rec[n] = '\0';
	assert_non_null(strstr(rec, "from <s@x>\nret hdrs\nenvid env+2Bid\n"
	    "rcpt <a@x>\nnotify success,delay\norcpt rfc822;A+2Bx@x\n"
	    "rcpt <b@x>\nnotify never\nrcpt <c@x>\nbody\n"));

	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->ret, QUEUE_RET_HDRS);
	assert_string_equal(m->envid, "env+2Bid");
	assert_int_equal(m->rcpt[0].notify,
	    QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY);
	assert_string_equal(m->rcpt[0].orcpt, "rfc822;A+2Bx@x");
	assert_int_equal(m->rcpt[1].notify, QUEUE_NOTIFY_NEVER);
	assert_null(m->rcpt[1].orcpt);
	assert_int_equal(m->rcpt[2].notify, 0);
	assert_int_equal(m->delay_notice, 0);

	/* The notice state is journaled and survives a reload. */
	assert_int_equal(queue_set_relayed(f->q, m, 0, "250 2.0.0 OK"), 0);
	assert_int_equal(queue_set_delay_notice(f->q, m, 1700000123), 0);
	assert_int_equal(queue_set_delay_notice(f->q, m, 0), -EINVAL);
	queue_msg_free(m);
	assert_int_equal(queue_load(f->q, id, &m), 0);
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_true(m->rcpt[0].relayed);
	assert_string_equal(m->rcpt[0].reply, "250 2.0.0 OK");
	assert_false(m->rcpt[1].relayed);
	assert_int_equal(m->delay_notice, 1700000123);
	queue_msg_free(m);
}

static void
test_dsn_rejects(void **state)
{
	struct fixture *f = *state;
	const char *rcpt = "a@x";
	const struct queue_dsn_rcpt never_and_more = {
		QUEUE_NOTIFY_NEVER | QUEUE_NOTIFY_FAILURE, NULL };
	const struct queue_dsn_rcpt bad_orcpt = { 0, "rfc822;a b@x" };
	const struct queue_dsn_rcpt no_type = { 0, "a@x" };
	struct queue_writer *w;

	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_dsn(w, (enum queue_ret)7, NULL, NULL),
	    -EINVAL);
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_FULL, "sp ace",
	    NULL), 0);
	assert_int_equal(queue_writer_envelope(w, "s@x", &rcpt, 1, 0, 7),
	    -EINVAL);
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_FULL, "x=y", NULL),
	    0);
	assert_int_equal(queue_writer_envelope(w, "s@x", &rcpt, 1, 0, 7),
	    -EINVAL);
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_FULL, NULL,
	    &never_and_more), 0);
	assert_int_equal(queue_writer_envelope(w, "s@x", &rcpt, 1, 0, 7),
	    -EINVAL);
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_FULL, NULL,
	    &bad_orcpt), 0);
	assert_int_equal(queue_writer_envelope(w, "s@x", &rcpt, 1, 0, 7),
	    -EINVAL);
	assert_int_equal(queue_writer_dsn(w, QUEUE_RET_FULL, NULL, &no_type),
	    0);
	assert_int_equal(queue_writer_envelope(w, "s@x", &rcpt, 1, 0, 7),
	    -EINVAL);
	queue_writer_free(w);
}

/*
 * A record and journal exactly as smartrelay wrote them before the DSN
 * keys existed (format version 1, no ret/envid/notify/orcpt lines, no
 * "dsn" journal events) keep working: loaded with the defaults, listed,
 * their journal applied.
 */
static void
test_dsn_old_record(void **state)
{
	struct fixture *f = *state;
	static const char rec[] = "SMARTRELAY-QUEUE 1\nid 0006123A9C3F2A17\n"
	    "arrival 1700000000\nflags 00000000\nfrom <alice@example.org>\n"
	    "rcpt <bob@example.net>\nrcpt <carol@example.com>\nbody\n"
	    "Subject: old\r\n\r\nold body\r\n";
	struct collect c = { .n = 0 };
	char path[PATH_MAX], line[QUEUE_LINE_MAX + 1];
	struct queue_msg *m;
	size_t ncorrupt, len;

	spool_path(f, path, sizeof(path), "msg", "0006123A9C3F2A17");
	write_file(path, rec, sizeof(rec) - 1, O_EXCL);
	assert_int_equal(queue_journal_format(line,
	    "rcpt 0 delivered 1700000100 250 2.0.0 OK", &len), 0);
	spool_path(f, path, sizeof(path), "msg", "0006123A9C3F2A17.state");
	write_file(path, line, len, O_EXCL);
	reopen(f);
	assert_int_equal(queue_recover(f->q, collect_cb, &c, &ncorrupt, NULL),
	    0);
	assert_int_equal(ncorrupt, 0);
	assert_int_equal(c.n, 1);
	m = c.msgs[0];
	assert_string_equal(m->id, "0006123A9C3F2A17");
	assert_int_equal(m->nrcpt, 2);
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_int_equal(m->rcpt[1].state, QUEUE_RCPT_PENDING);
	assert_int_equal(m->ret, QUEUE_RET_UNSET);
	assert_null(m->envid);
	assert_int_equal(m->rcpt[0].notify, 0);
	assert_int_equal(m->rcpt[1].notify, 0);
	assert_null(m->rcpt[1].orcpt);
	assert_false(m->rcpt[0].relayed);
	assert_int_equal(m->delay_notice, 0);
	assert_int_equal(m->size, strlen("Subject: old\r\n\r\nold body\r\n"));
	collect_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test_setup_teardown(test_dsn_roundtrip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_dsn_rejects, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_dsn_old_record, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_flags_kept, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_envelope_rejects, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_many_rcpts, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_big_body, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_api_rejects_bad_ids,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_uncommitted, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_journal_replay, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_journal_torn, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_orphan_journal, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_take, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_corrupt, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_open_error, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_full, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
