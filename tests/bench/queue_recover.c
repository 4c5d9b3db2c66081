/*
 * Benchmark of the spool (docs/performance.md): commit latency of 2 KiB messages and the
 * time queue_recover() takes over a large spool.
 *
 *   queue_recover [SPOOL [N [COMMITS]]]
 *
 * COMMITS messages (default 1000) go through the real writer with its fsyncs
 * and give the latency percentiles; the spool is then filled up to N records
 * (default 100000) by copying one committed record under fresh ids (no
 * fsync, so filling takes seconds), a third of them with a journal, and
 * queue_recover() is timed twice (first run and a second, warm one).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
count_cb(struct queue_msg *m, void *arg)
{
	(*(size_t *)arg)++;
	queue_msg_free(m);
}

/* Writes a record file for id, copied from template with its id replaced. */
static void
fill_one(const char *dir, const char *tpl, size_t len, const char *tplid,
    bool journal)
{
	char id[QUEUE_ID_LEN + 1], path[4096], *buf = malloc(len), *p;
	const char jline[] = "00000000 sched 1 0\n";
	int fd;

	queue_new_id(id);
	memcpy(buf, tpl, len);
	p = strstr(buf, tplid);
	memcpy(p, id, QUEUE_ID_LEN);
	snprintf(path, sizeof(path), "%s/msg/%s", dir, id);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd == -1 || write(fd, buf, len) != (ssize_t)len) {
		perror(path);
		exit(1);
	}
	close(fd);
	if (journal) {
		/* A bad checksum: the line is read, checked and skipped. */
		snprintf(path, sizeof(path), "%s/msg/%s.state", dir, id);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd == -1 || write(fd, jline, sizeof(jline) - 1) < 0)
			exit(1);
		close(fd);
	}
	free(buf);
}

int
main(int argc, char **argv)
{
	char tpl_id[QUEUE_ID_LEN + 1], path[4096], body[2048], *err = NULL;
	const char *dir = argc > 1 ? argv[1] : "/var/tmp/smartrelay-bench";
	long n = argc > 2 ? atol(argv[2]) : 100000;
	long commits = argc > 3 ? atol(argv[3]) : 1000, i;
	const char *rcpt = "someone@example.org";
	struct queue_writer *w;
	struct queue *q;
	double *lat, t0, t;
	size_t count, ncorrupt, tlen;
	char *tpl;
	int fd;

	if (queue_open(dir, &q, &err) != 0) {
		fprintf(stderr, "%s\n", err != NULL ? err : "queue_open");
		return 1;
	}
	memset(body, 'x', sizeof(body));
	for (i = 78; i < (long)sizeof(body); i += 80)
		memcpy(body + i, "\r\n", 2);
	lat = calloc((size_t)commits, sizeof(*lat));
	for (i = 0; i < commits; i++) {
		t0 = now_s();
		if (queue_writer_new(q, &w) != 0 ||
		    queue_writer_envelope(w, "sender@example.org", &rcpt, 1, 0,
		    time(NULL)) != 0 ||
		    queue_writer_write(w, body, sizeof(body)) != 0 ||
		    queue_writer_commit(w) != 0) {
			fprintf(stderr, "commit failed\n");
			return 1;
		}
		lat[i] = now_s() - t0;
		strcpy(tpl_id, queue_writer_id(w));
		queue_writer_free(w);
	}
	qsort(lat, (size_t)commits, sizeof(*lat), cmp_double);
	printf("commit (new+envelope+2 KiB+commit, fsync'd): n=%ld "
	    "p50=%.3f ms p99=%.3f ms max=%.3f ms\n", commits,
	    lat[commits / 2] * 1e3, lat[commits * 99 / 100] * 1e3,
	    lat[commits - 1] * 1e3);

	snprintf(path, sizeof(path), "%s/msg/%s", dir, tpl_id);
	tpl = malloc(8192);
	fd = open(path, O_RDONLY);
	tlen = (size_t)read(fd, tpl, 8192);
	close(fd);
	t0 = now_s();
	for (i = commits; i < n; i++)
		fill_one(dir, tpl, tlen, tpl_id, i % 3 == 0);
	printf("filled to %ld records in %.1f s\n", n, now_s() - t0);

	for (i = 0; i < 2; i++) {
		count = 0;
		t0 = now_s();
		if (queue_recover(q, count_cb, &count, &ncorrupt, &err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		t = now_s() - t0;
		printf("recover #%ld: %zu messages, %zu corrupt, %.3f s "
		    "(%.1f us/message)\n", i + 1, count, ncorrupt, t,
		    t * 1e6 / (double)count);
	}
	free(tpl);
	free(lat);
	queue_close(q);
	return 0;
}
