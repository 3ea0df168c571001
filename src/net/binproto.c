/*
 * Binary protocol loops: see binproto.h and docs/protocol.md.
 *
 * A connection's bytes accumulate in `in`; whole frames are cut from it
 * and dispatched in order. PRODUCE answers asynchronously (the log's
 * callback posts the answer back to the loop); FETCH and METADATA answer
 * at once. Answers are appended to `out` and written as the socket takes
 * them. A connection that is closed with requests still in flight stays
 * allocated (on the zombie list) until the last one completes, so a
 * completion never touches freed memory. GROUP_POLL and GROUP_COMMIT
 * answer at once or later from the group waiter (server/groups_http.h),
 * counted in flight like a PRODUCE meanwhile.
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
#include "net/binproto.h"
#include "net/loop.h"

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
#include "core/error.h"
#include "core/invariant.h"
#include "core/id.h"
#include "core/json.h"
#include "core/msg.h"
#include "net/frame.h"
#include "net/membudget.h"
#include "server/auth.h"
#include "server/groups_http.h"
#include "server/ratelimit.h"

#define READ_CHUNK (64u << 10)
#define SMALL_READ (4u << 10) /* a read while the buffer budget is full */
#define TICK_MS 100
#define OUT_PAUSE_BYTES (8u << 20)
#define FETCH_DEFAULT_BYTES (1u << 20)
#define FETCH_MAX_BYTES (16u << 20)
#define RETRY_AFTER_MS 1000
#define BAD_NAME_MSG "stream names are 1 to 128 characters of a-z, A-Z, 0-9, '.', '_' or '-', not starting with '.'"

typedef struct bloop bloop;

typedef struct bconn {
    int fd;
    bloop *loop;
    spw_buf in; /* in.cap bytes are taken from the buffer budget */
    size_t in_off;
    spw_buf out;
    size_t out_off;
    uint32_t inflight;
    int paused, want_out, close_after, closed;
    int rdhup; /* peer shut its side down: stop watching for it (level-triggered) */
    int held;  /* a PRODUCE waits, unread, for pressure to fall below the low watermark */
    int mem_wait; /* on the loop's waiters: no room in the buffer budget */
    uint64_t last_active_ms, frame_start_ms;
    char peer[64];   /* client address */
    char tenant[64]; /* set by authentication; "" when no tokens are configured */
    spw_auth_session auth; /* the AUTH login (server/auth.h) */
    struct bconn *prev, *next;
    struct bconn *wprev, *wnext; /* the loop's waiters */
} bconn;

struct bloop {
    spw_bin_server *srv;
    spw__loop_base b; /* listening socket, epoll, eventfd, posts (net/loop.h) */
    bconn *conns;
    bconn *zombies;
    int stopping;
    uint32_t inflight;
    uint32_t nheld; /* connections held by pressure */
    bconn *waiters, *waiters_tail; /* connections waiting for the buffer budget, oldest first */
    int rewaking;                  /* in wake_waiters: a wait again is not a new one */
    int in_group_call;             /* a group poll/commit may answer inside the call: no flush there */
};

struct spw_bin_server {
    spw_bin_config cfg;
    spw_api *api;
    bloop *loops;
    uint32_t nloops;
    int port;
    _Atomic uint32_t nconns;
    _Atomic uint64_t st_total, st_requests, st_rejected;
    _Atomic int stop;
};

/* A PRODUCE in flight. */
typedef struct breq {
    bconn *c;
    uint64_t request_id;
} breq;

static uint64_t now_ms(void) { return spw_mono_ns() / 1000000; }

/* ---- posting work to a loop ---- */

static void loop_post(bloop *l, void (*fn)(void *), void *arg)
{
    spw__loop_post(&l->b, fn, arg);
}


/* ---- connections ---- */

static void set_events(bconn *c)
{
    struct epoll_event ev = {.events = (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0) |
                                       (c->rdhup ? 0 : EPOLLRDHUP),
                             .data.ptr = c};
    epoll_ctl(c->loop->b.epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

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
static void wait_for_room(bconn *c)
{
    bloop *l = c->loop;
    if (c->mem_wait)
        return;
    c->mem_wait = 1;
    c->wnext = NULL;
    c->wprev = l->waiters_tail;
    if (l->waiters_tail)
        l->waiters_tail->wnext = c;
    else
        l->waiters = c;
    l->waiters_tail = c;
    if (!l->rewaking)
        spw_membudget_waited(budget_of(l));
}

static void unwait(bconn *c)
{
    bloop *l = c->loop;
    if (!c->mem_wait)
        return;
    c->mem_wait = 0;
    if (c->wprev)
        c->wprev->wnext = c->wnext;
    else
        l->waiters = c->wnext;
    if (c->wnext)
        c->wnext->wprev = c->wprev;
    else
        l->waiters_tail = c->wprev;
    c->wprev = c->wnext = NULL;
}

/* Lets waiting connections read again; those the budget still cannot
 * take go back on the list (conn_read, conn_process). */
static void wake_waiters(bloop *l)
{
    bconn *w = l->waiters;
    l->waiters = l->waiters_tail = NULL;
    for (bconn *x = w; x; x = x->wnext)
        x->mem_wait = 0;
    l->rewaking = 1;
    while (w) {
        bconn *next = w->wnext;
        w->wprev = w->wnext = NULL;
        conn_update_reading(w); /* unpaused: frames already buffered go on */
        w = next;
    }
    l->rewaking = 0;
}

static void conn_close(bconn *c)
{
    if (c->closed)
        return;
    c->closed = 1;
    unwait(c);
    /* `in` stays until conn_free: a handler may still be reading a frame
     * in it (an answer it could not encode closes the connection). */
    if (c->held) {
        c->held = 0;
        c->loop->nheld--;
    }
    epoll_ctl(c->loop->b.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    atomic_fetch_sub(&c->loop->srv->nconns, 1);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = c->loop->zombies;
    c->loop->zombies = c;
}

static void conn_free(bconn *c)
{
    spw_auth_session_fini(&c->auth);
    in_free(c);
    spw_buf_fini(&c->out);
    spw_free(c);
}

static void sweep(bloop *l, int all)
{
    bconn **pp = &l->zombies;
    while (*pp) {
        bconn *c = *pp;
        if (all || c->inflight == 0) {
            *pp = c->next;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
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
    spw_api *api = c->loop->srv->api;
    if (spw_pressure_level(&api->pressure) < 3 || c->loop->stopping || len < 2)
        return 0;
    size_t sl = (size_t)body[0] | (size_t)body[1] << 8;
    if (len < 2 + sl + 2)
        return 0;
    int prio = body[2 + sl + 1];
    if (prio == SPW_WIRE_PRIORITY_DEFAULT) {
        spw_stream *s = sl && spw_stream_name_ok((const char *)body + 2, sl)
                            ? spw_stream_get(api->cat, (const char *)body + 2, sl)
                            : NULL;
        if (!s)
            return 0;
        prio = s->cfg.priority;
        spw_stream_put(s);
    }
    if (prio == 0)
        return 0;
    atomic_fetch_add(&api->rejected[SPW_REJ_BACKPRESSURE], 1);
    return 1;
}

/* Lets held connections go on once pressure is below the low watermark. */
static void release_held(bloop *l)
{
    if (!l->nheld || (!l->stopping && spw_pressure_level(&l->srv->api->pressure) >= 3))
        return;
    for (bconn *c = l->conns; c; c = c->next) {
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
    while (!c->closed && c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->want_out) {
                    c->want_out = 1;
                    set_events(c);
                }
                return;
            }
            conn_close(c);
            return;
        }
        c->out_off += (size_t)w;
    }
    if (c->closed)
        return;
    c->out.len = c->out_off = 0;
    if (c->out.cap > (1u << 20))
        spw_buf_fini(&c->out);
    if (c->want_out) {
        c->want_out = 0;
        set_events(c);
    }
    if (c->close_after && c->inflight == 0) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
}

/* Sends an error answer; fatal ones close the connection after it. */
static void send_error(bconn *c, uint8_t opcode, uint64_t id, uint16_t status, uint32_t retry_after_ms,
                       const char *code, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void send_error(bconn *c, uint8_t opcode, uint64_t id, uint16_t status, uint32_t retry_after_ms,
                       const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->closed)
        return;
    if (spw_frame_error_encode(&c->out, opcode, id, status, retry_after_ms, code, msg))
        conn_close(c);
}

static void conn_fatal(bconn *c, uint16_t status, const char *code, const char *msg)
{
    if (c->close_after)
        return;
    atomic_fetch_add(&c->loop->srv->st_rejected, 1);
    send_error(c, 0, 0, status, 0, code, "%s; closing the connection", msg);
    c->close_after = 1;
    unwait(c);
    in_free(c);
    conn_flush(c);
    conn_update_reading(c);
}

/* ---- AUTH ---- */

static void handle_auth(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_auth *a = c->loop->srv->api->auth;
    const char *tok, *why;
    uint16_t tl;
    if (spw_auth_req_decode(body, len, &tok, &tl, &why)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_request", "%s", why);
        return;
    }
    if (a) {
        if (spw_auth_session_login(a, &c->auth, tok, tl)) {
            c->tenant[0] = 0;
            atomic_fetch_add(&a->unauthorized, 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_UNAUTHORIZED, 0, "unauthorized",
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
 * With tokens configured: is this connection's login (still) valid and,
 * for name != NULL, may it use perms on that stream? 1 go on, 0 answered
 * 401 or 403. Without tokens: 1.
 */
static int bin_allowed(bconn *c, const spw_frame_hdr *h, unsigned perms, const char *name, size_t len)
{
    spw_auth *a = c->loop->srv->api->auth;
    if (!a)
        return 1;
    const spw_token *who = spw_auth_session_who(a, &c->auth);
    if (!who) {
        c->tenant[0] = 0;
        atomic_fetch_add(&a->unauthorized, 1);
        send_error(c, h->opcode, h->request_id, SPW_ST_UNAUTHORIZED, 0, "unauthorized", "%s",
                   c->auth.token_len ? "the token this connection authenticated with is no longer valid"
                                     : "this server needs a token: send AUTH first");
        return 0;
    }
    if (strcmp(c->tenant, who->tenant) != 0)
        snprintf(c->tenant, sizeof c->tenant, "%s", who->tenant);
    if (name && !spw_token_allows(who, perms, name, len)) {
        atomic_fetch_add(&a->forbidden, 1);
        if ((who->perms & perms) != perms)
            send_error(c, h->opcode, h->request_id, SPW_ST_FORBIDDEN, 0, "forbidden",
                       "the token of tenant %s lacks the %s permission", who->tenant, spw_perm_name(perms));
        else
            send_error(c, h->opcode, h->request_id, SPW_ST_FORBIDDEN, 0, "forbidden",
                       "the token of tenant %s may not use stream %.*s", who->tenant, (int)len, name);
        return 0;
    }
    return 1;
}

/* ---- PRODUCE ---- */

/* The OK answer of a request whose outcome the dedupe table holds: its
 * slots, and each record's partition as the request routes it. */
static void answer_result(bconn *c, uint64_t request_id, spw_stream *s, const spw_record *recs, uint32_t n,
                          uint32_t partition, uint64_t idem_key, const spw_dd_result *res)
{
    spw_produce_slot *slots = spw_xmalloc((res->nslots ? res->nslots : 1) * sizeof *slots);
    uint32_t *parts = spw_xmalloc(n * sizeof *parts);
    for (uint32_t k = 0; k < res->nslots; k++)
        slots[k] = (spw_produce_slot){.partition = res->slots[k].partition,
                                      .first_offset = res->slots[k].first_offset,
                                      .count = res->slots[k].count};
    for (uint32_t i = 0; i < n; i++)
        parts[i] = spw_api_route(s, &recs[i], i, partition, idem_key);
    size_t start;
    int r = spw_frame_begin(&c->out, SPW_OP_PRODUCE, SPW_FLAG_RESPONSE, request_id, &start);
    if (!r)
        r = spw_answer_ok(&c->out);
    if (!r)
        r = spw_produce_resp_encode(&c->out, slots, res->nslots, parts, n);
    if (!r)
        spw_frame_finish(&c->out, start);
    else
        conn_close(c);
    spw_free(slots);
    spw_free(parts);
}

static void produce_answer(void *arg)
{
    spw_produce *pr = arg;
    breq *q = pr->user;
    bconn *c = q->c;
    SPW_ASSERT(c->inflight > 0 && c->loop->inflight > 0); /* answered once, after being dispatched */
    c->inflight--;
    c->loop->inflight--;
    int err = atomic_load(&pr->err);
    if (!c->closed) {
        if (err) {
            int hst;
            uint16_t st;
            const char *code;
            char msg[400];
            spw_api_disk_error(err, 0, &hst, &st, &code, msg, sizeof msg);
            send_error(c, SPW_OP_PRODUCE, q->request_id, st, 0, code, "%s", msg);
        } else {
            spw_produce_slot *slots = spw_xmalloc(pr->n_slots * sizeof *slots);
            uint32_t *parts = spw_xmalloc(pr->n_events * sizeof *parts);
            for (uint32_t i = 0; i < pr->n_events; i++) /* coalescing: what no slot lists was superseded */
                parts[i] = SPW_PART_SUPERSEDED;
            for (uint32_t k = 0; k < pr->n_slots; k++) {
                slots[k] = (spw_produce_slot){.partition = pr->slots[k].partition,
                                              .first_offset = pr->slots[k].first_offset,
                                              .count = pr->slots[k].count};
                for (uint32_t j = 0; j < pr->slots[k].count; j++)
                    parts[pr->order[pr->slots[k].first_event + j]] = pr->slots[k].partition;
            }
            size_t start;
            int r = spw_frame_begin(&c->out, SPW_OP_PRODUCE, SPW_FLAG_RESPONSE, q->request_id, &start);
            if (!r)
                r = spw_answer_ok(&c->out);
            if (!r)
                r = spw_produce_resp_encode(&c->out, slots, pr->n_slots, parts, pr->n_events);
            if (!r)
                spw_frame_finish(&c->out, start);
            else
                conn_close(c);
            spw_free(slots);
            spw_free(parts);
        }
        conn_flush(c);
    }
    spw_hist_add(&pr->api->produce_latency, (spw_mono_ns() - pr->t0) / 1000);
    spw_api_produce_free(pr);
    spw_free(q);
}

static void produce_done(spw_produce *pr, void *user)
{
    breq *q = user;
    loop_post(q->c->loop, produce_answer, pr);
}

static void handle_produce(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_api *api = c->loop->srv->api;
    spw_produce_req pq;
    const char *why;
    /* Before the first goto out: out frees it. */
    spw_dd_result stored = {0};
    if (spw_produce_req_decode(body, len, &pq, &why)) {
        atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_request", "%s", why);
        return;
    }
    if (!spw_stream_name_ok(pq.stream, pq.stream_len)) {
        atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_name", BAD_NAME_MSG);
        return;
    }
    if (!bin_allowed(c, h, SPW_PERM_PRODUCE, pq.stream, pq.stream_len))
        return;
    spw_stream *s = spw_stream_get(api->cat, pq.stream, pq.stream_len);
    if (!s) {
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "no_such_stream", "no stream named %.*s",
                   (int)pq.stream_len, pq.stream);
        return;
    }
    spw_stream_config *cfg = &s->cfg;
    spw_ack ack = pq.ack == SPW_WIRE_ACK_DEFAULT ? cfg->ack : (spw_ack)pq.ack;
    spw_record *recs = NULL;
    spw_buf keys = SPW_BUF_INIT;
    uint32_t retry_ms;
    const char *refused =
        spw_api_admit(api, pq.priority == SPW_WIRE_PRIORITY_DEFAULT ? cfg->priority : pq.priority, &retry_ms);
    if (refused) {
        send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, retry_ms, refused,
                   "the server is %s; retry after retry_after_ms",
                   refused[0] == 's' ? "shedding load of this priority" : "writing as fast as the disk allows");
        goto out;
    }
    if (ack == SPW_ACK_REPLICATED) {
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_IMPLEMENTED, 0, "not_implemented",
                   "ack=replicated needs a replicated backend, and this node has none");
        goto out;
    }
    if (pq.partition != SPW_PARTITION_ANY && pq.partition >= cfg->partitions) {
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "no_such_partition",
                   "partition %u does not exist (the stream has %u)", pq.partition, cfg->partitions);
        goto out;
    }
    spw_json_ptr ptrs[2];
    int nptrs = 0, key_i = -1, ts_i = -1;
    if (!cfg->format_bytes) {
        if (cfg->key[0] && spw_json_ptr_compile(&ptrs[nptrs], cfg->key) == 0)
            key_i = nptrs++;
        if (cfg->timestamp[0] && spw_json_ptr_compile(&ptrs[nptrs], cfg->timestamp) == 0)
            ts_i = nptrs++;
    }
    /* Keys taken from JSON values are never longer than their values, and
     * the arena is sized once, so pointers into it stay valid. */
    if (key_i >= 0 && spw_buf_reserve(&keys, len)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, RETRY_AFTER_MS, "overloaded", "out of memory");
        goto out;
    }
    recs = spw_xmalloc(pq.count * sizeof *recs);
    int64_t now = spw_wall_ms();
    spw_frame_rec_iter it;
    spw_frame_rec fr;
    spw_frame_rec_iter_init(&it, &pq);
    for (uint32_t i = 0; spw_frame_rec_next(&it, &fr); i++) {
        spw_record *r = &recs[i];
        *r = (spw_record){.key = fr.key, .key_len = fr.key_len, .value = fr.value, .value_len = fr.value_len,
                          .ts = fr.attrs & SPW_REC_HAS_TS ? fr.ts : now};
        if (fr.value_len > cfg->max_event_bytes) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_TOO_LARGE, 0, "event_too_large",
                       "record %u is %u bytes, the stream's max_event_bytes is %u; nothing was appended", i,
                       fr.value_len, cfg->max_event_bytes);
            goto out;
        }
        if (fr.key_len > 0 && !spw__key_text_ok(fr.key, (size_t)fr.key_len)) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_key",
                       "record %u: keys must be UTF-8 text without control characters; nothing was appended", i);
            goto out;
        }
        if (cfg->format_bytes)
            continue;
        const char *vp = (const char *)fr.value, *vend = vp + fr.value_len, *after;
        spw_json_span found[2];
        spw_json_error e;
        if (spw_json_scan(vp, vend, ptrs, nptrs, found, &after, &e)) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "invalid_json",
                       "record %u (byte %zu of its value): %s; nothing was appended", i, e.offset, e.msg);
            goto out;
        }
        const char *start = spw_json_ws(vp, vend);
        if (*start != '{' || spw_json_ws(after, vend) != vend) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "not_an_object",
                       "record %u: a JSON stream's values must each be one JSON object; nothing was appended", i);
            goto out;
        }
        r->value = start;
        r->value_len = (uint32_t)(after - start);
        if (key_i >= 0 && fr.key_len < 0) {
            spw_json_span *k = &found[key_i];
            if (k->type != SPW_JSON_STRING && k->type != SPW_JSON_NUMBER) {
                atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
                send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST,
                           0, k->type == SPW_JSON_NONE || k->type == SPW_JSON_NULL ? "missing_key" : "bad_key",
                           "record %u: the stream's key %s must be a string or a number; nothing was appended", i,
                           cfg->key);
                goto out;
            }
            char *dst = (char *)keys.p + keys.len;
            long kl = (long)k->n;
            if (k->type == SPW_JSON_STRING)
                kl = spw_json_unescape(k, dst, keys.cap - keys.len);
            else
                memcpy(dst, k->p, k->n);
            if (kl < 0 || !spw__key_text_ok((const uint8_t *)dst, (size_t)kl)) {
                atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
                send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_key",
                           "record %u: the key must be text without control characters", i);
                goto out;
            }
            r->key = dst;
            r->key_len = (int32_t)kl;
            keys.len += (size_t)kl;
        }
        if (ts_i >= 0 && !(fr.attrs & SPW_REC_HAS_TS) && found[ts_i].type != SPW_JSON_NONE &&
            spw_json_int64(&found[ts_i], &r->ts)) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_timestamp",
                       "record %u: the timestamp %s must be an integer of milliseconds since the Unix epoch", i,
                       cfg->timestamp);
            goto out;
        }
    }
    /* Idempotent producer: producer id + the request's first sequence
     * number is the request's dedupe key (server/dedupe.h), so a resend
     * after a lost answer is answered as the first time and appends
     * nothing. */
    uint32_t route_part = pq.partition == SPW_PARTITION_ANY ? UINT32_MAX : pq.partition;
    spw_produce_opts po = {.partition = route_part, .ack = ack, .producer_id = pq.producer_id,
                           .producer_seq = pq.producer_seq,
                           .supersede_ok = (pq.flags & SPW_PRODUCE_SUPERSEDE_OK) != 0};
    if (pq.producer_id && cfg->dedupe_window_ms > 0 && api->dd) {
        po.idem_key = spw_dd_producer_key(pq.producer_id, pq.producer_seq);
        int d = spw_api_dd_begin(api, s, po.idem_key, recs, pq.count, route_part, &po.dd, &stored);
        if (d == SPW_DD_DONE) {
            atomic_fetch_add(&api->duplicates, 1);
            answer_result(c, h->request_id, s, recs, pq.count, route_part, po.idem_key, &stored);
            goto out;
        }
        if (d == SPW_DD_FULL) {
            send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, 1000, "dedupe_full",
                       "the server remembers dedupe-max-keys producer sequences, all inside their windows; a new one "
                       "is refused rather than an older one forgotten; retry later (nothing was appended)");
            goto out;
        }
        if (d == SPW_DD_BUSY) {
            send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, 20, "in_progress",
                       "this producer's request with the same sequence is still being written; retry after "
                       "retry_after_ms to get its answer");
            goto out;
        }
        if (d == SPW_DD_UNRESOLVED) {
            send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, 20, "in_progress",
                       "this producer's request with the same sequence failed while being written and may be "
                       "partly stored; a partition it wrote to is still recovering: retry after retry_after_ms");
            goto out;
        }
        if (d == SPW_DD_CONFLICT) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_CONFLICT, 0, "sequence_reused",
                       "producer %" PRIu64 " used sequence %u for a request of another size within the stream's "
                       "dedupe window; nothing was appended",
                       pq.producer_id, pq.producer_seq);
            goto out;
        }
        if (d == SPW_DD_REUSED) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            send_error(c, h->opcode, h->request_id, SPW_ST_CONFLICT, 0, "sequence_reused",
                       "producer %" PRIu64 " used sequence %u for a request with different records within the "
                       "stream's dedupe window; nothing was appended (a client takes a new producer id before its "
                       "sequence wraps)",
                       pq.producer_id, pq.producer_seq);
            goto out;
        }
        if (d == SPW_DD_PARTIAL)
            po.stored = &stored;
    }
    /* Rate limit (server/ratelimit.h): the same table as HTTP, keyed by
     * the connection's tenant or address; refused means nothing appended. */
    char rkey[SPW_RL_KEY_MAX];
    size_t rkl = 0;
    if (api->rl) {
        spw_rl_answer ra;
        int v = spw_rl_admit(api->rl, cfg, c->tenant, c->peer, pq.count, spw_mono_ns(), &ra, rkey, &rkl);
        if (v != SPW_RL_ALLOWED) {
            atomic_fetch_add(&api->rejected[SPW_REJ_RATE_LIMIT], 1);
            if (v == SPW_RL_OVER_BURST)
                send_error(c, h->opcode, h->request_id, SPW_ST_TOO_LARGE, 0, "over_burst",
                           "a request of %u records can never pass the rate limit of stream %s: at most %" PRIu64
                           " records pass at once (its burst); send smaller batches (nothing was appended)",
                           pq.count, cfg->name, ra.limit);
            else
                send_error(c, h->opcode, h->request_id, SPW_ST_RATE_LIMITED,
                           ra.retry_after_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ra.retry_after_ms, "rate_limited",
                           "rate limit of stream %s exceeded: %" PRIu64 " of %" PRIu64 " records left, %u asked; "
                           "retry after retry_after_ms (nothing was appended)",
                           cfg->name, ra.remaining, ra.limit, pq.count);
            if (po.dd)
                spw_dd_finish(api->dd, po.dd, NULL, 0);
            goto out;
        }
    }
    breq *q = spw_xmalloc(sizeof *q);
    q->c = c;
    q->request_id = h->request_id;
    /* Counted before the call: with ack none, done runs inside it. */
    c->inflight++;
    c->loop->inflight++;
    int r = spw_api_produce_ex(api, s, recs, pq.count, &po, produce_done, q);
    if (r == 0) {
        s = NULL; /* the produce holds the reference now */
        goto out;
    }
    if (po.dd)
        spw_dd_finish(api->dd, po.dd, NULL, 0);
    c->inflight--;
    c->loop->inflight--;
    spw_free(q);
    if (rkl) /* not appended: not counted against the limit */
        spw_rl_refund(api->rl, rkey, rkl, pq.count, spw_mono_ns());
    int hst;
    uint16_t dst;
    const char *dcode;
    char dmsg[400];
    if (r == SPW_EAGAIN)
        send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, spw_pressure_retry_ms(&api->pressure),
                   "backpressure",
                   "the server is writing as fast as the disk allows; retry after retry_after_ms");
    else if (r == SPW_EMSGSIZE)
        send_error(c, h->opcode, h->request_id, SPW_ST_TOO_LARGE, 0, "too_large",
                   "the request's batches exceed max_pending_bytes");
    else if (spw_api_disk_error(r, 1, &hst, &dst, &dcode, dmsg, sizeof dmsg))
        send_error(c, h->opcode, h->request_id, dst, 0, dcode, "%s", dmsg);
    else
        send_error(c, h->opcode, h->request_id, SPW_ST_INTERNAL, 0, "internal", "encoding failed: %s",
                   spw_strerror(r));
out:
    spw_dd_result_free(&stored);
    spw_free(recs);
    spw_buf_fini(&keys);
    if (s)
        spw_stream_put(s);
}

/* ---- FETCH ---- */

static void handle_fetch(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_api *api = c->loop->srv->api;
    spw_fetch_req fq;
    const char *why;
    if (spw_fetch_req_decode(body, len, &fq, &why)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_request", "%s", why);
        return;
    }
    if (!spw_stream_name_ok(fq.stream, fq.stream_len)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_name", BAD_NAME_MSG);
        return;
    }
    if (!bin_allowed(c, h, SPW_PERM_CONSUME, fq.stream, fq.stream_len))
        return;
    spw_stream *s = spw_stream_get(api->cat, fq.stream, fq.stream_len);
    if (!s) {
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "no_such_stream", "no stream named %.*s",
                   (int)fq.stream_len, fq.stream);
        return;
    }
    spw_buf data = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    if (fq.partition >= s->cfg.partitions) {
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "no_such_partition",
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
        send_error(c, h->opcode, h->request_id, SPW_ST_OUT_OF_RANGE, 0, "offset_out_of_range",
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
    uint64_t next = fq.offset;
    uint32_t count = 0;
    size_t payload = 0;
    int full = 0; /* the next item does not fit: stop, so offsets stay dense */
    while (!oom && !full && payload < maxb && next < vend) {
        uint64_t bad_next = 0;
        int n = spw_part_read(p, next, maxb - payload, &data, &bad_next);
        if (n == 0)
            break;
        if (n < 0) {
            if (count == 0) {
                spw_buf_fini(&ans);
                send_error(c, h->opcode, h->request_id, SPW_ST_INTERNAL, 0,
                           n == SPW_ECORRUPT ? "damaged" : "read_failed",
                           "reading offset %" PRIu64 ": %s (next readable offset %" PRIu64 ")", next,
                           spw_strerror(n), n == SPW_ECORRUPT ? bad_next : next);
                goto out;
            }
            break;
        }
        size_t pos = 0;
        for (int b = 0; b < n && !oom && !full; b++) {
            spw_batch_hdr bh;
            spw_batch_parse(data.p + pos, data.len - pos, &bh);
            if (fq.mode == SPW_FETCH_BATCHES) {
                if (count > 0 && payload + bh.length > maxb) {
                    full = 1;
                    break;
                }
                if (spw_buf_reserve(&ans, ans.len + bh.length)) {
                    oom = 1;
                    break;
                }
                memcpy(ans.p + ans.len, data.p + pos, bh.length);
                ans.len += bh.length;
                payload += bh.length;
                count++;
                next = spw_batch_next_offset(&bh);
            } else {
                const uint8_t *recs;
                size_t rl;
                if (spw_batch_records(data.p + pos, &bh, &scratch, &recs, &rl))
                    break;
                spw_rec_iter it;
                spw_record_view rv;
                spw_rec_iter_init(&it, &bh, recs, rl);
                while (spw_rec_next(&it, &rv) == 1) {
                    if (rv.offset < next)
                        continue;
                    size_t sz = 32 + (rv.key_len > 0 ? (size_t)rv.key_len : 0) + rv.value_len;
                    if (count > 0 && payload + sz > maxb) {
                        full = 1;
                        break;
                    }
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
            pos += bh.length;
        }
        if (count == 0)
            break; /* the batch held nothing at or after offset: cannot happen below the durable end */
    }
    if (oom) {
        spw_buf_fini(&ans);
        send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, RETRY_AFTER_MS, "overloaded", "out of memory");
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
    spw_buf_fini(&data);
    spw_buf_fini(&scratch);
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
    spw_api *api = c->loop->srv->api;
    const char *name;
    uint16_t nl;
    const char *why;
    if (spw_metadata_req_decode(body, len, &name, &nl, &why)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_request", "%s", why);
        return;
    }
    spw_stream *one = NULL;
    if (nl) {
        if (!spw_stream_name_ok(name, nl)) {
            send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_name", BAD_NAME_MSG);
            return;
        }
        if (!bin_allowed(c, h, 0, name, nl))
            return;
        one = spw_stream_get(api->cat, name, nl);
        if (!one) {
            send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "no_such_stream", "no stream named %.*s",
                       (int)nl, name);
            return;
        }
    }
    spw_buf ans = SPW_BUF_INIT;
    size_t fstart, count_at;
    meta_ctx m = {.b = &ans, .who = api->auth ? spw_auth_session_who(api->auth, &c->auth) : NULL};
    m.oom = spw_frame_begin(&ans, SPW_OP_METADATA, SPW_FLAG_RESPONSE, h->request_id, &fstart) ||
            spw_answer_ok(&ans);
    count_at = ans.len;
    m.oom |= spw_metadata_resp_head(&ans, 0) != 0;
    if (one) {
        meta_one(&m, one);
        spw_stream_put(one);
    } else {
        spw_catalog_each(api->cat, meta_one, &m);
    }
    if (m.oom || spw_buf_reserve(&c->out, c->out.len + ans.len)) {
        spw_buf_fini(&ans);
        send_error(c, h->opcode, h->request_id, SPW_ST_OVERLOADED, RETRY_AFTER_MS, "overloaded", "out of memory");
        return;
    }
    memcpy(ans.p + count_at, &m.n, 4);
    spw_frame_finish(&ans, fstart);
    memcpy(c->out.p + c->out.len, ans.p, ans.len);
    c->out.len += ans.len;
    spw_buf_fini(&ans);
}

/* ---- GROUP_POLL, GROUP_COMMIT (consumer groups: server/groups_http.h) ---- */

#define BAD_GROUP_MSG "group and member names are 1 to 128 (members 64) characters of a-z, A-Z, 0-9, '.', '_' or '-', not starting with '.'"

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
 * a read error (SPW_ECORRUPT: *bad the next readable offset).
 */
static int group_read(spw_part *p, uint64_t from, uint32_t max, size_t max_bytes, spw_buf *recs, uint64_t *next,
                      uint64_t *bad)
{
    spw_buf data = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    uint32_t count = 0;
    int err = 0, full = 0;
    *next = from;
    while (!full && count < max) {
        uint64_t bad_next = 0;
        int n = spw_part_read(p, *next, max_bytes, &data, &bad_next);
        if (n <= 0) {
            if (n < 0 && count == 0) {
                err = n;
                *bad = bad_next;
            }
            break;
        }
        uint32_t before = count;
        size_t pos = 0;
        for (int b = 0; b < n && !full && count < max; b++) {
            spw_batch_hdr bh;
            spw_batch_parse(data.p + pos, data.len - pos, &bh);
            const uint8_t *rp;
            size_t rl;
            if (spw_batch_records(data.p + pos, &bh, &scratch, &rp, &rl))
                break;
            spw_rec_iter it;
            spw_record_view rv;
            spw_rec_iter_init(&it, &bh, rp, rl);
            while (count < max && spw_rec_next(&it, &rv) == 1) {
                if (rv.offset < *next)
                    continue;
                size_t sz = 32 + (rv.key_len > 0 ? (size_t)rv.key_len : 0) + rv.value_len;
                if (count > 0 && recs->len + sz > max_bytes) {
                    full = 1;
                    break;
                }
                spw_fetch_rec fr = {.offset = rv.offset, .id = rv.id, .ts = rv.ts, .key = rv.key,
                                    .key_len = rv.key_len, .value = rv.value, .value_len = rv.value_len};
                if (spw_fetch_rec_put(recs, &fr)) {
                    err = count ? 0 : SPW_ENOMEM;
                    full = 1;
                    break;
                }
                count++;
                *next = rv.offset + 1;
            }
            pos += bh.length;
        }
        if (count == before)
            break;
    }
    spw_buf_fini(&data);
    spw_buf_fini(&scratch);
    return err ? err : (int)count;
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
    uint64_t next = l->from, bad = 0;
    int n, skips = 0;
    while ((n = group_read(p->s->parts[l->partition], l->from, p->max, maxb, &recs, &next, &bad)) == SPW_ECORRUPT &&
           skips < SPW_GROUP_SKIPS_MAX && spw_groups_http_skip_damaged(p, l, bad) == 0)
        skips++;
    if (n == 0 && skips) { /* nothing readable after the damage yet: an empty answer */
        spw_group_release(p->g, l);
        spw_buf_fini(&recs);
        group_send_empty(c, q);
        spw_free(q);
        return;
    }
    if (n <= 0) {
        spw_group_release(p->g, l);
        if (n == SPW_ECORRUPT && bad > l->from)
            send_error(c, SPW_OP_GROUP_POLL, q->request_id, SPW_ST_INTERNAL, 0, "damaged",
                       "partition %" PRIu32 " offsets %" PRIu64 "..%" PRIu64 " are damaged on disk (run spillway check)",
                       l->partition, l->from, bad - 1);
        else
            send_error(c, SPW_OP_GROUP_POLL, q->request_id, SPW_ST_INTERNAL, 0, "read_failed",
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
    spw_api *api = c->loop->srv->api;
    if (!spw_stream_name_ok(stream, sl)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_name", BAD_NAME_MSG);
        return NULL;
    }
    if (!spw_group_name_ok(group, gl) || (ml && !spw_group_member_ok(member, ml))) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_name", BAD_GROUP_MSG);
        return NULL;
    }
    if (!bin_allowed(c, h, SPW_PERM_CONSUME, stream, sl))
        return NULL;
    if (!api->groups) {
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "not_found",
                   "consumer groups are not available on this server");
        return NULL;
    }
    spw_stream *s = spw_stream_get(api->cat, stream, sl);
    if (!s)
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "no_such_stream", "no stream named %.*s",
                   (int)sl, stream);
    return s;
}

static void handle_group_poll(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_api *api = c->loop->srv->api;
    spw_gpoll_req q;
    const char *why;
    if (spw_gpoll_req_decode(body, len, &q, &why)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_request", "%s", why);
        return;
    }
    spw_stream *s = group_stream(c, h, q.stream, q.stream_len, q.group, q.group_len, q.member, q.member_len);
    if (!s)
        return;
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, q.group, q.group_len);
    gname[q.group_len] = 0;
    spw_group *g;
    int e = spw_groups_http_poll_group(api->groups, s, gname, q.start == SPW_GPOLL_LATEST, &g);
    if (e < 0) {
        spw_stream_put(s);
        if (e == -E2BIG)
            send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "too_many_partitions",
                       "consumer groups need at most %d partitions", SPW_GROUP_PARTS_MAX);
        else
            send_error(c, h->opcode, h->request_id, SPW_ST_INTERNAL, 0, "save_failed", "saving the new group: %s",
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
    spw_groups_http_poll(api->groups, p);
    c->loop->in_group_call--;
}

static void group_commit_done(void *arg, int err)
{
    bgroup *q = arg;
    bconn *c = q->c;
    if (group_answered(c)) {
        if (err < 0) {
            send_error(c, SPW_OP_GROUP_COMMIT, q->request_id, SPW_ST_INTERNAL, 0, "save_failed",
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
    spw_api *api = c->loop->srv->api;
    spw_gcommit_req q;
    const char *why;
    if (spw_gcommit_req_decode(body, len, &q, &why)) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_request", "%s", why);
        return;
    }
    spw_stream *s = group_stream(c, h, q.stream, q.stream_len, q.group, q.group_len, NULL, 0);
    if (!s)
        return;
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, q.group, q.group_len);
    gname[q.group_len] = 0;
    spw_group *g = spw_group_find(spw_groups_http_groups(api->groups), s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    spw_stream_put(s);
    if (!g) {
        send_error(c, h->opcode, h->request_id, SPW_ST_NOT_FOUND, 0, "no_such_group", "no consumer group named %s",
                   gname);
        return;
    }
    int r = spw_group_commit(g, q.partition, q.lease_id, q.offset, (int64_t)now_ms());
    if (r == -ESTALE || r == -EINVAL) {
        send_error(c, h->opcode, h->request_id, SPW_ST_CONFLICT, 0, "stale_lease",
                   "lease %016" PRIx64 " of partition %" PRIu32
                   " is not held (already committed, expired and taken over, or from before a restart): poll again",
                   q.lease_id, q.partition);
        return;
    }
    if (r == -ETIME) {
        send_error(c, h->opcode, h->request_id, SPW_ST_CONFLICT, 0, "lease_expired",
                   "lease %016" PRIx64 " of partition %" PRIu32
                   " expired: its records will be delivered again; poll again",
                   q.lease_id, q.partition);
        return;
    }
    if (r == -ERANGE) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_offset",
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
    spw_groups_http_commit_saved(api->groups, g, bin_post, c->loop, group_commit_done, bq);
    c->loop->in_group_call--;
}

/* ---- framing ---- */

static void dispatch(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    atomic_fetch_add(&c->loop->srv->st_requests, 1);
    if (h->version != SPW_FRAME_VERSION) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "unsupported_version",
                   "protocol version %u is not supported (this server speaks %u)", h->version, SPW_FRAME_VERSION);
        return;
    }
    if (h->flags & SPW_FLAG_RESPONSE) {
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "bad_request",
                   "a request must not carry the response flag");
        return;
    }
    int known = h->opcode == SPW_OP_PRODUCE || h->opcode == SPW_OP_FETCH || h->opcode == SPW_OP_METADATA ||
                h->opcode == SPW_OP_GROUP_POLL || h->opcode == SPW_OP_GROUP_COMMIT;
    /* Not logged in: 401 before the body is even looked at (as HTTP does). */
    if (known && !bin_allowed(c, h, 0, NULL, 0))
        return;
    switch (h->opcode) {
    case SPW_OP_PRODUCE: handle_produce(c, h, body, len); break;
    case SPW_OP_FETCH: handle_fetch(c, h, body, len); break;
    case SPW_OP_METADATA: handle_metadata(c, h, body, len); break;
    case SPW_OP_AUTH: handle_auth(c, h, body, len); break;
    case SPW_OP_GROUP_POLL: handle_group_poll(c, h, body, len); break;
    case SPW_OP_GROUP_COMMIT: handle_group_commit(c, h, body, len); break;
    default:
        send_error(c, h->opcode, h->request_id, SPW_ST_BAD_REQUEST, 0, "unknown_opcode", "opcode %u is not known",
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
            conn_fatal(c, SPW_ST_TOO_LARGE, "frame_too_large", m);
            return;
        }
        if (r) {
            conn_fatal(c, SPW_ST_BAD_REQUEST, "bad_frame", "not a Spillway frame (length below 12 or unknown flags)");
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
                conn_fatal(c, SPW_ST_OVERLOADED, "overloaded", "out of memory for the frame");
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
                conn_fatal(c, SPW_ST_OVERLOADED, "overloaded", "out of memory for input");
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

/* ---- loop ---- */

static void accept_all(bloop *l)
{
    spw_bin_server *srv = l->srv;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->b.lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (atomic_fetch_add(&srv->nconns, 1) >= srv->cfg.max_connections) {
            atomic_fetch_sub(&srv->nconns, 1);
            atomic_fetch_add(&srv->st_rejected, 1);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        bconn *c = spw_xcalloc(1, sizeof *c);
        c->fd = fd;
        c->loop = l;
        spw__net_peer_str(&ss, c->peer, sizeof c->peer);
        c->last_active_ms = now_ms();
        c->next = l->conns;
        if (l->conns)
            l->conns->prev = c;
        l->conns = c;
        atomic_fetch_add(&srv->st_total, 1);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(l->b.epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void check_timeouts(bloop *l)
{
    spw_bin_config *cfg = &l->srv->cfg;
    uint64_t now = now_ms();
    bconn *c = l->conns;
    while (c) {
        bconn *next = c->next;
        if (c->mem_wait && !c->frame_start_ms)
            c->last_active_ms = now; /* its bytes wait on us, not on the client */
        if (c->held) {
            c->frame_start_ms = now; /* waiting on us, not on the client */
        } else if (c->frame_start_ms && !c->close_after && now - c->frame_start_ms > cfg->request_timeout_ms) {
            conn_fatal(c, SPW_ST_TIMEOUT, "request_timeout", "frame not received whole in time");
        } else if (c->inflight == 0 && c->out.len == c->out_off && now - c->last_active_ms > cfg->idle_timeout_ms) {
            conn_close(c);
        }
        c = next;
    }
}

static void *loop_main(void *arg)
{
    bloop *l = arg;
    struct epoll_event evs[256];
    uint64_t next_tick = now_ms() + TICK_MS;
    for (;;) {
        int n = epoll_wait(l->b.epfd, evs, 256, TICK_MS);
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &l->b.lfd) {
                if (!l->stopping)
                    accept_all(l);
                continue;
            }
            if (ptr == &l->b.efd) {
                spw__loop_run_posts(&l->b);
                continue;
            }
            bconn *c = ptr;
            if (c->closed)
                continue;
            if (evs[i].events & EPOLLOUT)
                conn_flush(c);
            if (c->closed)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                if (c->paused && (evs[i].events & (EPOLLHUP | EPOLLERR))) {
                    conn_close(c); /* both directions gone: nobody to answer */
                } else if (c->paused) {
                    /* The rest is read once unpaused; stop the level-triggered
                     * RDHUP from waking us until then. */
                    if ((evs[i].events & EPOLLRDHUP) && !c->rdhup) {
                        c->rdhup = 1;
                        set_events(c);
                    }
                } else {
                    conn_read(c);
                }
            }
        }
        if (l->nheld)
            release_held(l); /* as soon as pressure falls, not a tick later */
        if (l->waiters && spw_membudget_room(budget_of(l), READ_CHUNK))
            wake_waiters(l); /* likewise for the buffer budget */
        if (l->zombies)
            sweep(l, 0);
        uint64_t now = now_ms();
        if (now >= next_tick) {
            release_held(l);
            check_timeouts(l);
            next_tick = now + TICK_MS;
        }
        if (atomic_load(&l->srv->stop) == 2)
            break;
    }
    return NULL;
}

int spw_bin_start(const spw_bin_config *cfg, spw_api *api, spw_bin_server **out)
{
    struct sockaddr_in sa;
    int r = spw__net_parse_addr(cfg->listen, &sa);
    if (r)
        return r;
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
    s->api = api;
    s->loops = spw_xcalloc(s->cfg.threads, sizeof *s->loops);
    if ((r = spw__loop_bases_open(&s->loops[0].b, sizeof *s->loops, s->cfg.threads, &sa)) < 0) {
        spw_free(s->loops);
        spw_free(s);
        return r;
    }
    s->nloops = s->cfg.threads;
    s->port = ntohs(sa.sin_port);
    for (uint32_t i = 0; i < s->nloops; i++) {
        s->loops[i].srv = s;
        pthread_create(&s->loops[i].b.th, NULL, loop_main, &s->loops[i]);
    }
    *out = s;
    return 0;
}

int spw_bin_port(spw_bin_server *s) { return s->port; }

static void stop_accepting(void *arg)
{
    bloop *l = arg;
    if (l->stopping)
        return;
    l->stopping = 1;
    spw__loop_base_stop_listening(&l->b);
    /* Draining: requests already dispatched are answered, nothing new is
     * read (frames not yet dispatched are dropped with the connection, so
     * the drain ends even while clients keep sending). */
    for (bconn *c = l->conns; c; c = c->next)
        conn_update_reading(c);
}

void spw_bin_stop_accepting(spw_bin_server *s)
{
    for (uint32_t i = 0; i < s->nloops; i++)
        loop_post(&s->loops[i], stop_accepting, &s->loops[i]);
}

typedef struct drain_q {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t done;
    uint32_t inflight;
} drain_q;

typedef struct drain_arg {
    bloop *l;
    drain_q *d;
} drain_arg;

static void ask_inflight(void *arg)
{
    drain_arg *a = arg;
    pthread_mutex_lock(&a->d->mu);
    a->d->inflight += a->l->inflight;
    a->d->done++;
    pthread_cond_signal(&a->d->cv);
    pthread_mutex_unlock(&a->d->mu);
}

void spw_bin_stop(spw_bin_server *s, uint32_t drain_ms)
{
    spw_bin_stop_accepting(s);
    uint64_t deadline = now_ms() + drain_ms;
    drain_arg *args = spw_xcalloc(s->nloops, sizeof *args);
    int warned = 0;
    for (;;) {
        drain_q d = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
        for (uint32_t i = 0; i < s->nloops; i++) {
            args[i] = (drain_arg){&s->loops[i], &d};
            loop_post(&s->loops[i], ask_inflight, &args[i]);
        }
        pthread_mutex_lock(&d.mu);
        while (d.done < s->nloops)
            pthread_cond_wait(&d.cv, &d.mu);
        pthread_mutex_unlock(&d.mu);
        if (d.inflight == 0)
            break;
        /* Past the deadline we still wait: every append completes (the log
         * runs each callback exactly once), and freeing the loops first
         * would leave those callbacks posting to freed memory. */
        if (now_ms() >= deadline && !warned) {
            spw_warn("binary protocol: %u request(s) still in flight after the drain time; waiting for the log",
                     d.inflight);
            warned = 1;
        }
        usleep(10000);
    }
    spw_free(args);
    atomic_store(&s->stop, 2);
    for (uint32_t i = 0; i < s->nloops; i++) {
        spw__loop_wake(&s->loops[i].b);
        pthread_join(s->loops[i].b.th, NULL);
    }
    for (uint32_t i = 0; i < s->nloops; i++) {
        bloop *l = &s->loops[i];
        /* Posted completions still queued (requests that outlived the drain)
         * run now, against closed connections: they free what they hold. */
        while (l->conns)
            conn_close(l->conns);
        spw__loop_run_posts(&l->b);
        sweep(l, 1);
        spw__loop_base_close(&l->b);
    }
    spw_free(s->loops);
    spw_free(s);
}

void spw_bin_stats_get(spw_bin_server *s, spw_bin_stats *st)
{
    st->connections_open = atomic_load(&s->nconns);
    st->connections_total = atomic_load(&s->st_total);
    st->requests = atomic_load(&s->st_requests);
    st->rejected_frames = atomic_load(&s->st_rejected);
}
