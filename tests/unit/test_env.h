/*
 * test_env.h: sizes of the heavier unit tests, from the environment, so
 * that the same tests can run quickly under valgrind.
 */
#ifndef SMARTRELAY_TEST_ENV_H
#define SMARTRELAY_TEST_ENV_H

#include <stdlib.h>

/* The number in the environment variable name, else def. */
static inline long
env_num(const char *name, long def)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return def;
	n = strtol(v, &end, 10);
	return *end == '\0' && n >= 0 ? n : def;
}

#endif
