/*
 * The Kafka wire codec (docs/protocol-kafka.md): the primitive types of
 * the Kafka protocol (big-endian integers, zig-zag varints, strings and
 * byte arrays with int16/int32 or compact lengths, arrays, tagged
 * fields), the request header, and record batches (magic 2): decoded
 * from a Produce request's records field, decompressed (gzip, snappy,
 * lz4, zstd), and encoded for Fetch answers. It knows bytes, not
 * requests: the listener (kafka/kafka.c) and its handlers use it, and the
 * fuzz target feeds it directly.
 *
 * Reading never reads outside its buffer: a reader (spw_kr) keeps a
 * "bad" flag that the first short or malformed field sets, after which
 * every read returns zero values; the caller checks bad once at the end
 * of a structure. Lengths and counts are checked against the bytes that
 * remain before anything is allocated from them.
 */
#ifndef SPW_KAFKA_KCODEC_H
#define SPW_KAFKA_KCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* ---- reading ---- */

typedef struct spw_kr {
    const uint8_t *p, *end;
    int bad; /* a read ran past the end or met a malformed field */
} spw_kr;

static inline void spw_kr_init(spw_kr *r, const uint8_t *p, size_t n)
{
    r->p = p;
    r->end = p + n;
    r->bad = 0;
}
static inline size_t spw_kr_left(const spw_kr *r) { return r->bad ? 0 : (size_t)(r->end - r->p); }

int8_t spw_kr_i8(spw_kr *r);
int16_t spw_kr_i16(spw_kr *r);
int32_t spw_kr_i32(spw_kr *r);
int64_t spw_kr_i64(spw_kr *r);
uint64_t spw_kr_uvarint(spw_kr *r);
int64_t spw_kr_varint(spw_kr *r); /* zig-zag */
/* A STRING (int16 length; -1 null: *s NULL, *len -1). */
void spw_kr_str(spw_kr *r, const char **s, int32_t *len);
/* A COMPACT_STRING (uvarint length + 1; 0 null). */
void spw_kr_cstr(spw_kr *r, const char **s, int32_t *len);
/* BYTES (int32 length; -1 null). */
void spw_kr_bytes(spw_kr *r, const uint8_t **b, int32_t *len);
/* An ARRAY's count (int32; -1 null), each element at least min_elem
 * bytes: a count the remaining bytes cannot hold sets bad. */
int32_t spw_kr_array(spw_kr *r, size_t min_elem);
/* A COMPACT_ARRAY's count (uvarint count + 1; -1 null). */
int32_t spw_kr_carray(spw_kr *r, size_t min_elem);
/* Skips a tagged-field section (uvarint count, then tag, size, bytes). */
void spw_kr_tags(spw_kr *r);
void spw_kr_skip(spw_kr *r, size_t n);

/* ---- writing (appends to a buffer; 0 or SPW_ENOMEM) ---- */

int spw_kw_i8(spw_buf *b, int8_t v);
int spw_kw_i16(spw_buf *b, int16_t v);
int spw_kw_i32(spw_buf *b, int32_t v);
int spw_kw_i64(spw_buf *b, int64_t v);
int spw_kw_uvarint(spw_buf *b, uint64_t v);
int spw_kw_varint(spw_buf *b, int64_t v); /* zig-zag */
int spw_kw_str(spw_buf *b, const char *s, int32_t len); /* len -1: null */
int spw_kw_cstr(spw_buf *b, const char *s, int32_t len);
int spw_kw_bytes(spw_buf *b, const void *p, int32_t len);
/* Overwrites the big-endian int32 at byte at of b. */
void spw_kw_set_i32(spw_buf *b, size_t at, int32_t v);

/* ---- the request header ---- */

typedef struct spw_khdr {
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    const char *client_id; /* not terminated; NULL: null */
    int32_t client_id_len;
} spw_khdr;

/* Decodes the header at the start of a request body (the bytes after the
 * size); flexible: the request version is a flexible one (header v2:
 * tagged fields follow the client id). 0, or -1 when it does not decode
 * (the correlation id is set whenever the first 8 bytes were there). */
int spw_khdr_decode(spw_kr *r, int flexible, spw_khdr *h);

/* ---- record batches (magic 2) ---- */

enum {
    SPW_KCOMP_NONE = 0,
    SPW_KCOMP_GZIP = 1,
    SPW_KCOMP_SNAPPY = 2,
    SPW_KCOMP_LZ4 = 3,
    SPW_KCOMP_ZSTD = 4,
};
#define SPW_KBATCH_HEADER_LEN 61
#define SPW_KBATCH_ATTR_COMPRESSION 0x07
#define SPW_KBATCH_ATTR_LOG_APPEND_TIME 0x08
#define SPW_KBATCH_ATTR_TRANSACTIONAL 0x10
#define SPW_KBATCH_ATTR_CONTROL 0x20

typedef struct spw_kbatch {
    int64_t base_offset;
    int32_t length; /* bytes after the length field */
    int32_t leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_ts, max_ts;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t count;
    const uint8_t *records; /* the records section as sent (compressed or not) */
    size_t records_len;
} spw_kbatch;

/* Error classes of a batch that does not decode (the handler maps them
 * to Kafka error codes). */
enum {
    SPW_KB_OK = 0,
    SPW_KB_CORRUPT = -1,     /* framing, magic, CRC, records that do not parse */
    SPW_KB_COMPRESSION = -2, /* a codec this build does not have */
    SPW_KB_TOO_LARGE = -3,   /* decompressed past the limit */
    SPW_KB_NOMEM = -4,
};

/* Cuts the next batch from r (a Produce records field may hold several):
 * header, CRC32C over attributes to the end, magic 2. SPW_KB_OK with *b,
 * or SPW_KB_CORRUPT. */
int spw_kbatch_next(spw_kr *r, spw_kbatch *b);

/* One record of a batch. */
typedef struct spw_krec {
    int8_t attributes;
    int64_t ts; /* base_ts + delta (max_ts for LogAppendTime batches is the broker's) */
    int32_t offset_delta;
    const uint8_t *key;
    int32_t key_len; /* -1 null */
    const uint8_t *value;
    int32_t value_len; /* -1 null */
    int32_t header_count;
    const uint8_t *headers; /* header_count headers as sent: read with spw_krec_header */
    size_t headers_len;
} spw_krec;

/* The records section of b, decompressed into scratch when compressed
 * (at most max_bytes): *p, *n the plain records. SPW_KB_*. */
int spw_kbatch_plain(const spw_kbatch *b, spw_buf *scratch, size_t max_bytes, const uint8_t **p, size_t *n);
/* The next record from r (over the plain records): 0, or -1 malformed. */
int spw_krec_next(spw_kr *r, const spw_kbatch *b, spw_krec *rec);
/* The next header of a record from r (over rec->headers): 0 or -1. */
int spw_krec_header(spw_kr *r, const uint8_t **k, int32_t *kl, const uint8_t **v, int32_t *vl);

/* Encoding a batch for Fetch: begin, add records in offset order, end. */
typedef struct spw_kbatch_w {
    size_t start;     /* where the batch begins in the buffer */
    int64_t base_offset, last_offset;
    int64_t base_ts, max_ts;
    int32_t count;
} spw_kbatch_w;
int spw_kbatch_begin(spw_buf *b, spw_kbatch_w *w, int64_t base_offset, int64_t base_ts);
/* headers: encoded as in the log (docs/formats/log.md); written as Kafka
 * headers with header_count entries. */
int spw_kbatch_add(spw_buf *b, spw_kbatch_w *w, int64_t offset, int64_t ts, const uint8_t *key, int32_t key_len,
                   const uint8_t *value, int32_t value_len, const uint8_t *log_headers, size_t headers_len,
                   uint32_t header_count);
/* Fills the header's lengths, counts, timestamps and CRC. */
void spw_kbatch_end(spw_buf *b, spw_kbatch_w *w);

#endif
