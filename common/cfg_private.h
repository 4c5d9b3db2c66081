/*
 * cfg_private.h: what cfg.c shares with the files that load one part of
 * the schema (cfg_oauth.c) and with nobody else.  The walk over a group
 * (cfg_walk_group), the error reporting at a setting's "file:line"
 * (cfg_error) and the string loader are cfg.c's; a part file brings its
 * key table and its rules between keys.
 */
#ifndef SMARTRELAY_CFG_PRIVATE_H
#define SMARTRELAY_CFG_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include "cfg.h"

#define CFG_STRING_MAX	1024		/* bytes of a K_STRING value */

/* State of one cfg_load() call. */
struct cfg_ctx {
	struct cfg		*cfg;	/* borrowed: being filled */
	struct cfg_errors	*errs;	/* borrowed, may be NULL */
	const char		*path;	/* borrowed: the file as the caller named it */
	char			*dir;	/* owned: absolute directory of path */
	size_t			 nproblems;
	int			 oom;
	/* cfg_list_keys(): set, the walk names the keys instead of reading */
	void			(*list)(const char *key, void *arg);
	void			*list_arg;	/* borrowed */
	char			 list_prefix[128];	/* "upstream.oauth" */
};

enum cfg_kind {
	K_HOSTNAME,	/* our own name, ASCII domain */
	K_PEER,		/* a host name or an IP address literal */
	K_PATH,		/* resolved against the config's directory */
	K_ADDRESS,	/* user@domain */
	K_DOMAIN,
	K_USERNAME,
	K_BOOL,
	K_UINT,
	K_DURATION,
	K_SIZE,
	K_TLS,
	K_STRING,	/* any printable text, at most CFG_STRING_MAX bytes */
	K_CUSTOM,	/* fn reads the setting */
	K_GROUP,	/* a group { ... }: fn reads it with cfg_walk_group */
};

/* One key a group may hold. */
struct cfg_key {
	const char	*name;
	enum cfg_kind	 kind;
	void		*dst;		/* borrowed: field of struct cfg */
	uint64_t	 min, max;	/* K_UINT, K_DURATION, K_SIZE */
	void		(*fn)(struct cfg_ctx *, const config_setting_t *);
};

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* Reports a problem at setting s ("file:line: ..."), or at the file. */
void cfg_error(struct cfg_ctx *ctx, const config_setting_t *s,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Reports a setting of the wrong type. */
void cfg_type_error(struct cfg_ctx *ctx, const config_setting_t *s,
    const char *key, const char *expected);
/* A strdup that records running out of memory in ctx. */
char *cfg_strdup(struct cfg_ctx *ctx, const char *s);
/* Replaces an owned string. */
void cfg_set_str(char **dst, char *val);
/* True when s has no control character. */
bool cfg_is_printable(const char *s);
/* Reads a string-valued key of kind k->kind into its char * destination. */
void cfg_load_string(struct cfg_ctx *ctx, const config_setting_t *s,
    const struct cfg_key *k, const char *key);
/* Checks that s is a group, then reads its keys (unknown ones reported). */
void cfg_walk_group(struct cfg_ctx *ctx, const config_setting_t *s,
    const struct cfg_key *keys, size_t nkeys);

/* cfg_oauth.c: upstream.auth, upstream.oauth and their rules. */
void cfg_load_auth(struct cfg_ctx *ctx, const config_setting_t *s);
void cfg_load_oauth(struct cfg_ctx *ctx, const config_setting_t *s);
void cfg_check_oauth(struct cfg_ctx *ctx, const config_t *lc);
void cfg_oauth_free(struct cfg_oauth *o);

#endif
