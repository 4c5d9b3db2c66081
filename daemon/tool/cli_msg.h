/*
 * cli_msg: message-header helpers for the sendmail interface (-t, Bcc,
 * From).  Pure functions over bytes, no I/O.
 */
#ifndef SMARTRELAY_CLI_MSG_H
#define SMARTRELAY_CLI_MSG_H

#include <stdbool.h>
#include <stddef.h>

/* True when line starts a header field ("Name:"). */
bool cli_hdr_field_start(const char *line, size_t len);
/* True when the field (starting at its name) is called name (any case). */
bool cli_hdr_is(const char *field, size_t len, const char *name);
/* The unfolded value of a field, malloc'd; NULL without memory. */
char *cli_hdr_value(const char *field, size_t len);
/*
 * Calls cb for each address of an RFC 5322 address list: the part in
 * angle brackets, with them ("<a@x>"), or the bare text without comments
 * ("b@y").  Group names and display names are skipped.  Stops at the
 * first cb that returns nonzero and returns that; -ENOMEM.
 */
int cli_addr_list(const char *value, int (*cb)(void *, const char *),
    void *arg);

#endif
