/*
 * The I/O workers (core/workq.h): every job submitted runs exactly once,
 * on a worker thread (not the submitter's); with every worker busy, at
 * most max_queued jobs wait and the next submit is refused (SPW_EAGAIN,
 * its function never runs); destroy runs the jobs still queued.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core/error.h"
#include "core/workq.h"
#include "test.h"

static _Atomic int ran, on_main, gate_open = 0;
static pthread_t main_th;

static void job(void *arg)
{
    (void)arg;
    if (pthread_equal(pthread_self(), main_th))
        atomic_fetch_add(&on_main, 1);
    atomic_fetch_add(&ran, 1);
}

static _Atomic int blocked;

static void blocker(void *arg)
{
    (void)arg;
    atomic_fetch_add(&blocked, 1);
    while (!atomic_load(&gate_open))
        usleep(1000);
    atomic_fetch_add(&ran, 1);
}

static void *opener(void *arg)
{
    (void)arg;
    usleep(20000);
    atomic_store(&gate_open, 1);
    return NULL;
}

int main(void)
{
    main_th = pthread_self();
    spw_workq *q = spw_workq_create("test-workq", 2, 3);
    /* Both workers busy... */
    CHECK_OK(spw_workq_submit(q, blocker, NULL));
    CHECK_OK(spw_workq_submit(q, blocker, NULL));
    for (int i = 0; i < 20000 && atomic_load(&blocked) < 2; i++)
        usleep(1000);
    CHECK_EQ(atomic_load(&blocked), 2);
    /* ...three wait, the fourth is refused. */
    CHECK_OK(spw_workq_submit(q, job, NULL));
    CHECK_OK(spw_workq_submit(q, job, NULL));
    CHECK_OK(spw_workq_submit(q, job, NULL));
    CHECK_EQ(spw_workq_submit(q, job, NULL), SPW_EAGAIN);
    spw_workq_stats st;
    spw_workq_stats_get(q, &st);
    CHECK_EQ(st.threads, 2);
    CHECK_EQ(st.queued, 3);
    CHECK_EQ(st.running, 2);
    CHECK_EQ(st.refused, 1);
    CHECK_EQ(atomic_load(&ran), 0);
    atomic_store(&gate_open, 1);
    for (int i = 0; i < 20000 && atomic_load(&ran) < 5; i++)
        usleep(1000);
    CHECK_EQ(atomic_load(&ran), 5);
    /* Queued at destroy: still run, once each. */
    atomic_store(&gate_open, 0);
    atomic_store(&blocked, 0);
    CHECK_OK(spw_workq_submit(q, blocker, NULL));
    CHECK_OK(spw_workq_submit(q, blocker, NULL));
    for (int i = 0; i < 20000 && atomic_load(&blocked) < 2; i++)
        usleep(1000);
    for (int i = 0; i < 3; i++)
        CHECK_OK(spw_workq_submit(q, job, NULL));
    pthread_t op;
    CHECK(pthread_create(&op, NULL, opener, NULL) == 0); /* opens the gate once destroy waits */
    spw_workq_destroy(q);
    pthread_join(op, NULL);
    CHECK_EQ(atomic_load(&ran), 10);
    CHECK_EQ(atomic_load(&on_main), 0);
    printf("ok\n");
    return 0;
}
