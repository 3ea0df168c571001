/*
 * Damage and recovery against the recovery point (docs/formats/log.md,
 * "Recovery point" and "Recovery rules"):
 *   - a zeroed sector, or flipped bits in a batch header, in the middle of
 *     the newest segment below the recovery point: after reopening every
 *     batch after the damaged range is still there and readable, nothing is
 *     cut, the range is reported (report fields) and reads of its offsets
 *     fail with SPW_ECORRUPT and bad_next at its end;
 *   - a batch right after a damaged range whose base_offset (outside the
 *     CRC) is damaged too does not end the range with wrong offsets: only a
 *     batch the next one continues does;
 *   - the same in a closed segment: reads skip only the damaged range, not
 *     the rest of the segment; also in its first batch, and in its last
 *     (the range then runs to the segment's end: the partition still
 *     opens);
 *   - damage after the recovery point: a zeroed header with whole batches
 *     after it is damage in place (kept, reported: that data was fsynced,
 *     maybe acknowledged), and a torn end after those is still cut; with
 *     nothing whole after the damage the cut is allowed, but the bytes cut
 *     are in the saved-aside file first;
 *   - an index whose entries point past pages that never reached the disk
 *     (the index was written before the data): recovery does not trust
 *     it, it verifies from the start of the segment and reports the lost
 *     pages as a damaged range (every batch after them is whole);
 *   - an .idx file far larger than its segment could need: rebuilt, not
 *     read (its size is not trusted for an allocation);
 *   - the flusher writes the recovery point after an fdatasync, naming
 *     exactly what was synced;
 *   - `spillway check` reports each damaged range with the offsets
 *     recovery gives it, and a tail after the recovery point as one;
 *   - a failed fdatasync followed by the rewrite of what it covered, with a
 *     page evicted between verification and rewrite (a pread hook returns
 *     the zeros the disk holds): the bytes written back are the verified
 *     ones, so the data reads back intact, also after a reopen.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cli/check.h"
#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "log/segment.h"
#include "os/os.h"
#include "test.h"

/* ---- records: the value is a function of the offset ---- */

static void value_of(char *v, size_t cap, uint64_t off)
{
    snprintf(v, cap, "value-%llu-padding-padding-padding", (unsigned long long)off);
}

static uint64_t append_one(spw_part *p, spw_ack ack)
{
    spw_part_state st;
    spw_part_state_get(p, &st);
    char v[80];
    value_of(v, sizeof v, st.next_offset);
    spw_record r = {.key_len = -1, .value = v, .value_len = (uint32_t)strlen(v), .ts = 1000 + (int64_t)st.next_offset};
    spw_append_result res = {0};
    CHECK_OK(spw_part_append_wait(p, &r, 1, NULL, ack, &res));
    CHECK_EQ(res.base_offset, st.next_offset);
    return res.base_offset;
}

/* Reads offset off: 1 if it holds its value, else the read's result
 * (SPW_ECORRUPT with *bad_next, ...). */
static int read_value(spw_part *p, uint64_t off, uint64_t *bad_next)
{
    spw_buf b = SPW_BUF_INIT;
    int n = spw_part_read(p, off, 4096, &b, bad_next);
    if (n < 1) {
        spw_buf_fini(&b);
        return n;
    }
    spw_batch_hdr h;
    CHECK_OK(spw_batch_check(b.p, b.len, &h));
    spw_rec_iter it;
    spw_record_view rv;
    spw_rec_iter_init(&it, &h, b.p + SPW_BATCH_HEADER_LEN, h.length - SPW_BATCH_HEADER_LEN);
    int found = 0;
    while (spw_rec_next(&it, &rv) == 1)
        if (rv.offset == off) {
            char v[80];
            value_of(v, sizeof v, off);
            CHECK_EQ(rv.value_len, strlen(v));
            CHECK(memcmp(rv.value, v, rv.value_len) == 0);
            found = 1;
        }
    spw_buf_fini(&b);
    CHECK(found);
    return 1;
}

/* ---- files ---- */

static uint8_t *load(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    uint8_t *d = malloc((size_t)st.st_size + 1);
    CHECK(d != NULL);
    CHECK_EQ(pread(fd, d, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return d;
}

static void patch(const char *path, uint64_t pos, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_EQ(pwrite(fd, b, n, (off_t)pos), (ssize_t)n);
    close(fd);
}

/* Flips the bits mask of the byte at pos of the file at path. */
static void flip_byte(const char *path, uint64_t pos, uint8_t mask)
{
    uint8_t b;
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)pos) == 1);
    b ^= mask;
    CHECK(pwrite(fd, &b, 1, (off_t)pos) == 1);
    close(fd);
}

static void seg_path(char *out, size_t cap, const char *dir, uint64_t base, const char *ext)
{
    spw_seg_path(out, cap, dir, base, ext);
}

/* Batch positions of a segment file: pos[i], base[i], len[i] for i < *n. */
typedef struct batches {
    uint64_t pos[4096], base[4096];
    uint32_t len[4096], count[4096];
    size_t n;
} batches;

static void list_batches(const char *path, batches *bt)
{
    size_t len;
    uint8_t *d = load(path, &len);
    bt->n = 0;
    size_t pos = 0;
    spw_batch_hdr h;
    while (pos < len && spw_batch_check(d + pos, len - pos, &h) == 0) {
        CHECK(bt->n < 4096);
        bt->pos[bt->n] = pos;
        bt->base[bt->n] = h.base_offset;
        bt->len[bt->n] = h.length;
        bt->count[bt->n] = h.record_count;
        bt->n++;
        pos += h.length;
    }
    free(d);
}

static spw_part_config cfg(uint64_t segment_bytes, uint32_t index_interval)
{
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = segment_bytes;
    pc.index_interval_bytes = index_interval;
    return pc;
}

/* The range [lo, hi) of offsets held by batches touching bytes [a, b). */
static void offsets_touching(const batches *bt, uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi)
{
    *lo = UINT64_MAX;
    *hi = 0;
    for (size_t i = 0; i < bt->n; i++)
        if (bt->pos[i] < b && bt->pos[i] + bt->len[i] > a) {
            if (bt->base[i] < *lo)
                *lo = bt->base[i];
            *hi = bt->base[i] + bt->count[i];
        }
}

/* After damage to offsets [lo, hi): everything else reads back, every
 * damaged offset fails with bad_next == hi. */
static void check_reads(spw_part *p, uint64_t end, uint64_t lo, uint64_t hi)
{
    for (uint64_t o = 0; o < end; o++) {
        uint64_t bad_next = 0;
        int r = read_value(p, o, &bad_next);
        if (o >= lo && o < hi) {
            if (r != SPW_ECORRUPT || bad_next != hi)
                fprintf(stderr, "offset %llu (damaged %llu..%llu): read %d, bad_next %llu\n", (unsigned long long)o,
                        (unsigned long long)lo, (unsigned long long)hi - 1, r, (unsigned long long)bad_next);
            CHECK_EQ(r, SPW_ECORRUPT);
            CHECK_EQ(bad_next, hi);
        } else {
            if (r != 1)
                fprintf(stderr, "offset %llu (damaged %llu..%llu): read %d\n", (unsigned long long)o,
                        (unsigned long long)lo, (unsigned long long)hi - 1, r);
            CHECK_EQ(r, 1);
        }
    }
}

/* `spillway check` on the damaged directory reports the damaged range with
 * the offsets recovery gives it (one DAMAGED line containing want). */
static void check_reports(const char *dir, const char *want)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    spw_check_result res;
    CHECK_OK(spw_check_dir(dir, f, &res));
    fclose(f);
    if (!strstr(buf, want) || res.damaged != 1)
        fprintf(stderr, "spillway check %s: want one DAMAGED line with \"%s\", got:\n%s", dir, want, buf);
    CHECK(strstr(buf, want) != NULL);
    CHECK_EQ(res.damaged, 1);
    free(buf);
}

static void check_reports_hole(const char *dir, uint64_t lo, uint64_t hi)
{
    char want[128];
    snprintf(want, sizeof want, "(offsets %llu..%llu)", (unsigned long long)lo, (unsigned long long)hi - 1);
    check_reports(dir, want);
}

/* The dedupe rebuild's header walk and lookups by time go on after a
 * damaged range: every batch outside [lo, hi) is seen (and those inside
 * whose headers still parse, at most: headers only, no CRC), and each of
 * their timestamps (1000 + offset) maps back to its offset. Batches hold
 * one record each here. */
static void count_hdr(void *arg, const spw_batch_hdr *h)
{
    (void)h;
    (*(uint64_t *)arg)++;
}

static void check_walks(spw_part *p, uint64_t end, uint64_t lo, uint64_t hi)
{
    uint64_t seen = 0;
    CHECK_OK(spw_part_scan_headers(p, 0, count_hdr, &seen));
    if (seen < end - (hi - lo) || seen > end)
        fprintf(stderr, "header walk saw %llu batches, want %llu..%llu\n", (unsigned long long)seen,
                (unsigned long long)(end - (hi - lo)), (unsigned long long)end);
    CHECK(seen >= end - (hi - lo) && seen <= end);
    for (uint64_t o = hi; o < end; o += 7) {
        uint64_t got = UINT64_MAX;
        CHECK_OK(spw_part_offset_for_ts(p, 1000 + (int64_t)o, &got));
        CHECK_EQ(got, o);
    }
}

/* Reopens the partition at dir after damage below its recovery point:
 * nothing cut, one hole reported, the next offset still n. */
static spw_part *reopen_one_hole(spw_log *log, const char *dir, const spw_part_config *pc, uint64_t n,
                                 spw_recovery_report *rep)
{
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, pc, &p, rep));
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK_EQ(st.next_offset, n);
    CHECK_EQ(rep->truncated_bytes, 0);
    CHECK_EQ(rep->holes, 1);
    return p;
}

/* n fsync'd appends to a fresh partition at dir, closed (the recovery
 * point is then the end); the batches of its segment 0, whose path goes
 * into path. The caller frees the list. */
static batches *fill_closed(spw_log *log, const char *dir, const spw_part_config *pc, uint64_t n, char *path,
                            size_t cap)
{
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, pc, &p, NULL));
    for (uint64_t i = 0; i < n; i++)
        append_one(p, SPW_ACK_FSYNC);
    spw_part_close(p);
    seg_path(path, cap, dir, 0, ".log");
    batches *bt = calloc(1, sizeof *bt);
    CHECK(bt != NULL);
    list_batches(path, bt);
    CHECK_EQ(bt->n, n);
    return bt;
}

/* ---- 8: damage below the recovery point, newest segment ---- */

enum { ZERO_SECTOR, FLIP_LENGTH, FLIP_COUNT };

static void test_newest_below_rp(spw_log *log, const char *dir, int how, uint32_t index_interval)
{
    spw_part_config pc = cfg(1u << 20, index_interval);
    spw_part *p;
    const uint64_t n = 300;
    char path[4200];
    batches *bt = fill_closed(log, dir, &pc, n, path, sizeof path);
    size_t k = n / 2;
    uint64_t lo, hi;
    if (how == ZERO_SECTOR) {
        uint64_t a = bt->pos[k] & ~(uint64_t)511;
        static const uint8_t z[512];
        patch(path, a, z, sizeof z);
        offsets_touching(bt, a, a + 512, &lo, &hi);
    } else {
        /* Bits of the length (byte 9: +-512 bytes) or of the record count. */
        flip_byte(path, bt->pos[k] + (how == FLIP_LENGTH ? 9 : 25), 0x02);
        lo = bt->base[k];
        hi = lo + bt->count[k];
    }
    check_reports_hole(dir, lo, hi);
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    spw_part_state st;
    spw_part_state_get(p, &st);
    if (st.next_offset != n)
        fprintf(stderr, "damage at offsets %llu..%llu below the recovery point: next offset %llu after reopen, "
                        "want %llu (cut %llu bytes)\n",
                (unsigned long long)lo, (unsigned long long)hi - 1, (unsigned long long)st.next_offset,
                (unsigned long long)n, (unsigned long long)rep.truncated_bytes);
    CHECK_EQ(st.next_offset, n);
    CHECK_EQ(rep.truncated_bytes, 0);
    CHECK_EQ(rep.holes, 1);
    CHECK_EQ(rep.damaged_batches, 1);
    CHECK_EQ(rep.hole_offsets, hi - lo);
    check_reads(p, n, lo, hi);
    check_walks(p, n, lo, hi);
    /* Appends go on after the kept data. */
    CHECK_EQ(append_one(p, SPW_ACK_FSYNC), n);
    spw_part_close(p);
    /* And a second open finds the same, and nothing to cut. */
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    CHECK_EQ(rep.holes, 1);
    check_reads(p, n + 1, lo, hi);
    spw_part_close(p);
    free(bt);
}

/* ---- 8: a damaged base_offset right after a damaged range ---- */

/* base_offset is outside the CRC. A zeroed header at batch k and bit 8 of
 * batch k+1's base_offset flipped (101 -> 357): k+1 still has a valid CRC,
 * offsets that go on past the damage and fit below the recovery point, but
 * the batch after it (102) does not continue them. The range must not end
 * at k+1 (its records would be read at offsets 357.. and the following
 * batches reported damaged): it ends at k+2, and every other offset reads
 * its own record. */
static void test_base_in_hole(spw_log *log, const char *dir)
{
    spw_part_config pc = cfg(1u << 20, 4096);
    spw_part *p;
    const uint64_t n = 600;
    char path[4200];
    batches *bt = fill_closed(log, dir, &pc, n, path, sizeof path);
    size_t k = 100;
    static const uint8_t z[SPW_BATCH_HEADER_LEN];
    patch(path, bt->pos[k], z, sizeof z);
    flip_byte(path, bt->pos[k + 1] + 1, 0x01); /* bit 8 of base_offset */
    check_reports_hole(dir, bt->base[k], bt->base[k + 2]);
    spw_recovery_report rep;
    p = reopen_one_hole(log, dir, &pc, n, &rep);
    check_reads(p, n, bt->base[k], bt->base[k + 2]);
    spw_part_close(p);
    free(bt);
}

/* ---- 8: damage in a closed segment ---- */

/* where: 0 a batch in the middle of the segment, 1 its last batch (the
 * damaged range then runs to the segment's end), 2 its first. */
static void test_closed(spw_log *log, const char *dir, int how, int where)
{
    /* No index entries inside a segment: reads walk from position 0. */
    spw_part_config pc = cfg(8192, 1u << 20);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    uint64_t n = 0;
    for (;;) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (st.segments >= 3)
            break;
        append_one(p, SPW_ACK_FSYNC);
        n++;
    }
    spw_part_close(p);
    char path[4200];
    seg_path(path, sizeof path, dir, 0, ".log");
    batches *bt = calloc(1, sizeof *bt);
    CHECK(bt != NULL);
    list_batches(path, bt);
    size_t k = where == 1 ? bt->n - 1 : where == 2 ? 0 : bt->n / 3;
    uint64_t lo = bt->base[k], hi = lo + bt->count[k];
    if (how == ZERO_SECTOR) {
        static const uint8_t z[SPW_BATCH_HEADER_LEN];
        patch(path, bt->pos[k], z, sizeof z); /* the whole header */
    } else {
        flip_byte(path, bt->pos[k] + 9, 0x02); /* a bit of the length */
    }
    check_reports_hole(dir, lo, hi);
    spw_recovery_report rep;
    p = reopen_one_hole(log, dir, &pc, n, &rep);
    check_reads(p, n, lo, hi);
    check_walks(p, n, lo, hi);
    spw_part_close(p);
    free(bt);
}

/* ---- 8: damage after the recovery point: cut, saved aside first ---- */

static void copy_file(const char *from, const char *to)
{
    size_t len;
    uint8_t *d = load(from, &len);
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, d, len), (ssize_t)len);
    close(fd);
    free(d);
}

/* Finds the one "<base>.log.cut-*" file in dir; 1 and its path, else 0. */
static int find_cut(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".log.cut-")) {
            snprintf(out, cap, "%s/%s", dir, de->d_name);
            n++;
        }
    closedir(d);
    CHECK(n <= 1);
    return n;
}

/* The files as after a crash, with the recovery point at offset 50 and
 * 150 batches; then damage after the recovery point:
 *   how 0: a zeroed header at batch 100, whole batches after it: damage in
 *          place (data fsynced after the recovery point was written, maybe
 *          acknowledged), kept and reported, nothing cut;
 *   how 1: the same, and the last batch torn: batch 100 kept as a damaged
 *          range, 101..148 kept, 149 cut as the torn tail (saved aside);
 *   how 2: every header from batch 100 on zeroed (nothing whole after
 *          the damage): a torn tail, cut from batch 100, saved aside. */
static void test_above_rp(spw_log *log, const char *dir, const char *crash, int how)
{
    spw_part_config pc = cfg(1u << 20, 4096);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    for (int i = 0; i < 50; i++)
        append_one(p, SPW_ACK_FSYNC);
    spw_part_close(p);
    char rp_path[4200], rp_keep[4200];
    snprintf(rp_path, sizeof rp_path, "%s/%s", dir, SPW_RP_NAME);
    snprintf(rp_keep, sizeof rp_keep, "%s/rp.keep", crash);
    CHECK_OK(mkdir(crash, 0755));
    copy_file(rp_path, rp_keep); /* the recovery point: offset 50 */
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    for (int i = 0; i < 100; i++)
        append_one(p, SPW_ACK_FSYNC);
    /* "Power loss" now: the files as they are, with the recovery point
     * file as it was before the last 100 appends (it is written lazily). */
    char src[4200], dst[4200];
    seg_path(src, sizeof src, dir, 0, ".log");
    seg_path(dst, sizeof dst, crash, 0, ".log");
    copy_file(src, dst);
    seg_path(src, sizeof src, dir, 0, ".idx");
    seg_path(dst, sizeof dst, crash, 0, ".idx");
    copy_file(src, dst);
    snprintf(dst, sizeof dst, "%s/%s", crash, SPW_RP_NAME);
    copy_file(rp_keep, dst);
    unlink(rp_keep);
    spw_part_close(p);

    seg_path(dst, sizeof dst, crash, 0, ".log");
    batches *bt = calloc(1, sizeof *bt);
    CHECK(bt != NULL);
    list_batches(dst, bt);
    CHECK_EQ(bt->n, 150);
    size_t k = 100;
    uint64_t cut_pos = bt->pos[k], data_end = bt->pos[149] + bt->len[149];
    static const uint8_t z[SPW_BATCH_HEADER_LEN];
    if (how == 1) {
        flip_byte(dst, data_end - 3, 0x10); /* inside the last record */
    }
    for (size_t i = k; i < (how == 2 ? 150 : k + 1); i++)
        patch(dst, bt->pos[i], z, sizeof z);
    size_t olen;
    uint8_t *orig = load(dst, &olen); /* as damaged */
    if (how == 0) {
        check_reports_hole(crash, 100, 101);
    } else if (how == 2) {
        check_reports(crash, "after the recovery point");
    } else {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        CHECK(f != NULL);
        spw_check_result res;
        CHECK_OK(spw_check_dir(crash, f, &res));
        fclose(f);
        CHECK_EQ(res.damaged, 2);
        CHECK(strstr(buf, "(offsets 100..100)") != NULL);
        CHECK(strstr(buf, "(from offset 149)") != NULL && strstr(buf, "after the recovery point") != NULL);
        free(buf);
    }

    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, crash, &pc, &p, &rep));
    spw_part_state st;
    spw_part_state_get(p, &st);
    uint64_t next = how == 0 ? 150 : how == 1 ? 149 : 100;
    CHECK_EQ(st.next_offset, next);
    CHECK_EQ(rep.holes, how == 2 ? 0 : 1);
    check_reads(p, next, how == 2 ? 0 : 100, how == 2 ? 0 : 101);
    spw_part_close(p);
    char cut[4200];
    if (how == 0) {
        CHECK_EQ(rep.truncated_bytes, 0);
        CHECK_EQ(find_cut(crash, cut, sizeof cut), 0);
        free(orig);
        free(bt);
        return;
    }
    if (how == 1)
        cut_pos = bt->pos[149];
    CHECK_EQ(rep.truncated_bytes, olen - cut_pos);
    CHECK(rep.saved_bytes >= data_end - cut_pos);
    /* The bytes cut are in the saved-aside file: what was there (as
     * damaged), then nothing but zeros. */
    CHECK_EQ(find_cut(crash, cut, sizeof cut), 1);
    size_t clen;
    uint8_t *c = load(cut, &clen);
    CHECK_EQ(clen, rep.saved_bytes);
    CHECK(clen >= data_end - cut_pos && clen <= olen - cut_pos);
    CHECK(memcmp(c, orig + cut_pos, data_end - cut_pos) == 0);
    for (size_t i = data_end - cut_pos; i < clen; i++)
        CHECK_EQ(c[i], 0);
    free(c);
    free(orig);
    free(bt);
}

/* ---- 9: an index that reached the disk before the data it points at ---- */

static void test_index_ahead(spw_log *log, const char *dir)
{
    spw_part_config pc = cfg(1u << 20, 64); /* an entry at nearly every batch */
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    const uint64_t n = 200;
    for (uint64_t i = 0; i < n; i++)
        append_one(p, i % 2 ? SPW_ACK_FSYNC : SPW_ACK_WRITTEN);
    spw_part_close(p);
    /* As after a power loss before any recovery point covered this data:
     * the pages of [a, b) never reached the disk, while every index entry
     * and the batch headers they point at, after b, did. */
    char path[4200], rp[4200];
    snprintf(rp, sizeof rp, "%s/%s", dir, SPW_RP_NAME);
    unlink(rp);
    seg_path(path, sizeof path, dir, 0, ".log");
    batches *bt = calloc(1, sizeof *bt);
    CHECK(bt != NULL);
    list_batches(path, bt);
    uint64_t a = (bt->pos[n / 2] + 4095) & ~(uint64_t)4095, b = a + 4096;
    CHECK(b + 4096 < bt->pos[n - 1]);
    static const uint8_t z[4096];
    patch(path, a, z, sizeof z);
    uint64_t lo, hi;
    offsets_touching(bt, a, b, &lo, &hi);
    size_t first_bad = 0;
    while (bt->base[first_bad] != lo)
        first_bad++;

    /* Every batch after the lost pages verifies to the end: the pages are
     * a damaged range, kept and reported (its offsets never go to new
     * records), and the batches after it are kept. Trusting the index
     * instead would have left the zeros unnoticed. */
    (void)first_bad;
    spw_recovery_report rep;
    p = reopen_one_hole(log, dir, &pc, n, &rep);
    CHECK(rep.indexes_rebuilt >= 1);
    check_reads(p, n, lo, hi);
    CHECK_EQ(append_one(p, SPW_ACK_FSYNC), n);
    spw_part_close(p);
    /* The index now fits the data: reads from it are right. */
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    CHECK_EQ(rep.indexes_rebuilt, 0);
    check_reads(p, n + 1, lo, hi);
    spw_part_close(p);
    free(bt);
}

/* ---- .idx size not trusted ---- */

static void test_huge_index(spw_log *log, const char *dir)
{
    spw_part_config pc = cfg(4096, 64);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    uint64_t n = 0;
    for (;;) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (st.segments >= 2)
            break;
        append_one(p, SPW_ACK_FSYNC);
        n++;
    }
    spw_part_close(p);
    /* A sparse 4 GiB index for a 4 KiB segment (a damaged file system).
     * Opening must not size an allocation by it: in a child limited to
     * 1 GiB of address space, the open must succeed. */
    char path[4200];
    seg_path(path, sizeof path, dir, 0, ".idx");
    CHECK_OK(truncate(path, 4ll << 30));
#if !defined(__SANITIZE_THREAD__)
    /* (ThreadSanitizer cannot follow a forked child of a threaded process
     * that starts threads: it reports "dup thread". There the open below,
     * with no limit, rebuilds the index; the plain build checks the limit.) */
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        /* (AddressSanitizer and ThreadSanitizer reserve terabytes of shadow
         * up front, so no address-space limit there; the plain build is
         * the one that checks this.) */
        struct rlimit rl = {.rlim_cur = 1ull << 30, .rlim_max = 1ull << 30};
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(3);
#endif
        spw_log *l2;
        spw_log_config lc;
        spw_log_config_default(&lc);
        lc.sync_threads = 1;
        if (spw_log_open(&lc, &l2) != 0)
            _exit(4);
        spw_part *p2;
        spw_recovery_report rep;
        if (spw_part_open(l2, dir, &pc, &p2, &rep) != 0)
            _exit(5);
        int ok = rep.indexes_rebuilt >= 1;
        spw_part_close(p2);
        spw_log_close(l2);
        _exit(ok ? 0 : 6);
    }
    int status = 0;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "open with a 4 GiB index under a 1 GiB address space limit: %s %d\n",
                WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK(sb.st_size < 4096);
#endif
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    check_reads(p, n, 0, 0);
    spw_part_close(p);
}

/* ---- 10: the rewrite after a failed fdatasync writes the verified bytes ---- */

static _Atomic ino_t g_ino;           /* the segment file the faults apply to (read by the log threads) */
static _Atomic int g_fail_syncs;      /* fdatasyncs of it still to fail */
static _Atomic int g_armed;           /* the page below is lost on "disk" */
static _Atomic int g_evicted;         /* ... and no longer in the page cache */
static _Atomic long long g_last_off;  /* last pread offset since arming */
static uint64_t g_page;               /* byte position of the page */
static _Atomic int g_zeroed_reads;    /* reads that returned the evicted page's zeros */

static int is_target(int fd)
{
    struct stat st;
    return g_ino && fstat(fd, &st) == 0 && st.st_ino == g_ino;
}

static int hook_fdatasync(int fd)
{
    if (is_target(fd) && atomic_load(&g_fail_syncs) > 0) {
        atomic_fetch_sub(&g_fail_syncs, 1);
        /* The writeback failed: the disk keeps zeros for the page, which
         * the kernel now marks clean (so it may be evicted). */
        atomic_store(&g_last_off, -1);
        atomic_store(&g_armed, 1);
        return -EIO;
    }
    return spw_os_default.fdatasync(fd);
}

/* A page evicted after the first pass over it reads back as the disk has
 * it (zeros): a read that goes back to an earlier position starts a new
 * pass. Writing the page again makes its contents current again. */
static ssize_t hook_pread(int fd, void *b, size_t n, off_t off)
{
    ssize_t r = spw_os_default.pread(fd, b, n, off);
    if (r <= 0 || !atomic_load(&g_armed) || !is_target(fd))
        return r;
    if ((long long)off < atomic_load(&g_last_off))
        atomic_store(&g_evicted, 1);
    atomic_store(&g_last_off, (long long)off);
    uint64_t lo = (uint64_t)off, hi = lo + (uint64_t)r;
    if (atomic_load(&g_evicted) && lo < g_page + 4096 && hi > g_page) {
        uint64_t a = lo > g_page ? lo : g_page, e = hi < g_page + 4096 ? hi : g_page + 4096;
        memset((uint8_t *)b + (a - lo), 0, e - a);
        atomic_fetch_add(&g_zeroed_reads, 1);
    }
    return r;
}

static void note_write(int fd, uint64_t off, uint64_t n)
{
    if (atomic_load(&g_armed) && is_target(fd) && off < g_page + 4096 && off + n > g_page) {
        atomic_store(&g_armed, 0);
        atomic_store(&g_evicted, 0);
    }
}

static ssize_t hook_pwrite(int fd, const void *b, size_t n, off_t off)
{
    note_write(fd, (uint64_t)off, n);
    return spw_os_default.pwrite(fd, b, n, off);
}

static ssize_t hook_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    uint64_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    note_write(fd, (uint64_t)off, n);
    return spw_os_default.pwritev(fd, iov, cnt, off);
}

static void test_rewrite_verified(spw_log *log, const char *dir)
{
    spw_part_config pc = cfg(1u << 20, 4096);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    for (int i = 0; i < 5; i++)
        append_one(p, SPW_ACK_FSYNC);
    spw_part_state st;
    spw_part_state_get(p, &st);
    uint64_t synced = st.bytes;
    /* Written, not synced: well past the page that will be lost. */
    while (st.bytes < 4 * 4096) {
        append_one(p, SPW_ACK_WRITTEN);
        spw_part_state_get(p, &st);
    }
    uint64_t n = st.next_offset;
    char path[4200];
    seg_path(path, sizeof path, dir, 0, ".log");
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    g_page = ((synced + 4095) & ~(uint64_t)4095) + 4096;
    CHECK(g_page + 4096 < st.bytes);
    g_ino = sb.st_ino;
    atomic_store(&g_fail_syncs, 1);

    spw_part_state_get(p, &st);
    char v[80];
    value_of(v, sizeof v, st.next_offset);
    spw_record r = {.key_len = -1, .value = v, .value_len = (uint32_t)strlen(v), .ts = 1};
    CHECK_EQ(spw_part_append_wait(p, &r, 1, NULL, SPW_ACK_FSYNC, NULL), -EIO);
    for (int i = 0; i < 2000 && spw_part_failed(p); i++)
        usleep(10000);
    CHECK_EQ(spw_part_failed(p), 0);
    spw_part_state_get(p, &st);
    CHECK(st.next_offset >= n);
    if (st.next_offset < n + 1)
        fprintf(stderr, "after the failed fsync, recovery kept offsets up to %llu, want %llu\n",
                (unsigned long long)st.next_offset, (unsigned long long)n + 1);
    CHECK_EQ(st.next_offset, n + 1);
    check_reads(p, n + 1, 0, 0);
    spw_part_close(p);
    g_ino = 0;
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    CHECK_EQ(rep.damaged_batches, 0);
    check_reads(p, n + 1, 0, 0);
    spw_part_close(p);
}

/* ---- the flusher writes the recovery point ---- */

/* After an fdatasync the flusher writes the recovery point (the first time
 * at once, later at most every few seconds), without a close or a roll;
 * it names exactly what was synced. */
static void test_flusher_writes_rp(spw_log *log, const char *dir)
{
    spw_part_config pc = cfg(1u << 20, 4096);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    append_one(p, SPW_ACK_FSYNC);
    spw_part_state st;
    spw_part_state_get(p, &st);
    int got = 0;
    spw_rp rp = {0};
    for (int i = 0; i < 1000 && got != 1; i++) {
        got = spw_rp_load(dir, &rp);
        if (got != 1)
            usleep(10000);
    }
    CHECK_EQ(got, 1);
    CHECK_EQ(rp.base, 0);
    CHECK_EQ(rp.pos, st.bytes);
    CHECK_EQ(rp.offset, 1);
    spw_part_close(p);
    /* Close moves it to the end. */
    CHECK_EQ(spw_rp_load(dir, &rp), 1);
    CHECK_EQ(rp.pos, st.bytes);
    CHECK_EQ(rp.offset, 1);
}

/* Runs every case, or only the one named by argv[1] (newest, closed,
 * above, index-ahead, huge-index, flusher, rewrite). */
int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
#define RUN(name) (!only || strcmp(only, name) == 0)
    spw_msg_set_level(SPW_MSG_ERROR + 1); /* recovery reports every damage: expected here */
    spw_os.fdatasync = hook_fdatasync;
    spw_os.pread = hook_pread;
    spw_os.pwrite = hook_pwrite;
    spw_os.pwritev = hook_pwritev;
    char *base = spw_test_tmpdir("damage");
    spw_log *log;
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.fsync_interval_ms = 3600000; /* only the tests' own appends sync */
    CHECK_OK(spw_log_open(&lc, &log));
    char d[4200], d2[4200];
    static const char *how_name[] = {"zero", "flip-length", "flip-count"};
    for (int how = 0; how < 3 && RUN("newest"); how++) {
        uint32_t intervals[] = {64, 4096, 1u << 20};
        for (int i = 0; i < 3; i++) {
            snprintf(d, sizeof d, "%s/newest-%s-%u", base, how_name[how], intervals[i]);
            test_newest_below_rp(log, d, how, intervals[i]);
        }
    }
    if (RUN("base-in-hole")) {
        snprintf(d, sizeof d, "%s/base-in-hole", base);
        test_base_in_hole(log, d);
    }
    if (RUN("closed")) {
        static const char *where_name[] = {"middle", "last", "first"};
        for (int w = 0; w < 3; w++) {
            snprintf(d, sizeof d, "%s/closed-zero-%s", base, where_name[w]);
            test_closed(log, d, ZERO_SECTOR, w);
            snprintf(d, sizeof d, "%s/closed-flip-%s", base, where_name[w]);
            test_closed(log, d, FLIP_LENGTH, w);
        }
    }
    if (RUN("above")) {
        for (int how = 0; how < 3; how++) {
            snprintf(d, sizeof d, "%s/above-%d", base, how);
            snprintf(d2, sizeof d2, "%s/above-crash-%d", base, how);
            test_above_rp(log, d, d2, how);
        }
    }
    if (RUN("index-ahead")) {
        snprintf(d, sizeof d, "%s/index-ahead", base);
        test_index_ahead(log, d);
    }
    if (RUN("huge-index")) {
        snprintf(d, sizeof d, "%s/huge-index", base);
        test_huge_index(log, d);
    }
    if (RUN("flusher")) {
        snprintf(d, sizeof d, "%s/flusher", base);
        test_flusher_writes_rp(log, d);
    }
    if (RUN("rewrite")) {
        snprintf(d, sizeof d, "%s/rewrite", base);
        test_rewrite_verified(log, d);
    }
    CHECK_EQ(spw_log_failed_partitions(log), 0);
    spw_log_close(log);
    spw_os = spw_os_default;
    spw_test_rmrf(base);
    free(base);
    puts("test_damage: ok");
    return 0;
}
