/*
 * The connection core (net/conn.h): what the HTTP and the binary listener
 * share about their connections. The protocols parse, dispatch and encode;
 * everything about a connection's life is here, once.
 *
 * Threads. One thread per loop, each with its own SO_REUSEPORT listening
 * socket (net/loop.h). A connection belongs to the loop that accepted it
 * for its whole life: its fields, its buffers and its protocol state are
 * touched on that thread only, so they need no lock. The one way in from
 * another thread is spw_netloop_post (a mutex-protected list and an
 * eventfd): the log's completion callbacks (an append acknowledged, an
 * fsync done) and the group waiter post the answer of a request to its
 * loop, and the drain asks each loop through it.
 *
 * Ownership. The loop owns its connections: the open ones on `conns`, the
 * closed ones on `zombies`. Closing a connection (spw_netconn_close) closes
 * its socket at once, gives back its input memory (proto->closing) and
 * moves it to the zombies; the struct stays until its last request in
 * flight is answered (c->inflight 0), because a posted completion still
 * holds a pointer to it. The loop frees zombies after each round of events
 * (sweep), never inside a callback. The core frees c->out and the struct;
 * the protocol frees its own part (proto->conn_free).
 *
 * The buffer budget. A connection that cannot take input memory goes on
 * its loop's waiters (oldest first) and stops reading; after every round of
 * events, when the budget has room for one read, all waiters are taken off
 * the list and each gets proto->room (those still without room wait again,
 * not counted as a new wait).
 *
 * The drain (spw_netsrv_stop), in this order:
 *   1. every loop is posted stop_accepting: it stops listening (the socket
 *      is closed, so a new server may bind) and each open connection gets
 *      proto->stop_reading — no new request is read from then on, so the
 *      number in flight can only fall;
 *   2. every loop — all of them, every round — is asked its in-flight
 *      count, on its own thread; the stopping thread sums the answers and
 *      asks again every 10 ms until the sum is 0. drain_ms only says when
 *      to warn: a request in flight is an append the log will complete
 *      (it runs every callback exactly once), and its completion posts to
 *      the loop, so the loops must outlive it;
 *   3. the loops are told to stop and joined;
 *   4. on the stopping thread, every connection still open is closed, the
 *      posts left in each loop's list run (against closed connections),
 *      every zombie is freed and the loop's sockets closed; then the loops.
 * With nothing in flight after step 2 and nothing read after step 1, no
 * thread can post to a loop after step 3.
 */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/alloc.h"
#include "core/id.h"
#include "core/invariant.h"
#include "core/msg.h"
#include "core/thread.h"
#include "net/tls.h"

uint64_t spw_net_now_ms(void) { return spw_mono_ns() / 1000000; }

/* ---- file descriptors (conn.h) ---- */

static _Atomic uint32_t g_conn_fds_max = UINT32_MAX;
static _Atomic uint32_t g_conn_fds;  /* open connections, all listeners */
static _Atomic int g_reserve_fd = -1; /* taken (-1) while a loop uses it */
static _Atomic int g_reserve_opened;

void spw_net_set_conn_fds(uint32_t max) { atomic_store(&g_conn_fds_max, max ? max : 1); }
uint32_t spw_net_conn_fds(void) { return atomic_load(&g_conn_fds_max); }
uint32_t spw_net_conn_fds_open(void) { return atomic_load(&g_conn_fds); }

static void reserve_open(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        atomic_store(&g_reserve_fd, fd);
}

/* accept failed with e (no fd to be had): see conn.h. On l's thread. */
static void out_of_fds(spw_netloop *l, int e)
{
    spw_netsrv *s = l->ns;
    atomic_fetch_add(&s->fd_errors, 1);
    uint64_t now = spw_net_now_ms();
    uint64_t last = atomic_load(&s->last_fd_warn_ms);
    if ((last == 0 || now - last >= 10000) && atomic_compare_exchange_strong(&s->last_fd_warn_ms, &last, now))
        spw_warn("%s: cannot accept a connection: %s (open connections of the process: %u); closing it and "
                 "pausing accepts for %d ms (this warning at most every 10 s; spillway_accept_fd_errors_total "
                 "counts them)",
                 s->proto->name, strerror(e), atomic_load(&g_conn_fds), SPW_NET_ACCEPT_PAUSE_MS);
    int r = atomic_exchange(&g_reserve_fd, -1);
    if (r >= 0) {
        close(r);
        int fd = accept4(l->b.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            atomic_fetch_add(&s->refused, 1);
        }
        reserve_open();
    }
    if (l->b.lfd >= 0 && epoll_ctl(l->b.epfd, EPOLL_CTL_DEL, l->b.lfd, NULL) == 0)
        l->accept_resume_ms = now + SPW_NET_ACCEPT_PAUSE_MS;
}

/* Accepting again after a pause (each round of the loop). */
static void accept_resume(spw_netloop *l, uint64_t now)
{
    if (!l->accept_resume_ms || now < l->accept_resume_ms)
        return;
    l->accept_resume_ms = 0;
    if (l->stopping || l->b.lfd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->b.lfd};
    epoll_ctl(l->b.epfd, EPOLL_CTL_ADD, l->b.lfd, &ev);
}

static spw_netloop *loop_at(spw_netsrv *s, uint32_t i)
{
    return (spw_netloop *)(s->loops + (size_t)i * s->proto->loop_size);
}

spw_netloop *spw_netsrv_loop(spw_netsrv *s, uint32_t i) { return loop_at(s, i); }

void spw_netloop_post(spw_netloop *l, void (*fn)(void *), void *arg) { spw__loop_post(&l->b, fn, arg); }

/* ---- connections ---- */

/* ---- TLS (conn.h) ---- */

static _Atomic uint64_t g_tls_hs_failures; /* every listener's */

uint64_t spw_net_tls_handshake_failures(void) { return atomic_load(&g_tls_hs_failures); }

static void tls_hs_failed(spw_netsrv *s)
{
    atomic_fetch_add(&s->tls_handshake_failures, 1);
    atomic_fetch_add(&g_tls_hs_failures, 1);
}

/* c holds decrypted input: EPOLLIN again next round (see conn.h). */
static void tls_ready_add(spw_netconn *c)
{
    if (c->tls_ready)
        return;
    c->tls_ready = 1;
    c->tls_next = c->nl->tls_ready;
    c->nl->tls_ready = c;
}

static void tls_ready_remove(spw_netconn *c)
{
    if (!c->tls_ready)
        return;
    for (spw_netconn **pp = &c->nl->tls_ready; *pp; pp = &(*pp)->tls_next)
        if (*pp == c) {
            *pp = c->tls_next;
            break;
        }
    c->tls_ready = 0;
    c->tls_next = NULL;
}

/* The epoll mask of a TLS connection: the handshake's, or the protocol's
 * with what the record layer needs besides. */
static uint32_t tls_events(spw_netconn *c)
{
    if (c->tls_hs)
        return c->tls_hs_ev;
    uint32_t m = c->nl->ns->proto->events(c);
    if ((m & EPOLLIN) && SSL_has_pending(c->ssl))
        tls_ready_add(c);
    return m | (c->tls_rw ? EPOLLOUT : 0) | (c->tls_wr ? EPOLLIN : 0);
}

void spw_netconn_set_events(spw_netconn *c)
{
    struct epoll_event ev = {.events = c->ssl ? tls_events(c) : c->nl->ns->proto->events(c), .data.ptr = c};
    epoll_ctl(c->nl->b.epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* SSL_get_error of a call that returned r: 0 done, 1 wants the socket
 * readable, 2 writable, -1 failed (c->tls_bad: the session is unusable). */
static int tls_result(spw_netconn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return 1;
    case SSL_ERROR_WANT_WRITE:
        return 2;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        c->tls_bad = 1;
        ERR_clear_error();
        return -1;
    }
}

static void tls_set_rw(spw_netconn *c, int rw)
{
    if (c->tls_rw != rw) {
        c->tls_rw = (uint8_t)rw;
        spw_netconn_set_events(c);
    }
}

static void tls_set_wr(spw_netconn *c, int wr)
{
    if (c->tls_wr != wr) {
        c->tls_wr = (uint8_t)wr;
        spw_netconn_set_events(c);
    }
}

ssize_t spw_netconn_recv(spw_netconn *c, void *buf, size_t n)
{
    if (c->closed) {
        errno = EBADF;
        return -1;
    }
    if (!c->ssl)
        return recv(c->fd, buf, n, 0);
    ERR_clear_error();
    int r = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0) {
        tls_set_rw(c, 0);
        if (SSL_has_pending(c->ssl))
            tls_ready_add(c);
        return r;
    }
    switch (tls_result(c, r)) {
    case 0:
        return 0; /* close_notify, or an EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
    case 1:
        tls_set_rw(c, 0);
        errno = EAGAIN;
        return -1;
    case 2:
        tls_set_rw(c, 1);
        errno = EAGAIN;
        return -1;
    default:
        errno = ECONNRESET;
        return -1;
    }
}

/* send(2) for spw_netconn_send. */
static ssize_t tls_send(spw_netconn *c, const void *p, size_t n)
{
    ERR_clear_error();
    int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (r > 0) {
        tls_set_wr(c, 0);
        return r;
    }
    switch (tls_result(c, r)) {
    case 1:
        tls_set_wr(c, 1);
        errno = EAGAIN;
        return -1;
    case 2:
        tls_set_wr(c, 0);
        errno = EAGAIN;
        return -1;
    default:
        errno = ECONNRESET;
        return -1;
    }
}

/* The handshake step on c's events (conn.h). */
static void tls_handshake(spw_netconn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->tls_hs = 0;
        c->last_active_ms = spw_net_now_ms();
        spw_netconn_set_events(c);
        /* The client may have sent its first request with its Finished. */
        c->nl->ns->proto->io(c, EPOLLIN);
        return;
    }
    int w = tls_result(c, r);
    if (w == 1 || w == 2) {
        uint8_t ev = w == 1 ? EPOLLIN : EPOLLOUT;
        if (ev != c->tls_hs_ev) {
            c->tls_hs_ev = ev;
            spw_netconn_set_events(c);
        }
        return;
    }
    c->tls_bad = 1;
    tls_hs_failed(c->nl->ns);
    spw_netconn_close(c);
}

/* Events on a TLS connection. */
static void tls_io(spw_netconn *c, uint32_t ev)
{
    if (c->tls_hs) {
        tls_handshake(c);
        return;
    }
    if (c->tls_rw && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        ev |= EPOLLIN;
    if (c->tls_wr && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        ev |= EPOLLOUT;
    c->nl->ns->proto->io(c, ev);
}

/* The connections holding decrypted input, once a round. */
static void tls_ready_run(spw_netloop *l)
{
    spw_netconn *c = l->tls_ready;
    l->tls_ready = NULL;
    while (c) {
        spw_netconn *next = c->tls_next;
        c->tls_ready = 0;
        c->tls_next = NULL;
        /* A read that leaves input behind puts c back for the next round. */
        if (!c->closed && !c->tls_hs && SSL_has_pending(c->ssl) && (l->ns->proto->events(c) & EPOLLIN))
            l->ns->proto->io(c, EPOLLIN);
        c = next;
    }
}

void spw_netconn_wait_for_room(spw_netconn *c)
{
    spw_netloop *l = c->nl;
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
        spw_membudget_waited(l->ns->cfg.buffers);
}

void spw_netconn_unwait(spw_netconn *c)
{
    spw_netloop *l = c->nl;
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

/* Lets waiting connections go on; those the budget still cannot take go
 * back on the list (through proto->room). */
static void wake_waiters(spw_netloop *l)
{
    spw_netconn *w = l->waiters;
    l->waiters = l->waiters_tail = NULL;
    /* Off the list first, all of them: whatever happens to one below
     * (closed, waiting again) then touches only the loop's new list. */
    for (spw_netconn *x = w; x; x = x->wnext)
        x->mem_wait = 0;
    l->rewaking = 1;
    while (w) {
        spw_netconn *next = w->wnext;
        w->wprev = w->wnext = NULL;
        if (!w->closed)
            l->ns->proto->room(w);
        w = next;
    }
    l->rewaking = 0;
}

/* ---- framed input (net/conn.h: spw_netconn_in_*) ---- */

static spw_membudget *buffers_of(const spw_netconn *c) { return c->nl->ns->cfg.buffers; }

int spw_netconn_in_reserve(spw_netconn *c, spw_buf *in, size_t need)
{
    if (need <= in->cap)
        return 0;
    size_t cap = (need + SPW_NET_READ_CHUNK - 1) / SPW_NET_READ_CHUNK * SPW_NET_READ_CHUNK;
    spw_membudget *m = buffers_of(c);
    if (m && spw_membudget_take(m, cap - in->cap))
        return SPW_EAGAIN;
    uint8_t *p = spw_try_realloc(in->p, cap);
    if (!p) {
        if (m)
            spw_membudget_give(m, cap - in->cap);
        return SPW_ENOMEM;
    }
    in->p = p;
    in->cap = cap;
    return 0;
}

int spw_netconn_in_room(spw_netconn *c, spw_buf *in)
{
    int e = spw_netconn_in_reserve(c, in, in->len + SPW_NET_READ_CHUNK);
    if (e == SPW_EAGAIN && in->cap == 0) {
        /* No room, and this connection holds none of the budget: a small
         * read still, so small requests get through; a frame larger than
         * that waits for its room as a whole. */
        uint8_t *p = spw_try_malloc(SPW_NET_SMALL_READ);
        if (p) {
            spw_membudget_add(buffers_of(c), SPW_NET_SMALL_READ);
            in->p = p;
            in->cap = SPW_NET_SMALL_READ;
            e = 0;
        }
    }
    return e;
}

void spw_netconn_in_free(spw_netconn *c, spw_buf *in, size_t *off)
{
    if (buffers_of(c))
        spw_membudget_give(buffers_of(c), in->cap);
    spw_buf_fini(in);
    *off = 0;
}

/* ---- the budget of unsent answers ---- */

static spw_membudget *unsent_of(const spw_netconn *c) { return c->nl->ns->cfg.unsent; }

void spw_netconn_out_hold(spw_netconn *c, uint64_t n)
{
    if (c->closed || n == 0)
        return;
    spw_membudget_add(unsent_of(c), n);
    c->out_held += n;
}

static void out_give(spw_netconn *c, uint64_t n)
{
    if (n > c->out_held)
        n = c->out_held;
    spw_membudget_give(unsent_of(c), n);
    c->out_held -= n;
}

uint64_t spw_netconn_out_reserve(spw_netconn *c, uint64_t want)
{
    if (!unsent_of(c) || c->closed)
        return spw_netconn_out_allow(c, want);
    /* In one step: the loops of both listeners reserve from one budget,
     * and an allow then a hold would give two of them the same room. */
    uint64_t n = spw_membudget_take_upto(unsent_of(c), want);
    c->out_held += n;
    return n;
}

void spw_netconn_out_release(spw_netconn *c, uint64_t n)
{
    if (unsent_of(c))
        out_give(c, n);
}

void spw_netconn_out_transfer(spw_netconn *c, uint64_t reserved, uint64_t n)
{
    if (!unsent_of(c))
        return;
    if (c->closed || reserved > c->out_held) {
        out_give(c, reserved); /* closing gave everything back */
        return;
    }
    /* One atomic step on the budget: a release then a hold would leave a
     * gap in which another loop's reservation takes the same room. */
    if (n >= reserved)
        spw_netconn_out_hold(c, n - reserved);
    else
        out_give(c, reserved - n);
}

uint64_t spw_netconn_out_allow(const spw_netconn *c, uint64_t want)
{
    const spw_membudget *m = unsent_of(c);
    if (!m)
        return want;
    uint64_t used = atomic_load_explicit(&m->used, memory_order_relaxed);
    uint64_t room = used < m->limit ? m->limit - used : 0;
    return want < room ? want : room;
}

int spw_netconn_out_full(const spw_netconn *c)
{
    return c->out_held > 0 && unsent_of(c) && !spw_membudget_room(unsent_of(c), 1);
}

void spw_netconn_close(spw_netconn *c)
{
    if (c->closed)
        return;
    spw_netloop *l = c->nl;
    out_give(c, c->out_held);
    c->out_wait_ms = 0;
    c->closed = 1;
    epoll_ctl(l->b.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) {
        tls_ready_remove(c);
        /* close_notify, best effort (the socket is non-blocking): a
         * client then knows the end was meant. */
        if (!c->tls_hs && !c->tls_bad) {
            ERR_clear_error();
            SSL_shutdown(c->ssl);
        }
        ERR_clear_error();
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->fd);
    /* Nothing more is read: what input held goes back at once, not when
     * the last answer lets the struct go. */
    spw_netconn_unwait(c);
    if (l->ns->proto->closing)
        l->ns->proto->closing(c);
    atomic_fetch_sub(&l->ns->nconns, 1);
    atomic_fetch_sub(&g_conn_fds, 1);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = l->zombies;
    l->zombies = c;
}

static void conn_free(spw_netconn *c)
{
    /* Closed after it was queued for a flush (in a call between a round's
     * flush and its sweep): off the loop's list before it is freed. */
    if (c->flush_pending)
        for (spw_netconn **pp = &c->nl->flush_head; *pp; pp = &(*pp)->flush_next)
            if (*pp == c) {
                *pp = c->flush_next;
                break;
            }
    if (c->nl->ns->proto->conn_free)
        c->nl->ns->proto->conn_free(c);
    spw_buf_fini(&c->out);
    spw_free(c);
}

/* Frees the zombies nothing is in flight on (all: every one). */
static void sweep(spw_netloop *l, int all)
{
    spw_netconn **pp = &l->zombies;
    while (*pp) {
        spw_netconn *c = *pp;
        if (all || c->inflight == 0) {
            *pp = c->next;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
}

/* What is in out beyond c->out_held (appended since) is held from now. */
static void out_hold_unsent(spw_netconn *c)
{
    uint64_t unsent = c->out.len - c->out_off;
    if (unsent > c->out_held)
        spw_netconn_out_hold(c, unsent - c->out_held);
}

/* w bytes of out were written. */
static void out_sent(spw_netconn *c, size_t w)
{
    c->out_off += w;
    out_give(c, (uint64_t)w);
    if (c->out_wait_ms)
        c->out_wait_ms = spw_net_now_ms();
}

int spw_netconn_send(spw_netconn *c)
{
    if (c->closed)
        return -1;
    out_hold_unsent(c);
    while (c->out_off < c->out.len) {
        ssize_t w = c->ssl ? tls_send(c, c->out.p + c->out_off, c->out.len - c->out_off)
                           : send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->out_wait_ms) /* the send timeout runs from here, or from the last byte written */
                    c->out_wait_ms = spw_net_now_ms();
                if (!c->want_out) {
                    c->want_out = 1;
                    spw_netconn_set_events(c);
                }
                return 0;
            }
            spw_netconn_close(c);
            return -1;
        }
        out_sent(c, (size_t)w);
    }
    c->out_wait_ms = 0;
    c->out.len = c->out_off = 0;
    if (c->out.cap > (1u << 20) && c->nl->ns->proto->out_sent)
        c->nl->ns->proto->out_sent(c);
    if (c->out.cap > (1u << 20))
        spw_buf_fini(&c->out);
    if (c->want_out) {
        c->want_out = 0;
        spw_netconn_set_events(c);
    }
    return 1;
}

/* ---- a round's answers in one submission (conn.h spw_netloop_flush) ---- */

typedef struct spw_netring {
    struct io_uring ring;
} spw_netring;

static _Atomic int g_uring_warned;

/* On l's thread, when it starts: l->ring, or NULL where the kernel
 * refuses io_uring (logged once per process). */
static void ring_open(spw_netloop *l)
{
    if (!l->ns->cfg.io_uring)
        return;
    spw_netring *r = spw_xcalloc(1, sizeof *r);
    /* Submitted and completed on this thread only: SINGLE_ISSUER (6.0+),
     * else no flag. Twice the batch in completions: every round reaps all. */
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE,
                                .cq_entries = 2 * SPW_NET_SEND_BATCH};
    int e = io_uring_queue_init_params(SPW_NET_SEND_BATCH, &r->ring, &p);
    if (e == -EINVAL) {
        p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE, .cq_entries = 2 * SPW_NET_SEND_BATCH};
        e = io_uring_queue_init_params(SPW_NET_SEND_BATCH, &r->ring, &p);
    }
    if (e < 0) {
        spw_free(r);
        if (!atomic_exchange(&g_uring_warned, 1))
            spw_info("io_uring is not available (%s): the I/O loops send each answer with send(2)", strerror(-e));
        return;
    }
    l->ring = r;
    atomic_fetch_add(&l->ns->uring_loops, 1);
}

static void ring_close(spw_netloop *l)
{
    if (!l->ring)
        return;
    io_uring_queue_exit(&l->ring->ring);
    spw_free(l->ring);
    l->ring = NULL;
    atomic_fetch_sub(&l->ns->uring_loops, 1);
}

static void send_many(spw_netloop *l, spw_netconn **cs, int *res, uint32_t n)
{
    SPW_ASSERT(n <= SPW_NET_SEND_BATCH);
    uint8_t pending[SPW_NET_SEND_BATCH] = {0};
    uint32_t queued = 0;
    if (l->ring) {
        struct io_uring *r = &l->ring->ring;
        for (uint32_t i = 0; i < n; i++) {
            spw_netconn *c = cs[i];
            /* Waiting for EPOLLOUT already: the socket is full. */
            if (c->closed || c->ssl || c->want_out || c->out_off == c->out.len)
                continue;
            struct io_uring_sqe *q = io_uring_get_sqe(r);
            if (!q)
                break;
            out_hold_unsent(c);
            io_uring_prep_send(q, c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
            io_uring_sqe_set_data64(q, i);
            pending[i] = 1;
            queued++;
        }
    }
    if (queued) {
        struct io_uring *r = &l->ring->ring;
        int sub = io_uring_submit(r);
        /* Each send completes inside the submit (MSG_DONTWAIT); a result
         * below 1 (EAGAIN, an error) is left to spw_netconn_send below,
         * which meets it again and acts on it. */
        uint32_t want = sub > 0 ? (uint32_t)sub : 0, got = 0;
        while (got < want) {
            struct io_uring_cqe *cqe;
            int e = io_uring_wait_cqe(r, &cqe);
            if (e == -EINTR || e == -EAGAIN)
                continue;
            if (e < 0)
                break;
            uint64_t i = io_uring_cqe_get_data64(cqe);
            if (i < n && pending[i]) {
                pending[i] = 0;
                if (cqe->res > 0)
                    out_sent(cs[i], (size_t)cqe->res);
                got++;
            }
            io_uring_cqe_seen(r, cqe);
        }
        atomic_fetch_add(&l->ns->uring_sends, got);
        if (got != queued) {
            /* Sends the kernel did not take (the submission refused) must
             * never go later, with out moved on, and one whose completion
             * was not seen may or may not have gone: closing the ring drops
             * the first, closing their connections settles the second. */
            spw_warn("%s: io_uring submission failed (%s): the loop sends each answer with send(2) from now on",
                     l->ns->proto->name, strerror(sub < 0 ? -sub : EIO));
            for (uint32_t i = 0; i < n; i++)
                if (pending[i] && got < want)
                    spw_netconn_close(cs[i]);
            ring_close(l);
        }
    }
    for (uint32_t i = 0; i < n; i++)
        res[i] = spw_netconn_send(cs[i]);
}

void spw_netconn_flush_soon(spw_netconn *c)
{
    if (c->flush_pending || c->closed)
        return;
    c->flush_pending = 1;
    c->flush_next = c->nl->flush_head;
    c->nl->flush_head = c;
}

void spw_netloop_flush(spw_netloop *l, int (*gather)(spw_netconn *c), void (*sent)(spw_netconn *c, int r))
{
    while (l->flush_head) {
        spw_netconn *cs[SPW_NET_SEND_BATCH];
        int res[SPW_NET_SEND_BATCH];
        uint32_t n = 0;
        while (l->flush_head && n < SPW_NET_SEND_BATCH) {
            spw_netconn *c = l->flush_head;
            l->flush_head = c->flush_next;
            c->flush_pending = 0;
            if (!c->closed && (!gather || gather(c)))
                cs[n++] = c;
        }
        send_many(l, cs, res, n);
        for (uint32_t i = 0; i < n; i++)
            sent(cs[i], res[i]);
    }
}

/* ---- the loop ---- */

static void accept_all(spw_netloop *l)
{
    spw_netsrv *s = l->ns;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->b.lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM)
                out_of_fds(l, e);
            return;
        }
        if (atomic_fetch_add(&g_conn_fds, 1) >= atomic_load(&g_conn_fds_max)) {
            atomic_fetch_sub(&g_conn_fds, 1);
            atomic_fetch_add(&s->refused, 1);
            close(fd);
            continue;
        }
        if (atomic_fetch_add(&s->nconns, 1) >= s->cfg.max_connections) {
            atomic_fetch_sub(&s->nconns, 1);
            atomic_fetch_sub(&g_conn_fds, 1);
            atomic_fetch_add(&s->refused, 1);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        spw_netconn *c = spw_xcalloc(1, s->proto->conn_size);
        c->fd = fd;
        c->nl = l;
        spw__net_peer_str(&ss, c->peer, sizeof c->peer);
        c->last_active_ms = spw_net_now_ms();
        if (s->proto->conn_init)
            s->proto->conn_init(c);
        c->next = l->conns;
        if (l->conns)
            l->conns->prev = c;
        l->conns = c;
        atomic_fetch_add(&s->accepted, 1);
        uint32_t events = EPOLLIN | EPOLLRDHUP;
        if (s->cfg.tls) {
            /* The client speaks first (ClientHello). */
            c->tls_hs = 1;
            c->tls_hs_ev = EPOLLIN;
            events = EPOLLIN;
            if (!(c->ssl = spw_tls_session(s->cfg.tls, fd))) {
                c->tls_bad = 1;
                tls_hs_failed(s);
            }
        }
        struct epoll_event ev = {.events = events, .data.ptr = c};
        epoll_ctl(l->b.epfd, EPOLL_CTL_ADD, fd, &ev);
        if (s->cfg.tls && !c->ssl)
            spw_netconn_close(c);
    }
}

static void tick(spw_netloop *l, uint64_t now)
{
    const spw_netproto *p = l->ns->proto;
    if (p->loop_tick)
        p->loop_tick(l);
    uint32_t st = l->ns->cfg.send_timeout_ms;
    spw_netconn *c = l->conns;
    while (c) {
        spw_netconn *next = c->next; /* c may close (and leave the list) */
        if (c->tls_hs) {
            /* Nothing of the protocol's runs before the handshake is done. */
            if (now - c->last_active_ms > l->ns->cfg.tls_handshake_timeout_ms) {
                tls_hs_failed(l->ns);
                spw_netconn_close(c);
            }
        } else if (st && c->out_wait_ms && now - c->out_wait_ms > st) {
            /* Its client has not taken a byte of its answers for
             * send-timeout: it gives back what they hold. */
            atomic_fetch_add(&l->ns->send_timeouts, 1);
            spw_netconn_close(c);
        } else if (p->conn_tick) {
            p->conn_tick(c, now);
        }
        c = next;
    }
}

static void *loop_main(void *arg)
{
    spw_netloop *l = arg;
    const spw_netproto *p = l->ns->proto;
    struct epoll_event evs[256];
    uint64_t next_tick = spw_net_now_ms() + SPW_NET_TICK_MS;
    ring_open(l);
    for (;;) {
        int n = epoll_wait(l->b.epfd, evs, 256, l->tls_ready ? 0 : SPW_NET_TICK_MS);
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
            spw_netconn *c = ptr;
            /* Closed earlier in this round (its fd may already be another
             * connection's): a zombie, nothing to do with its events. */
            if (c->closed)
                continue;
            if (c->ssl)
                tls_io(c, evs[i].events);
            else
                p->io(c, evs[i].events);
        }
        if (l->tls_ready)
            tls_ready_run(l);
        if (p->after_events)
            p->after_events(l);
        /* As soon as the budget has room, not a tick later. */
        if (l->waiters && spw_membudget_room(l->ns->cfg.buffers, SPW_NET_READ_CHUNK))
            wake_waiters(l);
        if (l->zombies)
            sweep(l, 0);
        uint64_t now = spw_net_now_ms();
        accept_resume(l, now);
        if (now >= next_tick) {
            tick(l, now);
            next_tick = now + SPW_NET_TICK_MS;
        }
        if (atomic_load(&l->ns->stop) == 2)
            break;
    }
    ring_close(l);
    return NULL;
}

int spw_netsrv_start(spw_netsrv *s, const spw_netproto *proto, const spw_netsrv_config *cfg, void *owner)
{
    spw__net_addr sa;
    int r = spw__net_parse_addr(cfg->listen, &sa);
    if (r)
        return r;
    memset(s, 0, sizeof *s);
    s->proto = proto;
    s->owner = owner;
    s->cfg = *cfg;
    if (s->cfg.threads == 0)
        s->cfg.threads = 1;
    if (s->cfg.tls_handshake_timeout_ms == 0)
        s->cfg.tls_handshake_timeout_ms = 30000;
    s->loops = spw_xcalloc(s->cfg.threads, proto->loop_size);
    if ((r = spw__loop_bases_open(&loop_at(s, 0)->b, proto->loop_size, s->cfg.threads, &sa)) < 0) {
        spw_free(s->loops);
        s->loops = NULL;
        return r;
    }
    s->nloops = s->cfg.threads;
    s->port = spw__net_addr_port(&sa);
    if (!atomic_exchange(&g_reserve_opened, 1))
        reserve_open();
    for (uint32_t i = 0; i < s->nloops; i++) {
        spw_netloop *l = loop_at(s, i);
        l->ns = s;
        if (proto->loop_init)
            proto->loop_init(l, owner);
    }
    for (uint32_t i = 0; i < s->nloops; i++)
        if (pthread_create(&loop_at(s, i)->b.th, NULL, loop_main, loop_at(s, i)) == 0)
            spw_thread_name(loop_at(s, i)->b.th, "%s-%u", proto->thread ? proto->thread : "spw-loop", i);
    return 0;
}

/* ---- the drain ---- */

static void stop_accepting(void *arg)
{
    spw_netloop *l = arg;
    if (l->stopping)
        return;
    l->stopping = 1;
    spw__loop_base_stop_listening(&l->b);
    /* Requests already dispatched are answered; nothing new is read (what
     * was not dispatched yet goes with the connection, so the drain ends
     * even while clients keep sending). */
    for (spw_netconn *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (c->tls_hs)
            spw_netconn_close(c); /* no request yet, none to come */
        else if (l->ns->proto->stop_reading)
            l->ns->proto->stop_reading(c);
    }
}

void spw_netsrv_stop_accepting(spw_netsrv *s)
{
    for (uint32_t i = 0; i < s->nloops; i++)
        spw_netloop_post(loop_at(s, i), stop_accepting, loop_at(s, i));
}

typedef struct drain_q {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint32_t done;
    uint32_t inflight;
} drain_q;

typedef struct drain_arg {
    spw_netloop *l;
    drain_q *d;
} drain_arg;

/* On l's thread: adds its in-flight count to the round's sum. */
static void ask_inflight(void *arg)
{
    drain_arg *a = arg;
    pthread_mutex_lock(&a->d->mu);
    a->d->inflight += a->l->inflight;
    a->d->done++;
    pthread_cond_signal(&a->d->cv);
    pthread_mutex_unlock(&a->d->mu);
}

void spw_netsrv_stop(spw_netsrv *s, uint32_t drain_ms)
{
    spw_netsrv_stop_accepting(s);
    uint64_t deadline = spw_net_now_ms() + drain_ms;
    drain_arg *args = spw_xcalloc(s->nloops, sizeof *args);
    int warned = 0;
    for (;;) {
        drain_q d = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
        for (uint32_t i = 0; i < s->nloops; i++) {
            args[i] = (drain_arg){loop_at(s, i), &d};
            spw_netloop_post(loop_at(s, i), ask_inflight, &args[i]);
        }
        pthread_mutex_lock(&d.mu);
        while (d.done < s->nloops)
            pthread_cond_wait(&d.cv, &d.mu);
        pthread_mutex_unlock(&d.mu);
        if (d.inflight == 0)
            break;
        if (spw_net_now_ms() >= deadline && !warned) {
            spw_warn("%s: %u request(s) still in flight after the drain time; waiting for the log", s->proto->name,
                     d.inflight);
            warned = 1;
        }
        usleep(10000);
    }
    spw_free(args);
    atomic_store(&s->stop, 2);
    for (uint32_t i = 0; i < s->nloops; i++) {
        spw__loop_wake(&loop_at(s, i)->b);
        pthread_join(loop_at(s, i)->b.th, NULL);
    }
    for (uint32_t i = 0; i < s->nloops; i++) {
        spw_netloop *l = loop_at(s, i);
        while (l->conns)
            spw_netconn_close(l->conns);
        spw__loop_run_posts(&l->b);
        sweep(l, 1);
        spw__loop_base_close(&l->b);
    }
    spw_free(s->loops);
    s->loops = NULL;
    s->nloops = 0;
}
