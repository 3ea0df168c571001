/*
 * A fixed-bucket latency histogram with atomic counters, shared by any
 * number of threads without locks: buckets at powers of two of
 * microseconds (1 µs … ~67 s), enough for Prometheus export and p50/p99
 * estimates. Recording is one relaxed atomic add per counter.
 */
#ifndef SPW_HIST_H
#define SPW_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define SPW_HIST_BUCKETS 27 /* le 1us, 2us, ... 2^26 us, +Inf */

typedef struct spw_hist {
    _Atomic uint64_t b[SPW_HIST_BUCKETS];
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
} spw_hist;

static inline void spw_hist_add(spw_hist *h, uint64_t us)
{
    int i = 0;
    while (i < SPW_HIST_BUCKETS - 1 && us > (1ull << i))
        i++;
    atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

/* Upper bound (µs) of bucket i; UINT64_MAX for the last. */
static inline uint64_t spw_hist_le(int i) { return i < SPW_HIST_BUCKETS - 1 ? 1ull << i : UINT64_MAX; }

#endif
