/*
 * The record batch: the unit of append, of the on-disk segment files, of
 * replication and of reads. Byte-by-byte definition: docs/formats/log.md.
 * Keep this header and that document in step.
 *
 * Layout (little-endian):
 *   0  u64 base_offset    offset of the first record (NOT covered by the CRC,
 *                         so a batch can be encoded and checksummed before the
 *                         partition assigns its offset; it is checked instead
 *                         by continuity with the previous batch)
 *   8  u32 length         whole batch, header included
 *  12  u32 crc            CRC32C of bytes [16, length)
 *  16  u32 magic          "SPWB"
 *  20  u8  version        1
 *  21  u8  attributes     bits 0-1 compression (0 none, 1 lz4, 2 zstd);
 *                         bit 2 versioned: each record carries a version
 *  22  u16 header_len     80
 *  24  u32 record_count   >= 1
 *  28  u32 records_len    size of the records section before compression
 *  32  i64 first_ts       ms since Unix epoch; record ts are deltas from it
 *  40  i64 max_ts
 *  48  u64 base_id        Snowflake id of the first record; ids are deltas
 *  56  u64 producer_id    0 = none (idempotent producer, binary protocol)
 *  64  u32 producer_seq   sequence number of the request's first record
 *  68  u32 request_count  records in the whole request (all partitions)
 *                         when producer_id or idem_hash is set, else 0
 *  72  u64 idem_hash      hash of the request's Idempotency-Key, 0 = none
 *  80  records section (compressed whole if attributes say so)
 */
#ifndef SPW_FORMAT_H
#define SPW_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/id.h"

#define SPW_BATCH_MAGIC 0x42575053u /* bytes 'S' 'P' 'W' 'B' */
#define SPW_BATCH_VERSION 1
#define SPW_BATCH_HEADER_LEN 80
#define SPW_BATCH_CRC_START 16
#define SPW_BATCH_MAX_LEN (256u << 20)
#define SPW_BATCH_MAX_RECORDS (1u << 24)

enum { SPW_COMPRESS_NONE = 0, SPW_COMPRESS_LZ4 = 1, SPW_COMPRESS_ZSTD = 2 };
#define SPW_BATCH_ATTR_COMPRESSION 0x03u
/* Records carry a `version` varint after id_delta (versioned streams,
 * docs/formats/log.md "Versions"); 0 = that record has none. */
#define SPW_BATCH_ATTR_VERSIONED 0x04u
#define SPW_BATCH_ATTR_KNOWN 0x07u
/* The largest version a record may carry: 2^53 - 1, exact in a JSON number. */
#define SPW_VERSION_MAX ((1ull << 53) - 1)

typedef struct spw_batch_hdr {
    uint64_t base_offset;
    uint32_t length;
    uint32_t crc;
    uint8_t version;
    uint8_t attributes;
    uint16_t header_len;
    uint32_t record_count;
    uint32_t records_len;
    int64_t first_ts;
    int64_t max_ts;
    uint64_t base_id;
    uint64_t producer_id;
    uint32_t producer_seq;
    uint32_t request_count;
    uint64_t idem_hash;
} spw_batch_hdr;

/* One record header (key/value pair of bytes), as in Kafka. */
typedef struct spw_kv {
    const void *key;
    uint32_t key_len;
    const void *value;
    uint32_t value_len;
} spw_kv;

/* A record to append. key_len -1 means "no key" (distinct from empty). */
typedef struct spw_record {
    const void *key;
    int32_t key_len;
    const void *value;
    uint32_t value_len;
    int64_t ts; /* event time, ms since Unix epoch */
    const spw_kv *headers;
    uint32_t header_count;
    uint64_t version; /* 1.. in a versioned batch (spw_batch_opts.versioned); 0 = none */
} spw_record;

typedef struct spw_batch_opts {
    int compression;     /* SPW_COMPRESS_* */
    int level;           /* compression level, 0 = library default */
    spw_idgen *idgen;    /* NULL: ids are 0 */
    uint64_t producer_id;
    uint32_t producer_seq;
    uint32_t request_count;
    uint64_t idem_hash;
    uint64_t *first_ticket; /* out, optional: record j's id is spw_id_from_ticket(idgen, *first_ticket + j) */
    /* Optional: record j's id is spw_id_from_ticket(idgen, tickets[j])
     * (increasing; the caller reserved them) instead of fresh tickets. */
    const uint64_t *tickets;
    int versioned; /* write SPW_BATCH_ATTR_VERSIONED: every record's version is stored */
    /* Optional: the batch's record j is recs[order[j]] (strictly
     * increasing indexes: a request's records grouped by partition, not
     * copied), and without tickets its id is spw_id_from_ticket(idgen,
     * ticket_base + order[j]) (the caller reserved them). */
    const uint32_t *order;
    uint64_t ticket_base;
} spw_batch_opts;

/* Upper bound of the encoded size of n records (before compression). */
size_t spw_batch_bound(const spw_record *recs, uint32_t n);

/*
 * Encodes n records into out (resized as needed; out->len = batch length)
 * with base_offset 0; the partition sets the real one with
 * spw_batch_set_base_offset. scratch is used only for compression.
 * Returns 0, SPW_EINVAL (n == 0, n too large, bad key_len or compression),
 * SPW_EMSGSIZE (over SPW_BATCH_MAX_LEN) or SPW_ENOMEM.
 */
int spw_batch_encode(spw_buf *out, spw_buf *scratch, const spw_record *recs, uint32_t n, const spw_batch_opts *o);

void spw_batch_set_base_offset(uint8_t *batch, uint64_t base_offset);

/*
 * Parses and checks the fixed header from avail bytes at p: magic, version,
 * header_len, length bounds, count bounds, attributes. Does not check the CRC.
 * Returns 0, SPW_ETRUNC (avail < header) or SPW_ECORRUPT.
 */
int spw_batch_parse(const uint8_t *p, size_t avail, spw_batch_hdr *h);

/* CRC check. REQUIRES: h parsed from p, and h->length bytes at p. */
int spw_batch_verify(const uint8_t *p, const spw_batch_hdr *h);

/* Parse + length available + CRC: the full check of a batch at p. */
int spw_batch_check(const uint8_t *p, size_t avail, spw_batch_hdr *h);

static inline uint64_t spw_batch_next_offset(const spw_batch_hdr *h) { return h->base_offset + h->record_count; }

/*
 * The records section of a verified batch, decompressed into scratch when
 * compressed. Returns 0 or SPW_ECORRUPT / SPW_ENOMEM.
 */
int spw_batch_records(const uint8_t *p, const spw_batch_hdr *h, spw_buf *scratch, const uint8_t **recs,
                      size_t *len);

/* A decoded record; pointers point into the batch (or its scratch buffer). */
typedef struct spw_record_view {
    uint64_t offset;
    uint64_t id;
    int64_t ts;
    uint64_t version; /* 0: none (not a versioned batch, or a record without one) */
    const uint8_t *key;
    int32_t key_len; /* -1: no key */
    const uint8_t *value;
    uint32_t value_len;
    const uint8_t *headers; /* encoded headers, read with spw_kv_next */
    size_t headers_len;
    uint32_t header_count;
} spw_record_view;

typedef struct spw_rec_iter {
    const uint8_t *p;
    const uint8_t *end;
    const spw_batch_hdr *h;
    uint32_t index;
} spw_rec_iter;

void spw_rec_iter_init(spw_rec_iter *it, const spw_batch_hdr *h, const uint8_t *recs, size_t len);
/* Returns 1 and fills out, 0 at the end (after exactly record_count records
 * that use the whole section), or SPW_ECORRUPT. */
int spw_rec_next(spw_rec_iter *it, spw_record_view *out);
/* Next header of a record: 1, 0 at end, SPW_ECORRUPT. */
int spw_kv_next(const uint8_t **p, const uint8_t *end, spw_kv *out);

#endif
