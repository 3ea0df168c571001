/*
 * The produce service: see produce.h (the order of the steps, the one
 * answer) and docs/architecture.md "The service layer".
 *
 * Here: spw_produce_request (admission, validation, dedupe, rate limit,
 * then submit). The submit step (grouping by partition, encoding, the
 * budget, appending, completion) is in produce_submit.c, the service's
 * metric families in produce_metrics.c. The dedupe step (resolving a request a failure cut, comparing a retry
 * with the stored one by fingerprint, the rebuild at start) is in
 * produce_dedupe.c.
 *
 * Counters (http/api.h): every refusal is counted once in
 * svc->rejected[] by reason — a request that does not decode or validate,
 * a reused dedupe key and a batch larger than the budget as invalid; the
 * rate limit; shed and backpressure (admission and a full budget); the
 * disk — and a request answered from the dedupe table in svc->duplicates.
 * events_in/bytes_in count what was written; produce_latency the time from
 * a submitted request's start to its answer.
 */
#include "svc/produce.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "core/workq.h"
#include "svc/svc.h"
#include "svc/coalesce.h"
#include "svc/consume.h"
#include "svc/metrics.h"
#include "svc/produce_int.h"
#include "svc/replicate.h"
#include "es/es.h"

static const char *admit(spw_svc *svc, spw_stream *s, int priority, uint32_t *retry_ms)
{
    int r = spw_pressure_admit(&svc->pressure, priority, retry_ms);
    if (r == SPW_ADMIT_OK)
        return NULL;
    spw_svc_reject(svc, s, r == SPW_ADMIT_SHED ? SPW_REJ_SHED : SPW_REJ_BACKPRESSURE);
    return r == SPW_ADMIT_SHED ? "shed" : "backpressure";
}


int spw__key_text_ok_long(const uint8_t *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (;;) {
        /* A key the inline test (produce.h) did not take: 8 bytes at a
         * time while all are 0x20..0x7f (a high bit, or a byte below 0x20
         * borrowing, stops it; the byte loop below then finds which). */
        while (n - i >= 8) {
            uint64_t x;
            memcpy(&x, p + i, 8);
            if ((x | ((x - ones * 0x20) & ~x)) & highs)
                break;
            i += 8;
        }
        while (i < n && (uint8_t)(p[i] - 0x20) < 0x60) /* printable ASCII, 0x20..0x7f: the common case */
            i++;
        if (i == n)
            return 1;
        size_t k = p[i] < 0x80 ? 0 : spw_utf8_seq_len(p + i, p + n); /* a control character, or UTF-8 */
        if (!k)
            return 0;
        i += k;
    }
}


/* ---- the request ---- */

void spw_produce_refuse_at(spw_produce_res *res, spw_sc c, const spw_produce_ev *ev, size_t at, const char *fmt, ...)
{
    res->code = c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
    res->at_event = ev != NULL;
    res->index = ev ? ev->index : 0;
    res->at_byte = ev && at != SIZE_MAX;
    res->byte = res->at_byte ? ev->base + at : 0;
}

static void refuse(spw_produce_res *res, spw_sc c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(spw_produce_res *res, spw_sc c, const char *fmt, ...)
{
    res->code = c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
}

void spw_produce_res_fini(spw_produce_res *res)
{
    spw_free(res->slots);
    spw_free(res->part_of);
    res->slots = NULL;
    res->part_of = NULL;
    if (res->owns_vers) {
        spw_free(res->version_of);
        spw_free(res->vers);
        spw_free(res->ver_keys);
        res->version_of = NULL;
        res->vers = NULL;
        res->ver_keys = NULL;
        res->owns_vers = 0;
    }
}

/* The events of one request being validated: records whose keys taken
 * from JSON fields live in an arena (offsets until the arena is final). */
typedef struct vreq {
    spw_stream_config *cfg;
    spw_json_ptr ptrs[2];
    int nptrs, key_i, ts_i;
    uint32_t bytes_mult; /* an event's bytes in the working memory: twice when compressed (records, then batch) */
    int trailing;
    int64_t now;
    spw_record *recs;
    int32_t *arena_off; /* per record: key offset in keys, or -1 */
    uint32_t n, cap;
    /* The first VREQ_SMALL records' arrays, on the caller's stack (recs
     * and arena_off point here until a request outgrows them): a
     * single-event request allocates neither. NULL when not used. */
    spw_record *recs_s;
    int32_t *off_s;
    spw_buf keys;
    uint8_t *keys_s; /* keys starts on the caller's stack (KEYS_SMALL bytes) */
    int arena_used; /* a record's key is in keys */
    const spw_produce_in *in;
    uint64_t work_need, work_held; /* working memory needed so far, and counted (spw_produce_in.work_add) */
    uint64_t work_max;             /* the request's cap; 0: none */
} vreq;

#define WORK_STEP (256u << 10) /* working memory is counted this much ahead */

/* Counts working memory up to need (and a step ahead): 0, or -1 with res
 * refused 413 when need passes the request's cap (produce.h). */
static int work_to(vreq *v, uint64_t need, spw_produce_res *res)
{
    const spw_produce_in *in = v->in;
    if (need <= v->work_held)
        return 0;
    if (v->work_max && need > v->work_max) {
        spw_produce_refuse_at(res, SPW_SC_TOO_LARGE, NULL, SIZE_MAX,
                              "the request's %u+ events need more working memory than the server allows a request "
                              "(%d x max-request-bytes, at about %zu bytes an event plus its size); send them in "
                              "smaller requests (nothing was appended)",
                              v->n, SPW_PRODUCE_WORK_FACTOR, (size_t)SPW_PRODUCE_WORK_PER_EVENT);
        return -1;
    }
    uint64_t want = need + WORK_STEP;
    if (v->work_max && want > v->work_max)
        want = v->work_max;
    if (in->work_add)
        in->work_add(in->work, want - v->work_held);
    v->work_held = want;
    return 0;
}

static void work_done(vreq *v)
{
    if (v->work_held && v->in->work_add && v->in->work_give)
        v->in->work_give(v->in->work, v->work_held);
    v->work_held = 0;
}

#define VREQ_SMALL 4

/* Frees v's record arrays unless they are the caller's stack ones. */
static void vreq_arrays_free(vreq *v)
{
    if (v->recs != v->recs_s)
        spw_free(v->recs);
    if (v->arena_off != v->off_s)
        spw_free(v->arena_off);
    v->recs = NULL;
    v->arena_off = NULL;
}

/* Doubles v's record arrays (full): 0, or -1 with res refused. Apart
 * from vreq_push, which is inline and most often has room. */
static __attribute__((noinline)) int vreq_grow(vreq *v, spw_produce_res *res)
{
    uint32_t cap = v->cap > VREQ_SMALL ? v->cap * 2 : 16;
    int small = v->recs != NULL && v->recs == v->recs_s;
    spw_record *nr = small ? spw_try_malloc(cap * sizeof *v->recs) : spw_try_realloc(v->recs, cap * sizeof *v->recs);
    if (nr && small)
        memcpy(nr, v->recs, v->n * sizeof *v->recs);
    if (nr)
        v->recs = nr;
    int32_t *no = NULL;
    if (nr) {
        int osmall = v->arena_off != NULL && v->arena_off == v->off_s;
        no = osmall ? spw_try_malloc(cap * sizeof *v->arena_off)
                    : spw_try_realloc(v->arena_off, cap * sizeof *v->arena_off);
        if (no && osmall)
            memcpy(no, v->arena_off, v->n * sizeof *v->arena_off);
    }
    if (no)
        v->arena_off = no;
    if (!nr || !no) {
        res->retry_ms = 1000;
        spw_produce_refuse_at(res, SPW_SC_OVERLOADED, NULL, SIZE_MAX, "out of memory (nothing was appended)");
        return -1;
    }
    v->cap = cap;
    return 0;
}

static inline int vreq_push(vreq *v, const spw_record *r, int32_t off, spw_produce_res *res)
{
    if (v->n == v->cap && vreq_grow(v, res))
        return -1;
    v->recs[v->n] = *r;
    v->arena_off[v->n] = off;
    v->n++;
    /* Counted as it comes: the record, what the submit makes of it, and its
     * encoded bytes (twice when compressed: the records, then the batch). */
    uint64_t bytes = (uint64_t)r->value_len + (r->key_len > 0 ? (uint64_t)r->key_len : 0);
    v->work_need += SPW_PRODUCE_WORK_PER_EVENT + bytes * v->bytes_mult;
    return v->work_need <= v->work_held ? 0 : work_to(v, v->work_need, res); /* counted a step ahead: mostly no call */
}

/* Room for need bytes of keys, moved off the stack when they outgrow it:
 * 0 or SPW_ENOMEM. */
#define KEYS_SMALL 64
static __attribute__((noinline)) int keys_grow(vreq *v, size_t need)
{
    if (v->keys.p != v->keys_s)
        return spw_buf_reserve(&v->keys, need);
    spw_buf b = SPW_BUF_INIT;
    if (spw_buf_reserve(&b, need))
        return SPW_ENOMEM;
    memcpy(b.p, v->keys.p, v->keys.len);
    b.len = v->keys.len;
    v->keys = b;
    return 0;
}

static inline int keys_reserve(vreq *v, size_t need) { return need <= v->keys.cap ? 0 : keys_grow(v, need); }

static void keys_fini(vreq *v)
{
    if (v->keys.p != v->keys_s)
        spw_buf_fini(&v->keys);
    v->keys = (spw_buf)SPW_BUF_INIT;
}

/* Validates one event and adds its record: 0, or -1 with res refused. */
static inline __attribute__((always_inline)) int take_event(vreq *v, const spw_produce_ev *ev,
                                                             spw_produce_res *res)
{
    spw_stream_config *cfg = v->cfg;
    spw_record r = {.key = ev->key, .key_len = ev->key_len, .value = ev->value, .value_len = ev->len,
                    .ts = ev->has_ts ? ev->ts : v->now, .headers = ev->headers, .header_count = ev->header_count};
    if (ev->key_len > 0 && !spw__key_text_ok(ev->key, (size_t)ev->key_len)) {
        spw_produce_refuse_at(res, SPW_SC_BAD_KEY, ev, SIZE_MAX, "keys must be UTF-8 text without control characters");
        return -1;
    }
    if (cfg->format_bytes) {
        if (ev->len > cfg->max_event_bytes) {
            spw_produce_refuse_at(res, SPW_SC_BODY_EVENT_TOO_LARGE, ev, SIZE_MAX,
                                  "event is %u bytes, the stream's max_event_bytes is %u", ev->len,
                                  cfg->max_event_bytes);
            return -1;
        }
        return vreq_push(v, &r, -1, res);
    }
    const char *p = ev->value, *end = p + ev->len, *vend;
    spw_json_span found[2];
    spw_json_error e;
    /* Pointers only when this event needs them: a key or a timestamp that
     * came beside the body (binary records carry their key) is not looked up,
     * and without pointers the scan is plain validation (docs/performance.md). */
    int nptrs = (v->key_i >= 0 && ev->key_len < 0) || (v->ts_i >= 0 && !ev->has_ts) ? v->nptrs : 0;
    if (spw_json_scan(p, end, v->ptrs, nptrs, found, &vend, &e)) {
        spw_produce_refuse_at(res, SPW_SC_INVALID_JSON, ev, e.offset, "%s", e.msg);
        return -1;
    }
    const char *start = p < end && *p == '{' ? p : spw_json_ws(p, end); /* no call without whitespace */
    if (*start != '{') {
        spw_produce_refuse_at(res, SPW_SC_NOT_AN_OBJECT, ev, (size_t)(start - p), "each event must be a JSON object");
        return -1;
    }
    if (vend != end && spw_json_ws(vend, end) != end) {
        if (v->trailing == SPW_PRODUCE_TRAIL_LINE)
            spw_produce_refuse_at(res, SPW_SC_INVALID_JSON, ev, (size_t)(vend - p),
                                  "data after the event on the same line");
        else
            spw_produce_refuse_at(res, SPW_SC_NOT_AN_OBJECT, ev, (size_t)(vend - p),
                                  "each event must be one JSON object");
        return -1;
    }
    size_t len = (size_t)(vend - start);
    if (len > cfg->max_event_bytes) {
        spw_produce_refuse_at(res, SPW_SC_EVENT_TOO_LARGE, ev, (size_t)(start - p),
                              "event is %zu bytes, the stream's max_event_bytes is %u", len, cfg->max_event_bytes);
        return -1;
    }
    r.value = start;
    r.value_len = (uint32_t)len;
    int32_t off = -1;
    if (v->key_i >= 0 && ev->key_len < 0) {
        spw_json_span *k = &found[v->key_i];
        if (k->type == SPW_JSON_NONE || k->type == SPW_JSON_NULL) {
            spw_produce_refuse_at(res, SPW_SC_MISSING_KEY, ev, (size_t)(start - p), "the stream's key %s is missing",
                                  cfg->key);
            return -1;
        }
        if (k->type != SPW_JSON_STRING && k->type != SPW_JSON_NUMBER) {
            spw_produce_refuse_at(res, SPW_SC_BAD_KEY, ev, (size_t)(k->p - p),
                                  "the key %s must be a string or a number", cfg->key);
            return -1;
        }
        if (keys_reserve(v, v->keys.len + k->n)) {
            res->retry_ms = 1000;
            spw_produce_refuse_at(res, SPW_SC_OVERLOADED, ev, SIZE_MAX, "out of memory (nothing was appended)");
            return -1;
        }
        char *dst = (char *)v->keys.p + v->keys.len;
        long kl = (long)k->n;
        if (k->type == SPW_JSON_STRING)
            kl = spw_json_unescape(k, dst, k->n);
        else
            memcpy(dst, k->p, k->n);
        /* The same rule as an explicit key: reads show keys as JSON strings. */
        if (kl < 0 || !spw__key_text_ok((const uint8_t *)dst, (size_t)kl)) {
            spw_produce_refuse_at(res, SPW_SC_BAD_KEY, ev, (size_t)(k->p - p),
                                  "the key %s must be UTF-8 text without control characters", cfg->key);
            return -1;
        }
        off = (int32_t)v->keys.len;
        v->arena_used = 1;
        r.key_len = (int32_t)kl;
        v->keys.len += (size_t)kl;
    }
    if (v->ts_i >= 0 && !ev->has_ts && found[v->ts_i].type != SPW_JSON_NONE &&
        spw_json_int64(&found[v->ts_i], &r.ts)) {
        spw_produce_refuse_at(res, SPW_SC_BAD_TIMESTAMP, ev, (size_t)(found[v->ts_i].p - p),
                              "the timestamp %s must be an integer of milliseconds since the Unix epoch",
                              cfg->timestamp);
        return -1;
    }
    return vreq_push(v, &r, off, res);
}

/* The rules of a versioned stream's request (see the caller): 0, or -1
 * with res refused. */
static int versioned_check(const vreq *v, const spw_produce_in *in, uint32_t partition, int expect,
                           spw_produce_res *res)
{
    const spw_stream_config *cfg = v->cfg;
    for (uint32_t i = 0; i < v->n; i++) {
        const spw_record *r = &v->recs[i];
        if (r->key_len < 0) {
            refuse(res, SPW_SC_MISSING_KEY,
                   "event %u has no key: every event of a versioned stream belongs to a key (%s); nothing was "
                   "appended",
                   i, cfg->format_bytes || !cfg->key[0] ? "give it one" : "the stream's key field");
            res->at_event = 1;
            res->index = i;
            return -1;
        }
        if (partition != UINT32_MAX && spw_stream_partition(r->key, (size_t)r->key_len, cfg->partitions) != partition) {
            refuse(res, SPW_SC_BAD_PARAMETER,
                   "event %u: a versioned stream routes each key to its own partition (%u), not to partition %u; "
                   "send it without a partition",
                   i, spw_stream_partition(r->key, (size_t)r->key_len, cfg->partitions), partition);
            return -1;
        }
        if (expect != SPW_ES_ANY && i > 0 &&
            (r->key_len != v->recs[0].key_len || memcmp(r->key, v->recs[0].key, (size_t)r->key_len) != 0)) {
            refuse(res, SPW_SC_MIXED_KEYS,
                   "a request with an expected version holds events of one key only; event %u has another key "
                   "than event 0 (nothing was appended)",
                   i);
            return -1;
        }
    }
    (void)in;
    return 0;
}

/* A submitted request until its answer. */
typedef struct preq {
    void (*post)(void *loop, void (*fn)(void *), void *arg);
    void *loop;
    void (*done)(spw_produce_res *res, void *user);
    void *user;
    spw_produce *pr;
    spw_rl_answer rl;
    int want_parts;
    /* ack=replicated: after the fsync, the wait for the stream's
     * replicate_to sink (svc/replicate.h); its outcome and sentence */
    int replicated;
    int repl_outcome;
    char repl_why[400];
} preq;

/* The answer of a replicated request whose replica did not confirm it
 * (outcome, why: svc/replicate.h). Durable here either way: the sink
 * still delivers it, and a retry with the same dedupe key appends
 * nothing. */
static void repl_refuse(spw_produce_res *res, int outcome, const char *why, const spw_stream_config *c)
{
    res->retry_ms = 1000;
    if (outcome == SPW_REPL_REJECTED) {
        res->retry_ms = 0; /* a retry gets the same answer */
        res->code = SPW_SC_REPLICATION_REJECTED;
        snprintf(res->msg, sizeof res->msg,
                 "the events are durable here but will never be in stream %s's replica: %s; the record is in the "
                 "sink's dead-letter stream",
                 c->name, why && why[0] ? why : "its sink dead-lettered a record of the request");
    } else if (outcome == SPW_REPL_UNAVAILABLE) {
        res->code = SPW_SC_REPLICATION_UNAVAILABLE;
        snprintf(res->msg, sizeof res->msg,
                 "the events are durable here but their replication cannot be confirmed: %s; a retry with the same "
                 "dedupe key appends nothing",
                 why && why[0] ? why : "the sink went");
    } else {
        res->code = SPW_SC_REPLICATION_TIMEOUT;
        snprintf(res->msg, sizeof res->msg,
                 "the events are durable here but stream %s's replica did not confirm them within "
                 "replication_timeout_ms (%lld ms)%s%s; they are still being delivered, and a retry with the same "
                 "dedupe key appends nothing",
                 c->name, (long long)c->replication_timeout_ms, why && why[0] ? ": " : "", why ? why : "");
    }
}

static void request_answer(void *arg)
{
    enum { SLOTS_SMALL = 8 };
    spw_dd_slot slots_s[SLOTS_SMALL];
    preq *q = arg;
    spw_produce *pr = q->pr;
    spw_produce_res res = {.rl = q->rl, .n_events = pr->n_events};
    int err = atomic_load(&pr->err);
    if (err == SPW_EDELETED) {
        res.code = SPW_SC_NO_SUCH_STREAM;
        snprintf(res.msg, sizeof res.msg,
                 "stream %s was deleted before these events were written: nothing of them is acknowledged",
                 pr->s->cfg.name);
    } else if (err) {
        res.code = spw_sc_disk(err, 0, res.msg, sizeof res.msg);
        if (res.code == SPW_SC_OK)
            res.code = SPW_SC_WRITE_FAILED;
    } else if (q->replicated && q->repl_outcome != SPW_REPL_OK) {
        repl_refuse(&res, q->repl_outcome, q->repl_why, &pr->s->cfg);
    } else {
        res.nslots = pr->n_slots;
        /* A few partitions' slots on the stack (taken back before the
         * res_fini below). */
        res.slots = pr->n_slots <= SLOTS_SMALL ? slots_s : spw_xmalloc(pr->n_slots * sizeof *res.slots);
        for (uint32_t k = 0; k < pr->n_slots; k++)
            res.slots[k] = (spw_dd_slot){.partition = pr->slots[k].partition,
                                         .first_offset = pr->slots[k].first_offset,
                                         .count = pr->slots[k].count};
        res.first_ticket = pr->first_ticket;
        res.ids_known = !pr->ids_unknown;
        res.superseded = pr->superseded;
        res.n_superseded = pr->n_superseded;
        /* borrowed from pr, which outlives the call of done */
        res.version_of = pr->version_of;
        res.vers = pr->vers;
        res.n_vers = pr->n_vers;
        if (q->want_parts) {
            res.part_of = spw_xmalloc((pr->n_events ? pr->n_events : 1) * sizeof *res.part_of);
            uint64_t listed = 0;
            for (uint32_t k = 0; k < pr->n_slots; k++)
                listed += pr->slots[k].count;
            if (listed < pr->n_events) /* coalescing: what no slot lists was superseded */
                for (uint32_t i = 0; i < pr->n_events; i++)
                    res.part_of[i] = UINT32_MAX;
            for (uint32_t k = 0; k < pr->n_slots; k++)
                for (uint32_t j = 0; j < pr->slots[k].count; j++)
                    res.part_of[pr->order[pr->slots[k].first_event + j]] = pr->slots[k].partition;
        }
    }
    q->done(&res, q->user);
    if (res.slots == slots_s)
        res.slots = NULL;
    spw_produce_res_fini(&res);
    spw_hist_add(&pr->svc->produce_latency, (spw_mono_ns() - pr->t0) / 1000);
    spw_produce_free(pr);
    spw_free(q);
}

static void repl_done(void *arg, int outcome, const char *why)
{
    preq *q = arg;
    q->repl_outcome = outcome == SPW_REPL_STOPPING ? SPW_REPL_TIMEOUT : outcome;
    snprintf(q->repl_why, sizeof q->repl_why, "%s", why ? why : "");
    q->post(q->loop, request_answer, q);
}

/* A replicated request answered from the dedupe table: its stored
 * outcome once the replica holds its records too. */
typedef struct dupq {
    void (*post)(void *loop, void (*fn)(void *), void *arg);
    void *loop;
    void (*done)(spw_produce_res *res, void *user);
    void *user;
    spw_stream *s;
    spw_produce_res res;
    int outcome;
    char why[400];
} dupq;

static void dup_answer(void *arg)
{
    dupq *d = arg;
    if (d->outcome != SPW_REPL_OK) {
        spw_produce_res_fini(&d->res);
        d->res = (spw_produce_res){.n_events = d->res.n_events};
        repl_refuse(&d->res, d->outcome, d->why, &d->s->cfg);
    }
    d->done(&d->res, d->user);
    spw_produce_res_fini(&d->res);
    spw_stream_put(d->s);
    spw_free(d);
}

static void dup_repl_done(void *arg, int outcome, const char *why)
{
    dupq *d = arg;
    d->outcome = outcome == SPW_REPL_STOPPING ? SPW_REPL_TIMEOUT : outcome;
    snprintf(d->why, sizeof d->why, "%s", why ? why : "");
    d->post(d->loop, dup_answer, d);
}

static void request_done(spw_produce *pr, void *user)
{
    preq *q = user;
    q->pr = pr;
    if (q->replicated && atomic_load(&pr->err) == 0) {
        /* fsynced here: now the replica (svc/replicate.h) */
        spw_dd_slot sl[64], *slots = pr->n_slots <= 64 ? sl : spw_xmalloc(pr->n_slots * sizeof *slots);
        for (uint32_t k = 0; k < pr->n_slots; k++)
            slots[k] = (spw_dd_slot){.partition = pr->slots[k].partition, .first_offset = pr->slots[k].first_offset,
                                     .count = pr->slots[k].count};
        const spw_stream_config *c = &pr->s->cfg;
        spw_repl_wait(pr->svc->repl, c->replicate_to, c->name, pr->s->incarnation, slots, pr->n_slots,
                      (uint64_t)c->replication_timeout_ms, repl_done, q);
        if (slots != sl)
            spw_free(slots);
        return;
    }
    q->post(q->loop, request_answer, q);
}

/* The answer of a request the dedupe table holds: its stored outcome. */
static void answer_stored(spw_produce_res *res, const spw_produce_in *in, const vreq *v, uint32_t partition,
                          uint64_t key, spw_dd_result *stored)
{
    res->code = SPW_SC_OK;
    res->duplicate = 1;
    res->n_events = stored->n_events;
    res->nslots = stored->nslots;
    res->slots = spw_xmalloc((stored->nslots ? stored->nslots : 1) * sizeof *res->slots);
    memcpy(res->slots, stored->slots, stored->nslots * sizeof *res->slots);
    res->first_ticket = stored->first_ticket;
    res->ids_known = stored->ids_known;
    if (in->want_parts) {
        res->part_of = spw_xmalloc((v->n ? v->n : 1) * sizeof *res->part_of);
        spw__produce_route_stored(in->s, v->recs, v->n, partition, key, stored->slots, stored->nslots,
                                  res->part_of);
    }
    /* A versioned stream's duplicate: the versions the original got, from
     * its records in the log (a retry's answer is the first's). */
    if (in->s->cfg.versioned && stored->complete && v->n == stored->n_events) {
        res->version_of =
            spw__produce_stored_versions(in->s, v->recs, v->n, partition, key, stored->slots, stored->nslots);
        if (res->version_of) {
            spw__produce_versions(v->recs, v->n, res->version_of, &res->vers, &res->n_vers, &res->ver_keys);
            res->owns_vers = 1;
        }
    }
}

/*
 * A request from its dedupe answer d (-1: not keyed) on: the answer of a
 * stored or refused key, the rate limit, the submit. 1: answered now (res),
 * or 0: submitted (the answer comes through in->done; the stream reference
 * is the produce's). REQUIRES: on the request's loop; v validated, and
 * po, stored as step 4 left them.
 */
static int request_tail(spw_svc *svc, const spw_produce_in *in, vreq *v, spw_produce_opts *po, spw_dd_result *stored,
                        int d, int is_http_key, spw_produce_res *res)
{
    int replicated = (in->ack < 0 ? (int)in->s->cfg.ack : in->ack) == SPW_ACK_REPLICATED;
    /* 4. Dedupe's answer. */
    if (d >= 0) {
        const char *what = is_http_key ? "a request with this Idempotency-Key"
                                       : "this producer's request with the same sequence";
        switch (d) {
        case SPW_DD_DONE:
            atomic_fetch_add(&svc->duplicates, 1);
            if (replicated) { /* answered once the replica holds it too */
                spw_stream *s = in->s;
                const spw_stream_config *cfg = &s->cfg;
                dupq *dq = spw_xcalloc(1, sizeof *dq);
                *dq = (dupq){.post = in->post, .loop = in->loop, .done = in->done, .user = in->user, .s = s};
                answer_stored(&dq->res, in, v, po->partition, po->idem_key, stored);
                spw_repl_wait(svc->repl, cfg->replicate_to, cfg->name, s->incarnation, dq->res.slots, dq->res.nslots,
                              (uint64_t)cfg->replication_timeout_ms, dup_repl_done, dq);
                return 0; /* the stream reference is dq's now */
            }
            answer_stored(res, in, v, po->partition, po->idem_key, stored);
            return 1;
        case SPW_DD_FULL:
            res->retry_ms = 1000;
            refuse(res, SPW_SC_DEDUPE_FULL,
                   "the server remembers dedupe-max-keys %s, all inside their windows; a new %s is refused rather "
                   "than an older one forgotten; retry later (nothing was appended)",
                   is_http_key ? "idempotency keys" : "producer sequences", is_http_key ? "key" : "one");
            return 1;
        case SPW_DD_BUSY:
            res->retry_ms = is_http_key ? 1000 : 20;
            refuse(res, SPW_SC_IN_PROGRESS, "%s is still being written; retry to get its answer", what);
            return 1;
        case SPW_DD_UNRESOLVED:
            res->retry_ms = is_http_key ? 1000 : 20;
            refuse(res, SPW_SC_IN_PROGRESS,
                   "%s failed while being written and may be partly stored; a partition it wrote to is still "
                   "recovering: retry to get its outcome",
                   what);
            return 1;
        case SPW_DD_CONFLICT:
        case SPW_DD_REUSED:
            spw_svc_reject(svc, in->s, SPW_REJ_INVALID);
            if (is_http_key)
                refuse(res, SPW_SC_KEY_REUSED,
                       "this Idempotency-Key was used for a request with %s within the stream's dedupe window; "
                       "nothing was appended",
                       d == SPW_DD_CONFLICT ? "a different size" : "different events");
            else
                refuse(res, SPW_SC_KEY_REUSED,
                       "producer %" PRIu64 " used sequence %u for a request %s within the stream's dedupe "
                       "window; nothing was appended (a client takes a new producer id before its sequence wraps)",
                       in->producer_id, in->producer_seq,
                       d == SPW_DD_CONFLICT ? "of another size" : "with different records");
            return 1;
        case SPW_DD_UNREADABLE:
            spw_svc_reject(svc, in->s, SPW_REJ_DISK);
            refuse(res, SPW_SC_DAMAGED,
                   "%s was stored before, and its stored records cannot be read back to compare (damaged on disk: "
                   "spillway check reports where); nothing was appended",
                   what);
            return 1;
        case SPW_DD_PARTIAL:
            po->stored = stored;
            break;
        default:
            break;
        }
    }

    /* 5. The rate limit: one table for every front end, keyed by the
     * tenant or the client's address; refused means nothing appended. */
    char rkey[SPW_RL_KEY_MAX];
    size_t rkl = 0;
    if (svc->rl) {
        int rv = spw_rl_admit(svc->rl, &in->s->cfg, in->tenant, in->peer, v->n, spw_mono_ns(), &res->rl, rkey, &rkl);
        if (rv != SPW_RL_ALLOWED) {
            spw_svc_reject(svc, in->s, SPW_REJ_RATE_LIMIT);
            if (rv == SPW_RL_OVER_BURST)
                refuse(res, SPW_SC_OVER_BURST,
                       "a request of %u events can never pass the rate limit of stream %s: at most %" PRIu64
                       " events pass at once; send smaller requests (nothing was appended)",
                       v->n, in->s->cfg.name, res->rl.limit);
            else {
                res->retry_ms = res->rl.retry_after_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)res->rl.retry_after_ms;
                refuse(res, SPW_SC_RATE_LIMITED,
                       "rate limit of stream %s exceeded: %" PRIu64 " of %" PRIu64 " events left, %u asked; retry "
                       "in %" PRIu64 " ms (nothing was appended)",
                       in->s->cfg.name, res->rl.remaining, res->rl.limit, v->n, res->rl.retry_after_ms);
            }
            if (po->dd)
                spw_dd_finish(svc->dd, po->dd, NULL, 0);
            return 1;
        }
    }

    /* 6. Submit. */
    preq *q = spw_xmalloc(sizeof *q);
    *q = (preq){.post = in->post, .loop = in->loop, .done = in->done, .user = in->user, .rl = res->rl,
                .want_parts = in->want_parts, .replicated = replicated};
    int r = spw_produce_submit_ex(svc, in->s, v->recs, v->n, po, request_done, q);
    if (r == 0) {
        return 0; /* the stream reference belongs to the produce now */
    }
    spw_free(q);
    if (po->dd)
        spw_dd_finish(svc->dd, po->dd, NULL, 0);
    if (rkl) /* not appended: the events do not count against the limit */
        spw_rl_refund(svc->rl, rkey, rkl, v->n, spw_mono_ns());
    res->rl = (spw_rl_answer){0};
    if (r == SPW_EAGAIN) {
        res->retry_ms = spw_pressure_retry_ms(&svc->pressure);
        refuse(res, SPW_SC_BACKPRESSURE,
               "the server is writing as fast as the disk allows and its pending budget is full; retry after %u ms",
               res->retry_ms);
    } else if (r == SPW_ECONFLICT) {
        char eb[24];
        atomic_fetch_add(&svc->version_conflicts, 1);
        res->expect = po->expect;
        res->expected_version = po->expected_version;
        res->current_version = *po->current;
        refuse(res, SPW_SC_VERSION_CONFLICT,
               "the key is at version %llu, and the request expected %s; nothing was appended",
               (unsigned long long)*po->current, spw_es_expect_str((spw_es_expect)po->expect, po->expected_version, eb, sizeof eb));
    } else if (r == SPW_EDELETED) {
        refuse(res, SPW_SC_NO_SUCH_STREAM, "the stream was deleted while the request was handled; nothing was "
                                           "appended");
    } else if (r == SPW_EMSGSIZE) {
        refuse(res, SPW_SC_TOO_LARGE, "the request's batches exceed max_pending_bytes");
    } else if (r == SPW_ENOMEM) {
        res->retry_ms = 1000;
        refuse(res, SPW_SC_OVERLOADED, "out of memory (nothing was appended)");
    } else if ((res->code = spw_sc_disk(r, 1, res->msg, sizeof res->msg)) == SPW_SC_OK) {
        refuse(res, SPW_SC_INTERNAL, "encoding failed: %s", spw_strerror(r));
    }
    return 1;
}

/* ---- a keyed request parked while the log is read for its dedupe ---- */

/* Everything the request needs after spw_produce_request returned: its
 * records copied (the front end's buffers go when the call returns), its
 * working memory still counted, its dedupe state, its stream reference. */
typedef struct dd_parked {
    spw_svc *svc;
    spw_produce_in in; /* a copy: tenant and peer point at copies below; in.s is the request's reference */
    vreq v;            /* v.in is &in; v.recs point into data */
    uint8_t *data;     /* the records' keys, values and headers */
    spw_kv *hdrs;
    char *tenant, *peer;
    spw_produce_opts po;
    uint64_t current;
    spw_dd_result stored;
    int d, is_http_key;
    spw_produce_res res;
} dd_parked;

static void dd_parked_free(dd_parked *p)
{
    spw_dd_result_free(&p->stored);
    spw_free(p->v.recs);
    spw_free(p->v.arena_off);
    spw_buf_fini(&p->v.keys);
    work_done(&p->v);
    spw_free(p->data);
    spw_free(p->hdrs);
    spw_free(p->tenant);
    spw_free(p->peer);
    spw_free(p);
}

/* On the request's loop again: the rest of the request, its answer
 * through in.done. */
static void dd_resume(void *arg)
{
    dd_parked *p = arg;
    if (request_tail(p->svc, &p->in, &p->v, &p->po, &p->stored, p->d, p->is_http_key, &p->res) == 1) {
        p->in.done(&p->res, p->in.user);
        spw_produce_res_fini(&p->res);
        spw_stream_put(p->in.s);
    }
    dd_parked_free(p);
}

/* On an I/O worker: the dedupe step's reads (produce_dedupe.c). */
static void dd_read(void *arg)
{
    dd_parked *p = arg;
    p->d = spw__produce_dd_continue(p->svc, p->in.s, p->po.idem_key, p->v.recs, p->v.n, p->po.partition, p->d,
                                    &p->po.dd, &p->stored);
    p->in.post(p->in.loop, dd_resume, p);
}

static char *dup_or_null(const char *s) { return s ? spw_xstrdup(s) : NULL; }

/*
 * Parks the request while an I/O worker reads the log for its dedupe
 * answer d: its records are copied (v stays the caller's, to free as
 * ever), po's dedupe entry, stored and the stream reference move to the
 * parked request, which goes on on its loop (dd_resume) and is answered
 * through in->done. 0, or -1: not parked (no workers, no post, no memory
 * for the copy, the queue full) and nothing moved — the caller goes on
 * here.
 */
static int dd_park(spw_svc *svc, const spw_produce_in *in, vreq *v, spw_produce_opts *po, int d, spw_dd_result *stored,
                   int is_http_key)
{
    if (!svc->io || !in->post || !in->done)
        return -1;
    /* The records' bytes, copied into one block. */
    size_t bytes = 0, nh = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        const spw_record *r = &v->recs[i];
        bytes += (r->key_len > 0 ? (size_t)r->key_len : 0) + r->value_len;
        for (uint32_t h = 0; h < r->header_count; h++)
            bytes += (size_t)r->headers[h].key_len + r->headers[h].value_len;
        nh += r->header_count;
    }
    dd_parked *p = spw_try_malloc(sizeof *p);
    uint8_t *data = spw_try_malloc(bytes + 1);
    spw_kv *hdrs = spw_try_malloc((nh ? nh : 1) * sizeof *hdrs);
    spw_record *recs = spw_try_malloc((v->n ? v->n : 1) * sizeof *recs);
    if (!p || !data || !hdrs || !recs) {
        spw_free(p);
        spw_free(data);
        spw_free(hdrs);
        spw_free(recs);
        return -1;
    }
    memset(p, 0, sizeof *p);
    size_t at = 0, hk = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        spw_record *r = &recs[i];
        *r = v->recs[i];
        if (r->key_len > 0) {
            memcpy(data + at, r->key, (size_t)r->key_len);
            r->key = data + at;
            at += (size_t)r->key_len;
        }
        if (r->value_len)
            memcpy(data + at, r->value, r->value_len);
        r->value = data + at;
        at += r->value_len;
        if (r->header_count) {
            spw_kv *hs = hdrs + hk;
            for (uint32_t h = 0; h < r->header_count; h++) {
                const spw_kv *o = &r->headers[h];
                hs[h] = *o;
                memcpy(data + at, o->key, o->key_len);
                hs[h].key = data + at;
                at += o->key_len;
                memcpy(data + at, o->value, o->value_len);
                hs[h].value = data + at;
                at += o->value_len;
            }
            r->headers = hs;
            hk += r->header_count;
        }
    }
    p->svc = svc;
    p->data = data;
    p->hdrs = hdrs;
    p->in = *in;
    p->tenant = dup_or_null(in->tenant);
    p->peer = dup_or_null(in->peer);
    p->in.tenant = p->tenant;
    p->in.peer = p->peer;
    p->in.idempotency_key = NULL; /* used: the key is po.idem_key */
    p->in.next = NULL;
    p->in.src = NULL;
    p->v = *v;
    p->v.in = &p->in;
    p->v.recs = recs;
    p->v.cap = v->n;
    p->v.arena_off = NULL;
    p->v.recs_s = NULL;
    p->v.off_s = NULL;
    p->v.keys = (spw_buf)SPW_BUF_INIT;
    p->v.keys_s = NULL;
    p->v.work_held = 0;
    p->po = *po;
    p->current = 0;
    p->po.current = &p->current;
    p->stored = *stored;
    p->d = d;
    p->is_http_key = is_http_key;
    /* The copy is working memory of the request until it is answered
     * (what the caller counted is given back when it returns). */
    uint64_t work = bytes + nh * sizeof *hdrs + (uint64_t)v->n * sizeof *recs;
    if (in->work_add && in->work_give) {
        in->work_add(in->work, work);
        p->v.work_held = work;
    }
    if (spw_workq_submit(svc->io, dd_read, p) != 0) {
        p->stored = (spw_dd_result){0}; /* still the caller's */
        dd_parked_free(p);
        return -1;
    }
    /* Moved: the caller keeps none of it. */
    *stored = (spw_dd_result){0};
    po->dd = NULL;
    return 0;
}

int spw_produce_holding(spw_svc *svc) { return spw_pressure_level(&svc->pressure) >= 3; }

int spw_produce_hold(spw_svc *svc, const char *name, size_t sl, int prio)
{
    if (!spw_produce_holding(svc))
        return 0;
    spw_stream *s = sl && spw_stream_name_ok(name, sl) ? spw_stream_get(svc->cat, name, sl) : NULL;
    if (prio < 0) {
        if (!s)
            return 0;
        prio = s->cfg.priority;
    }
    if (prio != 0)
        spw_svc_reject(svc, s, SPW_REJ_BACKPRESSURE);
    if (s)
        spw_stream_put(s);
    return prio != 0;
}

int spw_produce_request(spw_svc *svc, const spw_produce_in *in, spw_produce_res *res)
{
    memset(res, 0, sizeof *res);
    spw_stream *s = in->s;
    spw_stream_config *cfg = &s->cfg;
    spw_ack ack = in->ack < 0 ? cfg->ack : (spw_ack)in->ack;
    uint32_t partition = in->partition;
    int prio = in->priority < 0 ? cfg->priority : in->priority;
    spw_record recs_s[VREQ_SMALL];
    int32_t off_s[VREQ_SMALL];
    uint8_t keys_s[KEYS_SMALL]; /* a single event's key taken from its JSON: no allocation */
    vreq v = {.cfg = cfg, .key_i = -1, .ts_i = -1, .bytes_mult = cfg->compression ? 2 : 1, .trailing = in->trailing,
              .now = spw_wall_ms(), .in = in, .work_max = svc->max_request_bytes * SPW_PRODUCE_WORK_FACTOR,
              .keys = {.p = keys_s, .cap = sizeof keys_s}, .keys_s = keys_s};
    spw_dd_result stored = {0};
    uint64_t current = 0;
    spw_produce_opts po = {.partition = partition, .ack = ack, .producer_id = in->producer_id,
                           .producer_seq = in->producer_seq, .supersede_ok = in->supersede_ok, .current = &current};
    int is_http_key = in->idempotency_key && in->idempotency_key[0];
    int keyed = (is_http_key || in->producer_id) && cfg->dedupe_window_ms > 0 && svc->dd;

    /* 1. What can never succeed. */
    int replicated = ack == SPW_ACK_REPLICATED;
    if (replicated) {
        char why[400];
        if (!cfg->replicate_to[0]) {
            refuse(res, SPW_SC_NO_REPLICATION,
                   "ack=replicated needs a stream with \"replicate_to\" (a sink whose commits replicate); stream %s "
                   "has none (nothing was appended)",
                   cfg->name);
            goto answered;
        }
        if (!svc->repl || !spw_repl_ready(svc->repl, cfg->replicate_to, cfg->name, s->incarnation, why, sizeof why)) {
            res->retry_ms = 1000;
            refuse(res, SPW_SC_REPLICATION_UNAVAILABLE, "%s", svc->repl ? why : "replication is not running");
            goto answered;
        }
        po.ack = SPW_ACK_FSYNC; /* durable here first, then the replica */
    }
    if (partition != UINT32_MAX && partition >= cfg->partitions) {
        refuse(res, SPW_SC_NO_SUCH_PARTITION, "partition %u does not exist (the stream has %u)", partition,
               cfg->partitions);
        goto answered;
    }
    if (in->has_expect && !cfg->versioned) {
        refuse(res, SPW_SC_NOT_VERSIONED,
               "stream %s is not versioned: an expected version needs a stream created with \"versioned\": true "
               "(nothing was appended)",
               cfg->name);
        goto answered;
    }
    if (in->has_expect && (in->expect < SPW_ES_ANY || in->expect > SPW_ES_EXACT ||
                           (in->expect == SPW_ES_EXACT && in->expected_version > SPW_VERSION_MAX))) {
        refuse(res, SPW_SC_BAD_EXPECTED_VERSION,
               "the expected version must be any, none, exists or an integer from 0 to %llu",
               (unsigned long long)SPW_VERSION_MAX);
        goto answered;
    }
    if (in->has_expect) {
        po.expect = in->expect;
        po.expected_version = in->expected_version;
        if (po.expect == SPW_ES_EXACT && po.expected_version == 0)
            po.expect = SPW_ES_NONE; /* version 0: no event yet */
    }
    /* 2. Admission, before any work on the events (under overload,
     * refusing must be cheap). */
    uint32_t retry_ms;
    const char *refused = admit(svc, s, prio, &retry_ms);
    if (refused) {
        res->retry_ms = retry_ms;
        if (refused[0] == 's')
            refuse(res, SPW_SC_SHED,
                   "the server is shedding load of this priority to keep more important writes flowing; retry "
                   "after %u ms",
                   retry_ms);
        else
            refuse(res, SPW_SC_BACKPRESSURE,
                   "the server is writing as fast as the disk allows and its pending budget is full; retry after "
                   "%u ms",
                   retry_ms);
        goto answered;
    }
    /* 3. Every event, before anything is appended. */
    if (!cfg->format_bytes) {
        if (cfg->key[0] && spw_json_ptr_compile(&v.ptrs[v.nptrs], cfg->key) == 0)
            v.key_i = v.nptrs++;
        if (cfg->timestamp[0] && spw_json_ptr_compile(&v.ptrs[v.nptrs], cfg->timestamp) == 0)
            v.ts_i = v.nptrs++;
    }
    /* A bound (blank lines are no events) only when its memory cannot
     * refuse the request: else the records grow as they come, and a body
     * of blank lines is still answered no_events. */
    uint32_t count = in->count_hint;
    if (!count && in->count_bound > VREQ_SMALL &&
        (!v.work_max || (uint64_t)in->count_bound * SPW_PRODUCE_WORK_PER_EVENT <= v.work_max))
        count = in->count_bound;
    if (count) {
        /* The front end's count (bounded by the request's size): the
         * records are allocated at once, after their memory is taken. */
        if (work_to(&v, (uint64_t)count * SPW_PRODUCE_WORK_PER_EVENT, res)) {
            spw_svc_reject(svc, s, res->code == SPW_SC_OVERLOADED ? SPW_REJ_BACKPRESSURE : SPW_REJ_INVALID);
            goto answered;
        }
        v.recs = spw_try_malloc(count * sizeof *v.recs);
        v.arena_off = spw_try_malloc(count * sizeof *v.arena_off);
        if (!v.recs || !v.arena_off) {
            res->retry_ms = 1000;
            refuse(res, SPW_SC_OVERLOADED, "out of memory (nothing was appended)");
            goto answered;
        }
        v.cap = count;
    } else {
        v.recs = v.recs_s = recs_s;
        v.arena_off = v.off_s = off_s;
        v.cap = VREQ_SMALL;
    }
    /* more: 0 at the end, -1 the request does not decode, 1 an event was
     * refused. take_event is inline in both loops. */
    int more;
    if (in->next_many) {
        spw_produce_ev evs[SPW_PRODUCE_EVS];
        for (;;) {
            int got = in->next_many(in->src, evs, SPW_PRODUCE_EVS, res);
            if (got <= 0) {
                more = got;
                break;
            }
            int i = 0;
            while (i < got && !take_event(&v, &evs[i], res))
                i++;
            if (i < got) {
                more = 1;
                break;
            }
        }
    } else {
        spw_produce_ev ev;
        while ((more = in->next(in->src, &ev, res)) == 1)
            if (take_event(&v, &ev, res))
                break;
    }
    if (more != 0) {
        spw_svc_reject(svc, s, res->code == SPW_SC_OVERLOADED ? SPW_REJ_BACKPRESSURE : SPW_REJ_INVALID);
        goto answered;
    }
    if (v.n == 0) {
        spw_svc_reject(svc, s, SPW_REJ_INVALID);
        refuse(res, SPW_SC_NO_EVENTS, "the body holds no events");
        goto answered;
    }
    res->n_events = v.n;
    if (v.arena_used) /* the arena is final: keys become pointers (none taken from JSON: nothing to do) */
        for (uint32_t i = 0; i < v.n; i++)
            if (v.arena_off[i] >= 0)
                v.recs[i].key = v.keys.p + v.arena_off[i];
    /* A versioned stream: every event is of a key (an aggregate), routed
     * by its key (a key's versions are kept by its partition), and a
     * request with an expectation holds one key. */
    if (cfg->versioned && versioned_check(&v, in, partition, po.expect, res)) {
        spw_svc_reject(svc, s, SPW_REJ_INVALID);
        goto answered;
    }

    /* 4. Dedupe: a retry within the window gets the first answer. What
     * reads the log for it (produce_int.h) is done on an I/O worker, and
     * the request goes on from there on its loop (dd_park). */
    int d = -1;
    if (keyed) {
        const char *tenant = in->tenant ? in->tenant : "";
        po.idem_key = is_http_key ? spw_dd_http_key(svc->dd, tenant, in->idempotency_key)
                                  : spw_dd_producer_key(svc->dd, tenant, in->producer_id, in->producer_seq);
        d = spw_dd_begin(svc->dd, s->uid, po.idem_key, v.n, spw_wall_ms(), &po.dd, &stored);
        if (spw__produce_dd_needs_disk(d, &stored) && dd_park(svc, in, &v, &po, d, &stored, is_http_key) == 0) {
            /* The parked request has its own copy, the dedupe entry and s. */
            vreq_arrays_free(&v);
            keys_fini(&v);
            work_done(&v);
            return 0;
        }
        d = spw__produce_dd_continue(svc, s, po.idem_key, v.recs, v.n, partition, d, &po.dd, &stored);
    }
    if (request_tail(svc, in, &v, &po, &stored, d, is_http_key, res) == 0) {
        spw_dd_result_free(&stored);
        vreq_arrays_free(&v);
        keys_fini(&v);
        work_done(&v);
        return 0; /* the stream reference belongs to the produce now */
    }
answered:
    spw_dd_result_free(&stored);
    vreq_arrays_free(&v);
    keys_fini(&v);
    work_done(&v);
    spw_stream_put(s);
    return 1;
}
