/*
 * The packed buckets of aggregate views (docs/formats/view.md "Page
 * entries"), against the brute-force fold of tests/view_fold.h:
 *
 *   - windows 1s, 1m, 1h, 1d: the 1s, 1m and 1h buckets of a key live in
 *     one page entry per hour, the 1d buckets in bucket entries rolled up
 *     from the pages; windows 1s, 2h: 2h is more than 4096 seconds, so a
 *     page holds one 1s bucket and the 2h buckets are bucket entries;
 *   - one batch over 4000 seconds of two keys writes one entry per key
 *     and page (and per day bucket, and the key's own entry), not one per
 *     bucket: store writes counted by the view's metric;
 *   - series at every level across page boundaries, top lists inside a
 *     page, a record into a bucket of a page already stored (merged into
 *     it), a late record (counted, in no bucket), a hot key's page given
 *     an operand by batch after batch, and the verifier;
 *   - a store of the earlier format (meta version 2) is rebuilt from the
 *     log, with a log line saying so — never read as it is;
 *   - a page changed behind the view's back is named by the verifier.
 */
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "core/clock.h"
#include "core/msg.h"
#include "log/log.h"
#include "view/view.h"
#include "test.h"
#include "view_fold.h"
#include "view_setup.h"

#define NP 2
#define T0 1700000000000LL /* an hour boundary falls at T0 + 2800 s */
#define SECS 4000

static long long metric(spw_views *m, const char *family, const char *view)
{
    spw_buf b = SPW_BUF_INIT;
    spw_views_metrics(m, &b, NULL, NULL);
    spw_buf_put(&b, "", 1);
    char pat[200];
    snprintf(pat, sizeof pat, "%s{view=\"%s\"} ", family, view);
    const char *p = strstr((const char *)b.p, pat);
    long long v = p ? atoll(p + strlen(pat)) : -1;
    spw_buf_fini(&b);
    return v;
}

static void append(spw_stream *s, uint32_t p, const char *key, int64_t ts, const char *val)
{
    spw_record r = {.key = key, .key_len = (int32_t)strlen(key), .value = val, .value_len = (uint32_t)strlen(val),
                    .ts = ts};
    spw_append_result res;
    CHECK_OK(spw_part_append_wait(s->parts[p], &r, 1, NULL, SPW_ACK_FSYNC, &res));
}

static void verify_ok(spw_views *m, const char *name)
{
    spw_buf b = SPW_BUF_INIT;
    char err[300];
    CHECK_OK(spw_views_verify(m, name, 1, &b, err, sizeof err));
    spw_buf_put(&b, "", 1);
    if (!strstr((const char *)b.p, "\"ok\":true"))
        fprintf(stderr, "verify %s: %s\n", name, (const char *)b.p);
    CHECK(strstr((const char *)b.p, "\"ok\":true") != NULL);
    spw_buf_fini(&b);
}

static void check_all(spw_views *m, spw_stream *s, vf_view *vs, int nv)
{
    for (int i = 0; i < nv; i++) {
        vf_wait_applied(m, vs[i].name, s);
        vf_init(&vs[i], NP);
    }
    vf_fold_log(s, vs, nv);
    for (int i = 0; i < nv; i++) {
        vf_check(&vs[i], m);
        for (int l = 0; l < vs[i].nwin; l++)
            for (int by = 0; by < 2; by++) {
                vf_check_top(&vs[i], m, l, T0 + 3500 * 1000LL + 500, by, 5);
                vf_check_top(&vs[i], m, l, T0 + 2799 * 1000LL, by, 5);
            }
        verify_ok(m, vs[i].name);
        vf_free(&vs[i]);
    }
}

static char logged[4096];
static void sink(void *arg, int level, const char *line)
{
    (void)arg, (void)level;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s\n", line);
}

/* Makes view name's store look like one of the earlier format: its meta
 * entry's version 2, and an applied count no fold gives. */
static void make_old(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/views/%s/db", dir, name);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_disable_auto_compactions(o, 1); /* no merge operator here: no compaction */
    char *e = NULL;
    rocksdb_t *db = rocksdb_open(o, path, &e);
    CHECK(e == NULL);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    size_t n = 0;
    char *v = rocksdb_get(db, ro, "\0meta", 5, &n, &e);
    CHECK(e == NULL && v != NULL && n >= 64);
    CHECK_EQ((int)v[0], 3);
    v[0] = 2;
    uint64_t applied = 999999;
    memcpy(v + 48, &applied, 8);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put(db, wo, "\0meta", 5, v, n, &e);
    CHECK(e == NULL);
    rocksdb_free(v);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_readoptions_destroy(ro);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

/* Overwrites view name's page of key at start with a page of one
 * sub-bucket (level 0, index 0, count 999999), behind the view's back. */
static void tamper_page(const char *dir, const char *name, int64_t start, const char *key)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/views/%s/db", dir, name);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_disable_auto_compactions(o, 1);
    char *e = NULL;
    rocksdb_t *db = rocksdb_open(o, path, &e);
    CHECK(e == NULL);
    uint8_t k[64], v[38] = {0};
    k[0] = 'P';
    uint64_t u = (uint64_t)start ^ (1ull << 63);
    for (int i = 0; i < 8; i++)
        k[1 + i] = (uint8_t)(u >> (56 - 8 * i));
    size_t kl = strlen(key);
    memcpy(k + 9, key, kl);
    uint64_t count = 999999;
    memcpy(v + 5, &count, 8);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put(db, wo, (const char *)k, 9 + kl, (const char *)v, sizeof v, &e);
    CHECK(e == NULL);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    vs_env env;
    vs_open(&env, "viewpack", 0);
    spw_catalog *cat = env.cat;
    const char *dir = env.dir;
    char err[256];
    spw_stream *s = vs_stream(&env, "s", "{\"partitions\":2}");
    /* key k every second, key j every 7 seconds, all in partition 0 (in
     * time order: nothing late); partition 1 keeps up its watermark */
    enum { BATCH = 500 };
    spw_record *r = malloc(BATCH * sizeof *r);
    char (*vals)[48] = malloc(BATCH * sizeof *vals);
    for (int i = 0; i < SECS;) {
        uint32_t n = 0;
        for (; n < BATCH && i < SECS; i++) {
            int j = i % 7 == 0 && n + 1 < BATCH;
            snprintf(vals[n], sizeof vals[n], "{\"n\":%d}", i % 11 - 5);
            r[n] = (spw_record){.key = "k", .key_len = 1, .value = vals[n], .value_len = (uint32_t)strlen(vals[n]),
                                .ts = T0 + i * 1000LL + 500};
            n++;
            if (j) {
                snprintf(vals[n], sizeof vals[n], "{\"n\":%d.5}", i % 5);
                r[n] = (spw_record){.key = "j", .key_len = 1, .value = vals[n],
                                    .value_len = (uint32_t)strlen(vals[n]), .ts = T0 + i * 1000LL + 900};
                n++;
            }
        }
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(s->parts[0], r, n, NULL, SPW_ACK_FSYNC, &res));
    }
    free(r);
    free(vals);
    append(s, 1, "k", T0 + SECS * 1000LL, "{\"n\":1}");
    spw_views *m;
    CHECK_OK(spw_views_open(cat, dir, 0, &m));
    vs_put_view(m, "a4",
             "{\"stream\":\"s\",\"kind\":\"aggregate\",\"field\":\"/n\","
             "\"windows\":[\"1s\",\"1m\",\"1h\",\"1d\"],\"grace\":\"10m\"}");
    vs_put_view(m, "a2", "{\"stream\":\"s\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1s\",\"2h\"]}");
    vf_view vs[] = {
        {.name = "a4", .kind = 1, .field = "/n", .nwin = 4, .win = {1000, 60000, 3600000, 86400000}, .grace = 600000},
        {.name = "a2", .kind = 1, .field = "/n", .nwin = 2, .win = {1000, 7200000}},
    };
    const int nv = 2;
    for (int i = 0; i < nv; i++)
        vf_wait_applied(m, vs[i].name, s);
    /* a4: per key, its own entry, two hour pages and one day bucket a
     * batch — not one entry per bucket of each window (about 8,000) */
    long long writes = metric(m, "spillway_view_store_writes_total", "a4");
    long long batches = metric(m, "spillway_view_batches_total", "a4");
    if (writes > 8 * batches || batches > 4)
        fprintf(stderr, "a4: %lld store writes in %lld batches\n", writes, batches);
    CHECK(batches >= 1 && batches <= 4 && writes >= 1 && writes <= 8 * batches);
    check_all(m, s, vs, nv);

    /* into buckets of pages already stored: one in its grace, one late,
     * and a new key in an old page */
    append(s, 0, "k", T0 + 3500 * 1000LL + 700, "{\"n\":100}");
    append(s, 0, "j", T0 + 3500 * 1000LL + 100, "{\"n\":-7}");
    append(s, 0, "k", T0 + 100 * 1000LL, "{\"n\":1000}"); /* late: its bucket closed long ago */
    append(s, 1, "n", T0 + SECS * 1000LL - 1, "{\"n\":3}");
    check_all(m, s, vs, nv);
    /* a hot key: one record per batch into the same page, more operands
     * than the memtable keeps for one entry before merging them (64) */
    for (int i = 0; i < 150; i++) {
        char v[32];
        snprintf(v, sizeof v, "{\"n\":%d}", i % 9);
        append(s, i % 2, "k", T0 + (3400 + i % 200) * 1000LL + 250, v);
        if (i % 3 == 0)
            vf_wait_applied(m, "a4", s);
    }
    check_all(m, s, vs, nv);

    /* a store of the earlier format: rebuilt from the log, and said so */
    spw_views_close(m);
    make_old(dir, "a4");
    spw_msg_set_level(SPW_MSG_WARN);
    spw_msg_set_sink(sink, NULL);
    CHECK_OK(spw_views_open(cat, dir, 0, &m));
    check_all(m, s, vs, nv);
    spw_msg_set_sink(NULL, NULL);
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    if (!strstr(logged, "view a4: its store has the format of version 2"))
        fprintf(stderr, "logged: %s\n", logged);
    CHECK(strstr(logged, "view a4: its store has the format of version 2") != NULL);
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_views_get_json(m, "a4", &b));
    spw_buf_put(&b, "", 1);
    CHECK(strstr((const char *)b.p, "999999") == NULL);
    spw_buf_fini(&b);

    /* a page changed behind the view's back: the verifier names it */
    spw_views_close(m);
    tamper_page(dir, "a4", T0 - 800000, "j");
    CHECK_OK(spw_views_open(cat, dir, 0, &m));
    b = (spw_buf)SPW_BUF_INIT;
    CHECK_OK(spw_views_verify(m, "a4", 1, &b, err, sizeof err));
    spw_buf_put(&b, "", 1);
    if (!strstr((const char *)b.p, "{\"page\":1699999200000,\"key\":\"j\"}"))
        fprintf(stderr, "verify a4: %s\n", (const char *)b.p);
    CHECK(strstr((const char *)b.p, "\"ok\":false") != NULL);
    CHECK(strstr((const char *)b.p, "{\"page\":1699999200000,\"key\":\"j\"}") != NULL);
    spw_buf_fini(&b);

    spw_views_close(m);
    spw_stream_put(s);
    vs_close(&env);
    printf("test_view_pack: ok\n");
    return 0;
}
