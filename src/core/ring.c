/*
 * The consistent-hash ring (ring.h says how points are placed and which
 * maps use it).
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

int spw_ring_build(spw_ring *r, uint32_t nnodes, uint32_t vnodes, spw_ring_label_fn label, void *arg)
{
    if (nnodes == 0 || vnodes == 0 || (uint64_t)nnodes * vnodes > SPW_RING_POINTS_MAX)
        return SPW_EINVAL;
    uint32_t npts = nnodes * vnodes;
    spw_ring_point *pts = spw_try_malloc((size_t)npts * sizeof *pts);
    if (!pts)
        return SPW_ENOMEM;
    uint32_t i = 0;
    for (uint32_t s = 0; s < nnodes; s++) {
        for (uint32_t v = 0; v < vnodes; v++) {
            char l[512];
            int n = label(arg, s, v, l, sizeof l);
            if (n < 0 || (size_t)n >= sizeof l) {
                spw_free(pts);
                return SPW_EINVAL;
            }
            pts[i].h = spw_fmix64(spw_fnv1a64(SPW_FNV64_OFFSET, l, (size_t)n));
            pts[i].shard = s;
            i++;
        }
    }
    qsort(pts, npts, sizeof *pts, cmp_point);
    r->pts = pts;
    r->npts = npts;
    r->nshards = nnodes;
    return 0;
}

static int shard_label(void *arg, uint32_t s, uint32_t v, char *out, size_t cap)
{
    (void)arg;
    return snprintf(out, cap, "%u:%u", s, v);
}

int spw_ring_init(spw_ring *r, uint32_t nshards)
{
    if (nshards == 0 || nshards > SPW_RING_SHARDS_MAX)
        return SPW_EINVAL;
    int rc = spw_ring_build(r, nshards, SPW_RING_VNODES, shard_label, NULL);
    if (rc == SPW_ENOMEM)
        abort(); /* as spw_xmalloc: at most 256 x 1024 points */
    return rc;
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
