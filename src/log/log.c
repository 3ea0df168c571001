/*
 * The log: budget, dirty list, the flusher thread and the fsync pool.
 *
 * Flush cycle (docs/architecture.md):
 *   1. take every partition on the dirty list (plus, on the timer, those
 *      with written-but-unsynced data older than fsync_interval_ms);
 *   2. for each: swap its fill buffer out under its lock, write the batches
 *      (one pwrite per segment touched), publish written_end, release the
 *      budget, complete SPW_ACK_WRITTEN waiters;
 *   3. fdatasync every file that has fsync waiters (in parallel on the
 *      pool when there are several), publish durable_end, complete
 *      SPW_ACK_FSYNC waiters;
 *   4. start again at once if anything was appended meanwhile: group commit
 *      without a timer, so an append waits at most for the cycle in
 *      progress plus its own.
 * A partition failed by a write or fsync error takes no part in 2-3; while
 * any is failed the flusher also wakes every RECOVER_TICK_MS and, for each
 * failed one whose backoff allows, runs its recovery (part_recover.c,
 * spw__part_recover) in step 2's place.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "core/thread.h"
#include "log/log_impl.h"
#include "os/os.h"

const char *spw_ack_name(spw_ack a)
{
    switch (a) {
    case SPW_ACK_NONE: return "none";
    case SPW_ACK_WRITTEN: return "written";
    case SPW_ACK_FSYNC: return "fsync";
    case SPW_ACK_REPLICATED: return "replicated";
    case SPW_ACK_DEFAULT: break; /* a request's "the stream's default", never a stream's level */
    }
    return "?";
}

int spw_ack_parse(const char *s, spw_ack *out)
{
    static const spw_ack all[] = {SPW_ACK_NONE, SPW_ACK_WRITTEN, SPW_ACK_FSYNC, SPW_ACK_REPLICATED};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strcmp(s, spw_ack_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return SPW_EINVAL;
}

void spw_log_config_default(spw_log_config *c)
{
    c->max_pending_bytes = 64u << 20;
    c->sync_threads = 4;
    c->fsync_interval_ms = 1000;
    c->node_id = 0;
    c->fd_cache_segments = SPW_FDCACHE_DEFAULT;
}

spw_idgen *spw_log_idgen(spw_log *log) { return &log->idgen; }
uint64_t spw_log_pending_bytes(const spw_log *log) { return atomic_load(&log->pending); }
uint64_t spw_log_disk_bytes(const spw_log *log) { return atomic_load_explicit(&log->disk_bytes, memory_order_relaxed); }
void spw_log_fdcache_stats(spw_log *log, spw_fdcache_stats *out) { spw_fdcache_stats_get(log->fdc, out); }
uint32_t spw_log_failed_partitions(const spw_log *log) { return atomic_load(&log->nfailed); }
uint64_t spw_log_recoveries(const spw_log *log) { return atomic_load(&log->st_recoveries); }

void spw__log_disk_add(spw_log *log, int64_t delta)
{
    if (delta >= 0) {
        atomic_fetch_add_explicit(&log->disk_bytes, (uint64_t)delta, memory_order_relaxed);
    } else {
        uint64_t before = atomic_fetch_sub_explicit(&log->disk_bytes, (uint64_t)-delta, memory_order_relaxed);
        assert(before >= (uint64_t)-delta);
        (void)before;
    }
}

void spw_log_hists(spw_log *log, spw_hist **fsync_us, spw_hist **group_size)
{
    *fsync_us = &log->fsync_hist;
    *group_size = &log->group_hist;
}

void spw_log_stats_get(spw_log *log, spw_log_stats *o)
{
    o->cycles = atomic_load(&log->st_cycles);
    o->writes = atomic_load(&log->st_writes);
    o->bytes_written = atomic_load(&log->st_bytes);
    o->batches_written = atomic_load(&log->st_batches);
    o->fsyncs = atomic_load(&log->st_fsyncs);
    o->fsync_ns = atomic_load(&log->st_fsync_ns);
    o->acks_fsync = atomic_load(&log->st_acks_fsync);
}

/* ---- chunk pool ---- */

spw_chunk *spw__chunk_get(spw_log *log, size_t need)
{
    spw_chunk *c = NULL;
    if (need <= SPW__CHUNK_SIZE) {
        pthread_mutex_lock(&log->chunk_mu);
        if ((c = log->free_chunks)) {
            log->free_chunks = c->next;
            log->nfree_chunks--;
        }
        pthread_mutex_unlock(&log->chunk_mu);
        need = SPW__CHUNK_SIZE;
    }
    if (!c) {
        c = spw_try_malloc(sizeof *c + need);
        if (!c)
            return NULL;
        c->cap = need;
        c->data = c->mem;
        c->kind = SPW__CHUNK_POOL;
    }
    c->next = NULL;
    c->len = 0;
    return c;
}

void spw__chain_put(spw_log *log, spw_chain *ch)
{
    spw_chunk *c = ch->head;
    while (c) {
        spw_chunk *next = c->next;
        if (c->kind == SPW__CHUNK_GIVEN) {
            spw_free(c->data); /* the header with it */
            c = next;
            continue;
        }
        pthread_mutex_lock(&log->chunk_mu);
        if (c->kind == SPW__CHUNK_POOL && c->cap == SPW__CHUNK_SIZE && log->nfree_chunks < log->max_free_chunks) {
            c->next = log->free_chunks;
            log->free_chunks = c;
            log->nfree_chunks++;
            c = NULL;
        }
        pthread_mutex_unlock(&log->chunk_mu);
        spw_free(c);
        c = next;
    }
    ch->head = ch->tail = NULL;
    ch->bytes = 0;
}

/* ---- budget ---- */

int spw__log_reserve(spw_log *log, uint64_t n, int nowait)
{
    uint64_t max = log->cfg.max_pending_bytes;
    uint64_t cur = atomic_load_explicit(&log->pending, memory_order_relaxed);
    for (;;) {
        while (cur + n <= max) {
            if (atomic_compare_exchange_weak(&log->pending, &cur, cur + n))
                return 0;
        }
        if (nowait)
            return SPW_EAGAIN;
        pthread_mutex_lock(&log->budget_mu);
        log->budget_waiters++;
        while ((cur = atomic_load(&log->pending)) + n > max && !log->stop)
            pthread_cond_wait(&log->budget_cv, &log->budget_mu);
        log->budget_waiters--;
        int stop = log->stop;
        pthread_mutex_unlock(&log->budget_mu);
        if (stop)
            return SPW_ECANCELED;
    }
}

int spw_log_reserve(spw_log *log, uint64_t n, int nowait)
{
    if (n > log->cfg.max_pending_bytes)
        return SPW_EMSGSIZE;
    return spw__log_reserve(log, n, nowait);
}

void spw_log_release(spw_log *log, uint64_t n)
{
    if (n)
        spw__log_release(log, n);
}

void spw__log_release(spw_log *log, uint64_t n)
{
    uint64_t before = atomic_fetch_sub(&log->pending, n);
    assert(before >= n);
    (void)before;
    pthread_mutex_lock(&log->budget_mu);
    if (log->budget_waiters)
        pthread_cond_broadcast(&log->budget_cv);
    pthread_mutex_unlock(&log->budget_mu);
}

/* ---- partitions ---- */

void spw__log_register(spw_log *log, spw_part *p)
{
    pthread_mutex_lock(&log->mu);
    p->prev_all = NULL;
    p->next_all = log->all;
    if (log->all)
        log->all->prev_all = p;
    log->all = p;
    pthread_mutex_unlock(&log->mu);
}

void spw__log_unregister(spw_log *log, spw_part *p)
{
    pthread_mutex_lock(&log->mu);
    while (p->flusher_refs > 0 || p->queued)
        pthread_cond_wait(&log->idle_cv, &log->mu);
    if (p->prev_all)
        p->prev_all->next_all = p->next_all;
    else
        log->all = p->next_all;
    if (p->next_all)
        p->next_all->prev_all = p->prev_all;
    pthread_mutex_unlock(&log->mu);
}

/* Puts p on the dirty list (if it is not) and wakes a sleeping flusher. */
static void dirty_add(spw_log *log, spw_part *p)
{
    pthread_mutex_lock(&log->mu);
    if (!p->queued) {
        p->queued = 1;
        p->next_dirty = NULL;
        if (log->dirty_tail)
            log->dirty_tail->next_dirty = p;
        else
            log->dirty_head = p;
        log->dirty_tail = p;
        if (log->flusher_sleeping)
            pthread_cond_signal(&log->cv);
    }
    pthread_mutex_unlock(&log->mu);
}

void spw__log_enqueue(spw_log *log, spw_part *p)
{
    uint32_t target = atomic_load_explicit(&log->gather_target, memory_order_relaxed);
    if (target && atomic_fetch_add(&log->arrivals, 1) + 1 == target) {
        pthread_mutex_lock(&log->mu);
        pthread_cond_signal(&log->cv);
        pthread_mutex_unlock(&log->mu);
    }
    /* Fast path without the global lock. Safe: the caller's batch went into
     * the fill buffer before this load, and the flusher clears queued before
     * it takes the fill buffer; so seeing 1 means the flusher has yet to take
     * the buffer that holds the batch. */
    if (atomic_load(&p->queued))
        return;
    dirty_add(log, p);
}

void spw_part_sync_soon(spw_part *p)
{
    /* Nothing written past the durable end: nothing to ask for. */
    if (atomic_load_explicit(&p->written_end, memory_order_acquire) <=
        atomic_load_explicit(&p->durable_end, memory_order_acquire))
        return;
    /* One request per cycle: the flusher clears the flag when it decides
     * p's fdatasync, which covers everything written before that. */
    if (atomic_load_explicit(&p->sync_asked, memory_order_relaxed) ||
        atomic_exchange_explicit(&p->sync_asked, 1, memory_order_acq_rel))
        return;
    dirty_add(p->log, p);
}

void spw_log_set_durable_hook(spw_log *log, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&log->hook_mu);
    log->durable_hook = fn;
    log->durable_hook_arg = arg;
    pthread_mutex_unlock(&log->hook_mu);
}

int spw_log_add_durable_hook(spw_log *log, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&log->hook_mu);
    int r = 0;
    if (log->nhooks == log->caphooks) {
        size_t cap = log->caphooks ? 2 * log->caphooks : 8;
        struct spw_log_hook *h = spw_try_realloc(log->hooks, cap * sizeof *h);
        if (h) {
            log->hooks = h;
            log->caphooks = cap;
        } else {
            r = SPW_ENOMEM;
        }
    }
    if (!r)
        log->hooks[log->nhooks++] = (struct spw_log_hook){fn, arg};
    pthread_mutex_unlock(&log->hook_mu);
    return r;
}

void spw_log_remove_durable_hook(spw_log *log, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&log->hook_mu);
    for (size_t i = 0; i < log->nhooks; i++)
        if (log->hooks[i].fn == fn && log->hooks[i].arg == arg) {
            log->hooks[i] = log->hooks[--log->nhooks];
            break;
        }
    pthread_mutex_unlock(&log->hook_mu);
}

/* Some durable end advanced: tell the hooks (flusher thread). */
static void durable_advanced(spw_log *log)
{
    pthread_mutex_lock(&log->hook_mu);
    if (log->durable_hook)
        log->durable_hook(log->durable_hook_arg);
    for (size_t i = 0; i < log->nhooks; i++)
        log->hooks[i].fn(log->hooks[i].arg);
    pthread_mutex_unlock(&log->hook_mu);
}

/* ---- fsync pool ---- */

static void run_jobs(spw_log *log)
{
    for (;;) {
        pthread_mutex_lock(&log->pool_mu);
        if (log->jobs_next >= log->njobs) {
            pthread_mutex_unlock(&log->pool_mu);
            return;
        }
        spw_sync_job *j = &log->jobs[log->jobs_next++];
        pthread_mutex_unlock(&log->pool_mu);
        j->result = spw_os.fdatasync(j->fd);
        pthread_mutex_lock(&log->pool_mu);
        if (++log->jobs_done == log->njobs)
            pthread_cond_broadcast(&log->pool_done_cv);
        pthread_mutex_unlock(&log->pool_mu);
    }
}

static void *pool_main(void *arg)
{
    spw_log *log = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&log->pool_mu);
    for (;;) {
        while (log->pool_gen == seen && !log->pool_stop)
            pthread_cond_wait(&log->pool_cv, &log->pool_mu);
        if (log->pool_stop)
            break;
        seen = log->pool_gen;
        pthread_mutex_unlock(&log->pool_mu);
        run_jobs(log);
        pthread_mutex_lock(&log->pool_mu);
    }
    pthread_mutex_unlock(&log->pool_mu);
    return NULL;
}

/* Runs every job (fdatasync), in parallel when there are several. */
static void sync_all(spw_log *log, spw_sync_job *jobs, size_t n)
{
    if (n == 0)
        return;
    if (n == 1 || log->pool_n == 0) {
        for (size_t i = 0; i < n; i++)
            jobs[i].result = spw_os.fdatasync(jobs[i].fd);
        return;
    }
    pthread_mutex_lock(&log->pool_mu);
    log->jobs = jobs;
    log->njobs = n;
    log->jobs_next = 0;
    log->jobs_done = 0;
    log->pool_gen++;
    pthread_cond_broadcast(&log->pool_cv);
    pthread_mutex_unlock(&log->pool_mu);
    run_jobs(log);
    pthread_mutex_lock(&log->pool_mu);
    while (log->jobs_done < log->njobs)
        pthread_cond_wait(&log->pool_done_cv, &log->pool_mu);
    log->njobs = 0;
    pthread_mutex_unlock(&log->pool_mu);
}

/* ---- flusher ---- */

typedef struct cycle {
    spw_part **v;
    size_t n, cap;
    spw_sync_job *jobs;
    size_t jobs_cap;
} cycle;

static void cycle_add(cycle *c, spw_part *p)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = spw_xrealloc(c->v, c->cap * sizeof *c->v);
    }
    c->v[c->n++] = p;
}

#define WRITE_PIECE (4u << 20)
#define CYCLE_MAX_BYTES (64u << 20)

/* Writes what p's fill chain holds and completes its SPW_ACK_WRITTEN
 * waiters (a cycle's phase 1, one partition). */
static void write_part(spw_log *log, spw_part *p, int64_t now, int *did, int *advanced)
{
    /* A failed partition has nothing to write (appends are refused):
     * try to bring it back instead, when its backoff allows. */
    if (p->failed) {
        if (spw__part_try_recover(p, now))
            *advanced = 1; /* what recovery kept is durable */
        return;
    }
    /* Write in pieces of WRITE_PIECE so the budget comes back while
     * producers keep filling; after CYCLE_MAX_BYTES move on to the
     * other partitions and come back next cycle. */
    size_t done = 0;
    int more = 1;
    while (more) {
        uint64_t end = spw__part_take_fill(p, WRITE_PIECE, &more);
        if (!p->flushing.bytes)
            break;
        *did = 1;
        int r = p->failed ? SPW_EROFS : spw__part_write(p, &p->flushing);
        size_t n = p->flushing.bytes;
        spw__log_release(log, n);
        spw__chain_put(log, &p->flushing);
        if (r < 0) {
            spw__part_fail(p, r);
            break;
        }
        SPW_ASSERT(end >= p->written_local); /* offsets are written in order */
        p->written_local = end;
        atomic_store_explicit(&p->written_end, end, memory_order_release);
        if (!p->unsynced_since_ms)
            p->unsynced_since_ms = now;
        spw__part_complete(p, SPW__RING_WRITTEN, end);
        done += n;
        if (more && done >= CYCLE_MAX_BYTES) {
            dirty_add(log, p); /* not an arrival: the gather does not count it */
            break;
        }
    }
}

static void flush_cycle(spw_log *log, cycle *c, int64_t now, int final)
{
    int did = 0, advanced = 0;
    /* Phase 1: write. */
    for (size_t i = 0; i < c->n; i++)
        write_part(log, c->v[i], now, &did, &advanced);
    /* Phase 2: fdatasync what someone waits for (an fsync ack, or a reader
     * that asked with spw_part_sync_soon), or what is too old. */
    if (c->jobs_cap < c->n) {
        c->jobs_cap = c->cap;
        c->jobs = spw_xrealloc(c->jobs, c->jobs_cap * sizeof *c->jobs);
    }
    size_t nj = 0;
    for (size_t i = 0; i < c->n; i++) {
        spw_part *p = c->v[i];
        /* A reader's request is served by this decision: a failed
         * partition's recovery syncs, an fsync below covers every write
         * the reader saw, and without unsynced data there is none to see. */
        int asked = atomic_load_explicit(&p->sync_asked, memory_order_relaxed) &&
                    atomic_exchange_explicit(&p->sync_asked, 0, memory_order_acq_rel);
        if (p->failed || !p->unsynced_since_ms)
            continue;
        int due = final || asked || now - p->unsynced_since_ms >= (int64_t)log->cfg.fsync_interval_ms;
        if (!due && !spw__part_has_waiters(p, SPW__RING_FSYNC, p->written_local))
            continue;
        c->jobs[nj++] = (spw_sync_job){.p = p, .fd = p->active->fd, .end = p->written_local,
                                       .pos = atomic_load_explicit(&p->active->size, memory_order_relaxed)};
    }
    uint64_t t0 = spw_mono_ns();
    sync_all(log, c->jobs, nj);
    if (nj) {
        log->last_sync_ns = spw_mono_ns() - t0;
        atomic_fetch_add_explicit(&log->st_fsyncs, nj, memory_order_relaxed);
        atomic_fetch_add_explicit(&log->st_fsync_ns, log->last_sync_ns, memory_order_relaxed);
        spw_hist_add(&log->fsync_hist, log->last_sync_ns / 1000);
    }
    /* Count the appends that these completions set off (see flusher_main). */
    atomic_store(&log->arrivals, 0);
    atomic_store(&log->gather_target, UINT32_MAX);
    size_t completed = 0;
    for (size_t i = 0; i < nj; i++) {
        spw_sync_job *j = &c->jobs[i];
        spw_part *p = j->p;
        if (j->result < 0) {
            spw__part_fail(p, j->result);
            continue;
        }
        p->unsynced_since_ms = 0;
        p->sync_pos = j->pos;
        p->sync_offset = j->end;
        atomic_store_explicit(&p->durable_end, j->end, memory_order_release);
        advanced = 1;
        completed += spw__part_complete(p, SPW__RING_FSYNC, j->end);
    }
    for (size_t i = 0; i < nj; i++)
        if (c->jobs[i].result == 0)
            spw__part_checkpoint(c->jobs[i].p, now); /* the recovery point, lazily */
    if (advanced)
        durable_advanced(log);
    atomic_store(&log->gather_target, completed > 1 ? (uint32_t)completed : 0);
    atomic_fetch_add_explicit(&log->st_acks_fsync, completed, memory_order_relaxed);
    if (nj)
        spw_hist_add(&log->group_hist, completed);
    if (did || nj)
        atomic_fetch_add_explicit(&log->st_cycles, 1, memory_order_relaxed);
}

static int64_t mono_ms(void) { return (int64_t)spw_mono_ms(); }

/* While a partition is failed, the flusher visits the failed ones this
 * often (each one's own backoff decides whether it tries). */
#define RECOVER_TICK_MS 100

/* When the idle flusher must wake: the fsync timer, or sooner for the next
 * recovery pass while a partition is failed. */
static int64_t next_wake(spw_log *log, int64_t next_timer, int64_t next_recover)
{
    if (atomic_load(&log->nfailed) && next_recover < next_timer)
        return next_recover;
    return next_timer;
}

/* Moves the dirty list into c (a partition already in it is not added
 * twice). Clearing queued here means an append from now on re-enqueues,
 * so nothing can sit in a fill buffer without a cycle to come.
 * REQUIRES: log->mu held. */
static void take_dirty(spw_log *log, cycle *c)
{
    for (spw_part *p = log->dirty_head; p; p = p->next_dirty) {
        if (!p->flusher_refs) {
            cycle_add(c, p);
            p->flusher_refs++;
        }
        p->queued = 0;
    }
    log->dirty_head = log->dirty_tail = NULL;
}

static void *flusher_main(void *arg)
{
    spw_log *log = arg;
    cycle c = {0};
    int64_t next_timer = mono_ms() + log->cfg.fsync_interval_ms;
    int64_t next_recover = 0;
    pthread_mutex_lock(&log->mu);
    for (;;) {
        /* nfailed only rises on this thread (spw__part_fail), so a failure
         * is seen here before the next wait. */
        int64_t wake;
        while (!log->dirty_head && !log->stop && mono_ms() < (wake = next_wake(log, next_timer, next_recover))) {
            int64_t wait_ms = wake - mono_ms();
            if (wait_ms < 1)
                wait_ms = 1;
            log->flusher_sleeping = 1;
            spw_cond_wait_ns(&log->cv, &log->mu, (uint64_t)wait_ms * 1000000u);
            log->flusher_sleeping = 0;
        }
        /*
         * Gather: the last cycle completed K > 1 fsync waiters, whose
         * threads are now likely to append again. Starting the next cycle
         * on the first arrival would split them over two fsyncs; so wait
         * until K appends arrived or half the last fdatasync time passed
         * (at most 1 ms), whichever is first — PostgreSQL's commit_delay,
         * sized by measurement instead of configuration.
         */
        c.n = 0;
        uint32_t target = atomic_load(&log->gather_target);
        if (target > 1 && target != UINT32_MAX && !log->stop && atomic_load(&log->arrivals) < target) {
            uint64_t wait_ns = log->last_sync_ns / 2;
            if (wait_ns > 1000000)
                wait_ns = 1000000;
            uint64_t until = spw_mono_ns() + wait_ns;
            while (atomic_load(&log->arrivals) < target && !log->stop)
                if (spw_cond_wait_until(&log->cv, &log->mu, until) != 0)
                    break;
        }
        atomic_store(&log->gather_target, 0);
        int stop = log->stop;
        int timer = mono_ms() >= next_timer || stop;
        take_dirty(log, &c);
        if (timer) {
            /* Visit every partition so old unsynced data gets its fsync. */
            for (spw_part *p = log->all; p; p = p->next_all) {
                if (p->flusher_refs)
                    continue;
                cycle_add(&c, p);
                p->flusher_refs++;
            }
            next_timer = mono_ms() + log->cfg.fsync_interval_ms;
        }
        if (atomic_load(&log->nfailed) && mono_ms() >= next_recover) {
            /* p->failed is written on this thread only (for registered p). */
            for (spw_part *p = log->all; p; p = p->next_all) {
                if (!p->failed || p->flusher_refs)
                    continue;
                cycle_add(&c, p);
                p->flusher_refs++;
            }
            next_recover = mono_ms() + RECOVER_TICK_MS;
        }
        pthread_mutex_unlock(&log->mu);

        flush_cycle(log, &c, mono_ms(), stop);

        pthread_mutex_lock(&log->mu);
        for (size_t i = 0; i < c.n; i++)
            c.v[i]->flusher_refs--;
        pthread_cond_broadcast(&log->idle_cv);
        if (stop && !log->dirty_head)
            break;
    }
    pthread_mutex_unlock(&log->mu);
    spw_free(c.v);
    spw_free(c.jobs);
    return NULL;
}

/* unsynced_since_ms is compared with mono_ms(): keep both on one clock. */

/* ---- the checkpoint thread ---- */

void spw__ckpt_post(spw_log *log, spw_part *p, uint64_t base, uint64_t pos, uint64_t offset)
{
    pthread_mutex_lock(&log->ckpt_mu);
    p->ckpt_base = base;
    p->ckpt_pos = pos;
    p->ckpt_offset = offset;
    if (!p->ckpt_queued) {
        p->ckpt_queued = 1;
        p->ckpt_next = NULL;
        if (log->ckpt_tail)
            log->ckpt_tail->ckpt_next = p;
        else
            log->ckpt_head = p;
        log->ckpt_tail = p;
        pthread_cond_signal(&log->ckpt_cv);
    }
    pthread_mutex_unlock(&log->ckpt_mu);
}

void spw__ckpt_quiesce(spw_log *log, spw_part *p)
{
    pthread_mutex_lock(&log->ckpt_mu);
    if (p->ckpt_queued) {
        spw_part **pp = &log->ckpt_head, *prev = NULL;
        while (*pp != p) {
            prev = *pp;
            pp = &(*pp)->ckpt_next;
        }
        *pp = p->ckpt_next;
        if (log->ckpt_tail == p)
            log->ckpt_tail = prev;
        p->ckpt_queued = 0;
    }
    while (p->ckpt_busy)
        pthread_cond_wait(&log->ckpt_idle_cv, &log->ckpt_mu);
    pthread_mutex_unlock(&log->ckpt_mu);
}

static void *ckpt_main(void *arg)
{
    spw_log *log = arg;
    pthread_mutex_lock(&log->ckpt_mu);
    for (;;) {
        while (!log->ckpt_head && !log->ckpt_stop)
            pthread_cond_wait(&log->ckpt_cv, &log->ckpt_mu);
        if (!log->ckpt_head)
            break;
        spw_part *p = log->ckpt_head;
        log->ckpt_head = p->ckpt_next;
        if (!log->ckpt_head)
            log->ckpt_tail = NULL;
        p->ckpt_queued = 0;
        p->ckpt_busy = 1;
        uint64_t base = p->ckpt_base, pos = p->ckpt_pos, offset = p->ckpt_offset;
        pthread_mutex_unlock(&log->ckpt_mu);
        spw__part_rp_store(p, base, pos, offset);
        pthread_mutex_lock(&log->ckpt_mu);
        p->ckpt_busy = 0;
        pthread_cond_broadcast(&log->ckpt_idle_cv);
    }
    pthread_mutex_unlock(&log->ckpt_mu);
    return NULL;
}

int spw_log_open(const spw_log_config *cfg, spw_log **out)
{
    spw_log_config c;
    spw_log_config_default(&c);
    if (cfg)
        c = *cfg;
    if (c.node_id > SPW_ID_NODE_MAX || c.max_pending_bytes < 4096 || c.sync_threads > 64 ||
        c.fsync_interval_ms == 0 || c.fd_cache_segments == 0)
        return SPW_EINVAL;
    spw_log *log = spw_xcalloc(1, sizeof *log);
    log->cfg = c;
    log->fdc = spw_fdcache_create(c.fd_cache_segments);
    spw_idgen_init(&log->idgen, c.node_id, NULL);
    atomic_init(&log->pending, 0);
    pthread_mutex_init(&log->chunk_mu, NULL);
    /* Enough free chunks to hold the whole budget again without malloc. */
    log->max_free_chunks = c.max_pending_bytes / SPW__CHUNK_SIZE + 4;
    pthread_mutex_init(&log->budget_mu, NULL);
    pthread_cond_init(&log->budget_cv, NULL);
    pthread_mutex_init(&log->mu, NULL);
    pthread_mutex_init(&log->hook_mu, NULL);
    spw_cond_init(&log->cv); /* the flusher's timed waits */
    pthread_cond_init(&log->idle_cv, NULL);
    pthread_mutex_init(&log->pool_mu, NULL);
    pthread_cond_init(&log->pool_cv, NULL);
    pthread_cond_init(&log->pool_done_cv, NULL);
    log->pool = spw_xcalloc(c.sync_threads ? c.sync_threads : 1, sizeof *log->pool);
    for (uint32_t i = 0; i < c.sync_threads; i++) {
        if (pthread_create(&log->pool[i], NULL, pool_main, log) != 0)
            break;
        spw_thread_name(log->pool[i], "spw-fsync-%u", i);
        log->pool_n++;
    }
    pthread_mutex_init(&log->ckpt_mu, NULL);
    pthread_cond_init(&log->ckpt_cv, NULL);
    pthread_cond_init(&log->ckpt_idle_cv, NULL);
    log->ckpt_started = pthread_create(&log->ckpt_th, NULL, ckpt_main, log) == 0;
    if (!log->ckpt_started || pthread_create(&log->flusher, NULL, flusher_main, log) != 0) {
        log->stop = 1;
        spw_log_close(log);
        return SPW_ENOMEM;
    }
    spw_thread_name(log->ckpt_th, "spw-ckpt");
    spw_thread_name(log->flusher, "spw-flusher");
    *out = log;
    return 0;
}

void spw_log_close(spw_log *log)
{
    pthread_mutex_lock(&log->mu);
    assert(log->all == NULL);
    int had_flusher = !log->stop;
    log->stop = 1;
    pthread_cond_signal(&log->cv);
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_lock(&log->budget_mu);
    pthread_cond_broadcast(&log->budget_cv);
    pthread_mutex_unlock(&log->budget_mu);
    if (had_flusher)
        pthread_join(log->flusher, NULL);
    pthread_mutex_lock(&log->pool_mu);
    log->pool_stop = 1;
    pthread_cond_broadcast(&log->pool_cv);
    pthread_mutex_unlock(&log->pool_mu);
    for (uint32_t i = 0; i < log->pool_n; i++)
        pthread_join(log->pool[i], NULL);
    pthread_mutex_lock(&log->ckpt_mu);
    log->ckpt_stop = 1; /* every partition is closed: the queue is empty */
    pthread_cond_signal(&log->ckpt_cv);
    pthread_mutex_unlock(&log->ckpt_mu);
    if (log->ckpt_started)
        pthread_join(log->ckpt_th, NULL);
    pthread_mutex_destroy(&log->ckpt_mu);
    pthread_cond_destroy(&log->ckpt_cv);
    pthread_cond_destroy(&log->ckpt_idle_cv);
    spw_free(log->pool);
    spw_free(log->done_v);
    while (log->free_chunks) {
        spw_chunk *n = log->free_chunks->next;
        spw_free(log->free_chunks);
        log->free_chunks = n;
    }
    pthread_mutex_destroy(&log->chunk_mu);
    pthread_mutex_destroy(&log->budget_mu);
    pthread_cond_destroy(&log->budget_cv);
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->hook_mu);
    spw_free(log->hooks);
    pthread_cond_destroy(&log->cv);
    pthread_cond_destroy(&log->idle_cv);
    pthread_mutex_destroy(&log->pool_mu);
    pthread_cond_destroy(&log->pool_cv);
    pthread_cond_destroy(&log->pool_done_cv);
    spw_fdcache_destroy(log->fdc);
    spw_free(log);
}
