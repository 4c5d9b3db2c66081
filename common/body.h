/*
 * body: the DATA filter of the inbound session (docs/smtp.md).
 *
 * It turns the raw bytes a client sends after "354" into the message we
 * queue: it finds the end of data, undoes dot-stuffing, normalises bare LF
 * and bare CR to CRLF, and adds Date: and Message-ID: at the end of the
 * header section when the client did not send them.  It holds no message in
 * memory: output leaves through a callback in chunks of at most
 * BODY_CHUNK bytes.
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
	bool hdr_bol;		/* output is at a header line start */
	bool hdr_cont_ok;	/* a header line precedes (folding allowed) */
	char hdr_name[128];	/* held start of a header line */
	size_t hdr_len;
	bool saw_date;
	bool saw_msgid;
	bool eightbit;		/* a byte >= 0x80 was seen */
	bool nul;		/* a NUL byte was seen */
	uint64_t size;		/* output bytes so far */
	const char *extra_date;	/* borrowed: "Date: ...\r\n" */
	const char *extra_msgid;	/* borrowed: "Message-ID: ...\r\n" */
	body_out_fn *out;
	void *arg;
	char buf[BODY_CHUNK];
	size_t len;
};

/* Prepares a filter; date and msgid are whole header lines with CRLF. */
void body_init(struct body *b, const char *date, const char *msgid,
    body_out_fn *out, void *arg);
/*
 * Feeds raw bytes; returns how many were consumed.  Stops right after the
 * final CRLF.CRLF (b->raw == BODY_END then) and leaves the rest, which
 * belongs to the next pipelined command.
 */
size_t body_feed(struct body *b, const char *in, size_t len);
/* After the end: adds missing headers if the message had no body, flushes. */
void body_finish(struct body *b);

/*
 * The output direction (RFC 5321 §4.5.2): copies stored content to out,
 * doubling a "." at the start of every line.  *bol carries "at a line
 * start" across calls (start with true); out needs room for 2 * len bytes.
 * Returns the bytes written.
 */
size_t body_stuff(const char *in, size_t len, bool *bol, char *out);

#endif
