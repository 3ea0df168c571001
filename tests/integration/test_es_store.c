/*
 * The version store (docs/formats/es-index.md): with a map of 16 cached
 * keys and 300 aggregates, conditional appends stay exact (keys evicted
 * from the map are answered by the store); a restart after a clean stop
 * indexes no record of the log again (the store's indexed offset is
 * checkpointed with its entries: "0 record(s) of the log's tail"); after
 * it, reading every key keeps at most es-cache-keys of them in memory
 * (all indexed, so evictable: spillway_es_cached_keys) and sends each to
 * the store (spillway_es_store_reads_total); after kill -9 only the tail
 * is indexed and every version goes on.
 */
#include "server.h"

#define KEYS 300

static srv S;

static int post(const char *expect, int k, uint64_t *first_or_current)
{
    char body[64], extra[96];
    snprintf(body, sizeof body, "{\"id\":\"k%d\"}", k);
    snprintf(extra, sizeof extra, "Spillway-Expected-Version: %s\r\n", expect);
    resp r = http_ex(S.port, "POST", "/v1/streams/st/events", "application/json", extra, body, strlen(body));
    const char *f = strstr(r.body, r.status == 202 ? "\"first\":" : "\"current\":");
    *first_or_current = f ? strtoull(strchr(f, ':') + 1, NULL, 10) : UINT64_MAX;
    free(r.body);
    return r.status;
}

/* Every key: expecting v - 1 is a conflict naming v, expecting v gives v + 1. */
static void round_of(uint64_t v)
{
    char e[24];
    for (int k = 0; k < KEYS; k++) {
        uint64_t got;
        if (v > 0) {
            snprintf(e, sizeof e, "%llu", (unsigned long long)(v - 1));
            CHECK_EQ(post(e, k, &got), 409);
            CHECK_EQ(got, v);
        }
        snprintf(e, sizeof e, "%llu", (unsigned long long)v);
        CHECK_EQ(post(e, k, &got), 202);
        CHECK_EQ(got, v + 1);
    }
}

/* The tail count of the last "version store open" line of the log. */
static long last_tail(const char *logf, int *lines)
{
    FILE *f = fopen(logf, "r");
    CHECK(f != NULL);
    char line[1024];
    long tail = -1;
    *lines = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "stream st: version store open; ");
        if (p) {
            tail = atol(p + strlen("stream st: version store open; "));
            ++*lines;
        }
    }
    fclose(f);
    return tail;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("esstore");
    char logf[4200];
    snprintf(logf, sizeof logf, "%s/server.log", dir);
    const char *extra[] = {"--es-cache-keys", "16", NULL};
    srv_start_log(&S, argv[1], dir, extra, logf);
    put_stream(S.port, "st", "{\"versioned\":true,\"key\":\"/id\",\"partitions\":1}");
    round_of(0);
    round_of(1);
    round_of(2);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);

    srv_start_log(&S, argv[1], dir, extra, logf);
    int lines;
    long tail = last_tail(logf, &lines);
    CHECK_EQ(lines, 2);
    CHECK_EQ(tail, 0); /* 900 records in the log, none read again */
    for (int k = 0; k < KEYS; k++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/streams/st/keys/k%d", k);
        resp r = http_json(S.port, "GET", path, NULL);
        CHECK_EQ(r.status, 200);
        CHECK(strstr(r.body, "\"version\":3,") != NULL);
        free(r.body);
    }
    resp m = http_json(S.port, "GET", "/metrics", NULL);
    CHECK_EQ(m.status, 200);
    const char *ck = strstr(m.body, "spillway_es_cached_keys{stream=\"st\"} ");
    const char *sr = strstr(m.body, "spillway_es_store_reads_total{stream=\"st\"} ");
    CHECK(ck && sr);
    long cached = atol(strchr(ck, '}') + 2), reads = atol(strchr(sr, '}') + 2);
    CHECK(cached <= 16);
    CHECK(reads >= KEYS);
    free(m.body);
    round_of(3);
    CHECK_EQ(srv_stop(&S, SIGKILL), 128 + SIGKILL);

    srv_start_log(&S, argv[1], dir, extra, logf);
    tail = last_tail(logf, &lines);
    CHECK_EQ(lines, 3);
    CHECK(tail >= 0 && tail <= KEYS); /* at most what the last round wrote */
    round_of(4);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_store: ok");
    return 0;
}
