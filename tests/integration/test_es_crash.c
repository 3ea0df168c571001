/*
 * kill -9 under the conditional-append load (tests/integration/es_load.h):
 * writers over HTTP and the binary protocol append expecting versions on
 * 10 aggregates at ack=fsync; the server is killed while they run, and
 * restarted, for SPW_ES_CRASH_CYCLES cycles (default 5). After each
 * restart: every aggregate's history is 1..M exactly once, every version
 * ever acknowledged holds the very event acknowledged (none lost, none
 * given twice), and the version map equals the log's (expecting M − 1 is a
 * conflict naming M, expecting M succeeds with M + 1).
 */
#include "es_load.h"

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    int cycles = getenv("SPW_ES_CRASH_CYCLES") ? atoi(getenv("SPW_ES_CRASH_CYCLES")) : 5;
    CHECK(cycles >= 1);
    char *dir = spw_test_tmpdir("escrash");
    srv S;
    srv_start(&S, argv[1], dir, NULL);
    put_stream(S.port, "es", "{\"versioned\":true,\"key\":\"/id\",\"partitions\":2}");
    static es_load L;
    L.s = &S;
    L.stream = "es";
    L.writers = 8;
    L.ops_per_writer = 0;
    L.acks = calloc(ES_MAX_ACKS, sizeof *L.acks);
    pthread_mutex_init(&L.mu, NULL);
    long total_unknown = 0;
    for (int cycle = 1; cycle <= cycles; cycle++) {
        L.cycle = cycle;
        atomic_store(&L.stop, 0);
        atomic_store(&L.nops, 0);
        es_writer ws[8];
        es_run_start(&L, ws);
        /* Let some appends through (bounded wait), then kill under load. */
        for (int i = 0; i < 6000 && atomic_load(&L.nops) < 200 + 37 * cycle; i++)
            usleep(5000);
        CHECK_EQ(srv_stop(&S, SIGKILL), 128 + SIGKILL);
        atomic_store(&L.stop, 1);
        es_run_join(&L, ws);
        total_unknown += atomic_load(&L.nunknown);
        srv_start(&S, argv[1], dir, NULL);
        uint64_t m[ES_AGGS];
        es_check_log(&L, 2, 0, m);
        for (int a = 0; a < ES_AGGS; a++)
            CHECK(atomic_load(&L.acked_max[a]) <= m[a]);
        es_check_map(&S, "es", m, cycle);
        for (int a = 0; a < ES_AGGS; a++) /* the probe's own append is acknowledged too */
            atomic_store(&L.acked_max[a], m[a]);
    }
    fprintf(stderr, "test_es_crash: %d cycles, %d acknowledged, %ld conflicts, %ld unknown\n", cycles, L.nacks,
            (long)L.n409, total_unknown);
    CHECK(L.nacks > 0);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    free(L.acks);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_crash: ok");
    return 0;
}
