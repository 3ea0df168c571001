/*
 * The producer's I/O thread (spw__producer_main): one thread owns every
 * socket of a producer. It connects (non-blocking, exponential backoff
 * after failures), moves sealed batches into a socket's output while fewer
 * than max_in_flight are unanswered, reads answers and matches them to
 * batches by request id, requeues what a lost connection left unanswered
 * (at least once), expires batches past delivery_timeout_ms, and runs the
 * delivery callbacks outside the lock. Producer design and locking:
 * producer.c, client_impl.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spillway.h"
#include "client/client_int.h"
#include "client/client_impl.h"
#include "core/clock.h"
#include "core/hash.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/endian.h"
#include "core/error.h"
#include "core/ring.h"
#include "wire/frame.h"

/* ---- I/O thread ---- */

/* The connection's TLS session, if any, goes with its socket. */
static void tls_drop(server *s)
{
    if (s->ssl)
        spw__client_tls_free(s->ssl);
    s->ssl = NULL;
    s->tls_hs = 0;
}

/* Records why connecting to s failed (err 0: it is connected now). */
static void conn_state(spillway_producer *p, server *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_state(spillway_producer *p, server *s, int err, const char *fmt, ...)
{
    pthread_mutex_lock(&p->conn_mu);
    s->conn_err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->conn_why, sizeof s->conn_why, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&p->conn_mu);
}

static void srv_disconnect(spillway_producer *p, server *s, uint64_t now)
{
    tls_drop(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->connecting = 0;
    s->out.len = s->out_off = 0;
    s->in.len = 0;
    /* Unanswered batches go first again, in order. */
    q_prepend_all(&s->queue, &s->inflight);
    s->next_connect_ms = now + s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 > p->cfg.backoff_max_ms ? p->cfg.backoff_max_ms : s->backoff_ms * 2;
}

/* A connect round to s failed (every address, the name's lookup, or the
 * TLS handshake): s is down until a connect succeeds (include/spillway.h
 * "Routing"); spw__producer_main moves or fails its records. */
static void srv_round_failed(spillway_producer *p, server *s, uint64_t now)
{
    s->failed_rounds++;
    srv_disconnect(p, s, now);
}

/*
 * The connection is up: count a reconnect, and put AUTH first in its
 * output when there is a token. The server handles frames in order, so
 * the PRODUCEs written after it run authenticated without waiting for
 * its answer; if the token is refused they are answered 401 one by one.
 */
static void srv_connected(spillway_producer *p, server *s, uint64_t now)
{
    s->connecting = 0;
    s->failed_rounds = 0;
    conn_state(p, s, 0, "%s", "");
    s->ai = s->naddr; /* the next connect (after a loss) resolves again */
    if (s->ever_connected)
        atomic_fetch_add(&p->reconnects, 1);
    s->ever_connected = 1;
    s->auth_id = 0;
    if (!p->token_len)
        return;
    size_t st;
    uint64_t id = p->next_id++;
    if (spw_frame_begin(&s->out, SPW_OP_AUTH, 0, id, &st) || spw_auth_req_encode(&s->out, p->token, p->token_len)) {
        srv_disconnect(p, s, now);
        return;
    }
    spw_frame_finish(&s->out, st);
    s->auth_id = id;
}

static void srv_connect(spillway_producer *p, server *s, uint64_t now);

/* A step of the TLS handshake (the connection stays "connecting" until it
 * is done, under the same connect timeout). */
static void srv_tls_step(spillway_producer *p, server *s, uint64_t now)
{
    int w = spw__client_tls_handshake(s->ssl);
    if (w == 0) {
        s->tls_hs = 0;
        srv_connected(p, s, now);
    } else if (w < 0) {
        /* A certificate that does not verify, or no TLS there: like a
         * refused connection (a failed round and a backoff). */
        conn_state(p, s, SPILLWAY_ERR_TLS, "the TLS handshake with %s failed", s->name);
        srv_round_failed(p, s, now);
    } else {
        s->tls_hs = (short)w;
    }
}

/* The TCP connection is up: the handshake first with TLS. */
static void srv_tcp_up(spillway_producer *p, server *s, uint64_t now)
{
    if (!p->tls_ctx) {
        srv_connected(p, s, now);
        return;
    }
    if (!(s->ssl = spw__client_tls_session(p->tls_ctx, s->fd, s->host))) {
        srv_round_failed(p, s, now);
        return;
    }
    s->connecting = 1; /* until the handshake is done */
    srv_tls_step(p, s, now);
}

/* The connect to addrs[ai] failed: the next address of the round, or,
 * after the last, a backoff (the next round resolves the name again). */
static void srv_connect_failed(spillway_producer *p, server *s, uint64_t now, int err)
{
    conn_state(p, s, -err, "connecting to %s: %s", s->name, strerror(err));
    tls_drop(s);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->connecting = 0;
    if (++s->ai < s->naddr)
        srv_connect(p, s, now);
    else
        srv_round_failed(p, s, now);
}

/*
 * Connects to the server's next address. A round starts by resolving its
 * host (getaddrinfo, here on the I/O thread: a name is looked up again at
 * every reconnect, so a moved server is found), then tries each address
 * in the resolver's order until one connects.
 */
static void srv_connect(spillway_producer *p, server *s, uint64_t now)
{
    if (s->ai >= s->naddr) {
        s->ai = 0;
        s->naddr = spw__client_resolve(s->host, s->port, s->addrs, s->alens);
        if (s->naddr < 0) {
            s->naddr = 0;
            conn_state(p, s, -EHOSTUNREACH, "cannot resolve the host of %s (no address for the name)", s->name);
            srv_round_failed(p, s, now); /* a backoff; the next round resolves again */
            return;
        }
    }
    const struct sockaddr_storage *a = &s->addrs[s->ai];
    int fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        srv_connect_failed(p, s, now, errno);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    s->connect_started_ms = now;
    if (connect(fd, (const struct sockaddr *)a, s->alens[s->ai]) == 0) {
        srv_tcp_up(p, s, now);
    } else if (errno == EINPROGRESS) {
        s->connecting = 1;
    } else {
        srv_connect_failed(p, s, now, errno);
    }
}

/* Moves queued batches into out while the in-flight window allows. */
static void srv_fill(spillway_producer *p, server *s, uint64_t now)
{
    while (!p->stopped && s->queue.head && s->inflight.n < p->cfg.max_in_flight &&
           s->queue.head->not_before_ms <= now) {
        batch *b = q_pop(&s->queue);
        b->request_id = p->next_id++;
        spw_put64(b->frame.p + 8, b->request_id);
        /* The sequence of the first record, numbered per producer and
         * fixed at the first send: a resend carries the same producer id
         * and sequence, which the server recognises (docs/protocol.md). */
        if (!b->has_seq) {
            spw__producer_seq_take(&p->producer_id, &p->producer_seq, b->count, spw__producer_random_id, &p->producer_id,
                                   &b->pid, &b->seq);
            b->has_seq = 1;
        }
        size_t seq_at = 16 + 2 + strlen(b->stream) + 1 + 1 + 2 + 4 + 8;
        spw_put64(b->frame.p + seq_at - 8, b->pid);
        spw_put32(b->frame.p + seq_at, b->seq);
        if (spw_buf_reserve(&s->out, s->out.len + b->frame.len)) {
            q_push_front(&s->queue, b);
            return;
        }
        memcpy(s->out.p + s->out.len, b->frame.p, b->frame.len);
        s->out.len += b->frame.len;
        q_push(&s->inflight, b);
    }
}

static void srv_write(spillway_producer *p, server *s, uint64_t now)
{
    while (s->out_off < s->out.len) {
        ssize_t w = s->ssl ? spw__client_tls_send(s->ssl, s->out.p + s->out_off, s->out.len - s->out_off)
                           : send(s->fd, s->out.p + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                srv_disconnect(p, s, now);
            return;
        }
        s->out_off += (size_t)w;
    }
    s->out.len = s->out_off = 0;
}

/* Handles one answer. Returns 0, or -1 if the connection must be dropped. */
static int srv_answer(spillway_producer *p, server *s, const spw_frame_hdr *h, const uint8_t *body, size_t len,
                      done_item **done, uint64_t now)
{
    if (h->opcode == SPW_OP_AUTH && s->auth_id && h->request_id == s->auth_id && (h->flags & SPW_FLAG_RESPONSE)) {
        /* Nothing to do either way: refused, the PRODUCEs behind it come
         * back 401 and fail their records with it. */
        uint16_t st;
        const uint8_t *rest;
        size_t rl;
        spw_frame_error e;
        const char *why;
        return spw_answer_decode(body, len, &st, &rest, &rl, &e, &why) ? -1 : 0;
    }
    batch *b = s->inflight.head, *prev = NULL;
    while (b && b->request_id != h->request_id) {
        prev = b;
        b = b->next;
    }
    if (!b || h->opcode != SPW_OP_PRODUCE || !(h->flags & SPW_FLAG_RESPONSE))
        return -1; /* not ours: the server closes after such errors anyway */
    uint16_t st;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    if (spw_answer_decode(body, len, &st, &rest, &rl, &e, &why))
        return -1;
    spw_produce_resp pr;
    if (st == 0 && (spw_produce_resp_decode(rest, rl, &pr, &why) || pr.nrecords != b->count))
        return -1;
    /* Unlink from in-flight. */
    if (prev)
        prev->next = b->next;
    else
        s->inflight.head = b->next;
    if (s->inflight.tail == b)
        s->inflight.tail = prev;
    s->inflight.n--;
    b->next = NULL;
    if (st == SPW_ST_OVERLOADED || st == SPW_ST_RATE_LIMITED) {
        if (now + e.retry_after_ms < b->deadline_ms) {
            /* +1: spw_mono_ms() truncates, so this waits at least retry_after_ms
             * of real time and the retry finds what the server promised. */
            b->not_before_ms = now + (e.retry_after_ms ? e.retry_after_ms + 1 : p->cfg.backoff_ms);
            q_push_front(&s->queue, b);
            return 0;
        }
        spw__producer_finish(p, done, b, SPILLWAY_ERR_TIMEOUT, NULL, NULL);
        return 0;
    }
    if (st) {
        spw__producer_finish(p, done, b, -(int)st, NULL, NULL);
        return 0;
    }
    uint32_t *parts = malloc(b->count * sizeof *parts);
    uint64_t *offs = malloc(b->count * sizeof *offs);
    uint64_t *next = malloc((pr.nslots ? pr.nslots : 1) * sizeof *next);
    if (!parts || !offs || !next)
        abort();
    for (uint32_t k = 0; k < pr.nslots; k++) {
        spw_produce_slot sl;
        spw_produce_resp_slot(&pr, k, &sl);
        next[k] = sl.first_offset;
    }
    for (uint32_t i = 0; i < b->count; i++) {
        parts[i] = spw_produce_resp_part(&pr, i);
        for (uint32_t k = 0; k < pr.nslots; k++) {
            spw_produce_slot sl;
            spw_produce_resp_slot(&pr, k, &sl);
            if (sl.partition == parts[i]) {
                offs[i] = next[k]++;
                break;
            }
        }
    }
    free(next);
    s->backoff_ms = p->cfg.backoff_ms; /* the server works: reset the backoff */
    spw__producer_finish(p, done, b, 0, parts, offs);
    return 0;
}

static void srv_read(spillway_producer *p, server *s, done_item **done, uint64_t now)
{
    for (int rounds = 0; rounds < 16; rounds++) {
        if (spw_buf_reserve(&s->in, s->in.len + READ_CHUNK)) {
            srv_disconnect(p, s, now);
            return;
        }
        ssize_t n = s->ssl ? spw__client_tls_recv(s->ssl, s->in.p + s->in.len, READ_CHUNK)
                           : recv(s->fd, s->in.p + s->in.len, READ_CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            srv_disconnect(p, s, now);
            return;
        }
        s->in.len += (size_t)n;
        size_t off = 0;
        for (;;) {
            spw_frame_hdr h;
            int r = spw_frame_hdr_decode(s->in.p + off, s->in.len - off, MAX_ANSWER_BYTES, &h);
            if (r == SPW_ETRUNC)
                break;
            if (r) {
                srv_disconnect(p, s, now);
                return;
            }
            if (s->in.len - off < 4 + (size_t)h.length)
                break;
            if (srv_answer(p, s, &h, s->in.p + off + 16, h.length - 12, done, now)) {
                srv_disconnect(p, s, now);
                return;
            }
            off += 4 + (size_t)h.length;
        }
        memmove(s->in.p, s->in.p + off, s->in.len - off);
        s->in.len -= off;
        if ((size_t)n < READ_CHUNK && !(s->ssl && spw__client_tls_pending(s->ssl)))
            break;
    }
}

/* Fails queued batches past their delivery deadline. */
static void expire(spillway_producer *p, server *s, done_item **done, uint64_t now)
{
    bqueue keep = {0};
    batch *b;
    while ((b = q_pop(&s->queue))) {
        if (now >= b->deadline_ms)
            spw__producer_finish(p, done, b, SPILLWAY_ERR_TIMEOUT, NULL, NULL);
        else
            q_push(&keep, b);
    }
    s->queue = keep;
}

/*
 * s is down (include/spillway.h "Routing"): its batches without a key go
 * to a server that is not (they may have been stored before the loss: at
 * least once); after connect_attempts_max failed rounds in a row, what is
 * queued for it fails with the connect error, at once, until a connect
 * succeeds (the loop still tries one every backoff_max_ms when records
 * come: a record queued while a try is under way waits for its outcome).
 * Returns 1 if it moved a batch (the loop goes round again at once).
 * REQUIRES: mu, s not connected.
 */
static int srv_down(spillway_producer *p, server *s, done_item **done)
{
    int moved = 0;
    bqueue keep = {0};
    batch *b;
    while ((b = q_pop(&s->queue))) {
        uint32_t to = b->keyless ? spw__producer_next_up(p) : 0;
        if (b->keyless && p->servers[to].failed_rounds == 0) {
            b->server = to;
            b->not_before_ms = 0;
            q_push(&p->servers[to].queue, b);
            moved = 1;
        } else {
            q_push(&keep, b);
        }
    }
    s->queue = keep;
    if (p->cfg.connect_attempts_max && s->failed_rounds >= p->cfg.connect_attempts_max) {
        pthread_mutex_lock(&p->conn_mu);
        int err = s->conn_err ? s->conn_err : -ECONNREFUSED;
        pthread_mutex_unlock(&p->conn_mu);
        while ((b = q_pop(&s->queue)))
            spw__producer_finish(p, done, b, err, NULL, NULL);
    }
    return moved;
}

void *spw__producer_main(void *arg)
{
    spillway_producer *p = arg;
    struct pollfd pfd[MAX_SERVERS + 1];
    int map[MAX_SERVERS + 1];
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        uint64_t now = spw_mono_ms();
        done_item *done = NULL;
        int timeout = 1000;
        for (uint32_t i = 0; i < p->nservers; i++) {
            server *s = &p->servers[i];
            /* linger */
            for (batch *b = s->open, *nx; b; b = nx) {
                nx = b->next;
                if (now >= b->created_ms + p->cfg.linger_ms)
                    spw__producer_seal(p, s, b);
                else if ((int)(b->created_ms + p->cfg.linger_ms - now) < timeout)
                    timeout = (int)(b->created_ms + p->cfg.linger_ms - now);
            }
            expire(p, s, &done, now);
            if (p->stopped)
                spw__producer_cancel_unsent(p, s, &done);
            if (s->fd < 0 && (s->queue.head || s->inflight.head)) {
                if (now >= s->next_connect_ms)
                    srv_connect(p, s, now);
                else if ((int)(s->next_connect_ms - now) < timeout)
                    timeout = (int)(s->next_connect_ms - now);
            }
            if (s->fd >= 0 && s->connecting && now - s->connect_started_ms > p->cfg.connect_timeout_ms)
                srv_connect_failed(p, s, now, ETIMEDOUT);
            if (s->fd < 0 && s->failed_rounds && srv_down(p, s, &done))
                timeout = 0;
            if (s->fd >= 0 && !s->connecting) {
                srv_fill(p, s, now);
                srv_write(p, s, now);
            }
            if (s->queue.head && s->queue.head->not_before_ms > now &&
                (int)(s->queue.head->not_before_ms - now) < timeout)
                timeout = (int)(s->queue.head->not_before_ms - now);
            if (s->queue.head && s->queue.head->deadline_ms > now &&
                (int)(s->queue.head->deadline_ms - now) < timeout)
                timeout = (int)(s->queue.head->deadline_ms - now);
        }
        int n = 0;
        pfd[n] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        map[n++] = -1;
        for (uint32_t i = 0; i < p->nservers; i++) {
            server *s = &p->servers[i];
            if (s->fd < 0)
                continue;
            short ev = s->tls_hs ? s->tls_hs : s->connecting ? POLLOUT : POLLIN;
            if (!s->connecting && s->out_off < s->out.len)
                ev |= POLLOUT;
            pfd[n] = (struct pollfd){.fd = s->fd, .events = ev};
            map[n++] = (int)i;
        }
        pthread_mutex_unlock(&p->mu);
        spw__producer_run_done(p, done);
        done = NULL;
        poll(pfd, (nfds_t)n, timeout < 0 ? 0 : timeout);
        pthread_mutex_lock(&p->mu);
        now = spw_mono_ms();
        if (pfd[0].revents & POLLIN) {
            char buf[256];
            while (read(p->wake[0], buf, sizeof buf) > 0) {
            }
        }
        for (int k = 1; k < n; k++) {
            server *s = &p->servers[map[k]];
            if (s->fd != pfd[k].fd || !pfd[k].revents)
                continue;
            if (s->tls_hs) {
                srv_tls_step(p, s, now);
                continue;
            }
            if (s->connecting) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    srv_connect_failed(p, s, now, err);
                    continue;
                }
                srv_tcp_up(p, s, now);
                continue;
            }
            if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
                srv_read(p, s, &done, now);
            if (s->fd >= 0 && (pfd[k].revents & POLLOUT))
                srv_write(p, s, now);
        }
        if (done) {
            pthread_mutex_unlock(&p->mu);
            spw__producer_run_done(p, done);
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}
