/*
 * The C client library: see include/spillway.h and docs/protocol.md.
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
 * delivery_timeout_ms fails with SPW_ERR_TIMEOUT (checked while queued;
 * a batch already written waits for its answer or the connection's loss).
 * With stop_on_error, a failed batch stops the producer (p->stopped): the
 * I/O thread fails every batch not yet written (open or queued) with
 * SPW_ERR_CANCELED before it writes another, and sends are refused, until
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

#define MAX_SERVERS 64
#define MAX_ANSWER_BYTES (256u << 20)
#define READ_CHUNK (64u << 10)

void *spw__producer_main(void *arg); /* the I/O thread */

/* A random producer id, never 0 and never *(uint64_t *)old (if given). */
static uint64_t random_id(void *old)
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

const char *spw_errstr(int err)
{
    switch (err) {
    case 0: return "success";
    case SPW_ERR_BAD_REQUEST: return "the server refused the request as malformed (400)";
    case SPW_ERR_UNAUTHORIZED: return "no valid token: the server needs one (401)";
    case SPW_ERR_FORBIDDEN: return "the token is not allowed to do this on this stream (403)";
    case SPW_ERR_NOT_FOUND: return "no such stream or partition (404)";
    case SPW_ERR_REQUEST_TIMEOUT: return "the request did not reach the server in time (408)";
    case SPW_ERR_CONFLICT: return "this producer id and sequence were used for other records (409 sequence_reused)";
    case SPW_ERR_TOO_LARGE: return "record, frame or batch too large (413)";
    case SPW_ERR_OUT_OF_RANGE: return "offset outside the partition (416)";
    case SPW_ERR_RATE_LIMITED: return "rate limited (429)";
    case SPW_ERR_INTERNAL: return "the server failed the request (500)";
    case SPW_ERR_NOT_IMPLEMENTED: return "not implemented by the server (501)";
    case SPW_ERR_OVERLOADED: return "the server is overloaded (503)";
    case SPW_ERR_DISK: return "the server's disk is full or failing (507)";
    case SPW_ERR_PROTOCOL: return "the peer broke the protocol";
    case SPW_ERR_TIMEOUT: return "timed out";
    case SPW_ERR_CANCELED: return "canceled: the producer was closed first";
    default: return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
    }
}

/* ---- hashing (documented in spillway.h) ---- */

/* ---- addresses ---- */

static int parse_hostport(const char *s, size_t n, struct sockaddr_in *sa, char *name, size_t namecap)
{
    if (n == 0 || n >= namecap)
        return SPW_ERR_INVALID;
    memcpy(name, s, n);
    name[n] = 0;
    char *colon = strrchr(name, ':');
    if (!colon || colon == name)
        return SPW_ERR_INVALID;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535 || colon[1] == 0)
        return SPW_ERR_INVALID;
    char host[256];
    size_t hl = (size_t)(colon - name);
    if (hl >= sizeof host)
        return SPW_ERR_INVALID;
    memcpy(host, name, hl);
    host[hl] = 0;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return SPW_ERR_INVALID;
    return 0;
}

/* ---- producer state ---- */

typedef struct batch {
    struct batch *next;
    uint32_t server;
    char stream[SPW_STREAM_NAME_WIRE_MAX + 1];
    uint8_t ack;
    spw_buf frame; /* header + PRODUCE body being built */
    size_t count_at;
    uint32_t count;
    void **opaques;
    uint32_t opaques_cap;
    uint64_t bytes;       /* what this batch counts against buffer_bytes */
    uint64_t created_ms;  /* for linger */
    uint64_t deadline_ms; /* delivery timeout of its first record */
    uint64_t not_before_ms;
    uint64_t request_id;
    int has_seq;  /* pid and seq assigned at the first send, kept by every resend (dedupe) */
    uint64_t pid;
    uint32_t seq;
} batch;

typedef struct bqueue {
    batch *head, *tail;
    uint32_t n;
} bqueue;

static void q_push(bqueue *q, batch *b)
{
    b->next = NULL;
    if (q->tail)
        q->tail->next = b;
    else
        q->head = b;
    q->tail = b;
    q->n++;
}

static void q_push_front(bqueue *q, batch *b)
{
    b->next = q->head;
    q->head = b;
    if (!q->tail)
        q->tail = b;
    q->n++;
}

static batch *q_pop(bqueue *q)
{
    batch *b = q->head;
    if (b) {
        q->head = b->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        b->next = NULL;
    }
    return b;
}

/* Moves all of src in front of dst, keeping src's order. */
static void q_prepend_all(bqueue *dst, bqueue *src)
{
    if (!src->head)
        return;
    src->tail->next = dst->head;
    dst->head = src->head;
    if (!dst->tail)
        dst->tail = src->tail;
    dst->n += src->n;
    src->head = src->tail = NULL;
    src->n = 0;
}

typedef struct server {
    char name[300];
    struct sockaddr_in sa;
    int fd;
    int connecting;  /* non-blocking connect in progress */
    int ever_connected;
    uint64_t connect_started_ms;
    uint64_t next_connect_ms;
    uint32_t backoff_ms;
    batch *open; /* open batches for this server (few: per stream and ack) */
    bqueue queue;    /* sealed, waiting to be sent */
    bqueue inflight; /* written (or in out), waiting for an answer */
    spw_buf out;
    size_t out_off;
    spw_buf in;
    uint64_t auth_id; /* request id of this connection's AUTH, 0 before it is sent */
} server;

struct spw_producer {
    spw_producer_config cfg; /* cfg.token points at token below */
    char *token;
    size_t token_len;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* outstanding changed */
    pthread_t th;
    int wake[2];
    int stop;
    server *servers;
    uint32_t nservers;
    spw_ring ring; /* servers by key: core/ring.h */
    uint32_t rr;
    uint64_t next_id;
    uint64_t producer_id;
    uint32_t producer_seq; /* next record sequence number (all servers) */
    uint64_t outstanding_records, outstanding_bytes;
    int stopped; /* stop_on_error: a batch failed, nothing more is written */
    _Atomic uint64_t reconnects;
    batch *done_head; /* finished batches, callbacks pending (I/O thread) */
};

/* A finished batch carries its results until its callbacks run. */
typedef struct result {
    int status;
    uint32_t *partitions; /* per record, or NULL on error */
    uint64_t *offsets;
} result;

typedef struct done_item {
    struct done_item *next;
    batch *b;
    result r;
} done_item;

static void wake_io(spw_producer *p)
{
    char x = 1;
    if (write(p->wake[1], &x, 1) < 0) {
        /* a full pipe already means "wake up" */
    }
}

void spw_producer_config_init(spw_producer_config *c)
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
}

static void batch_free(batch *b)
{
    spw_buf_fini(&b->frame);
    free(b->opaques);
    free(b);
}

/* ---- completion ---- */

/* Queues b's callbacks (run by run_done outside the lock). REQUIRES: mu. */
static void finish(spw_producer *p, done_item **list, batch *b, int status, uint32_t *parts, uint64_t *offs)
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
static void run_done(spw_producer *p, done_item *list)
{
    if (!list)
        return;
    uint64_t recs = 0, bytes = 0;
    for (done_item *d = list; d; d = d->next) {
        batch *b = d->b;
        for (uint32_t i = 0; i < b->count; i++) {
            spw_delivery dv = {.status = d->r.status,
                               .stream = b->stream,
                               .partition = d->r.partitions ? d->r.partitions[i] : 0,
                               .offset = d->r.offsets ? d->r.offsets[i] : 0,
                               .opaque = b->opaques[i]};
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

static void seal(spw_producer *p, server *s, batch *b)
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

static void seal_all(spw_producer *p)
{
    for (uint32_t i = 0; i < p->nservers; i++)
        while (p->servers[i].open)
            seal(p, &p->servers[i], p->servers[i].open);
}

/* stop_on_error: fails every batch of s not yet written. REQUIRES: mu. */
static void cancel_unsent(spw_producer *p, server *s, done_item **done)
{
    while (s->open)
        seal(p, s, s->open);
    batch *b;
    while ((b = q_pop(&s->queue)))
        finish(p, done, b, SPW_ERR_CANCELED, NULL, NULL);
}

static uint32_t route(spw_producer *p, const void *key, int32_t key_len)
{
    if (key_len < 0 || p->nservers == 1)
        return p->nservers == 1 ? 0 : p->rr++ % p->nservers;
    return spw_ring_shard(&p->ring, key, (size_t)key_len);
}

uint32_t spw__producer_route(spw_producer *p, const void *key, int32_t key_len)
{
    pthread_mutex_lock(&p->mu);
    uint32_t s = route(p, key, key_len);
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* Point v of server i on the ring: "host:port#v" (include/spillway.h "Routing"). */
static int server_label(void *arg, uint32_t i, uint32_t v, char *out, size_t cap)
{
    const server *tmp = arg;
    return snprintf(out, cap, "%s#%u", tmp[i].name, v);
}

int spw_producer_new(const char *servers, const spw_producer_config *c, spw_producer **out)
{
    if (!servers || !out)
        return SPW_ERR_INVALID;
    spw_producer_config cfg;
    if (c)
        cfg = *c;
    else
        spw_producer_config_init(&cfg);
    if (cfg.batch_bytes < 1024 || cfg.batch_bytes > (64u << 20) || cfg.max_in_flight == 0 ||
        cfg.buffer_bytes < cfg.batch_bytes || cfg.backoff_ms == 0 || cfg.backoff_max_ms < cfg.backoff_ms)
        return SPW_ERR_INVALID;
    server tmp[MAX_SERVERS];
    uint32_t n = 0;
    const char *s = servers;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (n == MAX_SERVERS)
            return SPW_ERR_INVALID;
        memset(&tmp[n], 0, sizeof tmp[n]);
        if (parse_hostport(s, len, &tmp[n].sa, tmp[n].name, sizeof tmp[n].name))
            return SPW_ERR_INVALID;
        n++;
        if (!comma)
            break;
        s = comma + 1;
    }
    size_t tl = cfg.token ? strlen(cfg.token) : 0;
    if (tl > SPW_AUTH_TOKEN_WIRE_MAX)
        return SPW_ERR_INVALID;
    spw_producer *p = calloc(1, sizeof *p);
    if (!p)
        return SPW_ERR_NOMEM;
    if (tl && !(p->token = strdup(cfg.token))) {
        free(p);
        return SPW_ERR_NOMEM;
    }
    p->token_len = tl;
    cfg.token = p->token;
    p->cfg = cfg;
    p->nservers = n;
    p->servers = calloc(n, sizeof *p->servers);
    if (!p->servers || spw_ring_build(&p->ring, n, SPW_RING_CLIENT_VNODES, server_label, tmp) ||
        pipe2(p->wake, O_NONBLOCK | O_CLOEXEC)) {
        free(p->servers);
        spw_ring_free(&p->ring);
        free(p->token);
        free(p);
        return SPW_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        p->servers[i] = tmp[i];
        p->servers[i].fd = -1;
        p->servers[i].backoff_ms = cfg.backoff_ms;
    }
    p->producer_id = random_id(NULL);
    p->next_id = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->th, NULL, spw__producer_main, p)) {
        close(p->wake[0]);
        close(p->wake[1]);
        free(p->servers);
        spw_ring_free(&p->ring);
        free(p->token);
        free(p);
        return SPW_ERR_NOMEM;
    }
    *out = p;
    return 0;
}

int spw_producer_send(spw_producer *p, const char *stream, const void *key, int32_t key_len, const void *value,
                      size_t value_len, int64_t ts, int ack, void *opaque)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!p || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX || key_len < -1 || (key_len > 0 && !key) ||
        (value_len && !value) || value_len > UINT32_MAX - 64 ||
        !(ack == SPW_ACK_LEVEL_NONE || ack == SPW_ACK_LEVEL_WRITTEN || ack == SPW_ACK_LEVEL_FSYNC ||
          ack == SPW_ACK_LEVEL_REPLICATED || ack == SPW_ACK_LEVEL_DEFAULT))
        return SPW_ERR_INVALID;
    size_t klen = key_len > 0 ? (size_t)key_len : 0;
    size_t rec_size = spw_produce_rec_size(klen, value_len);
    if (rec_size + 64 + sl > SPW_FRAME_MAX_DEFAULT)
        return SPW_ERR_TOO_LARGE;
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->stopped) {
        pthread_mutex_unlock(&p->mu);
        return SPW_ERR_CANCELED;
    }
    /* Bounded memory: wait for deliveries to make room. */
    if (p->outstanding_bytes + rec_size > p->cfg.buffer_bytes && p->outstanding_bytes > 0) {
        if (pthread_equal(pthread_self(), p->th)) {
            pthread_mutex_unlock(&p->mu);
            return SPW_ERR_AGAIN;
        }
        struct timespec dl = spw_deadline(CLOCK_REALTIME, (uint64_t)p->cfg.delivery_timeout_ms * 1000000ull);
        while (p->outstanding_bytes + rec_size > p->cfg.buffer_bytes && p->outstanding_bytes > 0 && !p->stop) {
            seal_all(p);
            wake_io(p);
            if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) == ETIMEDOUT) {
                pthread_mutex_unlock(&p->mu);
                return SPW_ERR_TIMEOUT;
            }
        }
        if (p->stop || p->stopped) {
            pthread_mutex_unlock(&p->mu);
            return SPW_ERR_CANCELED;
        }
    }
    uint32_t si = route(p, key, key_len);
    server *s = &p->servers[si];
    batch *b = s->open;
    while (b && !(b->ack == (uint8_t)ack && strcmp(b->stream, stream) == 0))
        b = b->next;
    /* A batch that would pass its size with this record is sealed first. */
    if (b && b->count && b->frame.len + rec_size > p->cfg.batch_bytes) {
        seal(p, s, b);
        wake_io(p);
        b = NULL;
    }
    int err = SPW_ERR_NOMEM;
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b)
            goto fail;
        b->server = si;
        memcpy(b->stream, stream, sl + 1);
        b->ack = (uint8_t)ack;
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
    spw_frame_rec r = {.attrs = (uint8_t)((key_len >= 0 ? SPW_REC_HAS_KEY : 0) | (ts != SPW_TS_NOW ? SPW_REC_HAS_TS : 0)),
                       .ts = ts == SPW_TS_NOW ? 0 : ts,
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
        seal(p, s, b);
        wake_io(p);
    } else if (b->count == 1) {
        wake_io(p); /* start its linger clock in the I/O thread */
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

/* ---- I/O thread ---- */

static void srv_disconnect(spw_producer *p, server *s, uint64_t now)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->connecting = 0;
    s->out.len = s->out_off = 0;
    s->in.len = 0;
    /* Unanswered batches go first again, in order. */
    q_prepend_all(&s->queue, &s->inflight);
    s->next_connect_ms = now + s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 > p->cfg.backoff_max_ms ? p->cfg.backoff_max_ms : s->backoff_ms * 2;
}

/*
 * The connection is up: count a reconnect, and put AUTH first in its
 * output when there is a token. The server handles frames in order, so
 * the PRODUCEs written after it run authenticated without waiting for
 * its answer; if the token is refused they are answered 401 one by one.
 */
static void srv_connected(spw_producer *p, server *s, uint64_t now)
{
    s->connecting = 0;
    if (s->ever_connected)
        atomic_fetch_add(&p->reconnects, 1);
    s->ever_connected = 1;
    s->auth_id = 0;
    if (!p->token_len)
        return;
    size_t st;
    uint64_t id = p->next_id++;
    if (spw_frame_begin(&s->out, SPW_OP_AUTH, 0, id, &st) || spw_auth_req_encode(&s->out, p->token, p->token_len)) {
        srv_disconnect(p, s, now);
        return;
    }
    spw_frame_finish(&s->out, st);
    s->auth_id = id;
}

static void srv_connect(spw_producer *p, server *s, uint64_t now)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s->next_connect_ms = now + s->backoff_ms;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    s->connect_started_ms = now;
    if (connect(fd, (struct sockaddr *)&s->sa, sizeof s->sa) == 0) {
        srv_connected(p, s, now);
    } else if (errno == EINPROGRESS) {
        s->connecting = 1;
    } else {
        srv_disconnect(p, s, now);
    }
}

/* Moves queued batches into out while the in-flight window allows. */
static void srv_fill(spw_producer *p, server *s, uint64_t now)
{
    while (!p->stopped && s->queue.head && s->inflight.n < p->cfg.max_in_flight &&
           s->queue.head->not_before_ms <= now) {
        batch *b = q_pop(&s->queue);
        b->request_id = p->next_id++;
        spw_put64(b->frame.p + 8, b->request_id);
        /* The sequence of the first record, numbered per producer and
         * fixed at the first send: a resend carries the same producer id
         * and sequence, which the server recognises (docs/protocol.md). */
        if (!b->has_seq) {
            spw__producer_seq_take(&p->producer_id, &p->producer_seq, b->count, random_id, &p->producer_id,
                                   &b->pid, &b->seq);
            b->has_seq = 1;
        }
        size_t seq_at = 16 + 2 + strlen(b->stream) + 1 + 1 + 2 + 4 + 8;
        spw_put64(b->frame.p + seq_at - 8, b->pid);
        spw_put32(b->frame.p + seq_at, b->seq);
        if (spw_buf_reserve(&s->out, s->out.len + b->frame.len)) {
            q_push_front(&s->queue, b);
            return;
        }
        memcpy(s->out.p + s->out.len, b->frame.p, b->frame.len);
        s->out.len += b->frame.len;
        q_push(&s->inflight, b);
    }
}

static void srv_write(spw_producer *p, server *s, uint64_t now)
{
    while (s->out_off < s->out.len) {
        ssize_t w = send(s->fd, s->out.p + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                srv_disconnect(p, s, now);
            return;
        }
        s->out_off += (size_t)w;
    }
    s->out.len = s->out_off = 0;
}

/* Handles one answer. Returns 0, or -1 if the connection must be dropped. */
static int srv_answer(spw_producer *p, server *s, const spw_frame_hdr *h, const uint8_t *body, size_t len,
                      done_item **done, uint64_t now)
{
    if (h->opcode == SPW_OP_AUTH && s->auth_id && h->request_id == s->auth_id && (h->flags & SPW_FLAG_RESPONSE)) {
        /* Nothing to do either way: refused, the PRODUCEs behind it come
         * back 401 and fail their records with it. */
        uint16_t st;
        const uint8_t *rest;
        size_t rl;
        spw_frame_error e;
        const char *why;
        return spw_answer_decode(body, len, &st, &rest, &rl, &e, &why) ? -1 : 0;
    }
    batch *b = s->inflight.head, *prev = NULL;
    while (b && b->request_id != h->request_id) {
        prev = b;
        b = b->next;
    }
    if (!b || h->opcode != SPW_OP_PRODUCE || !(h->flags & SPW_FLAG_RESPONSE))
        return -1; /* not ours: the server closes after such errors anyway */
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    if (spw_answer_decode(body, len, &st, &rest, &rl, &e, &why))
        return -1;
    spw_produce_resp pr;
    if (st == 0 && (spw_produce_resp_decode(rest, rl, &pr, &why) || pr.nrecords != b->count))
        return -1;
    /* Unlink from in-flight. */
    if (prev)
        prev->next = b->next;
    else
        s->inflight.head = b->next;
    if (s->inflight.tail == b)
        s->inflight.tail = prev;
    s->inflight.n--;
    b->next = NULL;
    if (st == SPW_ST_OVERLOADED || st == SPW_ST_RATE_LIMITED) {
        if (now + e.retry_after_ms < b->deadline_ms) {
            /* +1: spw_mono_ms() truncates, so this waits at least retry_after_ms
             * of real time and the retry finds what the server promised. */
            b->not_before_ms = now + (e.retry_after_ms ? e.retry_after_ms + 1 : p->cfg.backoff_ms);
            q_push_front(&s->queue, b);
            return 0;
        }
        finish(p, done, b, SPW_ERR_TIMEOUT, NULL, NULL);
        return 0;
    }
    if (st) {
        finish(p, done, b, -(int)st, NULL, NULL);
        return 0;
    }
    uint32_t *parts = malloc(b->count * sizeof *parts);
    uint64_t *offs = malloc(b->count * sizeof *offs);
    uint64_t *next = malloc((pr.nslots ? pr.nslots : 1) * sizeof *next);
    if (!parts || !offs || !next)
        abort();
    for (uint32_t k = 0; k < pr.nslots; k++) {
        spw_produce_slot sl;
        spw_produce_resp_slot(&pr, k, &sl);
        next[k] = sl.first_offset;
    }
    for (uint32_t i = 0; i < b->count; i++) {
        parts[i] = spw_produce_resp_part(&pr, i);
        for (uint32_t k = 0; k < pr.nslots; k++) {
            spw_produce_slot sl;
            spw_produce_resp_slot(&pr, k, &sl);
            if (sl.partition == parts[i]) {
                offs[i] = next[k]++;
                break;
            }
        }
    }
    free(next);
    s->backoff_ms = p->cfg.backoff_ms; /* the server works: reset the backoff */
    finish(p, done, b, 0, parts, offs);
    return 0;
}

static void srv_read(spw_producer *p, server *s, done_item **done, uint64_t now)
{
    for (int rounds = 0; rounds < 16; rounds++) {
        if (spw_buf_reserve(&s->in, s->in.len + READ_CHUNK)) {
            srv_disconnect(p, s, now);
            return;
        }
        ssize_t n = recv(s->fd, s->in.p + s->in.len, READ_CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            srv_disconnect(p, s, now);
            return;
        }
        s->in.len += (size_t)n;
        size_t off = 0;
        for (;;) {
            spw_frame_hdr h;
            int r = spw_frame_hdr_decode(s->in.p + off, s->in.len - off, MAX_ANSWER_BYTES, &h);
            if (r == SPW_ETRUNC)
                break;
            if (r) {
                srv_disconnect(p, s, now);
                return;
            }
            if (s->in.len - off < 4 + (size_t)h.length)
                break;
            if (srv_answer(p, s, &h, s->in.p + off + 16, h.length - 12, done, now)) {
                srv_disconnect(p, s, now);
                return;
            }
            off += 4 + (size_t)h.length;
        }
        memmove(s->in.p, s->in.p + off, s->in.len - off);
        s->in.len -= off;
        if ((size_t)n < READ_CHUNK)
            break;
    }
}

/* Fails queued batches past their delivery deadline. */
static void expire(spw_producer *p, server *s, done_item **done, uint64_t now)
{
    bqueue keep = {0};
    batch *b;
    while ((b = q_pop(&s->queue))) {
        if (now >= b->deadline_ms)
            finish(p, done, b, SPW_ERR_TIMEOUT, NULL, NULL);
        else
            q_push(&keep, b);
    }
    s->queue = keep;
}

void *spw__producer_main(void *arg)
{
    spw_producer *p = arg;
    struct pollfd pfd[MAX_SERVERS + 1];
    int map[MAX_SERVERS + 1];
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        uint64_t now = spw_mono_ms();
        done_item *done = NULL;
        int timeout = 1000;
        for (uint32_t i = 0; i < p->nservers; i++) {
            server *s = &p->servers[i];
            /* linger */
            for (batch *b = s->open, *nx; b; b = nx) {
                nx = b->next;
                if (now >= b->created_ms + p->cfg.linger_ms)
                    seal(p, s, b);
                else if ((int)(b->created_ms + p->cfg.linger_ms - now) < timeout)
                    timeout = (int)(b->created_ms + p->cfg.linger_ms - now);
            }
            expire(p, s, &done, now);
            if (p->stopped)
                cancel_unsent(p, s, &done);
            if (s->fd < 0 && (s->queue.head || s->inflight.head)) {
                if (now >= s->next_connect_ms)
                    srv_connect(p, s, now);
                else if ((int)(s->next_connect_ms - now) < timeout)
                    timeout = (int)(s->next_connect_ms - now);
            }
            if (s->fd >= 0 && s->connecting && now - s->connect_started_ms > p->cfg.connect_timeout_ms)
                srv_disconnect(p, s, now);
            if (s->fd >= 0 && !s->connecting) {
                srv_fill(p, s, now);
                srv_write(p, s, now);
            }
            if (s->queue.head && s->queue.head->not_before_ms > now &&
                (int)(s->queue.head->not_before_ms - now) < timeout)
                timeout = (int)(s->queue.head->not_before_ms - now);
            if (s->queue.head && s->queue.head->deadline_ms > now &&
                (int)(s->queue.head->deadline_ms - now) < timeout)
                timeout = (int)(s->queue.head->deadline_ms - now);
        }
        int n = 0;
        pfd[n] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        map[n++] = -1;
        for (uint32_t i = 0; i < p->nservers; i++) {
            server *s = &p->servers[i];
            if (s->fd < 0)
                continue;
            short ev = s->connecting ? POLLOUT : POLLIN;
            if (!s->connecting && s->out_off < s->out.len)
                ev |= POLLOUT;
            pfd[n] = (struct pollfd){.fd = s->fd, .events = ev};
            map[n++] = (int)i;
        }
        pthread_mutex_unlock(&p->mu);
        run_done(p, done);
        done = NULL;
        poll(pfd, (nfds_t)n, timeout < 0 ? 0 : timeout);
        pthread_mutex_lock(&p->mu);
        now = spw_mono_ms();
        if (pfd[0].revents & POLLIN) {
            char buf[256];
            while (read(p->wake[0], buf, sizeof buf) > 0) {
            }
        }
        for (int k = 1; k < n; k++) {
            server *s = &p->servers[map[k]];
            if (s->fd != pfd[k].fd || !pfd[k].revents)
                continue;
            if (s->connecting) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    srv_disconnect(p, s, now);
                    continue;
                }
                srv_connected(p, s, now);
                continue;
            }
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
                srv_read(p, s, &done, now);
            if (s->fd >= 0 && (pfd[k].revents & POLLOUT))
                srv_write(p, s, now);
        }
        if (done) {
            pthread_mutex_unlock(&p->mu);
            run_done(p, done);
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int spw_producer_flush(spw_producer *p, uint32_t timeout_ms)
{
    struct timespec dl = spw_deadline(CLOCK_REALTIME, (uint64_t)timeout_ms * 1000000ull);
    pthread_mutex_lock(&p->mu);
    seal_all(p);
    wake_io(p);
    int r = 0;
    while (p->outstanding_records > 0) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &dl) == ETIMEDOUT) {
            r = p->outstanding_records ? SPW_ERR_TIMEOUT : 0;
            break;
        }
    }
    p->stopped = 0;
    pthread_mutex_unlock(&p->mu);
    return r;
}

void spw_producer_close(spw_producer *p, uint32_t timeout_ms)
{
    if (!p)
        return;
    spw_producer_flush(p, timeout_ms);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    wake_io(p);
    pthread_join(p->th, NULL);
    /* What is left fails with SPW_ERR_CANCELED. */
    done_item *done = NULL;
    pthread_mutex_lock(&p->mu);
    seal_all(p);
    for (uint32_t i = 0; i < p->nservers; i++) {
        server *s = &p->servers[i];
        batch *b;
        q_prepend_all(&s->queue, &s->inflight);
        while ((b = q_pop(&s->queue)))
            finish(p, &done, b, SPW_ERR_CANCELED, NULL, NULL);
        if (s->fd >= 0)
            close(s->fd);
        spw_buf_fini(&s->out);
        spw_buf_fini(&s->in);
    }
    pthread_mutex_unlock(&p->mu);
    run_done(p, done);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->servers);
    spw_ring_free(&p->ring);
    free(p->token);
    free(p);
}

uint64_t spw_producer_reconnects(spw_producer *p) { return atomic_load(&p->reconnects); }

/* ---- synchronous client ---- */

struct spw_client {
    int fd;
    uint32_t timeout_ms;
    uint64_t next_id;
    char last_error[1100];
    uint64_t resume_offset; /* the last error answer's next_offset, 0 if none */
};

struct spw_fetch_result {
    uint8_t *frame;
    spw_fetch_resp resp;
    size_t count;
    spw_fetched *recs;
};

struct spw_metadata {
    uint8_t *frame;
    size_t count;
    spw_stream_info *streams;
    char **names;
    uint64_t *offsets;
};

int spw_client_connect(const char *server, uint32_t timeout_ms, spw_client **out)
{
    struct sockaddr_in sa;
    char name[300];
    if (!server || !out || parse_hostport(server, strlen(server), &sa, name, sizeof name))
        return SPW_ERR_INVALID;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno != EINPROGRESS) {
            int e = -errno;
            close(fd);
            return e;
        }
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int r = poll(&pf, 1, (int)timeout_ms);
        int err = 0;
        socklen_t el = sizeof err;
        if (r == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (r != 1 || err) {
            close(fd);
            return r == 1 ? -err : SPW_ERR_TIMEOUT;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    spw_client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return SPW_ERR_NOMEM;
    }
    c->fd = fd;
    c->timeout_ms = timeout_ms ? timeout_ms : 30000;
    c->next_id = 1;
    *out = c;
    return 0;
}

void spw_client_close(spw_client *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c);
}

const char *spw_client_last_error(spw_client *c) { return c->last_error; }

uint64_t spw_client_resume_offset(spw_client *c) { return c->resume_offset; }

static int roundtrip(spw_client *c, uint8_t op, const spw_buf *body, uint8_t **frame, const uint8_t **rest,
                     size_t *rest_len);

int spw_client_auth(spw_client *c, const char *token)
{
    size_t tl = token ? strlen(token) : 0;
    if (!c || tl == 0 || tl > SPW_AUTH_TOKEN_WIRE_MAX)
        return SPW_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    if (spw_auth_req_encode(&body, token, tl)) {
        spw_buf_fini(&body);
        return SPW_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_AUTH, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    const char *tenant, *why;
    uint16_t n;
    r = spw_auth_resp_decode(rest, rl, &tenant, &n, &why) ? SPW_ERR_PROTOCOL : 0;
    free(frame);
    return r;
}

static int io_wait(spw_client *c, short ev, uint64_t deadline)
{
    uint64_t now = spw_mono_ms();
    if (now >= deadline)
        return SPW_ERR_TIMEOUT;
    struct pollfd pf = {.fd = c->fd, .events = ev};
    int r = poll(&pf, 1, (int)(deadline - now));
    return r == 1 ? 0 : r == 0 ? SPW_ERR_TIMEOUT : -errno;
}

/*
 * Sends body as opcode and reads the answer (one request in flight, so
 * the next frame is ours). On 0, *frame (malloc'ed, caller frees) holds the
 * answer frame and rest/rest_len the OK body after the status.
 */
static int roundtrip(spw_client *c, uint8_t op, const spw_buf *body, uint8_t **frame, const uint8_t **rest,
                     size_t *rest_len)
{
    c->last_error[0] = 0;
    c->resume_offset = 0;
    uint64_t deadline = spw_mono_ms() + c->timeout_ms;
    spw_buf f = SPW_BUF_INIT;
    size_t st;
    uint64_t id = c->next_id++;
    if (spw_frame_begin(&f, op, 0, id, &st) || spw_buf_reserve(&f, f.len + body->len)) {
        spw_buf_fini(&f);
        return SPW_ERR_NOMEM;
    }
    memcpy(f.p + f.len, body->p, body->len);
    f.len += body->len;
    spw_frame_finish(&f, st);
    size_t off = 0;
    int r = 0;
    while (off < f.len && r == 0) {
        ssize_t w = send(c->fd, f.p + off, f.len - off, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno == EAGAIN)
            r = io_wait(c, POLLOUT, deadline);
        else if (w < 0 && errno != EINTR)
            r = -errno;
    }
    spw_buf_fini(&f);
    if (r)
        return r;
    uint8_t hdr[16];
    size_t have = 0, need = 16;
    uint8_t *buf = hdr;
    spw_frame_hdr h = {0};
    while (have < need) {
        ssize_t n = recv(c->fd, buf + have, need - have, 0);
        if (n > 0) {
            have += (size_t)n;
            if (buf == hdr && have == 16) {
                if (spw_frame_hdr_decode(hdr, 16, MAX_ANSWER_BYTES, &h) || !(h.flags & SPW_FLAG_RESPONSE))
                    return SPW_ERR_PROTOCOL;
                buf = malloc(4 + (size_t)h.length);
                if (!buf)
                    return SPW_ERR_NOMEM;
                memcpy(buf, hdr, 16);
                need = 4 + (size_t)h.length;
            }
            continue;
        }
        if (n == 0)
            r = SPW_ERR_PROTOCOL; /* closed mid-answer */
        else if (errno == EAGAIN)
            r = io_wait(c, POLLIN, deadline);
        else if (errno != EINTR)
            r = -errno;
        if (r) {
            if (buf != hdr)
                free(buf);
            return r == SPW_ERR_PROTOCOL && have == 0 ? -ECONNRESET : r;
        }
    }
    uint16_t status;
    spw_frame_error e;
    const char *why;
    if (h.request_id != id || h.opcode != op ||
        spw_answer_decode(buf + 16, need - 16, &status, rest, rest_len, &e, &why)) {
        free(buf);
        return SPW_ERR_PROTOCOL;
    }
    if (status) {
        snprintf(c->last_error, sizeof c->last_error, "%.*s: %.*s", e.code_len, e.code, e.msg_len, e.msg);
        c->resume_offset = e.has_next_offset ? e.next_offset : 0;
        free(buf);
        return -(int)status;
    }
    *frame = buf;
    return 0;
}

int spw_client_fetch(spw_client *c, const char *stream, uint32_t partition, uint64_t offset, uint32_t max_bytes,
                     spw_fetch_result **out)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!c || !out || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX)
        return SPW_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    spw_fetch_req q = {.stream = stream, .stream_len = (uint16_t)sl, .partition = partition, .offset = offset,
                       .max_bytes = max_bytes, .mode = SPW_FETCH_RECORDS};
    if (spw_fetch_req_encode(&body, &q)) {
        spw_buf_fini(&body);
        return SPW_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_FETCH, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    spw_fetch_result *res = calloc(1, sizeof *res);
    const char *why;
    if (!res || spw_fetch_resp_decode(rest, rl, &res->resp, &why) || res->resp.mode != SPW_FETCH_RECORDS) {
        free(res);
        free(frame);
        return res ? SPW_ERR_PROTOCOL : SPW_ERR_NOMEM;
    }
    res->frame = frame;
    res->count = res->resp.count;
    res->recs = calloc(res->count ? res->count : 1, sizeof *res->recs);
    if (!res->recs) {
        free(frame);
        free(res);
        return SPW_ERR_NOMEM;
    }
    spw_fetch_iter it;
    spw_fetch_rec fr;
    spw_fetch_iter_init(&it, &res->resp);
    for (size_t i = 0; i < res->count && spw_fetch_iter_next(&it, &fr); i++)
        res->recs[i] = (spw_fetched){fr.offset, fr.id, fr.ts, fr.key, fr.key_len, fr.value, fr.value_len};
    *out = res;
    return 0;
}

size_t spw_fetch_count(const spw_fetch_result *r) { return r->count; }
void spw_fetch_get(const spw_fetch_result *r, size_t i, spw_fetched *out) { *out = r->recs[i]; }
uint64_t spw_fetch_next_offset(const spw_fetch_result *r) { return r->resp.next_offset; }
uint64_t spw_fetch_end_offset(const spw_fetch_result *r) { return r->resp.end_offset; }

void spw_fetch_free(spw_fetch_result *r)
{
    if (!r)
        return;
    free(r->recs);
    free(r->frame);
    free(r);
}

int spw_client_metadata(spw_client *c, const char *stream, spw_metadata **out)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!c || !out || sl > SPW_STREAM_NAME_WIRE_MAX)
        return SPW_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    if (spw_metadata_req_encode(&body, stream ? stream : "", sl)) {
        spw_buf_fini(&body);
        return SPW_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_METADATA, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    spw_metadata_resp mr;
    const char *why;
    if (spw_metadata_resp_decode(rest, rl, &mr, &why)) {
        free(frame);
        return SPW_ERR_PROTOCOL;
    }
    spw_metadata *m = calloc(1, sizeof *m);
    size_t total_parts = 0;
    spw_metadata_resp scan = mr;
    spw_meta_stream ms;
    while (spw_metadata_resp_next(&scan, &ms))
        total_parts += ms.partitions;
    if (m) {
        m->count = mr.nstreams;
        m->streams = calloc(m->count ? m->count : 1, sizeof *m->streams);
        m->names = calloc(m->count ? m->count : 1, sizeof *m->names);
        m->offsets = calloc(total_parts ? total_parts * 3 : 1, sizeof *m->offsets);
    }
    if (!m || !m->streams || !m->names || !m->offsets) {
        spw_metadata_free(m);
        free(frame);
        return SPW_ERR_NOMEM;
    }
    m->frame = frame;
    size_t at = 0;
    for (size_t i = 0; i < m->count && spw_metadata_resp_next(&mr, &ms); i++) {
        m->names[i] = malloc((size_t)ms.name_len + 1);
        if (!m->names[i]) {
            spw_metadata_free(m);
            return SPW_ERR_NOMEM;
        }
        memcpy(m->names[i], ms.name, ms.name_len);
        m->names[i][ms.name_len] = 0;
        spw_stream_info *si = &m->streams[i];
        si->name = m->names[i];
        si->partitions = ms.partitions;
        si->format_bytes = ms.format_bytes;
        si->ack = ms.ack;
        uint64_t *so = m->offsets + at * 3;
        si->start_offsets = so;
        si->end_offsets = so + ms.partitions;
        si->durable_offsets = so + 2 * (size_t)ms.partitions;
        for (uint32_t k = 0; k < ms.partitions; k++) {
            spw_meta_part mp;
            spw_meta_part_get(&ms, k, &mp);
            so[k] = mp.start_offset;
            so[ms.partitions + k] = mp.end_offset;
            so[2 * (size_t)ms.partitions + k] = mp.durable_offset;
        }
        at += ms.partitions;
    }
    *out = m;
    return 0;
}

size_t spw_metadata_count(const spw_metadata *m) { return m->count; }

int spw_metadata_stream(const spw_metadata *m, size_t i, spw_stream_info *out)
{
    if (i >= m->count)
        return SPW_ERR_INVALID;
    *out = m->streams[i];
    return 0;
}

void spw_metadata_free(spw_metadata *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->names && i < m->count; i++)
        free(m->names[i]);
    free(m->names);
    free(m->streams);
    free(m->offsets);
    free(m->frame);
    free(m);
}

void spw__producer_set_next_seq(spw_producer *p, uint32_t seq)
{
    pthread_mutex_lock(&p->mu);
    p->producer_seq = seq;
    pthread_mutex_unlock(&p->mu);
}

uint64_t spw__producer_id(spw_producer *p)
{
    pthread_mutex_lock(&p->mu);
    uint64_t id = p->producer_id;
    pthread_mutex_unlock(&p->mu);
    return id;
}
