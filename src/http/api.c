/*
 * HTTP API v1 handlers: see api.h and docs/api.md.
 *
 * Produce is the HTTP front end of the produce service (svc/produce.h):
 * it reads the ack level, priority and content type, cuts the body into
 * events (one JSON object, an array, NDJSON lines, or a bytes body) for
 * the service to validate, and frames the service's one answer: 202 with
 * partitions and ids, or the status and code word of the status table
 * (svc/status.h), naming the event ("event N" / "line N") and its byte
 * in the body. Admission, validation, dedupe, the rate limit and the
 * append are the service's, the same for every protocol.
 */
#include "http/api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "net/membudget.h"
#include "http/auth_http.h"
#include "svc/coalesce.h"
#include "http/groups_http.h"
#include "svc/consume.h"
#include "admit/ratelimit.h"
#include "http/sink_api.h"
#include "sink/sink.h"
#include "svc/metrics.h"
#include "svc/request.h"

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

/* ---- produce: HTTP's decoder and encoder over the service (svc/produce.h) ---- */

enum { BODY_JSON, BODY_NDJSON, BODY_BYTES };

/* The 202 body: accepted, partitions, ids (when known and few enough);
 * superseded events (coalescing, docs/api.md "Coalescing") have null ids
 * and "superseded" counts them. */
static void result_json(spw_buf *b, spw_api *api, const spw_produce_res *r)
{
    /* printf-free: this runs once per produce request. */
    spw_idgen *g = spw_log_idgen(api->svc.log);
    const uint8_t *sup = r->superseded;
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
        e = spw_buf_puts(b, ",\"superseded\":") || spw_buf_put_u64(b, r->n_superseded);
    if (!e && r->duplicate)
        e = spw_buf_puts(b, ",\"duplicate\":true");
    e = e || spw_buf_puts(b, "}\n");
    if (e)
        abort(); /* as out_raw: spw_buf uses try_realloc; bounded by the request */
}

/* A produce's answer as HTTP: the status and code word from the status
 * table (svc/status.h), the event named as "event N" or "line N" with its
 * byte in the body, Retry-After and RateLimit-* headers. */
static void produce_respond(spw_api *api, spw_http_req *req, int body, spw_produce_res *r)
{
    char h[256];
    h[0] = 0;
    if (r->rl.limited)
        spw_rl_headers(&r->rl, h, sizeof h);
    if (r->code == SPW_SC_OK) {
        spw_buf b = SPW_BUF_INIT;
        result_json(&b, api, r);
        spw_http_respond(req, 202, h[0] ? h : NULL, "application/json", b.p, b.len);
        spw_buf_fini(&b);
        return;
    }
    int status = spw_sc_http(r->code);
    const char *word = spw_sc_word(r->code);
    if (r->code == SPW_SC_RATE_LIMITED || r->code == SPW_SC_OVER_BURST) {
        spw_buf b = SPW_BUF_INIT;
        if (r->code == SPW_SC_OVER_BURST)
            outf(&b, "{\"error\":\"%s\",\"code\":\"%s\",\"burst\":%" PRIu64 ",\"events\":%u}\n", r->msg, word,
                 r->rl.limit, r->n_events);
        else
            outf(&b, "{\"error\":\"%s\",\"code\":\"%s\",\"retry_after_ms\":%" PRIu64 "}\n", r->msg, word,
                 r->rl.retry_after_ms);
        spw_http_respond(req, status, h, "application/json", b.p, b.len);
        spw_buf_fini(&b);
        return;
    }
    char ra[48];
    const char *hdr = NULL;
    if (r->retry_ms) {
        snprintf(ra, sizeof ra, "Retry-After: %u\r\n", (r->retry_ms + 999) / 1000);
        hdr = ra;
    }
    const char *what = body == BODY_NDJSON ? "line" : "event";
    uint32_t n = body == BODY_NDJSON ? r->index + 1 : r->index;
    if (r->at_event && r->at_byte && body != BODY_BYTES)
        spw_http_answer(req, r->code, hdr, "%s %u (byte %zu): %s; nothing was appended", what, n, r->byte, r->msg);
    else if (r->at_event && body != BODY_BYTES)
        spw_http_answer(req, r->code, hdr, "%s %u: %s; nothing was appended", what, n, r->msg);
    else if (r->at_event) /* the body is the event */
        spw_http_answer(req, r->code, hdr, "%s; nothing was appended", r->msg);
    else
        spw_http_answer(req, r->code, hdr, "%s", r->msg);
}

static void produce_answer(spw_produce_res *res, void *user)
{
    spw_http_req *req = user;
    spw_api *api = req->user;
    req->user = NULL; /* before answering: spw_http_respond may free req */
    produce_respond(api, req, BODY_JSON, res);
}

static void http_post(void *loop, void (*fn)(void *), void *arg) { spw_http_loop_post(loop, fn, arg); }

/* The events of a body: one JSON object, an array of them, NDJSON lines
 * (blank ones skipped, still counted), or for a bytes stream the body. */
typedef struct body_src {
    const char *body, *p, *end;
    int kind;  /* BODY_* */
    int state; /* 0 not begun, 1 in an array, 2 done */
    uint32_t idx;
    const char *key; /* bytes: Spillway-Key, or "" */
} body_src;

static int body_refuse(spw_produce_res *res, spw_sc c, const body_src *x, uint32_t idx, const char *at,
                       const char *msg)
{
    spw_produce_ev ev = {.index = idx};
    spw_produce_refuse_at(res, c, &ev, (size_t)(at - x->body), "%s", msg);
    return -1;
}

/* One element of the array or the one object at x->p: its span. */
static int body_value(body_src *x, spw_produce_ev *ev, spw_produce_res *res)
{
    const char *vend;
    spw_json_error e;
    spw_json_span dummy;
    if (spw_json_scan(x->p, x->end, NULL, 0, &dummy, &vend, &e)) {
        spw_produce_ev at = {.index = x->idx};
        spw_produce_refuse_at(res, SPW_SC_INVALID_JSON, &at, (size_t)(x->p - x->body) + e.offset, "%s", e.msg);
        return -1;
    }
    *ev = (spw_produce_ev){.value = x->p, .len = (uint32_t)(vend - x->p), .key_len = -1, .index = x->idx,
                           .base = (size_t)(x->p - x->body)};
    x->p = vend;
    x->idx++;
    return 1;
}

static int body_next(void *arg, spw_produce_ev *ev, spw_produce_res *res)
{
    body_src *x = arg;
    if (x->state == 2)
        return 0;
    if (x->kind == BODY_BYTES) {
        size_t kl = strlen(x->key);
        *ev = (spw_produce_ev){.value = x->body, .len = (uint32_t)(x->end - x->body),
                               .key = (const uint8_t *)x->key, .key_len = kl ? (int32_t)kl : -1};
        x->state = 2;
        return 1;
    }
    if (x->kind == BODY_NDJSON) {
        while (x->p < x->end) {
            const char *nl = memchr(x->p, '\n', (size_t)(x->end - x->p));
            const char *le = nl ? nl : x->end, *p = x->p;
            uint32_t line = x->idx++;
            x->p = nl ? nl + 1 : x->end;
            if (spw_json_ws(p, le) != le) {
                *ev = (spw_produce_ev){.value = p, .len = (uint32_t)(le - p), .key_len = -1, .index = line,
                                       .base = (size_t)(p - x->body)};
                return 1;
            }
        }
        x->state = 2;
        return 0;
    }
    if (x->state == 0) {
        x->p = spw_json_ws(x->p, x->end);
        if (x->p < x->end && *x->p == '[') {
            x->state = 1;
            x->p = spw_json_ws(x->p + 1, x->end);
            if (x->p < x->end && *x->p == ']') {
                x->p++;
                goto array_end;
            }
            return body_value(x, ev, res);
        }
        x->state = 2;
        if (x->p == x->end)
            return 0;
        int r = body_value(x, ev, res);
        if (r == 1 && spw_json_ws(x->p, x->end) != x->end)
            return body_refuse(res, SPW_SC_INVALID_JSON, x, 0, x->p,
                               "data after the event (send an array or NDJSON for several)");
        return r;
    }
    /* In an array, after an element. */
    x->p = spw_json_ws(x->p, x->end);
    if (x->p < x->end && *x->p == ',') {
        x->p = spw_json_ws(x->p + 1, x->end);
        return body_value(x, ev, res);
    }
    if (!(x->p < x->end && *x->p == ']'))
        return body_refuse(res, SPW_SC_INVALID_JSON, x, x->idx, x->p, "expected ',' or ']' after an event");
    x->p++;
array_end:
    x->state = 2;
    if (spw_json_ws(x->p, x->end) != x->end)
        return body_refuse(res, SPW_SC_INVALID_JSON, x, x->idx, x->p, "data after the array");
    return 0;
}

static void handle_produce(spw_api *api, spw_http_req *req, spw_stream *s)
{
    spw_stream_config *cfg = &s->cfg;
    /* Ack level: header, then ?ack=, then the stream's default. */
    spw_ack ack = cfg->ack;
    char qa[16];
    const char *ack_s = req->ack[0] ? req->ack : (query_get(req->query, "ack", qa, sizeof qa) == 1 ? qa : NULL);
    if (ack_s && spw_ack_parse(ack_s, &ack)) {
        atomic_fetch_add(&api->svc.rejected[SPW_REJ_INVALID], 1);
        spw_http_answer(req, SPW_SC_BAD_ACK, NULL, "ack must be none, written, fsync or replicated, not '%s'", ack_s);
        spw_stream_put(s);
        return;
    }
    /* Priority: header, then the stream's default. */
    int prio = -1;
    if (req->priority[0]) {
        if (!(req->priority[0] >= '0' && req->priority[0] <= '3' && req->priority[1] == 0)) {
            atomic_fetch_add(&api->svc.rejected[SPW_REJ_INVALID], 1);
            spw_http_answer(req, SPW_SC_BAD_PRIORITY, NULL, "Spillway-Priority must be 0, 1, 2 or 3, not '%s'",
                            req->priority);
            spw_stream_put(s);
            return;
        }
        prio = req->priority[0] - '0';
    }
    /* Content type. */
    const char *ct = req->content_type;
    size_t ctl = strcspn(ct, "; ");
    int kind = BODY_JSON;
    if (cfg->format_bytes) {
        if (ctl && !(ctl == 24 && strncasecmp(ct, "application/octet-stream", 24) == 0)) {
            spw_http_answer(req, SPW_SC_UNSUPPORTED_MEDIA_TYPE, NULL,
                            "a bytes stream takes Content-Type: application/octet-stream");
            spw_stream_put(s);
            return;
        }
        kind = BODY_BYTES;
    } else if (ctl == 20 && strncasecmp(ct, "application/x-ndjson", 20) == 0) {
        kind = BODY_NDJSON;
    } else if (ctl && !(ctl == 16 && strncasecmp(ct, "application/json", 16) == 0)) {
        spw_http_answer(req, SPW_SC_UNSUPPORTED_MEDIA_TYPE, NULL,
                        "Content-Type must be application/json or application/x-ndjson, not '%.*s'", (int)ctl, ct);
        spw_stream_put(s);
        return;
    }
    const char *body = req->body.p ? (const char *)req->body.p : ""; /* no body: p may be NULL */
    body_src src = {.body = body, .p = body, .end = body + req->body.len, .kind = kind, .key = req->key};
    spw_produce_in in = {.s = s,
                         .tenant = req->tenant,
                         .peer = req->peer,
                         .priority = prio,
                         .ack = (int)ack,
                         .partition = UINT32_MAX,
                         .trailing = kind == BODY_NDJSON ? SPW_PRODUCE_TRAIL_LINE : SPW_PRODUCE_TRAIL_OBJECT,
                         .next = body_next,
                         .src = &src,
                         .idempotency_key = req->idempotency_key,
                         .supersede_ok = 1,
                         .post = http_post,
                         .loop = req->loop,
                         .done = produce_answer,
                         .user = req};
    spw_produce_res res;
    req->user = api; /* for produce_answer */
    if (spw_produce_request(&api->svc, &in, &res) == 0) {
        spw_http_req_release_body(req); /* copied: the wait for the ack holds no body */
        return;
    }
    req->user = NULL;
    produce_respond(api, req, kind, &res);
    spw_produce_res_fini(&res);
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
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "partition, offset and limit must be non-negative integers, "
                                                        "from_ts an integer");
        goto out;
    }
    if (hp == 0 && cfg->partitions > 1) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "partition is required (the stream has %u)",
                        cfg->partitions);
        goto out;
    }
    if (part >= cfg->partitions) {
        spw_http_answer(req, SPW_SC_NO_SUCH_PARTITION, NULL, "partition %" PRIu64 " does not exist (the stream has %u)",
                        part, cfg->partitions);
        goto out;
    }
    if (ho > 0 && ht > 0) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "give offset or from_ts, not both");
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
            spw_http_answer(req, SPW_SC_READ_FAILED, NULL, "%s", spw_strerror(r));
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
        spw_http_answer(req, SPW_SC_OFFSET_OUT_OF_RANGE, h,
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
        spw_http_answer(req, SPW_SC_DAMAGED, hn,
                        "offsets %" PRIu64 "..%" PRIu64 " are damaged on disk (run spillway check); reading can resume "
                        "at offset %" PRIu64,
                        next, bad_next - 1, bad_next);
    } else {
        spw_http_answer(req, n == SPW_ECORRUPT ? SPW_SC_DAMAGED : SPW_SC_READ_FAILED, NULL,
                        "reading offset %" PRIu64 ": %s",
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
    char nm[SPW_STREAM_NAME_MAX + 1], msg[300];
    unsigned need = req->method == SPW_HTTP_PUT || req->method == SPW_HTTP_DELETE ? SPW_PERM_ADMIN : 0;
    spw_sc sc = spw_svc_names(name, nl, NULL, 0, NULL, 0, msg, sizeof msg);
    if (sc == SPW_SC_OK)
        sc = spw_svc_allowed(api->svc.auth, ar->who, name, nl, need, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw_http_answer(req, sc, NULL, "%s", msg);
        return;
    }
    memcpy(nm, name, nl);
    nm[nl] = 0;
    if (req->method == SPW_HTTP_PUT) {
        spw_stream_config c;
        char err[300];
        if (spw_stream_config_parse(&c, nm, (const char *)req->body.p, req->body.len, err, sizeof err) ||
            spw_stream_config_check(&c, err, sizeof err)) {
            spw_http_answer(req, SPW_SC_BAD_CONFIG, NULL, "%s", err);
            return;
        }
        int r = spw_catalog_create(api->svc.cat, &c);
        if (r == -EEXIST) {
            spw_http_answer(req, SPW_SC_EXISTS, NULL, "stream %s exists with a different definition", nm);
            return;
        }
        if (r == -ENOTEMPTY) {
            spw_http_answer(req, SPW_SC_DIRECTORY_EXISTS, NULL,
                            "the data directory holds a directory streams/%s that is no loaded stream (its stream.json "
                            "is missing or bad: see the server's messages at start); it is left as it is: move it "
                            "away, or repair its stream.json and restart",
                            nm);
            return;
        }
        if (r < 0) {
            spw_http_answer(req, SPW_SC_CREATE_FAILED, NULL, "creating stream %s: %s", nm, spw_strerror(r));
            return;
        }
        spw_buf b = SPW_BUF_INIT;
        spw_stream_config_json(&c, &b);
        out_raw(&b, "\n", 1);
        respond_json(req, r == 1 ? 201 : 200, &b);
        return;
    }
    if (req->method == SPW_HTTP_DELETE) {
        int r = spw_catalog_delete(api->svc.cat, nm);
        if (r == -ENOENT)
            spw_http_answer(req, SPW_SC_NO_SUCH_STREAM, NULL, "no stream named %s", nm);
        else if (r < 0)
            spw_http_answer(req, SPW_SC_DELETE_FAILED, NULL, "deleting stream %s: %s", nm, spw_strerror(r));
        else {
            spw_consume_drop_stream(api->svc.groups, nm); /* its consumer groups go with it */
            spw_http_respond(req, 204, NULL, NULL, NULL, 0);
        }
        return;
    }
    if (req->method != SPW_HTTP_GET) {
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET, PUT, DELETE\r\n", "use GET, PUT or DELETE");
        return;
    }
    spw_stream *s = spw_stream_get(api->svc.cat, nm, nl);
    if (!s) {
        spw_http_answer(req, SPW_SC_NO_SUCH_STREAM, NULL, "no stream named %s", nm);
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
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "count must be an integer from 1 to 10000");
        return;
    }
    spw_idgen *g = spw_log_idgen(api->svc.log);
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
    uint64_t disk = spw_log_disk_bytes(api->svc.log);
    struct statvfs fs;
    uint64_t fs_avail = statvfs(api->svc.data_dir, &fs) == 0 ? (uint64_t)fs.f_bavail * fs.f_frsize : 0;
    spw_http_stats hs;
    spw_http_stats_get(api->http, &hs);
    spw_buf b = SPW_BUF_INIT;
    outf(&b,
         "{\"version\":\"" SPW_VERSION_STR "\",\"uptime_ms\":%" PRId64 ",\"node_id\":%u,\"data_dir\":",
         spw_wall_ms() - api->svc.started_ms, api->svc.node_id);
    out_str(&b, (const uint8_t *)api->svc.data_dir, strlen(api->svc.data_dir));
    outf(&b,
         ",\"streams\":%u,\"connections\":%" PRIu64 ",\"pending_bytes\":%" PRIu64 ",\"limits\":{\"max_pending_bytes\":%" PRIu64
         ",\"max_request_bytes\":%" PRIu64 ",\"max_connections\":%u,\"max_disk_bytes\":%" PRIu64,
         spw_catalog_count(api->svc.cat), hs.connections_open, spw_log_pending_bytes(api->svc.log), api->svc.max_pending_bytes,
         api->svc.max_request_bytes, api->max_connections, api->svc.max_disk_bytes);
    if (api->svc.rl) {
        /* The server-wide default rate limit, as SIGHUP last set it. */
        spw_rl_limit d;
        spw_rl_get_default(api->svc.rl, &d);
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
         disk, api->svc.max_disk_bytes, fs_avail, spw_log_failed_partitions(api->svc.log), spw_log_recoveries(api->svc.log));
    respond_json(req, 200, &b);
}

/* ---- metrics: the server's families (svc/metrics.h) ---- */

#define API(a) ((spw_api *)(a))
static uint64_t m_pending(void *a) { return spw_log_pending_bytes(API(a)->svc.log); }
static uint64_t m_buf(void *a, int i)
{
    spw_membudget_stats ms;
    spw_membudget_stats_get(API(a)->buffers, &ms);
    return i == 0 ? ms.used : i == 1 ? ms.peak : i == 2 ? ms.limit : ms.waits;
}
static uint64_t m_buf_used(void *a) { return m_buf(a, 0); }
static uint64_t m_buf_peak(void *a) { return m_buf(a, 1); }
static uint64_t m_buf_limit(void *a) { return m_buf(a, 2); }
static uint64_t m_buf_waits(void *a) { return m_buf(a, 3); }
static uint64_t m_disk(void *a) { return spw_log_disk_bytes(API(a)->svc.log); }
static uint64_t m_max_disk(void *a) { return API(a)->svc.max_disk_bytes; }
static uint64_t m_failed(void *a) { return spw_log_failed_partitions(API(a)->svc.log); }
static uint64_t m_recoveries(void *a) { return spw_log_recoveries(API(a)->svc.log); }
static uint64_t m_clamped(void *a) { return atomic_load(&API(a)->svc.positions_clamped); }
static uint64_t m_log(void *a, int i)
{
    spw_log_stats ls;
    spw_log_stats_get(API(a)->svc.log, &ls);
    return i == 0 ? ls.cycles : i == 1 ? ls.bytes_written : i == 2 ? ls.fsyncs : ls.acks_fsync;
}
static uint64_t m_log_cycles(void *a) { return m_log(a, 0); }
static uint64_t m_log_written(void *a) { return m_log(a, 1); }
static uint64_t m_log_fsyncs(void *a) { return m_log(a, 2); }
static uint64_t m_log_acks(void *a) { return m_log(a, 3); }
static uint64_t m_http(void *a, int i)
{
    spw_http_stats hs;
    spw_http_stats_get(API(a)->http, &hs);
    return i == 0 ? hs.connections_open : i == 1 ? hs.requests : hs.rejected_limits;
}
static uint64_t m_http_conns(void *a) { return m_http(a, 0); }
static uint64_t m_http_requests(void *a) { return m_http(a, 1); }
static uint64_t m_http_refused(void *a) { return m_http(a, 2); }
static void m_auth_refused(void *a, spw_metrics_out *o, const char *name)
{
    spw_metrics_line(o, name, "reason=\"unauthorized\"", atomic_load(&API(a)->svc.auth->unauthorized));
    spw_metrics_line(o, name, "reason=\"forbidden\"", atomic_load(&API(a)->svc.auth->forbidden));
}
static void m_auth_reloads(void *a, spw_metrics_out *o, const char *name)
{
    spw_metrics_line(o, name, "result=\"ok\"", atomic_load(&API(a)->svc.auth->reloads_ok));
    spw_metrics_line(o, name, "result=\"failed\"", atomic_load(&API(a)->svc.auth->reloads_failed));
}

typedef struct part_walk {
    spw_metrics_out *o;
    const char *name;
    int bytes;
} part_walk;

static void part_one(void *arg, spw_stream *s)
{
    part_walk *w = arg;
    if (!spw_metrics_sees(w->o, s->cfg.name))
        return;
    for (uint32_t i = 0; i < s->cfg.partitions; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        char l[192];
        snprintf(l, sizeof l, "stream=\"%s\",partition=\"%u\"", s->cfg.name, i);
        spw_metrics_line(w->o, w->name, l, w->bytes ? st.bytes : st.written_offset);
    }
}
static void m_part_end(void *a, spw_metrics_out *o, const char *name)
{
    part_walk w = {o, name, 0};
    spw_catalog_each(API(a)->svc.cat, part_one, &w);
}
static void m_part_bytes(void *a, spw_metrics_out *o, const char *name)
{
    part_walk w = {o, name, 1};
    spw_catalog_each(API(a)->svc.cat, part_one, &w);
}

static void m_groups(void *a, spw_metrics_out *o) { spw_consume_metrics(API(a)->svc.groups, o->b, o->who); }
static void m_sinks(void *a, spw_metrics_out *o)
{
    if (API(a)->sinks)
        spw_sinks_metrics(API(a)->sinks, o->b);
}

/* Per-stream samples: only the streams the token may see. */
static int metrics_filter(const void *who, const char *stream)
{
    return !who || spw_token_sees(who, stream, strlen(stream));
}

void spw_api_metrics_register(spw_api *api)
{
    spw_metrics *m = api->svc.metrics;
    spw_metrics_set_filter(m, metrics_filter);
    spw_produce_metrics_register(m, &api->svc);
    /* Untyped, as /metrics has always shown them (docs/operations.md). */
    spw_metrics_add_family(m, "spillway_partition_end_offset", NULL, SPW_METRIC_UNTYPED, m_part_end, api);
    spw_metrics_add_family(m, "spillway_partition_bytes", NULL, SPW_METRIC_UNTYPED, m_part_bytes, api);
    spw_metrics_add_block(m, m_groups, api);
    spw_metrics_add_u64(m, "spillway_pending_bytes", NULL, SPW_METRIC_GAUGE, m_pending, api);
    if (api->buffers) {
        spw_metrics_add_u64(m, "spillway_buffer_bytes", NULL, SPW_METRIC_GAUGE, m_buf_used, api);
        spw_metrics_add_u64(m, "spillway_buffer_peak_bytes", NULL, SPW_METRIC_GAUGE, m_buf_peak, api);
        spw_metrics_add_u64(m, "spillway_max_buffer_bytes", NULL, SPW_METRIC_GAUGE, m_buf_limit, api);
        spw_metrics_add_u64(m, "spillway_buffer_waits_total", NULL, SPW_METRIC_COUNTER, m_buf_waits, api);
    }
    spw_metrics_add_u64(m, "spillway_disk_bytes", NULL, SPW_METRIC_GAUGE, m_disk, api);
    spw_metrics_add_u64(m, "spillway_max_disk_bytes", NULL, SPW_METRIC_GAUGE, m_max_disk, api);
    spw_metrics_add_u64(m, "spillway_partitions_failed", NULL, SPW_METRIC_GAUGE, m_failed, api);
    spw_metrics_add_u64(m, "spillway_partition_recoveries_total", NULL, SPW_METRIC_COUNTER, m_recoveries, api);
    spw_metrics_add_u64(m, "spillway_positions_clamped_total",
                        "consumer-group offsets and sink positions found past their partition's end at attach and "
                        "moved down to it",
                        SPW_METRIC_COUNTER, m_clamped, api);
    spw_metrics_add_u64(m, "spillway_log_flush_cycles_total", NULL, SPW_METRIC_COUNTER, m_log_cycles, api);
    spw_metrics_add_u64(m, "spillway_log_written_bytes_total", NULL, SPW_METRIC_COUNTER, m_log_written, api);
    spw_metrics_add_u64(m, "spillway_log_fsyncs_total", NULL, SPW_METRIC_COUNTER, m_log_fsyncs, api);
    spw_metrics_add_u64(m, "spillway_log_fsync_acks_total", NULL, SPW_METRIC_COUNTER, m_log_acks, api);
    spw_hist *fh, *gh;
    spw_log_hists(api->svc.log, &fh, &gh);
    spw_metrics_add_hist(m, "spillway_log_fsync_seconds", "time of each group commit's fdatasync round", fh, 1e6);
    spw_metrics_add_hist(m, "spillway_log_group_commit_appends", "appends acknowledged by one fsync round", gh, 1);
    spw_metrics_add_u64(m, "spillway_http_connections", NULL, SPW_METRIC_GAUGE, m_http_conns, api);
    spw_metrics_add_u64(m, "spillway_http_requests_total", NULL, SPW_METRIC_COUNTER, m_http_requests, api);
    spw_metrics_add_u64(m, "spillway_http_refused_total", NULL, SPW_METRIC_COUNTER, m_http_refused, api);
    if (api->svc.auth) {
        spw_metrics_add_family(m, "spillway_auth_refused_total", NULL, SPW_METRIC_COUNTER, m_auth_refused, api);
        spw_metrics_add_family(m, "spillway_tokens_reloads_total", NULL, SPW_METRIC_COUNTER, m_auth_reloads, api);
    }
    spw_metrics_add_block(m, m_sinks, api);
}

static void handle_metrics(spw_api *api, spw_http_req *req, const spw_token *who)
{
    spw_buf b = SPW_BUF_INIT;
    spw_metrics_render(api->svc.metrics, &b, who);
    spw_http_respond(req, 200, NULL, "text/plain; version=0.0.4", b.p, b.len);
    spw_buf_fini(&b);
}

/* ---- routing ---- */

static int path_is(const spw_http_req *req, const char *p) { return strcmp(req->path, p) == 0; }

static void method_not_allowed(spw_http_req *req, const char *allow)
{
    char h[64];
    snprintf(h, sizeof h, "Allow: %s\r\n", allow);
    spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, h, "use %s", allow);
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
        spw_catalog_each(api->svc.cat, list_one, &sc);
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
        if (strncmp(slash, "/groups/", 8) == 0 && api->svc.groups)
            return spw_groups_http_route(api, req, name, nl, slash + 8, ar);
        if (strcmp(slash, "/events") == 0) {
            char msg[300];
            spw_sc sc = spw_svc_names(name, nl, NULL, 0, NULL, 0, msg, sizeof msg);
            if (sc != SPW_SC_OK) {
                if (req->method == SPW_HTTP_POST) /* an invalid produce, as over the binary protocol */
                    atomic_fetch_add(&api->svc.rejected[SPW_REJ_INVALID], 1);
                return spw_http_answer(req, sc, NULL, "%s", msg);
            }
            unsigned need = req->method == SPW_HTTP_POST ? SPW_PERM_PRODUCE
                            : req->method == SPW_HTTP_GET ? SPW_PERM_CONSUME
                                                          : 0;
            if (!need)
                return method_not_allowed(req, "GET, POST");
            spw_stream *s;
            sc = spw_svc_stream_for(api->svc.cat, api->svc.auth, ar->who, name, nl, need, &s, msg, sizeof msg);
            if (sc != SPW_SC_OK)
                return spw_http_answer(req, sc, NULL, "%s", msg);
            return req->method == SPW_HTTP_POST ? handle_produce(api, req, s) : handle_read(api, req, s);
        }
    }
    spw_http_answer(req, SPW_SC_NOT_FOUND, NULL, "no such endpoint: %s", req->path);
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
    if (!spw_auth_http(api->svc.auth, req, &ar))
        return;
    /* A header the server reads whose value is longer than it keeps
     * (http/http.h) is refused, never used cut (docs/api.md#headers); an
     * Authorization that long is no valid token (auth.c). */
    if (req->too_long) {
        spw_http_answer(req, SPW_SC_HEADER_TOO_LONG, NULL, "the %s header is longer than %zu bytes; nothing was done",
                        req->too_long, req->too_long_max);
        spw_auth_req_done(&ar);
        return;
    }
    route(api, req, &ar);
    spw_auth_req_done(&ar);
}
