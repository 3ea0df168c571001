/*
 * Consumer-group endpoints, parked long-polls and the group waiter thread:
 * see groups_http.h, groups.h and docs/api.md.
 */
#include "server/groups_http.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/id.h"
#include "core/json.h"
#include "core/msg.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/groups.h"

#define COMMIT_BODY_MAX 4096

/* A commit applied in memory, waiting for its group's file. */
typedef struct gcommit {
    struct gcommit *next;
    spw_group *g;
    void (*post)(void *, void (*)(void *), void *);
    void *loop;
    void (*done)(void *arg, int err);
    void *arg;
    int err; /* the save's result, set by the waiter */
} gcommit;

/* An HTTP commit's answer. */
typedef struct hcommit {
    spw_http_req *req;
    uint32_t partition;
    uint64_t offset;
} hcommit;

struct spw_groups_http {
    spw_api *api;
    spw_groups *gs;
    pthread_t th;
    pthread_mutex_t mu; /* the lists and stop */
    pthread_cond_t cv;
    spw_group_poll *parked;
    gcommit *commits;
    int stop;
    int started;
    _Atomic uint32_t nparked; /* polls parked (read without mu by kicks) */
    _Atomic int kicked;       /* a kick is on its way to the waiter */
    _Atomic uint64_t skipped; /* records skipped as damaged (spw_groups_http_skip_damaged) */
};

static int64_t now_ms(void) { return (int64_t)(spw_mono_ns() / 1000000u); }

static void bputf(spw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bputf(spw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = spw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (r == SPW_ENOMEM)
        abort(); /* spw_buf uses try_realloc; these answers are small */
}

/* ends[i], firsts[i] of the stream's first n partitions. The end is the
 * durable one: groups deliver only records that survive a power loss
 * (docs/architecture.md, "What readers see"), so a committed offset never
 * passes what recovery keeps. */
static void part_ends(spw_stream *s, uint32_t n, uint64_t *ends, uint64_t *firsts)
{
    for (uint32_t i = 0; i < n; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        ends[i] = st.durable_offset;
        if (firsts)
            firsts[i] = st.start_offset;
    }
}

/* A poll found nothing to deliver and waits: partitions with written
 * records past the durable end are fsynced in the next flush cycle (the
 * durable hook then wakes the waiter). Atomic loads only, but for a
 * partition with such records. */
static void ask_sync(spw_stream *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        spw_part_sync_soon(s->parts[i]);
}

/* Records still stored after the committed offset (retention may have
 * removed some the group never read: those are not lag any more). */
static uint64_t group_lag(uint64_t committed, uint64_t end, uint64_t first)
{
    uint64_t from = committed < first ? first : committed;
    return end > from ? end - from : 0;
}

static uint32_t nparts_of(spw_stream *s, spw_group *g)
{
    uint32_t n = spw_group_nparts(g);
    return s->cfg.partitions < n ? s->cfg.partitions : n;
}

/* ---- poll (both front ends) ---- */

static void gpoll_free(spw_group_poll *p)
{
    spw_stream_put(p->s);
    spw_free(p);
}

/* Tries to lease a partition for p and deliver it; else parks it until the
 * waiter hands it back, or answers "nothing" when its wait is over. On
 * the poll's loop. */
static void try_poll(spw_group_poll *p)
{
    spw_groups_http *gh = p->gh;
    uint32_t n = nparts_of(p->s, p->g);
    uint64_t *ends = spw_xmalloc(2 * (size_t)n * sizeof *ends + 1), *firsts = ends + n;
    part_ends(p->s, n, ends, firsts);
    int64_t now = now_ms();
    spw_lease l;
    int got = spw_group_acquire(p->g, ends, firsts, n, now, p->lease_ms, p->member, &l);
    spw_free(ends);
    if (got) {
        p->deliver(p, &l);
        gpoll_free(p);
        return;
    }
    if (now < p->deadline_ms)
        ask_sync(p->s, n);
    pthread_mutex_lock(&gh->mu);
    int park = !gh->stop && now < p->deadline_ms;
    if (park) {
        p->next = gh->parked;
        gh->parked = p;
        atomic_fetch_add(&gh->nparked, 1);
        pthread_cond_signal(&gh->cv);
    }
    pthread_mutex_unlock(&gh->mu);
    if (!park) {
        p->nothing(p);
        gpoll_free(p);
    }
}

static void poll_again(void *arg) { try_poll(arg); }

void spw_groups_http_poll(spw_groups_http *gh, spw_group_poll *p)
{
    p->gh = gh;
    try_poll(p);
}

spw_groups *spw_groups_http_groups(spw_groups_http *gh) { return gh->gs; }

int spw_groups_http_poll_group(spw_groups_http *gh, spw_stream *s, const char *gname, int latest, spw_group **out)
{
    if (s->cfg.partitions > SPW_GROUP_PARTS_MAX)
        return -E2BIG;
    uint32_t n = s->cfg.partitions;
    uint64_t *at = spw_xmalloc((size_t)n * sizeof *at + 1);
    if (latest)
        part_ends(s, n, at, NULL);
    else
        for (uint32_t i = 0; i < n; i++) {
            spw_part_state st;
            spw_part_state_get(s->parts[i], &st);
            at[i] = st.start_offset;
        }
    int created = 0;
    spw_group *g = spw_group_find(gh->gs, s->cfg.name, s->incarnation, gname, 1, n, at, &created);
    spw_free(at);
    if (created) {
        /* A new group's starting point is durable before anything is
         * delivered (latest must mean the same after a restart). */
        int e = spw_group_save(gh->gs, g);
        if (e < 0)
            return e;
    }
    *out = g;
    return 0;
}

int spw_groups_http_skip_damaged(spw_group_poll *p, spw_lease *l, uint64_t bad)
{
    uint64_t from = l->from;
    if (bad <= from || spw_group_skip(p->g, l, bad) < 0)
        return -1;
    atomic_fetch_add(&p->gh->skipped, bad - from);
    spw_error("group %s of stream %s: partition %" PRIu32 " offsets %" PRIu64 "..%" PRIu64
              " are damaged on disk and cannot be delivered; the group skips them (run spillway check)",
              spw_group_name(p->g), p->s->cfg.name, l->partition, from, bad - 1);
    return 0;
}

/* ---- HTTP poll ---- */

static void http_post(void *loop, void (*fn)(void *), void *arg) { spw_http_loop_post(loop, fn, arg); }

static void http_nothing(spw_group_poll *p);

static void http_deliver(spw_group_poll *p, spw_lease *l)
{
    spw_http_req *req = p->ctx;
    if (spw_http_req_gone(req)) {
        /* nobody to deliver to: free for the others at once, not after lease_ms */
        spw_group_release(p->g, l);
        spw_http_respond(req, 204, NULL, NULL, NULL, 0); /* dropped; frees req */
        return;
    }
    spw_buf out = SPW_BUF_INIT;
    uint64_t next = l->from, bad = 0;
    int r, skips = 0;
    while ((r = spw_api_read_ndjson(p->s, l->partition, l->from, p->max, &out, &next, &bad)) == SPW_ECORRUPT &&
           skips < SPW_GROUP_SKIPS_MAX && spw_groups_http_skip_damaged(p, l, bad) == 0)
        skips++;
    if (r == 0 && skips) { /* nothing readable after the damage yet */
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
            spw_http_error(req, 500, "damaged", hn,
                           "partition %" PRIu32 " offsets %" PRIu64 "..%" PRIu64
                           " are damaged on disk (run spillway check); reading can resume at offset %" PRIu64,
                           l->partition, l->from, bad - 1, bad);
        else
            spw_http_error(req, 500, "read_failed", NULL, "reading partition %" PRIu32 " at %" PRIu64 ": %s",
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

static void http_nothing(spw_group_poll *p) { spw_http_respond(p->ctx, 204, NULL, NULL, NULL, 0); }

/* Reads an optional bounded integer parameter: 0 ok (*v set or left at
 * its default), -1 after answering 400. */
static int param(spw_http_req *req, const char *name, uint64_t lo, uint64_t hi, uint64_t *v)
{
    int r = spw__api_query_u64(req->query, name, v);
    if (r < 0 || (r > 0 && (*v < lo || *v > hi))) {
        spw_http_error(req, 400, "bad_parameter", NULL, "%s must be an integer from %" PRIu64 " to %" PRIu64, name,
                       lo, hi);
        return -1;
    }
    return 0;
}

static void handle_poll(spw_groups_http *gh, spw_http_req *req, spw_stream *s, const char *gname)
{
    uint64_t max = SPW_GROUP_POLL_MAX_DEFAULT, wait = 0, lease = SPW_GROUP_LEASE_MS_DEFAULT;
    if (param(req, "max", 1, SPW_GROUP_POLL_MAX_MAX, &max) || param(req, "wait_ms", 0, SPW_GROUP_WAIT_MS_MAX, &wait) ||
        param(req, "lease_ms", SPW_GROUP_LEASE_MS_MIN, SPW_GROUP_LEASE_MS_MAX, &lease))
        goto fail;
    char start[16] = "earliest", member[SPW_GROUP_MEMBER_MAX + 1];
    int r = spw__api_query_str(req->query, "start", start, sizeof start);
    if (r < 0 || (strcmp(start, "earliest") && strcmp(start, "latest"))) {
        spw_http_error(req, 400, "bad_parameter", NULL, "start must be earliest or latest");
        goto fail;
    }
    r = spw__api_query_str(req->query, "member", member, sizeof member);
    if (r < 0 || (r > 0 && !spw_group_member_ok(member, strlen(member)))) {
        spw_http_error(req, 400, "bad_parameter", NULL,
                       "member must be 1 to 64 characters of a-z, A-Z, 0-9, '.', '_' or '-', not starting with '.'");
        goto fail;
    }
    if (r == 0)
        snprintf(member, sizeof member, "%s", req->peer[0] ? req->peer : "anonymous");
    spw_group *g;
    int e = spw_groups_http_poll_group(gh, s, gname, strcmp(start, "latest") == 0, &g);
    if (e == -E2BIG) {
        spw_http_error(req, 400, "too_many_partitions", NULL, "consumer groups need at most %d partitions",
                       SPW_GROUP_PARTS_MAX);
        goto fail;
    }
    if (e < 0) {
        spw_http_error(req, 500, "save_failed", NULL, "saving the new group: %s", spw_strerror(e));
        goto fail;
    }
    spw_http_req_release_body(req);
    spw_group_poll *p = spw_xcalloc(1, sizeof *p);
    p->post = http_post;
    p->loop = req->loop;
    p->deliver = http_deliver;
    p->nothing = http_nothing;
    p->ctx = req;
    p->s = s;
    p->g = g;
    p->max = (uint32_t)max;
    p->lease_ms = (uint32_t)lease;
    p->deadline_ms = now_ms() + (int64_t)wait;
    snprintf(p->member, sizeof p->member, "%s", member);
    spw_groups_http_poll(gh, p);
    return;
fail:
    spw_stream_put(s);
}

/* ---- commit ---- */

void spw_groups_http_commit_saved(spw_groups_http *gh, spw_group *g, void (*post)(void *, void (*)(void *), void *),
                                  void *loop, void (*done)(void *arg, int err), void *arg)
{
    gcommit *c = spw_xcalloc(1, sizeof *c);
    c->g = g;
    c->post = post;
    c->loop = loop;
    c->done = done;
    c->arg = arg;
    pthread_mutex_lock(&gh->mu);
    int queued = !gh->stop;
    if (queued) {
        c->next = gh->commits;
        gh->commits = c;
        pthread_cond_signal(&gh->cv);
    }
    pthread_mutex_unlock(&gh->mu);
    if (!queued) {
        int err = spw_group_save(gh->gs, g);
        spw_free(c);
        done(arg, err);
    }
}

static void commit_ran(void *arg)
{
    gcommit *c = arg;
    c->done(c->arg, c->err);
    spw_free(c);
}

static void http_commit_answer(void *arg, int err)
{
    hcommit *c = arg;
    if (err < 0) {
        spw_http_error(c->req, 500, "save_failed", NULL,
                       "the commit was applied but writing the group's offsets file failed: %s", spw_strerror(err));
    } else {
        char j[128];
        snprintf(j, sizeof j, "{\"partition\":%" PRIu32 ",\"committed\":%" PRIu64 "}\n", c->partition, c->offset);
        spw_http_respond(c->req, 200, NULL, "application/json", j, strlen(j));
    }
    spw_free(c);
}

static void handle_commit(spw_groups_http *gh, spw_http_req *req, spw_stream *s, const char *gname)
{
    spw_group *g = spw_group_find(gh->gs, s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    spw_stream_put(s);
    if (!g) {
        spw_http_error(req, 404, "no_such_group", NULL, "no consumer group named %s", gname);
        return;
    }
    const char *p = (const char *)req->body.p, *end = p + req->body.len, *vend;
    spw_json_span v, k, val, lease_v = {0}, off_v = {0};
    spw_json_error e;
    if (req->body.len == 0 || req->body.len > COMMIT_BODY_MAX || spw_json_scan(p, end, NULL, 0, &v, &vend, &e) < 0) {
        spw_http_error(req, 400, "bad_json", NULL, "the body must be {\"lease\":\"...\",\"offset\":N}");
        return;
    }
    while (p < vend && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    if (*p != '{') {
        spw_http_error(req, 400, "bad_json", NULL, "the body must be {\"lease\":\"...\",\"offset\":N}");
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
        spw_http_error(req, 400, "bad_lease", NULL, "lease must be the string a poll returned in Spillway-Lease");
        return;
    }
    int ok = off_v.type == SPW_JSON_NUMBER && off_v.n > 0 && off_v.n <= 20;
    for (size_t i = 0; ok && i < off_v.n; i++) {
        char c = off_v.p[i];
        ok = c >= '0' && c <= '9' && offset <= (UINT64_MAX - 9) / 10;
        offset = offset * 10 + (uint64_t)(c - '0');
    }
    if (!ok) {
        spw_http_error(req, 400, "bad_offset", NULL, "offset must be a non-negative integer (the next offset to read)");
        return;
    }
    int r = spw_group_commit(g, part, id, offset, now_ms());
    if (r == -ESTALE || r == -EINVAL) {
        spw_http_error(req, 409, "stale_lease", NULL,
                       "lease %.*s is not held (already committed, expired and taken over, or from before a "
                       "restart): poll again",
                       (int)(lease_v.n - 2), lease_v.p + 1);
        return;
    }
    if (r == -ETIME) {
        spw_http_error(req, 409, "lease_expired", NULL,
                       "lease %.*s expired: its records will be delivered again; poll again", (int)(lease_v.n - 2),
                       lease_v.p + 1);
        return;
    }
    if (r == -ERANGE) {
        spw_http_error(req, 400, "bad_offset", NULL,
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
    spw_groups_http_commit_saved(gh, g, http_post, req->loop, http_commit_answer, c);
}

/* ---- GET ---- */

static void handle_get(spw_groups_http *gh, spw_http_req *req, spw_stream *s, const char *gname)
{
    spw_group *g = spw_group_find(gh->gs, s->cfg.name, s->incarnation, gname, 0, 0, NULL, NULL);
    if (!g) {
        spw_stream_put(s);
        spw_http_error(req, 404, "no_such_group", NULL, "no consumer group named %s", gname);
        return;
    }
    uint32_t n = nparts_of(s, g);
    uint64_t *ends = spw_xmalloc(2 * ((size_t)n + 1) * sizeof *ends), *firsts = ends + n + 1;
    spw_group_part_info *info = spw_xcalloc(n ? n : 1, sizeof *info);
    part_ends(s, n, ends, firsts);
    spw_group_info(g, info, n, now_ms());
    spw_buf b = SPW_BUF_INIT;
    bputf(&b, "{\"stream\":\"%s\",\"group\":\"%s\",\"partitions\":[", s->cfg.name, gname);
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t lag = group_lag(info[i].committed, ends[i], firsts[i]);
        total += lag;
        bputf(&b, "%s{\"partition\":%" PRIu32 ",\"committed\":%" PRIu64 ",\"end\":%" PRIu64 ",\"lag\":%" PRIu64,
              i ? "," : "", i, info[i].committed, ends[i], lag);
        if (info[i].held)
            bputf(&b, ",\"holder\":\"%s\",\"lease_ms_left\":%" PRId64 "}", info[i].holder, info[i].lease_left_ms);
        else
            bputf(&b, ",\"holder\":null}");
    }
    bputf(&b, "],\"lag\":%" PRIu64 "}\n", total);
    spw_http_respond(req, 200, NULL, "application/json", b.p, b.len);
    spw_buf_fini(&b);
    spw_free(ends);
    spw_free(info);
    spw_stream_put(s);
}

/* ---- routing ---- */

void spw_groups_http_route(spw_groups_http *gh, spw_http_req *req, const char *name, size_t nl, const char *rest,
                           const spw_auth_req *ar)
{
    const char *slash = strchr(rest, '/');
    size_t gl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!spw_stream_name_ok(name, nl)) {
        spw_http_error(req, 400, "bad_name", NULL, "invalid stream name");
        return;
    }
    if (!spw_group_name_ok(rest, gl)) {
        spw_http_error(req, 400, "bad_name", NULL,
                       "group names are 1 to 128 characters of a-z, A-Z, 0-9, '.', '_' or '-', not starting with '.'");
        return;
    }
    int op; /* 0 GET, 1 poll, 2 commit */
    if (!slash)
        op = 0;
    else if (strcmp(slash, "/poll") == 0)
        op = 1;
    else if (strcmp(slash, "/commit") == 0)
        op = 2;
    else {
        spw_http_error(req, 404, "not_found", NULL, "no such endpoint: %s", req->path);
        return;
    }
    int want = op ? SPW_HTTP_POST : SPW_HTTP_GET;
    if (req->method != want) {
        char h[32];
        snprintf(h, sizeof h, "Allow: %s\r\n", op ? "POST" : "GET");
        spw_http_error(req, 405, "method_not_allowed", h, "use %s", op ? "POST" : "GET");
        return;
    }
    if (!spw_auth_http_allow(gh->api->auth, ar, req, op ? SPW_PERM_CONSUME : 0, name, nl))
        return;
    spw_stream *s = spw_stream_get(gh->api->cat, name, nl);
    if (!s) {
        spw_http_error(req, 404, "no_such_stream", NULL, "no stream named %.*s", (int)nl, name);
        return;
    }
    char gname[SPW_GROUP_NAME_MAX + 1];
    memcpy(gname, rest, gl);
    gname[gl] = 0;
    if (op == 0)
        handle_get(gh, req, s, gname);
    else if (op == 1)
        handle_poll(gh, req, s, gname);
    else
        handle_commit(gh, req, s, gname);
}

/* ---- the waiter ---- */

/* Saves the groups of the commits in list (once each) and posts every
 * answer to its loop. */
static void finish_commits(spw_groups_http *gh, gcommit *list)
{
    for (gcommit *c = list; c; c = c->next)
        c->err = 1; /* not saved yet */
    for (gcommit *c = list; c; c = c->next) {
        if (c->err != 1)
            continue;
        int r = spw_group_save(gh->gs, c->g);
        for (gcommit *d = c; d; d = d->next)
            if (d->g == c->g)
                d->err = r;
    }
    while (list) {
        gcommit *c = list;
        list = c->next;
        c->post(c->loop, commit_ran, c);
    }
}

static int poll_ready(spw_group_poll *p, int64_t now)
{
    if (now >= p->deadline_ms)
        return 1;
    uint32_t n = nparts_of(p->s, p->g);
    uint64_t small[2 * 64];
    uint64_t *ends = n <= 64 ? small : spw_xmalloc(2 * (size_t)n * sizeof *ends), *firsts = ends + n;
    part_ends(p->s, n, ends, firsts);
    int r = spw_group_ready(p->g, ends, firsts, n, now);
    if (ends != small)
        spw_free(ends);
    if (!r)
        ask_sync(p->s, n); /* records written since it parked */
    return r;
}

static void *waiter(void *arg)
{
    spw_groups_http *gh = arg;
    pthread_mutex_lock(&gh->mu);
    for (;;) {
        int stop = gh->stop;
        if (!stop && !gh->commits) {
            if (!gh->parked) {
                pthread_cond_wait(&gh->cv, &gh->mu);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += SPW_GROUPS_TICK_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&gh->cv, &gh->mu, &ts);
            }
            stop = gh->stop;
        }
        atomic_store(&gh->kicked, 0); /* later writes kick again */
        gcommit *commits = gh->commits;
        gh->commits = NULL;
        spw_group_poll *wake = NULL, **pp = &gh->parked;
        int64_t now = now_ms();
        while (*pp) {
            spw_group_poll *p = *pp;
            if (stop || poll_ready(p, now)) {
                *pp = p->next;
                atomic_fetch_sub(&gh->nparked, 1);
                p->next = wake;
                wake = p;
            } else {
                pp = &p->next;
            }
        }
        pthread_mutex_unlock(&gh->mu);
        if (commits)
            finish_commits(gh, commits);
        while (wake) {
            spw_group_poll *p = wake;
            wake = p->next;
            p->post(p->loop, poll_again, p);
        }
        pthread_mutex_lock(&gh->mu);
        if (stop && !gh->commits && !gh->parked)
            break;
    }
    pthread_mutex_unlock(&gh->mu);
    return NULL;
}

/* The log's durable hook: records became visible; parked polls look. */
static void durable_kick(void *arg) { spw_groups_http_kick(arg); }

typedef struct clamp_ctx {
    spw_groups_http *gh;
    spw_group **v; /* groups to clamp, walked after the list's lock */
    size_t n, cap;
} clamp_ctx;

static void clamp_collect(void *arg, spw_group *g)
{
    clamp_ctx *x = arg;
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 16;
        x->v = spw_xrealloc(x->v, x->cap * sizeof *x->v);
    }
    x->v[x->n++] = g;
}

/*
 * Attach: a committed offset past its partition's end points at offsets
 * recovery gave to new records (a power loss cut records a group was
 * shown before reads were limited to durable records, or the log was cut
 * by hand): delivering from there would skip the new records forever.
 * Set it down to the end, loudly, and save the group.
 */
static void clamp_groups(spw_groups_http *gh)
{
    clamp_ctx x = {.gh = gh};
    spw_groups_each(gh->gs, clamp_collect, &x);
    for (size_t k = 0; k < x.n; k++) {
        spw_group *g = x.v[k];
        const char *sn = spw_group_stream(g);
        spw_stream *s = spw_stream_get(gh->api->cat, sn, strlen(sn));
        if (!s)
            continue;
        uint32_t n = nparts_of(s, g);
        int changed = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint64_t end = spw_part_open_end(s->parts[i]), old;
            if (!spw_group_clamp(g, i, end, &old))
                continue;
            changed = 1;
            atomic_fetch_add(&gh->api->positions_clamped, 1);
            spw_error("group %s of stream %s: partition %" PRIu32 " committed offset %" PRIu64
                      " is past the partition's end %" PRIu64 " (records were lost, and their offsets go to new "
                      "records); the group continues at %" PRIu64,
                      spw_group_name(g), sn, i, old, end, end);
        }
        if (changed) {
            int e = spw_group_save(gh->gs, g);
            if (e < 0)
                spw_error("group %s of stream %s: saving the clamped offsets: %s", spw_group_name(g), sn,
                          spw_strerror(e));
        }
        spw_stream_put(s);
    }
    spw_free(x.v);
}

int spw_groups_http_start(spw_api *api, spw_groups_http **out)
{
    spw_groups_http *gh = spw_xcalloc(1, sizeof *gh);
    gh->api = api;
    int r = spw_groups_open(api->data_dir, &gh->gs);
    if (r < 0) {
        spw_free(gh);
        return r;
    }
    pthread_mutex_init(&gh->mu, NULL);
    pthread_cond_init(&gh->cv, NULL);
    if ((r = pthread_create(&gh->th, NULL, waiter, gh)) != 0) {
        pthread_mutex_destroy(&gh->mu);
        pthread_cond_destroy(&gh->cv);
        spw_groups_close(gh->gs);
        spw_free(gh);
        return -r;
    }
    gh->started = 1;
    if (api->cat)
        clamp_groups(gh);
    if (api->log)
        spw_log_set_durable_hook(api->log, durable_kick, gh);
    *out = gh;
    return 0;
}

void spw_groups_http_stop(spw_groups_http *gh)
{
    if (!gh || !gh->started)
        return;
    /* No more wake-ups from the flusher (the log may be closed before
     * this is freed; parked polls are answered below). */
    if (gh->api->log)
        spw_log_set_durable_hook(gh->api->log, NULL, NULL);
    pthread_mutex_lock(&gh->mu);
    gh->stop = 1;
    pthread_cond_signal(&gh->cv);
    pthread_mutex_unlock(&gh->mu);
    pthread_join(gh->th, NULL);
    gh->started = 0;
}

void spw_groups_http_free(spw_groups_http *gh)
{
    if (!gh)
        return;
    spw_groups_http_stop(gh);
    pthread_mutex_destroy(&gh->mu);
    pthread_cond_destroy(&gh->cv);
    spw_groups_close(gh->gs);
    spw_free(gh);
}

void spw_groups_http_drop_stream(spw_groups_http *gh, const char *name)
{
    if (gh)
        spw_groups_drop_stream(gh->gs, name);
}

void spw_groups_http_kick(spw_groups_http *gh)
{
    if (!gh || !atomic_load_explicit(&gh->nparked, memory_order_relaxed))
        return;
    if (atomic_exchange(&gh->kicked, 1))
        return; /* one signal per waiter round, however many writes */
    pthread_mutex_lock(&gh->mu);
    pthread_cond_signal(&gh->cv);
    pthread_mutex_unlock(&gh->mu);
}

/* ---- metrics ---- */

typedef struct metrics_ctx {
    spw_groups_http *gh;
    spw_buf *b;
    const spw_token *who;
    int pass; /* 0 committed, 1 lag */
} metrics_ctx;

static void metrics_group(void *arg, spw_group *g)
{
    metrics_ctx *x = arg;
    const char *sn = spw_group_stream(g);
    size_t sl = strlen(sn);
    if (x->who && !spw_token_sees(x->who, sn, sl))
        return;
    spw_stream *s = spw_stream_get(x->gh->api->cat, sn, sl);
    if (!s)
        return;
    uint32_t n = nparts_of(s, g);
    uint64_t *ends = spw_xmalloc(2 * ((size_t)n + 1) * sizeof *ends), *firsts = ends + n + 1;
    spw_group_part_info *info = spw_xcalloc((size_t)n + 1, sizeof *info);
    part_ends(s, n, ends, firsts);
    spw_group_info(g, info, n, now_ms());
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = x->pass == 0 ? info[i].committed : group_lag(info[i].committed, ends[i], firsts[i]);
        bputf(x->b, "spillway_group_%s{stream=\"%s\",group=\"%s\",partition=\"%" PRIu32 "\"} %" PRIu64 "\n",
              x->pass == 0 ? "committed_offset" : "lag", sn, spw_group_name(g), i, v);
    }
    spw_free(ends);
    spw_free(info);
    spw_stream_put(s);
}

void spw_groups_http_metrics(spw_groups_http *gh, spw_buf *b, const spw_token *who)
{
    if (!gh)
        return;
    metrics_ctx x = {gh, b, who, 0};
    bputf(b, "# HELP spillway_group_committed_offset a consumer group's committed offset (next to read)\n"
             "# TYPE spillway_group_committed_offset gauge\n");
    spw_groups_each(gh->gs, metrics_group, &x);
    x.pass = 1;
    bputf(b, "# HELP spillway_group_lag records after a consumer group's committed offset\n"
             "# TYPE spillway_group_lag gauge\n");
    spw_groups_each(gh->gs, metrics_group, &x);
    bputf(b,
          "# HELP spillway_group_damaged_skipped_total records consumer groups skipped because they are damaged on "
          "disk\n# TYPE spillway_group_damaged_skipped_total counter\nspillway_group_damaged_skipped_total %" PRIu64
          "\n",
          atomic_load(&gh->skipped));
}
