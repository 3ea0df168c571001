/*
 * The clocks, once: the wall clock (CLOCK_REALTIME: ids, timestamps,
 * "when" fields) and the monotonic clock (CLOCK_MONOTONIC: durations,
 * timeouts, rates, every timed wait), in the units callers use. Everything in the server, the CLI and the
 * client library reads time through here; a test that needs another clock
 * replaces the function it is handed (core/id.h spw_idgen_init), not
 * these.
 */
#ifndef SPW_CLOCK_H
#define SPW_CLOCK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

int64_t spw_wall_ms(void);  /* CLOCK_REALTIME in ms since the Unix epoch */
uint64_t spw_mono_ns(void); /* CLOCK_MONOTONIC in ns */

static inline uint64_t spw_mono_us(void) { return spw_mono_ns() / 1000u; }
static inline uint64_t spw_mono_ms(void) { return spw_mono_ns() / 1000000u; }

/* The time ns from now on clock clk, for an absolute wait on that clock
 * (clock_nanosleep). Condition variables take spw_cond_wait_ns. */
struct timespec spw_deadline(clockid_t clk, uint64_t ns);

/*
 * Timed waits. Every condition variable that is waited on with a timeout
 * is initialized by spw_cond_init, which makes it time its waits on
 * CLOCK_MONOTONIC: a step of the wall clock (NTP, an operator, a VM
 * resumed) neither stalls a wait (a step back of an hour would make a
 * CLOCK_REALTIME wait last an hour more) nor ends it early. Nothing in
 * src/ calls pthread_cond_timedwait or sem_timedwait itself.
 */
void spw_cond_init(pthread_cond_t *cv);
/* Waits on cv (spw_cond_init'ed; mu held) until signalled, or until ns
 * passed. 0 when woken (maybe spuriously), ETIMEDOUT. */
int spw_cond_wait_ns(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ns);
/* The same until the monotonic time deadline_ns (spw_mono_ns' clock). */
int spw_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t deadline_ns);

/* Tests only (the spillway_test binary sets it; 0 everywhere else): added
 * to every CLOCK_REALTIME reading made through here (spw_wall_ms,
 * spw_deadline). A process whose wall clock reads an hour ahead of the
 * kernel's is what a wait timed on CLOCK_REALTIME sees when the clock is
 * stepped back an hour during it: the wait lasts an hour more. Waits timed
 * by spw_cond_wait_* do not read it. */
extern _Atomic int64_t spw_clock_wall_offset_ns;

/* Sleeps until the monotonic time t_ns (returns at once if it has passed).
 * Returns 0, or EINTR when a signal ended the sleep early (the caller that
 * must sleep on calls again). */
int spw_sleep_until(uint64_t t_ns);

#endif
