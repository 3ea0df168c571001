/* Stream configuration: parsing, canonical form, partitioning. See stream.h. */
#include "catalog/stream.h"
#include "core/hash.h"

#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/name.h"
#include "core/opts.h"

int spw_stream_name_ok(const char *name, size_t len) { return spw_name_ok(name, len, SPW_STREAM_NAME_MAX); }

/*
 * A definition's fields in option tables (core/opts.h), one row each with
 * its default and bounds; the callbacks hold the rules a type and bounds
 * cannot say. A stored definition (stream.json) also has "incarnation".
 */
typedef struct stream_def {
    spw_stream_config c;
    int64_t incarnation;
    int stored; /* parsing stream.json: "incarnation" allowed */
    const char *name;
} stream_def;

static const char *def_name(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    return spw_json_str_eq(v, ((stream_def *)obj)->name) ? NULL
                                                         : "\"name\" in the body must match the stream name in the path";
}

static const char *def_incarnation(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    return ((stream_def *)obj)->stored ? NULL : "unknown field incarnation (it is the server's, not a setting)";
}

static const char *def_ptr(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)buf, (void)cap;
    const char *p = (const char *)obj + o->off;
    spw_json_ptr ptr;
    if (spw_json_ptr_compile(&ptr, p) == 0)
        return NULL;
    return strcmp(o->name, "key") == 0 ? "\"key\" must be a JSON pointer such as \"/device_id\" (at most 127 bytes)"
                                       : "\"timestamp\" must be a JSON pointer such as \"/ts\" (at most 127 bytes)";
}

static const char *def_ack(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    char a[16];
    long n = spw_json_unescape(v, a, sizeof a - 1);
    if (n < 0)
        return "\"ack\" must be one of \"none\", \"written\", \"fsync\", \"replicated\"";
    a[n] = 0;
    return spw_ack_parse(a, &((stream_def *)obj)->c.ack) ? "\"ack\" must be one of \"none\", \"written\", \"fsync\", "
                                                           "\"replicated\""
                                                         : NULL;
}

static const char *def_replicate_to(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)buf, (void)cap;
    const char *p = (const char *)obj + o->off;
    return !p[0] || spw_stream_name_ok(p, strlen(p)) ? NULL
                                                      : "\"replicate_to\" must be a sink name ([a-zA-Z0-9._-], 1 to 128 "
                                                        "bytes, not starting with '.')";
}

static const spw_opt retention_opts[] = {
    {.name = "ms", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.retention_ms), .size = 8, .def = -1, .min = 1,
     .max = INT64_MAX / 2, .must = "a positive integer", .help = "delete segments older than this (-1: never)"},
    {.name = "bytes", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.retention_bytes), .size = 8, .def = -1,
     .min = 1, .max = INT64_MAX / 2, .must = "a positive integer", .help = "keep about this much per partition (-1: no limit)"},
};

static const char *def_retention(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o;
    return spw_opts_parse(retention_opts, sizeof retention_opts / sizeof retention_opts[0], "retention", "stream",
                          v->p, v->n, NULL, obj, NULL, buf, cap)
               ? buf
               : NULL;
}

static const char *const rate_pers[] = {"tenant", "ip", NULL};
static const char *const rate_algos[] = {"token_bucket", "sliding_window", NULL};

static const spw_opt rate_opts[] = {
    {.name = "rate", .type = SPW_OPT_NUM, .off = offsetof(stream_def, c.rate), .dmin = 0.001, .dmax = 1e12,
     .must = "a positive number of events per second", .help = "events per second (required; 0: no limit)"},
    {.name = "burst", .type = SPW_OPT_NUM, .off = offsetof(stream_def, c.burst), .dmin = 1, .dmax = 1e12,
     .must = "a number >= 1", .help = "token_bucket: events at once (default: rate, at least 1)"},
    {.name = "per", .type = SPW_OPT_ENUM, .off = offsetof(stream_def, c.rate_per), .choices = rate_pers,
     .help = "one limit per tenant or per client IP"},
    {.name = "algorithm", .type = SPW_OPT_ENUM, .off = offsetof(stream_def, c.rate_algo), .choices = rate_algos,
     .help = "token_bucket or sliding_window (rate events in any 1 s)"},
};

static const char *def_rate(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o;
    spw_stream_config *c = &((stream_def *)obj)->c;
    if (spw_opts_parse(rate_opts, sizeof rate_opts / sizeof rate_opts[0], "rate_limit", "stream", v->p, v->n, NULL,
                       obj, NULL, buf, cap))
        return buf;
    if (c->rate <= 0)
        return "\"rate_limit\" needs \"rate\"";
    if (c->rate_algo == 1) {
        /* The window limit is rate events in any 1 s (admit/ratelimit.h). */
        if (c->burst > 0)
            return "\"rate_limit.burst\" is for \"token_bucket\"; a \"sliding_window\" allows \"rate\" events in any "
                   "1-second window";
        if (c->rate < 1 || c->rate > 4294967295.0 || c->rate != floor(c->rate))
            return "\"rate_limit.rate\" of a \"sliding_window\" must be a whole number of events per second from 1 "
                   "to 4294967295";
    } else if (c->burst <= 0) {
        c->burst = c->rate < 1 ? 1 : c->rate; /* a bucket must hold one event */
    }
    return NULL;
}

/* hot_keys.keys: an array of 1..SPW_HOT_KEYS_MAX distinct strings of
 * 1..SPW_HOT_KEY_BYTES bytes without control characters. */
static const char *def_hot_list(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o;
    spw_stream_config *c = &((stream_def *)obj)->c;
    const char *p = v->p + 1, *end = v->p + v->n - 1; /* inside the brackets */
    c->hot_nkeys = 0;
    for (;;) {
        p = spw_json_ws(p, end);
        if (p >= end)
            break;
        spw_json_span e = {0};
        const char *vend;
        spw_json_error je;
        if (spw_json_scan(p, end, NULL, 0, NULL, &vend, &je))
            return "\"hot_keys.keys\" must be an array of strings";
        e.p = spw_json_ws(p, vend);
        e.n = (size_t)(vend - e.p);
        if (e.n < 2 || e.p[0] != '"')
            return "\"hot_keys.keys\" must be an array of strings";
        if (c->hot_nkeys == SPW_HOT_KEYS_MAX) {
            snprintf(buf, cap, "\"hot_keys.keys\" lists at most %d keys (more hot keys: use \"above_per_s\")",
                     SPW_HOT_KEYS_MAX);
            return buf;
        }
        char *k = c->hot_keys[c->hot_nkeys];
        long n = spw_json_unescape(&e, k, SPW_HOT_KEY_BYTES);
        if (n < 1) {
            snprintf(buf, cap, "\"hot_keys.keys\" entries are keys of 1 to %d bytes", SPW_HOT_KEY_BYTES);
            return buf;
        }
        k[n] = 0;
        for (long j = 0; j < n; j++)
            if ((unsigned char)k[j] < 0x20 || k[j] == 0x7f)
                return "\"hot_keys.keys\" entries cannot hold control characters (no event key can)";
        for (uint32_t j = 0; j < c->hot_nkeys; j++)
            if (strcmp(c->hot_keys[j], k) == 0) {
                snprintf(buf, cap, "\"hot_keys.keys\" lists \"%s\" twice", k);
                return buf;
            }
        c->hot_nkeys++;
        p = spw_json_ws(vend, end);
        if (p < end && *p == ',')
            p++;
        else if (p < end)
            return "\"hot_keys.keys\" must be an array of strings";
    }
    return c->hot_nkeys ? NULL : "\"hot_keys.keys\" must list at least one key";
}

static const spw_opt hot_opts[] = {
    {.name = "split", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.hot_split), .size = 4, .min = 2,
     .max = SPW_HOT_SPLIT_MAX, .flags = SPW_OPT_REQUIRED, .must = "an integer from 2 to 16 (and at most the partitions)",
     .help = "k: a hot key's records go to k partitions (at most the partitions)"},
    {.name = "above_per_s", .type = SPW_OPT_NUM, .off = offsetof(stream_def, c.hot_above_per_s), .dmin = 0.001,
     .dmax = 1e12, .must = "a positive number of events per second",
     .help = "split a key once its events in one window pass this rate"},
    {.name = "window_ms", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.hot_window_ms), .size = 8, .def = 1000,
     .min = 10, .max = 3600000, .must = "an integer from 10 to 3600000", .help = "the window a rate is measured over"},
    {.name = "top", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.hot_top), .size = 4, .def = 5, .min = 1,
     .max = SPW_HOT_TOP_MAX, .must = "an integer from 1 to 16", .help = "hottest keys shown (metrics, describe)"},
    {.name = "keys", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_ARRAY, .parse = def_hot_list,
     .must = "an array of keys", .help = "keys split from the start"},
};

static const char *def_hot(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o;
    spw_stream_config *c = &((stream_def *)obj)->c;
    if (spw_opts_parse(hot_opts, sizeof hot_opts / sizeof hot_opts[0], "hot_keys", "stream", v->p, v->n, NULL, obj,
                       NULL, buf, cap))
        return buf;
    if (c->hot_above_per_s <= 0 && c->hot_nkeys == 0)
        return "\"hot_keys\" needs \"above_per_s\" (split keys above a rate) or \"keys\" (split these keys), or both";
    return NULL;
}

static const char *const formats[] = {"json", "bytes", NULL};
/* In the order of SPW_COMPRESS_* (log/format.h): the index is the code. */
static const char *const compressions[] = {"none", "lz4", "zstd", NULL};

static const spw_opt stream_opts[] = {
    {.name = "incarnation", .type = SPW_OPT_INT, .off = offsetof(stream_def, incarnation), .size = 8, .min = 1,
     .max = INT64_MAX, .parse = def_incarnation, .must = "a positive integer",
     .help = "stream.json only: which creation of the name this is"},
    {.name = "name", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .parse = def_name,
     .must = "the stream name in the path", .help = "the stream's name, as in the path"},
    {.name = "partitions", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.partitions), .size = 4, .def = 4,
     .min = 1, .max = SPW_STREAM_PARTITIONS_MAX, .must = "an integer from 1 to 1024", .help = "partition count"},
    {.name = "format", .type = SPW_OPT_ENUM, .off = offsetof(stream_def, c.format_bytes), .choices = formats,
     .help = "json: events are JSON; bytes: opaque values"},
    {.name = "key", .type = SPW_OPT_STR, .off = offsetof(stream_def, c.key), .size = 128, .parse = def_ptr,
     .flags = SPW_OPT_EMPTY_OK, .must = "a JSON pointer such as \"/device_id\" (at most 127 bytes)",
     .help = "JSON pointer to the partitioning key"},
    {.name = "timestamp", .type = SPW_OPT_STR, .off = offsetof(stream_def, c.timestamp), .size = 128,
     .parse = def_ptr, .flags = SPW_OPT_EMPTY_OK, .must = "a JSON pointer such as \"/ts\" (at most 127 bytes)",
     .help = "JSON pointer to the event time (ms since the epoch)"},
    {.name = "ack", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .def_str = "\"fsync\"", .parse = def_ack,
     .must = "one of \"none\", \"written\", \"fsync\", \"replicated\"", .help = "default durability"},
    {.name = "retention", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}", .parse = def_retention,
     .must = "an object {\"ms\":..,\"bytes\":..}", .help = "{ms, bytes}"},
    {.name = "dedupe_window_ms", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.dedupe_window_ms), .size = 8,
     .def = 86400000, .min = 0, .max = 30LL * 86400000,
     .must = "an integer from 0 to 2592000000 (30 days)", .help = "how long idempotency keys are remembered"},
    {.name = "priority", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.priority), .size = 4, .def = 1, .min = 0,
     .max = 3, .must = "an integer from 0 (most important) to 3", .help = "shedding priority"},
    {.name = "coalesce", .type = SPW_OPT_BOOL, .off = offsetof(stream_def, c.coalesce),
     .help = "coalesce by key under pressure"},
    {.name = "versioned", .type = SPW_OPT_BOOL, .off = offsetof(stream_def, c.versioned), .help = "versioned keys"},
    {.name = "max_event_bytes", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.max_event_bytes), .size = 4,
     .def = 1 << 20, .min = 1, .max = 64 << 20, .must = "an integer from 1 to 67108864",
     .help = "largest event accepted"},
    {.name = "compression", .type = SPW_OPT_ENUM, .off = offsetof(stream_def, c.compression),
     .choices = compressions,
     .help = "how new batches are written: none, lz4 or zstd (readers decompress; changing it needs a new stream)"},
    {.name = "rate_limit", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .parse = def_rate,
     .must = "an object {\"rate\":..,\"burst\":..,\"per\":\"tenant\"|\"ip\",\"algorithm\":\"token_bucket\"|"
             "\"sliding_window\"}",
     .help = "{rate, burst, per, algorithm}"},
    {.name = "replicate_to", .type = SPW_OPT_STR, .off = offsetof(stream_def, c.replicate_to),
     .size = SPW_STREAM_NAME_MAX + 1, .parse = def_replicate_to, .flags = SPW_OPT_EMPTY_OK,
     .must = "a sink name", .help = "ack=replicated: the sink (postgres or kafka) whose commit acknowledges"},
    {.name = "replication_timeout_ms", .type = SPW_OPT_INT, .off = offsetof(stream_def, c.replication_timeout_ms),
     .size = 8, .def = 5000, .min = 1, .max = 3600000, .must = "an integer from 1 to 3600000",
     .help = "ack=replicated: answered 504 past this (durable here, delivered later)"},
    {.name = "hot_keys", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .parse = def_hot,
     .must = "an object {\"split\":k,\"above_per_s\":N,\"keys\":[..],\"window_ms\":..,\"top\":..}",
     .help = "{split, above_per_s, keys, window_ms, top}: spread hot keys over k partitions"},
};

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, errcap, __VA_ARGS__);                                                                            \
        return -1;                                                                                                     \
    } while (0)

static int parse(spw_stream_config *c, uint64_t *incarnation, const char *name, const char *body, size_t len,
                 char *err, size_t errcap)
{
    if (incarnation)
        *incarnation = 0;
    size_t nl = strlen(name);
    if (!spw_stream_name_ok(name, nl)) {
        memset(c, 0, sizeof *c);
        FAIL("stream names are " SPW_NAME_RULE);
    }
    stream_def d;
    memset(&d, 0, sizeof d);
    d.stored = incarnation != NULL;
    d.name = name;
    memcpy(d.c.name, name, nl + 1);
    if (len == 0 || spw_json_ws(body, body + len) == body + len) {
        body = "{}"; /* no body, or an empty one: defaults */
        len = 2;
    }
    int r = spw_opts_parse(stream_opts, sizeof stream_opts / sizeof stream_opts[0], NULL, "stream", body, len, NULL,
                           &d, NULL, err, errcap);
    *c = d.c;
    if (r)
        return -1;
    if (incarnation)
        *incarnation = (uint64_t)d.incarnation;
    if (c->format_bytes && (c->key[0] || c->timestamp[0]))
        FAIL("\"key\" and \"timestamp\" pointers need \"format\": \"json\"");
    if (c->ack == SPW_ACK_REPLICATED && !c->replicate_to[0])
        FAIL("\"ack\": \"replicated\" needs \"replicate_to\" (the sink whose commit acknowledges)");
    if (c->hot_split && c->hot_split > c->partitions)
        FAIL("\"hot_keys.split\" (%u) is more than the stream's partitions (%u): a key's sub-keys each go to a "
             "partition of their own",
             c->hot_split, c->partitions);
    if (c->hot_split && c->versioned)
        FAIL("\"hot_keys\" cannot be set on a versioned stream: a key's versions are ordered and checked in its one "
             "partition, and a split key's records would be spread over several");
    return 0;
}

void spw_stream_help(spw_buf *out)
{
    /* "incarnation" is the server's own field: not listed */
    spw_opts_help(stream_opts + 1, sizeof stream_opts / sizeof stream_opts[0] - 1, NULL, out);
    spw_opts_help(retention_opts, sizeof retention_opts / sizeof retention_opts[0], "retention", out);
    spw_opts_help(rate_opts, sizeof rate_opts / sizeof rate_opts[0], "rate_limit", out);
    spw_opts_help(hot_opts, sizeof hot_opts / sizeof hot_opts[0], "hot_keys", out);
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
    if (c->versioned && c->coalesce) {
        snprintf(err, errcap, "\"coalesce\" cannot be true on a versioned stream: coalescing replaces events, and "
                              "a key's versions are never replaced");
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
    if (!r && c->compression)
        r = appendf(b, ",\"compression\":\"%s\"", compressions[c->compression]);
    if (!r && c->rate > 0 && c->rate_algo == 0)
        r = appendf(b, ",\"rate_limit\":{\"rate\":%.17g,\"burst\":%.17g,\"per\":\"%s\",\"algorithm\":\"token_bucket\"}",
                    c->rate, c->burst, c->rate_per ? "ip" : "tenant");
    else if (!r && c->rate > 0)
        r = appendf(b, ",\"rate_limit\":{\"rate\":%.17g,\"per\":\"%s\",\"algorithm\":\"sliding_window\"}", c->rate,
                    c->rate_per ? "ip" : "tenant");
    if (!r && c->replicate_to[0])
        r = appendf(b, ",\"replicate_to\":\"%s\",\"replication_timeout_ms\":%lld", c->replicate_to,
                    (long long)c->replication_timeout_ms);
    if (!r && c->hot_split) {
        r = appendf(b, ",\"hot_keys\":{\"split\":%u", c->hot_split);
        if (!r && c->hot_above_per_s > 0)
            r = appendf(b, ",\"above_per_s\":%.17g", c->hot_above_per_s);
        r = r ? r : appendf(b, ",\"window_ms\":%lld,\"top\":%u", (long long)c->hot_window_ms, c->hot_top);
        if (!r && c->hot_nkeys) {
            r = appendf(b, ",\"keys\":[");
            for (uint32_t i = 0; !r && i < c->hot_nkeys; i++) {
                r = i ? appendf(b, ",") : 0;
                r = r ? r : spw_json_put_str(b, c->hot_keys[i], strlen(c->hot_keys[i]));
            }
            r = r ? r : appendf(b, "]");
        }
        r = r ? r : appendf(b, "}");
    }
    return r ? r : appendf(b, "}");
}

static int hot_equal(const spw_stream_config *a, const spw_stream_config *b)
{
    if (a->hot_split != b->hot_split || a->hot_above_per_s != b->hot_above_per_s ||
        a->hot_window_ms != b->hot_window_ms || a->hot_top != b->hot_top || a->hot_nkeys != b->hot_nkeys)
        return 0;
    for (uint32_t i = 0; i < a->hot_nkeys; i++)
        if (strcmp(a->hot_keys[i], b->hot_keys[i]) != 0)
            return 0;
    return 1;
}

int spw_stream_config_equal(const spw_stream_config *a, const spw_stream_config *b)
{
    return strcmp(a->name, b->name) == 0 && a->partitions == b->partitions && a->format_bytes == b->format_bytes &&
           strcmp(a->key, b->key) == 0 && strcmp(a->timestamp, b->timestamp) == 0 && a->ack == b->ack &&
           a->retention_ms == b->retention_ms && a->retention_bytes == b->retention_bytes &&
           a->dedupe_window_ms == b->dedupe_window_ms && a->coalesce == b->coalesce && a->versioned == b->versioned &&
           a->max_event_bytes == b->max_event_bytes && a->rate == b->rate && a->burst == b->burst &&
           a->rate_per == b->rate_per && a->rate_algo == b->rate_algo && a->priority == b->priority &&
           a->compression == b->compression && strcmp(a->replicate_to, b->replicate_to) == 0 &&
           a->replication_timeout_ms == b->replication_timeout_ms && hot_equal(a, b);
}
