/*
 * relay_reply: what the upstream's replies mean for the queue, apart from
 * any session: classifies a reply into the actions of docs/relay.md's
 * failure table.  What a reply means to a person (the advice texts) and
 * the EHLO keywords are the shared protocol layer's (common/smtpproto.h),
 * since the doctor needs them too.  relay.c's state machine calls these;
 * they keep no state and do no I/O, so the unit tests can call them
 * directly.
 */
#include "relay.h"

#include <stddef.h>

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
