/*
 * A partition: a directory of segments. This file owns its lifecycle —
 * open (list the segments, run recovery over them, load the recovery
 * point, seed the id generator), close (drain, recover or trim, write the
 * final recovery point), the state snapshot — and the segments array.
 * The rest of a partition lives beside it, one concept a file, sharing
 * log/partition_int.h:
 *   part_append.c     the append path: offsets under p->mu, the fill
 *                     chain, the waiter rings the flusher completes;
 *   part_write.c      the flusher's write-out (rolls, index entries, one
 *                     pwrite per segment touched) and the recovery point;
 *   part_recover.c    recovery at open and of a failed partition: the
 *                     damage rule (holes, cuts saved aside);
 *   part_read.c       reads by offset and by time, header scans;
 *   part_retention.c  holds and retention.
 * See docs/architecture.md for the flush cycle and log_impl.h for the lock
 * order.
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
#include "log/fdcache.h"
#include "log/log_impl.h"
#include "log/partition_int.h"
#include "os/os.h"

/* ---- segments array ---- */

void spw__part_segs_push(spw_part *p, spw_segment *s)
{
    if (p->nsegs == p->segs_cap) {
        p->segs_cap = p->segs_cap ? p->segs_cap * 2 : 8;
        p->segs = spw_xrealloc(p->segs, p->segs_cap * sizeof *p->segs);
    }
    p->segs[p->nsegs++] = s;
}

spw_segment **spw__part_segs_take(spw_part *p, size_t *n)
{
    pthread_rwlock_rdlock(&p->seg_lock);
    spw_segment **v = spw_xmalloc((p->nsegs ? p->nsegs : 1) * sizeof *v);
    for (size_t i = 0; i < p->nsegs; i++) {
        v[i] = p->segs[i];
        spw_seg_ref(v[i]);
    }
    *n = p->nsegs;
    pthread_rwlock_unlock(&p->seg_lock);
    return v;
}

void spw__part_segs_drop(spw_segment **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        spw_seg_unref(v[i]);
    spw_free(v);
}

/* Index of the segment holding offset. REQUIRES: seg_lock held, nsegs > 0. */
size_t spw__part_segs_find(spw_part *p, uint64_t offset)
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
        spw_seg_unref(p->segs[i]);
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
    pthread_rwlock_destroy(&p->path_lock);
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
    pthread_rwlock_init(&p->path_lock, NULL);

    /* One segment's files open at a time, but the newest: each older one
     * is checked, then sealed (its files join the fd cache, which closes
     * the least recently used beyond its capacity), so opening a
     * partition of any number of segments needs a bounded number of fds. */
    for (size_t i = 0; i < nb; i++) {
        spw_segment *s;
        if ((r = spw_seg_open(dir, bases[i], 0, &s)) < 0)
            goto fail;
        spw_seg_use_cache(s, log->fdc, p->dir);
        spw__part_segs_push(p, s);
        if (i + 1 < nb) {
            if ((r = spw__part_recover_closed(p, s, bases[i + 1], rep)) < 0)
                goto fail;
            spw_seg_seal(s);
        }
    }
    if (nb == 0) {
        spw_segment *s;
        if ((r = spw_seg_open(dir, 0, 1, &s)) < 0)
            goto fail;
        spw_seg_use_cache(s, log->fdc, p->dir);
        spw__part_segs_push(p, s);
    }
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
    if ((r = spw__part_recover_newest(p, newest, rp_pos, rp_off, rep, &last_pos)) < 0)
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
        spw__part_rp_write(p, (int64_t)spw_mono_ms());
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
        int r = spw__part_recover(p);
        if (r < 0) {
            spw_error("partition %s: closing while failed (recovery: %s); the next start recovers it", p->dir,
                      spw_strerror(r));
            atomic_fetch_sub(&p->log->nfailed, 1);
        }
    }
    if (!p->failed) {
        int r = spw__seg_sync(p->active);
        if (r < 0) {
            spw_error("partition %s: fdatasync at close: %s", p->dir, spw_strerror(r));
        } else {
            p->sync_pos = atomic_load(&p->active->size);
            p->sync_offset = atomic_load(&p->active->end_offset);
            spw__part_rp_write(p, (int64_t)spw_mono_ms());
        }
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < p->nsegs; i++)
        bytes += atomic_load(&p->segs[i]->size);
    spw__log_disk_add(p->log, -(int64_t)bytes);
    part_free(p);
}

int spw__part_path_begin(spw_part *p)
{
    pthread_rwlock_rdlock(&p->path_lock);
    if (!atomic_load(&p->retired))
        return 0;
    pthread_rwlock_unlock(&p->path_lock);
    return SPW_EDELETED;
}

void spw__part_path_end(spw_part *p) { pthread_rwlock_unlock(&p->path_lock); }

void spw_part_retire(spw_part *p)
{
    /* Waits for the path uses in progress (a roll, a recovery point, a
     * retention pass); none starts after. */
    pthread_rwlock_wrlock(&p->path_lock);
    atomic_store(&p->retired, 1);
    pthread_rwlock_unlock(&p->path_lock);
    /* Sealed segments are reopened by path by the fd cache: no more. No
     * segment is added after this (a roll is a path use). */
    pthread_rwlock_rdlock(&p->seg_lock);
    for (size_t i = 0; i < p->nsegs; i++)
        spw__fdcache_retire(p->segs[i]);
    pthread_rwlock_unlock(&p->seg_lock);
}

int spw_part_retired(spw_part *p) { return atomic_load(&p->retired); }

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
