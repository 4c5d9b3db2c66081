/*
 * Unit tests of the delivery status notifications (daemon/dsn.c): who
 * receives one, and when none is wanted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "dsn.h"
#include "queue.h"

static void
test_dsn_recipient(void **state)
{
	struct cfg cfg;
	struct queue_rcpt rc = { .addr = (char *)"bob@example.net",
	    .state = QUEUE_RCPT_FAILED };
	struct queue_msg m = { .from = (char *)"alice@example.com",
	    .rcpt = &rc, .nrcpt = 1 };

	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = (char *)"host.example.org";
	cfg.rewrite.local_domain = (char *)"example.org";
	/* An outside sender gets it. */
	assert_string_equal(dsn_recipient(&cfg, &m), "alice@example.com");
	assert_true(dsn_wanted(&cfg, &m));
	/* Local senders: bounces.to, else envelope_from, else as is. */
	m.from = (char *)"root@example.org";
	assert_string_equal(dsn_recipient(&cfg, &m), "root@example.org");
	cfg.rewrite.envelope_from = (char *)"me@gmail.com";
	assert_string_equal(dsn_recipient(&cfg, &m), "me@gmail.com");
	cfg.bounces_to = (char *)"admin@example.org";
	assert_string_equal(dsn_recipient(&cfg, &m), "admin@example.org");
	m.from = (char *)"cron@HOST.example.org";
	assert_string_equal(dsn_recipient(&cfg, &m), "admin@example.org");
	/* Never for <>, never for a notice. */
	m.from = (char *)"";
	assert_null(dsn_recipient(&cfg, &m));
	assert_false(dsn_wanted(&cfg, &m));
	m.from = (char *)"alice@example.com";
	m.flags = QUEUE_F_DSN;
	assert_null(dsn_recipient(&cfg, &m));
	/* Nothing failed: nothing to say. */
	m.flags = 0;
	rc.state = QUEUE_RCPT_DELIVERED;
	assert_false(dsn_wanted(&cfg, &m));
}

/* NOTIFY (RFC 3461) decides which recipients a notice reports. */
static void
test_dsn_notify(void **state)
{
	struct cfg cfg;
	struct queue_rcpt rc[2] = {
		{ .addr = (char *)"a@example.net", .state = QUEUE_RCPT_FAILED },
		{ .addr = (char *)"b@example.net",
		    .state = QUEUE_RCPT_PENDING },
	};
	struct queue_msg m = { .from = (char *)"alice@example.com",
	    .rcpt = rc, .nrcpt = 2, .arrival = 1000 };

	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = (char *)"host.example.org";
	/* No NOTIFY: failures are reported; delays only with the key. */
	assert_true(dsn_wanted(&cfg, &m));
	assert_false(dsn_delay_wanted(&cfg, &m, 5000));
	cfg.delay_warning = 3600;
	assert_false(dsn_delay_wanted(&cfg, &m, 4599));
	assert_true(dsn_delay_wanted(&cfg, &m, 4600));
	/* Once queued, never again. */
	m.delay_notice = 4600;
	assert_false(dsn_delay_wanted(&cfg, &m, 9000));
	m.delay_notice = 0;
	/* NEVER, or a NOTIFY without FAILURE / DELAY, silences them. */
	rc[0].notify = QUEUE_NOTIFY_NEVER;
	assert_false(dsn_wanted(&cfg, &m));
	rc[0].notify = QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY;
	assert_false(dsn_wanted(&cfg, &m));
	rc[1].notify = QUEUE_NOTIFY_FAILURE;
	assert_false(dsn_delay_wanted(&cfg, &m, 9000));
	rc[1].notify = QUEUE_NOTIFY_DELAY;
	assert_true(dsn_delay_wanted(&cfg, &m, 9000));
	/* SUCCESS: a relayed recipient is reported, a passed-on one not. */
	rc[0].state = QUEUE_RCPT_DELIVERED;
	rc[0].notify = QUEUE_NOTIFY_SUCCESS;
	assert_false(dsn_wanted(&cfg, &m));
	rc[0].relayed = true;
	assert_true(dsn_wanted(&cfg, &m));
	/* Never for <>. */
	m.from = (char *)"";
	assert_false(dsn_wanted(&cfg, &m));
	assert_false(dsn_delay_wanted(&cfg, &m, 9000));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dsn_recipient),
		cmocka_unit_test(test_dsn_notify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
