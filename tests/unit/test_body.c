/*
 * Unit tests of the DATA filter (common/body.c): end of data, dot-stuffing,
 * bare CR/LF normalisation, the SMTP smuggling sequences, added headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "body.h"
#include "cfg.h"

#define DATE "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
#define MSGID "Message-ID: <X@h>\r\n"

/* No From: to add and nothing to rewrite: the DATA filter's own rules. */
static const struct cfg no_rewrite;
static const struct cfg *no_rewrite_p = &no_rewrite;
static const struct hdr_opts opts = { .cfg = &no_rewrite_p, .date = DATE,
    .msgid = MSGID };

struct sink {
	char buf[65536];
	size_t len;
};

static void
sink_out(void *arg, const char *buf, size_t len)
{
	struct sink *k = arg;

	assert_true(k->len + len <= sizeof(k->buf));
	memcpy(k->buf + k->len, buf, len);
	k->len += len;
	k->buf[k->len] = '\0';
}

/* Runs input through a filter in pieces of step bytes; returns consumed. */
static size_t
run(struct body *b, struct sink *k, const char *in, size_t len, size_t step)
{
	size_t off = 0, n;

	memset(k, 0, sizeof(*k));
	body_free(b);
	body_init(b, &opts, sink_out, k);
	while (off < len && b->raw != BODY_END) {
		n = len - off < step ? len - off : step;
		off += body_feed(b, in + off, n);
		if (n > 0 && b->raw != BODY_END)
			assert_true(off > 0);
	}
	if (b->raw == BODY_END)
		body_finish(b);
	return off;
}

static void
expect(const char *in, const char *out)
{
	static struct body b;
	static struct sink k;
	size_t step, len = strlen(in);

	for (step = 1; step <= len; step = step * 3 + 1) {
		assert_int_equal(run(&b, &k, in, len, step), len);
		assert_int_equal(b.raw, BODY_END);
		assert_string_equal(k.buf, out);
		assert_int_equal(b.size, strlen(out));
	}
}

static void
test_plain(void **state)
{
	expect("Subject: hi\r\n\r\nhello\r\n.\r\n",
	    "Subject: hi\r\n" DATE MSGID "\r\nhello\r\n");
	expect("Date: x\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n.\r\n",
	    "Date: x\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n");
	expect("DATE: x\r\n\r\n.\r\n", "DATE: x\r\n" MSGID "\r\n");
}

static void
test_header_shapes(void **state)
{
	/* Empty message, headers only, no headers, folded headers. */
	expect(".\r\n", DATE MSGID);
	expect("Subject: a\r\n.\r\n", "Subject: a\r\n" DATE MSGID);
	expect("hello world\r\n.\r\n",
	    DATE MSGID "\r\nhello world\r\n");
	expect("Subject: a\r\n b\r\nDate: d\r\n\r\nx\r\n.\r\n",
	    "Subject: a\r\n b\r\nDate: d\r\n" MSGID "\r\nx\r\n");
	expect("X-Date: a\r\n\r\n.\r\n", "X-Date: a\r\n" DATE MSGID "\r\n");
}

static void
test_dot_stuffing(void **state)
{
	expect("S: a\r\n\r\n..x\r\n..\r\n...\r\n.\r\n",
	    "S: a\r\n" DATE MSGID "\r\n.x\r\n.\r\n..\r\n");
}

static void
test_bare_line_ends(void **state)
{
	expect("S: a\n\nx\ry\n\rz\r\n.\r\n",
	    "S: a\r\n" DATE MSGID "\r\nx\r\ny\r\n\r\nz\r\n");
}

/* True when every CR is followed by LF and every LF preceded by CR. */
static int
crlf_clean(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))
			return 0;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return 0;
	}
	return 1;
}

/*
 * What the upstream would receive: the content stuffed, then ".\r\n".
 * True when the only end-of-data sequence in it is the final one.
 */
static int
upstream_ends_once(const char *s, size_t len)
{
	static char wire[2 * 65536 + 8];
	bool bol = true;
	size_t n;
	char *p;

	n = body_stuff(s, len, &bol, wire);
	memcpy(wire + n, ".\r\n", 3);
	n += 3;
	p = memmem(wire, n, "\r\n.\r\n", 5);
	return bol && p == wire + n - 5;
}

static void
test_stuff(void **state)
{
	char out[64];
	bool bol = true;
	size_t n;

	n = body_stuff(".a\r\nb.\r\n.", 9, &bol, out);
	assert_int_equal(n, 11);
	assert_memory_equal(out, "..a\r\nb.\r\n..", 11);
	assert_false(bol);
	n = body_stuff("\r\n", 2, &bol, out);
	assert_true(bol);
	n = body_stuff(".", 1, &bol, out);
	assert_memory_equal(out, "..", 2);
}

static void
test_smuggling(void **state)
{
	static const char *seqs[] = {
		"\n.\r\n", "\n.\n", "\r.\r", "\r\n.\r", "\r.\r\n",
		"\r\n.\n", "\n.\r", "\r.\n", "\r\n.\r\r\n", "\r\n\x00.\r\n",
	};
	static struct body b;
	static struct sink k;
	char in[512];
	size_t i, len, step, pre;

	for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		const char *seq = seqs[i];
		size_t seqlen = strlen(seq) + (i == 9 ? 3 : 0);

		pre = (size_t)snprintf(in, sizeof(in),
		    "Subject: s\r\n\r\nfirst");
		memcpy(in + pre, seq, seqlen);
		len = pre + seqlen;
		len += (size_t)snprintf(in + len, sizeof(in) - len,
		    "MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n"
		    "smuggled\r\n.\r\n");
		for (step = 1; step <= len; step *= 2) {
			assert_int_equal(run(&b, &k, in, len, step), len);
			assert_int_equal(b.raw, BODY_END);
			assert_non_null(memmem(k.buf, k.len, "MAIL FROM:", 10));
			assert_non_null(memmem(k.buf, k.len, "smuggled", 8));
			assert_true(crlf_clean(k.buf, k.len));
			assert_true(upstream_ends_once(k.buf, k.len));
		}
	}
}

static void
test_pipelined_rest(void **state)
{
	static struct body b;
	static struct sink k;
	const char *in = "a: b\r\n\r\nx\r\n.\r\nQUIT\r\n";

	assert_int_equal(run(&b, &k, in, strlen(in), 100),
	    strlen(in) - strlen("QUIT\r\n"));
	assert_int_equal(b.raw, BODY_END);
}

static void
test_flags(void **state)
{
	static struct body b;
	static struct sink k;
	const char nul[] = "a: b\r\n\r\nx\0y\r\n.\r\n";
	const char *eight = "a: b\r\n\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n";

	run(&b, &k, nul, sizeof(nul) - 1, 1000);
	assert_true(b.nul);
	assert_false(b.eightbit);
	run(&b, &k, eight, strlen(eight), 1000);
	assert_false(b.nul);
	assert_true(b.eightbit);
	assert_non_null(strstr(k.buf, "\xc3\xa9t\xc3\xa9\r\n"));
}

static void
test_unfinished(void **state)
{
	static struct body b;
	static struct sink k;
	const char *in = "a: b\r\n\r\nno end\r\n.";

	assert_int_equal(run(&b, &k, in, strlen(in), 7), strlen(in));
	assert_int_not_equal(b.raw, BODY_END);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_header_shapes),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_bare_line_ends),
		cmocka_unit_test(test_stuff),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_pipelined_rest),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_unfinished),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
