/*
 * `spillway top` output: a view (top_int.h, computed by top.c from two
 * scrapes) as one plain snapshot of `top key=value ...`, `stream ...` and
 * `sink ...` lines for scripts (docs/operations.md lists the keys), or as
 * a terminal screen redrawn in place with ANSI sequences, numbers in human
 * units. Nothing here scrapes or computes rates.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cmds.h"
#include "cli/promtext.h"
#include "cli/top_int.h"
#include "core/config.h"
#include "core/id.h"

static const char *level_word(double l)
{
    switch (l >= 0 && l <= 4 ? (int)l : -1) {
    case 0: return "normal";
    case 1: return "shed_p3";
    case 2: return "shed_p2_p3";
    case 3: return "high_watermark";
    case 4: return "hard_limit";
    default: return "unknown";
    }
}

static const char *level_text(double l)
{
    switch (l >= 0 && l <= 4 ? (int)l : -1) {
    case 0: return "normal";
    case 1: return "shedding priority 3";
    case 2: return "shedding priorities 2-3";
    case 3: return "high watermark: shedding all but priority 0";
    case 4: return "hard limit: refusing everything";
    default: return "unknown level";
    }
}

/* A label value from the server, made safe to print (no control bytes, no spaces in plain mode). */
static void safe_name(const char *s, char *out, size_t cap, int plain)
{
    size_t n = 0;
    for (; *s && n + 1 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        out[n++] = c < 0x20 || c == 0x7f || (plain && (c == ' ' || c == '=')) ? '?' : (char)c;
    }
    out[n] = 0;
}

/* ---- plain snapshot ---- */

static void kv_num(FILE *f, const char *key, double v, int decimals)
{
    if (!isnan(v))
        fprintf(f, " %s=%.*f", key, decimals, v);
}

void spw__top_print_plain(FILE *f, const view *v, const scrape *cur, const char *server)
{
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, "top time=%s server=%s interval_s=%.3f", ts, server, v->secs);
    kv_num(f, "events_per_s", v->ev_rate, 1);
    kv_num(f, "bytes_per_s", v->by_rate, 1);
    kv_num(f, "events", v->d_ev, 0);
    kv_num(f, "bytes", v->d_by, 0);
    kv_num(f, "events_total", v->ev, 0);
    kv_num(f, "bytes_total", v->by, 0);
    if (v->has_pending)
        kv_num(f, "pending_bytes", v->pending, 0);
    if (cur->has_budget) {
        kv_num(f, "max_pending_bytes", cur->max_pending, 0);
        if (v->has_pending && cur->max_pending > 0)
            kv_num(f, "pending_ratio", v->pending / cur->max_pending, 4);
    }
    if (v->has_high)
        kv_num(f, "high_watermark_bytes", v->high, 0);
    if (v->has_low)
        kv_num(f, "low_watermark_bytes", v->low, 0);
    if (v->has_level)
        fprintf(f, " pressure_level=%.0f pressure=%s", v->level, level_word(v->level));
    if (v->has_http || v->has_bin)
        kv_num(f, "connections", v->conns_http + v->conns_bin, 0);
    if (v->has_http)
        kv_num(f, "http_connections", v->conns_http, 0);
    if (v->has_bin)
        kv_num(f, "bin_connections", v->conns_bin, 0);
    kv_num(f, "rejected_per_s", v->nrej ? v->rej_rate : NAN, 1);
    for (size_t i = 0; i < v->nrej; i++) {
        char k[64], name[32];
        safe_name(v->rej[i].reason, name, sizeof name, 1);
        snprintf(k, sizeof k, "rejected_per_s_%s", name);
        kv_num(f, k, v->rej[i].rate, 1);
        snprintf(k, sizeof k, "rejected_total_%s", name);
        kv_num(f, k, v->rej[i].total, 0);
    }
    if (v->has_coalesced) {
        kv_num(f, "coalesced_per_s", v->coalesced_rate, 1);
        kv_num(f, "coalesced_total", v->coalesced, 0);
    }
    if (v->has_dups) {
        kv_num(f, "duplicates_per_s", v->dups_rate, 1);
        kv_num(f, "duplicates_total", v->dups, 0);
    }
    kv_num(f, "fsyncs_per_s", v->fsyncs_rate, 1);
    kv_num(f, "fsync_p50_ms", v->fsync_p50 * 1e3, 3);
    kv_num(f, "fsync_p99_ms", v->fsync_p99 * 1e3, 3);
    kv_num(f, "group_commit_avg", v->gc_avg, 2);
    kv_num(f, "group_commit_p99", v->gc_p99, 1);
    kv_num(f, "produce_p50_ms", v->prod_p50 * 1e3, 3);
    kv_num(f, "produce_p99_ms", v->prod_p99 * 1e3, 3);
    if (v->has_cpu) {
        kv_num(f, "cpu_cores", v->cpu_cores, 3);
        kv_num(f, "cpu_ns_per_event", v->cpu_ns_per_event, 0);
    }
    for (int r = 0; v->has_roles && r < SPW_THREAD_ROLES; r++) {
        char k[64];
        snprintf(k, sizeof k, "cpu_cores_%s", spw_thread_roles[r]);
        kv_num(f, k, v->role_cores[r], 3);
    }
    if (v->has_repl) {
        kv_num(f, "replicated_waiting", v->repl_waiting, 0);
        kv_num(f, "replicated_per_s", v->repl_rate, 1);
        kv_num(f, "replicated_total", v->repl_acked, 0);
        kv_num(f, "replication_timeouts_per_s", v->repl_timeouts_rate, 1);
        kv_num(f, "replication_timeouts_total", v->repl_timeouts, 0);
        kv_num(f, "replication_rejected_total", v->repl_rejected, 0);
        kv_num(f, "replication_wait_p50_ms", v->repl_p50 * 1e3, 3);
        kv_num(f, "replication_wait_p99_ms", v->repl_p99 * 1e3, 3);
    }
    fputc('\n', f);
    for (size_t i = 0; i < v->nrows; i++) {
        const srow *r = &v->rows[i];
        char name[260];
        safe_name(r->name, name, sizeof name, 1);
        fprintf(f, "stream name=%s", name);
        kv_num(f, "events_per_s", r->ev_rate, 1);
        kv_num(f, "bytes_per_s", r->by_rate, 1);
        kv_num(f, "events", r->d_ev, 0);
        kv_num(f, "bytes", r->d_by, 0);
        kv_num(f, "events_total", r->ev, 0);
        kv_num(f, "bytes_total", r->by, 0);
        kv_num(f, "hot_keys_split", r->hot_split, 0);
        fputc('\n', f);
    }
    for (size_t i = 0; i < v->nhot; i++) {
        const hrow *h = &v->hot[i];
        char name[260], key[260];
        safe_name(h->stream, name, sizeof name, 1);
        safe_name(h->key, key, sizeof key, 1);
        fprintf(f, "hot stream=%s key=%s", name, key);
        kv_num(f, "events_per_s", h->per_s, 1);
        fputc('\n', f);
    }
    for (size_t i = 0; i < v->nsinks; i++) {
        const krow *r = &v->sinks[i];
        char name[260];
        safe_name(r->name, name, sizeof name, 1);
        fprintf(f, "sink name=%s", name);
        if (r->state) {
            char st[40];
            safe_name(r->state, st, sizeof st, 1);
            fprintf(f, " state=%s", st);
        }
        if (r->phase) {
            char ph[40];
            safe_name(r->phase, ph, sizeof ph, 1);
            fprintf(f, " reshard=%s", ph);
        }
        kv_num(f, "lag", r->lag, 0);
        kv_num(f, "delivered_per_s", r->rate, 1);
        kv_num(f, "delivered_total", r->delivered, 0);
        kv_num(f, "errors_total", r->errors, 0);
        kv_num(f, "dlq_total", r->dlq, 0);
        fputc('\n', f);
    }
    fputc('\n', f);
    fflush(f);
}

/* ---- terminal ---- */

static const char *human_bytes(double b, char *out, size_t cap)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (fabs(b) >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
    return out;
}

static const char *human_num(double x, char *out, size_t cap)
{
    if (isnan(x))
        snprintf(out, cap, "-");
    else if (fabs(x) >= 1e9)
        snprintf(out, cap, "%.2fG", x / 1e9);
    else if (fabs(x) >= 1e6)
        snprintf(out, cap, "%.2fM", x / 1e6);
    else if (fabs(x) >= 1e4)
        snprintf(out, cap, "%.1fk", x / 1e3);
    else if (x == floor(x))
        snprintf(out, cap, "%.0f", x);
    else
        snprintf(out, cap, "%.1f", x);
    return out;
}

static const char *human_secs(double s, char *out, size_t cap)
{
    if (isnan(s))
        snprintf(out, cap, "-");
    else if (s < 1e-3)
        snprintf(out, cap, "%.0f us", s * 1e6);
    else if (s < 1)
        snprintf(out, cap, "%.2f ms", s * 1e3);
    else
        snprintf(out, cap, "%.2f s", s);
    return out;
}

void spw__top_render_head(FILE *f, const view *v, const scrape *cur, const char *server, const char *interval)
{
    char a[32], b[32], c[32], d[32];
    char ts[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    fprintf(f, "spillway top - %s - every %s - %s", server, interval, ts);
    if (cur->version[0])
        fprintf(f, " - server %s, up %" PRId64 "s", cur->version, cur->uptime_ms / 1000);
    fputc('\n', f);
    fputc('\n', f);
    fprintf(f, "in           %s events/s  %s/s   total %s events, %s\n", human_num(v->ev_rate, a, sizeof a),
            isnan(v->by_rate) ? "-" : human_bytes(v->by_rate, b, sizeof b), human_num(v->ev, c, sizeof c),
            human_bytes(v->by, d, sizeof d));
    if (v->has_pending) {
        fprintf(f, "pending      %s", human_bytes(v->pending, a, sizeof a));
        if (cur->has_budget && cur->max_pending > 0)
            fprintf(f, " of %s (%.1f%%)", human_bytes(cur->max_pending, b, sizeof b),
                    100 * v->pending / cur->max_pending);
        if (v->has_low)
            fprintf(f, "   low watermark %s", human_bytes(v->low, a, sizeof a));
        if (v->has_high)
            fprintf(f, "   high watermark %s", human_bytes(v->high, a, sizeof a));
        fputc('\n', f);
    }
    if (v->has_level)
        fprintf(f, "pressure     %s (level %.0f)\n", level_text(v->level), v->level);
    if (v->nrej) {
        fprintf(f, "rejected/s  ");
        for (size_t i = 0; i < v->nrej; i++) {
            char name[32];
            safe_name(v->rej[i].reason, name, sizeof name, 0);
            fprintf(f, " %s %s", name, human_num(v->rej[i].rate, a, sizeof a));
        }
        fprintf(f, "   (total %s)\n", human_num(v->rej_total, a, sizeof a));
    }
    if (v->has_coalesced || v->has_dups) {
        fprintf(f, "dropped/s   ");
        if (v->has_coalesced)
            fprintf(f, " coalesced %s", human_num(v->coalesced_rate, a, sizeof a));
        if (v->has_dups)
            fprintf(f, " duplicates %s", human_num(v->dups_rate, a, sizeof a));
        fputc('\n', f);
    }
    if (v->has_http || v->has_bin) {
        fprintf(f, "connections  %.0f", v->conns_http + v->conns_bin);
        if (v->has_bin)
            fprintf(f, " (http %.0f, binary %.0f)", v->conns_http, v->conns_bin);
        fputc('\n', f);
    }
    fprintf(f, "fsync        p50 %s  p99 %s  %s fsyncs/s\n", human_secs(v->fsync_p50, a, sizeof a),
            human_secs(v->fsync_p99, b, sizeof b), human_num(v->fsyncs_rate, c, sizeof c));
    fprintf(f, "group commit avg %s  p99 %s appends per fsync\n", isnan(v->gc_avg) ? "-" : human_num(v->gc_avg, a, sizeof a),
            human_num(v->gc_p99, b, sizeof b));
    fprintf(f, "produce      p50 %s  p99 %s\n", human_secs(v->prod_p50, a, sizeof a),
            human_secs(v->prod_p99, b, sizeof b));
    if (v->has_cpu && !isnan(v->cpu_cores)) {
        fprintf(f, "cpu          %.2f cores", v->cpu_cores);
        if (!isnan(v->cpu_ns_per_event))
            fprintf(f, "  %s ns/event", human_num(v->cpu_ns_per_event, a, sizeof a));
        /* the roles that used a hundredth of a core or more, as the server lists them */
        const char *sep = "  (";
        for (int r = 0; v->has_roles && r < SPW_THREAD_ROLES; r++)
            if (v->role_cores[r] >= 0.005) {
                fprintf(f, "%s%s %.2f", sep, spw_thread_roles[r], v->role_cores[r]);
                sep = ", ";
            }
        fputs(*sep == ',' ? ")\n" : "\n", f);
    }
    if (v->has_repl)
        fprintf(f, "replicated   %s/s  waiting %.0f  timeouts %.0f  rejected %.0f  wait p50 %s  p99 %s\n",
                human_num(v->repl_rate, c, sizeof c), v->repl_waiting, v->repl_timeouts, v->repl_rejected,
                human_secs(v->repl_p50, a, sizeof a), human_secs(v->repl_p99, b, sizeof b));
    fputc('\n', f);
}

/* The sink table (nothing when the server has no sinks), every sink, by name. */
void spw__top_render_sinks(FILE *f, const view *v)
{
    if (!v->nsinks)
        return;
    char a[32], b[32], c[32], d[32];
    fprintf(f, "%-32s %-10s %12s %12s %10s %10s\n", "SINK", "STATE", "LAG", "DELIVERED/S", "ERRORS", "DLQ");
    for (size_t i = 0; i < v->nsinks; i++) {
        const krow *r = &v->sinks[i];
        char name[40], st[12];
        safe_name(r->name, name, sizeof name, 0);
        /* a running sink that reshards shows the phase */
        safe_name(r->phase && r->state && strcmp(r->state, "running") == 0 ? r->phase
                  : r->state                                                ? r->state
                                                                            : "-",
                  st, sizeof st, 0);
        fprintf(f, "%-32s %-10s %12s %12s %10s %10s\n", name, st, human_num(r->lag, a, sizeof a),
                human_num(r->rate, b, sizeof b), human_num(r->errors, c, sizeof c), human_num(r->dlq, d, sizeof d));
    }
    fputc('\n', f);
}

/* The hottest keys (nothing when no stream counts them), hottest first,
 * at most TOP_TTY_HOT_MAX lines. */
static int cmp_hot_rate(const void *a, const void *b)
{
    const hrow *x = a, *y = b;
    if (x->per_s != y->per_s)
        return x->per_s > y->per_s ? -1 : 1;
    int c = strcmp(x->stream, y->stream);
    return c ? c : strcmp(x->key, y->key);
}

void spw__top_render_hot(FILE *f, const view *v)
{
    if (!v->nhot)
        return;
    hrow *h = spw_xmalloc(v->nhot * sizeof *h); /* over every stream, hottest first */
    memcpy(h, v->hot, v->nhot * sizeof *h);
    qsort(h, v->nhot, sizeof *h, cmp_hot_rate);
    size_t n = v->nhot < TOP_TTY_HOT_MAX ? v->nhot : TOP_TTY_HOT_MAX;
    char a[32];
    fprintf(f, "%-32s %-32s %12s\n", "HOT KEY", "STREAM", "EVENTS/S");
    for (size_t i = 0; i < n; i++) {
        char key[40], name[40];
        safe_name(h[i].key, key, sizeof key, 0);
        safe_name(h[i].stream, name, sizeof name, 0);
        fprintf(f, "%-32s %-32s %12s\n", key, name, human_num(h[i].per_s, a, sizeof a));
    }
    if (n < v->nhot)
        fprintf(f, "... %zu more hot key(s)\n", v->nhot - n);
    fputc('\n', f);
    spw_free(h);
}

/* The stream table in at most rows lines, busiest first. */
void spw__top_render_streams(FILE *f, const view *v, int rows)
{
    char a[32], b[32], c[32];
    fprintf(f, "%-32s %12s %14s %14s\n", "STREAM", "EVENTS/S", "BYTES/S", "EVENTS");
    size_t avail = rows > 2 ? (size_t)rows - 1 : 1, show = v->nrows;
    if (avail > TOP_TTY_STREAMS_MAX)
        avail = TOP_TTY_STREAMS_MAX;
    if (show > avail)
        show = avail - 1; /* the last line says how many are left out */
    for (size_t i = 0; i < show; i++) {
        const srow *r = &v->rows[i];
        char name[40];
        safe_name(r->name, name, sizeof name, 0);
        fprintf(f, "%-32s %12s %12s/s %14s\n", name, human_num(r->ev_rate, a, sizeof a),
                isnan(r->by_rate) ? "-" : human_bytes(r->by_rate, b, sizeof b), human_num(r->ev, c, sizeof c));
    }
    if (show < v->nrows)
        fprintf(f, "... %zu more stream(s)\n", v->nrows - show);
    if (!v->nrows)
        fprintf(f, "(no streams)\n");
}

/* Writes frame text to the terminal in place: each line clipped to the width and cleared to its end. */
void spw__top_draw(const char *text, size_t len, int cols, int rows)
{
    fputs("\033[H", stdout);
    const char *p = text, *end = text + len;
    for (int row = 0; p < end && row < rows; row++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        int n = (int)(le - p) < cols ? (int)(le - p) : cols;
        fwrite(p, 1, (size_t)n, stdout);
        fputs("\033[K", stdout);
        if (row + 1 < rows && nl)
            fputc('\n', stdout);
        p = nl ? nl + 1 : end;
    }
    fputs("\033[J", stdout);
    fflush(stdout);
}

void spw__top_term_size(int *cols, int *rows)
{
    struct winsize ws;
    *cols = 80;
    *rows = 24;
    if (ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}
