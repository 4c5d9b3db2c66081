/*
 * What a group commit would buy on this disk (docs/performance.md).
 *
 *   commit_strategies DIR [N [BATCH [THREADS]]]
 *
 * Writes N 2 KiB records the way the spool commits them (write tmp/ID,
 * fsync, rename to msg/ID, fsync msg/), with three strategies:
 *   serial   one message at a time, as queue_writer_commit() does today in
 *            the event loop: 2 fsyncs per message;
 *   batch    BATCH messages at a time (what 20 concurrent sessions waiting
 *            for their 250 would form): fsync each file, rename each, then
 *            ONE fsync of msg/ for the whole batch;
 *   parallel as batch, but the file fsyncs are issued by THREADS threads at
 *            once, so the device sees several writes in flight.
 * and prints messages per second and the time per batch (the latency a
 * client would see, queueing apart).  Stand-alone: no smartrelay code.
 *
 *   gcc -O2 -pthread tests/bench/commit_strategies.c -o commit_strategies
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int tmpfd, msgfd;
static char body[2048];
static long seq;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

/* Creates and writes tmp/NAME; returns its fd (not yet fsync'd). */
static int
write_tmp(char *name)
{
	int fd;

	snprintf(name, 32, "%016lX", ++seq);
	fd = openat(tmpfd, name, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (fd == -1 || write(fd, body, sizeof(body)) != sizeof(body))
		die("write tmp");
	return fd;
}

static void
publish(const char *name, int fd)
{
	if (renameat(tmpfd, name, msgfd, name) == -1)
		die("rename");
	close(fd);
}

struct job {
	int *fds;
	int n, stride, first;
};

static void *
fsync_some(void *arg)
{
	struct job *j = arg;
	int i;

	for (i = j->first; i < j->n; i += j->stride)
		if (fsync(j->fds[i]) == -1)
			die("fsync");
	return NULL;
}

static void
run(const char *label, long n, int batch, int threads)
{
	char (*names)[32] = calloc((size_t)batch, 32);
	int *fds = calloc((size_t)batch, sizeof(int));
	pthread_t th[64];
	struct job jobs[64];
	double t0 = now_s(), tb, maxb = 0, sumb = 0;
	long done = 0, nb = 0;
	int i, k;

	while (done < n) {
		k = (int)(n - done < batch ? n - done : batch);
		tb = now_s();
		for (i = 0; i < k; i++)
			fds[i] = write_tmp(names[i]);
		if (threads <= 1) {
			for (i = 0; i < k; i++)
				if (fsync(fds[i]) == -1)
					die("fsync");
		} else {
			for (i = 0; i < threads; i++) {
				jobs[i] = (struct job){ fds, k, threads, i };
				pthread_create(&th[i], NULL, fsync_some, &jobs[i]);
			}
			for (i = 0; i < threads; i++)
				pthread_join(th[i], NULL);
		}
		for (i = 0; i < k; i++) {
			publish(names[i], fds[i]);
			if (batch == 1 && fsync(msgfd) == -1)
				die("fsync dir");
		}
		if (batch > 1 && fsync(msgfd) == -1)
			die("fsync dir");
		tb = now_s() - tb;
		sumb += tb;
		nb++;
		if (tb > maxb)
			maxb = tb;
		done += k;
	}
	printf("%-9s batch=%-3d threads=%-2d %6.0f msg/s  per batch: "
	    "avg %.3f ms max %.3f ms\n", label, batch, threads,
	    (double)n / (now_s() - t0), sumb / (double)nb * 1e3, maxb * 1e3);
	free(names);
	free(fds);
}

int
main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/var/tmp/commit-bench";
	long n = argc > 2 ? atol(argv[2]) : 3000;
	int batch = argc > 3 ? atoi(argv[3]) : 20;
	int threads = argc > 4 ? atoi(argv[4]) : 4;
	char path[4096];
	int i;

	if (n < 1 || batch < 2 || batch > 1000 || threads < 2 || threads > 64) {
		fprintf(stderr, "usage: commit_strategies DIR [N [BATCH>=2 "
		    "[THREADS 2..64]]]\n");
		return 64;
	}
	for (i = 0; i < (int)sizeof(body); i++)
		body[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'x';
	mkdir(dir, 0700);
	snprintf(path, sizeof(path), "%s/tmp", dir);
	mkdir(path, 0700);
	if ((tmpfd = open(path, O_RDONLY | O_DIRECTORY)) == -1)
		die(path);
	snprintf(path, sizeof(path), "%s/msg", dir);
	mkdir(path, 0700);
	if ((msgfd = open(path, O_RDONLY | O_DIRECTORY)) == -1)
		die(path);
	seq = (long)time(NULL) << 20;
	run("serial", n, 1, 1);
	run("batch", n, batch, 1);
	run("parallel", n, batch, threads);
	run("serial", n, 1, 1);
	return 0;
}
