/*
 * ctlproto: the control protocol, both ends.  See ctlproto.h.
 */
#include "ctlproto.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dsnparam.h"

static const struct {
	const char *name;
	enum ctlp_verb verb;
} ctlp_verbs[] = {
	{ "STATUS", CTLP_STATUS },
	{ "FLUSH", CTLP_FLUSH },
	{ "DELETE", CTLP_DELETE },
	{ "MAILDROP", CTLP_MAILDROP },
	{ "LIST", CTLP_LIST },
};

static const char *const ctlp_upstream_names[] = {
	[CTLP_UP_UNKNOWN] = "unknown",
	[CTLP_UP_OK] = "ok",
	[CTLP_UP_RETRYING] = "retrying",
	[CTLP_UP_PAUSED_AUTH] = "paused-credentials",
	[CTLP_UP_PAUSED_QUOTA] = "paused-quota",
};

/* Appends printf output to the growing string *bp (len, cap); -ENOMEM. */
static int ctlp_add(char **bp, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
ctlp_add(char **bp, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	char *nb;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*bp + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if ((size_t)n < *cap - *len) {
			*len += (size_t)n;
			return 0;
		}
		if ((nb = realloc(*bp, 2 * *cap + (size_t)n)) == NULL)
			return -ENOMEM;
		*bp = nb;
		*cap = 2 * *cap + (size_t)n;
	}
}

/* An address as one LIST word: xtext, "<>" for the null sender. */
static int
ctlp_list_addr(const char *a, char *out, size_t sz)
{
	if (*a == '\0') {
		snprintf(out, sz, "<>");
		return 0;
	}
	return dsnparam_xtext_encode(a, out, sz);
}

char *
ctlp_list_format(const struct queue_msg *m, const struct queue_stub *st,
    bool inflight, const char *reason)
{
	static const char *const states[] = { "pending", "delivered",
	    "failed" };
	char addr[3 * QUEUE_MAX_ADDR + 1], text[QUEUE_MAX_REPLY + 1];
	size_t len = 0, cap = 256, i;
	char *b;
	int r;

	if ((b = malloc(cap)) == NULL)
		return NULL;
	if (m == NULL)
		r = ctlp_add(&b, &len, &cap, "msg %s %lld 0 0 %lld unread <>\n",
		    st->id, (long long)st->arrival, (long long)st->next_attempt);
	else if ((r = ctlp_list_addr(m->from, addr, sizeof(addr))) == 0)
		r = ctlp_add(&b, &len, &cap, "msg %s %lld %llu %u %lld %s %s\n",
		    m->id, (long long)m->arrival, (unsigned long long)m->size,
		    m->attempts, (long long)m->next_attempt, inflight ?
		    "active" : "queued", addr);
	if (r == 0 && reason != NULL && *reason != '\0') {
		snprintf(text, sizeof(text), "%s", reason);
		for (i = 0; text[i] != '\0'; i++)
			if (text[i] == '\r' || text[i] == '\n')
				text[i] = ' ';
		r = ctlp_add(&b, &len, &cap, "reason %s %s\n", st->id, text);
	}
	for (i = 0; r == 0 && m != NULL && i < m->nrcpt; i++)
		if ((r = ctlp_list_addr(m->rcpt[i].addr, addr,
		    sizeof(addr))) == 0)
			r = ctlp_add(&b, &len, &cap, "rcpt %s %s %s\n", m->id,
			    (unsigned)m->rcpt[i].state < 3 ?
			    states[m->rcpt[i].state] : "pending", addr);
	if (r < 0) {
		free(b);
		return NULL;
	}
	return b;
}

const char *
ctlp_upstream_name(enum ctlp_upstream u)
{
	if ((unsigned)u >= sizeof(ctlp_upstream_names) /
	    sizeof(ctlp_upstream_names[0]))
		return "unknown";
	return ctlp_upstream_names[u];
}

int
ctlp_parse_request(char *line, enum ctlp_verb *verb, char **args,
    size_t maxargs, size_t *nargs, const char **bad)
{
	char *tok, *save = NULL;
	size_t i;
	bool found = false;

	*nargs = 0;
	*bad = NULL;
	if ((tok = strtok_r(line, " ", &save)) == NULL)
		return -EBADRQC;
	for (i = 0; i < sizeof(ctlp_verbs) / sizeof(ctlp_verbs[0]); i++) {
		if (strcmp(tok, ctlp_verbs[i].name) == 0) {
			*verb = ctlp_verbs[i].verb;
			found = true;
		}
	}
	if (!found) {
		*bad = tok;
		return -EBADRQC;
	}
	while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
		if (!queue_id_valid(tok)) {
			*bad = tok;
			return -EINVAL;
		}
		if (*nargs == maxargs)
			return -E2BIG;
		args[(*nargs)++] = tok;
	}
	return 0;
}

int
ctlp_status_format(const struct ctlp_status *st, char *buf, size_t sz)
{
	int n, m;

	n = snprintf(buf, sz, "version %s\npid %ld\nstarted %lld\n"
	    "queued %zu\noldest %lld\nlast_delivery %lld\nupstream %s\n"
	    "upstream_since %lld\nnext_attempt %lld\nreply %s\n",
	    st->version, st->pid, (long long)st->started, st->queued,
	    (long long)st->oldest, (long long)st->last_delivery,
	    ctlp_upstream_name(st->upstream), (long long)st->upstream_since,
	    (long long)st->next_attempt, st->reply);
	if (n >= 0 && (size_t)n < sz && st->advice[0] != '\0')
		n += snprintf(buf + n, sz - (size_t)n, "advice %s\n",
		    st->advice);
	if (n < 0 || (size_t)n >= sz)
		return -ENOSPC;
	if (!st->oauth)
		return n;
	m = snprintf(buf + n, sz - (size_t)n, "oauth 1\ntoken_valid_until "
	    "%lld\ntoken_last_refresh %lld\ntoken_requests %u\n"
	    "token_status %s\ntoken_error %s\n",
	    (long long)st->token_valid_until,
	    (long long)st->token_last_refresh, st->token_requests,
	    st->token_status, st->token_error);
	if (m < 0 || (size_t)m >= sz - (size_t)n)
		return -ENOSPC;
	return n + m;
}

/* Parses a non-negative decimal number for a status field. */
static long long
ctlp_num(const char *s)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0)
		return 0;
	return v;
}

void
ctlp_status_line(struct ctlp_status *st, const char *line)
{
	const char *sp = strchr(line, ' '), *v;
	size_t klen, i;

	if (sp == NULL)
		return;
	klen = (size_t)(sp - line);
	v = sp + 1;
#define K(k) (klen == sizeof(k) - 1 && memcmp(line, k, klen) == 0)
	if (K("version"))
		snprintf(st->version, sizeof(st->version), "%s", v);
	else if (K("pid"))
		st->pid = (long)ctlp_num(v);
	else if (K("started"))
		st->started = (time_t)ctlp_num(v);
	else if (K("queued"))
		st->queued = (size_t)ctlp_num(v);
	else if (K("oldest"))
		st->oldest = (time_t)ctlp_num(v);
	else if (K("last_delivery"))
		st->last_delivery = (time_t)ctlp_num(v);
	else if (K("upstream_since"))
		st->upstream_since = (time_t)ctlp_num(v);
	else if (K("next_attempt"))
		st->next_attempt = (time_t)ctlp_num(v);
	else if (K("reply"))
		snprintf(st->reply, sizeof(st->reply), "%s", v);
	else if (K("advice"))
		snprintf(st->advice, sizeof(st->advice), "%s", v);
	else if (K("oauth"))
		st->oauth = ctlp_num(v) == 1;
	else if (K("token_valid_until"))
		st->token_valid_until = (time_t)ctlp_num(v);
	else if (K("token_last_refresh"))
		st->token_last_refresh = (time_t)ctlp_num(v);
	else if (K("token_requests"))
		st->token_requests = (unsigned)ctlp_num(v);
	else if (K("token_status"))
		snprintf(st->token_status, sizeof(st->token_status), "%s", v);
	else if (K("token_error"))
		snprintf(st->token_error, sizeof(st->token_error), "%s", v);
	else if (K("upstream")) {
		for (i = 0; i < sizeof(ctlp_upstream_names) /
		    sizeof(ctlp_upstream_names[0]); i++)
			if (strcmp(v, ctlp_upstream_names[i]) == 0)
				st->upstream = (enum ctlp_upstream)i;
	}
#undef K
}

int
ctlp_sockaddr(const char *spool, struct sockaddr_un *sun, socklen_t *len,
    int *dirfd)
{
	int n;

	*dirfd = -1;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	n = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/%s", spool,
	    CTLP_SOCKET_NAME);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(sun->sun_path)) {
		*dirfd = open(spool, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (*dirfd == -1)
			return -errno;
		n = snprintf(sun->sun_path, sizeof(sun->sun_path),
		    "/proc/self/fd/%d/%s", *dirfd, CTLP_SOCKET_NAME);
	}
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	    (size_t)n + 1);
	return 0;
}

int
ctlp_connect(const char *spool, int *fdp)
{
	struct sockaddr_un sun;
	socklen_t len;
	int fd, dirfd, r;

	*fdp = -1;
	if ((r = ctlp_sockaddr(spool, &sun, &len, &dirfd)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		r = -errno;
	else if (connect(fd, (struct sockaddr *)&sun, len) == -1) {
		r = -errno;
		close(fd);
	} else
		*fdp = fd;
	if (dirfd != -1)
		close(dirfd);
	return r;
}

/* Milliseconds left before deadline (CLOCK_MONOTONIC), at least 0. */
static int
ctlp_left(const struct timespec *deadline)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Waits for fd to become ready for events before the deadline. */
static int
ctlp_wait(int fd, short events, const struct timespec *deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	do
		n = poll(&pfd, 1, ctlp_left(deadline));
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -errno;
	return n == 0 ? -ETIMEDOUT : 0;
}

/* Sends the whole request line. */
static int
ctlp_send(int fd, const char *req, const struct timespec *deadline)
{
	size_t len = strlen(req), off = 0;
	char *line;
	ssize_t n;
	int r = 0;

	if (len + 1 > CTLP_LINE_MAX || strchr(req, '\n') != NULL)
		return -EINVAL;
	if ((line = malloc(len + 1)) == NULL)
		return -ENOMEM;
	memcpy(line, req, len);
	line[len++] = '\n';
	while (off < len && r == 0) {
		if ((r = ctlp_wait(fd, POLLOUT, deadline)) < 0)
			break;
		n = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (n == -1 && errno != EINTR && errno != EAGAIN)
			r = -errno;
		else if (n > 0)
			off += (size_t)n;
	}
	free(line);
	return r;
}

/* Handles one reply line; 1 when it was the final one. */
static int
ctlp_reply_line(char *line, void (*cb)(void *, const char *), void *arg,
    int *code, char **err)
{
	char *end;
	long v;

	if (strcmp(line, "OK") == 0) {
		*code = 0;
		return 1;
	}
	if (strncmp(line, "ERR ", 4) == 0) {
		v = strtol(line + 4, &end, 10);
		*code = v > 0 && v < 256 ? (int)v : 70;
		while (*end == ' ')
			end++;
		if (err != NULL)
			*err = strdup(end);
		return 1;
	}
	if (cb != NULL)
		cb(arg, line);
	return 0;
}

int
ctlp_call(int fd, const char *req, void (*cb)(void *, const char *),
    void *arg, char **err)
{
	struct timespec deadline;
	char *buf, *nl;
	size_t have = 0, start;
	ssize_t n;
	int r, code = -EPROTO;

	if (err != NULL)
		*err = NULL;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += CTLP_TIMEOUT_MS / 1000;
	if ((r = ctlp_send(fd, req, &deadline)) < 0)
		return r;
	if ((buf = malloc(CTLP_LINE_MAX + 1)) == NULL)
		return -ENOMEM;
	for (;;) {
		if ((r = ctlp_wait(fd, POLLIN, &deadline)) < 0) {
			code = r;
			break;
		}
		n = recv(fd, buf + have, CTLP_LINE_MAX - have, 0);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			code = n == 0 ? -EPROTO : -errno;
			break;
		}
		have += (size_t)n;
		buf[have] = '\0';
		start = 0;
		r = 0;
		while (r == 0 && (nl = strchr(buf + start, '\n')) != NULL) {
			*nl = '\0';
			r = ctlp_reply_line(buf + start, cb, arg, &code, err);
			start = (size_t)(nl - buf) + 1;
		}
		if (r == 1)
			break;
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == CTLP_LINE_MAX) {
			code = -EPROTO;
			break;
		}
	}
	free(buf);
	return code;
}
