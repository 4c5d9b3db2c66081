/*
 * smtpproto: the SMTP protocol layer shared by every SMTP speaker in
 * smartrelay: the relay (daemon/relay.c), the upstream doctor
 * (daemon/tool/cli_doctor.c), the inbound session (daemon/smtp.c) and
 * `sendmail -bs` (daemon/tool/cli_sendmail.c).  It holds what SMTP means,
 * apart from any I/O or session:
 *
 *   - the EHLO reply: which extensions (RFC 5321 §4.1.1.1) the server
 *     offers, one set of SMTPPROTO_EXT_* bits for every client;
 *   - the AUTH encoders (RFC 4954): PLAIN (RFC 4616) and LOGIN, each
 *     producing the exact line to send, base64 included;
 *   - MAIL and RCPT parameters and recipient addresses as the inbound
 *     side accepts them (RFC 5321 §4.1.1.2-3, RFC 1870, RFC 6152, RFC
 *     6531), with the exact reply to send when they are refused;
 *   - one table of advice texts for the upstream's failure replies and
 *     for the local failures on the way to it (resolution, connection,
 *     certificate), so that the daemon's log, `smartrelay status`, the
 *     doctor and docs/relay.md say the same thing (smtpproto_advice.c).
 *
 * Error convention: 0 or a negative errno; nothing here logs.  Lines that
 * carry a credential are malloc'd and must be released with
 * smtpproto_line_free(), which wipes them.
 */
#ifndef SMARTRELAY_SMTPPROTO_H
#define SMARTRELAY_SMTPPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsnparam.h"

struct cfg;
struct reply;

/* ---- EHLO ---- */

/* The EHLO keywords smartrelay acts on. */
#define SMTPPROTO_EXT_STARTTLS		0x0001	/* RFC 3207 */
#define SMTPPROTO_EXT_PIPELINING	0x0002	/* RFC 2920 */
#define SMTPPROTO_EXT_8BITMIME		0x0004	/* RFC 6152 */
#define SMTPPROTO_EXT_SMTPUTF8		0x0008	/* RFC 6531 */
#define SMTPPROTO_EXT_SIZE		0x0010	/* RFC 1870 */
#define SMTPPROTO_EXT_AUTH		0x0020	/* RFC 4954, any mechanism */
#define SMTPPROTO_EXT_AUTH_PLAIN	0x0040
#define SMTPPROTO_EXT_AUTH_LOGIN	0x0080
#define SMTPPROTO_EXT_AUTH_XOAUTH2	0x0100
#define SMTPPROTO_EXT_AUTH_OAUTHBEARER	0x0200	/* RFC 7628 */
#define SMTPPROTO_EXT_CHUNKING		0x0400	/* RFC 3030 */
#define SMTPPROTO_EXT_DSN		0x0800	/* RFC 3461 */
#define SMTPPROTO_EXT_ENHANCED		0x1000	/* RFC 2034 */

/* What an EHLO reply says. */
struct smtpproto_ehlo {
	unsigned ext;			/* SMTPPROTO_EXT_* */
	uint64_t size;			/* SIZE's value, 0: none or no limit */
	char auth[256];			/* AUTH's mechanisms, as offered */
};

/* Reads the keywords of a complete EHLO reply (the first line is the
 * server's name and is skipped). */
void smtpproto_ehlo_parse(const struct reply *r, struct smtpproto_ehlo *e);

/* ---- AUTH (RFC 4954) ---- */

/*
 * The mechanisms, in the order of preference.  XOAUTH2 and OAUTHBEARER
 * (RFC 7628) take their place here, with their encoders below, for
 * upstream.auth = "xoauth2".
 */
enum smtpproto_mech {
	SMTPPROTO_MECH_NONE,		/* nothing we can use is offered */
	SMTPPROTO_MECH_PLAIN,
	SMTPPROTO_MECH_LOGIN,
	SMTPPROTO_MECH_OAUTHBEARER,	/* RFC 7628, preferred for tokens */
	SMTPPROTO_MECH_XOAUTH2,
};

/* The password mechanism to use for the offered SMTPPROTO_EXT_* bits. */
enum smtpproto_mech smtpproto_auth_choose(unsigned ext);
/* The token mechanism (upstream.auth = "xoauth2") for the offered bits. */
enum smtpproto_mech smtpproto_oauth_choose(unsigned ext);
/* "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2" or "none". */
const char *smtpproto_mech_name(enum smtpproto_mech m);

/*
 * The encoders.  Each makes one command line without its CRLF in a
 * malloc'd *line of *len bytes, NUL-terminated and with room for two more
 * bytes (so that a caller may put "\r\n" in place, over the NUL, and send
 * it as is).  Returns 0 or -ENOMEM.  Free with smtpproto_line_free().
 */
/* "AUTH PLAIN <base64(\0user\0password)>", the initial response. */
int smtpproto_auth_plain(const char *user, const char *pw, size_t pwlen,
    char **line, size_t *len);
/* "AUTH LOGIN". */
int smtpproto_auth_login(char **line, size_t *len);
/*
 * The answer to the step-th 334 of AUTH LOGIN: step 0 the user name, step
 * 1 the password, in base64.  -EPROTO for any other step: cancel the
 * exchange with "*" (RFC 4954 §4).
 */
int smtpproto_auth_login_step(unsigned step, const char *user,
    const char *pw, size_t pwlen, char **line, size_t *len);
/*
 * The OAuth mechanisms (docs/oauth.md), with an access token of toklen
 * bytes; -EINVAL when user (or host) holds a character the formats cannot
 * carry (a control character, ',' or '=').
 *   "AUTH XOAUTH2 " base64("user=" USER ^A "auth=Bearer " TOKEN ^A ^A)
 *   "AUTH OAUTHBEARER " base64("n,a=" USER "," ^A "host=" HOST ^A
 *       "port=" PORT ^A "auth=Bearer " TOKEN ^A ^A)   (RFC 7628 §3.1)
 */
int smtpproto_auth_xoauth2(const char *user, const char *tok, size_t toklen,
    char **line, size_t *len);
int smtpproto_auth_oauthbearer(const char *user, const char *host,
    unsigned port, const char *tok, size_t toklen, char **line, size_t *len);
/*
 * After a refused token the server sends a 334 error challenge (base64
 * JSON, "status":"401"); the client's answer, after which the server ends
 * the exchange with a 535: an empty line for XOAUTH2, "AQ==" (base64 of
 * ^A, RFC 7628 §3.2.3) for OAUTHBEARER.
 */
const char *smtpproto_oauth_abort(enum smtpproto_mech m);
/* prefix followed by base64(raw): the building block of the encoders. */
int smtpproto_b64_line(const char *prefix, const void *raw, size_t rawlen,
    char **line, size_t *len);
/* Wipes and frees an encoder's line (len bytes of it); accepts NULL. */
void smtpproto_line_free(char *line, size_t len);

/* ---- MAIL and RCPT (the inbound side) ---- */

#define SMTPPROTO_REPLY_MAX	512	/* a reply line we make, with room */

/* What the parameters of a MAIL command asked for. */
struct smtpproto_mail {
	unsigned flags;			/* QUEUE_F_8BITMIME, QUEUE_F_SMTPUTF8 */
	uint64_t size;			/* SIZE=, 0 when not given */
	struct dsnparam_mail dsn;	/* RET=, ENVID= (RFC 3461) */
};

/*
 * Parses the parameters after MAIL FROM:<...> (SIZE=, BODY=7BIT,
 * BODY=8BITMIME, SMTPUTF8, and RET= and ENVID= when dsn, the server
 * offering DSN) into m.  A SIZE= over limit, a bad DSN value or anything
 * else is refused: -EINVAL with the reply to send in reply[sz] (501, 552
 * or 555).
 */
int smtpproto_mail_params(const char *p, uint64_t limit, bool dsn,
    struct smtpproto_mail *m, char *reply, size_t sz);
/*
 * Parses the parameters after RCPT TO:<...>: NOTIFY= and ORCPT= into *d
 * when d is not NULL (the server offers DSN), else none.  -EINVAL with
 * the reply in reply[sz] (501 for a bad DSN value, 555 for the others).
 */
int smtpproto_rcpt_params(const char *p, struct dsnparam_rcpt *d,
    char *reply, size_t sz);

/*
 * The envelope recipient of a command line argument (path, nothing after
 * it) into out[sz]: a bare name goes through rewrite.aliases, then
 * rewrite.local_domain (docs/smtp.md).  -EINVAL when the syntax is bad or
 * the path empty, -EDESTADDRREQ when a bare name has neither an alias nor
 * a domain to go to.
 */
int smtpproto_rcpt_addr(const struct cfg *cfg, const char *path, char *out,
    size_t sz);
/*
 * The same for the argument of RCPT TO: (path and parameters, DSN ones
 * into *d as smtpproto_rcpt_params() does): 0, or a
 * negative errno with the reply to send in reply[rsz]: 501 5.1.3 for bad
 * syntax, 555 for a parameter, 550 5.1.1 for a name without a domain.
 */
int smtpproto_rcpt(const struct cfg *cfg, const char *arg, char *out,
    size_t sz, struct dsnparam_rcpt *d, char *reply, size_t rsz);
/*
 * Gives a bare sender name a domain, in place: rewrite.local_domain, else
 * the host name.  -ENAMETOOLONG (from left as it was) when it would not
 * fit; the null sender and qualified addresses are left alone.
 */
int smtpproto_qualify_sender(const struct cfg *cfg, char *from, size_t sz);

/* ---- advice (smtpproto_advice.c) ---- */

/* What smartrelay does about a failure (docs/relay.md's failure table). */
enum smtpproto_action {
	SMTPPROTO_ACT_RETRY,		/* defer, retry with backoff */
	SMTPPROTO_ACT_PAUSE,		/* account problem: the queue pauses */
	SMTPPROTO_ACT_BOUNCE,		/* permanent: a notification */
};

/* Failures on the way to the upstream that are no SMTP reply. */
enum smtpproto_local {
	SMTPPROTO_LOCAL_RESOLVE,	/* the host name does not resolve */
	SMTPPROTO_LOCAL_REFUSED,	/* connection refused */
	SMTPPROTO_LOCAL_TIMEOUT,	/* no answer to the connection */
	SMTPPROTO_LOCAL_UNREACHABLE,	/* no route */
	SMTPPROTO_LOCAL_PLAINTEXT,	/* tls = "none" to a non-loopback address */
	SMTPPROTO_LOCAL_NO_STARTTLS,	/* STARTTLS not offered */
	SMTPPROTO_LOCAL_PLAIN_PORT,	/* implicit TLS to a plain-text port */
	SMTPPROTO_LOCAL_TLS_PORT,	/* STARTTLS to an implicit-TLS port */
	SMTPPROTO_LOCAL_CERT_UNTRUSTED,	/* chain to no trusted CA */
	SMTPPROTO_LOCAL_CERT_NAME,	/* certificate for another name */
	SMTPPROTO_LOCAL_CERT_DATES,	/* expired or not yet valid */
	SMTPPROTO_LOCAL_TLS,		/* another handshake failure */
	/* upstream.auth = "xoauth2": the token endpoint (docs/oauth.md). */
	SMTPPROTO_LOCAL_OAUTH_TEMP,	/* unreachable, 5xx, garbage */
	SMTPPROTO_LOCAL_OAUTH_GRANT,	/* invalid_grant */
	SMTPPROTO_LOCAL_OAUTH_GRANT_GOOGLE, /* invalid_grant from Google */
	SMTPPROTO_LOCAL_OAUTH_CLIENT,	/* invalid_client */
	SMTPPROTO_LOCAL_OAUTH_REFUSED,	/* another error */
	SMTPPROTO_LOCAL_OAUTH_PENDING,	/* device flow: not signed in yet */
	SMTPPROTO_LOCAL_OAUTH_EXPIRED,	/* device flow: the code expired */
	SMTPPROTO_LOCAL_OAUTH_DENIED,	/* the person declined */
	SMTPPROTO_LOCAL_OAUTH_FILE,	/* our token or secret file */
};

/* One row of the advice table. */
struct smtpproto_advice {
	const char *key;	/* the row's name: "535 5.7.8", "tls-cert-name" */
	unsigned code;		/* the reply code, 0 for a local failure */
	const char *enhanced;	/* enhanced code to match, NULL: any */
	const char *text;	/* words the reply must carry, NULL: any */
	enum smtpproto_action action;
	const char *meaning;	/* what happened, in plain words */
	/*
	 * What to do.  May name {host}, {port}, {username}, {password_file}
	 * and {trust}, which smtpproto_advice_format() fills in.
	 */
	const char *fix;
};

/* The values that fill an advice's {placeholders}; NULL: the key name. */
struct smtpproto_advice_vars {
	const char *host;		/* borrowed: upstream.host */
	unsigned port;
	const char *username;		/* borrowed */
	const char *password_file;	/* borrowed: where the password is */
	const char *trust;		/* borrowed: ca_file or the store */
};

/* The values for an upstream as configured (upstream.*). */
void smtpproto_advice_vars_cfg(const struct cfg *cfg,
    struct smtpproto_advice_vars *v);

/*
 * The advice for a reply given as its code, enhanced code ("5.7.8", NULL
 * or "" when none) and text; NULL when the table has none.  The most
 * specific row wins: code, enhanced code and words, then code and
 * enhanced code, then code alone.
 */
const struct smtpproto_advice *smtpproto_advice_find(unsigned code,
    const char *enhanced, const char *text);
/* The same for a parsed reply. */
const struct smtpproto_advice *smtpproto_advice_reply(const struct reply *r);
/*
 * The same for a reply as text, one line or several separated by newlines
 * ("550 5.1.1 The email account ..."); NULL when it is no complete reply
 * or the table has no row for it.  *is_reply: the text is (the start of)
 * an SMTP reply.
 */
const struct smtpproto_advice *smtpproto_advice_text(const char *text,
    bool *is_reply);
/* The advice for a local failure (never NULL). */
const struct smtpproto_advice *smtpproto_advice_local(enum smtpproto_local w);
/*
 * Which local failure a connect error (a positive errno; false for one
 * the table has no row for) or a certificate verification result
 * (OpenSSL's X509_V_ERR_*) is, so that the relay and the doctor name the
 * same row for the same failure.
 */
bool smtpproto_local_connect(int err, enum smtpproto_local *w);
enum smtpproto_local smtpproto_local_cert(long verify_result);
/* A row by its key (from the control socket), NULL when unknown. */
const struct smtpproto_advice *smtpproto_advice_by_key(const char *key);
/* The table, for the documentation test: *n rows. */
const struct smtpproto_advice *smtpproto_advice_table(size_t *n);
/*
 * The advice's fix with its placeholders filled from v into buf[sz]
 * (cut if too long).  Returns buf.
 */
const char *smtpproto_advice_format(const struct smtpproto_advice *a,
    const struct smtpproto_advice_vars *v, char *buf, size_t sz);
/* "retried with backoff", "the queue pauses", "bounces". */
const char *smtpproto_straction(enum smtpproto_action a);

#endif
