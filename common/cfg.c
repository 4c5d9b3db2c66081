/*
 * cfg: loading and checking smartrelay.conf (docs/configuration.md).  See cfg.h.
 *
 * libconfig parses the file; we then walk each group against a table of the
 * keys it may hold (struct cfg_key: name, kind, destination in struct cfg,
 * allowed range).  Walking the settings that are present, rather than looking
 * up the keys we know, is what lets every unknown key be reported.  Loading
 * never stops at the first problem: each one is appended to struct cfg_errors
 * as "file:line: message" and the walk goes on, so that --check-config shows
 * them all.  Rules that tie keys together (TLS mode against the host, retry
 * delays in order, a username needs a password) run once every key is read.
 *
 * The password is never kept in struct cfg: cfg_read_password() reads it on
 * demand into a struct cfg_secret, at every new upstream session, so that a
 * fixed password needs no restart.
 */
#include "cfg.h"
#include "addr.h"
#include "cfg_private.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#define MINUTE		60ULL
#define HOUR		(60 * MINUTE)
#define DAY		(24 * HOUR)
#define WEEK		(7 * DAY)
#define KIB		1024ULL
#define MIB		(1024 * KIB)
#define GIB		(1024 * MIB)

#define LISTEN_MAX	64		/* entries in listen */
#define ALLOW_MAX	256		/* entries in allow */
#define ALIASES_MAX	1000		/* entries in rewrite.aliases */
#define USERNAME_MAX	255


static void cfg_load_upstream(struct cfg_ctx *, const config_setting_t *);
static void cfg_load_retry(struct cfg_ctx *, const config_setting_t *);
static void cfg_load_limits(struct cfg_ctx *, const config_setting_t *);
static void cfg_load_rewrite(struct cfg_ctx *, const config_setting_t *);
static void cfg_load_bounces(struct cfg_ctx *, const config_setting_t *);
static void cfg_load_listen(struct cfg_ctx *, const config_setting_t *);
static void cfg_load_allow(struct cfg_ctx *, const config_setting_t *);
static void cfg_load_aliases(struct cfg_ctx *, const config_setting_t *);

/*
 * Errors.
 */

/* Appends one formatted message to errs (which may be NULL). */
static int __attribute__((format(printf, 2, 0)))
cfg_errors_vadd(struct cfg_errors *errs, const char *fmt, va_list ap)
{
	char **msgs, *msg;

	if (errs == NULL)
		return 0;
	if (vasprintf(&msg, fmt, ap) == -1)
		return -ENOMEM;
	msgs = reallocarray(errs->msgs, errs->n + 1, sizeof(*msgs));
	if (msgs == NULL) {
		free(msg);
		return -ENOMEM;
	}
	msgs[errs->n++] = msg;
	errs->msgs = msgs;
	return 0;
}

int
cfg_errors_add(struct cfg_errors *errs, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = cfg_errors_vadd(errs, fmt, ap);
	va_end(ap);
	return r;
}

void
cfg_errors_clear(struct cfg_errors *errs)
{
	size_t i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

/*
 * Names the file a setting or a syntax error is in: libconfig gives an
 * included file as written in @include, relative to our directory.
 */
static const char *
cfg_file_name(struct cfg_ctx *ctx, const char *file, char *buf, size_t sz)
{
	if (file == NULL || strcmp(file, ctx->path) == 0)
		return ctx->path;
	if (file[0] == '/' || ctx->dir == NULL)
		return file;
	snprintf(buf, sz, "%s/%s", ctx->dir, file);
	return buf;
}

/* Reports a problem at setting s ("file:line: ..."), or at the file. */
void __attribute__((format(printf, 3, 4)))
cfg_error(struct cfg_ctx *ctx, const config_setting_t *s, const char *fmt,
    ...)
{
	const char *file = ctx->path;
	char *msg, buf[PATH_MAX];
	va_list ap;
	int r;

	ctx->nproblems++;
	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r == -1) {
		ctx->oom = 1;
		return;
	}
	if (s != NULL)
		file = cfg_file_name(ctx, config_setting_source_file(s), buf,
		    sizeof(buf));
	if (s != NULL && config_setting_source_line(s) > 0)
		r = cfg_errors_add(ctx->errs, "%s:%u: %s", file,
		    (unsigned)config_setting_source_line(s), msg);
	else
		r = cfg_errors_add(ctx->errs, "%s: %s", file, msg);
	if (r < 0)
		ctx->oom = 1;
	free(msg);
}

/* A strdup that records running out of memory in ctx. */
char *
cfg_strdup(struct cfg_ctx *ctx, const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		ctx->oom = 1;
	return p;
}

/* Replaces an owned string. */
void
cfg_set_str(char **dst, char *val)
{
	free(*dst);
	*dst = val;
}

/*
 * Number parsing.
 */

/* Parses leading decimal digits: no sign, no space, no empty string. */
static int
cfg_parse_digits(const char *s, uint64_t *v, char **end)
{
	unsigned long long n;

	if (s == NULL || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	n = strtoull(s, end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	*v = n;
	return 0;
}

/* Multiplies v by mult, or returns -ERANGE on overflow. */
static int
cfg_scale(uint64_t *v, uint64_t mult)
{
	if (mult != 0 && *v > UINT64_MAX / mult)
		return -ERANGE;
	*v *= mult;
	return 0;
}

int
cfg_parse_duration(const char *s, uint64_t *secs)
{
	static const struct {
		char		unit;
		uint64_t	mult;
	} units[] = {
		{ 's', 1 }, { 'm', MINUTE }, { 'h', HOUR }, { 'd', DAY },
		{ 'w', WEEK },
	};
	uint64_t v, mult = 0;
	char *end;
	size_t i;
	int r;

	if ((r = cfg_parse_digits(s, &v, &end)) < 0)
		return r;
	if (end[0] == '\0')
		mult = 1;
	else if (end[1] == '\0')
		for (i = 0; i < NELEM(units); i++)
			if (end[0] == units[i].unit)
				mult = units[i].mult;
	if (mult == 0)
		return -EINVAL;
	if ((r = cfg_scale(&v, mult)) < 0)
		return r;
	*secs = v;
	return 0;
}

int
cfg_parse_size(const char *s, uint64_t *bytes)
{
	uint64_t v, mult = 1;
	char *end;
	int r;

	if ((r = cfg_parse_digits(s, &v, &end)) < 0)
		return r;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		mult = KIB;
		break;
	case 'M':
		mult = MIB;
		break;
	case 'G':
		mult = GIB;
		break;
	case 'T':
		mult = 1024 * GIB;
		break;
	default:
		end--;
		break;
	}
	end++;
	if (toupper((unsigned char)*end) == 'B')
		end++;
	if (*end != '\0')
		return -EINVAL;
	if ((r = cfg_scale(&v, mult)) < 0)
		return r;
	*bytes = v;
	return 0;
}

/*
 * Writes a value of a numeric kind the way a user would, with the largest
 * unit that divides it ("90s", "5d", "34M").
 */
static const char *
cfg_fmt_value(char *buf, size_t sz, enum cfg_kind kind, uint64_t v)
{
	static const struct {
		enum cfg_kind	 kind;
		const char	*unit;
		uint64_t	 mult;
	} units[] = {
		{ K_DURATION, "w", WEEK }, { K_DURATION, "d", DAY },
		{ K_DURATION, "h", HOUR }, { K_DURATION, "m", MINUTE },
		{ K_DURATION, "s", 1 }, { K_SIZE, "G", GIB },
		{ K_SIZE, "M", MIB }, { K_SIZE, "K", KIB },
	};
	size_t i;

	for (i = 0; i < NELEM(units); i++)
		if (units[i].kind == kind && v != 0 && v % units[i].mult == 0)
			break;
	if (i == NELEM(units))
		snprintf(buf, sz, "%llu%s", (unsigned long long)v,
		    kind == K_DURATION ? "s" : "");
	else
		snprintf(buf, sz, "%llu%s",
		    (unsigned long long)(v / units[i].mult), units[i].unit);
	return buf;
}

/*
 * Networks and listen addresses.
 */

static const char cfg_host_bits[] = "host bits are set after the prefix "
    "length";

/*
 * Parses s as a network; *why says what is wrong on failure.  With host bits
 * set (*why == cfg_host_bits), net holds the address and prefix as written.
 */
static int
cfg_net_parse(const char *s, struct cfg_net *net, const char **why)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t len = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned bits, i;
	uint64_t v;
	char *end;

	*why = "not an IPv4 or IPv6 address";
	if (len == 0 || len >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, len);
	addr[len] = '\0';
	memset(net, 0, sizeof(*net));
	if (inet_pton(AF_INET, addr, net->addr) == 1)
		net->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, net->addr) == 1)
		net->family = AF_INET6;
	else
		return -EINVAL;
	bits = net->family == AF_INET ? 32 : 128;
	net->prefix = bits;
	if (slash != NULL) {
		*why = net->family == AF_INET ? "bad prefix length (0..32)" :
		    "bad prefix length (0..128)";
		if (cfg_parse_digits(slash + 1, &v, &end) < 0 ||
		    *end != '\0' || v > bits)
			return -EINVAL;
		net->prefix = (unsigned)v;
	}
	*why = cfg_host_bits;
	for (i = net->prefix; i < bits; i++)
		if (net->addr[i / 8] & (0x80 >> (i % 8)))
			return -EINVAL;
	return 0;
}

int
cfg_parse_net(const char *s, struct cfg_net *net)
{
	const char *why;

	return cfg_net_parse(s, net, &why);
}

/* True when the first bits of a and b are equal. */
static bool
cfg_prefix_equal(const unsigned char *a, const unsigned char *b,
    unsigned bits)
{
	unsigned char mask;

	if (memcmp(a, b, bits / 8) != 0)
		return false;
	if (bits % 8 == 0)
		return true;
	mask = (unsigned char)(0xff << (8 - bits % 8));
	return ((a[bits / 8] ^ b[bits / 8]) & mask) == 0;
}

bool
cfg_net_match(const struct cfg_net *nets, size_t n,
    const struct sockaddr *sa)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
	const unsigned char *v4 = NULL, *v6 = NULL;
	size_t i;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET)
		v4 = (const unsigned char *)&sin->sin_addr;
	else if (sa->sa_family == AF_INET6) {
		v6 = (const unsigned char *)&sin6->sin6_addr;
		/* ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			v4 = v6 + 12;
	}
	for (i = 0; i < n; i++) {
		if (nets[i].family == AF_INET && v4 != NULL &&
		    cfg_prefix_equal(v4, nets[i].addr, nets[i].prefix))
			return true;
		if (nets[i].family == AF_INET6 && v6 != NULL &&
		    cfg_prefix_equal(v6, nets[i].addr, nets[i].prefix))
			return true;
	}
	return false;
}

/* True for an ASCII host name ("localhost", "smtp.gmail.com"). */
static bool
cfg_is_hostname(const char *s)
{
	return s[0] != '[' && addr_is_ascii(s) && addr_check_domain(s) == 0;
}

/* True for an IPv4 or IPv6 address literal (without brackets). */
static bool
cfg_is_ip(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

/* Parses a port number 1..65535. */
static int
cfg_parse_port(const char *s, unsigned *port)
{
	uint64_t v;
	char *end;

	if (strlen(s) > 5 || cfg_parse_digits(s, &v, &end) < 0 ||
	    *end != '\0' || v < 1 || v > 65535)
		return -EINVAL;
	*port = (unsigned)v;
	return 0;
}

int
cfg_parse_listen(const char *s, char *host, size_t hostsz, unsigned *port)
{
	char buf[256];
	const char *colon, *h = s;
	size_t len;

	if (s[0] == '[') {
		colon = strstr(s, "]:");
		h = s + 1;
	} else
		colon = strrchr(s, ':');
	if (colon == NULL || cfg_parse_port(colon + (s[0] == '[' ? 2 : 1),
	    port) < 0)
		return -EINVAL;
	len = (size_t)(colon - h);
	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, h, len);
	buf[len] = '\0';
	if (s[0] == '[') {
		struct in6_addr a6;

		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return -EINVAL;
	} else if (strchr(buf, ':') != NULL || (strcmp(buf, "*") != 0 &&
	    !cfg_is_hostname(buf) && !cfg_is_ip(buf)))
		return -EINVAL;
	if (len >= hostsz)
		return -ENAMETOOLONG;
	memcpy(host, buf, len + 1);
	return 0;
}

/* True for 127.0.0.0/8, ::1 and "localhost". */
static bool
cfg_is_loopback(const char *host)
{
	unsigned char a[16];

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, host, a) == 1)
		return IN6_IS_ADDR_LOOPBACK((struct in6_addr *)a);
	return false;
}

const char *
cfg_tls_name(enum cfg_tls tls)
{
	switch (tls) {
	case CFG_TLS_STARTTLS:
		return "starttls";
	case CFG_TLS_IMPLICIT:
		return "implicit";
	case CFG_TLS_NONE:
		return "none";
	}
	return "?";
}

/*
 * Defaults.
 */

/* The machine's FQDN, else its plain host name, else "localhost". */
static char *
cfg_default_hostname(void)
{
	struct addrinfo hints, *res = NULL;
	char name[256];
	char *fqdn;

	if (gethostname(name, sizeof(name)) == -1 || name[0] == '\0')
		return strdup("localhost");
	name[sizeof(name) - 1] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_flags = AI_CANONNAME;
	if (getaddrinfo(name, NULL, &hints, &res) == 0 && res != NULL &&
	    res->ai_canonname != NULL && strchr(res->ai_canonname, '.') &&
	    cfg_is_hostname(res->ai_canonname))
		fqdn = strdup(res->ai_canonname);
	else
		fqdn = strdup(name);
	if (res != NULL)
		freeaddrinfo(res);
	return fqdn;
}

/* Allocates a struct cfg holding every default but the host name. */
static struct cfg *
cfg_new(const char *path)
{
	struct cfg *cfg;

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		return NULL;
	cfg->listen = calloc(2, sizeof(*cfg->listen));
	cfg->allow = calloc(2, sizeof(*cfg->allow));
	if (cfg->listen == NULL || cfg->allow == NULL)
		goto fail;
	cfg->nlisten = 2;
	cfg->nallow = 2;
	cfg->listen[0] = strdup("127.0.0.1:25");
	cfg->listen[1] = strdup("[::1]:25");
	cfg->path = strdup(path);
	cfg->spool = strdup("/var/spool/smartrelay");
	cfg->upstream.host = strdup("smtp.gmail.com");
	if (cfg->listen[0] == NULL || cfg->listen[1] == NULL ||
	    cfg->path == NULL || cfg->spool == NULL || cfg->upstream.host == NULL)
		goto fail;
	cfg_parse_net("127.0.0.0/8", &cfg->allow[0]);
	cfg_parse_net("::1/128", &cfg->allow[1]);
	cfg->upstream.port = 587;
	cfg->upstream.tls = CFG_TLS_STARTTLS;
	cfg->upstream.connections = 2;
	cfg->upstream.messages_per_connection = 100;
	cfg->upstream.timeout = 5 * MINUTE;
	cfg->retry.initial = MINUTE;
	cfg->retry.max = HOUR;
	cfg->retry.give_up_after = 5 * DAY;
	cfg->limits.message_size = 34 * MIB;
	cfg->limits.recipients = 100;
	cfg->limits.clients = 100;
	cfg->limits.idle_timeout = 5 * MINUTE;
	return cfg;
fail:
	cfg_free(cfg);
	return NULL;
}

void
cfg_free(struct cfg *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	for (i = 0; cfg->listen != NULL && i < cfg->nlisten; i++)
		free(cfg->listen[i]);
	free(cfg->listen);
	free(cfg->allow);
	free(cfg->path);
	free(cfg->hostname);
	free(cfg->spool);
	free(cfg->upstream.host);
	free(cfg->upstream.ca_file);
	free(cfg->upstream.username);
	free(cfg->upstream.password_file);
	cfg_oauth_free(&cfg->upstream.oauth);
	for (i = 0; cfg->rewrite.aliases != NULL && i < cfg->rewrite.naliases;
	    i++) {
		free(cfg->rewrite.aliases[i].name);
		free(cfg->rewrite.aliases[i].target);
	}
	free(cfg->rewrite.aliases);
	free(cfg->rewrite.envelope_from);
	free(cfg->rewrite.header_from);
	free(cfg->rewrite.local_domain);
	free(cfg->bounces_to);
	free(cfg);
}

/*
 * Walking the settings.
 */

/* "a string", "an integer"... for type errors. */
static const char *
cfg_type_name(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:
		return "a group { ... }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a floating-point number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array [ ... ]";
	case CONFIG_TYPE_LIST:
		return "a list ( ... )";
	}
	return "nothing";
}

/* What a key of this kind expects, for type errors. */
static const char *
cfg_kind_expects(enum cfg_kind kind)
{
	switch (kind) {
	case K_BOOL:
		return "a boolean (true or false)";
	case K_UINT:
		return "an integer";
	case K_DURATION:
		return "a duration (seconds, or a string such as \"90s\", "
		    "\"5m\", \"1h\", \"5d\", \"2w\")";
	case K_SIZE:
		return "a size (bytes, or a string such as \"64K\", \"25M\", "
		    "\"1G\")";
	default:
		return "a string";
	}
}

/* Reports a setting of the wrong type. */
void
cfg_type_error(struct cfg_ctx *ctx, const config_setting_t *s,
    const char *key, const char *expected)
{
	cfg_error(ctx, s, "%s: expected %s, got %s", key, expected,
	    cfg_type_name(s));
}

/* Writes "group.name" (or "name" at the top level) into buf. */
static const char *
cfg_key_path(char *buf, size_t sz, const config_setting_t *s)
{
	const config_setting_t *parent = config_setting_parent(s);

	if (parent != NULL && !config_setting_is_root(parent) &&
	    config_setting_name(parent) != NULL)
		snprintf(buf, sz, "%s.%s", config_setting_name(parent),
		    config_setting_name(s));
	else
		snprintf(buf, sz, "%s", config_setting_name(s));
	return buf;
}

/* Edit distance of two short names, for "did you mean". */
static size_t
cfg_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t row[33], prev, tmp, best;

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			tmp = row[j];
			best = prev + (tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]));
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

/* Reports an unknown key, suggesting a close spelling. */
static void
cfg_unknown_key(struct cfg_ctx *ctx, const config_setting_t *s,
    const char *group, const struct cfg_key *keys, size_t nkeys)
{
	const char *name = config_setting_name(s), *best = NULL;
	size_t i, d, bestd = 3;
	char hint[64] = "";

	for (i = 0; i < nkeys; i++)
		if ((d = cfg_distance(name, keys[i].name)) < bestd &&
		    d < strlen(name)) {
			bestd = d;
			best = keys[i].name;
		}
	if (best != NULL)
		snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", best);
	if (group != NULL)
		cfg_error(ctx, s, "unknown key \"%s\" in %s%s", name, group,
		    hint);
	else
		cfg_error(ctx, s, "unknown key \"%s\"%s", name, hint);
}

/* Resolves a relative path against the directory of the config file. */
static char *
cfg_resolve_path(struct cfg_ctx *ctx, const char *p)
{
	char *abs;

	if (p[0] == '/')
		return cfg_strdup(ctx, p);
	if (asprintf(&abs, "%s/%s", ctx->dir, p) == -1) {
		ctx->oom = 1;
		return NULL;
	}
	return abs;
}

/* True when s has no control character. */
bool
cfg_is_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* Checks a string value for its kind; returns what is wrong, or NULL. */
static const char *
cfg_check_string(enum cfg_kind kind, const char *v)
{
	if (v[0] == '\0')
		return "must not be empty";
	if (!cfg_is_printable(v))
		return "must not contain control characters";
	switch (kind) {
	case K_HOSTNAME:
		return cfg_is_hostname(v) ? NULL : "is not a host name";
	case K_PEER:
		return cfg_is_hostname(v) || cfg_is_ip(v) ? NULL :
		    "is not a host name or an IP address";
	case K_PATH:
		return strlen(v) < PATH_MAX ? NULL : "is too long";
	case K_ADDRESS:
		return addr_check_mailbox(v) == 0 && !addr_is_bare(v) ? NULL :
		    "is not an address of the form user@domain";
	case K_DOMAIN:
		return v[0] != '[' && addr_check_domain(v) == 0 ? NULL :
		    "is not a domain name";
	case K_USERNAME:
		return strlen(v) <= USERNAME_MAX ? NULL : "is too long";
	case K_STRING:
		return strlen(v) <= CFG_STRING_MAX ? NULL : "is too long";
	default:
		return NULL;
	}
}

/* Reads a string-valued key into its char * destination. */
void
cfg_load_string(struct cfg_ctx *ctx, const config_setting_t *s,
    const struct cfg_key *k, const char *key)
{
	const char *v, *why;
	char *copy;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cfg_type_error(ctx, s, key, "a string");
		return;
	}
	v = config_setting_get_string(s);
	if ((why = cfg_check_string(k->kind, v)) != NULL) {
		if (cfg_is_printable(v))
			cfg_error(ctx, s, "%s: \"%.80s\" %s", key, v, why);
		else
			cfg_error(ctx, s, "%s: %s", key, why);
		return;
	}
	copy = k->kind == K_PATH ? cfg_resolve_path(ctx, v) :
	    cfg_strdup(ctx, v);
	if (copy != NULL)
		cfg_set_str(k->dst, copy);
}

/* Reads upstream.tls. */
static void
cfg_load_tls(struct cfg_ctx *ctx, const config_setting_t *s, const char *key)
{
	enum cfg_tls *dst = &ctx->cfg->upstream.tls;
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cfg_type_error(ctx, s, key, "a string");
		return;
	}
	v = config_setting_get_string(s);
	if (strcasecmp(v, "starttls") == 0)
		*dst = CFG_TLS_STARTTLS;
	else if (strcasecmp(v, "implicit") == 0)
		*dst = CFG_TLS_IMPLICIT;
	else if (strcasecmp(v, "none") == 0)
		*dst = CFG_TLS_NONE;
	else
		cfg_error(ctx, s, "%s: \"%.80s\" is not a TLS mode: use "
		    "\"starttls\" (port 587) or \"implicit\" (port 465)",
		    key, cfg_is_printable(v) ? v : "?");
}

/* Reads a number that may also be a string with a unit. */
static void
cfg_load_number(struct cfg_ctx *ctx, const config_setting_t *s,
    const struct cfg_key *k, const char *key)
{
	int (*parse)(const char *, uint64_t *) = k->kind == K_DURATION ?
	    cfg_parse_duration : cfg_parse_size;
	int type = config_setting_type(s);
	char shown[96], lo[32], hi[32];
	const char *str;
	long long ll;
	uint64_t v;
	int r;

	if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
		ll = config_setting_get_int64(s);
		snprintf(shown, sizeof(shown), "%lld", ll);
		v = ll < 0 ? UINT64_MAX : (uint64_t)ll;
	} else if (type == CONFIG_TYPE_STRING && k->kind != K_UINT) {
		str = config_setting_get_string(s);
		snprintf(shown, sizeof(shown), "\"%.80s\"", str);
		if ((r = parse(str, &v)) == -EINVAL || !cfg_is_printable(str)) {
			cfg_error(ctx, s, "%s: %s is not %s", key,
			    cfg_is_printable(str) ? shown : "the value",
			    cfg_kind_expects(k->kind));
			return;
		}
		if (r < 0)
			v = UINT64_MAX;	/* overflow: out of any range */
	} else {
		cfg_type_error(ctx, s, key, cfg_kind_expects(k->kind));
		return;
	}
	if (v < k->min || v > k->max) {
		cfg_error(ctx, s, "%s: %s is out of range (%s..%s)", key, shown,
		    cfg_fmt_value(lo, sizeof(lo), k->kind, k->min),
		    cfg_fmt_value(hi, sizeof(hi), k->kind, k->max));
		return;
	}
	if (k->kind == K_SIZE)
		*(uint64_t *)k->dst = v;
	else
		*(unsigned *)k->dst = (unsigned)v;
}

/* Reads one known key according to its kind. */
static void
cfg_load_key(struct cfg_ctx *ctx, const config_setting_t *s,
    const struct cfg_key *k)
{
	char key[128];

	cfg_key_path(key, sizeof(key), s);
	switch (k->kind) {
	case K_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			cfg_type_error(ctx, s, key, cfg_kind_expects(k->kind));
		else
			*(bool *)k->dst = config_setting_get_bool(s);
		break;
	case K_UINT:
	case K_DURATION:
	case K_SIZE:
		cfg_load_number(ctx, s, k, key);
		break;
	case K_TLS:
		cfg_load_tls(ctx, s, key);
		break;
	case K_CUSTOM:
	case K_GROUP:
		k->fn(ctx, s);
		break;
	default:
		cfg_load_string(ctx, s, k, key);
		break;
	}
}

/*
 * cfg_list_keys(): names each key of a table with its group's prefix;
 * descends into K_GROUP keys by calling their loader, which walks its own
 * table (with no setting) back to here.
 */
static void
cfg_list_table(struct cfg_ctx *ctx, const struct cfg_key *keys, size_t nkeys)
{
	char saved[sizeof(ctx->list_prefix)], name[sizeof(ctx->list_prefix)];
	size_t j;

	for (j = 0; j < nkeys; j++) {
		if ((size_t)snprintf(name, sizeof(name), "%s%s%s",
		    ctx->list_prefix, ctx->list_prefix[0] ? "." : "",
		    keys[j].name) >= sizeof(name)) {
			ctx->oom = 1;	/* a schema too deep for the buffer */
			continue;
		}
		if (keys[j].kind != K_GROUP) {
			ctx->list(name, ctx->list_arg);
			continue;
		}
		memcpy(saved, ctx->list_prefix, sizeof(saved));
		memcpy(ctx->list_prefix, name, sizeof(name));
		keys[j].fn(ctx, NULL);
		memcpy(ctx->list_prefix, saved, sizeof(saved));
	}
}

/* Reads every setting of a group, reporting those not in keys. */
static void
cfg_walk(struct cfg_ctx *ctx, const config_setting_t *group,
    const struct cfg_key *keys, size_t nkeys)
{
	const config_setting_t *s;
	const char *gname;
	int i, n;
	size_t j;

	if (ctx->list != NULL) {
		cfg_list_table(ctx, keys, nkeys);
		return;
	}
	gname = config_setting_is_root(group) ? NULL :
	    config_setting_name(group);
	n = config_setting_length(group);
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(group, (unsigned)i);
		for (j = 0; j < nkeys; j++)
			if (strcmp(config_setting_name(s), keys[j].name) == 0)
				break;
		if (j == nkeys)
			cfg_unknown_key(ctx, s, gname, keys, nkeys);
		else
			cfg_load_key(ctx, s, &keys[j]);
	}
}

/* Checks that s is a group before walking it. */
void
cfg_walk_group(struct cfg_ctx *ctx, const config_setting_t *s,
    const struct cfg_key *keys, size_t nkeys)
{
	if (ctx->list == NULL && !config_setting_is_group(s)) {
		cfg_type_error(ctx, s, config_setting_name(s),
		    "a group { ... }");
		return;
	}
	cfg_walk(ctx, s, keys, nkeys);
}

/* Checks that s is a list of at most max strings; returns its length. */
static int
cfg_string_list(struct cfg_ctx *ctx, const config_setting_t *s, int max)
{
	int i, n;

	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		cfg_type_error(ctx, s, config_setting_name(s),
		    "a list of strings [ \"...\", ... ]");
		return -1;
	}
	if ((n = config_setting_length(s)) == 0 || n > max) {
		cfg_error(ctx, s, "%s: needs 1 to %d entries, got %d",
		    config_setting_name(s), max, n);
		return -1;
	}
	for (i = 0; i < n; i++)
		if (config_setting_type(config_setting_get_elem(s,
		    (unsigned)i)) != CONFIG_TYPE_STRING) {
			cfg_type_error(ctx, config_setting_get_elem(s,
			    (unsigned)i), config_setting_name(s), "a string");
			return -1;
		}
	return n;
}

/* Reads listen: a list of "host:port". */
static void
cfg_load_listen(struct cfg_ctx *ctx, const config_setting_t *s)
{
	struct cfg *cfg = ctx->cfg;
	const config_setting_t *e;
	char host[256], **list;
	const char *v;
	unsigned port;
	int i, n;

	if ((n = cfg_string_list(ctx, s, LISTEN_MAX)) < 0)
		return;
	if ((list = calloc((size_t)n, sizeof(*list))) == NULL) {
		ctx->oom = 1;
		return;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned)i);
		v = config_setting_get_string(e);
		if (cfg_parse_listen(v, host, sizeof(host), &port) < 0)
			cfg_error(ctx, e, "listen: \"%.80s\" is not host:port "
			    "(e.g. \"127.0.0.1:25\", \"[::1]:25\", \"*:25\"; "
			    "port 1..65535)", v);
		list[i] = cfg_strdup(ctx, v);
	}
	for (i = 0; i < (int)cfg->nlisten; i++)
		free(cfg->listen[i]);
	free(cfg->listen);
	cfg->listen = list;
	cfg->nlisten = (size_t)n;
}

/* Reports a bad network of allow, suggesting the network of a host. */
static void
cfg_bad_net(struct cfg_ctx *ctx, const config_setting_t *e, const char *v,
    const char *why, struct cfg_net *net)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned i;

	if (why != cfg_host_bits) {
		cfg_error(ctx, e, "allow: \"%.80s\" is not a network: %s", v,
		    why);
		return;
	}
	for (i = net->prefix; i < 128; i++)
		net->addr[i / 8] &= (unsigned char)~(0x80 >> (i % 8));
	inet_ntop(net->family, net->addr, buf, sizeof(buf));
	cfg_error(ctx, e, "allow: \"%.80s\" is not a network: %s (did you "
	    "mean \"%s/%u\"?)", v, why, buf, net->prefix);
}

/* Reads allow: a list of networks. */
static void
cfg_load_allow(struct cfg_ctx *ctx, const config_setting_t *s)
{
	const config_setting_t *e;
	struct cfg_net *nets;
	const char *v, *why;
	int i, n;

	if ((n = cfg_string_list(ctx, s, ALLOW_MAX)) < 0)
		return;
	if ((nets = calloc((size_t)n, sizeof(*nets))) == NULL) {
		ctx->oom = 1;
		return;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned)i);
		v = config_setting_get_string(e);
		if (cfg_net_parse(v, &nets[i], &why) < 0)
			cfg_bad_net(ctx, e, v, why, &nets[i]);
	}
	free(ctx->cfg->allow);
	ctx->cfg->allow = nets;
	ctx->cfg->nallow = (size_t)n;
}

/* Reads rewrite.aliases: a group of name = "user@domain". */
static void
cfg_load_aliases(struct cfg_ctx *ctx, const config_setting_t *s)
{
	struct cfg_rewrite *rw = &ctx->cfg->rewrite;
	const config_setting_t *e;
	const char *v, *name;
	int i, n;
	size_t j;

	if (!config_setting_is_group(s)) {
		cfg_type_error(ctx, s, "rewrite.aliases",
		    "a group { name = \"user@domain\"; ... }");
		return;
	}
	if ((n = config_setting_length(s)) > ALIASES_MAX) {
		cfg_error(ctx, s, "rewrite.aliases: more than %d aliases",
		    ALIASES_MAX);
		return;
	}
	rw->aliases = calloc((size_t)n + 1, sizeof(*rw->aliases));
	if (rw->aliases == NULL) {
		ctx->oom = 1;
		return;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			cfg_type_error(ctx, e, "rewrite.aliases",
			    "a string \"user@domain\"");
			continue;
		}
		v = config_setting_get_string(e);
		name = config_setting_name(e);
		if (addr_check_mailbox(v) < 0 || addr_is_bare(v))
			cfg_error(ctx, e, "rewrite.aliases: %s = \"%.80s\" is "
			    "not an address of the form user@domain", name,
			    cfg_is_printable(v) ? v : "?");
		/* Names are matched case-insensitively (addr_resolve_local). */
		for (j = 0; j < rw->naliases; j++)
			if (rw->aliases[j].name != NULL &&
			    strcasecmp(rw->aliases[j].name, name) == 0)
				cfg_error(ctx, e, "rewrite.aliases: %s is "
				    "defined twice (names ignore case)", name);
		rw->aliases[rw->naliases].name = cfg_strdup(ctx, name);
		rw->aliases[rw->naliases++].target = cfg_strdup(ctx, v);
	}
}

/*
 * The schema: one table per group.
 */

static void
cfg_load_root(struct cfg_ctx *ctx, const config_setting_t *root)
{
	struct cfg *c = ctx->cfg;
	const struct cfg_key keys[] = {
		{ "listen", K_CUSTOM, NULL, 0, 0, cfg_load_listen },
		{ "hostname", K_HOSTNAME, &c->hostname, 0, 0, NULL },
		{ "spool", K_PATH, &c->spool, 0, 0, NULL },
		{ "allow", K_CUSTOM, NULL, 0, 0, cfg_load_allow },
		{ "upstream", K_GROUP, NULL, 0, 0, cfg_load_upstream },
		{ "retry", K_GROUP, NULL, 0, 0, cfg_load_retry },
		{ "limits", K_GROUP, NULL, 0, 0, cfg_load_limits },
		{ "rewrite", K_GROUP, NULL, 0, 0, cfg_load_rewrite },
		{ "bounces", K_GROUP, NULL, 0, 0, cfg_load_bounces },
	};

	cfg_walk(ctx, root, keys, NELEM(keys));
}

static void
cfg_load_upstream(struct cfg_ctx *ctx, const config_setting_t *s)
{
	struct cfg_upstream *u = &ctx->cfg->upstream;
	const struct cfg_key keys[] = {
		{ "host", K_PEER, &u->host, 0, 0, NULL },
		{ "port", K_UINT, &u->port, 1, 65535, NULL },
		{ "tls", K_TLS, &u->tls, 0, 0, NULL },
		{ "insecure_plaintext", K_BOOL, &u->insecure_plaintext, 0, 0,
		    NULL },
		{ "ca_file", K_PATH, &u->ca_file, 0, 0, NULL },
		{ "username", K_USERNAME, &u->username, 0, 0, NULL },
		{ "password_file", K_PATH, &u->password_file, 0, 0, NULL },
		{ "auth", K_CUSTOM, NULL, 0, 0, cfg_load_auth },
		{ "oauth", K_GROUP, NULL, 0, 0, cfg_load_oauth },
		{ "connections", K_UINT, &u->connections, 1, 32, NULL },
		{ "messages_per_connection", K_UINT,
		    &u->messages_per_connection, 1, 10000, NULL },
		{ "timeout", K_DURATION, &u->timeout, 1, HOUR, NULL },
	};

	cfg_walk_group(ctx, s, keys, NELEM(keys));
}

static void
cfg_load_retry(struct cfg_ctx *ctx, const config_setting_t *s)
{
	struct cfg_retry *r = &ctx->cfg->retry;
	const struct cfg_key keys[] = {
		{ "initial", K_DURATION, &r->initial, 1, DAY, NULL },
		{ "max", K_DURATION, &r->max, 1, WEEK, NULL },
		{ "give_up_after", K_DURATION, &r->give_up_after, 1, 90 * DAY,
		    NULL },
	};

	cfg_walk_group(ctx, s, keys, NELEM(keys));
}

static void
cfg_load_limits(struct cfg_ctx *ctx, const config_setting_t *s)
{
	struct cfg_limits *l = &ctx->cfg->limits;
	const struct cfg_key keys[] = {
		{ "message_size", K_SIZE, &l->message_size, KIB, GIB, NULL },
		{ "recipients", K_UINT, &l->recipients, 1, 1000, NULL },
		{ "clients", K_UINT, &l->clients, 1, 10000, NULL },
		{ "idle_timeout", K_DURATION, &l->idle_timeout, 1, HOUR, NULL },
	};

	cfg_walk_group(ctx, s, keys, NELEM(keys));
}

static void
cfg_load_rewrite(struct cfg_ctx *ctx, const config_setting_t *s)
{
	struct cfg_rewrite *rw = &ctx->cfg->rewrite;
	const struct cfg_key keys[] = {
		{ "envelope_from", K_ADDRESS, &rw->envelope_from, 0, 0, NULL },
		{ "header_from", K_ADDRESS, &rw->header_from, 0, 0, NULL },
		{ "local_domain", K_DOMAIN, &rw->local_domain, 0, 0, NULL },
		{ "aliases", K_CUSTOM, NULL, 0, 0, cfg_load_aliases },
	};

	cfg_walk_group(ctx, s, keys, NELEM(keys));
}

static void
cfg_load_bounces(struct cfg_ctx *ctx, const config_setting_t *s)
{
	const struct cfg_key keys[] = {
		{ "to", K_ADDRESS, &ctx->cfg->bounces_to, 0, 0, NULL },
		{ "delay_warning", K_DURATION, &ctx->cfg->delay_warning, 1,
		    90 * DAY, NULL },
	};

	cfg_walk_group(ctx, s, keys, NELEM(keys));
}

/*
 * Rules between keys.
 */

/* True when systemd passed the password as a credential. */
static bool
cfg_have_credential(void)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[PATH_MAX];

	if (dir == NULL || dir[0] == '\0')
		return false;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    CFG_CREDENTIAL_NAME) >= sizeof(path))
		return false;
	return access(path, F_OK) == 0;
}

/* The default port, and plaintext only to loopback. */
static void
cfg_check_tls(struct cfg_ctx *ctx, const config_t *lc)
{
	struct cfg_upstream *u = &ctx->cfg->upstream;
	const config_setting_t *tls = config_lookup(lc, "upstream.tls");

	if (config_lookup(lc, "upstream.port") == NULL)
		u->port = u->tls == CFG_TLS_IMPLICIT ? 465 : 587;
	if (u->tls != CFG_TLS_NONE)
		return;
	if (!u->insecure_plaintext)
		cfg_error(ctx, tls, "upstream.tls: \"none\" sends mail and the "
		    "password in clear text; it is allowed only with "
		    "insecure_plaintext = true and a loopback host");
	else if (!cfg_is_loopback(u->host))
		cfg_error(ctx, tls, "upstream.tls: \"none\" is allowed only "
		    "to a loopback host (127.0.0.0/8, ::1 or localhost), not "
		    "\"%s\"", u->host);
}

/* A username needs a password, and a password a username. */
static void
cfg_check_auth(struct cfg_ctx *ctx, const config_t *lc)
{
	struct cfg_upstream *u = &ctx->cfg->upstream;

	if (u->auth == CFG_AUTH_XOAUTH2)
		return;		/* cfg_check_oauth() */
	if (u->username != NULL && u->password_file == NULL &&
	    !cfg_have_credential())
		cfg_error(ctx, config_lookup(lc, "upstream.username"),
		    "upstream.username is set but there is no password: set "
		    "upstream.password_file (or pass the credential "
		    "\"" CFG_CREDENTIAL_NAME "\" with systemd LoadCredential=)");
	if (u->password_file != NULL && u->username == NULL)
		cfg_error(ctx, config_lookup(lc, "upstream.password_file"),
		    "upstream.password_file is set but upstream.username is "
		    "not");
}

/* Reports a > b for two retry delays, at the later-set key. */
static void
cfg_check_order(struct cfg_ctx *ctx, const config_t *lc, const char *a,
    uint64_t va, const char *b, uint64_t vb)
{
	const config_setting_t *s;
	char path[64], x[32], y[32];

	if (va <= vb)
		return;
	snprintf(path, sizeof(path), "retry.%s", b);
	if ((s = config_lookup(lc, path)) == NULL) {
		snprintf(path, sizeof(path), "retry.%s", a);
		s = config_lookup(lc, path);
	}
	cfg_error(ctx, s, "retry: %s (%s) must not be greater than %s (%s)",
	    a, cfg_fmt_value(x, sizeof(x), K_DURATION, va), b,
	    cfg_fmt_value(y, sizeof(y), K_DURATION, vb));
}

/* Remembers the lines cfg_check_runtime() reports at (in the main file). */
static void
cfg_record_lines(struct cfg_ctx *ctx, const config_t *lc)
{
	static const struct {
		const char	*path;
		size_t		 off;
	} keys[] = {
		{ "spool", offsetof(struct cfg_lines, spool) },
		{ "upstream.ca_file", offsetof(struct cfg_lines, ca_file) },
		{ "upstream.username", offsetof(struct cfg_lines, username) },
		{ "upstream.password_file",
		    offsetof(struct cfg_lines, password_file) },
		{ "upstream.auth", offsetof(struct cfg_lines, auth) },
		{ "upstream.oauth.client_secret_file",
		    offsetof(struct cfg_lines, client_secret_file) },
		{ "upstream.oauth.refresh_token_file",
		    offsetof(struct cfg_lines, refresh_token_file) },
		{ "upstream.oauth.ca_file",
		    offsetof(struct cfg_lines, oauth_ca_file) },
	};
	const config_setting_t *s;
	size_t i;

	for (i = 0; i < NELEM(keys); i++)
		if ((s = config_lookup(lc, keys[i].path)) != NULL &&
		    (config_setting_source_file(s) == NULL ||
		    strcmp(config_setting_source_file(s), ctx->path) == 0))
			*(unsigned *)((char *)&ctx->cfg->line + keys[i].off) =
			    config_setting_source_line(s);
}

/* Runs the rules that involve several keys. */
static void
cfg_check_rules(struct cfg_ctx *ctx, const config_t *lc)
{
	struct cfg_retry *r = &ctx->cfg->retry;

	cfg_check_tls(ctx, lc);
	cfg_check_auth(ctx, lc);
	cfg_check_oauth(ctx, lc);
	cfg_check_order(ctx, lc, "initial", r->initial, "max", r->max);
	cfg_check_order(ctx, lc, "max", r->max, "give_up_after",
	    r->give_up_after);
	cfg_record_lines(ctx, lc);
}

/*
 * Loading.
 */

/* Opens the file once to report a clear reason, and finds its directory. */
static int
cfg_find_dir(struct cfg_ctx *ctx)
{
	char *copy, *dir;
	FILE *fp;
	int r;

	if ((fp = fopen(ctx->path, "r")) == NULL) {
		r = -errno;
		cfg_error(ctx, NULL, "cannot open: %s", strerror(-r));
		return r;
	}
	fclose(fp);
	if ((copy = strdup(ctx->path)) == NULL)
		return -ENOMEM;
	dir = realpath(dirname(copy), NULL);
	r = dir == NULL ? -errno : 0;
	free(copy);
	if (r < 0) {
		cfg_error(ctx, NULL, "cannot resolve its directory: %s",
		    strerror(-r));
		return r;
	}
	ctx->dir = dir;
	return 0;
}

/* Parses the file with libconfig; reports a syntax error. */
static int
cfg_parse_file(struct cfg_ctx *ctx, config_t *lc)
{
	char buf[PATH_MAX];
	const char *file;

	config_set_include_dir(lc, ctx->dir);
	if (config_read_file(lc, ctx->path) == CONFIG_TRUE)
		return 0;
	if (config_error_type(lc) == CONFIG_ERR_FILE_IO) {
		cfg_error(ctx, NULL, "cannot read: %s",
		    config_error_text(lc) ? config_error_text(lc) : "I/O error");
		return -EIO;
	}
	file = cfg_file_name(ctx, config_error_file(lc), buf, sizeof(buf));
	ctx->nproblems++;
	if (cfg_errors_add(ctx->errs, "%s:%d: %s", file, config_error_line(lc),
	    config_error_text(lc) ? config_error_text(lc) : "syntax error") < 0)
		ctx->oom = 1;
	return -EINVAL;
}

int
cfg_list_keys(void (*fn)(const char *key, void *arg), void *arg)
{
	struct cfg_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	ctx.list = fn;
	ctx.list_arg = arg;
	if ((ctx.cfg = calloc(1, sizeof(*ctx.cfg))) == NULL)
		return -ENOMEM;
	cfg_load_root(&ctx, NULL);
	free(ctx.cfg);
	return ctx.oom ? -ENOMEM : 0;
}

int
cfg_load(const char *path, struct cfg **cfgp, struct cfg_errors *errs)
{
	struct cfg_ctx ctx;
	config_t lc;
	int r;

	*cfgp = NULL;
	memset(&ctx, 0, sizeof(ctx));
	ctx.errs = errs;
	ctx.path = path;
	if ((ctx.cfg = cfg_new(path)) == NULL)
		return -ENOMEM;
	if ((r = cfg_find_dir(&ctx)) < 0)
		goto out;
	config_init(&lc);
	if ((r = cfg_parse_file(&ctx, &lc)) == 0) {
		cfg_load_root(&ctx, config_root_setting(&lc));
		cfg_check_rules(&ctx, &lc);
	}
	config_destroy(&lc);
	if (r == 0 && ctx.nproblems > 0)
		r = -EINVAL;
	if (r == 0 && ctx.cfg->hostname == NULL &&
	    (ctx.cfg->hostname = cfg_default_hostname()) == NULL)
		ctx.oom = 1;
	if (ctx.oom)
		r = -ENOMEM;
out:
	free(ctx.dir);
	if (r < 0)
		cfg_free(ctx.cfg);
	else
		*cfgp = ctx.cfg;
	return r;
}
