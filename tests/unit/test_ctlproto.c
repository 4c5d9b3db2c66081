/*
 * Unit tests of the control protocol (common/ctlproto.c, docs/cli.md): the
 * request parser the daemon applies to what a client sends, the STATUS
 * data lines both ways, the socket address (short and too long for
 * sun_path), and the client's exchange over a socketpair: the exact request
 * bytes, data lines, OK, ERR with its code, and the replies it must refuse
 * (no final line, a line past the limit).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "ctlproto.h"
#include "queue.h"

#define ID1	"0123456789ABCDEF"
#define ID2	"FEDCBA9876543210"

/* Parses a copy of text; returns the result, fills verb/args. */
static int
parse(const char *text, char *buf, size_t sz, enum ctlp_verb *verb,
    char **args, size_t maxargs, size_t *nargs, const char **bad)
{
	snprintf(buf, sz, "%s", text);
	return ctlp_parse_request(buf, verb, args, maxargs, nargs, bad);
}

static void
test_parse_request(void **state)
{
	enum ctlp_verb verb = CTLP_MAILDROP;
	char buf[256], *args[4];
	const char *bad;
	size_t n;

	assert_int_equal(parse("STATUS", buf, sizeof(buf), &verb, args, 4, &n,
	    &bad), 0);
	assert_int_equal(verb, CTLP_STATUS);
	assert_int_equal(n, 0);
	assert_int_equal(parse("MAILDROP", buf, sizeof(buf), &verb, args, 4,
	    &n, &bad), 0);
	assert_int_equal(verb, CTLP_MAILDROP);
	assert_int_equal(parse("LIST", buf, sizeof(buf), &verb, args, 4,
	    &n, &bad), 0);
	assert_int_equal(verb, CTLP_LIST);
	assert_int_equal(parse("FLUSH", buf, sizeof(buf), &verb, args, 4, &n,
	    &bad), 0);
	assert_int_equal(verb, CTLP_FLUSH);
	assert_int_equal(n, 0);
	/* Ids, with any number of spaces between them. */
	assert_int_equal(parse("DELETE " ID1 "  " ID2 " ", buf, sizeof(buf),
	    &verb, args, 4, &n, &bad), 0);
	assert_int_equal(verb, CTLP_DELETE);
	assert_int_equal(n, 2);
	assert_string_equal(args[0], ID1);
	assert_string_equal(args[1], ID2);
	assert_null(bad);
}

static void
test_parse_request_refusals(void **state)
{
	enum ctlp_verb verb;
	char buf[256], *args[1];
	const char *bad;
	size_t n;

	assert_int_equal(parse("", buf, sizeof(buf), &verb, args, 1, &n,
	    &bad), -EBADRQC);
	assert_int_equal(parse("   ", buf, sizeof(buf), &verb, args, 1, &n,
	    &bad), -EBADRQC);
	/* Verbs are case-sensitive and whole. */
	assert_int_equal(parse("status", buf, sizeof(buf), &verb, args, 1, &n,
	    &bad), -EBADRQC);
	assert_string_equal(bad, "status");
	assert_int_equal(parse("STATUSX", buf, sizeof(buf), &verb, args, 1,
	    &n, &bad), -EBADRQC);
	/* Arguments must be queue ids: no paths, no lowercase, no short. */
	assert_int_equal(parse("DELETE ../../etc/passwd", buf, sizeof(buf),
	    &verb, args, 1, &n, &bad), -EINVAL);
	assert_string_equal(bad, "../../etc/passwd");
	assert_int_equal(parse("FLUSH 0123456789abcdef", buf, sizeof(buf),
	    &verb, args, 1, &n, &bad), -EINVAL);
	assert_int_equal(parse("FLUSH 0123456789ABCDE", buf, sizeof(buf),
	    &verb, args, 1, &n, &bad), -EINVAL);
	assert_int_equal(parse("FLUSH " ID1 "0", buf, sizeof(buf), &verb,
	    args, 1, &n, &bad), -EINVAL);
	/* More ids than the caller has room for. */
	assert_int_equal(parse("FLUSH " ID1 " " ID2, buf, sizeof(buf), &verb,
	    args, 1, &n, &bad), -E2BIG);
	assert_int_equal(n, 1);
}

static void
test_status_round_trip(void **state)
{
	struct ctlp_status in = {
		.version = "9.9", .pid = 4242, .started = 1700000000,
		.queued = 17, .oldest = 1700000100,
		.last_delivery = 1700000200,
		.upstream = CTLP_UP_PAUSED_AUTH,
		.upstream_since = 1700000300, .next_attempt = 1700000400,
		.reply = "535 5.7.8 Username and Password not accepted.",
	}, out;
	char buf[4096], *line, *save = NULL;
	int n;

	n = ctlp_status_format(&in, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n == strlen(buf));
	assert_non_null(strstr(buf, "\nupstream paused-credentials\n"));
	memset(&out, 0, sizeof(out));
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		ctlp_status_line(&out, line);
	assert_string_equal(out.version, in.version);
	assert_int_equal(out.pid, in.pid);
	assert_int_equal(out.started, in.started);
	assert_int_equal(out.queued, in.queued);
	assert_int_equal(out.oldest, in.oldest);
	assert_int_equal(out.last_delivery, in.last_delivery);
	assert_int_equal(out.upstream, in.upstream);
	assert_int_equal(out.upstream_since, in.upstream_since);
	assert_int_equal(out.next_attempt, in.next_attempt);
	assert_string_equal(out.reply, in.reply);
	/* Too small a buffer: no partial reply. */
	assert_int_equal(ctlp_status_format(&in, buf, 40), -ENOSPC);
}

/* The OAuth token lines: only with oauth set, and they survive the trip. */
static void
test_status_token_round_trip(void **state)
{
	struct ctlp_status in = {
		.version = "9.9", .oauth = true,
		.token_valid_until = 1700003600, .token_last_refresh = 1700000000,
		.token_requests = 3, .token_status = "invalid_grant",
		.token_error = "HTTP 400 invalid_grant: Token has been expired "
		    "or revoked.",
	}, out;
	char buf[4096], *line, *save = NULL;

	assert_true(ctlp_status_format(&in, buf, sizeof(buf)) > 0);
	memset(&out, 0, sizeof(out));
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		ctlp_status_line(&out, line);
	assert_true(out.oauth);
	assert_int_equal(out.token_valid_until, in.token_valid_until);
	assert_int_equal(out.token_last_refresh, in.token_last_refresh);
	assert_int_equal(out.token_requests, 3);
	assert_string_equal(out.token_status, "invalid_grant");
	assert_string_equal(out.token_error, in.token_error);
	in.oauth = false;
	assert_true(ctlp_status_format(&in, buf, sizeof(buf)) > 0);
	assert_null(strstr(buf, "token_"));
}

static void
test_status_lines_from_a_stranger(void **state)
{
	struct ctlp_status st;

	memset(&st, 0, sizeof(st));
	st.pid = 7;
	/* Unknown keys, no value, bad numbers: ignored or 0, never UB. */
	ctlp_status_line(&st, "color blue");
	ctlp_status_line(&st, "pid");
	assert_int_equal(st.pid, 7);
	ctlp_status_line(&st, "pid -5");
	assert_int_equal(st.pid, 0);
	ctlp_status_line(&st, "queued 12abc");
	assert_int_equal(st.queued, 0);
	ctlp_status_line(&st, "started 99999999999999999999999");
	assert_int_equal(st.started, 0);
	ctlp_status_line(&st, "upstream sideways");
	assert_int_equal(st.upstream, CTLP_UP_UNKNOWN);
	ctlp_status_line(&st, "upstream paused-quota");
	assert_int_equal(st.upstream, CTLP_UP_PAUSED_QUOTA);
	ctlp_status_line(&st, "version 0123456789012345678901234567890123456789");
	assert_int_equal(strlen(st.version), sizeof(st.version) - 1);
	assert_string_equal(ctlp_upstream_name((enum ctlp_upstream)99),
	    "unknown");
	assert_string_equal(ctlp_upstream_name(CTLP_UP_RETRYING), "retrying");
}

static void
test_sockaddr_short_and_long(void **state)
{
	struct sockaddr_un sun;
	socklen_t len;
	char dir[256], deep[512], expect[64];
	const char *tmp = getenv("TMPDIR");
	int dirfd;

	assert_int_equal(ctlp_sockaddr("/var/spool/smartrelay", &sun, &len,
	    &dirfd), 0);
	assert_int_equal(dirfd, -1);
	assert_string_equal(sun.sun_path, "/var/spool/smartrelay/ctl");
	assert_int_equal(len, offsetof(struct sockaddr_un, sun_path) +
	    strlen("/var/spool/smartrelay/ctl") + 1);

	/* Longer than sun_path: reached through the spool's descriptor. */
	snprintf(dir, sizeof(dir), "%s/ctlp-test.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	assert_true(strlen(dir) < 200);
	snprintf(deep, sizeof(deep), "%s/%0120d", dir, 0);
	assert_int_equal(mkdir(deep, 0700), 0);
	assert_int_equal(ctlp_sockaddr(deep, &sun, &len, &dirfd), 0);
	assert_true(dirfd >= 0);
	snprintf(expect, sizeof(expect), "/proc/self/fd/%d/ctl", dirfd);
	assert_string_equal(sun.sun_path, expect);
	close(dirfd);
	/* A missing long spool is an error, not a truncated path. */
	assert_int_equal(rmdir(deep), 0);
	assert_int_equal(ctlp_sockaddr(deep, &sun, &len, &dirfd), -ENOENT);
	assert_int_equal(dirfd, -1);
	assert_int_equal(rmdir(dir), 0);
}

/* No daemon: -ENOENT without a socket file. */
static void
test_connect_without_daemon(void **state)
{
	int fd = 123;

	assert_int_equal(ctlp_connect("/nonexistent/spool", &fd), -ENOENT);
	assert_int_equal(fd, -1);
}

/* Data lines received by the client. */
struct lines {
	char text[1024];
	int n;
};

static void
collect(void *arg, const char *line)
{
	struct lines *l = arg;
	size_t used = strlen(l->text);

	snprintf(l->text + used, sizeof(l->text) - used, "%s|", line);
	l->n++;
}

/*
 * One client exchange: the daemon's reply is written first (the socket
 * buffers it), then ctlp_call() runs; returns its result and what the
 * daemon side received.
 */
static int
call(const char *req, const void *reply, size_t replylen, bool hangup,
    struct lines *l, char **err, char *got, size_t gotsz)
{
	int sv[2], r;
	ssize_t n;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], reply, replylen), (ssize_t)replylen);
	if (hangup)
		assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
	memset(l, 0, sizeof(*l));
	r = ctlp_call(sv[0], req, collect, l, err);
	close(sv[0]);
	n = read(sv[1], got, gotsz - 1);
	got[n > 0 ? n : 0] = '\0';
	close(sv[1]);
	return r;
}

static void
test_call_ok_and_err(void **state)
{
	static const char ok[] = "flushed " ID1 "\nunknown " ID2 "\nOK\n";
	static const char err67[] = "unknown " ID1 "\nERR 67 unknown id\n";
	struct lines l;
	char got[256], *err = NULL;

	assert_int_equal(call("FLUSH " ID1 " " ID2, ok, strlen(ok), false,
	    &l, &err, got, sizeof(got)), 0);
	assert_string_equal(got, "FLUSH " ID1 " " ID2 "\n");
	assert_int_equal(l.n, 2);
	assert_string_equal(l.text, "flushed " ID1 "|unknown " ID2 "|");
	assert_null(err);

	assert_int_equal(call("DELETE " ID1, err67, strlen(err67), false, &l,
	    &err, got, sizeof(got)), 67);
	assert_string_equal(l.text, "unknown " ID1 "|");
	assert_non_null(err);
	assert_string_equal(err, "unknown id");
	free(err);
	err = NULL;

	/* A code out of range becomes 70 (EX_SOFTWARE). */
	assert_int_equal(call("STATUS", "ERR 999 odd\n", 12, false, &l, &err,
	    got, sizeof(got)), 70);
	free(err);
}

static void
test_call_refuses_bad_replies(void **state)
{
	struct lines l;
	char got[256], *err = NULL, *big;

	/* The daemon hangs up before its final line. */
	assert_int_equal(call("STATUS", "pid 1\n", 6, true, &l, &err, got,
	    sizeof(got)), -EPROTO);
	assert_int_equal(l.n, 1);
	assert_null(err);
	/* A data line longer than the limit. */
	assert_non_null(big = malloc(CTLP_LINE_MAX + 10));
	memset(big, 'x', CTLP_LINE_MAX + 10);
	assert_int_equal(call("STATUS", big, CTLP_LINE_MAX + 10, true, &l,
	    &err, got, sizeof(got)), -EPROTO);
	assert_int_equal(l.n, 0);
	free(big);
	/* A request that would be two lines is never sent. */
	assert_int_equal(call("STATUS\nDELETE " ID1, "OK\n", 3, false, &l,
	    &err, got, sizeof(got)), -EINVAL);
	assert_string_equal(got, "");
}

/* LIST lines: xtext addresses, "<>", the reason on one line, no body. */
static void
test_list_format(void **state)
{
	struct queue_rcpt rcpt[2] = {
		{ .addr = (char *)"b c@x.org", .state = QUEUE_RCPT_PENDING },
		{ .addr = (char *)"d@x.org", .state = QUEUE_RCPT_DELIVERED },
	};
	struct queue_msg m = { .id = "6613F33DE6B10FFA", .arrival = 100,
	    .from = (char *)"", .rcpt = rcpt, .nrcpt = 2, .size = 2048,
	    .attempts = 3, .next_attempt = 200 };
	struct queue_stub st = { .id = "6613F33DE6B10FFA", .arrival = 100,
	    .next_attempt = 7 };
	char *s;

	assert_non_null(s = ctlp_list_format(&m, &st, true,
	    "450 4.2.1 slow\r\ndown"));
	assert_string_equal(s,
	    "msg 6613F33DE6B10FFA 100 2048 3 200 active <>\n"
	    "reason 6613F33DE6B10FFA 450 4.2.1 slow  down\n"
	    "rcpt 6613F33DE6B10FFA pending b+20c@x.org\n"
	    "rcpt 6613F33DE6B10FFA delivered d@x.org\n");
	free(s);
	assert_non_null(s = ctlp_list_format(NULL, &st, false, NULL));
	assert_string_equal(s, "msg 6613F33DE6B10FFA 100 0 0 7 unread <>\n");
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_request),
		cmocka_unit_test(test_list_format),
		cmocka_unit_test(test_parse_request_refusals),
		cmocka_unit_test(test_status_round_trip),
		cmocka_unit_test(test_status_token_round_trip),
		cmocka_unit_test(test_status_lines_from_a_stranger),
		cmocka_unit_test(test_sockaddr_short_and_long),
		cmocka_unit_test(test_connect_without_daemon),
		cmocka_unit_test(test_call_ok_and_err),
		cmocka_unit_test(test_call_refuses_bad_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
