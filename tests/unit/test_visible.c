/*
 * The visibility rule (log.h, "Visibility"; docs/architecture.md, "What
 * readers see"): records appended at ack=none or ack=written are not
 * readable — not by offset, not by time — until an fdatasync covered
 * them; a reader's spw_part_sync_soon makes the flusher fsync them in its
 * next cycle (the fsync timer here is a minute, so nothing else would),
 * and the durable hook runs once they are visible, and so does every hook
 * added beside it (spw_log_add_durable_hook; none once removed, none past
 * the slots). After a failed
 * fdatasync they stay invisible until recovery has synced what it keeps.
 */
#include <stdatomic.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "os/os.h"
#include "test.h"

#define TS0 1700000000000

static _Atomic int fsyncs, hooks, fail_fsync;

static int counting_fdatasync(int fd)
{
    atomic_fetch_add(&fsyncs, 1);
    if (atomic_load(&fail_fsync))
        return -EIO;
    return spw_os_default.fdatasync(fd);
}

#define MORE_HOOKS 12 /* more than the hook array's first size: it grows */
static _Atomic int more[MORE_HOOKS];

static void more_hook(void *arg) { atomic_fetch_add((_Atomic int *)arg, 1); }

static void hook(void *arg)
{
    CHECK(arg == &hooks);
    atomic_fetch_add(&hooks, 1);
}

static void append_n(spw_part *p, uint64_t from, uint32_t n, spw_ack ack)
{
    for (uint32_t i = 0; i < n; i++) {
        char v[32];
        snprintf(v, sizeof v, "v%llu", (unsigned long long)(from + i));
        spw_record r = {.key_len = -1, .value = v, .value_len = (uint32_t)strlen(v), .ts = TS0 + (int64_t)(from + i)};
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(p, &r, 1, NULL, ack, &res));
        CHECK_EQ(res.base_offset, from + i);
    }
}

/* Records readable from offset on (0 when none). */
static uint64_t count_readable(spw_part *p, uint64_t offset)
{
    spw_buf b = SPW_BUF_INIT;
    uint64_t seen = 0;
    for (;;) {
        int n = spw_part_read(p, offset, 1 << 16, &b, NULL);
        CHECK(n >= 0);
        if (n == 0)
            break;
        size_t pos = 0;
        for (int k = 0; k < n; k++) {
            spw_batch_hdr h;
            CHECK_OK(spw_batch_check(b.p + pos, b.len - pos, &h));
            uint64_t next = spw_batch_next_offset(&h);
            if (next > offset) {
                seen += next - (h.base_offset > offset ? h.base_offset : offset);
                offset = next;
            }
            pos += h.length;
        }
    }
    spw_buf_fini(&b);
    return seen;
}

static spw_part_state state(spw_part *p)
{
    spw_part_state st;
    spw_part_state_get(p, &st);
    return st;
}

static void test_written_not_visible(spw_log *log, const char *dir)
{
    spw_part_config pc;
    spw_part_config_default(&pc);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));

    /* Durable records are visible at once. */
    append_n(p, 0, 5, SPW_ACK_FSYNC);
    CHECK_EQ(spw_part_visible_end(p), 5);
    CHECK_EQ(count_readable(p, 0), 5);
    CHECK(atomic_load(&hooks) >= 1);

    /* Written, acknowledged at ack=written and ack=none, not fsynced. */
    append_n(p, 5, 10, SPW_ACK_WRITTEN);
    append_n(p, 15, 5, SPW_ACK_NONE);
    for (int i = 0; i < 5000 && state(p).written_offset < 20; i++)
        usleep(1000);
    spw_part_state st = state(p);
    CHECK_EQ(st.written_offset, 20);
    CHECK_EQ(st.durable_offset, 5);
    CHECK_EQ(spw_part_visible_end(p), 5);
    /* Not by offset: the end is the durable end, past it is out of range. */
    CHECK_EQ(count_readable(p, 0), 5);
    spw_buf b = SPW_BUF_INIT;
    CHECK_EQ(spw_part_read(p, 5, 4096, &b, NULL), 0);
    CHECK_EQ(b.len, 0);
    CHECK_EQ(spw_part_read(p, 6, 4096, &b, NULL), SPW_ERANGE);
    CHECK_EQ(spw_part_read(p, 19, 4096, &b, NULL), SPW_ERANGE);
    /* Not by time: a timestamp of an unsynced record gives the end. */
    uint64_t got;
    CHECK_OK(spw_part_offset_for_ts(p, TS0 + 3, &got));
    CHECK_EQ(got, 3);
    CHECK_OK(spw_part_offset_for_ts(p, TS0 + 12, &got));
    CHECK_EQ(got, 5);

    /* Nothing else fsyncs within the minute's timer: still invisible. */
    usleep(50 * 1000);
    CHECK_EQ(spw_part_visible_end(p), 5);
    CHECK_EQ(count_readable(p, 5), 0);

    /* A reader asks: the next flush cycle fsyncs, the hook runs. */
    int f0 = atomic_load(&fsyncs), h0 = atomic_load(&hooks);
    spw_part_sync_soon(p);
    spw_part_sync_soon(p); /* a second request while one is pending adds nothing */
    for (int i = 0; i < 5000 && spw_part_visible_end(p) < 20; i++)
        usleep(1000);
    CHECK_EQ(spw_part_visible_end(p), 20);
    CHECK_EQ(state(p).durable_offset, 20);
    CHECK(atomic_load(&fsyncs) > f0);
    for (int i = 0; i < 5000 && atomic_load(&hooks) == h0; i++)
        usleep(1000);
    CHECK(atomic_load(&hooks) > h0);
    CHECK_EQ(count_readable(p, 0), 20);
    CHECK_EQ(count_readable(p, 12), 8);
    CHECK_OK(spw_part_offset_for_ts(p, TS0 + 12, &got));
    CHECK_EQ(got, 12);
    CHECK_EQ(spw_part_read(p, 20, 4096, &b, NULL), 0);
    CHECK_EQ(spw_part_read(p, 21, 4096, &b, NULL), SPW_ERANGE);

    /* A request with nothing unsynced costs no fsync. */
    usleep(20 * 1000);
    f0 = atomic_load(&fsyncs);
    spw_part_sync_soon(p);
    usleep(50 * 1000);
    CHECK_EQ(atomic_load(&fsyncs), f0);
    spw_buf_fini(&b);
    spw_part_close(p);
}

/*
 * A failed fdatasync: records acknowledged at ack=written stay invisible
 * while the partition is failed (recovery may cut them and give their
 * offsets to new records); once recovery has decided what is on disk and
 * synced it, what it kept is visible and the hook runs.
 */
static void test_failed_fsync(spw_log *log, const char *dir)
{
    spw_part_config pc;
    spw_part_config_default(&pc);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    append_n(p, 0, 3, SPW_ACK_FSYNC);
    append_n(p, 3, 4, SPW_ACK_WRITTEN);
    atomic_store(&fail_fsync, 1);
    spw_part_sync_soon(p); /* the reader's request meets the failure */
    for (int i = 0; i < 5000 && !spw_part_failed(p); i++)
        usleep(1000);
    CHECK(spw_part_failed(p) != 0);
    usleep(300 * 1000); /* recovery attempts fail too (they fsync) */
    CHECK(spw_part_failed(p) != 0);
    CHECK_EQ(spw_part_visible_end(p), 3);
    CHECK_EQ(count_readable(p, 0), 3);
    spw_buf b = SPW_BUF_INIT;
    CHECK_EQ(spw_part_read(p, 4, 4096, &b, NULL), SPW_ERANGE);
    spw_buf_fini(&b);
    int h0 = atomic_load(&hooks);
    atomic_store(&fail_fsync, 0);
    for (int i = 0; i < 10000 && spw_part_failed(p); i++)
        usleep(1000);
    CHECK_EQ(spw_part_failed(p), 0);
    /* Linux kept the pages: recovery finds the four whole and keeps them. */
    CHECK_EQ(spw_part_visible_end(p), 7);
    CHECK_EQ(count_readable(p, 0), 7);
    for (int i = 0; i < 5000 && atomic_load(&hooks) == h0; i++)
        usleep(1000);
    CHECK(atomic_load(&hooks) > h0);
    spw_part_close(p);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1); /* the failed fsync is logged as an error */
    char *dir = spw_test_tmpdir("visible");
    spw_os.fdatasync = counting_fdatasync;
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.fsync_interval_ms = 60000; /* the timer never fires during the test */
    spw_log *log;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_log_set_durable_hook(log, hook, &hooks);
    for (int i = 0; i < MORE_HOOKS; i++)
        CHECK_EQ(spw_log_add_durable_hook(log, more_hook, &more[i]), 0);
    char pdir[4200];
    snprintf(pdir, sizeof pdir, "%s/p0", dir);
    test_written_not_visible(log, pdir);
    int seen[MORE_HOOKS];
    for (int i = 0; i < MORE_HOOKS; i++) {
        CHECK(atomic_load(&more[i]) >= 1);
        spw_log_remove_durable_hook(log, more_hook, &more[i]);
        seen[i] = atomic_load(&more[i]);
    }
    snprintf(pdir, sizeof pdir, "%s/p1", dir);
    test_failed_fsync(log, pdir); /* the hook runs again: the removed ones do not */
    for (int i = 0; i < MORE_HOOKS; i++)
        CHECK_EQ(atomic_load(&more[i]), seen[i]);
    spw_log_set_durable_hook(log, NULL, NULL);
    spw_log_close(log);
    spw_os.fdatasync = spw_os_default.fdatasync;
    spw_test_rmrf(dir);
    free(dir);
    printf("test_visible: ok\n");
    return 0;
}
