/*
 * Unit tests of the queue's record and journal format (common/
 * queue_format.c): the parsers against hostile input, with the DSN keys
 * too.  Nothing here touches a disk.  QUEUE_TEST_FUZZ (default 20000)
 * sizes the mutation loop, so that it can run under valgrind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_env.h"

#include "queue.h"
#include "queue_format.h"

/* Hostile input to the parsers: random mutations of a valid record. */
static void
test_parse_hostile(void **state)
{
	static const char base[] = "SMARTRELAY-QUEUE 1\nid 0123456789ABCDEF\n"
	    "arrival 1700000000\nflags 00000001\nfrom <a@b>\nrcpt <c@d>\n"
	    "rcpt <e@f>\nbody\nbody bytes\r\n";
	static const char jbase[] = "XXXXXXXX rcpt 1 delivered 17 250 ok\n"
	    "XXXXXXXX sched 3 99 421 later\n";
	static const char *const bad[] = {
		"SMARTRELAY-QUEUE 0\nbody\n",
		"SMARTRELAY-QUEUE 01x\n",
		"SMARTRELAY-QUEUE 99999999999999999999999\nbody\n",
		"SMARTRELAY-QUEUE 1\nid 0123456789ABCDEF\nid 0123456789ABCDEF\n",
		"SMARTRELAY-QUEUE 1\narrival -1\n",
		"SMARTRELAY-QUEUE 1\narrival 99999999999999999999\n",
		"SMARTRELAY-QUEUE 1\nflags 1FFFFFFFF\n",
		"SMARTRELAY-QUEUE 1\nflags \n",
		"SMARTRELAY-QUEUE 1\nfrom a@b\n",
		"SMARTRELAY-QUEUE 1\nrcpt <>\n",
		"SMARTRELAY-QUEUE 1\nrcpt <a\r>\n",
		"SMARTRELAY-QUEUE 1\nBAD key\n",
		"SMARTRELAY-QUEUE 1\nbody extra\n",
		("SMARTRELAY-QUEUE 1\nid 0123456789ABCDEF\narrival 1\nflags 0\n"
		    "from <>\nbody\n"),
	};
	long iters = env_num("QUEUE_TEST_FUZZ", 20000), it;
	char buf[sizeof(base) + 64], jbuf[sizeof(jbase)], *p, *nl;
	struct queue_msg *m = calloc(1, sizeof(*m));
	unsigned seed = 12345;
	size_t off, len, i;
	int r, k;

	(void)state;
	assert_non_null(m);
	assert_int_equal(queue_parse_envelope(base, sizeof(base) - 1, m, &off),
	    0);
	assert_int_equal(off, strstr(base, "body\n") - base + 5);
	assert_int_equal(m->nrcpt, 2);
	queue_msg_free(m);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_non_null(m = calloc(1, sizeof(*m)));
		r = queue_parse_envelope(bad[i], strlen(bad[i]), m, &off);
		assert_true(r == -EBADMSG || r == -EAGAIN);
		assert_null(m->rcpt);
		queue_msg_free(m);
	}
	/* A NUL inside the envelope. */
	memcpy(buf, base, sizeof(base));
	buf[30] = '\0';
	assert_non_null(m = calloc(1, sizeof(*m)));
	assert_int_equal(queue_parse_envelope(buf, sizeof(base) - 1, m, &off),
	    -EBADMSG);
	free(m);

	/* A journal with correct checksums applies. */
	memcpy(jbuf, jbase, sizeof(jbase));
	for (p = jbuf; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		char crc[9];
		uint32_t c = 0xffffffffu;
		const unsigned char *q;

		for (q = (unsigned char *)p + 9; q < (unsigned char *)nl;
		    q++) {
			c ^= *q;
			for (k = 0; k < 8; k++)
				c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
		}
		snprintf(crc, sizeof(crc), "%08X", ~c);
		memcpy(p, crc, 8);
	}
	assert_non_null(m = calloc(1, sizeof(*m)));
	assert_int_equal(queue_parse_envelope(base, sizeof(base) - 1, m, &off),
	    0);
	assert_int_equal(queue_journal_apply(m, jbuf, sizeof(jbase) - 1), 0);
	assert_int_equal(m->rcpt[1].state, QUEUE_RCPT_DELIVERED);
	assert_string_equal(m->rcpt[1].reply, "250 ok");
	assert_int_equal(m->attempts, 3);
	assert_int_equal(m->next_attempt, 99);
	assert_string_equal(m->last_reply, "421 later");
	queue_msg_free(m);

	for (it = 0; it < iters; it++) {
		memcpy(buf, base, sizeof(base));
		len = sizeof(base) - 1;
		for (k = 0; k < 1 + (int)(it % 4) && len > 0; k++) {
			seed = seed * 1103515245u + 12345u;
			i = (seed >> 8) % len;
			switch ((seed >> 4) % 4) {
			case 0:
				buf[i] = (char)(seed >> 20);
				break;
			case 1:
				len = i;
				break;
			case 2:
				buf[i] = "\n <>\0 9F!"[(seed >> 20) % 9];
				break;
			default:
				buf[i] ^= 1;
				break;
			}
		}
		assert_non_null(m = calloc(1, sizeof(*m)));
		r = queue_parse_envelope(buf, len, m, &off);
		if (r == 0) {
			assert_true(off <= len);
			assert_true(m->nrcpt >= 1 && m->nrcpt <= 2);
			memcpy(jbuf, jbase, sizeof(jbase));
			jbuf[(seed >> 3) % (sizeof(jbase) - 1)] ^=
			    (char)(1 << (seed % 7));
			r = queue_journal_apply(m, jbuf, sizeof(jbase) - 1 -
			    (seed >> 5) % 8);
			assert_true(r >= 0);
		} else {
			assert_true(r == -EBADMSG || r == -EAGAIN ||
			    r == -ENOTSUP);
		}
		queue_msg_free(m);
	}
}

static void
test_dsn_parse_hostile(void **state)
{
	static const char *const bad[] = {
		"ret full\nret hdrs\n",		/* twice */
		"ret FULL\n",			/* lower case only */
		"ret some\n",
		"envid a b\n",
		"envid +4\n",			/* torn hex */
		"envid +4a\n",			/* lower-case hex */
		("envid 0123456789012345678901234567890123456789"
		    "0123456789012345678901234567890123456789"
		    "012345678901234567890\n"),	/* 101 bytes */
		"notify never\n",		/* before any rcpt */
		"rcpt <c@d>\nnotify never,success\n",
		"rcpt <c@d>\nnotify success,success\n",
		"rcpt <c@d>\nnotify delay\nnotify delay\n",
		"rcpt <c@d>\nnotify\n",
		"rcpt <c@d>\norcpt rfc822\n",
		"rcpt <c@d>\norcpt ;a@b\n",
		"rcpt <c@d>\norcpt rfc822;\n",
		"rcpt <c@d>\norcpt rfc822;a=b\n",
		"rcpt <c@d>\norcpt rfc822;a\norcpt rfc822;b\n",
	};
	static const char head[] = "SMARTRELAY-QUEUE 1\nid 0123456789ABCDEF\n"
	    "arrival 1\nflags 0\nfrom <a@b>\n";
	char buf[1024];
	struct queue_msg m;
	size_t off, i;
	int r;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "%s%s%sbody\n", head, bad[i],
		    strstr(bad[i], "rcpt") == NULL ? "rcpt <c@d>\n" : "");
		r = queue_parse_envelope(buf, strlen(buf), &m, &off);
		if (r != -EBADMSG)
			fail_msg("accepted: %s", bad[i]);
	}
	/* Journal events of the wrong shape are ignored, not applied. */
	snprintf(buf, sizeof(buf), "%srcpt <c@d>\nbody\n", head);
	assert_int_equal(queue_parse_envelope(buf, strlen(buf), &m, &off), 0);
	{
		static const char *const jbad[] = { "dsn relayed 1",
		    "dsn relayed x", "dsn delayed 0", "dsn delayed 5 6",
		    "dsn later 5", "dsn" };
		char line[QUEUE_LINE_MAX + 1];
		size_t len;

		for (i = 0; i < sizeof(jbad) / sizeof(jbad[0]); i++) {
			assert_int_equal(queue_journal_format(line, jbad[i],
			    &len), 0);
			assert_int_equal(queue_journal_apply(&m, line, len), 1);
		}
		assert_false(m.rcpt[0].relayed);
		assert_int_equal(m.delay_notice, 0);
	}
	queue_msg_clear(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_hostile),
		cmocka_unit_test(test_dsn_parse_hostile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
