/*
 * Slow and idle clients cannot stall others (docs/operations.md "Client limits"):
 *
 * 1. 1,000 connections trickle one byte a second, driven by one epoll
 *    thread: a third trickle the request head from its first byte, a third
 *    send the whole head and trickle the body, a third trickle bare CRLFs
 *    (which a parser skips before a request line, so they never start a
 *    request). Meanwhile a normal keep-alive client produces: every one of
 *    its requests must succeed and none may wait as long as the request
 *    timeout; its worst latency is printed. Every trickling connection
 *    must be closed by the server (408, or a close) no earlier than the
 *    request timeout after its first byte and no later than that plus a
 *    generous slack.
 * 2. 1,000 connections that send nothing are closed at the idle timeout
 *    (same bounds) while the normal client works.
 *
 * After each phase the server's own connection count is back to the normal
 * client's. Timing bounds are semantic (the configured timeouts), with
 * seconds of slack; the latencies are printed, not compared to a number.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include "cli/httpc.h"
#include "server.h"

#define NCONN 1000
#define REQUEST_TIMEOUT_MS 3000
#define IDLE_TIMEOUT_MS 4000
/* How late past its timeout a close may come (the server checks every
 * 100 ms; the rest is for a loaded machine). */
#define SLACK_MS 3000
/* How early: the server counts from when it read the first byte, which is
 * after we sent it, and we see the close after it happened; only the
 * millisecond rounding of its clock is left. */
#define EARLY_MS 50

enum kind { TRICKLE_HEAD, TRICKLE_BODY, TRICKLE_CRLF, IDLE };

static const char head_req[] = "POST /v1/streams/s/events HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: application/x-ndjson\r\nContent-Length: 64\r\n\r\n";

typedef struct sconn {
    int fd;
    enum kind kind;
    size_t pos; /* bytes of the request sent */
    uint64_t t_first_ns, t_close_ns;
    int got_408, closed;
} sconn;

typedef struct swarm {
    sconn c[NCONN];
    int port, epfd;
    int trickle;
    uint64_t deadline_ns;
    int open;
} swarm;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void mark_closed(swarm *w, sconn *c)
{
    if (c->closed)
        return;
    c->closed = 1;
    c->t_close_ns = mono_ns();
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    w->open--;
}

/* Sends the next byte of c's request; a failure means the server closed it. */
static void send_next(swarm *w, sconn *c)
{
    char b;
    switch (c->kind) {
    case TRICKLE_HEAD:
    case TRICKLE_BODY:
        b = c->pos < sizeof head_req - 1 ? head_req[c->pos] : 'x';
        break;
    case TRICKLE_CRLF:
        b = c->pos % 2 ? '\n' : '\r';
        break;
    default:
        return;
    }
    if (send(c->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
        c->pos++;
    else if (errno != EAGAIN && errno != EINTR)
        mark_closed(w, c);
}

static void read_conn(swarm *w, sconn *c)
{
    char buf[1024];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            if (n >= 12 && memcmp(buf, "HTTP/1.1 408", 12) == 0)
                c->got_408 = 1;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        mark_closed(w, c); /* EOF or reset */
        return;
    }
}

/* Opens NCONN connections of the given kinds; the first byte (or the head) goes out at once. */
static void swarm_open(swarm *w, int port, int trickle)
{
    memset(w, 0, sizeof *w);
    w->port = port;
    w->trickle = trickle;
    w->epfd = epoll_create1(0);
    CHECK(w->epfd >= 0);
    for (int i = 0; i < NCONN; i++) {
        sconn *c = &w->c[i];
        c->kind = trickle ? (enum kind)(i % 3) : IDLE;
        c->t_first_ns = mono_ns();
        c->fd = tcp_connect(port);
        if (c->kind == TRICKLE_BODY) {
            send_all(c->fd, head_req, sizeof head_req - 1);
            c->pos = sizeof head_req - 1;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        CHECK(epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) == 0);
        w->open++;
        send_next(w, c);
    }
}

/* One thread (the test's main one) drives every connection: a byte each per second, reads for the close. */
static void *swarm_main(void *arg)
{
    swarm *w = arg;
    struct epoll_event evs[256];
    uint64_t next_tick = mono_ns() + 1000000000u;
    while (w->open > 0 && mono_ns() < w->deadline_ns) {
        uint64_t now = mono_ns();
        int wait_ms = !w->trickle ? 100 : next_tick > now ? (int)((next_tick - now) / 1000000u) + 1 : 0;
        int n = epoll_wait(w->epfd, evs, 256, wait_ms);
        for (int i = 0; i < n; i++)
            read_conn(w, evs[i].data.ptr);
        if (w->trickle && mono_ns() >= next_tick) {
            for (int i = 0; i < NCONN; i++)
                if (!w->c[i].closed)
                    send_next(w, &w->c[i]);
            next_tick += 1000000000u;
        }
    }
    return NULL;
}

typedef struct normal_client {
    int port;
    _Atomic int *stop;
    _Atomic int started; /* its first request was answered */
    int ok, failed;
    uint64_t worst_ns, total_ns;
} normal_client;

/* The normal client: one produce every 20 ms on a keep-alive connection until *stop. */
static void *normal_main(void *arg)
{
    normal_client *n = arg;
    spw_httpc c;
    char p[16];
    snprintf(p, sizeof p, "%d", n->port);
    spw_httpc_init(&c, "127.0.0.1", p);
    static const char body[] = "{\"k\":\"a\",\"v\":1}\n{\"k\":\"b\",\"v\":2}\n";
    for (int i = 0; i < 100000 && !atomic_load(n->stop); i++) {
        spw_httpc_resp r;
        uint64_t t0 = mono_ns();
        int s = spw_httpc_request(&c, "POST", "/v1/streams/s/events", "application/x-ndjson", NULL, body,
                                  sizeof body - 1, 1000, &r);
        uint64_t dt = mono_ns() - t0;
        if (s == 202) {
            n->ok++;
        } else {
            n->failed++;
            fprintf(stderr, "normal client: request %d got %d (%s)\n", i, s, s < 0 ? strerror(errno) : "");
        }
        atomic_store(&n->started, 1);
        n->total_ns += dt;
        if (dt > n->worst_ns)
            n->worst_ns = dt;
        usleep(20000);
    }
    atomic_store(&n->started, 1);
    spw_httpc_close(&c);
    return NULL;
}

static int http_connections(int port)
{
    resp r = http(port, "GET", "/metrics", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    const char *p = strstr(r.body, "\nspillway_http_connections ");
    CHECK(p != NULL);
    int n = atoi(p + 27);
    free(r.body);
    return n;
}

/* Runs one phase: the swarm and the normal client side by side; checks both. */
static void phase(int port, int trickle)
{
    static swarm w;
    uint64_t timeout_ms = trickle ? REQUEST_TIMEOUT_MS : IDLE_TIMEOUT_MS;
    /* The normal client is already at work (connected, keep-alive) when
     * the swarm arrives, and keeps working until the last of it is closed. */
    _Atomic int stop = 0;
    normal_client st = {.port = port, .stop = &stop};
    pthread_t th;
    pthread_create(&th, NULL, normal_main, &st);
    for (int i = 0; i < 1000 && !atomic_load(&st.started); i++)
        usleep(10000);
    CHECK(atomic_load(&st.started));
    swarm_open(&w, port, trickle);
    w.deadline_ns = mono_ns() + (timeout_ms + SLACK_MS + 2000) * 1000000u;
    swarm_main(&w);
    atomic_store(&stop, 1);
    pthread_join(th, NULL);

    const char *what = trickle ? "trickling" : "idle";
    uint64_t lo = UINT64_MAX, hi = 0;
    int closed = 0, with_408 = 0, early = 0, late = 0;
    int by_kind[4] = {0};
    for (int i = 0; i < NCONN; i++) {
        sconn *c = &w.c[i];
        if (!c->closed) {
            close(c->fd);
            continue;
        }
        closed++;
        by_kind[c->kind]++;
        with_408 += c->got_408;
        uint64_t d = (c->t_close_ns - c->t_first_ns) / 1000000u;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        early += d + EARLY_MS < timeout_ms;
        late += d > timeout_ms + SLACK_MS;
    }
    close(w.epfd);
    printf("%s: %d of %d connections closed by the server", what, closed, NCONN);
    if (trickle)
        printf(" (%d with a 408; trickling the head %d, the body %d, CRLFs %d)", with_408, by_kind[TRICKLE_HEAD],
               by_kind[TRICKLE_BODY], by_kind[TRICKLE_CRLF]);
    printf(", %" PRIu64 "..%" PRIu64 " ms after %s (timeout %" PRIu64 " ms)\n", lo, hi,
           trickle ? "their first byte" : "connecting", timeout_ms);
    printf("normal client meanwhile: %d requests answered 202, %d failed, mean %.2f ms, worst %.2f ms\n", st.ok,
           st.failed, st.ok ? (double)st.total_ns / (st.ok + st.failed) / 1e6 : 0, (double)st.worst_ns / 1e6);
    fflush(stdout);
    CHECK_EQ(closed, NCONN);
    CHECK_EQ(early, 0);
    CHECK_EQ(late, 0);
    CHECK_EQ(st.failed, 0);
    CHECK(st.ok > 0);
    CHECK(st.worst_ns < (uint64_t)REQUEST_TIMEOUT_MS * 1000000u);
    /* The server let go of them: only the metrics request's own connection
     * is left (once the server has seen the normal client's close too). */
    int left = 0;
    for (int i = 0; i < 250 && (left = http_connections(port)) != 1; i++)
        usleep(20000);
    CHECK_EQ(left, 1);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    signal(SIGPIPE, SIG_IGN);
    /* NCONN sockets here, as many in the server (which inherits the limit). */
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rlim_t want = 3 * NCONN;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    if (rl.rlim_cur < NCONN + 64) {
        printf("skipped: RLIMIT_NOFILE is %llu, need %d\n", (unsigned long long)rl.rlim_cur, NCONN + 64);
        return 0;
    }
    char *tmp = spw_test_tmpdir("slow");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv s;
    const char *extra[] = {"--request-timeout", "3s", "--idle-timeout", "4s", NULL};
    srv_start(&s, argv[1], data, extra);
    resp r = http_json(s.port, "PUT", "/v1/streams/s", "{\"partitions\":2}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    phase(s.port, 1);
    phase(s.port, 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    puts("test_slowclient ok");
    return 0;
}
