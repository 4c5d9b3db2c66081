/* Unit tests of the log module: line format and secret masking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

/* Runs fn with stderr redirected to a buffer and returns what it wrote. */
static char *
capture_stderr(void (*fn)(void))
{
	static char buf[4096];
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(tmp);
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, sizeof(buf) - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return buf;
}

static void
emit_queued(void)
{
	log_msg(LOG_INFO, "0123456789ABCDEF", "queued from=<%s> size=%d",
	    "a@b.example", 812);
	log_msg(LOG_DEBUG, NULL, "hidden");
}

static void
test_line_format(void **state)
{
	char *out;

	unsetenv("JOURNAL_STREAM");
	log_init("smartrelayd", 0);
	assert_int_equal(log_get_target(), LOG_TARGET_STDERR);
	out = capture_stderr(emit_queued);
	assert_string_equal(out, "smartrelayd: level=info id=0123456789ABCDEF "
	    "queued from=<a@b.example> size=812\n");
}

static void
emit_dialogue(void)
{
	log_dialogue("client", "<", "AUTH PLAIN AHVzZXIAc2VjcmV0", 0);
	log_dialogue("client", "<", "c2VjcmV0", 1);
	log_dialogue("client", "<", "MAIL FROM:<a@b>", 0);
}

static void
test_dialogue_masked(void **state)
{
	char *out;

	log_init("smartrelayd", 1);
	out = capture_stderr(emit_dialogue);
	assert_null(strstr(out, "AHVzZXIAc2VjcmV0"));
	assert_null(strstr(out, "c2VjcmV0"));
	assert_non_null(strstr(out, "client < AUTH PLAIN ***\n"));
	assert_non_null(strstr(out, "client < ***\n"));
	assert_non_null(strstr(out, "client < MAIL FROM:<a@b>\n"));
}

static void
test_mask_line(void **state)
{
	char buf[64];

	log_mask_line(buf, sizeof(buf), "auth login", 0);
	assert_string_equal(buf, "AUTH login");
	log_mask_line(buf, sizeof(buf), "AUTH LOGIN dXNlcg==", 0);
	assert_string_equal(buf, "AUTH LOGIN ***");
	log_mask_line(buf, sizeof(buf), "AUTHORITY x", 0);
	assert_string_equal(buf, "AUTHORITY x");
	log_mask_line(buf, sizeof(buf), "EHLO a\x01\xff", 0);
	assert_string_equal(buf, "EHLO a??");
}

static void
test_quote(void **state)
{
	char buf[32];

	assert_string_equal(log_quote(buf, sizeof(buf), "250 2.0.0 \"OK\"\r\n"),
	    "250 2.0.0 \\\"OK\\\"");
	assert_string_equal(log_quote(buf, 6, "abcdefgh"), "abcd");
}

/* A peer-supplied address can never end its field or forge another. */
static void
test_addr(void **state)
{
	char buf[64];

	(void)state;
	assert_string_equal(log_addr(buf, sizeof(buf), "a@b.example"),
	    "<a@b.example>");
	assert_string_equal(log_addr(buf, sizeof(buf), ""), "<>");
	assert_string_equal(log_addr(buf, sizeof(buf), "SRS0=x=y@b"),
	    "<SRS0=x=y@b>");
	assert_string_equal(log_addr(buf, sizeof(buf),
	    "\"a> size=1 uid=0 x=<\"@example.com"),
	    "\"<\\\"a> size=1 uid=0 x=<\\\"@example.com>\"");
	assert_string_equal(log_addr(buf, sizeof(buf), "a\\b\r\n@x"),
	    "\"<a\\\\b@x>\"");
	/* Cut, but the closing bracket and quote stay. */
	assert_string_equal(log_addr(buf, 10, "abcdefghijkl@x"), "<abcdefg>");
	assert_string_equal(log_addr(buf, 10, "\"a b\"@example"),
	    "\"<\\\"a >\"");
	assert_string_equal(log_addr(buf, 4, "a@b"), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_format),
		cmocka_unit_test(test_dialogue_masked),
		cmocka_unit_test(test_mask_line),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_addr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
