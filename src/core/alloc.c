/* Allocation wrappers: see alloc.h. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic long fail_countdown = -1;

static int should_fail(void)
{
    long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (n < 0)
        return 0;
    return atomic_fetch_sub(&fail_countdown, 1) == 0;
}

void spw_alloc_fail_after(long n) { atomic_store(&fail_countdown, n); }

static void oom(size_t n)
{
    fprintf(stderr, "spillway: out of memory allocating %zu bytes\n", n);
    abort();
}

void *spw_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *spw_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *spw_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *spw_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = spw_xmalloc(n);
    memcpy(d, s, n);
    return d;
}

void *spw_try_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *spw_try_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void spw_free(void *p) { free(p); }
