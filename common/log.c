/*
 * log: key=value log lines to journald or stderr.  See log.h.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#define LOG_LINE_MAX 2048

static enum log_target log_target = LOG_TARGET_STDERR;
static int log_debug_on;
static const char *log_ident = "smartrelay";

/* True when JOURNAL_STREAM names the device and inode of our stderr. */
static int
log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *ident, int debug)
{
	log_ident = ident;
	log_debug_on = debug;
	log_target = log_stderr_is_journal() ? LOG_TARGET_JOURNAL :
	    LOG_TARGET_STDERR;
}

void
log_set_target(enum log_target target)
{
	log_target = target;
}

enum log_target
log_get_target(void)
{
	return log_target;
}

int
log_debug_enabled(void)
{
	return log_debug_on;
}

static const char *
log_level_name(int prio)
{
	switch (prio) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
		return "crit";
	case LOG_ERR:
		return "err";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void
log_vmsg(int prio, const char *qid, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int n = 0;

	if (prio == LOG_DEBUG && !log_debug_on)
		return;
	if (qid != NULL)
		n = snprintf(line, sizeof(line), "id=%s ", qid);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);

	if (log_target == LOG_TARGET_JOURNAL) {
		if (qid != NULL)
			sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", prio,
			    "SYSLOG_IDENTIFIER=%s", log_ident,
			    "SMARTRELAY_QUEUE_ID=%s", qid, NULL);
		else
			sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", prio,
			    "SYSLOG_IDENTIFIER=%s", log_ident, NULL);
		return;
	}
	fprintf(stderr, "%s: level=%s %s\n", log_ident, log_level_name(prio),
	    line);
}

void
log_msg(int prio, const char *qid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, qid, fmt, ap);
	va_end(ap);
}

/* Copies src into buf, replacing non-printable bytes with '?'. */
static void
log_copy_printable(char *buf, size_t bufsz, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < bufsz && src[i] != '\0'; i++)
		buf[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	buf[i] = '\0';
}

void
log_mask_line(char *buf, size_t bufsz, const char *line, int after_auth)
{
	const char *p;
	size_t verb;

	if (bufsz == 0)
		return;
	if (after_auth) {
		snprintf(buf, bufsz, "***");
		return;
	}
	if (strncasecmp(line, "AUTH", 4) == 0 &&
	    (line[4] == ' ' || line[4] == '\0')) {
		/* Keep "AUTH MECH", hide any initial response. */
		p = line + 4;
		while (*p == ' ')
			p++;
		verb = strcspn(p, " ");
		if (verb > 20)
			verb = 20;
		snprintf(buf, bufsz, "AUTH %.*s%s", (int)verb, p,
		    p[verb] == ' ' ? " ***" : "");
		log_copy_printable(buf, bufsz, buf);
		return;
	}
	log_copy_printable(buf, bufsz, line);
}

void
log_dialogue(const char *who, const char *dir, const char *line,
    int after_auth)
{
	char masked[1024];

	if (!log_debug_on)
		return;
	log_mask_line(masked, sizeof(masked), line, after_auth);
	log_msg(LOG_DEBUG, NULL, "%s %s %s", who, dir, masked);
}

const char *
log_quote(char *buf, size_t bufsz, const char *s)
{
	size_t o = 0;

	if (bufsz == 0)
		return buf;
	for (; *s != '\0' && o + 2 < bufsz; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			continue;
		if (c == '"' || c == '\\') {
			if (o + 3 >= bufsz)
				break;
			buf[o++] = '\\';
		}
		buf[o++] = (char)c;
	}
	buf[o] = '\0';
	return buf;
}

/* True when addr can stand bare between < and > in a key=value line. */
static int
log_addr_plain(const char *addr)
{
	const unsigned char *p;

	for (p = (const unsigned char *)addr; *p != '\0'; p++)
		if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\' ||
		    *p == '<' || *p == '>')
			return 0;
	return 1;
}

const char *
log_addr(char *buf, size_t bufsz, const char *addr)
{
	size_t n;

	if (bufsz < 6) {
		if (bufsz > 0)
			buf[0] = '\0';
		return buf;
	}
	if (log_addr_plain(addr)) {
		snprintf(buf, bufsz, "<%s>", addr);
		if (strlen(addr) + 2 >= bufsz)
			buf[bufsz - 2] = '>';
		return buf;
	}
	/* "\"<" + escaped address + ">\"": log_quote() leaves room for 3. */
	buf[0] = '"';
	buf[1] = '<';
	log_quote(buf + 2, bufsz - 4, addr);
	n = strlen(buf);
	buf[n++] = '>';
	buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}
