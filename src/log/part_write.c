/*
 * The partition's write-out, called by the flusher only: batches taken
 * from the fill chain go to the active segment (one pwritev per segment
 * touched, zeros written ahead of small runs), rolls open a new segment
 * when the active one is full or old, index entries are queued every
 * index_interval_bytes. Also the recovery point (docs/formats/log.md,
 * "Recovery point"): moved lazily through the log's checkpoint thread,
 * written directly at roll, open and close.
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
#define PREALLOC_STEP SPW__PART_ZEROS_LEN
const uint8_t spw__part_zeros[SPW__PART_ZEROS_LEN];

/* Writes the iovecs collected for segment s (len bytes), then the pending
 * index entries, and publishes the new size. */
static int write_run(spw_part *p, spw_segment *s, int iovcnt, size_t len, uint64_t end_offset, int64_t max_ts)
{
    uint64_t size = atomic_load_explicit(&s->size, memory_order_relaxed);
    uint64_t alloc = s->alloc_end;
    if (len < PREALLOC_SMALL_RUN && size + len > s->alloc_end && size + len + PREALLOC_STEP <= p->cfg.segment_bytes) {
        alloc = size + len + PREALLOC_STEP;
        int cnt = iovcnt;
        iov_add(p, &cnt, (uint8_t *)spw__part_zeros, PREALLOC_STEP);
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

int spw__seg_sync(spw_segment *s)
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
    int r = spw__part_path_begin(p);
    if (r == SPW_EDELETED)
        return; /* retired: the file by that name may be another partition's */
    r = spw_rp_store(p->dir, &rp);
    spw__part_path_end(p);
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
void spw__part_rp_write(spw_part *p, int64_t now_ms)
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
    if (r == 0)
        spw_seg_use_cache(*out, p->log->fdc, p->dir);
    if (r != -EEXIST)
        return r;
    if ((r = spw_seg_open(p->dir, base, 0, out)) < 0)
        return r;
    spw_seg_use_cache(*out, p->log->fdc, p->dir);
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
    int r = spw__seg_sync(p->active);
    if (r < 0)
        return r;
    p->sync_pos = atomic_load_explicit(&p->active->size, memory_order_relaxed);
    p->sync_offset = atomic_load_explicit(&p->active->end_offset, memory_order_relaxed);
    spw_segment *s;
    /* A retired partition makes no file: its path may be another's now. */
    if ((r = spw__part_path_begin(p)) < 0)
        return r;
    if ((r = seg_create(p, base, &s)) < 0) {
        spw__part_path_end(p);
        return r;
    }
    /* Sealed under seg_lock: once the new segment is pushed, the old one is
     * no longer the newest, and retention (which takes seg_lock) may delete
     * it and drop the last reference; sealing it after the unlock raced
     * with that and could touch a freed segment. The fd cache's lock is a
     * leaf, so taking it here is allowed. */
    pthread_rwlock_wrlock(&p->seg_lock);
    spw__part_segs_push(p, s);
    spw_segment *old = p->active;
    p->active = s;
    spw_seg_seal(old); /* whole and synced: its files go to the fd cache */
    pthread_rwlock_unlock(&p->seg_lock);
    spw__part_path_end(p); /* the new segment is in segs: retire sees it */
    p->sync_pos = 0;
    p->sync_offset = base;
    p->rp_written_ms = mono_ms();
    spw__ckpt_post(p->log, p, base, 0, base); /* off the flusher, as a checkpoint */
    return 0;
}

void spw__part_note_index(spw_part *p, spw_segment *s, const spw_batch_hdr *h, uint64_t pos)
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
            spw__part_note_index(p, s, &h, seg_pos);
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
