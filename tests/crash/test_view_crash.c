/*
 * Views across kill -9 (docs/api.md "Views": each record applied exactly
 * once; state and offsets commit together). Each cycle starts the real
 * server on one data directory, produces events of random keys (a hot
 * one among them, event times out of order) from two threads while the
 * views apply, sometimes asks a view to rebuild, and kills the server
 * with SIGKILL at a random moment. The data directory is then opened in
 * this process (the log recovers, each view's store comes back at its
 * last flush and goes on from the offsets it holds) and, once the views
 * have caught up, every view is compared with a brute-force fold of the
 * log (tests/view_fold.h): any record counted twice or skipped fails.
 *
 * Usage: test_view_crash SPILLWAY. SPW_VIEW_CRASH_CYCLES (default 10;
 * scripts/test-slow.sh 50) sets the cycles.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "catalog/catalog.h"
#include "core/clock.h"
#include "core/msg.h"
#include "integration/server.h"
#include "log/log.h"
#include "view/view.h"
#include "view_fold.h"

#define NP 3

static _Atomic int stop_producing;
static int port;

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* A POST that tolerates the server dying: 0 or -1. */
static int post_events(const char *body, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/streams/s/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-ndjson\r\n"
                      "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                      n);
    int ok = send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl && send(fd, body, n, MSG_NOSIGNAL) == (ssize_t)n;
    char buf[4096];
    while (ok && read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
    return ok ? 0 : -1;
}

typedef struct prod {
    uint64_t seed;
} prod;

static void *producer(void *arg)
{
    prod *pr = arg;
    uint64_t r = pr->seed;
    char *body = malloc(1 << 16);
    while (!atomic_load(&stop_producing)) {
        size_t n = 0;
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int cnt = 1 + (int)((r >> 33) % 200);
        for (int i = 0; i < cnt; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t x = (uint32_t)(r >> 32);
            int hot = x % 10 < 4;
            long long ts = 1700000000000LL + (long long)(spw_mono_ms() % 600000) - (x % 7 == 0 ? 40000 : x % 3000);
            if (x % 5 == 0)
                n += (size_t)snprintf(body + n, 300, "{\"k\":\"%s%u\",\"n\":%d.5,\"g\":\"g%u\",\"ts\":%lld}\n",
                                      hot ? "hot" : "k", hot ? 0 : x % 30, (int)(x % 100) - 50, x % 4, ts);
            else
                n += (size_t)snprintf(body + n, 300, "{\"k\":\"%s%u\",\"n\":%d,\"g\":\"g%u\",\"ts\":%lld}\n",
                                      hot ? "hot" : "k", hot ? 0 : x % 30, (int)(x % 1000) - 300, x % 4, ts);
        }
        if (post_events(body, n) < 0)
            break;
    }
    free(body);
    return NULL;
}

static vf_view VS[] = {
    {.name = "last", .kind = 0},
    {.name = "bal", .kind = 2, .field = "/n"},
    {.name = "agg", .kind = 1, .field = "/n", .nwin = 3, .win = {1000, 10000, 60000}, .grace = 2000},
    {.name = "by_g", .kind = 1, .field = "/n", .group = "/g", .nwin = 2, .win = {10000, 60000}},
};
#define NV ((int)(sizeof VS / sizeof VS[0]))
static const char *const DEFS[NV] = {
    "{\"stream\":\"s\",\"kind\":\"latest\"}",
    "{\"stream\":\"s\",\"kind\":\"sum\",\"field\":\"/n\"}",
    "{\"stream\":\"s\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1s\",\"10s\",\"1m\"],\"grace\":\"2s\"}",
    "{\"stream\":\"s\",\"kind\":\"aggregate\",\"field\":\"/n\",\"group_by\":\"/g\",\"windows\":[\"10s\",\"1m\"]}",
};

/* Opens dir in this process, lets the views catch up, compares them with
 * the fold, closes. */
static void verify(const char *dir, int cycle)
{
    spw_log *log;
    spw_catalog *cat;
    CHECK_OK(spw_log_open(NULL, &log));
    CHECK_OK(spw_catalog_open(log, dir, 0, &cat));
    spw_stream *s = spw_stream_get(cat, "s", 1);
    CHECK(s != NULL);
    spw_views *m;
    CHECK_OK(spw_views_open(cat, dir, 0, &m));
    spw_view_min min[NP];
    uint32_t nm = 0;
    uint64_t events = 0;
    for (uint32_t p = 0; p < NP; p++) {
        spw_part_state st;
        spw_part_state_get(s->parts[p], &st);
        events += st.next_offset;
        if (st.next_offset)
            min[nm++] = (spw_view_min){p, st.next_offset - 1};
    }
    for (int i = 0; i < NV; i++) {
        for (int t = 0; t < 60000 && spw_views_applied(m, VS[i].name, min, nm) != 1; t++)
            spw_sleep_until(spw_mono_ns() + 1000000u);
        CHECK_EQ(spw_views_applied(m, VS[i].name, min, nm), 1);
        vf_init(&VS[i], NP);
    }
    vf_fold_log(s, VS, NV);
    for (int i = 0; i < NV; i++) {
        vf_check(&VS[i], m);
        vf_free(&VS[i]);
        spw_buf b = SPW_BUF_INIT; /* and the server's own verifier agrees */
        char err[300];
        CHECK_OK(spw_views_verify(m, VS[i].name, 1, &b, err, sizeof err));
        spw_buf_put(&b, "", 1);
        CHECK(strstr((const char *)b.p, "\"ok\":true") != NULL);
        spw_buf_fini(&b);
    }
    printf("cycle %d: %llu events in the log, every view equals the fold\n", cycle, (unsigned long long)events);
    fflush(stdout);
    spw_views_close(m);
    spw_stream_put(s);
    spw_catalog_close(cat);
    spw_log_close(log);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    const char *e = getenv("SPW_VIEW_CRASH_CYCLES");
    int cycles = e && atoi(e) > 0 ? atoi(e) : 10;
    char *dir = spw_test_tmpdir("viewcrash");
    srv sv;
    for (int c = 0; c < cycles; c++) {
        srv_start(&sv, argv[1], dir, NULL);
        port = sv.port;
        if (c == 0) {
            put_stream(port, "s", "{\"partitions\":3,\"key\":\"/k\",\"timestamp\":\"/ts\"}");
            for (int i = 0; i < NV; i++) {
                char path[64];
                snprintf(path, sizeof path, "/v1/views/%s", VS[i].name);
                CHECK_EQ(req_status(port, "PUT", path, DEFS[i]), 201);
            }
        }
        atomic_store(&stop_producing, 0);
        pthread_t th[2];
        prod pr[2] = {{(uint64_t)c * 2 + 1}, {(uint64_t)c * 2 + 2}};
        for (int i = 0; i < 2; i++)
            CHECK(pthread_create(&th[i], NULL, producer, &pr[i]) == 0);
        usleep(20000 + rnd(400) * 1000);
        if (rnd(3) == 0) { /* a rebuild, cut short by the kill */
            char path[64];
            snprintf(path, sizeof path, "/v1/views/%s/rebuild", VS[rnd(NV)].name);
            CHECK_EQ(req_status(port, "POST", path, ""), 202);
            usleep(rnd(100) * 1000);
        }
        srv_stop(&sv, SIGKILL);
        atomic_store(&stop_producing, 1);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        verify(dir, c);
    }
    spw_test_rmrf(dir);
    free(dir);
    printf("test_view_crash: %d cycles ok\n", cycles);
    return 0;
}
