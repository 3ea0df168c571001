/*
 * The consumer-group endpoints over HTTP (docs/api.md, "Consumer groups"):
 * decoding of the requests and encoding of the answers; the service behind
 * them (parking, leases, the commit queue, the waiter) is svc/consume.c.
 */
#include "http/groups_http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/name.h"
#include "core/error.h"
#include "core/id.h"
#include "core/json.h"
#include "core/msg.h"
#include "http/api.h"
#include "http/auth_http.h"
#include "svc/group_admin.h"
#include "svc/request.h"
#include "catalog/groups.h"

#define COMMIT_BODY_MAX 4096

/* An HTTP commit's answer. */
typedef struct hcommit {
    spw_http_req *req;
    uint32_t partition;
    uint64_t offset;
} hcommit;

static int64_t now_ms(void) { return (int64_t)spw_mono_ms(); }

/* ---- HTTP poll ---- */

static void http_post(void *loop, void (*fn)(void *), void *arg) { spw_http_loop_post(loop, fn, arg); }

static void http_nothing(spw_group_poll *p);

/* spw_consume_read_lease's read: NDJSON lines as GET .../events has them. */
typedef struct ndjson_read {
    spw_stream *s;
    uint32_t partition, max;
    uint64_t max_bytes;
    spw_buf *out;
} ndjson_read;

static int read_ndjson(void *arg, uint64_t from, uint64_t *next, uint64_t *bad)
{
    ndjson_read *rd = arg;
    rd->out->len = 0;
    return spw_api_read_ndjson(rd->s, rd->partition, from, rd->max, rd->max_bytes, rd->out, next, bad);
}

/* An HTTP poll: the service's poll, and what its lease read (http_read,
 * on an I/O worker, or in http_deliver). */
typedef struct hpoll {
    spw_group_poll p; /* first: the service frees it as a spw_group_poll */
    spw_buf out;
    int r, read_done;
    uint64_t next, bad;
} hpoll;

static void http_read(spw_group_poll *p, spw_lease *l)
{
    hpoll *h = (hpoll *)p;
    ndjson_read rd = {p->s, l->partition, p->max, p->max_bytes, &h->out};
    h->r = spw_consume_read_lease(p, l, read_ndjson, &rd, &h->next, &h->bad);
    h->read_done = 1;
}

static void http_deliver(spw_group_poll *p, spw_lease *l)
{
    spw_http_req *req = p->ctx;
    hpoll *hp = (hpoll *)p;
    if (spw_http_req_gone(req)) {
        /* nobody to deliver to: free for the others at once, not after lease_ms */
        spw_group_release(p->g, l);
        spw_buf_fini(&hp->out);
        spw_http_respond(req, 204, NULL, NULL, NULL, 0); /* dropped; frees req */
        return;
    }
    if (!hp->read_done)
        http_read(p, l);
    spw_buf out = hp->out;
    hp->out = (spw_buf)SPW_BUF_INIT;
    uint64_t next = hp->next, bad = hp->bad;
    int r = hp->r;
    if (r == 0) { /* nothing readable after the damage yet */
        spw_group_release(p->g, l);
        spw_buf_fini(&out);
        http_nothing(p);
        return;
    }
    if (r <= 0) {
        spw_group_release(p->g, l);
        spw_buf_fini(&out);
        char hn[64];
        snprintf(hn, sizeof hn, "Spillway-Next-Offset: %" PRIu64 "\r\n", bad);
        if (r == SPW_ECORRUPT && bad > l->from)
            spw_http_answer(req, SPW_SC_DAMAGED, hn,
                            "partition %" PRIu32 " offsets %" PRIu64 "..%" PRIu64
                            " are damaged on disk (run spillway check); reading can resume at offset %" PRIu64,
                            l->partition, l->from, bad - 1, bad);
        else
            spw_http_answer(req, spw_sc_read(r), NULL, "reading partition %" PRIu32 " at %" PRIu64 ": %s",
                            l->partition, l->from, r ? spw_strerror(r) : "no records");
        return;
    }
    spw_group_lease_delivered(p->g, l, next);
    l->to = next;
    char lease[48], h[384];
    spw_lease_format(l, lease, sizeof lease);
    snprintf(h, sizeof h,
             "Spillway-Lease: %s\r\nSpillway-Partition: %" PRIu32 "\r\nSpillway-First-Offset: %" PRIu64
             "\r\nSpillway-Next-Offset: %" PRIu64 "\r\nSpillway-Lease-Ms: %" PRIu32 "\r\n",
             lease, l->partition, l->from, next, p->lease_ms);
    spw_http_respond(req, 200, h, "application/x-ndjson", out.p, out.len);
    spw_buf_fini(&out);
}

/* The answer's room in the budget of unsent answers (docs/operations.md
 * "Memory"), reserved before the lease is read, as GET .../events does at
 * dispatch; given back when the request is answered. */
static uint64_t http_reserve(spw_group_poll *p, uint64_t want)
{
    spw_http_req *req = p->ctx;
    if (spw_http_req_gone(req))
        return want; /* nobody to answer: deliver gives the lease back */
    return spw_http_req_out_reserve(req, want);
}

/* The budget is spent: the lease went back at once, for a later poll. */
static void http_busy(spw_group_poll *p)
{
    spw_http_answer(p->ctx, SPW_SC_OVERLOADED, "Retry-After: 1\r\n",
                    "the server's memory for unsent answers (max-unsent-bytes) is spent on clients that do not "
                    "read theirs; retry later");
}

static void http_failed(spw_group_poll *p, int err)
{
    spw_http_answer(p->ctx, SPW_SC_SAVE_FAILED, NULL, "saving the new group: %s", spw_strerror(err));
}

static void http_nothing(spw_group_poll *p) { spw_http_respond(p->ctx, 204, NULL, NULL, NULL, 0); }

/* Reads an optional bounded integer parameter: 0 ok (*v set or left at
 * its default), -1 after answering 400. */
static int param(spw_http_req *req, const char *name, uint64_t lo, uint64_t hi, uint64_t *v)
{
    int r = spw__api_query_u64(req->query, name, v);
    if (r < 0 || (r > 0 && (*v < lo || *v > hi))) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "%s must be an integer from %" PRIu64 " to %" PRIu64, name,
                        lo, hi);
        return -1;
    }
    return 0;
}

static void handle_poll(spw_consume *cs, spw_http_req *req, spw_stream *s, const char *gname)
{
    uint64_t max = SPW_GROUP_POLL_MAX_DEFAULT, wait = 0, lease = SPW_GROUP_LEASE_MS_DEFAULT;
    if (param(req, "max", 1, SPW_GROUP_POLL_MAX_MAX, &max) || param(req, "wait_ms", 0, SPW_GROUP_WAIT_MS_MAX, &wait) ||
        param(req, "lease_ms", SPW_GROUP_LEASE_MS_MIN, SPW_GROUP_LEASE_MS_MAX, &lease))
        goto fail;
    char start[16] = "earliest", member[SPW_GROUP_MEMBER_MAX + 1];
    int r = spw__api_query_str(req->query, "start", start, sizeof start);
    if (r < 0 || (strcmp(start, "earliest") && strcmp(start, "latest"))) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "start must be earliest or latest");
        goto fail;
    }
    r = spw__api_query_str(req->query, "member", member, sizeof member);
    if (r < 0 || (r > 0 && !spw_group_member_ok(member, strlen(member)))) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL,
                        "member must be 1 to 64 " SPW_NAME_CHARS);
        goto fail;
    }
    if (r == 0)
        snprintf(member, sizeof member, "%s", req->peer[0] ? req->peer : "anonymous");
    spw_group *g;
    int fresh = 0;
    int e = spw_consume_poll_group(cs, s, gname, strcmp(start, "latest") == 0, &g, &fresh);
    if (e == -E2BIG) {
        spw_http_answer(req, SPW_SC_TOO_MANY_PARTITIONS, NULL, "consumer groups need at most %d partitions",
                        SPW_GROUP_PARTS_MAX);
        goto fail;
    }
    if (e < 0) {
        spw_http_answer(req, SPW_SC_SAVE_FAILED, NULL, "saving the new group: %s", spw_strerror(e));
        goto fail;
    }
    spw_http_req_release_body(req);
    hpoll *hp = spw_xcalloc(1, sizeof *hp);
    hp->out = (spw_buf)SPW_BUF_INIT;
    spw_group_poll *p = &hp->p;
    p->post = http_post;
    p->loop = req->loop;
    p->deliver = http_deliver;
    p->read = http_read;
    p->reserve = http_reserve;
    p->busy = http_busy;
    p->max_bytes = SPW_API_READ_MAX_BYTES;
    p->failed = http_failed;
    p->fresh = fresh;
    p->nothing = http_nothing;
    p->ctx = req;
    p->s = s;
    p->g = g;
    p->max = (uint32_t)max;
    p->lease_ms = (uint32_t)lease;
    p->deadline_ms = now_ms() + (int64_t)wait;
    snprintf(p->member, sizeof p->member, "%s", member);
    spw_consume_poll(cs, p);
    return;
fail:
    spw_stream_put(s);
}

/* ---- commit ---- */

static void http_commit_answer(void *arg, int err)
{
    hcommit *c = arg;
    if (err < 0) {
        spw_http_answer(c->req, SPW_SC_SAVE_FAILED, NULL,
                        "the commit was applied but writing the group's offsets file failed: %s", spw_strerror(err));
    } else {
        char j[128];
        snprintf(j, sizeof j, "{\"partition\":%" PRIu32 ",\"committed\":%" PRIu64 "}\n", c->partition, c->offset);
        spw_http_respond(c->req, 200, NULL, "application/json", j, strlen(j));
    }
    spw_free(c);
}

static void handle_commit(spw_consume *cs, spw_http_req *req, spw_stream *s, const char *gname)
{
    spw_group *g = spw_group_find(spw_consume_groups(cs), s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    spw_stream_put(s);
    if (!g) {
        spw_http_answer(req, SPW_SC_NO_SUCH_GROUP, NULL, "no consumer group named %s", gname);
        return;
    }
    const char *p = (const char *)req->body.p, *end = p + req->body.len, *vend;
    spw_json_span v, k, val, lease_v = {0}, off_v = {0};
    spw_json_error e;
    if (req->body.len == 0 || req->body.len > COMMIT_BODY_MAX || spw_json_scan(p, end, NULL, 0, &v, &vend, &e) < 0) {
        spw_http_answer(req, SPW_SC_BAD_JSON, NULL, "the body must be {\"lease\":\"...\",\"offset\":N}");
        return;
    }
    while (p < vend && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    if (*p != '{') {
        spw_http_answer(req, SPW_SC_BAD_JSON, NULL, "the body must be {\"lease\":\"...\",\"offset\":N}");
        return;
    }
    spw_json_span obj = {p, (size_t)(vend - p), SPW_JSON_OBJECT};
    spw_json_iter it;
    spw_json_iter_init(&it, &obj);
    while (spw_json_iter_next(&it, &k, &val)) {
        if (spw_json_str_eq(&k, "lease"))
            lease_v = val;
        else if (spw_json_str_eq(&k, "offset"))
            off_v = val;
    }
    uint32_t part;
    uint64_t id, offset = 0;
    if (lease_v.type != SPW_JSON_STRING || lease_v.n < 2 ||
        spw_lease_parse(lease_v.p + 1, lease_v.n - 2, &part, &id) < 0) {
        spw_http_answer(req, SPW_SC_BAD_LEASE, NULL, "lease must be the string a poll returned in Spillway-Lease");
        return;
    }
    int ok = off_v.type == SPW_JSON_NUMBER && off_v.n > 0 && off_v.n <= 20;
    for (size_t i = 0; ok && i < off_v.n; i++) {
        char c = off_v.p[i];
        ok = c >= '0' && c <= '9' && offset <= (UINT64_MAX - 9) / 10;
        offset = offset * 10 + (uint64_t)(c - '0');
    }
    if (!ok) {
        spw_http_answer(req, SPW_SC_BAD_OFFSET, NULL,
                        "offset must be a non-negative integer (the next offset to read)");
        return;
    }
    int r = spw_group_commit(g, part, id, offset, now_ms());
    if (r == -ESTALE || r == -EINVAL) {
        spw_http_answer(req, SPW_SC_STALE_LEASE, NULL,
                        "lease %.*s is not held (already committed, expired and taken over, or from before a "
                        "restart): poll again",
                        (int)(lease_v.n - 2), lease_v.p + 1);
        return;
    }
    if (r == -ETIME) {
        spw_http_answer(req, SPW_SC_LEASE_EXPIRED, NULL,
                        "lease %.*s expired: its records will be delivered again; poll again", (int)(lease_v.n - 2),
                        lease_v.p + 1);
        return;
    }
    if (r == -ERANGE) {
        spw_http_answer(req, SPW_SC_BAD_OFFSET, NULL,
                        "offset %" PRIu64 " is outside the lease's records (commit from its Spillway-First-Offset to "
                        "its Spillway-Next-Offset)",
                        offset);
        return;
    }
    spw_http_req_release_body(req);
    hcommit *c = spw_xcalloc(1, sizeof *c);
    c->req = req;
    c->partition = part;
    c->offset = offset;
    spw_consume_commit_saved(cs, g, http_post, req->loop, http_commit_answer, c);
}

/* ---- GET ---- */

static void handle_get(spw_consume *cs, spw_http_req *req, spw_stream *s, const char *gname)
{
    spw_group *g = spw_group_find(spw_consume_groups(cs), s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    if (!g) {
        spw_stream_put(s);
        spw_http_answer(req, SPW_SC_NO_SUCH_GROUP, NULL, "no consumer group named %s", gname);
        return;
    }
    spw_consume_part *v;
    uint32_t n = spw_consume_view(s, g, &v);
    spw_buf b = SPW_BUF_INIT;
    spw_buf_xprintf(&b, "{\"stream\":\"%s\",\"group\":\"%s\",\"partitions\":[", s->cfg.name, gname);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        total += v[i].lag;
        spw_buf_xprintf(&b, "%s{\"partition\":%" PRIu32 ",\"committed\":%" PRIu64 ",\"end\":%" PRIu64 ",\"lag\":%" PRIu64,
              i ? "," : "", i, v[i].info.committed, v[i].end, v[i].lag);
        if (v[i].info.held)
            spw_buf_xprintf(&b, ",\"holder\":\"%s\",\"lease_ms_left\":%" PRId64 "}", v[i].info.holder,
                  v[i].info.lease_left_ms);
        else
            spw_buf_xprintf(&b, ",\"holder\":null}");
    }
    spw_buf_xprintf(&b, "],\"lag\":%" PRIu64 "}\n", total);
    spw_http_respond(req, 200, NULL, "application/json", b.p, b.len);
    spw_buf_fini(&b);
    spw_free(v);
    spw_stream_put(s);
}

/* ---- list and reset ---- */

static void handle_list(spw_consume *cs, spw_http_req *req, spw_stream *s)
{
    spw_buf b = SPW_BUF_INIT;
    spw_svc_groups_list_json(cs, s, &b);
    spw_buf_xprintf(&b, "\n");
    spw_http_respond(req, 200, NULL, "application/json", b.p, b.len);
    spw_buf_fini(&b);
    spw_stream_put(s);
}

typedef struct hreset {
    spw_http_req *req;
    spw_buf answer;
} hreset;

static void http_reset_answer(void *arg, int err)
{
    hreset *h = arg;
    if (err < 0)
        spw_http_answer(h->req, SPW_SC_SAVE_FAILED, NULL,
                        "the reset was applied but writing the group's offsets file failed: %s", spw_strerror(err));
    else
        spw_http_respond(h->req, 200, NULL, "application/json", h->answer.p, h->answer.len);
    spw_buf_fini(&h->answer);
    spw_free(h);
}

/* POST .../groups/{g}/reset {"to":"earliest"|"latest"|N[,"partition":P]} */
static void handle_reset(spw_consume *cs, spw_http_req *req, spw_stream *s, const char *gname)
{
    spw_group *g;
    char msg[400];
    hreset *h = spw_xcalloc(1, sizeof *h);
    h->req = req;
    h->answer = (spw_buf)SPW_BUF_INIT;
    spw_sc sc = spw_svc_group_reset_json(cs, s, gname, (const char *)req->body.p, req->body.len, &g, &h->answer,
                                         msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw_http_answer(req, sc, NULL, "%s", msg);
        spw_buf_fini(&h->answer);
        spw_free(h);
        goto out;
    }
    spw_buf_xprintf(&h->answer, "\n");
    spw_stream_put(s);
    spw_http_req_release_body(req);
    spw_consume_commit_saved(cs, g, http_post, req->loop, http_reset_answer, h);
    return;
out:
    spw_stream_put(s);
}

/* ---- routing ---- */

void spw_groups_http_route(struct spw_api *api, spw_http_req *req, const char *name, size_t nl, const char *rest,
                           const spw_auth_req *ar)
{
    char msg[300];
    spw_sc sc;
    if (!rest) { /* GET /v1/streams/{s}/groups: the stream's groups */
        if (req->method != SPW_HTTP_GET) {
            spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET\r\n", "use GET");
            return;
        }
        spw_stream *s;
        sc = spw_svc_stream_for(api->svc.cat, api->svc.auth, ar->who, name, nl, 0, &s, msg, sizeof msg);
        if (sc != SPW_SC_OK) {
            spw_http_answer(req, sc, NULL, "%s", msg);
            return;
        }
        handle_list(api->svc.groups, req, s);
        return;
    }
    const char *slash = strchr(rest, '/');
    size_t gl = slash ? (size_t)(slash - rest) : strlen(rest);
    sc = spw_svc_names(name, nl, rest, gl, NULL, 0, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw_http_answer(req, sc, NULL, "%s", msg);
        return;
    }
    int op; /* 0 GET, 1 poll, 2 commit, 3 reset */
    if (!slash)
        op = 0;
    else if (strcmp(slash, "/poll") == 0)
        op = 1;
    else if (strcmp(slash, "/commit") == 0)
        op = 2;
    else if (strcmp(slash, "/reset") == 0)
        op = 3;
    else {
        spw_http_answer(req, SPW_SC_NOT_FOUND, NULL, "no such endpoint: %s", req->path);
        return;
    }
    int want = op ? SPW_HTTP_POST : SPW_HTTP_GET;
    if (req->method != want) {
        char h[32];
        snprintf(h, sizeof h, "Allow: %s\r\n", op ? "POST" : "GET");
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, h, "use %s", op ? "POST" : "GET");
        return;
    }
    spw_stream *s;
    unsigned need = op == 3 ? SPW_PERM_ADMIN : op ? SPW_PERM_CONSUME : 0; /* a reset is an operator's */
    sc = spw_svc_stream_for(api->svc.cat, api->svc.auth, ar->who, name, nl, need, &s, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw_http_answer(req, sc, NULL, "%s", msg);
        return;
    }
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, rest, gl);
    gname[gl] = 0;
    if (op == 0)
        handle_get(api->svc.groups, req, s, gname);
    else if (op == 1)
        handle_poll(api->svc.groups, req, s, gname);
    else if (op == 2)
        handle_commit(api->svc.groups, req, s, gname);
    else
        handle_reset(api->svc.groups, req, s, gname);
}

