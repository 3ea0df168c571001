/*
 * The partition log end to end in one process: append at every ack level
 * from several threads, read back by offset and by time, segment rolls,
 * index use and rebuild, retention with a protected offset, the budget.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "log/segment.h"
#include "test.h"

static void make_value(char *buf, size_t n, uint64_t tag)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (tag * 31 + i * 7) % 26);
}

/* Reads every record in [from, to) in order (reads of read_max bytes),
 * each handed to fn; the count. */
static uint64_t each_record(spw_part *p, uint64_t from, uint64_t to, size_t read_max,
                            void (*fn)(const spw_record_view *rv, void *arg), void *arg)
{
    spw_buf buf = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    uint64_t off = from, seen = 0;
    while (off < to) {
        int n = spw_part_read(p, off, read_max, &buf, NULL);
        CHECK(n > 0);
        size_t pos = 0;
        for (int b = 0; b < n; b++) {
            spw_batch_hdr h;
            CHECK_OK(spw_batch_check(buf.p + pos, buf.len - pos, &h));
            const uint8_t *recs;
            size_t len;
            CHECK_OK(spw_batch_records(buf.p + pos, &h, &scratch, &recs, &len));
            spw_rec_iter it;
            spw_record_view rv;
            spw_rec_iter_init(&it, &h, recs, len);
            int r;
            while ((r = spw_rec_next(&it, &rv)) == 1) {
                if (rv.offset < off || rv.offset >= to)
                    continue;
                CHECK_EQ(rv.offset, off);
                fn(&rv, arg);
                off++;
                seen++;
            }
            CHECK_EQ(r, 0);
            pos += h.length;
        }
        CHECK_EQ(pos, buf.len);
    }
    spw_buf_fini(&buf);
    spw_buf_fini(&scratch);
    return seen;
}

/* A record's value is make_value(len, offset) and its time ts_base + offset. */
static void check_tagged(const spw_record_view *rv, void *arg)
{
    int64_t ts_base = *(const int64_t *)arg;
    char want[512];
    CHECK(rv->value_len >= 8 && rv->value_len <= sizeof want);
    make_value(want, rv->value_len, rv->offset);
    CHECK(memcmp(want, rv->value, rv->value_len) == 0);
    CHECK_EQ(rv->ts, ts_base + (int64_t)rv->offset);
}

/* Reads every record in [from, to) and checks value tags (value = make_value(len, offset)). */
static uint64_t verify_range(spw_part *p, uint64_t from, uint64_t to, int64_t ts_base)
{
    return each_record(p, from, to, 1 << 16, check_tagged, &ts_base);
}

/* Appends n records at offsets the partition will assign; values depend on the offset,
 * so the caller must be the only appender. */
static void append_tagged(spw_part *p, uint32_t n, spw_ack ack, int64_t ts_base)
{
    spw_part_state st;
    spw_part_state_get(p, &st);
    spw_record recs[64];
    char vals[64][200];
    CHECK(n <= 64);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = st.next_offset + i;
        size_t len = 8 + (off * 13) % 150;
        make_value(vals[i], len, off);
        recs[i] = (spw_record){.key = "key", .key_len = 3, .value = vals[i], .value_len = (uint32_t)len,
                               .ts = ts_base + (int64_t)off};
    }
    spw_append_result res;
    CHECK_OK(spw_part_append_wait(p, recs, n, NULL, ack, &res));
    CHECK_EQ(res.base_offset, st.next_offset);
    CHECK_EQ(res.count, n);
}

static void test_basic(const char *dir)
{
    spw_log *log;
    spw_part *p;
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 16 << 10; /* many rolls */
    pc.index_interval_bytes = 512;
    CHECK_OK(spw_log_open(NULL, &log));
    spw_recovery_report rep;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    int64_t ts0 = 1700000000000;
    spw_ack acks[] = {SPW_ACK_NONE, SPW_ACK_WRITTEN, SPW_ACK_FSYNC};
    for (int i = 0; i < 300; i++)
        append_tagged(p, 1 + (uint32_t)(i % 40), acks[i % 3], ts0);
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK(st.segments > 3);
    /* ack=none and ack=written data become readable once durable (a
     * reader's request makes the flusher fsync them). */
    for (int i = 0; i < 5000; i++) {
        spw_part_state_get(p, &st);
        if (st.durable_offset == st.next_offset)
            break;
        spw_part_sync_soon(p);
        usleep(1000);
    }
    CHECK_EQ(st.durable_offset, st.next_offset);
    CHECK_EQ(verify_range(p, 0, st.next_offset, ts0), st.next_offset);
    /* Reads starting mid-batch and mid-segment. */
    for (uint64_t o = 0; o < st.next_offset; o += 97)
        CHECK_EQ(verify_range(p, o, st.next_offset < o + 50 ? st.next_offset : o + 50, ts0),
                 (st.next_offset < o + 50 ? st.next_offset : o + 50) - o);
    /* Offsets outside the log. */
    spw_buf b = SPW_BUF_INIT;
    CHECK_EQ(spw_part_read(p, st.next_offset, 4096, &b, NULL), 0);
    CHECK_EQ(spw_part_read(p, st.next_offset + 1, 4096, &b, NULL), SPW_ERANGE);
    /* By time: ts = ts0 + offset, so ts lookups give offsets back. */
    for (uint64_t o = 0; o < st.next_offset; o += 101) {
        uint64_t got;
        CHECK_OK(spw_part_offset_for_ts(p, ts0 + (int64_t)o, &got));
        CHECK_EQ(got, o);
    }
    uint64_t got;
    CHECK_OK(spw_part_offset_for_ts(p, ts0 + 1000000, &got));
    CHECK_EQ(got, st.next_offset);
    CHECK_OK(spw_part_offset_for_ts(p, 0, &got));
    CHECK_EQ(got, 0);
    uint64_t end = st.next_offset;
    spw_part_close(p);

    /* Reopen: same data, appends continue at the same offset, ids keep rising. */
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    CHECK_EQ(rep.truncated_bytes, 0);
    CHECK_EQ(rep.damaged_batches, 0);
    spw_part_state_get(p, &st);
    CHECK_EQ(st.next_offset, end);
    CHECK_EQ(verify_range(p, 0, end, ts0), end);
    append_tagged(p, 10, SPW_ACK_FSYNC, ts0);
    CHECK_EQ(verify_range(p, 0, end + 10, ts0), end + 10);
    spw_part_close(p);

    /* Delete every index: reopening rebuilds them and reads still work. */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -f %s/*.idx", dir);
    CHECK_EQ(system(cmd), 0);
    CHECK_OK(spw_part_open(log, dir, &pc, &p, &rep));
    CHECK(rep.indexes_rebuilt >= 1);
    CHECK_EQ(verify_range(p, 0, end + 10, ts0), end + 10);
    for (uint64_t o = 0; o < end; o += 101) {
        CHECK_OK(spw_part_offset_for_ts(p, ts0 + (int64_t)o, &got));
        CHECK_EQ(got, o);
    }
    spw_buf_fini(&b);
    spw_part_close(p);
    spw_log_close(log);
}

/* Several threads, several partitions, every ack level, async callbacks. */
typedef struct tctx {
    spw_part *p;
    int id;
    _Atomic int done;
    _Atomic uint64_t acked;
} tctx;

static void on_ack(void *arg, int status, const spw_append_result *r)
{
    tctx *t = arg;
    CHECK_EQ(status, 0);
    atomic_fetch_add(&t->acked, r->count);
    atomic_fetch_add(&t->done, 1);
}

static void *thread_main(void *arg)
{
    tctx *t = arg;
    char val[100];
    memset(val, 'v', sizeof val);
    spw_record recs[10];
    for (int i = 0; i < 10; i++)
        recs[i] = (spw_record){.key = &t->id, .key_len = sizeof t->id, .value = val, .value_len = sizeof val, .ts = 5};
    for (int i = 0; i < 500; i++)
        CHECK_OK(spw_part_append(t->p, recs, 1 + i % 10, NULL, (spw_ack)(i % 3), 0, on_ack, t, NULL));
    return NULL;
}

static void test_threads(const char *dir)
{
    spw_log *log;
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.max_pending_bytes = 64 << 10; /* small: appends block on the budget */
    CHECK_OK(spw_log_open(&lc, &log));
    spw_part *parts[3];
    for (int i = 0; i < 3; i++) {
        char d[4200];
        snprintf(d, sizeof d, "%s/p%d", dir, i);
        CHECK_OK(spw_part_open(log, d, NULL, &parts[i], NULL));
    }
    tctx t[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        t[i] = (tctx){.p = parts[i % 3], .id = i};
        CHECK_EQ(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 6; i++) {
        for (int k = 0; k < 5000 && atomic_load(&t[i].done) < 500; k++)
            usleep(1000);
        CHECK_EQ(atomic_load(&t[i].done), 500);
    }
    CHECK(spw_log_pending_bytes(log) <= lc.max_pending_bytes);
    uint64_t total = 0;
    for (int i = 0; i < 3; i++) {
        spw_part_state st;
        spw_part_state_get(parts[i], &st);
        total += st.next_offset;
        spw_part_close(parts[i]);
    }
    uint64_t acked = 0;
    for (int i = 0; i < 6; i++)
        acked += atomic_load(&t[i].acked);
    CHECK_EQ(total, acked);
    CHECK_EQ(total, 6 * 50 * 55);
    spw_log_close(log);
}

/* Budget: NOWAIT refuses with SPW_EAGAIN; a batch larger than the budget is SPW_EMSGSIZE. */
static void test_budget(const char *dir)
{
    spw_log *log;
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.max_pending_bytes = 8192;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, NULL, &p, NULL));
    static char big[9000];
    spw_record r = {.key_len = -1, .value = big, .value_len = sizeof big, .ts = 1};
    CHECK_EQ(spw_part_append(p, &r, 1, NULL, SPW_ACK_FSYNC, SPW_APPEND_NOWAIT, NULL, NULL, NULL), SPW_EMSGSIZE);
    r.value_len = 3000;
    /* Fill the budget faster than the flusher drains: at least one NOWAIT refusal
     * shows up within a bounded number of tries, and pending never passes the budget. */
    int refused = 0;
    for (int i = 0; i < 20000 && !refused; i++) {
        int e = spw_part_append(p, &r, 1, NULL, SPW_ACK_NONE, SPW_APPEND_NOWAIT, NULL, NULL, NULL);
        CHECK(e == 0 || e == SPW_EAGAIN);
        refused = e == SPW_EAGAIN;
        CHECK(spw_log_pending_bytes(log) <= lc.max_pending_bytes);
    }
    CHECK(refused);
    CHECK_EQ(spw_part_append(p, &r, 1, NULL, SPW_ACK_REPLICATED, 0, NULL, NULL, NULL), -ENOTSUP);
    spw_part_close(p);
    spw_log_close(log);
}

static void test_retention(const char *dir)
{
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 4096;
    pc.retention_bytes = 8192;
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    int64_t ts0 = 1000;
    for (int i = 0; i < 100; i++)
        append_tagged(p, 10, SPW_ACK_WRITTEN, ts0);
    spw_part_state st;
    for (int i = 0; i < 5000; i++) { /* readable once durable */
        spw_part_state_get(p, &st);
        if (st.durable_offset == st.next_offset)
            break;
        spw_part_sync_soon(p);
        usleep(1000);
    }
    CHECK_EQ(st.durable_offset, st.next_offset);
    uint32_t segs_before = st.segments;
    CHECK(segs_before > 10);
    /* Protected at offset 300: nothing holding offsets >= 300 may go. */
    spw_hold *hold;
    CHECK_OK(spw_part_hold(p, 300, &hold));
    int n = spw_part_enforce_retention(p, spw_wall_ms());
    CHECK(n > 0);
    spw_part_state_get(p, &st);
    CHECK(st.start_offset <= 300);
    CHECK_EQ(verify_range(p, st.start_offset, st.next_offset, ts0), st.next_offset - st.start_offset);
    spw_buf b = SPW_BUF_INIT;
    if (st.start_offset > 0)
        CHECK_EQ(spw_part_read(p, st.start_offset - 1, 4096, &b, NULL), SPW_ERANGE);
    /* Nothing else can go while the protected offset stays. */
    CHECK_EQ(spw_part_enforce_retention(p, spw_wall_ms()), 0);
    /* Unprotected: down to the byte limit, never the active segment. */
    spw_hold_release(hold);
    CHECK(spw_part_enforce_retention(p, spw_wall_ms()) > 0);
    spw_part_state_get(p, &st);
    CHECK(st.bytes >= 8192);
    CHECK(st.bytes < 8192 + 2 * 4096 + 4096);
    CHECK_EQ(verify_range(p, st.start_offset, st.next_offset, ts0), st.next_offset - st.start_offset);
    uint64_t start = st.start_offset;
    spw_part_close(p);
    /* Survives reopen: the log starts at the first remaining segment. */
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    spw_part_state_get(p, &st);
    CHECK_EQ(st.start_offset, start);
    /* Age: everything older than 0 ms except the active segment. */
    spw_buf_fini(&b);
    spw_part_close(p);
    pc.retention_bytes = -1;
    pc.retention_ms = 0;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    usleep(5000);
    CHECK(spw_part_enforce_retention(p, spw_wall_ms() + 10000) > 0);
    spw_part_state_get(p, &st);
    CHECK_EQ(st.segments, 1);
    spw_part_close(p);
    spw_log_close(log);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_WARN);
    char *dir = spw_test_tmpdir("log");
    char d[4096];
    snprintf(d, sizeof d, "%s/basic", dir);
    test_basic(d);
    snprintf(d, sizeof d, "%s/threads", dir);
    test_threads(d);
    snprintf(d, sizeof d, "%s/budget", dir);
    test_budget(d);
    snprintf(d, sizeof d, "%s/retention", dir);
    test_retention(d);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_log: ok");
    return 0;
}
