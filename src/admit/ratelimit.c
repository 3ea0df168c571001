/*
 * Rate-limit table: see ratelimit.h for the algorithms, the bounds and
 * what eviction means.
 *
 * Layout: stripes (a power of two, at most 64) chosen by the top bits of
 * a seeded 64-bit hash of the key; each stripe has its own mutex, a
 * chained hash table (bucket array sized once, a power of two >= the
 * stripe's capacity, chosen by the low bits) and an LRU list through a
 * sentinel, most recently used first. An entry is allocated when its key
 * is first seen and freed when evicted; a take on a known key allocates
 * nothing.
 *
 * Arithmetic: token counts are doubles (rates may be fractional); the
 * comparisons allow 1e-9 of a token so that waiting exactly the
 * retry-after we announced always suffices. Times are u64 nanoseconds.
 */
#include "admit/ratelimit.h"
#include "core/hash.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/alloc.h"

#define STRIPES_MAX 64
#define EVICT_SCAN 8
#define TOKEN_EPS 1e-9

typedef struct rl_entry {
    struct rl_entry *hnext;      /* hash chain */
    struct rl_entry *prev, *next; /* LRU ring through the stripe's sentinel */
    uint64_t hash;
    double rate, burst; /* the limit of the last take */
    uint8_t algo;
    uint16_t key_len;
    union {
        struct {
            double tokens;
            uint64_t last_ns;
        } tb;
        struct {
            uint64_t newest; /* absolute slot index (now / SLOT_NS) of the newest slot */
            uint64_t sum;    /* events in the SPW_RL_SLOTS counted slots */
            uint32_t cnt[SPW_RL_SLOTS]; /* slot j lives at cnt[j % SPW_RL_SLOTS] */
        } sw;
    } u;
    char key[];
} rl_entry;

typedef struct rl_stripe {
    pthread_mutex_t mu;
    rl_entry **buckets;
    uint64_t mask;
    rl_entry lru; /* sentinel: lru.next is the most recent, lru.prev the least */
    uint32_t n, cap;
} __attribute__((aligned(64))) rl_stripe;

struct spw_rl_table {
    rl_stripe *stripes;
    uint32_t nstripes;
    uint32_t stripe_shift; /* hash >> shift picks the stripe */
    uint32_t max_keys;
    uint64_t seed;
    _Atomic uint64_t keys, evicted_idle, evicted_active;
    /* The default limit, a seqlock: odd seq = being written. */
    _Atomic uint32_t dseq;
    _Atomic uint64_t d_rate, d_burst; /* double bits */
    _Atomic uint32_t d_algo, d_per;
};

/* ---- names ---- */

const char *spw_rl_algo_name(spw_rl_algo a) { return a == SPW_RL_SLIDING_WINDOW ? "sliding_window" : "token_bucket"; }

int spw_rl_algo_parse(const char *s, spw_rl_algo *out)
{
    if (strcmp(s, "token_bucket") == 0)
        *out = SPW_RL_TOKEN_BUCKET;
    else if (strcmp(s, "sliding_window") == 0)
        *out = SPW_RL_SLIDING_WINDOW;
    else
        return -1;
    return 0;
}

const char *spw_rl_per_name(spw_rl_per p) { return p == SPW_RL_PER_IP ? "ip" : "tenant"; }

int spw_rl_per_parse(const char *s, spw_rl_per *out)
{
    if (strcmp(s, "tenant") == 0)
        *out = SPW_RL_PER_TENANT;
    else if (strcmp(s, "ip") == 0)
        *out = SPW_RL_PER_IP;
    else
        return -1;
    return 0;
}

/* ---- table ---- */

spw_rl_table *spw_rl_create(uint32_t max_keys)
{
    if (max_keys == 0)
        max_keys = SPW_RL_MAX_KEYS_DEFAULT;
    spw_rl_table *t = spw_xcalloc(1, sizeof *t);
    /* Stripes of at least 64 entries, so a small table is not cut into
     * slivers that each evict early. */
    uint32_t ns = 1;
    while (ns < STRIPES_MAX && (uint64_t)ns * 2 * 64 <= max_keys)
        ns *= 2;
    t->nstripes = ns;
    t->stripe_shift = 64;
    for (uint32_t k = ns; k > 1; k >>= 1)
        t->stripe_shift--;
    t->max_keys = max_keys;
    if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != (ssize_t)sizeof t->seed)
        t->seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
    t->stripes = spw_xcalloc(ns, sizeof *t->stripes);
    for (uint32_t i = 0; i < ns; i++) {
        rl_stripe *s = &t->stripes[i];
        pthread_mutex_init(&s->mu, NULL);
        s->cap = max_keys / ns;
        uint64_t nb = 1;
        while (nb < s->cap)
            nb *= 2;
        s->buckets = spw_xcalloc(nb, sizeof *s->buckets);
        s->mask = nb - 1;
        s->lru.next = s->lru.prev = &s->lru;
    }
    return t;
}

void spw_rl_destroy(spw_rl_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->nstripes; i++) {
        rl_stripe *s = &t->stripes[i];
        for (rl_entry *e = s->lru.next, *nx; e != &s->lru; e = nx) {
            nx = e->next;
            spw_free(e);
        }
        spw_free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    spw_free(t->stripes);
    spw_free(t);
}

static uint64_t key_hash(const spw_rl_table *t, const void *key, size_t len)
{
    /* fmix64: both the top (stripe) and low (bucket) bits mix. */
    return spw_fmix64(spw_fnv1a64(SPW_FNV64_OFFSET ^ t->seed, key, len));
}

static rl_stripe *stripe_of(spw_rl_table *t, uint64_t h)
{
    return &t->stripes[t->nstripes == 1 ? 0 : h >> t->stripe_shift];
}

static rl_entry *find(rl_stripe *s, uint64_t h, const void *key, size_t len)
{
    for (rl_entry *e = s->buckets[h & s->mask]; e; e = e->hnext)
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static void lru_unlink(rl_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push_front(rl_stripe *s, rl_entry *e)
{
    e->next = s->lru.next;
    e->prev = &s->lru;
    s->lru.next->prev = e;
    s->lru.next = e;
}

static void remove_entry(spw_rl_table *t, rl_stripe *s, rl_entry *e)
{
    rl_entry **pp = &s->buckets[e->hash & s->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(e);
    s->n--;
    atomic_fetch_sub(&t->keys, 1);
    spw_free(e);
}

/* ---- the two algorithms ---- */

static uint64_t window_limit(double rate)
{
    double l = floor(rate + TOKEN_EPS);
    if (l < 1)
        l = 1;
    if (l > SPW_RL_WINDOW_MAX)
        l = SPW_RL_WINDOW_MAX;
    return (uint64_t)l;
}

static uint64_t bucket_limit(double burst)
{
    double l = floor(burst + TOKEN_EPS);
    return l < 1 ? 1 : (uint64_t)l;
}

/* Whole ms in ns, rounded up (a hair of slack for float noise), >= 1. */
static uint64_t ceil_ms(double ns)
{
    double ms = ceil(ns / 1e6 - 1e-6);
    return ms < 1 ? 1 : (uint64_t)ms;
}

/* Whole seconds in ns, rounded up, >= 0. */
static uint64_t ceil_s(double ns)
{
    double s = ceil(ns / 1e9 - 1e-9);
    return s < 0 ? 0 : (uint64_t)s;
}

static void tb_refill(rl_entry *e, uint64_t now)
{
    if (now <= e->u.tb.last_ns)
        return;
    double tk = e->u.tb.tokens + e->rate * (double)(now - e->u.tb.last_ns) / 1e9;
    e->u.tb.tokens = tk > e->burst ? e->burst : tk;
    e->u.tb.last_ns = now;
}

/* Moves the window to now's slot, dropping slots more than 16 behind. */
static void sw_advance(rl_entry *e, uint64_t now)
{
    uint64_t c = now / SPW_RL_SLOT_NS;
    if (c <= e->u.sw.newest)
        return;
    uint64_t steps = c - e->u.sw.newest;
    if (steps > SPW_RL_SLOTS)
        steps = SPW_RL_SLOTS;
    for (uint64_t i = 1; i <= steps; i++) {
        uint32_t *slot = &e->u.sw.cnt[(e->u.sw.newest + i) % SPW_RL_SLOTS];
        e->u.sw.sum -= *slot;
        *slot = 0;
    }
    e->u.sw.newest = c;
}

/* The counted slots, oldest first: absolute index of the k-th (k 0..16),
 * or UINT64_MAX for slots before time 0 (never used, always 0). */
static uint64_t sw_slot(const rl_entry *e, uint32_t k)
{
    uint64_t c = e->u.sw.newest;
    return c + k < SPW_RL_SLOTS - 1 ? UINT64_MAX : c + k - (SPW_RL_SLOTS - 1);
}

static void tb_answer(const rl_entry *e, spw_rl_answer *a)
{
    a->limit = bucket_limit(e->burst);
    double tk = e->u.tb.tokens;
    a->remaining = (uint64_t)floor(tk + TOKEN_EPS);
    if (a->remaining > a->limit)
        a->remaining = a->limit;
    a->reset_s = tk + TOKEN_EPS >= e->burst ? 0 : ceil_s((e->burst - tk) / e->rate * 1e9);
}

static void sw_answer(const rl_entry *e, uint64_t now, spw_rl_answer *a)
{
    a->limit = window_limit(e->rate);
    a->remaining = e->u.sw.sum >= a->limit ? 0 : a->limit - e->u.sw.sum;
    a->reset_s = 0;
    for (uint32_t k = SPW_RL_SLOTS; k-- > 0;) {
        uint64_t j = sw_slot(e, k);
        if (j != UINT64_MAX && e->u.sw.cnt[j % SPW_RL_SLOTS]) {
            /* The newest slot with events leaves the window at (j + 17) slots. */
            a->reset_s = ceil_s((double)((j + SPW_RL_SLOTS) * SPW_RL_SLOT_NS - now));
            break;
        }
    }
}

static void entry_init(rl_entry *e, const spw_rl_limit *lim, uint64_t now)
{
    e->rate = lim->rate;
    e->algo = (uint8_t)lim->algo;
    memset(&e->u, 0, sizeof e->u);
    if (lim->algo == SPW_RL_SLIDING_WINDOW) {
        e->burst = 0;
        e->u.sw.newest = now / SPW_RL_SLOT_NS;
    } else {
        e->burst = lim->burst;
        e->u.tb.tokens = lim->burst;
        e->u.tb.last_ns = now;
    }
}

/* Brings e up to now under its own limit, then switches it to lim,
 * carrying the events used so far over. */
static void entry_relimit(rl_entry *e, const spw_rl_limit *lim, uint64_t now)
{
    double used;
    if (e->algo == SPW_RL_TOKEN_BUCKET) {
        tb_refill(e, now);
        used = e->burst - e->u.tb.tokens;
    } else {
        sw_advance(e, now);
        used = (double)e->u.sw.sum;
    }
    if (e->algo == lim->algo) {
        e->rate = lim->rate;
        if (lim->algo == SPW_RL_TOKEN_BUCKET) {
            e->burst = lim->burst;
            if (e->u.tb.tokens > e->burst)
                e->u.tb.tokens = e->burst;
        }
        return;
    }
    entry_init(e, lim, now);
    if (lim->algo == SPW_RL_TOKEN_BUCKET) {
        e->u.tb.tokens = used >= lim->burst ? 0 : lim->burst - used;
    } else {
        uint64_t l = window_limit(lim->rate), u = used <= 0 ? 0 : (uint64_t)ceil(used - TOKEN_EPS);
        if (u > l)
            u = l;
        e->u.sw.cnt[e->u.sw.newest % SPW_RL_SLOTS] = (uint32_t)u;
        e->u.sw.sum = u;
    }
}

static int entry_idle(rl_entry *e, uint64_t now)
{
    if (e->algo == SPW_RL_TOKEN_BUCKET) {
        tb_refill(e, now);
        return e->u.tb.tokens + TOKEN_EPS >= e->burst;
    }
    sw_advance(e, now);
    return e->u.sw.sum == 0;
}

/* Makes room for one entry in a full stripe. REQUIRES: s->mu held, s->n > 0. */
static void evict_one(spw_rl_table *t, rl_stripe *s, uint64_t now)
{
    rl_entry *e = s->lru.prev;
    for (int i = 0; i < EVICT_SCAN && e != &s->lru; i++, e = e->prev) {
        if (entry_idle(e, now)) {
            remove_entry(t, s, e);
            atomic_fetch_add(&t->evicted_idle, 1);
            return;
        }
    }
    remove_entry(t, s, s->lru.prev);
    atomic_fetch_add(&t->evicted_active, 1);
}

int spw_rl_take(spw_rl_table *t, const void *key, size_t key_len, const spw_rl_limit *lim, uint64_t n,
                uint64_t now, spw_rl_answer *a)
{
    assert(lim->rate > 0);
    assert(n >= 1);
    assert(key_len <= SPW_RL_KEY_MAX);
    memset(a, 0, sizeof *a);
    a->limited = 1;
    uint64_t h = key_hash(t, key, key_len);
    rl_stripe *s = stripe_of(t, h);
    pthread_mutex_lock(&s->mu);
    rl_entry *e = find(s, h, key, key_len);
    if (e) {
        lru_unlink(e);
        if (e->algo != lim->algo || e->rate != lim->rate || (lim->algo == SPW_RL_TOKEN_BUCKET && e->burst != lim->burst))
            entry_relimit(e, lim, now);
    } else {
        if (s->n >= s->cap)
            evict_one(t, s, now);
        e = spw_xmalloc(sizeof *e + key_len);
        e->hash = h;
        e->key_len = (uint16_t)key_len;
        memcpy(e->key, key, key_len);
        entry_init(e, lim, now);
        e->hnext = s->buckets[h & s->mask];
        s->buckets[h & s->mask] = e;
        s->n++;
        atomic_fetch_add(&t->keys, 1);
    }
    lru_push_front(s, e);

    if (e->algo == SPW_RL_TOKEN_BUCKET) {
        tb_refill(e, now);
        if ((double)n > e->burst + TOKEN_EPS) {
            a->verdict = SPW_RL_OVER_BURST;
        } else if (e->u.tb.tokens + TOKEN_EPS >= (double)n) {
            e->u.tb.tokens -= (double)n;
            if (e->u.tb.tokens < 0)
                e->u.tb.tokens = 0;
            a->verdict = SPW_RL_ALLOWED;
        } else {
            a->verdict = SPW_RL_REFUSED;
            a->retry_after_ms = ceil_ms(((double)n - e->u.tb.tokens) / e->rate * 1e9);
        }
        tb_answer(e, a);
    } else {
        sw_advance(e, now);
        uint64_t limit = window_limit(e->rate);
        if (n > limit) {
            a->verdict = SPW_RL_OVER_BURST;
        } else if (e->u.sw.sum + n <= limit) {
            e->u.sw.cnt[e->u.sw.newest % SPW_RL_SLOTS] += (uint32_t)n;
            e->u.sw.sum += n;
            a->verdict = SPW_RL_ALLOWED;
        } else {
            /* Wait until enough of the oldest slots have left the window. */
            uint64_t need = e->u.sw.sum + n - limit, freed = 0;
            a->verdict = SPW_RL_REFUSED;
            for (uint32_t k = 0; k < SPW_RL_SLOTS; k++) {
                uint64_t j = sw_slot(e, k);
                if (j == UINT64_MAX)
                    continue;
                freed += e->u.sw.cnt[j % SPW_RL_SLOTS];
                if (freed >= need) {
                    uint64_t leave = (j + SPW_RL_SLOTS) * SPW_RL_SLOT_NS;
                    a->retry_after_ms = ceil_ms(leave > now ? (double)(leave - now) : 0);
                    break;
                }
            }
            assert(freed >= need); /* n <= limit: an empty window always takes it */
        }
        sw_answer(e, now, a);
    }
    pthread_mutex_unlock(&s->mu);
    return a->verdict;
}

void spw_rl_refund(spw_rl_table *t, const void *key, size_t key_len, uint64_t n, uint64_t now)
{
    uint64_t h = key_hash(t, key, key_len);
    rl_stripe *s = stripe_of(t, h);
    pthread_mutex_lock(&s->mu);
    rl_entry *e = find(s, h, key, key_len);
    if (e && e->algo == SPW_RL_TOKEN_BUCKET) {
        tb_refill(e, now);
        e->u.tb.tokens += (double)n;
        if (e->u.tb.tokens > e->burst)
            e->u.tb.tokens = e->burst;
    } else if (e) {
        sw_advance(e, now);
        /* Newest slots first: that is where the take counted them. */
        for (uint32_t k = SPW_RL_SLOTS; k-- > 0 && n;) {
            uint64_t j = sw_slot(e, k);
            if (j == UINT64_MAX)
                break;
            uint32_t *c = &e->u.sw.cnt[j % SPW_RL_SLOTS];
            uint64_t d = *c < n ? *c : n;
            *c -= (uint32_t)d;
            e->u.sw.sum -= d;
            n -= d;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- the default limit ---- */

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

void spw_rl_set_default(spw_rl_table *t, const spw_rl_limit *lim)
{
    uint32_t s = atomic_load_explicit(&t->dseq, memory_order_relaxed);
    atomic_store_explicit(&t->dseq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&t->d_rate, dbits(lim->rate), memory_order_relaxed);
    atomic_store_explicit(&t->d_burst, dbits(lim->burst), memory_order_relaxed);
    atomic_store_explicit(&t->d_algo, (uint32_t)lim->algo, memory_order_relaxed);
    atomic_store_explicit(&t->d_per, (uint32_t)lim->per, memory_order_relaxed);
    atomic_store_explicit(&t->dseq, s + 2, memory_order_release);
}

void spw_rl_get_default(spw_rl_table *t, spw_rl_limit *out)
{
    for (;;) {
        uint32_t s1 = atomic_load_explicit(&t->dseq, memory_order_acquire);
        if (s1 & 1)
            continue;
        out->rate = bitsd(atomic_load_explicit(&t->d_rate, memory_order_relaxed));
        out->burst = bitsd(atomic_load_explicit(&t->d_burst, memory_order_relaxed));
        out->algo = (spw_rl_algo)atomic_load_explicit(&t->d_algo, memory_order_relaxed);
        out->per = (spw_rl_per)atomic_load_explicit(&t->d_per, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&t->dseq, memory_order_relaxed) == s1)
            return;
    }
}

/* ---- admission glue ---- */

int spw_rl_admit(spw_rl_table *t, const spw_stream_config *cfg, const char *tenant, const char *peer, uint64_t n,
                 uint64_t now, spw_rl_answer *a, char *key, size_t *key_len)
{
    spw_rl_limit lim;
    if (cfg->rate > 0) {
        lim = (spw_rl_limit){.rate = cfg->rate,
                             .burst = cfg->burst,
                             .algo = cfg->rate_algo ? SPW_RL_SLIDING_WINDOW : SPW_RL_TOKEN_BUCKET,
                             .per = cfg->rate_per ? SPW_RL_PER_IP : SPW_RL_PER_TENANT};
    } else {
        spw_rl_get_default(t, &lim);
    }
    *key_len = 0;
    if (!(lim.rate > 0) || n == 0) {
        memset(a, 0, sizeof *a);
        return SPW_RL_ALLOWED;
    }
    if (lim.algo == SPW_RL_TOKEN_BUCKET && lim.burst < 1)
        lim.burst = lim.rate < 1 ? 1 : lim.rate;
    /* stream \0 kind who: kind 't' (a tenant) or 'i' (an IP), so a tenant
     * named like an address never shares an IP's state. */
    int by_tenant = lim.per == SPW_RL_PER_TENANT && tenant && tenant[0];
    const char *who = by_tenant ? tenant : peer ? peer : "";
    size_t sl = strnlen(cfg->name, SPW_STREAM_NAME_MAX), wl = strnlen(who, 63);
    memcpy(key, cfg->name, sl);
    key[sl] = 0;
    key[sl + 1] = by_tenant ? 't' : 'i';
    memcpy(key + sl + 2, who, wl);
    *key_len = sl + 2 + wl;
    return spw_rl_take(t, key, *key_len, &lim, n, now, a);
}

size_t spw_rl_headers(const spw_rl_answer *a, char *out, size_t cap)
{
    if (cap)
        out[0] = 0;
    if (!a->limited || cap == 0)
        return 0;
    int k = snprintf(out, cap, "RateLimit-Limit: %llu\r\nRateLimit-Remaining: %llu\r\nRateLimit-Reset: %llu\r\n",
                     (unsigned long long)a->limit, (unsigned long long)a->remaining, (unsigned long long)a->reset_s);
    if (k < 0 || (size_t)k >= cap)
        return k < 0 ? 0 : cap - 1;
    if (a->verdict == SPW_RL_REFUSED) {
        uint64_t s = (a->retry_after_ms + 999) / 1000;
        int k2 = snprintf(out + k, cap - (size_t)k, "Retry-After: %llu\r\n", (unsigned long long)(s ? s : 1));
        if (k2 > 0)
            k = (size_t)k2 < cap - (size_t)k ? k + k2 : (int)cap - 1;
    }
    return (size_t)k;
}

void spw_rl_stats_get(spw_rl_table *t, spw_rl_stats *st)
{
    st->keys = atomic_load(&t->keys);
    st->max_keys = (uint64_t)(t->max_keys / t->nstripes) * t->nstripes;
    st->evicted_idle = atomic_load(&t->evicted_idle);
    st->evicted_active = atomic_load(&t->evicted_active);
}
