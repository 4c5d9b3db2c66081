/*
 * cfg_oauth: upstream.auth and upstream.oauth (docs/configuration.md,
 * docs/oauth.md).  See cfg.h.
 *
 * The keys are read by cfg.c's walk with the table below; the rules that
 * tie them together run once the whole file is read: the group goes with
 * auth = "xoauth2" and nothing else, each grant has the files it needs,
 * a tenant only means something to Microsoft, the token endpoint is https.
 * Then the provider's defaults (token URL, scope) are filled in, so that
 * the token client and the `smartrelay oauth` tool never have to know
 * them.  No secret is read here: cfg_check_runtime() and the token client
 * read the files when they need them.
 */
#include "cfg.h"
#include "cfg_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GOOGLE_TOKEN_URL	"https://oauth2.googleapis.com/token"
#define GOOGLE_SCOPE		"https://mail.google.com/"
#define MS_TOKEN_URL		"https://login.microsoftonline.com/%s/oauth2/v2.0/token"
#define MS_SCOPE_DELEGATED	"https://outlook.office.com/SMTP.Send offline_access"
#define MS_SCOPE_APP		"https://outlook.office365.com/.default"
#define MS_DEFAULT_TENANT	"organizations"
#define TENANT_MAX		255
#define CLIENT_ID_MAX		255

const char *
cfg_auth_name(enum cfg_auth a)
{
	return a == CFG_AUTH_XOAUTH2 ? "xoauth2" : "password";
}

const char *
cfg_provider_name(enum cfg_oauth_provider p)
{
	switch (p) {
	case CFG_OAUTH_GOOGLE:
		return "google";
	case CFG_OAUTH_MICROSOFT:
		return "microsoft";
	case CFG_OAUTH_CUSTOM:
		return "custom";
	}
	return "?";
}

const char *
cfg_grant_name(enum cfg_oauth_grant g)
{
	return g == CFG_GRANT_CLIENT_CREDENTIALS ? "client_credentials" :
	    "refresh_token";
}

/* Matches a string setting against names[]; -1 (reported) when none. */
static int
cfg_oauth_enum(struct cfg_ctx *ctx, const config_setting_t *s,
    const char *key, const char *const *names, size_t n, const char *hint)
{
	const char *v;
	size_t i;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cfg_type_error(ctx, s, key, "a string");
		return -1;
	}
	v = config_setting_get_string(s);
	for (i = 0; i < n; i++)
		if (strcasecmp(v, names[i]) == 0)
			return (int)i;
	cfg_error(ctx, s, "%s: \"%.80s\" is not %s", key,
	    cfg_is_printable(v) ? v : "?", hint);
	return -1;
}

void
cfg_load_auth(struct cfg_ctx *ctx, const config_setting_t *s)
{
	static const char *const names[] = { "password", "xoauth2" };
	int i = cfg_oauth_enum(ctx, s, "upstream.auth", names, NELEM(names),
	    "an AUTH method: use \"password\" (App Password, AUTH PLAIN or "
	    "LOGIN) or \"xoauth2\" (OAuth 2.0)");

	if (i >= 0)
		ctx->cfg->upstream.auth = (enum cfg_auth)i;
}

/* upstream.oauth.provider */
static void
cfg_load_provider(struct cfg_ctx *ctx, const config_setting_t *s)
{
	static const char *const names[] = { "google", "microsoft", "custom" };
	int i = cfg_oauth_enum(ctx, s, "oauth.provider", names, NELEM(names),
	    "a provider: use \"google\", \"microsoft\" or \"custom\" (with "
	    "token_url)");

	if (i >= 0)
		ctx->cfg->upstream.oauth.provider = (enum cfg_oauth_provider)i;
}

/* upstream.oauth.grant */
static void
cfg_load_grant(struct cfg_ctx *ctx, const config_setting_t *s)
{
	static const char *const names[] = { "refresh_token",
	    "client_credentials" };
	int i = cfg_oauth_enum(ctx, s, "oauth.grant", names, NELEM(names),
	    "a grant: use \"refresh_token\" (a person signs in once with "
	    "`smartrelay oauth`) or \"client_credentials\" (Microsoft 365 "
	    "app-only)");

	if (i >= 0)
		ctx->cfg->upstream.oauth.grant = (enum cfg_oauth_grant)i;
}

/* True for the characters of a tenant: a GUID or a domain name. */
static bool
cfg_is_tenant(const char *v)
{
	size_t n = strlen(v);

	return n > 0 && n <= TENANT_MAX && strspn(v,
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
	    == n;
}

/* upstream.oauth.tenant: it becomes part of the token URL. */
static void
cfg_load_tenant(struct cfg_ctx *ctx, const config_setting_t *s)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cfg_type_error(ctx, s, "oauth.tenant", "a string");
		return;
	}
	v = config_setting_get_string(s);
	if (!cfg_is_tenant(v)) {
		cfg_error(ctx, s, "oauth.tenant: \"%.80s\" is not a tenant: use "
		    "the directory (tenant) ID, a domain such as "
		    "contoso.onmicrosoft.com, or \"organizations\"",
		    cfg_is_printable(v) ? v : "?");
		return;
	}
	cfg_set_str(&ctx->cfg->upstream.oauth.tenant, cfg_strdup(ctx, v));
}

/* upstream.oauth.client_id: printable, no whitespace. */
static void
cfg_load_client_id(struct cfg_ctx *ctx, const config_setting_t *s)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cfg_type_error(ctx, s, "oauth.client_id", "a string");
		return;
	}
	v = config_setting_get_string(s);
	if (v[0] == '\0' || strlen(v) > CLIENT_ID_MAX ||
	    !cfg_is_printable(v) || strchr(v, ' ') != NULL) {
		cfg_error(ctx, s, "oauth.client_id: must be the OAuth client "
		    "ID as the provider shows it (1 to %d characters, no "
		    "spaces)", CLIENT_ID_MAX);
		return;
	}
	cfg_set_str(&ctx->cfg->upstream.oauth.client_id, cfg_strdup(ctx, v));
}

/* True for "https://host[:port]/..." with a host. */
static bool
cfg_is_https_url(const char *v)
{
	const char *host = v + 8;

	return strncasecmp(v, "https://", 8) == 0 &&
	    strlen(v) <= CFG_STRING_MAX && cfg_is_printable(v) &&
	    strchr(v, ' ') == NULL && host[0] != '\0' && host[0] != '/' &&
	    host[0] != ':' && strchr(host, '@') == NULL &&
	    strchr(host, '#') == NULL;
}

/* upstream.oauth.token_url: https only. */
static void
cfg_load_token_url(struct cfg_ctx *ctx, const config_setting_t *s)
{
	const char *v;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cfg_type_error(ctx, s, "oauth.token_url", "a string");
		return;
	}
	v = config_setting_get_string(s);
	if (!cfg_is_https_url(v)) {
		cfg_error(ctx, s, "oauth.token_url: must be an https:// URL "
		    "with a host (the client secret and the refresh token go "
		    "to it)");
		return;
	}
	cfg_set_str(&ctx->cfg->upstream.oauth.token_url, cfg_strdup(ctx, v));
}

void
cfg_load_oauth(struct cfg_ctx *ctx, const config_setting_t *s)
{
	struct cfg_oauth *o = &ctx->cfg->upstream.oauth;
	const struct cfg_key keys[] = {
		{ "provider", K_CUSTOM, NULL, 0, 0, cfg_load_provider },
		{ "tenant", K_CUSTOM, NULL, 0, 0, cfg_load_tenant },
		{ "grant", K_CUSTOM, NULL, 0, 0, cfg_load_grant },
		{ "client_id", K_CUSTOM, NULL, 0, 0, cfg_load_client_id },
		{ "client_secret_file", K_PATH, &o->client_secret_file, 0, 0,
		    NULL },
		{ "refresh_token_file", K_PATH, &o->refresh_token_file, 0, 0,
		    NULL },
		{ "token_url", K_CUSTOM, NULL, 0, 0, cfg_load_token_url },
		{ "scope", K_STRING, &o->scope, 0, 0, NULL },
		{ "ca_file", K_PATH, &o->ca_file, 0, 0, NULL },
	};

	cfg_walk_group(ctx, s, keys, NELEM(keys));
}

/* The setting at path, else the group, else the auth key: where to report. */
static const config_setting_t *
cfg_oauth_at(const config_t *lc, const char *path)
{
	const config_setting_t *s;

	if ((s = config_lookup(lc, path)) != NULL)
		return s;
	if ((s = config_lookup(lc, "upstream.oauth")) != NULL)
		return s;
	return config_lookup(lc, "upstream.auth");
}

/* The rules of a provider: tenant and grant. */
static void
cfg_check_provider(struct cfg_ctx *ctx, const config_t *lc)
{
	struct cfg_oauth *o = &ctx->cfg->upstream.oauth;

	if (o->tenant != NULL && o->provider != CFG_OAUTH_MICROSOFT)
		cfg_error(ctx, cfg_oauth_at(lc, "upstream.oauth.tenant"),
		    "oauth.tenant is only used with provider = \"microsoft\"");
	if (o->grant == CFG_GRANT_CLIENT_CREDENTIALS &&
	    o->provider == CFG_OAUTH_GOOGLE)
		cfg_error(ctx, cfg_oauth_at(lc, "upstream.oauth.grant"),
		    "oauth.grant: Google does not give SMTP access with "
		    "\"client_credentials\"; use \"refresh_token\" and run "
		    "`smartrelay oauth` once");
	if (o->provider == CFG_OAUTH_CUSTOM && o->token_url == NULL)
		cfg_error(ctx, cfg_oauth_at(lc, "upstream.oauth.provider"),
		    "oauth.provider = \"custom\" needs oauth.token_url");
}

/* The files and keys each grant needs. */
static void
cfg_check_grant(struct cfg_ctx *ctx, const config_t *lc)
{
	struct cfg_upstream *u = &ctx->cfg->upstream;
	struct cfg_oauth *o = &u->oauth;

	if (u->username == NULL)
		cfg_error(ctx, config_lookup(lc, "upstream.auth"),
		    "auth = \"xoauth2\" needs upstream.username: the mailbox "
		    "the token belongs to");
	if (o->client_id == NULL)
		cfg_error(ctx, cfg_oauth_at(lc, "upstream.oauth"),
		    "auth = \"xoauth2\" needs oauth.client_id");
	if (o->grant == CFG_GRANT_REFRESH_TOKEN && o->refresh_token_file ==
	    NULL)
		cfg_error(ctx, cfg_oauth_at(lc, "upstream.oauth"),
		    "oauth.grant = \"refresh_token\" needs "
		    "oauth.refresh_token_file (written by `smartrelay oauth`)");
	if (o->grant == CFG_GRANT_CLIENT_CREDENTIALS &&
	    o->client_secret_file == NULL)
		cfg_error(ctx, cfg_oauth_at(lc, "upstream.oauth"),
		    "oauth.grant = \"client_credentials\" needs "
		    "oauth.client_secret_file");
	if (o->grant == CFG_GRANT_CLIENT_CREDENTIALS &&
	    o->refresh_token_file != NULL)
		cfg_error(ctx, cfg_oauth_at(lc,
		    "upstream.oauth.refresh_token_file"),
		    "oauth.refresh_token_file is not used with grant = "
		    "\"client_credentials\"");
	if (u->password_file != NULL)
		cfg_error(ctx, config_lookup(lc, "upstream.password_file"),
		    "upstream.password_file is not used with auth = "
		    "\"xoauth2\": remove it (or set auth = \"password\")");
}

/* Fills in the provider's token URL and scope when not given. */
static void
cfg_oauth_defaults(struct cfg_ctx *ctx)
{
	struct cfg_oauth *o = &ctx->cfg->upstream.oauth;
	const char *scope = NULL;
	char *url;

	if (o->provider == CFG_OAUTH_MICROSOFT && o->tenant == NULL)
		o->tenant = cfg_strdup(ctx, MS_DEFAULT_TENANT);
	if (o->token_url == NULL && o->provider == CFG_OAUTH_GOOGLE)
		o->token_url = cfg_strdup(ctx, GOOGLE_TOKEN_URL);
	if (o->token_url == NULL && o->provider == CFG_OAUTH_MICROSOFT &&
	    o->tenant != NULL) {
		if (asprintf(&url, MS_TOKEN_URL, o->tenant) == -1)
			ctx->oom = 1;
		else
			o->token_url = url;
	}
	if (o->provider == CFG_OAUTH_GOOGLE)
		scope = GOOGLE_SCOPE;
	else if (o->provider == CFG_OAUTH_MICROSOFT)
		scope = o->grant == CFG_GRANT_CLIENT_CREDENTIALS ?
		    MS_SCOPE_APP : MS_SCOPE_DELEGATED;
	if (o->scope == NULL && scope != NULL)
		o->scope = cfg_strdup(ctx, scope);
}

void
cfg_check_oauth(struct cfg_ctx *ctx, const config_t *lc)
{
	const config_setting_t *group = config_lookup(lc, "upstream.oauth");

	if (ctx->cfg->upstream.auth != CFG_AUTH_XOAUTH2) {
		if (group != NULL)
			cfg_error(ctx, group, "upstream.oauth is only used "
			    "with upstream.auth = \"xoauth2\"");
		return;
	}
	if (group == NULL) {
		cfg_error(ctx, config_lookup(lc, "upstream.auth"),
		    "auth = \"xoauth2\" needs an upstream.oauth group "
		    "(provider, client_id, ...; see docs/oauth.md)");
		return;
	}
	cfg_check_provider(ctx, lc);
	cfg_check_grant(ctx, lc);
	cfg_oauth_defaults(ctx);
}

void
cfg_oauth_free(struct cfg_oauth *o)
{
	free(o->tenant);
	free(o->client_id);
	free(o->client_secret_file);
	free(o->refresh_token_file);
	free(o->token_url);
	free(o->scope);
	free(o->ca_file);
	memset(o, 0, sizeof(*o));
}
