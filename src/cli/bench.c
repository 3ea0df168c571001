/*
 * `spillway bench`: a load generator for a running server (docs/api.md "Command line").
 *
 * C client threads send N events of B-byte values over K keys, `--batch`
 * events per request, and wait for each answer before the next request
 * (closed loop), or, with --rate R, send on a fixed schedule of R events/s
 * in total, each client still one request at a time. With --inflight the
 * HTTP load is a true open loop (bench_open.c): requests leave on schedule
 * whether or not earlier ones were answered. Latency is measured per
 * request from its *scheduled* send time, so a stalled server is not
 * hidden by the client slowing down with it (coordinated omission). Every
 * request's latency is kept (one u32 per request, bounded by --events or
 * by what --duration lets out), so the percentiles are exact.
 *
 * Over HTTP every answer is also counted by outcome (bench_int.h: 202,
 * 503 shed / backpressure, 429 rate limit, 507, other, none) and by
 * --priorities priority, for the burst benchmark (bench/burst.sh).
 *
 * Protocols:
 *  - http: one keep-alive connection per client, `--batch` events per
 *    NDJSON POST; an event is about B bytes of JSON in all.
 *  - bin: the binary protocol (docs/protocol.md) through the C client
 *    library (include/spillway.h): one spillway_producer (one connection and its
 *    I/O thread) per client. A request is `--batch` records handed to
 *    spillway_producer_send, then spillway_producer_flush: the producer's batch_bytes
 *    is sized so that they travel as one PRODUCE frame (split only past the
 *    server's 16 MiB frame limit). A record is a 16-byte key and a JSON
 *    object value of exactly B bytes (when B >= 40). The request's latency
 *    ends at the delivery callback of its last record. The stream is
 *    created over the binary protocol (STREAM_CREATE), or over HTTP when
 *    --http gives the server's HTTP address.
 *
 * A cluster (--server A,B,C): bin producers route each key by the client
 * library's ring; an HTTP client talks to one node and sends only the keys
 * the same ring gives that node (bench_int.h). Per-node rows, the total and
 * the server CPU per event summed over the nodes' /metrics.
 *
 * Files: this one holds the command (options, the run, the report) and
 * what the drivers share (request bodies, answer counting); the drivers
 * are bench_http.c (HTTP, closed loop), bench_open.c (HTTP, open loop)
 * and bench_bin.c (binary protocol); bench_int.h is what they share.
 */
#include "core/help.h"
#include "cli/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
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
#include "cli/httpc.h"
#include "cli/promtext.h"
#include "spillway.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/hostport.h"
#include "core/id.h"
#include "wire/frame.h"


void spw__bench_lat_push(bench_lat *l, uint64_t us)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->v = spw_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

size_t spw__bench_dec_fixed(char *out, uint64_t v, size_t width)
{
    char t[20];
    size_t n = spw_u64_dec(t, v), z = n < width ? width - n : 0;
    memset(out, '0', z);
    memcpy(out + z, t, n);
    return z + n;
}

/* Written without printf: the load generator shares the server's cores,
 * and a formatted print per event cost it more than the server spent on
 * the event (docs/performance.md, "The client's share"). */
void spw__bench_body(spw_buf *b, const bench_cfg *c, uint32_t id, uint64_t first, uint32_t n, const char *pad)
{
    static const char k0[] = "{\"k\":\"key-", c0[] = "\",\"c\":", s0[] = ",\"seq\":", v0[] = ",\"v\":\"", e0[] = "\"}\n";
    size_t padn = strlen(pad);
    b->len = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t seq = first + i;
        uint32_t key = (uint32_t)((seq * 2654435761u + id * 40503u) % c->keys);
        if (c->cl) { /* a cluster: only the keys the ring gives this client's node */
            uint32_t node = spw__bench_node(c, id);
            key = c->node_keys[node][(seq * 2654435761u + id * 40503u) % c->node_nkeys[node]];
        }
        if (spw_buf_reserve(b, b->len + padn + 96))
            abort();
        char *o = (char *)b->p + b->len, *o0 = o;
        memcpy(o, k0, sizeof k0 - 1), o += sizeof k0 - 1;
        o += spw__bench_dec_fixed(o, key, 11);
        memcpy(o, c0, sizeof c0 - 1), o += sizeof c0 - 1;
        o += spw_u64_dec(o, id);
        memcpy(o, s0, sizeof s0 - 1), o += sizeof s0 - 1;
        o += spw_u64_dec(o, seq);
        memcpy(o, v0, sizeof v0 - 1), o += sizeof v0 - 1;
        memcpy(o, pad, padn), o += padn;
        memcpy(o, e0, sizeof e0 - 1), o += sizeof e0 - 1;
        b->len += (size_t)(o - o0);
    }
}

char *spw__bench_pad(const bench_cfg *c)
{
    /* The value: size bytes in total per event, JSON framing included. */
    size_t frame = 50; /* {"k":"key-00000000000","c":N,"seq":N,"v":""} roughly */
    size_t padn = c->size > frame ? c->size - frame : 1;
    char *pad = spw_xmalloc(padn + 1);
    memset(pad, 'x', padn);
    pad[padn] = 0;
    return pad;
}

void spw__bench_request(spw_buf *req, spw_buf *body, const spw_httpc *h, const bench_cfg *c, uint32_t id,
                        uint64_t first, uint32_t n, int prio, const char *pad)
{
    spw__bench_body(body, c, id, first, n, pad);
    size_t head_cap = 512 + sizeof h->auth;
    if (spw_buf_reserve(req, body->len + head_cap))
        abort();
    char target[256], extra[40] = "";
    snprintf(target, sizeof target, "/v1/streams/%s/events?ack=%s", c->stream, c->ack);
    if (prio >= 0)
        snprintf(extra, sizeof extra, "Spillway-Priority: %d\r\n", prio);
    int hn = spw_httpc_head(h, (char *)req->p, head_cap, "POST", target, "application/x-ndjson", extra, body->len);
    if (hn < 0)
        abort(); /* the target is bounded by the stream name's 128 bytes */
    memcpy(req->p + hn, body->p, body->len);
    req->len = (size_t)hn + body->len;
}

/* The "code" of an error body {"error":..,"code":"X",..} is X? */
static int body_code(const char *body, size_t len, const char *code)
{
    char want[48];
    int wl = snprintf(want, sizeof want, "\"code\":\"%s\"", code);
    return body && len >= (size_t)wl && memmem(body, len, want, (size_t)wl) != NULL;
}

static int classify(int status, const char *body, size_t len)
{
    switch (status) {
    case 202: return SPW_BR_ACCEPTED;
    case 503: return body_code(body, len, "shed") ? SPW_BR_SHED
                     : body_code(body, len, "backpressure") ? SPW_BR_BACKPRESSURE
                                                            : SPW_BR_OTHER;
    case 429: return SPW_BR_RATE_LIMIT;
    case 413: return body_code(body, len, "over_burst") ? SPW_BR_RATE_LIMIT : SPW_BR_OTHER;
    case 507: return SPW_BR_DISK;
    default: return SPW_BR_OTHER;
    }
}

int spw__bench_note(client *cl, int status, const char *body, size_t body_len, uint32_t n, int prio, uint64_t us)
{
    int r = classify(status, body, body_len);
    cl->req[r]++;
    cl->ev[r] += n;
    spw__bench_lat_push(&cl->lat[r], us);
    if (prio >= 0 && prio <= 3)
        cl->prio_ev[prio] += n;
    if (r == SPW_BR_ACCEPTED) {
        cl->accepted += n;
        if (prio >= 0 && prio <= 3)
            cl->prio_ok[prio] += n;
    } else if (!(cl->cfg->refusals_ok && (r == SPW_BR_SHED || r == SPW_BR_BACKPRESSURE || r == SPW_BR_RATE_LIMIT))) {
        cl->errors += n;
        snprintf(cl->last_error, sizeof cl->last_error, "HTTP %d: %.*s", status,
                 (int)(body_len > 200 ? 200 : body_len), body ? body : "");
    }
    return r;
}

void spw__bench_failed(client *cl, uint32_t n, int prio, const char *why)
{
    cl->req[SPW_BR_FAILED]++;
    cl->ev[SPW_BR_FAILED] += n;
    cl->errors += n;
    if (prio >= 0 && prio <= 3)
        cl->prio_ev[prio] += n;
    snprintf(cl->last_error, sizeof cl->last_error, "%s", why);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *v, uint64_t n, double q)
{
    if (!n)
        return 0;
    uint64_t i = (uint64_t)(q * (double)(n - 1) + 0.5);
    return v[i];
}

void spw__bench_httpc_init(spw_httpc *h, const bench_cfg *c)
{
    spw_httpc_init(h, c->host, c->port);
    spw_httpc_set_token(h, c->token); /* checked by spw__cli_token */
    h->tls = c->tls;
    if (c->cacert)
        snprintf(h->cacert, sizeof h->cacert, "%s", c->cacert);
}

void spw__bench_httpc_init_client(spw_httpc *h, const bench_cfg *c, uint32_t id)
{
    spw__bench_httpc_init(h, c);
    if (c->cl) {
        uint32_t node = spw__bench_node(c, id);
        spw_httpc_init(h, c->cl->host[node], c->cl->port[node]);
        spw_httpc_set_token(h, c->token);
        h->tls = c->cl->tls[node];
        if (c->cacert)
            snprintf(h->cacert, sizeof h->cacert, "%s", c->cacert);
    }
}

/* c with node i of http_cl as its HTTP address (stream creation, /metrics). */
static bench_cfg *at_node(const bench_cfg *c, uint32_t i)
{
    static bench_cfg t;
    t = *c;
    snprintf(t.http_host, sizeof t.http_host, "%s", c->http_cl->host[i]);
    snprintf(t.http_port, sizeof t.http_port, "%s", c->http_cl->port[i]);
    t.http_tls = c->http_cl->tls[i];
    t.http_cl = NULL;
    return &t;
}

/* One request on a fresh connection (stream creation). Returns the status. */
static int simple_request(const bench_cfg *c, const char *method, const char *path, const char *json, char *out,
                          size_t outcap)
{
    spw_httpc h;
    spw_httpc_init(&h, c->http_host, c->http_port);
    spw_httpc_set_token(&h, c->token);
    h.tls = c->http_tls;
    if (c->cacert)
        snprintf(h.cacert, sizeof h.cacert, "%s", c->cacert);
    spw_httpc_resp r;
    int st = spw_httpc_request(&h, method, path, "application/json", "Connection: close\r\n", json,
                               json ? strlen(json) : 0, 10000, &r);
    if (st < 0) /* why, for the message */
        snprintf(out, outcap, "%s", h.tls_err[0] ? h.tls_err : strerror(errno));
    else
        snprintf(out, outcap, "%.*s", (int)r.body_len, r.body);
    spw_httpc_close(&h);
    return st;
}

/* The server's CPU time so far (process_cpu_seconds_total from /metrics
 * on the HTTP address), or NAN when it cannot be read (no such metric, a
 * token without the right to see /metrics, the server unreachable). */
static double server_cpu_s(const bench_cfg *c)
{
    if (!c->http_known)
        return NAN;
    if (c->http_cl) { /* a cluster: summed over its nodes (NAN if one is unknown) */
        double sum = 0;
        for (uint32_t i = 0; i < c->http_cl->n; i++)
            sum += server_cpu_s(at_node(c, i));
        return sum;
    }
    spw_httpc h;
    spw_httpc_init(&h, c->http_host, c->http_port);
    spw_httpc_set_token(&h, c->token);
    h.tls = c->http_tls;
    if (c->cacert)
        snprintf(h.cacert, sizeof h.cacert, "%s", c->cacert);
    spw_httpc_resp r;
    double v = NAN;
    int st = spw_httpc_request(&h, "GET", "/metrics", NULL, "Connection: close\r\n", NULL, 0, 10000, &r);
    if (st == 200) {
        spw_prom_set m;
        spw_prom_init(&m);
        double x;
        if (spw_prom_parse(&m, r.body, r.body_len) >= 0 && spw_prom_get(&m, "process_cpu_seconds_total", NULL, NULL, &x))
            v = x;
        spw_prom_fini(&m);
    }
    spw_httpc_close(&h);
    return v;
}

static void bench_help(FILE *f)
{
    spw_help_write(f, "usage: spillway bench [--server HOST:PORT] [--protocol http|bin]\n"
          "                      [--http HOST:PORT] [--stream S] [--events N] [--size B]\n"
          "                      [--keys K] [--clients C] [--batch N] [--ack L]\n"
          "                      [--rate R] [--duration S] [--inflight N] [--priorities LIST]\n"
          "                      [--refusals-ok]\n"
          "Creates the stream if missing (key /k), sends N events of about B bytes each over K keys\n"
          "from C clients, --batch events per request, each client waiting for an answer before\n"
          "its next request, or at most R events/s in total (--rate); or, with --inflight, R\n"
          "events/s whatever the answers (open loop).\n"
          "Prints throughput and request latency p50/p99/p999/max, then a BENCH line; over HTTP\n"
          "also the answers by outcome (accepted, shed, backpressure, rate_limit, disk, other,\n"
          "failed), per priority with --priorities, and a BENCH bench_responses line.\n\n"
          "  --protocol http|bin  http (default): C keep-alive connections, one NDJSON POST of\n"
          "                       --batch events per request, B bytes per event JSON included.\n"
          "                       bin: the binary protocol through the C client library, one\n"
          "                       producer (connection + I/O thread) per client, one PRODUCE\n"
          "                       frame of --batch records per request, each a 16-byte key and a\n"
          "                       B-byte JSON object value; latency ends at the delivery callback.\n"
          "  --server HOST:PORT   where events go: default $SPILLWAY_SERVER, else 127.0.0.1:7700 (http),\n"
          "                       127.0.0.1:7701 (bin); http: https://HOST:PORT speaks HTTPS (TLS\n"
          "                       1.2+, the certificate verified against --cacert, else the\n"
          "                       system's CAs). A cluster: A,B,C, keys routed by the client\n"
          "                       library's ring (bin: each producer routes; http: a client talks\n"
          "                       to one node and sends the keys the ring gives it); the stream is\n"
          "                       created on every node; per-node rows (events/s, errors), the\n"
          "                       total and the server CPU summed over the nodes\n"
          "  --ring LIST          http, several nodes in --server: place keys by LIST's addresses (e.g.\n"
          "                       the nodes' binary ones, same count and order), as binary\n"
          "                       producers over LIST do\n"
          "  --http HOST:PORT     bin only: create the stream over HTTP at this address instead\n"
          "                       of over the binary protocol (STREAM_CREATE, the default); the\n"
          "                       server's CPU per event is read from its /metrics there. With\n"
          "                       --server=A,B,C: one HTTP address a node, in the same order\n"
          "  --stream S           default bench\n"
          "  --partitions P       partitions of the stream if bench creates it (default: the\n"
          "                       server's, 4)\n"
          "  --events N           default 100000\n"
          "  --size B             bytes per event value (default 100)\n"
          "  --keys K             distinct keys (default 1000)\n"
          "  --clients C          clients, one thread each (default 8, at most 1024)\n"
          "  --batch N            events per request (default 100)\n"
          "  --ack L              none|written|fsync|replicated (default fsync; replicated\n"
          "                       needs a stream with replicate_to: create it first)\n"
          "  --rate R             events/s in total (default: unlimited)\n"
          "  --duration S         seconds (0.1-3600) instead of --events: with --rate, R x S events;\n"
          "                       without, clients start requests until S seconds have passed\n"
          "  --inflight N         http, with --rate: open loop. Request i leaves at i x batch / R s\n"
          "                       whether or not earlier ones were answered, on any idle\n"
          "                       connection (C are opened up front, more as needed), at most N\n"
          "                       (1-100000) in flight; latency runs from the scheduled time, and a\n"
          "                       request that had to wait 10 ms or more for a connection is late\n"
          "  --priorities LIST    http: Spillway-Priority of the requests, round robin over LIST,\n"
          "                       e.g. 0,1,2,3 (a quarter each) or 0,0,3 (at most 64 entries)\n"
          "  --refusals-ok        http: 429 and 503 refusals (rate_limit, shed, backpressure) are\n"
          "                       counted by reason but are not errors (exit 0 if nothing else\n"
          "                       failed)\n"
          "  --token T            bearer token for a server with tokens (default: $SPILLWAY_TOKEN);\n"
          "                       it needs produce on the stream, and admin to create it\n"
          "  --cacert FILE        PEM CA certificates verifying the server's: bin speaks TLS with it\n"
          "                       (--http then takes https://HOST:PORT); http speaks HTTPS\n"
          "                       to an https:// server address\n", SPW_HELP_WIDTH);
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Seconds, decimals allowed, in [0.1, 3600]. */
static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.1 && v <= 3600))
        return -1;
    *out = v;
    return 0;
}

/* "0,1,2,3": digits 0..3 separated by commas, at most SPW_BENCH_MAX_PRIOS. */
static int parse_prios(const char *s, bench_cfg *c)
{
    uint32_t n = 0;
    for (const char *p = s;; p += 2) {
        if (!(p[0] >= '0' && p[0] <= '3') || (p[1] != ',' && p[1] != 0) || n == SPW_BENCH_MAX_PRIOS)
            return -1;
        c->prios[n++] = (uint8_t)(p[0] - '0');
        if (!p[1])
            break;
    }
    c->nprios = n;
    return 0;
}

/* Open loop: room for every connection it may open (and a margin). */
static void raise_nofile(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Every latency of outcomes [lo, hi] of every client, sorted; *n set. */
static uint32_t *gather_lat(const client *cls, uint32_t ncls, int lo, int hi, uint64_t *n)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < ncls; i++)
        for (int r = lo; r <= hi; r++)
            total += cls[i].lat[r].n;
    uint32_t *all = spw_xmalloc((total ? total : 1) * sizeof *all);
    uint64_t at = 0;
    for (uint32_t i = 0; i < ncls; i++)
        for (int r = lo; r <= hi; r++) {
            if (!cls[i].lat[r].n)
                continue; /* v may be NULL: memcpy's pointers must not be, even for 0 bytes */
            memcpy(all + at, cls[i].lat[r].v, cls[i].lat[r].n * sizeof *all);
            at += cls[i].lat[r].n;
        }
    qsort(all, total, sizeof *all, cmp_u32);
    *n = total;
    return all;
}

static const char *const outcome_names[SPW_BR__N] = {"accepted", "shed", "backpressure", "rate_limit",
                                                      "disk",     "other", "failed"};

/* HTTP: the answers by outcome and priority, and their BENCH line; rates
 * over secs (the schedule in the open loop, the run in the closed one). */
static void print_responses(const bench_cfg *c, const client *cls, uint32_t ncls, double secs)
{
    uint64_t req[SPW_BR__N] = {0}, ev[SPW_BR__N] = {0}, pev[4] = {0}, pok[4] = {0}, late = 0, max_late = 0;
    uint64_t offered = 0;
    for (uint32_t i = 0; i < ncls; i++) {
        for (int r = 0; r < SPW_BR__N; r++) {
            req[r] += cls[i].req[r];
            ev[r] += cls[i].ev[r];
            offered += cls[i].ev[r];
        }
        for (int p = 0; p < 4; p++) {
            pev[p] += cls[i].prio_ev[p];
            pok[p] += cls[i].prio_ok[p];
        }
        late += cls[i].late;
        if (cls[i].max_late_us > max_late)
            max_late = cls[i].max_late_us;
    }
    printf("\n%-13s %10s %12s %10s %10s %10s %10s\n", "outcome", "requests", "events", "events/s", "p50_us", "p99_us",
           "p999_us");
    uint32_t ok50 = 0, ok99 = 0, ok999 = 0, okmax = 0;
    for (int r = 0; r < SPW_BR__N; r++) {
        uint64_t n;
        uint32_t *v = gather_lat(cls, ncls, r, r, &n);
        printf("%-13s %10" PRIu64 " %12" PRIu64 " %10.0f %10u %10u %10u\n", outcome_names[r], req[r], ev[r],
               (double)ev[r] / secs, pct(v, n, 0.5), pct(v, n, 0.99), pct(v, n, 0.999));
        if (r == SPW_BR_ACCEPTED) {
            ok50 = pct(v, n, 0.5);
            ok99 = pct(v, n, 0.99);
            ok999 = pct(v, n, 0.999);
            okmax = n ? v[n - 1] : 0;
        }
        spw_free(v);
    }
    if (c->inflight)
        printf("open loop: %" PRIu64 " events offered in %.1f s (%.0f/s); %" PRIu64 " request(s) left 10 ms or more "
               "late waiting for a connection (at most %" PRIu64 " us)\n",
               offered, secs, (double)offered / secs, late, max_late);
    char pbuf[256] = "";
    if (c->nprios) {
        printf("\n%-9s %15s %16s %13s\n", "priority", "offered_events", "accepted_events", "accepted_pct");
        size_t at = 0;
        for (int p = 0; p < 4; p++) {
            double share = pev[p] ? 100.0 * (double)pok[p] / (double)pev[p] : 0;
            if (pev[p])
                printf("%-9d %15" PRIu64 " %16" PRIu64 " %12.1f%%\n", p, pev[p], pok[p], share);
            at += (size_t)snprintf(pbuf + at, sizeof pbuf - at, " p%d_offered=%" PRIu64 " p%d_accepted=%" PRIu64, p,
                                   pev[p], p, pok[p]);
        }
    }
    uint64_t rejected = offered - ev[SPW_BR_ACCEPTED];
    printf("BENCH bench_responses protocol=http loop=%s seconds=%.3f offered_per_s=%.0f accepted_per_s=%.0f "
           "rejected_per_s=%.0f rejected_shed_per_s=%.0f rejected_backpressure_per_s=%.0f "
           "rejected_rate_limit_per_s=%.0f rejected_disk_per_s=%.0f rejected_other_per_s=%.0f failed_per_s=%.0f "
           "accepted_p50_us=%u accepted_p99_us=%u accepted_p999_us=%u accepted_max_us=%u late=%" PRIu64
           " max_late_us=%" PRIu64 "%s\n",
           c->inflight ? "open" : "closed", secs, (double)offered / secs, (double)ev[SPW_BR_ACCEPTED] / secs,
           (double)rejected / secs, (double)ev[SPW_BR_SHED] / secs, (double)ev[SPW_BR_BACKPRESSURE] / secs,
           (double)ev[SPW_BR_RATE_LIMIT] / secs, (double)ev[SPW_BR_DISK] / secs, (double)ev[SPW_BR_OTHER] / secs,
           (double)ev[SPW_BR_FAILED] / secs, ok50, ok99, ok999, okmax, late, max_late, pbuf);
}

/* Runs the load of c (validated, stream created) and prints the results. */
/* A cluster: events/s and errors per node, the total, and the server CPU
 * per event summed over the nodes (each node's /metrics). */
static void print_nodes(const bench_cfg *c, const client *cls, uint32_t ncls, double secs, double cpu)
{
    uint64_t ok[SPW_CLI_NODES_MAX] = {0}, err[SPW_CLI_NODES_MAX] = {0}, tok = 0, terr = 0;
    for (uint32_t i = 0; i < ncls; i++) {
        if (c->bin) {
            for (uint32_t n = 0; n < c->cl->n; n++) {
                ok[n] += cls[i].node_ok[n];
                err[n] += cls[i].node_err[n];
            }
        } else {
            uint32_t n = spw__bench_node(c, cls[i].id);
            ok[n] += cls[i].accepted;
            err[n] += cls[i].errors;
        }
    }
    printf("\n%-32s %12s %10s\n", "node", "events/s", "errors");
    for (uint32_t n = 0; n < c->cl->n; n++) {
        printf("%-32s %12.0f %10" PRIu64 "\n", spw__cli_cluster_name(c->cl, n), (double)ok[n] / secs, err[n]);
        tok += ok[n];
        terr += err[n];
    }
    char cpu_ev[32] = "-";
    if (!isnan(cpu) && cpu >= 0 && tok > 0)
        snprintf(cpu_ev, sizeof cpu_ev, "%.0f", cpu * 1e9 / (double)tok);
    printf("%-32s %12.0f %10" PRIu64 "   server CPU %s ns per event (summed over the nodes)\n", "total",
           (double)tok / secs, terr, cpu_ev);
    for (uint32_t n = 0; n < c->cl->n; n++)
        printf("BENCH bench_node protocol=%s node=%s events_per_s=%.0f errors=%" PRIu64 "\n", c->bin ? "bin" : "http",
               spw__cli_cluster_name(c->cl, n), (double)ok[n] / secs, err[n]);
    printf("BENCH bench_cluster protocol=%s nodes=%u events_per_s=%.0f errors=%" PRIu64
           " server_cpu_ns_per_event=%s\n", c->bin ? "bin" : "http", c->cl->n, (double)tok / secs, terr, cpu_ev);
}

static int bench_run(bench_cfg *c)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    /* The open loop counts per epoll worker; the closed one per client. */
    uint32_t nworkers = (uint32_t)(c->inflight ? (ncpu > c->inflight ? c->inflight : ncpu) : 0);
    uint32_t ncls = c->inflight ? nworkers : c->clients;
    client *cls = spw_xcalloc(ncls, sizeof *cls);
    for (uint32_t i = 0; i < ncls; i++) {
        cls[i].cfg = c;
        cls[i].id = i;
        cls[i].events = c->events / ncls + (i < c->events % ncls);
    }
    char where[1024] = "";
    if (c->cl)
        for (uint32_t i = 0; i < c->cl->n; i++)
            snprintf(where + strlen(where), sizeof where - strlen(where), "%s%s", i ? "," : "",
                     spw__cli_cluster_name(c->cl, i));
    else
        snprintf(where, sizeof where, "%s:%s", c->host, c->port);
    if (c->duration > 0 && !(c->rate > 0))
        printf("spillway bench: events of %u B over %u keys to %s%s stream %s for %.1f s, %u client(s), %u per "
               "request, ack=%s\n",
               c->size, c->keys, c->bin ? "bin://" : "", where, c->stream, c->duration, c->clients,
               c->batch, c->ack);
    else
        printf("spillway bench: %" PRIu64 " events of %u B over %u keys to %s%s stream %s, %u client(s), %u per "
               "request, ack=%s%s\n",
               c->events, c->size, c->keys, c->bin ? "bin://" : "", where, c->stream, c->clients, c->batch,
               c->ack, c->inflight ? ", open loop" : c->rate > 0 ? ", rate-limited" : "");
    fflush(stdout);

    double cpu0 = server_cpu_s(c);
    uint64_t t0 = spw_mono_ns();
    if (c->inflight) {
        raise_nofile((uint64_t)c->inflight + 64);
        spw__bench_open_run(c, cls, nworkers);
    } else {
        /* bin: a thread per client (each producer has its own I/O thread
         * too); http: the connections shared out over one epoll worker per
         * core. */
        uint32_t nthreads = c->bin ? c->clients : (uint32_t)(ncpu > c->clients ? c->clients : ncpu);
        pthread_t *th = spw_xcalloc(nthreads, sizeof *th);
        hworker *ws = spw_xcalloc(nthreads, sizeof *ws);
        for (uint32_t t = 0, at = 0; !c->bin && t < nthreads; t++) {
            uint32_t n = c->clients / nthreads + (t < c->clients % nthreads);
            ws[t] = (hworker){.cfg = c, .cls = cls, .first = at, .n = n};
            at += n;
        }
        for (uint32_t i = 0; i < nthreads; i++)
            if (pthread_create(&th[i], NULL, c->bin ? spw__bench_bin_client_main : spw__bench_http_worker_main,
                               c->bin ? (void *)&cls[i] : &ws[i])) {
                fprintf(stderr, "spillway bench: cannot start thread %u\n", i);
                return 1;
            }
        for (uint32_t i = 0; i < nthreads; i++)
            pthread_join(th[i], NULL);
        spw_free(ws);
        spw_free(th);
    }
    double secs = (double)(spw_mono_ns() - t0) / 1e9;
    double cpu = server_cpu_s(c) - cpu0; /* NAN if either read failed */

    uint64_t n_lat = 0, accepted = 0, errors = 0, sent = 0;
    uint32_t *all = gather_lat(cls, ncls, 0, SPW_BR__N - 1, &n_lat);
    const char *last_error = NULL;
    for (uint32_t i = 0; i < ncls; i++) {
        accepted += cls[i].accepted;
        errors += cls[i].errors;
        for (int r = 0; r < SPW_BR__N; r++)
            sent += cls[i].ev[r];
        if (cls[i].errors)
            last_error = cls[i].last_error;
    }
    /* --duration without --rate: the events are those the clock let out. */
    if (c->duration > 0 && !(c->rate > 0))
        c->events = sent;
    double eps = (double)accepted / secs;
    double mbps = eps * c->size / 1e6;
    printf("\n%-12s %12s %10s %10s %10s %10s %10s %8s\n", "requests", "events/s", "MB/s", "p50_us", "p99_us",
           "p999_us", "max_us", "errors");
    printf("%-12" PRIu64 " %12.0f %10.1f %10u %10u %10u %10u %8" PRIu64 "\n", n_lat, eps, mbps, pct(all, n_lat, 0.5),
           pct(all, n_lat, 0.99), pct(all, n_lat, 0.999), n_lat ? all[n_lat - 1] : 0, errors);
    if (last_error)
        printf("last error: %s\n", last_error);
    /* The server's CPU per acknowledged event (and per request): the
     * figure that predicts how far one node scales, steadier than events/s
     * on a busy machine (docs/operations.md "Benchmarks"). */
    char cpu_ev[32] = "-", cpu_req[32] = "-";
    if (!isnan(cpu) && cpu >= 0 && accepted > 0) {
        snprintf(cpu_ev, sizeof cpu_ev, "%.0f", cpu * 1e9 / (double)accepted);
        if (n_lat > 0)
            snprintf(cpu_req, sizeof cpu_req, "%.0f", cpu * 1e9 / (double)n_lat);
        printf("server CPU   %.3f s: %s ns per event, %s ns per request\n", cpu, cpu_ev, cpu_req);
    } else {
        printf("server CPU   unknown (process_cpu_seconds_total not readable from /metrics%s)\n",
               c->http_known ? "" : ": give --http");
    }
    printf("BENCH bench protocol=%s ack=%s events=%" PRIu64 " batch=%u clients=%u events_per_s=%.0f p50_us=%u "
           "p99_us=%u p999_us=%u max_us=%u errors=%" PRIu64 " server_cpu_ns_per_event=%s server_cpu_ns_per_request=%s\n",
           c->bin ? "bin" : "http", c->ack, c->events, c->batch, c->clients, eps, pct(all, n_lat, 0.5),
           pct(all, n_lat, 0.99), pct(all, n_lat, 0.999), n_lat ? all[n_lat - 1] : 0, errors, cpu_ev, cpu_req);
    if (c->cl)
        print_nodes(c, cls, ncls, secs, cpu);
    if (!c->bin)
        print_responses(c, cls, ncls, c->inflight ? (double)c->events / c->rate : secs);
    for (uint32_t i = 0; i < ncls; i++)
        for (int r = 0; r < SPW_BR__N; r++)
            spw_free(cls[i].lat[r].v);
    spw_free(all);
    spw_free(cls);
    return errors ? 1 : 0;
}

int spw_cmd_bench(int argc, char **argv)
{
    /* static: a cluster's key lists (node_keys) stay reachable until exit */
    static bench_cfg c;
    c = (bench_cfg){.host = "127.0.0.1", .port = "7700", .http_host = "127.0.0.1", .http_port = "7700",
                    .stream = "bench", .ack = "fsync", .events = 100000, .size = 100, .keys = 1000, .clients = 8,
                    .batch = 100};
    int server_set = 0, http_set = 0;
    const char *token_opt = NULL, *server_list = NULL, *http_list = NULL, *ring_list = NULL;
    static spw_cli_cluster scl, hcl;
    static char bin_servers[SPW_CLI_NODES_MAX * 300];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            bench_help(stdout);
            return 0;
        }
        if (strcmp(a, "--refusals-ok") == 0) {
            c.refusals_ok = 1;
            continue;
        }
        /* --name VALUE or --name=VALUE */
        char name[64];
        const char *v, *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof name) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            a = name;
            v = eq + 1;
        } else {
            v = i + 1 < argc ? argv[i + 1] : NULL;
            if (!v || strncmp(a, "--", 2) != 0) {
                fprintf(stderr, "spillway bench: %s\n", v ? "unexpected argument" : "option needs a value");
                bench_help(stderr);
                return 2;
            }
            i++;
        }
        uint64_t u;
        if (strcmp(a, "--server") == 0 && strchr(v, ',')) {
            server_list = v; /* a cluster: parsed below, once --protocol is known */
            server_set = 1;
        } else if (strcmp(a, "--ring") == 0) {
            ring_list = v;
        } else if (strcmp(a, "--http") == 0 && strchr(v, ',')) {
            http_list = v;
            http_set = 1;
        } else if (strcmp(a, "--server") == 0) {
            server_list = NULL;
            if (spw_httpc_parse_server_tls(v, c.host, sizeof c.host, c.port, sizeof c.port, &c.tls)) {
                fprintf(stderr, "spillway bench: --server takes HOST:PORT, http://HOST:PORT or https://HOST:PORT, "
                                "not '%s'\n", v);
                return 2;
            }
            server_set = 1;
        } else if (strcmp(a, "--token") == 0) {
            token_opt = v;
        } else if (strcmp(a, "--cacert") == 0) {
            if (access(v, R_OK) != 0) {
                fprintf(stderr, "spillway bench: --cacert %s: %s\n", v, strerror(errno));
                return 2;
            }
            c.cacert = v;
        } else if (strcmp(a, "--http") == 0) {
            if (spw_httpc_parse_server_tls(v, c.http_host, sizeof c.http_host, c.http_port, sizeof c.http_port,
                                           &c.http_tls)) {
                fprintf(stderr, "spillway bench: --http takes HOST:PORT, http://HOST:PORT or https://HOST:PORT, "
                                "not '%s'\n", v);
                return 2;
            }
            http_set = 1;
        } else if (strcmp(a, "--protocol") == 0) {
            if (strcmp(v, "http") == 0) {
                c.bin = 0;
            } else if (strcmp(v, "bin") == 0) {
                c.bin = 1;
            } else {
                fprintf(stderr, "spillway bench: --protocol takes http or bin, not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--stream") == 0) {
            if (!spw__cli_stream_name_ok(v)) {
                fprintf(stderr, "spillway bench: bad stream name '%s'\n", v);
                return 2;
            }
            snprintf(c.stream, sizeof c.stream, "%s", v);
        } else if (strcmp(a, "--ack") == 0) {
            if (strcmp(v, "none") && strcmp(v, "written") && strcmp(v, "fsync") && strcmp(v, "replicated")) {
                fprintf(stderr, "spillway bench: --ack takes none, written, fsync or replicated\n");
                return 2;
            }
            snprintf(c.ack, sizeof c.ack, "%s", v);
        } else if (strcmp(a, "--events") == 0 && !parse_u64(v, 1, 1000000000, &u)) {
            c.events = u;
        } else if (strcmp(a, "--size") == 0 && !parse_u64(v, 1, 1 << 20, &u)) {
            c.size = (uint32_t)u;
        } else if (strcmp(a, "--keys") == 0 && !parse_u64(v, 1, 1u << 31, &u)) {
            c.keys = (uint32_t)u;
        } else if (strcmp(a, "--clients") == 0 && !parse_u64(v, 1, 1024, &u)) {
            c.clients = (uint32_t)u;
        } else if (strcmp(a, "--partitions") == 0 && !parse_u64(v, 1, 4096, &u)) {
            c.partitions = (uint32_t)u;
        } else if (strcmp(a, "--batch") == 0 && !parse_u64(v, 1, 100000, &u)) {
            c.batch = (uint32_t)u;
        } else if (strcmp(a, "--rate") == 0 && !parse_u64(v, 1, 1000000000, &u)) {
            c.rate = (double)u;
        } else if (strcmp(a, "--duration") == 0) {
            if (parse_seconds(v, &c.duration)) {
                fprintf(stderr, "spillway bench: --duration takes seconds from 0.1 to 3600, not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--inflight") == 0 && !parse_u64(v, 1, 100000, &u)) {
            c.inflight = (uint32_t)u;
        } else if (strcmp(a, "--priorities") == 0) {
            if (parse_prios(v, &c)) {
                fprintf(stderr,
                        "spillway bench: --priorities takes up to %d of 0, 1, 2, 3 separated by commas, not '%s'\n",
                        SPW_BENCH_MAX_PRIOS, v);
                return 2;
            }
        } else {
            fprintf(stderr, "spillway bench: bad option or value: %s %s\n", a, v);
            bench_help(stderr);
            return 2;
        }
    }
    int trc = spw__cli_token("bench", token_opt, NULL, &c.token);
    if (trc)
        return trc;
    if (!c.bin && http_set) {
        fprintf(stderr, "spillway bench: --http is for --protocol bin (http uses --server)\n");
        return 2;
    }
    if (c.bin && (c.inflight || c.nprios || c.refusals_ok)) {
        fprintf(stderr, "spillway bench: --inflight, --priorities and --refusals-ok are for --protocol http\n");
        return 2;
    }
    if (c.inflight && !(c.rate > 0)) {
        fprintf(stderr, "spillway bench: --inflight (open loop) needs --rate\n");
        return 2;
    }
    if (c.duration > 0) {
        /* With a rate, the schedule decides the count; without, the clock
         * stops the clients (events is then only a bound). */
        double n = c.rate > 0 ? c.rate * c.duration + 0.5 : 1e9;
        if (n > 1e9) {
            fprintf(stderr, "spillway bench: --rate x --duration is over 1,000,000,000 events\n");
            return 2;
        }
        c.events = n < 1 ? 1 : (uint64_t)n;
    }
    if (c.clients > c.events)
        c.clients = (uint32_t)c.events;
    if (c.inflight && c.clients > c.inflight)
        c.clients = c.inflight;
    /* $SPILLWAY_SERVER: the HTTP address when no flag gives it (docs/api.md
     * "Command line"); the binary protocol's default stays 7701. */
    const char *env = getenv("SPILLWAY_SERVER");
    if (env && env[0] && !c.bin && !server_set && spw_httpc_parse_server(env, c.host, sizeof c.host, c.port, sizeof c.port)) {
        fprintf(stderr, "spillway bench: $SPILLWAY_SERVER takes HOST:PORT or http://HOST:PORT, not '%s'\n", env);
        return 2;
    }
    if (c.bin && !server_set)
        snprintf(c.port, sizeof c.port, "7701");
    if (c.bin && c.tls) {
        fprintf(stderr, "spillway bench: --protocol bin speaks TLS with --cacert FILE; --server takes HOST:PORT\n");
        return 2;
    }
    if (c.cacert && !c.bin && !c.tls) {
        fprintf(stderr, "spillway bench: --cacert with --protocol http needs --server https://HOST:PORT\n");
        return 2;
    }
    if (c.http_tls && !c.cacert) {
        fprintf(stderr, "spillway bench: --http https://... needs --cacert FILE\n");
        return 2;
    }
    if (ring_list && (c.bin || !server_list)) {
        fprintf(stderr, "spillway bench: --ring goes with --protocol http and a --server list of several nodes "
                        "(bin producers place keys by their --server list)\n");
        return 2;
    }
    if (http_list && !server_list) {
        fprintf(stderr, "spillway bench: --http A,B,C goes with --server A,B,C (one HTTP address a node)\n");
        return 2;
    }
    if (server_list) {
        /* A cluster (docs/operations.md "Growing a deployment: adding a node"). */
        if (c.inflight) {
            fprintf(stderr, "spillway bench: --inflight (open loop) takes one --server\n");
            return 2;
        }
        int prc = spw__cli_cluster_parse("bench", server_list, ring_list, &scl);
        if (prc)
            return prc;
        for (uint32_t i = 0; i < scl.n; i++)
            if (c.bin && scl.tls[i]) {
                fprintf(stderr, "spillway bench: --protocol bin speaks TLS with --cacert FILE; --server takes "
                                "HOST:PORT,...\n");
                return 2;
            }
        snprintf(c.host, sizeof c.host, "%s", scl.host[0]);
        snprintf(c.port, sizeof c.port, "%s", scl.port[0]);
        c.tls = scl.tls[0];
        c.cl = &scl;
        if (c.bin) {
            for (uint32_t i = 0; i < scl.n; i++)
                snprintf(bin_servers + strlen(bin_servers), sizeof bin_servers - strlen(bin_servers), "%s%s",
                         i ? "," : "", scl.name[i]);
            c.bin_servers = bin_servers;
            if (http_list) {
                if ((prc = spw__cli_cluster_parse("bench", http_list, NULL, &hcl)))
                    return prc;
                if (hcl.n != scl.n) {
                    fprintf(stderr, "spillway bench: --http names %u nodes, --server %u: one HTTP address a node, "
                                    "in the same order\n", hcl.n, scl.n);
                    return 2;
                }
                snprintf(c.http_host, sizeof c.http_host, "%s", hcl.host[0]);
                snprintf(c.http_port, sizeof c.http_port, "%s", hcl.port[0]);
                c.http_tls = hcl.tls[0];
                c.http_cl = &hcl;
            }
        } else {
            c.http_cl = &scl;
            /* each HTTP client sends the keys of one node (bench_int.h) */
            char k[32];
            for (uint32_t key = 0; key < c.keys; key++) {
                int kl = snprintf(k, sizeof k, "key-%011u", key);
                uint32_t n = spw__cli_cluster_node(&scl, k, (size_t)kl);
                if (c.node_nkeys[n] % 1024 == 0)
                    c.node_keys[n] = spw_xrealloc(c.node_keys[n], (c.node_nkeys[n] + 1024) * sizeof(uint32_t));
                c.node_keys[n][c.node_nkeys[n]++] = key;
            }
            for (uint32_t n = 0; n < scl.n; n++)
                if (c.node_nkeys[n])
                    c.key_nodes[c.nkey_nodes++] = n;
            if (c.clients < c.nkey_nodes) {
                fprintf(stderr, "spillway bench: %u node(s) have keys: give --clients %u or more (a client talks to "
                                "one node)\n", c.nkey_nodes, c.nkey_nodes);
                return 2;
            }
        }
    }
    if (!c.bin) {
        memcpy(c.http_host, c.host, sizeof c.host);
        memcpy(c.http_port, c.port, sizeof c.port);
        c.http_tls = c.tls;
    }

    char out[1024], path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", c.stream);
    char create[64] = "{\"key\":\"/k\"}";
    if (c.partitions)
        snprintf(create, sizeof create, "{\"key\":\"/k\",\"partitions\":%u}", c.partitions);
    c.http_known = !c.bin || http_set;
    /* The stream on every node (one, or each of a cluster's). */
    for (uint32_t ni = 0; ni < (c.http_cl ? c.http_cl->n : 1); ni++) {
        bench_cfg *cc = c.http_cl ? at_node(&c, ni) : &c;
        int st = !c.bin || http_set ? simple_request(cc, "PUT", path, create, out, sizeof out) : 200;
        /* A token without admin may not create: go on if the stream exists. */
        if (st == 403 && (!c.bin || http_set) &&
            simple_request(cc, "GET", path, NULL, out + 512, sizeof out - 512) == 200)
            st = 200;
        if (st < 0) {
            fprintf(stderr, "spillway bench: cannot reach %s:%s%s: %s\n", cc->http_host, cc->http_port,
                    c.bin ? " (HTTP, to create the stream: --http)" : "", out);
            return 1;
        }
        if (st != 200 && st != 201 && st != 409) {
            fprintf(stderr, "spillway bench: creating stream %s: HTTP %d %s\n", c.stream, st, out);
            return 1;
        }
    }

    for (uint32_t ni = 0; c.bin && ni < (c.cl ? c.cl->n : 1); ni++) {
        if (c.cl) {
            snprintf(c.host, sizeof c.host, "%s", c.cl->host[ni]);
            snprintf(c.port, sizeof c.port, "%s", c.cl->port[ni]);
        }
        /* Fail fast when the binary listener is not there (the producers
         * would retry until their delivery timeout), and check that the
         * server behind --server knows the stream created over --http. */
        char server[300];
        snprintf(server, sizeof server, strchr(c.host, ':') ? "[%s]:%s" : "%s:%s", c.host, c.port);
        spillway_client *mc = NULL;
        spillway_metadata *md = NULL;
        int r = c.cacert ? spillway_client_connect_tls(server, 10000, c.cacert, &mc)
                         : spillway_client_connect(server, 10000, &mc);
        if (!r && c.token)
            r = spillway_client_auth(mc, c.token);
        if (!r && !http_set) {
            /* STREAM_CREATE: a stream that exists (identical, or not:
             * 409) is used as it is; a token without admin goes on if
             * the stream exists (the METADATA below says) */
            r = spillway_client_create_stream(mc, c.stream, create, NULL);
            if (r == SPILLWAY_ERR_CONFLICT || r == SPILLWAY_ERR_FORBIDDEN)
                r = 0;
        }
        if (!r)
            r = spillway_client_metadata(mc, c.stream, &md);
        if (r) {
            fprintf(stderr, "spillway bench: binary protocol at %s: %s%s%s\n", server, spillway_errstr(r),
                    mc && spillway_client_last_error(mc)[0] ? ": " : "", mc ? spillway_client_last_error(mc) : "");
            spillway_client_close(mc);
            return 1;
        }
        spillway_metadata_free(md);
        spillway_client_close(mc);
    }

    return bench_run(&c);
}
