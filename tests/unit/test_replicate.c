/*
 * The ack=replicated registry (src/svc/replicate.h), alone: a waiter is
 * answered OK once the sink's progress covers its records, and
 * SPW_REPL_REJECTED instead when the sink dead-lettered one of them —
 * at the dead letter itself, when the progress passes a record
 * dead-lettered before the waiter came (a retry answered from the dedupe
 * table), for a request of several partitions, and not for a neighbour
 * whose records were all delivered. The registry remembers the last
 * SPW_REPL_DEAD_KEPT dead letters, and forgets them when the sink drains
 * another stream. Its wait histogram is exported in seconds.
 */
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "svc/metrics.h"
#include "svc/replicate.h"
#include "test.h"

typedef struct answer {
    int calls;
    int outcome;
    char why[400];
} answer;

static void on_done(void *arg, int outcome, const char *why)
{
    answer *a = arg;
    a->calls++;
    a->outcome = outcome;
    snprintf(a->why, sizeof a->why, "%s", why ? why : "");
}

/* Waits for records [first, first + count) of partition part of stream s. */
static void wait1(spw_repl *r, const char *s, uint32_t part, uint64_t first, uint32_t count, answer *a)
{
    spw_dd_slot sl = {.partition = part, .first_offset = first, .count = count};
    spw_repl_wait(r, "k", s, 7, &sl, 1, 60000, on_done, a);
}

int main(void)
{
    spw_repl *r = spw_repl_new();
    CHECK(r != NULL);
    uint64_t next[2] = {0, 0};
    spw_repl_attach(r, "k", "s", 7, 2, next, NULL, NULL, NULL);

    /* delivered: OK once the progress passes it */
    answer good = {0};
    wait1(r, "s", 0, 0, 2, &good);
    CHECK_EQ(good.calls, 0);
    spw_repl_progress(r, "k", 0, 2);
    CHECK_EQ(good.calls, 1);
    CHECK_EQ(good.outcome, SPW_REPL_OK);

    /* dead-lettered while it waits: REJECTED at once, with the sentence;
     * its neighbour in the same partition is not touched */
    answer bad = {0}, next_door = {0};
    wait1(r, "s", 0, 2, 3, &bad);       /* offsets 2, 3, 4 */
    wait1(r, "s", 0, 5, 1, &next_door); /* offset 5 */
    spw_repl_dead(r, "k", 0, 3, "invalid input syntax for type bigint");
    CHECK_EQ(bad.calls, 1);
    CHECK_EQ(bad.outcome, SPW_REPL_REJECTED);
    CHECK(strstr(bad.why, "offset 3") != NULL);
    CHECK(strstr(bad.why, "invalid input syntax") != NULL);
    CHECK_EQ(next_door.calls, 0);
    spw_repl_progress(r, "k", 0, 6);
    CHECK_EQ(bad.calls, 1); /* exactly once */
    CHECK_EQ(next_door.calls, 1);
    CHECK_EQ(next_door.outcome, SPW_REPL_OK);

    /* a wait that starts after the dead letter and the progress passing
     * it (a retry): REJECTED, not OK */
    answer retry = {0};
    wait1(r, "s", 0, 2, 3, &retry);
    CHECK_EQ(retry.calls, 1);
    CHECK_EQ(retry.outcome, SPW_REPL_REJECTED);

    /* several partitions: a dead letter in one rejects the request */
    answer multi = {0};
    spw_dd_slot two[2] = {{.partition = 0, .first_offset = 6, .count = 1},
                          {.partition = 1, .first_offset = 0, .count = 4}};
    spw_repl_wait(r, "k", "s", 7, two, 2, 60000, on_done, &multi);
    spw_repl_progress(r, "k", 0, 7);
    CHECK_EQ(multi.calls, 0);
    spw_repl_dead(r, "k", 1, 2, "check constraint");
    CHECK_EQ(multi.calls, 1);
    CHECK_EQ(multi.outcome, SPW_REPL_REJECTED);
    spw_repl_progress(r, "k", 1, 4);

    /* the last SPW_REPL_DEAD_KEPT are kept: offset 3's is pushed out by
     * that many newer ones (offsets 100.. of partition 1) */
    for (uint64_t i = 0; i < SPW_REPL_DEAD_KEPT; i++)
        spw_repl_dead(r, "k", 1, 100 + i, "x");
    spw_repl_progress(r, "k", 1, 100 + SPW_REPL_DEAD_KEPT);
    answer old = {0}, kept = {0};
    wait1(r, "s", 0, 3, 1, &old);
    CHECK_EQ(old.calls, 1);
    CHECK_EQ(old.outcome, SPW_REPL_OK);
    wait1(r, "s", 1, 100, 1, &kept);
    CHECK_EQ(kept.calls, 1);
    CHECK_EQ(kept.outcome, SPW_REPL_REJECTED);

    /* the sink drains another stream: the old stream's dead letters are
     * forgotten (its offsets are another stream's) */
    uint64_t far[2] = {5000, 5000};
    spw_repl_attach(r, "k", "t", 8, 2, far, NULL, NULL, NULL);
    answer other = {0};
    spw_dd_slot sl = {.partition = 1, .first_offset = 100, .count = 1};
    spw_repl_wait(r, "k", "t", 8, &sl, 1, 60000, on_done, &other);
    CHECK_EQ(other.calls, 1);
    CHECK_EQ(other.outcome, SPW_REPL_OK);

    /* a dead letter of a sink the registry does not know changes nothing */
    spw_repl_dead(r, "nobody", 0, 1, "x");

    spw_repl_stats st;
    spw_repl_stats_get(r, &st);
    CHECK_EQ(st.rejected, 4);
    CHECK_EQ(st.waiting, 0);

    /* the wait histogram is in seconds: its first bucket is 1 µs, and the
     * waits above (microseconds each) sum to far below a second */
    spw_metrics *m = spw_metrics_new();
    spw_repl_metrics_register(r, m);
    spw_buf out = SPW_BUF_INIT;
    spw_metrics_render(m, &out, NULL);
    spw_buf_put(&out, "", 1);
    const char *text = (const char *)out.p;
    CHECK(strstr(text, "spillway_replicated_wait_seconds_bucket{le=\"1e-06\"} ") != NULL);
    const char *sum = strstr(text, "spillway_replicated_wait_seconds_sum ");
    CHECK(sum != NULL);
    double secs = strtod(sum + strlen("spillway_replicated_wait_seconds_sum "), NULL);
    CHECK(secs >= 0 && secs < 1.0);
    const char *count = strstr(text, "spillway_replicated_wait_seconds_count ");
    CHECK(count != NULL);
    CHECK(strtoull(count + strlen("spillway_replicated_wait_seconds_count "), NULL, 10) == st.acked);
    CHECK(st.acked > 0);
    spw_buf_fini(&out);
    spw_metrics_free(m);
    spw_repl_free(r);
    printf("test_replicate: ok\n");
    return 0;
}
