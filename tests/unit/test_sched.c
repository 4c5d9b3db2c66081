/*
 * Unit tests of the scheduler (daemon/scheduler.c): the backoff arithmetic
 * (doubling, cap, jitter bounds) and the in-memory queue's bookkeeping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "cfg.h"
#include "queue.h"
#include "scheduler.h"

static void
test_backoff_doubles_and_caps(void **state)
{
	struct cfg_retry r = { .initial = 60, .max = 3600,
	    .give_up_after = 5 * 86400 };
	const uint32_t mid = UINT32_MAX / 2;

	assert_in_range(sched_backoff_ms(&r, 1, mid), 59700, 60300);
	assert_in_range(sched_backoff_ms(&r, 2, mid), 119400, 120600);
	assert_in_range(sched_backoff_ms(&r, 3, mid), 238800, 241200);
	assert_in_range(sched_backoff_ms(&r, 6, mid), 1910400, 1929600);
	/* 60 * 2^6 = 3840 > 3600: capped. */
	assert_in_range(sched_backoff_ms(&r, 7, mid), 3582000, 3618000);
	assert_in_range(sched_backoff_ms(&r, 1000, mid), 3582000, 3618000);
	assert_in_range(sched_backoff_ms(&r, UINT32_MAX, mid), 3582000,
	    3618000);
	/* attempt 0 behaves like the first. */
	assert_in_range(sched_backoff_ms(&r, 0, mid), 59700, 60300);
}

static void
test_backoff_jitter_bounds(void **state)
{
	struct cfg_retry r = { .initial = 1, .max = 4, .give_up_after = 60 };
	uint32_t rnd;

	assert_int_equal(sched_backoff_ms(&r, 1, 0), 900);
	assert_int_equal(sched_backoff_ms(&r, 1, UINT32_MAX), 1100);
	assert_int_equal(sched_backoff_ms(&r, 3, 0), 3600);
	assert_int_equal(sched_backoff_ms(&r, 3, UINT32_MAX), 4400);
	for (rnd = 0; rnd < UINT32_MAX - 99999999u; rnd += 99999999u) {
		uint64_t ms = sched_backoff_ms(&r, 2, rnd);

		assert_in_range(ms, 1800, 2200);
	}
}

/* A message in memory only, due at next (the scheduler owns it). */
static struct queue_msg *
fake_msg(unsigned n, time_t next)
{
	struct queue_msg *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	snprintf(m->id, sizeof(m->id), "%016X", n + 1);
	m->arrival = time(NULL);
	m->from = strdup("a@example.org");
	m->rcpt = calloc(1, sizeof(*m->rcpt));
	m->rcpt[0].addr = strdup("b@example.org");
	m->nrcpt = 1;
	m->next_attempt = next;
	return m;
}

/*
 * The in-memory queue: many messages with random due times, some removed,
 * counts right, flush and remove find them by id (the heap stays sound
 * under ASan).  The loop never runs, so no session is opened.
 */
static void
test_queue_bookkeeping(void **state)
{
	struct event_base *base = event_base_new();
	struct cfg cfg;
	struct sched *s;
	char *err = NULL, id[QUEUE_ID_LEN + 1];
	time_t now = time(NULL);
	unsigned i, n = 1000, removed = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = (char *)"relay.test";
	cfg.upstream.host = (char *)"localhost";
	cfg.upstream.port = 1;
	cfg.upstream.connections = 2;
	cfg.upstream.messages_per_connection = 10;
	cfg.upstream.timeout = 5;
	cfg.retry.initial = 1;
	cfg.retry.max = 2;
	cfg.retry.give_up_after = 60;
	assert_non_null(base);
	assert_int_equal(sched_new(base, &cfg, NULL, &s, &err), 0);
	srandom(1);
	for (i = 0; i < n; i++)
		sched_add(s, fake_msg(i, now + 100 + random() % 1000));
	assert_int_equal(sched_count(s), n);
	for (i = 0; i < n; i += 3) {
		snprintf(id, sizeof(id), "%016X", i + 1);
		assert_int_equal(sched_remove(s, id), 0);
		assert_int_equal(sched_remove(s, id), -ENOENT);
		removed++;
	}
	assert_int_equal(sched_count(s), n - removed);
	assert_int_equal(sched_flush(s, "FFFFFFFFFFFFFFFF"), -ENOENT);
	snprintf(id, sizeof(id), "%016X", 2);
	assert_int_equal(sched_flush(s, id), 1);
	assert_int_equal(sched_count(s), n - removed);
	assert_int_equal(sched_sessions(s), 0);
	sched_free(s);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_doubles_and_caps),
		cmocka_unit_test(test_backoff_jitter_bounds),
		cmocka_unit_test(test_queue_bookkeeping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
