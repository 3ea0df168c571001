/*
 * The partition's append path. spw_part_append_batch assigns offsets under
 * p->mu and copies the batch into the fill chain, where the flusher takes
 * it (spw__part_take_fill; spw_part_append_wait lends its batch instead of
 * a copy, and spw_part_append_give gives its heap block, which the chain
 * frees after the write: see append_batch); an append waiting for an ack
 * sits in one of two FIFO rings (written, fsynced) ordered by end offset,
 * completed by the flusher through spw__part_complete, or failed together
 * by spw__part_fail. Contracts: callbacks run on the flusher with no
 * partition lock held; a failed or closing partition refuses appends and
 * gives their budget back.
 */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/invariant.h"
#include "core/id.h"
#include "core/msg.h"
#include "log/log_impl.h"
#include "log/partition_int.h"
#include "os/os.h"

/* ---- waiter rings ---- */

static int ring_push(spw_wring *r, const spw_waiter *w)
{
    if (r->len == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        spw_waiter *v = spw_try_malloc(cap * sizeof *v);
        if (!v)
            return SPW_ENOMEM;
        for (size_t i = 0; i < r->len; i++)
            v[i] = r->v[(r->head + i) % r->cap];
        spw_free(r->v);
        r->v = v;
        r->cap = cap;
        r->head = 0;
    }
    r->v[(r->head + r->len) % r->cap] = *w;
    r->len++;
    return 0;
}

static spw_waiter *ring_front(spw_wring *r) { return r->len ? &r->v[r->head] : NULL; }

static void ring_pop(spw_wring *r)
{
    r->head = (r->head + 1) % r->cap;
    r->len--;
}

/* Moves the waiters of ring with end <= end into log->done_v (flusher-
 * owned), to be called after p->mu is dropped. REQUIRES: p->mu held. */
static size_t take_waiters(spw_part *p, int ring, uint64_t end)
{
    spw_log *log = p->log;
    size_t n = 0;
    spw_wring *r = &p->rings[ring];
    spw_waiter *w;
    while ((w = ring_front(r)) && w->end <= end) {
        if (n == log->done_cap) {
            log->done_cap = log->done_cap ? log->done_cap * 2 : 256;
            log->done_v = spw_xrealloc(log->done_v, log->done_cap * sizeof *log->done_v);
        }
        log->done_v[n++] = *w;
        ring_pop(r);
    }
    return n;
}

static void signal_idle_locked(spw_part *p)
{
    if (p->closing && p->fill.bytes == 0 && p->rings[0].len == 0 && p->rings[1].len == 0)
        pthread_cond_broadcast(&p->idle_cv);
}

uint64_t spw__part_take_fill(spw_part *p, size_t max, int *more)
{
    assert(p->flushing.head == NULL);
    pthread_mutex_lock(&p->mu);
    uint64_t end = p->written_local;
    spw_chunk *c;
    while ((c = p->fill.head) && p->flushing.bytes < max) {
        p->fill.head = c->next;
        if (!p->fill.head)
            p->fill.tail = NULL;
        p->fill.bytes -= c->len;
        c->next = NULL;
        if (p->flushing.tail)
            p->flushing.tail->next = c;
        else
            p->flushing.head = c;
        p->flushing.tail = c;
        p->flushing.bytes += c->len;
        end = c->end_offset;
    }
    *more = p->fill.head != NULL;
    signal_idle_locked(p);
    pthread_mutex_unlock(&p->mu);
    return end;
}

size_t spw__part_complete(spw_part *p, int ring, uint64_t end)
{
    pthread_mutex_lock(&p->mu);
    size_t n = take_waiters(p, ring, end);
    signal_idle_locked(p);
    pthread_mutex_unlock(&p->mu);
    spw_waiter *done = p->log->done_v;
    for (size_t i = 0; i < n; i++)
        done[i].cb(done[i].arg, 0, &done[i].res);
    return n;
}

int spw__part_has_waiters(spw_part *p, int ring, uint64_t end)
{
    pthread_mutex_lock(&p->mu);
    spw_waiter *w = ring_front(&p->rings[ring]);
    int has = w && w->end <= end;
    pthread_mutex_unlock(&p->mu);
    return has;
}

void spw__part_fail(spw_part *p, int err)
{
    pthread_mutex_lock(&p->mu);
    /* A retired partition refused a roll: its pending appends fail with
     * SPW_EDELETED, but nothing failed on the disk (no failed state, no
     * recovery: appends are refused by retired already). */
    if (!p->failed && err != SPW_EDELETED) {
        p->failed = err;
        atomic_store(&p->failed_pub, err);
        atomic_fetch_add(&p->log->nfailed, 1);
        p->recover_at_ms = 0; /* first attempt at the flusher's next recovery pass */
        p->recover_backoff_ms = 0;
        spw_error("partition %s: %s; failing pending appends, partition is read-only until it recovers", p->dir,
                  spw_strerror(err));
    }
    size_t n = take_waiters(p, SPW__RING_WRITTEN, UINT64_MAX);
    size_t n2;
    /* take_waiters appends from index 0: do the two rings one after the other. */
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < n; i++)
        p->log->done_v[i].cb(p->log->done_v[i].arg, err, &p->log->done_v[i].res);
    pthread_mutex_lock(&p->mu);
    n2 = take_waiters(p, SPW__RING_FSYNC, UINT64_MAX);
    spw_chain dropped = p->fill;
    p->fill = (spw_chain){0};
    signal_idle_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (dropped.bytes)
        spw__log_release(p->log, dropped.bytes);
    spw__chain_put(p->log, &dropped);
    for (size_t i = 0; i < n2; i++)
        p->log->done_v[i].cb(p->log->done_v[i].arg, err, &p->log->done_v[i].res);
}

/* ---- append ---- */

/* own: NULL to copy batch into the fill chain, or a chunk whose data is
 * batch (len bytes, none used yet), linked into the fill chain instead of a
 * copy: a lent one (spw_part_append_wait: the batch stays the caller's, who
 * waits for its completion at SPW_ACK_WRITTEN or SPW_ACK_FSYNC; the flusher
 * completes a waiter only after the write of its batch, or, on a failure,
 * with the batch no longer read, written or dropped, so the batch is not
 * touched once the caller has its answer) or a given one
 * (spw_part_append_give: the chain frees it). On an error own is not
 * linked and stays the caller's. */
static int append_batch(spw_part *p, spw_chunk *own, const uint8_t *batch, size_t len, spw_ack ack, int flags,
                        spw_append_cb cb, void *arg, spw_append_result *res)
{
    spw_batch_hdr h;
    if (ack == SPW_ACK_REPLICATED)
        return -ENOTSUP;
    if (ack < SPW_ACK_NONE || ack > SPW_ACK_FSYNC)
        return SPW_EINVAL;
    if (spw_batch_parse(batch, len, &h) != 0 || h.length != len)
        return SPW_EINVAL;
    spw_log *log = p->log;
    if (len > log->cfg.max_pending_bytes)
        return SPW_EMSGSIZE;
    if (atomic_load_explicit(&p->failed_pub, memory_order_relaxed))
        return SPW_EROFS;
    if (atomic_load_explicit(&p->retired, memory_order_relaxed))
        return SPW_EDELETED;
    int r = flags & SPW_APPEND_RESERVED ? 0 : spw__log_reserve(log, len, flags & SPW_APPEND_NOWAIT);
    if (r)
        return r;

    pthread_mutex_lock(&p->mu);
    if (p->failed || p->closing) {
        r = p->failed ? SPW_EROFS : SPW_ECANCELED;
        goto refuse;
    }
    if (atomic_load(&p->retired)) {
        r = SPW_EDELETED;
        goto refuse;
    }
    spw_chunk *t = p->fill.tail;
    if (own) {
        t = own;
    } else if (!t || t->cap - t->len < len) {
        if (!(t = spw__chunk_get(log, len))) {
            r = SPW_ENOMEM;
            goto refuse;
        }
    }
    spw_append_result out = {.base_offset = p->next_offset, .count = h.record_count, .base_id = h.base_id};
    if (ack != SPW_ACK_NONE && cb) {
        spw_waiter w = {.end = p->next_offset + h.record_count, .cb = cb, .arg = arg, .res = out};
        if ((r = ring_push(&p->rings[ack == SPW_ACK_FSYNC ? SPW__RING_FSYNC : SPW__RING_WRITTEN], &w))) {
            if (t != p->fill.tail && !own)
                spw_free(t); /* not linked: a fresh chunk */
            goto refuse;
        }
    }
    if (t != p->fill.tail) {
        if (p->fill.tail)
            p->fill.tail->next = t;
        else
            p->fill.head = t;
        p->fill.tail = t;
    }
    SPW_ASSERT(t->cap - t->len >= len); /* the chunk has room (spw__chunk_get) */
    uint8_t *dst = t->data + t->len;
    if (!own)
        memcpy(dst, batch, len);
    spw_batch_set_base_offset(dst, p->next_offset);
    t->len += len;
    t->end_offset = p->next_offset + h.record_count;
    p->fill.bytes += len;
    p->next_offset += h.record_count;
    pthread_mutex_unlock(&p->mu);

    spw__log_enqueue(log, p);
    if (res)
        *res = out;
    if (ack == SPW_ACK_NONE && cb)
        cb(arg, 0, &out);
    return 0;

refuse:
    pthread_mutex_unlock(&p->mu);
    if (!(flags & SPW_APPEND_RESERVED))
        spw__log_release(log, len);
    return r;
}

int spw_part_append_batch(spw_part *p, const uint8_t *batch, size_t len, spw_ack ack, int flags, spw_append_cb cb,
                          void *arg, spw_append_result *res)
{
    return append_batch(p, NULL, batch, len, ack, flags, cb, arg, res);
}

/* spw_part_append_give's copy: the block freed once appended. */
static int append_copy(spw_part *p, spw_buf *batch, spw_ack ack, int flags, spw_append_cb cb, void *arg,
                       spw_append_result *res)
{
    int r = append_batch(p, NULL, batch->p, batch->len, ack, flags, cb, arg, res);
    if (r == 0)
        spw_buf_fini(batch);
    return r;
}

int spw_part_append_give(spw_part *p, spw_buf *batch, spw_ack ack, int flags, spw_append_cb cb, void *arg,
                         spw_append_result *res)
{
    size_t len = batch->len;
    if (len < SPW_GIVE_MIN)
        return append_copy(p, batch, ack, flags, cb, arg, res);
    /* The chunk's header goes after the batch, aligned, in the same block:
     * one free for both. The block is cut (or, rarely, grown) to fit when
     * its slack is more than an eighth of the batch: the budget counts the
     * batch's bytes, and the block stays allocated until the write. */
    size_t at = (len + _Alignof(spw_chunk) - 1) & ~(size_t)(_Alignof(spw_chunk) - 1);
    size_t need = at + sizeof(spw_chunk);
    if (batch->cap < need || batch->cap - need > len / 8) {
        uint8_t *q = spw_try_realloc(batch->p, need);
        if (q) {
            batch->p = q;
            batch->cap = need;
        }
        if (batch->cap < need) /* out of memory to grow it */
            return append_copy(p, batch, ack, flags, cb, arg, res);
    }
    spw_chunk *c = (spw_chunk *)(batch->p + at);
    *c = (spw_chunk){.data = batch->p, .cap = len, .kind = SPW__CHUNK_GIVEN};
    int r = append_batch(p, c, batch->p, len, ack, flags, cb, arg, res);
    if (r == 0)
        *batch = (spw_buf)SPW_BUF_INIT; /* the log's: freed after the write (spw__chain_put) */
    return r;
}

/* Per-thread encode buffers, freed when the thread exits. */
typedef struct enc_bufs {
    spw_buf enc, scratch;
} enc_bufs;
static pthread_key_t enc_key;
static pthread_once_t enc_once = PTHREAD_ONCE_INIT;

static void enc_free(void *v)
{
    enc_bufs *b = v;
    spw_buf_fini(&b->enc);
    spw_buf_fini(&b->scratch);
    spw_free(b);
}

static void enc_key_init(void) { pthread_key_create(&enc_key, enc_free); }

/* Encodes the records into the calling thread's buffers (b). */
static int encode_tls(spw_part *p, const spw_record *recs, uint32_t n, const spw_batch_opts *o, enc_bufs **out)
{
    pthread_once(&enc_once, enc_key_init);
    enc_bufs *b = pthread_getspecific(enc_key);
    if (!b) {
        b = spw_xcalloc(1, sizeof *b);
        pthread_setspecific(enc_key, b);
    }
    spw_batch_opts opts = o ? *o : (spw_batch_opts){0};
    if (!opts.idgen)
        opts.idgen = &p->log->idgen;
    *out = b;
    return spw_batch_encode(&b->enc, &b->scratch, recs, n, &opts);
}

/* Do not let one huge batch pin its buffer in every thread forever. */
static void tls_trim(enc_bufs *b)
{
    if (b->enc.cap > (8u << 20))
        spw_buf_fini(&b->enc);
    if (b->scratch.cap > (8u << 20))
        spw_buf_fini(&b->scratch);
}

int spw_part_append(spw_part *p, const spw_record *recs, uint32_t n, const spw_batch_opts *o, spw_ack ack, int flags,
                    spw_append_cb cb, void *arg, spw_append_result *res)
{
    enc_bufs *b;
    int r = encode_tls(p, recs, n, o, &b);
    if (r == 0)
        r = append_batch(p, NULL, b->enc.p, b->enc.len, ack, flags, cb, arg, res);
    tls_trim(b);
    return r;
}

/*
 * A semaphore rather than mutex + condvar: the callback runs on the
 * flusher, and a condvar must be signalled under its mutex here (the waiter
 * frees w as soon as it sees done), so the woken waiter often preempted
 * the flusher only to block on that mutex: measured with bench/log_bench.c
 * (16 threads x 1-record ack=fsync appends), 59 futex calls and 36 context
 * switches per flush cycle, against 36 and 29 with the semaphore.
 * sem_post touches the semaphore only through its atomic update before
 * waking (glibc >= 2.21, musl), so the waiter may destroy it as soon as
 * sem_wait returns.
 */
typedef struct sync_wait {
    sem_t sem;
    int status;
    spw_append_result res;
} sync_wait;

static void sync_wait_cb(void *arg, int status, const spw_append_result *r)
{
    sync_wait *w = arg;
    w->status = status;
    w->res = *r;
    sem_post(&w->sem); /* publishes status and res (release) */
}

/* The batch is encoded into the thread's buffer and, for a written or
 * fsync ack, lent to the fill chain rather than copied (append_batch): this
 * thread waits until the flusher is done with it. */
int spw_part_append_wait(spw_part *p, const spw_record *recs, uint32_t n, const spw_batch_opts *o, spw_ack ack,
                         spw_append_result *res)
{
    sync_wait w;
    if (sem_init(&w.sem, 0, 0) != 0)
        return -errno;
    enc_bufs *b;
    int r = encode_tls(p, recs, n, o, &b);
    if (r == 0) {
        /* The lent chunk's header, allocated before the partition's lock. */
        spw_chunk *lent = NULL;
        if (ack == SPW_ACK_WRITTEN || ack == SPW_ACK_FSYNC) {
            if ((lent = spw_try_malloc(sizeof *lent)))
                *lent = (spw_chunk){.data = b->enc.p, .cap = b->enc.len, .kind = SPW__CHUNK_LENT};
            else
                r = SPW_ENOMEM;
        }
        if (r == 0)
            r = append_batch(p, lent, b->enc.p, b->enc.len, ack, 0, sync_wait_cb, &w, NULL);
        if (r)
            spw_free(lent); /* not linked */
    }
    if (r == 0) {
        while (sem_wait(&w.sem) != 0)
            ; /* EINTR */
        r = w.status;
        if (res)
            *res = w.res;
    }
    tls_trim(b);
    sem_destroy(&w.sem);
    return r;
}
