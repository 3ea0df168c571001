/*
 * The verifier (docs/api.md "Verify"): recomputes a view from its log and
 * compares it with its store, at one consistent point. It takes a
 * RocksDB snapshot, reads the applied offsets from the snapshot's meta
 * entry, folds every record of the log below them from offset 0 (the
 * record cursor; damaged ranges skipped as the apply thread skips them)
 * with the same fold as the apply thread but into a fresh table, and
 * compares: the counters and watermarks of the meta entry, then every
 * entry of the sampled view keys (all keys with sample 1: then also the
 * number of entries, so nothing in the store is missing from the log).
 * A sum of doubles may differ in its last bits with the order of
 * addition: doubles compare equal within a relative 1e-9.
 *
 * It runs on the caller's thread and may take as long as reading the log;
 * the apply thread goes on meanwhile (the snapshot pins what is compared).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/json.h"
#include "view/view_int.h"

#define REPORT_MAX 20 /* mismatches described in the answer */

static int num_same(const view_num *a, const view_num *b)
{
    if (!a->dbl && !b->dbl)
        return a->i == b->i;
    double x = a->dbl ? a->d : (double)a->i, y = b->dbl ? b->d : (double)b->i;
    return fabs(x - y) <= 1e-9 * fmax(1.0, fmax(fabs(x), fabs(y)));
}

static int agg_same(const view_agg *a, const view_agg *b)
{
    return a->count == b->count && num_same(&a->sum, &b->sum) &&
           (a->count == 0 || (num_same(&a->min, &b->min) && num_same(&a->max, &b->max)));
}

/* A store key as JSON text: its kind byte, level and start, the view key. */
static void entry_json(spw_buf *b, const uint8_t *k, size_t kl)
{
    if (k[0] == VIEW_P_BUCKET && kl >= 10) {
        uint64_t u = 0;
        for (int j = 0; j < 8; j++)
            u = u << 8 | k[2 + j];
        spw_buf_xprintf(b, "{\"level\":%u,\"start\":%" PRId64 ",\"key\":", k[1], (int64_t)(u ^ (1ull << 63)));
        spw_json_xput_str(b, (const char *)k + 10, kl - 10);
    } else if (k[0] == VIEW_P_PAGE && kl >= 9) {
        spw_buf_xprintf(b, "{\"page\":%" PRId64 ",\"key\":", spw__view_key_start(k + 1));
        spw_json_xput_str(b, (const char *)k + 9, kl - 9);
    } else {
        spw_buf_xprintf(b, "{\"entry\":\"%c\",\"key\":", k[0]);
        spw_json_xput_str(b, (const char *)k + 1, kl - 1);
    }
    spw_buf_xprintf(b, "}");
}

int spw_views_verify(spw_views *m, const char *name, uint32_t sample, spw_buf *out, char *err, size_t cap)
{
    spw_view *v = spw__view_ref(m, name);
    if (!v) {
        snprintf(err, cap, "no view named %s", name);
        return -ENOENT;
    }
    if (sample == 0)
        sample = 1;
    int r = 0;
    const view_def *d = &v->def;
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(v->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    spw_buf val = SPW_BUF_INIT, mism = SPW_BUF_INIT, want = SPW_BUF_INIT;
    fold f = {0};
    spw_cursor cur;
    spw_cursor_init(&cur, NULL, 0, VIEW_READ_BYTES);
    char *kbuf = spw_xmalloc(2 * (VIEW_KEY_MAX + 16) + 32);
    view_meta *mt = spw_xmalloc(sizeof *mt), *fm = spw_xmalloc(sizeof *fm);
    spw_stream *s = NULL;
    uint64_t nmis = 0, checked = 0, records = 0;
    int g = spw__view_store_get(v, ro, VIEW_META_KEY, VIEW_META_KEY_LEN, &val);
    if (g < 0 || (g == 1 && spw__view_meta_decode(val.p, val.len, mt) < 0)) {
        snprintf(err, cap, "the view's meta entry cannot be read");
        r = SPW_ECORRUPT;
        goto out;
    }
    s = spw_stream_get(m->cat, d->stream, strlen(d->stream));
    if (!s) {
        snprintf(err, cap, "stream %s does not exist now", d->stream);
        r = SPW_EINVAL;
        goto out;
    }
    if (g == 0)
        spw__view_meta_reset(mt, s->incarnation, s->cfg.partitions);
    if (mt->incarnation != s->incarnation || mt->nparts != s->cfg.partitions) {
        snprintf(err, cap, "the view's store is of an earlier stream %s (it is being rebuilt)", d->stream);
        r = SPW_EINVAL;
        goto out;
    }
    spw__view_meta_reset(fm, s->incarnation, s->cfg.partitions);
    for (uint32_t p = 0; p < mt->nparts && r == 0; p++) {
        spw_part_state st;
        spw_part_state_get(s->parts[p], &st);
        if (st.start_offset > 0 && mt->next[p] > 0) {
            snprintf(err, cap,
                     "partition %u no longer holds offset 0 (retention): the view cannot be recomputed from the log",
                     p);
            r = SPW_EINVAL;
            break;
        }
        spw_cursor_seek(&cur, s->parts[p], 0);
        while (fm->next[p] < mt->next[p]) {
            spw_record_view rv;
            int c = spw_cursor_next(&cur, &rv);
            if (c == 1) {
                if (rv.offset >= mt->next[p])
                    break;
                spw__view_fold_record(d, fm, &f, p, &rv, kbuf, sample);
                fm->next[p] = rv.offset + 1;
                fm->applied++;
                records++;
            } else if (c == SPW_ECORRUPT && cur.resume > cur.damage_from) {
                uint64_t resume = cur.resume < mt->next[p] ? cur.resume : mt->next[p];
                fm->skipped_damaged += resume - cur.damage_from;
                fm->next[p] = resume;
                spw_cursor_seek(&cur, s->parts[p], resume);
            } else {
                snprintf(err, cap, "partition %u: reading offset %" PRIu64 " failed: %s", p, fm->next[p],
                         c == 0 ? "the log ends before the view's offsets" : spw_strerror(c));
                r = c < 0 && c != SPW_ERANGE ? c : SPW_EINVAL;
                break;
            }
        }
    }
    if (r < 0)
        goto out;
    if (d->kind == VK_AGGREGATE && (uint32_t)d->page_level + 1 < d->nwin)
        spw__view_rollup(d, &f, (uint8_t *)kbuf + VIEW_KEY_MAX + 16);
    /* the meta entry */
    spw_buf_xprintf(&mism, "[");
#define MISMATCH(...)                                                                                                  \
    do {                                                                                                               \
        if (nmis++ < REPORT_MAX) {                                                                                     \
            spw_buf_xprintf(&mism, "%s", nmis > 1 ? "," : "");                                                       \
            spw_buf_xprintf(&mism, __VA_ARGS__);                                                                       \
        }                                                                                                              \
    } while (0)
    if (fm->applied != mt->applied || fm->late != mt->late || fm->skipped_invalid != mt->skipped_invalid ||
        fm->skipped_damaged != mt->skipped_damaged)
        MISMATCH("{\"counters\":{\"store\":{\"applied\":%" PRIu64 ",\"late\":%" PRIu64 ",\"skipped_invalid\":%" PRIu64
                 ",\"skipped_damaged\":%" PRIu64 "},\"log\":{\"applied\":%" PRIu64 ",\"late\":%" PRIu64
                 ",\"skipped_invalid\":%" PRIu64 ",\"skipped_damaged\":%" PRIu64 "}}}",
                 mt->applied, mt->late, mt->skipped_invalid, mt->skipped_damaged, fm->applied, fm->late,
                 fm->skipped_invalid, fm->skipped_damaged);
    for (uint32_t p = 0; p < mt->nparts; p++)
        if (d->kind == VK_AGGREGATE && fm->wm[p] != mt->wm[p])
            MISMATCH("{\"partition\":%u,\"watermark\":{\"store\":%" PRId64 ",\"log\":%" PRId64 "}}", p, mt->wm[p],
                     fm->wm[p]);
    if (sample == 1) {
        uint64_t keys = 0;
        for (uint32_t i = 0; i < f.n; i++) {
            uint8_t c = f.arena.p[f.e[i].koff];
            keys += c == VIEW_P_LATEST || c == VIEW_P_SUM || c == VIEW_P_ALL;
        }
        if (keys != mt->keys)
            MISMATCH("{\"keys\":{\"store\":%" PRIu64 ",\"log\":%" PRIu64 "}}", mt->keys, keys);
        /* every store entry is one the log makes */
        uint64_t stored = 0;
        rocksdb_iterator_t *it = rocksdb_create_iterator(v->db, ro);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl;
            const char *k = rocksdb_iter_key(it, &kl);
            stored += !(kl == VIEW_META_KEY_LEN && memcmp(k, VIEW_META_KEY, kl) == 0);
        }
        rocksdb_iter_destroy(it);
        if (stored != f.n)
            MISMATCH("{\"entries\":{\"store\":%" PRIu64 ",\"log\":%" PRIu32 "}}", stored, f.n);
    }
    /* every entry the log makes, as the store holds it */
    for (uint32_t i = 0; i < f.n; i++) {
        const fent *e = &f.e[i];
        const uint8_t *k = f.arena.p + e->koff;
        g = spw__view_store_get(v, ro, k, e->klen, &val);
        if (g < 0) {
            snprintf(err, cap, "reading the view's store failed");
            r = g;
            goto out;
        }
        checked++;
        int same;
        if (g == 0) {
            same = 0;
        } else if (k[0] == VIEW_P_LATEST) {
            uint32_t part;
            uint64_t off, id;
            int64_t ts;
            same = val.len == 28 + (size_t)e->vlen;
            if (same) {
                memcpy(&part, val.p, 4);
                memcpy(&off, val.p + 4, 8);
                memcpy(&id, val.p + 12, 8);
                memcpy(&ts, val.p + 20, 8);
                same = part == e->part && off == e->offset && id == e->id && ts == e->ts &&
                       memcmp(val.p + 28, f.arena.p + e->voff, e->vlen) == 0;
            }
        } else if (k[0] == VIEW_P_PAGE) {
            spw__view_page_value(d, &f, e, NULL, &want);
            same = spw__view_page_check(val.p, val.len) == 0 && val.len == want.len;
            for (size_t i = 0; same && i < val.len / VIEW_SUB_LEN; i++) {
                int la, lb;
                uint32_t ia, ib;
                view_agg a, b;
                spw__view_page_sub(val.p, i, &la, &ia, &a);
                spw__view_page_sub(want.p, i, &lb, &ib, &b);
                same = la == lb && ia == ib && agg_same(&a, &b);
            }
        } else {
            view_agg a;
            same = spw__view_agg_decode(val.p, val.len, &a) == 0 && agg_same(&a, &e->agg);
        }
        if (!same && nmis++ < REPORT_MAX) {
            spw_buf_xprintf(&mism, "%s{\"entry\":", nmis > 1 ? "," : "");
            entry_json(&mism, k, e->klen);
            spw_buf_xprintf(&mism, ",\"in_store\":%s}", g == 1 ? "true" : "false");
        }
    }
    spw_buf_xprintf(&mism, "]");
    spw_buf_xprintf(out, "{\"view\":");
    spw_json_xput_str(out, d->name, strlen(d->name));
    spw_buf_xprintf(out, ",\"ok\":%s,\"sample\":%" PRIu32 ",\"records\":%" PRIu64 ",\"entries_checked\":%" PRIu64
                         ",\"mismatches\":%" PRIu64 ",\"applied\":[",
                    nmis ? "false" : "true", sample, records, checked, nmis);
    for (uint32_t p = 0; p < mt->nparts; p++)
        spw_buf_xprintf(out, "%s{\"partition\":%u,\"offset\":%" PRIu64 "}", p ? "," : "", p, mt->next[p]);
    spw_buf_xprintf(out, "],\"first_mismatches\":");
    spw_buf_put(out, mism.p, mism.len);
    spw_buf_xprintf(out, "}");
#undef MISMATCH
out:
    if (s)
        spw_stream_put(s);
    spw_free(mt);
    spw_free(fm);
    spw_free(kbuf);
    spw_cursor_fini(&cur);
    spw__view_fold_free(&f);
    spw_buf_fini(&val);
    spw_buf_fini(&mism);
    spw_buf_fini(&want);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(v->db, snap);
    spw__view_unref(v);
    return r;
}
