/*
 * Power cuts of the whole server, end to end: `spillway serve` runs with its
 * data directory on lossyfs (tests/fuse/lossyfs.c: unsynced writes live in
 * that process's memory and are lost, all but a random torn few, when it
 * "loses power"). Each cycle lets producers and a consumer group run for a
 * random while, then kills the server with SIGKILL, cuts the power, and
 * starts the server again on the same ports.
 *
 *   - an HTTP producer sends requests of 10 events with an Idempotency-Key
 *     at ack=fsync and retries each one (same key) until it is answered 2xx;
 *   - a binary producer (the C client library) sends single records at
 *     ack=fsync; the library resends what a lost connection left unanswered;
 *   - a third producer sends at ack=written, without retries: what it
 *     sends may be lost, but the group must never be given an event that a
 *     cut then replaces (readers see only durable records);
 *   - a consumer group polls and commits;
 *   - a postgres sink drains the stream into a real PostgreSQL server
 *     (started here, on the real disk: it is the target, not the system
 *     under test).
 *
 * At the end (everything retried, the group drained, the stream read back)
 * the shared model (tests/sim/model.h) says: every acknowledged event is
 * stored exactly once (a binary record at the offset its delivery named);
 * no event is stored twice, nor anything no producer sent; every offset
 * the group was given still holds what it was given; the group was given
 * every acknowledged event; PostgreSQL holds exactly one row per
 * acknowledged event, at the offset the log has it, and no row for an
 * event the log does not hold. Prints "fusecut: cycles=N ...
 * violations=V"; fails on any violation.
 *
 *   test_fusecut SPILLWAY LOSSYFS        (SPW_FUSECUT_CYCLES, default 20)
 *
 * Exits 77 (skipped) where FUSE cannot be mounted.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "../integration/pg.h"
#include "fuse/lossy.h"
#include "sim/model.h"
#include "spillway.h"

#define STREAM "pl"
#define NPARTS 2
#define HTTP_MAX 20000      /* requests */
#define HTTP_EVENTS 10      /* events per request */
#define BIN_MAX 2000000     /* binary records */
#define BIN_BASE 100000000u /* binary events' ids start here */
#define LAZY_BASE 50000000u /* ack=written events' ids start here */

static const char *BIN;
static srv S;
static char DATA[4200];
static char LOG[4200]; /* the servers' log, on the real disk beside lossyfs's backing directory */
static const char *const *EXTRA;
static _Atomic int stop_http, stop_bin, stop_group, stop_lazy;
static _Atomic int http_port;

static _Atomic uint8_t h_acked[HTTP_MAX], b_acked[BIN_MAX];
static _Atomic uint32_t h_sent, b_sent;

/* The shared model (tests/sim/model.h): the log as producers were told
 * and as it reads back; the group's deliveries and PostgreSQL's rows
 * against the log as it reads back. An event's content is its id u. */
static simmodel *m_log, *m_group, *m_pg;

static uint64_t hash_u(uint64_t u) { return simmodel_hash("u", 1, &u, sizeof u); }

/* Was event u acknowledged (ack=fsync, answered)? */
static int acked_u(uint64_t u)
{
    if (u >= BIN_BASE)
        return u - BIN_BASE < BIN_MAX && b_acked[u - BIN_BASE];
    return u < HTTP_MAX * HTTP_EVENTS && h_acked[u / HTTP_EVENTS];
}

/* What the group was given (judged at the end, against the final log) and
 * what the log holds at the end. */
typedef struct rec {
    uint32_t p;
    uint64_t o, u;
} rec;
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static rec *given, *fin;
static size_t ngiven, given_cap, nfin, fin_cap;

static void rec_push(rec **v, size_t *n, size_t *cap, int p, uint64_t o, uint64_t u)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 65536;
        *v = realloc(*v, *cap * sizeof **v);
        CHECK(*v != NULL);
    }
    (*v)[(*n)++] = (rec){(uint32_t)p, o, u};
}

/* ---- a plain HTTP client that never aborts: status, or -1 (no answer) ---- */

typedef struct hresp {
    int status;
    char *head, *body;
    size_t body_len;
} hresp;

static int hreq(int port, const char *method, const char *path, const char *headers, const char *body, size_t len,
                hresp *out)
{
    memset(out, 0, sizeof *out);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    char head[1024];
    /* events are NDJSON; a group's poll and commit take JSON (docs/api.md "Content types") */
    const char *ctype = strstr(path, "/groups/") ? "application/json" : "application/x-ndjson";
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n%s\r\n",
                      method, path, ctype, len, headers ? headers : "");
    if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn || (len && send(fd, body, len, MSG_NOSIGNAL) != (ssize_t)len)) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (n < 12 || strncmp(buf, "HTTP/1.1 ", 9) != 0 || !sep) {
        free(buf);
        return -1;
    }
    *sep = 0;
    out->status = atoi(buf + 9);
    out->head = buf;
    out->body = sep + 4;
    out->body_len = n - (size_t)(sep + 4 - buf);
    return out->status;
}

static void hfree(hresp *r) { free(r->head); }

static int hheader(const hresp *r, const char *name, char *out, size_t cap)
{
    const char *p = r->head;
    size_t nl = strlen(name);
    while ((p = strstr(p, "\r\n"))) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            p += nl + 1;
            while (*p == ' ')
                p++;
            size_t i = 0;
            while (p[i] && p[i] != '\r' && i + 1 < cap) {
                out[i] = p[i];
                i++;
            }
            out[i] = 0;
            return 1;
        }
    }
    return 0;
}

/* ---- producers ---- */

static void *http_producer(void *arg)
{
    (void)arg;
    char body[HTTP_EVENTS * 64];
    for (uint32_t i = 0; i < HTTP_MAX && !stop_http; i++) {
        size_t len = 0;
        for (uint32_t j = 0; j < HTTP_EVENTS; j++)
            len += (size_t)sprintf(body + len, "{\"k\":\"k%u\",\"u\":%u}\n", (i * 7 + j) % 11, i * HTTP_EVENTS + j);
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Idempotency-Key: fc-%u\r\n", i);
        for (uint32_t j = 0; j < HTTP_EVENTS; j++)
            simmodel_promised(m_log, hash_u(i * HTTP_EVENTS + j), 0);
        atomic_store(&h_sent, i + 1);
        /* retried with the same key until answered: bounded by 60 s of no answer */
        for (int tries = 0; tries < 3000; tries++) {
            hresp r;
            int st = hreq(http_port, "POST", "/v1/streams/" STREAM "/events", hdr, body, len, &r);
            if (st >= 0)
                hfree(&r);
            if (st >= 200 && st < 300) {
                h_acked[i] = 1;
                for (uint32_t j = 0; j < HTTP_EVENTS; j++) /* the answer's offsets are per partition: by content */
                    simmodel_promised(m_log, hash_u(i * HTTP_EVENTS + j), 1);
                break;
            }
            usleep(20000);
        }
    }
    return NULL;
}

/* ack=written, no key, no retry: may be lost by a cut, never half-seen. */
static void *lazy_producer(void *arg)
{
    (void)arg;
    char body[HTTP_EVENTS * 64];
    for (uint32_t i = 0; !stop_lazy && i < 1000000; i++) {
        size_t len = 0;
        for (uint32_t j = 0; j < HTTP_EVENTS; j++)
            len += (size_t)sprintf(body + len, "{\"k\":\"w%u\",\"u\":%u}\n", j % 5, LAZY_BASE + i * HTTP_EVENTS + j);
        for (uint32_t j = 0; j < HTTP_EVENTS; j++) /* may be lost, never stored twice */
            simmodel_promised(m_log, hash_u(LAZY_BASE + i * HTTP_EVENTS + j), 0);
        hresp r;
        int st = hreq(http_port, "POST", "/v1/streams/" STREAM "/events?ack=written", NULL, body, len, &r);
        if (st >= 0)
            hfree(&r);
        usleep(st >= 200 && st < 300 ? 1000 : 20000);
    }
    return NULL;
}

static void on_delivery(void *opaque, const spillway_delivery *d)
{
    (void)opaque;
    uintptr_t n = (uintptr_t)d->opaque;
    if (d->status == 0 && n < BIN_MAX) {
        b_acked[n] = 1;
        simmodel_appended(m_log, d->partition, d->offset, hash_u(BIN_BASE + n));
        simmodel_acked(m_log, d->partition, d->offset);
    }
}

static void *bin_producer(void *arg)
{
    spillway_producer *p = arg;
    for (uint32_t n = 0; n < BIN_MAX && !stop_bin; n++) {
        char v[64], k[16];
        int vl = snprintf(v, sizeof v, "{\"k\":\"b%u\",\"u\":%u}", n % 13, BIN_BASE + n);
        int kl = snprintf(k, sizeof k, "b%u", n % 13);
        atomic_store(&b_sent, n + 1);
        simmodel_promised(m_log, hash_u(BIN_BASE + n), 0);
        if (spillway_producer_send(p, STREAM, k, kl, v, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_FSYNC,
                              (void *)(uintptr_t)n) != 0)
            break;
        if (n % 64 == 63)
            usleep(2000);
    }
    return NULL;
}

/* ---- what was read ---- */

static int64_t field(const char *line, const char *name)
{
    const char *p = strstr(line, name);
    return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

/* Calls fn for each record line of an NDJSON body. */
static void each_line(char *body, void (*fn)(int part, uint64_t off, uint64_t u))
{
    for (char *line = body; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        int64_t p = field(line, "\"partition\":"), o = field(line, "\"offset\":"), u = field(line, "\"u\":");
        if (p >= 0 && p < NPARTS && o >= 0 && u >= 0)
            fn((int)p, (uint64_t)o, (uint64_t)u);
        line = nl ? nl + 1 : NULL;
    }
}

static void on_seen(int p, uint64_t off, uint64_t u)
{
    pthread_mutex_lock(&seen_mu);
    rec_push(&given, &ngiven, &given_cap, p, off, u);
    pthread_mutex_unlock(&seen_mu);
}

static int group_round(int wait_ms)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/" STREAM "/groups/cg/poll?member=m&max=2000&wait_ms=%d&lease_ms=5000",
             wait_ms);
    hresp r;
    int st = hreq(http_port, "POST", path, NULL, "", 0, &r);
    if (st != 200) {
        if (st >= 0)
            hfree(&r);
        return st == 204 ? 0 : -1;
    }
    char lease[128], next[32];
    int ok = hheader(&r, "Spillway-Lease", lease, sizeof lease) && hheader(&r, "Spillway-Next-Offset", next, sizeof next);
    each_line(r.body, on_seen);
    hfree(&r);
    if (!ok)
        return -1;
    char body[256];
    int bl = snprintf(body, sizeof body, "{\"lease\":\"%s\",\"offset\":%s}", lease, next);
    st = hreq(http_port, "POST", "/v1/streams/" STREAM "/groups/cg/commit", NULL, body, (size_t)bl, &r);
    if (st >= 0)
        hfree(&r);
    /* A commit is refused only for a lease a restart or its expiry ended
     * (409), or lost with the connection in a power cut (-1): anything
     * else is a wrong request, and the group would never move on. */
    if (st != 200 && st != 409 && st != -1)
        fprintf(stderr, "fusecut: a group commit answered %d\n", st);
    CHECK(st == 200 || st == 409 || st == -1);
    return 1;
}

static void *group_consumer(void *arg)
{
    (void)arg;
    while (!stop_group)
        if (group_round(100) < 0)
            usleep(20000);
    return NULL;
}

static void on_final(int p, uint64_t off, uint64_t u)
{
    simmodel_found(m_log, (uint32_t)p, off, hash_u(u));
    pthread_mutex_lock(&seen_mu);
    rec_push(&fin, &nfin, &fin_cap, p, off, u);
    pthread_mutex_unlock(&seen_mu);
}

/* Reads every partition from its start; returns the records read. */
static uint64_t read_all(void)
{
    uint64_t total = 0;
    for (int p = 0; p < NPARTS; p++) {
        uint64_t off = 0;
        for (int guard = 0; guard < 100000; guard++) {
            char path[256];
            snprintf(path, sizeof path, "/v1/streams/" STREAM "/events?partition=%d&offset=%" PRIu64 "&limit=10000", p,
                     off);
            hresp r;
            int st = hreq(http_port, "GET", path, NULL, "", 0, &r);
            char next[32] = "";
            if (st == 500 && hheader(&r, "Spillway-Next-Offset", next, sizeof next)) {
                printf("partition %d: damaged records reported at %" PRIu64 ", resuming at %s\n", p, off, next);
                simmodel_damaged(m_log, (uint32_t)p, off, strtoull(next, NULL, 10), SIMMODEL_REPORTED);
                off = strtoull(next, NULL, 10);
                hfree(&r);
                continue;
            }
            CHECK_EQ(st, 200);
            CHECK(hheader(&r, "Spillway-Next-Offset", next, sizeof next));
            uint64_t nx = strtoull(next, NULL, 10);
            for (char *q = r.body; *q; q++)
                total += *q == '\n';
            each_line(r.body, on_final);
            hfree(&r);
            if (nx == off)
                break;
            off = nx;
        }
    }
    return total;
}

/* The sink has delivered everything (bounded wait), then every row is checked. */
static void check_pg(int port, const pgsrv *pg)
{
    int drained = 0;
    for (int i = 0; i < 1200 && !drained; i++) {
        hresp r;
        if (hreq(port, "GET", "/v1/sinks/pgs", NULL, "", 0, &r) == 200)
            drained = strstr(r.body, "\"lag\":0,") != NULL;
        hfree(&r);
        if (!drained)
            usleep(100000);
    }
    CHECK(drained);
    PGconn *c = pgsrv_conn(pg);
    PGresult *r = PQexec(c, "SELECT u, p, o FROM fc");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    long rows = PQntuples(r);
    for (long i = 0; i < rows; i++)
        simmodel_found(m_pg, (uint32_t)atoi(PQgetvalue(r, (int)i, 1)), strtoull(PQgetvalue(r, (int)i, 2), NULL, 10),
                       hash_u(strtoull(PQgetvalue(r, (int)i, 0), NULL, 10)));
    PQclear(r);
    PQfinish(c);
    printf("fusecut: PostgreSQL holds %ld rows\n", rows);
}

/* On a violation: what the servers' recoveries said of damage and cuts,
 * and the dedupe table's rebuilds (their log is kept with the data). */
static void print_recovery_log(void)
{
    FILE *f = fopen(LOG, "r");
    if (!f)
        return;
    static const char *const words[] = {"damaged", "recovery cut", "lost data", "dedupe table", "read-only"};
    char line[2048];
    int shown = 0;
    while (fgets(line, sizeof line, f) && shown < 80)
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
            if (strstr(line, words[i])) {
                printf("server: %s", line);
                shown++;
                break;
            }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SPILLWAY LOSSYFS\n", argv[0]);
        return 2;
    }
    BIN = argv[1];
    int cycles = getenv("SPW_FUSECUT_CYCLES") ? atoi(getenv("SPW_FUSECUT_CYCLES")) : 20;
    unsigned seed = getenv("SPW_FUSECUT_SEED") ? (unsigned)atoi(getenv("SPW_FUSECUT_SEED")) : (unsigned)getpid();
    srand(seed);
    char *dir = spw_test_tmpdir("fusecut");
    char back[4200], mnt[4200];
    snprintf(back, sizeof back, "%s/back", dir);
    snprintf(mnt, sizeof mnt, "%s/mnt", dir);
    CHECK(mkdir(back, 0755) == 0 && mkdir(mnt, 0755) == 0);
    lossy fs = {0};
    if (access("/dev/fuse", R_OK | W_OK) != 0 || lossy_start(&fs, argv[2], back, mnt, seed, 0) != 0) {
        printf("test_fusecut: skipped: cannot mount a FUSE filesystem here\n");
        if (fs.pid > 0)
            lossy_stop(&fs);
        spw_test_rmrf(dir);
        return 77;
    }
    m_log = simmodel_new("fusecut log");
    m_group = simmodel_new("fusecut group");
    m_pg = simmodel_new("fusecut postgres");
    snprintf(DATA, sizeof DATA, "%s/data", mnt);
    snprintf(LOG, sizeof LOG, "%s/server.log", dir);
    srv_start_log(&S, BIN, DATA, NULL, LOG);
    char lh[64], lb[64];
    snprintf(lh, sizeof lh, "127.0.0.1:%d", S.port);
    snprintf(lb, sizeof lb, "127.0.0.1:%d", S.binport);
    const char *extra[] = {"--listen", lh, "--listen-bin", lb, "--segment-bytes", "65536", NULL};
    EXTRA = extra;
    http_port = S.port;
    CHECK_EQ(srv_stop(&S, SIGTERM), 0); /* again with small segments, on these ports */
    srv_start_log(&S, BIN, DATA, EXTRA, LOG);
    put_stream(S.port, STREAM, "{\"partitions\":2,\"key\":\"/k\"}");
    pgsrv pg = {0};
    CHECK(pgsrv_find() == 0);
    pgsrv_init(&pg, dir, "pg");
    pgsrv_exec(&pg, "CREATE TABLE fc (u bigint NOT NULL, p integer NOT NULL, o bigint NOT NULL)");
    {
        char ci[160], def[1024];
        pgsrv_conninfo(&pg, ci, sizeof ci);
        snprintf(def, sizeof def,
                 "{\"stream\":\"" STREAM "\",\"kind\":\"postgres\",\"batch\":{\"max_events\":5000,\"max_wait_ms\":50},"
                 "\"retry\":{\"initial_ms\":20,\"max_ms\":200},\"options\":{\"shards\":[\"%s\"],\"table\":\"fc\","
                 "\"columns\":{\"u\":\"/u\",\"p\":\"$partition\",\"o\":\"$offset\"}}}",
                 ci);
        CHECK_EQ(req_status(S.port, "PUT", "/v1/sinks/pgs", def), 201);
    }

    spillway_producer_config pc;
    spillway_producer_config_init(&pc);
    pc.on_delivery = on_delivery;
    pc.delivery_timeout_ms = 600000;
    pc.backoff_max_ms = 200;
    spillway_producer *prod;
    CHECK_OK(spillway_producer_new(lb, &pc, &prod));
    pthread_t th_h, th_b, th_g, th_w;
    pthread_create(&th_w, NULL, lazy_producer, NULL);
    pthread_create(&th_h, NULL, http_producer, NULL);
    pthread_create(&th_b, NULL, bin_producer, prod);
    pthread_create(&th_g, NULL, group_consumer, NULL);
    for (int c = 0; c < cycles; c++) {
        usleep((useconds_t)(150000 + rand() % 450000));
        CHECK_EQ(srv_stop(&S, SIGKILL), 128 + SIGKILL);
        lossy_cut(&fs);
        srv_start_log(&S, BIN, DATA, EXTRA, LOG);
    }
    usleep(200000);
    stop_http = 1;
    stop_bin = 1;
    stop_lazy = 1;
    pthread_join(th_w, NULL);
    pthread_join(th_h, NULL);
    pthread_join(th_b, NULL);
    CHECK_OK(spillway_producer_flush(prod, 120000));
    spillway_producer_close(prod, 10000);
    stop_group = 1;
    pthread_join(th_g, NULL);
    int idle = 0;
    for (int i = 0; i < 2000 && idle < 3; i++) /* drain the group */
        idle = group_round(50) == 0 ? idle + 1 : 0;
    uint64_t stored = read_all();
    /* The group and PostgreSQL are judged against the log as it reads back:
     * each record there is expected at its offset, required if it was
     * acknowledged. */
    for (size_t i = 0; i < nfin; i++) {
        simmodel *ms[2] = {m_group, m_pg};
        for (int k = 0; k < 2; k++) {
            simmodel_appended(ms[k], fin[i].p, fin[i].o, hash_u(fin[i].u));
            if (acked_u(fin[i].u))
                simmodel_acked(ms[k], fin[i].p, fin[i].o);
        }
    }
    for (size_t i = 0; i < ngiven; i++) {
        simmodel_seen(m_log, given[i].p, given[i].o, hash_u(given[i].u), 0);
        simmodel_found(m_group, given[i].p, given[i].o, hash_u(given[i].u));
    }
    check_pg(S.port, &pg);

    simmodel_result rl, rg, rp;
    long violations = (long)simmodel_check(m_log, 0, &rl);
    violations += (long)simmodel_check(m_group, 1, &rg);
    violations += (long)simmodel_check(m_pg, 0, &rp);
    uint64_t h_ack = 0, b_ack = 0;
    for (uint32_t i = 0; i < h_sent; i++)
        h_ack += h_acked[i] ? HTTP_EVENTS : 0;
    for (uint32_t n = 0; n < b_sent; n++)
        b_ack += b_acked[n];
    printf("fusecut: cycles=%d seed=%u acked_http_events=%" PRIu64 " acked_binary=%" PRIu64 " stored=%" PRIu64
           " lost=%" PRIu64 " duplicated=%" PRIu64 " wrong=%" PRIu64 " seen_lost=%" PRIu64 " group_lost=%" PRIu64
           " group_wrong=%" PRIu64 " pg_lost=%" PRIu64 " pg_duplicated=%" PRIu64 " pg_wrong=%" PRIu64
           " group_given=%zu violations=%ld\n",
           cycles, seed, h_ack, b_ack, stored, rl.lost, rl.duplicated, rl.wrong, rl.seen_lost, rg.lost, rg.wrong,
           rp.lost, rp.duplicated, rp.wrong, ngiven, violations);
    simmodel_free(m_log);
    simmodel_free(m_group);
    simmodel_free(m_pg);
    free(given);
    free(fin);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    pgsrv_stop_all();
    lossy_stop(&fs);
    if (violations) { /* the data and PostgreSQL's, for a look: spillway check */
        print_recovery_log();
        printf("fusecut: the data and the servers' log (%s) are kept in %s\n", LOG, dir);
    }
    else
        spw_test_rmrf(dir);
    free(dir);
    return violations ? 1 : 0;
}
