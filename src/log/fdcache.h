/*
 * The segment fd cache: how many sealed segments keep their files open.
 *
 * A partition's active segment keeps its two files (.log and .idx) open:
 * the flusher writes them. Every older segment is sealed — whole, fsynced,
 * never written again — and needs its files only while someone reads it.
 * As LevelDB's table cache does for tables, the log keeps the files of at
 * most `capacity` sealed segments open, the least recently read closed
 * first, and opens a sealed segment's files again (read-only) when a
 * reader pins it. So the fds a log holds are 2 per partition (active) plus
 * 2 per cached segment plus 2 per segment pinned at this moment beyond the
 * capacity (readers in the middle of a read), whatever the data retained:
 * docs/operations.md, "File descriptors".
 *
 * A segment's fds are valid between spw_seg_pin and spw_seg_unpin; a
 * pinned segment is never closed. The cache state of every segment that
 * uses the cache (spw_seg_use_cache) — its fds while sealed, pins, LRU
 * links — is under the cache's mutex, a leaf (log_impl.h). Opening and
 * closing files happen under it: two open(2) calls, never a read.
 */
#ifndef SPW_LOG_FDCACHE_H
#define SPW_LOG_FDCACHE_H

#include <stdint.h>

typedef struct spw_fdcache spw_fdcache;
struct spw_segment;

#define SPW_FDCACHE_DEFAULT 256 /* sealed segments (2 fds each) */

/* capacity >= 1 sealed segments. */
spw_fdcache *spw_fdcache_create(uint32_t capacity);
/* REQUIRES: no segment uses it any more. */
void spw_fdcache_destroy(spw_fdcache *c);

typedef struct spw_fdcache_stats {
    uint32_t capacity;
    uint32_t open;      /* sealed segments whose files are open now */
    uint32_t pinned;    /* of which pinned (being read) */
    uint64_t hits;      /* pins of a sealed segment found open */
    uint64_t misses;    /* pins that opened its files again */
    uint64_t evictions; /* sealed segments closed to stay within capacity */
    uint64_t open_errors; /* reopens that failed (EMFILE, ENOENT after retention, ...) */
} spw_fdcache_stats;
void spw_fdcache_stats_get(spw_fdcache *c, spw_fdcache_stats *out);

/* Segment s (just opened, not yet visible to any other thread) uses c from
 * now on; dir is its partition's directory (must outlive s). Its files
 * stay open while it is active. */
void spw_seg_use_cache(struct spw_segment *s, spw_fdcache *c, const char *dir);
/* s is no longer written (rolled, or an older segment at open): its files
 * join the cache (and may be closed at once when it is full). */
void spw_seg_seal(struct spw_segment *s);
/* Keeps s's fds open (opening them if need be) until spw_seg_unpin: 0, or
 * -errno from open (s's files were deleted by retention: -ENOENT). A
 * segment without a cache is always open: 0. */
int spw_seg_pin(struct spw_segment *s);
void spw_seg_unpin(struct spw_segment *s);
/* Takes s out of its cache before it is freed (spw_seg_close). */
void spw__fdcache_forget(struct spw_segment *s);
/* s's partition is retired (spw_part_retire): from now on s is never
 * opened again by its path, which may soon name another stream's file; a
 * pin that would have to reopen it answers SPW_EDELETED. Its files, while
 * open, stay usable. */
void spw__fdcache_retire(struct spw_segment *s);

#endif
