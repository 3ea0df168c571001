/*
 * The clocks, once: the wall clock (CLOCK_REALTIME: ids, timestamps,
 * "when" fields) and the monotonic clock (CLOCK_MONOTONIC: durations,
 * timeouts, rates), in the units callers use, and the absolute deadline a
 * pthread_cond_timedwait takes. Everything in the server, the CLI and the
 * client library reads time through here; a test that needs another clock
 * replaces the function it is handed (core/id.h spw_idgen_init), not
 * these.
 */
#ifndef SPW_CLOCK_H
#define SPW_CLOCK_H

#include <stdint.h>
#include <time.h>

int64_t spw_wall_ms(void);  /* CLOCK_REALTIME in ms since the Unix epoch */
uint64_t spw_mono_ns(void); /* CLOCK_MONOTONIC in ns */

static inline uint64_t spw_mono_us(void) { return spw_mono_ns() / 1000u; }
static inline uint64_t spw_mono_ms(void) { return spw_mono_ns() / 1000000u; }

/* The time ns from now on clock clk (the clock the condition variable
 * waits on: CLOCK_REALTIME unless its attributes say otherwise), for
 * pthread_cond_timedwait. */
struct timespec spw_deadline(clockid_t clk, uint64_t ns);

/* Sleeps until the monotonic time t_ns (returns at once if it has passed).
 * Returns 0, or EINTR when a signal ended the sleep early (the caller that
 * must sleep on calls again). */
int spw_sleep_until(uint64_t t_ns);

#endif
