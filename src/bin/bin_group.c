/*
 * GROUP_POLL and GROUP_COMMIT over the binary protocol: decoders and
 * encoders over the consumer groups of svc/consume.h, which own leases,
 * parking and the commit queue. A request is answered at once or later
 * from the group waiter (posted back to the loop); meanwhile it is counted
 * in flight like a PRODUCE. Records are read with the record cursor's
 * rules (log/cursor.h), as FETCH mode 0 encodes them.
 */
#include "bin/bin_int.h"
#include "svc/group_admin.h"

/* ---- GROUP_POLL, GROUP_COMMIT (consumer groups: svc/consume.h) ---- */


/* A group poll or commit between its request and its answer. */
typedef struct bgroup {
    bconn *c;
    uint64_t request_id;
    uint32_t partition; /* commit */
    uint64_t offset;    /* commit */
    /* poll: what its lease read (group_read_on, on an I/O worker, or in
     * group_deliver) */
    spw_buf recs;
    int n, read_done;
    uint64_t next, bad;
    uint64_t reserved; /* poll: the answer's room in the unsent budget (group_reserve) */
} bgroup;

static void bin_post(void *loop, void (*fn)(void *), void *arg) { spw__bin_loop_post(loop, fn, arg); }

/* The request is answered (or its connection is gone): 1 if c can take
 * the answer. */
static int group_answered(bconn *c)
{
    c->inflight--;
    c->loop->inflight--;
    return !c->closed;
}

/* Answers from the group waiter go out now; inside the call that made the
 * request, conn_process flushes. */
static void group_flush(bconn *c)
{
    if (!c->closed && !c->loop->in_group_call)
        spw__bin_conn_flush(c);
}

/*
 * Records of partition p from `from`, as FETCH mode 0 encodes them, into
 * recs: at most max records and, past the first, max_bytes bytes. Returns
 * the count (> 0) with *next one past the last, 0 if none is readable, or
 * a read error (SPW_ECORRUPT: *bad the offset to resume at, 0 if unknown).
 * The record cursor's rules (log/cursor.h): records before damage are
 * returned, the damage itself only when nothing came before it.
 */
static int group_read(spw_part *p, uint64_t from, uint32_t max, size_t max_bytes, spw_buf *recs, uint64_t *next,
                      uint64_t *bad)
{
    spw_cursor cur;
    spw_cursor_init(&cur, p, from, max_bytes);
    uint32_t count = 0;
    int err = 0;
    *next = from;
    spw_record_view rv;
    while (count < max) {
        cur.read_bytes = max_bytes > recs->len ? max_bytes - recs->len : 1;
        int n = spw_cursor_next(&cur, &rv);
        if (n <= 0) {
            if (n < 0 && count == 0) {
                err = n;
                *bad = n == SPW_ECORRUPT ? cur.resume : 0;
            }
            break;
        }
        size_t sz = 32 + (rv.key_len > 0 ? (size_t)rv.key_len : 0) + rv.value_len;
        if (count > 0 && recs->len + sz > max_bytes)
            break;
        spw_fetch_rec fr = {.offset = rv.offset, .id = rv.id, .ts = rv.ts, .key = rv.key,
                            .key_len = rv.key_len, .value = rv.value, .value_len = rv.value_len};
        if (spw_fetch_rec_put(recs, &fr)) {
            err = count ? 0 : SPW_ENOMEM;
            break;
        }
        count++;
        *next = rv.offset + 1;
    }
    spw_cursor_fini(&cur);
    return err ? err : (int)count;
}

/* spw_consume_read_lease's read: group_read into recs (emptied first). */
typedef struct group_rd {
    spw_part *p;
    uint32_t max;
    size_t max_bytes;
    spw_buf *recs;
} group_rd;

static int group_read_lease(void *arg, uint64_t from, uint64_t *next, uint64_t *bad)
{
    group_rd *rd = arg;
    rd->recs->len = 0;
    return group_read(rd->p, from, rd->max, rd->max_bytes, rd->recs, next, bad);
}

/* The answer "nothing was leased" (delivered 0) to q. */
static void group_send_empty(bconn *c, bgroup *q)
{
    spw_gpoll_resp a = {.delivered = 0};
    size_t start;
    if (spw_frame_begin(&c->out, SPW_OP_GROUP_POLL, SPW_FLAG_RESPONSE, q->request_id, &start) ||
        spw_answer_ok(&c->out) || spw_gpoll_resp_encode(&c->out, &a))
        spw__bin_conn_close(c);
    else
        spw_frame_finish(&c->out, start);
    group_flush(c);
}

/* The lease's read: on an I/O worker (p->read), or in group_deliver. */
static void group_read_on(spw_group_poll *p, spw_lease *l)
{
    bgroup *q = p->ctx;
    group_rd rd = {p->s->parts[l->partition], p->max, (size_t)p->max_bytes, &q->recs};
    q->n = spw_consume_read_lease(p, l, group_read_lease, &rd, &q->next, &q->bad);
    q->read_done = 1;
}

/* The answer's room in the budget of unsent answers (net/conn.h),
 * reserved before the lease is read, as a FETCH does at dispatch. */
static uint64_t group_reserve(spw_group_poll *p, uint64_t want)
{
    bgroup *q = p->ctx;
    if (q->c->closed)
        return want; /* nobody to answer: deliver gives the lease back */
    q->reserved = spw_netconn_out_reserve(&q->c->nc, want);
    return q->reserved;
}

/* The budget of unsent answers is spent: the lease went back at once,
 * for a later poll. */
static void group_busy(spw_group_poll *p)
{
    bgroup *q = p->ctx;
    bconn *c = q->c;
    if (group_answered(c)) {
        spw__bin_send_sc(c, SPW_OP_GROUP_POLL, q->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS,
                         "the server's memory for unsent answers (max-unsent-bytes) is spent on clients that do not "
                         "read theirs; retry later");
        group_flush(c);
    }
    spw_free(q);
}

static void group_deliver(spw_group_poll *p, spw_lease *l)
{
    bgroup *q = p->ctx;
    bconn *c = q->c;
    uint64_t reserved = q->reserved; /* becomes the answer's bytes (net/conn.h), or is given back */
    if (!group_answered(c)) {
        spw_netconn_out_release(&c->nc, reserved);
        spw_group_release(p->g, l); /* nobody to deliver to: free for the others at once */
        spw_buf_fini(&q->recs);
        spw_free(q);
        return;
    }
    if (!q->read_done)
        group_read_on(p, l);
    spw_buf recs = q->recs;
    q->recs = (spw_buf)SPW_BUF_INIT;
    uint64_t next = q->next, bad = q->bad;
    int n = q->n;
    if (n <= 0)
        spw_netconn_out_release(&c->nc, reserved); /* a small answer instead */
    if (n == 0) { /* nothing readable after the damage yet: an empty answer */
        spw_group_release(p->g, l);
        spw_buf_fini(&recs);
        group_send_empty(c, q);
        spw_free(q);
        return;
    }
    if (n <= 0) {
        spw_group_release(p->g, l);
        if (n == SPW_ECORRUPT && bad > l->from)
            spw__bin_send_damaged(c, SPW_OP_GROUP_POLL, q->request_id, l->partition, l->from, bad);
        else
            spw__bin_send_sc(c, SPW_OP_GROUP_POLL, q->request_id, spw_sc_read(n), 0,
                             "reading partition %" PRIu32 " at %" PRIu64 ": %s", l->partition, l->from,
                             n ? spw_strerror(n) : "no records");
    } else {
        spw_group_lease_delivered(p->g, l, next);
        spw_gpoll_resp a = {.delivered = 1, .partition = l->partition, .lease_id = l->id, .first_offset = l->from,
                            .next_offset = next, .lease_ms = p->lease_ms, .count = (uint32_t)n, .data = recs.p,
                            .data_len = recs.len};
        size_t start, before = c->out.len;
        if (spw_frame_begin(&c->out, SPW_OP_GROUP_POLL, SPW_FLAG_RESPONSE, q->request_id, &start) ||
            spw_answer_ok(&c->out) || spw_gpoll_resp_encode(&c->out, &a)) {
            spw__bin_conn_close(c); /* the lease expires and its records go to another poll */
        } else {
            spw_frame_finish(&c->out, start);
        }
        spw_netconn_out_transfer(&c->nc, reserved, c->closed ? 0 : c->out.len - before);
    }
    spw_buf_fini(&recs);
    group_flush(c);
    spw_free(q);
}

static void group_failed(spw_group_poll *p, int err)
{
    bgroup *q = p->ctx;
    bconn *c = q->c;
    if (group_answered(c)) {
        spw__bin_send_sc(c, SPW_OP_GROUP_POLL, q->request_id, SPW_SC_SAVE_FAILED, 0, "saving the new group: %s",
                         spw_strerror(err));
        group_flush(c);
    }
    spw_free(q);
}

static void group_nothing(spw_group_poll *p)
{
    bgroup *q = p->ctx;
    bconn *c = q->c;
    if (group_answered(c))
        group_send_empty(c, q);
    spw_free(q);
}

/* The stream of a group request, after the checks every one makes (names,
 * permission, groups enabled); NULL after an error answer. */
static spw_stream *group_stream(bconn *c, const spw_frame_hdr *h, const char *stream, uint16_t sl, const char *group,
                                uint16_t gl, const char *member, uint16_t ml)
{
    spw_svc *svc = c->loop->srv->svc;
    char msg[300];
    spw_sc sc = spw_svc_names(stream, sl, group, gl, member, ml, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
        return NULL;
    }
    if (!svc->groups) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_NOT_FOUND, 0,
                         "consumer groups are not available on this server");
        return NULL;
    }
    return spw__bin_stream(c, h, stream, sl, SPW_PERM_CONSUME, NULL);
}

void spw__bin_handle_group_poll(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    spw_gpoll_req q;
    const char *why;
    if (spw_gpoll_req_decode(body, len, &q, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *s = group_stream(c, h, q.stream, q.stream_len, q.group, q.group_len, q.member, q.member_len);
    if (!s)
        return;
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, q.group, q.group_len);
    gname[q.group_len] = 0;
    spw_group *g;
    int fresh = 0;
    int e = spw_consume_poll_group(svc->groups, s, gname, q.start == SPW_GPOLL_LATEST, &g, &fresh);
    if (e < 0) {
        spw_stream_put(s);
        if (e == -E2BIG)
            spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_TOO_MANY_PARTITIONS, 0,
                             "consumer groups need at most %d partitions", SPW_GROUP_PARTS_MAX);
        else
            spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_SAVE_FAILED, 0, "saving the new group: %s",
                             spw_strerror(e));
        return;
    }
    bgroup *bq = spw_xcalloc(1, sizeof *bq);
    bq->c = c;
    bq->request_id = h->request_id;
    spw_group_poll *p = spw_xcalloc(1, sizeof *p);
    p->post = bin_post;
    p->loop = c->loop;
    p->deliver = group_deliver;
    p->read = group_read_on;
    p->reserve = group_reserve;
    p->busy = group_busy;
    size_t maxb = c->loop->srv->cfg.max_frame_bytes / 2;
    p->max_bytes = maxb < FETCH_MAX_BYTES ? maxb : FETCH_MAX_BYTES;
    p->failed = group_failed;
    p->fresh = fresh;
    p->nothing = group_nothing;
    p->ctx = bq;
    p->s = s;
    p->g = g;
    p->max = q.max ? q.max : SPW_GROUP_POLL_MAX_DEFAULT;
    p->lease_ms = q.lease_ms ? q.lease_ms : SPW_GROUP_LEASE_MS_DEFAULT;
    p->deadline_ms = (int64_t)spw__bin_now_ms() + (int64_t)q.wait_ms;
    if (q.member_len) {
        memcpy(p->member, q.member, q.member_len);
        p->member[q.member_len] = 0;
    } else {
        snprintf(p->member, sizeof p->member, "%s", c->peer);
    }
    c->inflight++;
    c->loop->inflight++;
    c->loop->in_group_call++;
    spw_consume_poll(svc->groups, p);
    c->loop->in_group_call--;
}

static void group_commit_done(void *arg, int err)
{
    bgroup *q = arg;
    bconn *c = q->c;
    if (group_answered(c)) {
        if (err < 0) {
            spw__bin_send_sc(c, SPW_OP_GROUP_COMMIT, q->request_id, SPW_SC_SAVE_FAILED, 0,
                             "the commit was applied but writing the group's offsets file failed: %s",
                             spw_strerror(err));
        } else {
            size_t start;
            if (spw_frame_begin(&c->out, SPW_OP_GROUP_COMMIT, SPW_FLAG_RESPONSE, q->request_id, &start) ||
                spw_answer_ok(&c->out) || spw_gcommit_resp_encode(&c->out, q->partition, q->offset))
                spw__bin_conn_close(c);
            else
                spw_frame_finish(&c->out, start);
        }
        group_flush(c);
    }
    spw_free(q);
}

void spw__bin_handle_group_commit(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    spw_gcommit_req q;
    const char *why;
    if (spw_gcommit_req_decode(body, len, &q, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    spw_stream *s = group_stream(c, h, q.stream, q.stream_len, q.group, q.group_len, NULL, 0);
    if (!s)
        return;
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, q.group, q.group_len);
    gname[q.group_len] = 0;
    spw_group *g =
        spw_group_find(spw_consume_groups(svc->groups), s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    spw_stream_put(s);
    if (!g) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_NO_SUCH_GROUP, 0, "no consumer group named %s",
                         gname);
        return;
    }
    int r = spw_group_commit(g, q.partition, q.lease_id, q.offset, (int64_t)spw__bin_now_ms());
    if (r == -ESTALE || r == -EINVAL) {
        spw__bin_send_sc(
            c, h->opcode, h->request_id, SPW_SC_STALE_LEASE, 0,
            "lease %016" PRIx64 " of partition %" PRIu32
            " is not held (already committed, expired and taken over, or from before a restart): poll again",
            q.lease_id, q.partition);
        return;
    }
    if (r == -ETIME) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_LEASE_EXPIRED, 0,
                         "lease %016" PRIx64 " of partition %" PRIu32
                         " expired: its records will be delivered again; poll again",
                         q.lease_id, q.partition);
        return;
    }
    if (r == -ERANGE) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_OFFSET, 0,
                         "offset %" PRIu64 " is outside the lease's records (commit from its first_offset to its "
                         "next_offset)",
                         q.offset);
        return;
    }
    bgroup *bq = spw_xcalloc(1, sizeof *bq);
    bq->c = c;
    bq->request_id = h->request_id;
    bq->partition = q.partition;
    bq->offset = q.offset;
    c->inflight++;
    c->loop->inflight++;
    c->loop->in_group_call++;
    spw_consume_commit_saved(svc->groups, g, bin_post, c->loop, group_commit_done, bq);
    c->loop->in_group_call--;
}

/* ---- GROUP_LIST (svc/group_admin.h) ---- */

/* A stream's consumer groups: the request and answer of STREAM_DESCRIBE's
 * layout (str16 stream; u32 len and the JSON of GET
 * /v1/streams/{s}/groups), the same checks as that GET. */
void spw__bin_handle_group_list(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    const char *name, *why;
    uint16_t nl;
    if (spw_stream_describe_req_decode(body, len, &name, &nl, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    if (!svc->groups) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_NOT_FOUND, 0,
                         "consumer groups are not available on this server");
        return;
    }
    spw_stream *s = spw__bin_stream(c, h, name, nl, 0, NULL); /* as GET /v1/streams/{s}/groups */
    if (!s)
        return;
    spw_buf json = SPW_BUF_INIT, ans = SPW_BUF_INIT;
    spw_svc_groups_list_json(svc->groups, s, &json);
    spw_stream_put(s);
    size_t start;
    if (spw_stream_describe_resp_encode(&ans, (const char *)json.p, json.len)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_OVERLOADED, RETRY_AFTER_MS, "out of memory");
    } else if (spw_frame_begin(&c->out, h->opcode, SPW_FLAG_RESPONSE, h->request_id, &start) ||
               spw_answer_ok(&c->out) || spw_buf_put(&c->out, ans.p, ans.len)) {
        spw__bin_conn_close(c);
    } else {
        spw_frame_finish(&c->out, start);
    }
    spw_buf_fini(&json);
    spw_buf_fini(&ans);
}

/* ---- GROUP_RESET (svc/group_admin.h) ---- */

typedef struct breset {
    bconn *c;
    uint64_t request_id;
    spw_buf answer; /* the JSON */
} breset;

static void group_reset_done(void *arg, int err)
{
    breset *q = arg;
    bconn *c = q->c;
    if (group_answered(c)) {
        size_t start;
        if (err < 0)
            spw__bin_send_sc(c, SPW_OP_GROUP_RESET, q->request_id, SPW_SC_SAVE_FAILED, 0,
                             "the reset was applied but writing the group's offsets file failed: %s",
                             spw_strerror(err));
        else if (spw_frame_begin(&c->out, SPW_OP_GROUP_RESET, SPW_FLAG_RESPONSE, q->request_id, &start) ||
                 spw_answer_ok(&c->out) ||
                 spw_stream_describe_resp_encode(&c->out, (const char *)q->answer.p, q->answer.len))
            spw__bin_conn_close(c);
        else
            spw_frame_finish(&c->out, start);
        group_flush(c);
    }
    spw_buf_fini(&q->answer);
    spw_free(q);
}

/* A reset of a consumer group: POST .../groups/{g}/reset's body and
 * answer, its checks (admin on the stream) and its rules (refused while
 * the group has active members), answered once the offsets are saved. */
void spw__bin_handle_group_reset(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    const char *stream, *group, *json, *why;
    uint16_t sl, gl;
    uint32_t jl;
    if (spw_greset_req_decode(body, len, &stream, &sl, &group, &gl, &json, &jl, &why)) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_BAD_REQUEST, 0, "%s", why);
        return;
    }
    char msg[400];
    spw_sc sc = spw_svc_names(stream, sl, group, gl, NULL, 0, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
        return;
    }
    if (!svc->groups) {
        spw__bin_send_sc(c, h->opcode, h->request_id, SPW_SC_NOT_FOUND, 0,
                         "consumer groups are not available on this server");
        return;
    }
    spw_stream *s = spw__bin_stream(c, h, stream, sl, SPW_PERM_ADMIN, NULL); /* a reset is an operator's */
    if (!s)
        return;
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, group, gl);
    gname[gl] = 0;
    breset *q = spw_xcalloc(1, sizeof *q);
    q->c = c;
    q->request_id = h->request_id;
    q->answer = (spw_buf)SPW_BUF_INIT;
    spw_group *g;
    sc = spw_svc_group_reset_json(svc->groups, s, gname, json, jl, &g, &q->answer, msg, sizeof msg);
    spw_stream_put(s);
    if (sc != SPW_SC_OK) {
        spw__bin_send_sc(c, h->opcode, h->request_id, sc, 0, "%s", msg);
        spw_buf_fini(&q->answer);
        spw_free(q);
        return;
    }
    c->inflight++;
    c->loop->inflight++;
    c->loop->in_group_call++;
    spw_consume_commit_saved(svc->groups, g, bin_post, c->loop, group_reset_done, q);
    c->loop->in_group_call--;
}
