/* spw_buf's formatted append (core/buf.h). */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int spw_buf_vprintf(spw_buf *b, const char *fmt, va_list ap)
{
    char tmp[256];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (n < 0) {
        va_end(again);
        return SPW_EINVAL;
    }
    int r;
    if ((size_t)n < sizeof tmp) {
        r = spw_buf_put(b, tmp, (size_t)n);
    } else if ((r = spw_buf_reserve(b, b->len + (size_t)n + 1)) == 0) {
        vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
    return r;
}

int spw_buf_printf(spw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = spw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

void spw_buf_xprintf(spw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = spw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (r == SPW_ENOMEM)
        abort(); /* as spw_xmalloc */
}
