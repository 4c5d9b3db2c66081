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

/* Header module output: counted and buffered like any other. */
static void
body_hdr_out(void *arg, const char *p, size_t n)
{
	body_write(arg, p, n);
}

/* Emits content bytes (already unstuffed and normalised). */
static void
body_put(struct body *b, const char *p, size_t n)
{
	size_t used;

	if (b->in_headers) {
		used = hdr_feed(&b->hdr, p, n);
		p += used;
		n -= used;
		b->in_headers = !b->hdr.done;
	}
	if (n > 0)
		body_write(b, p, n);
}

void
body_init(struct body *b, const struct hdr_opts *ho, body_out_fn *out,
    void *arg)
{
	memset(b, 0, offsetof(struct body, buf));
	b->raw = BODY_BOL;
	b->in_headers = true;
	hdr_init(&b->hdr, ho, body_hdr_out, b);
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

int
body_finish(struct body *b)
{
	/*
	 * Input that stops inside a line (only a caller that does not wait
	 * for the end of data) gets the line ended, so that nothing is glued
	 * to the header lines hdr_finish() adds.
	 */
	if (b->raw == BODY_TEXT || b->raw == BODY_CR)
		body_put(b, "\r\n", 2);
	else if (b->raw == BODY_DOTCR)
		body_put(b, ".\r\n", 3);
	if (b->in_headers)
		hdr_finish(&b->hdr);
	b->in_headers = false;
	body_flush(b);
	return b->hdr.error;
}

void
body_free(struct body *b)
{
	hdr_free(&b->hdr);
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
