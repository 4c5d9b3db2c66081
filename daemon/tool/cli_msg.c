/*
 * cli_msg: the message-header helpers of sendmail (RFC 5322 §2.2, §3.4):
 * where the header section ends, header fields and their unfolded values,
 * and the addresses in an address list ("A <a@x>, b@y (Bob), G: c@z;").
 */
#include "cli_msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* True for the characters of a field name. */
static bool
cli_ftext(char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

bool
cli_hdr_field_start(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len && cli_ftext(line[i]); i++)
		continue;
	return i > 0 && i < len && line[i] == ':';
}

bool
cli_hdr_is(const char *field, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len > n && field[n] == ':' && strncasecmp(field, name, n) == 0;
}

char *
cli_hdr_value(const char *field, size_t len)
{
	const char *colon = memchr(field, ':', len);
	char *v;
	size_t i, n = 0;

	if (colon == NULL || (v = malloc(len + 1)) == NULL)
		return NULL;
	for (i = (size_t)(colon - field) + 1; i < len; i++) {
		if (field[i] == '\r' || field[i] == '\n')
			continue;	/* unfolding: the WSP stays */
		v[n++] = field[i];
	}
	v[n] = '\0';
	return v;
}

/* Appends c to the element being collected. */
static int
cli_put(char **buf, size_t *len, size_t *cap, char c)
{
	char *nb;

	if (*len + 2 > *cap) {
		*cap = *cap == 0 ? 64 : *cap * 2;
		if ((nb = realloc(*buf, *cap)) == NULL)
			return -ENOMEM;
		*buf = nb;
	}
	(*buf)[(*len)++] = c;
	(*buf)[*len] = '\0';
	return 0;
}

/* Copies a quoted string or domain literal starting at *p (with escapes). */
static int
cli_copy_delimited(const char **p, char close, char **buf, size_t *len,
    size_t *cap)
{
	const char *s = *p;
	int r;

	if ((r = cli_put(buf, len, cap, *s++)) < 0)
		return r;
	while (*s != '\0' && *s != close) {
		if (*s == '\\' && s[1] != '\0' &&
		    (r = cli_put(buf, len, cap, *s++)) < 0)
			return r;
		if ((r = cli_put(buf, len, cap, *s++)) < 0)
			return r;
	}
	if (*s == close && (r = cli_put(buf, len, cap, *s++)) < 0)
		return r;
	*p = s;
	return 0;
}

/* Skips a comment "(...)", nested, at *p. */
static void
cli_skip_comment(const char **p)
{
	const char *s = *p;
	int depth = 0;

	do {
		if (*s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '(')
			depth++;
		else if (*s == ')')
			depth--;
		s++;
	} while (*s != '\0' && depth > 0);
	*p = s;
}

/* Hands one element to cb: the angle address if any, else the text. */
static int
cli_element(char *text, char *angle, bool has_angle,
    int (*cb)(void *, const char *), void *arg)
{
	char *s = has_angle ? angle : text, *e;

	if (s == NULL)
		return 0;
	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	if (*s == '\0' || (has_angle && strcmp(s, "<>") == 0))
		return 0;
	return cb(arg, s);
}

int
cli_addr_list(const char *v, int (*cb)(void *, const char *), void *arg)
{
	char *text = NULL, *angle = NULL;
	size_t tlen = 0, tcap = 0, alen = 0, acap = 0;
	bool has_angle = false;
	int r = 0;

	while (r == 0) {
		if (*v == '\0' || *v == ',' || *v == ';') {
			r = cli_element(text, angle, has_angle, cb, arg);
			tlen = alen = 0;
			if (text != NULL)
				*text = '\0';
			has_angle = false;
			if (*v == '\0')
				break;
			v++;
		} else if (*v == '"' || *v == '[')
			r = cli_copy_delimited(&v, *v == '"' ? '"' : ']',
			    &text, &tlen, &tcap);
		else if (*v == '(')
			cli_skip_comment(&v);
		else if (*v == ':' && !has_angle) {
			/* "group:" — the name is not an address. */
			tlen = 0;
			if (text != NULL)
				*text = '\0';
			v++;
		} else if (*v == '<') {
			alen = 0;
			while (r == 0 && *v != '\0' && *v != '>') {
				if (*v == '"')
					r = cli_copy_delimited(&v, '"', &angle,
					    &alen, &acap);
				else
					r = cli_put(&angle, &alen, &acap, *v++);
			}
			/* Unterminated, it stays so and fails the syntax. */
			if (r == 0 && *v == '>') {
				r = cli_put(&angle, &alen, &acap, '>');
				v++;
			}
			has_angle = true;
		} else
			r = cli_put(&text, &tlen, &tcap, *v++);
	}
	free(text);
	free(angle);
	return r;
}
