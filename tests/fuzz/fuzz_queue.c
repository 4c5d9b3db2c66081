/* libFuzzer target: the queue record envelope and state journal parsers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_msg *m;
	size_t off = 0;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return 0;
	if (queue_parse_envelope((const char *)data, size, m, &off) == 0) {
		if (off > size || m->nrcpt == 0)
			abort();
		/* The rest of the input doubles as a journal. */
		queue_journal_apply(m, (const char *)data + off, size - off);
		queue_msg_free(m);
	} else
		free(m);
	return 0;
}
