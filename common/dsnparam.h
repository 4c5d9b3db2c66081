/*
 * dsnparam: the values of the RFC 3461 DSN parameters (docs/smtp.md), as
 * pure functions over strings: NOTIFY and RET keywords, the xtext
 * encoding of ENVID and ORCPT (RFC 3461 §4), and their bounds.  The
 * inbound session, the sendmail tool, the spool's record parser and the
 * notices share them, so every place agrees on what is valid.
 *
 * Error convention: 0 or a negative errno (-EINVAL for a bad value);
 * nothing here allocates or logs.
 */
#ifndef SMARTRELAY_DSNPARAM_H
#define SMARTRELAY_DSNPARAM_H

#include <stdbool.h>
#include <stddef.h>

#include "queue.h"

/* RFC 3461 §4.4 and §4.2: the longest ENVID and ORCPT values. */
#define DSNPARAM_ENVID_MAX	100
#define DSNPARAM_ORCPT_MAX	500

/*
 * NOTIFY=: "NEVER", or a comma list of SUCCESS, FAILURE and DELAY (any
 * case, each at most once), len bytes of v.  *bits gets the QUEUE_NOTIFY_* bits.
 */
int dsnparam_notify(const char *v, size_t len, unsigned *bits);
/* Formats bits as the lower-case keyword list ("success,delay"). */
void dsnparam_notify_format(unsigned bits, char *buf, size_t sz);
/* True for bits dsnparam_notify() can produce (0 included: not given). */
bool dsnparam_notify_ok(unsigned bits);
/* True when len bytes of v are xtext (RFC 3461 §4): "+XX" upper-case hex
 * for '+', '=' and bytes outside '!'..'~'. */
bool dsnparam_xtext_ok(const char *v, size_t len);
/* ENVID=: xtext, 1..DSNPARAM_ENVID_MAX bytes. */
bool dsnparam_envid_ok(const char *v, size_t len);
/* ORCPT=: addr-type ";" xtext, at most DSNPARAM_ORCPT_MAX bytes, the
 * addr-type an RFC 5322 atom. */
bool dsnparam_orcpt_ok(const char *v, size_t len);
/*
 * Decodes xtext src into dst (sz bytes, NUL-terminated, cut if short) for
 * a notice's header field: bytes that are not printable ASCII become '?'.
 */
void dsnparam_xtext_decode(const char *src, char *dst, size_t sz);
/* Encodes src as xtext into dst; -ENAMETOOLONG when it does not fit. */
int dsnparam_xtext_encode(const char *src, char *dst, size_t sz);

/*
 * The DSN parameters of one MAIL or RCPT command, gathered parameter by
 * parameter: dsnparam_mail() and dsnparam_rcpt() take one "KEY=VALUE"
 * parameter (len bytes of p, the key in any case) and return 1 when it is
 * not a DSN one (the caller goes on with its others), 0 when taken, or
 * -EINVAL with *reply set to the reply for the client: "501 5.5.4" for a
 * bad value or one given twice (RFC 3461 §4).
 */
struct dsnparam_mail {
	enum queue_ret ret;		/* QUEUE_RET_UNSET: not given */
	char envid[DSNPARAM_ENVID_MAX + 1];	/* "": not given */
};

struct dsnparam_rcpt {
	unsigned notify;		/* QUEUE_NOTIFY_*, 0: not given */
	char orcpt[DSNPARAM_ORCPT_MAX + 1];	/* "": not given */
};

int dsnparam_mail(struct dsnparam_mail *d, const char *p, size_t len,
    const char **reply);
int dsnparam_rcpt(struct dsnparam_rcpt *d, const char *p, size_t len,
    const char **reply);

#endif
