/*
 * Readiness: GET /readyz (docs/api.md "Operations"). /healthz says the
 * process answers (liveness); readiness says it can take writes, for a
 * load balancer or an orchestrator to send traffic elsewhere when not.
 * Not ready, with a reason each, while:
 *   - starting: the server has not finished starting (svc->ready unset:
 *     server.c sets it once consumer groups and sinks are up);
 *   - partitions_failed: a partition refuses writes after a failed write
 *     or fsync (it recovers by itself; log.h "Failed partitions");
 *   - disk_limit: what max-disk-bytes leaves is less than the last request
 *     it refused needs (before any refusal: a 16th of it, at most 64 KiB);
 *   - disk_full: less than 16 MiB free on the data directory's file
 *     system.
 */
#ifndef SPW_SVC_HEALTH_H
#define SPW_SVC_HEALTH_H

#include "core/buf.h"
#include "svc/svc.h"

/* 1 ready, 0 not; either way appends {"reasons":[{"code","detail"}…],
 * "status":"ready"|"not_ready"} to out. Any thread. */
int spw_svc_ready(spw_svc *svc, spw_buf *out);

#endif
