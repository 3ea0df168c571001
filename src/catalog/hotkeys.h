/*
 * Hot keys (docs/api.md "Hot keys", docs/operations.md "Hot keys"): a
 * stream with "hot_keys" spreads the records of a split key over k
 * partitions instead of its one. A split key's sub-key i (i = 0..k-1) goes
 * to partition (home + i) mod partitions, home being the key's own
 * partition (stream.h spw_stream_partition), so the k sub-keys always land
 * on k different partitions and sub-key 0 is where the key was before.
 * Records keep their key: a record of "k" routed as sub-key "k#2" is still
 * stored with key "k", so views, which fold by key, answer exactly as
 * without the split; what changes is order, which then holds per sub-key
 * (per partition), not per key.
 *
 * Which keys are split:
 *   - the definition's "keys", from the start;
 *   - with "above_per_s", a key whose events counted in one window of
 *     "window_ms" pass above_per_s * window_ms / 1000 (the lower bound of
 *     the heavy-hitters table below, so a key is never split on an
 *     overestimate). The decision is recorded in DATA/streams/NAME/hot_keys
 *     (docs/formats/hotkeys.md; written whole, atomically, by
 *     spw_hot_record on an I/O worker) and takes effect only once that
 *     file is durable, so after a restart exactly the recorded splits are
 *     in effect. A split is never undone (the stream's records of the key
 *     already are spread); at most SPW_HOT_SPLITS keys per stream.
 *
 * The hottest keys: a space-saving table of SPW_HOT_TRACK counters per
 * window (Metwally et al.: a key missing from a full table replaces the
 * smallest counter and inherits its count as its error), so any key with
 * more than 1/SPW_HOT_TRACK of a window's keyed events is in it. The last
 * complete window's top "top" keys are shown by /metrics
 * (spillway_stream_hot_key_events_per_second) and GET /v1/streams/{s}.
 *
 * Threads: spw_hot_route is lock-free (any thread): the split table is
 * insert-only, an entry's key written before its state is published.
 * spw_hot_count, spw_hot_top and the decisions take the table's mutex.
 */
#ifndef SPW_HOTKEYS_H
#define SPW_HOTKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/stream.h"
#include "log/format.h"

#define SPW_HOT_SPLITS 64 /* split keys per stream, explicit and automatic */
#define SPW_HOT_TRACK 32  /* heavy-hitters counters per stream */

typedef struct spw_hot spw_hot;

/* The hot-key state of stream c (c->hot_split > 0) whose directory is dir:
 * its listed keys, then the splits recorded in dir/hot_keys. A damaged
 * file is reported and its splits not applied (the stream still opens).
 * Returns 0, or an I/O error reading the file. */
int spw_hot_open(const spw_stream_config *c, const char *dir, spw_hot **out);
void spw_hot_close(spw_hot *h);
/* Checks the len bytes p of a DATA/streams/NAME/hot_keys file
 * (docs/formats/hotkeys.md): NULL when whole (*count its entries), else
 * why it is damaged (a static sentence; the server then applies none of
 * its splits). Used by spw_hot_open and `spillway check`. */
const char *spw_hot_file_check(const uint8_t *p, size_t len, uint32_t *count);

/* The partition of event i of a request (idem_key: its Idempotency-Key,
 * 0 none) whose key is split, or UINT32_MAX when the key is not split.
 * The sub-key is (idem_key + i) mod k for a keyed request, so a retry
 * routes every event as the first attempt did, else the key's round robin. */
uint32_t spw_hot_route(spw_hot *h, const void *key, size_t n, uint32_t home, uint32_t partitions, uint64_t idem_key,
                       uint32_t i);

/* A key the counting found over the threshold: to be recorded with
 * spw_hot_record (or given back with spw_hot_abandon). */
typedef struct spw_hot_cand {
    char key[SPW_HOT_KEY_BYTES + 1];
    uint32_t len;
    double per_s; /* the rate that decided it */
} spw_hot_cand;

/* Counts the keyed records of one request (at now_ms) in the window's
 * table; returns how many keys passed the threshold and are now pending
 * (written to out, at most cap). */
uint32_t spw_hot_count(spw_hot *h, const spw_record *recs, uint32_t n, int64_t now_ms, spw_hot_cand *out,
                       uint32_t cap);

/* Records the pending split of cand durably (dir/hot_keys rewritten with
 * it), then lets spw_hot_route spread the key. Blocking: I/O workers
 * only. 0, or -errno (then the key is not split, and a later window over
 * the threshold tries again). */
int spw_hot_record(spw_hot *h, const spw_hot_cand *cand, int64_t now_ms);
/* Gives back a pending split that could not be handed to a worker. */
void spw_hot_abandon(spw_hot *h, const spw_hot_cand *cand);

/* The split keys now in effect, at most cap. */
typedef struct spw_hot_split_info {
    char key[SPW_HOT_KEY_BYTES + 1];
    uint32_t split;
    int automatic; /* 0: listed in the definition */
    int64_t at_ms; /* automatic: when it was decided */
    double per_s;  /* automatic: the rate that decided it */
} spw_hot_split_info;
uint32_t spw_hot_splits(spw_hot *h, spw_hot_split_info *out, uint32_t cap);

/* The hottest keys of the last complete window before now_ms (none when
 * it had no keyed events), hottest first, at most min(cap, "top"). */
typedef struct spw_hot_top_info {
    char key[SPW_HOT_KEY_BYTES + 1];
    uint64_t events; /* in that window (space-saving estimate: at most events + error) */
    double per_s;
} spw_hot_top_info;
uint32_t spw_hot_top(spw_hot *h, int64_t now_ms, spw_hot_top_info *out, uint32_t cap);

/* Splits refused because SPW_HOT_SPLITS keys are split already. */
uint64_t spw_hot_refused(spw_hot *h);

#endif
