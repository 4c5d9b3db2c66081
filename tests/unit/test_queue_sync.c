/*
 * Unit tests of the queue's directory fsyncs (common/queue.c, "Room for
 * the outcome" and "Removal"): which changes to msg/ are made durable, and
 * when.  A power loss undoes a directory change that no fsync of msg/
 * covered, which no test can cause; so this binary is linked with
 * -Wl,--wrap=fsync and notes, at each fsync of msg/, which of the
 * message's files exist then.  What it checks is the durability rule
 * itself: a journal line is only reported written once the journal's
 * directory entry is durable, and a journal is only unlinked after the
 * unlink of its record is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue.h"
#include "test_env.h"

/* What the fsyncs of msg/ saw. */
static struct {
	dev_t dev;
	ino_t ino;			/* msg/, 0: not watched */
	char record[512];		/* msg/ID */
	char journal[512];		/* msg/ID.state */
	int syncs;			/* fsyncs of msg/ */
	bool record_seen;		/* msg/ID existed at the last one */
	bool journal_seen;		/* msg/ID.state existed at the last one */
} watch;

int __real_fsync(int fd);
int __wrap_fsync(int fd);

int
__wrap_fsync(int fd)
{
	struct stat st;

	if (watch.ino != 0 && fstat(fd, &st) == 0 && st.st_ino == watch.ino &&
	    st.st_dev == watch.dev) {
		watch.syncs++;
		watch.record_seen = access(watch.record, F_OK) == 0;
		watch.journal_seen = access(watch.journal, F_OK) == 0;
	}
	return __real_fsync(fd);
}

struct fixture {
	char top[256];
	char dir[300];
	struct queue *q;
	char id[QUEUE_ID_LEN + 1];
};

/* A spool with one committed message (two recipients), msg/ watched. */
static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	const char *rcpts[] = { "a@x", "b@x" };
	struct queue_writer *w;
	char path[400];
	struct stat st;

	assert_non_null(f);
	snprintf(f->top, sizeof(f->top), "%s/queue-sync.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->top));
	snprintf(f->dir, sizeof(f->dir), "%s/spool", f->top);
	assert_int_equal(queue_open(f->dir, &f->q, NULL), 0);
	assert_int_equal(queue_writer_new(f->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, "s@x", rcpts, 2, 0,
	    1700000000), 0);
	assert_int_equal(queue_writer_write(w, "b\r\n", 3), 0);
	assert_int_equal(queue_writer_commit(w), 0);
	strcpy(f->id, queue_writer_id(w));
	queue_writer_free(w);
	snprintf(path, sizeof(path), "%s/msg", f->dir);
	assert_int_equal(stat(path, &st), 0);
	memset(&watch, 0, sizeof(watch));
	watch.dev = st.st_dev;
	watch.ino = st.st_ino;
	snprintf(watch.record, sizeof(watch.record), "%s/%s", path, f->id);
	snprintf(watch.journal, sizeof(watch.journal), "%s/%s.state", path,
	    f->id);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	watch.ino = 0;
	queue_close(f->q);
	test_rmtree(f->top);
	free(f);
	return 0;
}

/*
 * The reservation creates the journal without an fsync of msg/; the first
 * append makes its entry durable before it returns, later ones need not;
 * a journal found by another process (a restart) gets the fsync again at
 * its first append there, and every line is read back.
 */
static void
test_reserve_defers_the_directory_fsync(void **state)
{
	struct fixture *f = *state;
	struct queue_msg *m, *m2;
	struct stat st;

	assert_int_equal(queue_load(f->q, f->id, &m), 0);
	assert_int_equal(queue_reserve(f->q, m), 0);
	assert_int_equal(stat(watch.journal, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(watch.syncs, 0);

	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    "250 ok"), 0);
	assert_int_equal(watch.syncs, 1);
	assert_true(watch.journal_seen);
	assert_int_equal(queue_set_schedule(f->q, m, 1, 1700000100,
	    "451 later"), 0);
	assert_int_equal(queue_reserve(f->q, m), 0);
	assert_int_equal(watch.syncs, 1);

	/* Another process: the same spool opened again. */
	queue_close(f->q);
	assert_int_equal(queue_open(f->dir, &f->q, NULL), 0);
	assert_int_equal(queue_load(f->q, f->id, &m2), 0);
	assert_int_equal(m2->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_int_equal(m2->attempts, 1);
	assert_int_equal(queue_reserve(f->q, m2), 0);
	assert_int_equal(watch.syncs, 1);
	assert_int_equal(queue_set_rcpt(f->q, m2, 1, QUEUE_RCPT_FAILED,
	    "550 no"), 0);
	assert_int_equal(watch.syncs, 2);
	queue_msg_free(m2);
	assert_int_equal(queue_load(f->q, f->id, &m2), 0);
	assert_int_equal(m2->rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_int_equal(m2->rcpt[1].state, QUEUE_RCPT_FAILED);
	assert_string_equal(m2->rcpt[1].reply, "550 no");
	assert_int_equal(m2->next_attempt, 1700000100);
	assert_true(queue_msg_done(m2));
	queue_msg_free(m2);
	queue_msg_free(m);
}

/* A journal that a reservation made and a crash lost is no journal. */
static void
test_reserved_journal_lost_is_none(void **state)
{
	struct fixture *f = *state;
	struct queue_msg *m;

	assert_int_equal(queue_load(f->q, f->id, &m), 0);
	assert_int_equal(queue_reserve(f->q, m), 0);
	queue_msg_free(m);
	assert_int_equal(unlink(watch.journal), 0);
	assert_int_equal(queue_load(f->q, f->id, &m), 0);
	assert_int_equal(m->rcpt[0].state, QUEUE_RCPT_PENDING);
	assert_int_equal(m->next_attempt, 0);
	/* The next append creates it again, durably. */
	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    "250 ok"), 0);
	assert_int_equal(watch.syncs, 1);
	assert_true(watch.journal_seen);
	queue_msg_free(m);
}

/*
 * Removal in steps: the record goes, a directory fsync covers it (the
 * journal still there), and only then the journal; queue_remove() does
 * the same in one call.
 */
static void
test_remove_in_steps(void **state)
{
	struct fixture *f = *state;
	struct queue_msg *m;

	assert_int_equal(queue_load(f->q, f->id, &m), 0);
	assert_int_equal(queue_set_rcpt(f->q, m, 0, QUEUE_RCPT_DELIVERED,
	    "250 ok"), 0);
	queue_msg_free(m);
	watch.syncs = 0;
	assert_int_equal(queue_remove_record(f->q, f->id), 0);
	assert_int_equal(access(watch.record, F_OK), -1);
	assert_int_equal(access(watch.journal, F_OK), 0);
	assert_int_equal(watch.syncs, 0);
	assert_int_equal(queue_load(f->q, f->id, &m), -ENOENT);
	assert_int_equal(queue_sync_dir(f->q), 0);
	assert_int_equal(watch.syncs, 1);
	assert_false(watch.record_seen);
	assert_int_equal(queue_remove_journal(f->q, f->id), 0);
	assert_int_equal(access(watch.journal, F_OK), -1);
	/* Gone already: the record is reported, a missing journal is fine. */
	assert_int_equal(queue_remove_record(f->q, f->id), -ENOENT);
	assert_int_equal(queue_remove_journal(f->q, f->id), 0);
	assert_int_equal(queue_remove_record(f->q, "../x"), -EINVAL);
	assert_int_equal(queue_remove_journal(f->q, "../x"), -EINVAL);
}

static void
test_remove_orders_the_unlinks(void **state)
{
	struct fixture *f = *state;
	struct queue_msg *m;

	assert_int_equal(queue_load(f->q, f->id, &m), 0);
	assert_int_equal(queue_reserve(f->q, m), 0);
	queue_msg_free(m);
	assert_int_equal(queue_remove(f->q, f->id), 0);
	assert_int_equal(watch.syncs, 1);
	assert_false(watch.record_seen);
	assert_true(watch.journal_seen);
	assert_int_equal(access(watch.journal, F_OK), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_reserve_defers_the_directory_fsync, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_reserved_journal_lost_is_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_in_steps, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_remove_orders_the_unlinks,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
