/*
 * Views over HTTP (docs/api.md "Views"):
 *   - definitions: PUT 201 / the same again (other spacing, field order,
 *     an equal duration) 200 / a different one 409; bad definitions 400
 *     naming the field; no stream 404; GET one and the list; DELETE 204,
 *     then 404; a view and its store survive a restart;
 *   - read your writes: a produce, then a read with the 202's offsets as
 *     min_offsets sees the write, every time (without waiting the reads
 *     come too early: the view applies in its own cycle); offsets the
 *     view never reaches answer 504 view_lag after wait_ms; the view's
 *     apply thread is woken by the log's durable hook (one wake-up per
 *     produce, by its metric), not by a timer;
 *   - the command line: spillway view create|list|show|get|series|top|
 *     rebuild|delete against the server, exit codes 0, 1 (server error)
 *     and 2 (usage);
 *   - tokens: administration needs admin on the view's name, reads need
 *     consume on the view's stream (401 without a token, 403 without
 *     the permission);
 *   - hot key: 1,000,000 events of one key in one 10 s window cost at most one
 *     store write per entry (the key's total and one per window level)
 *     per apply batch, by the views' store-writes metric; the totals are
 *     exact.
 */
#include <inttypes.h>
#include <sys/stat.h>

#include "server.h"

static char *get_body(int port, const char *path, int want_status)
{
    resp r = http_json(port, "GET", path, NULL);
    if (r.status != want_status)
        fprintf(stderr, "GET %s -> %d %s\n", path, r.status, r.body);
    CHECK_EQ(r.status, want_status);
    return r.body;
}

static void definitions(srv *s)
{
    int p = s->port;
    CHECK_EQ(req_status(p, "PUT", "/v1/views/v1", "{\"stream\":\"nosuch\",\"kind\":\"latest\"}"), 404);
    CHECK_EQ(req_status(p, "PUT", "/v1/views/agg",
                        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\",\"1m\"]}"),
             201);
    CHECK_EQ(req_status(p, "PUT", "/v1/views/agg",
                        "{ \"windows\" : [\"10000ms\",\"60s\"], \"kind\":\"aggregate\",\"stream\":\"clicks\","
                        "\"field\":\"/n\",\"grace\":\"0s\",\"time\":\"event\",\"group_by\":\"$key\"}"),
             200);
    CHECK_EQ(req_status(p, "PUT", "/v1/views/agg",
                        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\"]}"),
             409);
    static const char *const bad[] = {
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\",\"15s\"]}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\"}",
        "{\"stream\":\"clicks\",\"kind\":\"sum\"}",
        "{\"stream\":\"clicks\",\"kind\":\"latest\",\"field\":\"/n\"}",
        "{\"stream\":\"clicks\",\"kind\":\"sum\",\"field\":\"/n\",\"windows\":[\"1s\"]}",
        "{\"stream\":\"clicks\",\"kind\":\"latest\",\"grace\":\"1s\"}",
        "{\"stream\":\"clicks\",\"kind\":\"median\"}",
        "{\"stream\":\"clicks\",\"kind\":\"latest\",\"forward\":{}}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"n\",\"windows\":[\"1s\"]}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1x\"]}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"300000000000d\"]}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1s\"],\"grace\":\"-1s\"}",
        "{\"stream\":\"clicks\",\"kind\":\"sum\",\"field\":\"/n\",\"merge\":true}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"merge\":true,\"field\":\"/n\",\"windows\":[\"1s\"]}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"merge\":true,\"time\":\"arrival\",\"windows\":[\"1s\"]}",
        "{\"stream\":\"clicks\",\"kind\":\"latest\",\"forward\":{\"address\":\"h:1\",\"stream\":\"x\"}}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1s\"],"
        "\"forward\":{\"address\":\"nohostport\",\"stream\":\"x\"}}",
        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1s\"],"
        "\"forward\":{\"address\":\"h:1\"}}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp r = http_json(p, "PUT", "/v1/views/bad", bad[i]);
        if (r.status != 400)
            fprintf(stderr, "%s -> %d %s\n", bad[i], r.status, r.body);
        CHECK_EQ(r.status, 400);
        CHECK(strstr(r.body, "\"code\":\"bad_config\"") != NULL);
        free(r.body);
    }
    CHECK_EQ(req_status(p, "GET", "/v1/views/bad", NULL), 404);
    resp mr = http_json(p, "PUT", "/v1/views/merged",
                        "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"merge\":true,\"windows\":[\"1m\"]}");
    CHECK_EQ(mr.status, 201);
    CHECK(strstr(mr.body, "\"windows\":[\"1m\"],\"merge\":true,\"grace\":\"0s\"") != NULL);
    free(mr.body);
    CHECK_EQ(req_status(p, "DELETE", "/v1/views/merged", NULL), 204);
    /* a forward view's token is not shown */
    const char *fwdef = "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1s\"],"
                        "\"forward\":{\"address\":\"127.0.0.1:9\",\"stream\":\"x\",\"token\":\"sekrit-1234\"}}";
    for (int i = 0; i < 2; i++) { /* created, then the same again */
        resp fr = http_json(p, "PUT", "/v1/views/fw", fwdef);
        CHECK_EQ(fr.status, i ? 200 : 201);
        CHECK(strstr(fr.body, "sekrit") == NULL && strstr(fr.body, "\"token\":\"[redacted]\"") != NULL);
        free(fr.body);
    }
    char *fb = get_body(p, "/v1/views/fw", 200);
    CHECK(strstr(fb, "sekrit") == NULL && strstr(fb, "\"token\":\"[redacted]\"") != NULL);
    free(fb);
    fb = get_body(p, "/v1/views", 200);
    CHECK(strstr(fb, "sekrit") == NULL);
    free(fb);
    CHECK_EQ(req_status(p, "DELETE", "/v1/views/fw", NULL), 204);
    /* a bytes stream: views read JSON */
    put_stream(p, "raw", "{\"format\":\"bytes\"}");
    resp rb = http_json(p, "PUT", "/v1/views/bad", "{\"stream\":\"raw\",\"kind\":\"latest\"}");
    CHECK_EQ(rb.status, 400);
    CHECK(strstr(rb.body, "JSON") != NULL);
    free(rb.body);
    char *b = get_body(p, "/v1/views", 200);
    CHECK(strstr(b, "\"name\":\"agg\"") != NULL);
    free(b);
    b = get_body(p, "/v1/views/agg", 200);
    CHECK(strstr(b, "\"windows\":[\"10s\",\"1m\"]") != NULL);
    CHECK(strstr(b, "\"state\":") != NULL && strstr(b, "\"applied\":[") != NULL);
    free(b);
    CHECK_EQ(req_status(p, "DELETE", "/v1/views/agg", NULL), 204);
    CHECK_EQ(req_status(p, "GET", "/v1/views/agg", NULL), 404);
    CHECK_EQ(req_status(p, "DELETE", "/v1/views/agg", NULL), 404);
}

/* The last offset of the 202's only partition entry: "P:O". */
static void min_of(const char *body, char *out, size_t cap)
{
    const char *q = strstr(body, "\"partition\":");
    CHECK(q != NULL);
    unsigned part;
    unsigned long long first, count;
    CHECK(sscanf(q, "\"partition\":%u,\"first_offset\":%llu,\"count\":%llu", &part, &first, &count) == 3);
    snprintf(out, cap, "%u:%llu", part, first + count - 1);
}

static void read_your_writes(srv *s)
{
    int p = s->port;
    CHECK_EQ(req_status(p, "PUT", "/v1/views/bal", "{\"stream\":\"clicks\",\"kind\":\"sum\",\"field\":\"/n\"}"), 201);
    long long wakes1 = 0;
    for (int i = 1; i <= 30; i++) { /* before any other event of key acct */
        char ev[128], path[256], min[64];
        snprintf(ev, sizeof ev, "{\"page\":\"acct\",\"n\":%d}", i);
        resp r = http_json(p, "POST", "/v1/streams/clicks/events", ev);
        CHECK_EQ(r.status, 202);
        min_of(r.body, min, sizeof min);
        free(r.body);
        snprintf(path, sizeof path, "/v1/views/bal/keys/acct?min_offsets=%s&wait_ms=10000", min);
        char *b = get_body(p, path, 200);
        char want[128];
        snprintf(want, sizeof want, "{\"key\":\"acct\",\"count\":%d,\"sum\":%d}", i, i * (i + 1) / 2);
        if (!strstr(b, want))
            fprintf(stderr, "read %d: %s (want %s)\n", i, b, want);
        CHECK(strstr(b, want) != NULL);
        free(b);
        if (i == 1)
            wakes1 = srv_metric(p, "spillway_view_durable_wakeups_total{view=\"bal\"}");
    }
    /* those applies were set off by the log's durable hook, not by a
     * timer. The 202 goes out before the hook runs, so produce i's hook
     * and produce i+1's can fold into one wake-up when the apply thread
     * does not run between them (seen under load: 28 for 29); never three
     * hooks: the read of the middle produce is answered by a cycle that
     * starts after its records are durable, so after the first of the
     * three hooks ran (the partition's flusher runs its hooks in order,
     * before its next fsync). So at least one wake-up per two produces;
     * none without the hook. (The first produce may come before the new
     * view's thread first looks, so it is not counted.) */
    long long wakes = srv_metric(p, "spillway_view_durable_wakeups_total{view=\"bal\"}") - wakes1;
    fprintf(stderr, "read your writes: %lld wake-ups by the durable hook for 29 produces\n", wakes);
    CHECK(wakes >= 15);
    /* an offset not yet written: 504 view_lag after wait_ms */
    resp r = http_json(p, "GET", "/v1/views/bal/keys/acct?min_offsets=0:999999&wait_ms=100", NULL);
    CHECK_EQ(r.status, 504);
    CHECK(strstr(r.body, "\"code\":\"view_lag\"") != NULL);
    free(r.body);
    CHECK_EQ(req_status(p, "GET", "/v1/views/bal/keys/acct?min_offsets=zz", NULL), 400);
    CHECK_EQ(req_status(p, "GET", "/v1/views/bal/keys/nobody", NULL), 404);
    CHECK_EQ(req_status(p, "GET", "/v1/views/nosuch/keys/acct?min_offsets=0:0&wait_ms=10", NULL), 404);
}

static void hot_key(srv *s)
{
    int p = s->port;
    CHECK_EQ(req_status(p, "PUT", "/v1/views/hot",
                        "{\"stream\":\"likes\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\",\"1m\",\"1h\"]}"),
             201);
    const int reqs = 250, per = 4000; /* 1,000,000 events */
    size_t cap = (size_t)per * 64;
    char *body = malloc(cap);
    for (int q = 0; q < reqs; q++) {
        size_t n = 0;
        for (int i = 0; i < per; i++)
            n += (size_t)snprintf(body + n, cap - n, "{\"item\":\"viral\",\"n\":1,\"ts\":%lld}\n",
                                  1700000000000LL + (q * per + i) % 10000);
        resp r = http(p, "POST", "/v1/streams/likes/events", "application/x-ndjson", body, n);
        CHECK_EQ(r.status, 202);
        free(r.body);
    }
    free(body);
    long long total = (long long)reqs * per;
    for (int i = 0; i < 3000 && srv_metric(p, "spillway_view_applied_total{view=\"hot\"}") < total; i++)
        usleep(10000);
    CHECK_EQ(srv_metric(p, "spillway_view_applied_total{view=\"hot\"}"), total);
    char *b = get_body(p, "/v1/views/hot/keys/viral", 200);
    char want[128];
    snprintf(want, sizeof want, "{\"key\":\"viral\",\"count\":%lld,\"sum\":%lld,\"min\":1,\"max\":1}", total, total);
    CHECK(strstr(b, want) != NULL);
    free(b);
    b = get_body(p, "/v1/views/hot/keys/viral/series?window=1h&from=1700000000000&to=1700000000000", 200);
    snprintf(want, sizeof want, "\"count\":%lld", total);
    CHECK(strstr(b, want) != NULL);
    free(b);
    /* reads with parameters out of range: 400, nothing else */
    static const char *const bad[] = {
        "/v1/views/hot/keys/viral/series?window=1h&from=-9223372036854775807&to=0",
        "/v1/views/hot/keys/viral/series?window=10s&from=0&to=1700000000000",
        "/v1/views/hot/keys/viral/series?window=1h&from=20&to=10",
        "/v1/views/hot/keys/viral/series?window=7s",
        "/v1/views/hot/keys/viral/series?from=x",
        "/v1/views/hot/top?window=1h&at=9223372036854775807",
        "/v1/views/hot/top?by=median",
        "/v1/views/hot/top?n=0",
        "/v1/views/hot/keys/%zz",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        resp r = http_json(p, "GET", bad[i], NULL);
        if (r.status != 400)
            fprintf(stderr, "GET %s -> %d %s\n", bad[i], r.status, r.body);
        CHECK_EQ(r.status, 400);
        free(r.body);
    }
    /* /metrics with several views: each view family whole, with # HELP */
    char *mt = get_body(p, "/metrics", 200);
    CHECK(strstr(mt, "spillway_view_keys{view=\"bal\"}") && strstr(mt, "spillway_view_keys{view=\"hot\"}"));
    char done[64][64];
    int ndone = 0;
    char cur[64] = "";
    for (char *l = mt; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, "spillway_view_", 14) != 0)
            continue;
        char fam[64];
        size_t fl = strcspn(l, "{ ");
        snprintf(fam, sizeof fam, "%.*s", (int)fl, l);
        if (strcmp(fam, cur) == 0)
            continue;
        for (int i = 0; i < ndone; i++)
            CHECK(strcmp(done[i], fam) != 0); /* a family seen before: not contiguous */
        char help[128];
        snprintf(help, sizeof help, "# HELP %s ", fam);
        CHECK(strstr(mt, help) != NULL);
        snprintf(done[ndone++], sizeof done[0], "%s", fam);
        snprintf(cur, sizeof cur, "%s", fam);
    }
    CHECK(ndone == 9); /* the eight per-view families and spillway_view_reads_uncached_total */
    free(mt);
    long long writes = srv_metric(p, "spillway_view_store_writes_total{view=\"hot\"}");
    long long batches = srv_metric(p, "spillway_view_batches_total{view=\"hot\"}");
    fprintf(stderr, "hot key: %lld events, %lld apply batches, %lld store writes\n", total, batches, writes);
    CHECK(batches > 0);
    /* the key's total + one bucket per window level, per batch */
    CHECK(writes <= batches * 4);
    CHECK(writes < total);
}

static void cli(const char *bin, srv *s)
{
    int p = s->port;
    resp pr = http_json(p, "POST", "/v1/streams/clicks/events", "{\"page\":\"acct\",\"n\":5}");
    CHECK_EQ(pr.status, 202);
    char min[64], get[200];
    min_of(pr.body, min, sizeof min);
    free(pr.body);
    snprintf(get, sizeof get, "view get cv acct --min-offsets %s --wait-ms 5000", min);
    struct {
        const char *args;
        int rc;
        const char *want;
    } runs[] = {
        {"view --help", 0, "spillway view create NAME"},
        {"view create cv --stream clicks --kind aggregate --field /n --windows 10s,1m --grace 2s", 0,
         "created view cv"},
        {"view create cv --stream clicks --kind aggregate --field /n --windows 10s,1m --grace 2s", 0,
         "already exists"},
        {"view create cv --stream clicks --kind sum --field /n", 1, "different definition"},
        {"view create cv --stream clicks", 2, "--kind are required"},
        {"view get cv", 2, "a KEY is required"},
        {get, 0, "\"count\":"},
        {"view series cv acct --window 10s", 0, "\"window\":\"10s\""},
        {"view top cv --window 1m --by sum --n 3", 0, "\"by\":\"sum\""},
        {"view get cv nobody", 1, "has no key"},
        {"view verify cv", 0, "\"ok\":true"},
        {"view verify cv --sample 2", 0, "\"ok\":true"},
        {"view list", 0, "cv"},
        {"view show cv", 0, "aggregate"},
        {"view rebuild cv", 0, "rebuilding"},
        {"view delete cv", 0, "deleted view cv"},
        {"view show cv", 1, "no view named cv"},
        {"view frobnicate", 2, "unknown subcommand"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        cli_out o = cli_run(bin, "%s --server 127.0.0.1:%d", runs[i].args, p);
        if (o.rc != runs[i].rc || !strstr(o.text, runs[i].want))
            fprintf(stderr, "spillway %s: exit %d, want %d and '%s':\n%s\n", runs[i].args, o.rc, runs[i].rc,
                    runs[i].want, o.text);
        CHECK_EQ(o.rc, runs[i].rc);
        CHECK(strstr(o.text, runs[i].want) != NULL);
        free(o.text);
    }
}

static int as(int port, const char *tok, const char *method, const char *path, const char *body)
{
    char h[256] = "";
    if (tok)
        snprintf(h, sizeof h, "Authorization: Bearer %s\r\n", tok);
    resp r = http_ex(port, method, path, body ? "application/json" : NULL, h, body, body ? strlen(body) : 0);
    free(r.body);
    return r.status;
}

static void tokens(const char *bin)
{
    char *dir = spw_test_tmpdir("viewtok");
    char path[4200];
    snprintf(path, sizeof path, "%s/tokens.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\":["
          "{\"token\":\"admin-a1a1a1a1a1a1a1a1\",\"tenant\":\"ops\",\"streams\":[\"*\"],"
          "\"permissions\":[\"produce\",\"consume\",\"admin\"]},"
          "{\"token\":\"read-b2b2b2b2b2b2b2b2b2\",\"tenant\":\"r\",\"streams\":[\"orders\"],"
          "\"permissions\":[\"consume\"]},"
          "{\"token\":\"othr-c3c3c3c3c3c3c3c3c3\",\"tenant\":\"o\",\"streams\":[\"other\"],"
          "\"permissions\":[\"consume\",\"admin\"]}]}\n",
          f);
    CHECK(fclose(f) == 0);
    CHECK(chmod(path, 0600) == 0);
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    const char *extra[] = {"--tokens-file", path, NULL};
    srv s;
    srv_start(&s, bin, data, extra);
    int p = s.port;
    const char *A = "admin-a1a1a1a1a1a1a1a1", *R = "read-b2b2b2b2b2b2b2b2b2", *O = "othr-c3c3c3c3c3c3c3c3c3";
    CHECK_EQ(as(p, A, "PUT", "/v1/streams/orders", "{}"), 201);
    const char *def = "{\"stream\":\"orders\",\"kind\":\"sum\",\"field\":\"/n\"}";
    CHECK_EQ(as(p, NULL, "PUT", "/v1/views/ov", def), 401);
    CHECK_EQ(as(p, R, "PUT", "/v1/views/ov", def), 403);
    CHECK_EQ(as(p, A, "PUT", "/v1/views/ov", def), 201);
    CHECK_EQ(as(p, NULL, "GET", "/v1/views/ov/keys/x", NULL), 401);
    CHECK_EQ(as(p, R, "GET", "/v1/views/ov/keys/x", NULL), 404); /* allowed: no such key */
    CHECK_EQ(as(p, R, "GET", "/v1/views/ov", NULL), 200);
    CHECK_EQ(as(p, O, "GET", "/v1/views/ov/keys/x", NULL), 403); /* consume, but not on orders */
    CHECK_EQ(as(p, O, "GET", "/v1/views/ov/top", NULL), 403);
    CHECK_EQ(as(p, R, "GET", "/v1/views/ov/verify", NULL), 403);
    CHECK_EQ(as(p, R, "POST", "/v1/views/ov/rebuild", ""), 403);
    CHECK_EQ(as(p, R, "DELETE", "/v1/views/ov", NULL), 403);
    CHECK_EQ(as(p, A, "GET", "/v1/views/ov/verify", NULL), 200);
    CHECK_EQ(as(p, A, "DELETE", "/v1/views/ov", NULL), 204);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("views");
    srv s;
    srv_start(&s, argv[1], dir, NULL);
    put_stream(s.port, "clicks", "{\"partitions\":3,\"key\":\"/page\"}");
    put_stream(s.port, "likes", "{\"partitions\":2,\"key\":\"/item\",\"timestamp\":\"/ts\"}");
    definitions(&s);
    read_your_writes(&s);
    cli(argv[1], &s);
    hot_key(&s);
    /* a restart: the views come back with their state */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    srv_start(&s, argv[1], dir, NULL);
    char *b = get_body(s.port, "/v1/views/bal/keys/acct", 200);
    CHECK(strstr(b, "\"count\":31,\"sum\":470") != NULL); /* with the cli's one */
    free(b);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    tokens(argv[1]);
    printf("test_views: ok\n");
    return 0;
}
