/*
 * Unit tests of the relay session (daemon/relay.c): which addresses a
 * plaintext session may connect to.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "relay.h"

/* Whether a literal address is one tls = "none" may connect to. */
static bool
loopback(const char *ip)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &in->sin_addr) == 1)
		in->sin_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
	}
	return relay_is_loopback((struct sockaddr *)(void *)&ss);
}

static void
test_plaintext_loopback_only(void **state)
{
	struct sockaddr un = { .sa_family = AF_UNIX };

	assert_true(loopback("127.0.0.1"));
	assert_true(loopback("127.255.3.4"));
	assert_true(loopback("::1"));
	assert_true(loopback("::ffff:127.0.0.1"));
	assert_true(loopback("::ffff:127.9.9.9"));
	assert_false(loopback("126.255.255.255"));
	assert_false(loopback("128.0.0.1"));
	assert_false(loopback("10.0.0.1"));
	assert_false(loopback("0.0.0.0"));
	assert_false(loopback("142.250.102.109"));
	assert_false(loopback("::"));
	assert_false(loopback("::2"));
	assert_false(loopback("::127.0.0.1"));
	assert_false(loopback("::ffff:10.0.0.1"));
	assert_false(loopback("fe80::1"));
	assert_false(loopback("2001:db8::1"));
	assert_false(relay_is_loopback(&un));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plaintext_loopback_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
