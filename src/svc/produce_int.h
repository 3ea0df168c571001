/*
 * Inside the produce service (src/svc/produce*.c) only: the dedupe step
 * (produce_dedupe.c), called by spw_produce_request (produce.c), and the
 * versions of an answer (produce_submit.c).
 */
#ifndef SPW_SVC_PRODUCE_INT_H
#define SPW_SVC_PRODUCE_INT_H

#include "svc/produce.h"

/* spw__produce_dd_begin's answers besides spw_dd_begin's (dedupe.h). */
enum { SPW_DD_REUSED = 16, SPW_DD_UNRESOLVED = 17, SPW_DD_UNREADABLE = 18 };

/*
 * The dedupe step of a keyed produce: spw_dd_begin, then
 *   - an indeterminate key (a failed request that may have left batches,
 *     dedupe.h) is resolved from the headers of the partitions it wrote to,
 *     once none of them is failed; while one is, SPW_DD_UNRESOLVED
 *     (answered in_progress, as SPW_DD_BUSY);
 *   - a stored request (DONE, PARTIAL) is compared with this one, partition
 *     by partition (count and fingerprint of the records, read back from
 *     the log where the table has none): different content is
 *     SPW_DD_REUSED, and nothing is reserved; stored records that cannot
 *     be read back (damaged on disk, an I/O error) are SPW_DD_UNREADABLE:
 *     the retry can be neither answered as a duplicate nor refused as a
 *     reuse, and nothing is reserved.
 * Returns as spw_dd_begin (never SPW_DD_INDET), SPW_DD_UNRESOLVED,
 * SPW_DD_REUSED or SPW_DD_UNREADABLE; e is reserved only for SPW_DD_NEW and
 * SPW_DD_PARTIAL.
 * partition: as spw_produce_submit_ex (UINT32_MAX: by key).
 */
int spw__produce_dd_begin(struct spw_svc *svc, spw_stream *s, uint64_t key, const spw_record *in, uint32_t n,
                          uint32_t partition, spw_dd_entry **e, spw_dd_result *res);

/* spw__produce_dd_begin in two halves: spw_dd_begin's answer d (with *e
 * and *res as it left them), then the rest. Does that rest read the log
 * — an indeterminate key's batch headers, or a stored request's records
 * for fingerprints the table does not hold (keys rebuilt at start,
 * resolved from the log)? Then it runs on an I/O worker
 * (docs/architecture.md "Threads of spillway serve"), not on a loop. */
int spw__produce_dd_needs_disk(int d, const spw_dd_result *res);
int spw__produce_dd_continue(struct spw_svc *svc, spw_stream *s, uint64_t key, const spw_record *in, uint32_t n,
                             uint32_t partition, int d, spw_dd_entry **e, spw_dd_result *res);

/*
 * A versioned stream's answer: per key of the request (in[0..n), each
 * event's version in version_of, 0 for none), in order of first
 * appearance, its first version and count; the keys are copied into
 * *keys (which *vers points into). Both spw_malloc'd: the caller frees.
 */
void spw__produce_versions(const spw_record *in, uint32_t n, const uint64_t *version_of, spw_produce_ver **vers,
                           uint32_t *n_vers, uint8_t **keys);

/*
 * The versions a stored request's records got (a duplicate's answer): read
 * back from the log, slot by slot (each record carries its version,
 * docs/formats/log.md), matched to the request's events in[0..n) as they
 * were routed (partition as spw_produce_submit_ex; idem_key the dedupe
 * key). Returns version_of (spw_malloc'd, n entries), or NULL when some
 * record cannot be read (retention removed it, damage): the answer then
 * carries no versions.
 */
/* spw_produce_route, with split keys (catalog/hotkeys.h) routed as split
 * (hot 1) or to their own partition as before the split (hot 0): a retry
 * of a request stored before its key was split is compared with, and
 * answered as, the routing the first attempt had. */
uint32_t spw__produce_route_mode(spw_stream *s, const spw_record *v, uint32_t i, uint32_t partition,
                                 uint64_t idem_key, int hot);
/* part_of[0..n) of a stored request's events: as routed now, or as
 * before a split when only that agrees with the stored slots' counts. */
void spw__produce_route_stored(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition,
                               uint64_t idem_key, const spw_dd_slot *slots, uint32_t nslots, uint32_t *part_of);
uint64_t *spw__produce_stored_versions(spw_stream *s, const spw_record *in, uint32_t n, uint32_t partition,
                                       uint64_t idem_key, const spw_dd_slot *slots, uint32_t nslots);

#endif
