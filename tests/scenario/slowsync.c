/*
 * slowsync: an LD_PRELOAD shim for the scenario tests that makes fsync()
 * of a directory slow on demand, so that a test can hold the daemon
 * between unlinking a delivered message's record and the directory fsync
 * that makes it durable (docs/spool.md, "Removing a message") for as long
 * as it needs to look.  While the file named by $SLOWSYNC_FILE exists,
 * every fsync() of a directory first sleeps the milliseconds written in
 * it, or, when it says "EIO", fails with EIO (a disk that stopped
 * writing); file fsyncs and everything else are untouched.
 * tests/scenario/test_removal.py uses it.
 */
#include <errno.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fsync(int fd);

static int (*slowsync_real)(int);
static pthread_once_t slowsync_once = PTHREAD_ONCE_INIT;

/* Finds the C library's fsync() (copied: ISO C has no cast for it). */
static void
slowsync_init(void)
{
	void *p = dlsym(RTLD_NEXT, "fsync");

	memcpy(&slowsync_real, &p, sizeof(p));
}

/*
 * The delay in $SLOWSYNC_FILE in milliseconds, 0 when it does not exist,
 * -1 for "EIO".
 */
static long
slowsync_delay_ms(void)
{
	const char *path = getenv("SLOWSYNC_FILE");
	char buf[32];
	ssize_t n;
	int fd;

	if (path == NULL || (fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strncmp(buf, "EIO", 3) == 0 ? -1 : strtol(buf, NULL, 10);
}

int
fsync(int fd)
{
	struct timespec ts;
	struct stat st;
	long ms;

	pthread_once(&slowsync_once, slowsync_init);
	if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    (ms = slowsync_delay_ms()) == 0)
		return slowsync_real(fd);
	if (ms < 0) {
		errno = EIO;
		return -1;
	}
	if (ms < 60000) {
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (ms % 1000) * 1000000L;
		while (nanosleep(&ts, &ts) == -1)
			continue;
	}
	return slowsync_real(fd);
}
