/*
 * Unit tests of the classification of upstream replies (daemon/relay_reply.c)
 * into the actions of docs/relay.md's failure table, with Gmail's reply
 * texts, and of the advice given for a rejected AUTH.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "relay.h"
#include "reply.h"
#include "smtpproto.h"

/* Parses one reply given as '|'-separated lines. */
static void
parse(struct reply *r, const char *text)
{
	char buf[1024], *line, *save = NULL;
	int rc = -EAGAIN;

	snprintf(buf, sizeof(buf), "%s", text);
	reply_init(r);
	for (line = strtok_r(buf, "|", &save); line != NULL;
	    line = strtok_r(NULL, "|", &save))
		rc = reply_feed(r, line, strlen(line));
	assert_int_equal(rc, 0);
}

struct row {
	enum relay_stage stage;
	const char *reply;
	enum relay_outcome outcome;
	enum relay_pause pause;
};

static void
test_classify_table(void **state)
{
	static const struct row rows[] = {
		/* Success and intermediate replies. */
		{ RELAY_STAGE_MAIL, "250 2.1.0 OK x - gsmtp", RELAY_OK, 0 },
		{ RELAY_STAGE_DATA, "354  Go ahead x - gsmtp", RELAY_OK, 0 },
		/* Account problems pause the queue, never bounce. */
		{ RELAY_STAGE_AUTH, "535-5.7.8 Username and Password not "
		    "accepted.|535 5.7.8  https://support.google.com/mail/"
		    "?p=BadCredentials x - gsmtp", RELAY_PAUSE,
		    RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "534-5.7.9 Application-specific password "
		    "required.|534 5.7.9  https://x", RELAY_PAUSE,
		    RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "534-5.7.14 <https://accounts.google.com/"
		    "signin/continue> Please log in|534 5.7.14 then try again.",
		    RELAY_PAUSE, RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "454-4.7.0 Too many login attempts|"
		    "454-4.7.0 go to|454 4.7.0  https://x", RELAY_PAUSE,
		    RELAY_PAUSE_CREDENTIALS },
		{ RELAY_STAGE_AUTH, "451 4.3.0 try later", RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_MAIL, "530-5.7.0 Authentication Required.|530 "
		    "5.7.0  https://x", RELAY_PAUSE, RELAY_PAUSE_CREDENTIALS },
		/* The daily limit, wherever it comes. */
		{ RELAY_STAGE_MAIL, "550-5.4.5 Daily user sending limit "
		    "exceeded.|550 5.4.5  https://x", RELAY_PAUSE,
		    RELAY_PAUSE_QUOTA },
		{ RELAY_STAGE_DATA, "550 5.4.5 Daily limit", RELAY_PAUSE,
		    RELAY_PAUSE_QUOTA },
		{ RELAY_STAGE_DOT, "550 5.4.5 Daily limit", RELAY_PAUSE,
		    RELAY_PAUSE_QUOTA },
		/* Temporary: 4xx and 421 anywhere. */
		{ RELAY_STAGE_EHLO, "421-4.7.0 Try again later, closing "
		    "connection. (EHLO)|421 4.7.0  https://x", RELAY_TEMPFAIL,
		    0 },
		{ RELAY_STAGE_DOT, "421 4.3.0 Temporary System Problem.",
		    RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_DOT, "451 4.3.0 Mail server temporarily "
		    "rejected message.", RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_RCPT, "452 4.5.3 Your message has too many "
		    "recipients.", RELAY_TEMPFAIL, 0 },
		/* Permanent: 5xx to MAIL, RCPT, DATA or the final dot. */
		{ RELAY_STAGE_RCPT, "550-5.1.1 The email account that you "
		    "tried to reach does not exist.|550 5.1.1  https://x",
		    RELAY_PERMFAIL, 0 },
		{ RELAY_STAGE_RCPT, "553-5.1.3 The recipient address <x> is "
		    "not a valid RFC 5321 address.|553 5.1.3 x", RELAY_PERMFAIL,
		    0 },
		{ RELAY_STAGE_MAIL, "552-5.3.4 Your message exceeded Google's "
		    "message size limits.|552 5.3.4 x", RELAY_PERMFAIL, 0 },
		{ RELAY_STAGE_DOT, "552 5.3.4 too big", RELAY_PERMFAIL, 0 },
		{ RELAY_STAGE_DOT, "552 5.2.3 too big (older)", RELAY_PERMFAIL,
		    0 },
		{ RELAY_STAGE_DATA, "554 5.5.1 no valid recipients",
		    RELAY_PERMFAIL, 0 },
		/* 5xx while setting up the session: not the message's fault. */
		{ RELAY_STAGE_GREETING, "554 5.7.0 go away", RELAY_TEMPFAIL,
		    0 },
		{ RELAY_STAGE_EHLO, "502 5.5.1 Unrecognized command.",
		    RELAY_TEMPFAIL, 0 },
		{ RELAY_STAGE_STARTTLS, "502 5.5.1 Unrecognized command.",
		    RELAY_TEMPFAIL, 0 },
	};
	enum relay_pause pause;
	struct reply r;
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		parse(&r, rows[i].reply);
		if (relay_classify(rows[i].stage, &r, &pause) !=
		    rows[i].outcome || pause != rows[i].pause)
			fail_msg("row %zu (%s): got %s pause %d", i,
			    rows[i].reply, relay_stroutcome(relay_classify(
			    rows[i].stage, &r, &pause)), (int)pause);
	}
}

/* The advice the daemon logs for an AUTH rejection (the table's fix,
 * common/smtpproto_advice.c). */
static const char *
auth_advice(const struct reply *r)
{
	const struct smtpproto_advice *a = smtpproto_advice_reply(r);

	assert_non_null(a);
	return a->fix;
}

static void
test_auth_advice(void **state)
{
	struct reply r;

	parse(&r, "535 5.7.8 Username and Password not accepted.");
	assert_non_null(strstr(auth_advice(&r), "App Password"));
	parse(&r, "534 5.7.9 Application-specific password required.");
	assert_non_null(strstr(auth_advice(&r), "2-Step Verification"));
	parse(&r, "534 5.7.14 Please log in via your web browser");
	assert_non_null(strstr(auth_advice(&r), "web browser"));
	parse(&r, "454 4.7.0 Too many login attempts");
	assert_non_null(strstr(auth_advice(&r), "too many login"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_table),
		cmocka_unit_test(test_auth_advice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
