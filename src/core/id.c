/* Snowflake ids: see id.h for the ticket scheme. */
#include "core/id.h"

#include <assert.h>
#include <stdatomic.h>
#include <time.h>

void spw_idgen_init(spw_idgen *g, uint32_t node, int64_t (*clock_ms)(void))
{
    assert(node <= SPW_ID_NODE_MAX);
    atomic_init(&g->ticket, 0);
    g->node = node;
    g->clock_ms = clock_ms ? clock_ms : spw_wall_ms;
}

uint64_t spw_idgen_reserve(spw_idgen *g, uint32_t n)
{
    assert(n > 0);
    int64_t ms = g->clock_ms() - SPW_ID_EPOCH_MS;
    uint64_t floor = ms > 0 ? (uint64_t)ms << SPW_ID_SEQ_BITS : 0;
    uint64_t cur = atomic_load_explicit(&g->ticket, memory_order_relaxed);
    for (;;) {
        uint64_t first = cur > floor ? cur : floor;
        if (atomic_compare_exchange_weak_explicit(&g->ticket, &cur, first + n, memory_order_relaxed,
                                                  memory_order_relaxed))
            return first;
    }
}

void spw_idgen_observe(spw_idgen *g, uint64_t id)
{
    uint64_t ms = id >> (SPW_ID_NODE_BITS + SPW_ID_SEQ_BITS);
    /* The node bits sit above the sequence: an id of a higher node (node_id
     * changed across a restart) is only passed in the next millisecond. */
    uint64_t t = spw_id_node(id) > g->node ? (ms + 1) << SPW_ID_SEQ_BITS : ((ms << SPW_ID_SEQ_BITS) | (id & 0xfff)) + 1;
    uint64_t cur = atomic_load(&g->ticket);
    while (cur < t && !atomic_compare_exchange_weak(&g->ticket, &cur, t))
        ;
}
