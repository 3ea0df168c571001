/*
 * A failed partition recovers by itself once the disk works again, without
 * being reopened (log.h: the flusher's recovery with backoff):
 *   - fsync EIO: ack=fsync appends fail, acknowledged data (fsync and
 *     written) stays readable, appends are refused while the fault lasts
 *     (recovery attempts fail and back off), then accepted again once it
 *     clears, at the next offset, and everything survives a reopen;
 *   - a torn write (half the bytes, then ENOSPC, and the truncation that
 *     should take it back failing too): recovery cuts the torn tail itself;
 *   - a disk that stays full: recovery's probe write fails, so the
 *     partition keeps refusing until the disk takes writes again;
 *   - a roll whose new segment's directory fsync and clean-up unlink fail:
 *     the empty file left behind is taken over by the next roll;
 *   - the log's disk byte count follows all of it and returns to 0.
 */
#include <stdatomic.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "os/os.h"
#include "test.h"

static _Atomic int f_fdatasync, f_fsync, f_write, f_ftruncate, f_unlink;
static _Atomic int n_fdatasync_faults, n_write_faults;

static int bad_fdatasync(int fd)
{
    if (atomic_load(&f_fdatasync)) {
        atomic_fetch_add(&n_fdatasync_faults, 1);
        return -EIO;
    }
    return spw_os_default.fdatasync(fd);
}

static int bad_fsync(int fd) { return atomic_load(&f_fsync) ? -EIO : spw_os_default.fsync(fd); }
static int bad_ftruncate(int fd, off_t len) { return atomic_load(&f_ftruncate) ? -EIO : spw_os_default.ftruncate(fd, len); }
static int bad_unlink(const char *path) { return atomic_load(&f_unlink) ? -EIO : spw_os_default.unlink(path); }

/* f_write: 1 = ENOSPC, 2 = half of the first piece, then ENOSPC. */
static ssize_t bad_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    int f = atomic_load(&f_write);
    if (f == 1) {
        atomic_fetch_add(&n_write_faults, 1);
        return -ENOSPC;
    }
    if (f == 2 && iov[0].iov_len > 1) {
        atomic_store(&f_write, 1);
        return spw_os_default.pwrite(fd, iov[0].iov_base, iov[0].iov_len / 2, off);
    }
    return spw_os_default.pwritev(fd, iov, cnt, off);
}

static ssize_t bad_pwrite(int fd, const void *b, size_t n, off_t off)
{
    if (atomic_load(&f_write)) {
        atomic_fetch_add(&n_write_faults, 1);
        return -ENOSPC;
    }
    return spw_os_default.pwrite(fd, b, n, off);
}

static void value_of(char *v, size_t cap, uint64_t tag) { snprintf(v, cap, "value-%llu-padding-padding", (unsigned long long)tag); }

static int append_one(spw_part *p, spw_ack ack, uint64_t tag, uint64_t *off)
{
    char v[64];
    value_of(v, sizeof v, tag);
    spw_record r = {.key_len = -1, .value = v, .value_len = (uint32_t)strlen(v), .ts = 1};
    spw_append_result res = {0};
    int e = spw_part_append_wait(p, &r, 1, NULL, ack, &res);
    if (off)
        *off = res.base_offset;
    return e;
}

static void check_value(spw_part *p, uint64_t off, uint64_t tag)
{
    spw_buf b = SPW_BUF_INIT;
    CHECK(spw_part_read(p, off, 4096, &b, NULL) >= 1);
    spw_batch_hdr h;
    CHECK_OK(spw_batch_check(b.p, b.len, &h));
    spw_rec_iter it;
    spw_record_view rv;
    spw_rec_iter_init(&it, &h, b.p + SPW_BATCH_HEADER_LEN, h.length - SPW_BATCH_HEADER_LEN);
    int found = 0;
    while (spw_rec_next(&it, &rv) == 1)
        if (rv.offset == off) {
            char v[64];
            value_of(v, sizeof v, tag);
            CHECK_EQ(rv.value_len, strlen(v));
            CHECK(memcmp(rv.value, v, rv.value_len) == 0);
            found = 1;
        }
    CHECK(found);
    spw_buf_fini(&b);
}

/* Waits (bounded) until p accepts appends again. */
static void wait_recovered(spw_part *p)
{
    for (int i = 0; i < 2000 && spw_part_failed(p); i++)
        usleep(10000);
    CHECK_EQ(spw_part_failed(p), 0);
}

static uint64_t part_bytes(spw_part *p)
{
    spw_part_state st;
    spw_part_state_get(p, &st);
    return st.bytes;
}

static void test_fsync_eio(spw_log *log, const char *dir)
{
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));
    uint64_t offs[15];
    for (int i = 0; i < 10; i++)
        CHECK_OK(append_one(p, SPW_ACK_FSYNC, (uint64_t)i, &offs[i]));
    atomic_store(&f_fdatasync, 1);
    /* Written (not synced) data is acknowledged at ack=written. */
    for (int i = 10; i < 15; i++)
        CHECK_OK(append_one(p, SPW_ACK_WRITTEN, (uint64_t)i, &offs[i]));
    CHECK_EQ(append_one(p, SPW_ACK_FSYNC, 100, NULL), -EIO);
    CHECK_EQ(spw_part_failed(p), -EIO);
    CHECK_EQ(spw_log_failed_partitions(log), 1);
    /* While the disk keeps failing, recovery keeps failing (it fdatasyncs
     * what it keeps) and the partition keeps refusing appends. */
    int before = atomic_load(&n_fdatasync_faults);
    for (int i = 0; i < 1000 && atomic_load(&n_fdatasync_faults) < before + 2; i++)
        usleep(10000);
    CHECK(atomic_load(&n_fdatasync_faults) >= before + 2);
    CHECK_EQ(append_one(p, SPW_ACK_NONE, 101, NULL), SPW_EROFS);
    CHECK_EQ(spw_part_failed(p), -EIO);
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK_EQ(st.durable_offset, 10);

    uint64_t recoveries = spw_log_recoveries(log);
    atomic_store(&f_fdatasync, 0);
    wait_recovered(p);
    CHECK_EQ(spw_log_failed_partitions(log), 0);
    CHECK_EQ(spw_log_recoveries(log), recoveries + 1);
    spw_part_state_get(p, &st);
    /* The failed append's bytes were whole in the page cache: kept and synced
     * again (an error is not a promise of absence). */
    CHECK_EQ(st.next_offset, 16);
    CHECK_EQ(st.durable_offset, 16);
    for (int i = 0; i < 15; i++)
        check_value(p, offs[i], (uint64_t)i);
    uint64_t off;
    CHECK_OK(append_one(p, SPW_ACK_FSYNC, 200, &off));
    CHECK_EQ(off, 16);
    check_value(p, off, 200);
    CHECK_EQ(spw_log_disk_bytes(log), part_bytes(p));
    spw_part_close(p);
    CHECK_EQ(spw_log_disk_bytes(log), 0);

    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    for (int i = 0; i < 15; i++)
        check_value(p, offs[i], (uint64_t)i);
    check_value(p, 16, 200);
    spw_part_close(p);
}

static void test_torn(spw_log *log, const char *dir)
{
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));
    for (int i = 0; i < 5; i++)
        CHECK_OK(append_one(p, SPW_ACK_FSYNC, (uint64_t)i, NULL));
    uint64_t good = part_bytes(p);
    /* Half a batch lands, then ENOSPC, and the truncation that should take
     * the half back fails too: the file ends in a torn batch. */
    atomic_store(&f_ftruncate, 1);
    atomic_store(&f_write, 2);
    CHECK_EQ(append_one(p, SPW_ACK_FSYNC, 50, NULL), -ENOSPC);
    CHECK_EQ(spw_part_failed(p), -ENOSPC);
    CHECK_EQ(append_one(p, SPW_ACK_FSYNC, 51, NULL), SPW_EROFS);
    atomic_store(&f_write, 0);
    atomic_store(&f_ftruncate, 0);
    wait_recovered(p);
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK_EQ(st.next_offset, 5);
    CHECK_EQ(st.bytes, good);
    uint64_t off;
    CHECK_OK(append_one(p, SPW_ACK_FSYNC, 60, &off));
    CHECK_EQ(off, 5);
    for (int i = 0; i < 5; i++)
        check_value(p, (uint64_t)i, (uint64_t)i);
    check_value(p, 5, 60);
    CHECK_EQ(spw_log_disk_bytes(log), part_bytes(p));
    spw_part_close(p);
    /* Nothing torn is left for the next open to cut. */
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    CHECK_EQ(rep.damaged_batches, 0);
    check_value(p, 5, 60);
    spw_part_close(p);
}

/* A disk that stays full: recovery must not declare the partition healthy
 * just because the data it already has is intact — it probes with a new
 * block, which fails, so the partition keeps refusing until space is back. */
static void test_full(spw_log *log, const char *dir)
{
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));
    for (int i = 0; i < 5; i++)
        CHECK_OK(append_one(p, SPW_ACK_FSYNC, (uint64_t)i, NULL));
    atomic_store(&f_write, 1);
    CHECK_EQ(append_one(p, SPW_ACK_FSYNC, 50, NULL), -ENOSPC);
    int before = atomic_load(&n_write_faults);
    for (int i = 0; i < 1000 && atomic_load(&n_write_faults) < before + 2; i++)
        usleep(10000);
    CHECK(atomic_load(&n_write_faults) >= before + 2); /* attempts probed and failed */
    CHECK_EQ(spw_part_failed(p), -ENOSPC);
    CHECK_EQ(append_one(p, SPW_ACK_FSYNC, 51, NULL), SPW_EROFS);
    atomic_store(&f_write, 0);
    wait_recovered(p);
    uint64_t off;
    CHECK_OK(append_one(p, SPW_ACK_FSYNC, 60, &off));
    CHECK_EQ(off, 5);
    for (int i = 0; i < 5; i++)
        check_value(p, (uint64_t)i, (uint64_t)i);
    check_value(p, 5, 60);
    spw_part_close(p);
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0); /* the probe's zeros were cut */
    spw_part_close(p);
}

static void test_roll(spw_log *log, const char *dir)
{
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 1024;
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    uint64_t n = 0;
    while (1) {
        spw_part_state st;
        spw_part_state_get(p, &st);
        if (st.segments >= 2)
            break;
        CHECK_OK(append_one(p, SPW_ACK_FSYNC, n, NULL));
        n++;
        CHECK(n < 1000);
    }
    /* The next roll: creating the segment works, its directory fsync fails,
     * and so does the unlink that would take the new files back. */
    atomic_store(&f_fsync, 1);
    atomic_store(&f_unlink, 1);
    int failed = 0;
    for (int i = 0; i < 100 && !failed; i++) {
        int e = append_one(p, SPW_ACK_FSYNC, n, NULL);
        if (e == 0)
            n++;
        else
            failed = e;
    }
    CHECK_EQ(failed, -EIO);
    atomic_store(&f_fsync, 0);
    atomic_store(&f_unlink, 0);
    wait_recovered(p);
    /* Appends go on and roll into the leftover (empty) file. */
    for (int i = 0; i < 40; i++) {
        uint64_t off;
        CHECK_OK(append_one(p, SPW_ACK_FSYNC, n, &off));
        CHECK_EQ(off, n);
        n++;
    }
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK(st.segments >= 3);
    for (uint64_t i = 0; i < n; i++)
        check_value(p, i, i);
    CHECK_EQ(spw_log_disk_bytes(log), part_bytes(p));
    spw_part_close(p);
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    CHECK_EQ(rep.damaged_batches, 0);
    for (uint64_t i = 0; i < n; i++)
        check_value(p, i, i);
    spw_part_close(p);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    spw_os.fdatasync = bad_fdatasync;
    spw_os.fsync = bad_fsync;
    spw_os.pwrite = bad_pwrite;
    spw_os.pwritev = bad_pwritev;
    spw_os.ftruncate = bad_ftruncate;
    spw_os.unlink = bad_unlink;
    char *dir = spw_test_tmpdir("recover");
    spw_log *log;
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.fsync_interval_ms = 3600000; /* no timer fsync: only the tests' own appends sync */
    CHECK_OK(spw_log_open(&lc, &log));
    char d[4096];
    snprintf(d, sizeof d, "%s/fsync", dir);
    test_fsync_eio(log, d);
    snprintf(d, sizeof d, "%s/torn", dir);
    test_torn(log, d);
    snprintf(d, sizeof d, "%s/full", dir);
    test_full(log, d);
    snprintf(d, sizeof d, "%s/roll", dir);
    test_roll(log, d);
    CHECK_EQ(spw_log_disk_bytes(log), 0);
    CHECK_EQ(spw_log_failed_partitions(log), 0);
    spw_log_close(log);
    spw_os = spw_os_default;
    spw_test_rmrf(dir);
    free(dir);
    puts("test_recover: ok");
    return 0;
}
