/*
 * The produce service's submit step (produce.h: spw_produce_submit,
 * spw_produce_submit_ex, spw_produce_route): groups a request's records by
 * partition, encodes one batch per partition, takes their bytes from the
 * log's budget all or nothing, appends them, and completes the request
 * (dedupe record, counters, answer: spw__produce_complete) when the last
 * batch's append completes. A spw_produce is counted: each batch holds a
 * reference and the submit holds one until every batch was handed to the
 * log, so the completion runs once, after all of them.
 */
#include "svc/produce.h"

#include <inttypes.h>
#include <pthread.h>
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
#include "core/hash.h"
#include "catalog/hotkeys.h"
#include "svc/hot.h"
#include "es/es.h"

/* ---- submit ---- */

/* A request of one small batch (every single-event request) is encoded
 * into its thread's buffer, kept from request to request, which the log
 * copies (it copies a batch under SPW_GIVE_MIN anyway): no allocation.
 * Freed when the thread exits. */
enum { SMALL_BATCH_BYTES = SPW_GIVE_MIN / 2, SMALL_BATCH_KEEP = 64 << 10 };
static pthread_key_t small_key;
static pthread_once_t small_once = PTHREAD_ONCE_INIT;

static void small_free(void *v)
{
    spw_buf_fini(v);
    spw_free(v);
}

static void small_init(void) { pthread_key_create(&small_key, small_free); }

static spw_buf *small_buf(void)
{
    pthread_once(&small_once, small_init);
    spw_buf *b = pthread_getspecific(small_key);
    if (!b && (b = spw_try_malloc(sizeof *b))) {
        *b = (spw_buf)SPW_BUF_INIT;
        if (pthread_setspecific(small_key, b)) {
            spw_free(b);
            return NULL;
        }
    }
    return b;
}

/* Takes the thread's buffer back from enc (emptied). */
static void small_put(spw_buf *tls, spw_buf *enc)
{
    *tls = *enc;
    tls->len = 0;
    *enc = (spw_buf)SPW_BUF_INIT;
    if (tls->cap > SMALL_BATCH_KEEP) /* headers made it large: not kept */
        spw_buf_fini(tls);
}

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
    spw_free(pr->version_of);
    spw_free(pr->vers);
    spw_free(pr->ver_keys);
    spw_free(pr->superseded);
    spw_free(pr); /* order with it */
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
            spw_svc_reject(svc, pr->s, SPW_REJ_DISK);
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
        /* A versioned stream's map may name records recovery will not keep. */
        spw_es *es = pr->s->cfg.versioned ? atomic_load(&pr->s->es) : NULL;
        if (es)
            spw_es_append_failed(es, sl->partition);
    } else {
        sl->first_offset = r->base_offset;
    }
    produce_unref(pr);
}

/* ---- versions (versioned streams, es/es.h) ---- */

/* What a versioned submit changed in the map, to undo it when its batch
 * is not appended after all. */
typedef struct es_undo {
    uint64_t version, offset; /* the key's state before */
} es_undo;

/*
 * Gives the records of slot sl their versions (the key's current one + 1,
 * + 2, … in log order), entering them in the map at once (offsets unknown
 * yet: UINT64_MAX). REQUIRES: the partition's version lock held.
 */
static void es_assign(spw_es *es, spw_produce *pr, const spw_produce_part *sl, const spw_record *in, es_undo *undo)
{
    for (uint32_t j = 0; j < sl->count; j++) {
        uint32_t e = pr->order[sl->first_event + j];
        const spw_record *r = &in[e];
        if (r->key_len < 0) { /* only internal producers write keyless records here: they get none */
            pr->version_of[e] = 0;
            continue;
        }
        spw_es_key cur;
        int had = spw_es_get_locked(es, sl->partition, r->key, (size_t)r->key_len, &cur);
        undo[e] = (es_undo){.version = had ? cur.version : 0, .offset = had ? cur.offset : 0};
        pr->version_of[e] = (had ? cur.version : 0) + 1;
        spw_es_put_locked(es, sl->partition, r->key, (size_t)r->key_len, pr->version_of[e], UINT64_MAX);
    }
}

/* Undoes es_assign for slot sl (in reverse: a key's earlier state last). */
static void es_undo_slot(spw_es *es, spw_produce *pr, const spw_produce_part *sl, const spw_record *in,
                         const es_undo *undo)
{
    for (uint32_t j = sl->count; j-- > 0;) {
        uint32_t e = pr->order[sl->first_event + j];
        if (in[e].key_len >= 0)
            spw_es_put_locked(es, sl->partition, in[e].key, (size_t)in[e].key_len, undo[e].version, undo[e].offset);
    }
}

/* See produce_int.h. */
void spw__produce_versions(const spw_record *in, uint32_t n, const uint64_t *version_of, spw_produce_ver **vers_out,
                           uint32_t *n_vers, uint8_t **keys_out)
{
    size_t cap = 16, kbytes = 0;
    while (cap < 2 * (size_t)n)
        cap *= 2;
    /* The scratch tables of a small request (most are one event) on the
     * stack: two allocations fewer per conditional append. */
    enum { SMALL_N = 32 };
    uint32_t tab_s[2 * SMALL_N], first_s[SMALL_N];
    int small = n <= SMALL_N; /* then cap <= 2 * SMALL_N */
    uint32_t *tab = small ? tab_s : spw_xmalloc(cap * sizeof *tab); /* open addressing: index into vers + 1, 0 empty */
    memset(tab, 0, cap * sizeof *tab);
    spw_produce_ver *vers = spw_xmalloc((n ? n : 1) * sizeof *vers);
    uint32_t nv = 0;
    uint32_t *first_ev = small ? first_s : spw_xmalloc((n ? n : 1) * sizeof *first_ev);
    for (uint32_t i = 0; i < n; i++) {
        if (in[i].key_len < 0 || !version_of[i])
            continue;
        size_t kl = (size_t)in[i].key_len;
        size_t at = spw_fmix64(spw_fnv1a64(SPW_FNV64_OFFSET, in[i].key, kl)) & (cap - 1);
        for (;; at = (at + 1) & (cap - 1)) {
            if (!tab[at]) {
                first_ev[nv] = i;
                vers[nv] = (spw_produce_ver){.key_len = (uint32_t)kl, .count = 1,
                                                         .first = version_of[i]};
                tab[at] = ++nv;
                kbytes += kl;
                break;
            }
            spw_produce_ver *v = &vers[tab[at] - 1];
            const spw_record *f = &in[first_ev[tab[at] - 1]];
            if (v->key_len == kl && memcmp(f->key, in[i].key, kl) == 0) {
                v->count++;
                break;
            }
        }
    }
    uint8_t *keys = spw_xmalloc(kbytes ? kbytes : 1);
    size_t at = 0;
    for (uint32_t k = 0; k < nv; k++) {
        memcpy(keys + at, in[first_ev[k]].key, vers[k].key_len);
        vers[k].key = keys + at;
        at += vers[k].key_len;
    }
    if (!small) {
        spw_free(first_ev);
        spw_free(tab);
    }
    *vers_out = vers;
    *n_vers = nv;
    *keys_out = keys;
}

uint32_t spw_produce_route(spw_stream *s, const spw_record *v, uint32_t i, uint32_t partition, uint64_t idem_key)
{
    return spw__produce_route_mode(s, v, i, partition, idem_key, 1);
}

void spw__produce_route_stored(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition,
                               uint64_t idem_key, const spw_dd_slot *slots, uint32_t nslots, uint32_t *part_of)
{
    for (int hot = 1; hot >= 0; hot--) {
        for (uint32_t i = 0; i < n; i++)
            part_of[i] = spw__produce_route_mode(s, &in[i], i, partition, idem_key, hot);
        if (!s->hot)
            return;
        int same = 1;
        for (uint32_t j = 0; j < nslots && same; j++) {
            uint32_t c = 0;
            for (uint32_t i = 0; i < n; i++)
                c += part_of[i] == slots[j].partition;
            same = c == slots[j].count;
        }
        if (same)
            return;
    }
}

uint32_t spw__produce_route_mode(spw_stream *s, const spw_record *v, uint32_t i, uint32_t partition,
                                 uint64_t idem_key, int hot_on)
{
    uint32_t P = s->cfg.partitions;
    if (partition != UINT32_MAX)
        return partition;
    if (v->key_len >= 0) {
        uint32_t home = spw_stream_partition(v->key, (size_t)v->key_len, P);
        /* A split key's events go to its sub-keys' partitions (catalog/hotkeys.h). */
        uint32_t hot = s->hot && hot_on ? spw_hot_route(s->hot, v->key, (size_t)v->key_len, home, P, idem_key, i) : UINT32_MAX;
        return hot != UINT32_MAX ? hot : home;
    }
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
    /* n comes from a client: its arrays are tried, and a failure is
     * SPW_ENOMEM (503), never an abort (their size is in the request's
     * working memory, produce.h). */
    uint32_t *part_of = small_n ? part_of_s : spw_try_malloc(n * sizeof *part_of);
    if (!part_of)
        return SPW_ENOMEM;
    uint32_t *counts = small_p ? counts_s : spw_xmalloc(P * sizeof *counts);
    memset(counts, 0, P * sizeof *counts);
    if (partition == UINT32_MAX && !s->hot) {
        /* The common case, no named partition and no split keys: a keyed
         * event's partition inline (spw__produce_route_mode's first rule). */
        for (uint32_t i = 0; i < n; i++) {
            part_of[i] = in[i].key_len >= 0 ? spw_stream_partition(in[i].key, (size_t)in[i].key_len, P)
                                            : spw__produce_route_mode(s, &in[i], i, partition, po->idem_key, 1);
            counts[part_of[i]]++;
        }
    } else {
        for (uint32_t i = 0; i < n; i++) {
            part_of[i] = spw_produce_route(s, &in[i], i, partition, po->idem_key);
            counts[part_of[i]]++;
        }
    }
    if (s->hot) /* also events sent to a named partition: they are counted, not rerouted */
        spw__hot_observe(svc, s, in, n);
    uint32_t used = 0;
    for (uint32_t p = 0; p < P; p++)
        used += counts[p] > 0;
    /* The produce, its slots and its order in one block; n comes from a
     * client, so it is tried (SPW_ENOMEM, 503), and only the produce and
     * slots are zeroed. */
    size_t head = sizeof(spw_produce) + used * sizeof(spw_produce_part);
    head = (head + _Alignof(uint32_t) - 1) & ~(size_t)(_Alignof(uint32_t) - 1);
    spw_produce *pr = spw_try_malloc(head + (size_t)n * sizeof(uint32_t));
    if (!pr) {
        if (!small_p)
            spw_free(counts);
        if (!small_n)
            spw_free(part_of);
        return SPW_ENOMEM;
    }
    memset(pr, 0, head);
    pr->svc = svc;
    pr->s = s;
    pr->n_events = n;
    pr->n_slots = used;
    pr->t0 = spw_mono_ns();
    pr->done = done;
    pr->user = user;
    pr->order = (uint32_t *)((uint8_t *)pr + head);
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
    /* coalesce: true under pressure: the coalescer takes it from here
     * (never a versioned stream's: a version is never replaced). */
    int cr = s->cfg.coalesce && !s->cfg.versioned && svc->coal ? spw_coalesce_produce(svc->coal, pr, in, po) : SPW_COALESCE_DIRECT;
    if (cr != SPW_COALESCE_DIRECT) {
        if (cr) {
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

    /* A versioned stream: from here to the appends, the version lock of
     * every partition the request writes to (ascending, so requests never
     * deadlock), so the check, the versions and the offsets follow one
     * order (es/es.h). */
    spw_es *es = NULL;
    es_undo *undo = NULL;
    if (s->cfg.versioned) {
        int er = spw_es_of(s, &es);
        if (er) {
            spw_free(pr);
            return er;
        }
        for (uint32_t k = 0; k < used; k++)
            spw_es_lock(es, pr->slots[k].partition);
        /* A failed partition's map may name records its recovery will not
         * keep (es.h): no version is read from it until it recovered. */
        for (uint32_t k = 0; k < used; k++) {
            int f = pr->slots[k].stored ? 0 : spw_part_failed(s->parts[pr->slots[k].partition]);
            if (f) {
                for (uint32_t j = used; j-- > 0;)
                    spw_es_unlock(es, pr->slots[j].partition);
                spw_free(pr);
                if (spw_sc_is_disk_error(f))
                    spw_svc_reject(svc, s, SPW_REJ_DISK);
                return f;
            }
        }
        if (po->expect != SPW_ES_ANY) {
            /* REQUIRES (spw_produce_request checks it): one key. */
            uint64_t cur = 0;
            spw_es_key ck;
            if (in[0].key_len >= 0 &&
                spw_es_get_locked(es, pr->slots[0].partition, in[0].key, (size_t)in[0].key_len, &ck))
                cur = ck.version;
            if (!spw_es_expect_ok((spw_es_expect)po->expect, po->expected_version, cur)) {
                for (uint32_t k = used; k-- > 0;)
                    spw_es_unlock(es, pr->slots[k].partition);
                if (po->current)
                    *po->current = cur;
                spw_free(pr);
                return SPW_ECONFLICT;
            }
        }
        pr->version_of = spw_xcalloc(n, sizeof *pr->version_of);
        undo = spw_xmalloc(n * sizeof *undo);
        for (uint32_t k = 0; k < used; k++)
            if (!pr->slots[k].stored)
                es_assign(es, pr, &pr->slots[k], in, undo);
    }

    /* Encode every batch, then reserve the budget for all of them. A
     * versioned stream's records are copied in partition order with their
     * versions and tickets; any other's are encoded where they are, through
     * the order (spw_batch_opts.order: the tickets follow from the first). */
    spw_record *recs = !es ? NULL : small_n ? recs_s : spw_try_malloc(n * sizeof *recs);
    uint64_t *tickets = !es ? NULL : small_n ? tickets_s : spw_try_malloc(n * sizeof *tickets);
    /* The encoded batches, one per partition: on the stack for a few
     * partitions (every single-event request), no allocation. */
    enum { SMALL_ENC = 8 };
    spw_buf enc_s[SMALL_ENC];
    spw_buf *enc = used <= SMALL_ENC ? enc_s : spw_xcalloc(used, sizeof *enc);
    if (enc == enc_s)
        memset(enc_s, 0, used * sizeof *enc);
    spw_buf scratch = SPW_BUF_INIT;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++)
        pr->bytes += in[i].value_len;
    spw_buf *tls = used == 1 && n <= 4 && pr->bytes < SMALL_BATCH_BYTES ? small_buf() : NULL;
    if (tls) { /* lent to enc[0] until the append */
        enc[0] = *tls;
        *tls = (spw_buf)SPW_BUF_INIT;
    }
    int r = !es || (recs && tickets) ? 0 : SPW_ENOMEM;
    for (uint32_t k = 0; r == 0 && k < used; k++) {
        spw_produce_part *sl = &pr->slots[k];
        if (es)
            for (uint32_t j = 0; j < sl->count; j++) {
                uint32_t e = pr->order[sl->first_event + j];
                recs[sl->first_event + j] = in[e];
                recs[sl->first_event + j].version = pr->version_of[e];
                tickets[sl->first_event + j] = pr->first_ticket + e;
            }
        if (sl->stored)
            continue;
        /* Every batch of a request carries the request's first sequence
         * number, its size and its dedupe key (docs/formats/log.md). */
        spw_batch_opts o = {.idgen = g,
                            .compression = s->cfg.compression,
                            .tickets = es ? tickets + sl->first_event : NULL,
                            .order = es ? NULL : pr->order + sl->first_event,
                            .ticket_base = pr->first_ticket,
                            .producer_id = po->producer_id,
                            .producer_seq = po->producer_seq,
                            .request_count = po->idem_key ? n : 0,
                            .idem_hash = po->idem_key,
                            .versioned = s->cfg.versioned};
        if ((r = spw_batch_encode(&enc[k], &scratch, es ? recs + sl->first_event : in, sl->count, &o)))
            break;
        total += enc[k].len;
    }
    if (!small_n && es) {
        spw_free(recs);
        spw_free(tickets);
    }
    spw_buf_fini(&scratch);
    /* The disk: refused before anything is appended when the data would
     * pass max_disk_bytes (stored + accepted-unwritten + this request), or
     * when a partition it goes to failed a write and is recovering (an
     * append there would be refused anyway; this keeps the request whole). */
    if (r == 0 && svc->max_disk_bytes &&
        spw_log_disk_bytes(svc->log) + spw_log_pending_bytes(svc->log) + total > svc->max_disk_bytes) {
        r = SPW_EDISKLIMIT;
        atomic_store(&svc->disk_refused_bytes, total); /* GET /readyz: not ready until this fits */
    }
    for (uint32_t k = 0; r == 0 && k < used; k++) {
        int f = pr->slots[k].stored ? 0 : spw_part_failed(s->parts[pr->slots[k].partition]);
        if (f)
            r = f;
    }
    if (r == 0)
        r = spw_log_reserve(svc->log, total, 1);
    if (r) {
        if (r == SPW_EAGAIN) {
            spw_svc_reject(svc, s, SPW_REJ_BACKPRESSURE);
            spw_pressure_note_full(&svc->pressure);
        }
        else if (r == SPW_EMSGSIZE)
            spw_svc_reject(svc, s, SPW_REJ_INVALID);
        else if (spw_sc_is_disk_error(r))
            spw_svc_reject(svc, s, SPW_REJ_DISK);
        if (tls)
            small_put(tls, &enc[0]);
        for (uint32_t k = 0; k < used; k++)
            spw_buf_fini(&enc[k]);
        if (enc != enc_s)
            spw_free(enc);
        if (es) {
            for (uint32_t k = used; k-- > 0;) {
                if (!pr->slots[k].stored)
                    es_undo_slot(es, pr, &pr->slots[k], in, undo);
                spw_es_unlock(es, pr->slots[k].partition);
            }
            spw_free(undo);
            spw_free(pr->version_of);
        }
        spw_free(pr);
        return r;
    }
    if (es)
        spw__produce_versions(in, n, pr->version_of, &pr->vers, &pr->n_vers, &pr->ver_keys);
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
        spw_append_result ar = {0};
        /* The batch's block is given to the log, not copied (on an error
         * it stays here and is freed below); the thread's is copied. */
        int e = tls ? spw_part_append_batch(s->parts[sl->partition], enc[k].p, len, po->ack, SPW_APPEND_RESERVED,
                                            produce_cb, sl, &ar)
                    : spw_part_append_give(s->parts[sl->partition], &enc[k], po->ack, SPW_APPEND_RESERVED,
                                           produce_cb, sl, &ar);
        if (!tls)
            spw_buf_fini(&enc[k]);
        if (es) {
            /* The batch's offsets are known: the map's entries get them,
             * or, not appended, the keys get back their versions. */
            if (e)
                es_undo_slot(es, pr, sl, in, undo);
            else
                for (uint32_t j = 0; j < sl->count; j++) {
                    uint32_t ev = pr->order[sl->first_event + j];
                    if (in[ev].key_len >= 0)
                        spw_es_put_locked(es, sl->partition, in[ev].key, (size_t)in[ev].key_len,
                                          pr->version_of[ev], ar.base_offset + j);
                }
        }
        if (e) {
            unused += len;
            spw_append_result none = {0};
            produce_cb(sl, e, &none);
        }
    }
    spw_log_release(svc->log, unused);
    if (tls)
        small_put(tls, &enc[0]);
    if (enc != enc_s)
        spw_free(enc);
    if (es) {
        for (uint32_t k = used; k-- > 0;)
            spw_es_unlock(es, pr->slots[k].partition);
        spw_free(undo);
    }
    /* The extra count taken above: done cannot run before every batch was
     * handed to the log (nor, with nothing to append, never). */
    produce_unref(pr);
    return 0;
}
