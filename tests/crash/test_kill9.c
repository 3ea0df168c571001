/*
 * kill -9 cycles of the whole server with clients that retry, a consumer
 * group, a postgres sink and media damage, checked by the shared model
 * (tests/sim/model.h; docs/operations.md "Torture runs").
 *
 * The real `spillway serve` runs on a temp data directory with fixed
 * loopback ports (so clients find it again after a restart). While it runs:
 *   - HTTP_THREADS clients post NDJSON requests of 1-3 events at ack=fsync,
 *     each with its own Idempotency-Key (all events of a request share one
 *     key, so they are stored together in one partition); a request that
 *     gets no 202 (the connection broke, the server is down, 409
 *     in_progress, 503) is sent again, same key and body, until it gets
 *     one — also after restarts. The 202 names the partition and first
 *     offset: the model is told each event's offset and that it is
 *     acknowledged;
 *   - one binary-protocol producer (include/spillway.h) sends records at
 *     ack=fsync; it resends what was in flight after each reconnect with
 *     the same producer id and sequence (the server deduplicates); a
 *     delivery names the record's partition and offset;
 *   - a consumer group polls and commits (its deliveries: at least once);
 *   - a postgres sink drains the stream into a real PostgreSQL server
 *     (tests/integration/pg.h; skipped where PostgreSQL is not installed).
 * Each cycle the server is SIGKILLed by PID at a random moment (10-250 ms)
 * and started again on the same directory with a configuration drawn for
 * the cycle (segment size, fsync interval, I/O threads); the partition
 * count is drawn per run. On a third of the cycles, while the server is
 * down, the media is damaged: a 512-byte sector zeroed or a bit flipped
 * inside a record batch of a closed or the active segment (never in the
 * active segment's last batch: damage there is indistinguishable from a
 * torn write, which recovery cuts); then `spillway check` must report a
 * damaged range covering every batch hit. A keyed request whose stored
 * batch the damage hit may be refused on retry (500 damaged): the server
 * cannot compare it with what it stored; its events then count as sent,
 * not acknowledged (http_refused_damaged). After the last cycle the clients finish, the group is drained, the
 * sink catches up, the stream is read back whole, and the model checks:
 *   the log         every acknowledged record exactly once at its offset,
 *                   nothing else stored (a failed binary record at most
 *                   once), no offset the group was given now holds
 *                   anything else;
 *   the group       was given every acknowledged record (duplicates
 *                   allowed), each at its offset;
 *   PostgreSQL      exactly one row per acknowledged record, at its
 *                   offset, and no row the log does not hold.
 * Acknowledged records lost inside a damaged range the test made and the
 * server reported are counted apart (lost_damaged), never anywhere else.
 * Then the server stops cleanly and `spillway check` must find no damage
 * but the test's own.
 *
 * Prints "kill9: cycles=N lost=L duplicated=D ... violations=V" and exits 1
 * on any violation. A damage `spillway check` does not report leaves the
 * segment before and after it in /tmp/spw-kill9-kept. Environment: SPW_KILL9_CYCLES (default 10),
 * SPW_KILL9_SECONDS (also stop once that much time is spent; without
 * SPW_KILL9_CYCLES, cycles until then: scripts/torture.sh),
 * SPW_KILL9_SEED (the configuration, the kill moments and the damage; not
 * thread timing), SPW_KILL9_CORRUPT (percent of cycles with media damage,
 * default 33). Usage: test_kill9 SPILLWAY_BINARY.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

#include "integration/pg.h"
#include "sim/model.h"
#include "spillway.h"

#define HTTP_THREADS 4
#define MAX_EVENTS 3
#define MAX_REQ (1u << 20) /* requests per HTTP thread, at most */
#define MAX_BIN (1u << 22) /* binary records, at most */
#define RETRY_MAX 12000    /* attempts of one request (10 ms apart: 2 min) */

static const char *bin;
static char data_dir[4200];
static int http_port, bin_port;
static _Atomic int stop_new;   /* clients: finish the current request, then stop */
static _Atomic int stop_group; /* the group consumer: stop */
static simmodel *m_log, *m_group, *m_pg;
static uint64_t seed;

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

/* What the models are told: a record acknowledged at (p, o), or one sent
 * without a usable answer (at most once). */
static void tell_acked(uint32_t p, uint64_t o, uint64_t h)
{
    simmodel *ms[3] = {m_log, m_group, m_pg};
    for (int i = 0; i < 3; i++)
        if (ms[i]) {
            simmodel_appended(ms[i], p, o, h);
            simmodel_acked(ms[i], p, o);
        }
}

static void tell_unacked(uint64_t h)
{
    simmodel *ms[3] = {m_log, m_group, m_pg};
    for (int i = 0; i < 3; i++)
        if (ms[i])
            simmodel_promised(ms[i], h, 0);
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

/* The configuration of cycle n (drawn from the seed). */
static const char *const SEGMENTS[] = {"4KiB", "16KiB", "64KiB", "1MiB", "128MiB"};
static const char *const FSYNC_IV[] = {"5ms", "100ms", "1s"};

/* Starts the server on the fixed ports; returns its pid once it is ready. */
static pid_t start_server(const char *data, long cycle)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    char listen[64], listen_bin[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", http_port);
    snprintf(listen_bin, sizeof listen_bin, "127.0.0.1:%d", bin_port);
    uint64_t r = mix(seed ^ ((uint64_t)cycle * 0x2545f4914f6cdd1dull));
    const char *seg = SEGMENTS[r % 5], *fsi = FSYNC_IV[(r >> 8) % 3], *io = (r >> 16) & 1 ? "2" : "1";
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
              "--io-threads", io, "--segment-bytes", seg, "--fsync-interval", fsi, (char *)NULL);
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
    char next[32];   /* Spillway-Next-Offset */
    char lease[160]; /* Spillway-Lease */
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
    char *ls = memmem(buf, hl, "Spillway-Lease: ", 16);
    if (ls)
        snprintf(a.lease, sizeof a.lease, "%.*s", (int)strcspn(ls + 16, "\r\n"), ls + 16);
    a.status = atoi(buf + 9);
    a.body = malloc(blen2 + 1);
    CHECK(a.body != NULL);
    memcpy(a.body, buf + hl, blen2);
    a.body[blen2] = 0;
    a.len = blen2;
    free(buf);
    return a;
}

/* ---- records ---- */

/* The key and value of HTTP event (t, i, j) and of binary record n. */
static int http_event(uint32_t t, uint32_t i, uint32_t j, char *key, size_t kcap, char *val, size_t vcap)
{
    snprintf(key, kcap, "h%u-%u", t, i);
    return snprintf(val, vcap, "{\"k\":\"h%u-%u\",\"j\":%u}", t, i, j);
}

static int bin_record(uint64_t n, char *key, size_t kcap, char *val, size_t vcap)
{
    snprintf(key, kcap, "b%llu", (unsigned long long)n);
    return snprintf(val, vcap, "{\"k\":\"b%llu\",\"b\":%llu}", (unsigned long long)n, (unsigned long long)n);
}

static uint64_t hash_kv(const char *key, const char *val, size_t vl) { return simmodel_hash(key, strlen(key), val, vl); }

/* One NDJSON record line of a read or a poll: partition, offset, and the
 * content hash of its key and value. 0, or -1 if it is not one. */
static int parse_line(const char *line, uint32_t *p, uint64_t *o, uint64_t *h)
{
    const char *pp = strstr(line, "\"partition\":"), *op = strstr(line, "\"offset\":");
    const char *kp = strstr(line, "\"key\":\""), *vp = strstr(line, "\"value\":");
    if (!pp || !op || !kp || !vp)
        return -1;
    *p = (uint32_t)strtoul(pp + 12, NULL, 10);
    *o = strtoull(op + 9, NULL, 10);
    kp += 7;
    const char *ke = strchr(kp, '"');
    vp += 8;
    size_t ll = strlen(vp);
    if (!ke || ll < 1 || vp[ll - 1] != '}')
        return -1;
    *h = simmodel_hash(kp, (size_t)(ke - kp), vp, ll - 1); /* the line's own closing brace is not the value's */
    return 0;
}

/* ---- HTTP clients ---- */

static _Atomic uint64_t corruptions_made, http_refused_damaged;

typedef struct hclient {
    uint32_t t;
    uint32_t nreq;     /* requests made (each acknowledged in the end) */
    uint64_t attempts; /* posts sent, retries included */
} hclient;

static void *http_main(void *arg)
{
    hclient *c = arg;
    for (uint32_t i = 0; i < MAX_REQ && !atomic_load(&stop_new); i++) {
        uint32_t k = 1 + (uint32_t)(mix(((uint64_t)c->t << 32) | i) % MAX_EVENTS);
        char body[512], hdr[128], key[32], val[128];
        size_t n = 0;
        for (uint32_t j = 0; j < k; j++) {
            http_event(c->t, i, j, key, sizeof key, val, sizeof val);
            n += (size_t)snprintf(body + n, sizeof body - n, "%s\n", val);
        }
        for (uint32_t j = 0; j < k; j++) { /* sent: stored at most once, wherever */
            int vl = http_event(c->t, i, j, key, sizeof key, val, sizeof val);
            tell_unacked(hash_kv(key, val, (size_t)vl));
        }
        snprintf(hdr, sizeof hdr, "Idempotency-Key: h%u-%u\r\nSpillway-Ack: fsync\r\n", c->t, i);
        c->nreq = i + 1;
        for (int attempt = 0;; attempt++) {
            CHECK(attempt < RETRY_MAX);
            c->attempts++;
            answer a = http_try("POST", "/v1/streams/k/events", "application/x-ndjson", hdr, body, n);
            int st = a.status;
            if (st != 202 && st != -1 && st != 409 && st != 503 && st != 429)
                fprintf(stderr, "kill9: request h%u-%u: %d %s\n", c->t, i, st, a.body ? a.body : "");
            if (st == 202) {
                /* one key: one partition, the events at first_offset.. in order */
                char *pp = strstr(a.body, "\"partition\":"), *fp = strstr(a.body, "\"first_offset\":");
                CHECK(pp && fp);
                uint32_t part = (uint32_t)strtoul(pp + 12, NULL, 10);
                uint64_t first = strtoull(fp + 15, NULL, 10);
                for (uint32_t j = 0; j < k; j++) {
                    int vl = http_event(c->t, i, j, key, sizeof key, val, sizeof val);
                    tell_acked(part, first + j, hash_kv(key, val, (size_t)vl));
                }
            }
            if (st == 500 && a.body && strstr(a.body, "\"code\":\"damaged\"") && atomic_load(&corruptions_made)) {
                /* The first attempt's batch was stored and then damaged by
                 * the test: the server cannot compare the retry with it and
                 * refuses it. Its events may be stored once. */
                for (uint32_t j = 0; j < k; j++) {
                    int vl = http_event(c->t, i, j, key, sizeof key, val, sizeof val);
                    tell_unacked(hash_kv(key, val, (size_t)vl));
                }
                atomic_fetch_add(&http_refused_damaged, 1);
                free(a.body);
                break;
            }
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

static _Atomic uint64_t bin_sent, bin_delivered, bin_failed;

static void on_delivery(void *opaque, const spillway_delivery *d)
{
    (void)opaque;
    uint64_t n = (uint64_t)(uintptr_t)d->opaque;
    char key[32], val[96];
    int vl = bin_record(n, key, sizeof key, val, sizeof val);
    uint64_t h = hash_kv(key, val, (size_t)vl);
    if (d->status == 0) {
        tell_acked(d->partition, d->offset, h);
        atomic_fetch_add(&bin_delivered, 1);
    } else {
        tell_unacked(h);
        atomic_fetch_add(&bin_failed, 1);
    }
}

static void *bin_main(void *arg)
{
    (void)arg;
    spillway_producer_config pc;
    spillway_producer_config_init(&pc);
    pc.on_delivery = on_delivery;
    pc.delivery_timeout_ms = 600000; /* outlasts every restart: each record gets its answer */
    pc.backoff_max_ms = 100;
    pc.buffer_bytes = 4u << 20;
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", bin_port);
    spillway_producer *p;
    CHECK_OK(spillway_producer_new(server, &pc, &p));
    for (uint64_t n = 0; n < MAX_BIN && !atomic_load(&stop_new); n++) {
        char v[96], key[32];
        int vl = bin_record(n, key, sizeof key, v, sizeof v);
        atomic_store(&bin_sent, n + 1);
        tell_unacked(hash_kv(key, v, (size_t)vl)); /* sent: stored at most once, wherever */
        CHECK_OK(spillway_producer_send(p, "k", key, (int32_t)strlen(key), v, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_FSYNC,
                                   (void *)(uintptr_t)n));
        if (n % 32 == 31)
            usleep(1000);
    }
    CHECK_OK(spillway_producer_flush(p, 600000));
    spillway_producer_close(p, 1000);
    return NULL;
}

/* ---- the consumer group ---- */

typedef struct given {
    uint32_t p;
    uint64_t o, h;
} given;
static pthread_mutex_t given_mu = PTHREAD_MUTEX_INITIALIZER;
static given *givens;
static size_t ngiven, given_cap;

/* One poll and its commit: 1 records, 0 none, -1 no answer. */
static int group_round(int wait_ms)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/k/groups/cg/poll?member=m&max=2000&wait_ms=%d&lease_ms=5000", wait_ms);
    answer a = http_try("POST", path, "application/json", NULL, "", 0);
    if (a.status != 200) {
        free(a.body);
        return a.status == 204 ? 0 : -1;
    }
    /* Deliveries are judged at the end, once every acknowledgement is known. */
    pthread_mutex_lock(&given_mu);
    for (char *line = a.body; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        given g;
        if (parse_line(line, &g.p, &g.o, &g.h) == 0) {
            if (ngiven == given_cap) {
                given_cap = given_cap ? given_cap * 2 : 65536;
                givens = realloc(givens, given_cap * sizeof *givens);
                CHECK(givens != NULL);
            }
            givens[ngiven++] = g;
        }
        line = nl ? nl + 1 : NULL;
    }
    pthread_mutex_unlock(&given_mu);
    free(a.body);
    if (!a.lease[0] || !a.next[0])
        return -1;
    char body[256];
    int bl = snprintf(body, sizeof body, "{\"lease\":\"%s\",\"offset\":%s}", a.lease, a.next);
    answer c = http_try("POST", "/v1/streams/k/groups/cg/commit", "application/json", NULL, body, (size_t)bl);
    free(c.body);
    return 1;
}

static void *group_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_group))
        if (group_round(100) < 0)
            usleep(20000);
    return NULL;
}

/* ---- media damage (the server is down) ---- */

typedef struct bspan {
    uint64_t pos, len, base;
    uint32_t count;
} bspan;

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static uint64_t corruptions, unreported;

/* Parses `spillway check` output: "DAMAGED .../streams/k/P/...: bytes A..B
 * (offsets X..Y)". Tells the models each range; returns 1 if one of
 * partition part covers [from, to). */
static int check_reports(uint32_t part, uint64_t from, uint64_t to)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "%s check %s 2>&1", bin, data_dir);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    char line[2048];
    int covered = 0;
    while (fgets(line, sizeof line, f)) {
        char *d = strstr(line, "DAMAGED "), *sp = strstr(line, "/streams/k/"), *op = strstr(line, "(offsets ");
        if (!d || !sp || !op)
            continue;
        uint32_t p = (uint32_t)strtoul(sp + 11, NULL, 10);
        unsigned long long x, y;
        if (sscanf(op, "(offsets %llu..%llu)", &x, &y) != 2)
            continue;
        simmodel *ms[3] = {m_log, m_group, m_pg};
        for (int i = 0; i < 3; i++)
            if (ms[i])
                simmodel_damaged(ms[i], p, x, y + 1, SIMMODEL_REPORTED);
        if (p == part && x <= from && to <= y + 1)
            covered = 1;
    }
    pclose(f);
    return covered;
}

/* Damages one batch (or the batches one sector holds) of a random segment
 * of a random partition, then wants `spillway check` to report it. */
static void corrupt(int parts, uint64_t r)
{
    uint32_t part = (uint32_t)(r % (uint64_t)parts);
    char pdir[4400];
    snprintf(pdir, sizeof pdir, "%s/streams/k/%u", data_dir, part);
    DIR *dd = opendir(pdir);
    if (!dd)
        return;
    char *names[4096];
    int nn = 0;
    struct dirent *de;
    while ((de = readdir(dd)) && nn < 4096) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".log") == 0)
            names[nn++] = strdup(de->d_name);
    }
    closedir(dd);
    if (!nn)
        return;
    qsort(names, (size_t)nn, sizeof *names, cmp_str);
    int pick = (r >> 8) % 2 ? nn - 1 : (int)((r >> 9) % (uint64_t)nn); /* the active segment half the time */
    int active = pick == nn - 1;
    char path[4700];
    snprintf(path, sizeof path, "%s/%s", pdir, names[pick]);
    for (int i = 0; i < nn; i++)
        free(names[i]);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    CHECK(buf != NULL);
    CHECK(pread(fd, buf, (size_t)st.st_size, 0) == st.st_size);
    bspan sp[8192];
    int ns = 0;
    for (uint64_t pos = 0; pos + 80 <= (uint64_t)st.st_size && ns < 8192;) {
        uint32_t len = le32(buf + pos + 8), cnt = le32(buf + pos + 24);
        if (len < 80 || pos + len > (uint64_t)st.st_size || le32(buf + pos + 16) != 0x42575053u || cnt == 0)
            break;
        sp[ns++] = (bspan){.pos = pos, .len = len, .base = le64(buf + pos), .count = cnt};
        pos += len;
    }
    /* never the active segment's last batch: recovery may cut that one as a
     * torn tail (and does not report it as damage) */
    int usable = active ? ns - 1 : ns;
    if (usable < 1) {
        free(buf);
        close(fd);
        return;
    }
    bspan *b = &sp[(r >> 16) % (uint64_t)usable];
    uint64_t limit = active ? sp[ns - 1].pos : (uint64_t)st.st_size; /* damage stays below this */
    uint64_t lo, hi; /* the bytes changed */
    if ((r >> 24) % 2) {
        lo = (b->pos + (r >> 32) % b->len) / 512 * 512;
        hi = lo + 512 < limit ? lo + 512 : limit;
        if (hi <= lo) {
            free(buf);
            close(fd);
            return;
        }
        int any = 0;
        for (uint64_t q = lo; q < hi; q++)
            any |= buf[q];
        if (!any) { /* zeros already: nothing to damage */
            free(buf);
            close(fd);
            return;
        }
    } else {
        lo = b->pos + 8 + (r >> 32) % (b->len - 8); /* not base_offset: outside the CRC */
        hi = lo + 1;
    }
    if (hi - lo > 1) {
        uint8_t z[512] = {0};
        CHECK(pwrite(fd, z, hi - lo, (off_t)lo) == (ssize_t)(hi - lo));
    } else {
        uint8_t c = buf[lo] ^ (uint8_t)(1u << ((r >> 40) % 8));
        CHECK(pwrite(fd, &c, 1, (off_t)lo) == 1);
    }
    fsync(fd);
    close(fd);
    corruptions++;
    atomic_store(&corruptions_made, corruptions);
    /* every batch whose bytes changed (a zeroed sector can cover bytes of a
     * neighbour that were zeros already: that batch is intact) */
    for (int i = 0; i < ns; i++) {
        if (sp[i].pos + sp[i].len <= lo || sp[i].pos >= hi)
            continue;
        uint64_t a = sp[i].pos > lo ? sp[i].pos : lo, e = sp[i].pos + sp[i].len < hi ? sp[i].pos + sp[i].len : hi;
        int changed = hi - lo == 1; /* a flipped bit */
        for (uint64_t q = a; q < e && !changed; q++)
            changed = buf[q] != 0;
        if (!changed)
            continue;
        simmodel *ms[3] = {m_log, m_group, m_pg};
        for (int k = 0; k < 3; k++)
            if (ms[k])
                simmodel_corrupted(ms[k], part, sp[i].base, sp[i].base + sp[i].count);
        if (!check_reports(part, sp[i].base, sp[i].base + sp[i].count)) {
            unreported++;
            /* Keep the segment before and after the damage, for a look. */
            char keep[4800];
            snprintf(keep, sizeof keep, "%s-unreported-%llu-%llu", path, (unsigned long long)seed,
                     (unsigned long long)lo);
            int kf = open(keep, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (kf >= 0) {
                CHECK(write(kf, buf, (size_t)st.st_size) == st.st_size);
                close(kf);
            }
            char cmd[9800];
            snprintf(cmd, sizeof cmd, "cp '%s' '%s.damaged'; mkdir -p /tmp/spw-kill9-kept; cp '%s' '%s.damaged' "
                     "/tmp/spw-kill9-kept/; %s check '%s' >&2", path, keep, keep, keep, bin, pdir);
            if (system(cmd) != 0) {
                /* check exits 1 on damage: its output is what matters */
            }
            fprintf(stderr, "kill9: VIOLATION unreported: bytes %llu..%llu of %s (offsets %llu..%llu) were damaged "
                    "and spillway check does not report them\n", (unsigned long long)lo, (unsigned long long)hi - 1,
                    path, (unsigned long long)sp[i].base, (unsigned long long)(sp[i].base + sp[i].count - 1));
        }
    }
    free(buf);
}

/* ---- the check ---- */

/* Reads every partition back into m_log (damaged ranges: reported). */
static uint64_t read_back(int parts)
{
    uint64_t records = 0;
    for (int p = 0; p < parts; p++) {
        uint64_t off = 0;
        for (int guard = 0; guard < 1000000; guard++) {
            char path[256];
            snprintf(path, sizeof path, "/v1/streams/k/events?partition=%d&offset=%llu&limit=10000", p,
                     (unsigned long long)off);
            answer a = http_try("GET", path, "application/json", NULL, NULL, 0);
            uint64_t next = a.next[0] ? strtoull(a.next, NULL, 10) : off;
            if (a.status == 500 && next > off) {
                simmodel_damaged(m_log, (uint32_t)p, off, next, SIMMODEL_REPORTED);
                free(a.body);
                off = next;
                continue;
            }
            if (a.status != 200)
                fprintf(stderr, "kill9: read %s: %d %s\n", path, a.status, a.body ? a.body : "");
            CHECK_EQ(a.status, 200);
            for (char *line = a.body; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                    *nl = 0;
                uint32_t rp;
                uint64_t ro, h;
                records++;
                if (parse_line(line, &rp, &ro, &h) == 0)
                    simmodel_found(m_log, rp, ro, h);
                else
                    simmodel_found(m_log, (uint32_t)p, UINT64_MAX - records, 0); /* unparsable: wrong */
                line = nl ? nl + 1 : NULL;
            }
            free(a.body);
            if (next == off)
                break;
            off = next;
        }
    }
    return records;
}

/* Waits (bounded) for the sink to deliver everything, then every row. */
static long check_pg(const pgsrv *pg)
{
    int drained = 0;
    for (int i = 0; i < 1200 && !drained; i++) {
        answer a = http_try("GET", "/v1/sinks/pgs", "application/json", NULL, NULL, 0);
        drained = a.status == 200 && strstr(a.body, "\"lag\":0,") != NULL;
        free(a.body);
        if (!drained)
            usleep(100000);
    }
    if (!drained)
        fprintf(stderr, "kill9: the postgres sink did not catch up in 120 s\n");
    CHECK(drained);
    PGconn *c = pgsrv_conn(pg);
    PGresult *r = PQexec(c, "SELECT k, v, p, o FROM kp");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    long rows = PQntuples(r);
    for (long i = 0; i < rows; i++) {
        const char *k = PQgetvalue(r, (int)i, 0), *v = PQgetvalue(r, (int)i, 1);
        simmodel_found(m_pg, (uint32_t)atoi(PQgetvalue(r, (int)i, 2)), strtoull(PQgetvalue(r, (int)i, 3), NULL, 10),
                       simmodel_hash(k, strlen(k), v, strlen(v)));
    }
    PQclear(r);
    PQfinish(c);
    return rows;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *e = getenv("SPW_KILL9_SEED");
    seed = e && *e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    e = getenv("SPW_KILL9_SECONDS");
    long seconds = e && *e ? atol(e) : 0;
    e = getenv("SPW_KILL9_CYCLES");
    long cycles = e && *e ? atol(e) : seconds > 0 ? 1000000 : 10;
    e = getenv("SPW_KILL9_CORRUPT");
    int corrupt_pct = e && *e ? atoi(e) : 33;
    const int parts = 1 + (int)(mix(seed) % 4);

    char *dir = spw_test_tmpdir("kill9");
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    http_port = free_port();
    bin_port = free_port();
    while (bin_port == http_port)
        bin_port = free_port();
    m_log = simmodel_new("kill9 log");
    m_group = simmodel_new("kill9 group");
    pgsrv pg = {0};
    int have_pg = pgsrv_find() == 0;
    if (have_pg) {
        m_pg = simmodel_new("kill9 postgres");
        pgsrv_init(&pg, dir, "pg");
        pgsrv_exec(&pg, "CREATE TABLE kp (k text NOT NULL, v text NOT NULL, p integer NOT NULL, o bigint NOT NULL)");
    }
    pid_t pid = start_server(data_dir, 0);
    char def[1024];
    static const char *const comps[] = {"none", "lz4", "zstd"};
    const char *comp = comps[mix(seed ^ 0xc0de) % 3]; /* apart from the other draws: older seeds draw as they did */
    snprintf(def, sizeof def, "{\"partitions\":%d,\"ack\":\"fsync\",\"key\":\"/k\",\"compression\":\"%s\"}",
             parts, comp);
    answer a = http_try("PUT", "/v1/streams/k", "application/json", NULL, def, strlen(def));
    if (a.status != 201)
        fprintf(stderr, "kill9: create stream: %d %s\n", a.status, a.body ? a.body : "");
    CHECK_EQ(a.status, 201);
    free(a.body);
    if (have_pg) {
        char ci[160], sd[1024];
        pgsrv_conninfo(&pg, ci, sizeof ci);
        int n = snprintf(sd, sizeof sd,
                         "{\"stream\":\"k\",\"kind\":\"postgres\",\"batch\":{\"max_events\":5000,\"max_wait_ms\":50},"
                         "\"retry\":{\"initial_ms\":20,\"max_ms\":200},\"options\":{\"shards\":[\"%s\"],\"table\":\"kp\","
                         "\"columns\":{\"k\":\"$key\",\"v\":\"$value\",\"p\":\"$partition\",\"o\":\"$offset\"}}}",
                         ci);
        a = http_try("PUT", "/v1/sinks/pgs", "application/json", NULL, sd, (size_t)n);
        if (a.status != 201)
            fprintf(stderr, "kill9: create sink: %d %s\n", a.status, a.body ? a.body : "");
        CHECK_EQ(a.status, 201);
        free(a.body);
    }

    static hclient hc[HTTP_THREADS];
    pthread_t th[HTTP_THREADS + 2];
    for (uint32_t t = 0; t < HTTP_THREADS; t++) {
        hc[t].t = t;
        CHECK(pthread_create(&th[t], NULL, http_main, &hc[t]) == 0);
    }
    CHECK(pthread_create(&th[HTTP_THREADS], NULL, bin_main, NULL) == 0);
    CHECK(pthread_create(&th[HTTP_THREADS + 1], NULL, group_main, NULL) == 0);

    int64_t t0 = now_ms();
    long n = 0;
    for (;; n++) {
        if (n >= cycles || (seconds > 0 && now_ms() - t0 >= seconds * 1000))
            break;
        uint64_t r = mix(seed + (uint64_t)n);
        usleep((useconds_t)(10 + r % 241) * 1000);
        CHECK_EQ(stop_server(pid, SIGKILL), 128 + SIGKILL);
        if ((int)((r >> 20) % 100) < corrupt_pct)
            corrupt(parts, mix(r));
        pid = start_server(data_dir, n + 1);
    }
    atomic_store(&stop_new, 1);
    for (int t = 0; t <= HTTP_THREADS; t++)
        pthread_join(th[t], NULL);
    atomic_store(&stop_group, 1);
    pthread_join(th[HTTP_THREADS + 1], NULL);
    int idle = 0;
    for (int i = 0; i < 2000 && idle < 3; i++) /* drain the group */
        idle = group_round(50) == 0 ? idle + 1 : 0;

    uint64_t stored = read_back(parts);
    long rows = have_pg ? check_pg(&pg) : -1;
    for (size_t i = 0; i < ngiven; i++) {
        simmodel_seen(m_log, givens[i].p, givens[i].o, givens[i].h, 0);
        simmodel_found(m_group, givens[i].p, givens[i].o, givens[i].h);
    }
    simmodel_result rl, rg, rp = {0};
    uint64_t v = simmodel_check(m_log, 0, &rl);
    v += simmodel_check(m_group, 1, &rg);
    if (m_pg)
        v += simmodel_check(m_pg, 0, &rp);
    v += unreported;

    CHECK_EQ(stop_server(pid, SIGTERM), 0);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "%s check %s >/dev/null", bin, data_dir);
    int check_rc = system(cmd);
    check_rc = WIFEXITED(check_rc) ? WEXITSTATUS(check_rc) : -1;
    int check_ok = check_rc == 0 || (check_rc == 1 && corruptions > 0);
    if (!check_ok)
        v++;
    uint64_t reqs = 0, attempts = 0;
    for (int t = 0; t < HTTP_THREADS; t++) {
        reqs += hc[t].nreq;
        attempts += hc[t].attempts;
    }
    printf("kill9: cycles=%ld lost=%llu duplicated=%llu wrong=%llu seen_lost=%llu group_lost=%llu pg_lost=%llu "
           "pg_duplicated=%llu pg_wrong=%llu unreported=%llu violations=%llu check=%s seed=%llu partitions=%d "
           "compression=%s corruptions=%llu lost_damaged=%llu http_refused_damaged=%llu http_requests=%llu http_attempts=%llu bin_records=%llu "
           "bin_delivered=%llu bin_failed=%llu acked=%llu stored=%llu group_given=%zu pg_rows=%ld\n",
           n, (unsigned long long)rl.lost, (unsigned long long)rl.duplicated, (unsigned long long)(rl.wrong + rg.wrong),
           (unsigned long long)rl.seen_lost, (unsigned long long)rg.lost, (unsigned long long)rp.lost,
           (unsigned long long)rp.duplicated, (unsigned long long)rp.wrong, (unsigned long long)(rl.unreported + unreported),
           (unsigned long long)v, check_ok ? "ok" : "FAILED", (unsigned long long)seed, parts, comp,
           (unsigned long long)corruptions, (unsigned long long)rl.lost_damaged, (unsigned long long)atomic_load(&http_refused_damaged), (unsigned long long)reqs,
           (unsigned long long)attempts, (unsigned long long)atomic_load(&bin_sent),
           (unsigned long long)atomic_load(&bin_delivered), (unsigned long long)atomic_load(&bin_failed),
           (unsigned long long)rl.acked, (unsigned long long)stored, ngiven, rows);
    simmodel_free(m_log);
    simmodel_free(m_group);
    simmodel_free(m_pg);
    free(givens);
    if (have_pg)
        pgsrv_stop_all();
    spw_test_rmrf(dir);
    free(dir);
    return v ? 1 : 0;
}
