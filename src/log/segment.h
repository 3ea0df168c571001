/*
 * Segment files of a partition (docs/formats/log.md, "Segments" and
 * "Index"). A segment is NNNNNNNNNNNNNNNNNNNN.log (20-digit zero-padded
 * base offset): record batches back to back, nothing else. Beside it,
 * NNNNNNNNNNNNNNNNNNNN.idx is its sparse offset-and-time index: 16-byte
 * entries, one per index_interval_bytes of data:
 *
 *   0 u32 rel_offset     batch base offset - segment base offset
 *   4 u32 position       byte position of that batch in the .log
 *   8 i64 max_ts_before  greatest first..max ts of every batch before it
 *                        (INT64_MIN for none)
 *
 * Entries strictly increase in rel_offset and position; max_ts_before never
 * decreases. One binary search on rel_offset finds where to read an offset;
 * one on max_ts_before finds where records with ts >= T can begin. Because
 * each entry carries the running maximum, recovery can resume index
 * building from the last entry exactly. The index is rebuildable from the
 * .log alone and is never fsynced on the append path (only at roll/close).
 */
#ifndef SPW_SEGMENT_H
#define SPW_SEGMENT_H

#include <stdatomic.h>
#include <stdint.h>

#include "log/format.h"

#define SPW_IDX_ENTRY_LEN 16
#define SPW_SEG_NAME_DIGITS 20

typedef struct spw_idx_entry {
    uint32_t rel_offset;
    uint32_t position;
    int64_t max_ts_before;
} spw_idx_entry;

typedef struct spw_segment {
    uint64_t base_offset;
    /* .log and .idx: read-write while the segment is active (the flusher's);
     * once sealed, opened and closed by the fd cache (fdcache.h): valid only
     * between spw_seg_pin and spw_seg_unpin, -1 when closed. */
    int fd;
    int idx_fd;
    /* Lifetime: one reference for the partition's segments array, one per
     * reader that took it under seg_lock to read it after dropping the
     * lock. The last spw_seg_unref closes and frees. */
    _Atomic uint32_t refs;
    _Atomic int removed; /* retention deleted its files: a reopen finds nothing */
    /* Fd cache state (fdcache.c), under the cache's mutex. */
    struct spw_fdcache *fdc; /* NULL: fds always open (tools, tests) */
    const char *dir;         /* the partition's directory, for reopening */
    int retired;             /* its partition was retired: never reopened by path (spw_part_retire) */
    int sealed;
    uint32_t pins;
    struct spw_segment *lru_prev, *lru_next; /* in the LRU: sealed, open, unpinned */
    /* Published by the flusher with release stores; readers use acquire. */
    _Atomic uint64_t size;       /* bytes of whole batches in the file */
    _Atomic uint64_t end_offset; /* next offset after the last batch */
    _Atomic int64_t max_ts;      /* greatest ts in the segment, INT64_MIN if empty */
    _Atomic uint32_t idx_count;  /* entries in the .idx */
    _Atomic int64_t mtime_ms;    /* when data was last written (retention by age) */
    int64_t created_ms;          /* when the segment was opened for appends (roll by age) */
    /* Index-building state, owned by whoever appends (flusher or recovery). */
    uint64_t last_idx_pos;
    int64_t running_max_ts;
    int synced; /* data and index fsynced since the last write */
    uint64_t alloc_end; /* file size: past size, zeros written ahead (flusher-owned) */
} spw_segment;

/*
 * The partition's recovery point file (docs/formats/log.md, "Recovery
 * point"): the last position known fsynced. 36 bytes:
 *   0 u32 magic "SPRP"   4 u32 version 1   8 u64 segment base offset
 *  16 u64 position      24 u64 next offset at that position
 *  32 u32 CRC32C of bytes [0, 32)
 */
#define SPW_RP_NAME "recovery-point"
#define SPW_RP_TMP_NAME "recovery-point.tmp"
#define SPW_RP_MAGIC 0x50525053u /* bytes 'S' 'P' 'R' 'P' */
#define SPW_RP_VERSION 1
#define SPW_RP_LEN 36

typedef struct spw_rp {
    uint64_t base, pos, offset;
} spw_rp;

void spw_rp_encode(uint8_t out[SPW_RP_LEN], const spw_rp *rp);
/* 0, or SPW_ECORRUPT when magic, version or CRC is wrong. */
int spw_rp_decode(const uint8_t *in, size_t len, spw_rp *rp);
/* Reads dir's recovery point: 1 and *rp, 0 when there is none, SPW_ECORRUPT
 * when the file is damaged, or -errno. */
int spw_rp_load(const char *dir, spw_rp *rp);
/* Writes it atomically: temp file, fdatasync, rename, directory fsync. */
int spw_rp_store(const char *dir, const spw_rp *rp);

void spw_seg_path(char *out, size_t cap, const char *dir, uint64_t base, const char *ext);
/* Parses "NNNNNNNNNNNNNNNNNNNN.log"; returns 1 and *base, else 0. */
int spw_seg_parse_name(const char *name, uint64_t *base);

/* Opens (create: creates empty, fsyncs dir) segment files; one reference. */
int spw_seg_open(const char *dir, uint64_t base, int create, spw_segment **out);
/* Closes the files and frees s, whatever its references (the owner's end). */
void spw_seg_close(spw_segment *s);
void spw_seg_ref(spw_segment *s);
void spw_seg_unref(spw_segment *s); /* the last one: spw_seg_close */
/* Removes both files (after close). */
int spw_seg_unlink(const char *dir, uint64_t base);

/* Index lookups (pread binary search over the .idx). Return the byte
 * position to start scanning from (0 when no entry applies), or -errno.
 * *at_offset gets the base offset the batch at that position must have
 * (the segment's base offset for position 0). */
int64_t spw_seg_lookup_offset(spw_segment *s, uint64_t offset, uint64_t *at_offset);
int64_t spw_seg_lookup_ts(spw_segment *s, int64_t ts, uint64_t *at_offset);

/*
 * Index building: called for every batch in file order (by the flusher and
 * by recovery) at byte position pos; returns 1 and fills *e when this batch
 * gets an index entry, else 0. Updates the running state of s.
 */
int spw_seg_index_note(spw_segment *s, const spw_batch_hdr *h, uint64_t pos, uint32_t interval, spw_idx_entry *e);
void spw_idx_encode(uint8_t out[SPW_IDX_ENTRY_LEN], const spw_idx_entry *e);
void spw_idx_decode(const uint8_t in[SPW_IDX_ENTRY_LEN], spw_idx_entry *e);

/*
 * Scans batch by batch from pos with expected base offset `expect`, checking
 * CRCs when verify is set (headers only otherwise), until the end of file or
 * the first bad batch. Calls on_batch (may be NULL) for every good one.
 * Returns 0 when the scan reached the end cleanly, else the error of the bad
 * batch with *bad_pos at its position; *end_pos / *end_offset / *max_ts
 * describe the good data scanned (max_ts only raised).
 */
typedef struct spw_scan {
    uint64_t pos;        /* in: start; out: end of good data */
    uint64_t offset;     /* in: expected base; out: next offset */
    int64_t max_ts;      /* in/out */
    uint64_t file_size;  /* in */
    int verify;          /* in: check CRCs */
    spw_buf buf;         /* scratch, caller frees */
    int (*on_batch)(void *arg, const spw_batch_hdr *h, uint64_t pos);
    void *arg;
    uint32_t batches;    /* out: good batches seen */
    int bad_err;         /* out: error of the bad batch (0 if clean) */
    spw_batch_hdr bad_hdr; /* out: its header, when bad_hdr_ok */
    int bad_hdr_ok;
} spw_scan;

int spw_seg_scan(int fd, spw_scan *sc);

/*
 * After damage at from - 1: finds the first position q >= from where a
 * whole batch with a valid CRC starts whose base offset is greater than
 * `after` (the offset the damaged batch should have had: offsets go on
 * past a hole, never back), and which is confirmed: the data ends after it
 * (or only zeros follow), or the batch after it is whole and continues its
 * offsets (base_offset is outside the CRC: a damaged one would look valid
 * with other offsets). Searches for the batch magic byte by byte, in
 * 1 MiB windows. Returns 1 with *pos and *h, 0 when none follows up to
 * file_size, or -errno. buf is scratch (caller frees). The caller applies
 * any further bound on the offsets (recovery point, next segment).
 * docs/formats/log.md, "Damaged ranges".
 */
int spw_seg_find_valid(int fd, uint64_t from, uint64_t file_size, uint64_t after, spw_buf *buf, uint64_t *pos,
                       spw_batch_hdr *h);

#endif
