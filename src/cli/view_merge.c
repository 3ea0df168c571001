/*
 * The parts of one view key from several nodes, added up (view_merge.h).
 * A number is kept as its text until it is added: an integer part stays an
 * int64 while the running sum fits, as the view's own sums do
 * (docs/api.md "Numbers"); anything else is summed as a double.
 */
#include "cli/view_merge.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"

typedef struct num {
    int is_int;
    int64_t i;
    double d;
} num;

static num num_of(const spw_json_span *v)
{
    num x = {0, 0, 0};
    char t[64];
    size_t n = v->n < sizeof t - 1 ? v->n : sizeof t - 1;
    memcpy(t, v->p, n);
    t[n] = 0;
    x.d = strtod(t, NULL);
    if (!strpbrk(t, ".eE")) {
        errno = 0;
        long long i = strtoll(t, NULL, 10);
        if (errno == 0) {
            x.is_int = 1;
            x.i = i;
        }
    }
    return x;
}

static num num_add(num a, num b)
{
    num r = {0, 0, a.d + b.d};
    int64_t s;
    if (a.is_int && b.is_int && !__builtin_add_overflow(a.i, b.i, &s)) {
        r.is_int = 1;
        r.i = s;
        r.d = (double)s;
    } else {
        r.d = (a.is_int ? (double)a.i : a.d) + (b.is_int ? (double)b.i : b.d);
    }
    return r;
}

double spw__cli_view_num(const spw_json_span *obj, const char *name)
{
    spw_json_span v;
    if (!spw__cli_member(obj, name, &v) || v.type != SPW_JSON_NUMBER)
        return 0;
    num x = num_of(&v);
    return x.is_int ? (double)x.i : x.d;
}

void spw__cli_view_merge(const spw_json_span *parts, size_t n, spw_buf *out)
{
    spw_json_iter it;
    spw_json_span k, v;
    int first = 1;
    spw_buf_xprintf(out, "{");
    spw_json_iter_init(&it, &parts[0]);
    while (spw_json_iter_next(&it, &k, &v)) {
        spw_buf_xprintf(out, "%s%.*s:", first ? "" : ",", (int)k.n, k.p);
        first = 0;
        char name[16];
        size_t kn = k.n >= 2 && k.n - 2 < sizeof name ? k.n - 2 : 0;
        memcpy(name, k.p + 1, kn);
        name[kn] = 0;
        int add = v.type == SPW_JSON_NUMBER && (strcmp(name, "count") == 0 || strcmp(name, "sum") == 0);
        int lo = v.type == SPW_JSON_NUMBER && strcmp(name, "min") == 0;
        int hi = v.type == SPW_JSON_NUMBER && strcmp(name, "max") == 0;
        int fin = (v.type == SPW_JSON_TRUE || v.type == SPW_JSON_FALSE) && strcmp(name, "final") == 0;
        if (add) {
            num s = num_of(&v);
            for (size_t i = 1; i < n; i++) {
                spw_json_span w;
                if (spw__cli_member(&parts[i], name, &w) && w.type == SPW_JSON_NUMBER)
                    s = num_add(s, num_of(&w));
            }
            if (s.is_int)
                spw_buf_xprintf(out, "%lld", (long long)s.i);
            else
                spw_buf_xprintf(out, "%.17g", s.d);
        } else if (lo || hi) {
            spw_json_span best = v;
            for (size_t i = 1; i < n; i++) {
                spw_json_span w;
                if (!spw__cli_member(&parts[i], name, &w) || w.type != SPW_JSON_NUMBER)
                    continue;
                num a = num_of(&best), b = num_of(&w);
                double da = a.is_int ? (double)a.i : a.d, db = b.is_int ? (double)b.i : b.d;
                if (lo ? db < da : db > da)
                    best = w;
            }
            spw_buf_xprintf(out, "%.*s", (int)best.n, best.p);
        } else if (fin) {
            int all = v.type == SPW_JSON_TRUE;
            for (size_t i = 1; i < n && all; i++) {
                spw_json_span w;
                if (spw__cli_member(&parts[i], name, &w) && w.type == SPW_JSON_FALSE)
                    all = 0;
            }
            spw_buf_xprintf(out, "%s", all ? "true" : "false");
        } else {
            spw_buf_xprintf(out, "%.*s", (int)v.n, v.p);
        }
    }
    spw_buf_xprintf(out, "}");
}
