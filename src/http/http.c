/*
 * HTTP/1.1 over the connection core (net/conn.h): see http.h. The core
 * owns the loops, accepting, closing, zombies, the budget's waiters,
 * writing `out`, ticks and the drain; this file is the protocol: parsing
 * (libhttp-parser callbacks), the pipelining slots that keep answers in
 * request order, the answer's encoding, and the limits and timeouts of a
 * request (the callbacks in http_proto at the end). Everything about a
 * connection happens on its loop's thread; the only cross-thread path is
 * spw_http_loop_post (spw_netloop_post). One concept, the HTTP/1.1
 * protocol, so one file (over 800 lines on purpose): the parser's
 * callbacks, the pipelining slots, the answer encoder and the budget's
 * pauses are one state machine over one connection's fields — an answer
 * frees its slot and resumes the parser (conn_resume), the parser pauses
 * on the budget and on unsent answers (conn_flush) — so a split would only
 * spread spw_conn's private state over several files. The requests'
 * handlers are elsewhere (api.c and its resource files).
 *
 * Draining (spw_http_stop, the core's order): each connection is paused
 * (http_stop_reading) and stays paused (conn_resume and
 * on_message_complete look at loop->stopping), so no new request is
 * dispatched; requests in flight are answered, whatever the drain time.
 *
 * Input memory (net/membudget.h): a socket is read into a buffer on the
 * stack, and only what must outlive the read is kept and counted against
 * the budget: a body, reserved whole from its Content-Length when its
 * headers end (a chunked one grows in steps as it arrives), and the bytes
 * read past a pause (pending_in). A body that does not fit pauses the
 * parser right after its headers; a full read happens only while the
 * budget has room for one (read_size says what may be read otherwise).
 * A connection that must wait goes on its loop's list of waiters, looked
 * at whenever the budget has room again; a request paused that way still
 * has its request-timeout clock running.
 */
#include "http/http.h"
#include "net/conn.h"

#include "core/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/invariant.h"
#include "core/id.h"
#include "core/msg.h"
#include "net/membudget.h"

#define READ_CHUNK SPW_NET_READ_CHUNK
#define SMALL_READ SPW_NET_SMALL_READ
#define BODY_STEP (64u << 10)        /* a chunked body grows by this much */
#define OUT_PAUSE_BYTES SPW_NET_OUT_PAUSE_BYTES

typedef struct slot {
    spw_http_req *req;
    spw_buf resp;
    int done;
} slot;

/* A connection: the core's fields (net/conn.h: fd, out, inflight, closed,
 * ...) by name, then HTTP's. */
struct spw_conn {
    union {
        spw_netconn nc;
        struct {
            SPW_NETCONN_FIELDS
        };
    };
    spw_http_loop *loop; /* nc.nl as HTTP's loop */
    http_parser parser;
    spw_http_req *cur;   /* request being parsed */
    char hname[32];      /* current header name (truncated: only short names matter) */
    size_t hname_len;
    char *hval;          /* where the current header's value goes, or NULL */
    const char *hval_name; /* its header's name */
    size_t hval_cap, hval_len;
    int in_value;
    spw_buf url;
    uint32_t header_bytes;
    slot *slots; /* ring, cap = max_pipelined */
    uint32_t s_head, s_len;
    size_t promised; /* answer bytes promised by requests answered later (spw_http_req_promise) */
    spw_buf pending_in; /* bytes read but not parsed (paused) */
    uint64_t pin_charged; /* budget held by pending_in */
    uint64_t body_wait;   /* a body of this many bytes waits for the budget (parser paused) */
    int body_whole;       /* cur's body is reserved whole (its Content-Length) */
    int error_sent;
    uint64_t req_start_ms;
    /* The last answered request, kept for the next one (req_new): a
     * keep-alive connection then allocates no request struct (~1.8 KB,
     * zeroed) and no URL copy per request. Freed with the connection. */
    spw_http_req *spare;
    spw_buf body_keep; /* an answer body's buffer, for the next (spw_http_req_buf) */
};

struct spw_http_loop {
    union {
        spw_netloop nl;
        struct {
            SPW_NETLOOP_FIELDS
        };
    };
    spw_http_server *srv;
};

struct spw_http_server {
    spw_netsrv ns; /* loops, connections, drain (net/conn.h) */
    spw_http_config cfg;
    spw_http_handler handler;
    void *ctx;
    _Atomic uint64_t st_requests, st_rejected;
};

static spw_conn *hc(spw_netconn *c) { return (spw_conn *)c; }

static http_parser_settings settings;

static uint64_t now_ms(void) { return spw_mono_ms(); }

const char *spw_http_reason(int s)
{
    switch (s) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 412: return "Precondition Failed";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

/* ---- the buffer budget ---- */

static spw_membudget *budget_of(spw_http_loop *l) { return l->srv->cfg.buffers; }

/* Unsent answers, and those promised by requests answered later. */
static size_t out_unsent(const spw_conn *c) { return c->out.len - c->out_off + c->promised; }

void spw_http_req_promise(spw_http_req *req, size_t bytes)
{
    req->promised += bytes;
    req->conn->promised += bytes;
}

/* Frees a request's body and gives its bytes back. */
static void req_body_free(spw_http_req *r)
{
    spw_buf_fini(&r->body);
    spw_membudget_give(budget_of(r->loop), r->charged);
    r->charged = 0;
}

void spw_http_req_release_body(spw_http_req *req) { req_body_free(req); }

uint64_t spw_http_req_out_reserve(spw_http_req *req, uint64_t want)
{
    uint64_t n = spw_netconn_out_reserve(&req->conn->nc, want);
    req->out_reserved += n;
    return n;
}

int spw_http_req_gone(const spw_http_req *req) { return req->conn->closed || req->conn->rdhup; }

static void pin_free(spw_conn *c)
{
    spw_buf_fini(&c->pending_in);
    spw_membudget_give(budget_of(c->loop), c->pin_charged);
    c->pin_charged = 0;
}

static void set_events(spw_conn *c);

/* Stops reading c until the budget has room (the loop's waiters). */
static void wait_for_room(spw_conn *c)
{
    if (c->mem_wait)
        return;
    spw_netconn_wait_for_room(&c->nc);
    set_events(c);
}

static void unwait(spw_conn *c) { spw_netconn_unwait(&c->nc); }

/*
 * Reserves a body of n bytes (a Content-Length) for r, whole: 0, SPW_EAGAIN
 * when the budget has no room for it now, SPW_ENOMEM.
 */
static int body_take(spw_http_req *r, size_t n)
{
    spw_membudget *m = budget_of(r->loop);
    if (spw_membudget_take(m, n))
        return SPW_EAGAIN;
    uint8_t *p = spw_try_realloc(r->body.p, n);
    if (!p) {
        spw_membudget_give(m, n);
        return SPW_ENOMEM;
    }
    r->body.p = p;
    spw_membudget_give(m, r->charged); /* what it held before (nothing, in practice) */
    r->body.cap = n;
    r->charged = n;
    r->conn->body_whole = 1;
    return 0;
}

/* ---- request structs ---- */

/* A URL copy this long or shorter stays with a spare request for reuse. */
#define URL_KEEP 1024

/* A zeroed request for c: its spare (keeping the spare's URL buffer), or a
 * new one. The caller owns it until spw_http_respond (req_done). */
static spw_http_req *req_new(spw_conn *c)
{
    spw_http_req *r = c->spare;
    if (!r)
        return spw_xcalloc(1, sizeof *r);
    c->spare = NULL;
    char *u = r->url_mem;
    size_t ucap = r->url_cap;
    memset(r, 0, sizeof *r);
    r->url_mem = u;
    r->url_cap = ucap;
    return r;
}

/* r is answered (its body freed): kept as c's spare when c has none, else
 * freed. */
static void req_done(spw_conn *c, spw_http_req *r)
{
    if (r->url_cap > URL_KEEP) {
        spw_free(r->url_mem);
        r->url_mem = NULL;
        r->url_cap = 0;
    }
    if (!c->spare) {
        c->spare = r;
        return;
    }
    spw_free(r->url_mem);
    spw_free(r);
}

/* ---- connection teardown ---- */

static void http_conn_free(spw_netconn *nc)
{
    spw_conn *c = hc(nc);
    /* Every slot, not only the pending ones: a finished slot keeps its
     * buffer (or the one swapped in from out) for reuse. */
    for (uint32_t i = 0; i < c->loop->srv->cfg.max_pipelined; i++)
        spw_buf_fini(&c->slots[i].resp);
    if (c->cur) {
        req_body_free(c->cur);
        spw_free(c->cur->url_mem);
        spw_free(c->cur);
    }
    if (c->spare) {
        spw_free(c->spare->url_mem);
        spw_free(c->spare);
    }
    spw_buf_fini(&c->body_keep);
    spw_free(c->slots);
    spw_buf_fini(&c->url);
    pin_free(c);
}

/* Socket closed (net/conn.h): nothing more is read, so what input held
 * goes back at once, not when the last answer lets the struct go. */
static void http_closing(spw_netconn *nc)
{
    spw_conn *c = hc(nc);
    c->body_wait = 0;
    pin_free(c);
    if (c->cur)
        req_body_free(c->cur);
}

/* Closes the socket. The struct is freed later, by the loop, once its
 * last request is answered: never under a parser callback or a handler
 * that still uses it. */
static void conn_close(spw_conn *c) { spw_netconn_close(&c->nc); }

/* ---- output ---- */

static uint32_t http_events(spw_netconn *nc)
{
    spw_conn *c = hc(nc);
    /* While paused, EPOLLRDHUP is watched until it fires once (then
     * c->rdhup): it is level-triggered, and a peer that half-closed would
     * make the loop spin until the connection resumes. */
    int reading = !c->paused && !c->mem_wait;
    return (reading ? EPOLLIN | EPOLLRDHUP : 0) | (c->want_out ? EPOLLOUT : 0) |
           (!reading && c->paused && !c->rdhup ? EPOLLRDHUP : 0);
}

static void set_events(spw_conn *c) { spw_netconn_set_events(&c->nc); }

static void conn_resume(spw_conn *c);

/* Moves finished responses, in order, to out: 0 if that closed c. */
static int conn_gather(spw_conn *c)
{
    uint32_t cap = c->loop->srv->cfg.max_pipelined;
    while (c->s_len && c->slots[c->s_head].done) {
        slot *s = &c->slots[c->s_head];
        if (c->out.len == c->out_off) {
            /* Swap instead of copying when out is empty. */
            spw_buf t = c->out;
            c->out = s->resp;
            s->resp = t;
            s->resp.len = 0;
            c->out_off = 0;
        } else if (spw_buf_reserve(&c->out, c->out.len + s->resp.len) == 0) {
            memcpy(c->out.p + c->out.len, s->resp.p, s->resp.len);
            c->out.len += s->resp.len;
        } else {
            conn_close(c); /* an answer lost would shift every later one onto the wrong request */
            return 0;
        }
        s->resp.len = 0;
        if (s->resp.cap > (256u << 10))
            spw_buf_fini(&s->resp);
        s->done = 0;
        c->s_head = (c->s_head + 1) % cap;
        c->s_len--;
    }
    return 1;
}

/* After out was written (sent: spw_netconn_send's result). */
static void conn_sent(spw_conn *c, int sent)
{
    uint32_t cap = c->loop->srv->cfg.max_pipelined;
    if (sent != 1)
        return;
    if (c->close_after && c->s_len == 0) {
        conn_close(c);
        return;
    }
    if (c->paused && c->s_len < cap)
        conn_resume(c);
}

/* Moves finished responses, in order, to out and writes what the socket takes. */
static void conn_flush(spw_conn *c)
{
    if (conn_gather(c))
        conn_sent(c, spw_netconn_send(&c->nc));
}

/* conn_flush after the loop's current round of events (http_after_events):
 * the answers a round completes — a group commit's, posted together —
 * leave in one send per connection, not one per answer. */
static void conn_flush_soon(spw_conn *c)
{
    if (c->close_after) {
        conn_flush(c); /* closing after its answers (conn_fail, Connection: close): at once, as it always did */
        return;
    }
    spw_netconn_flush_soon(&c->nc);
}

/* A connection closed in the round is a zombie until the sweep after
 * this: conn_flush of it sends nothing. */
static int http_gather(spw_netconn *nc) { return conn_gather(hc(nc)); }
static void http_sent(spw_netconn *nc, int r) { conn_sent(hc(nc), r); }

/* In batches, each written in one submission (net/conn.h
 * spw_netloop_flush); conn_sent may resume a connection, whose new
 * answers go in a later batch. */
static void http_after_events(spw_netloop *nl) { spw_netloop_flush(nl, http_gather, http_sent); }

void spw_http_respond(spw_http_req *req, int status, const char *headers, const char *ctype, const void *body,
                      size_t len)
{
    spw_conn *c = req->conn;
    spw_http_loop *loop = req->loop;
    uint32_t cap = loop->srv->cfg.max_pipelined;
    slot *s = NULL;
    for (uint32_t i = 0; i < c->s_len; i++) {
        slot *t = &c->slots[(c->s_head + i) % cap];
        if (t->req == req) {
            s = t;
            break;
        }
    }
    /* Content-Length of the GET, no body (RFC 9110 §9.3.2, §15.4.5) */
    int head = req->method == SPW_HTTP_HEAD || status == 304;
    req->answered = 1;
    uint64_t reserved = req->out_reserved; /* becomes the answer's bytes below (net/conn.h) */
    c->promised -= req->promised;
    SPW_ASSERT(loop->inflight > 0); /* answered once, after being dispatched */
    loop->inflight--;
    c->inflight--;
    req_body_free(req);
    req_done(c, req);
    if (!s) {
        spw_netconn_out_release(&c->nc, reserved);
        return; /* cannot happen: every dispatched request has a slot */
    }
    s->req = NULL;
    s->done = 1;
    if (!c->closed) {
        spw_buf *b = &s->resp;
        b->len = 0;
        int close_now = c->close_after && s == &c->slots[(c->s_head + c->s_len - 1) % cap];
        /* printf-free: this runs once per request. */
        int r = spw_buf_puts(b, "HTTP/1.1 ") || spw_buf_put_u64(b, (uint64_t)status) || spw_buf_puts(b, " ") ||
                spw_buf_puts(b, spw_http_reason(status)) || spw_buf_puts(b, "\r\nContent-Length: ") ||
                spw_buf_put_u64(b, len) || spw_buf_puts(b, "\r\n");
        if (!r && ctype)
            r = spw_buf_puts(b, "Content-Type: ") || spw_buf_puts(b, ctype) || spw_buf_puts(b, "\r\n");
        if (!r && close_now)
            r = spw_buf_puts(b, "Connection: close\r\n");
        if (!r && headers)
            r = spw_buf_puts(b, headers);
        if (!r)
            r = spw_buf_puts(b, "\r\n");
        if (r) {
            conn_close(c); /* gives back what c held, the reservation too */
            return;
        }
        if (len && !head && spw_buf_reserve(b, b->len + len) == 0) {
            memcpy(b->p + b->len, body, len);
            b->len += len;
        }
        spw_netconn_out_transfer(&c->nc, reserved, b->len); /* unsent from now (net/conn.h) */
        conn_flush_soon(c);
    } else {
        spw_netconn_out_release(&c->nc, reserved);
    }
}

/* A kept answer buffer larger than this is given back (a large request's
 * ids): the common answer is a few hundred bytes. */
#define BODY_KEEP (16u << 10)

spw_buf spw_http_req_buf(spw_http_req *req)
{
    spw_buf b = req->conn->body_keep;
    req->conn->body_keep = (spw_buf)SPW_BUF_INIT;
    b.len = 0;
    return b;
}

void spw_http_respond_buf(spw_http_req *req, int status, const char *headers, const char *ctype, spw_buf *body)
{
    spw_conn *c = req->conn; /* outlives req's answer: freed by the loop later */
    spw_http_respond(req, status, headers, ctype, body->p, body->len);
    if (body->cap <= BODY_KEEP && !c->body_keep.p) {
        c->body_keep = *body;
        c->body_keep.len = 0;
    } else {
        spw_buf_fini(body);
    }
    *body = (spw_buf)SPW_BUF_INIT;
}

void spw_http_error(spw_http_req *req, int status, const char *code, const char *headers, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A message may quote client bytes (a path): spw_json_put_str keeps
     * valid UTF-8 whole and replaces anything else, so the body stays JSON. */
    spw_buf body = SPW_BUF_INIT;
    if (spw_buf_puts(&body, "{\"error\":") || spw_json_put_str(&body, msg, strlen(msg)) ||
        spw_buf_puts(&body, ",\"code\":") || spw_json_put_str(&body, code, strlen(code)) || spw_buf_puts(&body, "}\n"))
        abort(); /* as spw_xmalloc: a few hundred bytes */
    spw_http_respond(req, status, headers, "application/json", (const char *)body.p, body.len);
    spw_buf_fini(&body);
}

void spw_http_answer(spw_http_req *req, spw_sc sc, const char *headers, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    spw_http_error(req, spw_sc_http(sc), spw_sc_word(sc), headers, "%s", msg);
}

/* ---- requests ---- */

/* Answers a protocol-level problem and closes after the response. */
static void conn_fail(spw_conn *c, spw_sc sc, const char *msg)
{
    int status = spw_sc_http(sc);
    const char *code = spw_sc_word(sc);
    if (c->error_sent) {
        conn_close(c);
        return;
    }
    c->error_sent = 1;
    c->close_after = 1;
    c->body_wait = 0;
    atomic_fetch_add(&c->loop->srv->st_rejected, 1);
    uint32_t cap = c->loop->srv->cfg.max_pipelined;
    if (c->s_len == cap) {
        conn_close(c);
        return;
    }
    spw_http_req *r = c->cur ? c->cur : req_new(c);
    c->cur = NULL;
    r->conn = c;
    r->loop = c->loop;
    slot *s = &c->slots[(c->s_head + c->s_len) % cap];
    s->req = r;
    s->done = 0;
    c->s_len++;
    c->inflight++;
    c->loop->inflight++;
    spw_http_error(r, status, code, NULL, "%s", msg);
}

static int on_message_begin(http_parser *p)
{
    spw_conn *c = p->data;
    c->cur = req_new(c);
    c->body_whole = 0;
    memcpy(c->cur->peer, c->peer, sizeof c->peer);
    c->cur->conn = c;
    c->cur->loop = c->loop;
    c->url.len = 0;
    c->header_bytes = 0;
    c->in_value = 0;
    c->hname_len = 0;
    c->hval = NULL;
    if (!c->req_start_ms) /* conn_read may have started it at the first byte */
        c->req_start_ms = now_ms();
    return 0;
}

static int header_budget(spw_conn *c, size_t n)
{
    c->header_bytes += (uint32_t)n;
    if (c->header_bytes > c->loop->srv->cfg.max_header_bytes) {
        conn_fail(c, SPW_SC_HEADER_TOO_LARGE, "request line and headers exceed the server's limit");
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    spw_conn *c = p->data;
    if (header_budget(c, n) || spw_buf_reserve(&c->url, c->url.len + n + 1))
        return -1;
    memcpy(c->url.p + c->url.len, at, n);
    c->url.len += n;
    return 0;
}

#define KNOWN(name, field) {name, sizeof name - 1, offsetof(spw_http_req, field), sizeof(((spw_http_req *)0)->field)}

static void pick_header(spw_conn *c)
{
    static const struct {
        const char *name;
        size_t len; /* strlen(name) */
        size_t off, cap;
    } known[] = {
        KNOWN("Content-Type", content_type),
        KNOWN("Idempotency-Key", idempotency_key),
        KNOWN("Spillway-Ack", ack),
        KNOWN("Spillway-Priority", priority),
        KNOWN("Authorization", authorization),
        KNOWN("Spillway-Key", key),
        KNOWN("Spillway-Expected-Version", expected_version),
        KNOWN("If-None-Match", if_none_match),
    };
    c->hval = NULL;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (c->hname_len == known[i].len && strncasecmp(c->hname, known[i].name, c->hname_len) == 0) {
            c->hval = (char *)c->cur + known[i].off;
            c->hval_name = known[i].name;
            c->hval_cap = known[i].cap;
            c->hval_len = 0;
            c->hval[0] = 0;
        }
}
#undef KNOWN

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    spw_conn *c = p->data;
    if (header_budget(c, n))
        return -1;
    if (c->in_value) {
        c->in_value = 0;
        c->hname_len = 0;
    }
    for (size_t i = 0; i < n && c->hname_len < sizeof c->hname; i++)
        c->hname[c->hname_len++] = at[i];
    if (c->hname_len == sizeof c->hname)
        c->hname_len = sizeof c->hname; /* too long to be one we read */
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    spw_conn *c = p->data;
    if (header_budget(c, n))
        return -1;
    if (!c->in_value) {
        c->in_value = 1;
        pick_header(c);
    }
    if (c->hval) {
        size_t k = n < c->hval_cap - 1 - c->hval_len ? n : c->hval_cap - 1 - c->hval_len;
        memcpy(c->hval + c->hval_len, at, k);
        c->hval_len += k;
        c->hval[c->hval_len] = 0;
        /* A value that does not fit is never used cut: two long keys with
         * a common prefix would be one key. The handler refuses it. */
        if (k < n && c->hval == c->cur->authorization) {
            c->cur->authorization_cut = 1;
        } else if (k < n && c->hval == c->cur->if_none_match) {
            c->cur->if_none_match_cut = 1; /* a validator, not an input: the page goes out whole */
        } else if (k < n && !c->cur->too_long) {
            c->cur->too_long = c->hval_name;
            c->cur->too_long_max = c->hval_cap - 1;
        }
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    spw_conn *c = p->data;
    spw_http_req *r = c->cur;
    if (spw_buf_reserve(&c->url, c->url.len + 1))
        return -1;
    c->url.p[c->url.len] = 0;
    /* A PUT without a length has an empty body (RFC 9112 §6.3), as curl -X PUT
     * sends it; a produce request must say how long its body is. */
    if (p->method == HTTP_POST && !(p->flags & (F_CONTENTLENGTH | F_CHUNKED))) {
        conn_fail(c, SPW_SC_LENGTH_REQUIRED, "a request body needs Content-Length or chunked encoding");
        return -1;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->loop->srv->cfg.max_body_bytes) {
        conn_fail(c, SPW_SC_REQUEST_TOO_LARGE, "request body exceeds max_request_bytes");
        return -1;
    }
    switch (p->method) {
    case HTTP_GET: r->method = SPW_HTTP_GET; break;
    case HTTP_PUT: r->method = SPW_HTTP_PUT; break;
    case HTTP_POST: r->method = SPW_HTTP_POST; break;
    case HTTP_DELETE: r->method = SPW_HTTP_DELETE; break;
    case HTTP_HEAD: r->method = SPW_HTTP_HEAD; break;
    default: r->method = SPW_HTTP_OTHER; break;
    }
    /* Authentication first (docs/operations.md "Memory"): a body whose
     * headers carry no valid token is read and dropped, so unauthenticated
     * clients never hold the budget that authenticated ones need. */
    int has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
    if (has_body && c->loop->srv->cfg.body_allowed &&
        !c->loop->srv->cfg.body_allowed(c->loop->srv->ctx, r, (const char *)c->url.p))
        r->body_dropped = 1;
    /* The whole body is reserved now, so a request let in never needs
     * more of the budget to finish; without room, the parser pauses here
     * (before the body) until there is (conn_resume). */
    if (!r->body_dropped && p->content_length > 0 && p->content_length != ULLONG_MAX && (p->flags & F_CONTENTLENGTH)) {
        int e = body_take(r, (size_t)p->content_length);
        if (e == SPW_ENOMEM) {
            conn_fail(c, SPW_SC_OVERLOADED, "out of memory for the request body");
            return -1;
        }
        if (e) {
            c->body_wait = p->content_length;
            wait_for_room(c);
            http_parser_pause(p, 1);
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    spw_conn *c = p->data;
    spw_http_req *r = c->cur;
    if (r->body_dropped) {
        r->dropped += n;
        if (r->dropped > c->loop->srv->cfg.max_body_bytes) {
            conn_fail(c, SPW_SC_REQUEST_TOO_LARGE, "request body exceeds max_request_bytes");
            return -1;
        }
        return 0;
    }
    if (r->body.len + n > c->loop->srv->cfg.max_body_bytes) {
        conn_fail(c, SPW_SC_REQUEST_TOO_LARGE, "request body exceeds max_request_bytes");
        return -1;
    }
    if (r->body.len + n > r->body.cap) {
        /* Chunked (a Content-Length body was reserved whole): grow in
         * steps, counted as they come. These bytes are read already; the
         * next read waits if they took the last of the budget. */
        size_t cap = (r->body.len + n + BODY_STEP - 1) / BODY_STEP * BODY_STEP;
        uint8_t *np = spw_try_realloc(r->body.p, cap);
        if (!np) {
            conn_fail(c, SPW_SC_OVERLOADED, "out of memory for the request body");
            return -1;
        }
        spw_membudget_add(budget_of(c->loop), cap - r->body.cap);
        r->charged += cap - r->body.cap;
        r->body.p = np;
        r->body.cap = cap;
    }
    memcpy(r->body.p + r->body.len, at, n);
    r->body.len += n;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    spw_conn *c = p->data;
    spw_http_server *srv = c->loop->srv;
    spw_http_req *r = c->cur;
    c->cur = NULL;
    c->req_start_ms = 0;
    /* The URL buffer is per connection: give the request its own copy,
     * apart from the body (which the handler may release early). */
    char *u = (char *)c->url.p;
    size_t ul = c->url.len;
    char *q = memchr(u, '?', ul);
    size_t pl = q ? (size_t)(q - u) : ul;
    char *copy = r->url_mem;
    if (r->url_cap < ul + 2) {
        spw_free(r->url_mem);
        r->url_cap = ul + 2 > 64 ? ul + 2 : 64;
        copy = spw_xmalloc(r->url_cap);
    }
    memcpy(copy, u, pl);
    copy[pl] = 0;
    if (q) {
        memcpy(copy + pl + 1, q + 1, ul - pl - 1);
        copy[ul] = 0;
    } else {
        copy[pl + 1] = 0;
    }
    r->url_mem = copy;
    r->path = copy;
    r->query = copy + pl + 1;
    r->path_len = strlen(r->path);
    if (!http_should_keep_alive(p))
        c->close_after = 1;
    uint32_t cap = srv->cfg.max_pipelined;
    slot *s = &c->slots[(c->s_head + c->s_len) % cap];
    s->req = r;
    s->done = 0;
    c->s_len++;
    c->inflight++;
    c->loop->inflight++;
    atomic_fetch_add(&srv->st_requests, 1);
    srv->handler(srv->ctx, r);
    if (c->closed)
        return -1;
    if (c->s_len == cap || c->close_after || c->loop->stopping || out_unsent(c) > OUT_PAUSE_BYTES ||
        spw_netconn_out_full(&c->nc))
        http_parser_pause(p, 1);
    return 0;
}

/* Feeds bytes to the parser; keeps what a pause left unparsed. */
static void conn_parse(spw_conn *c, const char *buf, size_t n)
{
    size_t used = http_parser_execute(&c->parser, &settings, buf, n);
    if (c->closed)
        return;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        if (!c->close_after) {
            c->pending_in.len = 0;
            if (n > used && spw_buf_reserve(&c->pending_in, n - used) == 0) {
                memcpy(c->pending_in.p, buf + used, n - used);
                c->pending_in.len = n - used;
            }
            /* Read already: counted whatever the room (one read at most). */
            if (c->pending_in.cap > c->pin_charged) {
                spw_membudget_add(budget_of(c->loop), c->pending_in.cap - c->pin_charged);
                c->pin_charged = c->pending_in.cap;
            }
        }
        c->paused = 1;
        set_events(c);
        return;
    }
    if (e != HPE_OK) {
        if (!c->error_sent)
            conn_fail(c, SPW_SC_BAD_REQUEST, http_errno_description(e));
        else if (!c->closed)
            c->paused = 1, set_events(c);
        return;
    }
    if (c->parser.upgrade) {
        /* An Upgrade or CONNECT request: the parser stops after it and what
         * follows is another protocol, which we do not speak. The request
         * itself is answered (405/404); then the connection closes. */
        c->close_after = 1;
        c->paused = 1;
        set_events(c);
        conn_flush(c); /* closes now if the request is already answered */
    }
}

/* Parses again after a pause, once nothing holds it: pipelining, unsent
 * answers, a body waiting for the budget. */
static void conn_resume(spw_conn *c)
{
    if (c->close_after || c->closed || c->loop->stopping)
        return;
    if (c->s_len == c->loop->srv->cfg.max_pipelined || out_unsent(c) > OUT_PAUSE_BYTES ||
        spw_netconn_out_full(&c->nc))
        return;
    if (c->body_wait) {
        int e = body_take(c->cur, (size_t)c->body_wait);
        if (e == SPW_EAGAIN) {
            wait_for_room(c);
            return;
        }
        c->body_wait = 0;
        unwait(c);
        if (e) {
            conn_fail(c, SPW_SC_OVERLOADED, "out of memory for the request body");
            return;
        }
    }
    c->paused = 0;
    http_parser_pause(&c->parser, 0);
    set_events(c);
    if (c->pending_in.len) {
        spw_buf in = c->pending_in;
        uint64_t charged = c->pin_charged;
        c->pending_in = (spw_buf)SPW_BUF_INIT;
        c->pin_charged = 0;
        conn_parse(c, (const char *)in.p, in.len);
        spw_buf_fini(&in);
        spw_membudget_give(budget_of(c->loop), charged);
    }
}

/*
 * How much c may read now (0: nothing, wait for room). What a read leaves
 * behind is counted after it, so with room for a whole read: a whole one.
 * Without: a body reserved whole reads on to its end (its memory is
 * there); a connection holding none of the budget reads SMALL_READ (a
 * request without a body — /healthz, /metrics, a read — still gets
 * through, and what it can leave behind is that little); the others (a
 * chunked body growing, bytes kept past a pause) wait.
 */
static size_t read_size(spw_conn *c)
{
    if (spw_membudget_room(budget_of(c->loop), READ_CHUNK))
        return READ_CHUNK;
    spw_http_req *r = c->cur;
    if (c->body_whole && r && r->body.len < r->body.cap)
        return r->body.cap - r->body.len < READ_CHUNK ? r->body.cap - r->body.len : READ_CHUNK;
    if (c->pin_charged == 0 && (!r || r->charged == 0))
        return SMALL_READ;
    return 0;
}

static void conn_read(spw_conn *c);

/* The budget has room again for w, which waited (net/conn.h); if it still
 * cannot take w, w waits again. */
static void http_room(spw_netconn *nc)
{
    spw_conn *w = hc(nc);
    if (w->body_wait) {
        conn_resume(w);
    } else {
        set_events(w);
        conn_read(w);
    }
}

static void conn_read(spw_conn *c)
{
    char buf[READ_CHUNK];
    for (int rounds = 0; rounds < 8 && !c->paused && !c->closed && !c->mem_wait; rounds++) {
        size_t want = read_size(c);
        if (!want) {
            wait_for_room(c);
            return;
        }
        ssize_t n = spw_netconn_recv(&c->nc, buf, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close(c);
            return;
        }
        if (n == 0) {
            /* Peer closed its side: answer what is in flight, then close. */
            if (c->s_len == 0 && !c->cur)
                conn_close(c);
            else
                c->close_after = 1, c->rdhup = 1, c->paused = 1, set_events(c);
            return;
        }
        c->last_active_ms = now_ms();
        /* Bytes while no request is under way start the request clock,
         * also those the parser skips (CRLFs before a request line): else
         * a client trickling CRLFs keeps the idle timer fresh without ever
         * beginning a request, and neither timeout would close it. */
        if (!c->req_start_ms)
            c->req_start_ms = c->last_active_ms;
        conn_parse(c, buf, (size_t)n);
        if ((size_t)n < want)
            return;
    }
}

/* ---- the protocol over the connection core (net/conn.h) ---- */

void spw_http_loop_post(spw_http_loop *l, void (*fn)(void *), void *arg) { spw_netloop_post(&l->nl, fn, arg); }

static void http_loop_init(spw_netloop *nl, void *owner) { ((spw_http_loop *)nl)->srv = owner; }

static void http_conn_init(spw_netconn *nc)
{
    spw_conn *c = hc(nc);
    c->loop = (spw_http_loop *)nc->nl;
    c->slots = spw_xcalloc(c->loop->srv->cfg.max_pipelined, sizeof *c->slots);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

static void http_io(spw_netconn *nc, uint32_t events)
{
    spw_conn *c = hc(nc);
    if (events & EPOLLOUT)
        conn_flush(c);
    if (c->closed)
        return;
    /* Paused (a request waits for its answer) and the peer sent its FIN: a
     * client that gave up, or one that only half-closed. Noted for
     * spw_http_req_gone; answers still go out. */
    if ((events & EPOLLRDHUP) && c->paused && !c->rdhup) {
        c->rdhup = 1;
        set_events(c);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_read(c);
    /* Reset or error while paused: nothing more can be read or sent, and
     * EPOLLHUP/EPOLLERR cannot be masked; close (answers still in flight
     * are dropped when they come: the connection is a zombie until then). */
    if ((events & (EPOLLHUP | EPOLLERR)) && (c->paused || c->mem_wait) && !c->closed)
        conn_close(c);
}

static void http_conn_tick(spw_netconn *nc, uint64_t now)
{
    spw_conn *c = hc(nc);
    spw_http_config *cfg = &c->loop->srv->cfg;
    if (c->mem_wait && !c->req_start_ms)
        c->last_active_ms = now; /* its bytes wait on us, not on the client */
    if (c->req_start_ms && now - c->req_start_ms > cfg->request_timeout_ms && !c->error_sent) {
        conn_fail(c, SPW_SC_REQUEST_TIMEOUT, "request not received in time");
    } else if (!c->cur && c->s_len == 0 && c->out.len == c->out_off && now - c->last_active_ms > cfg->idle_timeout_ms) {
        conn_close(c);
    } else if (c->error_sent && now - c->last_active_ms > cfg->idle_timeout_ms) {
        conn_close(c);
    }
}

/* Draining: no new request is parsed (conn_resume and on_message_complete
 * see loop->stopping); answers in flight still go out. */
static void http_stop_reading(spw_netconn *nc)
{
    spw_conn *c = hc(nc);
    if (c->paused)
        return;
    c->paused = 1;
    http_parser_pause(&c->parser, 1);
    set_events(c);
}

static const spw_netproto http_proto = {
    .name = "HTTP",
    .thread = "spw-http",
    .conn_size = sizeof(spw_conn),
    .loop_size = sizeof(spw_http_loop),
    .loop_init = http_loop_init,
    .conn_init = http_conn_init,
    .events = http_events,
    .io = http_io,
    .room = http_room,
    .closing = http_closing,
    .conn_free = http_conn_free,
    .stop_reading = http_stop_reading,
    .conn_tick = http_conn_tick,
    .after_events = http_after_events,
};

int spw_http_start(const spw_http_config *cfg, spw_http_handler h, void *ctx, spw_http_server **out)
{
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    spw_http_server *s = spw_xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    if (s->cfg.threads == 0)
        s->cfg.threads = 1;
    if (s->cfg.max_pipelined == 0)
        s->cfg.max_pipelined = 64;
    s->handler = h;
    s->ctx = ctx;
    spw_netsrv_config nc = {.listen = cfg->listen, .threads = s->cfg.threads,
                            .max_connections = cfg->max_connections, .buffers = cfg->buffers,
                            .unsent = cfg->unsent, .send_timeout_ms = cfg->send_timeout_ms,
                            .tls = cfg->tls, .tls_handshake_timeout_ms = cfg->request_timeout_ms,
                            .io_uring = cfg->io_uring};
    int r = spw_netsrv_start(&s->ns, &http_proto, &nc, s);
    if (r < 0) {
        spw_free(s);
        return r;
    }
    *out = s;
    return 0;
}

int spw_http_port(spw_http_server *s) { return s->ns.port; }

void spw_http_stop(spw_http_server *s, uint32_t drain_ms)
{
    spw_netsrv_stop(&s->ns, drain_ms);
    spw_free(s);
}

void spw_http_stats_get(spw_http_server *s, spw_http_stats *st)
{
    if (!s) { /* a request served before the server recorded its listener */
        memset(st, 0, sizeof *st);
        return;
    }
    st->connections_open = atomic_load(&s->ns.nconns);
    st->connections_total = atomic_load(&s->ns.accepted);
    st->requests = atomic_load(&s->st_requests);
    st->rejected_limits = atomic_load(&s->st_rejected) + atomic_load(&s->ns.refused);
    st->accept_fd_errors = atomic_load(&s->ns.fd_errors);
    st->send_timeouts = atomic_load(&s->ns.send_timeouts);
    st->uring_sends = atomic_load(&s->ns.uring_sends);
    st->uring_loops = atomic_load(&s->ns.uring_loops);
}
