/*
 * libFuzzer target for the strict JSON scanner (src/core/json.c).
 *
 * Input: up to two NUL-terminated JSON Pointer texts, then the document
 * (JSON never holds a raw NUL, so the split is unambiguous). Without a NUL
 * the pointers are "/k" and "/a/0/b".
 *
 * Besides "no crash, no sanitizer report" it checks invariants that can fail:
 *  - success: value_end lies in (start, end]; every found span lies inside
 *    the value, re-scans alone as exactly one value of the same type;
 *  - failure: the error offset lies inside the input and has a message;
 *  - scanning with pointers and without accepts/rejects alike, with the same
 *    value end or error offset (the API scans both ways, api.c);
 *  - re-scanning [start, value_end) gives the same value end;
 *  - found[i] equals the value a slow reference resolver (spw_json_iter +
 *    spw_json_str_eq) finds (see resolve_from for duplicate member names);
 *  - a string span unescapes into valid UTF-8 no longer than the span;
 *  - an integer number span parses with spw_json_int64 exactly when it is in
 *    range, and prints back to itself.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define FAILX(...)                                                                                                     \
    do {                                                                                                               \
        fprintf(stderr, "fuzz_json invariant: " __VA_ARGS__);                                                          \
        fputc('\n', stderr);                                                                                           \
        abort();                                                                                                       \
    } while (0)

static int utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf)
            k = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            k = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 4, cp = c & 0x07;
        else
            return 0;
        if (i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

static int index_tok(const char *t, size_t n, uint32_t *idx)
{
    if (n == 0 || n > 10 || (n > 1 && t[0] == '0'))
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(t[i] - '0');
    }
    if (v > UINT32_MAX)
        return 0;
    *idx = (uint32_t)v;
    return 1;
}

/*
 * The reference: walks the pointer through iterators. With duplicate member
 * names the scanner reports the last value, in document order, that the
 * whole pointer reaches through any of the duplicates (for {"a":{"b":1},
 * "a":2} and "/a/b" that is 1; a tree parser keeping the last "a" would
 * find nothing), so the reference explores every matching member and keeps
 * the last hit. Returns 1 and *out, or 0.
 */
static int resolve_from(const spw_json_span *cur, const spw_json_ptr *ptr, uint32_t t, spw_json_span *out)
{
    if (t == ptr->ntok) {
        *out = *cur;
        return 1;
    }
    char tok[257];
    memcpy(tok, ptr->tok[t], ptr->tok_len[t]);
    tok[ptr->tok_len[t]] = 0;
    spw_json_iter it;
    spw_json_span k, v;
    int found = 0;
    if (cur->type == SPW_JSON_OBJECT) {
        spw_json_iter_init(&it, cur);
        while (spw_json_iter_next(&it, &k, &v))
            if (spw_json_str_eq(&k, tok) && resolve_from(&v, ptr, t + 1, out))
                found = 1; /* a later hit replaces an earlier one */
    } else if (cur->type == SPW_JSON_ARRAY) {
        uint32_t want, i = 0;
        if (!index_tok(ptr->tok[t], ptr->tok_len[t], &want))
            return 0;
        spw_json_iter_init(&it, cur);
        while (spw_json_iter_next(&it, NULL, &v))
            if (i++ == want)
                return resolve_from(&v, ptr, t + 1, out);
    }
    return found;
}

static int resolve(const spw_json_span *root, const spw_json_ptr *ptr, spw_json_span *out)
{
    return resolve_from(root, ptr, 0, out);
}

static void check_span(const char *doc, const char *vend, const spw_json_span *s)
{
    if (s->type == SPW_JSON_NONE)
        return;
    if (s->p < doc || s->p + s->n > vend || s->n == 0)
        FAILX("found span outside the value (off %td len %zu)", s->p - doc, s->n);
    spw_json_ptr root = {0};
    spw_json_span again;
    const char *e2;
    spw_json_error err;
    if (spw_json_scan(s->p, s->p + s->n, &root, 1, &again, &e2, &err))
        FAILX("found span does not re-scan: %s", err.msg);
    if (e2 != s->p + s->n || again.type != s->type || again.p != s->p || again.n != s->n)
        FAILX("found span re-scans differently");
    if (s->type == SPW_JSON_STRING) {
        char *out = malloc(s->n + 1);
        long n = spw_json_unescape(s, out, s->n);
        if (n < 0 || (size_t)n > s->n - 2)
            FAILX("unescape grew the string (%ld > %zu)", n, s->n - 2);
        if (!utf8_ok((const unsigned char *)out, (size_t)n))
            FAILX("unescaped string is not valid UTF-8");
        if (n < 256) {
            /* str_eq must agree with the unescaped bytes (when no NUL). */
            out[n] = 0;
            if (strlen(out) == (size_t)n && !spw_json_str_eq(s, out))
                FAILX("spw_json_str_eq disagrees with spw_json_unescape");
        }
        free(out);
    }
    if (s->type == SPW_JSON_NUMBER && !memchr(s->p, '.', s->n) && !memchr(s->p, 'e', s->n) &&
        !memchr(s->p, 'E', s->n)) {
        int64_t v;
        int neg = s->p[0] == '-';
        size_t digits = s->n - (size_t)neg;
        int r = spw_json_int64(s, &v);
        if (r == 0) {
            char buf[32];
            int k = snprintf(buf, sizeof buf, "%" PRId64, v);
            int negzero = s->n == 2 && s->p[0] == '-' && s->p[1] == '0';
            if (!negzero && ((size_t)k != s->n || memcmp(buf, s->p, s->n)))
                FAILX("int64 round trip: %.*s -> %s", (int)s->n, s->p, buf);
        } else if (digits < 19) {
            FAILX("int64 refused a small integer %.*s", (int)s->n, s->p);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Pointers. */
    const char *ptxt[2] = {"/k", "/a/0/b"};
    char pbuf[2][300];
    size_t off = 0;
    int np = 0;
    const uint8_t *nul;
    while (np < 2 && (nul = memchr(data + off, 0, size - off))) {
        size_t l = (size_t)(nul - (data + off));
        if (l >= sizeof pbuf[0])
            l = sizeof pbuf[0] - 1;
        memcpy(pbuf[np], data + off, l);
        pbuf[np][l] = 0;
        ptxt[np] = pbuf[np];
        np++;
        off = (size_t)(nul - data) + 1;
    }
    spw_json_ptr ptrs[2];
    const char *ptext[2];
    int nptrs = 0;
    for (int i = 0; i < 2; i++)
        if (spw_json_ptr_compile(&ptrs[nptrs], ptxt[i]) == 0)
            ptext[nptrs++] = ptxt[i];

    /* The document in its own allocation, so ASan sees any read past it. */
    size_t n = size - off;
    char *doc = malloc(n ? n : 1);
    memcpy(doc, data + off, n);
    const char *end = doc + n;

    spw_json_span found[2];
    const char *vend = NULL, *vend0 = NULL;
    spw_json_error err = {0}, err0 = {0};
    int r = spw_json_scan(doc, end, ptrs, nptrs, found, &vend, &err);
    spw_json_span dummy;
    int r0 = spw_json_scan(doc, end, NULL, 0, &dummy, &vend0, &err0);
    if (r != r0)
        FAILX("scan with pointers %d, without %d", r, r0);
    if (r) {
        if (err.offset > n || !err.msg || err0.offset != err.offset)
            FAILX("error offset %zu/%zu outside input of %zu or differs", err.offset, err0.offset, n);
        free(doc);
        return 0;
    }
    if (vend <= doc || vend > end || vend != vend0)
        FAILX("value end outside the input or differs");
    const char *start = spw_json_ws(doc, end);
    const char *vend2;
    spw_json_ptr root = {0};
    spw_json_span whole;
    if (spw_json_scan(doc, vend, &root, 1, &whole, &vend2, &err) || vend2 != vend)
        FAILX("value does not re-scan alone");
    if (whole.p != start || whole.p + whole.n != vend)
        FAILX("root span is not the value (off %td len %zu, value %td..%td)", whole.p - doc, whole.n, start - doc,
              vend - doc);
    for (int i = 0; i < nptrs; i++) {
        check_span(doc, vend, &found[i]);
        spw_json_span ref;
        int have = resolve(&whole, &ptrs[i], &ref);
        if (have != (found[i].type != SPW_JSON_NONE))
            FAILX("pointer '%s': scanner %s, reference %s", ptext[i], found[i].type ? "found" : "missed",
                  have ? "found" : "missed");
        if (have && (ref.p != found[i].p || ref.n != found[i].n || ref.type != found[i].type))
            FAILX("pointer '%s': scanner and reference disagree (%td+%zu vs %td+%zu)", ptext[i], found[i].p - doc,
                  found[i].n, ref.p - doc, ref.n);
    }
    check_span(doc, vend, &whole);
    free(doc);
    return 0;
}
