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
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    printf("test_view_bin: ok\n");
    return 0;
}
