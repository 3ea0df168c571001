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

/* A final bucket of the smallest window, to send: its start, its view
 * key (koff into an arena) and the order it was read in (key order). */
typedef struct fwd_b {
    int64_t start;
    size_t koff;
    uint32_t klen, seq;
    view_agg a;
} fwd_b;

static int fwd_cmp(const void *x, const void *y)
{
    const fwd_b *a = x, *b = y;
    if (a->start != b->start)
        return a->start < b->start ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Scans the page entries of one page start (prefix, 9 bytes): the
 * smallest window's buckets starting in [lo, hi] — into *out when out,
 * else only the smallest such start into *min. 0, or SPW_ECORRUPT. */
static int scan_page(rocksdb_iterator_t *it, const uint8_t *prefix, int64_t lo, int64_t hi, int64_t w0, int64_t *min,
                     fwd_b **out, uint32_t *n, uint32_t *cap, spw_buf *keys)
{
    int64_t ps = spw__view_key_start(prefix + 1);
    for (rocksdb_iter_seek(it, (const char *)prefix, 9); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl < 9 || memcmp(k, prefix, 9) != 0)
            break;
        const char *vv = rocksdb_iter_value(it, &vl);
        if (spw__view_page_check(vv, vl) < 0)
            return SPW_ECORRUPT;
        uint32_t first = lo > ps ? (uint32_t)((lo - ps) / w0) : 0;
        for (size_t i = spw__view_page_find(vv, vl, 0, first); i < vl / VIEW_SUB_LEN; i++) {
            int level;
            uint32_t idx;
            view_agg a;
            spw__view_page_sub(vv, i, &level, &idx, &a);
            int64_t start = ps + (int64_t)idx * w0;
            if (level != 0 || start > hi)
                break;
            if (start < lo)
                continue;
            if (!out) {
                if (start < *min)
                    *min = start;
                break; /* a key's later buckets start later */
            }
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                *out = spw_xrealloc(*out, *cap * sizeof **out);
            }
            (*out)[*n] = (fwd_b){start, keys->len, (uint32_t)(kl - 9), *n, a};
            (*n)++;
            if (spw_buf_put(keys, k + 9, kl - 9))
                abort();
        }
    }
    return 0;
}

/*
 * The smallest window's buckets live in page entries ('P' start KEY,
 * docs/formats/view.md), the pages of one start adjacent: a call finds
 * the first page at or after the next start to send (fwd_next), the
 * smallest final start in it, and sends that start and the next ones of
 * the page (ROUNDS starts at most), each in key order, each start's
 * fwd_next stored once the other node took it. A page with no final
 * bucket at or after fwd_next is passed over (a final bucket that does
 * not exist never will: a record for it would be late).
 */
int spw__view_forward(spw_view *v, uint64_t *retry_ms, char *err, size_t cap)
{
    const view_def *d = &v->def;
    if (!d->fwd_host[0] || spw_mono_ms() < *retry_ms || !v->s)
        return 0;
    int64_t wm = spw__view_watermark(&v->meta);
    if (wm == INT64_MIN)
        return 0;
    int64_t w0 = d->win_ms[0], wp = d->win_ms[d->page_level];
    int64_t limit = wm - w0 - d->grace_ms; /* buckets starting at or before it are final */
    char edge[SPW_STREAM_NAME_MAX + 32];
    snprintf(edge, sizeof edge, "%s.%" PRIu64, d->name, v->s->incarnation);
    uint8_t lo[9], hi[1] = {VIEW_P_PAGE + 1};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, 1);
    rocksdb_iterator_t *it = rocksdb_create_iterator(v->db, ro);
    spw_buf body = SPW_BUF_INIT, keys = SPW_BUF_INIT;
    fwd_b *bs = NULL;
    uint32_t nb = 0, bcap = 0;
    int r = 0, round = 0;
    int64_t from = v->meta.fwd_next == INT64_MIN ? -VIEW_TIME_MAX - (1LL << 60) : v->meta.fwd_next;
    for (int pages = 0; round < ROUNDS && r == 0 && from <= limit && pages < ROUNDS; pages++) {
        spw__view_page_key(lo, spw__view_floor(from, wp), NULL, 0);
        rocksdb_iter_seek(it, (const char *)lo, 9);
        if (!rocksdb_iter_valid(it))
            break;
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl < 9 || k[0] != VIEW_P_PAGE)
            break;
        int64_t ps = spw__view_key_start(k + 1);
        if (ps > limit)
            break;
        memcpy(lo, k, 9); /* this page start's prefix */
        int64_t min = INT64_MAX;
        if ((r = scan_page(it, lo, from, limit, w0, &min, NULL, NULL, NULL, NULL)) < 0)
            break;
        if (min == INT64_MAX) { /* nothing final left in this page */
            from = ps + wp;
            continue;
        }
        int64_t hi_start = min + (int64_t)(ROUNDS - round - 1) * w0;
        nb = 0;
        keys.len = 0;
        if ((r = scan_page(it, lo, min, hi_start < limit ? hi_start : limit, w0, NULL, &bs, &nb, &bcap, &keys)) < 0)
            break;
        qsort(bs, nb, sizeof *bs, fwd_cmp);
        for (uint32_t i = 0; i < nb && r == 0;) {
            int64_t start = bs[i].start;
            uint32_t chunk = 0;
            while (i < nb && bs[i].start == start && r == 0) {
                body.len = 0;
                for (uint32_t c = 0; c < CHUNK_KEYS && i < nb && bs[i].start == start; c++, i++)
                    line(&body, d, (const char *)keys.p + bs[i].koff, bs[i].klen, start, &bs[i].a);
                char key[SPW_STREAM_NAME_MAX + 96];
                snprintf(key, sizeof key, "spillway-view/%s/%" PRId64 "/%u", edge, start, chunk++);
                r = post(d, key, &body, err, cap);
            }
            if (r == 0) {
                v->meta.fwd_next = start + w0;
                from = start + w0;
                round++;
                if (save_meta(v) < 0) {
                    snprintf(err, cap, "forward: writing the meta entry failed");
                    r = -EIO;
                }
            }
        }
    }
    if (r == SPW_ECORRUPT)
        snprintf(err, cap, "forward: a page entry is damaged");
    spw_free(bs);
    spw_buf_fini(&keys);
    spw_buf_fini(&body);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (r < 0)
        *retry_ms = spw_mono_ms() + RETRY_MS;
    return r < 0 ? r : round == ROUNDS; /* 1: ROUNDS starts sent, more may be final */
}
