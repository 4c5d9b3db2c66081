/*
 * tls: the client TLS context and per-connection setup.  See tls.h.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* Sets *err to "what: the queued OpenSSL errors". */
static void
tls_set_err(char **err, const char *what, const char *arg)
{
	char buf[256] = "";
	unsigned long e = ERR_get_error();

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	if (asprintf(err, "%s%s%s%s%s", what, arg != NULL ? " " : "",
	    arg != NULL ? arg : "", buf[0] != '\0' ? ": " : "", buf) == -1)
		*err = NULL;
}

int
tls_ctx_new(const char *ca_file, SSL_CTX **ctxp, char **err)
{
	SSL_CTX *ctx;

	*ctxp = NULL;
	*err = NULL;
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_set_err(err, "SSL_CTX_new", NULL);
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	    SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			tls_set_err(err, "cannot load upstream.ca_file",
			    ca_file);
			SSL_CTX_free(ctx);
			return -EINVAL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tls_set_err(err, "cannot load the system trust store", NULL);
		SSL_CTX_free(ctx);
		return -EINVAL;
	}
	*ctxp = ctx;
	return 0;
}

void
tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

/* True when host is an IPv4 or IPv6 literal. */
static int
tls_is_ip(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

int
tls_ssl_new(SSL_CTX *ctx, const char *host, SSL **sslp)
{
	X509_VERIFY_PARAM *param;
	SSL *ssl;
	int ok;

	*sslp = NULL;
	if ((ssl = SSL_new(ctx)) == NULL)
		return -ENOMEM;
	param = SSL_get0_param(ssl);
	if (tls_is_ip(host)) {
		/* RFC 6066 §3: no SNI for address literals. */
		ok = X509_VERIFY_PARAM_set1_ip_asc(param, host);
	} else {
		X509_VERIFY_PARAM_set_hostflags(param,
		    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = X509_VERIFY_PARAM_set1_host(param, host, 0) == 1 &&
		    SSL_set_tlsext_host_name(ssl, host) == 1;
	}
	if (!ok) {
		SSL_free(ssl);
		ERR_clear_error();
		return -EINVAL;
	}
	*sslp = ssl;
	return 0;
}

const char *
tls_error_string(SSL *ssl, unsigned long err, char *buf, size_t bufsz)
{
	long v = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	char ebuf[256] = "";

	if (err != 0)
		ERR_error_string_n(err, ebuf, sizeof(ebuf));
	if (v != X509_V_OK)
		snprintf(buf, bufsz, "certificate verify failed: %s",
		    X509_verify_cert_error_string(v));
	else if (ebuf[0] != '\0')
		snprintf(buf, bufsz, "TLS handshake failed: %s", ebuf);
	else
		snprintf(buf, bufsz, "TLS handshake failed");
	ERR_clear_error();
	return buf;
}

int
tls_verified(SSL *ssl)
{
	X509 *peer;

	if (ssl == NULL || !SSL_is_init_finished(ssl))
		return 0;
	if ((peer = SSL_get0_peer_certificate(ssl)) == NULL)
		return 0;
	return SSL_get_verify_result(ssl) == X509_V_OK;
}

const char *
tls_describe(SSL *ssl, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "%s %s", SSL_get_version(ssl),
	    SSL_get_cipher_name(ssl));
	return buf;
}
