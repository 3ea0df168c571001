/*
 * libFuzzer target for the Kafka request decoder (src/kafka/kcodec.c,
 * docs/protocol-kafka.md): the request header, and a Produce records
 * field — record batches (CRC, magic, compression: gzip, snappy, lz4,
 * zstd under a 1 MiB cap), their records and headers — as the Produce
 * handler walks them (kafka/kafka_produce.c ksrc_next). The decoders run on
 * a heap copy of exactly the input's size, so ASan sees any read past it.
 *
 * Input: byte 0 selects (even: the input after it is a request, header
 * then a generic walk of strings, arrays, varints and tagged fields; odd:
 * it is a records field). Invariants that can fail:
 *  - a reader never moves past its end and never backwards;
 *  - every pointer a decoded record gives lies inside the input or the
 *    decompressed records;
 *  - a batch whose records all decode re-encodes (spw_kbatch_*) to a
 *    batch that decodes to the same keys, values, headers, offsets and
 *    timestamps.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/kcodec.h"
#include "core/varint.h"
#include "log/format.h"

#define FAILX(...)                                                                                                     \
    do {                                                                                                               \
        fprintf(stderr, "fuzz_kafka invariant: " __VA_ARGS__);                                                         \
        abort();                                                                                                       \
    } while (0)

static void inside(const void *p, size_t n, const uint8_t *lo, size_t len, const char *what)
{
    if (n == 0)
        return;
    const uint8_t *q = p;
    if (q < lo || q + n > lo + len)
        FAILX("%s outside its buffer\n", what);
}

static void walk_request(const uint8_t *d, size_t n)
{
    spw_kr r;
    spw_kr_init(&r, d, n);
    spw_khdr h;
    spw_khdr_decode(&r, n > 0 && (d[0] & 1), &h);
    if (h.client_id)
        inside(h.client_id, (size_t)h.client_id_len, d, n, "client id");
    for (int i = 0; i < 64 && !r.bad; i++) {
        const uint8_t *before = r.p;
        const char *s;
        const uint8_t *b;
        int32_t l;
        switch (i % 7) {
        case 0: spw_kr_str(&r, &s, &l); if (s) inside(s, (size_t)l, d, n, "string"); break;
        case 1: spw_kr_cstr(&r, &s, &l); if (s) inside(s, (size_t)l, d, n, "compact string"); break;
        case 2: spw_kr_bytes(&r, &b, &l); if (b) inside(b, (size_t)l, d, n, "bytes"); break;
        case 3: {
            int32_t c = spw_kr_array(&r, 4);
            if (!r.bad && c > 0 && (size_t)c * 4 > spw_kr_left(&r))
                FAILX("array count %d beyond the bytes left\n", c);
            break;
        }
        case 4: (void)spw_kr_varint(&r); break;
        case 5: spw_kr_tags(&r); break;
        default: (void)spw_kr_i64(&r);
        }
        if (!r.bad && (r.p < before || r.p > r.end))
            FAILX("reader moved outside its bytes\n");
    }
}

typedef struct rec_copy {
    int64_t ts, off;
    int32_t kl, vl, hc;
    const uint8_t *k, *v, *h;
    size_t hl;
} rec_copy;

static void walk_records(const uint8_t *d, size_t n)
{
    spw_kr batches;
    spw_kr_init(&batches, d, n);
    spw_buf scratch = SPW_BUF_INIT, re = SPW_BUF_INIT, scratch2 = SPW_BUF_INIT;
    for (int nb = 0; nb < 16 && spw_kr_left(&batches) > 0; nb++) {
        spw_kbatch b;
        if (spw_kbatch_next(&batches, &b) != SPW_KB_OK)
            break;
        inside(b.records, b.records_len, d, n, "records section");
        const uint8_t *p;
        size_t pl;
        if (spw_kbatch_plain(&b, &scratch, 1u << 20, &p, &pl) != SPW_KB_OK)
            continue;
        const uint8_t *lo = (b.attributes & SPW_KBATCH_ATTR_COMPRESSION) ? scratch.p : d;
        size_t lolen = (b.attributes & SPW_KBATCH_ATTR_COMPRESSION) ? scratch.len : n;
        spw_kr rr;
        spw_kr_init(&rr, p, pl);
        rec_copy recs[64];
        int nr = 0, ok = 1;
        for (int32_t i = 0; i < b.count && i < 64; i++) {
            spw_krec rec;
            if (spw_krec_next(&rr, &b, &rec)) {
                ok = 0;
                break;
            }
            if (rec.key)
                inside(rec.key, (size_t)rec.key_len, lo, lolen, "key");
            if (rec.value)
                inside(rec.value, (size_t)rec.value_len, lo, lolen, "value");
            inside(rec.headers, rec.headers_len, lo, lolen, "headers");
            recs[nr++] = (rec_copy){.ts = rec.ts, .off = (int64_t)((uint64_t)b.base_offset + (uint64_t)rec.offset_delta), .kl = rec.key_len,
                                    .vl = rec.value_len, .hc = rec.header_count, .k = rec.key, .v = rec.value,
                                    .h = rec.headers, .hl = rec.headers_len};
        }
        if (!ok || nr == 0 || nr != b.count || (b.attributes & SPW_KBATCH_ATTR_LOG_APPEND_TIME))
            continue;
        /* Re-encode (offsets must increase for a fetch batch) and decode. */
        int incr = 1;
        for (int i = 1; i < nr; i++)
            if (recs[i].off <= recs[i - 1].off)
                incr = 0;
        if (!incr)
            continue;
        /* headers re-encoded in the log's form for spw_kbatch_add */
        spw_buf lh[64];
        int enc_ok = 1;
        re.len = 0;
        spw_kbatch_w w;
        spw_kbatch_begin(&re, &w, recs[0].off, recs[0].ts);
        for (int i = 0; i < nr; i++) {
            lh[i] = (spw_buf)SPW_BUF_INIT;
            spw_kr h;
            spw_kr_init(&h, recs[i].h, recs[i].hl);
            for (int32_t j = 0; j < recs[i].hc; j++) {
                const uint8_t *k, *v;
                int32_t kl, vl;
                spw_krec_header(&h, &k, &kl, &v, &vl);
                uint8_t tmp[10];
                size_t t = spw_varint_put(tmp, (uint64_t)kl);
                spw_buf_put(&lh[i], tmp, t);
                spw_buf_put(&lh[i], k, (size_t)kl);
                t = spw_varint_put(tmp, (uint64_t)(vl < 0 ? 0 : vl));
                spw_buf_put(&lh[i], tmp, t);
                if (vl > 0)
                    spw_buf_put(&lh[i], v, (size_t)vl);
            }
            if (spw_kbatch_add(&re, &w, recs[i].off, recs[i].ts, recs[i].k, recs[i].kl, recs[i].v,
                               recs[i].vl < 0 ? 0 : recs[i].vl, lh[i].p, lh[i].len, (uint32_t)recs[i].hc))
                enc_ok = 0;
        }
        spw_kbatch_end(&re, &w);
        if (enc_ok) {
            spw_kr r2;
            spw_kr_init(&r2, re.p, re.len);
            spw_kbatch b2;
            if (spw_kbatch_next(&r2, &b2) != SPW_KB_OK || b2.count != nr)
                FAILX("a re-encoded batch does not decode\n");
            const uint8_t *p2;
            size_t pl2;
            if (spw_kbatch_plain(&b2, &scratch2, 1u << 20, &p2, &pl2) != SPW_KB_OK)
                FAILX("a re-encoded batch's records\n");
            spw_kr rr2;
            spw_kr_init(&rr2, p2, pl2);
            for (int i = 0; i < nr; i++) {
                spw_krec x;
                if (spw_krec_next(&rr2, &b2, &x))
                    FAILX("re-encoded record %d does not decode\n", i);
                if (x.ts != recs[i].ts || (int64_t)((uint64_t)b2.base_offset + (uint64_t)x.offset_delta) != recs[i].off || x.key_len != recs[i].kl ||
                    (x.key_len > 0 && memcmp(x.key, recs[i].k, (size_t)x.key_len)) ||
                    x.value_len != (recs[i].vl < 0 ? 0 : recs[i].vl) ||
                    (x.value_len > 0 && memcmp(x.value, recs[i].v, (size_t)x.value_len)) ||
                    x.header_count != recs[i].hc)
                    FAILX("re-encoded record %d differs\n", i);
            }
        }
        for (int i = 0; i < nr; i++)
            spw_buf_fini(&lh[i]);
    }
    spw_buf_fini(&scratch);
    spw_buf_fini(&scratch2);
    spw_buf_fini(&re);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1;
    uint8_t *d = malloc(n ? n : 1);
    memcpy(d, data + 1, n);
    if (data[0] & 1)
        walk_records(d, n);
    else
        walk_request(d, n);
    free(d);
    return 0;
}
