/*
 * libFuzzer target: the DATA filter.  Whatever the client sends, the stored
 * content has only CRLF line ends, and once re-stuffed for the upstream it
 * holds no end-of-data sequence (the smuggling rule).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
	char *buf;
	size_t len, cap;
};

static void
sink_out(void *arg, const char *buf, size_t len)
{
	struct sink *k = arg;

	if (k->len + len > k->cap) {
		k->cap = (k->len + len) * 2;
		if ((k->buf = realloc(k->buf, k->cap)) == NULL)
			abort();
	}
	memcpy(k->buf + k->len, buf, len);
	k->len += len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct body b;
	struct sink k = { 0 };
	char *wire;
	size_t used, n, i;
	bool bol = true;

	body_init(&b, "Date: d\r\n", "Message-ID: <m@h>\r\n", sink_out, &k);
	used = body_feed(&b, (const char *)data, size);
	if (used > size)
		abort();
	body_finish(&b);
	if (b.size != k.len)
		abort();
	for (i = 0; i < k.len; i++) {
		if (k.buf[i] == '\r' && (i + 1 == k.len || k.buf[i + 1] != '\n'))
			abort();
		if (k.buf[i] == '\n' && (i == 0 || k.buf[i - 1] != '\r'))
			abort();
	}
	if ((wire = malloc(2 * k.len + 8)) == NULL)
		abort();
	n = body_stuff(k.buf, k.len, &bol, wire);
	for (i = 0; i + 5 <= n; i++)
		if (memcmp(wire + i, "\r\n.\r\n", 5) == 0)
			abort();
	if (n >= 3 && k.len > 0 && memcmp(wire, ".\r\n", 3) == 0)
		abort();
	free(wire);
	free(k.buf);
	return 0;
}
