/*
 * Rate limits (docs/api.md "Rate limits", docs/operations.md):
 * a table of limiter states keyed by (stream, tenant or client IP), shared
 * by the HTTP and the binary front ends, so one client's events count
 * against one limit whichever protocol carries them.
 *
 * Two algorithms, per limit:
 *
 *  - Token bucket (`token_bucket`, the default): a bucket of `burst` tokens
 *    refilled at `rate` tokens per second; a request of n events takes n
 *    tokens or is refused whole. Up to `burst` events can pass at once,
 *    `rate` per second in the long run.
 *
 *  - Sliding window (`sliding_window`): at most `rate` events (an integer)
 *    in any window of one second. The second is divided into 16 slots of
 *    62.5 ms; a take counts the events of the current slot and of the 16
 *    before it, which together cover [now - 1 s, now] entirely, so the
 *    count is never below the true count of the last second and the
 *    guarantee is exact: no 1-second window, wherever it starts, ever holds
 *    more than `rate` accepted events. The price is the part of the oldest
 *    slot that lies more than 1 s back: a client sending evenly at exactly
 *    `rate` sees 1 event in 11 (rate 10) to 1 in 17 (large rates) refused;
 *    at 80% of `rate` none. `burst` is not used (the window limit is
 *    `rate`). Cost per take: one
 *    slot advance (at most 17 counters cleared, usually none) and, only
 *    when refusing, a walk of 17 counters to compute the retry time. The
 *    two-window weighted approximation was not used: it can let up to
 *    twice the limit through in a window that straddles two slots.
 *
 * Every take answers with the numbers of the IETF RateLimit header fields
 * (draft-ietf-httpapi-ratelimit-headers): limit (events that can pass at
 * once: floor(burst), or the window limit), remaining (events that could
 * pass right after this take), reset (whole seconds until remaining is
 * back at limit), and, when refused, retry_after_ms (ms until the same
 * request would pass, at least 1). A request of more events than limit can
 * never pass: it is answered SPW_RL_OVER_BURST and changes nothing.
 *
 * Concurrency: the table is split into up to 64 stripes by the key's hash,
 * each a mutex, a hash table and an LRU list; a take locks one stripe, so
 * I/O threads contend only when their keys share a stripe. The server-wide
 * default limit is a seqlock: readers never block, SIGHUP writes it.
 *
 * Memory: at most max_keys entries (each stripe holds max_keys / stripes,
 * rounded down). An entry is 144 bytes plus its key (stream name + 2 +
 * tenant or IP: at most 193 bytes) plus the allocator's overhead, and each
 * stripe has 8 bytes of hash bucket per entry it may hold: about 200 bytes
 * per entry for short names, at most about 370. A new key in a full stripe evicts an idle entry first
 * (a full bucket, an empty window: forgetting it changes nothing, since an
 * absent key starts full), looking at the 8 least recently used; if none
 * of them is idle it evicts the least recently used entry, whose client
 * then starts again with a full bucket (a lenient error, counted in
 * evicted_active). Entries of deleted streams age out the same way.
 *
 * Clock: every call takes `now` in nanoseconds of a monotonic clock from
 * the caller (spw_mono_ns in the server, any numbers in tests). A `now`
 * older than the entry's last one is treated as equal (I/O threads read
 * the clock at slightly different moments).
 */
#ifndef SPW_RATELIMIT_H
#define SPW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/stream.h"

typedef enum { SPW_RL_TOKEN_BUCKET = 0, SPW_RL_SLIDING_WINDOW = 1 } spw_rl_algo;
typedef enum { SPW_RL_PER_TENANT = 0, SPW_RL_PER_IP = 1 } spw_rl_per;

#define SPW_RL_SLOTS 17                /* sliding window: current slot + 16 of 62.5 ms */
#define SPW_RL_SLOT_NS 62500000ull     /* 1 s / 16 */
#define SPW_RL_WINDOW_MAX 4294967295.0 /* sliding-window limit fits a u32 slot counter */
#define SPW_RL_KEY_MAX 256             /* stream (128) + 0 + kind + tenant/IP (63) */
#define SPW_RL_MAX_KEYS_DEFAULT 100000

typedef struct spw_rl_limit {
    double rate;      /* events per second; 0 = no limit */
    double burst;     /* token bucket capacity (>= 1); unused by the sliding window */
    spw_rl_algo algo;
    spw_rl_per per;
} spw_rl_limit;

enum { SPW_RL_ALLOWED = 0, SPW_RL_REFUSED = 1, SPW_RL_OVER_BURST = 2 };

typedef struct spw_rl_answer {
    int limited;             /* 0: no limit applies (the rest is 0) */
    int verdict;             /* SPW_RL_ALLOWED, SPW_RL_REFUSED or SPW_RL_OVER_BURST */
    uint64_t retry_after_ms; /* REFUSED: ms until the same take would pass (>= 1) */
    uint64_t limit;          /* events that can pass at once */
    uint64_t remaining;      /* events that could pass now, after this take */
    uint64_t reset_s;        /* whole seconds until remaining == limit */
} spw_rl_answer;

typedef struct spw_rl_table spw_rl_table;

/* A table of at most max_keys entries (0: the default, 100000). Never
 * fails (allocation failure aborts). Free with spw_rl_destroy. */
spw_rl_table *spw_rl_create(uint32_t max_keys);
void spw_rl_destroy(spw_rl_table *t);

/*
 * Takes n events for key under lim at time now_ns and fills *a (limited is
 * 1). A refused or over-burst take changes nothing; an allowed one counts
 * the n events. If the key's entry was last used under another limit, its
 * state carries over: the bucket keeps its tokens (cut to the new burst),
 * the window its counts; between algorithms the events used so far carry
 * over. Returns a->verdict.
 * REQUIRES: lim->rate > 0, n >= 1, key_len <= SPW_RL_KEY_MAX.
 */
int spw_rl_take(spw_rl_table *t, const void *key, size_t key_len, const spw_rl_limit *lim, uint64_t n,
                uint64_t now_ns, spw_rl_answer *a);

/* Gives back n events taken by an allowed take whose request was then
 * refused for another reason (503 backpressure), so only stored events
 * count. Does nothing if the key was evicted meanwhile. */
void spw_rl_refund(spw_rl_table *t, const void *key, size_t key_len, uint64_t n, uint64_t now_ns);

/* The server-wide default, for streams without their own rate_limit
 * (rate 0 = none). Set by one thread (startup, SIGHUP); read by any,
 * without blocking. */
void spw_rl_set_default(spw_rl_table *t, const spw_rl_limit *lim);
void spw_rl_get_default(spw_rl_table *t, spw_rl_limit *out);

/*
 * Admission for one produce: the stream's own rate_limit if it has one,
 * else the default; keyed by the stream and, per tenant, the tenant (or,
 * when tenant is "", the peer IP), per ip, the peer IP. When no limit
 * applies a->limited is 0 and the result is SPW_RL_ALLOWED. key/key_len
 * (a buffer of SPW_RL_KEY_MAX bytes) get the key used, for spw_rl_refund.
 */
int spw_rl_admit(spw_rl_table *t, const spw_stream_config *cfg, const char *tenant, const char *peer, uint64_t n,
                 uint64_t now_ns, spw_rl_answer *a, char *key, size_t *key_len);

/* The HTTP header lines of an answer: RateLimit-Limit, -Remaining, -Reset,
 * and Retry-After (whole seconds, rounded up, at least 1) when refused;
 * each ending "\r\n". "" when not limited. Returns the length written
 * (cap 256 is always enough). */
size_t spw_rl_headers(const spw_rl_answer *a, char *out, size_t cap);

/* "token_bucket"/"sliding_window", "tenant"/"ip" and back. Parsers return
 * 0 or -1. */
const char *spw_rl_algo_name(spw_rl_algo a);
int spw_rl_algo_parse(const char *s, spw_rl_algo *out);
const char *spw_rl_per_name(spw_rl_per p);
int spw_rl_per_parse(const char *s, spw_rl_per *out);

typedef struct spw_rl_stats {
    uint64_t keys, max_keys;
    uint64_t evicted_idle, evicted_active;
} spw_rl_stats;
void spw_rl_stats_get(spw_rl_table *t, spw_rl_stats *st);

#endif
