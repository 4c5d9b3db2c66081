/*
 * sasl_oauth: XOAUTH2 and OAUTHBEARER client messages.  See sasl_oauth.h.
 */
#include "sasl_oauth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A user name fit for both formats: no control character, no ',' or '='
 * (RFC 5801 §4 would escape them; mailbox names never need it). */
static bool
sasl_user_ok(const char *user)
{
	const char *p;

	for (p = user; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == ',' ||
		    *p == '=')
			return false;
	return p != user;
}

/* Appends a string; -E2BIG when out is full. */
static int
sasl_add(struct oauth_secret *out, const char *s)
{
	return oauth_secret_append(out, s, strlen(s));
}

int
sasl_xoauth2(const char *user, const struct oauth_secret *token,
    struct oauth_secret *out)
{
	int r;

	if (!sasl_user_ok(user))
		return -EINVAL;
	oauth_secret_clear(out);
	if ((r = sasl_add(out, "user=")) < 0 || (r = sasl_add(out, user)) < 0 ||
	    (r = sasl_add(out, "\001auth=Bearer ")) < 0 ||
	    (r = oauth_secret_append(out, token->buf, token->len)) < 0 ||
	    (r = sasl_add(out, "\001\001")) < 0)
		oauth_secret_clear(out);
	return r;
}

int
sasl_oauthbearer(const char *user, const char *host, unsigned port,
    const struct oauth_secret *token, struct oauth_secret *out)
{
	char hp[300];
	int r;

	if (!sasl_user_ok(user) || !sasl_user_ok(host))
		return -EINVAL;
	if ((size_t)snprintf(hp, sizeof(hp), ",\001host=%s\001port=%u"
	    "\001auth=Bearer ", host, port) >= sizeof(hp))
		return -E2BIG;
	oauth_secret_clear(out);
	if ((r = sasl_add(out, "n,a=")) < 0 || (r = sasl_add(out, user)) < 0 ||
	    (r = sasl_add(out, hp)) < 0 ||
	    (r = oauth_secret_append(out, token->buf, token->len)) < 0 ||
	    (r = sasl_add(out, "\001\001")) < 0)
		oauth_secret_clear(out);
	return r;
}
