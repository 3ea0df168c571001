/*
 * Hot keys in the produce service: see hot.h and catalog/hotkeys.h. A
 * split is decided on the thread that counted the request (a loop) and
 * recorded on an I/O worker (under the catalog's create/delete lock:
 * spw_stream_hot_record); the job holds a reference on the stream so the
 * stream outlives it.
 */
#include "svc/hot.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "catalog/hotkeys.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/workq.h"
#include "svc/metrics.h"
#include "svc/svc.h"

typedef struct hot_job {
    spw_stream *s; /* referenced */
    spw_hot_cand cand;
} hot_job;

static void record_job(void *arg)
{
    hot_job *j = arg;
    spw_stream_hot_record(j->s, &j->cand, spw_wall_ms());
    spw_stream_put(j->s);
    spw_free(j);
}

void spw__hot_observe(spw_svc *svc, spw_stream *s, const spw_record *in, uint32_t n)
{
    spw_hot_cand cand[4];
    uint32_t nc = spw_hot_count(s->hot, in, n, (int64_t)spw_mono_ms(), cand, 4);
    for (uint32_t i = 0; i < nc; i++) {
        hot_job *j = spw_xmalloc(sizeof *j);
        j->s = s;
        j->cand = cand[i];
        atomic_fetch_add(&s->refs, 1);
        if (!svc->io || spw_workq_submit(svc->io, record_job, j) != 0) {
            spw_hot_abandon(s->hot, &cand[i]);
            spw_stream_put(s);
            spw_free(j);
        }
    }
}

void spw_hot_describe(spw_stream *s, spw_buf *b)
{
    if (!s->hot)
        return;
    spw_hot_split_info sp[SPW_HOT_SPLITS];
    uint32_t n = spw_hot_splits(s->hot, sp, SPW_HOT_SPLITS);
    spw_buf_xprintf(b, ",\"hot_keys_state\":{\"split\":[");
    for (uint32_t i = 0; i < n; i++) {
        spw_buf_xprintf(b, "%s{\"key\":", i ? "," : "");
        spw_json_xput_str(b, sp[i].key, strlen(sp[i].key));
        spw_buf_xprintf(b, ",\"split\":%u,\"how\":\"%s\"", sp[i].split, sp[i].automatic ? "automatic" : "listed");
        /* sub-key j's partition, as spw_hot_route gives it */
        uint32_t P = s->cfg.partitions, home = spw_stream_partition(sp[i].key, strlen(sp[i].key), P);
        spw_buf_xprintf(b, ",\"partitions\":[");
        for (uint32_t j = 0; j < sp[i].split && j < P; j++)
            spw_buf_xprintf(b, "%s%u", j ? "," : "", (home + j) % P);
        spw_buf_xprintf(b, "]");
        if (sp[i].automatic)
            spw_buf_xprintf(b, ",\"at_ms\":%" PRId64 ",\"per_s\":%.1f", sp[i].at_ms, sp[i].per_s);
        spw_buf_xprintf(b, "}");
    }
    spw_hot_top_info top[SPW_HOT_TOP_MAX];
    n = spw_hot_top(s->hot, (int64_t)spw_mono_ms(), top, SPW_HOT_TOP_MAX);
    spw_buf_xprintf(b, "],\"top\":[");
    for (uint32_t i = 0; i < n; i++) {
        spw_buf_xprintf(b, "%s{\"key\":", i ? "," : "");
        spw_json_xput_str(b, top[i].key, strlen(top[i].key));
        spw_buf_xprintf(b, ",\"events\":%" PRIu64 ",\"per_s\":%.1f}", top[i].events, top[i].per_s);
    }
    spw_buf_xprintf(b, "],\"refused\":%" PRIu64 "}", spw_hot_refused(s->hot));
}

/* A key as a Prometheus label value: \ and " escaped (keys hold no
 * control characters, so no newline). */
static void label_key(char *out, size_t cap, const char *k)
{
    size_t o = 0;
    for (; *k && o + 3 < cap; k++) {
        if (*k == '\\' || *k == '"')
            out[o++] = '\\';
        out[o++] = *k;
    }
    out[o] = 0;
}

typedef struct hot_walk {
    spw_metrics_out *o;
    const char *name;
    int what; /* 0 top rates, 1 split count */
} hot_walk;

static void hot_one(void *arg, spw_stream *s)
{
    hot_walk *w = arg;
    if (!s->hot || !spw_metrics_sees(w->o, s->cfg.name))
        return;
    char l[SPW_STREAM_NAME_MAX + 2 * SPW_HOT_KEY_BYTES + 32];
    if (w->what == 1) {
        spw_hot_split_info sp[SPW_HOT_SPLITS];
        snprintf(l, sizeof l, "stream=\"%s\"", s->cfg.name);
        spw_metrics_line(w->o, w->name, l, spw_hot_splits(s->hot, sp, SPW_HOT_SPLITS));
        return;
    }
    spw_hot_top_info top[SPW_HOT_TOP_MAX];
    uint32_t n = spw_hot_top(s->hot, (int64_t)spw_mono_ms(), top, SPW_HOT_TOP_MAX);
    for (uint32_t i = 0; i < n; i++) {
        char k[2 * SPW_HOT_KEY_BYTES + 1];
        label_key(k, sizeof k, top[i].key);
        snprintf(l, sizeof l, "stream=\"%s\",key=\"%s\"", s->cfg.name, k);
        spw_metrics_line_f(w->o, w->name, l, top[i].per_s);
    }
}

static void m_hot_top(void *a, spw_metrics_out *o, const char *name)
{
    hot_walk w = {o, name, 0};
    spw_catalog_each(((spw_svc *)a)->cat, hot_one, &w);
}

static void m_hot_split(void *a, spw_metrics_out *o, const char *name)
{
    hot_walk w = {o, name, 1};
    spw_catalog_each(((spw_svc *)a)->cat, hot_one, &w);
}

void spw_hot_metrics_register(spw_metrics *m, spw_svc *svc)
{
    spw_metrics_add_family(m, "spillway_stream_hot_key_events_per_second",
                           "the hottest keys of a stream with hot_keys: events per second of each in the last "
                           "complete window (at most hot_keys.top keys per stream)",
                           SPW_METRIC_GAUGE, m_hot_top, svc);
    spw_metrics_add_family(m, "spillway_stream_hot_keys_split",
                           "keys of a stream with hot_keys whose records are spread over hot_keys.split partitions "
                           "(listed and automatic)",
                           SPW_METRIC_GAUGE, m_hot_split, svc);
}
