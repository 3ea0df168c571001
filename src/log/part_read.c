/*
 * Partition reads: by offset (spw_part_read, which sees only durable
 * records and reports a damaged range with the offset to resume at), by
 * time (spw_part_offset_for_ts) and batch header scans. Readers hold
 * seg_lock (for reading) only to find a segment and take a reference to
 * it, never across I/O: the flusher's roll takes it for writing, and an
 * ack must not wait for a 64 MiB pread. The reference keeps the segment
 * (and, pinned, its fds: log/fdcache.h) alive while it is read, even if
 * retention removes it meanwhile. Base offsets are not under the CRC and
 * are checked by continuity from the index entry.
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
 * so out holds only kept batches. REQUIRES: s pinned.
 * Returns batches kept, SPW_ECORRUPT, READ_MISLED, or -errno.
 */
static int read_from(spw_segment *s, uint64_t pos, uint64_t first, uint64_t offset, uint64_t end, size_t max_bytes,
                     spw_buf *out, uint64_t *bad_next)
{
    uint64_t size = atomic_load_explicit(&s->size, memory_order_acquire);
    /* Large windows for scans; a read of one batch (max_bytes 1: a point
     * read, a history read's) starts small — the index entry is at most
     * an index interval before it — and grows if the batch is larger. */
    size_t want = max_bytes <= 1 ? (16u << 10) : max_bytes < (64u << 10) ? (64u << 10) : max_bytes;
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
        if ((size_t)got < n)
            size = pos + (uint64_t)got; /* cut meanwhile (recovery of a failed partition, past what is read) */
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
                     * next valid batch, as recovery decides (spw__part_find_hole_end). */
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
    if (offset < atomic_load(&p->start_offset)) {
        pthread_rwlock_unlock(&p->seg_lock);
        return SPW_ERANGE;
    }
    size_t i = spw__part_segs_find(p, offset);
    spw_segment *s = p->segs[i];
    spw_seg_ref(s);
    uint64_t next_base = i + 1 < p->nsegs ? p->segs[i + 1]->base_offset : end;
    pthread_rwlock_unlock(&p->seg_lock);
    int r = spw_seg_pin(s);
    if (r < 0) {
        /* Deleted by retention since it was found: what was asked is gone. */
        if (atomic_load(&s->removed))
            r = SPW_ERANGE;
        spw_seg_unref(s);
        return r;
    }
    uint64_t first;
    int64_t pos = spw_seg_lookup_offset(s, offset, &first);
    if (pos < 0) {
        /* The index is a hint (being rebuilt by recovery, or unreadable):
         * scan the segment from its start. */
        pos = 0;
        first = s->base_offset;
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
            *bad_next = next_base;
        r = SPW_ECORRUPT;
    }
    spw_seg_unpin(s);
    spw_seg_unref(s);
    return r;
}

int spw_part_scan_headers(spw_part *p, int64_t since_ms, void (*cb)(void *arg, const spw_batch_hdr *h), void *arg)
{
    uint64_t end = atomic_load_explicit(&p->written_end, memory_order_acquire);
    int r = 0;
    size_t nsegs;
    spw_segment **segs = spw__part_segs_take(p, &nsegs);
    for (size_t i = 0; i < nsegs && r == 0; i++) {
        spw_segment *s = segs[i];
        if (atomic_load_explicit(&s->mtime_ms, memory_order_relaxed) < since_ms)
            continue;
        if ((r = spw_seg_pin(s)) < 0) {
            if (!atomic_load(&s->removed))
                break;
            r = 0; /* deleted by retention meanwhile: the next one */
            continue;
        }
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
        spw_seg_unpin(s);
    }
    spw__part_segs_drop(segs, nsegs);
    return r;
}

int spw_part_offset_for_ts(spw_part *p, int64_t ts_ms, uint64_t *offset)
{
    uint64_t end = atomic_load_explicit(&p->durable_end, memory_order_acquire);
    *offset = end;
    int r = 0;
    spw_buf buf = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    size_t nsegs;
    spw_segment **segs = spw__part_segs_take(p, &nsegs);
    spw_segment *pinned = NULL;
    for (size_t i = 0; i < nsegs; i++) {
        spw_segment *s = segs[i];
        if (atomic_load_explicit(&s->max_ts, memory_order_acquire) < ts_ms)
            continue;
        if ((r = spw_seg_pin(s)) < 0) {
            if (!atomic_load(&s->removed))
                break;
            r = 0; /* deleted by retention meanwhile: the next one */
            continue;
        }
        pinned = s;
        uint64_t expect;
        int64_t pos = spw_seg_lookup_ts(s, ts_ms, &expect);
        if (pos < 0) {
            pos = 0; /* the index is a hint: scan from the start */
            expect = s->base_offset;
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
        spw_seg_unpin(s);
        pinned = NULL;
    }
out:
    if (pinned)
        spw_seg_unpin(pinned);
    spw__part_segs_drop(segs, nsegs);
    spw_buf_fini(&buf);
    spw_buf_fini(&scratch);
    return r;
}
