/*
 * Unit tests of the relay session (daemon/relay.c), the outbound state
 * machine, driven over a socketpair: relay_new_fd() starts a session on one
 * end, and a scripted fake upstream on the other end of the same event loop
 * answers each command with the reply its script gives.  The tests assert
 * what the upstream and the scheduler observe: the exact bytes that reached
 * the upstream (commands, AUTH payloads, dot-stuffed body), and the
 * outcomes reported through relay_ops (per recipient, per message, how the
 * session ended).  Nothing is timed: every session ends by the script (a
 * reply, or the fake closing the connection), and the loop runs until no
 * event is left.  Also: which addresses a plaintext session may use.
 */
#include <arpa/inet.h>
#include <errno.h>
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
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "cfg.h"
#include "queue.h"
#include "relay.h"
#include "test_env.h"

#define USER		"bob@example.org"
/* The file as Google shows App Passwords: the spaces are not sent. */
#define PASSWORD	"secret pass"
/* base64("\0bob@example.org\0secretpass") */
#define PLAIN_TOKEN	"AGJvYkBleGFtcGxlLm9yZwBzZWNyZXRwYXNz"

/* One command the fake upstream expects, and its answer. */
struct step {
	const char *expect;	/* the command line (prefix); "." = the end
				   of DATA's content */
	const char *reply;	/* sent as is; NULL: close the connection */
	bool batched;		/* the rest of the envelope (up to DATA)
				   must already be here: one write */
};

/* The scripted upstream on the far end of the socketpair. */
struct fake {
	struct bufferevent *bev;	/* owned, NULL once closed */
	const char *greeting;		/* borrowed: sent at start */
	const struct step *script;	/* borrowed, ends with expect NULL */
	size_t next;			/* the step expected next */
	bool in_data;			/* between 354 and the final dot */
	size_t chunk_left;		/* BDAT octets still to read */
	const char *chunk_reply;	/* borrowed: the reply after them */
	char seen[16384];		/* every line received, CRLF each */
	size_t seenlen;
	char error[512];		/* the first script violation */
	/* Bytes that must already be here behind step ahead_step's line,
	 * sent without waiting for its reply (NULL: no such check). */
	const char *ahead;
	size_t ahead_step;
};

#define MAX_MSGS	4

/* One session run: the relay's environment and what it reported. */
struct run {
	struct event_base *base;	/* owned */
	struct cfg cfg;
	struct relay_env env;
	struct relay_ops ops;
	char dir[256];			/* temporary spool and password */
	struct queue *q;		/* owned */
	struct queue_msg *msg;		/* owned: msgs[0] */
	/* Owned: sent in this order, as soon as the session takes them. */
	struct queue_msg *msgs[MAX_MSGS];
	size_t nmsgs, nsent;
	int nready;
	int ndone;
	struct relay_result res;	/* of the last done(), rcpt copied */
	struct relay_rcpt_result rcpt[4];
	/* The done() of msgs[i], rcpt copied. */
	struct relay_result each[MAX_MSGS];
	struct relay_rcpt_result each_rcpt[MAX_MSGS][4];
	int nclosed;
	struct relay_end end;
	struct fake fake;
};

/* ---- the fake upstream ---- */

/* Records a script violation (the first one) and hangs up. */
static void
fake_error(struct fake *f, const char *line)
{
	if (f->error[0] == '\0')
		snprintf(f->error, sizeof(f->error), "step %zu: expected "
		    "\"%s\", got \"%s\"", f->next, f->script[f->next].expect
		    != NULL ? f->script[f->next].expect : "(end)", line);
	bufferevent_free(f->bev);
	f->bev = NULL;
}

/* Checks that the envelope, up to DATA, came in one write. */
static void
fake_check_batch(struct fake *f, struct evbuffer *in, const char *line)
{
	struct evbuffer_ptr p = evbuffer_search(in, "DATA\r\n", 6, NULL);

	if (p.pos < 0 && f->error[0] == '\0')
		snprintf(f->error, sizeof(f->error), "\"%s\" came without "
		    "the rest of the envelope", line);
}

/* One complete line from the relay; false once the fake hung up. */
static bool
fake_line(struct fake *f, struct evbuffer *in, const char *line)
{
	const struct step *st = &f->script[f->next];
	size_t len = strlen(line);

	if (f->seenlen + len + 2 < sizeof(f->seen)) {
		memcpy(f->seen + f->seenlen, line, len);
		memcpy(f->seen + f->seenlen + len, "\r\n", 3);
		f->seenlen += len + 2;
	}
	if (f->in_data && strcmp(line, ".") != 0)
		return true;
	if (st->expect == NULL ||
	    strncmp(line, st->expect, strlen(st->expect)) != 0) {
		fake_error(f, line);
		return false;
	}
	f->in_data = false;
	f->next++;
	if (st->batched)
		fake_check_batch(f, in, line);
	if (f->ahead != NULL && f->next - 1 == f->ahead_step &&
	    evbuffer_search(in, f->ahead, strlen(f->ahead), NULL).pos < 0 &&
	    f->error[0] == '\0')
		snprintf(f->error, sizeof(f->error), "\"%s\" came without "
		    "\"%s\" behind it", line, f->ahead);
	if (st->reply == NULL) {
		bufferevent_free(f->bev);
		f->bev = NULL;
		return false;
	}
	if (strncmp(st->reply, "354", 3) == 0)
		f->in_data = true;
	if (strncmp(line, "BDAT ", 5) == 0 &&
	    (f->chunk_left = strtoul(line + 5, NULL, 10)) > 0) {
		/* RFC 3030: the reply comes once the octets are read. */
		f->chunk_reply = st->reply;
		return true;
	}
	bufferevent_write(f->bev, st->reply, strlen(st->reply));
	return true;
}

/* Takes BDAT octets (recorded as they came); true when more may follow. */
static bool
fake_chunk(struct fake *f, struct evbuffer *in)
{
	size_t n = evbuffer_get_length(in);

	if (n > f->chunk_left)
		n = f->chunk_left;
	if (n == 0)
		return false;
	if (f->seenlen + n < sizeof(f->seen)) {
		evbuffer_remove(in, f->seen + f->seenlen, n);
		f->seenlen += n;
		f->seen[f->seenlen] = '\0';
	} else
		evbuffer_drain(in, n);
	if ((f->chunk_left -= n) == 0)
		bufferevent_write(f->bev, f->chunk_reply,
		    strlen(f->chunk_reply));
	return true;
}

static void
fake_readcb(struct bufferevent *bev, void *arg)
{
	struct fake *f = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;
	bool more = true;

	while (more && f->bev != NULL) {
		if (f->chunk_left > 0) {
			more = fake_chunk(f, in);
			continue;
		}
		if ((line = evbuffer_readln(in, &len,
		    EVBUFFER_EOL_CRLF_STRICT)) == NULL)
			break;
		more = fake_line(f, in, line);
		free(line);
	}
}

/* The relay hung up (or failed): the fake ends too. */
static void
fake_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct fake *f = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_free(f->bev);
		f->bev = NULL;
	}
}

/* ---- the relay's callbacks ---- */

static void
on_ready(void *arg, uint64_t id)
{
	struct run *r = arg;
	struct relay_session *s = relay_find(&r->env, id);

	assert_non_null(s);
	r->nready++;
	/* As the scheduler does: as many as the session takes. */
	while (r->nsent < r->nmsgs && relay_can_send(s, r->msgs[r->nsent]))
		assert_int_equal(relay_send(s, r->msgs[r->nsent++]), 0);
	if (r->nsent == r->nmsgs && r->ndone == (int)r->nsent)
		relay_quit(s, "test done");
}

static void
on_done(void *arg, uint64_t id, struct queue_msg *m,
    const struct relay_result *res)
{
	struct run *r = arg;
	int i = r->ndone++;

	/* In the order they were handed over. */
	assert_in_range(i, 0, (int)r->nsent - 1);
	assert_ptr_equal(m, r->msgs[i]);
	assert_in_range(res->nrcpt, 0, 4);
	r->res = *res;
	memcpy(r->rcpt, res->rcpt, res->nrcpt * sizeof(*res->rcpt));
	r->res.rcpt = r->rcpt;
	r->each[i] = r->res;
	memcpy(r->each_rcpt[i], res->rcpt, res->nrcpt * sizeof(*res->rcpt));
	r->each[i].rcpt = r->each_rcpt[i];
}

static void
on_closed(void *arg, uint64_t id, const struct relay_end *end)
{
	struct run *r = arg;

	r->nclosed++;
	r->end = *end;
	assert_null(relay_find(&r->env, id));
}

static SSL_CTX *
on_tls_ctx(void *arg, char *reason, size_t sz)
{
	snprintf(reason, sz, "no TLS in this test");
	return NULL;
}

/* ---- fixture ---- */

static int
setup(void **state)
{
	struct run *r = calloc(1, sizeof(*r));
	const char *tmp = getenv("TMPDIR");
	char path[512], *err = NULL;
	FILE *f;

	assert_non_null(r);
	snprintf(r->dir, sizeof(r->dir), "%s/relay-test.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	assert_non_null(mkdtemp(r->dir));
	snprintf(path, sizeof(path), "%s/spool", r->dir);
	assert_int_equal(queue_open(path, &r->q, &err), 0);
	snprintf(path, sizeof(path), "%s/password", r->dir);
	assert_non_null(f = fopen(path, "w"));
	fputs(PASSWORD "\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0600), 0);
	unsetenv("CREDENTIALS_DIRECTORY");

	r->cfg.hostname = strdup("relay.test");
	r->cfg.upstream.host = strdup("upstream.test");
	r->cfg.upstream.port = 25;
	r->cfg.upstream.tls = CFG_TLS_NONE;
	r->cfg.upstream.username = strdup(USER);
	r->cfg.upstream.password_file = strdup(path);
	r->cfg.upstream.connections = 1;
	r->cfg.upstream.messages_per_connection = 10;
	/* A guard against a hang, never reached when the relay is right. */
	r->cfg.upstream.timeout = 60;

	assert_non_null(r->base = event_base_new());
	r->ops.ready = on_ready;
	r->ops.done = on_done;
	r->ops.closed = on_closed;
	r->ops.tls_ctx = on_tls_ctx;
	r->env.base = r->base;
	r->env.cfg = &r->cfg;
	r->env.queue = r->q;
	r->env.ops = &r->ops;
	r->env.arg = r;
	assert_int_equal(relay_env_init(&r->env), 0);
	*state = r;
	return 0;
}

static int
teardown(void **state)
{
	struct run *r = *state;

	relay_env_free(&r->env);
	if (r->fake.bev != NULL)
		bufferevent_free(r->fake.bev);
	event_base_free(r->base);
	while (r->nmsgs > 0)
		queue_msg_free(r->msgs[--r->nmsgs]);
	queue_close(r->q);
	test_rmtree(r->dir);
	free(r->cfg.hostname);
	free(r->cfg.upstream.host);
	free(r->cfg.upstream.username);
	free(r->cfg.upstream.password_file);
	free(r);
	return 0;
}

/* Queues a message (body as stored: CRLF, dot-stuffing undone). */
static void
queue_message(struct run *r, const char *from, const char *const *rcpts,
    size_t nrcpt, const char *body)
{
	struct queue_writer *w;
	char id[QUEUE_ID_LEN + 1];

	assert_int_equal(queue_writer_new(r->q, &w), 0);
	assert_int_equal(queue_writer_envelope(w, from, rcpts, nrcpt, 0,
	    time(NULL)), 0);
	assert_int_equal(queue_writer_write(w, body, strlen(body)), 0);
	assert_int_equal(queue_writer_commit(w), 0);
	snprintf(id, sizeof(id), "%s", queue_writer_id(w));
	queue_writer_free(w);
	assert_in_range(r->nmsgs, 0, MAX_MSGS - 1);
	assert_int_equal(queue_load(r->q, id, &r->msgs[r->nmsgs]), 0);
	r->msg = r->msgs[0];
	r->nmsgs++;
}

/* Runs one session against the script until no event is left. */
static void
run_session(struct run *r, const char *greeting, const struct step *script)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[1]), 0);
	r->fake.greeting = greeting;
	r->fake.script = script;
	r->fake.bev = bufferevent_socket_new(r->base, sv[1],
	    BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(r->fake.bev);
	bufferevent_setcb(r->fake.bev, fake_readcb, NULL, fake_eventcb,
	    &r->fake);
	bufferevent_enable(r->fake.bev, EV_READ | EV_WRITE);
	bufferevent_write(r->fake.bev, greeting, strlen(greeting));
	assert_non_null(relay_new_fd(&r->env, 1, sv[0]));
	assert_int_equal(event_base_dispatch(r->base), 1);	/* no events */
	if (r->fake.error[0] != '\0')
		fail_msg("%s; the upstream saw:\n%s", r->fake.error,
		    r->fake.seen);
	assert_int_equal(r->nclosed, 1);
}

/* Asserts the whole script was played. */
static void
assert_script_done(struct run *r)
{
	size_t n = 0;

	while (r->fake.script[n].expect != NULL)
		n++;
	if (r->fake.next != n)
		fail_msg("script stopped at step %zu of %zu; the upstream "
		    "saw:\n%s", r->fake.next, n, r->fake.seen);
}

static const char *const two_rcpts[] = { "carol@example.net",
	"dave@example.net" };

/* ---- the tests ---- */

/*
 * Greeting, EHLO, AUTH PLAIN, one message without PIPELINING (one command
 * per reply, SIZE given), the body dot-stuffed, ready again, QUIT: every
 * byte the upstream received, and every outcome the scheduler heard.
 */
static void
test_session_delivers_exact_bytes(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-SIZE 1000000\r\n"
		    "250 AUTH LOGIN PLAIN\r\n", false },
		{ "AUTH ", "235 2.7.0 Accepted\r\n", false },
		{ "MAIL ", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "DATA", "354 Go ahead\r\n", false },
		{ ".", "250 2.0.0 OK queued as 42\r\n", false },
		{ "QUIT", "221 2.0.0 closing connection\r\n", false },
		{ NULL, NULL, false },
	};
	static const char body[] = "Subject: dots\r\n\r\n.leading dot\r\n"
	    ".\r\nlast line";
	struct run *r = *state;
	char expect[2048];

	queue_message(r, "alice@example.org", two_rcpts, 2, body);
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	snprintf(expect, sizeof(expect),
	    "EHLO relay.test\r\n"
	    "AUTH PLAIN " PLAIN_TOKEN "\r\n"
	    "MAIL FROM:<alice@example.org> SIZE=%zu\r\n"
	    "RCPT TO:<carol@example.net>\r\n"
	    "RCPT TO:<dave@example.net>\r\n"
	    "DATA\r\n"
	    "Subject: dots\r\n\r\n..leading dot\r\n..\r\nlast line\r\n"
	    ".\r\n"
	    "QUIT\r\n", strlen(body));
	assert_string_equal(r->fake.seen, expect);
	assert_int_equal(r->nready, 2);
	assert_int_equal(r->ndone, 1);
	assert_int_equal(r->res.outcome, RELAY_OK);
	assert_string_equal(r->res.reply, "250 2.0.0 OK queued as 42");
	assert_false(r->res.dot_sent);
	assert_int_equal(r->res.nrcpt, 2);
	assert_int_equal(r->rcpt[0].outcome, RELAY_OK);
	assert_int_equal(r->rcpt[1].outcome, RELAY_OK);
	assert_string_equal(r->rcpt[1].reply, "250 2.0.0 OK queued as 42");
	assert_true(r->end.was_ready);
	assert_int_equal(r->end.outcome, RELAY_OK);
}

/*
 * PIPELINING offered: MAIL, every RCPT and DATA in one write (RFC 2920);
 * a refused RCPT fails that recipient only, with its own reply.
 */
static void
test_pipelined_envelope_and_one_refused_rcpt(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-PIPELINING\r\n"
		    "250 AUTH PLAIN\r\n", false },
		{ "AUTH PLAIN " PLAIN_TOKEN, "235 2.7.0 Accepted\r\n", false },
		{ "MAIL FROM:<alice@example.org>", "250 2.1.0 OK\r\n", true },
		{ "RCPT TO:<carol@example.net>", "550-5.1.1 no such user\r\n"
		    "550 5.1.1 try again\r\n", false },
		{ "RCPT TO:<dave@example.net>", "250 2.1.5 OK\r\n", false },
		{ "DATA", "354 Go ahead\r\n", false },
		{ ".", "250 2.0.0 OK\r\n", false },
		{ "QUIT", "221 2.0.0 bye\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	queue_message(r, "alice@example.org", two_rcpts, 2, "hello\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_int_equal(r->ndone, 1);
	assert_int_equal(r->res.nrcpt, 2);
	assert_int_equal(r->rcpt[0].outcome, RELAY_PERMFAIL);
	assert_non_null(strstr(r->rcpt[0].reply, "550 5.1.1"));
	assert_int_equal(r->rcpt[1].outcome, RELAY_OK);
	assert_string_equal(r->rcpt[1].reply, "250 2.0.0 OK");
	assert_int_equal(r->end.outcome, RELAY_OK);
}

/*
 * CHUNKING and PIPELINING offered (as by Gmail): MAIL, the RCPTs,
 * "BDAT n LAST" and the body as stored (no dot-stuffing, a final CRLF
 * added and counted) go out without waiting for a reply; a refused RCPT
 * fails only its recipient, the chunk's reply decides for the others.
 */
static void
test_bdat_whole_transaction(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-PIPELINING\r\n"
		    "250-CHUNKING\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH PLAIN " PLAIN_TOKEN, "235 2.7.0 Accepted\r\n", false },
		{ "MAIL FROM:<alice@example.org>", "250 2.1.0 OK\r\n", false },
		{ "RCPT TO:<carol@example.net>", "550 5.1.1 no such user\r\n",
		    false },
		{ "RCPT TO:<dave@example.net>", "250 2.1.5 OK\r\n", false },
		{ "BDAT ", "250 2.0.0 OK chunk\r\n", false },
		{ "QUIT", "221 2.0.0 bye\r\n", false },
		{ NULL, NULL, false },
	};
	static const char body[] = "Subject: dots\r\n\r\n.leading dot\r\n"
	    ".\r\nlast line";
	struct run *r = *state;
	char expect[2048];

	queue_message(r, "alice@example.org", two_rcpts, 2, body);
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	snprintf(expect, sizeof(expect),
	    "EHLO relay.test\r\n"
	    "AUTH PLAIN " PLAIN_TOKEN "\r\n"
	    "MAIL FROM:<alice@example.org>\r\n"
	    "RCPT TO:<carol@example.net>\r\n"
	    "RCPT TO:<dave@example.net>\r\n"
	    "BDAT %zu LAST\r\n"
	    "%s\r\n"
	    "QUIT\r\n", strlen(body) + 2, body);
	assert_string_equal(r->fake.seen, expect);
	assert_int_equal(r->ndone, 1);
	assert_int_equal(r->rcpt[0].outcome, RELAY_PERMFAIL);
	assert_non_null(strstr(r->rcpt[0].reply, "550 5.1.1"));
	assert_int_equal(r->rcpt[1].outcome, RELAY_OK);
	assert_string_equal(r->rcpt[1].reply, "250 2.0.0 OK chunk");
	assert_false(r->res.dot_sent);
	assert_int_equal(r->end.outcome, RELAY_OK);
}

/* A 4xx to the chunk defers the message (RSET follows, session goes on). */
static void
test_bdat_refused_chunk(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-PIPELINING\r\n"
		    "250-CHUNKING\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH PLAIN " PLAIN_TOKEN, "235 2.7.0 Accepted\r\n", false },
		{ "MAIL ", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "BDAT ", "451 4.3.0 Try again later\r\n", false },
		{ "RSET", "250 2.1.5 Flushed\r\n", false },
		{ "QUIT", "221 2.0.0 bye\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	queue_message(r, "alice@example.org", two_rcpts, 2, "hello\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_non_null(strstr(r->fake.seen, "BDAT 7 LAST\r\nhello\r\nRSET"));
	assert_int_equal(r->ndone, 1);
	assert_int_equal(r->res.outcome, RELAY_TEMPFAIL);
	assert_int_equal(r->rcpt[0].outcome, RELAY_TEMPFAIL);
	assert_int_equal(r->rcpt[1].outcome, RELAY_TEMPFAIL);
	assert_string_equal(r->rcpt[1].reply, "451 4.3.0 Try again later");
}

/*
 * Three small messages with CHUNKING and PIPELINING: the second and third
 * go behind the first without waiting for any reply, each after an RSET,
 * all in one write; the replies come in order and each decides only its
 * own message (a refused RCPT its recipient, a refused chunk its message).
 */
static void
test_pipelined_transactions(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-PIPELINING\r\n"
		    "250-CHUNKING\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH PLAIN " PLAIN_TOKEN, "235 2.7.0 Accepted\r\n", false },
		{ "MAIL FROM:<a1@example.org>", "250 2.1.0 OK\r\n", false },
		{ "RCPT TO:<carol@example.net>", "250 2.1.5 OK\r\n", false },
		{ "BDAT 5 LAST", "250 2.0.0 OK one\r\n", false },
		{ "RSET", "250 2.0.0 Flushed\r\n", false },
		{ "MAIL FROM:<a2@example.org>", "250 2.1.0 OK\r\n", false },
		{ "RCPT TO:<carol@example.net>", "550 5.1.1 no such user\r\n",
		    false },
		{ "RCPT TO:<dave@example.net>", "250 2.1.5 OK\r\n", false },
		{ "BDAT 5 LAST", "250 2.0.0 OK two\r\n", false },
		{ "RSET", "250 2.0.0 Flushed\r\n", false },
		{ "MAIL FROM:<a3@example.org>", "250 2.1.0 OK\r\n", false },
		{ "RCPT TO:<carol@example.net>", "250 2.1.5 OK\r\n", false },
		{ "BDAT 7 LAST", "451 4.3.0 Try again later\r\n", false },
		{ "RSET", "250 2.0.0 Flushed\r\n", false },
		{ "QUIT", "221 2.0.0 bye\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	queue_message(r, "a1@example.org", two_rcpts, 1, "one\r\n");
	queue_message(r, "a2@example.org", two_rcpts, 2, "two\r\n");
	queue_message(r, "a3@example.org", two_rcpts, 1, "three\r\n");
	/* All three in one write, before any reply. */
	r->fake.ahead = "BDAT 7 LAST\r\nthree\r\n";
	r->fake.ahead_step = 2;
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_string_equal(r->fake.seen,
	    "EHLO relay.test\r\n"
	    "AUTH PLAIN " PLAIN_TOKEN "\r\n"
	    "MAIL FROM:<a1@example.org>\r\n"
	    "RCPT TO:<carol@example.net>\r\n"
	    "BDAT 5 LAST\r\none\r\n"
	    "RSET\r\n"
	    "MAIL FROM:<a2@example.org>\r\n"
	    "RCPT TO:<carol@example.net>\r\n"
	    "RCPT TO:<dave@example.net>\r\n"
	    "BDAT 5 LAST\r\ntwo\r\n"
	    "RSET\r\n"
	    "MAIL FROM:<a3@example.org>\r\n"
	    "RCPT TO:<carol@example.net>\r\n"
	    "BDAT 7 LAST\r\nthree\r\n"
	    "RSET\r\n"
	    "QUIT\r\n");
	assert_int_equal(r->ndone, 3);
	assert_int_equal(r->each[0].outcome, RELAY_OK);
	assert_int_equal(r->each[0].nrcpt, 1);
	assert_string_equal(r->each_rcpt[0][0].reply, "250 2.0.0 OK one");
	assert_int_equal(r->each[1].nrcpt, 2);
	assert_int_equal(r->each_rcpt[1][0].outcome, RELAY_PERMFAIL);
	assert_non_null(strstr(r->each_rcpt[1][0].reply, "550 5.1.1"));
	assert_int_equal(r->each_rcpt[1][1].outcome, RELAY_OK);
	assert_string_equal(r->each_rcpt[1][1].reply, "250 2.0.0 OK two");
	assert_int_equal(r->each[2].outcome, RELAY_TEMPFAIL);
	assert_int_equal(r->each_rcpt[2][0].outcome, RELAY_TEMPFAIL);
	assert_string_equal(r->each_rcpt[2][0].reply,
	    "451 4.3.0 Try again later");
	assert_int_equal(r->end.outcome, RELAY_OK);
}

/*
 * The connection drops before any reply with three messages in flight:
 * all three are deferred, each logged as possibly delivered (its chunk
 * was out: RFC 1047), and the session ends as an upstream failure.
 */
static void
test_pipelined_lost(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-PIPELINING\r\n"
		    "250-CHUNKING\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH PLAIN " PLAIN_TOKEN, "235 2.7.0 Accepted\r\n", false },
		{ "MAIL ", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "BDAT ", NULL, false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;
	int i;

	for (i = 0; i < 3; i++)
		queue_message(r, "alice@example.org", two_rcpts, 1, "x\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_int_equal(r->ndone, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(r->each[i].outcome, RELAY_TEMPFAIL);
		assert_int_equal(r->each_rcpt[i][0].outcome, RELAY_TEMPFAIL);
		assert_true(r->each[i].dot_sent);
	}
	assert_int_equal(r->end.outcome, RELAY_TEMPFAIL);
}

/*
 * A 421 to the first MAIL with three messages in flight: the server takes
 * nothing after it, so all three are deferred and none is logged as
 * possibly delivered.
 */
static void
test_pipelined_421(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-PIPELINING\r\n"
		    "250-CHUNKING\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH PLAIN " PLAIN_TOKEN, "235 2.7.0 Accepted\r\n", false },
		{ "MAIL ", "421 4.7.0 closing\r\n", false },
		{ "RCPT ", "503 5.5.1 MAIL first\r\n", false },
		{ "BDAT ", "503 5.5.1 MAIL first\r\n", false },
		{ "RSET", "250 2.0.0 Flushed\r\n", false },
		{ "MAIL ", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "BDAT ", "250 2.0.0 OK\r\n", false },
		{ "RSET", "250 2.0.0 Flushed\r\n", false },
		{ "MAIL ", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "BDAT ", "250 2.0.0 OK\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;
	int i;

	for (i = 0; i < 3; i++)
		queue_message(r, "alice@example.org", two_rcpts, 1, "x\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_int_equal(r->ndone, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(r->each[i].outcome, RELAY_TEMPFAIL);
		assert_false(r->each[i].dot_sent);
	}
	assert_non_null(strstr(r->each[0].reply, "421 4.7.0"));
	assert_int_equal(r->end.outcome, RELAY_TEMPFAIL);
}

/*
 * A message over 64 KiB does not go behind another: it waits until the
 * session is idle (no RSET before it), and is then streamed as usual.
 */
static void
test_large_message_not_pipelined(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250-PIPELINING\r\n"
		    "250-CHUNKING\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH PLAIN " PLAIN_TOKEN, "235 2.7.0 Accepted\r\n", false },
		{ "MAIL FROM:<a1@example.org>", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "BDAT 3 LAST", "250 2.0.0 OK one\r\n", false },
		{ "MAIL FROM:<a2@example.org>", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "BDAT 70000 LAST", "250 2.0.0 OK two\r\n", false },
		{ "QUIT", "221 2.0.0 bye\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;
	char *big = malloc(70001);

	assert_non_null(big);
	memset(big, 'x', 70000);
	memcpy(big + 69998, "\r\n", 3);
	queue_message(r, "a1@example.org", two_rcpts, 1, "1\r\n");
	queue_message(r, "a2@example.org", two_rcpts, 1, big);
	free(big);
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_int_equal(r->ndone, 2);
	assert_int_equal(r->each[1].outcome, RELAY_OK);
	assert_string_equal(r->each_rcpt[1][0].reply, "250 2.0.0 OK two");
}

/* Only AUTH LOGIN offered: user name and password answer the 334s. */
static void
test_auth_login(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250 AUTH LOGIN\r\n", false },
		{ "AUTH LOGIN", "334 VXNlcm5hbWU6\r\n", false },
		{ "Ym9iQGV4YW1wbGUub3Jn", "334 UGFzc3dvcmQ6\r\n", false },
		{ "c2VjcmV0cGFzcw==", "235 2.7.0 Accepted\r\n", false },
		{ "QUIT", "221 2.0.0 bye\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_string_equal(r->fake.seen, "EHLO relay.test\r\nAUTH LOGIN\r\n"
	    "Ym9iQGV4YW1wbGUub3Jn\r\nc2VjcmV0cGFzcw==\r\nQUIT\r\n");
	assert_int_equal(r->nready, 1);
	assert_true(r->end.was_ready);
}

/* A rejected AUTH pauses the queue: no MAIL, nothing handed over. */
static void
test_auth_rejected_pauses(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250 AUTH PLAIN LOGIN\r\n",
		    false },
		{ "AUTH PLAIN ", "535-5.7.8 Username and Password not "
		    "accepted.\r\n535 5.7.8 https://support.google.com/mail/"
		    "?p=BadCredentials\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	queue_message(r, "alice@example.org", two_rcpts, 1, "x\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_int_equal(r->nready, 0);
	assert_int_equal(r->ndone, 0);
	assert_false(r->end.was_ready);
	assert_int_equal(r->end.outcome, RELAY_PAUSE);
	assert_int_equal(r->end.pause, RELAY_PAUSE_CREDENTIALS);
	assert_non_null(strstr(r->end.reason, "535 5.7.8"));
	assert_null(strstr(r->fake.seen, "MAIL"));
}

/*
 * tls = "starttls": an upstream that does not offer STARTTLS gets no AUTH
 * and no mail; one that does gets nothing more before the handshake
 * (which this test's TLS context refuses).
 */
static void
test_no_credentials_before_tls(void **state)
{
	static const struct step no_starttls[] = {
		{ "EHLO ", "250-upstream.test\r\n250 AUTH PLAIN\r\n", false },
		{ NULL, NULL, false },
	};
	static const struct step starttls[] = {
		{ "EHLO ", "250-upstream.test\r\n250-STARTTLS\r\n"
		    "250 AUTH PLAIN\r\n", false },
		{ "STARTTLS", "220 2.0.0 Ready to start TLS\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	r->cfg.upstream.tls = CFG_TLS_STARTTLS;
	run_session(r, "220 upstream.test ESMTP\r\n", no_starttls);
	assert_script_done(r);
	assert_string_equal(r->fake.seen, "EHLO relay.test\r\n");
	assert_int_equal(r->end.outcome, RELAY_TEMPFAIL);
	assert_non_null(strstr(r->end.reason, "does not offer STARTTLS"));

	memset(&r->fake, 0, sizeof(r->fake));
	r->nclosed = 0;
	run_session(r, "220 upstream.test ESMTP\r\n", starttls);
	assert_script_done(r);
	assert_string_equal(r->fake.seen, "EHLO relay.test\r\nSTARTTLS\r\n");
	assert_int_equal(r->end.outcome, RELAY_TEMPFAIL);
	assert_string_equal(r->end.reason, "no TLS in this test");
}

/* 552 to MAIL fails the message for good, RSET, and the session goes on. */
static void
test_mail_refused_then_rset(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH ", "235 2.7.0 Accepted\r\n", false },
		{ "MAIL ", "552 5.3.4 Message too big\r\n", false },
		{ "RSET", "250 2.0.0 OK\r\n", false },
		{ "QUIT", "221 2.0.0 bye\r\n", false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	queue_message(r, "alice@example.org", two_rcpts, 2, "x\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_null(strstr(r->fake.seen, "RCPT"));
	assert_int_equal(r->ndone, 1);
	assert_int_equal(r->res.outcome, RELAY_PERMFAIL);
	assert_int_equal(r->rcpt[0].outcome, RELAY_PERMFAIL);
	assert_int_equal(r->rcpt[1].outcome, RELAY_PERMFAIL);
	assert_string_equal(r->rcpt[1].reply, "552 5.3.4 Message too big");
	assert_int_equal(r->nready, 2);
	assert_int_equal(r->end.outcome, RELAY_OK);
}

/* 421 in the envelope: the message is deferred, the session ends. */
static void
test_421_defers_and_closes(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH ", "235 2.7.0 Accepted\r\n", false },
		{ "MAIL ", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "421 4.7.0 Try again later, closing connection.\r\n",
		    false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	queue_message(r, "alice@example.org", two_rcpts, 2, "x\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_int_equal(r->ndone, 1);
	assert_int_equal(r->res.outcome, RELAY_TEMPFAIL);
	assert_int_equal(r->rcpt[0].outcome, RELAY_TEMPFAIL);
	assert_int_equal(r->rcpt[1].outcome, RELAY_TEMPFAIL);
	assert_false(r->res.dot_sent);
	assert_int_equal(r->end.outcome, RELAY_TEMPFAIL);
	assert_null(strstr(r->fake.seen, "DATA"));
}

/* The connection lost after the final dot: deferred, maybe delivered. */
static void
test_lost_after_dot(void **state)
{
	static const struct step script[] = {
		{ "EHLO ", "250-upstream.test\r\n250 AUTH PLAIN\r\n", false },
		{ "AUTH ", "235 2.7.0 Accepted\r\n", false },
		{ "MAIL ", "250 2.1.0 OK\r\n", false },
		{ "RCPT ", "250 2.1.5 OK\r\n", false },
		{ "DATA", "354 Go ahead\r\n", false },
		{ ".", NULL, false },
		{ NULL, NULL, false },
	};
	struct run *r = *state;

	queue_message(r, "alice@example.org", two_rcpts, 1, "x\r\n");
	run_session(r, "220 upstream.test ESMTP\r\n", script);
	assert_script_done(r);
	assert_int_equal(r->ndone, 1);
	assert_int_equal(r->res.outcome, RELAY_TEMPFAIL);
	assert_true(r->res.dot_sent);
	assert_int_equal(r->rcpt[0].outcome, RELAY_TEMPFAIL);
	assert_int_equal(r->end.outcome, RELAY_TEMPFAIL);
}

/* Bad greetings: refused, malformed, or a line past the limit. */
static void
test_bad_greetings(void **state)
{
	static const struct step none[] = { { NULL, NULL, false } };
	static const struct {
		const char *greeting;
		const char *reason;
	} cases[] = {
		{ "554 5.7.0 go away\r\n", "greeting: 554 5.7.0 go away" },
		{ "hello there\r\n", "malformed reply from the upstream" },
		{ NULL, "reply line too long" },
	};
	struct run *r = *state;
	char long_line[2100];
	size_t i;

	memset(long_line, 'x', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	memcpy(long_line, "220 ", 4);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&r->fake, 0, sizeof(r->fake));
		r->nclosed = 0;
		run_session(r, cases[i].greeting != NULL ? cases[i].greeting :
		    long_line, none);
		assert_string_equal(r->fake.seen, "");
		assert_int_equal(r->end.outcome, RELAY_TEMPFAIL);
		assert_false(r->end.was_ready);
		assert_string_equal(r->end.reason, cases[i].reason);
	}
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
		cmocka_unit_test_setup_teardown(
		    test_session_delivers_exact_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_pipelined_envelope_and_one_refused_rcpt, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bdat_whole_transaction,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_bdat_refused_chunk, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_transactions,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_lost, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_421, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_large_message_not_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_login, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_auth_rejected_pauses,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_credentials_before_tls,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_mail_refused_then_rset,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_421_defers_and_closes,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_after_dot, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bad_greetings, setup,
		    teardown),
		cmocka_unit_test(test_plaintext_loopback_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
