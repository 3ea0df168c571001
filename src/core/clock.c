/* The clocks: see clock.h. */
#include "core/clock.h"

#include <errno.h>

_Atomic int64_t spw_clock_wall_offset_ns;

/* clock_gettime, with the test offset on the wall clock. */
static void now_on(clockid_t clk, struct timespec *ts)
{
    clock_gettime(clk, ts);
    int64_t off = clk == CLOCK_REALTIME ? atomic_load_explicit(&spw_clock_wall_offset_ns, memory_order_relaxed) : 0;
    if (off) {
        int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + off;
        ts->tv_sec = (time_t)(ns / 1000000000);
        ts->tv_nsec = (long)(ns % 1000000000);
    }
}

int64_t spw_wall_ms(void)
{
    struct timespec ts;
    now_on(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t spw_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct timespec spw_deadline(clockid_t clk, uint64_t ns)
{
    struct timespec ts;
    now_on(clk, &ts);
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec += (long)(ns % 1000000000u);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int spw_sleep_until(uint64_t t_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000u), .tv_nsec = (long)(t_ns % 1000000000u)};
    int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    return r == EINTR ? EINTR : 0;
}

void spw_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

int spw_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u), .tv_nsec = (long)(deadline_ns % 1000000000u)};
    return pthread_cond_timedwait(cv, mu, &ts);
}

int spw_cond_wait_ns(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ns)
{
    return spw_cond_wait_until(cv, mu, spw_mono_ns() + ns);
}
