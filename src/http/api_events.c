/*
 * A stream's events over HTTP (docs/api.md "Produce", "Read"): POST
 * /v1/streams/NAME/events is the HTTP decoder and encoder over the produce
 * service (svc/produce.h; the design is in api.c's opening comment); GET
 * reads a partition from an offset or a time through the record cursor
 * (log/cursor.h) as NDJSON, reporting damage with the offset to resume at.
 */
#include "http/api_int.h"
#include "core/workq.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
        /* A request's ids are consecutive tickets in request order. One
         * reservation for all of them (at most 20 digits, quotes, comma),
         * then written in place: this is per event (docs/performance.md). */
        e = spw_buf_reserve(b, b->len + 16 + (size_t)r->n_events * 23) || spw_buf_puts(b, ",\"ids\":[");
        for (uint32_t k = 0; k < r->n_events && !e; k++) {
            char *o = (char *)b->p + b->len;
            if (k)
                *o++ = ',';
            if (sup && sup[k]) {
                memcpy(o, "null", 4);
                o += 4;
            } else {
                *o++ = '"';
                o += spw_u64_dec(o, spw_id_from_ticket(g, r->first_ticket + k));
                *o++ = '"';
            }
            b->len = (size_t)(o - (char *)b->p);
        }
        e = e || spw_buf_puts(b, "]");
    }
    if (!e && sup)
        e = spw_buf_puts(b, ",\"superseded\":") || spw_buf_put_u64(b, r->n_superseded);
    if (!e && r->duplicate)
        e = spw_buf_puts(b, ",\"duplicate\":true");
    if (!e && r->vers) { /* a versioned stream: per key, its first version and count */
        e = spw_buf_puts(b, ",\"versions\":[");
        for (uint32_t k = 0; k < r->n_vers && !e; k++) {
            e = spw_buf_puts(b, k ? ",{\"key\":" : "{\"key\":");
            if (!e)
                spw_json_xput_str(b, (const char *)r->vers[k].key, r->vers[k].key_len);
            e = e || spw_buf_puts(b, ",\"first\":") || spw_buf_put_u64(b, r->vers[k].first) ||
                spw_buf_puts(b, ",\"count\":") || spw_buf_put_u64(b, r->vers[k].count) || spw_buf_puts(b, "}");
        }
        e = e || spw_buf_puts(b, "]");
    }
    e = e || spw_buf_puts(b, "}\n");
    if (e)
        abort(); /* as spw__api_out_raw: spw_buf uses try_realloc; bounded by the request */
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
        spw_buf b = spw_http_req_buf(req); /* the connection's, no allocation per answer */
        result_json(&b, api, r);
        spw_http_respond_buf(req, 202, h[0] ? h : NULL, "application/json", &b);
        return;
    }
    int status = spw_sc_http(r->code);
    const char *word = spw_sc_word(r->code);
    if (r->code == SPW_SC_VERSION_CONFLICT) {
        /* {"code":"version_conflict","expected":E,"current":M}: E as a
         * number or as the word the request gave */
        spw_buf b = SPW_BUF_INIT;
        char eb[24];
        spw_es_expect_str((spw_es_expect)r->expect, r->expected_version, eb, sizeof eb);
        int num = r->expect == SPW_ES_EXACT;
        spw_buf_xprintf(&b, "{\"error\":");
        spw_json_xput_str(&b, r->msg, strlen(r->msg));
        spw_buf_xprintf(&b, ",\"code\":\"%s\",\"expected\":%s%s%s,\"current\":%" PRIu64 "}\n", word, num ? "" : "\"",
                        eb, num ? "" : "\"", r->current_version);
        spw_http_respond(req, status, h[0] ? h : NULL, "application/json", b.p, b.len);
        spw_buf_fini(&b);
        return;
    }
    if (r->code == SPW_SC_RATE_LIMITED || r->code == SPW_SC_OVER_BURST) {
        spw_buf b = SPW_BUF_INIT;
        if (r->code == SPW_SC_OVER_BURST)
            spw_buf_xprintf(&b, "{\"error\":\"%s\",\"code\":\"%s\",\"burst\":%" PRIu64 ",\"events\":%u}\n", r->msg, word,
                          r->rl.limit, r->n_events);
        else
            spw_buf_xprintf(&b, "{\"error\":\"%s\",\"code\":\"%s\",\"retry_after_ms\":%" PRIu64 "}\n", r->msg, word,
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

/* A produce's working memory comes from the input budget (produce.h). */
static void work_add(void *m, uint64_t n) { spw_membudget_add(m, n); }
static void work_give(void *m, uint64_t n) { spw_membudget_give(m, n); }

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

/* The lines of an NDJSON body (a last one without '\n' included): an
 * upper bound of its events, so the service allocates their records once
 * (spw_produce_in.count_bound). SSE2: each 16 bytes' matches (0xff) taken
 * from per-byte counters, summed (psadbw) before a counter can wrap. */
#define NDJSON_COUNT_MIN 2048
static uint32_t ndjson_lines(const char *p, size_t n)
{
    uint64_t count = 0;
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    while (i + 16 <= n) {
        __m128i acc = zero;
        /* at most 4 x 60 + 3 = 243 matches per byte counter */
        for (int k = 0; k < 60 && i + 64 <= n; k++, i += 64) {
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), nl));
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i + 16)), nl));
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i + 32)), nl));
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i + 48)), nl));
        }
        if (i + 64 > n)
            for (; i + 16 <= n; i += 16)
                acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), nl));
        __m128i sum = _mm_sad_epu8(acc, zero);
        count += (uint64_t)_mm_cvtsi128_si32(sum) + (uint64_t)_mm_cvtsi128_si32(_mm_unpackhi_epi64(sum, sum));
    }
#endif
    for (; i < n; i++)
        count += p[i] == '\n';
    count += n && p[n - 1] != '\n';
    return count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
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

void spw__api_handle_produce(spw_api *api, spw_http_req *req, spw_stream *s)
{
    spw_stream_config *cfg = &s->cfg;
    /* Ack level: header, then ?ack=, then the stream's default. */
    spw_ack ack = cfg->ack;
    char qa[16];
    const char *ack_s =
        req->ack[0] ? req->ack : (spw__api_query_get(req->query, "ack", qa, sizeof qa) == 1 ? qa : NULL);
    if (ack_s && spw_ack_parse(ack_s, &ack)) {
        spw_svc_reject(&api->svc, s, SPW_REJ_INVALID);
        spw_http_answer(req, SPW_SC_BAD_ACK, NULL, "ack must be none, written, fsync or replicated, not '%s'", ack_s);
        spw_stream_put(s);
        return;
    }
    /* Priority: header, then the stream's default. */
    int prio = -1;
    if (req->priority[0]) {
        if (!(req->priority[0] >= '0' && req->priority[0] <= '3' && req->priority[1] == 0)) {
            spw_svc_reject(&api->svc, s, SPW_REJ_INVALID);
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
                            "a bytes stream takes Content-Type: application/octet-stream (or none), not '%.*s'",
                            (int)ctl, ct);
            spw_stream_put(s);
            return;
        }
        kind = BODY_BYTES;
    } else if (ctl == 20 && strncasecmp(ct, "application/x-ndjson", 20) == 0) {
        kind = BODY_NDJSON;
    } else if (ctl && !(ctl == 16 && strncasecmp(ct, "application/json", 16) == 0)) {
        spw_http_answer(req, SPW_SC_UNSUPPORTED_MEDIA_TYPE, NULL,
                        "Content-Type must be application/json or application/x-ndjson (or none), not '%.*s'",
                        (int)ctl, ct);
        spw_stream_put(s);
        return;
    }
    /* Expected version (versioned streams): header, then ?expected_version=. */
    char qe[32];
    int qer = req->expected_version[0] ? 1 : spw__api_query_get(req->query, "expected_version", qe, sizeof qe);
    const char *exp_s = req->expected_version[0] ? req->expected_version : qer == 1 ? qe : NULL;
    spw_es_expect ek = SPW_ES_ANY;
    uint64_t ev = 0;
    if (qer < 0 || (exp_s && spw_es_expect_parse(exp_s, strlen(exp_s), &ek, &ev))) {
        spw_svc_reject(&api->svc, s, SPW_REJ_INVALID);
        spw_http_answer(req, SPW_SC_BAD_EXPECTED_VERSION, NULL,
                        "expected_version must be any, none, exists or an integer from 0 to 9007199254740991, not "
                        "'%.40s'; nothing was appended",
                        qer < 0 ? "(malformed)" : exp_s);
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
                         /* a small body's few records grow at little cost */
                         .count_bound = kind == BODY_NDJSON && req->body.len >= NDJSON_COUNT_MIN
                                            ? ndjson_lines(body, req->body.len)
                                            : 0,
                         .trailing = kind == BODY_NDJSON ? SPW_PRODUCE_TRAIL_LINE : SPW_PRODUCE_TRAIL_OBJECT,
                         .next = body_next,
                         .src = &src,
                         .idempotency_key = req->idempotency_key,
                         .supersede_ok = 1,
                         .has_expect = exp_s != NULL,
                         .expect = (int)ek,
                         .expected_version = ev,
                         .post = http_post,
                         .loop = req->loop,
                         .done = produce_answer,
                         .user = req};
    if (api->buffers) { /* counted in the input budget, beside the body */
        in.work_add = work_add;
        in.work_give = work_give;
        in.work = api->buffers;
    }
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

int spw_api_read_ndjson(spw_stream *s, uint32_t part, uint64_t offset, uint64_t limit, uint64_t max_bytes, spw_buf *out,
                        uint64_t *next_out, uint64_t *bad_out)
{
    /* The record cursor's rules (log/cursor.h): durable records only; at
     * damage, answer what came before it and stop there, so the next read
     * starts at the damage and reports it with the offset to resume at. */
    spw_cursor c;
    spw_cursor_init(&c, s->parts[part], offset, 1 << 20);
    spw_record_view rv;
    uint64_t sent = 0;
    int n = 0;
    while (sent < limit && (sent == 0 || out->len < max_bytes) && (n = spw_cursor_next(&c, &rv)) == 1) {
        spw_buf_xprintf(out,
                      "{\"partition\":%" PRIu32 ",\"offset\":%" PRIu64 ",\"id\":\"%" PRIu64 "\",\"ts\":%" PRId64,
                      part, rv.offset, rv.id, rv.ts);
        if (rv.version) /* a versioned stream's record */
            spw_buf_xprintf(out, ",\"version\":%" PRIu64, rv.version);
        spw__api_out_raw(out, ",\"key\":", 7);
        if (rv.key_len < 0)
            spw__api_out_raw(out, "null", 4);
        else
            spw_json_xput_str(out, (const char *)rv.key, (size_t)rv.key_len);
        spw__api_out_raw(out, ",\"value\":", 9);
        if (s->cfg.format_bytes)
            spw_json_xput_b64(out, rv.value, rv.value_len);
        else
            spw__api_out_raw(out, rv.value, rv.value_len);
        spw__api_out_raw(out, "}\n", 2);
        sent++;
    }
    *next_out = c.next;
    *bad_out = n == SPW_ECORRUPT ? c.resume : 0;
    spw_cursor_fini(&c);
    return n < 0 && sent == 0 ? n : (int)sent;
}

/*
 * A read is checked on the loop (parameters, partition), then its disk
 * work — the time lookup, the segment reads through the cursor — runs on
 * an I/O worker (svc->io, core/workq.h) and the answer is posted back to
 * the request's loop: a read of up to 8 MiB from a slow disk never holds
 * up the other connections of its loop. Without workers it runs in place.
 */
typedef struct read_job {
    spw_api *api;
    spw_http_req *req;
    spw_stream *s;
    uint32_t part;
    uint64_t offset, limit, max_bytes;
    int64_t from_ts;
    int by_ts, by_offset;
    /* results */
    int r_ts; /* the time lookup's error, or 0 */
    spw_part_state st;
    spw_buf out;
    uint64_t next, bad_next;
    int n;
} read_job;

/* On a worker (or in place): everything that touches the disk. */
static void read_work(read_job *j)
{
    spw_part *p = j->s->parts[j->part];
    spw_part_state_get(p, &j->st);
    if (j->by_ts) {
        j->r_ts = spw_part_offset_for_ts(p, j->from_ts, &j->offset);
        if (j->r_ts < 0)
            return;
    } else if (!j->by_offset) {
        j->offset = j->st.start_offset;
    }
    if (j->offset < j->st.start_offset || j->offset > j->st.durable_offset)
        return;
    j->next = j->offset;
    j->n = spw_api_read_ndjson(j->s, j->part, j->offset, j->limit, j->max_bytes, &j->out, &j->next, &j->bad_next);
}

/* On the request's loop: the answer. */
static void read_answer(void *arg)
{
    read_job *j = arg;
    spw_http_req *req = j->req;
    req->user = NULL;
    if (j->r_ts < 0) {
        spw_http_answer(req, spw_sc_read(j->r_ts), NULL, "%s", spw_strerror(j->r_ts));
        goto out;
    }
    /* Reads see durable records only (docs/architecture.md, "What readers
     * see"): the end a reader is told is the durable one. */
    if (j->offset < j->st.start_offset || j->offset > j->st.durable_offset) {
        char h[128];
        snprintf(h, sizeof h, "Spillway-Start-Offset: %" PRIu64 "\r\nSpillway-End-Offset: %" PRIu64 "\r\n",
                 j->st.start_offset, j->st.durable_offset);
        spw_http_answer(req, SPW_SC_OFFSET_OUT_OF_RANGE, h,
                        "offset %" PRIu64 " is outside the partition's offsets %" PRIu64 "..%" PRIu64, j->offset,
                        j->st.start_offset, j->st.durable_offset);
        goto out;
    }
    int n = j->n;
    uint64_t next = j->next, bad_next = j->bad_next;
    /* A read that stopped at the durable end has asked for an fsync of
     * what is written after it (the cursor does). */
    if (n >= 0) {
        char h[96];
        snprintf(h, sizeof h, "Spillway-Next-Offset: %" PRIu64 "\r\n", next);
        spw_http_respond(req, 200, h, "application/x-ndjson", j->out.p, j->out.len);
    } else if (n == SPW_ECORRUPT && bad_next > next) {
        /* Nothing readable at next: say where reading can resume (past the
         * damaged range) so a reader is never stuck and never misled. */
        char hn[96];
        snprintf(hn, sizeof hn, "Spillway-Next-Offset: %" PRIu64 "\r\n", bad_next);
        spw_http_answer(req, SPW_SC_DAMAGED, hn,
                        "offsets %" PRIu64 "..%" PRIu64 " are damaged on disk (run spillway check); reading can resume "
                        "at offset %" PRIu64,
                        next, bad_next - 1, bad_next);
    } else {
        spw_http_answer(req, spw_sc_read(n), NULL,
                        "reading offset %" PRIu64 ": %s",
                        next, spw_strerror(n));
    }
out:
    spw_buf_fini(&j->out);
    spw_stream_put(j->s);
    spw_free(j);
}

static void read_worker(void *arg)
{
    read_job *j = arg;
    read_work(j);
    spw_http_loop_post(j->req->loop, read_answer, j);
}

void spw__api_handle_read(spw_api *api, spw_http_req *req, spw_stream *s)
{
    spw_stream_config *cfg = &s->cfg;
    uint64_t part = 0, offset = 0, limit = 100;
    int64_t from_ts = 0;
    int hp = spw__api_query_u64(req->query, "partition", &part);
    int ho = spw__api_query_u64(req->query, "offset", &offset);
    int hl = spw__api_query_u64(req->query, "limit", &limit);
    int ht = spw__api_query_i64(req->query, "from_ts", &from_ts);
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
    /* At most READ_MAX_BYTES, and what the budget of unsent answers has
     * left (docs/operations.md "Memory"): none left, and the read waits
     * for clients that do not read theirs to be sent or closed. */
    uint64_t max_bytes = spw_http_req_out_reserve(req, SPW_API_READ_MAX_BYTES);
    if (max_bytes == 0) {
        spw_http_answer(req, SPW_SC_OVERLOADED, "Retry-After: 1\r\n",
                        "the server's memory for unsent answers (max-unsent-bytes) is spent on clients that do not "
                        "read theirs; retry later");
        goto out;
    }
    read_job *j = spw_xcalloc(1, sizeof *j);
    *j = (read_job){.api = api,
                    .req = req,
                    .s = s, /* the handler's reference, given back by read_answer */
                    .part = (uint32_t)part,
                    .offset = offset,
                    .limit = limit,
                    .max_bytes = max_bytes,
                    .from_ts = from_ts,
                    .by_ts = ht > 0,
                    .by_offset = ho > 0,
                    .out = SPW_BUF_INIT};
    req->user = j;
    if (api->svc.io) {
        /* The answer is at most about 8 MiB (spw_api_read_ndjson): counted
         * with the connection's unsent answers while it is being read. */
        spw_http_req_promise(req, 8u << 20);
        int r = spw_workq_submit(api->svc.io, read_worker, j);
        if (r == 0)
            return;
        req->user = NULL;
        spw_free(j);
        spw_http_answer(req, SPW_SC_UNAVAILABLE, NULL,
                        "too many reads are waiting for the disk; try again");
        goto out;
    }
    read_work(j);
    read_answer(j);
    return;
out:
    spw_stream_put(s);
}
