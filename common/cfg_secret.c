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

#define PASSWORD_READ	1024		/* bytes of the file looked at */

void
cfg_secret_clear(struct cfg_secret *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s->buf, sizeof(s->buf));
	s->len = 0;
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

/* Keeps the first line of buf without any whitespace; never prints it. */
static const char *
cfg_clean_password(const char *buf, size_t len, struct cfg_secret *out)
{
	const char *nl = memchr(buf, '\n', len);
	size_t i, end = nl != NULL ? (size_t)(nl - buf) : len;

	if (nl == NULL && len + 1 >= PASSWORD_READ)
		return "the first line is too long";
	for (i = 0; i < end; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (isspace(c))
			continue;
		if (c < 0x20 || c == 0x7f)
			return "the password contains a control character";
		if (out->len + 1 >= sizeof(out->buf))
			return "the password is too long";
		out->buf[out->len++] = (char)c;
	}
	out->buf[out->len] = '\0';
	return out->len == 0 ? "the first line is empty" : NULL;
}

/* Checks and reads an open password file. */
static int
cfg_read_password_fd(int fd, const char *path, bool credential,
    struct cfg_secret *out, char **err)
{
	char buf[PASSWORD_READ];
	const char *why = NULL;
	struct stat st;
	ssize_t n;
	int r = -EINVAL;

	if (fstat(fd, &st) == -1) {
		r = -errno;
		why = strerror(errno);
	} else if (!S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (!credential && (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH |
	    S_IWOTH))) {
		r = -EPERM;
		if (asprintf(err, "%s: readable or writable by group or others "
		    "(mode %04o); the password file must be private: chmod "
		    "600 %s", path, (unsigned)(st.st_mode & 07777), path) == -1)
			*err = NULL;
		return r;
	} else if ((n = cfg_read_line(fd, buf, sizeof(buf))) < 0) {
		r = (int)n;
		why = strerror((int)-n);
	} else {
		why = cfg_clean_password(buf, (size_t)n, out);
		r = why == NULL ? 0 : -EINVAL;
	}
	explicit_bzero(buf, sizeof(buf));
	if (why != NULL && asprintf(err, "%s: %s", path, why) == -1)
		*err = NULL;
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
	r = cfg_read_password_fd(fd, path, *credential, out, err);
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

	if (cfg->upstream.username == NULL &&
	    cfg->upstream.password_file == NULL)
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

/* The CA file, when set, is a readable regular file. */
static int
cfg_check_ca_file(const struct cfg *cfg, struct cfg_errors *errs)
{
	const char *ca = cfg->upstream.ca_file;
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
		cfg_rt_error(errs, cfg, cfg->line.ca_file,
		    "upstream.ca_file: %s: %s", ca,
		    r == -EINVAL ? "not a regular file" : strerror(-r));
	return r;
}

int
cfg_check_runtime(const struct cfg *cfg, struct cfg_errors *errs)
{
	int r = 0;

	if (cfg_check_password(cfg, errs) < 0)
		r = -EINVAL;
	if (cfg_check_spool(cfg, errs) < 0)
		r = -EINVAL;
	if (cfg_check_ca_file(cfg, errs) < 0)
		r = -EINVAL;
	return r;
}
