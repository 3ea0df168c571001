/*
 * spw_json_bench: our strict JSON scanner (src/core/json.c) against jansson
 * on the server's real per-event job, in one run.
 *
 * The job (what produce does per event, src/http/api.c take_event, minus
 * the bookkeeping): validate one event, require an object with nothing but
 * whitespace after it, and extract two fields — the key /device_id (copied,
 * unescaped, into a key arena) and the timestamp /ts (an int64).
 *
 *   spillway: spw_json_scan with the two pointers (compiled once), then
 *             spw_json_unescape of the key span and spw_json_int64 of ts.
 *   jansson:  json_loadb, json_object_get "device_id" and "ts", the key's
 *             bytes copied into the same kind of arena, json_integer_value,
 *             json_decref — what a jansson user writes for the same job.
 *
 * jansson flags: JSON_ALLOW_NUL only. That is as close to our strictness as
 * jansson gets: both validate UTF-8 (no overlongs, surrogates, > U+10FFFF),
 * reject control characters, unknown escapes and unpaired \u surrogates, and
 * follow the RFC number grammar; we accept \u0000 (the event is stored as
 * received), so jansson gets JSON_ALLOW_NUL; neither rejects duplicate
 * member names (both keep the last one), so no JSON_REJECT_DUPLICATES; both
 * reject data after the value (jansson's EOF check, our trailing-whitespace
 * check). Remaining differences, none exercised here: jansson's depth limit
 * is 2048 (ours 64), and jansson rejects integers outside int64 and reals
 * that overflow a double anywhere in the document (we only care for /ts).
 *
 * Events are built deterministically (splitmix64, fixed seed) in three
 * sizes: ~100 B flat telemetry; ~1 KiB with nested objects, arrays, escapes,
 * \u escapes with surrogate pairs, raw UTF-8 and a decoy "device_id"/"ts"
 * pair inside a nested object (the pointers must pick the top-level ones);
 * ~10 KiB = the 1 KiB shape plus an array of sample objects. One key in 8
 * has escapes (\/ and \u00e9), one in 16 is raw UTF-8 (Cyrillic).
 *
 * Every event's extracted key and ts are checked, for both implementations,
 * against the values the generator wrote (and so against each other); any
 * mismatch is printed and the exit status is 1.
 *
 * Invalid events: for each size, a set (a quarter of the valid count) of
 * valid events corrupted near their middle, in turn: truncated; a bad
 * escape (\q, or an unpaired \ud800); invalid UTF-8 (0xff, the overlong
 * C0 AF, the encoded surrogate ED A0 80). Both must reject every one (else
 * exit 1); the time to reject is reported like the valid sets.
 *
 * Each measurement is one pass over a set; --reps passes (default 5) are
 * made per implementation, alternating spillway/jansson, and the MEDIAN
 * pass is reported. MB = 10^6 bytes of event text. ratio_to_jansson =
 * spillway events/s / jansson events/s (> 1: ours is faster).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/id.h"
#include "core/json.h"

#define JANSSON_FLAGS JSON_ALLOW_NUL
#define MB 1e6
#define MAX_REPS 51

/* ---- deterministic generation ---- */

static uint64_t g_rng = 0x5eed5eed12345678ull;
static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static unsigned rn(unsigned n) { return (unsigned)(rnd() % n); }

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + more)
        c *= 2;
    b->p = realloc(b->p, c);
    if (!b->p) {
        perror("realloc");
        exit(1);
    }
    b->cap = c;
}

static void sb_put(sbuf *b, const void *s, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    sb_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A set of events in one arena, with the expected key and ts of each. */
typedef struct evset {
    sbuf text;
    size_t *off, *len;
    size_t n, cap;
    sbuf keys;          /* expected decoded keys */
    size_t *koff, *klen;
    int64_t *ts;
} evset;

static void set_add(evset *s, size_t off, size_t len, size_t koff, size_t klen, int64_t ts)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->off = realloc(s->off, s->cap * sizeof *s->off);
        s->len = realloc(s->len, s->cap * sizeof *s->len);
        s->koff = realloc(s->koff, s->cap * sizeof *s->koff);
        s->klen = realloc(s->klen, s->cap * sizeof *s->klen);
        s->ts = realloc(s->ts, s->cap * sizeof *s->ts);
        if (!s->off || !s->len || !s->koff || !s->klen || !s->ts) {
            perror("realloc");
            exit(1);
        }
    }
    s->off[s->n] = off;
    s->len[s->n] = len;
    s->koff[s->n] = koff;
    s->klen[s->n] = klen;
    s->ts[s->n] = ts;
    s->n++;
}

static void set_free(evset *s)
{
    free(s->text.p);
    free(s->off);
    free(s->len);
    free(s->keys.p);
    free(s->koff);
    free(s->klen);
    free(s->ts);
}

enum { SZ_100B, SZ_1K, SZ_10K, NSIZES };
static const char *size_name[NSIZES] = {"100B", "1KiB", "10KiB"};
static const size_t size_target[NSIZES] = {100, 1024, 10240};

/* Writes the key (JSON text into b, decoded into keys). */
static void put_key(sbuf *b, sbuf *keys, unsigned i)
{
    char dec[64];
    if (i % 8 == 7) {
        sb_printf(b, "\"sensor\\/eu-w\\u00e9st-%06u\"", i);
        snprintf(dec, sizeof dec, "sensor/eu-w\xc3\xa9st-%06u", i);
    } else if (i % 16 == 3) {
        sb_printf(b, "\"\xd0\xb4\xd0\xb0\xd1\x82\xd1\x87\xd0\xb8\xd0\xba-%06u\"", i);
        snprintf(dec, sizeof dec, "\xd0\xb4\xd0\xb0\xd1\x82\xd1\x87\xd0\xb8\xd0\xba-%06u", i);
    } else {
        sb_printf(b, "\"sensor-%06u\"", i);
        snprintf(dec, sizeof dec, "sensor-%06u", i);
    }
    sb_put(keys, dec, strlen(dec));
}

static void gen_event(evset *s, int size, unsigned i)
{
    sbuf *b = &s->text;
    size_t off = b->len, koff = s->keys.len;
    int64_t ts = 1718000000000ll + (int64_t)i * 37 + rn(1000);
    if (size == SZ_100B) {
        sb_printf(b, "{\"device_id\":");
        put_key(b, &s->keys, i);
        sb_printf(b, ",\"ts\":%" PRId64 ",\"temp\":%u.%02u,\"hum\":%u.%u,\"ok\":%s,\"fw\":\"4.2.%u\"}", ts,
                  15 + rn(20), rn(100), 30 + rn(50), rn(10), rn(8) ? "true" : "false", rn(10));
    } else {
        sb_printf(b,
                  "{\"schema\":\"telemetry/v3\",\"meta\":{\"device_id\":\"gw-%04u\",\"ts\":%u,\"fw\":\"4.2.%u\","
                  "\"site\":\"Z\xc3\xbcrich \\\"north\\\" hall\"},\"device_id\":",
                  rn(10000), rn(100000), rn(20));
        put_key(b, &s->keys, i);
        sb_printf(b,
                  ",\"seq\":%u,\"loc\":{\"lat\":47.%06u,\"lon\":8.%06u,\"alt_m\":%d,\"fix\":\"3d\"},"
                  "\"readings\":{\"temp_c\":%u.%02u,\"hum_pct\":%u.%u,\"pressure_hpa\":%u.%02u,\"co2_ppm\":%u,"
                  "\"pm25\":%u.%u,\"voltage\":%u.%03u,\"rssi_dbm\":-%u},\"vibration\":[",
                  i, rn(1000000), rn(1000000), (int)rn(600) - 50, 15 + rn(20), rn(100), 30 + rn(50), rn(10),
                  950 + rn(100), rn(100), 400 + rn(1200), rn(80), rn(10), 3, rn(1000), 40 + rn(60));
        for (int k = 0; k < 16; k++)
            sb_printf(b, "%s%u.%03ue-%u", k ? "," : "", 1 + rn(9), rn(1000), 1 + rn(4));
        sb_printf(b,
                  "],\"tags\":[\"indoor\",\"floor-%u\",\"zone\\/b\",\"\\u00e9t\\u00e9\","
                  "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\",\"\xf0\x9f\x9a\x80\"],"
                  "\"flags\":{\"calibrated\":true,\"battery_low\":%s,\"maintenance\":null,\"errors\":[]},"
                  "\"note\":\"line1\\nline2\\ttab \\\"quoted\\\" \\\\ back \\u263A \\ud83d\\ude00 "
                  "\xc3\xbcn\xc3\xaf\x63\xc3\xb6\x64\xc3\xa9 \xe2\x82\xac%u.%02u\",\"counters\":{\"tx\":%u,\"rx\":%u,"
                  "\"drops\":%u,\"retries\":%u,\"uptime_s\":%u,\"boot\":%u}",
                  rn(40), rn(20) ? "false" : "true", rn(1000), rn(100), rn(1u << 30), rn(1u << 30), rn(100),
                  rn(1000), rn(1u << 24), rn(500));
        if (size == SZ_10K) {
            sb_printf(b, ",\"samples\":[");
            for (int k = 0; b->len - off < size_target[size] - 200; k++)
                sb_printf(b, "%s{\"t\":%" PRId64 ",\"v\":%u.%03u,\"q\":\"%s\"}", k ? "," : "", ts - 10000 + k * 10,
                          rn(100), rn(1000), rn(50) ? "ok" : "susp\\u00e9ct");
            sb_printf(b, "]");
        }
        /* Pad the message so the event lands near its size. */
        sb_printf(b, ",\"msg\":\"");
        while (b->len - off < size_target[size] - 30)
            sb_printf(b, "%s", rn(6) ? "reading ok " : "\\t\\\"retry\\\" ");
        sb_printf(b, "\",\"ts\":%" PRId64 "}", ts);
    }
    set_add(s, off, b->len - off, koff, s->keys.len - koff, ts);
}

/* An invalid copy of event i of src, appended to dst; kind in 0..2. */
static void gen_invalid(evset *dst, const evset *src, size_t i, unsigned k)
{
    const char *e = src->text.p + src->off[i];
    size_t n = src->len[i], off = dst->text.len;
    /* A string value starting at or after the middle ("x":"...), else the first one. */
    size_t at = 0;
    for (size_t j = n / 2; j + 2 < n && !at; j++)
        if (e[j] == ':' && e[j + 1] == '"')
            at = j + 2;
    for (size_t j = 0; j + 2 < n && !at; j++)
        if (e[j] == ':' && e[j + 1] == '"')
            at = j + 2;
    static const char *bad_esc[] = {"\\q", "\\ud800x"};
    static const char *bad_utf8[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80"};
    switch (k % 3) {
    case 0: /* truncated: a strict prefix of an object is never valid */
        sb_put(&dst->text, e, n / 2 + rn((unsigned)(n / 2)));
        break;
    case 1:
        sb_put(&dst->text, e, at);
        sb_put(&dst->text, bad_esc[k / 3 % 2], strlen(bad_esc[k / 3 % 2]));
        sb_put(&dst->text, e + at, n - at);
        break;
    default:
        sb_put(&dst->text, e, at);
        sb_put(&dst->text, bad_utf8[k / 3 % 3], strlen(bad_utf8[k / 3 % 3]));
        sb_put(&dst->text, e + at, n - at);
        break;
    }
    set_add(dst, off, dst->text.len - off, 0, 0, 0);
}

/* ---- the two implementations ---- */

typedef struct result {
    uint8_t *ok;
    size_t *koff, *klen;
    int64_t *ts;
    char *keys;
    size_t keys_cap;
    size_t nok;
} result;

static void res_init(result *r, const evset *s)
{
    r->ok = calloc(s->n, 1);
    r->koff = calloc(s->n, sizeof *r->koff);
    r->klen = calloc(s->n, sizeof *r->klen);
    r->ts = calloc(s->n, sizeof *r->ts);
    r->keys_cap = s->text.len; /* a key is never longer than its event */
    r->keys = malloc(r->keys_cap);
    if (!r->ok || !r->koff || !r->klen || !r->ts || !r->keys) {
        perror("malloc");
        exit(1);
    }
}

static void res_free(result *r)
{
    free(r->ok);
    free(r->koff);
    free(r->klen);
    free(r->ts);
    free(r->keys);
}

static spw_json_ptr g_ptrs[2];

/* What take_event does: scan with the two pointers, require an object with
 * nothing after it, unescape the key into the arena, parse ts. */
static void run_spillway(const evset *s, result *r)
{
    size_t kl = 0, nok = 0;
    for (size_t i = 0; i < s->n; i++) {
        const char *p = s->text.p + s->off[i], *end = p + s->len[i], *vend;
        spw_json_span found[2];
        spw_json_error e;
        r->ok[i] = 0;
        if (spw_json_scan(p, end, g_ptrs, 2, found, &vend, &e))
            continue;
        const char *start = spw_json_ws(p, end);
        if (*start != '{' || spw_json_ws(vend, end) != end)
            continue;
        spw_json_span *k = &found[0];
        long n;
        if (k->type == SPW_JSON_STRING)
            n = spw_json_unescape(k, r->keys + kl, k->n);
        else if (k->type == SPW_JSON_NUMBER)
            memcpy(r->keys + kl, k->p, (size_t)(n = (long)k->n));
        else
            continue;
        if (n < 0 || spw_json_int64(&found[1], &r->ts[i]))
            continue;
        r->koff[i] = kl;
        r->klen[i] = (size_t)n;
        kl += (size_t)n;
        r->ok[i] = 1;
        nok++;
    }
    r->nok = nok;
}

static void run_jansson(const evset *s, result *r)
{
    size_t kl = 0, nok = 0;
    for (size_t i = 0; i < s->n; i++) {
        json_error_t err;
        r->ok[i] = 0;
        json_t *root = json_loadb(s->text.p + s->off[i], s->len[i], JANSSON_FLAGS, &err);
        if (!root)
            continue;
        json_t *k = json_object_get(root, "device_id"), *t = json_object_get(root, "ts");
        if (json_is_object(root) && json_is_string(k) && json_is_integer(t)) {
            size_t n = json_string_length(k);
            memcpy(r->keys + kl, json_string_value(k), n);
            r->koff[i] = kl;
            r->klen[i] = n;
            r->ts[i] = (int64_t)json_integer_value(t);
            kl += n;
            r->ok[i] = 1;
            nok++;
        }
        json_decref(root);
    }
    r->nok = nok;
}

/* Checks r against the generator's values (valid sets) or that every event
 * was rejected (invalid sets). Returns the number of problems. */
static size_t check(const char *impl, const char *set, const evset *s, const result *r, int valid)
{
    size_t bad = 0;
    for (size_t i = 0; i < s->n; i++) {
        int wrong;
        if (!valid)
            wrong = r->ok[i];
        else
            wrong = !r->ok[i] || r->ts[i] != s->ts[i] || r->klen[i] != s->klen[i] ||
                    memcmp(r->keys + r->koff[i], s->keys.p + s->koff[i], s->klen[i]) != 0;
        if (wrong && bad++ < 5) {
            int shown = s->len[i] > 160 ? 160 : (int)s->len[i];
            if (!valid)
                printf("MISMATCH %s %s event %zu: accepted an invalid event: %.*s%s\n", impl, set, i, shown,
                       s->text.p + s->off[i], shown < (int)s->len[i] ? "..." : "");
            else if (!r->ok[i])
                printf("MISMATCH %s %s event %zu: rejected a valid event: %.*s%s\n", impl, set, i, shown,
                       s->text.p + s->off[i], shown < (int)s->len[i] ? "..." : "");
            else
                printf("MISMATCH %s %s event %zu: key \"%.*s\" ts %" PRId64 ", expected \"%.*s\" ts %" PRId64 "\n",
                       impl, set, i, (int)r->klen[i], r->keys + r->koff[i], r->ts[i], (int)s->klen[i],
                       s->keys.p + s->koff[i], s->ts[i]);
        }
    }
    if (bad)
        printf("MISMATCH %s %s: %zu of %zu events wrong\n", impl, set, bad, s->n);
    return bad;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct meas {
    double events_per_s, mb_per_s, ns_per_event, min_ns, max_ns;
} meas;

typedef struct row {
    const char *size, *set;
    size_t n;
    double avg_bytes;
    meas m[2]; /* 0 spillway, 1 jansson */
    double ratio;
    size_t problems;
} row;

static void measure(row *rw, const evset *s, int valid, int reps)
{
    result r[2];
    double ns[2][MAX_REPS];
    static const char *impl[2] = {"spillway", "jansson"};
    res_init(&r[0], s);
    res_init(&r[1], s);
    rw->n = s->n;
    rw->avg_bytes = (double)s->text.len / (double)s->n;
    rw->problems = 0;
    for (int rep = 0; rep < reps; rep++)
        for (int j = 0; j < 2; j++) {
            int w = rep % 2 ? 1 - j : j; /* alternate which goes first */
            uint64_t t0 = spw_mono_ns();
            if (w == 0)
                run_spillway(s, &r[0]);
            else
                run_jansson(s, &r[1]);
            ns[w][rep] = (double)(spw_mono_ns() - t0);
            if (rep == 0 || rep == reps - 1)
                rw->problems += check(impl[w], rw->set, s, &r[w], valid);
        }
    for (int w = 0; w < 2; w++) {
        qsort(ns[w], (size_t)reps, sizeof(double), cmp_double);
        double med = reps % 2 ? ns[w][reps / 2] : (ns[w][reps / 2 - 1] + ns[w][reps / 2]) / 2;
        meas *m = &rw->m[w];
        m->ns_per_event = med / (double)s->n;
        m->events_per_s = (double)s->n / (med / 1e9);
        m->mb_per_s = (double)s->text.len / MB / (med / 1e9);
        m->min_ns = ns[w][0] / (double)s->n;
        m->max_ns = ns[w][reps - 1] / (double)s->n;
    }
    rw->ratio = rw->m[0].events_per_s / rw->m[1].events_per_s;
    res_free(&r[0]);
    res_free(&r[1]);
}

static void print_bench(const row *rw, const char *size_label)
{
    static const char *impl[2] = {"spillway", "jansson"};
    for (int w = 0; w < 2; w++)
        printf("BENCH json size=%s impl=%s events_per_s=%.0f mb_per_s=%.1f ns_per_event=%.1f\n", size_label, impl[w],
               rw->m[w].events_per_s, rw->m[w].mb_per_s, rw->m[w].ns_per_event);
    printf("BENCH json size=%s ratio_to_jansson=%.2f\n", size_label, rw->ratio);
    fflush(stdout);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: spw_json_bench [--events N] [--reps R]\n"
               "  --events N  valid events per size for 100B and 1KiB (default 100000); 10KiB gets N/5;\n"
               "              each size also gets N/4 (10KiB: N/20) invalid events\n"
               "  --reps R    passes per implementation and set, median reported (default 5, odd, <= %d)\n",
            MAX_REPS);
}

int main(int argc, char **argv)
{
    long nev = 100000;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        int bad;
        if (!strcmp(a, "--events"))
            bad = (nev = atol(v)) < 20;
        else if (!strcmp(a, "--reps"))
            bad = (reps = atoi(v)) < 1 || reps > MAX_REPS;
        else {
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "spw_json_bench: bad value for %s: %s\n", a, v);
            return 2;
        }
        i++;
    }
    if (spw_json_ptr_compile(&g_ptrs[0], "/device_id") || spw_json_ptr_compile(&g_ptrs[1], "/ts")) {
        fprintf(stderr, "spw_json_bench: cannot compile the pointers\n");
        return 1;
    }

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double load = -1;
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf", &load) != 1)
            load = -1;
        fclose(lf);
    }
    printf("spw_json_bench: spillway spw_json_scan vs jansson %s (json_loadb flags JSON_ALLOW_NUL), "
           "one thread, %ld CPUs, load average %.2f\n",
           JANSSON_VERSION, ncpu, load);
    printf("job per event: validate, require an object, extract /device_id (unescaped copy) and /ts (int64); "
           "median of %d passes\n",
           reps);
    fflush(stdout);

    row rows[2 * NSIZES];
    int nrows = 0;
    size_t problems = 0;
    for (int sz = 0; sz < NSIZES; sz++) {
        size_t n = (size_t)(sz == SZ_10K ? nev / 5 : nev);
        evset valid = {0}, invalid = {0};
        for (size_t i = 0; i < n; i++)
            gen_event(&valid, sz, (unsigned)i);
        for (size_t i = 0; i < n / 4; i++)
            gen_invalid(&invalid, &valid, (i * 7919) % n, (unsigned)i);

        row *rv = &rows[nrows++];
        rv->size = size_name[sz];
        rv->set = "valid";
        measure(rv, &valid, 1, reps);
        print_bench(rv, size_name[sz]);
        problems += rv->problems;

        char label[32];
        snprintf(label, sizeof label, "%s-invalid", size_name[sz]);
        row *ri = &rows[nrows++];
        ri->size = size_name[sz];
        ri->set = "invalid";
        measure(ri, &invalid, 0, reps);
        print_bench(ri, label);
        problems += ri->problems;
        set_free(&valid);
        set_free(&invalid);
    }

    printf("\n%-6s %-7s %7s %6s | %12s %8s %8s | %12s %8s %8s | %6s\n", "size", "set", "events", "avg B",
           "spillway/s", "MB/s", "ns/ev", "jansson/s", "MB/s", "ns/ev", "ratio");
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        printf("%-6s %-7s %7zu %6.0f | %12.0f %8.1f %8.1f | %12.0f %8.1f %8.1f | %6.2f\n", r->size, r->set, r->n,
               r->avg_bytes, r->m[0].events_per_s, r->m[0].mb_per_s, r->m[0].ns_per_event, r->m[1].events_per_s,
               r->m[1].mb_per_s, r->m[1].ns_per_event, r->ratio);
    }
    printf("(median of %d passes; ratio = spillway events/s / jansson events/s; MB = 10^6 bytes of event text;\n"
           " invalid = truncated / bad escape / invalid UTF-8 in turn, rejected by both; spread of ns/event\n"
           " over the passes, min-max:",
           reps);
    for (int i = 0; i < nrows; i++)
        printf("%s %s %s %.0f-%.0f / %.0f-%.0f", i ? ";" : "", rows[i].size, rows[i].set, rows[i].m[0].min_ns,
               rows[i].m[0].max_ns, rows[i].m[1].min_ns, rows[i].m[1].max_ns);
    printf(")\n");
    if (problems) {
        printf("FAILED: %zu mismatches (see MISMATCH lines)\n", problems);
        return 1;
    }
    printf("all events: both implementations agree with the generated key and ts; every invalid event rejected "
           "by both\n");
    return 0;
}
