/*
 * Conditional appends racing (docs/api.md "Event sourcing"): writers over
 * HTTP and over the binary protocol mixed, each doing read-version →
 * append-with-expected-version on the same 10 aggregates. Every
 * aggregate's history in the log has versions 1..M exactly once, the
 * number of 202s for it is M, every 202 got the version after the one it
 * expected, and every 409 named a current version other than the one
 * expected and not below any version acknowledged before the request
 * left. Then a restart: the version map rebuilt from the log equals it.
 */
#include "es_load.h"

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("esrace");
    srv S;
    srv_start(&S, argv[1], dir, NULL);
    put_stream(S.port, "es", "{\"versioned\":true,\"key\":\"/id\",\"partitions\":3}");
    static es_load L;
    L.s = &S;
    L.stream = "es";
    L.writers = 16;
    L.ops_per_writer = 120;
    L.cycle = 1;
    L.acks = calloc(ES_MAX_ACKS, sizeof *L.acks);
    pthread_mutex_init(&L.mu, NULL);
    es_writer ws[16];
    es_run_start(&L, ws);
    es_run_join(&L, ws);
    fprintf(stderr, "test_es_race: %d accepted, %ld conflicts, %ld ops\n", L.nacks, (long)L.n409, (long)L.nops);
    CHECK_EQ(L.nunknown, 0);
    CHECK_EQ(L.nacks + L.n409, L.nops);
    CHECK(L.n409 > 0); /* the writers did race */
    uint64_t m[ES_AGGS];
    es_check_log(&L, 3, 1, m);
    /* A 409's current was at most the final version. */
    for (int a = 0; a < ES_AGGS; a++)
        CHECK_EQ(atomic_load(&L.acked_max[a]), m[a]);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    srv_start(&S, argv[1], dir, NULL);
    es_check_map(&S, "es", m, 1);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    free(L.acks);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_race: ok");
    return 0;
}
