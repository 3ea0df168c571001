/*
 * The record batch format (log/format.h, docs/formats/log.md), varints
 * (core/varint.h) and CRC32C (core/crc32c.h) on their own, without a log:
 * encode/decode round trips of every field under every compression, the
 * size limits, and the decoder's rejection of every kind of malformed input
 * (built by editing encoded batches and resealing their CRC).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#include "core/crc32c.h"
#include "core/endian.h"
#include "core/error.h"
#include "core/id.h"
#include "core/varint.h"
#include "log/format.h"
#include "test.h"

/* ---- helpers ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void fill_rand(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rnd() >> 56);
}

/* Bit-at-a-time CRC32C: the definition, independent of both fast paths. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

/* Recomputes the CRC of an edited batch (bytes [16, length) per its header). */
static void reseal(uint8_t *b)
{
    uint32_t len = spw_get32(b + 8);
    spw_put32(b + 12, spw_crc32c(b + SPW_BATCH_CRC_START, len - SPW_BATCH_CRC_START));
}

static int64_t fake_ms;
static int64_t fake_clock(void) { return fake_ms; }

/* Decodes batch b (len bytes) and checks every header and record field
 * against what was encoded. */
static void check_batch(const uint8_t *b, size_t len, const spw_record *recs, uint32_t n, uint64_t base_offset,
                        const spw_batch_opts *o, uint64_t first_ticket)
{
    spw_batch_hdr h;
    CHECK_EQ(spw_batch_check(b, len, &h), 0);
    CHECK_EQ(h.length, len);
    CHECK_EQ(h.base_offset, base_offset);
    CHECK_EQ(h.version, SPW_BATCH_VERSION);
    CHECK_EQ(h.header_len, SPW_BATCH_HEADER_LEN);
    CHECK_EQ(h.attributes, o->compression);
    CHECK_EQ(h.record_count, n);
    CHECK_EQ(h.first_ts, recs[0].ts);
    int64_t max_ts = recs[0].ts;
    for (uint32_t i = 0; i < n; i++)
        if (recs[i].ts > max_ts)
            max_ts = recs[i].ts;
    CHECK_EQ(h.max_ts, max_ts);
    CHECK_EQ(h.base_id, o->idgen ? spw_id_from_ticket(o->idgen, first_ticket) : 0);
    CHECK(h.producer_id == o->producer_id);
    CHECK_EQ(h.producer_seq, o->producer_seq);
    CHECK(h.idem_hash == o->idem_hash);
    CHECK_EQ(spw_get32(b + 68), 0); /* reserved */
    CHECK_EQ(spw_batch_next_offset(&h), base_offset + n);

    spw_buf scratch = SPW_BUF_INIT;
    const uint8_t *rp;
    size_t rlen;
    CHECK_EQ(spw_batch_records(b, &h, &scratch, &rp, &rlen), 0);
    CHECK_EQ(rlen, h.records_len);
    if (o->compression == SPW_COMPRESS_NONE) {
        CHECK(rp == b + SPW_BATCH_HEADER_LEN);
        CHECK_EQ(h.records_len, len - SPW_BATCH_HEADER_LEN);
    }
    spw_rec_iter it;
    spw_record_view rv;
    spw_rec_iter_init(&it, &h, rp, rlen);
    uint64_t prev_id = 0;
    for (uint32_t i = 0; i < n; i++) {
        const spw_record *r = &recs[i];
        memset(&rv, 0xA5, sizeof rv);
        CHECK_EQ(spw_rec_next(&it, &rv), 1);
        CHECK_EQ(rv.offset, base_offset + i);
        if (o->idgen) {
            CHECK(rv.id == spw_id_from_ticket(o->idgen, first_ticket + i));
            CHECK(i == 0 || rv.id > prev_id);
            prev_id = rv.id;
        } else {
            CHECK(rv.id == 0);
        }
        CHECK_EQ(rv.ts, r->ts);
        CHECK_EQ(rv.key_len, r->key_len);
        if (r->key_len < 0)
            CHECK(rv.key == NULL);
        else
            CHECK(rv.key != NULL && memcmp(rv.key, r->key, (size_t)r->key_len) == 0);
        CHECK_EQ(rv.value_len, r->value_len);
        CHECK(r->value_len == 0 || memcmp(rv.value, r->value, r->value_len) == 0);
        CHECK_EQ(rv.header_count, r->header_count);
        const uint8_t *hp = rv.headers, *he = rv.headers + rv.headers_len;
        for (uint32_t k = 0; k < r->header_count; k++) {
            spw_kv kv;
            CHECK_EQ(spw_kv_next(&hp, he, &kv), 1);
            CHECK_EQ(kv.key_len, r->headers[k].key_len);
            CHECK_EQ(kv.value_len, r->headers[k].value_len);
            CHECK(kv.key_len == 0 || memcmp(kv.key, r->headers[k].key, kv.key_len) == 0);
            CHECK(kv.value_len == 0 || memcmp(kv.value, r->headers[k].value, kv.value_len) == 0);
        }
        spw_kv kv;
        CHECK_EQ(spw_kv_next(&hp, he, &kv), 0);
        CHECK(hp == he);
    }
    CHECK_EQ(spw_rec_next(&it, &rv), 0);
    CHECK_EQ(spw_rec_next(&it, &rv), 0); /* stays at the end */
    spw_buf_fini(&scratch);
}

/* Encodes recs under o, sets a base offset, decodes and checks. Returns the batch length. */
static size_t round_trip(const spw_record *recs, uint32_t n, spw_batch_opts o, uint64_t base_offset)
{
    spw_buf out = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    uint64_t ticket = UINT64_MAX;
    o.first_ticket = &ticket;
    CHECK_EQ(spw_batch_encode(&out, &scratch, recs, n, &o), 0);
    if (o.idgen)
        CHECK(ticket != UINT64_MAX);
    CHECK_EQ(spw_get64(out.p), 0); /* encoded with base offset 0 */
    CHECK(out.len <= SPW_BATCH_MAX_LEN);
    if (o.compression == SPW_COMPRESS_NONE)
        CHECK(out.len <= spw_batch_bound(recs, n));
    /* The base offset is outside the CRC: setting it keeps the batch valid. */
    spw_batch_set_base_offset(out.p, base_offset);
    CHECK_EQ(spw_get64(out.p), base_offset);
    check_batch(out.p, out.len, recs, n, base_offset, &o, ticket);
    size_t len = out.len;
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);
    return len;
}

/* ---- records taken through an order ---- */

/* A batch encoded through spw_batch_opts.order (records where they are,
 * tickets from ticket_base) is the same bytes as the records copied out in
 * that order with their tickets given; an order not strictly increasing is
 * refused. */
static void test_order(void)
{
    static const int comps[] = {SPW_COMPRESS_NONE, SPW_COMPRESS_LZ4, SPW_COMPRESS_ZSTD};
    spw_idgen g;
    fake_ms = SPW_ID_EPOCH_MS + 86400000;
    spw_idgen_init(&g, 9, fake_clock);
    enum { N = 300 };
    static spw_record all[N], picked[N];
    static char keys[N][24], vals[N][80];
    static uint32_t order[N];
    static uint64_t tickets[N];
    for (uint32_t i = 0; i < N; i++) {
        int kl = snprintf(keys[i], sizeof keys[i], "key-%u", i * 7919u);
        int vl = snprintf(vals[i], sizeof vals[i], "{\"i\":%u,\"v\":\"%.*s\"}", i, (int)(i % 50), "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        all[i] = (spw_record){.key = i % 11 == 0 ? NULL : keys[i], .key_len = i % 11 == 0 ? -1 : kl, .value = vals[i],
                              .value_len = (uint32_t)vl, .ts = 1700000000000 + (int64_t)(i % 17) * 3 - 20};
    }
    uint64_t base = spw_idgen_reserve(&g, N);
    for (int c = 0; c < 3; c++)
        for (uint32_t part = 0; part < 3; part++) {
            uint32_t n = 0;
            for (uint32_t i = 0; i < N; i++)
                if (i * 2654435761u % 3 == part) {
                    order[n] = i;
                    picked[n] = all[i];
                    tickets[n] = base + i;
                    n++;
                }
            spw_buf a = SPW_BUF_INIT, b = SPW_BUF_INIT, sc = SPW_BUF_INIT;
            spw_batch_opts oa = {.compression = comps[c], .idgen = &g, .tickets = tickets, .producer_id = 5,
                                 .request_count = N, .idem_hash = 77};
            spw_batch_opts ob = oa;
            ob.tickets = NULL;
            ob.order = order;
            ob.ticket_base = base;
            CHECK_EQ(spw_batch_encode(&a, &sc, picked, n, &oa), 0);
            CHECK_EQ(spw_batch_encode(&b, &sc, all, n, &ob), 0);
            CHECK_EQ(a.len, b.len);
            CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
            spw_batch_hdr h;
            CHECK_EQ(spw_batch_check(b.p, b.len, &h), 0);
            CHECK_EQ(h.record_count, n);
            CHECK(h.base_id == spw_id_from_ticket(&g, base + order[0]));
            /* Not strictly increasing: refused, nothing encoded. */
            if (n >= 2) {
                uint32_t t = order[1];
                order[1] = order[0];
                CHECK_EQ(spw_batch_encode(&b, &sc, all, n, &ob), SPW_EINVAL);
                order[1] = t;
            }
            spw_buf_fini(&a);
            spw_buf_fini(&b);
            spw_buf_fini(&sc);
        }
}

/* ---- round trips ---- */

static void test_round_trips(void)
{
    static const int comps[] = {SPW_COMPRESS_NONE, SPW_COMPRESS_LZ4, SPW_COMPRESS_ZSTD};
    spw_idgen g;
    fake_ms = SPW_ID_EPOCH_MS + 86400000;
    spw_idgen_init(&g, 77, fake_clock);

    /* Mixed records: keys absent / empty / present, empty values, headers
     * (including empty header keys and values), timestamps going backwards. */
    static char bigval[100000];
    for (size_t i = 0; i < sizeof bigval; i++)
        bigval[i] = (char)('A' + (i * 7 + i / 13) % 26);
    spw_kv hdrs[3] = {
        {.key = "content-type", .key_len = 12, .value = "application/json", .value_len = 16},
        {.key = "", .key_len = 0, .value = "x", .value_len = 1},
        {.key = "empty-value", .key_len = 11, .value = "", .value_len = 0},
    };
    spw_record mixed[] = {
        {.key = "k1", .key_len = 2, .value = "{\"a\":1}", .value_len = 7, .ts = 1700000000000},
        {.key = NULL, .key_len = -1, .value = "no key", .value_len = 6, .ts = 1700000000005},
        {.key = "", .key_len = 0, .value = "empty key", .value_len = 9, .ts = 1699999990000}, /* back 10 s */
        {.key = "empty value", .key_len = 11, .value = "", .value_len = 0, .ts = 1700000000005},
        {.key = NULL, .key_len = -1, .value = NULL, .value_len = 0, .ts = 0},                /* back to 1970 */
        {.key = "h", .key_len = 1, .value = "with headers", .value_len = 12, .ts = -5, .headers = hdrs,
         .header_count = 3},
        {.key = "big", .key_len = 3, .value = bigval, .value_len = sizeof bigval, .ts = 1700000009999},
        {.key = "last", .key_len = 4, .value = "v", .value_len = 1, .ts = 1700000000001},
    };
    uint32_t nmixed = sizeof mixed / sizeof mixed[0];

    for (int c = 0; c < 3; c++) {
        spw_batch_opts o = {.compression = comps[c]};
        /* One record, each key kind, no idgen (ids 0). */
        for (uint32_t i = 0; i < nmixed; i++)
            round_trip(&mixed[i], 1, o, 42 + i);
        /* All mixed records, with ids, producer fields and a large base offset. */
        o.idgen = &g;
        o.producer_id = 0x0123456789ABCDEFull;
        o.producer_seq = 0xFEDCBA98u;
        o.idem_hash = 0xDEADBEEFCAFEF00Dull;
        size_t len = round_trip(mixed, nmixed, o, (1ull << 40) + 3);
        if (comps[c] != SPW_COMPRESS_NONE)
            CHECK(len < sizeof bigval / 2); /* bigval is very compressible: it was compressed */
        /* Explicit levels. */
        o.level = comps[c] == SPW_COMPRESS_ZSTD ? 19 : 4;
        round_trip(mixed, nmixed, o, 0);
        o.level = comps[c] == SPW_COMPRESS_ZSTD ? -5 : 0;
        round_trip(mixed, nmixed, o, 0);
    }

    /* Many records: values of every small length, keys of lengths 0..63, every
     * timestamp delta sign, headers on some; more than 4096 ids so the id
     * deltas cross milliseconds; 127/128 record boundary for offset_delta varints. */
    enum { MANY = 5000 };
    spw_record *many = calloc(MANY, sizeof *many);
    static char keys[64];
    memset(keys, 'k', sizeof keys);
    for (uint32_t i = 0; i < MANY; i++) {
        many[i].key = keys;
        many[i].key_len = (int32_t)(i % 65) - 1; /* -1..63 */
        many[i].value = bigval + i;
        many[i].value_len = i % 300;
        many[i].ts = 1700000000000 + (int64_t)((i * 7919) % 20000) - 10000; /* up and down */
        if (i % 17 == 0) {
            many[i].headers = hdrs;
            many[i].header_count = 1 + i % 3;
        }
    }
    for (int c = 0; c < 3; c++) {
        spw_batch_opts o = {.compression = comps[c], .idgen = &g};
        round_trip(many, MANY, o, 1000);
        round_trip(many, 128, o, 0);
        round_trip(many, 129, o, 0);
    }
    free(many);

    /* Large values: one of 1 MiB of random bytes (incompressible), and values
     * whose length varint crosses byte boundaries. */
    size_t big = 1u << 20;
    uint8_t *rb = malloc(big);
    fill_rand(rb, big);
    for (int c = 0; c < 3; c++) {
        spw_batch_opts o = {.compression = comps[c], .idgen = &g};
        spw_record r = {.key_len = -1, .value = rb, .value_len = (uint32_t)big, .ts = 1};
        round_trip(&r, 1, o, 7);
        static const uint32_t lens[] = {127, 128, 16383, 16384, 16384 - 6, 16384 - 5, 16384 - 4, 65536};
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            spw_record two[2] = {
                {.key = "a", .key_len = 1, .value = rb, .value_len = lens[k], .ts = 100},
                {.key_len = -1, .value = rb + 1, .value_len = lens[k] - 1, .ts = 99},
            };
            round_trip(two, 2, o, 0);
        }
    }
    free(rb);

    /* Extreme timestamps that still have representable deltas. */
    spw_record ext[] = {
        {.key_len = -1, .value = "a", .value_len = 1, .ts = INT64_MIN / 2},
        {.key_len = -1, .value = "b", .value_len = 1, .ts = INT64_MAX / 2},
        {.key_len = -1, .value = "c", .value_len = 1, .ts = INT64_MIN / 2},
    };
    for (int c = 0; c < 3; c++)
        round_trip(ext, 3, (spw_batch_opts){.compression = comps[c]}, 0);
    /* Any int64 timestamps, even when ts - first_ts does not fit in an int64
     * (the HTTP API takes any integer): deltas wrap, values come back exact. */
    spw_record wide[] = {
        {.key_len = -1, .value = "a", .value_len = 1, .ts = INT64_MIN},
        {.key_len = -1, .value = "b", .value_len = 1, .ts = INT64_MAX},
        {.key_len = -1, .value = "c", .value_len = 1, .ts = 0},
        {.key_len = -1, .value = "d", .value_len = 1, .ts = INT64_MIN + 1},
    };
    for (int c = 0; c < 3; c++) {
        round_trip(wide, 4, (spw_batch_opts){.compression = comps[c]}, 0);
        round_trip(wide + 1, 3, (spw_batch_opts){.compression = comps[c]}, 0);
    }

    /* A NULL options pointer means defaults: no compression, ids 0. */
    spw_buf out = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    CHECK_EQ(spw_batch_encode(&out, &scratch, mixed, nmixed, NULL), 0);
    spw_batch_opts dflt = {0};
    check_batch(out.p, out.len, mixed, nmixed, 0, &dflt, 0);
    /* The encoder reuses its buffer: a second, smaller batch into the same one. */
    CHECK_EQ(spw_batch_encode(&out, &scratch, mixed, 1, NULL), 0);
    check_batch(out.p, out.len, mixed, 1, 0, &dflt, 0);
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);

    /* Byte-exact encoding of one record (docs/formats/log.md): key "k",
     * value "v", ts = first_ts, no idgen, no headers. */
    spw_record one = {.key = "k", .key_len = 1, .value = "v", .value_len = 1, .ts = 5};
    CHECK_EQ(spw_batch_encode(&out, &scratch, &one, 1, NULL), 0);
    static const uint8_t want[] = {8, 0, 0, 0, 2, 'k', 1, 'v', 0};
    CHECK_EQ(out.len, SPW_BATCH_HEADER_LEN + sizeof want);
    CHECK(memcmp(out.p + SPW_BATCH_HEADER_LEN, want, sizeof want) == 0);
    CHECK_EQ(spw_get32(out.p + 16), SPW_BATCH_MAGIC);
    CHECK(memcmp(out.p + 16, "SPWB", 4) == 0);
    CHECK_EQ(out.p[20], 1);
    CHECK_EQ(spw_get16(out.p + 22), 80);
    CHECK_EQ(spw_get32(out.p + 12), crc_ref(0, out.p + 16, out.len - 16));
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);
}

/* ---- the records section, byte by byte ---- */

/* LEB128 a byte at a time, independent of core/varint.h. */
static uint8_t *ref_var(uint8_t *p, uint64_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        *p++ = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return p;
}
static uint8_t *ref_raw(uint8_t *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
}
static uint64_t ref_zz(int64_t v) { return v < 0 ? ((uint64_t)(-(v + 1)) << 1) | 1 : (uint64_t)v << 1; }

/* The records section as docs/formats/log.md defines it, written here
 * field by field: body = ts delta, offset delta, id delta, [version],
 * key length, key, value length, value, header count, headers; each body
 * after its length. ids[i] is record i's id (base_id = ids[0]). */
static size_t ref_section(uint8_t *out, const spw_record *recs, uint32_t n, const uint64_t *ids, int versioned)
{
    uint8_t *p = out;
    static uint8_t body[300000];
    for (uint32_t i = 0; i < n; i++) {
        const spw_record *r = &recs[i];
        uint8_t *q = body;
        q = ref_var(q, ref_zz((int64_t)((uint64_t)r->ts - (uint64_t)recs[0].ts)));
        q = ref_var(q, i);
        q = ref_var(q, ids[i] - ids[0]);
        if (versioned)
            q = ref_var(q, r->version);
        q = ref_var(q, ref_zz(r->key_len));
        if (r->key_len > 0)
            q = ref_raw(q, r->key, (size_t)r->key_len);
        q = ref_var(q, r->value_len);
        q = ref_raw(q, r->value, r->value_len);
        q = ref_var(q, r->header_count);
        for (uint32_t k = 0; k < r->header_count; k++) {
            q = ref_var(q, r->headers[k].key_len);
            q = ref_raw(q, r->headers[k].key, r->headers[k].key_len);
            q = ref_var(q, r->headers[k].value_len);
            q = ref_raw(q, r->headers[k].value, r->headers[k].value_len);
        }
        p = ref_var(p, (uint64_t)(q - body));
        p = ref_raw(p, body, (size_t)(q - body));
    }
    return (size_t)(p - out);
}

/* The encoder's records section is the bytes ref_section writes, for
 * records on both sides of every one- and two-byte varint boundary the
 * encoder's common-record path tests (ts delta, offset, id delta, key and
 * value lengths, the body's length), with and without headers, versions
 * and ids that jump (tickets given). */
static void test_section_bytes(void)
{
    enum { N = 20000 };
    spw_record *recs = calloc(N, sizeof *recs);
    uint64_t *tickets = calloc(N, sizeof *tickets), *ids = calloc(N, sizeof *ids);
    static uint8_t blob[40000];
    fill_rand(blob, sizeof blob);
    spw_kv hdrs[2] = {{.key = "h", .key_len = 1, .value = "v", .value_len = 1},
                      {.key = "", .key_len = 0, .value = blob, .value_len = 130}};
    static const int64_t ts_steps[] = {0, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, 1000000};
    static const uint32_t vlens[] = {0, 1, 100, 110, 111, 112, 113, 127, 128, 200, 16350, 16360, 16370, 16383, 16384, 30000};
    spw_idgen g;
    fake_ms = SPW_ID_EPOCH_MS + 86400000;
    spw_idgen_init(&g, 5, fake_clock);
    uint8_t *want = malloc(64u << 20);
    spw_buf out = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    for (int round = 0; round < 12; round++) {
        uint32_t n = round < 4 ? 200 : round < 8 ? 3000 : N; /* offsets past 127 and 16383 */
        int versioned = round % 4 == 3;
        int with_tickets = round % 3 == 1;
        uint64_t t = 1000;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t x = rnd();
            spw_record *r = &recs[i];
            *r = (spw_record){0};
            r->key_len = (int32_t)(x % 23) - 1; /* -1..21 */
            r->key = r->key_len >= 0 ? blob + (x >> 8) % 1000 : NULL;
            r->value_len = x % 7 == 0 ? vlens[(x >> 16) % (sizeof vlens / sizeof *vlens)] : (uint32_t)((x >> 20) % 140);
            if (n == N && r->value_len > 200)
                r->value_len = 200; /* a bounded section */
            r->value = blob + (x >> 32) % 1000;
            r->ts = 1700000000000 + ts_steps[(x >> 40) % (sizeof ts_steps / sizeof *ts_steps)];
            if (i == 0)
                r->ts = 1700000000000;
            if ((x >> 48) % 11 == 0) {
                r->headers = hdrs;
                r->header_count = 1 + (uint32_t)((x >> 52) % 2);
            }
            if (versioned)
                r->version = (x >> 24) % 3 == 0 ? 0 : (x >> 24) % 300;
            /* Tickets that jump by 1, by 128 and by 2^14 and more. */
            t += (x >> 56) % 5 == 0 ? 1 + ((x >> 44) % 20000) : 1;
            tickets[i] = t;
        }
        spw_batch_opts o = {.idgen = &g, .versioned = versioned, .tickets = with_tickets ? tickets : NULL};
        uint64_t first = 0;
        o.first_ticket = &first;
        CHECK_EQ(spw_batch_encode(&out, &scratch, recs, n, &o), 0);
        for (uint32_t i = 0; i < n; i++)
            ids[i] = spw_id_from_ticket(&g, with_tickets ? tickets[i] : first + i);
        size_t len = ref_section(want, recs, n, ids, versioned);
        CHECK_EQ(out.len, SPW_BATCH_HEADER_LEN + len);
        CHECK(memcmp(out.p + SPW_BATCH_HEADER_LEN, want, len) == 0);
    }
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);
    free(want);
    free(recs);
    free(tickets);
    free(ids);
}

/* ---- varints ---- */

static void check_varint(uint64_t v)
{
    uint8_t b[SPW_VARINT_MAX + 4];
    memset(b, 0xEE, sizeof b);
    size_t n = spw_varint_put(b, v);
    size_t bits = 0;
    for (uint64_t x = v; x; x >>= 1)
        bits++;
    size_t want = bits ? (bits + 6) / 7 : 1;
    CHECK_EQ(n, want);
    CHECK_EQ(spw_varint_len(v), want);
    CHECK_EQ(b[n], 0xEE); /* nothing written past the end */
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(!!(b[i] & 0x80), i + 1 < n);
    uint64_t got = ~v;
    CHECK_EQ(spw_varint_get(b, b + n, &got), n);
    CHECK(got == v);
    got = ~v; /* extra bytes after it are not consumed */
    CHECK_EQ(spw_varint_get(b, b + sizeof b, &got), n);
    CHECK(got == v);
    for (size_t cut = 0; cut < n; cut++) { /* truncated anywhere */
        got = 12345;
        CHECK_EQ(spw_varint_get(b, b + cut, &got), 0);
        CHECK(got == 12345);
    }
}

static void test_varints(void)
{
    static const uint64_t fixed[] = {0, 1, 2, 63, 64, 127, 128, 129, 255, 256, 300, 16383, 16384, INT64_MAX,
                                     (uint64_t)INT64_MAX + 1, UINT64_MAX - 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        check_varint(fixed[i]);
    /* Every byte-length boundary: 2^(7k) - 1 and 2^(7k), k = 1..9. */
    for (int k = 1; k <= 9; k++) {
        uint64_t b = 1ull << (7 * k);
        check_varint(b - 1);
        check_varint(b);
        check_varint(b + 1);
        CHECK_EQ(spw_varint_len(b - 1), (size_t)k);
        CHECK_EQ(spw_varint_len(b), (size_t)k + 1);
    }
    for (int s = 0; s < 64; s++)
        check_varint(1ull << s);
    for (int i = 0; i < 20000; i++)
        check_varint(rnd() >> (rnd() % 64));

    /* Byte-exact examples from docs/formats/log.md. */
    uint8_t b[16];
    CHECK_EQ(spw_varint_put(b, 0), 1);
    CHECK_EQ(b[0], 0x00);
    CHECK_EQ(spw_varint_put(b, 127), 1);
    CHECK_EQ(b[0], 0x7F);
    CHECK_EQ(spw_varint_put(b, 128), 2);
    CHECK(b[0] == 0x80 && b[1] == 0x01);
    CHECK_EQ(spw_varint_put(b, 300), 2);
    CHECK(b[0] == 0xAC && b[1] == 0x02);
    CHECK_EQ(spw_varint_put(b, UINT64_MAX), 10);
    for (int i = 0; i < 9; i++)
        CHECK_EQ(b[i], 0xFF);
    CHECK_EQ(b[9], 0x01);
    CHECK_EQ(spw_varint_put(b, 1ull << 63), 10);
    for (int i = 0; i < 9; i++)
        CHECK_EQ(b[i], 0x80);
    CHECK_EQ(b[9], 0x01);

    /* Malformed. */
    uint64_t v = 777;
    CHECK_EQ(spw_varint_get(b, b, &v), 0); /* empty */
    uint8_t m[16];
    memset(m, 0x80, sizeof m); /* continuation forever: longer than 10 bytes */
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 0);
    memset(m, 0xFF, sizeof m);
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 0);
    m[9] = 0x02; /* 10th byte > 1: overflows 64 bits */
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 0);
    m[9] = 0x7F;
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 0);
    m[9] = 0x81; /* 10th byte with a continuation bit */
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 0);
    m[9] = 0x80;
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 0);
    m[9] = 0x01; /* the largest legal 10-byte varint */
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 10);
    CHECK(v == UINT64_MAX);
    CHECK_EQ(spw_varint_get(m, m + 9, &v), 0); /* same, truncated */
    m[9] = 0x00; /* a (non-minimal) 10-byte encoding of 2^63 - 1 */
    CHECK_EQ(spw_varint_get(m, m + sizeof m, &v), 10);
    CHECK(v == (uint64_t)INT64_MAX);

    /* Zigzag. */
    static const struct {
        int64_t s;
        uint64_t u;
    } zz[] = {{0, 0},
              {-1, 1},
              {1, 2},
              {-2, 3},
              {2, 4},
              {63, 126},
              {-64, 127},
              {64, 128},
              {INT32_MAX, 4294967294ull},
              {INT32_MIN, 4294967295ull},
              {INT64_MAX, UINT64_MAX - 1},
              {INT64_MIN, UINT64_MAX}};
    for (size_t i = 0; i < sizeof zz / sizeof zz[0]; i++) {
        CHECK(spw_zigzag(zz[i].s) == zz[i].u);
        CHECK(spw_unzigzag(zz[i].u) == zz[i].s);
    }
    CHECK_EQ(spw_varint_len(spw_zigzag(-64)), 1);
    CHECK_EQ(spw_varint_len(spw_zigzag(64)), 2);
    CHECK_EQ(spw_varint_len(spw_zigzag(INT64_MIN)), 10);
    for (int i = 0; i < 20000; i++) {
        int64_t s = (int64_t)(rnd() >> (rnd() % 64));
        if (i & 1)
            s = ~s; /* -s - 1 without overflow */
        uint64_t u = spw_zigzag(s);
        CHECK(spw_unzigzag(u) == s);
        CHECK((u & 1) == (s < 0)); /* sign in bit 0 */
        uint64_t r = rnd();
        CHECK(spw_zigzag(spw_unzigzag(r)) == r); /* a bijection */
        uint8_t vb[SPW_VARINT_MAX];
        size_t n = spw_varint_put(vb, u);
        uint64_t back = 0;
        CHECK_EQ(spw_varint_get(vb, vb + n, &back), n);
        CHECK(spw_unzigzag(back) == s);
    }
}

/* ---- CRC32C ---- */

static void test_crc32c(void)
{
    CHECK(spw_crc32c("123456789", 9) == 0xE3069283u);
    CHECK(crc_ref(0, (const uint8_t *)"123456789", 9) == 0xE3069283u);
    CHECK(spw__crc32c_sw(0, "123456789", 9) == 0xE3069283u);
    CHECK(spw_crc32c("", 0) == 0);
    /* RFC 3720 (iSCSI) B.4 vectors. */
    uint8_t v[48];
    memset(v, 0, 32);
    CHECK(spw_crc32c(v, 32) == 0x8A9136AAu);
    memset(v, 0xFF, 32);
    CHECK(spw_crc32c(v, 32) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        v[i] = (uint8_t)i;
    CHECK(spw_crc32c(v, 32) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        v[i] = (uint8_t)(31 - i);
    CHECK(spw_crc32c(v, 32) == 0x113FDB5Cu);

    int hw = spw__crc32c_hw_available();
    if (hw)
        CHECK(spw__crc32c_hw(0, "123456789", 9) == 0xE3069283u);
    else
        fprintf(stderr, "test_format: no SSE4.2 crc32 instruction here; only the table path is compared\n");

    /* Three little-endian words in one call equal their 12 bytes. */
    for (int i = 0; i < 10000; i++) {
        uint32_t w3[3] = {(uint32_t)rnd(), (uint32_t)rnd(), (uint32_t)rnd()}, seed = i & 1 ? (uint32_t)rnd() : 0;
        if (i % 7 == 0)
            w3[i % 3] = i % 2 ? 0 : UINT32_MAX;
        uint8_t b12[12];
        for (int k = 0; k < 12; k++)
            b12[k] = (uint8_t)(w3[k / 4] >> (8 * (k % 4)));
        CHECK(spw_crc32c_le32x3(seed, w3[0], w3[1], w3[2]) == crc_ref(seed, b12, 12));
    }

    /* A record's lengths, key and value in one call equal the reference
     * over the 12 bytes, the key and the value in turn: every key length
     * 0..40 and value length 0..130 (each tail of the 32/8/4/2/1 steps on
     * both sides of the seam between key and value), any alignment. */
    {
        uint8_t kv[256];
        fill_rand(kv, sizeof kv);
        for (size_t kn = 0; kn <= 40; kn++)
            for (size_t vn = 0; vn <= 130; vn++) {
                const uint8_t *k = kv + (kn + vn) % 7, *val = kv + 64 + vn % 13;
                uint32_t seed = (uint32_t)rnd(), a = (uint32_t)kn, b = (uint32_t)vn, c = (uint32_t)rnd();
                uint8_t b12[12];
                uint32_t w3[3] = {a, b, c};
                for (int i = 0; i < 12; i++)
                    b12[i] = (uint8_t)(w3[i / 4] >> (8 * (i % 4)));
                uint32_t want = crc_ref(crc_ref(crc_ref(seed, b12, 12), k, kn), val, vn);
                CHECK(spw_crc32c_lens_key_value(seed, a, b, c, kn ? k : NULL, kn, val, vn) == want);
            }
    }

    /* Both paths (and the reference) agree on random data of every length
     * 0..300 and a few large ones, at every alignment 0..15, from any seed. */
    size_t cap = (1u << 16) + 64;
    uint8_t *buf = malloc(cap);
    fill_rand(buf, cap);
    size_t lens[330];
    size_t nl = 0;
    for (size_t l = 0; l <= 300; l++)
        lens[nl++] = l;
    /* around one and two rounds of the three 512-byte lanes of the hw path */
    static const size_t bigs[] = {511, 512, 513, 1535, 1536, 1537, 1543, 3071, 3072, 3079, 4095, 4096, 4097, 1u << 16};
    for (size_t i = 0; i < sizeof bigs / sizeof bigs[0]; i++)
        lens[nl++] = bigs[i];
    for (size_t li = 0; li < nl; li++) {
        for (size_t al = 0; al < 16; al++) {
            const uint8_t *p = buf + al;
            size_t n = lens[li];
            uint32_t seed = al & 1 ? (uint32_t)rnd() : 0;
            uint32_t want = crc_ref(seed, p, n);
            CHECK(spw__crc32c_sw(seed, p, n) == want);
            if (hw)
                CHECK(spw__crc32c_hw(seed, p, n) == want);
            CHECK(spw_crc32c_extend(seed, p, n) == want);
            if (n >= 2) { /* extending in two pieces equals one piece */
                size_t cut = 1 + (size_t)(rnd() % (n - 1));
                CHECK(spw_crc32c_extend(spw_crc32c_extend(seed, p, cut), p + cut, n - cut) == want);
                CHECK(spw__crc32c_sw(spw__crc32c_sw(seed, p, cut), p + cut, n - cut) == want);
                if (hw)
                    CHECK(spw__crc32c_hw(spw__crc32c_hw(seed, p, cut), p + cut, n - cut) == want);
            }
            if (n > 64 && al > 3)
                break; /* large lengths: a few alignments suffice */
        }
    }
    free(buf);
}

/* ---- limits ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void test_limits(void)
{
    spw_buf out = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    spw_record r = {.key = "k", .key_len = 1, .value = "v", .value_len = 1, .ts = 1};
    spw_idgen g;
    spw_idgen_init(&g, 1, NULL);

    /* Record counts: 0 and above the maximum (the array is never read). */
    for (int c = 0; c < 3; c++) {
        spw_batch_opts o = {.compression = c, .idgen = &g};
        CHECK_EQ(spw_batch_encode(&out, &scratch, &r, 0, &o), SPW_EINVAL);
        CHECK_EQ(spw_batch_encode(&out, &scratch, &r, SPW_BATCH_MAX_RECORDS + 1, &o), SPW_EINVAL);
        CHECK_EQ(spw_batch_encode(&out, &scratch, &r, UINT32_MAX, &o), SPW_EINVAL);
    }
    /* A refused batch took no ids. */
    uint64_t t0 = atomic_load(&g.ticket);
    CHECK_EQ(spw_batch_encode(&out, &scratch, &r, 0, &(spw_batch_opts){.idgen = &g}), SPW_EINVAL);
    CHECK(atomic_load(&g.ticket) == t0);
    /* Bad key_len and compression. */
    spw_record bad = r;
    bad.key_len = -2;
    CHECK_EQ(spw_batch_encode(&out, &scratch, &bad, 1, NULL), SPW_EINVAL);
    bad.key_len = INT32_MIN;
    CHECK_EQ(spw_batch_encode(&out, &scratch, &bad, 1, NULL), SPW_EINVAL);
    spw_record two[2] = {r, bad};
    CHECK_EQ(spw_batch_encode(&out, &scratch, two, 2, NULL), SPW_EINVAL);
    CHECK_EQ(spw_batch_encode(&out, &scratch, &r, 1, &(spw_batch_opts){.compression = 3}), SPW_EINVAL);
    CHECK_EQ(spw_batch_encode(&out, &scratch, &r, 1, &(spw_batch_opts){.compression = -1}), SPW_EINVAL);
    CHECK_EQ(spw_batch_encode(&out, &scratch, &r, 1, NULL), 0); /* control */

    /* Far too large: refused from the bound, before any byte is read (the
     * value pointer is never dereferenced). */
    spw_record huge = {.key_len = -1, .value = (const void *)16, .value_len = UINT32_MAX, .ts = 1};
    for (int c = 0; c < 3; c++)
        CHECK_EQ(spw_batch_encode(&out, &scratch, &huge, 1, &(spw_batch_opts){.compression = c}), SPW_EMSGSIZE);
    /* Same through a header's lengths and the key length (u32 sums must not
     * wrap: spw_batch_bound once did, and the encoder overflowed its buffer). */
    spw_kv hkv = {.key = (const void *)16, .key_len = 1, .value = (const void *)16, .value_len = UINT32_MAX};
    spw_record hdr_huge = {.key_len = -1, .value = "v", .value_len = 1, .ts = 1, .headers = &hkv, .header_count = 1};
    CHECK_EQ(spw_batch_encode(&out, &scratch, &hdr_huge, 1, NULL), SPW_EMSGSIZE);
    hkv.key_len = UINT32_MAX - 5;
    hkv.value_len = 100;
    CHECK_EQ(spw_batch_encode(&out, &scratch, &hdr_huge, 1, NULL), SPW_EMSGSIZE);
    spw_record key_huge = {.key = (const void *)16, .key_len = INT32_MAX, .value = "v", .value_len = 1, .ts = 1};
    CHECK_EQ(spw_batch_encode(&out, &scratch, &key_huge, 1, NULL), SPW_EMSGSIZE);
    CHECK(spw_batch_bound(&huge, 1) > UINT32_MAX);
    CHECK(spw_batch_bound(&hdr_huge, 1) > UINT32_MAX - 5);
    spw_record huge3[3] = {huge, huge, huge};
    huge3[0].value_len = huge3[1].value_len = huge3[2].value_len = SPW_BATCH_MAX_LEN;
    CHECK_EQ(spw_batch_encode(&out, &scratch, huge3, 3, NULL), SPW_EMSGSIZE);

    /* spw_batch_bound is an upper bound of the encoded size. */
    spw_kv hk = {.key = "hk", .key_len = 2, .value = "hv", .value_len = 2};
    spw_record bb[2] = {{.key = "kk", .key_len = 2, .value = "vvv", .value_len = 3, .ts = INT64_MAX / 4,
                         .headers = &hk, .header_count = 1},
                        {.key_len = -1, .value = "", .value_len = 0, .ts = -(INT64_MAX / 4)}};
    CHECK_EQ(spw_batch_encode(&out, &scratch, bb, 2, &(spw_batch_opts){.idgen = &g}), 0);
    CHECK(out.len <= spw_batch_bound(bb, 2));
    CHECK(spw_batch_bound(bb, 2) >= SPW_BATCH_HEADER_LEN + 2 + 3 + 4);
    CHECK_EQ(spw_batch_bound(bb, 0), SPW_BATCH_HEADER_LEN);

    /* The exact limit: one record, no key, no headers, ts = first_ts, no
     * ids; records = len(4) ts(1) off(1) id(1) key(1) vlen(4) value hc(1),
     * so the batch is 80 + 13 + V bytes. V = MAX - 93 fits exactly; one more
     * byte is SPW_EMSGSIZE. The value comes from untouched zero pages. */
    int64_t t_start = now_ns();
    size_t vmax = SPW_BATCH_MAX_LEN;
    uint8_t *zeros = mmap(NULL, vmax, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(zeros != MAP_FAILED);
    spw_record lim = {.key_len = -1, .value = zeros, .value_len = SPW_BATCH_MAX_LEN - 93, .ts = 3};
    CHECK_EQ(spw_batch_encode(&out, &scratch, &lim, 1, NULL), 0);
    CHECK_EQ(out.len, SPW_BATCH_MAX_LEN);
    {
        spw_batch_hdr h;
        CHECK_EQ(spw_batch_check(out.p, out.len, &h), 0);
        const uint8_t *rp;
        size_t rl;
        CHECK_EQ(spw_batch_records(out.p, &h, &scratch, &rp, &rl), 0);
        spw_rec_iter it;
        spw_record_view rv;
        spw_rec_iter_init(&it, &h, rp, rl);
        CHECK_EQ(spw_rec_next(&it, &rv), 1);
        CHECK_EQ(rv.value_len, SPW_BATCH_MAX_LEN - 93);
        CHECK_EQ(rv.key_len, -1);
        CHECK(rv.value == out.p + 80 + 12);
        CHECK_EQ(spw_rec_next(&it, &rv), 0);
        /* A header claiming one byte more than the maximum is corrupt. */
        spw_put32(out.p + 8, SPW_BATCH_MAX_LEN + 1);
        CHECK_EQ(spw_batch_parse(out.p, out.len, &h), SPW_ECORRUPT);
    }
    lim.value_len++;
    CHECK_EQ(spw_batch_encode(&out, &scratch, &lim, 1, NULL), SPW_EMSGSIZE);
    /* Compressed: the limit is records_len <= MAX (and the stored length). A
     * records section of exactly MAX bytes compresses and decodes; one byte
     * more is refused before compressing. */
    lim.value_len = SPW_BATCH_MAX_LEN - 13;
    spw_buf_fini(&out);
    CHECK_EQ(spw_batch_encode(&out, &scratch, &lim, 1, &(spw_batch_opts){.compression = SPW_COMPRESS_LZ4}), 0);
    {
        spw_batch_hdr h;
        CHECK_EQ(spw_batch_check(out.p, out.len, &h), 0);
        CHECK_EQ(h.records_len, SPW_BATCH_MAX_LEN);
        CHECK(h.length < (4u << 20));
        spw_buf dec = SPW_BUF_INIT;
        const uint8_t *rp;
        size_t rl;
        CHECK_EQ(spw_batch_records(out.p, &h, &dec, &rp, &rl), 0);
        CHECK_EQ(rl, SPW_BATCH_MAX_LEN);
        spw_rec_iter it;
        spw_record_view rv;
        spw_rec_iter_init(&it, &h, rp, rl);
        CHECK_EQ(spw_rec_next(&it, &rv), 1);
        CHECK_EQ(rv.value_len, SPW_BATCH_MAX_LEN - 13);
        CHECK(rv.value[0] == 0 && rv.value[rv.value_len - 1] == 0);
        CHECK_EQ(spw_rec_next(&it, &rv), 0);
        spw_buf_fini(&dec);
    }
    lim.value_len++;
    CHECK_EQ(spw_batch_encode(&out, &scratch, &lim, 1, &(spw_batch_opts){.compression = SPW_COMPRESS_LZ4}),
             SPW_EMSGSIZE);
    CHECK_EQ(spw_batch_encode(&out, &scratch, &lim, 1, &(spw_batch_opts){.compression = SPW_COMPRESS_ZSTD}),
             SPW_EMSGSIZE);
    munmap(zeros, vmax);
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);
    fprintf(stderr, "test_format: 256 MiB limit checks took %.2f s\n", (double)(now_ns() - t_start) / 1e9);
}

/* ---- malformed batches ---- */

/* A valid uncompressed batch of a few records, in a malloc'ed copy. */
static uint8_t *sample_batch(size_t *len, int compression)
{
    spw_kv h = {.key = "hk", .key_len = 2, .value = "hv", .value_len = 2};
    spw_record recs[] = {
        {.key = "key0", .key_len = 4, .value = "value zero", .value_len = 10, .ts = 1000},
        {.key_len = -1, .value = "value one", .value_len = 9, .ts = 990, .headers = &h, .header_count = 1},
        {.key = "", .key_len = 0, .value = "value two!", .value_len = 10, .ts = 1010},
    };
    spw_buf out = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    CHECK_EQ(spw_batch_encode(&out, &scratch, recs, 3, &(spw_batch_opts){.compression = compression}), 0);
    uint8_t *b = malloc(out.len + 64);
    memcpy(b, out.p, out.len);
    *len = out.len;
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);
    return b;
}

/* Header edits: each must make spw_batch_parse fail with SPW_ECORRUPT even
 * after resealing the CRC. */
static void test_parse_rejects(void)
{
    size_t len;
    uint8_t *orig = sample_batch(&len, SPW_COMPRESS_NONE);
    uint8_t *b = malloc(len + 64);
    spw_batch_hdr h;
    CHECK_EQ(spw_batch_parse(orig, len, &h), 0);
    CHECK_EQ(spw_batch_check(orig, len, &h), 0);
    uint32_t records_len = h.records_len;

    /* Too short for a header; header present but batch cut. */
    for (size_t a = 0; a < SPW_BATCH_HEADER_LEN; a += 7)
        CHECK_EQ(spw_batch_parse(orig, a, &h), SPW_ETRUNC);
    CHECK_EQ(spw_batch_parse(orig, SPW_BATCH_HEADER_LEN, &h), 0); /* the header alone parses */
    CHECK_EQ(spw_batch_check(orig, SPW_BATCH_HEADER_LEN, &h), SPW_ETRUNC);
    CHECK_EQ(spw_batch_check(orig, len - 1, &h), SPW_ETRUNC);
    CHECK_EQ(spw_batch_check(orig, len, &h), 0);
    CHECK_EQ(spw_batch_check(orig, len + 10, &h), 0); /* more bytes after it: fine */

#define EDIT(stmt)                                                                                                     \
    do {                                                                                                               \
        memcpy(b, orig, len);                                                                                          \
        stmt;                                                                                                          \
        reseal(b);                                                                                                     \
        CHECK_EQ(spw_batch_parse(b, len, &h), SPW_ECORRUPT);                                                           \
        CHECK_EQ(spw_batch_check(b, len, &h), SPW_ECORRUPT);                                                           \
    } while (0)
    EDIT(spw_put32(b + 16, 0x42575054u));          /* magic */
    EDIT(b[16] = 's');                              /* magic, first byte */
    EDIT(spw_put32(b + 16, 0));                     /* magic */
    EDIT(b[20] = 0);                                /* version */
    EDIT(b[20] = 2);                                /* version */
    EDIT(b[20] = 255);                              /* version */
    EDIT(spw_put16(b + 22, 79));                    /* header_len */
    EDIT(spw_put16(b + 22, 81));                    /* header_len */
    EDIT(spw_put16(b + 22, 0));                     /* header_len */
    EDIT(spw_put32(b + 24, 0));                     /* record_count 0 */
    EDIT(spw_put32(b + 24, SPW_BATCH_MAX_RECORDS + 1));
    EDIT(spw_put32(b + 24, UINT32_MAX));
    EDIT(spw_put32(b + 24, records_len / 6 + 1));   /* more records than could fit */
    EDIT(spw_put32(b + 28, records_len + 1));       /* records_len != length - 80 (uncompressed) */
    EDIT(spw_put32(b + 28, records_len - 1));
    EDIT(spw_put32(b + 28, SPW_BATCH_MAX_LEN + 1));
    EDIT(b[21] = 3);                                /* compression 3 */
    EDIT(b[21] = 0x08);                             /* unknown attribute bits */
    EDIT(b[21] = 0x80);
    EDIT(b[21] = 0x41);
    EDIT(spw_put64(b + 40, 999));                   /* max_ts < first_ts */
    EDIT(spw_put64(b + 32, (uint64_t)INT64_MAX));   /* first_ts > max_ts */
    /* length is not under the CRC's own check but is bounded. */
    memcpy(b, orig, len);
    spw_put32(b + 8, SPW_BATCH_HEADER_LEN - 1);
    CHECK_EQ(spw_batch_parse(b, len, &h), SPW_ECORRUPT);
    spw_put32(b + 8, 0);
    CHECK_EQ(spw_batch_parse(b, len, &h), SPW_ECORRUPT);
    spw_put32(b + 8, SPW_BATCH_MAX_LEN + 1);
    CHECK_EQ(spw_batch_parse(b, len, &h), SPW_ECORRUPT);
    spw_put32(b + 8, UINT32_MAX);
    CHECK_EQ(spw_batch_parse(b, len, &h), SPW_ECORRUPT);
    spw_put32(b + 8, (uint32_t)len + 1); /* disagrees with records_len */
    CHECK_EQ(spw_batch_parse(b, len + 1, &h), SPW_ECORRUPT);
    /* base_offset: the last offset must be representable. */
    memcpy(b, orig, len);
    spw_put64(b, UINT64_MAX - 3 + 1);
    CHECK_EQ(spw_batch_parse(b, len, &h), SPW_ECORRUPT);
    spw_put64(b, UINT64_MAX - 3);
    CHECK_EQ(spw_batch_parse(b, len, &h), 0);
    CHECK(h.base_offset == UINT64_MAX - 3);
    /* Equal first and max ts, and a max above first: fine. */
    memcpy(b, orig, len);
    spw_put64(b + 40, 1000);
    spw_put64(b + 32, 1000);
    reseal(b);
    CHECK_EQ(spw_batch_check(b, len, &h), 0);
#undef EDIT

    /* CRC: every single-byte change in [16, length) is caught (by the CRC
     * or the header checks); bytes [0, 16) are not under the CRC, and a
     * changed stored CRC is a mismatch. */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(b, orig, len);
            b[i] ^= (uint8_t)(1u << bit);
            int e = spw_batch_check(b, len, &h);
            if (i < 8)
                CHECK_EQ(e, 0); /* base_offset */
            else if (i >= 12)
                CHECK_EQ(e, SPW_ECORRUPT); /* crc and everything it covers */
            else
                CHECK(e == SPW_ECORRUPT || e == SPW_ETRUNC); /* length */
            if (i >= 16 && spw_batch_parse(b, len, &h) == 0)
                CHECK_EQ(spw_batch_verify(b, &h), SPW_ECORRUPT);
        }
    }
    memcpy(b, orig, len);
    CHECK_EQ(spw_batch_parse(b, len, &h), 0);
    CHECK_EQ(spw_batch_verify(b, &h), 0);
    h.crc ^= 1;
    CHECK_EQ(spw_batch_verify(b, &h), SPW_ECORRUPT);
    free(b);
    free(orig);
}

/* Wraps a hand-built records section in a valid uncompressed batch (so the
 * header and CRC pass and only the records are wrong). */
static size_t wrap(uint8_t *b, const uint8_t *recs, size_t rlen, uint32_t count)
{
    memset(b, 0, SPW_BATCH_HEADER_LEN);
    spw_put64(b, 500);
    spw_put32(b + 8, (uint32_t)(SPW_BATCH_HEADER_LEN + rlen));
    spw_put32(b + 16, SPW_BATCH_MAGIC);
    b[20] = SPW_BATCH_VERSION;
    spw_put16(b + 22, SPW_BATCH_HEADER_LEN);
    spw_put32(b + 24, count);
    spw_put32(b + 28, (uint32_t)rlen);
    spw_put64(b + 32, 100);
    spw_put64(b + 40, 200);
    spw_put64(b + 48, 1000);
    memcpy(b + SPW_BATCH_HEADER_LEN, recs, rlen);
    reseal(b);
    return SPW_BATCH_HEADER_LEN + rlen;
}

/* Runs the iterator over batch b; returns 1 if every record decoded and
 * the end came cleanly, else the error (and *good = records decoded). */
static int iterate(const uint8_t *b, size_t len, uint32_t *good)
{
    spw_batch_hdr h;
    CHECK_EQ(spw_batch_check(b, len, &h), 0);
    spw_buf scratch = SPW_BUF_INIT;
    const uint8_t *rp;
    size_t rl;
    int r = spw_batch_records(b, &h, &scratch, &rp, &rl);
    *good = 0;
    if (r == 0) {
        spw_rec_iter it;
        spw_record_view rv;
        spw_rec_iter_init(&it, &h, rp, rl);
        while ((r = spw_rec_next(&it, &rv)) == 1)
            (*good)++;
        r = r == 0 ? 1 : r;
    }
    spw_buf_fini(&scratch);
    return r;
}

/* Record builder: body fields given as varint values / raw bytes. */
typedef struct rb {
    uint8_t b[512];
    size_t n;
} rb;
static void rb_var(rb *r, uint64_t v) { r->n += spw_varint_put(r->b + r->n, v); }
static void rb_raw(rb *r, const void *p, size_t n)
{
    memcpy(r->b + r->n, p, n);
    r->n += n;
}
/* Appends one record whose body is body (length prefix = its size + extra). */
static void rb_record(rb *sec, const rb *body, int64_t len_adjust)
{
    rb_var(sec, (uint64_t)((int64_t)body->n + len_adjust));
    rb_raw(sec, body->b, body->n);
}

static void test_records_rejects(void)
{
    uint8_t b[2048];
    uint32_t good;

    /* Edits of an encoded batch, resealed. */
    size_t len;
    uint8_t *orig = sample_batch(&len, SPW_COMPRESS_NONE);
    CHECK_EQ(iterate(orig, len, &good), 1);
    CHECK_EQ(good, 3);
    /* Section truncated by one byte (length and records_len follow). */
    memcpy(b, orig, len);
    spw_put32(b + 8, (uint32_t)len - 1);
    spw_put32(b + 28, (uint32_t)len - 1 - 80);
    reseal(b);
    CHECK_EQ(iterate(b, len - 1, &good), SPW_ECORRUPT);
    CHECK_EQ(good, 2);
    /* Trailing bytes after the last record (zero bytes and a plausible record). */
    for (int extra = 1; extra <= 8; extra++) {
        memcpy(b, orig, len);
        memset(b + len, extra == 8 ? 0x07 : 0, (size_t)extra);
        spw_put32(b + 8, (uint32_t)len + (uint32_t)extra);
        spw_put32(b + 28, (uint32_t)len + (uint32_t)extra - 80);
        reseal(b);
        CHECK_EQ(iterate(b, len + (size_t)extra, &good), SPW_ECORRUPT);
        CHECK_EQ(good, 3);
    }
    /* record_count says more (and fewer) than the section holds. */
    memcpy(b, orig, len);
    spw_put32(b + 24, 4);
    reseal(b);
    CHECK_EQ(iterate(b, len, &good), SPW_ECORRUPT);
    CHECK_EQ(good, 3);
    memcpy(b, orig, len);
    spw_put32(b + 24, 2);
    reseal(b);
    CHECK_EQ(iterate(b, len, &good), SPW_ECORRUPT);
    CHECK_EQ(good, 2);
    free(orig);

    /* Hand-built records sections. First a control that must decode. */
    rb body = {0}, sec = {0};
    rb_var(&body, spw_zigzag(0));  /* ts delta: record 0 has first_ts */
    rb_var(&body, 0);              /* offset delta */
    rb_var(&body, 5);              /* id delta */
    rb_var(&body, spw_zigzag(2));  /* key_len 2 */
    rb_raw(&body, "ab", 2);
    rb_var(&body, 3);
    rb_raw(&body, "xyz", 3);
    rb_var(&body, 1); /* one header */
    rb_var(&body, 1);
    rb_raw(&body, "h", 1);
    rb_var(&body, 0);
    rb_record(&sec, &body, 0);
    size_t bl = wrap(b, sec.b, sec.n, 1);
    CHECK_EQ(iterate(b, bl, &good), 1);
    {
        spw_batch_hdr h;
        spw_rec_iter it;
        spw_record_view rv;
        CHECK_EQ(spw_batch_check(b, bl, &h), 0);
        spw_rec_iter_init(&it, &h, b + 80, h.records_len);
        CHECK_EQ(spw_rec_next(&it, &rv), 1);
        CHECK_EQ(rv.offset, 500);
        CHECK_EQ(rv.id, 1005);
        CHECK_EQ(rv.ts, 100);
        CHECK(rv.key_len == 2 && memcmp(rv.key, "ab", 2) == 0);
        CHECK(rv.value_len == 3 && memcmp(rv.value, "xyz", 3) == 0);
        CHECK_EQ(rv.header_count, 1);
    }

    /* A (CRC-valid) hostile ts delta that overflows first_ts + delta: no
     * undefined behaviour (UBSan would abort), the sum wraps modulo 2^64. */
    {
        rb s = {0}, bd = {0};
        uint8_t rest[] = {0, 0, 1, 0, 0}; /* offset 0, id 0, no key, empty value, no headers */
        rb_var(&bd, spw_zigzag(1));       /* ts delta +1 from INT64_MAX */
        rb_raw(&bd, rest, sizeof rest);
        rb_record(&s, &bd, 0);
        bl = wrap(b, s.b, s.n, 1);
        spw_put64(b + 32, (uint64_t)INT64_MAX);
        spw_put64(b + 40, (uint64_t)INT64_MAX);
        reseal(b);
        spw_batch_hdr h;
        spw_rec_iter it;
        spw_record_view rv;
        CHECK_EQ(spw_batch_check(b, bl, &h), 0);
        spw_rec_iter_init(&it, &h, b + 80, h.records_len);
        CHECK_EQ(spw_rec_next(&it, &rv), 1);
        CHECK(rv.ts == INT64_MIN);
        CHECK_EQ(spw_rec_next(&it, &rv), 0);
    }

    /* Each case: a body with one defect. */
    struct {
        const char *what;
        uint8_t body[40];
        size_t n;
        int64_t len_adjust; /* added to the record's length prefix */
    } cases[] = {
        {"offset delta 1 for record 0", {0, 1, 0, 1, 0, 0}, 6, 0},
        {"key_len -2", {0, 0, 0, 3, 0, 0}, 6, 0},
        {"key_len past the record", {0, 0, 0, 20, 'a', 0, 0}, 7, 0},
        {"value_len past the record", {0, 0, 0, 1, 5, 'x', 0}, 7, 0},
        {"header_count with no headers", {0, 0, 0, 1, 0, 1}, 6, 0},
        {"header_count 2, one header", {0, 0, 0, 1, 0, 2, 1, 'k', 1, 'v'}, 10, 0},
        {"header key past the record", {0, 0, 0, 1, 0, 1, 9, 'k', 0}, 9, 0},
        {"header value past the record", {0, 0, 0, 1, 0, 1, 1, 'k', 9, 'v'}, 10, 0},
        {"byte left after the headers", {0, 0, 0, 1, 0, 0, 0}, 7, 0},
        {"byte left after a header", {0, 0, 0, 1, 0, 1, 1, 'k', 1, 'v', 0}, 11, 0},
        {"field cut by the record length", {0, 0, 0, 1, 0, 0}, 6, -1},
        {"record length past the section", {0, 0, 0, 1, 0, 0}, 6, +1},
        {"ts delta varint 11 bytes", {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0, 0, 0, 1, 0, 0},
         16, 0},
        {"id delta overflows 64 bits", {0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02, 1, 0, 0},
         15, 0},
        {"value_len varint cut", {0, 0, 0, 1, 0x80}, 5, 0},
        {"empty body", {0}, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rb s = {0}, bd = {0};
        rb_raw(&bd, cases[i].body, cases[i].n);
        rb_record(&s, &bd, cases[i].len_adjust);
        while (s.n < 6) /* parse wants >= 6 bytes a record: pad after it */
            s.b[s.n++] = 0;
        bl = wrap(b, s.b, s.n, 1);
        int e = iterate(b, bl, &good);
        if (e != SPW_ECORRUPT)
            fprintf(stderr, "case '%s' gave %d\n", cases[i].what, e);
        CHECK_EQ(e, SPW_ECORRUPT);
        CHECK_EQ(good, 0);
    }
    /* The second record's offset delta must be 1: 0 (a repeat) and 2 (a gap) are corrupt. */
    for (int d = 0; d <= 2; d++) {
        rb s = {0}, b0 = {0}, b1 = {0};
        uint8_t r0[] = {0, 0, 0, 1, 0, 0};
        uint8_t r1[] = {0, (uint8_t)d, 0, 1, 0, 0};
        rb_raw(&b0, r0, sizeof r0);
        rb_raw(&b1, r1, sizeof r1);
        rb_record(&s, &b0, 0);
        rb_record(&s, &b1, 0);
        bl = wrap(b, s.b, s.n, 2);
        int e = iterate(b, bl, &good);
        CHECK_EQ(e, d == 1 ? 1 : SPW_ECORRUPT);
        CHECK_EQ(good, d == 1 ? 2 : 1);
    }
    /* A varint record length running off the section. */
    {
        uint8_t s[8] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};
        bl = wrap(b, s, sizeof s, 1);
        CHECK_EQ(iterate(b, bl, &good), SPW_ECORRUPT);
    }

    /* spw_kv_next on its own. */
    {
        uint8_t kvb[] = {1, 'a', 2, 'b', 'c', 0, 0};
        const uint8_t *p = kvb, *end = kvb + sizeof kvb;
        spw_kv kv;
        CHECK_EQ(spw_kv_next(&p, end, &kv), 1);
        CHECK(kv.key_len == 1 && kv.value_len == 2 && memcmp(kv.value, "bc", 2) == 0);
        CHECK_EQ(spw_kv_next(&p, end, &kv), 1);
        CHECK(kv.key_len == 0 && kv.value_len == 0);
        CHECK_EQ(spw_kv_next(&p, end, &kv), 0);
        p = kvb;
        CHECK_EQ(spw_kv_next(&p, kvb + 4, &kv), SPW_ECORRUPT); /* value cut */
        CHECK(p == kvb);                                      /* not advanced on error */
        p = kvb;
        CHECK_EQ(spw_kv_next(&p, kvb + 1, &kv), SPW_ECORRUPT); /* key cut */
        uint8_t big[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 'x'};
        p = big;
        CHECK_EQ(spw_kv_next(&p, big + sizeof big, &kv), SPW_ECORRUPT);
    }

    /* Compressed sections: a wrong records_len (too big or too small) or a
     * damaged compressed stream is corrupt, never a read outside a buffer. */
    for (int c = SPW_COMPRESS_LZ4; c <= SPW_COMPRESS_ZSTD; c++) {
        uint8_t *cb = sample_batch(&len, c);
        CHECK_EQ(iterate(cb, len, &good), 1);
        CHECK_EQ(good, 3);
        uint32_t rl = spw_get32(cb + 28);
        memcpy(b, cb, len);
        spw_put32(b + 28, rl + 1);
        reseal(b);
        CHECK_EQ(iterate(b, len, &good), SPW_ECORRUPT);
        memcpy(b, cb, len);
        spw_put32(b + 28, rl - 1);
        reseal(b);
        CHECK_EQ(iterate(b, len, &good), SPW_ECORRUPT);
        memcpy(b, cb, len); /* control: resealing alone changes nothing */
        reseal(b);
        CHECK_EQ(iterate(b, len, &good), 1);
        /* Stream damage: garbage, and cut short by a byte. */
        memcpy(b, cb, len);
        memset(b + 80, 0xFF, len - 80);
        reseal(b);
        CHECK_EQ(iterate(b, len, &good), SPW_ECORRUPT);
        memcpy(b, cb, len);
        spw_put32(b + 8, (uint32_t)len - 1);
        reseal(b);
        CHECK_EQ(iterate(b, len - 1, &good), SPW_ECORRUPT);
        /* A compression switch on the same bytes (lz4 <-> zstd, or none). */
        memcpy(b, cb, len);
        b[21] = (uint8_t)(c == SPW_COMPRESS_LZ4 ? SPW_COMPRESS_ZSTD : SPW_COMPRESS_LZ4);
        reseal(b);
        CHECK_EQ(iterate(b, len, &good), SPW_ECORRUPT);
        free(cb);
    }
}

/* Versioned batches (SPW_BATCH_ATTR_VERSIONED): each record's version round
 * trips under every compression, an unversioned batch reads version 0,
 * a version without the flag or past SPW_VERSION_MAX is refused, and the
 * decoder refuses a stored version past the maximum. */
static void test_versions(void)
{
    spw_buf out = SPW_BUF_INIT, scratch = SPW_BUF_INIT, dec = SPW_BUF_INIT;
    spw_record recs[3] = {
        {.key = "a", .key_len = 1, .value = "{}", .value_len = 2, .ts = 5, .version = 1},
        {.key = "a", .key_len = 1, .value = "{}", .value_len = 2, .ts = 6, .version = 2},
        {.key = "b", .key_len = 1, .value = "{}", .value_len = 2, .ts = 7, .version = SPW_VERSION_MAX},
    };
    for (int comp = SPW_COMPRESS_NONE; comp <= SPW_COMPRESS_ZSTD; comp++) {
        spw_batch_opts o = {.compression = comp, .versioned = 1};
        CHECK_EQ(spw_batch_encode(&out, &scratch, recs, 3, &o), 0);
        spw_batch_hdr h;
        CHECK_EQ(spw_batch_check(out.p, out.len, &h), 0);
        CHECK(h.attributes & SPW_BATCH_ATTR_VERSIONED);
        const uint8_t *rp;
        size_t rl;
        CHECK_EQ(spw_batch_records(out.p, &h, &dec, &rp, &rl), 0);
        spw_rec_iter it;
        spw_record_view rv;
        spw_rec_iter_init(&it, &h, rp, rl);
        for (int i = 0; i < 3; i++) {
            CHECK_EQ(spw_rec_next(&it, &rv), 1);
            CHECK_EQ(rv.version, recs[i].version);
            CHECK_EQ(rv.ts, recs[i].ts);
            CHECK_EQ(rv.key_len, 1);
            CHECK(rv.key[0] == ((const char *)recs[i].key)[0]);
        }
        CHECK_EQ(spw_rec_next(&it, &rv), 0);
    }
    /* Without the flag: versions are refused, and records read version 0. */
    spw_batch_opts plain = {0};
    CHECK_EQ(spw_batch_encode(&out, &scratch, recs, 3, &plain), SPW_EINVAL);
    spw_record nov[1] = {{.key_len = -1, .value = "x", .value_len = 1}};
    CHECK_EQ(spw_batch_encode(&out, &scratch, nov, 1, &plain), 0);
    spw_batch_hdr h;
    CHECK_EQ(spw_batch_check(out.p, out.len, &h), 0);
    CHECK_EQ(h.attributes & SPW_BATCH_ATTR_VERSIONED, 0);
    spw_rec_iter it;
    spw_record_view rv;
    spw_rec_iter_init(&it, &h, out.p + SPW_BATCH_HEADER_LEN, out.len - SPW_BATCH_HEADER_LEN);
    rv.version = 99;
    CHECK_EQ(spw_rec_next(&it, &rv), 1);
    CHECK_EQ(rv.version, 0);
    /* Past the maximum. */
    spw_batch_opts vo = {.versioned = 1};
    spw_record big[1] = {{.key = "k", .key_len = 1, .value = "x", .value_len = 1, .version = SPW_VERSION_MAX + 1}};
    CHECK_EQ(spw_batch_encode(&out, &scratch, big, 1, &vo), SPW_EINVAL);
    /* A stored version past the maximum is corruption: the record is
     * 00 00 00 <version 2^53 as varint> 02 'k' 01 'x' 00. */
    big[0].version = 1;
    CHECK_EQ(spw_batch_encode(&out, &scratch, big, 1, &vo), 0);
    uint8_t b[128];
    memcpy(b, out.p, out.len);
    /* Layout: [80] len, [81] ts, [82] off, [83] id, [84] version=01. */
    CHECK_EQ(b[84], 1);
    uint8_t rec[32];
    size_t n = 0;
    rec[n++] = 0; /* length, set below */
    rec[n++] = 0;
    rec[n++] = 0;
    rec[n++] = 0;
    n += spw_varint_put(rec + n, SPW_VERSION_MAX + 1);
    rec[n++] = 2;
    rec[n++] = 'k';
    rec[n++] = 1;
    rec[n++] = 'x';
    rec[n++] = 0;
    rec[0] = (uint8_t)(n - 1);
    memcpy(b + SPW_BATCH_HEADER_LEN, rec, n);
    spw_put32(b + 8, (uint32_t)(SPW_BATCH_HEADER_LEN + n));
    spw_put32(b + 28, (uint32_t)n);
    reseal(b);
    CHECK_EQ(spw_batch_check(b, SPW_BATCH_HEADER_LEN + n, &h), 0);
    spw_rec_iter_init(&it, &h, b + SPW_BATCH_HEADER_LEN, n);
    CHECK_EQ(spw_rec_next(&it, &rv), SPW_ECORRUPT);
    /* The same bytes with version 2^53 - 1 read. */
    n = 4;
    n += spw_varint_put(rec + n, SPW_VERSION_MAX);
    memcpy(rec + n, "\x02k\x01x\x00", 5);
    n += 5;
    rec[0] = (uint8_t)(n - 1);
    memcpy(b + SPW_BATCH_HEADER_LEN, rec, n);
    spw_put32(b + 8, (uint32_t)(SPW_BATCH_HEADER_LEN + n));
    spw_put32(b + 28, (uint32_t)n);
    reseal(b);
    CHECK_EQ(spw_batch_check(b, SPW_BATCH_HEADER_LEN + n, &h), 0);
    spw_rec_iter_init(&it, &h, b + SPW_BATCH_HEADER_LEN, n);
    CHECK_EQ(spw_rec_next(&it, &rv), 1);
    CHECK(rv.version == SPW_VERSION_MAX);
    spw_buf_fini(&out);
    spw_buf_fini(&scratch);
    spw_buf_fini(&dec);
}

int main(void)
{
    int64_t t0 = now_ns();
    test_varints();
    test_crc32c();
    test_round_trips();
    test_order();
    test_section_bytes();
    test_versions();
    test_parse_rejects();
    test_records_rejects();
    fprintf(stderr, "test_format: small tests took %.2f s\n", (double)(now_ns() - t0) / 1e9);
    test_limits();
    puts("test_format: ok");
    return 0;
}
