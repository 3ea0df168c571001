/*
 * Offline verification and dumping of segment files. check walks each
 * segment batch by batch with full CRC and record decoding; on a bad batch
 * it finds where the damage ends by the rule recovery uses (the next valid
 * batch whose offsets fit, docs/formats/log.md "Damaged ranges"), so each
 * damaged range is reported with the offsets reads will skip, and one
 * damaged range does not hide the state of the rest. In the newest
 * segment it reads the partition's recovery point: a bad tail after it is
 * reported as the torn tail the next open cuts (saving it aside first),
 * unless a whole batch whose offsets go on follows (damage in place, kept,
 * as recovery keeps it).
 */
#include "cli/check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/endian.h"
#include "core/error.h"
#include "catalog/hotkeys.h"
#include "log/format.h"
#include "log/segment.h"

typedef struct seg_file {
    uint64_t base;
    unsigned char *data;
    size_t size;
} seg_file;

static int load_file(const char *path, unsigned char **data, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *p = spw_xmalloc(n ? n : 1);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *data = p;
    *size = got;
    return 0;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Full check of one batch at p: header, CRC, records. */
static int batch_ok(const unsigned char *p, size_t avail, spw_batch_hdr *h, spw_buf *scratch, unsigned long long *records)
{
    int r = spw_batch_check(p, avail, h);
    if (r)
        return r;
    const uint8_t *recs;
    size_t len;
    if ((r = spw_batch_records(p, h, scratch, &recs, &len)))
        return r;
    spw_rec_iter it;
    spw_record_view rv;
    spw_rec_iter_init(&it, h, recs, len);
    uint32_t n = 0;
    while ((r = spw_rec_next(&it, &rv)) == 1)
        n++;
    if (r < 0)
        return r;
    *records += n;
    return 0;
}

/*
 * Where a damaged range that starts at from - 1 (where offset `expect`
 * should have begun) ends, by the rule recovery uses (docs/formats/log.md,
 * "Damaged ranges"): the next fully valid batch whose base offset is past
 * expect and whose offsets fit — below the recovery point (rp_pos, rp_off)
 * ending by rp_off, at or after it starting at rp_off or later; every one
 * ending by limit (the next segment's base), and confirmed by the batch
 * after it continuing its offsets or by the end of the data (base_offset is
 * outside the CRC). Returns its position, or size when none follows; *h is
 * its header.
 */
static size_t resync(const unsigned char *d, size_t size, size_t from, uint64_t expect, uint64_t rp_pos,
                     uint64_t rp_off, uint64_t limit, spw_buf *scratch, spw_batch_hdr *h)
{
    unsigned long long dummy = 0;
    for (size_t q = from; q + SPW_BATCH_HEADER_LEN <= size; q++) {
        if (spw_get32(d + q + 16) != SPW_BATCH_MAGIC)
            continue;
        if (batch_ok(d + q, size - q, h, scratch, &dummy) != 0 || h->base_offset <= expect)
            continue;
        uint64_t end = spw_batch_next_offset(h);
        if (!(end <= limit && (q < rp_pos ? end <= rp_off : rp_pos == 0 || h->base_offset >= rp_off)))
            continue;
        /* confirmed by the next batch continuing its offsets, or at the end
         * of the data (base_offset is outside the CRC) */
        size_t succ = q + h->length;
        spw_batch_hdr h2;
        if (succ >= size || all_zero(d + succ, size - succ) ||
            (batch_ok(d + succ, size - succ, &h2, scratch, &dummy) == 0 && h2.base_offset == end))
            return q;
    }
    return size;
}

static void check_index(const char *dir, const seg_file *sf, FILE *out, spw_check_result *res)
{
    char path[4096];
    spw_seg_path(path, sizeof path, dir, sf->base, ".idx");
    unsigned char *ix;
    size_t n;
    if (load_file(path, &ix, &n) < 0) {
        fprintf(out, "INDEX %s: missing (rebuilt when the partition opens)\n", path);
        res->index_issues++;
        return;
    }
    if (n % SPW_IDX_ENTRY_LEN) {
        fprintf(out, "INDEX %s: size %zu is not a multiple of %d\n", path, n, SPW_IDX_ENTRY_LEN);
        res->index_issues++;
    }
    for (size_t i = 0; i + SPW_IDX_ENTRY_LEN <= n; i += SPW_IDX_ENTRY_LEN) {
        spw_idx_entry e;
        spw_batch_hdr h;
        spw_idx_decode(ix + i, &e);
        if (e.position >= sf->size || spw_batch_parse(sf->data + e.position, sf->size - e.position, &h) ||
            h.base_offset != sf->base + e.rel_offset) {
            fprintf(out, "INDEX %s: entry %zu (offset %" PRIu64 ", position %" PRIu32
                         ") does not point at its batch\n",
                    path, i / SPW_IDX_ENTRY_LEN, sf->base + e.rel_offset, e.position);
            res->index_issues++;
            break;
        }
    }
    spw_free(ix);
}

static int check_partition(const char *dir, FILE *out, spw_check_result *res)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    uint64_t *bases = NULL;
    size_t nb = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t b;
        if (strstr(de->d_name, ".log.cut-"))
            fprintf(out, "NOTE %s/%s: bytes cut by recovery after the recovery point, saved aside (not part of the "
                         "log)\n",
                    dir, de->d_name);
        if (!spw_seg_parse_name(de->d_name, &b))
            continue;
        if (nb == cap) {
            cap = cap ? cap * 2 : 16;
            bases = spw_xrealloc(bases, cap * sizeof *bases);
        }
        bases[nb++] = b;
    }
    closedir(d);
    for (size_t i = 1; i < nb; i++) /* insertion sort: few segments */
        for (size_t j = i; j > 0 && bases[j - 1] > bases[j]; j--) {
            uint64_t t = bases[j];
            bases[j] = bases[j - 1];
            bases[j - 1] = t;
        }
    res->partitions++;
    spw_rp rp;
    int have_rp = spw_rp_load(dir, &rp);
    if (have_rp < 0) {
        fprintf(out, "RECOVERY-POINT %s/%s: %s (ignored when the partition opens)\n", dir, SPW_RP_NAME,
                spw_strerror(have_rp));
        res->index_issues++;
        have_rp = 0;
    } else if (have_rp && nb && rp.base > bases[nb - 1]) {
        fprintf(out, "RECOVERY-POINT %s/%s: names segment %020" PRIu64 ", which does not exist (ignored)\n", dir,
                SPW_RP_NAME, rp.base);
        res->index_issues++;
        have_rp = 0;
    }
    spw_buf scratch = SPW_BUF_INIT;
    uint64_t expect = nb ? bases[0] : 0;
    for (size_t i = 0; i < nb; i++) {
        char path[4096];
        seg_file sf = {.base = bases[i]};
        spw_seg_path(path, sizeof path, dir, bases[i], ".log");
        if (load_file(path, &sf.data, &sf.size) < 0) {
            fprintf(out, "DAMAGED %s: cannot read: %s\n", path, strerror(errno));
            res->damaged++;
            continue;
        }
        res->segments++;
        res->bytes += sf.size;
        if (expect != sf.base) {
            fprintf(out, "DAMAGED %s: offsets %" PRIu64 "..%" PRIu64 " are missing before this segment\n", path,
                    expect, sf.base - 1);
            res->damaged++;
        }
        expect = sf.base;
        int newest = i + 1 == nb;
        uint64_t limit = newest ? UINT64_MAX : bases[i + 1];
        /* The recovery point: in the newest segment, below it nothing is
         * ever cut (damage there is a damaged range, kept); after it a bad
         * tail is cut when the partition opens, saved aside first. */
        uint64_t rp_pos = 0, rp_off = 0;
        if (newest && have_rp && rp.base == sf.base) {
            rp_pos = rp.pos;
            rp_off = rp.offset;
        }
        size_t pos = 0;
        while (pos < sf.size) {
            spw_batch_hdr h;
            int r = batch_ok(sf.data + pos, sf.size - pos, &h, &scratch, &res->records);
            if (r == 0 && h.base_offset != expect)
                r = SPW_ECORRUPT;
            if (r == 0) {
                res->batches++;
                expect = spw_batch_next_offset(&h);
                pos += h.length;
                continue;
            }
            int below = pos < rp_pos;
            /* Zeros to the end of the newest segment, after the recovery
             * point: written ahead by the log for small appends, or by a
             * crash before a write; not data, and opening the partition
             * cuts them. */
            if (newest && !below && all_zero(sf.data + pos, sf.size - pos)) {
                fprintf(out, "NOTE %s: %zu zero bytes after the last batch (written ahead; cut when the partition "
                             "opens)\n",
                        path, sf.size - pos);
                break;
            }
            /* Damage: find where it ends. A header that still parses,
             * followed by a valid batch exactly where its length says with
             * the next offset, proves it; otherwise the next valid batch. */
            spw_batch_hdr bh;
            size_t next = sf.size;
            uint64_t next_off;
            unsigned long long dummy = 0;
            int hdr_ok = spw_batch_parse(sf.data + pos, sf.size - pos, &bh) == 0 && bh.base_offset == expect &&
                         bh.length <= sf.size - pos;
            if (hdr_ok && pos + bh.length < sf.size &&
                batch_ok(sf.data + pos + bh.length, sf.size - pos - bh.length, &h, &scratch, &dummy) == 0 &&
                h.base_offset == spw_batch_next_offset(&bh)) {
                next = pos + bh.length;
                next_off = h.base_offset;
            } else if (newest && !below &&
                       (next = resync(sf.data, sf.size, pos + 1, expect, rp_pos, rp_off, limit, &scratch, &h)) >=
                           sf.size) {
                fprintf(out,
                        "DAMAGED %s: bytes %zu..%zu (from offset %" PRIu64 "): %s (after the recovery point: a torn "
                        "tail, cut when the partition opens; the bytes are saved aside first)\n",
                        path, pos, sf.size - 1, expect, spw_strerror(r));
                res->damaged++;
                break;
            } else {
                /* (after the recovery point, resync already ran above and
                 * found a whole batch after the damage: damage in place, as
                 * recovery keeps it) */
                if (!(newest && !below))
                    next = resync(sf.data, sf.size, pos + 1, expect, rp_pos, rp_off, limit, &scratch, &h);
                if (next < sf.size)
                    next_off = h.base_offset;
                else if (below)
                    next = rp_pos < sf.size ? (size_t)rp_pos : sf.size, next_off = rp_off;
                else
                    next_off = limit;
            }
            fprintf(out, "DAMAGED %s: bytes %zu..%zu (offsets %" PRIu64 "..%" PRIu64 "): %s%s; kept, reads of it fail\n",
                    path, pos, (next < sf.size ? next : sf.size) - 1, expect, next_off - 1, spw_strerror(r),
                    next >= sf.size ? " (to end of segment)" : "");
            res->damaged++;
            expect = next_off;
            pos = next;
        }
        if (newest && rp_pos > sf.size && expect < rp_off) {
            fprintf(out,
                    "DAMAGED %s: %zu bytes but the recovery point says %" PRIu64 " were fsynced: bytes %zu..%" PRIu64
                    " (offsets %" PRIu64 "..%" PRIu64 ") are lost; kept as a damaged range when the partition opens\n",
                    path, sf.size, rp_pos, sf.size, rp_pos - 1, expect, rp_off - 1);
            res->damaged++;
        }
        check_index(dir, &sf, out, res);
        spw_free(sf.data);
    }
    spw_buf_fini(&scratch);
    spw_free(bases);
    return 0;
}

/* nftw state: directories holding segments. */
static char **found;
static size_t nfound, capfound;

/* nftw state: hot_keys files (docs/formats/hotkeys.md). */
static char **hot;
static size_t nhot, caphot;

static int visit(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag != FTW_F)
        return 0;
    const char *slash = strrchr(path, '/');
    uint64_t b;
    if (strcmp(slash ? slash + 1 : path, "hot_keys") == 0) {
        if (nhot == caphot) {
            caphot = caphot ? caphot * 2 : 8;
            hot = spw_xrealloc(hot, caphot * sizeof *hot);
        }
        hot[nhot++] = spw_xstrdup(path);
        return 0;
    }
    if (!spw_seg_parse_name(slash ? slash + 1 : path, &b))
        return 0;
    size_t dl = slash ? (size_t)(slash - path) : 1;
    char *dir = spw_xmalloc(dl + 1);
    memcpy(dir, slash ? path : ".", dl);
    dir[dl] = 0;
    for (size_t i = 0; i < nfound; i++)
        if (strcmp(found[i], dir) == 0) {
            spw_free(dir);
            return 0;
        }
    if (nfound == capfound) {
        capfound = capfound ? capfound * 2 : 16;
        found = spw_xrealloc(found, capfound * sizeof *found);
    }
    found[nfound++] = dir;
    return 0;
}

/* A stream's record of its automatic hot-key splits: whole, or damage
 * the server answers by starting the stream without those splits. */
static void check_hot_keys(const char *path, FILE *out, spw_check_result *res)
{
    unsigned char *p;
    size_t n;
    uint32_t count;
    const char *why;
    res->hot_keys_files++;
    if (load_file(path, &p, &n) < 0) {
        fprintf(out, "DAMAGED %s: cannot read: %s\n", path, strerror(errno));
        res->damaged++;
        return;
    }
    if ((why = spw_hot_file_check(p, n, &count)) != NULL) {
        fprintf(out, "DAMAGED %s: %s (docs/formats/hotkeys.md); the server starts the stream without its automatic "
                     "hot-key splits, and the next split rewrites the file\n",
                path, why);
        res->damaged++;
    }
    spw_free(p);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int spw_check_dir(const char *dir, FILE *out, spw_check_result *res)
{
    memset(res, 0, sizeof *res);
    struct stat st;
    if (stat(dir, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    nfound = 0;
    if (nftw(dir, visit, 32, FTW_PHYS) < 0)
        return -errno;
    if (nfound)
        qsort(found, nfound, sizeof *found, cmp_str);
    int r = 0;
    for (size_t i = 0; i < nfound; i++) {
        int e = check_partition(found[i], out, res);
        if (e < 0 && !r)
            r = e;
        spw_free(found[i]);
    }
    spw_free(found);
    found = NULL;
    nfound = capfound = 0;
    if (nhot) /* hot is NULL then: qsort's first argument must not be */
        qsort(hot, nhot, sizeof *hot, cmp_str);
    for (size_t i = 0; i < nhot; i++) {
        check_hot_keys(hot[i], out, res);
        spw_free(hot[i]);
    }
    spw_free(hot);
    hot = NULL;
    nhot = caphot = 0;
    return r;
}

static void put_bytes(FILE *out, const uint8_t *p, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc((int)c, out);
        else
            fprintf(out, "\\x%02x", c);
    }
    fputc('"', out);
}

int spw_dump_segment(const char *path, FILE *out, int headers_only)
{
    unsigned char *d;
    size_t size;
    int r = load_file(path, &d, &size);
    if (r < 0)
        return r;
    static const char *comp[] = {"none", "lz4", "zstd", "?"};
    spw_buf scratch = SPW_BUF_INIT;
    size_t pos = 0;
    int damaged = 0;
    while (pos < size) {
        spw_batch_hdr h;
        r = spw_batch_check(d + pos, size - pos, &h);
        if (r && all_zero(d + pos, size - pos)) {
            fprintf(out, "position=%zu: %zu zero bytes to the end (written ahead, not data)\n", pos, size - pos);
            break;
        }
        if (r) {
            fprintf(out, "position=%zu DAMAGED: %s (%zu bytes left)\n", pos, spw_strerror(r), size - pos);
            damaged = 1;
            break;
        }
        fprintf(out,
                "batch position=%zu base_offset=%" PRIu64 " count=%" PRIu32 " length=%" PRIu32 " crc=%08" PRIx32
                " compression=%s first_ts=%" PRId64 " max_ts=%" PRId64 " base_id=%" PRIu64 " producer_id=%" PRIu64
                " producer_seq=%" PRIu32 " idem_hash=%016" PRIx64 "\n",
                pos, h.base_offset, h.record_count, h.length, h.crc, comp[h.attributes & 3], h.first_ts, h.max_ts,
                h.base_id, h.producer_id, h.producer_seq, h.idem_hash);
        if (!headers_only) {
            const uint8_t *recs;
            size_t len;
            spw_rec_iter it;
            spw_record_view rv;
            if ((r = spw_batch_records(d + pos, &h, &scratch, &recs, &len)) == 0) {
                spw_rec_iter_init(&it, &h, recs, len);
                while ((r = spw_rec_next(&it, &rv)) == 1) {
                    fprintf(out, "  offset=%" PRIu64 " id=%" PRIu64 " ts=%" PRId64, rv.offset, rv.id, rv.ts);
                    if (h.attributes & SPW_BATCH_ATTR_VERSIONED)
                        fprintf(out, " version=%" PRIu64, rv.version);
                    fputs(" key=", out);
                    if (rv.key_len < 0)
                        fputs("null", out);
                    else
                        put_bytes(out, rv.key, (size_t)rv.key_len);
                    fputs(" value=", out);
                    put_bytes(out, rv.value, rv.value_len);
                    const uint8_t *hp = rv.headers;
                    spw_kv kv;
                    while (spw_kv_next(&hp, rv.headers + rv.headers_len, &kv) == 1) {
                        fputs(" header:", out);
                        put_bytes(out, kv.key, kv.key_len);
                        fputc('=', out);
                        put_bytes(out, kv.value, kv.value_len);
                    }
                    fputc('\n', out);
                }
            }
            if (r < 0) {
                fprintf(out, "  DAMAGED records: %s\n", spw_strerror(r));
                damaged = 1;
            }
        }
        pos += h.length;
    }
    spw_buf_fini(&scratch);
    spw_free(d);
    return damaged;
}
