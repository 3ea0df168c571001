/* "HOST:PORT": see hostport.h. */
#include "core/hostport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int spw_hostport_split(const char *s, size_t *hostlen, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon[1] == 0 || colon[1] == '-')
        return SPW_EINVAL;
    char *end;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (errno || *end || v < 1 || v > 65535)
        return SPW_EINVAL;
    *hostlen = (size_t)(colon - s);
    *port = (uint16_t)v;
    return 0;
}

int spw_hostport_parse(const char *s, char *host, size_t cap, uint16_t *port, int port0_ok, int *v6)
{
    const char *h = s, *colon;
    size_t hl;
    int bracketed = s[0] == '[';
    if (bracketed) {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return SPW_EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
            return SPW_EINVAL; /* no port, or an IPv6 literal without brackets */
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= cap || colon[1] == 0 || colon[1] == '-' || colon[1] == '+' || colon[1] == ' ')
        return SPW_EINVAL;
    char *end;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (errno || *end || v < (port0_ok ? 0 : 1) || v > 65535)
        return SPW_EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    if (bracketed) {
        struct in6_addr a;
        if (inet_pton(AF_INET6, host, &a) != 1)
            return SPW_EINVAL;
    }
    *port = (uint16_t)v;
    if (v6)
        *v6 = bracketed;
    return 0;
}
