/*
 * A brute-force fold of a stream's log into what each view must show
 * (docs/api.md "Views"), written apart from src/view: every record read
 * back from the log with the record cursor, in offset order per
 * partition, into plain tables; then every key, every series and top
 * lists are read from the views (view/view.h) and compared as text with
 * answers built here. Used by the model test (tests/unit/test_view_model.c)
 * and the crash test (tests/crash/test_view_crash.c).
 *
 * Rules folded (as documented): numbers stay integers until a value with
 * a fraction (the tests use fractions exact in binary, so sums do not
 * depend on the order of addition); latest by offset = highest id, by ts
 * = highest (ts, id); aggregate: late = the smallest window's end + grace
 * at or below the partition's highest time before the record (counted in
 * late and in the all-time totals, in no window); larger windows hold the
 * sum of the smaller ones; final = end + grace at or below the lowest
 * partition watermark; records without the field's number, or without a
 * key, are counted invalid.
 */
#ifndef SPW_TEST_VIEW_FOLD_H
#define SPW_TEST_VIEW_FOLD_H

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/id.h"
#include "core/json.h"
#include "log/cursor.h"
#include "view/view.h"
#include "test.h"

#define VF_MAXP 16

typedef struct vf_num {
    int dbl;
    int64_t i;
    double d;
} vf_num;

typedef struct vf_agg {
    uint64_t count;
    vf_num sum, min, max;
} vf_agg;

typedef struct vf_ent {
    char key[64];
    int level; /* -1: the key's own entry */
    int64_t start;
    vf_agg a;
    uint32_t part;
    uint64_t off, id;
    int64_t ts;
    char *val;
} vf_ent;

typedef struct vf_view {
    const char *name;
    int kind; /* 0 latest, 1 aggregate, 2 sum */
    int order_ts, arrival, merge;
    const char *field, *group; /* pointers; group NULL: $key */
    int nwin;
    int64_t win[4], grace;
    vf_ent *e;
    uint32_t n, cap;
    uint32_t *slot, nslot; /* index + 1 of e, by (key, level, start) */
    uint64_t late, invalid;
    int64_t wm[VF_MAXP];
    uint32_t np;
} vf_view;

/* Waits (a minute at most) until view name has applied every record of s. */
static inline void vf_wait_applied(spw_views *m, const char *name, spw_stream *s)
{
    spw_view_min min[VF_MAXP];
    uint32_t n = 0;
    for (uint32_t p = 0; p < s->cfg.partitions && p < VF_MAXP; p++) {
        spw_part_state st;
        spw_part_state_get(s->parts[p], &st);
        if (st.next_offset)
            min[n++] = (spw_view_min){p, st.next_offset - 1};
    }
    for (int i = 0; i < 60000 && spw_views_applied(m, name, min, n) != 1; i++)
        spw_sleep_until(spw_mono_ns() + 1000000u);
    CHECK_EQ(spw_views_applied(m, name, min, n), 1);
}

static inline void vf_init(vf_view *v, uint32_t np)
{
    v->e = NULL;
    v->n = v->cap = 0;
    v->slot = NULL;
    v->nslot = 0;
    v->late = v->invalid = 0;
    v->np = np;
    for (int i = 0; i < VF_MAXP; i++)
        v->wm[i] = INT64_MIN;
}

static inline void vf_free(vf_view *v)
{
    for (uint32_t i = 0; i < v->n; i++)
        free(v->e[i].val);
    free(v->e);
    free(v->slot);
    v->e = NULL;
    v->slot = NULL;
    v->n = v->cap = v->nslot = 0;
}

static inline uint32_t vf_hash(const char *key, int level, int64_t start)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(level + 7) * 31 ^ (uint64_t)start * 0x9E3779B97F4A7C15ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return (uint32_t)(h ^ h >> 32);
}

static inline vf_ent *vf_find(vf_view *v, const char *key, int level, int64_t start)
{
    if ((v->n + 1) * 2 > v->nslot) {
        free(v->slot);
        v->nslot = v->nslot ? v->nslot * 2 : 1024;
        v->slot = calloc(v->nslot, sizeof *v->slot);
        for (uint32_t i = 0; i < v->n; i++) {
            uint32_t h = vf_hash(v->e[i].key, v->e[i].level, v->e[i].start) & (v->nslot - 1);
            while (v->slot[h])
                h = (h + 1) & (v->nslot - 1);
            v->slot[h] = i + 1;
        }
    }
    uint32_t h = vf_hash(key, level, start) & (v->nslot - 1);
    for (; v->slot[h]; h = (h + 1) & (v->nslot - 1)) {
        vf_ent *e = &v->e[v->slot[h] - 1];
        if (e->level == level && e->start == start && strcmp(e->key, key) == 0)
            return e;
    }
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 256;
        v->e = realloc(v->e, v->cap * sizeof *v->e);
    }
    v->slot[h] = v->n + 1;
    vf_ent *e = &v->e[v->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    e->level = level;
    e->start = start;
    return e;
}

static inline double vf_d(const vf_num *x) { return x->dbl ? x->d : (double)x->i; }
static inline int vf_lt(const vf_num *a, const vf_num *b) { return vf_d(a) < vf_d(b); }

static inline void vf_add(vf_agg *a, const vf_num *x)
{
    if (a->count++ == 0) {
        a->sum = a->min = a->max = *x;
        return;
    }
    if (!a->sum.dbl && !x->dbl)
        a->sum.i += x->i;
    else {
        a->sum.d = vf_d(&a->sum) + vf_d(x);
        a->sum.dbl = 1;
    }
    if (vf_lt(x, &a->min))
        a->min = *x;
    if (vf_lt(&a->max, x))
        a->max = *x;
}

static inline void vf_merge(vf_agg *a, const vf_agg *b)
{
    if (a->count == 0) {
        *a = *b;
        return;
    }
    a->count += b->count;
    if (!a->sum.dbl && !b->sum.dbl)
        a->sum.i += b->sum.i;
    else {
        a->sum.d = vf_d(&a->sum) + vf_d(&b->sum);
        a->sum.dbl = 1;
    }
    if (vf_lt(&b->min, &a->min))
        a->min = b->min;
    if (vf_lt(&a->max, &b->max))
        a->max = b->max;
}

static inline int vf_num_of(const spw_json_span *f, vf_num *x)
{
    if (f->type != SPW_JSON_NUMBER)
        return -1;
    if (spw_json_int64(f, &x->i) == 0) {
        x->dbl = 0;
        return 0;
    }
    char t[64];
    snprintf(t, sizeof t, "%.*s", (int)f->n, f->p);
    x->d = strtod(t, NULL);
    x->dbl = 1;
    return 0;
}

/* A merge view's partial record: 0 and *a, *start, or -1. */
static inline int vf_partial(const spw_record_view *rv, vf_agg *a, int64_t *start)
{
    static const char *const names[5] = {"/start", "/count", "/sum", "/min", "/max"};
    spw_json_span f[5];
    for (int i = 0; i < 5; i++) {
        spw_json_ptr p;
        spw_json_ptr_compile(&p, names[i]);
        const char *end;
        spw_json_error je;
        CHECK(spw_json_scan((const char *)rv->value, (const char *)rv->value + rv->value_len, &p, 1, &f[i], &end,
                            &je) == 0);
    }
    int64_t count;
    if (f[0].type != SPW_JSON_NUMBER || spw_json_int64(&f[0], start) < 0 || f[1].type != SPW_JSON_NUMBER ||
        spw_json_int64(&f[1], &count) < 0 || count < 1 || vf_num_of(&f[2], &a->sum) < 0 || vf_num_of(&f[3], &a->min) < 0 ||
        vf_num_of(&f[4], &a->max) < 0 || vf_lt(&a->max, &a->min))
        return -1;
    a->count = (uint64_t)count;
    return 0;
}

static inline int64_t vf_floor(int64_t t, int64_t w) { return (t / w - (t % w != 0 && t < 0)) * w; }

/* One record of partition p. */
static inline void vf_apply(vf_view *v, uint32_t p, const spw_record_view *rv)
{
    spw_json_ptr ptrs[2];
    int np = 0, gi = -1, fi = -1;
    if (v->group) {
        spw_json_ptr_compile(&ptrs[np], v->group);
        gi = np++;
    }
    if (v->field) {
        spw_json_ptr_compile(&ptrs[np], v->field);
        fi = np++;
    }
    spw_json_span f[2];
    const char *end;
    spw_json_error je;
    CHECK(spw_json_scan((const char *)rv->value, (const char *)rv->value + rv->value_len, ptrs, np, f, &end, &je) == 0);
    char key[64];
    if (gi < 0) {
        if (rv->key_len < 0 || rv->key_len >= (int)sizeof key) {
            v->invalid++;
            return;
        }
        memcpy(key, rv->key, (size_t)rv->key_len);
        key[rv->key_len] = 0;
    } else {
        if (f[gi].type != SPW_JSON_STRING || f[gi].n < 2 || f[gi].n - 2 >= sizeof key) {
            v->invalid++;
            return;
        }
        memcpy(key, f[gi].p + 1, f[gi].n - 2);
        key[f[gi].n - 2] = 0;
    }
    if (v->kind == 0) {
        vf_ent *e = vf_find(v, key, -1, 0);
        int after = !e->val || (v->order_ts && rv->ts != e->ts ? rv->ts > e->ts : rv->id > e->id);
        if (after) {
            e->part = p;
            e->off = rv->offset;
            e->id = rv->id;
            e->ts = rv->ts;
            free(e->val);
            e->val = malloc(rv->value_len + 1);
            memcpy(e->val, rv->value, rv->value_len);
            e->val[rv->value_len] = 0;
        }
        return;
    }
    vf_agg part = {0};
    int64_t t = v->arrival ? spw_id_ms(rv->id) : rv->ts;
    if (v->merge) {
        if (vf_partial(rv, &part, &t) < 0) {
            v->invalid++;
            return;
        }
    } else {
        vf_num x;
        if (vf_num_of(&f[fi], &x) < 0) {
            v->invalid++;
            return;
        }
        vf_add(&part, &x);
    }
    vf_merge(&vf_find(v, key, -1, 0)->a, &part);
    if (v->kind == 2)
        return;
    int64_t s0 = vf_floor(t, v->win[0]);
    int late = s0 + v->win[0] + v->grace <= v->wm[p];
    if (t > v->wm[p])
        v->wm[p] = t;
    if (late) {
        v->late++;
        return;
    }
    for (int l = 0; l < v->nwin; l++)
        vf_merge(&vf_find(v, key, l, vf_floor(t, v->win[l]))->a, &part);
}

/* Folds every record of s's partitions (every view in vs, nv of them). */
static inline void vf_fold_log(spw_stream *s, vf_view *vs, int nv)
{
    spw_cursor c;
    spw_cursor_init(&c, NULL, 0, 1 << 20);
    for (uint32_t p = 0; p < s->cfg.partitions; p++) {
        spw_cursor_seek(&c, s->parts[p], 0);
        spw_record_view rv;
        int r;
        while ((r = spw_cursor_next(&c, &rv)) == 1)
            for (int i = 0; i < nv; i++)
                vf_apply(&vs[i], p, &rv);
        CHECK_EQ(r, 0);
    }
    spw_cursor_fini(&c);
}

static inline void vf_num_text(spw_buf *b, const vf_num *x)
{
    if (x->dbl)
        spw_buf_xprintf(b, "%.17g", x->d);
    else
        spw_buf_xprintf(b, "%" PRId64, x->i);
}

static inline void vf_agg_text(spw_buf *b, const vf_agg *a, int minmax)
{
    spw_buf_xprintf(b, "\"count\":%" PRIu64 ",\"sum\":", a->count);
    vf_num_text(b, &a->sum);
    if (minmax) {
        spw_buf_xprintf(b, ",\"min\":");
        vf_num_text(b, &a->min);
        spw_buf_xprintf(b, ",\"max\":");
        vf_num_text(b, &a->max);
    }
}

static inline int64_t vf_watermark(const vf_view *v)
{
    int64_t w = INT64_MAX;
    for (uint32_t p = 0; p < v->np; p++)
        if (v->wm[p] < w)
            w = v->wm[p];
    return w;
}

static inline void vf_same(const char *what, const char *name, const char *key, const spw_buf *got,
                           const spw_buf *want)
{
    if (got->len == want->len && memcmp(got->p, want->p, got->len) == 0)
        return;
    fprintf(stderr, "view %s, %s of key %s:\n  view: %.*s\n  fold: %.*s\n", name, what, key, (int)got->len,
            (const char *)got->p, (int)want->len, (const char *)want->p);
    abort();
}

static int vf_cmp_start(const void *a, const void *b)
{
    const vf_ent *x = *(vf_ent *const *)a, *y = *(vf_ent *const *)b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Compares every key's entry and series, and top lists, with the view. */
static inline void vf_check(vf_view *v, spw_views *m)
{
    spw_buf got = SPW_BUF_INIT, want = SPW_BUF_INIT;
    char err[300];
    uint64_t keys = 0;
    vf_ent **ser = malloc((v->n + 1) * sizeof *ser);
    for (uint32_t i = 0; i < v->n; i++) {
        vf_ent *e = &v->e[i];
        if (e->level != -1)
            continue;
        keys++;
        got.len = want.len = 0;
        CHECK_OK(spw_views_read_key(m, v->name, e->key, strlen(e->key), 0, &got, err, sizeof err));
        spw_buf_xprintf(&want, "{\"key\":\"%s\"", e->key);
        if (v->kind == 0)
            spw_buf_xprintf(&want,
                            ",\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"id\":\"%" PRIu64
                            "\",\"ts\":%" PRId64 ",\"value\":%s}",
                            e->part, e->off, e->id, e->ts, e->val);
        else {
            spw_buf_xprintf(&want, ",");
            vf_agg_text(&want, &e->a, v->kind == 1);
            spw_buf_xprintf(&want, "}");
        }
        vf_same("entry", v->name, e->key, &got, &want);
        if (v->kind != 1)
            continue;
        int64_t wm = vf_watermark(v);
        for (int l = 0; l < v->nwin; l++) {
            uint32_t ns = 0;
            for (uint32_t j = 0; j < v->n; j++)
                if (v->e[j].level == l && strcmp(v->e[j].key, e->key) == 0)
                    ser[ns++] = &v->e[j];
            qsort(ser, ns, sizeof *ser, vf_cmp_start);
            got.len = want.len = 0;
            char wt[32];
            snprintf(wt, sizeof wt, "%" PRId64 "ms", v->win[l]);
            int64_t from = ns ? ser[0]->start : 0, to = ns ? ser[ns - 1]->start : 0;
            int r = spw_views_read_series(m, v->name, e->key, strlen(e->key), wt, from, to, 0, &got, err,
                                          sizeof err);
            if (r < 0)
                fprintf(stderr, "series: %s\n", err);
            CHECK_OK(r);
            /* the window as the view writes it: its largest exact unit */
            spw_buf wb = SPW_BUF_INIT;
            const char *const u[] = {"d", "h", "m", "s"};
            const int64_t mul[] = {86400000, 3600000, 60000, 1000};
            int k = 0;
            while (k < 4 && v->win[l] % mul[k])
                k++;
            if (k < 4)
                spw_buf_xprintf(&wb, "\"%" PRId64 "%s\"", v->win[l] / mul[k], u[k]);
            else
                spw_buf_xprintf(&wb, "\"%" PRId64 "ms\"", v->win[l]);
            spw_buf_xprintf(&want, "{\"key\":\"%s\",\"window\":%.*s,\"buckets\":[", e->key, (int)wb.len,
                            (const char *)wb.p);
            spw_buf_fini(&wb);
            for (uint32_t j = 0; j < ns; j++) {
                spw_buf_xprintf(&want, "%s{\"start\":%" PRId64 ",", j ? "," : "", ser[j]->start);
                vf_agg_text(&want, &ser[j]->a, 1);
                spw_buf_xprintf(&want, ",\"final\":%s}",
                                ser[j]->start + v->win[l] + v->grace <= wm ? "true" : "false");
            }
            spw_buf_xprintf(&want, "]}");
            vf_same("series", v->name, e->key, &got, &want);
        }
    }
    /* the view's own counters */
    got.len = 0;
    CHECK_OK(spw_views_get_json(m, v->name, &got));
    spw_buf_put(&got, "", 1);
    char pat[128];
    snprintf(pat, sizeof pat, "\"keys\":%" PRIu64 ",\"late\":%" PRIu64 ",", keys, v->late);
    if (!strstr((const char *)got.p, pat)) {
        fprintf(stderr, "view %s: want %s in %s\n", v->name, pat, (const char *)got.p);
        abort();
    }
    snprintf(pat, sizeof pat, "\"skipped_invalid\":%" PRIu64 ",", v->invalid);
    if (!strstr((const char *)got.p, pat)) {
        fprintf(stderr, "view %s: want %s in %s\n", v->name, pat, (const char *)got.p);
        abort();
    }
    free(ser);
    spw_buf_fini(&got);
    spw_buf_fini(&want);
}

/* Compares the top n of the bucket at level l holding time at (by count,
 * or by sum), ties by key. */
static inline void vf_check_top(vf_view *v, spw_views *m, int l, int64_t at, int by_sum, uint32_t n)
{
    int64_t start = vf_floor(at, v->win[l]);
    vf_ent **b = malloc((v->n + 1) * sizeof *b);
    uint32_t nb = 0;
    for (uint32_t i = 0; i < v->n; i++)
        if (v->e[i].level == l && v->e[i].start == start)
            b[nb++] = &v->e[i];
    /* selection of the best n */
    for (uint32_t i = 0; i < nb && i < n; i++)
        for (uint32_t j = i + 1; j < nb; j++) {
            const vf_ent *x = b[i], *y = b[j];
            int c = by_sum ? (vf_lt(&x->a.sum, &y->a.sum) ? -1 : vf_lt(&y->a.sum, &x->a.sum) ? 1 : 0)
                           : (x->a.count < y->a.count ? -1 : x->a.count > y->a.count);
            if (c < 0 || (c == 0 && strcmp(y->key, x->key) < 0)) {
                vf_ent *t = b[i];
                b[i] = b[j];
                b[j] = t;
            }
        }
    spw_buf got = SPW_BUF_INIT, want = SPW_BUF_INIT;
    char err[300], wt[32];
    snprintf(wt, sizeof wt, "%" PRId64 "ms", v->win[l]);
    CHECK_OK(spw_views_read_top(m, v->name, wt, at, by_sum ? "sum" : "count", n, 0, &got, err, sizeof err));
    spw_buf_put(&got, "", 1);
    const char *keys = strstr((const char *)got.p, "\"keys\":[");
    CHECK(keys != NULL);
    spw_buf_xprintf(&want, "\"keys\":[");
    for (uint32_t i = 0; i < nb && i < n; i++) {
        spw_buf_xprintf(&want, "%s{\"key\":\"%s\",", i ? "," : "", b[i]->key);
        vf_agg_text(&want, &b[i]->a, 1);
        spw_buf_xprintf(&want, "}");
    }
    spw_buf_xprintf(&want, "]}");
    spw_buf_put(&want, "", 1);
    if (strcmp(keys, (const char *)want.p) != 0) {
        fprintf(stderr, "view %s top (level %d, at %" PRId64 ", by %s):\n  view: %s\n  fold: %s\n", v->name, l, at,
                by_sum ? "sum" : "count", keys, (const char *)want.p);
        abort();
    }
    free(b);
    spw_buf_fini(&got);
    spw_buf_fini(&want);
}

#endif
