/*
 * relay_private.h: what relay.c shares with relay_reply.c and with nobody
 * else.
 */
#ifndef SMARTRELAY_RELAY_PRIVATE_H
#define SMARTRELAY_RELAY_PRIVATE_H

struct reply;

/* The EHLO keywords (RFC 5321 §4.1.1.1) a session acts on. */
#define EXT_STARTTLS	0x01
#define EXT_PIPELINING	0x02
#define EXT_8BITMIME	0x04
#define EXT_SMTPUTF8	0x08
#define EXT_SIZE	0x10
#define EXT_AUTH_PLAIN	0x20
#define EXT_AUTH_LOGIN	0x40
#define EXT_AUTH_XOAUTH2	0x80
#define EXT_AUTH_OAUTHBEARER	0x100
#define EXT_DSN		0x200	/* RFC 3461 */

/* Reads the EXT_* keywords an EHLO reply offers. */
unsigned relay_ehlo_ext(const struct reply *r);

#endif
