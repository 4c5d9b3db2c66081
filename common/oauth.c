/*
 * oauth: token requests and answers, the refresh token file.  See oauth.h.
 *
 * The JSON answers are read with jansson (Debian's libjansson): it parses
 * from a buffer and length (the answer is not NUL-terminated), rejects
 * duplicate keys (an answer with two access_tokens is refused, not
 * guessed at), reports errors without echoing the input, and lets us
 * replace its allocator, which we do so that every block it frees (the
 * parsed tokens, its lexer's buffer) is wiped first.  json-c has none of
 * the last two.
 *
 * Rotation (docs/oauth.md): a provider may answer a refresh with a new
 * refresh token (Microsoft does); the old one may stop working soon
 * after.  oauth_write_file() replaces the file with the usual fsync,
 * rename, directory fsync order, so that a crash leaves one whole token.
 */
#include "oauth.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "smtpproto.h"

#define SECRET_PAGE	4096

/* ---- secrets ---- */

int
oauth_secret_init(struct oauth_secret *s, size_t cap)
{
	size_t sz = (cap + 1 + SECRET_PAGE - 1) / SECRET_PAGE * SECRET_PAGE;
	void *p;

	s->buf = NULL;
	s->len = s->cap = 0;
	p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	    -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
#ifdef MADV_DONTDUMP
	(void)madvise(p, sz, MADV_DONTDUMP);	/* best effort */
#endif
	s->buf = p;
	s->cap = sz - 1;
	s->buf[0] = '\0';
	return 0;
}

void
oauth_secret_clear(struct oauth_secret *s)
{
	if (s->buf != NULL)
		explicit_bzero(s->buf, s->cap + 1);
	s->len = 0;
}

void
oauth_secret_free(struct oauth_secret *s)
{
	if (s == NULL || s->buf == NULL)
		return;
	explicit_bzero(s->buf, s->cap + 1);
	munmap(s->buf, s->cap + 1);
	s->buf = NULL;
	s->len = s->cap = 0;
}

int
oauth_secret_set(struct oauth_secret *s, const char *v, size_t n)
{
	oauth_secret_clear(s);
	return oauth_secret_append(s, v, n);
}

int
oauth_secret_append(struct oauth_secret *s, const char *v, size_t n)
{
	if (s->buf == NULL || n > s->cap - s->len)
		return -E2BIG;
	memcpy(s->buf + s->len, v, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return 0;
}

bool
oauth_secret_equal(const struct oauth_secret *a, const struct oauth_secret *b)
{
	unsigned char d = 0;
	size_t i;

	if (a->len != b->len)
		return false;
	for (i = 0; i < a->len; i++)
		d |= (unsigned char)(a->buf[i] ^ b->buf[i]);
	return d == 0;
}

int
oauth_token_init(struct oauth_token *t)
{
	memset(t, 0, sizeof(*t));
	if (oauth_secret_init(&t->access, CFG_OAUTH_SECRET_MAX) < 0 ||
	    oauth_secret_init(&t->refresh, CFG_OAUTH_SECRET_MAX) < 0) {
		oauth_token_free(t);
		return -ENOMEM;
	}
	return 0;
}

void
oauth_token_free(struct oauth_token *t)
{
	oauth_secret_free(&t->access);
	oauth_secret_free(&t->refresh);
}

int
oauth_device_init(struct oauth_device *d)
{
	memset(d, 0, sizeof(*d));
	return oauth_secret_init(&d->device_code, CFG_OAUTH_SECRET_MAX);
}

void
oauth_device_free(struct oauth_device *d)
{
	oauth_secret_free(&d->device_code);
}

/* ---- form-encoded bodies (RFC 6749 appendix B) ---- */

int
oauth_form_add(struct oauth_secret *body, const char *key, const char *val,
    size_t vlen)
{
	static const char hex[] = "0123456789ABCDEF";
	char enc[3];
	size_t i;
	int r = 0;

	if (body->len > 0)
		r = oauth_secret_append(body, "&", 1);
	if (r == 0)
		r = oauth_secret_append(body, key, strlen(key));
	if (r == 0)
		r = oauth_secret_append(body, "=", 1);
	for (i = 0; r == 0 && i < vlen; i++) {
		unsigned char c = (unsigned char)val[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c) != NULL) {
			r = oauth_secret_append(body, (const char *)&c, 1);
			continue;
		}
		enc[0] = '%';
		enc[1] = hex[c >> 4];
		enc[2] = hex[c & 15];
		r = oauth_secret_append(body, enc, 3);
	}
	explicit_bzero(enc, sizeof(enc));
	return r;
}

/* Adds a plain string parameter. */
static int
oauth_form_str(struct oauth_secret *body, const char *key, const char *val)
{
	return oauth_form_add(body, key, val, strlen(val));
}

int
oauth_token_request(const struct cfg_oauth *o,
    const struct oauth_secret *client_secret,
    const struct oauth_secret *refresh, struct oauth_secret *body)
{
	bool refreshing = o->grant == CFG_GRANT_REFRESH_TOKEN;
	int r;

	oauth_secret_clear(body);
	r = oauth_form_str(body, "grant_type", refreshing ? "refresh_token" :
	    "client_credentials");
	if (r == 0 && refreshing)
		r = oauth_form_add(body, "refresh_token", refresh->buf,
		    refresh->len);
	if (r == 0)
		r = oauth_form_str(body, "client_id", o->client_id);
	if (r == 0 && client_secret != NULL && client_secret->len > 0)
		r = oauth_form_add(body, "client_secret", client_secret->buf,
		    client_secret->len);
	/* Google's refresh takes no scope; Microsoft's wants it. */
	if (r == 0 && o->scope != NULL && o->provider != CFG_OAUTH_GOOGLE)
		r = oauth_form_str(body, "scope", o->scope);
	if (r < 0)
		oauth_secret_clear(body);
	return r;
}

/* ---- JSON answers ---- */

/* jansson's allocator: every freed block is wiped first (tokens). */
static void *
oauth_json_malloc(size_t n)
{
	return malloc(n);
}

static void
oauth_json_free(void *p)
{
	if (p != NULL)
		explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

static pthread_once_t oauth_json_once = PTHREAD_ONCE_INIT;

static void
oauth_json_setup(void)
{
	json_set_alloc_funcs(oauth_json_malloc, oauth_json_free);
}

/* Copies a printable form of s (at most sz - 1 bytes) into buf. */
static void
oauth_printable(char *buf, size_t sz, const char *s)
{
	size_t i, n = 0;

	for (i = 0; s != NULL && s[i] != '\0' && n + 1 < sz; i++)
		buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : ' ';
	buf[n] = '\0';
}

/* The string member key of obj, or NULL. */
static const char *
oauth_json_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A number member that may come as a string ("3599"); -1 when absent. */
static long
oauth_json_long(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	const char *s;
	char *end;
	long n;

	if (json_is_integer(v))
		return json_integer_value(v) < 0 ? -1 :
		    (long)json_integer_value(v);
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	errno = 0;
	n = strtol(s, &end, 10);
	return errno != 0 || end == s || *end != '\0' || n < 0 ? -1 : n;
}

/* The status an "error" code stands for (RFC 6749 §5.2, RFC 8628 §3.5). */
static enum oauth_status
oauth_error_status(const char *code, int http_status)
{
	static const struct {
		const char		*code;
		enum oauth_status	 st;
	} map[] = {
		{ "invalid_grant", OAUTH_INVALID_GRANT },
		{ "invalid_client", OAUTH_INVALID_CLIENT },
		{ "unauthorized_client", OAUTH_INVALID_CLIENT },
		{ "authorization_pending", OAUTH_PENDING },
		{ "slow_down", OAUTH_SLOW_DOWN },
		{ "expired_token", OAUTH_EXPIRED },
		{ "access_denied", OAUTH_DENIED },
		{ "temporarily_unavailable", OAUTH_TEMP },
		{ "server_error", OAUTH_TEMP },
	};
	size_t i;

	for (i = 0; code != NULL && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].st;
	if (http_status >= 500 || http_status == 429 || http_status < 0)
		return OAUTH_TEMP;
	return OAUTH_REFUSED;
}

/* True for a token we can put on an SMTP line (RFC 6750 §2.1, loosely). */
static bool
oauth_token_chars_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	return n > 0;
}

/* Parses a JSON object answer; NULL (with why) when it is not one. */
static json_t *
oauth_json_load(int http_status, const char *body, size_t len, char *why,
    size_t sz)
{
	json_error_t jerr;
	json_t *root;

	pthread_once(&oauth_json_once, oauth_json_setup);
	if (len > OAUTH_ANSWER_MAX) {
		snprintf(why, sz, "HTTP %d: answer too large (%zu bytes)",
		    http_status, len);
		return NULL;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		/* jerr.text quotes no input beyond a token's position. */
		snprintf(why, sz, "HTTP %d: the answer is not a JSON object "
		    "(line %d column %d)", http_status, jerr.line,
		    jerr.column);
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Fills the error part of t; returns its status. */
static enum oauth_status
oauth_token_error(int http_status, json_t *root, struct oauth_token *t,
    char *why, size_t sz)
{
	const char *code = oauth_json_str(root, "error");
	enum oauth_status st;

	oauth_printable(t->error, sizeof(t->error), code);
	oauth_printable(t->desc, sizeof(t->desc),
	    oauth_json_str(root, "error_description"));
	st = oauth_error_status(code, http_status);
	if (code != NULL)
		snprintf(why, sz, "HTTP %d %s%s%s", http_status, t->error,
		    t->desc[0] ? ": " : "", t->desc);
	else
		snprintf(why, sz, "HTTP %d without an OAuth error code",
		    http_status);
	return st;
}

/* Fills the success part of t; OAUTH_TEMP when the answer is unusable. */
static enum oauth_status
oauth_token_ok(json_t *root, struct oauth_token *t, char *why, size_t sz)
{
	const char *at = oauth_json_str(root, "access_token");
	const char *rt = oauth_json_str(root, "refresh_token");
	const char *type = oauth_json_str(root, "token_type");

	if (at == NULL || !oauth_token_chars_ok(at, strlen(at)) ||
	    oauth_secret_set(&t->access, at, strlen(at)) < 0) {
		snprintf(why, sz, "HTTP 200 without a usable access_token");
		return OAUTH_TEMP;
	}
	if (type != NULL && strcasecmp(type, "Bearer") != 0) {
		oauth_secret_clear(&t->access);
		snprintf(why, sz, "token_type is not Bearer");
		return OAUTH_REFUSED;
	}
	if (rt != NULL && (!oauth_token_chars_ok(rt, strlen(rt)) ||
	    oauth_secret_set(&t->refresh, rt, strlen(rt)) < 0)) {
		oauth_secret_clear(&t->access);
		snprintf(why, sz, "HTTP 200 with an unusable refresh_token");
		return OAUTH_TEMP;
	}
	t->expires_in = oauth_json_long(root, "expires_in");
	if (t->expires_in < 0)
		t->expires_in = 0;
	snprintf(why, sz, "HTTP 200 access token for %lds%s", t->expires_in,
	    t->refresh.len > 0 ? ", new refresh token" : "");
	return OAUTH_OK;
}

enum oauth_status
oauth_parse_token(int http_status, const char *body, size_t len,
    struct oauth_token *t, char *why, size_t sz)
{
	enum oauth_status st;
	json_t *root;

	oauth_secret_clear(&t->access);
	oauth_secret_clear(&t->refresh);
	t->expires_in = 0;
	t->error[0] = t->desc[0] = '\0';
	if ((root = oauth_json_load(http_status, body, len, why, sz)) == NULL)
		return http_status >= 400 && http_status < 500 &&
		    http_status != 429 ? OAUTH_REFUSED : OAUTH_TEMP;
	if (http_status == 200 && json_object_get(root, "error") == NULL)
		st = oauth_token_ok(root, t, why, sz);
	else
		st = oauth_token_error(http_status, root, t, why, sz);
	json_decref(root);
	return st;
}

/* Fills d from a device authorisation answer. */
static enum oauth_status
oauth_device_ok(json_t *root, struct oauth_device *d, char *why, size_t sz)
{
	const char *dc = oauth_json_str(root, "device_code");
	const char *uc = oauth_json_str(root, "user_code");
	const char *uri = oauth_json_str(root, "verification_uri");

	if (uri == NULL)
		uri = oauth_json_str(root, "verification_url");
	if (dc == NULL || uc == NULL || uri == NULL ||
	    oauth_secret_set(&d->device_code, dc, strlen(dc)) < 0) {
		snprintf(why, sz, "the device authorisation answer lacks "
		    "device_code, user_code or verification_uri");
		return OAUTH_TEMP;
	}
	oauth_printable(d->user_code, sizeof(d->user_code), uc);
	oauth_printable(d->verification_uri, sizeof(d->verification_uri), uri);
	d->interval = oauth_json_long(root, "interval");
	if (d->interval <= 0 || d->interval > 60)
		d->interval = 5;	/* RFC 8628 §3.2 default */
	d->expires_in = oauth_json_long(root, "expires_in");
	if (d->expires_in <= 0)
		d->expires_in = 900;
	snprintf(why, sz, "device code valid for %lds", d->expires_in);
	return OAUTH_OK;
}

enum oauth_status
oauth_parse_device(int http_status, const char *body, size_t len,
    struct oauth_device *d, char *why, size_t sz)
{
	struct oauth_token t;
	enum oauth_status st;
	json_t *root;

	if ((root = oauth_json_load(http_status, body, len, why, sz)) == NULL)
		return OAUTH_TEMP;
	if (http_status == 200 && json_object_get(root, "error") == NULL)
		st = oauth_device_ok(root, d, why, sz);
	else {
		memset(&t, 0, sizeof(t));
		st = oauth_token_error(http_status, root, &t, why, sz);
	}
	json_decref(root);
	return st;
}

const char *
oauth_status_name(enum oauth_status st)
{
	static const char *const names[] = {
		"ok", "temporary", "invalid_grant", "invalid_client",
		"refused", "authorization_pending", "slow_down",
		"expired_token", "access_denied", "local",
	};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ?
	    names[st] : "?";
}

/* The row of the advice table (common/smtpproto_advice.c) for st. */
static enum smtpproto_local
oauth_advice_row(enum oauth_status st, const struct cfg_oauth *o)
{
	switch (st) {
	case OAUTH_INVALID_GRANT:
		return o != NULL && o->provider == CFG_OAUTH_GOOGLE ?
		    SMTPPROTO_LOCAL_OAUTH_GRANT_GOOGLE :
		    SMTPPROTO_LOCAL_OAUTH_GRANT;
	case OAUTH_INVALID_CLIENT:
		return SMTPPROTO_LOCAL_OAUTH_CLIENT;
	case OAUTH_REFUSED:
		return SMTPPROTO_LOCAL_OAUTH_REFUSED;
	case OAUTH_PENDING:
	case OAUTH_SLOW_DOWN:
		return SMTPPROTO_LOCAL_OAUTH_PENDING;
	case OAUTH_EXPIRED:
		return SMTPPROTO_LOCAL_OAUTH_EXPIRED;
	case OAUTH_DENIED:
		return SMTPPROTO_LOCAL_OAUTH_DENIED;
	case OAUTH_LOCAL:
		return SMTPPROTO_LOCAL_OAUTH_FILE;
	case OAUTH_OK:
	case OAUTH_TEMP:
		break;
	}
	return SMTPPROTO_LOCAL_OAUTH_TEMP;
}

const char *
oauth_advice(enum oauth_status st, const struct cfg_oauth *o)
{
	if (st == OAUTH_OK)
		return "nothing to do";
	return smtpproto_advice_local(oauth_advice_row(st, o))->fix;
}

/* ---- the refresh token file ---- */

int
oauth_read_file(const char *path, struct oauth_secret *s, char **err)
{
	size_t len;
	int r;

	r = cfg_read_secret_file(path, s->buf, s->cap + 1, &len, err);
	s->len = r == 0 ? len : 0;
	return r;
}

/* Writes all of buf to fd. */
static int
oauth_write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* fsyncs the directory that holds path. */
static int
oauth_sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, r = 0;

	if (copy == NULL)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	if (fsync(fd) == -1)
		r = -errno;
	close(fd);
	return r;
}

/* Fills, syncs and closes the temporary file. */
static int
oauth_fill_tmp(int fd, const char *tok, size_t len, uid_t uid, gid_t gid)
{
	int r = 0;

	if (fchmod(fd, 0600) == -1)
		r = -errno;
	if (r == 0 && (uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    fchown(fd, uid, gid) == -1)
		r = -errno;
	if (r == 0)
		r = oauth_write_all(fd, tok, len);
	if (r == 0)
		r = oauth_write_all(fd, "\n", 1);
	if (r == 0 && fsync(fd) == -1)
		r = -errno;
	if (close(fd) == -1 && r == 0)
		r = -errno;
	return r;
}

int
oauth_write_file(const char *path, const char *tok, size_t len, uid_t uid,
    gid_t gid, char **err)
{
	char tmp[PATH_MAX];
	const char *step = "create a temporary file beside it";
	int fd, r;

	*err = NULL;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >=
	    sizeof(tmp))
		return -ENAMETOOLONG;
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0)
		r = -errno;
	else if ((r = oauth_fill_tmp(fd, tok, len, uid, gid)) < 0)
		step = "write and sync the temporary file";
	else if (rename(tmp, path) == -1) {
		r = -errno;
		step = "rename the temporary file over it";
	} else if ((r = oauth_sync_dir(path)) < 0)
		step = "sync its directory";
	if (r < 0 && fd >= 0 && strcmp(step, "sync its directory") != 0)
		unlink(tmp);
	if (r < 0 && asprintf(err, "%s: cannot %s: %s", path, step,
	    strerror(-r)) == -1)
		*err = NULL;
	return r;
}
