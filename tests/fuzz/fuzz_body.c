/*
 * libFuzzer target: the DATA filter and its header module.  Whatever the
 * client sends, the stored content has only CRLF line ends, once
 * re-stuffed for the upstream it holds no end-of-data sequence (the
 * smuggling rule), and its header section has exactly one From:, Date: and
 * Message-ID:, no Bcc:, and no line over 998 octets.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body.h"
#include "cfg.h"

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

/* Checks the header section of the stored message. */
static void
check_headers(const char *p, size_t len)
{
	static const char *const once[] = { "From:", "Date:", "Message-ID:" };
	size_t i, k, line, count[3] = { 0 };

	for (i = 0; i < len && p[i] != '\r'; i = line + 2) {
		line = i;
		while (line + 1 < len && !(p[line] == '\r' && p[line + 1] == '\n'))
			line++;
		if (line + 1 >= len || line - i > 998)
			abort();
		for (k = 0; k < 3; k++)
			if (strncasecmp(p + i, once[k], strlen(once[k])) == 0)
				count[k]++;
		if (strncasecmp(p + i, "Bcc:", 4) == 0)
			abort();
	}
	if (count[0] != 1 || count[1] != 1 || count[2] != 1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cfg_alias aliases[] = {
		{ (char *)"root", (char *)"admin@example.org" },
	};
	static struct cfg cfg = { .hostname = (char *)"h.example",
	    .rewrite = { .header_from = (char *)"hf@example.org",
	    .aliases = (struct cfg_alias *)aliases, .naliases = 1 } };
	static const struct cfg *cfgp = &cfg;
	static const struct hdr_opts opts = { .cfg = &cfgp,
	    .from = "From: <s@example.net>\r\n", .date = "Date: d\r\n",
	    .msgid = "Message-ID: <m@h>\r\n" };
	static struct body b;
	struct sink k = { 0 };
	char *wire;
	size_t used, n, i;
	bool bol = true;

	body_init(&b, &opts, sink_out, &k);
	used = body_feed(&b, (const char *)data, size);
	if (used > size)
		abort();
	if (body_finish(&b) < 0)
		abort();
	body_free(&b);
	if (b.size != k.len)
		abort();
	check_headers(k.buf, k.len);
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
