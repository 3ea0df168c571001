/*
 * The drain at SIGTERM (docs/architecture.md, "The connection core"), over
 * both listeners at once, with the fsync slowed by the test build's fault
 * hook (spillway_test: POST /debug/faults?files=segments&fsync_delay_us=U:
 * the segments' fsyncs only, so the shutdown's other fsyncs do not add up)
 * so that produce requests at ack=fsync are still waiting for their fsync
 * when the signal comes:
 *   - with --shutdown-drain 0 (the drain time is over at once) every
 *     request the server had dispatched is answered — 202 on HTTP, OK on
 *     the binary protocol — before the server exits; none is dropped with
 *     its connection;
 *   - the server exits 0 with "stopped cleanly" and nothing from a
 *     sanitizer on its stderr (under an AddressSanitizer build a
 *     completion posted to a freed loop is a heap-use-after-free report
 *     and an abort);
 *   - after a restart every acknowledged event is read back at the
 *     partition and offset its answer named.
 * Requests are known to be in flight from the listeners' request counters
 * in /metrics, and unanswered because none of their sockets has anything
 * to read yet: no timing decides the outcome.
 */
#include <poll.h>

#include "binframe.h"
#include "wire/frame.h"
#include "server.h"

#define MAXREQ 128
#define DELAY_US "1500000"

static const char *BIN, *TBIN;

static uint64_t num_after(const char *s, const char *key)
{
    const char *p = strstr(s, key);
    CHECK(p != NULL);
    return strtoull(p + strlen(key), NULL, 10);
}

typedef struct sent {
    int fd;
    int answered; /* 1: acknowledged, with part/off */
    uint32_t part;
    uint64_t off;
    char tag[32];
} sent;

static void http_send(sent *x, int port, int i)
{
    x->fd = tcp_connect(port);
    snprintf(x->tag, sizeof x->tag, "h-%d", i);
    char body[128], head[512];
    int bl = snprintf(body, sizeof body, "{\"tag\":\"%s\"}", x->tag);
    int n = snprintf(head, sizeof head,
                     "POST /v1/streams/d/events?ack=fsync HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Spillway-Priority: 0\r\nContent-Length: %d\r\n\r\n%s",
                     bl, body);
    send_all(x->fd, head, (size_t)n);
}

static void bin_send(sent *x, int port, int i)
{
    x->fd = tcp_connect(port);
    snprintf(x->tag, sizeof x->tag, "b-%d", i);
    char val[64];
    snprintf(val, sizeof val, "{\"tag\":\"%s\"}", x->tag);
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    CHECK_OK(spw_produce_req_begin(&b, "d", 1, SPW_ACK_FSYNC, 0, SPW_PARTITION_ANY, 0, 0, &ca));
    spw_frame_rec r = {.key_len = -1, .value = (const uint8_t *)val, .value_len = (uint32_t)strlen(val)};
    CHECK_OK(spw_produce_rec_put(&b, &r));
    spw_produce_req_set_count(&b, ca, 1);
    send_frame(x->fd, SPW_OP_PRODUCE, 1000 + (uint64_t)i, &b);
    spw_buf_fini(&b);
}

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void http_answer(sent *x)
{
    size_t cap = 1 << 16, have = 0;
    char *buf = malloc(cap);
    resp r = {0};
    if (read_resp(x->fd, &r, buf, cap, &have) == 0) {
        if (r.status != 202)
            fprintf(stderr, "%s: %d %s\n", x->tag, r.status, r.body);
        CHECK_EQ(r.status, 202);
        x->answered = 1;
        x->part = (uint32_t)num_after(r.body, "\"partition\":");
        x->off = num_after(r.body, "\"first_offset\":");
        free(r.body);
    }
    free(buf);
    close(x->fd);
}

static void bin_answer(sent *x)
{
    frame f;
    if (read_frame(x->fd, &f) == 0) {
        char code[256];
        CHECK_EQ(answer_status(&f, code, NULL), 0);
        uint16_t st;
        const uint8_t *rest;
        size_t rl;
        spw_frame_error e;
        const char *why;
        CHECK_EQ(spw_answer_decode(f.body, f.len, &st, &rest, &rl, &e, &why), 0);
        spw_produce_resp pr;
        CHECK_EQ(spw_produce_resp_decode(rest, rl, &pr, &why), 0);
        CHECK_EQ(pr.nslots, 1);
        spw_produce_slot s;
        spw_produce_resp_slot(&pr, 0, &s);
        x->answered = 1;
        x->part = s.partition;
        x->off = s.first_offset;
        free(f.body);
    }
    close(x->fd);
}

/* Reads the event at x's partition and offset and checks it is x's. */
static void check_stored(int port, const sent *x)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/d/events?partition=%u&offset=%" PRIu64 "&limit=1", x->part, x->off);
    resp r = http(port, "GET", path, NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    char needle[64];
    snprintf(needle, sizeof needle, "\"tag\":\"%s\"", x->tag);
    if (!strstr(r.body, needle))
        fprintf(stderr, "%s at %u/%" PRIu64 ": %s\n", x->tag, x->part, x->off, r.body);
    CHECK(strstr(r.body, needle) != NULL);
    free(r.body);
}

/* Reads the whole file at path (malloc'ed, NUL-terminated). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (cap - n < 4096)
            b = realloc(b, cap *= 2);
        size_t k = fread(b + n, 1, cap - n - 1, f);
        if (k == 0)
            break;
        n += k;
    }
    b[n] = 0;
    fclose(f);
    return b;
}

/* Starts with drain and io_threads, sends nhttp + nbin requests, SIGTERM
 * while every request waits for its fsync, check answers, exit and stderr,
 * restart and read the acknowledged events back. */
static void round_(const char *drain, const char *io_threads, int nhttp, int nbin)
{
    CHECK(nhttp <= MAXREQ && nbin <= MAXREQ);
    const int NHTTP = nhttp, NBIN = nbin;
    char *data = spw_test_tmpdir("drain");
    char logp[4200];
    snprintf(logp, sizeof logp, "%s.log", data);
    unlink(logp);
    const char *args[] = {"--shutdown-drain", drain, "--io-threads", io_threads, NULL};
    srv s;
    srv_start_log(&s, TBIN, data, args, logp);
    put_stream(s.port, "d", "{\"partitions\":2}");
    resp r = http(s.port, "POST", "/debug/faults?files=segments&fsync_delay_us=" DELAY_US, NULL, "", 0);
    CHECK_EQ(r.status, 200);
    free(r.body);

    long long h0 = srv_metric(s.port, "spillway_http_requests_total");
    long long b0 = srv_metric(s.port, "spillway_bin_requests_total");
    CHECK(h0 > 0 && b0 >= 0);
    static sent hs[MAXREQ], bs[MAXREQ];
    memset(hs, 0, sizeof hs);
    memset(bs, 0, sizeof bs);
    for (int i = 0; i < NHTTP; i++)
        http_send(&hs[i], s.port, i);
    for (int i = 0; i < NBIN; i++)
        bin_send(&bs[i], s.binport, i);
    /* Wait (bounded) until every request is dispatched: the HTTP counter
     * also counts the /metrics requests themselves (polls + 1 each). */
    int ok = 0;
    for (int k = 1; k <= 2000 && !ok; k++) {
        long long h = srv_metric(s.port, "spillway_http_requests_total");
        long long b = srv_metric(s.port, "spillway_bin_requests_total");
        ok = h >= h0 + NHTTP + 2 * k && b >= b0 + NBIN;
        if (!ok)
            usleep(5000);
    }
    CHECK(ok);
    /* In flight: dispatched and not answered. */
    int waiting = 0;
    for (int i = 0; i < NHTTP; i++)
        waiting += !readable(hs[i].fd);
    for (int i = 0; i < NBIN; i++)
        waiting += !readable(bs[i].fd);
    if (waiting != NHTTP + NBIN)
        fprintf(stderr, "note: %d of %d requests answered before SIGTERM\n", NHTTP + NBIN - waiting, NHTTP + NBIN);
    int rc = srv_stop(&s, SIGTERM);

    /* Every dispatched request is answered before the server exits. */
    int got = 0;
    for (int i = 0; i < NHTTP; i++) {
        http_answer(&hs[i]);
        if (!hs[i].answered)
            fprintf(stderr, "HTTP request %s dropped at shutdown\n", hs[i].tag);
        got += hs[i].answered;
    }
    for (int i = 0; i < NBIN; i++) {
        bin_answer(&bs[i]);
        if (!bs[i].answered)
            fprintf(stderr, "binary request %s dropped at shutdown\n", bs[i].tag);
        got += bs[i].answered;
    }
    char *log = slurp(logp);
    if (rc != 0 || strstr(log, "Sanitizer") || strstr(log, "runtime error") || !strstr(log, "stopped cleanly"))
        fprintf(stderr, "server (drain %s, io-threads %s) exited %d; its stderr:\n%s\n", drain, io_threads, rc, log);
    CHECK(strstr(log, "Sanitizer") == NULL);
    CHECK(strstr(log, "runtime error") == NULL);
    CHECK_EQ(rc, 0);
    CHECK(strstr(log, "stopped cleanly") != NULL);
    free(log);
    CHECK_EQ(got, NHTTP + NBIN);

    /* Acknowledged means stored. */
    srv_start(&s, BIN, data, NULL);
    for (int i = 0; i < NHTTP; i++)
        check_stored(s.port, &hs[i]);
    for (int i = 0; i < NBIN; i++)
        check_stored(s.port, &bs[i]);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    unlink(logp);
    spw_test_rmrf(data);
    free(data);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    BIN = argv[1];
    TBIN = argv[2];
    signal(SIGPIPE, SIG_IGN);
    /* The drain time over at once: what is in flight is still answered. */
    round_("0", "2", 12, 12);
    /* 80 loops: a drain that asked only the first 64 would leave the
     * requests on loops 64-79 unanswered and free those loops under their
     * fsync completions. The kernel spreads connections over the loops'
     * SO_REUSEPORT sockets by hash: with 224 connections, the chance that
     * none lands past the 64th is 0.8^224, below 1e-21. */
    round_("0", "80", 128, 96);
    printf("test_drain: ok\n");
    return 0;
}
