/*
 * Snowflake ids (core/id.h): the bit layout (41 bits ms since 2024-01-01,
 * 10 bits node, 12 bits sequence), uniqueness and order across threads,
 * borrowing the next millisecond after 4096 ids, a clock that steps back,
 * and spw_idgen_observe after a restart.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "core/id.h"
#include "test.h"

static _Atomic int64_t fake_now;
static int64_t fake_clock(void) { return atomic_load(&fake_now); }

/* An id from its parts (ms since the Snowflake epoch). */
static uint64_t mk(uint64_t ms, uint32_t node, uint32_t seq)
{
    return (ms << 22) | ((uint64_t)node << 12) | seq;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_layout(void)
{
    /* The epoch is 2024-01-01T00:00:00Z. */
    struct tm tm = {.tm_year = 2024 - 1900, .tm_mon = 0, .tm_mday = 1};
    CHECK_EQ((int64_t)timegm(&tm) * 1000, SPW_ID_EPOCH_MS);
    CHECK_EQ(SPW_ID_NODE_BITS, 10);
    CHECK_EQ(SPW_ID_SEQ_BITS, 12);
    CHECK_EQ(SPW_ID_NODE_MAX, 1023);

    /* Decoding hand-made ids: every field at its extremes. */
    static const uint64_t mss[] = {0, 1, 4095, 4096, 123456789, (1ull << 40), (1ull << 41) - 1};
    static const uint32_t nodes[] = {0, 1, 0x2A5, 512, 1023};
    static const uint32_t seqs[] = {0, 1, 0x800, 4095};
    for (size_t a = 0; a < sizeof mss / sizeof mss[0]; a++)
        for (size_t b = 0; b < sizeof nodes / sizeof nodes[0]; b++)
            for (size_t c = 0; c < sizeof seqs / sizeof seqs[0]; c++) {
                uint64_t id = mk(mss[a], nodes[b], seqs[c]);
                CHECK(id < (1ull << 63)); /* 41 + 10 + 12 = 63 bits: ids are positive int64s */
                CHECK_EQ(spw_id_ms(id), SPW_ID_EPOCH_MS + (int64_t)mss[a]);
                CHECK_EQ(spw_id_node(id), nodes[b]);
                CHECK_EQ(spw_id_seq(id), seqs[c]);
            }
    /* The largest id: all 63 bits set. */
    CHECK(mk((1ull << 41) - 1, 1023, 4095) == INT64_MAX);

    /* Tickets (ms * 4096 + seq) map to ids with the generator's node. */
    spw_idgen g;
    for (size_t b = 0; b < sizeof nodes / sizeof nodes[0]; b++) {
        spw_idgen_init(&g, nodes[b], fake_clock);
        for (size_t a = 0; a < sizeof mss / sizeof mss[0]; a++)
            for (size_t c = 0; c < sizeof seqs / sizeof seqs[0]; c++)
                CHECK(spw_id_from_ticket(&g, (mss[a] << 12) | seqs[c]) == mk(mss[a], nodes[b], seqs[c]));
    }

    /* A generator: first id of a millisecond has seq 0, then 1, 2, ... */
    int64_t T = SPW_ID_EPOCH_MS + 365LL * 86400000 + 7;
    atomic_store(&fake_now, T);
    for (size_t b = 0; b < sizeof nodes / sizeof nodes[0]; b++) {
        spw_idgen_init(&g, nodes[b], fake_clock);
        for (uint32_t s = 0; s < 10; s++) {
            uint64_t id = spw_idgen_next(&g);
            CHECK(id == mk((uint64_t)(T - SPW_ID_EPOCH_MS), nodes[b], s));
            CHECK_EQ(spw_id_ms(id), T);
            CHECK_EQ(spw_id_node(id), nodes[b]);
            CHECK_EQ(spw_id_seq(id), s);
        }
    }

    /* The real clock: a fresh generator's id carries the current time. */
    spw_idgen_init(&g, 9, NULL);
    int64_t t1 = spw_wall_ms();
    uint64_t id = spw_idgen_next(&g);
    int64_t t2 = spw_wall_ms();
    CHECK(spw_id_ms(id) >= t1 && spw_id_ms(id) <= t2);
    CHECK_EQ(spw_id_node(id), 9);
    CHECK(t1 > SPW_ID_EPOCH_MS);
    CHECK((uint64_t)(t1 - SPW_ID_EPOCH_MS) < (1ull << 41));

    /* A clock before the epoch counts as the epoch (ms field 0), still unique. */
    atomic_store(&fake_now, SPW_ID_EPOCH_MS - 1000);
    spw_idgen_init(&g, 1, fake_clock);
    uint64_t a = spw_idgen_next(&g), b = spw_idgen_next(&g);
    CHECK(a == mk(0, 1, 0));
    CHECK(b == mk(0, 1, 1));
}

static void test_borrow(void)
{
    int64_t T = SPW_ID_EPOCH_MS + 5000000;
    uint64_t ms = (uint64_t)(T - SPW_ID_EPOCH_MS);
    atomic_store(&fake_now, T);
    spw_idgen g;
    spw_idgen_init(&g, 33, fake_clock);
    uint64_t prev = 0;
    for (uint32_t s = 0; s < 4096; s++) {
        uint64_t id = spw_idgen_next(&g);
        CHECK(id == mk(ms, 33, s));
        CHECK(s == 0 || id > prev);
        prev = id;
    }
    /* The 4097th id of the millisecond borrows the next one. */
    uint64_t id = spw_idgen_next(&g);
    CHECK(id == mk(ms + 1, 33, 0));
    CHECK(id > prev);
    prev = id;
    /* A reservation of n spans milliseconds: tickets are consecutive and
     * their ids strictly increase through every seq wrap. */
    uint32_t n = 3 * 4096 + 100;
    uint64_t t = spw_idgen_reserve(&g, n);
    CHECK(t == ((ms + 1) << 12) + 1);
    for (uint32_t i = 0; i < n; i++) {
        id = spw_id_from_ticket(&g, t + i);
        CHECK(id > prev);
        CHECK_EQ(spw_id_node(id), 33);
        CHECK_EQ(spw_id_seq(id), (1 + i) % 4096);
        prev = id;
    }
    CHECK(spw_id_ms(prev) == T + 4);
    /* The clock catching up with borrowed time does not restart the sequence. */
    atomic_store(&fake_now, T + 2);
    id = spw_idgen_next(&g);
    CHECK(id > prev);
    CHECK(spw_id_ms(id) == T + 4);
    prev = id;
    /* Once the clock passes the borrowed time, ids follow it again from seq 0. */
    atomic_store(&fake_now, T + 100);
    id = spw_idgen_next(&g);
    CHECK(id == mk(ms + 100, 33, 0));
    CHECK(id > prev);
}

static void test_clock_back(void)
{
    int64_t T = SPW_ID_EPOCH_MS + 86400000LL * 400;
    atomic_store(&fake_now, T);
    spw_idgen g;
    spw_idgen_init(&g, 7, fake_clock);
    uint64_t prev = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t id = spw_idgen_next(&g);
        CHECK(i == 0 || id > prev);
        prev = id;
    }
    /* Back 5 s, then 1 h, then forward a little (still behind): never a
     * repeat nor a decrease; the ms field stays at or after T. */
    static const int64_t steps[] = {-5000, -3600000, -3000, -1, 0};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        atomic_store(&fake_now, T + steps[k]);
        for (int i = 0; i < 3000; i++) {
            uint64_t id = i % 3 ? spw_idgen_next(&g) : spw_id_from_ticket(&g, spw_idgen_reserve(&g, 5) + 4);
            CHECK(id > prev);
            CHECK(spw_id_ms(id) >= T);
            CHECK_EQ(spw_id_node(id), 7);
            prev = id;
        }
    }
    /* 100 + 5 * (2000 + 1000 * 5) tickets were taken at or after T: the
     * borrowed time is exactly that many tickets. */
    CHECK(spw_id_ms(prev) == T + (100 + 5 * 7000 - 1) / 4096);
    CHECK_EQ(spw_id_seq(prev), (100 + 5 * 7000 - 1) % 4096);
    /* Forward past it: ids follow the clock again. */
    atomic_store(&fake_now, T + 1000);
    uint64_t id = spw_idgen_next(&g);
    CHECK(id == mk((uint64_t)(T + 1000 - SPW_ID_EPOCH_MS), 7, 0));
}

static void test_observe(void)
{
    int64_t T = SPW_ID_EPOCH_MS + 10000000;
    uint64_t ms = (uint64_t)(T - SPW_ID_EPOCH_MS);
    atomic_store(&fake_now, T);
    spw_idgen g;

    /* observe(0) and an id from the past change nothing. */
    spw_idgen_init(&g, 5, fake_clock);
    spw_idgen_observe(&g, 0);
    spw_idgen_observe(&g, mk(ms - 1, 1023, 4095));
    CHECK(spw_idgen_next(&g) == mk(ms, 5, 0));

    /* An id stored by a previous run (any node) whose time is ahead of the
     * clock (the clock went back while the process was down). */
    spw_idgen_init(&g, 5, fake_clock);
    uint64_t stored = mk(ms + 3600000, 900, 7);
    spw_idgen_observe(&g, stored);
    uint64_t id = spw_idgen_next(&g);
    CHECK(id > stored);
    CHECK(id == mk(ms + 3600001, 5, 0)); /* node 900 > 5: only the next ms is greater */
    /* Observing something smaller afterwards changes nothing. */
    spw_idgen_observe(&g, stored);
    spw_idgen_observe(&g, mk(ms, 5, 100));
    CHECK(spw_idgen_next(&g) == mk(ms + 3600001, 5, 1));
    /* The same from a lower node or the same node: the next seq will do. */
    spw_idgen_init(&g, 5, fake_clock);
    stored = mk(ms + 3600000, 4, 7);
    spw_idgen_observe(&g, stored);
    id = spw_idgen_next(&g);
    CHECK(id > stored);
    CHECK(id == mk(ms + 3600000, 5, 8));
    spw_idgen_init(&g, 5, fake_clock);
    stored = mk(ms + 3600000, 5, 7);
    spw_idgen_observe(&g, stored);
    CHECK(spw_idgen_next(&g) == mk(ms + 3600000, 5, 8));

    /* Last seq of a millisecond: the next id is in the next millisecond. */
    spw_idgen_init(&g, 5, fake_clock);
    stored = mk(ms + 50, 5, 4095);
    spw_idgen_observe(&g, stored);
    id = spw_idgen_next(&g);
    CHECK(id > stored);
    CHECK(id == mk(ms + 51, 5, 0));

    /* Same node, same ms: the node bits do not hide a seq. */
    spw_idgen_init(&g, 1023, fake_clock);
    stored = mk(ms, 1023, 4000);
    spw_idgen_observe(&g, stored);
    CHECK(spw_idgen_next(&g) == mk(ms, 1023, 4001));

    /* Many random observed ids: every later id is greater than all of them. */
    uint64_t x = 88172645463325252ull, maxseen = 0;
    spw_idgen_init(&g, 77, fake_clock);
    for (int i = 0; i < 5000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t o = mk(ms - 1000 + x % 5000, (uint32_t)(x >> 20) & 1023, (uint32_t)(x >> 40) & 4095);
        spw_idgen_observe(&g, o);
        if (o > maxseen)
            maxseen = o;
        if (i % 10 == 0) {
            id = spw_idgen_next(&g);
            CHECK(id > maxseen);
            maxseen = id;
        }
    }
}

/* ---- threads ---- */

enum { NTHREADS = 4, PER_THREAD = 40000 };

typedef struct tctx {
    spw_idgen *g;
    uint64_t *ids;
    size_t n;
    int variant;
} tctx;

static void *gen_main(void *arg)
{
    tctx *t = arg;
    uint32_t k = 1;
    while (t->n < PER_THREAD) {
        if (t->variant == 0 || k % 3 == 0) {
            t->ids[t->n++] = spw_idgen_next(t->g);
        } else { /* reservations of 1..64 ids */
            uint32_t want = 1 + k % 64;
            if (want > PER_THREAD - t->n)
                want = (uint32_t)(PER_THREAD - t->n);
            uint64_t first = spw_idgen_reserve(t->g, want);
            for (uint32_t i = 0; i < want; i++)
                t->ids[t->n++] = spw_id_from_ticket(t->g, first + i);
        }
        k++;
    }
    return NULL;
}

static _Atomic int clock_stop;
static void *clock_main(void *arg)
{
    /* Steps the fake clock back and forth by seconds while ids are made. */
    int64_t T = *(int64_t *)arg;
    for (int i = 0; !atomic_load(&clock_stop); i++) {
        atomic_store(&fake_now, T + (i % 2 ? -3000 : (int64_t)(i % 7)));
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void run_threads(uint32_t node, int fake, int variant)
{
    spw_idgen gen, *g = &gen;
    spw_idgen_init(g, node, fake ? fake_clock : NULL); /* fresh: no time borrowed before */
    tctx t[NTHREADS];
    pthread_t th[NTHREADS], ck;
    int64_t T = SPW_ID_EPOCH_MS + 20000000;
    if (fake) {
        atomic_store(&fake_now, T);
        atomic_store(&clock_stop, 0);
        CHECK_EQ(pthread_create(&ck, NULL, clock_main, &T), 0);
    }
    int64_t w1 = spw_wall_ms();
    for (int i = 0; i < NTHREADS; i++) {
        t[i] = (tctx){.g = g, .ids = malloc(PER_THREAD * sizeof(uint64_t)), .variant = variant};
        CHECK_EQ(pthread_create(&th[i], NULL, gen_main, &t[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    int64_t w2 = spw_wall_ms();
    if (fake) {
        atomic_store(&clock_stop, 1);
        pthread_join(ck, NULL);
    }
    size_t total = (size_t)NTHREADS * PER_THREAD;
    uint64_t *all = malloc(total * sizeof *all);
    size_t n = 0;
    for (int i = 0; i < NTHREADS; i++) {
        CHECK_EQ(t[i].n, PER_THREAD);
        for (size_t j = 0; j < t[i].n; j++) {
            uint64_t id = t[i].ids[j];
            CHECK(j == 0 || id > t[i].ids[j - 1]); /* each thread sees increasing ids */
            CHECK_EQ(spw_id_node(id), g->node);
            if (fake) {
                /* Never before the earliest clock reading, never further ahead
                 * of the latest than the ids taken can borrow. */
                CHECK(spw_id_ms(id) >= T - 3000);
                CHECK(spw_id_ms(id) <= T + 6 + (int64_t)(total / 4096) + 1);
            } else {
                CHECK(spw_id_ms(id) >= w1);
                CHECK(spw_id_ms(id) <= w2 + (int64_t)(total / 4096) + 1);
            }
            all[n++] = id;
        }
        free(t[i].ids);
    }
    qsort(all, n, sizeof *all, cmp_u64);
    for (size_t i = 1; i < n; i++)
        CHECK(all[i] > all[i - 1]); /* unique */
    /* And the generator goes on above all of them. */
    uint64_t next = spw_idgen_next(g);
    CHECK(next > all[n - 1]);
    free(all);
}

static void test_threads(void)
{
    run_threads(321, 0, 0);
    run_threads(322, 0, 1);
    run_threads(1, 1, 0);
    run_threads(1023, 1, 1);
}

int main(void)
{
    test_layout();
    test_borrow();
    test_clock_back();
    test_observe();
    test_threads();
    puts("test_id: ok");
    return 0;
}
