/*
 * Pruning of a versioned stream's index (docs/formats/es-index.md
 * "Pruning"): with 1 KiB segments and retention.bytes 2048, key b's
 * events are appended until retention has deleted its first versions;
 * then
 *   - the version store's index entries (spillway_es_index_entries) are
 *     exactly the records the log kept: none of a deleted record is left
 *     (before pruning they stayed forever, one per record ever written);
 *   - a history read from a deleted version still answers 416
 *     versions_deleted naming the oldest kept (the first record at the
 *     partition's start), and a read from it gives versions oldest..newest;
 *   - after a restart the same (the count is kept in the store);
 *   - a store as written before pruning (8-byte 'c' entries, no 'o'
 *     entries, the entries of deleted records still there: made here with
 *     RocksDB directly while the server is stopped) is migrated at the next
 *     start: the deleted records' entries go, the count is right, and the
 *     history answers are the same;
 *   - a store deleted while the server is stopped is made again from the
 *     log, whose first records are gone: key b's first version there is
 *     not 1, and its version still goes on from the log's (the partition
 *     writes a 'k' entry for every record then: docs/formats/es-index.md
 *     "Writing").
 */
#include <rocksdb/c.h>

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

static uint64_t field(const char *f) { return part_field(S.port, "/v1/streams/p", 0, f); }

static void post_ok(const char *body)
{
    resp r = http_json(S.port, "POST", "/v1/streams/p/events?ack=fsync", body);
    if (r.status != 202)
        fprintf(stderr, "wanted 202, got %d %s\n", r.status, r.body);
    CHECK_EQ(r.status, 202);
    free(r.body);
}

/* Waits (bounded: 40 rounds) until the index holds one entry per record
 * the log keeps, every durable record indexed. Each round appends one
 * small event of another key (a durable append wakes the indexer, whose
 * pass prunes) and waits past a retention check. Returns the log's start
 * offset then, or UINT64_MAX if the index never matched the log. */
static uint64_t settle(void)
{
    for (int i = 0; i < 40; i++) {
        post_ok("{\"id\":\"q\"}");
        usleep(250000);
        uint64_t start = field("start_offset"), end = field("end_offset");
        long long entries = metric("spillway_es_index_entries{stream=\"p\"}");
        long long lag = metric("spillway_es_unindexed_records{stream=\"p\"}");
        if (lag == 0 && entries == (long long)(end - start))
            return start;
        if (i == 39)
            fprintf(stderr, "index entries %lld, log records %" PRIu64 "..%" PRIu64 " (lag %lld)\n", entries,
                    start, end, lag);
    }
    return UINT64_MAX;
}

/* The history answers of key b (versions 1..nb at offsets 0..nb-1) with
 * the log starting at start (0 < start < nb). */
static void check_history(uint64_t start, int nb)
{
    char path[160], needle[160];
    uint64_t oldest = start + 1;
    snprintf(needle, sizeof needle, "the oldest kept is %" PRIu64, oldest);
    get_want(S.port, "/v1/streams/p/keys/b/events?from_version=1", 416, needle);
    snprintf(path, sizeof path, "/v1/streams/p/keys/b/events?from_version=%" PRIu64, oldest - 1);
    get_want(S.port, path, 416, needle);
    snprintf(path, sizeof path, "/v1/streams/p/keys/b/events?from_version=%" PRIu64 "&limit=1000", oldest);
    resp r = http_json(S.port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    for (uint64_t v = oldest; v <= (uint64_t)nb; v++) {
        snprintf(needle, sizeof needle, "\"version\":%" PRIu64 ",\"key\":\"b\"", v);
        if (!strstr(r.body, needle))
            fprintf(stderr, "version %" PRIu64 " missing from %s\n", v, r.body);
        CHECK(strstr(r.body, needle) != NULL);
    }
    snprintf(needle, sizeof needle, "\"version\":%" PRIu64 ",", oldest - 1);
    CHECK(strstr(r.body, needle) == NULL);
    free(r.body);
}

static void rdb_ok(char *err)
{
    if (err)
        fprintf(stderr, "rocksdb: %s\n", err);
    CHECK(err == NULL);
}

/* Makes stream p's store (1 partition) look as written before pruning:
 * its 'c' entry holds the indexed offset alone, its 'o' entries are gone,
 * and key b's versions 1..start (offsets 0..start-1, deleted by
 * retention) have their 'e' entries again. */
static void legacy_store(const char *dir, uint64_t start)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/streams/p/es", dir);
    rocksdb_options_t *o = rocksdb_options_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, path, &err);
    rdb_ok(err);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    const char ck[5] = {'c', 0, 0, 0, 0};
    size_t vl = 0;
    char *v = rocksdb_get(db, ro, ck, 5, &vl, &err);
    rdb_ok(err);
    CHECK(v != NULL && vl == 32);
    rocksdb_writebatch_put(wb, ck, 5, v, 8);
    rocksdb_free(v);
    int os = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator(db, ro);
    for (rocksdb_iter_seek(it, "o", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (k[0] != 'o')
            break;
        rocksdb_writebatch_delete(wb, k, kl);
        os++;
    }
    rocksdb_iter_destroy(it);
    CHECK(os > 0);
    for (uint64_t ver = 1; ver <= start; ver++) {
        char ek[11] = {'e', 'b', 0};
        for (int i = 0; i < 8; i++)
            ek[3 + i] = (char)(ver >> (56 - 8 * i));
        uint64_t off = ver - 1; /* little-endian on the machines we build for, as the store writes it */
        rocksdb_writebatch_put(wb, ek, 11, (const char *)&off, 8);
    }
    rocksdb_write(db, wo, wb, &err);
    rdb_ok(err);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_readoptions_destroy(ro);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("esprune");
    const char *flags[] = {"--segment-bytes", "1024", "--retention-check", "100ms", NULL};
    srv_start(&S, argv[1], dir, flags);
    put_stream(S.port, "p",
               "{\"versioned\":true,\"key\":\"/id\",\"partitions\":1,\"retention\":{\"bytes\":2048},"
               "\"dedupe_window_ms\":0}");
    /* Key b alone until retention deleted 20 of its records (bounded). */
    char body[256];
    int nb = 0;
    while (field("start_offset") < 20) {
        CHECK(nb < 2000);
        snprintf(body, sizeof body, "{\"id\":\"b\",\"v\":%d,\"pad\":\"%060d\"}", nb + 1, nb + 1);
        post_ok(body);
        nb++;
        if (nb % 20 == 0)
            usleep(150000); /* a retention check */
    }
    uint64_t start = settle();
    CHECK(start != UINT64_MAX);
    CHECK(start < (uint64_t)nb); /* some of b's records are kept */
    CHECK(metric("spillway_es_index_pruned_total{stream=\"p\"}") >= (long long)start);
    check_history(start, nb);
    long long entries = metric("spillway_es_index_entries{stream=\"p\"}");

    /* After a restart: the count and the answers are the same. */
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    srv_start(&S, argv[1], dir, flags);
    CHECK_EQ(metric("spillway_es_index_entries{stream=\"p\"}"), entries);
    CHECK_EQ(field("start_offset"), start);
    check_history(start, nb);

    /* Back to a store of before pruning. */
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    legacy_store(dir, start);
    srv_start(&S, argv[1], dir, flags);
    CHECK_EQ(metric("spillway_es_index_entries{stream=\"p\"}"), entries);
    CHECK_EQ(metric("spillway_es_index_pruned_total{stream=\"p\"}"), (long long)start);
    check_history(start, nb);

    /* The store deleted: rebuilt from a log that starts past b's first
     * versions. */
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    char esdir[4200];
    snprintf(esdir, sizeof esdir, "%s/streams/p/es", dir);
    spw_test_rmrf(esdir);
    srv_start(&S, argv[1], dir, flags);
    char want_v[64], q[64];
    snprintf(want_v, sizeof want_v, "\"version\":%d,", nb);
    get_want(S.port, "/v1/streams/p/keys/b", 200, want_v);
    snprintf(q, sizeof q, "&expected_version=%d", nb);
    snprintf(body, sizeof body, "{\"id\":\"b\",\"v\":%d}", nb + 1);
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/p/events?ack=fsync%s", q);
    resp r = http_json(S.port, "POST", path, body);
    char first[64];
    snprintf(first, sizeof first, "\"first\":%d,", nb + 1);
    if (r.status != 202 || !strstr(r.body, first))
        fprintf(stderr, "wanted 202 with %s, got %d %s\n", first, r.status, r.body);
    CHECK_EQ(r.status, 202);
    CHECK(strstr(r.body, first) != NULL);
    free(r.body);

    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_prune: ok");
    return 0;
}
