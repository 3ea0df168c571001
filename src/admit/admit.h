/*
 * Pressure-based admission (docs/operations.md "Admission"): the
 * pending budget's watermarks, priority shedding and the Retry-After a
 * refused producer is given.
 *
 * Two signals drive it. The first is the log's pending bytes now
 * (accepted, not yet written) against max_pending_bytes:
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
 * the low one. Within one flush cycle this keeps the top of the budget
 * (high..100%) for priority 0: whatever the others offer, the last part of
 * each cycle's budget is priority 0's alone.
 *
 * That alone is not enough: the flusher writes everything pending at the
 * start of each cycle, then waits for fsync, so under overload pending
 * bytes are a sawtooth that falls to about zero every cycle. Every cycle
 * would start at level 0, and priorities 1..3 would take a fixed share of
 * every cycle's budget whatever priority 0 needs. So the second signal is
 * a controller with memory: a floor under the level. In each window
 * (CTRL_WINDOW_MS and at least two flush cycles, admit.c) it counts the
 * requests the budget itself refused (spw_pressure_note_full: more was
 * offered than the disk wrote). A window with any raises the floor by
 * one level — one more priority class is refused from the start of every
 * cycle; CTRL_CLEAN windows in a row without any lower it by one. So the
 * floor settles where the priorities still admitted fit what the disk
 * writes: at twice the capacity with four equal priorities, 0 and 1 are
 * admitted and 2 and 3 shed; priority 0 is refused only when it alone
 * offers more than the disk can take. The level is the higher of the two.
 * The cost on the request path: a clock read and a few atomic loads; once
 * per window, the log's counters.
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
    /* The controller's floor level, and its window (see above). */
    _Atomic int ctrl, ctrl_clean, relax_need, just_relaxed;
    _Atomic uint64_t full_hits, win_peak;
    _Atomic uint64_t win_start_ms, win_cycles;
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

/* A request did not fit in the budget (the log refused to reserve it):
 * evidence for the controller that more is offered than is written. */
void spw_pressure_note_full(spw_pressure *pr);

/* Retry-After for a producer refused now, in ms (100..30000; HTTP rounds
 * it up to whole seconds). */
uint32_t spw_pressure_retry_ms(spw_pressure *pr);

/* Why a produce was refused: the index of the service's refusal counters
 * (svc/svc.h spw_svc.rejected; spillway_produce_rejected_total{reason}). */
enum { SPW_REJ_INVALID, SPW_REJ_RATE_LIMIT, SPW_REJ_SHED, SPW_REJ_BACKPRESSURE, SPW_REJ_DISK, SPW_REJ__N };

#endif
