/*
 * queue_format: the text of the spool's files.  Parses a record's envelope
 * and applies a state journal to a parsed message, and formats journal
 * lines (the CRC, the reply sanitised to one line); queue.c does the files
 * and their fsync ordering.  Everything here works on memory and does no
 * I/O, so the fuzzers can drive it.  The format itself (record version 1,
 * the journal, the rules for evolving them) is described at the top of
 * queue.c and in docs/spool.md.
 */
#include "queue.h"
#include "queue_format.h"

#include "dsnparam.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- numbers and the checksum ------------------------------------------ */

bool
queue_id_valid(const char *id)
{
	size_t i;

	if (id == NULL)
		return false;
	for (i = 0; i < QUEUE_ID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'A' && id[i] <= 'F')))
			return false;
	return id[QUEUE_ID_LEN] == '\0';
}

/* IEEE CRC-32 (the zlib one), bitwise: journal lines are short. */
static uint32_t
queue_crc32(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t crc = 0xffffffffu;
	size_t i;
	int k;

	for (i = 0; i < len; i++) {
		crc ^= p[i];
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* Parses 1..maxdigits decimal digits, nothing else, into a value <= max. */
static int
queue_parse_dec(const char *s, size_t len, uint64_t max, uint64_t *vp)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 20)
		return -EBADMSG;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		if (v > (max - (uint64_t)(s[i] - '0')) / 10)
			return -EBADMSG;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*vp = v;
	return 0;
}

/* Parses exactly 1..8 upper-case hex digits. */
static int
queue_parse_hex32(const char *s, size_t len, uint32_t *vp)
{
	uint32_t v = 0;
	size_t i;

	if (len == 0 || len > 8)
		return -EBADMSG;
	for (i = 0; i < len; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			v = v << 4 | (uint32_t)(s[i] - '0');
		else if (s[i] >= 'A' && s[i] <= 'F')
			v = v << 4 | (uint32_t)(s[i] - 'A' + 10);
		else
			return -EBADMSG;
	}
	*vp = v;
	return 0;
}

/* ---- record parser ------------------------------------------------------ */

/* Which single-valued keys a version 1 envelope has shown. */
struct queue_seen {
	bool id, arrival, flags, from, ret, envid;
	bool notify, orcpt;		/* for the last recipient */
	size_t rcpt_cap;
};

void
queue_msg_free(struct queue_msg *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nrcpt; i++) {
		free(m->rcpt[i].addr);
		free(m->rcpt[i].reply);
		free(m->rcpt[i].orcpt);
	}
	free(m->rcpt);
	free(m->from);
	free(m->last_reply);
	free(m->envid);
	free(m);
}

/* Frees what a failed parse allocated and zeroes m. */
void
queue_msg_clear(struct queue_msg *m)
{
	size_t i;

	for (i = 0; i < m->nrcpt; i++) {
		free(m->rcpt[i].addr);
		free(m->rcpt[i].reply);
		free(m->rcpt[i].orcpt);
	}
	free(m->rcpt);
	free(m->from);
	free(m->last_reply);
	free(m->envid);
	memset(m, 0, sizeof(*m));
}

/* Copies "<addr>" out of v without the brackets. */
static int
queue_parse_addr(const char *v, size_t vlen, bool empty_ok, char **out)
{
	if (vlen < 2 || v[0] != '<' || v[vlen - 1] != '>' ||
	    vlen - 2 > QUEUE_MAX_ADDR || (vlen == 2 && !empty_ok))
		return -EBADMSG;
	if ((*out = strndup(v + 1, vlen - 2)) == NULL)
		return -ENOMEM;
	return 0;
}

/* Appends one recipient. */
static int
queue_parse_rcpt(struct queue_msg *m, struct queue_seen *seen, const char *v,
    size_t vlen)
{
	struct queue_rcpt *nr;
	size_t cap;
	char *addr;
	int r;

	if (m->nrcpt >= QUEUE_MAX_RCPT)
		return -EBADMSG;
	if ((r = queue_parse_addr(v, vlen, false, &addr)) < 0)
		return r;
	if (m->nrcpt == seen->rcpt_cap) {
		cap = seen->rcpt_cap == 0 ? 4 : seen->rcpt_cap * 2;
		if ((nr = reallocarray(m->rcpt, cap, sizeof(*nr))) == NULL) {
			free(addr);
			return -ENOMEM;
		}
		m->rcpt = nr;
		seen->rcpt_cap = cap;
	}
	memset(&m->rcpt[m->nrcpt], 0, sizeof(m->rcpt[0]));
	m->rcpt[m->nrcpt].addr = addr;
	m->rcpt[m->nrcpt].state = QUEUE_RCPT_PENDING;
	m->nrcpt++;
	seen->notify = seen->orcpt = false;
	return 0;
}

/*
 * The DSN keys (RFC 3461, docs/spool.md): "ret" and "envid" once per
 * message, "notify" and "orcpt" at most once after each "rcpt", for that
 * recipient.  Returns 1 when key is none of them.
 */
static int
queue_parse_dsn(struct queue_msg *m, struct queue_seen *seen,
    const char *key, size_t klen, const char *v, size_t vlen)
{
	struct queue_rcpt *rc = m->nrcpt > 0 ? &m->rcpt[m->nrcpt - 1] : NULL;
	unsigned bits;

#define KEY(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
	if (KEY("ret")) {
		if (seen->ret || !(vlen == 4 && (memcmp(v, "full", 4) == 0 ||
		    memcmp(v, "hdrs", 4) == 0)))
			return -EBADMSG;
		m->ret = v[0] == 'f' ? QUEUE_RET_FULL : QUEUE_RET_HDRS;
		seen->ret = true;
	} else if (KEY("envid")) {
		if (seen->envid || !dsnparam_envid_ok(v, vlen))
			return -EBADMSG;
		if ((m->envid = strndup(v, vlen)) == NULL)
			return -ENOMEM;
		seen->envid = true;
	} else if (KEY("notify")) {
		if (rc == NULL || seen->notify ||
		    dsnparam_notify(v, vlen, &bits) < 0)
			return -EBADMSG;
		rc->notify = bits;
		seen->notify = true;
	} else if (KEY("orcpt")) {
		if (rc == NULL || seen->orcpt || !dsnparam_orcpt_ok(v, vlen))
			return -EBADMSG;
		if ((rc->orcpt = strndup(v, vlen)) == NULL)
			return -ENOMEM;
		seen->orcpt = true;
	} else
		return 1;
#undef KEY
	return 0;
}

/*
 * Parses one version 1 envelope line (no '\n', no control bytes).  Returns
 * 1 at "body", 0 for a field, or a negative errno.
 */
static int
queue_parse_v1_line(struct queue_msg *m, struct queue_seen *seen,
    const char *line, size_t len)
{
	const char *sp = memchr(line, ' ', len), *v;
	size_t klen = sp != NULL ? (size_t)(sp - line) : len, vlen, i;
	uint64_t val;
	uint32_t flags;
	int r;

	v = sp != NULL ? sp + 1 : line + len;
	vlen = sp != NULL ? len - klen - 1 : 0;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(line, k, klen) == 0)
	if (KEY("body"))
		return sp == NULL ? 1 : -EBADMSG;
	if (sp == NULL)
		return -EBADMSG;
	if (KEY("id")) {
		if (seen->id || vlen != QUEUE_ID_LEN)
			return -EBADMSG;
		memcpy(m->id, v, QUEUE_ID_LEN);
		m->id[QUEUE_ID_LEN] = '\0';
		if (!queue_id_valid(m->id))
			return -EBADMSG;
		seen->id = true;
	} else if (KEY("arrival")) {
		if (seen->arrival ||
		    queue_parse_dec(v, vlen, QUEUE_TIME_MAX, &val) < 0)
			return -EBADMSG;
		m->arrival = (time_t)val;
		seen->arrival = true;
	} else if (KEY("flags")) {
		if (seen->flags || queue_parse_hex32(v, vlen, &flags) < 0)
			return -EBADMSG;
		m->flags = flags;
		seen->flags = true;
	} else if (KEY("from")) {
		if (seen->from)
			return -EBADMSG;
		if ((r = queue_parse_addr(v, vlen, true, &m->from)) < 0)
			return r;
		seen->from = true;
	} else if (KEY("rcpt")) {
		return queue_parse_rcpt(m, seen, v, vlen);
	} else if ((r = queue_parse_dsn(m, seen, line, klen, v, vlen)) != 1) {
		return r;
	} else {
		/* Unknown: critical ('!') refuses the record; others skip. */
		if (klen == 0 || line[0] == '!')
			return -EBADMSG;
		for (i = 0; i < klen; i++)
			if (!((line[i] >= 'a' && line[i] <= 'z') ||
			    (line[i] >= '0' && line[i] <= '9') ||
			    line[i] == '-'))
				return -EBADMSG;
	}
#undef KEY
	return 0;
}

/* Parses the "SMARTRELAY-QUEUE N" line into the version number. */
static int
queue_parse_magic(const char *line, size_t len, unsigned *versionp)
{
	size_t mlen = sizeof(QUEUE_MAGIC) - 1;
	uint64_t v;

	if (len <= mlen || memcmp(line, QUEUE_MAGIC, mlen) != 0 ||
	    queue_parse_dec(line + mlen, len - mlen, UINT_MAX, &v) < 0 ||
	    v == 0)
		return -EBADMSG;
	if (v > QUEUE_FORMAT_VERSION)
		return -ENOTSUP;
	*versionp = (unsigned)v;
	return 0;
}

int
queue_parse_envelope(const char *buf, size_t len, struct queue_msg *m,
    size_t *body_offset)
{
	struct queue_seen seen = { 0 };
	const char *line, *nl;
	size_t pos = 0, llen, i, avail;
	unsigned version = 0;
	int r = 0;

	memset(m, 0, sizeof(*m));
	for (;;) {
		line = buf + pos;
		avail = len - pos;
		nl = memchr(line, '\n', avail < QUEUE_LINE_MAX + 1 ?
		    avail : QUEUE_LINE_MAX + 1);
		if (nl == NULL) {
			r = avail > QUEUE_LINE_MAX || len >=
			    QUEUE_ENVELOPE_MAX ? -EBADMSG : -EAGAIN;
			goto fail;
		}
		llen = (size_t)(nl - line);
		pos += llen + 1;
		if (pos > QUEUE_ENVELOPE_MAX) {
			r = -EBADMSG;
			goto fail;
		}
		for (i = 0; i < llen; i++)
			if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) {
				r = -EBADMSG;
				goto fail;
			}
		if (version == 0) {
			if ((r = queue_parse_magic(line, llen, &version)) < 0)
				goto fail;
			continue;
		}
		/* Only version 1 exists; later ones add a case here. */
		if ((r = queue_parse_v1_line(m, &seen, line, llen)) < 0)
			goto fail;
		if (r == 1)
			break;
	}
	if (!seen.id || !seen.arrival || !seen.flags || !seen.from ||
	    m->nrcpt == 0) {
		r = -EBADMSG;
		goto fail;
	}
	m->body_offset = pos;
	*body_offset = pos;
	return 0;
fail:
	queue_msg_clear(m);
	return r;
}

/* ---- journal ------------------------------------------------------------ */

/* Cuts the next space-separated token off [*p, end). */
static bool
queue_token(const char **p, const char *end, const char **tok, size_t *len)
{
	const char *sp;

	if (*p >= end)
		return false;
	sp = memchr(*p, ' ', (size_t)(end - *p));
	*tok = *p;
	*len = (size_t)((sp != NULL ? sp : end) - *p);
	*p = sp != NULL ? sp + 1 : end;
	return *len > 0;
}

/* Duplicates the optional trailing reply; NULL when absent. */
static int
queue_reply_dup(const char *p, const char *end, char **out)
{
	*out = NULL;
	if (p >= end)
		return 0;
	if ((size_t)(end - p) > QUEUE_MAX_REPLY)
		return -EBADMSG;
	if ((*out = strndup(p, (size_t)(end - p))) == NULL)
		return -ENOMEM;
	return 0;
}

/* Applies "rcpt I STATE TIME[ REPLY]" (after the kind). */
static int
queue_journal_rcpt(struct queue_msg *m, const char *p, const char *end)
{
	const char *tok;
	size_t len;
	uint64_t i, t;
	enum queue_rcpt_state state;
	char *reply;
	int r;

	if (!queue_token(&p, end, &tok, &len) ||
	    queue_parse_dec(tok, len, SIZE_MAX, &i) < 0 || i >= m->nrcpt)
		return -EBADMSG;
	if (!queue_token(&p, end, &tok, &len))
		return -EBADMSG;
	if (len == 7 && memcmp(tok, "pending", 7) == 0)
		state = QUEUE_RCPT_PENDING;
	else if (len == 9 && memcmp(tok, "delivered", 9) == 0)
		state = QUEUE_RCPT_DELIVERED;
	else if (len == 6 && memcmp(tok, "failed", 6) == 0)
		state = QUEUE_RCPT_FAILED;
	else
		return -EBADMSG;
	if (!queue_token(&p, end, &tok, &len) ||
	    queue_parse_dec(tok, len, QUEUE_TIME_MAX, &t) < 0)
		return -EBADMSG;
	if ((r = queue_reply_dup(p, end, &reply)) < 0)
		return r;
	m->rcpt[i].state = state;
	m->rcpt[i].updated = (time_t)t;
	free(m->rcpt[i].reply);
	m->rcpt[i].reply = reply;
	return 0;
}

/* Applies "sched ATTEMPTS NEXT[ REPLY]" (after the kind). */
static int
queue_journal_sched(struct queue_msg *m, const char *p, const char *end)
{
	const char *tok;
	size_t len;
	uint64_t attempts, next;
	char *reply;
	int r;

	if (!queue_token(&p, end, &tok, &len) ||
	    queue_parse_dec(tok, len, UINT_MAX, &attempts) < 0 ||
	    !queue_token(&p, end, &tok, &len) ||
	    queue_parse_dec(tok, len, QUEUE_TIME_MAX, &next) < 0)
		return -EBADMSG;
	if ((r = queue_reply_dup(p, end, &reply)) < 0)
		return r;
	m->attempts = (unsigned)attempts;
	m->next_attempt = (time_t)next;
	free(m->last_reply);
	m->last_reply = reply;
	return 0;
}

/* Applies "dsn relayed I" or "dsn delayed TIME" (after the kind). */
static int
queue_journal_dsn(struct queue_msg *m, const char *p, const char *end)
{
	const char *tok;
	size_t len;
	uint64_t v;

	if (!queue_token(&p, end, &tok, &len))
		return -EBADMSG;
	if (len == 7 && memcmp(tok, "relayed", 7) == 0) {
		if (!queue_token(&p, end, &tok, &len) || p != end ||
		    queue_parse_dec(tok, len, SIZE_MAX, &v) < 0 ||
		    v >= m->nrcpt)
			return -EBADMSG;
		m->rcpt[v].relayed = true;
		return 0;
	}
	if (len == 7 && memcmp(tok, "delayed", 7) == 0) {
		if (!queue_token(&p, end, &tok, &len) || p != end ||
		    queue_parse_dec(tok, len, QUEUE_TIME_MAX, &v) < 0 ||
		    v == 0)
			return -EBADMSG;
		m->delay_notice = (time_t)v;
		return 0;
	}
	return -EBADMSG;
}

/* Checks and applies one journal line (without its '\n'). */
static int
queue_journal_line(struct queue_msg *m, const char *line, size_t len)
{
	const char *p, *end = line + len, *kind;
	uint32_t crc;
	size_t i, klen;

	if (len < 10 || len > QUEUE_LINE_MAX || line[8] != ' ' ||
	    queue_parse_hex32(line, 8, &crc) < 0 ||
	    queue_crc32(line + 9, len - 9) != crc)
		return -EBADMSG;
	for (i = 9; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			return -EBADMSG;
	p = line + 9;
	if (!queue_token(&p, end, &kind, &klen))
		return -EBADMSG;
	if (klen == 4 && memcmp(kind, "rcpt", 4) == 0)
		return queue_journal_rcpt(m, p, end);
	if (klen == 5 && memcmp(kind, "sched", 5) == 0)
		return queue_journal_sched(m, p, end);
	if (klen == 3 && memcmp(kind, "dsn", 3) == 0)
		return queue_journal_dsn(m, p, end);
	return -EBADMSG;	/* a kind from a newer version: skipped */
}

int
queue_journal_apply(struct queue_msg *m, const char *buf, size_t len)
{
	const char *nl;
	size_t pos = 0;
	int ignored = 0, r;

	while (pos < len) {
		if ((nl = memchr(buf + pos, '\n', len - pos)) == NULL) {
			ignored++;	/* torn last line */
			break;
		}
		r = queue_journal_line(m, buf + pos, (size_t)(nl - buf) - pos);
		if (r == -ENOMEM)
			return r;
		if (r < 0 && ignored < INT_MAX)
			ignored++;
		pos = (size_t)(nl - buf) + 1;
	}
	return ignored;
}

/* Copies src as one printable ASCII line, at most QUEUE_MAX_REPLY bytes. */
size_t
queue_sanitize(char *dst, const char *src)
{
	size_t n = 0;
	unsigned char c;

	for (; src != NULL && *src != '\0' && n < QUEUE_MAX_REPLY; src++) {
		c = (unsigned char)*src;
		if (c == '\r' && src[1] == '\n')
			continue;	/* CRLF becomes one space */
		if (c == '\r' || c == '\n' || c == '\t')
			c = ' ';
		else if (c < 0x20 || c >= 0x7f)
			c = '?';
		if (c == ' ' && (n == 0 || dst[n - 1] == ' '))
			continue;
		dst[n++] = (char)c;
	}
	while (n > 0 && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
	return n;
}

/* ---- journal lines ------------------------------------------------------ */

int
queue_journal_format(char line[QUEUE_LINE_MAX + 1], const char *payload,
    size_t *lenp)
{
	size_t plen = strlen(payload);

	if (plen + 10 > QUEUE_LINE_MAX)
		return -EINVAL;
	*lenp = (size_t)snprintf(line, QUEUE_LINE_MAX + 1, "%08" PRIX32
	    " %s\n", queue_crc32(payload, plen), payload);
	return 0;
}
