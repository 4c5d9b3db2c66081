/*
 * test_env.h: what the unit tests take from their environment: sizes of
 * the heavier tests, so that the same tests can run quickly under
 * valgrind, and the removal of the temporary directories they make.
 */
#ifndef SMARTRELAY_TEST_ENV_H
#define SMARTRELAY_TEST_ENV_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

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

/* nftw() callback: removes one file or (emptied) directory. */
static inline int
test_rm_one(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Removes the tree at dir (a test's temporary directory). */
static inline void
test_rmtree(const char *dir)
{
	nftw(dir, test_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
