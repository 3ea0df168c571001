/*
 * The binary protocol's frames: constants, encoders and strict decoders.
 * Byte-by-byte definition: docs/protocol.md. Keep this header and that
 * document in step.
 *
 * Every frame (little-endian, like every Spillway format):
 *   0  u32 length      bytes after this field: 12 + body length
 *   4  u8  opcode      SPW_OP_*
 *   5  u8  version     SPW_FRAME_VERSION
 *   6  u16 flags       SPW_FLAG_RESPONSE on answers; other bits must be 0
 *   8  u64 request_id  chosen by the client, echoed by the answer
 *  16  body            opcode-specific (docs/protocol.md)
 *
 * Decoders never read outside [p, p + len): every length is checked
 * against what is left before it is used, counts are checked against the
 * smallest possible encoding of what they count, and a body must be used
 * exactly (no trailing bytes). They allocate nothing; decoded pointers
 * point into the caller's buffer and live as long as it does. Encoders
 * append to a spw_buf and fail only with SPW_ENOMEM.
 */
#ifndef SPW_FRAME_H
#define SPW_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/ack.h"
#include "core/buf.h"
#include "core/endian.h"

#define SPW_FRAME_VERSION 1
#define SPW_FRAME_HEADER_LEN 16       /* including the length field */
#define SPW_FRAME_MIN_LENGTH 12       /* length field of an empty body */
#define SPW_FRAME_MAX_DEFAULT (16u << 20) /* server: max-request-bytes */
#define SPW_FRAME_MAX_HARD (1u << 30)  /* no frame is ever longer */
#define SPW_FLAG_RESPONSE 0x0001u
#define SPW_FLAGS_KNOWN 0x0001u

enum {
    SPW_OP_PRODUCE = 1,
    SPW_OP_FETCH = 2,
    SPW_OP_METADATA = 3,
    SPW_OP_AUTH = 4,
    SPW_OP_GROUP_POLL = 5,
    SPW_OP_GROUP_COMMIT = 6,
    SPW_OP_KEY_EVENTS = 7,   /* a versioned stream's key: snapshot and events by version */
    SPW_OP_SNAPSHOT_PUT = 8, /* a versioned stream's key: store a snapshot */
    SPW_OP_VIEW_READ = 32,   /* a view's key, series or top list (docs/protocol.md "Views") */
    /* Stream administration: numbered from the top of the opcode space
     * down. */
    SPW_OP_GROUP_RESET = 252,     /* move a consumer group's committed offsets */
    SPW_OP_GROUP_LIST = 253,      /* a stream's consumer groups (the STREAM_DESCRIBE layout) */
    SPW_OP_STREAM_DESCRIBE = 254, /* a stream's definition and partition state */
    SPW_OP_STREAM_CREATE = 255,   /* create a stream from its definition */
};

/* Status of an answer: 0, or the HTTP status with the same meaning. */
enum {
    SPW_ST_OK = 0,
    SPW_ST_BAD_REQUEST = 400,
    SPW_ST_UNAUTHORIZED = 401,
    SPW_ST_FORBIDDEN = 403,
    SPW_ST_NOT_FOUND = 404,
    SPW_ST_TIMEOUT = 408,
    SPW_ST_CONFLICT = 409,
    SPW_ST_TOO_LARGE = 413,
    SPW_ST_OUT_OF_RANGE = 416,
    SPW_ST_UNPROCESSABLE = 422, /* replication_rejected */
    SPW_ST_RATE_LIMITED = 429,
    SPW_ST_INTERNAL = 500,
    SPW_ST_NOT_IMPLEMENTED = 501,
    SPW_ST_OVERLOADED = 503,
    SPW_ST_REPLICATION_TIMEOUT = 504,
    SPW_ST_DISK = 507,
};
/* Is st a status this protocol defines? */
int spw_frame_status_known(uint32_t st);

/* Ack levels on the wire: the values of spw_ack (core/ack.h), with
 * SPW_ACK_DEFAULT for "the stream's default". */

#define SPW_WIRE_PRIORITY_DEFAULT 255 /* the stream's default priority */
#define SPW_PARTITION_ANY 0xFFFFFFFFu /* route by key, round robin without */
#define SPW_REC_HAS_KEY 0x01u
#define SPW_REC_HAS_TS 0x02u
#define SPW_REC_ATTRS_KNOWN 0x03u
/* PRODUCE request flags (the u16 after priority; docs/protocol.md). */
#define SPW_PRODUCE_SUPERSEDE_OK 0x0001u /* the answer may mark records superseded (coalescing) */
/* Versioned streams: an expectation (u8 expect, u64 expected_version)
 * follows the records, and the OK answer ends with each record's version. */
#define SPW_PRODUCE_VERSIONED 0x0002u
#define SPW_PRODUCE_FLAGS_KNOWN 0x0003u
/* The expectation of a SPW_PRODUCE_VERSIONED request (docs/protocol.md). */
enum { SPW_EXPECT_ANY = 0, SPW_EXPECT_NONE = 1, SPW_EXPECT_EXISTS = 2, SPW_EXPECT_EXACT = 3 };
#define SPW_PART_SUPERSEDED 0xFFFFFFFFu /* a superseded record's partition in a PRODUCE answer */
#define SPW_REC_MIN_LEN 17u            /* attrs + ts + key_len + value_len */
#define SPW_FETCH_RECORDS 0
#define SPW_FETCH_BATCHES 1
#define SPW_STREAM_NAME_WIRE_MAX 128
#define SPW_AUTH_TOKEN_WIRE_MAX 1024
#define SPW_TENANT_WIRE_MAX 63
#define SPW_GROUP_WIRE_MAX 128  /* a group name */
#define SPW_MEMBER_WIRE_MAX 64  /* a member name */
#define SPW_GPOLL_EARLIEST 0
#define SPW_GPOLL_LATEST 1
#define SPW_GPOLL_MAX_RECORDS 10000
#define SPW_GPOLL_WAIT_MS_MAX 60000
#define SPW_GPOLL_LEASE_MS_MIN 100
#define SPW_GPOLL_LEASE_MS_MAX 3600000

typedef struct spw_frame_hdr {
    uint32_t length;
    uint8_t opcode;
    uint8_t version;
    uint16_t flags;
    uint64_t request_id;
} spw_frame_hdr;

/*
 * Decodes a frame header from avail bytes at p. Returns 0, SPW_ETRUNC (fewer
 * than 16 bytes yet), SPW_EMSGSIZE (length > max_length: the peer must be
 * answered 413 and closed) or SPW_ECORRUPT (length < 12, or flags with
 * unknown bits: garbage, answer 400 and close). Version and opcode are
 * not judged here: a well-framed request with an unknown one gets a 400
 * answer and the connection stays usable.
 */
int spw_frame_hdr_decode(const uint8_t *p, size_t avail, uint32_t max_length, spw_frame_hdr *h);
/* Appends a header whose length field is patched by spw_frame_finish. */
int spw_frame_begin(spw_buf *b, uint8_t opcode, uint16_t flags, uint64_t request_id, size_t *start);
/* Sets the length of the frame begun at start to what b holds after it. */
void spw_frame_finish(spw_buf *b, size_t start);

/* ---- a bounds-checked reader ---- */

typedef struct spw_rd {
    const uint8_t *p, *end;
    int bad; /* set by any read past the end; reads then return zeros */
} spw_rd;

static inline void spw_rd_init(spw_rd *r, const void *p, size_t n)
{
    r->p = p;
    r->end = n ? r->p + n : r->p; /* p may be NULL when n is 0 */
    r->bad = 0;
}
static inline size_t spw_rd_left(const spw_rd *r) { return (size_t)(r->end - r->p); }
uint8_t spw_rd_u8(spw_rd *r);
uint16_t spw_rd_u16(spw_rd *r);
uint32_t spw_rd_u32(spw_rd *r);
uint64_t spw_rd_u64(spw_rd *r);
/* n bytes in place, or NULL (and bad set) if fewer are left. */
const uint8_t *spw_rd_bytes(spw_rd *r, size_t n);

/* ---- PRODUCE ---- */

typedef struct spw_frame_rec {
    uint8_t attrs;  /* SPW_REC_* */
    int64_t ts;     /* valid with SPW_REC_HAS_TS */
    const uint8_t *key;
    int32_t key_len; /* -1 without SPW_REC_HAS_KEY */
    const uint8_t *value;
    uint32_t value_len;
} spw_frame_rec;

typedef struct spw_produce_req {
    const char *stream; /* not NUL-terminated */
    uint16_t stream_len;
    uint8_t ack;        /* SPW_ACK_* */
    uint8_t priority;   /* 0..3, or SPW_WIRE_PRIORITY_DEFAULT */
    uint16_t flags;     /* SPW_PRODUCE_* */
    uint32_t partition; /* or SPW_PARTITION_ANY */
    uint64_t producer_id;
    uint32_t producer_seq;
    uint32_t count;
    const uint8_t *recs; /* count records, validated */
    size_t recs_len;
    /* with SPW_PRODUCE_VERSIONED: SPW_EXPECT_* (checked) and the version
     * (any u64: the service refuses one past 2^53 - 1) */
    uint8_t expect;
    uint64_t expected_version;
} spw_produce_req;

/*
 * Decodes and checks a PRODUCE body: stream name length 1..128, ack one of
 * the five values, priority 0..3 or 255, no unknown flag bits, count >= 1, every
 * record's attributes known and lengths inside the body, key_len 0 without
 * SPW_REC_HAS_KEY, and no bytes after the last record. Returns 0 or
 * SPW_EINVAL with a static sentence in *why.
 */
int spw_produce_req_decode(const uint8_t *body, size_t len, spw_produce_req *out, const char **why);

/* Iterates the records of a decoded request: 1 and *out filled, 0 at end. */
typedef struct spw_frame_rec_iter {
    spw_rd rd;
    uint32_t left;
} spw_frame_rec_iter;
void spw_frame_rec_iter_init(spw_frame_rec_iter *it, const spw_produce_req *req);

/* Inline: once per record of every PRODUCE. The request was decoded, so
 * every record is well formed and its fields are read without the
 * decode's checks; the one left guards the end. */
static inline int spw_frame_rec_next(spw_frame_rec_iter *it, spw_frame_rec *out)
{
    if (it->left == 0)
        return 0;
    const uint8_t *p = it->rd.p;
    uint8_t a = p[0];
    uint32_t kl = spw_get32(p + 9);
    uint32_t vl = spw_get32(p + 13 + kl);
    const uint8_t *next = p + SPW_REC_MIN_LEN + kl + vl;
    if (next > it->rd.end)
        return 0; /* cannot happen on a decoded request */
    out->attrs = a;
    out->ts = (int64_t)spw_get64(p + 1);
    out->key = p + 13;
    out->key_len = a & SPW_REC_HAS_KEY ? (int32_t)kl : -1;
    out->value_len = vl;
    out->value = p + SPW_REC_MIN_LEN + kl;
    it->rd.p = next;
    it->left--;
    return 1;
}

/* Encoding a PRODUCE body: head, then records, then spw_produce_finish
 * patches the count. *count_at gets where the count lives in b. */
int spw_produce_req_begin(spw_buf *b, const char *stream, size_t stream_len, uint8_t ack, uint8_t priority,
                          uint32_t partition, uint64_t producer_id, uint32_t producer_seq, size_t *count_at);
int spw_produce_rec_put(spw_buf *b, const spw_frame_rec *r);
void spw_produce_req_set_count(spw_buf *b, size_t count_at, uint32_t count);
/* Sets the request's flags (SPW_PRODUCE_*; spw_produce_req_begin writes 0). */
void spw_produce_req_set_flags(spw_buf *b, size_t count_at, uint16_t flags);
/* After the last record of a request with SPW_PRODUCE_VERSIONED: its
 * expectation (SPW_EXPECT_*) and version. */
int spw_produce_req_put_expect(spw_buf *b, uint8_t expect, uint64_t expected_version);
/* Encoded size of one record. */
static inline size_t spw_produce_rec_size(size_t key_len, size_t value_len)
{
    return SPW_REC_MIN_LEN + key_len + value_len;
}

/* PRODUCE answer (status 0): the slots, then each record's partition in
 * request order. Record i's offset is its slot's first_offset plus the
 * number of earlier records of the request in the same partition. A
 * record's partition is SPW_PART_SUPERSEDED when coalescing replaced it
 * (only ever sent to requests with SPW_PRODUCE_SUPERSEDE_OK): it has no
 * slot and no offset. */
typedef struct spw_produce_slot {
    uint32_t partition;
    uint64_t first_offset;
    uint32_t count;
} spw_produce_slot;

typedef struct spw_produce_resp {
    uint32_t nslots;
    const uint8_t *slots; /* nslots × 16 bytes, read with spw_produce_resp_slot */
    uint32_t nrecords;
    const uint8_t *parts; /* nrecords × u32 */
    const uint8_t *versions; /* answers to SPW_PRODUCE_VERSIONED: nrecords × u64 (0: none); else NULL */
} spw_produce_resp;
/* Checks that slot counts add up to the records not superseded and each
 * of those names a slot. Returns 0 or SPW_EINVAL. */
int spw_produce_resp_decode(const uint8_t *body, size_t len, spw_produce_resp *out, const char **why);
void spw_produce_resp_slot(const spw_produce_resp *r, uint32_t i, spw_produce_slot *out);
uint32_t spw_produce_resp_part(const spw_produce_resp *r, uint32_t i);
/* Record i's version (0 when the answer has none). */
uint64_t spw_produce_resp_version(const spw_produce_resp *r, uint32_t i);
/* versions: NULL, or nrecords versions written after the partitions (only
 * in answers to SPW_PRODUCE_VERSIONED requests). */
int spw_produce_resp_encode(spw_buf *b, const spw_produce_slot *slots, uint32_t nslots, const uint32_t *rec_parts,
                            uint32_t nrecords, const uint64_t *versions);

/* ---- KEY_EVENTS, SNAPSHOT_PUT (docs/protocol.md "Keys of versioned streams") ---- */

#define SPW_KEY_WIRE_MAX 1024u       /* key bytes */
#define SPW_KEY_EVENTS_MAX 10000u    /* max_records */
#define SPW_SNAPSHOT_WIRE_MAX (1u << 20) /* state bytes */

typedef struct spw_key_events_req {
    const char *stream;
    uint16_t stream_len;
    const uint8_t *key;
    uint32_t key_len;      /* 1..SPW_KEY_WIRE_MAX */
    uint64_t from_version; /* 0: from the newest snapshot (the answer carries it), else this version */
    uint32_t max_records;  /* 1..SPW_KEY_EVENTS_MAX */
} spw_key_events_req;
int spw_key_events_req_decode(const uint8_t *body, size_t len, spw_key_events_req *out, const char **why);
int spw_key_events_req_encode(spw_buf *b, const spw_key_events_req *r);

/* The answer (after status 0): the key's current version, its snapshot
 * (version 0 and no state: none, or not asked for), then count events. */
typedef struct spw_key_event {
    uint64_t version;
    uint64_t offset;
    int64_t ts;
    const uint8_t *value;
    uint32_t value_len;
} spw_key_event;
typedef struct spw_key_events_resp {
    uint64_t current_version;
    uint64_t snapshot_version;
    const uint8_t *state;
    uint32_t state_len;
    uint32_t count;
    spw_rd events; /* count events, checked; read with spw_key_events_next */
} spw_key_events_resp;
int spw_key_events_resp_decode(const uint8_t *body, size_t len, spw_key_events_resp *out, const char **why);
/* 1 and *out, 0 after the last. */
int spw_key_events_next(spw_key_events_resp *r, spw_key_event *out);
/* Encoding the answer: begin (*count_at: where the count lives), add, set_count. */
int spw_key_events_resp_begin(spw_buf *b, uint64_t current, uint64_t snapshot_version, const void *state,
                              uint32_t state_len, size_t *count_at);
int spw_key_events_resp_add(spw_buf *b, const spw_key_event *e);
void spw_key_events_resp_set_count(spw_buf *b, size_t count_at, uint32_t count);

typedef struct spw_snapshot_put_req {
    const char *stream;
    uint16_t stream_len;
    const uint8_t *key;
    uint32_t key_len;
    uint64_t version;
    const uint8_t *state; /* JSON text of an object (the service checks it) */
    uint32_t state_len;   /* 1..SPW_SNAPSHOT_WIRE_MAX */
} spw_snapshot_put_req;
int spw_snapshot_put_req_decode(const uint8_t *body, size_t len, spw_snapshot_put_req *out, const char **why);
int spw_snapshot_put_req_encode(spw_buf *b, const spw_snapshot_put_req *r);

/* ---- VIEW_READ (docs/protocol.md "Views") ---- */

enum { SPW_VIEW_READ_KEY = 1, SPW_VIEW_READ_SERIES = 2, SPW_VIEW_READ_TOP = 3 };
#define SPW_VIEW_WORD_WIRE_MAX 31   /* window and by: short words ("1m", "count") */
#define SPW_VIEW_MIN_WIRE_MAX 1024  /* min_offsets pairs */
#define SPW_VIEW_TOP_WIRE_MAX 1000  /* n */
#define SPW_VIEW_WAIT_WIRE_MAX 60000 /* wait_ms */
#define SPW_VIEW_TIME_DEFAULT INT64_MIN /* from, to, at: the read's default */

typedef struct spw_view_read_req {
    uint8_t what; /* SPW_VIEW_READ_* */
    const char *view;
    uint16_t view_len; /* 1..SPW_STREAM_NAME_WIRE_MAX */
    const uint8_t *key;
    uint32_t key_len; /* KEY, SERIES: 1..SPW_KEY_WIRE_MAX; TOP: 0 */
    const char *window;
    uint8_t window_len; /* 0: the smallest window */
    const char *by;
    uint8_t by_len; /* TOP: 0 ("count"), "count" or "sum"; else 0 */
    int64_t from, to, at; /* SPW_VIEW_TIME_DEFAULT: the default */
    uint32_t n;           /* TOP: 0 (10) or 1..SPW_VIEW_TOP_WIRE_MAX; else 0 */
    uint32_t wait_ms;     /* 0..SPW_VIEW_WAIT_WIRE_MAX, with min_offsets */
    uint16_t nmin;        /* min_offsets pairs, 0..SPW_VIEW_MIN_WIRE_MAX */
    const uint8_t *min;   /* nmin x (u32 partition, u64 offset): spw_view_read_min */
} spw_view_read_req;
int spw_view_read_req_decode(const uint8_t *body, size_t len, spw_view_read_req *out, const char **why);
/* min: nmin pairs as the request holds them (partition, offset). */
int spw_view_read_req_encode(spw_buf *b, const spw_view_read_req *r, const uint32_t *parts, const uint64_t *offsets);
/* The i-th min_offsets pair of a decoded request (i < nmin). */
void spw_view_read_min(const spw_view_read_req *r, uint16_t i, uint32_t *partition, uint64_t *offset);
/* The answer (after status 0): u32 length, then the JSON document the
 * HTTP read answers. */
int spw_view_read_resp_encode(spw_buf *b, const void *json, uint32_t len);
int spw_view_read_resp_decode(const uint8_t *body, size_t len, const uint8_t **json, uint32_t *json_len,
                              const char **why);

/* ---- FETCH ---- */

typedef struct spw_fetch_req {
    const char *stream;
    uint16_t stream_len;
    uint32_t partition;
    uint64_t offset;
    uint32_t max_bytes;
    uint8_t mode; /* SPW_FETCH_RECORDS or SPW_FETCH_BATCHES */
} spw_fetch_req;
int spw_fetch_req_decode(const uint8_t *body, size_t len, spw_fetch_req *out, const char **why);
int spw_fetch_req_encode(spw_buf *b, const spw_fetch_req *r);

/* FETCH answer head; then records (mode 0) or raw batches (mode 1). */
typedef struct spw_fetch_resp {
    uint64_t start_offset, end_offset, next_offset;
    uint8_t mode;
    uint32_t count;      /* records, or batches */
    const uint8_t *data; /* what follows the head */
    size_t data_len;
} spw_fetch_resp;
typedef struct spw_fetch_rec {
    uint64_t offset;
    uint64_t id;
    int64_t ts;
    const uint8_t *key;
    int32_t key_len; /* -1: no key */
    const uint8_t *value;
    uint32_t value_len;
} spw_fetch_rec;
/* Checks the head and, for records, every record's lengths; for batches,
 * that count length-prefixed batches exactly fill the rest (each batch's
 * own CRC is the reader's to check with spw_batch_check). */
int spw_fetch_resp_decode(const uint8_t *body, size_t len, spw_fetch_resp *out, const char **why);
int spw_fetch_resp_head(spw_buf *b, uint64_t start, uint64_t end, uint64_t next, uint8_t mode, size_t *count_at);
int spw_fetch_rec_put(spw_buf *b, const spw_fetch_rec *r);
void spw_fetch_resp_set_count(spw_buf *b, size_t count_at, uint32_t count);
/* Iterating records (mode 0) of a decoded answer: 1, 0 at end. */
typedef struct spw_fetch_iter {
    spw_rd rd;
    uint32_t left;
} spw_fetch_iter;
void spw_fetch_iter_init(spw_fetch_iter *it, const spw_fetch_resp *r);
int spw_fetch_iter_next(spw_fetch_iter *it, spw_fetch_rec *out);

/* ---- METADATA ---- */

/* Request body: u16 stream_len + name; 0 = every stream. */
int spw_metadata_req_decode(const uint8_t *body, size_t len, const char **stream, uint16_t *stream_len,
                            const char **why);
int spw_metadata_req_encode(spw_buf *b, const char *stream, size_t stream_len);

typedef struct spw_meta_part {
    uint64_t start_offset, end_offset, durable_offset;
} spw_meta_part;
typedef struct spw_meta_stream {
    const char *name;
    uint16_t name_len;
    uint8_t format_bytes;
    uint8_t ack;
    uint32_t partitions;
    const uint8_t *parts; /* partitions × 24 bytes */
} spw_meta_stream;
typedef struct spw_metadata_resp {
    uint32_t nstreams;
    spw_rd rd; /* positioned at the first stream */
} spw_metadata_resp;
int spw_metadata_resp_decode(const uint8_t *body, size_t len, spw_metadata_resp *out, const char **why);
/* 1 and *out filled, 0 at end. REQUIRES: r from spw_metadata_resp_decode. */
int spw_metadata_resp_next(spw_metadata_resp *r, spw_meta_stream *out);
void spw_meta_part_get(const spw_meta_stream *s, uint32_t i, spw_meta_part *out);
int spw_metadata_resp_head(spw_buf *b, uint32_t nstreams);
int spw_metadata_stream_put(spw_buf *b, const char *name, size_t name_len, uint8_t format_bytes, uint8_t ack,
                            uint32_t partitions, const spw_meta_part *parts);

/* ---- AUTH ---- */

/* Request body: str16 token, 1 to SPW_AUTH_TOKEN_WIRE_MAX bytes. */
int spw_auth_req_decode(const uint8_t *body, size_t len, const char **token, uint16_t *token_len, const char **why);
int spw_auth_req_encode(spw_buf *b, const char *token, size_t token_len);
/* Answer body after status 0: str16 tenant, 0 to SPW_TENANT_WIRE_MAX bytes
 * ("" when the server has no tokens configured). */
int spw_auth_resp_decode(const uint8_t *body, size_t len, const char **tenant, uint16_t *tenant_len,
                         const char **why);
int spw_auth_resp_encode(spw_buf *b, const char *tenant, size_t tenant_len);

/* ---- GROUP_POLL, GROUP_COMMIT (consumer groups) ---- */

typedef struct spw_gpoll_req {
    const char *stream, *group, *member; /* not NUL-terminated */
    uint16_t stream_len, group_len, member_len; /* member 0: the connection's address */
    uint8_t start;     /* SPW_GPOLL_EARLIEST or SPW_GPOLL_LATEST (a new group only) */
    uint32_t max;      /* records, 0 (= 100) .. SPW_GPOLL_MAX_RECORDS */
    uint32_t wait_ms;  /* 0 .. SPW_GPOLL_WAIT_MS_MAX */
    uint32_t lease_ms; /* 0 (= 30000) or SPW_GPOLL_LEASE_MS_MIN .. _MAX */
} spw_gpoll_req;
/* Checks lengths (stream 1..128, group 1..128, member 0..64) and every
 * field's range; the name characters are the server's to judge. */
int spw_gpoll_req_decode(const uint8_t *body, size_t len, spw_gpoll_req *out, const char **why);
int spw_gpoll_req_encode(spw_buf *b, const spw_gpoll_req *q);

/* GROUP_POLL answer after status 0: u8 delivered; with 1, the lease and
 * count records encoded as FETCH mode 0 (spw_fetch_rec_put). */
typedef struct spw_gpoll_resp {
    uint8_t delivered; /* 0: nothing before the wait ended; nothing else is set */
    uint32_t partition;
    uint64_t lease_id;
    uint64_t first_offset, next_offset; /* commit any offset in [first, next] */
    uint32_t lease_ms;
    uint32_t count;      /* >= 1 */
    const uint8_t *data; /* count records */
    size_t data_len;
} spw_gpoll_resp;
/* Checks every record's lengths and first <= next. */
int spw_gpoll_resp_decode(const uint8_t *body, size_t len, spw_gpoll_resp *out, const char **why);
/* Appends the answer after the status: delivered 0 alone, or the head and
 * r->data (count records already encoded). */
int spw_gpoll_resp_encode(spw_buf *b, const spw_gpoll_resp *r);
/* Iterating a delivered answer's records with spw_fetch_iter_next. */
void spw_gpoll_iter_init(spw_fetch_iter *it, const spw_gpoll_resp *r);

typedef struct spw_gcommit_req {
    const char *stream, *group;
    uint16_t stream_len, group_len;
    uint32_t partition;
    uint64_t lease_id;
    uint64_t offset; /* the next offset to read */
} spw_gcommit_req;
int spw_gcommit_req_decode(const uint8_t *body, size_t len, spw_gcommit_req *out, const char **why);
int spw_gcommit_req_encode(spw_buf *b, const spw_gcommit_req *q);
/* GROUP_COMMIT answer after status 0: u32 partition, u64 committed. */
int spw_gcommit_resp_decode(const uint8_t *body, size_t len, uint32_t *partition, uint64_t *committed,
                            const char **why);
int spw_gcommit_resp_encode(spw_buf *b, uint32_t partition, uint64_t committed);

/* ---- answers ---- */

/* Every answer body starts with u16 status. For status != 0 the rest is
 * u32 retry_after_ms, u8 code_len, code, u16 msg_len, msg, and for code
 * "damaged" with a known end of the damage, u64 next_offset: where reading
 * can resume (docs/protocol.md, "Answers"). */
typedef struct spw_frame_error {
    uint16_t status;
    uint32_t retry_after_ms;
    const char *code;
    uint8_t code_len;
    const char *msg;
    uint16_t msg_len;
    int has_next_offset;  /* the answer carries next_offset */
    uint64_t next_offset; /* damaged: the first readable offset after the damage */
} spw_frame_error;

/* Splits an answer body: *status, and for 0 the rest in *rest and *rest_len;
 * otherwise the error in *err. Returns 0 or SPW_EINVAL. */
int spw_answer_decode(const uint8_t *body, size_t len, uint16_t *status, const uint8_t **rest, size_t *rest_len,
                      spw_frame_error *err, const char **why);
int spw_answer_ok(spw_buf *b);
/* A whole error answer frame (header included). msg is truncated to 1024. */
int spw_frame_error_encode(spw_buf *b, uint8_t opcode, uint64_t request_id, uint16_t status,
                           uint32_t retry_after_ms, const char *code, const char *msg);
/* The same with next_offset after msg (a "damaged" answer). */
int spw_frame_error_encode_next(spw_buf *b, uint8_t opcode, uint64_t request_id, uint16_t status,
                                const char *code, const char *msg, uint64_t next_offset);

/* ---- STREAM_CREATE (255), STREAM_DESCRIBE (254) ---- */

#define SPW_STREAM_DEF_WIRE_MAX (64u << 10) /* a definition's JSON text, at most */

/* STREAM_CREATE request: str16 name (1..128), u32 def_len (1..64 KiB),
 * def: the JSON text of PUT /v1/streams/NAME's body ({} for every
 * default). Answer: u8 created (1 created, 0 an identical stream
 * existed), u32 len, the stream's definition as JSON. */
int spw_stream_create_req_decode(const uint8_t *body, size_t len, const char **name, uint16_t *name_len,
                                 const char **def, uint32_t *def_len, const char **why);
int spw_stream_create_req_encode(spw_buf *b, const char *name, size_t name_len, const char *def, size_t def_len);
int spw_stream_create_resp_decode(const uint8_t *body, size_t len, uint8_t *created, const char **json,
                                  uint32_t *json_len, const char **why);
int spw_stream_create_resp_encode(spw_buf *b, uint8_t created, const char *json, size_t json_len);
/* STREAM_DESCRIBE request: str16 name (1..128). Answer: u32 len, the JSON
 * of GET /v1/streams/NAME (definition, incarnation, partition_state). */
int spw_stream_describe_req_decode(const uint8_t *body, size_t len, const char **name, uint16_t *name_len,
                                   const char **why);
int spw_stream_describe_req_encode(spw_buf *b, const char *name, size_t name_len);
int spw_stream_describe_resp_decode(const uint8_t *body, size_t len, const char **json, uint32_t *json_len,
                                    const char **why);
int spw_stream_describe_resp_encode(spw_buf *b, const char *json, size_t json_len);

/* ---- GROUP_RESET (252) ---- */

#define SPW_GROUP_RESET_BODY_WIRE_MAX 4096u /* the reset's JSON text, at most */

/* GROUP_RESET request: str16 stream (1..128), str16 group (1..128), u32
 * len (1..4096) and the JSON text of POST .../groups/{g}/reset's body.
 * Answer: u32 len and the JSON of that POST's answer (the STREAM_DESCRIBE
 * answer's layout: spw_stream_describe_resp_*). */
int spw_greset_req_decode(const uint8_t *body, size_t len, const char **stream, uint16_t *stream_len,
                          const char **group, uint16_t *group_len, const char **json, uint32_t *json_len,
                          const char **why);
int spw_greset_req_encode(spw_buf *b, const char *stream, size_t stream_len, const char *group, size_t group_len,
                          const char *json, size_t json_len);

#endif
