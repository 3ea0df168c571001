/*
 * The forward sink keeps each key's order across a failed batch
 * (docs/api.md "forward"; docs/architecture.md "The sink loop"). Between
 * the edge server and the core server sits a proxy of the binary protocol
 * that answers one PRODUCE (the second) with 500 itself, without passing
 * it on, and passes everything else both ways. The edge holds records of
 * a few keys in one window that the sink's producer splits into several
 * batches, so the failed batch has later batches behind it in the same
 * window. Checked at the core: every record exactly once, and each key's
 * records in the order they were produced — a resend of the failed batch
 * must not land after later records of its keys.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "core/buf.h"
#include "wire/frame.h"
#include "server.h"
#include "spillway.h"

#define NREC 240
#define NKEYS 5
#define PAD 6000
#define FAIL_AT 2 /* the PRODUCE frame the proxy fails */

static const char *bin;

typedef struct proxy {
    int lfd, port, upstream;
    _Atomic int stop;
    _Atomic int produces, failed;
} proxy;

typedef struct pair {
    int c, u;
    spw_buf in; /* client bytes not yet a whole frame */
} pair;

static void pair_close(pair *p)
{
    if (p->c >= 0)
        close(p->c);
    if (p->u >= 0)
        close(p->u);
    p->c = p->u = -1;
    p->in.len = 0;
}

/* Whole frames from the client: PRODUCE number FAIL_AT is answered 500
 * here, everything else goes on to the core. */
static void from_client(proxy *x, pair *p)
{
    size_t off = 0;
    for (;;) {
        spw_frame_hdr h;
        int r = spw_frame_hdr_decode(p->in.p + off, p->in.len - off, 64u << 20, &h);
        if (r == SPW_ETRUNC || (r == 0 && p->in.len - off < 4 + (size_t)h.length))
            break;
        CHECK_EQ(r, 0);
        size_t len = 4 + (size_t)h.length;
        if (h.opcode == SPW_OP_PRODUCE && atomic_fetch_add(&x->produces, 1) + 1 == FAIL_AT) {
            spw_buf e = SPW_BUF_INIT;
            CHECK_OK(spw_frame_error_encode(&e, SPW_OP_PRODUCE, h.request_id, 500, 0, "injected",
                                            "the proxy failed this batch"));
            send_all(p->c, e.p, e.len);
            spw_buf_fini(&e);
            atomic_fetch_add(&x->failed, 1);
        } else {
            send_all(p->u, p->in.p + off, len);
        }
        off += len;
    }
    memmove(p->in.p, p->in.p + off, p->in.len - off);
    p->in.len -= off;
}

static void *proxy_main(void *arg)
{
    proxy *x = arg;
    pair ps[8];
    for (int i = 0; i < 8; i++)
        ps[i] = (pair){.c = -1, .u = -1, .in = SPW_BUF_INIT};
    while (!atomic_load(&x->stop)) {
        struct pollfd pf[17];
        int who[17], n = 0;
        pf[n] = (struct pollfd){.fd = x->lfd, .events = POLLIN};
        who[n++] = -1;
        for (int i = 0; i < 8; i++)
            if (ps[i].c >= 0) {
                pf[n] = (struct pollfd){.fd = ps[i].c, .events = POLLIN};
                who[n++] = i * 2;
                pf[n] = (struct pollfd){.fd = ps[i].u, .events = POLLIN};
                who[n++] = i * 2 + 1;
            }
        if (poll(pf, (nfds_t)n, 50) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!pf[k].revents)
                continue;
            if (who[k] < 0) {
                int c = accept(x->lfd, NULL, NULL);
                if (c < 0)
                    continue;
                int i = 0;
                while (i < 8 && ps[i].c >= 0)
                    i++;
                int u = i < 8 ? tcp_connect(x->upstream) : -1;
                if (u < 0) {
                    close(c);
                    continue;
                }
                ps[i].c = c;
                ps[i].u = u;
                continue;
            }
            pair *p = &ps[who[k] / 2];
            if (p->c < 0)
                continue;
            if (who[k] % 2 == 0) {
                CHECK_OK(spw_buf_reserve(&p->in, p->in.len + 65536));
                ssize_t r = recv(p->c, p->in.p + p->in.len, 65536, 0);
                if (r <= 0) {
                    pair_close(p);
                    continue;
                }
                p->in.len += (size_t)r;
                from_client(x, p);
            } else {
                char buf[65536];
                ssize_t r = recv(p->u, buf, sizeof buf, 0);
                if (r <= 0) {
                    pair_close(p);
                    continue;
                }
                send_all(p->c, buf, (size_t)r);
            }
        }
    }
    for (int i = 0; i < 8; i++) {
        pair_close(&ps[i]);
        spw_buf_fini(&ps[i].in);
    }
    return NULL;
}

static void proxy_start(proxy *x, int upstream)
{
    x->upstream = upstream;
    x->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(x->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_EQ(bind(x->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    CHECK_EQ(listen(x->lfd, 16), 0);
    socklen_t sl = sizeof sa;
    CHECK_EQ(getsockname(x->lfd, (struct sockaddr *)&sa, &sl), 0);
    x->port = ntohs(sa.sin_port);
}

/* NREC records of NKEYS keys into the edge's stream, in one partition. */
static void produce(int binport)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, NULL, &p), 0);
    static char val[PAD + 100];
    char key[16];
    for (int i = 0; i < NREC; i++) {
        int kl = snprintf(key, sizeof key, "k%d", i % NKEYS);
        int vl = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%0*d\"}", i, PAD, i);
        CHECK_EQ(spillway_producer_send(p, "src", key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_FSYNC, NULL), 0);
    }
    CHECK_EQ(spillway_producer_flush(p, 30000), 0);
    spillway_producer_close(p, 1000);
}

/* Reads the core's stream "dst" whole; fills seen[i] with how often
 * record i arrived and checks each key's records come in produce order. */
static int read_core(int port, int *seen, int *order_breaks)
{
    int last[NKEYS];
    for (int k = 0; k < NKEYS; k++)
        last[k] = -1;
    memset(seen, 0, NREC * sizeof *seen);
    *order_breaks = 0;
    int total = 0;
    uint64_t off = 0;
    for (int round = 0; round < 1000; round++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/streams/dst/events?partition=0&offset=%" PRIu64 "&limit=100", off);
        resp r = http_json(port, "GET", path, NULL);
        CHECK_EQ(r.status, 200);
        int got = 0;
        for (char *l = r.body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
            char *kp = strstr(l, "\"key\":\"k");
            char *ip = strstr(l, "\"i\":");
            if (!kp || !ip)
                continue;
            int k = atoi(kp + 8), i = atoi(ip + 4);
            CHECK(k >= 0 && k < NKEYS && i >= 0 && i < NREC && i % NKEYS == k);
            seen[i]++;
            if (i <= last[k]) {
                (*order_breaks)++;
                fprintf(stderr, "forward_order: key k%d: record %d arrived after %d\n", k, i, last[k]);
            }
            last[k] = i;
            got++;
        }
        free(r.body);
        if (!got)
            break;
        total += got;
        off += (uint64_t)got;
    }
    return total;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    char t1[] = "/tmp/spw-fwdo-core-XXXXXX", t2[] = "/tmp/spw-fwdo-edge-XXXXXX";
    CHECK(mkdtemp(t1) && mkdtemp(t2));
    srv core, edge;
    srv_start(&core, bin, t1, NULL);
    put_stream(core.port, "dst", "{\"partitions\":1,\"format\":\"json\"}");
    proxy x = {0};
    proxy_start(&x, core.binport);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, proxy_main, &x), 0);

    srv_start(&edge, bin, t2, NULL);
    put_stream(edge.port, "src", "{\"partitions\":1,\"format\":\"json\"}");
    produce(edge.binport);
    /* One window holds every record (about 1.5 MB, under max_bytes); the
     * producer sends it in batches of at most 256 KiB. */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"stream\":\"src\",\"kind\":\"forward\","
             "\"batch\":{\"max_events\":100000,\"max_bytes\":16777216,\"max_wait_ms\":50},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":200},"
             "\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"dst\",\"timeout_ms\":5000}}",
             x.port);
    resp r = http_json(edge.port, "PUT", "/v1/sinks/fwd", body);
    CHECK_EQ(r.status, 201);
    free(r.body);

    /* Wait (bounded) until the core has every record. */
    uint64_t end = 0;
    for (int i = 0; i < 3000 && (end = part_field(core.port, "/v1/streams/dst", 0, "end_offset")) < NREC; i++)
        usleep(10000);
    CHECK_EQ(end, NREC);
    /* and the sink has committed past them (nothing more is coming) */
    for (int i = 0; i < 3000; i++) {
        resp g = http_json(edge.port, "GET", "/v1/sinks/fwd", NULL);
        int lag0 = g.status == 200 && strstr(g.body, "\"lag\":0") != NULL;
        free(g.body);
        if (lag0)
            break;
        usleep(10000);
    }

    int seen[NREC], breaks = 0;
    int total = read_core(core.port, seen, &breaks);
    int missing = 0, dups = 0;
    for (int i = 0; i < NREC; i++) {
        missing += seen[i] == 0;
        dups += seen[i] > 1;
    }
    printf("forward_order: produce frames %d (failed %d), records %d, missing %d, duplicated %d, out of order %d\n",
           atomic_load(&x.produces), atomic_load(&x.failed), total, missing, dups, breaks);
    /* the scenario happened: a batch failed with later batches behind it */
    CHECK_EQ(atomic_load(&x.failed), 1);
    CHECK(atomic_load(&x.produces) > FAIL_AT + 1);
    CHECK_EQ(missing, 0);
    CHECK_EQ(dups, 0);
    CHECK_EQ(breaks, 0);
    CHECK_EQ(total, NREC);

    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    atomic_store(&x.stop, 1);
    pthread_join(th, NULL);
    close(x.lfd);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", t1, t2);
    CHECK(system(cmd) == 0);
    return 0;
}
