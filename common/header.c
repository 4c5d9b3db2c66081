/*
 * header: header hygiene.  See header.h for what it does and why.
 *
 * The input arrives a byte at a time from the DATA filter.  A line is
 * classified by its first byte (RFC 5322 §2.2): CR starts the empty line
 * that ends the section, SP/TAB continues the field being held, anything
 * else starts a new field, which must be a field name and ':' (else the
 * line is the first line of the body).  A field is processed once the
 * next line shows it is complete.
 */
#include "header.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "cfg.h"

#define HDR_SEEN_FROM		0x01
#define HDR_SEEN_DATE		0x02
#define HDR_SEEN_MSGID		0x04
#define HDR_SEEN_REPLYTO	0x08

/* hdr.stream: what happens to a field that outgrew HDR_FIELD_MAX. */
enum { HDR_HOLD, HDR_KEEP, HDR_DROP };

/* Where a line of input is. */
enum hdr_line {
	HDR_L_BOL,		/* at a line start */
	HDR_L_NAME,		/* in a field name */
	HDR_L_VALUE,		/* in a field body or a continuation line */
	HDR_L_EMPTY,		/* CR at a line start */
};

enum hdr_kind {
	HDR_K_OTHER,
	HDR_K_ADDR,		/* an address list to qualify */
	HDR_K_FROM,
	HDR_K_REPLYTO,
	HDR_K_DATE,
	HDR_K_MSGID,
	HDR_K_BCC,
};

static const struct {
	const char *name;
	enum hdr_kind kind;
} hdr_kinds[] = {
	{ "From", HDR_K_FROM },
	{ "Sender", HDR_K_ADDR },
	{ "Reply-To", HDR_K_REPLYTO },
	{ "To", HDR_K_ADDR },
	{ "Cc", HDR_K_ADDR },
	{ "Resent-From", HDR_K_ADDR },
	{ "Resent-Sender", HDR_K_ADDR },
	{ "Resent-Reply-To", HDR_K_ADDR },
	{ "Resent-To", HDR_K_ADDR },
	{ "Resent-Cc", HDR_K_ADDR },
	{ "Date", HDR_K_DATE },
	{ "Message-ID", HDR_K_MSGID },
	{ "Bcc", HDR_K_BCC },
	{ "Resent-Bcc", HDR_K_BCC },
};

/* A growing string; nomem once an allocation failed. */
struct hdr_str {
	char *p;			/* owned */
	size_t len, cap;
	bool nomem;
};

/* Lexical tokens of an address list (RFC 5322 §3.2, §3.4). */
enum hdr_tok {
	HDR_T_WSP,		/* SP, TAB, CR, LF */
	HDR_T_COMMENT,		/* "(...)", nested */
	HDR_T_QUOTED,		/* "\"...\"" */
	HDR_T_LITERAL,		/* "[...]" */
	HDR_T_ATOM,		/* a run of other bytes, dots included */
	HDR_T_SPECIAL,		/* one of , ; : < > @ */
};

struct hdr_token {
	size_t off, len;
	enum hdr_tok type;
};

/* ---- output ------------------------------------------------------------- */

static void
hdr_str_add(struct hdr_str *s, const char *p, size_t n)
{
	char *np;
	size_t cap;

	if (s->nomem)
		return;
	if (s->len + n + 1 > s->cap) {
		cap = s->cap == 0 ? 256 : s->cap;
		while (cap < s->len + n + 1)
			cap *= 2;
		if ((np = realloc(s->p, cap)) == NULL) {
			s->nomem = true;
			return;
		}
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = '\0';
}

/* The last WSP at or before limit with text before it: the fold point. */
static size_t
hdr_fold_point(const char *line, size_t limit)
{
	size_t k, first = 0;

	while (first < limit && (line[first] == ' ' || line[first] == '\t'))
		first++;
	for (k = limit; k > first; k--)
		if (line[k] == ' ' || line[k] == '\t')
			return k;
	return 0;
}

/*
 * Emits text with every line folded to at most HDR_LINE_MAX octets
 * (RFC 5322 §2.2.3: CRLF inserted before a WSP).  A line without any WSP
 * to fold at is broken with CRLF SP.  With final false, an unfinished last
 * line that may still fit is left; returns the bytes used.
 */
static size_t
hdr_emit_folded(struct hdr *h, const char *p, size_t n, bool final)
{
	const char *nl;
	size_t pos = 0, eol, content, limit, k;

	while (pos < n) {
		nl = memchr(p + pos, '\n', n - pos);
		eol = nl != NULL ? (size_t)(nl - p) + 1 : n;
		content = eol - pos;
		if (nl != NULL)
			content -= (content >= 2 && nl[-1] == '\r') ? 2 : 1;
		limit = HDR_LINE_MAX - (h->lead ? 1 : 0);
		if (content <= limit) {
			if (nl == NULL && !final)
				break;
			h->out(h->arg, p + pos, eol - pos);
			h->lead = false;
			pos = eol;
			continue;
		}
		if ((k = hdr_fold_point(p + pos, limit)) > 0) {
			h->out(h->arg, p + pos, k);
			h->out(h->arg, "\r\n", 2);
			h->lead = false;
		} else {
			k = limit;
			h->out(h->arg, p + pos, k);
			h->out(h->arg, "\r\n ", 3);
			h->lead = true;
		}
		pos += k;
	}
	return pos;
}

/* ---- address lists ------------------------------------------------------ */

/* Length of the token starting at v[0] (n > 0 bytes left), and its type. */
static size_t
hdr_token_len(const char *v, size_t n, enum hdr_tok *type)
{
	size_t i = 1;
	int depth = 1;
	char close;

	if (strchr(" \t\r\n", v[0]) != NULL) {
		*type = HDR_T_WSP;
		while (i < n && strchr(" \t\r\n", v[i]) != NULL)
			i++;
		return i;
	}
	if (strchr(",;:<>@", v[0]) != NULL) {
		*type = HDR_T_SPECIAL;
		return 1;
	}
	if (v[0] == '(') {
		*type = HDR_T_COMMENT;
		for (; i < n && depth > 0; i++) {
			if (v[i] == '\\' && i + 1 < n)
				i++;
			else if (v[i] == '(')
				depth++;
			else if (v[i] == ')')
				depth--;
		}
		return i;
	}
	if (v[0] == '"' || v[0] == '[') {
		*type = v[0] == '"' ? HDR_T_QUOTED : HDR_T_LITERAL;
		close = v[0] == '"' ? '"' : ']';
		for (; i < n && v[i] != close; i++)
			if (v[i] == '\\' && i + 1 < n)
				i++;
		return i < n ? i + 1 : n;
	}
	*type = HDR_T_ATOM;
	while (i < n && strchr(" \t\r\n,;:<>@(\"[", v[i]) == NULL)
		i++;
	return i;
}

/* Splits v into tokens (malloc'd array); -ENOMEM. */
static int
hdr_tokenize(const char *v, size_t n, struct hdr_token **tp, size_t *np)
{
	struct hdr_token *t;
	size_t off = 0, k = 0;

	/* Every token is at least one byte long. */
	if ((t = calloc(n + 1, sizeof(*t))) == NULL)
		return -ENOMEM;
	while (off < n) {
		t[k].off = off;
		t[k].len = hdr_token_len(v + off, n - off, &t[k].type);
		off += t[k++].len;
	}
	*tp = t;
	*np = k;
	return 0;
}

static bool
hdr_is_special(const char *v, const struct hdr_token *t, char c)
{
	return t->type == HDR_T_SPECIAL && v[t->off] == c;
}

/* One element of an address list: its tokens and the addr-spec in them. */
struct hdr_elem {
	size_t a, b;			/* tokens [a, b) */
	size_t w0, w1;			/* first and last addr-spec token */
	size_t nwords;
	bool at;			/* an '@' in the addr-spec */
	char addr[ADDR_MAX];		/* the addr-spec, without CFWS */
};

/* Finds the addr-spec: inside <...> if there is one, else the words. */
static void
hdr_elem_scan(const char *v, const struct hdr_token *t, struct hdr_elem *e)
{
	size_t i, a = e->a, b = e->b, n = 0;

	for (i = e->a; i < e->b; i++)
		if (hdr_is_special(v, &t[i], '<')) {
			a = i + 1;
			for (b = a; b < e->b && !hdr_is_special(v, &t[b], '>');)
				b++;
			break;
		}
	e->nwords = 0;
	e->at = false;
	for (i = a; i < b; i++) {
		if (t[i].type == HDR_T_WSP || t[i].type == HDR_T_COMMENT)
			continue;
		if (e->nwords++ == 0)
			e->w0 = i;
		e->w1 = i;
		if (hdr_is_special(v, &t[i], '@'))
			e->at = true;
		if (n + t[i].len < sizeof(e->addr)) {
			memcpy(e->addr + n, v + t[i].off, t[i].len);
			n += t[i].len;
		} else
			n = sizeof(e->addr);	/* too long: never valid */
	}
	e->addr[n < sizeof(e->addr) ? n : 0] = '\0';
}

/*
 * The mailbox an element stands for, qualified: a bare name through the
 * aliases and the domain.  Returns 0, or -EINVAL when it is no mailbox
 * (a phrase, "<>", bad syntax).
 */
static int
hdr_elem_mailbox(const struct hdr *h, const char *v, const struct hdr_token *t,
    const struct hdr_elem *e, char *out, size_t sz)
{
	const struct cfg *cfg = *h->o->cfg;
	const char *domain = cfg->rewrite.local_domain != NULL ?
	    cfg->rewrite.local_domain : cfg->hostname;

	if (e->nwords == 0 || *e->addr == '\0')
		return -EINVAL;
	if (e->at) {
		snprintf(out, sz, "%s", e->addr);
		return addr_check_mailbox(out);
	}
	if (e->nwords != 1 ||
	    (t[e->w0].type != HDR_T_ATOM && t[e->w0].type != HDR_T_QUOTED))
		return -EINVAL;
	if (addr_resolve_local(e->addr, cfg->rewrite.aliases,
	    cfg->rewrite.naliases, domain, out, sz) < 0)
		return -EINVAL;
	return addr_check_mailbox(out);
}

/*
 * Rewrites one element into out.  *first is true until a mailbox was seen;
 * for the first mailbox of From: with header_from, that address replaces
 * it and the old one is kept for Reply-To:.  Returns 1 for a mailbox.
 */
static int
hdr_elem_rewrite(struct hdr *h, const char *v, const struct hdr_token *t,
    struct hdr_elem *e, bool from, struct hdr_str *out)
{
	const char *header_from = (*h->o->cfg)->rewrite.header_from;
	char mbox[ADDR_MAX];
	const char *repl = NULL;
	size_t i;

	hdr_elem_scan(v, t, e);
	if (hdr_elem_mailbox(h, v, t, e, mbox, sizeof(mbox)) < 0) {
		hdr_str_add(out, v + t[e->a].off, t[e->b - 1].off +
		    t[e->b - 1].len - t[e->a].off);
		return 0;
	}
	if (!e->at)
		repl = mbox;
	if (from && header_from != NULL && !(h->seen & HDR_SEEN_FROM) &&
	    h->reply_to == NULL) {
		if ((h->reply_to = strdup(mbox)) == NULL)
			out->nomem = true;
		repl = header_from;
	}
	for (i = e->a; i < e->b; i++) {
		if (repl != NULL && i >= e->w0 && i <= e->w1) {
			if (i == e->w0)
				hdr_str_add(out, repl, strlen(repl));
			continue;
		}
		hdr_str_add(out, v + t[i].off, t[i].len);
	}
	return 1;
}

/*
 * Rewrites the address list v[0..n) into out; returns the number of
 * mailboxes in it.  Elements end at ',' or ';' outside <...>; the words
 * before a ':' are a group's name and stay as they are.
 */
static int
hdr_rewrite_list(struct hdr *h, const char *v, size_t n, bool from,
    struct hdr_str *out)
{
	struct hdr_token *t;
	struct hdr_elem e;
	size_t nt, i;
	bool angle = false;
	int nmbox = 0;

	if (hdr_tokenize(v, n, &t, &nt) < 0) {
		out->nomem = true;
		return 0;
	}
	for (e.a = i = 0; i <= nt; i++) {
		if (i < nt && hdr_is_special(v, &t[i], '<'))
			angle = true;
		else if (i < nt && hdr_is_special(v, &t[i], '>'))
			angle = false;
		if (i < nt && (angle || !(hdr_is_special(v, &t[i], ',') ||
		    hdr_is_special(v, &t[i], ';') ||
		    hdr_is_special(v, &t[i], ':'))))
			continue;
		e.b = i;
		if (e.b > e.a && i < nt && hdr_is_special(v, &t[i], ':'))
			hdr_str_add(out, v + t[e.a].off, t[i].off - t[e.a].off);
		else if (e.b > e.a)
			nmbox += hdr_elem_rewrite(h, v, t, &e, from &&
			    nmbox == 0, out);
		if (i < nt)
			hdr_str_add(out, v + t[i].off, 1);
		e.a = i + 1;
	}
	free(t);
	return nmbox;
}

/* ---- fields ------------------------------------------------------------- */

static enum hdr_kind
hdr_kind(const char *f, size_t namelen)
{
	size_t i;

	for (i = 0; i < sizeof(hdr_kinds) / sizeof(hdr_kinds[0]); i++)
		if (strlen(hdr_kinds[i].name) == namelen &&
		    strncasecmp(f, hdr_kinds[i].name, namelen) == 0)
			return hdr_kinds[i].kind;
	return HDR_K_OTHER;
}

/* RFC 5322 §3.6.4 msg-id: "<" id-left "@" id-right ">", CFWS around. */
static bool
hdr_msgid_ok(const char *v, size_t n)
{
	const char *at = NULL;
	size_t i;

	while (n > 0 && strchr(" \t\r\n", v[n - 1]) != NULL)
		n--;
	while (n > 0 && strchr(" \t\r\n", *v) != NULL)
		v++, n--;
	if (n < 5 || v[0] != '<' || v[n - 1] != '>')
		return false;
	for (i = 1; i + 1 < n; i++) {
		if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f ||
		    strchr("<>()\\,;:", v[i]) != NULL)
			return false;
		if (v[i] == '@') {
			if (at != NULL)
				return false;
			at = v + i;
		}
	}
	return at != NULL && at > v + 1 && at < v + n - 2;
}

/* Emits a field under another name ("X-Original-From"), value unchanged. */
static void
hdr_emit_renamed(struct hdr *h, const char *name, const char *f, size_t len,
    size_t namelen)
{
	struct hdr_str s = { 0 };

	hdr_str_add(&s, name, strlen(name));
	hdr_str_add(&s, f + namelen, len - namelen);
	if (s.nomem)
		h->error = -ENOMEM;
	else
		hdr_emit_folded(h, s.p, s.len, true);
	free(s.p);
}

/* An address field: qualified; From: also checked and header_from applied. */
static void
hdr_address_field(struct hdr *h, enum hdr_kind kind, const char *f,
    size_t len, size_t namelen)
{
	struct hdr_str s = { 0 };
	int nmbox;

	if (kind == HDR_K_FROM && (h->seen & HDR_SEEN_FROM)) {
		hdr_emit_renamed(h, "X-Original-From", f, len, namelen);
		return;
	}
	/*
	 * A NUL byte cannot be read as an address (and the message is refused
	 * for it anyway, docs/smtp.md): the field stays as it is, a From:
	 * under another name, so that ours is added.
	 */
	if (memchr(f, '\0', len) != NULL) {
		if (kind == HDR_K_FROM)
			hdr_emit_renamed(h, "X-Original-From", f, len, namelen);
		else
			hdr_emit_folded(h, f, len, true);
		return;
	}
	hdr_str_add(&s, f, namelen + 1);
	nmbox = hdr_rewrite_list(h, f + namelen + 1, len - namelen - 1,
	    kind == HDR_K_FROM, &s);
	if (s.nomem)
		h->error = -ENOMEM;
	else if (kind == HDR_K_FROM && nmbox == 0)
		hdr_emit_renamed(h, "X-Original-From", f, len, namelen);
	else {
		if (kind == HDR_K_FROM)
			h->seen |= HDR_SEEN_FROM;
		hdr_emit_folded(h, s.p, s.len, true);
	}
	free(s.p);
}

/* Processes one complete field f[0..len) (with its CRLFs) and emits it. */
static void
hdr_field(struct hdr *h, const char *f, size_t len)
{
	size_t namelen = (size_t)((const char *)memchr(f, ':', len) - f);
	enum hdr_kind kind = hdr_kind(f, namelen);

	switch (kind) {
	case HDR_K_BCC:
		return;			/* never travels */
	case HDR_K_DATE:
		if (h->seen & HDR_SEEN_DATE)
			return;
		h->seen |= HDR_SEEN_DATE;
		break;
	case HDR_K_MSGID:
		if ((h->seen & HDR_SEEN_MSGID) ||
		    !hdr_msgid_ok(f + namelen + 1, len - namelen - 1))
			return;		/* ours is added instead */
		h->seen |= HDR_SEEN_MSGID;
		break;
	case HDR_K_REPLYTO:
		h->seen |= HDR_SEEN_REPLYTO;
		__attribute__((fallthrough));
	case HDR_K_ADDR:
	case HDR_K_FROM:
		hdr_address_field(h, kind, f, len, namelen);
		return;
	case HDR_K_OTHER:
		break;
	}
	hdr_emit_folded(h, f, len, true);
}

/* ---- the header section ------------------------------------------------- */

/* The field held is complete: processes it, or ends a long one. */
static void
hdr_flush_field(struct hdr *h)
{
	if (h->stream == HDR_KEEP)
		hdr_emit_folded(h, h->buf, h->len, true);
	else if (h->stream == HDR_HOLD && h->len > 0)
		hdr_field(h, h->buf, h->len);
	h->stream = HDR_HOLD;
	h->lead = false;
	h->len = 0;
}

/* The end of the section: the fields the message lacks. */
static void
hdr_end(struct hdr *h)
{
	const struct hdr_opts *o = h->o;
	char line[ADDR_MAX + 32];

	hdr_flush_field(h);
	h->done = true;
	if (!(h->seen & HDR_SEEN_FROM) && o->from != NULL)
		hdr_field(h, o->from, strlen(o->from));
	if (!(h->seen & HDR_SEEN_DATE) && o->date != NULL)
		h->out(h->arg, o->date, strlen(o->date));
	if (!(h->seen & HDR_SEEN_MSGID) && o->msgid != NULL)
		h->out(h->arg, o->msgid, strlen(o->msgid));
	if (h->reply_to != NULL && !(h->seen & HDR_SEEN_REPLYTO)) {
		snprintf(line, sizeof(line), "Reply-To: <%s>\r\n",
		    h->reply_to);
		h->out(h->arg, line, strlen(line));
	}
	hdr_free(h);		/* nothing more is held for the body */
}

/* The line held is no header field: the body starts with it. */
static void
hdr_not_header(struct hdr *h)
{
	char *line = h->buf;
	size_t len = h->len;

	h->buf = NULL;
	h->len = h->cap = 0;
	hdr_end(h);
	h->out(h->arg, "\r\n", 2);
	h->out(h->arg, line, len);
	free(line);
}

/*
 * A field outgrew HDR_FIELD_MAX: from now on it is passed on folded (or
 * dropped: a Bcc:, a second Date:, From: or Message-ID:, an over-long
 * Message-ID:), a line at a time.
 */
static void
hdr_stream_start(struct hdr *h)
{
	size_t namelen = (size_t)((char *)memchr(h->buf, ':', h->len) - h->buf);
	unsigned bit = 0;

	switch (hdr_kind(h->buf, namelen)) {
	case HDR_K_BCC:
	case HDR_K_MSGID:
		h->stream = HDR_DROP;
		return;
	case HDR_K_DATE:
		bit = HDR_SEEN_DATE;
		break;
	case HDR_K_FROM:
		bit = HDR_SEEN_FROM;
		break;
	case HDR_K_REPLYTO:
		h->seen |= HDR_SEEN_REPLYTO;
		break;
	default:
		break;
	}
	h->stream = (h->seen & bit) ? HDR_DROP : HDR_KEEP;
	h->seen |= bit;
}

/* Appends one byte to the field held, passing long fields on. */
static void
hdr_put(struct hdr *h, char c)
{
	size_t cap, used;
	char *nb;

	if (h->stream == HDR_HOLD && h->len + 1 > HDR_FIELD_MAX &&
	    h->line == HDR_L_VALUE)
		hdr_stream_start(h);
	if (h->stream == HDR_DROP)
		return;
	if (h->len + 1 > h->cap) {
		cap = h->cap == 0 ? 1024 : 2 * h->cap;
		if ((nb = realloc(h->buf, cap)) == NULL) {
			h->error = -ENOMEM;
			return;
		}
		h->buf = nb;
		h->cap = cap;
	}
	h->buf[h->len++] = c;
	if (h->stream == HDR_KEEP && (c == '\n' || h->len > 2 * HDR_LINE_MAX)) {
		used = hdr_emit_folded(h, h->buf, h->len, false);
		memmove(h->buf, h->buf + used, h->len - used);
		h->len -= used;
	}
}

/* True for the characters of a field name (RFC 5322 §2.2). */
static bool
hdr_ftext(char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* One byte at a line start. */
static void
hdr_bol(struct hdr *h, char c)
{
	if (c == '\r') {
		hdr_flush_field(h);
		h->line = HDR_L_EMPTY;
		return;
	}
	if (c == '\n') {
		hdr_end(h);		/* a bare LF: not after body.c */
		h->out(h->arg, "\r\n", 2);
		return;
	}
	if (c == ' ' || c == '\t') {
		hdr_put(h, c);
		if (h->len == 1 && h->stream == HDR_HOLD)
			hdr_not_header(h);	/* no field to continue */
		else
			h->line = HDR_L_VALUE;
		return;
	}
	hdr_flush_field(h);
	h->line = HDR_L_NAME;
	hdr_put(h, c);
	if (!hdr_ftext(c))
		hdr_not_header(h);
}

/* One byte of input; false when it is body (not taken). */
static bool
hdr_byte(struct hdr *h, char c)
{
	switch (h->line) {
	case HDR_L_BOL:
		hdr_bol(h, c);
		return true;
	case HDR_L_EMPTY:
		/* The empty line ends the section; it stays in the output. */
		hdr_end(h);
		h->out(h->arg, "\r\n", 2);
		return c == '\n';
	case HDR_L_NAME:
		hdr_put(h, c);
		if (c == ':')
			h->line = HDR_L_VALUE;
		else if (!hdr_ftext(c) || h->len > HDR_LINE_MAX)
			hdr_not_header(h);
		return true;
	case HDR_L_VALUE:
		hdr_put(h, c);
		if (c == '\n')
			h->line = HDR_L_BOL;
		return true;
	}
	return true;
}

size_t
hdr_feed(struct hdr *h, const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len && !h->done; i++)
		if (!hdr_byte(h, p[i]))
			break;
	return i;
}

void
hdr_init(struct hdr *h, const struct hdr_opts *o, hdr_out_fn *out, void *arg)
{
	memset(h, 0, sizeof(*h));
	h->o = o;
	h->out = out;
	h->arg = arg;
	h->line = HDR_L_BOL;
}

void
hdr_finish(struct hdr *h)
{
	/*
	 * Input that stops inside a field: the field gets its line end, so
	 * that the fields added after it are lines of their own; a name
	 * without its colon is the start of the body.
	 */
	if (!h->done && h->line == HDR_L_VALUE) {
		if (h->stream != HDR_HOLD || h->len == 0 ||
		    h->buf[h->len - 1] != '\r')
			hdr_put(h, '\r');
		hdr_put(h, '\n');
	} else if (!h->done && h->line == HDR_L_NAME)
		hdr_not_header(h);
	if (!h->done)
		hdr_end(h);
}

void
hdr_free(struct hdr *h)
{
	free(h->buf);
	h->buf = NULL;
	h->len = h->cap = 0;
	free(h->reply_to);
	h->reply_to = NULL;
}

int
hdr_from_line(char *buf, size_t sz, const char *sender, const char *hostname)
{
	int n;

	if (*sender == '\0')
		n = snprintf(buf, sz, "From: MAILER-DAEMON@%s\r\n", hostname);
	else
		n = snprintf(buf, sz, "From: <%s>\r\n", sender);
	return n < 0 || (size_t)n >= sz ? -ENAMETOOLONG : 0;
}
