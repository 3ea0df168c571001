/*
 * Option tables (core/opts.h): parsing fills defaults and given values,
 * refuses unknown fields, wrong types, out-of-range values, duplicates and
 * missing required fields; the canonical text is the same for definitions
 * that mean the same (spacing, field order, escapes, defaults written
 * out) and differs for any other value; help comes from the table.
 */
#include <stddef.h>

#include "core/opts.h"
#include "test.h"

typedef struct conf {
    char addr[64];
    char stream[32];
    uint32_t timeout;
    int64_t big;
    int mode;
    int flag;
    char dlq[32];
    int extra_seen;
} conf;

static const char *const modes[] = {"auto", "text", NULL};

static const char *take_extra(void *obj, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)v, (void)o;
    ((conf *)obj)->extra_seen++;
    if (v->n > 20) {
        snprintf(buf, cap, "extra is too long (%zu bytes)", v->n);
        return buf;
    }
    return NULL;
}

static const spw_opt table[] = {
    {.name = "addr", .type = SPW_OPT_STR, .off = offsetof(conf, addr), .size = 64, .flags = SPW_OPT_REQUIRED,
     .must = "\"host:port\"", .help = "where"},
    {.name = "stream", .type = SPW_OPT_STR, .off = offsetof(conf, stream), .size = 32, .flags = SPW_OPT_DEF_CTX},
    {.name = "timeout", .type = SPW_OPT_INT, .off = offsetof(conf, timeout), .size = 4, .def = 100, .min = 1,
     .max = 1000},
    {.name = "big", .type = SPW_OPT_INT, .off = offsetof(conf, big), .size = 8, .def = -5, .min = -10,
     .max = INT64_MAX},
    {.name = "mode", .type = SPW_OPT_ENUM, .off = offsetof(conf, mode), .choices = modes},
    {.name = "flag", .type = SPW_OPT_BOOL, .off = offsetof(conf, flag), .def = 1},
    {.name = "dlq", .type = SPW_OPT_STR, .off = offsetof(conf, dlq), .size = 32, .flags = SPW_OPT_NULLABLE},
    {.name = "extra", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT | 1 << SPW_JSON_ARRAY, .def_str = "{}",
     .parse = take_extra},
};
#define N (sizeof table / sizeof table[0])

static int parse(const char *text, conf *c, spw_buf *canon, char *err, size_t cap)
{
    memset(c, 0, sizeof *c);
    if (canon)
        canon->len = 0;
    return spw_opts_parse(table, N, "options", "test sink", text, strlen(text), "ctxstream", c, canon, err, cap);
}

/* The canonical texts of a and b are equal (same) or not. */
static void same(const char *a, const char *b, int want)
{
    spw_buf x = SPW_BUF_INIT, y = SPW_BUF_INIT;
    char err[300];
    CHECK_EQ(spw_opts_parse(table, N, "options", "test sink", a, strlen(a), "ctxstream", NULL, &x, err, sizeof err),
             0);
    CHECK_EQ(spw_opts_parse(table, N, "options", "test sink", b, strlen(b), "ctxstream", NULL, &y, err, sizeof err),
             0);
    int eq = x.len == y.len && memcmp(x.p, y.p, x.len) == 0;
    if (eq != want)
        fprintf(stderr, "%s -> %.*s\n%s -> %.*s\n", a, (int)x.len, (const char *)x.p, b, (int)y.len,
                (const char *)y.p);
    CHECK_EQ(eq, want);
    spw_buf_fini(&x);
    spw_buf_fini(&y);
}

static void refused(const char *text, const char *want)
{
    conf c;
    char err[300] = "";
    CHECK_EQ(parse(text, &c, NULL, err, sizeof err), -1);
    if (!strstr(err, want))
        fprintf(stderr, "%s: got '%s', want '%s'\n", text, err, want);
    CHECK(strstr(err, want) != NULL);
}

int main(void)
{
    conf c;
    char err[300];
    spw_buf canon = SPW_BUF_INIT;

    /* Defaults, and the given values over them. */
    CHECK_EQ(parse("{\"addr\":\"h:1\"}", &c, &canon, err, sizeof err), 0);
    CHECK(strcmp(c.addr, "h:1") == 0);
    CHECK(strcmp(c.stream, "ctxstream") == 0);
    CHECK_EQ(c.timeout, 100);
    CHECK_EQ(c.big, -5);
    CHECK_EQ(c.mode, 0);
    CHECK_EQ(c.flag, 1);
    CHECK(c.dlq[0] == 0);
    CHECK_EQ(c.extra_seen, 1); /* the default "{}" went through the callback */
    CHECK(canon.len == 14 && memcmp(canon.p, "{\"addr\":\"h:1\"}", 14) == 0);
    CHECK_EQ(parse("{\"big\":9000000000,\"mode\":\"text\",\"flag\":false,\"timeout\":7,\"dlq\":\"d\",\"addr\":\"a\","
                   "\"extra\":[1, 2],\"stream\":\"s\"}",
                   &c, &canon, err, sizeof err),
             0);
    CHECK_EQ(c.big, 9000000000LL);
    CHECK_EQ(c.mode, 1);
    CHECK_EQ(c.flag, 0);
    CHECK_EQ(c.timeout, 7);
    CHECK(strcmp(c.dlq, "d") == 0 && strcmp(c.stream, "s") == 0);
    const char *want = "{\"addr\":\"a\",\"stream\":\"s\",\"timeout\":7,\"big\":9000000000,\"mode\":\"text\","
                       "\"flag\":false,\"dlq\":\"d\",\"extra\":[1,2]}";
    if (canon.len != strlen(want) || memcmp(canon.p, want, canon.len))
        fprintf(stderr, "canon: %.*s\n", (int)canon.len, (const char *)canon.p);
    CHECK(canon.len == strlen(want) && memcmp(canon.p, want, canon.len) == 0);

    /* Same meaning, same canonical text. */
    same("{\"addr\":\"h:1\"}", "{ \"addr\" : \"h:1\" }", 1);
    same("{\"addr\":\"h:1\",\"timeout\":5}", "{\"timeout\":5,\"addr\":\"h:1\"}", 1);
    same("{\"addr\":\"h:1\"}", "{\"addr\":\"h:1\",\"timeout\":100,\"big\":-5,\"mode\":\"auto\",\"flag\":true,"
                               "\"dlq\":null,\"extra\":{},\"stream\":\"ctxstream\"}",
         1);
    same("{\"addr\":\"h\\u003a1\"}", "{\"addr\":\"h:1\"}", 1);
    same("{\"addr\":\"h:1\",\"extra\":{\"a\": [1, \"x\"]}}", "{\"extra\":{\"a\":[1,\"x\"]},\"addr\":\"h:1\"}", 1);
    /* Another meaning, another text. */
    same("{\"addr\":\"h:1\"}", "{\"addr\":\"h:2\"}", 0);
    same("{\"addr\":\"h:1\"}", "{\"addr\":\"h:1\",\"timeout\":101}", 0);
    same("{\"addr\":\"h:1\"}", "{\"addr\":\"h:1\",\"stream\":\"other\"}", 0);
    same("{\"addr\":\"h:1\"}", "{\"addr\":\"h:1\",\"dlq\":\"d\"}", 0);
    same("{\"addr\":\"h:1\",\"extra\":{\"a\":\"x y\"}}", "{\"addr\":\"h:1\",\"extra\":{\"a\":\"xy\"}}", 0);

    /* Refusals, each naming the field. */
    refused("{}", "test sinks need options.addr (where)");
    refused("{\"addr\":\"h\",\"nope\":1}",
            "unknown field in test sink options (addr, stream, timeout, big, mode, flag, dlq, extra)");
    refused("{\"addr\":\"h\",\"timeout\":0}", "options.timeout must be 1 to 1000");
    refused("{\"addr\":\"h\",\"timeout\":\"5\"}", "options.timeout must be 1 to 1000");
    refused("{\"addr\":\"h\",\"big\":-11}", "options.big must be -10 to");
    refused("{\"addr\":7}", "options.addr must be \"host:port\"");
    refused("{\"addr\":\"\"}", "options.addr must be");
    refused("{\"addr\":\"h\",\"mode\":\"binary\"}", "options.mode must be \"auto\" or \"text\"");
    refused("{\"addr\":\"h\",\"flag\":1}", "options.flag must be true or false");
    refused("{\"addr\":null}", "options.addr must be");
    refused("{\"addr\":\"h\",\"extra\":\"s\"}", "options.extra must be a JSON");
    refused("{\"addr\":\"h\",\"extra\":{\"aaaaaaaaaaaaaaaaaaaaaaaaa\":1}}", "extra is too long");
    refused("{\"addr\":\"h\",\"addr\":\"h\"}", "options.addr is given twice");
    refused("[1]", "\"options\" must be a JSON object");
    refused("{\"addr\":\"h\"} x", "\"options\" must be a JSON object");

    /* Help from the table. */
    spw_buf help = SPW_BUF_INIT;
    spw_opts_help(table, N, "options", &help);
    CHECK(spw_buf_put(&help, "", 1) == 0);
    const char *h = (const char *)help.p;
    CHECK(strstr(h, "options.addr") && strstr(h, "(required)") && strstr(h, "where\n"));
    CHECK(strstr(h, "options.timeout") && strstr(h, "(default 100) [1..1000]"));
    CHECK(strstr(h, " auto|text (default \"auto\")"));
    spw_buf_fini(&help);
    spw_buf_fini(&canon);
    printf("test_opts: ok\n");
    return 0;
}
