/*
 * The event-sourcing load of test_es_race and test_es_crash: writers over
 * HTTP and over the binary protocol (the client library's
 * spillway_client_append), each doing "read the version, append expecting it"
 * on a few aggregates of a versioned stream, recording every 202 (key,
 * version, writer, sequence) and every 409 (the current version it named,
 * and the highest version acknowledged to anyone before the request was
 * sent); and the check of the stream's log against them. Requests that
 * fail otherwise (a server killed under them) are counted as unknown: such
 * a request may or may not have been appended.
 */
#ifndef SPW_TEST_ES_LOAD_H
#define SPW_TEST_ES_LOAD_H

#include <pthread.h>
#include <stdatomic.h>

#include "server.h"
#include "spillway.h"

#define ES_AGGS 10
#define ES_MAX_ACKS 200000

typedef struct es_ack {
    int cycle;
    int agg;
    uint64_t version;
    int writer;
    int seq;
} es_ack;

typedef struct es_load {
    srv *s;
    const char *stream;
    int writers;
    int ops_per_writer; /* 0: until stop */
    _Atomic int stop;
    _Atomic uint64_t acked_max[ES_AGGS]; /* highest version acknowledged so far, per aggregate */
    pthread_mutex_t mu;
    es_ack *acks;
    int nacks;
    _Atomic long n409, nunknown, nops;
    int cycle; /* in every value, so values of different cycles differ */
} es_load;

/* ---- a non-aborting HTTP request (the server may be killed under it) ---- */

/* POST body to path with the expected version; *status and the body
 * (malloc'ed) on 0, -1 when no answer came. */
static int es_http_post(int port, const char *path, const char *expect, const char *body, int *status, char **rbody)
{
    int fd = try_connect(port, 30);
    if (fd < 0)
        return -1;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nSpillway-Expected-Version: "
                     "%s\r\nContent-Length: %zu\r\n\r\n%s",
                     path, expect, strlen(body), body);
    if (try_send(fd, head, (size_t)n)) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, have = 0;
    char *buf = malloc(cap);
    resp r = {0};
    int rc = read_resp(fd, &r, buf, cap, &have);
    free(buf);
    close(fd);
    if (rc)
        return -1;
    *status = r.status;
    *rbody = r.body;
    return 0;
}

static uint64_t es_json_u64(const char *body, const char *name)
{
    const char *p = strstr(body, name);
    CHECK(p != NULL);
    return strtoull(p + strlen(name), NULL, 10);
}

/* ---- the writers ---- */

typedef struct es_writer {
    es_load *L;
    int id;
    pthread_t th;
} es_writer;

static void es_record_ack(es_load *L, int agg, uint64_t v, int w, int seq)
{
    pthread_mutex_lock(&L->mu);
    CHECK(L->nacks < ES_MAX_ACKS);
    L->acks[L->nacks++] = (es_ack){.cycle = L->cycle, .agg = agg, .version = v, .writer = w, .seq = seq};
    pthread_mutex_unlock(&L->mu);
    uint64_t m = atomic_load(&L->acked_max[agg]);
    while (m < v && !atomic_compare_exchange_weak(&L->acked_max[agg], &m, v))
        ;
}

static void *es_writer_main(void *arg)
{
    es_writer *W = arg;
    es_load *L = W->L;
    int binary = W->id % 2;
    uint64_t known[ES_AGGS] = {0};
    uint64_t rs = 0x9E3779B97F4A7C15ull * (uint64_t)(W->id + 1);
    spillway_client *c = NULL;
    char path[128], addr[64];
    snprintf(path, sizeof path, "/v1/streams/%s/events", L->stream);
    for (int op = 0; (L->ops_per_writer == 0 || op < L->ops_per_writer) && !atomic_load(&L->stop); op++) {
        rs ^= rs << 13;
        rs ^= rs >> 7;
        rs ^= rs << 17;
        int agg = (int)(rs % ES_AGGS);
        uint64_t exp = known[agg];
        uint64_t floor = atomic_load(&L->acked_max[agg]);
        char key[16], val[128];
        snprintf(key, sizeof key, "agg%d", agg);
        snprintf(val, sizeof val, "{\"id\":\"%s\",\"c\":%d,\"w\":%d,\"n\":%d}", key, L->cycle, W->id, op);
        int st = 0;
        uint64_t got = 0, cur = 0;
        if (binary) {
            if (!c) {
                snprintf(addr, sizeof addr, "127.0.0.1:%d", L->s->binport);
                if (spillway_client_connect(addr, 30000, &c)) {
                    c = NULL;
                    atomic_fetch_add(&L->nunknown, 1);
                    usleep(20000);
                    continue;
                }
            }
            spillway_value v = {.p = val, .len = (uint32_t)strlen(val)};
            int r = spillway_client_append(c, L->stream, key, (int32_t)strlen(key), &v, 1,
                                      exp ? SPILLWAY_EXPECT_VERSION_EXACT : SPILLWAY_EXPECT_VERSION_NONE, exp,
                                      SPILLWAY_ACK_LEVEL_FSYNC, &got);
            if (r == 0) {
                st = 202;
            } else if (r == SPILLWAY_ERR_CONFLICT) {
                st = 409;
                cur = spillway_client_current_version(c);
            } else {
                if (!atomic_load(&L->stop) && L->ops_per_writer)
                    fprintf(stderr, "binary append failed: %d %s\n", r, spillway_client_last_error(c));
                spillway_client_close(c);
                c = NULL;
            }
        } else {
            char e[24], *body = NULL;
            snprintf(e, sizeof e, "%llu", (unsigned long long)exp);
            if (es_http_post(L->s->port, path, e, val, &st, &body) == 0) {
                if (st == 202)
                    got = es_json_u64(body, "\"first\":");
                else if (st == 409)
                    cur = es_json_u64(body, "\"current\":");
                else if (L->ops_per_writer)
                    fprintf(stderr, "HTTP append: %d %s\n", st, body);
                free(body);
            } else {
                st = 0;
            }
        }
        atomic_fetch_add(&L->nops, 1);
        if (st == 202) {
            CHECK_EQ(got, exp + 1); /* success means the key was at exp */
            es_record_ack(L, agg, got, W->id, op);
            known[agg] = got;
        } else if (st == 409) {
            /* The current version the server named: not the one expected,
             * and not older than what was acknowledged before the request
             * left (it is checked against the final log later). */
            CHECK(cur != exp);
            if (cur < floor)
                fprintf(stderr, "409 named %llu, below %llu acknowledged before\n", (unsigned long long)cur,
                        (unsigned long long)floor);
            CHECK(cur >= floor);
            atomic_fetch_add(&L->n409, 1);
            known[agg] = cur;
        } else {
            /* no answer, or an answer other than 202/409: unknown outcome */
            CHECK(L->ops_per_writer == 0); /* only when the server is killed */
            atomic_fetch_add(&L->nunknown, 1);
            usleep(20000);
        }
    }
    if (c)
        spillway_client_close(c);
    return NULL;
}

static void es_run_start(es_load *L, es_writer *ws)
{
    for (int i = 0; i < L->writers; i++) {
        ws[i] = (es_writer){.L = L, .id = i};
        CHECK(pthread_create(&ws[i].th, NULL, es_writer_main, &ws[i]) == 0);
    }
}

static void es_run_join(es_load *L, es_writer *ws)
{
    for (int i = 0; i < L->writers; i++)
        pthread_join(ws[i].th, NULL);
}

/* ---- the log ---- */

/* One record of the stream as read back. */
typedef struct es_rec {
    int agg;
    uint64_t version;
    int cycle, writer, seq;
} es_rec;

/* Reads every record of the stream (partitions P) in log order, per
 * partition; returns the count, records in *out (malloc'ed). */
static int es_read_log(srv *s, const char *stream, int P, es_rec **out)
{
    int n = 0, cap = 1024;
    es_rec *v = malloc((size_t)cap * sizeof *v);
    for (int p = 0; p < P; p++) {
        uint64_t off = 0;
        for (int guard = 0; guard < 100000; guard++) {
            char path[256];
            snprintf(path, sizeof path, "/v1/streams/%s/events?partition=%d&offset=%llu&limit=10000", stream, p,
                     (unsigned long long)off);
            resp r = http_json(s->port, "GET", path, NULL);
            CHECK_EQ(r.status, 200);
            uint64_t next = header_u64(&r, "Spillway-Next-Offset");
            for (char *line = r.body; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                    *nl = 0;
                if (n == cap)
                    v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
                es_rec *e = &v[n++];
                e->version = es_json_u64(line, "\"version\":");
                e->agg = (int)es_json_u64(line, "\"key\":\"agg");
                e->cycle = (int)es_json_u64(line, "\"c\":");
                e->writer = (int)es_json_u64(line, "\"w\":");
                e->seq = (int)es_json_u64(line, "\"n\":");
                line = nl ? nl + 1 : NULL;
            }
            free(r.body);
            if (next == off)
                break;
            off = next;
        }
    }
    *out = v;
    return n;
}

/*
 * Checks the log against the load: every aggregate's records, in log
 * order, have versions 1..M exactly once; every acknowledged (key,
 * version) is there with its writer's event; each 409 current was at
 * most M (checked by the writers against what came before). exact: no
 * request had an unknown outcome, so the 202s of a key are exactly M.
 * Returns M per aggregate in m[].
 */
static void es_check_log(es_load *L, int P, int exact, uint64_t m[ES_AGGS])
{
    es_rec *v;
    int n = es_read_log(L->s, L->stream, P, &v);
    uint64_t next[ES_AGGS];
    for (int a = 0; a < ES_AGGS; a++)
        next[a] = 1;
    /* index: (agg, version) -> record */
    es_rec **at[ES_AGGS] = {0};
    for (int i = 0; i < n; i++) {
        es_rec *e = &v[i];
        CHECK(e->agg >= 0 && e->agg < ES_AGGS);
        if (e->version != next[e->agg])
            fprintf(stderr, "agg%d: version %llu where %llu was next\n", e->agg, (unsigned long long)e->version,
                    (unsigned long long)next[e->agg]);
        CHECK_EQ(e->version, next[e->agg]);
        next[e->agg]++;
    }
    for (int a = 0; a < ES_AGGS; a++) {
        m[a] = next[a] - 1;
        at[a] = calloc(m[a] + 1, sizeof *at[a]);
    }
    for (int i = 0; i < n; i++)
        at[v[i].agg][v[i].version] = &v[i];
    long per_agg[ES_AGGS] = {0};
    for (int i = 0; i < L->nacks; i++) {
        es_ack *k = &L->acks[i];
        if (k->version > m[k->agg])
            fprintf(stderr, "acknowledged agg%d version %llu lost (the log ends at %llu)\n", k->agg,
                    (unsigned long long)k->version, (unsigned long long)m[k->agg]);
        CHECK(k->version <= m[k->agg]);
        es_rec *e = at[k->agg][k->version];
        /* the very event that was acknowledged at that version */
        if (e->cycle != k->cycle || e->writer != k->writer || e->seq != k->seq)
            fprintf(stderr, "agg%d version %llu: acknowledged for cycle %d writer %d seq %d, holds %d %d %d\n",
                    k->agg, (unsigned long long)k->version, k->cycle, k->writer, k->seq, e->cycle, e->writer, e->seq);
        CHECK_EQ(e->cycle, k->cycle);
        CHECK_EQ(e->writer, k->writer);
        CHECK_EQ(e->seq, k->seq);
        per_agg[k->agg]++;
    }
    if (exact)
        for (int a = 0; a < ES_AGGS; a++)
            CHECK_EQ((uint64_t)per_agg[a], m[a]);
    for (int a = 0; a < ES_AGGS; a++)
        free(at[a]);
    free(v);
}

/* The map after a restart equals the log's: for every aggregate, a
 * conditional append expecting one version less than the log's M is a
 * conflict naming M, and one expecting M succeeds with M + 1 (which the
 * caller's m[] then counts). */
static void es_check_map(srv *s, const char *stream, uint64_t m[ES_AGGS], int cycle)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    for (int a = 0; a < ES_AGGS; a++) {
        char val[96], e[24], *body;
        int st;
        snprintf(val, sizeof val, "{\"id\":\"agg%d\",\"c\":%d,\"w\":999,\"n\":%d}", a, cycle, a);
        if (m[a] > 0) {
            snprintf(e, sizeof e, "%llu", (unsigned long long)(m[a] - 1));
            CHECK_EQ(es_http_post(s->port, path, e, val, &st, &body), 0);
            CHECK_EQ(st, 409);
            CHECK_EQ(es_json_u64(body, "\"current\":"), m[a]);
            free(body);
        }
        snprintf(e, sizeof e, "%llu", (unsigned long long)m[a]);
        CHECK_EQ(es_http_post(s->port, path, e, val, &st, &body), 0);
        if (st != 202)
            fprintf(stderr, "agg%d expecting %s: %d %s\n", a, e, st, body);
        CHECK_EQ(st, 202);
        CHECK_EQ(es_json_u64(body, "\"first\":"), m[a] + 1);
        free(body);
        m[a]++;
    }
}

#endif
