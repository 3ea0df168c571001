/*
 * spillway_stream_rejected_total{stream,reason} (docs/operations.md
 * "Metrics"): refusals of produce requests that name an existing stream
 * count on that stream, beside spillway_rejected_total{reason}; a bad
 * stream name counts in the total only. Every stream has its five series
 * (bounded: streams × reasons), and a token sees only its streams' series.
 */
#include "server.h"

static long long metric(int port, const char *name, const char *token)
{
    char extra[128] = "";
    if (token)
        snprintf(extra, sizeof extra, "Authorization: Bearer %s\r\n", token);
    resp r = http_ex(port, "GET", "/metrics", NULL, extra, NULL, 0);
    CHECK_EQ(r.status, 200);
    long long v = metric_in(r.body, name);
    free(r.body);
    return v;
}

static void post(int port, const char *path, const char *ctype, const char *extra, const char *body, int want)
{
    resp r = http_ex(port, "POST", path, ctype, extra, body, strlen(body));
    if (r.status != want)
        fprintf(stderr, "POST %s -> %d %s\n", path, r.status, r.body);
    CHECK_EQ(r.status, want);
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("streamrej");
    char data[4200], tokens[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\": [\n"
          " {\"token\": \"admin-token-0001\", \"tenant\": \"ops\", \"streams\": [\"*\"],\n"
          "  \"permissions\": [\"produce\", \"consume\", \"admin\"]},\n"
          " {\"token\": \"only-a-token-001\", \"tenant\": \"t1\", \"streams\": [\"a\"],\n"
          "  \"permissions\": [\"produce\", \"consume\"]}\n"
          "]}\n",
          f);
    fclose(f);
    srv s;
    const char *extra[] = {"--tokens-file", tokens, "--rate-limit", "5", NULL};
    srv_start(&s, argv[1], data, extra);
    const char *adm = "Authorization: Bearer admin-token-0001\r\n";
    const char *js = "application/json";
    resp r = http_ex(s.port, "PUT", "/v1/streams/a", js, adm, "{}", 2);
    CHECK_EQ(r.status, 201);
    free(r.body);
    r = http_ex(s.port, "PUT", "/v1/streams/b", js, adm, "{}", 2);
    CHECK_EQ(r.status, 201);
    free(r.body);

    post(s.port, "/v1/streams/a/events", js, adm, "{not json", 400);
    post(s.port, "/v1/streams/a/events", js, adm, "[1]", 400);
    post(s.port, "/v1/streams/b/events?ack=sometimes", js, adm, "{\"x\":1}", 400);
    post(s.port, "/v1/streams/.bad/events", js, adm, "{\"x\":1}", 400);
    /* a request of 6 events never passes a limit of 5 (over_burst) */
    post(s.port, "/v1/streams/b/events", "application/x-ndjson", adm, "{}\n{}\n{}\n{}\n{}\n{}\n", 413);

    const char *tok = "admin-token-0001";
    CHECK_EQ(metric(s.port, "spillway_stream_rejected_total{stream=\"a\",reason=\"invalid\"}", tok), 2);
    CHECK_EQ(metric(s.port, "spillway_stream_rejected_total{stream=\"b\",reason=\"invalid\"}", tok), 1);
    CHECK_EQ(metric(s.port, "spillway_stream_rejected_total{stream=\"b\",reason=\"rate_limit\"}", tok), 1);
    CHECK_EQ(metric(s.port, "spillway_stream_rejected_total{stream=\"a\",reason=\"rate_limit\"}", tok), 0);
    CHECK_EQ(metric(s.port, "spillway_stream_rejected_total{stream=\"a\",reason=\"disk\"}", tok), 0);
    CHECK_EQ(metric(s.port, "spillway_rejected_total{reason=\"invalid\"}", tok), 4); /* .bad in the total only */
    CHECK_EQ(metric(s.port, "spillway_rejected_total{reason=\"rate_limit\"}", tok), 1);
    /* a token sees its streams' series only */
    tok = "only-a-token-001";
    CHECK_EQ(metric(s.port, "spillway_stream_rejected_total{stream=\"a\",reason=\"invalid\"}", tok), 2);
    CHECK_EQ(metric(s.port, "spillway_stream_rejected_total{stream=\"b\",reason=\"invalid\"}", tok), -1);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_stream_rejects: ok");
    return 0;
}
