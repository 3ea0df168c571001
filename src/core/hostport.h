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

/*
 * Parses "HOST:PORT" or "[IPV6]:PORT" (the brackets of RFC 3986, so an
 * IPv6 literal's colons are not the port's): *host gets HOST without
 * brackets (cap bytes with its NUL), *port the number in [1, 65535]
 * (port0_ok: 0 too, a listener's "any free port"). An IPv6 literal must
 * be bracketed and valid (inet_pton), and an unbracketed HOST holds no
 * colon; *v6 (may be NULL) says the host was bracketed. Returns 0 or
 * SPW_EINVAL.
 */
int spw_hostport_parse(const char *s, char *host, size_t cap, uint16_t *port, int port0_ok, int *v6);

/* Splits the NUL-terminated s at its last colon. HOST must not be empty
 * and PORT must be a number in [1, 65535], nothing after it (as strtol
 * reads it). On success *hostlen is HOST's length and *port the number;
 * returns 0 or SPW_EINVAL. */
int spw_hostport_split(const char *s, size_t *hostlen, uint16_t *port);

#endif
