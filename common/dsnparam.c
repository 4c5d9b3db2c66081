/*
 * dsnparam: RFC 3461 DSN parameter values.  See dsnparam.h.
 */
#include "dsnparam.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The NOTIFY keywords, in the order they are formatted. */
static const struct {
	const char *word;
	unsigned bit;
} dsnparam_words[] = {
	{ "never", QUEUE_NOTIFY_NEVER },
	{ "success", QUEUE_NOTIFY_SUCCESS },
	{ "failure", QUEUE_NOTIFY_FAILURE },
	{ "delay", QUEUE_NOTIFY_DELAY },
};

#define NWORDS	(sizeof(dsnparam_words) / sizeof(dsnparam_words[0]))

int
dsnparam_notify(const char *v, size_t len, unsigned *bits)
{
	const char *end = v + len, *comma;
	unsigned out = 0, bit;
	size_t wl, k;

	while (v < end) {
		comma = memchr(v, ',', (size_t)(end - v));
		wl = (size_t)((comma != NULL ? comma : end) - v);
		bit = 0;
		for (k = 0; k < NWORDS; k++)
			if (wl == strlen(dsnparam_words[k].word) &&
			    strncasecmp(v, dsnparam_words[k].word, wl) == 0)
				bit = dsnparam_words[k].bit;
		if (bit == 0 || (out & bit))
			return -EINVAL;
		out |= bit;
		if (comma == NULL)
			break;
		v = comma + 1;
		if (v == end)
			return -EINVAL;	/* a trailing comma */
	}
	if (!dsnparam_notify_ok(out) || out == 0)
		return -EINVAL;
	*bits = out;
	return 0;
}

bool
dsnparam_notify_ok(unsigned bits)
{
	/* RFC 3461 §4.1: NEVER stands alone. */
	if (bits & ~(unsigned)(QUEUE_NOTIFY_NEVER | QUEUE_NOTIFY_SUCCESS |
	    QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY))
		return false;
	return !(bits & QUEUE_NOTIFY_NEVER) || bits == QUEUE_NOTIFY_NEVER;
}

void
dsnparam_notify_format(unsigned bits, char *buf, size_t sz)
{
	size_t k, n = 0;
	int w;

	if (sz == 0)
		return;
	buf[0] = '\0';
	for (k = 0; k < NWORDS; k++) {
		if (!(bits & dsnparam_words[k].bit))
			continue;
		w = snprintf(buf + n, sz - n, "%s%s", n > 0 ? "," : "",
		    dsnparam_words[k].word);
		if (w < 0 || (size_t)w >= sz - n)
			return;
		n += (size_t)w;
	}
}

/* The value of an upper-case hex digit, or -1. */
static int
dsnparam_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool
dsnparam_xtext_ok(const char *v, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (v[i] == '+') {
			if (i + 2 >= len || dsnparam_hex(v[i + 1]) < 0 ||
			    dsnparam_hex(v[i + 2]) < 0)
				return false;
			i += 2;
		} else if (v[i] < '!' || v[i] > '~' || v[i] == '=')
			return false;
	}
	return true;
}

bool
dsnparam_envid_ok(const char *v, size_t len)
{
	return len > 0 && len <= DSNPARAM_ENVID_MAX &&
	    dsnparam_xtext_ok(v, len);
}

bool
dsnparam_orcpt_ok(const char *v, size_t len)
{
	const char *semi;
	size_t tl, i;

	if (len == 0 || len > DSNPARAM_ORCPT_MAX ||
	    (semi = memchr(v, ';', len)) == NULL)
		return false;
	tl = (size_t)(semi - v);
	if (tl == 0 || tl == len - 1)
		return false;
	/* addr-type = atom (RFC 3461 §4.2), its atext characters. */
	for (i = 0; i < tl; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') ||
		    (v[i] >= 'A' && v[i] <= 'Z') ||
		    (v[i] >= '0' && v[i] <= '9') ||
		    strchr("!#$%&'*+-/=?^_`{|}~", v[i]) != NULL))
			return false;
	return dsnparam_xtext_ok(semi + 1, len - tl - 1);
}

void
dsnparam_xtext_decode(const char *src, char *dst, size_t sz)
{
	size_t n = 0;
	int c;

	if (sz == 0)
		return;
	for (; *src != '\0' && n + 1 < sz; src++) {
		c = (unsigned char)*src;
		if (c == '+' && dsnparam_hex(src[1]) >= 0 &&
		    dsnparam_hex(src[2]) >= 0) {
			c = dsnparam_hex(src[1]) * 16 + dsnparam_hex(src[2]);
			src += 2;
		}
		dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[n] = '\0';
}

int
dsnparam_xtext_encode(const char *src, char *dst, size_t sz)
{
	size_t n = 0;
	unsigned char c;

	for (; *src != '\0'; src++) {
		c = (unsigned char)*src;
		if (c >= '!' && c <= '~' && c != '+' && c != '=') {
			if (n + 1 >= sz)
				return -ENAMETOOLONG;
			dst[n++] = (char)c;
		} else {
			if (n + 3 >= sz)
				return -ENAMETOOLONG;
			snprintf(dst + n, 4, "+%02X", c);
			n += 3;
		}
	}
	if (n >= sz)
		return -ENAMETOOLONG;
	dst[n] = '\0';
	return 0;
}

/* True when p (len bytes) starts with key (which ends in '='), any case. */
static bool
dsnparam_key(const char *p, size_t len, const char *key)
{
	size_t kl = strlen(key);

	return len >= kl && strncasecmp(p, key, kl) == 0;
}

int
dsnparam_mail(struct dsnparam_mail *d, const char *p, size_t len,
    const char **reply)
{
	const char *v;
	size_t vl;

	if (dsnparam_key(p, len, "RET=")) {
		v = p + 4;
		vl = len - 4;
		*reply = "501 5.5.4 Bad RET parameter (FULL or HDRS, once)";
		if (d->ret != QUEUE_RET_UNSET)
			return -EINVAL;
		if (vl == 4 && strncasecmp(v, "FULL", 4) == 0)
			d->ret = QUEUE_RET_FULL;
		else if (vl == 4 && strncasecmp(v, "HDRS", 4) == 0)
			d->ret = QUEUE_RET_HDRS;
		else
			return -EINVAL;
		return 0;
	}
	if (dsnparam_key(p, len, "ENVID=")) {
		v = p + 6;
		vl = len - 6;
		*reply = "501 5.5.4 Bad ENVID parameter (xtext, up to 100 "
		    "characters, once)";
		if (d->envid[0] != '\0' || !dsnparam_envid_ok(v, vl))
			return -EINVAL;
		memcpy(d->envid, v, vl);
		d->envid[vl] = '\0';
		return 0;
	}
	return 1;
}

int
dsnparam_rcpt(struct dsnparam_rcpt *d, const char *p, size_t len,
    const char **reply)
{
	const char *v;
	size_t vl;

	if (dsnparam_key(p, len, "NOTIFY=")) {
		*reply = "501 5.5.4 Bad NOTIFY parameter (NEVER, or "
		    "SUCCESS,FAILURE,DELAY, once)";
		if (d->notify != 0 ||
		    dsnparam_notify(p + 7, len - 7, &d->notify) < 0)
			return -EINVAL;
		return 0;
	}
	if (dsnparam_key(p, len, "ORCPT=")) {
		v = p + 6;
		vl = len - 6;
		*reply = "501 5.5.4 Bad ORCPT parameter (addr-type;xtext, up "
		    "to 500 characters, once)";
		if (d->orcpt[0] != '\0' || !dsnparam_orcpt_ok(v, vl))
			return -EINVAL;
		memcpy(d->orcpt, v, vl);
		d->orcpt[vl] = '\0';
		return 0;
	}
	return 1;
}
