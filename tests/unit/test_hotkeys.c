/*
 * catalog/hotkeys.h: the hot_keys definition (parse, canonical round trip),
 * routing of split keys (distinct partitions, idempotent requests route the
 * same every time), the heavy-hitters table (a key above 1/32 of a window
 * is always in it; the threshold is a lower bound), the durable record of
 * automatic splits (kept across a reopen, only once recorded) and a
 * damaged file (reported, its splits not applied, no crash).
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "catalog/hotkeys.h"
#include "catalog/stream.h"
#include "test.h"

static spw_stream_config def(const char *body)
{
    spw_stream_config c;
    char err[256] = "";
    if (spw_stream_config_parse(&c, "s", body, strlen(body), err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", body, err);
        CHECK(0);
    }
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_stream_config_json(&c, &b));
    spw_stream_config d;
    CHECK(spw_stream_config_parse(&d, "s", (char *)b.p, b.len, err, sizeof err) == 0);
    CHECK(spw_stream_config_equal(&c, &d));
    spw_buf_fini(&b);
    return c;
}

static spw_record rec(const char *k) { return (spw_record){.key = k, .key_len = (int32_t)strlen(k)}; }

static uint32_t route(spw_hot *h, const char *k, uint32_t P, uint64_t idem, uint32_t i)
{
    uint32_t home = spw_stream_partition(k, strlen(k), P);
    uint32_t p = spw_hot_route(h, k, strlen(k), home, P, idem, i);
    return p == UINT32_MAX ? home : p;
}

static void listed(const char *dir)
{
    spw_stream_config c = def("{\"partitions\":8,\"hot_keys\":{\"split\":3,\"keys\":[\"a\",\"b\\\"q\"]}}");
    CHECK_EQ(c.hot_split, 3);
    CHECK_EQ(c.hot_nkeys, 2);
    CHECK(strcmp(c.hot_keys[1], "b\"q") == 0);
    spw_hot *h;
    CHECK_OK(spw_hot_open(&c, dir, &h));
    /* "a": three distinct partitions starting at its own, in turn */
    uint32_t home = spw_stream_partition("a", 1, 8), seen = 0;
    for (uint32_t i = 0; i < 30; i++) {
        uint32_t p = route(h, "a", 8, 0, 0);
        CHECK(p == home || p == (home + 1) % 8 || p == (home + 2) % 8);
        seen |= 1u << p;
    }
    CHECK_EQ(__builtin_popcount(seen), 3);
    /* with an idempotency key: the same partitions on every call */
    for (uint32_t i = 0; i < 10; i++)
        CHECK_EQ(route(h, "a", 8, 77, i), route(h, "a", 8, 77, i));
    CHECK_EQ(route(h, "a", 8, 77, 0), (home + 77 % 3) % 8);
    /* a key not split: its own partition */
    for (int i = 0; i < 5; i++)
        CHECK_EQ(route(h, "zz", 8, 0, 0), spw_stream_partition("zz", 2, 8));
    spw_hot_split_info sp[SPW_HOT_SPLITS];
    CHECK_EQ(spw_hot_splits(h, sp, SPW_HOT_SPLITS), 2);
    spw_hot_close(h);
}

static void automatic(const char *dir)
{
    /* 10 events/s over 1 s windows: more than 10 in a window */
    spw_stream_config c = def("{\"partitions\":4,\"hot_keys\":{\"split\":4,\"above_per_s\":10,\"window_ms\":1000,\"top\":3}}");
    spw_hot *h;
    CHECK_OK(spw_hot_open(&c, dir, &h));
    spw_hot_cand cand[4];
    spw_record r[64];
    /* 40 distinct keys once each, then "hot" 10 times: nothing over 10 */
    char keys[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        r[i] = rec(keys[i]);
    }
    CHECK_EQ(spw_hot_count(h, r, 40, 1000, cand, 4), 0);
    for (int i = 0; i < 10; i++)
        r[i] = rec("hot");
    CHECK_EQ(spw_hot_count(h, r, 10, 1100, cand, 4), 0);
    /* the 11th: but "hot" entered a full table on an evicted counter, so
     * its lower bound (count - error) is 10 at most: not yet */
    r[0] = rec("hot");
    uint32_t n = spw_hot_count(h, r, 1, 1200, cand, 4);
    for (int i = 0; n == 0 && i < 20; i++)
        n = spw_hot_count(h, r, 1, 1200, cand, 4);
    CHECK_EQ(n, 1);
    CHECK(strcmp(cand[0].key, "hot") == 0);
    /* pending: not routed as split, not proposed again */
    CHECK_EQ(spw_hot_route(h, "hot", 3, 0, 4, 0, 0), UINT32_MAX);
    CHECK_EQ(spw_hot_count(h, r, 1, 1300, cand + 1, 3), 0);
    CHECK_OK(spw_hot_record(h, cand, 1234567));
    CHECK(spw_hot_route(h, "hot", 3, 0, 4, 0, 0) != UINT32_MAX);
    /* the window that ended is the one the top shows */
    spw_hot_top_info top[SPW_HOT_TOP_MAX];
    CHECK_EQ(spw_hot_top(h, 1500, top, SPW_HOT_TOP_MAX), 0); /* the first window is not complete */
    uint32_t nt = spw_hot_top(h, 2100, top, SPW_HOT_TOP_MAX);
    CHECK(nt >= 1 && nt <= 3);
    CHECK(strcmp(top[0].key, "hot") == 0);
    CHECK(top[0].events >= 12);
    CHECK_EQ(spw_hot_top(h, 5000, top, SPW_HOT_TOP_MAX), 0); /* stale: empty windows since */
    spw_hot_close(h);
    /* reopened: the split is in effect, with its decision */
    CHECK_OK(spw_hot_open(&c, dir, &h));
    CHECK(spw_hot_route(h, "hot", 3, 0, 4, 0, 0) != UINT32_MAX);
    spw_hot_split_info sp[SPW_HOT_SPLITS];
    CHECK_EQ(spw_hot_splits(h, sp, SPW_HOT_SPLITS), 1);
    CHECK(sp[0].automatic && sp[0].at_ms == 1234567 && sp[0].split == 4);
    /* a second split keeps the first in the file */
    for (int i = 0; i < 64; i++)
        r[i] = rec("second");
    CHECK_EQ(spw_hot_count(h, r, 64, 900000, cand, 4), 1);
    CHECK_OK(spw_hot_record(h, cand, 7));
    spw_hot_close(h);
    CHECK_OK(spw_hot_open(&c, dir, &h));
    CHECK_EQ(spw_hot_splits(h, sp, SPW_HOT_SPLITS), 2);
    spw_hot_close(h);
    /* every damaged byte: the stream opens, without the automatic splits */
    char path[4200];
    snprintf(path, sizeof path, "%s/hot_keys", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    for (off_t at = 0; at < st.st_size; at += 7) {
        int fd = open(path, O_RDWR);
        CHECK(fd >= 0);
        unsigned char b;
        CHECK(pread(fd, &b, 1, at) == 1);
        b ^= 0x41;
        CHECK(pwrite(fd, &b, 1, at) == 1);
        CHECK_OK(spw_hot_open(&c, dir, &h));
        CHECK_EQ(spw_hot_splits(h, sp, SPW_HOT_SPLITS), 0);
        spw_hot_close(h);
        b ^= 0x41;
        CHECK(pwrite(fd, &b, 1, at) == 1);
        close(fd);
    }
    CHECK(truncate(path, st.st_size - 1) == 0);
    CHECK_OK(spw_hot_open(&c, dir, &h));
    CHECK_EQ(spw_hot_splits(h, sp, SPW_HOT_SPLITS), 0);
    spw_hot_close(h);
}

int main(void)
{
    char *d1 = spw_test_tmpdir("hot1"), *d2 = spw_test_tmpdir("hot2");
    listed(d1);
    automatic(d2);
    spw_test_rmrf(d1);
    spw_test_rmrf(d2);
    free(d1);
    free(d2);
    printf("test_hotkeys: ok\n");
    return 0;
}
