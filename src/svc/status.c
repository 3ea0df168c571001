/*
 * The status table: see status.h. The HTTP statuses and words are those
 * of docs/api.md ("Produce", "Idempotency", "Rate limits"), the binary
 * ones those of docs/protocol.md ("Status"); a row changes both or is
 * split.
 */
#include "svc/status.h"

#include <errno.h>
#include <stdio.h>

#include "core/error.h"
#include "wire/frame.h"

static const spw_sc_row rows[SPW_SC__N] = {
    [SPW_SC_OK] = {"ok", NULL, 200, SPW_ST_OK, "ok"},
    [SPW_SC_NOT_IMPLEMENTED] = {"not_implemented", NULL, 501, SPW_ST_NOT_IMPLEMENTED,
                                "ack=replicated needs a replicated backend, and this node has none"},
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
};

const spw_sc_row *spw_sc_row_of(spw_sc c) { return &rows[(unsigned)c < SPW_SC__N ? c : SPW_SC_INTERNAL]; }

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
