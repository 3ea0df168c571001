/*
 * `spillway bench` over the binary protocol: one spillway_producer (one
 * connection and its I/O thread, include/spillway.h) per client. A request
 * is --batch records handed to spillway_producer_send, then spillway_producer_flush;
 * its latency ends at the delivery callback of its last record.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/bench_int.h"
#include "cli/cluster.h"
#include "cli/cmds.h"
#include "core/clock.h"
#include "cli/httpc.h"
#include "spillway.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/id.h"
#include "wire/frame.h"


/* ---- the binary protocol (one spillway_producer per client) ---- */

static void bin_delivered(void *arg, const spillway_delivery *d)
{
    client *cl = arg;
    if (d->status == 0) {
        cl->accepted++;
    } else {
        cl->errors++;
        if (cl->cfg->cl) /* a cluster: which node */
            snprintf(cl->last_error, sizeof cl->last_error, "node %s: %s (%d)",
                     spw__cli_cluster_name(cl->cfg->cl, d->server), spillway_errstr(d->status), d->status);
        else
            snprintf(cl->last_error, sizeof cl->last_error, "%s (%d)", spillway_errstr(d->status), d->status);
    }
    if (d->server < 64) {
        if (d->status == 0)
            cl->node_ok[d->server]++;
        else
            cl->node_err[d->server]++;
    }
    if (++cl->req_done == cl->req_n)
        cl->req_end_ns = spw_mono_ns();
}

static int bin_ack(const char *a)
{
    return strcmp(a, "none") == 0        ? SPILLWAY_ACK_LEVEL_NONE
           : strcmp(a, "written") == 0   ? SPILLWAY_ACK_LEVEL_WRITTEN
           : strcmp(a, "replicated") == 0 ? SPILLWAY_ACK_LEVEL_REPLICATED
                                          : SPILLWAY_ACK_LEVEL_FSYNC;
}

void *spw__bench_bin_client_main(void *arg)
{
    client *cl = arg;
    const bench_cfg *c = cl->cfg;
    /* The value: a JSON object of exactly size bytes (when size allows):
     * {"c":"ID","s":"SEQ","v":"xxx..."}, SEQ in a fixed width. */
    size_t cap = (size_t)c->size + 64;
    char *val = spw_xmalloc(cap);
    int pre = snprintf(val, cap, "{\"c\":\"%04u\",\"s\":\"%010u\",\"v\":\"", cl->id % 10000, 0u);
    size_t seq_at = (size_t)(strstr(val, "\"s\":\"") - val) + 5; /* SEQ's 10 digits */
    size_t vlen = (size_t)pre + 2 > c->size ? (size_t)pre + 2 : c->size;
    memset(val + pre, 'x', vlen - 2 - (size_t)pre);
    memcpy(val + vlen - 2, "\"}", 2);

    size_t sl = strlen(c->stream);
    size_t rec = spw_produce_rec_size(16, vlen);
    uint64_t want = 64 + sl + (uint64_t)c->batch * rec;
    uint64_t limit = SPW_FRAME_MAX_DEFAULT - 4096;
    spillway_producer_config pc;
    spillway_producer_config_init(&pc);
    pc.linger_ms = 60000; /* a request is sealed by spillway_producer_flush */
    pc.batch_bytes = (uint32_t)(want < 1024 ? 1024 : want > limit ? limit : want);
    if (pc.buffer_bytes < 2ull * pc.batch_bytes)
        pc.buffer_bytes = 2ull * pc.batch_bytes;
    pc.delivery_timeout_ms = 60000;
    pc.on_delivery = bin_delivered;
    pc.opaque = cl;
    pc.token = c->token;
    pc.tls_ca_file = c->cacert;
    char server[300];
    snprintf(server, sizeof server, strchr(c->host, ':') ? "[%s]:%s" : "%s:%s", c->host, c->port);
    spillway_producer *p = NULL;
    if (c->bin_servers) {
        /* a cluster: the producer routes each key by its ring; a node that
         * is down fails its keys' records after a few seconds of retries
         * (include/spillway.h "Routing") instead of holding the run */
        pc.backoff_max_ms = 500;
        pc.connect_attempts_max = 5;
    }
    int r = spillway_producer_new(c->bin_servers ? c->bin_servers : server, &pc, &p);
    uint64_t end_ns = c->duration > 0 && !(c->rate > 0) ? spw_mono_ns() + (uint64_t)(c->duration * 1e9) : 0;
    if (r) {
        cl->errors = end_ns ? 1 : cl->events; /* --duration: how many were due is unknown */
        snprintf(cl->last_error, sizeof cl->last_error, "producer for %s: %s", server, spillway_errstr(r));
        spw_free(val);
        return NULL;
    }
    int ack = bin_ack(c->ack);
    char k[24] = "key-"; /* the key: "key-" and 12 digits (bench.c, spw__bench_dec_fixed) */
    uint64_t sent = 0, t0 = spw_mono_ns();
    double ns_per_event = c->rate > 0 ? 1e9 * c->clients / c->rate : 0;
    while (sent < cl->events && !(end_ns && spw_mono_ns() >= end_ns)) {
        uint32_t n = (uint32_t)(cl->events - sent < c->batch ? cl->events - sent : c->batch);
        uint64_t scheduled = spw_mono_ns();
        uint64_t accepted0 = cl->accepted;
        if (ns_per_event > 0) {
            scheduled = t0 + (uint64_t)(ns_per_event * (double)sent);
            spw_sleep_until(scheduled); /* a signal ends it early, as before */
        }
        cl->req_n = n;
        cl->req_done = 0;
        cl->req_end_ns = 0;
        uint32_t queued = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t seq = sent + i;
            uint32_t key = (uint32_t)((seq * 2654435761u + cl->id * 40503u) % c->keys);
            spw__bench_dec_fixed(k + 4, key, 12); /* key-%012u and the value's %010u, without printf */
            spw__bench_dec_fixed(val + seq_at, (uint32_t)seq, 10);
            r = spillway_producer_send(p, c->stream, k, 16, val, vlen, SPILLWAY_TS_NOW, ack, NULL);
            if (r) {
                snprintf(cl->last_error, sizeof cl->last_error, "send: %s", spillway_errstr(r));
                break;
            }
            queued++;
        }
        /* Records send refused get no callback: count them here. */
        cl->errors += n - queued;
        cl->req_n = queued;
        r = spillway_producer_flush(p, 120000);
        uint64_t end = cl->req_end_ns ? cl->req_end_ns : spw_mono_ns();
        uint64_t ok = cl->accepted - accepted0;
        if (r) {
            snprintf(cl->last_error, sizeof cl->last_error, "flush: %s", spillway_errstr(r));
            cl->ev[SPW_BR_ACCEPTED] += ok;
            cl->ev[SPW_BR_OTHER] += n - ok;
            sent += n;
            break; /* the rest are counted below (close cancels what is left) */
        }
        uint64_t us = (end > scheduled ? end - scheduled : 0) / 1000;
        int outcome = ok == n ? SPW_BR_ACCEPTED : SPW_BR_OTHER;
        cl->req[outcome]++;
        cl->ev[SPW_BR_ACCEPTED] += ok;
        cl->ev[SPW_BR_OTHER] += n - ok;
        spw__bench_lat_push(&cl->lat[outcome], us);
        sent += n;
    }
    spillway_producer_close(p, 1000);
    if (sent < cl->events && !end_ns)
        cl->errors += cl->events - sent;
    spw_free(val);
    return NULL;
}
