/*
 * Readiness (svc/health.h): whether this server can take writes now, and
 * if not, why. Read at each GET /readyz from what the log and the
 * service already keep — nothing is computed in the background.
 */
#include "svc/health.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/json.h"
#include "log/log.h"

/* Below this much free space on the data directory's file system the
 * next segment roll or batch may fail (ENOSPC): not ready. */
#define SPW_READY_MIN_FREE (16u << 20)

static void reason(spw_buf *b, int *n, const char *code, const char *detail)
{
    spw_buf_xprintf(b, "%s{\"code\":\"%s\",\"detail\":", (*n)++ ? "," : "", code);
    spw_json_xput_str(b, detail, strlen(detail));
    spw_buf_xprintf(b, "}");
}

int spw_svc_ready(spw_svc *svc, spw_buf *out)
{
    int n = 0;
    char d[200];
    spw_buf_xprintf(out, "{\"reasons\":[");
    if (!atomic_load(&svc->ready))
        reason(out, &n, "starting", "the server is still starting (recovery, consumer groups, sinks)");
    uint32_t failed = spw_log_failed_partitions(svc->log);
    if (failed) {
        snprintf(d, sizeof d, "%" PRIu32 " partition(s) refuse writes after a failed write or fsync", failed);
        reason(out, &n, "partitions_failed", d);
    }
    /* The disk limit is reached when what is left of it is less than the
     * last request it refused needs (or, before any refusal, than a 16th
     * of the limit, at most 64 KiB): retention or deleting a stream makes
     * the server ready again without a produce having to get through. */
    if (svc->max_disk_bytes) {
        uint64_t used = spw_log_disk_bytes(svc->log) + spw_log_pending_bytes(svc->log);
        uint64_t room = used < svc->max_disk_bytes ? svc->max_disk_bytes - used : 0;
        uint64_t need = svc->max_disk_bytes / 16 < (64u << 10) ? svc->max_disk_bytes / 16 : 64u << 10;
        uint64_t refused = atomic_load(&svc->disk_refused_bytes);
        if (refused > need)
            need = refused;
        if (room < need) {
            snprintf(d, sizeof d, "%" PRIu64 " of max-disk-bytes %" PRIu64 " left, %" PRIu64 " needed", room,
                     svc->max_disk_bytes, need);
            reason(out, &n, "disk_limit", d);
        }
    }
    struct statvfs fs;
    if (statvfs(svc->data_dir, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < SPW_READY_MIN_FREE) {
        snprintf(d, sizeof d, "%" PRIu64 " bytes free on the data directory's file system",
                 (uint64_t)fs.f_bavail * fs.f_frsize);
        reason(out, &n, "disk_full", d);
    }
    spw_buf_xprintf(out, "],\"status\":\"%s\"}\n", n ? "not_ready" : "ready");
    return n == 0;
}
