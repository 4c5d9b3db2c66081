/*
 * smartrelay: the administration and submission tool (SPEC §2,
 * docs/cli.md).  Invoked as "sendmail" or "mailq" it behaves like those
 * programs.
 *
 * This file is the entry point: it works out the name it was called by,
 * sets up the privilege model of cli.h (the tool may be setgid to the
 * maildrop's group), loads the configuration, and dispatches to the
 * commands in cli_queue.c, cli_sendmail.c and cli_test.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
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
#include "log.h"

static void
usage(FILE *f)
{
	fprintf(f, "usage: smartrelay [-c FILE] COMMAND [ARGS]\n"
	    "  queue [--json]      list the queue (also: mailq)\n"
	    "  flush [ID...]       retry now, all or the named messages\n"
	    "  delete ID...        remove messages from the queue\n"
	    "  status [--json]     daemon, queue and upstream state\n"
	    "  test [--to ADDR]    diagnose the upstream settings\n"
	    "  sendmail ARGS       the sendmail interface (also: sendmail)\n"
	    "  -c FILE             configuration (default %s)\n",
	    SMARTRELAY_DEFAULT_CONFIG);
}

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
static void
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

static const struct {
	const char *name;
	int (*run)(struct cli *, int, char **);
} cli_commands[] = {
	{ "queue", cli_queue },
	{ "flush", cli_flush },
	{ "delete", cli_delete },
	{ "status", cli_status },
	{ "test", cli_test },
	{ "sendmail", cli_sendmail },
};

/* "smartrelay [-c FILE] COMMAND ...". */
static int
cli_main(struct cli *c, int argc, char **argv)
{
	int i = 1;
	size_t k;

	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-V") == 0 ||
		    strcmp(argv[i], "--version") == 0) {
			printf("smartrelay %s\n", SMARTRELAY_VERSION);
			return 0;
		}
		if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			c->cfg_path = argv[i + 1];
			c->cfg_explicit = true;
			i += 2;
		} else if (strncmp(argv[i], "-c", 2) == 0 && argv[i][2]) {
			c->cfg_path = argv[i] + 2;
			c->cfg_explicit = true;
			i++;
		} else {
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (i == argc) {
		usage(stderr);
		return EX_USAGE;
	}
	for (k = 0; k < sizeof(cli_commands) / sizeof(cli_commands[0]); k++)
		if (strcmp(argv[i], cli_commands[k].name) == 0)
			return cli_commands[k].run(c, argc - i, argv + i);
	cli_err(c, "unknown command \"%s\" (try --help)", argv[i]);
	return EX_USAGE;
}

/* mailq [-C FILE] [-v] [--json]: sendmail -bp. */
static int
cli_mailq(struct cli *c, int argc, char **argv)
{
	bool json = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "-v") == 0)
			c->verbose = true;
		else if (strcmp(argv[i], "-C") == 0 && i + 1 < argc) {
			c->cfg_path = argv[++i];
			c->cfg_explicit = true;
		} else if (strncmp(argv[i], "-C", 2) == 0 && argv[i][2]) {
			c->cfg_path = argv[i] + 2;
			c->cfg_explicit = true;
		} else {
			cli_err(c, "usage: mailq [-C FILE] [--json]");
			return EX_USAGE;
		}
	}
	if ((r = cli_load_cfg(c)) != 0)
		return r;
	return cli_list(c, json);
}

int
main(int argc, char *argv[])
{
	struct cli c = { 0 };
	const char *name, *env;
	int r;

	cli_priv_init(&c);
	log_init("smartrelay", 0);
	name = argc > 0 ? strrchr(argv[0], '/') : NULL;
	name = name != NULL ? name + 1 : argc > 0 ? argv[0] : "smartrelay";
	c.cfg_path = SMARTRELAY_DEFAULT_CONFIG;
	/*
	 * Like Postfix's MAIL_CONFIG, for programs that run "sendmail" with
	 * no way to add -C: treated exactly like -C (cli_load_cfg()).
	 */
	if ((env = getenv("SMARTRELAY_CONFIG")) != NULL && *env != '\0') {
		c.cfg_path = env;
		c.cfg_explicit = true;
	}
	if (strcmp(name, "sendmail") == 0) {
		c.prog = "sendmail";
		r = cli_sendmail(&c, argc, argv);
	} else if (strcmp(name, "mailq") == 0) {
		c.prog = "mailq";
		r = cli_mailq(&c, argc, argv);
	} else {
		c.prog = "smartrelay";
		r = cli_main(&c, argc, argv);
	}
	cfg_free(c.cfg);
	if (fflush(stdout) == EOF && r == 0) {
		cli_err(&c, "write error: %s", strerror(errno));
		r = EX_IOERR;
	}
	return r;
}
