/*
 * The binary protocol codec (src/wire/frame.c, docs/protocol.md): round
 * trips of every message, and every malformed input rejected — each
 * truncation of every valid message, each length field pushed past the
 * end, unknown bits and values, trailing bytes. Every decode runs on a
 * heap copy of exactly the input's size, so an ASan build catches any
 * read past it.
 */
#include "core/endian.h"
#include "core/error.h"
#include "wire/frame.h"
#include "test.h"

typedef int (*decode_fn)(const uint8_t *p, size_t n);

/* Decodes a heap copy of exactly n bytes. */
static int run(decode_fn f, const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    int r = f(copy, n);
    free(copy);
    return r;
}

/* Every strict prefix and the message plus one trailing byte must fail. */
static void check_prefixes_and_tail(decode_fn f, const spw_buf *b)
{
    CHECK_EQ(run(f, b->p, b->len), 0);
    for (size_t n = 0; n < b->len; n++)
        CHECK(run(f, b->p, n) != 0);
    uint8_t *t = malloc(b->len + 1);
    memcpy(t, b->p, b->len);
    t[b->len] = 0;
    CHECK(run(f, t, b->len + 1) != 0);
    free(t);
}

/* Setting a u32 at `at` to large values must fail, never crash. */
static void check_len_field(decode_fn f, const spw_buf *b, size_t at)
{
    uint32_t vals[] = {0xFFFFFFFFu, 0x7FFFFFFFu, (uint32_t)b->len, (uint32_t)b->len + 1000};
    uint8_t *t = malloc(b->len);
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        memcpy(t, b->p, b->len);
        spw_put32(t + at, vals[i]);
        CHECK(run(f, t, b->len) != 0);
    }
    free(t);
}

static int dec_produce(const uint8_t *p, size_t n)
{
    spw_produce_req q;
    const char *why = NULL;
    int r = spw_produce_req_decode(p, n, &q, &why);
    if (r)
        CHECK(why != NULL);
    else {
        /* the iterator sees exactly count records inside the buffer */
        spw_frame_rec_iter it;
        spw_frame_rec fr;
        uint32_t k = 0;
        spw_frame_rec_iter_init(&it, &q);
        while (spw_frame_rec_next(&it, &fr)) {
            CHECK(fr.value >= p && fr.value + fr.value_len <= p + n);
            k++;
        }
        CHECK_EQ(k, q.count);
    }
    return r;
}

static void test_header(void)
{
    spw_buf b = SPW_BUF_INIT;
    size_t st;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_FETCH, 0, 0x1122334455667788ull, &st));
    CHECK_OK(spw_answer_ok(&b));
    spw_frame_finish(&b, st);
    CHECK_EQ(b.len, 18);
    CHECK_EQ(spw_get32(b.p), 14);
    spw_frame_hdr h;
    CHECK_EQ(spw_frame_hdr_decode(b.p, b.len, 1 << 20, &h), 0);
    CHECK_EQ(h.length, 14);
    CHECK_EQ(h.opcode, SPW_OP_FETCH);
    CHECK_EQ(h.version, SPW_FRAME_VERSION);
    CHECK_EQ(h.flags, 0);
    CHECK(h.request_id == 0x1122334455667788ull);
    /* The byte layout the doc shows. */
    CHECK_EQ(b.p[4], 2);
    CHECK_EQ(b.p[5], 1);
    CHECK_EQ(b.p[8], 0x88);
    /* Fewer than 16 bytes: wait for more, except that a bad length is judged at once. */
    for (size_t n = 0; n < 16; n++)
        CHECK_EQ(spw_frame_hdr_decode(b.p, n, 1 << 20, &h), n < 4 ? SPW_ETRUNC : SPW_ETRUNC);
    uint8_t bad[16];
    memcpy(bad, b.p, 16);
    spw_put32(bad, 11);
    CHECK_EQ(spw_frame_hdr_decode(bad, 4, 1 << 20, &h), SPW_ECORRUPT);
    spw_put32(bad, 0);
    CHECK_EQ(spw_frame_hdr_decode(bad, 16, 1 << 20, &h), SPW_ECORRUPT);
    spw_put32(bad, (1 << 20) + 1);
    CHECK_EQ(spw_frame_hdr_decode(bad, 4, 1 << 20, &h), SPW_EMSGSIZE);
    spw_put32(bad, 0xFFFFFFFFu);
    CHECK_EQ(spw_frame_hdr_decode(bad, 16, UINT32_MAX, &h), SPW_EMSGSIZE); /* the hard cap */
    spw_put32(bad, 14);
    spw_put16(bad + 6, 2); /* unknown flag */
    CHECK_EQ(spw_frame_hdr_decode(bad, 16, 1 << 20, &h), SPW_ECORRUPT);
    spw_put16(bad + 6, SPW_FLAG_RESPONSE);
    CHECK_EQ(spw_frame_hdr_decode(bad, 16, 1 << 20, &h), 0);
    CHECK_EQ(h.flags, SPW_FLAG_RESPONSE);
    /* Version and opcode are the dispatcher's to judge. */
    bad[5] = 9;
    bad[4] = 200;
    CHECK_EQ(spw_frame_hdr_decode(bad, 16, 1 << 20, &h), 0);
    CHECK_EQ(h.version, 9);
    spw_buf_fini(&b);
}

static void build_produce(spw_buf *b, uint8_t ack, uint8_t prio, uint32_t part, uint32_t nrec)
{
    size_t count_at;
    b->len = 0;
    CHECK_OK(spw_produce_req_begin(b, "orders", 6, ack, prio, part, 77, 1000, &count_at));
    for (uint32_t i = 0; i < nrec; i++) {
        char key[16], val[32];
        int kl = snprintf(key, sizeof key, "k%u", i);
        int vl = snprintf(val, sizeof val, "{\"n\":%u}", i);
        spw_frame_rec r = {.attrs = (uint8_t)((i % 2 ? SPW_REC_HAS_KEY : 0) | (i % 3 ? SPW_REC_HAS_TS : 0)),
                           .ts = 1700000000000 + i,
                           .key = (const uint8_t *)key,
                           .key_len = i % 2 ? kl : -1,
                           .value = (const uint8_t *)val,
                           .value_len = (uint32_t)vl};
        CHECK_OK(spw_produce_rec_put(b, &r));
    }
    spw_produce_req_set_count(b, count_at, nrec);
}

static void test_produce(void)
{
    spw_buf b = SPW_BUF_INIT;
    build_produce(&b, SPW_ACK_FSYNC, 2, SPW_PARTITION_ANY, 5);
    spw_produce_req q;
    const char *why;
    CHECK_EQ(spw_produce_req_decode(b.p, b.len, &q, &why), 0);
    CHECK_EQ(q.stream_len, 6);
    CHECK(memcmp(q.stream, "orders", 6) == 0);
    CHECK_EQ(q.ack, SPW_ACK_FSYNC);
    CHECK_EQ(q.priority, 2);
    CHECK(q.partition == SPW_PARTITION_ANY);
    CHECK_EQ(q.producer_id, 77);
    CHECK_EQ(q.producer_seq, 1000);
    CHECK_EQ(q.count, 5);
    spw_frame_rec_iter it;
    spw_frame_rec fr;
    spw_frame_rec_iter_init(&it, &q);
    for (uint32_t i = 0; i < 5; i++) {
        CHECK_EQ(spw_frame_rec_next(&it, &fr), 1);
        char val[32];
        int vl = snprintf(val, sizeof val, "{\"n\":%u}", i);
        CHECK_EQ(fr.value_len, vl);
        CHECK(memcmp(fr.value, val, (size_t)vl) == 0);
        if (i % 2) {
            char key[16];
            int kl = snprintf(key, sizeof key, "k%u", i);
            CHECK_EQ(fr.key_len, kl);
            CHECK(memcmp(fr.key, key, (size_t)kl) == 0);
        } else {
            CHECK_EQ(fr.key_len, -1);
        }
        CHECK_EQ(!!(fr.attrs & SPW_REC_HAS_TS), !!(i % 3));
        CHECK_EQ(fr.ts, 1700000000000 + i);
    }
    CHECK_EQ(spw_frame_rec_next(&it, &fr), 0);

    check_prefixes_and_tail(dec_produce, &b);
    /* the stream length, then the first record's key and value lengths */
    uint8_t *t = malloc(b.len);
    memcpy(t, b.p, b.len);
    spw_put16(t, 0xFFFF);
    CHECK(run(dec_produce, t, b.len) != 0);
    spw_put16(t, 0); /* empty name */
    CHECK(run(dec_produce, t, b.len) != 0);
    size_t head = 2 + 6 + 1 + 1 + 2 + 4 + 8 + 4 + 4; /* 32 */
    CHECK_EQ(head, 32);
    check_len_field(dec_produce, &b, 28);               /* count */
    check_len_field(dec_produce, &b, head + 1 + 8);     /* record 0 key_len (no key: must be 0) */
    check_len_field(dec_produce, &b, head + 1 + 8 + 4); /* record 0 value_len */
    /* field values */
    struct {
        size_t at;
        uint8_t v;
    } bytes[] = {
        {8, 4},          /* ack 4 */
        {8, 254},        /* ack 254 */
        {9, 4},          /* priority 4 */
        {10, 2},         /* unknown flag bit */
        {11, 0x80},      /* unknown flag bit */
        {head, 0x04},    /* record attrs unknown bit */
        {head, 0x80},    /* record attrs unknown bit */
    };
    for (size_t i = 0; i < sizeof bytes / sizeof *bytes; i++) {
        memcpy(t, b.p, b.len);
        t[bytes[i].at] = bytes[i].v;
        CHECK(run(dec_produce, t, b.len) != 0);
    }
    memcpy(t, b.p, b.len);
    t[8] = SPW_ACK_DEFAULT;
    CHECK_EQ(run(dec_produce, t, b.len), 0);
    /* flags: 0 from spw_produce_req_begin; SUPERSEDE_OK is bit 0 of the
     * u16 at byte 10, which spw_produce_req_set_flags sets */
    CHECK_EQ(q.flags, 0);
    CHECK_EQ(t[10], 0);
    memcpy(t, b.p, b.len);
    spw_buf fb = {.p = t, .len = b.len, .cap = b.len};
    spw_produce_req_set_flags(&fb, 28, SPW_PRODUCE_SUPERSEDE_OK);
    CHECK_EQ(t[10], 1);
    CHECK_EQ(t[11], 0);
    CHECK_EQ(spw_produce_req_decode(t, b.len, &q, &why), 0);
    CHECK_EQ(q.flags, SPW_PRODUCE_SUPERSEDE_OK);
    CHECK_EQ(q.count, 5);
    CHECK_EQ(q.producer_seq, 1000);
    /* count 0 */
    memcpy(t, b.p, b.len);
    spw_put32(t + 28, 0);
    CHECK(run(dec_produce, t, b.len) != 0);
    /* count one less: trailing bytes */
    spw_put32(t + 28, 4);
    CHECK(run(dec_produce, t, b.len) != 0);
    /* a stream name of 129 bytes */
    spw_buf big = SPW_BUF_INIT;
    char name[129];
    memset(name, 'a', sizeof name);
    size_t ca;
    CHECK_OK(spw_produce_req_begin(&big, name, 129, 0, 0, 0, 0, 0, &ca));
    spw_frame_rec r = {.key_len = -1, .value = (const uint8_t *)"{}", .value_len = 2};
    CHECK_OK(spw_produce_rec_put(&big, &r));
    spw_produce_req_set_count(&big, ca, 1);
    CHECK(run(dec_produce, big.p, big.len) != 0);
    /* 128 is fine; an empty value and an empty key are fine */
    big.len = 0;
    CHECK_OK(spw_produce_req_begin(&big, name, 128, 0, 0, 3, 0, 0, &ca));
    r = (spw_frame_rec){.attrs = SPW_REC_HAS_KEY, .key = (const uint8_t *)"", .key_len = 0, .value_len = 0};
    CHECK_OK(spw_produce_rec_put(&big, &r));
    spw_produce_req_set_count(&big, ca, 1);
    CHECK_EQ(run(dec_produce, big.p, big.len), 0);
    CHECK_EQ(spw_produce_req_decode(big.p, big.len, &q, &why), 0);
    CHECK_EQ(q.partition, 3);
    spw_frame_rec_iter_init(&it, &q);
    CHECK_EQ(spw_frame_rec_next(&it, &fr), 1);
    CHECK_EQ(fr.key_len, 0);
    CHECK_EQ(fr.value_len, 0);
    spw_buf_fini(&big);
    free(t);
    spw_buf_fini(&b);
}

static int dec_presp(const uint8_t *p, size_t n)
{
    spw_produce_resp r;
    const char *why;
    return spw_produce_resp_decode(p, n, &r, &why);
}

static void test_produce_resp(void)
{
    spw_buf b = SPW_BUF_INIT;
    spw_produce_slot slots[2] = {{1, 100, 2}, {3, 7, 1}};
    uint32_t parts[3] = {3, 1, 1};
    CHECK_OK(spw_produce_resp_encode(&b, slots, 2, parts, 3, NULL));
    spw_produce_resp r;
    const char *why;
    CHECK_EQ(spw_produce_resp_decode(b.p, b.len, &r, &why), 0);
    CHECK_EQ(r.nslots, 2);
    CHECK_EQ(r.nrecords, 3);
    spw_produce_slot s;
    spw_produce_resp_slot(&r, 0, &s);
    CHECK_EQ(s.partition, 1);
    CHECK_EQ(s.first_offset, 100);
    CHECK_EQ(s.count, 2);
    spw_produce_resp_slot(&r, 1, &s);
    CHECK_EQ(s.partition, 3);
    CHECK_EQ(spw_produce_resp_part(&r, 0), 3);
    CHECK_EQ(spw_produce_resp_part(&r, 2), 1);
    check_prefixes_and_tail(dec_presp, &b);
    check_len_field(dec_presp, &b, 0);
    check_len_field(dec_presp, &b, 4 + 32);
    uint8_t *t = malloc(b.len);
    memcpy(t, b.p, b.len);
    spw_put32(t + 4 + 12, 5); /* counts no longer add up */
    CHECK(run(dec_presp, t, b.len) != 0);
    memcpy(t, b.p, b.len);
    spw_put32(t + 4 + 32 + 4, 9); /* a record in a partition without a slot */
    CHECK(run(dec_presp, t, b.len) != 0);
    memcpy(t, b.p, b.len);
    spw_put32(t + 4 + 16, 1); /* partition named twice */
    CHECK(run(dec_presp, t, b.len) != 0);
    memcpy(t, b.p, b.len);
    spw_put32(t + 4 + 32 + 4, SPW_PART_SUPERSEDED); /* superseded, but the slot still counts it */
    CHECK(run(dec_presp, t, b.len) != 0);
    free(t);
    spw_buf_fini(&b);

    /* Coalescing: records 1 and 3 superseded (no slot, no offset); the
     * slots count the other three. Byte by byte (docs/protocol.md). */
    spw_produce_slot cs[2] = {{2, 40, 2}, {0, 9, 1}};
    uint32_t cp[5] = {2, SPW_PART_SUPERSEDED, 0, SPW_PART_SUPERSEDED, 2};
    CHECK_OK(spw_produce_resp_encode(&b, cs, 2, cp, 5, NULL));
    static const uint8_t want[] = {
        2, 0, 0, 0,                                           /* nslots 2 */
        2, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,      /* partition 2, first_offset 40, count 2 */
        0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,       /* partition 0, first_offset 9, count 1 */
        5, 0, 0, 0,                                           /* nrecords 5 */
        2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0,
    };
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    CHECK_EQ(spw_produce_resp_decode(b.p, b.len, &r, &why), 0);
    CHECK_EQ(r.nrecords, 5);
    CHECK(spw_produce_resp_part(&r, 1) == SPW_PART_SUPERSEDED);
    CHECK_EQ(spw_produce_resp_part(&r, 4), 2);
    t = malloc(b.len);
    memcpy(t, b.p, b.len);
    spw_put32(t + 4 + 32 + 4 + 4 * 4, SPW_PART_SUPERSEDED); /* now partition 2's slot counts one too many */
    CHECK(run(dec_presp, t, b.len) != 0);
    memcpy(t, b.p, b.len);
    spw_put32(t + 4 + 32 + 4 + 4 * 1, 0); /* a superseded record back in partition 0: one too few */
    CHECK(run(dec_presp, t, b.len) != 0);
    free(t);
    /* Everything superseded: no slots at all. */
    b.len = 0;
    uint32_t all[2] = {SPW_PART_SUPERSEDED, SPW_PART_SUPERSEDED};
    CHECK_OK(spw_produce_resp_encode(&b, NULL, 0, all, 2, NULL));
    CHECK_EQ(spw_produce_resp_decode(b.p, b.len, &r, &why), 0);
    CHECK_EQ(r.nslots, 0);
    spw_buf_fini(&b);
}

static int dec_freq(const uint8_t *p, size_t n)
{
    spw_fetch_req q;
    const char *why;
    return spw_fetch_req_decode(p, n, &q, &why);
}

static int dec_fresp(const uint8_t *p, size_t n)
{
    spw_fetch_resp r;
    const char *why;
    int e = spw_fetch_resp_decode(p, n, &r, &why);
    if (e == 0 && r.mode == SPW_FETCH_RECORDS) {
        spw_fetch_iter it;
        spw_fetch_rec fr;
        uint32_t k = 0;
        spw_fetch_iter_init(&it, &r);
        while (spw_fetch_iter_next(&it, &fr))
            k++;
        CHECK_EQ(k, r.count);
    }
    return e;
}

/* SPW_PRODUCE_VERSIONED: the expectation after the records, each record's
 * version after the answer's partitions (docs/protocol.md "Versioned
 * streams"), byte by byte as the document's example. */
static void test_produce_versioned(void)
{
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    CHECK_OK(spw_produce_req_begin(&b, "acc", 3, SPW_ACK_FSYNC, 255, SPW_PARTITION_ANY, 0, 0, &ca));
    spw_frame_rec r = {.attrs = SPW_REC_HAS_KEY, .key = (const uint8_t *)"a", .key_len = 1,
                       .value = (const uint8_t *)"{}", .value_len = 2};
    CHECK_OK(spw_produce_rec_put(&b, &r));
    CHECK_OK(spw_produce_req_put_expect(&b, SPW_EXPECT_EXACT, 7));
    spw_produce_req_set_count(&b, ca, 1);
    spw_produce_req_set_flags(&b, ca, SPW_PRODUCE_VERSIONED);
    static const uint8_t want[] = {
        0x03, 0x00, 'a', 'c', 'c', 0x02, 0xff, 0x02, 0x00, 0xff, 0xff, 0xff, 0xff, /* stream, ack, prio, flags, partition */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0,                       /* producer id, seq, count 1 */
        0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 'a', 0x02, 0, 0, 0, '{', '}', /* the record */
        0x03, 0x07, 0, 0, 0, 0, 0, 0, 0,                                          /* expect exactly 7 */
    };
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    spw_produce_req q;
    const char *why;
    CHECK_EQ(spw_produce_req_decode(b.p, b.len, &q, &why), 0);
    CHECK_EQ(q.expect, SPW_EXPECT_EXACT);
    CHECK_EQ(q.expected_version, 7);
    CHECK_EQ(q.count, 1);
    spw_frame_rec_iter it;
    spw_frame_rec fr;
    spw_frame_rec_iter_init(&it, &q);
    CHECK_EQ(spw_frame_rec_next(&it, &fr), 1);
    CHECK_EQ(fr.value_len, 2);
    CHECK_EQ(spw_frame_rec_next(&it, &fr), 0);
    /* Truncated expectation, unknown expect, and the flag without one. */
    CHECK_EQ(spw_produce_req_decode(b.p, b.len - 1, &q, &why), SPW_EINVAL);
    b.p[b.len - 9] = 4;
    CHECK_EQ(spw_produce_req_decode(b.p, b.len, &q, &why), SPW_EINVAL);
    b.p[b.len - 9] = 3;
    spw_produce_req_set_flags(&b, ca, 0);
    CHECK_EQ(spw_produce_req_decode(b.p, b.len, &q, &why), SPW_EINVAL); /* bytes after the last record */
    spw_produce_req_set_flags(&b, ca, 0x0004);
    CHECK_EQ(spw_produce_req_decode(b.p, b.len, &q, &why), SPW_EINVAL); /* unknown flag */
    /* The answer: one slot, one record at version 8. */
    spw_buf a = SPW_BUF_INIT;
    spw_produce_slot sl = {.partition = 1, .first_offset = 5, .count = 1};
    uint32_t part = 1;
    uint64_t ver = 8;
    CHECK_OK(spw_produce_resp_encode(&a, &sl, 1, &part, 1, &ver));
    CHECK_EQ(a.len, 4 + 16 + 4 + 4 + 8);
    spw_produce_resp pr;
    CHECK_EQ(spw_produce_resp_decode(a.p, a.len, &pr, &why), 0);
    CHECK(pr.versions != NULL);
    CHECK_EQ(spw_produce_resp_version(&pr, 0), 8);
    CHECK_EQ(spw_produce_resp_decode(a.p, a.len - 1, &pr, &why), SPW_EINVAL);
    CHECK_EQ(spw_produce_resp_decode(a.p, a.len - 8, &pr, &why), 0);
    CHECK(pr.versions == NULL);
    CHECK_EQ(spw_produce_resp_version(&pr, 0), 0);
    spw_buf_fini(&a);
    spw_buf_fini(&b);
}

/* KEY_EVENTS and SNAPSHOT_PUT: the document's example byte by byte,
 * round trips, and the refusals. */
static void test_key_events(void)
{
    spw_buf b = SPW_BUF_INIT;
    spw_key_events_req q = {.stream = "acc", .stream_len = 3, .key = (const uint8_t *)"a", .key_len = 1,
                            .from_version = 1, .max_records = 10};
    CHECK_OK(spw_key_events_req_encode(&b, &q));
    static const uint8_t want[] = {0x03, 0x00, 'a', 'c', 'c', 0x01, 0, 0, 0, 'a', 0x01, 0, 0, 0, 0, 0, 0, 0,
                                   0x0a, 0, 0, 0};
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    spw_key_events_req d;
    const char *why;
    CHECK_EQ(spw_key_events_req_decode(b.p, b.len, &d, &why), 0);
    CHECK_EQ(d.from_version, 1);
    CHECK_EQ(d.max_records, 10);
    CHECK_EQ(d.key_len, 1);
    CHECK_EQ(spw_key_events_req_decode(b.p, b.len - 1, &d, &why), SPW_EINVAL);
    b.p[b.len - 4] = 0; /* max_records 0 */
    CHECK_EQ(spw_key_events_req_decode(b.p, b.len, &d, &why), SPW_EINVAL);
    b.len = 0;
    q.key_len = 0;
    CHECK_OK(spw_key_events_req_encode(&b, &q));
    CHECK_EQ(spw_key_events_req_decode(b.p, b.len, &d, &why), SPW_EINVAL); /* empty key */
    /* The answer. */
    b.len = 0;
    size_t ca;
    CHECK_OK(spw_key_events_resp_begin(&b, 9, 7, "{}", 2, &ca));
    spw_key_event e1 = {.version = 8, .offset = 100, .ts = -5, .value = (const uint8_t *)"xy", .value_len = 2};
    spw_key_event e2 = {.version = 9, .offset = 120, .ts = 6, .value = (const uint8_t *)"", .value_len = 0};
    CHECK_OK(spw_key_events_resp_add(&b, &e1));
    CHECK_OK(spw_key_events_resp_add(&b, &e2));
    spw_key_events_resp_set_count(&b, ca, 2);
    CHECK_EQ(b.len, 8 + 8 + 4 + 2 + 4 + 2 * 28 + 2);
    spw_key_events_resp r;
    CHECK_EQ(spw_key_events_resp_decode(b.p, b.len, &r, &why), 0);
    CHECK_EQ(r.current_version, 9);
    CHECK_EQ(r.snapshot_version, 7);
    CHECK_EQ(r.state_len, 2);
    spw_key_event e;
    CHECK_EQ(spw_key_events_next(&r, &e), 1);
    CHECK_EQ(e.version, 8);
    CHECK_EQ(e.ts, -5);
    CHECK_EQ(e.value_len, 2);
    CHECK_EQ(spw_key_events_next(&r, &e), 1);
    CHECK_EQ(e.offset, 120);
    CHECK_EQ(spw_key_events_next(&r, &e), 0);
    CHECK_EQ(spw_key_events_resp_decode(b.p, b.len - 1, &r, &why), SPW_EINVAL);
    spw_put32(b.p + ca, 3);
    CHECK_EQ(spw_key_events_resp_decode(b.p, b.len, &r, &why), SPW_EINVAL);
    /* SNAPSHOT_PUT. */
    b.len = 0;
    spw_snapshot_put_req sp = {.stream = "acc", .stream_len = 3, .key = (const uint8_t *)"a", .key_len = 1,
                               .version = 4, .state = (const uint8_t *)"{}", .state_len = 2};
    CHECK_OK(spw_snapshot_put_req_encode(&b, &sp));
    spw_snapshot_put_req sd;
    CHECK_EQ(spw_snapshot_put_req_decode(b.p, b.len, &sd, &why), 0);
    CHECK_EQ(sd.version, 4);
    CHECK_EQ(sd.state_len, 2);
    CHECK(memcmp(sd.state, "{}", 2) == 0);
    CHECK_EQ(spw_snapshot_put_req_decode(b.p, b.len + 0 - 1, &sd, &why), SPW_EINVAL);
    spw_buf_fini(&b);
}

static void test_fetch(void)
{
    spw_buf b = SPW_BUF_INIT;
    spw_fetch_req q = {.stream = "s1", .stream_len = 2, .partition = 3, .offset = 12345, .max_bytes = 999,
                       .mode = SPW_FETCH_BATCHES};
    CHECK_OK(spw_fetch_req_encode(&b, &q));
    spw_fetch_req d;
    const char *why;
    CHECK_EQ(spw_fetch_req_decode(b.p, b.len, &d, &why), 0);
    CHECK_EQ(d.partition, 3);
    CHECK_EQ(d.offset, 12345);
    CHECK_EQ(d.max_bytes, 999);
    CHECK_EQ(d.mode, SPW_FETCH_BATCHES);
    check_prefixes_and_tail(dec_freq, &b);
    b.p[b.len - 1] = 2; /* mode */
    CHECK(run(dec_freq, b.p, b.len) != 0);

    /* records */
    b.len = 0;
    size_t ca;
    CHECK_OK(spw_fetch_resp_head(&b, 1, 10, 5, SPW_FETCH_RECORDS, &ca));
    spw_fetch_rec r1 = {.offset = 3, .id = 99, .ts = -5, .key = (const uint8_t *)"kk", .key_len = 2,
                        .value = (const uint8_t *)"vvv", .value_len = 3};
    spw_fetch_rec r2 = {.offset = 4, .id = 100, .ts = 7, .key = NULL, .key_len = -1, .value = NULL, .value_len = 0};
    CHECK_OK(spw_fetch_rec_put(&b, &r1));
    CHECK_OK(spw_fetch_rec_put(&b, &r2));
    spw_fetch_resp_set_count(&b, ca, 2);
    spw_fetch_resp fr;
    CHECK_EQ(spw_fetch_resp_decode(b.p, b.len, &fr, &why), 0);
    CHECK_EQ(fr.start_offset, 1);
    CHECK_EQ(fr.end_offset, 10);
    CHECK_EQ(fr.next_offset, 5);
    CHECK_EQ(fr.count, 2);
    spw_fetch_iter it;
    spw_fetch_rec o;
    spw_fetch_iter_init(&it, &fr);
    CHECK_EQ(spw_fetch_iter_next(&it, &o), 1);
    CHECK_EQ(o.offset, 3);
    CHECK_EQ(o.id, 99);
    CHECK_EQ(o.ts, -5);
    CHECK_EQ(o.key_len, 2);
    CHECK(memcmp(o.key, "kk", 2) == 0);
    CHECK_EQ(o.value_len, 3);
    CHECK_EQ(spw_fetch_iter_next(&it, &o), 1);
    CHECK_EQ(o.key_len, -1);
    CHECK_EQ(o.value_len, 0);
    CHECK_EQ(spw_fetch_iter_next(&it, &o), 0);
    check_prefixes_and_tail(dec_fresp, &b);
    check_len_field(dec_fresp, &b, ca);           /* count */
    check_len_field(dec_fresp, &b, ca + 4 + 24);  /* key_len */
    check_len_field(dec_fresp, &b, ca + 4 + 30);  /* value_len */
    uint8_t *t = malloc(b.len);
    memcpy(t, b.p, b.len);
    t[ca - 1] = 7; /* mode */
    CHECK(run(dec_fresp, t, b.len) != 0);
    free(t);

    /* batches: two fake length-prefixed batches */
    b.len = 0;
    CHECK_OK(spw_fetch_resp_head(&b, 0, 10, 10, SPW_FETCH_BATCHES, &ca));
    uint8_t batch[40] = {0};
    spw_put32(batch + 8, 40);
    CHECK_OK(spw_buf_reserve(&b, b.len + 80));
    memcpy(b.p + b.len, batch, 40);
    memcpy(b.p + b.len + 40, batch, 40);
    b.len += 80;
    spw_fetch_resp_set_count(&b, ca, 2);
    CHECK_EQ(spw_fetch_resp_decode(b.p, b.len, &fr, &why), 0);
    CHECK_EQ(fr.data_len, 80);
    check_prefixes_and_tail(dec_fresp, &b);
    check_len_field(dec_fresp, &b, ca + 4 + 8); /* first batch length */
    t = malloc(b.len);
    memcpy(t, b.p, b.len);
    spw_put32(t + ca + 4 + 8, 11); /* a batch length below its own header */
    CHECK(run(dec_fresp, t, b.len) != 0);
    free(t);
    spw_buf_fini(&b);
}

static int dec_mreq(const uint8_t *p, size_t n)
{
    const char *s, *why;
    uint16_t l;
    return spw_metadata_req_decode(p, n, &s, &l, &why);
}

static int dec_mresp(const uint8_t *p, size_t n)
{
    spw_metadata_resp r;
    const char *why;
    int e = spw_metadata_resp_decode(p, n, &r, &why);
    if (e == 0) {
        spw_meta_stream s;
        uint32_t want = r.nstreams, k = 0;
        while (spw_metadata_resp_next(&r, &s)) {
            for (uint32_t i = 0; i < s.partitions; i++) {
                spw_meta_part mp;
                spw_meta_part_get(&s, i, &mp);
            }
            k++;
        }
        CHECK_EQ(k, want);
    }
    return e;
}

static void test_metadata(void)
{
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_metadata_req_encode(&b, "abc", 3));
    const char *s, *why;
    uint16_t l;
    CHECK_EQ(spw_metadata_req_decode(b.p, b.len, &s, &l, &why), 0);
    CHECK_EQ(l, 3);
    check_prefixes_and_tail(dec_mreq, &b);
    b.len = 0;
    CHECK_OK(spw_metadata_req_encode(&b, "", 0));
    CHECK_EQ(spw_metadata_req_decode(b.p, b.len, &s, &l, &why), 0);
    CHECK_EQ(l, 0);

    b.len = 0;
    spw_meta_part parts[2] = {{0, 10, 9}, {5, 6, 6}};
    CHECK_OK(spw_metadata_resp_head(&b, 2));
    CHECK_OK(spw_metadata_stream_put(&b, "one", 3, 0, 2, 2, parts));
    CHECK_OK(spw_metadata_stream_put(&b, "two", 3, 1, 1, 1, parts + 1));
    spw_metadata_resp r;
    CHECK_EQ(spw_metadata_resp_decode(b.p, b.len, &r, &why), 0);
    spw_meta_stream ms;
    CHECK_EQ(spw_metadata_resp_next(&r, &ms), 1);
    CHECK_EQ(ms.name_len, 3);
    CHECK(memcmp(ms.name, "one", 3) == 0);
    CHECK_EQ(ms.partitions, 2);
    CHECK_EQ(ms.ack, 2);
    spw_meta_part mp;
    spw_meta_part_get(&ms, 1, &mp);
    CHECK_EQ(mp.start_offset, 5);
    CHECK_EQ(mp.end_offset, 6);
    CHECK_EQ(spw_metadata_resp_next(&r, &ms), 1);
    CHECK_EQ(ms.format_bytes, 1);
    CHECK_EQ(spw_metadata_resp_next(&r, &ms), 0);
    check_prefixes_and_tail(dec_mresp, &b);
    check_len_field(dec_mresp, &b, 0);
    check_len_field(dec_mresp, &b, 4 + 2 + 3 + 2); /* partitions of stream one */
    spw_buf_fini(&b);
}

static int dec_answer(const uint8_t *p, size_t n)
{
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    int r = spw_answer_decode(p, n, &st, &rest, &rl, &e, &why);
    if (r == 0 && st != 0) {
        CHECK((const uint8_t *)e.code + e.code_len <= p + n);
        CHECK((const uint8_t *)e.msg + e.msg_len <= p + n);
    }
    return r;
}

/* The throttled answer byte by byte, as docs/protocol.md shows it. */
static void test_throttled_bytes(void)
{
    static const uint8_t want[] = {
        0x2a, 0x00, 0x00, 0x00,                         /* length 42 = 12 + 30 */
        0x01, 0x01, 0x01, 0x00,                         /* PRODUCE, version 1, RESPONSE */
        0x07, 0, 0, 0, 0, 0, 0, 0,                      /* request id 7 */
        0xad, 0x01,                                     /* status 429 */
        0xdc, 0x05, 0x00, 0x00,                         /* retry_after_ms 1500 */
        0x0c, 'r', 'a', 't', 'e', '_', 'l', 'i', 'm', 'i', 't', 'e', 'd',
        0x09, 0x00, 's', 'l', 'o', 'w', ' ', 'd', 'o', 'w', 'n',
    };
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_frame_error_encode(&b, SPW_OP_PRODUCE, 7, SPW_ST_RATE_LIMITED, 1500, "rate_limited", "slow down"));
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    CHECK_EQ(spw_answer_decode(want + 16, sizeof want - 16, &st, &rest, &rl, &e, &why), 0);
    CHECK_EQ(st, 429);
    CHECK_EQ(e.retry_after_ms, 1500);
    CHECK(e.code_len == 12 && memcmp(e.code, "rate_limited", 12) == 0);
    CHECK(e.msg_len == 9 && memcmp(e.msg, "slow down", 9) == 0);
    /* The largest wait the field holds (~49.7 days) survives. */
    b.len = 0;
    CHECK_OK(spw_frame_error_encode(&b, SPW_OP_PRODUCE, 7, SPW_ST_RATE_LIMITED, UINT32_MAX, "rate_limited", ""));
    CHECK_EQ(spw_answer_decode(b.p + 16, b.len - 16, &st, &rest, &rl, &e, &why), 0);
    CHECK_EQ(e.retry_after_ms, UINT32_MAX);
    spw_buf_fini(&b);
}

/* docs/protocol.md, "Answers": a damaged answer carries next_offset after
 * msg, byte by byte as the document shows; an error answer without it
 * decodes with has_next_offset 0; any other trailing length is refused. */
static void test_damaged_bytes(void)
{
    static const uint8_t want[] = {
        0x27, 0x00, 0x00, 0x00,                         /* length 39 = 12 + 27 */
        0x02, 0x01, 0x01, 0x00,                         /* FETCH, version 1, RESPONSE */
        0x09, 0, 0, 0, 0, 0, 0, 0,                      /* request id 9 */
        0xf4, 0x01,                                     /* status 500 */
        0x00, 0x00, 0x00, 0x00,                         /* retry_after_ms 0 */
        0x07, 'd', 'a', 'm', 'a', 'g', 'e', 'd',        /* code */
        0x03, 0x00, 'd', 'm', 'g',                      /* msg */
        0x09, 0, 0, 0, 0, 0, 0, 0,                      /* next_offset 9 */
    };
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_frame_error_encode_next(&b, SPW_OP_FETCH, 9, SPW_ST_INTERNAL, "damaged", "dmg", 9));
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    CHECK_EQ(spw_answer_decode(want + 16, sizeof want - 16, &st, &rest, &rl, &e, &why), 0);
    CHECK_EQ(st, 500);
    CHECK(e.code_len == 7 && memcmp(e.code, "damaged", 7) == 0);
    CHECK(e.msg_len == 3 && memcmp(e.msg, "dmg", 3) == 0);
    CHECK_EQ(e.has_next_offset, 1);
    CHECK_EQ(e.next_offset, 9);
    /* without it */
    CHECK_EQ(spw_answer_decode(want + 16, sizeof want - 16 - 8, &st, &rest, &rl, &e, &why), 0);
    CHECK_EQ(e.has_next_offset, 0);
    /* 1..7 or 9 trailing bytes: malformed */
    for (size_t cut = 1; cut < 8; cut++)
        CHECK_EQ(spw_answer_decode(want + 16, sizeof want - 16 - cut, &st, &rest, &rl, &e, &why), SPW_EINVAL);
    uint8_t longer[sizeof want + 1];
    memcpy(longer, want, sizeof want);
    longer[sizeof want] = 0;
    CHECK_EQ(spw_answer_decode(longer + 16, sizeof longer - 16, &st, &rest, &rl, &e, &why), SPW_EINVAL);
    spw_buf_fini(&b);
}

static void test_errors(void)
{
    static const uint16_t codes[] = {400, 401, 403, 404, 408, 413, 416, 429, 500, 501, 503, 504, 507};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        spw_buf b = SPW_BUF_INIT;
        CHECK_OK(spw_frame_error_encode(&b, SPW_OP_PRODUCE, 42 + i, codes[i], codes[i] == 503 ? 1000 : 0, "word",
                                        "a sentence"));
        spw_frame_hdr h;
        CHECK_EQ(spw_frame_hdr_decode(b.p, b.len, 1 << 20, &h), 0);
        CHECK_EQ(h.length + 4, b.len);
        CHECK_EQ(h.flags, SPW_FLAG_RESPONSE);
        CHECK_EQ(h.request_id, 42 + i);
        uint16_t st;
        const uint8_t *rest;
        size_t rl;
        spw_frame_error e;
        const char *why;
        CHECK_EQ(spw_answer_decode(b.p + 16, b.len - 16, &st, &rest, &rl, &e, &why), 0);
        CHECK_EQ(st, codes[i]);
        CHECK_EQ(e.retry_after_ms, codes[i] == 503 ? 1000 : 0);
        CHECK_EQ(e.code_len, 4);
        CHECK(memcmp(e.code, "word", 4) == 0);
        CHECK_EQ(e.msg_len, 10);
        CHECK(spw_frame_status_known(codes[i]));
        spw_buf body = SPW_BUF_INIT;
        CHECK_OK(spw_buf_reserve(&body, b.len - 16));
        memcpy(body.p, b.p + 16, b.len - 16);
        body.len = b.len - 16;
        check_prefixes_and_tail(dec_answer, &body);
        spw_buf_fini(&body);
        spw_buf_fini(&b);
    }
    /* an unknown status is rejected; OK carries the rest */
    uint8_t x[4] = {0x2c, 0x01, 0, 0}; /* 300 */
    CHECK(run(dec_answer, x, 2) != 0);
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    x[0] = x[1] = 0;
    CHECK_EQ(spw_answer_decode(x, 4, &st, &rest, &rl, &e, &why), 0);
    CHECK_EQ(st, 0);
    CHECK_EQ(rl, 2);
    CHECK(!spw_frame_status_known(200));
    /* long messages are cut at 1024 bytes */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_frame_error_encode(&b, 1, 1, 400, 0, "c", big));
    CHECK_EQ(spw_answer_decode(b.p + 16, b.len - 16, &st, &rest, &rl, &e, &why), 0);
    CHECK_EQ(e.msg_len, 1024);
    spw_buf_fini(&b);
}

static int dec_areq(const uint8_t *p, size_t n)
{
    const char *t, *why;
    uint16_t l;
    int r = spw_auth_req_decode(p, n, &t, &l, &why);
    if (r == 0)
        CHECK((const uint8_t *)t + l <= p + n && l >= 1 && l <= SPW_AUTH_TOKEN_WIRE_MAX);
    return r;
}

static int dec_aresp(const uint8_t *p, size_t n)
{
    const char *t, *why;
    uint16_t l;
    int r = spw_auth_resp_decode(p, n, &t, &l, &why);
    if (r == 0)
        CHECK((const uint8_t *)t + l <= p + n && l <= SPW_TENANT_WIRE_MAX);
    return r;
}

static void test_auth(void)
{
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_auth_req_encode(&b, "s3cr3t", 6));
    const char *t, *why;
    uint16_t l;
    CHECK_EQ(spw_auth_req_decode(b.p, b.len, &t, &l, &why), 0);
    CHECK(l == 6 && memcmp(t, "s3cr3t", 6) == 0);
    check_prefixes_and_tail(dec_areq, &b);
    /* the length pushed past the body */
    spw_put16(b.p, 7);
    CHECK(run(dec_areq, b.p, b.len) != 0);
    spw_put16(b.p, 0xFFFF);
    CHECK(run(dec_areq, b.p, b.len) != 0);
    /* empty token, and the longest one and one past it */
    b.len = 0;
    CHECK_OK(spw_auth_req_encode(&b, "", 0));
    CHECK(run(dec_areq, b.p, b.len) != 0);
    static char big[SPW_AUTH_TOKEN_WIRE_MAX + 1];
    memset(big, 'k', sizeof big);
    b.len = 0;
    CHECK_OK(spw_auth_req_encode(&b, big, SPW_AUTH_TOKEN_WIRE_MAX));
    CHECK_EQ(run(dec_areq, b.p, b.len), 0);
    b.len = 0;
    CHECK_OK(spw_auth_req_encode(&b, big, SPW_AUTH_TOKEN_WIRE_MAX + 1));
    CHECK(run(dec_areq, b.p, b.len) != 0);

    /* answer: tenant, "" allowed (no tokens configured), at most 63 */
    b.len = 0;
    CHECK_OK(spw_auth_resp_encode(&b, "acme", 4));
    CHECK_EQ(spw_auth_resp_decode(b.p, b.len, &t, &l, &why), 0);
    CHECK(l == 4 && memcmp(t, "acme", 4) == 0);
    check_prefixes_and_tail(dec_aresp, &b);
    b.len = 0;
    CHECK_OK(spw_auth_resp_encode(&b, "", 0));
    CHECK_EQ(spw_auth_resp_decode(b.p, b.len, &t, &l, &why), 0);
    CHECK_EQ(l, 0);
    b.len = 0;
    CHECK_OK(spw_auth_resp_encode(&b, big, 63));
    CHECK_EQ(run(dec_aresp, b.p, b.len), 0);
    b.len = 0;
    CHECK_OK(spw_auth_resp_encode(&b, big, 64));
    CHECK(run(dec_aresp, b.p, b.len) != 0);
    spw_buf_fini(&b);

    /* The AUTH example in docs/protocol.md, byte for byte. */
    static const uint8_t want[] = {
        0x14, 0, 0, 0, 4, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, /* length 20, AUTH, version 1, request id 1 */
        6, 0, 's', '3', 'c', 'r', '3', 't',                 /* token */
    };
    size_t st;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_AUTH, 0, 1, &st));
    CHECK_OK(spw_auth_req_encode(&b, "s3cr3t", 6));
    spw_frame_finish(&b, st);
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    spw_buf_fini(&b);
}

/* The example in docs/protocol.md, byte for byte. */
static void test_doc_example(void)
{
    static const uint8_t want[] = {
        0x3a, 0, 0, 0, 1, 1, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,       /* header */
        1, 0, 's', 2, 1, 0, 0, 0xff, 0xff, 0xff, 0xff,            /* stream, ack, prio, reserved, partition */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,           /* producer id, seq, count */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, '{', '}', /* record */
    };
    spw_buf b = SPW_BUF_INIT;
    size_t st, ca;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_PRODUCE, 0, 7, &st));
    CHECK_OK(spw_produce_req_begin(&b, "s", 1, SPW_ACK_FSYNC, 1, SPW_PARTITION_ANY, 0, 0, &ca));
    spw_frame_rec r = {.key_len = -1, .value = (const uint8_t *)"{}", .value_len = 2};
    CHECK_OK(spw_produce_rec_put(&b, &r));
    spw_produce_req_set_count(&b, ca, 1);
    spw_frame_finish(&b, st);
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    spw_buf_fini(&b);
}

/* Random bytes through every decoder: nothing but 0 or an error. */
static int dec_gpreq(const uint8_t *p, size_t n)
{
    spw_gpoll_req q;
    const char *why;
    int r = spw_gpoll_req_decode(p, n, &q, &why);
    if (r == 0)
        CHECK((const uint8_t *)q.member + q.member_len <= p + n && q.group_len >= 1 && q.member_len <= 64);
    return r;
}

static int dec_gpresp(const uint8_t *p, size_t n)
{
    spw_gpoll_resp r;
    const char *why;
    int e = spw_gpoll_resp_decode(p, n, &r, &why);
    if (e == 0) {
        spw_fetch_iter it;
        spw_fetch_rec fr;
        uint32_t k = 0;
        spw_gpoll_iter_init(&it, &r);
        while (spw_fetch_iter_next(&it, &fr))
            k++;
        CHECK_EQ(k, r.count);
    }
    return e;
}

static int dec_gcreq(const uint8_t *p, size_t n)
{
    spw_gcommit_req q;
    const char *why;
    return spw_gcommit_req_decode(p, n, &q, &why);
}

static int dec_gcresp(const uint8_t *p, size_t n)
{
    uint32_t part;
    uint64_t off;
    const char *why;
    return spw_gcommit_resp_decode(p, n, &part, &off, &why);
}

/* Sets the byte or u32 at `at` of a copy of b to v: the decode must fail. */
static void check_bad_u8(decode_fn f, const spw_buf *b, size_t at, uint8_t v)
{
    uint8_t *t = malloc(b->len);
    memcpy(t, b->p, b->len);
    t[at] = v;
    CHECK(run(f, t, b->len) != 0);
    free(t);
}
static void check_bad_u32(decode_fn f, const spw_buf *b, size_t at, uint32_t v)
{
    uint8_t *t = malloc(b->len);
    memcpy(t, b->p, b->len);
    spw_put32(t + at, v);
    CHECK(run(f, t, b->len) != 0);
    free(t);
}

static void test_groups(void)
{
    spw_buf b = SPW_BUF_INIT;
    const char *why;
    /* GROUP_POLL request */
    spw_gpoll_req q = {.stream = "s1", .stream_len = 2, .group = "g", .group_len = 1, .member = "m-1",
                       .member_len = 3, .start = SPW_GPOLL_LATEST, .max = 50, .wait_ms = 2000, .lease_ms = 500};
    CHECK_OK(spw_gpoll_req_encode(&b, &q));
    CHECK_EQ(b.len, 2 + 2 + 2 + 1 + 2 + 3 + 1 + 12);
    spw_gpoll_req d;
    CHECK_EQ(spw_gpoll_req_decode(b.p, b.len, &d, &why), 0);
    CHECK_EQ(d.stream_len, 2);
    CHECK(memcmp(d.group, "g", 1) == 0 && d.group_len == 1);
    CHECK(memcmp(d.member, "m-1", 3) == 0 && d.member_len == 3);
    CHECK_EQ(d.start, SPW_GPOLL_LATEST);
    CHECK_EQ(d.max, 50);
    CHECK_EQ(d.wait_ms, 2000);
    CHECK_EQ(d.lease_ms, 500);
    check_prefixes_and_tail(dec_gpreq, &b);
    size_t st = 2 + 2 + 2 + 1 + 2 + 3;
    check_bad_u8(dec_gpreq, &b, st, 2);                      /* start */
    check_bad_u32(dec_gpreq, &b, st + 1, 10001);             /* max */
    check_bad_u32(dec_gpreq, &b, st + 5, 60001);             /* wait_ms */
    check_bad_u32(dec_gpreq, &b, st + 9, 99);                /* lease_ms below 100 */
    check_bad_u32(dec_gpreq, &b, st + 9, 3600001);           /* lease_ms above an hour */
    check_bad_u8(dec_gpreq, &b, 4, 0);                       /* empty group name (its length) */
    /* an empty member and the defaults are fine; a member of 65 bytes is not */
    char m65[65];
    memset(m65, 'm', sizeof m65);
    spw_gpoll_req q2 = {.stream = "s", .stream_len = 1, .group = "g", .group_len = 1};
    b.len = 0;
    CHECK_OK(spw_gpoll_req_encode(&b, &q2));
    CHECK_EQ(spw_gpoll_req_decode(b.p, b.len, &d, &why), 0);
    CHECK_EQ(d.member_len, 0);
    CHECK_EQ(d.max, 0);
    CHECK_EQ(d.lease_ms, 0);
    q2.member = m65;
    q2.member_len = 65;
    b.len = 0;
    CHECK_OK(spw_gpoll_req_encode(&b, &q2));
    CHECK(run(dec_gpreq, b.p, b.len) != 0);
    char g129[129];
    memset(g129, 'g', sizeof g129);
    q2.member_len = 0;
    q2.group = g129;
    q2.group_len = 129;
    b.len = 0;
    CHECK_OK(spw_gpoll_req_encode(&b, &q2));
    CHECK(run(dec_gpreq, b.p, b.len) != 0);

    /* GROUP_POLL answer: nothing, then two records */
    b.len = 0;
    spw_gpoll_resp none = {.delivered = 0};
    CHECK_OK(spw_gpoll_resp_encode(&b, &none));
    CHECK_EQ(b.len, 1);
    spw_gpoll_resp pr;
    CHECK_EQ(spw_gpoll_resp_decode(b.p, b.len, &pr, &why), 0);
    CHECK_EQ(pr.delivered, 0);
    check_prefixes_and_tail(dec_gpresp, &b);
    check_bad_u8(dec_gpresp, &b, 0, 2);
    spw_buf recs = SPW_BUF_INIT;
    spw_fetch_rec r1 = {.offset = 7, .id = 1, .ts = 3, .key = (const uint8_t *)"k", .key_len = 1,
                        .value = (const uint8_t *)"{}", .value_len = 2};
    spw_fetch_rec r2 = {.offset = 8, .id = 2, .ts = 4, .key_len = -1, .value = (const uint8_t *)"x", .value_len = 1};
    CHECK_OK(spw_fetch_rec_put(&recs, &r1));
    CHECK_OK(spw_fetch_rec_put(&recs, &r2));
    spw_gpoll_resp full = {.delivered = 1, .partition = 3, .lease_id = 0x1122334455667788ull, .first_offset = 7,
                           .next_offset = 9, .lease_ms = 30000, .count = 2, .data = recs.p, .data_len = recs.len};
    b.len = 0;
    CHECK_OK(spw_gpoll_resp_encode(&b, &full));
    CHECK_EQ(b.len, 1 + 4 + 8 + 8 + 8 + 4 + 4 + recs.len);
    CHECK_EQ(spw_gpoll_resp_decode(b.p, b.len, &pr, &why), 0);
    CHECK_EQ(pr.partition, 3);
    CHECK_EQ(pr.lease_id, 0x1122334455667788ull);
    CHECK_EQ(pr.first_offset, 7);
    CHECK_EQ(pr.next_offset, 9);
    CHECK_EQ(pr.lease_ms, 30000);
    CHECK_EQ(pr.count, 2);
    spw_fetch_iter it;
    spw_fetch_rec o;
    spw_gpoll_iter_init(&it, &pr);
    CHECK_EQ(spw_fetch_iter_next(&it, &o), 1);
    CHECK_EQ(o.offset, 7);
    CHECK(o.key_len == 1 && memcmp(o.key, "k", 1) == 0);
    CHECK_EQ(spw_fetch_iter_next(&it, &o), 1);
    CHECK_EQ(o.key_len, -1);
    CHECK_EQ(spw_fetch_iter_next(&it, &o), 0);
    check_prefixes_and_tail(dec_gpresp, &b);
    size_t ca = 1 + 4 + 8 + 8 + 8 + 4;
    check_len_field(dec_gpresp, &b, ca);           /* count */
    check_bad_u32(dec_gpresp, &b, ca, 0);          /* count 0 with delivered 1 */
    check_len_field(dec_gpresp, &b, ca + 4 + 24);  /* key_len */
    check_len_field(dec_gpresp, &b, ca + 4 + 29);  /* value_len */
    {
        uint8_t *t = malloc(b.len);
        memcpy(t, b.p, b.len);
        spw_put64(t + 13, 10); /* first_offset past next_offset */
        CHECK(run(dec_gpresp, t, b.len) != 0);
        free(t);
    }
    spw_buf_fini(&recs);

    /* GROUP_COMMIT */
    b.len = 0;
    spw_gcommit_req c = {.stream = "str", .stream_len = 3, .group = "grp", .group_len = 3, .partition = 2,
                         .lease_id = 42, .offset = 1000};
    CHECK_OK(spw_gcommit_req_encode(&b, &c));
    CHECK_EQ(b.len, 2 + 3 + 2 + 3 + 4 + 8 + 8);
    spw_gcommit_req cd;
    CHECK_EQ(spw_gcommit_req_decode(b.p, b.len, &cd, &why), 0);
    CHECK(cd.partition == 2 && cd.lease_id == 42 && cd.offset == 1000);
    CHECK(memcmp(cd.group, "grp", 3) == 0);
    check_prefixes_and_tail(dec_gcreq, &b);
    check_bad_u8(dec_gcreq, &b, 5, 0); /* empty group */
    b.len = 0;
    CHECK_OK(spw_gcommit_resp_encode(&b, 2, 1000));
    uint32_t part;
    uint64_t off;
    CHECK_EQ(spw_gcommit_resp_decode(b.p, b.len, &part, &off, &why), 0);
    CHECK(part == 2 && off == 1000);
    check_prefixes_and_tail(dec_gcresp, &b);

    /* docs/protocol.md's GROUP_POLL example, byte by byte. */
    static const uint8_t doc[] = {0x2e, 0,    0,    0,    5,    1,    0,    0,    3,    0,    0,    0,
                                  0,    0,    0,    0,    6,    0,    'o',  'r',  'd',  'e',  'r',  's',
                                  7,    0,    'b',  'i',  'l',  'l',  'i',  'n',  'g',  2,    0,    'w',
                                  '1',  0,    0x64, 0,    0,    0,    0x88, 0x13, 0,    0,    0x30, 0x75,
                                  0,    0};
    b.len = 0;
    size_t fs;
    spw_gpoll_req ex = {.stream = "orders", .stream_len = 6, .group = "billing", .group_len = 7, .member = "w1",
                        .member_len = 2, .start = 0, .max = 100, .wait_ms = 5000, .lease_ms = 30000};
    CHECK_OK(spw_frame_begin(&b, SPW_OP_GROUP_POLL, 0, 3, &fs));
    CHECK_OK(spw_gpoll_req_encode(&b, &ex));
    spw_frame_finish(&b, fs);
    CHECK_EQ(b.len, sizeof doc);
    CHECK(memcmp(b.p, doc, sizeof doc) == 0);
    spw_buf_fini(&b);
}

static void test_random(void)
{
    uint64_t x = 88172645463325252ull;
    decode_fn fns[] = {dec_produce, dec_presp, dec_freq,   dec_fresp, dec_mreq,
                       dec_mresp,   dec_answer, dec_areq, dec_aresp, dec_gpreq,
                       dec_gpresp,  dec_gcreq,  dec_gcresp};
    for (int round = 0; round < 20000; round++) {
        uint8_t buf[96];
        size_t n = (size_t)(round % 96);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)(x % 7 == 0 ? 0 : x);
        }
        for (size_t f = 0; f < sizeof fns / sizeof *fns; f++)
            run(fns[f], buf, n);
    }
}

/* STREAM_CREATE and STREAM_DESCRIBE: round trips, every truncation
 * refused, and the request of docs/protocol.md's example byte for byte. */
static void test_streams(void)
{
    spw_buf b = SPW_BUF_INIT;
    const char *def = "{\"partitions\":2}";
    CHECK_OK(spw_stream_create_req_encode(&b, "ab", 2, def, 16));
    static const uint8_t doc[] = {0x02, 0x00, 0x61, 0x62, 0x10, 0x00, 0x00, 0x00};
    CHECK_EQ(b.len, 24);
    CHECK(memcmp(b.p, doc, sizeof doc) == 0 && memcmp(b.p + 8, def, 16) == 0);
    const char *name, *d, *why;
    uint16_t nl;
    uint32_t dl;
    CHECK_EQ(spw_stream_create_req_decode(b.p, b.len, &name, &nl, &d, &dl, &why), 0);
    CHECK(nl == 2 && memcmp(name, "ab", 2) == 0 && dl == 16 && memcmp(d, def, 16) == 0);
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK_EQ(spw_stream_create_req_decode(b.p, cut, &name, &nl, &d, &dl, &why), SPW_EINVAL);
    CHECK_OK(spw_buf_put(&b, "x", 1)); /* trailing byte */
    CHECK_EQ(spw_stream_create_req_decode(b.p, b.len, &name, &nl, &d, &dl, &why), SPW_EINVAL);
    b.len = 0;
    CHECK_OK(spw_stream_create_req_encode(&b, "ab", 2, "", 0)); /* an empty definition */
    CHECK_EQ(spw_stream_create_req_decode(b.p, b.len, &name, &nl, &d, &dl, &why), SPW_EINVAL);
    b.len = 0;
    CHECK_OK(spw_stream_create_req_encode(&b, "", 0, def, 16)); /* no name */
    CHECK_EQ(spw_stream_create_req_decode(b.p, b.len, &name, &nl, &d, &dl, &why), SPW_EINVAL);

    b.len = 0;
    CHECK_OK(spw_stream_create_resp_encode(&b, 1, "{}", 2));
    uint8_t created;
    const char *j;
    uint32_t jl;
    CHECK_EQ(spw_stream_create_resp_decode(b.p, b.len, &created, &j, &jl, &why), 0);
    CHECK(created == 1 && jl == 2 && memcmp(j, "{}", 2) == 0);
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK_EQ(spw_stream_create_resp_decode(b.p, cut, &created, &j, &jl, &why), SPW_EINVAL);
    b.p[0] = 2; /* created is 0 or 1 */
    CHECK_EQ(spw_stream_create_resp_decode(b.p, b.len, &created, &j, &jl, &why), SPW_EINVAL);

    b.len = 0;
    CHECK_OK(spw_stream_describe_req_encode(&b, "abc", 3));
    CHECK_EQ(spw_stream_describe_req_decode(b.p, b.len, &name, &nl, &why), 0);
    CHECK(nl == 3 && memcmp(name, "abc", 3) == 0);
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK_EQ(spw_stream_describe_req_decode(b.p, cut, &name, &nl, &why), SPW_EINVAL);
    b.len = 0;
    CHECK_OK(spw_stream_describe_resp_encode(&b, "{\"a\":1}", 7));
    CHECK_EQ(spw_stream_describe_resp_decode(b.p, b.len, &j, &jl, &why), 0);
    CHECK(jl == 7 && memcmp(j, "{\"a\":1}", 7) == 0);
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK_EQ(spw_stream_describe_resp_decode(b.p, cut, &j, &jl, &why), SPW_EINVAL);
    spw_buf_fini(&b);
}

/* VIEW_READ: docs/protocol.md's example byte by byte, a series read with
 * min_offsets round trip, and the decoder's refusals. */
static void test_view_read(void)
{
    spw_buf b = SPW_BUF_INIT;
    spw_view_read_req q = {.what = SPW_VIEW_READ_KEY, .view = "v", .view_len = 1, .key = (const uint8_t *)"a",
                           .key_len = 1, .from = INT64_MIN, .to = INT64_MIN, .at = INT64_MIN};
    CHECK_OK(spw_view_read_req_encode(&b, &q, NULL, NULL));
    static const uint8_t want[] = {0x01, 0x00, 0x01, 0x00, 'v',  0x01, 0, 0, 0, 'a', 0x00, 0x00,
                                   0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x80,
                                   0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ(b.len, 46);
    CHECK_EQ(b.len, sizeof want);
    CHECK(memcmp(b.p, want, sizeof want) == 0);
    spw_view_read_req d;
    const char *why;
    CHECK_EQ(spw_view_read_req_decode(b.p, b.len, &d, &why), 0);
    CHECK_EQ(d.what, SPW_VIEW_READ_KEY);
    CHECK_EQ(d.from, INT64_MIN);
    CHECK_EQ(d.nmin, 0);
    for (size_t n = 0; n < b.len; n++) /* every truncation is refused */
        CHECK_EQ(spw_view_read_req_decode(b.p, n, &d, &why), SPW_EINVAL);
    CHECK_OK(spw_buf_put(&b, "", 1));
    CHECK_EQ(spw_view_read_req_decode(b.p, b.len, &d, &why), SPW_EINVAL); /* a byte after */
    /* a series read with two min_offsets pairs */
    b.len = 0;
    uint32_t parts[2] = {0, 3};
    uint64_t offs[2] = {41, 1ull << 40};
    q = (spw_view_read_req){.what = SPW_VIEW_READ_SERIES, .view = "agg", .view_len = 3, .key = (const uint8_t *)"k",
                            .key_len = 1, .window = "1m", .window_len = 2, .from = -5, .to = 7, .at = INT64_MIN,
                            .wait_ms = 60000, .nmin = 2};
    CHECK_OK(spw_view_read_req_encode(&b, &q, parts, offs));
    CHECK_EQ(spw_view_read_req_decode(b.p, b.len, &d, &why), 0);
    CHECK_EQ(d.window_len, 2);
    CHECK(memcmp(d.window, "1m", 2) == 0);
    CHECK_EQ(d.from, -5);
    CHECK_EQ(d.to, 7);
    CHECK_EQ(d.wait_ms, 60000);
    CHECK_EQ(d.nmin, 2);
    uint32_t p;
    uint64_t o;
    spw_view_read_min(&d, 1, &p, &o);
    CHECK_EQ(p, 3);
    CHECK_EQ(o, 1ull << 40);
    /* refusals */
    static const struct {
        uint8_t what;
        uint32_t key_len, n, wait_ms;
        uint8_t by_len;
    } bad[] = {
        {0, 1, 0, 0, 0}, {4, 1, 0, 0, 0},       /* what */
        {SPW_VIEW_READ_KEY, 0, 0, 0, 0},         /* no key */
        {SPW_VIEW_READ_TOP, 1, 0, 0, 0},         /* a key on a top read */
        {SPW_VIEW_READ_SERIES, 1, 5, 0, 0},      /* n on a series read */
        {SPW_VIEW_READ_KEY, 1, 0, 0, 3},         /* by on a key read */
        {SPW_VIEW_READ_TOP, 0, 1001, 0, 0},      /* n over 1000 */
        {SPW_VIEW_READ_TOP, 0, 1, 60001, 0},     /* wait_ms over 60000 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b.len = 0;
        q = (spw_view_read_req){.what = bad[i].what, .view = "v", .view_len = 1, .key = (const uint8_t *)"kk",
                                .key_len = bad[i].key_len, .by = "sum", .by_len = bad[i].by_len, .n = bad[i].n,
                                .wait_ms = bad[i].wait_ms};
        CHECK_OK(spw_view_read_req_encode(&b, &q, NULL, NULL));
        CHECK_EQ(spw_view_read_req_decode(b.p, b.len, &d, &why), SPW_EINVAL);
    }
    b.len = 0;
    q = (spw_view_read_req){.what = SPW_VIEW_READ_KEY, .view = "v", .view_len = 1, .key = (const uint8_t *)"k",
                            .key_len = 1};
    CHECK_OK(spw_view_read_req_encode(&b, &q, NULL, NULL));
    b.p[1] = 1; /* flags */
    CHECK_EQ(spw_view_read_req_decode(b.p, b.len, &d, &why), SPW_EINVAL);
    b.p[1] = 0;
    b.p[b.len - 2] = 1; /* nmin 1 without its pair */
    CHECK_EQ(spw_view_read_req_decode(b.p, b.len, &d, &why), SPW_EINVAL);
    /* the answer */
    b.len = 0;
    CHECK_OK(spw_view_read_resp_encode(&b, "{\"a\":1}", 7));
    const uint8_t *j;
    uint32_t jl;
    CHECK_EQ(spw_view_read_resp_decode(b.p, b.len, &j, &jl, &why), 0);
    CHECK_EQ(jl, 7);
    CHECK(memcmp(j, "{\"a\":1}", 7) == 0);
    CHECK_EQ(spw_view_read_resp_decode(b.p, b.len - 1, &j, &jl, &why), SPW_EINVAL);
    spw_buf_fini(&b);
}

int main(void)
{
    test_header();
    test_streams();
    test_produce();
    test_produce_resp();
    test_produce_versioned();
    test_key_events();
    test_fetch();
    test_metadata();
    test_errors();
    test_auth();
    test_groups();
    test_throttled_bytes();
    test_damaged_bytes();
    test_doc_example();
    test_random();
    test_view_read();
    printf("test_frame: ok\n");
    return 0;
}
