/*
 * The operations routes (docs/api.md "Operations"): /v1/ids, /v1/status,
 * and /metrics with the server's metric families registered into the
 * registry (svc/metrics.h): pending and disk bytes, buffers, the log's
 * counters, HTTP's connections, auth, per-partition ends and sizes, groups
 * and sinks. The names and values are a contract (docs/operations.md).
 */
#include "http/api_int.h"
#include "log/log.h"
#include "net/conn.h"
#include "os/os.h"

#include "core/version.h"

/* ---- operations ---- */

void spw__api_handle_ids(spw_api *api, spw_http_req *req)
{
    uint64_t n = 1;
    if (spw__api_query_u64(req->query, "count", &n) < 0 || n == 0 || n > 10000) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "count must be an integer from 1 to 10000");
        return;
    }
    spw_idgen *g = spw_log_idgen(api->svc.log);
    uint64_t t = spw_idgen_reserve(g, (uint32_t)n);
    spw_buf b = SPW_BUF_INIT;
    spw_buf_xprintf(&b, "{\"ids\":[");
    for (uint64_t i = 0; i < n; i++)
        spw_buf_xprintf(&b, "%s\"%" PRIu64 "\"", i ? "," : "", spw_id_from_ticket(g, t + i));
    spw_buf_xprintf(&b, "]}\n");
    spw__api_respond_json(req, 200, &b);
}

void spw__api_handle_status(spw_api *api, spw_http_req *req)
{
    uint64_t disk = spw_log_disk_bytes(api->svc.log);
    struct statvfs fs;
    uint64_t fs_avail = statvfs(api->svc.data_dir, &fs) == 0 ? (uint64_t)fs.f_bavail * fs.f_frsize : 0;
    spw_http_stats hs;
    spw_http_stats_get(api->http, &hs);
    spw_buf b = SPW_BUF_INIT;
    spw_buf_xprintf(&b,
                  "{\"version\":\"%s\",\"commit\":\"%s\",\"uptime_ms\":%" PRId64 ",\"node_id\":%u,"
                  "\"data_dir\":",
                  spw_version, spw_commit, spw_wall_ms() - api->svc.started_ms, api->svc.node_id);
    spw_json_xput_str(&b, api->svc.data_dir, strlen(api->svc.data_dir));
    spw_buf_xprintf(&b,
                  ",\"streams\":%u,\"connections\":%" PRIu64 ",\"pending_bytes\":%" PRIu64
                  ",\"limits\":{\"max_pending_bytes\":%" PRIu64 ",\"max_request_bytes\":%" PRIu64
                  ",\"max_connections\":%u,\"max_disk_bytes\":%" PRIu64,
                  spw_catalog_count(api->svc.cat), hs.connections_open, spw_log_pending_bytes(api->svc.log),
                  api->svc.max_pending_bytes, api->svc.max_request_bytes, api->max_connections,
                  api->svc.max_disk_bytes);
    if (api->svc.rl) {
        /* The server-wide default rate limit, as SIGHUP last set it. */
        spw_rl_limit d;
        spw_rl_get_default(api->svc.rl, &d);
        if (d.rate > 0 && d.algo == SPW_RL_SLIDING_WINDOW)
            spw_buf_xprintf(&b, ",\"rate_limit\":{\"rate\":%.17g,\"per\":\"%s\",\"algorithm\":\"sliding_window\"}",
                          d.rate, spw_rl_per_name(d.per));
        else if (d.rate > 0)
            spw_buf_xprintf(
                &b, ",\"rate_limit\":{\"rate\":%.17g,\"burst\":%.17g,\"per\":\"%s\",\"algorithm\":\"token_bucket\"}",
                d.rate, d.burst, spw_rl_per_name(d.per));
        else
            spw_buf_xprintf(&b, ",\"rate_limit\":null");
    }
    spw_buf_xprintf(&b,
                  "},\"disk\":{\"bytes\":%" PRIu64 ",\"max_bytes\":%" PRIu64 ",\"fs_available_bytes\":%" PRIu64
                  ",\"failed_partitions\":%u,\"recoveries\":%" PRIu64 "}}\n",
                  disk, api->svc.max_disk_bytes, fs_avail, spw_log_failed_partitions(api->svc.log),
                  spw_log_recoveries(api->svc.log));
    spw__api_respond_json(req, 200, &b);
}

/* ---- metrics: the server's families (svc/metrics.h) ---- */

#define API(a) ((spw_api *)(a))
static uint64_t m_pending(void *a) { return spw_log_pending_bytes(API(a)->svc.log); }
static uint64_t m_buf(void *a, int i)
{
    spw_membudget_stats ms;
    spw_membudget_stats_get(API(a)->buffers, &ms);
    return i == 0 ? ms.used : i == 1 ? ms.peak : i == 2 ? ms.limit : ms.waits;
}
static uint64_t m_buf_used(void *a) { return m_buf(a, 0); }
static uint64_t m_buf_peak(void *a) { return m_buf(a, 1); }
static uint64_t m_buf_limit(void *a) { return m_buf(a, 2); }
static uint64_t m_buf_waits(void *a) { return m_buf(a, 3); }
static uint64_t m_unsent(void *a, int i)
{
    spw_membudget_stats ms;
    spw_membudget_stats_get(API(a)->unsent, &ms);
    return i == 0 ? ms.used : i == 1 ? ms.peak : ms.limit;
}
static uint64_t m_unsent_used(void *a) { return m_unsent(a, 0); }
static uint64_t m_unsent_peak(void *a) { return m_unsent(a, 1); }
static uint64_t m_unsent_limit(void *a) { return m_unsent(a, 2); }
static uint64_t m_http_send_timeouts(void *a)
{
    spw_http_stats st;
    spw_http_stats_get(API(a)->http, &st);
    return st.send_timeouts;
}
static uint64_t m_http_uring(void *a, int loops)
{
    spw_http_stats st;
    spw_http_stats_get(API(a)->http, &st);
    return loops ? st.uring_loops : st.uring_sends;
}
static uint64_t m_http_uring_sends(void *a) { return m_http_uring(a, 0); }
static uint64_t m_http_uring_loops(void *a) { return m_http_uring(a, 1); }
static uint64_t m_disk(void *a) { return spw_log_disk_bytes(API(a)->svc.log); }
static uint64_t m_max_disk(void *a) { return API(a)->svc.max_disk_bytes; }
static uint64_t m_failed(void *a) { return spw_log_failed_partitions(API(a)->svc.log); }
static uint64_t m_recoveries(void *a) { return spw_log_recoveries(API(a)->svc.log); }
static uint64_t m_clamped(void *a) { return atomic_load(&API(a)->svc.positions_clamped); }
static uint64_t m_log(void *a, int i)
{
    spw_log_stats ls;
    spw_log_stats_get(API(a)->svc.log, &ls);
    return i == 0 ? ls.cycles : i == 1 ? ls.bytes_written : i == 2 ? ls.fsyncs : ls.acks_fsync;
}
static uint64_t m_log_cycles(void *a) { return m_log(a, 0); }
static uint64_t m_log_written(void *a) { return m_log(a, 1); }
static uint64_t m_log_fsyncs(void *a) { return m_log(a, 2); }
static uint64_t m_log_acks(void *a) { return m_log(a, 3); }
static uint64_t m_http(void *a, int i)
{
    spw_http_stats hs;
    spw_http_stats_get(API(a)->http, &hs);
    return i == 0 ? hs.connections_open : i == 1 ? hs.requests : i == 2 ? hs.rejected_limits : hs.accept_fd_errors;
}
static uint64_t m_http_fd_errors(void *a) { return m_http(a, 3); }
static uint64_t m_conn_fds_max(void *a)
{
    (void)a;
    uint32_t v = spw_net_conn_fds();
    return v == UINT32_MAX ? 0 : v;
}
static uint64_t m_fdc(void *a, int i)
{
    spw_fdcache_stats st;
    spw_log_fdcache_stats(API(a)->svc.log, &st);
    return i == 0 ? st.open : i == 1 ? st.capacity : i == 2 ? st.hits : i == 3 ? st.misses : i == 4 ? st.evictions
                                                                                             : st.open_errors;
}
static uint64_t m_fdc_open(void *a) { return m_fdc(a, 0); }
static uint64_t m_fdc_cap(void *a) { return m_fdc(a, 1); }
static uint64_t m_fdc_hits(void *a) { return m_fdc(a, 2); }
static uint64_t m_fdc_misses(void *a) { return m_fdc(a, 3); }
static uint64_t m_fdc_evictions(void *a) { return m_fdc(a, 4); }
static uint64_t m_fdc_errors(void *a) { return m_fdc(a, 5); }
static uint64_t m_http_conns(void *a) { return m_http(a, 0); }
static uint64_t m_http_requests(void *a) { return m_http(a, 1); }
static uint64_t m_http_refused(void *a) { return m_http(a, 2); }
static void m_auth_refused(void *a, spw_metrics_out *o, const char *name)
{
    spw_metrics_line(o, name, "reason=\"unauthorized\"", atomic_load(&API(a)->svc.auth->unauthorized));
    spw_metrics_line(o, name, "reason=\"forbidden\"", atomic_load(&API(a)->svc.auth->forbidden));
}
static void m_auth_reloads(void *a, spw_metrics_out *o, const char *name)
{
    spw_metrics_line(o, name, "result=\"ok\"", atomic_load(&API(a)->svc.auth->reloads_ok));
    spw_metrics_line(o, name, "result=\"failed\"", atomic_load(&API(a)->svc.auth->reloads_failed));
}

typedef struct part_walk {
    spw_metrics_out *o;
    const char *name;
    int what; /* 0 end offset, 1 bytes, 2 bytes retention holds for the dedupe window */
} part_walk;

static void part_one(void *arg, spw_stream *s)
{
    part_walk *w = arg;
    if (!spw_metrics_sees(w->o, s->cfg.name))
        return;
    for (uint32_t i = 0; i < s->cfg.partitions; i++) {
        spw_part_state st;
        spw_part_state_get(s->parts[i], &st);
        char l[192];
        snprintf(l, sizeof l, "stream=\"%s\",partition=\"%u\"", s->cfg.name, i);
        spw_metrics_line(w->o, w->name, l,
                         w->what == 2 ? st.retention_held_bytes : w->what == 1 ? st.bytes : st.written_offset);
    }
}
static void m_part_end(void *a, spw_metrics_out *o, const char *name)
{
    part_walk w = {o, name, 0};
    spw_catalog_each(API(a)->svc.cat, part_one, &w);
}
static void m_part_bytes(void *a, spw_metrics_out *o, const char *name)
{
    part_walk w = {o, name, 1};
    spw_catalog_each(API(a)->svc.cat, part_one, &w);
}
static void m_part_held(void *a, spw_metrics_out *o, const char *name)
{
    part_walk w = {o, name, 2};
    spw_catalog_each(API(a)->svc.cat, part_one, &w);
}

static void m_groups(void *a, spw_metrics_out *o) { spw_consume_metrics(API(a)->svc.groups, o->b, o->who); }
/* A sink's series: for whoever may see its source stream's. */

static void m_sinks(void *a, spw_metrics_out *o)
{
    if (API(a)->sinks)
        spw_sinks_metrics(API(a)->sinks, o);
}

/* Per-stream samples: only the streams the token may see. */
static int metrics_filter(const void *who, const char *stream)
{
    return !who || spw_token_sees(who, stream, strlen(stream));
}

void spw_api_metrics_register(spw_api *api)
{
    spw_metrics *m = api->svc.metrics;
    spw_metrics_set_filter(m, metrics_filter);
    spw_metrics_register_process(m);
    spw_produce_metrics_register(m, &api->svc);
    spw_metrics_add_family(m, "spillway_partition_end_offset",
                           "the offset the next event of the partition gets",
                           SPW_METRIC_GAUGE, m_part_end, api);
    spw_metrics_add_family(m, "spillway_partition_bytes",
                           "bytes of the partition's segment files",
                           SPW_METRIC_GAUGE, m_part_bytes, api);
    spw_metrics_add_family(m, "spillway_partition_retention_held_bytes",
                           "bytes retention.bytes would delete but keeps: segments written within the stream's "
                           "dedupe window",
                           SPW_METRIC_GAUGE, m_part_held, api);
    spw_metrics_add_block(m, m_groups, api);
    spw_metrics_add_u64(m, "spillway_pending_bytes",
                        "accepted, not yet written bytes",
                        SPW_METRIC_GAUGE, m_pending, api);
    if (api->buffers) {
        spw_metrics_add_u64(m, "spillway_buffer_bytes",
                            "bytes of request bodies and frames being read, all connections (what max-buffer-bytes "
                            "limits; see Memory)",
                            SPW_METRIC_GAUGE, m_buf_used, api);
        spw_metrics_add_u64(m, "spillway_buffer_peak_bytes",
                            "the highest spillway_buffer_bytes since start",
                            SPW_METRIC_GAUGE, m_buf_peak, api);
        spw_metrics_add_u64(m, "spillway_max_buffer_bytes",
                            "the max-buffer-bytes setting",
                            SPW_METRIC_GAUGE, m_buf_limit, api);
        spw_metrics_add_u64(m, "spillway_buffer_waits_total",
                            "times a connection stopped being read because max-buffer-bytes was reached",
                            SPW_METRIC_COUNTER, m_buf_waits, api);
    }
    if (api->unsent) {
        spw_metrics_add_u64(m, "spillway_unsent_bytes", "answers built and not yet sent, all connections (what max-unsent-bytes limits)",
                            SPW_METRIC_GAUGE, m_unsent_used, api);
        spw_metrics_add_u64(m, "spillway_unsent_peak_bytes", "the highest spillway_unsent_bytes since start",
                            SPW_METRIC_GAUGE, m_unsent_peak, api);
        spw_metrics_add_u64(m, "spillway_max_unsent_bytes", "the max-unsent-bytes setting", SPW_METRIC_GAUGE,
                            m_unsent_limit, api);
    }
    spw_metrics_add_u64(m, "spillway_disk_bytes",
                        "segment bytes of every partition (what max-disk-bytes limits)",
                        SPW_METRIC_GAUGE, m_disk, api);
    spw_metrics_add_u64(m, "spillway_max_disk_bytes",
                        "the max-disk-bytes setting (0: no limit)",
                        SPW_METRIC_GAUGE, m_max_disk, api);
    spw_metrics_add_u64(m, "spillway_partitions_failed",
                        "partitions refusing writes after a failed write or fsync, until they recover",
                        SPW_METRIC_GAUGE, m_failed, api);
    spw_metrics_add_u64(m, "spillway_partition_recoveries_total",
                        "recoveries of failed partitions that succeeded",
                        SPW_METRIC_COUNTER, m_recoveries, api);
    spw_metrics_add_u64(m, "spillway_positions_clamped_total",
                        "consumer-group offsets and sink positions found past their partition's end at attach and "
                        "moved down to it",
                        SPW_METRIC_COUNTER, m_clamped, api);
    spw_metrics_add_u64(m, "spillway_log_flush_cycles_total", "flusher cycles", SPW_METRIC_COUNTER, m_log_cycles, api);
    spw_metrics_add_u64(m, "spillway_log_written_bytes_total",
                        "bytes written to segment files",
                        SPW_METRIC_COUNTER, m_log_written, api);
    spw_metrics_add_u64(m, "spillway_log_fsyncs_total", "fdatasync calls", SPW_METRIC_COUNTER, m_log_fsyncs, api);
    spw_metrics_add_u64(m, "spillway_log_fsync_acks_total",
                        "appends acknowledged at fsync",
                        SPW_METRIC_COUNTER, m_log_acks, api);
    spw_hist *fh, *gh;
    spw_log_hists(api->svc.log, &fh, &gh);
    spw_metrics_add_hist(m, "spillway_log_fsync_seconds", "time of each group commit's fdatasync round", fh, 1e6);
    spw_metrics_add_hist(m, "spillway_log_group_commit_appends", "appends acknowledged by one fsync round", gh, 1);
    spw_metrics_add_u64(m, "spillway_http_connections", "open HTTP connections", SPW_METRIC_GAUGE, m_http_conns, api);
    spw_metrics_add_u64(m, "spillway_http_requests_total",
                        "HTTP requests received",
                        SPW_METRIC_COUNTER, m_http_requests, api);
    spw_metrics_add_u64(m, "spillway_http_refused_total",
                        "connections and requests refused by a limit (connections, headers, body, timeouts, "
                        "malformed)",
                        SPW_METRIC_COUNTER, m_http_refused, api);
    spw_metrics_add_u64(m, "spillway_http_accept_fd_errors_total",
                        "HTTP accepts that failed for want of a file descriptor (EMFILE, ENFILE)", SPW_METRIC_COUNTER,
                        m_http_fd_errors, api);
    spw_metrics_add_u64(m, "spillway_connection_fds_max",
                        "client connections of both listeners together that the fd limit leaves room for (0: no "
                        "bound but max-connections)",
                        SPW_METRIC_GAUGE, m_conn_fds_max, api);
    spw_metrics_add_u64(m, "spillway_segment_fd_cache_open", "sealed segments whose files are open",
                        SPW_METRIC_GAUGE, m_fdc_open, api);
    spw_metrics_add_u64(m, "spillway_segment_fd_cache_capacity", "fd-cache-segments", SPW_METRIC_GAUGE, m_fdc_cap,
                        api);
    spw_metrics_add_u64(m, "spillway_segment_fd_cache_hits_total", "reads of a sealed segment found open",
                        SPW_METRIC_COUNTER, m_fdc_hits, api);
    spw_metrics_add_u64(m, "spillway_segment_fd_cache_misses_total", "reads that opened a sealed segment again",
                        SPW_METRIC_COUNTER, m_fdc_misses, api);
    spw_metrics_add_u64(m, "spillway_segment_fd_cache_evictions_total",
                        "sealed segments closed to stay within fd-cache-segments", SPW_METRIC_COUNTER,
                        m_fdc_evictions, api);
    spw_metrics_add_u64(m, "spillway_segment_fd_cache_open_errors_total",
                        "reopens of a sealed segment that failed (EMFILE, or deleted by retention)",
                        SPW_METRIC_COUNTER, m_fdc_errors, api);
    spw_metrics_add_u64(m, "spillway_http_send_timeouts_total",
                        "HTTP connections closed because their answers did not move for send-timeout",
                        SPW_METRIC_COUNTER, m_http_send_timeouts, api);
    spw_metrics_add_u64(m, "spillway_http_io_uring_sends_total",
                        "HTTP answers' sends submitted through io_uring, a round's at once (io-uring)",
                        SPW_METRIC_COUNTER, m_http_uring_sends, api);
    spw_metrics_add_u64(m, "spillway_http_io_uring_loops",
                        "HTTP I/O loops sending through io_uring (0: one send(2) each)", SPW_METRIC_GAUGE,
                        m_http_uring_loops, api);
    if (api->svc.auth) {
        spw_metrics_add_family(m, "spillway_auth_refused_total",
                               "requests answered 401 (no or unknown token) and 403 (not allowed), both protocols",
                               SPW_METRIC_COUNTER, m_auth_refused, api);
        spw_metrics_add_family(m, "spillway_tokens_reloads_total",
                               "SIGHUP reloads of the tokens file",
                               SPW_METRIC_COUNTER, m_auth_reloads, api);
    }
    spw_metrics_add_block(m, m_sinks, api);
}

void spw__api_handle_metrics(spw_api *api, spw_http_req *req, const spw_token *who)
{
    spw_buf b = SPW_BUF_INIT;
    spw_metrics_render(api->svc.metrics, &b, who);
    spw_http_respond(req, 200, NULL, "text/plain; version=0.0.4", b.p, b.len);
    spw_buf_fini(&b);
}
