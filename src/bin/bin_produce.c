/*
 * PRODUCE over the binary protocol: the decoder and encoder over the
 * produce service (svc/produce.h), which owns admission, validation,
 * dedupe, coalescing and the submit. A refused PRODUCE is answered at
 * once; an accepted one is counted in flight and answered when the
 * service posts its result back to the connection's loop (produce_answer),
 * so a connection closed meanwhile stays a zombie until then.
 */
#include "bin/bin_int.h"
#include "es/es.h"

/* The wire's expectations are the service's (es/es.h). */
_Static_assert((int)SPW_EXPECT_ANY == (int)SPW_ES_ANY && (int)SPW_EXPECT_NONE == (int)SPW_ES_NONE &&
                   (int)SPW_EXPECT_EXISTS == (int)SPW_ES_EXISTS && (int)SPW_EXPECT_EXACT == (int)SPW_ES_EXACT,
               "wire expectations differ from es.h's");

/* ---- PRODUCE: the binary decoder and encoder over the service (svc/produce.h) ---- */

/* A PRODUCE in flight. */
typedef struct breq {
    bconn *c;
    uint64_t request_id;
    int versioned; /* SPW_PRODUCE_VERSIONED: the answer carries each record's version */
} breq;

/* A produce's answer as a frame: the OK answer with each record's
 * partition, or the error with the status and word of the status table. */
static void produce_send(bconn *c, uint64_t request_id, int versioned, spw_produce_res *r)
{
    if (c->closed)
        return;
    if (r->code == SPW_SC_VERSION_CONFLICT) {
        /* The key's current version rides where a damaged answer has its
         * next_offset (docs/protocol.md "Versioned streams"). */
        if (spw_frame_error_encode_next(&c->out, SPW_OP_PRODUCE, request_id, spw_sc_wire(r->code),
                                        spw_sc_wire_word(r->code), r->msg, r->current_version))
            spw__bin_conn_close(c);
        return;
    }
    if (r->code != SPW_SC_OK) {
        if (r->at_event && r->at_byte)
            spw__bin_send_sc(c, SPW_OP_PRODUCE, request_id, r->code, r->retry_ms,
                             "record %u (byte %zu of its value): %s; nothing was appended", r->index, r->byte, r->msg);
        else if (r->at_event)
            spw__bin_send_sc(c, SPW_OP_PRODUCE, request_id, r->code, r->retry_ms, "record %u: %s; nothing was appended",
                             r->index, r->msg);
        else
            spw__bin_send_sc(c, SPW_OP_PRODUCE, request_id, r->code, r->retry_ms, "%s", r->msg);
        return;
    }
    spw_produce_slot *slots = spw_xmalloc((r->nslots ? r->nslots : 1) * sizeof *slots);
    for (uint32_t k = 0; k < r->nslots; k++)
        slots[k] = (spw_produce_slot){.partition = r->slots[k].partition,
                                      .first_offset = r->slots[k].first_offset,
                                      .count = r->slots[k].count};
    uint32_t n = r->n_events;
    for (uint32_t i = 0; i < n; i++)
        if (r->part_of[i] == UINT32_MAX)
            r->part_of[i] = SPW_PART_SUPERSEDED;
    /* Versions not known (a duplicate whose records cannot be read back):
     * zeros */
    uint64_t *versions = NULL;
    if (versioned) {
        versions = spw_xcalloc(n ? n : 1, sizeof *versions);
        if (r->version_of)
            memcpy(versions, r->version_of, n * sizeof *versions);
    }
    size_t start;
    int e = spw_frame_begin(&c->out, SPW_OP_PRODUCE, SPW_FLAG_RESPONSE, request_id, &start);
    if (!e)
        e = spw_answer_ok(&c->out);
    if (!e)
        e = spw_produce_resp_encode(&c->out, slots, r->nslots, r->part_of, n, versioned ? versions : NULL);
    if (!e)
        spw_frame_finish(&c->out, start);
    else
        spw__bin_conn_close(c);
    spw_free(versions);
    spw_free(slots);
}

static void produce_answer(spw_produce_res *res, void *user)
{
    breq *q = user;
    bconn *c = q->c;
    SPW_ASSERT(c->inflight > 0 && c->loop->inflight > 0); /* answered once, after being dispatched */
    c->inflight--;
    c->loop->inflight--;
    if (!c->closed) {
        produce_send(c, q->request_id, q->versioned, res);
        spw__bin_conn_flush_soon(c);
    }
    spw_free(q);
}

static void bin_post_loop(void *loop, void (*fn)(void *), void *arg) { spw__bin_loop_post(loop, fn, arg); }

/* A produce's working memory comes from the input budget (produce.h). */
static void work_add(void *m, uint64_t n) { spw_membudget_add(m, n); }
static void work_give(void *m, uint64_t n) { spw_membudget_give(m, n); }

/* The records of a PRODUCE frame, as events. */
typedef struct frame_src {
    spw_frame_rec_iter it;
    uint32_t i;
} frame_src;

/* Up to max records at a time (spw_produce_next_many): the frame was
 * decoded, so the records are read without checks. */
static int frame_next(void *arg, spw_produce_ev *ev, uint32_t max, spw_produce_res *res)
{
    (void)res;
    frame_src *x = arg;
    spw_frame_rec fr;
    uint32_t n = 0;
    while (n < max && spw_frame_rec_next(&x->it, &fr)) {
        ev[n] = (spw_produce_ev){.value = (const char *)fr.value, .len = fr.value_len, .key = fr.key,
                                 .key_len = fr.key_len, .has_ts = (fr.attrs & SPW_REC_HAS_TS) != 0, .ts = fr.ts,
                                 .index = x->i++};
        n++;
    }
    return (int)n;
}

void spw__bin_handle_produce(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    spw_produce_req pq;
    const char *why;
    if (spw_produce_req_decode(body, len, &pq, &why)) {
        atomic_fetch_add(&svc->rejected[SPW_REJ_INVALID], 1);
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_sc sc;
    spw_stream *s = spw__bin_stream(c, h, pq.stream, pq.stream_len, SPW_PERM_PRODUCE, &sc);
    if (!s) {
        if (sc == SPW_SC_BAD_NAME) /* an invalid produce, over HTTP too (docs/operations.md) */
            atomic_fetch_add(&svc->rejected[SPW_REJ_INVALID], 1);
        return;
    }
    frame_src src = {.i = 0};
    spw_frame_rec_iter_init(&src.it, &pq);
    breq *q = spw_xmalloc(sizeof *q);
    q->c = c;
    q->request_id = h->request_id;
    q->versioned = (pq.flags & SPW_PRODUCE_VERSIONED) != 0;
    spw_produce_in in = {.s = s,
                         .tenant = c->tenant,
                         .peer = c->peer,
                         .priority = pq.priority == SPW_WIRE_PRIORITY_DEFAULT ? -1 : pq.priority,
                         .ack = pq.ack == SPW_ACK_DEFAULT ? -1 : pq.ack,
                         .partition = pq.partition == SPW_PARTITION_ANY ? UINT32_MAX : pq.partition,
                         .count_hint = pq.count,
                         .trailing = SPW_PRODUCE_TRAIL_OBJECT,
                         .next_many = frame_next,
                         .src = &src,
                         .producer_id = pq.producer_id,
                         .producer_seq = pq.producer_seq,
                         .supersede_ok = (pq.flags & SPW_PRODUCE_SUPERSEDE_OK) != 0,
                         .want_parts = 1,
                         .has_expect = q->versioned,
                         .expect = pq.expect, /* SPW_EXPECT_* are es.h's spw_es_expect (asserted above) */
                         .expected_version = pq.expected_version,
                         .post = bin_post_loop,
                         .loop = c->loop,
                         .done = produce_answer,
                         .user = q};
    spw_membudget *m = c->loop->srv->cfg.buffers;
    if (m) { /* counted in the input budget, beside the frame */
        in.work_add = work_add;
        in.work_give = work_give;
        in.work = m;
    }
    /* Counted before the call: the answer of a submitted request comes
     * later on this loop, and the connection stays allocated until then. */
    c->inflight++;
    c->loop->inflight++;
    spw_produce_res res;
    if (spw_produce_request(svc, &in, &res) == 0)
        return;
    c->inflight--;
    c->loop->inflight--;
    int versioned = q->versioned;
    spw_free(q);
    produce_send(c, h->request_id, versioned, &res);
    spw_produce_res_fini(&res);
}
