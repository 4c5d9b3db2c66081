/*
 * Unit tests of the SMTP reply parser (common/reply.c): multi-line replies
 * with enhanced codes as Gmail sends them, the bounds, malformed input and
 * the one-line summary used in logs and the queue.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "reply.h"

/* Feeds NULL-terminated lines; returns the last reply_feed() result. */
static int
feed(struct reply *r, const char *const *lines)
{
	int rc = -EAGAIN;

	reply_init(r);
	for (; *lines != NULL; lines++)
		rc = reply_feed(r, *lines, strlen(*lines));
	return rc;
}

static void
test_single_line(void **state)
{
	static const char *const l[] = { "250 2.1.0 OK abc - gsmtp", NULL };
	struct reply r;
	char buf[256];

	assert_int_equal(feed(&r, l), 0);
	assert_true(r.done);
	assert_int_equal(r.code, 250);
	assert_int_equal(reply_class(&r), 2);
	assert_string_equal(r.enhanced, "2.1.0");
	assert_string_equal(reply_summary(&r, buf, sizeof(buf)),
	    "250 2.1.0 OK abc - gsmtp");
}

static void
test_gmail_multiline(void **state)
{
	static const char *const l[] = {
		"535-5.7.8 Username and Password not accepted. For more "
		    "information, go to",
		"535 5.7.8  https://support.google.com/mail/?p=BadCredentials "
		    "xyz - gsmtp",
		NULL,
	};
	struct reply r;
	char buf[512];

	reply_init(&r);
	assert_int_equal(reply_feed(&r, l[0], strlen(l[0])), -EAGAIN);
	assert_false(r.done);
	assert_int_equal(reply_feed(&r, l[1], strlen(l[1])), 0);
	assert_int_equal(r.code, 535);
	assert_true(reply_enhanced_is(&r, "5.7.8"));
	assert_int_equal(r.nlines, 2);
	assert_string_equal(reply_summary(&r, buf, sizeof(buf)),
	    "535 5.7.8 Username and Password not accepted. For more "
	    "information, go to https://support.google.com/mail/"
	    "?p=BadCredentials xyz - gsmtp");
}

static void
test_ehlo_lines(void **state)
{
	static const char *const l[] = {
		"250-smtp.gmail.com at your service, [127.0.0.1]",
		"250-SIZE 35882577", "250-8BITMIME", "250-STARTTLS",
		"250 SMTPUTF8", NULL,
	};
	struct reply r;
	const char *line;
	size_t pos = 0, len, n = 0;

	assert_int_equal(feed(&r, l), 0);
	assert_string_equal(r.enhanced, "");
	while (reply_next_line(&r, &pos, &line, &len)) {
		assert_int_equal(len, strlen(l[n] + 4));
		assert_memory_equal(line, l[n] + 4, len);
		n++;
	}
	assert_int_equal(n, 5);
}

static void
test_bare_code_and_no_enhanced(void **state)
{
	static const char *const a[] = { "220", NULL };
	static const char *const b[] = { "334 VXNlcm5hbWU6", NULL };
	static const char *const c[] = { "250 5.1.0 wrong class", NULL };
	struct reply r;
	char buf[64];

	assert_int_equal(feed(&r, a), 0);
	assert_int_equal(r.code, 220);
	assert_string_equal(reply_summary(&r, buf, sizeof(buf)), "220");
	assert_int_equal(feed(&r, b), 0);
	assert_string_equal(r.enhanced, "");
	assert_int_equal(feed(&r, c), 0);
	assert_string_equal(r.enhanced, "");	/* class must match */
}

static void
test_malformed(void **state)
{
	static const char *const bad[] = { "", "25", "abc hello", "250x",
	    "650 nope", "199 nope", "2500 x" };
	static const char *const change[] = { "250-a", "251 b", NULL };
	struct reply r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		reply_init(&r);
		assert_int_equal(reply_feed(&r, bad[i], strlen(bad[i])),
		    -EBADMSG);
	}
	assert_int_equal(feed(&r, change), -EBADMSG);
}

static void
test_bounds(void **state)
{
	static char longline[REPLY_LINE_MAX + 10];
	struct reply r;
	size_t i;

	memset(longline, 'x', sizeof(longline) - 1);
	memcpy(longline, "250 ", 4);
	reply_init(&r);
	assert_int_equal(reply_feed(&r, longline, strlen(longline)), -E2BIG);

	reply_init(&r);
	for (i = 0; i < REPLY_LINES_MAX; i++)
		assert_int_equal(reply_feed(&r, "250-x", 5), -EAGAIN);
	assert_int_equal(reply_feed(&r, "250 x", 5), -E2BIG);

	/* Text past REPLY_TEXT_MAX is dropped, the reply still parses. */
	reply_init(&r);
	memset(longline, 'y', REPLY_LINE_MAX);
	memcpy(longline, "250-", 4);
	longline[REPLY_LINE_MAX] = '\0';
	for (i = 0; i < 5; i++)
		assert_int_equal(reply_feed(&r, longline, strlen(longline)),
		    -EAGAIN);
	assert_int_equal(reply_feed(&r, "250 end", 7), 0);
	assert_true(r.textlen < REPLY_TEXT_MAX);
}

static void
test_reuse_after_done(void **state)
{
	struct reply r;

	reply_init(&r);
	assert_int_equal(reply_feed(&r, "250 ok", 6), 0);
	assert_int_equal(reply_feed(&r, "354 go", 6), 0);
	assert_int_equal(r.code, 354);
	assert_int_equal(r.nlines, 1);
}

static void
test_summary_truncates(void **state)
{
	static const char *const l[] = { "550-5.4.5 Daily user sending "
	    "limit exceeded.", "550 5.4.5  https://x", NULL };
	struct reply r;
	char buf[16];

	assert_int_equal(feed(&r, l), 0);
	assert_string_equal(reply_summary(&r, buf, sizeof(buf)),
	    "550 5.4.5 Daily");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line),
		cmocka_unit_test(test_gmail_multiline),
		cmocka_unit_test(test_ehlo_lines),
		cmocka_unit_test(test_bare_code_and_no_enhanced),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_reuse_after_done),
		cmocka_unit_test(test_summary_truncates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
