/*
 * Record batch encoding and decoding: see format.h and docs/formats/log.md.
 * Decoding trusts nothing: every length is checked against the bytes that
 * are really there before it is used, so a corrupt or hostile batch yields
 * SPW_ECORRUPT, never a read outside the buffer.
 */
#include "log/format.h"

#include <assert.h>
#include <lz4.h>
#include <string.h>
#include <zstd.h>

#include "core/crc32c.h"
#include "core/endian.h"
#include "core/varint.h"

/* One record's share of spw_batch_bound. In size_t: u32 lengths near
 * UINT32_MAX must not wrap the bound. */
static inline size_t record_bound(const spw_record *r)
{
    size_t total = 5 + 10 + 5 + 10 + 10 + 5 + 5 + 5 + (size_t)r->value_len + (r->key_len > 0 ? (size_t)r->key_len : 0);
    if (__builtin_expect(r->header_count != 0, 0))
        for (uint32_t k = 0; k < r->header_count; k++)
            total += 10 + (size_t)r->headers[k].key_len + (size_t)r->headers[k].value_len;
    return total;
}

size_t spw_batch_bound(const spw_record *recs, uint32_t n)
{
    size_t total = SPW_BATCH_HEADER_LEN;
    for (uint32_t i = 0; i < n; i++)
        total += record_bound(&recs[i]);
    return total;
}

static inline __attribute__((always_inline)) uint8_t *
encode_records_t(uint8_t *p, const spw_record *recs, int has_order, const uint32_t *order, uint32_t n,
                 int64_t first_ts, const spw_idgen *g, uint64_t first_ticket, const uint64_t *tickets, int versioned,
                 const spw_batch_opts *o, uint64_t base_id)
{
    if (!has_order)
        order = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const spw_record *r = &recs[has_order ? order[i] : i];
        /* Record i's ticket: given, or counted from the first (ticket_base
         * + order[i] with an order: the caller's reservation). */
        uint64_t ticket = tickets ? tickets[i] : has_order ? o->ticket_base + order[i] : first_ticket + i;
        uint64_t id = g ? spw_id_from_ticket(g, ticket) : 0;
        /* The body's length comes first: the fields before the key go to
         * head, the rest is counted, then each byte is written once, in
         * place (no move of the body after its length). */
        uint8_t head[48], *h = head; /* at most 10 + 5 + 10 + 10 + 5 bytes */
        /* Modulo 2^64: any two int64 timestamps have a delta that round-trips. */
        h += spw_varint_put(h, spw_zigzag((int64_t)((uint64_t)r->ts - (uint64_t)first_ts)));
        h += spw_varint_put(h, i);
        h += spw_varint_put(h, id - base_id);
        if (versioned) /* only in batches with SPW_BATCH_ATTR_VERSIONED */
            h += spw_varint_put(h, r->version);
        h += spw_varint_put(h, spw_zigzag(r->key_len));
        size_t hl = (size_t)(h - head), kl = r->key_len > 0 ? (size_t)r->key_len : 0;
        size_t body_len = hl + kl + spw_varint_len(r->value_len) + r->value_len + spw_varint_len(r->header_count);
        for (uint32_t k = 0; k < r->header_count; k++) {
            const spw_kv *kv = &r->headers[k];
            body_len += spw_varint_len(kv->key_len) + kv->key_len + spw_varint_len(kv->value_len) + kv->value_len;
        }
        uint8_t *q = p + spw_varint_put(p, body_len);
        /* All of head, a fixed size (a few stores, not a call): the bytes
         * past hl are overwritten next. It fits: spw_batch_bound gives
         * each record 55 bytes beside its key, value and headers, and
         * the length took at most 5 of them. */
        memcpy(q, head, sizeof head);
        q += hl;
        if (kl >= 8 && kl <= 16) {
            /* The common key: its first and last 8 bytes (they may
             * overlap), two moves instead of a call. */
            uint64_t a, b;
            memcpy(&a, r->key, 8);
            memcpy(&b, (const uint8_t *)r->key + kl - 8, 8);
            memcpy(q, &a, 8);
            memcpy(q + kl - 8, &b, 8);
            q += kl;
        } else if (kl) {
            memcpy(q, r->key, kl);
            q += kl;
        }
        q += spw_varint_put(q, r->value_len);
        if (r->value_len) {
            memcpy(q, r->value, r->value_len);
            q += r->value_len;
        }
        q += spw_varint_put(q, r->header_count);
        for (uint32_t k = 0; k < r->header_count; k++) {
            const spw_kv *kv = &r->headers[k];
            q += spw_varint_put(q, kv->key_len);
            memcpy(q, kv->key, kv->key_len);
            q += kv->key_len;
            q += spw_varint_put(q, kv->value_len);
            memcpy(q, kv->value, kv->value_len);
            q += kv->value_len;
        }
        p = q;
    }
    return p;
}

/* The common cases (ids from counted tickets, no versions; the records in
 * place, or through an order as a request's) compiled apart: no per-record
 * test of the order, the tickets or the version. */
static uint8_t *encode_records(uint8_t *p, const spw_record *recs, const uint32_t *order, uint32_t n, int64_t first_ts,
                               const spw_idgen *g, uint64_t first_ticket, const spw_batch_opts *o, uint64_t base_id)
{
    if (!o->tickets && !o->versioned && g) {
        if (order)
            return encode_records_t(p, recs, 1, order, n, first_ts, g, first_ticket, NULL, 0, o, base_id);
        return encode_records_t(p, recs, 0, NULL, n, first_ts, g, first_ticket, NULL, 0, o, base_id);
    }
    return encode_records_t(p, recs, order != NULL, order, n, first_ts, g, first_ticket, o->tickets, o->versioned, o,
                            base_id);
}

/* Each record's checks, the newest timestamp and the bound (a version
 * above vmax is refused: none is allowed outside a versioned batch).
 * Inline, so a call without an order has no test of it per record. */
static inline __attribute__((always_inline)) int check_records(const spw_record *recs, int has_order,
                                                               const uint32_t *order, uint32_t n, int versioned,
                                                               int64_t *max_ts, size_t *bound)
{
    uint64_t vmax = versioned ? SPW_VERSION_MAX : 0;
    int64_t mx = *max_ts;
    size_t b = *bound;
    for (uint32_t i = 0; i < n; i++) {
        if (has_order && i > 0 && order[i] <= order[i - 1])
            return SPW_EINVAL;
        const spw_record *r = &recs[has_order ? order[i] : i];
        if (r->version > vmax || r->key_len < -1)
            return SPW_EINVAL;
        mx = r->ts > mx ? r->ts : mx;
        b += record_bound(r);
    }
    *max_ts = mx;
    *bound = b;
    return 0;
}

int spw_batch_encode(spw_buf *out, spw_buf *scratch, const spw_record *recs, uint32_t n, const spw_batch_opts *o)
{
    static const spw_batch_opts defaults;
    if (!o)
        o = &defaults;
    if (n == 0 || n > SPW_BATCH_MAX_RECORDS)
        return SPW_EINVAL;
    if (o->compression < SPW_COMPRESS_NONE || o->compression > SPW_COMPRESS_ZSTD)
        return SPW_EINVAL;
    const uint32_t *order = o->order;
    /* One pass: each record's checks, the newest timestamp and the bound. */
    int64_t first_ts = recs[order ? order[0] : 0].ts, max_ts = first_ts;
    size_t bound = SPW_BATCH_HEADER_LEN;
    int r = order ? check_records(recs, 1, order, n, o->versioned, &max_ts, &bound)
                  : check_records(recs, 0, NULL, n, o->versioned, &max_ts, &bound);
    if (r)
        return r;
    if (bound - SPW_BATCH_HEADER_LEN > SPW_BATCH_MAX_LEN * 2ull)
        return SPW_EMSGSIZE;

    if (o->tickets)
        for (uint32_t i = 1; i < n; i++)
            if (o->tickets[i] <= o->tickets[i - 1])
                return SPW_EINVAL;
    uint64_t first_ticket = !o->idgen         ? 0
                            : o->tickets      ? o->tickets[0]
                            : order           ? o->ticket_base + order[0]
                                              : spw_idgen_reserve(o->idgen, n);
    if (o->first_ticket)
        *o->first_ticket = first_ticket;
    uint64_t base_id = o->idgen ? spw_id_from_ticket(o->idgen, first_ticket) : 0;

    size_t records_len, stored_len;
    if (o->compression == SPW_COMPRESS_NONE) {
        if ((r = spw_buf_reserve(out, bound)))
            return r;
        uint8_t *end = encode_records(out->p + SPW_BATCH_HEADER_LEN, recs, order, n, first_ts, o->idgen, first_ticket,
                                      o, base_id);
        records_len = stored_len = (size_t)(end - out->p) - SPW_BATCH_HEADER_LEN;
    } else {
        if ((r = spw_buf_reserve(scratch, bound)))
            return r;
        uint8_t *end = encode_records(scratch->p, recs, order, n, first_ts, o->idgen, first_ticket, o, base_id);
        records_len = (size_t)(end - scratch->p);
        if (records_len > SPW_BATCH_MAX_LEN)
            return SPW_EMSGSIZE;
        size_t cbound = o->compression == SPW_COMPRESS_LZ4 ? (size_t)LZ4_compressBound((int)records_len)
                                                          : ZSTD_compressBound(records_len);
        if ((r = spw_buf_reserve(out, SPW_BATCH_HEADER_LEN + cbound)))
            return r;
        if (o->compression == SPW_COMPRESS_LZ4) {
            int c = LZ4_compress_fast((const char *)scratch->p, (char *)out->p + SPW_BATCH_HEADER_LEN,
                                      (int)records_len, (int)cbound, o->level > 0 ? o->level : 1);
            if (c <= 0)
                return SPW_EINVAL;
            stored_len = (size_t)c;
        } else {
            size_t c = ZSTD_compress(out->p + SPW_BATCH_HEADER_LEN, cbound, scratch->p, records_len,
                                     o->level ? o->level : 3);
            if (ZSTD_isError(c))
                return SPW_EINVAL;
            stored_len = c;
        }
    }
    size_t length = SPW_BATCH_HEADER_LEN + stored_len;
    if (records_len > SPW_BATCH_MAX_LEN || length > SPW_BATCH_MAX_LEN)
        return SPW_EMSGSIZE;

    uint8_t *h = out->p;
    spw_put64(h + 0, 0);
    spw_put32(h + 8, (uint32_t)length);
    spw_put32(h + 16, SPW_BATCH_MAGIC);
    h[20] = SPW_BATCH_VERSION;
    h[21] = (uint8_t)(o->compression | (o->versioned ? SPW_BATCH_ATTR_VERSIONED : 0));
    spw_put16(h + 22, SPW_BATCH_HEADER_LEN);
    spw_put32(h + 24, n);
    spw_put32(h + 28, (uint32_t)records_len);
    spw_put64(h + 32, (uint64_t)first_ts);
    spw_put64(h + 40, (uint64_t)max_ts);
    spw_put64(h + 48, base_id);
    spw_put64(h + 56, o->producer_id);
    spw_put32(h + 64, o->producer_seq);
    spw_put32(h + 68, o->request_count);
    spw_put64(h + 72, o->idem_hash);
    spw_put32(h + 12, spw_crc32c(h + SPW_BATCH_CRC_START, length - SPW_BATCH_CRC_START));
    out->len = length;
    return 0;
}

void spw_batch_set_base_offset(uint8_t *batch, uint64_t base_offset) { spw_put64(batch, base_offset); }

int spw_batch_parse(const uint8_t *p, size_t avail, spw_batch_hdr *h)
{
    if (avail < SPW_BATCH_HEADER_LEN)
        return SPW_ETRUNC;
    if (spw_get32(p + 16) != SPW_BATCH_MAGIC || p[20] != SPW_BATCH_VERSION)
        return SPW_ECORRUPT;
    h->base_offset = spw_get64(p);
    h->length = spw_get32(p + 8);
    h->crc = spw_get32(p + 12);
    h->version = p[20];
    h->attributes = p[21];
    h->header_len = spw_get16(p + 22);
    h->record_count = spw_get32(p + 24);
    h->records_len = spw_get32(p + 28);
    h->first_ts = (int64_t)spw_get64(p + 32);
    h->max_ts = (int64_t)spw_get64(p + 40);
    h->base_id = spw_get64(p + 48);
    h->producer_id = spw_get64(p + 56);
    h->producer_seq = spw_get32(p + 64);
    h->request_count = spw_get32(p + 68);
    h->idem_hash = spw_get64(p + 72);
    if (h->header_len != SPW_BATCH_HEADER_LEN || h->length < SPW_BATCH_HEADER_LEN || h->length > SPW_BATCH_MAX_LEN)
        return SPW_ECORRUPT;
    if (h->record_count == 0 || h->record_count > SPW_BATCH_MAX_RECORDS || h->records_len > SPW_BATCH_MAX_LEN)
        return SPW_ECORRUPT;
    if ((h->attributes & ~SPW_BATCH_ATTR_KNOWN) || (h->attributes & SPW_BATCH_ATTR_COMPRESSION) > SPW_COMPRESS_ZSTD)
        return SPW_ECORRUPT;
    if (h->base_offset > UINT64_MAX - h->record_count || h->max_ts < h->first_ts)
        return SPW_ECORRUPT;
    /* Each record takes at least 6 bytes, so the count bounds the size. */
    if ((uint64_t)h->record_count * 6 > h->records_len)
        return SPW_ECORRUPT;
    if ((h->attributes & SPW_BATCH_ATTR_COMPRESSION) == SPW_COMPRESS_NONE &&
        h->records_len != h->length - SPW_BATCH_HEADER_LEN)
        return SPW_ECORRUPT;
    return 0;
}

int spw_batch_verify(const uint8_t *p, const spw_batch_hdr *h)
{
    uint32_t crc = spw_crc32c(p + SPW_BATCH_CRC_START, h->length - SPW_BATCH_CRC_START);
    return crc == h->crc ? 0 : SPW_ECORRUPT;
}

int spw_batch_check(const uint8_t *p, size_t avail, spw_batch_hdr *h)
{
    int r = spw_batch_parse(p, avail, h);
    if (r)
        return r;
    if (h->length > avail)
        return SPW_ETRUNC;
    return spw_batch_verify(p, h);
}

int spw_batch_records(const uint8_t *p, const spw_batch_hdr *h, spw_buf *scratch, const uint8_t **recs,
                      size_t *len)
{
    const uint8_t *src = p + SPW_BATCH_HEADER_LEN;
    size_t src_len = h->length - SPW_BATCH_HEADER_LEN;
    int comp = h->attributes & SPW_BATCH_ATTR_COMPRESSION;
    if (comp == SPW_COMPRESS_NONE) {
        *recs = src;
        *len = src_len;
        return 0;
    }
    int r = spw_buf_reserve(scratch, h->records_len);
    if (r)
        return r;
    if (comp == SPW_COMPRESS_LZ4) {
        int d = LZ4_decompress_safe((const char *)src, (char *)scratch->p, (int)src_len, (int)h->records_len);
        if (d < 0 || (uint32_t)d != h->records_len)
            return SPW_ECORRUPT;
    } else {
        size_t d = ZSTD_decompress(scratch->p, h->records_len, src, src_len);
        if (ZSTD_isError(d) || d != h->records_len)
            return SPW_ECORRUPT;
    }
    scratch->len = h->records_len;
    *recs = scratch->p;
    *len = h->records_len;
    return 0;
}

void spw_rec_iter_init(spw_rec_iter *it, const spw_batch_hdr *h, const uint8_t *recs, size_t len)
{
    it->p = recs;
    it->end = recs + len;
    it->h = h;
    it->index = 0;
}

/* Reads a varint that must fit in [*p, end); advances *p. */
static int take(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    size_t n = spw_varint_get(*p, end, v);
    if (!n)
        return SPW_ECORRUPT;
    *p += n;
    return 0;
}

int spw_rec_next(spw_rec_iter *it, spw_record_view *out)
{
    if (it->index == it->h->record_count)
        return it->p == it->end ? 0 : SPW_ECORRUPT;
    uint64_t len, tsd, offd, idd, ver = 0, klz, vl, hc;
    const uint8_t *p = it->p;
    if (take(&p, it->end, &len) || len > (uint64_t)(it->end - p))
        return SPW_ECORRUPT;
    const uint8_t *end = p + len;
    if (take(&p, end, &tsd) || take(&p, end, &offd) || take(&p, end, &idd))
        return SPW_ECORRUPT;
    if ((it->h->attributes & SPW_BATCH_ATTR_VERSIONED) && (take(&p, end, &ver) || ver > SPW_VERSION_MAX))
        return SPW_ECORRUPT;
    if (take(&p, end, &klz))
        return SPW_ECORRUPT;
    if (offd != it->index)
        return SPW_ECORRUPT;
    int64_t kl = spw_unzigzag(klz);
    if (kl < -1 || kl > (int64_t)(end - p))
        return SPW_ECORRUPT;
    out->key = kl >= 0 ? p : NULL;
    out->key_len = (int32_t)kl;
    if (kl > 0)
        p += kl;
    if (take(&p, end, &vl) || vl > (uint64_t)(end - p))
        return SPW_ECORRUPT;
    out->value = p;
    out->value_len = (uint32_t)vl;
    p += vl;
    if (take(&p, end, &hc) || hc > (uint64_t)(end - p))
        return SPW_ECORRUPT;
    out->headers = p;
    out->headers_len = (size_t)(end - p);
    out->header_count = (uint32_t)hc;
    /* Validate the headers now so users of spw_kv_next see clean data. */
    const uint8_t *q = p;
    spw_kv kv;
    for (uint64_t k = 0; k < hc; k++)
        if (spw_kv_next(&q, end, &kv) != 1)
            return SPW_ECORRUPT;
    if (q != end)
        return SPW_ECORRUPT;
    out->offset = it->h->base_offset + it->index;
    out->id = it->h->base_id + idd;
    out->version = ver;
    out->ts = (int64_t)((uint64_t)it->h->first_ts + (uint64_t)spw_unzigzag(tsd)); /* modulo 2^64, as encoded */
    it->p = end;
    it->index++;
    return 1;
}

int spw_kv_next(const uint8_t **pp, const uint8_t *end, spw_kv *out)
{
    const uint8_t *p = *pp;
    if (p == end)
        return 0;
    uint64_t kl, vl;
    if (take(&p, end, &kl) || kl > (uint64_t)(end - p))
        return SPW_ECORRUPT;
    out->key = p;
    out->key_len = (uint32_t)kl;
    p += kl;
    if (take(&p, end, &vl) || vl > (uint64_t)(end - p))
        return SPW_ECORRUPT;
    out->value = p;
    out->value_len = (uint32_t)vl;
    p += vl;
    *pp = p;
    return 1;
}
