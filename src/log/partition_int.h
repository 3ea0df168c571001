/*
 * Internals shared by the files of a partition (partition.c, part_append.c,
 * part_write.c, part_recover.c, part_read.c, part_retention.c) and by no
 * one else. The partition struct itself and what log.c calls are in
 * log_impl.h.
 */
#ifndef SPW_LOG_PARTITION_INT_H
#define SPW_LOG_PARTITION_INT_H

#include <stddef.h>
#include <stdint.h>

#include "log/log_impl.h"

/* partition.c: a use of the directory by path. 0 with path_lock held for
 * reading, or SPW_EDELETED (p retired, nothing held). */
int spw__part_path_begin(spw_part *p);
void spw__part_path_end(spw_part *p);

/* partition.c: the segments array. */
void spw__part_segs_push(spw_part *p, spw_segment *s);
/* A reference to every segment, oldest first (n of them), taken under
 * seg_lock: a reader then reads them without the lock, pinning one at a
 * time (docs/architecture.md, "Locks"). Drop gives them back. */
spw_segment **spw__part_segs_take(spw_part *p, size_t *n);
void spw__part_segs_drop(spw_segment **v, size_t n);
/* Index of the segment holding offset. REQUIRES: seg_lock held, nsegs > 0. */
size_t spw__part_segs_find(spw_part *p, uint64_t offset);

/* part_write.c. Zeros written ahead of small appends, also recovery's probe. */
#define SPW__PART_ZEROS_LEN (1u << 20)
extern const uint8_t spw__part_zeros[SPW__PART_ZEROS_LEN];
/* fdatasync of a segment and its index; 0 or -errno. */
int spw__seg_sync(spw_segment *s);
/* The active segment's sync_pos/sync_offset, written now. REQUIRES: the
 * flusher, or p not live; waits for the checkpoint thread to leave p. */
void spw__part_rp_write(spw_part *p, int64_t now_ms);
/* Queues the index entry of the batch h at pos when one is due. */
void spw__part_note_index(spw_part *p, spw_segment *s, const spw_batch_hdr *h, uint64_t pos);

/* part_recover.c. */
int spw__part_find_hole_end(int fd, uint64_t bad, uint64_t size, uint64_t expect, uint64_t rp_pos, uint64_t rp_off,
                            uint64_t limit, spw_buf *buf, uint64_t *next_pos, uint64_t *next_off);
int spw__part_recover_newest(spw_part *p, spw_segment *s, uint64_t rp_pos, uint64_t rp_off, spw_recovery_report *rep,
                             uint64_t *last_batch_pos);
int spw__part_recover_closed(spw_part *p, spw_segment *s, uint64_t next_base, spw_recovery_report *rep);
/* Brings a failed partition back without closing it (comment at its definition). */
int spw__part_recover(spw_part *p);

#endif
