/*
 * libFuzzer target for the binary protocol codec (src/wire/frame.c,
 * docs/protocol.md).
 *
 * Input: byte 0 selects a body decoder (mod 8; 6 is AUTH request and answer, 7 the
 * consumer-group requests and answers), the rest is its body; the
 * whole input is also cut into frames the way the server's framing loop
 * does (bin/binproto.c conn_process). The decoders run on a heap copy of
 * exactly the input's size, so ASan sees any read past it.
 *
 * Besides "no crash, no sanitizer report" it checks invariants that can fail:
 *  - framing: a decoded header has 12 <= length <= the limit, no unknown
 *    flag bits, and the loop always advances or stops;
 *  - every message that decodes re-encodes to exactly the same bytes (the
 *    encoding is canonical), so decoders and encoders agree field by field;
 *  - iterators return exactly the count the decoder validated, with every
 *    pointer inside the input;
 *  - produce answers: slot counts add up and every record's partition has a slot.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "wire/frame.h"

#define FAILX(...)                                                                                                     \
    do {                                                                                                               \
        fprintf(stderr, "fuzz_frame invariant: " __VA_ARGS__);                                                         \
        fputc('\n', stderr);                                                                                           \
        abort();                                                                                                       \
    } while (0)

static const uint8_t *lo, *hi; /* the current body, for pointer checks */

static void inside(const void *p, size_t n, const char *what)
{
    const uint8_t *c = p;
    if (n && (c < lo || c + n > hi))
        FAILX("%s points outside the input", what);
}

static void same(const spw_buf *b, const uint8_t *p, size_t n, const char *what)
{
    if (b->len != n || memcmp(b->p, p, n) != 0)
        FAILX("%s does not re-encode to the same bytes (%zu vs %zu)", what, b->len, n);
}

static void check_produce_req(const uint8_t *p, size_t n)
{
    spw_produce_req q;
    const char *why = NULL;
    if (spw_produce_req_decode(p, n, &q, &why)) {
        if (!why)
            FAILX("produce request refused without a reason");
        return;
    }
    inside(q.stream, q.stream_len, "stream");
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    if (spw_produce_req_begin(&b, q.stream, q.stream_len, q.ack, q.priority, q.partition, q.producer_id,
                              q.producer_seq, &ca))
        abort();
    spw_frame_rec_iter it;
    spw_frame_rec r;
    uint32_t k = 0;
    spw_frame_rec_iter_init(&it, &q);
    while (spw_frame_rec_next(&it, &r)) {
        inside(r.value, r.value_len, "value");
        if (r.key_len > 0)
            inside(r.key, (size_t)r.key_len, "key");
        if ((r.key_len >= 0) != !!(r.attrs & SPW_REC_HAS_KEY))
            FAILX("key presence disagrees with attrs");
        if (spw_produce_rec_put(&b, &r))
            abort();
        k++;
    }
    if (k != q.count)
        FAILX("iterator gave %u records, count says %u", k, q.count);
    if ((q.flags & SPW_PRODUCE_VERSIONED) && spw_produce_req_put_expect(&b, q.expect, q.expected_version))
        abort();
    spw_produce_req_set_count(&b, ca, k);
    spw_produce_req_set_flags(&b, ca, q.flags);
    same(&b, p, n, "produce request");
    spw_buf_fini(&b);
}

static void check_produce_resp(const uint8_t *p, size_t n)
{
    spw_produce_resp r;
    const char *why;
    if (spw_produce_resp_decode(p, n, &r, &why))
        return;
    spw_produce_slot *slots = malloc((r.nslots + 1) * sizeof *slots);
    uint32_t *parts = malloc((r.nrecords + 1) * sizeof *parts);
    uint64_t sum = 0, superseded = 0;
    for (uint32_t i = 0; i < r.nslots; i++) {
        spw_produce_resp_slot(&r, i, &slots[i]);
        sum += slots[i].count;
    }
    for (uint32_t i = 0; i < r.nrecords; i++) {
        parts[i] = spw_produce_resp_part(&r, i);
        superseded += parts[i] == SPW_PART_SUPERSEDED;
    }
    if (sum != r.nrecords - superseded)
        FAILX("slot counts do not add up");
    uint64_t *vers = NULL;
    if (r.versions) {
        vers = malloc((r.nrecords + 1) * sizeof *vers);
        for (uint32_t i = 0; i < r.nrecords; i++)
            vers[i] = spw_produce_resp_version(&r, i);
    }
    spw_buf b = SPW_BUF_INIT;
    if (spw_produce_resp_encode(&b, slots, r.nslots, parts, r.nrecords, vers))
        abort();
    free(vers);
    same(&b, p, n, "produce answer");
    spw_buf_fini(&b);
    free(slots);
    free(parts);
}

static void check_fetch_req(const uint8_t *p, size_t n)
{
    spw_fetch_req q;
    const char *why;
    if (spw_fetch_req_decode(p, n, &q, &why))
        return;
    spw_buf b = SPW_BUF_INIT;
    if (spw_fetch_req_encode(&b, &q))
        abort();
    same(&b, p, n, "fetch request");
    spw_buf_fini(&b);
}

static void check_fetch_resp(const uint8_t *p, size_t n)
{
    spw_fetch_resp r;
    const char *why;
    if (spw_fetch_resp_decode(p, n, &r, &why))
        return;
    inside(r.data, r.data_len, "fetch data");
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    if (spw_fetch_resp_head(&b, r.start_offset, r.end_offset, r.next_offset, r.mode, &ca))
        abort();
    if (r.mode == SPW_FETCH_RECORDS) {
        spw_fetch_iter it;
        spw_fetch_rec fr;
        uint32_t k = 0;
        spw_fetch_iter_init(&it, &r);
        while (spw_fetch_iter_next(&it, &fr)) {
            inside(fr.value, fr.value_len, "fetched value");
            if (fr.key_len > 0)
                inside(fr.key, (size_t)fr.key_len, "fetched key");
            if (spw_fetch_rec_put(&b, &fr))
                abort();
            k++;
        }
        if (k != r.count)
            FAILX("fetch iterator gave %u records, count says %u", k, r.count);
    } else {
        if (spw_buf_reserve(&b, b.len + r.data_len))
            abort();
        memcpy(b.p + b.len, r.data, r.data_len);
        b.len += r.data_len;
    }
    spw_fetch_resp_set_count(&b, ca, r.count);
    same(&b, p, n, "fetch answer");
    spw_buf_fini(&b);
}

static void check_metadata(const uint8_t *p, size_t n)
{
    const char *s, *why;
    uint16_t sl;
    if (spw_metadata_req_decode(p, n, &s, &sl, &why) == 0) {
        spw_buf b = SPW_BUF_INIT;
        if (spw_metadata_req_encode(&b, s, sl))
            abort();
        same(&b, p, n, "metadata request");
        spw_buf_fini(&b);
    }
    spw_metadata_resp r;
    if (spw_metadata_resp_decode(p, n, &r, &why))
        return;
    spw_buf b = SPW_BUF_INIT;
    uint32_t want = r.nstreams, k = 0;
    if (spw_metadata_resp_head(&b, want))
        abort();
    spw_meta_stream ms;
    while (spw_metadata_resp_next(&r, &ms)) {
        inside(ms.name, ms.name_len, "stream name");
        spw_meta_part *parts = malloc((ms.partitions + 1) * sizeof *parts);
        for (uint32_t i = 0; i < ms.partitions; i++)
            spw_meta_part_get(&ms, i, &parts[i]);
        if (spw_metadata_stream_put(&b, ms.name, ms.name_len, ms.format_bytes, ms.ack, ms.partitions, parts))
            abort();
        free(parts);
        k++;
    }
    if (k != want)
        FAILX("metadata iterator gave %u streams, count says %u", k, want);
    same(&b, p, n, "metadata answer");
    spw_buf_fini(&b);
}

static void check_answer(const uint8_t *p, size_t n)
{
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    if (spw_answer_decode(p, n, &st, &rest, &rl, &e, &why))
        return;
    if (!spw_frame_status_known(st))
        FAILX("unknown status %u accepted", st);
    if (st == 0) {
        if (rest != p + 2 || rl != n - 2)
            FAILX("OK answer's rest is not the remainder");
    } else {
        inside(e.code, e.code_len, "error code");
        inside(e.msg, e.msg_len, "error message");
        /* a damaged answer may end with u64 next_offset (docs/protocol.md) */
        if ((size_t)7 + e.code_len + e.msg_len + 2 + (e.has_next_offset ? 8 : 0) != n)
            FAILX("error answer length mismatch");
    }
}

static void check_auth(const uint8_t *p, size_t n)
{
    const char *s, *why;
    uint16_t sl;
    if (spw_auth_req_decode(p, n, &s, &sl, &why) == 0) {
        inside(s, sl, "token");
        if (sl == 0 || sl > SPW_AUTH_TOKEN_WIRE_MAX)
            FAILX("auth token length %u accepted", sl);
        spw_buf b = SPW_BUF_INIT;
        if (spw_auth_req_encode(&b, s, sl))
            abort();
        same(&b, p, n, "auth request");
        spw_buf_fini(&b);
    }
    if (spw_auth_resp_decode(p, n, &s, &sl, &why) == 0) {
        inside(s, sl, "tenant");
        if (sl > SPW_TENANT_WIRE_MAX)
            FAILX("auth tenant length %u accepted", sl);
        spw_buf b = SPW_BUF_INIT;
        if (spw_auth_resp_encode(&b, s, sl))
            abort();
        same(&b, p, n, "auth answer");
        spw_buf_fini(&b);
    }
}

static void check_keys(const uint8_t *p, size_t n);
static void check_view_read(const uint8_t *p, size_t n);

/* The server's framing loop over the whole input. */
static void check_framing(const uint8_t *p, size_t n)
{
    const uint32_t limit = 1u << 16;
    size_t off = 0;
    for (int guard = 0; guard < 100000; guard++) {
        spw_frame_hdr h;
        int r = spw_frame_hdr_decode(p + off, n - off, limit, &h);
        if (r == SPW_ETRUNC || r == SPW_EMSGSIZE || r == SPW_ECORRUPT)
            return;
        if (r != 0)
            FAILX("header decode returned %d", r);
        if (h.length < SPW_FRAME_MIN_LENGTH || h.length > limit || (h.flags & ~SPW_FLAGS_KNOWN))
            FAILX("accepted a header the server must refuse");
        size_t whole = 4 + (size_t)h.length;
        if (n - off < whole)
            return;
        const uint8_t *body = p + off + SPW_FRAME_HEADER_LEN;
        size_t blen = whole - SPW_FRAME_HEADER_LEN;
        lo = body;
        hi = body + blen;
        switch (h.opcode) {
        case SPW_OP_PRODUCE: check_produce_req(body, blen); break;
        case SPW_OP_FETCH: check_fetch_req(body, blen); break;
        case SPW_OP_METADATA: check_metadata(body, blen); break;
        case SPW_OP_AUTH: check_auth(body, blen); break;
        case SPW_OP_KEY_EVENTS:
        case SPW_OP_SNAPSHOT_PUT: check_keys(body, blen); break;
        case SPW_OP_VIEW_READ: check_view_read(body, blen); break;
        default: check_answer(body, blen); break;
        }
        off += whole;
    }
}

/* KEY_EVENTS and SNAPSHOT_PUT: requests round trip byte for byte; an
 * answer that decodes iterates its count of events inside the body. */
static void check_keys(const uint8_t *p, size_t n)
{
    const char *why = NULL;
    spw_buf b = SPW_BUF_INIT;
    spw_key_events_req q;
    if (spw_key_events_req_decode(p, n, &q, &why) == 0) {
        inside(q.stream, q.stream_len, "stream");
        inside(q.key, q.key_len, "key");
        if (!q.key_len || q.key_len > SPW_KEY_WIRE_MAX || !q.max_records || q.max_records > SPW_KEY_EVENTS_MAX)
            FAILX("key events request out of bounds accepted");
        if (spw_key_events_req_encode(&b, &q))
            abort();
        same(&b, p, n, "key events request");
    }
    b.len = 0;
    spw_snapshot_put_req sp;
    if (spw_snapshot_put_req_decode(p, n, &sp, &why) == 0) {
        inside(sp.key, sp.key_len, "key");
        inside(sp.state, sp.state_len, "state");
        if (spw_snapshot_put_req_encode(&b, &sp))
            abort();
        same(&b, p, n, "snapshot request");
    }
    spw_key_events_resp r;
    if (spw_key_events_resp_decode(p, n, &r, &why) == 0) {
        if (r.state_len)
            inside(r.state, r.state_len, "state");
        uint32_t want = r.count, got = 0;
        spw_key_event e;
        while (spw_key_events_next(&r, &e)) {
            if (e.value_len)
                inside(e.value, e.value_len, "value");
            got++;
        }
        if (got != want)
            FAILX("key events iterator gave %u of %u", got, want);
    }
    spw_buf_fini(&b);
}

/* VIEW_READ: a request that decodes is within its bounds and round trips
 * byte for byte; an answer's JSON lies inside the body. */
static void check_view_read(const uint8_t *p, size_t n)
{
    const char *why = NULL;
    spw_buf b = SPW_BUF_INIT;
    spw_view_read_req q;
    if (spw_view_read_req_decode(p, n, &q, &why) == 0) {
        inside(q.view, q.view_len, "view");
        if (q.key_len)
            inside(q.key, q.key_len, "key");
        if (q.window_len)
            inside(q.window, q.window_len, "window");
        if (q.by_len)
            inside(q.by, q.by_len, "by");
        if (q.nmin)
            inside(q.min, (size_t)q.nmin * 12, "min_offsets");
        if (q.what < SPW_VIEW_READ_KEY || q.what > SPW_VIEW_READ_TOP || q.n > SPW_VIEW_TOP_WIRE_MAX ||
            q.wait_ms > SPW_VIEW_WAIT_WIRE_MAX || q.nmin > SPW_VIEW_MIN_WIRE_MAX ||
            (q.what == SPW_VIEW_READ_TOP) != (q.key_len == 0))
            FAILX("view read request out of bounds accepted");
        uint32_t parts[SPW_VIEW_MIN_WIRE_MAX];
        uint64_t offs[SPW_VIEW_MIN_WIRE_MAX];
        for (uint16_t i = 0; i < q.nmin; i++)
            spw_view_read_min(&q, i, &parts[i], &offs[i]);
        if (spw_view_read_req_encode(&b, &q, parts, offs))
            abort();
        same(&b, p, n, "view read request");
    }
    const uint8_t *j;
    uint32_t jl;
    if (spw_view_read_resp_decode(p, n, &j, &jl, &why) == 0 && jl)
        inside(j, jl, "json");
    spw_buf_fini(&b);
}

/* GROUP_POLL and GROUP_COMMIT: each of the four decoders on the body. */
static void check_groups(const uint8_t *p, size_t n)
{
    const char *why = NULL;
    spw_buf b = SPW_BUF_INIT;
    spw_gpoll_req q;
    if (spw_gpoll_req_decode(p, n, &q, &why) == 0) {
        inside(q.stream, q.stream_len, "stream");
        inside(q.group, q.group_len, "group");
        inside(q.member, q.member_len, "member");
        if (!q.group_len || q.group_len > SPW_GROUP_WIRE_MAX || q.member_len > SPW_MEMBER_WIRE_MAX)
            FAILX("group poll request names out of bounds");
        if (spw_gpoll_req_encode(&b, &q))
            abort();
        same(&b, p, n, "group poll request");
    } else if (!why) {
        FAILX("group poll request refused without a reason");
    }
    spw_gpoll_resp r;
    b.len = 0;
    if (spw_gpoll_resp_decode(p, n, &r, &why) == 0) {
        spw_fetch_iter it;
        spw_fetch_rec fr;
        uint32_t k = 0;
        spw_gpoll_iter_init(&it, &r);
        while (spw_fetch_iter_next(&it, &fr)) {
            inside(fr.value, fr.value_len, "polled value");
            if (fr.key_len > 0)
                inside(fr.key, (size_t)fr.key_len, "polled key");
            k++;
        }
        if (k != r.count || (r.delivered && !k))
            FAILX("group poll iterator gave %u records, count says %u", k, r.count);
        if (spw_gpoll_resp_encode(&b, &r))
            abort();
        same(&b, p, n, "group poll answer");
    }
    spw_gcommit_req c;
    b.len = 0;
    if (spw_gcommit_req_decode(p, n, &c, &why) == 0) {
        inside(c.group, c.group_len, "group");
        if (spw_gcommit_req_encode(&b, &c))
            abort();
        same(&b, p, n, "group commit request");
    }
    uint32_t part;
    uint64_t off;
    b.len = 0;
    if (spw_gcommit_resp_decode(p, n, &part, &off, &why) == 0) {
        if (spw_gcommit_resp_encode(&b, part, off))
            abort();
        same(&b, p, n, "group commit answer");
    }
    spw_buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t *copy = malloc(size);
    memcpy(copy, data, size);
    const uint8_t *body = copy + 1;
    size_t n = size - 1;
    lo = body;
    hi = body + n;
    switch (copy[0] % 8) {
    case 0: check_produce_req(body, n); break;
    case 1: check_produce_resp(body, n); break;
    case 2: check_fetch_req(body, n); break;
    case 3: check_fetch_resp(body, n); break;
    case 4: check_metadata(body, n); break;
    case 5: check_answer(body, n); break;
    case 6: check_auth(body, n); break;
    case 7:
        check_groups(body, n);
        check_keys(body, n);
        check_view_read(body, n);
        break;
    default: break;
    }
    /* exact-size copy of the whole input for the framing loop */
    uint8_t *whole = malloc(size);
    memcpy(whole, data, size);
    check_framing(whole, size);
    free(whole);
    free(copy);
    return 0;
}
