/*
 * lineio: the bounded line reader.  See lineio.h.
 */
#include "lineio.h"

#include <event2/buffer.h>

enum lineio_status
lineio_get(struct evbuffer *in, size_t max, bool *skip, char *buf,
    size_t *len)
{
	struct evbuffer_ptr eol;
	size_t n, eol_len;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) <= max)
			return LINEIO_AGAIN;
		if (skip == NULL)
			return LINEIO_TOO_LONG;
		/* Drop what came of it; the end is reported when it comes. */
		evbuffer_drain(in, evbuffer_get_length(in));
		*skip = true;
		return LINEIO_AGAIN;
	}
	n = (size_t)eol.pos;
	if ((skip != NULL && *skip) || n + eol_len > max) {
		evbuffer_drain(in, n + eol_len);
		if (skip != NULL)
			*skip = false;
		return LINEIO_TOO_LONG;
	}
	evbuffer_remove(in, buf, n + eol_len);
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	*len = n;
	return LINEIO_LINE;
}
