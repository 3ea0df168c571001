/*
 * The producer of the C client library (include/spillway.h,
 * docs/protocol.md): its state, batching, sealing and completion, send,
 * flush and close. The I/O thread that moves its batches is producer_io.c;
 * the structs both share are in client_impl.h.
 *
 * Producer design. Application threads append records to an open batch
 * per (server, stream, ack level) — the batch *is* the PRODUCE frame being
 * built, so a record is copied once. A batch is sealed when it reaches
 * batch_bytes or has lingered linger_ms, and queued on its server. One I/O
 * thread owns every socket: it connects (non-blocking, with exponential
 * backoff after failures), moves queued batches into the socket's output
 * while fewer than max_in_flight are unanswered, reads answers, matches
 * them to batches by request id (answers may come out of order), and
 * runs the delivery callbacks outside the lock.
 *
 * Retries: when a connection is lost, its unanswered batches go back to
 * the front of its queue, in their original order, and are sent again
 * (with new request ids) after reconnecting: at least once. Answers 503
 * and 429 are retried after the server's retry_after_ms (the batch goes
 * back to the front of its queue, holding back the batches behind it);
 * other error answers, 413 over_burst included, fail the batch's records. A record not delivered within
 * delivery_timeout_ms fails with SPILLWAY_ERR_TIMEOUT (checked while queued;
 * a batch already written waits for its answer or the connection's loss).
 * A server whose connect round failed is down (include/spillway.h
 * "Routing"): its keyless batches move to a server that is up (a keyless
 * record may land anywhere), its keyed ones stay (a key has one server),
 * and after connect_attempts_max failed rounds in a row they fail with
 * the connect error instead of waiting out delivery_timeout_ms.
 * With stop_on_error, a failed batch stops the producer (p->stopped): the
 * I/O thread fails every batch not yet written (open or queued) with
 * SPILLWAY_ERR_CANCELED before it writes another, and sends are refused, until
 * a flush returns — so a caller that resends from its first failed record
 * never has later records delivered ahead of it.
 *
 * Sequences: each batch gets its producer id and first sequence at its
 * first send and keeps both for every resend (the server's dedupe key);
 * before a sequence would pass 2^32 - 1 the producer takes a new random
 * producer id and starts at 0 again (client_int.h), so no (id, sequence)
 * is ever used twice.
 *
 * Locking: one mutex protects all producer state; socket calls are
 * non-blocking and made under it; poll(2) and callbacks run without it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spillway.h"
#include "client/client_int.h"
#include "client/client_impl.h"
#include "core/ack.h"
#include "core/clock.h"
#include "core/hash.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/endian.h"
#include "core/error.h"
#include "core/ring.h"
#include "wire/frame.h"

/* The public ack levels are the protocol's (core/ack.h), value for value. */
_Static_assert((int)SPILLWAY_ACK_LEVEL_NONE == (int)SPW_ACK_NONE && (int)SPILLWAY_ACK_LEVEL_WRITTEN == (int)SPW_ACK_WRITTEN &&
                   (int)SPILLWAY_ACK_LEVEL_FSYNC == (int)SPW_ACK_FSYNC &&
                   (int)SPILLWAY_ACK_LEVEL_REPLICATED == (int)SPW_ACK_REPLICATED &&
                   (int)SPILLWAY_ACK_LEVEL_DEFAULT == (int)SPW_ACK_DEFAULT,
               "include/spillway.h's ack levels must equal core/ack.h's");

/* A random producer id, never 0 and never *(uint64_t *)old (if given). */
uint64_t spw__producer_random_id(void *old)
{
    uint64_t id = 0, o = old ? *(uint64_t *)old : 0;
    static _Atomic uint64_t salt;
    while (id == 0 || id == o)
        if (getrandom(&id, sizeof id, 0) != sizeof id)
            id = spw_fmix64((uint64_t)getpid() ^ spw_mono_ms() ^ atomic_fetch_add(&salt, 0x9e3779b97f4a7c15ull));
    return id;
}

int spw__producer_seq_take(uint64_t *pid, uint32_t *next, uint32_t count, uint64_t (*new_id)(void *arg), void *arg,
                           uint64_t *out_pid, uint32_t *out_seq)
{
    int fresh = 0;
    if ((uint64_t)*next + count > UINT32_MAX) {
        uint64_t old = *pid, id = new_id(arg);
        while (id == 0 || id == old)
            id = new_id(arg);
        *pid = id;
        *next = 0;
        fresh = 1;
    }
    *out_pid = *pid;
    *out_seq = *next;
    *next += count;
    return fresh;
}

void spw__producer_wake_io(spillway_producer *p)
{
    char x = 1;
    if (write(p->wake[1], &x, 1) < 0) {
        /* a full pipe already means "wake up" */
    }
}

void spillway_producer_config_init(spillway_producer_config *c)
{
    memset(c, 0, sizeof *c);
    c->linger_ms = 5;
    c->batch_bytes = 256u << 10;
    c->max_in_flight = 16;
    c->buffer_bytes = 64ull << 20;
    c->delivery_timeout_ms = 120000;
    c->backoff_ms = 50;
    c->backoff_max_ms = 2000;
    c->connect_timeout_ms = 5000;
    c->priority = -1;
    c->connect_attempts_max = SPILLWAY_CONNECT_ATTEMPTS_DEFAULT;
}

static void batch_free(batch *b)
{
    spw_buf_fini(&b->frame);
    free(b->opaques);
    free(b);
}

/* ---- completion ---- */

/* Queues b's callbacks (run by run_done outside the lock). REQUIRES: mu. */
void spw__producer_finish(spillway_producer *p, done_item **list, batch *b, int status, uint32_t *parts,
                          uint64_t *offs)
{
    if (status && p->cfg.stop_on_error)
        p->stopped = 1;
    done_item *d = calloc(1, sizeof *d);
    if (!d)
        abort(); /* a callback promised must run: nothing sane is left to do */
    d->b = b;
    d->r.status = status;
    d->r.partitions = parts;
    d->r.offsets = offs;
    d->next = *list;
    *list = d;
}

/* Runs callbacks, then releases what the batches held. REQUIRES: mu not held. */
void spw__producer_run_done(spillway_producer *p, done_item *list)
{
    if (!list)
        return;
    uint64_t recs = 0, bytes = 0;
    for (done_item *d = list; d; d = d->next) {
        batch *b = d->b;
        for (uint32_t i = 0; i < b->count; i++) {
            spillway_delivery dv = {.status = d->r.status,
                               .stream = b->stream,
                               .partition = d->r.partitions ? d->r.partitions[i] : 0,
                               .offset = d->r.offsets ? d->r.offsets[i] : 0,
                               .opaque = b->opaques[i],
                               .server = b->server};
            if (p->cfg.on_delivery)
                p->cfg.on_delivery(p->cfg.opaque, &dv);
        }
        recs += b->count;
        bytes += b->bytes;
    }
    pthread_mutex_lock(&p->mu);
    p->outstanding_records -= recs;
    p->outstanding_bytes -= bytes;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    while (list) {
        done_item *n = list->next;
        free(list->r.partitions);
        free(list->r.offsets);
        batch_free(list->b);
        free(list);
        list = n;
    }
}

/* ---- batches ---- */

void spw__producer_seal(spillway_producer *p, server *s, batch *b)
{
    (void)p;
    batch **pp = &s->open;
    while (*pp && *pp != b)
        pp = &(*pp)->next;
    if (*pp)
        *pp = b->next;
    spw_produce_req_set_count(&b->frame, b->count_at, b->count);
    spw_frame_finish(&b->frame, 0);
    q_push(&s->queue, b);
}

void spw__producer_seal_all(spillway_producer *p)
{
    for (uint32_t i = 0; i < p->nservers; i++)
        while (p->servers[i].open)
            spw__producer_seal(p, &p->servers[i], p->servers[i].open);
}

/* stop_on_error: fails every batch of s not yet written. REQUIRES: mu. */
void spw__producer_cancel_unsent(spillway_producer *p, server *s, done_item **done)
{
    while (s->open)
        spw__producer_seal(p, s, s->open);
    batch *b;
    while ((b = q_pop(&s->queue)))
        spw__producer_finish(p, done, b, SPILLWAY_ERR_CANCELED, NULL, NULL);
}

/* The next server for records without a key: round robin over those not
 * down, or over all when every one is. REQUIRES: mu. */
uint32_t spw__producer_next_up(spillway_producer *p)
{
    for (uint32_t k = 0; k < p->nservers; k++) {
        uint32_t i = p->rr++ % p->nservers;
        if (p->servers[i].failed_rounds == 0)
            return i;
    }
    return p->rr++ % p->nservers;
}

static uint32_t route(spillway_producer *p, const void *key, int32_t key_len)
{
    if (p->nservers == 1)
        return 0;
    if (key_len < 0)
        return spw__producer_next_up(p);
    return spw_ring_shard(&p->ring, key, (size_t)key_len);
}

uint32_t spw__producer_route(spillway_producer *p, const void *key, int32_t key_len)
{
    pthread_mutex_lock(&p->mu);
    uint32_t s = route(p, key, key_len);
    pthread_mutex_unlock(&p->mu);
    return s;
}

uint32_t spw__producer_connect_attempts_max(const spillway_producer *p) { return p->cfg.connect_attempts_max; }

/* Point v of server i on the ring: "host:port#v" (include/spillway.h "Routing"). */
static int server_label(void *arg, uint32_t i, uint32_t v, char *out, size_t cap)
{
    const server *tmp = arg;
    return snprintf(out, cap, "%s#%u", tmp[i].name, v);
}

int spillway_producer_new(const char *servers, const spillway_producer_config *c, spillway_producer **out)
{
    if (!servers || !out)
        return SPILLWAY_ERR_INVALID;
    spillway_producer_config cfg;
    if (c)
        cfg = *c;
    else
        spillway_producer_config_init(&cfg);
    if (cfg.batch_bytes < 1024 || cfg.batch_bytes > (64u << 20) || cfg.max_in_flight == 0 ||
        cfg.buffer_bytes < cfg.batch_bytes || cfg.backoff_ms == 0 || cfg.backoff_max_ms < cfg.backoff_ms)
        return SPILLWAY_ERR_INVALID;
    server tmp[MAX_SERVERS];
    uint32_t n = 0;
    const char *s = servers;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (n == MAX_SERVERS)
            return SPILLWAY_ERR_INVALID;
        memset(&tmp[n], 0, sizeof tmp[n]);
        if (spw__client_parse_hostport(s, len, tmp[n].name, sizeof tmp[n].name, tmp[n].host, &tmp[n].port))
            return SPILLWAY_ERR_INVALID;
        n++;
        if (!comma)
            break;
        s = comma + 1;
    }
    size_t tl = cfg.token ? strlen(cfg.token) : 0;
    if (tl > SPW_AUTH_TOKEN_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spillway_producer *p = calloc(1, sizeof *p);
    if (!p)
        return SPILLWAY_ERR_NOMEM;
    if (tl && !(p->token = strdup(cfg.token))) {
        free(p);
        return SPILLWAY_ERR_NOMEM;
    }
    p->token_len = tl;
    cfg.token = p->token;
    if (cfg.tls_ca_file) {
        if (!(p->tls_ca_file = strdup(cfg.tls_ca_file))) {
            free(p->token);
            free(p);
            return SPILLWAY_ERR_NOMEM;
        }
        cfg.tls_ca_file = p->tls_ca_file;
        if (!(p->tls_ctx = spw__client_tls_ctx(cfg.tls_ca_file))) {
            free(p->tls_ca_file);
            free(p->token);
            free(p);
            return SPILLWAY_ERR_TLS;
        }
    }
    /* The default fails a down server's keyed records only when there are
     * others to keep going: one server rides out a restart up to its
     * delivery timeout, as before. */
    if (cfg.connect_attempts_max == SPILLWAY_CONNECT_ATTEMPTS_DEFAULT)
        cfg.connect_attempts_max = n > 1 ? 8 : 0;
    p->cfg = cfg;
    p->nservers = n;
    p->servers = calloc(n, sizeof *p->servers);
    if (!p->servers || spw_ring_build(&p->ring, n, SPW_RING_CLIENT_VNODES, server_label, tmp) ||
        pipe2(p->wake, O_NONBLOCK | O_CLOEXEC)) {
        free(p->servers);
        spw_ring_free(&p->ring);
        free(p->token);
        spw__client_tls_ctx_free(p->tls_ctx);
        free(p->tls_ca_file);
        free(p);
        return SPILLWAY_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        p->servers[i] = tmp[i];
        p->servers[i].fd = -1;
        p->servers[i].backoff_ms = cfg.backoff_ms;
    }
    p->producer_id = spw__producer_random_id(NULL);
    p->next_id = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->conn_mu, NULL);
    spw_cond_init(&p->cv); /* timed waits: core/clock.h */
    if (pthread_create(&p->th, NULL, spw__producer_main, p)) {
        close(p->wake[0]);
        close(p->wake[1]);
        free(p->servers);
        spw_ring_free(&p->ring);
        free(p->token);
        spw__client_tls_ctx_free(p->tls_ctx);
        free(p->tls_ca_file);
        free(p);
        return SPILLWAY_ERR_NOMEM;
    }
    (void)pthread_setname_np(p->th, "spillway-prod"); /* what top -H and ps -L show */
    *out = p;
    return 0;
}

int spillway_producer_send(spillway_producer *p, const char *stream, const void *key, int32_t key_len, const void *value,
                      size_t value_len, int64_t ts, int ack, void *opaque)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!p || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX || key_len < -1 || (key_len > 0 && !key) ||
        (value_len && !value) || value_len > UINT32_MAX - 64 ||
        !(ack == SPILLWAY_ACK_LEVEL_NONE || ack == SPILLWAY_ACK_LEVEL_WRITTEN || ack == SPILLWAY_ACK_LEVEL_FSYNC ||
          ack == SPILLWAY_ACK_LEVEL_REPLICATED || ack == SPILLWAY_ACK_LEVEL_DEFAULT))
        return SPILLWAY_ERR_INVALID;
    size_t klen = key_len > 0 ? (size_t)key_len : 0;
    size_t rec_size = spw_produce_rec_size(klen, value_len);
    if (rec_size + 64 + sl > SPW_FRAME_MAX_DEFAULT)
        return SPILLWAY_ERR_TOO_LARGE;
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->stopped) {
        pthread_mutex_unlock(&p->mu);
        return SPILLWAY_ERR_CANCELED;
    }
    /* Bounded memory: wait for deliveries to make room. */
    if (p->outstanding_bytes + rec_size > p->cfg.buffer_bytes && p->outstanding_bytes > 0) {
        if (pthread_equal(pthread_self(), p->th)) {
            pthread_mutex_unlock(&p->mu);
            return SPILLWAY_ERR_AGAIN;
        }
        uint64_t dl = spw_mono_ns() + (uint64_t)p->cfg.delivery_timeout_ms * 1000000ull;
        while (p->outstanding_bytes + rec_size > p->cfg.buffer_bytes && p->outstanding_bytes > 0 && !p->stop) {
            spw__producer_seal_all(p);
            spw__producer_wake_io(p);
            if (spw_cond_wait_until(&p->cv, &p->mu, dl) == ETIMEDOUT) {
                pthread_mutex_unlock(&p->mu);
                return SPILLWAY_ERR_TIMEOUT;
            }
        }
        if (p->stop || p->stopped) {
            pthread_mutex_unlock(&p->mu);
            return SPILLWAY_ERR_CANCELED;
        }
    }
    uint32_t si = route(p, key, key_len);
    server *s = &p->servers[si];
    batch *b = s->open;
    uint8_t keyless = key_len < 0;
    while (b && !(b->ack == (uint8_t)ack && b->keyless == keyless && strcmp(b->stream, stream) == 0))
        b = b->next;
    /* A batch that would pass its size with this record is sealed first. */
    if (b && b->count && b->frame.len + rec_size > p->cfg.batch_bytes) {
        spw__producer_seal(p, s, b);
        spw__producer_wake_io(p);
        b = NULL;
    }
    int err = SPILLWAY_ERR_NOMEM;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b)
            goto fail;
        b->server = si;
        memcpy(b->stream, stream, sl + 1);
        b->ack = (uint8_t)ack;
        b->keyless = keyless;
        b->created_ms = spw_mono_ms();
        b->deadline_ms = b->created_ms + p->cfg.delivery_timeout_ms;
        size_t st;
        if (spw_frame_begin(&b->frame, SPW_OP_PRODUCE, 0, 0, &st) ||
            spw_produce_req_begin(&b->frame, stream, sl, (uint8_t)ack,
                                  p->cfg.priority >= 0 && p->cfg.priority <= 3 ? (uint8_t)p->cfg.priority
                                                                               : SPW_WIRE_PRIORITY_DEFAULT,
                                  SPW_PARTITION_ANY, p->producer_id, 0,
                                  &b->count_at)) {
            batch_free(b);
            goto fail;
        }
        b->next = s->open;
        s->open = b;
    }
    if (b->count == b->opaques_cap) {
        uint32_t cap = b->opaques_cap ? b->opaques_cap * 2 : 64;
        void **o = realloc(b->opaques, cap * sizeof *o);
        if (!o)
            goto fail_open;
        b->opaques = o;
        b->opaques_cap = cap;
    }
    spw_frame_rec r = {.attrs = (uint8_t)((key_len >= 0 ? SPW_REC_HAS_KEY : 0) | (ts != SPILLWAY_TS_NOW ? SPW_REC_HAS_TS : 0)),
                       .ts = ts == SPILLWAY_TS_NOW ? 0 : ts,
                       .key = key,
                       .key_len = key_len,
                       .value = value,
                       .value_len = (uint32_t)value_len};
    if (spw_produce_rec_put(&b->frame, &r))
        goto fail_open;
    b->opaques[b->count++] = opaque;
    b->bytes += rec_size;
    p->outstanding_records++;
    p->outstanding_bytes += rec_size;
    if (b->frame.len >= p->cfg.batch_bytes) {
        spw__producer_seal(p, s, b);
        spw__producer_wake_io(p);
    } else if (b->count == 1) {
        spw__producer_wake_io(p); /* start its linger clock in the I/O thread */
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
fail_open:
    if (b->count == 0) {
        batch **pp = &s->open;
        while (*pp && *pp != b)
            pp = &(*pp)->next;
        if (*pp)
            *pp = b->next;
        batch_free(b);
    }
fail:
    pthread_mutex_unlock(&p->mu);
    return err;
}

int spillway_producer_flush(spillway_producer *p, uint32_t timeout_ms)
{
    uint64_t dl = spw_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
    pthread_mutex_lock(&p->mu);
    spw__producer_seal_all(p);
    spw__producer_wake_io(p);
    int r = 0;
    while (p->outstanding_records > 0) {
        if (p->interrupted) {
            pthread_mutex_unlock(&p->mu); /* the stop stays: nothing more is sent out of order */
            return SPILLWAY_ERR_CANCELED;
        }
        if (spw_cond_wait_until(&p->cv, &p->mu, dl) == ETIMEDOUT) {
            r = p->outstanding_records ? SPILLWAY_ERR_TIMEOUT : 0;
            break;
        }
    }
    if (r == 0) /* every record answered: a stop (stop_on_error) ends; a timed-out flush keeps it */
        p->stopped = 0;
    pthread_mutex_unlock(&p->mu);
    return r;
}

void spillway_producer_interrupt(spillway_producer *p)
{
    pthread_mutex_lock(&p->mu);
    p->interrupted = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void spillway_producer_close(spillway_producer *p, uint32_t timeout_ms)
{
    if (!p)
        return;
    spillway_producer_flush(p, timeout_ms);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    spw__producer_wake_io(p);
    pthread_join(p->th, NULL);
    /* What is left fails with SPILLWAY_ERR_CANCELED. */
    done_item *done = NULL;
    pthread_mutex_lock(&p->mu);
    spw__producer_seal_all(p);
    for (uint32_t i = 0; i < p->nservers; i++) {
        server *s = &p->servers[i];
        batch *b;
        q_prepend_all(&s->queue, &s->inflight);
        while ((b = q_pop(&s->queue)))
            spw__producer_finish(p, &done, b, SPILLWAY_ERR_CANCELED, NULL, NULL);
        if (s->ssl)
            spw__client_tls_free(s->ssl);
        s->ssl = NULL;
        if (s->fd >= 0)
            close(s->fd);
        spw_buf_fini(&s->out);
        spw_buf_fini(&s->in);
    }
    pthread_mutex_unlock(&p->mu);
    spw__producer_run_done(p, done);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->conn_mu);
    pthread_cond_destroy(&p->cv);
    free(p->servers);
    spw_ring_free(&p->ring);
    free(p->token);
    spw__client_tls_ctx_free(p->tls_ctx);
    free(p->tls_ca_file);
    free(p);
}

uint64_t spillway_producer_reconnects(spillway_producer *p) { return atomic_load(&p->reconnects); }

int spillway_producer_connect_error(spillway_producer *p, char *why, size_t cap)
{
    int err = 0;
    pthread_mutex_lock(&p->conn_mu);
    for (uint32_t i = 0; i < p->nservers && !err; i++)
        if (p->servers[i].conn_err) {
            err = p->servers[i].conn_err;
            if (why && cap)
                snprintf(why, cap, "%s", p->servers[i].conn_why);
        }
    pthread_mutex_unlock(&p->conn_mu);
    if (!err && why && cap)
        why[0] = 0;
    return err;
}

int spillway_producer_server_error(spillway_producer *p, uint32_t server, char *why, size_t cap)
{
    int err = 0;
    pthread_mutex_lock(&p->conn_mu);
    if (server < p->nservers && p->servers[server].conn_err) {
        err = p->servers[server].conn_err;
        if (why && cap)
            snprintf(why, cap, "%s", p->servers[server].conn_why);
    }
    pthread_mutex_unlock(&p->conn_mu);
    if (!err && why && cap)
        why[0] = 0;
    return err;
}

void spw__producer_set_next_seq(spillway_producer *p, uint32_t seq)
{
    pthread_mutex_lock(&p->mu);
    p->producer_seq = seq;
    pthread_mutex_unlock(&p->mu);
}

uint64_t spw__producer_id(spillway_producer *p)
{
    pthread_mutex_lock(&p->mu);
    uint64_t id = p->producer_id;
    pthread_mutex_unlock(&p->mu);
    return id;
}

void spw__producer_set_id(spillway_producer *p, uint64_t id)
{
    pthread_mutex_lock(&p->mu);
    p->producer_id = id;
    pthread_mutex_unlock(&p->mu);
}
