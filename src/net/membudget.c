/* The connection input memory budget: see membudget.h. */
#include "net/membudget.h"

#include <assert.h>

#include "core/error.h"

void spw_membudget_init(spw_membudget *m, uint64_t limit)
{
    assert(limit > 0);
    m->limit = limit;
    atomic_init(&m->used, 0);
    atomic_init(&m->peak, 0);
    atomic_init(&m->waits, 0);
}

static void note_peak(spw_membudget *m, uint64_t now)
{
    uint64_t p = atomic_load_explicit(&m->peak, memory_order_relaxed);
    while (now > p && !atomic_compare_exchange_weak_explicit(&m->peak, &p, now, memory_order_relaxed,
                                                             memory_order_relaxed))
        ;
}

int spw_membudget_take(spw_membudget *m, uint64_t n)
{
    if (!m || n == 0)
        return 0;
    uint64_t u = atomic_load_explicit(&m->used, memory_order_relaxed);
    do {
        if (n > m->limit || u > m->limit - n)
            return SPW_EAGAIN;
    } while (!atomic_compare_exchange_weak_explicit(&m->used, &u, u + n, memory_order_relaxed,
                                                    memory_order_relaxed));
    note_peak(m, u + n);
    return 0;
}

uint64_t spw_membudget_take_upto(spw_membudget *m, uint64_t want)
{
    if (!m || want == 0)
        return want;
    uint64_t u = atomic_load_explicit(&m->used, memory_order_relaxed), n;
    do {
        n = u < m->limit ? m->limit - u : 0;
        if (n > want)
            n = want;
        if (n == 0)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(&m->used, &u, u + n, memory_order_relaxed,
                                                    memory_order_relaxed));
    note_peak(m, u + n);
    return n;
}

void spw_membudget_add(spw_membudget *m, uint64_t n)
{
    if (!m || n == 0)
        return;
    note_peak(m, atomic_fetch_add_explicit(&m->used, n, memory_order_relaxed) + n);
}

void spw_membudget_give(spw_membudget *m, uint64_t n)
{
    if (!m || n == 0)
        return;
    uint64_t before = atomic_fetch_sub_explicit(&m->used, n, memory_order_relaxed);
    assert(before >= n);
    (void)before;
}

int spw_membudget_room(const spw_membudget *m, uint64_t n)
{
    if (!m)
        return 1;
    uint64_t u = atomic_load_explicit(&m->used, memory_order_relaxed);
    return n <= m->limit && u <= m->limit - n;
}

void spw_membudget_waited(spw_membudget *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->waits, 1, memory_order_relaxed);
}

void spw_membudget_stats_get(const spw_membudget *m, spw_membudget_stats *st)
{
    st->limit = m ? m->limit : 0;
    st->used = m ? atomic_load(&m->used) : 0;
    st->peak = m ? atomic_load(&m->peak) : 0;
    st->waits = m ? atomic_load(&m->waits) : 0;
}
