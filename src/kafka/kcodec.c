/*
 * The Kafka wire codec: see kcodec.h and docs/protocol-kafka.md ("Byte
 * layout"). Integers are big-endian; varints are Kafka's (unsigned LEB128,
 * signed ones zig-zag encoded first). A record batch (magic 2) is
 *
 *    0 i64 base_offset      8 i32 length (bytes after this field)
 *   12 i32 leader_epoch    16 i8  magic (2)      17 u32 crc (CRC32C of 21..)
 *   21 i16 attributes      23 i32 last_offset_delta
 *   27 i64 base_ts         35 i64 max_ts         43 i64 producer_id
 *   51 i16 producer_epoch  53 i32 base_sequence  57 i32 record count
 *   61 records (compressed as a whole when attributes bits 0-2 say so)
 *
 * and a record is varint length, i8 attributes, varlong ts delta, varint
 * offset delta, varint key length (-1 null) and key, varint value length
 * and value, varint header count, then per header a varint key length and
 * key, a varint value length (-1 null) and value.
 */
#include "kafka/kcodec.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "core/crc32c.h"
#include "core/error.h"
#include "log/format.h"

/* ---- reading ---- */

static int need(spw_kr *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int8_t spw_kr_i8(spw_kr *r)
{
    if (!need(r, 1))
        return 0;
    return (int8_t)*r->p++;
}

int16_t spw_kr_i16(spw_kr *r)
{
    if (!need(r, 2))
        return 0;
    int16_t v = (int16_t)(uint16_t)be(r->p, 2);
    r->p += 2;
    return v;
}

int32_t spw_kr_i32(spw_kr *r)
{
    if (!need(r, 4))
        return 0;
    int32_t v = (int32_t)(uint32_t)be(r->p, 4);
    r->p += 4;
    return v;
}

int64_t spw_kr_i64(spw_kr *r)
{
    if (!need(r, 8))
        return 0;
    int64_t v = (int64_t)be(r->p, 8);
    r->p += 8;
    return v;
}

uint64_t spw_kr_uvarint(spw_kr *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (!need(r, 1))
            return 0;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->bad = 1; /* more than 10 bytes */
    return 0;
}

int64_t spw_kr_varint(spw_kr *r)
{
    uint64_t u = spw_kr_uvarint(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* len bytes (or -1: null) at r. */
static void take(spw_kr *r, int64_t len, const uint8_t **p, int32_t *out_len)
{
    *p = NULL;
    *out_len = -1;
    if (r->bad)
        return;
    if (len < -1 || len > INT32_MAX) {
        r->bad = 1;
        return;
    }
    if (len == -1)
        return;
    if (!need(r, (size_t)len))
        return;
    *p = r->p;
    *out_len = (int32_t)len;
    r->p += len;
}

void spw_kr_str(spw_kr *r, const char **s, int32_t *len)
{
    int16_t l = spw_kr_i16(r);
    take(r, l, (const uint8_t **)s, len);
}

void spw_kr_cstr(spw_kr *r, const char **s, int32_t *len)
{
    uint64_t l = spw_kr_uvarint(r);
    take(r, l > (uint64_t)INT32_MAX ? INT64_MAX : (int64_t)l - 1, (const uint8_t **)s, len);
}

void spw_kr_bytes(spw_kr *r, const uint8_t **b, int32_t *len)
{
    int32_t l = spw_kr_i32(r);
    take(r, l, b, len);
}

static int32_t count_ok(spw_kr *r, int64_t n, size_t min_elem)
{
    if (r->bad)
        return 0;
    if (n < -1 || n > INT32_MAX || (n > 0 && (uint64_t)n * (min_elem ? min_elem : 1) > spw_kr_left(r))) {
        r->bad = 1;
        return 0;
    }
    return (int32_t)n;
}

int32_t spw_kr_array(spw_kr *r, size_t min_elem) { return count_ok(r, spw_kr_i32(r), min_elem); }

int32_t spw_kr_carray(spw_kr *r, size_t min_elem)
{
    uint64_t n = spw_kr_uvarint(r);
    return count_ok(r, n > (uint64_t)INT32_MAX ? INT64_MAX : (int64_t)n - 1, min_elem);
}

void spw_kr_skip(spw_kr *r, size_t n)
{
    if (need(r, n))
        r->p += n;
}

void spw_kr_tags(spw_kr *r)
{
    uint64_t n = spw_kr_uvarint(r);
    for (uint64_t i = 0; i < n && !r->bad; i++) {
        (void)spw_kr_uvarint(r); /* tag */
        uint64_t sz = spw_kr_uvarint(r);
        if (sz > spw_kr_left(r))
            r->bad = 1;
        else
            r->p += sz;
    }
}

/* ---- writing ---- */

static int put_be(spw_buf *b, uint64_t v, int n)
{
    if (spw_buf_reserve(b, b->len + (size_t)n))
        return SPW_ENOMEM;
    for (int i = n - 1; i >= 0; i--) {
        b->p[b->len + (size_t)i] = (uint8_t)v;
        v >>= 8;
    }
    b->len += (size_t)n;
    return 0;
}

int spw_kw_i8(spw_buf *b, int8_t v) { return put_be(b, (uint8_t)v, 1); }
int spw_kw_i16(spw_buf *b, int16_t v) { return put_be(b, (uint16_t)v, 2); }
int spw_kw_i32(spw_buf *b, int32_t v) { return put_be(b, (uint32_t)v, 4); }
int spw_kw_i64(spw_buf *b, int64_t v) { return put_be(b, (uint64_t)v, 8); }

int spw_kw_uvarint(spw_buf *b, uint64_t v)
{
    if (spw_buf_reserve(b, b->len + 10))
        return SPW_ENOMEM;
    do {
        uint8_t x = v & 0x7f;
        v >>= 7;
        b->p[b->len++] = x | (v ? 0x80 : 0);
    } while (v);
    return 0;
}

int spw_kw_varint(spw_buf *b, int64_t v) { return spw_kw_uvarint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63)); }

int spw_kw_str(spw_buf *b, const char *s, int32_t len)
{
    if (len > INT16_MAX)
        len = INT16_MAX;
    if (spw_kw_i16(b, (int16_t)(len < 0 ? -1 : len)))
        return SPW_ENOMEM;
    return len > 0 ? spw_buf_put(b, s, (size_t)len) : 0;
}

int spw_kw_cstr(spw_buf *b, const char *s, int32_t len)
{
    if (spw_kw_uvarint(b, len < 0 ? 0 : (uint64_t)len + 1))
        return SPW_ENOMEM;
    return len > 0 ? spw_buf_put(b, s, (size_t)len) : 0;
}

int spw_kw_bytes(spw_buf *b, const void *p, int32_t len)
{
    if (spw_kw_i32(b, len < 0 ? -1 : len))
        return SPW_ENOMEM;
    return len > 0 ? spw_buf_put(b, p, (size_t)len) : 0;
}

void spw_kw_set_i32(spw_buf *b, size_t at, int32_t v)
{
    uint32_t u = (uint32_t)v;
    for (int i = 3; i >= 0; i--) {
        b->p[at + (size_t)i] = (uint8_t)u;
        u >>= 8;
    }
}

/* ---- the request header ---- */

int spw_khdr_decode(spw_kr *r, int flexible, spw_khdr *h)
{
    memset(h, 0, sizeof *h);
    h->api_key = spw_kr_i16(r);
    h->api_version = spw_kr_i16(r);
    h->correlation_id = spw_kr_i32(r);
    spw_kr_str(r, &h->client_id, &h->client_id_len);
    if (flexible)
        spw_kr_tags(r);
    return r->bad ? -1 : 0;
}

/* ---- record batches ---- */

int spw_kbatch_next(spw_kr *r, spw_kbatch *b)
{
    memset(b, 0, sizeof *b);
    if (spw_kr_left(r) < SPW_KBATCH_HEADER_LEN)
        return SPW_KB_CORRUPT;
    const uint8_t *start = r->p;
    b->base_offset = spw_kr_i64(r);
    b->length = spw_kr_i32(r);
    if (b->length < SPW_KBATCH_HEADER_LEN - 12 || (size_t)b->length > spw_kr_left(r))
        return SPW_KB_CORRUPT;
    b->leader_epoch = spw_kr_i32(r);
    b->magic = spw_kr_i8(r);
    if (b->magic != 2)
        return SPW_KB_CORRUPT;
    b->crc = (uint32_t)spw_kr_i32(r);
    const uint8_t *crc_from = r->p;
    const uint8_t *end = start + 12 + b->length;
    if (spw_crc32c(crc_from, (size_t)(end - crc_from)) != b->crc)
        return SPW_KB_CORRUPT;
    b->attributes = spw_kr_i16(r);
    b->last_offset_delta = spw_kr_i32(r);
    b->base_ts = spw_kr_i64(r);
    b->max_ts = spw_kr_i64(r);
    b->producer_id = spw_kr_i64(r);
    b->producer_epoch = spw_kr_i16(r);
    b->base_sequence = spw_kr_i32(r);
    b->count = spw_kr_i32(r);
    if (r->bad || b->count < 0)
        return SPW_KB_CORRUPT;
    b->records = r->p;
    b->records_len = (size_t)(end - r->p);
    r->p = end;
    return SPW_KB_OK;
}

/* The decompressors below append to out, cap bytes at most in all: room
 * for the next step, growing out by doubling (from 64 KiB, never past
 * cap). SPW_KB_OK with *room > 0, SPW_KB_TOO_LARGE when out holds cap
 * bytes, or SPW_KB_NOMEM. */
static int out_room(spw_buf *out, size_t cap, size_t *room)
{
    if (out->len == out->cap) {
        if (out->len >= cap)
            return SPW_KB_TOO_LARGE;
        size_t want = out->cap ? out->cap * 2 : 64 * 1024;
        if (want > cap)
            want = cap;
        if (spw_buf_reserve(out, want))
            return SPW_KB_NOMEM;
    }
    size_t end = out->cap < cap ? out->cap : cap;
    if (out->len >= end)
        return SPW_KB_TOO_LARGE;
    *room = end - out->len;
    return SPW_KB_OK;
}

/* Appends up to cap bytes of inflated gzip/zlib data. */
static int inflate_gzip(const uint8_t *in, size_t n, spw_buf *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK) /* gzip or zlib header, detected */
        return SPW_KB_NOMEM;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    int rc = SPW_KB_CORRUPT;
    for (;;) {
        size_t room;
        if ((rc = out_room(out, cap, &room)) != SPW_KB_OK)
            break;
        rc = SPW_KB_CORRUPT;
        z.next_out = out->p + out->len;
        z.avail_out = (uInt)room;
        int e = inflate(&z, Z_NO_FLUSH);
        out->len += room - z.avail_out;
        if (e == Z_STREAM_END) {
            rc = z.avail_in == 0 ? SPW_KB_OK : SPW_KB_CORRUPT;
            break;
        }
        if (e != Z_OK && e != Z_BUF_ERROR)
            break;
        if (e == Z_BUF_ERROR && z.avail_in == 0)
            break; /* truncated */
    }
    inflateEnd(&z);
    return rc;
}

static int lz4_frame(const uint8_t *in, size_t n, spw_buf *out, size_t cap)
{
    LZ4F_dctx *d;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
        return SPW_KB_NOMEM;
    int rc = SPW_KB_CORRUPT;
    size_t off = 0;
    for (;;) {
        size_t dst, src = n - off;
        if ((rc = out_room(out, cap, &dst)) != SPW_KB_OK)
            break;
        rc = SPW_KB_CORRUPT;
        size_t hint = LZ4F_decompress(d, out->p + out->len, &dst, in + off, &src, NULL);
        if (LZ4F_isError(hint))
            break;
        out->len += dst;
        off += src;
        if (hint == 0) { /* frame complete */
            rc = off == n ? SPW_KB_OK : SPW_KB_CORRUPT;
            break;
        }
        if (off == n && dst == 0)
            break; /* truncated */
    }
    LZ4F_freeDecompressionContext(d);
    return rc;
}

static int zstd_frames(const uint8_t *in, size_t n, spw_buf *out, size_t cap)
{
    ZSTD_DStream *d = ZSTD_createDStream();
    if (!d)
        return SPW_KB_NOMEM;
    ZSTD_initDStream(d);
    ZSTD_inBuffer ib = {in, n, 0};
    int rc = SPW_KB_CORRUPT;
    size_t last = 1;
    for (;;) {
        size_t room;
        if ((rc = out_room(out, cap, &room)) != SPW_KB_OK)
            break;
        rc = SPW_KB_CORRUPT;
        ZSTD_outBuffer ob = {out->p + out->len, room, 0};
        last = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(last))
            break;
        out->len += ob.pos;
        if (ib.pos == ib.size && last == 0) {
            rc = SPW_KB_OK;
            break;
        }
        if (ib.pos == ib.size && ob.pos < ob.size)
            break; /* truncated */
    }
    ZSTD_freeDStream(d);
    return rc;
}

/* One raw snappy block appended to out. */
static int snappy_block(const uint8_t *in, size_t n, spw_buf *out, size_t cap)
{
    size_t len;
    if (snappy_uncompressed_length((const char *)in, n, &len) != SNAPPY_OK)
        return SPW_KB_CORRUPT;
    if (len > cap - out->len)
        return SPW_KB_TOO_LARGE;
    if (spw_buf_reserve(out, out->len + len + 1))
        return SPW_KB_NOMEM;
    if (snappy_uncompress((const char *)in, n, (char *)out->p + out->len, &len) != SNAPPY_OK)
        return SPW_KB_CORRUPT;
    out->len += len;
    return SPW_KB_OK;
}

/* Raw snappy, or the framing Java clients use (magic 0x82 "SNAPPY" 0,
 * two int32 versions, then blocks of an int32 length and a raw block). */
static int snappy_any(const uint8_t *in, size_t n, spw_buf *out, size_t cap)
{
    static const uint8_t magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
    if (n < 16 || memcmp(in, magic, 8) != 0)
        return snappy_block(in, n, out, cap);
    size_t off = 16;
    while (off < n) {
        if (n - off < 4)
            return SPW_KB_CORRUPT;
        size_t bl = (size_t)be(in + off, 4);
        off += 4;
        if (bl > n - off)
            return SPW_KB_CORRUPT;
        int e = snappy_block(in + off, bl, out, cap);
        if (e)
            return e;
        off += bl;
    }
    return SPW_KB_OK;
}

int spw_kbatch_plain(const spw_kbatch *b, spw_buf *scratch, size_t max_bytes, const uint8_t **p, size_t *n)
{
    int comp = b->attributes & SPW_KBATCH_ATTR_COMPRESSION;
    if (comp == SPW_KCOMP_NONE) {
        *p = b->records;
        *n = b->records_len;
        return SPW_KB_OK;
    }
    scratch->len = 0;
    int e;
    switch (comp) {
    case SPW_KCOMP_GZIP: e = inflate_gzip(b->records, b->records_len, scratch, max_bytes); break;
    case SPW_KCOMP_SNAPPY: e = snappy_any(b->records, b->records_len, scratch, max_bytes); break;
    case SPW_KCOMP_LZ4: e = lz4_frame(b->records, b->records_len, scratch, max_bytes); break;
    case SPW_KCOMP_ZSTD: e = zstd_frames(b->records, b->records_len, scratch, max_bytes); break;
    default: return SPW_KB_COMPRESSION;
    }
    if (e)
        return e;
    *p = scratch->p;
    *n = scratch->len;
    return SPW_KB_OK;
}

int spw_krec_next(spw_kr *r, const spw_kbatch *b, spw_krec *rec)
{
    memset(rec, 0, sizeof *rec);
    int64_t len = spw_kr_varint(r);
    if (r->bad || len < 1 || (uint64_t)len > spw_kr_left(r))
        return -1;
    spw_kr one;
    spw_kr_init(&one, r->p, (size_t)len);
    r->p += len;
    rec->attributes = spw_kr_i8(&one);
    int64_t tsd = spw_kr_varint(&one);
    int64_t od = spw_kr_varint(&one);
    if (od < 0 || od > INT32_MAX)
        return -1;
    rec->offset_delta = (int32_t)od;
    rec->ts = (b->attributes & SPW_KBATCH_ATTR_LOG_APPEND_TIME) ? b->max_ts
                                                                : (int64_t)((uint64_t)b->base_ts + (uint64_t)tsd);
    take(&one, spw_kr_varint(&one), &rec->key, &rec->key_len);
    take(&one, spw_kr_varint(&one), &rec->value, &rec->value_len);
    int64_t hc = spw_kr_varint(&one);
    if (one.bad || hc < 0 || (uint64_t)hc > spw_kr_left(&one))
        return -1;
    rec->header_count = (int32_t)hc;
    rec->headers = one.p;
    rec->headers_len = spw_kr_left(&one);
    /* The headers must parse and use the record exactly. */
    spw_kr h;
    spw_kr_init(&h, rec->headers, rec->headers_len);
    for (int32_t i = 0; i < rec->header_count; i++) {
        const uint8_t *k, *v;
        int32_t kl, vl;
        if (spw_krec_header(&h, &k, &kl, &v, &vl))
            return -1;
    }
    return h.bad || spw_kr_left(&h) != 0 ? -1 : 0;
}

int spw_krec_header(spw_kr *r, const uint8_t **k, int32_t *kl, const uint8_t **v, int32_t *vl)
{
    take(r, spw_kr_varint(r), k, kl);
    if (!r->bad && *kl < 0)
        r->bad = 1; /* a header key is never null */
    take(r, spw_kr_varint(r), v, vl);
    return r->bad ? -1 : 0;
}

/* ---- encoding batches ---- */

int spw_kbatch_begin(spw_buf *b, spw_kbatch_w *w, int64_t base_offset, int64_t base_ts)
{
    memset(w, 0, sizeof *w);
    w->start = b->len;
    w->base_offset = base_offset;
    w->last_offset = base_offset;
    w->base_ts = base_ts;
    w->max_ts = base_ts;
    if (spw_buf_reserve(b, b->len + SPW_KBATCH_HEADER_LEN))
        return SPW_ENOMEM;
    memset(b->p + b->len, 0, SPW_KBATCH_HEADER_LEN);
    b->len += SPW_KBATCH_HEADER_LEN;
    return 0;
}

static inline uint64_t zz(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline size_t uvlen(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}
static inline size_t vlen(int64_t v) { return uvlen(zz(v)); }
/* A zig-zag varint at p (room checked by the caller); the byte after it. */
static inline uint8_t *put_varint(uint8_t *p, int64_t v)
{
    uint64_t u = zz(v);
    while (u >= 0x80) {
        *p++ = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    *p++ = (uint8_t)u;
    return p;
}

/* A record is written straight into the buffer after one reserve, each
 * field at a pointer; its length, a varint in front of it, is given two
 * bytes (a body under 8192 bytes) and filled in after, moved when it
 * takes another size. Fetch answers are made of this
 * (docs/protocol-kafka.md "Fetch"), once per record delivered. */
int spw_kbatch_add(spw_buf *b, spw_kbatch_w *w, int64_t offset, int64_t ts, const uint8_t *key, int32_t key_len,
                   const uint8_t *value, int32_t value_len, const uint8_t *log_headers, size_t headers_len,
                   uint32_t header_count)
{
    /* modulo 2^64, as the decoder adds them back */
    int64_t tsd = (int64_t)((uint64_t)ts - (uint64_t)w->base_ts), od = (int64_t)((uint64_t)offset - (uint64_t)w->base_offset);
    size_t kl = key_len > 0 ? (size_t)key_len : 0, vl = value_len > 0 ? (size_t)value_len : 0;
    /* At most: the length, attributes, four varints, key, value, and the
     * headers (each as long as in the log but for its two varints, which
     * take at most one byte more each in zig-zag form). */
    size_t most = 5 + 1 + 10 + 5 + 5 + kl + 5 + vl + 5 + headers_len + 2 * (size_t)header_count;
    if (spw_buf_reserve(b, b->len + most))
        return SPW_ENOMEM;
    uint8_t *start = b->p + b->len, *p = start + 2;
    *p++ = 0; /* attributes */
    p = put_varint(p, tsd);
    p = put_varint(p, od);
    p = put_varint(p, key_len);
    if (kl) {
        memcpy(p, key, kl);
        p += kl;
    }
    p = put_varint(p, value_len);
    if (vl) {
        memcpy(p, value, vl);
        p += vl;
    }
    p = put_varint(p, header_count);
    const uint8_t *hp = log_headers, *he = log_headers ? log_headers + headers_len : NULL;
    for (uint32_t i = 0; i < header_count; i++) {
        spw_kv kv;
        if (spw_kv_next(&hp, he, &kv) != 1)
            return SPW_ECORRUPT; /* nothing written: b->len is unchanged */
        p = put_varint(p, kv.key_len);
        memcpy(p, kv.key, kv.key_len);
        p += kv.key_len;
        p = put_varint(p, kv.value_len);
        memcpy(p, kv.value, kv.value_len);
        p += kv.value_len;
    }
    size_t body = (size_t)(p - start) - 2, ll = vlen((int64_t)body);
    if (ll != 2) {
        memmove(start + ll, start + 2, body);
        p = start + ll + body;
    }
    put_varint(start, (int64_t)body);
    b->len = (size_t)(p - b->p);
    if (ts > w->max_ts)
        w->max_ts = ts;
    w->last_offset = offset;
    w->count++;
    return 0;
}

void spw_kbatch_end(spw_buf *b, spw_kbatch_w *w)
{
    uint8_t *h = b->p + w->start;
    size_t total = b->len - w->start;
    spw_buf t = {.p = h, .len = 0, .cap = SPW_KBATCH_HEADER_LEN};
    spw_kw_i64(&t, w->base_offset);
    spw_kw_i32(&t, (int32_t)(total - 12));
    spw_kw_i32(&t, 0);  /* leader epoch */
    spw_kw_i8(&t, 2);   /* magic */
    spw_kw_i32(&t, 0);  /* crc, below */
    spw_kw_i16(&t, 0);  /* attributes: no compression, create time */
    spw_kw_i32(&t, (int32_t)(w->last_offset - w->base_offset));
    spw_kw_i64(&t, w->base_ts);
    spw_kw_i64(&t, w->max_ts);
    spw_kw_i64(&t, -1); /* producer id */
    spw_kw_i16(&t, -1); /* producer epoch */
    spw_kw_i32(&t, -1); /* base sequence */
    spw_kw_i32(&t, w->count);
    uint32_t crc = spw_crc32c(h + 21, total - 21);
    t.len = 17;
    spw_kw_i32(&t, (int32_t)crc);
}
