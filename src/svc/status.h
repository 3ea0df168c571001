/*
 * The status table: every answer a service request (src/svc) can give,
 * as one code (enum spw_sc), and for each its code word, its HTTP status,
 * its binary-protocol status (docs/protocol.md "Status") and a default
 * sentence. The service layer returns codes; each front end maps a code
 * through this table and only adds its own framing (where in the request,
 * headers, the frame), so a new front end answers the same as the others
 * without a copy of anything.
 *
 * Contracts:
 *   - The table is constant and complete: every code has a row; rows are
 *     looked up by index (O(1), no lock).
 *   - A condition whose documented code word differs between the two
 *     protocols (the budget one: HTTP body_too_large, binary too_large;
 *     a reused dedupe key: idempotency_key_reused / sequence_reused) has
 *     one row naming both words (docs/api.md, docs/protocol.md keep them).
 *   - A condition whose documented HTTP status differs by stream format
 *     (event_too_large: 400 for a JSON event, 413 for a bytes body) has
 *     one row per status, with the same word.
 *   - Every error answer of both front ends (HTTP and binary) goes
 *     through this table, the protocol-level ones (framing, headers,
 *     timeouts) and the administrative ones too; a row only one protocol
 *     can give says so (only), and its other status is never sent.
 *   - Wire statuses are those of wire/frame.h (the wire codec, the lowest
 *     library, shared with the client); only status.c includes it.
 */
#ifndef SPW_SVC_STATUS_H
#define SPW_SVC_STATUS_H

#include <stdint.h>

typedef enum spw_sc {
    SPW_SC_OK = 0,
    /* the request */
    SPW_SC_NO_REPLICATION,     /* ack=replicated on a stream without replicate_to */
    SPW_SC_NO_SUCH_PARTITION,
    SPW_SC_INVALID_JSON,
    SPW_SC_NOT_AN_OBJECT,
    SPW_SC_MISSING_KEY,
    SPW_SC_BAD_KEY,
    SPW_SC_BAD_TIMESTAMP,
    SPW_SC_EVENT_TOO_LARGE,      /* a JSON event: HTTP 400 */
    SPW_SC_BODY_EVENT_TOO_LARGE, /* a bytes event: HTTP 413 */
    SPW_SC_NO_EVENTS,
    /* dedupe */
    SPW_SC_KEY_REUSED,  /* idempotency_key_reused / sequence_reused */
    SPW_SC_IN_PROGRESS,
    SPW_SC_DEDUPE_FULL,
    /* limits and pressure */
    SPW_SC_RATE_LIMITED,
    SPW_SC_OVER_BURST,
    SPW_SC_SHED,
    SPW_SC_BACKPRESSURE,
    SPW_SC_TOO_LARGE, /* the request's batches exceed max-pending-bytes */
    /* the disk */
    SPW_SC_DISK_LIMIT,
    SPW_SC_DISK_FULL,
    SPW_SC_WRITE_FAILED,
    SPW_SC_INTERNAL,
    /* the checks before a request (spw_svc_stream_for) */
    SPW_SC_BAD_NAME,       /* a stream name */
    SPW_SC_BAD_GROUP_NAME, /* a group or member name: "bad_name" too */
    SPW_SC_UNAUTHORIZED,
    SPW_SC_FORBIDDEN,
    SPW_SC_NO_SUCH_STREAM,
    /* the request itself, before any service */
    SPW_SC_BAD_REQUEST,      /* a malformed request (HTTP: its syntax; binary: its frame body) */
    SPW_SC_NOT_FOUND,        /* no such endpoint (HTTP), consumer groups unavailable */
    SPW_SC_REQUEST_TOO_LARGE, /* body_too_large / frame_too_large */
    SPW_SC_REQUEST_TIMEOUT,
    SPW_SC_OVERLOADED,       /* out of memory for the request */
    SPW_SC_BAD_FRAME,        /* binary only */
    SPW_SC_UNKNOWN_OPCODE,   /* binary only */
    SPW_SC_UNSUPPORTED_VERSION, /* binary only */
    SPW_SC_METHOD_NOT_ALLOWED,  /* HTTP only, from here to SPW_SC_BAD_LEASE */
    SPW_SC_UNSUPPORTED_MEDIA_TYPE,
    SPW_SC_LENGTH_REQUIRED,
    SPW_SC_HEADER_TOO_LARGE,
    SPW_SC_HEADER_TOO_LONG,
    SPW_SC_BAD_ACK,
    SPW_SC_BAD_PRIORITY,
    SPW_SC_BAD_PARAMETER,
    SPW_SC_BAD_JSON,
    SPW_SC_BAD_LEASE,
    /* reading */
    SPW_SC_OFFSET_OUT_OF_RANGE,
    SPW_SC_DAMAGED,
    SPW_SC_READ_FAILED,
    /* consumer groups */
    SPW_SC_NO_SUCH_GROUP,
    SPW_SC_STALE_LEASE,
    SPW_SC_LEASE_EXPIRED,
    SPW_SC_BAD_OFFSET,
    SPW_SC_TOO_MANY_PARTITIONS,
    SPW_SC_SAVE_FAILED,
    /* administration (HTTP only): streams and sinks */
    SPW_SC_BAD_CONFIG,
    SPW_SC_EXISTS,
    SPW_SC_DIRECTORY_EXISTS,
    SPW_SC_CREATE_FAILED,
    SPW_SC_DELETE_FAILED,
    SPW_SC_KIND_NOT_BUILT,
    SPW_SC_NO_SUCH_SINK,
    SPW_SC_UNAVAILABLE,
    /* event sourcing (versioned streams, es/es.h) */
    SPW_SC_VERSION_CONFLICT,     /* the key is not at the expected version */
    SPW_SC_BAD_EXPECTED_VERSION, /* not any, none, exists or 0..2^53-1 */
    SPW_SC_NOT_VERSIONED,        /* an expectation, or a key read, on a stream that is not versioned */
    SPW_SC_MIXED_KEYS,           /* an expectation with events of several keys */
    SPW_SC_NO_SUCH_KEY,          /* a key read of a key never written */
    SPW_SC_SNAPSHOT_AHEAD,       /* a snapshot's version past the key's current one */
    SPW_SC_BAD_SNAPSHOT,         /* not {"version":v,"state":{..}} with v >= 1 */
    SPW_SC_NO_SNAPSHOT,          /* GET of a key's snapshot when none was put */
    SPW_SC_VERSIONS_DELETED,     /* a history read from versions retention deleted */
    /* views (HTTP only) */
    SPW_SC_NO_SUCH_VIEW,
    SPW_SC_UNKNOWN_KEY,
    SPW_SC_VIEW_LAG,
    /* ack=replicated (svc/replicate.h) */
    SPW_SC_REPLICATION_UNAVAILABLE, /* the replicate_to sink is missing, not attached, or cannot replicate */
    SPW_SC_REPLICATION_TIMEOUT,     /* durable here; the replica did not confirm in time */
    SPW_SC_GROUP_ACTIVE, /* a group reset while a member holds a lease */
    SPW_SC_STREAM_IN_USE, /* DELETE of a stream a sink uses as its dead-letter stream */
    SPW_SC_REPLICATION_REJECTED, /* durable here; the replica's sink dead-lettered a record of it */
    SPW_SC__N
} spw_sc;

/* Which front ends can give an answer (the others have no such request). */
enum { SPW_SC_BOTH = 0, SPW_SC_HTTP_ONLY = 1, SPW_SC_BIN_ONLY = 2 };

typedef struct spw_sc_row {
    const char *word;      /* the code word (HTTP "code", binary error code) */
    const char *wire_word; /* the binary protocol's word where it differs, else NULL */
    uint16_t http;         /* HTTP status */
    uint16_t wire;         /* binary status (SPW_ST_*) */
    const char *sentence;  /* default sentence, when the service gives none */
    uint8_t only;          /* SPW_SC_BOTH, SPW_SC_HTTP_ONLY or SPW_SC_BIN_ONLY */
} spw_sc_row;

/* The row of code c. REQUIRES: 0 <= c < SPW_SC__N. */
const spw_sc_row *spw_sc_row_of(spw_sc c);

static inline const char *spw_sc_word(spw_sc c) { return spw_sc_row_of(c)->word; }
static inline const char *spw_sc_wire_word(spw_sc c)
{
    const spw_sc_row *r = spw_sc_row_of(c);
    return r->wire_word ? r->wire_word : r->word;
}
static inline int spw_sc_http(spw_sc c) { return spw_sc_row_of(c)->http; }
static inline const char *spw_sc_sentence(spw_sc c) { return spw_sc_row_of(c)->sentence; }
static inline uint16_t spw_sc_wire(spw_sc c) { return spw_sc_row_of(c)->wire; }

/* The first code whose word over HTTP (wire 0) or binary (wire 1) is
 * word, among the rows that protocol can give; SPW_SC__N if none. */
spw_sc spw_sc_by_word(const char *word, int wire);

/*
 * A produce the disk refused (refused = 1: nothing was appended) or whose
 * write failed on the way (refused = 0: nothing of it is acknowledged):
 * err is the log's error. Returns its code — SPW_SC_DISK_LIMIT
 * (SPW_EDISKLIMIT), SPW_SC_DISK_FULL (-ENOSPC, -EDQUOT) or
 * SPW_SC_WRITE_FAILED (any other I/O error) — with the sentence in msg
 * (cap bytes); or SPW_SC_OK when err is not a disk error (budget, size,
 * encoding, closing), which the caller answers itself.
 */
spw_sc spw_sc_disk(int err, int refused, char *msg, unsigned cap);

/* A read that failed with err (a log, version store or view error): its
 * code — SPW_SC_NO_SUCH_STREAM when the stream was deleted under the read
 * (SPW_EDELETED: its partitions retired), SPW_SC_DAMAGED for damaged
 * records (SPW_ECORRUPT), SPW_SC_READ_FAILED for anything else. */
spw_sc spw_sc_read(int err);

/* Is err an error of the disk (as spw_sc_disk maps)? */
int spw_sc_is_disk_error(int err);

#endif
