/*
 * Resharding a postgres sink online (docs/api.md "Resharding a postgres
 * sink") against three real PostgreSQL servers (pg.h): shards 0 and 1, and
 * shard 2 added while events keep arriving.
 *   - Resharding: a PUT with shard 2 appended starts dual_write; Spillway
 *     is killed -9 and restarted in dual_write, in backfill, in verify and
 *     just after cutover is released; shard 2 is stopped as if it crashed
 *     during backfill and started again; a row deleted from shard 2 behind
 *     the backfill is found by verify and copied again. Events are
 *     produced between every step. At sampled moments every key already
 *     delivered has rows somewhere (never zero copies). At the end (with
 *     reshard_delete_moved) every event is in the table exactly once, on
 *     the shard the 3-shard ring names, and about a third of the keys
 *     moved.
 *   - Abort: abort during backfill → the definition has the old shards
 *     again, shard 2 holds none of the sink's rows or progress, and the
 *     old shards hold every event exactly once (also those produced
 *     after).
 *   - A PUT that changes anything but the reshard options during a
 *     reshard is refused (409); removing a shard is refused (409).
 * SPW_PG_RESHARD_EVENTS (default 3000) sets the size of the first load.
 */
#include "pg.h"
#include "core/ring.h"

static const char *BIN;
static char *TMP;
static pgsrv PG[3];
static char CI[3][160];
static srv S;
static char DATA[4300];

#define KEYS 300

static void start(void) { srv_start(&S, BIN, DATA, NULL); }
static void kill9_restart(void)
{
    CHECK_EQ(srv_stop(&S, SIGKILL), 128 + SIGKILL);
    start();
}

static long long num(int i, const char *sql) { return pgsrv_num(&PG[i], sql); }

static void put_sink(const char *name, const char *stream, const char *table, int nshards, const char *extra,
                     int want)
{
    char body[4096], sh[1024] = "";
    for (int i = 0; i < nshards; i++) {
        char one[200];
        snprintf(one, sizeof one, "%s\"%s\"", i ? "," : "", CI[i]);
        strcat(sh, one);
    }
    snprintf(body, sizeof body,
             "{\"stream\":\"%s\",\"kind\":\"postgres\",\"batch\":{\"max_events\":200,\"max_wait_ms\":20},"
             "\"retry\":{\"max_ms\":500},\"options\":{\"shards\":[%s],\"table\":\"%s\",\"columns\":{\"k\":\"$key\",\"p\":\"$partition\","
             "\"o\":\"$offset\",\"i\":\"/i\"}%s%s}}",
             stream, sh, table, extra[0] ? "," : "", extra);
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    resp r = http_json(S.port, "PUT", path, body);
    if (r.status != want)
        fprintf(stderr, "PUT %s: %d %s\n", path, r.status, r.body ? r.body : "");
    CHECK_EQ(r.status, want);
    free(r.body);
}

/* GET /v1/sinks/name's body (malloc'ed). */
static char *get_sink(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    resp r = http_json(S.port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    return r.body;
}

/* The number after "field": inside the "reshard" object (-1 if absent). */
static long long rs_num(const char *body, const char *field)
{
    const char *rs = strstr(body, "\"reshard\":");
    if (!rs)
        return -1;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", field);
    const char *p = strstr(rs, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}

static int has_phase(const char *body, const char *phase)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"reshard\":{\"phase\":\"%s\"", phase);
    return strstr(body, pat) != NULL;
}

/* Waits (bounded) until GET shows the phase; returns the body. */
static char *wait_phase(const char *name, const char *phase)
{
    for (int i = 0; i < 1200; i++) {
        char *b = get_sink(name);
        if (has_phase(b, phase))
            return b;
        if (i == 1199)
            fprintf(stderr, "waiting for phase %s: %s\n", phase, b);
        free(b);
        usleep(50 * 1000);
    }
    CHECK(!"phase not reached");
    return NULL;
}

static long long rows(int i, const char *table)
{
    char q[128];
    snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
    return num(i, q);
}

/* Waits until the shards in [0, n) hold want rows between them, each row once per (p, o) on a shard. */
static void wait_rows(int n, const char *table, long long want)
{
    long long have = -1;
    for (int t = 0; t < 1200 && have != want; t++) {
        have = 0;
        for (int i = 0; i < n; i++)
            have += rows(i, table);
        if (have != want)
            usleep(50 * 1000);
    }
    if (have != want)
        fprintf(stderr, "%s: %lld rows, want %lld\n", table, have, want);
    CHECK_EQ(have, want);
}

/* Every key k0..k(KEYS-1) has rows on some shard: no acknowledged and delivered key has zero copies. */
static void sample_no_zero(const char *table)
{
    static char seen[KEYS];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 3; i++) {
        if (!PG[i].started)
            continue; /* a stopped shard counts for nothing */
        PGconn *c = pgsrv_conn(&PG[i]);
        char q[128];
        snprintf(q, sizeof q, "SELECT DISTINCT k FROM %s", table);
        PGresult *r = PQexec(c, q);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            for (int j = 0; j < PQntuples(r); j++) {
                int k = atoi(PQgetvalue(r, j, 0) + 1);
                if (k >= 0 && k < KEYS)
                    seen[k] = 1;
            }
        PQclear(r);
        PQfinish(c);
    }
    for (int k = 0; k < KEYS; k++) {
        if (!seen[k])
            fprintf(stderr, "key k%d has no rows on any shard\n", k);
        CHECK(seen[k]);
    }
}

/* Every event [0, n) once in the table over shards [0, nshards), each on the shard ring names;
 * returns how many keys the ring puts on shard 2. */
static int check_placement(const char *table, int nshards, long long n)
{
    spw_ring ring;
    CHECK_EQ(spw_ring_init(&ring, (uint32_t)nshards), 0);
    static unsigned char cnt[1 << 20];
    CHECK(n <= (long long)sizeof cnt);
    memset(cnt, 0, (size_t)n);
    long long total = 0;
    for (int i = 0; i < nshards; i++) {
        PGconn *c = pgsrv_conn(&PG[i]);
        char q[128];
        snprintf(q, sizeof q, "SELECT k, i FROM %s", table);
        PGresult *r = PQexec(c, q);
        CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
        for (int j = 0; j < PQntuples(r); j++) {
            const char *k = PQgetvalue(r, j, 0);
            long long e = atoll(PQgetvalue(r, j, 1));
            CHECK(e >= 0 && e < n);
            if (spw_ring_shard(&ring, k, strlen(k)) != (uint32_t)i)
                fprintf(stderr, "event %lld (key %s) on shard %d, the ring names %u\n", e, k, i,
                        spw_ring_shard(&ring, k, strlen(k)));
            CHECK_EQ(spw_ring_shard(&ring, k, strlen(k)), (uint32_t)i);
            cnt[e]++;
            total++;
        }
        PQclear(r);
        PQfinish(c);
    }
    for (long long e = 0; e < n; e++) {
        if (cnt[e] != 1)
            fprintf(stderr, "event %lld is in the table %d times\n", e, cnt[e]);
        CHECK_EQ(cnt[e], 1);
    }
    CHECK_EQ(total, n);
    int moved = 0;
    char key[16];
    for (int k = 0; k < KEYS; k++) {
        int kl = snprintf(key, sizeof key, "k%d", k);
        moved += spw_ring_shard(&ring, key, (size_t)kl) == 2;
    }
    spw_ring_free(&ring);
    return moved;
}

static void table_everywhere(const char *t)
{
    char q[256];
    snprintf(q, sizeof q, "CREATE TABLE %s (k text, p integer NOT NULL, o bigint NOT NULL, i bigint NOT NULL);"
                          "CREATE INDEX ON %s (p, o)",
             t, t);
    for (int i = 0; i < 3; i++)
        pgsrv_exec(&PG[i], q);
}

static void test_reshard(int n)
{
    table_everywhere("ev");
    put_stream(S.port, "rs", "{\"partitions\":4}");
    put_sink("rsk", "rs", "ev", 2, "", 201);
    long long sent = 0;
    pg_produce(S.binport, "rs", 0, n, KEYS, 0);
    sent += n;
    wait_rows(2, "ev", sent);
    sample_no_zero("ev");

    /* refused: removing a shard; a different column map with a shard added */
    put_sink("rsk", "rs", "ev", 1, "", 409);

    /* dual_write, held before backfill */
    put_sink("rsk", "rs", "ev", 3, "\"reshard_pause_before\":\"backfill\",\"reshard_batch_rows\":100", 202);
    free(wait_phase("rsk", "dual_write"));
    pg_produce(S.binport, "rs", (int)sent, 300, KEYS, 0);
    sent += 300;
    wait_rows(2, "ev", sent); /* the old placement complete */
    CHECK(rows(2, "ev") > 0);   /* the moving keys' new rows on the new shard too */
    sample_no_zero("ev");
    /* only the reshard options may change now */
    {
        char body[2048];
        snprintf(body, sizeof body,
                 "{\"stream\":\"rs\",\"kind\":\"postgres\",\"batch\":{\"max_events\":200,\"max_wait_ms\":20},"
                 "\"retry\":{\"max_ms\":500},\"options\":{\"shards\":[\"%s\",\"%s\",\"%s\"],\"table\":\"ev\",\"columns\":{\"k\":\"$key\"}}}",
                 CI[0], CI[1], CI[2]);
        resp r = http_json(S.port, "PUT", "/v1/sinks/rsk", body);
        CHECK_EQ(r.status, 409);
        CHECK(strstr(r.body, "resharding"));
        free(r.body);
    }
    kill9_restart();
    free(wait_phase("rsk", "dual_write"));
    pg_produce(S.binport, "rs", (int)sent, 200, KEYS, 0);
    sent += 200;
    wait_rows(2, "ev", sent);
    sample_no_zero("ev");

    /* backfill, slowly, held before verify */
    char slow[200]; /* slow enough to kill it mid-backfill: about 5 s of copying */
    snprintf(slow, sizeof slow,
             "\"reshard_rows_per_s\":%d,\"reshard_batch_rows\":%d,\"reshard_pause_before\":\"verify\"",
             n / 15 > 400 ? n / 15 : 400, n / 75 > 40 ? (n / 75 < 100000 ? n / 75 : 100000) : 40);
    put_sink("rsk", "rs", "ev", 3, slow, 202);
    char *b = wait_phase("rsk", "backfill");
    free(b);
    for (int i = 0; i < 600; i++) { /* some copied */
        b = get_sink("rsk");
        long long c = rs_num(b, "copied");
        free(b);
        if (c > 0)
            break;
        usleep(50 * 1000);
    }
    kill9_restart();
    free(wait_phase("rsk", "backfill"));
    pgsrv_stop_mode(&PG[2], "immediate"); /* the new shard crashes during backfill */
    pg_produce(S.binport, "rs", (int)sent, 100, KEYS, 0);
    sent += 100;
    usleep(300 * 1000); /* windows touching the new shard wait for it (dual writes) */
    sample_no_zero("ev");
    pgsrv_start(&PG[2]);
    wait_rows(2, "ev", sent);
    /* backfill done (held before verify): scanned = total */
    for (int i = 0; i < 2400; i++) {
        b = get_sink("rsk");
        long long nr = rs_num(b, "ranges"), d = rs_num(b, "ranges_done");
        int done = has_phase(b, "backfill") && nr == 4 * 2 && d == nr;
        if (i == 2399)
            fprintf(stderr, "backfill: %s\n", b);
        free(b);
        if (done)
            break;
        CHECK(i < 2399);
        usleep(50 * 1000);
    }
    sample_no_zero("ev");
    /* a backfilled row lost on the new shard: verify must find it */
    pgsrv_exec(&PG[2], "DELETE FROM ev WHERE ctid = (SELECT ctid FROM ev WHERE o < (SELECT min(boundary) FROM "
                       "spillway_sink_reshard WHERE sink = 'rsk') LIMIT 1)");
    long long before_fix = rows(2, "ev");

    /* verify, held before cutover */
    put_sink("rsk", "rs", "ev", 3, "\"reshard_rows_per_s\":100000,\"reshard_pause_before\":\"cutover\"", 202);
    long long repaired = 0;
    for (int i = 0; i < 2400; i++) {
        b = get_sink("rsk");
        if (rs_num(b, "repaired_keys") > repaired)
            repaired = rs_num(b, "repaired_keys");
        int ok = has_phase(b, "verify") && rs_num(b, "runs") >= 1 && rs_num(b, "mismatched_keys") == 0;
        if (i == 2399)
            fprintf(stderr, "verify: %s\n", b);
        free(b);
        if (ok && repaired > 0)
            break;
        CHECK(i < 2399);
        usleep(50 * 1000);
    }
    CHECK(repaired >= 1);
    CHECK(rows(2, "ev") > before_fix);
    kill9_restart();
    free(wait_phase("rsk", "verify"));
    pg_produce(S.binport, "rs", (int)sent, 100, KEYS, 0);
    sent += 100;
    wait_rows(2, "ev", sent);
    sample_no_zero("ev");

    /* cutover, deleting the moved rows; killed as soon as it is released */
    put_sink("rsk", "rs", "ev", 3, "\"reshard_delete_moved\":true", 202);
    kill9_restart();
    b = wait_phase("rsk", "done");
    CHECK(rs_num(b, "deleted") >= 0);
    free(b);
    sample_no_zero("ev");
    pg_produce(S.binport, "rs", (int)sent, 300, KEYS, 0);
    sent += 300;
    wait_rows(3, "ev", sent);
    int moved = check_placement("ev", 3, sent);
    printf("test_pg_reshard: %lld events, %d of %d keys moved to the new shard\n", sent, moved, KEYS);
    CHECK(moved > KEYS / 5 && moved < KEYS / 2); /* about a third */
    sample_no_zero("ev");
}

static void test_abort(void)
{
    table_everywhere("ab");
    put_stream(S.port, "abs", "{\"partitions\":2}");
    put_sink("abk", "abs", "ab", 2, "", 201);
    pg_produce(S.binport, "abs", 0, 1000, KEYS, 0);
    wait_rows(2, "ab", 1000);
    CHECK_EQ(req_status(S.port, "POST", "/v1/sinks/abk/reshard/abort", ""), 409); /* not resharding */
    put_sink("abk", "abs", "ab", 3, "\"reshard_rows_per_s\":50,\"reshard_batch_rows\":10", 202);
    for (int i = 0; i < 200; i++) {
        char *b = get_sink("abk");
        int ok = has_phase(b, "backfill") && rs_num(b, "copied") > 0;
        if (i == 199)
            fprintf(stderr, "backfill: %s\n", b);
        free(b);
        if (ok)
            break;
        CHECK(i < 199);
        usleep(50 * 1000);
    }
    pg_produce(S.binport, "abs", 1000, 100, KEYS, 0);
    wait_rows(2, "ab", 1100);
    CHECK(rows(2, "ab") > 0);
    cli_out o = cli_run(BIN, "top --once --interval 300ms --server 127.0.0.1:%d", S.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "sink name=abk") && strstr(o.text, " reshard=backfill"));
    free(o.text);
    o = cli_run(BIN, "sink show abk --server 127.0.0.1:%d", S.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "reshard          backfill, 2 to 3 shards"));
    free(o.text);
    o = cli_run(BIN, "sink reshard-abort abk --server 127.0.0.1:%d", S.port);
    if (o.rc != 0)
        fprintf(stderr, "reshard-abort: %s\n", o.text);
    CHECK_EQ(o.rc, 0);
    free(o.text);
    resp r = http_json(S.port, "GET", "/v1/sinks/abk", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(!strstr(r.body, "\"reshard\":"));
    CHECK(!strstr(r.body, CI[2]));
    free(r.body);
    CHECK_EQ(rows(2, "ab"), 0);
    CHECK_EQ(num(2, "SELECT count(*) FROM spillway_sink_progress WHERE sink = 'abk'"), 0);
    CHECK_EQ(num(2, "SELECT count(*) FROM spillway_sink_reshard WHERE sink = 'abk'"), 0);
    pg_produce(S.binport, "abs", 1100, 200, KEYS, 0);
    wait_rows(2, "ab", 1300);
    kill9_restart(); /* the old definition after a restart too */
    pg_produce(S.binport, "abs", 1300, 100, KEYS, 0);
    wait_rows(2, "ab", 1400);
    CHECK_EQ(rows(2, "ab"), 0);
    check_placement("ab", 2, 1400);
    CHECK_EQ(req_status(S.port, "POST", "/v1/sinks/abk/reshard/abort", ""), 409);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    CHECK(pgsrv_find() == 0);
    char tmpl[] = "/tmp/spw_pg_reshard_XXXXXX";
    TMP = mkdtemp(tmpl);
    CHECK(TMP);
    for (int i = 0; i < 3; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "pg%d", i);
        pgsrv_init(&PG[i], TMP, nm);
        pgsrv_conninfo(&PG[i], CI[i], sizeof CI[i]);
    }
    snprintf(DATA, sizeof DATA, "%s/data", TMP);
    start();
    const char *ev = getenv("SPW_PG_RESHARD_EVENTS");
    test_abort();
    test_reshard(ev ? atoi(ev) : 3000);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    pgsrv_stop_all();
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", TMP);
    CHECK(system(cmd) == 0);
    printf("test_pg_reshard: ok\n");
    return 0;
}
