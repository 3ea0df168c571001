/*
 * spw_part_append_give (log.h): an encoded batch's heap block handed to the
 * fill chain instead of copied. Checked: the flusher writes from the given
 * block itself (the pwritev hook sees its address), the records read back;
 * a small batch is copied and its block freed; a block that must grow for
 * the chunk's header and cannot is copied; every refusal (invalid batch,
 * budget full, larger than the budget, no memory for the waiter, failed
 * partition) leaves the block the caller's, unchanged, with the budget given
 * back; a given block whose write fails is dropped by the chain. Leaks and
 * double frees show under the sanitizer build (cmake -DSPW_SANITIZE=ON).
 */
#include <stdatomic.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "log/log.h"
#include "os/os.h"
#include "test.h"

static _Atomic int fail_write;
static const uint8_t *_Atomic watch; /* a given block's address */
static _Atomic int watch_seen;

static ssize_t hook_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (atomic_load(&fail_write))
        return -ENOSPC;
    const uint8_t *w = atomic_load(&watch);
    for (int i = 0; w && i < cnt; i++) {
        const uint8_t *b = iov[i].iov_base;
        if (w >= b && w < b + iov[i].iov_len)
            atomic_store(&watch_seen, 1);
    }
    return spw_os_default.pwritev(fd, iov, cnt, off);
}

static int hook_fdatasync(int fd)
{
    if (atomic_load(&fail_write)) /* recovery fails too while writes do */
        return -EIO;
    return spw_os_default.fdatasync(fd);
}

static ssize_t hook_pwrite(int fd, const void *b, size_t n, off_t off)
{
    if (atomic_load(&fail_write))
        return -ENOSPC;
    return spw_os_default.pwrite(fd, b, n, off);
}

/* n records of 100 bytes, value i's first byte 'a' + (tag + i) % 26; the
 * block given room for the chunk's header (256 bytes of slack, under an
 * eighth of the batch), so that the give does not move it. */
static void encode(spw_buf *b, uint32_t n, uint32_t tag, int slack)
{
    spw_record *recs = spw_xcalloc(n, sizeof *recs);
    char (*vals)[100] = spw_xmalloc(n * sizeof *vals);
    for (uint32_t i = 0; i < n; i++) {
        memset(vals[i], 'a' + (int)((tag + i) % 26), sizeof vals[i]);
        recs[i] = (spw_record){.key_len = -1, .value = vals[i], .value_len = sizeof vals[i], .ts = 1};
    }
    spw_buf scratch = SPW_BUF_INIT;
    *b = (spw_buf)SPW_BUF_INIT;
    CHECK_OK(spw_batch_encode(b, &scratch, recs, n, NULL));
    spw_buf_fini(&scratch);
    b->p = spw_xrealloc(b->p, b->len + (size_t)slack);
    b->cap = b->len + (size_t)slack;
    spw_free(recs);
    spw_free(vals);
}

typedef struct done {
    _Atomic int n, err;
    uint64_t base;
} done;

static void done_cb(void *arg, int status, const spw_append_result *r)
{
    done *d = arg;
    if (status)
        atomic_store(&d->err, status);
    else
        d->base = r->base_offset;
    atomic_fetch_add(&d->n, 1);
}

static void wait_done(done *d, int n)
{
    for (int i = 0; i < 20000 && atomic_load(&d->n) < n; i++)
        usleep(500);
    CHECK_EQ(atomic_load(&d->n), n);
}

/* The records at [off, off + n) are encode(n, tag)'s. */
static void check_read(spw_part *p, uint64_t off, uint32_t n, uint32_t tag)
{
    spw_part_state st;
    for (int i = 0; i < 20000; i++) {
        spw_part_state_get(p, &st);
        if (st.durable_offset >= off + n)
            break;
        spw_part_sync_soon(p);
        usleep(500);
    }
    CHECK(st.durable_offset >= off + n);
    spw_cursor c;
    spw_cursor_init(&c, p, off, 1 << 20);
    spw_record_view rv;
    for (uint32_t seen = 0; seen < n; seen++) {
        CHECK_EQ(spw_cursor_next(&c, &rv), 1);
        CHECK_EQ(rv.offset, off + seen);
        CHECK_EQ(rv.value_len, 100);
        CHECK_EQ(((const uint8_t *)rv.value)[0], 'a' + (tag + seen) % 26);
        CHECK_EQ(((const uint8_t *)rv.value)[99], 'a' + (tag + seen) % 26);
    }
    spw_cursor_fini(&c);
}

/* A refused give: the block is the caller's, as it was. */
static void check_kept(const spw_buf *b, const spw_buf *copy)
{
    CHECK(b->p != NULL);
    CHECK_EQ(b->len, copy->len);
    CHECK(memcmp(b->p, copy->p, b->len) == 0);
}

static void test_written(const char *dir)
{
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));

    /* A large batch: written from the given block itself. */
    spw_buf b;
    encode(&b, 200, 0, 256);
    CHECK(b.len >= SPW_GIVE_MIN);
    atomic_store(&watch, b.p);
    done d = {0};
    spw_append_result res;
    CHECK_OK(spw_part_append_give(p, &b, SPW_ACK_FSYNC, 0, done_cb, &d, &res));
    CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
    wait_done(&d, 1);
    CHECK_EQ(atomic_load(&d.err), 0);
    CHECK_EQ(d.base, 0);
    CHECK_EQ(res.count, 200);
    CHECK_EQ(atomic_load(&watch_seen), 1);
    atomic_store(&watch, NULL);
    check_read(p, 0, 200, 0);

    /* ack=none: the callback at once, the block freed after the write. */
    encode(&b, 100, 7, 256);
    done dn = {0};
    CHECK_OK(spw_part_append_give(p, &b, SPW_ACK_NONE, 0, done_cb, &dn, NULL));
    CHECK(b.p == NULL);
    CHECK_EQ(atomic_load(&dn.n), 1);
    check_read(p, 200, 100, 7);

    /* A small batch is copied, its block freed at once. */
    encode(&b, 2, 3, 256);
    CHECK(b.len < SPW_GIVE_MIN);
    atomic_store(&watch, b.p);
    atomic_store(&watch_seen, 0);
    done ds = {0};
    CHECK_OK(spw_part_append_give(p, &b, SPW_ACK_FSYNC, 0, done_cb, &ds, NULL));
    CHECK(b.p == NULL && b.len == 0);
    atomic_store(&watch, NULL);
    wait_done(&ds, 1);
    CHECK_EQ(atomic_load(&ds.err), 0);
    check_read(p, 300, 2, 3);

    /* A block without room for the header and no memory to grow it:
     * copied, and freed. */
    encode(&b, 100, 11, 0);
    spw_alloc_fail_after(0);
    done dc = {0};
    CHECK_OK(spw_part_append_give(p, &b, SPW_ACK_FSYNC, 0, done_cb, &dc, NULL));
    spw_alloc_fail_after(-1);
    CHECK(b.p == NULL);
    wait_done(&dc, 1);
    CHECK_EQ(atomic_load(&dc.err), 0);
    check_read(p, 302, 100, 11);

    /* A block without room for the header: grown, then given. */
    encode(&b, 100, 13, 0);
    done dg = {0};
    CHECK_OK(spw_part_append_give(p, &b, SPW_ACK_WRITTEN, 0, done_cb, &dg, NULL));
    CHECK(b.p == NULL);
    wait_done(&dg, 1);
    check_read(p, 402, 100, 13);

    spw_part_close(p);
    spw_log_close(log);
}

static void test_refused(const char *dir)
{
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.max_pending_bytes = 64 << 10;
    spw_log *log;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));
    spw_buf b, copy = SPW_BUF_INIT;
    encode(&b, 100, 5, 256);
    CHECK_OK(spw_buf_put(&copy, b.p, b.len));
    done d = {0};

    /* Not a batch. */
    b.p[16] ^= 0xff;
    CHECK_EQ(spw_part_append_give(p, &b, SPW_ACK_FSYNC, 0, done_cb, &d, NULL), SPW_EINVAL);
    b.p[16] ^= 0xff;
    check_kept(&b, &copy);

    /* The budget full, no waiting. */
    CHECK_OK(spw_log_reserve(log, lc.max_pending_bytes - 100, 1));
    CHECK_EQ(spw_part_append_give(p, &b, SPW_ACK_FSYNC, SPW_APPEND_NOWAIT, done_cb, &d, NULL), SPW_EAGAIN);
    check_kept(&b, &copy);
    spw_log_release(log, lc.max_pending_bytes - 100);

    /* No memory for the waiter's ring (a fresh partition's first waiter):
     * refused after the chunk was set up, the budget given back. */
    spw_alloc_fail_after(0);
    CHECK_EQ(spw_part_append_give(p, &b, SPW_ACK_FSYNC, 0, done_cb, &d, NULL), SPW_ENOMEM);
    spw_alloc_fail_after(-1);
    check_kept(&b, &copy);
    CHECK_EQ(spw_log_pending_bytes(log), 0);

    /* Larger than the whole budget. */
    spw_buf big;
    encode(&big, 1000, 1, 256);
    CHECK(big.len > lc.max_pending_bytes);
    CHECK_EQ(spw_part_append_give(p, &big, SPW_ACK_FSYNC, 0, done_cb, &d, NULL), SPW_EMSGSIZE);
    CHECK(big.p != NULL);
    spw_buf_fini(&big);

    /* A given block whose write fails: the waiter gets the error, the
     * chain drops the block (freed once: the sanitizer build checks). */
    atomic_store(&fail_write, 1);
    CHECK_OK(spw_part_append_give(p, &b, SPW_ACK_FSYNC, 0, done_cb, &d, NULL));
    CHECK(b.p == NULL);
    wait_done(&d, 1);
    CHECK(atomic_load(&d.err) < 0);
    /* Failed partition: refused, the block the caller's. */
    encode(&b, 100, 5, 256);
    CHECK_EQ(spw_part_append_give(p, &b, SPW_ACK_NONE, 0, NULL, NULL, NULL), SPW_EROFS);
    check_kept(&b, &copy);
    atomic_store(&fail_write, 0);
    CHECK_EQ(spw_log_pending_bytes(log), 0);

    spw_buf_fini(&b);
    spw_buf_fini(&copy);
    spw_part_close(p);
    spw_log_close(log);
}

/* ack=none batches given to a partition whose write then fails: dropped
 * from the fill chain unwritten (spw__part_fail), each freed once. */
static void test_dropped(const char *dir)
{
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));
    atomic_store(&fail_write, 1);
    int given = 0;
    for (int i = 0; i < 50; i++) {
        spw_buf b;
        encode(&b, 100, (uint32_t)i, 256);
        int r = spw_part_append_give(p, &b, SPW_ACK_NONE, 0, NULL, NULL, NULL);
        if (r) {
            CHECK_EQ(r, SPW_EROFS);
            spw_buf_fini(&b);
        } else {
            CHECK(b.p == NULL);
            given++;
        }
    }
    CHECK(given > 0);
    spw_part_state st;
    for (int i = 0; i < 20000; i++) {
        spw_part_state_get(p, &st);
        if (st.failed)
            break;
        spw_part_sync_soon(p);
        usleep(500);
    }
    CHECK(st.failed < 0);
    atomic_store(&fail_write, 0);
    spw_part_close(p);
    CHECK_EQ(spw_log_pending_bytes(log), 0);
    spw_log_close(log);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    spw_os.pwritev = hook_pwritev;
    spw_os.pwrite = hook_pwrite;
    spw_os.fdatasync = hook_fdatasync;
    char *dir = spw_test_tmpdir("give");
    char d[4096];
    snprintf(d, sizeof d, "%s/written", dir);
    test_written(d);
    snprintf(d, sizeof d, "%s/refused", dir);
    test_refused(d);
    snprintf(d, sizeof d, "%s/dropped", dir);
    test_dropped(d);
    spw_os = spw_os_default;
    spw_test_rmrf(dir);
    free(dir);
    puts("test_give: ok");
    return 0;
}
