/*
 * The rate-limit table (admit/ratelimit.h) with an injected clock: token
 * bucket refill, burst and retry-after values; sliding-window edges and
 * its guarantee (never more than the limit in any 1-second window);
 * limit changes; refunds; the memory bound and which entries eviction
 * picks; the default limit; keying by tenant or IP; header lines; and
 * takes from several threads losing no update. Nothing sleeps.
 */
#include <pthread.h>

#include "admit/ratelimit.h"
#include "test.h"

#define MS 1000000ull
#define S 1000000000ull
/* An arbitrary start, aligned to a second (so to a sliding-window slot). */
#define T0 (1000 * S)

static spw_rl_limit tb(double rate, double burst)
{
    return (spw_rl_limit){.rate = rate, .burst = burst, .algo = SPW_RL_TOKEN_BUCKET};
}

static spw_rl_limit sw(double rate)
{
    return (spw_rl_limit){.rate = rate, .algo = SPW_RL_SLIDING_WINDOW};
}

static int take(spw_rl_table *t, const char *key, spw_rl_limit lim, uint64_t n, uint64_t now, spw_rl_answer *a)
{
    return spw_rl_take(t, key, strlen(key), &lim, n, now, a);
}

static void test_token_bucket(void)
{
    spw_rl_table *t = spw_rl_create(1000);
    spw_rl_answer a;
    spw_rl_limit L = tb(10, 5);
    /* A new key starts full: the whole burst passes at once. */
    CHECK_EQ(take(t, "a", L, 5, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.limited, 1);
    CHECK_EQ(a.limit, 5);
    CHECK_EQ(a.remaining, 0);
    CHECK_EQ(a.reset_s, 1); /* 5 tokens at 10/s: 0.5 s, rounded up */
    /* Empty: one more event needs 1/10 s. */
    CHECK_EQ(take(t, "a", L, 1, T0, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 100);
    CHECK_EQ(a.remaining, 0);
    CHECK_EQ(take(t, "a", L, 1, T0 + 99 * MS, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1);
    /* Waiting exactly the announced time always suffices. */
    CHECK_EQ(take(t, "a", L, 1, T0 + 100 * MS, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.remaining, 0);
    /* Three requests' worth of events: 300 ms, refused whole. */
    CHECK_EQ(take(t, "a", L, 3, T0 + 100 * MS, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 300);
    CHECK_EQ(take(t, "a", L, 3, T0 + 399 * MS, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1);
    CHECK_EQ(take(t, "a", L, 3, T0 + 400 * MS, &a), SPW_RL_ALLOWED);
    /* Partial refill: 2 tokens after 200 ms; asking 5 waits for 3 more. */
    CHECK_EQ(take(t, "a", L, 5, T0 + 600 * MS, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 300);
    CHECK_EQ(a.remaining, 2);
    CHECK_EQ(take(t, "a", L, 1, T0 + 600 * MS, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.remaining, 1);
    CHECK_EQ(a.reset_s, 1); /* 4 missing tokens: 0.4 s */
    /* Refill stops at the burst: after a long pause, 5 and no more. */
    CHECK_EQ(take(t, "a", L, 5, T0 + 100 * S, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "a", L, 1, T0 + 100 * S, &a), SPW_RL_REFUSED);
    /* More than the burst can never pass: answered as such, nothing taken. */
    CHECK_EQ(take(t, "a", L, 6, T0 + 200 * S, &a), SPW_RL_OVER_BURST);
    CHECK_EQ(a.limit, 5);
    CHECK_EQ(a.remaining, 5);
    CHECK_EQ(a.reset_s, 0);
    CHECK_EQ(take(t, "a", L, 5, T0 + 200 * S, &a), SPW_RL_ALLOWED);
    /* Keys are independent. */
    CHECK_EQ(take(t, "b", L, 5, T0 + 200 * S, &a), SPW_RL_ALLOWED);
    /* Slow, fractional rates: 0.5/s, burst 1 → 2 s per event; reset in s. */
    spw_rl_limit slow = tb(0.5, 1);
    CHECK_EQ(take(t, "slow", slow, 1, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.reset_s, 2);
    CHECK_EQ(take(t, "slow", slow, 1, T0 + 1 * S, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1000);
    /* A fractional burst: 2.5 tokens, so 3 events never fit; limit says 2. */
    spw_rl_limit frac = tb(1, 2.5);
    CHECK_EQ(take(t, "frac", frac, 3, T0, &a), SPW_RL_OVER_BURST);
    CHECK_EQ(a.limit, 2);
    CHECK_EQ(take(t, "frac", frac, 2, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "frac", frac, 1, T0, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 500); /* 0.5 left, 0.5 more at 1/s */
    /* A clock read earlier by another thread: no refill, no harm. */
    CHECK_EQ(take(t, "frac", frac, 1, T0 - 5 * S, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 500);
    spw_rl_destroy(t);
}

/* Events accepted at each time; checks the bound over every window. */
typedef struct log_ {
    uint64_t *t;
    uint32_t *n;
    size_t len;
} log_;

static uint64_t max_in_window(const log_ *l, uint64_t width)
{
    uint64_t best = 0, sum = 0;
    size_t lo = 0;
    for (size_t hi = 0; hi < l->len; hi++) {
        sum += l->n[hi];
        while (l->t[hi] - l->t[lo] > width) /* closed window [t_lo, t_hi] of the given width */
            sum -= l->n[lo++];
        if (sum > best)
            best = sum;
    }
    return best;
}

static void test_sliding_window(void)
{
    const uint64_t W = SPW_RL_SLOT_NS;
    spw_rl_table *t = spw_rl_create(1000);
    spw_rl_answer a;
    spw_rl_limit L = sw(10);
    CHECK_EQ(take(t, "w", L, 10, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.limit, 10);
    CHECK_EQ(a.remaining, 0);
    CHECK_EQ(a.reset_s, 2); /* the slot leaves the counted window after 17 slots: 1.0625 s */
    /* Full: the next event waits until T0's slot leaves, 17 slots later. */
    CHECK_EQ(take(t, "w", L, 1, T0, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1063); /* 1062.5 ms, rounded up */
    CHECK_EQ(take(t, "w", L, 1, T0 + 17 * W - 1, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1);
    CHECK_EQ(take(t, "w", L, 1, T0 + 17 * W, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.remaining, 9);

    /* Edges: 5 at T0, 5 half a second later; only the first five leave
     * at T0 + 17 slots, the others 8 slots after that. */
    CHECK_EQ(take(t, "e", L, 5, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "e", L, 5, T0 + 8 * W, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "e", L, 1, T0 + 16 * W, &a), SPW_RL_REFUSED); /* still 1 s + the current slot */
    CHECK_EQ(a.retry_after_ms, 63);
    CHECK_EQ(take(t, "e", L, 5, T0 + 17 * W, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "e", L, 1, T0 + 17 * W, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 500); /* the T0+8W slot leaves at T0+25W */
    CHECK_EQ(take(t, "e", L, 6, T0 + 17 * W, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1063); /* needs the T0+17W slot gone too */
    /* A long pause clears everything. */
    CHECK_EQ(take(t, "e", L, 10, T0 + 100 * S, &a), SPW_RL_ALLOWED);
    /* Over the window limit: never. */
    CHECK_EQ(take(t, "e", L, 11, T0 + 200 * S, &a), SPW_RL_OVER_BURST);
    CHECK_EQ(a.limit, 10);
    CHECK_EQ(a.remaining, 10);
    /* Times near zero (slots "before time 0" are empty). */
    CHECK_EQ(take(t, "z", L, 10, 5, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "z", L, 1, 6, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1063);

    /* The guarantee, on a pseudo-random schedule: accepted events in any
     * closed 1-second window never exceed the limit; and the limiter is
     * not much stricter than that: an even sender at exactly the rate gets
     * 10 of 11 through, one at 80% of it everything. */
    log_ lg = {malloc(200000 * sizeof(uint64_t)), malloc(200000 * sizeof(uint32_t)), 0};
    uint64_t now = T0, x = 12345;
    for (int i = 0; i < 200000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        now += (x >> 33) % (40 * MS);
        uint32_t n = 1 + (uint32_t)((x >> 20) % 3);
        if (take(t, "g", L, n, now, &a) == SPW_RL_ALLOWED) {
            lg.t[lg.len] = now;
            lg.n[lg.len++] = n;
        }
    }
    CHECK(lg.len > 1000);
    CHECK(max_in_window(&lg, S) <= 10);
    uint64_t ok = 0;
    for (int i = 0; i < 10000; i++) /* one event every 100 ms = exactly 10/s */
        ok += take(t, "steady", L, 1, T0 + (uint64_t)i * 100 * MS, &a) == SPW_RL_ALLOWED;
    CHECK(ok * 11 >= 10000 * 10); /* 0 and 1000 ms lie in one closed second: 1 in 11 waits */
    ok = 0;
    for (int i = 0; i < 10000; i++) /* 8/s, evenly: never refused */
        ok += take(t, "polite", L, 1, T0 + (uint64_t)i * 125 * MS, &a) == SPW_RL_ALLOWED;
    CHECK_EQ(ok, 10000);
    free(lg.t);
    free(lg.n);
    spw_rl_destroy(t);
}

static void test_bucket_bound(void)
{
    /* Token bucket: in any interval of length d, at most burst + rate*d. */
    spw_rl_table *t = spw_rl_create(1000);
    spw_rl_answer a;
    spw_rl_limit L = tb(100, 20);
    log_ lg = {malloc(100000 * sizeof(uint64_t)), malloc(100000 * sizeof(uint32_t)), 0};
    uint64_t now = T0, x = 777;
    uint64_t offered = 0;
    for (int i = 0; i < 100000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        now += (x >> 33) % (4 * MS);
        uint32_t n = 1 + (uint32_t)((x >> 20) % 4);
        offered += n;
        if (take(t, "g", L, n, now, &a) == SPW_RL_ALLOWED) {
            lg.t[lg.len] = now;
            lg.n[lg.len++] = n;
        }
    }
    uint64_t widths[] = {0, 10 * MS, 100 * MS, S, 10 * S};
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++)
        CHECK(max_in_window(&lg, widths[i]) <= 20 + (uint64_t)(100.0 * (double)widths[i] / 1e9));
    uint64_t acc = 0;
    for (size_t i = 0; i < lg.len; i++)
        acc += lg.n[i];
    /* Offered about 1250/s; the bucket passes its rate, no more, and not much less. */
    double secs = (double)(now - T0) / 1e9;
    CHECK(acc <= 20 + 100 * secs + 1);
    CHECK(acc >= 95 * secs);
    CHECK(offered > 5 * acc);
    free(lg.t);
    free(lg.n);
    spw_rl_destroy(t);
}

static void test_relimit_and_refund(void)
{
    spw_rl_table *t = spw_rl_create(1000);
    spw_rl_answer a;
    /* Burst lowered: tokens kept, cut to the new burst. */
    CHECK_EQ(take(t, "k", tb(10, 5), 3, T0, &a), SPW_RL_ALLOWED); /* 2 left */
    CHECK_EQ(take(t, "k", tb(10, 3), 1, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.remaining, 1);
    CHECK_EQ(take(t, "k", tb(10, 1), 1, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.remaining, 0);
    /* Burst raised: not topped up; refilled at the new rate from now on. */
    CHECK_EQ(take(t, "k", tb(1, 10), 1, T0, &a), SPW_RL_REFUSED);
    CHECK_EQ(a.retry_after_ms, 1000);
    CHECK_EQ(a.limit, 10);
    /* Time before a rate change is refilled at the old rate. */
    CHECK_EQ(take(t, "r", tb(10, 10), 10, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "r", tb(1000, 10), 1, T0 + 500 * MS, &a), SPW_RL_ALLOWED); /* 5 at 10/s */
    CHECK_EQ(a.remaining, 4);
    /* Between algorithms the events used carry over. */
    CHECK_EQ(take(t, "x", tb(10, 10), 4, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "x", sw(10), 1, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.remaining, 5);
    CHECK_EQ(take(t, "x", tb(10, 10), 1, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(a.remaining, 4);

    /* Refunds: a take undone as if it never happened. */
    CHECK_EQ(take(t, "f", tb(10, 5), 5, T0, &a), SPW_RL_ALLOWED);
    spw_rl_refund(t, "f", 1, 5, T0);
    CHECK_EQ(take(t, "f", tb(10, 5), 5, T0, &a), SPW_RL_ALLOWED);
    spw_rl_refund(t, "f", 1, 100, T0); /* never above the burst */
    CHECK_EQ(take(t, "f", tb(10, 5), 5, T0, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "f", tb(10, 5), 1, T0, &a), SPW_RL_REFUSED);
    CHECK_EQ(take(t, "g", sw(10), 10, T0, &a), SPW_RL_ALLOWED);
    spw_rl_refund(t, "g", 1, 4, T0 + 1);
    CHECK_EQ(take(t, "g", sw(10), 4, T0 + 2, &a), SPW_RL_ALLOWED);
    CHECK_EQ(take(t, "g", sw(10), 1, T0 + 2, &a), SPW_RL_REFUSED);
    spw_rl_refund(t, "nobody", 6, 3, T0); /* unknown key: nothing */
    spw_rl_destroy(t);
}

static void test_eviction(void)
{
    spw_rl_stats st;
    spw_rl_answer a;
    /* A small table: one stripe of 64. */
    spw_rl_table *t = spw_rl_create(64);
    spw_rl_stats_get(t, &st);
    CHECK_EQ(st.max_keys, 64);
    /* The least recently used key is idle (its fast bucket refills in 1 µs);
     * 63 others are drained at a rate that takes hours to refill. */
    CHECK_EQ(take(t, "idle", tb(1e6, 1), 1, T0, &a), SPW_RL_ALLOWED);
    char k[32];
    for (int i = 0; i < 63; i++) {
        snprintf(k, sizeof k, "busy%d", i);
        CHECK_EQ(take(t, k, tb(0.001, 1), 1, T0, &a), SPW_RL_ALLOWED);
    }
    spw_rl_stats_get(t, &st);
    CHECK_EQ(st.keys, 64);
    /* A new key: the idle entry goes, not a busy one. */
    CHECK_EQ(take(t, "new1", tb(0.001, 1), 1, T0 + MS, &a), SPW_RL_ALLOWED);
    spw_rl_stats_get(t, &st);
    CHECK_EQ(st.keys, 64);
    CHECK_EQ(st.evicted_idle, 1);
    CHECK_EQ(st.evicted_active, 0);
    CHECK_EQ(take(t, "busy0", tb(0.001, 1), 1, T0 + MS, &a), SPW_RL_REFUSED); /* state kept */
    /* Nothing idle among the least recently used: the LRU one (busy1, since
     * busy0 was just used) goes, and starts again full: that is the
     * documented cost of the bound. */
    CHECK_EQ(take(t, "new2", tb(0.001, 1), 1, T0 + MS, &a), SPW_RL_ALLOWED);
    spw_rl_stats_get(t, &st);
    CHECK_EQ(st.evicted_active, 1);
    CHECK_EQ(st.keys, 64);
    CHECK_EQ(take(t, "busy1", tb(0.001, 1), 1, T0 + MS, &a), SPW_RL_ALLOWED);
    /* A flood of distinct keys never grows the table past its bound. */
    for (int i = 0; i < 10000; i++) {
        snprintf(k, sizeof k, "flood%d", i);
        take(t, k, tb(10, 10), 1, T0 + 2 * MS, &a);
    }
    spw_rl_stats_get(t, &st);
    CHECK_EQ(st.keys, 64);
    spw_rl_destroy(t);

    /* The default size: striped, and the bound holds over all stripes. */
    t = spw_rl_create(0);
    spw_rl_stats_get(t, &st);
    CHECK(st.max_keys <= SPW_RL_MAX_KEYS_DEFAULT && st.max_keys >= SPW_RL_MAX_KEYS_DEFAULT - 64);
    for (int i = 0; i < 250000; i++) {
        snprintf(k, sizeof k, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        take(t, k, tb(10, 10), 1, T0 + (uint64_t)i * 1000, &a);
    }
    spw_rl_stats_get(t, &st);
    CHECK_EQ(st.keys, st.max_keys);
    CHECK_EQ(st.evicted_idle + st.evicted_active, 250000 - st.max_keys);
    spw_rl_destroy(t);
}

typedef struct thr {
    spw_rl_table *t;
    uint64_t allowed;
} thr;

static void *hammer(void *arg)
{
    thr *h = arg;
    spw_rl_answer a;
    char k[16];
    for (int i = 0; i < 200000; i++) {
        snprintf(k, sizeof k, "k%d", i % 16);
        /* A frozen clock and a negligible rate: exactly burst per key pass. */
        h->allowed += take(h->t, k, tb(1e-9, 1000), 1, T0, &a) == SPW_RL_ALLOWED;
    }
    return NULL;
}

static void test_threads(void)
{
    spw_rl_table *t = spw_rl_create(0);
    thr h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (thr){.t = t};
        pthread_create(&th[i], NULL, hammer, &h[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += h[i].allowed;
    }
    CHECK_EQ(total, 16 * 1000);
    spw_rl_destroy(t);
}

static void test_admit_and_headers(void)
{
    spw_rl_table *t = spw_rl_create(1000);
    spw_rl_answer a;
    char key[SPW_RL_KEY_MAX];
    size_t kl;
    spw_stream_config own = {.name = "own", .rate = 10, .burst = 2, .rate_per = 0};
    spw_stream_config plain = {.name = "plain"};
    /* No default and no limit of its own: not limited at all. */
    CHECK_EQ(spw_rl_admit(t, &plain, "", "127.0.0.1", 1000000, T0, &a, key, &kl), SPW_RL_ALLOWED);
    CHECK_EQ(a.limited, 0);
    spw_rl_limit d;
    spw_rl_get_default(t, &d);
    CHECK(d.rate == 0);
    /* The default applies to streams without their own. */
    spw_rl_limit def = {.rate = 5, .burst = 0, .algo = SPW_RL_TOKEN_BUCKET, .per = SPW_RL_PER_IP};
    spw_rl_set_default(t, &def);
    spw_rl_get_default(t, &d);
    CHECK(d.rate == 5 && d.burst == 0 && d.algo == SPW_RL_TOKEN_BUCKET && d.per == SPW_RL_PER_IP);
    CHECK_EQ(spw_rl_admit(t, &plain, "acme", "127.0.0.1", 5, T0, &a, key, &kl), SPW_RL_ALLOWED); /* burst 0 → rate */
    CHECK_EQ(a.limit, 5);
    CHECK_EQ(spw_rl_admit(t, &plain, "other", "127.0.0.1", 1, T0, &a, key, &kl), SPW_RL_REFUSED); /* per ip */
    CHECK_EQ(spw_rl_admit(t, &plain, "acme", "127.0.0.2", 1, T0, &a, key, &kl), SPW_RL_ALLOWED);
    /* The stream's own limit wins, and per tenant keys by tenant ... */
    CHECK_EQ(spw_rl_admit(t, &own, "acme", "10.0.0.1", 2, T0, &a, key, &kl), SPW_RL_ALLOWED);
    CHECK_EQ(a.limit, 2);
    CHECK_EQ(spw_rl_admit(t, &own, "acme", "10.0.0.2", 1, T0, &a, key, &kl), SPW_RL_REFUSED);
    CHECK_EQ(spw_rl_admit(t, &own, "zeta", "10.0.0.1", 1, T0, &a, key, &kl), SPW_RL_ALLOWED);
    /* ... falling back to the IP without a tenant, never sharing with a
     * tenant named like that IP. */
    CHECK_EQ(spw_rl_admit(t, &own, "", "10.0.0.1", 2, T0, &a, key, &kl), SPW_RL_ALLOWED);
    CHECK_EQ(spw_rl_admit(t, &own, "", "10.0.0.2", 2, T0, &a, key, &kl), SPW_RL_ALLOWED);
    CHECK_EQ(spw_rl_admit(t, &own, "", "10.0.0.1", 1, T0, &a, key, &kl), SPW_RL_REFUSED);
    CHECK_EQ(spw_rl_admit(t, &own, "10.0.0.3", "10.0.0.9", 2, T0, &a, key, &kl), SPW_RL_ALLOWED);
    CHECK_EQ(spw_rl_admit(t, &own, "", "10.0.0.3", 2, T0, &a, key, &kl), SPW_RL_ALLOWED);
    /* The key names the stream: another stream, another limit state. */
    spw_stream_config own2 = own;
    strcpy(own2.name, "own2");
    CHECK_EQ(spw_rl_admit(t, &own2, "acme", "10.0.0.1", 2, T0, &a, key, &kl), SPW_RL_ALLOWED);
    /* A refund through the returned key. */
    spw_rl_refund(t, key, kl, 2, T0);
    CHECK_EQ(spw_rl_admit(t, &own2, "acme", "10.0.0.1", 2, T0, &a, key, &kl), SPW_RL_ALLOWED);
    /* Sliding window from a stream definition. */
    spw_stream_config win = {.name = "win", .rate = 3, .rate_algo = 1, .rate_per = 1};
    CHECK_EQ(spw_rl_admit(t, &win, "", "10.0.0.1", 4, T0, &a, key, &kl), SPW_RL_OVER_BURST);
    CHECK_EQ(a.limit, 3);
    CHECK_EQ(spw_rl_admit(t, &win, "", "10.0.0.1", 3, T0, &a, key, &kl), SPW_RL_ALLOWED);
    /* Default off again. */
    def.rate = 0;
    spw_rl_set_default(t, &def);
    CHECK_EQ(spw_rl_admit(t, &plain, "acme", "127.0.0.1", 100, T0, &a, key, &kl), SPW_RL_ALLOWED);
    CHECK_EQ(a.limited, 0);

    /* Header lines. */
    char h[256];
    spw_rl_answer r = {.limited = 1, .verdict = SPW_RL_REFUSED, .retry_after_ms = 1001, .limit = 10, .remaining = 0,
                       .reset_s = 3};
    CHECK_EQ(spw_rl_headers(&r, h, sizeof h), strlen(h));
    CHECK(strcmp(h, "RateLimit-Limit: 10\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: 3\r\nRetry-After: 2\r\n") == 0);
    r.retry_after_ms = 1;
    spw_rl_headers(&r, h, sizeof h);
    CHECK(strstr(h, "Retry-After: 1\r\n") != NULL);
    r.retry_after_ms = 1000;
    spw_rl_headers(&r, h, sizeof h);
    CHECK(strstr(h, "Retry-After: 1\r\n") != NULL);
    r.verdict = SPW_RL_ALLOWED;
    r.remaining = 7;
    spw_rl_headers(&r, h, sizeof h);
    CHECK(strcmp(h, "RateLimit-Limit: 10\r\nRateLimit-Remaining: 7\r\nRateLimit-Reset: 3\r\n") == 0);
    r.limited = 0;
    CHECK_EQ(spw_rl_headers(&r, h, sizeof h), 0);
    CHECK_EQ(h[0], 0);
    /* Names. */
    spw_rl_algo al;
    spw_rl_per pe;
    CHECK(spw_rl_algo_parse("sliding_window", &al) == 0 && al == SPW_RL_SLIDING_WINDOW);
    CHECK(spw_rl_algo_parse("token_bucket", &al) == 0 && al == SPW_RL_TOKEN_BUCKET);
    CHECK(spw_rl_algo_parse("leaky", &al) == -1);
    CHECK(spw_rl_per_parse("ip", &pe) == 0 && pe == SPW_RL_PER_IP);
    CHECK(spw_rl_per_parse("user", &pe) == -1);
    CHECK(strcmp(spw_rl_algo_name(SPW_RL_SLIDING_WINDOW), "sliding_window") == 0);
    CHECK(strcmp(spw_rl_per_name(SPW_RL_PER_TENANT), "tenant") == 0);
    spw_rl_destroy(t);
}

int main(void)
{
    test_token_bucket();
    test_sliding_window();
    test_bucket_bound();
    test_relimit_and_refund();
    test_eviction();
    test_threads();
    test_admit_and_headers();
    puts("test_limiter: ok");
    return 0;
}
