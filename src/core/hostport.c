/* "HOST:PORT": see hostport.h. */
#include "core/hostport.h"

#include <errno.h>
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
