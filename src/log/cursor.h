/*
 * The record cursor: the one way to read records of a partition from an
 * offset. Every reader uses it — the HTTP read and consumer-group poll,
 * the binary FETCH and GROUP_POLL, the sinks — so all of them see the same
 * records and meet damage the same way (docs/architecture.md, "The record
 * cursor").
 *
 * Visibility rule. The cursor reads with spw_part_read, so it never sees
 * past the partition's visible end, the durable end (log.h, "Visibility"):
 * a position a reader keeps (a group's committed offset, a sink's
 * progress) can only point at records that survive a power loss. When the
 * cursor reaches the visible end it calls spw_part_sync_soon, so records
 * written but not yet fsynced become readable in the next flush cycle
 * rather than at the fsync interval.
 *
 * Damage rule. Two kinds of damage stop a cursor, and both are answered
 * alike: SPW_ECORRUPT with the damaged offsets [damage_from, resume).
 *   - a damaged range on disk (spw_part_read fails its CRC or its header):
 *     resume is the first offset after the range (docs/formats/log.md,
 *     "Damaged ranges"), or 0 when its end is not known;
 *   - a batch whose CRC holds but whose records do not decode (a records
 *     section that does not hold exactly record_count well-formed records,
 *     or does not decompress): the batch is damaged whole — before any of
 *     its records is returned every record is decoded once, so no record of
 *     it is ever delivered and a read that starts anywhere before it stops
 *     at the same offset — and resume is the batch's end (base_offset +
 *     record_count).
 * Records before the damage are returned normally; the cursor then stays
 * at damage_from, and asking again gives the same answer (it never skips by
 * itself and never loops: a reader that chooses to go on seeks to resume,
 * which is past damage_from, and says so — an error answer naming resume,
 * a logged and counted skip).
 *
 * Ownership. A cursor owns its three buffers (the batches of the last
 * read, one batch's decompressed records, and that batch's decoded record
 * views); nothing else is allocated. The
 * bytes a record view or a batch returned by the cursor point at belong to
 * the cursor and stay valid until the next call of spw_cursor_next,
 * spw_cursor_next_batch, spw_cursor_seek or spw_cursor_fini on it: copy
 * what must outlive that.
 *
 * Thread safety: a cursor is used by one thread at a time; any number of
 * cursors read one partition at once (spw_part_read takes only the segment
 * list's read lock).
 */
#ifndef SPW_CURSOR_H
#define SPW_CURSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "log/format.h"
#include "log/log.h"

typedef struct spw_cursor {
    spw_part *p;
    uint64_t next;      /* the offset the next record returned has (or is after, past damage) */
    size_t read_bytes;  /* bytes per log read (one batch at least); may be changed between calls */
    uint64_t damage_from, resume; /* set when a call returns SPW_ECORRUPT (resume 0: end unknown) */
    /* private */
    spw_buf data;    /* batches of the last read */
    spw_buf scratch; /* the current batch's records when compressed */
    spw_buf views;   /* the current batch's records, decoded once (spw_record_view[]) */
    size_t pos;      /* the next batch in data */
    int in_batch;    /* views, nviews and h are the current batch's */
    uint32_t vi, nviews; /* the next view to return; how many */
    const uint8_t *batch;
    spw_batch_hdr h;
} spw_cursor;

/* A cursor on p at offset from. Allocates nothing (buffers grow on use). */
void spw_cursor_init(spw_cursor *c, spw_part *p, uint64_t from, size_t read_bytes);
/* Moves c to offset from of p (p may differ from the last one), keeping its
 * buffers; what it had read is dropped. */
void spw_cursor_seek(spw_cursor *c, spw_part *p, uint64_t from);
void spw_cursor_fini(spw_cursor *c);

/*
 * The next record at or after c->next into *rv (c->next moves past it).
 * Returns 1, 0 at the visible end (nothing more is durable yet; the
 * partition is asked to fsync what is written past it), SPW_ECORRUPT
 * (damage: c->damage_from == c->next, c->resume as above), SPW_ERANGE
 * (c->next is before the partition's start, or past its visible end),
 * SPW_ENOMEM or an I/O error. After an error c->next is unchanged.
 */
int spw_cursor_next(spw_cursor *c, spw_record_view *rv);

/*
 * The whole batch holding c->next (it may begin before c->next: its earlier
 * records are not the reader's), *h its parsed header; c->next moves to the
 * batch's end. The batch's records decode (the damage rule above). Returns
 * as spw_cursor_next.
 */
int spw_cursor_next_batch(spw_cursor *c, const uint8_t **batch, const spw_batch_hdr **h);

/* The record k places after the last one spw_cursor_next returned (k >=
 * 1), if it is in the same batch, else NULL: a look ahead (to prefetch
 * what it will need) that moves nothing; valid as that record is. */
static inline const spw_record_view *spw_cursor_ahead(const spw_cursor *c, uint32_t k)
{
    if (!c->in_batch || k == 0 || c->vi + k - 1 >= c->nviews)
        return NULL;
    return (const spw_record_view *)c->views.p + c->vi + k - 1;
}

/* The header of the batch the last record returned came from (log bytes
 * per record, for read sizing). REQUIRES: spw_cursor_next returned 1. */
static inline const spw_batch_hdr *spw_cursor_batch(const spw_cursor *c) { return &c->h; }

#endif
