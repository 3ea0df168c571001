/*
 * Views against a brute-force fold of the log (tests/view_fold.h), on
 * random streams: keys with one very hot key, integer and fractional
 * values, records without the field or without a key, event times out of
 * order with some far behind (late), several partitions, appends in
 * random batches while the views apply, and a close and reopen of the
 * views half-way (the apply threads resume from their stores' offsets).
 * Afterwards every view equals the fold: every key's entry, every
 * aggregate series at every window level with its final flags, top lists
 * by count and by sum, and the counters (keys, late, skipped_invalid).
 *
 * A merge view (merge: true) over a second stream of partial aggregates
 * (some malformed) equals the fold of those partials.
 *
 * The verifier (spw_views_verify) agrees on every view, whole and
 * sampled, and finds an entry changed behind the view's back.
 *
 * Even seeds apply in batches of a few records (spw__view_batch_records),
 * so a catch-up goes through the commit pipeline (view_apply.c), and
 * seeds 4, 8, ... flush every millisecond, so a flush rides on nearly
 * every batch in flight.
 *
 * Seeds: 1..4 by default (also under ASan: ctest label unit);
 * SPW_VIEW_SEEDS=N runs seeds 1..N (scripts/test-slow.sh).
 */
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog/catalog.h"
#include "core/clock.h"
#include "core/msg.h"
#include "log/log.h"
#include "view/view.h"
#include "test.h"
#include "view_fold.h"
#include "view_setup.h"

#define NP 3
#define T0 1700000000000LL

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static void verify_ok(spw_views *m, const char *name, uint32_t sample, int want_ok)
{
    spw_buf b = SPW_BUF_INIT;
    char err[300];
    int r = spw_views_verify(m, name, sample, &b, err, sizeof err);
    if (r < 0)
        fprintf(stderr, "verify %s: %s\n", name, err);
    CHECK_OK(r);
    spw_buf_put(&b, "", 1);
    if (!strstr((const char *)b.p, want_ok ? "\"ok\":true" : "\"ok\":false"))
        fprintf(stderr, "verify %s (sample %u): %s\n", name, sample, (const char *)b.p);
    CHECK(strstr((const char *)b.p, want_ok ? "\"ok\":true" : "\"ok\":false") != NULL);
    if (!want_ok)
        CHECK(strstr((const char *)b.p, "\"entry\":{\"entry\":\"S\",\"key\":\"hot\"}") != NULL);
    spw_buf_fini(&b);
}

/* Overwrites view bal's entry of key "hot" in its store with another
 * aggregate (count 999999, sum 0), behind the view's back. */
static void tamper(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/views/bal/db", dir);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_disable_auto_compactions(o, 1); /* it has no merge operator: no compaction */
    char *e = NULL;
    rocksdb_t *db = rocksdb_open(o, path, &e);
    CHECK(e == NULL);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    char v[33] = {0};
    uint64_t count = 999999;
    memcpy(v, &count, 8);
    rocksdb_put(db, wo, "Shot", 4, v, sizeof v, &e);
    CHECK(e == NULL);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

static uint64_t flush_ms; /* the views' flush interval (0: the default) */

static void one_seed(uint64_t seed, vs_env *env)
{
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    spw_stream *s = vs_stream(env, "s", "{\"partitions\":3}");
    spw_catalog *cat = env->cat;
    const char *dir = env->dir;
    spw_views *m;
    CHECK_OK(spw_views_open(cat, dir, flush_ms, &m));
    vf_view vs[] = {
        {.name = "last", .kind = 0},
        {.name = "last_ts", .kind = 0, .order_ts = 1},
        {.name = "bal", .kind = 2, .field = "/n"},
        {.name = "agg", .kind = 1, .field = "/n", .nwin = 3, .win = {10000, 60000, 300000}, .grace = 5000},
        {.name = "by_g", .kind = 1, .field = "/n", .group = "/g", .nwin = 2, .win = {1000, 10000}, .arrival = 1},
    };
    const int nv = sizeof vs / sizeof vs[0];
    vs_put_view(m, "last", "{\"stream\":\"s\",\"kind\":\"latest\"}");
    vs_put_view(m, "last_ts", "{\"stream\":\"s\",\"kind\":\"latest\",\"order_by\":\"ts\"}");
    vs_put_view(m, "bal", "{\"stream\":\"s\",\"kind\":\"sum\",\"field\":\"/n\"}");
    vs_put_view(m, "agg", "{\"stream\":\"s\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\",\"1m\",\"5m\"],"
                       "\"grace\":\"5s\"}");
    vs_put_view(m, "by_g", "{\"stream\":\"s\",\"kind\":\"aggregate\",\"field\":\"/n\",\"group_by\":\"/g\","
                        "\"windows\":[\"1s\",\"10s\"],\"time\":\"arrival\"}");
    /* partial aggregates, as an edge node would forward them */
    spw_stream *ps = vs_stream(env, "parts", "{\"partitions\":2}");
    vs_put_view(m, "merged", "{\"stream\":\"parts\",\"kind\":\"aggregate\",\"merge\":true,"
                          "\"windows\":[\"10s\",\"1m\"],\"grace\":\"5s\"}");
    vf_view vm = {.name = "merged", .kind = 1, .merge = 1, .nwin = 2, .win = {10000, 60000}, .grace = 5000};
    for (int b = 0; b < 60; b++) {
        spw_record r[20];
        char keys[20][16], vals[20][160];
        uint32_t n = 1 + rnd(20), p = rnd(2);
        for (uint32_t i = 0; i < n; i++) {
            snprintf(keys[i], sizeof keys[i], "e%u", rnd(8));
            int64_t start = T0 + (int64_t)(b * 5 + rnd(10)) * 10000 - (rnd(15) == 0 ? 200000 : 0);
            int lo = (int)rnd(100) - 50, hi = lo + (int)rnd(50), cnt = 1 + (int)rnd(9);
            if (rnd(12) == 0)
                snprintf(vals[i], sizeof vals[i], "{\"start\":%lld,\"count\":0,\"sum\":1,\"min\":1,\"max\":1}",
                         (long long)start);
            else if (rnd(3) == 0)
                snprintf(vals[i], sizeof vals[i], "{\"start\":%lld,\"count\":%d,\"sum\":%d.5,\"min\":%d,\"max\":%d.25}",
                         (long long)start, cnt, lo * cnt, lo, hi);
            else
                snprintf(vals[i], sizeof vals[i], "{\"start\":%lld,\"count\":%d,\"sum\":%d,\"min\":%d,\"max\":%d}",
                         (long long)start, cnt, lo * cnt + hi, lo, hi);
            r[i] = (spw_record){.key = keys[i], .key_len = (int32_t)strlen(keys[i]), .value = vals[i],
                                .value_len = (uint32_t)strlen(vals[i]), .ts = T0};
        }
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(ps->parts[p], r, n, NULL, SPW_ACK_FSYNC, &res));
    }
    uint32_t total = 2000 + rnd(1500);
    int64_t clock_p[NP] = {T0, T0, T0};
    uint32_t done = 0;
    int reopened = 0;
    while (done < total) {
        uint32_t p = rnd(NP), n = 1 + rnd(40);
        if (n > total - done)
            n = total - done;
        spw_record r[40];
        char keys[40][16], vals[40][96];
        for (uint32_t i = 0; i < n; i++) {
            int hot = rnd(10) < 4;
            snprintf(keys[i], sizeof keys[i], hot ? "hot" : "k%u", rnd(40));
            clock_p[p] += rnd(400);
            int64_t ts = clock_p[p] - (rnd(20) == 0 ? 20000 + rnd(60000) : rnd(3000)); /* out of order, some late */
            char num[32];
            uint32_t kind = rnd(20);
            if (kind == 0)
                snprintf(num, sizeof num, "\"x\""); /* not a number: invalid */
            else if (kind < 5)
                snprintf(num, sizeof num, "%d.%s", (int)rnd(100) - 50, rnd(2) ? "25" : "5");
            else
                snprintf(num, sizeof num, "%d", (int)rnd(2000) - 500);
            snprintf(vals[i], sizeof vals[i], "{\"n\":%s,\"g\":\"g%u\",\"i\":%u}", num, rnd(5), done + i);
            r[i] = (spw_record){.key = keys[i],
                                .key_len = rnd(50) == 0 ? -1 : (int32_t)strlen(keys[i]),
                                .value = vals[i],
                                .value_len = (uint32_t)strlen(vals[i]),
                                .ts = ts};
        }
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(s->parts[p], r, n, NULL, SPW_ACK_FSYNC, &res));
        done += n;
        if (!reopened && done > total / 2) {
            /* a restart of the views half-way: they go on from their stores */
            spw_views_close(m);
            CHECK_OK(spw_views_open(cat, dir, flush_ms, &m));
            reopened = 1;
        }
    }
    for (int i = 0; i < nv; i++)
        vf_wait_applied(m, vs[i].name, s);
    vf_wait_applied(m, "merged", ps);
    vf_init(&vm, 2);
    vf_fold_log(ps, &vm, 1);
    vf_check(&vm, m);
    CHECK(vm.invalid > 0 && vm.late > 0);
    verify_ok(m, "merged", 1, 1);
    vf_free(&vm);
    spw_stream_put(ps);
    for (int i = 0; i < nv; i++)
        vf_init(&vs[i], NP);
    vf_fold_log(s, vs, nv);
    for (int i = 0; i < nv; i++)
        vf_check(&vs[i], m);
    /* top lists where the hot key is, at every level, by count and by sum */
    for (int l = 0; l < 3; l++)
        for (int by = 0; by < 2; by++) {
            vf_check_top(&vs[3], m, l, clock_p[0] - 30000, by, 5);
            vf_check_top(&vs[3], m, l, T0 + 1000, by, 50);
        }
    CHECK(vs[3].late > 0); /* the stream had late records, and they were seen as such */
    for (int i = 0; i < nv; i++) {
        verify_ok(m, vs[i].name, 1, 1);
        verify_ok(m, vs[i].name, 3, 1);
    }
    spw_views_close(m);
    tamper(dir);
    CHECK_OK(spw_views_open(cat, dir, flush_ms, &m));
    verify_ok(m, "bal", 1, 0);
    spw_views_close(m);
    for (int i = 0; i < nv; i++)
        vf_free(&vs[i]);
    spw_stream_put(s);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    const char *env = getenv("SPW_VIEW_SEEDS");
    uint64_t seeds = env && atoi(env) > 0 ? (uint64_t)atoi(env) : 4;
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        vs_env env;
        vs_open(&env, "viewmodel", 0);
        /* even seeds: batches of a few records, so that a view's catch-up
         * goes through the commit pipeline (many batches in a row) */
        atomic_store(&spw__view_batch_records, seed % 2 == 0 ? 1 + (uint32_t)(seed % 7) : 0);
        flush_ms = seed % 4 == 0 ? 1 : 0; /* and some with a flush riding on nearly every batch */
        one_seed(seed, &env);
        vs_close(&env);
    }
    printf("test_view_model: %llu seeds ok\n", (unsigned long long)seeds);
    return 0;
}
