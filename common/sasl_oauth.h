/*
 * sasl_oauth: the client messages of the OAuth SASL mechanisms an SMTP
 * upstream takes in AUTH (docs/oauth.md).
 *
 *   XOAUTH2 (Google's, also Microsoft 365's):
 *     "user=" USER ^A "auth=Bearer " TOKEN ^A ^A
 *   OAUTHBEARER (RFC 7628 §3.1), with the GS2 header of RFC 5801:
 *     "n,a=" USER "," ^A "host=" HOST ^A "port=" PORT ^A
 *     "auth=Bearer " TOKEN ^A ^A
 *
 * The result is the raw message (base64 is the sender's business), built
 * in a struct oauth_secret since it carries the token.  After a refused
 * token the server sends a 334 error challenge; the client's answer is
 * SASL_XOAUTH2_ABORT (an empty line) or SASL_OAUTHBEARER_ABORT (base64 of
 * ^A, RFC 7628 §3.2.3), and the server then ends with a 535.
 *
 * Error convention: 0 or a negative errno (-EINVAL for a user name with a
 * character the formats cannot carry, -E2BIG).
 */
#ifndef SMARTRELAY_SASL_OAUTH_H
#define SMARTRELAY_SASL_OAUTH_H

#include "oauth.h"

#define SASL_XOAUTH2_ABORT	""
#define SASL_OAUTHBEARER_ABORT	"AQ=="

int sasl_xoauth2(const char *user, const struct oauth_secret *token,
    struct oauth_secret *out);
int sasl_oauthbearer(const char *user, const char *host, unsigned port,
    const struct oauth_secret *token, struct oauth_secret *out);

#endif
