/*
 * addr: mailbox and SMTP path parsing.  See addr.h.
 */
#include "addr.h"
#include "cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* RFC 5322 atext, plus bytes >= 0x80 for SMTPUTF8 (RFC 6531 §3.3). */
static bool
addr_atext(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Checks a local part: a dot-atom or a quoted string. */
static int
addr_check_local(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return -EINVAL;
	if (len > ADDR_LOCAL_MAX)
		return -ENAMETOOLONG;
	if (s[0] == '"') {
		if (len < 2 || s[len - 1] != '"')
			return -EINVAL;
		for (i = 1; i + 1 < len; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '\\') {
				if (++i + 1 >= len)
					return -EINVAL;
				c = (unsigned char)s[i];
			}
			if (c < 0x20 || c == 0x7f)
				return -EINVAL;
		}
		return 0;
	}
	for (i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (i == 0 || i + 1 == len || s[i + 1] == '.')
				return -EINVAL;
		} else if (!addr_atext((unsigned char)s[i]))
			return -EINVAL;
	}
	return 0;
}

/* Checks "[a.b.c.d]" or "[IPv6:...]" loosely: printable, no brackets inside. */
static int
addr_check_literal(const char *d, size_t len)
{
	size_t i;

	if (len < 3 || d[len - 1] != ']')
		return -EINVAL;
	for (i = 1; i + 1 < len; i++)
		if (d[i] <= 0x20 || d[i] >= 0x7f || d[i] == '[' ||
		    d[i] == ']' || d[i] == '\\')
			return -EINVAL;
	return 0;
}

int
addr_check_domain(const char *d)
{
	size_t len = strlen(d), label = 0, i;

	if (len == 0)
		return -EINVAL;
	if (len > ADDR_DOMAIN_MAX)
		return -ENAMETOOLONG;
	if (d[0] == '[')
		return addr_check_literal(d, len);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return -EINVAL;
			label = 0;
			continue;
		}
		if (c == '-' && label == 0)
			return -EINVAL;
		if (!(c >= 0x80 || c == '-' || (c >= '0' && c <= '9') ||
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return -EINVAL;
		if (++label > 63)
			return -EINVAL;
	}
	/* A trailing dot (absolute name) is tolerated; "a..b" is not. */
	return d[len - 1] == '-' ? -EINVAL : 0;
}

/* Finds the '@' that separates local part and domain, or NULL. */
static const char *
addr_find_at(const char *s, size_t len)
{
	bool quoted = false;
	const char *at = NULL;
	size_t i;

	for (i = 0; i < len; i++) {
		if (quoted && s[i] == '\\' && i + 1 < len)
			i++;
		else if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && s[i] == '@')
			at = s + i;
	}
	return at;
}

bool
addr_is_bare(const char *mbox)
{
	return addr_find_at(mbox, strlen(mbox)) == NULL;
}

int
addr_check_mailbox(const char *mbox)
{
	size_t len = strlen(mbox);
	const char *at = addr_find_at(mbox, len);
	int r;

	if (len > ADDR_MAX - 2)
		return -ENAMETOOLONG;
	if (at == NULL)
		return addr_check_local(mbox, len);
	if ((r = addr_check_local(mbox, (size_t)(at - mbox))) < 0)
		return r;
	return addr_check_domain(at + 1);
}

bool
addr_is_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* Returns the end of a bracketed path starting at s ('<'), or NULL. */
static const char *
addr_path_end(const char *s)
{
	bool quoted = false;
	const char *p;

	for (p = s + 1; *p != '\0'; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '>')
			return p;
	}
	return NULL;
}

int
addr_parse_path(const char *s, char *out, size_t outsz, const char **rest)
{
	const char *start, *end, *colon;
	size_t len;
	int r;

	while (*s == ' ')
		s++;
	if (*s == '<') {
		if ((end = addr_path_end(s)) == NULL)
			return -EINVAL;
		start = s + 1;
		*rest = end + 1;
		if (**rest != '\0' && **rest != ' ')
			return -EINVAL;
	} else {
		/* Legacy clients: "MAIL FROM:user@host" without brackets. */
		start = s;
		end = s + strcspn(s, " ");
		*rest = end;
	}
	/* Source route "@a,@b:user@c" (RFC 5321 §4.1.2): ignore the route. */
	if (*start == '@') {
		colon = memchr(start, ':', (size_t)(end - start));
		if (colon == NULL)
			return -EINVAL;
		start = colon + 1;
	}
	len = (size_t)(end - start);
	if (len + 2 > ADDR_MAX)
		return -ENAMETOOLONG;
	if (len >= outsz)
		return -ENAMETOOLONG;
	memcpy(out, start, len);
	out[len] = '\0';
	while (**rest == ' ')
		(*rest)++;
	if (len == 0)
		return *s == '<' ? 0 : -EINVAL;
	if ((r = addr_check_mailbox(out)) < 0)
		return r;
	return 0;
}

int
addr_resolve_local(const char *name, const struct cfg_alias *aliases,
    size_t naliases, const char *local_domain, char *out, size_t outsz)
{
	size_t i;
	int n;

	for (i = 0; i < naliases; i++) {
		if (strcasecmp(aliases[i].name, name) == 0) {
			n = snprintf(out, outsz, "%s", aliases[i].target);
			return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
		}
	}
	if (local_domain == NULL)
		return -ENOENT;
	n = snprintf(out, outsz, "%s@%s", name, local_domain);
	return n < 0 || (size_t)n >= outsz ? -ENAMETOOLONG : 0;
}

const char *
addr_sockaddr_str(const struct sockaddr *sa, char *buf, size_t sz)
{
	const void *a = NULL;

	if (sa->sa_family == AF_INET)
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (a == NULL || inet_ntop(sa->sa_family, a, buf, (socklen_t)sz) ==
	    NULL)
		snprintf(buf, sz, "unknown");
	return buf;
}

bool
addr_is_loopback(const struct sockaddr *sa)
{
	const struct in6_addr *a6;

	if (sa->sa_family == AF_INET)
		return ntohl(((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr.s_addr) >> 24 == 127;
	if (sa->sa_family != AF_INET6)
		return false;
	a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a6) ||
	    (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}
