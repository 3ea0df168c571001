/*
 * What a view's store holds and how (docs/formats/view.md, byte by byte):
 * numbers and aggregates, the entries' keys, the meta entry that carries
 * the applied offsets, and opening the RocksDB database itself.
 *
 * Numbers stay exact integers (int64) while every value and every sum
 * of them is one; a value with a fraction or an exponent, or a sum past
 * the int64 range, makes that number a binary64 double from then on
 * (docs/api.md "Views": integers exact, decimals as doubles).
 *
 * The store: RocksDB with its WAL off (every write passes
 * rocksdb_writeoptions_disable_WAL) and atomic_flush on; the log is the
 * WAL, and a store comes back after a crash at its last flush, with the
 * offsets that flush holds (view_apply.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/endian.h"
#include "core/error.h"
#include "core/msg.h"
#include "os/os.h"
#include "view/view_int.h"

/* ---- numbers ---- */

int spw__view_num_parse(const spw_json_span *v, view_num *out)
{
    if (v->type != SPW_JSON_NUMBER)
        return -1;
    if (spw_json_int64(v, &out->i) == 0) {
        out->dbl = 0;
        return 0;
    }
    char tmp[64];
    if (v->n >= sizeof tmp)
        return -1;
    memcpy(tmp, v->p, v->n);
    tmp[v->n] = 0;
    out->d = strtod(tmp, NULL);
    if (!isfinite(out->d))
        return -1;
    out->dbl = 1;
    return 0;
}

static double num_d(const view_num *a) { return a->dbl ? a->d : (double)a->i; }

void spw__view_num_add(view_num *a, const view_num *b)
{
    int64_t s;
    if (!a->dbl && !b->dbl && !__builtin_add_overflow(a->i, b->i, &s)) {
        a->i = s;
        return;
    }
    a->d = num_d(a) + num_d(b);
    a->dbl = 1;
}

int spw__view_num_cmp(const view_num *a, const view_num *b)
{
    if (!a->dbl && !b->dbl)
        return a->i < b->i ? -1 : a->i > b->i;
    long double x = a->dbl ? (long double)a->d : (long double)a->i;
    long double y = b->dbl ? (long double)b->d : (long double)b->i;
    return x < y ? -1 : x > y;
}

void spw__view_num_json(spw_buf *b, const view_num *n)
{
    if (!n->dbl)
        spw_buf_xprintf(b, "%" PRId64, n->i);
    else if (!isfinite(n->d))
        spw_buf_xprintf(b, "null");
    else
        spw_buf_xprintf(b, "%.17g", n->d);
}

void spw__view_agg_one(view_agg *a, const view_num *x)
{
    if (a->count == 0) {
        a->sum = *x;
        a->min = *x;
        a->max = *x;
    } else {
        spw__view_num_add(&a->sum, x);
        if (spw__view_num_cmp(x, &a->min) < 0)
            a->min = *x;
        if (spw__view_num_cmp(x, &a->max) > 0)
            a->max = *x;
    }
    a->count++;
}

void spw__view_agg_merge(view_agg *a, const view_agg *b)
{
    if (b->count == 0)
        return;
    if (a->count == 0) {
        *a = *b;
        return;
    }
    a->count += b->count;
    int64_t s;
    if (!a->sum.dbl && !b->sum.dbl && !__builtin_add_overflow(a->sum.i, b->sum.i, &s))
        a->sum.i = s; /* integers: the common case, inline */
    else
        spw__view_num_add(&a->sum, &b->sum);
    if (!a->min.dbl && !b->min.dbl ? b->min.i < a->min.i : spw__view_num_cmp(&b->min, &a->min) < 0)
        a->min = b->min;
    if (!a->max.dbl && !b->max.dbl ? b->max.i > a->max.i : spw__view_num_cmp(&b->max, &a->max) > 0)
        a->max = b->max;
}

static void put_num(uint8_t *p, const view_num *n)
{
    uint64_t u;
    if (n->dbl)
        memcpy(&u, &n->d, 8);
    else
        u = (uint64_t)n->i;
    spw_put64(p, u);
}

static void get_num(const uint8_t *p, int dbl, view_num *n)
{
    uint64_t u = spw_get64(p);
    n->dbl = dbl;
    if (dbl) {
        memcpy(&n->d, &u, 8);
        n->i = 0;
    } else {
        n->i = (int64_t)u;
        n->d = 0;
    }
}

void spw__view_agg_encode(const view_agg *a, uint8_t out[VIEW_AGG_LEN])
{
    spw_put64(out, a->count);
    out[8] = (uint8_t)(a->sum.dbl | a->min.dbl << 1 | a->max.dbl << 2);
    put_num(out + 9, &a->sum);
    put_num(out + 17, &a->min);
    put_num(out + 25, &a->max);
}

int spw__view_agg_decode(const void *pv, size_t n, view_agg *a)
{
    const uint8_t *p = pv;
    if (n != VIEW_AGG_LEN || p[8] > 7)
        return SPW_ECORRUPT;
    a->count = spw_get64(p);
    get_num(p + 9, p[8] & 1, &a->sum);
    get_num(p + 17, (p[8] >> 1) & 1, &a->min);
    get_num(p + 25, (p[8] >> 2) & 1, &a->max);
    return 0;
}

void spw__view_agg_json(spw_buf *b, const view_agg *a, int minmax)
{
    spw_buf_xprintf(b, "\"count\":%" PRIu64 ",\"sum\":", a->count);
    spw__view_num_json(b, &a->sum);
    if (minmax) {
        spw_buf_xprintf(b, ",\"min\":");
        spw__view_num_json(b, &a->min);
        spw_buf_xprintf(b, ",\"max\":");
        spw__view_num_json(b, &a->max);
    }
}

/* 'B', level, start (big-endian, sign bit flipped: byte order is time
 * order), the view key. */
size_t spw__view_bucket_key(uint8_t *out, int level, int64_t start, const void *key, size_t klen)
{
    out[0] = VIEW_P_BUCKET;
    out[1] = (uint8_t)level;
    uint64_t u = (uint64_t)start ^ (1ull << 63);
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(u >> (56 - 8 * i));
    if (klen)
        memmove(out + 10, key, klen); /* key may already be there */
    return 10 + klen;
}

size_t spw__view_page_key(uint8_t *out, int64_t start, const void *key, size_t klen)
{
    out[0] = VIEW_P_PAGE;
    uint64_t u = __builtin_bswap64((uint64_t)start ^ (1ull << 63)); /* big-endian */
    memcpy(out + 1, &u, 8);
    if (klen)
        memmove(out + 9, key, klen);
    return 9 + klen;
}

int64_t spw__view_key_start(const uint8_t *k)
{
    uint64_t u = 0;
    for (int j = 0; j < 8; j++)
        u = u << 8 | k[j];
    return (int64_t)(u ^ (1ull << 63));
}

/* ---- page values: sub-buckets in (level, index) order ---- */

static uint64_t sub_order(const uint8_t *s) { return (uint64_t)s[0] << 32 | spw_get32(s + 1); }

int spw__view_page_check(const void *pv, size_t n)
{
    const uint8_t *p = pv;
    if (n == 0 || n % VIEW_SUB_LEN != 0)
        return SPW_ECORRUPT;
    for (size_t o = 0; o < n; o += VIEW_SUB_LEN) {
        if (p[o] >= SPW_VIEW_MAX_WINDOWS || p[o + 5 + 8] > 7)
            return SPW_ECORRUPT;
        if (o && sub_order(p + o - VIEW_SUB_LEN) >= sub_order(p + o))
            return SPW_ECORRUPT;
    }
    return 0;
}

void spw__view_page_sub(const void *pv, size_t i, int *level, uint32_t *index, view_agg *a)
{
    const uint8_t *s = (const uint8_t *)pv + i * VIEW_SUB_LEN;
    *level = s[0];
    *index = spw_get32(s + 1);
    spw__view_agg_decode(s + 5, VIEW_AGG_LEN, a);
}

size_t spw__view_page_find(const void *pv, size_t n, int level, uint32_t index)
{
    const uint8_t *p = pv;
    uint64_t want = (uint64_t)level << 32 | index;
    size_t lo = 0, hi = n / VIEW_SUB_LEN;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sub_order(p + mid * VIEW_SUB_LEN) < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- meta ---- */

#define META_FIXED 64

void spw__view_meta_reset(view_meta *mt, uint64_t incarnation, uint32_t nparts)
{
    memset(mt, 0, sizeof *mt);
    mt->incarnation = incarnation;
    mt->nparts = nparts;
    mt->fwd_next = INT64_MIN;
    for (uint32_t i = 0; i < SPW_STREAM_PARTITIONS_MAX; i++)
        mt->wm[i] = INT64_MIN;
}

void spw__view_meta_encode(const view_meta *mt, spw_buf *b)
{
    uint8_t h[META_FIXED];
    h[0] = VIEW_META_VERSION;
    h[1] = h[2] = h[3] = 0;
    spw_put32(h + 4, mt->nparts);
    spw_put64(h + 8, mt->incarnation);
    spw_put64(h + 16, mt->keys);
    spw_put64(h + 24, mt->late);
    spw_put64(h + 32, mt->skipped_damaged);
    spw_put64(h + 40, mt->skipped_invalid);
    spw_put64(h + 48, mt->applied);
    spw_put64(h + 56, (uint64_t)mt->fwd_next);
    b->len = 0;
    if (spw_buf_put(b, h, sizeof h))
        abort();
    for (uint32_t i = 0; i < mt->nparts; i++) {
        uint8_t e[16];
        spw_put64(e, mt->next[i]);
        spw_put64(e + 8, (uint64_t)mt->wm[i]);
        if (spw_buf_put(b, e, sizeof e))
            abort();
    }
}

int spw__view_meta_decode(const void *pv, size_t n, view_meta *mt)
{
    const uint8_t *p = pv;
    if (n < META_FIXED || p[0] != VIEW_META_VERSION)
        return SPW_ECORRUPT;
    uint32_t np = spw_get32(p + 4);
    if (np > SPW_STREAM_PARTITIONS_MAX || n != META_FIXED + 16 * (size_t)np)
        return SPW_ECORRUPT;
    spw__view_meta_reset(mt, spw_get64(p + 8), np);
    mt->keys = spw_get64(p + 16);
    mt->late = spw_get64(p + 24);
    mt->skipped_damaged = spw_get64(p + 32);
    mt->skipped_invalid = spw_get64(p + 40);
    mt->applied = spw_get64(p + 48);
    mt->fwd_next = (int64_t)spw_get64(p + 56);
    for (uint32_t i = 0; i < np; i++) {
        mt->next[i] = spw_get64(p + META_FIXED + 16 * i);
        mt->wm[i] = (int64_t)spw_get64(p + META_FIXED + 16 * i + 8);
    }
    return 0;
}

int64_t spw__view_watermark(const view_meta *mt)
{
    if (mt->nparts == 0)
        return INT64_MIN;
    int64_t w = INT64_MAX;
    for (uint32_t i = 0; i < mt->nparts; i++)
        if (mt->wm[i] < w)
            w = mt->wm[i];
    return w;
}

/* ---- the store ---- */

/*
 * The store's merge operator, so a batch writes its changes without
 * reading them first: an aggregate entry's operand ('S', 'A', 'B') is an
 * aggregate (33 bytes, the batch's change), merged by adding counts and
 * sums and taking the min of mins and max of maxes; a latest entry's
 * operand ('L') is a latest record, merged by keeping the later one in
 * the view's order; a page entry's operand ('P') is a page of
 * sub-buckets, merged into the value by (level, index) like a sorted
 * merge, the aggregates of one (level, index) merged as aggregates are.
 * A value or operand that does not decode fails the merge (RocksDB then
 * reports corruption).
 */
static char *agg_merge(const char *existing, size_t elen, const char *const *ops, const size_t *oplen, int n,
                       unsigned char *success, size_t *outlen)
{
    view_agg a = {0}, b;
    *success = 0;
    if (existing && spw__view_agg_decode(existing, elen, &a) < 0)
        return NULL;
    for (int i = 0; i < n; i++) {
        if (spw__view_agg_decode(ops[i], oplen[i], &b) < 0)
            return NULL;
        spw__view_agg_merge(&a, &b);
    }
    char *out = malloc(VIEW_AGG_LEN);
    if (!out)
        return NULL;
    spw__view_agg_encode(&a, (uint8_t *)out);
    *outlen = VIEW_AGG_LEN;
    *success = 1;
    return out;
}

/* A latest entry ('L'): the later record of the existing value and the
 * operands, by the view's order (st: its order_by). */
static char *latest_merge(const int *order_by, const char *existing, size_t elen, const char *const *ops,
                          const size_t *oplen, int n, unsigned char *success, size_t *outlen)
{
    const char *best = existing;
    size_t blen = elen;
    *success = 0;
    if (best && blen < 28)
        return NULL;
    for (int i = 0; i < n; i++) {
        if (oplen[i] < 28)
            return NULL;
        if (best) {
            int64_t ats, bts;
            uint64_t aid, bid;
            memcpy(&aid, ops[i] + 12, 8);
            memcpy(&ats, ops[i] + 20, 8);
            memcpy(&bid, best + 12, 8);
            memcpy(&bts, best + 20, 8);
            if (!spw__view_latest_after(*order_by, ats, aid, bts, bid))
                continue;
        }
        best = ops[i];
        blen = oplen[i];
    }
    char *out = best ? malloc(blen ? blen : 1) : NULL;
    if (!out)
        return NULL;
    memcpy(out, best, blen);
    *outlen = blen;
    *success = 1;
    return out;
}

/* A sub-bucket of a page merge: its (level, index) and where it is. */
typedef struct msub {
    uint64_t order; /* level << 32 | index */
    uint32_t seq;   /* its place in the value, then the operands: the order of merging */
    const uint8_t *p;
} msub;

static int msub_cmp(const void *x, const void *y)
{
    const msub *a = x, *b = y;
    if (a->order != b->order)
        return a->order < b->order ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Appends sub-bucket p to out at *len, or merges it into the last one
 * appended when that has p's (level, index) (*last_order). */
static void merge_sub(uint8_t *out, size_t *len, uint64_t *last_order, const uint8_t *p)
{
    uint64_t o = sub_order(p);
    if (*len && *last_order == o) {
        view_agg a, b;
        spw__view_agg_decode(out + *len - VIEW_SUB_LEN + 5, VIEW_AGG_LEN, &a);
        spw__view_agg_decode(p + 5, VIEW_AGG_LEN, &b);
        spw__view_agg_merge(&a, &b);
        spw__view_agg_encode(&a, out + *len - VIEW_SUB_LEN + 5);
        return;
    }
    memcpy(out + *len, p, VIEW_SUB_LEN);
    *len += VIEW_SUB_LEN;
    *last_order = o;
}

/* Inputs of a page merge up to which it walks them side by side (each is
 * in (level, index) order), taking the smallest head, the earliest input
 * on a tie; past it, one sort of all their sub-buckets. */
#define PAGE_MERGE_WAYS 8

/* A page entry ('P'): the union of the existing value's and the
 * operands' sub-buckets, those of one (level, index) merged in the
 * order they were written. A few inputs (a compaction's usual case: a
 * value and an operand or two) are merged side by side; many (a hot
 * key's chain) with one sort of all their sub-buckets: either costs
 * what the sub-buckets do, not operands times the value. */
static char *page_merge(const char *existing, size_t elen, const char *const *ops, const size_t *oplen, int n,
                        unsigned char *success, size_t *outlen)
{
    size_t total = existing ? elen : 0;
    *success = 0;
    if (existing && spw__view_page_check(existing, elen) < 0)
        return NULL;
    for (int i = 0; i < n; i++) {
        if (spw__view_page_check(ops[i], oplen[i]) < 0)
            return NULL;
        total += oplen[i];
    }
    size_t ns = total / VIEW_SUB_LEN, k = 0;
    if (n + 1 <= PAGE_MERGE_WAYS) {
        const uint8_t *at[PAGE_MERGE_WAYS], *end[PAGE_MERGE_WAYS];
        int m = 0;
        if (existing)
            at[m] = (const uint8_t *)existing, end[m++] = (const uint8_t *)existing + elen;
        for (int i = 0; i < n; i++)
            at[m] = (const uint8_t *)ops[i], end[m++] = (const uint8_t *)ops[i] + oplen[i];
        uint8_t *out = malloc(total ? total : 1);
        if (!out)
            return NULL;
        size_t len = 0;
        uint64_t last = 0;
        for (;;) {
            int best = -1;
            uint64_t bo = 0;
            for (int i = 0; i < m; i++)
                if (at[i] < end[i] && (best < 0 || sub_order(at[i]) < bo))
                    best = i, bo = sub_order(at[i]);
            if (best < 0)
                break;
            merge_sub(out, &len, &last, at[best]);
            at[best] += VIEW_SUB_LEN;
        }
        *outlen = len;
        *success = 1;
        return (char *)out;
    }
    msub *v = malloc((ns ? ns : 1) * sizeof *v);
    uint8_t *out = malloc(total ? total : 1);
    if (!v || !out) {
        free(v);
        free(out);
        return NULL;
    }
    for (int i = -1; i < n; i++) {
        const uint8_t *p = (const uint8_t *)(i < 0 ? existing : ops[i]);
        size_t len = i < 0 ? (existing ? elen : 0) : oplen[i];
        for (size_t o = 0; o < len; o += VIEW_SUB_LEN, k++)
            v[k] = (msub){sub_order(p + o), (uint32_t)k, p + o};
    }
    qsort(v, ns, sizeof *v, msub_cmp);
    size_t len = 0;
    uint64_t last = 0;
    for (size_t i = 0; i < ns; i++)
        merge_sub(out, &len, &last, v[i].p);
    free(v);
    *outlen = len;
    *success = 1;
    return (char *)out;
}

static char *full_merge(void *st, const char *k, size_t kl, const char *existing, size_t elen, const char *const *ops,
                        const size_t *oplen, int n, unsigned char *success, size_t *outlen)
{
    if (kl && k[0] == VIEW_P_PAGE)
        return page_merge(existing, elen, ops, oplen, n, success, outlen);
    if (kl && k[0] == VIEW_P_LATEST)
        return latest_merge(st, existing, elen, ops, oplen, n, success, outlen);
    return agg_merge(existing, elen, ops, oplen, n, success, outlen);
}

static char *partial_merge(void *st, const char *k, size_t kl, const char *const *ops, const size_t *oplen, int n,
                           unsigned char *success, size_t *outlen)
{
    if (kl && k[0] == VIEW_P_PAGE)
        return page_merge(NULL, 0, ops, oplen, n, success, outlen);
    if (kl && k[0] == VIEW_P_LATEST)
        return latest_merge(st, NULL, 0, ops, oplen, n, success, outlen);
    return agg_merge(NULL, 0, ops, oplen, n, success, outlen);
}

static void merge_free(void *st, const char *v, size_t n)
{
    (void)st, (void)n;
    free((void *)v);
}

static void merge_destroy(void *st) { (void)st; }
static const char *merge_name(void *st)
{
    (void)st;
    return "spillway.view.agg";
}

/* The merge operator's state: the view's order_by, in storage that
 * outlives every store (RocksDB's background threads merge until the
 * store is closed, and the view is freed after that: memory of the view
 * would be freed under a read no tool can see ordered, as librocksdb is
 * not instrumented for ThreadSanitizer). */
static int order_offset = VO_OFFSET, order_ts = VO_TS; /* never written */

void (*spw_view_test_open_pause)(const char *view);

int spw__view_store_open(spw_view *v, char *err, size_t cap)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/db", v->dir);
    if (!v->opts) {
        v->opts = rocksdb_options_create();
        rocksdb_options_set_create_if_missing(v->opts, 1);
        rocksdb_options_set_atomic_flush(v->opts, 1);
        rocksdb_options_set_max_open_files(v->opts, 64);
        rocksdb_options_set_keep_log_file_num(v->opts, 2);
        rocksdb_options_set_write_buffer_size(v->opts, 32u << 20);
        rocksdb_options_set_max_background_jobs(v->opts, 2);
        /* a batch's memtable is flushed and compacted into L1 soon after
         * it is written: compressing those tables costs more CPU than the
         * apply's own fold (snappy was the flush thread's largest item);
         * the levels that keep data long are compressed with LZ4 */
        static const int comp[7] = {rocksdb_no_compression, rocksdb_lz4_compression, rocksdb_lz4_compression,
                                    rocksdb_lz4_compression, rocksdb_lz4_compression, rocksdb_lz4_compression,
                                    rocksdb_lz4_compression};
        rocksdb_options_set_num_levels(v->opts, 7);
        rocksdb_options_set_compression_per_level(v->opts, comp, 7);
        /* point reads of entries a batch changes, most of them misses for
         * new keys: a bloom filter per table, and a block cache */
        rocksdb_block_based_table_options_t *bb = rocksdb_block_based_options_create();
        rocksdb_block_based_options_set_filter_policy(bb, rocksdb_filterpolicy_create_bloom_full(10));
        rocksdb_cache_t *cache = rocksdb_cache_create_lru(32u << 20);
        rocksdb_block_based_options_set_block_cache(bb, cache);
        rocksdb_options_set_block_based_table_factory(v->opts, bb);
        rocksdb_cache_destroy(cache); /* the options hold their own reference */
        rocksdb_block_based_options_destroy(bb);
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(v->opts, 0.05);
        rocksdb_options_set_memtable_whole_key_filtering(v->opts, 1);
        /* a hot key's entry gets one operand per batch, so no chain in
         * the memtable is longer than the batches since the last flush
         * (v->dirty): RocksDB's own bound (max_successive_merges: past it
         * a write reads the key and merges its chain into one value) is
         * off while that is short, since it costs a memtable seek per
         * operand, and on past VIEW_CHAIN_MAX batches (spw__view_store_chain) */
        rocksdb_options_set_max_successive_merges(v->opts, 0);
        rocksdb_options_set_merge_operator(
            v->opts, rocksdb_mergeoperator_create(v->def.order_by == VO_TS ? &order_ts : &order_offset, merge_destroy,
                                                  full_merge, partial_merge, merge_free,
                                                  merge_name));
        v->wo = rocksdb_writeoptions_create();
        rocksdb_writeoptions_disable_WAL(v->wo, 1);
        v->ro = rocksdb_readoptions_create();
        v->ro_cached = rocksdb_readoptions_create();
        rocksdb_readoptions_set_read_tier(v->ro_cached, 1); /* kBlockCacheTier */
    }
    char *e = NULL;
    if (!v->hinted) {
        /* A batch's entries go into its WriteBatch in key order, one run
         * per first byte ('A', 'B', 'P', ...), among the entries of the
         * batches before it: the memtable keeps the place of the last
         * insert per first byte and each insert searches from there,
         * climbing only as far as it must (without the hint RocksDB's
         * sequential-insert shortcut holds only in an empty memtable, and
         * each insert searches from the top). The hint applies to writes
         * that are not concurrent memtable writes: a store's writes come
         * from its view's apply or commit thread, one at a time. The C API
         * sets the hint only from a string. */
        rocksdb_options_set_allow_concurrent_memtable_write(v->opts, 0);
        rocksdb_options_t *o = rocksdb_options_create();
        rocksdb_get_options_from_string(v->opts, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1", o,
                                        &e);
        if (e) { /* slower, not wrong: the store opens without it */
            spw_warn("view %s: memtable insert hints: %s", v->def.name, e);
            rocksdb_free(e);
            e = NULL;
            rocksdb_options_destroy(o);
        } else {
            rocksdb_options_destroy(v->opts);
            v->opts = o;
        }
        v->hinted = 1;
    }
    if (spw_view_test_open_pause)
        spw_view_test_open_pause(v->def.name);
    v->db = rocksdb_open(v->opts, path, &e);
    if (e) {
        snprintf(err, cap, "opening the store %s: %s", path, e);
        rocksdb_free(e);
        v->db = NULL;
        return -EIO;
    }
    v->chain_bound = 0; /* as v->opts say */
    return 0;
}

int spw__view_store_chain(spw_view *v, int bound)
{
    if (v->chain_bound == bound)
        return 0;
    char num[16];
    snprintf(num, sizeof num, "%d", bound ? VIEW_CHAIN_MAX : 0);
    const char *keys[1] = {"max_successive_merges"}, *vals[1] = {num};
    char *e = NULL;
    rocksdb_set_options(v->db, 1, keys, vals, &e);
    if (e) {
        spw_error("view %s: setting max_successive_merges: %s", v->def.name, e);
        rocksdb_free(e);
        return -EIO;
    }
    v->chain_bound = bound;
    return 0;
}

void spw__view_store_close(spw_view *v)
{
    if (v->db && v->deleted) { /* its directory goes next: nothing to keep */
        rocksdb_close(v->db);
        v->db = NULL;
    }
    if (v->db) {
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 1);
        char *e = NULL;
        rocksdb_flush(v->db, fo, &e);
        if (e) {
            spw_error("view %s: flushing its store at close: %s", v->def.name, e);
            rocksdb_free(e);
        }
        rocksdb_flushoptions_destroy(fo);
        rocksdb_close(v->db);
        v->db = NULL;
    }
}

/* One WriteBatch: every entry deleted (a range delete over all keys,
 * whose first byte is below 0xff) and the fresh meta entry put. Atomic
 * like any batch: after a crash the store is either as before or empty at
 * offsets 0. The database stays open, so readers holding it go on. */
int spw__view_store_wipe(spw_view *v, const view_meta *fresh, char *err, size_t cap)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    /* every key but the meta entry's (the one key whose first byte is
     * 0), which the put below replaces: a range tombstone that starts at
     * byte 0 would share the memtable's insert hint of the meta entry's
     * first byte (RocksDB keeps one hint per prefix for both of the
     * memtable's skip lists, its entries' and its range tombstones'), and
     * an insert from another list's place breaks the skip list */
    rocksdb_writebatch_delete_range(wb, "\x01", 1, "\xff", 1);
    spw_buf mb = SPW_BUF_INIT;
    spw__view_meta_encode(fresh, &mb);
    rocksdb_writebatch_put(wb, VIEW_META_KEY, VIEW_META_KEY_LEN, (const char *)mb.p, mb.len);
    char *e = NULL;
    rocksdb_write(v->db, v->wo, wb, &e);
    rocksdb_writebatch_destroy(wb);
    spw_buf_fini(&mb);
    if (e) {
        snprintf(err, cap, "emptying the store: %s", e);
        rocksdb_free(e);
        return -EIO;
    }
    return 0;
}

int spw__view_store_err(spw_view *v, char *e)
{
    /* Status::Incomplete ("Result incomplete: ..."): a read with the block
     * cache's tier needed a file */
    if (strncmp(e, "Result incomplete", 17) == 0) {
        rocksdb_free(e);
        return SPW_VIEW_EUNCACHED;
    }
    spw_error("view %s: store read: %s", v->def.name, e);
    rocksdb_free(e);
    return -EIO;
}

/* 1 and *val (replaced) when found, 0 when not, or -EIO (or
 * SPW_VIEW_EUNCACHED with v->ro_cached's tier). */
int spw__view_store_get(spw_view *v, const rocksdb_readoptions_t *ro, const void *k, size_t kl, spw_buf *val)
{
    size_t n = 0;
    char *e = NULL;
    char *p = rocksdb_get(v->db, ro ? ro : v->ro, k, kl, &n, &e);
    if (e)
        return spw__view_store_err(v, e);
    if (!p)
        return 0;
    val->len = 0;
    int r = spw_buf_put(val, p, n);
    rocksdb_free(p);
    return r ? SPW_ENOMEM : 1;
}

int spw__view_store_read_meta(spw_view *v, view_meta *mt, int *found)
{
    spw_buf b = SPW_BUF_INIT;
    int r = spw__view_store_get(v, NULL, VIEW_META_KEY, VIEW_META_KEY_LEN, &b);
    *found = r == 1;
    if (r == 1)
        r = spw__view_meta_decode(b.p, b.len, mt);
    spw_buf_fini(&b);
    return r < 0 ? r : 0;
}
