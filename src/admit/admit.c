/* Pressure-based admission: see admit.h. */
#include "admit/admit.h"

#include <stdatomic.h>

#include "core/id.h"

#define RATE_WINDOW_MS 250
#define CTRL_WINDOW_MS 250 /* the controller's window: at least this long */
#define CTRL_CYCLES 2      /* and at least this many flush cycles */
#define CTRL_CLEAN 2       /* clean windows before one more priority is let in */
#define CTRL_CLEAN_MAX 64  /* ... at most, after letting one in overflowed again and again */

void spw_pressure_init(spw_pressure *pr, spw_log *log, const spw_pressure_config *c)
{
    pr->log = log;
    pr->budget = c->budget;
    pr->shed3 = c->budget / 100 * c->shed3_pct;
    pr->shed2 = c->budget / 100 * c->shed2_pct;
    pr->high = c->budget / 100 * c->high_pct;
    pr->low = c->budget / 100 * c->low_pct;
    atomic_init(&pr->above_high, 0);
    atomic_init(&pr->ctrl, 0);
    atomic_init(&pr->ctrl_clean, 0);
    atomic_init(&pr->full_hits, 0);
    atomic_init(&pr->win_peak, 0);
    atomic_init(&pr->relax_need, CTRL_CLEAN);
    atomic_init(&pr->just_relaxed, 0);
    atomic_init(&pr->win_start_ms, spw_mono_ns() / 1000000);
    atomic_init(&pr->win_cycles, 0);
    atomic_init(&pr->rate_at_ms, 0);
    atomic_init(&pr->rate_bytes, 0);
    atomic_init(&pr->rate_bps, 0);
}

void spw_pressure_note_full(spw_pressure *pr) { atomic_fetch_add_explicit(&pr->full_hits, 1, memory_order_relaxed); }

/*
 * The controller (admit.h): at the end of each window, a window in which
 * the budget refused a request raises the floor one level (one more
 * priority is shed), CTRL_CLEAN windows in a row without one lower it.
 * Any thread; one CAS decides who closes the window.
 */
static int ctrl_level(spw_pressure *pr)
{
    uint64_t now = spw_mono_ns() / 1000000;
    uint64_t start = atomic_load_explicit(&pr->win_start_ms, memory_order_relaxed);
    if (now - start >= CTRL_WINDOW_MS) {
        spw_log_stats st;
        spw_log_stats_get(pr->log, &st);
        uint64_t idle = spw_log_pending_bytes(pr->log) == 0;
        if ((st.cycles - atomic_load(&pr->win_cycles) >= CTRL_CYCLES || idle) &&
            atomic_compare_exchange_strong(&pr->win_start_ms, &start, now)) {
            atomic_store(&pr->win_cycles, st.cycles);
            /* Only the thread that won the CAS gets here: plain
             * read-modify-write of the controller's state is safe. */
            int c = atomic_load(&pr->ctrl);
            int need = atomic_load(&pr->relax_need);
            int relaxed = atomic_exchange(&pr->just_relaxed, 0);
            uint64_t peak = atomic_exchange(&pr->win_peak, 0);
            if (atomic_exchange(&pr->full_hits, 0)) {
                atomic_store(&pr->ctrl_clean, 0);
                if (c < 3)
                    atomic_store(&pr->ctrl, c + 1);
                /* Letting a priority back in overflowed at once: wait
                 * twice as long before trying again. */
                if (relaxed)
                    atomic_store(&pr->relax_need, need * 2 > CTRL_CLEAN_MAX ? CTRL_CLEAN_MAX : need * 2);
            } else if (peak >= pr->high) {
                /* No refusal, but no room either: what is admitted fills
                 * the budget; letting one more priority in would not fit. */
                atomic_store(&pr->ctrl_clean, 0);
            } else {
                if (relaxed && need > CTRL_CLEAN)
                    atomic_store(&pr->relax_need, need / 2);
                if (c > 0 && atomic_fetch_add(&pr->ctrl_clean, 1) + 1 >= need) {
                    atomic_store(&pr->ctrl_clean, 0);
                    atomic_store(&pr->ctrl, c - 1);
                    atomic_store(&pr->just_relaxed, 1);
                }
            }
        }
    }
    return atomic_load_explicit(&pr->ctrl, memory_order_relaxed);
}

int spw_pressure_level(spw_pressure *pr)
{
    uint64_t pending = spw_log_pending_bytes(pr->log);
    uint64_t peak = atomic_load_explicit(&pr->win_peak, memory_order_relaxed);
    while (pending > peak && !atomic_compare_exchange_weak(&pr->win_peak, &peak, pending))
        ;
    int level;
    if (atomic_load_explicit(&pr->above_high, memory_order_relaxed) && pending >= pr->low) {
        level = 3;
    } else if (pending >= pr->high) {
        atomic_store(&pr->above_high, 1);
        level = 3;
    } else {
        if (atomic_load_explicit(&pr->above_high, memory_order_relaxed))
            atomic_store(&pr->above_high, 0);
        level = pending >= pr->shed2 ? 2 : pending >= pr->shed3 ? 1 : 0;
    }
    int c = ctrl_level(pr);
    /* While the controller is shedding (more has been offered than the
     * disk writes), the top of every cycle's budget kept for priority 0
     * widens from high..100% to low..100%. */
    if (c > 0 && pending >= pr->low && level < 3)
        level = 3;
    return c > level ? c : level;
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
