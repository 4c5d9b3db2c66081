/*
 * header: header hygiene for every message we store (docs/smtp.md,
 * "Header hygiene"), shared by the SMTP server's DATA filter (body.c) and
 * therefore by sendmail and sendmail -bs, which feed the same filter.
 *
 * It sits between the DATA filter's normalised output (CRLF line ends,
 * dot-stuffing undone) and the spool, and works on one header field at a
 * time (RFC 5322 §2.2), so that a message is never held whole:
 *
 *   - bare names in From:, Sender:, Reply-To:, To:, Cc: and their Resent-
 *     forms are resolved as envelope recipients are (rewrite.aliases, then
 *     the domain given: local_domain, else hostname):
 *     "root (Cron Daemon)" becomes "root@host.example.org (Cron Daemon)";
 *   - a message gets exactly one From: with an address (the caller's line
 *     is added when there is none; one without a usable address, or a
 *     second one, is kept as X-Original-From:), at most one Date:, and
 *     exactly one syntactically valid Message-ID: (RFC 5322 §3.6.4), since
 *     Gmail refuses a message without them as "not RFC 5322 compliant";
 *   - with rewrite.header_from, the From: address becomes that one, the
 *     display name stays, and the old address goes to Reply-To: unless the
 *     message has one (smart hosts that refuse foreign senders);
 *   - Bcc: and Resent-Bcc: never travel;
 *   - lines longer than 998 octets (RFC 5322 §2.1.1) are folded at
 *     whitespace, or, without any, broken with CRLF SP as Postfix's
 *     smtp_line_length_limit does.
 *
 * A field is held up to HDR_FIELD_MAX bytes; a longer one is passed on
 * folded but otherwise unchanged (a Bcc: is still dropped).  The body is
 * not touched.
 *
 * Error convention: hdr_feed() never fails; running out of memory sets
 * h->error (-ENOMEM), and the caller refuses the message.
 */
#ifndef SMARTRELAY_HEADER_H
#define SMARTRELAY_HEADER_H

#include <stdbool.h>
#include <stddef.h>

#define HDR_FIELD_MAX	65536	/* bytes of one field held for rewriting */
#define HDR_LINE_MAX	998	/* RFC 5322 §2.1.1, without the CRLF */

struct cfg;

typedef void hdr_out_fn(void *arg, const char *buf, size_t len);

/*
 * What the caller knows about the message.  The configuration is reached
 * through the caller's pointer to the one in force and read at each field
 * (a reload may replace it during a message); the lines are borrowed.
 */
struct hdr_opts {
	const struct cfg *const *cfg;	/* borrowed: rewrite.*, hostname */
	const char *from;		/* "From: ...\r\n" to add, or NULL */
	const char *date;		/* "Date: ...\r\n" to add, or NULL */
	const char *msgid;		/* "Message-ID: ...\r\n" to add, or NULL */
};

struct hdr {
	const struct hdr_opts *o;	/* borrowed */
	hdr_out_fn *out;
	void *arg;
	char *buf;			/* owned: the field being collected */
	size_t len, cap;
	int line;			/* where the input is (header.c) */
	int stream;			/* how a long field is passed (header.c) */
	bool lead;			/* a SP was put at this line's start */
	bool done;			/* the header section has ended */
	unsigned seen;			/* HDR_SEEN_* */
	char *reply_to;			/* owned: the address header_from replaced */
	int error;			/* 0 or -ENOMEM */
};

/* Prepares h; o must outlive it. */
void hdr_init(struct hdr *h, const struct hdr_opts *o, hdr_out_fn *out,
    void *arg);
/*
 * Feeds content (CRLF line ends) while h->done is false; returns how many
 * bytes were taken.  Once the header section ended (the empty line, or a
 * line that is no header field: then an empty line is put before it),
 * h->done is true and the rest of the input is body for the caller.
 */
size_t hdr_feed(struct hdr *h, const char *p, size_t len);
/* End of the message inside the header section: the last field, additions. */
void hdr_finish(struct hdr *h);
/* Frees what h holds; h may be half-built or finished. */
void hdr_free(struct hdr *h);

/*
 * The From: line added to a message without one: the envelope sender, or
 * MAILER-DAEMON@hostname for the null sender "".  Returns 0 or
 * -ENAMETOOLONG.
 */
int hdr_from_line(char *buf, size_t sz, const char *sender,
    const char *hostname);

#endif
