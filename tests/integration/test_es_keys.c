/*
 * The key routes of versioned streams (docs/api.md "Event sourcing"):
 * GET …/keys/K (current version, partition, newest offset); GET
 * …/keys/K/events?from_version=V&limit=N — one aggregate's events in
 * version order equal the filter of its partition by key (history test,
 * 1,000 events of one key among 10,000 of others), pages with
 * Spillway-Next-Version, the same after a restart (served by the version
 * store) and before the indexer caught up (the tail); snapshots (PUT/GET,
 * 409 snapshot_ahead, 400 bad_snapshot, 404 no_snapshot); percent-encoded
 * keys; 404 no_such_key and 400 not_versioned.
 */
#include "server.h"

static srv S;

static resp get(const char *path) { return http_json(S.port, "GET", path, NULL); }

/* Lines of body holding "\"key\":\"acct\"", in order: their "version" and "offset". */
static int filter(const char *body, const char *keyq, uint64_t *vers, uint64_t *offs, int max)
{
    int n = 0;
    for (const char *l = body; l && *l && n < max;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        char line[4096];
        CHECK(len < sizeof line);
        memcpy(line, l, len);
        line[len] = 0;
        if (strstr(line, keyq)) {
            const char *v = strstr(line, "\"version\":"), *o = strstr(line, "\"offset\":");
            CHECK(v && o);
            vers[n] = strtoull(v + 10, NULL, 10);
            offs[n] = strtoull(o + 9, NULL, 10);
            n++;
        }
        l = nl ? nl + 1 : NULL;
    }
    return n;
}

static void check_history(int part)
{
    static uint64_t hv[2000], ho[2000], pv[2000], po[2000];
    /* The aggregate's history through the index... */
    resp r = get("/v1/streams/h/keys/acct/events?from_version=1&limit=10000");
    CHECK_EQ(r.status, 200);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Version"), 1001);
    int nh = filter(r.body, "\"key\":\"acct\"", hv, ho, 2000);
    free(r.body);
    CHECK_EQ(nh, 1000);
    /* ... equals the partition read whole and filtered by key. */
    int np = 0;
    uint64_t off = 0;
    for (int guard = 0; guard < 100; guard++) {
        char path[160];
        snprintf(path, sizeof path, "/v1/streams/h/events?partition=%d&offset=%llu&limit=10000", part,
                 (unsigned long long)off);
        r = get(path);
        CHECK_EQ(r.status, 200);
        uint64_t next = header_u64(&r, "Spillway-Next-Offset");
        np += filter(r.body, "\"key\":\"acct\"", pv + np, po + np, 2000 - np);
        free(r.body);
        if (next == off)
            break;
        off = next;
    }
    CHECK_EQ(np, 1000);
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(hv[i], (uint64_t)i + 1);
        CHECK_EQ(pv[i], hv[i]);
        CHECK_EQ(po[i], ho[i]);
    }
    /* A page. */
    r = get("/v1/streams/h/keys/acct/events?from_version=990&limit=5");
    CHECK_EQ(r.status, 200);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Version"), 995);
    nh = filter(r.body, "\"key\":\"acct\"", hv, ho, 2000);
    CHECK_EQ(nh, 5);
    CHECK_EQ(hv[0], 990);
    CHECK_EQ(hv[4], 994);
    free(r.body);
    /* Past the end: empty. */
    r = get("/v1/streams/h/keys/acct/events?from_version=1001");
    CHECK_EQ(r.status, 200);
    CHECK_EQ(r.body_len, 0);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Version"), 1001);
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("eskeys");
    srv_start(&S, argv[1], dir, NULL);
    put_stream(S.port, "h", "{\"versioned\":true,\"key\":\"/id\",\"partitions\":2}");
    put_stream(S.port, "plain", "{\"key\":\"/id\"}");
    /* 1,000 events of acct among 10,000 of 500 other keys, 110 per request. */
    static char body[1 << 16];
    int noise = 0;
    for (int req = 0; req < 100; req++) {
        size_t n = 0;
        body[n++] = '[';
        for (int j = 0; j < 110; j++) {
            if (j % 11 == 0)
                n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"id\":\"acct\",\"r\":%d}", j ? "," : "", req);
            else {
                n += (size_t)snprintf(body + n, sizeof body - n, "%s{\"id\":\"o%d\",\"pad\":\"%0100d\"}", j ? "," : "",
                                      noise % 500, noise);
                noise++;
            }
        }
        body[n++] = ']';
        body[n] = 0;
        resp r = http_json(S.port, "POST", "/v1/streams/h/events?ack=fsync", body);
        CHECK_EQ(r.status, 202);
        free(r.body);
    }
    resp r = get("/v1/streams/h/keys/acct");
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "{\"key\":\"acct\",\"version\":1000,\"partition\":") == r.body);
    int part = atoi(strstr(r.body, "\"partition\":") + 12);
    free(r.body);
    check_history(part);

    /* Keys in the path are percent-decoded. */
    r = http_json(S.port, "POST", "/v1/streams/h/events", "{\"id\":\"a/b c\"}");
    CHECK_EQ(r.status, 202);
    free(r.body);
    r = get("/v1/streams/h/keys/a%2Fb%20c");
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"key\":\"a/b c\",\"version\":1") != NULL);
    free(r.body);
    r = get("/v1/streams/h/keys/a%2Fb%20c/events");
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"version\":1,\"key\":\"a/b c\"") != NULL);
    free(r.body);

    /* Unknown keys, bad keys, streams that are not versioned. */
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/h/keys/nobody", NULL), 404);
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/h/keys/nobody/events", NULL), 404);
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/h/keys/%zz", NULL), 400);
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/h/keys/%0A", NULL), 400);
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/h/keys/acct/events?from_version=-1", NULL), 400);
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/h/keys/acct/other", NULL), 404);
    CHECK_EQ(req_status(S.port, "POST", "/v1/streams/h/keys/acct", "{}"), 405);
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/plain/keys/a", NULL), 400);

    /* Snapshots. */
    CHECK_EQ(req_status(S.port, "GET", "/v1/streams/h/keys/acct/snapshot", NULL), 404);
    r = http_json(S.port, "PUT", "/v1/streams/h/keys/acct/snapshot", "{\"version\":1001,\"state\":{\"b\":1}}");
    CHECK_EQ(r.status, 409);
    CHECK(strstr(r.body, "snapshot_ahead") != NULL);
    free(r.body);
    CHECK_EQ(req_status(S.port, "PUT", "/v1/streams/h/keys/nobody/snapshot", "{\"version\":1,\"state\":{}}"), 409);
    const char *bad[] = {"{\"version\":0,\"state\":{}}", "{\"version\":1}", "{\"version\":1,\"state\":3}",
                         "{\"version\":\"1\",\"state\":{}}", "[1]", "{\"version\":1,\"state\":{}} x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ(req_status(S.port, "PUT", "/v1/streams/h/keys/acct/snapshot", bad[i]), 400);
    CHECK_EQ(req_status(S.port, "PUT", "/v1/streams/h/keys/acct/snapshot", "{\"version\":500,\"state\":{\"b\":5}}"),
             204);
    CHECK_EQ(req_status(S.port, "PUT", "/v1/streams/h/keys/acct/snapshot",
                        "{\"state\":{\"b\": 10},\"version\":1000}"), 204);
    r = get("/v1/streams/h/keys/acct/snapshot");
    CHECK_EQ(r.status, 200);
    CHECK(strcmp(r.body, "{\"key\":\"acct\",\"version\":1000,\"state\":{\"b\": 10}}\n") == 0);
    free(r.body);

    /* After a restart: the same, from the store. */
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    srv_start(&S, argv[1], dir, NULL);
    check_history(part);
    r = get("/v1/streams/h/keys/acct/snapshot");
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"version\":1000") != NULL);
    free(r.body);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_keys: ok");
    return 0;
}
