/*
 * Unit tests of the sendmail tool's header helpers (daemon/tool/cli_msg.c,
 * RFC 5322 §2.2 and §3.4), which decide the recipients of `sendmail -t`:
 * where a header field starts, which field it is, its unfolded value, and
 * the addresses of an address list (display names, quoted strings with
 * commas, comments, groups, the null address, unterminated brackets).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli_msg.h"

static bool
starts(const char *line)
{
	return cli_hdr_field_start(line, strlen(line));
}

static void
test_field_start(void **state)
{
	assert_true(starts("To: bob@example.org"));
	assert_true(starts("X-Mailer:x"));
	assert_true(starts("Subject:"));
	/* Continuation lines, the blank line, and not-quite fields. */
	assert_false(starts(" folded, c@example.org"));
	assert_false(starts("\tfolded"));
	assert_false(starts(""));
	assert_false(starts(":no name"));
	assert_false(starts("To bob@example.org"));
	assert_false(starts("Re ply: x"));
	assert_false(starts("From bob@example.org Sat Jan  3 01:05:34 1996"));
	/* The colon must be within len. */
	assert_false(cli_hdr_field_start("To: x", 2));
	assert_true(cli_hdr_field_start("To: x", 3));
}

static void
test_field_is(void **state)
{
	static const char bcc[] = "bcc: secret@example.org\r\n";

	assert_true(cli_hdr_is(bcc, strlen(bcc), "Bcc"));
	assert_true(cli_hdr_is("TO:x", 4, "To"));
	assert_false(cli_hdr_is("Tox: y", 6, "To"));
	assert_false(cli_hdr_is("T: y", 4, "To"));
	/* Needs the colon inside len. */
	assert_false(cli_hdr_is("To:", 2, "To"));
	assert_true(cli_hdr_is("To:", 3, "To"));
	assert_false(cli_hdr_is("Resent-To: a", 12, "To"));
}

static void
test_field_value_unfolds(void **state)
{
	static const char f[] = "To: Alice <a@example.org>,\r\n\tBob "
	    "<b@example.org>,\r\n c@example.org\r\n";
	char *v;

	assert_non_null(v = cli_hdr_value(f, strlen(f)));
	assert_string_equal(v, " Alice <a@example.org>,\tBob <b@example.org>,"
	    " c@example.org");
	free(v);
	assert_non_null(v = cli_hdr_value("Cc:", 3));
	assert_string_equal(v, "");
	free(v);
	/* Bare LF line ends unfold too. */
	assert_non_null(v = cli_hdr_value("Cc: a,\n b\n", 10));
	assert_string_equal(v, " a, b");
	free(v);
	assert_null(cli_hdr_value("no colon here", 13));
	/* Only len bytes count. */
	assert_null(cli_hdr_value("To: x", 2));
}

/* The addresses an address list yields, "|"-separated. */
struct got {
	char text[1024];
	int n;
	int stop_after;		/* return 1 from the n-th call; 0: never */
};

static int
collect(void *arg, const char *addr)
{
	struct got *g = arg;
	size_t used = strlen(g->text);

	snprintf(g->text + used, sizeof(g->text) - used, "%s|", addr);
	g->n++;
	return g->stop_after != 0 && g->n == g->stop_after ? 1 : 0;
}

static const char *
addrs(struct got *g, const char *value)
{
	memset(g, 0, sizeof(*g));
	assert_int_equal(cli_addr_list(value, collect, g), 0);
	return g->text;
}

static void
test_addr_list(void **state)
{
	struct got g;

	assert_string_equal(addrs(&g, "A <a@x>, b@y (Bob), G: c@z;"),
	    "<a@x>|b@y|c@z|");
	assert_string_equal(addrs(&g, " bob@example.org "),
	    "bob@example.org|");
	/* A comma inside a quoted display name separates nothing. */
	assert_string_equal(addrs(&g, "\"Doe, John\" <j@x>, k@y"),
	    "<j@x>|k@y|");
	/* Quoted local parts keep their quotes and escapes. */
	assert_string_equal(addrs(&g, "\"john doe\"@example.org"),
	    "\"john doe\"@example.org|");
	assert_string_equal(addrs(&g, "<\"a>b\"@x>"), "<\"a>b\"@x>|");
	assert_string_equal(addrs(&g, "\"a\\\"b\"@x"), "\"a\\\"b\"@x|");
	/* Domain literals, nested comments, comments with parentheses. */
	assert_string_equal(addrs(&g, "u@[192.0.2.1]"), "u@[192.0.2.1]|");
	assert_string_equal(addrs(&g, "a@x (one (two) three), b@y (x\\)y)"),
	    "a@x|b@y|");
	/* Groups: the name is no address; an empty group yields nothing. */
	assert_string_equal(addrs(&g, "undisclosed-recipients:;"), "");
	assert_string_equal(addrs(&g, "Team: a@x, b@y;, c@z"),
	    "a@x|b@y|c@z|");
	/* The null address and empty elements are skipped. */
	assert_string_equal(addrs(&g, "<>, , ,a@x,"), "a@x|");
	assert_string_equal(addrs(&g, ""), "");
	/* Unterminated: passed on as is, so that syntax checks refuse it. */
	assert_string_equal(addrs(&g, "Bob <b@x"), "<b@x|");
	assert_string_equal(addrs(&g, "(unterminated comment a@x"), "");
	assert_string_equal(addrs(&g, "\"unterminated a@x"),
	    "\"unterminated a@x|");
}

static void
test_addr_list_stops_at_callback(void **state)
{
	struct got g;

	memset(&g, 0, sizeof(g));
	g.stop_after = 2;
	assert_int_equal(cli_addr_list("a@x, b@y, c@z", collect, &g), 1);
	assert_string_equal(g.text, "a@x|b@y|");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_field_start),
		cmocka_unit_test(test_field_is),
		cmocka_unit_test(test_field_value_unfolds),
		cmocka_unit_test(test_addr_list),
		cmocka_unit_test(test_addr_list_stops_at_callback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
