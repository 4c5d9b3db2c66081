/* Unit tests of the SMTP path and mailbox parser (common/addr.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "cfg.h"

/* Parses s and checks the mailbox and the rest. */
static void
expect_path(const char *s, const char *mbox, const char *rest)
{
	char out[ADDR_MAX];
	const char *r = NULL;

	assert_int_equal(addr_parse_path(s, out, sizeof(out), &r), 0);
	assert_string_equal(out, mbox);
	assert_string_equal(r, rest);
}

static void
expect_bad(const char *s, int err)
{
	char out[ADDR_MAX];
	const char *r;

	assert_int_equal(addr_parse_path(s, out, sizeof(out), &r), err);
}

static void
test_good_paths(void **state)
{
	expect_path("<a@b.example>", "a@b.example", "");
	expect_path("<>", "", "");
	expect_path(" <a@b.example> SIZE=10 BODY=8BITMIME", "a@b.example",
	    "SIZE=10 BODY=8BITMIME");
	expect_path("a@b.example", "a@b.example", "");
	expect_path("root", "root", "");
	expect_path("<root>", "root", "");
	expect_path("<@relay.example,@r2.example:u@c.example>", "u@c.example",
	    "");
	expect_path("<\"john doe\"@example.org>", "\"john doe\"@example.org",
	    "");
	expect_path("<\"a>b\"@example.org>", "\"a>b\"@example.org", "");
	expect_path("<first.last+tag@sub.example.org>",
	    "first.last+tag@sub.example.org", "");
	expect_path("<user@[192.0.2.1]>", "user@[192.0.2.1]", "");
	expect_path("<j\xc3\xb6rg@b\xc3\xbc" "cher.example>",
	    "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "");
}

static void
test_bad_paths(void **state)
{
	expect_bad("<a@b.example", -EINVAL);
	expect_bad("", -EINVAL);
	expect_bad("<a@b.example>x", -EINVAL);
	expect_bad("<a b@example.org>", -EINVAL);
	expect_bad("<.a@example.org>", -EINVAL);
	expect_bad("<a..b@example.org>", -EINVAL);
	expect_bad("<a.@example.org>", -EINVAL);
	expect_bad("<a@>", -EINVAL);
	expect_bad("<a@b..c>", -EINVAL);
	expect_bad("<a@-b.c>", -EINVAL);
	expect_bad("<a@b_c.example>", -EINVAL);
	expect_bad("<a@b.example\x01>", -EINVAL);
	expect_bad("<@relay.example>", -EINVAL);
	expect_bad("<\"unterminated@example.org>", -EINVAL);
	expect_bad("a@example.org>", -EINVAL);
}

static void
test_lengths(void **state)
{
	char path[400], out[ADDR_MAX];
	const char *r;

	/* A 65-octet local part is over RFC 5321's limit. */
	memset(path, 0, sizeof(path));
	path[0] = '<';
	memset(path + 1, 'a', 65);
	strcat(path, "@example.org>");
	assert_int_equal(addr_parse_path(path, out, sizeof(out), &r),
	    -ENAMETOOLONG);
	/* A path over 256 octets. */
	memset(path, 0, sizeof(path));
	path[0] = '<';
	strcat(path, "a@");
	memset(path + 3, 'b', 300);
	strcat(path, ">");
	assert_int_equal(addr_parse_path(path, out, sizeof(out), &r),
	    -ENAMETOOLONG);
	/* A small output buffer is never overrun. */
	assert_int_equal(addr_parse_path("<abc@example.org>", out, 5, &r),
	    -ENAMETOOLONG);
}

static void
test_mailbox_and_domain(void **state)
{
	assert_int_equal(addr_check_mailbox("a@example.org"), 0);
	assert_int_equal(addr_check_mailbox("root"), 0);
	assert_int_equal(addr_check_mailbox("a@@example.org"), -EINVAL);
	assert_int_equal(addr_check_domain("example.org"), 0);
	assert_int_equal(addr_check_domain("example.org."), 0);
	assert_int_equal(addr_check_domain("[IPv6:2001:db8::1]"), 0);
	assert_int_equal(addr_check_domain(""), -EINVAL);
	assert_int_equal(addr_check_domain("ex ample.org"), -EINVAL);
	assert_true(addr_is_bare("root"));
	assert_true(addr_is_bare("\"a@b\""));
	assert_false(addr_is_bare("a@b"));
	assert_true(addr_is_ascii("a@b"));
	assert_false(addr_is_ascii("\xc3\xa9@b"));
}

static void
test_resolve_local(void **state)
{
	struct cfg_alias aliases[] = {
		{ .name = "root", .target = "admin@example.org" },
		{ .name = "postmaster", .target = "pm@example.org" },
	};
	char out[ADDR_MAX];

	assert_int_equal(addr_resolve_local("ROOT", aliases, 2, NULL, out,
	    sizeof(out)), 0);
	assert_string_equal(out, "admin@example.org");
	assert_int_equal(addr_resolve_local("www", aliases, 2, "example.net",
	    out, sizeof(out)), 0);
	assert_string_equal(out, "www@example.net");
	assert_int_equal(addr_resolve_local("www", aliases, 2, NULL, out,
	    sizeof(out)), -ENOENT);
	assert_int_equal(addr_resolve_local("www", NULL, 0, "example.net",
	    out, 8), -ENAMETOOLONG);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_paths),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_mailbox_and_domain),
		cmocka_unit_test(test_resolve_local),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
