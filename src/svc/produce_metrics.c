/*
 * The produce service's metric families (svc/metrics.h), registered by
 * spw_produce_metrics_register: events and bytes in, duplicates, refusals
 * by reason, per-stream counts, the coalescer's, the pressure levels, the
 * dedupe table's and the rate limiter's. Their names and values are a
 * contract (docs/operations.md); each reads the service's counters.
 */
#include "svc/produce.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "svc/svc.h"
#include "svc/coalesce.h"
#include "svc/consume.h"
#include "svc/metrics.h"
#include "svc/hot.h"
#include "svc/produce_int.h"
#include "es/es.h"

/* ---- metrics (svc/metrics.h) ---- */

static uint64_t m_events_in(void *a) { return atomic_load(&((spw_svc *)a)->events_in); }
static uint64_t m_bytes_in(void *a) { return atomic_load(&((spw_svc *)a)->bytes_in); }
static uint64_t m_duplicates(void *a) { return atomic_load(&((spw_svc *)a)->duplicates); }

typedef struct stream_walk {
    spw_metrics_out *o;
    const char *name;
    int what; /* 0 events_in, 1 bytes_in, 2 coalesced */
} stream_walk;

static void stream_one(void *arg, spw_stream *s)
{
    stream_walk *w = arg;
    if (!spw_metrics_sees(w->o, s->cfg.name) || (w->what == 2 && !s->cfg.coalesce))
        return;
    char l[160];
    snprintf(l, sizeof l, "stream=\"%s\"", s->cfg.name);
    uint64_t v = w->what == 0   ? atomic_load(&s->events_in)
                 : w->what == 1 ? atomic_load(&s->bytes_in)
                                : spw_coalesce_stream_superseded(s);
    spw_metrics_line(w->o, w->name, l, v);
}

static void m_stream_events(void *a, spw_metrics_out *o, const char *name)
{
    stream_walk w = {o, name, 0};
    spw_catalog_each(((spw_svc *)a)->cat, stream_one, &w);
}
static void m_stream_bytes(void *a, spw_metrics_out *o, const char *name)
{
    stream_walk w = {o, name, 1};
    spw_catalog_each(((spw_svc *)a)->cat, stream_one, &w);
}
static void m_stream_coalesced(void *a, spw_metrics_out *o, const char *name)
{
    stream_walk w = {o, name, 2};
    spw_catalog_each(((spw_svc *)a)->cat, stream_one, &w);
}

static const char *const reasons[SPW_REJ__N] = {"invalid", "rate_limit", "shed", "backpressure", "disk"};

typedef struct rej_walk {
    spw_metrics_out *o;
    const char *name;
} rej_walk;

static void stream_rejected(void *arg, spw_stream *s)
{
    rej_walk *w = arg;
    if (!spw_metrics_sees(w->o, s->cfg.name))
        return;
    for (int i = 0; i < SPW_REJ__N; i++) {
        char l[200];
        snprintf(l, sizeof l, "stream=\"%s\",reason=\"%s\"", s->cfg.name, reasons[i]);
        spw_metrics_line(w->o, w->name, l, atomic_load(&s->rejected[i]));
    }
}

/* One series per stream and reason: as many as streams (bounded) × 5. */
static void m_stream_rejected(void *a, spw_metrics_out *o, const char *name)
{
    rej_walk w = {o, name};
    spw_catalog_each(((spw_svc *)a)->cat, stream_rejected, &w);
}

static void m_rejected(void *a, spw_metrics_out *o, const char *name)
{
    spw_svc *svc = a;
    for (int i = 0; i < SPW_REJ__N; i++) {
        char l[48];
        snprintf(l, sizeof l, "reason=\"%s\"", reasons[i]);
        spw_metrics_line(o, name, l, atomic_load(&svc->rejected[i]));
    }
}

static uint64_t m_coal(void *a, int i)
{
    spw_coalesce_stats cs;
    spw_coalesce_stats_get(((spw_svc *)(a))->coal, &cs);
    return i == 0 ? cs.superseded : i == 1 ? cs.buffered_events : i == 2 ? cs.buffered_bytes : cs.batches;
}
static uint64_t m_coal_superseded(void *a) { return m_coal(a, 0); }
static uint64_t m_coal_events(void *a) { return m_coal(a, 1); }
static uint64_t m_coal_bytes(void *a) { return m_coal(a, 2); }
static uint64_t m_coal_batches(void *a) { return m_coal(a, 3); }
static uint64_t m_budget(void *a) { return ((spw_svc *)(a))->pressure.budget; }
static uint64_t m_high(void *a) { return ((spw_svc *)(a))->pressure.high; }
static uint64_t m_low(void *a) { return ((spw_svc *)(a))->pressure.low; }
static uint64_t m_level(void *a) { return (uint64_t)spw_pressure_level(&((spw_svc *)(a))->pressure); }
static uint64_t m_dd(void *a, int i)
{
    spw_dd_stats ds;
    spw_dd_stats_get(((spw_svc *)(a))->dd, &ds);
    return i == 0 ? ds.entries : i == 1 ? ds.max_entries : i == 2 ? ds.evicted : ds.refused;
}
static uint64_t m_dd_keys(void *a) { return m_dd(a, 0); }
static uint64_t m_dd_max(void *a) { return m_dd(a, 1); }
static uint64_t m_dd_evicted(void *a) { return m_dd(a, 2); }
static uint64_t m_dd_refused(void *a) { return m_dd(a, 3); }
static uint64_t m_rl(void *a, int i)
{
    spw_rl_stats rs;
    spw_rl_stats_get(((spw_svc *)(a))->rl, &rs);
    return i == 0 ? rs.keys : i == 1 ? rs.max_keys : i == 2 ? rs.evicted_idle : rs.evicted_active;
}
static uint64_t m_rl_keys(void *a) { return m_rl(a, 0); }
static uint64_t m_rl_max(void *a) { return m_rl(a, 1); }
static void m_rl_evictions(void *a, spw_metrics_out *o, const char *name)
{
    spw_metrics_line(o, name, "kind=\"idle\"", m_rl(a, 2));
    spw_metrics_line(o, name, "kind=\"active\"", m_rl(a, 3));
}

static uint64_t m_conflicts(void *a) { return atomic_load(&((spw_svc *)a)->version_conflicts); }

typedef struct es_walk {
    spw_metrics_out *o;
    const char *name;
    int what; /* 0 cached keys, 1 store reads, 2 unindexed, 3 indexer passes, 4 history records,
               * 5 index entries, 6 pruned entries */
} es_walk;

static void es_one(void *arg, spw_stream *s)
{
    es_walk *w = arg;
    spw_es *es = atomic_load(&s->es);
    if (!es || !spw_metrics_sees(w->o, s->cfg.name))
        return;
    char l[160];
    snprintf(l, sizeof l, "stream=\"%s\"", s->cfg.name);
    uint64_t v = w->what == 0   ? spw_es_cached_keys(es)
                 : w->what == 1 ? spw_es_store_reads(es)
                 : w->what == 2 ? spw_es_unindexed(es)
                 : w->what == 3 ? spw_es_indexer_passes(es)
                 : w->what == 4 ? spw_es_history_records(es)
                 : w->what == 5 ? spw_es_index_entries(es)
                                : spw_es_pruned(es);
    spw_metrics_line(w->o, w->name, l, v);
}

static void m_es_cached(void *a, spw_metrics_out *o, const char *name)
{
    es_walk w = {o, name, 0};
    spw_catalog_each(((spw_svc *)a)->cat, es_one, &w);
}
static void m_es_reads(void *a, spw_metrics_out *o, const char *name)
{
    es_walk w = {o, name, 1};
    spw_catalog_each(((spw_svc *)a)->cat, es_one, &w);
}
static void m_es_unindexed(void *a, spw_metrics_out *o, const char *name)
{
    es_walk w = {o, name, 2};
    spw_catalog_each(((spw_svc *)a)->cat, es_one, &w);
}
static void m_es_passes(void *a, spw_metrics_out *o, const char *name)
{
    es_walk w = {o, name, 3};
    spw_catalog_each(((spw_svc *)a)->cat, es_one, &w);
}
static void m_es_history(void *a, spw_metrics_out *o, const char *name)
{
    es_walk w = {o, name, 4};
    spw_catalog_each(((spw_svc *)a)->cat, es_one, &w);
}
static void m_es_entries(void *a, spw_metrics_out *o, const char *name)
{
    es_walk w = {o, name, 5};
    spw_catalog_each(((spw_svc *)a)->cat, es_one, &w);
}
static void m_es_pruned(void *a, spw_metrics_out *o, const char *name)
{
    es_walk w = {o, name, 6};
    spw_catalog_each(((spw_svc *)a)->cat, es_one, &w);
}

void spw_produce_metrics_register(spw_metrics *m, spw_svc *svc)
{
    spw_metrics_add_u64(m, "spillway_version_conflicts_total",
                        "produce requests refused with 409 version_conflict (versioned streams), nothing appended",
                        SPW_METRIC_COUNTER, m_conflicts, svc);
    spw_metrics_add_family(m, "spillway_es_cached_keys",
                           "keys a versioned stream's version map holds in memory (es-cache-keys bounds the clean "
                           "ones)",
                           SPW_METRIC_GAUGE, m_es_cached, svc);
    spw_metrics_add_family(m, "spillway_es_store_reads_total",
                           "version lookups a versioned stream's map sent to its version store (keys not in memory)",
                           SPW_METRIC_COUNTER, m_es_reads, svc);
    spw_metrics_add_family(m, "spillway_es_unindexed_records",
                           "durable records of a versioned stream its version store does not index yet (the "
                           "indexer's lag)",
                           SPW_METRIC_GAUGE, m_es_unindexed, svc);
    spw_metrics_add_family(m, "spillway_es_indexer_passes_total",
                           "passes of a versioned stream's indexer over its partitions (woken by durable appends, "
                           "not by a timer)",
                           SPW_METRIC_COUNTER, m_es_passes, svc);
    spw_metrics_add_family(m, "spillway_es_history_records_read_total",
                           "records history reads of a versioned stream decoded from the log (an aggregate's read "
                           "decodes its own records through the index)",
                           SPW_METRIC_COUNTER, m_es_history, svc);
    spw_metrics_add_family(m, "spillway_es_index_entries",
                           "a versioned stream's index entries (key, version -> offset) in its version store: one "
                           "per indexed record retention kept, until pruning reaches deleted ones",
                           SPW_METRIC_GAUGE, m_es_entries, svc);
    spw_metrics_add_family(m, "spillway_es_index_pruned_total",
                           "index entries of records retention deleted that a versioned stream's indexer deleted "
                           "from its version store (since start)",
                           SPW_METRIC_COUNTER, m_es_pruned, svc);
    spw_metrics_add_u64(m, "spillway_events_in_total",
                        "events acknowledged and written, all streams (events superseded by coalescing are not "
                        "counted)",
                        SPW_METRIC_COUNTER, m_events_in, svc);
    spw_metrics_add_u64(m, "spillway_bytes_in_total",
                        "event bytes acknowledged and written, all streams",
                        SPW_METRIC_COUNTER, m_bytes_in, svc);
    spw_metrics_add_family(m, "spillway_stream_events_in_total",
                           "events acknowledged and written per stream (since start)",
                           SPW_METRIC_COUNTER, m_stream_events, svc);
    spw_metrics_add_family(m, "spillway_stream_bytes_in_total",
                           "event bytes acknowledged and written per stream",
                           SPW_METRIC_COUNTER, m_stream_bytes, svc);
    spw_metrics_add_family(m, "spillway_stream_coalesced_total",
                           "events of a coalesce stream superseded by a newer event of their key before they were "
                           "written",
                           SPW_METRIC_COUNTER, m_stream_coalesced, svc);
    spw_metrics_add_family(m, "spillway_rejected_total",
                           "produce requests refused, by reason (invalid, rate_limit, shed, backpressure, disk), HTTP "
                           "and binary together",
                           SPW_METRIC_COUNTER, m_rejected, svc);
    spw_metrics_add_family(m, "spillway_stream_rejected_total",
                           "produce requests refused per stream and reason (those naming an existing stream; "
                           "spillway_rejected_total counts every one)",
                           SPW_METRIC_COUNTER, m_stream_rejected, svc);
    if (svc->dd)
        spw_metrics_add_u64(m, "spillway_duplicates_total",
                            "produce requests answered from the dedupe table (a retried Idempotency-Key or producer "
                            "sequence), nothing appended",
                            SPW_METRIC_COUNTER, m_duplicates, svc);
    spw_metrics_add_hist(m, "spillway_produce_seconds", "produce request complete to answered",
                         &svc->produce_latency, 1e6);
    /* Its steps' state: coalescing, admission, the dedupe table, rate limits. */
    if (svc->coal) {
        spw_metrics_add_u64(m, "spillway_coalesced_total",
                            "events of coalesce streams replaced by a newer event for their key before they were "
                            "written",
                            SPW_METRIC_COUNTER, m_coal_superseded, svc);
        spw_metrics_add_u64(m, "spillway_coalesce_buffered_events",
                            "events waiting in coalescing buffers now",
                            SPW_METRIC_GAUGE, m_coal_events, svc);
        spw_metrics_add_u64(m, "spillway_coalesce_buffered_bytes",
                            "the pending budget those events hold",
                            SPW_METRIC_GAUGE, m_coal_bytes, svc);
        spw_metrics_add_u64(m, "spillway_coalesce_batches_total",
                            "batches the coalescer handed to the log",
                            SPW_METRIC_COUNTER, m_coal_batches, svc);
    }
    spw_metrics_add_u64(m, "spillway_pending_budget_bytes", "max-pending-bytes", SPW_METRIC_GAUGE, m_budget, svc);
    spw_metrics_add_u64(m, "spillway_pending_high_watermark_bytes",
                        "the high watermark (pending-high-watermark) in bytes",
                        SPW_METRIC_GAUGE, m_high, svc);
    spw_metrics_add_u64(m, "spillway_pending_low_watermark_bytes",
                        "the low watermark (pending-low-watermark) in bytes",
                        SPW_METRIC_GAUGE, m_low, svc);
    spw_metrics_add_u64(m, "spillway_pressure_level",
                        "0 normal, 1 shedding priority 3, 2 shedding 2-3, 3 above the high watermark (all but "
                        "priority 0 refused)",
                        SPW_METRIC_GAUGE, m_level, svc);
    if (svc->dd) {
        spw_metrics_add_u64(m, "spillway_dedupe_keys",
                            "idempotency keys and producer sequences remembered now",
                            SPW_METRIC_GAUGE, m_dd_keys, svc);
        spw_metrics_add_u64(m, "spillway_dedupe_max_keys",
                            "their bound (dedupe-max-keys)",
                            SPW_METRIC_GAUGE, m_dd_max, svc);
        spw_metrics_add_u64(m, "spillway_dedupe_evicted_total", "keys forgotten after their window passed",
                            SPW_METRIC_COUNTER, m_dd_evicted, svc);
        spw_metrics_add_u64(m, "spillway_dedupe_refused_total",
                            "keyed produce requests refused (503 dedupe_full) because the table was full of keys "
                            "inside their windows",
                            SPW_METRIC_COUNTER, m_dd_refused, svc);
    }
    if (svc->rl) {
        spw_metrics_add_u64(m, "spillway_ratelimit_keys",
                            "entries in the rate-limiter table",
                            SPW_METRIC_GAUGE, m_rl_keys, svc);
        spw_metrics_add_u64(m, "spillway_ratelimit_max_keys",
                            "its bound (rate-limit-max-keys, rounded down to a multiple of the stripes)",
                            SPW_METRIC_GAUGE, m_rl_max, svc);
        spw_metrics_add_family(m, "spillway_ratelimit_evictions_total",
                               "entries evicted to stay within the bound: idle ones were full buckets / empty windows "
                               "(harmless), active ones forgot a client's usage",
                               SPW_METRIC_COUNTER, m_rl_evictions,
                               svc);
    }
    spw_hot_metrics_register(m, svc);
}
