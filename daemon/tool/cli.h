/*
 * cli: the smartrelay tool's shared pieces (docs/cli.md).
 *
 * smartrelay.c holds main() and the name the tool was called by; cli.c
 * the privilege model, error messages and the configuration; cli_queue.c
 * the queue commands (queue, flush, delete, status); cli_sendmail.c the
 * sendmail interface; cli_msg.c the message-header helpers of sendmail
 * -t; cli_doctor.c the upstream doctor (smartrelay test).
 *
 * Privileges.  The tool may be installed setgid to the submitters' group
 * (the group of SPOOL/maildrop).  main() moves that group out of the
 * effective ids at once; cli_priv_on() brings it back only around what
 * needs it (writing into the maildrop, reaching the control socket), and
 * cli_priv_drop() gives it up for good (a configuration file that is not
 * trusted).  Commands return a sysexits(3) status; failures print one
 * line "PROG: message" on stderr through cli_err().
 */
#ifndef SMARTRELAY_CLI_H
#define SMARTRELAY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "oauth.h"

struct cfg;

struct cli {
	const char *prog;		/* borrowed: the name for messages */
	const char *cfg_path;		/* borrowed */
	bool cfg_explicit;		/* given with -c / -C */
	struct cfg *cfg;		/* owned, after cli_load_cfg() */
	gid_t rgid;			/* the real group */
	gid_t priv_gid;			/* the setgid group; -1: none */
	bool verbose;
};

/* Prints "PROG: message" on stderr. */
void cli_err(const struct cli *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Sets up the process and the setgid group at start (cli.c). */
void cli_priv_init(struct cli *c);
/* Loads c->cfg_path (dropping the group first when it is untrusted). */
int cli_load_cfg(struct cli *c);
/* The setgid group in the effective ids, or out of them. */
void cli_priv_on(const struct cli *c);
void cli_priv_off(const struct cli *c);
/* True for root and for the owner of the spool (the daemon's user). */
bool cli_is_admin(const struct cli *c);

/* The commands; argv[0] is the command name. */
int cli_queue(struct cli *c, int argc, char **argv);
int cli_flush(struct cli *c, int argc, char **argv);
int cli_delete(struct cli *c, int argc, char **argv);
int cli_status(struct cli *c, int argc, char **argv);
int cli_sendmail(struct cli *c, int argc, char **argv);
/* newaliases: sendmail -bi. */
int cli_newaliases(struct cli *c, int argc, char **argv);
/* The upstream doctor, cli_doctor.c: 0, 1 (a step failed) or sysexits. */
int cli_doctor(struct cli *c, int argc, char **argv);
int cli_oauth(struct cli *c, int argc, char **argv);

/*
 * cli_oauth.c: one token request with the configured grant (the doctor's
 * token step); a rotated refresh token is stored.  OAUTH_OK fills access
 * (initialised by the caller) and *expires_in; else why[sz] says why.
 */
enum oauth_status cli_oauth_token(const struct cfg *cfg,
    struct oauth_secret *access, long *expires_in, bool *rotated,
    char *why, size_t sz);

/* Listing, as mailq and sendmail -bp do it (json: the --json schema). */
int cli_list(struct cli *c, bool json);
/* Flush (ids NULL: everything), as smartrelay flush and sendmail -q. */
int cli_do_flush(struct cli *c, char **ids, size_t n);

/* Announces a maildrop submission to the daemon; false if it is down. */
bool cli_kick(const struct cli *c);
/* True when the daemon answers on its control socket. */
bool cli_daemon_up(const struct cli *c);

#endif
