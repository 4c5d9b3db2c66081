/*
 * addr: mailbox and SMTP path parsing (RFC 5321 §4.1.2), shared by the
 * inbound session, the relay and the smartrelay tool; and the two things
 * smartrelay says about network addresses (addr_sockaddr_str(),
 * addr_is_loopback()), so that the logs, the relay and the doctor print
 * and judge them alike.
 *
 * Parsing is tolerant where legacy clients are sloppy and old MTAs were
 * lenient (a space after "FROM:", a path without angle brackets, a source
 * route) and strict where it matters: no control characters, bounded
 * lengths, one '@' outside quotes.  Bytes >= 0x80 are kept as they are
 * (SMTPUTF8 addresses); addr_is_ascii() tells whether one was seen.
 *
 * Error convention: 0 or a negative errno (-EINVAL: bad syntax,
 * -ENAMETOOLONG: over the limits).
 */
#ifndef SMARTRELAY_ADDR_H
#define SMARTRELAY_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_MAX	256	/* RFC 5321 §4.5.3.1.3: path, with brackets */
#define ADDR_LOCAL_MAX	64	/* §4.5.3.1.1 */
#define ADDR_DOMAIN_MAX	255	/* §4.5.3.1.2 */

struct cfg_alias;
struct sockaddr;

/*
 * Parses the path that follows "MAIL FROM:" or "RCPT TO:".  Writes the
 * mailbox without brackets to out ("" for "<>") and points *rest at the
 * ESMTP parameters after it (leading spaces skipped).  A mailbox without a
 * domain ("root") is accepted; the caller decides what it means.
 */
int addr_parse_path(const char *s, char *out, size_t outsz,
    const char **rest);

/* Checks a full mailbox "local@domain" (no brackets). */
int addr_check_mailbox(const char *mbox);
/* Checks a domain name or address literal ("[192.0.2.1]"). */
int addr_check_domain(const char *domain);
/* True when s has no byte >= 0x80. */
bool addr_is_ascii(const char *s);
/* True when mbox has no '@' outside a quoted local part. */
bool addr_is_bare(const char *mbox);

/*
 * Resolves a bare local name: the alias target when name has one (compared
 * case-insensitively), else name@local_domain.  Returns -ENOENT when
 * neither applies, -ENAMETOOLONG when the result does not fit.
 */
int addr_resolve_local(const char *name, const struct cfg_alias *aliases,
    size_t naliases, const char *local_domain, char *out, size_t outsz);

/*
 * The numeric address of sa ("192.0.2.1", "2001:db8::1") into buf[sz];
 * "unknown" for another family.  Returns buf.
 */
const char *addr_sockaddr_str(const struct sockaddr *sa, char *buf,
    size_t sz);
/*
 * True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: the only addresses
 * an upstream with tls = "none" may be (the password goes in clear text).
 */
bool addr_is_loopback(const struct sockaddr *sa);

#endif
