/*
 * kill -9 cycles of the whole server with clients that retry: every
 * acknowledged event is stored exactly once, and so is every event whose
 * request was retried until it was acknowledged.
 *
 * The real `spillway serve` runs on a temp data directory with fixed
 * loopback ports (so clients find it again after a restart). While it runs:
 *   - HTTP_THREADS clients post NDJSON requests of 1-3 events at ack=fsync,
 *     each with its own Idempotency-Key; a request that gets no 202 (the
 *     connection broke, the server is down, 409 in_progress, 503) is sent
 *     again, same key and body, until it gets one — also after restarts;
 *   - one binary-protocol producer (include/spillway.h) sends records at
 *     ack=fsync; it resends what was in flight after each reconnect with
 *     the same producer id and sequence (the server deduplicates), and its
 *     delivery timeout outlasts any restart, so every record gets a result.
 * Each cycle the server is SIGKILLed by PID at a random moment (20-400 ms)
 * and started again on the same directory (recovery, dedupe table rebuilt
 * from the batches). After the last cycle the clients finish, the stream is
 * read back whole, and:
 *   lost        an HTTP event of an acknowledged request, or a binary
 *               record delivered with status 0, is missing;
 *   duplicated  any event or record is stored more than once;
 *   wrong       something is stored that no client sent.
 * Then the server stops cleanly and `spillway check` must pass.
 *
 * Prints "kill9: cycles=N lost=L duplicated=D ..." and exits 1 on any
 * violation. Environment: SPW_KILL9_CYCLES (default 10), SPW_KILL9_SECONDS
 * (also stop once that much time is spent; without SPW_KILL9_CYCLES, cycles
 * until then: scripts/torture.sh), SPW_KILL9_SEED. Usage: test_kill9 SPILLWAY_BINARY.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "spillway.h"
#include "test.h"

#define HTTP_THREADS 4
#define MAX_EVENTS 3
#define MAX_REQ (1u << 20)   /* requests per HTTP thread, at most */
#define MAX_BIN (1u << 22)   /* binary records, at most */
#define RETRY_MAX 12000      /* attempts of one request (10 ms apart: 2 min) */

static const char *bin;
static int http_port, bin_port;
static _Atomic int stop_new;   /* clients: finish the current request, then stop */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- the server ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    socklen_t len = sizeof sa;
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Starts the server on the fixed ports; returns its pid once it is ready. */
static pid_t start_server(const char *data)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    char listen[64], listen_bin[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", http_port);
    snprintf(listen_bin, sizeof listen_bin, "127.0.0.1:%d", bin_port);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(pfd[0]);
        if (pfd[1] != 3) {
            dup2(pfd[1], 3);
            close(pfd[1]);
        }
        int devnull = open("/dev/null", O_WRONLY);
        if (!getenv("SPW_TEST_VERBOSE"))
            dup2(devnull, 2);
        execl(bin, bin, "serve", "--data", data, "--listen", listen, "--listen-bin", listen_bin, "--ready-fd", "3",
              "--io-threads", "2", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char buf[32] = {0};
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    CHECK(poll(&p, 1, 60000) == 1);
    ssize_t n = read(pfd[0], buf, sizeof buf - 1);
    close(pfd[0]);
    if (n <= 0) {
        int st;
        waitpid(pid, &st, 0);
        fprintf(stderr, "kill9: the server did not start (status %d); SPW_TEST_VERBOSE=1 shows why\n", st);
        CHECK(n > 0);
    }
    return pid;
}

static int stop_server(pid_t pid, int sig)
{
    kill(pid, sig);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- HTTP without aborting on a dead server ---- */

typedef struct answer {
    int status; /* -1: no answer (connection refused or broken) */
    char *body;
    size_t len;
    char next[32]; /* Spillway-Next-Offset */
} answer;

static answer http_try(const char *method, const char *path, const char *ctype, const char *extra, const char *body,
                       size_t blen)
{
    answer a = {.status = -1};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return a;
    }
    char head[1024];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n%s"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     method, path, ctype, extra ? extra : "", blen);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n || (blen && send(fd, body, blen, MSG_NOSIGNAL) != (ssize_t)blen)) {
        close(fd);
        return a;
    }
    size_t cap = 1 << 16, have = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    for (;;) {
        if (have == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        ssize_t r = recv(fd, buf + have, cap - have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    close(fd);
    char *he = have > 12 ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
    if (!he) {
        free(buf);
        return a;
    }
    size_t hl = (size_t)(he - buf) + 4;
    char *cl = memmem(buf, hl, "Content-Length: ", 16);
    size_t blen2 = cl ? (size_t)strtoull(cl + 16, NULL, 10) : 0;
    if (have < hl + blen2) { /* cut off: as good as no answer */
        free(buf);
        return a;
    }
    char *nx = memmem(buf, hl, "Spillway-Next-Offset: ", 22);
    if (nx)
        snprintf(a.next, sizeof a.next, "%.*s", (int)strcspn(nx + 22, "\r\n"), nx + 22);
    a.status = atoi(buf + 9);
    a.body = malloc(blen2 + 1);
    CHECK(a.body != NULL);
    memcpy(a.body, buf + hl, blen2);
    a.body[blen2] = 0;
    a.len = blen2;
    free(buf);
    return a;
}

/* ---- HTTP clients ---- */

typedef struct hclient {
    uint32_t t;
    uint32_t nreq;     /* requests made (each acknowledged in the end) */
    uint8_t *nev;      /* events of request i */
    uint64_t attempts; /* posts sent, retries included */
} hclient;

static void *http_main(void *arg)
{
    hclient *c = arg;
    c->nev = calloc(MAX_REQ, 1);
    CHECK(c->nev != NULL);
    for (uint32_t i = 0; i < MAX_REQ && !atomic_load(&stop_new); i++) {
        uint32_t k = 1 + (uint32_t)(mix(((uint64_t)c->t << 32) | i) % MAX_EVENTS);
        char body[256], hdr[128];
        size_t n = 0;
        for (uint32_t j = 0; j < k; j++)
            n += (size_t)snprintf(body + n, sizeof body - n, "{\"t\":%u,\"i\":%u,\"j\":%u}\n", c->t, i, j);
        snprintf(hdr, sizeof hdr, "Idempotency-Key: h%u-%u\r\nSpillway-Ack: fsync\r\n", c->t, i);
        c->nev[i] = (uint8_t)k;
        c->nreq = i + 1;
        for (int attempt = 0;; attempt++) {
            CHECK(attempt < RETRY_MAX);
            c->attempts++;
            answer a = http_try("POST", "/v1/streams/k/events", "application/x-ndjson", hdr, body, n);
            int st = a.status;
            if (st != 202 && st != -1 && st != 409 && st != 503 && st != 429)
                fprintf(stderr, "kill9: request h%u-%u: %d %s\n", c->t, i, st, a.body ? a.body : "");
            free(a.body);
            if (st == 202)
                break;
            CHECK(st == -1 || st == 409 || st == 503 || st == 429); /* anything else is a refusal: a bug here */
            usleep(10000);
        }
    }
    return NULL;
}

/* ---- the binary producer ---- */

static _Atomic uint8_t *bin_state; /* per record: 0 not sent, 1 sent, 2 delivered, 3 failed */
static _Atomic uint64_t bin_failed;

static void on_delivery(void *opaque, const spw_delivery *d)
{
    (void)opaque;
    uint64_t n = (uint64_t)(uintptr_t)d->opaque;
    atomic_store(&bin_state[n], d->status == 0 ? 2 : 3);
    if (d->status)
        atomic_fetch_add(&bin_failed, 1);
}

static _Atomic uint64_t bin_sent;

static void *bin_main(void *arg)
{
    (void)arg;
    spw_producer_config pc;
    spw_producer_config_init(&pc);
    pc.on_delivery = on_delivery;
    pc.delivery_timeout_ms = 600000; /* outlasts every restart: each record gets its answer */
    pc.backoff_max_ms = 100;
    pc.buffer_bytes = 4u << 20;
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", bin_port);
    spw_producer *p;
    CHECK_OK(spw_producer_new(server, &pc, &p));
    for (uint64_t n = 0; n < MAX_BIN && !atomic_load(&stop_new); n++) {
        char v[64], key[32];
        int vl = snprintf(v, sizeof v, "{\"b\":%llu}", (unsigned long long)n);
        int kl = snprintf(key, sizeof key, "b%llu", (unsigned long long)n);
        atomic_store(&bin_state[n], 1);
        atomic_store(&bin_sent, n + 1);
        CHECK_OK(spw_producer_send(p, "k", key, kl, v, (size_t)vl, SPW_TS_NOW, SPW_ACK_LEVEL_FSYNC,
                                   (void *)(uintptr_t)n));
        if (n % 32 == 31)
            usleep(1000);
    }
    CHECK_OK(spw_producer_flush(p, 600000));
    spw_producer_close(p, 1000);
    return NULL;
}

/* ---- the check ---- */

typedef struct counts {
    uint8_t *http[HTTP_THREADS]; /* [i * MAX_EVENTS + j] */
    uint8_t *bin;
    uint64_t wrong, records;
} counts;

static void bump(uint8_t *c)
{
    if (*c < 255)
        (*c)++;
}

static void read_back(int parts, counts *cn)
{
    for (int t = 0; t < HTTP_THREADS; t++) {
        cn->http[t] = calloc((size_t)MAX_REQ * MAX_EVENTS, 1);
        CHECK(cn->http[t] != NULL);
    }
    cn->bin = calloc(MAX_BIN, 1);
    CHECK(cn->bin != NULL);
    for (int p = 0; p < parts; p++) {
        uint64_t off = 0;
        for (;;) {
            char path[256];
            snprintf(path, sizeof path, "/v1/streams/k/events?partition=%d&offset=%llu&limit=10000", p,
                     (unsigned long long)off);
            answer a = http_try("GET", path, "application/json", NULL, NULL, 0);
            if (a.status != 200)
                fprintf(stderr, "kill9: read %s: %d %s\n", path, a.status, a.body ? a.body : "");
            CHECK_EQ(a.status, 200);
            uint64_t next = strtoull(a.next, NULL, 10);
            for (char *line = a.body; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                    *nl = 0;
                char *v = strstr(line, "\"value\":");
                unsigned t, i, j;
                unsigned long long b;
                cn->records++;
                if (v && sscanf(v, "\"value\":{\"t\":%u,\"i\":%u,\"j\":%u}", &t, &i, &j) == 3 && t < HTTP_THREADS &&
                    i < MAX_REQ && j < MAX_EVENTS)
                    bump(&cn->http[t][(size_t)i * MAX_EVENTS + j]);
                else if (v && sscanf(v, "\"value\":{\"b\":%llu}", &b) == 1 && b < MAX_BIN)
                    bump(&cn->bin[b]);
                else
                    cn->wrong++;
                line = nl ? nl + 1 : NULL;
            }
            free(a.body);
            if (next == off)
                break;
            off = next;
        }
    }
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *e = getenv("SPW_KILL9_SEED");
    uint64_t seed = e && *e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    e = getenv("SPW_KILL9_SECONDS");
    long seconds = e && *e ? atol(e) : 0;
    e = getenv("SPW_KILL9_CYCLES");
    long cycles = e && *e ? atol(e) : seconds > 0 ? 1000000 : 10;
    const int parts = 3;

    char *dir = spw_test_tmpdir("kill9");
    http_port = free_port();
    bin_port = free_port();
    while (bin_port == http_port)
        bin_port = free_port();
    bin_state = calloc(MAX_BIN, 1);
    CHECK(bin_state != NULL);
    pid_t pid = start_server(dir);
    const char *def = "{\"partitions\":3,\"ack\":\"fsync\"}";
    answer a = http_try("PUT", "/v1/streams/k", "application/json", NULL, def, strlen(def));
    if (a.status != 201)
        fprintf(stderr, "kill9: create stream: %d %s\n", a.status, a.body ? a.body : "");
    CHECK_EQ(a.status, 201);
    free(a.body);

    static hclient hc[HTTP_THREADS];
    pthread_t th[HTTP_THREADS + 1];
    for (uint32_t t = 0; t < HTTP_THREADS; t++) {
        hc[t].t = t;
        CHECK(pthread_create(&th[t], NULL, http_main, &hc[t]) == 0);
    }
    CHECK(pthread_create(&th[HTTP_THREADS], NULL, bin_main, NULL) == 0);

    int64_t t0 = now_ms();
    long n = 0;
    for (;; n++) {
        if (n >= cycles || (seconds > 0 && now_ms() - t0 >= seconds * 1000))
            break;
        usleep((useconds_t)(20 + mix(seed + (uint64_t)n) % 381) * 1000);
        CHECK_EQ(stop_server(pid, SIGKILL), 128 + SIGKILL);
        pid = start_server(dir);
    }
    atomic_store(&stop_new, 1);
    for (int t = 0; t <= HTTP_THREADS; t++)
        pthread_join(th[t], NULL);

    counts cn = {0};
    read_back(parts, &cn);
    uint64_t lost = 0, dup = 0, events = 0, reqs = 0, attempts = 0, bin_acked = 0, bin_unknown = 0;
    for (int t = 0; t < HTTP_THREADS; t++) {
        reqs += hc[t].nreq;
        attempts += hc[t].attempts;
        for (uint32_t i = 0; i < hc[t].nreq; i++)
            for (uint32_t j = 0; j < MAX_EVENTS; j++) {
                uint8_t c = cn.http[t][(size_t)i * MAX_EVENTS + j];
                if (j < hc[t].nev[i]) {
                    events++;
                    if (c == 0 && lost++ < 8)
                        fprintf(stderr, "kill9: VIOLATION lost: event h%d-%u/%u of an acknowledged request\n", t, i, j);
                    if (c > 1 && dup++ < 8)
                        fprintf(stderr, "kill9: VIOLATION duplicated: event h%d-%u/%u stored %u times\n", t, i, j, c);
                } else if (c) {
                    cn.wrong++;
                }
            }
        for (size_t x = (size_t)hc[t].nreq * MAX_EVENTS; x < (size_t)MAX_REQ * MAX_EVENTS; x++)
            if (cn.http[t][x])
                cn.wrong++;
    }
    uint64_t sent = atomic_load(&bin_sent);
    for (uint64_t b = 0; b < MAX_BIN; b++) {
        uint8_t st = atomic_load(&bin_state[b]), c = cn.bin[b];
        if (st == 2)
            bin_acked++;
        if (st == 3)
            bin_unknown++;
        if (st == 2 && c == 0 && lost++ < 8)
            fprintf(stderr, "kill9: VIOLATION lost: binary record %llu was delivered\n", (unsigned long long)b);
        if (c > 1 && dup++ < 8)
            fprintf(stderr, "kill9: VIOLATION duplicated: binary record %llu stored %u times\n",
                    (unsigned long long)b, c);
        if (c && b >= sent)
            cn.wrong++;
    }
    CHECK_EQ(stop_server(pid, SIGTERM), 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s check %s >/dev/null", bin, dir);
    int check_rc = system(cmd);
    printf("kill9: cycles=%ld lost=%llu duplicated=%llu wrong=%llu check=%s seed=%llu http_requests=%llu "
           "http_attempts=%llu http_events=%llu bin_records=%llu bin_delivered=%llu bin_failed=%llu stored=%llu\n",
           n, (unsigned long long)lost, (unsigned long long)dup, (unsigned long long)cn.wrong,
           check_rc == 0 ? "ok" : "FAILED", (unsigned long long)seed, (unsigned long long)reqs,
           (unsigned long long)attempts, (unsigned long long)events, (unsigned long long)sent,
           (unsigned long long)bin_acked, (unsigned long long)bin_unknown, (unsigned long long)cn.records);
    for (int t = 0; t < HTTP_THREADS; t++) {
        free(cn.http[t]);
        free(hc[t].nev);
    }
    free(cn.bin);
    free((void *)bin_state);
    spw_test_rmrf(dir);
    free(dir);
    return lost || dup || cn.wrong || check_rc != 0 ? 1 : 0;
}
