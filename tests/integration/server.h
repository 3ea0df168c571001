/*
 * Test support for integration tests: start `spillway serve` on a free
 * loopback port (its --ready-fd tells the port), talk HTTP/1.1 over plain
 * sockets, stop it by PID (SIGTERM or SIGKILL). Every wait is bounded.
 *
 * ctest runs every integration test as `test_X SPILLWAY SPILLWAY_TEST`:
 * argv[1] the production binary, argv[2] the same server built with the
 * test-only fault hook (POST/DELETE /debug/faults, docs/operations.md "Test
 * builds"); pass either to srv_start.
 */
#ifndef SPW_TEST_SERVER_H
#define SPW_TEST_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "test.h"

typedef struct srv {
    pid_t pid;
    int port;    /* HTTP */
    int binport; /* binary protocol, 0 if off */
    int kafkaport; /* Kafka protocol (--listen-kafka 127.0.0.1:0 among the extra flags), else 0 */
    char data[4096];
} srv;

/* Starts the server with extra flags (NULL-terminated list); its stderr
 * (the log) goes to log_path when not NULL (appended), else nowhere (or to
 * the test's stderr with SPW_TEST_VERBOSE). */
static inline void srv_start_log(srv *s, const char *bin, const char *data, const char *const *extra,
                                 const char *log_path)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    snprintf(s->data, sizeof s->data, "%s", data);
    s->pid = fork();
    CHECK(s->pid >= 0);
    if (s->pid == 0) {
        /* Dies with the test, so a failed CHECK never leaves a server behind
         * holding ctest's output pipe open. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(pfd[0]); /* first: it may be fd 3 itself */
        if (pfd[1] != 3) {
            dup2(pfd[1], 3);
            close(pfd[1]);
        }
        /* --listen-bin on a free port too, so tests never share 7701. */
        const char *argv[64] = {bin,          "serve",       "--data",     data, "--listen", "127.0.0.1:0",
                                "--listen-bin", "127.0.0.1:0", "--ready-fd", "3"};
        int n = 10;
        for (int i = 0; extra && extra[i] && n < 62; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        int devnull = open("/dev/null", O_WRONLY);
        if (log_path) {
            int lf = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (lf >= 0)
                dup2(lf, 2);
        } else if (!getenv("SPW_TEST_VERBOSE")) {
            dup2(devnull, 2);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    char buf[32] = {0};
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    CHECK(poll(&p, 1, 20000) == 1);
    ssize_t n = read(pfd[0], buf, sizeof buf - 1);
    close(pfd[0]);
    CHECK(n > 0);
    /* "HTTPPORT BINPORT\n" (BINPORT 0 when the binary listener is off),
     * then " KAFKAPORT" when the Kafka listener is on. */
    s->binport = s->kafkaport = 0;
    CHECK(sscanf(buf, "%d %d %d", &s->port, &s->binport, &s->kafkaport) >= 1);
    CHECK(s->port > 0);
}

static inline void srv_start(srv *s, const char *bin, const char *data, const char *const *extra)
{
    srv_start_log(s, bin, data, extra, NULL);
}

/* 1 when the server log at path (srv_start_log) holds text. */
static inline int srv_log_has(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    CHECK(b != NULL);
    for (size_t k; (k = fread(b + n, 1, cap - 1 - n, f)) > 0;) {
        n += k;
        if (n == cap - 1) {
            cap *= 2;
            b = realloc(b, cap);
            CHECK(b != NULL);
        }
    }
    fclose(f);
    b[n] = 0;
    int r = strstr(b, text) != NULL;
    free(b);
    return r;
}

/* Stops with sig and returns the exit status (or 128+signal). */
static inline int srv_stop(srv *s, int sig)
{
    kill(s->pid, sig);
    int st = 0;
    for (int i = 0; i < 3000; i++) {
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    CHECK(!"server did not stop within 30 s");
    return -1;
}

static inline int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static inline void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        CHECK(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

/* Connects without aborting, for a server that may be gone (killed under
 * load): the fd (TCP_NODELAY, SO_RCVTIMEO of timeout_s), or -1. */
static inline int try_connect(int port, int timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = timeout_s};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* send_all without aborting: 0, or -1 when the peer is gone. */
static inline int try_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

typedef struct resp {
    int status;
    char headers[4096];
    char *body;
    size_t body_len;
} resp;

/* Reads one response (Content-Length framing). Returns 0, or -1 on EOF. */
static inline int read_resp(int fd, resp *r, char *buf, size_t cap, size_t *have)
{
    for (;;) {
        char *he = memmem(buf, *have, "\r\n\r\n", 4);
        if (he) {
            size_t hl = (size_t)(he - buf) + 4;
            char *cl = memmem(buf, hl, "Content-Length: ", 16);
            size_t blen = cl ? (size_t)atol(cl + 16) : 0;
            if (*have >= hl + blen) {
                r->status = atoi(buf + 9);
                size_t k = hl < sizeof r->headers - 1 ? hl : sizeof r->headers - 1;
                memcpy(r->headers, buf, k);
                r->headers[k] = 0;
                r->body = malloc(blen + 1);
                memcpy(r->body, buf + hl, blen);
                r->body[blen] = 0;
                r->body_len = blen;
                memmove(buf, buf + hl + blen, *have - hl - blen);
                *have -= hl + blen;
                return 0;
            }
        }
        CHECK(*have < cap);
        ssize_t n = recv(fd, buf + *have, cap - *have, 0);
        if (n < 0 && errno == EINTR)
            continue; /* not the peer: with SO_RCVTIMEO set, a stop and continue of this process, or task work
                         queued to it (an io_uring's teardown), interrupts the call */
        if (n <= 0)
            return -1;
        *have += (size_t)n;
    }
}

/* One request on a fresh connection; extra is header lines each ending
 * "\r\n" (or NULL). Thread-safe. */
static inline resp http_ex(int port, const char *method, const char *path, const char *ctype, const char *extra,
                           const char *body, size_t blen)
{
    int fd = tcp_connect(port);
    char head[2048];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\n%s%s%s%s", method, path,
                     ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "", extra ? extra : "");
    if (body)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    send_all(fd, head, (size_t)n);
    if (body)
        send_all(fd, body, blen);
    size_t cap = 1 << 22, have = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    resp r = {0};
    CHECK(read_resp(fd, &r, buf, cap, &have) == 0);
    free(buf);
    close(fd);
    return r;
}

static inline resp http(int port, const char *method, const char *path, const char *ctype, const char *body,
                        size_t blen)
{
    return http_ex(port, method, path, ctype, NULL, body, blen);
}

static inline resp http_json(int port, const char *method, const char *path, const char *body)
{
    return http(port, method, path, body ? "application/json" : NULL, body, body ? strlen(body) : 0);
}

/* The status of a JSON request (body freed); SPW_TEST_VERBOSE prints the exchange. */
static inline int req_status(int port, const char *method, const char *path, const char *body)
{
    resp r = http_json(port, method, path, body);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%s %s -> %d %s\n", method, path, r.status, r.body);
    free(r.body);
    return r.status;
}

/* The value of header name (e.g. "Spillway-Lease") of r into out; 1 found. */
static inline int header(const resp *r, const char *name, char *out, size_t cap)
{
    char needle[96];
    snprintf(needle, sizeof needle, "\r\n%s: ", name);
    const char *p = strstr(r->headers, needle);
    if (!p)
        return 0;
    p += strlen(needle);
    size_t n = strcspn(p, "\r\n");
    CHECK(n < cap);
    memcpy(out, p, n);
    out[n] = 0;
    return 1;
}

static inline uint64_t header_u64(const resp *r, const char *name)
{
    char v[64];
    CHECK(header(r, name, v, sizeof v));
    return strtoull(v, NULL, 10);
}

/* The number field of partition part's object in the JSON of GET path,
 * e.g. ("/v1/streams/s", 0, "end_offset") or a group's "committed". */
static inline uint64_t part_field(int port, const char *path, int part, const char *field)
{
    resp r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    char needle[96];
    snprintf(needle, sizeof needle, "{\"partition\":%d,", part);
    char *p = strstr(r.body, needle);
    CHECK(p != NULL);
    snprintf(needle, sizeof needle, "\"%s\":", field);
    p = strstr(p, needle);
    CHECK(p != NULL);
    uint64_t v = strtoull(p + strlen(needle), NULL, 10);
    free(r.body);
    return v;
}

/* A value in a /metrics text: the line that starts with name (exactly,
 * labels included) and a space; -1 if there is none. */
static inline long long metric_in(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return atoll(p + nl + 1);
    return -1;
}

/* The value of the /metrics line that starts with name (labels included)
 * and a space, on the server at port; -1 if there is none. */
static inline long long srv_metric(int port, const char *name)
{
    resp r = http(port, "GET", "/metrics", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    long long v = metric_in(r.body, name);
    free(r.body);
    return v;
}

/* A process's resident memory in KiB (VmRSS in /proc/PID/status), -1 if
 * unreadable. */
static inline long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    fclose(f);
    return v;
}

/* Polls (bounded: 1000 rounds of 10 ms) until part_field(...) reaches
 * want; returns the last value read. */
static inline uint64_t wait_part_field(int port, const char *path, int part, const char *field, uint64_t want)
{
    uint64_t got = 0;
    for (int i = 0; i < 1000 && got < want; i++) {
        got = part_field(port, path, part, field);
        if (got < want)
            usleep(10000);
    }
    return got;
}

/* PUT /v1/sinks/NAME on port (201): a forward sink of stream to the stream
 * dst of the server whose binary port is binport, in batches of up to 1000
 * events or 20 ms, retries from 20 to 200 ms. */
static inline void put_forward_sink(int port, const char *name, const char *stream, int binport, const char *dst)
{
    char path[256], body[1024];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    snprintf(body, sizeof body,
             "{\"stream\":\"%s\",\"kind\":\"forward\",\"batch\":{\"max_events\":1000,\"max_wait_ms\":20},"
             "\"retry\":{\"initial_ms\":20,\"max_ms\":200},"
             "\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"%s\",\"timeout_ms\":2000}}",
             stream, binport, dst);
    CHECK_EQ(req_status(port, "PUT", path, body), 201);
}

/* Waits (bounded) until sink NAME's position is position; there, its
 * errors_total must not be 0 (a damaged range it went past is counted).
 * Returns whether it got there. A sink's position moves once its target
 * has answered, which can be after the target shows the records. */
static inline int wait_sink_past_damage(int port, const char *name, uint64_t position)
{
    char path[256], want[64];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    snprintf(want, sizeof want, "\"position\":%llu,", (unsigned long long)position);
    int at_end = 0;
    for (int i = 0; i < 1000 && !at_end; i++) {
        resp r = http_json(port, "GET", path, NULL);
        CHECK_EQ(r.status, 200);
        at_end = strstr(r.body, want) != NULL;
        if (at_end)
            CHECK(strstr(r.body, "\"errors_total\":0,") == NULL);
        else
            usleep(10000);
        free(r.body);
    }
    return at_end;
}

/* PUT /v1/streams/NAME with body: created (201) or already so (200). */
static inline void put_stream(int port, const char *name, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", name);
    resp r = http_json(port, "PUT", path, body);
    CHECK(r.status == 201 || r.status == 200);
    free(r.body);
}

/* What a command printed (stdout and stderr together) and its exit code. */
typedef struct cli_out {
    int rc;
    char *text; /* malloc'ed */
} cli_out;

/* Runs "BIN ARGS" through the shell (args are the test's own: no quoting
 * beyond paths without spaces). SPW_TEST_VERBOSE echoes each run. */
static inline cli_out cli_run(const char *bin, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline cli_out cli_run(const char *bin, const char *fmt, ...)
{
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin, args);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - n < 4096)
            buf = realloc(buf, cap *= 2);
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        if (k == 0)
            break;
        n += k;
    }
    buf[n] = 0;
    int st = pclose(f);
    cli_out o = {.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128, .text = buf};
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "$ spillway %s\n[exit %d]\n%s", args, o.rc, buf);
    return o;
}

/* GET path answers status, its body holding needle (NULL: any body); what
 * it got is printed when not. */
static inline void get_want(int port, const char *path, int status, const char *needle)
{
    resp r = http_json(port, "GET", path, NULL);
    if (r.status != status || (needle && !strstr(r.body, needle)))
        fprintf(stderr, "GET %s: wanted %d with %s, got %d %s\n", path, status, needle ? needle : "", r.status,
                r.body);
    CHECK_EQ(r.status, status);
    CHECK(!needle || strstr(r.body, needle) != NULL);
    free(r.body);
}

#endif
