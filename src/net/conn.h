/*
 * The connection core shared by both listeners (HTTP: http/http.c; the
 * binary protocol: bin/binproto.c): listening sockets and I/O loops (over
 * net/loop.h), accepting, the list of a loop's connections, closing,
 * zombies (closed connections kept until their last request is answered),
 * waiters for the buffer budget (net/membudget.h), writing answers, the
 * per-connection tick (timeouts), and the drain at shutdown. A protocol is
 * a table of callbacks (spw_netproto): what a connection needs beyond the
 * core's fields, what to do with its socket's events, when to give back
 * its input memory, what "stop reading new requests" means for it, its
 * timeouts. Design and the drain order: conn.c; docs/architecture.md, "The
 * connection core".
 *
 * A protocol's connection struct opens with the core's fields, so the
 * core hands it back as an spw_netconn * and the protocol reads them by
 * name (c->out, c->closed, c->inflight) without a prefix:
 *
 *     typedef struct myconn {
 *         union { spw_netconn nc; struct { SPW_NETCONN_FIELDS }; };
 *         myloop *loop;   (the protocol's view of c->nl)
 *         ... protocol state ...
 *     } myconn;
 *
 * and likewise a loop struct with SPW_NETLOOP_FIELDS. &c->nc is the core's
 * view; (myconn *)nc the protocol's (the core struct is at offset 0).
 */
#ifndef SPW_CONN_H
#define SPW_CONN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "net/loop.h"
#include "net/membudget.h"

#define SPW_NET_READ_CHUNK (64u << 10) /* one read; the budget's room for it lets waiters go on */
#define SPW_NET_SMALL_READ (4u << 10)  /* a read by a connection holding none of a full budget */
#define SPW_NET_OUT_PAUSE_BYTES (8u << 20) /* unsent answer bytes past which a connection stops reading */
#define SPW_NET_TICK_MS 100            /* timeouts are looked at this often */

struct spw_netloop;
struct spw_netsrv;
struct spw_tls;
struct ssl_st;

/* Every connection's fields (owned by its loop's thread). */
#define SPW_NETCONN_FIELDS                                                                                             \
    int fd;                                                                                                            \
    struct spw_netloop *nl; /* its loop */                                                                             \
    char peer[64];          /* client address (net/loop.h spw__net_peer_str) */                                                      \
    spw_buf out;            /* answers not yet written, from out_off */                                                \
    size_t out_off;                                                                                                    \
    uint32_t inflight; /* requests dispatched, not answered: the struct outlives its socket until 0 */               \
    int paused;        /* the protocol stops reading (its own reasons) */                                              \
    int want_out;      /* EPOLLOUT: out did not go in one send */                                                      \
    int close_after;   /* close once the answers in flight are sent */                                                 \
    int closed;        /* socket closed; on the zombies until inflight is 0 */                                         \
    int rdhup;         /* peer shut its side: no more watching for it (level-triggered) */                             \
    int mem_wait;      /* on the loop's waiters: no room in the buffer budget */                                       \
    uint64_t last_active_ms;                                                                                           \
    uint64_t out_held;   /* bytes of the unsent-answer budget held (answers built, not yet written) */                 \
    uint64_t out_wait_ms; /* out has unsent bytes and none was written since (0: nothing unsent) */                   \
    struct spw_netconn *prev, *next; /* the loop's conns, or its zombies (next only) */                                \
    struct spw_netconn *wprev, *wnext; /* the loop's waiters */                                                      \
    struct ssl_st *ssl; /* TLS session (NULL: plain; see "TLS" below) */                                            \
    uint8_t tls_hs;      /* handshake under way: the core's, the protocol sees no event */                            \
    uint8_t tls_hs_ev;   /* the events the handshake waits for */                                                     \
    uint8_t tls_rw;      /* the last read needs the socket writable */                                                \
    uint8_t tls_wr;      /* the last write needs the socket readable */                                               \
    uint8_t tls_bad;     /* a fatal TLS error: no close_notify */                                                     \
    uint8_t tls_ready;   /* on the loop's tls_ready list */                                                           \
    uint8_t flush_pending; /* on the loop's flush list (spw_netconn_flush_soon) */                                    \
    struct spw_netconn *tls_next; /* that list */                                                                  \
    struct spw_netconn *flush_next; /* the flush list */

typedef struct spw_netconn {
    SPW_NETCONN_FIELDS
} spw_netconn;

/* Every loop's fields. */
#define SPW_NETLOOP_FIELDS                                                                                             \
    spw__loop_base b; /* listening socket, epoll, eventfd, posts (net/loop.h) */                                       \
    struct spw_netsrv *ns;                                                                                             \
    struct spw_netconn *conns;                  /* open connections */                                                 \
    struct spw_netconn *zombies;                /* closed, freed once inflight is 0 */                                 \
    struct spw_netconn *waiters, *waiters_tail; /* waiting for the buffer budget, oldest first */                      \
    int rewaking; /* in the waiters' wake-up: a wait again is not a new one */                                         \
    int stopping; /* draining: no accepting, no new request read */                                                    \
    uint64_t accept_resume_ms; /* out of fds: not accepting until then (0: accepting) */                                  \
    uint32_t inflight; /* requests dispatched on this loop, not answered */                                      \
    struct spw_netconn *tls_ready; /* TLS connections with decrypted input the socket no longer signals */           \
    struct spw_netring *ring; /* io_uring of spw_netloop_flush (NULL: one send(2) each) */                          \
    struct spw_netconn *flush_head; /* connections to write after this round (spw_netconn_flush_soon) */

typedef struct spw_netloop {
    SPW_NETLOOP_FIELDS
} spw_netloop;

/* A protocol over the core. Every callback runs on the connection's (or
 * the loop's) thread; NULL ones are skipped. */
typedef struct spw_netproto {
    const char *name;   /* in log lines: "HTTP", "binary protocol" */
    const char *thread; /* its loops' thread names: THREAD-0, THREAD-1, ... (core/thread.h) */
    size_t conn_size;  /* sizeof the protocol's connection struct */
    size_t loop_size;  /* sizeof its loop struct */
    void (*loop_init)(spw_netloop *l, void *owner); /* before the loop's thread starts */
    void (*conn_init)(spw_netconn *c);              /* accepted: the core's fields are set */
    uint32_t (*events)(spw_netconn *c);             /* the epoll mask c wants now */
    void (*io)(spw_netconn *c, uint32_t events);    /* events on an open connection */
    void (*room)(spw_netconn *c);      /* c waited for the budget and there is room now */
    void (*closing)(spw_netconn *c);   /* socket just closed: give back input memory */
    void (*conn_free)(spw_netconn *c); /* the protocol's part (the core frees out and c) */
    void (*stop_reading)(spw_netconn *c); /* draining: read no new request; answers still go out */
    void (*after_events)(spw_netloop *l); /* after each round of events */
    void (*loop_tick)(spw_netloop *l);    /* every tick, before the connections' */
    void (*conn_tick)(spw_netconn *c, uint64_t now_ms); /* every tick, each open connection */
    /* out was written whole and is over 1 MiB: the protocol may take its
     * memory (leaving c->out zeroed) to reuse it; else the core frees it. */
    void (*out_sent)(spw_netconn *c);
} spw_netproto;

typedef struct spw_netsrv_config {
    const char *listen; /* host:port */
    uint32_t threads;   /* loops; 0: 1 */
    uint32_t max_connections; /* of this listener */
    spw_membudget *buffers;   /* input memory of all connections; NULL: no limit */
    spw_membudget *unsent;    /* answers built and not yet written, all connections; NULL: no limit */
    uint32_t send_timeout_ms; /* close a connection whose unsent answers do not move for this long; 0: never */
    struct spw_tls *tls;      /* NULL: plain TCP; else every connection speaks TLS (net/tls.h) */
    uint32_t tls_handshake_timeout_ms; /* close a connection whose handshake is not done by then */
    int io_uring; /* spw_netloop_flush submits a round's sends at once (where the kernel allows io_uring) */
} spw_netsrv_config;

typedef struct spw_netsrv {
    const spw_netproto *proto;
    void *owner; /* the protocol's server */
    spw_netsrv_config cfg;
    char *loops; /* nloops × proto->loop_size */
    uint32_t nloops;
    int port;
    _Atomic uint32_t nconns;
    _Atomic uint64_t accepted, refused; /* refused: over max_connections, or the process's connection fds */
    _Atomic uint64_t fd_errors;          /* accept failed for want of an fd (EMFILE, ENFILE, ENOBUFS, ENOMEM) */
    _Atomic uint64_t last_fd_warn_ms;
    _Atomic uint64_t send_timeouts;     /* connections closed by send_timeout_ms */
    _Atomic uint64_t tls_handshake_failures; /* TLS handshakes failed or timed out */
    _Atomic uint64_t uring_sends;        /* sends submitted through io_uring (spw_netloop_flush) */
    _Atomic uint32_t uring_loops;        /* loops whose io_uring is open */
    _Atomic int stop;
} spw_netsrv;

uint64_t spw_net_now_ms(void);

/*
 * File descriptors (docs/operations.md, "File descriptors").
 * The connections of every listener of the process together hold at most
 * spw_net_set_conn_fds' number of sockets (default: no bound beyond each
 * listener's max_connections); past it a new connection is accepted and
 * closed at once (counted refused), so the fds the log needs for segment
 * rolls and small files stay free whatever the clients do. When accept
 * fails for want of an fd all the same (EMFILE: another part of the
 * process took them), the loop closes its reserve fd (one per process,
 * /dev/null, opened at the first start), accepts and closes that
 * connection — its client learns at once instead of waiting — opens the
 * reserve again, and stops accepting for SPW_NET_ACCEPT_PAUSE_MS: the
 * listening socket would otherwise stay readable and the loop spin. Each
 * such failure is counted (fd_errors) and logged at most every 10 s.
 */
#define SPW_NET_ACCEPT_PAUSE_MS 100
void spw_net_set_conn_fds(uint32_t max);
uint32_t spw_net_conn_fds(void);      /* the bound (UINT32_MAX: none) */
uint32_t spw_net_conn_fds_open(void); /* connections of every listener now */

/* Binds (see net/loop.h for the socket rules) and starts the loops. s is
 * the caller's (inside its server); owner goes to proto->loop_init. 0 or
 * -errno with nothing left open. */
int spw_netsrv_start(spw_netsrv *s, const spw_netproto *proto, const spw_netsrv_config *cfg, void *owner);
spw_netloop *spw_netsrv_loop(spw_netsrv *s, uint32_t i);
/* Every loop stops accepting and reading new requests (posted: returns at
 * once). Requests already dispatched are still answered. */
void spw_netsrv_stop_accepting(spw_netsrv *s);
/*
 * The drain: stops accepting, then asks every loop, again and again, how
 * many requests it has in flight until all say 0 — past drain_ms too (with
 * a warning once): a completion still to come would post to a freed loop.
 * Then stops and joins the loops, closes every connection, runs the posts
 * left and frees every connection and the loops. s itself stays the
 * caller's.
 */
void spw_netsrv_stop(spw_netsrv *s, uint32_t drain_ms);

/* Runs fn(arg) on l's thread soon. Callable from any thread. */
void spw_netloop_post(spw_netloop *l, void (*fn)(void *), void *arg);

/* Closes c's socket and puts it on the zombies (freed by the loop once
 * c->inflight is 0: never under a callback that still uses it). */
void spw_netconn_close(spw_netconn *c);
/* Applies proto->events(c). */
void spw_netconn_set_events(spw_netconn *c);
/*
 * TLS (cfg.tls set). The core runs the handshake of each accepted
 * connection itself (SSL_do_handshake on the connection's events; the
 * events it waits for are what OpenSSL asked: WANT_READ -> EPOLLIN,
 * WANT_WRITE -> EPOLLOUT); the protocol sees no event until it is done,
 * then one EPOLLIN. A handshake not done within tls_handshake_timeout_ms
 * is closed, and so is one that fails (both counted in
 * tls_handshake_failures). Then the protocol reads with spw_netconn_recv
 * and the core writes with SSL_write: a read that needs the socket
 * writable (WANT_WRITE) adds EPOLLOUT to the protocol's events and turns
 * EPOLLOUT into EPOLLIN for it, a write that needs it readable the other
 * way round. Decrypted bytes OpenSSL holds beyond what a read took are
 * not signalled by the socket: such a connection goes on the loop's
 * tls_ready list and gets EPOLLIN again in the next round while its
 * protocol wants to read. Without TLS, c->ssl is NULL and recv/send are
 * called as they are.
 */
/* recv(2) for a protocol: bytes read, 0 at the end of the stream, or -1
 * with errno (EAGAIN: nothing now, EINTR, or the connection failed). */
ssize_t spw_netconn_recv(spw_netconn *c, void *buf, size_t n);
/* TLS handshakes failed or timed out, every listener of the process. */
uint64_t spw_net_tls_handshake_failures(void);

/* Writes c->out from out_off as far as the socket takes it: 1 all
 * written (out emptied, EPOLLOUT off), 0 the rest waits for EPOLLOUT, -1
 * the connection failed and is closed. */
int spw_netconn_send(spw_netconn *c);
/*
 * The answers of one round of a loop (a group commit's, posted together):
 * spw_netconn_flush_soon puts c on its loop's flush list (once; not a
 * closed one), and the protocol's after_events calls spw_netloop_flush,
 * which takes the list in batches of up to SPW_NET_SEND_BATCH: for each
 * connection gather(c) (NULL: none; 0 leaves it out: it closed), then
 * the batch's sends, then sent(c, r) with spw_netconn_send's result r.
 * With cfg.io_uring and a kernel that allows it, the first send of every
 * plain connection of a batch goes in one io_uring submission
 * (MSG_DONTWAIT: a full socket answers EAGAIN at once, never waits), so n
 * answers cost one system call instead of n; what a send left, and TLS
 * connections, then go through spw_netconn_send. The loop opens its ring
 * when it starts; a kernel that refuses io_uring (ENOSYS, a seccomp
 * filter's EPERM) leaves it NULL, logged once, and every send is send(2).
 * sent may queue connections again (new answers): they go in a later
 * batch of the same call. A connection freed while queued leaves the list
 * first. Loop thread.
 */
#define SPW_NET_SEND_BATCH 64
void spw_netconn_flush_soon(spw_netconn *c);
void spw_netloop_flush(spw_netloop *l, int (*gather)(spw_netconn *c), void (*sent)(spw_netconn *c, int r));
/*
 * The budget of unsent answers (docs/operations.md "Memory"): every byte of
 * an answer from when it is built until it is written to the socket is
 * held in cfg.unsent, shared by every connection of both listeners.
 * spw_netconn_send holds what it finds in out beyond c->out_held and gives
 * back what it writes; closing gives back the rest. A protocol that keeps
 * finished answers apart from out (HTTP's pipelining slots) holds them as
 * it builds them (spw_netconn_out_hold).
 *
 * A large answer (a read) asks first how much it may build:
 * spw_netconn_out_allow is min(want, room left), 0 when the budget is
 * spent (the read is then refused with overloaded, 503, a small answer).
 * Small answers are held whatever the room. A connection that holds some
 * of a spent budget reads no new request (spw_netconn_out_full) until its
 * own answers are written, so clients that do not read cannot pile up
 * more; and one whose unsent bytes do not move for send_timeout_ms is
 * closed (counted in send_timeouts), which gives them back.
 *
 * An answer built elsewhere (on an I/O worker) reserves instead, at
 * dispatch: spw_netconn_out_reserve holds min(want, room left) at once,
 * in one atomic step (spw_membudget_take_upto), so reads in flight
 * together, on any loop of either listener, cannot each be allowed the
 * same room, and
 * spw_netconn_out_transfer turns the reservation into the answer's bytes
 * once it is built (appended to out, or held apart), in one step: a
 * release then a hold would leave a gap where another loop's reservation
 * takes the same room. spw_netconn_out_release gives a reservation back
 * when a small answer (an error) goes out instead. Loop thread.
 */
/*
 * Framed input (the binary protocol, the Kafka listener: length-prefixed
 * requests read whole into one buffer), its memory taken from
 * cfg.buffers. spw_netconn_in_reserve grows in to hold need bytes, in
 * steps of a read: 0, SPW_EAGAIN (no room now: wait for it,
 * spw_netconn_wait_for_room) or SPW_ENOMEM. spw_netconn_in_room makes
 * room for one more read in a full buffer: the same, except that a
 * connection holding none of the budget still gets a small read
 * (SPW_NET_SMALL_READ) when there is no room. spw_netconn_in_free gives
 * in's memory back (an idle connection holds none) and sets *off to 0.
 */
int spw_netconn_in_reserve(spw_netconn *c, spw_buf *in, size_t need);
int spw_netconn_in_room(spw_netconn *c, spw_buf *in);
void spw_netconn_in_free(spw_netconn *c, spw_buf *in, size_t *off);

void spw_netconn_out_hold(spw_netconn *c, uint64_t n);
uint64_t spw_netconn_out_allow(const spw_netconn *c, uint64_t want);
uint64_t spw_netconn_out_reserve(spw_netconn *c, uint64_t want);
void spw_netconn_out_release(spw_netconn *c, uint64_t n);
void spw_netconn_out_transfer(spw_netconn *c, uint64_t reserved, uint64_t n);
int spw_netconn_out_full(const spw_netconn *c);

/* Puts c on its loop's waiters (counted in the budget's waits unless it
 * is waiting again during a wake-up); proto->room is called once there is
 * room. The caller updates c's events. */
void spw_netconn_wait_for_room(spw_netconn *c);
/* Takes c off the waiters. */
void spw_netconn_unwait(spw_netconn *c);

#endif
