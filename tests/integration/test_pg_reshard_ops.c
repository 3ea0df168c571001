/*
 * Resharding a postgres sink as docs/operations.md "Adding a PostgreSQL
 * shard" does it, against three real PostgreSQL servers (pg.h): shards 0
 * and 1 with a password in their connection strings, shard 2 added.
 *   - The definition as GET shows it (passwords "[redacted]") sent back
 *     unchanged is the same sink (200); with a new shard whose password is
 *     redacted it is refused (400, nothing changes); with the new shard
 *     written whole it starts the reshard (202).
 *   - Held before cutover (reshard_pause_before "cutover"), verify runs
 *     once and not again while nothing is written (polled over a few
 *     seconds), and again after rows of moving keys are written.
 *   - The figures seen before cutover (backfill copied, ranges, total,
 *     verify runs) are still shown in phase done, after the sink's restart
 *     that the options change does and after a server restart; a state
 *     file of the older form (phase only) still loads.
 */
#include "reshard.h"

static const char *BIN;
static char *TMP;
static pgsrv PG[3];
static char CI[3][200];  /* with the password */
static char RED[3][200]; /* as GET shows it */
static srv S;
static char DATA[4300];

#define KEYS 200

static void put_def(const char *const *shards, int n, const char *extra, int want, const char *want_text)
{
    rs_put_sink(S.port, "k", "s", "ev", shards, n, extra, want, want_text);
}

static char *get_sink(void) { return rs_get_sink(S.port, "k"); }
static int has_phase(const char *body, const char *phase) { return rs_has_phase(body, phase); }
static char *wait_phase(const char *phase, long long min_runs) { return rs_wait_phase(S.port, "k", phase, min_runs); }
static long long rows(int i) { return rs_rows(&PG[i], "ev"); }
static void wait_rows(int n, long long want) { rs_wait_rows(PG, n, "ev", want); }

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    CHECK(pgsrv_find() == 0);
    char tmpl[] = "/tmp/spw_pg_reshard_ops_XXXXXX";
    TMP = mkdtemp(tmpl);
    CHECK(TMP);
    for (int i = 0; i < 3; i++) {
        char nm[8], ci[160];
        snprintf(nm, sizeof nm, "pg%d", i);
        pgsrv_init(&PG[i], TMP, nm);
        pgsrv_conninfo(&PG[i], ci, sizeof ci);
        /* trust authentication: the password is never asked for, only kept */
        snprintf(CI[i], sizeof CI[i], "%s password=sekrit%d", ci, i);
        snprintf(RED[i], sizeof RED[i], "%s password=[redacted]", ci);
        pgsrv_exec(&PG[i], "CREATE TABLE ev (k text, p integer NOT NULL, o bigint NOT NULL, i bigint NOT NULL);"
                           "CREATE INDEX ON ev (p, o)");
    }
    snprintf(DATA, sizeof DATA, "%s/data", TMP);
    srv_start(&S, BIN, DATA, NULL);
    put_stream(S.port, "s", "{\"partitions\":2}");
    const char *full2[] = {CI[0], CI[1]};
    put_def(full2, 2, "", 201, NULL);
    pg_produce(S.binport, "s", 0, 600, KEYS, 0);
    wait_rows(2, 600);

    /* the definition as shown */
    char *b = get_sink();
    CHECK(strstr(b, RED[0]) && strstr(b, RED[1]) && !strstr(b, "sekrit"));
    /* its "definition" sent back as it is: the same sink */
    char *d0 = strstr(b, "\"definition\":"), *d1 = strstr(b, ",\"state\":");
    CHECK(d0 && d1 && d1 > d0);
    d0 += strlen("\"definition\":");
    *d1 = 0;
    resp r0 = http_json(S.port, "PUT", "/v1/sinks/k", d0);
    if (r0.status != 200)
        fprintf(stderr, "PUT %s: %d %s\n", d0, r0.status, r0.body ? r0.body : "");
    CHECK_EQ(r0.status, 200);
    free(r0.body);
    free(b);
    const char *shown[] = {RED[0], RED[1]};
    put_def(shown, 2, "", 200, NULL); /* the same sink */
    const char *red_new[] = {RED[0], RED[1], RED[2]};
    put_def(red_new, 3, "", 400, "can't be used for a new");
    const char *swapped[] = {RED[1], RED[0], CI[2]}; /* another host's redacted password is not its own */
    put_def(swapped, 3, "", 400, "can't be used for a new");
    b = get_sink();
    CHECK(!strstr(b, "\"reshard\":") && !strstr(b, "sekrit2"));
    free(b);
    const char *grow[] = {RED[0], RED[1], CI[2]};
    put_def(grow, 3, "\"reshard_pause_before\":\"cutover\"", 202, NULL);

    /* held before cutover: one verify, then none while idle */
    b = wait_phase("verify", 1);
    free(b);
    b = get_sink();
    long long runs = rs_num(b, "runs");
    free(b);
    for (int i = 0; i < 20; i++) { /* 20 polls over about 4 s */
        usleep(200 * 1000);
        b = get_sink();
        long long now = rs_num(b, "runs");
        if (now != runs)
            fprintf(stderr, "verify ran again while nothing was written: %s\n", b);
        CHECK_EQ(now, runs);
        CHECK(has_phase(b, "verify"));
        free(b);
    }
    /* rows of every key (so of moving ones): verify again */
    pg_produce(S.binport, "s", 600, 400, KEYS, 0);
    b = wait_phase("verify", runs + 1);
    free(b);
    b = get_sink();
    long long copied = rs_num(b, "copied"), total = rs_num(b, "total"), ranges = rs_num(b, "ranges"),
              done_r = rs_num(b, "ranges_done"), vruns = rs_num(b, "runs"), started = rs_num(b, "started_ms");
    CHECK(copied > 0 && total >= copied && ranges == 4 && done_r == 4 && started > 0);
    CHECK_EQ(rs_num(b, "finished_ms"), -1);
    free(b);
    wait_rows(2, 1000);

    /* on to cutover (the sink restarts with the new options), then done */
    const char *grow2[] = {RED[0], RED[1], RED[2]}; /* shard 2 is running now: its redacted form is its own */
    put_def(grow2, 3, "\"reshard_pause_before\":\"none\"", 202, NULL);
    for (int pass = 0; pass < 2; pass++) {
        b = wait_phase("done", 0);
        if (rs_num(b, "runs") < vruns)
            fprintf(stderr, "pass %d: verify runs lost (%lld before): %s\n", pass, vruns, b);
        CHECK(rs_num(b, "runs") >= vruns);
        if (rs_num(b, "copied") != copied || rs_num(b, "total") != total || rs_num(b, "ranges") != ranges)
            fprintf(stderr, "pass %d: figures lost (copied %lld total %lld ranges %lld): %s\n", pass, copied, total,
                    ranges, b);
        CHECK_EQ(rs_num(b, "copied"), copied);
        CHECK_EQ(rs_num(b, "total"), total);
        CHECK_EQ(rs_num(b, "ranges"), ranges);
        CHECK_EQ(rs_num(b, "ranges_done"), done_r);
        CHECK_EQ(rs_num(b, "started_ms"), started);
        CHECK(rs_num(b, "finished_ms") >= started);
        free(b);
        CHECK_EQ(srv_stop(&S, SIGTERM), 0);
        srv_start(&S, BIN, DATA, NULL);
    }
    long long on2 = rows(2);
    pg_produce(S.binport, "s", 1000, 200, KEYS, 0); /* the moved keys' rows go to shard 2 */
    for (int i = 0; i < 400 && rows(2) == on2; i++)
        usleep(50 * 1000);
    CHECK(rows(2) > on2);

    /* the state file's older form (the phase only) still loads */
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    char path[4400];
    snprintf(path, sizeof path, "%s/sinks/k/reshard", DATA);
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("{\"version\":1,\"from_shards\":2,\"to_shards\":3,\"phase\":\"done\"}\n", f);
    CHECK(fclose(f) == 0);
    srv_start(&S, BIN, DATA, NULL);
    b = get_sink();
    CHECK(has_phase(b, "done"));
    CHECK_EQ(rs_num(b, "copied"), 0);
    CHECK_EQ(rs_num(b, "total"), -1);
    CHECK_EQ(rs_num(b, "started_ms"), -1);
    free(b);

    return rs_finish(&S, TMP, "test_pg_reshard_ops");
}
