/*
 * cfg: the configuration (docs/configuration.md), loaded with libconfig.
 *
 * cfg_load() reads and validates the whole file: every key of the schema with
 * its default, durations ("90s", "5m", "1h", "5d" or an integer of seconds),
 * sizes ("25M" or an integer of bytes), range checks, and errors for unknown
 * keys and wrong types.  Each problem is reported as "file:line: message" in
 * struct cfg_errors, so --check-config can print them all at once.
 *
 * Error convention: functions return 0 or a negative errno; human messages go
 * to struct cfg_errors (or char **err).  Nothing here logs.
 */
#ifndef SMARTRELAY_CFG_H
#define SMARTRELAY_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Bytes of an OAuth secret (client secret, refresh or access token). */
#define CFG_OAUTH_SECRET_MAX	16384

/* The systemd credential (LoadCredential=) preferred to password_file. */
#define CFG_CREDENTIAL_NAME	"upstream-password"

enum cfg_tls {
	CFG_TLS_STARTTLS,
	CFG_TLS_IMPLICIT,
	CFG_TLS_NONE,		/* only with insecure_plaintext on loopback */
};

/* How the relay logs in upstream (docs/configuration.md, docs/oauth.md). */
enum cfg_auth {
	CFG_AUTH_PASSWORD,	/* AUTH PLAIN / LOGIN with password_file */
	CFG_AUTH_XOAUTH2,	/* OAuth 2.0 access tokens: XOAUTH2, OAUTHBEARER */
};

enum cfg_oauth_provider {
	CFG_OAUTH_GOOGLE,
	CFG_OAUTH_MICROSOFT,
	CFG_OAUTH_CUSTOM,	/* token_url required */
};

enum cfg_oauth_grant {
	CFG_GRANT_REFRESH_TOKEN,	/* a person consented once */
	CFG_GRANT_CLIENT_CREDENTIALS,	/* Microsoft 365 app-only */
};

/*
 * upstream.oauth.  After cfg_load() token_url is always set, and scope
 * unless the provider is "custom" and none was given: the provider's
 * defaults are filled in.  No secret is kept here: the client secret and
 * the refresh token are read from their files when needed.
 */
struct cfg_oauth {
	enum cfg_oauth_provider provider;
	enum cfg_oauth_grant grant;
	char *tenant;			/* owned: Microsoft tenant */
	char *client_id;		/* owned */
	char *client_secret_file;	/* owned, NULL: public client */
	char *refresh_token_file;	/* owned, NULL: client_credentials */
	char *token_url;		/* owned: https:// */
	char *scope;			/* owned, NULL: none sent */
	char *ca_file;			/* owned, NULL: system trust store */
};

/* One network of `allow`, e.g. 127.0.0.0/8 or ::1/128. */
struct cfg_net {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network address, network order */
	unsigned prefix;		/* prefix length in bits */
};

struct cfg_alias {
	char *name;			/* owned: local name, e.g. "root" */
	char *target;			/* owned: full address */
};

struct cfg_upstream {
	char *host;			/* owned */
	unsigned port;
	enum cfg_tls tls;
	bool insecure_plaintext;
	char *ca_file;			/* owned, NULL: system trust store */
	char *username;			/* owned, NULL: no AUTH */
	char *password_file;		/* owned, NULL: none */
	enum cfg_auth auth;
	struct cfg_oauth oauth;		/* with auth = CFG_AUTH_XOAUTH2 */
	unsigned connections;
	unsigned messages_per_connection;
	unsigned timeout;		/* seconds */
};

struct cfg_retry {
	unsigned initial;		/* seconds */
	unsigned max;			/* seconds */
	unsigned give_up_after;		/* seconds */
};

struct cfg_limits {
	uint64_t message_size;		/* bytes */
	unsigned recipients;
	unsigned clients;
	unsigned idle_timeout;		/* seconds */
};

struct cfg_rewrite {
	char *envelope_from;		/* owned, NULL: keep the sender */
	char *header_from;		/* owned, NULL: keep the From: address */
	char *local_domain;		/* owned, NULL: none */
	struct cfg_alias *aliases;	/* owned array */
	size_t naliases;
};

/*
 * Source lines of the keys cfg_check_runtime() reports on (0: not in the
 * file, the default applies), so that its messages point at the key.
 */
struct cfg_lines {
	unsigned spool;
	unsigned ca_file;
	unsigned username;
	unsigned password_file;
	unsigned auth;
	unsigned client_secret_file;
	unsigned refresh_token_file;
	unsigned oauth_ca_file;
};

struct cfg {
	char *path;			/* owned: the file as passed to cfg_load */
	char **listen;			/* owned array of owned "host:port" */
	size_t nlisten;
	char *hostname;			/* owned: EHLO name, default the FQDN */
	char *spool;			/* owned */
	struct cfg_net *allow;		/* owned array */
	size_t nallow;
	struct cfg_upstream upstream;
	struct cfg_retry retry;
	struct cfg_limits limits;
	struct cfg_rewrite rewrite;
	char *bounces_to;		/* owned, NULL: none */
	unsigned delay_warning;		/* seconds, 0: no "delayed" notices */
	struct cfg_lines line;
};

/* Problems found while loading, each "file:line: message". */
struct cfg_errors {
	char **msgs;			/* owned array of owned strings */
	size_t n;
};

/*
 * A password held so that it cannot be passed to a printf-style function by
 * mistake (a struct does not match %s).  Wiped by cfg_secret_clear().
 */
struct cfg_secret {
	char buf[512];
	size_t len;
	bool inner_spaces;		/* whitespace inside was removed */
};

/*
 * Loads and validates path; on failure *cfgp is NULL and errs says why.
 * Messages are appended to errs (NULL: not wanted), which the caller clears.
 * Returns -EINVAL for an invalid file, -errno when it cannot be read,
 * -ENOMEM.  Relative paths in the file are made absolute against the file's
 * directory.
 */
int cfg_load(const char *path, struct cfg **cfgp, struct cfg_errors *errs);
/*
 * The extra checks of --check-config that touch the system: the password
 * file (or credential) is readable, not readable by group/others, and not
 * empty; the spool exists or can be created.
 */
int cfg_check_runtime(const struct cfg *cfg, struct cfg_errors *errs);
void cfg_free(struct cfg *cfg);
/*
 * Calls fn with the dotted name of every key the loader accepts
 * ("upstream.oauth.client_id"), in the order of its tables; a group of keys
 * is not named itself, its keys are.  The manual's test (tests/man) holds
 * smartrelay.conf(5) to this list.  Returns 0 or -ENOMEM.
 */
int cfg_list_keys(void (*fn)(const char *key, void *arg), void *arg);
void cfg_errors_clear(struct cfg_errors *errs);
/* Appends one formatted problem to errs (which may be NULL). */
int cfg_errors_add(struct cfg_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Reads the upstream password: $CREDENTIALS_DIRECTORY/upstream-password when
 * it exists, else upstream.password_file.  Takes the first line, strips
 * surrounding whitespace and the spaces inside (Google shows App Passwords as
 * "abcd efgh ijkl mnop"), which out->inner_spaces tells.  Refuses a file
 * readable by group or others.
 */
int cfg_read_password(const struct cfg *cfg, struct cfg_secret *out,
    char **err);
void cfg_secret_clear(struct cfg_secret *s);

/*
 * Reads a secret kept in a file by the rules of password_file: a regular
 * file not readable or writable by group or others, its first line, the
 * whitespace in it removed.  Into buf (cap bytes, NUL-terminated), *len
 * set.  -EPERM for a file others may read, -EINVAL (with *err) for an
 * empty or over-long first line, -errno when it cannot be read.
 */
int cfg_read_secret_file(const char *path, char *buf, size_t cap,
    size_t *len, char **err);

/* "starttls", "implicit" or "none", as written in the file. */
const char *cfg_tls_name(enum cfg_tls tls);
/* "password" / "xoauth2"; "google" / "microsoft" / "custom";
 * "refresh_token" / "client_credentials". */
const char *cfg_auth_name(enum cfg_auth a);
const char *cfg_provider_name(enum cfg_oauth_provider p);
const char *cfg_grant_name(enum cfg_oauth_grant g);

/* "90s", "5m", "1h", "5d", "2w" or digits (seconds). */
int cfg_parse_duration(const char *s, uint64_t *secs);
/* "512", "64K", "25M", "1G" (powers of 1024; a trailing "B" is allowed). */
int cfg_parse_size(const char *s, uint64_t *bytes);
/* "127.0.0.0/8", "::1/128", a bare address means a host prefix. */
int cfg_parse_net(const char *s, struct cfg_net *net);
/* True when the sockaddr is inside one of the networks. */
bool cfg_net_match(const struct cfg_net *nets, size_t n,
    const struct sockaddr *sa);
/* Splits "127.0.0.1:25", "[::1]:25", "*:25" into host and port. */
int cfg_parse_listen(const char *s, char *host, size_t hostsz,
    unsigned *port);

#endif
