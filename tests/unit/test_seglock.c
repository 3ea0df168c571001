/*
 * Readers never hold a partition's segment lock across I/O
 * (docs/architecture.md, "Locks"): with four threads reading all the time
 * through a disk whose every pread takes 20 ms — reads that overlap, so
 * some reader is always in the middle of one — appends at ack=fsync that
 * each roll the segment (the flusher's roll takes the lock for writing)
 * are all acknowledged, and the readers keep reading. With the lock held
 * for reading during pread, and a lock that lets readers in while a writer
 * waits, the roll would wait for a moment without readers that never
 * comes. The 60 s bound on each ack is the test's own guard against that
 * hang, not a measure of speed.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "log/log.h"
#include "os/os.h"
#include "test.h"

static _Atomic int slow;

static ssize_t slow_pread(int fd, void *buf, size_t n, off_t off)
{
    if (atomic_load(&slow))
        usleep(20000);
    return spw_os_default.pread(fd, buf, n, off);
}

typedef struct reader {
    spw_part *p;
    _Atomic int *stop;
    _Atomic uint64_t reads;
} reader;

static void *read_main(void *arg)
{
    reader *r = arg;
    spw_buf b = SPW_BUF_INIT;
    while (!atomic_load(r->stop)) {
        CHECK(spw_part_read(r->p, 0, 1 << 16, &b, NULL) > 0);
        atomic_fetch_add(&r->reads, 1);
    }
    spw_buf_fini(&b);
    return NULL;
}

typedef struct ack {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
} ack;

static void on_ack(void *arg, int status, const spw_append_result *res)
{
    (void)res;
    ack *a = arg;
    pthread_mutex_lock(&a->mu);
    a->done = 1;
    a->status = status;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

int main(void)
{
    spw_os.pread = slow_pread;
    char *dir = spw_test_tmpdir("seglock");
    spw_log *log;
    CHECK_OK(spw_log_open(NULL, &log));
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 1024;
    spw_part *p;
    CHECK_OK(spw_part_open(log, dir, &pc, &p, NULL));
    char v[600];
    memset(v, 'v', sizeof v);
    spw_record rec = {.key_len = -1, .value = v, .value_len = sizeof v, .ts = 1700000000000};
    spw_append_result res;
    CHECK_OK(spw_part_append_wait(p, &rec, 1, NULL, SPW_ACK_FSYNC, &res));

    atomic_store(&slow, 1);
    _Atomic int stop = 0;
    reader rd[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        rd[i] = (reader){.p = p, .stop = &stop};
        CHECK(pthread_create(&th[i], NULL, read_main, &rd[i]) == 0);
        usleep(5000); /* staggered: their 20 ms reads overlap */
    }
    int acked = 0;
    for (int i = 0; i < 10; i++) {
        ack a = {.done = 0};
        pthread_mutex_init(&a.mu, NULL);
        spw_cond_init(&a.cv);
        CHECK_OK(spw_part_append(p, &rec, 1, NULL, SPW_ACK_FSYNC, 0, on_ack, &a, NULL));
        pthread_mutex_lock(&a.mu);
        uint64_t until = spw_mono_ns() + 60ull * 1000000000u;
        while (!a.done && spw_mono_ns() < until)
            spw_cond_wait_until(&a.cv, &a.mu, until);
        int done = a.done;
        pthread_mutex_unlock(&a.mu);
        if (!done) {
            fprintf(stderr, "append %d (a roll) not acknowledged after 60 s while readers read\n", i);
            CHECK(done);
        }
        CHECK_OK(a.status);
        acked++;
    }
    spw_part_state st;
    spw_part_state_get(p, &st);
    uint64_t reads = 0;
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        reads += atomic_load(&rd[i].reads);
    }
    atomic_store(&slow, 0);
    printf("%d appends acknowledged, %u segments, %llu reads meanwhile\n", acked, st.segments,
           (unsigned long long)reads);
    CHECK_EQ(acked, 10);
    CHECK(st.segments >= 10);
    CHECK(reads > 0);
    spw_part_close(p);
    spw_log_close(log);
    spw_test_rmrf(dir);
    free(dir);
    printf("ok\n");
    return 0;
}
