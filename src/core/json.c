/*
 * Strict JSON scanning: see json.h. An explicit stack instead of recursion
 * (bounded depth, no stack overflow on hostile input). Pointer matching is
 * tracked per depth: match[d] says whether the path down to depth d equals
 * the first d tokens of a pointer.
 */
#include "core/json.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/alloc.h"
#include "core/buf.h"

/* Character classes inside strings. */
enum { C_OK = 0, C_QUOTE, C_BSLASH, C_CTRL, C_HIGH };
static const uint8_t str_class[256] = {
    [0 ... 0x1f] = C_CTRL, ['"'] = C_QUOTE, ['\\'] = C_BSLASH, [0x80 ... 0xff] = C_HIGH,
};

const char *spw_json_ws(const char *p, const char *end)
{
    if (p < end && (unsigned char)*p > ' ')
        return p; /* the common case: no whitespace between tokens */
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

int spw_json_ptr_compile(spw_json_ptr *ptr, const char *text)
{
    ptr->ntok = 0;
    if (text[0] == '\0')
        return 0; /* the whole document */
    if (text[0] != '/')
        return -1;
    size_t used = 0;
    const char *s = text;
    while (*s == '/') {
        s++;
        if (ptr->ntok == SPW_JSON_MAX_PTR_TOKENS)
            return -1;
        char *t = ptr->storage + used;
        size_t n = 0;
        while (*s && *s != '/') {
            char c = *s++;
            if (c == '~') {
                if (*s == '0')
                    c = '~';
                else if (*s == '1')
                    c = '/';
                else
                    return -1;
                s++;
            }
            if (used + n + 1 >= sizeof ptr->storage)
                return -1;
            t[n++] = c;
        }
        ptr->tok[ptr->ntok] = t;
        ptr->tok_len[ptr->ntok] = (uint32_t)n;
        ptr->ntok++;
        used += n;
    }
    return *s ? -1 : 0;
}

size_t spw_utf8_seq_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    if (c >= 0xc2 && c <= 0xdf)
        return (end - p >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (end - p < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (end - p < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

static int hex4(const unsigned char *p, unsigned *v)
{
    unsigned r = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        r = r << 4 | d;
    }
    *v = r;
    return 0;
}

/* Scans a string starting at the opening quote; returns the position after
 * the closing quote, or NULL with msg and at set. *escaped says whether it had
 * backslashes. Inlined: every member name and string value of every event
 * comes here, and the call cost as much as scanning a short string. */
static inline __attribute__((always_inline)) const unsigned char *
scan_string(const unsigned char *p, const unsigned char *end, int *escaped, const char **msg,
            const unsigned char **at)
{
    p++; /* opening quote */
    *escaped = 0;
    for (;;) {
#if defined(__SSE2__)
        /* 16 bytes at a time (SSE2 is part of x86-64): a signed compare
         * flags control characters, '"' and, as negative bytes, every
         * non-ASCII byte; an equality compare flags '\\'.
         * The lowest set mask bit is the first byte to look at. Fewer than
         * 16 bytes left: the 8-byte and byte loops below finish, so nothing
         * is read past end. */
        while (end - p >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
            /* x ^ 0x02 maps '"' (0x22) to 0x20 and each of 0x00..0x1f
             * to another of them, and keeps the sign: one signed compare
             * below 0x21 flags the quote, control characters and
             * non-ASCII bytes, an equality compare flags '\\'. */
            __m128i hit = _mm_or_si128(_mm_cmplt_epi8(_mm_xor_si128(x, _mm_set1_epi8(0x02)), _mm_set1_epi8(0x21)),
                                       _mm_cmpeq_epi8(x, _mm_set1_epi8('\\')));
            unsigned m = (unsigned)_mm_movemask_epi8(hit);
            if (m) {
                p += __builtin_ctz(m);
                goto classify;
            }
            p += 16;
        }
#endif
        /* 8 bytes at a time while none is a quote, a backslash, a control
         * character or a non-ASCII byte (SWAR: a byte b of x is flagged
         * when b < 0x20, b == '"' or b == '\\'; 0x80 bits flag the rest) */
        while (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
            uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
            uint64_t flags = ((x - ones * 0x20) | (q - ones) | (b - ones)) & ~x;
            uint64_t stop = (flags | x) & highs;
            if (stop) {
                /* Borrows only run upward from a flagged byte, so the
                 * lowest flag is exact: go straight to that byte. */
                p += (size_t)__builtin_ctzll(stop) >> 3;
                break;
            }
            p += 8;
        }
        while (p < end && str_class[*p] == C_OK)
            p++;
#if defined(__SSE2__)
    classify:
#endif
        if (p < end && *p == '"') /* the closing quote, most often: no table */
            return p + 1;
        if (p >= end) {
            *msg = "unterminated string";
            *at = p;
            return NULL;
        }
        switch (str_class[*p]) {
        case C_QUOTE:
            return p + 1;
        case C_CTRL:
            *msg = "control character in string (must be escaped)";
            *at = p;
            return NULL;
        case C_HIGH: {
            size_t n = spw_utf8_seq_len(p, end);
            if (!n) {
                *msg = "invalid UTF-8 in string";
                *at = p;
                return NULL;
            }
            p += n;
            break;
        }
        case C_BSLASH:
            *escaped = 1;
            if (end - p < 2) {
                *msg = "unterminated escape";
                *at = p;
                return NULL;
            }
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                break;
            case 'u': {
                unsigned u;
                if (end - p < 6 || hex4(p + 2, &u)) {
                    *msg = "bad \\u escape";
                    *at = p;
                    return NULL;
                }
                if (u >= 0xdc00 && u <= 0xdfff) {
                    *msg = "lone low surrogate in \\u escape";
                    *at = p;
                    return NULL;
                }
                if (u >= 0xd800 && u <= 0xdbff) {
                    unsigned lo;
                    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, &lo) || lo < 0xdc00 ||
                        lo > 0xdfff) {
                        *msg = "high surrogate not followed by a low surrogate";
                        *at = p;
                        return NULL;
                    }
                    p += 12;
                } else {
                    p += 6;
                }
                break;
            }
            default:
                *msg = "unknown escape in string";
                *at = p;
                return NULL;
            }
            break;
        }
    }
}

static const unsigned char *scan_number(const unsigned char *p, const unsigned char *end, const char **msg)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end) {
        *msg = "bad number";
        return NULL;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    } else {
        *msg = "bad number";
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') {
            *msg = "bad number: digits must follow the decimal point";
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9') {
            *msg = "bad number: digits must follow the exponent";
            return NULL;
        }
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

/* Does the member key (raw string span with quotes) equal token t? */
static int key_equals(const unsigned char *k, size_t klen, int escaped, const char *t, size_t tlen)
{
    if (!escaped) {
        /* Member names are short: a byte loop, not a call to memcmp. */
        if (klen - 2 != tlen)
            return 0;
        for (size_t i = 0; i < tlen; i++)
            if (k[1 + i] != (unsigned char)t[i])
                return 0;
        return 1;
    }
    char buf[256];
    spw_json_span s = {(const char *)k, klen, SPW_JSON_STRING};
    long n = spw_json_unescape(&s, buf, sizeof buf);
    return n >= 0 && (size_t)n == tlen && memcmp(buf, t, tlen) == 0;
}

static int index_equals(uint32_t idx, const char *t, size_t tlen)
{
    if (tlen == 0 || tlen > 10 || (tlen > 1 && t[0] == '0'))
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < tlen; i++) {
        if (t[i] < '0' || t[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(t[i] - '0');
    }
    return v == idx;
}

typedef struct frame {
    uint8_t is_obj;
    uint8_t match; /* bit i: path to here matches pointer i so far */
    uint32_t count;
} frame;

/* The scanner proper. Always inlined into spw_json_scan three times: with
 * nptrs a constant 0, where the compiler drops every pointer-matching loop
 * and the match bookkeeping (plain validation, the case of every event
 * whose key and timestamp do not come from its body), with a constant 1
 * (a stream's key), and general. */
static inline __attribute__((always_inline)) int scan(const char *start, const char *stop, const spw_json_ptr *ptrs,
                                                      int nptrs, spw_json_span *found, const char **value_end,
                                                      spw_json_error *err)
{
    const unsigned char *p = (const unsigned char *)start, *end = (const unsigned char *)stop, *at = NULL;
    const char *msg = NULL;
    frame st[SPW_JSON_MAX_DEPTH + 1];
    int depth = 0;
    for (int i = 0; i < nptrs; i++)
        found[i] = (spw_json_span){NULL, 0, SPW_JSON_NONE};
    /* match bits for the value about to be scanned */
    uint8_t vmatch = (uint8_t)((1u << nptrs) - 1);

#define FAIL(m, pos)                                                                                                   \
    do {                                                                                                               \
        msg = (m);                                                                                                     \
        at = (pos);                                                                                                    \
        goto fail;                                                                                                     \
    } while (0)

    p = (const unsigned char *)spw_json_ws((const char *)p, stop);
value:
    if (p >= end)
        FAIL("unexpected end of input, expected a value", p);
    {
        const unsigned char *vstart = p;
        int type;
        switch (*p) {
        case '{':
        case '[':
            if (depth == SPW_JSON_MAX_DEPTH)
                FAIL("nesting too deep", p);
            type = *p == '{' ? SPW_JSON_OBJECT : SPW_JSON_ARRAY;
            /* Containers record their span when they close; remember start. */
            depth++;
            st[depth].is_obj = *p == '{';
            st[depth].match = vmatch;
            st[depth].count = 0;
            for (int i = 0; i < nptrs; i++)
                if ((vmatch >> i & 1) && ptrs[i].ntok == (uint32_t)(depth - 1))
                    found[i] = (spw_json_span){(const char *)vstart, 0, type};
            p = (const unsigned char *)spw_json_ws((const char *)p + 1, stop);
            if (p < end && *p == (st[depth].is_obj ? '}' : ']')) {
                p++;
                goto close;
            }
            if (st[depth].is_obj)
                goto member;
            vmatch = 0;
            for (int i = 0; i < nptrs; i++)
                if ((st[depth].match >> i & 1) && ptrs[i].ntok >= (uint32_t)depth &&
                    index_equals(0, ptrs[i].tok[depth - 1], ptrs[i].tok_len[depth - 1]))
                    vmatch |= (uint8_t)(1u << i);
            goto value;
        case '"': {
            int esc;
            p = scan_string(p, end, &esc, &msg, &at);
            if (!p)
                goto fail;
            type = SPW_JSON_STRING;
            break;
        }
        case 't':
            if (end - p < 4 || memcmp(p, "true", 4))
                FAIL("unexpected character, expected a value", p);
            p += 4;
            type = SPW_JSON_TRUE;
            break;
        case 'f':
            if (end - p < 5 || memcmp(p, "false", 5))
                FAIL("unexpected character, expected a value", p);
            p += 5;
            type = SPW_JSON_FALSE;
            break;
        case 'n':
            if (end - p < 4 || memcmp(p, "null", 4))
                FAIL("unexpected character, expected a value", p);
            p += 4;
            type = SPW_JSON_NULL;
            break;
        default:
            if (*p == '-' || (*p >= '0' && *p <= '9')) {
                p = scan_number(p, end, &msg);
                if (!p)
                    FAIL(msg, vstart);
                type = SPW_JSON_NUMBER;
                break;
            }
            FAIL("unexpected character, expected a value", p);
        }
        for (int i = 0; i < nptrs; i++)
            if ((vmatch >> i & 1) && ptrs[i].ntok == (uint32_t)depth)
                found[i] = (spw_json_span){(const char *)vstart, (size_t)(p - vstart), type};
    }
after_value:
    if (depth == 0) {
        *value_end = (const char *)p;
        return 0;
    }
    p = (const unsigned char *)spw_json_ws((const char *)p, stop);
    if (p >= end)
        FAIL("unexpected end of input inside a container", p);
    st[depth].count++;
    if (*p == ',') {
        p = (const unsigned char *)spw_json_ws((const char *)p + 1, stop);
        if (st[depth].is_obj)
            goto member;
        vmatch = 0;
        for (int i = 0; i < nptrs; i++)
            if ((st[depth].match >> i & 1) && ptrs[i].ntok >= (uint32_t)depth &&
                index_equals(st[depth].count, ptrs[i].tok[depth - 1], ptrs[i].tok_len[depth - 1]))
                vmatch |= (uint8_t)(1u << i);
        goto value;
    }
    if (*p != (st[depth].is_obj ? '}' : ']'))
        FAIL(st[depth].is_obj ? "expected ',' or '}' in object" : "expected ',' or ']' in array", p);
    p++;
close:
    /* Record container spans that a pointer selected. */
    for (int i = 0; i < nptrs; i++)
        if (found[i].type == (st[depth].is_obj ? SPW_JSON_OBJECT : SPW_JSON_ARRAY) && found[i].n == 0 &&
            (st[depth].match >> i & 1) && ptrs[i].ntok == (uint32_t)(depth - 1))
            found[i].n = (size_t)((const char *)p - found[i].p);
    depth--;
    goto after_value;

member: {
    if (p >= end || *p != '"')
        FAIL(p >= end ? "unexpected end of input, expected a member name" : "expected a member name (string)", p);
    const unsigned char *k = p;
    int esc;
    p = scan_string(p, end, &esc, &msg, &at);
    if (!p)
        goto fail;
    size_t klen = (size_t)(p - k);
    p = (const unsigned char *)spw_json_ws((const char *)p, stop);
    if (p >= end || *p != ':')
        FAIL("expected ':' after member name", p);
    p = (const unsigned char *)spw_json_ws((const char *)p + 1, stop);
    vmatch = 0;
    for (int i = 0; i < nptrs; i++)
        if ((st[depth].match >> i & 1) && ptrs[i].ntok >= (uint32_t)depth &&
            key_equals(k, klen, esc, ptrs[i].tok[depth - 1], ptrs[i].tok_len[depth - 1]))
            vmatch |= (uint8_t)(1u << i);
    goto value;
}

fail:
    err->offset = (size_t)((const char *)at - start);
    err->msg = msg;
    return -1;
#undef FAIL
}

/* The first byte at or after p that is not whitespace: inline, and the
 * expected byte is tested by the caller first, so without whitespace
 * between tokens it is not called at all. */
static inline __attribute__((always_inline)) const unsigned char *ws_at(const unsigned char *p,
                                                                        const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* The common event, validated without pointers: one object whose members'
 * values are strings, numbers, true, false or null. 1 with *value_end when
 * [start, stop) begins with such an object, valid. 0 on anything else (a
 * nested value, any error): the general scan then decides, so what is
 * accepted and every error with its offset stay the general scan's. It
 * accepts nothing the general scan refuses: the same string and number
 * scanners, the same grammar for a flat object, and no state beyond the
 * position (no depth stack, no member count, a byte test before each
 * whitespace skip). */
static int scan_flat(const char *start, const char *stop, const char **value_end)
{
    const unsigned char *end = (const unsigned char *)stop, *at;
    const unsigned char *p = (const unsigned char *)start;
    const char *msg;
    int esc;
    /* Each expected byte is tested first; only another byte goes through
     * the whitespace skip and the test again. */
    if (p >= end || *p != '{') {
        p = ws_at(p, end);
        if (p >= end || *p != '{')
            return 0;
    }
    p++;
    if (p >= end || *p != '"') {
        p = ws_at(p, end);
        if (p < end && *p == '}') {
            *value_end = (const char *)p + 1;
            return 1;
        }
        if (p >= end || *p != '"')
            return 0;
    }
    for (;;) {
        /* here *p == '"': a member's name */
        p = scan_string(p, end, &esc, &msg, &at);
        if (!p)
            return 0;
        if (p >= end || *p != ':') {
            p = ws_at(p, end);
            if (p >= end || *p != ':')
                return 0;
        }
        p++;
        if (p < end && *p <= ' ')
            p = ws_at(p, end);
        if (p >= end)
            return 0;
        switch (*p) {
        case '"':
            p = scan_string(p, end, &esc, &msg, &at);
            if (!p)
                return 0;
            break;
        case 't':
            if (end - p < 4 || memcmp(p, "true", 4))
                return 0;
            p += 4;
            break;
        case 'f':
            if (end - p < 5 || memcmp(p, "false", 5))
                return 0;
            p += 5;
            break;
        case 'n':
            if (end - p < 4 || memcmp(p, "null", 4))
                return 0;
            p += 4;
            break;
        default:
            if (*p != '-' && (*p < '0' || *p > '9'))
                return 0; /* a nested object or array, or an error */
            p = scan_number(p, end, &msg);
            if (!p)
                return 0;
        }
        if (p >= end || (*p != ',' && *p != '}')) {
            p = ws_at(p, end);
            if (p >= end)
                return 0;
        }
        if (*p == ',') {
            p++;
            if (p >= end || *p != '"') {
                p = ws_at(p, end);
                if (p >= end || *p != '"')
                    return 0;
            }
            continue;
        }
        if (*p != '}')
            return 0;
        *value_end = (const char *)p + 1;
        return 1;
    }
}

int spw_json_scan(const char *start, const char *stop, const spw_json_ptr *ptrs, int nptrs, spw_json_span *found,
                  const char **value_end, spw_json_error *err)
{
    if (nptrs == 0) {
        if (scan_flat(start, stop, value_end))
            return 0;
        return scan(start, stop, NULL, 0, found, value_end, err);
    }
    if (nptrs == 1) /* one pointer (a stream's key): the loops unrolled */
        return scan(start, stop, ptrs, 1, found, value_end, err);
    return scan(start, stop, ptrs, nptrs, found, value_end, err);
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

long spw_json_unescape(const spw_json_span *s, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s->p + 1, *end = (const unsigned char *)s->p + s->n - 1;
    size_t n = 0;
    while (p < end) {
        char tmp[4];
        size_t k;
        if (*p != '\\') {
            /* A run without escapes, copied whole: a produce request
             * unescapes every event's key here (docs/performance.md). */
            const unsigned char *bs = memchr(p, '\\', (size_t)(end - p));
            size_t run = (size_t)((bs ? bs : end) - p);
            if (n + run > cap)
                return -1;
            memcpy(out + n, p, run);
            n += run;
            p += run;
            continue;
        } else {
            unsigned c = p[1];
            p += 2;
            switch (c) {
            case 'b': tmp[0] = '\b'; k = 1; break;
            case 'f': tmp[0] = '\f'; k = 1; break;
            case 'n': tmp[0] = '\n'; k = 1; break;
            case 'r': tmp[0] = '\r'; k = 1; break;
            case 't': tmp[0] = '\t'; k = 1; break;
            case 'u': {
                unsigned u = 0, lo = 0;
                hex4(p, &u);
                p += 4;
                if (u >= 0xd800 && u <= 0xdbff) {
                    hex4(p + 2, &lo);
                    p += 6;
                    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                }
                k = put_utf8(tmp, u);
                break;
            }
            default: tmp[0] = (char)c; k = 1; break;
            }
        }
        if (n + k > cap)
            return -1;
        memcpy(out + n, tmp, k);
        n += k;
    }
    return (long)n;
}

int spw_json_int64(const spw_json_span *s, int64_t *v)
{
    if (s->type != SPW_JSON_NUMBER)
        return -1;
    const char *p = s->p, *end = s->p + s->n;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p == end)
        return -1;
    uint64_t r = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t d = (uint64_t)(*p - '0');
        if (r > (UINT64_MAX - d) / 10)
            return -1;
        r = r * 10 + d;
    }
    if (neg ? r > (uint64_t)INT64_MAX + 1 : r > (uint64_t)INT64_MAX)
        return -1;
    *v = neg ? (int64_t)(0 - r) : (int64_t)r;
    return 0;
}

void spw_json_iter_init(spw_json_iter *it, const spw_json_span *obj)
{
    it->p = obj->p + 1; /* after '{' (or '[' for arrays) */
    it->end = obj->p + obj->n - 1;
}

int spw_json_iter_next(spw_json_iter *it, spw_json_span *key, spw_json_span *value)
{
    const char *p = spw_json_ws(it->p, it->end);
    if (p < it->end && *p == ',')
        p = spw_json_ws(p + 1, it->end);
    if (p >= it->end)
        return 0;
    spw_json_error e;
    const char *vend;
    spw_json_span dummy;
    if (key) {
        if (spw_json_scan(p, it->end, NULL, 0, &dummy, &vend, &e))
            return 0;
        *key = (spw_json_span){p, (size_t)(vend - p), SPW_JSON_STRING};
        p = spw_json_ws(vend, it->end);
        if (p >= it->end || *p != ':')
            return 0;
        p = spw_json_ws(p + 1, it->end);
    }
    spw_json_ptr root = {0};
    spw_json_span v;
    if (spw_json_scan(p, it->end, &root, 1, &v, &vend, &e))
        return 0;
    *value = v;
    it->p = vend;
    return 1;
}

int spw_json_str_eq(const spw_json_span *str, const char *s)
{
    if (str->type != SPW_JSON_STRING)
        return 0;
    size_t n = strlen(s);
    if (str->n == n + 2 && memcmp(str->p + 1, s, n) == 0)
        return 1;
    char buf[256];
    long k = spw_json_unescape(str, buf, sizeof buf);
    return k == (long)n && memcmp(buf, s, n) == 0;
}

/* ---- output ---- */

int spw_json_put_str(spw_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    if (spw_buf_put(b, "\"", 1))
        return SPW_ENOMEM;
    size_t run = 0; /* start of the bytes copied as they are */
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        size_t k = c >= 0x80 ? spw_utf8_seq_len(p + i, end) : 0;
        if (k) {
            i += k;
            continue;
        }
        if (spw_buf_put(b, p + run, i - run))
            return SPW_ENOMEM;
        int r;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            r = spw_buf_put(b, e, 2);
        } else if (c < 0x80) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            r = spw_buf_put(b, e, 6);
        } else {
            r = spw_buf_put(b, "\\ufffd", 6);
        }
        if (r)
            return SPW_ENOMEM;
        run = ++i;
    }
    if (spw_buf_put(b, p + run, n - run) || spw_buf_put(b, "\"", 1))
        return SPW_ENOMEM;
    return 0;
}

void spw_json_xput_str(spw_buf *b, const char *s, size_t n)
{
    if (spw_json_put_str(b, s, n))
        abort(); /* as spw_xmalloc */
}

void spw_json_xput_b64(spw_buf *b, const uint8_t *p, size_t n)
{
    if (spw_json_put_b64(b, p, n))
        abort(); /* as spw_xmalloc */
}

int spw_json_put_b64(spw_buf *b, const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (spw_buf_reserve(b, b->len + (n + 2) / 3 * 4 + 2))
        return SPW_ENOMEM;
    char *o = (char *)b->p + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[v >> 12 & 63];
        *o++ = tab[v >> 6 & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - (char *)b->p);
    return 0;
}

int spw_json_put_canon(spw_buf *b, const spw_json_span *v)
{
    /* The span is valid JSON, so a flat walk suffices: drop whitespace,
     * rewrite each string, copy every other token. */
    const char *p = v->p, *end = v->p + v->n;
    char *tmp = NULL;
    size_t tcap = 0;
    int r = 0;
    while (p < end && !r) {
        char c = *p;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p++;
        } else if (c == '"') {
            int esc;
            const char *msg;
            const unsigned char *at;
            const char *q = (const char *)scan_string((const unsigned char *)p, (const unsigned char *)end, &esc,
                                                      &msg, &at);
            if (!q)
                break; /* not from spw_json_scan: stop rather than guess */
            spw_json_span s = {p, (size_t)(q - p), SPW_JSON_STRING};
            if (s.n > tcap) {
                spw_free(tmp);
                tcap = s.n;
                if (!(tmp = spw_try_malloc(tcap))) {
                    r = SPW_ENOMEM;
                    break;
                }
            }
            long n = spw_json_unescape(&s, tmp, tcap);
            r = n < 0 ? SPW_ENOMEM : spw_json_put_str(b, tmp, (size_t)n);
            p = q;
        } else {
            const char *q = p + 1;
            while (q < end && *q != '"' && *q != ' ' && *q != '\t' && *q != '\n' && *q != '\r')
                q++;
            r = spw_buf_put(b, p, (size_t)(q - p)) ? SPW_ENOMEM : 0;
            p = q;
        }
    }
    spw_free(tmp);
    return r;
}
