/*
 * `spillway top` internals shared by the command (top.c: scraping, the
 * view computed from two scrapes, the loop) and its output (top_render.c:
 * the plain snapshot and the terminal screen).
 */
#ifndef SPW_CLI_TOP_INT_H
#define SPW_CLI_TOP_INT_H

#include <stdint.h>
#include <stdio.h>

#include "cli/promtext.h"
#include "svc/metrics.h" /* spw_thread_roles */

/* Streams shown on a terminal at most (the rest are summed up in one line). */
#define TOP_TTY_STREAMS_MAX 200

/* One scrape. */
typedef struct scrape {
    spw_prom_set m;
    uint64_t t_ns;
    int ok;
    int has_budget;
    double max_pending;
    char version[32];
    int64_t uptime_ms;
} scrape;

/* A stream's counters and, against the previous scrape, its rates. */
typedef struct srow {
    const char *name;
    double ev, by;           /* totals */
    double d_ev, d_by;       /* deltas over the interval */
    double ev_rate, by_rate; /* NaN without a previous scrape */
    double hot_split;        /* keys split (spillway_stream_hot_keys_split); NaN: no hot_keys */
} srow;

/* One of a stream's hottest keys (spillway_stream_hot_key_events_per_second):
 * events/s in the server's last complete hot-keys window. */
typedef struct hrow {
    const char *stream, *key;
    double per_s;
} hrow;

/* Hottest keys shown on a terminal at most (the plain snapshot shows all). */
#define TOP_TTY_HOT_MAX 10

/* A sink's numbers (spillway_sink_* lines) and its delivery rate. */
typedef struct krow {
    const char *name;
    const char *state; /* NULL when the server does not export it */
    const char *phase; /* a reshard's phase (spillway_sink_reshard_phase), or NULL */
    double lag, delivered, errors, dlq;
    double rate; /* delivered/s; NaN without a previous scrape */
} krow;

/* What one frame shows, computed from two scrapes (prev may be NULL). */
typedef struct view {
    double secs; /* between the scrapes; 0 without prev */
    double ev, by, d_ev, d_by, ev_rate, by_rate;
    int has_pending;
    double pending;
    int has_level, has_high, has_low;
    double level, high, low;
    double conns_http, conns_bin;
    int has_http, has_bin;
    int has_coalesced, has_dups;
    double coalesced, coalesced_rate, dups, dups_rate;
    double fsync_p50, fsync_p99, fsyncs_rate; /* seconds; NaN when none in the interval */
    double gc_avg, gc_p99;                    /* appends per fsync round */
    double prod_p50, prod_p99;
    /* the server's CPU over the interval, in cores (process_cpu_seconds_total), and per event in; by its
     * threads' roles (spillway_thread_cpu_seconds_total) when the server has them */
    int has_cpu, has_roles;
    double cpu_cores, cpu_ns_per_event;
    double role_cores[SPW_THREAD_ROLES];
    /* ack=replicated (shown once the server has had any) */
    int has_repl;
    double repl_waiting, repl_acked, repl_rate, repl_timeouts, repl_timeouts_rate, repl_p50, repl_p99;
    double repl_rejected; /* requests answered 422 replication_rejected (a total) */
    /* Rejections by reason, in the order the server lists them. */
    size_t nrej;
    struct {
        char reason[32];
        double total, rate;
    } rej[16];
    double rej_total, rej_rate;
    srow *rows;
    size_t nrows;
    krow *sinks; /* sorted by name; none when the server has no sinks */
    size_t nsinks;
    hrow *hot; /* by stream name, then hottest first; none without hot_keys streams */
    size_t nhot;
} view;


/* top_render.c */
void spw__top_print_plain(FILE *f, const view *v, const scrape *cur, const char *server);
void spw__top_render_head(FILE *f, const view *v, const scrape *cur, const char *server, const char *interval);
void spw__top_render_sinks(FILE *f, const view *v);
void spw__top_render_hot(FILE *f, const view *v);
void spw__top_render_streams(FILE *f, const view *v, int rows);
void spw__top_draw(const char *text, size_t len, int cols, int rows); /* one screen, redrawn in place */
void spw__top_term_size(int *cols, int *rows);

#endif
