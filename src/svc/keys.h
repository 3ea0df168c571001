/*
 * The key requests of versioned streams (docs/api.md "Event sourcing"):
 * a key's current state, its events in version order served from the
 * version store's index (es/es.h) — never a scan of the partition but for
 * the few records not indexed yet — and its snapshots. Protocol-neutral:
 * a front end decodes the key and frames the answers.
 *
 * Every call takes a referenced stream (checked by spw_svc_stream_for)
 * and answers a code of the status table; SPW_SC_NOT_VERSIONED for a
 * stream that is not versioned.
 */
#ifndef SPW_SVC_KEYS_H
#define SPW_SVC_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "log/format.h"
#include "catalog/catalog.h"
#include "es/es.h"
#include "svc/status.h"

/* The key's current version, newest offset and partition; SPW_SC_NO_SUCH_KEY
 * when none was written. */
spw_sc spw_keys_get(spw_stream *s, const void *key, size_t n, spw_es_key *out, char *msg, size_t cap);

/* One event of a history read; pointers valid during the call. Returns 0 to
 * go on, else stop. */
typedef int (*spw_keys_event_fn)(void *arg, uint32_t partition, const spw_record_view *rv);

/*
 * The key's durable events of versions from_version.. in version order, at
 * most limit, each given to fn; *next_version (may be NULL) is the version
 * to ask for next. The index gives their offsets, each record is read at
 * its offset (and checked to be the key's, at that version); records past
 * the partition's indexed offset are found by reading that short tail.
 */
spw_sc spw_keys_events(spw_stream *s, const void *key, size_t n, uint64_t from_version, uint32_t limit,
                       spw_keys_event_fn fn, void *arg, uint64_t *next_version, char *msg, size_t cap);

/* Stores body ({"version":v,"state":{..}}) as the key's newest snapshot:
 * SPW_SC_BAD_SNAPSHOT (malformed, v < 1), SPW_SC_SNAPSHOT_AHEAD (v past the
 * key's current version; a key never written counts as version 0). */
spw_sc spw_keys_snapshot_put(spw_stream *s, const void *key, size_t n, const char *body, size_t len, char *msg,
                             size_t cap);
/* The same with the version and the state (one JSON object) apart (the
 * binary protocol's SNAPSHOT_PUT). */
spw_sc spw_keys_snapshot_store(spw_stream *s, const void *key, size_t n, uint64_t version, const char *state,
                               size_t len, char *msg, size_t cap);
/* The key's newest snapshot: its version and state (JSON text into state);
 * SPW_SC_NO_SNAPSHOT when none. */
spw_sc spw_keys_snapshot_get(spw_stream *s, const void *key, size_t n, uint64_t *version, spw_buf *state, char *msg,
                             size_t cap);

#endif
