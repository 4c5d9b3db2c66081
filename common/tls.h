/*
 * tls: the client side of TLS to the smart host (docs/relay.md).
 *
 * One SSL_CTX for all upstream sessions: TLS 1.2 at least, peer
 * verification on (a failed chain aborts the handshake), trust from
 * upstream.ca_file or else the system store (its hashed directory, so
 * that certificates are read when a verification needs them, not all at
 * once).  Making a context loads most of OpenSSL (about 2-3 MiB of RSS),
 * so the daemon makes it for the first handshake, not at start;
 * tls_ca_file_check() tells at start and at reload, without OpenSSL,
 * whether ca_file can be used.  Each connection gets an SSL
 * with SNI set to the configured host name and the name checked against
 * the certificate (X509_VERIFY_PARAM_set1_host, or the IP address when the
 * host is a literal).  No mail and no credentials ever go over a connection
 * whose handshake did not verify.
 *
 * Error convention: 0 or a negative errno; a human message in *err
 * (malloc'd) where it helps.  Nothing here logs.
 */
#ifndef SMARTRELAY_TLS_H
#define SMARTRELAY_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Makes the client context; ca_file NULL: the system trust store. */
int tls_ctx_new(const char *ca_file, SSL_CTX **ctxp, char **err);
/*
 * Without OpenSSL: ca_file (NULL: nothing to check) is a readable regular
 * file with a PEM block in it.  -errno or -EINVAL, with *err.
 */
int tls_ca_file_check(const char *ca_file, char **err);
void tls_ctx_free(SSL_CTX *ctx);

/* Makes a connection object that sends SNI host and verifies that name. */
int tls_ssl_new(SSL_CTX *ctx, const char *host, SSL **sslp);

/*
 * Explains why a handshake failed, e.g. "certificate verify failed:
 * hostname mismatch" or "unable to get local issuer certificate", from the
 * verify result and the OpenSSL error given by the bufferevent (0: none).
 */
const char *tls_error_string(SSL *ssl, unsigned long err, char *buf,
    size_t bufsz);

/* True when the handshake is done and the peer was verified. */
int tls_verified(SSL *ssl);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for the logs. */
const char *tls_describe(SSL *ssl, char *buf, size_t bufsz);

#endif
