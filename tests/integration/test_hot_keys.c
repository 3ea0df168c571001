/*
 * Hot keys (docs/api.md "Hot keys", docs/operations.md "Hot keys"):
 *   - bad "hot_keys" shapes are refused (400) and create nothing;
 *   - listed keys: one key at 90% of the traffic of a 4-partition stream
 *     split 4 ways: every partition's record count is within 15% of the
 *     mean, and a sum view over that key equals the total sent;
 *   - automatic: a key whose events in one window pass the threshold is
 *     split (the decision is read from GET /v1/streams/{s}, never from a
 *     clock), its later events spread evenly over 4 partitions; a key under
 *     the threshold is not split;
 *   - the hottest keys are named by /metrics (at most "top" per stream) and
 *     by the stream's describe;
 *   - after kill -9 and a restart the automatic split is still in effect
 *     (recorded in DATA/streams/NAME/hot_keys), and the view's answer is
 *     unchanged.
 */
#include "binframe.h"

#define PARTS 4

/* POSTs a JSON array of n events of key k (value {"k":..,"n":v}) to
 * stream, with an Idempotency-Key when idem is not NULL; returns the answer. */
static char *send_idem(int port, const char *stream, const char *k, int n, int v, const char *idem)
{
    size_t cap = (size_t)n * 64 + 16, at = 0;
    char *b = malloc(cap);
    CHECK(b != NULL);
    b[at++] = '[';
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(b + at, cap - at, "%s{\"k\":\"%s\",\"n\":%d}", i ? "," : "", k, v);
    b[at++] = ']';
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    char h[128] = "";
    if (idem)
        snprintf(h, sizeof h, "Idempotency-Key: %s\r\n", idem);
    resp r = http_ex(port, "POST", path, "application/json", h, b, at);
    if (r.status != 202)
        fprintf(stderr, "POST %s: %d %s\n", path, r.status, r.body);
    CHECK_EQ(r.status, 202);
    free(b);
    return r.body;
}

static void send_key(int port, const char *stream, const char *k, int n, int v)
{
    free(send_idem(port, stream, k, n, v, NULL));
}

static void ends(int port, const char *stream, uint64_t *out)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    for (int p = 0; p < PARTS; p++)
        out[p] = part_field(port, path, p, "end_offset");
}

static char *get(int port, const char *path, int want)
{
    resp r = http_json(port, "GET", path, NULL);
    if (r.status != want)
        fprintf(stderr, "GET %s: %d %s\n", path, r.status, r.body);
    CHECK_EQ(r.status, want);
    return r.body;
}

static void refused(int port, const char *body, const char *says)
{
    resp r = http_json(port, "PUT", "/v1/streams/bad", body);
    if (r.status != 400 || !strstr(r.body, says))
        fprintf(stderr, "PUT %s: %d %s\n", body, r.status, r.body);
    CHECK_EQ(r.status, 400);
    CHECK(strstr(r.body, says) != NULL);
    free(r.body);
    free(get(port, "/v1/streams/bad", 404));
}

static void shapes(int port)
{
    refused(port, "{\"hot_keys\":{\"split\":1,\"keys\":[\"a\"]}}", "hot_keys.split");
    refused(port, "{\"partitions\":4,\"hot_keys\":{\"split\":5,\"keys\":[\"a\"]}}", "more than the stream's partitions");
    refused(port, "{\"hot_keys\":{\"keys\":[\"a\"]}}", "split");
    refused(port, "{\"hot_keys\":{\"split\":2}}", "needs \\\"above_per_s\\\"");
    refused(port, "{\"hot_keys\":{\"split\":2,\"keys\":[1]}}", "array of strings");
    refused(port, "{\"hot_keys\":{\"split\":2,\"keys\":[\"a\",\"a\"]}}", "twice");
    refused(port, "{\"hot_keys\":{\"split\":2,\"keys\":[]}}", "at least one key");
    refused(port, "{\"hot_keys\":{\"split\":2,\"above_per_s\":0}}", "above_per_s");
    refused(port, "{\"hot_keys\":{\"split\":2,\"above_per_s\":5,\"colour\":1}}", "unknown field in stream hot_keys");
    refused(port, "{\"hot_keys\":[2]}", "hot_keys");
    refused(port, "{\"versioned\":true,\"key\":\"/k\",\"hot_keys\":{\"split\":2,\"keys\":[\"a\"]}}", "versioned");
}

/* Polls the sum view until it counted want events of key; returns its body. */
static char *view_wait(int port, const char *view, const char *key, long want)
{
    char path[256], needle[64];
    snprintf(path, sizeof path, "/v1/views/%s/keys/%s", view, key);
    snprintf(needle, sizeof needle, "\"count\":%ld,", want);
    for (int i = 0; i < 1000; i++) {
        resp r = http_json(port, "GET", path, NULL);
        if (r.status == 200 && strstr(r.body, needle))
            return r.body;
        free(r.body);
        usleep(10000);
    }
    CHECK(!"the view did not count every event of the key");
    return NULL;
}

static void listed(int port)
{
    put_stream(port, "ex", "{\"partitions\":4,\"key\":\"/k\",\"hot_keys\":{\"split\":4,\"keys\":[\"hot\"]}}");
    CHECK_EQ(req_status(port, "PUT", "/v1/views/exsum", "{\"stream\":\"ex\",\"kind\":\"sum\",\"field\":\"/n\"}"), 201);
    /* 20 requests of 90 events of "hot" (values 1..20) and 10 of other keys */
    long sum = 0;
    for (int r = 1; r <= 20; r++) {
        send_key(port, "ex", "hot", 90, r);
        sum += 90L * r;
        for (int j = 0; j < 10; j++) {
            char k[16];
            snprintf(k, sizeof k, "c%d", r * 10 + j);
            send_key(port, "ex", k, 1, 1);
        }
    }
    uint64_t e[PARTS], total = 0;
    ends(port, "ex", e);
    for (int p = 0; p < PARTS; p++)
        total += e[p];
    CHECK_EQ(total, 2000);
    for (int p = 0; p < PARTS; p++) {
        if (getenv("SPW_TEST_VERBOSE"))
            fprintf(stderr, "partition %d: %" PRIu64 "\n", p, e[p]);
        CHECK(e[p] >= 425 && e[p] <= 575); /* 500 +- 15% */
    }
    char *b = view_wait(port, "exsum", "hot", 1800);
    char want[64];
    snprintf(want, sizeof want, "\"sum\":%ld", sum);
    CHECK(strstr(b, want) != NULL);
    free(b);
    /* an identical definition is 200, a different split 409 */
    CHECK_EQ(req_status(port, "PUT", "/v1/streams/ex",
                        "{\"partitions\":4,\"key\":\"/k\",\"hot_keys\":{\"split\":4,\"keys\":[\"hot\"]}}"),
             200);
    CHECK_EQ(req_status(port, "PUT", "/v1/streams/ex",
                        "{\"partitions\":4,\"key\":\"/k\",\"hot_keys\":{\"split\":2,\"keys\":[\"hot\"]}}"),
             409);
}

/* Is key listed as split in the describe of stream (how: "automatic" or "listed")? */
static int split_listed(int port, const char *stream, const char *key, const char *how)
{
    char path[256], needle[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    snprintf(needle, sizeof needle, "{\"key\":\"%s\",\"split\":4,\"how\":\"%s\",\"partitions\":[", key, how);
    char *b = get(port, path, 200);
    char *st = strstr(b, "\"hot_keys_state\":{\"split\":[");
    CHECK(st != NULL);
    char *top = strstr(st, "\"top\":");
    CHECK(top != NULL);
    *top = 0;
    int found = strstr(st, needle) != NULL;
    free(b);
    return found;
}

/* The one partition that grew by n since before (the key's home), others unchanged; -1 if not so. */
static int grew_one(const uint64_t *before, const uint64_t *after, uint64_t n)
{
    int home = -1;
    for (int p = 0; p < PARTS; p++) {
        if (after[p] == before[p])
            continue;
        if (after[p] != before[p] + n || home >= 0)
            return -1;
        home = p;
    }
    return home;
}

static int automatic(int port)
{
    /* 1 event/s over 10 s: more than 10 events of a key in a window splits it */
    put_stream(port, "au",
               "{\"partitions\":4,\"key\":\"/k\",\"hot_keys\":{\"split\":4,\"above_per_s\":1,\"window_ms\":10000}}");
    CHECK_EQ(req_status(port, "PUT", "/v1/views/ausum", "{\"stream\":\"au\",\"kind\":\"sum\",\"field\":\"/n\"}"), 201);
    uint64_t a[PARTS] = {0}, b[PARTS];
    send_key(port, "au", "cool", 5, 1); /* under the threshold in any window */
    ends(port, "au", b);
    CHECK(grew_one(a, b, 5) >= 0);
    CHECK(!split_listed(port, "au", "cool", "automatic"));
    memcpy(a, b, sizeof a);
    free(send_idem(port, "au", "hot2", 100, 1, "first-hot2")); /* counted in one window: over it */
    ends(port, "au", b);
    int home = grew_one(a, b, 100);
    CHECK(home >= 0); /* decided after this request: it went to the key's partition */
    int ok = 0;
    for (int i = 0; i < 1000 && !ok; i++) {
        ok = split_listed(port, "au", "hot2", "automatic");
        if (!ok)
            usleep(10000);
    }
    CHECK(ok);
    CHECK(!split_listed(port, "au", "cool", "automatic"));
    /* the sub-keys' partitions start at the key's own */
    char *desc = get(port, "/v1/streams/au", 200), want[96];
    snprintf(want, sizeof want, "\"how\":\"automatic\",\"partitions\":[%d,%d,%d,%d]", home, (home + 1) % 4,
             (home + 2) % 4, (home + 3) % 4);
    CHECK(strstr(desc, want) != NULL);
    free(desc);
    /* a retry of the request stored before the split is its duplicate */
    char *d = send_idem(port, "au", "hot2", 100, 1, "first-hot2");
    CHECK(strstr(d, "\"duplicate\":true") != NULL);
    free(d);
    ends(port, "au", a);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* and one made after it, routed split, too */
    d = send_idem(port, "au", "hot2", 8, 0, "after-hot2");
    free(d);
    d = send_idem(port, "au", "hot2", 8, 0, "after-hot2");
    CHECK(strstr(d, "\"duplicate\":true") != NULL);
    free(d);
    ends(port, "au", b);
    for (int p = 0; p < PARTS; p++)
        CHECK_EQ(b[p] - a[p], 2); /* 8 events over 4 sub-keys */
    memcpy(a, b, sizeof a);
    for (int r = 0; r < 4; r++)
        send_key(port, "au", "hot2", 100, 1);
    ends(port, "au", b);
    for (int p = 0; p < PARTS; p++)
        CHECK_EQ(b[p] - a[p], 100); /* 400 events over 4 sub-keys */
    free(view_wait(port, "ausum", "hot2", 508));
    return home;
}

static void hottest(int port)
{
    put_stream(port, "mt", "{\"partitions\":2,\"key\":\"/k\",\"hot_keys\":{\"split\":2,\"keys\":[\"x\"],"
                           "\"window_ms\":200,\"top\":3}}");
    /* a burst of "m1" and single events of 6 other keys, until a complete
     * window of them shows (bounded) */
    int found = 0;
    char *m = NULL;
    for (int i = 0; i < 300 && !found; i++) {
        send_key(port, "mt", "m1", 20, 1);
        for (int j = 0; j < 6; j++) {
            char k[8];
            snprintf(k, sizeof k, "o%d", j);
            send_key(port, "mt", k, 1, 1);
        }
        free(m);
        m = get(port, "/metrics", 200);
        found = strstr(m, "spillway_stream_hot_key_events_per_second{stream=\"mt\",key=\"m1\"} ") != NULL;
        if (!found)
            usleep(20000);
    }
    CHECK(found);
    int lines = 0;
    for (char *p = m; (p = strstr(p, "spillway_stream_hot_key_events_per_second{stream=\"mt\",")); p++)
        lines++;
    CHECK(lines >= 1 && lines <= 3); /* "top": 3 */
    CHECK_EQ(metric_in(m, "spillway_stream_hot_keys_split{stream=\"mt\"}"), 1);
    CHECK_EQ(metric_in(m, "spillway_stream_hot_keys_split{stream=\"ex\"}"), 1);
    free(m);
}

/* The binary protocol's PRODUCE is routed by the same service: 40 records
 * of a listed key without a partition spread 10 a partition; with a named
 * partition they stay there. */
static void binary(const srv *sv)
{
    put_stream(sv->port, "bx", "{\"partitions\":4,\"format\":\"bytes\",\"hot_keys\":{\"split\":4,\"keys\":[\"hot\"]}}");
    int fd = tcp_connect(sv->binport);
    uint64_t a[PARTS], b[PARTS];
    ends(sv->port, "bx", a);
    for (int named = 0; named < 2; named++) {
        spw_buf body = SPW_BUF_INIT;
        size_t ca;
        CHECK_OK(spw_produce_req_begin(&body, "bx", 2, 2, 1, named ? 3 : SPW_PARTITION_ANY, 0, 0, &ca));
        for (int i = 0; i < 40; i++) {
            spw_frame_rec r = {.attrs = SPW_REC_HAS_KEY, .key = (const uint8_t *)"hot", .key_len = 3,
                               .value = (const uint8_t *)"v", .value_len = 1};
            CHECK_OK(spw_produce_rec_put(&body, &r));
        }
        spw_produce_req_set_count(&body, ca, 40);
        send_frame(fd, SPW_OP_PRODUCE, 1 + (uint64_t)named, &body);
        frame f;
        CHECK(read_frame(fd, &f) == 0);
        CHECK_EQ(answer_status(&f, NULL, NULL), 0);
        free(f.body);
        spw_buf_fini(&body);
        ends(sv->port, "bx", b);
        for (int p = 0; p < PARTS; p++)
            CHECK_EQ(b[p] - a[p], named ? (p == 3 ? 40 : 0) : 10);
        memcpy(a, b, sizeof a);
    }
    close(fd);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("hotkeys");
    srv s;
    srv_start(&s, argv[1], dir, NULL);
    shapes(s.port);
    listed(s.port);
    binary(&s);
    int home = automatic(s.port);
    hottest(s.port);
    char *b = get(s.port, "/v1/views/exsum/keys/hot", 200);
    /* kill -9: the automatic split was durable before it took effect */
    CHECK_EQ(srv_stop(&s, SIGKILL), 128 + SIGKILL);
    srv_start(&s, argv[1], dir, NULL);
    char f[4200];
    snprintf(f, sizeof f, "%s/streams/au/hot_keys", dir);
    CHECK(access(f, F_OK) == 0);
    CHECK(split_listed(s.port, "au", "hot2", "automatic"));
    CHECK(split_listed(s.port, "ex", "hot", "listed"));
    /* after kill -9 the view applies the log again from its stored offsets:
     * wait (bounded) until it has counted every event of the key */
    char *b2 = view_wait(s.port, "exsum", "hot", 1800);
    CHECK(strcmp(b, b2) == 0);
    free(b);
    free(b2);
    uint64_t a[PARTS], e[PARTS];
    ends(s.port, "au", a);
    for (int r = 0; r < 2; r++)
        send_key(s.port, "au", "hot2", 100, 1);
    ends(s.port, "au", e);
    for (int p = 0; p < PARTS; p++)
        CHECK_EQ(e[p] - a[p], 50);
    free(view_wait(s.port, "ausum", "hot2", 708));
    (void)home;
    /* the command line's --hot-keys: passed as the member, checked by the server */
    cli_out o = cli_run(argv[1], "stream create cl --server 127.0.0.1:%d --partitions 4 --key /k "
                                 "--hot-keys '{\"split\":2,\"keys\":[\"a\"]}'", s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "hot keys         {\"split\":2,") != NULL);
    free(o.text);
    o = cli_run(argv[1], "stream create cl2 --server 127.0.0.1:%d --hot-keys '{\"split\":9,\"keys\":[\"a\"]}'",
                s.port);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "more than the stream's partitions") != NULL);
    free(o.text);
    /* stream show names the split keys (how, and their partitions) */
    o = cli_run(argv[1], "stream show au --server 127.0.0.1:%d", s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "\nsplit keys       hot2 (4 ways, automatic, partitions ") != NULL);
    CHECK(strstr(o.text, "\nhottest keys     ") != NULL);
    free(o.text);
    o = cli_run(argv[1], "stream show ex --server 127.0.0.1:%d", s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "\nsplit keys       hot (4 ways, listed, partitions ") != NULL);
    free(o.text);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    printf("test_hot_keys: ok\n");
    return 0;
}
