/*
 * `spillway bench --rate R --inflight N`: the open-loop HTTP load.
 *
 * Request i of the run (0 .. R-1, --batch events each, the last possibly
 * shorter) is due at t0 + i x batch / rate, whether or not earlier ones
 * were answered: the offered load does not bend to the server's speed, as
 * with many independent clients on a bad day. One epoll worker per core
 * takes the requests i = w (mod workers). A due request goes out on one of
 * the worker's idle keep-alive connections, or on a new one while the
 * worker has fewer than its share of N; with all of them busy it waits for
 * the first to come free, and counts as late when it leaves 10 ms or more
 * after its time (the load generator, not the server, fell behind). One
 * request per connection at a time, so a slow answer never holds up
 * another's (no pipelining).
 *
 * Latency runs from the scheduled time. Answers are counted by outcome and
 * priority (spw__bench_note). A request in flight that gets no answer for
 * 60 s while nothing else is answered either is given up on (failed) and
 * its connection closed; so is one whose connection fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/bench_int.h"
#include "cli/httpc.h"
#include "core/alloc.h"
#include "core/id.h"

#define LATE_NS 10000000ull        /* 10 ms */
#define GIVE_UP_NS 60000000000ull  /* 60 s without any answer */

typedef struct oconn {
    spw_httpc h;
    spw_buf req;
    size_t req_off;  /* bytes of req sent */
    uint32_t req_n;  /* events of the request in flight; 0 = idle */
    int prio;        /* its priority, -1 = none */
    uint64_t due_ns; /* its scheduled time */
    int dead;        /* idle, but the server closed it (or it failed) */
    uint32_t k;      /* its slot */
} oconn;

typedef struct oworker {
    const bench_cfg *c;
    client *cl;
    uint32_t w, nw;
    uint32_t max, pre; /* connections: at most, and opened before the start */
    pthread_barrier_t *go;
    int ep;
    oconn **cs;       /* slots [0, nslots), each allocated when first used */
    uint32_t nslots;
    uint32_t *idle;   /* connected slots with nothing in flight */
    uint32_t nidle;
    uint32_t *closed; /* slots without a connection */
    uint32_t nclosed;
    uint32_t busy;    /* requests in flight */
    uint64_t last_answer_ns;
} oworker;

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Closes oc's connection; its slot can connect again. */
static void conn_close(oworker *ow, oconn *oc, uint32_t k)
{
    if (oc->h.fd >= 0)
        epoll_ctl(ow->ep, EPOLL_CTL_DEL, oc->h.fd, NULL);
    spw_httpc_close(&oc->h);
    oc->req_n = 0;
    oc->dead = 0;
    ow->closed[ow->nclosed++] = k;
}

/* Connects slot k. Returns 0, or -1 (errno set; the slot is closed). */
static int conn_open(oworker *ow, uint32_t k)
{
    oconn *oc = ow->cs[k];
    if (spw_httpc_connect(&oc->h, 0) < 0 || set_nonblock(oc->h.fd) < 0) {
        int e = errno;
        spw_httpc_close(&oc->h);
        ow->closed[ow->nclosed++] = k;
        errno = e;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, .data.u32 = k};
    if (epoll_ctl(ow->ep, EPOLL_CTL_ADD, oc->h.fd, &ev) < 0) {
        int e = errno;
        spw_httpc_close(&oc->h);
        ow->closed[ow->nclosed++] = k;
        errno = e;
        return -1;
    }
    return 0;
}

/*
 * A connection for the next request: an idle one, else a closed slot
 * connected again, else a new slot while under max. NULL with *err 0 when
 * every connection is busy; NULL with *err an errno when connecting failed.
 */
static oconn *take_conn(oworker *ow, int *err)
{
    *err = 0;
    while (ow->nidle) {
        uint32_t k = ow->idle[--ow->nidle];
        if (!ow->cs[k]->dead)
            return ow->cs[k];
        conn_close(ow, ow->cs[k], k);
    }
    uint32_t k;
    if (ow->nclosed) {
        k = ow->closed[--ow->nclosed];
    } else if (ow->nslots < ow->max) {
        k = ow->nslots++;
        oconn *oc = spw_xcalloc(1, sizeof *oc);
        spw__bench_httpc_init(&oc->h, ow->c);
        oc->k = k;
        ow->cs[k] = oc;
    } else {
        return NULL;
    }
    if (conn_open(ow, k) < 0) {
        *err = errno ? errno : ECONNREFUSED;
        return NULL;
    }
    return ow->cs[k];
}

/* The request in flight on oc failed with errno: count it, close. */
static void req_fail(oworker *ow, oconn *oc, uint32_t k)
{
    char why[400];
    snprintf(why, sizeof why, "connection to %.200s:%s failed: %s", ow->c->host, ow->c->port, strerror(errno));
    spw__bench_failed(ow->cl, oc->req_n, oc->prio, why);
    ow->busy--;
    conn_close(ow, oc, k);
}

static void conn_send(oworker *ow, oconn *oc, uint32_t k)
{
    while (oc->req_off < oc->req.len) {
        ssize_t w = spw_httpc_io_send(&oc->h, oc->req.p + oc->req_off, oc->req.len - oc->req_off);
        if (w > 0) {
            oc->req_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        req_fail(ow, oc, k);
        return;
    }
}

static void conn_recv(oworker *ow, oconn *oc, uint32_t k)
{
    int eof = 0;
    for (int rounds = 0; rounds < 1 << 16 && oc->req_n; rounds++) {
        spw_httpc_resp resp;
        int st = spw_httpc_parse(&oc->h, eof, &resp);
        if (st > 0) {
            uint64_t now = spw_mono_ns();
            spw__bench_note(ow->cl, st, resp.body, resp.body_len, oc->req_n, oc->prio, (now - oc->due_ns) / 1000);
            ow->busy--;
            ow->last_answer_ns = now;
            oc->req_n = 0;
            if (resp.close) {
                conn_close(ow, oc, k);
            } else {
                ow->idle[ow->nidle++] = k;
            }
            return;
        }
        if (st < 0) {
            req_fail(ow, oc, k);
            return;
        }
        ssize_t n = spw_httpc_io_recv(&oc->h, oc->h.in.p + oc->h.in.len, oc->h.in.cap - oc->h.in.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            req_fail(ow, oc, k);
            return;
        }
        if (n == 0)
            eof = 1;
        oc->h.in.len += (size_t)n;
    }
}

static void *open_worker_main(void *arg)
{
    oworker *ow = arg;
    const bench_cfg *c = ow->c;
    client *cl = ow->cl;
    char *pad = spw__bench_pad(c);
    spw_buf body = SPW_BUF_INIT;
    ow->ep = epoll_create1(EPOLL_CLOEXEC);
    if (ow->ep < 0)
        abort();
    ow->cs = spw_xcalloc(ow->max, sizeof *ow->cs);
    ow->idle = spw_xmalloc(ow->max * sizeof *ow->idle);
    ow->closed = spw_xmalloc(ow->max * sizeof *ow->closed);
    /* The first connections, before the clock starts. */
    for (uint32_t i = 0; i < ow->pre; i++) {
        int err;
        oconn *oc = take_conn(ow, &err);
        if (oc)
            ow->idle[ow->nidle++] = oc->k;
    }
    pthread_barrier_wait(ow->go);

    const uint64_t nreq = (c->events + c->batch - 1) / c->batch;
    const double ns_per_req = 1e9 * c->batch / c->rate;
    const uint64_t t0 = spw_mono_ns();
    ow->last_answer_ns = t0;
    uint64_t next = ow->w; /* the worker's next request */
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = spw_mono_ns();
        int starved = 0; /* a request is due and no connection is free */
        while (next < nreq) {
            uint64_t due = t0 + (uint64_t)(ns_per_req * (double)next);
            if (due > now)
                break;
            int prio = c->nprios ? c->prios[next % c->nprios] : -1;
            uint64_t first = next * c->batch;
            uint32_t n = (uint32_t)(c->events - first < c->batch ? c->events - first : c->batch);
            int err;
            oconn *oc = take_conn(ow, &err);
            if (!oc && !err) {
                starved = 1;
                break;
            }
            uint64_t late = now - due;
            if (late >= LATE_NS)
                cl->late++;
            if (late / 1000 > cl->max_late_us)
                cl->max_late_us = late / 1000;
            next += ow->nw;
            if (!oc) {
                char why[400];
                snprintf(why, sizeof why, "connection to %.200s:%s failed: %s", c->host, c->port, strerror(err));
                spw__bench_failed(cl, n, prio, why);
                continue;
            }
            uint32_t k = oc->k;
            spw__bench_request(&oc->req, &body, &oc->h, c, ow->w, first, n, prio, pad);
            oc->req_off = 0;
            oc->req_n = n;
            oc->prio = prio;
            oc->due_ns = due;
            if (!ow->busy++)
                ow->last_answer_ns = now;
            conn_send(ow, oc, k);
            now = spw_mono_ns();
        }
        if (next >= nreq && !ow->busy)
            break;
        int timeout = 100;
        if (next < nreq && !starved) {
            uint64_t due = t0 + (uint64_t)(ns_per_req * (double)next);
            timeout = due > now ? (int)((due - now + 999999) / 1000000) : 0;
        }
        int got = epoll_wait(ow->ep, evs, 256, timeout);
        for (int e = 0; e < got; e++) {
            uint32_t k = evs[e].data.u32;
            oconn *oc = ow->cs[k];
            if (!oc->req_n) {
                /* Idle: anything but silence means the server closed it. */
                if (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    oc->dead = 1;
                continue;
            }
            if (evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                conn_send(ow, oc, k);
            if (oc->req_n && oc->req_off == oc->req.len &&
                (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
                conn_recv(ow, oc, k);
        }
        if (ow->busy && spw_mono_ns() - ow->last_answer_ns > GIVE_UP_NS) {
            /* Nothing answered for 60 s: give up on what is in flight. */
            for (uint32_t k = 0; k < ow->nslots; k++) {
                oconn *oc = ow->cs[k];
                if (oc->req_n) {
                    spw__bench_failed(cl, oc->req_n, oc->prio, "no answer within 60 s");
                    ow->busy--;
                    conn_close(ow, oc, k);
                }
            }
        }
    }
    for (uint32_t k = 0; k < ow->nslots; k++) {
        spw_httpc_close(&ow->cs[k]->h);
        spw_buf_fini(&ow->cs[k]->req);
        spw_free(ow->cs[k]);
    }
    spw_free(ow->cs);
    spw_free(ow->idle);
    spw_free(ow->closed);
    close(ow->ep);
    spw_buf_fini(&body);
    spw_free(pad);
    return NULL;
}

void spw__bench_open_run(const bench_cfg *c, client *cls, uint32_t nworkers)
{
    oworker *ws = spw_xcalloc(nworkers, sizeof *ws);
    pthread_t *th = spw_xcalloc(nworkers, sizeof *th);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, nworkers);
    for (uint32_t w = 0; w < nworkers; w++) {
        uint32_t max = c->inflight / nworkers + (w < c->inflight % nworkers);
        uint32_t pre = c->clients / nworkers + (w < c->clients % nworkers);
        ws[w] = (oworker){.c = c, .cl = &cls[w], .w = w, .nw = nworkers, .max = max, .pre = pre > max ? max : pre,
                          .go = &go};
        if (pthread_create(&th[w], NULL, open_worker_main, &ws[w])) {
            fprintf(stderr, "spillway bench: cannot start thread %u\n", w);
            exit(1);
        }
    }
    for (uint32_t w = 0; w < nworkers; w++)
        pthread_join(th[w], NULL);
    pthread_barrier_destroy(&go);
    spw_free(th);
    spw_free(ws);
}
