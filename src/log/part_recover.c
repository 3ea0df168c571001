/*
 * Partition recovery: at open (spw__part_recover_closed for every closed
 * segment, spw__part_recover_newest for the active one, below the recovery
 * point never cut) and of a failed partition (spw__part_recover, retried
 * with backoff by the flusher). One damage rule for all of it: a damaged
 * range is reported with where it ends (the next valid batch,
 * spw__part_find_hole_end, which reads use too), bytes cut from a tail are
 * saved aside first, and an index that does not fit its data is rebuilt.
 * docs/formats/log.md, "Damaged ranges".
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
    spw__part_note_index(c->p, c->s, h, pos);
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
int spw__part_find_hole_end(int fd, uint64_t bad, uint64_t size, uint64_t expect, uint64_t rp_pos, uint64_t rp_off,
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
int spw__part_recover_newest(spw_part *p, spw_segment *s, uint64_t rp_pos, uint64_t rp_off, spw_recovery_report *rep,
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
            int f = spw__part_find_hole_end(s->fd, bad, size, expect, rp_pos, rp_off, UINT64_MAX, &sc.buf, &next_pos,
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
            int f = spw__part_find_hole_end(s->fd, bad, size, expect, rp_pos, rp_off, UINT64_MAX, &sc.buf, &np, &no);
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
        int f = spw__part_find_hole_end(s->fd, bad, size, expect, 0, 0, next_base, &sc.buf, &next_pos, &next_off);
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
int spw__part_recover_closed(spw_part *p, spw_segment *s, uint64_t next_base, spw_recovery_report *rep)
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
 *      fdatasync, cut the spw__part_zeros;
 *   3. rebuild the index and the segment's end as recovery at open does
 *      (spw__part_recover_newest, with sync_pos as its recovery point), then take
 *      the end as the next offset.
 * Older segments were fsynced whole when they rolled and are not touched.
 * Returns 0 (the partition accepts appends again) or the error that stopped
 * it (it stays failed; nothing was lost that a retry cannot still keep).
 * REQUIRES: p failed, its fill and waiters empty (spw__part_fail did it),
 * and the caller is the flusher or p is unregistered (closing).
 */
static int recover(spw_part *p);

int spw__part_recover(spw_part *p)
{
    /* It may save a torn tail aside, a file in the directory: not once
     * retired (the path may be another partition's). */
    int r = spw__part_path_begin(p);
    if (r < 0)
        return r;
    r = recover(p);
    spw__part_path_end(p);
    return r;
}

static int recover(spw_part *p)
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
    r = spw_os_pwrite_all(s->fd, spw__part_zeros, RECOVER_PROBE_BYTES, (off_t)good);
    if (r == 0)
        r = spw_os.fdatasync(s->fd);
    int t = spw_os.ftruncate(s->fd, (off_t)good);
    if (r < 0 || (r = t) < 0)
        return r;
    uint64_t last_pos = UINT64_MAX;
    /* Readers see only offsets below written_end, which all validated; the
     * lock keeps them off the index while it is rebuilt. */
    pthread_rwlock_wrlock(&p->seg_lock);
    r = spw__part_recover_newest(p, s, from, from_offset, &rep, &last_pos);
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
    if (now_ms < p->recover_at_ms || atomic_load(&p->retired))
        return 0; /* retired: it stays failed until it closes */
    int r = spw__part_recover(p);
    if (r == 0)
        return 1;
    uint32_t b = p->recover_backoff_ms ? p->recover_backoff_ms * 2 : RECOVER_BACKOFF_MIN_MS;
    p->recover_backoff_ms = b > RECOVER_BACKOFF_MAX_MS ? RECOVER_BACKOFF_MAX_MS : b;
    p->recover_at_ms = now_ms + p->recover_backoff_ms;
    spw_warn("partition %s: recovery failed: %s; next attempt in %u ms", p->dir, spw_strerror(r),
             p->recover_backoff_ms);
    return 0;
}
