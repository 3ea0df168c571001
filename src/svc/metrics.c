/*
 * The metrics registry: see metrics.h. A growing array of families under
 * one mutex; rendering walks it in order.
 */
#include "svc/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/invariant.h"
#include "core/alloc.h"
#include "core/error.h"

enum { KIND_U64, KIND_FAMILY, KIND_HIST, KIND_BLOCK };

typedef struct family {
    int kind;
    const char *name, *help;
    spw_metric_type type;
    spw_metric_get get;
    spw_metric_samples samples;
    spw_metric_block block;
    spw_hist *hist;
    double scale;
    void *ctx;
} family;

struct spw_metrics {
    pthread_mutex_t mu;
    family *f;
    uint32_t n, cap;
    int (*filter)(const void *who, const char *stream);
};

spw_metrics *spw_metrics_new(void)
{
    spw_metrics *m = spw_xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void spw_metrics_free(spw_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    spw_free(m->f);
    spw_free(m);
}

void spw_metrics_set_filter(spw_metrics *m, int (*filter)(const void *who, const char *stream))
{
    pthread_mutex_lock(&m->mu);
    m->filter = filter;
    pthread_mutex_unlock(&m->mu);
}

int spw_metrics_sees(const spw_metrics_out *o, const char *stream)
{
    return !o->m->filter || o->m->filter(o->who, stream);
}

static void add(spw_metrics *m, const family *f)
{
    /* every family says what it is: # HELP and # TYPE (promtool clean) */
    SPW_ASSERT(f->kind == KIND_BLOCK || (f->help && f->help[0]));
    pthread_mutex_lock(&m->mu);
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 32;
        m->f = spw_xrealloc(m->f, m->cap * sizeof *m->f);
    }
    m->f[m->n++] = *f;
    pthread_mutex_unlock(&m->mu);
}

void spw_metrics_add_u64(spw_metrics *m, const char *name, const char *help, spw_metric_type t, spw_metric_get get,
                         void *ctx)
{
    add(m, &(family){.kind = KIND_U64, .name = name, .help = help, .type = t, .get = get, .ctx = ctx});
}

void spw_metrics_add_family(spw_metrics *m, const char *name, const char *help, spw_metric_type t,
                            spw_metric_samples samples, void *ctx)
{
    add(m, &(family){.kind = KIND_FAMILY, .name = name, .help = help, .type = t, .samples = samples, .ctx = ctx});
}

void spw_metrics_add_hist(spw_metrics *m, const char *name, const char *help, spw_hist *h, double scale)
{
    add(m, &(family){.kind = KIND_HIST, .name = name, .help = help, .type = SPW_METRIC_HISTOGRAM, .hist = h,
                     .scale = scale});
}

void spw_metrics_add_block(spw_metrics *m, spw_metric_block block, void *ctx)
{
    add(m, &(family){.kind = KIND_BLOCK, .block = block, .ctx = ctx});
}

void spw_metrics_line(spw_metrics_out *o, const char *name, const char *labels, uint64_t v)
{
    if (labels && labels[0])
        spw_buf_xprintf(o->b, "%s{%s} %" PRIu64 "\n", name, labels, v);
    else
        spw_buf_xprintf(o->b, "%s %" PRIu64 "\n", name, v);
}

void spw_metrics_line_f(spw_metrics_out *o, const char *name, const char *labels, double v)
{
    if (labels && labels[0])
        spw_buf_xprintf(o->b, "%s{%s} %.17g\n", name, labels, v);
    else
        spw_buf_xprintf(o->b, "%s %.17g\n", name, v);
}

static const char *type_name(spw_metric_type t)
{
    return t == SPW_METRIC_COUNTER ? "counter" : t == SPW_METRIC_GAUGE ? "gauge" : "histogram";
}

/* scale: 1e6 for µs recorded and seconds shown; 1 for plain counts. */
static void hist_out(spw_buf *b, const char *name, spw_hist *h, double scale)
{
    uint64_t cum = 0;
    for (int i = 0; i < SPW_HIST_BUCKETS - 1; i++) {
        cum += atomic_load(&h->b[i]);
        spw_buf_xprintf(b, "%s_bucket{le=\"%.6g\"} %" PRIu64 "\n", name, (double)spw_hist_le(i) / scale, cum);
    }
    cum += atomic_load(&h->b[SPW_HIST_BUCKETS - 1]);
    spw_buf_xprintf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name, cum, name,
         (double)atomic_load(&h->sum_us) / scale, name, atomic_load(&h->count));
}

void spw_metrics_render(spw_metrics *m, spw_buf *b, const void *who)
{
    spw_metrics_out o = {.b = b, .who = who, .m = m};
    pthread_mutex_lock(&m->mu);
    for (uint32_t i = 0; i < m->n; i++) {
        family *f = &m->f[i];
        if (f->kind == KIND_BLOCK) {
            f->block(f->ctx, &o);
            continue;
        }
        spw_buf_xprintf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_name(f->type));
        if (f->kind == KIND_U64)
            spw_metrics_line(&o, f->name, NULL, f->get(f->ctx));
        else if (f->kind == KIND_FAMILY)
            f->samples(f->ctx, &o, f->name);
        else
            hist_out(b, f->name, f->hist, f->scale);
    }
    pthread_mutex_unlock(&m->mu);
}
