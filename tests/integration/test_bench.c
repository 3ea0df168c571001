/*
 * `spillway bench` against a real server on loopback with both listeners:
 * --protocol bin (the binary protocol through the C client library, the
 * stream created over --http) and --protocol http each print their BENCH
 * line with errors=0, and every event is in the stream afterwards (the sum
 * of end_offsets from GET /v1/streams/NAME). Usage errors exit 2.
 *
 * The burst benchmark's options (bench/burst.sh): --duration (closed loop
 * and with --rate), the open loop (--inflight: exactly rate x duration
 * events offered, short last request included), --priorities (the
 * per-priority counts), and the answers counted by outcome: 429s from a
 * rate-limited server (errors unless --refusals-ok), 503 shed and
 * backpressure from spillway_test with fsync slowed by its fault hook and
 * a small pending budget. Every event counted accepted is in the stream,
 * and nothing else is.
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

/* The number after " key=" (or at the start of a line) in text. */
static unsigned long long num(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, " %s=", key);
    const char *p = strstr(text, k);
    CHECK(p != NULL);
    return strtoull(p + strlen(k), NULL, 10);
}

/* The requests and events of the outcome row name ("accepted", "shed", ...). */
static void row(const char *text, const char *name, unsigned long long *req, unsigned long long *ev)
{
    char k[64];
    snprintf(k, sizeof k, "\n%s ", name);
    const char *p = strstr(text, k);
    CHECK(p != NULL);
    CHECK_EQ(sscanf(p + strlen(k), "%llu %llu", req, ev), 2);
}

/* Events of the outcome rows together. */
static unsigned long long all_events(const char *text)
{
    static const char *names[] = {"accepted", "shed", "backpressure", "rate_limit", "disk", "other", "failed"};
    unsigned long long sum = 0, r, e;
    for (int i = 0; i < 7; i++) {
        row(text, names[i], &r, &e);
        sum += e;
    }
    return sum;
}

/* POST /debug/faults?q (spillway_test) answers 200. */
static void faults(int port, const char *q)
{
    char path[256];
    snprintf(path, sizeof path, "/debug/faults?%s", q);
    resp r = http(port, "POST", path, "application/x-www-form-urlencoded", "", 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    BIN = argv[1];
    const char *TBIN = argv[2];
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
    CHECK(strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    /* the server's CPU per event, from its process_cpu_seconds_total */
    {
        const char *cpu = strstr(o.text, " server_cpu_ns_per_event=") + 25;
        CHECK(*cpu >= '0' && *cpu <= '9');
        CHECK(strstr(o.text, "server CPU   ") != NULL);
    }
    free(o.text);
    CHECK_EQ(stream_events(s.port, "benchb"), 2345);

    /* ack none and a rate limit, into the same stream (it exists now). */
    o = run("bench --protocol bin --server 127.0.0.1:%d --http 127.0.0.1:%d --stream benchb --events 500 "
            "--clients 2 --batch 10 --ack none --rate 5000 --size 300",
            binport, s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=bin ack=none events=500 batch=10 clients=2 events_per_s="));
    CHECK(strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    free(o.text);
    /* end_offset is the written end, and an ack=none answer comes before
     * the flusher has written the batch: the last ones may not be counted
     * yet when the bench has exited (bounded wait: 10 s) */
    unsigned long long nb = 0;
    for (int i = 0; i < 1000 && (nb = stream_events(s.port, "benchb")) < 2845; i++)
        usleep(10000);
    CHECK_EQ(nb, 2845);

    /* HTTP, unchanged. */
    o = run("bench --server 127.0.0.1:%d --stream benchh --events 1000 --clients 2 --batch 1", s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=http ack=fsync events=1000 batch=1 clients=2 events_per_s="));
    CHECK(strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    free(o.text);
    CHECK_EQ(stream_events(s.port, "benchh"), 1000);

    /* Nothing listening on the binary port: exit 1 at once, with the reason. */
    o = run("bench --protocol bin --server 127.0.0.1:1 --http 127.0.0.1:%d --stream benchb --events 10 "
            "--clients 1 --batch 10",
            s.port);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "binary protocol at 127.0.0.1:1:"));
    free(o.text);

    /* The burst options: usage errors. */
    o = run("bench --server 127.0.0.1:%d --inflight 10", s.port);
    CHECK_EQ(o.rc, 2);
    CHECK(strstr(o.text, "--inflight (open loop) needs --rate"));
    free(o.text);
    o = run("bench --server 127.0.0.1:%d --priorities 0,4", s.port);
    CHECK_EQ(o.rc, 2);
    CHECK(strstr(o.text, "--priorities takes up to 64 of 0, 1, 2, 3"));
    free(o.text);
    o = run("bench --server 127.0.0.1:%d --priorities 0,,1", s.port);
    CHECK_EQ(o.rc, 2);
    free(o.text);
    o = run("bench --server 127.0.0.1:%d --duration 0", s.port);
    CHECK_EQ(o.rc, 2);
    CHECK(strstr(o.text, "--duration takes seconds"));
    free(o.text);
    o = run("bench --protocol bin --server 127.0.0.1:%d --http 127.0.0.1:%d --priorities 0", binport, s.port);
    CHECK_EQ(o.rc, 2);
    CHECK(strstr(o.text, "are for --protocol http"));
    free(o.text);
    o = run("bench --server 127.0.0.1:%d --rate 1000000000 --duration 10 --inflight 5", s.port);
    CHECK_EQ(o.rc, 2);
    free(o.text);

    /* Closed loop for a duration, two priorities: every event accepted and
     * stored, and counted under its priority. */
    o = run("bench --server 127.0.0.1:%d --stream burstc --duration 0.5 --clients 3 --batch 2 --priorities 0,3",
            s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=http ack=fsync events="));
    CHECK(strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    CHECK(strstr(o.text, "BENCH bench_responses protocol=http loop=closed "));
    unsigned long long n = num(o.text, "events"), req, ev;
    CHECK(n > 0);
    row(o.text, "accepted", &req, &ev);
    CHECK_EQ(ev, n);
    CHECK_EQ(all_events(o.text), n);
    CHECK_EQ(num(o.text, "p0_offered") + num(o.text, "p3_offered"), n);
    CHECK_EQ(num(o.text, "p0_accepted") + num(o.text, "p3_accepted"), n);
    CHECK(num(o.text, "p0_offered") > 0 && num(o.text, "p3_offered") > 0);
    CHECK_EQ(num(o.text, "p1_offered"), 0);
    free(o.text);
    CHECK_EQ(stream_events(s.port, "burstc"), n);
    /* The same over the binary protocol: --duration bounds it too. */
    o = run("bench --protocol bin --server 127.0.0.1:%d --http 127.0.0.1:%d --stream burstb --duration 0.5 "
            "--clients 2 --batch 10",
            binport, s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    n = num(o.text, "events");
    CHECK(n > 0);
    free(o.text);
    CHECK_EQ(stream_events(s.port, "burstb"), n);

    /* Open loop: exactly rate x duration events, whatever the timing; with
     * --batch 3 the last of the 334 requests carries one event. */
    o = run("bench --server 127.0.0.1:%d --stream bursto --rate 1000 --duration 1 --inflight 32 --clients 4 "
            "--batch 3 --priorities 0,1,2,3",
            s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench protocol=http ack=fsync events=1000 batch=3 clients=4 events_per_s="));
    CHECK(strstr(o.text, "BENCH bench_responses protocol=http loop=open seconds=1.000 offered_per_s=1000 "));
    CHECK(strstr(o.text, " accepted_per_s=1000 rejected_per_s=0 "));
    row(o.text, "accepted", &req, &ev);
    CHECK_EQ(req, 334);
    CHECK_EQ(ev, 1000);
    CHECK_EQ(all_events(o.text), 1000);
    /* Request i has priority i % 4: 84, 84, 83 and 83 requests of 3
     * events, but the last one (333, priority 1) carries 1. */
    CHECK_EQ(num(o.text, "p0_offered"), 252);
    CHECK_EQ(num(o.text, "p1_offered"), 250);
    CHECK_EQ(num(o.text, "p2_offered"), 249);
    CHECK_EQ(num(o.text, "p3_offered"), 249);
    CHECK_EQ(num(o.text, "p1_accepted"), 250);
    free(o.text);
    CHECK_EQ(stream_events(s.port, "bursto"), 1000);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* A rate-limited server: the 429s are counted as rate_limit, are
     * errors unless --refusals-ok, and only the accepted events are in the
     * stream. */
    snprintf(data, sizeof data, "%s/data-rl", tmp);
    const char *rl[] = {"--rate-limit", "100", "--rate-limit-burst", "100", NULL};
    srv_start(&s, BIN, data, rl);
    o = run("bench --server 127.0.0.1:%d --stream burstr --rate 1000 --duration 1 --inflight 16 --batch 1", s.port);
    CHECK_EQ(o.rc, 1);
    unsigned long long acc1, lim1;
    row(o.text, "accepted", &req, &acc1);
    row(o.text, "rate_limit", &req, &lim1);
    CHECK(acc1 > 0 && lim1 > 0);
    CHECK_EQ(acc1 + lim1, 1000);
    CHECK_EQ(num(o.text, "errors"), lim1);
    CHECK(strstr(o.text, "last error: HTTP 429: "));
    free(o.text);
    o = run("bench --server 127.0.0.1:%d --stream burstr --rate 1000 --duration 1 --inflight 16 --batch 1 "
            "--refusals-ok",
            s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    unsigned long long acc2, lim2;
    row(o.text, "accepted", &req, &acc2);
    row(o.text, "rate_limit", &req, &lim2);
    CHECK(lim2 > 0);
    CHECK_EQ(acc2 + lim2, 1000);
    CHECK_EQ(all_events(o.text), 1000);
    CHECK_EQ(num(o.text, "rejected_per_s"), lim2); /* seconds=1.000 */
    free(o.text);
    CHECK_EQ(stream_events(s.port, "burstr"), acc1 + acc2);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* Overload: a 64 KiB pending budget and fsync slowed to 200 ms, 4 MB/s
     * offered. Priority 3 is shed below the high watermark, everything but
     * priority 0 gets backpressure above it; priority 0 fares at least as
     * well as priority 3; what was accepted is stored. */
    snprintf(data, sizeof data, "%s/data-ov", tmp);
    const char *ov[] = {"--max-pending-bytes", "64KiB", NULL};
    srv_start(&s, TBIN, data, ov);
    o = run("bench --server 127.0.0.1:%d --stream bursts --rate 10 --duration 1 --inflight 4 --batch 1", s.port);
    CHECK_EQ(o.rc, 0); /* creates the stream before fsync is slowed */
    free(o.text);
    faults(s.port, "fsync_delay_us=200000");
    o = run("bench --server 127.0.0.1:%d --stream bursts --rate 4000 --duration 1 --inflight 4096 --clients 64 "
            "--batch 1 --size 1000 --priorities 0,1,2,3 --refusals-ok",
            s.port);
    CHECK_EQ(o.rc, 0);
    unsigned long long acc3, shed, bp;
    row(o.text, "accepted", &req, &acc3);
    row(o.text, "shed", &req, &shed);
    row(o.text, "backpressure", &req, &bp);
    CHECK(acc3 > 0 && shed > 0 && bp > 0);
    CHECK_EQ(all_events(o.text), 4000);
    CHECK(num(o.text, "p0_accepted") >= num(o.text, "p3_accepted"));
    CHECK_EQ(num(o.text, "p0_offered"), 1000);
    free(o.text);
    faults(s.port, "fsync_delay_us=0");
    CHECK_EQ(stream_events(s.port, "bursts"), 10 + acc3);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    puts("test_bench: ok");
    return 0;
}
