/*
 * VIEW_READ over the binary protocol (docs/protocol.md "Views"): a
 * decoder and an encoder over the view service (svc/views.h), the same
 * reads as HTTP's GET /v1/views/V/keys/K, .../series and .../top, with the
 * same answer (the JSON document) and the same checks: consume on the
 * view's stream (on the view's name when there is no such view, which is
 * then answered 404, as HTTP does).
 *
 * Read your writes: with min_offsets the read waits (spw_view_wait) until
 * the view has applied them, at most wait_ms, then answers view_lag; the
 * wait's end is posted back to the connection's loop, and the request
 * counts in flight meanwhile (like a PRODUCE), so the loop never waits.
 * Nor for the disk: a read whose entries are in neither RocksDB's
 * memtable nor its block cache is made on an I/O worker (svc/views.h
 * spw_view_req.uncached), also counting in flight.
 */
#include "bin/bin_int.h"
#include "core/workq.h"
#include "svc/views.h"

/* A view read between its request and its answer (a copy of what the
 * request pointed into: the input buffer moves on). */
typedef struct bview {
    bconn *c;
    uint64_t request_id;
    spw_sc wait_sc;
    spw_view_req r;
    /* a read made on an I/O worker: its answer */
    spw_svc *svc;
    spw_sc sc;
    spw_buf out;
    char err[400];
    char name[SPW_STREAM_NAME_WIRE_MAX + 1];
    char window[SPW_VIEW_WORD_WIRE_MAX + 1], by[SPW_VIEW_WORD_WIRE_MAX + 1];
    uint8_t key[SPW_KEY_WIRE_MAX];
} bview;

/* Sends a view read's answer (sc, out, err: what spw_view_serve gave). */
static void send_answer(bconn *c, uint64_t id, spw_sc sc, const spw_buf *out, const char *err)
{
    if (sc != SPW_SC_OK) {
        spw__bin_send_sc(c, SPW_OP_VIEW_READ, id, sc, 0, "%s", err);
    } else if (!c->closed) {
        size_t start;
        if (spw_frame_begin(&c->out, SPW_OP_VIEW_READ, SPW_FLAG_RESPONSE, id, &start) || spw_answer_ok(&c->out) ||
            spw_view_read_resp_encode(&c->out, out->p, (uint32_t)out->len))
            spw__bin_conn_close(c);
        else
            spw_frame_finish(&c->out, start);
    }
}

/* v's request, which counted in flight, is back on its connection's
 * loop: 1 if the connection is still open. */
static int back_on_loop(bview *v)
{
    v->c->inflight--;
    v->c->loop->inflight--;
    return !v->c->closed;
}

/* A read made on an I/O worker, answered on its connection's loop. */
static void served_on_loop(void *arg)
{
    bview *v = arg;
    if (back_on_loop(v)) {
        send_answer(v->c, v->request_id, v->sc, &v->out, v->err);
        spw__bin_conn_flush(v->c);
    }
    spw_buf_fini(&v->out);
    spw_free(v);
}

static void worker_serve(void *arg)
{
    bview *v = arg;
    int created;
    v->out = (spw_buf)SPW_BUF_INIT;
    v->sc = spw_view_serve(v->svc, &v->r, &v->out, &created, v->err, sizeof v->err);
    spw__bin_loop_post(v->c->loop, served_on_loop, v);
}

/* Serves v on the loop from what RocksDB holds in memory; a read that
 * would read a file of the view's store goes to an I/O worker instead
 * (then 1: v is the worker's until it is answered; the request counts in
 * flight meanwhile). */
static int serve(bconn *c, bview *v)
{
    spw_svc *svc = c->loop->srv->svc;
    spw_buf out = SPW_BUF_INIT;
    char err[400];
    int created, uncached = 0;
    v->r.uncached = svc->io ? &uncached : NULL;
    spw_sc sc = spw_view_serve(svc, &v->r, &out, &created, err, sizeof err);
    v->r.uncached = NULL;
    if (uncached) {
        spw_buf_fini(&out);
        v->svc = svc;
        c->inflight++;
        c->loop->inflight++;
        if (spw_workq_submit(svc->io, worker_serve, v) == 0)
            return 1;
        c->inflight--; /* the queue is full: at once */
        c->loop->inflight--;
        sc = spw_view_serve(svc, &v->r, &out, &created, err, sizeof err);
    }
    send_answer(c, v->request_id, sc, &out, err);
    spw_buf_fini(&out);
    return 0;
}

static void waited_on_loop(void *arg)
{
    bview *v = arg;
    bconn *c = v->c;
    if (back_on_loop(v)) {
        if (v->wait_sc == SPW_SC_OK) {
            if (serve(c, v))
                return;
        } else if (v->wait_sc == SPW_SC_VIEW_LAG) {
            spw__bin_send_sc(c, SPW_OP_VIEW_READ, v->request_id, SPW_SC_VIEW_LAG, 0,
                             "view %s has not applied min_offsets within wait_ms", v->name);
        } else {
            spw__bin_send_sc(c, SPW_OP_VIEW_READ, v->request_id, v->wait_sc, 0, "no view named %s", v->name);
        }
        spw__bin_conn_flush(c);
    }
    spw_free(v);
}

/* From the view's apply thread, or at once from spw_view_wait's caller. */
static void waited(void *arg, spw_sc sc)
{
    bview *v = arg;
    v->wait_sc = sc;
    spw__bin_loop_post(v->c->loop, waited_on_loop, v);
}

void spw__bin_handle_view_read(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_view_read_req q;
    const char *why;
    if (spw_view_read_req_decode(body, len, &q, &why))
        return spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
    spw_svc *svc = c->loop->srv->svc;
    bview *v = spw_xcalloc(1, sizeof *v);
    v->c = c;
    v->request_id = h->request_id;
    memcpy(v->name, q.view, q.view_len);
    memcpy(v->window, q.window, q.window_len);
    memcpy(v->by, q.by, q.by_len);
    memcpy(v->key, q.key, q.key_len);
    v->r = (spw_view_req){.op = q.what == SPW_VIEW_READ_KEY      ? SPW_VIEW_KEY
                                : q.what == SPW_VIEW_READ_SERIES ? SPW_VIEW_SERIES
                                                                 : SPW_VIEW_TOP,
                          .name = v->name, .key = v->key, .klen = q.key_len, .window = v->window, .by = v->by,
                          .from = q.from, .to = q.to, .at = q.at, .n = q.n};
    if (!spw_stream_name_ok(v->name, q.view_len)) {
        spw_free(v);
        return spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_NAME, 0, "view names are " SPW_NAME_RULE);
    }
    /* reading a view is reading its stream */
    char stream[SPW_STREAM_NAME_MAX + 1], msg[300];
    const char *pname = v->name;
    if (svc->views && spw_views_stream_of(svc->views, v->name, stream, sizeof stream) == 0)
        pname = stream;
    const spw_token *who;
    if (!spw__bin_who(c, h, &who)) {
        spw_free(v);
        return;
    }
    spw_sc sc = spw_svc_allowed(svc->auth, who, pname, strlen(pname), SPW_PERM_CONSUME, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw_free(v);
        return spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
    }
    if (q.nmin == 0) {
        if (!serve(c, v))
            spw_free(v);
        return;
    }
    spw_view_min *min = spw_xmalloc(q.nmin * sizeof *min);
    for (uint16_t i = 0; i < q.nmin; i++) {
        spw_view_read_min(&q, i, &min[i].partition, &min[i].offset);
        if (min[i].partition >= SPW_STREAM_PARTITIONS_MAX || min[i].offset == UINT64_MAX) {
            spw_free(min);
            spw_free(v);
            return spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_PARAMETER, 0,
                                    "min_offsets: a partition below %u and an offset below 2^64 - 1",
                                    SPW_STREAM_PARTITIONS_MAX);
        }
    }
    c->inflight++;
    c->loop->inflight++;
    spw_view_wait(svc, v->name, min, q.nmin, q.wait_ms, waited, v);
    spw_free(min);
}
