/*
 * The `forward` sink: delivers to a stream of another Spillway node over
 * the binary protocol with the C client's producer (include/spillway.h).
 * Options: {"address":"host:port","stream":"NAME","timeout_ms":N,"token":"T",
 * "tls_ca":"FILE"} (stream defaults to the source stream's name,
 * timeout_ms to 10000; the host a name, resolved at each connect, or an
 * IPv4 address; token, when given, is sent as the binary protocol's AUTH
 * on every connection, for a node with a tokens file, and is redacted
 * wherever the definition is shown; tls_ca, when given, makes every
 * connection TLS, the other node's certificate verified against that PEM
 * file of CA certificates — "system" for the system's — and its name
 * against the address's host).
 *
 * One producer per sink, kept across writes, with one batch in flight and
 * stop_on_error, so records arrive in order: when a batch fails, nothing
 * after it is sent (the producer fails the rest of the window unsent), the
 * write reports the prefix before it delivered, and the loop resends from
 * the first undelivered record. A key's later record never reaches the
 * remote before an earlier one that is still to be resent. The record's
 * key and timestamp are kept, so
 * the remote partitions by the same key hash. The producer's id and
 * sequence numbers let the remote drop a batch it stored whose answer was
 * lost, as long as the same producer sends it again (docs/api.md, "forward
 * sink" says what that guarantees). A write sends the records, flushes,
 * and reads the delivery reports: all delivered → OK; a 400 or 413 answer
 * (the remote refuses the record itself: too large, invalid) → REJECT,
 * with the delivered prefix; anything else (connection refused, timeout,
 * 404 missing stream, 401/403, 5xx) → RETRY, the remote may come back.
 * When the sink stops (interrupt, any thread), a write waiting for
 * answers gives up at once (spillway_producer_interrupt) and answers RETRY: what was not reported
 * delivered is sent again after the restart (the remote drops what it
 * already stored only for the same producer, so it may get it twice).
 */
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/opts.h"
#include "sink/sink.h"
#include "spillway.h"

/* A write waits for reports this long at a time, and gives up once the
 * other node has been unreachable for FWD_UNREACHABLE_MS. */
#define FWD_FLUSH_SLICE_MS 100
#define FWD_UNREACHABLE_MS 1000

typedef struct fwd {
    char address[256];
    char stream[129];
    char token[257]; /* "" = none */
    char tls_ca[1024]; /* "" = plain TCP; "system": the system's CAs */
    uint32_t timeout_ms;
    spillway_producer *p;
    pthread_mutex_t mu;
    uint64_t gen; /* reports of earlier writes are ignored */
    int *status;  /* per record of the current write */
    uint32_t n, reported;
    /* between fwd_begin and fwd_end (worker only) */
    uint32_t sent;  /* records handed to the producer */
    int send_err;   /* why the sending stopped before n, or 0 */
    _Atomic int stopping; /* interrupted: writes give up */
} fwd;

static void on_delivery(void *opaque, const spillway_delivery *d)
{
    fwd *f = opaque;
    uintptr_t tag = (uintptr_t)d->opaque;
    pthread_mutex_lock(&f->mu);
    uint64_t gen = tag >> 32;
    uint32_t i = (uint32_t)(tag & 0xffffffffu);
    if (gen == (f->gen & 0xffffffffu) && f->status && i < f->n) {
        f->status[i] = d->status;
        f->reported++;
    }
    pthread_mutex_unlock(&f->mu);
}

static int make_producer(fwd *f)
{
    spillway_producer_config c;
    spillway_producer_config_init(&c);
    c.max_in_flight = 1;
    c.stop_on_error = 1;
    c.linger_ms = 1;
    c.delivery_timeout_ms = f->timeout_ms;
    c.connect_attempts_max = 0; /* a target that is down: timeout_ms decides, as for one that is slow */
    c.backoff_max_ms = 1000;
    c.connect_timeout_ms = f->timeout_ms < 5000 ? f->timeout_ms : 5000;
    c.on_delivery = on_delivery;
    c.opaque = f;
    c.token = f->token[0] ? f->token : NULL;
    c.tls_ca_file = !f->tls_ca[0] ? NULL : strcmp(f->tls_ca, "system") == 0 ? "" : f->tls_ca;
    spillway_producer *p = NULL;
    int r = spillway_producer_new(f->address, &c, &p);
    pthread_mutex_lock(&f->mu);
    f->p = p;
    pthread_mutex_unlock(&f->mu);
    if (r == 0 && atomic_load(&f->stopping))
        spillway_producer_interrupt(p);
    return r;
}

/* The options (docs/api.md "forward sink"): one table, core/opts.h. */
static const spw_opt fwd_opts[] = {
    {.name = "address", .type = SPW_OPT_STR, .off = offsetof(fwd, address), .size = sizeof ((fwd *)0)->address,
     .flags = SPW_OPT_REQUIRED, .must = "\"host:port\"", .help = "\"host:port\" of the other node's binary listener"},
    {.name = "stream", .type = SPW_OPT_STR, .off = offsetof(fwd, stream), .size = sizeof ((fwd *)0)->stream,
     .flags = SPW_OPT_DEF_CTX, .must = "a stream name", .help = "the stream there to append to"},
    {.name = "timeout_ms", .type = SPW_OPT_INT, .off = offsetof(fwd, timeout_ms), .size = 4, .def = 10000,
     .min = 100, .max = 600000, .help = "how long a write may wait for the other node's answer"},
    {.name = "token", .type = SPW_OPT_STR, .off = offsetof(fwd, token), .size = sizeof ((fwd *)0)->token,
     .flags = SPW_OPT_EMPTY_OK, .must = "a token of at most 256 bytes",
     .help = "the bearer token sent to the other node (AUTH), when it has a tokens file"},
    {.name = "tls_ca", .type = SPW_OPT_STR, .off = offsetof(fwd, tls_ca), .size = sizeof ((fwd *)0)->tls_ca,
     .flags = SPW_OPT_EMPTY_OK, .must = "a file name (or \"system\")",
     .help = "speak TLS to the other node, verifying its certificate against this PEM file of CA certificates "
             "(\"system\": the system's) and its name against the address's host; \"\" (the default): plain TCP"},
};

static int fwd_open(const char *sink, const char *stream, const char *options, size_t len, void **st, char *err,
                    size_t cap)
{
    (void)sink;
    fwd *f = spw_xcalloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    const char *bad = NULL;
    if (spw_opts_parse(fwd_opts, sizeof fwd_opts / sizeof fwd_opts[0], "options", "forward sink", options, len,
                       stream, f, NULL, err, cap) < 0) {
        pthread_mutex_destroy(&f->mu);
        spw_free(f);
        return SPW_EINVAL;
    }
    if (!bad && (strchr(f->address, ',') || !strchr(f->address, ':')))
        bad = "options.address must be one \"host:port\"";
    /* the producer checks the address syntax (and resolves nothing yet:
     * connections are lazy), so a bad address fails here, at PUT */
    int mr = bad ? 0 : make_producer(f);
    if (mr == SPILLWAY_ERR_TLS)
        bad = "options.tls_ca: the CA certificates did not load (not a readable PEM file of certificates)";
    else if (mr < 0)
        bad = "options.address is not a valid \"host:port\" (a host name or an IPv4 address, and a port)";
    if (bad) {
        snprintf(err, cap, "%s", bad);
        pthread_mutex_destroy(&f->mu);
        spw_free(f);
        return SPW_EINVAL;
    }
    *st = f;
    return 0;
}

static int is_bad_record(int st) { return st == SPILLWAY_ERR_BAD_REQUEST || st == SPILLWAY_ERR_TOO_LARGE; }

/* Hands the window to the producer (it sends as it goes); fwd_end waits
 * for the remote's answers. */
static int fwd_begin(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                     size_t cap)
{
    fwd *f = st;
    *done = 0;
    if (atomic_load(&f->stopping)) {
        snprintf(err, cap, "the sink is stopping");
        return SPW_SINK_RETRY;
    }
    if (!f->p && make_producer(f) < 0) {
        snprintf(err, cap, "cannot create a producer for %s", f->address);
        return SPW_SINK_RETRY;
    }
    int *status = spw_xmalloc((size_t)n * sizeof *status);
    for (uint32_t i = 0; i < n; i++)
        status[i] = 1; /* not reported */
    pthread_mutex_lock(&f->mu);
    f->gen++;
    f->status = status;
    f->n = n;
    f->reported = 0;
    uint64_t gen = f->gen & 0xffffffffu;
    pthread_mutex_unlock(&f->mu);
    (void)partition;
    int send_err = 0;
    uint32_t sent = 0;
    for (; sent < n; sent++) {
        const spw_sink_rec *r = &recs[sent];
        /* SPILLWAY_ERR_CANCELED once an earlier batch of the window failed */
        int rc = spillway_producer_send(f->p, f->stream, r->key, r->key_len, r->value, r->value_len, r->ts,
                                   SPILLWAY_ACK_LEVEL_DEFAULT, (void *)(uintptr_t)(gen << 32 | sent));
        if (rc < 0) {
            send_err = rc;
            break;
        }
    }
    f->sent = sent;
    f->send_err = send_err;
    return SPW_SINK_OK;
}

static int fwd_end(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                   size_t cap)
{
    fwd *f = st;
    uint32_t sent = f->sent;
    int send_err = f->send_err;
    /* Waits for the reports in slices: while the other node cannot be
     * reached (refused, a name that does not resolve, a failed TLS
     * handshake) for FWD_UNREACHABLE_MS, the write gives up with the
     * producer's reason, so the sink shows "retrying" and that reason at
     * once instead of "running" until the delivery timeout
     * (docs/api.md "forward sink"). fwd_interrupt cuts a slice short. */
    char why[320] = "";
    int fr = -1;
    uint64_t t0 = spw_mono_ms(), limit = (uint64_t)f->timeout_ms + 5000;
    for (;;) {
        fr = spillway_producer_flush(f->p, FWD_FLUSH_SLICE_MS);
        uint64_t waited = spw_mono_ms() - t0;
        if (fr == 0 || atomic_load(&f->stopping) || waited >= limit)
            break;
        if (waited >= FWD_UNREACHABLE_MS && spillway_producer_connect_error(f->p, why, sizeof why) != 0)
            break;
        why[0] = 0;
    }
    pthread_mutex_lock(&f->mu);
    int *status = f->status;
    f->status = NULL;
    f->n = 0;
    pthread_mutex_unlock(&f->mu);
    if (fr < 0) {
        /* Reports still outstanding: start over with a new producer (its
         * close fails what is left; those reports are ignored by gen). */
        pthread_mutex_lock(&f->mu);
        spillway_producer *p = f->p;
        f->p = NULL;
        pthread_mutex_unlock(&f->mu);
        spillway_producer_close(p, 0);
    }
    uint32_t ok = 0;
    while (ok < sent && status[ok] == 0)
        ok++;
    *done = ok;
    (void)partition;
    (void)recs;
    int res;
    if (ok == n) {
        res = SPW_SINK_OK;
    } else if (ok < sent && is_bad_record(status[ok])) {
        snprintf(err, cap, "%s refused the record: %s", f->address, spillway_errstr(status[ok]));
        res = SPW_SINK_REJECT;
    } else {
        int e = ok < sent ? status[ok] : send_err ? send_err : SPILLWAY_ERR_TIMEOUT;
        if (why[0] && (e == 1 || e == SPILLWAY_ERR_TIMEOUT))
            snprintf(err, cap, "forwarding to %s stream %s: %s", f->address, f->stream, why);
        else
            snprintf(err, cap, "forwarding to %s stream %s: %s", f->address, f->stream,
                     e == 1 ? "no delivery report in time" : spillway_errstr(e));
        res = SPW_SINK_RETRY;
    }
    spw_free(status);
    return res;
}


static void fwd_interrupt(void *st)
{
    fwd *f = st;
    atomic_store(&f->stopping, 1);
    pthread_mutex_lock(&f->mu);
    if (f->p)
        spillway_producer_interrupt(f->p);
    pthread_mutex_unlock(&f->mu);
}

static void fwd_close(void *st)
{
    fwd *f = st;
    if (f->p)
        spillway_producer_close(f->p, atomic_load(&f->stopping) ? 0 : 1000);
    pthread_mutex_destroy(&f->mu);
    spw_free(f);
}

const spw_sink_kind spw_sink_kind_forward = {
    .name = "forward",
    .open = fwd_open,
    .opts = fwd_opts,
    .nopts = sizeof fwd_opts / sizeof fwd_opts[0],
    .write_begin = fwd_begin,
    .write_end = fwd_end,
    .position = NULL,
    .commit = NULL,
    .close = fwd_close,
    .interrupt = fwd_interrupt,
};
