/*
 * Pressure levels (admit/admit.h) on a real log's budget, moved with
 * spw_log_reserve/release (no partition, no disk):
 * - the level rises with pending bytes at once: 50% sheds priority 3, 65%
 *   priorities 2-3, 80% all but 0 (backpressure); priority 0 is always let
 *   through to the budget itself;
 * - the controller: a window in which the budget refused a request
 *   (spw_pressure_note_full) raises the floor one level, which stays when
 *   pending bytes fall back to zero (as they do at every flush); clean
 *   windows with room to spare lower it again, one level per
 *   CTRL_CLEAN windows; a floor above 0 keeps low..100% for priority 0;
 * - Retry-After stays within 100 ms .. 30 s.
 * Windows close on the clock when the log is idle; the test sleeps past a
 * window (bounded loops), it never asserts a duration.
 */
#include "admit/admit.h"

#include <time.h>

#include "test.h"

static void check_admit(spw_pressure *pr, int prio, int want)
{
    uint32_t retry = 0;
    int r = spw_pressure_admit(pr, prio, &retry);
    CHECK_EQ(r, want);
    if (r)
        CHECK(retry >= 100 && retry <= 30000);
}

int main(void)
{
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.max_pending_bytes = 1000000;
    spw_log *log;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_pressure pr;
    spw_pressure_config pc = {.budget = 1000000, .shed3_pct = 50, .shed2_pct = 65, .high_pct = 80, .low_pct = 60};
    spw_pressure_init(&pr, log, &pc);

    CHECK_EQ(spw_pressure_level(&pr), 0);
    for (int p = 0; p < 4; p++)
        check_admit(&pr, p, SPW_ADMIT_OK);

    CHECK_OK(spw_log_reserve(log, 500000, 1));
    CHECK_EQ(spw_pressure_level(&pr), 1);
    check_admit(&pr, 3, SPW_ADMIT_SHED);
    check_admit(&pr, 2, SPW_ADMIT_OK);

    CHECK_OK(spw_log_reserve(log, 150000, 1));
    CHECK_EQ(spw_pressure_level(&pr), 2);
    check_admit(&pr, 2, SPW_ADMIT_SHED);
    check_admit(&pr, 1, SPW_ADMIT_OK);

    CHECK_OK(spw_log_reserve(log, 150000, 1));
    CHECK_EQ(spw_pressure_level(&pr), 3);
    check_admit(&pr, 1, SPW_ADMIT_BACKPRESSURE);
    check_admit(&pr, 3, SPW_ADMIT_BACKPRESSURE);
    check_admit(&pr, 0, SPW_ADMIT_OK);
    /* The budget itself refuses priority 0 too (level 4). */
    CHECK_EQ(spw_log_reserve(log, 250000, 1), SPW_EAGAIN);

    /* Everything "written": pending falls to zero, as after a flush, and
     * the instant level with it. */
    spw_log_release(log, 800000);
    CHECK_EQ(spw_log_pending_bytes(log), 0);
    CHECK_EQ(spw_pressure_level(&pr), 0);

    /* The budget refused a request: after the window closes, the floor is
     * one level up, at any pending bytes. */
    spw_pressure_note_full(&pr);
    int level = 0;
    for (int i = 0; i < 100 && level == 0; i++) {
        struct timespec ts = {0, 30000000};
        nanosleep(&ts, NULL);
        level = spw_pressure_level(&pr);
    }
    CHECK_EQ(level, 1);
    check_admit(&pr, 3, SPW_ADMIT_SHED);
    check_admit(&pr, 2, SPW_ADMIT_OK);
    /* More refusals, window after window: up to 3 (all but priority 0). */
    for (int i = 0; i < 300 && level < 3; i++) {
        spw_pressure_note_full(&pr);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        level = spw_pressure_level(&pr);
    }
    CHECK_EQ(level, 3);
    check_admit(&pr, 1, SPW_ADMIT_BACKPRESSURE);
    check_admit(&pr, 0, SPW_ADMIT_OK);
    /* With the floor up, priority 0's share starts at the low watermark:
     * at 60% the level is 3 though the instant level would be 1. */
    CHECK_OK(spw_log_reserve(log, 600000, 1));
    CHECK_EQ(spw_pressure_level(&pr), 3);
    spw_log_release(log, 600000);

    /* Idle with room to spare: the floor comes down level by level, to 0
     * (bounded). */
    int seen2 = 0;
    for (int i = 0; i < 1000 && level; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        level = spw_pressure_level(&pr);
        seen2 |= level == 2;
    }
    CHECK_EQ(level, 0);
    CHECK(seen2); /* one level at a time */
    for (int p = 0; p < 4; p++)
        check_admit(&pr, p, SPW_ADMIT_OK);

    /* Between the watermarks, entered from below: shedding 2-3 only. */
    CHECK_OK(spw_log_reserve(log, 700000, 1));
    CHECK_EQ(spw_pressure_level(&pr), 2);
    spw_log_release(log, 700000);

    spw_log_close(log);
    return 0;
}
