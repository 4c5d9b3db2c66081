/*
 * cfg_secret: the upstream password (cfg_read_password) and the checks of
 * --check-config that touch the system (cfg_check_runtime).  See cfg.h.
 */
#include "cfg.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


void
cfg_secret_clear(struct cfg_secret *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s->buf, sizeof(s->buf));
	s->len = 0;
	s->inner_spaces = false;
}

/* Reads up to the first newline (or sz - 1 bytes) of fd into buf. */
static ssize_t
cfg_read_line(int fd, char *buf, size_t sz)
{
	size_t len = 0;
	ssize_t n;

	while (len + 1 < sz && memchr(buf, '\n', len) == NULL) {
		n = read(fd, buf + len, sz - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

/*
 * Keeps the first line of buf (len bytes read, cap the buffer) without any
 * whitespace, in place; never prints it.  *inner tells whether whitespace
 * stood between other characters (Google's "abcd efgh ijkl mnop").
 */
static const char *
cfg_clean_secret(char *buf, size_t len, size_t cap, size_t *outlen,
    bool *inner)
{
	const char *nl = memchr(buf, '\n', len);
	size_t i, end = nl != NULL ? (size_t)(nl - buf) : len, n = 0;
	const char *why = NULL;
	bool gap = false;

	*inner = false;
	if (nl == NULL && len + 1 >= cap)
		why = "the first line is too long";
	for (i = 0; why == NULL && i < end; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (isspace(c)) {
			gap = n > 0;
			continue;
		}
		*inner |= gap;
		gap = false;
		if (c < 0x20 || c == 0x7f)
			why = "the first line contains a control character";
		else
			buf[n++] = (char)c;
	}
	explicit_bzero(buf + n, len - n);
	buf[n] = '\0';
	*outlen = n;
	if (why == NULL && n == 0)
		why = "the first line is empty";
	return why;
}

/* Checks and reads an open secret file into buf (cap bytes); *inner as
 * cfg_clean_secret() says. */
static int
cfg_read_secret_fd(int fd, const char *path, bool credential, char *buf,
    size_t cap, size_t *outlen, bool *inner, char **err)
{
	const char *why = NULL;
	struct stat st;
	ssize_t n;
	int r = -EINVAL;

	*outlen = 0;
	buf[0] = '\0';
	if (fstat(fd, &st) == -1) {
		r = -errno;
		why = strerror(errno);
	} else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (!credential && (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH |
	    S_IWOTH))) {
		r = -EPERM;
		if (asprintf(err, "%s: readable or writable by group or others "
		    "(mode %04o); the file must be private: chmod "
		    "600 %s", path, (unsigned)(st.st_mode & 07777), path) == -1)
			*err = NULL;
		return r;
	} else if ((n = cfg_read_line(fd, buf, cap)) < 0) {
		r = (int)n;
		why = strerror((int)-n);
	} else {
		why = cfg_clean_secret(buf, (size_t)n, cap, outlen, inner);
		r = why == NULL ? 0 : -EINVAL;
	}
	if (why != NULL && asprintf(err, "%s: %s", path, why) == -1)
		*err = NULL;
	if (r < 0) {
		explicit_bzero(buf, cap);
		*outlen = 0;
	}
	return r;
}

int
cfg_read_secret_file(const char *path, char *buf, size_t cap, size_t *len,
    char **err)
{
	bool inner;
	int fd, r;

	*err = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) <
	    0) {
		r = -errno;
		if (asprintf(err, "%s: %s", path, strerror(-r)) == -1)
			*err = NULL;
		return r;
	}
	r = cfg_read_secret_fd(fd, path, false, buf, cap, len, &inner, err);
	close(fd);
	return r;
}

/* Opens the credential when there is one, else the password file. */
static int
cfg_open_password(const struct cfg *cfg, char **path, bool *credential)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	int fd;

	*credential = false;
	if (dir != NULL && dir[0] != '\0') {
		if (asprintf(path, "%s/%s", dir, CFG_CREDENTIAL_NAME) == -1) {
			*path = NULL;
			return -ENOMEM;
		}
		*credential = true;
		fd = open(*path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
		if (fd >= 0 || errno != ENOENT)
			return fd >= 0 ? fd : -errno;
		*credential = false;
		free(*path);
	}
	*path = NULL;
	if (cfg->upstream.password_file == NULL)
		return -ENOENT;
	if ((*path = strdup(cfg->upstream.password_file)) == NULL)
		return -ENOMEM;
	fd = open(*path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	return fd >= 0 ? fd : -errno;
}

/* cfg_read_password(), also telling where the password came from. */
static int
cfg_read_password_from(const struct cfg *cfg, struct cfg_secret *out,
    char **err, bool *credential)
{
	char *path = NULL;
	int fd, r = 0;

	*err = NULL;
	out->len = 0;
	out->inner_spaces = false;
	out->buf[0] = '\0';
	fd = cfg_open_password(cfg, &path, credential);
	if (fd == -ENOENT && path == NULL)
		r = asprintf(err, "no password: upstream.password_file is not "
		    "set and $CREDENTIALS_DIRECTORY/" CFG_CREDENTIAL_NAME
		    " does not exist");
	else if (fd < 0 && path != NULL)
		r = asprintf(err, "%s: %s", path, strerror(-fd));
	if (fd < 0) {
		if (r == -1)
			*err = NULL;
		free(path);
		return fd;
	}
	r = cfg_read_secret_fd(fd, path, *credential, out->buf,
	    sizeof(out->buf), &out->len, &out->inner_spaces, err);
	close(fd);
	free(path);
	if (r < 0)
		cfg_secret_clear(out);
	return r;
}

int
cfg_read_password(const struct cfg *cfg, struct cfg_secret *out, char **err)
{
	bool credential;

	return cfg_read_password_from(cfg, out, err, &credential);
}

/*
 * Checks that touch the system.
 */

/* Reports a runtime problem at a key's line, or at the file. */
static void __attribute__((format(printf, 4, 5)))
cfg_rt_error(struct cfg_errors *errs, const struct cfg *cfg, unsigned line,
    const char *fmt, ...)
{
	const char *path = cfg->path != NULL ? cfg->path : "(config)";
	char *msg;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r == -1)
		msg = NULL;
	if (line > 0)
		cfg_errors_add(errs, "%s:%u: %s", path, line,
		    msg ? msg : "out of memory");
	else
		cfg_errors_add(errs, "%s: %s", path,
		    msg ? msg : "out of memory");
	free(msg);
}

/* The password can be read and passes the rules. */
static int
cfg_check_password(const struct cfg *cfg, struct cfg_errors *errs)
{
	struct cfg_secret secret;
	const char *key;
	bool credential;
	char *err = NULL;
	unsigned line;
	int r;

	if (cfg->upstream.auth != CFG_AUTH_PASSWORD ||
	    (cfg->upstream.username == NULL &&
	    cfg->upstream.password_file == NULL))
		return 0;
	r = cfg_read_password_from(cfg, &secret, &err, &credential);
	cfg_secret_clear(&secret);
	if (r == 0)
		return 0;
	if (credential) {
		key = "credential";
		line = 0;
	} else if (cfg->upstream.password_file != NULL) {
		key = "upstream.password_file";
		line = cfg->line.password_file;
	} else {
		key = "upstream.username";
		line = cfg->line.username;
	}
	cfg_rt_error(errs, cfg, line, "%s: %s", key, err ? err : strerror(-r));
	free(err);
	return -EINVAL;
}

/* The spool is a writable directory, or its parent lets us create it. */
static int
cfg_check_spool(const struct cfg *cfg, struct cfg_errors *errs)
{
	const char *spool = cfg->spool;
	char *copy, *parent;
	struct stat st;
	int r = 0;

	if (stat(spool, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			r = -ENOTDIR;
		else if (faccessat(AT_FDCWD, spool, W_OK | X_OK, AT_EACCESS))
			r = -errno;
		if (r < 0)
			cfg_rt_error(errs, cfg, cfg->line.spool, "spool: %s: %s",
			    spool, strerror(-r));
		return r;
	}
	if (errno != ENOENT) {
		r = -errno;
		cfg_rt_error(errs, cfg, cfg->line.spool, "spool: %s: %s",
		    spool, strerror(-r));
		return r;
	}
	if ((copy = strdup(spool)) == NULL)
		return -ENOMEM;
	parent = dirname(copy);
	if (faccessat(AT_FDCWD, parent, W_OK | X_OK, AT_EACCESS) == -1) {
		r = -errno;
		cfg_rt_error(errs, cfg, cfg->line.spool, "spool: %s does not "
		    "exist and cannot be created in %s: %s", spool, parent,
		    strerror(-r));
	}
	free(copy);
	return r;
}

/* A CA file, when set, is a readable regular file. */
static int
cfg_check_ca_path(const struct cfg *cfg, struct cfg_errors *errs,
    const char *key, const char *ca, unsigned line)
{
	struct stat st;
	int fd, r = 0;

	if (ca == NULL)
		return 0;
	if ((fd = open(ca, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
		r = -errno;
	else if (fstat(fd, &st) == -1)
		r = -errno;
	else if (!S_ISREG(st.st_mode))
		r = -EINVAL;
	if (fd >= 0)
		close(fd);
	if (r < 0)
		cfg_rt_error(errs, cfg, line, "%s: %s: %s", key, ca,
		    r == -EINVAL ? "not a regular file" : strerror(-r));
	return r;
}

/* One OAuth secret file can be read and passes the rules. */
static int
cfg_check_oauth_file(const struct cfg *cfg, struct cfg_errors *errs,
    const char *key, const char *path, unsigned line)
{
	char buf[CFG_OAUTH_SECRET_MAX], *err = NULL;
	size_t len;
	int r;

	r = cfg_read_secret_file(path, buf, sizeof(buf), &len, &err);
	explicit_bzero(buf, sizeof(buf));
	if (r == -ENOENT && strcmp(key, "oauth.refresh_token_file") == 0)
		cfg_rt_error(errs, cfg, line, "%s: %s does not exist yet: run "
		    "`smartrelay oauth` to sign in once and write it", key,
		    path);
	else if (r < 0)
		cfg_rt_error(errs, cfg, line, "%s: %s", key,
		    err ? err : strerror(-r));
	free(err);
	return r;
}

/* The directory of the refresh token lets the daemon replace the file. */
static int
cfg_check_token_dir(const struct cfg *cfg, struct cfg_errors *errs)
{
	const char *path = cfg->upstream.oauth.refresh_token_file;
	char *copy;
	int r = 0;

	if ((copy = strdup(path)) == NULL)
		return -ENOMEM;
	if (faccessat(AT_FDCWD, dirname(copy), W_OK | X_OK, AT_EACCESS)) {
		r = -errno;
		cfg_rt_error(errs, cfg, cfg->line.refresh_token_file,
		    "oauth.refresh_token_file: cannot create files in %s (%s); "
		    "the daemon replaces the file when the provider sends a "
		    "new refresh token", copy, strerror(-r));
	}
	free(copy);
	return r;
}

/* The client secret, the refresh token and the token endpoint's CA. */
static int
cfg_check_oauth_files(const struct cfg *cfg, struct cfg_errors *errs)
{
	const struct cfg_oauth *o = &cfg->upstream.oauth;
	int r = 0;

	if (cfg->upstream.auth != CFG_AUTH_XOAUTH2)
		return 0;
	if (o->client_secret_file != NULL && cfg_check_oauth_file(cfg, errs,
	    "oauth.client_secret_file", o->client_secret_file,
	    cfg->line.client_secret_file) < 0)
		r = -EINVAL;
	if (o->refresh_token_file != NULL && cfg_check_oauth_file(cfg, errs,
	    "oauth.refresh_token_file", o->refresh_token_file,
	    cfg->line.refresh_token_file) < 0)
		r = -EINVAL;
	if (o->refresh_token_file != NULL && cfg_check_token_dir(cfg, errs) <
	    0)
		r = -EINVAL;
	if (cfg_check_ca_path(cfg, errs, "oauth.ca_file", o->ca_file,
	    cfg->line.oauth_ca_file) < 0)
		r = -EINVAL;
	return r;
}

int
cfg_check_runtime(const struct cfg *cfg, struct cfg_errors *errs)
{
	int r = 0;

	if (cfg_check_oauth_files(cfg, errs) < 0)
		r = -EINVAL;
	if (cfg_check_password(cfg, errs) < 0)
		r = -EINVAL;
	if (cfg_check_spool(cfg, errs) < 0)
		r = -EINVAL;
	if (cfg_check_ca_path(cfg, errs, "upstream.ca_file",
	    cfg->upstream.ca_file, cfg->line.ca_file) < 0)
		r = -EINVAL;
	return r;
}
