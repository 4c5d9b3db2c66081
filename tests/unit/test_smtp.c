/*
 * Unit tests of the inbound session state machine (daemon/smtp.c), driven
 * over a socketpair with the real queue in a temporary spool.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "cfg.h"
#include "log.h"
#include "queue.h"
#include "smtp.h"

struct fixture {
	char dir[64];
	struct cfg *cfg;
	struct queue *queue;
	struct event_base *base;
	struct smtp_server srv;
	int fd;				/* the client's end */
	char in[8192];			/* what the server sent, not yet read */
	size_t len;
	size_t nqueued;
};

static void
count_queued(void *arg, struct queue_msg *m)
{
	struct fixture *f = arg;

	f->nqueued++;
	queue_msg_free(m);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct cfg_errors errs = { 0 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char path[128];
	FILE *fp;
	int sv[2];

	log_init("test", 0);
	snprintf(f->dir, sizeof(f->dir), "/tmp/smtp-test-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/c.conf", f->dir);
	assert_non_null(fp = fopen(path, "w"));
	fprintf(fp, "hostname = \"relay.test\";\nspool = \"%s/spool\";\n"
	    "limits = { recipients = 2; message_size = \"1K\"; };\n"
	    "rewrite = { aliases = { root = \"admin@example.org\"; }; };\n",
	    f->dir);
	fclose(fp);
	assert_int_equal(cfg_load(path, &f->cfg, &errs), 0);
	snprintf(path, sizeof(path), "%s/spool", f->dir);
	assert_int_equal(queue_open(path, &f->queue, NULL), 0);
	assert_non_null(f->base = event_base_new());
	smtp_server_init(&f->srv);
	f->srv.base = f->base;
	f->srv.cfg = f->cfg;
	f->srv.queue = f->queue;
	f->srv.queued = count_queued;
	f->srv.queued_arg = f;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	f->fd = sv[1];
	smtp_accept(&f->srv, sv[0], (struct sockaddr *)&sun, sizeof(sun));
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	close(f->fd);
	/* Let the session see EOF and free itself. */
	for (int i = 0; i < 50 && f->srv.nsessions > 0; i++)
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(f->srv.nsessions, 0);
	event_base_free(f->base);
	queue_close(f->queue);
	cfg_free(f->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void
send_str(struct fixture *f, const char *s)
{
	assert_int_equal(write(f->fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Runs the loop until a whole reply (last line "NNN ") is there; returns it. */
static const char *
reply(struct fixture *f)
{
	static char out[8192];
	char *end, *p;
	ssize_t n;
	int spins;

	for (spins = 0; spins < 2000; spins++) {
		for (p = f->in; (end = memmem(p, f->len - (size_t)(p - f->in),
		    "\r\n", 2)) != NULL; p = end + 2) {
			if (end - p >= 4 && p[3] == ' ') {
				size_t k = (size_t)(end + 2 - f->in);

				memcpy(out, f->in, k - 2);
				out[k - 2] = '\0';
				memmove(f->in, f->in + k, f->len - k);
				f->len -= k;
				return out;
			}
		}
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		n = read(f->fd, f->in + f->len, sizeof(f->in) - f->len - 1);
		if (n > 0)
			f->len += (size_t)n;
		else if (n == 0)
			return "EOF";
		else
			usleep(1000);
	}
	fail_msg("no reply");
	return NULL;
}

static void
expect(struct fixture *f, const char *cmd, const char *prefix)
{
	const char *r;

	if (cmd != NULL)
		send_str(f, cmd);
	r = reply(f);
	if (strncmp(r, prefix, strlen(prefix)) != 0)
		fail_msg("after %s expected \"%s\", got \"%s\"",
		    cmd ? cmd : "(connect)", prefix, r);
}

static void
test_greeting_and_ehlo(void **state)
{
	struct fixture *f = *state;

	expect(f, NULL, "220 relay.test ESMTP smartrelay");
	expect(f, "EHLO client.example\r\n",
	    "250-relay.test Hello client.example [unknown]\r\n"
	    "250-PIPELINING\r\n250-SIZE 1024\r\n250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-DSN\r\n"
	    "250 HELP");
	expect(f, "HELO\r\n", "501 5.5.4");
	expect(f, "QUIT\r\n", "221 2.0.0");
	assert_string_equal(reply(f), "EOF");
}

static void
test_order(void **state)
{
	struct fixture *f = *state;

	expect(f, NULL, "220 ");
	expect(f, "MAIL FROM:<a@b.example>\r\n", "503 5.5.1");
	expect(f, "HELO x\r\n", "250 relay.test");
	expect(f, "RCPT TO:<a@b.example>\r\n", "503 5.5.1");
	expect(f, "DATA\r\n", "503 5.5.1 Error: need MAIL");
	expect(f, "MAIL FROM <a@b.example>\r\n", "501 5.5.4");
	expect(f, "MAIL FROM:<a@b.example>\r\n", "250 2.1.0");
	expect(f, "DATA\r\n", "503 5.5.1 Error: need RCPT");
	expect(f, "RCPT TO:<root>\r\n", "250 2.1.5");
	expect(f, "RCPT TO:<www>\r\n", "550 5.1.1");
	expect(f, "RCPT TO:<c@d.example>\r\n", "250 2.1.5");
	expect(f, "RCPT TO:<e@d.example>\r\n", "452 4.5.3");
	expect(f, "RSET\r\n", "250 2.0.0");
	expect(f, "DATA\r\n", "503 5.5.1");
	assert_int_equal(f->nqueued, 0);
}

static void
test_pipelined_commit(void **state)
{
	struct fixture *f = *state;
	struct queue_msg *m;
	const char *r;

	expect(f, NULL, "220 ");
	send_str(f, "EHLO p\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<root>\r\n"
	    "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nNOOP\r\n");
	expect(f, NULL, "250-relay.test");
	expect(f, NULL, "250 2.1.0");
	expect(f, NULL, "250 2.1.5");
	expect(f, NULL, "354 ");
	r = reply(f);
	assert_true(strncmp(r, "250 2.0.0 Ok: queued as ", 24) == 0);
	assert_int_equal(f->nqueued, 1);
	assert_int_equal(queue_load(f->queue, r + 24, &m), 0);
	assert_string_equal(m->from, "a@b.example");
	assert_int_equal(m->nrcpt, 1);
	assert_string_equal(m->rcpt[0].addr, "admin@example.org");
	queue_msg_free(m);
	expect(f, NULL, "250 2.0.0 Ok");
}

/* RFC 3461 parameters: syntax replies, and what reaches the record. */
static void
test_dsn_params(void **state)
{
	struct fixture *f = *state;
	struct queue_msg *m;
	const char *r;

	expect(f, NULL, "220 ");
	expect(f, "EHLO x\r\n", "250-");
	expect(f, "MAIL FROM:<a@b.example> RET=ALL\r\n", "501 5.5.4 Bad RET");
	expect(f, "MAIL FROM:<a@b.example> RET=FULL RET=HDRS\r\n",
	    "501 5.5.4 Bad RET");
	expect(f, "MAIL FROM:<a@b.example> ENVID=a=b\r\n",
	    "501 5.5.4 Bad ENVID");
	expect(f, "MAIL FROM:<a@b.example> ENVID=\r\n", "501 5.5.4 Bad ENVID");
	expect(f, "MAIL FROM:<a@b.example> ENVIRONMENT=x\r\n", "555 5.5.4");
	expect(f, "MAIL FROM:<a@b.example> ret=hdrs ENVID=Q+2B1\r\n",
	    "250 2.1.0");
	expect(f, "RCPT TO:<c@d.example> NOTIFY=NEVER,SUCCESS\r\n",
	    "501 5.5.4 Bad NOTIFY");
	expect(f, "RCPT TO:<c@d.example> NOTIFY=SOMETIMES\r\n",
	    "501 5.5.4 Bad NOTIFY");
	expect(f, "RCPT TO:<c@d.example> NOTIFY=DELAY NOTIFY=DELAY\r\n",
	    "501 5.5.4 Bad NOTIFY");
	expect(f, "RCPT TO:<c@d.example> ORCPT=c@d.example\r\n",
	    "501 5.5.4 Bad ORCPT");
	expect(f, "RCPT TO:<c@d.example> ORCPT=rfc822;c d\r\n", "555 5.5.4");
	expect(f, "RCPT TO:<c@d.example> FOO=1\r\n", "555 5.5.4");
	expect(f, "RCPT TO:<c@d.example>\r\n", "250 2.1.5");
	expect(f, "RCPT TO:<e@d.example> notify=success,delay "
	    "ORCPT=rfc822;E+2Be@d.example\r\n", "250 2.1.5");
	expect(f, "DATA\r\n", "354 ");
	send_str(f, "Subject: x\r\n\r\nhi\r\n.\r\n");
	r = reply(f);
	assert_true(strncmp(r, "250 2.0.0 Ok: queued as ", 24) == 0);
	assert_int_equal(queue_load(f->queue, r + 24, &m), 0);
	assert_int_equal(m->ret, QUEUE_RET_HDRS);
	assert_string_equal(m->envid, "Q+2B1");
	assert_int_equal(m->nrcpt, 2);
	assert_int_equal(m->rcpt[0].notify, 0);
	assert_null(m->rcpt[0].orcpt);
	assert_int_equal(m->rcpt[1].notify,
	    QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY);
	assert_string_equal(m->rcpt[1].orcpt, "rfc822;E+2Be@d.example");
	queue_msg_free(m);
}

static void
test_limits(void **state)
{
	struct fixture *f = *state;
	char big[2048];
	int i;

	expect(f, NULL, "220 ");
	expect(f, "EHLO x\r\n", "250-");
	expect(f, "MAIL FROM:<a@b.example> SIZE=1025\r\n", "552 5.3.4");
	memset(big, 'x', sizeof(big) - 3);
	memcpy(big + sizeof(big) - 3, "\r\n", 3);
	expect(f, big, "500 5.5.2");
	expect(f, "MAIL FROM:<a@b.example>\r\n", "250 ");
	expect(f, "RCPT TO:<c@d.example>\r\n", "250 ");
	expect(f, "DATA\r\n", "354 ");
	for (i = 0; i < 3; i++) {
		memset(big, 'y', 500);
		memcpy(big + 500, "\r\n", 3);
		send_str(f, big);
	}
	expect(f, ".\r\n", "552 5.3.4");
	expect(f, "MAIL FROM:<a@b.example>\r\n", "250 ");
	expect(f, "RCPT TO:<c@d.example>\r\n", "250 ");
	expect(f, "DATA\r\n", "354 ");
	assert_int_equal(write(f->fd, "a\0b\r\n.\r\n", 9), 9);
	expect(f, NULL, "554 5.6.0");
	assert_int_equal(f->nqueued, 0);
}

static void
test_error_limit(void **state)
{
	struct fixture *f = *state;
	int i;

	expect(f, NULL, "220 ");
	for (i = 0; i < 20; i++)
		expect(f, "BOGUS\r\n", "500 5.5.1");
	expect(f, "BOGUS\r\n", "500 5.5.1");
	expect(f, NULL, "421 4.7.0");
	assert_string_equal(reply(f), "EOF");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_greeting_and_ehlo, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_commit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dsn_params, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_error_limit, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
