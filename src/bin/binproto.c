/*
 * The binary protocol over the connection core (net/conn.h): see
 * binproto.h and docs/protocol.md. The core owns the loops, accepting,
 * closing, zombies, the budget's waiters, writing `out`, ticks and the
 * drain; this file frames, dispatches and encodes (the callbacks in
 * bin_proto near the end).
 *
 * A connection's bytes accumulate in `in`; whole frames are cut from it
 * and dispatched in order. PRODUCE is the produce service's
 * (svc/produce.h): decoded here, answered at once when refused, else
 * asynchronously (the service posts the answer back to the loop); FETCH
 * and METADATA answer at once. Answers are appended to `out` and written
 * as the socket takes them. A connection that is closed with requests
 * still in flight stays allocated (on the zombie list) until the last one
 * completes, so a completion never touches freed memory. GROUP_POLL and
 * GROUP_COMMIT answer at once or later from the group waiter
 * (svc/consume.h), counted in flight like a PRODUCE meanwhile.
 *
 * Bounds: `in` holds at most one frame plus one read (a frame's length is
 * checked against max_frame_bytes before we wait for it); requests in
 * flight are capped by max_pipelined and unsent answers by OUT_PAUSE_BYTES:
 * past either the loop stops reading that socket. `in` is memory of the
 * buffer budget shared with HTTP (net/membudget.h): it grows a read at a
 * time, and to the whole size of a frame as soon as its header is in, each
 * step taken from the budget all or nothing; without room the connection
 * stops reading and waits on its loop's list of waiters (a frame begun
 * still has its request-timeout clock running) — except that a connection
 * holding none of it still reads SMALL_READ bytes, so small requests
 * (METADATA, FETCH, small PRODUCEs) go on while big ones wait. Once every
 * whole frame in it is dispatched and nothing is left over, `in` is freed,
 * so an idle connection holds none of the budget.
 */
#include "bin/binproto.h"
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/error.h"
#include "core/invariant.h"
#include "core/id.h"
#include "core/json.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "wire/frame.h"
#include "net/membudget.h"
#include "svc/auth.h"
#include "svc/consume.h"
#include "svc/metrics.h"
#include "svc/produce.h"
#include "svc/request.h"
#include "svc/status.h"

#define READ_CHUNK SPW_NET_READ_CHUNK
#define SMALL_READ SPW_NET_SMALL_READ
#define OUT_PAUSE_BYTES SPW_NET_OUT_PAUSE_BYTES
#define FETCH_DEFAULT_BYTES (1u << 20)
#define FETCH_MAX_BYTES (16u << 20)
#define RETRY_AFTER_MS 1000

typedef struct bloop bloop;

/* A connection: the core's fields (net/conn.h: fd, out, inflight,
 * closed, ...) by name, then the binary protocol's. */
typedef struct bconn {
    union {
        spw_netconn nc;
        struct {
            SPW_NETCONN_FIELDS
        };
    };
    bloop *loop; /* nc.nl as the binary protocol's loop */
    spw_buf in;  /* in.cap bytes are taken from the buffer budget */
    size_t in_off;
    int held; /* a PRODUCE waits, unread, for pressure to fall below the low watermark */
    uint64_t frame_start_ms;
    char tenant[64]; /* set by authentication; "" when no tokens are configured */
    spw_auth_session auth; /* the AUTH login (svc/auth.h) */
} bconn;

struct bloop {
    union {
        spw_netloop nl;
        struct {
            SPW_NETLOOP_FIELDS
        };
    };
    spw_bin_server *srv;
    uint32_t nheld;    /* connections held by pressure */
    int in_group_call; /* a group poll/commit may answer inside the call: no flush there */
};

struct spw_bin_server {
    spw_netsrv ns; /* loops, connections, drain (net/conn.h) */
    spw_bin_config cfg;
    spw_svc *svc;
    _Atomic uint64_t st_requests, st_rejected;
};

static uint64_t now_ms(void) { return spw_mono_ms(); }

/* ---- posting work to a loop ---- */

static void loop_post(bloop *l, void (*fn)(void *), void *arg)
{
    spw_netloop_post(&l->nl, fn, arg);
}


/* ---- connections ---- */

static bconn *bc(spw_netconn *c) { return (bconn *)c; }

static uint32_t bin_events(spw_netconn *nc)
{
    bconn *c = bc(nc);
    return (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0) | (c->rdhup ? 0 : EPOLLRDHUP);
}

static void set_events(bconn *c) { spw_netconn_set_events(&c->nc); }

/* ---- the buffer budget ---- */

static spw_membudget *budget_of(bloop *l) { return l->srv->cfg.buffers; }

/*
 * Makes room for need bytes in `in` (rounded up to a read), taking the
 * growth from the budget: 0, SPW_EAGAIN (no room now), SPW_ENOMEM.
 */
static int in_reserve(bconn *c, size_t need)
{
    if (need <= c->in.cap)
        return 0;
    size_t cap = (need + READ_CHUNK - 1) / READ_CHUNK * READ_CHUNK;
    spw_membudget *m = budget_of(c->loop);
    if (spw_membudget_take(m, cap - c->in.cap))
        return SPW_EAGAIN;
    uint8_t *p = spw_try_realloc(c->in.p, cap);
    if (!p) {
        spw_membudget_give(m, cap - c->in.cap);
        return SPW_ENOMEM;
    }
    c->in.p = p;
    c->in.cap = cap;
    return 0;
}

static void in_free(bconn *c)
{
    spw_membudget_give(budget_of(c->loop), c->in.cap);
    spw_buf_fini(&c->in);
    c->in_off = 0;
}

static void conn_update_reading(bconn *c);

/* Stops reading c until the budget has room (the loop's waiters). */
static void wait_for_room(bconn *c) { spw_netconn_wait_for_room(&c->nc); }

static void unwait(bconn *c) { spw_netconn_unwait(&c->nc); }

/* The budget has room again for c, which waited: unpaused, frames already
 * buffered go on; if the budget still cannot take it, it waits again
 * (conn_read, conn_process). */
static void bin_room(spw_netconn *c) { conn_update_reading(bc(c)); }

/* Socket closed (net/conn.h). `in` stays until conn_free: a handler may
 * still be reading a frame in it (an answer it could not encode closes
 * the connection). */
static void bin_closing(spw_netconn *nc)
{
    bconn *c = bc(nc);
    if (c->held) {
        c->held = 0;
        c->loop->nheld--;
    }
}

static void conn_close(bconn *c) { spw_netconn_close(&c->nc); }

static void bin_conn_free(spw_netconn *nc)
{
    bconn *c = bc(nc);
    spw_auth_session_fini(&c->auth);
    in_free(c);
}

/*
 * Above the high watermark (admit.h level 3) a PRODUCE of priority 1..3 is
 * not read: the connection stops reading until pressure falls below the
 * low watermark, so the producer's socket buffers fill and TCP flow
 * control slows it down, with no memory taken here. Priority 0 goes on
 * (the log's own budget is its only limit). A body too short to say is
 * left to the decoder, which answers it.
 */
static void conn_update_reading(bconn *c);
static int hold_produce(bconn *c, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    if (!spw_produce_holding(svc) || c->loop->stopping || len < 2)
        return 0;
    size_t sl = (size_t)body[0] | (size_t)body[1] << 8;
    if (len < 2 + sl + 2)
        return 0;
    int prio = body[2 + sl + 1];
    return spw_produce_hold(svc, (const char *)body + 2, sl, prio == SPW_WIRE_PRIORITY_DEFAULT ? -1 : prio);
}

/* Lets held connections go on once pressure is below the low watermark. */
static void release_held(bloop *l)
{
    if (!l->nheld || (!l->stopping && spw_produce_holding(l->srv->svc)))
        return;
    for (bconn *c = bc(l->conns); c; c = bc(c->next)) {
        if (c->held && !c->closed) {
            c->held = 0;
            l->nheld--;
            c->frame_start_ms = 0;
            conn_update_reading(c);
        }
    }
}

static void conn_process(bconn *c);

/* Reading is on unless a limit or a pending close says otherwise. */
static void conn_update_reading(bconn *c)
{
    if (c->closed)
        return;
    uint32_t cap = c->loop->srv->cfg.max_pipelined;
    int want_pause = c->close_after || c->held || c->mem_wait || c->loop->stopping || c->inflight >= cap ||
                     c->out.len - c->out_off > OUT_PAUSE_BYTES;
    if (want_pause != c->paused) {
        c->paused = want_pause;
        set_events(c);
        if (!want_pause)
            conn_process(c); /* frames already buffered */
    }
}

static void conn_flush(bconn *c)
{
    if (c->closed || spw_netconn_send(&c->nc) != 1)
        return;
    if (c->close_after && c->inflight == 0) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
}

/* Sends the error answer of status-table code sc (svc/status.h): its
 * binary status and word, with the sentence fmt. */
static void send_sc(bconn *c, uint8_t opcode, uint64_t id, spw_sc sc, uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void send_sc(bconn *c, uint8_t opcode, uint64_t id, spw_sc sc, uint32_t retry_after_ms, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->closed)
        return;
    if (spw_frame_error_encode(&c->out, opcode, id, spw_sc_wire(sc), retry_after_ms, spw_sc_wire_word(sc), msg))
        conn_close(c);
}

/* "damaged" for offsets [from, resume) of partition part, carrying resume
 * as the error answer's next_offset (docs/protocol.md, "Answers"). */
static void send_damaged(bconn *c, uint8_t opcode, uint64_t id, uint32_t part, uint64_t from, uint64_t resume)
{
    char msg[256];
    snprintf(msg, sizeof msg,
             "partition %" PRIu32 " offsets %" PRIu64 "..%" PRIu64 " are damaged on disk (run spillway check); "
             "reading can resume at offset %" PRIu64,
             part, from, resume - 1, resume);
    if (!c->closed && spw_frame_error_encode_next(&c->out, opcode, id, spw_sc_wire(SPW_SC_DAMAGED),
                                                  spw_sc_wire_word(SPW_SC_DAMAGED), msg, resume))
        conn_close(c);
}

static void conn_fatal(bconn *c, spw_sc sc, const char *msg)
{
    if (c->close_after)
        return;
    atomic_fetch_add(&c->loop->srv->st_rejected, 1);
    send_sc(c, 0, 0, sc, 0, "%s; closing the connection", msg);
    c->close_after = 1;
    unwait(c);
    in_free(c);
    conn_flush(c);
    conn_update_reading(c);
}

/* ---- AUTH ---- */

static void handle_auth(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_auth *a = c->loop->srv->svc->auth;
    const char *tok, *why;
    uint16_t tl;
    if (spw_auth_req_decode(body, len, &tok, &tl, &why)) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    if (a) {
        if (spw_auth_session_login(a, &c->auth, tok, tl)) {
            c->tenant[0] = 0;
            atomic_fetch_add(&a->unauthorized, 1);
            send_sc(c, h->opcode, h->request_id, SPW_SC_UNAUTHORIZED, 0,
                    "the token is not valid; this connection is not authenticated");
            return;
        }
        snprintf(c->tenant, sizeof c->tenant, "%s", c->auth.e->tenant);
    }
    size_t start;
    if (spw_frame_begin(&c->out, SPW_OP_AUTH, SPW_FLAG_RESPONSE, h->request_id, &start) ||
        spw_answer_ok(&c->out) || spw_auth_resp_encode(&c->out, c->tenant, strlen(c->tenant))) {
        conn_close(c);
        return;
    }
    spw_frame_finish(&c->out, start);
}

/*
 * With tokens configured: is this connection's login (still) valid? 1 go
 * on, with *who its token (NULL without tokens), 0 answered 401.
 */
static int bin_who(bconn *c, const spw_frame_hdr *h, const spw_token **who)
{
    spw_auth *a = c->loop->srv->svc->auth;
    *who = NULL;
    if (!a)
        return 1;
    *who = spw_auth_session_who(a, &c->auth);
    if (!*who) {
        c->tenant[0] = 0;
        atomic_fetch_add(&a->unauthorized, 1);
        send_sc(c, h->opcode, h->request_id, SPW_SC_UNAUTHORIZED, 0, "%s",
                c->auth.token_len ? "the token this connection authenticated with is no longer valid"
                                  : "this server needs a token: send AUTH first");
        return 0;
    }
    if (strcmp(c->tenant, (*who)->tenant) != 0)
        snprintf(c->tenant, sizeof c->tenant, "%s", (*who)->tenant);
    return 1;
}

/* The stream a request names, after the checks every request makes
 * (svc/request.h: login, name, permission, existence); NULL after the
 * error answer. sc_out (may be NULL) gets the code. */
static spw_stream *bin_stream(bconn *c, const spw_frame_hdr *h, const char *name, size_t len, unsigned perms,
                              spw_sc *sc_out)
{
    spw_svc *svc = c->loop->srv->svc;
    const spw_token *who;
    spw_stream *s = NULL;
    char msg[300];
    spw_sc sc = SPW_SC_UNAUTHORIZED;
    if (bin_who(c, h, &who)) {
        sc = spw_svc_stream_for(svc->cat, svc->auth, who, name, len, perms, &s, msg, sizeof msg);
        if (sc != SPW_SC_OK)
            send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
    }
    if (sc_out)
        *sc_out = sc;
    return s;
}

/* ---- PRODUCE: the binary decoder and encoder over the service (svc/produce.h) ---- */

/* A PRODUCE in flight. */
typedef struct breq {
    bconn *c;
    uint64_t request_id;
} breq;

/* A produce's answer as a frame: the OK answer with each record's
 * partition, or the error with the status and word of the status table. */
static void produce_send(bconn *c, uint64_t request_id, spw_produce_res *r)
{
    if (c->closed)
        return;
    if (r->code != SPW_SC_OK) {
        if (r->at_event && r->at_byte)
            send_sc(c, SPW_OP_PRODUCE, request_id, r->code, r->retry_ms,
                    "record %u (byte %zu of its value): %s; nothing was appended", r->index, r->byte, r->msg);
        else if (r->at_event)
            send_sc(c, SPW_OP_PRODUCE, request_id, r->code, r->retry_ms, "record %u: %s; nothing was appended",
                    r->index, r->msg);
        else
            send_sc(c, SPW_OP_PRODUCE, request_id, r->code, r->retry_ms, "%s", r->msg);
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
    size_t start;
    int e = spw_frame_begin(&c->out, SPW_OP_PRODUCE, SPW_FLAG_RESPONSE, request_id, &start);
    if (!e)
        e = spw_answer_ok(&c->out);
    if (!e)
        e = spw_produce_resp_encode(&c->out, slots, r->nslots, r->part_of, n);
    if (!e)
        spw_frame_finish(&c->out, start);
    else
        conn_close(c);
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
        produce_send(c, q->request_id, res);
        conn_flush(c);
    }
    spw_free(q);
}

static void bin_post_loop(void *loop, void (*fn)(void *), void *arg) { loop_post(loop, fn, arg); }

/* The records of a PRODUCE frame, as events. */
typedef struct frame_src {
    spw_frame_rec_iter it;
    uint32_t i;
} frame_src;

static int frame_next(void *arg, spw_produce_ev *ev, spw_produce_res *res)
{
    (void)res;
    frame_src *x = arg;
    spw_frame_rec fr;
    if (!spw_frame_rec_next(&x->it, &fr))
        return 0;
    *ev = (spw_produce_ev){.value = (const char *)fr.value, .len = fr.value_len, .key = fr.key,
                           .key_len = fr.key_len, .has_ts = (fr.attrs & SPW_REC_HAS_TS) != 0, .ts = fr.ts,
                           .index = x->i++};
    return 1;
}

static void handle_produce(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    spw_produce_req pq;
    const char *why;
    if (spw_produce_req_decode(body, len, &pq, &why)) {
        atomic_fetch_add(&svc->rejected[SPW_REJ_INVALID], 1);
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_sc sc;
    spw_stream *s = bin_stream(c, h, pq.stream, pq.stream_len, SPW_PERM_PRODUCE, &sc);
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
    spw_produce_in in = {.s = s,
                         .tenant = c->tenant,
                         .peer = c->peer,
                         .priority = pq.priority == SPW_WIRE_PRIORITY_DEFAULT ? -1 : pq.priority,
                         .ack = pq.ack == SPW_WIRE_ACK_DEFAULT ? -1 : pq.ack,
                         .partition = pq.partition == SPW_PARTITION_ANY ? UINT32_MAX : pq.partition,
                         .count_hint = pq.count,
                         .trailing = SPW_PRODUCE_TRAIL_OBJECT,
                         .next = frame_next,
                         .src = &src,
                         .producer_id = pq.producer_id,
                         .producer_seq = pq.producer_seq,
                         .supersede_ok = (pq.flags & SPW_PRODUCE_SUPERSEDE_OK) != 0,
                         .want_parts = 1,
                         .post = bin_post_loop,
                         .loop = c->loop,
                         .done = produce_answer,
                         .user = q};
    /* Counted before the call: the answer of a submitted request comes
     * later on this loop, and the connection stays allocated until then. */
    c->inflight++;
    c->loop->inflight++;
    spw_produce_res res;
    if (spw_produce_request(svc, &in, &res) == 0)
        return;
    c->inflight--;
    c->loop->inflight--;
    spw_free(q);
    produce_send(c, h->request_id, &res);
    spw_produce_res_fini(&res);
}

/* ---- FETCH ---- */

static void handle_fetch(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_fetch_req fq;
    const char *why;
    if (spw_fetch_req_decode(body, len, &fq, &why)) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *s = bin_stream(c, h, fq.stream, fq.stream_len, SPW_PERM_CONSUME, NULL);
    if (!s)
        return;
    if (fq.partition >= s->cfg.partitions) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_NO_SUCH_PARTITION, 0,
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
        send_sc(c, h->opcode, h->request_id, SPW_SC_OFFSET_OUT_OF_RANGE, 0,
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
            send_damaged(c, h->opcode, h->request_id, fq.partition, cur.damage_from, cur.resume);
        else
            send_sc(c, h->opcode, h->request_id, n == SPW_ECORRUPT ? SPW_SC_DAMAGED : SPW_SC_READ_FAILED, 0,
                    "reading offset %" PRIu64 ": %s", next, spw_strerror(n));
        spw_cursor_fini(&cur);
        goto out;
    }
    spw_cursor_fini(&cur);
    if (oom) {
        spw_buf_fini(&ans);
        send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS, "out of memory");
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
        conn_close(c);
    }
    spw_buf_fini(&ans);
out:
    spw_stream_put(s);
}

/* ---- METADATA ---- */

typedef struct meta_ctx {
    spw_buf *b;
    uint32_t n;
    int oom;
    const spw_token *who; /* NULL: no tokens configured, every stream */
} meta_ctx;

static void meta_one(void *arg, spw_stream *s)
{
    meta_ctx *m = arg;
    if (m->who && !spw_token_sees(m->who, s->cfg.name, strlen(s->cfg.name)))
        return;
    uint32_t np = s->cfg.partitions;
    spw_meta_part *parts = spw_xmalloc(np * sizeof *parts);
    for (uint32_t i = 0; i < np; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        /* end_offset: the written end; FETCH sees below durable_offset only
         * (docs/protocol.md, METADATA). */
        parts[i] = (spw_meta_part){st.start_offset, st.written_offset, st.durable_offset};
    }
    if (spw_metadata_stream_put(m->b, s->cfg.name, strlen(s->cfg.name), (uint8_t)s->cfg.format_bytes,
                                (uint8_t)s->cfg.ack, np, parts))
        m->oom = 1;
    m->n++;
    spw_free(parts);
}

static void handle_metadata(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    const char *name;
    uint16_t nl;
    const char *why;
    if (spw_metadata_req_decode(body, len, &name, &nl, &why)) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *one = NULL;
    if (nl) {
        one = bin_stream(c, h, name, nl, 0, NULL);
        if (!one)
            return;
    }
    spw_buf ans = SPW_BUF_INIT;
    size_t fstart, count_at;
    meta_ctx m = {.b = &ans, .who = svc->auth ? spw_auth_session_who(svc->auth, &c->auth) : NULL};
    m.oom = spw_frame_begin(&ans, SPW_OP_METADATA, SPW_FLAG_RESPONSE, h->request_id, &fstart) ||
            spw_answer_ok(&ans);
    count_at = ans.len;
    m.oom |= spw_metadata_resp_head(&ans, 0) != 0;
    if (one) {
        meta_one(&m, one);
        spw_stream_put(one);
    } else {
        spw_catalog_each(svc->cat, meta_one, &m);
    }
    if (m.oom || spw_buf_reserve(&c->out, c->out.len + ans.len)) {
        spw_buf_fini(&ans);
        send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS, "out of memory");
        return;
    }
    memcpy(ans.p + count_at, &m.n, 4);
    spw_frame_finish(&ans, fstart);
    memcpy(c->out.p + c->out.len, ans.p, ans.len);
    c->out.len += ans.len;
    spw_buf_fini(&ans);
}

/* ---- GROUP_POLL, GROUP_COMMIT (consumer groups: svc/consume.h) ---- */


/* A group poll or commit between its request and its answer. */
typedef struct bgroup {
    bconn *c;
    uint64_t request_id;
    uint32_t partition; /* commit */
    uint64_t offset;    /* commit */
} bgroup;

static void bin_post(void *loop, void (*fn)(void *), void *arg) { loop_post(loop, fn, arg); }

/* The request is answered (or its connection is gone): 1 if c can take
 * the answer. */
static int group_answered(bconn *c)
{
    c->inflight--;
    c->loop->inflight--;
    return !c->closed;
}

/* Answers from the group waiter go out now; inside the call that made the
 * request, conn_process flushes. */
static void group_flush(bconn *c)
{
    if (!c->closed && !c->loop->in_group_call)
        conn_flush(c);
}

/*
 * Records of partition p from `from`, as FETCH mode 0 encodes them, into
 * recs: at most max records and, past the first, max_bytes bytes. Returns
 * the count (> 0) with *next one past the last, 0 if none is readable, or
 * a read error (SPW_ECORRUPT: *bad the offset to resume at, 0 if unknown).
 * The record cursor's rules (log/cursor.h): records before damage are
 * returned, the damage itself only when nothing came before it.
 */
static int group_read(spw_part *p, uint64_t from, uint32_t max, size_t max_bytes, spw_buf *recs, uint64_t *next,
                      uint64_t *bad)
{
    spw_cursor cur;
    spw_cursor_init(&cur, p, from, max_bytes);
    uint32_t count = 0;
    int err = 0;
    *next = from;
    spw_record_view rv;
    while (count < max) {
        cur.read_bytes = max_bytes > recs->len ? max_bytes - recs->len : 1;
        int n = spw_cursor_next(&cur, &rv);
        if (n <= 0) {
            if (n < 0 && count == 0) {
                err = n;
                *bad = n == SPW_ECORRUPT ? cur.resume : 0;
            }
            break;
        }
        size_t sz = 32 + (rv.key_len > 0 ? (size_t)rv.key_len : 0) + rv.value_len;
        if (count > 0 && recs->len + sz > max_bytes)
            break;
        spw_fetch_rec fr = {.offset = rv.offset, .id = rv.id, .ts = rv.ts, .key = rv.key,
                            .key_len = rv.key_len, .value = rv.value, .value_len = rv.value_len};
        if (spw_fetch_rec_put(recs, &fr)) {
            err = count ? 0 : SPW_ENOMEM;
            break;
        }
        count++;
        *next = rv.offset + 1;
    }
    spw_cursor_fini(&cur);
    return err ? err : (int)count;
}

/* spw_consume_read_lease's read: group_read into recs (emptied first). */
typedef struct group_rd {
    spw_part *p;
    uint32_t max;
    size_t max_bytes;
    spw_buf *recs;
} group_rd;

static int group_read_lease(void *arg, uint64_t from, uint64_t *next, uint64_t *bad)
{
    group_rd *rd = arg;
    rd->recs->len = 0;
    return group_read(rd->p, from, rd->max, rd->max_bytes, rd->recs, next, bad);
}

/* The answer "nothing was leased" (delivered 0) to q. */
static void group_send_empty(bconn *c, bgroup *q)
{
    spw_gpoll_resp a = {.delivered = 0};
    size_t start;
    if (spw_frame_begin(&c->out, SPW_OP_GROUP_POLL, SPW_FLAG_RESPONSE, q->request_id, &start) ||
        spw_answer_ok(&c->out) || spw_gpoll_resp_encode(&c->out, &a))
        conn_close(c);
    else
        spw_frame_finish(&c->out, start);
    group_flush(c);
}

static void group_deliver(spw_group_poll *p, spw_lease *l)
{
    bgroup *q = p->ctx;
    bconn *c = q->c;
    if (!group_answered(c)) {
        spw_group_release(p->g, l); /* nobody to deliver to: free for the others at once */
        spw_free(q);
        return;
    }
    size_t maxb = c->loop->srv->cfg.max_frame_bytes / 2;
    if (maxb > FETCH_MAX_BYTES)
        maxb = FETCH_MAX_BYTES;
    spw_buf recs = SPW_BUF_INIT;
    group_rd rd = {p->s->parts[l->partition], p->max, maxb, &recs};
    uint64_t next, bad;
    int n = spw_consume_read_lease(p, l, group_read_lease, &rd, &next, &bad);
    if (n == 0) { /* nothing readable after the damage yet: an empty answer */
        spw_group_release(p->g, l);
        spw_buf_fini(&recs);
        group_send_empty(c, q);
        spw_free(q);
        return;
    }
    if (n <= 0) {
        spw_group_release(p->g, l);
        if (n == SPW_ECORRUPT && bad > l->from)
            send_damaged(c, SPW_OP_GROUP_POLL, q->request_id, l->partition, l->from, bad);
        else
            send_sc(c, SPW_OP_GROUP_POLL, q->request_id, SPW_SC_READ_FAILED, 0,
                    "reading partition %" PRIu32 " at %" PRIu64 ": %s", l->partition, l->from,
                    n ? spw_strerror(n) : "no records");
    } else {
        spw_group_lease_delivered(p->g, l, next);
        spw_gpoll_resp a = {.delivered = 1, .partition = l->partition, .lease_id = l->id, .first_offset = l->from,
                            .next_offset = next, .lease_ms = p->lease_ms, .count = (uint32_t)n, .data = recs.p,
                            .data_len = recs.len};
        size_t start;
        if (spw_frame_begin(&c->out, SPW_OP_GROUP_POLL, SPW_FLAG_RESPONSE, q->request_id, &start) ||
            spw_answer_ok(&c->out) || spw_gpoll_resp_encode(&c->out, &a))
            conn_close(c); /* the lease expires and its records go to another poll */
        else
            spw_frame_finish(&c->out, start);
    }
    spw_buf_fini(&recs);
    group_flush(c);
    spw_free(q);
}

static void group_nothing(spw_group_poll *p)
{
    bgroup *q = p->ctx;
    bconn *c = q->c;
    if (group_answered(c))
        group_send_empty(c, q);
    spw_free(q);
}

/* The stream of a group request, after the checks every one makes (names,
 * permission, groups enabled); NULL after an error answer. */
static spw_stream *group_stream(bconn *c, const spw_frame_hdr *h, const char *stream, uint16_t sl, const char *group,
                                uint16_t gl, const char *member, uint16_t ml)
{
    spw_svc *svc = c->loop->srv->svc;
    char msg[300];
    spw_sc sc = spw_svc_names(stream, sl, group, gl, member, ml, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
        return NULL;
    }
    if (!svc->groups) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_NOT_FOUND, 0, "consumer groups are not available on this server");
        return NULL;
    }
    return bin_stream(c, h, stream, sl, SPW_PERM_CONSUME, NULL);
}

static void handle_group_poll(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    spw_gpoll_req q;
    const char *why;
    if (spw_gpoll_req_decode(body, len, &q, &why)) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *s = group_stream(c, h, q.stream, q.stream_len, q.group, q.group_len, q.member, q.member_len);
    if (!s)
        return;
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, q.group, q.group_len);
    gname[q.group_len] = 0;
    spw_group *g;
    int e = spw_consume_poll_group(svc->groups, s, gname, q.start == SPW_GPOLL_LATEST, &g);
    if (e < 0) {
        spw_stream_put(s);
        if (e == -E2BIG)
            send_sc(c, h->opcode, h->request_id, SPW_SC_TOO_MANY_PARTITIONS, 0,
                    "consumer groups need at most %d partitions", SPW_GROUP_PARTS_MAX);
        else
            send_sc(c, h->opcode, h->request_id, SPW_SC_SAVE_FAILED, 0, "saving the new group: %s",
                    spw_strerror(e));
        return;
    }
    bgroup *bq = spw_xcalloc(1, sizeof *bq);
    bq->c = c;
    bq->request_id = h->request_id;
    spw_group_poll *p = spw_xcalloc(1, sizeof *p);
    p->post = bin_post;
    p->loop = c->loop;
    p->deliver = group_deliver;
    p->nothing = group_nothing;
    p->ctx = bq;
    p->s = s;
    p->g = g;
    p->max = q.max ? q.max : SPW_GROUP_POLL_MAX_DEFAULT;
    p->lease_ms = q.lease_ms ? q.lease_ms : SPW_GROUP_LEASE_MS_DEFAULT;
    p->deadline_ms = (int64_t)now_ms() + (int64_t)q.wait_ms;
    if (q.member_len) {
        memcpy(p->member, q.member, q.member_len);
        p->member[q.member_len] = 0;
    } else {
        snprintf(p->member, sizeof p->member, "%s", c->peer);
    }
    c->inflight++;
    c->loop->inflight++;
    c->loop->in_group_call++;
    spw_consume_poll(svc->groups, p);
    c->loop->in_group_call--;
}

static void group_commit_done(void *arg, int err)
{
    bgroup *q = arg;
    bconn *c = q->c;
    if (group_answered(c)) {
        if (err < 0) {
            send_sc(c, SPW_OP_GROUP_COMMIT, q->request_id, SPW_SC_SAVE_FAILED, 0,
                    "the commit was applied but writing the group's offsets file failed: %s", spw_strerror(err));
        } else {
            size_t start;
            if (spw_frame_begin(&c->out, SPW_OP_GROUP_COMMIT, SPW_FLAG_RESPONSE, q->request_id, &start) ||
                spw_answer_ok(&c->out) || spw_gcommit_resp_encode(&c->out, q->partition, q->offset))
                conn_close(c);
            else
                spw_frame_finish(&c->out, start);
        }
        group_flush(c);
    }
    spw_free(q);
}

static void handle_group_commit(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    spw_gcommit_req q;
    const char *why;
    if (spw_gcommit_req_decode(body, len, &q, &why)) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *s = group_stream(c, h, q.stream, q.stream_len, q.group, q.group_len, NULL, 0);
    if (!s)
        return;
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, q.group, q.group_len);
    gname[q.group_len] = 0;
    spw_group *g =
        spw_group_find(spw_consume_groups(svc->groups), s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    spw_stream_put(s);
    if (!g) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_NO_SUCH_GROUP, 0, "no consumer group named %s",
                gname);
        return;
    }
    int r = spw_group_commit(g, q.partition, q.lease_id, q.offset, (int64_t)now_ms());
    if (r == -ESTALE || r == -EINVAL) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_STALE_LEASE, 0,
                "lease %016" PRIx64 " of partition %" PRIu32
                " is not held (already committed, expired and taken over, or from before a restart): poll again",
                q.lease_id, q.partition);
        return;
    }
    if (r == -ETIME) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_LEASE_EXPIRED, 0,
                "lease %016" PRIx64 " of partition %" PRIu32
                " expired: its records will be delivered again; poll again",
                q.lease_id, q.partition);
        return;
    }
    if (r == -ERANGE) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_OFFSET, 0,
                "offset %" PRIu64 " is outside the lease's records (commit from its first_offset to its "
                "next_offset)",
                q.offset);
        return;
    }
    bgroup *bq = spw_xcalloc(1, sizeof *bq);
    bq->c = c;
    bq->request_id = h->request_id;
    bq->partition = q.partition;
    bq->offset = q.offset;
    c->inflight++;
    c->loop->inflight++;
    c->loop->in_group_call++;
    spw_consume_commit_saved(svc->groups, g, bin_post, c->loop, group_commit_done, bq);
    c->loop->in_group_call--;
}

/* ---- framing ---- */

static void dispatch(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    atomic_fetch_add(&c->loop->srv->st_requests, 1);
    if (h->version != SPW_FRAME_VERSION) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_UNSUPPORTED_VERSION, 0,
                "protocol version %u is not supported (this server speaks %u)", h->version, SPW_FRAME_VERSION);
        return;
    }
    if (h->flags & SPW_FLAG_RESPONSE) {
        send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0,
                "a request must not carry the response flag");
        return;
    }
    int known = h->opcode == SPW_OP_PRODUCE || h->opcode == SPW_OP_FETCH || h->opcode == SPW_OP_METADATA ||
                h->opcode == SPW_OP_GROUP_POLL || h->opcode == SPW_OP_GROUP_COMMIT;
    /* Not logged in: 401 before the body is even looked at (as HTTP does). */
    const spw_token *who;
    if (known && !bin_who(c, h, &who))
        return;
    switch (h->opcode) {
    case SPW_OP_PRODUCE: handle_produce(c, h, body, len); break;
    case SPW_OP_FETCH: handle_fetch(c, h, body, len); break;
    case SPW_OP_METADATA: handle_metadata(c, h, body, len); break;
    case SPW_OP_AUTH: handle_auth(c, h, body, len); break;
    case SPW_OP_GROUP_POLL: handle_group_poll(c, h, body, len); break;
    case SPW_OP_GROUP_COMMIT: handle_group_commit(c, h, body, len); break;
    default:
        send_sc(c, h->opcode, h->request_id, SPW_SC_UNKNOWN_OPCODE, 0, "opcode %u is not known",
                h->opcode);
    }
}

/* Cuts whole frames from in and dispatches them while reading is allowed. */
static void conn_process(bconn *c)
{
    spw_bin_server *srv = c->loop->srv;
    uint32_t cap = srv->cfg.max_pipelined;
    while (!c->closed && !c->close_after && !c->loop->stopping && !c->mem_wait && c->inflight < cap &&
           c->out.len - c->out_off <= OUT_PAUSE_BYTES) {
        const uint8_t *p = c->in.p + c->in_off;
        size_t avail = c->in.len - c->in_off;
        spw_frame_hdr h;
        int r = spw_frame_hdr_decode(p, avail, srv->cfg.max_frame_bytes, &h);
        if (r == SPW_ETRUNC)
            break;
        if (r == SPW_EMSGSIZE) {
            char m[128];
            snprintf(m, sizeof m, "frame length %u exceeds the server's limit of %u bytes", h.length,
                     srv->cfg.max_frame_bytes);
            conn_fatal(c, SPW_SC_REQUEST_TOO_LARGE, m);
            return;
        }
        if (r) {
            conn_fatal(c, SPW_SC_BAD_FRAME, "not a Spillway frame (length below 12 or unknown flags)");
            return;
        }
        size_t whole = 4 + (size_t)h.length;
        if (avail < whole) {
            /* Room for the whole frame now, so that once let in it never
             * needs more of the budget to finish. */
            if (c->in_off) {
                memmove(c->in.p, c->in.p + c->in_off, avail);
                c->in.len = avail;
                c->in_off = 0;
            }
            int e = in_reserve(c, whole);
            if (e == SPW_EAGAIN)
                wait_for_room(c);
            else if (e) {
                conn_fatal(c, SPW_SC_OVERLOADED, "out of memory for the frame");
                return;
            }
            break;
        }
        if (h.opcode == SPW_OP_PRODUCE && !(h.flags & SPW_FLAG_RESPONSE) &&
            hold_produce(c, p + SPW_FRAME_HEADER_LEN, whole - SPW_FRAME_HEADER_LEN)) {
            /* Left unread: TCP flow control pushes back on the producer. */
            c->held = 1;
            c->loop->nheld++;
            c->frame_start_ms = now_ms();
            conn_update_reading(c);
            return;
        }
        c->in_off += whole;
        dispatch(c, &h, p + SPW_FRAME_HEADER_LEN, whole - SPW_FRAME_HEADER_LEN);
    }
    if (c->closed)
        return;
    /* Keep the partial frame at the front; note when it began. */
    size_t rest = c->in.len - c->in_off;
    if (c->in_off) {
        memmove(c->in.p, c->in.p + c->in_off, rest);
        c->in.len = rest;
        c->in_off = 0;
    }
    if (rest == 0) {
        c->frame_start_ms = 0;
        if (!c->held)
            in_free(c); /* an idle connection holds none of the budget */
    } else if (!c->frame_start_ms) {
        c->frame_start_ms = now_ms();
    }
    conn_flush(c);
}

static void conn_read(bconn *c)
{
    for (int rounds = 0; rounds < 8 && !c->paused && !c->closed; rounds++) {
        /* Into the room there is (a frame reserved whole reads to its end
         * without more of the budget); a full buffer grows by one read. */
        if (c->in.len == c->in.cap) {
            int e = in_reserve(c, c->in.len + READ_CHUNK);
            if (e == SPW_EAGAIN && c->in.cap == 0) {
                /* No room, and this connection holds none of the budget:
                 * a small read still, so small requests get through;
                 * a frame larger than that waits for its room as a whole. */
                uint8_t *p = spw_try_malloc(SMALL_READ);
                if (p) {
                    spw_membudget_add(budget_of(c->loop), SMALL_READ);
                    c->in.p = p;
                    c->in.cap = SMALL_READ;
                    e = 0;
                }
            }
            if (e == SPW_EAGAIN) {
                wait_for_room(c);
                conn_update_reading(c);
                return;
            }
            if (e) {
                conn_fatal(c, SPW_SC_OVERLOADED, "out of memory for input");
                return;
            }
        }
        size_t room = c->in.cap - c->in.len;
        ssize_t n = recv(c->fd, c->in.p + c->in.len, room < READ_CHUNK ? room : READ_CHUNK, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close(c);
            return;
        }
        if (n == 0) {
            /* Peer closed its side: answer what is in flight, then close. */
            c->close_after = 1;
            in_free(c);
            if (c->inflight == 0 && c->out.len == c->out_off)
                conn_close(c);
            else
                conn_update_reading(c);
            return;
        }
        c->in.len += (size_t)n;
        c->last_active_ms = now_ms();
        conn_process(c);
        if ((size_t)n < room && (size_t)n < READ_CHUNK)
            return;
    }
}

/* ---- the protocol over the connection core (net/conn.h) ---- */

static void bin_loop_init(spw_netloop *nl, void *owner) { ((bloop *)nl)->srv = owner; }

static void bin_conn_init(spw_netconn *nc) { bc(nc)->loop = (bloop *)nc->nl; }

static void bin_io(spw_netconn *nc, uint32_t events)
{
    bconn *c = bc(nc);
    if (events & EPOLLOUT)
        conn_flush(c);
    if (c->closed)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (c->paused && (events & (EPOLLHUP | EPOLLERR))) {
            conn_close(c); /* both directions gone: nobody to answer */
        } else if (c->paused) {
            /* The rest is read once unpaused; stop the level-triggered
             * RDHUP from waking us until then. */
            if ((events & EPOLLRDHUP) && !c->rdhup) {
                c->rdhup = 1;
                set_events(c);
            }
        } else {
            conn_read(c);
        }
    }
}

/* As soon as pressure falls, not a tick later. */
static void bin_after_events(spw_netloop *nl)
{
    bloop *l = (bloop *)nl;
    if (l->nheld)
        release_held(l);
}

static void bin_loop_tick(spw_netloop *nl) { release_held((bloop *)nl); }

static void bin_conn_tick(spw_netconn *nc, uint64_t now)
{
    bconn *c = bc(nc);
    spw_bin_config *cfg = &c->loop->srv->cfg;
    if (c->mem_wait && !c->frame_start_ms)
        c->last_active_ms = now; /* its bytes wait on us, not on the client */
    if (c->held) {
        c->frame_start_ms = now; /* waiting on us, not on the client */
    } else if (c->frame_start_ms && !c->close_after && now - c->frame_start_ms > cfg->request_timeout_ms) {
        conn_fatal(c, SPW_SC_REQUEST_TIMEOUT, "frame not received whole in time");
    } else if (c->inflight == 0 && c->out.len == c->out_off && now - c->last_active_ms > cfg->idle_timeout_ms) {
        conn_close(c);
    }
}

/* Draining: conn_update_reading sees loop->stopping. */
static void bin_stop_reading(spw_netconn *nc) { conn_update_reading(bc(nc)); }

static const spw_netproto bin_proto = {
    .name = "binary protocol",
    .conn_size = sizeof(bconn),
    .loop_size = sizeof(bloop),
    .loop_init = bin_loop_init,
    .conn_init = bin_conn_init,
    .events = bin_events,
    .io = bin_io,
    .room = bin_room,
    .closing = bin_closing,
    .conn_free = bin_conn_free,
    .stop_reading = bin_stop_reading,
    .after_events = bin_after_events,
    .loop_tick = bin_loop_tick,
    .conn_tick = bin_conn_tick,
};

int spw_bin_start(const spw_bin_config *cfg, spw_svc *svc, spw_bin_server **out)
{
    spw_bin_server *s = spw_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    if (s->cfg.threads == 0)
        s->cfg.threads = 1;
    if (s->cfg.max_pipelined == 0)
        s->cfg.max_pipelined = 64;
    if (s->cfg.max_frame_bytes < 4096)
        s->cfg.max_frame_bytes = 4096;
    if (s->cfg.max_frame_bytes > SPW_FRAME_MAX_HARD)
        s->cfg.max_frame_bytes = SPW_FRAME_MAX_HARD;
    s->svc = svc;
    spw_netsrv_config nc = {.listen = cfg->listen, .threads = s->cfg.threads,
                            .max_connections = cfg->max_connections, .buffers = cfg->buffers};
    int r = spw_netsrv_start(&s->ns, &bin_proto, &nc, s);
    if (r < 0) {
        spw_free(s);
        return r;
    }
    *out = s;
    return 0;
}

int spw_bin_port(spw_bin_server *s) { return s->ns.port; }

void spw_bin_stop_accepting(spw_bin_server *s) { spw_netsrv_stop_accepting(&s->ns); }

void spw_bin_stop(spw_bin_server *s, uint32_t drain_ms)
{
    spw_netsrv_stop(&s->ns, drain_ms);
    spw_free(s);
}

void spw_bin_stats_get(spw_bin_server *s, spw_bin_stats *st)
{
    st->connections_open = atomic_load(&s->ns.nconns);
    st->connections_total = atomic_load(&s->ns.accepted);
    st->requests = atomic_load(&s->st_requests);
    st->rejected_frames = atomic_load(&s->st_rejected) + atomic_load(&s->ns.refused);
}

static uint64_t m_bin(spw_bin_server *s, int i)
{
    spw_bin_stats st;
    spw_bin_stats_get(s, &st);
    return i == 0 ? st.connections_open : i == 1 ? st.requests : st.rejected_frames;
}
static uint64_t m_bin_conns(void *s) { return m_bin(s, 0); }
static uint64_t m_bin_requests(void *s) { return m_bin(s, 1); }
static uint64_t m_bin_refused(void *s) { return m_bin(s, 2); }

void spw_bin_metrics_register(spw_metrics *m, spw_bin_server *s)
{
    spw_metrics_add_u64(m, "spillway_bin_connections", NULL, SPW_METRIC_GAUGE, m_bin_conns, s);
    spw_metrics_add_u64(m, "spillway_bin_requests_total", NULL, SPW_METRIC_COUNTER, m_bin_requests, s);
    spw_metrics_add_u64(m, "spillway_bin_refused_total", NULL, SPW_METRIC_COUNTER, m_bin_refused, s);
}
