/*
 * `spillway bench` over HTTP, closed loop (or fixed --rate, one request
 * at a time per client): each worker thread drives its share of the
 * keep-alive connections with epoll, one small state machine per
 * connection (due → sending → awaiting the answer → due again), and counts
 * every answer by outcome (bench_int.h). The open loop (--inflight) is
 * bench_open.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/bench_int.h"
#include "cli/cmds.h"
#include "cli/httpc.h"
#include "spillway.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/id.h"
#include "wire/frame.h"


/*
 * HTTP: each worker thread drives its share of the connections with epoll,
 * as redis-benchmark does, so the load generator spends its CPU on requests
 * rather than on one blocked thread per connection. A connection is a small
 * state machine: due (waiting for its scheduled time) → sending → awaiting
 * the answer → due again.
 */
typedef struct hconn {
    client *cl;
    spw_httpc h;
    spw_buf req;
    size_t req_off;  /* bytes of req sent */
    uint32_t req_n;  /* events in the request in flight; 0 = none */
    uint64_t sent;   /* events of this client sent so far (scheduled) */
    uint64_t due_ns; /* when the next request is scheduled */
    uint64_t t0_ns;
    uint64_t end_ns; /* --duration without --rate: no request starts after this; 0 = none */
    int prio;        /* of the request in flight; -1 = no header */
    int reconnects;
    int done;
} hconn;

static int set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* Builds the next request of hc into hc->req. */
static void hconn_build(hconn *hc, spw_buf *body, const char *pad)
{
    client *cl = hc->cl;
    const bench_cfg *c = cl->cfg;
    uint32_t n = (uint32_t)(cl->events - hc->sent < c->batch ? cl->events - hc->sent : c->batch);
    /* --priorities: the client's k-th request takes prios[(id + k) % n]. */
    hc->prio = c->nprios ? c->prios[(cl->id + hc->sent / c->batch) % c->nprios] : -1;
    spw__bench_request(&hc->req, body, &hc->h, c, cl->id, hc->sent, n, hc->prio, pad);
    hc->req_off = 0;
    hc->req_n = n;
}

/* The request in flight failed on the connection: count it, reconnect
 * (blocking, bounded), and go on with the next one. */
static void hconn_fail(hconn *hc, int ep)
{
    client *cl = hc->cl;
    const bench_cfg *c = cl->cfg;
    char why[400];
    (void)c;
    snprintf(why, sizeof why, "connection to %.200s:%s failed: %s", hc->h.host, hc->h.port, strerror(errno));
    if (hc->req_n)
        spw__bench_failed(cl, hc->req_n, hc->prio, why);
    else
        snprintf(cl->last_error, sizeof cl->last_error, "%s", why);
    hc->sent += hc->req_n;
    hc->req_n = 0;
    if (hc->h.fd >= 0)
        epoll_ctl(ep, EPOLL_CTL_DEL, hc->h.fd, NULL);
    hc->h.in.len = hc->h.consumed = 0;
    if (++hc->reconnects > 10 || spw_httpc_connect(&hc->h, 1000) < 0) {
        hc->done = 1;
        return;
    }
    set_nonblock(hc->h.fd, 1);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = hc};
    epoll_ctl(ep, EPOLL_CTL_ADD, hc->h.fd, &ev);
}

/* Sends what it can of the request in flight. */
static void hconn_send(hconn *hc, int ep)
{
    while (hc->req_off < hc->req.len) {
        ssize_t w = spw_httpc_io_send(&hc->h, hc->req.p + hc->req_off, hc->req.len - hc->req_off);
        if (w > 0) {
            hc->req_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        hconn_fail(hc, ep);
        return;
    }
}

/* Reads and handles the answer of the request in flight. */
static void hconn_recv(hconn *hc, int ep)
{
    client *cl = hc->cl;
    const bench_cfg *c = cl->cfg;
    int eof = 0;
    for (int rounds = 0; rounds < 1 << 16 && hc->req_n; rounds++) {
        spw_httpc_resp resp;
        int st = spw_httpc_parse(&hc->h, eof, &resp);
        if (st > 0) {
            uint64_t us = (spw_mono_ns() - hc->due_ns) / 1000;
            spw__bench_note(cl, st, resp.body, resp.body_len, hc->req_n, hc->prio, us);
            hc->sent += hc->req_n;
            hc->req_n = 0;
            hc->due_ns = c->rate > 0 ? hc->t0_ns + (uint64_t)(1e9 * c->clients / c->rate * (double)hc->sent) : spw_mono_ns();
            if (resp.close && hc->sent < cl->events) {
                errno = ECONNRESET;
                hc->req_n = 0;
                hconn_fail(hc, ep);
            }
            return;
        }
        if (st < 0) {
            hconn_fail(hc, ep);
            return;
        }
        ssize_t n = spw_httpc_io_recv(&hc->h, hc->h.in.p + hc->h.in.len, hc->h.in.cap - hc->h.in.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            hconn_fail(hc, ep);
            return;
        }
        if (n == 0)
            eof = 1;
        hc->h.in.len += (size_t)n;
    }
}

void *spw__bench_http_worker_main(void *arg)
{
    hworker *w = arg;
    const bench_cfg *c = w->cfg;
    char *pad = spw__bench_pad(c);
    spw_buf body = SPW_BUF_INIT;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        abort();
    hconn *hcs = spw_xcalloc(w->n, sizeof *hcs);
    uint64_t t0 = spw_mono_ns();
    uint32_t live = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        hconn *hc = &hcs[i];
        hc->cl = &w->cls[w->first + i];
        hc->t0_ns = hc->due_ns = t0;
        hc->end_ns = c->duration > 0 && !(c->rate > 0) ? t0 + (uint64_t)(c->duration * 1e9) : 0;
        hc->prio = -1;
        spw__bench_httpc_init_client(&hc->h, c, hc->cl->id);
        if (spw_httpc_connect(&hc->h, 0) < 0) {
            hc->req_n = 0;
            hconn_fail(hc, ep);
        } else {
            set_nonblock(hc->h.fd, 1);
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = hc};
            epoll_ctl(ep, EPOLL_CTL_ADD, hc->h.fd, &ev);
        }
        hc->done = hc->done || hc->cl->events == 0;
        live += !hc->done;
    }
    struct epoll_event evs[256];
    uint64_t last_event = spw_mono_ns();
    while (live) {
        /* Start every request that is due; find the next due time. */
        uint64_t now = spw_mono_ns(), next = UINT64_MAX;
        live = 0;
        for (uint32_t i = 0; i < w->n; i++) {
            hconn *hc = &hcs[i];
            if (!hc->done && !hc->req_n && (hc->sent >= hc->cl->events || (hc->end_ns && now >= hc->end_ns)))
                hc->done = 1;
            if (hc->done)
                continue;
            live++;
            if (hc->req_n)
                continue;
            if (hc->due_ns <= now) {
                hconn_build(hc, &body, pad);
                hconn_send(hc, ep);
            } else if (hc->due_ns < next) {
                next = hc->due_ns;
            }
        }
        if (!live)
            break;
        int timeout = next == UINT64_MAX ? 1000 : (int)((next - now) / 1000000 + 1);
        int k = epoll_wait(ep, evs, 256, timeout);
        if (k > 0) {
            last_event = spw_mono_ns();
        } else if (spw_mono_ns() - last_event > 60000000000ull) {
            /* Nothing moved for 60 s: the server is stuck; give up on what is in flight. */
            for (uint32_t i = 0; i < w->n; i++) {
                hconn *hc = &hcs[i];
                if (!hc->done && hc->req_n) {
                    spw__bench_failed(hc->cl, hc->req_n, hc->prio, "no answer within 60 s");
                    /* What was never sent (--duration: nothing was due). */
                    if (!hc->end_ns)
                        hc->cl->errors += hc->cl->events - hc->sent - hc->req_n;
                }
                hc->done = 1;
            }
            break;
        }
        for (int e = 0; e < k; e++) {
            hconn *hc = evs[e].data.ptr;
            if (hc->done || !hc->req_n)
                continue;
            if (evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                hconn_send(hc, ep);
            if (hc->req_n && hc->req_off == hc->req.len && (evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                hconn_recv(hc, ep);
        }
    }
    for (uint32_t i = 0; i < w->n; i++) {
        spw_httpc_close(&hcs[i].h);
        spw_buf_fini(&hcs[i].req);
    }
    spw_free(hcs);
    close(ep);
    spw_buf_fini(&body);
    spw_free(pad);
    return NULL;
}
