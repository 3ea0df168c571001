/*
 * The HTTP API against a real server on loopback: every endpoint, every
 * error status of these endpoints, keep-alive, pipelining, chunked bodies,
 * client limits, restart with streams and data intact, clean SIGTERM.
 */
#include <pthread.h>

#include "server.h"

static const char *bin;

static void expect(resp r, int status, const char *needle)
{
    if (r.status != status || (needle && !strstr(r.body, needle)))
        fprintf(stderr, "expected %d with '%s', got %d: %s\n", status, needle ? needle : "", r.status, r.body);
    CHECK_EQ(r.status, status);
    if (needle)
        CHECK(strstr(r.body, needle) != NULL);
    free(r.body);
}

static void test_streams(int port)
{
    expect(http_json(port, "GET", "/healthz", NULL), 200, "\"ok\"");
    expect(http_json(port, "GET", "/v1/streams", NULL), 200, "{\"streams\":[]}");
    expect(http_json(port, "PUT", "/v1/streams/gps", "{\"partitions\":2,\"key\":\"/dev\",\"timestamp\":\"/ts\"}"), 201,
           "\"partitions\":2");
    expect(http_json(port, "PUT", "/v1/streams/gps", "{\"partitions\":2,\"key\":\"/dev\",\"timestamp\":\"/ts\"}"), 200,
           "\"key\":\"/dev\"");
    expect(http_json(port, "PUT", "/v1/streams/gps", "{\"partitions\":3}"), 409, "\"code\":\"exists\"");
    expect(http_json(port, "PUT", "/v1/streams/bad", "{\"partitions\":0}"), 400, "\"code\":\"bad_config\"");
    expect(http_json(port, "PUT", "/v1/streams/bad", "{\"nope\":1}"), 400, "unknown field");
    expect(http_json(port, "PUT", "/v1/streams/a..b%2F", NULL), 400, "bad_name");
    expect(http_json(port, "PUT", "/v1/streams/..", NULL), 400, "bad_name");
    expect(http_json(port, "GET", "/v1/streams/gps", NULL), 200, "\"partition_state\":[{\"partition\":0");
    expect(http_json(port, "GET", "/v1/streams/none", NULL), 404, "no_such_stream");
    expect(http_json(port, "PUT", "/v1/streams/tmp", "{}"), 201, NULL);
    expect(http_json(port, "GET", "/v1/streams", NULL), 200, "\"name\":\"tmp\"");
    expect(http_json(port, "DELETE", "/v1/streams/tmp", NULL), 204, NULL);
    expect(http_json(port, "DELETE", "/v1/streams/tmp", NULL), 404, NULL);
    expect(http_json(port, "GET", "/v1/streams/tmp", NULL), 404, NULL);
    /* The name can be used again at once, with another definition. */
    expect(http_json(port, "PUT", "/v1/streams/tmp", "{\"partitions\":1}"), 201, NULL);
    expect(http_json(port, "POST", "/v1/streams/gps", "{}"), 405, "method_not_allowed");
    expect(http_json(port, "GET", "/v1/nothing", NULL), 404, "not_found");
}

static void test_produce(int port)
{
    /* One object, an array, NDJSON; each ack level. */
    expect(http_json(port, "POST", "/v1/streams/gps/events", "{\"dev\":\"a\",\"ts\":1000,\"n\":1}"), 202,
           "\"accepted\":1");
    expect(http_json(port, "POST", "/v1/streams/gps/events?ack=none",
                     "[{\"dev\":\"a\",\"ts\":1001,\"n\":2},{\"dev\":\"b\",\"ts\":1002,\"n\":3}]"),
           202, "\"accepted\":2");
    const char *nd = "{\"dev\":\"a\",\"ts\":1003,\"n\":4}\n\n{\"dev\":\"c\",\"ts\":1004,\"n\":5}\n";
    expect(http(port, "POST", "/v1/streams/gps/events?ack=written", "application/x-ndjson", nd, strlen(nd)), 202,
           "\"ids\":[\"");
    /* Header ack wins; bad ack; replicated needs the stream's replicate_to. */
    expect(http_json(port, "POST", "/v1/streams/gps/events?ack=bogus", "{\"dev\":\"a\"}"), 400, "bad_ack");
    expect(http_json(port, "POST", "/v1/streams/gps/events?ack=replicated", "{\"dev\":\"a\"}"), 400,
           "replication_not_configured");
    /* Validation names the event and byte; nothing is appended. */
    expect(http_json(port, "POST", "/v1/streams/gps/events", "[{\"dev\":\"a\"},{\"n\":1}]"), 400,
           "event 1 (byte 13)");
    expect(http_json(port, "POST", "/v1/streams/gps/events", "[{\"dev\":\"a\"},{\"dev\":\"b\",}]"), 400,
           "invalid_json");
    expect(http_json(port, "POST", "/v1/streams/gps/events", "[{\"dev\":\"a\"},7]"), 400, "not_an_object");
    expect(http_json(port, "POST", "/v1/streams/gps/events", "{\"dev\":\"a\",\"ts\":\"x\"}"), 400, "bad_timestamp");
    expect(http_json(port, "POST", "/v1/streams/gps/events", "{\"dev\":[1]}"), 400, "bad_key");
    const char *nd2 = "{\"dev\":\"a\"}\n{\"dev\":\"b\"} x\n";
    expect(http(port, "POST", "/v1/streams/gps/events", "application/x-ndjson", nd2, strlen(nd2)), 400, "line 2");
    expect(http_json(port, "POST", "/v1/streams/gps/events", ""), 400, "no_events");
    expect(http(port, "POST", "/v1/streams/gps/events", "text/plain", "{}", 2), 415, NULL);
    expect(http_json(port, "POST", "/v1/streams/none/events", "{}"), 404, NULL);
    /* 5 events accepted so far, none of the refused ones. Two were sent
     * at ack=none (answered before written) and two at ack=written: wait,
     * bounded, until the flusher has written and fsynced them (readers see
     * durable records only; the fsync timer makes them so). */
    long total = 0, durable = 0;
    for (int tries = 0; tries < 1000; tries++) {
        resp r = http_json(port, "GET", "/v1/streams/gps", NULL);
        CHECK_EQ(r.status, 200);
        total = durable = 0;
        for (char *p = r.body; (p = strstr(p, "\"end_offset\":")); p++)
            total += atol(p + 13);
        for (char *p = r.body; (p = strstr(p, "\"durable_offset\":")); p++)
            durable += atol(p + 17);
        free(r.body);
        if (total >= 5 && durable >= 5)
            break;
        usleep(10000);
    }
    CHECK_EQ(total, 5);
    CHECK_EQ(durable, 5);
}

static int pa = -1; /* the partition of key "a" in stream gps */

static void test_read(int port)
{
    /* Key "a" went to one partition: read it back by offset and by time. */
    for (int p = 0; p < 2 && pa < 0; p++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/streams/gps/events?partition=%d&offset=0", p);
        resp r = http_json(port, "GET", path, NULL);
        CHECK_EQ(r.status, 200);
        if (strstr(r.body, "\"key\":\"a\""))
            pa = p;
        free(r.body);
    }
    CHECK(pa >= 0);
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/gps/events?partition=%d&offset=0&limit=2", pa);
    resp r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "{\"partition\":") == r.body);
    CHECK(strstr(r.body, "\"offset\":0,\"id\":\""));
    CHECK(strstr(r.body, "\"value\":{\"dev\":\"a\",\"ts\":1000,\"n\":1}}\n"));
    int lines = 0;
    for (char *p = r.body; *p; p++)
        lines += *p == '\n';
    CHECK_EQ(lines, 2);
    CHECK(strstr(r.headers, "Spillway-Next-Offset: 2"));
    free(r.body);
    snprintf(path, sizeof path, "/v1/streams/gps/events?partition=%d&from_ts=1003", pa);
    r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"ts\":1003"));
    CHECK(!strstr(r.body, "\"ts\":1001"));
    free(r.body);
    expect(http_json(port, "GET", "/v1/streams/gps/events?offset=0", NULL), 400, "partition is required");
    expect(http_json(port, "GET", "/v1/streams/gps/events?partition=9", NULL), 404, "no_such_partition");
    expect(http_json(port, "GET", "/v1/streams/gps/events?partition=0&offset=999", NULL), 416, "offset_out_of_range");
    expect(http_json(port, "GET", "/v1/streams/gps/events?partition=x", NULL), 400, "bad_parameter");
    /* ids, status, metrics */
    expect(http_json(port, "GET", "/v1/ids?count=3", NULL), 200, "{\"ids\":[\"");
    expect(http_json(port, "GET", "/v1/ids?count=0", NULL), 400, NULL);
    expect(http_json(port, "GET", "/v1/status", NULL), 200, "\"version\":");
    expect(http_json(port, "GET", "/metrics", NULL), 200, "spillway_stream_events_in_total{stream=\"gps\"} 5");
}

/* Keep-alive, pipelining (answers in order), chunked request bodies. */
static void test_connection(int port)
{
    int fd = tcp_connect(port);
    char req[4096];
    int n = 0;
    for (int i = 0; i < 3; i++) {
        char body[64];
        int bl = snprintf(body, sizeof body, "{\"dev\":\"p%d\",\"ts\":%d}", i, 2000 + i);
        n += snprintf(req + n, sizeof req - (size_t)n,
                      "POST /v1/streams/gps/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      bl, body);
        n += snprintf(req + n, sizeof req - (size_t)n, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    n += snprintf(req + n, sizeof req - (size_t)n,
                  "POST /v1/streams/gps/events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\n{\"dev\r\n11\r\n\":\"chunked\",\"n\":1\r\n1\r\n}\r\n0\r\n\r\n");
    send_all(fd, req, (size_t)n);
    static char buf[1 << 16];
    size_t have = 0;
    for (int i = 0; i < 7; i++) {
        resp r;
        CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
        if (i < 6 && i % 2 == 1)
            CHECK(strstr(r.body, "\"ok\""));
        else if (r.status != 202)
            fprintf(stderr, "response %d: %d %s\n", i, r.status, r.body);
        CHECK(i % 2 == 1 || r.status == 202);
        free(r.body);
    }
    close(fd);
}

/* One request on a keep-alive connection, its answer read before the
 * next is sent (so the server reuses the last request's struct). */
static resp ka_req(int fd, const char *method, const char *path, const char *headers, const char *body)
{
    char req[8192];
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n%s", method, path,
                     headers, bl, body ? body : "");
    CHECK(n > 0 && (size_t)n < sizeof req);
    send_all(fd, req, (size_t)n);
    static char buf[1 << 16];
    size_t have = 0;
    resp r;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(have, 0); /* one answer, nothing after it */
    return r;
}

/* The server keeps a connection's last request struct and its URL buffer
 * for the next request (http.c, req_new): nothing of one request may show
 * in the next — not its headers (an Idempotency-Key that stayed would make
 * the next event a duplicate), not its path or query (a long URL, then a
 * short one). */
static void test_reuse(int port)
{
    int fd = tcp_connect(port);
    const char *json = "Content-Type: application/json\r\n";
    expect(ka_req(fd, "PUT", "/v1/streams/ka", json, "{\"partitions\":1}"), 201, NULL);
    expect(ka_req(fd, "POST", "/v1/streams/ka/events", "Content-Type: application/json\r\nIdempotency-Key: ka-1\r\n",
                  "{\"n\":1}"),
           202, "\"accepted\":1");
    resp r = ka_req(fd, "POST", "/v1/streams/ka/events", json, "{\"n\":1}");
    CHECK_EQ(r.status, 202);
    CHECK(strstr(r.body, "duplicate") == NULL);
    free(r.body);
    expect(ka_req(fd, "POST", "/v1/streams/ka/events", "Content-Type: application/json\r\nIdempotency-Key: ka-1\r\n",
                  "{\"n\":1}"),
           202, "\"duplicate\":true");
    /* A long URL (past the kept buffer's size), then short ones. */
    char path[3000];
    int n = snprintf(path, sizeof path, "/v1/streams/ka/events?offset=1&limit=1");
    while (n < 2900)
        n += snprintf(path + n, sizeof path - (size_t)n, "&limit=1");
    expect(ka_req(fd, "GET", path, "", NULL), 200, "\"offset\":1");
    expect(ka_req(fd, "GET", "/v1/streams/ka/events?offset=0&limit=1", "", NULL), 200, "\"offset\":0");
    r = ka_req(fd, "GET", "/v1/streams/ka", "", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"end_offset\":2") != NULL);
    free(r.body);
    /* A request of more events than the produce keeps on its stack
     * (svc/produce.c, VREQ_SMALL), then one event: every event in order. */
    char nd[512];
    n = 0;
    for (int i = 0; i < 20; i++)
        n += snprintf(nd + n, sizeof nd - (size_t)n, "{\"n\":%d}\n", 100 + i);
    expect(ka_req(fd, "POST", "/v1/streams/ka/events", "Content-Type: application/x-ndjson\r\n", nd), 202,
           "\"accepted\":20");
    expect(ka_req(fd, "POST", "/v1/streams/ka/events", json, "{\"n\":120}"), 202, "\"accepted\":1");
    r = ka_req(fd, "GET", "/v1/streams/ka/events?offset=2&limit=100", "", NULL);
    CHECK_EQ(r.status, 200);
    const char *at = r.body;
    for (int i = 0; i <= 20; i++) {
        char want[32];
        snprintf(want, sizeof want, "{\"n\":%d}", 100 + i);
        const char *f = strstr(at, want);
        if (!f)
            fprintf(stderr, "test_reuse: %s missing or out of order in %s\n", want, r.body);
        CHECK(f != NULL);
        at = f + strlen(want);
    }
    free(r.body);
    close(fd);
}

/* The server closes fd (EOF, not merely silence) within 5 s. */
static void expect_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1);
    char c;
    CHECK(recv(fd, &c, 1, 0) == 0);
}

static void test_limits(int port)
{
    /* Header too large: 431; body over the limit by Content-Length: 413; no length: 411. */
    int fd = tcp_connect(port);
    char big[40000];
    memset(big, 'x', sizeof big);
    char head[256];
    int n = snprintf(head, sizeof head, "GET /healthz HTTP/1.1\r\nX-Big: ");
    send_all(fd, head, (size_t)n);
    send(fd, big, sizeof big, MSG_NOSIGNAL);
    static char buf[1 << 16];
    size_t have = 0;
    resp r;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(r.status, 431);
    free(r.body);
    close(fd);
    fd = tcp_connect(port);
    n = snprintf(head, sizeof head,
                 "POST /v1/streams/gps/events HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n");
    send_all(fd, head, (size_t)n);
    have = 0;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(r.status, 413);
    free(r.body);
    close(fd);
    fd = tcp_connect(port);
    n = snprintf(head, sizeof head, "POST /v1/streams/gps/events HTTP/1.1\r\nContent-Type: application/json\r\n\r\n");
    send_all(fd, head, (size_t)n);
    have = 0;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(r.status, 411);
    free(r.body);
    close(fd);
    /* Garbage: 400 and closed. */
    fd = tcp_connect(port);
    send_all(fd, "HELLO\r\n\r\n", 9);
    have = 0;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(r.status, 400);
    free(r.body);
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == -1);
    close(fd);
    /* An Upgrade request is answered, then the connection closes (what
     * follows it is another protocol); so is CONNECT. */
    fd = tcp_connect(port);
    send_all(fd, "GET /healthz HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x85garbage", 75);
    have = 0;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
    expect_closed(fd);
    close(fd);
    fd = tcp_connect(port);
    send_all(fd, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nxyz", 62);
    have = 0;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK(r.status >= 400 && r.status < 500);
    free(r.body);
    expect_closed(fd);
    close(fd);
    /* A slow request: 408 after request-timeout (1 s here). */
    fd = tcp_connect(port);
    send_all(fd, "GET /healthz HTTP/1.1\r\nHo", 25);
    have = 0;
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    CHECK_EQ(r.status, 408);
    free(r.body);
    close(fd);
    /* 1000 idle and trickling connections do not stop a normal client. */
    int fds[1000];
    for (int i = 0; i < 1000; i++) {
        fds[i] = tcp_connect(port);
        if (i % 2)
            send_all(fds[i], "G", 1);
    }
    for (int round = 0; round < 3; round++) {
        expect(http_json(port, "GET", "/healthz", NULL), 200, "ok");
        for (int i = 1; i < 1000; i += 2)
            send(fds[i], "E", 1, MSG_NOSIGNAL);
    }
    expect(http_json(port, "POST", "/v1/streams/tmp/events", "{\"x\":1}"), 202, NULL);
    for (int i = 0; i < 1000; i++)
        close(fds[i]);
}

/*
 * A batch damaged on disk in the middle of a segment: the read answers 500
 * "damaged" and names where reading can resume (Spillway-Next-Offset), the
 * offsets after it stay readable, and nothing wrong is ever returned.
 */
static void test_damaged_read(const char *bin, const char *dir, const char *const *extra)
{
    char seg[8192];
    snprintf(seg, sizeof seg, "%s/streams/gps/%d/00000000000000000000.log", dir, pa);
    FILE *f = fopen(seg, "r+b");
    CHECK(f);
    /* The first batch holds offset 0 only (one event); flip a byte of its record. */
    CHECK_EQ(fseek(f, 80 + 12, SEEK_SET), 0);
    int ch = fgetc(f);
    CHECK(ch != EOF);
    CHECK_EQ(fseek(f, 80 + 12, SEEK_SET), 0);
    fputc(ch ^ 0xff, f);
    CHECK_EQ(fclose(f), 0);
    srv s;
    srv_start(&s, bin, dir, extra);
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/gps/events?partition=%d&offset=0", pa);
    resp r = http_json(s.port, "GET", path, NULL);
    CHECK_EQ(r.status, 500);
    CHECK(strstr(r.body, "\"code\":\"damaged\""));
    CHECK(strstr(r.headers, "Spillway-Next-Offset: 1\r\n"));
    free(r.body);
    snprintf(path, sizeof path, "/v1/streams/gps/events?partition=%d&offset=1", pa);
    r = http_json(s.port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"offset\":1,"));
    CHECK(!strstr(r.body, "\"offset\":0,"));
    free(r.body);
    /* A consumer group skips the damaged record (logged, counted) and
     * delivers the rest, instead of answering 500 at that offset forever. */
    int found = 0;
    char want[64];
    snprintf(want, sizeof want, "Spillway-Partition: %d\r\n", pa);
    for (int i = 0; i < 2 && !found; i++) { /* 2 partitions, round robin; leases kept */
        r = http(s.port, "POST", "/v1/streams/gps/groups/dg/poll?member=m&max=100", NULL, "", 0);
        CHECK_EQ(r.status, 200);
        if (strstr(r.headers, want)) {
            found = 1;
            CHECK(strstr(r.headers, "Spillway-First-Offset: 1\r\n"));
            CHECK(strstr(r.body, "\"offset\":1,"));
            CHECK(!strstr(r.body, "\"offset\":0,"));
        }
        free(r.body);
    }
    CHECK(found);
    r = http_json(s.port, "GET", "/metrics", NULL);
    CHECK(strstr(r.body, "\nspillway_group_damaged_skipped_total 1\n"));
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s check %s >/dev/null", bin, dir);
    CHECK_EQ(system(cmd), 1 << 8); /* check reports the damage: exit 1 */
}

/*
 * Backpressure: a server whose pending budget is a few requests big answers
 * 503 "backpressure" with Retry-After once producers outrun its writes, and
 * every 202 it gave is readable afterwards. Rounds are bounded.
 */
static void test_backpressure(const char *bin)
{
    char *dir = spw_test_tmpdir("http-bp");
    const char *extra[] = {"--max-pending-bytes", "16KiB", "--max-pipelined", "16", NULL};
    srv s;
    srv_start(&s, bin, dir, extra);
    expect(http_json(s.port, "PUT", "/v1/streams/bp", "{\"partitions\":1}"), 201, NULL);
    static char body[6000];
    memset(body, 'x', sizeof body);
    memcpy(body, "{\"v\":\"", 6);
    memcpy(body + sizeof body - 2, "\"}", 2);
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/streams/bp/events?ack=fsync HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      sizeof body);
    int seen503 = 0;
    long accepted = 0;
    static char buf[1 << 20];
    for (int round = 0; round < 200 && !seen503; round++) {
        int fds[8];
        for (int c = 0; c < 8; c++) {
            fds[c] = tcp_connect(s.port);
            for (int k = 0; k < 16; k++) {
                send_all(fds[c], head, (size_t)hl);
                send_all(fds[c], body, sizeof body);
            }
        }
        for (int c = 0; c < 8; c++) {
            size_t have = 0;
            for (int k = 0; k < 16; k++) {
                resp r;
                CHECK(read_resp(fds[c], &r, buf, sizeof buf, &have) == 0);
                CHECK(r.status == 202 || r.status == 503);
                if (r.status == 503) {
                    CHECK(strstr(r.body, "\"code\":\"backpressure\""));
                    CHECK(strstr(r.headers, "Retry-After: "));
                    seen503 = 1;
                } else {
                    accepted++;
                }
                free(r.body);
            }
            close(fds[c]);
        }
    }
    CHECK(seen503);
    /* Every accepted event is stored; the server still serves. */
    resp r = http_json(s.port, "GET", "/v1/streams/bp", NULL);
    CHECK_EQ(r.status, 200);
    char *e = strstr(r.body, "\"end_offset\":");
    CHECK(e);
    CHECK_EQ(atol(e + 13), accepted);
    free(r.body);
    expect(http_json(s.port, "GET", "/healthz", NULL), 200, "ok");
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *dir = spw_test_tmpdir("http");
    const char *extra[] = {"--request-timeout", "1s", "--max-header-bytes", "16KiB", "--max-connections", "2000",
                           NULL};
    srv s;
    srv_start(&s, bin, dir, extra);
    test_streams(s.port);
    test_produce(s.port);
    test_read(s.port);
    test_connection(s.port);
    test_reuse(s.port);
    test_limits(s.port);
    /* Clean stop, restart: streams and data are there. */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    srv_start(&s, bin, dir, extra);
    resp r = http_json(s.port, "GET", "/v1/streams/gps", NULL);
    CHECK_EQ(r.status, 200);
    long total = 0;
    for (char *p = r.body; (p = strstr(p, "\"end_offset\":")); p++)
        total += atol(p + 13);
    CHECK_EQ(total, 5 + 4);
    free(r.body);
    expect(http_json(s.port, "GET", "/v1/streams/tmp/events?offset=0", NULL), 200, "{\"x\":1}");
    expect(http_json(s.port, "POST", "/v1/streams/gps/events", "{\"dev\":\"after\",\"ts\":5}"), 202, NULL);
    CHECK_EQ(srv_stop(&s, SIGINT), 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s check %s >/dev/null", bin, dir);
    CHECK_EQ(system(cmd), 0);
    test_damaged_read(bin, dir, extra);
    test_backpressure(bin);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_http: ok");
    return 0;
}
