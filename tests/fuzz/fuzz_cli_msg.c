/*
 * libFuzzer target: the sendmail tool's header and address parsers
 * (daemon/tool/cli_msg.c), as `sendmail -t` uses them on a message's
 * header section: fields and their continuation lines, the unfolded value
 * of To/Cc/Bcc, its address list, and each address through the path parser
 * (common/addr.c) that decides whether it is a recipient.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "cli_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One element of an address list, as sm_resolve() takes it. */
static int
one_addr(void *arg, const char *a)
{
	size_t n = strlen(a), limit = *(size_t *)arg;
	char out[ADDR_MAX];
	const char *rest;

	/* Trimmed, never empty, never "<>", never longer than its field. */
	if (n == 0 || n > limit || a[0] == ' ' || a[0] == '\t' ||
	    a[n - 1] == ' ' || a[n - 1] == '\t' || strcmp(a, "<>") == 0)
		abort();
	if (addr_parse_path(a, out, sizeof(out), &rest) == 0) {
		if (rest < a || rest > a + n)
			abort();
		if (*out != '\0' && addr_check_mailbox(out) != 0)
			abort();
		(void)addr_is_bare(out);
	}
	return 0;
}

/* One header field (with its continuation lines). */
static void
one_field(const char *f, size_t len)
{
	char *v;
	size_t vlen;

	if (!cli_hdr_is(f, len, "To") && !cli_hdr_is(f, len, "Cc") &&
	    !cli_hdr_is(f, len, "Bcc") && !cli_hdr_is(f, len, "From"))
		return;
	if ((v = cli_hdr_value(f, len)) == NULL)
		abort();	/* it has a colon; only ENOMEM fails */
	vlen = strlen(v);
	if (vlen >= len || strchr(v, '\r') != NULL || strchr(v, '\n') != NULL)
		abort();
	(void)cli_addr_list(v, one_addr, &vlen);
	free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *f = NULL, *nl;
	size_t len;

	/* Fields as cli_sendmail.c finds them: a field start, then lines
	 * beginning with WSP; anything else ends the header section. */
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl + 1 : end) - p);
		if (*p == ' ' || *p == '\t') {
			if (f == NULL)
				break;
		} else {
			if (f != NULL)
				one_field(f, (size_t)(p - f));
			f = NULL;
			if (!cli_hdr_field_start(p, len))
				break;
			f = p;
		}
		p += len;
	}
	if (f != NULL)
		one_field(f, (size_t)(p - f));
	return 0;
}
