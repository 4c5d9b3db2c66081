/* libFuzzer target: the SMTP path and mailbox parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, out[ADDR_MAX];
	const char *rest;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (addr_parse_path(s, out, sizeof(out), &rest) == 0) {
		/* What the parser accepts, the checker accepts too. */
		if (*out != '\0' && addr_check_mailbox(out) != 0)
			abort();
		if (rest < s || rest > s + strlen(s))
			abort();
	}
	addr_check_domain(s);
	free(s);
	return 0;
}
