/*
 * Torn writes and bit flips in segment files, against recovery
 * (spw_part_open), reads (spw_part_read) and `spillway check`.
 *
 * A pristine partition of several small segments, with batches of every
 * compression, is built once per configuration (an index entry at every
 * batch, or none inside a segment) and kept in memory; every trial restores
 * it into a scratch directory, damages one file and looks at the result.
 * Every record's content is a function of its offset, so any data a read
 * returns can be checked.
 *
 * Torn writes (docs/architecture.md "Recovery", docs/formats/log.md
 * "Recovery rules"): the newest segment is cut at every byte position (the same stride as below)
 * inside its last batch. `spillway check` must report the torn tail as
 * damage (unless what is left of it is zeros, which it takes for zeros
 * written ahead), recovery must cut exactly the partial batch and report
 * the bytes and whole batch headers it cut, everything before must read
 * back identical, an append must continue at the cut offset, and the
 * directory must then check clean.
 *
 * Bit flips: every byte (SPW_TORN_STRIDE=1; by default every header byte
 * and every 4th other byte) of a batch in the middle of a closed segment, of a
 * batch in the middle of the newest segment and of the newest segment's
 * last batch is flipped (xor 0xff; header bytes also xor 0x01), one at a
 * time, base_offset included (it is outside the CRC and checked only by
 * continuity). Then:
 *   (a) `spillway check DIR` exits 1 and prints a DAMAGED line;
 *   (b) spw_part_open keeps the whole log (the partition was closed
 *       cleanly, so its recovery point is the end and nothing below it is
 *       ever cut), reporting the damage when it verified there (always in
 *       the newest segment);
 *   (c) no read ever returns wrong data: every record returned is at its
 *       offset with its content, and reads of the damaged offsets fail with
 *       SPW_ECORRUPT;
 *   (d) bad_next always lies after the offset read; and when the damaged
 *       header still parses with its length and count (so the next batch
 *       proves where the damage ends), every other offset stays readable
 *       and bad_next is no further than the end of the damaged batch. When the
 *       header is too damaged for that, reads may skip good data up to the
 *       next index entry or the segment's end: printed as a note.
 * A torn tail (after the recovery point) is cut; the test writes the
 * recovery point at the torn batch's start, as the flusher would have.
 *
 * Index flips: every byte of two .idx files is flipped; the index is a
 * rebuildable hint, so check must stay clean (INDEX lines only) and every
 * record must stay readable. Wrong answers of spw_part_offset_for_ts are
 * printed as a note.
 *
 * Usage: test_torn SPILLWAY_BINARY
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "log/segment.h"
#include "check_run.h"
#include "test.h"

#define TS0 1700000000000LL
#define SEGMENT_BYTES 4096
#define MIN_SEGMENTS 4

static const char *g_bin;

/* Payload bytes tried: every g_stride-th (header bytes and the last byte
 * always). scripts/test-slow.sh sets SPW_TORN_STRIDE=1 (every byte); the
 * default suite tries every 4th, a quarter of the trials. */
static uint32_t g_stride = 4;
static int tried(uint32_t i, uint32_t len)
{
    return i < SPW_BATCH_HEADER_LEN || i + 1 == len || i % g_stride == 0;
}

/* ---- content: a function of the offset ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

typedef struct content {
    uint8_t key[8];
    uint8_t value[80];
    uint32_t value_len;
    int64_t ts;
    int has_header;
    spw_kv hdr;
} content;

static void content_for(uint64_t off, content *c)
{
    uint64_t h = mix(off);
    memcpy(c->key, &off, 8);
    c->value_len = 12 + (uint32_t)(h % 60);
    uint64_t s = h;
    for (uint32_t i = 0; i < c->value_len; i += 8) {
        s = mix(s);
        uint32_t n = c->value_len - i < 8 ? c->value_len - i : 8;
        memcpy(c->value + i, &s, n);
    }
    /* Repetitive tail so that compressed batches really compress. */
    for (uint32_t i = c->value_len / 2; i < c->value_len; i++)
        c->value[i] = (uint8_t)('a' + off % 7);
    c->ts = TS0 + (int64_t)off;
    c->has_header = off % 5 == 0;
    c->hdr = (spw_kv){.key = "hk", .key_len = 2, .value = c->key, .value_len = 8};
}

static void to_record(content *c, spw_record *r)
{
    *r = (spw_record){.key = c->key, .key_len = 8, .value = c->value, .value_len = c->value_len, .ts = c->ts,
                      .headers = c->has_header ? &c->hdr : NULL, .header_count = c->has_header ? 1 : 0};
}

/* Does the record view hold exactly what offset rv->offset was written with? */
static int record_ok(const spw_record_view *rv)
{
    content c;
    content_for(rv->offset, &c);
    if (rv->key_len != 8 || memcmp(rv->key, c.key, 8) != 0 || rv->value_len != c.value_len ||
        memcmp(rv->value, c.value, c.value_len) != 0 || rv->ts != c.ts ||
        rv->header_count != (uint32_t)c.has_header)
        return 0;
    const uint8_t *hp = rv->headers;
    spw_kv kv;
    if (c.has_header) {
        if (spw_kv_next(&hp, rv->headers + rv->headers_len, &kv) != 1 || kv.key_len != 2 ||
            memcmp(kv.key, "hk", 2) != 0 || kv.value_len != 8 || memcmp(kv.value, c.key, 8) != 0)
            return 0;
    }
    return spw_kv_next(&hp, rv->headers + rv->headers_len, &kv) == 0;
}

/* ---- the pristine partition, in memory ---- */

typedef struct file_img {
    char name[64];
    uint8_t *data;
    size_t len;
} file_img;

typedef struct batch_info {
    uint64_t seg_base; /* segment file */
    int seg_index;
    uint64_t pos;      /* position in the segment */
    uint32_t len;
    uint64_t base;     /* base offset */
    uint32_t count;
    int compression;
} batch_info;

typedef struct pristine {
    const char *label;
    spw_part_config pc;
    file_img files[64];
    size_t nfiles;
    batch_info b[1024];
    size_t nb;
    uint64_t seg_base[64];
    uint64_t seg_size[64];
    int nsegs;
    uint64_t end; /* next offset */
} pristine;

static uint8_t *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    uint8_t *d = malloc((size_t)st.st_size + 1);
    CHECK(d != NULL);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, d + got, (size_t)st.st_size - got);
        CHECK(n > 0);
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return d;
}

static void write_file(const char *path, const uint8_t *d, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    size_t put = 0;
    while (put < len) {
        ssize_t n = write(fd, d + put, len - put);
        CHECK(n > 0);
        put += (size_t)n;
    }
    close(fd);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const file_img *)a)->name, ((const file_img *)b)->name);
}

static void build_pristine(pristine *pr, const char *dir, uint32_t index_interval)
{
    spw_part_config_default(&pr->pc);
    pr->pc.segment_bytes = SEGMENT_BYTES;
    pr->pc.index_interval_bytes = index_interval;
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pr->pc, &p, NULL));
    int extra = -1; /* batches still to append once the last segment exists */
    for (uint64_t k = 0; k < 10000 && extra != 0; k++) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (extra < 0 && st.segments >= MIN_SEGMENTS)
            extra = 7; /* <= 7 batches of <= ~450 bytes: no further roll */
        else if (extra > 0)
            extra--;
        if (extra == 0)
            break;
        uint32_t n = 1 + (uint32_t)(mix(k + 1000) % 5);
        content c[5];
        spw_record recs[5];
        for (uint32_t i = 0; i < n; i++) {
            content_for(st.next_offset + i, &c[i]);
            to_record(&c[i], &recs[i]);
        }
        spw_batch_opts o = {.compression = (int)(k % 3)};
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(p, recs, n, &o, k % 2 ? SPW_ACK_FSYNC : SPW_ACK_WRITTEN, &res));
        CHECK_EQ(res.base_offset, st.next_offset);
    }
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK_EQ(st.segments, MIN_SEGMENTS);
    pr->end = st.next_offset;
    spw_part_close(p);
    spw_log_close(log);

    /* Load every file; list the batches of every segment. */
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        CHECK(pr->nfiles < 64 && strlen(de->d_name) < 64);
        file_img *f = &pr->files[pr->nfiles++];
        memcpy(f->name, de->d_name, strlen(de->d_name) + 1); /* length checked above */
        char path[4200];
        int w = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        CHECK(w > 0 && (size_t)w < sizeof path);
        f->data = read_file(path, &f->len);
    }
    closedir(d);
    qsort(pr->files, pr->nfiles, sizeof *pr->files, cmp_name);
    uint64_t expect = 0;
    for (size_t i = 0; i < pr->nfiles; i++) {
        uint64_t base;
        if (!spw_seg_parse_name(pr->files[i].name, &base))
            continue;
        CHECK_EQ(base, expect);
        int si = pr->nsegs++;
        pr->seg_base[si] = base;
        pr->seg_size[si] = pr->files[i].len;
        size_t pos = 0;
        while (pos < pr->files[i].len) {
            spw_batch_hdr h;
            CHECK_EQ(spw_batch_check(pr->files[i].data + pos, pr->files[i].len - pos, &h), 0);
            CHECK_EQ(h.base_offset, expect);
            CHECK(pr->nb < 1024);
            pr->b[pr->nb++] = (batch_info){.seg_base = base, .seg_index = si, .pos = pos, .len = h.length,
                                           .base = h.base_offset, .count = h.record_count,
                                           .compression = h.attributes & SPW_BATCH_ATTR_COMPRESSION};
            expect = spw_batch_next_offset(&h);
            pos += h.length;
        }
    }
    CHECK_EQ(pr->nsegs, MIN_SEGMENTS);
    CHECK_EQ(expect, pr->end);
}

static file_img *seg_file(pristine *pr, uint64_t base)
{
    char name[64];
    snprintf(name, sizeof name, "%020llu.log", (unsigned long long)base);
    for (size_t i = 0; i < pr->nfiles; i++)
        if (strcmp(pr->files[i].name, name) == 0)
            return &pr->files[i];
    CHECK(0);
    return NULL;
}

/* Makes dir an exact copy of the pristine partition. */
static void restore(const pristine *pr, const char *dir)
{
    spw_test_rmrf(dir);
    CHECK(mkdir(dir, 0755) == 0);
    char path[4200];
    for (size_t i = 0; i < pr->nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, pr->files[i].name);
        write_file(path, pr->files[i].data, pr->files[i].len);
    }
}

/* ---- spillway check ---- */

static volatile sig_atomic_t g_child = 0;

static void on_alarm(int sig)
{
    (void)sig;
    if (g_child > 0)
        kill(g_child, SIGKILL);
    static const char msg[] = "test_torn: watchdog: the test took too long; killed\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(2);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs `spillway check dir`, its output into out; returns the exit code (-1: killed). */
static int run_check(const char *dir, char *out, size_t cap)
{
    return spw_test_run_check(g_bin, dir, out, cap, 30000, &g_child);
}

/* ---- reading back ---- */

typedef struct read_stats {
    uint64_t wrong;            /* records returned with the wrong content or offset: never allowed */
    uint64_t bad_read_ok;      /* offsets of the damaged batch a read returned (wrongly) without error */
    uint64_t good_unreadable;  /* offsets outside the damaged batch whose read failed */
    uint64_t no_progress;      /* SPW_ECORRUPT with bad_next <= the offset asked for */
    uint64_t skips_good;       /* SPW_ECORRUPT with bad_next past the damaged batch */
    uint64_t other_err;        /* any other result */
    char first[512];           /* the first problem, for the message */
    char first_soft[3][256];   /* the first of each: good_unreadable, no_progress, skips_good */
} read_stats;

static void note(read_stats *rs, uint64_t *counter, const char *fmt, unsigned long long a, unsigned long long b)
{
    (*counter)++;
    char *f = counter == &rs->good_unreadable ? rs->first_soft[0]
              : counter == &rs->no_progress   ? rs->first_soft[1]
              : counter == &rs->skips_good    ? rs->first_soft[2]
                                              : rs->first;
    size_t cap = f == rs->first ? sizeof rs->first : sizeof rs->first_soft[0];
    if (!f[0])
        snprintf(f, cap, fmt, a, b);
}

/* Checks the batches in buf: all whole, all records correct, the first record
 * at or after `from` is `from`. Returns the offset after the last record. */
static uint64_t check_returned(const spw_buf *buf, int n, uint64_t from, uint64_t end, read_stats *rs)
{
    spw_buf scratch = SPW_BUF_INIT;
    size_t pos = 0;
    uint64_t next = from, want = from;
    for (int b = 0; b < n; b++) {
        spw_batch_hdr h;
        const uint8_t *recs;
        size_t len;
        if (spw_batch_check(buf->p + pos, buf->len - pos, &h) ||
            spw_batch_records(buf->p + pos, &h, &scratch, &recs, &len)) {
            note(rs, &rs->wrong, "read at %llu returned a batch that does not check (batch %llu)", from,
                 (unsigned long long)b);
            break;
        }
        spw_rec_iter it;
        spw_record_view rv;
        spw_rec_iter_init(&it, &h, recs, len);
        int r;
        while ((r = spw_rec_next(&it, &rv)) == 1) {
            if (!record_ok(&rv) || rv.offset >= end)
                note(rs, &rs->wrong, "read at %llu returned wrong data labelled offset %llu", from, rv.offset);
            else if (rv.offset >= from) {
                if (rv.offset != want)
                    note(rs, &rs->wrong, "read at %llu returned offset %llu out of order", from, rv.offset);
                want = rv.offset + 1;
            }
            next = rv.offset + 1;
        }
        if (r != 0)
            note(rs, &rs->wrong, "read at %llu returned undecodable records (%lld)", from, (long long)r);
        pos += h.length;
    }
    if (pos != buf->len)
        note(rs, &rs->wrong, "read at %llu returned %llu stray bytes", from, (unsigned long long)(buf->len - pos));
    if (want == from)
        note(rs, &rs->wrong, "read at %llu returned batches without that offset", from, 0);
    spw_buf_fini(&scratch);
    return next;
}

/* Reads every offset in [0, end) one by one, then the whole log as a consumer
 * that skips damage with bad_next. [bad_lo, bad_hi) is the damaged batch. */
static void read_all(spw_part *p, uint64_t end, uint64_t bad_lo, uint64_t bad_hi, read_stats *rs)
{
    spw_buf buf = SPW_BUF_INIT;
    for (uint64_t o = 0; o < end; o++) {
        uint64_t bad_next = UINT64_MAX;
        int n = spw_part_read(p, o, 1, &buf, &bad_next);
        int in_bad = o >= bad_lo && o < bad_hi;
        if (n > 0) {
            check_returned(&buf, n, o, end, rs);
            if (in_bad)
                note(rs, &rs->bad_read_ok, "read at damaged offset %llu succeeded", o, 0);
        } else if (n == SPW_ECORRUPT) {
            if (!in_bad)
                note(rs, &rs->good_unreadable, "read at undamaged offset %llu: corrupt (bad_next %llu)", o, bad_next);
            if (bad_next <= o)
                note(rs, &rs->no_progress, "read at %llu: corrupt with bad_next %llu", o, bad_next);
            else if (in_bad && bad_next > bad_hi)
                note(rs, &rs->skips_good, "read at damaged offset %llu: bad_next %llu skips good data", o, bad_next);
        } else {
            note(rs, &rs->other_err, "read at %llu returned %lld", o, (unsigned long long)(long long)n);
        }
    }
    CHECK_EQ(spw_part_read(p, end, 1 << 16, &buf, NULL), 0);
    CHECK_EQ(spw_part_read(p, end + 1, 1 << 16, &buf, NULL), SPW_ERANGE);
    /* A consumer: big reads, skipping damage. Bounded: each round advances. */
    uint64_t off = 0;
    for (uint64_t round = 0; off < end && round <= end + 1; round++) {
        uint64_t bad_next = UINT64_MAX;
        int n = spw_part_read(p, off, 1 << 16, &buf, &bad_next);
        if (n > 0) {
            off = check_returned(&buf, n, off, end, rs);
        } else if (n == SPW_ECORRUPT && bad_next > off) {
            off = bad_next;
        } else {
            break; /* already counted by the offset-by-offset pass */
        }
    }
    spw_buf_fini(&buf);
}

/* ---- torn writes ---- */

static uint64_t trailing_zeros(const uint8_t *p, uint64_t n)
{
    uint64_t z = 0;
    while (z < n && p[n - 1 - z] == 0)
        z++;
    return z;
}

static void test_torn(pristine *pr, const char *dir)
{
    batch_info *last = &pr->b[pr->nb - 1];
    int si = last->seg_index;
    CHECK_EQ(si, pr->nsegs - 1);
    file_img *seg = seg_file(pr, last->seg_base);
    CHECK_EQ(last->pos + last->len, seg->len);
    char path[4200], out[1 << 16];
    int w = snprintf(path, sizeof path, "%s/%020llu.log", dir, (unsigned long long)last->seg_base);
    CHECK(w > 0 && (size_t)w < sizeof path);
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    unsigned cuts = 0;
    for (uint64_t size = last->pos; size < last->pos + last->len; size++) {
        if (!tried((uint32_t)(size - last->pos), last->len))
            continue;
        restore(pr, dir);
        CHECK(truncate(path, (off_t)size) == 0);
        /* A torn write is one no fdatasync covered: the recovery point is
         * at most the batch's start (the pristine one is the end). */
        spw_rp rp = {.base = last->seg_base, .pos = last->pos, .offset = last->base};
        CHECK_OK(spw_rp_store(dir, &rp));
        uint64_t torn = size - last->pos;
        uint64_t zeros = trailing_zeros(seg->data + last->pos, torn);

        /* check: a torn tail is damage until the partition is reopened;
         * a tail of zeros only is taken as written ahead. */
        int code = run_check(dir, out, sizeof out);
        if (torn > zeros) {
            if (code != 1 || !strstr(out, "DAMAGED"))
                fprintf(stderr, "%s: torn at %llu: check exited %d:\n%s", pr->label, (unsigned long long)size, code,
                        out);
            CHECK_EQ(code, 1);
            CHECK(strstr(out, "DAMAGED") != NULL);
        } else {
            CHECK_EQ(code, 0);
        }

        spw_part *p;
        spw_recovery_report rep;
        CHECK_OK(spw_part_open(log, dir, &pr->pc, &p, &rep));
        CHECK_EQ(rep.truncated_bytes, torn);
        CHECK_EQ(rep.truncated_batches, torn - zeros >= SPW_BATCH_HEADER_LEN ? 1 : 0);
        CHECK_EQ(rep.damaged_batches, 0);
        CHECK_EQ(rep.segments, pr->nsegs);
        spw_part_state st;
        spw_part_state_get(p, &st);
        CHECK_EQ(st.next_offset, last->base);
        CHECK_EQ(st.start_offset, 0);
        struct stat sb;
        CHECK(stat(path, &sb) == 0);
        CHECK_EQ(sb.st_size, last->pos);
        read_stats rs = {0};
        read_all(p, last->base, 0, 0, &rs);
        if (rs.first[0] || rs.first_soft[0][0] || rs.first_soft[1][0])
            fprintf(stderr, "%s: torn at %llu: %s %s %s\n", pr->label, (unsigned long long)size, rs.first,
                    rs.first_soft[0], rs.first_soft[1]);
        CHECK(!rs.wrong && !rs.good_unreadable && !rs.other_err && !rs.no_progress);

        /* Appends continue where the cut left the log. */
        content c[5];
        spw_record recs[5];
        CHECK(last->count <= 5);
        for (uint32_t i = 0; i < last->count; i++) {
            content_for(last->base + i, &c[i]);
            to_record(&c[i], &recs[i]);
        }
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(p, recs, last->count, NULL, SPW_ACK_FSYNC, &res));
        CHECK_EQ(res.base_offset, last->base);
        read_all(p, pr->end, 0, 0, &rs);
        CHECK(!rs.wrong && !rs.good_unreadable && !rs.other_err && !rs.no_progress);
        spw_part_close(p);
        CHECK_EQ(run_check(dir, out, sizeof out), 0);
        cuts++;
    }
    spw_log_close(log);
    printf("test_torn: %s: %u cuts inside the last batch (%u bytes at position %llu): all recovered\n", pr->label,
           cuts, last->len, (unsigned long long)last->pos);
}

/* ---- bit flips ---- */

typedef struct flip_tally {
    unsigned trials, cut_tail, kept, reported_damaged;
    unsigned cut_later_batches; /* cuts that also dropped whole good batches after the damaged one */
    unsigned wrong;                                    /* trials where a read returned wrong data */
    char wrong_first[600];
    unsigned good_unreadable, no_progress, skips_good; /* trials with each availability problem */
    unsigned unprovable_loss; /* header too damaged to tell where it ends: some good data skipped (allowed) */
    char first[3][600];
} flip_tally;

static void flip_one(pristine *pr, const char *dir, spw_log *log, const batch_info *t, uint32_t i, uint8_t mask,
                     int is_last, flip_tally *ft)
{
    char path[4200], out[1 << 16];
    file_img *seg = seg_file(pr, t->seg_base);
    snprintf(path, sizeof path, "%s/%s", dir, seg->name);
    restore(pr, dir);
    uint8_t *copy = malloc(seg->len);
    CHECK(copy != NULL);
    memcpy(copy, seg->data, seg->len);
    copy[t->pos + i] ^= mask;
    write_file(path, copy, seg->len);
    /* When the damaged header still parses with its length and count, the
     * next batch proves where the damage ends: reads must then find every
     * other record and point just past the damage. */
    spw_batch_hdr fh;
    int provable = spw_batch_parse(copy + t->pos, seg->len - t->pos, &fh) == 0 && fh.length == t->len &&
                   fh.record_count == t->count;
    free(copy);
    ft->trials++;

    /* (a) check finds it. */
    int code = run_check(dir, out, sizeof out);
    if (code != 1 || !strstr(out, "DAMAGED"))
        fprintf(stderr, "%s: flip ^0x%02x of byte %u of batch at %llu:%llu (offsets %llu..%llu): check exited %d:\n%s",
                pr->label, mask, i, (unsigned long long)t->seg_base, (unsigned long long)t->pos,
                (unsigned long long)t->base, (unsigned long long)(t->base + t->count - 1), code, out);
    CHECK_EQ(code, 1);
    CHECK(strstr(out, "DAMAGED") != NULL);

    /* (b) recovery cuts at the damaged batch or keeps everything. */
    spw_part *p;
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, &pr->pc, &p, &rep));
    spw_part_state st;
    spw_part_state_get(p, &st);
    int newest = t->seg_index == pr->nsegs - 1;
    read_stats rs = {0};
    if (rep.truncated_bytes) {
        CHECK(newest);
        CHECK_EQ(rep.truncated_bytes, seg->len - t->pos);
        CHECK_EQ(st.next_offset, t->base);
        struct stat sb;
        CHECK(stat(path, &sb) == 0);
        CHECK_EQ(sb.st_size, t->pos);
        ft->cut_tail++;
        if (!is_last)
            ft->cut_later_batches++;
        read_all(p, t->base, 0, 0, &rs);
    } else {
        /* The pristine partition was closed cleanly: its recovery point
         * is the end, so damage anywhere is below it and kept (even in the
         * newest segment's last batch, which nothing valid follows). */
        CHECK_EQ(st.next_offset, pr->end);
        ft->kept++;
        if (rep.damaged_batches)
            ft->reported_damaged++;
        CHECK(rep.damaged_batches <= 1);
        /* Recovery verifies the whole newest segment, so damage kept there
         * is reported. (Older segments get a header walk only, by design:
         * their CRCs are for reads and check.) */
        if (newest)
            CHECK_EQ(rep.damaged_batches, 1);
        read_all(p, pr->end, t->base, t->base + t->count, &rs);
    }
    /* (c) never wrong data; reads of the damaged batch fail. */
    if (rs.wrong || rs.bad_read_ok || rs.other_err) {
        if (!ft->wrong)
            snprintf(ft->wrong_first, sizeof ft->wrong_first,
                     "flip ^0x%02x of byte %u of batch at %llu:%llu (offsets %llu..%llu): %s", mask, i,
                     (unsigned long long)t->seg_base, (unsigned long long)t->pos, (unsigned long long)t->base,
                     (unsigned long long)(t->base + t->count - 1), rs.first);
        ft->wrong++;
    }
    /* (d) bad_next always moves forward; when the damage's extent is
     * provable, the rest stays readable and bad_next points just past it. */
    unsigned *cnt[3] = {&ft->good_unreadable, &ft->no_progress, &ft->skips_good};
    uint64_t got[3] = {rs.good_unreadable, rs.no_progress, rs.skips_good};
    if (!provable && (rs.good_unreadable || rs.skips_good))
        ft->unprovable_loss++;
    for (int k = 0; k < 3; k++) {
        if (!got[k] || (!provable && k != 1))
            continue;
        if (!*cnt[k])
            snprintf(ft->first[k], sizeof ft->first[k],
                     "flip ^0x%02x of byte %u of batch at %llu:%llu (offsets %llu..%llu): %s", mask, i,
                     (unsigned long long)t->seg_base, (unsigned long long)t->pos, (unsigned long long)t->base,
                     (unsigned long long)(t->base + t->count - 1), rs.first_soft[k]);
        (*cnt[k])++;
    }
    spw_part_close(p);
}

static void test_flips(pristine *pr, const char *dir, const batch_info *t, const char *what, int is_last)
{
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    flip_tally ft = {0};
    for (uint32_t i = 0; i < t->len; i++) {
        if (!tried(i, t->len))
            continue;
        flip_one(pr, dir, log, t, i, 0xff, is_last, &ft);
        if (i < SPW_BATCH_HEADER_LEN)
            flip_one(pr, dir, log, t, i, 0x01, is_last, &ft);
    }
    spw_log_close(log);
    printf("test_torn: %s: %s (segment %llu, position %llu, %u bytes, %u records, compression %d): %u flips all "
           "detected by check; recovery cut the tail %u times (%u dropping later good batches), kept %u (%u "
           "reported as damaged)\n",
           pr->label, what, (unsigned long long)t->seg_base, (unsigned long long)t->pos, t->len, t->count,
           t->compression, ft.trials, ft.cut_tail, ft.cut_later_batches, ft.kept, ft.reported_damaged);
    static const char *what_k[3] = {"left undamaged offsets unreadable", "gave bad_next <= the offset read",
                                    "gave bad_next past the damaged batch"};
    unsigned n_k[3] = {ft.good_unreadable, ft.no_progress, ft.skips_good};
    for (int k = 0; k < 3; k++)
        if (n_k[k])
            fprintf(stderr, "test_torn: %s: %s: %u flips %s; first: %s\n", pr->label, what, n_k[k], what_k[k],
                    ft.first[k]);
    if (ft.unprovable_loss)
        printf("test_torn: %s: %s: note: %u flips destroyed the header's length or count; reads of the good data "
               "after it up to the next index entry fail (bad_next skips it)\n",
               pr->label, what, ft.unprovable_loss);
    if (ft.wrong)
        fprintf(stderr, "test_torn: %s: %s: %u flips made reads RETURN WRONG DATA; first: %s\n", pr->label, what,
                ft.wrong, ft.wrong_first);
    CHECK_EQ(ft.wrong, 0);
    CHECK(!ft.good_unreadable && !ft.no_progress && !ft.skips_good);
}

/* Index files are rebuildable hints: a flipped byte in one is never data
 * damage for check, never loses or changes data for reads, and never
 * changes what offset a timestamp maps to. */
static void test_index_flips(pristine *pr, const char *dir, int seg_index)
{
    char name[64], path[4200], out[1 << 16];
    snprintf(name, sizeof name, "%020llu.idx", (unsigned long long)pr->seg_base[seg_index]);
    file_img *ix = NULL;
    for (size_t k = 0; k < pr->nfiles; k++)
        if (strcmp(pr->files[k].name, name) == 0)
            ix = &pr->files[k];
    CHECK(ix != NULL && ix->len >= SPW_IDX_ENTRY_LEN);
    int w = snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(w > 0 && (size_t)w < sizeof path);
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    unsigned trials = 0, ts_err = 0, ts_wrong = 0;
    char ts_first[200] = "";
    for (size_t i = 0; i < ix->len; i++) {
        if (i % g_stride != 0 && i + 1 != ix->len)
            continue;
        restore(pr, dir);
        uint8_t *copy = malloc(ix->len);
        CHECK(copy != NULL);
        memcpy(copy, ix->data, ix->len);
        copy[i] ^= 0xff;
        write_file(path, copy, ix->len);
        free(copy);
        trials++;
        int code = run_check(dir, out, sizeof out);
        if (code != 0)
            fprintf(stderr, "%s: flip of byte %zu of %s: check exited %d:\n%s", pr->label, i, name, code, out);
        CHECK_EQ(code, 0);
        CHECK(strstr(out, "DAMAGED") == NULL);
        spw_part *p;
        spw_recovery_report rep;
        CHECK_OK(spw_part_open(log, dir, &pr->pc, &p, &rep));
        CHECK_EQ(rep.truncated_bytes, 0);
        CHECK_EQ(rep.damaged_batches, 0);
        spw_part_state st;
        spw_part_state_get(p, &st);
        CHECK_EQ(st.next_offset, pr->end);
        read_stats rs = {0};
        read_all(p, pr->end, 0, 0, &rs);
        if (rs.first[0] || rs.first_soft[0][0] || rs.first_soft[1][0] || rs.first_soft[2][0])
            fprintf(stderr, "%s: flip of byte %zu of %s: %s %s %s %s\n", pr->label, i, name, rs.first,
                    rs.first_soft[0], rs.first_soft[1], rs.first_soft[2]);
        CHECK(!rs.wrong && !rs.bad_read_ok && !rs.other_err && !rs.good_unreadable && !rs.no_progress &&
              !rs.skips_good);
        /* Timestamps are TS0 + offset: each maps back to its offset. */
        for (uint64_t o = 0; o < pr->end; o++) {
            uint64_t got = UINT64_MAX;
            int r = spw_part_offset_for_ts(p, TS0 + (int64_t)o, &got);
            if (r != 0 || got != o) {
                if (!ts_err && !ts_wrong)
                    snprintf(ts_first, sizeof ts_first, "flip of byte %zu: ts of offset %llu -> %s, offset %llu", i,
                             (unsigned long long)o, r ? spw_strerror(r) : "ok", (unsigned long long)got);
                if (r)
                    ts_err++;
                else
                    ts_wrong++;
                break;
            }
        }
        spw_part_close(p);
    }
    spw_log_close(log);
    printf("test_torn: %s: %u flips in index %s: check clean, every record readable\n", pr->label, trials, name);
    /* Not asserted (yet): spw_part_offset_for_ts trusts index positions and
     * max_ts_before, which recovery checks only for the last entry. */
    if (ts_err || ts_wrong)
        printf("test_torn: %s: note: after flips in index %s, spw_part_offset_for_ts failed %u times and gave a "
               "wrong offset %u times; first: %s\n",
               pr->label, name, ts_err, ts_wrong, ts_first);
}

static void run_config(const char *base, const char *label, uint32_t index_interval)
{
    static pristine pr; /* large: not on the stack */
    memset(&pr, 0, sizeof pr);
    pr.label = label;
    char src[4200], dir[4200];
    snprintf(src, sizeof src, "%s/%s-pristine", base, label);
    snprintf(dir, sizeof dir, "%s/%s-trial", base, label);
    build_pristine(&pr, src, index_interval);
    int64_t t0 = now_ms();
    test_torn(&pr, dir);
    /* Targets: a batch in the middle of the oldest (closed) segment, one
     * in the middle of the newest, and the newest's last batch. */
    size_t first_of[MIN_SEGMENTS + 1] = {0}, n_of[MIN_SEGMENTS] = {0};
    for (size_t k = pr.nb; k-- > 0;) {
        first_of[pr.b[k].seg_index] = k;
        n_of[pr.b[k].seg_index]++;
    }
    int newest = pr.nsegs - 1;
    CHECK(n_of[0] >= 3 && n_of[newest] >= 3);
    test_flips(&pr, dir, &pr.b[first_of[0] + n_of[0] / 2], "middle batch of a closed segment", 0);
    test_flips(&pr, dir, &pr.b[first_of[newest] + n_of[newest] / 2], "middle batch of the newest segment", 0);
    test_flips(&pr, dir, &pr.b[pr.nb - 1], "last batch of the newest segment", 1);
    if (index_interval < SEGMENT_BYTES) {
        test_index_flips(&pr, dir, 0);
        test_index_flips(&pr, dir, newest);
    }
    printf("test_torn: %s: done in %.1f s\n", label, (double)(now_ms() - t0) / 1000);
    fflush(stdout);
    for (size_t i = 0; i < pr.nfiles; i++)
        free(pr.files[i].data);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SPILLWAY_BINARY\n", argv[0]);
        return 2;
    }
    g_bin = argv[1];
    const char *stride = getenv("SPW_TORN_STRIDE");
    if (stride && atoi(stride) > 0)
        g_stride = (uint32_t)atoi(stride);
    setvbuf(stdout, NULL, _IOLBF, 0);
    spw_msg_set_level(SPW_MSG_ERROR + 1); /* recovery reports every trial's damage: expected here */
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    alarm(600);
    char *base = spw_test_tmpdir("torn");
    /* An index entry before nearly every batch (reads start mid-segment at a
     * damaged batch; recovery resumes from the last one), and none inside a
     * segment (reads and recovery scan from position 0). */
    run_config(base, "index-every-batch", 64);
    run_config(base, "no-index", 4096);
    spw_test_rmrf(base);
    free(base);
    puts("test_torn: ok");
    return 0;
}
