/*
 * A view's reads (docs/api.md "Views"): a key's entry, a key's series of
 * window buckets, the top keys of one bucket. They run on the caller's
 * thread straight against RocksDB — never through the apply thread,
 * which they do not wait for — and an answer made of several entries
 * (a series, a top list, with the meta entry that says which buckets are
 * final) reads them all from one RocksDB snapshot, so it shows one
 * committed batch, never half of one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "view/view_int.h"

#define FAIL(code, ...)                                                                                                \
    do {                                                                                                               \
        snprintf(err, cap, __VA_ARGS__);                                                                               \
        r = code;                                                                                                      \
        goto out;                                                                                                      \
    } while (0)

static void put_key(spw_buf *out, const void *key, size_t klen)
{
    spw_buf_xprintf(out, "{\"key\":");
    spw_json_xput_str(out, key, klen);
}

int spw_views_read_key(spw_views *m, const char *name, const void *key, size_t klen, int cached, spw_buf *out,
                       char *err, size_t cap)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v) {
        snprintf(err, cap, "no view named %s", name);
        return -ENOENT;
    }
    int r = 0;
    spw_buf k = SPW_BUF_INIT, val = SPW_BUF_INIT;
    uint8_t pfx = v->def.kind == VK_LATEST ? VIEW_P_LATEST : v->def.kind == VK_SUM ? VIEW_P_SUM : VIEW_P_ALL;
    if (spw_buf_put(&k, &pfx, 1) || spw_buf_put(&k, key, klen))
        FAIL(SPW_ENOMEM, "out of memory");
    r = spw__view_store_get(v, cached ? v->ro_cached : NULL, k.p, k.len, &val);
    if (r < 0)
        FAIL(r, "reading the view's store failed");
    if (r == 0)
        FAIL(SPW_VIEW_ENOKEY, "view %s has no key %.*s", name, (int)(klen > 200 ? 200 : klen), (const char *)key);
    r = 0;
    if (v->def.kind == VK_LATEST) {
        if (val.len < 28)
            FAIL(SPW_ECORRUPT, "the view's entry is damaged");
        uint32_t part;
        uint64_t off, id;
        int64_t ts;
        memcpy(&part, val.p, 4);
        memcpy(&off, val.p + 4, 8);
        memcpy(&id, val.p + 12, 8);
        memcpy(&ts, val.p + 20, 8);
        put_key(out, key, klen);
        spw_buf_xprintf(out,
                        ",\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"id\":\"%" PRIu64 "\",\"ts\":%" PRId64
                        ",\"value\":",
                        part, off, id, ts);
        if (spw_buf_put(out, val.p + 28, val.len - 28))
            abort();
        spw_buf_xprintf(out, "}");
    } else {
        view_agg a;
        if (spw__view_agg_decode(val.p, val.len, &a) < 0)
            FAIL(SPW_ECORRUPT, "the view's entry is damaged");
        put_key(out, key, klen);
        spw_buf_xprintf(out, ",");
        spw__view_agg_json(out, &a, v->def.kind == VK_AGGREGATE);
        spw_buf_xprintf(out, "}");
    }
out:
    spw_buf_fini(&k);
    spw_buf_fini(&val);
    spw__view_unref(v);
    return r;
}

/* A read view of the store at one snapshot, with its meta. */
typedef struct snap {
    const rocksdb_snapshot_t *s;
    rocksdb_readoptions_t *ro;
    view_meta mt;
} snap;

static int snap_open(spw_view *v, snap *sn, int cached)
{
    sn->s = rocksdb_create_snapshot(v->db);
    sn->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(sn->ro, sn->s);
    if (cached)
        rocksdb_readoptions_set_read_tier(sn->ro, 1); /* kBlockCacheTier */
    spw_buf b = SPW_BUF_INIT;
    int r = spw__view_store_get(v, sn->ro, VIEW_META_KEY, VIEW_META_KEY_LEN, &b);
    if (r == 1)
        r = spw__view_meta_decode(b.p, b.len, &sn->mt);
    else if (r == 0)
        spw__view_meta_reset(&sn->mt, 0, 0);
    spw_buf_fini(&b);
    return r < 0 ? r : 0;
}

static void snap_close(spw_view *v, snap *sn)
{
    rocksdb_readoptions_destroy(sn->ro);
    rocksdb_release_snapshot(v->db, sn->s);
}

/* The highest time applied in any partition, or now when none. */
static int64_t newest(const view_meta *mt)
{
    int64_t w = INT64_MIN;
    for (uint32_t i = 0; i < mt->nparts; i++)
        if (mt->wm[i] > w)
            w = mt->wm[i];
    return w == INT64_MIN ? spw_wall_ms() : w;
}

static int is_final(const view_def *d, int level, int64_t start, int64_t wm)
{
    int64_t end;
    return !__builtin_add_overflow(start, d->win_ms[level], &end) &&
           !__builtin_add_overflow(end, d->grace_ms, &end) && end <= wm;
}

static void bucket_json(spw_buf *out, int64_t start, const view_agg *a, int final)
{
    spw_buf_xprintf(out, "{\"start\":%" PRId64 ",", start);
    spw__view_agg_json(out, a, 1);
    spw_buf_xprintf(out, ",\"final\":%s}", final ? "true" : "false");
}

int spw_views_read_series(spw_views *m, const char *name, const void *key, size_t klen, const char *window,
                          int64_t from, int64_t to, int cached, spw_buf *out, char *err, size_t cap)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v) {
        snprintf(err, cap, "no view named %s", name);
        return -ENOENT;
    }
    int r = 0, have_snap = 0;
    snap sn;
    spw_buf val = SPW_BUF_INIT;
    uint8_t *kb = NULL;
    const view_def *d = &v->def;
    if (d->kind != VK_AGGREGATE)
        FAIL(SPW_EINVAL, "series are for aggregate views; %s is not one", name);
    int level = window && window[0] ? spw__view_window_index(d, window) : 0;
    if (level < 0)
        FAIL(SPW_EINVAL, "window must be one of the view's windows");
    int64_t w = d->win_ms[level];
    if ((r = snap_open(v, &sn, cached)) < 0)
        FAIL(r, "reading the view's store failed");
    have_snap = 1;
    kb = spw_xmalloc(klen + 16);
    kb[0] = VIEW_P_ALL;
    memcpy(kb + 1, key, klen);
    r = spw__view_store_get(v, sn.ro, kb, klen + 1, &val);
    if (r < 0)
        FAIL(r, "reading the view's store failed");
    if (r == 0)
        FAIL(SPW_VIEW_ENOKEY, "view %s has no key %.*s", name, (int)(klen > 200 ? 200 : klen), (const char *)key);
    r = 0;
    if (to == INT64_MIN)
        to = newest(&sn.mt);
    if (from == INT64_MIN)
        from = to - 99 * w < -VIEW_TIME_MAX ? -VIEW_TIME_MAX : to - 99 * w;
    if (from < -VIEW_TIME_MAX || from > VIEW_TIME_MAX || to < -VIEW_TIME_MAX || to > VIEW_TIME_MAX)
        FAIL(SPW_EINVAL, "from and to must be within 2^53 ms of the Unix epoch");
    if (from > to)
        FAIL(SPW_EINVAL, "from must not be after to");
    int64_t first = spw__view_floor(from, w), last = spw__view_floor(to, w);
    if ((last - first) / w >= VIEW_SERIES_MAX)
        FAIL(SPW_EINVAL, "a series spans at most %d buckets of its window", VIEW_SERIES_MAX);
    int64_t wm = spw__view_watermark(&sn.mt);
    put_key(out, key, klen);
    spw_buf_xprintf(out, ",\"window\":");
    spw__view_put_duration(out, w);
    spw_buf_xprintf(out, ",\"buckets\":[");
    int n = 0;
    if (level <= d->page_level) {
        /* the pages holding [first, last]: each page's sub-buckets of the level, in start order */
        int64_t wp = d->win_ms[d->page_level];
        for (int64_t ps = spw__view_floor(first, wp); ps <= last; ps += wp) {
            size_t kl = spw__view_page_key(kb, ps, key, klen);
            int g = spw__view_store_get(v, sn.ro, kb, kl, &val);
            if (g < 0)
                FAIL(g, "reading the view's store failed");
            if (g == 0)
                continue;
            if (spw__view_page_check(val.p, val.len) < 0)
                FAIL(SPW_ECORRUPT, "the view's entry is damaged");
            uint32_t lo = first > ps ? (uint32_t)((first - ps) / w) : 0;
            for (size_t i = spw__view_page_find(val.p, val.len, level, lo); i < val.len / VIEW_SUB_LEN; i++) {
                int sl;
                uint32_t idx;
                view_agg a;
                spw__view_page_sub(val.p, i, &sl, &idx, &a);
                int64_t s = ps + (int64_t)idx * w;
                if (sl != level || s > last)
                    break;
                if (n++)
                    spw_buf_xprintf(out, ",");
                bucket_json(out, s, &a, is_final(d, level, s, wm));
            }
        }
        spw_buf_xprintf(out, "]}");
        goto out;
    }
    for (int64_t s = first; s <= last; s += w) {
        size_t kl = spw__view_bucket_key(kb, level, s, key, klen);
        int g = spw__view_store_get(v, sn.ro, kb, kl, &val);
        if (g < 0)
            FAIL(g, "reading the view's store failed");
        if (g == 0)
            continue;
        view_agg a;
        if (spw__view_agg_decode(val.p, val.len, &a) < 0)
            FAIL(SPW_ECORRUPT, "the view's entry is damaged");
        if (n++)
            spw_buf_xprintf(out, ",");
        bucket_json(out, s, &a, is_final(d, level, s, wm));
    }
    spw_buf_xprintf(out, "]}");
out:
    if (have_snap)
        snap_close(v, &sn);
    spw_free(kb);
    spw_buf_fini(&val);
    spw__view_unref(v);
    return r;
}

typedef struct top_ent {
    char *key;
    size_t klen;
    view_agg a;
} top_ent;

/* Does a rank above b (by count or sum, then by key)? */
static int top_above(const top_ent *a, const top_ent *b, int by_sum)
{
    int c = by_sum ? spw__view_num_cmp(&a->a.sum, &b->a.sum) : (a->a.count > b->a.count) - (a->a.count < b->a.count);
    if (c)
        return c > 0;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int k = memcmp(a->key, b->key, n);
    return k ? k < 0 : a->klen < b->klen;
}

int spw_views_read_top(spw_views *m, const char *name, const char *window, int64_t at, const char *by, uint32_t n,
                       int cached, spw_buf *out, char *err, size_t cap)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v) {
        snprintf(err, cap, "no view named %s", name);
        return -ENOENT;
    }
    int r = 0, have_snap = 0;
    snap sn;
    top_ent *best = NULL;
    uint32_t nb = 0;
    rocksdb_iterator_t *it = NULL;
    const view_def *d = &v->def;
    int by_sum = by && strcmp(by, "sum") == 0;
    if (by && by[0] && !by_sum && strcmp(by, "count") != 0)
        FAIL(SPW_EINVAL, "by must be count or sum");
    if (n == 0 || n > VIEW_TOP_MAX)
        FAIL(SPW_EINVAL, "n must be 1 to %d", VIEW_TOP_MAX);
    if (d->kind == VK_LATEST)
        FAIL(SPW_EINVAL, "top is for aggregate and sum views; %s is a latest view", name);
    int level = -1;
    if (d->kind == VK_AGGREGATE) {
        level = window && window[0] ? spw__view_window_index(d, window) : 0;
        if (level < 0)
            FAIL(SPW_EINVAL, "window must be one of the view's windows");
    } else if (window && window[0]) {
        FAIL(SPW_EINVAL, "sum views have no windows: leave window out");
    }
    if ((r = snap_open(v, &sn, cached)) < 0)
        FAIL(r, "reading the view's store failed");
    have_snap = 1;
    uint8_t lo[10], hi[10];
    size_t pl;
    int64_t start = 0;
    if (level >= 0) {
        if (at == INT64_MIN)
            at = newest(&sn.mt);
        if (at < -VIEW_TIME_MAX || at > VIEW_TIME_MAX)
            FAIL(SPW_EINVAL, "at must be within 2^53 ms of the Unix epoch");
        start = spw__view_floor(at, d->win_ms[level]);
        if (level <= d->page_level) /* the pages of that start's page: the sub-bucket of each */
            pl = spw__view_page_key(lo, spw__view_floor(start, d->win_ms[d->page_level]), NULL, 0);
        else
            pl = spw__view_bucket_key(lo, level, start, NULL, 0);
    } else {
        lo[0] = VIEW_P_SUM;
        pl = 1;
    }
    memcpy(hi, lo, pl);
    int i = (int)pl - 1;
    while (i >= 0 && hi[i] == 0xff)
        hi[i--] = 0;
    if (i >= 0)
        hi[i]++;
    rocksdb_readoptions_set_iterate_upper_bound(sn.ro, (const char *)hi, pl);
    it = rocksdb_create_iterator(v->db, sn.ro);
    best = spw_xcalloc(n + 1, sizeof *best);
    for (rocksdb_iter_seek(it, (const char *)lo, pl); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl), *vv = rocksdb_iter_value(it, &vl);
        if (kl < pl || memcmp(k, lo, pl) != 0)
            break;
        top_ent e = {.key = (char *)k + pl, .klen = kl - pl};
        if (level >= 0 && level <= d->page_level) {
            if (spw__view_page_check(vv, vl) < 0)
                FAIL(SPW_ECORRUPT, "the view's entry is damaged");
            int64_t ps = spw__view_floor(start, d->win_ms[d->page_level]);
            uint32_t idx = (uint32_t)((start - ps) / d->win_ms[level]), fidx;
            size_t i = spw__view_page_find(vv, vl, level, idx);
            int fl;
            if (i >= vl / VIEW_SUB_LEN)
                continue;
            spw__view_page_sub(vv, i, &fl, &fidx, &e.a);
            if (fl != level || fidx != idx)
                continue; /* the key has no bucket at that start */
        } else if (spw__view_agg_decode(vv, vl, &e.a) < 0) {
            FAIL(SPW_ECORRUPT, "the view's entry is damaged");
        }
        if (nb == n && !top_above(&e, &best[nb - 1], by_sum))
            continue;
        uint32_t at_i = nb < n ? nb++ : n - 1;
        spw_free(best[at_i].key);
        best[at_i] = e;
        best[at_i].key = spw_xmalloc(e.klen + 1);
        memcpy(best[at_i].key, k + pl, e.klen);
        while (at_i > 0 && top_above(&best[at_i], &best[at_i - 1], by_sum)) {
            top_ent t = best[at_i];
            best[at_i] = best[at_i - 1];
            best[at_i - 1] = t;
            at_i--;
        }
    }
    char *ie = NULL;
    rocksdb_iter_get_error(it, &ie);
    if (ie)
        FAIL(spw__view_store_err(v, ie), "reading the view's store failed");
    spw_buf_xprintf(out, "{");
    if (level >= 0) {
        spw_buf_xprintf(out, "\"window\":");
        spw__view_put_duration(out, d->win_ms[level]);
        spw_buf_xprintf(out, ",\"start\":%" PRId64 ",\"final\":%s,", start,
                        is_final(d, level, start, spw__view_watermark(&sn.mt)) ? "true" : "false");
    }
    spw_buf_xprintf(out, "\"by\":\"%s\",\"keys\":[", by_sum ? "sum" : "count");
    for (uint32_t j = 0; j < nb; j++) {
        if (j)
            spw_buf_xprintf(out, ",");
        put_key(out, best[j].key, best[j].klen);
        spw_buf_xprintf(out, ",");
        spw__view_agg_json(out, &best[j].a, level >= 0);
        spw_buf_xprintf(out, "}");
    }
    spw_buf_xprintf(out, "]}");
out:
    if (best) {
        for (uint32_t j = 0; j < nb; j++)
            spw_free(best[j].key);
        spw_free(best);
    }
    if (it)
        rocksdb_iter_destroy(it);
    if (have_snap)
        snap_close(v, &sn);
    spw__view_unref(v);
    return r;
}
