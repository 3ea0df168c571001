/*
 * Sink definitions: the JSON body of PUT /v1/sinks/{name} and of a sink's
 * stored sink.json, parsed through option tables (core/opts.h; the kind's
 * own options through the kind's table), and written back in one
 * canonical form (spw__sink_def_json), so definitions that mean the same
 * compare equal (docs/api.md "PUT /v1/sinks/{name}"). Nothing here touches
 * a running sink.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/id.h"
#include "core/json.h"
#include "core/opts.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "log/format.h"
#include "os/os.h"
#include "sink/sink_int.h"

/* ---- definitions ---- */

/*
 * A definition's fields, and batch's and retry's, in option tables
 * (core/opts.h); each callback runs after the fields above it in its
 * table, so "batch" sees "kind". The stored and compared form is def_json
 * of the parsed definition, with "options" canonicalized by the kind's
 * table: definitions that mean the same are equal (docs/api.md "PUT
 * /v1/sinks/{name}").
 */
static const spw_opt batch_opts[] = {
    {.name = "max_events", .type = SPW_OPT_INT, .off = offsetof(sink_def, batch.max_events), .size = 4,
     .def = 5000, .min = 1, .max = 1000000, .help = "records in one write at most (the kind may choose another default)"},
    {.name = "max_bytes", .type = SPW_OPT_INT, .off = offsetof(sink_def, batch.max_bytes), .size = 8,
     .def = 4 << 20, .min = 1, .max = 256 << 20, .help = "keys and values in one write at most"},
    {.name = "max_wait_ms", .type = SPW_OPT_INT, .off = offsetof(sink_def, batch.max_wait_ms), .size = 4, .def = 200,
     .min = 0, .max = 3600000, .help = "how long a partial batch waits"},
};

static const spw_opt retry_opts[] = {
    {.name = "initial_ms", .type = SPW_OPT_INT, .off = offsetof(sink_def, retry_initial_ms), .size = 8, .def = 100,
     .min = 1, .max = 3600000, .help = "the first retry's delay"},
    {.name = "max_ms", .type = SPW_OPT_INT, .off = offsetof(sink_def, retry_max_ms), .size = 8, .def = 30000,
     .min = 1, .max = 3600000, .help = "the longest delay between retries"},
};

static int has_member(const spw_json_span *obj, const char *name)
{
    spw_json_iter it;
    spw_json_span k, v;
    spw_json_iter_init(&it, obj);
    while (spw_json_iter_next(&it, &k, &v))
        if (spw_json_str_eq(&k, name))
            return 1;
    return 0;
}

static const char *sub_table(sink_def *d, const spw_json_span *v, const spw_opt *t, size_t n, const char *where,
                             char *buf, size_t cap)
{
    return spw_opts_parse(t, n, where, "sink", v->p, v->n, NULL, d, NULL, buf, cap) == 0 ? NULL : buf;
}

static const char *def_name(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    return spw_json_str_eq(v, ((sink_def *)obj)->name) ? NULL : "\"name\" must be the name in the path";
}

static const char *def_stream(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    const char *s = ((sink_def *)obj)->stream;
    return spw_stream_name_ok(s, strlen(s)) ? NULL : "\"stream\" must be a stream name";
}

static const char *def_dlq(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    const char *s = ((sink_def *)obj)->dlq;
    return !s[0] || spw_stream_name_ok(s, strlen(s)) ? NULL : "\"dlq\" must be a stream name or null";
}

static const char *def_kind(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    sink_def *d = obj;
    char kn[32];
    long n = spw_json_unescape(v, kn, sizeof kn - 1);
    if (n < 0)
        return "\"kind\" must be a sink kind's name";
    /* unknown, or not built in (kinds.c): def_parse answers with its code */
    d->kind_err = spw_sink_kind_lookup(kn, (size_t)n, &d->kind, buf, cap);
    return d->kind_err < 0 ? buf : NULL;
}

static const char *def_batch(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    sink_def *d = obj;
    const char *bad = sub_table(d, v, batch_opts, sizeof batch_opts / sizeof batch_opts[0], "batch", buf, cap);
    if (!bad && d->kind->default_max_events && !has_member(v, "max_events"))
        d->batch.max_events = d->kind->default_max_events;
    if (!bad && d->kind->default_max_bytes && !has_member(v, "max_bytes"))
        d->batch.max_bytes = d->kind->default_max_bytes;
    return bad;
}

static const char *def_retry(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    return sub_table(obj, v, retry_opts, sizeof retry_opts / sizeof retry_opts[0], "retry", buf, cap);
}

/* "options": canonicalized by the kind's table (its values checked by it;
 * the kind's open checks the rest). */
static const char *def_options(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    sink_def *d = obj;
    if (v->n > OPTIONS_MAX)
        return "\"options\" must be an object of at most 65536 bytes";
    char what[48];
    snprintf(what, sizeof what, "%s sink", d->kind->name);
    spw_buf c = SPW_BUF_INIT;
    if (spw_opts_parse(d->kind->opts, d->kind->nopts, "options", what, v->p, v->n, d->stream, NULL, &c, buf, cap) <
        0) {
        spw_buf_fini(&c);
        return buf;
    }
    spw_free(d->options);
    d->options = spw_xmalloc(c.len + 1);
    memcpy(d->options, c.p, c.len);
    d->options[c.len] = 0;
    d->options_len = c.len;
    spw_buf_fini(&c);
    return NULL;
}

static const spw_opt def_opts[] = {
    {.name = "name", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .parse = def_name,
     .must = "the name in the path", .help = "the sink's name, as in the path"},
    {.name = "stream", .type = SPW_OPT_STR, .off = offsetof(sink_def, stream), .size = sizeof ((sink_def *)0)->stream,
     .parse = def_stream, .flags = SPW_OPT_REQUIRED, .must = "a stream name", .help = "the stream delivered"},
    {.name = "kind", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .parse = def_kind, .flags = SPW_OPT_REQUIRED,
     .must = "a sink kind's name", .help = "the kind: forward, postgres or kafka (those built in)"},
    {.name = "batch", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}", .parse = def_batch,
     .must = "an object", .help = "{max_events, max_bytes, max_wait_ms}"},
    {.name = "retry", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}", .parse = def_retry,
     .must = "an object", .help = "{initial_ms, max_ms}"},
    {.name = "dlq", .type = SPW_OPT_STR, .off = offsetof(sink_def, dlq), .size = sizeof ((sink_def *)0)->dlq,
     .parse = def_dlq, .flags = SPW_OPT_NULLABLE, .must = "a stream name or null",
     .help = "the dead-letter stream, or null"},
    {.name = "options", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}", .parse = def_options,
     .must = "an object", .help = "the kind's options"},
};

void spw_sinks_help(spw_buf *out)
{
    spw_opts_help(def_opts, sizeof def_opts / sizeof def_opts[0], NULL, out);
    spw_opts_help(batch_opts, sizeof batch_opts / sizeof batch_opts[0], "batch", out);
    spw_opts_help(retry_opts, sizeof retry_opts / sizeof retry_opts[0], "retry", out);
    const spw_sink_kind *k;
    for (size_t i = 0; (k = spw_sink_kind_at(i)) != NULL; i++) {
        spw_buf_printf(out, "\n  kind \"%s\" options:\n", k->name);
        spw_opts_help(k->opts, k->nopts, "options", out);
    }
}

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, cap, __VA_ARGS__);                                                                               \
        return SPW_EINVAL;                                                                                             \
    } while (0)

/* Parses a PUT body into d (options canonicalized and copied: free with spw__sink_def_fini). */
int spw__sink_def_parse(sink_def *d, const char *name, const char *body, size_t len, char *err, size_t cap)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    if (len > DEF_MAX)
        FAIL("the definition is over %d bytes", DEF_MAX);
    if (spw_opts_parse(def_opts, sizeof def_opts / sizeof def_opts[0], NULL, "sink", body, len, NULL, d, NULL, err,
                       cap) < 0) {
        spw_free(d->options);
        d->options = NULL;
        return d->kind_err < 0 ? d->kind_err : SPW_EINVAL; /* SPW_SINK_ENOTBUILT: its own answer */
    }
    if (d->retry_max_ms < d->retry_initial_ms) {
        spw_free(d->options);
        d->options = NULL;
        FAIL("retry.max_ms must be at least retry.initial_ms");
    }
    if (strcmp(d->dlq, d->stream) == 0) {
        spw_free(d->options);
        d->options = NULL;
        FAIL("\"dlq\" must not be the sink's own stream");
    }
    return 0;
}

void spw__sink_def_fini(sink_def *d)
{
    spw_free(d->options);
    d->options = NULL;
}

void spw__sink_def_json(const sink_def *d, spw_buf *b)
{
    spw_buf_xprintf(b, "{\"name\":");
    spw_json_xput_str(b, d->name, strlen(d->name));
    spw_buf_xprintf(b, ",\"stream\":");
    spw_json_xput_str(b, d->stream, strlen(d->stream));
    spw_buf_xprintf(b, ",\"kind\":\"%s\",\"batch\":{\"max_events\":%" PRIu32 ",\"max_bytes\":%" PRIu64
          ",\"max_wait_ms\":%" PRIu32 "},\"retry\":{\"initial_ms\":%" PRIu64 ",\"max_ms\":%" PRIu64 "},\"dlq\":",
       d->kind->name, d->batch.max_events, d->batch.max_bytes, d->batch.max_wait_ms, d->retry_initial_ms,
       d->retry_max_ms);
    if (d->dlq[0])
        spw_json_xput_str(b, d->dlq, strlen(d->dlq));
    else
        spw_buf_xprintf(b, "null");
    spw_buf_xprintf(b, ",\"options\":");
    spw_buf_put(b, d->options, d->options_len);
    spw_buf_xprintf(b, "}");
}

int spw_sinks_def_streams(const char *name, const char *body, size_t len, char *stream, char *dlq, char *err,
                          size_t cap)
{
    sink_def d;
    int r = spw__sink_def_parse(&d, name, body, len, err, cap);
    if (r < 0)
        return r;
    memcpy(stream, d.stream, sizeof d.stream);
    memcpy(dlq, d.dlq, sizeof d.dlq);
    spw__sink_def_fini(&d);
    return 0;
}

/* ---- secrets (docs/operations.md "Security") ---- */

/* Does an option's member name say it holds a secret? (Case-insensitive
 * substrings: Kafka's sasl.password, ssl.key.password,
 * sasl.oauthbearer.client.secret, sasl.jaas.config, ssl.key.pem; the
 * forward sink's token.) */
static int secret_name(const char *p, size_t n)
{
    static const char *const words[] = {"password", "secret", "token", "credential", "jaas", "oauthbearer.config",
                                        "key.pem", "private", "passwd"};
    char low[256];
    if (n >= sizeof low)
        return 1; /* no option name is this long: be safe */
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    low[n] = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(low, words[i]))
            return 1;
    return 0;
}

static int ci_prefix(const char *p, const char *end, const char *w)
{
    for (; *w; p++, w++)
        if (p >= end || (*p >= 'A' && *p <= 'Z' ? *p + 32 : *p) != *w)
            return 0;
    return 1;
}

#define REDACTED "[redacted]"

/* A string's escaped JSON text [p, end), without its quotes: a libpq
 * connection string's password (password=VALUE, password='VALUE') or a
 * URI's (scheme://user:PASSWORD@host, ?password=VALUE) replaced. */
static void redact_text(const char *p, const char *end, spw_buf *out)
{
    int uri = 0;
    for (const char *q = p; q + 3 <= end; q++)
        if (q[0] == ':' && q[1] == '/' && q[2] == '/')
            uri = 1;
    const char *q = p;
    if (uri) { /* user:password@ in the authority */
        const char *a = p;
        while (a + 3 <= end && !(a[0] == ':' && a[1] == '/' && a[2] == '/'))
            a++;
        a += 3;
        const char *at = a, *colon = NULL;
        while (at < end && *at != '@' && *at != '/') {
            if (*at == ':' && !colon)
                colon = at;
            at++;
        }
        if (at < end && *at == '@' && colon) {
            spw_buf_put(out, p, (size_t)(colon + 1 - p));
            spw_buf_put(out, REDACTED, strlen(REDACTED));
            q = at;
        }
    }
    while (q < end) {
        const char *w = q;
        int hit = 0;
        if ((w == p || w[-1] == ' ' || w[-1] == '?' || w[-1] == '&' || w[-1] == '\t') &&
            ci_prefix(w, end, "password")) {
            const char *e = w + 8;
            while (e < end && *e == ' ')
                e++;
            if (e < end && *e == '=') {
                e++;
                while (e < end && *e == ' ')
                    e++;
                spw_buf_put(out, q, (size_t)(e - q));
                spw_buf_put(out, REDACTED, strlen(REDACTED));
                if (!uri && e < end && *e == '\'') { /* quoted: to the closing quote */
                    e++;
                    while (e < end && *e != '\'') {
                        if (*e == '\\' && e + 3 < end && e[1] == '\\') /* libpq's \' or \\ (JSON-escaped) */
                            e += 3;
                        else
                            e++;
                    }
                    if (e < end)
                        e++;
                } else {
                    while (e < end && *e != ' ' && !(uri && (*e == '&' || *e == '#')))
                        e++;
                }
                if (e > end)
                    e = end;
                q = e;
                hit = 1;
            }
        }
        if (!hit) {
            spw_buf_put(out, q, 1);
            q++;
        }
    }
}

/* Copies the canonical (compact, well-formed) JSON text json[0..n) to out
 * with every secret replaced by "[redacted]": string values under a member
 * whose name says secret (secret_name; nested values inherit it), and the
 * passwords inside other strings (redact_text). */
void spw_sinks_redact(const char *json, size_t n, spw_buf *out)
{
    enum { DEPTH = 64 };
    int sec[DEPTH + 1] = {0};
    int d = 0;
    const char *p = json, *end = json + n;
    while (p < end) {
        char c = *p;
        if (c == '"') {
            const char *s = ++p;
            while (p < end && *p != '"')
                p += *p == '\\' && p + 1 < end ? 2 : 1;
            const char *e = p;
            if (p < end)
                p++;
            if (p < end && *p == ':') { /* a member name */
                sec[d] = (d > 0 && sec[d - 1]) || secret_name(s, (size_t)(e - s)) || d >= DEPTH;
                spw_buf_put(out, s - 1, (size_t)(p - s + 1));
                continue;
            }
            spw_buf_put(out, "\"", 1);
            if ((sec[d] || d >= DEPTH) && e > s) /* "" stays: nothing to hide */
                spw_buf_put(out, REDACTED, strlen(REDACTED));
            else
                redact_text(s, e, out);
            spw_buf_put(out, "\"", 1);
            continue;
        }
        if (c == '{' || c == '[') {
            if (d < DEPTH) {
                sec[d + 1] = sec[d];
                d++;
            }
        } else if ((c == '}' || c == ']') && d > 0) {
            d--;
        }
        /* a ',' changes nothing: in an object the next member name sets
         * sec[d] again, in an array the elements keep the array's */
        spw_buf_put(out, p, 1);
        p++;
    }
}
