/*
 * cfg_keys: prints every key the configuration loader accepts, one dotted
 * name a line ("upstream.port"), straight from the loader's own tables
 * (cfg_list_keys).  tests/man/check.sh compares it with the keys that
 * smartrelay.conf(5) documents, so that the manual cannot fall behind the
 * loader or describe a key it does not have.
 */
#include "cfg.h"

#include <stdio.h>
#include <stdlib.h>

/* Prints one key. */
static void
print_key(const char *key, void *arg)
{
	(void)arg;
	puts(key);
}

int
main(void)
{
	if (cfg_list_keys(print_key, NULL) < 0) {
		fprintf(stderr, "cfg_keys: out of memory\n");
		return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
