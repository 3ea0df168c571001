/*
 * `spillway bench` against a real server on loopback with both listeners:
 * --protocol bin (the binary protocol through the C client library, the
 * stream created over --http) and --protocol http each print their BENCH
 * line with errors=0, and every event is in the stream afterwards (the sum
 * of end_offsets from GET /v1/streams/NAME). Usage errors exit 2.
 */
#include "server.h"

static const char *BIN;

typedef cli_out out;
#define run(...) cli_run(BIN, __VA_ARGS__)

/* Sum of the partitions' end_offset of stream name. */
static unsigned long long stream_events(int port, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", name);
    resp r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    unsigned long long sum = 0;
    int parts = 0;
    for (const char *p = r.body; (p = strstr(p, "\"end_offset\":")); p += 13, parts++)
        sum += strtoull(p + 13, NULL, 10);
    CHECK_EQ(parts, 4);
    free(r.body);
    return sum;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("bench");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv s;
    srv_start(&s, BIN, data, NULL);
    int binport = s.binport;
    CHECK(binport > 0);

    /* Usage errors. */
    out o = run("bench --protocol smoke");
    CHECK_EQ(o.rc, 2);
    CHECK(strstr(o.text, "--protocol takes http or bin"));
    free(o.text);
    o = run("bench --http 127.0.0.1:1 --server 127.0.0.1:1");
    CHECK_EQ(o.rc, 2);
    CHECK(strstr(o.text, "--http is for --protocol bin"));
    free(o.text);
    o = run("bench --help");
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "--protocol http|bin"));
    free(o.text);

    /* The binary protocol: 2,345 events (a short last request per client). */
    o = run("bench --protocol bin --server 127.0.0.1:%d --http 127.0.0.1:%d --stream benchb --events 2345 "
            "--clients 3 --batch 100 --keys 50 --size 100",
            binport, s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=bin ack=fsync events=2345 batch=100 clients=3 events_per_s="));
    CHECK(strstr(o.text, " p50_us=") && strstr(o.text, " p999_us=") && strstr(o.text, " max_us="));
    CHECK(strstr(o.text, " errors=0\n"));
    free(o.text);
    CHECK_EQ(stream_events(s.port, "benchb"), 2345);

    /* ack none and a rate limit, into the same stream (it exists now). */
    o = run("bench --protocol bin --server 127.0.0.1:%d --http 127.0.0.1:%d --stream benchb --events 500 "
            "--clients 2 --batch 10 --ack none --rate 5000 --size 300",
            binport, s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=bin ack=none events=500 batch=10 clients=2 events_per_s="));
    CHECK(strstr(o.text, " errors=0\n"));
    free(o.text);
    CHECK_EQ(stream_events(s.port, "benchb"), 2845);

    /* HTTP, unchanged. */
    o = run("bench --server 127.0.0.1:%d --stream benchh --events 1000 --clients 2 --batch 1", s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=http ack=fsync events=1000 batch=1 clients=2 events_per_s="));
    CHECK(strstr(o.text, " errors=0\n"));
    free(o.text);
    CHECK_EQ(stream_events(s.port, "benchh"), 1000);

    /* Nothing listening on the binary port: exit 1 at once, with the reason. */
    o = run("bench --protocol bin --server 127.0.0.1:1 --http 127.0.0.1:%d --stream benchb --events 10 "
            "--clients 1 --batch 10",
            s.port);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "binary protocol at 127.0.0.1:1:"));
    free(o.text);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    puts("test_bench: ok");
    return 0;
}
