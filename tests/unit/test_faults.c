/*
 * Failed writes and fsyncs (through the spw_os fault table): the waiting
 * appends get the error, none is acknowledged, the partition refuses
 * appends while failed, and closing and reopening it recovers every
 * acknowledged record. (Recovery without a reopen: test_recover.c.)
 */
#include <stdatomic.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "os/os.h"
#include "test.h"

static _Atomic int fail_fsync, fail_write;

static int bad_fdatasync(int fd)
{
    if (atomic_load(&fail_fsync))
        return -EIO;
    return spw_os_default.fdatasync(fd);
}

static ssize_t bad_pwrite(int fd, const void *b, size_t n, off_t off)
{
    int f = atomic_load(&fail_write);
    if (f == 1)
        return -ENOSPC;
    if (f == 2 && n > 1) { /* a short write, then ENOSPC on the rest */
        atomic_store(&fail_write, 1);
        return spw_os_default.pwrite(fd, b, n / 2, off);
    }
    return spw_os_default.pwrite(fd, b, n, off);
}

static ssize_t bad_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    int f = atomic_load(&fail_write);
    if (f == 1)
        return -ENOSPC;
    if (f == 2 && iov[0].iov_len > 1) { /* a short write, then ENOSPC on the rest */
        atomic_store(&fail_write, 1);
        return spw_os_default.pwrite(fd, iov[0].iov_base, iov[0].iov_len / 2, off);
    }
    return spw_os_default.pwritev(fd, iov, cnt, off);
}

static int append_one(spw_part *p, spw_ack ack, uint64_t tag, uint64_t *off)
{
    char v[64];
    snprintf(v, sizeof v, "value-%llu", (unsigned long long)tag);
    spw_record r = {.key_len = -1, .value = v, .value_len = (uint32_t)strlen(v), .ts = 1};
    spw_append_result res;
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
            snprintf(v, sizeof v, "value-%llu", (unsigned long long)tag);
            CHECK_EQ(rv.value_len, strlen(v));
            CHECK(memcmp(rv.value, v, rv.value_len) == 0);
            found = 1;
        }
    CHECK(found);
    spw_buf_fini(&b);
}

static void run(const char *dir, int which)
{
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));
    uint64_t offs[10];
    for (int i = 0; i < 10; i++)
        CHECK_OK(append_one(p, SPW_ACK_FSYNC, (uint64_t)i, &offs[i]));

    /* Inject: fsync EIO, write ENOSPC, or short write then ENOSPC. */
    if (which == 0)
        atomic_store(&fail_fsync, 1);
    else
        atomic_store(&fail_write, which);
    int e = append_one(p, SPW_ACK_FSYNC, 100, NULL);
    CHECK(e < 0);
    if (which == 0)
        CHECK_EQ(e, -EIO);
    /* Failed partition: no more appends, at any level. */
    CHECK_EQ(append_one(p, SPW_ACK_NONE, 101, NULL), SPW_EROFS);
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK(st.failed < 0);
    CHECK_EQ(st.durable_offset, 10);
    atomic_store(&fail_fsync, 0);
    atomic_store(&fail_write, 0);
    spw_part_close(p);

    /* Reopen: everything acknowledged is there and appends work again. */
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, &rep));
    spw_part_state_get(p, &st);
    CHECK(st.next_offset >= 10);
    for (int i = 0; i < 10; i++)
        check_value(p, offs[i], (uint64_t)i);
    uint64_t off;
    CHECK_OK(append_one(p, SPW_ACK_FSYNC, 200, &off));
    CHECK_EQ(off, st.next_offset);
    check_value(p, off, 200);
    spw_part_close(p);
    spw_log_close(log);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    spw_os.fdatasync = bad_fdatasync;
    spw_os.pwrite = bad_pwrite;
    spw_os.pwritev = bad_pwritev;
    char *dir = spw_test_tmpdir("faults");
    const char *names[] = {"fsync-eio", "write-enospc", "short-write"};
    for (int w = 0; w < 3; w++) {
        char d[4096];
        snprintf(d, sizeof d, "%s/%s", dir, names[w]);
        run(d, w);
    }
    spw_os = spw_os_default;
    spw_test_rmrf(dir);
    free(dir);
    puts("test_faults: ok");
    return 0;
}
