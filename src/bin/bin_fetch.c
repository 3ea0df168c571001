/*
 * FETCH over the binary protocol (docs/protocol.md): reads a partition
 * through the record cursor (log/cursor.h) and answers at once on the
 * loop's thread, with the cursor's damage rule (records before damage are
 * answered; damage itself is the "damaged" error carrying the offset to
 * resume at).
 */
#include "bin/bin_int.h"

/* ---- FETCH ---- */

void spw__bin_handle_fetch(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_fetch_req fq;
    const char *why;
    if (spw_fetch_req_decode(body, len, &fq, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *s = spw__bin_stream(c, h, fq.stream, fq.stream_len, SPW_PERM_CONSUME, NULL);
    if (!s)
        return;
    if (fq.partition >= s->cfg.partitions) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_NO_SUCH_PARTITION, 0,
                         "partition %u does not exist (the stream has %u)", fq.partition, s->cfg.partitions);
        goto out;
    }
    spw_part *p = s->parts[fq.partition];
    spw_part_state st;
    spw_part_state_get(p, &st);
    /* Readers see durable records only (docs/architecture.md, "What
     * readers see"): the end of a FETCH is the durable end. */
    uint64_t vend = st.durable_offset;
    if (fq.offset < st.start_offset || fq.offset > vend) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_OFFSET_OUT_OF_RANGE, 0,
                         "offset %" PRIu64 " is outside the partition's offsets %" PRIu64 "..%" PRIu64, fq.offset,
                         st.start_offset, vend);
        goto out;
    }
    if (fq.offset == vend)
        spw_part_sync_soon(p); /* a reader at the end: fsync what is written after it */
    uint32_t maxb = fq.max_bytes ? fq.max_bytes : FETCH_DEFAULT_BYTES;
    uint32_t cap = c->loop->srv->cfg.max_frame_bytes / 2;
    if (cap > FETCH_MAX_BYTES)
        cap = FETCH_MAX_BYTES;
    if (maxb > cap)
        maxb = cap;
    /* What the budget of unsent answers has left (net/conn.h): the answer
     * is cut to it, and refused when it is spent. */
    uint64_t allow = spw_netconn_out_allow(&c->nc, maxb);
    if (allow == 0) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS,
                         "the server's memory for unsent answers (max-unsent-bytes) is spent on clients that do not "
                         "read theirs; retry later");
        goto out;
    }
    maxb = (uint32_t)allow;
    /* Built apart from out so that a read error can still become an error answer. */
    spw_buf ans = SPW_BUF_INIT;
    size_t fstart, count_at;
    int oom = spw_frame_begin(&ans, SPW_OP_FETCH, SPW_FLAG_RESPONSE, h->request_id, &fstart) ||
              spw_answer_ok(&ans) ||
              spw_fetch_resp_head(&ans, st.start_offset, vend, 0, fq.mode, &count_at);
    /* The record cursor (log/cursor.h) gives the records or the batches;
     * at damage the answer holds what came before it, or, when nothing
     * did, is "damaged" with the offset to resume at. */
    uint64_t next = fq.offset;
    uint32_t count = 0;
    size_t payload = 0;
    spw_cursor cur;
    spw_cursor_init(&cur, p, fq.offset, maxb);
    int n = 0;
    while (!oom && payload < maxb && next < vend) {
        cur.read_bytes = maxb - payload; /* a read when the cursor needs one: what still fits */
        if (fq.mode == SPW_FETCH_BATCHES) {
            const uint8_t *bp;
            const spw_batch_hdr *bh;
            if ((n = spw_cursor_next_batch(&cur, &bp, &bh)) != 1)
                break;
            if (count > 0 && payload + bh->length > maxb)
                break; /* does not fit: stop, so offsets stay dense */
            if (spw_buf_reserve(&ans, ans.len + bh->length)) {
                oom = 1;
                break;
            }
            memcpy(ans.p + ans.len, bp, bh->length);
            ans.len += bh->length;
            payload += bh->length;
            count++;
            next = spw_batch_next_offset(bh);
        } else {
            spw_record_view rv;
            if ((n = spw_cursor_next(&cur, &rv)) != 1)
                break;
            size_t sz = 32 + (rv.key_len > 0 ? (size_t)rv.key_len : 0) + rv.value_len;
            if (count > 0 && payload + sz > maxb)
                break;
            spw_fetch_rec fr = {.offset = rv.offset, .id = rv.id, .ts = rv.ts, .key = rv.key,
                                .key_len = rv.key_len, .value = rv.value, .value_len = rv.value_len};
            if (spw_fetch_rec_put(&ans, &fr)) {
                oom = 1;
                break;
            }
            payload += sz;
            count++;
            next = rv.offset + 1;
        }
    }
    if (!oom && n < 0 && count == 0) {
        spw_buf_fini(&ans);
        if (n == SPW_ECORRUPT && cur.resume)
            spw__bin_send_damaged(c, h->opcode, h->request_id, fq.partition, cur.damage_from, cur.resume);
        else
            spw__bin_send_sc(c, h->opcode, h->request_id, n == SPW_ECORRUPT ? SPW_SC_DAMAGED : SPW_SC_READ_FAILED, 0,
                             "reading offset %" PRIu64 ": %s", next, spw_strerror(n));
        spw_cursor_fini(&cur);
        goto out;
    }
    spw_cursor_fini(&cur);
    if (oom) {
        spw_buf_fini(&ans);
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS, "out of memory");
        goto out;
    }
    /* next_offset sits 8 bytes before the mode byte that precedes count. */
    spw_fetch_resp_set_count(&ans, count_at, count);
    {
        uint8_t *np = ans.p + count_at - 1 - 8;
        memcpy(np, &next, 8);
    }
    spw_frame_finish(&ans, fstart);
    if (c->out.len == c->out_off) {
        spw_buf t = c->out;
        c->out = ans;
        ans = t;
        c->out_off = 0;
    } else if (spw_buf_reserve(&c->out, c->out.len + ans.len) == 0) {
        memcpy(c->out.p + c->out.len, ans.p, ans.len);
        c->out.len += ans.len;
    } else {
        spw__bin_conn_close(c);
    }
    spw_buf_fini(&ans);
out:
    spw_stream_put(s);
}
