/*
 * Memory of finished requests is kept for the next ones (server.c,
 * malloc_policy; docs/performance.md): a server that has served a few
 * HTTP NDJSON requests of 1000 events (~130 KB bodies) serves more of them
 * without faulting their pages in again. Counted with the server's minor
 * page faults (/proc/PID/stat), a count, not a time: with the allocator's
 * default policy, with 50 clients each waiting for its answer, each request
 * gives its memory back to the kernel on free and faults ~50 pages in
 * again; with the policy, a few.
 */
#include <pthread.h>
#include <stdint.h>

#include "server.h"

/* The server's minor page faults so far (/proc/PID/stat field 10; the
 * command name in field 2 has no spaces). */
static uint64_t minflt(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    unsigned long long v = 0;
    CHECK(fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %llu", &v) == 1);
    fclose(f);
    return v;
}

/* The policy is glibc's allocator's; under AddressSanitizer or
 * ThreadSanitizer their own allocators serve the server, so the count is
 * printed but not judged there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__GLIBC__)
#define CHECK_FAULTS(cond) ((void)(cond))
#else
#define CHECK_FAULTS(cond) CHECK(cond)
#endif

enum { EVENTS = 1000, CLIENTS = 50, WARM = 3, MEASURED = 4 };

static int port;
static const char *body;
static size_t body_len;

/* One client: rounds requests, each waiting for its answer (as `spillway
 * bench`'s clients do), so CLIENTS requests are in flight at a time. */
static void *client(void *arg)
{
    int rounds = (int)(intptr_t)arg;
    for (int r = 0; r < rounds; r++) {
        resp x = http(port, "POST", "/v1/streams/s/events", "application/x-ndjson", body, body_len);
        if (x.status != 202)
            fprintf(stderr, "test_pagefaults: HTTP %d: %s\n", x.status, x.body);
        CHECK_EQ(x.status, 202);
        free(x.body);
    }
    return NULL;
}

static void load(int rounds)
{
    pthread_t t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        CHECK(pthread_create(&t[i], NULL, client, (void *)(intptr_t)rounds) == 0);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(t[i], NULL);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("pagefaults");
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, argv[1], data, NULL);
    port = a.port;
    put_stream(a.port, "s", "{\"partitions\":4,\"key\":\"/k\"}");

    /* 1000 events of ~110 bytes: the shape of `spillway bench`'s HTTP load. */
    size_t cap = (size_t)EVENTS * 160, n = 0;
    char *b = malloc(cap);
    CHECK(b != NULL);
    for (int i = 0; i < EVENTS; i++)
        n += (size_t)snprintf(b + n, cap - n,
                              "{\"k\":\"key-%012d\",\"n\":%d,\"v\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                              "xxxxxxxxxxxxxxxxxxxxxxx\"}\n",
                              i % 1000, i);
    CHECK(n > 100000);
    body = b;
    body_len = n;

    load(WARM);
    uint64_t before = minflt(a.pid);
    load(MEASURED);
    uint64_t faults = minflt(a.pid) - before;
    int requests = CLIENTS * MEASURED;
    fprintf(stderr, "test_pagefaults: %llu minor page faults over %d requests of %zu bytes\n",
            (unsigned long long)faults, requests, n);
    /* Without the policy: 44-57 per request here (bodies, records and
     * batches faulted in again); with it 1-7 (what still grows: the index,
     * connections, the heaps reaching their size). */
    CHECK_FAULTS(faults < (uint64_t)requests * 20);

    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    free(b);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_pagefaults: ok\n");
    return 0;
}
