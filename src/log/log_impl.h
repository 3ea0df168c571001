/*
 * Internals shared by log.c (the log, its flusher and fsync pool) and
 * the files of a partition (partition.c and part_*.c: recovery, append,
 * write-out, reads, retention; partition_int.h is what only they share).
 *
 * Locks, in the only order they may nest:
 *   log->mu  →  part->mu
 *   part->seg_lock is never held with either, and never across I/O by a
 *   reader: readers hold it only to find a segment and take a reference
 *   (spw_seg_ref) and read after dropping it (part_read.c); the flusher
 *   takes it for writing only to add a rolled segment, retention to remove
 *   old ones, recovery of a failed partition while it rebuilds the newest
 *   segment's index.
 *   The fd cache's mutex (fdcache.c) is a leaf, taken by a reader's pin
 *   and unpin, by the flusher's seal at roll and by a segment's close.
 *   log->budget_mu is a leaf; so is log->hook_mu (no log lock is held
 *   while the flusher calls the durable hook under it).
 *   part->hold_mu is a leaf, taken inside seg_lock by retention.
 */
#ifndef SPW_LOG_IMPL_H
#define SPW_LOG_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>

#include "core/hist.h"
#include "log/fdcache.h"
#include "log/log.h"
#include "log/segment.h"

/*
 * Appended batches wait for the flusher in a chain of chunks: 1 MiB
 * chunks from a per-log pool (a batch never spans chunks; a larger batch
 * gets a chunk of its own). The pool keeps freed chunks for reuse, so a
 * steady load touches the same memory over and over and the flusher writes
 * a chain with pwritev, without copying or reallocating.
 */
#define SPW__CHUNK_SIZE (1u << 20)

typedef struct spw_chunk {
    struct spw_chunk *next;
    uint64_t end_offset; /* offset after the chunk's last batch */
    size_t len, cap;
    /* mem, or one batch the chunk does not hold in mem (see kind) */
    uint8_t *data;
    int kind; /* SPW__CHUNK_* */
    uint8_t mem[];
} spw_chunk;

enum {
    SPW__CHUNK_POOL = 0, /* data = mem: the pool's (1 MiB) or a large batch's own */
    /* data: a waiting caller's batch (spw_part_append_wait, blocked until
     * the batch is written or dropped); the chunk frees only itself */
    SPW__CHUNK_LENT = 1,
    /* data: a heap block given to the log (spw_part_append_give), this
     * header inside it after the batch: freeing data frees both */
    SPW__CHUNK_GIVEN = 2,
};

typedef struct spw_chain {
    spw_chunk *head, *tail;
    size_t bytes;
} spw_chain;

typedef struct spw_waiter {
    uint64_t end; /* complete once every offset below end reached the level */
    spw_append_cb cb;
    void *arg;
    spw_append_result res;
} spw_waiter;

/* FIFO of waiters, ordered by end (appends take offsets in order). */
typedef struct spw_wring {
    spw_waiter *v;
    size_t head, len, cap;
} spw_wring;

enum { SPW__RING_WRITTEN = 0, SPW__RING_FSYNC = 1 };

struct spw_part {
    spw_log *log;
    char *dir;
    spw_part_config cfg;

    /* Append side, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t idle_cv; /* signalled when fill and waiters drain (close) */
    uint64_t next_offset;
    spw_chain fill; /* batches appended, not yet taken by the flusher */
    spw_wring rings[2];
    int failed;  /* first write/fsync error; appends then get SPW_EROFS (written by the flusher only) */
    int closing;

    /* Under log->mu (queued is also read without it: see spw__log_enqueue). */
    _Atomic int queued; /* on the log's dirty list */
    int flusher_refs;  /* the flusher holds p in a cycle */
    spw_part *next_dirty;
    spw_part *next_all, *prev_all;

    /* Flusher-owned (and recovery's before the partition is live). */
    spw_chain flushing;
    struct iovec *iov; /* flusher scratch for pwritev */
    size_t iov_cap;
    spw_buf idx_pending;
    spw_segment *active;
    int64_t unsynced_since_ms; /* 0: everything written is fsynced */
    uint64_t written_local;    /* flusher's copy of written_end */
    /* The active segment's bytes and offsets below these survived an
     * fdatasync (or were there at open): recovery after a failure checks
     * and syncs again what lies after them. */
    uint64_t sync_pos, sync_offset;
    /* The recovery point as the partition's file says it (docs/formats/
     * log.md, "Recovery point"): rewritten lazily, at most every
     * SPW__RP_INTERVAL_MS, and at roll and close. */
    uint64_t rp_base, rp_pos, rp_offset;
    int rp_valid;
    int64_t rp_written_ms; /* monotonic ms of the last checkpoint handed over */
    /* A recovery point handed to the log's checkpoint thread (log.c), and
     * that thread at work on p: under log->ckpt_mu. The rp_* fields above
     * belong to whoever writes the file: the checkpoint thread while
     * ckpt_busy, else the flusher (and open and close) once
     * spw__ckpt_quiesce returned. */
    int ckpt_queued, ckpt_busy;
    uint64_t ckpt_base, ckpt_pos, ckpt_offset;
    spw_part *ckpt_next;
    int64_t recover_at_ms;       /* failed: next recovery attempt (monotonic ms) */
    uint32_t recover_backoff_ms; /* failed: wait after the last failed attempt */

    /* Segments, newest last. */
    pthread_rwlock_t seg_lock;
    spw_segment **segs;
    size_t nsegs, segs_cap;

    _Atomic uint64_t written_end;
    _Atomic uint64_t durable_end;
    uint64_t open_end; /* next_offset when opened, after recovery (set once) */
    _Atomic uint64_t start_offset;
    _Atomic uint64_t retention_held_bytes; /* spw_part_state.retention_held_bytes */
    _Atomic int failed_pub; /* copy of failed for lock-free readers */
    _Atomic int sync_asked; /* a reader waits for written data (spw_part_sync_soon) */

    /* Retention holds (spw_part_hold), a list under hold_mu. */
    pthread_mutex_t hold_mu;
    struct spw_hold *holds;

    /* Every use of the directory by path (a roll's new segment, the
     * recovery point, retention's unlinks, recovery's saved tail) holds
     * path_lock for reading and checks retired first; spw_part_retire
     * sets retired under it for writing. So once retire returned, nothing
     * of p touches dir again (docs/architecture.md, "Stream incarnations").
     * Outermost of p's locks. */
    pthread_rwlock_t path_lock;
    _Atomic int retired;
};

struct spw_hold {
    spw_part *p;
    uint64_t offset;
    struct spw_hold *next, *prev;
};

struct spw_log {
    spw_log_config cfg;
    spw_idgen idgen;
    spw_fdcache *fdc; /* sealed segments' files (fdcache.h) */

    _Atomic uint64_t pending; /* accepted, unwritten bytes */
    _Atomic uint64_t disk_bytes; /* segment bytes of every open partition */
    _Atomic uint32_t nfailed;    /* partitions in the failed state */
    pthread_mutex_t chunk_mu; /* leaf */
    spw_chunk *free_chunks;
    size_t nfree_chunks, max_free_chunks;

    pthread_mutex_t budget_mu;
    pthread_cond_t budget_cv;
    int budget_waiters;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* wakes the flusher */
    pthread_cond_t idle_cv; /* the flusher dropped a partition (close) */
    spw_part *dirty_head, *dirty_tail;
    spw_part *all;
    int flusher_sleeping;
    int stop;
    /* Gathering (see flusher_main): after a cycle completed K fsync waiters,
     * the next cycle waits briefly for up to K appends to come back. */
    _Atomic uint32_t gather_target;
    _Atomic uint32_t arrivals;
    uint64_t last_sync_ns;
    /* Flusher-owned list of completions to run after a lock is dropped. */
    struct spw_waiter *done_v;
    size_t done_cap;
    /* Counters: written by the flusher, read by anyone. */
    spw_hist fsync_hist, group_hist;
    _Atomic uint64_t st_cycles, st_writes, st_bytes, st_batches, st_fsyncs, st_fsync_ns, st_acks_fsync;
    _Atomic uint64_t st_recoveries;
    pthread_t flusher;

    /* The checkpoint thread: writes recovery points (three syncs each) off
     * the flusher, so a slow disk does not stall group commit. */
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv, ckpt_idle_cv;
    spw_part *ckpt_head, *ckpt_tail;
    int ckpt_stop, ckpt_started;
    pthread_t ckpt_th;
    /* spw_log_set_durable_hook; hook_mu is a leaf, held by the flusher
     * while it calls the hook, so clearing it waits for a call in progress. */
    pthread_mutex_t hook_mu;
    void (*durable_hook)(void *arg);
    void *durable_hook_arg;
    /* spw_log_add_durable_hook: more hooks, called after that one */
    struct spw_log_hook {
        void (*fn)(void *arg);
        void *arg;
    } *hooks;
    size_t nhooks, caphooks;

    /* fsync pool */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv, pool_done_cv;
    pthread_t *pool;
    uint32_t pool_n;
    uint64_t pool_gen;
    int pool_stop;
    struct spw_sync_job *jobs;
    size_t njobs, jobs_next, jobs_done;
};

typedef struct spw_sync_job {
    spw_part *p;
    int fd;
    uint64_t end; /* durable offset once this fdatasync returns */
    uint64_t pos; /* and the active segment's bytes it covers */
    int result;
} spw_sync_job;

/* part_append.c, part_write.c, part_recover.c, for the flusher. REQUIRES: flusher thread. */
/* Moves whole chunks, at least max bytes when there are, from fill to
 * flushing; returns the offset after the last batch moved and sets *more
 * if fill still holds data. */
uint64_t spw__part_take_fill(spw_part *p, size_t max, int *more);
int spw__part_write(spw_part *p, spw_chain *batches); /* writes, rolls, indexes; 0 or -errno */
void spw__part_fail(spw_part *p, int err);          /* fails every waiter, sets failed */
/* A failed partition: attempts recovery when its backoff allows (now:
 * monotonic ms). Returns 1 if p accepts appends again, else 0. */
int spw__part_try_recover(spw_part *p, int64_t now_ms);
size_t spw__part_complete(spw_part *p, int ring, uint64_t end); /* returns waiters completed */
/* After an fdatasync of p succeeded (sync_pos/sync_offset updated): writes
 * the recovery point file when it changed and SPW__RP_INTERVAL_MS passed
 * since the last write (now_ms: monotonic). */
#define SPW__RP_INTERVAL_MS 5000
void spw__part_checkpoint(spw_part *p, int64_t now_ms);
/* log.c: hands p's recovery point (base, pos, offset) to the checkpoint
 * thread, replacing one still queued. */
void spw__ckpt_post(spw_log *log, spw_part *p, uint64_t base, uint64_t pos, uint64_t offset);
/* log.c: returns once p is neither queued nor being written (a queued one
 * is dropped). */
void spw__ckpt_quiesce(spw_log *log, spw_part *p);
/* part_write.c, for the checkpoint thread: writes the file if it differs. */
void spw__part_rp_store(spw_part *p, uint64_t base, uint64_t pos, uint64_t offset);
int spw__part_has_waiters(spw_part *p, int ring, uint64_t end);

/* log.c, for partitions. */
void spw__log_register(spw_log *log, spw_part *p);
void spw__log_unregister(spw_log *log, spw_part *p); /* waits for the flusher to drop p */
void spw__log_enqueue(spw_log *log, spw_part *p);
spw_chunk *spw__chunk_get(spw_log *log, size_t need); /* NULL: out of memory */
void spw__chain_put(spw_log *log, spw_chain *c);       /* returns chunks, empties c */
int spw__log_reserve(spw_log *log, uint64_t n, int nowait);
void spw__log_release(spw_log *log, uint64_t n);
void spw__log_disk_add(spw_log *log, int64_t delta); /* segment bytes grew (or shrank) */

#endif
