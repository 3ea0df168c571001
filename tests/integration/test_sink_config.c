/*
 * Sinks defined in the config file (docs/operations.md "Sinks in the
 * config file") and shown by `spillway top`:
 *   - an edge started with "sink.fwd = {...}" in its --config creates the
 *     forward sink and delivers every event to a core server; started again
 *     with the same file it keeps the sink (identical: nothing to do);
 *   - `top --once` prints a "sink name=fwd state=running lag=0 ..." line,
 *     and no sink line for a server without sinks;
 *   - bad sink lines (missing stream, bad JSON, bad name, defined twice,
 *     another definition than the existing sink's, an over-long line) make
 *     `spillway serve` exit 1 with "FILE:LINE: reason";
 *   - definitions are compared in canonical form (core/opts.h): a line that
 *     differs from the sink's only by spaces inside "options", by the order
 *     of its fields or by defaults written out starts the server with the
 *     sink unchanged, and a PUT of such a body answers 200 (identical);
 *     a genuinely different value still answers 409.
 */
#include "server.h"
#include "spillway.h"

static const char *BIN;

static void produce(int binport, const char *stream, int n)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, NULL, &p), 0);
    char key[32], val[64];
    for (int i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, "k%d", i % 7);
        int vl = snprintf(val, sizeof val, "{\"i\":%d}", i);
        CHECK_EQ(spillway_producer_send(p, stream, key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT, NULL), 0);
    }
    CHECK_EQ(spillway_producer_flush(p, 30000), 0);
    spillway_producer_close(p, 1000);
}

/* Records in stream (all partitions), by fetching to the end. */
static uint64_t stream_count(int binport, const char *stream, uint32_t parts)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
    uint64_t total = 0;
    for (uint32_t p = 0; p < parts; p++) {
        uint64_t off = 0;
        for (int rounds = 0; rounds < 100000; rounds++) {
            spillway_fetch_result *fr;
            CHECK_EQ(spillway_client_fetch(c, stream, p, off, 1 << 20, &fr), 0);
            size_t cnt = spillway_fetch_count(fr);
            total += cnt;
            off = spillway_fetch_next_offset(fr);
            uint64_t end = spillway_fetch_end_offset(fr);
            spillway_fetch_free(fr);
            if (off >= end || cnt == 0)
                break;
        }
    }
    spillway_client_close(c);
    return total;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    CHECK(fclose(f) == 0);
}

/* `serve` with config file cfg must exit 1 saying want (timeout: a server
 * that wrongly starts is killed, and the check fails). */
static void expect_refused(const char *data, const char *cfg, const char *text, const char *want)
{
    write_file(cfg, text);
    cli_out o = cli_run("timeout", "20 %s serve --data %s --listen 127.0.0.1:0 --listen-bin off --config %s", BIN,
                        data, cfg);
    if (o.rc != 1 || !strstr(o.text, want))
        fprintf(stderr, "expected exit 1 and '%s', got exit %d:\n%s\n", want, o.rc, o.text);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, want) != NULL);
    free(o.text);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *edir = spw_test_tmpdir("sinkcfg-edge"), *cdir = spw_test_tmpdir("sinkcfg-core");
    srv edge, core;
    srv_start(&core, BIN, cdir, NULL);
    put_stream(core.port, "ev", "{\"partitions\":2}");

    /* The edge's stream exists before the config names it. */
    srv_start(&edge, BIN, edir, NULL);
    put_stream(edge.port, "ev", "{\"partitions\":2}");
    put_stream(edge.port, "dlq", "{\"partitions\":1}");
    produce(edge.binport, "ev", 1000);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);

    char cfg[4200], body[1024], text[4096];
    snprintf(cfg, sizeof cfg, "%s/spillway.conf", edir);
    snprintf(body, sizeof body,
             "{\"stream\":\"ev\",\"kind\":\"forward\",\"dlq\":\"dlq\","
             "\"batch\":{\"max_events\":200,\"max_wait_ms\":50},\"retry\":{\"initial_ms\":50,\"max_ms\":400},"
             "\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"ev\"}}",
             core.binport);
    snprintf(text, sizeof text,
             "# an edge that forwards ev to the core\n"
             "idle-timeout = 60s  # comments still work on other lines\n"
             "\n"
             "sink.fwd = %s\n",
             body);
    write_file(cfg, text);
    const char *extra[] = {"--config", cfg, NULL};
    srv_start(&edge, BIN, edir, extra);
    resp r = http_json(edge.port, "GET", "/v1/sinks/fwd", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"kind\":\"forward\"") != NULL);
    free(r.body);
    int drained = 0;
    for (int i = 0; i < 1200 && !drained; i++) {
        drained = stream_count(core.binport, "ev", 2) == 1000;
        if (!drained)
            usleep(100000);
    }
    CHECK(drained);

    /* The sink's dead-letter stream cannot be deleted under it (409
     * stream_in_use naming the sink); nothing is deleted. */
    r = http_json(edge.port, "DELETE", "/v1/streams/dlq", NULL);
    CHECK_EQ(r.status, 409);
    CHECK(strstr(r.body, "\"code\":\"stream_in_use\"") && strstr(r.body, "sink fwd"));
    free(r.body);
    r = http_json(edge.port, "GET", "/v1/streams/dlq", NULL);
    CHECK_EQ(r.status, 200);
    free(r.body);

    /* top shows the sink once its lag is 0 (progress is committed after delivery). */
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        cli_out o = cli_run(BIN, "top --once --interval 200ms --server 127.0.0.1:%d", edge.port);
        CHECK_EQ(o.rc, 0);
        CHECK(strstr(o.text, "sink name=fwd state=") != NULL);
        seen = strstr(o.text, "sink name=fwd state=running lag=0 ") && strstr(o.text, " delivered_total=1000 ") &&
               strstr(o.text, " errors_total=0 dlq_total=0\n");
        if (!seen && i == 99)
            fprintf(stderr, "%s", o.text);
        free(o.text);
    }
    CHECK(seen);
    cli_out o = cli_run(BIN, "top --once --interval 200ms --server 127.0.0.1:%d", core.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "stream name=ev") != NULL);
    CHECK(strstr(o.text, "sink name=") == NULL); /* no sinks, no sink lines */
    free(o.text);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);

    /* The same file again: the sink is there, unchanged, and delivers what is new. */
    srv_start(&edge, BIN, edir, extra);
    produce(edge.binport, "ev", 10);
    drained = 0;
    for (int i = 0; i < 1200 && !drained; i++) {
        drained = stream_count(core.binport, "ev", 2) >= 1010;
        if (!drained)
            usleep(100000);
    }
    CHECK(drained);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);

    /* Bad lines: exit 1 naming the file and line; nothing else changes. */
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/bad.conf", edir);
    char want[4400];
    snprintf(want, sizeof want, "%s:2: sink.x: no stream named nosuch", bad);
    expect_refused(edir, bad,
                   "idle-timeout = 60s\n"
                   "sink.x = {\"stream\":\"nosuch\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:1\"}}\n",
                   want);
    snprintf(want, sizeof want, "%s:3: sink.x:", bad);
    expect_refused(edir, bad, "# bad JSON\n\nsink.x = {\"stream\":\"ev\",\"kind\":\n", want);
    snprintf(want, sizeof want, "%s:1: sink.x: expected a JSON object", bad);
    expect_refused(edir, bad, "sink.x = forward\n", want);
    snprintf(want, sizeof want, "%s:1: sink.: sink names are", bad);
    expect_refused(edir, bad, "sink. = {}\n", want);
    snprintf(want, sizeof want, "%s:2: sink.fwd: sink fwd is defined twice", bad);
    snprintf(text, sizeof text, "sink.fwd = %s\nsink.fwd = %s\n", body, body);
    expect_refused(edir, bad, text, want);
    snprintf(want, sizeof want, "%s:1: sink.fwd: sink fwd exists with a different definition", bad);
    snprintf(text, sizeof text,
             "sink.fwd = {\"stream\":\"ev\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:%d\"}}\n",
             core.binport);
    expect_refused(edir, bad, text, want);
    /* an over-long line */
    {
        static char big[20000];
        memset(big, 'a', sizeof big - 2);
        memcpy(big, "sink.y = ", 9);
        big[sizeof big - 2] = '\n';
        big[sizeof big - 1] = 0;
        snprintf(want, sizeof want, "%s:1: line longer than", bad);
        write_file(bad, big);
        cli_out ol = cli_run("timeout", "20 %s serve --data %s --listen 127.0.0.1:0 --listen-bin off --config %s",
                             BIN, edir, bad);
        CHECK(ol.rc != 0);
        CHECK(strstr(ol.text, want) != NULL);
        free(ol.text);
    }

    /* The same definition written differently: spaces inside "options",
     * fields in another order, and defaults written out (options.stream is
     * the sink's stream, timeout_ms 10000, batch.max_bytes 4 MiB). */
    char same[1024], same_cfg[4200];
    snprintf(same, sizeof same,
             "{\"kind\":\"forward\",\"stream\":\"ev\",\"dlq\":\"dlq\","
             "\"batch\":{\"max_wait_ms\":50,\"max_events\":200,\"max_bytes\":4194304},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":400},"
             "\"options\":{ \"timeout_ms\" : 10000, \"address\": \"127.0.0.1:%d\" }}",
             core.binport);
    snprintf(same_cfg, sizeof same_cfg, "%s/same.conf", edir);
    snprintf(text, sizeof text, "sink.fwd = %s\n", same);
    write_file(same_cfg, text);
    const char *same_extra[] = {"--config", same_cfg, NULL};
    srv_start(&edge, BIN, edir, same_extra); /* the server starts: the sink is unchanged */
    CHECK_EQ(req_status(edge.port, "PUT", "/v1/sinks/fwd", same), 200);
    CHECK_EQ(req_status(edge.port, "PUT", "/v1/sinks/fwd", body), 200);
    /* a genuinely different value still conflicts */
    char diff[1024];
    snprintf(diff, sizeof diff,
             "{\"kind\":\"forward\",\"stream\":\"ev\",\"dlq\":\"dlq\","
             "\"batch\":{\"max_wait_ms\":50,\"max_events\":200},\"retry\":{\"initial_ms\":50,\"max_ms\":400},"
             "\"options\":{\"timeout_ms\":10001,\"address\":\"127.0.0.1:%d\"}}",
             core.binport);
    CHECK_EQ(req_status(edge.port, "PUT", "/v1/sinks/fwd", diff), 409);
    r = http_json(edge.port, "GET", "/v1/sinks/fwd", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"timeout_ms\":10001") == NULL);
    free(r.body);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    snprintf(want, sizeof want, "%s:1: sink.fwd: sink fwd exists with a different definition", bad);
    snprintf(text, sizeof text, "sink.fwd = %s\n", diff);
    expect_refused(edir, bad, text, want);

    /* After all the refusals the good file still starts and the sink is as it was. */
    srv_start(&edge, BIN, edir, extra);
    r = http_json(edge.port, "GET", "/v1/sinks", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"name\":\"fwd\"") != NULL);
    CHECK(strstr(r.body, "\"name\":\"x\"") == NULL);
    free(r.body);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(edir);
    spw_test_rmrf(cdir);
    free(edir);
    free(cdir);
    return 0;
}
