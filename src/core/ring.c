/*
 * The consistent-hash ring (ring.h says how points are placed).
 */
#include "core/ring.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/hash.h"

static int cmp_point(const void *a, const void *b)
{
    const spw_ring_point *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->shard < y->shard ? -1 : x->shard > y->shard;
}

int spw_ring_init(spw_ring *r, uint32_t nshards)
{
    if (nshards == 0 || nshards > SPW_RING_SHARDS_MAX)
        return SPW_EINVAL;
    r->nshards = nshards;
    r->npts = nshards * SPW_RING_VNODES;
    r->pts = spw_xmalloc((size_t)r->npts * sizeof *r->pts);
    uint32_t i = 0;
    for (uint32_t s = 0; s < nshards; s++) {
        for (uint32_t v = 0; v < SPW_RING_VNODES; v++) {
            char label[32];
            int n = snprintf(label, sizeof label, "%u:%u", s, v);
            r->pts[i].h = spw_fmix64(spw_fnv1a64(SPW_FNV64_OFFSET, label, (size_t)n));
            r->pts[i].shard = s;
            i++;
        }
    }
    qsort(r->pts, r->npts, sizeof *r->pts, cmp_point);
    return 0;
}

void spw_ring_free(spw_ring *r)
{
    spw_free(r->pts);
    r->pts = NULL;
    r->npts = 0;
}

uint32_t spw_ring_shard(const spw_ring *r, const void *key, size_t len)
{
    uint64_t h = spw_fmix64(spw_fnv1a64(SPW_FNV64_OFFSET, key, len));
    /* first point with pts[i].h >= h */
    uint32_t lo = 0, hi = r->npts;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->pts[mid].h < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r->pts[lo == r->npts ? 0 : lo].shard;
}
