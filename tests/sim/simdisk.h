/*
 * A power-loss simulator for tests: a shadow disk behind the spw_os table
 * (os/os.h). docs/architecture.md, "Testing durability", describes the
 * model; in short:
 *
 *   - Every call still goes to the real file system (so directory listings,
 *     fstat and reads by code outside the table see what the process would
 *     see: the page cache). Beside it the simulator keeps, for each file
 *     under its root, the current bytes and the durable bytes, and for each
 *     directory the entries that are durable.
 *   - A write (pwrite, pwritev, ftruncate, O_TRUNC) changes only the current
 *     bytes and marks the 4 KiB pages it touched dirty. fdatasync or fsync of
 *     the file makes its current bytes and size durable. The simulator never
 *     calls the real fsync: nothing is lost unless it says so.
 *   - create, mkdir, unlink and rename change the current namespace at once
 *     and join a journal of pending directory operations; an fsync of a
 *     directory (spw_os_fsync_dir: open O_DIRECTORY + fsync) makes the
 *     pending operations whose parent is that directory durable, in order.
 *     (A rename belongs to the directory it renames into.)
 *   - simdisk_power_cut(seed): the power goes off. Every later call through
 *     the table fails with EIO (close still closes), so the code under test
 *     can be torn down without touching the outcome. The outcome is drawn
 *     from the seed: the durable namespace plus a random prefix of the
 *     pending directory operations (an ordered metadata journal); each file
 *     its durable bytes, its size durable, current or anything between
 *     (zeros where no data reached the disk), and each dirty page with a
 *     probability chosen per cut (0 to 1) — a quarter of those torn: each
 *     512-byte sector of the page new or old independently.
 *   - simdisk_materialise(dir) writes that outcome as real files.
 *
 * Files under the root that exist at simdisk_start (or are first opened
 * through the table after being made by other means) count as durable.
 * Only paths under the root are shadowed; other paths pass through.
 * Everything is serialized by one mutex: tests are small. The shadow holds
 * at most SIMDISK_MAX_BYTES of file data (it aborts past that).
 *
 * Not thread-safe against itself across start/stop: call simdisk_start,
 * simdisk_power_cut, simdisk_materialise and simdisk_stop from one thread
 * while nothing else is between start and stop of another run.
 */
#ifndef SPW_TEST_SIMDISK_H
#define SPW_TEST_SIMDISK_H

#include <stddef.h>
#include <stdint.h>

#define SIMDISK_PAGE 4096u
#define SIMDISK_SECTOR 512u
#define SIMDISK_MAX_BYTES (512ull << 20)

typedef struct simdisk_stats {
    uint64_t writes;         /* pwrite/pwritev/ftruncate calls shadowed */
    uint64_t file_syncs;     /* fdatasync/fsync of files */
    uint64_t dir_syncs;      /* fsync of directories */
    uint64_t dir_ops;        /* create/mkdir/unlink/rename shadowed */
    uint64_t failed_syncs;   /* fsyncs failed on purpose (simdisk_fail_syncs) */
    uint64_t evicted_pages;  /* pages of failed fsyncs dropped from the page cache */
    /* Filled by simdisk_power_cut: */
    uint64_t dirty_pages;    /* pages written since their file's last sync */
    uint64_t kept_pages;     /* of those, reaching the disk (whole or torn) */
    uint64_t torn_pages;     /* of those, torn */
    uint64_t files_resized;  /* files whose size is not the durable one */
    uint32_t pending_ops;    /* directory operations not yet durable */
    uint32_t kept_ops;       /* of those, applied (a prefix) */
    uint32_t page_keep_pct;  /* the chance a dirty page had */
} simdisk_stats;

/* Shadows root (an existing directory; what is in it now is durable) and
 * installs the simulator into spw_os. Returns 0 or -errno. */
int simdisk_start(const char *root);
/* The power goes off: draws the outcome from seed, and makes every later
 * call through the table fail with EIO. */
void simdisk_power_cut(uint64_t seed);
/* For reduced, deterministic cases: when set, simdisk_power_cut asks fn
 * about every dirty page instead of drawing (1: the page reached the disk
 * whole, 0: it did not; path is relative to the root), each file's size is
 * its durable size grown to cover the pages kept, and no pending directory
 * operation is applied. NULL
 * restores the random outcome. Cleared by simdisk_stop. */
void simdisk_set_page_filter(int (*fn)(void *arg, const char *path, uint64_t page), void *arg);
/* Makes pct percent of the fdatasync/fsync calls on files fail with EIO
 * (drawn from seed), as a disk that fails writeback: the pages that fsync
 * covered stay in the page cache with their new bytes but are marked clean
 * (no later fsync writes them; a power cut keeps their old bytes, as Linux
 * does), and each later read through the table that touches one drops it
 * from the cache one time in four (the read gives the old bytes again). A
 * write to such a page makes it dirty again. 0 turns it off. Cleared by
 * simdisk_stop. */
void simdisk_fail_syncs(uint32_t pct, uint64_t seed);
/* Writes the outcome of the cut: into dir (an existing, empty directory),
 * or into the root itself when dir is NULL (everything in the root is
 * removed first: tear the code under test down before). 0 or -errno. */
int simdisk_materialise(const char *dir);
/* Restores spw_os_default and frees the shadow. */
void simdisk_stop(void);
void simdisk_stats_get(simdisk_stats *out);

#endif
