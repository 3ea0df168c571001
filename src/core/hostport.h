/*
 * "HOST:PORT", the form every address a user writes takes (the client's
 * server list, the CLI's --server and --http). Split here once; what HOST
 * may be (an IPv4 address, localhost, a name to resolve) is the caller's
 * rule.
 */
#ifndef SPW_HOSTPORT_H
#define SPW_HOSTPORT_H

#include <stddef.h>
#include <stdint.h>

/* Splits the NUL-terminated s at its last colon. HOST must not be empty
 * and PORT must be a number in [1, 65535], nothing after it (as strtol
 * reads it). On success *hostlen is HOST's length and *port the number;
 * returns 0 or SPW_EINVAL. */
int spw_hostport_split(const char *s, size_t *hostlen, uint16_t *port);

#endif
