/*
 * reply: parsing SMTP server replies (RFC 5321 §4.2), with the enhanced
 * status codes of RFC 3463 / RFC 2034.
 *
 * A reply is one or more lines "NNN-text" ending with a line "NNN text" (or
 * a bare "NNN").  The relay feeds complete lines (CRLF removed) one at a
 * time; reply_feed() says when the reply is complete.  Everything is
 * bounded: a line over REPLY_LINE_MAX bytes, more than REPLY_LINES_MAX
 * lines, a code that changes between lines or a line that does not start
 * with three digits make the reply malformed, which the relay treats as a
 * protocol error (a temporary failure).  The text kept is capped at
 * REPLY_TEXT_MAX bytes; the rest is dropped, the code is not.
 *
 * Error convention: 0 or a negative errno; nothing here logs.
 */
#ifndef SMARTRELAY_REPLY_H
#define SMARTRELAY_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define REPLY_LINE_MAX		2048	/* bytes of one line, without CRLF */
#define REPLY_LINES_MAX		64	/* lines of one reply */
#define REPLY_TEXT_MAX		4096	/* text kept, all lines */
#define REPLY_ENH_MAX		16	/* "X.YYY.ZZZ" and NUL */

struct reply {
	unsigned code;			/* 200..599 */
	char enhanced[REPLY_ENH_MAX];	/* "5.7.8", "" when none */
	/*
	 * The text of every line after "NNN-" / "NNN ", lines separated by
	 * '\n', the enhanced code kept as the server sent it.
	 */
	char text[REPLY_TEXT_MAX];
	size_t textlen;
	size_t nlines;
	bool done;			/* the last line was seen */
};

/* Prepares r for a new reply. */
void reply_init(struct reply *r);
/*
 * Adds one line (without CRLF) of len bytes.  Returns 0 when the reply is
 * complete (r->done), -EAGAIN when more lines follow, -EBADMSG when the
 * line is malformed, -E2BIG over the bounds.
 */
int reply_feed(struct reply *r, const char *line, size_t len);

/* 2, 3, 4 or 5: the first digit of the code. */
static inline unsigned
reply_class(const struct reply *r)
{
	return r->code / 100;
}

/*
 * The reply as one printable line for logs and the queue: "535 5.7.8
 * Username and Password not accepted. ... - gsmtp", the continuation
 * lines joined with a space and their repeated enhanced codes removed.
 */
const char *reply_summary(const struct reply *r, char *buf, size_t bufsz);

/*
 * Walks the text lines: *pos starts at 0; each call points *line at the
 * next line (not NUL-terminated) and sets *len.  False at the end.
 */
bool reply_next_line(const struct reply *r, size_t *pos, const char **line,
    size_t *len);

/* True when the reply's enhanced code is exactly enh ("5.4.5"). */
bool reply_enhanced_is(const struct reply *r, const char *enh);

#endif
