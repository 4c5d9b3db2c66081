/*
 * Unit tests of oauth: the form-encoded token requests of each grant, the
 * token answers (success, rotation, every error the providers send,
 * malformed, oversized and duplicate-key JSON), the device authorisation
 * answer, the advice, and the refresh token file (mode, content, atomic
 * replacement).  Files go under a mkdtemp() directory removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "oauth.h"

static char tmpdir[PATH_MAX];

/* A Google or Microsoft upstream.oauth as cfg_load() fills it. */
static struct cfg_oauth
oauth_cfg(enum cfg_oauth_provider p, enum cfg_oauth_grant g)
{
	struct cfg_oauth o = { .provider = p, .grant = g };

	o.client_id = (char *)"client id/1";
	o.scope = (char *)(p == CFG_OAUTH_GOOGLE ? "https://mail.google.com/" :
	    g == CFG_GRANT_REFRESH_TOKEN ?
	    "https://outlook.office.com/SMTP.Send offline_access" :
	    "https://outlook.office365.com/.default");
	return o;
}

static void
test_secret(void **state)
{
	struct oauth_secret a, b;

	assert_int_equal(oauth_secret_init(&a, 8), 0);
	assert_int_equal(oauth_secret_init(&b, 8), 0);
	assert_true(a.cap >= 8);
	assert_int_equal(oauth_secret_set(&a, "abc", 3), 0);
	assert_int_equal(oauth_secret_set(&b, "abd", 3), 0);
	assert_false(oauth_secret_equal(&a, &b));
	assert_int_equal(oauth_secret_set(&b, "abc", 3), 0);
	assert_true(oauth_secret_equal(&a, &b));
	assert_string_equal(a.buf, "abc");
	oauth_secret_clear(&a);
	assert_int_equal(a.len, 0);
	assert_int_equal(a.buf[0], '\0');
	assert_int_equal(a.buf[2], '\0');
	assert_int_equal(oauth_secret_set(&a, "x", a.cap + 1), -E2BIG);
	oauth_secret_free(&a);
	oauth_secret_free(&a);		/* twice is harmless */
	oauth_secret_free(&b);
}

static void
test_request_refresh(void **state)
{
	struct cfg_oauth g = oauth_cfg(CFG_OAUTH_GOOGLE,
	    CFG_GRANT_REFRESH_TOKEN);
	struct cfg_oauth m = oauth_cfg(CFG_OAUTH_MICROSOFT,
	    CFG_GRANT_REFRESH_TOKEN);
	struct oauth_secret cs, rt, body;

	assert_int_equal(oauth_secret_init(&cs, 100), 0);
	assert_int_equal(oauth_secret_init(&rt, 100), 0);
	assert_int_equal(oauth_secret_init(&body, 1000), 0);
	oauth_secret_set(&cs, "GOCSPX-a+b", 10);
	oauth_secret_set(&rt, "1//0a&b=c", 9);
	assert_int_equal(oauth_token_request(&g, &cs, &rt, &body), 0);
	assert_string_equal(body.buf, "grant_type=refresh_token&"
	    "refresh_token=1%2F%2F0a%26b%3Dc&client_id=client%20id%2F1&"
	    "client_secret=GOCSPX-a%2Bb");
	/* A public client (no secret); Microsoft takes the scope. */
	oauth_secret_clear(&cs);
	assert_int_equal(oauth_token_request(&m, &cs, &rt, &body), 0);
	assert_string_equal(body.buf, "grant_type=refresh_token&"
	    "refresh_token=1%2F%2F0a%26b%3Dc&client_id=client%20id%2F1&"
	    "scope=https%3A%2F%2Foutlook.office.com%2FSMTP.Send%20"
	    "offline_access");
	oauth_secret_free(&cs);
	oauth_secret_free(&rt);
	oauth_secret_free(&body);
}

static void
test_request_client_credentials(void **state)
{
	struct cfg_oauth m = oauth_cfg(CFG_OAUTH_MICROSOFT,
	    CFG_GRANT_CLIENT_CREDENTIALS);
	struct oauth_secret cs, body;

	assert_int_equal(oauth_secret_init(&cs, 100), 0);
	assert_int_equal(oauth_secret_init(&body, 1000), 0);
	oauth_secret_set(&cs, "s~cret", 6);
	assert_int_equal(oauth_token_request(&m, &cs, NULL, &body), 0);
	assert_string_equal(body.buf, "grant_type=client_credentials&"
	    "client_id=client%20id%2F1&client_secret=s~cret&scope=https%3A%2F"
	    "%2Foutlook.office365.com%2F.default");
	/* Too small a buffer: an error, and nothing half-built is left. */
	oauth_secret_free(&body);
	assert_int_equal(oauth_secret_init(&body, 20), 0);
	body.cap = 20;
	assert_int_equal(oauth_token_request(&m, &cs, NULL, &body), -E2BIG);
	assert_int_equal(body.len, 0);
	oauth_secret_free(&cs);
	oauth_secret_free(&body);
}

/* Parses one answer; returns its status, why in why[]. */
static enum oauth_status
parse(int status, const char *json, struct oauth_token *t, char *why)
{
	return oauth_parse_token(status, json, strlen(json), t, why, 256);
}

static void
test_parse_ok(void **state)
{
	struct oauth_token t;
	char why[256];

	assert_int_equal(oauth_token_init(&t), 0);
	assert_int_equal(parse(200, "{\"access_token\":\"ya29.a0AfB\","
	    "\"expires_in\":3599,\"token_type\":\"Bearer\",\"scope\":"
	    "\"https://mail.google.com/\"}", &t, why), OAUTH_OK);
	assert_string_equal(t.access.buf, "ya29.a0AfB");
	assert_int_equal(t.refresh.len, 0);
	assert_int_equal(t.expires_in, 3599);
	assert_null(strstr(why, "ya29"));
	/* Rotation: a new refresh token; expires_in as a string. */
	assert_int_equal(parse(200, "{\"token_type\":\"bearer\",\"expires_in\":"
	    "\"3600\",\"access_token\":\"eyJ0.x\",\"refresh_token\":"
	    "\"0.AX-new\"}", &t, why), OAUTH_OK);
	assert_string_equal(t.refresh.buf, "0.AX-new");
	assert_int_equal(t.expires_in, 3600);
	assert_non_null(strstr(why, "new refresh token"));
	assert_null(strstr(why, "0.AX"));
	oauth_token_free(&t);
}

static void
test_parse_errors(void **state)
{
	static const struct {
		int		 status;
		const char	*json;
		enum oauth_status st;
	} t[] = {
		{ 400, "{\"error\":\"invalid_grant\",\"error_description\":"
		    "\"Token has been expired or revoked.\"}",
		    OAUTH_INVALID_GRANT },
		{ 401, "{\"error\":\"invalid_client\",\"error_description\":"
		    "\"Unauthorized\"}", OAUTH_INVALID_CLIENT },
		{ 400, "{\"error\":\"unauthorized_client\"}",
		    OAUTH_INVALID_CLIENT },
		{ 400, "{\"error\":\"invalid_scope\"}", OAUTH_REFUSED },
		{ 400, "{\"error\":\"authorization_pending\"}", OAUTH_PENDING },
		{ 400, "{\"error\":\"slow_down\"}", OAUTH_SLOW_DOWN },
		{ 400, "{\"error\":\"expired_token\"}", OAUTH_EXPIRED },
		{ 400, "{\"error\":\"access_denied\"}", OAUTH_DENIED },
		{ 503, "{\"error\":\"temporarily_unavailable\"}", OAUTH_TEMP },
		{ 500, "<html>Internal Server Error</html>", OAUTH_TEMP },
		{ 502, "", OAUTH_TEMP },
		{ 429, "{}", OAUTH_TEMP },
		{ 404, "Not Found", OAUTH_REFUSED },
		{ 200, "{\"access_token\":", OAUTH_TEMP },
		{ 200, "[\"access_token\"]", OAUTH_TEMP },
		{ 200, "{\"expires_in\":3600}", OAUTH_TEMP },
		{ 200, "{\"access_token\":17}", OAUTH_TEMP },
		{ 200, "{\"access_token\":\"a b\"}", OAUTH_TEMP },
		{ 200, "{\"access_token\":\"a\\r\\nQUIT\"}", OAUTH_TEMP },
		{ 200, "{\"access_token\":\"a\",\"access_token\":\"b\"}",
		    OAUTH_TEMP },
		{ 200, "{\"access_token\":\"a\",\"token_type\":\"mac\"}",
		    OAUTH_REFUSED },
		{ 200, "{\"access_token\":\"a\",\"refresh_token\":\"\"}",
		    OAUTH_TEMP },
	};
	struct oauth_token tok;
	char why[256];
	size_t i;

	assert_int_equal(oauth_token_init(&tok), 0);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		print_message("case %zu: %s\n", i, t[i].json);
		assert_int_equal(parse(t[i].status, t[i].json, &tok, why),
		    t[i].st);
		assert_int_equal(tok.access.len, 0);
		assert_true(why[0] != '\0');
	}
	assert_int_equal(parse(400, t[0].json, &tok, why),
	    OAUTH_INVALID_GRANT);
	assert_string_equal(tok.error, "invalid_grant");
	assert_string_equal(why,
	    "HTTP 400 invalid_grant: Token has been expired or revoked.");
	oauth_token_free(&tok);
}

static void
test_parse_oversized(void **state)
{
	struct oauth_token tok;
	size_t n = OAUTH_ANSWER_MAX + 10;
	char *big = malloc(n + 1), why[256];

	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "{\"access_token\":\"a\"}", 20);
	big[n] = '\0';
	assert_int_equal(oauth_token_init(&tok), 0);
	assert_int_equal(oauth_parse_token(200, big, n, &tok, why,
	    sizeof(why)), OAUTH_TEMP);
	assert_non_null(strstr(why, "too large"));
	assert_int_equal(tok.access.len, 0);
	oauth_token_free(&tok);
	free(big);
}

static void
test_parse_device(void **state)
{
	const char *ok = "{\"user_code\":\"FQK5HW3UF\",\"device_code\":"
	    "\"GAQABAAEAAAAm\",\"verification_uri\":"
	    "\"https://microsoft.com/devicelogin\",\"expires_in\":900,"
	    "\"interval\":5,\"message\":\"To sign in...\"}";
	const char *bad = "{\"error\":\"invalid_client\"}";
	struct oauth_device d;
	char why[256];

	assert_int_equal(oauth_device_init(&d), 0);
	assert_int_equal(oauth_parse_device(200, ok, strlen(ok), &d, why,
	    sizeof(why)), OAUTH_OK);
	assert_string_equal(d.user_code, "FQK5HW3UF");
	assert_string_equal(d.device_code.buf, "GAQABAAEAAAAm");
	assert_string_equal(d.verification_uri,
	    "https://microsoft.com/devicelogin");
	assert_int_equal(d.interval, 5);
	assert_int_equal(d.expires_in, 900);
	assert_int_equal(oauth_parse_device(400, bad, strlen(bad), &d, why,
	    sizeof(why)), OAUTH_INVALID_CLIENT);
	assert_int_equal(oauth_parse_device(200, "{}", 2, &d, why,
	    sizeof(why)), OAUTH_TEMP);
	oauth_device_free(&d);
}

static void
test_advice(void **state)
{
	struct cfg_oauth g = oauth_cfg(CFG_OAUTH_GOOGLE,
	    CFG_GRANT_REFRESH_TOKEN);
	struct cfg_oauth m = oauth_cfg(CFG_OAUTH_MICROSOFT,
	    CFG_GRANT_REFRESH_TOKEN);

	assert_non_null(strstr(oauth_advice(OAUTH_INVALID_GRANT, &g),
	    "7 days"));
	assert_non_null(strstr(oauth_advice(OAUTH_INVALID_GRANT, &g),
	    "smartrelay oauth"));
	assert_null(strstr(oauth_advice(OAUTH_INVALID_GRANT, &m), "7 days"));
	assert_non_null(strstr(oauth_advice(OAUTH_INVALID_GRANT, &m),
	    "smartrelay oauth"));
	assert_non_null(strstr(oauth_advice(OAUTH_INVALID_CLIENT, &m),
	    "oauth.client_id"));
	assert_string_equal(oauth_status_name(OAUTH_INVALID_GRANT),
	    "invalid_grant");
}

static void
test_file(void **state)
{
	struct oauth_secret s;
	char path[PATH_MAX + 16], *err = NULL;
	struct stat st;
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/rt", tmpdir);
	assert_int_equal(oauth_secret_init(&s, CFG_OAUTH_SECRET_MAX), 0);
	assert_int_equal(oauth_read_file(path, &s, &err), -ENOENT);
	free(err);
	assert_int_equal(oauth_write_file(path, "1//first", 8, (uid_t)-1,
	    (gid_t)-1, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(oauth_read_file(path, &s, &err), 0);
	assert_string_equal(s.buf, "1//first");
	assert_int_equal(oauth_write_file(path, "1//second", 9, getuid(),
	    getgid(), &err), 0);
	assert_int_equal(oauth_read_file(path, &s, &err), 0);
	assert_string_equal(s.buf, "1//second");
	/* No temporary file is left beside it. */
	assert_non_null(d = opendir(tmpdir));
	while ((e = readdir(d)) != NULL)
		assert_null(strstr(e->d_name, ".tmp"));
	closedir(d);
	/* A directory that does not exist: a clear error, no secret in it. */
	assert_true(oauth_write_file("/nonexistent/dir/rt", "1//x", 4,
	    (uid_t)-1, (gid_t)-1, &err) < 0);
	assert_non_null(err);
	assert_non_null(strstr(err, "/nonexistent/dir/rt"));
	assert_null(strstr(err, "1//x"));
	free(err);
	oauth_secret_free(&s);
}

static int
group_setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_oauth.XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
group_teardown(void **state)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/rt", tmpdir);
	unlink(path);
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secret),
		cmocka_unit_test(test_request_refresh),
		cmocka_unit_test(test_request_client_credentials),
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_oversized),
		cmocka_unit_test(test_parse_device),
		cmocka_unit_test(test_advice),
		cmocka_unit_test(test_file),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
