/*
 * A round's answers in one io_uring submission (docs/operations.md
 * "io_uring"; net/conn.h spw_netloop_flush), and the
 * send(2) path beside it: the same checks with io-uring true and false.
 *
 * 1. Many answers in one round: 40 connections each pipeline 10
 *    single-event produces (ack=fsync) in one write; every answer is 202,
 *    each connection's offsets come in its requests' order, and the
 *    partition holds exactly the 400 events.
 * 2. Answers larger than the socket takes: a client pipelines 4 reads of
 *    30 events of ~48 KiB each (~1.4 MB an answer) and reads nothing for a
 *    while, so the first send stops part way and the rest goes on EPOLLOUT;
 *    then every answer arrives whole and in order.
 * 3. The binary protocol under `spillway bench` answers every frame.
 * 4. The counters: with io-uring true on a kernel that allows io_uring
 *    (probed here: io_uring_setup), every loop has its ring
 *    (spillway_http_io_uring_loops, spillway_bin_io_uring_loops) and the
 *    sends above went through it (…_io_uring_sends_total > 0); with false,
 *    or where the kernel refuses, both are 0 and everything above still
 *    holds.
 * 5. `--io-uring maybe` is refused at start with a clear error.
 */
#include <linux/io_uring.h>
#include <sys/syscall.h>

#include "server.h"

#define NCONN 40
#define PIPE 10
#define NBIG 30
#define BIG_PAD 48000
#define NREAD 4

/* Whether this kernel lets a process set up an io_uring. Probed in a
 * child: a ring's teardown queues work to the task that made it, which
 * would interrupt this process's next recv (EINTR; SO_RCVTIMEO is set). */
static int uring_allowed(void)
{
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        struct io_uring_params prm;
        memset(&prm, 0, sizeof prm);
        _exit(syscall(__NR_io_uring_setup, 4, &prm) >= 0 ? 0 : 1);
    }
    int st;
    CHECK(waitpid(p, &st, 0) == p);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* The offset in a produce's 202 body ("first_offset":N), -1 without one. */
static long long offset_of(const char *body)
{
    const char *p = strstr(body, "\"first_offset\":");
    return p ? atoll(p + 15) : -1;
}

static void many_answers(int port)
{
    int fds[NCONN];
    char req[PIPE * 256];
    for (int c = 0; c < NCONN; c++) {
        fds[c] = tcp_connect(port);
        size_t n = 0;
        for (int i = 0; i < PIPE; i++) {
            char body[64];
            int bl = snprintf(body, sizeof body, "{\"k\":\"c%d\",\"n\":%d}", c, i);
            n += (size_t)snprintf(req + n, sizeof req - n,
                                  "POST /v1/streams/s/events?ack=fsync HTTP/1.1\r\nHost: t\r\n"
                                  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                                  bl, body);
        }
        send_all(fds[c], req, n);
    }
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    for (int c = 0; c < NCONN; c++) {
        size_t have = 0;
        long long last = -1;
        for (int i = 0; i < PIPE; i++) {
            resp r = {0};
            CHECK(read_resp(fds[c], &r, buf, cap, &have) == 0);
            if (r.status != 202)
                fprintf(stderr, "connection %d request %d: %d %s\n", c, i, r.status, r.body);
            CHECK_EQ(r.status, 202);
            long long off = offset_of(r.body);
            CHECK(off > last); /* one partition: this connection's requests in order */
            last = off;
            free(r.body);
        }
        CHECK_EQ(have, 0);
        close(fds[c]);
    }
    free(buf);
    CHECK_EQ(part_field(port, "/v1/streams/s", 0, "end_offset"), (uint64_t)(NCONN * PIPE));
}

static void big_answers(int port)
{
    /* NBIG events of BIG_PAD bytes each, every one with its number. */
    char *pad = malloc(BIG_PAD + 1);
    CHECK(pad != NULL);
    memset(pad, 'x', BIG_PAD);
    pad[BIG_PAD] = 0;
    size_t cap = (size_t)NBIG * (BIG_PAD + 64);
    char *nd = malloc(cap);
    CHECK(nd != NULL);
    size_t n = 0;
    for (int i = 0; i < NBIG; i++)
        n += (size_t)snprintf(nd + n, cap - n, "{\"k\":\"b\",\"n\":%d,\"pad\":\"%s\"}\n", i, pad);
    resp r = http(port, "POST", "/v1/streams/big/events?ack=fsync", "application/x-ndjson", nd, n);
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(nd);
    free(pad);

    int fd = tcp_connect(port);
    char req[NREAD * 160];
    n = 0;
    for (int i = 0; i < NREAD; i++)
        n += (size_t)snprintf(req + n, sizeof req - n,
                              "GET /v1/streams/big/events?partition=0&offset=%d&limit=%d HTTP/1.1\r\nHost: t\r\n\r\n",
                              i, NBIG);
    send_all(fd, req, n);
    /* Each answer (~1.4 MB) is more than the socket takes while nothing
     * is read: its first send stops part way, the rest waits for EPOLLOUT. */
    usleep(300 * 1000);
    size_t rcap = 8 << 20, have = 0;
    char *buf = malloc(rcap);
    CHECK(buf != NULL);
    for (int i = 0; i < NREAD; i++) {
        resp a = {0};
        CHECK(read_resp(fd, &a, buf, rcap, &have) == 0);
        CHECK_EQ(a.status, 200);
        /* events i .. NBIG-1, whole and in order */
        const char *at = a.body;
        for (int e = i; e < NBIG; e++) {
            char want[32];
            snprintf(want, sizeof want, "\"n\":%d,", e);
            const char *f = strstr(at, want);
            if (!f)
                fprintf(stderr, "read %d: no %s after byte %zu of %zu\n", i, want, (size_t)(at - a.body), a.body_len);
            CHECK(f != NULL);
            at = f + strlen(want) + BIG_PAD;
        }
        CHECK(at <= a.body + a.body_len);
        free(a.body);
    }
    CHECK_EQ(have, 0);
    free(buf);
    close(fd);
}

static void run(const char *bin, const char *mode, int allowed)
{
    char dir[] = "/tmp/spw-uring-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    srv s;
    const char *extra[] = {"--io-uring", mode, "--io-threads", "2", NULL};
    srv_start(&s, bin, dir, extra);
    put_stream(s.port, "s", "{\"partitions\":1}");
    put_stream(s.port, "big", "{\"partitions\":1}");
    many_answers(s.port);
    big_answers(s.port);
    cli_out o = cli_run(bin, "bench --protocol bin --server 127.0.0.1:%d --http 127.0.0.1:%d --stream b --events 20000 "
                             "--batch 10 --clients 8 --ack fsync",
                        s.binport, s.port);
    if (o.rc != 0)
        fprintf(stderr, "%s", o.text);
    CHECK_EQ(o.rc, 0);
    free(o.text);

    int on = !strcmp(mode, "true") && allowed;
    long long hl = srv_metric(s.port, "spillway_http_io_uring_loops");
    long long hs = srv_metric(s.port, "spillway_http_io_uring_sends_total");
    long long bl = srv_metric(s.port, "spillway_bin_io_uring_loops");
    long long bs = srv_metric(s.port, "spillway_bin_io_uring_sends_total");
    fprintf(stderr, "io-uring %s (kernel allows: %d): HTTP loops %lld sends %lld, binary loops %lld sends %lld\n", mode,
            allowed, hl, hs, bl, bs);
    if (on) {
        CHECK_EQ(hl, 2);
        CHECK_EQ(bl, 2);
        CHECK(hs >= NCONN); /* at least each connection's first answers */
        CHECK(bs > 0);
    } else {
        CHECK_EQ(hl, 0);
        CHECK_EQ(bl, 0);
        CHECK_EQ(hs, 0);
        CHECK_EQ(bs, 0);
    }
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    const char *bin = argv[1];
    int allowed = uring_allowed();
    run(bin, "true", allowed);
    run(bin, "false", allowed);

    char dir[] = "/tmp/spw-uring-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    cli_out o = cli_run(bin, "serve --data %s --listen 127.0.0.1:0 --listen-bin off --io-uring maybe", dir);
    CHECK(o.rc != 0);
    if (!strstr(o.text, "io-uring: expected true or false, got 'maybe'"))
        fprintf(stderr, "%s", o.text);
    CHECK(strstr(o.text, "io-uring: expected true or false, got 'maybe'") != NULL);
    free(o.text);
    rmdir(dir);
    return 0;
}
