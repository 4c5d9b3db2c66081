/*
 * Unit tests of the RFC 3461 DSN parameter values (common/dsnparam.c):
 * NOTIFY lists, xtext both ways, ENVID and ORCPT bounds, and the MAIL/RCPT
 * parameter gatherers with their replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "dsnparam.h"

/* dsnparam_notify() over a C string. */
static int
notify(const char *v, unsigned *bits)
{
	return dsnparam_notify(v, strlen(v), bits);
}

static void
test_notify(void **state)
{
	static const char *const bad[] = { "", "never,success", "NEVER,NEVER",
	    "success,", ",success", "success,,delay", "sometimes",
	    "success;delay", "delay,DELAY", "succes" };
	char buf[64];
	unsigned bits = 0;
	size_t i;

	(void)state;
	assert_int_equal(notify("NEVER", &bits), 0);
	assert_int_equal(bits, QUEUE_NOTIFY_NEVER);
	assert_int_equal(notify("Success,FAILURE,delay", &bits), 0);
	assert_int_equal(bits, QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE |
	    QUEUE_NOTIFY_DELAY);
	dsnparam_notify_format(bits, buf, sizeof(buf));
	assert_string_equal(buf, "success,failure,delay");
	dsnparam_notify_format(QUEUE_NOTIFY_NEVER, buf, sizeof(buf));
	assert_string_equal(buf, "never");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bits = 99;
		if (notify(bad[i], &bits) != -EINVAL)
			fail_msg("accepted NOTIFY=%s", bad[i]);
		assert_int_equal(bits, 99);
	}
	assert_true(dsnparam_notify_ok(0));
	assert_false(dsnparam_notify_ok(QUEUE_NOTIFY_NEVER |
	    QUEUE_NOTIFY_DELAY));
	assert_false(dsnparam_notify_ok(0x10));
}

static void
test_xtext(void **state)
{
	char buf[128];

	(void)state;
	assert_true(dsnparam_xtext_ok("a+2Bb+3D!~", 10));
	assert_false(dsnparam_xtext_ok("a b", 3));
	assert_false(dsnparam_xtext_ok("a=b", 3));
	assert_false(dsnparam_xtext_ok("+2", 2));
	assert_false(dsnparam_xtext_ok("+2b", 3));
	assert_false(dsnparam_xtext_ok("\x7f", 1));
	assert_false(dsnparam_xtext_ok("\xc3\xa9", 2));
	dsnparam_xtext_decode("a+2Bb+3Dc+0D+0Ad+C3", buf, sizeof(buf));
	assert_string_equal(buf, "a+b=c??d?");
	dsnparam_xtext_decode("abcdef", buf, 4);
	assert_string_equal(buf, "abc");
	assert_int_equal(dsnparam_xtext_encode("a+b=c d\xc3\xa9", buf,
	    sizeof(buf)), 0);
	assert_string_equal(buf, "a+2Bb+3Dc+20d+C3+A9");
	assert_true(dsnparam_xtext_ok(buf, strlen(buf)));
	assert_int_equal(dsnparam_xtext_encode("a+b", buf, 4), -ENAMETOOLONG);
	assert_int_equal(dsnparam_xtext_encode("abc", buf, 4), 0);
	assert_int_equal(dsnparam_xtext_encode("abcd", buf, 4),
	    -ENAMETOOLONG);
}

static void
test_envid_orcpt(void **state)
{
	char big[DSNPARAM_ORCPT_MAX + 2];

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_true(dsnparam_envid_ok(big, DSNPARAM_ENVID_MAX));
	assert_false(dsnparam_envid_ok(big, DSNPARAM_ENVID_MAX + 1));
	assert_false(dsnparam_envid_ok(big, 0));
	memcpy(big, "rfc822;", 7);
	assert_true(dsnparam_orcpt_ok(big, DSNPARAM_ORCPT_MAX));
	assert_false(dsnparam_orcpt_ok(big, DSNPARAM_ORCPT_MAX + 1));
	assert_true(dsnparam_orcpt_ok("rfc822;a+2Bb@c", 14));
	assert_true(dsnparam_orcpt_ok("x-local;a@b;c", 13));
	assert_false(dsnparam_orcpt_ok("rfc822", 6));
	assert_false(dsnparam_orcpt_ok(";a@b", 4));
	assert_false(dsnparam_orcpt_ok("rfc822;", 7));
	assert_false(dsnparam_orcpt_ok("rfc 822;a", 9));
	assert_false(dsnparam_orcpt_ok("rfc822;a=b", 10));
}

static void
test_gather(void **state)
{
	struct dsnparam_mail m;
	struct dsnparam_rcpt r;
	const char *reply = NULL;

	(void)state;
	memset(&m, 0, sizeof(m));
	memset(&r, 0, sizeof(r));
	assert_int_equal(dsnparam_mail(&m, "SIZE=10", 7, &reply), 1);
	assert_int_equal(dsnparam_mail(&m, "ret=hdrs", 8, &reply), 0);
	assert_int_equal(m.ret, QUEUE_RET_HDRS);
	assert_int_equal(dsnparam_mail(&m, "RET=FULL", 8, &reply), -EINVAL);
	assert_non_null(strstr(reply, "501 5.5.4 Bad RET"));
	assert_int_equal(dsnparam_mail(&m, "ENVID=a+2B", 10, &reply), 0);
	assert_string_equal(m.envid, "a+2B");
	assert_int_equal(dsnparam_mail(&m, "ENVID=b", 7, &reply), -EINVAL);
	assert_non_null(strstr(reply, "501 5.5.4 Bad ENVID"));
	/* Only len bytes count: the rest of the line is not this one's. */
	assert_int_equal(dsnparam_rcpt(&r, "NOTIFY=DELAY ORCPT=x", 12,
	    &reply), 0);
	assert_int_equal(r.notify, QUEUE_NOTIFY_DELAY);
	assert_int_equal(dsnparam_rcpt(&r, "ORCPT=rfc822;a@b", 16, &reply),
	    0);
	assert_string_equal(r.orcpt, "rfc822;a@b");
	assert_int_equal(dsnparam_rcpt(&r, "ORCPT=rfc822;c@d", 16, &reply),
	    -EINVAL);
	assert_non_null(strstr(reply, "501 5.5.4 Bad ORCPT"));
	assert_int_equal(dsnparam_rcpt(&r, "NOTIFY=NEVER", 12, &reply),
	    -EINVAL);
	assert_non_null(strstr(reply, "501 5.5.4 Bad NOTIFY"));
	assert_int_equal(dsnparam_rcpt(&r, "NOTIFYX=NEVER", 13, &reply), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_envid_orcpt),
		cmocka_unit_test(test_gather),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
