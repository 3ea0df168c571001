/*
 * Snowflake ids (docs/architecture.md): 41 bits of milliseconds since 2024-01-01T00:00Z,
 * 10 bits node id, 12 bits sequence. Unique per node, roughly time-sortable.
 *
 * The generator keeps one 64-bit "ticket" counter: ticket = ms * 4096 + seq.
 * A reservation takes max(counter, now_ms * 4096) as its first ticket and
 * advances the counter by n; so the clock can step back without repeats
 * (tickets keep rising; time is borrowed from the future until the clock
 * catches up), and 4096 ids a millisecond roll into the next millisecond
 * rather than collide. Lock-free: one CAS per reservation, any n.
 *
 * Across restarts the log and the catalog tell the generator the highest id
 * stored (spw_idgen_observe; catalog/catalog.h spw_catalog_observe_ids), so
 * a clock that went back while the process was down cannot repeat ids
 * either.
 */
#ifndef SPW_ID_H
#define SPW_ID_H

#include <stdint.h>

#include "core/clock.h" /* spw_wall_ms, the ids' clock */

#define SPW_ID_EPOCH_MS 1704067200000LL /* 2024-01-01T00:00:00Z */
#define SPW_ID_NODE_BITS 10
#define SPW_ID_SEQ_BITS 12
#define SPW_ID_NODE_MAX ((1 << SPW_ID_NODE_BITS) - 1)

typedef struct spw_idgen {
    _Atomic uint64_t ticket; /* next free ticket */
    uint32_t node;
    int64_t (*clock_ms)(void); /* wall clock, ms since Unix epoch; tests replace it */
} spw_idgen;

/* REQUIRES: node <= SPW_ID_NODE_MAX. clock_ms NULL means the real clock. */
void spw_idgen_init(spw_idgen *g, uint32_t node, int64_t (*clock_ms)(void));

/* Reserves n consecutive tickets and returns the first; turn tickets into
 * ids with spw_id_from_ticket(g, t), t in [first, first + n). */
uint64_t spw_idgen_reserve(spw_idgen *g, uint32_t n);

static inline uint64_t spw_id_from_ticket(const spw_idgen *g, uint64_t t)
{
    return ((t >> SPW_ID_SEQ_BITS) << (SPW_ID_NODE_BITS + SPW_ID_SEQ_BITS)) |
           ((uint64_t)g->node << SPW_ID_SEQ_BITS) | (t & ((1u << SPW_ID_SEQ_BITS) - 1));
}

/* The ticket an id was made from (its node bits dropped). */
static inline uint64_t spw_id_ticket(uint64_t id)
{
    return (id >> (SPW_ID_NODE_BITS + SPW_ID_SEQ_BITS)) << SPW_ID_SEQ_BITS | (id & ((1u << SPW_ID_SEQ_BITS) - 1));
}

/* One id (not a ticket). */
static inline uint64_t spw_idgen_next(spw_idgen *g) { return spw_id_from_ticket(g, spw_idgen_reserve(g, 1)); }

/* Makes every future id greater than id (an id read back from storage). */
void spw_idgen_observe(spw_idgen *g, uint64_t id);

/* Parts of an id. */
static inline int64_t spw_id_ms(uint64_t id) { return (int64_t)(id >> 22) + SPW_ID_EPOCH_MS; }
static inline uint32_t spw_id_node(uint64_t id) { return (uint32_t)(id >> 12) & SPW_ID_NODE_MAX; }
static inline uint32_t spw_id_seq(uint64_t id) { return (uint32_t)id & 0xfff; }

#endif
