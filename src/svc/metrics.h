/*
 * The metrics registry: what GET /metrics shows (docs/operations.md
 * "Metrics"), as families each module registers once — a name, a help
 * sentence (or none), a type (counter, gauge, histogram) and how to read
 * it. /metrics renders every family in registration order: its # HELP
 * and # TYPE lines, then its samples, in Prometheus text format 0.0.4.
 * A module owns its families' names and values; the front end that
 * serves /metrics (http/api_ops.c) knows none of them, so a new module
 * adds metrics without touching it, and no front end includes another
 * module's header for its counters.
 *
 * Kinds of family:
 *   - one value (spw_metrics_add_u64): a getter returning it;
 *   - labelled samples (spw_metrics_add_family): a callback writing one
 *     line per label set with spw_metrics_line; per-stream samples are
 *     shown only for streams the viewer may see (spw_metrics_sees, from
 *     the filter the server sets: tokens, svc/auth.h);
 *   - a histogram (spw_metrics_add_hist) over a core/hist.h spw_hist,
 *     shown in seconds (scale 1e6 for µs recorded) or plain (scale 1);
 *   - a block (spw_metrics_add_block): a module that writes several
 *     families of its own, with their # TYPE lines (consumer groups,
 *     sinks).
 *
 * Threads: registering and rendering take the registry's mutex, so a
 * module may register while /metrics is being served (a listener that
 * starts later). Getters and callbacks run under it, on the rendering
 * thread: they read atomics or take their module's own locks briefly.
 * Registration copies nothing: names and help are string literals.
 */
#ifndef SPW_SVC_METRICS_H
#define SPW_SVC_METRICS_H

#include <stdint.h>

#include "core/buf.h"
#include "core/hist.h"

typedef enum { SPW_METRIC_COUNTER, SPW_METRIC_GAUGE, SPW_METRIC_HISTOGRAM } spw_metric_type;

typedef struct spw_metrics spw_metrics;

/* One rendering: the output and who is looking (a token, or NULL). */
typedef struct spw_metrics_out {
    spw_buf *b;
    const void *who;
    const spw_metrics *m;
} spw_metrics_out;

typedef uint64_t (*spw_metric_get)(void *ctx);
typedef void (*spw_metric_samples)(void *ctx, spw_metrics_out *o, const char *name);
typedef void (*spw_metric_block)(void *ctx, spw_metrics_out *o);

spw_metrics *spw_metrics_new(void);
void spw_metrics_free(spw_metrics *m);

/* Who may see a stream's samples: filter(who, name) != 0. Without a
 * filter, everyone sees every stream. */
void spw_metrics_set_filter(spw_metrics *m, int (*filter)(const void *who, const char *stream));
int spw_metrics_sees(const spw_metrics_out *o, const char *stream);

/* Every family has a help sentence and a type (an invariant: promtool
 * check metrics is clean, tests/package/test_metrics.sh). The registry
 * keeps the pointers. */
void spw_metrics_add_u64(spw_metrics *m, const char *name, const char *help, spw_metric_type t, spw_metric_get get,
                         void *ctx);
void spw_metrics_add_family(spw_metrics *m, const char *name, const char *help, spw_metric_type t,
                            spw_metric_samples samples, void *ctx);
void spw_metrics_add_hist(spw_metrics *m, const char *name, const char *help, spw_hist *h, double scale);
void spw_metrics_add_block(spw_metrics *m, spw_metric_block block, void *ctx);

/* A sample line: name{labels} value (labels "" or NULL: none). */
void spw_metrics_line(spw_metrics_out *o, const char *name, const char *labels, uint64_t v);
/* The same with a value that is not a whole number (seconds). */
void spw_metrics_line_f(spw_metrics_out *o, const char *name, const char *labels, double v);

/* The families every exporter has: spillway_build_info{version,commit}
 * and the process_* families of Prometheus's client libraries (CPU
 * seconds, resident and virtual memory, open and maximum fds, start
 * time), read from /proc/self at each scrape. */
void spw_metrics_register_process(spw_metrics *m);
/* The roles of spillway_thread_cpu_seconds_total, in the order /metrics lists them (spillway top reads them). */
#define SPW_THREAD_ROLES 9
extern const char *const spw_thread_roles[SPW_THREAD_ROLES];

/* Appends every family to b (who: the viewer, for spw_metrics_sees). */
void spw_metrics_render(spw_metrics *m, spw_buf *b, const void *who);

#endif
