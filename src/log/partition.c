/*
 * A partition: a directory of segments, its recovery, the append path
 * (offsets assigned under a short lock, batch copied into the fill buffer),
 * the write-out the flusher calls (rolls, index entries, one pwrite per
 * segment touched) and reads by offset and time, and retention.
 * See docs/architecture.md for the flush cycle and the lock order.
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
    if (!p->failed) {
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

int spw_part_append_batch(spw_part *p, const uint8_t *batch, size_t len, spw_ack ack, int flags, spw_append_cb cb,
                          void *arg, spw_append_result *res)
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
    int r = flags & SPW_APPEND_RESERVED ? 0 : spw__log_reserve(log, len, flags & SPW_APPEND_NOWAIT);
    if (r)
        return r;

    pthread_mutex_lock(&p->mu);
    if (p->failed || p->closing) {
        r = p->failed ? SPW_EROFS : SPW_ECANCELED;
        goto refuse;
    }
    spw_chunk *t = p->fill.tail;
    if (!t || t->cap - t->len < len) {
        if (!(t = spw__chunk_get(log, len))) {
            r = SPW_ENOMEM;
            goto refuse;
        }
    }
    spw_append_result out = {.base_offset = p->next_offset, .count = h.record_count, .base_id = h.base_id};
    if (ack != SPW_ACK_NONE && cb) {
        spw_waiter w = {.end = p->next_offset + h.record_count, .cb = cb, .arg = arg, .res = out};
        if ((r = ring_push(&p->rings[ack == SPW_ACK_FSYNC ? SPW__RING_FSYNC : SPW__RING_WRITTEN], &w)))
            goto refuse;
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

int spw_part_append(spw_part *p, const spw_record *recs, uint32_t n, const spw_batch_opts *o, spw_ack ack, int flags,
                    spw_append_cb cb, void *arg, spw_append_result *res)
{
    pthread_once(&enc_once, enc_key_init);
    enc_bufs *b = pthread_getspecific(enc_key);
    if (!b) {
        b = spw_xcalloc(1, sizeof *b);
        pthread_setspecific(enc_key, b);
    }
    spw_buf *enc = &b->enc, *scratch = &b->scratch;
    spw_batch_opts opts = o ? *o : (spw_batch_opts){0};
    if (!opts.idgen)
        opts.idgen = &p->log->idgen;
    int r = spw_batch_encode(enc, scratch, recs, n, &opts);
    if (r)
        return r;
    r = spw_part_append_batch(p, enc->p, enc->len, ack, flags, cb, arg, res);
    /* Do not let one huge batch pin its buffer in every thread forever. */
    if (enc->cap > (8u << 20))
        spw_buf_fini(enc);
    if (scratch->cap > (8u << 20))
        spw_buf_fini(scratch);
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

int spw_part_append_wait(spw_part *p, const spw_record *recs, uint32_t n, const spw_batch_opts *o, spw_ack ack,
                         spw_append_result *res)
{
    sync_wait w;
    if (sem_init(&w.sem, 0, 0) != 0)
        return -errno;
    int r = spw_part_append(p, recs, n, o, ack, 0, sync_wait_cb, &w, NULL);
    if (r == 0) {
        while (sem_wait(&w.sem) != 0)
            ; /* EINTR */
        r = w.status;
        if (res)
            *res = w.res;
    }
    sem_destroy(&w.sem);
    return r;
}

/* ---- segments array ---- */

static void segs_push(spw_part *p, spw_segment *s)
{
    if (p->nsegs == p->segs_cap) {
        p->segs_cap = p->segs_cap ? p->segs_cap * 2 : 8;
        p->segs = spw_xrealloc(p->segs, p->segs_cap * sizeof *p->segs);
    }
    p->segs[p->nsegs++] = s;
}

/* Index of the segment holding offset. REQUIRES: seg_lock held, nsegs > 0. */
static size_t segs_find(spw_part *p, uint64_t offset)
{
    size_t lo = 0, hi = p->nsegs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->segs[mid]->base_offset <= offset)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* ---- write-out (flusher) ---- */

/* Adds [data, data + len) to the iovec list, merging with the previous
 * entry when contiguous. */
static void iov_add(spw_part *p, int *cnt, uint8_t *data, size_t len)
{
    if (*cnt > 0) {
        struct iovec *last = &p->iov[*cnt - 1];
        if ((uint8_t *)last->iov_base + last->iov_len == data) {
            last->iov_len += len;
            return;
        }
    }
    if ((size_t)*cnt == p->iov_cap) {
        p->iov_cap = p->iov_cap ? p->iov_cap * 2 : 16;
        p->iov = spw_xrealloc(p->iov, p->iov_cap * sizeof *p->iov);
    }
    p->iov[(*cnt)++] = (struct iovec){.iov_base = data, .iov_len = len};
}

/*
 * Zeros written ahead of small appends. On ext4 (and most file systems) an
 * fdatasync after an append that grows the file must commit the new size
 * through the journal; an fdatasync after overwriting blocks the file
 * already has only flushes data. So when a write is small — latency-bound
 * group commits, where the fsync is the cost — the same pwritev also writes
 * zeros up to PREALLOC_STEP ahead, once per step; the next few hundred
 * cycles then overwrite in place. Large writes are bandwidth-bound and get
 * no zeros (they would only double the bytes). The zeros past the logical
 * end are cut at roll and close; after a crash recovery cuts them like any
 * torn tail. Measured here: docs/architecture.md, "Measured facts".
 */
#define PREALLOC_SMALL_RUN (64u << 10)
#define PREALLOC_STEP (1u << 20)
static const uint8_t zeros[PREALLOC_STEP];

/* Writes the iovecs collected for segment s (len bytes), then the pending
 * index entries, and publishes the new size. */
static int write_run(spw_part *p, spw_segment *s, int iovcnt, size_t len, uint64_t end_offset, int64_t max_ts)
{
    uint64_t size = atomic_load_explicit(&s->size, memory_order_relaxed);
    uint64_t alloc = s->alloc_end;
    if (len < PREALLOC_SMALL_RUN && size + len > s->alloc_end && size + len + PREALLOC_STEP <= p->cfg.segment_bytes) {
        alloc = size + len + PREALLOC_STEP;
        int cnt = iovcnt;
        iov_add(p, &cnt, (uint8_t *)zeros, PREALLOC_STEP);
        iovcnt = cnt;
    }
    int r = spw_os_pwritev_all(s->fd, p->iov, iovcnt, (off_t)size);
    if (r < 0) {
        /* Take back whatever part of the run landed, best effort: the
         * partition is failed either way and recovery will look again. */
        spw_os.ftruncate(s->fd, (off_t)size);
        return r;
    }
    uint32_t n_idx = (uint32_t)(p->idx_pending.len / SPW_IDX_ENTRY_LEN);
    if (n_idx) {
        uint32_t count = atomic_load_explicit(&s->idx_count, memory_order_relaxed);
        r = spw_os_pwrite_all(s->idx_fd, p->idx_pending.p, p->idx_pending.len, (off_t)count * SPW_IDX_ENTRY_LEN);
        if (r < 0)
            return r;
        p->idx_pending.len = 0;
    }
    s->synced = 0;
    if (alloc > s->alloc_end)
        s->alloc_end = alloc;
    if (size + len > s->alloc_end)
        s->alloc_end = size + len;
    atomic_fetch_add_explicit(&p->log->st_writes, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->log->st_bytes, len, memory_order_relaxed);
    spw__log_disk_add(p->log, (int64_t)len);
    atomic_store_explicit(&s->size, size + len, memory_order_release);
    atomic_store_explicit(&s->end_offset, end_offset, memory_order_release);
    if (max_ts > atomic_load_explicit(&s->max_ts, memory_order_relaxed))
        atomic_store_explicit(&s->max_ts, max_ts, memory_order_release);
    atomic_store_explicit(&s->idx_count, atomic_load_explicit(&s->idx_count, memory_order_relaxed) + n_idx,
                          memory_order_release);
    atomic_store_explicit(&s->mtime_ms, spw_wall_ms(), memory_order_relaxed);
    return 0;
}

/* Cuts zeros written ahead, so a closed segment is exactly its batches. */
static int seg_trim(spw_segment *s)
{
    uint64_t size = atomic_load(&s->size);
    if (s->alloc_end <= size)
        return 0;
    int r = spw_os.ftruncate(s->fd, (off_t)size);
    if (r == 0) {
        s->alloc_end = size;
        s->synced = 0;
        r = spw_os.fsync(s->fd);
    }
    return r;
}

static int seg_sync(spw_segment *s)
{
    int r = seg_trim(s);
    if (r < 0)
        return r;
    if (s->synced)
        return 0;
    r = spw_os.fdatasync(s->fd);
    if (r == 0)
        r = spw_os.fdatasync(s->idx_fd);
    if (r == 0)
        s->synced = 1;
    return r;
}

/* ---- recovery point ---- */

/* Writes the recovery point when it differs from what the file holds.
 * REQUIRES: the checkpoint thread with p busy, or p quiesced (log_impl.h).
 * A failure is logged and left for the next attempt: an older recovery
 * point stays true. */
void spw__part_rp_store(spw_part *p, uint64_t base, uint64_t pos, uint64_t offset)
{
    spw_rp rp = {.base = base, .pos = pos, .offset = offset};
    if (p->rp_valid && p->rp_base == rp.base && p->rp_pos == rp.pos && p->rp_offset == rp.offset)
        return;
    int r = spw_rp_store(p->dir, &rp);
    if (r < 0) {
        spw_warn("partition %s: writing the recovery point: %s (the previous one stays in force)", p->dir,
                 spw_strerror(r));
        return;
    }
    p->rp_base = rp.base;
    p->rp_pos = rp.pos;
    p->rp_offset = rp.offset;
    p->rp_valid = 1;
}

/* The active segment's sync_pos/sync_offset, written now. REQUIRES: the
 * flusher, or p not live; waits for the checkpoint thread to leave p. */
static void rp_write(spw_part *p, int64_t now_ms)
{
    spw__ckpt_quiesce(p->log, p);
    p->rp_written_ms = now_ms;
    spw__part_rp_store(p, p->active->base_offset, p->sync_pos, p->sync_offset);
}

static int64_t mono_ms(void) { return (int64_t)spw_mono_ms(); }

/* Flusher, after an fdatasync: the recovery point moves lazily, written by
 * the checkpoint thread so its syncs never hold up a flush cycle. */
void spw__part_checkpoint(spw_part *p, int64_t now_ms)
{
    if (p->failed || (p->rp_written_ms && now_ms - p->rp_written_ms < SPW__RP_INTERVAL_MS))
        return;
    p->rp_written_ms = now_ms;
    spw__ckpt_post(p->log, p, p->active->base_offset, p->sync_pos, p->sync_offset);
}

/* Opens the new segment at base. A roll that failed after creating the
 * file (its directory fsync failed, and so did the unlink) leaves it empty:
 * take that one over. */
static int seg_create(spw_part *p, uint64_t base, spw_segment **out)
{
    int r = spw_seg_open(p->dir, base, 1, out);
    if (r != -EEXIST)
        return r;
    if ((r = spw_seg_open(p->dir, base, 0, out)) < 0)
        return r;
    off_t sz = spw_os.size((*out)->fd);
    if (sz != 0)
        r = sz < 0 ? (int)sz : -EEXIST; /* real data: leave it to recovery at the next start */
    if (r == 0 && (r = spw_os.ftruncate((*out)->idx_fd, 0)) == 0)
        r = spw_os_fsync_dir(p->dir);
    if (r < 0) {
        spw_seg_close(*out);
        *out = NULL;
        return r;
    }
    spw_info("partition %s: reusing the empty segment %020" PRIu64 " left by a failed roll", p->dir, base);
    return 0;
}

static int roll(spw_part *p, uint64_t base)
{
    /* Every segment but the newest is whole and durable: recovery relies on it. */
    int r = seg_sync(p->active);
    if (r < 0)
        return r;
    p->sync_pos = atomic_load_explicit(&p->active->size, memory_order_relaxed);
    p->sync_offset = atomic_load_explicit(&p->active->end_offset, memory_order_relaxed);
    spw_segment *s;
    if ((r = seg_create(p, base, &s)) < 0)
        return r;
    pthread_rwlock_wrlock(&p->seg_lock);
    segs_push(p, s);
    pthread_rwlock_unlock(&p->seg_lock);
    p->active = s;
    p->sync_pos = 0;
    p->sync_offset = base;
    p->rp_written_ms = mono_ms();
    spw__ckpt_post(p->log, p, base, 0, base); /* off the flusher, as a checkpoint */
    return 0;
}

static void note_index(spw_part *p, spw_segment *s, const spw_batch_hdr *h, uint64_t pos)
{
    spw_idx_entry e;
    if (spw_seg_index_note(s, h, pos, p->cfg.index_interval_bytes, &e)) {
        spw_buf *b = &p->idx_pending;
        if (spw_buf_reserve(b, b->len + SPW_IDX_ENTRY_LEN) == 0) {
            spw_idx_encode(b->p + b->len, &e);
            b->len += SPW_IDX_ENTRY_LEN;
        }
        /* On ENOMEM the entry is skipped: the index is sparse anyway. */
    }
}

int spw__part_write(spw_part *p, spw_chain *batches)
{
    spw_segment *s = p->active;
    uint64_t seg_pos = atomic_load_explicit(&s->size, memory_order_relaxed);
    uint64_t end_offset = atomic_load_explicit(&s->end_offset, memory_order_relaxed);
    int64_t max_ts = INT64_MIN;
    int64_t now = spw_wall_ms();
    int iovcnt = 0, r;
    size_t run = 0; /* bytes collected for s */
    for (spw_chunk *c = batches->head; c; c = c->next) {
        size_t off = 0;
        while (off < c->len) {
            spw_batch_hdr h;
            r = spw_batch_parse(c->data + off, c->len - off, &h);
            assert(r == 0 && h.length <= c->len - off);
            if (r)
                return SPW_ECORRUPT;
            int full = seg_pos + h.length > p->cfg.segment_bytes;
            int old = now - s->created_ms >= p->cfg.segment_ms;
            if (seg_pos > 0 && (full || old)) {
                if (run && (r = write_run(p, s, iovcnt, run, end_offset, max_ts)))
                    return r;
                if ((r = roll(p, h.base_offset)))
                    return r;
                s = p->active;
                seg_pos = 0;
                iovcnt = 0;
                run = 0;
                max_ts = INT64_MIN;
            }
            note_index(p, s, &h, seg_pos);
            atomic_fetch_add_explicit(&p->log->st_batches, 1, memory_order_relaxed);
            iov_add(p, &iovcnt, c->data + off, h.length);
            run += h.length;
            seg_pos += h.length;
            end_offset = spw_batch_next_offset(&h);
            if (h.max_ts > max_ts)
                max_ts = h.max_ts;
            off += h.length;
        }
    }
    if (run && (r = write_run(p, s, iovcnt, run, end_offset, max_ts)))
        return r;
    return 0;
}

/* ---- recovery ---- */

typedef struct rec_ctx {
    spw_part *p;
    spw_segment *s;
    uint64_t last_pos;  /* position of the last good batch (UINT64_MAX: none) */
    uint64_t last_base; /* and its base offset */
} rec_ctx;

static int rec_on_batch(void *arg, const spw_batch_hdr *h, uint64_t pos)
{
    rec_ctx *c = arg;
    note_index(c->p, c->s, h, pos);
    c->last_pos = pos;
    c->last_base = h->base_offset;
    return 0;
}

/* Reads idx entries [0, n) into a malloc'ed array; *n is lowered to what
 * is readable and sane (strictly increasing, inside the file). An index
 * larger than the segment could need (one entry per batch, each batch at
 * least a header long) is not read at all: *implausible is set and *n is 0. */
static spw_idx_entry *load_index(spw_segment *s, uint64_t file_size, uint32_t *n, int *implausible)
{
    off_t isz = spw_os.size(s->idx_fd);
    uint64_t max_entries = file_size / SPW_BATCH_HEADER_LEN + 1;
    uint32_t cnt = isz > 0 ? (uint32_t)((uint64_t)isz / SPW_IDX_ENTRY_LEN) : 0;
    *implausible = isz > 0 && (uint64_t)isz / SPW_IDX_ENTRY_LEN > max_entries;
    if (*implausible)
        cnt = 0;
    spw_idx_entry *v = spw_xmalloc((cnt ? cnt : 1) * sizeof *v);
    uint8_t *raw = spw_xmalloc(cnt ? (size_t)cnt * SPW_IDX_ENTRY_LEN : 1);
    ssize_t got = cnt ? spw_os_pread_full(s->idx_fd, raw, (size_t)cnt * SPW_IDX_ENTRY_LEN, 0) : 0;
    if (got < (ssize_t)cnt * SPW_IDX_ENTRY_LEN)
        cnt = got > 0 ? (uint32_t)(got / SPW_IDX_ENTRY_LEN) : 0;
    uint32_t good = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        spw_idx_decode(raw + (size_t)i * SPW_IDX_ENTRY_LEN, &v[i]);
        if (v[i].position >= file_size)
            break;
        if (i > 0 && (v[i].rel_offset <= v[i - 1].rel_offset || v[i].position <= v[i - 1].position ||
                      v[i].max_ts_before < v[i - 1].max_ts_before))
            break;
        good++;
    }
    spw_free(raw);
    *n = good;
    return v;
}

/* Does a batch header at pos carry base offset `expect`? */
static int header_matches(int fd, uint64_t pos, uint64_t file_size, uint64_t expect)
{
    uint8_t hb[SPW_BATCH_HEADER_LEN];
    spw_batch_hdr h;
    if (pos + SPW_BATCH_HEADER_LEN > file_size)
        return 0;
    if (spw_os_pread_full(fd, hb, sizeof hb, (off_t)pos) != (ssize_t)sizeof hb)
        return 0;
    return spw_batch_parse(hb, sizeof hb, &h) == 0 && h.base_offset == expect && pos + h.length <= file_size;
}

static int flush_idx_pending(spw_part *p, spw_segment *s)
{
    if (!p->idx_pending.len)
        return 0;
    uint32_t count = atomic_load(&s->idx_count);
    int r = spw_os_pwrite_all(s->idx_fd, p->idx_pending.p, p->idx_pending.len, (off_t)count * SPW_IDX_ENTRY_LEN);
    if (r == 0)
        atomic_store(&s->idx_count, count + (uint32_t)(p->idx_pending.len / SPW_IDX_ENTRY_LEN));
    p->idx_pending.len = 0;
    return r;
}

/* Makes s's .idx exactly the entries in idx_pending (built by a walk of the
 * whole segment), writing only when the file differs; *rebuilt when it did. */
static int idx_replace(spw_part *p, spw_segment *s, int *rebuilt)
{
    size_t len = p->idx_pending.len;
    off_t isz = spw_os.size(s->idx_fd);
    if (isz < 0)
        return (int)isz;
    int same = (uint64_t)isz == len;
    if (same && len) {
        uint8_t *old = spw_try_malloc(len);
        same = old && spw_os_pread_full(s->idx_fd, old, len, 0) == (ssize_t)len &&
               memcmp(old, p->idx_pending.p, len) == 0;
        spw_free(old);
    }
    int r = 0;
    if (!same) {
        *rebuilt = 1;
        r = spw_os.ftruncate(s->idx_fd, 0);
        if (r == 0 && len)
            r = spw_os_pwrite_all(s->idx_fd, p->idx_pending.p, len, 0);
    }
    atomic_store(&s->idx_count, r == 0 ? (uint32_t)(len / SPW_IDX_ENTRY_LEN) : 0);
    p->idx_pending.len = 0;
    return r;
}

/* How many bytes at the end of [from, size) are zero. */
static uint64_t zero_tail(int fd, uint64_t from, uint64_t size)
{
    uint8_t b[4096];
    uint64_t end = size;
    while (end > from) {
        size_t n = end - from < sizeof b ? (size_t)(end - from) : sizeof b;
        if (spw_os_pread_full(fd, b, n, (off_t)(end - n)) != (ssize_t)n)
            break;
        size_t k = n;
        while (k > 0 && b[k - 1] == 0)
            k--;
        if (k > 0)
            return size - (end - n + k);
        end -= n;
    }
    return size - end;
}

/* Is there a whole batch with base offset expect and a good CRC at pos? */
static int batch_valid_at(int fd, uint64_t pos, uint64_t file_size, uint64_t expect, spw_buf *buf)
{
    spw_batch_hdr h;
    if (!header_matches(fd, pos, file_size, expect))
        return 0;
    uint8_t hb[SPW_BATCH_HEADER_LEN];
    if (spw_os_pread_full(fd, hb, sizeof hb, (off_t)pos) != (ssize_t)sizeof hb || spw_batch_parse(hb, sizeof hb, &h))
        return 0;
    if (spw_buf_reserve(buf, h.length) || spw_os_pread_full(fd, buf->p, h.length, (off_t)pos) != (ssize_t)h.length)
        return 0;
    return spw_batch_verify(buf->p, &h) == 0;
}

/*
 * The end of the damaged range starting at bad (where offset `expect`
 * should have started): the next valid batch (spw_seg_find_valid) whose
 * offsets fit. Below the recovery point (rp_pos, rp_off) a batch must end
 * by rp_off, at or after it start at rp_off or later; limit bounds every
 * batch's end (a closed segment's next base; UINT64_MAX for none).
 * (spw_seg_find_valid wants it confirmed by the batch after it.)
 * Returns 1 with *next_pos / *next_off, 0 when no valid batch follows, or
 * -errno.
 */
static int find_hole_end(int fd, uint64_t bad, uint64_t size, uint64_t expect, uint64_t rp_pos, uint64_t rp_off,
                         uint64_t limit, spw_buf *buf, uint64_t *next_pos, uint64_t *next_off)
{
    uint64_t from = bad + 1, q;
    spw_batch_hdr h;
    for (;;) {
        int f = spw_seg_find_valid(fd, from, size, expect, buf, &q, &h);
        if (f <= 0)
            return f;
        uint64_t end = spw_batch_next_offset(&h);
        int fits = end <= limit && (q < rp_pos ? end <= rp_off : rp_pos == 0 || h.base_offset >= rp_off);
        if (fits) {
            *next_pos = q;
            *next_off = h.base_offset;
            return 1;
        }
        from = q + 1;
    }
}

static void report_hole(spw_part *p, spw_segment *s, uint64_t bad, uint64_t next_pos, uint64_t expect,
                        uint64_t next_off, const char *why, spw_recovery_report *rep)
{
    spw_error("partition %s: damaged range in segment %020" PRIu64 ": bytes %" PRIu64 "..%" PRIu64
              " (offsets %" PRIu64 "..%" PRIu64 ", %s): kept in place, reads of it fail and resume at offset %" PRIu64
              "; every batch after it is kept",
              p->dir, s->base_offset, bad, next_pos - 1, expect, next_off - 1, why, next_off);
    rep->holes++;
    rep->damaged_batches++;
    rep->hole_offsets += next_off > expect ? next_off - expect : 0;
}

/* Copies [from, to) of s to "<base>.log.cut-<from>-<unix ms>" in the
 * partition directory, fsynced with its directory entry, before a cut. */
static int save_aside(spw_part *p, spw_segment *s, uint64_t from, uint64_t to, char *name, size_t cap)
{
    char path[4096];
    snprintf(name, cap, "%020" PRIu64 ".log.cut-%" PRIu64 "-%" PRId64, s->base_offset, from, spw_wall_ms());
    snprintf(path, sizeof path, "%s/%s", p->dir, name);
    int fd = spw_os.open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return fd;
    size_t bcap = 1u << 20;
    uint8_t *b = spw_try_malloc(bcap);
    int r = b ? 0 : SPW_ENOMEM;
    for (uint64_t at = from; r == 0 && at < to;) {
        size_t n = to - at < bcap ? (size_t)(to - at) : bcap;
        ssize_t got = spw_os_pread_full(s->fd, b, n, (off_t)at);
        if (got < 0)
            r = (int)got;
        else if ((size_t)got != n)
            r = SPW_ETRUNC;
        else
            r = spw_os_pwrite_all(fd, b, n, (off_t)(at - from));
        at += n;
    }
    spw_free(b);
    if (r == 0)
        r = spw_os.fsync(fd);
    spw_os.close(fd);
    if (r == 0)
        r = spw_os_fsync_dir(p->dir);
    if (r < 0)
        spw_os.unlink(path);
    return r;
}

/*
 * Cuts s at pos (a torn tail above the recovery point). The bytes cut,
 * up to the zeros written ahead at the end, are saved aside first; when
 * that fails nothing is cut and the error is returned.
 */
static int cut_tail(spw_part *p, spw_segment *s, uint64_t pos, uint64_t size, uint64_t next_offset, int bad_err,
                    spw_recovery_report *rep)
{
    if (pos >= size)
        return 0;
    uint64_t cut = size - pos;
    uint64_t zero = zero_tail(s->fd, pos, size);
    /* Count the whole headers among what is cut, for the report. */
    uint32_t whole = 0;
    uint64_t q = pos;
    while (q + SPW_BATCH_HEADER_LEN <= size - zero) {
        uint8_t hb[SPW_BATCH_HEADER_LEN];
        spw_batch_hdr h2;
        if (spw_os_pread_full(s->fd, hb, sizeof hb, (off_t)q) != (ssize_t)sizeof hb ||
            spw_batch_parse(hb, sizeof hb, &h2) != 0)
            break;
        whole++;
        q += h2.length;
    }
    int r;
    if (zero == cut) {
        spw_info("partition %s: cut %" PRIu64 " bytes of zeros written ahead at the end of segment %020" PRIu64,
                 p->dir, cut, s->base_offset);
    } else {
        char name[128];
        /* A batch may end in zero bytes itself: keep the page they are in. */
        uint64_t save_end = (size - zero + 4095) & ~(uint64_t)4095;
        if (save_end > size)
            save_end = size;
        if ((r = save_aside(p, s, pos, save_end, name, sizeof name)) < 0) {
            spw_error("partition %s: cannot save the %" PRIu64 " bytes to cut at position %" PRIu64
                      " of segment %020" PRIu64 " aside: %s; nothing cut",
                      p->dir, save_end - pos, pos, s->base_offset, spw_strerror(r));
            return r;
        }
        rep->saved_bytes += save_end - pos;
        spw_warn("partition %s: recovery cut %" PRIu64 " bytes (%u batch header(s), %" PRIu64
                 " zero bytes written ahead) at position %" PRIu64 " of segment %020" PRIu64
                 ", after the recovery point, next offset %" PRIu64 " (%s); the bytes are saved in %s",
                 p->dir, cut, whole, zero, pos, s->base_offset, next_offset, spw_strerror(bad_err), name);
    }
    if ((r = spw_os.ftruncate(s->fd, (off_t)pos)) < 0 || (r = spw_os.fsync(s->fd)) < 0)
        return r;
    rep->truncated_bytes += cut;
    rep->truncated_batches += whole;
    return 0;
}

/*
 * Recovers the newest segment: verifies every batch (CRC) from position 0
 * and rebuilds the index from that walk (the index may have reached the
 * disk before the data it points at). rp_pos/rp_off: the recovery point
 * in this segment (everything before rp_pos was fsynced; 0 for none).
 *   - Below the recovery point nothing is cut: a bad batch starts a
 *     damaged range that ends at the next valid batch whose offsets fit
 *     (or at the recovery point itself); it is kept in place and reported.
 *   - Above it, a batch whose header is intact but whose CRC (or only
 *     base_offset) is wrong, followed by a valid batch exactly where its
 *     length says with the next offset, is kept in place too; so is any
 *     bad range followed by a valid batch whose offsets go on; a bad
 *     range with nothing valid after it is a torn tail: saved aside, then
 *     cut.
 */
static int recover_newest(spw_part *p, spw_segment *s, uint64_t rp_pos, uint64_t rp_off, spw_recovery_report *rep,
                          uint64_t *last_batch_pos)
{
    off_t fsz = spw_os.size(s->fd);
    if (fsz < 0)
        return (int)fsz;
    uint64_t size = (uint64_t)fsz;
    int r, rebuilt = 0;
    if (size < rp_pos) {
        spw_error("partition %s: segment %020" PRIu64 " is %" PRIu64 " bytes but its first %" PRIu64
                  " were fsynced (recovery point): the file lost data; the missing bytes are kept as a damaged range",
                  p->dir, s->base_offset, size, rp_pos);
        if ((r = spw_os.ftruncate(s->fd, (off_t)rp_pos)) < 0 || (r = spw_os.fsync(s->fd)) < 0)
            return r;
        size = rp_pos;
    }
    p->idx_pending.len = 0;
    s->last_idx_pos = 0;
    s->running_max_ts = INT64_MIN;
    rec_ctx c = {.p = p, .s = s, .last_pos = UINT64_MAX};
    spw_scan sc = {.pos = 0, .offset = s->base_offset, .max_ts = INT64_MIN, .file_size = size, .verify = 1,
                   .on_batch = rec_on_batch, .arg = &c};
    for (;;) {
        r = spw_seg_scan(s->fd, &sc);
        if (r == 0)
            break;
        if (!sc.bad_err)
            goto out;
        uint64_t bad = sc.pos, expect = sc.offset;
        if (bad < rp_pos) {
            uint64_t next_pos = rp_pos, next_off = rp_off > expect ? rp_off : expect;
            int f = find_hole_end(s->fd, bad, size, expect, rp_pos, rp_off, UINT64_MAX, &sc.buf, &next_pos,
                                  &next_off);
            if (f < 0) {
                r = f;
                goto out;
            }
            report_hole(p, s, bad, next_pos, expect, next_off, spw_strerror(sc.bad_err), rep);
            sc.pos = next_pos;
            sc.offset = next_off;
            continue;
        }
        spw_batch_hdr bh = sc.bad_hdr;
        /* base_offset is outside the CRC: a batch whose CRC holds but whose
         * base_offset is wrong is damage in place too. */
        int mid = sc.bad_hdr_ok && sc.bad_err == SPW_ECORRUPT && sc.pos + bh.length < size &&
                  (bh.base_offset == sc.offset || batch_valid_at(s->fd, sc.pos, size, bh.base_offset, &sc.buf)) &&
                  batch_valid_at(s->fd, sc.pos + bh.length, size, sc.offset + bh.record_count, &sc.buf);
        if (!mid) {
            /* Damage in place rather than a torn tail when a whole batch
             * whose offsets go on follows (as a damaged range ends): media
             * damage (a zeroed sector, flipped bits) in data fsynced since
             * the recovery point was last written, which may have been
             * acknowledged, or pages of unsynced data that reached the
             * disk out of order. Either way the batches after it are
             * whole, the range is reported and its offsets are never
             * given to new records; the scan goes on, and a torn end
             * after them is still cut. With nothing whole after it, the
             * bad range is the torn tail. */
            uint64_t np = 0, no = 0;
            int f = find_hole_end(s->fd, bad, size, expect, rp_pos, rp_off, UINT64_MAX, &sc.buf, &np, &no);
            if (f < 0) {
                r = f;
                goto out;
            }
            if (f == 0)
                break;
            report_hole(p, s, bad, np, expect, no, spw_strerror(sc.bad_err), rep);
            sc.pos = np;
            sc.offset = no;
            continue;
        }
        bh.base_offset = sc.offset; /* what it must be, for the report and the index */
        spw_error("partition %s: damaged batch at position %" PRIu64 " of segment %020" PRIu64
                  " (offsets %" PRIu64 "..%" PRIu64 "): kept in place, reads of it fail",
                  p->dir, sc.pos, s->base_offset, bh.base_offset, spw_batch_next_offset(&bh) - 1);
        rep->damaged_batches++;
        rec_on_batch(&c, &bh, sc.pos);
        sc.pos += bh.length;
        sc.offset = spw_batch_next_offset(&bh);
    }
    if ((r = cut_tail(p, s, sc.pos, size, sc.offset, sc.bad_err, rep)) < 0)
        goto out;
    if ((r = idx_replace(p, s, &rebuilt)) < 0)
        goto out;
    if (rebuilt)
        rep->indexes_rebuilt++;
    atomic_store(&s->size, sc.pos);
    s->alloc_end = sc.pos;
    atomic_store(&s->end_offset, sc.offset);
    atomic_store(&s->max_ts, sc.max_ts);
    s->running_max_ts = sc.max_ts > s->running_max_ts ? sc.max_ts : s->running_max_ts;
    *last_batch_pos = c.last_pos;
    r = 0;
out:
    p->idx_pending.len = 0;
    spw_buf_fini(&sc.buf);
    return r;
}

/*
 * Walks the headers of closed segment s from position 0, rebuilding its
 * index and stepping over damaged ranges: at a header that does not
 * continue the walk, the batch before it is checked too (a damaged length
 * or count sends the walk astray only one batch later), and the range
 * ends at the next valid batch whose offsets fit below next_base (or at
 * the segment's end). Sets the segment's end offset and max ts.
 */
static int rebuild_closed(spw_part *p, spw_segment *s, uint64_t size, uint64_t next_base, spw_recovery_report *rep)
{
    rec_ctx c = {.p = p, .s = s, .last_pos = UINT64_MAX};
    spw_os.ftruncate(s->idx_fd, 0);
    atomic_store(&s->idx_count, 0);
    p->idx_pending.len = 0;
    s->last_idx_pos = 0;
    s->running_max_ts = INT64_MIN;
    spw_scan sc = {.file_size = size, .offset = s->base_offset, .max_ts = INT64_MIN, .on_batch = rec_on_batch,
                   .arg = &c};
    int r, damaged = 0;
    for (;;) {
        r = spw_seg_scan(s->fd, &sc);
        if (r == 0 || !sc.bad_err)
            break;
        damaged = 1;
        uint64_t bad = sc.pos, expect = sc.offset;
        if (c.last_pos != UINT64_MAX && !batch_valid_at(s->fd, c.last_pos, size, c.last_base, &sc.buf)) {
            bad = c.last_pos;
            expect = c.last_base;
        }
        uint64_t next_pos = size, next_off = next_base;
        int f = find_hole_end(s->fd, bad, size, expect, 0, 0, next_base, &sc.buf, &next_pos, &next_off);
        if (f < 0) {
            r = f;
            break;
        }
        report_hole(p, s, bad, next_pos, expect, next_off, spw_strerror(sc.bad_err), rep);
        c.last_pos = UINT64_MAX;
        sc.pos = next_pos;
        sc.offset = next_off;
        if (!f) { /* the range runs to the segment's end: reported, kept, not an error */
            r = 0;
            break;
        }
    }
    int w = flush_idx_pending(p, s);
    if (w < 0 && !r)
        r = w;
    if (r == 0) {
        atomic_store(&s->end_offset, damaged ? next_base : sc.offset);
        if (!damaged && sc.offset != next_base)
            spw_error("partition %s: segment %020" PRIu64 " ends at offset %" PRIu64
                      " but the next segment starts at %" PRIu64,
                      p->dir, s->base_offset, sc.offset, next_base);
        atomic_store(&s->max_ts, sc.max_ts);
    }
    spw_buf_fini(&sc.buf);
    return r;
}

/* Opens an older (closed) segment: header walk from the last index entry
 * to the end for its end offset and max ts. When the index does not fit
 * the data, or the walk meets damage, the whole segment is walked again
 * from 0 (rebuild_closed), stepping over damaged ranges. The segment is
 * kept whole either way. */
static int recover_closed(spw_part *p, spw_segment *s, uint64_t next_base, spw_recovery_report *rep)
{
    off_t fsz = spw_os.size(s->fd);
    if (fsz < 0)
        return (int)fsz;
    uint64_t size = (uint64_t)fsz;
    uint32_t n;
    int implausible;
    spw_idx_entry *v = load_index(s, size, &n, &implausible);
    off_t isz = spw_os.size(s->idx_fd);
    int ok = !implausible && isz == (off_t)n * SPW_IDX_ENTRY_LEN;
    if (implausible)
        spw_warn("partition %s: index of segment %020" PRIu64 " is %lld bytes, more than the segment could need; "
                 "rebuilt",
                 p->dir, s->base_offset, (long long)isz);
    spw_scan sc = {.file_size = size, .verify = 0, .offset = s->base_offset, .max_ts = INT64_MIN};
    if (ok && n > 0) {
        spw_idx_entry *e = &v[n - 1];
        ok = header_matches(s->fd, e->position, size, s->base_offset + e->rel_offset);
        sc.pos = e->position;
        sc.offset = s->base_offset + e->rel_offset;
        sc.max_ts = e->max_ts_before;
    }
    spw_free(v);
    int r = 0;
    if (ok) {
        atomic_store(&s->idx_count, n); /* the index fits: reads use it */
        r = spw_seg_scan(s->fd, &sc);
    }
    if (!ok || (r && sc.bad_err) || (n == 0 && size > p->cfg.index_interval_bytes)) {
        int damaged = r && sc.bad_err;
        uint32_t holes = rep->holes;
        spw_buf_fini(&sc.buf);
        r = rebuild_closed(p, s, size, next_base, rep);
        if (r == 0 && (atomic_load(&s->idx_count) > 0 || !ok) && !(damaged && rep->holes > holes && ok))
            rep->indexes_rebuilt++;
        if (r == 0 && damaged && rep->holes == holes) {
            /* The walk from the index entry failed, the one from 0 did not. */
            spw_warn("partition %s: segment %020" PRIu64 ": the index did not fit its data; rebuilt", p->dir,
                     s->base_offset);
        }
        atomic_store(&s->size, size);
        return r;
    }
    if (r)
        return r;
    atomic_store(&s->end_offset, sc.offset);
    if (sc.offset != next_base)
        spw_error("partition %s: segment %020" PRIu64 " ends at offset %" PRIu64
                  " but the next segment starts at %" PRIu64,
                  p->dir, s->base_offset, sc.offset, next_base);
    atomic_store(&s->size, size);
    atomic_store(&s->max_ts, sc.max_ts);
    spw_buf_fini(&sc.buf);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The highest id stored in the batch at pos (its last record's). */
static uint64_t last_id_at(spw_segment *s, uint64_t pos)
{
    uint8_t hb[SPW_BATCH_HEADER_LEN];
    spw_batch_hdr h;
    uint64_t id = 0;
    if (spw_os_pread_full(s->fd, hb, sizeof hb, (off_t)pos) != (ssize_t)sizeof hb ||
        spw_batch_parse(hb, sizeof hb, &h))
        return 0;
    spw_buf b = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    if (spw_buf_reserve(&b, h.length) == 0 &&
        spw_os_pread_full(s->fd, b.p, h.length, (off_t)pos) == (ssize_t)h.length && spw_batch_verify(b.p, &h) == 0) {
        const uint8_t *recs;
        size_t len;
        if (spw_batch_records(b.p, &h, &scratch, &recs, &len) == 0) {
            spw_rec_iter it;
            spw_record_view rv;
            spw_rec_iter_init(&it, &h, recs, len);
            while (spw_rec_next(&it, &rv) == 1)
                if (rv.id > id)
                    id = rv.id;
        }
    }
    spw_buf_fini(&b);
    spw_buf_fini(&scratch);
    return id;
}

/* ---- recovery of a failed partition ---- */

#define RECOVER_BACKOFF_MIN_MS 100
#define RECOVER_BACKOFF_MAX_MS 5000
#define RECOVER_PROBE_BYTES 4096

/* part_recover's verification scan keeps every batch it verified. */
typedef struct keep_ctx {
    spw_scan *sc;
    spw_buf keep;
    int err;
} keep_ctx;

static int keep_batch(void *arg, const spw_batch_hdr *h, uint64_t pos)
{
    (void)pos;
    keep_ctx *k = arg;
    int r = spw_buf_put(&k->keep, k->sc->buf.p, h->length);
    if (r)
        k->err = r;
    return r;
}

/*
 * Brings a failed partition back, as opening it would, without closing it:
 *   1. verify (CRC) every batch of the active segment after the last good
 *      fdatasync (sync_pos), keeping the bytes verified in memory, and cut
 *      the file at the first that fails — a torn or failed write, zeros
 *      written ahead (what is cut is saved aside first, as at open);
 *   2. write exactly the bytes verified again (after a failed writeback
 *      Linux marks the pages clean, and one evicted since would read back
 *      as whatever the disk has: reading them again is not safe), and a
 *      block of zeros past them to prove the disk takes new data,
 *      fdatasync, cut the zeros;
 *   3. rebuild the index and the segment's end as recovery at open does
 *      (recover_newest, with sync_pos as its recovery point), then take
 *      the end as the next offset.
 * Older segments were fsynced whole when they rolled and are not touched.
 * Returns 0 (the partition accepts appends again) or the error that stopped
 * it (it stays failed; nothing was lost that a retry cannot still keep).
 * REQUIRES: p failed, its fill and waiters empty (spw__part_fail did it),
 * and the caller is the flusher or p is unregistered (closing).
 */
static int part_recover(spw_part *p)
{
    spw_segment *s = p->active;
    pthread_mutex_lock(&p->mu);
    assert(p->failed);
    assert(p->fill.bytes == 0 && p->rings[0].len == 0 && p->rings[1].len == 0);
    pthread_mutex_unlock(&p->mu);
    p->idx_pending.len = 0; /* entries of a run that failed */
    uint64_t from = p->sync_pos, from_offset = p->sync_offset;
    uint64_t old_size = atomic_load(&s->size);
    off_t fsz = spw_os.size(s->fd);
    if (fsz < 0)
        return (int)fsz;
    uint64_t good = (uint64_t)fsz;
    spw_scan sc = {.pos = from, .offset = p->sync_offset, .file_size = good, .verify = 1, .max_ts = INT64_MIN};
    keep_ctx k = {.sc = &sc, .keep = SPW_BUF_INIT};
    spw_recovery_report rep = {0};
    int r = 0;
    if (good > from) {
        sc.on_batch = keep_batch;
        sc.arg = &k;
        r = spw_seg_scan(s->fd, &sc);
        if (k.err)
            r = k.err;
        else if (r < 0 && sc.bad_err)
            r = 0;
        good = sc.pos;
    }
    spw_buf_fini(&sc.buf);
    if (r == 0 && (uint64_t)fsz > good)
        r = cut_tail(p, s, good, (uint64_t)fsz, sc.offset, sc.bad_err, &rep);
    if (r == 0 && k.keep.len)
        r = spw_os_pwrite_all(s->fd, k.keep.p, k.keep.len, (off_t)from);
    spw_buf_fini(&k.keep);
    if (r < 0)
        return r;
    /* The probe: one block past the end must be allocated and synced, or
     * the disk is still full (overwriting the blocks above would not tell).
     * Its zeros are cut again right after; if a crash comes first, the next
     * open cuts them as zeros written ahead. */
    r = spw_os_pwrite_all(s->fd, zeros, RECOVER_PROBE_BYTES, (off_t)good);
    if (r == 0)
        r = spw_os.fdatasync(s->fd);
    int t = spw_os.ftruncate(s->fd, (off_t)good);
    if (r < 0 || (r = t) < 0)
        return r;
    uint64_t last_pos = UINT64_MAX;
    /* Readers see only offsets below written_end, which all validated; the
     * lock keeps them off the index while it is rebuilt. */
    pthread_rwlock_wrlock(&p->seg_lock);
    r = recover_newest(p, s, from, from_offset, &rep, &last_pos);
    pthread_rwlock_unlock(&p->seg_lock);
    if (r < 0)
        return r;
    uint64_t size = atomic_load(&s->size), end = atomic_load(&s->end_offset);
    spw__log_disk_add(p->log, (int64_t)size - (int64_t)old_size);
    uint64_t written = p->written_local;
    if (end < written)
        spw_error("partition %s: offsets %" PRIu64 "..%" PRIu64 " were written but do not validate on disk any "
                  "more: they are gone and will be given to new records",
                  p->dir, end, written - 1);
    else if (end > written)
        spw_warn("partition %s: offsets %" PRIu64 "..%" PRIu64 " of appends that failed reached the disk whole "
                 "and are kept (their producers were told the write failed)",
                 p->dir, written, end - 1);
    p->sync_pos = size;
    p->sync_offset = end;
    p->written_local = end;
    p->unsynced_since_ms = 0;
    s->synced = 0; /* the index is not synced yet: roll and close sync both */
    pthread_mutex_lock(&p->mu);
    int err = p->failed;
    p->next_offset = end;
    atomic_store(&p->written_end, end);
    atomic_store(&p->durable_end, end);
    p->failed = 0;
    atomic_store(&p->failed_pub, 0);
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_sub(&p->log->nfailed, 1);
    atomic_fetch_add(&p->log->st_recoveries, 1);
    spw_info("partition %s: recovered from \"%s\": %" PRIu64 " record(s) from offset %" PRIu64 " (%" PRIu64
             " bytes) after the last good fsync checked and synced again, %" PRIu64
             " bytes cut; accepting appends again at offset %" PRIu64,
             p->dir, spw_strerror(err), end > from_offset ? end - from_offset : 0, from_offset,
             good > from ? good - from : 0, rep.truncated_bytes, end);
    return 0;
}

int spw__part_try_recover(spw_part *p, int64_t now_ms)
{
    if (!p->failed)
        return 1;
    if (now_ms < p->recover_at_ms)
        return 0;
    int r = part_recover(p);
    if (r == 0)
        return 1;
    uint32_t b = p->recover_backoff_ms ? p->recover_backoff_ms * 2 : RECOVER_BACKOFF_MIN_MS;
    p->recover_backoff_ms = b > RECOVER_BACKOFF_MAX_MS ? RECOVER_BACKOFF_MAX_MS : b;
    p->recover_at_ms = now_ms + p->recover_backoff_ms;
    spw_warn("partition %s: recovery failed: %s; next attempt in %u ms", p->dir, spw_strerror(r),
             p->recover_backoff_ms);
    return 0;
}

void spw_part_config_default(spw_part_config *c)
{
    c->segment_bytes = 128u << 20;
    c->segment_ms = 7LL * 24 * 3600 * 1000;
    c->index_interval_bytes = 4096;
    c->retention_bytes = -1;
    c->retention_ms = -1;
    c->retention_min_age_ms = 0;
}

static void part_free(spw_part *p)
{
    for (size_t i = 0; i < p->nsegs; i++)
        spw_seg_close(p->segs[i]);
    spw_free(p->segs);
    spw__chain_put(p->log, &p->fill);
    spw__chain_put(p->log, &p->flushing);
    spw_free(p->iov);
    spw_buf_fini(&p->idx_pending);
    spw_free(p->rings[0].v);
    spw_free(p->rings[1].v);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->idle_cv);
    pthread_rwlock_destroy(&p->seg_lock);
    pthread_mutex_destroy(&p->hold_mu);
    spw_free(p->dir);
    spw_free(p);
}

int spw_part_open(spw_log *log, const char *dir, const spw_part_config *c, spw_part **out,
                  spw_recovery_report *report)
{
    spw_recovery_report rep_local;
    spw_recovery_report *rep = report ? report : &rep_local;
    memset(rep, 0, sizeof *rep);
    spw_part_config cfg;
    spw_part_config_default(&cfg);
    if (c)
        cfg = *c;
    if (cfg.segment_bytes < 1024 || cfg.segment_bytes > (1ull << 31) || cfg.index_interval_bytes < 64 ||
        cfg.segment_ms <= 0)
        return SPW_EINVAL;
    int r = spw_os_mkdirs(dir, 0755);
    if (r < 0)
        return r;

    /* Segment names, sorted. */
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    uint64_t *bases = NULL;
    size_t nb = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t b;
        if (!spw_seg_parse_name(de->d_name, &b))
            continue;
        if (nb == cap) {
            cap = cap ? cap * 2 : 16;
            bases = spw_xrealloc(bases, cap * sizeof *bases);
        }
        bases[nb++] = b;
    }
    closedir(d);
    if (nb > 1)
        qsort(bases, nb, sizeof *bases, cmp_u64);

    spw_part *p = spw_xcalloc(1, sizeof *p);
    p->log = log;
    p->dir = spw_xstrdup(dir);
    p->cfg = cfg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->idle_cv, NULL);
    pthread_rwlock_init(&p->seg_lock, NULL);
    pthread_mutex_init(&p->hold_mu, NULL);

    for (size_t i = 0; i < nb; i++) {
        spw_segment *s;
        if ((r = spw_seg_open(dir, bases[i], 0, &s)) < 0)
            goto fail;
        segs_push(p, s);
    }
    if (nb == 0) {
        spw_segment *s;
        if ((r = spw_seg_open(dir, 0, 1, &s)) < 0)
            goto fail;
        segs_push(p, s);
    }
    for (size_t i = 0; i + 1 < p->nsegs; i++)
        if ((r = recover_closed(p, p->segs[i], p->segs[i + 1]->base_offset, rep)) < 0)
            goto fail;
    uint64_t last_pos = UINT64_MAX;
    spw_segment *newest = p->segs[p->nsegs - 1];
    /* The recovery point: below it the newest segment is never cut. */
    spw_rp rp;
    uint64_t rp_pos = 0, rp_off = newest->base_offset;
    int rpr = spw_rp_load(dir, &rp);
    if (rpr < 0) {
        spw_warn("partition %s: recovery point file %s: %s; ignored (the newest segment is checked as if none "
                 "of it were known fsynced)",
                 dir, SPW_RP_NAME, spw_strerror(rpr));
    } else if (rpr == 1 && rp.base == newest->base_offset) {
        rp_pos = rp.pos;
        rp_off = rp.offset;
        p->rp_base = rp.base;
        p->rp_pos = rp.pos;
        p->rp_offset = rp.offset;
        p->rp_valid = 1;
    } else if (rpr == 1 && rp.base > newest->base_offset) {
        spw_warn("partition %s: the recovery point names segment %020" PRIu64 ", which does not exist (newest: "
                 "%020" PRIu64 "); ignored",
                 dir, rp.base, newest->base_offset);
    }
    if ((r = recover_newest(p, newest, rp_pos, rp_off, rep, &last_pos)) < 0)
        goto fail;
    newest->created_ms = spw_wall_ms();
    p->active = newest;
    rep->segments = (uint32_t)p->nsegs;

    p->next_offset = atomic_load(&newest->end_offset);
    p->written_local = p->next_offset;
    atomic_store(&p->written_end, p->next_offset);
    atomic_store(&p->durable_end, p->next_offset);
    p->open_end = p->next_offset;
    atomic_store(&p->start_offset, p->segs[0]->base_offset);
    p->sync_pos = atomic_load(&newest->size);
    p->sync_offset = p->next_offset;
    /* What recovery kept may be only in the page cache (a process crash):
     * make it durable before calling it so, then move the recovery point. */
    if (p->sync_pos > rp_pos && (r = spw_os.fdatasync(newest->fd)) < 0)
        goto fail;
    if (p->sync_pos > 0 || p->rp_valid)
        rp_write(p, mono_ms());
    if (last_pos != UINT64_MAX)
        spw_idgen_observe(&log->idgen, last_id_at(newest, last_pos));
    spw_free(bases);
    uint64_t bytes = 0;
    for (size_t i = 0; i < p->nsegs; i++)
        bytes += atomic_load(&p->segs[i]->size);
    spw__log_disk_add(log, (int64_t)bytes);
    spw__log_register(log, p);
    *out = p;
    return 0;
fail:
    spw_free(bases);
    part_free(p);
    return r;
}

void spw_part_close(spw_part *p)
{
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    while (p->fill.bytes || p->rings[0].len || p->rings[1].len)
        pthread_cond_wait(&p->idle_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    spw__log_unregister(p->log, p);
    spw__ckpt_quiesce(p->log, p); /* the checkpoint thread is done with p */
    assert(p->holds == NULL);
    if (p->failed) {
        /* One more attempt, so a clean stop after the fault cleared leaves
         * whole, synced segments. */
        int r = part_recover(p);
        if (r < 0) {
            spw_error("partition %s: closing while failed (recovery: %s); the next start recovers it", p->dir,
                      spw_strerror(r));
            atomic_fetch_sub(&p->log->nfailed, 1);
        }
    }
    if (!p->failed) {
        int r = seg_sync(p->active);
        if (r < 0) {
            spw_error("partition %s: fdatasync at close: %s", p->dir, spw_strerror(r));
        } else {
            p->sync_pos = atomic_load(&p->active->size);
            p->sync_offset = atomic_load(&p->active->end_offset);
            rp_write(p, mono_ms());
        }
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < p->nsegs; i++)
        bytes += atomic_load(&p->segs[i]->size);
    spw__log_disk_add(p->log, -(int64_t)bytes);
    part_free(p);
}

int spw_part_failed(spw_part *p) { return atomic_load_explicit(&p->failed_pub, memory_order_relaxed); }

void spw_part_state_get(spw_part *p, spw_part_state *st)
{
    pthread_mutex_lock(&p->mu);
    st->next_offset = p->next_offset;
    st->failed = p->failed;
    pthread_mutex_unlock(&p->mu);
    st->written_offset = atomic_load(&p->written_end);
    st->durable_offset = atomic_load(&p->durable_end);
    pthread_rwlock_rdlock(&p->seg_lock);
    st->start_offset = atomic_load(&p->start_offset);
    st->segments = (uint32_t)p->nsegs;
    st->bytes = 0;
    for (size_t i = 0; i < p->nsegs; i++)
        st->bytes += atomic_load(&p->segs[i]->size);
    pthread_rwlock_unlock(&p->seg_lock);
    st->retention_held_bytes = atomic_load_explicit(&p->retention_held_bytes, memory_order_relaxed);
}

/* ---- reads ---- */

#define READ_MISLED (SPW__ERR_BASE - 50) /* internal: an index entry does not fit the data */

/*
 * The offset after the damaged batch at pos (header h, which should have
 * started at offset expect), when the data proves it: the next batch's
 * header follows at pos + length with the next offset, or the segment ends
 * there at its end offset. UINT64_MAX when the damage hides where it ends.
 */
static uint64_t damaged_end(spw_segment *s, uint64_t pos, uint64_t size, uint64_t expect, const spw_batch_hdr *h)
{
    uint64_t next = expect + h->record_count, q = pos + h->length;
    if (q == size)
        return next == atomic_load(&s->end_offset) ? next : UINT64_MAX;
    uint8_t hb[SPW_BATCH_HEADER_LEN];
    spw_batch_hdr nh;
    if (q > size || spw_os_pread_full(s->fd, hb, sizeof hb, (off_t)q) != (ssize_t)sizeof hb ||
        spw_batch_parse(hb, sizeof hb, &nh) != 0 || nh.base_offset != next)
        return UINT64_MAX;
    return next;
}

/*
 * Reads batches of segment s from byte pos, where the batch with base
 * offset first starts (from the index, or the segment's base at 0), into
 * out, keeping those that hold offsets >= offset and start below end, at
 * most max_bytes (but at least one batch). Every base offset is checked by
 * continuity from first: it is not covered by the CRC. A damaged range
 * ends where the next batch proves it (damaged_end) or, when its header
 * hides that, at the next valid batch (spw_seg_find_valid: the same rule
 * as recovery's); one wholly before offset is stepped over, and a read of
 * an offset inside one fails with *bad_next at its end. Reads in large windows; skipped batches are overwritten in place,
 * so out holds only kept batches. REQUIRES: seg_lock read-held.
 * Returns batches kept, SPW_ECORRUPT, READ_MISLED, or -errno.
 */
static int read_from(spw_segment *s, uint64_t pos, uint64_t first, uint64_t offset, uint64_t end, size_t max_bytes,
                     spw_buf *out, uint64_t *bad_next)
{
    uint64_t size = atomic_load_explicit(&s->size, memory_order_acquire);
    size_t want = max_bytes < (64u << 10) ? (64u << 10) : max_bytes;
    size_t keep = 0;
    int nb = 0;
    uint64_t expect = first, start = pos, jump = 0;
    out->len = 0;
    while (pos < size && (keep < max_bytes || nb == 0)) {
        size_t n = size - pos < want ? (size_t)(size - pos) : want;
        int r = spw_buf_reserve(out, keep + n);
        if (r)
            return r;
        uint8_t *win = out->p + keep;
        ssize_t got = spw_os_pread_full(s->fd, win, n, (off_t)pos);
        if (got < 0)
            return (int)got;
        size_t at = 0;
        size_t need = 0; /* bytes the next batch needs when it did not fit */
        while (at < (size_t)got && (keep < max_bytes || nb == 0)) {
            spw_batch_hdr h;
            r = spw_batch_parse(win + at, (size_t)got - at, &h);
            if (r == SPW_ETRUNC || (r == 0 && h.length > (size_t)got - at)) {
                need = r == 0 ? h.length : SPW_BATCH_HEADER_LEN;
                if (pos + at + need <= size)
                    break; /* fits in the segment: read another window */
                r = SPW_ECORRUPT;
            }
            if (r == 0 && h.base_offset != expect)
                r = SPW_ECORRUPT;
            if (r == 0)
                r = spw_batch_verify(win + at, &h);
            if (r && start > 0 && pos == start && at == 0)
                return READ_MISLED; /* a bad index entry, or damage: a scan from 0 tells which */
            if (r) {
                if (nb > 0)
                    goto done;
                uint64_t dend = UINT64_MAX, dpos = 0;
                if (spw_batch_parse(win + at, (size_t)got - at, &h) == 0) {
                    dend = damaged_end(s, pos + at, size, expect, &h);
                    dpos = pos + at + h.length;
                }
                if (dend == UINT64_MAX) {
                    /* The header hides where the damage ends: it ends at the
                     * next valid batch, as recovery decides (find_hole_end). */
                    spw_buf tmp = SPW_BUF_INIT;
                    spw_batch_hdr nh;
                    int f = spw_seg_find_valid(s->fd, pos + at + 1, size, expect, &tmp, &dpos, &nh);
                    spw_buf_fini(&tmp);
                    if (f < 0)
                        return f;
                    if (f == 1 && spw_batch_next_offset(&nh) <= atomic_load(&s->end_offset))
                        dend = nh.base_offset;
                }
                if (dend <= offset) {
                    expect = dend; /* damage before what was asked: step over it */
                    if (dpos - pos <= (uint64_t)got) {
                        at = (size_t)(dpos - pos);
                        continue;
                    }
                    jump = dpos;
                    break;
                }
                if (bad_next) {
                    uint64_t bn = dend != UINT64_MAX ? dend : atomic_load(&s->end_offset);
                    *bad_next = bn > offset ? bn : offset + 1;
                }
                return SPW_ECORRUPT;
            }
            if (h.base_offset >= end)
                goto done;
            expect = spw_batch_next_offset(&h);
            if (expect > offset) {
                if (win + at != out->p + keep)
                    memmove(out->p + keep, win + at, h.length);
                keep += h.length;
                nb++;
            }
            at += h.length;
        }
        if (jump) {
            pos = jump;
            jump = 0;
            continue;
        }
        pos += at;
        if (at == 0 && need > want)
            want = need;
    }
done:
    out->len = keep;
    return nb;
}

uint64_t spw_part_visible_end(spw_part *p) { return atomic_load_explicit(&p->durable_end, memory_order_acquire); }
uint64_t spw_part_open_end(const spw_part *p) { return p->open_end; }

int spw_part_read(spw_part *p, uint64_t offset, size_t max_bytes, spw_buf *out, uint64_t *bad_next)
{
    /* The visibility rule (log.h): only what survived fdatasync. */
    uint64_t end = atomic_load_explicit(&p->durable_end, memory_order_acquire);
    out->len = 0;
    if (offset > end)
        return SPW_ERANGE;
    if (offset == end)
        return 0;
    pthread_rwlock_rdlock(&p->seg_lock);
    int r;
    if (offset < atomic_load(&p->start_offset)) {
        r = SPW_ERANGE;
        goto out;
    }
    size_t i = segs_find(p, offset);
    spw_segment *s = p->segs[i];
    uint64_t first;
    int64_t pos = spw_seg_lookup_offset(s, offset, &first);
    if (pos < 0) {
        r = (int)pos;
        goto out;
    }
    r = read_from(s, (uint64_t)pos, first, offset, end, max_bytes, out, bad_next);
    if (r == READ_MISLED || (r == 0 && pos > 0)) {
        spw_warn("partition %s: index of segment %020" PRIu64 " does not fit its data; scanning", p->dir,
                 s->base_offset);
        r = read_from(s, 0, s->base_offset, offset, end, max_bytes, out, bad_next);
    }
    if (r == 0) {
        /* offset < end yet nothing here: a gap left by damage. */
        if (bad_next)
            *bad_next = i + 1 < p->nsegs ? p->segs[i + 1]->base_offset : end;
        r = SPW_ECORRUPT;
    }
out:
    pthread_rwlock_unlock(&p->seg_lock);
    return r;
}

int spw_part_scan_headers(spw_part *p, int64_t since_ms, void (*cb)(void *arg, const spw_batch_hdr *h), void *arg)
{
    uint64_t end = atomic_load_explicit(&p->written_end, memory_order_acquire);
    int r = 0;
    pthread_rwlock_rdlock(&p->seg_lock);
    for (size_t i = 0; i < p->nsegs && r == 0; i++) {
        spw_segment *s = p->segs[i];
        if (atomic_load_explicit(&s->mtime_ms, memory_order_relaxed) < since_ms)
            continue;
        uint64_t size = atomic_load_explicit(&s->size, memory_order_acquire);
        uint64_t pos = 0, expect = s->base_offset, prev_pos = UINT64_MAX, prev_base = 0;
        while (pos + SPW_BATCH_HEADER_LEN <= size) {
            uint8_t hb[SPW_BATCH_HEADER_LEN];
            spw_batch_hdr h;
            ssize_t n = spw_os_pread_full(s->fd, hb, sizeof hb, (off_t)pos);
            if (n < 0) {
                r = (int)n;
                break;
            }
            int ok = n == (ssize_t)sizeof hb && spw_batch_parse(hb, sizeof hb, &h) == 0 && h.base_offset == expect &&
                     pos + h.length <= size;
            if (ok && h.base_offset >= end)
                break;
            if (!ok) {
                /* A damaged range: go on at its end (docs/formats/log.md).
                 * Headers are not CRC-checked here, so the batch before may
                 * be the damaged one (a wrong length or count): search
                 * from just after its start. */
                spw_buf tmp = SPW_BUF_INIT;
                uint64_t q, from = prev_pos != UINT64_MAX ? prev_pos + 1 : pos + 1;
                uint64_t after = prev_pos != UINT64_MAX ? prev_base : expect;
                int f = spw_seg_find_valid(s->fd, from, size, after, &tmp, &q, &h);
                spw_buf_fini(&tmp);
                if (f < 0) {
                    r = f;
                    break;
                }
                if (f == 0 || spw_batch_next_offset(&h) > atomic_load(&s->end_offset))
                    break;
                pos = q;
                expect = h.base_offset;
                prev_pos = UINT64_MAX;
                continue;
            }
            cb(arg, &h);
            prev_pos = pos;
            prev_base = h.base_offset;
            pos += h.length;
            expect = spw_batch_next_offset(&h);
        }
    }
    pthread_rwlock_unlock(&p->seg_lock);
    return r;
}

int spw_part_offset_for_ts(spw_part *p, int64_t ts_ms, uint64_t *offset)
{
    uint64_t end = atomic_load_explicit(&p->durable_end, memory_order_acquire);
    *offset = end;
    pthread_rwlock_rdlock(&p->seg_lock);
    int r = 0;
    spw_buf buf = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    for (size_t i = 0; i < p->nsegs; i++) {
        spw_segment *s = p->segs[i];
        if (atomic_load_explicit(&s->max_ts, memory_order_acquire) < ts_ms)
            continue;
        uint64_t expect;
        int64_t pos = spw_seg_lookup_ts(s, ts_ms, &expect);
        if (pos < 0) {
            r = (int)pos;
            break;
        }
        int64_t start = pos;
        uint64_t size = atomic_load_explicit(&s->size, memory_order_acquire);
        while ((uint64_t)pos < size) {
            uint8_t hb[SPW_BATCH_HEADER_LEN];
            spw_batch_hdr h;
            /* Base offsets are not under the CRC: check them by continuity
             * from the index entry, as reads do; an entry that does not fit
             * means a scan from the start of the segment. */
            if (spw_os_pread_full(s->fd, hb, sizeof hb, pos) != (ssize_t)sizeof hb ||
                spw_batch_parse(hb, sizeof hb, &h) || h.base_offset != expect) {
                if (start > 0 && pos == start) {
                    spw_warn("partition %s: index of segment %020" PRIu64 " does not fit its data; scanning",
                             p->dir, s->base_offset);
                    pos = start = 0;
                    expect = s->base_offset;
                    continue;
                }
                /* A damaged range: its records' times are unknown; go on
                 * at its end (docs/formats/log.md, "Damaged ranges"). */
                uint64_t q;
                int f = spw_seg_find_valid(s->fd, (uint64_t)pos + 1, size, expect, &scratch, &q, &h);
                if (f == 1 && spw_batch_next_offset(&h) > atomic_load(&s->end_offset))
                    f = 0;
                if (f <= 0) {
                    r = f < 0 ? f : SPW_ECORRUPT;
                    goto out;
                }
                pos = (int64_t)q;
                expect = h.base_offset;
                continue;
            }
            if (h.base_offset >= end)
                goto out;
            if (h.max_ts >= ts_ms) {
                const uint8_t *recs;
                size_t len;
                if ((r = spw_buf_reserve(&buf, h.length)))
                    goto out;
                if (spw_os_pread_full(s->fd, buf.p, h.length, pos) != (ssize_t)h.length ||
                    spw_batch_verify(buf.p, &h) || spw_batch_records(buf.p, &h, &scratch, &recs, &len)) {
                    r = SPW_ECORRUPT;
                    goto out;
                }
                spw_rec_iter it;
                spw_record_view rv;
                spw_rec_iter_init(&it, &h, recs, len);
                while ((r = spw_rec_next(&it, &rv)) == 1) {
                    if (rv.ts >= ts_ms) {
                        *offset = rv.offset;
                        r = 0;
                        goto out;
                    }
                }
                if (r < 0)
                    goto out;
            }
            expect = spw_batch_next_offset(&h);
            pos += h.length;
        }
    }
out:
    pthread_rwlock_unlock(&p->seg_lock);
    spw_buf_fini(&buf);
    spw_buf_fini(&scratch);
    return r;
}

/* ---- retention ---- */

int spw_part_hold(spw_part *p, uint64_t offset, spw_hold **out)
{
    pthread_mutex_lock(&p->hold_mu);
    if (offset < atomic_load(&p->start_offset)) {
        pthread_mutex_unlock(&p->hold_mu);
        return SPW_ERANGE;
    }
    spw_hold *h = spw_xcalloc(1, sizeof *h);
    h->p = p;
    h->offset = offset;
    h->next = p->holds;
    if (p->holds)
        p->holds->prev = h;
    p->holds = h;
    pthread_mutex_unlock(&p->hold_mu);
    *out = h;
    return 0;
}

int spw_hold_move(spw_hold *h, uint64_t offset)
{
    spw_part *p = h->p;
    pthread_mutex_lock(&p->hold_mu);
    int r = offset < atomic_load(&p->start_offset) ? SPW_ERANGE : 0;
    if (r == 0)
        h->offset = offset;
    pthread_mutex_unlock(&p->hold_mu);
    return r;
}

void spw_hold_release(spw_hold *h)
{
    spw_part *p = h->p;
    pthread_mutex_lock(&p->hold_mu);
    if (h->prev)
        h->prev->next = h->next;
    else
        p->holds = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&p->hold_mu);
    spw_free(h);
}

/* REQUIRES: hold_mu held. */
static uint64_t lowest_hold(spw_part *p)
{
    uint64_t low = UINT64_MAX;
    for (spw_hold *h = p->holds; h; h = h->next)
        if (h->offset < low)
            low = h->offset;
    return low;
}

uint64_t spw_part_protected(spw_part *p)
{
    pthread_mutex_lock(&p->hold_mu);
    uint64_t low = lowest_hold(p);
    pthread_mutex_unlock(&p->hold_mu);
    return low;
}

int spw_part_enforce_retention(spw_part *p, int64_t now_ms)
{
    if (p->cfg.retention_bytes < 0 && p->cfg.retention_ms < 0)
        return 0;
    spw_segment *victims[64];
    size_t nv = 0;
    pthread_rwlock_wrlock(&p->seg_lock);
    /* Holds are taken and moved under hold_mu after checking start_offset:
     * keeping it until start_offset moves means no hold is granted on a
     * segment chosen here. */
    pthread_mutex_lock(&p->hold_mu);
    uint64_t protect = lowest_hold(p);
    uint64_t total = 0;
    for (size_t i = 0; i < p->nsegs; i++)
        total += atomic_load(&p->segs[i]->size);
    uint64_t held = 0;
    while (nv < 64 && nv + 1 < p->nsegs) {
        spw_segment *s = p->segs[nv];
        uint64_t sz = atomic_load(&s->size);
        uint64_t seg_end = p->segs[nv + 1]->base_offset;
        int64_t age = now_ms - atomic_load(&s->mtime_ms);
        /* As Kafka: delete a segment only if what remains is still at least the limit. */
        int by_bytes = p->cfg.retention_bytes >= 0 && total - sz >= (uint64_t)p->cfg.retention_bytes;
        int by_age = p->cfg.retention_ms >= 0 && age > p->cfg.retention_ms;
        if (by_bytes && !by_age && age <= p->cfg.retention_min_age_ms) {
            /* Written within the dedupe window: its batch headers name
             * keys and sequences a retry must still find after a restart.
             * Later segments are younger still: all of the excess is held. */
            for (size_t i = nv; i + 1 < p->nsegs; i++) {
                uint64_t z = atomic_load(&p->segs[i]->size);
                if (total - held - z < (uint64_t)p->cfg.retention_bytes)
                    break;
                held += z;
            }
            break;
        }
        if (!(by_bytes || by_age) || seg_end > protect)
            break;
        victims[nv++] = s;
        total -= sz;
    }
    uint64_t was = atomic_exchange_explicit(&p->retention_held_bytes, held, memory_order_relaxed);
    if (nv) {
        memmove(p->segs, p->segs + nv, (p->nsegs - nv) * sizeof *p->segs);
        p->nsegs -= nv;
        atomic_store(&p->start_offset, p->segs[0]->base_offset);
    }
    pthread_mutex_unlock(&p->hold_mu);
    pthread_rwlock_unlock(&p->seg_lock);
    int r = 0;
    for (size_t i = 0; i < nv; i++) {
        uint64_t base = victims[i]->base_offset;
        spw__log_disk_add(p->log, -(int64_t)atomic_load(&victims[i]->size));
        spw_seg_close(victims[i]);
        int u = spw_seg_unlink(p->dir, base);
        if (u < 0 && !r)
            r = u;
        spw_info("partition %s: retention deleted segment %020" PRIu64, p->dir, base);
    }
    if (nv)
        spw_os_fsync_dir(p->dir);
    if (held && !was)
        spw_warn("partition %s: retention.bytes is exceeded by %" PRIu64 " bytes written within the dedupe window "
                 "(%" PRId64 " ms); they are kept until they leave it (docs/architecture.md, \"Retention and the "
                 "dedupe window\")",
                 p->dir, held, p->cfg.retention_min_age_ms);
    return r < 0 ? r : (int)nv;
}
