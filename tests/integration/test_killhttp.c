/*
 * kill -9 under HTTP load at ack=fsync: a 202 means the events are on disk.
 *
 * Each cycle starts the real server on the same data directory, has
 * NTHREADS clients post NDJSON requests of 1-4 events (each event carries
 * its thread, request sequence and index, so every event is unique) with
 * Spillway-Ack: fsync, records every 202 answer, and after a random delay
 * (100-1500 ms) SIGKILLs the server by PID. Then it restarts the server,
 * reads every partition whole and checks:
 *  - every event of every acknowledged request is at the offsets its 202
 *    named (partition, first_offset, count), byte-identical, in request
 *    order within a partition, each event of the request exactly once;
 *  - no (thread, seq, index) appears twice anywhere, acknowledged or not;
 *  - each partition's offsets are dense.
 * After the last cycle the server stops cleanly and `spillway check` on the
 * data directory must pass. SPW_KILLHTTP_SEED fixes the random seed;
 * SPW_KILLHTTP_CYCLES the number of cycles (default 4).
 */
#include <pthread.h>
#include <stdatomic.h>

#include "server.h"

#define NTHREADS 8
#define PARTS 4
#define MAXEV 4

static const char *bin;

typedef struct ackrec {
    int t, s, k;
    char *ev[MAXEV];
    size_t evlen[MAXEV];
    int nslots;
    struct {
        int p;
        uint64_t off;
        int cnt;
    } slot[PARTS];
} ackrec;

typedef struct client {
    int t; /* unique over all cycles */
    int port;
    int seq;
    ackrec *acks;
    size_t nacks, cap;
    uint64_t sent, acked, refused;
} client;

static _Atomic int stop_clients;

/* Parses the 202 body into r's slots. */
static void parse_ack(ackrec *r, const char *body)
{
    int accepted = -1;
    const char *a = strstr(body, "\"accepted\":");
    CHECK(a);
    accepted = atoi(a + 11);
    CHECK_EQ(accepted, r->k);
    r->nslots = 0;
    int total = 0;
    for (const char *p = body; (p = strstr(p, "{\"partition\":")); p++) {
        CHECK(r->nslots < PARTS);
        unsigned long long off;
        int part, cnt;
        CHECK_EQ(sscanf(p, "{\"partition\":%d,\"first_offset\":%llu,\"count\":%d}", &part, &off, &cnt), 3);
        CHECK(part >= 0 && part < PARTS && cnt > 0);
        r->slot[r->nslots].p = part;
        r->slot[r->nslots].off = off;
        r->slot[r->nslots].cnt = cnt;
        r->nslots++;
        total += cnt;
    }
    CHECK_EQ(total, r->k);
}

static void *client_main(void *arg)
{
    client *c = arg;
    static _Thread_local char rbuf[1 << 16];
    size_t have = 0;
    int fd = try_connect(c->port, 60);
    unsigned pad_seed = (unsigned)c->t * 2654435761u;
    while (fd >= 0 && !atomic_load(&stop_clients)) {
        ackrec r = {.t = c->t, .s = c->seq++};
        r.k = 1 + r.s % MAXEV;
        char body[4096];
        size_t bl = 0;
        for (int e = 0; e < r.k; e++) {
            pad_seed = pad_seed * 1103515245u + 12345u;
            int padn = (int)(pad_seed >> 16) % 200;
            char pad[256];
            memset(pad, 'a' + (char)(e + r.s % 20), (size_t)padn);
            pad[padn] = 0;
            int n = snprintf(body + bl, sizeof body - bl, "{\"t\":%d,\"s\":%d,\"e\":%d,\"pad\":\"%s\",\"u\":\"\\u00e9\"}",
                             r.t, r.s, e, pad);
            r.ev[e] = malloc((size_t)n + 1);
            memcpy(r.ev[e], body + bl, (size_t)n + 1);
            r.evlen[e] = (size_t)n;
            bl += (size_t)n;
            body[bl++] = '\n';
        }
        char req[8192];
        int hl = snprintf(req, sizeof req,
                          "POST /v1/streams/k/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n"
                          "Spillway-Ack: fsync\r\nContent-Length: %zu\r\n\r\n",
                          bl);
        memcpy(req + hl, body, bl);
        c->sent++;
        resp rs;
        int ok = try_send(fd, req, (size_t)hl + bl) == 0 && read_resp(fd, &rs, rbuf, sizeof rbuf, &have) == 0;
        if (ok && rs.status == 202) {
            parse_ack(&r, rs.body);
            if (c->nacks == c->cap) {
                c->cap = c->cap ? 2 * c->cap : 256;
                c->acks = realloc(c->acks, c->cap * sizeof *c->acks);
                CHECK(c->acks);
            }
            c->acks[c->nacks++] = r;
            c->acked++;
        } else {
            for (int e = 0; e < r.k; e++)
                free(r.ev[e]);
            if (ok)
                c->refused++; /* e.g. 503 backpressure: not acknowledged, may or may not be stored */
        }
        if (ok)
            free(rs.body);
        if (!ok) {
            /* The server is gone (killed): stop. */
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* ---- reading everything back ---- */

typedef struct line {
    uint64_t off;
    int t, s, e;
    char *value;
    size_t vlen;
} line;

typedef struct part {
    line *v;
    size_t n, cap;
    uint64_t start;
} part;

static void read_partition(int port, int p, part *out)
{
    out->n = 0;
    uint64_t next = 0;
    int first = 1;
    for (int round = 0; round < 100000; round++) {
        char path[256];
        if (first)
            snprintf(path, sizeof path, "/v1/streams/k/events?partition=%d&limit=5000", p);
        else
            snprintf(path, sizeof path, "/v1/streams/k/events?partition=%d&offset=%llu&limit=5000", p,
                     (unsigned long long)next);
        resp r = http(port, "GET", path, NULL, NULL, 0);
        if (r.status != 200)
            fprintf(stderr, "read partition %d at %llu: %d %s\n", p, (unsigned long long)next, r.status, r.body);
        CHECK_EQ(r.status, 200);
        const char *h = strstr(r.headers, "Spillway-Next-Offset: ");
        CHECK(h);
        uint64_t nx = strtoull(h + 22, NULL, 10);
        if (r.body_len == 0) {
            free(r.body);
            CHECK(first || nx == next);
            return;
        }
        char *save = NULL;
        for (char *ln = strtok_r(r.body, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
            line L = {0};
            int pp;
            unsigned long long off;
            CHECK_EQ(sscanf(ln, "{\"partition\":%d,\"offset\":%llu,", &pp, &off), 2);
            CHECK_EQ(pp, p);
            char *v = strstr(ln, ",\"value\":");
            CHECK(v);
            v += 9;
            size_t vl = strlen(v);
            CHECK(vl >= 2 && v[vl - 1] == '}');
            vl--; /* the record's closing brace */
            CHECK_EQ(sscanf(v, "{\"t\":%d,\"s\":%d,\"e\":%d,", &L.t, &L.s, &L.e), 3);
            L.off = off;
            L.value = malloc(vl);
            memcpy(L.value, v, vl);
            L.vlen = vl;
            if (out->n == 0)
                out->start = off;
            else if (off != out->v[out->n - 1].off + 1) {
                fprintf(stderr, "partition %d: offset %llu after %llu\n", p, off,
                        (unsigned long long)out->v[out->n - 1].off);
                CHECK(!"offsets are not dense");
            }
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 1024;
                out->v = realloc(out->v, out->cap * sizeof *out->v);
                CHECK(out->v);
            }
            out->v[out->n++] = L;
        }
        free(r.body);
        CHECK(nx > next || first);
        next = nx;
        first = 0;
    }
    CHECK(!"partition read did not end");
}

static void free_part(part *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].value);
    p->n = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void verify(int port, client *cl, int ncl, int cycle)
{
    static part parts[PARTS];
    size_t total = 0;
    for (int p = 0; p < PARTS; p++) {
        read_partition(port, p, &parts[p]);
        total += parts[p].n;
    }
    /* No event twice, acknowledged or not. */
    uint64_t *ids = malloc((total + 1) * sizeof *ids);
    size_t k = 0;
    for (int p = 0; p < PARTS; p++)
        for (size_t i = 0; i < parts[p].n; i++) {
            line *L = &parts[p].v[i];
            CHECK(L->t >= 0 && L->t < (1 << 20) && L->s >= 0 && L->e >= 0 && L->e < MAXEV);
            ids[k++] = (uint64_t)L->t << 40 | (uint64_t)L->s << 8 | (uint64_t)L->e;
        }
    qsort(ids, k, sizeof *ids, cmp_u64);
    for (size_t i = 1; i < k; i++)
        if (ids[i] == ids[i - 1]) {
            fprintf(stderr, "duplicate event t=%llu s=%llu e=%llu\n", (unsigned long long)(ids[i] >> 40),
                    (unsigned long long)(ids[i] >> 8 & 0xffffffff), (unsigned long long)(ids[i] & 0xff));
            CHECK(!"duplicate event");
        }
    free(ids);
    /* Every acknowledged event where its 202 said. */
    uint64_t acked_events = 0, acked_reqs = 0;
    for (int c = 0; c < ncl; c++)
        for (size_t a = 0; a < cl[c].nacks; a++) {
            ackrec *r = &cl[c].acks[a];
            int covered[MAXEV] = {0};
            acked_reqs++;
            for (int s = 0; s < r->nslots; s++) {
                part *P = &parts[r->slot[s].p];
                int last_e = -1;
                for (int j = 0; j < r->slot[s].cnt; j++) {
                    uint64_t off = r->slot[s].off + (uint64_t)j;
                    if (P->n == 0 || off < P->start || off >= P->start + P->n) {
                        fprintf(stderr, "cycle %d: acknowledged t=%d s=%d: partition %d offset %llu missing (have %llu..%llu)\n",
                                cycle, r->t, r->s, r->slot[s].p, (unsigned long long)off,
                                (unsigned long long)P->start, (unsigned long long)(P->start + P->n));
                        CHECK(!"acknowledged event lost");
                    }
                    line *L = &P->v[off - P->start];
                    if (L->t != r->t || L->s != r->s) {
                        fprintf(stderr, "cycle %d: partition %d offset %llu holds t=%d s=%d, the 202 of t=%d s=%d "
                                        "named it\n",
                                cycle, r->slot[s].p, (unsigned long long)off, L->t, L->s, r->t, r->s);
                        CHECK(!"acknowledged offset holds another event");
                    }
                    CHECK(L->e > last_e); /* request order within a partition */
                    last_e = L->e;
                    CHECK(L->e < r->k && !covered[L->e]);
                    covered[L->e] = 1;
                    if (L->vlen != r->evlen[L->e] || memcmp(L->value, r->ev[L->e], L->vlen) != 0) {
                        fprintf(stderr, "value differs: stored %.*s sent %s\n", (int)L->vlen, L->value, r->ev[L->e]);
                        CHECK(!"value not byte-identical");
                    }
                    acked_events++;
                }
            }
            for (int e = 0; e < r->k; e++)
                CHECK(covered[e]);
        }
    printf("cycle %d: %zu events stored, %llu acknowledged requests (%llu events) all present exactly once\n", cycle,
           total, (unsigned long long)acked_reqs, (unsigned long long)acked_events);
    for (int p = 0; p < PARTS; p++)
        free_part(&parts[p]);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    if (getenv("SPW_KILLHTTP_SEED"))
        seed = (unsigned)strtoul(getenv("SPW_KILLHTTP_SEED"), NULL, 10);
    int cycles = getenv("SPW_KILLHTTP_CYCLES") ? atoi(getenv("SPW_KILLHTTP_CYCLES")) : 4;
    if (cycles < 1 || cycles > 100)
        cycles = 4;
    srand(seed);
    printf("test_killhttp: seed %u (SPW_KILLHTTP_SEED), %d cycles\n", seed, cycles);
    char *dir = spw_test_tmpdir("killhttp");
    const char *extra[] = {"--io-threads", "2", NULL};
    srv s;
    srv_start(&s, bin, dir, extra);
    resp r = http_json(s.port, "PUT", "/v1/streams/k", "{\"partitions\":4,\"ack\":\"fsync\"}");
    CHECK_EQ(r.status, 201);
    free(r.body);

    client *cl = calloc((size_t)cycles * NTHREADS, sizeof *cl);
    int ncl = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        atomic_store(&stop_clients, 0);
        pthread_t th[NTHREADS];
        client *mine = cl + ncl;
        for (int i = 0; i < NTHREADS; i++) {
            mine[i].t = ncl + i;
            mine[i].port = s.port;
            CHECK(pthread_create(&th[i], NULL, client_main, &mine[i]) == 0);
        }
        ncl += NTHREADS;
        int delay = 100 + rand() % 1401;
        usleep((useconds_t)delay * 1000);
        int st = srv_stop(&s, SIGKILL);
        CHECK_EQ(st, 128 + SIGKILL);
        atomic_store(&stop_clients, 1);
        uint64_t sent = 0, acked = 0, refused = 0;
        for (int i = 0; i < NTHREADS; i++) {
            pthread_join(th[i], NULL);
            sent += mine[i].sent;
            acked += mine[i].acked;
            refused += mine[i].refused;
        }
        printf("cycle %d: killed after %d ms: %llu requests sent, %llu acknowledged, %llu refused\n", cycle, delay,
               (unsigned long long)sent, (unsigned long long)acked, (unsigned long long)refused);
        srv_start(&s, bin, dir, extra);
        verify(s.port, cl, ncl, cycle);
    }
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s check %s >/dev/null", bin, dir);
    CHECK_EQ(system(cmd), 0);
    for (int c = 0; c < ncl; c++) {
        for (size_t a = 0; a < cl[c].nacks; a++)
            for (int e = 0; e < cl[c].acks[a].k; e++)
                free(cl[c].acks[a].ev[e]);
        free(cl[c].acks);
    }
    free(cl);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_killhttp: ok");
    return 0;
}
