/*
 * The produce service: see produce.h (the order of the steps, the one
 * answer) and docs/architecture.md "The service layer".
 *
 * Here: the submit step (grouping by partition, encoding, the budget,
 * appending, completion), then spw_produce_request (admission,
 * validation, dedupe, rate limit, then submit) and the service's metrics.
 * The dedupe step (resolving a request a failure cut, comparing a retry
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
#include "svc/svc.h"
#include "svc/coalesce.h"
#include "svc/consume.h"
#include "svc/metrics.h"
#include "svc/produce_int.h"

/* ---- submit ---- */


/* pr's outcome as a dedupe result (slots point into a buffer of n). */
static void pr_result(const spw_produce *pr, spw_dd_result *r, spw_dd_slot *slots)
{
    for (uint32_t i = 0; i < pr->n_slots; i++)
        slots[i] = (spw_dd_slot){.partition = pr->slots[i].partition,
                                 .count = pr->slots[i].count,
                                 .first_offset = pr->slots[i].first_offset,
                                 .fp = pr->slots[i].fp,
                                 .fp_known = 1};
    *r = (spw_dd_result){.n_events = pr->n_events,
                         .first_ticket = pr->first_ticket,
                         .complete = 1,
                         .ids_known = !pr->ids_unknown,
                         .nslots = pr->n_slots,
                         .slots = slots};
}

void spw_produce_free(spw_produce *pr)
{
    spw_stream_put(pr->s);
    spw_free(pr->order);
    spw_free(pr->superseded);
    spw_free(pr);
}

/* One of pr's counts is done; the last one finishes the request. */
static void produce_unref(spw_produce *pr)
{
    if (atomic_fetch_sub(&pr->pending, 1) == 1) {
        spw_svc *svc = pr->svc;
        int err = atomic_load(&pr->err);
        if (pr->dd) {
            if (err) {
                /* Handed to the log and failed: a batch may be stored all
                 * the same (another partition's append succeeded; the
                 * failed partition's recovery kept it whole). The key stays
                 * indeterminate until a retry resolves it (dedupe.h). */
                spw_dd_slot *known = spw_xmalloc((pr->n_slots ? pr->n_slots : 1) * sizeof *known);
                uint32_t *unknown = spw_xmalloc((pr->n_slots ? pr->n_slots : 1) * sizeof *unknown);
                uint32_t nk = 0, nu = 0;
                for (uint32_t i = 0; i < pr->n_slots; i++) {
                    const spw_produce_part *sl = &pr->slots[i];
                    if (sl->stored)
                        known[nk++] = (spw_dd_slot){.partition = sl->partition, .count = sl->count,
                                                    .first_offset = sl->first_offset, .fp = sl->fp, .fp_known = 1};
                    else
                        unknown[nu++] = sl->partition;
                }
                spw_dd_result kr = {.n_events = pr->n_events, .nslots = nk, .slots = known};
                spw_dd_fail(svc->dd, pr->dd, &kr, unknown, nu, pr->first_ticket,
                            spw_wall_ms() + pr->s->cfg.dedupe_window_ms);
                spw_free(known);
                spw_free(unknown);
            } else {
                spw_dd_slot *slots = spw_xmalloc((pr->n_slots ? pr->n_slots : 1) * sizeof *slots);
                spw_dd_result res;
                pr_result(pr, &res, slots);
                spw_dd_finish(svc->dd, pr->dd, &res, spw_wall_ms() + pr->s->cfg.dedupe_window_ms);
                spw_free(slots);
            }
            pr->dd = NULL;
        }
        if (err == 0) {
            /* Events written: superseded ones are counted by the coalescer. */
            atomic_fetch_add(&pr->s->events_in, pr->n_events - pr->n_superseded);
            atomic_fetch_add(&pr->s->bytes_in, pr->bytes);
            atomic_fetch_add(&svc->events_in, pr->n_events - pr->n_superseded);
            atomic_fetch_add(&svc->bytes_in, pr->bytes);
            /* Parked consumer-group polls: records at ack < fsync are not
             * visible yet, and the waiter asks for their fsync; the log's
             * durable hook wakes the polls again when they are visible. */
            spw_consume_kick(svc->groups);
        } else if (spw_sc_is_disk_error(err)) {
            atomic_fetch_add(&svc->rejected[SPW_REJ_DISK], 1);
        }
        pr->done(pr, pr->user);
    }
}

void spw__produce_complete(spw_produce *pr)
{
    atomic_store(&pr->pending, 1);
    produce_unref(pr);
}

static void produce_cb(void *arg, int status, const spw_append_result *r)
{
    spw_produce_part *sl = arg;
    spw_produce *pr = sl->pr;
    if (status) {
        int zero = 0;
        atomic_compare_exchange_strong(&pr->err, &zero, status);
    } else {
        sl->first_offset = r->base_offset;
    }
    produce_unref(pr);
}

uint32_t spw_produce_route(spw_stream *s, const spw_record *v, uint32_t i, uint32_t partition, uint64_t idem_key)
{
    uint32_t P = s->cfg.partitions;
    if (partition != UINT32_MAX)
        return partition;
    if (v->key_len >= 0)
        return spw_stream_partition(v->key, (size_t)v->key_len, P);
    /* Keyless events of a keyed request go where a retry will send them. */
    if (idem_key)
        return (uint32_t)((idem_key + i) % P);
    return atomic_fetch_add(&s->rr, 1) % P;
}

int spw_produce_submit(spw_svc *svc, spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition,
                       spw_ack ack, uint64_t producer_id, uint32_t producer_seq, spw_produce_done done, void *user)
{
    spw_produce_opts o = {.partition = partition, .ack = ack, .producer_id = producer_id, .producer_seq = producer_seq};
    return spw_produce_submit_ex(svc, s, in, n, &o, done, user);
}

int spw_produce_submit_ex(spw_svc *svc, spw_stream *s, const spw_record *in, uint32_t n,
                          const spw_produce_opts *po, spw_produce_done done, void *user)
{
    uint32_t P = s->cfg.partitions;
    uint32_t partition = po->partition;
    if (n == 0 || (partition != UINT32_MAX && partition >= P))
        return SPW_EINVAL;
    /* Partitions, then records grouped by partition (counting sort).
     * Small requests (most single-event ones) use the stack. */
    enum { SMALL_N = 32, SMALL_P = 256 };
    uint32_t counts_s[SMALL_P], start_s[SMALL_P], part_of_s[SMALL_N];
    uint64_t tickets_s[SMALL_N];
    spw_record recs_s[SMALL_N];
    int small_p = P <= SMALL_P, small_n = n <= SMALL_N;
    uint32_t *counts = small_p ? counts_s : spw_xmalloc(P * sizeof *counts);
    memset(counts, 0, P * sizeof *counts);
    uint32_t *part_of = small_n ? part_of_s : spw_xmalloc(n * sizeof *part_of);
    for (uint32_t i = 0; i < n; i++) {
        part_of[i] = spw_produce_route(s, &in[i], i, partition, po->idem_key);
        counts[part_of[i]]++;
    }
    uint32_t used = 0;
    for (uint32_t p = 0; p < P; p++)
        used += counts[p] > 0;
    spw_produce *pr = spw_xcalloc(1, sizeof *pr + used * sizeof(spw_produce_part));
    pr->svc = svc;
    pr->s = s;
    pr->n_events = n;
    pr->n_slots = used;
    pr->t0 = spw_mono_ns();
    pr->done = done;
    pr->user = user;
    pr->order = spw_xmalloc(n * sizeof *pr->order);
    uint32_t *start = small_p ? start_s : spw_xmalloc(P * sizeof *start);
    for (uint32_t p = 0, k = 0, at = 0; p < P; p++) {
        start[p] = at;
        if (counts[p]) {
            pr->slots[k] = (spw_produce_part){.pr = pr, .partition = p, .count = counts[p], .first_event = at};
            k++;
        }
        at += counts[p];
    }
    for (uint32_t i = 0; i < n; i++)
        pr->order[start[part_of[i]]++] = i;
    /* A keyed request's fingerprint per partition: a retry with other
     * content under the same key is refused (produce_dedupe.c). */
    if (po->idem_key)
        for (uint32_t k = 0; k < used; k++) {
            spw_produce_part *sl = &pr->slots[k];
            uint32_t fp = 0;
            for (uint32_t j = 0; j < sl->count; j++)
                fp = spw_produce_fingerprint(fp, &in[pr->order[sl->first_event + j]]);
            sl->fp = fp;
        }
    if (!small_p) {
        spw_free(start);
        spw_free(counts);
    }
    if (!small_n)
        spw_free(part_of);
    /* coalesce: true under pressure: the coalescer takes it from here. */
    int cr = s->cfg.coalesce && svc->coal ? spw_coalesce_produce(svc->coal, pr, in, po) : SPW_COALESCE_DIRECT;
    if (cr != SPW_COALESCE_DIRECT) {
        if (cr) {
            spw_free(pr->order);
            spw_free(pr);
        }
        return cr;
    }

    /* A request's ids are reserved together, in request order, so that a
     * dedupe result needs only the first (dedupe.h). */
    spw_idgen *g = spw_log_idgen(svc->log);
    pr->first_ticket = spw_idgen_reserve(g, n);
    /* Completing a request a crash cut: partitions already stored keep
     * what they hold (and the answer cannot list ids). */
    if (po->stored) {
        pr->ids_unknown = 1;
        for (uint32_t k = 0; k < used; k++)
            for (uint32_t j = 0; j < po->stored->nslots; j++)
                if (po->stored->slots[j].partition == pr->slots[k].partition) {
                    pr->slots[k].stored = 1;
                    pr->slots[k].first_offset = po->stored->slots[j].first_offset;
                }
    }

    /* Encode every batch, then reserve the budget for all of them. */
    spw_record *recs = small_n ? recs_s : spw_xmalloc(n * sizeof *recs);
    uint64_t *tickets = small_n ? tickets_s : spw_xmalloc(n * sizeof *tickets);
    spw_buf *enc = spw_xcalloc(used, sizeof *enc);
    spw_buf scratch = SPW_BUF_INIT;
    uint64_t total = 0;
    int r = 0;
    for (uint32_t k = 0; k < used; k++) {
        spw_produce_part *sl = &pr->slots[k];
        for (uint32_t j = 0; j < sl->count; j++) {
            uint32_t e = pr->order[sl->first_event + j];
            recs[sl->first_event + j] = in[e];
            tickets[sl->first_event + j] = pr->first_ticket + e;
            pr->bytes += in[e].value_len;
        }
        if (sl->stored)
            continue;
        /* Every batch of a request carries the request's first sequence
         * number, its size and its dedupe key (docs/formats/log.md). */
        spw_batch_opts o = {.idgen = g,
                            .compression = s->cfg.compression,
                            .tickets = tickets + sl->first_event,
                            .producer_id = po->producer_id,
                            .producer_seq = po->producer_seq,
                            .request_count = po->idem_key ? n : 0,
                            .idem_hash = po->idem_key};
        if ((r = spw_batch_encode(&enc[k], &scratch, recs + sl->first_event, sl->count, &o)))
            break;
        total += enc[k].len;
    }
    if (!small_n) {
        spw_free(recs);
        spw_free(tickets);
    }
    spw_buf_fini(&scratch);
    /* The disk: refused before anything is appended when the data would
     * pass max_disk_bytes (stored + accepted-unwritten + this request), or
     * when a partition it goes to failed a write and is recovering (an
     * append there would be refused anyway; this keeps the request whole). */
    if (r == 0 && svc->max_disk_bytes &&
        spw_log_disk_bytes(svc->log) + spw_log_pending_bytes(svc->log) + total > svc->max_disk_bytes)
        r = SPW_EDISKLIMIT;
    for (uint32_t k = 0; r == 0 && k < used; k++) {
        int f = pr->slots[k].stored ? 0 : spw_part_failed(s->parts[pr->slots[k].partition]);
        if (f)
            r = f;
    }
    if (r == 0)
        r = spw_log_reserve(svc->log, total, 1);
    if (r) {
        if (r == SPW_EAGAIN) {
            atomic_fetch_add(&svc->rejected[SPW_REJ_BACKPRESSURE], 1);
            spw_pressure_note_full(&svc->pressure);
        }
        else if (r == SPW_EMSGSIZE)
            atomic_fetch_add(&svc->rejected[SPW_REJ_INVALID], 1);
        else if (spw_sc_is_disk_error(r))
            atomic_fetch_add(&svc->rejected[SPW_REJ_DISK], 1);
        for (uint32_t k = 0; k < used; k++)
            spw_buf_fini(&enc[k]);
        spw_free(enc);
        spw_free(pr->order);
        spw_free(pr);
        return r;
    }
    pr->dd = po->dd;
    uint32_t to_append = 0;
    for (uint32_t k = 0; k < used; k++)
        to_append += !pr->slots[k].stored;
    atomic_store(&pr->pending, (int)to_append + 1);
    atomic_fetch_add(&s->requests_in, 1);
    /* From here the request completes through produce_cb and done. */
    uint64_t unused = 0;
    for (uint32_t k = 0; k < used; k++) {
        spw_produce_part *sl = &pr->slots[k];
        if (sl->stored)
            continue;
        size_t len = enc[k].len;
        int e = spw_part_append_batch(s->parts[sl->partition], enc[k].p, len, po->ack, SPW_APPEND_RESERVED,
                                      produce_cb, sl, NULL);
        spw_buf_fini(&enc[k]);
        if (e) {
            unused += len;
            spw_append_result none = {0};
            produce_cb(sl, e, &none);
        }
    }
    spw_log_release(svc->log, unused);
    spw_free(enc);
    /* The extra count taken above: done cannot run before every batch was
     * handed to the log (nor, with nothing to append, never). */
    produce_unref(pr);
    return 0;
}

static const char *admit(spw_svc *svc, int priority, uint32_t *retry_ms)
{
    int r = spw_pressure_admit(&svc->pressure, priority, retry_ms);
    if (r == SPW_ADMIT_OK)
        return NULL;
    atomic_fetch_add(&svc->rejected[r == SPW_ADMIT_SHED ? SPW_REJ_SHED : SPW_REJ_BACKPRESSURE], 1);
    return r == SPW_ADMIT_SHED ? "shed" : "backpressure";
}


int spw__key_text_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    for (;;) {
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
}

/* The events of one request being validated: records whose keys taken
 * from JSON fields live in an arena (offsets until the arena is final). */
typedef struct vreq {
    spw_stream_config *cfg;
    spw_json_ptr ptrs[2];
    int nptrs, key_i, ts_i;
    int trailing;
    int64_t now;
    spw_record *recs;
    int32_t *arena_off; /* per record: key offset in keys, or -1 */
    uint32_t n, cap;
    spw_buf keys;
} vreq;

static void vreq_push(vreq *v, const spw_record *r, int32_t off)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->recs = spw_xrealloc(v->recs, v->cap * sizeof *v->recs);
        v->arena_off = spw_xrealloc(v->arena_off, v->cap * sizeof *v->arena_off);
    }
    v->recs[v->n] = *r;
    v->arena_off[v->n] = off;
    v->n++;
}

/* Validates one event and adds its record: 0, or -1 with res refused. */
static int take_event(vreq *v, const spw_produce_ev *ev, spw_produce_res *res)
{
    spw_stream_config *cfg = v->cfg;
    spw_record r = {.key = ev->key, .key_len = ev->key_len, .value = ev->value, .value_len = ev->len,
                    .ts = ev->has_ts ? ev->ts : v->now};
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
        vreq_push(v, &r, -1);
        return 0;
    }
    const char *p = ev->value, *end = p + ev->len, *vend;
    spw_json_span found[2];
    spw_json_error e;
    if (spw_json_scan(p, end, v->ptrs, v->nptrs, found, &vend, &e)) {
        spw_produce_refuse_at(res, SPW_SC_INVALID_JSON, ev, e.offset, "%s", e.msg);
        return -1;
    }
    const char *start = spw_json_ws(p, end);
    if (*start != '{') {
        spw_produce_refuse_at(res, SPW_SC_NOT_AN_OBJECT, ev, (size_t)(start - p), "each event must be a JSON object");
        return -1;
    }
    if (spw_json_ws(vend, end) != end) {
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
        if (spw_buf_reserve(&v->keys, v->keys.len + k->n))
            abort(); /* spw_buf uses try_realloc; bounded by the request */
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
    vreq_push(v, &r, off);
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
} preq;

static void request_answer(void *arg)
{
    preq *q = arg;
    spw_produce *pr = q->pr;
    spw_produce_res res = {.rl = q->rl, .n_events = pr->n_events};
    int err = atomic_load(&pr->err);
    if (err) {
        res.code = spw_sc_disk(err, 0, res.msg, sizeof res.msg);
        if (res.code == SPW_SC_OK)
            res.code = SPW_SC_WRITE_FAILED;
    } else {
        res.nslots = pr->n_slots;
        res.slots = spw_xmalloc((pr->n_slots ? pr->n_slots : 1) * sizeof *res.slots);
        for (uint32_t k = 0; k < pr->n_slots; k++)
            res.slots[k] = (spw_dd_slot){.partition = pr->slots[k].partition,
                                         .first_offset = pr->slots[k].first_offset,
                                         .count = pr->slots[k].count};
        res.first_ticket = pr->first_ticket;
        res.ids_known = !pr->ids_unknown;
        res.superseded = pr->superseded;
        res.n_superseded = pr->n_superseded;
        if (q->want_parts) {
            res.part_of = spw_xmalloc((pr->n_events ? pr->n_events : 1) * sizeof *res.part_of);
            for (uint32_t i = 0; i < pr->n_events; i++) /* coalescing: what no slot lists was superseded */
                res.part_of[i] = UINT32_MAX;
            for (uint32_t k = 0; k < pr->n_slots; k++)
                for (uint32_t j = 0; j < pr->slots[k].count; j++)
                    res.part_of[pr->order[pr->slots[k].first_event + j]] = pr->slots[k].partition;
        }
    }
    q->done(&res, q->user);
    spw_produce_res_fini(&res);
    spw_hist_add(&pr->svc->produce_latency, (spw_mono_ns() - pr->t0) / 1000);
    spw_produce_free(pr);
    spw_free(q);
}

static void request_done(spw_produce *pr, void *user)
{
    preq *q = user;
    q->pr = pr;
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
        for (uint32_t i = 0; i < v->n; i++)
            res->part_of[i] = spw_produce_route(in->s, &v->recs[i], i, partition, key);
    }
}

int spw_produce_holding(spw_svc *svc) { return spw_pressure_level(&svc->pressure) >= 3; }

int spw_produce_hold(spw_svc *svc, const char *name, size_t sl, int prio)
{
    if (!spw_produce_holding(svc))
        return 0;
    if (prio < 0) {
        spw_stream *s = sl && spw_stream_name_ok(name, sl) ? spw_stream_get(svc->cat, name, sl) : NULL;
        if (!s)
            return 0;
        prio = s->cfg.priority;
        spw_stream_put(s);
    }
    if (prio == 0)
        return 0;
    atomic_fetch_add(&svc->rejected[SPW_REJ_BACKPRESSURE], 1);
    return 1;
}

int spw_produce_request(spw_svc *svc, const spw_produce_in *in, spw_produce_res *res)
{
    memset(res, 0, sizeof *res);
    spw_stream *s = in->s;
    spw_stream_config *cfg = &s->cfg;
    spw_ack ack = in->ack < 0 ? cfg->ack : (spw_ack)in->ack;
    uint32_t partition = in->partition;
    int prio = in->priority < 0 ? cfg->priority : in->priority;
    vreq v = {.cfg = cfg, .key_i = -1, .ts_i = -1, .trailing = in->trailing, .now = spw_wall_ms()};
    spw_dd_result stored = {0};
    spw_produce_opts po = {.partition = partition, .ack = ack, .producer_id = in->producer_id,
                           .producer_seq = in->producer_seq, .supersede_ok = in->supersede_ok};
    int is_http_key = in->idempotency_key && in->idempotency_key[0];
    int keyed = (is_http_key || in->producer_id) && cfg->dedupe_window_ms > 0 && svc->dd;

    /* 1. What can never succeed. */
    if (ack == SPW_ACK_REPLICATED) {
        refuse(res, SPW_SC_NOT_IMPLEMENTED, "ack=replicated needs a replicated backend, and this node has none");
        goto answered;
    }
    if (partition != UINT32_MAX && partition >= cfg->partitions) {
        refuse(res, SPW_SC_NO_SUCH_PARTITION, "partition %u does not exist (the stream has %u)", partition,
               cfg->partitions);
        goto answered;
    }
    /* 2. Admission, before any work on the events (under overload,
     * refusing must be cheap). */
    uint32_t retry_ms;
    const char *refused = admit(svc, prio, &retry_ms);
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
    if (in->count_hint) {
        v.cap = in->count_hint;
        v.recs = spw_xmalloc(v.cap * sizeof *v.recs);
        v.arena_off = spw_xmalloc(v.cap * sizeof *v.arena_off);
    }
    spw_produce_ev ev;
    int more;
    while ((more = in->next(in->src, &ev, res)) == 1)
        if (take_event(&v, &ev, res))
            break;
    if (more != 0) {
        atomic_fetch_add(&svc->rejected[SPW_REJ_INVALID], 1);
        goto answered;
    }
    if (v.n == 0) {
        atomic_fetch_add(&svc->rejected[SPW_REJ_INVALID], 1);
        refuse(res, SPW_SC_NO_EVENTS, "the body holds no events");
        goto answered;
    }
    res->n_events = v.n;
    for (uint32_t i = 0; i < v.n; i++) /* the arena is final: keys become pointers */
        if (v.arena_off[i] >= 0)
            v.recs[i].key = v.keys.p + v.arena_off[i];

    /* 4. Dedupe: a retry within the window gets the first answer. */
    if (keyed) {
        po.idem_key = is_http_key ? spw_dd_http_key(in->tenant, in->idempotency_key)
                                  : spw_dd_producer_key(in->producer_id, in->producer_seq);
        const char *what = is_http_key ? "a request with this Idempotency-Key"
                                       : "this producer's request with the same sequence";
        int d = spw__produce_dd_begin(svc, s, po.idem_key, v.recs, v.n, partition, &po.dd, &stored);
        switch (d) {
        case SPW_DD_DONE:
            atomic_fetch_add(&svc->duplicates, 1);
            answer_stored(res, in, &v, partition, po.idem_key, &stored);
            goto answered;
        case SPW_DD_FULL:
            res->retry_ms = 1000;
            refuse(res, SPW_SC_DEDUPE_FULL,
                   "the server remembers dedupe-max-keys %s, all inside their windows; a new %s is refused rather "
                   "than an older one forgotten; retry later (nothing was appended)",
                   is_http_key ? "idempotency keys" : "producer sequences", is_http_key ? "key" : "one");
            goto answered;
        case SPW_DD_BUSY:
            res->retry_ms = is_http_key ? 1000 : 20;
            refuse(res, SPW_SC_IN_PROGRESS, "%s is still being written; retry to get its answer", what);
            goto answered;
        case SPW_DD_UNRESOLVED:
            res->retry_ms = is_http_key ? 1000 : 20;
            refuse(res, SPW_SC_IN_PROGRESS,
                   "%s failed while being written and may be partly stored; a partition it wrote to is still "
                   "recovering: retry to get its outcome",
                   what);
            goto answered;
        case SPW_DD_CONFLICT:
        case SPW_DD_REUSED:
            atomic_fetch_add(&svc->rejected[SPW_REJ_INVALID], 1);
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
            goto answered;
        case SPW_DD_UNREADABLE:
            atomic_fetch_add(&svc->rejected[SPW_REJ_DISK], 1);
            refuse(res, SPW_SC_DAMAGED,
                   "%s was stored before, and its stored records cannot be read back to compare (damaged on disk: "
                   "spillway check reports where); nothing was appended",
                   what);
            goto answered;
        case SPW_DD_PARTIAL:
            po.stored = &stored;
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
        int rv = spw_rl_admit(svc->rl, cfg, in->tenant, in->peer, v.n, spw_mono_ns(), &res->rl, rkey, &rkl);
        if (rv != SPW_RL_ALLOWED) {
            atomic_fetch_add(&svc->rejected[SPW_REJ_RATE_LIMIT], 1);
            if (rv == SPW_RL_OVER_BURST)
                refuse(res, SPW_SC_OVER_BURST,
                       "a request of %u events can never pass the rate limit of stream %s: at most %" PRIu64
                       " events pass at once; send smaller requests (nothing was appended)",
                       v.n, cfg->name, res->rl.limit);
            else {
                res->retry_ms = res->rl.retry_after_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)res->rl.retry_after_ms;
                refuse(res, SPW_SC_RATE_LIMITED,
                       "rate limit of stream %s exceeded: %" PRIu64 " of %" PRIu64 " events left, %u asked; retry "
                       "in %" PRIu64 " ms (nothing was appended)",
                       cfg->name, res->rl.remaining, res->rl.limit, v.n, res->rl.retry_after_ms);
            }
            if (po.dd)
                spw_dd_finish(svc->dd, po.dd, NULL, 0);
            goto answered;
        }
    }

    /* 6. Submit. */
    preq *q = spw_xmalloc(sizeof *q);
    *q = (preq){.post = in->post, .loop = in->loop, .done = in->done, .user = in->user, .rl = res->rl,
                .want_parts = in->want_parts};
    int r = spw_produce_submit_ex(svc, s, v.recs, v.n, &po, request_done, q);
    if (r == 0) {
        spw_dd_result_free(&stored);
        spw_free(v.recs);
        spw_free(v.arena_off);
        spw_buf_fini(&v.keys);
        return 0; /* the stream reference belongs to the produce now */
    }
    spw_free(q);
    if (po.dd)
        spw_dd_finish(svc->dd, po.dd, NULL, 0);
    if (rkl) /* not appended: the events do not count against the limit */
        spw_rl_refund(svc->rl, rkey, rkl, v.n, spw_mono_ns());
    res->rl = (spw_rl_answer){0};
    if (r == SPW_EAGAIN) {
        res->retry_ms = spw_pressure_retry_ms(&svc->pressure);
        refuse(res, SPW_SC_BACKPRESSURE,
               "the server is writing as fast as the disk allows and its pending budget is full; retry after %u ms",
               res->retry_ms);
    } else if (r == SPW_EMSGSIZE) {
        refuse(res, SPW_SC_TOO_LARGE, "the request's batches exceed max_pending_bytes");
    } else if ((res->code = spw_sc_disk(r, 1, res->msg, sizeof res->msg)) == SPW_SC_OK) {
        refuse(res, SPW_SC_INTERNAL, "encoding failed: %s", spw_strerror(r));
    }
answered:
    spw_dd_result_free(&stored);
    spw_free(v.recs);
    spw_free(v.arena_off);
    spw_buf_fini(&v.keys);
    spw_stream_put(s);
    return 1;
}

/* ---- metrics (svc/metrics.h) ---- */

static uint64_t m_events_in(void *a) { return atomic_load(&((spw_svc *)a)->events_in); }
static uint64_t m_bytes_in(void *a) { return atomic_load(&((spw_svc *)a)->bytes_in); }
static uint64_t m_duplicates(void *a) { return atomic_load(&((spw_svc *)a)->duplicates); }

typedef struct stream_walk {
    spw_metrics_out *o;
    const char *name;
    int what; /* 0 events_in, 1 bytes_in, 2 coalesced */
} stream_walk;

static void stream_one(void *arg, spw_stream *s)
{
    stream_walk *w = arg;
    if (!spw_metrics_sees(w->o, s->cfg.name) || (w->what == 2 && !s->cfg.coalesce))
        return;
    char l[160];
    snprintf(l, sizeof l, "stream=\"%s\"", s->cfg.name);
    uint64_t v = w->what == 0   ? atomic_load(&s->events_in)
                 : w->what == 1 ? atomic_load(&s->bytes_in)
                                : spw_coalesce_stream_superseded(s);
    spw_metrics_line(w->o, w->name, l, v);
}

static void m_stream_events(void *a, spw_metrics_out *o, const char *name)
{
    stream_walk w = {o, name, 0};
    spw_catalog_each(((spw_svc *)a)->cat, stream_one, &w);
}
static void m_stream_bytes(void *a, spw_metrics_out *o, const char *name)
{
    stream_walk w = {o, name, 1};
    spw_catalog_each(((spw_svc *)a)->cat, stream_one, &w);
}
static void m_stream_coalesced(void *a, spw_metrics_out *o, const char *name)
{
    stream_walk w = {o, name, 2};
    spw_catalog_each(((spw_svc *)a)->cat, stream_one, &w);
}

static void m_rejected(void *a, spw_metrics_out *o, const char *name)
{
    static const char *reasons[SPW_REJ__N] = {"invalid", "rate_limit", "shed", "backpressure", "disk"};
    spw_svc *svc = a;
    for (int i = 0; i < SPW_REJ__N; i++) {
        char l[48];
        snprintf(l, sizeof l, "reason=\"%s\"", reasons[i]);
        spw_metrics_line(o, name, l, atomic_load(&svc->rejected[i]));
    }
}

static uint64_t m_coal(void *a, int i)
{
    spw_coalesce_stats cs;
    spw_coalesce_stats_get(((spw_svc *)(a))->coal, &cs);
    return i == 0 ? cs.superseded : i == 1 ? cs.buffered_events : i == 2 ? cs.buffered_bytes : cs.batches;
}
static uint64_t m_coal_superseded(void *a) { return m_coal(a, 0); }
static uint64_t m_coal_events(void *a) { return m_coal(a, 1); }
static uint64_t m_coal_bytes(void *a) { return m_coal(a, 2); }
static uint64_t m_coal_batches(void *a) { return m_coal(a, 3); }
static uint64_t m_budget(void *a) { return ((spw_svc *)(a))->pressure.budget; }
static uint64_t m_high(void *a) { return ((spw_svc *)(a))->pressure.high; }
static uint64_t m_low(void *a) { return ((spw_svc *)(a))->pressure.low; }
static uint64_t m_level(void *a) { return (uint64_t)spw_pressure_level(&((spw_svc *)(a))->pressure); }
static uint64_t m_dd(void *a, int i)
{
    spw_dd_stats ds;
    spw_dd_stats_get(((spw_svc *)(a))->dd, &ds);
    return i == 0 ? ds.entries : i == 1 ? ds.max_entries : i == 2 ? ds.evicted : ds.refused;
}
static uint64_t m_dd_keys(void *a) { return m_dd(a, 0); }
static uint64_t m_dd_max(void *a) { return m_dd(a, 1); }
static uint64_t m_dd_evicted(void *a) { return m_dd(a, 2); }
static uint64_t m_dd_refused(void *a) { return m_dd(a, 3); }
static uint64_t m_rl(void *a, int i)
{
    spw_rl_stats rs;
    spw_rl_stats_get(((spw_svc *)(a))->rl, &rs);
    return i == 0 ? rs.keys : i == 1 ? rs.max_keys : i == 2 ? rs.evicted_idle : rs.evicted_active;
}
static uint64_t m_rl_keys(void *a) { return m_rl(a, 0); }
static uint64_t m_rl_max(void *a) { return m_rl(a, 1); }
static void m_rl_evictions(void *a, spw_metrics_out *o, const char *name)
{
    spw_metrics_line(o, name, "kind=\"idle\"", m_rl(a, 2));
    spw_metrics_line(o, name, "kind=\"active\"", m_rl(a, 3));
}

void spw_produce_metrics_register(spw_metrics *m, spw_svc *svc)
{
    spw_metrics_add_u64(m, "spillway_events_in_total", NULL, SPW_METRIC_COUNTER, m_events_in, svc);
    spw_metrics_add_u64(m, "spillway_bytes_in_total", NULL, SPW_METRIC_COUNTER, m_bytes_in, svc);
    spw_metrics_add_family(m, "spillway_stream_events_in_total", NULL, SPW_METRIC_COUNTER, m_stream_events, svc);
    spw_metrics_add_family(m, "spillway_stream_bytes_in_total", NULL, SPW_METRIC_COUNTER, m_stream_bytes, svc);
    spw_metrics_add_family(m, "spillway_stream_coalesced_total", NULL, SPW_METRIC_COUNTER, m_stream_coalesced, svc);
    spw_metrics_add_family(m, "spillway_rejected_total", NULL, SPW_METRIC_COUNTER, m_rejected, svc);
    if (svc->dd)
        spw_metrics_add_u64(m, "spillway_duplicates_total",
                            "produce requests answered from the dedupe table (a retried Idempotency-Key or producer "
                            "sequence), nothing appended",
                            SPW_METRIC_COUNTER, m_duplicates, svc);
    spw_metrics_add_hist(m, "spillway_produce_seconds", "produce request complete to answered",
                         &svc->produce_latency, 1e6);
    /* Its steps' state: coalescing, admission, the dedupe table, rate limits. */
    if (svc->coal) {
        spw_metrics_add_u64(m, "spillway_coalesced_total",
                            "events of coalesce streams replaced by a newer event for their key before they were "
                            "written",
                            SPW_METRIC_COUNTER, m_coal_superseded, svc);
        spw_metrics_add_u64(m, "spillway_coalesce_buffered_events", NULL, SPW_METRIC_GAUGE, m_coal_events, svc);
        spw_metrics_add_u64(m, "spillway_coalesce_buffered_bytes", NULL, SPW_METRIC_GAUGE, m_coal_bytes, svc);
        spw_metrics_add_u64(m, "spillway_coalesce_batches_total", NULL, SPW_METRIC_COUNTER, m_coal_batches, svc);
    }
    spw_metrics_add_u64(m, "spillway_pending_budget_bytes", NULL, SPW_METRIC_GAUGE, m_budget, svc);
    spw_metrics_add_u64(m, "spillway_pending_high_watermark_bytes", NULL, SPW_METRIC_GAUGE, m_high, svc);
    spw_metrics_add_u64(m, "spillway_pending_low_watermark_bytes", NULL, SPW_METRIC_GAUGE, m_low, svc);
    spw_metrics_add_u64(m, "spillway_pressure_level",
                        "0 normal, 1 shedding priority 3, 2 shedding 2-3, 3 above the high watermark (all but "
                        "priority 0 refused)",
                        SPW_METRIC_GAUGE, m_level, svc);
    if (svc->dd) {
        spw_metrics_add_u64(m, "spillway_dedupe_keys", NULL, SPW_METRIC_GAUGE, m_dd_keys, svc);
        spw_metrics_add_u64(m, "spillway_dedupe_max_keys", NULL, SPW_METRIC_GAUGE, m_dd_max, svc);
        spw_metrics_add_u64(m, "spillway_dedupe_evicted_total", "keys forgotten after their window passed",
                            SPW_METRIC_COUNTER, m_dd_evicted, svc);
        spw_metrics_add_u64(m, "spillway_dedupe_refused_total",
                            "keyed produce requests refused (503 dedupe_full) because the table was full of keys "
                            "inside their windows",
                            SPW_METRIC_COUNTER, m_dd_refused, svc);
    }
    if (svc->rl) {
        spw_metrics_add_u64(m, "spillway_ratelimit_keys", NULL, SPW_METRIC_GAUGE, m_rl_keys, svc);
        spw_metrics_add_u64(m, "spillway_ratelimit_max_keys", NULL, SPW_METRIC_GAUGE, m_rl_max, svc);
        spw_metrics_add_family(m, "spillway_ratelimit_evictions_total", NULL, SPW_METRIC_COUNTER, m_rl_evictions,
                               svc);
    }
}
