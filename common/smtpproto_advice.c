/*
 * smtpproto_advice: the one table of advice texts for what can go wrong
 * between smartrelay and its upstream (docs/relay.md, the failure table).
 *
 * Each row says what a reply (or a local failure) means, what smartrelay
 * does about it and what the person running it should do.  The daemon logs
 * the fix with the failure ("upstream login refused: ...; fix: ..."),
 * `smartrelay status` prints it under the upstream state, and the doctor
 * (`smartrelay test`) prints it under the step that failed; a test checks
 * the documentation's rows against smtpproto_advice_find().  A text change
 * here changes all of them at once.
 *
 * Reply rows are found by code, enhanced code and, where the codes alone
 * do not tell two answers apart (Gmail's two 530 5.7.0), a few words of
 * the reply's text, compared without case.
 */
#include "smtpproto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509_vfy.h>

#include "cfg.h"
#include "reply.h"

#define APP_PW_URL	"https://myaccount.google.com/apppasswords"
#define PORTS_HINT	"Gmail listens on port 587 and on port 465: port 587 " \
	"needs tls = \"starttls\", port 465 needs tls = \"implicit\"."
#define M365_SMTP_AUTH_ON "have an administrator turn on Authenticated " \
	"SMTP for the mailbox (Microsoft 365 admin center > Users > the " \
	"mailbox > Mail > Manage email apps) and check that the tenant " \
	"allows it (SmtpClientAuthentication, security defaults)"

static const struct smtpproto_advice smtpproto_replies[] = {
	{ "530 5.7.0 STARTTLS", 530, "5.7.0", "STARTTLS", SMTPPROTO_ACT_PAUSE,
	    "the server wants TLS before AUTH or MAIL",
	    "smartrelay only logs in over verified TLS, so the connection "
	    "was not what upstream.tls says: use tls = \"starttls\" for port "
	    "587 or tls = \"implicit\" for port 465" },
	{ "530 5.7.0", 530, NULL, NULL, SMTPPROTO_ACT_PAUSE,
	    "the server wants a login before mail",
	    "set upstream.username and the password (upstream.password_file)"
	    "; nothing bounces meanwhile" },
	{ "535 5.7.139", 535, "5.7.139", NULL, SMTPPROTO_ACT_PAUSE,
	    "Microsoft 365 refused the login: SMTP AUTH is disabled for the "
	    "mailbox or the tenant (security defaults), or the password is "
	    "wrong",
	    "Microsoft 365 refuses SMTP AUTH for the tenant or the mailbox: "
	    M365_SMTP_AUTH_ON ", or use auth = \"xoauth2\" (docs/oauth.md)." },
	{ "535 5.7.3", 535, "5.7.3", NULL, SMTPPROTO_ACT_PAUSE,
	    "Microsoft 365 refused the login (authentication unsuccessful)",
	    "Microsoft 365 did not accept the login (wrong password or token, "
	    "or SMTP AUTH is off for the mailbox): check upstream.username "
	    "(now \"{username}\") and the password in {password_file}, and "
	    "for xoauth2 run `smartrelay oauth` again and check the app's "
	    "SMTP.Send permission." },
	{ "535 5.7.8", 535, NULL, NULL, SMTPPROTO_ACT_PAUSE,
	    "the user name or the password was not accepted",
	    "username or password not accepted: for Gmail use an App "
	    "Password, not the account password; check upstream.username is "
	    "the full address (now \"{username}\"). App Passwords (16 "
	    "letters; they need 2-Step Verification) are made at " APP_PW_URL
	    " and go on the first line of {password_file}." },
	{ "534 5.7.9", 534, "5.7.9", NULL, SMTPPROTO_ACT_PAUSE,
	    "the account has 2-Step Verification, so the account password "
	    "cannot log in",
	    "this Google account has 2-Step Verification: create an App "
	    "Password at " APP_PW_URL " and put it in {password_file} (its "
	    "first line; the spaces Google shows may stay)." },
	{ "534 5.7.14", 534, "5.7.14", NULL, SMTPPROTO_ACT_PAUSE,
	    "Google blocked the sign-in until the owner confirms it",
	    "Google wants a web login first: sign in at "
	    "https://accounts.google.com from this network, then retry. "
	    "Google blocks logins it finds suspicious (a new place or device) "
	    "until the owner confirms them in a web browser; an App Password "
	    "avoids most of this." },
	{ "454 4.7.0", 454, NULL, NULL, SMTPPROTO_ACT_PAUSE,
	    "the server throttles logins for this account",
	    "too many login attempts: wait a few minutes, up to an hour, "
	    "before trying again (smartrelay reuses one session, so this "
	    "usually comes from other clients logging in with this account, "
	    "or a loop of tests). smartrelay retries with backoff." },
	{ "550 5.7.30", 550, "5.7.30", NULL, SMTPPROTO_ACT_PAUSE,
	    "basic authentication (a password) is not supported for this "
	    "mailbox (Microsoft 365)",
	    "Microsoft 365 has basic authentication (password) turned off "
	    "for SMTP: switch to auth = \"xoauth2\" (docs/oauth.md), or " 
	    M365_SMTP_AUTH_ON },
	{ "550 5.4.5", 550, "5.4.5", NULL, SMTPPROTO_ACT_PAUSE,
	    "the account's daily sending limit is reached",
	    "daily sending limit reached: it resets within 24 hours (a "
	    "rolling window, counted from each message sent). smartrelay "
	    "keeps mail queued meanwhile and sends it later; nothing "
	    "bounces." },
	{ "554 5.2.252", 554, "5.2.252", NULL, SMTPPROTO_ACT_BOUNCE,
	    "the server refuses to send as this sender (Microsoft 365 "
	    "SendAsDenied)",
	    "Microsoft 365 only sends as the mailbox itself or addresses it "
	    "may send as: set rewrite.envelope_from and rewrite.header_from "
	    "to the mailbox address ({username})." },
	{ "550 5.7.1 RFC 5322", 550, "5.7.1", "RFC 5322", SMTPPROTO_ACT_BOUNCE,
	    "Gmail refuses a message that is not RFC 5322 compliant (a "
	    "missing or malformed From:, Date: or Message-ID:)",
	    "fix the program that wrote the message; smartrelay adds Date: "
	    "and Message-ID: when they are missing." },
	{ "552 5.3.4", 552, NULL, NULL, SMTPPROTO_ACT_BOUNCE,
	    "the message is larger than the server accepts",
	    "the message is too big for the server: keep limits.message_size "
	    "under the server's SIZE (Gmail: 35882577 octets, about 25 MB of "
	    "attachments)." },
	{ "550 5.1.1", 550, "5.1.1", NULL, SMTPPROTO_ACT_BOUNCE,
	    "the recipient's address does not exist",
	    "check the recipient's address; that recipient bounces, the "
	    "others go on." },
	{ "553 5.1.3", 553, "5.1.3", NULL, SMTPPROTO_ACT_BOUNCE,
	    "the recipient's address is not a valid RFC 5321 address",
	    "check the recipient's address; that recipient bounces, the "
	    "others go on." },
	{ "452 4.5.3", 452, "4.5.3", NULL, SMTPPROTO_ACT_RETRY,
	    "too many recipients in one message for the server",
	    "smartrelay retries; keep limits.recipients at or under the "
	    "server's limit (Gmail: 100)." },
	{ "421 4.3.0", 421, "4.3.0", NULL, SMTPPROTO_ACT_RETRY,
	    "a temporary problem of the server, possibly after it took the "
	    "message",
	    "nothing to do: smartrelay retries with backoff. After the final "
	    "dot the server may have delivered the message anyway, so the "
	    "retry may duplicate it (RFC 1047)." },
	{ "451 4.3.0", 451, "4.3.0", NULL, SMTPPROTO_ACT_RETRY,
	    "a temporary problem of the server, possibly after it took the "
	    "message",
	    "nothing to do: smartrelay retries with backoff. After the final "
	    "dot the server may have delivered the message anyway, so the "
	    "retry may duplicate it (RFC 1047)." },
	{ "421 4.7.0", 421, "4.7.0", NULL, SMTPPROTO_ACT_RETRY,
	    "the server will not talk to us now (Gmail says this when it "
	    "throttles this IP address or network)",
	    "the server will not talk to us now and closes the connection. "
	    "This is temporary: try again later. smartrelay keeps mail queued "
	    "and retries with backoff." },
	{ "421", 421, NULL, NULL, SMTPPROTO_ACT_RETRY,
	    "the server closes the connection",
	    "the server will not talk to us now and closes the connection. "
	    "This is temporary: try again later. smartrelay keeps mail queued "
	    "and retries with backoff." },
};

/* Indexed by enum smtpproto_local. */
static const struct smtpproto_advice smtpproto_locals[] = {
	[SMTPPROTO_LOCAL_RESOLVE] = { "resolve", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY, "the upstream's name does not resolve",
	    "cannot resolve {host}: check the name and DNS (upstream.host; "
	    "for Gmail it is smtp.gmail.com; /etc/resolv.conf, or resolvectl "
	    "query {host} with systemd-resolved)." },
	[SMTPPROTO_LOCAL_REFUSED] = { "connect-refused", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY, "the connection was refused",
	    "Connection refused: nothing accepts connections on port {port} "
	    "of {host} (or a firewall rejects them). Check upstream.port. "
	    PORTS_HINT },
	[SMTPPROTO_LOCAL_TIMEOUT] = { "connect-timeout", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY, "the connection was not answered",
	    "No answer: a firewall drops the connection (here, on the way, "
	    "or at your hosting provider: many block outgoing ports 25, 465 "
	    "and 587), or the host or port is wrong. " PORTS_HINT },
	[SMTPPROTO_LOCAL_UNREACHABLE] = { "connect-unreachable", 0, NULL,
	    NULL, SMTPPROTO_ACT_RETRY, "no route to the upstream",
	    "The network is unreachable from here (no route; for IPv6 "
	    "addresses, this machine may have no IPv6 connectivity)." },
	[SMTPPROTO_LOCAL_PLAINTEXT] = { "plaintext-not-loopback", 0, NULL,
	    NULL, SMTPPROTO_ACT_RETRY,
	    "tls = \"none\" would send the password in clear text to an "
	    "address that is not loopback",
	    "tls = \"none\" is only for a server on this machine: {host} must "
	    "resolve to 127.0.0.1 or ::1 (check /etc/hosts). For any other "
	    "server use tls = \"starttls\" or \"implicit\"." },
	[SMTPPROTO_LOCAL_NO_STARTTLS] = { "no-starttls", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY, "the server does not offer STARTTLS",
	    "the server does not offer STARTTLS: if this is port 465 set "
	    "tls = \"implicit\". smartrelay never sends the password or mail "
	    "over a connection without TLS." },
	[SMTPPROTO_LOCAL_PLAIN_PORT] = { "tls-plain-port", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY,
	    "the server speaks plain SMTP where TLS was expected",
	    "this port speaks plain SMTP first: use tls = \"starttls\" (port "
	    "587). tls = \"implicit\" is for servers that start with TLS "
	    "(port 465)." },
	[SMTPPROTO_LOCAL_TLS_PORT] = { "tls-implicit-port", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY,
	    "the server waits for a TLS handshake and sends no greeting",
	    "The server answers a TLS handshake instead: this port expects "
	    "TLS from the first byte (implicit TLS, port 465). Set tls = "
	    "\"implicit\" for this port, or use port 587 with tls = "
	    "\"starttls\"." },
	[SMTPPROTO_LOCAL_CERT_UNTRUSTED] = { "tls-cert-untrusted", 0, NULL,
	    NULL, SMTPPROTO_ACT_RETRY,
	    "the server's certificate does not lead to a trusted CA",
	    "the certificate is not signed by a trusted CA (ca_file / system "
	    "store): the chain does not lead to a CA in {trust}. With the "
	    "system store install the CA bundle (ca-certificates); with "
	    "upstream.ca_file, make it the CA that signed the server's "
	    "certificate." },
	[SMTPPROTO_LOCAL_CERT_NAME] = { "tls-cert-name", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY,
	    "the server's certificate is for another name",
	    "Set upstream.host to a name the certificate carries (for Gmail: "
	    "smtp.gmail.com), not an IP address or an alias (now \"{host}\"). "
	    "If the host is right, something between here and the server (a "
	    "proxy, an antivirus) intercepts TLS." },
	[SMTPPROTO_LOCAL_CERT_DATES] = { "tls-cert-dates", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY,
	    "the server's certificate is outside its validity period",
	    "The certificate is outside its validity period. Check this "
	    "machine's clock first (date; timedatectl)." },
	[SMTPPROTO_LOCAL_TLS] = { "tls-handshake", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY, "the TLS handshake failed",
	    "The TLS handshake with {host} failed. Check that upstream.port "
	    "and upstream.tls belong together: port 587 needs tls = "
	    "\"starttls\", port 465 needs tls = \"implicit\"." },
	[SMTPPROTO_LOCAL_OAUTH_TEMP] = { "oauth-temporary", 0, NULL, NULL,
	    SMTPPROTO_ACT_PAUSE, "the OAuth token endpoint could not be "
	    "reached or gave no usable answer",
	    "the token endpoint could not be reached or failed; smartrelay "
	    "retries with backoff; if it lasts, check the network, DNS, "
	    "oauth.token_url and oauth.ca_file" },
	[SMTPPROTO_LOCAL_OAUTH_GRANT] = { "oauth-invalid_grant", 0, NULL,
	    NULL, SMTPPROTO_ACT_PAUSE, "the refresh token was refused",
	    "the refresh token was revoked or has expired (password change, "
	    "consent withdrawn, unused for 90 days, or a policy): run "
	    "`smartrelay oauth` again (docs/oauth.md)" },
	[SMTPPROTO_LOCAL_OAUTH_GRANT_GOOGLE] = { "oauth-invalid_grant-google",
	    0, NULL, NULL, SMTPPROTO_ACT_PAUSE,
	    "Google refused the refresh token",
	    "Google refused the refresh token (revoked, expired, or the "
	    "password changed): run `smartrelay oauth` again; if it worked "
	    "for about a week, the OAuth consent screen is in \"Testing\", "
	    "where refresh tokens expire after 7 days: set it to \"In "
	    "production\" and sign in again (docs/oauth.md)" },
	[SMTPPROTO_LOCAL_OAUTH_CLIENT] = { "oauth-invalid_client", 0, NULL,
	    NULL, SMTPPROTO_ACT_PAUSE, "the token endpoint refused the client",
	    "the token endpoint refused the client: check oauth.client_id and "
	    "the secret in oauth.client_secret_file (Microsoft client secrets "
	    "expire: make a new one under Certificates & secrets)" },
	[SMTPPROTO_LOCAL_OAUTH_REFUSED] = { "oauth-refused", 0, NULL, NULL,
	    SMTPPROTO_ACT_PAUSE, "the token endpoint refused the request",
	    "the token endpoint refused the request: check oauth.scope, "
	    "oauth.tenant and oauth.token_url; for Microsoft 365 app-only, "
	    "that the app has SMTP.SendAsApp with admin consent and an "
	    "Exchange service principal (docs/oauth.md)" },
	[SMTPPROTO_LOCAL_OAUTH_PENDING] = { "oauth-pending", 0, NULL, NULL,
	    SMTPPROTO_ACT_RETRY, "the sign-in is not finished",
	    "waiting for the sign-in in the browser" },
	[SMTPPROTO_LOCAL_OAUTH_EXPIRED] = { "oauth-expired_token", 0, NULL,
	    NULL, SMTPPROTO_ACT_PAUSE, "the sign-in code expired",
	    "the sign-in code expired: run `smartrelay oauth` again and sign "
	    "in within the time shown" },
	[SMTPPROTO_LOCAL_OAUTH_DENIED] = { "oauth-access_denied", 0, NULL,
	    NULL, SMTPPROTO_ACT_PAUSE, "the sign-in was declined",
	    "the sign-in was declined: run `smartrelay oauth` again and "
	    "accept the permissions" },
	[SMTPPROTO_LOCAL_OAUTH_FILE] = { "oauth-local", 0, NULL, NULL,
	    SMTPPROTO_ACT_PAUSE, "a token or secret file cannot be used",
	    "fix the file named in the message (the refresh token file is "
	    "written by `smartrelay oauth`; its directory must be writable "
	    "by the daemon)" },
};

#define NREPLIES	(sizeof(smtpproto_replies) / sizeof(smtpproto_replies[0]))
#define NLOCALS		(sizeof(smtpproto_locals) / sizeof(smtpproto_locals[0]))

/* How well row a fits a reply: -1 not at all, else more is closer. */
static int
smtpproto_advice_score(const struct smtpproto_advice *a, unsigned code,
    const char *enhanced, const char *text)
{
	int score = 0;

	if (a->code != code)
		return -1;
	if (a->enhanced != NULL) {
		if (enhanced == NULL || strcmp(a->enhanced, enhanced) != 0)
			return -1;
		score += 2;
	}
	if (a->text != NULL) {
		if (text == NULL || strcasestr(text, a->text) == NULL)
			return -1;
		score += 1;
	}
	return score;
}

const struct smtpproto_advice *
smtpproto_advice_find(unsigned code, const char *enhanced, const char *text)
{
	const struct smtpproto_advice *best = NULL;
	int s, bs = -1;
	size_t i;

	for (i = 0; i < NREPLIES; i++) {
		s = smtpproto_advice_score(&smtpproto_replies[i], code,
		    enhanced, text);
		if (s > bs) {
			bs = s;
			best = &smtpproto_replies[i];
		}
	}
	return best;
}

const struct smtpproto_advice *
smtpproto_advice_reply(const struct reply *r)
{
	return smtpproto_advice_find(r->code, r->enhanced, r->text);
}

const struct smtpproto_advice *
smtpproto_advice_text(const char *text, bool *is_reply)
{
	char buf[REPLY_TEXT_MAX], *line, *save = NULL;
	struct reply r;
	int rc = -EBADMSG;

	*is_reply = false;
	if (text == NULL)
		return NULL;
	snprintf(buf, sizeof(buf), "%s", text);
	reply_init(&r);
	for (line = strtok_r(buf, "\r\n", &save); line != NULL && rc != 0;
	    line = strtok_r(NULL, "\r\n", &save))
		rc = reply_feed(&r, line, strlen(line));
	*is_reply = rc == 0 || rc == -EAGAIN;
	return rc == 0 ? smtpproto_advice_reply(&r) : NULL;
}

const struct smtpproto_advice *
smtpproto_advice_local(enum smtpproto_local w)
{
	return (size_t)w < NLOCALS ? &smtpproto_locals[w] :
	    &smtpproto_locals[SMTPPROTO_LOCAL_TLS];
}

bool
smtpproto_local_connect(int err, enum smtpproto_local *w)
{
	switch (err) {
	case ECONNREFUSED:
		*w = SMTPPROTO_LOCAL_REFUSED;
		return true;
	case ETIMEDOUT:
		*w = SMTPPROTO_LOCAL_TIMEOUT;
		return true;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case EADDRNOTAVAIL:
		*w = SMTPPROTO_LOCAL_UNREACHABLE;
		return true;
	default:
		return false;
	}
}

enum smtpproto_local
smtpproto_local_cert(long verify_result)
{
	switch (verify_result) {
	case X509_V_OK:
		return SMTPPROTO_LOCAL_TLS;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return SMTPPROTO_LOCAL_CERT_NAME;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return SMTPPROTO_LOCAL_CERT_DATES;
	default:
		return SMTPPROTO_LOCAL_CERT_UNTRUSTED;
	}
}

const struct smtpproto_advice *
smtpproto_advice_by_key(const char *key)
{
	size_t i;

	for (i = 0; i < NREPLIES; i++)
		if (strcmp(smtpproto_replies[i].key, key) == 0)
			return &smtpproto_replies[i];
	for (i = 0; i < NLOCALS; i++)
		if (strcmp(smtpproto_locals[i].key, key) == 0)
			return &smtpproto_locals[i];
	return NULL;
}

const struct smtpproto_advice *
smtpproto_advice_table(size_t *n)
{
	*n = NREPLIES;
	return smtpproto_replies;
}

/* The value of placeholder name (len bytes) into buf; NULL if unknown. */
static const char *
smtpproto_advice_var(const struct smtpproto_advice_vars *v, const char *name,
    size_t len, char *buf, size_t sz)
{
#define VAR(n, val, dflt) \
	if (len == sizeof(n) - 1 && memcmp(name, n, len) == 0) \
		return v != NULL && (val) != NULL ? (val) : (dflt)
	VAR("host", v->host, "upstream.host");
	VAR("username", v->username, "upstream.username");
	VAR("password_file", v->password_file, "upstream.password_file");
	VAR("trust", v->trust, "the system trust store");
#undef VAR
	if (len == 4 && memcmp(name, "port", 4) == 0) {
		if (v == NULL || v->port == 0)
			return "upstream.port";
		snprintf(buf, sz, "%u", v->port);
		return buf;
	}
	return NULL;
}

void
smtpproto_advice_vars_cfg(const struct cfg *cfg,
    struct smtpproto_advice_vars *v)
{
	const struct cfg_upstream *u = &cfg->upstream;

	v->host = u->host;
	v->port = u->port;
	v->username = u->username;
	v->password_file = u->password_file;
	v->trust = u->ca_file;
}

const char *
smtpproto_advice_format(const struct smtpproto_advice *a,
    const struct smtpproto_advice_vars *v, char *buf, size_t sz)
{
	const char *p = a->fix, *close, *val;
	char num[16];
	size_t o = 0, n;

	if (sz == 0)
		return buf;
	while (*p != '\0' && o + 1 < sz) {
		close = *p == '{' ? strchr(p, '}') : NULL;
		val = close == NULL ? NULL : smtpproto_advice_var(v, p + 1,
		    (size_t)(close - p - 1), num, sizeof(num));
		if (val == NULL) {
			buf[o++] = *p++;
			continue;
		}
		n = strlen(val);
		if (n > sz - 1 - o)
			n = sz - 1 - o;
		memcpy(buf + o, val, n);
		o += n;
		p = close + 1;
	}
	buf[o] = '\0';
	return buf;
}

const char *
smtpproto_straction(enum smtpproto_action a)
{
	switch (a) {
	case SMTPPROTO_ACT_RETRY:
		return "retried with backoff";
	case SMTPPROTO_ACT_PAUSE:
		return "the queue pauses, nothing bounces";
	case SMTPPROTO_ACT_BOUNCE:
		return "bounces";
	}
	return "?";
}
