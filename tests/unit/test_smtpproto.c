/*
 * Unit tests for common/smtpproto.c and smtpproto_advice.c: the EHLO
 * keywords of real servers' replies, the AUTH lines byte for byte, MAIL and
 * RCPT parameters with the replies they earn, and the advice table (every
 * row found by its own reply, the most specific row winning, placeholders
 * filled, and each row's action the one the relay's classification takes).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "addr.h"
#include "cfg.h"
#include "queue.h"
#include "relay.h"
#include "reply.h"
#include "smtpproto.h"

/* Parses "L1|L2|..." (lines separated by '|') into r. */
static void
parse(struct reply *r, const char *text)
{
	char buf[4096], *line, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", text);
	reply_init(r);
	for (line = strtok_r(buf, "|", &save); line != NULL;
	    line = strtok_r(NULL, "|", &save))
		assert_true(reply_feed(r, line, strlen(line)) <= 0);
	assert_true(r->done);
}

/* ---- EHLO ---- */

static void
test_ehlo_gmail_before_and_after_tls(void **state)
{
	struct smtpproto_ehlo e;
	struct reply r;

	parse(&r, "250-smtp.gmail.com at your service, [203.0.113.7]|"
	    "250-SIZE 35882577|250-8BITMIME|250-STARTTLS|"
	    "250-ENHANCEDSTATUSCODES|250-PIPELINING|250-CHUNKING|"
	    "250 SMTPUTF8");
	smtpproto_ehlo_parse(&r, &e);
	assert_int_equal(e.ext, SMTPPROTO_EXT_SIZE | SMTPPROTO_EXT_8BITMIME |
	    SMTPPROTO_EXT_STARTTLS | SMTPPROTO_EXT_ENHANCED |
	    SMTPPROTO_EXT_PIPELINING | SMTPPROTO_EXT_CHUNKING |
	    SMTPPROTO_EXT_SMTPUTF8);
	assert_true(e.size == 35882577);
	assert_string_equal(e.auth, "");

	parse(&r, "250-smtp.gmail.com at your service|250-SIZE 35882577|"
	    "250-8BITMIME|250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN "
	    "OAUTHBEARER XOAUTH|250-ENHANCEDSTATUSCODES|250-PIPELINING|"
	    "250-CHUNKING|250 SMTPUTF8");
	smtpproto_ehlo_parse(&r, &e);
	assert_false(e.ext & SMTPPROTO_EXT_STARTTLS);
	assert_true(e.ext & SMTPPROTO_EXT_AUTH);
	assert_true(e.ext & SMTPPROTO_EXT_AUTH_PLAIN);
	assert_true(e.ext & SMTPPROTO_EXT_AUTH_LOGIN);
	assert_true(e.ext & SMTPPROTO_EXT_AUTH_XOAUTH2);
	assert_true(e.ext & SMTPPROTO_EXT_AUTH_OAUTHBEARER);
	assert_string_equal(e.auth, "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN "
	    "OAUTHBEARER XOAUTH");
	assert_int_equal(smtpproto_auth_choose(e.ext), SMTPPROTO_MECH_PLAIN);
}

static void
test_ehlo_edge_cases(void **state)
{
	struct smtpproto_ehlo e;
	struct reply r;

	/* The first line is the name, even when it looks like a keyword;
	 * keywords are case-insensitive; prefixes do not count. */
	parse(&r, "250-STARTTLS|250-auth login|250-size|250-PIPELININGX|"
	    "250-DSN|250 SIZE -5");
	smtpproto_ehlo_parse(&r, &e);
	assert_false(e.ext & SMTPPROTO_EXT_STARTTLS);
	assert_false(e.ext & SMTPPROTO_EXT_PIPELINING);
	assert_true(e.ext & SMTPPROTO_EXT_AUTH_LOGIN);
	assert_false(e.ext & SMTPPROTO_EXT_AUTH_PLAIN);
	assert_true(e.ext & SMTPPROTO_EXT_DSN);
	assert_true(e.ext & SMTPPROTO_EXT_SIZE);
	assert_true(e.size == 0);
	assert_int_equal(smtpproto_auth_choose(e.ext), SMTPPROTO_MECH_LOGIN);
	/* A bare "250 name": nothing offered. */
	parse(&r, "250 mx.example");
	smtpproto_ehlo_parse(&r, &e);
	assert_int_equal(e.ext, 0);
	assert_int_equal(smtpproto_auth_choose(e.ext), SMTPPROTO_MECH_NONE);
	assert_string_equal(smtpproto_mech_name(SMTPPROTO_MECH_NONE), "none");
}

/* ---- AUTH ---- */

/* Decodes base64 b64 into out; its length. */
static int
unb64(const char *b64, unsigned char *out)
{
	int n = EVP_DecodeBlock(out, (const unsigned char *)b64,
	    (int)strlen(b64));
	size_t l = strlen(b64);

	if (l > 0 && b64[l - 1] == '=')
		n--;
	if (l > 1 && b64[l - 2] == '=')
		n--;
	return n;
}

static void
test_auth_plain_line(void **state)
{
	unsigned char raw[128];
	char *line;
	size_t len;

	assert_int_equal(smtpproto_auth_plain("user@gmail.com",
	    "abcdefghijklmnop", 16, &line, &len), 0);
	assert_int_equal(len, strlen(line));
	assert_int_equal(strncmp(line, "AUTH PLAIN ", 11), 0);
	assert_int_equal(unb64(line + 11, raw), 32);
	assert_memory_equal(raw, "\0user@gmail.com\0abcdefghijklmnop", 32);
	/* Room for the CRLF in place. */
	memcpy(line + len, "\r\n", 3);
	assert_string_equal(line + len, "\r\n");
	smtpproto_line_free(line, len + 2);
	smtpproto_line_free(NULL, 0);
}

static void
test_auth_login_lines(void **state)
{
	unsigned char raw[64];
	char *line;
	size_t len;

	assert_int_equal(smtpproto_auth_login(&line, &len), 0);
	assert_string_equal(line, "AUTH LOGIN");
	smtpproto_line_free(line, len);
	assert_int_equal(smtpproto_auth_login_step(0, "u@example.org", "pw",
	    2, &line, &len), 0);
	assert_string_equal(line, "dUBleGFtcGxlLm9yZw==");
	smtpproto_line_free(line, len);
	assert_int_equal(smtpproto_auth_login_step(1, "u@example.org",
	    "s3cret pw", 9, &line, &len), 0);
	assert_int_equal(unb64(line, raw), 9);
	assert_memory_equal(raw, "s3cret pw", 9);
	smtpproto_line_free(line, len);
	/* A third challenge: cancel, nothing made. */
	assert_int_equal(smtpproto_auth_login_step(2, "u", "p", 1, &line,
	    &len), -EPROTO);
	assert_null(line);
}

/* XOAUTH2 and OAUTHBEARER (docs/oauth.md, RFC 7628 §3.1). */
static void
test_auth_oauth_lines(void **state)
{
	static const char xo[] = "user=me@gmail.com\001auth=Bearer "
	    "ya29.tok\001\001";
	static const char ob[] = "n,a=me@gmail.com,\001host=smtp.gmail.com"
	    "\001port=587\001auth=Bearer ya29.tok\001\001";
	unsigned char raw[256];
	char *line;
	size_t len;

	assert_int_equal(smtpproto_auth_xoauth2("me@gmail.com", "ya29.tok", 8,
	    &line, &len), 0);
	assert_int_equal(strncmp(line, "AUTH XOAUTH2 ", 13), 0);
	assert_int_equal(unb64(line + 13, raw), (int)sizeof(xo) - 1);
	assert_memory_equal(raw, xo, sizeof(xo) - 1);
	smtpproto_line_free(line, len);
	assert_int_equal(smtpproto_auth_oauthbearer("me@gmail.com",
	    "smtp.gmail.com", 587, "ya29.tok", 8, &line, &len), 0);
	assert_int_equal(strncmp(line, "AUTH OAUTHBEARER ", 17), 0);
	assert_int_equal(unb64(line + 17, raw), (int)sizeof(ob) - 1);
	assert_memory_equal(raw, ob, sizeof(ob) - 1);
	smtpproto_line_free(line, len);
	/* A user name that would break the format: refused, nothing made. */
	assert_int_equal(smtpproto_auth_xoauth2("a\001auth=x", "t", 1, &line,
	    &len), -EINVAL);
	assert_null(line);
	assert_int_equal(smtpproto_auth_oauthbearer("a,b@c", "h", 1, "t", 1,
	    &line, &len), -EINVAL);
	/* Which one, and the answer to the error challenge. */
	assert_int_equal(smtpproto_oauth_choose(SMTPPROTO_EXT_AUTH_XOAUTH2 |
	    SMTPPROTO_EXT_AUTH_OAUTHBEARER), SMTPPROTO_MECH_OAUTHBEARER);
	assert_int_equal(smtpproto_oauth_choose(SMTPPROTO_EXT_AUTH_XOAUTH2),
	    SMTPPROTO_MECH_XOAUTH2);
	assert_int_equal(smtpproto_oauth_choose(SMTPPROTO_EXT_AUTH_PLAIN),
	    SMTPPROTO_MECH_NONE);
	assert_string_equal(smtpproto_oauth_abort(SMTPPROTO_MECH_XOAUTH2), "");
	assert_string_equal(smtpproto_oauth_abort(SMTPPROTO_MECH_OAUTHBEARER),
	    "AQ==");
	assert_string_equal(smtpproto_mech_name(SMTPPROTO_MECH_XOAUTH2),
	    "XOAUTH2");
}

/* ---- MAIL and RCPT ---- */

static void
test_mail_params(void **state)
{
	struct smtpproto_mail m;
	char reply[SMTPPROTO_REPLY_MAX];

#define MAIL(p, dsn) smtpproto_mail_params(p, 1000, dsn, &m, reply, \
	sizeof(reply))
	assert_int_equal(MAIL("", false), 0);
	assert_int_equal(m.flags, 0);
	assert_int_equal(MAIL(" SIZE=1000 body=8bitmime  SMTPUTF8", false), 0);
	assert_int_equal(m.flags, QUEUE_F_8BITMIME | QUEUE_F_SMTPUTF8);
	assert_true(m.size == 1000);
	assert_int_equal(MAIL("BODY=7BIT", false), 0);
	assert_int_equal(m.flags, 0);

	assert_int_equal(MAIL("SIZE=1001", false), -EINVAL);
	assert_string_equal(reply, "552 5.3.4 Message size exceeds fixed "
	    "limit of 1000 bytes");
	assert_int_equal(MAIL("SIZE=-1", false), -EINVAL);
	assert_string_equal(reply, "501 5.5.4 Bad SIZE parameter");
	assert_int_equal(MAIL("SIZE=12x", false), -EINVAL);
	assert_string_equal(reply, "501 5.5.4 Bad SIZE parameter");
	assert_int_equal(MAIL("SIZE=99999999999999999999999", false), -EINVAL);
	assert_string_equal(reply, "501 5.5.4 Bad SIZE parameter");
	assert_int_equal(MAIL("BODY=BINARYMIME", false), -EINVAL);
	assert_string_equal(reply, "555 5.5.4 Unsupported parameter: "
	    "BODY=BINARYMIME");

	/* DSN (RFC 3461) only where the server offers it. */
	assert_int_equal(MAIL("RET=HDRS", false), -EINVAL);
	assert_string_equal(reply, "555 5.5.4 Unsupported parameter: "
	    "RET=HDRS");
	assert_int_equal(MAIL("RET=HDRS ENVID=a+2Bb SIZE=10", true), 0);
	assert_int_equal(m.dsn.ret, QUEUE_RET_HDRS);
	assert_string_equal(m.dsn.envid, "a+2Bb");
	assert_int_equal(MAIL("RET=SOME", true), -EINVAL);
	assert_int_equal(strncmp(reply, "501 5.5.4", 9), 0);
#undef MAIL
}

/* A configuration with one alias and, optionally, a local domain. */
static void
cfg_with(struct cfg *cfg, struct cfg_alias *al, const char *domain)
{
	memset(cfg, 0, sizeof(*cfg));
	al->name = (char *)"root";
	al->target = (char *)"admin@example.org";
	cfg->rewrite.aliases = al;
	cfg->rewrite.naliases = 1;
	cfg->rewrite.local_domain = (char *)domain;
	cfg->hostname = (char *)"host.example.net";
}

static void
test_rcpt(void **state)
{
	char out[ADDR_MAX], reply[SMTPPROTO_REPLY_MAX];
	struct dsnparam_rcpt d;
	struct cfg_alias al;
	struct cfg cfg;

#define RCPT(a, dp) smtpproto_rcpt(&cfg, a, out, sizeof(out), dp, reply, \
	sizeof(reply))
	cfg_with(&cfg, &al, NULL);
	assert_int_equal(RCPT("<bob@example.org>", NULL), 0);
	assert_string_equal(out, "bob@example.org");
	assert_int_equal(RCPT("<root>", NULL), 0);
	assert_string_equal(out, "admin@example.org");
	assert_int_equal(RCPT("<cron>", NULL), -EDESTADDRREQ);
	assert_string_equal(reply, "550 5.1.1 <cron>: Recipient address "
	    "needs a domain (no alias and no local_domain)");
	assert_int_equal(RCPT("<>", NULL), -EINVAL);
	assert_string_equal(reply, "501 5.1.3 Bad recipient address syntax");
	/* Parameters are checked before the name is resolved. */
	assert_int_equal(RCPT("<cron> NOTIFY=NEVER", NULL), -EINVAL);
	assert_string_equal(reply, "555 5.5.4 Unsupported parameter: "
	    "NOTIFY=NEVER");
	assert_int_equal(RCPT("<a@b.example> NOTIFY=SUCCESS,DELAY "
	    "ORCPT=rfc822;a@b.example", &d), 0);
	assert_int_equal(d.notify, QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY);
	assert_string_equal(d.orcpt, "rfc822;a@b.example");
	assert_int_equal(RCPT("<a@b.example> NOTIFY=NEVER,SUCCESS", &d),
	    -EINVAL);
	assert_int_equal(strncmp(reply, "501 5.5.4", 9), 0);
	assert_int_equal(RCPT("<a@b.example> FOO=1", &d), -EINVAL);
	assert_string_equal(reply, "555 5.5.4 Unsupported parameter: FOO=1");
#undef RCPT

	/* The command line form: the whole argument is the address. */
	assert_int_equal(smtpproto_rcpt_addr(&cfg, "cron", out, sizeof(out)),
	    -EDESTADDRREQ);
	assert_int_equal(smtpproto_rcpt_addr(&cfg, "a@b.example x", out,
	    sizeof(out)), -EINVAL);
	cfg_with(&cfg, &al, "example.com");
	assert_int_equal(smtpproto_rcpt_addr(&cfg, "cron", out, sizeof(out)),
	    0);
	assert_string_equal(out, "cron@example.com");
}

static void
test_qualify_sender(void **state)
{
	char from[ADDR_MAX];
	struct cfg_alias al;
	struct cfg cfg;

	cfg_with(&cfg, &al, NULL);
	snprintf(from, sizeof(from), "root");
	assert_int_equal(smtpproto_qualify_sender(&cfg, from, sizeof(from)),
	    0);
	assert_string_equal(from, "root@host.example.net");
	cfg_with(&cfg, &al, "example.com");
	snprintf(from, sizeof(from), "root");
	assert_int_equal(smtpproto_qualify_sender(&cfg, from, sizeof(from)),
	    0);
	assert_string_equal(from, "root@example.com");
	from[0] = '\0';
	assert_int_equal(smtpproto_qualify_sender(&cfg, from, sizeof(from)),
	    0);
	assert_string_equal(from, "");
	snprintf(from, sizeof(from), "a@b.example");
	assert_int_equal(smtpproto_qualify_sender(&cfg, from, sizeof(from)),
	    0);
	assert_string_equal(from, "a@b.example");
	snprintf(from, sizeof(from), "root");
	assert_int_equal(smtpproto_qualify_sender(&cfg, from, 10),
	    -ENAMETOOLONG);
	assert_string_equal(from, "root");
}

/* ---- advice ---- */

static void
test_advice_specific_rows_win(void **state)
{
	struct reply r;

	parse(&r, "530-5.7.0 Must issue a STARTTLS command first. For more "
	    "information, go to|530 5.7.0 specifications. x - gsmtp");
	assert_string_equal(smtpproto_advice_reply(&r)->key,
	    "530 5.7.0 STARTTLS");
	parse(&r, "530-5.7.0 Authentication Required. For more|530 5.7.0  "
	    "https://support.google.com/mail/?p=WantAuthError x - gsmtp");
	assert_string_equal(smtpproto_advice_reply(&r)->key, "530 5.7.0");
	parse(&r, "535 5.7.139 Authentication unsuccessful, SmtpClientAuth"
	    "entication is disabled for the Tenant.");
	assert_string_equal(smtpproto_advice_reply(&r)->key, "535 5.7.139");
	parse(&r, "535 5.7.8 Username and Password not accepted.");
	assert_string_equal(smtpproto_advice_reply(&r)->key, "535 5.7.8");
	parse(&r, "535 Authentication failed");
	assert_string_equal(smtpproto_advice_reply(&r)->key, "535 5.7.8");
	parse(&r, "421 4.7.0 Try again later, closing connection. (EHLO)");
	assert_string_equal(smtpproto_advice_reply(&r)->key, "421 4.7.0");
	parse(&r, "421 Service not available");
	assert_string_equal(smtpproto_advice_reply(&r)->key, "421");
	parse(&r, "552 5.2.3 too big (older)");
	assert_string_equal(smtpproto_advice_reply(&r)->key, "552 5.3.4");
	parse(&r, "550 5.7.1 [203.0.113.7] Our system has detected that "
	    "this message is not RFC 5322 compliant");
	assert_string_equal(smtpproto_advice_reply(&r)->key,
	    "550 5.7.1 RFC 5322");
	/* No row: no advice. */
	parse(&r, "550 5.7.1 Relaying denied");
	assert_null(smtpproto_advice_reply(&r));
	parse(&r, "250 2.0.0 OK");
	assert_null(smtpproto_advice_reply(&r));
	assert_null(smtpproto_advice_find(500, NULL, NULL));
}

/* Every row is found again by its own key's code and enhanced code. */
static void
test_advice_rows_find_themselves(void **state)
{
	const struct smtpproto_advice *t;
	size_t i, n;

	t = smtpproto_advice_table(&n);
	assert_true(n >= 15);
	for (i = 0; i < n; i++) {
		assert_ptr_equal(smtpproto_advice_find(t[i].code,
		    t[i].enhanced, t[i].text), &t[i]);
		assert_ptr_equal(smtpproto_advice_by_key(t[i].key), &t[i]);
		assert_non_null(t[i].meaning);
		assert_true(strlen(t[i].fix) > 20);
	}
	for (i = 0; i <= SMTPPROTO_LOCAL_TLS; i++) {
		t = smtpproto_advice_local((enum smtpproto_local)i);
		assert_int_equal(t->code, 0);
		assert_ptr_equal(smtpproto_advice_by_key(t->key), t);
	}
	assert_null(smtpproto_advice_by_key("no such row"));
}

static void
test_advice_format(void **state)
{
	struct smtpproto_advice_vars v = {
		.host = "smtp.example.org", .port = 2525,
		.username = "me@example.org", .password_file = "/etc/pw",
		.trust = "/etc/ca.pem",
	};
	char buf[2048];

	smtpproto_advice_format(smtpproto_advice_local(
	    SMTPPROTO_LOCAL_REFUSED), &v, buf, sizeof(buf));
	assert_non_null(strstr(buf, "nothing accepts connections on port "
	    "2525 of smtp.example.org"));
	smtpproto_advice_format(smtpproto_advice_find(534, "5.7.9", NULL), &v,
	    buf, sizeof(buf));
	assert_non_null(strstr(buf, "and put it in /etc/pw (its first"));
	smtpproto_advice_format(smtpproto_advice_local(
	    SMTPPROTO_LOCAL_CERT_UNTRUSTED), &v, buf, sizeof(buf));
	assert_non_null(strstr(buf, "a CA in /etc/ca.pem."));
	/* Unset values name the setting; a short buffer is cut, not run
	 * over. */
	memset(&v, 0, sizeof(v));
	smtpproto_advice_format(smtpproto_advice_local(
	    SMTPPROTO_LOCAL_REFUSED), &v, buf, sizeof(buf));
	assert_non_null(strstr(buf, "on port upstream.port of upstream.host"));
	smtpproto_advice_format(smtpproto_advice_local(
	    SMTPPROTO_LOCAL_REFUSED), &v, buf, 12);
	assert_string_equal(buf, "Connection ");
}

/* Where in the dialogue a row's reply comes, for the relay's classifier. */
static enum relay_stage
stage_of(const struct smtpproto_advice *a)
{
	if (a->code == 535 || a->code == 534 || a->code == 454 ||
	    (a->code == 550 && strcmp(a->enhanced, "5.7.30") == 0))
		return RELAY_STAGE_AUTH;
	if (a->code == 550 && strcmp(a->enhanced, "5.1.1") == 0)
		return RELAY_STAGE_RCPT;
	if (a->code == 553 || a->code == 452)
		return RELAY_STAGE_RCPT;
	if (a->code == 530 || a->code == 554)
		return RELAY_STAGE_MAIL;
	return RELAY_STAGE_DOT;
}

/* The action a row promises is the one the relay takes. */
static void
test_advice_actions_match_relay(void **state)
{
	static const enum relay_outcome want[] = {
		[SMTPPROTO_ACT_RETRY] = RELAY_TEMPFAIL,
		[SMTPPROTO_ACT_PAUSE] = RELAY_PAUSE,
		[SMTPPROTO_ACT_BOUNCE] = RELAY_PERMFAIL,
	};
	const struct smtpproto_advice *t;
	enum relay_pause pause;
	struct reply r;
	char line[256];
	size_t i, n;

	t = smtpproto_advice_table(&n);
	for (i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "%u %s %s", t[i].code,
		    t[i].enhanced != NULL ? t[i].enhanced : "",
		    t[i].text != NULL ? t[i].text : "text");
		parse(&r, line);
		if (relay_classify(stage_of(&t[i]), &r, &pause) !=
		    want[t[i].action])
			fail_msg("row %s: the relay does not %s", t[i].key,
			    smtpproto_straction(t[i].action));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ehlo_gmail_before_and_after_tls),
		cmocka_unit_test(test_ehlo_edge_cases),
		cmocka_unit_test(test_auth_plain_line),
		cmocka_unit_test(test_auth_login_lines),
		cmocka_unit_test(test_auth_oauth_lines),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_qualify_sender),
		cmocka_unit_test(test_advice_specific_rows_win),
		cmocka_unit_test(test_advice_rows_find_themselves),
		cmocka_unit_test(test_advice_format),
		cmocka_unit_test(test_advice_actions_match_relay),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
