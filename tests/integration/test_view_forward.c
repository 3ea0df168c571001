/*
 * Edge → core aggregation (docs/api.md "Forward", "Merge views"): an edge
 * node's aggregate view forwards each final 10 s bucket as partial
 * aggregates to a core node's stream, where a merge view adds them up.
 * The edge view's windows are 10 s and 1 m: its 10 s buckets live in
 * one page entry per key and minute (docs/formats/view.md), several
 * starts of one page forwarded in turn.
 * Events are produced to the edge in rounds, one 10 s bucket of event
 * time each, and between rounds the edge or the core (or both) is killed
 * with SIGKILL and started again at random — the edge while it applies
 * and forwards, the core while forwarded requests arrive. At the end
 * every key's totals on the core equal the sum of what the edge
 * acknowledged, and its 10 s and 1 m series the per-bucket sums: nothing
 * forwarded twice, nothing lost.
 */
#include <inttypes.h>

#include "server.h"

#define T0 1700000000000LL
#define NK 5
#define ROUNDS 24

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t l = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &l) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void start(srv *s, const char *bin, const char *dir, int port)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    const char *extra[] = {"--listen", listen, NULL};
    srv_start(s, bin, dir, extra);
    CHECK_EQ(s->port, port);
}

static uint64_t rng = 0x7654321;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("viewfwd");
    char cdir[4200], edir[4200];
    snprintf(cdir, sizeof cdir, "%s/core", dir);
    snprintf(edir, sizeof edir, "%s/edge", dir);
    int cport = free_port(), eport = free_port();
    srv core, edge;
    start(&core, argv[1], cdir, cport);
    start(&edge, argv[1], edir, eport);
    put_stream(cport, "partials", "{\"partitions\":2,\"key\":\"/key\"}");
    CHECK_EQ(req_status(cport, "PUT", "/v1/views/total",
                        "{\"stream\":\"partials\",\"kind\":\"aggregate\",\"merge\":true,\"group_by\":\"/key\","
                        "\"windows\":[\"10s\",\"1m\"]}"),
             201);
    put_stream(eport, "clicks", "{\"partitions\":1,\"key\":\"/page\",\"timestamp\":\"/ts\"}");
    char def[512];
    snprintf(def, sizeof def,
             "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\",\"1m\"],"
             "\"forward\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"partials\"}}",
             cport);
    CHECK_EQ(req_status(eport, "PUT", "/v1/views/agg", def), 201);
    long long count[NK] = {0}, sum[NK] = {0}, bcount[ROUNDS][NK] = {{0}}, bsum[ROUNDS][NK] = {{0}};
    char *body = malloc(1 << 16);
    int kills = 0;
    for (int r = 0; r < ROUNDS; r++) {
        size_t n = 0;
        int events = 1 + (int)rnd(200);
        for (int i = 0; i < events; i++) {
            int k = (int)rnd(NK), v = (int)rnd(100);
            n += (size_t)snprintf(body + n, 128, "{\"page\":\"p%d\",\"n\":%d,\"ts\":%lld}\n", k, v,
                                  T0 + r * 10000LL + rnd(10000));
            count[k]++;
            sum[k] += v;
            bcount[r][k]++;
            bsum[r][k] += v;
        }
        resp pr = http(eport, "POST", "/v1/streams/clicks/events", "application/x-ndjson", body, n);
        CHECK_EQ(pr.status, 202);
        free(pr.body);
        usleep(rnd(300) * 1000);
        uint32_t what = rnd(4); /* 0: nothing, 1: edge, 2: core, 3: both */
        if (what & 1) {
            srv_stop(&edge, SIGKILL);
            kills++;
        }
        if (what & 2) {
            srv_stop(&core, SIGKILL);
            kills++;
            usleep(rnd(1500) * 1000); /* the edge's sends fail meanwhile */
            start(&core, argv[1], cdir, cport);
        }
        if (what & 1)
            start(&edge, argv[1], edir, eport);
    }
    /* one event far ahead, of another key, makes every bucket above final */
    resp pr = http_json(eport, "POST", "/v1/streams/clicks/events",
                        "{\"page\":\"closer\",\"n\":1,\"ts\":1700001000000}");
    CHECK_EQ(pr.status, 202);
    free(pr.body);
    for (int k = 0; k < NK; k++) {
        char path[128], want[128];
        snprintf(path, sizeof path, "/v1/views/total/keys/p%d", k);
        snprintf(want, sizeof want, "{\"key\":\"p%d\",\"count\":%lld,\"sum\":%lld,", k, count[k], sum[k]);
        resp r = {0};
        for (int i = 0; i < 3000; i++) {
            r = http_json(cport, "GET", path, NULL);
            if (r.status == 200 && strstr(r.body, want))
                break;
            free(r.body);
            r.body = NULL;
            usleep(10000);
        }
        if (!r.body) {
            r = http_json(cport, "GET", path, NULL);
            char *e = NULL;
            resp g = http_json(eport, "GET", "/v1/views/agg", NULL);
            e = g.body;
            fprintf(stderr, "core %s: %d %s (want %s)\nedge view: %s\n", path, r.status, r.body, want, e);
            free(e);
        }
        CHECK(r.body && strstr(r.body, want));
        free(r.body);
        /* the 10 s series, bucket by bucket */
        snprintf(path, sizeof path, "/v1/views/total/keys/p%d/series?window=10s&from=%lld&to=%lld", k, T0,
                 T0 + (ROUNDS - 1) * 10000LL);
        resp s = http_json(cport, "GET", path, NULL);
        CHECK_EQ(s.status, 200);
        for (int b = 0; b < ROUNDS; b++) {
            if (!bcount[b][k])
                continue;
            snprintf(want, sizeof want, "{\"start\":%lld,\"count\":%lld,\"sum\":%lld,", T0 + b * 10000LL, bcount[b][k],
                     bsum[b][k]);
            if (!strstr(s.body, want))
                fprintf(stderr, "core %s: %s (want %s)\n", path, s.body, want);
            CHECK(strstr(s.body, want) != NULL);
        }
        free(s.body);
    }
    printf("test_view_forward: %d rounds, %d kills, every key's totals and buckets exact on the core\n", ROUNDS,
           kills);
    free(body);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    return 0;
}
