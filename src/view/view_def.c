/*
 * View definitions: the JSON body of PUT /v1/views/{name} and of a view's
 * stored view.json, parsed through an option table (core/opts.h) and
 * written back in one canonical form (spw__view_def_json: every field of
 * the kind written out, durations in their largest exact unit), so that
 * definitions meaning the same compare equal as text, as sinks' do
 * (docs/api.md "PUT /v1/views/{name}"). Fields a kind does not use are
 * refused, not ignored.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/hostport.h"
#include "core/json.h"
#include "core/opts.h"
#include "view/view_int.h"

static const char *const kind_names[] = {"latest", "aggregate", "sum", NULL};
static const char *const time_names[] = {"event", "arrival", NULL};
static const char *const order_names[] = {"offset", "ts", NULL};

typedef struct def_parse {
    view_def d;
    int has_windows, has_grace, has_time, has_order, has_field, has_group, has_forward;
    char fwd_address[300];
} def_parse;

int spw__view_duration(const char *s, size_t n, int64_t *ms)
{
    size_t i = 0;
    int64_t v = 0;
    if (n == 0 || s[0] < '0' || s[0] > '9')
        return -1;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (s[i++] - '0');
    }
    const char *u = s + i;
    size_t ul = n - i;
    int64_t mul;
    if (ul == 2 && memcmp(u, "ms", 2) == 0)
        mul = 1;
    else if (ul == 1 && *u == 's')
        mul = 1000;
    else if (ul == 1 && *u == 'm')
        mul = 60000;
    else if (ul == 1 && *u == 'h')
        mul = 3600000;
    else if (ul == 1 && *u == 'd')
        mul = 86400000;
    else
        return -1;
    if (v > VIEW_TIME_MAX / mul) /* keeps every bucket arithmetic far from overflow */
        return -1;
    *ms = v * mul;
    return 0;
}

void spw__view_put_duration(spw_buf *b, int64_t ms)
{
    static const struct {
        int64_t mul;
        const char *u;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms != 0 && ms % units[i].mul == 0) {
            spw_buf_xprintf(b, "\"%" PRId64 "%s\"", ms / units[i].mul, units[i].u);
            return;
        }
    spw_buf_xprintf(b, ms ? "\"%" PRId64 "ms\"" : "\"%" PRId64 "s\"", ms);
}

int spw__view_window_index(const view_def *d, const char *text)
{
    int64_t ms;
    if (spw__view_duration(text, strlen(text), &ms) < 0)
        return -1;
    for (uint32_t i = 0; i < d->nwin; i++)
        if (d->win_ms[i] == ms)
            return (int)i;
    return -1;
}

static const char *p_name(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    return spw_json_str_eq(v, ((def_parse *)obj)->d.name) ? NULL : "\"name\" must be the name in the path";
}

static const char *p_stream(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    const char *s = ((def_parse *)obj)->d.stream;
    return spw_stream_name_ok(s, strlen(s)) ? NULL : "\"stream\" must be a stream name";
}

static const char *p_pointer(const char *s, const char *field)
{
    spw_json_ptr p;
    if (s[0] != '/' || spw_json_ptr_compile(&p, s) < 0)
        return field;
    return NULL;
}

static const char *p_field(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    def_parse *p = obj;
    p->has_field = 1;
    return p_pointer(p->d.field, "\"field\" must be a JSON pointer (\"/amount\")");
}

static const char *p_group(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    def_parse *p = obj;
    p->has_group = 1;
    if (strcmp(p->d.group_by, "$key") == 0)
        return NULL;
    return p_pointer(p->d.group_by, "\"group_by\" must be \"$key\" or a JSON pointer (\"/page\")");
}

static const char *p_dur(const spw_json_span *v, int64_t *ms, const char *what, char *buf, size_t cap)
{
    char t[32];
    long n = spw_json_unescape(v, t, sizeof t);
    if (n < 0 || spw__view_duration(t, (size_t)n, ms) < 0) {
        snprintf(buf, cap, "%s must be a duration such as \"500ms\", \"10s\", \"1m\", \"1h\" or \"1d\"", what);
        return buf;
    }
    return NULL;
}

static const char *p_windows(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o;
    def_parse *p = obj;
    p->has_windows = 1;
    /* walk the array's elements by scanning each in turn */
    const char *q = spw_json_ws(v->p + 1, v->p + v->n), *end = v->p + v->n;
    p->d.nwin = 0;
    while (q < end && *q != ']') {
        spw_json_span el;
        const char *ve;
        spw_json_error je;
        if (spw_json_scan(q, end, NULL, 0, NULL, &ve, &je) < 0)
            return "\"windows\" must be an array of durations";
        el.p = spw_json_ws(q, ve);
        el.n = (size_t)(ve - el.p);
        el.type = *el.p == '"' ? SPW_JSON_STRING : SPW_JSON_NONE;
        if (el.type != SPW_JSON_STRING)
            return "\"windows\" must be an array of duration strings (\"10s\", \"1m\", \"1h\")";
        if (p->d.nwin == SPW_VIEW_MAX_WINDOWS)
            return "\"windows\" may hold at most 6 windows";
        int64_t ms;
        const char *bad = p_dur(&el, &ms, "each window", buf, cap);
        if (bad)
            return bad;
        if (ms <= 0)
            return "each window must be longer than 0";
        if (p->d.nwin && (ms <= p->d.win_ms[p->d.nwin - 1] || ms % p->d.win_ms[p->d.nwin - 1] != 0))
            return "each window must be a multiple of the one before, and longer (\"10s\", \"1m\", \"1h\")";
        p->d.win_ms[p->d.nwin++] = ms;
        q = spw_json_ws(ve, end);
        if (q < end && *q == ',')
            q = spw_json_ws(q + 1, end);
    }
    if (p->d.nwin == 0)
        return "\"windows\" must name at least one window";
    return NULL;
}

static const char *p_grace(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o;
    def_parse *p = obj;
    p->has_grace = 1;
    return p_dur(v, &p->d.grace_ms, "\"grace\"", buf, cap);
}

static const char *p_time(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    ((def_parse *)obj)->has_time = 1;
    return NULL;
}

static const char *p_order(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    ((def_parse *)obj)->has_order = 1;
    return NULL;
}

static const char *p_fstream(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o, (void)buf, (void)cap;
    const char *s = ((def_parse *)obj)->d.fwd_stream;
    return spw_stream_name_ok(s, strlen(s)) ? NULL : "\"forward.stream\" must be a stream name";
}

static const spw_opt forward_opts[] = {
    {.name = "address", .type = SPW_OPT_STR, .off = offsetof(def_parse, fwd_address),
     .size = sizeof ((def_parse *)0)->fwd_address, .flags = SPW_OPT_REQUIRED, .must = "\"HOST:PORT\"",
     .help = "the other node's HTTP address"},
    {.name = "stream", .type = SPW_OPT_STR, .off = offsetof(def_parse, d.fwd_stream),
     .size = sizeof ((view_def *)0)->fwd_stream, .parse = p_fstream, .flags = SPW_OPT_REQUIRED,
     .must = "a stream name", .help = "the stream there that receives the partial aggregates"},
    {.name = "token", .type = SPW_OPT_STR, .off = offsetof(def_parse, d.fwd_token),
     .size = sizeof ((view_def *)0)->fwd_token, .flags = SPW_OPT_NULLABLE, .must = "a string",
     .help = "a bearer token with produce on that stream, when the other node has tokens"},
};

static const char *p_forward(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o;
    def_parse *p = obj;
    p->has_forward = 1;
    if (spw_opts_parse(forward_opts, sizeof forward_opts / sizeof forward_opts[0], "forward", "view", v->p, v->n, NULL,
                       p, NULL, buf, cap) < 0)
        return buf;
    uint16_t port;
    int v6 = 0;
    /* "[IPV6]:PORT" too: the host is kept without its brackets (what
     * getaddrinfo takes), the address as written back with them */
    if (spw_hostport_parse(p->fwd_address, p->d.fwd_host, sizeof p->d.fwd_host, &port, 0, &v6) < 0)
        return "\"forward.address\" must be HOST:PORT or [IPV6]:PORT";
    snprintf(p->d.fwd_port, sizeof p->d.fwd_port, "%u", port);
    snprintf(p->d.fwd_addr, sizeof p->d.fwd_addr, v6 ? "[%s]:%u" : "%s:%u", p->d.fwd_host, port);
    for (const char *t = p->d.fwd_token; *t; t++)
        if ((unsigned char)*t <= ' ' || *t == 0x7f)
            return "\"forward.token\" must not hold spaces or control characters";
    return NULL;
}

#define D(f) offsetof(def_parse, d.f)
static const spw_opt def_opts[] = {
    {.name = "name", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .parse = p_name,
     .must = "the name in the path", .help = "the view's name, as in the path"},
    {.name = "stream", .type = SPW_OPT_STR, .off = D(stream), .size = sizeof ((view_def *)0)->stream,
     .parse = p_stream, .flags = SPW_OPT_REQUIRED, .must = "a stream name", .help = "the stream the view is kept from"},
    {.name = "kind", .type = SPW_OPT_ENUM, .off = D(kind), .choices = kind_names, .flags = SPW_OPT_REQUIRED,
     .help = "latest (each key's newest record), aggregate (count/sum/min/max per window) or sum (running total)"},
    {.name = "field", .type = SPW_OPT_STR, .off = D(field), .size = sizeof ((view_def *)0)->field, .parse = p_field,
     .flags = SPW_OPT_EMPTY_OK, .must = "a JSON pointer",
     .help = "aggregate, sum: JSON pointer to the number counted (required)"},
    {.name = "group_by", .type = SPW_OPT_STR, .off = D(group_by), .size = sizeof ((view_def *)0)->group_by,
     .def_str = "$key", .parse = p_group, .must = "\"$key\" or a JSON pointer",
     .help = "what a view key is: the record's key ($key) or a JSON pointer into its value"},
    {.name = "windows", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_ARRAY, .parse = p_windows,
     .must = "an array of durations", .help = "aggregate: window sizes, each a multiple of the one before (required)"},
    {.name = "time", .type = SPW_OPT_ENUM, .off = D(time), .choices = time_names, .parse = p_time,
     .help = "aggregate: event (the record's ts) or arrival (when the server took it)"},
    {.name = "grace", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_STRING, .parse = p_grace, .must = "a duration",
     .help = "aggregate: how long after a window ends its late records still count (default 0s)"},
    {.name = "order_by", .type = SPW_OPT_ENUM, .off = D(order_by), .choices = order_names, .parse = p_order,
     .help = "latest: which record is the latest, by log order (offset) or by event time (ts)"},
    {.name = "forward", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .parse = p_forward, .must = "an object",
     .help = "aggregate: {address, stream, token}: send each final bucket of the smallest window to a merge view's "
             "stream on another node, exactly once"},
    {.name = "merge", .type = SPW_OPT_BOOL, .off = D(merge),
     .help = "aggregate: each record is a partial aggregate {start, count, sum, min, max} to merge, not a value"},
};
#undef D

void spw_views_help(spw_buf *out) { spw_opts_help(def_opts, sizeof def_opts / sizeof def_opts[0], NULL, out); }

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, cap, __VA_ARGS__);                                                                               \
        return SPW_EINVAL;                                                                                             \
    } while (0)

int spw__view_def_parse(view_def *out, const char *name, const char *body, size_t len, char *err, size_t cap)
{
    def_parse p;
    memset(&p, 0, sizeof p);
    snprintf(p.d.name, sizeof p.d.name, "%s", name);
    if (len > VIEW_DEF_MAX)
        FAIL("the definition is over %d bytes", VIEW_DEF_MAX);
    if (spw_opts_parse(def_opts, sizeof def_opts / sizeof def_opts[0], NULL, "view", body, len, NULL, &p, NULL, err,
                       cap) < 0)
        return SPW_EINVAL;
    view_def *d = &p.d;
    const char *kn = kind_names[d->kind];
    if (p.has_forward && d->kind != VK_AGGREGATE)
        FAIL("\"forward\" is for aggregate views, not %s", kn);
    if (d->merge && d->kind != VK_AGGREGATE)
        FAIL("\"merge\" is for aggregate views, not %s", kn);
    if (d->merge && (p.has_field || p.has_time))
        FAIL("merge views take no \"field\" or \"time\": each record carries start, count, sum, min and max");
    if (d->kind == VK_LATEST) {
        if (p.has_field && d->field[0])
            FAIL("\"field\" is for aggregate and sum views, not latest");
    } else if (!d->field[0] && !d->merge) {
        FAIL("%s views need \"field\" (a JSON pointer to the number, \"/amount\")", kn);
    }
    if (d->kind != VK_AGGREGATE && (p.has_windows || p.has_grace || p.has_time))
        FAIL("\"windows\", \"grace\" and \"time\" are for aggregate views, not %s", kn);
    if (d->kind == VK_AGGREGATE && !p.has_windows)
        FAIL("aggregate views need \"windows\" ([\"10s\",\"1m\",\"1h\"])");
    if (d->kind != VK_LATEST && p.has_order)
        FAIL("\"order_by\" is for latest views, not %s", kn);
    *out = p.d;
    spw__view_def_compile(out);
    return 0;
}

void spw__view_def_compile(view_def *d)
{
    d->by_key = strcmp(d->group_by, "$key") == 0;
    d->page_level = 0;
    for (uint32_t l = 1; d->kind == VK_AGGREGATE && l < d->nwin; l++)
        if (d->win_ms[l] / d->win_ms[0] <= VIEW_PAGE_SPAN)
            d->page_level = (int)l;
    d->nptrs = 0;
    d->ptr_group = d->ptr_field = -1;
    if (!d->by_key) {
        spw_json_ptr_compile(&d->ptrs[d->nptrs], d->group_by);
        d->ptr_group = d->nptrs++;
    }
    if (d->field[0]) {
        spw_json_ptr_compile(&d->ptrs[d->nptrs], d->field);
        d->ptr_field = d->nptrs++;
    }
}

void spw__view_def_json(const view_def *d, spw_buf *b)
{
    spw_buf_xprintf(b, "{\"name\":");
    spw_json_xput_str(b, d->name, strlen(d->name));
    spw_buf_xprintf(b, ",\"stream\":");
    spw_json_xput_str(b, d->stream, strlen(d->stream));
    spw_buf_xprintf(b, ",\"kind\":\"%s\"", kind_names[d->kind]);
    if (d->kind != VK_LATEST && !d->merge) {
        spw_buf_xprintf(b, ",\"field\":");
        spw_json_xput_str(b, d->field, strlen(d->field));
    }
    spw_buf_xprintf(b, ",\"group_by\":");
    spw_json_xput_str(b, d->group_by, strlen(d->group_by));
    if (d->kind == VK_AGGREGATE) {
        spw_buf_xprintf(b, ",\"windows\":[");
        for (uint32_t i = 0; i < d->nwin; i++) {
            if (i)
                spw_buf_xprintf(b, ",");
            spw__view_put_duration(b, d->win_ms[i]);
        }
        if (d->merge)
            spw_buf_xprintf(b, "],\"merge\":true,\"grace\":");
        else
            spw_buf_xprintf(b, "],\"time\":\"%s\",\"grace\":", time_names[d->time]);
        spw__view_put_duration(b, d->grace_ms);
    }
    if (d->kind == VK_LATEST)
        spw_buf_xprintf(b, ",\"order_by\":\"%s\"", order_names[d->order_by]);
    if (d->fwd_host[0]) {
        spw_buf_xprintf(b, ",\"forward\":{\"address\":");
        spw_json_xput_str(b, d->fwd_addr, strlen(d->fwd_addr));
        spw_buf_xprintf(b, ",\"stream\":");
        spw_json_xput_str(b, d->fwd_stream, strlen(d->fwd_stream));
        spw_buf_xprintf(b, ",\"token\":");
        if (d->fwd_token[0])
            spw_json_xput_str(b, d->fwd_token, strlen(d->fwd_token));
        else
            spw_buf_xprintf(b, "null");
        spw_buf_xprintf(b, "}");
    }
    spw_buf_xprintf(b, "}");
}
