/*
 * The record cursor (log/cursor.h; docs/architecture.md, "The record
 * cursor"):
 *   - records come in offset order from any starting offset, also from
 *     the middle of a batch;
 *   - damage rule: a batch whose CRC holds but whose last record does not
 *     decode is damaged whole — the records before it are returned, then
 *     SPW_ECORRUPT with damage_from = the cursor's offset and resume = the
 *     batch's end, from wherever the read began; asking again gives the
 *     same answer (no skip, no loop); seeking to resume goes on;
 *     spw_cursor_next_batch answers the same;
 *   - visibility rule: records written but not fsynced are not returned;
 *     a cursor at the visible end asks for an fsync (spw_part_sync_soon),
 *     so they become readable without the fsync timer;
 *   - an offset before the start or past the visible end is SPW_ERANGE.
 */
#include <stdatomic.h>

#include "core/crc32c.h"
#include "core/error.h"
#include "core/varint.h"
#include "log/cursor.h"
#include "log/log.h"
#include "test.h"

#define TS0 1700000000000

static void append_values(spw_part *p, uint64_t from, uint32_t n, spw_ack ack)
{
    spw_record r[16];
    char v[16][32];
    CHECK(n <= 16);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(v[i], sizeof v[i], "v%llu", (unsigned long long)(from + i));
        r[i] = (spw_record){.key_len = -1, .value = v[i], .value_len = (uint32_t)strlen(v[i]), .ts = TS0};
    }
    spw_append_result res;
    CHECK_OK(spw_part_append_wait(p, r, n, NULL, ack, &res));
    CHECK_EQ(res.base_offset, from);
}

static void appended(void *arg, int status, const spw_append_result *r)
{
    (void)r;
    CHECK_EQ(status, 0);
    atomic_store((_Atomic int *)arg, 1);
}

/* Appends a batch of n records whose CRC holds but whose record `bad`
 * has a wrong offset_delta: its records do not decode (docs/formats/log.md,
 * "Records"). All records have ts TS0, so each ts_delta is one byte. */
static void append_spoiled(spw_part *p, uint64_t from, uint32_t n, uint32_t bad)
{
    spw_record r[16];
    char v[16][32];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(v[i], sizeof v[i], "v%llu", (unsigned long long)(from + i));
        r[i] = (spw_record){.key_len = -1, .value = v[i], .value_len = (uint32_t)strlen(v[i]), .ts = TS0};
    }
    spw_buf b = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    CHECK_OK(spw_batch_encode(&b, &scratch, r, n, NULL));
    const uint8_t *q = b.p + SPW_BATCH_HEADER_LEN, *end = b.p + b.len;
    for (uint32_t i = 0; i < bad; i++) {
        uint64_t len;
        size_t k = spw_varint_get(q, end, &len);
        CHECK(k > 0);
        q += k + len;
    }
    uint64_t len;
    size_t k = spw_varint_get(q, end, &len);
    CHECK(k > 0);
    uint8_t *od = (uint8_t *)q + k + 1; /* after length and the one-byte ts_delta */
    CHECK_EQ(*od, bad);
    *od = 0x7f;
    uint32_t crc = spw_crc32c(b.p + SPW_BATCH_CRC_START, b.len - SPW_BATCH_CRC_START);
    memcpy(b.p + 12, &crc, 4);
    spw_batch_hdr h;
    CHECK_OK(spw_batch_check(b.p, b.len, &h)); /* the CRC holds */
    _Atomic int done = 0;
    spw_append_result res;
    CHECK_OK(spw_part_append_batch(p, b.p, b.len, SPW_ACK_WRITTEN, 0, appended, (void *)&done, &res));
    CHECK_EQ(res.base_offset, from);
    for (int i = 0; i < 10000 && !atomic_load(&done); i++)
        usleep(1000);
    CHECK(atomic_load(&done));
    spw_buf_fini(&b);
    spw_buf_fini(&scratch);
}

static void check_value(const spw_record_view *rv, uint64_t off)
{
    char v[32];
    snprintf(v, sizeof v, "v%llu", (unsigned long long)off);
    CHECK_EQ(rv->offset, off);
    CHECK_EQ(rv->value_len, strlen(v));
    CHECK(memcmp(rv->value, v, rv->value_len) == 0);
}

int main(void)
{
    char *dir = spw_test_tmpdir("cursor");
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.fsync_interval_ms = 60000; /* only appends at ack=fsync and readers' requests fsync */
    spw_log *log;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_part_config pc;
    spw_part_config_default(&pc);
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));

    append_values(p, 0, 3, SPW_ACK_FSYNC); /* 0..2 */
    append_spoiled(p, 3, 4, 3);            /* 3..6: records 3..5 decode, 6 does not */
    append_values(p, 7, 2, SPW_ACK_FSYNC); /* 7..8, and the fsync covers 3..6 */
    CHECK_EQ(spw_part_visible_end(p), 9);

    spw_cursor c;
    spw_record_view rv;
    /* From 0 with a small read size (one batch a read), then a large one. */
    size_t sizes[] = {1, 1 << 20};
    for (int s = 0; s < 2; s++) {
        spw_cursor_init(&c, p, 0, sizes[s]);
        for (uint64_t o = 0; o < 3; o++) {
            CHECK_EQ(spw_cursor_next(&c, &rv), 1);
            check_value(&rv, o);
        }
        for (int again = 0; again < 3; again++) {
            CHECK_EQ(spw_cursor_next(&c, &rv), SPW_ECORRUPT);
            CHECK_EQ(c.damage_from, 3);
            CHECK_EQ(c.resume, 7);
            CHECK_EQ(c.next, 3);
        }
        spw_cursor_seek(&c, p, c.resume);
        for (uint64_t o = 7; o < 9; o++) {
            CHECK_EQ(spw_cursor_next(&c, &rv), 1);
            check_value(&rv, o);
        }
        CHECK_EQ(spw_cursor_next(&c, &rv), 0);
        CHECK_EQ(c.next, 9);
        spw_cursor_fini(&c);
    }

    /* From inside the damaged batch, even where its records decode: the
     * batch is damaged whole, the resume offset the same. */
    for (uint64_t from = 3; from < 7; from++) {
        spw_cursor_init(&c, p, from, 1 << 16);
        CHECK_EQ(spw_cursor_next(&c, &rv), SPW_ECORRUPT);
        CHECK_EQ(c.damage_from, from);
        CHECK_EQ(c.resume, 7);
        spw_cursor_fini(&c);
    }

    /* From the middle of a good batch. */
    spw_cursor_init(&c, p, 1, 1 << 16);
    CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    check_value(&rv, 1);
    spw_cursor_fini(&c);

    /* Batches: the same rule. */
    spw_cursor_init(&c, p, 1, 1 << 16);
    const uint8_t *batch;
    const spw_batch_hdr *h;
    CHECK_EQ(spw_cursor_next_batch(&c, &batch, &h), 1);
    CHECK_EQ(h->base_offset, 0);
    CHECK_EQ(h->record_count, 3);
    CHECK_EQ(c.next, 3);
    CHECK_EQ(spw_cursor_next_batch(&c, &batch, &h), SPW_ECORRUPT);
    CHECK_EQ(c.damage_from, 3);
    CHECK_EQ(c.resume, 7);
    spw_cursor_seek(&c, p, c.resume);
    CHECK_EQ(spw_cursor_next_batch(&c, &batch, &h), 1);
    CHECK_EQ(h->base_offset, 7);
    CHECK_EQ(spw_cursor_next_batch(&c, &batch, &h), 0);
    spw_cursor_fini(&c);

    /* A batch whose first record does not decode: the same answer, never
     * an empty success at the same offset (a reader would ask forever). */
    append_spoiled(p, 9, 3, 0);             /* 9..11 */
    append_values(p, 12, 1, SPW_ACK_FSYNC); /* 12, and the fsync covers 9..11 */
    spw_cursor_init(&c, p, 7, 1 << 16);
    CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    check_value(&rv, 7);
    CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    check_value(&rv, 8);
    CHECK_EQ(spw_cursor_next(&c, &rv), SPW_ECORRUPT);
    CHECK_EQ(c.damage_from, 9);
    CHECK_EQ(c.resume, 12);
    spw_cursor_seek(&c, p, c.resume);
    CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    check_value(&rv, 12);
    CHECK_EQ(spw_cursor_next(&c, &rv), 0);
    spw_cursor_fini(&c);

    /* Records, then batches: the batch after the last record returned. */
    spw_cursor_init(&c, p, 0, 1 << 16);
    for (uint64_t o = 0; o < 3; o++)
        CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    CHECK_EQ(spw_cursor_next_batch(&c, &batch, &h), SPW_ECORRUPT); /* 3..6, not 0..2 again */
    CHECK_EQ(c.damage_from, 3);
    spw_cursor_seek(&c, p, 7);
    CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    check_value(&rv, 7);
    CHECK_EQ(spw_cursor_next_batch(&c, &batch, &h), 1); /* the batch holding 8 */
    CHECK_EQ(h->base_offset, 7);
    CHECK_EQ(c.next, 9);
    spw_cursor_fini(&c);

    /* Out of range. */
    spw_cursor_init(&c, p, 100, 1 << 16);
    CHECK_EQ(spw_cursor_next(&c, &rv), SPW_ERANGE);
    spw_cursor_fini(&c);

    /* Visibility: written, not fsynced, is not returned; the cursor at
     * the visible end asks for the fsync (the timer is a minute). */
    append_values(p, 13, 2, SPW_ACK_WRITTEN);
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK_EQ(st.written_offset, 15);
    CHECK_EQ(spw_part_visible_end(p), 13);
    spw_cursor_init(&c, p, 13, 1 << 16);
    CHECK_EQ(spw_cursor_next(&c, &rv), 0);
    for (int i = 0; i < 10000 && spw_part_visible_end(p) < 15; i++)
        usleep(1000);
    CHECK_EQ(spw_part_visible_end(p), 15);
    CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    check_value(&rv, 13);
    CHECK_EQ(spw_cursor_next(&c, &rv), 1);
    check_value(&rv, 14);
    CHECK_EQ(spw_cursor_next(&c, &rv), 0);
    spw_cursor_fini(&c);

    spw_part_close(p);
    spw_log_close(log);
    spw_test_rmrf(dir);
    free(dir);
    printf("test_cursor: ok\n");
    return 0;
}
