/*
 * Hostile load (docs/operations.md "Memory"): clients that try to make the
 * server hold memory it cannot account for.
 *
 * 1. Unsent answers (max-unsent-bytes, send-timeout): many connections
 *    each ask for a large read and never read the answer. The server's
 *    VmRSS stays under a bound computed from the configured budgets, a
 *    normal client's reads keep being answered (its p99 is printed, not
 *    judged), and the non-reading connections are closed once their
 *    answers have not moved for send-timeout.
 * 2. Per-request working memory: 16 MiB bodies of tiny NDJSON events
 *    ({} lines) from 8 connections at once. The server does not abort,
 *    its VmRSS stays under the bound, and each is answered 202, 413 or
 *    503.
 * 3. Authentication before the budget: with a tokens file, clients without
 *    a valid token announce large bodies (HTTP) and frames (binary) and
 *    hold them. They hold none of max-buffer-bytes (spillway_buffer_bytes
 *    stays low), an HTTP holder still gets its 401 once its body is sent, a
 *    binary one is answered 401 at once, and an authenticated client's
 *    large request is served meanwhile.
 * 1b. Group polls' unsent answers: consumer-group polls of clients that do
 *    not read reserve their answer's room before reading their lease, so
 *    spillway_unsent_peak_bytes stays within max-unsent-bytes.
 *
 * Every loop is bounded; no assertion is about time.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "binframe.h"
#include "server.h"

static const char *BIN;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CHECK_RSS(cond) ((void)(cond))
#else
#define CHECK_RSS(cond) CHECK(cond)
#endif

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* A /metrics value (with the extra header lines, e.g. a token). */
static long long metric_tok(int port, const char *auth, const char *name)
{
    resp r = http_ex(port, "GET", "/metrics", NULL, auth, NULL, 0);
    CHECK_EQ(r.status, 200);
    long long v = metric_in(r.body, name);
    free(r.body);
    return v;
}

static void set_rcvtimeo(int fd, int sec)
{
    struct timeval tv = {.tv_sec = sec};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t p99(uint64_t *v, size_t n)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_u64);
    return v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
}

/* ---- 1: unsent answers ---- */

/* A stream "r" of 10,000 events of ~1 KiB: a read of all of them is an
 * answer of 8 MiB (SPW_API_READ_MAX_BYTES), past the kernel's buffers. */
static void fill_stream(int port)
{
    resp r = http_json(port, "PUT", "/v1/streams/r", "{\"partitions\":1}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    size_t cap = 12u << 20, n = 0;
    char *nd = malloc(cap);
    for (int i = 0; i < 10000; i++) {
        n += (size_t)sprintf(nd + n, "{\"i\":%d,\"pad\":\"", i);
        memset(nd + n, 'p', 1000);
        n += 1000;
        n += (size_t)sprintf(nd + n, "\"}\n");
    }
    r = http(port, "POST", "/v1/streams/r/events", "application/x-ndjson", nd, n);
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(nd);
}

static void test_unsent(const char *tmp)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/unsent", tmp);
    enum { NH = 2000, NB = 20, MAX_UNSENT_MIB = 16, NORMAL = 60 };
    const char *extra[] = {"--io-threads", "1", "--max-unsent-bytes", "16MiB", "--send-timeout", "10s",
                           "--idle-timeout", "600s", NULL};
    srv s;
    srv_start(&s, BIN, dir, extra);
    fill_stream(s.port);
    long rss_idle = rss_kib(s.pid);
    long long http0 = metric_tok(s.port, NULL, "spillway_http_requests_total");
    /* Clients that ask for a large read and never read: HTTP, and binary
     * FETCHes of 8 MiB. A small receive buffer, so the answers stay in
     * the server. */
    static const char get[] = "GET /v1/streams/r/events?partition=0&offset=0&limit=10000 HTTP/1.1\r\nHost: t\r\n\r\n";
    int hh[NH], bh[NB];
    int small = 4096;
    for (int i = 0; i < NH; i++) {
        hh[i] = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(hh[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(connect(hh[i], (struct sockaddr *)&sa, sizeof sa) == 0);
        send_all(hh[i], get, sizeof get - 1);
    }
    for (int i = 0; i < NB; i++) {
        bh[i] = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(bh[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.binport)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(connect(bh[i], (struct sockaddr *)&sa, sizeof sa) == 0);
        spw_buf fb = SPW_BUF_INIT;
        spw_fetch_req fq = {.stream = "r", .stream_len = 1, .partition = 0, .offset = 0, .max_bytes = 8u << 20};
        CHECK_OK(spw_fetch_req_encode(&fb, &fq));
        send_frame(bh[i], SPW_OP_FETCH, 1, &fb);
        spw_buf_fini(&fb);
    }
    /* Until the server has read every one of their requests (bounded; a
     * busy machine may take a while), VmRSS sampled. */
    long rss_max = rss_idle;
    uint64_t w0 = now_us();
    for (int i = 0; i < 1200; i++) {
        long rss = rss_kib(s.pid);
        if (rss > rss_max)
            rss_max = rss;
        /* the HTTP count holds this test's /metrics requests too */
        long long h = metric_tok(s.port, NULL, "spillway_http_requests_total");
        long long b = metric_tok(s.port, NULL, "spillway_bin_requests_total");
        if (h >= http0 + 2 * i + 1 + NH && b >= NB)
            break;
        usleep(50000);
    }
    printf("unsent: the server read their requests in %.1f s\n", (now_us() - w0) / 1e6);
    fflush(stdout);
    /* A normal client reads (~100 KiB answers) all along; the server's
     * VmRSS is sampled after each read. */
    uint64_t lat[NORMAL], plat[NORMAL];
    int n200 = 0, n503 = 0;
    for (int i = 0; i < NORMAL; i++) {
        /* Its produces are answered as ever (small answers). */
        uint64_t t0 = now_us();
        resp pr = http(s.port, "POST", "/v1/streams/r/events", "application/json", "{\"n\":1}", 7);
        plat[i] = now_us() - t0;
        CHECK_EQ(pr.status, 202);
        free(pr.body);
        t0 = now_us();
        resp r = http_json(s.port, "GET", "/v1/streams/r/events?partition=0&offset=0&limit=100", NULL);
        lat[i] = now_us() - t0;
        CHECK(r.status == 200 || r.status == 503);
        if (r.status == 200) {
            n200++;
            /* Whole, or cut to what the budget had left: at least one record. */
            uint64_t next = header_u64(&r, "Spillway-Next-Offset");
            CHECK(next >= 1 && next <= 100);
        } else {
            char ra[16];
            CHECK(header(&r, "Retry-After", ra, sizeof ra));
            CHECK(strstr(r.body, "overloaded") != NULL);
            n503++;
        }
        free(r.body);
        long rss = rss_kib(s.pid);
        if (rss > rss_max)
            rss_max = rss;
        usleep(50000);
    }
    /* The bound (docs/operations.md "Memory"): max-unsent-bytes, plus 24
     * MiB per I/O thread of each listener and per I/O worker (4; a read
     * answer being built, its copy, the log's read buffer), 4 KiB per
     * connection, the allocator slack (16 MiB). Without the budget these clients pin ~500 MiB. */
    long bound = rss_idle + MAX_UNSENT_MIB * 1024 + (2 + 4) * 24 * 1024 + (NH + NB + 2) * 4 + 16 * 1024;
    printf("unsent: %d HTTP + %d binary non-reading readers; normal client: reads %d x 200, %d x 503, p99 %.1f ms, "
           "produces %d x 202, p99 %.1f ms; VmRSS idle %ld max %ld KiB (bound %ld)\n",
           NH, NB, n200, n503, p99(lat, NORMAL) / 1000.0, NORMAL, p99(plat, NORMAL) / 1000.0, rss_idle, rss_max,
           bound);
    fflush(stdout);
    CHECK_RSS(rss_max <= bound);
    /* The non-reading connections are closed once their answers have not
     * moved for send-timeout, and what they held comes back. */
    long long to = 0, unsent = -1;
    for (int i = 0; i < 600; i++) {
        to = metric_tok(s.port, NULL, "spillway_http_send_timeouts_total") +
             metric_tok(s.port, NULL, "spillway_bin_send_timeouts_total");
        unsent = metric_tok(s.port, NULL, "spillway_unsent_bytes");
        if (unsent == 0 && to > 0)
            break;
        usleep(100000);
    }
    printf("unsent: %lld connections closed by send-timeout; spillway_unsent_bytes %lld\n", to, unsent);
    fflush(stdout);
    CHECK(to > 0);
    CHECK_EQ(unsent, 0);
    /* An HTTP one that was answered 200 finds its socket closed after
     * what the kernel held, short of the whole answer; the others were
     * answered 503 (a small answer, sent whole). */
    int cut = 0;
    for (int i = 0; i < NH; i++) {
        char buf[65536];
        set_rcvtimeo(hh[i], 10);
        ssize_t k = recv(hh[i], buf, 12, MSG_WAITALL);
        CHECK_EQ(k, 12);
        if (memcmp(buf, "HTTP/1.1 200", 12) == 0) {
            /* Its head, then the rest until the end or a pause. */
            static char head[4097], sink[1 << 16];
            memcpy(head, buf, 12);
            size_t hl = 12, got = 12, whole = 0;
            set_rcvtimeo(hh[i], 3);
            for (;;) {
                if (whole && got >= whole)
                    break; /* whole: cut to what the budget had left, and sent */
                int in_head = !whole && hl < 4096;
                k = recv(hh[i], in_head ? head + hl : sink, in_head ? 4096 - hl : sizeof sink, 0);
                if (k <= 0)
                    break;
                got += (size_t)k;
                if (in_head) {
                    hl += (size_t)k;
                    head[hl] = 0;
                    char *he = strstr(head, "\r\n\r\n"), *cl = strstr(head, "Content-Length: ");
                    if (he && cl)
                        whole = (size_t)(he + 4 - head) + (size_t)atol(cl + 16);
                }
            }
            CHECK(whole > 0);
            if (got != whole) {
                CHECK(k == 0 || errno == ECONNRESET); /* closed by send-timeout, short of its end */
                CHECK(got < whole);
                cut++;
            }
        } else {
            CHECK(memcmp(buf, "HTTP/1.1 503", 12) == 0);
        }
        close(hh[i]);
    }
    printf("unsent: %d HTTP answers cut by send-timeout\n", cut);
    for (int i = 0; i < NB; i++)
        close(bh[i]);
    /* Served as before: its reads whole again. */
    resp r = http_json(s.port, "GET", "/v1/streams/r/events?partition=0&offset=0&limit=3000", NULL);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Offset"), 3000);
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- 1b: unsent answers of group polls ---- */

/* Consumer-group polls (HTTP and binary) of 8 MiB answers by clients that
 * do not read them, each of its own group (so each leases the partition),
 * with max-unsent-bytes 12 MiB: every poll's answer reserves its room
 * before its lease is read, so the budget's peak stays within the limit
 * (but for one record and an answer's framing). Were the budget asked
 * only once the records were read, a poll finding 4 MiB left would hold
 * its 8 MiB: a peak of 16 MiB. */
static void test_group_unsent(const char *tmp)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/gunsent", tmp);
    enum { NH = 4, NB = 4, MAX_UNSENT = 12 << 20 };
    const char *extra[] = {"--io-threads", "1", "--max-unsent-bytes", "12MiB", "--send-timeout", "600s",
                           "--idle-timeout", "600s", NULL};
    srv s;
    srv_start(&s, BIN, dir, extra);
    fill_stream(s.port);
    int hh[NH], bh[NB];
    int small = 4096;
    for (int i = 0; i < NH + NB; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(i < NH ? s.port : s.binport))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
        set_rcvtimeo(fd, 60);
        char g[16];
        snprintf(g, sizeof g, "g%d", i);
        if (i < NH) {
            char req[256];
            int n = snprintf(req, sizeof req,
                             "POST /v1/streams/r/groups/%s/poll?max=10000 HTTP/1.1\r\nHost: t\r\n"
                             "Content-Length: 0\r\n\r\n",
                             g);
            send_all(fd, req, (size_t)n);
            hh[i] = fd;
        } else {
            spw_buf fb = SPW_BUF_INIT;
            spw_gpoll_req q = {.stream = "r", .stream_len = 1, .group = g, .group_len = (uint16_t)strlen(g),
                               .max = 10000};
            CHECK_OK(spw_gpoll_req_encode(&fb, &q));
            send_frame(fd, SPW_OP_GROUP_POLL, 1, &fb);
            spw_buf_fini(&fb);
            bh[i - NH] = fd;
        }
    }
    /* Each is answered: the beginning of its answer only is read. */
    int h200 = 0, h503 = 0, b_ok = 0, b_busy = 0;
    for (int i = 0; i < NH; i++) {
        char buf[13] = {0};
        CHECK_EQ(recv(hh[i], buf, 12, MSG_WAITALL), 12);
        if (memcmp(buf, "HTTP/1.1 200", 12) == 0)
            h200++;
        else if (memcmp(buf, "HTTP/1.1 503", 12) == 0)
            h503++;
        else
            CHECK(!"a poll answered neither 200 nor 503");
    }
    for (int i = 0; i < NB; i++) {
        uint8_t h[16];
        CHECK_EQ(recv_exact(bh[i], h, 16), 0);
        spw_frame_hdr fh;
        CHECK_EQ(spw_frame_hdr_decode(h, 16, 64u << 20, &fh), 0);
        size_t len = fh.length - 12;
        if (len > 65536) {
            b_ok++; /* records: the lease was delivered */
            continue;
        }
        frame f = {.h = fh, .len = len, .body = malloc(len + 1)};
        CHECK_EQ(recv_exact(bh[i], f.body, len), 0);
        char code[64] = "";
        uint32_t retry = 0;
        int st = answer_status(&f, code, &retry);
        if (st == 0) {
            b_ok++; /* a small answer: cut to what the budget had left */
        } else {
            CHECK_EQ(strcmp(code, "overloaded"), 0);
            CHECK(retry > 0);
            b_busy++;
        }
        free(f.body);
    }
    long long peak = metric_tok(s.port, NULL, "spillway_unsent_peak_bytes");
    printf("group unsent: HTTP polls %d x 200, %d x 503; binary %d delivered, %d overloaded; "
           "spillway_unsent_peak_bytes %lld (max-unsent-bytes %d)\n",
           h200, h503, b_ok, b_busy, peak, MAX_UNSENT);
    fflush(stdout);
    CHECK(h200 + b_ok >= 1);
    CHECK(h503 + b_busy >= 1); /* the budget was spent */
    /* One record (~1 KiB) and an answer's head past the limit at most. */
    CHECK(peak <= MAX_UNSENT + 16 * 1024);
    for (int i = 0; i < NH; i++)
        close(hh[i]);
    for (int i = 0; i < NB; i++)
        close(bh[i]);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- 2: per-request working memory ---- */

typedef struct tiny_arg {
    int port;
    const char *body;
    size_t len;
    int status;
} tiny_arg;

static void *tiny_post(void *p)
{
    tiny_arg *a = p;
    resp r = http(a->port, "POST", "/v1/streams/t/events", "application/x-ndjson", a->body, a->len);
    a->status = r.status;
    free(r.body);
    return NULL;
}

static void test_tiny_events(const char *tmp)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tiny", tmp);
    enum { NC = 8, BUFFER_MIB = 40, NORMAL = 40 };
    const char *extra[] = {"--io-threads", "1", "--max-buffer-bytes", "40MiB", NULL};
    srv s;
    srv_start(&s, BIN, dir, extra);
    resp r = http_json(s.port, "PUT", "/v1/streams/t", "{\"partitions\":4}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    long rss_idle = rss_kib(s.pid);
    /* 16 MiB of "{}" lines: 5.6 million events. */
    size_t len = 16u << 20;
    char *tiny = malloc(len);
    for (size_t i = 0; i + 3 <= len; i += 3)
        memcpy(tiny + i, "{}\n", 3);
    tiny[len - 1] = '\n';
    tiny[len - 2] = '\n';
    tiny_arg a[NC];
    pthread_t th[NC];
    for (int i = 0; i < NC; i++) {
        a[i] = (tiny_arg){.port = s.port, .body = tiny, .len = len};
        CHECK(pthread_create(&th[i], NULL, tiny_post, &a[i]) == 0);
    }
    /* Meanwhile a normal client produces small requests; VmRSS sampled. */
    uint64_t lat[NORMAL];
    int ok = 0;
    long rss_max = rss_idle;
    for (int i = 0; i < NORMAL; i++) {
        uint64_t t0 = now_us();
        resp n = http(s.port, "POST", "/v1/streams/t/events", "application/json", "{\"n\":1}", 7);
        lat[i] = now_us() - t0;
        CHECK(n.status == 202 || n.status == 503);
        ok += n.status == 202;
        free(n.body);
        long rss = rss_kib(s.pid);
        if (rss > rss_max)
            rss_max = rss;
        usleep(20000);
    }
    int st[600] = {0};
    for (int i = 0; i < NC; i++) {
        pthread_join(th[i], NULL);
        CHECK(a[i].status == 202 || a[i].status == 413 || a[i].status == 503);
        st[a[i].status]++;
    }
    long rss = rss_kib(s.pid);
    if (rss > rss_max)
        rss_max = rss;
    CHECK(kill(s.pid, 0) == 0); /* alive: nothing aborted */
    /* The bound (docs/operations.md "Memory"): max-buffer-bytes for the
     * bodies, plus per I/O thread (one HTTP, one binary) 64 KiB and one
     * request's working memory at most (4 x max-request-bytes, 16 MiB
     * here), 4 KiB per connection and the allocator slack (16 MiB).
     * Nothing was appended, so the pending data adds nothing. Without the
     * cap one such body took ~800 MiB. */
    long bound = rss_idle + BUFFER_MIB * 1024 + 2 * (64 + 4 * 16 * 1024 + 256) + (NC + 2) * 4 + 16 * 1024;
    printf("tiny events: %d x 16 MiB of {} lines: %d x 202, %d x 413, %d x 503; normal client %d/%d x 202, p99 "
           "%.1f ms; VmRSS idle %ld max %ld KiB (bound %ld)\n",
           NC, st[202], st[413], st[503], ok, NORMAL, p99(lat, NORMAL) / 1000.0, rss_idle, rss_max, bound);
    fflush(stdout);
    CHECK_RSS(rss_max <= bound);
    free(tiny);
    /* Refused before the memory they would need, never after (no 202: a
     * 16 MiB body of {} lines is past any request's working memory). */
    CHECK_EQ(st[202], 0);
    /* Its memory all came back, and a large request of ordinary events
     * (16 MiB of 1 KiB events) is served. */
    long long used = -1;
    for (int i = 0; i < 100 && used != 0; i++) {
        used = metric_tok(s.port, NULL, "spillway_buffer_bytes");
        if (used)
            usleep(50000);
    }
    CHECK_EQ(used, 0);
    size_t n1 = 0, cap = 16u << 20;
    char *big = malloc(cap);
    while (n1 + 1100 < cap) {
        n1 += (size_t)sprintf(big + n1, "{\"pad\":\"");
        memset(big + n1, 'x', 1000);
        n1 += 1000;
        n1 += (size_t)sprintf(big + n1, "\"}\n");
    }
    r = http(s.port, "POST", "/v1/streams/t/events", "application/x-ndjson", big, n1);
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(big);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

/* ---- 3: authentication before the budget ---- */

#define GOOD "good-0123456789abcdef0123"
#define AUTH_GOOD "Authorization: Bearer " GOOD "\r\n"

static void test_auth_first(const char *tmp)
{
    char dir[4096], tokens[4096];
    snprintf(dir, sizeof dir, "%s/auth", tmp);
    snprintf(tokens, sizeof tokens, "%s/tokens.json", tmp);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"tokens\":[{\"token\":\"" GOOD "\",\"tenant\":\"t\",\"streams\":[\"*\"],"
               "\"permissions\":[\"produce\",\"consume\",\"admin\"]}]}\n");
    fclose(f);
    /* A budget of 4 MiB: four 1 MB bodies fill it. */
    const char *extra[] = {"--tokens-file", tokens,         "--max-request-bytes", "1MiB", "--max-buffer-bytes",
                           "4MiB",          "--io-threads", "1",                   "--request-timeout", "120s",
                           NULL};
    srv s;
    srv_start(&s, BIN, dir, extra);
    resp r = http_ex(s.port, "PUT", "/v1/streams/s", "application/json", AUTH_GOOD, "{\"partitions\":1}", 16);
    CHECK_EQ(r.status, 201);
    free(r.body);

    enum { NH = 8, BODY = 1000000 };
    /* HTTP holders: no token, or a wrong one; 1 MB announced, 1000 bytes sent. */
    int hh[NH];
    char *pad = malloc(BODY);
    memset(pad, ' ', BODY);
    pad[BODY - 3] = '{', pad[BODY - 2] = '}', pad[BODY - 1] = '\n';
    for (int i = 0; i < NH; i++) {
        hh[i] = tcp_connect(s.port);
        char head[512];
        int n = snprintf(head, sizeof head,
                         "POST /v1/streams/s/events HTTP/1.1\r\nHost: t\r\n%sContent-Type: application/x-ndjson\r\n"
                         "Content-Length: %d\r\n\r\n",
                         i % 2 ? "Authorization: Bearer wrong-token-000000000\r\n" : "", BODY);
        send_all(hh[i], head, (size_t)n);
        send_all(hh[i], pad, 1000);
    }
    /* Binary holders: no AUTH; a 1 MB frame announced, 100 bytes sent. */
    int bh[NH];
    for (int i = 0; i < NH; i++) {
        bh[i] = tcp_connect(s.binport);
        set_rcvtimeo(bh[i], 10);
        uint8_t hd[116] = {0};
        uint32_t len = BODY;
        memcpy(hd, &len, 4); /* little-endian length (docs/protocol.md) */
        hd[4] = SPW_FRAME_VERSION;
        hd[5] = SPW_OP_METADATA;
        send_all(bh[i], hd, sizeof hd);
    }
    /* A binary holder is answered 401 at once, and closed. */
    for (int i = 0; i < NH; i++) {
        frame fr;
        CHECK(read_frame(bh[i], &fr) == 0);
        char code[64] = "";
        CHECK_EQ(answer_status(&fr, code, NULL), 401);
        CHECK(strcmp(code, "unauthorized") == 0);
        free(fr.body);
        char b;
        CHECK(recv(bh[i], &b, 1, 0) == 0);
        close(bh[i]);
    }
    /* The holders hold none of the budget (without authentication first
     * they held it all: 4 x 1 MB). Sampled a few times, as the server may
     * still be reading their headers. */
    long long used_max = 0;
    for (int i = 0; i < 10; i++) {
        usleep(50000);
        long long u = metric_tok(s.port, AUTH_GOOD, "spillway_buffer_bytes");
        if (u > used_max)
            used_max = u;
    }
    printf("auth first: spillway_buffer_bytes at most %lld with %d HTTP and %d binary holders\n", used_max, NH, NH);
    CHECK(used_max >= 0 && used_max < 512 * 1024);
    /* An authenticated client's 1 MB body is served meanwhile. */
    r = http_ex(s.port, "POST", "/v1/streams/s/events", "application/x-ndjson", AUTH_GOOD, pad, BODY);
    CHECK_EQ(r.status, 202);
    free(r.body);
    /* An authenticated binary connection sends large frames (an unknown
     * opcode: answered as such, not 401). */
    int bc = tcp_connect(s.binport);
    set_rcvtimeo(bc, 10);
    spw_buf ab = SPW_BUF_INIT;
    CHECK_OK(spw_auth_req_encode(&ab, GOOD, strlen(GOOD)));
    send_frame(bc, SPW_OP_AUTH, 1, &ab);
    spw_buf_fini(&ab);
    frame fr;
    CHECK(read_frame(bc, &fr) == 0);
    CHECK_EQ(answer_status(&fr, NULL, NULL), 0);
    free(fr.body);
    spw_buf big = SPW_BUF_INIT;
    CHECK_OK(spw_buf_reserve(&big, 100000));
    memset(big.p, 0, 100000);
    big.len = 100000;
    send_frame(bc, 99, 2, &big);
    spw_buf_fini(&big);
    CHECK(read_frame(bc, &fr) == 0);
    char code[64] = "";
    CHECK(answer_status(&fr, code, NULL) != 0);
    CHECK(strcmp(code, "unauthorized") != 0);
    free(fr.body);
    close(bc);
    /* The HTTP holders finish their bodies: 401, never served. */
    for (int i = 0; i < NH; i++) {
        send_all(hh[i], pad + 1000, BODY - 1000);
        size_t cap = 1 << 16, have = 0;
        char *buf = malloc(cap);
        resp a;
        CHECK(read_resp(hh[i], &a, buf, cap, &have) == 0);
        CHECK_EQ(a.status, 401);
        free(a.body);
        free(buf);
        close(hh[i]);
    }
    free(pad);
    /* Only the authenticated client's event is in the stream. */
    r = http_ex(s.port, "GET", "/v1/streams/s/events?partition=0&offset=0&limit=100", NULL, AUTH_GOOD, NULL, 0);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Offset"), 1);
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *tmp = spw_test_tmpdir("hostile");
    const char *only = getenv("SPW_HOSTILE_ONLY");
    if (!only || strcmp(only, "unsent") == 0)
        test_unsent(tmp);
    if (!only || strcmp(only, "groups") == 0)
        test_group_unsent(tmp);
    if (!only || strcmp(only, "tiny") == 0)
        test_tiny_events(tmp);
    if (!only || strcmp(only, "auth") == 0)
        test_auth_first(tmp);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("ok\n");
    return 0;
}
