/*
 * Edge → core (docs/api.md "Forward"): an aggregate view with "forward"
 * sends each final bucket of its smallest window, as partial aggregates
 * (one NDJSON line per view key: {"key","start","window_ms","count",
 * "sum","min","max"}), to a stream on another node, where a merge view
 * adds them up. Called by the apply thread after its cycle.
 *
 * Exactly once. A bucket is final once its end plus grace is at or below
 * the view's watermark: no record can change it afterwards (such a record
 * is late), so what is sent for it never changes. Buckets are sent in
 * start order, one start at a time (its keys in key order, at most
 * CHUNK_KEYS a request), each request with the Idempotency-Key
 * "spillway-view/EDGE/START/CHUNK", EDGE being the view's name and its
 * stream's incarnation: a request sent again — after a timeout, after
 * this node crashed before it stored that it was sent, after a rebuild —
 * is the same request under the same key, and the other node appends
 * nothing twice (its dedupe window, dedupe_window_ms of the receiving
 * stream, must outlast an outage). The next start to send (fwd_next) is
 * kept in the meta entry once the other node answered 202.
 *
 * The request is plain HTTP/1.1 over a blocking socket with timeouts
 * (connect and whole exchange within TIMEOUT_MS); a failure is kept as
 * the view's last_error and tried again after RETRY_MS. The apply loop
 * goes on meanwhile.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "view/view_int.h"

#define CHUNK_KEYS 10000
#define TIMEOUT_MS 5000
#define RETRY_MS 1000
#define ROUNDS 64 /* bucket starts sent per call at most */

/* Waits for fd to be ready for ev until deadline; 0 or -ETIMEDOUT. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = spw_mono_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* POSTs body to the other node; 0 when it answered 202, else an error
 * with a sentence in err. */
static int post(const view_def *d, const char *key, const spw_buf *body, char *err, size_t cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(d->fwd_host, d->fwd_port, &hints, &ai);
    if (g != 0) {
        snprintf(err, cap, "resolving %s: %s", d->fwd_host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    uint64_t deadline = spw_mono_ms() + TIMEOUT_MS;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r = fd < 0 ? -errno : 0;
    if (r == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        r = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : -errno;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
            r = -soerr;
    }
    freeaddrinfo(ai);
    spw_buf req = SPW_BUF_INIT;
    if (r == 0) {
        spw_buf_xprintf(&req,
                        "POST /v1/streams/%s/events HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-ndjson\r\n"
                        "Idempotency-Key: %s\r\nSpillway-Ack: fsync\r\nConnection: close\r\nContent-Length: %zu\r\n",
                        d->fwd_stream, d->fwd_addr, key, body->len);
        if (d->fwd_token[0])
            spw_buf_xprintf(&req, "Authorization: Bearer %s\r\n", d->fwd_token);
        spw_buf_xprintf(&req, "\r\n");
        if (spw_buf_put(&req, body->p, body->len))
            abort();
        for (size_t at = 0; r == 0 && at < req.len;) {
            ssize_t n = send(fd, req.p + at, req.len - at, MSG_NOSIGNAL);
            if (n > 0)
                at += (size_t)n;
            else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                r = wait_fd(fd, POLLOUT, deadline);
            else if (n < 0 && errno != EINTR)
                r = -errno;
        }
    }
    char resp[512];
    size_t have = 0;
    while (r == 0 && have < sizeof resp - 1 && !memchr(resp, '\n', have)) {
        ssize_t n = recv(fd, resp + have, sizeof resp - 1 - have, 0);
        if (n > 0)
            have += (size_t)n;
        else if (n == 0)
            r = -ECONNRESET;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            r = wait_fd(fd, POLLIN, deadline);
        else if (errno != EINTR)
            r = -errno;
    }
    resp[have] = 0;
    if (fd >= 0)
        close(fd);
    spw_buf_fini(&req);
    if (r < 0) {
        snprintf(err, cap, "sending to %s: %s", d->fwd_addr, spw_strerror(r));
        return r;
    }
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1 || status != 202) {
        char *nl = strchr(resp, '\r');
        if (nl)
            *nl = 0;
        snprintf(err, cap, "%s answered %s to the forwarded bucket", d->fwd_addr, resp);
        return -EPROTO;
    }
    return 0;
}

static void line(spw_buf *b, const view_def *d, const char *k, size_t kl, int64_t start, const view_agg *a)
{
    spw_buf_xprintf(b, "{\"key\":");
    spw_json_xput_str(b, k, kl);
    spw_buf_xprintf(b, ",\"start\":%" PRId64 ",\"window_ms\":%" PRId64 ",", start, d->win_ms[0]);
    spw__view_agg_json(b, a, 1);
    spw_buf_xprintf(b, "}\n");
}

/* Stores fwd_next: a batch holding only the meta entry. */
static int save_meta(spw_view *v)
{
    spw_buf mb = SPW_BUF_INIT;
    spw__view_meta_encode(&v->meta, &mb);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, VIEW_META_KEY, VIEW_META_KEY_LEN, (const char *)mb.p, mb.len);
    char *e = NULL;
    rocksdb_write(v->db, v->wo, wb, &e);
    rocksdb_writebatch_destroy(wb);
    spw_buf_fini(&mb);
    if (e) {
        rocksdb_free(e);
        return -EIO;
    }
    v->dirty++;
    return 0;
}

int spw__view_forward(spw_view *v, uint64_t *retry_ms, char *err, size_t cap)
{
    const view_def *d = &v->def;
    if (!d->fwd_host[0] || spw_mono_ms() < *retry_ms || !v->s)
        return 0;
    int64_t wm = spw__view_watermark(&v->meta);
    if (wm == INT64_MIN)
        return 0;
    int64_t limit = wm - d->win_ms[0] - d->grace_ms; /* buckets starting at or before it are final */
    char edge[SPW_STREAM_NAME_MAX + 32];
    snprintf(edge, sizeof edge, "%s.%" PRIu64, d->name, v->s->incarnation);
    uint8_t lo[10], hi[2] = {VIEW_P_BUCKET, 1};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator(v->db, ro);
    spw_buf body = SPW_BUF_INIT;
    int r = 0, round = 0;
    for (; round < ROUNDS && r == 0; round++) {
        int64_t from = v->meta.fwd_next == INT64_MIN ? -VIEW_TIME_MAX - (1LL << 60) : v->meta.fwd_next;
        spw__view_bucket_key(lo, 0, from, NULL, 0);
        rocksdb_iter_seek(it, (const char *)lo, 10);
        if (!rocksdb_iter_valid(it))
            break;
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl < 10)
            break;
        uint64_t u = 0;
        for (int j = 0; j < 8; j++)
            u = u << 8 | k[2 + j];
        int64_t start = (int64_t)(u ^ (1ull << 63));
        if (start > limit)
            break;
        memcpy(lo, k, 10); /* this start's prefix */
        uint32_t chunk = 0, nkeys = 0;
        body.len = 0;
        for (; r == 0; rocksdb_iter_next(it)) {
            int more = rocksdb_iter_valid(it);
            if (more) {
                k = (const uint8_t *)rocksdb_iter_key(it, &kl);
                more = kl >= 10 && memcmp(k, lo, 10) == 0;
            }
            if (more) {
                size_t vl;
                const char *vv = rocksdb_iter_value(it, &vl);
                view_agg a;
                if (spw__view_agg_decode(vv, vl, &a) < 0) {
                    snprintf(err, cap, "forward: a bucket entry is damaged");
                    r = SPW_ECORRUPT;
                    break;
                }
                line(&body, d, (const char *)k + 10, kl - 10, start, &a);
                nkeys++;
            }
            if ((!more && nkeys) || nkeys == CHUNK_KEYS) {
                char key[SPW_STREAM_NAME_MAX + 96];
                snprintf(key, sizeof key, "spillway-view/%s/%" PRId64 "/%u", edge, start, chunk++);
                r = post(d, key, &body, err, cap);
                body.len = 0;
                nkeys = 0;
            }
            if (!more)
                break;
        }
        if (r == 0) {
            v->meta.fwd_next = start + d->win_ms[0];
            if (save_meta(v) < 0) {
                snprintf(err, cap, "forward: writing the meta entry failed");
                r = -EIO;
            }
        }
    }
    spw_buf_fini(&body);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (r < 0)
        *retry_ms = spw_mono_ms() + RETRY_MS;
    return r < 0 ? r : round == ROUNDS; /* 1: ROUNDS starts sent, more may be final */
}
