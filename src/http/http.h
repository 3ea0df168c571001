/*
 * The HTTP/1.1 front end, a protocol over the connection core (net/conn.h):
 * one epoll loop per I/O thread, each with its own SO_REUSEPORT listening
 * socket (net/loop.h: a probe bound without it first keeps other processes
 * off the address), and no lock shared between loops on the request path. Parsing is Debian's
 * libhttp-parser (keep-alive, pipelining, chunked bodies); responses of
 * pipelined requests go out in request order even when a later request
 * finishes first.
 *
 * A handler runs on the loop thread that owns the connection and answers
 * with spw_http_respond, at once or later: work that completes on another
 * thread (a log append's ack) comes back with spw_http_loop_post, which
 * runs a function on the request's loop.
 *
 * Limits (docs/operations.md): connections, header bytes, body bytes, idle
 * and slow-request timeouts, pipelined requests in flight per connection,
 * unsent response bytes per connection; a connection over a limit is
 * answered (431/413/408) and closed, or paused (pipelining, unsent
 * responses) until its earlier responses are sent. Input memory is shared:
 * request bodies and bytes read ahead count against one budget for all
 * connections (net/membudget.h, max-buffer-bytes); a connection that would
 * pass it is not read until memory comes back.
 */
#ifndef SPW_HTTP_H
#define SPW_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "svc/status.h"

typedef struct spw_http_server spw_http_server;
typedef struct spw_http_loop spw_http_loop;
typedef struct spw_conn spw_conn;

enum { SPW_HTTP_GET = 1, SPW_HTTP_PUT, SPW_HTTP_POST, SPW_HTTP_DELETE, SPW_HTTP_HEAD, SPW_HTTP_OTHER };

typedef struct spw_http_req {
    spw_conn *conn;
    spw_http_loop *loop;
    int method;
    const char *path; /* not decoded; NUL-terminated */
    size_t path_len;
    const char *query; /* after '?', NUL-terminated, "" if none */
    /* Headers the API reads (NUL-terminated, "" if absent). */
    char content_type[128];
    char idempotency_key[256];
    char ack[16];
    char priority[8];
    char authorization[512];
    char key[256];
    char expected_version[32]; /* Spillway-Expected-Version (docs/api.md "Event sourcing") */
    /* If-None-Match (the console's pages, http/console.c); a value longer
     * than this is dropped (if_none_match_cut), never matched cut: the page
     * is then sent whole, which is always correct. */
    char if_none_match[128];
    int if_none_match_cut;
    /* The first header above but Authorization whose value did not fit its
     * field (its name as the client would write it), or NULL: such a
     * request is refused whole (400 header_too_long), never served with a
     * cut value. */
    const char *too_long;
    size_t too_long_max; /* that field's limit in bytes */
    int authorization_cut; /* Authorization did not fit: no token (401) */
    /* The body was read and dropped, never kept: its headers did not
     * authenticate (spw_http_config.body_allowed). The handler refuses such
     * a request whatever its token says by then. */
    int body_dropped;
    spw_buf body;
    char peer[64]; /* client address */
    char tenant[64]; /* set by authentication; "" when no tokens are configured */
    int answered;
    uint64_t out_reserved; /* unsent-answer budget reserved (spw_http_req_out_reserve) */
    void *user; /* handler state for an asynchronous answer */
    /* http.c's own: */
    uint64_t charged; /* bytes of the buffer budget body holds */
    uint64_t dropped; /* bytes of a dropped body read so far */
    char *url_mem;    /* path and query */
    size_t url_cap;   /* url_mem's size (kept across reuse of the struct) */
    size_t promised;  /* spw_http_req_promise */
} spw_http_req;

typedef struct spw_http_config {
    const char *listen; /* host:port */
    uint32_t threads;
    uint32_t max_connections;   /* all loops together */
    uint32_t max_header_bytes;
    uint64_t max_body_bytes;
    uint32_t idle_timeout_ms;
    uint32_t request_timeout_ms; /* from a request's first byte to its last */
    uint32_t max_pipelined;      /* requests in flight per connection */
    struct spw_membudget *buffers; /* input memory of all connections (net/membudget.h); NULL: no limit */
    struct spw_membudget *unsent;  /* answers not yet written, all connections (net/conn.h); NULL: no limit */
    uint32_t send_timeout_ms;      /* close a connection whose unsent answers do not move for this long; 0: never */
    int io_uring; /* a round's answers in one io_uring submission where the kernel allows it (net/conn.h) */
    /* May this request's body be kept? Called (with the handler's ctx) once
     * its headers are in, before any of its body is reserved: 0 means no
     * (its sender did not authenticate), and the body is read and dropped
     * as it arrives, holding none of the buffer budget (the request comes
     * to the handler with body_dropped set). url is the raw request
     * target. NULL: every body is kept. */
    int (*body_allowed)(void *ctx, const spw_http_req *req, const char *url);
    struct spw_tls *tls;           /* NULL: plain TCP; else TLS, handshake within request_timeout_ms (net/tls.h) */
} spw_http_config;

typedef void (*spw_http_handler)(void *ctx, spw_http_req *req);

/* Binds and starts the loops. Returns 0 or -errno (address in use...). */
int spw_http_start(const spw_http_config *c, spw_http_handler h, void *ctx, spw_http_server **out);
/* The port actually bound (for listen ":0"). */
int spw_http_port(spw_http_server *s);
/* Stops accepting and reading new requests, waits until every request in
 * flight is answered (past drain_ms too, with a warning: see net/conn.h),
 * closes every connection and frees. */
void spw_http_stop(spw_http_server *s, uint32_t drain_ms);

/*
 * Answers req: status, extra header lines (each ending "\r\n", may be NULL),
 * content type and body. Must run on req's loop thread. After this call req
 * is gone. A HEAD request, and a 304 (Not Modified), get the headers of the
 * whole answer (its Content-Length) without its body.
 */
void spw_http_respond(spw_http_req *req, int status, const char *headers, const char *ctype, const void *body,
                      size_t len);

/*
 * A buffer for req's answer body, empty, with the capacity its connection
 * kept from an earlier answer (none the first time): the caller owns it
 * and either answers with spw_http_respond_buf, which takes it back, or
 * frees it (spw_buf_fini). Must run on req's loop thread.
 */
spw_buf spw_http_req_buf(spw_http_req *req);
/* spw_http_respond with body's bytes; body's memory is kept by the
 * connection for its next answer (or freed) and *body is left empty. */
void spw_http_respond_buf(spw_http_req *req, int status, const char *headers, const char *ctype, spw_buf *body);
/*
 * The handler is done with req->body (it copied what it keeps): frees it
 * and gives its bytes back to the buffer budget, so that a request waiting
 * for its answer (a produce waiting for fsync) holds no body. req->body is
 * empty afterwards; path and query stay. On req's loop thread.
 */
void spw_http_req_release_body(spw_http_req *req);

/* req will be answered later (by another thread's work) with up to bytes:
 * counted with its connection's unsent answers until it is answered, so
 * that a client pipelining reads it does not take in gets no more of them
 * started than the unsent-answer pause allows (docs/api.md, "Limits"). On
 * req's loop thread. */
void spw_http_req_promise(spw_http_req *req, size_t bytes);

/* Has req's client gone while req waited for its answer: its connection
 * closed, or the client sent its FIN (it gave up, or half-closed: it may
 * still read an answer, so answer it, but give it nothing others could
 * have)? On req's loop thread. */
int spw_http_req_gone(const spw_http_req *req);

/* How many bytes an answer to req may have (a read asks before it builds
 * one, on this or another thread): min(want, what the budget of unsent
 * answers has left), reserved at once until req is answered, 0 when it is
 * spent — answer overloaded (503) then (net/conn.h
 * spw_netconn_out_reserve). Loop thread. */
uint64_t spw_http_req_out_reserve(spw_http_req *req, uint64_t want);

/* An error body {"error":msg,"code":code} with status. */
void spw_http_error(spw_http_req *req, int status, const char *code, const char *headers, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The error answer of status-table code sc (svc/status.h): its HTTP
 * status and code word, with the sentence fmt. Every error answer of the
 * HTTP front end goes through here (spw_http_error is what it encodes). */
void spw_http_answer(spw_http_req *req, spw_sc sc, const char *headers, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Runs fn(arg) on loop's thread soon. Callable from any thread. */
void spw_http_loop_post(spw_http_loop *loop, void (*fn)(void *arg), void *arg);

/* Counters for /metrics. */
typedef struct spw_http_stats {
    uint64_t connections_open, connections_total, requests, rejected_limits;
    uint64_t accept_fd_errors; /* accepts that failed for want of an fd (net/conn.h) */
    uint64_t send_timeouts; /* connections closed because their answers did not move for send-timeout */
    uint64_t uring_sends;   /* answers' sends submitted through io_uring (net/conn.h spw_netloop_flush) */
    uint32_t uring_loops;   /* loops whose io_uring is open */
} spw_http_stats;
void spw_http_stats_get(spw_http_server *s, spw_http_stats *st);

const char *spw_http_reason(int status);

#endif
