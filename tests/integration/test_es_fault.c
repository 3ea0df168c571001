/*
 * A versioned stream whose append fails on the disk (the test build's
 * fault hook: a failed segment write), docs/api.md "Event sourcing": the
 * failed request is not acknowledged, its record is not kept, and once the
 * partition has recovered the versions go on from what the log holds — the
 * key's next append gets the version after the last one kept (no gap from
 * the lost record), GET …/keys/K names it, and the key's history is 1..M.
 */
#include "server.h"

static srv S;

static resp post_expect(const char *expect)
{
    char extra[96];
    snprintf(extra, sizeof extra, "Spillway-Expected-Version: %s\r\n", expect);
    const char *body = "{\"id\":\"a\"}";
    return http_ex(S.port, "POST", "/v1/streams/f/events", "application/json", extra, body, strlen(body));
}

static void faults(const char *q)
{
    char path[256];
    snprintf(path, sizeof path, "/debug/faults%s%s", q ? "?" : "", q ? q : "");
    resp r = http(S.port, q ? "POST" : "DELETE", path, NULL, "", 0);
    if (r.status != 200)
        fprintf(stderr, "%s -> %d %s\n", path, r.status, r.body);
    CHECK_EQ(r.status, 200);
    free(r.body);
}

/* The key's versions in the partition, in log order: must be 1..n; returns n. */
static int history_len(void)
{
    resp r = http_json(S.port, "GET", "/v1/streams/f/events?partition=0&offset=0&limit=10000", NULL);
    CHECK_EQ(r.status, 200);
    int n = 0;
    for (const char *p = r.body; (p = strstr(p, "\"version\":")); p++) {
        CHECK_EQ(strtoull(p + 10, NULL, 10), (uint64_t)n + 1);
        n++;
    }
    free(r.body);
    return n;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    char *dir = spw_test_tmpdir("esfault");
    srv_start(&S, argv[2], dir, NULL); /* spillway_test: the fault hook */
    put_stream(S.port, "f", "{\"versioned\":true,\"key\":\"/id\",\"partitions\":1}");
    const char *exp[] = {"none", "1", "2"};
    for (int i = 0; i < 3; i++) {
        resp r = post_expect(exp[i]);
        CHECK_EQ(r.status, 202);
        free(r.body);
    }
    faults("write_err=EIO&write_count=1&files=segments");
    resp r = post_expect("3");
    CHECK(r.status == 500 || r.status == 507);
    free(r.body);
    faults(NULL);
    /* Until the partition has recovered (bounded): then 3 is the current version. */
    int done = 0;
    for (int i = 0; i < 1500 && !done; i++) {
        r = post_expect("3");
        if (r.status == 202) {
            CHECK(strstr(r.body, "\"first\":4,") != NULL);
            done = 1;
        } else if (r.status == 409) {
            fprintf(stderr, "after recovery: %s\n", r.body);
            CHECK(!"a conflict: the map kept a version of a record the log lost");
        } else {
            CHECK(r.status == 500 || r.status == 507 || r.status == 503);
            usleep(20000);
        }
        free(r.body);
    }
    CHECK(done);
    CHECK_EQ(history_len(), 4);
    r = http_json(S.port, "GET", "/v1/streams/f/keys/a", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"version\":4,") != NULL);
    free(r.body);
    r = http_json(S.port, "GET", "/v1/streams/f/keys/a/events", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"version\":4,") != NULL);
    free(r.body);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_fault: ok");
    return 0;
}
