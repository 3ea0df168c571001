/* Stream configuration: parsing, canonical form, partitioning. See stream.h. */
#include "server/stream.h"
#include "core/hash.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/name.h"

int spw_stream_name_ok(const char *name, size_t len) { return spw_name_ok(name, len, SPW_STREAM_NAME_MAX); }

static int get_int(const spw_json_span *v, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t x;
    if (spw_json_int64(v, &x) || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int get_num(const spw_json_span *v, double lo, double hi, double *out)
{
    if (v->type != SPW_JSON_NUMBER || v->n > 63)
        return -1;
    char buf[64];
    memcpy(buf, v->p, v->n);
    buf[v->n] = 0;
    double x = strtod(buf, NULL);
    if (!isfinite(x) || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int get_bool(const spw_json_span *v, int *out)
{
    if (v->type != SPW_JSON_TRUE && v->type != SPW_JSON_FALSE)
        return -1;
    *out = v->type == SPW_JSON_TRUE;
    return 0;
}

static int get_ptr(const spw_json_span *v, char *out, size_t cap)
{
    if (v->type != SPW_JSON_STRING)
        return -1;
    long n = spw_json_unescape(v, out, cap - 1);
    if (n < 0)
        return -1;
    out[n] = 0;
    spw_json_ptr p;
    return memchr(out, 0, (size_t)n) || spw_json_ptr_compile(&p, out) ? -1 : 0;
}

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, errcap, __VA_ARGS__);                                                                            \
        return -1;                                                                                                     \
    } while (0)

static int parse(spw_stream_config *c, uint64_t *incarnation, const char *name, const char *body, size_t len,
                 char *err, size_t errcap)
{
    memset(c, 0, sizeof *c);
    if (incarnation)
        *incarnation = 0;
    size_t nl = strlen(name);
    if (!spw_stream_name_ok(name, nl))
        FAIL("stream names are " SPW_NAME_RULE);
    memcpy(c->name, name, nl + 1);
    c->partitions = 4;
    c->ack = SPW_ACK_FSYNC;
    c->retention_ms = -1;
    c->retention_bytes = -1;
    c->dedupe_window_ms = 86400000;
    c->max_event_bytes = 1 << 20;
    c->priority = 1;
    if (len == 0)
        return 0; /* no body (body may be NULL): defaults */
    const char *p = spw_json_ws(body, body + len);
    if (p == body + len)
        return 0; /* empty body: defaults */
    spw_json_ptr root = {0};
    spw_json_span obj;
    spw_json_error je;
    const char *end;
    if (spw_json_scan(body, body + len, &root, 1, &obj, &end, &je))
        FAIL("body is not valid JSON: %s at byte %zu", je.msg, je.offset);
    if (spw_json_ws(end, body + len) != body + len)
        FAIL("body has data after the JSON object at byte %zu", (size_t)(end - body));
    if (obj.type != SPW_JSON_OBJECT)
        FAIL("body must be a JSON object");
    spw_json_iter it;
    spw_json_span k, v;
    spw_json_iter_init(&it, &obj);
    while (spw_json_iter_next(&it, &k, &v)) {
        int64_t x;
        if (incarnation && spw_json_str_eq(&k, "incarnation")) {
            if (get_int(&v, 1, INT64_MAX, &x))
                FAIL("\"incarnation\" must be a positive integer");
            *incarnation = (uint64_t)x;
        } else if (spw_json_str_eq(&k, "name")) {
            if (!spw_json_str_eq(&v, name))
                FAIL("\"name\" in the body must match the stream name in the path");
        } else if (spw_json_str_eq(&k, "partitions")) {
            if (get_int(&v, 1, SPW_STREAM_PARTITIONS_MAX, &x))
                FAIL("\"partitions\" must be an integer from 1 to %d", SPW_STREAM_PARTITIONS_MAX);
            c->partitions = (uint32_t)x;
        } else if (spw_json_str_eq(&k, "format")) {
            if (spw_json_str_eq(&v, "json"))
                c->format_bytes = 0;
            else if (spw_json_str_eq(&v, "bytes"))
                c->format_bytes = 1;
            else
                FAIL("\"format\" must be \"json\" or \"bytes\"");
        } else if (spw_json_str_eq(&k, "key")) {
            if (get_ptr(&v, c->key, sizeof c->key))
                FAIL("\"key\" must be a JSON pointer such as \"/device_id\" (at most 127 bytes)");
        } else if (spw_json_str_eq(&k, "timestamp")) {
            if (get_ptr(&v, c->timestamp, sizeof c->timestamp))
                FAIL("\"timestamp\" must be a JSON pointer such as \"/ts\" (at most 127 bytes)");
        } else if (spw_json_str_eq(&k, "ack")) {
            char a[16];
            long n = v.type == SPW_JSON_STRING ? spw_json_unescape(&v, a, sizeof a - 1) : -1;
            if (n < 0)
                FAIL("\"ack\" must be one of \"none\", \"written\", \"fsync\", \"replicated\"");
            a[n] = 0;
            if (spw_ack_parse(a, &c->ack))
                FAIL("\"ack\" must be one of \"none\", \"written\", \"fsync\", \"replicated\"");
        } else if (spw_json_str_eq(&k, "retention")) {
            if (v.type != SPW_JSON_OBJECT)
                FAIL("\"retention\" must be an object {\"ms\":..,\"bytes\":..}");
            spw_json_iter it2;
            spw_json_span k2, v2;
            spw_json_iter_init(&it2, &v);
            while (spw_json_iter_next(&it2, &k2, &v2)) {
                if (spw_json_str_eq(&k2, "ms")) {
                    if (get_int(&v2, 1, INT64_MAX / 2, &c->retention_ms))
                        FAIL("\"retention.ms\" must be a positive integer");
                } else if (spw_json_str_eq(&k2, "bytes")) {
                    if (get_int(&v2, 1, INT64_MAX / 2, &c->retention_bytes))
                        FAIL("\"retention.bytes\" must be a positive integer");
                } else {
                    FAIL("unknown field in \"retention\": %.*s", (int)(k2.n < 64 ? k2.n : 64), k2.p);
                }
            }
        } else if (spw_json_str_eq(&k, "dedupe_window_ms")) {
            if (get_int(&v, 0, 30LL * 86400000, &c->dedupe_window_ms))
                FAIL("\"dedupe_window_ms\" must be an integer from 0 to 2592000000 (30 days)");
        } else if (spw_json_str_eq(&k, "priority")) {
            int64_t pr;
            if (get_int(&v, 0, 3, &pr))
                FAIL("\"priority\" must be an integer from 0 (most important) to 3");
            c->priority = (int)pr;
        } else if (spw_json_str_eq(&k, "coalesce")) {
            if (get_bool(&v, &c->coalesce))
                FAIL("\"coalesce\" must be true or false");
        } else if (spw_json_str_eq(&k, "versioned")) {
            if (get_bool(&v, &c->versioned))
                FAIL("\"versioned\" must be true or false");
        } else if (spw_json_str_eq(&k, "max_event_bytes")) {
            if (get_int(&v, 1, 64 << 20, &x))
                FAIL("\"max_event_bytes\" must be an integer from 1 to 67108864");
            c->max_event_bytes = (uint32_t)x;
        } else if (spw_json_str_eq(&k, "rate_limit")) {
            if (v.type != SPW_JSON_OBJECT)
                FAIL("\"rate_limit\" must be an object {\"rate\":..,\"burst\":..,\"per\":\"tenant\"|\"ip\","
                     "\"algorithm\":\"token_bucket\"|\"sliding_window\"}");
            spw_json_iter it2;
            spw_json_span k2, v2;
            spw_json_iter_init(&it2, &v);
            c->rate = c->burst = 0;
            c->rate_per = c->rate_algo = 0;
            while (spw_json_iter_next(&it2, &k2, &v2)) {
                if (spw_json_str_eq(&k2, "rate")) {
                    if (get_num(&v2, 0.001, 1e12, &c->rate))
                        FAIL("\"rate_limit.rate\" must be a positive number of events per second");
                } else if (spw_json_str_eq(&k2, "burst")) {
                    if (get_num(&v2, 1, 1e12, &c->burst))
                        FAIL("\"rate_limit.burst\" must be a number >= 1");
                } else if (spw_json_str_eq(&k2, "per")) {
                    if (spw_json_str_eq(&v2, "tenant"))
                        c->rate_per = 0;
                    else if (spw_json_str_eq(&v2, "ip"))
                        c->rate_per = 1;
                    else
                        FAIL("\"rate_limit.per\" must be \"tenant\" or \"ip\"");
                } else if (spw_json_str_eq(&k2, "algorithm")) {
                    if (spw_json_str_eq(&v2, "token_bucket"))
                        c->rate_algo = 0;
                    else if (spw_json_str_eq(&v2, "sliding_window"))
                        c->rate_algo = 1;
                    else
                        FAIL("\"rate_limit.algorithm\" must be \"token_bucket\" or \"sliding_window\"");
                } else {
                    FAIL("unknown field in \"rate_limit\": %.*s", (int)(k2.n < 64 ? k2.n : 64), k2.p);
                }
            }
            if (c->rate <= 0)
                FAIL("\"rate_limit\" needs \"rate\"");
            if (c->rate_algo == 1) {
                /* The window limit is rate events in any 1 s (server/ratelimit.h). */
                if (c->burst > 0)
                    FAIL("\"rate_limit.burst\" is for \"token_bucket\"; a \"sliding_window\" allows \"rate\" "
                         "events in any 1-second window");
                if (c->rate < 1 || c->rate > 4294967295.0 || c->rate != floor(c->rate))
                    FAIL("\"rate_limit.rate\" of a \"sliding_window\" must be a whole number of events per "
                         "second from 1 to 4294967295");
            } else if (c->burst <= 0) {
                c->burst = c->rate < 1 ? 1 : c->rate; /* a bucket must hold one event */
            }
        } else {
            FAIL("unknown field %.*s", (int)(k.n < 64 ? k.n : 64), k.p);
        }
    }
    if (c->format_bytes && (c->key[0] || c->timestamp[0]))
        FAIL("\"key\" and \"timestamp\" pointers need \"format\": \"json\"");
    return 0;
}

int spw_stream_config_parse(spw_stream_config *c, const char *name, const char *body, size_t len, char *err,
                            size_t errcap)
{
    return parse(c, NULL, name, body, len, err, errcap);
}

int spw_stream_def_parse(spw_stream_config *c, uint64_t *incarnation, const char *name, const char *body,
                         size_t len, char *err, size_t errcap)
{
    return parse(c, incarnation, name, body, len, err, errcap);
}

int spw_stream_config_check(const spw_stream_config *c, char *err, size_t errcap)
{
    if (c->dedupe_window_ms > 0 && c->retention_ms > 0 && c->retention_ms < c->dedupe_window_ms) {
        snprintf(err, errcap,
                 "\"retention.ms\" (%lld) is shorter than \"dedupe_window_ms\" (%lld): idempotency keys would be "
                 "forgotten with the batches that carry them while a retry must still find them; make retention.ms "
                 "at least dedupe_window_ms, or lower dedupe_window_ms",
                 (long long)c->retention_ms, (long long)c->dedupe_window_ms);
        return -1;
    }
    return 0;
}

static int appendf(spw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int appendf(spw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || spw_buf_reserve(b, b->len + (size_t)n + 1))
        return SPW_ENOMEM;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int spw_stream_config_json(const spw_stream_config *c, spw_buf *b)
{
    int r = appendf(b, "{\"name\":\"%s\",\"partitions\":%u,\"format\":\"%s\",\"key\":", c->name, c->partitions,
                    c->format_bytes ? "bytes" : "json");
    r = r ? r : spw_json_put_str(b, c->key, strlen(c->key));
    r = r ? r : appendf(b, ",\"timestamp\":");
    r = r ? r : spw_json_put_str(b, c->timestamp, strlen(c->timestamp));
    r = r ? r : appendf(b, ",\"ack\":\"%s\",\"retention\":{", spw_ack_name(c->ack));
    if (!r && c->retention_ms > 0)
        r = appendf(b, "\"ms\":%lld%s", (long long)c->retention_ms, c->retention_bytes > 0 ? "," : "");
    if (!r && c->retention_bytes > 0)
        r = appendf(b, "\"bytes\":%lld", (long long)c->retention_bytes);
    r = r ? r : appendf(b, "},\"dedupe_window_ms\":%lld,\"priority\":%d,\"coalesce\":%s,\"versioned\":%s,\"max_event_bytes\":%u",
                        (long long)c->dedupe_window_ms, c->priority, c->coalesce ? "true" : "false",
                        c->versioned ? "true" : "false", c->max_event_bytes);
    if (!r && c->rate > 0 && c->rate_algo == 0)
        r = appendf(b, ",\"rate_limit\":{\"rate\":%.17g,\"burst\":%.17g,\"per\":\"%s\",\"algorithm\":\"token_bucket\"}",
                    c->rate, c->burst, c->rate_per ? "ip" : "tenant");
    else if (!r && c->rate > 0)
        r = appendf(b, ",\"rate_limit\":{\"rate\":%.17g,\"per\":\"%s\",\"algorithm\":\"sliding_window\"}", c->rate,
                    c->rate_per ? "ip" : "tenant");
    return r ? r : appendf(b, "}");
}

int spw_stream_config_equal(const spw_stream_config *a, const spw_stream_config *b)
{
    return strcmp(a->name, b->name) == 0 && a->partitions == b->partitions && a->format_bytes == b->format_bytes &&
           strcmp(a->key, b->key) == 0 && strcmp(a->timestamp, b->timestamp) == 0 && a->ack == b->ack &&
           a->retention_ms == b->retention_ms && a->retention_bytes == b->retention_bytes &&
           a->dedupe_window_ms == b->dedupe_window_ms && a->coalesce == b->coalesce && a->versioned == b->versioned &&
           a->max_event_bytes == b->max_event_bytes && a->rate == b->rate && a->burst == b->burst &&
           a->rate_per == b->rate_per && a->rate_algo == b->rate_algo && a->priority == b->priority;
}

uint32_t spw_stream_partition(const void *key, size_t len, uint32_t partitions)
{
    return (uint32_t)(spw_fnv1a64(SPW_FNV64_OFFSET, key, len) % partitions);
}
