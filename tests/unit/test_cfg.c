/*
 * Unit tests of cfg: the shipped example, defaults, every key, number
 * parsing, each kind of mistake reported at its "file:line", the password
 * rules, relative paths and network matching.  Files are written under a
 * mkdtemp() directory removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"

static char tmpdir[PATH_MAX];
static unsigned nfiles;

/* Writes content to a new file in tmpdir with mode; returns its path. */
static char *
write_file(const char *name, const char *content, mode_t mode)
{
	static char path[PATH_MAX + 64];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)),
	    (ssize_t)strlen(content));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

/* Writes content to a fresh config file and loads it. */
static int
load_text(const char *content, struct cfg **cfgp, struct cfg_errors *errs,
    char *path, size_t pathsz)
{
	char name[32];

	snprintf(name, sizeof(name), "t%u.conf", nfiles++);
	snprintf(path, pathsz, "%s", write_file(name, content, 0644));
	return cfg_load(path, cfgp, errs);
}

/* Prints the messages (shown when an assertion fails). */
static void
dump(const struct cfg_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++)
		print_message("  %s\n", errs->msgs[i]);
}

/* Asserts one message is "path:line: ..." containing every word. */
static void
assert_error(const struct cfg_errors *errs, const char *path, unsigned line,
    const char *w1, const char *w2)
{
	char prefix[PATH_MAX + 32];
	size_t i;

	snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	for (i = 0; i < errs->n; i++)
		if (strncmp(errs->msgs[i], prefix, strlen(prefix)) == 0 &&
		    strstr(errs->msgs[i], w1) != NULL &&
		    (w2 == NULL || strstr(errs->msgs[i], w2) != NULL))
			return;
	print_message("no \"%s... %s ... %s\" among:\n", prefix, w1,
	    w2 ? w2 : "");
	dump(errs);
	fail();
}

/* Loads text that must fail with one message at line with w1 and w2. */
static void
expect_error(const char *text, unsigned line, const char *w1, const char *w2)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = (struct cfg *)1;
	char path[PATH_MAX + 64];

	assert_int_equal(load_text(text, &cfg, &errs, path, sizeof(path)),
	    -EINVAL);
	assert_null(cfg);
	assert_error(&errs, path, line, w1, w2);
	cfg_errors_clear(&errs);
}

/* Loads text that must be valid. */
static struct cfg *
expect_ok(const char *text)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = NULL;
	char path[PATH_MAX + 64];

	if (load_text(text, &cfg, &errs, path, sizeof(path)) != 0) {
		dump(&errs);
		fail();
	}
	assert_int_equal(errs.n, 0);
	assert_non_null(cfg);
	return cfg;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
group_setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/test_cfg.XXXXXX",
	    getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

static int
group_teardown(void **state)
{
	return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * Loading good files.
 */

static void
test_example_loads(void **state)
{
	struct cfg_errors errs = { 0 };
	const char *srcdir = getenv("SRCDIR");
	struct cfg *cfg = NULL;
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/conf/smartrelay.conf",
	    srcdir ? srcdir : ".");
	if (cfg_load(path, &cfg, &errs) != 0) {
		dump(&errs);
		fail();
	}
	assert_string_equal(cfg->listen[0], "127.0.0.1:25");
	assert_string_equal(cfg->upstream.host, "smtp.gmail.com");
	assert_string_equal(cfg->upstream.username, "you@gmail.com");
	assert_string_equal(cfg->upstream.password_file,
	    "/etc/smartrelay/app-password");
	assert_int_equal(cfg->upstream.port, 587);
	assert_int_equal(cfg->limits.message_size, 34 * 1024 * 1024);
	cfg_free(cfg);
}

static void
test_empty_gives_defaults(void **state)
{
	struct cfg *cfg = expect_ok("# nothing\n");

	assert_int_equal(cfg->nlisten, 2);
	assert_string_equal(cfg->listen[0], "127.0.0.1:25");
	assert_string_equal(cfg->listen[1], "[::1]:25");
	assert_non_null(cfg->hostname);
	assert_true(cfg->hostname[0] != '\0');
	assert_string_equal(cfg->spool, "/var/spool/smartrelay");
	assert_int_equal(cfg->nallow, 2);
	assert_int_equal(cfg->allow[0].family, AF_INET);
	assert_int_equal(cfg->allow[0].prefix, 8);
	assert_int_equal(cfg->allow[1].family, AF_INET6);
	assert_int_equal(cfg->allow[1].prefix, 128);
	assert_string_equal(cfg->upstream.host, "smtp.gmail.com");
	assert_int_equal(cfg->upstream.port, 587);
	assert_int_equal(cfg->upstream.tls, CFG_TLS_STARTTLS);
	assert_false(cfg->upstream.insecure_plaintext);
	assert_null(cfg->upstream.ca_file);
	assert_null(cfg->upstream.username);
	assert_null(cfg->upstream.password_file);
	assert_int_equal(cfg->upstream.connections, 2);
	assert_int_equal(cfg->upstream.messages_per_connection, 100);
	assert_int_equal(cfg->upstream.timeout, 300);
	assert_int_equal(cfg->retry.initial, 60);
	assert_int_equal(cfg->retry.max, 3600);
	assert_int_equal(cfg->retry.give_up_after, 5 * 86400);
	assert_int_equal(cfg->limits.message_size, 34 * 1024 * 1024);
	assert_int_equal(cfg->limits.recipients, 100);
	assert_int_equal(cfg->limits.clients, 100);
	assert_int_equal(cfg->limits.idle_timeout, 300);
	assert_null(cfg->rewrite.envelope_from);
	assert_null(cfg->rewrite.header_from);
	assert_null(cfg->rewrite.local_domain);
	assert_int_equal(cfg->rewrite.naliases, 0);
	assert_null(cfg->bounces_to);
	assert_int_equal(cfg->delay_warning, 0);
	cfg_free(cfg);
}

static const char every_key[] =
    "listen = [ \"127.0.0.1:2525\", \"[::1]:2525\", \"*:26\" ];\n"
    "hostname = \"relay.example.org\";\n"
    "spool = \"/srv/spool\";\n"
    "allow = [ \"10.0.0.0/8\", \"192.168.1.7\", \"fd00::/8\" ];\n"
    "upstream = {\n"
    "  host = \"mail.example.net\";\n"
    "  port = 2465;\n"
    "  tls = \"implicit\";\n"
    "  insecure_plaintext = false;\n"
    "  ca_file = \"/etc/ssl/ca.pem\";\n"
    "  username = \"me@example.net\";\n"
    "  password_file = \"/etc/pw\";\n"
    "  connections = 32;\n"
    "  messages_per_connection = 10000;\n"
    "  timeout = 90;\n"
    "};\n"
    "retry = { initial = \"30s\"; max = \"2h\"; give_up_after = \"2w\"; };\n"
    "limits = {\n"
    "  message_size = \"25MB\";\n"
    "  recipients = 1000;\n"
    "  clients = 1;\n"
    "  idle_timeout = \"1h\";\n"
    "};\n"
    "rewrite = {\n"
    "  envelope_from = \"me@example.net\";\n"
    "  header_from = \"me@example.com\";\n"
    "  local_domain = \"example.org\";\n"
    "  aliases = { root = \"admin@example.org\"; "
    "mailer-daemon = \"pm@example.org\"; };\n"
    "};\n"
    "bounces = { to = \"admin@example.org\"; delay_warning = \"4h\"; };\n";

static void
test_every_key(void **state)
{
	struct cfg *cfg = expect_ok(every_key);

	assert_int_equal(cfg->nlisten, 3);
	assert_string_equal(cfg->listen[2], "*:26");
	assert_string_equal(cfg->hostname, "relay.example.org");
	assert_string_equal(cfg->spool, "/srv/spool");
	assert_int_equal(cfg->nallow, 3);
	assert_int_equal(cfg->allow[1].prefix, 32);
	assert_int_equal(cfg->allow[2].family, AF_INET6);
	assert_string_equal(cfg->upstream.host, "mail.example.net");
	assert_int_equal(cfg->upstream.port, 2465);
	assert_int_equal(cfg->upstream.tls, CFG_TLS_IMPLICIT);
	assert_string_equal(cfg->upstream.ca_file, "/etc/ssl/ca.pem");
	assert_string_equal(cfg->upstream.username, "me@example.net");
	assert_string_equal(cfg->upstream.password_file, "/etc/pw");
	assert_int_equal(cfg->upstream.connections, 32);
	assert_int_equal(cfg->upstream.messages_per_connection, 10000);
	assert_int_equal(cfg->upstream.timeout, 90);
	assert_int_equal(cfg->retry.initial, 30);
	assert_int_equal(cfg->retry.max, 7200);
	assert_int_equal(cfg->retry.give_up_after, 14 * 86400);
	assert_int_equal(cfg->limits.message_size, 25 * 1024 * 1024);
	assert_int_equal(cfg->limits.recipients, 1000);
	assert_int_equal(cfg->limits.clients, 1);
	assert_int_equal(cfg->limits.idle_timeout, 3600);
	assert_string_equal(cfg->rewrite.envelope_from, "me@example.net");
	assert_string_equal(cfg->rewrite.header_from, "me@example.com");
	assert_string_equal(cfg->rewrite.local_domain, "example.org");
	assert_int_equal(cfg->rewrite.naliases, 2);
	assert_string_equal(cfg->rewrite.aliases[0].name, "root");
	assert_string_equal(cfg->rewrite.aliases[0].target,
	    "admin@example.org");
	assert_string_equal(cfg->rewrite.aliases[1].name, "mailer-daemon");
	assert_string_equal(cfg->bounces_to, "admin@example.org");
	assert_int_equal(cfg->delay_warning, 4 * 3600);
	assert_int_equal(cfg->line.username, 11);
	assert_int_equal(cfg->line.password_file, 12);
	cfg_free(cfg);
}

static void
test_implicit_default_port(void **state)
{
	struct cfg *cfg = expect_ok("upstream = { tls = \"implicit\"; };\n");

	assert_int_equal(cfg->upstream.port, 465);
	cfg_free(cfg);
	cfg = expect_ok("upstream = { tls = \"starttls\"; };\n");
	assert_int_equal(cfg->upstream.port, 587);
	cfg_free(cfg);
}

static void
test_plaintext_loopback_ok(void **state)
{
	static const char *hosts[] = { "127.0.0.1", "127.1.2.3", "::1",
	    "localhost" };
	char text[256];
	struct cfg *cfg;
	size_t i;

	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		snprintf(text, sizeof(text), "upstream = { host = \"%s\";\n"
		    "port = 2525; tls = \"none\"; insecure_plaintext = true; "
		    "};\n", hosts[i]);
		cfg = expect_ok(text);
		assert_int_equal(cfg->upstream.tls, CFG_TLS_NONE);
		assert_true(cfg->upstream.insecure_plaintext);
		cfg_free(cfg);
	}
}

static void
test_relative_paths(void **state)
{
	struct cfg *cfg = expect_ok("spool = \"spool\";\n"
	    "upstream = { username = \"u@example.org\";\n"
	    "  password_file = \"secret/pw\"; ca_file = \"../ca.pem\"; };\n");
	char want[PATH_MAX + 64], real[PATH_MAX];

	assert_non_null(realpath(tmpdir, real));
	snprintf(want, sizeof(want), "%s/spool", real);
	assert_string_equal(cfg->spool, want);
	snprintf(want, sizeof(want), "%s/secret/pw", real);
	assert_string_equal(cfg->upstream.password_file, want);
	snprintf(want, sizeof(want), "%s/../ca.pem", real);
	assert_string_equal(cfg->upstream.ca_file, want);
	cfg_free(cfg);
}

/*
 * Numbers.
 */

static void
test_parse_duration(void **state)
{
	static const struct {
		const char	*s;
		int		 r;
		uint64_t	 v;
	} t[] = {
		{ "0", 0, 0 }, { "90", 0, 90 }, { "90s", 0, 90 },
		{ "5m", 0, 300 }, { "1h", 0, 3600 }, { "5d", 0, 432000 },
		{ "2w", 0, 1209600 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "", -EINVAL, 0 }, { "s", -EINVAL, 0 }, { "-5", -EINVAL, 0 },
		{ "+5", -EINVAL, 0 }, { " 5", -EINVAL, 0 },
		{ "5 m", -EINVAL, 0 }, { "5x", -EINVAL, 0 },
		{ "5mm", -EINVAL, 0 }, { "5M", -EINVAL, 0 },
		{ "1.5h", -EINVAL, 0 }, { "0x10", -EINVAL, 0 },
		{ "5m ", -EINVAL, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "30500568904944w", -ERANGE, 0 },
		{ "99999999999999999999999d", -ERANGE, 0 },
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		v = 12345;
		print_message("duration \"%s\"\n", t[i].s);
		assert_int_equal(cfg_parse_duration(t[i].s, &v), t[i].r);
		if (t[i].r == 0)
			assert_true(v == t[i].v);
		else
			assert_int_equal(v, 12345);
	}
	assert_int_equal(cfg_parse_duration(NULL, &v), -EINVAL);
}

static void
test_parse_size(void **state)
{
	static const struct {
		const char	*s;
		int		 r;
		uint64_t	 v;
	} t[] = {
		{ "0", 0, 0 }, { "512", 0, 512 }, { "512B", 0, 512 },
		{ "64K", 0, 65536 }, { "64k", 0, 65536 },
		{ "64KB", 0, 65536 }, { "25M", 0, 26214400 },
		{ "25mb", 0, 26214400 }, { "1G", 0, 1073741824 },
		{ "2T", 0, 2199023255552ULL },
		{ "", -EINVAL, 0 }, { "M", -EINVAL, 0 }, { "-1", -EINVAL, 0 },
		{ "+1", -EINVAL, 0 }, { " 1", -EINVAL, 0 },
		{ "1 M", -EINVAL, 0 }, { "1X", -EINVAL, 0 },
		{ "1MBB", -EINVAL, 0 }, { "1BM", -EINVAL, 0 },
		{ "1.5M", -EINVAL, 0 }, { "1MiB", -EINVAL, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "17179869184G", -ERANGE, 0 },
	};
	uint64_t v;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		v = 12345;
		print_message("size \"%s\"\n", t[i].s);
		assert_int_equal(cfg_parse_size(t[i].s, &v), t[i].r);
		if (t[i].r == 0)
			assert_true(v == t[i].v);
		else
			assert_int_equal(v, 12345);
	}
}

/*
 * Mistakes, each at its line.
 */

static void
test_syntax_error(void **state)
{
	expect_error("spool = \"/x\";\n\nupstream = {\n  tls = starttls;\n"
	    "};\n", 4, "syntax error", NULL);
	expect_error("spool = \"/x\";\nhostname = ;\n", 2, "syntax error",
	    NULL);
	expect_error("spool = \"/x\";\n\nspool = \"/y\";\n", 3,
	    "duplicate setting name", NULL);
}

static void
test_unknown_top_level_key(void **state)
{
	expect_error("spool = \"/x\";\nspol = \"/y\";\n", 2,
	    "unknown key \"spol\"", "did you mean \"spool\"");
	expect_error("\nfrobnicate = 1;\n", 2, "unknown key \"frobnicate\"",
	    NULL);
}

static void
test_unknown_key_in_group(void **state)
{
	expect_error("upstream = {\n  host = \"a.example\";\n"
	    "  hots = \"b\";\n};\n", 3, "unknown key \"hots\" in upstream",
	    "did you mean \"host\"");
	expect_error("retry = {\n  inital = 5;\n};\n", 2,
	    "unknown key \"inital\" in retry", "\"initial\"");
	expect_error("limits = {\n  size = 5;\n};\n", 2,
	    "unknown key \"size\" in limits", NULL);
	expect_error("rewrite = {\n\n  alias = {};\n};\n", 3,
	    "unknown key \"alias\" in rewrite", "\"aliases\"");
	expect_error("bounces = { too = \"a@b.c\"; };\n", 1,
	    "unknown key \"too\" in bounces", "\"to\"");
}

static void
test_wrong_type(void **state)
{
	expect_error("upstream = {\n  port = \"587\";\n};\n", 2,
	    "upstream.port: expected an integer, got a string", NULL);
	expect_error("upstream = {\n  insecure_plaintext = \"yes\";\n};\n", 2,
	    "upstream.insecure_plaintext: expected a boolean", "got a string");
	expect_error("spool = 5;\n", 1, "spool: expected a string",
	    "got an integer");
	expect_error("\nlimits = { message_size = 1.5; };\n", 2,
	    "limits.message_size: expected a size", "floating-point");
	expect_error("upstream = \"smtp.gmail.com\";\n", 1,
	    "upstream: expected a group", NULL);
	expect_error("listen = \"127.0.0.1:25\";\n", 1,
	    "listen: expected a list", NULL);
	expect_error("allow = [ 1, 2 ];\n", 1, "allow: expected a string",
	    "integer");
	expect_error("rewrite = {\n aliases = { root = 5; };\n};\n", 2,
	    "rewrite.aliases: expected a string", NULL);
}

static void
test_out_of_range(void **state)
{
	expect_error("upstream = {\n  port = 70000;\n};\n", 2,
	    "upstream.port: 70000 is out of range", "(1..65535)");
	expect_error("upstream = {\n\n  connections = 0;\n};\n", 3,
	    "upstream.connections: 0 is out of range", "(1..32)");
	expect_error("upstream = { messages_per_connection = -1; };\n", 1,
	    "upstream.messages_per_connection: -1 is out of range",
	    "(1..10000)");
	expect_error("upstream = { timeout = \"2h\"; };\n", 1,
	    "upstream.timeout: \"2h\" is out of range", "(1s..1h)");
	expect_error("limits = {\n message_size = \"2G\";\n};\n", 2,
	    "limits.message_size: \"2G\" is out of range", "(1K..1G)");
	expect_error("limits = { message_size = 100; };\n", 1,
	    "limits.message_size: 100 is out of range", "(1K..1G)");
	expect_error("limits = { recipients = 1001; };\n", 1,
	    "limits.recipients: 1001 is out of range", "(1..1000)");
	expect_error("limits = { clients = 10001; };\n", 1,
	    "limits.clients", "(1..10000)");
	expect_error("limits = { idle_timeout = 0; };\n", 1,
	    "limits.idle_timeout: 0 is out of range", "(1s..1h)");
	expect_error("bounces = {\n delay_warning = 0;\n};\n", 2,
	    "bounces.delay_warning: 0 is out of range", "(1s..90d)");
	expect_error("bounces = { delay_warning = \"soon\"; };\n", 1,
	    "bounces.delay_warning: \"soon\" is not a duration", NULL);
	expect_error("retry = { initial = \"99999999999999999999d\"; };\n", 1,
	    "retry.initial", "out of range");
	expect_error("limits = { message_size = \"lots\"; };\n", 1,
	    "limits.message_size: \"lots\" is not a size", NULL);
	expect_error("retry = {\n  max = \"5 minutes\";\n};\n", 2,
	    "retry.max: \"5 minutes\" is not a duration", NULL);
}

static void
test_retry_order(void **state)
{
	expect_error("retry = {\n  initial = \"2h\";\n};\n", 2,
	    "initial (2h) must not be greater than max (1h)", NULL);
	expect_error("retry = {\n  max = \"1d\";\n  give_up_after = \"1h\";\n"
	    "};\n", 3, "max (1d) must not be greater than give_up_after (1h)",
	    NULL);
}

static void
test_bad_tls(void **state)
{
	expect_error("upstream = {\n  tls = \"ssl\";\n};\n", 2,
	    "upstream.tls: \"ssl\" is not a TLS mode", "\"starttls\"");
	expect_error("upstream = {\n  tls = \"none\";\n};\n", 2,
	    "upstream.tls: \"none\"", "insecure_plaintext = true");
	expect_error("upstream = {\n  insecure_plaintext = true;\n"
	    "  tls = \"none\";\n};\n", 3,
	    "only to a loopback host", "smtp.gmail.com");
	expect_error("upstream = { host = \"10.0.0.1\"; tls = \"none\";\n"
	    "  insecure_plaintext = true; };\n", 1,
	    "only to a loopback host", "10.0.0.1");
}

static void
test_bad_allow(void **state)
{
	expect_error("allow = [\n  \"127.0.0.0/8\",\n  \"10.0.0.0/33\" ];\n",
	    3, "allow: \"10.0.0.0/33\" is not a network", "prefix");
	expect_error("allow = [ \"localhost\" ];\n", 1,
	    "allow: \"localhost\" is not a network", NULL);
	expect_error("allow = [ \"192.168.1.1/24\" ];\n", 1,
	    "\"192.168.1.1/24\" is not a network", "\"192.168.1.0/24\"?");
	expect_error("allow = [ \"fd00::1/8\" ];\n", 1, "host bits",
	    "\"fd00::/8\"?");
	expect_error("allow = [ \"::1/129\" ];\n", 1, "\"::1/129\"", NULL);
	expect_error("allow = [ ];\n", 1, "allow: needs 1 to", NULL);
}

static void
test_bad_listen(void **state)
{
	expect_error("listen = [\n  \"127.0.0.1:25\",\n  \"127.0.0.1\" ];\n",
	    3, "listen: \"127.0.0.1\" is not host:port", NULL);
	expect_error("listen = [ \"127.0.0.1:0\" ];\n", 1,
	    "\"127.0.0.1:0\" is not host:port", NULL);
	expect_error("listen = [ \"::1:25\" ];\n", 1, "\"::1:25\"", NULL);
	expect_error("listen = [ \"[::1]:65536\" ];\n", 1, "[::1]:65536",
	    NULL);
}

static void
test_bad_address(void **state)
{
	expect_error("rewrite = {\n  envelope_from = \"root\";\n};\n", 2,
	    "rewrite.envelope_from: \"root\" is not an address", NULL);
	expect_error("rewrite = {\n\n  header_from = \"Me <me@x.org>\";\n};\n",
	    3, "rewrite.header_from: \"Me <me@x.org>\" is not an address",
	    NULL);
	expect_error("rewrite = { header_from = 7; };\n", 1,
	    "rewrite.header_from", NULL);
	expect_error("rewrite = {\n  aliases = {\n    root = \"a b@c\";\n"
	    "  };\n};\n", 3, "rewrite.aliases: root = \"a b@c\"",
	    "not an address");
	expect_error("bounces = {\n  to = \"@example.org\";\n};\n", 2,
	    "bounces.to: \"@example.org\" is not an address", NULL);
	expect_error("rewrite = { local_domain = \"exa mple.org\"; };\n", 1,
	    "rewrite.local_domain: \"exa mple.org\" is not a domain", NULL);
	expect_error("rewrite = { local_domain = \"[10.0.0.1]\"; };\n", 1,
	    "rewrite.local_domain", "not a domain");
	expect_error("hostname = \"bad_host!\";\n", 1,
	    "hostname: \"bad_host!\" is not a host name", NULL);
	expect_error("upstream = { host = \"\"; };\n", 1,
	    "upstream.host", "must not be empty");
}

static void
test_alias_twice(void **state)
{
	expect_error("rewrite = { aliases = {\n  root = \"a@b.org\";\n"
	    "  Root = \"c@d.org\";\n}; };\n", 3, "rewrite.aliases: Root is "
	    "defined twice", NULL);
}

static void
test_include_error_names_its_file(void **state)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = NULL;
	char path[PATH_MAX + 64], inc[PATH_MAX + 64], real[PATH_MAX];

	/* Named from the config's directory, symbolic links resolved. */
	assert_non_null(realpath(tmpdir, real));
	snprintf(inc, sizeof(inc), "%s/inc.conf", real);
	write_file("inc.conf", "# included\n\nupstream = { prot = 25; };\n",
	    0644);
	assert_int_equal(load_text("spool = \"/x\";\n@include \"inc.conf\"\n",
	    &cfg, &errs, path, sizeof(path)), -EINVAL);
	assert_error(&errs, inc, 3, "unknown key \"prot\" in upstream",
	    "\"port\"");
	cfg_errors_clear(&errs);
	write_file("inc.conf", "upstream = {\n  port = 25\n  x = ;\n};\n",
	    0644);
	assert_int_equal(load_text("@include \"inc.conf\"\n", &cfg, &errs,
	    path, sizeof(path)), -EINVAL);
	assert_error(&errs, inc, 3, "syntax error", NULL);
	cfg_errors_clear(&errs);
}

static void
test_auth_pairs(void **state)
{
	expect_error("upstream = {\n  username = \"me@gmail.com\";\n};\n", 2,
	    "upstream.username is set but there is no password", NULL);
	expect_error("upstream = {\n  password_file = \"/x\";\n};\n", 2,
	    "upstream.password_file is set but upstream.username", NULL);
}

static void
test_all_problems_reported(void **state)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = NULL;
	char path[PATH_MAX + 64];

	assert_int_equal(load_text("foo = 1;\nupstream = { port = 0;\n"
	    "  tls = \"x\"; };\nlimits = { clients = 0; };\nbar = 2;\n",
	    &cfg, &errs, path, sizeof(path)), -EINVAL);
	assert_int_equal(errs.n, 5);
	assert_error(&errs, path, 1, "\"foo\"", NULL);
	assert_error(&errs, path, 2, "upstream.port", NULL);
	assert_error(&errs, path, 3, "upstream.tls", NULL);
	assert_error(&errs, path, 4, "limits.clients", NULL);
	assert_error(&errs, path, 5, "\"bar\"", NULL);
	cfg_errors_clear(&errs);
}

static void
test_missing_file(void **state)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = NULL;
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/nonexistent.conf", tmpdir);
	assert_int_equal(cfg_load(path, &cfg, &errs), -ENOENT);
	assert_null(cfg);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msgs[0], path));
	assert_non_null(strstr(errs.msgs[0], "No such file"));
	cfg_errors_clear(&errs);
	assert_int_equal(cfg_load(path, &cfg, NULL), -ENOENT);
}

static void
test_free_null(void **state)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg = calloc(1, sizeof(*cfg));

	cfg_free(NULL);
	cfg_free(cfg);		/* half-built: nothing allocated */
	cfg_errors_clear(NULL);
	cfg_errors_clear(&errs);
	cfg_secret_clear(NULL);
}

/*
 * The password.
 */

/* A struct cfg whose password_file is path. */
static struct cfg *
pw_cfg(const char *path)
{
	struct cfg *cfg = expect_ok("upstream = { username = \"u@x.org\";\n"
	    "  password_file = \"/nonexistent\"; };\n");

	free(cfg->upstream.password_file);
	cfg->upstream.password_file = strdup(path);
	return cfg;
}

/* Reads the password of path; returns the result, fills *err. */
static int
pw_read(const char *content, mode_t mode, struct cfg_secret *s, char **err)
{
	char *path = strdup(write_file("pw", content, mode));
	struct cfg *cfg = pw_cfg(path);
	int r = cfg_read_password(cfg, s, err);

	cfg_free(cfg);
	free(path);
	return r;
}

static void
test_password_first_line(void **state)
{
	static const struct {
		const char *content, *want;
	} t[] = {
		{ "abcd efgh ijkl mnop\n", "abcdefghijklmnop" },
		{ "  abcd efgh ijkl mnop  \r\nsecond line\n",
		    "abcdefghijklmnop" },
		{ "\tpass\tword\n", "password" },
		{ "nonewline", "nonewline" },
		{ "s3cr3t!#$%\nother", "s3cr3t!#$%" },
	};
	struct cfg_secret s;
	char *err = NULL;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(pw_read(t[i].content, 0600, &s, &err), 0);
		assert_null(err);
		assert_string_equal(s.buf, t[i].want);
		assert_int_equal(s.len, strlen(t[i].want));
		cfg_secret_clear(&s);
		assert_int_equal(s.len, 0);
		assert_int_equal(s.buf[0], '\0');
	}
}

static void
test_password_refused(void **state)
{
	static const struct {
		const char	*content;
		mode_t		 mode;
		const char	*why;
	} t[] = {
		{ "hunter2secret\n", 0640, "group or others" },
		{ "hunter2secret\n", 0604, "group or others" },
		{ "hunter2secret\n", 0620, "group or others" },
		{ "hunter2secret\n", 0602, "group or others" },
		{ "\n", 0600, "empty" },
		{ "   \nhunter2secret\n", 0600, "empty" },
		{ "", 0600, "empty" },
		{ "hunter2\001secret\n", 0600, "control character" },
	};
	struct cfg_secret s;
	char *err = NULL, big[2000];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		print_message("case %zu\n", i);
		assert_true(pw_read(t[i].content, t[i].mode, &s, &err) < 0);
		assert_non_null(err);
		assert_non_null(strstr(err, t[i].why));
		assert_null(strstr(err, "hunter2"));
		assert_null(strstr(err, "secret"));
		assert_int_equal(s.len, 0);
		free(err);
		err = NULL;
	}
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(pw_read(big, 0600, &s, &err), -EINVAL);
	assert_non_null(strstr(err, "too long"));
	assert_null(strstr(err, "xxxx"));
	free(err);
}

static void
test_password_missing(void **state)
{
	struct cfg *cfg = pw_cfg("/nonexistent/pw");
	struct cfg_secret s;
	char *err = NULL;

	assert_int_equal(cfg_read_password(cfg, &s, &err), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/pw"));
	free(err);
	free(cfg->upstream.password_file);
	cfg->upstream.password_file = NULL;
	assert_int_equal(cfg_read_password(cfg, &s, &err), -ENOENT);
	assert_non_null(strstr(err, "no password"));
	free(err);
	cfg_free(cfg);
}

static void
test_password_credential_preferred(void **state)
{
	char credpath[PATH_MAX + 32], *err = NULL;
	struct cfg_secret s;
	struct cfg *cfg;
	char *pw;

	pw = strdup(write_file("pw", "from file\n", 0600));
	cfg = pw_cfg(pw);
	free(pw);
	snprintf(credpath, sizeof(credpath), "%s/creds", tmpdir);
	assert_int_equal(mkdir(credpath, 0700), 0);
	setenv("CREDENTIALS_DIRECTORY", credpath, 1);

	/* No credential there: the file. */
	assert_int_equal(cfg_read_password(cfg, &s, &err), 0);
	assert_string_equal(s.buf, "fromfile");

	/* The credential, even world-readable (systemd controls it). */
	write_file("creds/upstream-password", "from cred\n", 0644);
	assert_int_equal(cfg_read_password(cfg, &s, &err), 0);
	assert_string_equal(s.buf, "fromcred");

	/* Enough for a username without password_file. */
	cfg_free(cfg);
	cfg = expect_ok("upstream = { username = \"u@x.org\"; };\n");
	assert_int_equal(cfg_read_password(cfg, &s, &err), 0);
	assert_string_equal(s.buf, "fromcred");
	cfg_secret_clear(&s);
	cfg_free(cfg);
	unsetenv("CREDENTIALS_DIRECTORY");
}

/*
 * Runtime checks.
 */

static void
test_check_runtime(void **state)
{
	struct cfg_errors errs = { 0 };
	char text[1024], path[PATH_MAX + 64];
	struct cfg *cfg = NULL;

	write_file("app-password", "abcd efgh ijkl mnop\n", 0600);
	write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
	snprintf(text, sizeof(text), "spool = \"queue\";\n"
	    "upstream = {\n  username = \"u@x.org\";\n"
	    "  password_file = \"app-password\";\n"
	    "  ca_file = \"ca.pem\";\n};\n");
	assert_int_equal(load_text(text, &cfg, &errs, path, sizeof(path)), 0);
	/* The spool does not exist but can be created. */
	assert_int_equal(cfg_check_runtime(cfg, &errs), 0);
	assert_int_equal(errs.n, 0);
	cfg_free(cfg);

	write_file("app-password", "abcd efgh ijkl mnop\n", 0644);
	snprintf(text, sizeof(text), "spool = \"no/such/dir\";\n"
	    "upstream = {\n  username = \"u@x.org\";\n"
	    "  password_file = \"app-password\";\n"
	    "  ca_file = \"missing.pem\";\n};\n");
	assert_int_equal(load_text(text, &cfg, &errs, path, sizeof(path)), 0);
	assert_int_equal(cfg_check_runtime(cfg, &errs), -EINVAL);
	assert_int_equal(errs.n, 3);
	assert_error(&errs, path, 4, "upstream.password_file",
	    "group or others");
	assert_error(&errs, path, 1, "spool", "cannot be created");
	assert_error(&errs, path, 5, "upstream.ca_file", "No such file");
	for (size_t i = 0; i < errs.n; i++)
		assert_null(strstr(errs.msgs[i], "abcd"));
	cfg_errors_clear(&errs);
	cfg_free(cfg);

	/* A spool that is a file. */
	write_file("notadir", "", 0644);
	assert_int_equal(load_text("spool = \"notadir\";\n", &cfg, &errs, path,
	    sizeof(path)), 0);
	assert_int_equal(cfg_check_runtime(cfg, &errs), -EINVAL);
	assert_error(&errs, path, 1, "spool", "Not a directory");
	cfg_errors_clear(&errs);
	cfg_free(cfg);
}

/*
 * Networks and listen addresses.
 */

/* A sockaddr for an address literal. */
static void
mk_sa(struct sockaddr_storage *ss, const char *addr)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr),
		    1);
		sin6->sin6_family = AF_INET6;
	}
}

static void
test_net_match(void **state)
{
	static const struct {
		const char	*addr;
		bool		 match;
	} t[] = {
		{ "127.0.0.1", true }, { "127.255.255.254", true },
		{ "::1", true }, { "::ffff:127.0.0.1", true },
		{ "::ffff:127.9.9.9", true }, { "192.168.1.200", true },
		{ "::ffff:192.168.1.255", true }, { "192.168.2.1", false },
		{ "128.0.0.1", false }, { "::2", false },
		{ "::ffff:10.0.0.1", false }, { "10.1.2.3", true },
		{ "fd00:1234::1", true }, { "fe80::1", false },
		{ "0.0.0.0", false },
	};
	struct cfg_net nets[5];
	struct sockaddr_storage ss;
	size_t i;

	assert_int_equal(cfg_parse_net("127.0.0.0/8", &nets[0]), 0);
	assert_int_equal(cfg_parse_net("::1/128", &nets[1]), 0);
	assert_int_equal(cfg_parse_net("192.168.1.128/25", &nets[2]), 0);
	assert_int_equal(cfg_parse_net("10.1.2.3", &nets[3]), 0);
	assert_int_equal(nets[3].prefix, 32);
	assert_int_equal(cfg_parse_net("fd00::/8", &nets[4]), 0);
	assert_int_equal(cfg_parse_net("::1", &nets[1]), 0);
	assert_int_equal(nets[1].prefix, 128);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		print_message("match %s\n", t[i].addr);
		mk_sa(&ss, t[i].addr);
		assert_int_equal(cfg_net_match(nets, 5,
		    (struct sockaddr *)&ss), t[i].match);
	}
	/* 192.168.1.5 is outside 192.168.1.128/25. */
	mk_sa(&ss, "192.168.1.5");
	assert_false(cfg_net_match(nets, 5, (struct sockaddr *)&ss));
	assert_false(cfg_net_match(nets, 0, (struct sockaddr *)&ss));
	assert_false(cfg_net_match(nets, 5, NULL));
	/* 0.0.0.0/0 matches every IPv4 client, mapped ones too. */
	assert_int_equal(cfg_parse_net("0.0.0.0/0", &nets[0]), 0);
	mk_sa(&ss, "::ffff:8.8.8.8");
	assert_true(cfg_net_match(nets, 1, (struct sockaddr *)&ss));
}

static void
test_parse_net_bad(void **state)
{
	static const char *bad[] = {
		"", "/8", "127.0.0.0/", "127.0.0.0/33", "127.0.0.0/-1",
		"127.0.0.0/8x", "127.0.0.1/8", "::1/129", "::1/64",
		"localhost", "1.2.3", "127.0.0.0/ 8", "127.0.0.0/08x",
	};
	struct cfg_net net;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("net \"%s\"\n", bad[i]);
		assert_int_equal(cfg_parse_net(bad[i], &net), -EINVAL);
	}
}

static void
test_parse_listen(void **state)
{
	static const struct {
		const char	*s;
		int		 r;
		const char	*host;
		unsigned	 port;
	} t[] = {
		{ "127.0.0.1:25", 0, "127.0.0.1", 25 },
		{ "[::1]:25", 0, "::1", 25 },
		{ "*:25", 0, "*", 25 },
		{ "localhost:2525", 0, "localhost", 2525 },
		{ "0.0.0.0:65535", 0, "0.0.0.0", 65535 },
		{ "[fe80::1]:1", 0, "fe80::1", 1 },
		{ "127.0.0.1", -EINVAL, NULL, 0 },
		{ "127.0.0.1:", -EINVAL, NULL, 0 },
		{ ":25", -EINVAL, NULL, 0 },
		{ "127.0.0.1:0", -EINVAL, NULL, 0 },
		{ "127.0.0.1:65536", -EINVAL, NULL, 0 },
		{ "127.0.0.1:-25", -EINVAL, NULL, 0 },
		{ "127.0.0.1:25x", -EINVAL, NULL, 0 },
		{ "127.0.0.1:000025", -EINVAL, NULL, 0 },
		{ "::1:25", -EINVAL, NULL, 0 },
		{ "[::1]25", -EINVAL, NULL, 0 },
		{ "[127.0.0.1]:25", -EINVAL, NULL, 0 },
		{ "[]:25", -EINVAL, NULL, 0 },
		{ "bad host:25", -EINVAL, NULL, 0 },
	};
	char host[64];
	unsigned port;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		print_message("listen \"%s\"\n", t[i].s);
		assert_int_equal(cfg_parse_listen(t[i].s, host, sizeof(host),
		    &port), t[i].r);
		if (t[i].r != 0)
			continue;
		assert_string_equal(host, t[i].host);
		assert_int_equal(port, t[i].port);
	}
	assert_int_equal(cfg_parse_listen("localhost:25", host, 5, &port),
	    -ENAMETOOLONG);
}

static void
test_tls_name(void **state)
{
	assert_string_equal(cfg_tls_name(CFG_TLS_STARTTLS), "starttls");
	assert_string_equal(cfg_tls_name(CFG_TLS_IMPLICIT), "implicit");
	assert_string_equal(cfg_tls_name(CFG_TLS_NONE), "none");
}

/*
 * upstream.auth and upstream.oauth.
 */

#define OAUTH_GOOGLE \
	"upstream = {\n" \
	"  username = \"me@gmail.com\";\n" \
	"  auth = \"xoauth2\";\n" \
	"  oauth = {\n" \
	"    provider = \"google\";\n" \
	"    client_id = \"123.apps.googleusercontent.com\";\n" \
	"    client_secret_file = \"secret\";\n" \
	"    refresh_token_file = \"/var/lib/smartrelay/rt\";\n" \
	"  };\n" \
	"};\n"

static void
test_oauth_google_defaults(void **state)
{
	struct cfg *cfg = expect_ok(OAUTH_GOOGLE);
	const struct cfg_oauth *o = &cfg->upstream.oauth;

	assert_int_equal(cfg->upstream.auth, CFG_AUTH_XOAUTH2);
	assert_int_equal(o->provider, CFG_OAUTH_GOOGLE);
	assert_int_equal(o->grant, CFG_GRANT_REFRESH_TOKEN);
	assert_string_equal(o->token_url, "https://oauth2.googleapis.com/token");
	assert_string_equal(o->scope, "https://mail.google.com/");
	assert_string_equal(o->client_id, "123.apps.googleusercontent.com");
	assert_string_equal(o->refresh_token_file, "/var/lib/smartrelay/rt");
	/* Relative to the config's directory, as every path. */
	assert_true(o->client_secret_file[0] == '/');
	assert_non_null(strstr(o->client_secret_file, "/secret"));
	assert_null(o->tenant);
	assert_null(o->ca_file);
	assert_string_equal(cfg_auth_name(cfg->upstream.auth), "xoauth2");
	assert_string_equal(cfg_provider_name(o->provider), "google");
	assert_string_equal(cfg_grant_name(o->grant), "refresh_token");
	cfg_free(cfg);
}

static void
test_oauth_microsoft_defaults(void **state)
{
	struct cfg *cfg;

	cfg = expect_ok("upstream = { host = \"smtp.office365.com\";\n"
	    "username = \"relay@contoso.com\"; auth = \"xoauth2\";\n"
	    "oauth = { provider = \"microsoft\"; client_id = \"abc\";\n"
	    "refresh_token_file = \"/tmp/rt\"; }; };\n");
	assert_string_equal(cfg->upstream.oauth.tenant, "organizations");
	assert_string_equal(cfg->upstream.oauth.token_url,
	    "https://login.microsoftonline.com/organizations/oauth2/v2.0/token");
	assert_string_equal(cfg->upstream.oauth.scope,
	    "https://outlook.office.com/SMTP.Send offline_access");
	assert_null(cfg->upstream.oauth.client_secret_file);
	cfg_free(cfg);
	cfg = expect_ok("upstream = { username = \"relay@contoso.com\";\n"
	    "auth = \"xoauth2\"; oauth = { provider = \"microsoft\";\n"
	    "tenant = \"contoso.onmicrosoft.com\"; grant = "
	    "\"client_credentials\";\n client_id = \"abc\"; "
	    "client_secret_file = \"/s\"; ca_file = \"/ca.pem\"; }; };\n");
	assert_int_equal(cfg->upstream.oauth.grant,
	    CFG_GRANT_CLIENT_CREDENTIALS);
	assert_string_equal(cfg->upstream.oauth.token_url,
	    "https://login.microsoftonline.com/contoso.onmicrosoft.com/"
	    "oauth2/v2.0/token");
	assert_string_equal(cfg->upstream.oauth.scope,
	    "https://outlook.office365.com/.default");
	assert_string_equal(cfg->upstream.oauth.ca_file, "/ca.pem");
	cfg_free(cfg);
	/* Given values win over the defaults; custom needs only token_url. */
	cfg = expect_ok("upstream = { username = \"u@example.org\";\n"
	    "auth = \"xoauth2\"; oauth = { provider = \"custom\";\n"
	    "token_url = \"https://127.0.0.1:8443/token\"; client_id = \"c\";"
	    "\n refresh_token_file = \"/rt\"; }; };\n");
	assert_string_equal(cfg->upstream.oauth.token_url,
	    "https://127.0.0.1:8443/token");
	assert_null(cfg->upstream.oauth.scope);
	cfg_free(cfg);
}

static void
test_oauth_errors(void **state)
{
	expect_error("upstream = {\n auth = \"oauth\";\n};\n", 2,
	    "upstream.auth: \"oauth\" is not an AUTH method", "xoauth2");
	expect_error("upstream = {\n auth = 2;\n};\n", 2,
	    "upstream.auth: expected a string", NULL);
	expect_error("upstream = { username = \"a@b.c\";\n"
	    "password_file = \"/p\";\n oauth = { provider = \"google\"; };\n"
	    "};\n", 3, "upstream.oauth is only used with upstream.auth = "
	    "\"xoauth2\"", NULL);
	expect_error("upstream = { username = \"a@b.c\";\n auth = \"xoauth2\";"
	    "\n};\n", 2, "needs an upstream.oauth group", NULL);
	expect_error("upstream = {\n auth = \"xoauth2\";\n oauth = {\n"
	    "  provider = \"gmail\";\n };\n};\n", 4,
	    "oauth.provider: \"gmail\" is not a provider", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = {\n  client_id = \"c\"; refresh_token_file = \"/r\";\n"
	    "  tokenurl = \"https://x\";\n };\n};\n", 4,
	    "unknown key \"tokenurl\" in oauth", "did you mean \"token_url\"");
}

static void
test_oauth_rules(void **state)
{
	/* No username: XOAUTH2 names the mailbox. */
	expect_error("upstream = {\n auth = \"xoauth2\";\n oauth = {"
	    " client_id = \"c\"; refresh_token_file = \"/r\"; };\n};\n", 2,
	    "needs upstream.username", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = {\n  refresh_token_file = \"/r\";\n };\n};\n", 2,
	    "needs oauth.client_id", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = {\n  client_id = \"c\";\n };\n};\n", 2,
	    "needs oauth.refresh_token_file", "smartrelay oauth");
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = { provider = \"microsoft\"; client_id = \"c\";\n"
	    "  grant = \"client_credentials\";\n };\n};\n", 2,
	    "needs oauth.client_secret_file", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = { client_id = \"c\"; refresh_token_file = \"/r\";\n"
	    "  grant = \"client_credentials\"; client_secret_file = \"/s\";\n"
	    " };\n};\n", 3, "Google does not give SMTP access", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = { client_id = \"c\"; refresh_token_file = \"/r\";\n"
	    "  tenant = \"contoso.com\";\n };\n};\n", 3,
	    "oauth.tenant is only used with provider = \"microsoft\"", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = { client_id = \"c\"; refresh_token_file = \"/r\";\n"
	    "  provider = \"microsoft\"; tenant = \"a/../b\";\n };\n};\n", 3,
	    "oauth.tenant: \"a/../b\" is not a tenant", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = { client_id = \"c\"; refresh_token_file = \"/r\";\n"
	    "  provider = \"custom\";\n };\n};\n", 3,
	    "provider = \"custom\" needs oauth.token_url", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = { client_id = \"c\"; refresh_token_file = \"/r\";\n"
	    "  token_url = \"http://example.org/token\";\n };\n};\n", 3,
	    "oauth.token_url: must be an https:// URL", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = {\n  client_id = \"c d\"; refresh_token_file = \"/r\";"
	    "\n };\n};\n", 3, "oauth.client_id: must be", NULL);
	expect_error("upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " password_file = \"/p\";\n oauth = { client_id = \"c\"; "
	    "refresh_token_file = \"/r\"; };\n};\n", 2,
	    "upstream.password_file is not used with auth = \"xoauth2\"",
	    NULL);
}

/* --check-config reads the OAuth files by the rules of password_file. */
static void
test_oauth_runtime(void **state)
{
	struct cfg_errors errs = { 0 };
	struct cfg *cfg;
	char text[PATH_MAX * 3];

	write_file("cs", "GOCSPX-secretvalue\n", 0600);
	unlink(write_file("rt-missing", "", 0600));
	snprintf(text, sizeof(text), "spool = \"%s/spool\";\n"
	    "upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = {\n  client_id = \"c\";\n  client_secret_file = \"cs\";\n"
	    "  refresh_token_file = \"rt-missing\";\n };\n};\n", tmpdir);
	cfg = expect_ok(text);
	assert_int_equal(cfg_check_runtime(cfg, &errs), -EINVAL);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msgs[0], ":6: oauth.refresh_token_file"));
	assert_non_null(strstr(errs.msgs[0], "run `smartrelay oauth`"));
	cfg_errors_clear(&errs);
	cfg_free(cfg);

	write_file("rt", "1//0refresh-token\n", 0644);
	write_file("cs", "GOCSPX-secretvalue\n", 0640);
	snprintf(text, sizeof(text), "spool = \"%s/spool\";\n"
	    "upstream = { username = \"a@b.c\"; auth = \"xoauth2\";\n"
	    " oauth = {\n  client_id = \"c\";\n  client_secret_file = \"cs\";\n"
	    "  refresh_token_file = \"rt\";\n };\n};\n", tmpdir);
	cfg = expect_ok(text);
	assert_int_equal(cfg_check_runtime(cfg, &errs), -EINVAL);
	assert_int_equal(errs.n, 2);
	assert_non_null(strstr(errs.msgs[0], ":5: oauth.client_secret_file"));
	assert_non_null(strstr(errs.msgs[0], "chmod 600"));
	assert_non_null(strstr(errs.msgs[1], ":6: oauth.refresh_token_file"));
	assert_null(strstr(errs.msgs[0], "GOCSPX"));
	assert_null(strstr(errs.msgs[1], "refresh-token"));
	cfg_errors_clear(&errs);
	chmod(write_file("rt", "1//0refresh-token\n", 0600), 0600);
	write_file("cs", "GOCSPX-secretvalue\n", 0600);
	assert_int_equal(cfg_check_runtime(cfg, &errs), 0);
	cfg_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_loads),
		cmocka_unit_test(test_empty_gives_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_implicit_default_port),
		cmocka_unit_test(test_plaintext_loopback_ok),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_unknown_top_level_key),
		cmocka_unit_test(test_unknown_key_in_group),
		cmocka_unit_test(test_wrong_type),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_retry_order),
		cmocka_unit_test(test_bad_tls),
		cmocka_unit_test(test_bad_allow),
		cmocka_unit_test(test_bad_listen),
		cmocka_unit_test(test_bad_address),
		cmocka_unit_test(test_alias_twice),
		cmocka_unit_test(test_include_error_names_its_file),
		cmocka_unit_test(test_auth_pairs),
		cmocka_unit_test(test_all_problems_reported),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_free_null),
		cmocka_unit_test(test_password_first_line),
		cmocka_unit_test(test_password_refused),
		cmocka_unit_test(test_password_missing),
		cmocka_unit_test(test_password_credential_preferred),
		cmocka_unit_test(test_check_runtime),
		cmocka_unit_test(test_net_match),
		cmocka_unit_test(test_parse_net_bad),
		cmocka_unit_test(test_parse_listen),
		cmocka_unit_test(test_tls_name),
		cmocka_unit_test(test_oauth_google_defaults),
		cmocka_unit_test(test_oauth_microsoft_defaults),
		cmocka_unit_test(test_oauth_errors),
		cmocka_unit_test(test_oauth_rules),
		cmocka_unit_test(test_oauth_runtime),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
