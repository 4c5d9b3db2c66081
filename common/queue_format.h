/*
 * queue_format.h: the text of the spool's records and journals, as pure
 * functions over memory (queue_format.c).  The queue's file handling
 * (queue.c, queue_maildrop.c) sits above it; nothing here does I/O or
 * knows about directories.  queue_parse_envelope() and
 * queue_journal_apply() are in queue.h, for the fuzzers and the tests.
 */
#ifndef SMARTRELAY_QUEUE_FORMAT_H
#define SMARTRELAY_QUEUE_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "queue.h"

#define QUEUE_MAGIC		"SMARTRELAY-QUEUE "
#define QUEUE_LINE_MAX		2048		/* envelope and journal lines */
#define QUEUE_ENVELOPE_MAX	(16u << 20)
#define QUEUE_TIME_MAX \
	((uint64_t)(sizeof(time_t) == 8 ? INT64_MAX : INT32_MAX))

/* Frees what a failed parse allocated and zeroes m. */
void queue_msg_clear(struct queue_msg *m);
/* Copies src as one printable ASCII line, at most QUEUE_MAX_REPLY bytes. */
size_t queue_sanitize(char *dst, const char *src);
/*
 * Formats "CRC32 payload\n" into line (*lenp bytes); -EINVAL when the line
 * would exceed QUEUE_LINE_MAX.
 */
int queue_journal_format(char line[QUEUE_LINE_MAX + 1], const char *payload,
    size_t *lenp);

#endif
