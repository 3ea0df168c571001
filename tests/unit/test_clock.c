/*
 * The clocks (core/clock.h): the monotonic clock in ns, us and ms agrees
 * with itself and never goes back; the wall clock agrees with time(2);
 * spw_deadline lies ns after the clock's present and is normalized
 * (tv_nsec below one second) whatever the carry.
 */
#include <time.h>

#include "core/clock.h"
#include "test.h"

static int64_t ts_ns(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

int main(void)
{
    uint64_t a = spw_mono_ns(), b = spw_mono_us(), c = spw_mono_ms(), d = spw_mono_ns();
    CHECK(a <= d);
    CHECK(a / 1000 <= b && b <= d / 1000);
    CHECK(a / 1000000 <= c && c <= d / 1000000);

    time_t before = time(NULL);
    int64_t w = spw_wall_ms();
    time_t after = time(NULL);
    CHECK((int64_t)before * 1000 <= w && w < ((int64_t)after + 1) * 1000);

    const uint64_t spans[] = {0, 1, 999999999, 1000000000, 1500000000, 86400ull * 1000000000};
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
        for (int k = 0; k < 2; k++) {
            clockid_t clk = k ? CLOCK_MONOTONIC : CLOCK_REALTIME;
            struct timespec lo, hi;
            clock_gettime(clk, &lo);
            struct timespec dl = spw_deadline(clk, spans[i]);
            clock_gettime(clk, &hi);
            CHECK(dl.tv_nsec >= 0 && dl.tv_nsec < 1000000000L);
            CHECK(ts_ns(lo) + (int64_t)spans[i] <= ts_ns(dl));
            CHECK(ts_ns(dl) <= ts_ns(hi) + (int64_t)spans[i]);
        }
    }
    printf("test_clock: ok\n");
    return 0;
}
