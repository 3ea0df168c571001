/*
 * Segment files and their sparse index: see segment.h for the formats and
 * docs/formats/log.md for the full description. Everything here is single-
 * writer: the flusher (or recovery before the partition is live) appends;
 * readers only use the published atomics and pread.
 */
#include "log/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/crc32c.h"
#include "core/endian.h"
#include "core/error.h"
#include "core/id.h"
#include "log/fdcache.h"
#include "os/os.h"

void spw_seg_path(char *out, size_t cap, const char *dir, uint64_t base, const char *ext)
{
    snprintf(out, cap, "%s/%020" PRIu64 "%s", dir, base, ext);
}

int spw_seg_parse_name(const char *name, uint64_t *base)
{
    uint64_t v = 0;
    for (int i = 0; i < SPW_SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (strcmp(name + SPW_SEG_NAME_DIGITS, ".log") != 0)
        return 0;
    *base = v;
    return 1;
}

int spw_seg_open(const char *dir, uint64_t base, int create, spw_segment **out)
{
    char path[4096];
    int flags = O_RDWR | (create ? O_CREAT | O_EXCL : 0);
    spw_seg_path(path, sizeof path, dir, base, ".log");
    int fd = spw_os.open(path, flags, 0644);
    if (fd < 0)
        return fd;
    spw_seg_path(path, sizeof path, dir, base, ".idx");
    int ifd = spw_os.open(path, O_RDWR | O_CREAT | (create ? O_TRUNC : 0), 0644);
    if (ifd < 0) {
        spw_os.close(fd);
        return ifd;
    }
    if (create) {
        int r = spw_os_fsync_dir(dir);
        if (r < 0) {
            /* Take the new files back (best effort), so that a later roll
             * to the same base can create them again. */
            spw_os.close(fd);
            spw_os.close(ifd);
            spw_seg_unlink(dir, base);
            return r;
        }
    }
    spw_segment *s = spw_xcalloc(1, sizeof *s);
    s->base_offset = base;
    s->fd = fd;
    s->idx_fd = ifd;
    atomic_init(&s->size, 0);
    atomic_init(&s->end_offset, base);
    atomic_init(&s->max_ts, INT64_MIN);
    atomic_init(&s->idx_count, 0);
    struct stat st;
    int64_t now = spw_wall_ms();
    atomic_init(&s->mtime_ms, (!create && fstat(fd, &st) == 0) ? (int64_t)st.st_mtim.tv_sec * 1000 : now);
    s->created_ms = now;
    s->running_max_ts = INT64_MIN;
    s->synced = 1;
    atomic_init(&s->refs, 1);
    atomic_init(&s->removed, 0);
    *out = s;
    return 0;
}

void spw_seg_close(spw_segment *s)
{
    if (!s)
        return;
    spw__fdcache_forget(s);
    if (s->fd >= 0)
        spw_os.close(s->fd);
    if (s->idx_fd >= 0)
        spw_os.close(s->idx_fd);
    spw_free(s);
}

void spw_seg_ref(spw_segment *s) { atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); }

void spw_seg_unref(spw_segment *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        spw_seg_close(s);
}

int spw_seg_unlink(const char *dir, uint64_t base)
{
    char path[4096];
    spw_seg_path(path, sizeof path, dir, base, ".idx");
    int r1 = spw_os.unlink(path);
    spw_seg_path(path, sizeof path, dir, base, ".log");
    int r2 = spw_os.unlink(path);
    if (r2 < 0 && r2 != -ENOENT)
        return r2;
    return r1 < 0 && r1 != -ENOENT ? r1 : 0;
}

void spw_idx_encode(uint8_t out[SPW_IDX_ENTRY_LEN], const spw_idx_entry *e)
{
    spw_put32(out, e->rel_offset);
    spw_put32(out + 4, e->position);
    spw_put64(out + 8, (uint64_t)e->max_ts_before);
}

void spw_idx_decode(const uint8_t in[SPW_IDX_ENTRY_LEN], spw_idx_entry *e)
{
    e->rel_offset = spw_get32(in);
    e->position = spw_get32(in + 4);
    e->max_ts_before = (int64_t)spw_get64(in + 8);
}

static int read_entry(spw_segment *s, uint32_t i, spw_idx_entry *e)
{
    uint8_t b[SPW_IDX_ENTRY_LEN];
    ssize_t r = spw_os_pread_full(s->idx_fd, b, sizeof b, (off_t)i * SPW_IDX_ENTRY_LEN);
    if (r < 0)
        return (int)r;
    if (r != (ssize_t)sizeof b)
        return SPW_ECORRUPT;
    spw_idx_decode(b, e);
    return 0;
}

/* Binary search for the last entry satisfying pred (a prefix of entries
 * satisfies it); returns its position or 0. */
static int64_t lookup(spw_segment *s, int (*pred)(const spw_idx_entry *, const void *), const void *key,
                      spw_idx_entry *found)
{
    uint32_t n = atomic_load_explicit(&s->idx_count, memory_order_acquire);
    uint32_t lo = 0, hi = n; /* answer in [lo, hi): first index where pred fails */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        spw_idx_entry e = {0};
        int r = read_entry(s, mid, &e);
        if (r < 0)
            return r;
        if (pred(&e, key))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return 0;
    spw_idx_entry e = {0};
    int r = read_entry(s, lo - 1, &e);
    if (r < 0)
        return r;
    if (found)
        *found = e;
    return e.position;
}

static int pred_offset(const spw_idx_entry *e, const void *key)
{
    return e->rel_offset <= *(const uint64_t *)key;
}

static int pred_ts(const spw_idx_entry *e, const void *key) { return e->max_ts_before < *(const int64_t *)key; }

int64_t spw_seg_lookup_offset(spw_segment *s, uint64_t offset, uint64_t *at_offset)
{
    *at_offset = s->base_offset;
    if (offset <= s->base_offset)
        return 0;
    uint64_t rel = offset - s->base_offset;
    spw_idx_entry e = {0};
    int64_t pos = lookup(s, pred_offset, &rel, &e);
    if (pos > 0)
        *at_offset = s->base_offset + e.rel_offset;
    return pos;
}

int64_t spw_seg_lookup_ts(spw_segment *s, int64_t ts, uint64_t *at_offset)
{
    spw_idx_entry e = {0};
    int64_t pos = lookup(s, pred_ts, &ts, &e);
    *at_offset = pos > 0 ? s->base_offset + e.rel_offset : s->base_offset;
    return pos;
}

int spw_seg_index_note(spw_segment *s, const spw_batch_hdr *h, uint64_t pos, uint32_t interval, spw_idx_entry *e)
{
    /* The first entry comes after one interval: position 0 needs none. */
    int add = pos >= s->last_idx_pos + interval;
    if (add) {
        e->rel_offset = (uint32_t)(h->base_offset - s->base_offset);
        e->position = (uint32_t)pos;
        e->max_ts_before = s->running_max_ts;
        s->last_idx_pos = pos;
    }
    if (h->max_ts > s->running_max_ts)
        s->running_max_ts = h->max_ts;
    return add;
}

int spw_seg_scan(int fd, spw_scan *sc)
{
    sc->bad_err = 0;
    sc->bad_hdr_ok = 0;
    int r = spw_buf_reserve(&sc->buf, 1 << 16);
    if (r)
        return r;
    while (sc->pos < sc->file_size) {
        uint64_t left = sc->file_size - sc->pos;
        spw_batch_hdr h;
        uint8_t hb[SPW_BATCH_HEADER_LEN];
        ssize_t n = spw_os_pread_full(fd, hb, left < sizeof hb ? left : sizeof hb, (off_t)sc->pos);
        if (n < 0)
            return (int)n;
        r = spw_batch_parse(hb, (size_t)n, &h);
        if (r == 0) {
            sc->bad_hdr = h;
            sc->bad_hdr_ok = 1;
            if (h.base_offset != sc->offset)
                r = SPW_ECORRUPT;
            else if (h.length > left)
                r = SPW_ETRUNC;
        }
        if (r == 0 && sc->verify) {
            if ((r = spw_buf_reserve(&sc->buf, h.length)))
                return r;
            n = spw_os_pread_full(fd, sc->buf.p, h.length, (off_t)sc->pos);
            if (n < 0)
                return (int)n;
            r = n == (ssize_t)h.length ? spw_batch_verify(sc->buf.p, &h) : SPW_ETRUNC;
        }
        if (r) {
            sc->bad_err = r;
            return r;
        }
        sc->bad_hdr_ok = 0;
        if (sc->on_batch && (r = sc->on_batch(sc->arg, &h, sc->pos)))
            return r;
        sc->pos += h.length;
        sc->offset = spw_batch_next_offset(&h);
        if (h.max_ts > sc->max_ts)
            sc->max_ts = h.max_ts;
        sc->batches++;
    }
    return 0;
}

#define FIND_WINDOW (1u << 20)

/* Is a batch ending at succ confirmed: the data ends there (or only zeros
 * follow), or a whole batch with base offset `next` starts there? Its own
 * base_offset is outside its CRC, so a damaged one looks valid with other
 * offsets; the batch after it tells. 1, 0, or -errno. */
static int continued(int fd, uint64_t succ, uint64_t file_size, uint64_t next)
{
    if (succ >= file_size)
        return 1;
    uint8_t hb[SPW_BATCH_HEADER_LEN];
    spw_batch_hdr n;
    ssize_t got = spw_os_pread_full(fd, hb, file_size - succ < sizeof hb ? (size_t)(file_size - succ) : sizeof hb,
                                    (off_t)succ);
    if (got < 0)
        return (int)got;
    if ((size_t)got == sizeof hb && spw_batch_parse(hb, sizeof hb, &n) == 0 && n.base_offset == next &&
        n.length <= file_size - succ) {
        spw_buf b = SPW_BUF_INIT;
        int ok = spw_buf_reserve(&b, n.length);
        if (ok == 0) {
            ssize_t r = spw_os_pread_full(fd, b.p, n.length, (off_t)succ);
            ok = r < 0 ? (int)r : r == (ssize_t)n.length && spw_batch_verify(b.p, &n) == 0;
        }
        spw_buf_fini(&b);
        if (ok != 0)
            return ok;
    }
    /* zeros to the end (written ahead)? */
    uint8_t z[4096];
    for (uint64_t at = succ; at < file_size;) {
        size_t k = file_size - at < sizeof z ? (size_t)(file_size - at) : sizeof z;
        ssize_t r = spw_os_pread_full(fd, z, k, (off_t)at);
        if (r < 0)
            return (int)r;
        if ((size_t)r != k)
            return 0;
        for (size_t i = 0; i < k; i++)
            if (z[i])
                return 0;
        at += k;
    }
    return 1;
}

int spw_seg_find_valid(int fd, uint64_t from, uint64_t file_size, uint64_t after, spw_buf *buf, uint64_t *pos,
                       spw_batch_hdr *h)
{
    static const uint8_t magic[4] = {'S', 'P', 'W', 'B'}; /* SPW_BATCH_MAGIC, little-endian */
    uint8_t *win = spw_try_malloc(FIND_WINDOW);
    if (!win)
        return SPW_ENOMEM;
    int found = 0;
    uint64_t wpos = from;
    while (!found && wpos + SPW_BATCH_HEADER_LEN <= file_size) {
        size_t n = file_size - wpos < FIND_WINDOW ? (size_t)(file_size - wpos) : FIND_WINDOW;
        ssize_t got = spw_os_pread_full(fd, win, n, (off_t)wpos);
        if (got < 0) {
            found = (int)got;
            break;
        }
        if ((size_t)got < SPW_BATCH_HEADER_LEN)
            break;
        /* Magic at window index i (>= 16) means a batch at wpos + i - 16. */
        size_t i = 16;
        while (i + sizeof magic <= (size_t)got) {
            uint8_t *m = memmem(win + i, (size_t)got - i, magic, sizeof magic);
            if (!m)
                break;
            i = (size_t)(m - win);
            uint64_t q = wpos + i - 16;
            i++;
            uint8_t hb[SPW_BATCH_HEADER_LEN];
            spw_batch_hdr c;
            if (spw_os_pread_full(fd, hb, sizeof hb, (off_t)q) != (ssize_t)sizeof hb ||
                spw_batch_parse(hb, sizeof hb, &c) != 0 || c.base_offset <= after || c.length > file_size - q)
                continue;
            if (spw_buf_reserve(buf, c.length) != 0) {
                found = SPW_ENOMEM;
                break;
            }
            ssize_t r = spw_os_pread_full(fd, buf->p, c.length, (off_t)q);
            if (r < 0) {
                found = (int)r;
                break;
            }
            if (r == (ssize_t)c.length && spw_batch_verify(buf->p, &c) == 0 &&
                (found = continued(fd, q + c.length, file_size, spw_batch_next_offset(&c))) != 0) {
                if (found < 0)
                    break;
                *pos = q;
                *h = c;
                found = 1;
                break;
            }
        }
        if ((size_t)got < n || (size_t)got <= 19)
            break;
        wpos += (size_t)got - 19; /* the next window checks magic from where this one stopped */
    }
    spw_free(win);
    return found;
}

/* ---- recovery point ---- */

void spw_rp_encode(uint8_t out[SPW_RP_LEN], const spw_rp *rp)
{
    spw_put32(out, SPW_RP_MAGIC);
    spw_put32(out + 4, SPW_RP_VERSION);
    spw_put64(out + 8, rp->base);
    spw_put64(out + 16, rp->pos);
    spw_put64(out + 24, rp->offset);
    spw_put32(out + 32, spw_crc32c(out, 32));
}

int spw_rp_decode(const uint8_t *in, size_t len, spw_rp *rp)
{
    if (len != SPW_RP_LEN || spw_get32(in) != SPW_RP_MAGIC || spw_get32(in + 4) != SPW_RP_VERSION ||
        spw_get32(in + 32) != spw_crc32c(in, 32))
        return SPW_ECORRUPT;
    rp->base = spw_get64(in + 8);
    rp->pos = spw_get64(in + 16);
    rp->offset = spw_get64(in + 24);
    if (rp->offset < rp->base)
        return SPW_ECORRUPT;
    return 0;
}

int spw_rp_load(const char *dir, spw_rp *rp)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, SPW_RP_NAME);
    char *b;
    size_t n;
    int r = spw_os_read_file(path, SPW_RP_LEN, &b, &n);
    if (r == -ENOENT)
        return 0;
    if (r == -EFBIG)
        return SPW_ECORRUPT; /* not a recovery point: decode refuses any other length */
    if (r < 0)
        return r;
    r = spw_rp_decode((const uint8_t *)b, n, rp);
    spw_free(b);
    return r ? r : 1;
}

int spw_rp_store(const char *dir, const spw_rp *rp)
{
    uint8_t b[SPW_RP_LEN];
    spw_rp_encode(b, rp);
    return spw_os_write_file_atomic(dir, SPW_RP_NAME, SPW_RP_TMP_NAME, b, sizeof b, SPW_OS_SYNC_DATA);
}
