/*
 * A growable byte buffer owned by its user (a connection, a reader, an
 * encoder). spw_buf_reserve keeps the memory for reuse, so steady-state
 * encoding and reading allocate nothing.
 */
#ifndef SPW_BUF_H
#define SPW_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/alloc.h"
#include "core/error.h"

typedef struct spw_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
} spw_buf;

#define SPW_BUF_INIT {NULL, 0, 0}

/* Makes room for n bytes in total (not in addition). Returns 0 or SPW_ENOMEM. */
static inline int spw_buf_reserve(spw_buf *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < n)
        cap *= 2;
    uint8_t *p = spw_try_realloc(b->p, cap);
    if (!p)
        return SPW_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Appends n bytes. Returns 0 or SPW_ENOMEM. */
static inline int spw_buf_put(spw_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap && spw_buf_reserve(b, b->len + n))
        return SPW_ENOMEM;
    if (n)
        __builtin_memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int spw_buf_puts(spw_buf *b, const char *s) { return spw_buf_put(b, s, __builtin_strlen(s)); }

/* Writes v in decimal at out (room for 20 bytes, no NUL); returns its
 * length. Two digits per division: a produce answer holds one 19-digit id
 * per event (docs/performance.md). */
static inline size_t spw_u64_dec(char *out, uint64_t v)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                   "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                   "8081828384858687888990919293949596979899";
    char tmp[20];
    size_t i = sizeof tmp;
    /* Eight digits at a time in 32-bit arithmetic (cheaper than 64-bit
     * divisions) while more than eight are left. */
    while (v >= 100000000u) {
        uint32_t lo = (uint32_t)(v % 100000000u);
        v /= 100000000u;
        for (int k = 0; k < 4; k++) {
            unsigned d = (lo % 100) * 2;
            lo /= 100;
            tmp[--i] = pairs[d + 1];
            tmp[--i] = pairs[d];
        }
    }
    uint32_t w = (uint32_t)v;
    while (w >= 100) {
        unsigned d = (w % 100) * 2;
        w /= 100;
        tmp[--i] = pairs[d + 1];
        tmp[--i] = pairs[d];
    }
    if (w >= 10) {
        tmp[--i] = pairs[w * 2 + 1];
        tmp[--i] = pairs[w * 2];
    } else {
        tmp[--i] = (char)('0' + w);
    }
    __builtin_memcpy(out, tmp + i, sizeof tmp - i);
    return sizeof tmp - i;
}

/* Appends v in decimal (the hot paths' printf-free formatting). */
static inline int spw_buf_put_u64(spw_buf *b, uint64_t v)
{
    if (spw_buf_reserve(b, b->len + 20))
        return SPW_ENOMEM;
    b->len += spw_u64_dec((char *)b->p + b->len, v);
    return 0;
}

/* Appends printf-formatted text, whatever its length (not NUL-terminated).
 * Returns 0, SPW_ENOMEM or SPW_EINVAL (an output error of vsnprintf). */
int spw_buf_printf(spw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int spw_buf_vprintf(spw_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* spw_buf_printf for answers and texts whose size the caller bounds: out of
 * memory aborts, as spw_xmalloc; an output error of vsnprintf appends
 * nothing. */
void spw_buf_xprintf(spw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void spw_buf_fini(spw_buf *b)
{
    spw_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

#endif
