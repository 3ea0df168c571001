/*
 * The status table: see status.h. The HTTP statuses and words are those
 * of docs/api.md ("Produce", "Idempotency", "Rate limits"), the binary
 * ones those of docs/protocol.md ("Status"); a row changes both or is
 * split.
 */
#include "svc/status.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/name.h"
#include "wire/frame.h"

#define H SPW_SC_HTTP_ONLY
#define B SPW_SC_BIN_ONLY

static const spw_sc_row rows[SPW_SC__N] = {
    [SPW_SC_OK] = {"ok", NULL, 200, SPW_ST_OK, "ok"},
    [SPW_SC_NO_REPLICATION] = {"replication_not_configured", NULL, 400, SPW_ST_BAD_REQUEST,
                               "ack=replicated needs a stream with replicate_to"},
    [SPW_SC_NO_SUCH_PARTITION] = {"no_such_partition", NULL, 404, SPW_ST_NOT_FOUND, "no such partition"},
    [SPW_SC_INVALID_JSON] = {"invalid_json", NULL, 400, SPW_ST_BAD_REQUEST, "the event is not valid JSON"},
    [SPW_SC_NOT_AN_OBJECT] = {"not_an_object", NULL, 400, SPW_ST_BAD_REQUEST, "each event must be a JSON object"},
    [SPW_SC_MISSING_KEY] = {"missing_key", NULL, 400, SPW_ST_BAD_REQUEST, "the stream's key is missing"},
    [SPW_SC_BAD_KEY] = {"bad_key", NULL, 400, SPW_ST_BAD_REQUEST,
                        "keys must be UTF-8 text without control characters"},
    [SPW_SC_BAD_TIMESTAMP] = {"bad_timestamp", NULL, 400, SPW_ST_BAD_REQUEST,
                              "the timestamp must be an integer of milliseconds since the Unix epoch"},
    [SPW_SC_EVENT_TOO_LARGE] = {"event_too_large", NULL, 400, SPW_ST_TOO_LARGE,
                                "the event is longer than the stream's max_event_bytes"},
    [SPW_SC_BODY_EVENT_TOO_LARGE] = {"event_too_large", NULL, 413, SPW_ST_TOO_LARGE,
                                     "the event is longer than the stream's max_event_bytes"},
    [SPW_SC_NO_EVENTS] = {"no_events", NULL, 400, SPW_ST_BAD_REQUEST, "the body holds no events"},
    [SPW_SC_KEY_REUSED] = {"idempotency_key_reused", "sequence_reused", 422, SPW_ST_CONFLICT,
                           "the dedupe key was used for another request within the stream's dedupe window; "
                           "nothing was appended"},
    [SPW_SC_IN_PROGRESS] = {"in_progress", NULL, 409, SPW_ST_OVERLOADED,
                            "a request with this dedupe key is still being written; retry to get its answer"},
    [SPW_SC_DEDUPE_FULL] = {"dedupe_full", NULL, 503, SPW_ST_OVERLOADED,
                            "the dedupe table is full of keys inside their windows; retry later (nothing was "
                            "appended)"},
    [SPW_SC_RATE_LIMITED] = {"rate_limited", NULL, 429, SPW_ST_RATE_LIMITED,
                             "the stream's rate limit is exceeded (nothing was appended)"},
    [SPW_SC_OVER_BURST] = {"over_burst", NULL, 413, SPW_ST_TOO_LARGE,
                           "the request can never pass the stream's rate limit (nothing was appended)"},
    [SPW_SC_SHED] = {"shed", NULL, 503, SPW_ST_OVERLOADED, "the server is shedding load of this priority"},
    [SPW_SC_BACKPRESSURE] = {"backpressure", NULL, 503, SPW_ST_OVERLOADED,
                             "the server is writing as fast as the disk allows"},
    [SPW_SC_TOO_LARGE] = {"body_too_large", "too_large", 413, SPW_ST_TOO_LARGE,
                          "the request's batches exceed max_pending_bytes"},
    [SPW_SC_DISK_LIMIT] = {"disk_limit", NULL, 507, SPW_ST_DISK, "the data directory is at its max-disk-bytes limit"},
    [SPW_SC_DISK_FULL] = {"disk_full", NULL, 507, SPW_ST_DISK, "the disk is full"},
    [SPW_SC_WRITE_FAILED] = {"write_failed", NULL, 500, SPW_ST_INTERNAL, "the write failed"},
    [SPW_SC_INTERNAL] = {"internal", NULL, 500, SPW_ST_INTERNAL, "internal error"},
    [SPW_SC_BAD_NAME] = {"bad_name", NULL, 400, SPW_ST_BAD_REQUEST, "stream names are " SPW_NAME_RULE},
    [SPW_SC_BAD_GROUP_NAME] = {"bad_name", NULL, 400, SPW_ST_BAD_REQUEST,
                               "group and member names are 1 to 128 (members 64) " SPW_NAME_CHARS},
    [SPW_SC_UNAUTHORIZED] = {"unauthorized", NULL, 401, SPW_ST_UNAUTHORIZED, "this server needs a valid token"},
    [SPW_SC_FORBIDDEN] = {"forbidden", NULL, 403, SPW_ST_FORBIDDEN, "the token may not do this"},
    [SPW_SC_NO_SUCH_STREAM] = {"no_such_stream", NULL, 404, SPW_ST_NOT_FOUND, "no such stream"},
    [SPW_SC_BAD_REQUEST] = {"bad_request", NULL, 400, SPW_ST_BAD_REQUEST, "the request is malformed"},
    [SPW_SC_NOT_FOUND] = {"not_found", NULL, 404, SPW_ST_NOT_FOUND, "no such endpoint"},
    [SPW_SC_REQUEST_TOO_LARGE] = {"body_too_large", "frame_too_large", 413, SPW_ST_TOO_LARGE,
                                  "the request is larger than the server accepts"},
    [SPW_SC_REQUEST_TIMEOUT] = {"request_timeout", NULL, 408, SPW_ST_TIMEOUT, "request not received in time"},
    [SPW_SC_OVERLOADED] = {"overloaded", NULL, 503, SPW_ST_OVERLOADED, "out of memory"},
    [SPW_SC_BAD_FRAME] = {"bad_frame", NULL, 400, SPW_ST_BAD_REQUEST,
                          "not a Spillway frame (length below 12 or unknown flags)", B},
    [SPW_SC_UNKNOWN_OPCODE] = {"unknown_opcode", NULL, 400, SPW_ST_BAD_REQUEST, "the opcode is not known", B},
    [SPW_SC_UNSUPPORTED_VERSION] = {"unsupported_version", NULL, 400, SPW_ST_BAD_REQUEST,
                                    "the frame's version is not supported", B},
    [SPW_SC_METHOD_NOT_ALLOWED] = {"method_not_allowed", NULL, 405, SPW_ST_BAD_REQUEST, "method not allowed", H},
    [SPW_SC_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", NULL, 415, SPW_ST_BAD_REQUEST,
                                       "the body's Content-Type is not accepted here", H},
    [SPW_SC_LENGTH_REQUIRED] = {"length_required", NULL, 411, SPW_ST_BAD_REQUEST,
                                "a request body needs Content-Length or chunked encoding", H},
    [SPW_SC_HEADER_TOO_LARGE] = {"header_too_large", NULL, 431, SPW_ST_TOO_LARGE,
                                 "request line and headers exceed the server's limit", H},
    [SPW_SC_HEADER_TOO_LONG] = {"header_too_long", NULL, 400, SPW_ST_BAD_REQUEST,
                                "a header is longer than the server keeps; nothing was done", H},
    [SPW_SC_BAD_ACK] = {"bad_ack", NULL, 400, SPW_ST_BAD_REQUEST, "ack must be none, written, fsync or replicated", H},
    [SPW_SC_BAD_PRIORITY] = {"bad_priority", NULL, 400, SPW_ST_BAD_REQUEST, "Spillway-Priority must be 0, 1, 2 or 3",
                             H},
    [SPW_SC_BAD_PARAMETER] = {"bad_parameter", NULL, 400, SPW_ST_BAD_REQUEST, "a query parameter is not valid", H},
    [SPW_SC_BAD_JSON] = {"bad_json", NULL, 400, SPW_ST_BAD_REQUEST, "the body is not the JSON expected"},
    [SPW_SC_BAD_LEASE] = {"bad_lease", NULL, 400, SPW_ST_BAD_REQUEST,
                          "lease must be the string a poll returned in Spillway-Lease", H},
    [SPW_SC_OFFSET_OUT_OF_RANGE] = {"offset_out_of_range", NULL, 416, SPW_ST_OUT_OF_RANGE,
                                    "the offset is outside the partition's records"},
    [SPW_SC_DAMAGED] = {"damaged", NULL, 500, SPW_ST_INTERNAL, "the records are damaged on disk (run spillway check)"},
    [SPW_SC_READ_FAILED] = {"read_failed", NULL, 500, SPW_ST_INTERNAL, "the read failed"},
    [SPW_SC_NO_SUCH_GROUP] = {"no_such_group", NULL, 404, SPW_ST_NOT_FOUND, "no such consumer group"},
    [SPW_SC_STALE_LEASE] = {"stale_lease", NULL, 409, SPW_ST_CONFLICT, "the lease is no longer current: poll again"},
    [SPW_SC_LEASE_EXPIRED] = {"lease_expired", NULL, 409, SPW_ST_CONFLICT,
                              "the lease expired: its records will be delivered again; poll again"},
    [SPW_SC_BAD_OFFSET] = {"bad_offset", NULL, 400, SPW_ST_BAD_REQUEST, "the offset is outside the lease"},
    [SPW_SC_TOO_MANY_PARTITIONS] = {"too_many_partitions", NULL, 400, SPW_ST_BAD_REQUEST,
                                    "the stream has more partitions than a consumer group can follow"},
    [SPW_SC_SAVE_FAILED] = {"save_failed", NULL, 500, SPW_ST_INTERNAL, "saving the group failed"},
    [SPW_SC_BAD_CONFIG] = {"bad_config", NULL, 400, SPW_ST_BAD_REQUEST, "the definition is not valid"},
    [SPW_SC_EXISTS] = {"exists", NULL, 409, SPW_ST_CONFLICT, "it exists with a different definition"},
    [SPW_SC_DIRECTORY_EXISTS] = {"directory_exists", NULL, 409, SPW_ST_CONFLICT,
                                 "the data directory holds a directory of that name that is no loaded stream"},
    [SPW_SC_CREATE_FAILED] = {"create_failed", NULL, 500, SPW_ST_INTERNAL, "creating it failed"},
    [SPW_SC_DELETE_FAILED] = {"delete_failed", NULL, 500, SPW_ST_INTERNAL, "deleting it failed", H},
    [SPW_SC_KIND_NOT_BUILT] = {"kind_not_built", NULL, 400, SPW_ST_BAD_REQUEST,
                               "this server was built without that sink kind", H},
    [SPW_SC_NO_SUCH_SINK] = {"no_such_sink", NULL, 404, SPW_ST_NOT_FOUND, "no such sink", H},
    [SPW_SC_UNAVAILABLE] = {"unavailable", NULL, 503, SPW_ST_OVERLOADED, "not available on this server", H},
    [SPW_SC_VERSION_CONFLICT] = {"version_conflict", NULL, 409, SPW_ST_CONFLICT,
                                 "the key is not at the expected version; nothing was appended"},
    [SPW_SC_BAD_EXPECTED_VERSION] = {"bad_expected_version", NULL, 400, SPW_ST_BAD_REQUEST,
                                     "expected_version must be any, none, exists or an integer 0..9007199254740991"},
    [SPW_SC_NOT_VERSIONED] = {"not_versioned", NULL, 400, SPW_ST_BAD_REQUEST,
                              "the stream is not versioned (versioned: true)"},
    [SPW_SC_MIXED_KEYS] = {"mixed_keys", NULL, 400, SPW_ST_BAD_REQUEST,
                           "a request with an expected version holds events of one key only"},
    [SPW_SC_NO_SUCH_KEY] = {"no_such_key", NULL, 404, SPW_ST_NOT_FOUND, "no event of this key was written"},
    [SPW_SC_SNAPSHOT_AHEAD] = {"snapshot_ahead", NULL, 409, SPW_ST_CONFLICT,
                               "the snapshot's version is past the key's current version", H},
    [SPW_SC_BAD_SNAPSHOT] = {"bad_snapshot", NULL, 400, SPW_ST_BAD_REQUEST,
                             "a snapshot is {\"version\":v,\"state\":{..}} with v at least 1", H},
    [SPW_SC_NO_SNAPSHOT] = {"no_snapshot", NULL, 404, SPW_ST_NOT_FOUND, "no snapshot of this key was put", H},
    [SPW_SC_VERSIONS_DELETED] = {"versions_deleted", NULL, 416, SPW_ST_OUT_OF_RANGE,
                                 "retention deleted the key's versions from this one: read from the oldest kept"},
    [SPW_SC_NO_SUCH_VIEW] = {"no_such_view", NULL, 404, SPW_ST_NOT_FOUND, "no such view", SPW_SC_BOTH},
    [SPW_SC_UNKNOWN_KEY] = {"unknown_key", NULL, 404, SPW_ST_NOT_FOUND, "the view has never seen this key",
                            SPW_SC_BOTH},
    [SPW_SC_VIEW_LAG] = {"view_lag", NULL, 504, SPW_ST_TIMEOUT,
                         "the view has not applied the offsets asked for within wait_ms", SPW_SC_BOTH},
    [SPW_SC_REPLICATION_UNAVAILABLE] = {"replication_unavailable", NULL, 503, SPW_ST_OVERLOADED,
                                        "the stream's replicate_to sink is not attached to a target that replicates"},
    [SPW_SC_REPLICATION_TIMEOUT] = {"replication_timeout", NULL, 504, SPW_ST_REPLICATION_TIMEOUT,
                                    "durable here; the replica did not confirm it within replication_timeout_ms"},
    [SPW_SC_GROUP_ACTIVE] = {"group_active", NULL, 409, SPW_ST_CONFLICT,
                             "the group has active members (leased partitions): stop them first"},
    [SPW_SC_STREAM_IN_USE] = {"stream_in_use", NULL, 409, SPW_ST_CONFLICT,
                              "a sink sends its dead letters to this stream: delete the sink first", H},
    [SPW_SC_REPLICATION_REJECTED] = {"replication_rejected", NULL, 422, SPW_ST_UNPROCESSABLE,
                                     "durable here; the replica's target refused a record of it (dead-lettered)"},
};

spw_sc spw_sc_by_word(const char *word, int wire)
{
    for (int c = 0; c < SPW_SC__N; c++) {
        const spw_sc_row *r = &rows[c];
        if (r->only == (wire ? SPW_SC_HTTP_ONLY : SPW_SC_BIN_ONLY))
            continue;
        if (strcmp(wire ? (r->wire_word ? r->wire_word : r->word) : r->word, word) == 0)
            return (spw_sc)c;
    }
    return SPW_SC__N;
}

#undef H
#undef B

const spw_sc_row *spw_sc_row_of(spw_sc c) { return &rows[(unsigned)c < SPW_SC__N ? c : SPW_SC_INTERNAL]; }

spw_sc spw_sc_read(int err)
{
    switch (err) {
    case SPW_EDELETED: return SPW_SC_NO_SUCH_STREAM;
    case SPW_ECORRUPT: return SPW_SC_DAMAGED;
    default: return SPW_SC_READ_FAILED;
    }
}

int spw_sc_is_disk_error(int err)
{
    return err == SPW_EDISKLIMIT || (err < 0 && err > SPW__ERR_BASE && err != SPW_EAGAIN && err != SPW_EMSGSIZE &&
                                     err != SPW_EINVAL && err != SPW_ENOMEM && err != SPW_ECANCELED);
}

spw_sc spw_sc_disk(int err, int refused, char *msg, unsigned cap)
{
    if (err == SPW_EDISKLIMIT) {
        snprintf(msg, cap,
                 "the data directory is at its max-disk-bytes limit: nothing was appended; space comes back when "
                 "retention deletes segments or a stream is deleted");
        return SPW_SC_DISK_LIMIT;
    }
    int full = err == -ENOSPC || err == -EDQUOT;
    if (refused)
        snprintf(msg, cap,
                 "a partition of the stream is read-only after a failed write (%s) until it recovers, which it does "
                 "by itself once the disk works again: nothing was appended",
                 spw_strerror(err));
    else
        snprintf(msg, cap,
                 "the write failed: %s; nothing of it is acknowledged (the partition refuses writes until it has "
                 "recovered)",
                 spw_strerror(err));
    if (!spw_sc_is_disk_error(err))
        return SPW_SC_OK;
    return full ? SPW_SC_DISK_FULL : SPW_SC_WRITE_FAILED;
}
