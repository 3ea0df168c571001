/*
 * The views benchmark (bench/run.sh views; docs/operations.md
 * "Benchmarks"): a log already holding N events of about B bytes over K
 * keys (4 partitions, fsynced), then, for each kind — latest, aggregate
 * with three windows (1s, 1m, 1h) and sum — a new view over it and the
 * time until it has applied all of it (events/s), while one reader thread
 * reads random keys and series (1m) the whole time (p50/p99 of each),
 * --read-rate times a second (default 2000; 0: as fast as it can, which
 * takes about a core of the two the apply uses).
 * In process, through the same code as the server (src/view), so what is
 * measured is the apply loop and the store, not HTTP.
 *
 * Prints a table and one line per kind:
 *   BENCH views kind=K events=N events_per_s=X key_p50_us=.. key_p99_us=..
 *         series_p50_us=.. series_p99_us=.. store_writes=W [ratio_to_fillrandom=R]
 * (ratio_to_fillrandom when --fillrandom-ops gives RocksDB db_bench's
 * fillrandom rate for the same key count and value size: bench/run.sh).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "core/clock.h"
#include "core/msg.h"
#include "log/log.h"
#include "view/view.h"
#include "test.h"

#define NP 4
#define T0 1700000000000LL

static uint64_t nevents = 2000000, nkeys = 100000, vsize = 100;
static double fill_ops;
static const char *only; /* --kind: run this kind alone */
static uint64_t span_ms = 3600000; /* --span-ms: the events' times spread over this */
static int no_reads;     /* --no-reads: apply alone (for profiles) */
/* --read-rate: the reader's reads per second (a key read, and a series
 * read on the aggregate view, each time); 0: as fast as it can */
static uint64_t read_rate = 2000;
static spw_views *views;
static _Atomic int reading;
static const char *cur_view;
static uint64_t *lat_key, *lat_series;
static size_t n_key, n_series, cap_lat = 1 << 22;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_u64);
    return v[(size_t)(p * (double)(n - 1))];
}

static void *reader(void *arg)
{
    (void)arg;
    uint64_t r = 12345;
    spw_buf b = SPW_BUF_INIT;
    char err[300], key[32];
    uint64_t t0 = spw_mono_ns(), i = 0;
    while (atomic_load(&reading) && !no_reads) {
        if (read_rate) /* paced: a latency probe beside the apply, not a second load on its cores */
            spw_sleep_until(t0 + i++ * 1000000000ull / read_rate);
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(key, sizeof key, "key%06" PRIu64, (r >> 33) % nkeys);
        b.len = 0;
        uint64_t t = spw_mono_ns();
        spw_views_read_key(views, cur_view, key, strlen(key), 0, &b, err, sizeof err);
        if (n_key < cap_lat)
            lat_key[n_key++] = (spw_mono_ns() - t) / 1000;
        if (strcmp(cur_view, "agg") == 0) {
            b.len = 0;
            t = spw_mono_ns();
            spw_views_read_series(views, cur_view, key, strlen(key), "1m", T0, T0 + 3600000, 0, &b, err, sizeof err);
            if (n_series < cap_lat)
                lat_series[n_series++] = (spw_mono_ns() - t) / 1000;
        }
    }
    spw_buf_fini(&b);
    return NULL;
}

static void fill(spw_stream *s)
{
    enum { BATCH = 5000 };
    spw_record *r = malloc(BATCH * sizeof *r);
    char *vals = malloc((size_t)BATCH * (vsize + 64)), (*keys)[16] = malloc(BATCH * 16);
    uint64_t done = 0, x = 1;
    uint64_t t0 = spw_mono_ns();
    while (done < nevents) {
        uint32_t p = (uint32_t)((done / BATCH) % NP), n = 0;
        for (; n < BATCH && done + n < nevents; n++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t k = (x >> 33) % nkeys;
            snprintf(keys[n], 16, "key%06" PRIu64, k);
            char *v = vals + (size_t)n * (vsize + 64);
            int len = snprintf(v, vsize + 64, "{\"n\":%" PRIu64 ",\"pad\":\"", (x >> 20) % 1000);
            while ((uint64_t)len < vsize - 2)
                v[len++] = 'x';
            v[len++] = '"';
            v[len++] = '}';
            r[n] = (spw_record){.key = keys[n], .key_len = (int32_t)strlen(keys[n]), .value = v,
                                .value_len = (uint32_t)len, .ts = T0 + (int64_t)((double)(done + n) * (double)span_ms / (double)nevents)};
        }
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(s->parts[p], r, n, NULL, SPW_ACK_FSYNC, &res));
        done += n;
    }
    printf("log: %" PRIu64 " events of %" PRIu64 " B over %" PRIu64 " keys written in %.1f s\n", nevents, vsize,
           nkeys, (double)(spw_mono_ns() - t0) / 1e9);
    free(r);
    free(vals);
    free(keys);
}

static long long metric_of(const char *text, const char *name)
{
    const char *p = strstr(text, name);
    return p ? atoll(p + strlen(name)) : -1;
}

static void run_kind(spw_stream *s, const char *name, const char *def)
{
    if (only && strcmp(only, name) != 0 && !(strcmp(only, "aggregate") == 0 && strcmp(name, "agg") == 0))
        return;
    spw_buf b = SPW_BUF_INIT;
    char err[300];
    n_key = n_series = 0;
    cur_view = name;
    uint64_t t0 = spw_mono_ns();
    CHECK_EQ(spw_views_put(views, name, def, strlen(def), &b, err, sizeof err), 1);
    atomic_store(&reading, 1);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, reader, NULL) == 0);
    spw_view_min min[NP];
    for (uint32_t p = 0; p < NP; p++) {
        spw_part_state st;
        spw_part_state_get(s->parts[p], &st);
        min[p] = (spw_view_min){p, st.next_offset - 1};
    }
    while (spw_views_applied(views, name, min, NP) != 1)
        spw_sleep_until(spw_mono_ns() + 1000000u);
    double secs = (double)(spw_mono_ns() - t0) / 1e9;
    atomic_store(&reading, 0);
    pthread_join(th, NULL);
    b.len = 0;
    spw_views_metrics(views, &b, NULL, NULL);
    spw_buf_put(&b, "", 1);
    char mname[128];
    snprintf(mname, sizeof mname, "spillway_view_store_writes_total{view=\"%s\"} ", name);
    long long writes = metric_of((const char *)b.p, mname);
    double eps = (double)nevents / secs;
    uint64_t k50 = pct(lat_key, n_key, 0.5), k99 = pct(lat_key, n_key, 0.99);
    uint64_t s50 = pct(lat_series, n_series, 0.5), s99 = pct(lat_series, n_series, 0.99);
    printf("%-10s %12.0f events/s  %6.2f s  key p50 %5" PRIu64 " us p99 %6" PRIu64 " us (%zu reads)", name, eps, secs,
           k50, k99, n_key);
    if (n_series)
        printf("  series p50 %5" PRIu64 " us p99 %6" PRIu64 " us", s50, s99);
    printf("  store writes %lld\n", writes);
    printf("BENCH views kind=%s events=%" PRIu64 " events_per_s=%.0f key_p50_us=%" PRIu64 " key_p99_us=%" PRIu64
           " series_p50_us=%" PRIu64 " series_p99_us=%" PRIu64 " store_writes=%lld span_ms=%" PRIu64,
           strcmp(name, "agg") == 0 ? "aggregate" : name, nevents, eps, k50, k99, s50, s99, writes, span_ms);
    if (fill_ops > 0)
        printf(" ratio_to_fillrandom=%.2f", eps / fill_ops);
    printf("\n");
    fflush(stdout);
    CHECK_OK(spw_views_delete(views, name));
    spw_buf_fini(&b);
}

int main(int argc, char **argv)
{
    const char *dirbase = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--events") == 0)
            nevents = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--keys") == 0)
            nkeys = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--size") == 0)
            vsize = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--fillrandom-ops") == 0)
            fill_ops = strtod(argv[++i], NULL);
        else if (i + 1 < argc && strcmp(argv[i], "--span-ms") == 0)
            span_ms = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--no-reads") == 0)
            no_reads = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--read-rate") == 0)
            read_rate = strtoull(argv[++i], NULL, 10);
        else if (i + 1 < argc && strcmp(argv[i], "--batch-records") == 0) /* profiles of the commit pipeline */
            atomic_store(&spw__view_batch_records, (uint32_t)strtoul(argv[++i], NULL, 10));
        else if (i + 1 < argc && strcmp(argv[i], "--kind") == 0)
            only = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--dir") == 0)
            dirbase = argv[++i];
        else {
            fprintf(stderr, "usage: spw_view_bench [--events N] [--keys K] [--size B] [--fillrandom-ops X] [--kind K] [--span-ms MS] [--no-reads] [--read-rate R] [--batch-records N] [--dir D]\n");
            return 2;
        }
    }
    if (nevents < NP || nkeys == 0 || vsize < 32 || vsize > 65536) {
        fprintf(stderr, "spw_view_bench: need --events >= 4, --keys >= 1, --size 32..65536\n");
        return 2;
    }
    if (dirbase)
        setenv("TMPDIR", dirbase, 1);
    spw_msg_set_level(SPW_MSG_WARN);
    char *dir = spw_test_tmpdir("viewbench");
    lat_key = malloc(cap_lat * sizeof *lat_key);
    lat_series = malloc(cap_lat * sizeof *lat_series);
    spw_log *log;
    spw_catalog *cat;
    CHECK_OK(spw_log_open(NULL, &log));
    CHECK_OK(spw_catalog_open(log, dir, 0, &cat));
    spw_stream_config c;
    char err[256];
    const char *sdef = "{\"partitions\":4}";
    CHECK_EQ(spw_stream_config_parse(&c, "b", sdef, strlen(sdef), err, sizeof err), 0);
    CHECK_EQ(spw_catalog_create(cat, &c), 1);
    spw_stream *s = spw_stream_get(cat, "b", 1);
    fill(s);
    CHECK_OK(spw_views_open(cat, dir, 0, &views));
    run_kind(s, "latest", "{\"stream\":\"b\",\"kind\":\"latest\"}");
    run_kind(s, "agg", "{\"stream\":\"b\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1s\",\"1m\",\"1h\"]}");
    run_kind(s, "sum", "{\"stream\":\"b\",\"kind\":\"sum\",\"field\":\"/n\"}");
    spw_views_close(views);
    spw_stream_put(s);
    spw_catalog_close(cat);
    spw_log_close(log);
    spw_test_rmrf(dir);
    free(dir);
    free(lat_key);
    free(lat_series);
    return 0;
}
