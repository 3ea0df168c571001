/*
 * HTTP API v1 handlers: see api.h and docs/api.md.
 *
 * Produce validates the whole body before anything is appended (one bad
 * event → 400 naming its index or line and byte offset, nothing stored),
 * groups events by partition (FNV-1a of the key; round robin without one),
 * encodes one batch per partition with the event bytes as received,
 * reserves the budget for all of them at once (so a request is admitted
 * whole or refused with 503), appends, and answers 202 when every batch
 * reached the ack level.
 */
#include "server/api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "net/binproto.h"
#include "net/membudget.h"
#include "server/auth.h"
#include "server/coalesce.h"
#include "server/groups_http.h"
#include "server/ratelimit.h"
#include "server/sink_api.h"
#include "sink/sink.h"
#include "net/frame.h"

#define SPW_VERSION_STR "0.1.0"
#define IDS_MAX_IN_RESPONSE 1000

/* ---- small output helpers ---- */

static void out_raw(spw_buf *b, const void *p, size_t n)
{
    if (spw_buf_reserve(b, b->len + n))
        abort(); /* spw_buf uses try_realloc; responses are bounded by read limits */
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void outf(spw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(spw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = spw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (r == SPW_ENOMEM)
        abort();
}

/* A JSON string of bytes that are valid UTF-8 (keys are checked on the way in). */
static void out_str(spw_buf *b, const uint8_t *p, size_t n)
{
    if (spw_json_put_str(b, (const char *)p, n))
        abort();
}

static void out_b64(spw_buf *b, const uint8_t *p, size_t n)
{
    if (spw_json_put_b64(b, p, n))
        abort();
}

static void respond_json(spw_http_req *req, int status, spw_buf *b)
{
    spw_http_respond(req, status, NULL, "application/json", b->p, b->len);
    spw_buf_fini(b);
}

/* ---- query strings ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Finds name in the query and percent-decodes its value into out.
 * Returns 1 found, 0 absent, -1 malformed or too long. */
static int query_get(const char *q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < len; i++) {
                char c = q[i];
                if (c == '%') {
                    if (i + 2 >= len)
                        return -1;
                    int h = hexval(q[i + 1]), l = hexval(q[i + 2]);
                    if (h < 0 || l < 0)
                        return -1;
                    c = (char)(h << 4 | l);
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (o + 1 >= cap || c == 0)
                    return -1;
                out[o++] = c;
            }
            out[o] = 0;
            return 1;
        }
        q += len + (amp ? 1 : 0);
        if (!amp)
            break;
    }
    return 0;
}

/* Parses a non-negative decimal integer query parameter. 1 set, 0 absent, -1 bad. */
static int query_u64(const char *q, const char *name, uint64_t *v)
{
    char buf[32];
    int r = query_get(q, name, buf, sizeof buf);
    if (r <= 0)
        return r;
    if (!buf[0])
        return -1;
    uint64_t x = 0;
    for (char *p = buf; *p; p++) {
        if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return 1;
}

int spw__api_query_u64(const char *q, const char *name, uint64_t *v) { return query_u64(q, name, v); }
int spw__api_query_str(const char *q, const char *name, char *out, size_t cap) { return query_get(q, name, out, cap); }

static int query_i64(const char *q, const char *name, int64_t *v)
{
    char buf[32];
    int r = query_get(q, name, buf, sizeof buf);
    if (r <= 0)
        return r;
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (!buf[0] || *end || errno)
        return -1;
    *v = x;
    return 1;
}

/* ---- produce ---- */

typedef struct ev {
    uint32_t off, len; /* event bytes in the body */
    int32_t key_off;   /* in the key arena, or -1 for no key */
    uint32_t key_len;
    int64_t ts;
    uint32_t part;
} ev;

/* The 202 body: accepted, partitions, ids (when known and few enough);
 * sup (NULL: none) marks the events coalescing superseded: their ids are
 * null and "superseded" counts them (docs/api.md "Coalescing"). */
static void result_json(spw_buf *b, spw_api *api, const spw_dd_result *r, int duplicate, const uint8_t *sup,
                        uint32_t n_sup)
{
    /* printf-free: this runs once per produce request. */
    spw_idgen *g = spw_log_idgen(api->log);
    int e = spw_buf_puts(b, "{\"accepted\":") || spw_buf_put_u64(b, r->n_events) ||
            spw_buf_puts(b, ",\"partitions\":[");
    for (uint32_t i = 0; i < r->nslots && !e; i++)
        e = spw_buf_puts(b, i ? ",{\"partition\":" : "{\"partition\":") || spw_buf_put_u64(b, r->slots[i].partition) ||
            spw_buf_puts(b, ",\"first_offset\":") || spw_buf_put_u64(b, r->slots[i].first_offset) ||
            spw_buf_puts(b, ",\"count\":") || spw_buf_put_u64(b, r->slots[i].count) || spw_buf_puts(b, "}");
    e = e || spw_buf_puts(b, "]");
    if (!e && r->ids_known && r->n_events <= IDS_MAX_IN_RESPONSE) {
        /* A request's ids are consecutive tickets in request order. */
        e = spw_buf_puts(b, ",\"ids\":[");
        for (uint32_t k = 0; k < r->n_events && !e; k++)
            if (sup && sup[k])
                e = spw_buf_puts(b, k ? ",null" : "null");
            else
                e = spw_buf_puts(b, k ? ",\"" : "\"") ||
                    spw_buf_put_u64(b, spw_id_from_ticket(g, r->first_ticket + k)) || spw_buf_puts(b, "\"");
        e = e || spw_buf_puts(b, "]");
    }
    if (!e && sup)
        e = spw_buf_puts(b, ",\"superseded\":") || spw_buf_put_u64(b, n_sup);
    if (!e && duplicate)
        e = spw_buf_puts(b, ",\"duplicate\":true");
    e = e || spw_buf_puts(b, "}\n");
    if (e)
        abort(); /* as out_raw: spw_buf uses try_realloc; bounded by the request */
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

static void produce_finish(void *arg)
{
    spw_produce *pr = arg;
    spw_api *api = pr->api;
    spw_http_req *req = pr->user;
    char *rl_headers = req->user; /* RateLimit-* lines for the 202, or NULL (rate_check) */
    req->user = NULL;
    int err = atomic_load(&pr->err);
    if (err) {
        int status;
        uint16_t bst;
        const char *code;
        char msg[400];
        spw_api_disk_error(err, 0, &status, &bst, &code, msg, sizeof msg);
        spw_http_error(req, status, code, NULL, "%s", msg);
    } else {
        spw_buf b = SPW_BUF_INIT;
        spw_dd_slot *slots = spw_xmalloc((pr->n_slots ? pr->n_slots : 1) * sizeof *slots);
        spw_dd_result r;
        pr_result(pr, &r, slots);
        result_json(&b, api, &r, 0, pr->superseded, pr->n_superseded);
        spw_free(slots);
        spw_http_respond(req, 202, rl_headers, "application/json", b.p, b.len);
        spw_buf_fini(&b);
    }
    spw_free(rl_headers);
    spw_hist_add(&api->produce_latency, (spw_mono_ns() - pr->t0) / 1000);
    spw_api_produce_free(pr);
}

static void http_produce_done(spw_produce *pr, void *user)
{
    spw_http_req *req = user;
    spw_http_loop_post(req->loop, produce_finish, pr);
}

void spw_api_produce_free(spw_produce *pr)
{
    spw_stream_put(pr->s);
    spw_free(pr->order);
    spw_free(pr->superseded);
    spw_free(pr);
}

static int is_disk_error(int err)
{
    return err == SPW_EDISKLIMIT || (err < 0 && err > SPW__ERR_BASE && err != SPW_EAGAIN && err != SPW_EMSGSIZE &&
                                     err != SPW_EINVAL && err != SPW_ENOMEM && err != SPW_ECANCELED);
}

int spw_api_disk_error(int err, int refused, int *http_status, uint16_t *bin_status, const char **code, char *msg,
                       size_t cap)
{
    int disk = is_disk_error(err);
    if (err == SPW_EDISKLIMIT) {
        *http_status = 507;
        *bin_status = SPW_ST_DISK;
        *code = "disk_limit";
        snprintf(msg, cap,
                 "the data directory is at its max-disk-bytes limit: nothing was appended; space comes back when "
                 "retention deletes segments or a stream is deleted");
        return 1;
    }
    int full = err == -ENOSPC || err == -EDQUOT;
    *http_status = full ? 507 : 500;
    *bin_status = full ? SPW_ST_DISK : SPW_ST_INTERNAL;
    *code = full ? "disk_full" : "write_failed";
    if (refused)
        snprintf(msg, cap,
                 "a partition of the stream is read-only after a failed write (%s) until it recovers, which it does "
                 "by itself once the disk works again: nothing was appended",
                 spw_strerror(err));
    else
        snprintf(msg, cap,
                 "the write failed: %s; nothing of it is acknowledged (the partition refuses writes until it has "
                 "recovered)",
                 spw_strerror(err));
    return disk;
}

/* One of pr's counts is done; the last one finishes the request. */
static void produce_unref(spw_produce *pr)
{
    if (atomic_fetch_sub(&pr->pending, 1) == 1) {
        spw_api *api = pr->api;
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
                spw_dd_fail(api->dd, pr->dd, &kr, unknown, nu, pr->first_ticket,
                            spw_wall_ms() + pr->s->cfg.dedupe_window_ms);
                spw_free(known);
                spw_free(unknown);
            } else {
                spw_dd_slot *slots = spw_xmalloc((pr->n_slots ? pr->n_slots : 1) * sizeof *slots);
                spw_dd_result res;
                pr_result(pr, &res, slots);
                spw_dd_finish(api->dd, pr->dd, &res, spw_wall_ms() + pr->s->cfg.dedupe_window_ms);
                spw_free(slots);
            }
            pr->dd = NULL;
        }
        if (err == 0) {
            /* Events written: superseded ones are counted by the coalescer. */
            atomic_fetch_add(&pr->s->events_in, pr->n_events - pr->n_superseded);
            atomic_fetch_add(&pr->s->bytes_in, pr->bytes);
            atomic_fetch_add(&api->events_in, pr->n_events - pr->n_superseded);
            atomic_fetch_add(&api->bytes_in, pr->bytes);
            /* Parked consumer-group polls: records at ack < fsync are not
             * visible yet, and the waiter asks for their fsync; the log's
             * durable hook wakes the polls again when they are visible. */
            spw_consume_kick(api->groups);
        } else if (is_disk_error(err)) {
            atomic_fetch_add(&api->rejected[SPW_REJ_DISK], 1);
        }
        pr->done(pr, pr->user);
    }
}

void spw__api_produce_complete(spw_produce *pr)
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

uint32_t spw_api_route(spw_stream *s, const spw_record *v, uint32_t i, uint32_t partition, uint64_t idem_key)
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

/* ---- the dedupe step: resolving failed requests, comparing retries ---- */

/* The lengths of a record's parts, folded into its fingerprint in one step. */
static uint32_t fp_lens(uint32_t crc, uint32_t a, uint32_t b, uint32_t c)
{
    uint8_t w[12] = {(uint8_t)a, (uint8_t)(a >> 8), (uint8_t)(a >> 16), (uint8_t)(a >> 24),
                     (uint8_t)b, (uint8_t)(b >> 8), (uint8_t)(b >> 16), (uint8_t)(b >> 24),
                     (uint8_t)c, (uint8_t)(c >> 8), (uint8_t)(c >> 16), (uint8_t)(c >> 24)};
    return spw_crc32c_extend(crc, w, sizeof w);
}

/* CRC32C over (key length, value length, header count), key, value, then
 * each header's (key length, value length), key, value: three calls for a
 * record without headers (this runs for every record of a keyed request). */
uint32_t spw_api_dd_fingerprint(uint32_t crc, const spw_record *v)
{
    crc = fp_lens(crc, (uint32_t)v->key_len, v->value_len, v->header_count);
    if (v->key_len > 0)
        crc = spw_crc32c_extend(crc, v->key, (size_t)v->key_len);
    crc = spw_crc32c_extend(crc, v->value, v->value_len);
    for (uint32_t i = 0; i < v->header_count; i++) {
        const spw_kv *h = &v->headers[i];
        crc = fp_lens(crc, h->key_len, h->value_len, 0);
        crc = spw_crc32c_extend(crc, h->key, h->key_len);
        crc = spw_crc32c_extend(crc, h->value, h->value_len);
    }
    return crc;
}

/* As spw_api_dd_fingerprint, for a record read from the log. */
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

/* The fingerprint of a stored slot, from its records in the log. */
static int fp_from_log(spw_stream *s, const spw_dd_slot *sl, uint32_t *out)
{
    if (sl->partition >= s->cfg.partitions)
        return SPW_ECORRUPT;
    spw_part *p = s->parts[sl->partition];
    spw_buf data = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    uint64_t next = sl->first_offset, end = sl->first_offset + sl->count;
    uint32_t crc = 0;
    int r = 0;
    while (r == 0 && next < end) {
        int n = spw_part_read(p, next, 1 << 20, &data, NULL);
        if (n <= 0) {
            r = n < 0 ? n : SPW_ECORRUPT;
            break;
        }
        size_t pos = 0;
        for (int b = 0; b < n && r == 0 && next < end; b++) {
            spw_batch_hdr h;
            const uint8_t *recs;
            size_t len;
            if ((r = spw_batch_parse(data.p + pos, data.len - pos, &h)) ||
                (r = spw_batch_records(data.p + pos, &h, &scratch, &recs, &len)))
                break;
            spw_rec_iter it;
            spw_record_view rv;
            spw_rec_iter_init(&it, &h, recs, len);
            int rr = 0;
            while (next < end && (rr = spw_rec_next(&it, &rv)) == 1) {
                if (rv.offset < next)
                    continue;
                if ((r = fp_view(&crc, &rv)))
                    break;
                next = rv.offset + 1;
            }
            if (r == 0 && rr < 0)
                r = rr;
            pos += h.length;
        }
    }
    spw_buf_fini(&data);
    spw_buf_fini(&scratch);
    *out = crc;
    return r;
}

/*
 * Does this request (in, n, routed as spw_api_produce_ex routes it) match
 * the stored slots of res, partition by partition? 1 yes, 0 no, or an
 * error reading the log.
 */
static int dd_same(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition, uint64_t key,
                   const spw_dd_result *res)
{
    uint32_t P = s->cfg.partitions;
    uint32_t *fp = spw_xcalloc(P, sizeof *fp), *cnt = spw_xcalloc(P, sizeof *cnt);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = spw_api_route(s, &in[i], i, partition, key);
        fp[p] = spw_api_dd_fingerprint(fp[p], &in[i]);
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
static int dd_resolve(spw_api *api, spw_stream *s, uint64_t key, spw_dd_entry *e, spw_dd_result *res)
{
    for (uint32_t j = 0; j < res->nunknown; j++)
        if (res->unknown[j] >= s->cfg.partitions || spw_part_failed(s->parts[res->unknown[j]])) {
            spw_dd_unresolved(api->dd, e);
            return SPW_DD_UNRESOLVED;
        }
    spw_idgen *g = spw_log_idgen(api->log);
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
            spw_dd_unresolved(api->dd, e);
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
    spw_dd_update(api->dd, e, res);
    if (!res->complete)
        return SPW_DD_PARTIAL;
    spw_dd_finish(api->dd, e, res, spw_id_ms(spw_id_from_ticket(g, res->attempt_ticket)) + s->cfg.dedupe_window_ms);
    return SPW_DD_DONE;
}

int spw_api_dd_begin(spw_api *api, spw_stream *s, uint64_t key, const spw_record *in, uint32_t n, uint32_t partition,
                     spw_dd_entry **e, spw_dd_result *res)
{
    int d = spw_dd_begin(api->dd, s->uid, key, n, spw_wall_ms(), e, res);
    if (d == SPW_DD_INDET) {
        d = dd_resolve(api, s, key, *e, res);
        if (d == SPW_DD_UNRESOLVED || d == SPW_DD_NEW)
            spw_dd_result_free(res);
    }
    if (d != SPW_DD_DONE && d != SPW_DD_PARTIAL)
        return d;
    int same = dd_same(s, in, n, partition, key, res);
    if (same == 1)
        return d;
    if (same < 0)
        spw_warn("stream %s: comparing a retried keyed request with the stored one: %s; refused as reused",
                 s->cfg.name, spw_strerror(same));
    if (d == SPW_DD_PARTIAL)
        spw_dd_finish(api->dd, *e, NULL, 0); /* stays what the log holds */
    *e = NULL;
    spw_dd_result_free(res);
    return SPW_DD_REUSED;
}

int spw_api_produce(spw_api *api, spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition, spw_ack ack,
                    uint64_t producer_id, uint32_t producer_seq, spw_produce_done done, void *user)
{
    spw_produce_opts o = {.partition = partition, .ack = ack, .producer_id = producer_id, .producer_seq = producer_seq};
    return spw_api_produce_ex(api, s, in, n, &o, done, user);
}

int spw_api_produce_ex(spw_api *api, spw_stream *s, const spw_record *in, uint32_t n, const spw_produce_opts *po,
                       spw_produce_done done, void *user)
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
        part_of[i] = spw_api_route(s, &in[i], i, partition, po->idem_key);
        counts[part_of[i]]++;
    }
    uint32_t used = 0;
    for (uint32_t p = 0; p < P; p++)
        used += counts[p] > 0;
    spw_produce *pr = spw_xcalloc(1, sizeof *pr + used * sizeof(spw_produce_part));
    pr->api = api;
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
     * content under the same key is refused (spw_api_dd_begin). */
    if (po->idem_key)
        for (uint32_t k = 0; k < used; k++) {
            spw_produce_part *sl = &pr->slots[k];
            uint32_t fp = 0;
            for (uint32_t j = 0; j < sl->count; j++)
                fp = spw_api_dd_fingerprint(fp, &in[pr->order[sl->first_event + j]]);
            sl->fp = fp;
        }
    if (!small_p) {
        spw_free(start);
        spw_free(counts);
    }
    if (!small_n)
        spw_free(part_of);
    /* coalesce: true under pressure: the coalescer takes it from here. */
    int cr = s->cfg.coalesce && api->coal ? spw_coalesce_produce(api->coal, pr, in, po) : SPW_COALESCE_DIRECT;
    if (cr != SPW_COALESCE_DIRECT) {
        if (cr) {
            spw_free(pr->order);
            spw_free(pr);
        }
        return cr;
    }

    /* A request's ids are reserved together, in request order, so that a
     * dedupe result needs only the first (dedupe.h). */
    spw_idgen *g = spw_log_idgen(api->log);
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
    if (r == 0 && api->max_disk_bytes &&
        spw_log_disk_bytes(api->log) + spw_log_pending_bytes(api->log) + total > api->max_disk_bytes)
        r = SPW_EDISKLIMIT;
    for (uint32_t k = 0; r == 0 && k < used; k++) {
        int f = pr->slots[k].stored ? 0 : spw_part_failed(s->parts[pr->slots[k].partition]);
        if (f)
            r = f;
    }
    if (r == 0)
        r = spw_log_reserve(api->log, total, 1);
    if (r) {
        if (r == SPW_EAGAIN) {
            atomic_fetch_add(&api->rejected[SPW_REJ_BACKPRESSURE], 1);
            spw_pressure_note_full(&api->pressure);
        }
        else if (r == SPW_EMSGSIZE)
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
        else if (is_disk_error(r))
            atomic_fetch_add(&api->rejected[SPW_REJ_DISK], 1);
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
    spw_log_release(api->log, unused);
    spw_free(enc);
    /* The extra count taken above: done cannot run before every batch was
     * handed to the log (nor, with nothing to append, never). */
    produce_unref(pr);
    return 0;
}

const char *spw_api_admit(spw_api *api, int priority, uint32_t *retry_ms)
{
    int r = spw_pressure_admit(&api->pressure, priority, retry_ms);
    if (r == SPW_ADMIT_OK)
        return NULL;
    atomic_fetch_add(&api->rejected[r == SPW_ADMIT_SHED ? SPW_REJ_SHED : SPW_REJ_BACKPRESSURE], 1);
    return r == SPW_ADMIT_SHED ? "shed" : "backpressure";
}

/* 503 for a refused produce, with Retry-After in whole seconds. */
static void overloaded(spw_http_req *req, const char *code, uint32_t retry_ms)
{
    char h[48];
    snprintf(h, sizeof h, "Retry-After: %u\r\n", (retry_ms + 999) / 1000);
    if (strcmp(code, "shed") == 0)
        spw_http_error(req, 503, code, h,
                       "the server is shedding load of this priority to keep more important writes flowing; "
                       "retry after %u ms",
                       retry_ms);
    else
        spw_http_error(req, 503, code, h,
                       "the server is writing as fast as the disk allows and its pending budget is full; retry "
                       "after %u ms",
                       retry_ms);
}

/* Validation failure: 400 naming the event. */
static void bad_event(spw_api *api, spw_http_req *req, int ndjson, uint32_t index, size_t byte, const char *code,
                      const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void bad_event(spw_api *api, spw_http_req *req, int ndjson, uint32_t index, size_t byte, const char *code,
                      const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
    spw_http_error(req, 400, code, NULL, "%s %u (byte %zu): %s; nothing was appended", ndjson ? "line" : "event",
                   ndjson ? index + 1 : index, byte, msg);
}

typedef struct parse_ctx {
    spw_api *api;
    spw_http_req *req;
    spw_stream *s;
    spw_json_ptr ptrs[2];
    int nptrs, key_i, ts_i;
    ev *evs;
    uint32_t n, cap;
    spw_buf keys;
    int64_t now;
    int ndjson;
} parse_ctx;

/* Checks one event object at [p, end) of the body and records it. */
static int take_event(parse_ctx *c, const char *body, const char *p, const char *end, uint32_t index)
{
    spw_json_span found[2];
    spw_json_error e;
    const char *vend;
    spw_stream_config *cfg = &c->s->cfg;
    if (spw_json_scan(p, end, c->ptrs, c->nptrs, found, &vend, &e)) {
        bad_event(c->api, c->req, c->ndjson, index, (size_t)(p - body) + e.offset, "invalid_json", "%s", e.msg);
        return -1;
    }
    const char *start = spw_json_ws(p, end);
    if (*start != '{') {
        bad_event(c->api, c->req, c->ndjson, index, (size_t)(start - body), "not_an_object",
                  "each event must be a JSON object");
        return -1;
    }
    if (c->ndjson && spw_json_ws(vend, end) != end) {
        bad_event(c->api, c->req, c->ndjson, index, (size_t)(vend - body), "invalid_json",
                  "data after the event on the same line");
        return -1;
    }
    size_t len = (size_t)(vend - start);
    if (len > cfg->max_event_bytes) {
        bad_event(c->api, c->req, c->ndjson, index, (size_t)(start - body), "event_too_large",
                  "event is %zu bytes, the stream's max_event_bytes is %u", len, cfg->max_event_bytes);
        return -1;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->evs = spw_xrealloc(c->evs, c->cap * sizeof *c->evs);
    }
    ev *v = &c->evs[c->n];
    v->off = (uint32_t)(start - body);
    v->len = (uint32_t)len;
    v->key_off = -1;
    v->key_len = 0;
    v->ts = c->now;
    if (c->key_i >= 0) {
        spw_json_span *k = &found[c->key_i];
        if (k->type == SPW_JSON_NONE || k->type == SPW_JSON_NULL) {
            bad_event(c->api, c->req, c->ndjson, index, (size_t)(start - body), "missing_key",
                      "the stream's key %s is missing", cfg->key);
            return -1;
        }
        if (k->type != SPW_JSON_STRING && k->type != SPW_JSON_NUMBER) {
            bad_event(c->api, c->req, c->ndjson, index, (size_t)(k->p - body), "bad_key",
                      "the key %s must be a string or a number", cfg->key);
            return -1;
        }
        if (spw_buf_reserve(&c->keys, c->keys.len + k->n))
            abort();
        long kl = (long)k->n;
        if (k->type == SPW_JSON_STRING)
            kl = spw_json_unescape(k, (char *)c->keys.p + c->keys.len, k->n);
        else
            memcpy(c->keys.p + c->keys.len, k->p, k->n);
        v->key_off = (int32_t)c->keys.len;
        v->key_len = (uint32_t)kl;
        c->keys.len += (size_t)kl;
    }
    if (c->ts_i >= 0 && found[c->ts_i].type != SPW_JSON_NONE) {
        if (spw_json_int64(&found[c->ts_i], &v->ts)) {
            bad_event(c->api, c->req, c->ndjson, index, (size_t)(found[c->ts_i].p - body), "bad_timestamp",
                      "the timestamp %s must be an integer of milliseconds since the Unix epoch", cfg->timestamp);
            return -1;
        }
    }
    c->n++;
    return 0;
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

/*
 * The rate limit of a validated produce of n events (server/ratelimit.h):
 * returns 0 when admitted, with the key taken for a refund in key/kl and,
 * for a limited stream, the RateLimit-* lines of the 202 in req->user
 * (malloc'ed, freed by produce_finish); or 1 when refused and answered:
 * 429 rate_limited, or 413 over_burst for more events than can ever pass.
 */
static int rate_check(spw_api *api, spw_http_req *req, spw_stream *s, uint32_t n, char *key, size_t *kl)
{
    *kl = 0;
    if (!api->rl)
        return 0;
    spw_rl_answer a;
    int v = spw_rl_admit(api->rl, &s->cfg, req->tenant, req->peer, n, spw_mono_ns(), &a, key, kl);
    char h[256];
    spw_rl_headers(&a, h, sizeof h);
    if (v == SPW_RL_ALLOWED) {
        if (a.limited)
            req->user = spw_xstrdup(h);
        return 0;
    }
    atomic_fetch_add(&api->rejected[SPW_REJ_RATE_LIMIT], 1);
    spw_buf b = SPW_BUF_INIT;
    if (v == SPW_RL_OVER_BURST) {
        outf(&b,
             "{\"error\":\"a request of %u events can never pass the rate limit of stream %s: at most %" PRIu64
             " events pass at once; send smaller requests (nothing was appended)\",\"code\":\"over_burst\","
             "\"burst\":%" PRIu64 ",\"events\":%u}\n",
             n, s->cfg.name, a.limit, a.limit, n);
        spw_http_respond(req, 413, h, "application/json", b.p, b.len);
    } else {
        outf(&b,
             "{\"error\":\"rate limit of stream %s exceeded: %" PRIu64 " of %" PRIu64
             " events left, %u asked; retry in %" PRIu64 " ms (nothing was appended)\",\"code\":\"rate_limited\","
             "\"retry_after_ms\":%" PRIu64 "}\n",
             s->cfg.name, a.remaining, a.limit, n, a.retry_after_ms, a.retry_after_ms);
        spw_http_respond(req, 429, h, "application/json", b.p, b.len);
    }
    spw_buf_fini(&b);
    return 1;
}

static void handle_produce(spw_api *api, spw_http_req *req, spw_stream *s)
{
    spw_stream_config *cfg = &s->cfg;
    spw_record *recs = NULL;
    /* Ack level: header, then ?ack=, then the stream's default. */
    spw_ack ack = cfg->ack;
    char qa[16];
    const char *ack_s = req->ack[0] ? req->ack : (query_get(req->query, "ack", qa, sizeof qa) == 1 ? qa : NULL);
    if (ack_s && spw_ack_parse(ack_s, &ack)) {
        atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
        spw_http_error(req, 400, "bad_ack", NULL, "ack must be none, written, fsync or replicated, not '%s'", ack_s);
        spw_stream_put(s);
        return;
    }
    if (ack == SPW_ACK_REPLICATED) {
        spw_http_error(req, 501, "not_implemented", NULL,
                       "ack=replicated needs a replicated backend, and this node has none");
        spw_stream_put(s);
        return;
    }
    /* Priority: header, then the stream's default; then admission, before
     * any work on the body (under overload, refusing must be cheap). */
    int prio = cfg->priority;
    if (req->priority[0]) {
        if (!(req->priority[0] >= '0' && req->priority[0] <= '3' && req->priority[1] == 0)) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            spw_http_error(req, 400, "bad_priority", NULL, "Spillway-Priority must be 0, 1, 2 or 3, not '%s'",
                           req->priority);
            spw_stream_put(s);
            return;
        }
        prio = req->priority[0] - '0';
    }
    uint32_t retry_ms;
    const char *refused = spw_api_admit(api, prio, &retry_ms);
    if (refused) {
        overloaded(req, refused, retry_ms);
        spw_stream_put(s);
        return;
    }
    /* Content type. */
    const char *ct = req->content_type;
    size_t ctl = strcspn(ct, "; ");
    int ndjson = 0, bytes = cfg->format_bytes;
    if (bytes) {
        if (ctl && !(ctl == 24 && strncasecmp(ct, "application/octet-stream", 24) == 0)) {
            spw_http_error(req, 415, "unsupported_media_type", NULL,
                           "a bytes stream takes Content-Type: application/octet-stream");
            spw_stream_put(s);
            return;
        }
    } else if (ctl == 20 && strncasecmp(ct, "application/x-ndjson", 20) == 0) {
        ndjson = 1;
    } else if (ctl && !(ctl == 16 && strncasecmp(ct, "application/json", 16) == 0)) {
        spw_http_error(req, 415, "unsupported_media_type", NULL,
                       "Content-Type must be application/json or application/x-ndjson, not '%.*s'", (int)ctl, ct);
        spw_stream_put(s);
        return;
    }
    const char *body = req->body.p ? (const char *)req->body.p : ""; /* no body: p may be NULL */
    size_t blen = req->body.len;
    parse_ctx c = {.api = api, .req = req, .s = s, .key_i = -1, .ts_i = -1, .now = spw_wall_ms(), .ndjson = ndjson};
    if (bytes) {
        if (blen > cfg->max_event_bytes) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            spw_http_error(req, 413, "event_too_large", NULL, "event is %zu bytes, the stream's max_event_bytes is %u",
                           blen, cfg->max_event_bytes);
            goto fail;
        }
        size_t kl = strlen(req->key);
        if (kl && !spw__key_text_ok((const uint8_t *)req->key, kl)) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            spw_http_error(req, 400, "bad_key", NULL, "Spillway-Key must be UTF-8 text");
            goto fail;
        }
        c.evs = spw_xmalloc(sizeof *c.evs);
        c.evs[0] = (ev){.off = 0, .len = (uint32_t)blen, .key_off = kl ? 0 : -1, .key_len = (uint32_t)kl,
                        .ts = c.now};
        if (kl) {
            if (spw_buf_reserve(&c.keys, kl))
                abort();
            memcpy(c.keys.p, req->key, kl);
            c.keys.len = kl;
        }
        c.n = 1;
    } else {
        if (cfg->key[0]) {
            spw_json_ptr_compile(&c.ptrs[c.nptrs], cfg->key);
            c.key_i = c.nptrs++;
        }
        if (cfg->timestamp[0]) {
            spw_json_ptr_compile(&c.ptrs[c.nptrs], cfg->timestamp);
            c.ts_i = c.nptrs++;
        }
        const char *end = body + blen;
        if (ndjson) {
            const char *p = body;
            uint32_t line = 0;
            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *le = nl ? nl : end;
                if (spw_json_ws(p, le) != le && take_event(&c, body, p, le, line))
                    goto fail;
                line++;
                p = nl ? nl + 1 : end;
            }
        } else {
            const char *p = spw_json_ws(body, end);
            if (p < end && *p == '[') {
                p = spw_json_ws(p + 1, end);
                uint32_t idx = 0;
                if (p < end && *p == ']') {
                    p++;
                } else {
                    for (;;) {
                        const char *vend;
                        spw_json_error e;
                        spw_json_span dummy;
                        if (spw_json_scan(p, end, NULL, 0, &dummy, &vend, &e)) {
                            bad_event(api, req, 0, idx, (size_t)(p - body) + e.offset, "invalid_json", "%s", e.msg);
                            goto fail;
                        }
                        if (take_event(&c, body, p, vend, idx))
                            goto fail;
                        idx++;
                        p = spw_json_ws(vend, end);
                        if (p < end && *p == ',') {
                            p = spw_json_ws(p + 1, end);
                            continue;
                        }
                        if (p < end && *p == ']') {
                            p++;
                            break;
                        }
                        bad_event(api, req, 0, idx, (size_t)(p - body), "invalid_json",
                                  "expected ',' or ']' after an event");
                        goto fail;
                    }
                }
                if (spw_json_ws(p, end) != end) {
                    bad_event(api, req, 0, idx, (size_t)(p - body), "invalid_json", "data after the array");
                    goto fail;
                }
            } else if (p < end) {
                const char *vend;
                spw_json_error e;
                spw_json_span dummy;
                if (spw_json_scan(p, end, NULL, 0, &dummy, &vend, &e)) {
                    bad_event(api, req, 0, 0, (size_t)(p - body) + e.offset, "invalid_json", "%s", e.msg);
                    goto fail;
                }
                if (take_event(&c, body, p, vend, 0))
                    goto fail;
                if (spw_json_ws(vend, end) != end) {
                    bad_event(api, req, 0, 0, (size_t)(vend - body), "invalid_json",
                              "data after the event (send an array or NDJSON for several)");
                    goto fail;
                }
            }
        }
    }
    if (c.n == 0) {
        atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
        spw_http_error(req, 400, "no_events", NULL, "the body holds no events");
        goto fail;
    }

    recs = spw_xmalloc(c.n * sizeof *recs);
    for (uint32_t i = 0; i < c.n; i++) {
        ev *v = &c.evs[i];
        recs[i] = (spw_record){
            .key = v->key_off >= 0 ? c.keys.p + v->key_off : NULL,
            .key_len = v->key_off >= 0 ? (int32_t)v->key_len : -1,
            .value = body + v->off,
            .value_len = v->len,
            .ts = v->ts,
        };
    }

    /* Idempotency-Key: a retry within the window gets the first answer. */
    spw_produce_opts po = {.partition = UINT32_MAX, .ack = ack, .supersede_ok = 1};
    spw_dd_result stored = {0};
    if (req->idempotency_key[0] && cfg->dedupe_window_ms > 0 && api->dd) {
        po.idem_key = spw_dd_http_key(req->tenant, req->idempotency_key);
        int d = spw_api_dd_begin(api, s, po.idem_key, recs, c.n, UINT32_MAX, &po.dd, &stored);
        if (d == SPW_DD_DONE) {
            spw_buf b = SPW_BUF_INIT;
            result_json(&b, api, &stored, 1, NULL, 0);
            spw_dd_result_free(&stored);
            atomic_fetch_add(&api->duplicates, 1);
            respond_json(req, 202, &b);
            goto fail;
        }
        if (d == SPW_DD_FULL) {
            spw_http_error(req, 503, "dedupe_full", "Retry-After: 1\r\n",
                           "the server remembers dedupe-max-keys idempotency keys, all inside their windows; a new "
                           "key is refused rather than an older one forgotten; retry later (nothing was appended)");
            goto fail;
        }
        if (d == SPW_DD_BUSY) {
            spw_http_error(req, 409, "in_progress", "Retry-After: 1\r\n",
                           "a request with this Idempotency-Key is still being written; retry to get its answer");
            goto fail;
        }
        if (d == SPW_DD_UNRESOLVED) {
            spw_http_error(req, 409, "in_progress", "Retry-After: 1\r\n",
                           "a request with this Idempotency-Key failed while being written and may be partly "
                           "stored; a partition it wrote to is still recovering: retry to get its outcome");
            goto fail;
        }
        if (d == SPW_DD_CONFLICT) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            spw_http_error(req, 422, "idempotency_key_reused",
                           NULL, "this Idempotency-Key was used for a request of a different size within the "
                                 "stream's dedupe window; nothing was appended");
            goto fail;
        }
        if (d == SPW_DD_REUSED) {
            atomic_fetch_add(&api->rejected[SPW_REJ_INVALID], 1);
            spw_http_error(req, 422, "idempotency_key_reused",
                           NULL, "this Idempotency-Key was used for a request with different events within the "
                                 "stream's dedupe window; nothing was appended");
            goto fail;
        }
        if (d == SPW_DD_PARTIAL)
            po.stored = &stored;
    }

    char rkey[SPW_RL_KEY_MAX];
    size_t rkl;
    if (rate_check(api, req, s, c.n, rkey, &rkl)) {
        if (po.dd)
            spw_dd_finish(api->dd, po.dd, NULL, 0);
        spw_dd_result_free(&stored);
        goto fail;
    }

    int r = spw_api_produce_ex(api, s, recs, c.n, &po, http_produce_done, req);
    spw_free(recs);
    recs = NULL;
    spw_dd_result_free(&stored);
    if (r == 0)
        spw_http_req_release_body(req); /* copied: the wait for the ack holds no body */
    if (r) {
        if (po.dd)
            spw_dd_finish(api->dd, po.dd, NULL, 0);
        /* Not appended: the events do not count against the limit. */
        if (rkl)
            spw_rl_refund(api->rl, rkey, rkl, c.n, spw_mono_ns());
        spw_free(req->user);
        req->user = NULL;
        int st;
        uint16_t bst;
        const char *code;
        char msg[400];
        if (r == SPW_EAGAIN)
            overloaded(req, "backpressure", spw_pressure_retry_ms(&api->pressure));
        else if (r == SPW_EMSGSIZE)
            spw_http_error(req, 413, "body_too_large", NULL, "the request's batches exceed max_pending_bytes");
        else if (spw_api_disk_error(r, 1, &st, &bst, &code, msg, sizeof msg))
            spw_http_error(req, st, code, NULL, "%s", msg);
        else
            spw_http_error(req, 500, "internal", NULL, "encoding failed: %s", spw_strerror(r));
        goto fail;
    }
    spw_free(c.evs);
    spw_buf_fini(&c.keys);
    return; /* the stream reference now belongs to the produce */
fail:
    spw_free(recs);
    spw_free(c.evs);
    spw_buf_fini(&c.keys);
    spw_stream_put(s);
}

/* ---- dedupe rebuild ---- */

typedef struct rebuild_ctx {
    spw_api *api;
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
    spw_dd_restore(x->api->dd, x->s->uid, h->idem_hash, h->request_count, spw_id_ticket(h->base_id), x->partition,
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

void spw_api_dedupe_rebuild(spw_api *api)
{
    if (!api->dd)
        return;
    rebuild_ctx x = {.api = api, .now = spw_wall_ms()};
    spw_catalog_each(api->cat, rebuild_stream, &x);
    spw_dd_stats st;
    spw_dd_stats_get(api->dd, &st);
    if (x.batches)
        spw_info("dedupe table rebuilt from the log: %" PRIu64 " keys from %" PRIu64 " batches", st.entries,
                 x.batches);
}

/* ---- read ---- */

int spw_api_read_ndjson(spw_stream *s, uint32_t part, uint64_t offset, uint64_t limit, spw_buf *out, uint64_t *next_out,
                        uint64_t *bad_out)
{
    /* The record cursor's rules (log/cursor.h): durable records only; at
     * damage, answer what came before it and stop there, so the next read
     * starts at the damage and reports it with the offset to resume at. */
    spw_cursor c;
    spw_cursor_init(&c, s->parts[part], offset, 1 << 20);
    spw_record_view rv;
    uint64_t sent = 0;
    int n = 0;
    while (sent < limit && out->len <= (8u << 20) && (n = spw_cursor_next(&c, &rv)) == 1) {
        outf(out,
             "{\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"id\":\"%" PRIu64 "\",\"ts\":%" PRId64
             ",\"key\":",
             part, rv.offset, rv.id, rv.ts);
        if (rv.key_len < 0)
            out_raw(out, "null", 4);
        else
            out_str(out, rv.key, (size_t)rv.key_len);
        out_raw(out, ",\"value\":", 9);
        if (s->cfg.format_bytes)
            out_b64(out, rv.value, rv.value_len);
        else
            out_raw(out, rv.value, rv.value_len);
        out_raw(out, "}\n", 2);
        sent++;
    }
    *next_out = c.next;
    *bad_out = n == SPW_ECORRUPT ? c.resume : 0;
    spw_cursor_fini(&c);
    return n < 0 && sent == 0 ? n : (int)sent;
}

static void handle_read(spw_api *api, spw_http_req *req, spw_stream *s)
{
    (void)api;
    spw_stream_config *cfg = &s->cfg;
    uint64_t part = 0, offset = 0, limit = 100;
    int64_t from_ts = 0;
    int hp = query_u64(req->query, "partition", &part);
    int ho = query_u64(req->query, "offset", &offset);
    int hl = query_u64(req->query, "limit", &limit);
    int ht = query_i64(req->query, "from_ts", &from_ts);
    if (hp < 0 || ho < 0 || hl < 0 || ht < 0) {
        spw_http_error(req, 400, "bad_parameter", NULL, "partition, offset and limit must be non-negative integers, "
                                                        "from_ts an integer");
        goto out;
    }
    if (hp == 0 && cfg->partitions > 1) {
        spw_http_error(req, 400, "bad_parameter", NULL, "partition is required (the stream has %u)",
                       cfg->partitions);
        goto out;
    }
    if (part >= cfg->partitions) {
        spw_http_error(req, 404, "no_such_partition", NULL, "partition %" PRIu64 " does not exist (the stream has %u)",
                       part, cfg->partitions);
        goto out;
    }
    if (ho > 0 && ht > 0) {
        spw_http_error(req, 400, "bad_parameter", NULL, "give offset or from_ts, not both");
        goto out;
    }
    if (limit == 0 || limit > 10000)
        limit = limit == 0 ? 1 : 10000;
    spw_part *p = s->parts[part];
    spw_part_state st;
    spw_part_state_get(p, &st);
    if (ht > 0) {
        int r = spw_part_offset_for_ts(p, from_ts, &offset);
        if (r < 0) {
            spw_http_error(req, 500, "read_failed", NULL, "%s", spw_strerror(r));
            goto out;
        }
    } else if (ho == 0) {
        offset = st.start_offset;
    }
    /* Reads see durable records only (docs/architecture.md, "What readers
     * see"): the end a reader is told is the durable one. */
    if (offset < st.start_offset || offset > st.durable_offset) {
        char h[128];
        snprintf(h, sizeof h, "Spillway-Start-Offset: %" PRIu64 "\r\nSpillway-End-Offset: %" PRIu64 "\r\n",
                 st.start_offset, st.durable_offset);
        spw_http_error(req, 416, "offset_out_of_range", h,
                       "offset %" PRIu64 " is outside the partition's offsets %" PRIu64 "..%" PRIu64, offset,
                       st.start_offset, st.durable_offset);
        goto out;
    }
    spw_buf out = SPW_BUF_INIT;
    uint64_t next = offset, bad_next = 0;
    int n = spw_api_read_ndjson(s, (uint32_t)part, offset, limit, &out, &next, &bad_next);
    /* A read that stopped at the durable end has asked for an fsync of
     * what is written after it (the cursor does). */
    if (n < 0)
        goto damaged;
    char h[96];
    snprintf(h, sizeof h, "Spillway-Next-Offset: %" PRIu64 "\r\n", next);
    spw_http_respond(req, 200, h, "application/x-ndjson", out.p, out.len);
    spw_buf_fini(&out);
    goto out;
damaged:
    /* Nothing readable at next: say where reading can resume (past the
     * damaged range) so a reader is never stuck and never misled. */
    if (n == SPW_ECORRUPT && bad_next > next) {
        char hn[96];
        snprintf(hn, sizeof hn, "Spillway-Next-Offset: %" PRIu64 "\r\n", bad_next);
        spw_http_error(req, 500, "damaged", hn,
                       "offsets %" PRIu64 "..%" PRIu64 " are damaged on disk (run spillway check); reading can resume "
                       "at offset %" PRIu64,
                       next, bad_next - 1, bad_next);
    } else {
        spw_http_error(req, 500, n == SPW_ECORRUPT ? "damaged" : "read_failed", NULL, "reading offset %" PRIu64 ": %s",
                       next, spw_strerror(n));
    }
    spw_buf_fini(&out);
out:
    spw_stream_put(s);
}

/* ---- streams ---- */

static void stream_json(spw_buf *b, spw_stream *s, int detail)
{
    spw_buf c = SPW_BUF_INIT;
    spw_stream_config_json(&s->cfg, &c);
    if (!detail) {
        out_raw(b, c.p, c.len);
        spw_buf_fini(&c);
        return;
    }
    out_raw(b, c.p, c.len - 1); /* drop the closing brace */
    spw_buf_fini(&c);
    outf(b, ",\"incarnation\":%" PRIu64 ",\"partition_state\":[", s->incarnation);
    for (uint32_t i = 0; i < s->cfg.partitions; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        outf(b,
             "%s{\"partition\":%u,\"start_offset\":%" PRIu64 ",\"end_offset\":%" PRIu64
             ",\"durable_offset\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"segments\":%u}",
             i ? "," : "", i, st.start_offset, st.written_offset, st.durable_offset, st.bytes, st.segments);
    }
    outf(b, "]}");
}

/* A catalog walk that shows only the streams a token may see (who NULL: all). */
typedef struct seen_ctx {
    spw_buf *b;
    const spw_token *who;
} seen_ctx;

static int sees(const spw_token *who, const spw_stream *s)
{
    return !who || spw_token_sees(who, s->cfg.name, strlen(s->cfg.name));
}

static void list_one(void *arg, spw_stream *s)
{
    seen_ctx *x = arg;
    if (!sees(x->who, s))
        return;
    if (x->b->len > 13)
        out_raw(x->b, ",", 1);
    stream_json(x->b, s, 0);
}

static void handle_stream(spw_api *api, spw_http_req *req, const char *name, size_t nl, const spw_auth_req *ar)
{
    char nm[SPW_STREAM_NAME_MAX + 1];
    if (!spw_stream_name_ok(name, nl)) {
        spw_http_error(req, 400, "bad_name", NULL,
                       "stream names are " SPW_NAME_RULE);
        return;
    }
    unsigned need = req->method == SPW_HTTP_PUT || req->method == SPW_HTTP_DELETE ? SPW_PERM_ADMIN : 0;
    if (!spw_auth_http_allow(api->auth, ar, req, need, name, nl))
        return;
    memcpy(nm, name, nl);
    nm[nl] = 0;
    if (req->method == SPW_HTTP_PUT) {
        spw_stream_config c;
        char err[300];
        if (spw_stream_config_parse(&c, nm, (const char *)req->body.p, req->body.len, err, sizeof err) ||
            spw_stream_config_check(&c, err, sizeof err)) {
            spw_http_error(req, 400, "bad_config", NULL, "%s", err);
            return;
        }
        int r = spw_catalog_create(api->cat, &c);
        if (r == -EEXIST) {
            spw_http_error(req, 409, "exists", NULL, "stream %s exists with a different definition", nm);
            return;
        }
        if (r == -ENOTEMPTY) {
            spw_http_error(req, 409, "directory_exists", NULL,
                           "the data directory holds a directory streams/%s that is no loaded stream (its stream.json "
                           "is missing or bad: see the server's messages at start); it is left as it is: move it "
                           "away, or repair its stream.json and restart",
                           nm);
            return;
        }
        if (r < 0) {
            spw_http_error(req, 500, "create_failed", NULL, "creating stream %s: %s", nm, spw_strerror(r));
            return;
        }
        spw_buf b = SPW_BUF_INIT;
        spw_stream_config_json(&c, &b);
        out_raw(&b, "\n", 1);
        respond_json(req, r == 1 ? 201 : 200, &b);
        return;
    }
    if (req->method == SPW_HTTP_DELETE) {
        int r = spw_catalog_delete(api->cat, nm);
        if (r == -ENOENT)
            spw_http_error(req, 404, "no_such_stream", NULL, "no stream named %s", nm);
        else if (r < 0)
            spw_http_error(req, 500, "delete_failed", NULL, "deleting stream %s: %s", nm, spw_strerror(r));
        else {
            spw_consume_drop_stream(api->groups, nm); /* its consumer groups go with it */
            spw_http_respond(req, 204, NULL, NULL, NULL, 0);
        }
        return;
    }
    if (req->method != SPW_HTTP_GET) {
        spw_http_error(req, 405, "method_not_allowed", "Allow: GET, PUT, DELETE\r\n", "use GET, PUT or DELETE");
        return;
    }
    spw_stream *s = spw_stream_get(api->cat, nm, nl);
    if (!s) {
        spw_http_error(req, 404, "no_such_stream", NULL, "no stream named %s", nm);
        return;
    }
    spw_buf b = SPW_BUF_INIT;
    stream_json(&b, s, 1);
    out_raw(&b, "\n", 1);
    spw_stream_put(s);
    respond_json(req, 200, &b);
}

/* ---- operations ---- */

static void handle_ids(spw_api *api, spw_http_req *req)
{
    uint64_t n = 1;
    if (query_u64(req->query, "count", &n) < 0 || n == 0 || n > 10000) {
        spw_http_error(req, 400, "bad_parameter", NULL, "count must be an integer from 1 to 10000");
        return;
    }
    spw_idgen *g = spw_log_idgen(api->log);
    uint64_t t = spw_idgen_reserve(g, (uint32_t)n);
    spw_buf b = SPW_BUF_INIT;
    outf(&b, "{\"ids\":[");
    for (uint64_t i = 0; i < n; i++)
        outf(&b, "%s\"%" PRIu64 "\"", i ? "," : "", spw_id_from_ticket(g, t + i));
    outf(&b, "]}\n");
    respond_json(req, 200, &b);
}

static void handle_status(spw_api *api, spw_http_req *req)
{
    uint64_t disk = spw_log_disk_bytes(api->log);
    struct statvfs fs;
    uint64_t fs_avail = statvfs(api->data_dir, &fs) == 0 ? (uint64_t)fs.f_bavail * fs.f_frsize : 0;
    spw_http_stats hs;
    spw_http_stats_get(api->http, &hs);
    spw_buf b = SPW_BUF_INIT;
    outf(&b,
         "{\"version\":\"" SPW_VERSION_STR "\",\"uptime_ms\":%" PRId64 ",\"node_id\":%u,\"data_dir\":",
         spw_wall_ms() - api->started_ms, api->node_id);
    out_str(&b, (const uint8_t *)api->data_dir, strlen(api->data_dir));
    outf(&b,
         ",\"streams\":%u,\"connections\":%" PRIu64 ",\"pending_bytes\":%" PRIu64 ",\"limits\":{\"max_pending_bytes\":%" PRIu64
         ",\"max_request_bytes\":%" PRIu64 ",\"max_connections\":%u,\"max_disk_bytes\":%" PRIu64,
         spw_catalog_count(api->cat), hs.connections_open, spw_log_pending_bytes(api->log), api->max_pending_bytes,
         api->max_request_bytes, api->max_connections, api->max_disk_bytes);
    if (api->rl) {
        /* The server-wide default rate limit, as SIGHUP last set it. */
        spw_rl_limit d;
        spw_rl_get_default(api->rl, &d);
        if (d.rate > 0 && d.algo == SPW_RL_SLIDING_WINDOW)
            outf(&b, ",\"rate_limit\":{\"rate\":%.17g,\"per\":\"%s\",\"algorithm\":\"sliding_window\"}", d.rate,
                 spw_rl_per_name(d.per));
        else if (d.rate > 0)
            outf(&b, ",\"rate_limit\":{\"rate\":%.17g,\"burst\":%.17g,\"per\":\"%s\",\"algorithm\":\"token_bucket\"}",
                 d.rate, d.burst, spw_rl_per_name(d.per));
        else
            outf(&b, ",\"rate_limit\":null");
    }
    outf(&b,
         "},\"disk\":{\"bytes\":%" PRIu64 ",\"max_bytes\":%" PRIu64 ",\"fs_available_bytes\":%" PRIu64
         ",\"failed_partitions\":%u,\"recoveries\":%" PRIu64 "}}\n",
         disk, api->max_disk_bytes, fs_avail, spw_log_failed_partitions(api->log), spw_log_recoveries(api->log));
    respond_json(req, 200, &b);
}

static void metrics_stream(void *arg, spw_stream *s)
{
    seen_ctx *x = arg;
    if (!sees(x->who, s))
        return;
    spw_buf *b = x->b;
    outf(b, "spillway_stream_events_in_total{stream=\"%s\"} %" PRIu64 "\n", s->cfg.name, atomic_load(&s->events_in));
    outf(b, "spillway_stream_bytes_in_total{stream=\"%s\"} %" PRIu64 "\n", s->cfg.name, atomic_load(&s->bytes_in));
    if (s->cfg.coalesce)
        outf(b, "spillway_stream_coalesced_total{stream=\"%s\"} %" PRIu64 "\n", s->cfg.name,
             spw_coalesce_stream_superseded(s));
    for (uint32_t i = 0; i < s->cfg.partitions; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        outf(b, "spillway_partition_end_offset{stream=\"%s\",partition=\"%u\"} %" PRIu64 "\n", s->cfg.name, i,
             st.written_offset);
        outf(b, "spillway_partition_bytes{stream=\"%s\",partition=\"%u\"} %" PRIu64 "\n", s->cfg.name, i, st.bytes);
    }
}

/* scale: 1e6 for µs recorded and seconds shown; 1 for plain counts. */
static void hist_out(spw_buf *b, const char *name, const char *help, spw_hist *h, double scale)
{
    outf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SPW_HIST_BUCKETS - 1; i++) {
        cum += atomic_load(&h->b[i]);
        outf(b, "%s_bucket{le=\"%.6g\"} %" PRIu64 "\n", name, (double)spw_hist_le(i) / scale, cum);
    }
    cum += atomic_load(&h->b[SPW_HIST_BUCKETS - 1]);
    outf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name, cum, name,
         (double)atomic_load(&h->sum_us) / scale, name, atomic_load(&h->count));
}

static void handle_metrics(spw_api *api, spw_http_req *req, const spw_token *who)
{
    static const char *reasons[SPW_REJ__N] = {"invalid", "rate_limit", "shed", "backpressure", "disk"};
    spw_buf b = SPW_BUF_INIT;
    spw_log_stats ls;
    spw_log_stats_get(api->log, &ls);
    spw_http_stats hs;
    spw_http_stats_get(api->http, &hs);
    outf(&b, "# TYPE spillway_events_in_total counter\nspillway_events_in_total %" PRIu64 "\n",
         atomic_load(&api->events_in));
    outf(&b, "# TYPE spillway_bytes_in_total counter\nspillway_bytes_in_total %" PRIu64 "\n",
         atomic_load(&api->bytes_in));
    outf(&b, "# TYPE spillway_stream_events_in_total counter\n# TYPE spillway_stream_bytes_in_total counter\n"
             "# TYPE spillway_stream_coalesced_total counter\n");
    seen_ctx sc = {&b, who};
    spw_catalog_each(api->cat, metrics_stream, &sc);
    spw_consume_metrics(api->groups, &b, who);
    outf(&b, "# TYPE spillway_rejected_total counter\n");
    for (int i = 0; i < SPW_REJ__N; i++)
        outf(&b, "spillway_rejected_total{reason=\"%s\"} %" PRIu64 "\n", reasons[i], atomic_load(&api->rejected[i]));
    outf(&b, "# TYPE spillway_pending_bytes gauge\nspillway_pending_bytes %" PRIu64 "\n",
         spw_log_pending_bytes(api->log));
    if (api->coal) {
        spw_coalesce_stats cs;
        spw_coalesce_stats_get(api->coal, &cs);
        outf(&b,
             "# HELP spillway_coalesced_total events of coalesce streams replaced by a newer event for their key "
             "before they were written\n# TYPE spillway_coalesced_total counter\nspillway_coalesced_total %" PRIu64
             "\n# TYPE spillway_coalesce_buffered_events gauge\nspillway_coalesce_buffered_events %" PRIu64
             "\n# TYPE spillway_coalesce_buffered_bytes gauge\nspillway_coalesce_buffered_bytes %" PRIu64
             "\n# TYPE spillway_coalesce_batches_total counter\nspillway_coalesce_batches_total %" PRIu64 "\n",
             cs.superseded, cs.buffered_events, cs.buffered_bytes, cs.batches);
    }
    spw_pressure *pz = &api->pressure;
    outf(&b,
         "# TYPE spillway_pending_budget_bytes gauge\nspillway_pending_budget_bytes %" PRIu64 "\n"
         "# TYPE spillway_pending_high_watermark_bytes gauge\nspillway_pending_high_watermark_bytes %" PRIu64 "\n"
         "# TYPE spillway_pending_low_watermark_bytes gauge\nspillway_pending_low_watermark_bytes %" PRIu64 "\n"
         "# HELP spillway_pressure_level 0 normal, 1 shedding priority 3, 2 shedding 2-3, 3 above the high "
         "watermark (all but priority 0 refused)\n"
         "# TYPE spillway_pressure_level gauge\nspillway_pressure_level %d\n",
         pz->budget, pz->high, pz->low, spw_pressure_level(pz));
    if (api->dd) {
        spw_dd_stats ds;
        spw_dd_stats_get(api->dd, &ds);
        outf(&b,
             "# HELP spillway_duplicates_total produce requests answered from the dedupe table (a retried "
             "Idempotency-Key or producer sequence), nothing appended\n"
             "# TYPE spillway_duplicates_total counter\nspillway_duplicates_total %" PRIu64 "\n"
             "# TYPE spillway_dedupe_keys gauge\nspillway_dedupe_keys %" PRIu64 "\n"
             "# TYPE spillway_dedupe_max_keys gauge\nspillway_dedupe_max_keys %" PRIu64 "\n"
             "# HELP spillway_dedupe_evicted_total keys forgotten after their window passed\n"
             "# TYPE spillway_dedupe_evicted_total counter\nspillway_dedupe_evicted_total %" PRIu64 "\n"
             "# HELP spillway_dedupe_refused_total keyed produce requests refused (503 dedupe_full) because the "
             "table was full of keys inside their windows\n"
             "# TYPE spillway_dedupe_refused_total counter\nspillway_dedupe_refused_total %" PRIu64 "\n",
             atomic_load(&api->duplicates), ds.entries, ds.max_entries, ds.evicted, ds.refused);
    }
    if (api->buffers) {
        spw_membudget_stats ms;
        spw_membudget_stats_get(api->buffers, &ms);
        outf(&b,
             "# TYPE spillway_buffer_bytes gauge\nspillway_buffer_bytes %" PRIu64 "\n"
             "# TYPE spillway_buffer_peak_bytes gauge\nspillway_buffer_peak_bytes %" PRIu64 "\n"
             "# TYPE spillway_max_buffer_bytes gauge\nspillway_max_buffer_bytes %" PRIu64 "\n"
             "# TYPE spillway_buffer_waits_total counter\nspillway_buffer_waits_total %" PRIu64 "\n",
             ms.used, ms.peak, ms.limit, ms.waits);
    }
    if (api->rl) {
        spw_rl_stats rs;
        spw_rl_stats_get(api->rl, &rs);
        outf(&b,
             "# TYPE spillway_ratelimit_keys gauge\nspillway_ratelimit_keys %" PRIu64 "\n"
             "# TYPE spillway_ratelimit_max_keys gauge\nspillway_ratelimit_max_keys %" PRIu64 "\n"
             "# TYPE spillway_ratelimit_evictions_total counter\n"
             "spillway_ratelimit_evictions_total{kind=\"idle\"} %" PRIu64 "\n"
             "spillway_ratelimit_evictions_total{kind=\"active\"} %" PRIu64 "\n",
             rs.keys, rs.max_keys, rs.evicted_idle, rs.evicted_active);
    }
    outf(&b,
         "# TYPE spillway_disk_bytes gauge\nspillway_disk_bytes %" PRIu64 "\n"
         "# TYPE spillway_max_disk_bytes gauge\nspillway_max_disk_bytes %" PRIu64 "\n"
         "# TYPE spillway_partitions_failed gauge\nspillway_partitions_failed %u\n"
         "# TYPE spillway_partition_recoveries_total counter\nspillway_partition_recoveries_total %" PRIu64 "\n"
         "# HELP spillway_positions_clamped_total consumer-group offsets and sink positions found past their "
         "partition's end at attach and moved down to it\n"
         "# TYPE spillway_positions_clamped_total counter\nspillway_positions_clamped_total %" PRIu64 "\n",
         spw_log_disk_bytes(api->log), api->max_disk_bytes, spw_log_failed_partitions(api->log),
         spw_log_recoveries(api->log), atomic_load(&api->positions_clamped));
    outf(&b,
         "# TYPE spillway_log_flush_cycles_total counter\nspillway_log_flush_cycles_total %" PRIu64 "\n"
         "# TYPE spillway_log_written_bytes_total counter\nspillway_log_written_bytes_total %" PRIu64 "\n"
         "# TYPE spillway_log_fsyncs_total counter\nspillway_log_fsyncs_total %" PRIu64 "\n"
         "# TYPE spillway_log_fsync_acks_total counter\nspillway_log_fsync_acks_total %" PRIu64 "\n",
         ls.cycles, ls.bytes_written, ls.fsyncs, ls.acks_fsync);
    spw_hist *fh, *gh;
    spw_log_hists(api->log, &fh, &gh);
    hist_out(&b, "spillway_log_fsync_seconds", "time of each group commit's fdatasync round", fh, 1e6);
    hist_out(&b, "spillway_log_group_commit_appends", "appends acknowledged by one fsync round", gh, 1);
    hist_out(&b, "spillway_produce_seconds", "produce request complete to answered", &api->produce_latency, 1e6);
    outf(&b,
         "# TYPE spillway_http_connections gauge\nspillway_http_connections %" PRIu64 "\n"
         "# TYPE spillway_http_requests_total counter\nspillway_http_requests_total %" PRIu64 "\n"
         "# TYPE spillway_http_refused_total counter\nspillway_http_refused_total %" PRIu64 "\n",
         hs.connections_open, hs.requests, hs.rejected_limits);
    if (api->bin) {
        spw_bin_stats bs;
        spw_bin_stats_get(api->bin, &bs);
        outf(&b,
             "# TYPE spillway_bin_connections gauge\nspillway_bin_connections %" PRIu64 "\n"
             "# TYPE spillway_bin_requests_total counter\nspillway_bin_requests_total %" PRIu64 "\n"
             "# TYPE spillway_bin_refused_total counter\nspillway_bin_refused_total %" PRIu64 "\n",
             bs.connections_open, bs.requests, bs.rejected_frames);
    }
    if (api->auth)
        outf(&b,
             "# TYPE spillway_auth_refused_total counter\n"
             "spillway_auth_refused_total{reason=\"unauthorized\"} %" PRIu64 "\n"
             "spillway_auth_refused_total{reason=\"forbidden\"} %" PRIu64 "\n"
             "# TYPE spillway_tokens_reloads_total counter\n"
             "spillway_tokens_reloads_total{result=\"ok\"} %" PRIu64 "\n"
             "spillway_tokens_reloads_total{result=\"failed\"} %" PRIu64 "\n",
             atomic_load(&api->auth->unauthorized), atomic_load(&api->auth->forbidden),
             atomic_load(&api->auth->reloads_ok), atomic_load(&api->auth->reloads_failed));
    if (api->sinks)
        spw_sinks_metrics(api->sinks, &b);
    spw_http_respond(req, 200, NULL, "text/plain; version=0.0.4", b.p, b.len);
    spw_buf_fini(&b);
}

/* ---- routing ---- */

static int path_is(const spw_http_req *req, const char *p) { return strcmp(req->path, p) == 0; }

static void method_not_allowed(spw_http_req *req, const char *allow)
{
    char h[64];
    snprintf(h, sizeof h, "Allow: %s\r\n", allow);
    spw_http_error(req, 405, "method_not_allowed", h, "use %s", allow);
}

void (*spw_api_debug_handler)(spw_api *api, spw_http_req *req);

/* Routes an authenticated request (ar->who NULL: no tokens configured).
 * Every path component that names something is validated before use:
 * stream names by spw_stream_name_ok (no separators, no '.'-leading
 * names, no percent escapes: paths are matched undecoded). */
static void route(spw_api *api, spw_http_req *req, const spw_auth_req *ar)
{
    if (path_is(req, "/metrics"))
        return req->method == SPW_HTTP_GET ? handle_metrics(api, req, ar->who) : method_not_allowed(req, "GET");
    if (path_is(req, "/v1/status"))
        return req->method == SPW_HTTP_GET ? handle_status(api, req) : method_not_allowed(req, "GET");
    if (path_is(req, "/v1/ids"))
        return req->method == SPW_HTTP_GET ? handle_ids(api, req) : method_not_allowed(req, "GET");
    if (path_is(req, "/v1/streams") || path_is(req, "/v1/streams/")) {
        if (req->method != SPW_HTTP_GET)
            return method_not_allowed(req, "GET");
        spw_buf b = SPW_BUF_INIT;
        outf(&b, "{\"streams\":[");
        seen_ctx sc = {&b, ar->who};
        spw_catalog_each(api->cat, list_one, &sc);
        outf(&b, "]}\n");
        respond_json(req, 200, &b);
        return;
    }
    if (spw_sink_api_route(api, req, ar))
        return;
    if (strncmp(req->path, "/v1/streams/", 12) == 0) {
        const char *name = req->path + 12;
        const char *slash = strchr(name, '/');
        size_t nl = slash ? (size_t)(slash - name) : strlen(name);
        if (!slash)
            return handle_stream(api, req, name, nl, ar);
        if (strncmp(slash, "/groups/", 8) == 0 && api->groups)
            return spw_groups_http_route(api, req, name, nl, slash + 8, ar);
        if (strcmp(slash, "/events") == 0) {
            if (!spw_stream_name_ok(name, nl)) {
                spw_http_error(req, 400, "bad_name", NULL, "invalid stream name");
                return;
            }
            unsigned need = req->method == SPW_HTTP_POST ? SPW_PERM_PRODUCE
                            : req->method == SPW_HTTP_GET ? SPW_PERM_CONSUME
                                                          : 0;
            if (!need)
                return method_not_allowed(req, "GET, POST");
            if (!spw_auth_http_allow(api->auth, ar, req, need, name, nl))
                return;
            spw_stream *s = spw_stream_get(api->cat, name, nl);
            if (!s) {
                spw_http_error(req, 404, "no_such_stream", NULL, "no stream named %.*s", (int)nl, name);
                return;
            }
            return req->method == SPW_HTTP_POST ? handle_produce(api, req, s) : handle_read(api, req, s);
        }
    }
    spw_http_error(req, 404, "not_found", NULL, "no such endpoint: %s", req->path);
}

void spw_api_handle(void *ctx, spw_http_req *req)
{
    spw_api *api = ctx;
    if (spw_api_debug_handler && strncmp(req->path, "/debug/", 7) == 0)
        return spw_api_debug_handler(api, req);
    if (path_is(req, "/healthz")) {
        if (req->method != SPW_HTTP_GET && req->method != SPW_HTTP_HEAD)
            return method_not_allowed(req, "GET");
        spw_http_respond(req, 200, NULL, "application/json", "{\"status\":\"ok\"}\n", 16);
        return;
    }
    /* With tokens, everything but /healthz needs one (unknown paths too:
     * an anonymous client learns nothing about what exists). */
    spw_auth_req ar;
    if (!spw_auth_http(api->auth, req, &ar))
        return;
    /* A header the server reads whose value is longer than it keeps
     * (net/http.h) is refused, never used cut (docs/api.md#headers); an
     * Authorization that long is no valid token (auth.c). */
    if (req->too_long) {
        spw_http_error(req, 400, "header_too_long", NULL, "the %s header is longer than %zu bytes; nothing was done",
                       req->too_long, req->too_long_max);
        spw_auth_req_done(&ar);
        return;
    }
    route(api, req, &ar);
    spw_auth_req_done(&ar);
}
