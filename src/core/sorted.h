/*
 * Finding a name in an array kept sorted by name (the catalog's streams,
 * the sinks, the views): one binary search, the caller's comparison, and
 * for arrays of pointers to named objects the comparison and the insert
 * themselves (spw_named_*). Header only: the comparison is a static
 * function the compiler inlines.
 */
#ifndef SPW_SORTED_H
#define SPW_SORTED_H

#include <stddef.h>
#include <string.h>

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

/* An array of pointers to objects each with a name: name_of(p). */
typedef const char *(*spw_name_of)(const void *p);

typedef struct spw__named_key {
    void *const *v;
    spw_name_of name_of;
    const char *name;
    size_t len;
} spw__named_key;

static inline int spw__named_cmp(const void *arg, size_t i)
{
    const spw__named_key *k = (const spw__named_key *)arg;
    const char *m = k->name_of(k->v[i]);
    size_t ml = strlen(m);
    int c = memcmp(m, k->name, ml < k->len ? ml : k->len);
    return c ? c : ml < k->len ? -1 : ml > k->len;
}

/* The position of name (len bytes) among the n sorted pointers of v, as
 * spw_sorted_find. */
static inline size_t spw_named_find(void *const *v, size_t n, spw_name_of name_of, const char *name, size_t len,
                                    int *found)
{
    spw__named_key k = {v, name_of, name, len};
    return spw_sorted_find(n, spw__named_cmp, &k, found);
}

/* Puts p in its place among the n sorted pointers of v. REQUIRES: v has
 * room for n + 1; p's name is not there yet. The caller counts it. */
static inline void spw_named_insert(void **v, size_t n, spw_name_of name_of, void *p)
{
    int found;
    const char *name = name_of(p);
    size_t at = spw_named_find(v, n, name_of, name, strlen(name), &found);
    memmove(v + at + 1, v + at, (n - at) * sizeof *v);
    v[at] = p;
}

#endif
