/*
 * A cluster of three `spillway serve` nodes on loopback, written through
 * the C client library's ring (include/spillway.h "Routing",
 * docs/operations.md "Growing a deployment: adding a node"):
 *   - keyed records go to the node the ring names, and every key's records
 *     are on exactly one node (read back from each node);
 *   - one node stopped by SIGKILL mid-run: the records of its keys fail
 *     with the connect error after connect_attempts_max failed rounds
 *     (named by spillway_delivery.server and
 *     spillway_producer_server_error), never sent to another node; every
 *     other keyed record and every keyless record (moved to the nodes that
 *     are up) is acknowledged;
 *   - the node restarted on its data: nothing acknowledged is lost.
 * Then `spillway produce --server a,b,c` and `spillway view get/top
 * --server a,b,c` over the same nodes (the command line routes by the
 * same ring).
 */
#include <pthread.h>
#include <sys/stat.h>

#include "client/client_int.h"
#include "client_read.h"
#include "server.h"
#include "spillway.h"

static const char *BIN;

#define NODES 3
#define N1 6000    /* keyed records with every node up: indexes [0, N1) */
#define N2 6000    /* keyed records sent around the stop: [N1, N1 + N2) */
#define NL 1000    /* keyless records while the node is down: [KL, KL + NL) */
#define KL (N1 + N2)
#define NALL (KL + NL)

typedef struct track {
    pthread_mutex_t mu;
    int status[NALL];
    uint32_t server[NALL];
    uint32_t calls[NALL];
} track;

static void on_delivery(void *arg, const spillway_delivery *d)
{
    track *t = arg;
    uint32_t i = (uint32_t)(uintptr_t)d->opaque;
    CHECK(i < NALL);
    pthread_mutex_lock(&t->mu);
    t->calls[i]++;
    t->status[i] = d->status;
    t->server[i] = d->server;
    pthread_mutex_unlock(&t->mu);
}

static void send_keyed(spillway_producer *p, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++) {
        char key[16], val[64];
        int kl = snprintf(key, sizeof key, "k%u", i % 1000);
        int vl = snprintf(val, sizeof val, "{\"i\":%u,\"n\":1}", i);
        CHECK_EQ(spillway_producer_send(p, "c", key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_WRITTEN,
                                        (void *)(uintptr_t)i),
                 0);
    }
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("cluster");
    srv s[NODES];
    char data[NODES][4096];
    for (int i = 0; i < NODES; i++) {
        snprintf(data[i], sizeof data[i], "%s/n%d", tmp, i);
        mkdir(data[i], 0755);
        srv_start(&s[i], BIN, data[i], NULL);
        CHECK(s[i].binport > 0);
        put_stream(s[i].port, "c", "{\"partitions\":4}");
    }
    char servers[256];
    snprintf(servers, sizeof servers, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", s[0].binport, s[1].binport,
             s[2].binport);

    static track t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    spillway_producer_config cfg;
    spillway_producer_config_init(&cfg);
    CHECK_EQ(cfg.connect_attempts_max, 8); /* the documented default */
    cfg.on_delivery = on_delivery;
    cfg.opaque = &t;
    cfg.backoff_ms = 10;
    cfg.backoff_max_ms = 100;
    cfg.connect_attempts_max = 3;
    cfg.delivery_timeout_ms = 60000; /* far longer than the test: a record that fails here failed on purpose */
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(servers, &cfg, &p), 0);

    /* 1. Every node up: all acknowledged, each on the node the ring names. */
    send_keyed(p, 0, N1);
    CHECK_EQ(spillway_producer_flush(p, 30000), 0);
    for (uint32_t i = 0; i < N1; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "k%u", i % 1000);
        CHECK_EQ(t.calls[i], 1);
        CHECK_EQ(t.status[i], 0);
        CHECK_EQ(t.server[i], spw__producer_route(p, key, kl));
    }
    {
        uint32_t *c[NODES];
        uint64_t total = 0, per[NODES];
        for (int n = 0; n < NODES; n++) {
            c[n] = calloc(N1, sizeof *c[n]);
            per[n] = bin_read_all(s[n].binport, "c", c[n], N1, N1);
            total += per[n];
            CHECK(per[n] > N1 / 6); /* every node has a fair part of the keys */
        }
        CHECK_EQ(total, N1);
        for (uint32_t i = 0; i < N1; i++) {
            uint32_t on = 0, where = NODES;
            for (int n = 0; n < NODES; n++)
                if (c[n][i]) {
                    on += c[n][i];
                    where = (uint32_t)n;
                }
            CHECK_EQ(on, 1);
            CHECK_EQ(where, t.server[i]);
            /* a key's records are all on one node */
            CHECK(c[where][i % 1000] == 1);
        }
        for (int n = 0; n < NODES; n++)
            free(c[n]);
    }

    /* 2. Node 2 stopped by its PID mid-run (half the records sent before,
     * half after, none flushed), then keyless records while it is down. */
    send_keyed(p, N1, N1 + N2 / 2);
    CHECK_EQ(srv_stop(&s[2], SIGKILL), 128 + SIGKILL);
    send_keyed(p, N1 + N2 / 2, KL);
    CHECK_EQ(spillway_producer_flush(p, 30000), 0); /* every record answered, none left waiting */
    for (uint32_t i = KL; i < NALL; i++) {
        char val[64];
        int vl = snprintf(val, sizeof val, "{\"i\":%u,\"n\":1}", i);
        CHECK_EQ(spillway_producer_send(p, "c", NULL, -1, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_WRITTEN,
                                        (void *)(uintptr_t)i),
                 0);
    }
    CHECK_EQ(spillway_producer_flush(p, 30000), 0);
    char why[512];
    int err = spillway_producer_server_error(p, 2, why, sizeof why);
    CHECK_EQ(err, -ECONNREFUSED);
    char port2[16];
    snprintf(port2, sizeof port2, ":%d", s[2].binport);
    CHECK(strstr(why, port2) != NULL); /* the error names the node */
    CHECK_EQ(spillway_producer_server_error(p, 0, NULL, 0), 0);
    CHECK_EQ(spillway_producer_server_error(p, 99, NULL, 0), 0);
    uint32_t failed = 0, after = 0;
    for (uint32_t i = N1; i < KL; i++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "k%u", i % 1000);
        uint32_t node = spw__producer_route(p, key, kl);
        CHECK_EQ(t.calls[i], 1);
        CHECK_EQ(t.server[i], node); /* never re-routed */
        if (node != 2) {
            CHECK_EQ(t.status[i], 0); /* nothing else is affected */
        } else if (t.status[i]) {
            CHECK_EQ(t.status[i], -ECONNREFUSED); /* failed clearly, with the connect error */
            failed++;
        }
        if (node == 2 && i >= N1 + N2 / 2) {
            CHECK_EQ(t.status[i], -ECONNREFUSED); /* sent after the stop: could not be stored */
            after++;
        }
    }
    CHECK(after > N2 / 2 / 6);
    CHECK(failed >= after);
    for (uint32_t i = KL; i < NALL; i++) {
        CHECK_EQ(t.calls[i], 1);
        CHECK_EQ(t.status[i], 0); /* keyless: moved to the nodes that are up */
        CHECK(t.server[i] != 2);
    }
    printf("node 2 down: %u keyed records failed with \"%s\", %u keyless all on nodes 0 and 1\n", failed, why, NL);

    /* 3. Node 2 back on its data and ports: nothing acknowledged is lost. */
    char lp[64], lb[64];
    snprintf(lp, sizeof lp, "127.0.0.1:%d", s[2].port);
    snprintf(lb, sizeof lb, "127.0.0.1:%d", s[2].binport);
    const char *again[] = {"--listen", lp, "--listen-bin", lb, NULL};
    int old_bin = s[2].binport;
    srv_start(&s[2], BIN, data[2], again);
    CHECK_EQ(s[2].binport, old_bin);
    {
        uint32_t *c[NODES];
        for (int n = 0; n < NODES; n++) {
            c[n] = calloc(NALL, sizeof *c[n]);
            bin_read_all(s[n].binport, "c", c[n], NALL, KL);
        }
        for (uint32_t i = 0; i < NALL; i++) {
            uint32_t on = 0;
            for (int n = 0; n < NODES; n++)
                on += c[n][i];
            if (t.status[i] == 0) {
                CHECK(on >= 1);                   /* acknowledged: kept */
                CHECK(c[t.server[i]][i] >= 1);    /* on the node that acknowledged it */
                if (i < N1)
                    CHECK_EQ(on, 1);
            }
        }
        for (int n = 0; n < NODES; n++)
            free(c[n]);
    }
    spillway_producer_close(p, 10000);

    for (int i = 0; i < NODES; i++)
        CHECK_EQ(srv_stop(&s[i], SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_cluster: ok\n");
    return 0;
}
