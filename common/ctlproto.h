/*
 * ctlproto: the control protocol between the smartrelay tool and the daemon
 * (docs/cli.md, "The control socket").
 *
 * The daemon listens on the unix stream socket SPOOL/ctl.  A client sends
 * one request line and reads the reply; the daemon closes the connection
 * after it.  A request is "VERB[ ARG]...\n", at most CTLP_LINE_MAX bytes.
 * The reply is zero or more data lines, each "KEY VALUE", then one final
 * line: "OK", or "ERR CODE TEXT" where CODE is the sysexits(3) status the
 * tool exits with (64 usage, 65 bad id, 67 unknown id, 77 not allowed,
 * 75 temporary failure).
 *
 *   STATUS          status data lines (struct ctlp_status), OK
 *   FLUSH [ID...]   "flushed ID" or "unknown ID" per id; no id: all
 *   DELETE ID...    "deleted ID" or "unknown ID" per id
 *   MAILDROP        OK; the daemon scans the maildrop soon
 *   LIST            the queue without message contents, per message:
 *                     "msg ID ARRIVAL SIZE ATTEMPTS NEXT STATUS SENDER"
 *                     ("reason ID TEXT")
 *                     ("rcpt ID STATE ADDRESS")...
 *                   then OK (ctlp_list_format(); mailq for any user)
 *
 * FLUSH and DELETE are allowed to root and to the daemon's own user only
 * (SO_PEERCRED); the others to anyone who can connect.
 *
 * Error convention: 0 or a negative errno; nothing here logs.
 */
#ifndef SMARTRELAY_CTLPROTO_H
#define SMARTRELAY_CTLPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "queue.h"

#define CTLP_SOCKET_NAME	"ctl"		/* in the spool */
#define CTLP_LINE_MAX		65536		/* request and reply lines */
#define CTLP_MAX_ARGS		2048		/* ids in one request */
#define CTLP_TIMEOUT_MS		10000		/* client: whole exchange */

enum ctlp_verb {
	CTLP_STATUS,
	CTLP_FLUSH,
	CTLP_DELETE,
	CTLP_MAILDROP,
	CTLP_LIST,
};

/* What the scheduler knows about the smart host. */
enum ctlp_upstream {
	CTLP_UP_UNKNOWN,	/* nothing tried yet (or no scheduler) */
	CTLP_UP_OK,		/* the last session worked */
	CTLP_UP_RETRYING,	/* temporary failures, backing off */
	CTLP_UP_PAUSED_AUTH,	/* AUTH refused: paused for credentials */
	CTLP_UP_PAUSED_QUOTA,	/* sending limit: paused for quota */
};

/* The daemon's answer to STATUS; 0 and "" mean "unknown / none". */
struct ctlp_status {
	char version[32];
	long pid;
	time_t started;			/* when the daemon started */
	size_t queued;			/* messages in the queue */
	time_t oldest;			/* arrival of the oldest message */
	time_t last_delivery;		/* last successful delivery */
	enum ctlp_upstream upstream;
	time_t upstream_since;		/* when upstream entered its state */
	time_t next_attempt;		/* next upstream attempt planned */
	char reply[QUEUE_MAX_REPLY + 1];	/* last upstream reply */
	/* The key of the advice for it (common/smtpproto_advice.c), the
	 * client words it with its own configuration; "" when none. */
	char advice[64];
	/* With upstream.auth = "xoauth2" (docs/oauth.md); no secret here. */
	bool oauth;			/* the token lines are meaningful */
	time_t token_valid_until;	/* the cached access token's expiry */
	time_t token_last_refresh;	/* last token request that worked */
	unsigned token_requests;	/* token requests since start */
	char token_status[32];		/* oauth_status_name() of the last */
	char token_error[256];		/* the last failure, "" when none */
};

/* "ok", "retrying", "paused-credentials", "paused-quota", "unknown". */
const char *ctlp_upstream_name(enum ctlp_upstream u);

/*
 * Parses a request line (without '\n') in place: the verb, then the
 * arguments, each a valid queue id.  -EBADRQC: unknown verb, -EINVAL: a
 * bad id (*bad points at it), -E2BIG: more than maxargs ids.
 */
int ctlp_parse_request(char *line, enum ctlp_verb *verb, char **args,
    size_t maxargs, size_t *nargs, const char **bad);

/*
 * The LIST lines of one message (malloc'd, NUL-terminated; NULL without
 * memory).  STATUS is "active" (a relay session is sending it), "queued",
 * or "unread" (recovered at start, record not read yet: m is NULL and only
 * st is known).  SENDER and ADDRESS are xtext (RFC 3461 §4), "<>" for the
 * null sender; TEXT is the rest of the line (the last deferral reason,
 * line ends made spaces); STATE is pending, delivered or failed.
 */
char *ctlp_list_format(const struct queue_msg *m, const struct queue_stub *st,
    bool inflight, const char *reason);

/* Writes st as "key value\n" data lines; returns the length or -ENOSPC. */
int ctlp_status_format(const struct ctlp_status *st, char *buf, size_t sz);
/* Applies one data line of a STATUS reply; unknown keys are ignored. */
void ctlp_status_line(struct ctlp_status *st, const char *line);

/*
 * The address of SPOOL/ctl.  A spool path too long for sun_path is reached
 * through /proc/self/fd/N with an O_PATH descriptor of the spool, returned
 * in *dirfd (-1 otherwise), which the caller closes after bind/connect.
 */
int ctlp_sockaddr(const char *spool, struct sockaddr_un *sun,
    socklen_t *len, int *dirfd);

/*
 * Client.  ctlp_connect() returns -ENOENT or -ECONNREFUSED when no daemon
 * listens.  ctlp_call() sends req (without '\n') and reads the reply:
 * each data line goes to cb.  Returns 0 for OK, the CODE (> 0) of an ERR
 * reply with its text in *err (malloc'd), or a negative errno.
 */
int ctlp_connect(const char *spool, int *fdp);
int ctlp_call(int fd, const char *req, void (*cb)(void *, const char *),
    void *arg, char **err);

#endif
