/*
 * Allocation wrappers. The name says what happens on failure:
 * spw_x* abort the process (for sizes a program error would exceed),
 * spw_try_* return NULL. Tests can make spw_try_* fail on purpose with
 * spw_alloc_fail_after(); every allocation in the project goes through here.
 */
#ifndef SPW_ALLOC_H
#define SPW_ALLOC_H

#include <stddef.h>

void *spw_xmalloc(size_t n);
void *spw_xcalloc(size_t n, size_t size);
void *spw_xrealloc(void *p, size_t n);
char *spw_xstrdup(const char *s);
void *spw_try_malloc(size_t n);
void *spw_try_realloc(void *p, size_t n);
void spw_free(void *p);

/* Test hook: the n-th next spw_try_* call (0 = the next) returns NULL;
 * a negative n turns injection off. */
void spw_alloc_fail_after(long n);

#endif
