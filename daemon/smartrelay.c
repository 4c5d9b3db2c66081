/*
 * smartrelay: the administration and submission tool.  Invoked as
 * "sendmail" or "mailq" it behaves like those programs (SPEC §2).
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "build-config.h"

static void
usage(FILE *f)
{
	fprintf(f, "usage: smartrelay [-c FILE] COMMAND [ARGS]\n"
	    "commands: queue [--json], flush [ID...], delete ID..., "
	    "status [--json], test [--to ADDR], sendmail ARGS\n");
}

int
main(int argc, char *argv[])
{
	const char *name = basename(argv[0]);

	if (argc > 1 && (strcmp(argv[1], "-V") == 0 ||
	    strcmp(argv[1], "--version") == 0)) {
		printf("smartrelay %s\n", SMARTRELAY_VERSION);
		return 0;
	}
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "--help") == 0)) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "%s: not available in this version yet\n", name);
	return EX_UNAVAILABLE;
}
