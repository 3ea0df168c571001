/*
 * The Prometheus text reader behind `spillway top` (src/cli/promtext.c):
 * sample lines with and without labels, escapes, Inf/NaN and timestamps;
 * comments, blank lines and CRLF; malformed, over-long and over-many lines
 * skipped and counted without losing their neighbours; lookups; histogram
 * buckets and quantiles; and the server's own /metrics output.
 */
#include <math.h>

#include "cli/promtext.h"
#include "test.h"

static spw_prom_set S;

static long parse(const char *text)
{
    spw_prom_clear(&S);
    return spw_prom_parse(&S, text, strlen(text));
}

static double get(const char *name, const char *label, const char *value)
{
    double v = NAN;
    CHECK(spw_prom_get(&S, name, label, value, &v));
    return v;
}

static void test_basic(void)
{
    CHECK_EQ(parse("# HELP a_total things\n"
                   "# TYPE a_total counter\n"
                   "a_total 42\n"
                   "\n"
                   "   \n"
                   "b{x=\"1\",y=\"two\"} 1.5e3\n"
                   "c:sub_ratio -0.25 1700000000000\n"
                   "d +Inf\n"
                   "e -Inf\n"
                   "f NaN\n"
                   "g{} 7\n"
                   "h{ a = \"q\" , } 8\n"
                   "  i\t9\t\n"),
             9);
    CHECK_EQ(S.skipped, 0);
    CHECK(get("a_total", NULL, NULL) == 42);
    CHECK(get("b", "x", "1") == 1500);
    CHECK(get("b", "y", "two") == 1500);
    CHECK(get("c:sub_ratio", NULL, NULL) == -0.25);
    CHECK(isinf(get("d", NULL, NULL)) && get("d", NULL, NULL) > 0);
    CHECK(isinf(get("e", NULL, NULL)) && get("e", NULL, NULL) < 0);
    CHECK(isnan(get("f", NULL, NULL)));
    CHECK(get("g", NULL, NULL) == 7);
    CHECK(get("h", "a", "q") == 8);
    CHECK(get("i", NULL, NULL) == 9);
    double v = 0;
    CHECK(!spw_prom_get(&S, "b", "x", "2", &v));
    CHECK(!spw_prom_get(&S, "b", "z", "1", &v));
    CHECK(!spw_prom_get(&S, "a", NULL, NULL, &v)); /* a prefix is not the name */
    CHECK(!spw_prom_get(&S, "a_total_x", NULL, NULL, &v));
    const spw_prom_sample *x = spw_prom_find(&S, "b", NULL, NULL);
    CHECK(x != NULL);
    CHECK(strcmp(spw_prom_name(&S, x), "b") == 0);
    CHECK(strcmp(spw_prom_label_value(&S, x, "y"), "two") == 0);
    CHECK(spw_prom_label_value(&S, x, "z") == NULL);
}

static void test_escapes_and_crlf(void)
{
    CHECK_EQ(parse("s{stream=\"a\\\"b\\\\c\\nd\"} 3\r\nt 4\r\n"), 2);
    const spw_prom_sample *x = spw_prom_find(&S, "s", NULL, NULL);
    CHECK(x != NULL);
    CHECK(strcmp(spw_prom_label_value(&S, x, "stream"), "a\"b\\c\nd") == 0);
    CHECK(get("s", "stream", "a\"b\\c\nd") == 3);
    CHECK(get("t", NULL, NULL) == 4);
    /* The last line need not end with a newline. */
    CHECK_EQ(parse("u 5"), 1);
    CHECK(get("u", NULL, NULL) == 5);
}

static void test_malformed(void)
{
    /* Each bad line is skipped and counted; the good lines around it stay. */
    static const char *bad[] = {
        "nothing_after_name",
        "x{",
        "x{a=\"1\"",
        "x{a=\"1} 2",
        "x{a=1} 2",
        "x{a=\"1\" b=\"2\"} 3",
        "x{1a=\"1\"} 2",
        "x{a:b=\"1\"} 2",
        "x{a=\"\\q\"} 2",
        "x{a=\"1\"}2",
        "x 1 2 3",
        "x 12abc",
        "x 1 17e3",
        "x 1 -",
        "x",
        "1x 2",
        "-x 2",
        "x{,} 1",
        "x{a=\"1\",,} 2",
        "x\x01 1",
        "x 0x",
        "x 1111111111111111111111111111111111111111111111111111111111111111111111111111",
        "{a=\"1\"} 2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[512];
        snprintf(text, sizeof text, "before 1\n%s\nafter 2\n", bad[i]);
        long n = parse(text);
        if (n != 2 || S.skipped != 1)
            fprintf(stderr, "line '%s': %ld samples, %llu skipped\n", bad[i], n, (unsigned long long)S.skipped);
        CHECK_EQ(n, 2);
        CHECK_EQ(S.skipped, 1);
        CHECK(get("before", NULL, NULL) == 1);
        CHECK(get("after", NULL, NULL) == 2);
        CHECK_EQ(S.nlabels, 0); /* a failed line's labels are rolled back */
    }
    /* A NUL inside a label value. */
    const char nul[] = "x{a=\"1\0\"} 2\ny 3\n";
    spw_prom_clear(&S);
    CHECK_EQ(spw_prom_parse(&S, nul, sizeof nul - 1), 1);
    CHECK_EQ(S.skipped, 1);
}

static void test_bounds(void)
{
    /* A line longer than SPW_PROM_LINE_MAX is skipped whole, even if valid. */
    size_t big = SPW_PROM_LINE_MAX + 100;
    char *t = malloc(big + 64);
    size_t n = 0;
    n += (size_t)sprintf(t, "ok 1\nlong{v=\"");
    while (n < big)
        t[n++] = 'a';
    n += (size_t)sprintf(t + n, "\"} 5\nok2 2\n");
    spw_prom_clear(&S);
    CHECK_EQ(spw_prom_parse(&S, t, n), 2);
    CHECK_EQ(S.skipped, 1);
    double v;
    CHECK(!spw_prom_get(&S, "long", NULL, NULL, &v));
    /* A line of exactly the limit is read. */
    spw_prom_clear(&S);
    n = (size_t)sprintf(t, "exact{v=\"");
    while (n < SPW_PROM_LINE_MAX - 4)
        t[n++] = 'b';
    n += (size_t)sprintf(t + n, "\"} 5");
    CHECK_EQ(n, SPW_PROM_LINE_MAX);
    CHECK_EQ(spw_prom_parse(&S, t, n), 1);
    /* A comment of any length is ignored, not counted (only if short enough). */
    CHECK_EQ(parse("# a comment with } { \" and \\ in it\n"), 0);
    CHECK_EQ(S.skipped, 0);
    free(t);

    /* Names over SPW_PROM_NAME_MAX. */
    char name[SPW_PROM_NAME_MAX + 20];
    memset(name, 'n', sizeof name);
    sprintf(name + SPW_PROM_NAME_MAX + 1, " 1\n");
    CHECK_EQ(parse(name), 0);
    CHECK_EQ(S.skipped, 1);
    memset(name, 'n', sizeof name);
    sprintf(name + SPW_PROM_NAME_MAX, " 1\n");
    CHECK_EQ(parse(name), 1);

    /* At most SPW_PROM_LABELS_MAX labels. */
    char line[1024];
    n = (size_t)sprintf(line, "m{");
    for (int i = 0; i < SPW_PROM_LABELS_MAX; i++)
        n += (size_t)sprintf(line + n, "l%d=\"%d\",", i, i);
    sprintf(line + n, "} 1\n");
    CHECK_EQ(parse(line), 1);
    CHECK(get("m", "l15", "15") == 1);
    sprintf(line + n, "extra=\"x\"} 1\n");
    CHECK_EQ(parse(line), 0);
    CHECK_EQ(S.skipped, 1);

    /* At most SPW_PROM_SAMPLES_MAX samples; the rest are counted. */
    size_t lines = SPW_PROM_SAMPLES_MAX + 10;
    char *many = malloc(lines * 8);
    n = 0;
    for (size_t i = 0; i < lines; i++)
        n += (size_t)sprintf(many + n, "k %zu\n", i % 10);
    spw_prom_clear(&S);
    CHECK_EQ(spw_prom_parse(&S, many, n), SPW_PROM_SAMPLES_MAX);
    CHECK_EQ(S.skipped, 10);
    free(many);

    /* Random bytes never crash it and never yield labels without samples. */
    srand(7);
    char *junk = malloc(1 << 16);
    for (int round = 0; round < 200; round++) {
        size_t m = (size_t)(rand() % (1 << 16));
        for (size_t i = 0; i < m; i++) {
            int r = rand() % 16;
            junk[i] = r < 8 ? "x{}=\",\\ \n#1e+I"[rand() % 15] : (char)(rand() & 0xff);
        }
        spw_prom_clear(&S);
        long k = spw_prom_parse(&S, junk, m);
        CHECK(k >= 0);
        for (size_t i = 0; i < S.n; i++)
            CHECK(S.samples[i].label0 + S.samples[i].nlabels <= S.nlabels);
    }
    free(junk);
}

static void test_hist(void)
{
    CHECK_EQ(parse("h_bucket{le=\"0.004\"} 3\n"
                   "h_bucket{le=\"0.001\"} 1\n"
                   "h_bucket{le=\"+Inf\"} 10\n"
                   "h_bucket{le=\"0.002\"} 2\n"
                   "h_bucket{le=\"0.002\"} 99\n" /* repeated bound: the first stays */
                   "h_bucket{le=\"zz\"} 5\n"     /* not a number: left out */
                   "h_bucket 5\n"                /* no le: left out */
                   "h_sum 1.0\nh_count 10\n"
                   "other_bucket{le=\"1\"} 4\n"),
             10);
    double le[SPW_PROM_HIST_MAX], cum[SPW_PROM_HIST_MAX];
    size_t n = spw_prom_hist(&S, "h", le, cum, SPW_PROM_HIST_MAX);
    CHECK_EQ(n, 4);
    CHECK(le[0] == 0.001 && cum[0] == 1);
    CHECK(le[1] == 0.002 && cum[1] == 2);
    CHECK(le[2] == 0.004 && cum[2] == 3);
    CHECK(isinf(le[3]) && cum[3] == 10);
    CHECK_EQ(spw_prom_hist(&S, "h", le, cum, 2), 2);
    CHECK_EQ(spw_prom_hist(&S, "nope", le, cum, SPW_PROM_HIST_MAX), 0);

    /* Quantiles interpolate inside the bucket. */
    double l2[] = {1, 2, 4, INFINITY}, c2[] = {10, 20, 40, 40};
    CHECK(fabs(spw_prom_quantile(l2, c2, 4, 0.5) - 2) < 1e-9);  /* rank 20: top of (1,2] */
    CHECK(fabs(spw_prom_quantile(l2, c2, 4, 0.25) - 1) < 1e-9); /* rank 10: top of (0,1] */
    CHECK(fabs(spw_prom_quantile(l2, c2, 4, 0.125) - 0.5) < 1e-9);
    CHECK(fabs(spw_prom_quantile(l2, c2, 4, 0.75) - 3) < 1e-9); /* rank 30: middle of (2,4] */
    /* In the +Inf bucket: the largest finite bound. */
    double c3[] = {0, 0, 1, 10};
    CHECK(spw_prom_quantile(l2, c3, 4, 0.99) == 4);
    /* Empty, degenerate and bad q. */
    double c0[] = {0, 0, 0, 0};
    CHECK(isnan(spw_prom_quantile(l2, c0, 4, 0.5)));
    CHECK(isnan(spw_prom_quantile(l2, c2, 0, 0.5)));
    CHECK(isnan(spw_prom_quantile(l2, c2, 4, 0)));
    CHECK(isnan(spw_prom_quantile(l2, c2, 4, 1.5)));
    double linf[] = {INFINITY}, cinf[] = {5};
    CHECK(isnan(spw_prom_quantile(linf, cinf, 1, 0.5)));
}

/* The shape handle_metrics (src/http/api.c) writes. */
static void test_server_shape(void)
{
    CHECK_EQ(parse("# TYPE spillway_events_in_total counter\nspillway_events_in_total 120\n"
                   "# TYPE spillway_stream_events_in_total counter\n"
                   "spillway_stream_events_in_total{stream=\"gps\"} 100\n"
                   "spillway_stream_events_in_total{stream=\"clicks\"} 20\n"
                   "spillway_partition_end_offset{stream=\"gps\",partition=\"0\"} 50\n"
                   "spillway_rejected_total{reason=\"invalid\"} 3\n"
                   "spillway_rejected_total{reason=\"rate_limit\"} 0\n"
                   "# HELP spillway_log_fsync_seconds time of each group commit's fdatasync round\n"
                   "# TYPE spillway_log_fsync_seconds histogram\n"
                   "spillway_log_fsync_seconds_bucket{le=\"1e-06\"} 0\n"
                   "spillway_log_fsync_seconds_bucket{le=\"0.000512\"} 4\n"
                   "spillway_log_fsync_seconds_bucket{le=\"+Inf\"} 4\n"
                   "spillway_log_fsync_seconds_sum 0.001500\n"
                   "spillway_log_fsync_seconds_count 4\n"),
             11);
    CHECK(get("spillway_events_in_total", NULL, NULL) == 120);
    CHECK(get("spillway_stream_events_in_total", "stream", "clicks") == 20);
    CHECK(get("spillway_partition_end_offset", "partition", "0") == 50);
    CHECK(get("spillway_rejected_total", "reason", "invalid") == 3);
    double le[8], cum[8];
    CHECK_EQ(spw_prom_hist(&S, "spillway_log_fsync_seconds", le, cum, 8), 3);
    CHECK(fabs(le[0] - 1e-6) < 1e-12);
}

int main(void)
{
    spw_prom_init(&S);
    test_basic();
    test_escapes_and_crlf();
    test_malformed();
    test_bounds();
    test_hist();
    test_server_shape();
    spw_prom_fini(&S);
    puts("test_promtext ok");
    return 0;
}
