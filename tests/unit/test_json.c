/* The strict JSON scanner: accepts what RFC 8259 allows, rejects the rest
 * with the byte offset of the problem, and finds JSON Pointer values. */
#include "core/buf.h"
#include "core/json.h"
#include "test.h"

/* The writer's output of s[0..n) equals want, and scans as JSON. */
static void put_str_is(const char *s, size_t n, const char *want)
{
    spw_buf b = SPW_BUF_INIT;
    CHECK_EQ(spw_json_put_str(&b, s, n), 0);
    if (b.len != strlen(want) || memcmp(b.p, want, b.len) != 0)
        fprintf(stderr, "put_str: got %.*s, want %s\n", (int)b.len, (const char *)b.p, want);
    CHECK(b.len == strlen(want) && memcmp(b.p, want, b.len) == 0);
    const char *end;
    spw_json_span f[1];
    spw_json_error e;
    CHECK_EQ(spw_json_scan((const char *)b.p, (const char *)b.p + b.len, NULL, 0, f, &end, &e), 0);
    spw_buf_fini(&b);
}

/* Two texts have the same canonical form (or not). */
static void canon_same(const char *a, const char *b, int same)
{
    spw_buf x = SPW_BUF_INIT, y = SPW_BUF_INIT;
    const char *end;
    spw_json_span sa, sb;
    spw_json_error e;
    spw_json_ptr root = {0}; /* the empty pointer: the whole value */
    CHECK_EQ(spw_json_scan(a, a + strlen(a), &root, 1, &sa, &end, &e), 0);
    CHECK_EQ(spw_json_scan(b, b + strlen(b), &root, 1, &sb, &end, &e), 0);
    CHECK_EQ(spw_json_put_canon(&x, &sa), 0);
    CHECK_EQ(spw_json_put_canon(&y, &sb), 0);
    int eq = x.len == y.len && memcmp(x.p, y.p, x.len) == 0;
    if (eq != same)
        fprintf(stderr, "canon: %.*s vs %.*s\n", (int)x.len, (const char *)x.p, (int)y.len, (const char *)y.p);
    CHECK_EQ(eq, same);
    spw_buf_fini(&x);
    spw_buf_fini(&y);
}

static int scan(const char *s, spw_json_error *e)
{
    const char *end;
    spw_json_span f[1];
    int r = spw_json_scan(s, s + strlen(s), NULL, 0, f, &end, e);
    if (r == 0 && spw_json_ws(end, s + strlen(s)) != s + strlen(s)) {
        e->offset = (size_t)(end - s);
        e->msg = "trailing data";
        return -1;
    }
    return r;
}

static void good(const char *s)
{
    spw_json_error e;
    const char *end;
    spw_json_span f[1];
    int r = spw_json_scan(s, s + strlen(s), NULL, 0, f, &end, &e);
    if (r)
        fprintf(stderr, "rejected %s: %s at %zu\n", s, e.msg, e.offset);
    CHECK_EQ(r, 0);
    CHECK(spw_json_ws(end, s + strlen(s)) == s + strlen(s));
}

static void bad(const char *s, size_t at)
{
    spw_json_error e = {0};
    int r = scan(s, &e);
    if (r == 0)
        fprintf(stderr, "accepted %s\n", s);
    CHECK_EQ(r, -1);
    CHECK(e.msg != NULL);
    if (at != (size_t)-1 && e.offset != at)
        fprintf(stderr, "%s: error '%s' at %zu, expected %zu\n", s, e.msg, e.offset, at);
    if (at != (size_t)-1)
        CHECK_EQ(e.offset, at);
}

static void find(const char *doc, const char *ptr, const char *want, int type)
{
    spw_json_ptr p;
    CHECK_EQ(spw_json_ptr_compile(&p, ptr), 0);
    spw_json_span f[1];
    spw_json_error e;
    const char *end;
    CHECK_EQ(spw_json_scan(doc, doc + strlen(doc), &p, 1, f, &end, &e), 0);
    if (!want) {
        CHECK_EQ(f[0].type, SPW_JSON_NONE);
        return;
    }
    if (f[0].n != strlen(want) || memcmp(f[0].p, want, f[0].n))
        fprintf(stderr, "%s %s: got '%.*s'\n", doc, ptr, (int)f[0].n, f[0].p);
    CHECK_EQ(f[0].n, strlen(want));
    CHECK(memcmp(f[0].p, want, f[0].n) == 0);
    CHECK_EQ(f[0].type, type);
}

/* Strings of every length up to 40 with one special byte sequence at
 * every position: the 8-bytes-at-a-time scan must stop for each exactly
 * where the byte-by-byte scan would. */
static void strings_at_every_position(void)
{
    static const struct {
        const char *seq;
        int ok;
    } special[] = {{"\\n", 1}, {"\\\"", 1}, {"\\u00e9", 1}, {"\xc3\xa9", 1}, {"\x7f", 1}, {"\x01", 0},
                   {"\x1f", 0},  {"\x80", 0},      {"\xc3", 0},        {"\\x", 0},      {"\t", 0}};
    char doc[128];
    for (size_t len = 0; len <= 40; len++)
        for (size_t at = 0; at <= len; at++)
            for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) {
                size_t n = 0;
                doc[n++] = '"';
                for (size_t i = 0; i < at; i++)
                    doc[n++] = (char)('a' + i % 26);
                size_t sl = strlen(special[k].seq);
                memcpy(doc + n, special[k].seq, sl);
                n += sl;
                for (size_t i = at; i < len; i++)
                    doc[n++] = (char)('A' + i % 26);
                doc[n++] = '"';
                doc[n] = 0;
                if (special[k].ok)
                    good(doc);
                else
                    bad(doc, 1 + at); /* the error is at the special byte */
            }
    /* and a quote inside ends the string there: what follows is trailing data */
    for (size_t at = 0; at < 40; at++) {
        size_t n = 0;
        doc[n++] = '"';
        for (size_t i = 0; i < 40; i++)
            doc[n++] = i == at ? '"' : 'x';
        doc[n++] = '"';
        doc[n] = 0;
        bad(doc, 2 + at);
    }
}

/* Scans doc[0..n) (not NUL-terminated: the input may end mid-vector) with
 * no pointer, one and two (the scanner's three compiled forms): all must
 * agree on the result and the error's offset. want_at == -1: accepted as
 * one value, up to n. */
static void vec_case(const char *doc, size_t n, long want_at)
{
    spw_json_ptr ptr[2];
    CHECK_EQ(spw_json_ptr_compile(&ptr[0], "/0"), 0);
    CHECK_EQ(spw_json_ptr_compile(&ptr[1], "/1"), 0);
    for (int np = 0; np <= 2; np++) {
        spw_json_span f[2];
        spw_json_error e = {0};
        const char *end = NULL;
        int r = spw_json_scan(doc, doc + n, ptr, np, f, &end, &e);
        long got = r ? (long)e.offset : -1;
        if (r == 0 && spw_json_ws(end, doc + n) != doc + n)
            got = -2; /* a value that ended early */
        if (got != want_at)
            fprintf(stderr, "vec_case (%d pointers) %.*s: got %ld (%s), want %ld\n", np, (int)n, doc, got,
                    r ? e.msg : "ok", want_at);
        CHECK_EQ(got, want_at);
    }
}

/* The 16-bytes-at-a-time string scan: every byte value at every position
 * 0..33 of a string of every length up to 40, the string followed by more
 * input (so a vector spans its closing quote) or ending the input (so the
 * input ends mid-vector); every valid UTF-8 length at each position (a
 * sequence straddling a 16-byte step); unterminated strings and escapes
 * ending the input at every length. */
static void strings_vector_boundaries(void)
{
    char doc[160];
    for (size_t len = 0; len <= 40; len++)
        for (size_t at = 0; at <= len && at <= 33; at++)
            for (unsigned b = 0; b < 256; b++) {
                if (b == '\\' && at == len)
                    continue; /* \" would be a valid escape: see below */
                size_t n = 0;
                doc[n++] = '[';
                doc[n++] = '"';
                for (size_t i = 0; i < at; i++)
                    doc[n++] = (char)('a' + i % 26);
                doc[n++] = (char)b;
                for (size_t i = at; i < len; i++)
                    doc[n++] = (char)('A' + i % 26);
                doc[n++] = '"';
                memcpy(doc + n, ",\"0123456789abcdefghij\"]", 24);
                n += 24;
                long want;
                if (b < 0x20 || b >= 0x80 || b == '\\')
                    want = (long)(2 + at); /* control, lone/invalid UTF-8, unknown escape */
                else if (b == '"')
                    want = (long)(3 + at); /* the string ended: what follows is no ',' */
                else
                    want = -1;
                vec_case(doc, n, want);
            }
    /* valid UTF-8 of each length at each position, more input after */
    static const char *const utf8[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x7f", " "};
    for (size_t k = 0; k < sizeof utf8 / sizeof utf8[0]; k++)
        for (size_t at = 0; at <= 33; at++)
            for (int tail = 0; tail <= 1; tail++) {
                size_t n = 0;
                doc[n++] = '"';
                for (size_t i = 0; i < at; i++)
                    doc[n++] = 'x';
                memcpy(doc + n, utf8[k], strlen(utf8[k]));
                n += strlen(utf8[k]);
                for (size_t i = 0; i < 20; i++)
                    doc[n++] = 'y';
                doc[n++] = '"';
                vec_case(doc, n, -1);
                if (tail) { /* the same sequence cut short by the end of input */
                    size_t cut = 1 + at + strlen(utf8[k]) - 1;
                    vec_case(doc, cut, strlen(utf8[k]) > 1 ? (long)(1 + at) : (long)cut);
                }
            }
    /* strings whose closing quote is the last byte of the input or sits
     * exactly at a 16-byte step from the opening quote, and unterminated
     * strings ending the input at every length */
    for (size_t len = 0; len <= 48; len++) {
        size_t n = 0;
        doc[n++] = '"';
        for (size_t i = 0; i < len; i++)
            doc[n++] = (char)('a' + i % 26);
        vec_case(doc, n, (long)n); /* unterminated: the error is at the end */
        doc[n] = '\\';
        vec_case(doc, n + 1, (long)n); /* unterminated escape */
        doc[n++] = '"';
        vec_case(doc, n, -1);
        doc[n] = ' ';
        vec_case(doc, n + 1, -1);
    }
}

/* Scanning without pointers takes a path of its own for flat objects (the
 * common event); with a pointer that matches nothing, the general scan.
 * Both must accept and refuse alike, with the same end or the same error
 * at the same offset: flat objects, each cut at every length and with
 * every byte replaced by each of a set of troublesome bytes. */
static void flat_same(const char *doc, size_t n)
{
    spw_json_ptr none;
    CHECK_EQ(spw_json_ptr_compile(&none, "/no member is named so"), 0);
    spw_json_span f[1];
    spw_json_error e0 = {0}, e1 = {0};
    const char *end0 = NULL, *end1 = NULL;
    int r0 = spw_json_scan(doc, doc + n, NULL, 0, f, &end0, &e0);
    int r1 = spw_json_scan(doc, doc + n, &none, 1, f, &end1, &e1);
    if (r0 != r1 || (r0 == 0 && end0 != end1) || (r0 && (e0.offset != e1.offset || strcmp(e0.msg, e1.msg))))
        fprintf(stderr, "flat scan differs on %.*s: %d/%d end %td/%td at %zu/%zu %s/%s\n", (int)n, doc, r0, r1,
                end0 ? end0 - doc : -1, end1 ? end1 - doc : -1, e0.offset, e1.offset, r0 ? e0.msg : "",
                r1 ? e1.msg : "");
    CHECK_EQ(r0, r1);
    if (r0 == 0 && r1 == 0)
        CHECK(end0 == end1);
    if (r0 && r1) {
        CHECK_EQ(e0.offset, e1.offset);
        CHECK_EQ(strcmp(e0.msg, e1.msg), 0);
    }
}

static void flat_objects(void)
{
    static const char *docs[] = {
        "{\"k\":\"key-00000000123\",\"c\":3,\"seq\":1234567,\"v\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
        " { \"a\" : 1 , \"b\" :\t\"x\\n\\u00e9\" ,\n\"c\": true, \"d\": false, \"e\": null, \"f\": -0.5e+3 } ",
        "{}", "{ }", "{\"a\":{\"b\":1},\"c\":2}", "{\"a\":[1,2],\"b\":\"x\"}", "{\"a\":1}{\"b\":2}",
        "{\"caf\xc3\xa9\":\"\xe2\x82\xac\",\"n\":0}",
    };
    static const char subst[] = {'{', '}', '[', ']', '"', '\\', ',', ':', ' ', '\n', '\x01', '\x80', '0', '-',
                                 '.', 'e', 't', 'n', 'x', '\0'};
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        size_t n = strlen(docs[d]);
        char buf[256];
        CHECK(n < sizeof buf);
        for (size_t cut = 0; cut <= n; cut++)
            flat_same(docs[d], cut);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < sizeof subst; k++) {
                memcpy(buf, docs[d], n);
                buf[i] = subst[k];
                flat_same(buf, n);
            }
    }
}

int main(void)
{
    flat_objects();
    strings_at_every_position();
    strings_vector_boundaries();
    good("{}");
    good("[]");
    good(" {\"a\" : [1, -2.5e+10, 0, 0.0, 1E3, true, false, null, \"x\\n\\u00e9\\ud83d\\ude00\"]} ");
    good("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    good("-0");
    good("123");
    good("{\"a\":{\"b\":{\"c\":[[[]]]}}}");

    bad("", 0);
    bad("{", 1);
    bad("{\"a\"}", 4);
    bad("{\"a\":1,}", 7);
    bad("[1,]", 3);
    bad("[1 2]", 3);
    bad("01", 1);
    bad("1.", 0);
    bad("1e", 0);
    bad("+1", 0);
    bad(".5", 0);
    bad("tru", 0);
    bad("nul", 0);
    bad("\"abc", 4);
    bad("\"a\tb\"", 2);
    bad("\"\\x\"", 1);
    bad("\"\\u12g4\"", 1);
    bad("\"\\udc00\"", 1);
    bad("\"\\ud800\"", 1);
    bad("\"\\ud800\\u0041\"", 1);
    bad("\"\xc0\xaf\"", 1);          /* overlong */
    bad("\"\xed\xa0\x80\"", 1);      /* surrogate in UTF-8 */
    bad("\"\xf4\x90\x80\x80\"", 1);  /* past U+10FFFF */
    bad("\"\x80\"", 1);
    bad("\"\xe2\x82\"", 1);
    bad("{'a':1}", 1);
    bad("{\"a\":1 \"b\":2}", 7);
    bad("[NaN]", 1);
    /* Depth limit. */
    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = 0;
    bad(deep, 64);
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    deep[128] = 0;
    good(deep);
    /* Only the first value is scanned; the caller checks what follows. */
    {
        const char *s = "{} {}";
        const char *end;
        spw_json_error e;
        CHECK_EQ(spw_json_scan(s, s + 5, NULL, 0, NULL, &end, &e), 0);
        CHECK(end == s + 2);
    }

    /* Pointers. */
    find("{\"device_id\":\"abc\",\"ts\":17}", "/device_id", "\"abc\"", SPW_JSON_STRING);
    find("{\"device_id\":\"abc\",\"ts\":17}", "/ts", "17", SPW_JSON_NUMBER);
    find("{\"a\":{\"b\":[10,{\"c\":true}]}}", "/a/b/1/c", "true", SPW_JSON_TRUE);
    find("{\"a\":{\"b\":[10,{\"c\":true}]}}", "/a/b/0", "10", SPW_JSON_NUMBER);
    find("{\"a\":{\"b\":[10,{\"c\":true}]}}", "/a/b", "[10,{\"c\":true}]", SPW_JSON_ARRAY);
    find("{\"a\":{\"b\":[10,{\"c\":true}]}}", "/a", "{\"b\":[10,{\"c\":true}]}", SPW_JSON_OBJECT);
    find("{\"a\":{\"b\":[10,{\"c\":true}]}}", "", "{\"a\":{\"b\":[10,{\"c\":true}]}}", SPW_JSON_OBJECT);
    find("{\"a\":{\"b\":[10]}}", "/a/b/01", NULL, 0);
    find("{\"a\":{\"b\":[10]}}", "/a/c", NULL, 0);
    find("{\"x\":{\"a\":1},\"a\":2}", "/a", "2", SPW_JSON_NUMBER);
    find("{\"a/b\":1,\"m~n\":2}", "/a~1b", "1", SPW_JSON_NUMBER);
    find("{\"a/b\":1,\"m~n\":2}", "/m~0n", "2", SPW_JSON_NUMBER);
    find("{\"k\\u0065y\":\"v\"}", "/key", "\"v\"", SPW_JSON_STRING);
    CHECK_EQ(spw_json_ptr_compile(&(spw_json_ptr){0}, "nope"), -1);
    CHECK_EQ(spw_json_ptr_compile(&(spw_json_ptr){0}, "/a~2"), -1);

    /* Unescape and integers. */
    {
        const char *s = "\"a\\\"b\\\\c\\/\\n\\u00e9\\ud83d\\ude00\"";
        spw_json_span sp = {s, strlen(s), SPW_JSON_STRING};
        char out[64];
        long n = spw_json_unescape(&sp, out, sizeof out);
        CHECK_EQ(n, 13);
        CHECK(memcmp(out, "a\"b\\c/\n\xc3\xa9\xf0\x9f\x98\x80", 13) == 0);
        CHECK_EQ(spw_json_unescape(&sp, out, 3), -1);
        /* Runs without escapes (copied whole) before, between and after
         * escapes; the capacity bound holds inside a run. */
        const char *r = "\"key-000123\\tmid\\u0041end-of-the-key\"";
        spw_json_span rs = {r, strlen(r), SPW_JSON_STRING};
        const char *want = "key-000123\tmidAend-of-the-key";
        CHECK_EQ(spw_json_unescape(&rs, out, sizeof out), (long)strlen(want));
        CHECK(memcmp(out, want, strlen(want)) == 0);
        CHECK_EQ(spw_json_unescape(&rs, out, strlen(want)), (long)strlen(want));
        CHECK_EQ(spw_json_unescape(&rs, out, strlen(want) - 1), -1);
        CHECK_EQ(spw_json_unescape(&rs, out, 5), -1);
        spw_json_span empty = {"\"\"", 2, SPW_JSON_STRING};
        CHECK_EQ(spw_json_unescape(&empty, out, 0), 0);
        int64_t v;
        spw_json_span num = {"-9223372036854775808", 20, SPW_JSON_NUMBER};
        CHECK_EQ(spw_json_int64(&num, &v), 0);
        CHECK(v == INT64_MIN);
        spw_json_span big = {"9223372036854775808", 19, SPW_JSON_NUMBER};
        CHECK_EQ(spw_json_int64(&big, &v), -1);
        spw_json_span fr = {"1.5", 3, SPW_JSON_NUMBER};
        CHECK_EQ(spw_json_int64(&fr, &v), -1);
    }
    /* Decimals (spw_buf_put_u64, two digits at a time) against printf:
     * every number of digits, the edges of each, and a spread between. */
    {
        spw_buf b = SPW_BUF_INIT;
        uint64_t x = 1;
        for (int d = 0; d < 20; d++, x *= 10) {
            uint64_t vals[] = {x - 1, x, x + 1, x * 2 + 7, x * 9 + x / 3};
            for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
                char want[24];
                int wn = snprintf(want, sizeof want, "%" PRIu64, vals[i]);
                b.len = 0;
                CHECK_EQ(spw_buf_put_u64(&b, vals[i]), 0);
                CHECK_EQ(b.len, (size_t)wn);
                CHECK(memcmp(b.p, want, b.len) == 0);
            }
        }
        char want[24];
        b.len = 0;
        CHECK_EQ(spw_buf_put_u64(&b, UINT64_MAX), 0);
        snprintf(want, sizeof want, "%" PRIu64, UINT64_MAX);
        CHECK(b.len == strlen(want) && memcmp(b.p, want, b.len) == 0);
        spw_buf_fini(&b);
    }
    /* The writer: escapes, control bytes and DEL, UTF-8 kept, bad bytes replaced. */
    put_str_is("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    put_str_is("x\ny\x01\x7f", 5, "\"x\\u000ay\\u0001\\u007f\"");
    put_str_is("\xc3\xa9t\xc3\xa9", 5, "\"\xc3\xa9t\xc3\xa9\"");
    put_str_is("a\xff\xc3", 3, "\"a\\ufffd\\ufffd\"");
    put_str_is("nul\0x", 5, "\"nul\\u0000x\"");
    put_str_is("", 0, "\"\"");
    {
        spw_buf b = SPW_BUF_INIT;
        CHECK_EQ(spw_json_put_b64(&b, (const uint8_t *)"abcd", 4), 0);
        CHECK(b.len == 10 && memcmp(b.p, "\"YWJjZA==\"", 10) == 0);
        spw_buf_fini(&b);
    }
    /* Canonical text: spacing and string escapes do not matter; order,
     * values and numbers as written do. */
    canon_same("{\"a\": 1, \"b\" : [ \"x\" , true ]}", "{\"a\":1,\"b\":[\"x\",true]}", 1);
    canon_same("{\"p\":\"\\/a\\u0062\"}", "{ \"p\" : \"/ab\" }", 1);
    canon_same("{\"s\":\"a b\"}", "{\"s\":\"ab\"}", 0);
    canon_same("{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}", 0);
    canon_same("{\"a\":1}", "{\"a\":2}", 0);
    puts("test_json: ok");
    return 0;
}
