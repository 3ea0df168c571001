/*
 * The dedupe step of the produce service (svc/produce.h, step 4; docs/api.md
 * "Idempotency", docs/architecture.md "Idempotency"): what a keyed request
 * finds in the dedupe table (admit/dedupe.h) before it is appended.
 *
 *   - A request whose earlier attempt failed after handing batches to the
 *     log is indeterminate: the headers of the partitions it wrote to are
 *     walked for its key and tickets, once none of them is failed.
 *   - A stored request is compared with the retry, partition by partition,
 *     by count and fingerprint (CRC32C of keys, values and headers), read
 *     back from the log where the table holds none: other content under
 *     the same key is refused as reused, never answered as a duplicate.
 *   - At start the table is rebuilt from the batch headers of every
 *     stream's dedupe window.
 *
 * Called by spw_produce_request (produce.c) on the request's loop — the
 * parts that read the log (spw__produce_dd_needs_disk) on an I/O worker —
 * and by the server once at start (spw_produce_dedupe_rebuild).
 */
#include <inttypes.h>

#include "core/alloc.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "svc/svc.h"
#include "svc/produce.h"
#include "svc/produce_int.h"

/* ---- the dedupe step: resolving failed requests, comparing retries ---- */

/* The lengths of a record's parts, folded into its fingerprint in one step. */
static uint32_t fp_lens(uint32_t crc, uint32_t a, uint32_t b, uint32_t c)
{
    return spw_crc32c_le32x3(crc, a, b, c); /* the 12 bytes, little-endian */
}

/* The rest of spw_produce_fingerprint (produce.h): each header's (key
 * length, value length), key, value. */
uint32_t spw__produce_fingerprint_headers(uint32_t crc, const spw_record *v)
{
    for (uint32_t i = 0; i < v->header_count; i++) {
        const spw_kv *h = &v->headers[i];
        crc = fp_lens(crc, h->key_len, h->value_len, 0);
        crc = spw_crc32c_extend(crc, h->key, h->key_len);
        crc = spw_crc32c_extend(crc, h->value, h->value_len);
    }
    return crc;
}

/* As spw_produce_fingerprint, for a record read from the log. */
static int fp_view(uint32_t *crc, const spw_record_view *v)
{
    uint32_t c = fp_lens(*crc, (uint32_t)v->key_len, v->value_len, v->header_count);
    if (v->key_len > 0)
        c = spw_crc32c_extend(c, v->key, (size_t)v->key_len);
    c = spw_crc32c_extend(c, v->value, v->value_len);
    const uint8_t *p = v->headers, *end = v->headers + v->headers_len;
    for (uint32_t i = 0; i < v->header_count; i++) {
        spw_kv h;
        if (spw_kv_next(&p, end, &h) != 1)
            return SPW_ECORRUPT;
        c = fp_lens(c, h.key_len, h.value_len, 0);
        c = spw_crc32c_extend(c, h.key, h.key_len);
        c = spw_crc32c_extend(c, h.value, h.value_len);
    }
    *crc = c;
    return 0;
}

/* The fingerprint of a stored slot, from its records in the log, read with
 * the record cursor (log/cursor.h). Only slots rebuilt at start have no
 * fingerprint, and recovery made everything it kept durable, so a slot
 * whose records the cursor does not reach in full is damage. */
static int fp_from_log(spw_stream *s, const spw_dd_slot *sl, uint32_t *out)
{
    if (sl->partition >= s->cfg.partitions)
        return SPW_ECORRUPT;
    uint64_t end = sl->first_offset + sl->count;
    spw_cursor c;
    spw_cursor_init(&c, s->parts[sl->partition], sl->first_offset, 1 << 20);
    spw_record_view rv;
    uint32_t crc = 0;
    int r = 0;
    while (r == 0 && c.next < end) {
        int n = spw_cursor_next(&c, &rv);
        if (n <= 0)
            r = n < 0 ? n : SPW_ECORRUPT;
        else if (rv.offset < end)
            r = fp_view(&crc, &rv);
    }
    spw_cursor_fini(&c);
    *out = crc;
    return r;
}

/*
 * Does this request (in, n, routed as spw_produce_submit_ex routes it) match
 * the stored slots of res, partition by partition? 1 yes, 0 no, or an
 * error reading the log.
 */
static int dd_same_mode(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition, uint64_t key,
                        const spw_dd_result *res, int hot);

/* A stream with split keys: the first attempt may have been routed before
 * its key was split (a split is never undone), so either routing agrees. */
static int dd_same(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition, uint64_t key,
                   const spw_dd_result *res)
{
    int same = dd_same_mode(s, in, n, partition, key, res, 1);
    return same == 0 && s->hot ? dd_same_mode(s, in, n, partition, key, res, 0) : same;
}

static int dd_same_mode(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition, uint64_t key,
                        const spw_dd_result *res, int hot)
{
    uint32_t P = s->cfg.partitions;
    uint32_t *fp = spw_xcalloc(P, sizeof *fp), *cnt = spw_xcalloc(P, sizeof *cnt);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = spw__produce_route_mode(s, &in[i], i, partition, key, hot);
        fp[p] = spw_produce_fingerprint(fp[p], &in[i]);
        cnt[p]++;
    }
    int same = 1;
    for (uint32_t j = 0; j < res->nslots && same == 1; j++) {
        const spw_dd_slot *sl = &res->slots[j];
        uint32_t want = sl->fp;
        if (sl->partition >= P || cnt[sl->partition] != sl->count) {
            same = 0;
            break;
        }
        if (!sl->fp_known) {
            int r = fp_from_log(s, sl, &want);
            if (r) {
                same = r;
                break;
            }
        }
        same = want == fp[sl->partition];
    }
    spw_free(fp);
    spw_free(cnt);
    return same;
}

/* See produce_int.h. The records of a slot are the request's events
 * routed to its partition, in request order (the order of the batch). */
uint64_t *spw__produce_stored_versions(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition,
                                       uint64_t idem_key, const spw_dd_slot *slots, uint32_t nslots)
{
    uint32_t P = s->cfg.partitions;
    uint64_t *version_of = spw_xcalloc(n ? n : 1, sizeof *version_of);
    uint32_t *part = spw_xmalloc((n ? n : 1) * sizeof *part);
    for (uint32_t i = 0; i < n; i++)
        part[i] = spw_produce_route(s, &in[i], i, partition, idem_key);
    int ok = 1;
    spw_cursor c;
    spw_cursor_init(&c, s->parts[0], 0, 1 << 20);
    for (uint32_t j = 0; j < nslots && ok; j++) {
        const spw_dd_slot *sl = &slots[j];
        if (sl->partition >= P) {
            ok = 0;
            break;
        }
        uint64_t end = sl->first_offset + sl->count;
        uint32_t i = 0;
        spw_cursor_seek(&c, s->parts[sl->partition], sl->first_offset);
        spw_record_view rv;
        while (ok && c.next < end) {
            if (spw_cursor_next(&c, &rv) != 1) {
                ok = 0;
                break;
            }
            if (rv.offset < sl->first_offset || rv.offset >= end)
                continue;
            while (i < n && part[i] != sl->partition)
                i++;
            if (i == n || !rv.version) {
                ok = 0;
                break;
            }
            version_of[i++] = rv.version;
        }
    }
    spw_cursor_fini(&c);
    spw_free(part);
    if (!ok) {
        spw_free(version_of);
        return NULL;
    }
    return version_of;
}

typedef struct resolve_ctx {
    spw_dd_result *res;
    uint32_t partition;
    uint64_t key, t0, t1;
    uint32_t n;
    uint32_t cap;
} resolve_ctx;

static void resolve_batch(void *arg, const spw_batch_hdr *h)
{
    resolve_ctx *x = arg;
    uint64_t t = spw_id_ticket(h->base_id);
    if (h->idem_hash != x->key || h->request_count != x->n || t < x->t0 || t >= x->t1)
        return;
    spw_dd_result *r = x->res;
    if (r->nslots == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 8;
        r->slots = spw_xrealloc(r->slots, x->cap * sizeof *r->slots);
    }
    r->slots[r->nslots++] = (spw_dd_slot){.partition = x->partition, .count = h->record_count,
                                          .first_offset = h->base_offset};
}

/*
 * Resolves an indeterminate entry (dedupe.h): which of the partitions the
 * failed attempt wrote to hold its batch now. Their batches carry the key,
 * the request's size and ids from the attempt's tickets, and are found in
 * the segments written since the attempt began. Only once none of those
 * partitions is failed: a failed one is recovering, and its recovery
 * decides whether the batch stays. Returns SPW_DD_UNRESOLVED (not yet: the
 * entry is indeterminate again), SPW_DD_NEW (nothing stored; e still reserved),
 * SPW_DD_PARTIAL (some stored: res has them, e reserved) or SPW_DD_DONE
 * (all stored: e finished, res is the answer).
 */
static int dd_resolve(spw_svc *svc, spw_stream *s, uint64_t key, spw_dd_entry *e, spw_dd_result *res)
{
    for (uint32_t j = 0; j < res->nunknown; j++)
        if (res->unknown[j] >= s->cfg.partitions || spw_part_failed(s->parts[res->unknown[j]])) {
            spw_dd_unresolved(svc->dd, e);
            return SPW_DD_UNRESOLVED;
        }
    spw_idgen *g = spw_log_idgen(svc->log);
    /* Segments last written since the attempt began; a minute's slack for
     * a wall clock stepped back in between (the ticket range is the real
     * filter, this only skips older segments). */
    int64_t since = spw_id_ms(spw_id_from_ticket(g, res->attempt_ticket)) - 60000;
    uint32_t known = res->nslots;
    resolve_ctx x = {.res = res, .key = key, .t0 = res->attempt_ticket, .t1 = res->attempt_ticket + res->n_events,
                     .n = res->n_events, .cap = res->nslots};
    for (uint32_t j = 0; j < res->nunknown; j++) {
        x.partition = res->unknown[j];
        int r = spw_part_scan_headers(s->parts[x.partition], since, resolve_batch, &x);
        if (r) {
            spw_warn("stream %s partition %u: resolving a failed keyed request: %s", s->cfg.name, x.partition,
                     spw_strerror(r));
            spw_dd_unresolved(svc->dd, e);
            return SPW_DD_UNRESOLVED;
        }
    }
    uint64_t stored = 0;
    for (uint32_t j = 0; j < res->nslots; j++)
        stored += res->slots[j].count;
    spw_free(res->unknown);
    res->unknown = NULL;
    res->nunknown = 0;
    if (stored == 0)
        return SPW_DD_NEW;
    res->first_ticket = res->attempt_ticket;
    res->complete = stored >= res->n_events;
    res->ids_known = res->complete && known == 0; /* all from the one attempt */
    spw_dd_update(svc->dd, e, res);
    if (!res->complete)
        return SPW_DD_PARTIAL;
    spw_dd_finish(svc->dd, e, res, spw_id_ms(spw_id_from_ticket(g, res->attempt_ticket)) + s->cfg.dedupe_window_ms);
    return SPW_DD_DONE;
}

/* See produce_int.h. */
int spw__produce_dd_needs_disk(int d, const spw_dd_result *res)
{
    if (d == SPW_DD_INDET)
        return 1;
    if (d != SPW_DD_DONE && d != SPW_DD_PARTIAL)
        return 0;
    for (uint32_t j = 0; j < res->nslots; j++)
        if (!res->slots[j].fp_known)
            return 1;
    return 0;
}

int spw__produce_dd_begin(spw_svc *svc, spw_stream *s, uint64_t key, const spw_record *in, uint32_t n,
                          uint32_t partition, spw_dd_entry **e, spw_dd_result *res)
{
    int d = spw_dd_begin(svc->dd, s->uid, key, n, spw_wall_ms(), e, res);
    return spw__produce_dd_continue(svc, s, key, in, n, partition, d, e, res);
}

int spw__produce_dd_continue(spw_svc *svc, spw_stream *s, uint64_t key, const spw_record *in, uint32_t n,
                             uint32_t partition, int d, spw_dd_entry **e, spw_dd_result *res)
{
    if (d == SPW_DD_INDET) {
        d = dd_resolve(svc, s, key, *e, res);
        if (d == SPW_DD_UNRESOLVED || d == SPW_DD_NEW)
            spw_dd_result_free(res);
    }
    if (d != SPW_DD_DONE && d != SPW_DD_PARTIAL)
        return d;
    int same = dd_same(s, in, n, partition, key, res);
    if (same == 1)
        return d;
    if (same < 0)
        spw_warn("stream %s: a retried keyed request cannot be compared with the stored one: %s", s->cfg.name,
                 spw_strerror(same));
    if (d == SPW_DD_PARTIAL)
        spw_dd_finish(svc->dd, *e, NULL, 0); /* stays what the log holds */
    *e = NULL;
    spw_dd_result_free(res);
    return same < 0 ? SPW_DD_UNREADABLE : SPW_DD_REUSED;
}

/* ---- dedupe rebuild ---- */

typedef struct rebuild_ctx {
    spw_svc *svc;
    spw_stream *s;
    uint32_t partition;
    int64_t now;
    uint64_t batches;
} rebuild_ctx;

static void rebuild_batch(void *arg, const spw_batch_hdr *h)
{
    rebuild_ctx *x = arg;
    if (!h->idem_hash || !h->request_count)
        return;
    int64_t expires = spw_id_ms(h->base_id) + x->s->cfg.dedupe_window_ms;
    if (expires <= x->now)
        return;
    spw_dd_restore(x->svc->dd, x->s->uid, h->idem_hash, h->request_count, spw_id_ticket(h->base_id), x->partition,
                   h->base_offset, h->record_count, expires);
    x->batches++;
}

static void rebuild_stream(void *arg, spw_stream *s)
{
    rebuild_ctx *x = arg;
    x->s = s;
    if (s->cfg.dedupe_window_ms <= 0)
        return;
    for (uint32_t i = 0; i < s->cfg.partitions; i++) {
        x->partition = i;
        int r = spw_part_scan_headers(s->parts[i], x->now - s->cfg.dedupe_window_ms, rebuild_batch, x);
        if (r)
            spw_warn("stream %s partition %u: rebuilding the dedupe table: %s", s->cfg.name, i, spw_strerror(r));
    }
}

void spw_produce_dedupe_rebuild(spw_svc *svc)
{
    if (!svc->dd)
        return;
    rebuild_ctx x = {.svc = svc, .now = spw_wall_ms()};
    spw_catalog_each(svc->cat, rebuild_stream, &x);
    spw_dd_stats st;
    spw_dd_stats_get(svc->dd, &st);
    if (x.batches)
        spw_info("dedupe table rebuilt from the log: %" PRIu64 " keys from %" PRIu64 " batches", st.entries,
                 x.batches);
}
