/*
 * Resharding a postgres sink online (docs/api.md "Resharding a postgres
 * sink") against three real PostgreSQL servers (pg.h): shards 0 and 1, and
 * shard 2 added while events keep arriving.
 *   - Resharding: one producer (binary protocol, the C library's producer
 *     id and sequences, so a resend across a kill -9 appends nothing twice)
 *     sends keyed events at a steady rate (SPW_PG_RESHARD_RATE a second,
 *     default 250) for the whole reshard and records which were
 *     acknowledged. A PUT with shard 2 appended starts dual_write;
 *     Spillway is killed -9 and restarted (same ports) once in each phase:
 *     dual_write, backfill and verify held by reshard_pause_before, and
 *     cutover held by the test build's SPW_TEST_RESHARD_GATE after it has
 *     deleted shard 0's moved rows and before shard 1's — the restart
 *     deletes exactly the rest. Shard 2 is stopped as if it crashed during
 *     backfill and started again; a row deleted from shard 2 behind the
 *     backfill is found by verify and copied again. A sampler thread reads
 *     every shard continuously (and right after each restart, during
 *     cutover's deletes): every acknowledged event a sample has seen in
 *     the table is on some running shard at every later sample (never
 *     zero copies), and every key has rows. At the end every acknowledged
 *     event is in the table exactly once (any other at most once), on the
 *     shard the 3-shard ring names, and about a third of the keys moved.
 *   - Abort: abort during backfill → the definition has the old shards
 *     again, shard 2 holds none of the sink's rows or progress, and the
 *     old shards hold every event exactly once (also those produced
 *     after).
 *   - A PUT that changes anything but the reshard options during a
 *     reshard is refused (409); removing a shard is refused (409).
 * SPW_PG_RESHARD_EVENTS (default 3000) sets the size of the first load (before the reshard).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "reshard.h"
#include "core/ring.h"

static const char *BIN, *TBIN; /* spillway, and spillway_test (the server: SPW_TEST_RESHARD_GATE) */
static char *TMP;
static char GATE[4300];
static pgsrv PG[3];
static char CI[3][160];
static srv S;
static char DATA[4300];

#define KEYS 300

/* The server, on the ports of its first start after every restart (the producer keeps its address). */
static void start(void)
{
    char lp[64], lb[64];
    snprintf(lp, sizeof lp, "127.0.0.1:%d", S.port);
    snprintf(lb, sizeof lb, "127.0.0.1:%d", S.binport);
    const char *again[] = {"--listen", lp, "--listen-bin", lb, NULL};
    int port = S.port, binport = S.binport;
    srv_start(&S, TBIN, DATA, port ? again : NULL);
    if (port) {
        CHECK_EQ(S.port, port);
        CHECK_EQ(S.binport, binport);
    }
}
static void kill9_restart(void)
{
    CHECK_EQ(srv_stop(&S, SIGKILL), 128 + SIGKILL);
    start();
}

static long long num(int i, const char *sql) { return pgsrv_num(&PG[i], sql); }

static void put_sink(const char *name, const char *stream, const char *table, int nshards, const char *extra,
                     int want)
{
    const char *sh[3] = {CI[0], CI[1], CI[2]};
    rs_put_sink(S.port, name, stream, table, sh, nshards, extra, want, NULL);
}

static char *get_sink(const char *name) { return rs_get_sink(S.port, name); }
static int has_phase(const char *body, const char *phase) { return rs_has_phase(body, phase); }
static char *wait_phase(const char *name, const char *phase) { return rs_wait_phase(S.port, name, phase, 0); }
static long long rows(int i, const char *table) { return rs_rows(&PG[i], table); }
static void wait_rows(int n, const char *table, long long want) { rs_wait_rows(PG, n, table, want); }

/* ---- the steady producer ---- */

#define EV_MAX (1 << 20)
enum { PH_BEFORE, PH_DUAL, PH_BACKFILL, PH_VERIFY, PH_CUTOVER, PH_DONE, PH_N };
static const char *const PH_NAMES[PH_N] = {"before", "dual_write", "backfill", "verify", "cutover", "done"};
static _Atomic int PHASE;                 /* the phase the test has seen the reshard reach */
static _Atomic unsigned char ACK[EV_MAX]; /* 1: acknowledged, 2: failed */
static unsigned char SENT_PH[EV_MAX];     /* PHASE when sent (read after the producer is joined) */
static _Atomic int NEXT_ID;               /* events [0, NEXT_ID) sent */
static _Atomic int PROD_STOP;
static uint64_t PROD_RECONNECTS; /* the producer's, read after it is joined */
static pthread_mutex_t PG_MU = PTHREAD_MUTEX_INITIALIZER; /* a sample, or a shard stopped or started */

static void on_delivery(void *opaque, const spillway_delivery *d)
{
    (void)opaque;
    intptr_t e = (intptr_t)d->opaque;
    atomic_store(&ACK[e], d->status == 0 ? 1 : 2);
    if (d->status != 0)
        fprintf(stderr, "event %ld failed: %d\n", (long)e, d->status);
}

/* Events i = NEXT_ID, NEXT_ID+1, ... (key "k<i % KEYS>", value {"i":i}) at
 * RATE a second through one producer for the whole reshard: a send while
 * Spillway is down waits in the producer, which resends it after the
 * restart with its producer id and sequence (docs/protocol.md
 * "Idempotence"), so nothing is appended twice. */
static void *producer_main(void *arg)
{
    (void)arg;
    const char *rs = getenv("SPW_PG_RESHARD_RATE");
    int rate = rs && atoi(rs) > 0 ? atoi(rs) : 250;
    spillway_producer_config cfg;
    spillway_producer_config_init(&cfg);
    cfg.on_delivery = on_delivery;
    cfg.delivery_timeout_ms = 120000;
    cfg.linger_ms = 2;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", S.binport); /* the same port after every restart */
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, &cfg, &p), 0);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long period_ns = 1000000000L / rate;
    for (int e = atomic_load(&NEXT_ID); !atomic_load(&PROD_STOP); e++) {
        CHECK(e < EV_MAX);
        char key[32], val[64];
        int kl = snprintf(key, sizeof key, "k%d", e % KEYS);
        int vl = snprintf(val, sizeof val, "{\"i\":%d}", e);
        SENT_PH[e] = (unsigned char)atomic_load(&PHASE);
        CHECK_EQ(spillway_producer_send(p, "rs", key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT,
                                        (void *)(intptr_t)e),
                 0);
        atomic_store(&NEXT_ID, e + 1);
        next.tv_nsec += period_ns;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec + 1) /* behind (a send blocked): no burst to catch up */
            next = now;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    CHECK_EQ(spillway_producer_flush(p, 120000), 0);
    PROD_RECONNECTS = spillway_producer_reconnects(p);
    spillway_producer_close(p, 1000);
    return NULL;
}

/* Waits (bounded) until k events sent after this call are acknowledged
 * (so sent while PHASE has its value now). */
static void wait_acked(int k)
{
    int mark = atomic_load(&NEXT_ID) + 1, have = 0; /* + 1: the event being sent may have the earlier PHASE */
    for (int i = 0; i < 1200 && have < k; i++) {
        if (i)
            usleep(50 * 1000);
        have = 0;
        int upto = atomic_load(&NEXT_ID);
        for (int e = mark; e < upto; e++)
            have += atomic_load(&ACK[e]) == 1;
    }
    if (have < k)
        fprintf(stderr, "%d events sent since %d acknowledged, waited for %d\n", have, mark, k);
    CHECK(have >= k);
}

/* Marks in here[] (EV_MAX bytes) the events table holds on the shards in [0, n) that run; 0 or -1
 * when a shard that runs did not answer. Old shards are read before new ones: a row moves by
 * being copied to the new shard before it is deleted from the old one, so it is seen at least
 * once. */
static int table_events(int n, const char *table, unsigned char *here)
{
    memset(here, 0, EV_MAX);
    for (int i = 0; i < n; i++) {
        if (!PG[i].started)
            continue; /* a stopped shard counts for nothing */
        PGconn *c = pgsrv_conn(&PG[i]);
        char q[128];
        snprintf(q, sizeof q, "SELECT i FROM %s", table);
        PGresult *r = PQexec(c, q);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok)
            fprintf(stderr, "shard %d: %s: %s", i, q, PQresultErrorMessage(r));
        for (int j = 0; ok && j < PQntuples(r); j++) {
            long long e = atoll(PQgetvalue(r, j, 0));
            CHECK(e >= 0 && e < EV_MAX);
            here[e] = 1;
        }
        PQclear(r);
        PQfinish(c);
        if (!ok)
            return -1;
    }
    return 0;
}

/* Waits (bounded) until every event acknowledged so far is on the shards in [0, n). */
static void wait_delivered(int n, const char *table)
{
    int upto = atomic_load(&NEXT_ID);
    unsigned char *want = malloc(EV_MAX), *here = malloc(EV_MAX);
    CHECK(want && here);
    for (int e = 0; e < upto; e++)
        want[e] = atomic_load(&ACK[e]) == 1;
    int missing = -1;
    for (int t = 0; t < 1200 && missing; t++) {
        if (t)
            usleep(50 * 1000);
        pthread_mutex_lock(&PG_MU);
        int r = table_events(n, table, here);
        pthread_mutex_unlock(&PG_MU);
        missing = r < 0 ? -1 : 0;
        for (int e = 0; e < upto && !missing; e++)
            if (want[e] && !here[e])
                missing = e + 1;
    }
    if (missing)
        fprintf(stderr, "%s: acknowledged event %d not on shards 0..%d\n", table, missing - 1, n - 1);
    CHECK_EQ(missing, 0);
    free(want);
    free(here);
}

/* ---- sampling: never zero copies ---- */

static unsigned char SEEN[EV_MAX];                          /* in the table at an earlier sample (or delivered) */
static _Atomic long long SAMPLES_BEGUN, SAMPLES_DONE, SAMPLES_PH[PH_N];
static _Atomic int SAMPLER_STOP;

/* One sample: every event acknowledged before the sample began that an
 * earlier sample saw in the table is on some shard that runs now (no
 * acknowledged row ever has zero copies), and so every key has rows. */
static void sample(const char *table, unsigned char *acked, unsigned char *here)
{
    atomic_fetch_add(&SAMPLES_BEGUN, 1);
    int upto = atomic_load(&NEXT_ID);
    for (int e = 0; e < upto; e++)
        acked[e] = atomic_load(&ACK[e]) == 1;
    pthread_mutex_lock(&PG_MU);
    int r = table_events(3, table, here);
    pthread_mutex_unlock(&PG_MU);
    CHECK_EQ(r, 0);
    static char key_seen[KEYS];
    memset(key_seen, 0, sizeof key_seen);
    for (int e = 0; e < EV_MAX; e++) {
        if (e < upto && acked[e] && SEEN[e] && !here[e]) {
            fprintf(stderr, "sample in phase %s: acknowledged event %d (key k%d), seen before, has no copy on any "
                            "shard\n",
                    PH_NAMES[atomic_load(&PHASE)], e, e % KEYS);
            CHECK(!"an acknowledged row with zero copies");
        }
        if (here[e]) {
            SEEN[e] = 1;
            key_seen[e % KEYS] = 1;
        }
    }
    for (int k = 0; k < KEYS; k++) {
        if (!key_seen[k])
            fprintf(stderr, "key k%d has no rows on any shard\n", k);
        CHECK(key_seen[k]);
    }
    atomic_fetch_add(&SAMPLES_PH[atomic_load(&PHASE)], 1);
    atomic_fetch_add(&SAMPLES_DONE, 1);
}

/* Samples continuously (arg: the table) until SAMPLER_STOP. */
static void *sampler_main(void *arg)
{
    unsigned char *acked = malloc(EV_MAX), *here = malloc(EV_MAX);
    CHECK(acked && here);
    while (!atomic_load(&SAMPLER_STOP)) {
        sample(arg, acked, here);
        usleep(20 * 1000);
    }
    free(acked);
    free(here);
    return NULL;
}

/* Waits (bounded) until a sample that began after this call is done. */
static void sample_sync(void)
{
    long long want = atomic_load(&SAMPLES_BEGUN) + 1;
    for (int i = 0; i < 1200 && atomic_load(&SAMPLES_DONE) < want; i++)
        usleep(25 * 1000);
    CHECK(atomic_load(&SAMPLES_DONE) >= want);
}

/* Rows on shard si whose key the 3-shard ring gives to shard 2 (the moving keys). */
static long long moving_rows(int si, const char *table)
{
    spw_ring ring;
    CHECK_EQ(spw_ring_init(&ring, 3), 0);
    PGconn *c = pgsrv_conn(&PG[si]);
    char q[128];
    snprintf(q, sizeof q, "SELECT k, count(*) FROM %s GROUP BY k", table);
    PGresult *r = PQexec(c, q);
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    long long n = 0;
    for (int j = 0; j < PQntuples(r); j++) {
        const char *k = PQgetvalue(r, j, 0);
        if (spw_ring_shard(&ring, k, strlen(k)) == 2)
            n += atoll(PQgetvalue(r, j, 1));
    }
    PQclear(r);
    PQfinish(c);
    spw_ring_free(&ring);
    return n;
}

/* Every row of events [0, n) on the shard the ring over nshards names; each event once, or (ack
 * not NULL) each acknowledged one once and any other at most once. Returns how many keys the ring
 * puts on shard 2. */
static int check_placement(const char *table, int nshards, long long n, _Atomic unsigned char *ack)
{
    spw_ring ring;
    CHECK_EQ(spw_ring_init(&ring, (uint32_t)nshards), 0);
    static unsigned char cnt[EV_MAX];
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
            if (cnt[e] < 255)
                cnt[e]++;
            total++;
        }
        PQclear(r);
        PQfinish(c);
    }
    long long want = 0;
    for (long long e = 0; e < n; e++) {
        int must = !ack || atomic_load(&ack[e]) == 1;
        if (must ? cnt[e] != 1 : cnt[e] > 1)
            fprintf(stderr, "event %lld (%s) is in the table %d times\n", e, must ? "acknowledged" : "not acknowledged",
                    cnt[e]);
        CHECK(must ? cnt[e] == 1 : cnt[e] <= 1);
        want += cnt[e];
    }
    CHECK_EQ(total, want);
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
    /* the first load, before anything runs: every event delivered, so acknowledged and seen */
    CHECK(n > 0 && n < EV_MAX / 2);
    pg_produce(S.binport, "rs", 0, n, KEYS, 0);
    wait_rows(2, "ev", n);
    for (int e = 0; e < n; e++) {
        atomic_store(&ACK[e], 1);
        SEEN[e] = 1;
    }
    atomic_store(&NEXT_ID, n);
    pthread_t sampler, producer;
    CHECK_EQ(pthread_create(&sampler, NULL, sampler_main, "ev"), 0);
    CHECK_EQ(pthread_create(&producer, NULL, producer_main, NULL), 0);
    wait_acked(50);
    sample_sync();
    sample_sync();

    /* refused: removing a shard */
    put_sink("rsk", "rs", "ev", 1, "", 409);

    /* dual_write, held before backfill; killed there */
    put_sink("rsk", "rs", "ev", 3, "\"reshard_pause_before\":\"backfill\",\"reshard_batch_rows\":100", 202);
    free(wait_phase("rsk", "dual_write"));
    atomic_store(&PHASE, PH_DUAL);
    wait_acked(100);
    wait_delivered(2, "ev"); /* the old placement complete */
    CHECK(rows(2, "ev") > 0); /* the moving keys' new rows on the new shard too */
    sample_sync();
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
    sample_sync(); /* right after the restart */
    wait_acked(100);
    wait_delivered(2, "ev");
    sample_sync();

    /* backfill, slowly, held before verify; killed while copying */
    char slow[200]; /* slow enough to kill it mid-backfill: about 5 s of copying */
    snprintf(slow, sizeof slow,
             "\"reshard_rows_per_s\":%d,\"reshard_batch_rows\":%d,\"reshard_pause_before\":\"verify\"",
             n / 15 > 400 ? n / 15 : 400, n / 75 > 40 ? (n / 75 < 100000 ? n / 75 : 100000) : 40);
    put_sink("rsk", "rs", "ev", 3, slow, 202);
    char *b = wait_phase("rsk", "backfill");
    free(b);
    atomic_store(&PHASE, PH_BACKFILL);
    for (int i = 0; i < 600; i++) { /* some copied */
        b = get_sink("rsk");
        long long c = rs_num(b, "copied");
        free(b);
        if (c > 0)
            break;
        usleep(50 * 1000);
    }
    sample_sync();
    kill9_restart();
    free(wait_phase("rsk", "backfill"));
    sample_sync(); /* right after the restart */
    pthread_mutex_lock(&PG_MU);
    pgsrv_stop_mode(&PG[2], "immediate"); /* the new shard crashes during backfill */
    pthread_mutex_unlock(&PG_MU);
    wait_acked(100); /* acknowledged while the new shard is down; windows touching it wait (dual writes) */
    sample_sync();
    pthread_mutex_lock(&PG_MU);
    pgsrv_start(&PG[2]);
    pthread_mutex_unlock(&PG_MU);
    sample_sync(); /* the new shard back */
    wait_delivered(2, "ev");
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
    sample_sync();
    /* a backfilled row lost on the new shard: verify must find it and copy it again */
    long long lost_p, lost_o;
    {
        PGconn *c = pgsrv_conn(&PG[2]);
        PGresult *r = PQexec(c, "DELETE FROM ev WHERE ctid = (SELECT ctid FROM ev WHERE o < (SELECT min(boundary) FROM "
                                "spillway_sink_reshard WHERE sink = 'rsk') LIMIT 1) RETURNING p, o");
        CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1);
        lost_p = atoll(PQgetvalue(r, 0, 0));
        lost_o = atoll(PQgetvalue(r, 0, 1));
        PQclear(r);
        PQfinish(c);
    }
    char lost_q[160];
    snprintf(lost_q, sizeof lost_q, "SELECT count(*) FROM ev WHERE p = %lld AND o = %lld", lost_p, lost_o);
    CHECK_EQ(num(2, lost_q), 0);

    /* verify, held before cutover; killed there */
    put_sink("rsk", "rs", "ev", 3, "\"reshard_rows_per_s\":100000,\"reshard_pause_before\":\"cutover\"", 202);
    long long repaired = 0;
    for (int i = 0; i < 2400; i++) {
        b = get_sink("rsk");
        if (has_phase(b, "verify"))
            atomic_store(&PHASE, PH_VERIFY);
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
    atomic_store(&PHASE, PH_VERIFY);
    CHECK(repaired >= 1);
    CHECK_EQ(num(2, lost_q), 1); /* the lost row copied again */
    sample_sync();
    kill9_restart();
    free(wait_phase("rsk", "verify"));
    sample_sync(); /* right after the restart */
    wait_acked(100);
    wait_delivered(2, "ev");
    sample_sync();

    /* cutover, deleting the moved rows: held (SPW_TEST_RESHARD_GATE) after
     * shard 0's moved rows are deleted and before shard 1's, killed there */
    long long m0 = moving_rows(0, "ev"), m1 = moving_rows(1, "ev");
    CHECK(m0 > 0 && m1 > 0);
    int gf = open(GATE, O_WRONLY | O_CREAT, 0644);
    CHECK(gf >= 0);
    close(gf);
    put_sink("rsk", "rs", "ev", 3, "\"reshard_delete_moved\":true", 202);
    char waiting[4400];
    snprintf(waiting, sizeof waiting, "%s.waiting", GATE);
    for (int i = 0; i < 1200 && access(waiting, F_OK) != 0; i++)
        usleep(50 * 1000);
    CHECK(access(waiting, F_OK) == 0);
    atomic_store(&PHASE, PH_CUTOVER);
    b = get_sink("rsk");
    CHECK(has_phase(b, "cutover"));
    long long deleted0 = rs_num(b, "deleted");
    free(b);
    long long left1 = moving_rows(1, "ev");
    CHECK_EQ(moving_rows(0, "ev"), 0); /* shard 0's moved rows deleted */
    CHECK(deleted0 >= m0);             /* (and those dual-written since counted) */
    CHECK(left1 >= m1);                /* shard 1's not yet */
    sample_sync();                     /* during cutover's deletes */
    wait_acked(50);
    sample_sync();
    CHECK_EQ(moving_rows(1, "ev"), left1); /* nothing moved is written to an old shard after cutover */
    CHECK_EQ(srv_stop(&S, SIGKILL), 128 + SIGKILL);
    CHECK(unlink(GATE) == 0);
    CHECK(unlink(waiting) == 0);
    start();
    b = wait_phase("rsk", "done");
    /* the restarted cutover deleted exactly the rest: shard 1's moved rows (shard 0 had none left);
     * the figure kept in the state file counts those deleted before the kill too */
    CHECK_EQ(rs_num(b, "deleted"), deleted0 + left1);
    free(b);
    atomic_store(&PHASE, PH_DONE);
    CHECK(access(waiting, F_OK) != 0); /* not held again */
    CHECK_EQ(moving_rows(0, "ev"), 0);
    CHECK_EQ(moving_rows(1, "ev"), 0);
    sample_sync(); /* right after the restart */
    wait_acked(100);
    sample_sync();

    /* the producer stops; everything it was acknowledged for is delivered */
    atomic_store(&PROD_STOP, 1);
    CHECK_EQ(pthread_join(producer, NULL), 0);
    wait_delivered(3, "ev");
    sample_sync();
    atomic_store(&SAMPLER_STOP, 1);
    CHECK_EQ(pthread_join(sampler, NULL), 0);
    int last = atomic_load(&NEXT_ID);
    int moved = check_placement("ev", 3, last, ACK);
    long long per_ph[PH_N] = {0}, failed = 0;
    for (int e = n; e < last; e++) {
        if (atomic_load(&ACK[e]) == 1)
            per_ph[SENT_PH[e]]++;
        else
            failed++;
    }
    printf("test_pg_reshard: %d events (%d produced at a steady rate, %lld not acknowledged, %llu reconnects), %d of "
           "%d keys moved to the new shard, deleted %lld + %lld moved rows across a kill -9 in cutover\n",
           last, last - n, failed, (unsigned long long)PROD_RECONNECTS, moved, KEYS, deleted0, left1);
    CHECK(PROD_RECONNECTS >= 4); /* the one producer rode out the four kills */
    for (int ph = 0; ph < PH_N; ph++) {
        long long sp = atomic_load(&SAMPLES_PH[ph]);
        printf("test_pg_reshard: %-10s %lld events acknowledged, %lld samples\n", PH_NAMES[ph], per_ph[ph], sp);
        CHECK(per_ph[ph] > 0); /* produced all along */
        CHECK(sp >= 2);        /* sampled in every phase */
    }
    CHECK(moved > KEYS / 5 && moved < KEYS / 2); /* about a third */
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
    check_placement("ab", 2, 1400, NULL);
    CHECK_EQ(req_status(S.port, "POST", "/v1/sinks/abk/reshard/abort", ""), 409);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    BIN = argv[1];
    TBIN = argv[2];
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
    snprintf(GATE, sizeof GATE, "%s/cutover.gate", TMP);
    setenv("SPW_TEST_RESHARD_GATE", GATE, 1); /* held only while the file exists */
    start();
    const char *ev = getenv("SPW_PG_RESHARD_EVENTS");
    test_abort();
    test_reshard(ev ? atoi(ev) : 3000);
    return rs_finish(&S, TMP, "test_pg_reshard");
}
