/*
 * cli: the pieces every command of the smartrelay tool shares (cli.h):
 * error messages, the privilege model of a setgid program, and loading the
 * configuration with the caller's rights when the file is not the
 * administrator's.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "build-config.h"
#include "cfg.h"
#include "cli.h"

void
cli_err(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
cli_priv_on(const struct cli *c)
{
	if (c->priv_gid != (gid_t)-1 &&
	    setresgid((gid_t)-1, c->priv_gid, (gid_t)-1) == -1)
		abort();
}

void
cli_priv_off(const struct cli *c)
{
	if (c->priv_gid != (gid_t)-1 &&
	    setresgid((gid_t)-1, c->rgid, (gid_t)-1) == -1)
		abort();
}

/* Gives up the setgid group for good. */
static void
cli_priv_drop(struct cli *c)
{
	if (c->priv_gid == (gid_t)-1)
		return;
	if (setresgid(c->rgid, c->rgid, c->rgid) == -1)
		abort();
	c->priv_gid = (gid_t)-1;
}

/*
 * Process hygiene for a setgid program: fds 0-2 exist (so nothing we open
 * lands on them), our own umask, no core dumps, write errors instead of
 * SIGXFSZ/SIGPIPE, and the setgid group moved out of the effective ids.
 * The group of root is never used: a setgid-root install is a mistake.
 */
void
cli_priv_init(struct cli *c)
{
	gid_t r, e, s;
	int fd;

	while ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) != -1 && fd < 3)
		fcntl(fd, F_SETFD, 0);
	if (fd > 2)
		close(fd);
	umask(077);
	signal(SIGXFSZ, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	c->priv_gid = (gid_t)-1;
	if (getresgid(&r, &e, &s) == -1)
		abort();
	c->rgid = r;
	if (e == r)
		return;
	c->priv_gid = e;
	if (e == 0 || getuid() == 0)
		cli_priv_drop(c);
	else
		cli_priv_off(c);
}

/*
 * True when path and every directory above it belong to root and only
 * root can change them (a sticky directory is fine: its root-owned entries
 * cannot be replaced by others), so that its content is the
 * administrator's.  real (PATH_MAX bytes) receives the resolved path: the
 * one to open, since path may be a link its owner can change meanwhile.
 */
static bool
cli_path_trusted(const char *path, char *real)
{
	char *p;
	struct stat st;
	bool last = false;

	if (realpath(path, real) == NULL)
		return false;
	p = real;
	while (!last) {
		p = strchr(p + 1, '/');
		if (p == NULL)
			last = true;
		else
			*p = '\0';
		if (lstat(*real == '\0' ? "/" : real, &st) == -1 ||
		    st.st_uid != 0)
			return false;
		if (last ? !S_ISREG(st.st_mode) || (st.st_mode & 022) :
		    (st.st_mode & 022) && !(st.st_mode & S_ISVTX))
			return false;
		if (p != NULL)
			*p = '/';
	}
	return lstat("/", &st) == 0 && st.st_uid == 0 &&
	    !(st.st_mode & 022);
}

int
cli_load_cfg(struct cli *c)
{
	struct cfg_errors errs = { 0 };
	char real[PATH_MAX];
	int r;

	if (c->cfg != NULL)
		return 0;
	/*
	 * Like Postfix: another configuration than the default one keeps the
	 * group only when the administrator owns it; it is read with the
	 * caller's own rights in any case.
	 */
	if (c->cfg_explicit && strcmp(c->cfg_path,
	    SMARTRELAY_DEFAULT_CONFIG) != 0) {
		if (cli_path_trusted(c->cfg_path, real))
			r = cfg_load(real, &c->cfg, &errs);
		else {
			cli_priv_drop(c);
			r = cfg_load(c->cfg_path, &c->cfg, &errs);
		}
	} else {
		cli_priv_on(c);
		r = cfg_load(c->cfg_path, &c->cfg, &errs);
		cli_priv_off(c);
	}
	if (r < 0) {
		if (errs.n > 0)
			cli_err(c, "%s%s", errs.msgs[0], errs.n > 1 ?
			    " (and more: smartrelayd --check-config)" : "");
		else
			cli_err(c, "%s: %s", c->cfg_path, strerror(-r));
		cfg_errors_clear(&errs);
		return EX_CONFIG;
	}
	cfg_errors_clear(&errs);
	return 0;
}

bool
cli_is_admin(const struct cli *c)
{
	struct stat st;
	uid_t uid = getuid();

	if (uid == 0)
		return true;
	return c->cfg != NULL && stat(c->cfg->spool, &st) == 0 &&
	    st.st_uid == uid;
}
