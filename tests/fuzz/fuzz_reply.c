/*
 * libFuzzer target: the upstream's replies, the input smartrelay takes from
 * the network: common/reply.c's parser, then what each complete reply is
 * made into: daemon/relay_reply.c's classification at every stage of the
 * dialogue, common/smtpproto.c's EHLO keywords, and the advice table's row
 * with its placeholders filled.  The input is split into
 * lines at LF (a CR before it is dropped), each fed as the relay feeds a
 * complete line; after a complete reply the parser starts afresh, as it
 * does for the next command.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"
#include "reply.h"
#include "smtpproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The EHLO keywords and the advice, from any reply. */
static void
check_protocol(const struct reply *r)
{
	static const struct smtpproto_advice_vars vars = {
		.host = "smtp.gmail.com", .port = 587,
		.username = "user@example.org",
		.password_file = "/etc/smartrelay/app-password",
		.trust = "the system trust store",
	};
	const struct smtpproto_advice *a;
	struct smtpproto_ehlo e;
	char fix[512];

	memset(&e, 0x55, sizeof(e));
	smtpproto_ehlo_parse(r, &e);
	if (memchr(e.auth, '\0', sizeof(e.auth)) == NULL)
		abort();
	/* A mechanism is only ever offered inside AUTH. */
	if ((e.ext & (SMTPPROTO_EXT_AUTH_PLAIN | SMTPPROTO_EXT_AUTH_LOGIN |
	    SMTPPROTO_EXT_AUTH_XOAUTH2 | SMTPPROTO_EXT_AUTH_OAUTHBEARER)) &&
	    !(e.ext & SMTPPROTO_EXT_AUTH))
		abort();
	if ((a = smtpproto_advice_reply(r)) != NULL) {
		if (a->key == NULL || a->meaning == NULL || a->fix == NULL ||
		    (a->code != 0 && a->code != r->code))
			abort();
		if (smtpproto_advice_format(a, &vars, fix, sizeof(fix)) != fix ||
		    strlen(fix) >= sizeof(fix))
			abort();
	}
}

/* What holds for any complete reply, whatever the bytes were. */
static void
check_reply(const struct reply *r)
{
	char sum[RELAY_REPLY_MAX];
	enum relay_pause pause;
	enum relay_outcome o;
	const char *p;
	int stage;

	if (!r->done || r->code < 200 || r->code > 599 ||
	    r->textlen >= sizeof(r->text) || r->text[r->textlen] != '\0' ||
	    strlen(r->enhanced) >= sizeof(r->enhanced) ||
	    r->nlines == 0 || r->nlines > REPLY_LINES_MAX)
		abort();
	/* One printable line, whatever the server sent. */
	if (reply_summary(r, sum, sizeof(sum)) != sum ||
	    strlen(sum) >= sizeof(sum))
		abort();
	for (p = sum; *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e)
			abort();
	for (stage = RELAY_STAGE_GREETING; stage <= RELAY_STAGE_DOT; stage++) {
		pause = RELAY_PAUSE_NONE;
		o = relay_classify((enum relay_stage)stage, r, &pause);
		if (o > RELAY_PAUSE || (o == RELAY_PAUSE) !=
		    (pause != RELAY_PAUSE_NONE))
			abort();
		/* Only a 2xx or 3xx reply is a success; a 4xx never
		 * bounces, nor does anything before MAIL. */
		if (o == RELAY_OK && reply_class(r) > 3)
			abort();
		if (o == RELAY_PERMFAIL && (reply_class(r) != 5 ||
		    stage < RELAY_STAGE_MAIL))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	struct reply r;
	size_t len;
	int rc;

	reply_init(&r);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		/* The relay's line reader never hands over longer lines. */
		if (len <= REPLY_LINE_MAX) {
			rc = reply_feed(&r, p, len);
			if (rc == 0) {
				check_reply(&r);
				check_protocol(&r);
			}
			if (rc != -EAGAIN)
				reply_init(&r);
		}
		p = nl != NULL ? nl + 1 : end;
	}
	return 0;
}
