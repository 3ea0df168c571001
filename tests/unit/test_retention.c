/*
 * Retention and holds (log.h, "Holds"): retention by bytes and by age never
 * deletes a segment holding an offset at or above the lowest hold; several
 * holders, moving and releasing holds; no hold below the start offset; a
 * hold taken while retention runs in another thread is never undercut; the
 * log's disk byte count drops by exactly what retention deleted.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "test.h"

static void append_n(spw_part *p, uint32_t n)
{
    char v[100];
    memset(v, 'x', sizeof v);
    for (uint32_t i = 0; i < n; i++) {
        spw_record r = {.key_len = -1, .value = v, .value_len = sizeof v, .ts = 1};
        CHECK_OK(spw_part_append_wait(p, &r, 1, NULL, SPW_ACK_WRITTEN, NULL));
    }
    /* Readers see durable records only (log.h): ask for the fsync. */
    spw_part_state st;
    for (int i = 0; i < 5000; i++) {
        spw_part_state_get(p, &st);
        if (st.durable_offset == st.next_offset)
            break;
        spw_part_sync_soon(p);
        usleep(1000);
    }
    CHECK_EQ(st.durable_offset, st.next_offset);
}

static spw_part_state state(spw_part *p)
{
    spw_part_state st;
    spw_part_state_get(p, &st);
    return st;
}

/* Is offset still readable? */
static int readable(spw_part *p, uint64_t off)
{
    spw_buf b = SPW_BUF_INIT;
    int r = spw_part_read(p, off, 1024, &b, NULL);
    spw_buf_fini(&b);
    return r > 0;
}

static void test_holds(spw_log *log, const char *dir)
{
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 2048;
    pc.retention_bytes = 0; /* everything but the active segment may go */
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    append_n(p, 400);
    CHECK(state(p).segments > 10);
    CHECK_EQ(spw_part_protected(p), UINT64_MAX);

    /* Two holders: the lower one decides. */
    spw_hold *a, *b;
    CHECK_OK(spw_part_hold(p, 120, &a));
    CHECK_OK(spw_part_hold(p, 250, &b));
    CHECK_EQ(spw_part_protected(p), 120);
    uint64_t disk0 = spw_log_disk_bytes(log), bytes0 = state(p).bytes;
    CHECK(spw_part_enforce_retention(p, spw_wall_ms()) > 0);
    spw_part_state st = state(p);
    CHECK(st.start_offset <= 120);
    CHECK(st.start_offset > 0);
    CHECK_EQ(disk0 - spw_log_disk_bytes(log), bytes0 - st.bytes);
    for (uint64_t o = 120; o < st.next_offset; o++)
        CHECK(readable(p, o));
    CHECK_EQ(spw_part_enforce_retention(p, spw_wall_ms()), 0);

    /* No hold on what is gone; a failed move leaves the hold where it was. */
    spw_hold *c;
    CHECK_EQ(spw_part_hold(p, st.start_offset - 1, &c), SPW_ERANGE);
    CHECK_EQ(spw_hold_move(b, st.start_offset - 1), SPW_ERANGE);
    CHECK_EQ(spw_part_protected(p), 120);
    CHECK_OK(spw_part_hold(p, st.start_offset, &c));
    CHECK_EQ(spw_part_protected(p), st.start_offset);
    spw_hold_release(c);

    /* Moving the low hold up lets retention go up to the next one. */
    CHECK_OK(spw_hold_move(a, 300));
    CHECK_EQ(spw_part_protected(p), 250);
    CHECK(spw_part_enforce_retention(p, spw_wall_ms()) > 0);
    st = state(p);
    CHECK(st.start_offset > 120);
    CHECK(st.start_offset <= 250);
    for (uint64_t o = 250; o < st.next_offset; o++)
        CHECK(readable(p, o));

    /* Retention by age obeys holds too. */
    spw_hold_release(b);
    CHECK_EQ(spw_part_protected(p), 300);
    spw_hold_release(a); /* holds go before their partition closes */
    spw_part_close(p);
    pc.retention_bytes = -1;
    pc.retention_ms = 0;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    /* Holds are in memory: the holder takes its hold again after a reopen. */
    CHECK_EQ(spw_part_protected(p), UINT64_MAX);
    CHECK_OK(spw_part_hold(p, 300, &a));
    CHECK(spw_part_enforce_retention(p, spw_wall_ms() + 10000) > 0);
    st = state(p);
    CHECK(st.start_offset > 250);
    CHECK(st.start_offset <= 300);
    for (uint64_t o = 300; o < st.next_offset; o++)
        CHECK(readable(p, o));

    /* Nothing held: all but the active segment goes. */
    spw_hold_release(a);
    CHECK_EQ(spw_part_protected(p), UINT64_MAX);
    CHECK(spw_part_enforce_retention(p, spw_wall_ms() + 10000) > 0);
    st = state(p);
    CHECK_EQ(st.segments, 1);
    CHECK_EQ(spw_log_disk_bytes(log), st.bytes);
    spw_part_close(p);
    CHECK_EQ(spw_log_disk_bytes(log), 0);
}

/* ---- holds taken while retention runs ---- */

typedef struct race {
    spw_part *p;
    _Atomic int stop;
} race;

static void *appender(void *arg)
{
    race *r = arg;
    while (!atomic_load(&r->stop))
        append_n(r->p, 1);
    return NULL;
}

static void *retainer(void *arg)
{
    race *r = arg;
    while (!atomic_load(&r->stop))
        CHECK_OK(spw_part_enforce_retention(r->p, spw_wall_ms()));
    return NULL;
}

static void test_race(spw_log *log, const char *dir)
{
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 1024;
    pc.retention_bytes = 0;
    race r = {0};
    CHECK_OK(spw_part_open(log, dir, &pc, &r.p, NULL));
    append_n(r.p, 50);
    pthread_t ta, tr;
    CHECK(pthread_create(&ta, NULL, appender, &r) == 0);
    CHECK(pthread_create(&tr, NULL, retainer, &r) == 0);
    int granted = 0;
    for (int i = 0; i < 2000; i++) {
        /* Hold the oldest offset still there: it may be deleted before the
         * hold is granted (ERANGE), but once granted it must stay. */
        uint64_t off = state(r.p).start_offset;
        spw_hold *h;
        int e = spw_part_hold(r.p, off, &h);
        if (e == SPW_ERANGE)
            continue;
        CHECK_OK(e);
        granted++;
        for (int k = 0; k < 3; k++) {
            sched_yield();
            spw_part_state st = state(r.p);
            CHECK(st.start_offset <= off);
            /* off may be the end itself (all that is left is an empty
             * active segment): readable once something is written there. */
            CHECK(off >= st.durable_offset || readable(r.p, off));
        }
        spw_hold_release(h);
    }
    atomic_store(&r.stop, 1);
    pthread_join(ta, NULL);
    pthread_join(tr, NULL);
    CHECK(granted > 0);
    CHECK(state(r.p).start_offset > 0); /* retention did run */
    spw_part_close(r.p);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    char *dir = spw_test_tmpdir("retention");
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    char d[4096];
    snprintf(d, sizeof d, "%s/holds", dir);
    test_holds(log, d);
    snprintf(d, sizeof d, "%s/race", dir);
    test_race(log, d);
    CHECK_EQ(spw_log_disk_bytes(log), 0);
    spw_log_close(log);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_retention: ok");
    return 0;
}
