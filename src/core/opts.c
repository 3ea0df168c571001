/* JSON option tables: see opts.h. */
#include "core/opts.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPTS_MAX 32 /* rows in one table */

static const char *type_name(const spw_opt *o)
{
    switch (o->type) {
    case SPW_OPT_INT: return "integer";
    case SPW_OPT_NUM: return "number";
    case SPW_OPT_STR: return o->flags & SPW_OPT_NULLABLE ? "string or null" : "string";
    case SPW_OPT_ENUM: return "string";
    case SPW_OPT_BOOL: return "true or false";
    default:
        return o->min == 1 << SPW_JSON_OBJECT  ? "object"
               : o->min == 1 << SPW_JSON_ARRAY ? "array"
               : o->min == 1 << SPW_JSON_STRING ? "string"
                                                 : "JSON";
    }
}

/* "options.NAME must be ..." for a bad value of o. */
static void bad_value(const spw_opt *o, const char *where, char *err, size_t cap)
{
    int k = where ? snprintf(err, cap, "%s.%s must be ", where, o->name) : snprintf(err, cap, "\"%s\" must be ", o->name);
    size_t at = k < 0 ? 0 : (size_t)k < cap ? (size_t)k : cap - 1;
    if (o->must) {
        snprintf(err + at, cap - at, "%s", o->must);
    } else if (o->type == SPW_OPT_INT) {
        snprintf(err + at, cap - at, "%" PRId64 " to %" PRId64, o->min, o->max);
    } else if (o->type == SPW_OPT_NUM) {
        snprintf(err + at, cap - at, "a number from %g to %g", o->dmin, o->dmax);
    } else if (o->type == SPW_OPT_ENUM) {
        for (size_t i = 0; o->choices[i] && at < cap; i++) {
            k = snprintf(err + at, cap - at, "%s\"%s\"", i == 0 ? "" : o->choices[i + 1] ? ", " : " or ",
                         o->choices[i]);
            at += k < 0 ? 0 : (size_t)k < cap - at ? (size_t)k : cap - at - 1;
        }
    } else {
        snprintf(err + at, cap - at, "%s%s", o->type == SPW_OPT_BOOL ? "" : "a ", type_name(o));
    }
}

static int str_value(const spw_json_span *v, char *out, size_t cap, int empty_ok, long *len)
{
    if (v->type != SPW_JSON_STRING || cap < 2)
        return -1;
    long n = spw_json_unescape(v, out, cap - 1);
    if (n < 0 || (n == 0 && !empty_ok) || memchr(out, 0, (size_t)n))
        return -1;
    out[n] = 0;
    *len = n;
    return 0;
}

/* One given value of o: checked, stored in obj (non-NULL), and its
 * canonical text appended to canon (non-NULL). 0 or -1 (err set). */
static int take(const spw_opt *o, const spw_json_span *v, int is_def, const char *where, void *obj, spw_buf *canon,
                char *err, size_t cap)
{
    char *field = obj ? (char *)obj + o->off : NULL;
    int r = 0;
    switch (o->type) {
    case SPW_OPT_INT: {
        int64_t x;
        if (v->type != SPW_JSON_NUMBER || spw_json_int64(v, &x) || (!is_def && (x < o->min || x > o->max)))
            goto bad;
        if (field && o->size == 4) {
            uint32_t u = (uint32_t)x;
            memcpy(field, &u, 4);
        } else if (field) {
            memcpy(field, &x, 8);
        }
        if (canon)
            r = spw_buf_printf(canon, "%" PRId64, x);
        break;
    }
    case SPW_OPT_NUM: {
        char t[64];
        double x = o->ddef;
        if (!is_def) {
            if (v->type != SPW_JSON_NUMBER || v->n >= sizeof t)
                goto bad;
            memcpy(t, v->p, v->n);
            t[v->n] = 0;
            x = strtod(t, NULL);
            if (!isfinite(x) || x < o->dmin || x > o->dmax)
                goto bad;
        }
        if (field)
            memcpy(field, &x, sizeof x);
        if (canon)
            r = spw_buf_printf(canon, "%.17g", x);
        break;
    }
    case SPW_OPT_STR: {
        if (v->type == SPW_JSON_NULL && (o->flags & SPW_OPT_NULLABLE)) {
            if (field)
                field[0] = 0;
            if (canon)
                r = spw_buf_puts(canon, "null");
            break;
        }
        char tmp[4096];
        long n;
        if (o->size > sizeof tmp || str_value(v, tmp, o->size, (o->flags & SPW_OPT_EMPTY_OK) != 0, &n))
            goto bad;
        if (field)
            memcpy(field, tmp, (size_t)n + 1);
        if (canon)
            r = spw_json_put_str(canon, tmp, (size_t)n);
        break;
    }
    case SPW_OPT_ENUM: {
        size_t i = 0;
        while (o->choices[i] && !(v->type == SPW_JSON_STRING && spw_json_str_eq(v, o->choices[i])))
            i++;
        if (!o->choices[i])
            goto bad;
        if (field) {
            int x = (int)i;
            memcpy(field, &x, sizeof x);
        }
        if (canon)
            r = spw_json_put_str(canon, o->choices[i], strlen(o->choices[i]));
        break;
    }
    case SPW_OPT_BOOL: {
        if (v->type != SPW_JSON_TRUE && v->type != SPW_JSON_FALSE)
            goto bad;
        if (field) {
            int x = v->type == SPW_JSON_TRUE;
            memcpy(field, &x, sizeof x);
        }
        if (canon)
            r = spw_buf_puts(canon, v->type == SPW_JSON_TRUE ? "true" : "false");
        break;
    }
    case SPW_OPT_JSON:
        if (!((uint64_t)o->min & (1ull << v->type)))
            goto bad;
        if (canon)
            r = spw_json_put_canon(canon, v);
        break;
    }
    if (r) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    /* The field's own rule (and, for JSON, its storing), with obj only. */
    if (obj && o->parse && (!is_def || o->type == SPW_OPT_JSON)) {
        char buf[400];
        const char *why = o->parse(obj, v, o, buf, sizeof buf);
        if (why) {
            snprintf(err, cap, "%s", why);
            return -1;
        }
    }
    return 0;
bad:
    bad_value(o, where, err, cap);
    return -1;
}

/* o's default, as a JSON text in tmp (or NULL: o has none). */
static const char *default_text(const spw_opt *o, const char *ctx, spw_buf *tmp)
{
    tmp->len = 0;
    int r = 0;
    switch (o->type) {
    case SPW_OPT_INT: r = spw_buf_printf(tmp, "%" PRId64, o->def); break;
    case SPW_OPT_NUM: r = spw_buf_printf(tmp, "%.17g", o->ddef); break;
    case SPW_OPT_BOOL: r = spw_buf_puts(tmp, o->def ? "true" : "false"); break;
    case SPW_OPT_ENUM: r = spw_json_put_str(tmp, o->choices[o->def], strlen(o->choices[o->def])); break;
    case SPW_OPT_STR: {
        const char *d = (o->flags & SPW_OPT_DEF_CTX) ? ctx : o->def_str;
        if (d && (d[0] || (o->flags & SPW_OPT_EMPTY_OK)))
            r = spw_json_put_str(tmp, d, strlen(d));
        else if (o->flags & SPW_OPT_EMPTY_OK)
            r = spw_buf_puts(tmp, "\"\"");
        else if (o->flags & SPW_OPT_NULLABLE)
            r = spw_buf_puts(tmp, "null");
        else
            return NULL;
        break;
    }
    case SPW_OPT_JSON:
        if (!o->def_str)
            return NULL;
        r = spw_buf_puts(tmp, o->def_str);
        break;
    }
    if (r || spw_buf_put(tmp, "", 1))
        return NULL;
    tmp->len--;
    return (const char *)tmp->p;
}

int spw_opts_parse(const spw_opt *t, size_t n, const char *where, const char *what, const char *text, size_t len,
                   const char *ctx, void *obj, spw_buf *canon, char *err, size_t cap)
{
    if (n > OPTS_MAX) {
        snprintf(err, cap, "%s: more than %d fields in its table", what, OPTS_MAX);
        return -1;
    }
    spw_json_ptr root = {0};
    spw_json_span o, k, v, given[OPTS_MAX];
    spw_json_error je;
    const char *end;
    if (spw_json_scan(text, text + len, &root, 1, &o, &end, &je) || o.type != SPW_JSON_OBJECT ||
        spw_json_ws(end, text + len) != text + len) {
        snprintf(err, cap, "\"%s\" must be a JSON object", where ? where : what);
        return -1;
    }
    memset(given, 0, sizeof given);
    spw_json_iter it;
    spw_json_iter_init(&it, &o);
    while (spw_json_iter_next(&it, &k, &v)) {
        size_t i = 0;
        while (i < n && !spw_json_str_eq(&k, t[i].name))
            i++;
        if (i == n) {
            int w = snprintf(err, cap, "unknown field in %s%s%s (", what, where ? " " : "", where ? where : "");
            size_t at = w < 0 ? 0 : (size_t)w < cap ? (size_t)w : cap - 1;
            for (size_t j = 0; j < n && at < cap; j++) {
                w = snprintf(err + at, cap - at, "%s%s", j ? ", " : "", t[j].name);
                at += w < 0 ? 0 : (size_t)w < cap - at ? (size_t)w : cap - at - 1;
            }
            if (at + 1 < cap)
                snprintf(err + at, cap - at, ")");
            return -1;
        }
        if (given[i].type != SPW_JSON_NONE) {
            snprintf(err, cap, "%s%s%s is given twice", where ? where : "", where ? "." : "", t[i].name);
            return -1;
        }
        given[i] = v;
    }
    /* Each field: its default (if any) taken first, then the given value
     * over it; the canonical text has the given values that differ from
     * their default, in table order. */
    spw_buf dt = SPW_BUF_INIT, dc = SPW_BUF_INIT, gc = SPW_BUF_INIT;
    int rc = 0;
    if (canon && spw_buf_puts(canon, "{"))
        rc = -1;
    int first = 1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int given_i = given[i].type != SPW_JSON_NONE;
        if (!given_i && (t[i].flags & SPW_OPT_REQUIRED)) {
            snprintf(err, cap, "%ss need %s%s%s%s%s%s", what, where ? where : "", where ? "." : "", t[i].name,
                     t[i].help ? " (" : "", t[i].help ? t[i].help : "", t[i].help ? ")" : "");
            rc = -1;
            break;
        }
        const char *dtext = default_text(&t[i], ctx, &dt);
        dc.len = gc.len = 0;
        if (dtext) {
            spw_json_span d;
            if (spw_json_scan(dtext, dtext + dt.len, &root, 1, &d, &end, &je)) {
                snprintf(err, cap, "%s: the default of %s is not JSON", what, t[i].name);
                rc = -1;
                break;
            }
            if (take(&t[i], &d, 1, where, given_i ? NULL : obj, &dc, err, cap)) {
                rc = -1;
                break;
            }
        }
        if (!given_i)
            continue;
        if (take(&t[i], &given[i], 0, where, obj, &gc, err, cap)) {
            rc = -1;
            break;
        }
        if (!canon || (dtext && dc.len == gc.len && memcmp(dc.p, gc.p, gc.len) == 0))
            continue; /* the default written out */
        if ((!first && spw_buf_puts(canon, ",")) || spw_json_put_str(canon, t[i].name, strlen(t[i].name)) ||
            spw_buf_puts(canon, ":") || spw_buf_put(canon, gc.p, gc.len)) {
            snprintf(err, cap, "out of memory");
            rc = -1;
            break;
        }
        first = 0;
    }
    if (rc == 0 && canon && spw_buf_puts(canon, "}")) {
        snprintf(err, cap, "out of memory");
        rc = -1;
    }
    spw_buf_fini(&dt);
    spw_buf_fini(&dc);
    spw_buf_fini(&gc);
    return rc;
}

void spw_opts_help(const spw_opt *t, size_t n, const char *where, spw_buf *out)
{
    spw_buf dt = SPW_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        const spw_opt *o = &t[i];
        char name[80];
        snprintf(name, sizeof name, "%s%s%s", where ? where : "", where ? "." : "", o->name);
        spw_buf_printf(out, "  %-24s %-14s", name, type_name(o));
        if (o->type == SPW_OPT_ENUM)
            for (size_t j = 0; o->choices[j]; j++)
                spw_buf_printf(out, "%s%s", j ? "|" : " ", o->choices[j]);
        if (o->flags & SPW_OPT_REQUIRED)
            spw_buf_puts(out, " (required)");
        else if (o->flags & SPW_OPT_DEF_CTX)
            spw_buf_puts(out, " (default: the sink's stream)");
        else if (default_text(o, NULL, &dt))
            spw_buf_printf(out, " (default %s)", (const char *)dt.p);
        if (o->type == SPW_OPT_INT)
            spw_buf_printf(out, " [%" PRId64 "..%" PRId64 "]", o->min, o->max);
        spw_buf_printf(out, "  %s\n", o->help ? o->help : "");
    }
    spw_buf_fini(&dt);
}
