/*
 * The fold of records into store-entry changes (view.h "pre-aggregation"):
 * a table keyed by store key, one entry per view key (and per page of
 * an aggregate's view key, its sub-buckets of the smallest window in a
 * second table keyed by (page entry, index)), filled by
 * spw__view_fold_record in each partition's offset order; a page's
 * value (its sub-buckets at every level up to the page level) is made by
 * spw__view_page_value, and the windows above the page level are rolled
 * up from the pages by spw__view_rollup. The apply thread folds a batch
 * and commits it (view_apply.c); the verifier folds the log from its
 * start into a fresh table and compares it with the store
 * (view_verify.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/id.h"
#include "view/view_int.h"

void spw__view_fold_reset(fold *f)
{
    f->n = 0;
    f->arena.len = 0;
    f->bytes = 0;
    if (f->slot)
        memset(f->slot, 0, f->nslot * sizeof *f->slot);
    f->nsub = 0;
    f->nhashed = 0;
    memset(f->ahead, 0, sizeof f->ahead);
    if (f->sslot)
        memset(f->sslot, 0, f->nsslot * sizeof *f->sslot);
}

void spw__view_fold_free(fold *f)
{
    spw_free(f->e);
    spw_free(f->slot);
    spw_free(f->sub);
    spw_free(f->sslot);
    spw_buf_fini(&f->arena);
    memset(f, 0, sizeof *f);
}

/* FNV-1a over p[0, n) from h; spw__view_hash starts it at the offset
 * basis and mixes the high bits down at the end. */
static inline uint64_t fnv_more(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

#define FNV_BASIS 1469598103934665603ull
static inline uint64_t fnv_end(uint64_t h) { return h ^ (h >> 29); }

uint64_t spw__view_hash(const void *p, size_t n) { return fnv_end(fnv_more(FNV_BASIS, p, n)); }

static void rehash(fold *f, uint32_t nslot)
{
    spw_free(f->slot);
    f->nslot = nslot;
    f->slot = spw_xcalloc(nslot, sizeof *f->slot);
    for (uint32_t i = 0; i < f->n; i++) {
        uint32_t s = (uint32_t)f->e[i].h & (nslot - 1);
        while (f->slot[s])
            s = (s + 1) & (nslot - 1);
        f->slot[s] = i + 1;
    }
}

/* The entry of store key k (made, zeroed, when new: *isnew = 1). */
fent *spw__view_fold_get(fold *f, const void *k, size_t kl, int *isnew)
{
    if ((f->n + 1) * 2 > f->nslot)
        rehash(f, f->nslot ? f->nslot * 2 : 1024);
    uint64_t h = spw__view_hash(k, kl);
    uint32_t s = (uint32_t)h & (f->nslot - 1);
    while (f->slot[s]) {
        fent *e = &f->e[f->slot[s] - 1];
        if (e->h == h && e->klen == kl && memcmp(f->arena.p + e->koff, k, kl) == 0) {
            *isnew = 0;
            return e;
        }
        s = (s + 1) & (f->nslot - 1);
    }
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 1024;
        f->e = spw_xrealloc(f->e, f->cap * sizeof *f->e);
    }
    fent *e = &f->e[f->n];
    memset(e, 0, sizeof *e);
    e->h = h;
    e->koff = f->arena.len;
    e->klen = (uint16_t)kl;
    if (spw_buf_put(&f->arena, k, kl))
        abort();
    f->slot[s] = ++f->n;
    *isnew = 1;
    return e;
}

/* ---- sub-buckets of page entries ---- */

static uint32_t sub_hash(uint64_t k)
{
    k *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(k >> 32);
}

static void sub_insert(fold *f, uint32_t i)
{
    uint32_t s = sub_hash(f->sub[i].key) & (f->nsslot - 1);
    while (f->sslot[s])
        s = (s + 1) & (f->nsslot - 1);
    f->sslot[s] = i + 1;
}

/* The hash table holds the sub-buckets of hashed pages only (each marked). */
static void sub_rehash(fold *f, uint32_t nslot)
{
    spw_free(f->sslot);
    f->nsslot = nslot;
    f->sslot = spw_xcalloc(nslot, sizeof *f->sslot);
    for (uint32_t i = 0; i < f->nsub; i++)
        if (f->sub[i].hashed)
            sub_insert(f, i);
}

static void sub_hashed_grow(fold *f, uint32_t more)
{
    f->nhashed += more;
    if (f->nhashed * 2 > f->nsslot) {
        uint32_t ns = f->nsslot ? f->nsslot : 1024;
        while (f->nhashed * 2 > ns)
            ns *= 4; /* fewer rehashes: each one walks every sub-bucket */
        sub_rehash(f, ns);
    }
}

/* A page's sub-buckets are found by walking its list while it has at
 * most this many, and in the hash table once it has more. */
#define SUB_WALK_MAX 8

/* Puts every sub-bucket of page entry e into the hash table. */
static void sub_hash_page(fold *f, fent *e)
{
    sub_hashed_grow(f, e->nsubs); /* a rehash passes this page over: not hashed yet */
    e->hashed = 1;
    for (uint32_t y = e->sub_head; y; y = f->sub[y - 1].next) {
        f->sub[y - 1].hashed = 1;
        sub_insert(f, y - 1);
    }
}

/* The sub-bucket of index idx of page entry ei (made, zeroed, and put at
 * the head of the page's list when new). A key's records mostly come in
 * time order, so the page's last sub-bucket is looked at first, and an
 * index past every index the page has is new without a lookup. Else a
 * short page walks its list; a long one (more than SUB_WALK_MAX) is put
 * in the hash table at its first such lookup, and its sub-buckets made
 * after that go in too: a page whose records come in order is never
 * hashed. */
static fbkt *sub_get(fold *f, uint32_t ei, uint32_t idx)
{
    uint64_t key = (uint64_t)ei << 32 | idx;
    fent *e = &f->e[ei];
    if (e->sub_last && e->last_idx == idx)
        return &f->sub[e->sub_last - 1];
    if (idx < e->sub_end) {
        if (!e->hashed && e->nsubs > SUB_WALK_MAX)
            sub_hash_page(f, e);
        uint32_t found = 0;
        if (e->hashed) {
            for (uint32_t s = sub_hash(key) & (f->nsslot - 1); f->sslot[s] && !found; s = (s + 1) & (f->nsslot - 1))
                if (f->sub[f->sslot[s] - 1].key == key)
                    found = f->sslot[s];
        } else {
            for (uint32_t x = e->sub_head; x && !found; x = f->sub[x - 1].next)
                if (f->sub[x - 1].key == key)
                    found = x;
        }
        if (found) {
            e->sub_last = found;
            e->last_idx = idx;
            return &f->sub[found - 1];
        }
    }
    if (e->hashed)
        sub_hashed_grow(f, 1); /* before the new one is made: a rehash would put it in too */
    if (f->nsub == f->subcap) {
        f->subcap = f->subcap ? f->subcap * 2 : 1024;
        f->sub = spw_xrealloc(f->sub, f->subcap * sizeof *f->sub);
    }
    uint32_t i = f->nsub++;
    fbkt *x = &f->sub[i];
    memset(x, 0, sizeof *x);
    x->key = key;
    x->next = e->sub_head;
    e->sub_head = e->sub_last = i + 1;
    e->last_idx = idx;
    e->nsubs++;
    if (idx >= e->sub_end)
        e->sub_end = idx + 1;
    if (e->hashed) {
        x->hashed = 1;
        sub_insert(f, i);
    }
    return x;
}

/* ---- one record ---- */

/* A partial aggregate record (a merge view's): a JSON object with the
 * integers "start" (ms) and "count" (>= 1) and the numbers "sum", "min"
 * and "max", min <= max; other members are ignored. 0 and *a, *start, or
 * -1. */
static int partial_parse(const char *p, size_t n, view_agg *a, int64_t *start)
{
    spw_json_span o, k, v;
    const char *end;
    spw_json_error je;
    spw_json_ptr root = {0};
    if (spw_json_scan(p, p + n, &root, 1, &o, &end, &je) < 0 || o.type != SPW_JSON_OBJECT)
        return -1;
    int have = 0;
    int64_t count = 0;
    spw_json_iter it;
    spw_json_iter_init(&it, &o);
    while (spw_json_iter_next(&it, &k, &v)) {
        if (spw_json_str_eq(&k, "start")) {
            if (spw_json_int64(&v, start) < 0)
                return -1;
            have |= 1;
        } else if (spw_json_str_eq(&k, "count")) {
            if (spw_json_int64(&v, &count) < 0 || count < 1)
                return -1;
            have |= 2;
        } else if (spw_json_str_eq(&k, "sum")) {
            if (spw__view_num_parse(&v, &a->sum) < 0)
                return -1;
            have |= 4;
        } else if (spw_json_str_eq(&k, "min")) {
            if (spw__view_num_parse(&v, &a->min) < 0)
                return -1;
            have |= 8;
        } else if (spw_json_str_eq(&k, "max")) {
            if (spw__view_num_parse(&v, &a->max) < 0)
                return -1;
            have |= 16;
        }
    }
    if (have != 31 || spw__view_num_cmp(&a->min, &a->max) > 0)
        return -1;
    a->count = (uint64_t)count;
    return 0;
}

/* Does latest candidate (ts, id) a come after b (the view's order)? */
int spw__view_latest_after(int order_by, int64_t ats, uint64_t aid, int64_t bts, uint64_t bid)
{
    if (order_by == VO_TS && ats != bts)
        return ats > bts;
    return aid > bid;
}

/* The view key of a record into out: its length, or -1 (unusable). */
static long view_key(const view_def *d, const spw_record_view *rv, const spw_json_span *found, char *out)
{
    if (d->by_key) {
        if (rv->key_len < 0 || rv->key_len > VIEW_KEY_MAX)
            return -1;
        memcpy(out, rv->key, (size_t)rv->key_len);
        return rv->key_len;
    }
    const spw_json_span *g = &found[d->ptr_group];
    switch (g->type) {
    case SPW_JSON_STRING:
        return spw_json_unescape(g, out, VIEW_KEY_MAX);
    case SPW_JSON_NUMBER:
    case SPW_JSON_TRUE:
    case SPW_JSON_FALSE:
        if (g->n > VIEW_KEY_MAX)
            return -1;
        memcpy(out, g->p, g->n);
        return (long)g->n;
    default:
        return -1;
    }
}

void spw__view_fold_record(const view_def *d, view_meta *mt, fold *f, uint32_t p, const spw_record_view *rv, char *kbuf,
                           uint32_t sample)
{
    spw_json_span found[2];
    const char *vend;
    spw_json_error je;
    const char *vp = (const char *)rv->value;
    if (spw_json_scan(vp, vp + rv->value_len, d->ptrs, d->nptrs, found, &vend, &je) < 0 ||
        spw_json_ws(vend, vp + rv->value_len) != vp + rv->value_len) {
        mt->skipped_invalid++;
        return;
    }
    uint8_t *sk = (uint8_t *)kbuf; /* store key: a prefix byte(s), then the view key */
    long kl = view_key(d, rv, found, kbuf + 10);
    if (kl < 0) {
        mt->skipped_invalid++;
        return;
    }
    int keep = sample <= 1 || spw__view_hash(kbuf + 10, (size_t)kl) % sample == 0;
    int isnew;
    if (d->kind == VK_LATEST) {
        if (!keep)
            return;
        sk[9] = VIEW_P_LATEST;
        fent *e = spw__view_fold_get(f, sk + 9, (size_t)kl + 1, &isnew);
        if (isnew || spw__view_latest_after(d->order_by, rv->ts, rv->id, e->ts, e->id)) {
            e->part = p;
            e->offset = rv->offset;
            e->id = rv->id;
            e->ts = rv->ts;
            e->voff = f->arena.len;
            e->vlen = rv->value_len;
            if (spw_buf_put(&f->arena, rv->value, rv->value_len))
                abort();
            f->bytes += rv->value_len;
        }
        return;
    }
    view_num x;
    view_agg part = {0};
    int64_t t = d->time == VT_EVENT ? rv->ts : spw_id_ms(rv->id);
    if (d->merge ? partial_parse(vp, rv->value_len, &part, &t) < 0
                 : spw__view_num_parse(&found[d->ptr_field], &x) < 0) {
        mt->skipped_invalid++;
        return;
    }
    if (d->kind == VK_AGGREGATE && (t < -VIEW_TIME_MAX || t > VIEW_TIME_MAX)) {
        mt->skipped_invalid++;
        return;
    }
    if (!d->merge)
        spw__view_agg_one(&part, &x);
    sk[9] = d->kind == VK_SUM ? VIEW_P_SUM : VIEW_P_ALL;
    fent *e;
    uint32_t ai = 0;
    if (keep) {
        e = spw__view_fold_get(f, sk + 9, (size_t)kl + 1, &isnew);
        spw__view_agg_merge(&e->agg, &part);
        ai = (uint32_t)(e - f->e);
    }
    if (d->kind == VK_SUM)
        return;
    int64_t w0 = d->win_ms[0], s0 = spw__view_floor(t, w0), closes;
    int late = !__builtin_add_overflow(s0, w0, &closes) && !__builtin_add_overflow(closes, d->grace_ms, &closes) &&
               closes <= mt->wm[p];
    if (t > mt->wm[p])
        mt->wm[p] = t;
    if (late) {
        mt->late++;
        return;
    }
    if (!keep)
        return;
    /* the key's page entry (its key at kbuf + 1: the view key stays at kbuf + 10) */
    int64_t ps = spw__view_floor(t, d->win_ms[d->page_level]);
    fent *ae = &f->e[ai];
    if (ae->sub_head && ae->pstart == ps) { /* the key's page of its record before */
        e = &f->e[ae->sub_head - 1];
    } else {
        size_t pl = spw__view_page_key(sk + 1, ps, kbuf + 10, (size_t)kl);
        e = spw__view_fold_get(f, sk + 1, pl, &isnew);
        ae = &f->e[ai]; /* spw__view_fold_get may move f->e */
        ae->sub_head = (uint32_t)(e - f->e) + 1;
        ae->pstart = ps;
    }
    if ((uint32_t)d->page_level + 1 < d->nwin) /* the page's total, rolled up into the windows above it */
        spw__view_agg_merge(&e->agg, &part);
    fbkt *sb = sub_get(f, (uint32_t)(e - f->e), (uint32_t)((s0 - ps) / w0));
    spw__view_agg_merge(&sb->agg, &part);
}

/* ---- the look ahead ---- */

#define AHEAD_SLOT 12 /* records ahead: the slot of the key's hash */
#define AHEAD_ENT 8   /* the entry the slot names */
#define AHEAD_KEY 4   /* the entry's key bytes and the key's page entry */

void spw__view_fold_ahead(const view_def *d, fold *f, const spw_cursor *c)
{
    if (!d->by_key || !f->nslot)
        return;
    const spw_record_view *r = spw_cursor_ahead(c, AHEAD_SLOT);
    if (r && r->key_len >= 0 && r->key_len <= VIEW_KEY_MAX) {
        /* the store key's hash: spw__view_hash of prefix byte + key, without a copy */
        uint8_t pfx = d->kind == VK_LATEST ? VIEW_P_LATEST : d->kind == VK_SUM ? VIEW_P_SUM : VIEW_P_ALL;
        uint64_t h = fnv_end(fnv_more(fnv_more(FNV_BASIS, &pfx, 1), r->key, (size_t)r->key_len));
        __typeof__(f->ahead[0]) *a = &f->ahead[r->offset & 15];
        *a = (__typeof__(*a)){.tag = r->offset + 1, .h = h};
        __builtin_prefetch(&f->slot[(uint32_t)h & (f->nslot - 1)]);
    }
    if ((r = spw_cursor_ahead(c, AHEAD_ENT)) != NULL) {
        __typeof__(f->ahead[0]) *a = &f->ahead[r->offset & 15];
        if (a->tag == r->offset + 1) {
            uint32_t i = f->slot[(uint32_t)a->h & (f->nslot - 1)];
            if (i && i <= f->n) {
                a->ent = i;
                __builtin_prefetch(&f->e[i - 1]);
                __builtin_prefetch((const char *)&f->e[i - 1] + 64);
            }
        }
    }
    if ((r = spw_cursor_ahead(c, AHEAD_KEY)) != NULL) {
        const __typeof__(f->ahead[0]) *a = &f->ahead[r->offset & 15];
        if (a->tag == r->offset + 1 && a->ent && a->ent <= f->n) {
            const fent *e = &f->e[a->ent - 1];
            if (e->h == a->h) {
                __builtin_prefetch(f->arena.p + e->koff);
                if (e->sub_head && e->sub_head <= f->n)
                    __builtin_prefetch(&f->e[e->sub_head - 1]);
            }
        }
    }
}

/* Rolls the page entries up into the windows above the page level: a
 * page is one bucket of the page level, its entry's aggregate the sum of
 * its sub-buckets. */
void spw__view_rollup(const view_def *d, fold *f, uint8_t *kb)
{
    uint32_t n0 = f->n;
    for (uint32_t i = 0; i < n0; i++) {
        const uint8_t *k = f->arena.p + f->e[i].koff;
        if (k[0] != VIEW_P_PAGE)
            continue;
        uint32_t klen = f->e[i].klen;
        int64_t ps = spw__view_key_start(k + 1);
        memcpy(kb + 10, k + 9, klen - 9); /* the view key, where a bucket key holds it */
        for (uint32_t l = (uint32_t)d->page_level + 1; l < d->nwin; l++) {
            size_t bl = spw__view_bucket_key(kb, (int)l, spw__view_floor(ps, d->win_ms[l]), kb + 10, klen - 9);
            int isnew;
            view_agg a = f->e[i].agg; /* spw__view_fold_get may move f->e */
            fent *e = spw__view_fold_get(f, kb, bl, &isnew);
            spw__view_agg_merge(&e->agg, &a);
        }
    }
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void put_sub(spw_buf *val, int level, uint32_t index, const view_agg *a)
{
    uint8_t *o = val->p + val->len;
    o[0] = (uint8_t)level;
    memcpy(o + 1, &index, 4);
    spw__view_agg_encode(a, o + 5);
    val->len += VIEW_SUB_LEN;
}

void spw__view_page_order(const fold *f, uint32_t *start, uint64_t *ord)
{
    uint32_t at = 0;
    for (uint32_t i = 0; i < f->n; i++) {
        start[i] = at;
        at += f->e[i].nsubs;
    }
    for (uint32_t x = 0; x < f->nsub; x++) {
        const fbkt *b = &f->sub[x];
        ord[start[b->key >> 32]++] = (b->key & 0xffffffffu) << 32 | x;
    }
    for (uint32_t i = 0; i < f->n; i++)
        start[i] -= f->e[i].nsubs; /* back to each page's start */
}

void spw__view_page_value(const view_def *d, const fold *f, const fent *e, const uint64_t *subs, spw_buf *val)
{
    uint32_t n = e->nsubs;
    /* the sub-buckets in index order: (index << 32 | fbkt index) sorted */
    uint64_t *ord = spw_xmalloc((n ? n : 1) * sizeof *ord);
    if (subs) {
        memcpy(ord, subs, n * sizeof *ord);
    } else {
        n = 0;
        for (uint32_t x = e->sub_head; x; x = f->sub[x - 1].next)
            ord[n++] = (f->sub[x - 1].key & 0xffffffffu) << 32 | (x - 1);
    }
    if (n > 32) {
        qsort(ord, n, sizeof *ord, u64_cmp);
    } else {
        for (uint32_t i = 1; i < n; i++) {
            uint64_t x = ord[i];
            uint32_t j = i;
            for (; j > 0 && ord[j - 1] > x; j--)
                ord[j] = ord[j - 1];
            ord[j] = x;
        }
    }
    val->len = 0;
    if (spw_buf_reserve(val, (size_t)n * (size_t)(d->page_level + 1) * VIEW_SUB_LEN))
        abort();
    for (uint32_t i = 0; i < n; i++) /* the smallest window: the sub-buckets as they are */
        put_sub(val, 0, (uint32_t)(ord[i] >> 32), &f->sub[(uint32_t)ord[i]].agg);
    for (int l = 1; l <= d->page_level; l++) {
        int64_t r = d->win_ms[l] / d->win_ms[0]; /* smallest windows per bucket of level l */
        view_agg acc = {0};
        uint32_t cur = 0;
        int have = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t idx = (uint32_t)(ord[i] >> 32), li = (uint32_t)(idx / r);
            const view_agg *a = &f->sub[(uint32_t)ord[i]].agg;
            if (have && li != cur) {
                put_sub(val, l, cur, &acc);
                memset(&acc, 0, sizeof acc);
            }
            cur = li;
            have = 1;
            spw__view_agg_merge(&acc, a);
        }
        if (have)
            put_sub(val, l, cur, &acc);
    }
    spw_free(ord);
}

/* ---- the set of keys known to be in the store ---- */

static uint64_t kh(const void *k, size_t kl) { return spw__view_hash(k, kl) | 1; }

int spw__view_kset_has(const view_kset *ks, const void *k, size_t kl)
{
    if (!ks->nslot)
        return 0;
    uint64_t h = kh(k, kl);
    for (uint32_t i = (uint32_t)h & (ks->nslot - 1); ks->s[i].h; i = (i + 1) & (ks->nslot - 1))
        if (ks->s[i].h == h && ks->s[i].len == kl && memcmp(ks->arena.p + ks->s[i].off, k, kl) == 0)
            return 1;
    return 0;
}

void spw__view_kset_add(view_kset *ks, const void *k, size_t kl)
{
    if (ks->n >= VIEW_KSET_MAX || ks->arena.len + kl > VIEW_KSET_BYTES || spw__view_kset_has(ks, k, kl))
        return;
    if ((ks->n + 1) * 2 > ks->nslot) {
        uint32_t ns = ks->nslot ? ks->nslot * 2 : 4096;
        kslot *t = spw_xcalloc(ns, sizeof *t);
        for (uint32_t i = 0; i < ks->nslot; i++)
            if (ks->s[i].h) {
                uint32_t j = (uint32_t)ks->s[i].h & (ns - 1);
                while (t[j].h)
                    j = (j + 1) & (ns - 1);
                t[j] = ks->s[i];
            }
        spw_free(ks->s);
        ks->s = t;
        ks->nslot = ns;
    }
    uint64_t h = kh(k, kl);
    uint32_t i = (uint32_t)h & (ks->nslot - 1);
    while (ks->s[i].h)
        i = (i + 1) & (ks->nslot - 1);
    ks->s[i] = (kslot){h, (uint32_t)ks->arena.len, (uint32_t)kl};
    if (spw_buf_put(&ks->arena, k, kl))
        abort();
    ks->n++;
}

void spw__view_kset_clear(view_kset *ks)
{
    if (ks->s)
        memset(ks->s, 0, ks->nslot * sizeof *ks->s);
    ks->n = 0;
    ks->arena.len = 0;
}

void spw__view_kset_free(view_kset *ks)
{
    spw_free(ks->s);
    spw_buf_fini(&ks->arena);
    memset(ks, 0, sizeof *ks);
}
