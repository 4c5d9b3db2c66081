/*
 * smtpproto: EHLO keywords, AUTH encoders, MAIL/RCPT parameters and
 * recipient addresses.  See smtpproto.h; the advice table is in
 * smtpproto_advice.c.
 */
#include "smtpproto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "addr.h"
#include "cfg.h"
#include "queue.h"
#include "reply.h"

/* ---- EHLO ---- */

/* An EHLO keyword and its bit. */
struct smtpproto_kw {
	const char *word;
	unsigned bit;
};

static const struct smtpproto_kw smtpproto_keywords[] = {
	{ "STARTTLS", SMTPPROTO_EXT_STARTTLS },
	{ "PIPELINING", SMTPPROTO_EXT_PIPELINING },
	{ "8BITMIME", SMTPPROTO_EXT_8BITMIME },
	{ "SMTPUTF8", SMTPPROTO_EXT_SMTPUTF8 },
	{ "SIZE", SMTPPROTO_EXT_SIZE },
	{ "AUTH", SMTPPROTO_EXT_AUTH },
	{ "CHUNKING", SMTPPROTO_EXT_CHUNKING },
	{ "DSN", SMTPPROTO_EXT_DSN },
	{ "ENHANCEDSTATUSCODES", SMTPPROTO_EXT_ENHANCED },
};

static const struct smtpproto_kw smtpproto_mechs[] = {
	{ "PLAIN", SMTPPROTO_EXT_AUTH_PLAIN },
	{ "LOGIN", SMTPPROTO_EXT_AUTH_LOGIN },
	{ "XOAUTH2", SMTPPROTO_EXT_AUTH_XOAUTH2 },
	{ "OAUTHBEARER", SMTPPROTO_EXT_AUTH_OAUTHBEARER },
};

/* The bit of the word p (len bytes) in a table, 0 when not there. */
static unsigned
smtpproto_kw_bit(const struct smtpproto_kw *t, size_t n, const char *p,
    size_t len)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(t[i].word) == len &&
		    strncasecmp(t[i].word, p, len) == 0)
			return t[i].bit;
	return 0;
}

/* The mechanism bits of an AUTH keyword's value (p, len bytes). */
static unsigned
smtpproto_auth_mechs(const char *p, size_t len)
{
	const char *end = p + len;
	unsigned ext = 0;
	size_t ml;

	while (p < end) {
		while (p < end && *p == ' ')
			p++;
		for (ml = 0; p + ml < end && p[ml] != ' '; ml++)
			;
		ext |= smtpproto_kw_bit(smtpproto_mechs, sizeof(smtpproto_mechs)
		    / sizeof(smtpproto_mechs[0]), p, ml);
		p += ml;
	}
	return ext;
}

/* One keyword line of an EHLO reply (not the first). */
static void
smtpproto_ehlo_line(struct smtpproto_ehlo *e, const char *line, size_t len)
{
	size_t wl = 0;
	const char *v;
	unsigned bit;
	int vl;

	while (wl < len && line[wl] != ' ')
		wl++;
	bit = smtpproto_kw_bit(smtpproto_keywords, sizeof(smtpproto_keywords)
	    / sizeof(smtpproto_keywords[0]), line, wl);
	e->ext |= bit;
	for (v = line + wl; v < line + len && *v == ' '; v++)
		;
	vl = (int)(line + len - v);
	if (bit == SMTPPROTO_EXT_SIZE) {
		char num[32], *end;

		snprintf(num, sizeof(num), "%.*s", vl, v);
		e->size = strtoull(num, &end, 10);
		if (*end != '\0' || num[0] == '-')
			e->size = 0;
	} else if (bit == SMTPPROTO_EXT_AUTH) {
		snprintf(e->auth, sizeof(e->auth), "%.*s", vl, v);
		e->ext |= smtpproto_auth_mechs(v, (size_t)vl);
	}
}

void
smtpproto_ehlo_parse(const struct reply *r, struct smtpproto_ehlo *e)
{
	const char *line;
	size_t pos = 0, len;
	bool first = true;

	memset(e, 0, sizeof(*e));
	while (reply_next_line(r, &pos, &line, &len)) {
		if (!first)
			smtpproto_ehlo_line(e, line, len);
		first = false;
	}
}

/* ---- AUTH ---- */

enum smtpproto_mech
smtpproto_auth_choose(unsigned ext)
{
	if (ext & SMTPPROTO_EXT_AUTH_PLAIN)
		return SMTPPROTO_MECH_PLAIN;
	if (ext & SMTPPROTO_EXT_AUTH_LOGIN)
		return SMTPPROTO_MECH_LOGIN;
	return SMTPPROTO_MECH_NONE;
}

const char *
smtpproto_mech_name(enum smtpproto_mech m)
{
	switch (m) {
	case SMTPPROTO_MECH_PLAIN:
		return "PLAIN";
	case SMTPPROTO_MECH_LOGIN:
		return "LOGIN";
	case SMTPPROTO_MECH_OAUTHBEARER:
		return "OAUTHBEARER";
	case SMTPPROTO_MECH_XOAUTH2:
		return "XOAUTH2";
	case SMTPPROTO_MECH_NONE:
		break;
	}
	return "none";
}

int
smtpproto_b64_line(const char *prefix, const void *raw, size_t rawlen,
    char **line, size_t *len)
{
	size_t plen = strlen(prefix), blen = 4 * ((rawlen + 2) / 3);
	char *buf;

	*line = NULL;
	if (rawlen > INT32_MAX / 2 || (buf = malloc(plen + blen + 3)) == NULL)
		return -ENOMEM;
	memcpy(buf, prefix, plen);
	EVP_EncodeBlock((unsigned char *)buf + plen, raw, (int)rawlen);
	buf[plen + blen] = '\0';
	*line = buf;
	*len = plen + blen;
	return 0;
}

int
smtpproto_auth_plain(const char *user, const char *pw, size_t pwlen,
    char **line, size_t *len)
{
	size_t ul = strlen(user), n = 2 + ul + pwlen;
	unsigned char *raw;
	int r;

	if ((raw = malloc(n)) == NULL)
		return -ENOMEM;
	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, pw, pwlen);
	r = smtpproto_b64_line("AUTH PLAIN ", raw, n, line, len);
	explicit_bzero(raw, n);
	free(raw);
	return r;
}

int
smtpproto_auth_login(char **line, size_t *len)
{
	static const char cmd[] = "AUTH LOGIN";

	if ((*line = malloc(sizeof(cmd) + 2)) == NULL)
		return -ENOMEM;
	memcpy(*line, cmd, sizeof(cmd));
	*len = sizeof(cmd) - 1;
	return 0;
}

int
smtpproto_auth_login_step(unsigned step, const char *user, const char *pw,
    size_t pwlen, char **line, size_t *len)
{
	*line = NULL;
	if (step == 0)
		return smtpproto_b64_line("", user, strlen(user), line, len);
	if (step == 1)
		return smtpproto_b64_line("", pw, pwlen, line, len);
	return -EPROTO;
}

enum smtpproto_mech
smtpproto_oauth_choose(unsigned ext)
{
	if (ext & SMTPPROTO_EXT_AUTH_OAUTHBEARER)
		return SMTPPROTO_MECH_OAUTHBEARER;
	if (ext & SMTPPROTO_EXT_AUTH_XOAUTH2)
		return SMTPPROTO_MECH_XOAUTH2;
	return SMTPPROTO_MECH_NONE;
}

/* A name fit for the OAuth formats: no control character, ',' or '='
 * (RFC 5801 §4 would escape them; mailbox names never need it). */
static bool
smtpproto_oauth_name_ok(const char *s)
{
	const char *p;

	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == ',' ||
		    *p == '=')
			return false;
	return p != s;
}

/* Builds head + token + "^A^A" and encodes it after prefix. */
static int
smtpproto_oauth_line(const char *prefix, const char *head, const char *tok,
    size_t toklen, char **line, size_t *len)
{
	size_t hl = strlen(head), n = hl + toklen + 2;
	char *raw;
	int r;

	*line = NULL;
	if (toklen > INT32_MAX / 4 || (raw = malloc(n)) == NULL)
		return -ENOMEM;
	memcpy(raw, head, hl);
	memcpy(raw + hl, tok, toklen);
	memcpy(raw + hl + toklen, "\001\001", 2);
	r = smtpproto_b64_line(prefix, raw, n, line, len);
	explicit_bzero(raw, n);
	free(raw);
	return r;
}

int
smtpproto_auth_xoauth2(const char *user, const char *tok, size_t toklen,
    char **line, size_t *len)
{
	char head[600];

	*line = NULL;
	if (!smtpproto_oauth_name_ok(user) || (size_t)snprintf(head,
	    sizeof(head), "user=%s\001auth=Bearer ", user) >= sizeof(head))
		return -EINVAL;
	return smtpproto_oauth_line("AUTH XOAUTH2 ", head, tok, toklen, line,
	    len);
}

int
smtpproto_auth_oauthbearer(const char *user, const char *host, unsigned port,
    const char *tok, size_t toklen, char **line, size_t *len)
{
	char head[900];

	*line = NULL;
	if (!smtpproto_oauth_name_ok(user) || !smtpproto_oauth_name_ok(host) ||
	    (size_t)snprintf(head, sizeof(head), "n,a=%s,\001host=%s\001"
	    "port=%u\001auth=Bearer ", user, host, port) >= sizeof(head))
		return -EINVAL;
	return smtpproto_oauth_line("AUTH OAUTHBEARER ", head, tok, toklen,
	    line, len);
}

const char *
smtpproto_oauth_abort(enum smtpproto_mech m)
{
	return m == SMTPPROTO_MECH_OAUTHBEARER ? "AQ==" : "";
}

void
smtpproto_line_free(char *line, size_t len)
{
	if (line == NULL)
		return;
	explicit_bzero(line, len);
	free(line);
}

/* ---- MAIL and RCPT ---- */

/* True when the parameter p (len bytes) is word, ignoring case. */
static bool
smtpproto_param_is(const char *p, size_t len, const char *word)
{
	return len == strlen(word) && strncasecmp(p, word, len) == 0;
}

/* SIZE=value (p, len bytes, after "SIZE="); 0 or -EINVAL with reply. */
static int
smtpproto_size(const char *p, size_t len, uint64_t limit,
    struct smtpproto_mail *m, char *reply, size_t sz)
{
	unsigned long long size;
	char *end;

	errno = 0;
	size = strtoull(p, &end, 10);
	if (end != p + len || errno != 0 || *p == '-' || len == 0) {
		snprintf(reply, sz, "501 5.5.4 Bad SIZE parameter");
		return -EINVAL;
	}
	if (size > limit) {
		snprintf(reply, sz, "552 5.3.4 Message size exceeds fixed "
		    "limit of %" PRIu64 " bytes", limit);
		return -EINVAL;
	}
	m->size = size;
	return 0;
}

/* The refusal of a parameter we do not know. */
static int
smtpproto_unsupported(const char *p, size_t len, char *reply, size_t sz)
{
	snprintf(reply, sz, "555 5.5.4 Unsupported parameter: %.*s",
	    (int)(len > 40 ? 40 : len), p);
	return -EINVAL;
}

int
smtpproto_mail_params(const char *p, uint64_t limit, bool dsn,
    struct smtpproto_mail *m, char *reply, size_t sz)
{
	const char *why = NULL;
	size_t len;
	int r;

	memset(m, 0, sizeof(*m));
	for (p += strspn(p, " "); *p != '\0'; p += strspn(p, " ")) {
		len = strcspn(p, " ");
		r = dsn ? dsnparam_mail(&m->dsn, p, len, &why) : 1;
		if (r < 0) {
			snprintf(reply, sz, "%s", why);
			return -EINVAL;
		}
		if (r == 0)
			;
		else if (len > 5 && strncasecmp(p, "SIZE=", 5) == 0) {
			if (smtpproto_size(p + 5, len - 5, limit, m, reply,
			    sz) < 0)
				return -EINVAL;
		} else if (smtpproto_param_is(p, len, "BODY=8BITMIME"))
			m->flags |= QUEUE_F_8BITMIME;
		else if (smtpproto_param_is(p, len, "SMTPUTF8"))
			m->flags |= QUEUE_F_SMTPUTF8;
		else if (!smtpproto_param_is(p, len, "BODY=7BIT"))
			return smtpproto_unsupported(p, len, reply, sz);
		p += len;
	}
	return 0;
}

int
smtpproto_rcpt_params(const char *p, struct dsnparam_rcpt *d, char *reply,
    size_t sz)
{
	const char *why = NULL;
	size_t len;
	int r;

	if (d != NULL)
		memset(d, 0, sizeof(*d));
	for (p += strspn(p, " "); *p != '\0'; p += strspn(p, " ")) {
		len = strcspn(p, " ");
		r = d != NULL ? dsnparam_rcpt(d, p, len, &why) : 1;
		if (r < 0) {
			snprintf(reply, sz, "%s", why);
			return -EINVAL;
		}
		if (r == 1)
			return smtpproto_unsupported(p, len, reply, sz);
		p += len;
	}
	return 0;
}

/* A bare name through aliases and local_domain into out (in place). */
static int
smtpproto_rcpt_resolve(const struct cfg *cfg, char *out, size_t sz)
{
	char bare[ADDR_MAX];

	if (!addr_is_bare(out))
		return 0;
	snprintf(bare, sizeof(bare), "%s", out);
	if (addr_resolve_local(bare, cfg->rewrite.aliases,
	    cfg->rewrite.naliases, cfg->rewrite.local_domain, out, sz) < 0) {
		snprintf(out, sz, "%s", bare);
		return -EDESTADDRREQ;
	}
	return 0;
}

int
smtpproto_rcpt_addr(const struct cfg *cfg, const char *path, char *out,
    size_t sz)
{
	const char *rest;

	if (addr_parse_path(path, out, sz, &rest) < 0 || *out == '\0' ||
	    *rest != '\0')
		return -EINVAL;
	return smtpproto_rcpt_resolve(cfg, out, sz);
}

int
smtpproto_rcpt(const struct cfg *cfg, const char *arg, char *out, size_t sz,
    struct dsnparam_rcpt *d, char *reply, size_t rsz)
{
	const char *rest;
	int r;

	if (addr_parse_path(arg, out, sz, &rest) < 0 || *out == '\0') {
		snprintf(reply, rsz, "501 5.1.3 Bad recipient address syntax");
		return -EINVAL;
	}
	if (smtpproto_rcpt_params(rest, d, reply, rsz) < 0)
		return -EINVAL;
	if ((r = smtpproto_rcpt_resolve(cfg, out, sz)) < 0) {
		snprintf(reply, rsz, "550 5.1.1 <%.300s>: Recipient address "
		    "needs a domain (no alias and no local_domain)", out);
		return r;
	}
	return 0;
}

int
smtpproto_qualify_sender(const struct cfg *cfg, char *from, size_t sz)
{
	char tmp[ADDR_MAX];
	const char *domain;

	if (*from == '\0' || !addr_is_bare(from))
		return 0;
	domain = cfg->rewrite.local_domain != NULL ?
	    cfg->rewrite.local_domain : cfg->hostname;
	if (snprintf(tmp, sizeof(tmp), "%s@%s", from, domain) >=
	    (int)sizeof(tmp) || strlen(tmp) >= sz)
		return -ENAMETOOLONG;
	memcpy(from, tmp, strlen(tmp) + 1);
	return 0;
}
