/*
 * `spillway bench` internals shared by the command (bench.c), its
 * closed-loop drivers (bench_http.c, bench_bin.c) and the open-loop HTTP
 * driver (bench_open.c): the parsed options, one client's (or open-loop
 * worker's) counters, and how an answer is counted.
 *
 * What became of a request is one of SPW_BR_*: accepted (202), refused by
 * admission control for a reason the server names (503 "shed" or
 * "backpressure", 429 / 413 "over_burst" rate limits, 507 disk), another
 * status, or no answer at all (the connection failed or the server stayed
 * silent). Events are counted with their request (--batch per request).
 */
#ifndef SPW_CLI_BENCH_INT_H
#define SPW_CLI_BENCH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum {
    SPW_BR_ACCEPTED,     /* 202 */
    SPW_BR_SHED,         /* 503 "code":"shed" */
    SPW_BR_BACKPRESSURE, /* 503 "code":"backpressure" */
    SPW_BR_RATE_LIMIT,   /* 429, or 413 "code":"over_burst" */
    SPW_BR_DISK,         /* 507 */
    SPW_BR_OTHER,        /* any other status */
    SPW_BR_FAILED,       /* no answer: connection failed, or none within 60 s */
    SPW_BR__N
};

#define SPW_BENCH_MAX_PRIOS 64

typedef struct bench_cfg {
    char host[256];
    char port[16];
    char http_host[256]; /* where the stream is created (bin: --http) */
    int http_known;      /* http_host is the server's HTTP address (http, or bin with --http): /metrics is read there */
    char http_port[16];
    int bin; /* --protocol bin */
    char stream[129];
    char ack[16];
    uint64_t events;
    uint32_t size;
    uint32_t keys;
    uint32_t clients;
    uint32_t batch;
    uint32_t partitions; /* for a stream bench creates; 0 = the server's default */
    double rate;         /* events/s in total; 0 = as fast as answers come */
    const char *token;   /* bearer token (--token, $SPILLWAY_TOKEN) or NULL */
    const char *cacert;  /* --protocol bin: TLS verified against this CA file (--cacert); NULL: plain */
    int http_tls;        /* --http https://...: the stream's creation over HTTPS */
    int tls;             /* --protocol http with --server https://...: the load over HTTPS */
    double duration;     /* --duration seconds; 0 = --events decides */
    uint32_t inflight;   /* --inflight: open loop with at most this many requests in flight; 0 = closed loop */
    uint8_t prios[SPW_BENCH_MAX_PRIOS]; /* --priorities, request i gets prios[i % nprios] */
    uint32_t nprios;                    /* 0: no Spillway-Priority header */
    int refusals_ok;                    /* --refusals-ok: 429/503 refusals are not errors */
    /* A cluster (--server A,B,C; cli/cluster.h), else cl is NULL. bin: the
     * producers get bin_servers and route by key themselves; http: client
     * id talks to node key_nodes[id % nkey_nodes] and sends only the keys
     * the ring gives that node (node_keys), so every key still lands on
     * its node. http_cl: the nodes' HTTP addresses (--server for http,
     * --http for bin), where the stream is created and /metrics read. */
    const struct spw_cli_cluster *cl, *http_cl;
    const char *bin_servers;
    uint32_t *node_keys[64];
    uint32_t node_nkeys[64];
    uint32_t key_nodes[64], nkey_nodes;
} bench_cfg;

/* The node of HTTP client id in a cluster (bench_cfg.cl). */
static inline uint32_t spw__bench_node(const bench_cfg *c, uint32_t id)
{
    return c->key_nodes[id % c->nkey_nodes];
}

/* Latencies in µs, one per request, growing as needed. */
typedef struct bench_lat {
    uint32_t *v;
    uint64_t n, cap;
} bench_lat;

typedef struct client {
    const bench_cfg *cfg;
    uint32_t id;
    uint64_t events;   /* events this client sends (closed loop) */
    bench_lat lat[SPW_BR__N]; /* request latencies by outcome */
    uint64_t accepted; /* events */
    uint64_t errors;   /* events neither accepted nor (with --refusals-ok) refused */
    uint64_t req[SPW_BR__N], ev[SPW_BR__N]; /* requests and events by outcome */
    uint64_t prio_ev[4], prio_ok[4];        /* events offered / accepted by priority */
    uint64_t late;                          /* open loop: requests sent >= 10 ms after their time */
    uint64_t max_late_us;
    char last_error[512];
    /* bin: the request in flight, advanced by the delivery callback (on
     * the producer's I/O thread; read after spillway_producer_flush returns,
     * which synchronizes through the producer's mutex). */
    uint32_t req_n, req_done;
    uint64_t req_end_ns;
    uint64_t node_ok[64], node_err[64]; /* bin in a cluster: events by the node they went to */
} client;

void spw__bench_lat_push(bench_lat *l, uint64_t us);

/* v in decimal at out, zero-padded to width digits (printf's %0*u);
 * returns the length (room for max(width, 20) bytes). */
size_t spw__bench_dec_fixed(char *out, uint64_t v, size_t width);

/* The NDJSON body of one request: events [first, first + n) of client id,
 * each about c->size bytes (pad is the filler string). */
void spw__bench_body(spw_buf *b, const bench_cfg *c, uint32_t id, uint64_t first, uint32_t n, const char *pad);

/* The filler that makes an event about c->size bytes (spw_free it). */
char *spw__bench_pad(const bench_cfg *c);

/* The request head and body for n events starting at first, priority prio
 * (-1: no header), into req (replaced). h supplies host and token. */
struct spw_httpc;
void spw__bench_request(spw_buf *req, spw_buf *body, const struct spw_httpc *h, const bench_cfg *c, uint32_t id,
                        uint64_t first, uint32_t n, int prio, const char *pad);

/* Counts an HTTP answer (status and body) to a request of n events at
 * priority prio (-1: none) that took us µs. Returns its SPW_BR_*. */
int spw__bench_note(client *cl, int status, const char *body, size_t body_len, uint32_t n, int prio, uint64_t us);

/* Counts a request of n events that got no answer; why is a sentence. */
void spw__bench_failed(client *cl, uint32_t n, int prio, const char *why);

/*
 * The open loop (bench_open.c): c->rate events/s for c->duration seconds
 * (or c->events in all), at most c->inflight requests in flight, over
 * nworkers epoll threads; worker w counts into cls[w]. Returns when every
 * request was answered or given up on.
 */
void spw__bench_open_run(const bench_cfg *c, client *cls, uint32_t nworkers);

/* A load connection's client: host, port, token, and TLS (c->tls,
 * verified against c->cacert or the system's CAs). Not connected. */
void spw__bench_httpc_init(struct spw_httpc *h, const bench_cfg *c);
/* The same for HTTP client id: its node's address in a cluster. */
void spw__bench_httpc_init_client(struct spw_httpc *h, const bench_cfg *c, uint32_t id);

/* bench_http.c: the closed-loop HTTP driver, one thread per hworker. */
typedef struct hworker {
    const bench_cfg *cfg;
    client *cls;
    uint32_t first, n; /* clients [first, first + n) */
} hworker;
void *spw__bench_http_worker_main(void *arg); /* arg: hworker */

/* bench_bin.c: the binary-protocol driver, one thread per client. */
void *spw__bench_bin_client_main(void *arg); /* arg: client */

#endif
