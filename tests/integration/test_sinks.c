/*
 * Sinks end to end (docs/api.md "Sinks"): two real servers, an edge whose
 * `forward` sink drains a stream into a core server's stream over the
 * binary protocol.
 *   - API: bad names, unknown kinds, missing streams and bad bodies are
 *     refused (400/404) and change nothing; PUT is idempotent (201, 200,
 *     409 for another definition); GET, list, DELETE; /metrics.
 *   - Every event arrives once and in order per partition (by content).
 *   - The core stopped for a while: the sink retries (state "retrying",
 *     last error set, lag grows), nothing is lost when it comes back.
 *   - The edge killed -9 mid-drain and restarted: the sink definition is
 *     back and resumes from its committed progress; nothing is lost.
 *     Duplicates are counted and printed: at least once is the guarantee
 *     there (docs/api.md "forward").
 *   - Retention keeps what a sink has not delivered (its target down),
 *     and deletes it once the sink is gone.
 *   - A poison record (bigger than the core stream's max_event_bytes)
 *     lands in the DLQ stream with the remote's error text; the rest are
 *     delivered in order.
 */
#include <pthread.h>
#include <sys/stat.h>

#include "server.h"
#include "sink/rules.h"
#include "spillway.h"

static const char *BIN;

/* Produces n events to stream over the binary protocol: key "k<i%keys>",
 * value {"i":first+i,"pad":"..."} (bigval: one value of 1000 bytes). */
static void produce(int binport, const char *stream, int first, int n, int keys, int bigval)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, NULL, &p), 0);
    char key[32], val[1200];
    for (int i = first; i < first + n; i++) {
        int kl = snprintf(key, sizeof key, "k%d", i % keys);
        int vl;
        if (i == bigval) {
            char pad[1001];
            memset(pad, 'x', 1000);
            pad[1000] = 0;
            vl = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%s\"}", i, pad);
        } else {
            vl = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"abcdefghij\"}", i);
        }
        CHECK_EQ(spillway_producer_send(p, stream, key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT, NULL), 0);
    }
    CHECK_EQ(spillway_producer_flush(p, 30000), 0);
    spillway_producer_close(p, 1000);
}

/* The records of one partition as "key=value\n" lines (malloc'ed), and
 * their count in *n. */
static char *dump_part(int binport, const char *stream, uint32_t part, size_t *n)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    out[0] = 0;
    *n = 0;
    uint64_t off = 0;
    for (int rounds = 0; rounds < 100000; rounds++) {
        spillway_fetch_result *fr;
        int r = spillway_client_fetch(c, stream, part, off, 1 << 20, &fr);
        CHECK_EQ(r, 0);
        size_t cnt = spillway_fetch_count(fr);
        for (size_t i = 0; i < cnt; i++) {
            spillway_fetched f;
            spillway_fetch_get(fr, i, &f);
            size_t need = (size_t)(f.key_len > 0 ? f.key_len : 0) + f.value_len + 3;
            while (len + need + 1 > cap) {
                cap *= 2;
                out = realloc(out, cap);
            }
            if (f.key_len > 0)
                memcpy(out + len, f.key, (size_t)f.key_len), len += (size_t)f.key_len;
            out[len++] = '=';
            memcpy(out + len, f.value, f.value_len);
            len += f.value_len;
            out[len++] = '\n';
            out[len] = 0;
            (*n)++;
        }
        off = spillway_fetch_next_offset(fr);
        uint64_t end = spillway_fetch_end_offset(fr);
        spillway_fetch_free(fr);
        if (off >= end || cnt == 0)
            break;
    }
    spillway_client_close(c);
    return out;
}

static uint64_t stream_count(int binport, const char *stream, uint32_t parts)
{
    uint64_t t = 0;
    for (uint32_t p = 0; p < parts; p++) {
        size_t n;
        free(dump_part(binport, stream, p, &n));
        t += n;
    }
    return t;
}

/* A JSON number field of a body ("\"name\":N"), or -1. */
static long long jnum(const char *body, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *p = strstr(body, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}

/* Waits (bounded) until the sink reports lag 0 and core holds want records. */
static void wait_drained(int edge_port, const char *sink, int core_bin, const char *stream, uint32_t parts,
                         uint64_t want)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", sink);
    for (int i = 0; i < 1200; i++) {
        resp r = http_json(edge_port, "GET", path, NULL);
        CHECK_EQ(r.status, 200);
        long long lag = jnum(r.body, "lag");
        free(r.body);
        if (lag == 0 && stream_count(core_bin, stream, parts) >= want)
            return;
        usleep(100000);
    }
    CHECK(!"sink did not drain within 120 s");
}

/* Every edge record is in core (same partition, same order); returns the
 * number of duplicates (a record of core equal to its predecessor run). */
static size_t compare(int edge_bin, int core_bin, const char *es, const char *cs, uint32_t parts, int exact)
{
    size_t dups = 0;
    for (uint32_t p = 0; p < parts; p++) {
        size_t ne, nc;
        char *e = dump_part(edge_bin, es, p, &ne);
        char *c = dump_part(core_bin, cs, p, &nc);
        if (exact) {
            CHECK_EQ(ne, nc);
            CHECK(strcmp(e, c) == 0);
        } else {
            /* edge must be a subsequence of core (nothing lost, order
             * kept); core's other records are resends of edge records */
            CHECK(nc >= ne);
            size_t pdups = 0;
            const char *a = e, *b = c;
            while (*b) {
                const char *be = strchr(b, '\n');
                CHECK(be);
                size_t bl = (size_t)(be - b);
                const char *ae = *a ? strchr(a, '\n') : NULL;
                if (ae && (size_t)(ae - a) == bl && memcmp(a, b, bl) == 0) {
                    a = ae + 1;
                } else {
                    char line[512];
                    CHECK(bl + 2 < sizeof line);
                    memcpy(line, b, bl + 1);
                    line[bl + 1] = 0;
                    CHECK(strstr(e, line) != NULL); /* a real record, sent again */
                    pdups++;
                }
                b = be + 1;
            }
            CHECK(*a == 0); /* every edge record was found, in order */
            CHECK_EQ(nc - ne, pdups);
            dups += pdups;
        }
        free(e);
        free(c);
    }
    return dups;
}

static void sink_body(char *out, size_t cap, const char *stream, int core_bin, const char *remote)
{
    snprintf(out, cap,
             "{\"stream\":\"%s\",\"kind\":\"forward\",\"dlq\":\"dlq\","
             "\"batch\":{\"max_events\":500,\"max_bytes\":1000000,\"max_wait_ms\":50},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":400},"
             "\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"%s\",\"timeout_ms\":2000}}",
             stream, core_bin, remote);
}

static void test_api(int port, int core_bin)
{
    char body[1024];
    sink_body(body, sizeof body, "ev", core_bin, "ev");
    /* bad names */
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/.hidden", body), 400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/a%2Fb", body), 400);
    CHECK_EQ(req_status(port, "GET", "/v1/sinks/a/b", NULL), 400);
    /* bad bodies */
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", "{"), 400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", "[]"), 400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", "{\"stream\":\"ev\",\"kind\":\"nope\"}"), 400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", "{\"stream\":\"ev\"}"), 400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", "{\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:1\"}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", "{\"stream\":\"ev\",\"kind\":\"forward\"}"), 400); /* no address */
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"forward\",\"options\":{\"address\":\"nohost\"}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:1\",\"x\":1}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"forward\",\"batch\":{\"max_events\":0},"
                        "\"options\":{\"address\":\"127.0.0.1:1\"}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"forward\",\"bogus\":1,\"options\":{\"address\":\"127.0.0.1:1\"}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"forward\",\"dlq\":\"ev\",\"options\":{\"address\":\"127.0.0.1:1\"}}"),
             400);
    /* missing streams */
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"nosuch\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:1\"}}"),
             404);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"forward\",\"dlq\":\"nosuch\",\"options\":{\"address\":\"127.0.0.1:1\"}}"),
             404);
    CHECK_EQ(req_status(port, "GET", "/v1/sinks/x", NULL), 404);
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/x", NULL), 404);
    CHECK_EQ(req_status(port, "POST", "/v1/sinks/x", "{}"), 405);
    resp r = http_json(port, "GET", "/v1/sinks", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strcmp(r.body, "{\"sinks\":[]}\n") == 0); /* nothing was created by the refusals */
    free(r.body);
    /* create, idempotent PUT, conflicting PUT, delete, re-create */
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/tmp", body), 201);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/tmp", body), 200);
    char other[1024];
    sink_body(other, sizeof other, "ev", core_bin, "other");
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/tmp", other), 409);
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/tmp", NULL), 204);
    CHECK_EQ(req_status(port, "GET", "/v1/sinks/tmp", NULL), 404);
    /* a definition of over 512 bytes comes back whole in GET and the list */
    char big[4096];
    int bl = snprintf(big, sizeof big, "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":["
                                        "\"host=127.0.0.1 port=1 connect_timeout=1\"],\"table\":\"t\",\"columns\":{");
    for (int i = 0; i < 40; i++)
        bl += snprintf(big + bl, sizeof big - (size_t)bl, "%s\"column_%02d\":\"/field_%02d\"", i ? "," : "", i, i);
    snprintf(big + bl, sizeof big - (size_t)bl, "}}}");
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/big", big), 201);
    for (int list = 0; list < 2; list++) {
        r = http_json(port, "GET", list ? "/v1/sinks" : "/v1/sinks/big", NULL);
        CHECK_EQ(r.status, 200);
        CHECK(strstr(r.body, "\"column_39\":\"/field_39\"}}},\"state\":") != NULL);
        CHECK(strstr(r.body, "\"last_error\":") != NULL);
        free(r.body);
    }
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/big", NULL), 204);
}

/* Retention never deletes what a sink still has to deliver. */
static void test_retention(void)
{
    char *dir = spw_test_tmpdir("sinks-ret");
    srv s;
    const char *extra[] = {"--segment-bytes", "4096", "--retention-check", "100ms", NULL};
    srv_start(&s, BIN, dir, extra);
    put_stream(s.port, "rt", "{\"partitions\":1,\"retention\":{\"bytes\":1},\"dedupe_window_ms\":0}");
    /* a target that is never there: port 1 refuses connections */
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/held",
                        "{\"stream\":\"rt\",\"kind\":\"forward\",\"retry\":{\"initial_ms\":50,\"max_ms\":200},"
                        "\"options\":{\"address\":\"127.0.0.1:1\",\"timeout_ms\":200}}"),
             201);
    for (int i = 0; i < 40; i++) /* small batches: several segments of 4 KiB */
        produce(s.binport, "rt", i * 50, 50, 7, -1);
    long long segs = 0;
    for (int i = 0; i < 100 && segs < 10; i++) {
        resp r = http_json(s.port, "GET", "/v1/streams/rt", NULL);
        segs = jnum(r.body, "segments");
        free(r.body);
        usleep(20000);
    }
    CHECK(segs >= 10);
    usleep(1000000); /* ten retention passes */
    resp r = http_json(s.port, "GET", "/v1/streams/rt", NULL);
    CHECK_EQ(jnum(r.body, "start_offset"), 0); /* held by the sink */
    free(r.body);
    for (int i = 0; i < 100; i++) { /* the lag is refreshed between retries */
        r = http_json(s.port, "GET", "/v1/sinks/held", NULL);
        if (jnum(r.body, "lag") == 2000)
            break;
        free(r.body);
        usleep(20000);
    }
    CHECK_EQ(jnum(r.body, "lag"), 2000);
    CHECK(strstr(r.body, "\"state\":\"retrying\""));
    free(r.body);
    /* without the sink, retention deletes (so the check above means something) */
    CHECK_EQ(req_status(s.port, "DELETE", "/v1/sinks/held", NULL), 204);
    long long start = 0;
    for (int i = 0; i < 300 && start <= 0; i++) {
        usleep(20000);
        r = http_json(s.port, "GET", "/v1/streams/rt", NULL);
        start = jnum(r.body, "start_offset");
        free(r.body);
    }
    CHECK(start > 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
}

/*
 * A sink's progress past its partition's end at attach (here written by
 * hand: position 9 of a partition holding 5 records, as a power loss
 * leaves it when the sink was shown records that were then cut) is set
 * down to the end, logged and counted in /metrics, and saved; the records
 * that take offsets 5.. are delivered.
 */
static void test_clamp(void)
{
    char *edir = spw_test_tmpdir("sinks-clamp-edge"), *cdir = spw_test_tmpdir("sinks-clamp-core");
    char logp[4200], path[4200];
    snprintf(logp, sizeof logp, "%s/edge.log", cdir);
    srv edge, core;
    srv_start(&core, BIN, cdir, NULL);
    srv_start(&edge, BIN, edir, NULL);
    put_stream(edge.port, "cs", "{\"partitions\":1}");
    put_stream(edge.port, "dlq", "{\"partitions\":1}");
    put_stream(core.port, "cs", "{\"partitions\":1}");
    char body[1024];
    sink_body(body, sizeof body, "cs", core.binport, "cs");
    CHECK_EQ(req_status(edge.port, "PUT", "/v1/sinks/cl", body), 201);
    produce(edge.binport, "cs", 0, 5, 3, -1);
    wait_drained(edge.port, "cl", core.binport, "cs", 1, 5);
    resp gr = http_json(edge.port, "GET", "/v1/streams/cs", NULL);
    long long inc = jnum(gr.body, "incarnation"); /* the file is this stream's */
    free(gr.body);
    CHECK(inc > 0);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);

    uint64_t next = 9;
    spw_buf pb = SPW_BUF_INIT;
    CHECK_OK(spw_sink_progress_encode(&pb, (uint64_t)inc, &next, 1));
    snprintf(path, sizeof path, "%s/sinks/cl/progress", edir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(pb.p, 1, pb.len, f), pb.len);
    fclose(f);
    spw_buf_fini(&pb);

    srv_start_log(&edge, BIN, edir, NULL, logp);
    produce(edge.binport, "cs", 100, 3, 3, -1); /* offsets 5..7 */
    wait_drained(edge.port, "cl", core.binport, "cs", 1, 8);
    size_t n;
    char *got = dump_part(core.binport, "cs", 0, &n);
    CHECK_EQ(n, 8);
    CHECK(strstr(got, "\"i\":100,") && strstr(got, "\"i\":102,"));
    free(got);
    resp r = http_json(edge.port, "GET", "/metrics", NULL);
    CHECK(strstr(r.body, "\nspillway_positions_clamped_total 1\n"));
    free(r.body);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    char text[65536];
    f = fopen(logp, "r");
    CHECK(f != NULL);
    size_t tl = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[tl] = 0;
    CHECK(strstr(text, "sink cl: partition 0 position 9 is past the partition's end 5"));
    /* The progress on disk is the delivered end now: nothing to clamp. */
    srv_start(&edge, BIN, edir, NULL);
    r = http_json(edge.port, "GET", "/metrics", NULL);
    CHECK(strstr(r.body, "\nspillway_positions_clamped_total 0\n"));
    free(r.body);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(edir);
    spw_test_rmrf(cdir);
    free(edir);
    free(cdir);
}

/* PUT and DELETE need the admin permission; GET any valid token. */
static void test_auth(void)
{
    char *dir = spw_test_tmpdir("sinks-auth");
    char path[4200];
    snprintf(path, sizeof path, "%s/tokens.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\":[{\"token\":\"admin-a1a1a1a1a1a1a1a1a1a1\",\"tenant\":\"ops\",\"streams\":[\"*\"],"
          "\"permissions\":[\"produce\",\"consume\",\"admin\"]},"
          "{\"token\":\"prod-b2b2b2b2b2b2b2b2b2b2\",\"tenant\":\"acme\",\"streams\":[\"*\"],"
          "\"permissions\":[\"produce\",\"consume\"]}]}\n",
          f);
    CHECK(fclose(f) == 0);
    CHECK(chmod(path, 0600) == 0);
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    srv s;
    const char *extra[] = {"--tokens-file", path, NULL};
    srv_start(&s, BIN, data, extra);
    const char *body = "{\"stream\":\"nosuch\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:1\"}}";
    const char *admin = "Authorization: Bearer admin-a1a1a1a1a1a1a1a1a1a1\r\n";
    const char *prod = "Authorization: Bearer prod-b2b2b2b2b2b2b2b2b2b2\r\n";
    struct {
        const char *method, *path, *auth, *body;
        int status;
    } cases[] = {
        {"GET", "/v1/sinks", NULL, NULL, 401},
        {"PUT", "/v1/sinks/x", NULL, body, 401},
        {"PUT", "/v1/sinks/x", prod, body, 403},
        {"DELETE", "/v1/sinks/x", prod, NULL, 403},
        {"GET", "/v1/sinks", prod, NULL, 200},
        {"PUT", "/v1/sinks/x", admin, body, 404}, /* past auth: the stream is missing */
        {"DELETE", "/v1/sinks/x", admin, NULL, 404},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        resp r = http_ex(s.port, cases[i].method, cases[i].path, cases[i].body ? "application/json" : NULL,
                         cases[i].auth, cases[i].body, cases[i].body ? strlen(cases[i].body) : 0);
        if (r.status != cases[i].status)
            fprintf(stderr, "case %zu: %s %s -> %d\n", i, cases[i].method, cases[i].path, r.status);
        CHECK_EQ(r.status, cases[i].status);
        free(r.body);
    }
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    test_clamp();
    test_auth();
    test_retention();
    char *edir = spw_test_tmpdir("sinks-edge"), *cdir = spw_test_tmpdir("sinks-core");
    srv edge, core;
    srv_start(&core, BIN, cdir, NULL);
    srv_start(&edge, BIN, edir, NULL);
    put_stream(edge.port, "ev", "{\"partitions\":2}");
    put_stream(edge.port, "dlq", "{\"partitions\":1}");
    put_stream(edge.port, "ps", "{\"partitions\":1}");
    put_stream(core.port, "ev", "{\"partitions\":2}");
    put_stream(core.port, "small", "{\"partitions\":1,\"max_event_bytes\":200}");

    test_api(edge.port, core.binport);

    /* 1. every event once, in order per partition */
    char body[1024];
    sink_body(body, sizeof body, "ev", core.binport, "ev");
    CHECK_EQ(req_status(edge.port, "PUT", "/v1/sinks/fwd", body), 201);
    produce(edge.binport, "ev", 0, 5000, 37, -1);
    wait_drained(edge.port, "fwd", core.binport, "ev", 2, 5000);
    compare(edge.binport, core.binport, "ev", "ev", 2, 1);
    resp r = http_json(edge.port, "GET", "/v1/sinks/fwd", NULL);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(jnum(r.body, "delivered_total"), 5000);
    CHECK(strstr(r.body, "\"state\":\"running\""));
    CHECK(strstr(r.body, "\"partitions\":[{\"partition\":0,"));
    free(r.body);
    r = http_json(edge.port, "GET", "/metrics", NULL);
    CHECK(strstr(r.body, "spillway_sink_delivered_total{sink=\"fwd\"} 5000\n"));
    CHECK(strstr(r.body, "spillway_sink_lag{sink=\"fwd\"} 0\n"));
    CHECK(strstr(r.body, "spillway_sink_dlq_total{sink=\"fwd\"} 0\n"));
    free(r.body);

    /* 2. the core down for a while: retries, lag grows, nothing lost */
    int core_bin = core.binport, core_http = core.port;
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    produce(edge.binport, "ev", 5000, 2000, 37, -1);
    int saw_retry = 0;
    for (int i = 0; i < 300 && !saw_retry; i++) {
        r = http_json(edge.port, "GET", "/v1/sinks/fwd", NULL);
        saw_retry = strstr(r.body, "\"state\":\"retrying\"") && jnum(r.body, "lag") > 0 &&
                    strstr(r.body, "\"last_error\":\"target unavailable");
        free(r.body);
        if (!saw_retry)
            usleep(100000);
    }
    CHECK(saw_retry);
    {
        char lb[64], lh[64];
        snprintf(lb, sizeof lb, "127.0.0.1:%d", core_bin);
        snprintf(lh, sizeof lh, "127.0.0.1:%d", core_http);
        const char *extra[] = {"--listen-bin", lb, "--listen", lh, NULL};
        srv_start(&core, BIN, cdir, extra);
        CHECK_EQ(core.binport, core_bin);
    }
    wait_drained(edge.port, "fwd", core.binport, "ev", 2, 7000);
    size_t d1 = compare(edge.binport, core.binport, "ev", "ev", 2, 0);
    printf("core restart: %zu duplicate(s)\n", d1);

    /* 3. the edge killed -9 mid-drain, restarted: resumes */
    produce(edge.binport, "ev", 7000, 20000, 37, -1);
    for (int i = 0; i < 2000; i++) {
        uint64_t c = stream_count(core.binport, "ev", 2);
        if (c > 7000)
            break;
        usleep(5000);
    }
    CHECK_EQ(srv_stop(&edge, SIGKILL), 128 + SIGKILL);
    srv_start(&edge, BIN, edir, NULL);
    r = http_json(edge.port, "GET", "/v1/sinks", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"name\":\"fwd\"")); /* the definition survived */
    free(r.body);
    wait_drained(edge.port, "fwd", core.binport, "ev", 2, 27000);
    size_t d2 = compare(edge.binport, core.binport, "ev", "ev", 2, 0);
    printf("edge kill -9: %zu duplicate(s) in total\n", d2);
    /* at most the window in flight per partition (max_events 500, 2 partitions), on top of d1 */
    CHECK(d2 - d1 <= 2 * 500);

    /* 4. a poison record goes to the DLQ with the remote's error; the rest arrive in order */
    sink_body(body, sizeof body, "ps", core.binport, "small");
    CHECK_EQ(req_status(edge.port, "PUT", "/v1/sinks/pois", body), 201);
    produce(edge.binport, "ps", 0, 50, 5, 20);
    wait_drained(edge.port, "pois", core.binport, "small", 1, 49);
    size_t n;
    char *got = dump_part(core.binport, "small", 0, &n);
    CHECK_EQ(n, 49);
    CHECK(!strstr(got, "\"i\":20,"));
    char *src = dump_part(edge.binport, "ps", 0, &n);
    char *bad = strstr(src, "k0={\"i\":20,");
    CHECK(bad);
    char *bad_end = strchr(bad, '\n');
    memmove(bad, bad_end + 1, strlen(bad_end + 1) + 1);
    CHECK(strcmp(src, got) == 0);
    free(got);
    free(src);
    char *dl = dump_part(edge.binport, "dlq", 0, &n);
    CHECK_EQ(n, 1);
    CHECK(strstr(dl, "\"error\":\"127.0.0.1:"));
    CHECK(strstr(dl, "too large (413)"));
    CHECK(strstr(dl, "\"sink\":\"pois\",\"stream\":\"ps\",\"partition\":0,\"offset\":20,"));
    CHECK(strstr(dl, "\"key\":\"k0\",\"value\":{\"i\":20,\"pad\":\"xxxx"));
    free(dl);
    r = http_json(edge.port, "GET", "/v1/sinks/pois", NULL);
    CHECK_EQ(jnum(r.body, "dlq_total"), 1);
    CHECK(strstr(r.body, "\"last_error\":\"rejected: "));
    free(r.body);

    /* 5. definitions survive a clean restart; delete stops and forgets */
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    srv_start(&edge, BIN, edir, NULL);
    CHECK_EQ(req_status(edge.port, "GET", "/v1/sinks/fwd", NULL), 200);
    CHECK_EQ(req_status(edge.port, "GET", "/v1/sinks/pois", NULL), 200);
    CHECK_EQ(req_status(edge.port, "DELETE", "/v1/sinks/pois", NULL), 204);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    srv_start(&edge, BIN, edir, NULL);
    CHECK_EQ(req_status(edge.port, "GET", "/v1/sinks/pois", NULL), 404);
    CHECK_EQ(req_status(edge.port, "GET", "/v1/sinks/fwd", NULL), 200);

    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(edir);
    spw_test_rmrf(cdir);
    free(edir);
    free(cdir);
    printf("test_sinks: ok\n");
    return 0;
}
