/*
 * lineio: the one bounded line reader, for every line-oriented protocol
 * smartrelay reads from an evbuffer: SMTP commands in the inbound session
 * (daemon/smtp.c), the upstream's replies in the relay (daemon/relay.c)
 * and the doctor (daemon/tool/cli_doctor.c), and control requests
 * (daemon/ctl.c).
 *
 * A line ends with LF; a CR before it is part of the line end (RFC 5321
 * §2.3.8 lines end with CRLF; a bare LF is tolerated as legacy clients
 * send it).  A line is at most max bytes with its line end: longer ones
 * are never buffered whole, so a peer cannot make us hold more than
 * max bytes of a line.
 *
 * Error convention: the enum below; nothing here logs or allocates.
 */
#ifndef SMARTRELAY_LINEIO_H
#define SMARTRELAY_LINEIO_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

enum lineio_status {
	LINEIO_LINE,		/* a line is in buf */
	LINEIO_AGAIN,		/* no whole line yet */
	LINEIO_TOO_LONG,	/* a line over max bytes was dropped */
};

/*
 * Takes the next line from in into buf (max + 1 bytes): without its line
 * end, NUL-terminated, *len bytes (a NUL byte inside shows as strlen(buf)
 * != *len).  A line longer than max is dropped: with skip NULL it is
 * reported as soon as that is known (the caller ends the conversation);
 * with skip, *skip remembers that the rest of it is being dropped and the
 * report comes once its end has arrived (the caller answers and goes on,
 * as an SMTP server does with 500 5.5.2).
 */
enum lineio_status lineio_get(struct evbuffer *in, size_t max, bool *skip,
    char *buf, size_t *len);

#endif
