/*
 * libFuzzer target: the control protocol (common/ctlproto.c), from both
 * ends.  The input is, at once, a request line as the daemon parses it
 * (ctlp_parse_request), STATUS data lines as the tool applies them
 * (ctlp_status_line, whose result must survive ctlp_status_format and a
 * second parse unchanged), and the daemon's whole reply as the tool's
 * ctlp_call() reads it from a socketpair.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctlproto.h"
#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXARGS	8

/* The daemon's side: one request line (without '\n'). */
static void
fuzz_request(const char *line)
{
	char *copy = strdup(line), *args[MAXARGS];
	enum ctlp_verb verb;
	const char *bad;
	size_t n, i;
	int r;

	if (copy == NULL)
		return;
	r = ctlp_parse_request(copy, &verb, args, MAXARGS, &n, &bad);
	if (r == 0) {
		if (n > MAXARGS || verb > CTLP_LIST)
			abort();
		for (i = 0; i < n; i++)
			if (!queue_id_valid(args[i]))
				abort();
	} else if (r != -EBADRQC && r != -EINVAL && r != -E2BIG)
		abort();
	free(copy);
}

/* Applies "key value" lines of s (NUL-terminated) to st. */
static void
apply_lines(struct ctlp_status *st, char *s)
{
	char *line, *save = NULL;

	for (line = strtok_r(s, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		ctlp_status_line(st, line);
}

/* The tool's side of STATUS: whatever it parsed formats and re-parses. */
static void
fuzz_status(char *text)
{
	static char buf[2 * sizeof(struct ctlp_status) + 256];
	struct ctlp_status a, b;
	int n;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	apply_lines(&a, text);
	if ((n = ctlp_status_format(&a, buf, sizeof(buf))) < 0)
		abort();
	apply_lines(&b, buf);
	if (strcmp(a.version, b.version) != 0 || a.pid != b.pid ||
	    a.started != b.started || a.queued != b.queued ||
	    a.oldest != b.oldest || a.last_delivery != b.last_delivery ||
	    a.upstream != b.upstream || a.upstream_since != b.upstream_since ||
	    a.next_attempt != b.next_attempt || strcmp(a.reply, b.reply) != 0)
		abort();
}

static void
count_line(void *arg, const char *line)
{
	if (strchr(line, '\n') != NULL)
		abort();
	(*(size_t *)arg)++;
}

/* The tool reading the daemon's reply (then EOF) from a socket. */
static void
fuzz_call(const uint8_t *data, size_t size)
{
	char *err = NULL;
	size_t lines = 0, off = 0;
	ssize_t w;
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return;
	/* What the socket buffer takes (all of libFuzzer's usual inputs). */
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	while (off < size && (w = write(sv[1], data + off, size - off)) > 0)
		off += (size_t)w;
	shutdown(sv[1], SHUT_WR);
	r = ctlp_call(sv[0], "STATUS", count_line, &lines, &err);
	if (r < -4095 || r > 255 || (r <= 0 && err != NULL))
		abort();
	free(err);
	close(sv[0]);
	close(sv[1]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, *nl;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if ((nl = strchr(s, '\n')) != NULL)
		*nl = '\0';
	fuzz_request(s);
	if (nl != NULL)
		*nl = '\n';
	fuzz_status(s);
	free(s);
	fuzz_call(data, size);
	return 0;
}
