/*
 * Finding a name in an array kept sorted by name (the catalog's streams,
 * the sinks): one binary search, the caller's comparison. Header only: the
 * comparison is a static function the compiler inlines.
 */
#ifndef SPW_SORTED_H
#define SPW_SORTED_H

#include <stddef.h>

/* The position of the key among n sorted items: cmp(arg, i) compares item
 * i with the key (< 0: the item sorts before it, 0: it is the key, > 0:
 * after). Returns the key's position with *found 1, or where it would be
 * inserted with *found 0. */
static inline size_t spw_sorted_find(size_t n, int (*cmp)(const void *arg, size_t i), const void *arg, int *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = cmp(arg, mid);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

#endif
