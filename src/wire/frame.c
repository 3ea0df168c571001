/*
 * Binary protocol codec: see frame.h and docs/protocol.md.
 *
 * Reading goes through spw_rd, whose every read checks what is left and
 * latches `bad` instead of reading past the end; decoders test `bad` once
 * at the end of each structure, and compare every count with the bytes
 * that could hold it before trusting it.
 */
#include "wire/frame.h"

#include <string.h>

#include "core/endian.h"
#include "core/error.h"

/* ---- reader ---- */

static const uint8_t *take(spw_rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

uint8_t spw_rd_u8(spw_rd *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}
uint16_t spw_rd_u16(spw_rd *r)
{
    const uint8_t *p = take(r, 2);
    return p ? spw_get16(p) : 0;
}
uint32_t spw_rd_u32(spw_rd *r)
{
    const uint8_t *p = take(r, 4);
    return p ? spw_get32(p) : 0;
}
uint64_t spw_rd_u64(spw_rd *r)
{
    const uint8_t *p = take(r, 8);
    return p ? spw_get64(p) : 0;
}
const uint8_t *spw_rd_bytes(spw_rd *r, size_t n) { return take(r, n); }

/* ---- writer ---- */

static int put(spw_buf *b, const void *p, size_t n)
{
    if (spw_buf_reserve(b, b->len + n))
        return SPW_ENOMEM;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}
static int put8(spw_buf *b, uint8_t v) { return put(b, &v, 1); }
static int put16(spw_buf *b, uint16_t v)
{
    uint8_t t[2];
    spw_put16(t, v);
    return put(b, t, 2);
}
static int put32(spw_buf *b, uint32_t v)
{
    uint8_t t[4];
    spw_put32(t, v);
    return put(b, t, 4);
}
static int put64(spw_buf *b, uint64_t v)
{
    uint8_t t[8];
    spw_put64(t, v);
    return put(b, t, 8);
}

int spw_frame_status_known(uint32_t st)
{
    switch (st) {
    case SPW_ST_OK:
    case SPW_ST_BAD_REQUEST:
    case SPW_ST_UNAUTHORIZED:
    case SPW_ST_FORBIDDEN:
    case SPW_ST_NOT_FOUND:
    case SPW_ST_TIMEOUT:
    case SPW_ST_CONFLICT:
    case SPW_ST_TOO_LARGE:
    case SPW_ST_OUT_OF_RANGE:
    case SPW_ST_UNPROCESSABLE:
    case SPW_ST_RATE_LIMITED:
    case SPW_ST_INTERNAL:
    case SPW_ST_NOT_IMPLEMENTED:
    case SPW_ST_OVERLOADED:
    case SPW_ST_REPLICATION_TIMEOUT:
    case SPW_ST_DISK: return 1;
    default: return 0;
    }
}

/* ---- header ---- */

int spw_frame_hdr_decode(const uint8_t *p, size_t avail, uint32_t max_length, spw_frame_hdr *h)
{
    if (avail < 4)
        return SPW_ETRUNC;
    h->length = spw_get32(p);
    /* Judge the length first: a garbage length must not make us wait for
     * bytes that will never come. */
    if (h->length > max_length || h->length > SPW_FRAME_MAX_HARD)
        return SPW_EMSGSIZE;
    if (h->length < SPW_FRAME_MIN_LENGTH)
        return SPW_ECORRUPT;
    if (avail < SPW_FRAME_HEADER_LEN)
        return SPW_ETRUNC;
    h->opcode = p[4];
    h->version = p[5];
    h->flags = spw_get16(p + 6);
    h->request_id = spw_get64(p + 8);
    if (h->flags & ~SPW_FLAGS_KNOWN)
        return SPW_ECORRUPT;
    return 0;
}

int spw_frame_begin(spw_buf *b, uint8_t opcode, uint16_t flags, uint64_t request_id, size_t *start)
{
    *start = b->len;
    uint8_t h[SPW_FRAME_HEADER_LEN];
    spw_put32(h, 0);
    h[4] = opcode;
    h[5] = SPW_FRAME_VERSION;
    spw_put16(h + 6, flags);
    spw_put64(h + 8, request_id);
    return put(b, h, sizeof h);
}

void spw_frame_finish(spw_buf *b, size_t start) { spw_put32(b->p + start, (uint32_t)(b->len - start - 4)); }

/* ---- PRODUCE ---- */

#define FAIL(msg)                                                                                                      \
    do {                                                                                                               \
        if (why)                                                                                                       \
            *why = (msg);                                                                                              \
        return SPW_EINVAL;                                                                                             \
    } while (0)

/* What a request whose stream name stream_name refuses is told. */
#define BAD_STREAM_NAME "stream name missing, empty, longer than 128 bytes or truncated"

static int stream_name(spw_rd *r, const char **name, uint16_t *len, int allow_empty)
{
    *len = spw_rd_u16(r);
    *name = (const char *)spw_rd_bytes(r, *len);
    if (r->bad)
        return -1;
    if (*len == 0 ? !allow_empty : *len > SPW_STREAM_NAME_WIRE_MAX)
        return -1;
    return 0;
}

/* One record at r; 0 or -1 with *why. */
static int rec_read(spw_rd *r, spw_frame_rec *o, const char **why)
{
    uint32_t kl;
    if (!r->bad && spw_rd_left(r) >= SPW_REC_MIN_LEN) {
        /* Its fixed part under one bounds check. */
        const uint8_t *p = r->p;
        o->attrs = p[0];
        o->ts = (int64_t)spw_get64(p + 1);
        kl = spw_get32(p + 9);
        r->p += 13;
    } else {
        o->attrs = spw_rd_u8(r);
        o->ts = (int64_t)spw_rd_u64(r);
        kl = spw_rd_u32(r);
    }
    if (r->bad)
        FAIL("record truncated");
    if (o->attrs & ~SPW_REC_ATTRS_KNOWN)
        FAIL("record attributes have unknown bits");
    if (!(o->attrs & SPW_REC_HAS_KEY) && kl != 0)
        FAIL("record without a key has a key length");
    if (kl > INT32_MAX)
        FAIL("record key length out of range");
    o->key = spw_rd_bytes(r, kl);
    o->key_len = o->attrs & SPW_REC_HAS_KEY ? (int32_t)kl : -1;
    o->value_len = spw_rd_u32(r);
    o->value = spw_rd_bytes(r, o->value_len);
    if (r->bad)
        FAIL("record length runs past the frame");
    return 0;
}

/* The decode's walk over one record: 1 and r past it when the record is
 * well formed (what rec_read checks, every length against the bytes left,
 * without filling a record), else 0 with r unmoved. */
static inline int rec_skip(spw_rd *r)
{
    const uint8_t *p = r->p;
    size_t left = (size_t)(r->end - p);
    if (r->bad || left < SPW_REC_MIN_LEN)
        return 0;
    uint8_t a = p[0];
    uint32_t kl = spw_get32(p + 9);
    if ((a & ~SPW_REC_ATTRS_KNOWN) || (!(a & SPW_REC_HAS_KEY) && kl != 0) || kl > INT32_MAX)
        return 0;
    left -= SPW_REC_MIN_LEN; /* the bytes for the key and the value */
    if (kl > left)
        return 0;
    uint32_t vl = spw_get32(p + 13 + kl);
    if (vl > left - kl)
        return 0;
    r->p = p + SPW_REC_MIN_LEN + kl + vl;
    return 1;
}

int spw_produce_req_decode(const uint8_t *body, size_t len, spw_produce_req *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, &o->stream, &o->stream_len, 0))
        FAIL(BAD_STREAM_NAME);
    o->ack = spw_rd_u8(&r);
    o->priority = spw_rd_u8(&r);
    o->flags = spw_rd_u16(&r);
    o->partition = spw_rd_u32(&r);
    o->producer_id = spw_rd_u64(&r);
    o->producer_seq = spw_rd_u32(&r);
    o->count = spw_rd_u32(&r);
    if (r.bad)
        FAIL("produce header truncated");
    if (o->ack > SPW_ACK_REPLICATED && o->ack != SPW_ACK_DEFAULT)
        FAIL("ack must be 0 (none), 1 (written), 2 (fsync), 3 (replicated) or 255 (stream default)");
    if (o->priority > 3 && o->priority != SPW_WIRE_PRIORITY_DEFAULT)
        FAIL("priority must be 0 to 3, or 255 for the stream's default");
    if (o->flags & ~SPW_PRODUCE_FLAGS_KNOWN)
        FAIL("unknown produce flag bits");
    if (o->count == 0)
        FAIL("a produce needs at least one record");
    if (o->count > spw_rd_left(&r) / SPW_REC_MIN_LEN)
        FAIL("record count larger than the frame could hold");
    o->recs = r.p;
    for (uint32_t i = 0; i < o->count; i++) {
        if (rec_skip(&r))
            continue;
        spw_frame_rec rec; /* not well formed: rec_read says why */
        if (rec_read(&r, &rec, why))
            return SPW_EINVAL;
    }
    o->recs_len = (size_t)(r.p - o->recs);
    o->expect = SPW_EXPECT_ANY;
    o->expected_version = 0;
    if (o->flags & SPW_PRODUCE_VERSIONED) {
        o->expect = spw_rd_u8(&r);
        o->expected_version = spw_rd_u64(&r);
        if (r.bad)
            FAIL("expectation truncated");
        if (o->expect > SPW_EXPECT_EXACT)
            FAIL("expect must be 0 (any), 1 (none), 2 (exists) or 3 (exactly expected_version)");
    }
    if (spw_rd_left(&r))
        FAIL("bytes after the last record");
    return 0;
}

void spw_frame_rec_iter_init(spw_frame_rec_iter *it, const spw_produce_req *req)
{
    spw_rd_init(&it->rd, req->recs, req->recs_len);
    it->left = req->count;
}

int spw_produce_req_begin(spw_buf *b, const char *stream, size_t stream_len, uint8_t ack, uint8_t priority,
                          uint32_t partition, uint64_t producer_id, uint32_t producer_seq, size_t *count_at)
{
    int r = put16(b, (uint16_t)stream_len) || put(b, stream, stream_len) || put8(b, ack) || put8(b, priority) ||
            put16(b, 0) || put32(b, partition) || put64(b, producer_id) || put32(b, producer_seq);
    *count_at = b->len;
    r |= put32(b, 0);
    return r ? SPW_ENOMEM : 0;
}

int spw_produce_rec_put(spw_buf *b, const spw_frame_rec *rec)
{
    uint32_t kl = rec->attrs & SPW_REC_HAS_KEY ? (uint32_t)rec->key_len : 0;
    if (spw_buf_reserve(b, b->len + spw_produce_rec_size(kl, rec->value_len)))
        return SPW_ENOMEM;
    put8(b, rec->attrs);
    put64(b, (uint64_t)rec->ts);
    put32(b, kl);
    put(b, rec->key, kl);
    put32(b, rec->value_len);
    put(b, rec->value, rec->value_len);
    return 0;
}

void spw_produce_req_set_count(spw_buf *b, size_t count_at, uint32_t count) { spw_put32(b->p + count_at, count); }

/* The flags sit 18 bytes before the count: u16 flags, u32 partition, u64
 * producer_id, u32 producer_seq. */
void spw_produce_req_set_flags(spw_buf *b, size_t count_at, uint16_t flags) { spw_put16(b->p + count_at - 18, flags); }

int spw_produce_req_put_expect(spw_buf *b, uint8_t expect, uint64_t expected_version)
{
    return put8(b, expect) || put64(b, expected_version) ? SPW_ENOMEM : 0;
}

int spw_produce_resp_decode(const uint8_t *body, size_t len, spw_produce_resp *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    o->nslots = spw_rd_u32(&r);
    if (r.bad || o->nslots > spw_rd_left(&r) / 16)
        FAIL("slot count larger than the frame");
    o->slots = spw_rd_bytes(&r, (size_t)o->nslots * 16);
    o->nrecords = spw_rd_u32(&r);
    if (r.bad || o->nrecords > spw_rd_left(&r) / 4)
        FAIL("record count larger than the frame");
    o->parts = spw_rd_bytes(&r, (size_t)o->nrecords * 4);
    o->versions = NULL;
    if (!r.bad && o->nrecords && spw_rd_left(&r) == (size_t)o->nrecords * 8)
        o->versions = spw_rd_bytes(&r, (size_t)o->nrecords * 8);
    if (r.bad || spw_rd_left(&r))
        FAIL("produce answer has the wrong length");
    uint64_t sum = 0, superseded = 0;
    for (uint32_t i = 0; i < o->nslots; i++) {
        spw_produce_slot s;
        spw_produce_resp_slot(o, i, &s);
        sum += s.count;
        for (uint32_t j = 0; j < i; j++) {
            spw_produce_slot t;
            spw_produce_resp_slot(o, j, &t);
            if (t.partition == s.partition)
                FAIL("partition named twice in a produce answer");
        }
    }
    for (uint32_t i = 0; i < o->nrecords; i++)
        superseded += spw_produce_resp_part(o, i) == SPW_PART_SUPERSEDED;
    if (sum != o->nrecords - superseded)
        FAIL("slot counts do not add up to the records");
    for (uint32_t i = 0; i < o->nrecords; i++) {
        uint32_t p = spw_produce_resp_part(o, i), k;
        if (p == SPW_PART_SUPERSEDED)
            continue;
        for (k = 0; k < o->nslots; k++) {
            spw_produce_slot s;
            spw_produce_resp_slot(o, k, &s);
            if (s.partition == p)
                break;
        }
        if (k == o->nslots)
            FAIL("record names a partition without a slot");
    }
    return 0;
}

void spw_produce_resp_slot(const spw_produce_resp *r, uint32_t i, spw_produce_slot *out)
{
    const uint8_t *p = r->slots + (size_t)i * 16;
    out->partition = spw_get32(p);
    out->first_offset = spw_get64(p + 4);
    out->count = spw_get32(p + 12);
}

uint32_t spw_produce_resp_part(const spw_produce_resp *r, uint32_t i) { return spw_get32(r->parts + (size_t)i * 4); }

uint64_t spw_produce_resp_version(const spw_produce_resp *r, uint32_t i)
{
    return r->versions ? spw_get64(r->versions + (size_t)i * 8) : 0;
}

int spw_produce_resp_encode(spw_buf *b, const spw_produce_slot *slots, uint32_t nslots, const uint32_t *rec_parts,
                            uint32_t nrecords, const uint64_t *versions)
{
    if (spw_buf_reserve(b, b->len + 8 + (size_t)nslots * 16 + (size_t)nrecords * (versions ? 12 : 4)))
        return SPW_ENOMEM;
    /* Reserved above: written in place, a store per field. */
    uint8_t *p = b->p + b->len;
    spw_put32(p, nslots);
    p += 4;
    for (uint32_t i = 0; i < nslots; i++, p += 16) {
        spw_put32(p, slots[i].partition);
        spw_put64(p + 4, slots[i].first_offset);
        spw_put32(p + 12, slots[i].count);
    }
    spw_put32(p, nrecords);
    p += 4;
    for (uint32_t i = 0; i < nrecords; i++, p += 4)
        spw_put32(p, rec_parts[i]);
    for (uint32_t i = 0; versions && i < nrecords; i++, p += 8)
        spw_put64(p, versions[i]);
    b->len = (size_t)(p - b->p);
    return 0;
}

/* ---- KEY_EVENTS, SNAPSHOT_PUT ---- */

static int key_read(spw_rd *r, const uint8_t **key, uint32_t *len)
{
    *len = spw_rd_u32(r);
    if (r->bad || *len == 0 || *len > SPW_KEY_WIRE_MAX)
        return -1;
    *key = spw_rd_bytes(r, *len);
    return r->bad ? -1 : 0;
}

int spw_key_events_req_decode(const uint8_t *body, size_t len, spw_key_events_req *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, &o->stream, &o->stream_len, 0))
        FAIL(BAD_STREAM_NAME);
    if (key_read(&r, &o->key, &o->key_len))
        FAIL("key length must be 1 to 1024 and inside the frame");
    o->from_version = spw_rd_u64(&r);
    o->max_records = spw_rd_u32(&r);
    if (r.bad)
        FAIL("key events request truncated");
    if (o->max_records == 0 || o->max_records > SPW_KEY_EVENTS_MAX)
        FAIL("max_records must be 1 to 10000");
    if (spw_rd_left(&r))
        FAIL("bytes after the request");
    return 0;
}

int spw_key_events_req_encode(spw_buf *b, const spw_key_events_req *q)
{
    return put16(b, q->stream_len) || put(b, q->stream, q->stream_len) || put32(b, q->key_len) ||
                   put(b, q->key, q->key_len) || put64(b, q->from_version) || put32(b, q->max_records)
               ? SPW_ENOMEM
               : 0;
}

int spw_key_events_resp_decode(const uint8_t *body, size_t len, spw_key_events_resp *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    o->current_version = spw_rd_u64(&r);
    o->snapshot_version = spw_rd_u64(&r);
    o->state_len = spw_rd_u32(&r);
    o->state = spw_rd_bytes(&r, o->state_len);
    o->count = spw_rd_u32(&r);
    if (r.bad)
        FAIL("key events answer truncated");
    if ((o->snapshot_version == 0) != (o->state_len == 0))
        FAIL("a snapshot has a version and a state, or neither");
    o->events = r;
    /* Check every event now, so the iterator cannot fail. */
    for (uint32_t i = 0; i < o->count; i++) {
        spw_rd_u64(&r);
        spw_rd_u64(&r);
        spw_rd_u64(&r);
        uint32_t vl = spw_rd_u32(&r);
        spw_rd_bytes(&r, vl);
        if (r.bad)
            FAIL("event runs past the frame");
    }
    if (spw_rd_left(&r))
        FAIL("bytes after the last event");
    return 0;
}

int spw_key_events_next(spw_key_events_resp *o, spw_key_event *e)
{
    if (o->count == 0)
        return 0;
    e->version = spw_rd_u64(&o->events);
    e->offset = spw_rd_u64(&o->events);
    e->ts = (int64_t)spw_rd_u64(&o->events);
    e->value_len = spw_rd_u32(&o->events);
    e->value = spw_rd_bytes(&o->events, e->value_len);
    o->count--;
    return !o->events.bad;
}

int spw_key_events_resp_begin(spw_buf *b, uint64_t current, uint64_t snapshot_version, const void *state,
                              uint32_t state_len, size_t *count_at)
{
    int r = put64(b, current) || put64(b, snapshot_version) || put32(b, state_len) || put(b, state, state_len);
    *count_at = b->len;
    return r || put32(b, 0) ? SPW_ENOMEM : 0;
}

int spw_key_events_resp_add(spw_buf *b, const spw_key_event *e)
{
    return put64(b, e->version) || put64(b, e->offset) || put64(b, (uint64_t)e->ts) || put32(b, e->value_len) ||
                   put(b, e->value, e->value_len)
               ? SPW_ENOMEM
               : 0;
}

void spw_key_events_resp_set_count(spw_buf *b, size_t count_at, uint32_t count) { spw_put32(b->p + count_at, count); }

int spw_snapshot_put_req_decode(const uint8_t *body, size_t len, spw_snapshot_put_req *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, &o->stream, &o->stream_len, 0))
        FAIL(BAD_STREAM_NAME);
    if (key_read(&r, &o->key, &o->key_len))
        FAIL("key length must be 1 to 1024 and inside the frame");
    o->version = spw_rd_u64(&r);
    o->state_len = spw_rd_u32(&r);
    if (r.bad || o->state_len == 0 || o->state_len > SPW_SNAPSHOT_WIRE_MAX)
        FAIL("state length must be 1 to 1048576");
    o->state = spw_rd_bytes(&r, o->state_len);
    if (r.bad)
        FAIL("state runs past the frame");
    if (spw_rd_left(&r))
        FAIL("bytes after the request");
    return 0;
}

int spw_snapshot_put_req_encode(spw_buf *b, const spw_snapshot_put_req *q)
{
    return put16(b, q->stream_len) || put(b, q->stream, q->stream_len) || put32(b, q->key_len) ||
                   put(b, q->key, q->key_len) || put64(b, q->version) || put32(b, q->state_len) ||
                   put(b, q->state, q->state_len)
               ? SPW_ENOMEM
               : 0;
}

/* ---- FETCH ---- */

int spw_fetch_req_decode(const uint8_t *body, size_t len, spw_fetch_req *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, &o->stream, &o->stream_len, 0))
        FAIL(BAD_STREAM_NAME);
    o->partition = spw_rd_u32(&r);
    o->offset = spw_rd_u64(&r);
    o->max_bytes = spw_rd_u32(&r);
    o->mode = spw_rd_u8(&r);
    if (r.bad || spw_rd_left(&r))
        FAIL("fetch request has the wrong length");
    if (o->mode > SPW_FETCH_BATCHES)
        FAIL("fetch mode must be 0 (records) or 1 (batches)");
    return 0;
}

int spw_fetch_req_encode(spw_buf *b, const spw_fetch_req *q)
{
    int r = put16(b, q->stream_len) || put(b, q->stream, q->stream_len) || put32(b, q->partition) ||
            put64(b, q->offset) || put32(b, q->max_bytes) || put8(b, q->mode);
    return r ? SPW_ENOMEM : 0;
}

#define FETCH_REC_MIN 32u /* offset, id, ts, key_len, value_len */

static int fetch_rec_read(spw_rd *r, spw_fetch_rec *o)
{
    o->offset = spw_rd_u64(r);
    o->id = spw_rd_u64(r);
    o->ts = (int64_t)spw_rd_u64(r);
    uint32_t kl = spw_rd_u32(r);
    if (r->bad || (kl > INT32_MAX && kl != UINT32_MAX))
        return -1;
    o->key_len = kl == UINT32_MAX ? -1 : (int32_t)kl;
    o->key = spw_rd_bytes(r, kl == UINT32_MAX ? 0 : kl);
    o->value_len = spw_rd_u32(r);
    o->value = spw_rd_bytes(r, o->value_len);
    return r->bad ? -1 : 0;
}

int spw_fetch_resp_decode(const uint8_t *body, size_t len, spw_fetch_resp *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    o->start_offset = spw_rd_u64(&r);
    o->end_offset = spw_rd_u64(&r);
    o->next_offset = spw_rd_u64(&r);
    o->mode = spw_rd_u8(&r);
    o->count = spw_rd_u32(&r);
    if (r.bad)
        FAIL("fetch answer head truncated");
    if (o->mode > SPW_FETCH_BATCHES)
        FAIL("fetch answer mode unknown");
    o->data = r.p;
    o->data_len = spw_rd_left(&r);
    if (o->mode == SPW_FETCH_RECORDS) {
        if (o->count > o->data_len / FETCH_REC_MIN)
            FAIL("record count larger than the frame");
        for (uint32_t i = 0; i < o->count; i++) {
            spw_fetch_rec fr;
            if (fetch_rec_read(&r, &fr))
                FAIL("fetched record runs past the frame");
        }
    } else {
        /* Batches: each starts with u64 base_offset, u32 length (>= 16). */
        if (o->count > o->data_len / 16)
            FAIL("batch count larger than the frame");
        for (uint32_t i = 0; i < o->count; i++) {
            const uint8_t *h = spw_rd_bytes(&r, 12);
            if (!h)
                FAIL("batch header runs past the frame");
            uint32_t bl = spw_get32(h + 8);
            if (bl < 16 || !spw_rd_bytes(&r, bl - 12))
                FAIL("batch length runs past the frame");
        }
    }
    if (spw_rd_left(&r))
        FAIL("bytes after the last fetched item");
    return 0;
}

int spw_fetch_resp_head(spw_buf *b, uint64_t start, uint64_t end, uint64_t next, uint8_t mode, size_t *count_at)
{
    int r = put64(b, start) || put64(b, end) || put64(b, next) || put8(b, mode);
    *count_at = b->len;
    r |= put32(b, 0);
    return r ? SPW_ENOMEM : 0;
}

int spw_fetch_rec_put(spw_buf *b, const spw_fetch_rec *f)
{
    size_t kl = f->key_len < 0 ? 0 : (size_t)f->key_len;
    if (spw_buf_reserve(b, b->len + FETCH_REC_MIN + kl + f->value_len))
        return SPW_ENOMEM;
    put64(b, f->offset);
    put64(b, f->id);
    put64(b, (uint64_t)f->ts);
    put32(b, f->key_len < 0 ? UINT32_MAX : (uint32_t)f->key_len);
    put(b, f->key, kl);
    put32(b, f->value_len);
    put(b, f->value, f->value_len);
    return 0;
}

void spw_fetch_resp_set_count(spw_buf *b, size_t count_at, uint32_t count) { spw_put32(b->p + count_at, count); }

void spw_fetch_iter_init(spw_fetch_iter *it, const spw_fetch_resp *r)
{
    spw_rd_init(&it->rd, r->data, r->data_len);
    it->left = r->mode == SPW_FETCH_RECORDS ? r->count : 0;
}

int spw_fetch_iter_next(spw_fetch_iter *it, spw_fetch_rec *out)
{
    if (it->left == 0 || fetch_rec_read(&it->rd, out))
        return 0;
    it->left--;
    return 1;
}

/* ---- GROUP_POLL, GROUP_COMMIT ---- */

/* A str16 of lo..hi bytes; 0 or -1. */
static int str16(spw_rd *r, const char **p, uint16_t *len, size_t lo, size_t hi)
{
    *len = spw_rd_u16(r);
    *p = (const char *)spw_rd_bytes(r, *len);
    return r->bad || *len < lo || *len > hi ? -1 : 0;
}

int spw_gpoll_req_decode(const uint8_t *body, size_t len, spw_gpoll_req *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, &o->stream, &o->stream_len, 0))
        FAIL(BAD_STREAM_NAME);
    if (str16(&r, &o->group, &o->group_len, 1, SPW_GROUP_WIRE_MAX))
        FAIL("group name missing, empty, longer than 128 bytes or truncated");
    if (str16(&r, &o->member, &o->member_len, 0, SPW_MEMBER_WIRE_MAX))
        FAIL("member name longer than 64 bytes or truncated");
    o->start = spw_rd_u8(&r);
    o->max = spw_rd_u32(&r);
    o->wait_ms = spw_rd_u32(&r);
    o->lease_ms = spw_rd_u32(&r);
    if (r.bad || spw_rd_left(&r))
        FAIL("group poll request has the wrong length");
    if (o->start > SPW_GPOLL_LATEST)
        FAIL("start must be 0 (earliest) or 1 (latest)");
    if (o->max > SPW_GPOLL_MAX_RECORDS)
        FAIL("max must be 0 (default 100) to 10000 records");
    if (o->wait_ms > SPW_GPOLL_WAIT_MS_MAX)
        FAIL("wait_ms must be 0 to 60000");
    if (o->lease_ms && (o->lease_ms < SPW_GPOLL_LEASE_MS_MIN || o->lease_ms > SPW_GPOLL_LEASE_MS_MAX))
        FAIL("lease_ms must be 0 (default 30000) or 100 to 3600000");
    return 0;
}

int spw_gpoll_req_encode(spw_buf *b, const spw_gpoll_req *q)
{
    int r = put16(b, q->stream_len) || put(b, q->stream, q->stream_len) || put16(b, q->group_len) ||
            put(b, q->group, q->group_len) || put16(b, q->member_len) || put(b, q->member, q->member_len) ||
            put8(b, q->start) || put32(b, q->max) || put32(b, q->wait_ms) || put32(b, q->lease_ms);
    return r ? SPW_ENOMEM : 0;
}

int spw_gpoll_resp_decode(const uint8_t *body, size_t len, spw_gpoll_resp *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    memset(o, 0, sizeof *o);
    o->delivered = spw_rd_u8(&r);
    if (r.bad || o->delivered > 1)
        FAIL("group poll answer must start with 0 or 1");
    if (!o->delivered) {
        if (spw_rd_left(&r))
            FAIL("bytes after an empty group poll answer");
        return 0;
    }
    o->partition = spw_rd_u32(&r);
    o->lease_id = spw_rd_u64(&r);
    o->first_offset = spw_rd_u64(&r);
    o->next_offset = spw_rd_u64(&r);
    o->lease_ms = spw_rd_u32(&r);
    o->count = spw_rd_u32(&r);
    if (r.bad)
        FAIL("group poll answer head truncated");
    if (o->next_offset < o->first_offset)
        FAIL("group poll answer's next offset is before its first");
    o->data = r.p;
    o->data_len = spw_rd_left(&r);
    if (o->count == 0 || o->count > o->data_len / FETCH_REC_MIN)
        FAIL("group poll record count is 0 or larger than the frame");
    for (uint32_t i = 0; i < o->count; i++) {
        spw_fetch_rec fr;
        if (fetch_rec_read(&r, &fr))
            FAIL("polled record runs past the frame");
    }
    if (spw_rd_left(&r))
        FAIL("bytes after the last polled record");
    return 0;
}

int spw_gpoll_resp_encode(spw_buf *b, const spw_gpoll_resp *o)
{
    if (!o->delivered)
        return put8(b, 0) ? SPW_ENOMEM : 0;
    int r = put8(b, 1) || put32(b, o->partition) || put64(b, o->lease_id) || put64(b, o->first_offset) ||
            put64(b, o->next_offset) || put32(b, o->lease_ms) || put32(b, o->count) || put(b, o->data, o->data_len);
    return r ? SPW_ENOMEM : 0;
}

void spw_gpoll_iter_init(spw_fetch_iter *it, const spw_gpoll_resp *o)
{
    spw_rd_init(&it->rd, o->data, o->data_len);
    it->left = o->delivered ? o->count : 0;
}

int spw_gcommit_req_decode(const uint8_t *body, size_t len, spw_gcommit_req *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, &o->stream, &o->stream_len, 0))
        FAIL(BAD_STREAM_NAME);
    if (str16(&r, &o->group, &o->group_len, 1, SPW_GROUP_WIRE_MAX))
        FAIL("group name missing, empty, longer than 128 bytes or truncated");
    o->partition = spw_rd_u32(&r);
    o->lease_id = spw_rd_u64(&r);
    o->offset = spw_rd_u64(&r);
    if (r.bad || spw_rd_left(&r))
        FAIL("group commit request has the wrong length");
    return 0;
}

int spw_gcommit_req_encode(spw_buf *b, const spw_gcommit_req *q)
{
    int r = put16(b, q->stream_len) || put(b, q->stream, q->stream_len) || put16(b, q->group_len) ||
            put(b, q->group, q->group_len) || put32(b, q->partition) || put64(b, q->lease_id) || put64(b, q->offset);
    return r ? SPW_ENOMEM : 0;
}

int spw_gcommit_resp_decode(const uint8_t *body, size_t len, uint32_t *partition, uint64_t *committed,
                            const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    *partition = spw_rd_u32(&r);
    *committed = spw_rd_u64(&r);
    if (r.bad || spw_rd_left(&r))
        FAIL("group commit answer has the wrong length");
    return 0;
}

int spw_gcommit_resp_encode(spw_buf *b, uint32_t partition, uint64_t committed)
{
    return put32(b, partition) || put64(b, committed) ? SPW_ENOMEM : 0;
}

/* ---- METADATA ---- */

int spw_metadata_req_decode(const uint8_t *body, size_t len, const char **stream, uint16_t *stream_len,
                            const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, stream, stream_len, 1) || spw_rd_left(&r))
        FAIL("metadata request is a u16 name length (0 = all streams, at most 128) and the name");
    return 0;
}

int spw_metadata_req_encode(spw_buf *b, const char *stream, size_t stream_len)
{
    return put16(b, (uint16_t)stream_len) || put(b, stream, stream_len) ? SPW_ENOMEM : 0;
}

#define META_STREAM_MIN 8u /* name_len, format, ack, partitions */

int spw_metadata_resp_decode(const uint8_t *body, size_t len, spw_metadata_resp *o, const char **why)
{
    spw_rd_init(&o->rd, body, len);
    o->nstreams = spw_rd_u32(&o->rd);
    if (o->rd.bad || o->nstreams > spw_rd_left(&o->rd) / META_STREAM_MIN)
        FAIL("stream count larger than the frame");
    spw_rd r = o->rd;
    for (uint32_t i = 0; i < o->nstreams; i++) {
        const char *name;
        uint16_t nl;
        if (stream_name(&r, &name, &nl, 0))
            FAIL("stream name missing or truncated");
        spw_rd_u8(&r);
        spw_rd_u8(&r);
        uint32_t np = spw_rd_u32(&r);
        if (r.bad || np > spw_rd_left(&r) / 24 || !spw_rd_bytes(&r, (size_t)np * 24))
            FAIL("partition list runs past the frame");
    }
    if (spw_rd_left(&r))
        FAIL("bytes after the last stream");
    return 0;
}

int spw_metadata_resp_next(spw_metadata_resp *o, spw_meta_stream *s)
{
    if (o->nstreams == 0)
        return 0;
    if (stream_name(&o->rd, &s->name, &s->name_len, 0))
        return 0;
    s->format_bytes = spw_rd_u8(&o->rd);
    s->ack = spw_rd_u8(&o->rd);
    s->partitions = spw_rd_u32(&o->rd);
    s->parts = spw_rd_bytes(&o->rd, (size_t)s->partitions * 24);
    if (o->rd.bad)
        return 0;
    o->nstreams--;
    return 1;
}

void spw_meta_part_get(const spw_meta_stream *s, uint32_t i, spw_meta_part *out)
{
    const uint8_t *p = s->parts + (size_t)i * 24;
    out->start_offset = spw_get64(p);
    out->end_offset = spw_get64(p + 8);
    out->durable_offset = spw_get64(p + 16);
}

int spw_metadata_resp_head(spw_buf *b, uint32_t nstreams) { return put32(b, nstreams); }

int spw_metadata_stream_put(spw_buf *b, const char *name, size_t name_len, uint8_t format_bytes, uint8_t ack,
                            uint32_t partitions, const spw_meta_part *parts)
{
    int r = put16(b, (uint16_t)name_len) || put(b, name, name_len) || put8(b, format_bytes) || put8(b, ack) ||
            put32(b, partitions);
    for (uint32_t i = 0; i < partitions && !r; i++)
        r = put64(b, parts[i].start_offset) || put64(b, parts[i].end_offset) || put64(b, parts[i].durable_offset);
    return r ? SPW_ENOMEM : 0;
}

/* ---- AUTH ---- */

int spw_auth_req_decode(const uint8_t *body, size_t len, const char **token, uint16_t *token_len, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    *token_len = spw_rd_u16(&r);
    *token = (const char *)spw_rd_bytes(&r, *token_len);
    if (r.bad || spw_rd_left(&r))
        FAIL("auth request is a u16 token length and the token, nothing else");
    if (*token_len == 0 || *token_len > SPW_AUTH_TOKEN_WIRE_MAX)
        FAIL("auth token must be 1 to 1024 bytes");
    return 0;
}

int spw_auth_req_encode(spw_buf *b, const char *token, size_t token_len)
{
    return put16(b, (uint16_t)token_len) || put(b, token, token_len) ? SPW_ENOMEM : 0;
}

int spw_auth_resp_decode(const uint8_t *body, size_t len, const char **tenant, uint16_t *tenant_len,
                         const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    *tenant_len = spw_rd_u16(&r);
    *tenant = (const char *)spw_rd_bytes(&r, *tenant_len);
    if (r.bad || spw_rd_left(&r))
        FAIL("auth answer is a u16 tenant length and the tenant, nothing else");
    if (*tenant_len > SPW_TENANT_WIRE_MAX)
        FAIL("auth answer tenant longer than 63 bytes");
    return 0;
}

int spw_auth_resp_encode(spw_buf *b, const char *tenant, size_t tenant_len)
{
    return put16(b, (uint16_t)tenant_len) || put(b, tenant, tenant_len) ? SPW_ENOMEM : 0;
}

/* ---- answers ---- */

int spw_answer_decode(const uint8_t *body, size_t len, uint16_t *status, const uint8_t **rest, size_t *rest_len,
                      spw_frame_error *e, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    *status = spw_rd_u16(&r);
    if (r.bad)
        FAIL("answer without a status");
    if (!spw_frame_status_known(*status))
        FAIL("answer status unknown");
    if (*status == SPW_ST_OK) {
        *rest = r.p;
        *rest_len = spw_rd_left(&r);
        return 0;
    }
    e->status = *status;
    e->retry_after_ms = spw_rd_u32(&r);
    e->code_len = spw_rd_u8(&r);
    e->code = (const char *)spw_rd_bytes(&r, e->code_len);
    e->msg_len = spw_rd_u16(&r);
    e->msg = (const char *)spw_rd_bytes(&r, e->msg_len);
    e->has_next_offset = !r.bad && spw_rd_left(&r) == 8;
    e->next_offset = e->has_next_offset ? spw_rd_u64(&r) : 0;
    if (r.bad || spw_rd_left(&r))
        FAIL("error answer has the wrong length");
    *rest = NULL;
    *rest_len = 0;
    return 0;
}

int spw_answer_ok(spw_buf *b) { return put16(b, SPW_ST_OK); }

static int error_encode(spw_buf *b, uint8_t opcode, uint64_t request_id, uint16_t status, uint32_t retry_after_ms,
                        const char *code, const char *msg, const uint64_t *next_offset)
{
    size_t start, cl = strlen(code), ml = strlen(msg);
    if (cl > 255)
        cl = 255;
    if (ml > 1024)
        ml = 1024;
    int r = spw_frame_begin(b, opcode, SPW_FLAG_RESPONSE, request_id, &start);
    r |= put16(b, status) || put32(b, retry_after_ms) || put8(b, (uint8_t)cl) || put(b, code, cl) ||
         put16(b, (uint16_t)ml) || put(b, msg, ml) || (next_offset && put64(b, *next_offset));
    if (r)
        return SPW_ENOMEM;
    spw_frame_finish(b, start);
    return 0;
}

int spw_frame_error_encode(spw_buf *b, uint8_t opcode, uint64_t request_id, uint16_t status,
                           uint32_t retry_after_ms, const char *code, const char *msg)
{
    return error_encode(b, opcode, request_id, status, retry_after_ms, code, msg, NULL);
}

int spw_frame_error_encode_next(spw_buf *b, uint8_t opcode, uint64_t request_id, uint16_t status,
                                const char *code, const char *msg, uint64_t next_offset)
{
    return error_encode(b, opcode, request_id, status, 0, code, msg, &next_offset);
}

/* ---- STREAM_CREATE, STREAM_DESCRIBE ---- */

int spw_stream_create_req_decode(const uint8_t *body, size_t len, const char **name, uint16_t *name_len,
                                 const char **def, uint32_t *def_len, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, name, name_len, 0))
        FAIL(BAD_STREAM_NAME);
    *def_len = spw_rd_u32(&r);
    if (r.bad || *def_len == 0 || *def_len > SPW_STREAM_DEF_WIRE_MAX)
        FAIL("stream definition length missing, 0 or over 64 KiB");
    *def = (const char *)spw_rd_bytes(&r, *def_len);
    if (r.bad || spw_rd_left(&r))
        FAIL("stream definition truncated, or bytes after it");
    return 0;
}

int spw_stream_create_req_encode(spw_buf *b, const char *name, size_t name_len, const char *def, size_t def_len)
{
    return put16(b, (uint16_t)name_len) || put(b, name, name_len) || put32(b, (uint32_t)def_len) ||
                   put(b, def, def_len)
               ? SPW_ENOMEM
               : 0;
}

int spw_greset_req_decode(const uint8_t *body, size_t len, const char **stream, uint16_t *stream_len,
                          const char **group, uint16_t *group_len, const char **json, uint32_t *json_len,
                          const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, stream, stream_len, 0))
        FAIL(BAD_STREAM_NAME);
    if (str16(&r, group, group_len, 1, SPW_GROUP_WIRE_MAX))
        FAIL("group name missing, empty, longer than 128 bytes or truncated");
    *json_len = spw_rd_u32(&r);
    if (r.bad || *json_len == 0 || *json_len > SPW_GROUP_RESET_BODY_WIRE_MAX)
        FAIL("reset body length missing, 0 or over 4096 bytes");
    *json = (const char *)spw_rd_bytes(&r, *json_len);
    if (r.bad || spw_rd_left(&r))
        FAIL("reset body truncated, or bytes after it");
    return 0;
}

int spw_greset_req_encode(spw_buf *b, const char *stream, size_t stream_len, const char *group, size_t group_len,
                          const char *json, size_t json_len)
{
    return put16(b, (uint16_t)stream_len) || put(b, stream, stream_len) || put16(b, (uint16_t)group_len) ||
                   put(b, group, group_len) || put32(b, (uint32_t)json_len) || put(b, json, json_len)
               ? SPW_ENOMEM
               : 0;
}

/* u32 len + JSON text: the rest of an answer. */
static int json_tail(spw_rd *r, const char **json, uint32_t *json_len)
{
    *json_len = spw_rd_u32(r);
    *json = (const char *)spw_rd_bytes(r, *json_len);
    return r->bad || spw_rd_left(r) ? -1 : 0;
}

int spw_stream_create_resp_decode(const uint8_t *body, size_t len, uint8_t *created, const char **json,
                                  uint32_t *json_len, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    *created = spw_rd_u8(&r);
    if (r.bad || *created > 1 || json_tail(&r, json, json_len))
        FAIL("stream create answer is u8 created (0 or 1), u32 length and the definition");
    return 0;
}

int spw_stream_create_resp_encode(spw_buf *b, uint8_t created, const char *json, size_t json_len)
{
    return put(b, &created, 1) || put32(b, (uint32_t)json_len) || put(b, json, json_len) ? SPW_ENOMEM : 0;
}

int spw_stream_describe_req_decode(const uint8_t *body, size_t len, const char **name, uint16_t *name_len,
                                   const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (stream_name(&r, name, name_len, 0) || spw_rd_left(&r))
        FAIL("stream describe request is a u16 name length (1 to 128) and the name");
    return 0;
}

int spw_stream_describe_req_encode(spw_buf *b, const char *name, size_t name_len)
{
    return put16(b, (uint16_t)name_len) || put(b, name, name_len) ? SPW_ENOMEM : 0;
}

int spw_stream_describe_resp_decode(const uint8_t *body, size_t len, const char **json, uint32_t *json_len,
                                    const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    if (json_tail(&r, json, json_len))
        FAIL("stream describe answer is u32 length and the description");
    return 0;
}

int spw_stream_describe_resp_encode(spw_buf *b, const char *json, size_t json_len)
{
    return put32(b, (uint32_t)json_len) || put(b, json, json_len) ? SPW_ENOMEM : 0;
}
/* ---- VIEW_READ ---- */

static int short_word(spw_rd *r, const char **w, uint8_t *len)
{
    *len = spw_rd_u8(r);
    *w = (const char *)spw_rd_bytes(r, *len);
    return r->bad || *len > SPW_VIEW_WORD_WIRE_MAX ? -1 : 0;
}

int spw_view_read_req_decode(const uint8_t *body, size_t len, spw_view_read_req *o, const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    o->what = spw_rd_u8(&r);
    uint8_t flags = spw_rd_u8(&r);
    if (r.bad)
        FAIL("view read request truncated");
    if (o->what < SPW_VIEW_READ_KEY || o->what > SPW_VIEW_READ_TOP)
        FAIL("what must be 1 (key), 2 (series) or 3 (top)");
    if (flags)
        FAIL("view read flags must be 0");
    if (stream_name(&r, &o->view, &o->view_len, 0))
        FAIL("view name missing, empty, longer than 128 bytes or truncated");
    o->key_len = spw_rd_u32(&r);
    o->key = spw_rd_bytes(&r, o->key_len);
    if (r.bad)
        FAIL("view read request truncated");
    if (o->what == SPW_VIEW_READ_TOP ? o->key_len != 0 : o->key_len == 0 || o->key_len > SPW_KEY_WIRE_MAX)
        FAIL("key length must be 1 to 1024 (key, series) or 0 (top)");
    if (short_word(&r, &o->window, &o->window_len) || short_word(&r, &o->by, &o->by_len))
        FAIL("window and by must be at most 31 bytes, inside the frame");
    o->from = (int64_t)spw_rd_u64(&r);
    o->to = (int64_t)spw_rd_u64(&r);
    o->at = (int64_t)spw_rd_u64(&r);
    o->n = spw_rd_u32(&r);
    o->wait_ms = spw_rd_u32(&r);
    o->nmin = spw_rd_u16(&r);
    if (r.bad)
        FAIL("view read request truncated");
    if (o->what != SPW_VIEW_READ_TOP && (o->by_len || o->n))
        FAIL("by and n are for top reads only");
    if (o->n > SPW_VIEW_TOP_WIRE_MAX)
        FAIL("n must be 0 (10) or 1 to 1000");
    if (o->wait_ms > SPW_VIEW_WAIT_WIRE_MAX)
        FAIL("wait_ms must be 0 to 60000");
    if (o->nmin > SPW_VIEW_MIN_WIRE_MAX)
        FAIL("at most 1024 min_offsets pairs");
    o->min = spw_rd_bytes(&r, (size_t)o->nmin * 12);
    if (r.bad)
        FAIL("min_offsets run past the frame");
    if (spw_rd_left(&r))
        FAIL("bytes after the request");
    return 0;
}

void spw_view_read_min(const spw_view_read_req *q, uint16_t i, uint32_t *partition, uint64_t *offset)
{
    spw_rd r;
    spw_rd_init(&r, q->min + (size_t)i * 12, 12);
    *partition = spw_rd_u32(&r);
    *offset = spw_rd_u64(&r);
}

int spw_view_read_req_encode(spw_buf *b, const spw_view_read_req *q, const uint32_t *parts, const uint64_t *offsets)
{
    if (put8(b, q->what) || put8(b, 0) || put16(b, q->view_len) || put(b, q->view, q->view_len) ||
        put32(b, q->key_len) || put(b, q->key, q->key_len) || put8(b, q->window_len) ||
        put(b, q->window, q->window_len) || put8(b, q->by_len) || put(b, q->by, q->by_len) ||
        put64(b, (uint64_t)q->from) || put64(b, (uint64_t)q->to) || put64(b, (uint64_t)q->at) || put32(b, q->n) ||
        put32(b, q->wait_ms) || put16(b, q->nmin))
        return SPW_ENOMEM;
    for (uint16_t i = 0; i < q->nmin; i++)
        if (put32(b, parts[i]) || put64(b, offsets[i]))
            return SPW_ENOMEM;
    return 0;
}

int spw_view_read_resp_encode(spw_buf *b, const void *json, uint32_t len)
{
    return put32(b, len) || put(b, json, len) ? SPW_ENOMEM : 0;
}

int spw_view_read_resp_decode(const uint8_t *body, size_t len, const uint8_t **json, uint32_t *json_len,
                              const char **why)
{
    spw_rd r;
    spw_rd_init(&r, body, len);
    *json_len = spw_rd_u32(&r);
    *json = spw_rd_bytes(&r, *json_len);
    if (r.bad)
        FAIL("view read answer truncated");
    if (spw_rd_left(&r))
        FAIL("bytes after the answer");
    return 0;
}
