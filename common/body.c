/*
 * body: the DATA filter.  See body.h for the rules it implements.
 */
#include "body.h"

#include <string.h>
#include <strings.h>

/* Sends out what is buffered. */
static void
body_flush(struct body *b)
{
	if (b->len > 0)
		b->out(b->arg, b->buf, b->len);
	b->len = 0;
}

/* Appends output bytes, bypassing the header tracker. */
static void
body_write(struct body *b, const char *p, size_t n)
{
	size_t k;

	b->size += n;
	while (n > 0) {
		if (b->len == sizeof(b->buf))
			body_flush(b);
		k = sizeof(b->buf) - b->len;
		if (k > n)
			k = n;
		memcpy(b->buf + b->len, p, k);
		b->len += k;
		p += k;
		n -= k;
	}
}

/* Ends the header section: adds the headers the client did not send. */
static void
body_end_headers(struct body *b)
{
	b->in_headers = false;
	if (!b->saw_date && b->extra_date != NULL)
		body_write(b, b->extra_date, strlen(b->extra_date));
	if (!b->saw_msgid && b->extra_msgid != NULL)
		body_write(b, b->extra_msgid, strlen(b->extra_msgid));
}

/* True for the characters of a header field name (RFC 5322 §2.2). */
static bool
body_ftext(char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* Handles one output byte while in the header section. */
static void
body_put_header(struct body *b, char c)
{
	if (b->hdr_bol) {
		if (c == '\r') {
			/* The empty line: headers end before it. */
			body_end_headers(b);
			body_write(b, &c, 1);
			return;
		}
		b->hdr_bol = false;
		b->hdr_len = 0;
		if ((c == ' ' || c == '\t') && b->hdr_cont_ok) {
			body_write(b, &c, 1);
			return;
		}
		b->hdr_name[b->hdr_len++] = c;
		if (!body_ftext(c))
			goto not_header;
		return;
	}
	if (b->hdr_len == 0) {
		/* Past the field name: copy through to the end of line. */
		body_write(b, &c, 1);
		if (c == '\n')
			b->hdr_bol = true;
		return;
	}
	if (c == ':') {
		b->hdr_name[b->hdr_len] = '\0';
		if (strcasecmp(b->hdr_name, "Date") == 0)
			b->saw_date = true;
		else if (strcasecmp(b->hdr_name, "Message-ID") == 0)
			b->saw_msgid = true;
		body_write(b, b->hdr_name, b->hdr_len);
		body_write(b, &c, 1);
		b->hdr_len = 0;
		b->hdr_cont_ok = true;
		return;
	}
	if (b->hdr_len + 1 < sizeof(b->hdr_name) && body_ftext(c)) {
		b->hdr_name[b->hdr_len++] = c;
		return;
	}
	b->hdr_name[b->hdr_len++] = c;
not_header:
	/* A line that is no header: the body starts without an empty line. */
	body_end_headers(b);
	body_write(b, "\r\n", 2);
	body_write(b, b->hdr_name, b->hdr_len);
	if (c == '\n')
		b->hdr_bol = true;
}

/* Emits content bytes (already unstuffed and normalised). */
static void
body_put(struct body *b, const char *p, size_t n)
{
	while (n > 0 && b->in_headers) {
		body_put_header(b, *p++);
		n--;
	}
	if (n > 0)
		body_write(b, p, n);
}

void
body_init(struct body *b, const char *date, const char *msgid,
    body_out_fn *out, void *arg)
{
	memset(b, 0, offsetof(struct body, buf));
	b->raw = BODY_BOL;
	b->in_headers = true;
	b->hdr_bol = true;
	b->extra_date = date;
	b->extra_msgid = msgid;
	b->out = out;
	b->arg = arg;
	b->len = 0;
}

/* Runs one raw byte through the end-of-data and normalisation automaton. */
static void
body_step(struct body *b, char c)
{
	switch (b->raw) {
	case BODY_BOL:
		if (c == '.') {
			b->raw = BODY_DOT;
			return;
		}
		b->raw = BODY_TEXT;
		body_step(b, c);
		return;
	case BODY_DOT:
		if (c == '\r') {
			b->raw = BODY_DOTCR;
			return;
		}
		if (c == '\n') {
			/* CRLF "." LF: content, never the end. */
			body_put(b, ".\r\n", 3);
			b->raw = BODY_TEXT;
			return;
		}
		/* A stuffed dot: drop it, keep what follows. */
		b->raw = BODY_TEXT;
		body_step(b, c);
		return;
	case BODY_DOTCR:
		if (c == '\n') {
			b->raw = BODY_END;
			return;
		}
		/* CRLF "." CR x: a "." line ended by a bare CR. */
		body_put(b, ".\r\n", 3);
		b->raw = BODY_TEXT;
		body_step(b, c);
		return;
	case BODY_TEXT:
		if (c == '\r')
			b->raw = BODY_CR;
		else if (c == '\n')
			body_put(b, "\r\n", 2);	/* bare LF */
		else
			body_put(b, &c, 1);
		return;
	case BODY_CR:
		if (c == '\n') {
			body_put(b, "\r\n", 2);
			b->raw = BODY_BOL;
			return;
		}
		body_put(b, "\r\n", 2);		/* bare CR */
		if (c == '\r')
			return;			/* still BODY_CR */
		b->raw = BODY_TEXT;
		body_step(b, c);
		return;
	case BODY_END:
		return;
	}
}

size_t
body_feed(struct body *b, const char *in, size_t len)
{
	size_t i, run;

	for (i = 0; i < len && b->raw != BODY_END; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == 0)
			b->nul = true;
		else if (c >= 0x80)
			b->eightbit = true;
		/* Fast path: a run of plain bytes inside a line. */
		if (b->raw == BODY_TEXT && !b->in_headers && c != '\r' &&
		    c != '\n') {
			for (run = i + 1; run < len; run++) {
				unsigned char d = (unsigned char)in[run];

				if (d == '\r' || d == '\n')
					break;
				if (d == 0)
					b->nul = true;
				else if (d >= 0x80)
					b->eightbit = true;
			}
			body_write(b, in + i, run - i);
			i = run - 1;
			continue;
		}
		body_step(b, (char)c);
	}
	return i;
}

void
body_finish(struct body *b)
{
	if (b->in_headers)
		body_end_headers(b);
	body_flush(b);
}

size_t
body_stuff(const char *in, size_t len, bool *bol, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (*bol && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		*bol = in[i] == '\n';
	}
	return o;
}
