/*
 * log: the one way smartrelay writes log lines.
 *
 * Every event is one line of key=value pairs, prefixed with the queue id when
 * there is one ("id=4F2A... queued from=<a@b> size=812 nrcpt=1").  Under
 * systemd (JOURNAL_STREAM names our stderr) lines go to journald through the
 * native protocol with PRIORITY= and SMARTRELAY_QUEUE_ID= fields; otherwise
 * they go to stderr with a level= prefix.
 *
 * Secrets never reach this module unmasked: passwords live in struct
 * cfg_secret, which a printf format cannot print, and SMTP dialogue lines go
 * through log_dialogue(), which replaces AUTH payloads with "***".
 */
#ifndef SMARTRELAY_LOG_H
#define SMARTRELAY_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

enum log_target {
	LOG_TARGET_STDERR,
	LOG_TARGET_JOURNAL,
};

/* Chooses stderr or journald; debug enables LOG_DEBUG lines. */
void log_init(const char *ident, int debug);
/* Forces a target (tests, the CLI). */
void log_set_target(enum log_target target);
enum log_target log_get_target(void);
int log_debug_enabled(void);

/* Logs one line at syslog priority prio; qid may be NULL. */
void log_msg(int prio, const char *qid, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(int prio, const char *qid, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/*
 * Logs one SMTP dialogue line at LOG_DEBUG (only with --debug).  dir is
 * "<" (received) or ">" (sent).  after_auth tells that the line answers a
 * 334 challenge, so it is a credential as a whole.  AUTH arguments and
 * such answers are replaced by "***".
 */
void log_dialogue(const char *who, const char *dir, const char *line,
    int after_auth);

/*
 * Writes the masked form of an SMTP command line into buf: "AUTH PLAIN ***"
 * for AUTH commands, "***" when after_auth, otherwise the line itself.
 * Printable ASCII only; other bytes become '?'.  Exposed for tests.
 */
void log_mask_line(char *buf, size_t bufsz, const char *line, int after_auth);

/* Quotes s for a key="value" pair into buf (escapes " and \, drops controls). */
const char *log_quote(char *buf, size_t bufsz, const char *s);

/* Room for log_addr() on any address the queue stores (QUEUE_MAX_ADDR). */
#define LOG_ADDR_MAX	2100

/*
 * Formats an envelope address (peer-supplied) as the value of a from=/to=
 * field: <addr> when every byte is printable and none is a space, '"', '\\',
 * '<' or '>' (nearly every address), otherwise the whole <addr> quoted with
 * log_quote()'s escapes, e.g. from="<\"a> uid=0\"@x>".  A quoted local part
 * (RFC 5321 §4.1.2) may hold all of those; printed bare it could end the
 * field and forge others (uid=0), quoted a key=value reader sees one value.
 * A long address is cut, never its closing quote.  Write "from=%s", never
 * "from=<%s>".
 */
const char *log_addr(char *buf, size_t bufsz, const char *addr);

#endif
