/*
 * View reads over the binary protocol (VIEW_READ, docs/protocol.md
 * "Views") through the client library (spillway_client_view_get,
 * _series, _top): the same JSON answers as HTTP's GET /v1/views/...
 * routes, since both front ends call the same view service; read your
 * writes with the offsets HTTP produces were acknowledged with; and the
 * refusals: no such view and an unknown key (SPILLWAY_ERR_NOT_FOUND), a
 * window the view lacks (SPILLWAY_ERR_BAD_REQUEST), offsets the view
 * never reaches (SPILLWAY_ERR_REQUEST_TIMEOUT, view_lag, after wait_ms),
 * bad arguments (SPILLWAY_ERR_INVALID, nothing sent); the connection
 * stays usable after each.
 */
#include "server.h"
#include "spillway.h"

#define T0 1700000000000LL

static srv S;

/* HTTP GET path's body, trailing whitespace cut (200 expected). */
static char *http_body(const char *path)
{
    resp r = http_json(S.port, "GET", path, NULL);
    if (r.status != 200)
        fprintf(stderr, "GET %s -> %d %s\n", path, r.status, r.body);
    CHECK_EQ(r.status, 200);
    size_t n = strlen(r.body);
    while (n && (r.body[n - 1] == '\n' || r.body[n - 1] == '\r' || r.body[n - 1] == ' '))
        r.body[--n] = 0;
    return r.body;
}

static void same(const char *path, char *json, size_t len)
{
    char *h = http_body(path);
    if (strcmp(h, json) != 0)
        fprintf(stderr, "%s\n  http: %s\n  bin:  %s\n", path, h, json);
    CHECK(strcmp(h, json) == 0);
    CHECK_EQ(len, strlen(json));
    free(h);
    spillway_view_json_free(json);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("viewbin");
    srv_start(&S, argv[1], dir, NULL);
    CHECK(S.binport > 0);
    put_stream(S.port, "clicks", "{\"partitions\":2,\"key\":\"/page\",\"timestamp\":\"/ts\"}");
    CHECK_EQ(req_status(S.port, "PUT", "/v1/views/agg",
                        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\",\"1m\"]}"),
             201);
    CHECK_EQ(req_status(S.port, "PUT", "/v1/views/last", "{\"stream\":\"clicks\",\"kind\":\"latest\"}"), 201);

    spillway_client *c;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", S.binport);
    CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);

    /* produce over HTTP, read over the binary protocol at the 202's offsets */
    static const char *const pages[] = {"home", "about", "shop", "cart"};
    char *json;
    size_t len;
    for (int i = 0; i < 40; i++) {
        char ev[160];
        snprintf(ev, sizeof ev, "{\"page\":\"%s\",\"n\":%d,\"ts\":%lld}", pages[i % 4], i + 1, T0 + i * 1000LL);
        resp r = http_json(S.port, "POST", "/v1/streams/clicks/events", ev);
        CHECK_EQ(r.status, 202);
        const char *q = strstr(r.body, "\"partition\":");
        CHECK(q != NULL);
        unsigned part;
        unsigned long long first, count;
        CHECK(sscanf(q, "\"partition\":%u,\"first_offset\":%llu,\"count\":%llu", &part, &first, &count) == 3);
        free(r.body);
        spillway_view_min m = {part, first + count - 1};
        CHECK_EQ(spillway_client_view_get(c, "last", pages[i % 4], (uint32_t)strlen(pages[i % 4]), &m, 1, 10000,
                                          &json, &len),
                 0);
        char want[64];
        snprintf(want, sizeof want, "\"n\":%d", i + 1); /* this very write */
        if (!strstr(json, want))
            fprintf(stderr, "read %d: %s (want %s)\n", i, json, want);
        CHECK(strstr(json, want) != NULL);
        spillway_view_json_free(json);
    }
    /* everything applied: the same answers as HTTP */
    spillway_view_min all[2];
    for (uint32_t p = 0; p < 2; p++) {
        uint64_t end = part_field(S.port, "/v1/streams/clicks", (int)p, "end_offset");
        all[p] = (spillway_view_min){p, end ? end - 1 : 0};
    }
    uint32_t nall = 0;
    for (uint32_t p = 0; p < 2; p++)
        if (part_field(S.port, "/v1/streams/clicks", (int)p, "end_offset"))
            all[nall++] = all[p];
    CHECK(nall > 0);
    CHECK_EQ(spillway_client_view_get(c, "agg", "shop", 4, all, nall, 10000, &json, &len), 0);
    CHECK(strstr(json, "\"count\":10") != NULL);
    same("/v1/views/agg/keys/shop", json, len);
    CHECK_EQ(spillway_client_view_get(c, "last", "cart", 4, NULL, 0, 0, &json, &len), 0);
    same("/v1/views/last/keys/cart", json, len);
    CHECK_EQ(spillway_client_view_series(c, "agg", "home", 4, "10s", T0, T0 + 39000, NULL, 0, 0, &json, &len), 0);
    same("/v1/views/agg/keys/home/series?window=10s&from=1700000000000&to=1700000039000", json, len);
    CHECK_EQ(spillway_client_view_series(c, "agg", "home", 4, NULL, SPILLWAY_VIEW_TIME_DEFAULT,
                                         SPILLWAY_VIEW_TIME_DEFAULT, NULL, 0, 0, &json, &len),
             0);
    same("/v1/views/agg/keys/home/series", json, len);
    CHECK_EQ(spillway_client_view_top(c, "agg", "1m", T0, "sum", 3, NULL, 0, 0, &json, &len), 0);
    CHECK(strstr(json, "\"cart\"") != NULL); /* the largest sum: 4 + 8 + ... + 40 */
    same("/v1/views/agg/top?window=1m&at=1700000000000&by=sum&n=3", json, len);
    CHECK_EQ(spillway_client_view_top(c, "agg", NULL, SPILLWAY_VIEW_TIME_DEFAULT, NULL, 0, NULL, 0, 0, &json, &len),
             0);
    same("/v1/views/agg/top", json, len);

    /* refusals, each leaving the connection usable */
    json = NULL;
    CHECK_EQ(spillway_client_view_get(c, "nosuch", "home", 4, NULL, 0, 0, &json, &len), SPILLWAY_ERR_NOT_FOUND);
    CHECK(strstr(spillway_client_last_error(c), "no view") != NULL);
    CHECK_EQ(spillway_client_view_get(c, "agg", "nobody", 6, NULL, 0, 0, &json, &len), SPILLWAY_ERR_NOT_FOUND);
    CHECK_EQ(spillway_client_view_series(c, "agg", "home", 4, "7s", SPILLWAY_VIEW_TIME_DEFAULT,
                                         SPILLWAY_VIEW_TIME_DEFAULT, NULL, 0, 0, &json, &len),
             SPILLWAY_ERR_BAD_REQUEST);
    CHECK_EQ(spillway_client_view_top(c, "agg", "10s", SPILLWAY_VIEW_TIME_DEFAULT, "median", 3, NULL, 0, 0, &json,
                                      &len),
             SPILLWAY_ERR_BAD_REQUEST);
    spillway_view_min never = {0, 999999};
    CHECK_EQ(spillway_client_view_get(c, "agg", "home", 4, &never, 1, 100, &json, &len),
             SPILLWAY_ERR_REQUEST_TIMEOUT);
    CHECK(strstr(spillway_client_last_error(c), "min_offsets") != NULL);
    spillway_view_min badpart = {1u << 20, 0};
    CHECK_EQ(spillway_client_view_get(c, "agg", "home", 4, &badpart, 1, 100, &json, &len), SPILLWAY_ERR_BAD_REQUEST);
    CHECK_EQ(spillway_client_view_get(c, "agg", "home", 0, NULL, 0, 0, &json, &len), SPILLWAY_ERR_INVALID);
    CHECK_EQ(spillway_client_view_get(c, "", "home", 4, NULL, 0, 0, &json, &len), SPILLWAY_ERR_INVALID);
    CHECK_EQ(spillway_client_view_get(c, "agg", "home", 4, NULL, 1, 0, &json, &len), SPILLWAY_ERR_INVALID);
    CHECK_EQ(spillway_client_view_get(c, "agg", "home", 4, NULL, 0, 60001, &json, &len), SPILLWAY_ERR_INVALID);
    CHECK_EQ(spillway_client_view_top(c, "agg", NULL, 0, NULL, 1001, NULL, 0, 0, &json, &len), SPILLWAY_ERR_INVALID);
    CHECK(json == NULL);
    CHECK_EQ(spillway_client_view_get(c, "agg", "home", 4, all, nall, 1000, &json, &len), 0);
    same("/v1/views/agg/keys/home", json, len);
    spillway_client_close(c);

    /* After a restart the stores' entries are in their files only (a stop
     * flushes every store; the block cache starts empty): a read that
     * needs a file goes from the loop to an I/O worker and gives the same
     * answer, counted in spillway_view_reads_uncached_total; the same
     * read again finds its block cached and is served on the loop. Each
     * kind of read, each front end, on a fresh server. 3,000 more keys
     * first, so the stores hold many blocks: the one a start reads (the
     * view's meta entry) does not hold the keys read here. */
    {
        size_t cap = 3000 * 80, n = 0;
        char *nd = malloc(cap);
        CHECK(nd != NULL);
        for (int i = 0; i < 3000; i++)
            n += (size_t)snprintf(nd + n, cap - n, "{\"page\":\"p%04d\",\"n\":%d,\"ts\":%lld}\n", i, i % 7 + 1,
                                  T0 + (i % 40) * 1000LL);
        resp r = http(S.port, "POST", "/v1/streams/clicks/events", "application/x-ndjson", nd, n);
        CHECK_EQ(r.status, 202);
        free(r.body);
        free(nd);
        char q[200];
        snprintf(q, sizeof q, "?min_offsets=0:%llu,1:%llu&wait_ms=20000",
                 (unsigned long long)part_field(S.port, "/v1/streams/clicks", 0, "end_offset") - 1,
                 (unsigned long long)part_field(S.port, "/v1/streams/clicks", 1, "end_offset") - 1);
        char path[300];
        snprintf(path, sizeof path, "/v1/views/agg/keys/p2999%s", q);
        free(http_body(path));
        snprintf(path, sizeof path, "/v1/views/last/keys/p2999%s", q);
        free(http_body(path));
    }
    static const char *const paths[] = {"/v1/views/agg/keys/p1500",
                                        "/v1/views/agg/top?window=1m&at=1700000000000&by=sum&n=3",
                                        "/v1/views/agg/keys/p1700/series?window=10s&from=1700000000000&to=1700000039000",
                                        "/v1/views/last/keys/p2000", "/v1/views/last/keys/p2500"};
    char *before[5];
    for (int i = 0; i < 5; i++)
        before[i] = http_body(paths[i]);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(srv_stop(&S, SIGTERM), 0);
        srv_start(&S, argv[1], dir, NULL);
        CHECK_EQ(srv_metric(S.port, "spillway_view_reads_uncached_total"), 0);
        for (int round = 0; round < 2; round++) {
            char *after;
            if (i < 4) {
                after = http_body(paths[i]);
            } else { /* the binary protocol's VIEW_READ */
                if (round == 0) {
                    snprintf(addr, sizeof addr, "127.0.0.1:%d", S.binport);
                    CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
                }
                CHECK_EQ(spillway_client_view_get(c, "last", "p2500", 5, NULL, 0, 0, &json, &len), 0);
                after = strdup(json);
                spillway_view_json_free(json);
                if (round == 1)
                    spillway_client_close(c);
            }
            if (strcmp(after, before[i]) != 0)
                fprintf(stderr, "%s after a restart:\n  %s\nbefore:\n  %s\n", paths[i], after, before[i]);
            CHECK(strcmp(after, before[i]) == 0);
            free(after);
            /* the first read went to a worker, the second did not */
            long long got = srv_metric(S.port, "spillway_view_reads_uncached_total");
            if (got != 1)
                fprintf(stderr, "%s, read %d after a restart: %lld reads uncached\n", paths[i], round + 1, got);
            CHECK_EQ(got, 1);
        }
    }
    for (int i = 0; i < 5; i++)
        free(before[i]);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    printf("test_view_bin: ok\n");
    return 0;
}
