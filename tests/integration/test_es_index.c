/*
 * A versioned stream's index at work (docs/api.md "Event sourcing",
 * docs/operations.md "Metrics"), shown by counters, never by timing:
 *   - a new key's first append reads the version store once;
 *   - the indexer sleeps while nothing becomes durable (its passes stay
 *     still on an idle server) and is woken by the log's durable hook
 *     (after appends at ack=fsync its lag drops to 0 and its passes grew);
 *   - reading one aggregate of 40 events among 4,000 of 200 other keys in
 *     its partition decodes exactly its 40 records from the log (each in
 *     a batch of its own): the history goes through the index, not a scan
 *     of the partition;
 *   - the version store inserts each index step's entries from the place
 *     of the last insert of the same kind (its RocksDB options name the
 *     insert-hint prefix extractor, one byte: es.c ix_flush).
 */
#include <dirent.h>

#include "server.h"

static srv S;

static long long metric(const char *name)
{
    resp r = http_json(S.port, "GET", "/metrics", NULL);
    CHECK_EQ(r.status, 200);
    long long v = metric_in(r.body, name);
    free(r.body);
    return v;
}

#define PASSES "spillway_es_indexer_passes_total{stream=\"h\"}"
#define LAG "spillway_es_unindexed_records{stream=\"h\"}"
#define HIST "spillway_es_history_records_read_total{stream=\"h\"}"
#define READS "spillway_es_store_reads_total{stream=\"h\"}"

/* Polls (bounded: 2000 rounds of 10 ms) until the indexer has caught up. */
static void wait_indexed(void)
{
    long long lag = -1;
    for (int i = 0; i < 2000 && lag != 0; i++) {
        lag = metric(LAG);
        if (lag != 0)
            usleep(10000);
    }
    CHECK_EQ(lag, 0);
}

static void post_to(const char *path, const char *body)
{
    resp r = http_json(S.port, "POST", path, body);
    CHECK_EQ(r.status, 202);
    free(r.body);
}

static void post(const char *body) { post_to("/v1/streams/h/events?ack=fsync", body); }

/* The text of the newest RocksDB OPTIONS file of the stream's version
 * store (they are numbered; every open writes one). */
static char *store_options(const char *data)
{
    char dir[4200], best[256] = "", path[4500];
    snprintf(dir, sizeof dir, "%s/streams/h/es", data);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    long top = -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, "OPTIONS-", 8) == 0 && atol(e->d_name + 8) > top) {
            top = atol(e->d_name + 8);
            snprintf(best, sizeof best, "%s", e->d_name);
        }
    closedir(d);
    CHECK(top >= 0);
    snprintf(path, sizeof path, "%s/%s", dir, best);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char *text = calloc(1, 1 << 20);
    size_t n = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    CHECK(n > 0);
    return text;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("esindex");
    srv_start(&S, argv[1], dir, NULL);
    put_stream(S.port, "h", "{\"versioned\":true,\"key\":\"/id\",\"partitions\":1}");
    /* A new key's conditional append costs one store read (the map then
     * remembers "no record" for the version the append takes), and a
     * known key's none. */
    post_to("/v1/streams/h/events?ack=fsync&expected_version=none", "{\"id\":\"first\"}");
    CHECK_EQ(metric(READS), 1);
    post_to("/v1/streams/h/events?ack=fsync&expected_version=1", "{\"id\":\"first\"}");
    CHECK_EQ(metric(READS), 1);
    wait_indexed();

    /* Idle: the indexer sleeps (a poll would pass every few ms). Once
     * it has finished the pass that indexed the above (bounded wait for
     * two equal readings 50 ms apart), 300 ms pass without one. */
    long long p0 = metric(PASSES), prev = -1;
    for (int i = 0; i < 100 && p0 != prev; i++) {
        prev = p0;
        usleep(50000);
        p0 = metric(PASSES);
    }
    CHECK(p0 >= 1);
    usleep(300000);
    long long p1 = metric(PASSES);
    if (p1 - p0 > 1)
        fprintf(stderr, "the idle indexer passed %lld times\n", p1 - p0);
    CHECK(p1 - p0 <= 1);

    /* 40 events of acct, each alone in its request, between requests of
     * 100 events of 200 other keys. */
    static char body[1 << 16];
    int noise = 0;
    for (int req = 0; req < 40; req++) {
        size_t n = 0;
        body[n++] = '[';
        for (int j = 0; j < 100; j++, noise++)
            n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"id\":\"o%d\",\"n\":%d}", j ? "," : "", noise % 200,
                                  noise);
        body[n++] = ']';
        body[n] = 0;
        post(body);
        snprintf(body, sizeof body, "{\"id\":\"acct\",\"r\":%d}", req);
        post(body);
    }
    /* Woken by the durable hook: caught up, with more passes. */
    wait_indexed();
    CHECK(metric(PASSES) > p1);

    /* The aggregate's history decodes its own 40 records, not 4,042. */
    long long h0 = metric(HIST);
    CHECK(h0 >= 0);
    resp r = http_json(S.port, "GET", "/v1/streams/h/keys/acct/events?from_version=1&limit=10000", NULL);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Version"), 41);
    int lines = 0;
    for (const char *l = r.body; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        char want[64];
        snprintf(want, sizeof want, "\"version\":%d,\"key\":\"acct\"", lines + 1);
        CHECK(strstr(l, want) != NULL && strstr(l, want) < (strchr(l, '\n') ? strchr(l, '\n') : l + strlen(l)));
        lines++;
    }
    free(r.body);
    CHECK_EQ(lines, 40);
    long long h1 = metric(HIST);
    if (h1 - h0 != 40)
        fprintf(stderr, "the history read decoded %lld records\n", h1 - h0);
    CHECK_EQ(h1 - h0, 40);
    CHECK_EQ(part_field(S.port, "/v1/streams/h", 0, "end_offset"), 4042);

    /* The store's memtable keeps an insert hint per first key byte, which
     * RocksDB applies to writes that are not concurrent memtable writes. */
    char *opts = store_options(S.data);
    CHECK(strstr(opts, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1") != NULL);
    CHECK(strstr(opts, "allow_concurrent_memtable_write=false") != NULL);
    free(opts);

    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_index: ok");
    return 0;
}
