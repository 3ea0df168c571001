/*
 * Rate limits against the real server (docs/api.md "Rate limits"):
 * HTTP 429 with Retry-After and RateLimit-Limit/Remaining/Reset, the
 * headers on 202, 413 over_burst, nothing appended for a refused request,
 * the sliding window; the binary protocol's throttled answer with
 * retry_after_ms, sharing the HTTP limit; keying per IP (clients bound to
 * 127.0.0.1 and 127.0.0.2) and per tenant falling back to the IP; SIGHUP
 * changing the server-wide default (flags still winning, a bad file
 * changing nothing); the client library waiting retry_after_ms; and
 * fairness: a client flooding at 10x its limit from 127.0.0.2 does not
 * push a polite client at 80% of its limit on 127.0.0.1 below 90% of what
 * it offered, for both algorithms.
 *
 * Limits are chosen slow (0.1 event/s) where a test needs a refusal to
 * stay a refusal, so no assertion depends on how fast the machine is.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "wire/frame.h"
#include "binframe.h"
#include "server.h"
#include "spillway.h"

static const char *BIN;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- HTTP from a chosen source address, keep-alive ---- */

typedef struct kconn {
    int fd;
    char *buf;
    size_t have, cap;
} kconn;

static int connect_from(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in la = {.sin_family = AF_INET};
    CHECK(inet_pton(AF_INET, src, &la.sin_addr) == 1);
    CHECK(bind(fd, (struct sockaddr *)&la, sizeof la) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void kopen(kconn *k, int port, const char *src)
{
    k->fd = connect_from(port, src);
    k->cap = 1 << 20;
    k->buf = malloc(k->cap);
    k->have = 0;
}

static void kclose(kconn *k)
{
    close(k->fd);
    free(k->buf);
}

static resp kreq(kconn *k, const char *method, const char *path, const char *body)
{
    char head[512];
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n", method, path,
                     body ? "Content-Type: application/json\r\n" : "", bl);
    send_all(k->fd, head, (size_t)n);
    if (bl)
        send_all(k->fd, body, bl);
    resp r = {0};
    CHECK(read_resp(k->fd, &r, k->buf, k->cap, &k->have) == 0);
    return r;
}

/* One request on a fresh connection from src. */
static resp http_from(int port, const char *src, const char *method, const char *path, const char *body)
{
    kconn k;
    kopen(&k, port, src);
    resp r = kreq(&k, method, path, body);
    kclose(&k);
    return r;
}

/* A header's numeric value, or -1 if absent. */
static long hdr(const resp *r, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *p = strstr(r->headers, pat);
    return p ? atol(p + strlen(pat)) : -1;
}

static void expect(resp r, int status, const char *needle)
{
    if (r.status != status || (needle && !strstr(r.body, needle))) {
        fprintf(stderr, "expected %d with %s, got %d:\n%s%s\n", status, needle ? needle : "-", r.status, r.headers,
                r.body);
        CHECK(0);
    }
    free(r.body);
}

/* Sum of the stream's partition end offsets: events stored. */
static uint64_t stored(int port, const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    resp r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    uint64_t sum = 0;
    for (const char *p = r.body; (p = strstr(p, "\"end_offset\":")); p++)
        sum += strtoull(p + 13, NULL, 10);
    free(r.body);
    return sum;
}

static uint64_t rejected_rate(int port)
{
    resp r = http(port, "GET", "/metrics", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    static const char name[] = "spillway_rejected_total{reason=\"rate_limit\"} ";
    const char *p = strstr(r.body, name);
    CHECK(p != NULL);
    uint64_t v = strtoull(p + sizeof name - 1, NULL, 10);
    free(r.body);
    return v;
}

static void create(int port, const char *name, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", name);
    resp r = http_json(port, "PUT", path, body);
    if (r.status != 201)
        fprintf(stderr, "create %s: %d %s\n", name, r.status, r.body);
    CHECK_EQ(r.status, 201);
    free(r.body);
}

/* ---- HTTP ---- */

static void test_http(int port)
{
    create(port, "tb", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":0.1,\"burst\":2,\"per\":\"ip\"}}");
    uint64_t rej0 = rejected_rate(port);
    /* 202s carry the RateLimit fields. */
    resp r = http_from(port, "127.0.0.1", "POST", "/v1/streams/tb/events", "{\"n\":1}");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), 2);
    CHECK_EQ(hdr(&r, "RateLimit-Remaining"), 1);
    CHECK(hdr(&r, "RateLimit-Reset") >= 1 && hdr(&r, "RateLimit-Reset") <= 10); /* 1 token at 0.1/s */
    CHECK_EQ(hdr(&r, "Retry-After"), -1);
    expect(r, 202, "\"accepted\":1");
    /* Two events, one token: refused whole, with all four headers. */
    r = http_from(port, "127.0.0.1", "POST", "/v1/streams/tb/events", "[{\"n\":2},{\"n\":3}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), 2);
    CHECK_EQ(hdr(&r, "RateLimit-Remaining"), 1);
    CHECK(hdr(&r, "RateLimit-Reset") >= 1 && hdr(&r, "RateLimit-Reset") <= 10);
    CHECK(hdr(&r, "Retry-After") >= 1 && hdr(&r, "Retry-After") <= 10);
    CHECK(strstr(r.body, "\"retry_after_ms\":") != NULL);
    expect(r, 429, "\"code\":\"rate_limited\"");
    r = http_from(port, "127.0.0.1", "POST", "/v1/streams/tb/events", "{\"n\":4}");
    CHECK_EQ(hdr(&r, "RateLimit-Remaining"), 0);
    expect(r, 202, "\"accepted\":1");
    r = http_from(port, "127.0.0.1", "POST", "/v1/streams/tb/events", "{\"n\":5}");
    CHECK(hdr(&r, "Retry-After") >= 1 && hdr(&r, "Retry-After") <= 10);
    CHECK_EQ(hdr(&r, "RateLimit-Remaining"), 0);
    expect(r, 429, "\"code\":\"rate_limited\"");
    /* More than the burst can never pass: 413, saying the burst. */
    r = http_from(port, "127.0.0.1", "POST", "/v1/streams/tb/events", "[{},{},{}]");
    CHECK_EQ(hdr(&r, "Retry-After"), -1);
    expect(r, 413, "\"code\":\"over_burst\",\"burst\":2");
    /* Invalid requests take nothing: a 400 leaves the refusals as they were. */
    expect(http_from(port, "127.0.0.1", "POST", "/v1/streams/tb/events", "{\"n\":"), 400, "invalid_json");
    CHECK_EQ(stored(port, "tb"), 2); /* nothing of the refused ones */
    CHECK_EQ(rejected_rate(port) - rej0, 3);

    /* A stream without a limit (and no server default): no RateLimit fields. */
    create(port, "free", "{\"ack\":\"written\"}");
    r = http_from(port, "127.0.0.1", "POST", "/v1/streams/free/events", "[{},{},{},{},{}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), -1);
    expect(r, 202, "\"accepted\":5");

    /* Sliding window: 3 in any second, the 4th waits for the window. */
    create(port, "sw", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":3,\"per\":\"ip\",\"algorithm\":\"sliding_window\"}}");
    r = http_from(port, "127.0.0.1", "POST", "/v1/streams/sw/events", "[{},{},{}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), 3);
    CHECK_EQ(hdr(&r, "RateLimit-Remaining"), 0);
    expect(r, 202, "\"accepted\":3");
    r = http_from(port, "127.0.0.1", "POST", "/v1/streams/sw/events", "{}");
    int refused = r.status == 429;
    if (refused) /* unless the machine stalled for a second in between */
        CHECK(hdr(&r, "Retry-After") >= 1 && hdr(&r, "Retry-After") <= 2);
    free(r.body);
    expect(http_from(port, "127.0.0.1", "POST", "/v1/streams/sw/events", "[{},{},{},{}]"), 413, "over_burst");
    CHECK_EQ(stored(port, "sw"), refused ? 3 : 4);
}

/* ---- binary protocol ---- */

/* A PRODUCE of n records "{}" on fd; the status, error code and retry. */
static int bin_produce(int fd, const char *stream, uint32_t n, char *code, uint32_t *retry)
{
    static uint64_t id = 1;
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    CHECK_OK(spw_produce_req_begin(&b, stream, strlen(stream), SPW_ACK_DEFAULT, 1, SPW_PARTITION_ANY, 0, 0,
                                   &ca));
    for (uint32_t i = 0; i < n; i++) {
        spw_frame_rec r = {.key_len = -1, .value = (const uint8_t *)"{}", .value_len = 2};
        CHECK_OK(spw_produce_rec_put(&b, &r));
    }
    spw_produce_req_set_count(&b, ca, n);
    uint64_t my = id++;
    send_frame(fd, SPW_OP_PRODUCE, my, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    CHECK_EQ(f.h.request_id, my);
    code[0] = 0;
    *retry = 0;
    int st = answer_status(&f, code, retry);
    free(f.body);
    return st;
}

static void test_binary(srv *s)
{
    create(s->port, "bin", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":0.1,\"burst\":2}}");
    int fd = tcp_connect(s->binport);
    char code[256];
    uint32_t retry;
    CHECK_EQ(bin_produce(fd, "bin", 2, code, &retry), 0);
    CHECK_EQ(bin_produce(fd, "bin", 1, code, &retry), SPW_ST_RATE_LIMITED);
    CHECK(strcmp(code, "rate_limited") == 0);
    CHECK(retry >= 1 && retry <= 10000); /* one token at 0.1/s */
    CHECK_EQ(bin_produce(fd, "bin", 3, code, &retry), SPW_ST_TOO_LARGE);
    CHECK(strcmp(code, "over_burst") == 0);
    CHECK_EQ(retry, 0);
    /* The connection stays usable, and HTTP from the same address shares
     * the limit (per tenant without tokens = per IP). */
    expect(http_from(s->port, "127.0.0.1", "POST", "/v1/streams/bin/events", "{}"), 429, "rate_limited");
    CHECK_EQ(bin_produce(fd, "bin", 1, code, &retry), SPW_ST_RATE_LIMITED);
    close(fd);
    CHECK_EQ(stored(s->port, "bin"), 2);
}

/* ---- keying ---- */

static void test_keying(int port)
{
    const char *streams[2] = {"perip", "pertenant"};
    create(port, "perip", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":0.1,\"burst\":1,\"per\":\"ip\"}}");
    create(port, "pertenant", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":0.1,\"burst\":1,\"per\":\"tenant\"}}");
    for (int i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/streams/%s/events", streams[i]);
        expect(http_from(port, "127.0.0.1", "POST", path, "{}"), 202, NULL);
        expect(http_from(port, "127.0.0.1", "POST", path, "{}"), 429, "rate_limited");
        /* Another address has its own bucket ... */
        expect(http_from(port, "127.0.0.2", "POST", path, "{}"), 202, NULL);
        expect(http_from(port, "127.0.0.2", "POST", path, "{}"), 429, "rate_limited");
        /* ... and a third one too; the first is still refused. */
        expect(http_from(port, "127.0.0.3", "POST", path, "{}"), 202, NULL);
        expect(http_from(port, "127.0.0.1", "POST", path, "{}"), 429, "rate_limited");
        CHECK_EQ(stored(port, streams[i]), 3);
    }
    /* Same address, another stream: another limit state. */
    create(port, "perip2", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":0.1,\"burst\":1,\"per\":\"ip\"}}");
    expect(http_from(port, "127.0.0.1", "POST", "/v1/streams/perip2/events", "{}"), 202, NULL);
}

/* ---- SIGHUP ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    CHECK(fclose(f) == 0);
}

/* Waits (bounded) until /v1/status contains needle. */
static void wait_status(int port, const char *needle)
{
    for (int i = 0; i < 800; i++) {
        resp r = http_json(port, "GET", "/v1/status", NULL);
        int ok = r.status == 200 && strstr(r.body, needle) != NULL;
        if (ok || i == 799) {
            if (!ok)
                fprintf(stderr, "status never showed %s: %s\n", needle, r.body);
            free(r.body);
            CHECK(ok);
            return;
        }
        free(r.body);
        usleep(25000);
    }
}

static void test_sighup(const char *tmp)
{
    char dir[4096], conf[4200];
    snprintf(dir, sizeof dir, "%s/hup", tmp);
    snprintf(conf, sizeof conf, "%s/hup.conf", tmp);
    write_file(conf, "rate-limit = 0\nrate-limit-per = ip\n");
    srv s;
    /* A flag wins over the file, at start and at every reload. */
    const char *extra[] = {"--config", conf, "--rate-limit-burst", "3", NULL};
    srv_start(&s, BIN, dir, extra);
    create(s.port, "plain", "{\"ack\":\"written\"}");
    wait_status(s.port, "\"rate_limit\":null");
    resp r = http_json(s.port, "POST", "/v1/streams/plain/events", "[{},{},{},{},{}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), -1);
    expect(r, 202, "\"accepted\":5");

    /* Turn the default on: rate 1/s; the file's burst 50 loses to the flag's 3. */
    write_file(conf, "rate-limit = 1\nrate-limit-burst = 50\nrate-limit-per = ip\n");
    kill(s.pid, SIGHUP);
    wait_status(s.port, "\"rate_limit\":{\"rate\":1,\"burst\":3,\"per\":\"ip\",\"algorithm\":\"token_bucket\"}");
    r = http_json(s.port, "POST", "/v1/streams/plain/events", "[{},{},{}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), 3);
    expect(r, 202, "\"accepted\":3");
    /* 3 tokens at 1/s are not back yet (each 202 here would need a 3 s stall). */
    for (int i = 0;; i++) {
        CHECK(i < 10);
        r = http_json(s.port, "POST", "/v1/streams/plain/events", "[{},{},{}]");
        if (r.status == 429)
            break;
        expect(r, 202, NULL);
    }
    CHECK(hdr(&r, "Retry-After") >= 1 && hdr(&r, "Retry-After") <= 3);
    expect(r, 429, "rate_limited");
    /* Per IP: another address is not limited by this one. */
    expect(http_from(s.port, "127.0.0.2", "POST", "/v1/streams/plain/events", "[{},{},{}]"), 202, NULL);
    /* A stream's own limit still wins over the default. */
    create(s.port, "own", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":100,\"burst\":10,\"per\":\"ip\"}}");
    r = http_json(s.port, "POST", "/v1/streams/own/events", "[{},{},{},{},{},{},{},{},{},{}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), 10);
    expect(r, 202, "\"accepted\":10");

    /* A bad file changes nothing: the server keeps running with the last
     * good settings (then a good file shows it is still reloading). */
    write_file(conf, "rate-limit = 1\nrate-limit-per = user\n");
    kill(s.pid, SIGHUP);
    usleep(300000);
    wait_status(s.port, "\"rate_limit\":{\"rate\":1,\"burst\":3,\"per\":\"ip\"");
    write_file(conf, "rate-limit = 1\nrate-limit = nope\n");
    kill(s.pid, SIGHUP);
    usleep(300000);
    wait_status(s.port, "\"rate_limit\":{\"rate\":1,\"burst\":3,\"per\":\"ip\"");
    /* Switch algorithm: 2 in any second. */
    write_file(conf, "rate-limit = 2\nrate-limit-algorithm = sliding_window\nrate-limit-per = ip\n");
    kill(s.pid, SIGHUP);
    wait_status(s.port, "\"rate_limit\":{\"rate\":2,\"per\":\"ip\",\"algorithm\":\"sliding_window\"}");
    r = http_from(s.port, "127.0.0.4", "POST", "/v1/streams/plain/events", "[{},{}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), 2);
    expect(r, 202, "\"accepted\":2");
    expect(http_from(s.port, "127.0.0.4", "POST", "/v1/streams/plain/events", "[{},{},{}]"), 413, "over_burst");
    /* Off again: everything passes, without RateLimit fields. */
    write_file(conf, "rate-limit = 0\n");
    kill(s.pid, SIGHUP);
    wait_status(s.port, "\"rate_limit\":null");
    r = http_json(s.port, "POST", "/v1/streams/plain/events", "[{},{},{},{},{},{},{},{},{},{}]");
    CHECK_EQ(hdr(&r, "RateLimit-Limit"), -1);
    expect(r, 202, "\"accepted\":10");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* A bad default refuses to start (exit 2). */
    write_file(conf, "rate-limit = 5\nrate-limit-algorithm = leaky_bucket\n");
    cli_out o = cli_run(BIN, "serve --config %s --data %s --listen 127.0.0.1:0 --listen-bin off", conf, dir);
    CHECK_EQ(o.rc, 2);
    CHECK(strstr(o.text, "rate-limit-algorithm") != NULL);
    free(o.text);
}

/* ---- the client library ---- */

typedef struct lib_ctx {
    _Atomic int delivered, ok, too_large;
} lib_ctx;

static void on_delivery(void *opaque, const spillway_delivery *d)
{
    lib_ctx *c = opaque;
    atomic_fetch_add(&c->delivered, 1);
    if (d->status == 0)
        atomic_fetch_add(&c->ok, 1);
    else if (d->status == SPILLWAY_ERR_TOO_LARGE)
        atomic_fetch_add(&c->too_large, 1);
}

static void test_client(srv *s)
{
    create(s->port, "lib", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":2,\"burst\":1,\"per\":\"ip\"}}");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s->binport);
    lib_ctx ctx = {0};
    spillway_producer_config pc;
    spillway_producer_config_init(&pc);
    pc.batch_bytes = 1024; /* the smallest: with 1100-byte values, every record alone */
    pc.linger_ms = 0;
    pc.max_in_flight = 1;
    pc.on_delivery = on_delivery;
    pc.opaque = &ctx;
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, &pc, &p), 0);
    uint64_t rej0 = rejected_rate(s->port);
    char big[1200];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"pad\":\"", 8);
    memcpy(big + 1100 - 2, "\"}", 2);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(spillway_producer_send(p, "lib", NULL, 0, big, 1100, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT, NULL), 0);
    CHECK_EQ(spillway_producer_flush(p, 60000), 0);
    CHECK_EQ(atomic_load(&ctx.ok), 4);
    /* Each record after the first was refused at most once: the library
     * waited retry_after_ms, which is enough. One retrying at its 50 ms
     * backoff would have been refused about 10 times per record. */
    uint64_t refusals = rejected_rate(s->port) - rej0;
    CHECK(refusals <= 3);
    CHECK_EQ(stored(s->port, "lib"), 4);
    spillway_producer_close(p, 10000);

    /* A batch larger than the burst is failed with -413, not retried. */
    pc.batch_bytes = 1 << 20;
    pc.linger_ms = 50;
    ctx = (lib_ctx){0};
    CHECK_EQ(spillway_producer_new(addr, &pc, &p), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(spillway_producer_send(p, "lib", NULL, 0, "{}", 2, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT, NULL), 0);
    spillway_producer_flush(p, 60000);
    CHECK_EQ(atomic_load(&ctx.delivered), 3);
    CHECK_EQ(atomic_load(&ctx.too_large), 3);
    spillway_producer_close(p, 10000);
    CHECK_EQ(stored(s->port, "lib"), 4);
}

/* ---- fairness ---- */

typedef struct pacer {
    int port;
    const char *src, *path;
    const char *body; /* one request */
    uint32_t events;  /* events per request */
    uint64_t interval_us, duration_ms;
    uint64_t offered, accepted, refused, elapsed_ms;
} pacer;

static void *pace(void *arg)
{
    pacer *p = arg;
    kconn k;
    kopen(&k, p->port, p->src);
    uint64_t start = mono_ms(), next_us = start * 1000;
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        if (now_us / 1000 - start >= p->duration_ms)
            break;
        if (now_us < next_us) {
            usleep((useconds_t)(next_us - now_us));
            continue;
        }
        /* Starts are at least interval apart: never faster than offered,
         * even after a stall (no catching up in a burst). */
        next_us = now_us + p->interval_us;
        resp r = kreq(&k, "POST", p->path, p->body);
        p->offered += p->events;
        if (r.status == 202)
            p->accepted += p->events;
        else if (r.status == 429)
            p->refused += p->events;
        else {
            fprintf(stderr, "unexpected %d: %s\n", r.status, r.body);
            CHECK(0);
        }
        free(r.body);
    }
    p->elapsed_ms = mono_ms() - start;
    kclose(&k);
    return NULL;
}

static void fairness(int port, const char *stream, const char *def)
{
    create(port, stream, def);
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    /* Limit 100 events/s per IP. Flooder: 10 events per request, 100
     * requests/s = 10x. Polite: 1 event every 12.5 ms = 80%. */
    pacer flood = {.port = port, .src = "127.0.0.2", .path = path,
                   .body = "[{},{},{},{},{},{},{},{},{},{}]", .events = 10, .interval_us = 10000,
                   .duration_ms = 3000};
    pacer polite = {.port = port, .src = "127.0.0.1", .path = path, .body = "{}", .events = 1,
                    .interval_us = 12500, .duration_ms = 3000};
    pthread_t a, b;
    pthread_create(&a, NULL, pace, &flood);
    pthread_create(&b, NULL, pace, &polite);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    fprintf(stderr,
            "fairness %s: flooder offered %llu accepted %llu in %llu ms; polite offered %llu accepted %llu (%.1f%%)\n",
            stream, (unsigned long long)flood.offered, (unsigned long long)flood.accepted,
            (unsigned long long)flood.elapsed_ms, (unsigned long long)polite.offered,
            (unsigned long long)polite.accepted, 100.0 * (double)polite.accepted / (double)polite.offered);
    CHECK(polite.offered > 0);
    CHECK(polite.accepted * 10 >= polite.offered * 9);
    /* The flooder was held to its limit: refused, and never above
     * burst + rate x time. */
    CHECK(flood.refused > 0);
    CHECK(flood.accepted <= 100 + 100 * (flood.elapsed_ms + 999) / 1000);
    CHECK_EQ(stored(port, stream), flood.accepted + polite.accepted);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *tmp = spw_test_tmpdir("ratelimit");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/main", tmp);
    srv s;
    const char *extra[] = {"--io-threads", "2", NULL};
    srv_start(&s, BIN, dir, extra);
    CHECK(s.binport > 0);
    test_http(s.port);
    test_binary(&s);
    test_keying(s.port);
    test_client(&s);
    fairness(s.port, "fair_tb", "{\"ack\":\"written\",\"rate_limit\":{\"rate\":100,\"burst\":100,\"per\":\"ip\"}}");
    fairness(s.port, "fair_sw",
             "{\"ack\":\"written\",\"rate_limit\":{\"rate\":100,\"per\":\"ip\",\"algorithm\":\"sliding_window\"}}");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    test_sighup(tmp);
    spw_test_rmrf(tmp);
    free(tmp);
    puts("test_ratelimit: ok");
    return 0;
}
