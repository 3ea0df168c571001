/*
 * Conditional appends (docs/api.md "Event sourcing"), closed loop: C
 * connections, each appending single events to random aggregates of N,
 * expecting the version it last saw for that aggregate (a shared hint
 * table; a 409 teaches the current version and counts as a conflict), at
 * ack=fsync, for S seconds, over HTTP (keep-alive, one request at a time
 * per connection) or the binary protocol (the client library's
 * spillway_client_append). --unconditional sends expectation "any" instead.
 * Prints `BENCH es system=... appends_per_s=... p99_us=... conflicts=...`.
 *
 * usage: spw_es_bench --protocol http|bin --http HOST:PORT --bin HOST:PORT
 *                     --stream S [--conns C] [--aggregates N] [--seconds S] [--unconditional]
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spillway.h"

static const char *proto = "bin", *http_addr = "127.0.0.1:7700", *bin_addr = "127.0.0.1:7701", *stream = "es";
static int conns = 50, seconds = 5, unconditional = 0;
static uint32_t aggs = 100000;
static _Atomic uint64_t *known;
static _Atomic int stop;

typedef struct worker {
    pthread_t th;
    int id;
    uint64_t ok, conflicts, errors;
    uint32_t *lat_us; /* of accepted appends */
    size_t nlat, cap;
} worker;

static uint64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static int http_connect(void)
{
    char host[64];
    snprintf(host, sizeof host, "%s", http_addr);
    char *colon = strrchr(host, ':');
    if (!colon)
        return -1;
    *colon = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One POST; returns the status, *num the "first" (202) or "current" (409). */
static int http_append(int fd, const char *key, const char *expect, uint64_t *num)
{
    static __thread char buf[8192];
    char body[128];
    int bl = snprintf(body, sizeof body, "{\"id\":\"%s\",\"t\":\"deposited\",\"amount\":1}", key);
    int n = snprintf(buf, sizeof buf,
                     "POST /v1/streams/%s/events HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                     "Spillway-Expected-Version: %s\r\nContent-Length: %d\r\n\r\n%s",
                     stream, expect, bl, body);
    if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = 0;
        char *he = strstr(buf, "\r\n\r\n");
        if (!he)
            continue;
        char *cl = strstr(buf, "Content-Length: ");
        size_t blen = cl ? (size_t)atol(cl + 16) : 0;
        if (have < (size_t)(he + 4 - buf) + blen)
            continue;
        int st = atoi(buf + 9);
        const char *f = strstr(he, st == 202 ? "\"first\":" : "\"current\":");
        *num = f ? strtoull(strchr(f, ':') + 1, NULL, 10) : 0;
        return st;
    }
}

static void *run(void *arg)
{
    worker *w = arg;
    uint64_t rs = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
    int fd = -1;
    spillway_client *c = NULL;
    if (strcmp(proto, "http") == 0)
        fd = http_connect();
    else if (spillway_client_connect(bin_addr, 30000, &c))
        c = NULL;
    if (fd < 0 && !c) {
        fprintf(stderr, "spw_es_bench: cannot connect\n");
        w->errors++;
        return NULL;
    }
    while (!atomic_load(&stop)) {
        rs ^= rs << 13;
        rs ^= rs >> 7;
        rs ^= rs << 17;
        uint32_t a = (uint32_t)(rs % aggs);
        uint64_t exp = atomic_load(&known[a]), num = 0;
        char key[24];
        snprintf(key, sizeof key, "acct-%06u", a);
        uint64_t t0 = now_us();
        int st;
        if (fd >= 0) {
            char e[24];
            if (unconditional)
                snprintf(e, sizeof e, "any");
            else
                snprintf(e, sizeof e, "%" PRIu64, exp);
            st = http_append(fd, key, e, &num);
        } else {
            char val[96];
            int vl = snprintf(val, sizeof val, "{\"id\":\"%s\",\"t\":\"deposited\",\"amount\":1}", key);
            spillway_value v = {.p = val, .len = (uint32_t)vl};
            int r = spillway_client_append(c, stream, key, (int32_t)strlen(key), &v, 1,
                                      unconditional ? SPILLWAY_EXPECT_VERSION_ANY
                                      : exp         ? SPILLWAY_EXPECT_VERSION_EXACT
                                                    : SPILLWAY_EXPECT_VERSION_NONE,
                                      exp, SPILLWAY_ACK_LEVEL_FSYNC, &num);
            st = r == 0 ? 202 : r == SPILLWAY_ERR_CONFLICT ? 409 : -1;
            if (st == 409)
                num = spillway_client_current_version(c);
        }
        uint64_t dt = now_us() - t0;
        if (st == 202) {
            w->ok++;
            atomic_store(&known[a], num);
            if (w->nlat == w->cap) {
                w->cap = w->cap ? w->cap * 2 : 4096;
                w->lat_us = realloc(w->lat_us, w->cap * sizeof *w->lat_us);
            }
            w->lat_us[w->nlat++] = (uint32_t)(dt > UINT32_MAX ? UINT32_MAX : dt);
        } else if (st == 409) {
            w->conflicts++;
            atomic_store(&known[a], num);
        } else {
            w->errors++;
            break;
        }
    }
    if (fd >= 0)
        close(fd);
    if (c)
        spillway_client_close(c);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--unconditional") == 0) {
            unconditional = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "spw_es_bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--protocol") == 0)
            proto = v;
        else if (strcmp(a, "--http") == 0)
            http_addr = v;
        else if (strcmp(a, "--bin") == 0)
            bin_addr = v;
        else if (strcmp(a, "--stream") == 0)
            stream = v;
        else if (strcmp(a, "--conns") == 0)
            conns = atoi(v);
        else if (strcmp(a, "--aggregates") == 0)
            aggs = (uint32_t)atoi(v);
        else if (strcmp(a, "--seconds") == 0)
            seconds = atoi(v);
        else {
            fprintf(stderr, "spw_es_bench: unknown option %s\n", a);
            return 2;
        }
    }
    if (conns < 1 || conns > 1000 || aggs < 1 || seconds < 1 || (strcmp(proto, "http") && strcmp(proto, "bin"))) {
        fprintf(stderr, "spw_es_bench: bad options\n");
        return 2;
    }
    known = calloc(aggs, sizeof *known);
    worker *ws = calloc((size_t)conns, sizeof *ws);
    uint64_t t0 = now_us();
    for (int i = 0; i < conns; i++) {
        ws[i].id = i;
        pthread_create(&ws[i].th, NULL, run, &ws[i]);
    }
    sleep((unsigned)seconds);
    atomic_store(&stop, 1);
    uint64_t ok = 0, conf = 0, err = 0;
    size_t nl = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(ws[i].th, NULL);
        ok += ws[i].ok;
        conf += ws[i].conflicts;
        err += ws[i].errors;
        nl += ws[i].nlat;
    }
    double secs = (double)(now_us() - t0) / 1e6;
    uint32_t *all = malloc((nl ? nl : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, ws[i].lat_us, ws[i].nlat * sizeof *all);
        k += ws[i].nlat;
        free(ws[i].lat_us);
    }
    qsort(all, nl, sizeof *all, cmp_u32);
    uint32_t p99 = nl ? all[(size_t)((double)(nl - 1) * 0.99)] : 0;
    printf("BENCH es system=spillway-%s%s appends_per_s=%.0f p99_us=%u conflicts=%" PRIu64 " errors=%" PRIu64
           " conns=%d aggregates=%u seconds=%.1f\n",
           proto, unconditional ? "-unconditional" : "", (double)ok / secs, p99, conf, err, conns, aggs, secs);
    free(all);
    free(ws);
    free((void *)known);
    return err ? 1 : 0;
}
