/*
 * libFuzzer target: the token endpoint's answers (common/oauth.c), read
 * as a token answer and as a device authorisation answer, with the HTTP
 * status taken from the first byte.  Whatever comes in, an access token
 * accepted is one an SMTP line can carry (no space, no control byte).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[] = { 200, 400, 401, 429, 500, 503 };
	struct oauth_token t;
	struct oauth_device d;
	char why[256];
	size_t i;
	int status;

	if (size < 1 || oauth_token_init(&t) < 0)
		return 0;
	status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
	if (oauth_parse_token(status, (const char *)data + 1, size - 1, &t,
	    why, sizeof(why)) == OAUTH_OK) {
		if (t.access.len == 0 || strlen(t.access.buf) != t.access.len)
			abort();
		for (i = 0; i < t.access.len; i++)
			if (t.access.buf[i] <= ' ' || t.access.buf[i] >= 0x7f)
				abort();
	}
	if (memchr(why, '\0', sizeof(why)) == NULL)
		abort();
	oauth_token_free(&t);
	if (oauth_device_init(&d) == 0) {
		oauth_parse_device(status, (const char *)data + 1, size - 1, &d,
		    why, sizeof(why));
		oauth_device_free(&d);
	}
	return 0;
}
