/*
 * libFuzzer target for the HTTP front end and the API's request handling,
 * end to end: the real HTTP loop (src/http/http.c, libhttp-parser) and the
 * API (src/http/api.c) with its log and catalog run in this process on a
 * temporary data directory, listening on 127.0.0.1:<ephemeral>. Each input
 * is a byte stream written to a fresh connection; the harness then
 * half-closes and reads until the server closes.
 *
 * Checks, besides "no crash, no sanitizer report":
 *  - the server closes the connection within HANG_MS after it has answered
 *    (no hang, no lost response);
 *  - what comes back parses as a sequence of HTTP/1.1 responses, no more
 *    responses than requests (+1 for a protocol error answer); not checked
 *    for inputs with a HEAD request.
 *
 * To make "the server closes" well defined, the input is cut at the end of
 * its last complete request (as libhttp-parser sees it); an input that is
 * malformed is sent whole (the server answers 400 and closes). A request
 * that never completes would only end at the request timeout.
 *
 * The streams the seeds use are re-created after any input that could
 * delete or redefine them; streams the fuzzer creates are deleted again.
 *
 * Data directory: mkdtemp under $TMPDIR (scripts/fuzz.sh points it into
 * build-fuzz/). Server limits are small so inputs reach them: headers
 * 2 KiB, bodies 2 KiB, 4 pipelined requests per connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/id.h"
#include "core/msg.h"
#include "log/log.h"
#include "http/http.h"
#include "http/api.h"
#include "svc/metrics.h"
#include "catalog/catalog.h"
#include "catalog/stream.h"

#define HANG_MS 20000

static const struct {
    const char *name, *body;
} known[] = {
    {"gps", "{\"partitions\":2,\"key\":\"/dev\",\"timestamp\":\"/ts\",\"ack\":\"written\"}"},
    {"plain", "{\"partitions\":1,\"ack\":\"none\"}"},
    {"raw", "{\"partitions\":2,\"format\":\"bytes\",\"ack\":\"none\",\"max_event_bytes\":512}"},
    {"deep", "{\"partitions\":3,\"key\":\"/a/0/k~1x\",\"timestamp\":\"/t\",\"max_event_bytes\":64,\"ack\":\"fsync\"}"},
};
#define NKNOWN (sizeof known / sizeof *known)

static spw_log *g_log;
static spw_catalog *g_cat;
static spw_http_server *g_http;
static spw_api g_api;
static int g_port;
static char g_dir[4096];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http: %s: %s\n", what, strerror(errno));
    abort();
}

static int is_known(const char *name)
{
    for (size_t i = 0; i < NKNOWN; i++)
        if (strcmp(known[i].name, name) == 0)
            return 1;
    return 0;
}

typedef struct names {
    char v[64][SPW_STREAM_NAME_MAX + 1];
    int n;
} names;

static void collect_unknown(void *arg, spw_stream *s)
{
    names *ns = arg;
    if (!is_known(s->cfg.name) && ns->n < 64)
        snprintf(ns->v[ns->n++], sizeof ns->v[0], "%s", s->cfg.name);
}

/* Puts the catalog back to the known streams, as defined above. */
static void restore_streams(void)
{
    names ns = {.n = 0};
    spw_catalog_each(g_cat, collect_unknown, &ns);
    for (int i = 0; i < ns.n; i++)
        spw_catalog_delete(g_cat, ns.v[i]);
    for (size_t i = 0; i < NKNOWN; i++) {
        spw_stream_config c;
        char err[256];
        if (spw_stream_config_parse(&c, known[i].name, known[i].body, strlen(known[i].body), err, sizeof err)) {
            fprintf(stderr, "fuzz_http: stream %s: %s\n", known[i].name, err);
            abort();
        }
        int r = spw_catalog_create(g_cat, &c);
        if (r == -EEXIST) {
            spw_catalog_delete(g_cat, known[i].name);
            r = spw_catalog_create(g_cat, &c);
        }
        if (r < 0) {
            fprintf(stderr, "fuzz_http: creating stream %s: %d\n", known[i].name, r);
            abort();
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    spw_msg_set_level(SPW_MSG_ERROR);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/spw-fuzz-http-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir))
        die("mkdtemp");
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.max_pending_bytes = 8u << 20;
    lc.fsync_interval_ms = 200;
    if (spw_log_open(&lc, &g_log))
        die("spw_log_open");
    if (spw_catalog_open(g_log, g_dir, 0, &g_cat) < 0)
        die("spw_catalog_open");
    g_api = (spw_api){
        .svc =
            {
                .log = g_log,
                .cat = g_cat,
                .data_dir = g_dir,
                .node_id = 1,
                .started_ms = spw_wall_ms(),
                .max_request_bytes = 2048,
                .max_pending_bytes = lc.max_pending_bytes,
            },
        .max_connections = 64,
    };
    spw_http_config hc = {
        .listen = "127.0.0.1:0",
        .threads = 1,
        .max_connections = 64,
        .max_header_bytes = 2048,
        .max_body_bytes = 2048,
        .idle_timeout_ms = 5000,
        .request_timeout_ms = 5000,
        .max_pipelined = 4,
    };
    spw_pressure_config pc = {.budget = lc.max_pending_bytes, .shed3_pct = 50, .shed2_pct = 65, .high_pct = 80,
                              .low_pct = 60};
    spw_pressure_init(&g_api.svc.pressure, g_log, &pc);
    g_api.svc.dd = spw_dd_new(10000);
    g_api.svc.metrics = spw_metrics_new(); /* /metrics as the server shows it */
    spw_api_metrics_register(&g_api);
    if (spw_http_start(&hc, spw_api_handle, &g_api, &g_http) < 0)
        die("spw_http_start");
    g_api.http = g_http;
    g_port = spw_http_port(g_http);
    restore_streams();
    fprintf(stderr, "fuzz_http: server on 127.0.0.1:%d, data in %s\n", g_port, g_dir);
    return 0;
}

/* ---- the harness's own view of the request stream ---- */

typedef struct scan {
    int in_msg, head;
    uint32_t complete;
} scan;

static int s_begin(http_parser *p)
{
    ((scan *)p->data)->in_msg = 1;
    return 0;
}

static int s_headers(http_parser *p)
{
    if (p->method == HTTP_HEAD)
        ((scan *)p->data)->head = 1;
    return 0;
}

static int s_complete(http_parser *p)
{
    scan *s = p->data;
    s->in_msg = 0;
    s->complete++;
    return 0;
}

/* How many bytes to send: through the last complete request, or everything
 * when the parser rejects the input. *nreq gets the requests the server can
 * answer at most. */
static size_t send_len(const uint8_t *d, size_t n, uint32_t *nreq, int *head)
{
    static http_parser_settings st = {
        .on_message_begin = s_begin, .on_headers_complete = s_headers, .on_message_complete = s_complete};
    http_parser p;
    scan s = {0};
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &s;
    size_t boundary = 0;
    for (size_t i = 0; i < n; i++) {
        size_t used = http_parser_execute(&p, &st, (const char *)d + i, 1);
        *head = s.head;
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK) {
            *nreq = s.complete + 1;
            return n; /* malformed: the server answers 400 and closes */
        }
        if (p.upgrade || used != 1) {
            /* An upgrade request ends what the server parses of this read. */
            *nreq = s.complete + 1;
            return i + 1;
        }
        if (!s.in_msg)
            boundary = i + 1;
    }
    *nreq = s.complete + 1;
    return boundary;
}

/* ---- checking what comes back ---- */

typedef struct rscan {
    uint32_t responses;
} rscan;

static int r_complete(http_parser *p)
{
    ((rscan *)p->data)->responses++;
    return 0;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t nreq = 0;
    int head = 0;
    size_t n = send_len(data, size, &nreq, &head);
    if (n == 0)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    static http_parser_settings rst = {.on_message_complete = r_complete};
    http_parser rp;
    rscan rs = {0};
    http_parser_init(&rp, HTTP_RESPONSE);
    rp.data = &rs;
    /* A response to HEAD has no body whatever its Content-Length says (and
     * the parser cannot tell which response that is): check framing only
     * for inputs without HEAD requests. */
    int resp_ok = !head;
    size_t sent = 0;
    int wr_shut = 0;
    uint64_t deadline = mono_ms() + HANG_MS;
    char buf[65536];
    for (;;) {
        if (sent == n && !wr_shut) {
            shutdown(fd, SHUT_WR);
            wr_shut = 1;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        uint64_t now = mono_ms();
        if (now >= deadline) {
            fprintf(stderr, "fuzz_http: the server did not close the connection within %d ms "
                            "(%zu of %zu bytes sent, %u responses)\n",
                    HANG_MS, sent, n, rs.responses);
            abort();
        }
        int pr = poll(&pf, 1, (int)(deadline - now));
        if (pr < 0 && errno != EINTR)
            die("poll");
        if (pr <= 0)
            continue;
        if ((pf.revents & POLLOUT) && sent < n) {
            ssize_t w = send(fd, data + sent, n - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                sent = n, wr_shut = 1; /* the server closed: stop sending */
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                break; /* closed (or reset after an error answer) */
            if (r > 0 && resp_ok) {
                http_parser_execute(&rp, &rst, buf, (size_t)r);
                if (HTTP_PARSER_ERRNO(&rp) != HPE_OK) {
                    fprintf(stderr, "fuzz_http: malformed response stream: %s\n",
                            http_errno_description(HTTP_PARSER_ERRNO(&rp)));
                    abort();
                }
            }
        }
    }
    close(fd);
    if (rs.responses > nreq) {
        fprintf(stderr, "fuzz_http: %u responses to at most %u requests\n", rs.responses, nreq);
        abort();
    }
    if (memmem(data, n, "PUT", 3) || memmem(data, n, "DELETE", 6))
        restore_streams();
    return 0;
}
