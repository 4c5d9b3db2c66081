/*
 * body: the DATA filter of the inbound session (docs/smtp.md).
 *
 * It turns the raw bytes a client sends after "354" into the message we
 * queue: it finds the end of data, undoes dot-stuffing, normalises bare LF
 * and bare CR to CRLF, and passes the header section through the header
 * module (header.c: qualified addresses, one From:, Date: and Message-ID:,
 * no Bcc:, folded long lines).  It holds no message in memory: output
 * leaves through a callback in chunks of at most BODY_CHUNK bytes.
 *
 * The smuggling rule (RFC 5321 §4.1.1.4, SMTP smuggling, CVE-2023-51764..6):
 * only CR LF "." CR LF on the raw bytes ends the data.  A "." line reached
 * through a bare LF or bare CR is content; it is stored as ".", and because
 * the relay re-stuffs it, the upstream sees ".." and no end of data either.
 * Dot-unstuffing applies only to lines that start after a real CRLF.
 */
#ifndef SMARTRELAY_BODY_H
#define SMARTRELAY_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "header.h"

#define BODY_CHUNK	16384

typedef void body_out_fn(void *arg, const char *buf, size_t len);

enum body_raw {
	BODY_BOL,	/* at a line start after a real CRLF */
	BODY_DOT,	/* "." at such a line start */
	BODY_DOTCR,	/* "." CR at such a line start */
	BODY_TEXT,	/* inside a line (or after a bare LF/CR) */
	BODY_CR,	/* CR inside a line */
	BODY_END,	/* CRLF.CRLF seen */
};

struct body {
	enum body_raw raw;
	bool in_headers;	/* still in the header section */
	struct hdr hdr;		/* the header section's filter */
	bool eightbit;		/* a byte >= 0x80 was seen */
	bool nul;		/* a NUL byte was seen */
	uint64_t size;		/* output bytes so far */
	body_out_fn *out;
	void *arg;
	char buf[BODY_CHUNK];
	size_t len;
};

/*
 * Prepares a filter; ho (the header rules, header.h) must outlive it.
 * body_free() releases what the header section held.
 */
void body_init(struct body *b, const struct hdr_opts *ho, body_out_fn *out,
    void *arg);
void body_free(struct body *b);
/*
 * Feeds raw bytes; returns how many were consumed.  Stops right after the
 * final CRLF.CRLF (b->raw == BODY_END then) and leaves the rest, which
 * belongs to the next pipelined command.
 */
size_t body_feed(struct body *b, const char *in, size_t len);
/*
 * After the end: adds missing headers if the message had no body, flushes.
 * Returns 0, or -ENOMEM when the header section could not be processed
 * (then the message must not be queued).
 */
int body_finish(struct body *b);

/*
 * The output direction (RFC 5321 §4.5.2): copies stored content to out,
 * doubling a "." at the start of every line.  *bol carries "at a line
 * start" across calls (start with true); out needs room for 2 * len bytes.
 * Returns the bytes written.
 */
size_t body_stuff(const char *in, size_t len, bool *bol, char *out);

#endif
