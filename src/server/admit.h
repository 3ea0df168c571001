/*
 * Pressure-based admission (SPEC §5; docs/operations.md "Admission"): the
 * pending budget's watermarks, priority shedding and the Retry-After a
 * refused producer is given.
 *
 * One number drives it: the log's pending bytes (accepted, not yet
 * written) at their highest over the last flush cycles — the recent peak,
 * see below — against max_pending_bytes. As it rises:
 *
 *   level 0  below shed3             everything is admitted
 *   level 1  >= shed3                priority 3 is refused ("shed")
 *   level 2  >= shed2                priorities 2 and 3 are refused ("shed")
 *   level 3  >= high, until < low    all but priority 0 are refused
 *                                    ("backpressure"); the binary protocol
 *                                    stops reading those producers' sockets
 *   level 4  the budget itself       priority 0 too: the log refuses to
 *                                    take more than max_pending_bytes
 *
 * Level 3 has hysteresis: entered at the high watermark, left only below
 * the low one, so producers are not flapped in and out at the boundary.
 *
 * Why the recent peak and not pending bytes now: the flusher writes
 * everything pending at the start of each cycle, then waits for fsync, so
 * under overload pending bytes are a sawtooth that falls to about zero
 * every cycle and climbs back to the budget while the disk syncs. Judged
 * on the value now, every cycle would start at level 0 and let all
 * priorities in until their thresholds: priorities 1..3 would take a fixed
 * share of every cycle's budget (more than half of it) whatever priority
 * 0 needs, and priority 0 would be refused at the hard limit in every
 * cycle where it offers more than the rest. With the peak, a priority
 * shed in one cycle stays shed in the next ones, and priority 0 gets the
 * budget the others left. The window is PEAK_WINDOW_MS (admit.c) and at
 * least two flush cycles, so a slow disk's long cycles are covered too; it
 * moves on at once when nothing is pending (an idle log has no cycles).
 * Two windows are kept (this one and the last), so the peak is that of the
 * last one to two windows. The cost on the request path: a clock read and
 * a few atomic loads; once per window, the log's counters.
 *
 * Retry-After is how long the disk needs, at the rate it drained over the
 * last few hundred milliseconds, to bring pending bytes down to the low
 * watermark; at least 100 ms (1 s over HTTP, whose unit is seconds), at
 * most 30 s.
 */
#ifndef SPW_ADMIT_H
#define SPW_ADMIT_H

#include <stdint.h>

#include "log/log.h"

enum { SPW_PRESSURE_LEVELS = 5 };

typedef struct spw_pressure {
    spw_log *log;
    uint64_t budget, shed3, shed2, high, low; /* bytes */
    _Atomic int above_high;                   /* level 3 entered, not yet left */
    /* The recent peak: highest pending bytes in this window and the last. */
    _Atomic uint64_t win_start_ms, win_cycles, win_cur, win_prev;
    /* Drain-rate estimate: written bytes over a sliding interval. */
    _Atomic uint64_t rate_at_ms, rate_bytes, rate_bps;
} spw_pressure;

typedef struct spw_pressure_config {
    uint64_t budget;    /* max_pending_bytes */
    uint32_t shed3_pct; /* of the budget; default 50 */
    uint32_t shed2_pct; /* default 65 */
    uint32_t high_pct;  /* default 80 */
    uint32_t low_pct;   /* default 60; < high_pct */
} spw_pressure_config;

/* REQUIRES: 0 < shed3 <= shed2 <= high <= 100, low < high. */
void spw_pressure_init(spw_pressure *pr, spw_log *log, const spw_pressure_config *c);

/* The level now (0..3; 4 is seen only as a refused reservation). */
int spw_pressure_level(spw_pressure *pr);

/*
 * May a request of this priority (0 most important .. 3) go on to reserve
 * budget? 0 yes; else the refusal's reason, SPW_ADMIT_SHED or
 * SPW_ADMIT_BACKPRESSURE, with *retry_ms set.
 */
enum { SPW_ADMIT_OK = 0, SPW_ADMIT_SHED = 1, SPW_ADMIT_BACKPRESSURE = 2 };
int spw_pressure_admit(spw_pressure *pr, int priority, uint32_t *retry_ms);

/* Retry-After for a producer refused now, in ms (100..30000; HTTP rounds
 * it up to whole seconds). */
uint32_t spw_pressure_retry_ms(spw_pressure *pr);

#endif
