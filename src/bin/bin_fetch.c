/*
 * FETCH over the binary protocol (docs/protocol.md): reads a partition
 * through the record cursor (log/cursor.h) on an I/O worker and answers
 * on the connection's loop, with the cursor's damage rule (records before damage are
 * answered; damage itself is the "damaged" error carrying the offset to
 * resume at).
 */
#include "bin/bin_int.h"
#include "core/workq.h"

/* ---- FETCH ---- */

/*
 * The request is checked on the loop (decoding, permission, partition,
 * range); the answer is built on an I/O worker (svc->io, core/workq.h) —
 * the cursor's reads of segments — and posted back to the connection's
 * loop, which sends it: a FETCH of 16 MiB from a slow disk never holds up
 * the loop's other connections. Without workers it is built in place.
 */
typedef struct fetch_job {
    bconn *c;
    spw_stream *s;
    spw_part *p;
    uint8_t opcode, mode;
    uint64_t request_id;
    uint32_t partition, maxb;
    uint64_t offset, start, vend;
    /* the answer: ans (a whole frame), or an error */
    spw_buf ans;
    int err;           /* 0, SPW_EAGAIN (busy), SPW_ENOMEM, or the read error */
    uint64_t err_next; /* the read error's offset */
    uint64_t damage_from, resume;
    int in_place; /* answered inside the handler: the frame loop flushes */
    size_t promised; /* counted in c->promised until answered */
    uint64_t reserved; /* of the unsent-answer budget, given back when answered */
} fetch_job;

/* On a worker (or in place): the cursor's reads, the answer's frame. */
static void fetch_build(fetch_job *j)
{
    spw_buf *ans = &j->ans;
    size_t fstart, count_at;
    int oom = spw_frame_begin(ans, SPW_OP_FETCH, SPW_FLAG_RESPONSE, j->request_id, &fstart) ||
              spw_answer_ok(ans) || spw_fetch_resp_head(ans, j->start, j->vend, 0, j->mode, &count_at);
    /* The record cursor (log/cursor.h) gives the records or the batches;
     * at damage the answer holds what came before it, or, when nothing
     * did, is "damaged" with the offset to resume at. */
    uint64_t next = j->offset;
    uint32_t count = 0;
    size_t payload = 0;
    uint32_t maxb = j->maxb;
    spw_cursor cur;
    spw_cursor_init(&cur, j->p, j->offset, maxb);
    int n = 0;
    while (!oom && payload < maxb && next < j->vend) {
        cur.read_bytes = maxb - payload; /* a read when the cursor needs one: what still fits */
        if (j->mode == SPW_FETCH_BATCHES) {
            const uint8_t *bp;
            const spw_batch_hdr *bh;
            if ((n = spw_cursor_next_batch(&cur, &bp, &bh)) != 1)
                break;
            if (count > 0 && payload + bh->length > maxb)
                break; /* does not fit: stop, so offsets stay dense */
            if (spw_buf_reserve(ans, ans->len + bh->length)) {
                oom = 1;
                break;
            }
            memcpy(ans->p + ans->len, bp, bh->length);
            ans->len += bh->length;
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
            if (spw_fetch_rec_put(ans, &fr)) {
                oom = 1;
                break;
            }
            payload += sz;
            count++;
            next = rv.offset + 1;
        }
    }
    if (!oom && n < 0 && count == 0) {
        j->err = n;
        j->err_next = next;
        if (n == SPW_ECORRUPT && cur.resume) {
            j->damage_from = cur.damage_from;
            j->resume = cur.resume;
        }
        spw_cursor_fini(&cur);
        return;
    }
    spw_cursor_fini(&cur);
    if (oom) {
        j->err = SPW_ENOMEM;
        return;
    }
    /* next_offset sits 8 bytes before the mode byte that precedes count. */
    spw_fetch_resp_set_count(ans, count_at, count);
    memcpy(ans->p + count_at - 1 - 8, &next, 8);
    spw_frame_finish(ans, fstart);
}

/* On the connection's loop: the answer goes out (unless c is gone). */
static void fetch_answer(void *arg)
{
    fetch_job *j = arg;
    bconn *c = j->c;
    SPW_ASSERT(c->inflight > 0 && c->loop->inflight > 0); /* answered once, after being dispatched */
    c->inflight--;
    c->loop->inflight--;
    c->promised -= j->promised;
    /* The reservation becomes the answer's bytes (net/conn.h), or is given
     * back for a small one. */
    uint64_t built = c->closed || j->err ? 0 : j->ans.len;
    if (!built)
        spw_netconn_out_release(&c->nc, j->reserved);
    if (c->closed) {
        /* the connection is gone: nothing to send */
    } else if (j->err == SPW_EAGAIN) {
        spw__bin_send_sc(c, j->opcode, j->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS,
                         "too many reads are waiting for the disk");
    } else if (j->err == SPW_ENOMEM) {
        spw__bin_send_sc(c, j->opcode, j->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS, "out of memory");
    } else if (j->err == SPW_ECORRUPT && j->resume) {
        spw__bin_send_damaged(c, j->opcode, j->request_id, j->partition, j->damage_from, j->resume);
    } else if (j->err) {
        spw__bin_send_sc(c, j->opcode, j->request_id, spw_sc_read(j->err),
                         0, "reading offset %" PRIu64 ": %s", j->err_next, spw_strerror(j->err));
    } else if (c->out.len == c->out_off) {
        spw_buf t = c->out;
        c->out = j->ans;
        j->ans = t;
        c->out_off = 0;
    } else if (spw_buf_reserve(&c->out, c->out.len + j->ans.len) == 0) {
        memcpy(c->out.p + c->out.len, j->ans.p, j->ans.len);
        c->out.len += j->ans.len;
    } else {
        spw__bin_conn_close(c);
    }
    if (built)
        spw_netconn_out_transfer(&c->nc, j->reserved, c->closed ? 0 : built);
    if (!c->closed && !j->in_place)
        spw__bin_conn_flush(c); /* in place, the caller's frame loop flushes */
    spw_buf_fini(&j->ans);
    spw_stream_put(j->s);
    spw_free(j);
}

static void fetch_worker(void *arg)
{
    fetch_job *j = arg;
    fetch_build(j);
    spw__bin_loop_post(j->c->loop, fetch_answer, j);
}

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
    /* What the budget of unsent answers has left (net/conn.h), reserved
     * now so that FETCHes built at once on the workers are not each
     * allowed the same room: the answer is cut to it, and refused when it
     * is spent. */
    uint64_t allow = spw_netconn_out_reserve(&c->nc, maxb);
    if (allow == 0) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS,
                         "the server's memory for unsent answers (max-unsent-bytes) is spent on clients that do not "
                         "read theirs; retry later");
        goto out;
    }
    maxb = (uint32_t)allow;
    fetch_job *j = spw_xcalloc(1, sizeof *j);
    *j = (fetch_job){.c = c,
                     .reserved = allow,
                     .s = s, /* the handler's reference, given back by fetch_answer */
                     .p = p,
                     .opcode = h->opcode,
                     .request_id = h->request_id,
                     .partition = fq.partition,
                     .offset = fq.offset,
                     .mode = fq.mode,
                     .maxb = maxb,
                     .start = st.start_offset,
                     .vend = vend,
                     .ans = SPW_BUF_INIT};
    /* Counted in flight until answered, like a PRODUCE. */
    c->inflight++;
    c->loop->inflight++;
    spw_workq *io = c->loop->srv->svc->io;
    j->promised = (size_t)maxb + 4096;
    c->promised += j->promised;
    if (io && spw_workq_submit(io, fetch_worker, j) == 0)
        return;
    j->in_place = 1;
    if (io)
        j->err = SPW_EAGAIN; /* the queue is full: answered busy at once */
    else
        fetch_build(j);
    fetch_answer(j);
    return;
out:
    spw_stream_put(s);
}
