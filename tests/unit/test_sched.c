/*
 * Unit tests of the scheduler's decisions: the backoff arithmetic (doubling,
 * cap, jitter bounds), the classification of upstream replies into the
 * actions of docs/relay.md's failure table (with Gmail's reply texts), the AUTH
 * advice, who receives a delivery status notification, and the in-memory
 * queue's bookkeeping.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>
#include <event2/event.h>

#include "cfg.h"
#include "dsn.h"
#include "queue.h"
#include "relay.h"
#include "reply.h"
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

/* Parses one reply given as '|'-separated lines. */
static void
parse(struct reply *r, const char *text)
{
	char buf[1024], *line, *save = NULL;
	int rc = -EAGAIN;

	snprintf(buf, sizeof(buf), "%s", text);
	reply_init(r);
	for (line = strtok_r(buf, "|", &save); line != NULL;
	    line = strtok_r(NULL, "|", &save))
		rc = reply_feed(r, line, strlen(line));
	assert_int_equal(rc, 0);
}

struct row {
	enum relay_stage stage;
	const char *reply;
	enum relay_outcome outcome;
	enum relay_pause pause;
};

static void
test_classify_table(void **state)
{
	static const struct row rows[] = {
		/* Success and intermediate replies. */
		{ RELAY_STAGE_MAIL, "250 2.1.0 OK x - gsmtp", RELAY_OK, 0 },
		{ RELAY_STAGE_DATA, "354  Go ahead x - gsmtp", RELAY_OK, 0 },
		/* Account problems pause the queue, never bounce. */
		{ RELAY_STAGE_AUTH, "535-5.7.8 Username and Password not "
		    "accepted.|535 5.7.8  https://support.google.com/mail/"
		    "?p=BadCredentials x - gsmtp", RELAY_PAUSE,
		    RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "534-5.7.9 Application-specific password "
		    "required.|534 5.7.9  https://x", RELAY_PAUSE,
		    RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "534-5.7.14 <https://accounts.google.com/"
		    "signin/continue> Please log in|534 5.7.14 then try again.",
		    RELAY_PAUSE, RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "454-4.7.0 Too many login attempts|"
		    "454-4.7.0 go to|454 4.7.0  https://x", RELAY_PAUSE,
		    RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "451 4.3.0 try later", RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_MAIL, "530-5.7.0 Authentication Required.|530 "
		    "5.7.0  https://x", RELAY_PAUSE, RELAY_PAUSE_CREDENTIALS },
		/* The daily limit, wherever it comes. */
		{ RELAY_STAGE_MAIL, "550-5.4.5 Daily user sending limit "
		    "exceeded.|550 5.4.5  https://x", RELAY_PAUSE,
		    RELAY_PAUSE_QUOTA },
		{ RELAY_STAGE_DATA, "550 5.4.5 Daily limit", RELAY_PAUSE,
		    RELAY_PAUSE_QUOTA },
		{ RELAY_STAGE_DOT, "550 5.4.5 Daily limit", RELAY_PAUSE,
		    RELAY_PAUSE_QUOTA },
		/* Temporary: 4xx and 421 anywhere. */
		{ RELAY_STAGE_EHLO, "421-4.7.0 Try again later, closing "
		    "connection. (EHLO)|421 4.7.0  https://x", RELAY_TEMPFAIL,
		    0 },
		{ RELAY_STAGE_DOT, "421 4.3.0 Temporary System Problem.",
		    RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_DOT, "451 4.3.0 Mail server temporarily "
		    "rejected message.", RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_RCPT, "452 4.5.3 Your message has too many "
		    "recipients.", RELAY_TEMPFAIL, 0 },
		/* Permanent: 5xx to MAIL, RCPT, DATA or the final dot. */
		{ RELAY_STAGE_RCPT, "550-5.1.1 The email account that you "
		    "tried to reach does not exist.|550 5.1.1  https://x",
		    RELAY_PERMFAIL, 0 },
		{ RELAY_STAGE_RCPT, "553-5.1.3 The recipient address <x> is "
		    "not a valid RFC 5321 address.|553 5.1.3 x", RELAY_PERMFAIL,
		    0 },
		{ RELAY_STAGE_MAIL, "552-5.3.4 Your message exceeded Google's "
		    "message size limits.|552 5.3.4 x", RELAY_PERMFAIL, 0 },
		{ RELAY_STAGE_DOT, "552 5.3.4 too big", RELAY_PERMFAIL, 0 },
		{ RELAY_STAGE_DOT, "552 5.2.3 too big (older)", RELAY_PERMFAIL,
		    0 },
		{ RELAY_STAGE_DATA, "554 5.5.1 no valid recipients",
		    RELAY_PERMFAIL, 0 },
		/* 5xx while setting up the session: not the message's fault. */
		{ RELAY_STAGE_GREETING, "554 5.7.0 go away", RELAY_TEMPFAIL,
		    0 },
		{ RELAY_STAGE_EHLO, "502 5.5.1 Unrecognized command.",
		    RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_STARTTLS, "502 5.5.1 Unrecognized command.",
		    RELAY_TEMPFAIL, 0 },
	};
	enum relay_pause pause;
	struct reply r;
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		parse(&r, rows[i].reply);
		if (relay_classify(rows[i].stage, &r, &pause) !=
		    rows[i].outcome || pause != rows[i].pause)
			fail_msg("row %zu (%s): got %s pause %d", i,
			    rows[i].reply, relay_stroutcome(relay_classify(
			    rows[i].stage, &r, &pause)), (int)pause);
	}
}

static void
test_auth_advice(void **state)
{
	struct reply r;

	parse(&r, "535 5.7.8 Username and Password not accepted.");
	assert_non_null(strstr(relay_auth_advice(&r), "App Password"));
	parse(&r, "534 5.7.9 Application-specific password required.");
	assert_non_null(strstr(relay_auth_advice(&r), "2-Step Verification"));
	parse(&r, "534 5.7.14 Please log in via your web browser");
	assert_non_null(strstr(relay_auth_advice(&r), "web browser"));
	parse(&r, "454 4.7.0 Too many login attempts");
	assert_non_null(strstr(relay_auth_advice(&r), "too many login"));
}

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

/* Whether a literal address is one tls = "none" may connect to. */
static bool
loopback(const char *ip)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &in->sin_addr) == 1)
		in->sin_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
	}
	return relay_is_loopback((struct sockaddr *)(void *)&ss);
}

static void
test_plaintext_loopback_only(void **state)
{
	struct sockaddr un = { .sa_family = AF_UNIX };

	assert_true(loopback("127.0.0.1"));
	assert_true(loopback("127.255.3.4"));
	assert_true(loopback("::1"));
	assert_true(loopback("::ffff:127.0.0.1"));
	assert_true(loopback("::ffff:127.9.9.9"));
	assert_false(loopback("126.255.255.255"));
	assert_false(loopback("128.0.0.1"));
	assert_false(loopback("10.0.0.1"));
	assert_false(loopback("0.0.0.0"));
	assert_false(loopback("142.250.102.109"));
	assert_false(loopback("::"));
	assert_false(loopback("::2"));
	assert_false(loopback("::127.0.0.1"));
	assert_false(loopback("::ffff:10.0.0.1"));
	assert_false(loopback("fe80::1"));
	assert_false(loopback("2001:db8::1"));
	assert_false(relay_is_loopback(&un));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_doubles_and_caps),
		cmocka_unit_test(test_backoff_jitter_bounds),
		cmocka_unit_test(test_classify_table),
		cmocka_unit_test(test_auth_advice),
		cmocka_unit_test(test_dsn_recipient),
		cmocka_unit_test(test_queue_bookkeeping),
		cmocka_unit_test(test_plaintext_loopback_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
