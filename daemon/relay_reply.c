/*
 * relay_reply: what the upstream's replies mean, apart from any session.
 * Classifies a reply into the actions of docs/relay.md's failure table, explains an AUTH
 * rejection (Gmail's codes) in plain words, and reads the EHLO keywords.
 * relay.c's state machine calls these; they keep no state and do no I/O,
 * so the unit tests can call them directly.
 */
#include "relay.h"
#include "relay_private.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "reply.h"

const char *
relay_stroutcome(enum relay_outcome o)
{
	switch (o) {
	case RELAY_OK:
		return "ok";
	case RELAY_TEMPFAIL:
		return "tempfail";
	case RELAY_PERMFAIL:
		return "permfail";
	case RELAY_PAUSE:
		return "pause";
	}
	return "?";
}

/* ---- classification (docs/relay.md's failure table) ---- */

enum relay_outcome
relay_classify(enum relay_stage stage, const struct reply *r,
    enum relay_pause *pause)
{
	unsigned cls = r->code / 100;

	*pause = RELAY_PAUSE_NONE;
	if (cls == 2 || cls == 3)
		return RELAY_OK;
	if (r->code == 421)
		return RELAY_TEMPFAIL;
	if (stage == RELAY_STAGE_AUTH) {
		/* 535 5.7.8, 534 5.7.9, 534 5.7.14, 454 4.7.0 and any 5xx:
		 * the account's problem, never the messages'. */
		if (cls == 5 || r->code == 454) {
			*pause = RELAY_PAUSE_CREDENTIALS;
			return RELAY_PAUSE;
		}
		return RELAY_TEMPFAIL;
	}
	if (r->code == 550 && reply_enhanced_is(r, "5.4.5")) {
		*pause = RELAY_PAUSE_QUOTA;
		return RELAY_PAUSE;
	}
	if (stage == RELAY_STAGE_MAIL && r->code == 530) {
		/* "Authentication Required" / "Must issue STARTTLS": ours. */
		*pause = RELAY_PAUSE_CREDENTIALS;
		return RELAY_PAUSE;
	}
	if (cls == 4)
		return RELAY_TEMPFAIL;
	switch (stage) {
	case RELAY_STAGE_MAIL:
	case RELAY_STAGE_RCPT:
	case RELAY_STAGE_DATA:
	case RELAY_STAGE_DOT:
		return RELAY_PERMFAIL;
	default:
		/* A broken session is not the message's fault. */
		return RELAY_TEMPFAIL;
	}
}

const char *
relay_auth_advice(const struct reply *r)
{
	if (reply_enhanced_is(r, "5.7.30"))
		return "Microsoft 365 has basic authentication (password) "
		    "turned off for SMTP: switch to auth = \"xoauth2\" "
		    "(docs/oauth.md)";
	if (reply_enhanced_is(r, "5.7.139"))
		return "Microsoft 365 refuses SMTP AUTH for the tenant or the "
		    "mailbox (SmtpClientAuthentication disabled, or security "
		    "defaults): have an administrator turn on Authenticated "
		    "SMTP for the mailbox, or use auth = \"xoauth2\"";
	if (reply_enhanced_is(r, "5.7.3"))
		return "Microsoft 365 did not accept the login (wrong password "
		    "or token, or SMTP AUTH is off for the mailbox): check "
		    "upstream.username, and for xoauth2 run `smartrelay oauth` "
		    "again and check the app's SMTP.Send permission";
	if (reply_enhanced_is(r, "5.7.9"))
		return "the account uses 2-Step Verification: create an App "
		    "Password (Google Account > Security > App passwords) and "
		    "put it in upstream.password_file";
	if (reply_enhanced_is(r, "5.7.14"))
		return "Google blocked the sign-in: log in to the account once "
		    "in a web browser (and confirm it was you), then wait for "
		    "the retry";
	if (r->code == 454)
		return "too many login attempts: Google throttles the account; "
		    "smartrelay retries with backoff, nothing to change unless "
		    "another program also logs in too often";
	if (reply_enhanced_is(r, "5.7.8") || r->code == 535)
		return "user name or password not accepted: check "
		    "upstream.username and the App Password in "
		    "upstream.password_file (16 letters; it needs 2-Step "
		    "Verification; the account password does not work)";
	return "the upstream refused the login: check upstream.username and "
	    "upstream.password_file";
}

/* ---- EHLO ---- */

unsigned
relay_ehlo_ext(const struct reply *r)
{
	const char *line, *p;
	size_t pos = 0, len, wl, i = 0;
	unsigned ext = 0;

	while (reply_next_line(r, &pos, &line, &len)) {
		if (i++ == 0)
			continue;
		wl = strcspn(line, " \n");
		if (wl > len)
			wl = len;
#define KW(w) (wl == strlen(w) && strncasecmp(line, w, wl) == 0)
		if (KW("STARTTLS"))
			ext |= EXT_STARTTLS;
		else if (KW("PIPELINING"))
			ext |= EXT_PIPELINING;
		else if (KW("8BITMIME"))
			ext |= EXT_8BITMIME;
		else if (KW("SMTPUTF8"))
			ext |= EXT_SMTPUTF8;
		else if (KW("SIZE"))
			ext |= EXT_SIZE;
		else if (KW("DSN"))
			ext |= EXT_DSN;
		else if (KW("AUTH")) {
			for (p = line + wl; p < line + len; ) {
				size_t ml;

				while (p < line + len && *p == ' ')
					p++;
				ml = strcspn(p, " \n");
				if (p + ml > line + len)
					ml = (size_t)(line + len - p);
				if (ml == 5 && strncasecmp(p, "PLAIN", 5) == 0)
					ext |= EXT_AUTH_PLAIN;
				if (ml == 5 && strncasecmp(p, "LOGIN", 5) == 0)
					ext |= EXT_AUTH_LOGIN;
				if (ml == 7 && strncasecmp(p, "XOAUTH2", 7) == 0)
					ext |= EXT_AUTH_XOAUTH2;
				if (ml == 11 &&
				    strncasecmp(p, "OAUTHBEARER", 11) == 0)
					ext |= EXT_AUTH_OAUTHBEARER;
				p += ml;
			}
		}
#undef KW
	}
	return ext;
}
