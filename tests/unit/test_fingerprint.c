/*
 * The dedupe fingerprint of a record (svc/produce.h spw_produce_fingerprint):
 * what it covers is part of what the log's dedupe entries mean (a retry
 * is compared with the stored request by it), so its bytes are pinned
 * here against a plain CRC32C over the sequence the definition names:
 * (key length, value length, header count) as three little-endian 32-bit
 * words, the key, the value, then each header's (key length, value
 * length, 0), key, value. A keyless record's key length is -1
 * (0xffffffff) and adds no key bytes.
 */
#include "core/crc32c.h"
#include "svc/produce.h"
#include "test.h"

static size_t put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 4;
}

/* The definition, spelled out: the bytes into buf, then one CRC. */
static uint32_t reference(uint32_t crc, const spw_record *r)
{
    static uint8_t buf[8192];
    size_t n = 0;
    n += put_le32(buf + n, (uint32_t)r->key_len);
    n += put_le32(buf + n, r->value_len);
    n += put_le32(buf + n, r->header_count);
    if (r->key_len > 0) {
        memcpy(buf + n, r->key, (size_t)r->key_len);
        n += (size_t)r->key_len;
    }
    memcpy(buf + n, r->value, r->value_len);
    n += r->value_len;
    for (uint32_t i = 0; i < r->header_count; i++) {
        const spw_kv *h = &r->headers[i];
        n += put_le32(buf + n, h->key_len);
        n += put_le32(buf + n, h->value_len);
        n += put_le32(buf + n, 0);
        memcpy(buf + n, h->key, h->key_len);
        n += h->key_len;
        memcpy(buf + n, h->value, h->value_len);
        n += h->value_len;
    }
    return spw__crc32c_sw(crc, buf, n);
}

int main(void)
{
    static char val[400];
    for (size_t i = 0; i < sizeof val; i++)
        val[i] = (char)('a' + (i * 7) % 26);
    spw_kv hdrs[2] = {{.key = "content-type", .key_len = 12, .value = "application/json", .value_len = 16},
                      {.key = "", .key_len = 0, .value = "x", .value_len = 1}};
    /* Fixed value: one record without headers, from 0 (a change of the
     * definition changes it; the reference alone would follow along). */
    spw_record one = {.key = "key-00000000123", .key_len = 15, .value = "{\"v\":1}", .value_len = 7};
    CHECK_EQ(spw_produce_fingerprint(0, &one), reference(0, &one));
    CHECK_EQ(spw_produce_fingerprint(0, &one), 0xa1792377u);
    /* Every key length 0..40 (and none), value lengths across the CRC's
     * 32/8/4/2/1-byte steps, with and without headers, chained as a
     * request's records are. */
    uint32_t fp = 0, want = 0;
    int n = 0;
    for (int kl = -1; kl <= 40; kl++)
        for (uint32_t vl = 0; vl <= 130; vl += (vl < 40 ? 1 : 13)) {
            uint32_t nh = (uint32_t)((kl + 1 + (int)vl) % 3); /* 0, 1 or 2 headers */
            spw_record r = {.key = kl < 0 ? NULL : val + 100, .key_len = kl, .value = val + (vl % 5), .value_len = vl,
                            .ts = 12345, .headers = nh ? hdrs : NULL, .header_count = nh};
            fp = spw_produce_fingerprint(fp, &r);
            want = reference(want, &r);
            CHECK_EQ(fp, want);
            n++;
        }
    CHECK(n > 1000);
    /* The timestamp is not covered. */
    spw_record a = one, b = one;
    a.ts = 1;
    b.ts = 2;
    CHECK_EQ(spw_produce_fingerprint(7, &a), spw_produce_fingerprint(7, &b));
    puts("test_fingerprint: ok");
    return 0;
}
