/*
 * Retention of a partition: holds (spw_part_hold: an offset below which no
 * segment may be deleted, kept by readers that persist progress) and
 * spw_part_enforce_retention, which deletes whole old segments by size or
 * age, never the active one, never one a hold covers, never bytes still in
 * the dedupe window. Lock order: seg_lock, then hold_mu (log_impl.h).
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

static int retain(spw_part *p, int64_t now_ms);

int spw_part_enforce_retention(spw_part *p, int64_t now_ms)
{
    if (p->cfg.retention_bytes < 0 && p->cfg.retention_ms < 0)
        return 0;
    /* A retired partition deletes nothing: its path may name another's
     * files (a stream created again under the deleted one's name). */
    if (spw__part_path_begin(p) < 0)
        return 0;
    int n = retain(p, now_ms);
    spw__part_path_end(p);
    return n;
}

/* spw_part_enforce_retention. REQUIRES: path_lock held for reading. */
static int retain(spw_part *p, int64_t now_ms)
{
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
        /* A reader that took it before may still be reading through its
         * pinned fds (the files live on until they close); one that has not
         * pinned it yet finds it removed (spw_part_read: out of range). */
        atomic_store(&victims[i]->removed, 1);
        int u = spw_seg_unlink(p->dir, base);
        spw_seg_unref(victims[i]);
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
