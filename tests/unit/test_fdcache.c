/*
 * The segment fd cache (log/fdcache.h; docs/architecture.md, "Segments,
 * rolls and indexes"):
 *   - the cache alone: sealing past its capacity closes the least recently
 *     used segment's files; a pin opens them again (a miss) or finds them
 *     (a hit); a pinned segment is never closed, even over capacity, and
 *     the last unpin brings the cache back within it;
 *   - a log whose partition has ~50 segments holds the files of the active
 *     segment and of at most `fd_cache_segments` sealed ones, while
 *     appending, after reading every record back, and after closing and
 *     opening the partition again (which checks each older segment, one
 *     at a time); every record reads back.
 */
#include <dirent.h>
#include <stdatomic.h>

#include "core/error.h"
#include "log/fdcache.h"
#include "log/log.h"
#include "log/segment.h"
#include "test.h"

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ., .. and the DIR's own fd */
}

static void test_cache_alone(void)
{
    char *dir = spw_test_tmpdir("fdcache");
    spw_fdcache *c = spw_fdcache_create(2);
    spw_segment *s[3];
    for (int i = 0; i < 3; i++) {
        CHECK_OK(spw_seg_open(dir, (uint64_t)i * 100, 1, &s[i]));
        spw_seg_use_cache(s[i], c, dir);
        CHECK(s[i]->fd >= 0);
    }
    spw_fdcache_stats st;
    spw_seg_seal(s[0]);
    spw_seg_seal(s[1]);
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.open, 2);
    CHECK(s[0]->fd >= 0 && s[1]->fd >= 0);
    spw_seg_seal(s[2]); /* over capacity: s[0], the least recent, is closed */
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.open, 2);
    CHECK_EQ(st.evictions, 1);
    CHECK_EQ(s[0]->fd, -1);
    CHECK_EQ(s[0]->idx_fd, -1);
    CHECK(s[1]->fd >= 0 && s[2]->fd >= 0);

    /* A pin of s[0] opens it again; s[1] is now the least recent. */
    CHECK_OK(spw_seg_pin(s[0]));
    CHECK(s[0]->fd >= 0 && s[0]->idx_fd >= 0);
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.misses, 1);
    CHECK_EQ(st.open, 2);
    CHECK_EQ(st.pinned, 1);
    CHECK_EQ(s[1]->fd, -1);
    /* Pin the other two as well (s[1] opened again, which closes s[2],
     * then s[2] opened again): three open, over capacity, none closed. */
    CHECK_OK(spw_seg_pin(s[1]));
    CHECK_OK(spw_seg_pin(s[2]));
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.open, 3);
    CHECK_EQ(st.pinned, 3);
    CHECK_EQ(st.misses, 3);
    CHECK_EQ(st.hits, 0);
    CHECK(s[0]->fd >= 0 && s[1]->fd >= 0 && s[2]->fd >= 0);
    /* Unpinned: back within capacity, the first one unpinned closed first. */
    spw_seg_unpin(s[0]);
    spw_seg_unpin(s[1]);
    spw_seg_unpin(s[2]);
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.open, 2);
    CHECK_EQ(st.pinned, 0);
    CHECK_EQ(s[0]->fd, -1);
    CHECK(s[1]->fd >= 0 && s[2]->fd >= 0);
    CHECK_OK(spw_seg_pin(s[2])); /* open: a hit */
    spw_seg_unpin(s[2]);
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.hits, 1);
    CHECK_EQ(st.misses, 3);

    /* Files gone (retention): a reopen fails, nothing leaks. */
    CHECK_OK(spw_seg_unlink(dir, 0));
    CHECK_EQ(spw_seg_pin(s[0]), -ENOENT);
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.open_errors, 1);
    CHECK_EQ(st.open, 2);

    for (int i = 0; i < 3; i++)
        spw_seg_unref(s[i]);
    spw_fdcache_stats_get(c, &st);
    CHECK_EQ(st.open, 0);
    spw_fdcache_destroy(c);
    spw_test_rmrf(dir);
    free(dir);
}

#define NREC 200
#define CACHE 4

static void check_all(spw_part *p)
{
    spw_buf b = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    uint64_t off = 0;
    while (off < NREC) {
        CHECK_OK(spw_part_read(p, off, 4096, &b, NULL) < 0);
        CHECK(b.len > 0);
        size_t at = 0;
        while (at < b.len) {
            spw_batch_hdr h;
            CHECK_OK(spw_batch_parse(b.p + at, b.len - at, &h));
            const uint8_t *recs;
            size_t len;
            CHECK_OK(spw_batch_records(b.p + at, &h, &scratch, &recs, &len));
            spw_rec_iter it;
            spw_record_view rv;
            spw_rec_iter_init(&it, &h, recs, len);
            while (spw_rec_next(&it, &rv) == 1) {
                if (rv.offset < off)
                    continue;
                CHECK_EQ(rv.offset, off);
                char want[32];
                int n = snprintf(want, sizeof want, "value-%05llu", (unsigned long long)off);
                CHECK_EQ(rv.value_len, (uint32_t)n + 200);
                CHECK(memcmp(rv.value, want, (size_t)n) == 0);
                off++;
            }
            at += h.length;
        }
    }
    spw_buf_fini(&b);
    spw_buf_fini(&scratch);
}

static void test_log_bounded(void)
{
    char *dir = spw_test_tmpdir("fdlog");
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.fd_cache_segments = CACHE;
    lc.sync_threads = 1;
    spw_log *log;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 1024; /* about 4 records a segment */
    int base = open_fds();
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    /* Bound: the active segment's two files and CACHE sealed segments',
     * and two more the checkpoint thread opens for a moment (the recovery
     * point's temp file and its directory, for the fsync). */
    int bound = 2 + 2 * CACHE + 2;
    int most = 0;
    for (int i = 0; i < NREC; i++) {
        char v[256];
        int n = snprintf(v, sizeof v, "value-%05d", i);
        memset(v + n, 'x', 200);
        spw_record r = {.key_len = -1, .value = v, .value_len = (uint32_t)n + 200, .ts = 1700000000000 + i};
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(p, &r, 1, NULL, SPW_ACK_FSYNC, &res));
        CHECK_EQ(res.base_offset, (uint64_t)i);
        int now = open_fds() - base;
        if (now > most)
            most = now;
    }
    spw_part_state st;
    spw_part_state_get(p, &st);
    printf("segments %u, most fds open while appending %d (bound %d)\n", st.segments, most, bound);
    fflush(stdout);
    CHECK(st.segments >= 40);
    CHECK(most <= bound);

    check_all(p);
    spw_fdcache_stats fs;
    spw_log_fdcache_stats(log, &fs);
    printf("after reading: open %u pinned %u hits %llu misses %llu evictions %llu\n", fs.open, fs.pinned,
           (unsigned long long)fs.hits, (unsigned long long)fs.misses, (unsigned long long)fs.evictions);
    CHECK(fs.open <= CACHE);
    CHECK_EQ(fs.pinned, 0);
    CHECK(fs.misses > 0);
    CHECK(fs.evictions > 0);
    CHECK(open_fds() - base <= bound);
    uint64_t ts_off;
    CHECK_OK(spw_part_offset_for_ts(p, 1700000000000 + 150, &ts_off));
    CHECK_EQ(ts_off, 150);
    CHECK(open_fds() - base <= bound);
    spw_part_close(p);
    CHECK_EQ(open_fds(), base);

    /* Opening again checks every segment, holding few at a time. */
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    CHECK(open_fds() - base <= bound);
    check_all(p);
    CHECK(open_fds() - base <= bound);
    spw_part_close(p);
    CHECK_EQ(open_fds(), base);
    spw_log_close(log);
    spw_test_rmrf(dir);
    free(dir);
}

int main(void)
{
    test_cache_alone();
    test_log_bounded();
    printf("ok\n");
    return 0;
}
