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
 * Then `spillway stream create --server a,b,c` (on every node),
 * `spillway produce --server a,b,c` (with --ring: placed as the
 * binary producers place keys), `spillway view get/top --server a,b,c`
 * and `spillway bench --server a,b,c` over the same nodes (the command
 * line routes by the same ring).
 */
#include <pthread.h>
#include <sys/stat.h>

#include "client/client_int.h"
#include "core/ring.h"
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

static int http_label(void *arg, uint32_t i, uint32_t v, char *out, size_t cap)
{
    const srv *s = arg;
    return snprintf(out, cap, "127.0.0.1:%d#%u", s[i].port, v);
}

/* Events of stream path on one node (its partitions' end offsets). */
static uint64_t stream_events(int port, const char *path)
{
    return part_field(port, path, 0, "end_offset") + part_field(port, path, 1, "end_offset");
}

/*
 * The command line over the same nodes (HTTP addresses): `produce` and
 * `view` with --server a,b,c put and read each key on the node the ring
 * (core/ring.h, "host:port#v" labels) names; `view top` merges the nodes'
 * lists; a node that is down fails its keys' lines (exit 1, named), the
 * others' go on; `bench --server a,b,c` reports every node. Returns the
 * node it stopped.
 */
static int test_cli(srv *s, const char *tmp)
{
    enum { LINES = 200, KEYS = 20 };
    char list[256], file[4200];
    snprintf(list, sizeof list, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", s[0].port, s[1].port, s[2].port);
    spw_ring ring;
    CHECK_OK(spw_ring_build(&ring, NODES, SPW_RING_CLIENT_VNODES, http_label, s));
    cli_out o = cli_run(BIN, "stream create e --partitions 2 --key /k --server %s", list);
    CHECK_EQ(o.rc, 0);
    for (int i = 0; i < NODES; i++) { /* on every node */
        char node[64];
        snprintf(node, sizeof node, "node 127.0.0.1:%d:", s[i].port);
        CHECK(strstr(o.text, node) != NULL);
        CHECK_EQ(req_status(s[i].port, "GET", "/v1/streams/e", NULL), 200);
    }
    free(o.text);
    o = cli_run(BIN, "view create v --stream e --kind sum --field /n --server %s", list);
    CHECK_EQ(o.rc, 0);
    free(o.text);
    snprintf(file, sizeof file, "%s/in.ndjson", tmp);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    for (int i = 0; i < LINES; i++)
        fprintf(f, "{\"k\":\"u%d\",\"n\":%d}\n", i % KEYS, i % 5);
    fclose(f);
    o = cli_run(BIN, "produce e %s --server %s", file, list);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "over 3 node(s): 200 accepted") != NULL);
    free(o.text);
    uint64_t want[NODES] = {0};
    for (int i = 0; i < LINES; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "u%d", i % KEYS);
        want[spw_ring_shard(&ring, k, (size_t)kl)]++;
    }
    /* The ports are random, and so is the ring: in about one run in a
     * thousand a node gets none of the 20 keys ((2/3)^20 each). The keys
     * must be spread (more than one node holds some), and the node
     * stopped below is one that holds some. */
    int holding = 0, down = want[1] > 0 ? 1 : want[2] > 0 ? 2 : 0;
    for (int n = 0; n < NODES; n++) {
        holding += want[n] > 0;
        CHECK_EQ(stream_events(s[n].port, "/v1/streams/e"), want[n]); /* each line on its key's node */
    }
    CHECK(holding >= 2);
    /* Each key's aggregate is read from its node (10 lines a key), and
     * only that node has it. */
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        int kl = snprintf(key, sizeof key, "u%d", k);
        uint32_t node = spw_ring_shard(&ring, key, (size_t)kl);
        char expect[64];
        snprintf(expect, sizeof expect, "\"count\":%d,\"sum\":%d", LINES / KEYS, LINES / KEYS * (k % 5));
        int ok = 0;
        for (int round = 0; round < 200 && !ok; round++) {
            o = cli_run(BIN, "view get v %s --server %s", key, list);
            ok = o.rc == 0 && strstr(o.text, expect) != NULL;
            free(o.text);
            if (!ok)
                usleep(20000);
        }
        CHECK(ok);
        for (int n = 0; n < NODES; n++) {
            char path[64];
            snprintf(path, sizeof path, "/v1/views/v/keys/%s", key);
            CHECK_EQ(req_status(s[n].port, "GET", path, NULL), (uint32_t)n == node ? 200 : 404);
        }
    }
    /* top by sum: u4, u9, u14, u19 have 40 each, ties by key */
    o = cli_run(BIN, "view top v --by sum --n 3 --server %s", list);
    CHECK_EQ(o.rc, 0);
    const char *a = strstr(o.text, "{\"key\":\"u14\""), *b = strstr(o.text, "{\"key\":\"u19\""),
               *c = strstr(o.text, "{\"key\":\"u4\"");
    CHECK(a && b && c && a < b && b < c);
    CHECK(strstr(o.text, "\"u9\"") == NULL); /* cut to 3 */
    CHECK(strstr(o.text, "\"nodes\":3") != NULL);
    free(o.text);

    /* bench through the ring: every node gets its keys, per-node rows. */
    o = cli_run(BIN, "bench --server %s --stream be --partitions 2 --events 300 --clients 3 --batch 50 --keys 30 --ack written", list);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "BENCH bench_cluster protocol=http nodes=3 ") != NULL);
    uint64_t total = 0;
    for (int n = 0; n < NODES; n++) {
        char row[64];
        snprintf(row, sizeof row, "BENCH bench_node protocol=http node=127.0.0.1:%d ", s[n].port);
        CHECK(strstr(o.text, row) != NULL);
        uint64_t e = stream_events(s[n].port, "/v1/streams/be");
        CHECK(e > 0);
        total += e;
    }
    CHECK_EQ(total, 300);
    free(o.text);

    /* --ring: HTTP lines placed as binary producers over the nodes'
     * binary addresses place them (include/spillway.h "Routing"). */
    {
        char bins[256];
        snprintf(bins, sizeof bins, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", s[0].binport, s[1].binport,
                 s[2].binport);
        spillway_producer *bp;
        CHECK_EQ(spillway_producer_new(bins, NULL, &bp), 0);
        for (int i = 0; i < NODES; i++)
            put_stream(s[i].port, "r", "{\"partitions\":2,\"key\":\"/k\"}");
        o = cli_run(BIN, "produce r %s --server %s --ring %s", file, list, bins);
        CHECK_EQ(o.rc, 0);
        free(o.text);
        uint64_t by_bin[NODES] = {0};
        int differs = 0; /* keys the two lists place on different nodes */
        for (int i = 0; i < LINES; i++) {
            char k[16];
            int kl = snprintf(k, sizeof k, "u%d", i % KEYS);
            uint32_t b = spw__producer_route(bp, k, kl);
            by_bin[b]++;
            differs += b != spw_ring_shard(&ring, k, (size_t)kl);
        }
        /* The ports are random: the nodes' counts under the two lists may
         * even be equal, but not every one of 20 keys placed alike. */
        CHECK(differs);
        for (int n = 0; n < NODES; n++)
            CHECK_EQ(stream_events(s[n].port, "/v1/streams/r"), by_bin[n]);
        spillway_producer_close(bp, 0);
    }

    /* A node down (node 1, unless it holds no key): its keys' lines fail,
     * named, exit 1; the others land. */
    CHECK_EQ(srv_stop(&s[down], SIGTERM), 0);
    o = cli_run(BIN, "produce e %s --server %s", file, list);
    CHECK_EQ(o.rc, 1);
    char named[128];
    snprintf(named, sizeof named, "node 127.0.0.1:%d: %llu line(s) of its keys failed", s[down].port,
             (unsigned long long)want[down]);
    CHECK(strstr(o.text, named) != NULL);
    free(o.text);
    for (int n = 0; n < NODES; n++)
        if (n != down)
            CHECK_EQ(stream_events(s[n].port, "/v1/streams/e"), 2 * want[n]);
    spw_ring_free(&ring);
    return down;
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
    CHECK_EQ(cfg.connect_attempts_max, SPILLWAY_CONNECT_ATTEMPTS_DEFAULT); /* 8 with several servers, 0 with one */
    {
        /* the default resolved: 8 rounds with several servers, none with one
         * (a lone server's restart is ridden out up to the delivery timeout) */
        spillway_producer *one, *three;
        char first[64];
        snprintf(first, sizeof first, "127.0.0.1:%d", s[0].binport);
        CHECK_EQ(spillway_producer_new(first, &cfg, &one), 0);
        CHECK_EQ(spillway_producer_new(servers, &cfg, &three), 0);
        CHECK_EQ(spw__producer_connect_attempts_max(one), 0);
        CHECK_EQ(spw__producer_connect_attempts_max(three), 8);
        spillway_producer_close(one, 0);
        spillway_producer_close(three, 0);
    }
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

    int down = test_cli(s, tmp);
    for (int n = 0; n < NODES; n++)
        if (n != down)
            CHECK_EQ(srv_stop(&s[n], SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_cluster: ok\n");
    return 0;
}
