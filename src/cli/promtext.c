/* A bounded reader for the Prometheus text format: see promtext.h. */
#include "cli/promtext.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void spw_prom_init(spw_prom_set *s) { memset(s, 0, sizeof *s); }

void spw_prom_fini(spw_prom_set *s)
{
    spw_buf_fini(&s->arena);
    spw_free(s->labels);
    spw_free(s->samples);
    memset(s, 0, sizeof *s);
}

void spw_prom_clear(spw_prom_set *s)
{
    s->arena.len = 0;
    s->nlabels = 0;
    s->n = 0;
    s->skipped = 0;
}

static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
static int is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
static int is_blank(char c) { return c == ' ' || c == '\t'; }

static const char *skip_blank(const char *p, const char *end)
{
    while (p < end && is_blank(*p))
        p++;
    return p;
}

/* Copies [p, p + n) and a NUL into the arena; *off is where it starts. */
static int arena_put(spw_prom_set *s, const char *p, size_t n, uint32_t *off)
{
    /* Lines are bounded and so is the sample count: the arena stays far
     * below 4 GiB, which the 32-bit offsets rely on. */
    assert(s->arena.len + n + 1 < UINT32_MAX);
    if (spw_buf_reserve(&s->arena, s->arena.len + n + 1))
        return SPW_ENOMEM;
    *off = (uint32_t)s->arena.len;
    if (n)
        memcpy(s->arena.p + s->arena.len, p, n);
    s->arena.p[s->arena.len + n] = 0;
    s->arena.len += n + 1;
    return 0;
}

/* Scans a name at *pp (label names: no ':'). Returns its length, 0 if none or too long. */
static size_t scan_name(const char **pp, const char *end, int colon_ok)
{
    const char *p = *pp;
    if (p >= end || !is_name_start(*p) || (!colon_ok && *p == ':'))
        return 0;
    const char *q = p + 1;
    while (q < end && is_name_char(*q) && (colon_ok || *q != ':'))
        q++;
    size_t n = (size_t)(q - p);
    if (n > SPW_PROM_NAME_MAX)
        return 0;
    *pp = q;
    return n;
}

/*
 * Parses `"value"` at *pp into the arena, unescaping. Returns 0 (and moves
 * *pp past the closing quote), -1 malformed, SPW_ENOMEM.
 */
static int scan_label_value(spw_prom_set *s, const char **pp, const char *end, uint32_t *off, uint32_t *len)
{
    const char *p = *pp;
    if (p >= end || *p != '"')
        return -1;
    p++;
    /* The unescaped value is never longer than the escaped one. */
    if (spw_buf_reserve(&s->arena, s->arena.len + (size_t)(end - p) + 1))
        return SPW_ENOMEM;
    char *w = (char *)s->arena.p + s->arena.len, *w0 = w;
    for (;;) {
        if (p >= end)
            return -1;
        char c = *p++;
        if (c == '"')
            break;
        if (c == 0)
            return -1;
        if (c == '\\') {
            if (p >= end)
                return -1;
            c = *p++;
            if (c == 'n')
                c = '\n';
            else if (c != '\\' && c != '"')
                return -1;
        }
        *w++ = c;
    }
    *w = 0;
    *off = (uint32_t)s->arena.len;
    *len = (uint32_t)(w - w0);
    s->arena.len += (size_t)(w - w0) + 1;
    *pp = p;
    return 0;
}

static int add_label(spw_prom_set *s, spw_prom_label l)
{
    if (s->nlabels == s->labels_cap) {
        size_t cap = s->labels_cap ? s->labels_cap * 2 : 256;
        spw_prom_label *n = spw_try_realloc(s->labels, cap * sizeof *n);
        if (!n)
            return SPW_ENOMEM;
        s->labels = n;
        s->labels_cap = cap;
    }
    s->labels[s->nlabels++] = l;
    return 0;
}

/* The label set `{a="x",b="y"}` at *pp (a trailing comma is allowed). */
static int scan_labels(spw_prom_set *s, const char **pp, const char *end, uint32_t *nlabels)
{
    const char *p = *pp + 1; /* past '{' */
    uint32_t k = 0;
    for (;;) {
        p = skip_blank(p, end);
        if (p < end && *p == '}') {
            *pp = p + 1;
            *nlabels = k;
            return 0;
        }
        if (k == SPW_PROM_LABELS_MAX)
            return -1;
        const char *name = p;
        size_t nl = scan_name(&p, end, 0);
        if (!nl)
            return -1;
        p = skip_blank(p, end);
        if (p >= end || *p != '=')
            return -1;
        p = skip_blank(p + 1, end);
        spw_prom_label l;
        int r = arena_put(s, name, nl, &l.name);
        if (r)
            return r;
        l.name_len = (uint32_t)nl;
        if ((r = scan_label_value(s, &p, end, &l.value, &l.value_len)) || (r = add_label(s, l)))
            return r;
        k++;
        p = skip_blank(p, end);
        if (p < end && *p == ',')
            p++;
        else if (p >= end || *p != '}')
            return -1;
    }
}

/* A whole token [p, q) as a double (Go's float forms, Inf and NaN included). */
static int parse_value(const char *p, const char *q, double *v)
{
    char tmp[SPW_PROM_VALUE_MAX + 1];
    size_t n = (size_t)(q - p);
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = 0;
    char *e;
    *v = strtod(tmp, &e);
    return *e == 0 ? 0 : -1;
}

static int parse_timestamp(const char *p, const char *q)
{
    if (p < q && *p == '-')
        p++;
    if (p == q || q - p > 19)
        return -1;
    for (; p < q; p++)
        if (*p < '0' || *p > '9')
            return -1;
    return 0;
}

int spw_prom_parse_line(spw_prom_set *s, const char *line, size_t n)
{
    if (n > SPW_PROM_LINE_MAX) {
        s->skipped++;
        return -1;
    }
    const char *p = skip_blank(line, line + n), *end = line + n;
    if (end > p && end[-1] == '\r')
        end--;
    if (p == end || *p == '#')
        return 0;
    if (s->n >= SPW_PROM_SAMPLES_MAX) {
        s->skipped++;
        return -1;
    }
    size_t arena0 = s->arena.len, labels0 = s->nlabels;
    spw_prom_sample x = {.label0 = (uint32_t)s->nlabels};
    int r = -1;
    const char *name = p;
    size_t nl = scan_name(&p, end, 1);
    if (!nl)
        goto fail;
    if ((r = arena_put(s, name, nl, &x.name)))
        goto fail;
    x.name_len = (uint32_t)nl;
    r = -1;
    if (p < end && *p == '{' && (r = scan_labels(s, &p, end, &x.nlabels)))
        goto fail;
    r = -1;
    /* At least one blank, the value, and optionally a blank and a timestamp. */
    if (p >= end || !is_blank(*p))
        goto fail;
    p = skip_blank(p, end);
    const char *v = p;
    while (p < end && !is_blank(*p))
        p++;
    if (parse_value(v, p, &x.value))
        goto fail;
    p = skip_blank(p, end);
    if (p < end) {
        const char *t = p;
        while (p < end && !is_blank(*p))
            p++;
        if (parse_timestamp(t, p) || skip_blank(p, end) != end)
            goto fail;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        spw_prom_sample *ns = spw_try_realloc(s->samples, cap * sizeof *ns);
        if (!ns) {
            r = SPW_ENOMEM;
            goto fail;
        }
        s->samples = ns;
        s->cap = cap;
    }
    s->samples[s->n++] = x;
    return 1;
fail:
    s->arena.len = arena0;
    s->nlabels = labels0;
    if (r == SPW_ENOMEM)
        return r;
    s->skipped++;
    return -1;
}

long spw_prom_parse(spw_prom_set *s, const char *p, size_t n)
{
    const char *end = p + n;
    long added = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        int r = spw_prom_parse_line(s, p, (size_t)(le - p));
        if (r == SPW_ENOMEM)
            return r;
        if (r == 1)
            added++;
        p = nl ? nl + 1 : end;
    }
    return added;
}

const char *spw_prom_name(const spw_prom_set *s, const spw_prom_sample *x)
{
    return (const char *)s->arena.p + x->name;
}

const char *spw_prom_label_value(const spw_prom_set *s, const spw_prom_sample *x, const char *label)
{
    for (uint32_t i = 0; i < x->nlabels; i++) {
        const spw_prom_label *l = &s->labels[x->label0 + i];
        if (strcmp((const char *)s->arena.p + l->name, label) == 0)
            return (const char *)s->arena.p + l->value;
    }
    return NULL;
}

const spw_prom_sample *spw_prom_find(const spw_prom_set *s, const char *name, const char *label, const char *value)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < s->n; i++) {
        const spw_prom_sample *x = &s->samples[i];
        if (x->name_len != nl || memcmp(s->arena.p + x->name, name, nl) != 0)
            continue;
        if (!label)
            return x;
        const char *v = spw_prom_label_value(s, x, label);
        if (v && strcmp(v, value) == 0)
            return x;
    }
    return NULL;
}

int spw_prom_get(const spw_prom_set *s, const char *name, const char *label, const char *value, double *v)
{
    const spw_prom_sample *x = spw_prom_find(s, name, label, value);
    if (!x)
        return 0;
    *v = x->value;
    return 1;
}

size_t spw_prom_hist(const spw_prom_set *s, const char *name, double *le, double *cum, size_t cap)
{
    char bname[SPW_PROM_NAME_MAX + 8];
    size_t nl = strlen(name);
    if (nl + 7 >= sizeof bname)
        return 0;
    memcpy(bname, name, nl);
    memcpy(bname + nl, "_bucket", 8);
    nl += 7;
    if (cap > SPW_PROM_HIST_MAX)
        cap = SPW_PROM_HIST_MAX;
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        const spw_prom_sample *x = &s->samples[i];
        if (x->name_len != nl || memcmp(s->arena.p + x->name, bname, nl) != 0)
            continue;
        const char *lv = spw_prom_label_value(s, x, "le");
        char *e;
        double b = lv ? strtod(lv, &e) : NAN;
        if (!lv || *e || isnan(b))
            continue;
        /* Insertion into the sorted prefix; a repeated bound is dropped. */
        size_t k = 0;
        while (k < n && le[k] < b)
            k++;
        if ((k < n && le[k] == b) || n == cap)
            continue;
        memmove(le + k + 1, le + k, (n - k) * sizeof *le);
        memmove(cum + k + 1, cum + k, (n - k) * sizeof *cum);
        le[k] = b;
        cum[k] = x->value;
        n++;
    }
    return n;
}

double spw_prom_quantile(const double *le, const double *cum, size_t n, double q)
{
    if (n == 0 || !(cum[n - 1] > 0) || !(q > 0 && q < 1))
        return NAN;
    double rank = q * cum[n - 1];
    size_t i = 0;
    while (i < n - 1 && cum[i] < rank)
        i++;
    if (isinf(le[i])) {
        /* Past every finite bound: the largest one is all we know. */
        return i > 0 ? le[i - 1] : NAN;
    }
    double lo = i ? le[i - 1] : 0, below = i ? cum[i - 1] : 0;
    double in = cum[i] - below;
    if (!(in > 0))
        return le[i];
    return lo + (le[i] - lo) * (rank - below) / in;
}
