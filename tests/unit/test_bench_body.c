/*
 * `spillway bench`'s load, written without printf (src/cli/bench.c): the
 * bytes must be what the printf formats gave, so runs before and after
 * measure the same events.
 *
 *   1. spw__bench_dec_fixed equals %0*u for widths 10, 11 and 12 over
 *      edge values (0, 9, 10, powers of ten and one below, UINT32_MAX).
 *   2. spw__bench_body's NDJSON equals, line by line, the printf format
 *      it replaced ({"k":"key-%011u","c":%u,"seq":%llu,"v":"%s"}\n), for
 *      several clients, first offsets around powers of ten and 2^32, and
 *      the pad of two event sizes.
 */
#include "cli/bench_int.h"
#include "test.h"

static void check_fixed(uint64_t v, size_t width)
{
    char got[32], want[32];
    size_t n = spw__bench_dec_fixed(got, v, width);
    int wn = snprintf(want, sizeof want, "%0*" PRIu64, (int)width, v);
    if (n != (size_t)wn || memcmp(got, want, n) != 0)
        fprintf(stderr, "%" PRIu64 " width %zu: got %.*s, want %s\n", v, width, (int)n, got, want);
    CHECK_EQ(n, wn);
    CHECK(memcmp(got, want, n) == 0);
}

static void check_body(const bench_cfg *c, uint32_t id, uint64_t first, uint32_t n)
{
    char *pad = spw__bench_pad(c);
    spw_buf b = {0};
    spw__bench_body(&b, c, id, first, n, pad);
    size_t cap = (size_t)n * ((size_t)c->size + 128), wl = 0;
    char *want = malloc(cap);
    CHECK(want);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t seq = first + i;
        uint32_t key = (uint32_t)((seq * 2654435761u + id * 40503u) % c->keys);
        wl += (size_t)snprintf(want + wl, cap - wl, "{\"k\":\"key-%011u\",\"c\":%u,\"seq\":%" PRIu64 ",\"v\":\"%s\"}\n",
                               key, id, seq, pad);
    }
    if (b.len != wl || memcmp(b.p, want, wl) != 0)
        fprintf(stderr, "client %u from %" PRIu64 ": got\n%.*s\nwant\n%s\n", id, first, (int)b.len, (char *)b.p, want);
    CHECK_EQ(b.len, wl);
    CHECK(memcmp(b.p, want, wl) == 0);
    free(want);
    spw_buf_fini(&b);
    spw_free(pad);
}

int main(void)
{
    static const uint64_t vals[] = {0, 1, 9, 10, 99, 100, 999999999, 1000000000, 4294967295u, 12345678901ull};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        for (size_t w = 10; w <= 12; w++)
            check_fixed(vals[i], w);

    bench_cfg c;
    memset(&c, 0, sizeof c);
    c.keys = 1000;
    static const uint32_t sizes[] = {100, 300};
    static const uint32_t ids[] = {0, 7, 49, 123456};
    static const uint64_t firsts[] = {0, 95, 999990, 4294967290ull};
    for (size_t s = 0; s < 2; s++) {
        c.size = sizes[s];
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
            for (size_t f = 0; f < sizeof firsts / sizeof firsts[0]; f++)
                check_body(&c, ids[i], firsts[f], 20);
    }
    c.keys = 4000000000u; /* keys of 10 digits */
    check_body(&c, 3, 1u << 31, 50);
    printf("bench load: fixed-width decimals and NDJSON bodies match printf's\n");
    return 0;
}
