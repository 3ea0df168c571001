/*
 * The synchronous client of the C library (spw_client_*): one blocking
 * connection, one request at a time with a deadline — AUTH, FETCH (its
 * records decoded in place in the answer frame; a damaged batch answers
 * with the offset to resume at, spillway_client_resume_offset) and METADATA.
 * Independent of the producer; shares only the address parser.
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
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

/* The public expectations are the wire's (docs/protocol.md). */
_Static_assert((int)SPILLWAY_EXPECT_VERSION_ANY == (int)SPW_EXPECT_ANY && (int)SPILLWAY_EXPECT_VERSION_NONE == (int)SPW_EXPECT_NONE &&
                   (int)SPILLWAY_EXPECT_VERSION_EXISTS == (int)SPW_EXPECT_EXISTS &&
                   (int)SPILLWAY_EXPECT_VERSION_EXACT == (int)SPW_EXPECT_EXACT,
               "public expectations differ from the wire's");

/* ---- synchronous client ---- */

struct spillway_client {
    int fd;
    void *tls_ctx, *ssl; /* spillway_client_connect_tls, else NULL */
    uint32_t timeout_ms;
    uint64_t next_id;
    char last_error[1100];
    uint64_t resume_offset; /* the last error answer's next_offset, 0 if none */
    uint64_t current_version; /* the last version_conflict answer's current version, 0 if none */
};

struct spillway_fetch_result {
    uint8_t *frame;
    spw_fetch_resp resp;
    size_t count;
    spillway_fetched *recs;
};

struct spillway_metadata {
    uint8_t *frame;
    size_t count;
    spillway_stream_info *streams;
    char **names;
    uint64_t *offsets;
};

/* One non-blocking connect to a, waited for up to timeout_ms: the fd, or
 * -errno / SPILLWAY_ERR_TIMEOUT. */
static int connect_one(const struct sockaddr_storage *a, socklen_t len, uint32_t timeout_ms)
{
    int fd = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)a, len) < 0) {
        if (errno != EINPROGRESS) {
            int e = -errno;
            close(fd);
            return e;
        }
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int r = poll(&pf, 1, (int)timeout_ms);
        int err = 0;
        socklen_t el = sizeof err;
        if (r == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (r != 1 || err) {
            close(fd);
            return r == 1 ? -err : SPILLWAY_ERR_TIMEOUT;
        }
    }
    return fd;
}

/* The TLS handshake on the connected fd, within timeout_ms. 0 or
 * SPILLWAY_ERR_TLS / SPILLWAY_ERR_TIMEOUT. */
static int tls_start(spillway_client *c, const char *host, const char *ca_file, uint32_t timeout_ms)
{
    if (!(c->tls_ctx = spw__client_tls_ctx(ca_file)) || !(c->ssl = spw__client_tls_session(c->tls_ctx, c->fd, host)))
        return SPILLWAY_ERR_TLS;
    uint64_t deadline = spw_mono_ms() + (timeout_ms ? timeout_ms : 30000);
    for (;;) {
        int w = spw__client_tls_handshake(c->ssl);
        if (w == 0)
            return 0;
        if (w < 0)
            return SPILLWAY_ERR_TLS;
        uint64_t now = spw_mono_ms();
        if (now >= deadline)
            return SPILLWAY_ERR_TIMEOUT;
        struct pollfd pf = {.fd = c->fd, .events = (short)w};
        if (poll(&pf, 1, (int)(deadline - now)) < 0 && errno != EINTR)
            return -errno;
    }
}

static int client_connect(const char *server, uint32_t timeout_ms, int tls, const char *ca_file,
                          spillway_client **out)
{
    char name[300], host[SPW_CLIENT_HOST_MAX + 1];
    uint16_t port;
    if (!server || !out || spw__client_parse_hostport(server, strlen(server), name, sizeof name, host, &port))
        return SPILLWAY_ERR_INVALID;
    struct sockaddr_storage addrs[SPW_CLIENT_ADDRS_MAX];
    socklen_t lens[SPW_CLIENT_ADDRS_MAX];
    int na = spw__client_resolve(host, port, addrs, lens);
    if (na < 0)
        return na;
    int fd = -1;
    for (int i = 0; i < na && fd < 0; i++) /* each address in the resolver's order */
        fd = connect_one(&addrs[i], lens[i], timeout_ms);
    if (fd < 0)
        return fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    spillway_client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return SPILLWAY_ERR_NOMEM;
    }
    c->fd = fd;
    c->timeout_ms = timeout_ms ? timeout_ms : 30000;
    c->next_id = 1;
    if (tls) {
        int r = tls_start(c, host, ca_file, timeout_ms);
        if (r) {
            spillway_client_close(c);
            return r;
        }
    }
    *out = c;
    return 0;
}

int spillway_client_connect(const char *server, uint32_t timeout_ms, spillway_client **out)
{
    return client_connect(server, timeout_ms, 0, NULL, out);
}

int spillway_client_connect_tls(const char *server, uint32_t timeout_ms, const char *ca_file, spillway_client **out)
{
    return client_connect(server, timeout_ms, 1, ca_file, out);
}

void spillway_client_close(spillway_client *c)
{
    if (!c)
        return;
    if (c->ssl)
        spw__client_tls_free(c->ssl);
    if (c->tls_ctx)
        spw__client_tls_ctx_free(c->tls_ctx);
    close(c->fd);
    free(c);
}

const char *spillway_client_last_error(spillway_client *c) { return c->last_error; }

uint64_t spillway_client_resume_offset(spillway_client *c) { return c->resume_offset; }

uint64_t spillway_client_current_version(spillway_client *c) { return c->current_version; }

static int roundtrip(spillway_client *c, uint8_t op, const spw_buf *body, uint8_t **frame, const uint8_t **rest,
                     size_t *rest_len);

int spillway_client_auth(spillway_client *c, const char *token)
{
    size_t tl = token ? strlen(token) : 0;
    if (!c || tl == 0 || tl > SPW_AUTH_TOKEN_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    if (spw_auth_req_encode(&body, token, tl)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_AUTH, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    const char *tenant, *why;
    uint16_t n;
    r = spw_auth_resp_decode(rest, rl, &tenant, &n, &why) ? SPILLWAY_ERR_PROTOCOL : 0;
    free(frame);
    return r;
}

static int io_wait(spillway_client *c, short ev, uint64_t deadline)
{
    uint64_t now = spw_mono_ms();
    if (now >= deadline)
        return SPILLWAY_ERR_TIMEOUT;
    struct pollfd pf = {.fd = c->fd, .events = ev};
    int r = poll(&pf, 1, (int)(deadline - now));
    return r == 1 ? 0 : r == 0 ? SPILLWAY_ERR_TIMEOUT : -errno;
}

/*
 * Sends body as opcode and reads the answer (one request in flight, so
 * the next frame is ours). On 0, *frame (malloc'ed, caller frees) holds the
 * answer frame and rest/rest_len the OK body after the status.
 */
static int roundtrip(spillway_client *c, uint8_t op, const spw_buf *body, uint8_t **frame, const uint8_t **rest,
                     size_t *rest_len)
{
    c->last_error[0] = 0;
    c->resume_offset = 0;
    c->current_version = 0;
    uint64_t deadline = spw_mono_ms() + c->timeout_ms;
    spw_buf f = SPW_BUF_INIT;
    size_t st;
    uint64_t id = c->next_id++;
    if (spw_frame_begin(&f, op, 0, id, &st) || spw_buf_reserve(&f, f.len + body->len)) {
        spw_buf_fini(&f);
        return SPILLWAY_ERR_NOMEM;
    }
    memcpy(f.p + f.len, body->p, body->len);
    f.len += body->len;
    spw_frame_finish(&f, st);
    size_t off = 0;
    int r = 0;
    while (off < f.len && r == 0) {
        ssize_t w = c->ssl ? spw__client_tls_send(c->ssl, f.p + off, f.len - off)
                           : send(c->fd, f.p + off, f.len - off, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno == EAGAIN)
            r = io_wait(c, POLLOUT, deadline);
        else if (w < 0 && errno != EINTR)
            r = -errno;
    }
    spw_buf_fini(&f);
    if (r)
        return r;
    uint8_t hdr[16];
    size_t have = 0, need = 16;
    uint8_t *buf = hdr;
    spw_frame_hdr h = {0};
    while (have < need) {
        ssize_t n = c->ssl ? spw__client_tls_recv(c->ssl, buf + have, need - have) : recv(c->fd, buf + have, need - have, 0);
        if (n > 0) {
            have += (size_t)n;
            if (buf == hdr && have == 16) {
                if (spw_frame_hdr_decode(hdr, 16, MAX_ANSWER_BYTES, &h) || !(h.flags & SPW_FLAG_RESPONSE))
                    return SPILLWAY_ERR_PROTOCOL;
                buf = malloc(4 + (size_t)h.length);
                if (!buf)
                    return SPILLWAY_ERR_NOMEM;
                memcpy(buf, hdr, 16);
                need = 4 + (size_t)h.length;
            }
            continue;
        }
        if (n == 0)
            r = SPILLWAY_ERR_PROTOCOL; /* closed mid-answer */
        else if (errno == EAGAIN)
            r = io_wait(c, POLLIN, deadline);
        else if (errno != EINTR)
            r = -errno;
        if (r) {
            if (buf != hdr)
                free(buf);
            return r == SPILLWAY_ERR_PROTOCOL && have == 0 ? -ECONNRESET : r;
        }
    }
    uint16_t status;
    spw_frame_error e;
    const char *why;
    if (h.request_id != id || h.opcode != op ||
        spw_answer_decode(buf + 16, need - 16, &status, rest, rest_len, &e, &why)) {
        free(buf);
        return SPILLWAY_ERR_PROTOCOL;
    }
    if (status) {
        snprintf(c->last_error, sizeof c->last_error, "%.*s: %.*s", e.code_len, e.code, e.msg_len, e.msg);
        /* The u64 after the message: a damaged answer's resume offset, or a
         * version_conflict's current version (docs/protocol.md). */
        int conflict = e.code_len == 16 && memcmp(e.code, "version_conflict", 16) == 0;
        c->resume_offset = e.has_next_offset && !conflict ? e.next_offset : 0;
        c->current_version = e.has_next_offset && conflict ? e.next_offset : 0;
        free(buf);
        return -(int)status;
    }
    *frame = buf;
    return 0;
}

int spillway_client_append(spillway_client *c, const char *stream, const void *key, int32_t key_len, const spillway_value *values,
                      uint32_t n, int expect, uint64_t version, int ack, uint64_t *first_version)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!c || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX || key_len < 0 || (key_len > 0 && !key) || !values ||
        n == 0 || expect < SPILLWAY_EXPECT_VERSION_ANY || expect > SPILLWAY_EXPECT_VERSION_EXACT ||
        (ack != SPILLWAY_ACK_LEVEL_DEFAULT && (ack < SPILLWAY_ACK_LEVEL_NONE || ack > SPILLWAY_ACK_LEVEL_REPLICATED)))
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    size_t ca;
    int r = spw_produce_req_begin(&body, stream, sl, (uint8_t)ack, SPW_WIRE_PRIORITY_DEFAULT, SPW_PARTITION_ANY, 0, 0,
                                  &ca);
    for (uint32_t i = 0; r == 0 && i < n; i++) {
        spw_frame_rec fr = {.attrs = SPW_REC_HAS_KEY, .key = key, .key_len = key_len, .value = values[i].p,
                            .value_len = values[i].len};
        r = spw_produce_rec_put(&body, &fr);
    }
    if (r == 0)
        r = spw_produce_req_put_expect(&body, (uint8_t)expect, expect == SPILLWAY_EXPECT_VERSION_EXACT ? version : 0);
    if (r) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    spw_produce_req_set_count(&body, ca, n);
    spw_produce_req_set_flags(&body, ca, SPW_PRODUCE_VERSIONED);
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    r = roundtrip(c, SPW_OP_PRODUCE, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    spw_produce_resp pr;
    const char *why;
    if (spw_produce_resp_decode(rest, rl, &pr, &why) || pr.nrecords != n || !pr.versions) {
        free(frame);
        return SPILLWAY_ERR_PROTOCOL;
    }
    if (first_version)
        *first_version = spw_produce_resp_version(&pr, 0);
    free(frame);
    return 0;
}

struct spillway_history {
    uint8_t *frame;
    uint64_t current, snapshot_version;
    const uint8_t *state;
    uint32_t state_len;
    size_t count;
    spillway_event *events;
};

int spillway_client_history(spillway_client *c, const char *stream, const void *key, int32_t key_len, uint64_t from_version,
                       uint32_t max, spillway_history **out)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!c || !out || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX || !key || key_len <= 0 ||
        (uint32_t)key_len > SPW_KEY_WIRE_MAX || max == 0 || max > SPW_KEY_EVENTS_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    spw_key_events_req q = {.stream = stream, .stream_len = (uint16_t)sl, .key = key, .key_len = (uint32_t)key_len,
                            .from_version = from_version, .max_records = max};
    if (spw_key_events_req_encode(&body, &q)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_KEY_EVENTS, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    spw_key_events_resp kr;
    const char *why;
    spillway_history *h = calloc(1, sizeof *h);
    if (!h || spw_key_events_resp_decode(rest, rl, &kr, &why)) {
        free(h);
        free(frame);
        return h ? SPILLWAY_ERR_PROTOCOL : SPILLWAY_ERR_NOMEM;
    }
    h->frame = frame;
    h->current = kr.current_version;
    h->snapshot_version = kr.snapshot_version;
    h->state = kr.state;
    h->state_len = kr.state_len;
    h->count = kr.count;
    h->events = calloc(kr.count ? kr.count : 1, sizeof *h->events);
    if (!h->events) {
        free(frame);
        free(h);
        return SPILLWAY_ERR_NOMEM;
    }
    spw_key_event e;
    for (size_t i = 0; spw_key_events_next(&kr, &e); i++)
        h->events[i] = (spillway_event){.version = e.version, .offset = e.offset, .ts = e.ts, .value = e.value,
                                   .value_len = e.value_len};
    *out = h;
    return 0;
}

uint64_t spillway_history_current_version(const spillway_history *h) { return h->current; }

uint64_t spillway_history_snapshot(const spillway_history *h, const void **state, uint32_t *state_len)
{
    if (state)
        *state = h->state;
    if (state_len)
        *state_len = h->state_len;
    return h->snapshot_version;
}

size_t spillway_history_count(const spillway_history *h) { return h->count; }

void spillway_history_get(const spillway_history *h, size_t i, spillway_event *out) { *out = h->events[i]; }

void spillway_history_free(spillway_history *h)
{
    if (!h)
        return;
    free(h->events);
    free(h->frame);
    free(h);
}

int spillway_client_snapshot_put(spillway_client *c, const char *stream, const void *key, int32_t key_len, uint64_t version,
                            const void *state, uint32_t state_len)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!c || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX || !key || key_len <= 0 ||
        (uint32_t)key_len > SPW_KEY_WIRE_MAX || !state || state_len == 0 || state_len > SPW_SNAPSHOT_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    spw_snapshot_put_req q = {.stream = stream, .stream_len = (uint16_t)sl, .key = key, .key_len = (uint32_t)key_len,
                              .version = version, .state = state, .state_len = state_len};
    if (spw_snapshot_put_req_encode(&body, &q)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_SNAPSHOT_PUT, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    r = rl == 0 ? 0 : SPILLWAY_ERR_PROTOCOL;
    free(frame);
    return r;
}

int spillway_client_fetch(spillway_client *c, const char *stream, uint32_t partition, uint64_t offset, uint32_t max_bytes,
                     spillway_fetch_result **out)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!c || !out || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    spw_fetch_req q = {.stream = stream, .stream_len = (uint16_t)sl, .partition = partition, .offset = offset,
                       .max_bytes = max_bytes, .mode = SPW_FETCH_RECORDS};
    if (spw_fetch_req_encode(&body, &q)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_FETCH, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    spillway_fetch_result *res = calloc(1, sizeof *res);
    const char *why;
    if (!res || spw_fetch_resp_decode(rest, rl, &res->resp, &why) || res->resp.mode != SPW_FETCH_RECORDS) {
        free(res);
        free(frame);
        return res ? SPILLWAY_ERR_PROTOCOL : SPILLWAY_ERR_NOMEM;
    }
    res->frame = frame;
    res->count = res->resp.count;
    res->recs = calloc(res->count ? res->count : 1, sizeof *res->recs);
    if (!res->recs) {
        free(frame);
        free(res);
        return SPILLWAY_ERR_NOMEM;
    }
    spw_fetch_iter it;
    spw_fetch_rec fr;
    spw_fetch_iter_init(&it, &res->resp);
    for (size_t i = 0; i < res->count && spw_fetch_iter_next(&it, &fr); i++)
        res->recs[i] = (spillway_fetched){fr.offset, fr.id, fr.ts, fr.key, fr.key_len, fr.value, fr.value_len};
    *out = res;
    return 0;
}

size_t spillway_fetch_count(const spillway_fetch_result *r) { return r->count; }
void spillway_fetch_get(const spillway_fetch_result *r, size_t i, spillway_fetched *out) { *out = r->recs[i]; }
uint64_t spillway_fetch_next_offset(const spillway_fetch_result *r) { return r->resp.next_offset; }
uint64_t spillway_fetch_end_offset(const spillway_fetch_result *r) { return r->resp.end_offset; }

void spillway_fetch_free(spillway_fetch_result *r)
{
    if (!r)
        return;
    free(r->recs);
    free(r->frame);
    free(r);
}

int spillway_client_metadata(spillway_client *c, const char *stream, spillway_metadata **out)
{
    size_t sl = stream ? strlen(stream) : 0;
    if (!c || !out || sl > SPW_STREAM_NAME_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    if (spw_metadata_req_encode(&body, stream ? stream : "", sl)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_METADATA, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    spw_metadata_resp mr;
    const char *why;
    if (spw_metadata_resp_decode(rest, rl, &mr, &why)) {
        free(frame);
        return SPILLWAY_ERR_PROTOCOL;
    }
    spillway_metadata *m = calloc(1, sizeof *m);
    size_t total_parts = 0;
    spw_metadata_resp scan = mr;
    spw_meta_stream ms;
    while (spw_metadata_resp_next(&scan, &ms))
        total_parts += ms.partitions;
    if (m) {
        m->count = mr.nstreams;
        m->streams = calloc(m->count ? m->count : 1, sizeof *m->streams);
        m->names = calloc(m->count ? m->count : 1, sizeof *m->names);
        m->offsets = calloc(total_parts ? total_parts * 3 : 1, sizeof *m->offsets);
    }
    if (!m || !m->streams || !m->names || !m->offsets) {
        spillway_metadata_free(m);
        free(frame);
        return SPILLWAY_ERR_NOMEM;
    }
    m->frame = frame;
    size_t at = 0;
    for (size_t i = 0; i < m->count && spw_metadata_resp_next(&mr, &ms); i++) {
        m->names[i] = malloc((size_t)ms.name_len + 1);
        if (!m->names[i]) {
            spillway_metadata_free(m);
            return SPILLWAY_ERR_NOMEM;
        }
        memcpy(m->names[i], ms.name, ms.name_len);
        m->names[i][ms.name_len] = 0;
        spillway_stream_info *si = &m->streams[i];
        si->name = m->names[i];
        si->partitions = ms.partitions;
        si->format_bytes = ms.format_bytes;
        si->ack = ms.ack;
        uint64_t *so = m->offsets + at * 3;
        si->start_offsets = so;
        si->end_offsets = so + ms.partitions;
        si->durable_offsets = so + 2 * (size_t)ms.partitions;
        for (uint32_t k = 0; k < ms.partitions; k++) {
            spw_meta_part mp;
            spw_meta_part_get(&ms, k, &mp);
            so[k] = mp.start_offset;
            so[ms.partitions + k] = mp.end_offset;
            so[2 * (size_t)ms.partitions + k] = mp.durable_offset;
        }
        at += ms.partitions;
    }
    *out = m;
    return 0;
}

size_t spillway_metadata_count(const spillway_metadata *m) { return m->count; }

int spillway_metadata_stream(const spillway_metadata *m, size_t i, spillway_stream_info *out)
{
    if (i >= m->count)
        return SPILLWAY_ERR_INVALID;
    *out = m->streams[i];
    return 0;
}

void spillway_metadata_free(spillway_metadata *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->names && i < m->count; i++)
        free(m->names[i]);
    free(m->names);
    free(m->streams);
    free(m->offsets);
    free(m->frame);
    free(m);
}

/* ---- streams: STREAM_CREATE, STREAM_DESCRIBE ---- */

/* An answer's JSON document (jl bytes at j, inside frame) as a malloc'ed
 * NUL-terminated string in *json (its length in *json_len if asked);
 * frees frame either way. 0 or SPILLWAY_ERR_NOMEM. */
static int json_answer(uint8_t *frame, const void *j, uint32_t jl, char **json, size_t *json_len)
{
    char *out = malloc((size_t)jl + 1);
    if (out) {
        memcpy(out, j, jl);
        out[jl] = 0;
    }
    free(frame);
    if (!out)
        return SPILLWAY_ERR_NOMEM;
    *json = out;
    if (json_len)
        *json_len = jl;
    return 0;
}

int spillway_client_create_stream(spillway_client *c, const char *name, const char *definition, int *created)
{
    size_t nl = name ? strlen(name) : 0;
    if (!definition || !definition[0])
        definition = "{}";
    size_t dl = strlen(definition);
    if (!c || nl == 0 || nl > SPW_STREAM_NAME_WIRE_MAX || dl > SPW_STREAM_DEF_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    if (spw_stream_create_req_encode(&body, name, nl, definition, dl)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, SPW_OP_STREAM_CREATE, &body, &frame, &rest, &rl);
    spw_buf_fini(&body);
    if (r)
        return r;
    uint8_t cr;
    const char *json, *why;
    uint32_t jl;
    r = spw_stream_create_resp_decode(rest, rl, &cr, &json, &jl, &why) ? SPILLWAY_ERR_PROTOCOL : 0;
    if (r == 0 && created)
        *created = cr;
    free(frame);
    return r;
}

/* Sends body as op and takes the answer's JSON document (the
 * STREAM_DESCRIBE answer layout, which GROUP_LIST and GROUP_RESET share:
 * docs/protocol.md). Frees body. */
static int json_roundtrip(spillway_client *c, uint8_t op, spw_buf *body, char **json)
{
    uint8_t *frame;
    const uint8_t *rest;
    size_t rl;
    int r = roundtrip(c, op, body, &frame, &rest, &rl);
    spw_buf_fini(body);
    if (r)
        return r;
    const char *j, *why;
    uint32_t jl;
    if (spw_stream_describe_resp_decode(rest, rl, &j, &jl, &why)) {
        free(frame);
        return SPILLWAY_ERR_PROTOCOL;
    }
    return json_answer(frame, j, jl, json, NULL);
}

/* A request of one stream name (STREAM_DESCRIBE, GROUP_LIST). */
static int name_json_roundtrip(spillway_client *c, uint8_t op, const char *name, char **json)
{
    size_t nl = name ? strlen(name) : 0;
    if (!c || !json || nl == 0 || nl > SPW_STREAM_NAME_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    if (spw_stream_describe_req_encode(&body, name, nl)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    return json_roundtrip(c, op, &body, json);
}

int spillway_client_describe_stream(spillway_client *c, const char *name, char **json)
{
    return name_json_roundtrip(c, SPW_OP_STREAM_DESCRIBE, name, json);
}

int spillway_client_list_groups(spillway_client *c, const char *stream, char **json)
{
    return name_json_roundtrip(c, SPW_OP_GROUP_LIST, stream, json);
}

int spillway_client_reset_group(spillway_client *c, const char *stream, const char *group, const char *reset,
                                char **json)
{
    size_t sl = stream ? strlen(stream) : 0, gl = group ? strlen(group) : 0, rl0 = reset ? strlen(reset) : 0;
    if (!c || !json || sl == 0 || sl > SPW_STREAM_NAME_WIRE_MAX || gl == 0 || gl > SPW_GROUP_WIRE_MAX || rl0 == 0 ||
        rl0 > SPW_GROUP_RESET_BODY_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_buf body = SPW_BUF_INIT;
    if (spw_greset_req_encode(&body, stream, sl, group, gl, reset, rl0)) {
        spw_buf_fini(&body);
        return SPILLWAY_ERR_NOMEM;
    }
    return json_roundtrip(c, SPW_OP_GROUP_RESET, &body, json);
}

/* ---- views: VIEW_READ ---- */

static int view_read(spillway_client *c, spw_view_read_req *q, const char *view, const char *window, const char *by,
                     const spillway_view_min *min, uint32_t n_min, uint32_t wait_ms, char **json, size_t *json_len)
{
    size_t vl = view ? strlen(view) : 0, wl = window ? strlen(window) : 0, bl = by ? strlen(by) : 0;
    if (!c || !json || vl == 0 || vl > SPW_STREAM_NAME_WIRE_MAX || wl > SPW_VIEW_WORD_WIRE_MAX ||
        bl > SPW_VIEW_WORD_WIRE_MAX || n_min > SPW_VIEW_MIN_WIRE_MAX || (n_min && !min) ||
        wait_ms > SPW_VIEW_WAIT_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    q->view = view;
    q->view_len = (uint16_t)vl;
    q->window = window;
    q->window_len = (uint8_t)wl;
    q->by = by;
    q->by_len = (uint8_t)bl;
    q->wait_ms = wait_ms;
    q->nmin = (uint16_t)n_min;
    uint32_t *parts = malloc((n_min ? n_min : 1) * sizeof *parts);
    uint64_t *offs = malloc((n_min ? n_min : 1) * sizeof *offs);
    spw_buf body = SPW_BUF_INIT;
    int r = parts && offs ? 0 : SPILLWAY_ERR_NOMEM;
    for (uint32_t i = 0; r == 0 && i < n_min; i++) {
        parts[i] = min[i].partition;
        offs[i] = min[i].offset;
    }
    if (r == 0 && spw_view_read_req_encode(&body, q, parts, offs))
        r = SPILLWAY_ERR_NOMEM;
    free(parts);
    free(offs);
    uint8_t *frame = NULL;
    const uint8_t *rest;
    size_t rl;
    if (r == 0) {
        uint32_t t = c->timeout_ms;
        c->timeout_ms = t + wait_ms; /* the server answers after its wait */
        r = roundtrip(c, SPW_OP_VIEW_READ, &body, &frame, &rest, &rl);
        c->timeout_ms = t;
    }
    spw_buf_fini(&body);
    if (r)
        return r;
    const uint8_t *j;
    uint32_t jl;
    const char *why;
    if (spw_view_read_resp_decode(rest, rl, &j, &jl, &why)) {
        free(frame);
        return SPILLWAY_ERR_PROTOCOL;
    }
    return json_answer(frame, j, jl, json, json_len);
}

int spillway_client_view_get(spillway_client *c, const char *view, const void *key, uint32_t key_len,
                             const spillway_view_min *min, uint32_t n_min, uint32_t wait_ms, char **json,
                             size_t *json_len)
{
    if (!key || key_len == 0 || key_len > SPW_KEY_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_view_read_req q = {.what = SPW_VIEW_READ_KEY, .key = key, .key_len = key_len, .from = SPW_VIEW_TIME_DEFAULT,
                           .to = SPW_VIEW_TIME_DEFAULT, .at = SPW_VIEW_TIME_DEFAULT};
    return view_read(c, &q, view, NULL, NULL, min, n_min, wait_ms, json, json_len);
}

int spillway_client_view_series(spillway_client *c, const char *view, const void *key, uint32_t key_len,
                                const char *window, int64_t from, int64_t to, const spillway_view_min *min,
                                uint32_t n_min, uint32_t wait_ms, char **json, size_t *json_len)
{
    if (!key || key_len == 0 || key_len > SPW_KEY_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_view_read_req q = {.what = SPW_VIEW_READ_SERIES, .key = key, .key_len = key_len, .from = from, .to = to,
                           .at = SPW_VIEW_TIME_DEFAULT};
    return view_read(c, &q, view, window, NULL, min, n_min, wait_ms, json, json_len);
}

int spillway_client_view_top(spillway_client *c, const char *view, const char *window, int64_t at, const char *by,
                             uint32_t n, const spillway_view_min *min, uint32_t n_min, uint32_t wait_ms, char **json,
                             size_t *json_len)
{
    if (n > SPW_VIEW_TOP_WIRE_MAX)
        return SPILLWAY_ERR_INVALID;
    spw_view_read_req q = {.what = SPW_VIEW_READ_TOP, .from = SPW_VIEW_TIME_DEFAULT, .to = SPW_VIEW_TIME_DEFAULT,
                           .at = at, .n = n};
    return view_read(c, &q, view, window, by, min, n_min, wait_ms, json, json_len);
}

void spillway_view_json_free(char *json) { free(json); }
