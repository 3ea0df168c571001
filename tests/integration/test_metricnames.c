/*
 * The names and types of /metrics (docs/operations.md "Metrics") are a
 * contract dashboards and alerts are built on: this list is the one the
 * server shows with no tokens file and no sinks, after one produce. A
 * family added, renamed, retyped or lost — each module registers its own
 * (svc/metrics.h) — fails here until the list and the docs say so.
 */
#include "server.h"

static const char *const WANT[] = {
    "process_cpu_seconds_total counter",
    "process_max_fds gauge",
    "process_open_fds gauge",
    "process_resident_memory_bytes gauge",
    "process_start_time_seconds gauge",
    "process_virtual_memory_bytes gauge",
    "spillway_bin_accept_fd_errors_total counter",
    "spillway_bin_connections gauge",
    "spillway_bin_io_uring_loops gauge",
    "spillway_bin_io_uring_sends_total counter",
    "spillway_bin_refused_total counter",
    "spillway_bin_requests_total counter",
    "spillway_bin_send_timeouts_total counter",
    "spillway_buffer_bytes gauge",
    "spillway_buffer_peak_bytes gauge",
    "spillway_buffer_waits_total counter",
    "spillway_build_info gauge",
    "spillway_bytes_in_total counter",
    "spillway_coalesce_batches_total counter",
    "spillway_coalesce_buffered_bytes gauge",
    "spillway_coalesce_buffered_events gauge",
    "spillway_coalesced_total counter",
    "spillway_connection_fds_max gauge",
    "spillway_dedupe_evicted_total counter",
    "spillway_dedupe_keys gauge",
    "spillway_dedupe_max_keys gauge",
    "spillway_dedupe_refused_total counter",
    "spillway_disk_bytes gauge",
    "spillway_duplicates_total counter",
    "spillway_es_cached_keys gauge",
    "spillway_es_history_records_read_total counter",
    "spillway_es_index_entries gauge",
    "spillway_es_index_pruned_total counter",
    "spillway_es_indexer_passes_total counter",
    "spillway_es_store_reads_total counter",
    "spillway_es_unindexed_records gauge",
    "spillway_events_in_total counter",
    "spillway_group_committed_offset gauge",
    "spillway_group_damaged_skipped_total counter",
    "spillway_group_lag gauge",
    "spillway_http_accept_fd_errors_total counter",
    "spillway_http_connections gauge",
    "spillway_http_io_uring_loops gauge",
    "spillway_http_io_uring_sends_total counter",
    "spillway_http_refused_total counter",
    "spillway_http_requests_total counter",
    "spillway_http_send_timeouts_total counter",
    "spillway_log_flush_cycles_total counter",
    "spillway_log_fsync_acks_total counter",
    "spillway_log_fsync_seconds histogram",
    "spillway_log_fsyncs_total counter",
    "spillway_log_group_commit_appends histogram",
    "spillway_log_written_bytes_total counter",
    "spillway_max_buffer_bytes gauge",
    "spillway_max_disk_bytes gauge",
    "spillway_max_unsent_bytes gauge",
    "spillway_partition_bytes gauge",
    "spillway_partition_end_offset gauge",
    "spillway_partition_recoveries_total counter",
    "spillway_partition_retention_held_bytes gauge",
    "spillway_partitions_failed gauge",
    "spillway_pending_budget_bytes gauge",
    "spillway_pending_bytes gauge",
    "spillway_pending_high_watermark_bytes gauge",
    "spillway_pending_low_watermark_bytes gauge",
    "spillway_positions_clamped_total counter",
    "spillway_pressure_level gauge",
    "spillway_produce_seconds histogram",
    "spillway_ratelimit_evictions_total counter",
    "spillway_ratelimit_keys gauge",
    "spillway_ratelimit_max_keys gauge",
    "spillway_rejected_total counter",
    "spillway_replicated_acked_total counter",
    "spillway_replicated_rejected_total counter",
    "spillway_replicated_timeouts_total counter",
    "spillway_replicated_unavailable_total counter",
    "spillway_replicated_wait_seconds histogram",
    "spillway_replicated_waiting gauge",
    "spillway_segment_fd_cache_capacity gauge",
    "spillway_segment_fd_cache_evictions_total counter",
    "spillway_segment_fd_cache_hits_total counter",
    "spillway_segment_fd_cache_misses_total counter",
    "spillway_segment_fd_cache_open gauge",
    "spillway_segment_fd_cache_open_errors_total counter",
    "spillway_stream_bytes_in_total counter",
    "spillway_stream_coalesced_total counter",
    "spillway_stream_events_in_total counter",
    "spillway_stream_hot_key_events_per_second gauge",
    "spillway_stream_hot_keys_split gauge",
    "spillway_stream_rejected_total counter",
    "spillway_thread_cpu_seconds_total counter",
    "spillway_unsent_bytes gauge",
    "spillway_unsent_peak_bytes gauge",
    "spillway_version_conflicts_total counter",
    "spillway_view_reads_uncached_total counter",
};
#define NWANT (sizeof WANT / sizeof WANT[0])

typedef struct fam {
    char name[128];
    char type[16];
} fam;

static fam got[256];
static int ngot;

static fam *find(const char *name, size_t n)
{
    for (int i = 0; i < ngot; i++)
        if (strlen(got[i].name) == n && strncmp(got[i].name, name, n) == 0)
            return &got[i];
    CHECK(ngot < 256);
    fam *f = &got[ngot++];
    CHECK(n < sizeof f->name);
    memcpy(f->name, name, n);
    f->name[n] = 0;
    strcpy(f->type, "untyped");
    return f;
}

/* The histogram family a sample line belongs to, if any. */
static size_t family_len(const char *name, size_t n)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t sl = strlen(sfx[i]);
        if (n > sl && strncmp(name + n - sl, sfx[i], sl) == 0) {
            for (int j = 0; j < ngot; j++)
                if (strlen(got[j].name) == n - sl && strncmp(got[j].name, name, n - sl) == 0 &&
                    strcmp(got[j].type, "histogram") == 0)
                    return n - sl;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("metricnames");
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, argv[1], data, NULL);
    put_stream(a.port, "s", "{\"partitions\":2,\"key\":\"/k\"}");
    resp r = http_json(a.port, "POST", "/v1/streams/s/events", "{\"k\":\"a\"}");
    CHECK_EQ(r.status, 202);
    free(r.body);
    r = http_json(a.port, "GET", "/metrics", NULL);
    CHECK_EQ(r.status, 200);
    for (char *line = r.body, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        if (ll == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            const char *n = line + 7;
            size_t k = strcspn(n, " \n");
            fam *f = find(n, k);
            const char *t = n + k + 1;
            size_t tl = strcspn(t, "\n");
            CHECK(tl < sizeof f->type);
            memcpy(f->type, t, tl);
            f->type[tl] = 0;
            continue;
        }
        if (line[0] == '#')
            continue;
        size_t k = strcspn(line, "{ \n");
        find(line, family_len(line, k));
    }
    free(r.body);
    int bad = 0;
    for (int i = 0; i < ngot; i++) {
        char have[160];
        snprintf(have, sizeof have, "%s %s", got[i].name, got[i].type);
        int known = 0;
        for (size_t j = 0; j < NWANT; j++)
            known |= strcmp(WANT[j], have) == 0;
        if (!known) {
            fprintf(stderr, "/metrics shows '%s', which the list does not have\n", have);
            bad = 1;
        }
    }
    for (size_t j = 0; j < NWANT; j++) {
        int seen = 0;
        for (int i = 0; i < ngot; i++) {
            char have[160];
            snprintf(have, sizeof have, "%s %s", got[i].name, got[i].type);
            seen |= strcmp(WANT[j], have) == 0;
        }
        if (!seen) {
            fprintf(stderr, "/metrics lacks '%s'\n", WANT[j]);
            bad = 1;
        }
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_metricnames: ok\n");
    return 0;
}
