/*
 * smartrelay: the administration and submission tool (docs/cli.md).
 * Invoked as "sendmail", "mailq" or "newaliases" it behaves like those
 * programs.
 *
 * This file is the entry point: it works out the name it was called by,
 * sets up the privilege model of cli.h (the tool may be setgid to the
 * maildrop's group), and dispatches to the commands in cli_queue.c,
 * cli_sendmail.c and cli_doctor.c.
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
	    "  oauth               sign in once for auth = \"xoauth2\"\n"
	    "  sendmail ARGS       the sendmail interface (also: sendmail)\n"
	    "  -c FILE             configuration (default %s)\n",
	    SMARTRELAY_DEFAULT_CONFIG);
}

static const struct {
	const char *name;
	int (*run)(struct cli *, int, char **);
} cli_commands[] = {
	{ "queue", cli_queue },
	{ "flush", cli_flush },
	{ "delete", cli_delete },
	{ "status", cli_status },
	{ "test", cli_doctor },
	{ "oauth", cli_oauth },
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
	} else if (strcmp(name, "newaliases") == 0) {
		c.prog = "newaliases";
		r = cli_newaliases(&c, argc, argv);
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
