/* Pressure-based admission: see admit.h. */
#include "server/admit.h"

#include <stdatomic.h>

#include "core/id.h"

#define RATE_WINDOW_MS 250
#define PEAK_WINDOW_MS 500 /* the recent peak's window: at least this long */
#define PEAK_CYCLES 2      /* and at least this many flush cycles */

void spw_pressure_init(spw_pressure *pr, spw_log *log, const spw_pressure_config *c)
{
    pr->log = log;
    pr->budget = c->budget;
    pr->shed3 = c->budget / 100 * c->shed3_pct;
    pr->shed2 = c->budget / 100 * c->shed2_pct;
    pr->high = c->budget / 100 * c->high_pct;
    pr->low = c->budget / 100 * c->low_pct;
    atomic_init(&pr->above_high, 0);
    atomic_init(&pr->win_start_ms, spw_mono_ns() / 1000000);
    atomic_init(&pr->win_cycles, 0);
    atomic_init(&pr->win_cur, 0);
    atomic_init(&pr->win_prev, 0);
    atomic_init(&pr->rate_at_ms, 0);
    atomic_init(&pr->rate_bytes, 0);
    atomic_init(&pr->rate_bps, 0);
}

/* The highest pending bytes of this window and the last (see admit.h);
 * pending is the value now. Any thread; one CAS decides who moves the
 * window on. */
static uint64_t recent_peak(spw_pressure *pr, uint64_t pending)
{
    uint64_t cur = atomic_load_explicit(&pr->win_cur, memory_order_relaxed);
    while (pending > cur && !atomic_compare_exchange_weak(&pr->win_cur, &cur, pending))
        ;
    uint64_t now = spw_mono_ns() / 1000000;
    uint64_t start = atomic_load(&pr->win_start_ms);
    if (now - start >= PEAK_WINDOW_MS) {
        spw_log_stats st;
        spw_log_stats_get(pr->log, &st);
        if ((st.cycles - atomic_load(&pr->win_cycles) >= PEAK_CYCLES || pending == 0) &&
            atomic_compare_exchange_strong(&pr->win_start_ms, &start, now)) {
            atomic_store(&pr->win_cycles, st.cycles);
            atomic_store(&pr->win_prev, atomic_exchange(&pr->win_cur, pending));
        }
    }
    uint64_t peak = atomic_load(&pr->win_cur);
    uint64_t prev = atomic_load(&pr->win_prev);
    peak = prev > peak ? prev : peak;
    return pending > peak ? pending : peak;
}

int spw_pressure_level(spw_pressure *pr)
{
    uint64_t pending = recent_peak(pr, spw_log_pending_bytes(pr->log));
    if (atomic_load_explicit(&pr->above_high, memory_order_relaxed)) {
        if (pending >= pr->low)
            return 3;
        atomic_store(&pr->above_high, 0);
    } else if (pending >= pr->high) {
        atomic_store(&pr->above_high, 1);
        return 3;
    }
    return pending >= pr->shed2 ? 2 : pending >= pr->shed3 ? 1 : 0;
}

/* Bytes per second the flusher wrote, refreshed at most every
 * RATE_WINDOW_MS by whichever thread asks (one CAS decides who). */
static uint64_t drain_rate(spw_pressure *pr)
{
    uint64_t now = spw_mono_ns() / 1000000;
    uint64_t at = atomic_load(&pr->rate_at_ms);
    if (now - at >= RATE_WINDOW_MS && atomic_compare_exchange_strong(&pr->rate_at_ms, &at, now)) {
        spw_log_stats st;
        spw_log_stats_get(pr->log, &st);
        uint64_t prev = atomic_exchange(&pr->rate_bytes, st.bytes_written);
        if (at && now > at) {
            uint64_t bps = (st.bytes_written - prev) * 1000 / (now - at);
            /* Smooth over a few windows: one stalled window should not
             * send every producer away for 30 s. */
            uint64_t old = atomic_load(&pr->rate_bps);
            atomic_store(&pr->rate_bps, old ? (old + bps) / 2 : bps);
        }
    }
    return atomic_load(&pr->rate_bps);
}

uint32_t spw_pressure_retry_ms(spw_pressure *pr)
{
    uint64_t pending = spw_log_pending_bytes(pr->log);
    uint64_t excess = pending > pr->low ? pending - pr->low : 0;
    uint64_t bps = drain_rate(pr);
    /* No estimate yet (nothing written since start): a second, not the
     * maximum — the disk has not been seen to be slow. */
    uint64_t ms = bps ? excess * 1000 / bps : 1000;
    return ms < 100 ? 100 : ms > 30000 ? 30000 : (uint32_t)ms;
}

int spw_pressure_admit(spw_pressure *pr, int priority, uint32_t *retry_ms)
{
    int level = spw_pressure_level(pr);
    if (priority == 0 || level < 4 - priority)
        return SPW_ADMIT_OK;
    *retry_ms = spw_pressure_retry_ms(pr);
    return level >= 3 ? SPW_ADMIT_BACKPRESSURE : SPW_ADMIT_SHED;
}
