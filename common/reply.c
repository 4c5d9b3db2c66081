/*
 * reply: SMTP reply parsing.  See reply.h.
 */
#include "reply.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void
reply_init(struct reply *r)
{
	r->code = 0;
	r->enhanced[0] = '\0';
	r->text[0] = '\0';
	r->textlen = 0;
	r->nlines = 0;
	r->done = false;
}

/* Length of a run of 1..max digits at p (0 when none or too many). */
static size_t
reply_digits(const char *p, const char *end, size_t max)
{
	size_t n = 0;

	while (p + n < end && p[n] >= '0' && p[n] <= '9')
		n++;
	return n <= max ? n : 0;
}

/*
 * Length of an enhanced status code "C.SSS.DDD" at the start of p..end
 * whose class matches cls (RFC 3463 §2), followed by a space or the end;
 * 0 when there is none.
 */
static size_t
reply_enh_len(const char *p, const char *end, unsigned cls)
{
	const char *q = p;
	size_t n;

	if (q >= end || *q != (char)('0' + cls) || q + 1 >= end || q[1] != '.')
		return 0;
	q += 2;
	if ((n = reply_digits(q, end, 3)) == 0)
		return 0;
	q += n;
	if (q >= end || *q != '.')
		return 0;
	q++;
	if ((n = reply_digits(q, end, 3)) == 0)
		return 0;
	q += n;
	if (q < end && *q != ' ')
		return 0;
	return (size_t)(q - p);
}

/* Appends one line of text, '\n'-separated, capped at REPLY_TEXT_MAX. */
static void
reply_add_text(struct reply *r, const char *p, size_t len)
{
	size_t room = sizeof(r->text) - 1 - r->textlen;

	if (r->nlines > 0 && room > 0) {
		r->text[r->textlen++] = '\n';
		room--;
	}
	if (len > room)
		len = room;
	memcpy(r->text + r->textlen, p, len);
	r->textlen += len;
	r->text[r->textlen] = '\0';
}

int
reply_feed(struct reply *r, const char *line, size_t len)
{
	const char *end = line + len, *text;
	unsigned code;
	size_t elen;

	if (r->done)
		reply_init(r);
	if (len > REPLY_LINE_MAX || r->nlines >= REPLY_LINES_MAX)
		return -E2BIG;
	if (len < 3 || reply_digits(line, end, 3) != 3 || line[0] < '2' ||
	    line[0] > '5')
		return -EBADMSG;
	code = (unsigned)((line[0] - '0') * 100 + (line[1] - '0') * 10 +
	    (line[2] - '0'));
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -EBADMSG;
	if (r->nlines > 0 && code != r->code)
		return -EBADMSG;
	r->code = code;
	text = len > 3 ? line + 4 : end;
	if (r->nlines == 0 && (elen = reply_enh_len(text, end, code / 100)) > 0
	    && elen < sizeof(r->enhanced)) {
		memcpy(r->enhanced, text, elen);
		r->enhanced[elen] = '\0';
	}
	reply_add_text(r, text, (size_t)(end - text));
	r->nlines++;
	if (len > 3 && line[3] == '-')
		return -EAGAIN;
	r->done = true;
	return 0;
}

bool
reply_next_line(const struct reply *r, size_t *pos, const char **line,
    size_t *len)
{
	const char *p, *nl;

	if (r->nlines == 0 || *pos > r->textlen)
		return false;
	p = r->text + *pos;
	nl = memchr(p, '\n', r->textlen - *pos);
	*line = p;
	*len = nl != NULL ? (size_t)(nl - p) : r->textlen - *pos;
	*pos += *len + 1;
	return true;
}

/* Appends the printable bytes of p (len) to buf at *o, keeping room. */
static void
reply_put(char *buf, size_t bufsz, size_t *o, const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len && *o + 1 < bufsz; i++) {
		unsigned char c = (unsigned char)p[i];

		buf[(*o)++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	buf[*o] = '\0';
}

const char *
reply_summary(const struct reply *r, char *buf, size_t bufsz)
{
	size_t pos = 0, len, o, elen = strlen(r->enhanced);
	const char *line;
	bool first = true;

	if (bufsz == 0)
		return buf;
	o = (size_t)snprintf(buf, bufsz, "%03u", r->code);
	if (o >= bufsz)
		return buf;
	while (reply_next_line(r, &pos, &line, &len)) {
		/* Continuation lines repeat the enhanced code: drop it. */
		if (!first && elen > 0 && len >= elen &&
		    memcmp(line, r->enhanced, elen) == 0 &&
		    (len == elen || line[elen] == ' ')) {
			line += elen;
			len -= elen;
		}
		while (len > 0 && *line == ' ') {
			line++;
			len--;
		}
		if (len > 0)
			reply_put(buf, bufsz, &o, " ", 1);
		reply_put(buf, bufsz, &o, line, len);
		first = false;
	}
	return buf;
}

bool
reply_enhanced_is(const struct reply *r, const char *enh)
{
	return strcmp(r->enhanced, enh) == 0;
}
