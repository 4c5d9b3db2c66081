/*
 * tls: the client TLS context and per-connection setup.  See tls.h.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>
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

/* Sets *err to "cannot load upstream.ca_file PATH: why". */
static void
tls_ca_err(char **err, const char *ca_file, const char *why)
{
	if (asprintf(err, "cannot load upstream.ca_file %s: %s", ca_file,
	    why) == -1)
		*err = NULL;
}

/* 0 when fd holds "-----BEGIN " somewhere, -ENOENT if not, or -errno. */
static int
tls_find_pem(int fd)
{
	static const char mark[] = "-----BEGIN ";
	const size_t m = sizeof(mark) - 1;
	char buf[4096];
	size_t keep = 0, len;
	ssize_t n;

	for (;;) {
		n = read(fd, buf + keep, sizeof(buf) - keep);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENOENT;
		len = keep + (size_t)n;
		if (memmem(buf, len, mark, m) != NULL)
			return 0;
		/* A mark cut in two by the read: keep its first part. */
		keep = len < m - 1 ? len : m - 1;
		memmove(buf, buf + len - keep, keep);
	}
}

int
tls_ca_file_check(const char *ca_file, char **err)
{
	struct stat st;
	int fd, r;

	*err = NULL;
	if (ca_file == NULL)
		return 0;
	fd = open(ca_file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		tls_ca_err(err, ca_file, strerror(-r));
		return r;
	}
	if (fstat(fd, &st) == -1)
		r = -errno;
	else if (!S_ISREG(st.st_mode))
		r = -EINVAL;
	else
		r = tls_find_pem(fd);
	close(fd);
	if (r < 0)
		tls_ca_err(err, ca_file, r == -EINVAL ? "not a regular file" :
		    r == -ENOENT ? "no PEM certificate in it" : strerror(-r));
	return r < 0 ? -EINVAL : 0;
}

/* True for a c_rehash link name: 8 hex digits, '.', digits ("5ad8a5d6.0"). */
static int
tls_is_hash_name(const char *name)
{
	size_t i;

	for (i = 0; i < 8; i++)
		if (!isxdigit((unsigned char)name[i]))
			return 0;
	if (name[8] != '.' || name[9] == '\0')
		return 0;
	for (i = 9; name[i] != '\0'; i++)
		if (!isdigit((unsigned char)name[i]))
			return 0;
	return 1;
}

/* True when dir holds at least one hashed certificate link. */
static int
tls_dir_is_hashed(const char *dir)
{
	struct dirent *de;
	DIR *dp;
	int found = 0;

	if ((dp = opendir(dir)) == NULL)
		return 0;
	while (!found && (de = readdir(dp)) != NULL)
		found = tls_is_hash_name(de->d_name);
	closedir(dp);
	return found;
}

/*
 * Trusts the system store.  SSL_CTX_set_default_verify_paths() parses the
 * whole bundle file at once (about 140 certificates, 0.9 MiB of heap held
 * for the life of the context); the hashed directory (update-ca-
 * certificates, c_rehash) is read on demand, only the issuers a
 * verification looks up.  The bundle file is the fallback when the
 * directory has no hashed links.  SSL_CERT_DIR or SSL_CERT_FILE in the
 * environment get OpenSSL's own defaults, as they always did.
 */
static int
tls_load_system_store(SSL_CTX *ctx)
{
	const char *dir = X509_get_default_cert_dir();

	if (getenv(X509_get_default_cert_dir_env()) != NULL ||
	    getenv(X509_get_default_cert_file_env()) != NULL)
		return SSL_CTX_set_default_verify_paths(ctx);
	if (tls_dir_is_hashed(dir))
		return SSL_CTX_load_verify_dir(ctx, dir);
	return SSL_CTX_load_verify_file(ctx, X509_get_default_cert_file());
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
	} else if (tls_load_system_store(ctx) != 1) {
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
