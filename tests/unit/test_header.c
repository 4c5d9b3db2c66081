/*
 * Unit tests of the header module (common/header.c): qualified addresses,
 * one From:/Date:/Message-ID:, rewrite.header_from, Bcc:, folding, fields
 * too long to hold.  Every input is fed in pieces of several sizes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"
#include "header.h"

#define DATE "Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
#define MSGID "Message-ID: <q1@host.example.org>\r\n"
#define FROM "From: <sender@example.net>\r\n"

static struct cfg_alias aliases[] = {
	{ (char *)"alice", (char *)"alice@example.net" },
};
static struct cfg cfg = { .hostname = (char *)"host.example.org",
    .rewrite = { .aliases = aliases, .naliases = 1 } };
static const struct cfg *cfgp = &cfg;
static const struct hdr_opts opts = { .cfg = &cfgp, .from = FROM,
    .date = DATE, .msgid = MSGID };

struct sink {
	char *buf;
	size_t len, cap;
};

static void
sink_out(void *arg, const char *buf, size_t len)
{
	struct sink *k = arg;

	if (k->len + len + 1 > k->cap) {
		k->cap = 2 * (k->len + len + 1);
		assert_non_null(k->buf = realloc(k->buf, k->cap));
	}
	memcpy(k->buf + k->len, buf, len);
	k->len += len;
	k->buf[k->len] = '\0';
}

/* Runs in through the module in pieces of step bytes; the output. */
static char *
run(const char *in, size_t len, size_t step)
{
	struct sink k = { 0 };
	struct hdr h;
	size_t off = 0, n, used;

	hdr_init(&h, &opts, sink_out, &k);
	while (off < len && !h.done) {
		n = len - off < step ? len - off : step;
		used = hdr_feed(&h, in + off, n);
		assert_true(used <= n);
		off += used;
	}
	hdr_finish(&h);
	assert_int_equal(h.error, 0);
	hdr_free(&h);
	sink_out(&k, in + off, len - off);	/* the body, as body.c does */
	return k.buf;
}

static void
expect(const char *in, const char *out)
{
	size_t step, len = strlen(in);
	char *got;

	for (step = 1; step <= len; step = step * 3 + 1) {
		got = run(in, len, step);
		assert_string_equal(got, out);
		free(got);
	}
}

static void
test_cron(void **state)
{
	/* Debian cron: "From: root (Cron Daemon)", "To: alice". */
	expect("From: root (Cron Daemon)\r\nTo: alice\r\nSubject: x\r\n\r\n"
	    "body\r\n",
	    "From: root@host.example.org (Cron Daemon)\r\n"
	    "To: alice@example.net\r\nSubject: x\r\n" DATE MSGID "\r\nbody\r\n");
	cfg.rewrite.local_domain = (char *)"example.org";
	expect("From: root\r\nCc: \"Doe, J\" <jd>, b@x.org (B), Team: c, d;"
	    "\r\n\r\n",
	    "From: root@example.org\r\nCc: \"Doe, J\" <jd@example.org>, "
	    "b@x.org (B), Team: c@example.org, d@example.org;\r\n"
	    DATE MSGID "\r\n");
	cfg.rewrite.local_domain = NULL;
	expect("To: undisclosed-recipients:;\r\nReply-To: Ops <ops>,\r\n"
	    " alice\r\n\r\n",
	    "To: undisclosed-recipients:;\r\n"
	    "Reply-To: Ops <ops@host.example.org>,\r\n alice@example.net\r\n"
	    FROM DATE MSGID "\r\n");
}

static void
test_one_of_each(void **state)
{
	/* No From: the caller's; an unusable one is kept aside. */
	expect("Subject: s\r\n\r\n", "Subject: s\r\n" FROM DATE MSGID "\r\n");
	expect("From: <>\r\n\r\n", "X-Original-From: <>\r\n" FROM DATE MSGID
	    "\r\n");
	expect("From: Some Name\r\n\r\n", "X-Original-From: Some Name\r\n"
	    FROM DATE MSGID "\r\n");
	/* Duplicates, a bad Message-ID, Bcc. */
	expect("From: a@x.org\r\nFrom: b@y.org\r\nDate: d1\r\nDate: d2\r\n"
	    "Message-ID: not valid\r\nBcc: s@x.org,\r\n t@x.org\r\n"
	    "Resent-Bcc: u@x.org\r\nMessage-Id: <ok@x>\r\n"
	    "Message-ID: <two@x>\r\n\r\n",
	    "From: a@x.org\r\nX-Original-From: b@y.org\r\nDate: d1\r\n"
	    "Message-Id: <ok@x>\r\n\r\n");
	/* Headers only, and a first line that is no header. */
	expect("Subject: s\r\n", "Subject: s\r\n" FROM DATE MSGID);
	expect("hello: world: x\r\nno header here\r\n",
	    "hello: world: x\r\n" FROM DATE MSGID "\r\nno header here\r\n");
	expect(" indented\r\n", FROM DATE MSGID "\r\n indented\r\n");
	/* The input ends inside a line (found by the fuzzer). */
	expect("x", FROM DATE MSGID "\r\nx");
	expect("Subject: s", "Subject: s\r\n" FROM DATE MSGID);
}

static void
test_header_from(void **state)
{
	cfg.rewrite.header_from = (char *)"me@example.com";
	expect("From: \"Alice A.\" <alice@x.org>\r\n\r\n",
	    "From: \"Alice A.\" <me@example.com>\r\n" DATE MSGID
	    "Reply-To: <alice@x.org>\r\n\r\n");
	expect("Reply-To: r@x.org\r\nFrom: root (Cron Daemon)\r\n\r\n",
	    "Reply-To: r@x.org\r\nFrom: me@example.com (Cron Daemon)\r\n"
	    DATE MSGID "\r\n");
	/* The added From: is rewritten too. */
	expect("\r\n", "From: <me@example.com>\r\n" DATE MSGID
	    "Reply-To: <sender@example.net>\r\n\r\n");
	cfg.rewrite.header_from = NULL;
}

/* True when no line of s is longer than 998 octets before its CRLF. */
static void
assert_lines_fit(const char *s)
{
	const char *e;

	for (; *s != '\0'; s = e + 2) {
		assert_non_null(e = strstr(s, "\r\n"));
		assert_true(e - s <= HDR_LINE_MAX);
	}
}

/* s without the CRLFs that folding inserted before a WSP. */
static void
unfold(char *s)
{
	char *w = s;

	for (; *s != '\0'; s++)
		if (!(s[0] == '\r' && s[1] == '\n' && (s[2] == ' ' ||
		    s[2] == '\t')) && !(s[0] == '\n' && s[-1] == '\r' &&
		    (s[1] == ' ' || s[1] == '\t')))
			*w++ = *s;
	*w = '\0';
}

static void
test_folding(void **state)
{
	char *in, *out;
	size_t i, n = 3000;

	assert_non_null(in = malloc(n + 64));
	/* Words: folded at spaces, the unfolded text unchanged. */
	strcpy(in, "X-Words:");
	for (i = strlen(in); i + 6 < n; i += 6)
		memcpy(in + i, " word5", 6);
	strcpy(in + i, "\r\n\r\n");
	out = run(in, strlen(in), 4096);
	assert_lines_fit(out);
	unfold(out);
	assert_memory_equal(out, in, i + 2);
	free(out);
	/* No whitespace at all: broken with CRLF SP. */
	strcpy(in, "X-Blob: ");
	memset(in + 8, 'a', n);
	strcpy(in + 8 + n, "\r\n\r\n");
	out = run(in, strlen(in), 100);
	assert_lines_fit(out);
	assert_non_null(strstr(out, "\r\n a"));
	free(out);
	free(in);
}

static void
test_long_field(void **state)
{
	size_t n = HDR_FIELD_MAX + 5000, i;
	char *in, *out;

	/* A To: too long to hold: passed on folded; a Bcc: still dropped. */
	assert_non_null(in = malloc(2 * n + 64));
	strcpy(in, "To:");
	for (i = 3; i + 10 < n; i += 10)
		memcpy(in + i, " a@b.c.de,", 10);
	strcpy(in + i, "\r\nBcc:");
	for (i += 6; i + 10 < 2 * n; i += 10)
		memcpy(in + i, " s@b.c.de,", 10);
	strcpy(in + i, "\r\nSubject: end\r\n\r\nbody\r\n");
	out = run(in, strlen(in), 777);
	assert_lines_fit(out);
	assert_null(strstr(out, "s@b.c.de"));
	assert_non_null(strstr(out, "\r\nSubject: end\r\n" FROM DATE MSGID
	    "\r\nbody\r\n"));
	assert_true(strlen(out) > n);
	free(out);
	free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cron),
		cmocka_unit_test(test_one_of_each),
		cmocka_unit_test(test_header_from),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_long_field),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
