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

/* RFC 3461 §4.4 and §4.2: the longest ENVID and ORCPT values. */
#define DSNPARAM_ENVID_MAX	100
#define DSNPARAM_ORCPT_MAX	500

/* NOTIFY bits (the same values as QUEUE_NOTIFY_* in queue.h). */
#define DSNPARAM_NEVER		0x01
#define DSNPARAM_SUCCESS	0x02
#define DSNPARAM_FAILURE	0x04
#define DSNPARAM_DELAY		0x08

/*
 * NOTIFY=: "NEVER", or a comma list of SUCCESS, FAILURE and DELAY (any
 * case, each at most once), len bytes of v.  *bits gets the DSNPARAM_*.
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

#endif
