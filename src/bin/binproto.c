/*
 * The binary protocol over the connection core (net/conn.h): see
 * binproto.h and docs/protocol.md. The core owns the loops, accepting,
 * closing, zombies, the budget's waiters, writing `out`, ticks and the
 * drain; this file frames, dispatches and encodes (the callbacks in
 * bin_proto near the end). The requests are answered in their own files
 * over bin_int.h: AUTH and METADATA in bin_meta.c, PRODUCE in
 * bin_produce.c, FETCH in bin_fetch.c, GROUP_POLL and GROUP_COMMIT in
 * bin_group.c; this file owns the connection, its buffer and its answers'
 * error encoders (spw__bin_send_sc, spw__bin_send_damaged).
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
#include "bin/bin_int.h"

#define UNAUTH_FRAME_MAX (16u << 10) /* the largest frame of a connection not logged in (with tokens) */

uint64_t spw__bin_now_ms(void) { return spw_mono_ms(); }

/* ---- posting work to a loop ---- */

void spw__bin_loop_post(bloop *l, void (*fn)(void *), void *arg)
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

/* ---- input: framed, in the connection core's buffer budget ---- */

static int in_reserve(bconn *c, size_t need) { return spw_netconn_in_reserve(&c->nc, &c->in, need); }
static void in_free(bconn *c) { spw_netconn_in_free(&c->nc, &c->in, &c->in_off); }

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

void spw__bin_conn_close(bconn *c) { spw_netconn_close(&c->nc); }

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
                     c->out.len - c->out_off + c->promised > OUT_PAUSE_BYTES || spw_netconn_out_full(&c->nc);
    if (want_pause != c->paused) {
        c->paused = want_pause;
        set_events(c);
        if (!want_pause)
            conn_process(c); /* frames already buffered */
    }
}

/* After out was written (sent: spw_netconn_send's result). */
static void conn_sent(bconn *c, int sent)
{
    if (c->closed || sent != 1)
        return;
    if (c->close_after && c->inflight == 0) {
        spw__bin_conn_close(c);
        return;
    }
    conn_update_reading(c);
}

static void bin_sent(spw_netconn *nc, int r) { conn_sent(bc(nc), r); }

void spw__bin_conn_flush(bconn *c)
{
    if (!c->closed)
        conn_sent(c, spw_netconn_send(&c->nc));
}

/* Sends the error answer of status-table code sc (svc/status.h): its
 * binary status and word, with the sentence fmt. */
void spw__bin_send_sc(bconn *c, uint8_t opcode, uint64_t id, spw_sc sc, uint32_t retry_after_ms, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->closed)
        return;
    if (spw_frame_error_encode(&c->out, opcode, id, spw_sc_wire(sc), retry_after_ms, spw_sc_wire_word(sc), msg))
        spw__bin_conn_close(c);
}

/* "damaged" for offsets [from, resume) of partition part, carrying resume
 * as the error answer's next_offset (docs/protocol.md, "Answers"). */
void spw__bin_send_damaged(bconn *c, uint8_t opcode, uint64_t id, uint32_t part, uint64_t from, uint64_t resume)
{
    char msg[256];
    snprintf(msg, sizeof msg,
             "partition %" PRIu32 " offsets %" PRIu64 "..%" PRIu64 " are damaged on disk (run spillway check); "
             "reading can resume at offset %" PRIu64,
             part, from, resume - 1, resume);
    if (!c->closed && spw_frame_error_encode_next(&c->out, opcode, id, spw_sc_wire(SPW_SC_DAMAGED),
                                                  spw_sc_wire_word(SPW_SC_DAMAGED), msg, resume))
        spw__bin_conn_close(c);
}

static void conn_fatal(bconn *c, spw_sc sc, const char *msg)
{
    if (c->close_after)
        return;
    atomic_fetch_add(&c->loop->srv->st_rejected, 1);
    spw__bin_send_sc(c, 0, 0, sc, 0, "%s; closing the connection", msg);
    c->close_after = 1;
    unwait(c);
    in_free(c);
    spw__bin_conn_flush(c);
    conn_update_reading(c);
}


/* ---- framing ---- */

static void dispatch(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    atomic_fetch_add(&c->loop->srv->st_requests, 1);
    if (h->version != SPW_FRAME_VERSION) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_UNSUPPORTED_VERSION, 0,
                         "protocol version %u is not supported (this server speaks %u)", h->version, SPW_FRAME_VERSION);
        return;
    }
    if (h->flags & SPW_FLAG_RESPONSE) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0,
                         "a request must not carry the response flag");
        return;
    }
    int known = h->opcode == SPW_OP_PRODUCE || h->opcode == SPW_OP_FETCH || h->opcode == SPW_OP_METADATA ||
                h->opcode == SPW_OP_GROUP_POLL || h->opcode == SPW_OP_GROUP_COMMIT || h->opcode == SPW_OP_KEY_EVENTS ||
                h->opcode == SPW_OP_SNAPSHOT_PUT || h->opcode == SPW_OP_STREAM_DESCRIBE ||
                h->opcode == SPW_OP_STREAM_CREATE || h->opcode == SPW_OP_VIEW_READ || h->opcode == SPW_OP_GROUP_LIST ||
                h->opcode == SPW_OP_GROUP_RESET;
    /* Not logged in: 401 before the body is even looked at (as HTTP does). */
    const spw_token *who;
    if (known && !spw__bin_who(c, h, &who))
        return;
    switch (h->opcode) {
    case SPW_OP_PRODUCE: spw__bin_handle_produce(c, h, body, len); break;
    case SPW_OP_FETCH: spw__bin_handle_fetch(c, h, body, len); break;
    case SPW_OP_METADATA: spw__bin_handle_metadata(c, h, body, len); break;
    case SPW_OP_AUTH: spw__bin_handle_auth(c, h, body, len); break;
    case SPW_OP_GROUP_POLL: spw__bin_handle_group_poll(c, h, body, len); break;
    case SPW_OP_GROUP_COMMIT: spw__bin_handle_group_commit(c, h, body, len); break;
    case SPW_OP_KEY_EVENTS: spw__bin_handle_key_events(c, h, body, len); break;
    case SPW_OP_SNAPSHOT_PUT: spw__bin_handle_snapshot_put(c, h, body, len); break;
    case SPW_OP_STREAM_DESCRIBE: spw__bin_handle_stream_describe(c, h, body, len); break;
    case SPW_OP_STREAM_CREATE: spw__bin_handle_stream_create(c, h, body, len); break;
    case SPW_OP_VIEW_READ: spw__bin_handle_view_read(c, h, body, len); break;
    case SPW_OP_GROUP_LIST: spw__bin_handle_group_list(c, h, body, len); break;
    case SPW_OP_GROUP_RESET: spw__bin_handle_group_reset(c, h, body, len); break;
    default:
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_UNKNOWN_OPCODE, 0, "opcode %u is not known",
                         h->opcode);
    }
}

/* Cuts whole frames from in and dispatches them while reading is allowed. */
static void conn_process(bconn *c)
{
    spw_bin_server *srv = c->loop->srv;
    uint32_t cap = srv->cfg.max_pipelined;
    while (!c->closed && !c->close_after && !c->loop->stopping && !c->mem_wait && c->inflight < cap &&
           c->out.len - c->out_off + c->promised <= OUT_PAUSE_BYTES && !spw_netconn_out_full(&c->nc)) {
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
        c->last_whole = (uint32_t)whole;
        /* Authentication first (docs/protocol.md "AUTH"): with tokens, a
         * connection not logged in sends small frames only (AUTH, or
         * requests it is refused), so it never holds the buffer budget
         * that authenticated clients need. */
        if (whole > UNAUTH_FRAME_MAX && srv->svc->auth && !spw_auth_session_who(srv->svc->auth, &c->auth)) {
            char m[160];
            snprintf(m, sizeof m, "a frame over %u bytes needs an authenticated connection: send AUTH first",
                     UNAUTH_FRAME_MAX);
            atomic_fetch_add(&srv->svc->auth->unauthorized, 1);
            conn_fatal(c, SPW_SC_UNAUTHORIZED, m);
            return;
        }
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
            c->frame_start_ms = spw__bin_now_ms();
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
        c->frame_start_ms = spw__bin_now_ms();
    }
    spw__bin_conn_flush(c);
}

static void conn_read(bconn *c)
{
    for (int rounds = 0; rounds < 8 && !c->paused && !c->closed; rounds++) {
        /* Into the room there is (a frame reserved whole reads to its end
         * without more of the budget); a full buffer grows by one read. */
        if (c->in.len == c->in.cap) {
            /* A connection with no buffer (it was idle) whose last frame
             * was large asks for that much at once: a producer of steady
             * frames then reads each in as few recv calls as the socket
             * allows, and its buffer does not grow (a copy) mid-frame.
             * Without that much room in the budget: a read's worth. */
            int e = c->in.cap == 0 && c->last_whole > READ_CHUNK ? in_reserve(c, c->last_whole) : -1;
            if (e)
                e = spw_netconn_in_room(&c->nc, &c->in);
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
        /* All the room there is: a frame reserved whole (conn_process)
         * comes in with as few reads as the socket allows; a buffer that
         * just grew has READ_CHUNK of room. */
        size_t room = c->in.cap - c->in.len;
        ssize_t n = spw_netconn_recv(&c->nc, c->in.p + c->in.len, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                spw__bin_conn_close(c);
            return;
        }
        if (n == 0) {
            /* Peer closed its side: answer what is in flight, then close. */
            c->close_after = 1;
            in_free(c);
            if (c->inflight == 0 && c->out.len == c->out_off)
                spw__bin_conn_close(c);
            else
                conn_update_reading(c);
            return;
        }
        c->in.len += (size_t)n;
        c->last_active_ms = spw__bin_now_ms();
        conn_process(c);
        if ((size_t)n < room)
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
        spw__bin_conn_flush(c);
    if (c->closed)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (c->paused && (events & (EPOLLHUP | EPOLLERR))) {
            spw__bin_conn_close(c); /* both directions gone: nobody to answer */
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

void spw__bin_conn_flush_soon(bconn *c)
{
    if (c->close_after) {
        spw__bin_conn_flush(c); /* closing after its answers: at once, as it always did */
        return;
    }
    spw_netconn_flush_soon(&c->nc);
}

/* As soon as pressure falls, not a tick later; and the answers the
 * round's posts completed, one send per connection (a connection closed
 * meanwhile is a zombie until the sweep after this: flushing it is a
 * no-op). */
static void bin_after_events(spw_netloop *nl)
{
    bloop *l = (bloop *)nl;
    spw_netloop_flush(nl, NULL, bin_sent); /* in batches, each in one submission (net/conn.h) */
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
        spw__bin_conn_close(c);
    }
}

/* Draining: conn_update_reading sees loop->stopping. */
static void bin_stop_reading(spw_netconn *nc) { conn_update_reading(bc(nc)); }

static const spw_netproto bin_proto = {
    .name = "binary protocol",
    .thread = "spw-bin",
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
                            .max_connections = cfg->max_connections, .buffers = cfg->buffers,
                            .unsent = cfg->unsent, .send_timeout_ms = cfg->send_timeout_ms,
                            .tls = cfg->tls, .tls_handshake_timeout_ms = cfg->request_timeout_ms,
                            .io_uring = cfg->io_uring};
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
    st->accept_fd_errors = atomic_load(&s->ns.fd_errors);
    st->send_timeouts = atomic_load(&s->ns.send_timeouts);
    st->uring_sends = atomic_load(&s->ns.uring_sends);
    st->uring_loops = atomic_load(&s->ns.uring_loops);
}

static uint64_t m_bin(spw_bin_server *s, int i)
{
    spw_bin_stats st;
    spw_bin_stats_get(s, &st);
    switch (i) {
    case 0: return st.connections_open;
    case 1: return st.requests;
    case 2: return st.rejected_frames;
    case 3: return st.accept_fd_errors;
    case 4: return st.send_timeouts;
    case 5: return st.uring_sends;
    default: return st.uring_loops;
    }
}
static uint64_t m_bin_fd_errors(void *s) { return m_bin(s, 3); }
static uint64_t m_bin_send_timeouts(void *s) { return m_bin(s, 4); }
static uint64_t m_bin_uring_sends(void *s) { return m_bin(s, 5); }
static uint64_t m_bin_uring_loops(void *s) { return m_bin(s, 6); }
static uint64_t m_bin_conns(void *s) { return m_bin(s, 0); }
static uint64_t m_bin_requests(void *s) { return m_bin(s, 1); }
static uint64_t m_bin_refused(void *s) { return m_bin(s, 2); }

void spw_bin_metrics_register(spw_metrics *m, spw_bin_server *s)
{
    spw_metrics_add_u64(m, "spillway_bin_connections",
                        "open binary-protocol connections",
                        SPW_METRIC_GAUGE, m_bin_conns, s);
    spw_metrics_add_u64(m, "spillway_bin_requests_total",
                        "binary-protocol requests",
                        SPW_METRIC_COUNTER, m_bin_requests, s);
    spw_metrics_add_u64(m, "spillway_bin_refused_total",
                        "binary-protocol frames refused",
                        SPW_METRIC_COUNTER, m_bin_refused, s);
    spw_metrics_add_u64(m, "spillway_bin_accept_fd_errors_total",
                        "binary-protocol accepts that failed for want of a file descriptor (EMFILE, ENFILE)",
                        SPW_METRIC_COUNTER, m_bin_fd_errors, s);
    spw_metrics_add_u64(m, "spillway_bin_send_timeouts_total",
                        "binary-protocol connections closed because their answers did not move for send-timeout",
                        SPW_METRIC_COUNTER, m_bin_send_timeouts, s);
    spw_metrics_add_u64(m, "spillway_bin_io_uring_sends_total",
                        "binary-protocol answers' sends submitted through io_uring, a round's at once (io-uring)",
                        SPW_METRIC_COUNTER, m_bin_uring_sends, s);
    spw_metrics_add_u64(m, "spillway_bin_io_uring_loops",
                        "binary-protocol I/O loops sending through io_uring (0: one send(2) each)",
                        SPW_METRIC_GAUGE, m_bin_uring_loops, s);
}
