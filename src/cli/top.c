/*
 * `spillway top`: a live view of a running server, from what it already
 * exports. Every interval it scrapes GET /metrics (Prometheus text, read
 * by cli/promtext.c) and GET /v1/status (for limits.max_pending_bytes) on
 * one keep-alive connection, and shows the difference to the previous
 * scrape: rates are counter deltas divided by the time that really passed
 * between the two scrapes; latencies are quantiles of the histogram
 * buckets' deltas, so they describe the last interval only, not the
 * server's whole life. A counter that went down (the server restarted)
 * counts from zero.
 *
 * Metrics this server version may not have (pressure level, watermarks,
 * coalesced, duplicates, the binary listener) are shown when present and
 * left out when absent, so one top works across versions.
 *
 * Output: on a terminal, a screen redrawn in place with ANSI sequences;
 * otherwise (or with --once) one plain snapshot per interval, made of
 * `top key=value ...` and `stream name=... key=value ...` lines and a
 * blank line, for scripts. A server that cannot be reached or answers
 * badly is reported and tried again every interval; with --once it is an
 * error (exit 1). SIGINT/SIGTERM exit 0.
 *
 * This file scrapes, builds the view and runs the loop; top_render.c
 * draws the view (top_int.h is what the two share).
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

#include "core/help.h"
#include "cli/cmds.h"
#include "cli/promtext.h"
#include "cli/top_int.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/id.h"

#define TOP_INTERVAL_MIN_MS 100
#define TOP_INTERVAL_MAX_MS 3600000
#define TOP_HTTP_TIMEOUT_S 5

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t tty_mode;

static void on_signal(int sig)
{
    (void)sig;
    if (stop_requested) {
        /* A second Ctrl-C while a scrape is blocked on a hung server. */
        if (tty_mode) {
            static const char show[] = "\033[?25h\n";
            if (write(1, show, sizeof show - 1) < 0) {
            }
        }
        _exit(0);
    }
    stop_requested = 1;
}

static const char top_help[] =
    "usage: spillway top [--server HOST:PORT] [--token T] [--interval D] [--once]\n"
    "Shows a running server live: events/s and bytes/s in (total and per stream), pending bytes\n"
    "against the max-pending-bytes budget, the pressure/watermark state, rejections/s by reason,\n"
    "connections, fsync latency p50/p99 and the group-commit batch size over the last interval.\n"
    "On a terminal the screen is redrawn in place; otherwise one plain snapshot is printed per\n"
    "interval: a 'top key=value ...' line, one 'stream name=S key=value ...' line per stream, one\n"
    "'sink name=S key=value ...' line per sink and a blank line (docs/operations.md lists the keys). Ctrl-C exits.\n\n"
    SPW_CLI_SERVER_HELP
    "  --token T            bearer token for a server with a tokens file (default $SPILLWAY_TOKEN)\n"
    "  --interval DURATION  time between scrapes (ms/s/m), default 1s, 100ms..1h\n"
    "  --once               scrape twice, one interval apart, print one plain snapshot and exit\n"
    "                       (exit 1 if the server cannot be reached)\n";

static double cdelta(double cur, double prev) { return cur >= prev ? cur - prev : cur; }

static double metric(const spw_prom_set *m, const char *name, int *found)
{
    double v = 0;
    int f = spw_prom_get(m, name, NULL, NULL, &v);
    if (found)
        *found = f;
    return f ? v : 0;
}

/* Delta of a counter between two scrapes (prev NULL: NaN). */
static double counter_delta(const scrape *prev, const scrape *cur, const char *name, const char *label,
                            const char *value, double *total)
{
    double c = 0, p = 0;
    spw_prom_get(&cur->m, name, label, value, &c);
    if (total)
        *total = c;
    if (!prev)
        return NAN;
    if (!spw_prom_get(&prev->m, name, label, value, &p))
        return c;
    return cdelta(c, p);
}

/*
 * The bucket-wise difference of histogram name between two scrapes into
 * le/d; the current scrape alone if the previous lacks it, differs in
 * layout or is ahead (a restart). Returns the bucket count, 0 without prev.
 */
static size_t hist_delta(const scrape *prev, const scrape *cur, const char *name, double *le, double *d)
{
    if (!prev)
        return 0;
    double ple[SPW_PROM_HIST_MAX], pc[SPW_PROM_HIST_MAX];
    size_t n = spw_prom_hist(&cur->m, name, le, d, SPW_PROM_HIST_MAX);
    size_t m = spw_prom_hist(&prev->m, name, ple, pc, SPW_PROM_HIST_MAX);
    if (m != n)
        return n;
    for (size_t i = 0; i < n; i++)
        if (ple[i] != le[i] || pc[i] > d[i])
            return n;
    for (size_t i = 0; i < n; i++)
        d[i] -= pc[i];
    return n;
}

static void hist_quantiles(const scrape *prev, const scrape *cur, const char *name, double *p50, double *p99)
{
    double le[SPW_PROM_HIST_MAX], d[SPW_PROM_HIST_MAX];
    size_t n = hist_delta(prev, cur, name, le, d);
    *p50 = spw_prom_quantile(le, d, n, 0.50);
    *p99 = spw_prom_quantile(le, d, n, 0.99);
}

static int cmp_row_name(const void *a, const void *b)
{
    return strcmp(((const srow *)a)->name, ((const srow *)b)->name);
}

static int cmp_row_name_k(const void *a, const void *b)
{
    return strcmp(((const krow *)a)->name, ((const krow *)b)->name);
}

static int cmp_row_rate(const void *a, const void *b)
{
    const srow *x = a, *y = b;
    double rx = isnan(x->ev_rate) ? x->ev : x->ev_rate, ry = isnan(y->ev_rate) ? y->ev : y->ev_rate;
    if (rx != ry)
        return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The per-stream rows of one scrape, sorted by name (malloc'ed; *n rows). */
static srow *stream_rows(const spw_prom_set *m, size_t *n)
{
    size_t cap = 0;
    for (size_t i = 0; i < m->n; i++) {
        const char *nm = spw_prom_name(m, &m->samples[i]);
        cap += strcmp(nm, "spillway_stream_events_in_total") == 0 || strcmp(nm, "spillway_stream_bytes_in_total") == 0;
    }
    srow *r = spw_xcalloc(cap ? cap : 1, sizeof *r);
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        const spw_prom_sample *x = &m->samples[i];
        const char *nm = spw_prom_name(m, x);
        int ev = strcmp(nm, "spillway_stream_events_in_total") == 0;
        if (!ev && strcmp(nm, "spillway_stream_bytes_in_total") != 0)
            continue;
        const char *s = spw_prom_label_value(m, x, "stream");
        if (!s)
            continue;
        r[k] = (srow){.name = s, .ev = ev ? x->value : 0, .by = ev ? 0 : x->value};
        k++;
    }
    qsort(r, k, sizeof *r, cmp_row_name);
    /* One row per stream: merge its events and bytes samples. */
    size_t w = 0;
    for (size_t i = 0; i < k; i++) {
        if (w && strcmp(r[w - 1].name, r[i].name) == 0) {
            r[w - 1].ev += r[i].ev;
            r[w - 1].by += r[i].by;
        } else {
            r[w++] = r[i];
        }
    }
    *n = w;
    return r;
}

static int cmp_hot(const void *a, const void *b)
{
    const hrow *x = a, *y = b;
    int c = strcmp(x->stream, y->stream);
    if (c)
        return c;
    if (x->per_s != y->per_s)
        return x->per_s > y->per_s ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* The hottest keys of one scrape (malloc'ed; *n rows; docs/api.md "Hot keys"). */
static hrow *hot_rows(const spw_prom_set *m, size_t *n)
{
    size_t cap = 0, k = 0;
    for (size_t i = 0; i < m->n; i++)
        cap += strcmp(spw_prom_name(m, &m->samples[i]), "spillway_stream_hot_key_events_per_second") == 0;
    hrow *r = spw_xcalloc(cap ? cap : 1, sizeof *r);
    for (size_t i = 0; i < m->n; i++) {
        const spw_prom_sample *x = &m->samples[i];
        if (strcmp(spw_prom_name(m, x), "spillway_stream_hot_key_events_per_second") != 0)
            continue;
        const char *s = spw_prom_label_value(m, x, "stream"), *key = spw_prom_label_value(m, x, "key");
        if (s && key)
            r[k++] = (hrow){s, key, x->value};
    }
    qsort(r, k, sizeof *r, cmp_hot);
    *n = k;
    return r;
}

/* The sinks of one scrape, one per spillway_sink_lag line, sorted by name (malloc'ed; *n rows). */
static krow *sink_rows(const spw_prom_set *m, size_t *n)
{
    size_t cap = 0;
    for (size_t i = 0; i < m->n; i++)
        cap += strcmp(spw_prom_name(m, &m->samples[i]), "spillway_sink_lag") == 0;
    krow *r = spw_xcalloc(cap ? cap : 1, sizeof *r);
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        const spw_prom_sample *x = &m->samples[i];
        if (strcmp(spw_prom_name(m, x), "spillway_sink_lag") != 0)
            continue;
        const char *nm = spw_prom_label_value(m, x, "sink");
        int dup = 0;
        for (size_t j = 0; nm && j < k; j++)
            dup |= strcmp(r[j].name, nm) == 0;
        if (!nm || dup)
            continue;
        r[k] = (krow){.name = nm, .lag = x->value, .rate = NAN};
        spw_prom_get(m, "spillway_sink_delivered_total", "sink", nm, &r[k].delivered);
        spw_prom_get(m, "spillway_sink_errors_total", "sink", nm, &r[k].errors);
        spw_prom_get(m, "spillway_sink_dlq_total", "sink", nm, &r[k].dlq);
        for (size_t j = 0; j < m->n; j++) {
            const spw_prom_sample *y = &m->samples[j];
            const char *sn;
            if (y->value == 1 && strcmp(spw_prom_name(m, y), "spillway_sink_state") == 0 &&
                (sn = spw_prom_label_value(m, y, "sink")) && strcmp(sn, nm) == 0) {
                r[k].state = spw_prom_label_value(m, y, "state");
                break;
            }
        }
        for (size_t j = 0; j < m->n; j++) {
            const spw_prom_sample *y = &m->samples[j];
            const char *sn;
            if (y->value == 1 && strcmp(spw_prom_name(m, y), "spillway_sink_reshard_phase") == 0 &&
                (sn = spw_prom_label_value(m, y, "sink")) && strcmp(sn, nm) == 0) {
                r[k].phase = spw_prom_label_value(m, y, "phase");
                break;
            }
        }
        k++;
    }
    qsort(r, k, sizeof *r, cmp_row_name_k);
    *n = k;
    return r;
}

/* The server's CPU over the interval: in cores, per event in, and by its threads' roles. */
static void cpu_build(view *v, const scrape *prev, const scrape *cur, double secs)
{
    v->has_cpu = spw_prom_find(&cur->m, "process_cpu_seconds_total", NULL, NULL) != NULL;
    v->cpu_cores = counter_delta(prev, cur, "process_cpu_seconds_total", NULL, NULL, NULL) / secs;
    v->cpu_ns_per_event = v->d_ev > 0 ? v->cpu_cores * secs * 1e9 / v->d_ev : NAN;
    v->has_roles = spw_prom_find(&cur->m, "spillway_thread_cpu_seconds_total", NULL, NULL) != NULL;
    for (int r = 0; r < SPW_THREAD_ROLES; r++)
        v->role_cores[r] =
            counter_delta(prev, cur, "spillway_thread_cpu_seconds_total", "role", spw_thread_roles[r], NULL) / secs;
}

static void view_build(view *v, const scrape *prev, const scrape *cur)
{
    memset(v, 0, sizeof *v);
    const spw_prom_set *m = &cur->m;
    v->secs = prev ? (double)(cur->t_ns - prev->t_ns) / 1e9 : 0;
    double secs = v->secs > 0 ? v->secs : NAN;
    v->d_ev = counter_delta(prev, cur, "spillway_events_in_total", NULL, NULL, &v->ev);
    v->d_by = counter_delta(prev, cur, "spillway_bytes_in_total", NULL, NULL, &v->by);
    v->ev_rate = v->d_ev / secs;
    v->by_rate = v->d_by / secs;
    v->pending = metric(m, "spillway_pending_bytes", &v->has_pending);
    v->level = metric(m, "spillway_pressure_level", &v->has_level);
    v->high = metric(m, "spillway_pending_high_watermark_bytes", &v->has_high);
    v->low = metric(m, "spillway_pending_low_watermark_bytes", &v->has_low);
    v->conns_http = metric(m, "spillway_http_connections", &v->has_http);
    v->conns_bin = metric(m, "spillway_bin_connections", &v->has_bin);
    v->has_coalesced = spw_prom_find(m, "spillway_coalesced_total", NULL, NULL) != NULL;
    v->coalesced_rate = counter_delta(prev, cur, "spillway_coalesced_total", NULL, NULL, &v->coalesced) / secs;
    v->has_dups = spw_prom_find(m, "spillway_duplicates_total", NULL, NULL) != NULL;
    v->dups_rate = counter_delta(prev, cur, "spillway_duplicates_total", NULL, NULL, &v->dups) / secs;
    v->fsyncs_rate = counter_delta(prev, cur, "spillway_log_fsyncs_total", NULL, NULL, NULL) / secs;
    hist_quantiles(prev, cur, "spillway_log_fsync_seconds", &v->fsync_p50, &v->fsync_p99);
    hist_quantiles(prev, cur, "spillway_produce_seconds", &v->prod_p50, &v->prod_p99);
    cpu_build(v, prev, cur, secs);
    int has_w = 0;
    v->repl_waiting = metric(m, "spillway_replicated_waiting", &has_w);
    v->repl_rate = counter_delta(prev, cur, "spillway_replicated_acked_total", NULL, NULL, &v->repl_acked) / secs;
    v->repl_timeouts_rate =
        counter_delta(prev, cur, "spillway_replicated_timeouts_total", NULL, NULL, &v->repl_timeouts) / secs;
    counter_delta(prev, cur, "spillway_replicated_rejected_total", NULL, NULL, &v->repl_rejected);
    v->has_repl = has_w && (v->repl_waiting > 0 || v->repl_acked > 0 || v->repl_timeouts > 0 || v->repl_rejected > 0);
    hist_quantiles(prev, cur, "spillway_replicated_wait_seconds", &v->repl_p50, &v->repl_p99);
    double gcp50;
    hist_quantiles(prev, cur, "spillway_log_group_commit_appends", &gcp50, &v->gc_p99);
    v->gc_p99 = ceil(v->gc_p99); /* a batch is a whole number of appends */
    double gsum = counter_delta(prev, cur, "spillway_log_group_commit_appends_sum", NULL, NULL, NULL);
    double gcnt = counter_delta(prev, cur, "spillway_log_group_commit_appends_count", NULL, NULL, NULL);
    v->gc_avg = gcnt > 0 ? gsum / gcnt : NAN;

    /* Every reason the server lists, known or not, in its order. */
    for (size_t i = 0; i < m->n && v->nrej < sizeof v->rej / sizeof *v->rej; i++) {
        const spw_prom_sample *x = &m->samples[i];
        if (strcmp(spw_prom_name(m, x), "spillway_rejected_total") != 0)
            continue;
        const char *reason = spw_prom_label_value(m, x, "reason");
        if (!reason || strlen(reason) >= sizeof v->rej[0].reason)
            continue;
        int dup = 0;
        for (size_t k = 0; k < v->nrej; k++)
            dup |= strcmp(v->rej[k].reason, reason) == 0;
        if (dup)
            continue;
        snprintf(v->rej[v->nrej].reason, sizeof v->rej[0].reason, "%s", reason);
        v->rej[v->nrej].rate =
            counter_delta(prev, cur, "spillway_rejected_total", "reason", reason, &v->rej[v->nrej].total) / secs;
        v->rej_total += v->rej[v->nrej].total;
        v->rej_rate += v->rej[v->nrej].rate;
        v->nrej++;
    }

    v->rows = stream_rows(m, &v->nrows);
    size_t np = 0;
    srow *pr = prev ? stream_rows(&prev->m, &np) : NULL;
    size_t j = 0;
    for (size_t i = 0; i < v->nrows; i++) {
        srow *r = &v->rows[i];
        while (j < np && strcmp(pr[j].name, r->name) < 0)
            j++;
        int same = j < np && strcmp(pr[j].name, r->name) == 0;
        r->d_ev = !prev ? NAN : same ? cdelta(r->ev, pr[j].ev) : r->ev;
        r->d_by = !prev ? NAN : same ? cdelta(r->by, pr[j].by) : r->by;
        r->ev_rate = r->d_ev / secs;
        r->by_rate = r->d_by / secs;
        r->hot_split = NAN;
        spw_prom_get(m, "spillway_stream_hot_keys_split", "stream", r->name, &r->hot_split);
    }
    spw_free(pr);
    qsort(v->rows, v->nrows, sizeof *v->rows, cmp_row_rate);

    v->hot = hot_rows(m, &v->nhot);
    v->sinks = sink_rows(m, &v->nsinks);
    for (size_t i = 0; i < v->nsinks && prev; i++) {
        krow *r = &v->sinks[i];
        double p;
        r->rate = (spw_prom_get(&prev->m, "spillway_sink_delivered_total", "sink", r->name, &p)
                       ? cdelta(r->delivered, p)
                       : r->delivered) /
                  secs;
    }
}

/* ---- scraping ---- */

/*
 * Scrapes /metrics and /v1/status into s. Returns 0, or -1 with a reason
 * in err. The status endpoint is optional: without it there is no budget.
 */
static int do_scrape(spw_httpc *c, scrape *s, char *err, size_t cap)
{
    spw_httpc_resp r;
    spw_prom_clear(&s->m);
    s->ok = 0;
    s->has_budget = 0;
    s->version[0] = 0;
    s->uptime_ms = 0;
    int st = spw_httpc_request(c, "GET", "/metrics", NULL, NULL, NULL, 0, 0, &r);
    if (st < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            snprintf(err, cap, "the server at %s:%s did not answer GET /metrics within %d s", c->host, c->port,
                     TOP_HTTP_TIMEOUT_S);
        else
            snprintf(err, cap, "cannot reach the server at %s:%s: %s", c->host, c->port, strerror(errno));
        return -1;
    }
    if (st != 200) {
        snprintf(err, cap, "the server at %s:%s answered HTTP %d to GET /metrics", c->host, c->port, st);
        return -1;
    }
    s->t_ns = spw_mono_ns();
    if (spw_prom_parse(&s->m, r.body, r.body_len) < 0) {
        snprintf(err, cap, "out of memory reading /metrics");
        return -1;
    }
    if (s->m.n == 0) {
        snprintf(err, cap, "GET /metrics on %s:%s returned no samples", c->host, c->port);
        return -1;
    }
    spw_json_span o, lim;
    if (spw_httpc_request(c, "GET", "/v1/status", NULL, NULL, NULL, 0, 0, &r) == 200 &&
        spw__cli_parse(r.body, r.body_len, &o) == 0) {
        spw__cli_str(&o, "version", s->version, sizeof s->version);
        s->uptime_ms = spw__cli_int(&o, "uptime_ms", 0);
        if (spw__cli_member(&o, "limits", &lim)) {
            int64_t mp = spw__cli_int(&lim, "max_pending_bytes", -1);
            if (mp >= 0) {
                s->has_budget = 1;
                s->max_pending = (double)mp;
            }
        }
    }
    s->ok = 1;
    return 0;
}

int spw_cmd_top(int argc, char **argv)
{
    const char *server = NULL, *interval_s = "1s";
    int once = 0;
    const char *token = NULL;
    uint64_t interval_ms = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int m;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spw_help_write(stdout, top_help, SPW_HELP_WIDTH);
            return 0;
        }
        if ((m = spw__cli_opt("top", argc, argv, &i, "--server", &v))) {
            if (m < 0)
                return 2;
            server = v;
        } else if ((m = spw__cli_opt("top", argc, argv, &i, "--token", &v))) {
            if (m < 0)
                return 2;
            token = v;
        } else if ((m = spw__cli_opt("top", argc, argv, &i, "--interval", &v))) {
            if (m < 0)
                return 2;
            if (spw_parse_duration_ms(v, &interval_ms) || interval_ms < TOP_INTERVAL_MIN_MS ||
                interval_ms > TOP_INTERVAL_MAX_MS) {
                fprintf(stderr, "spillway top: --interval takes a duration from 100ms to 1h (like 1s, 500ms), not '%s'\n",
                        v);
                return 2;
            }
            interval_s = v;
        } else if (strcmp(a, "--once") == 0) {
            once = 1;
        } else {
            fprintf(stderr, "spillway top: unexpected argument '%s' (see spillway top --help)\n", a);
            return 2;
        }
    }
    spw_httpc c;
    int r = spw__cli_server("top", server, &c);
    if (r == 0)
        r = spw__cli_token("top", token, &c, &token);
    if (r)
        return r;
    c.timeout_s = TOP_HTTP_TIMEOUT_S;
    char server_name[300];
    snprintf(server_name, sizeof server_name, strchr(c.host, ':') ? "[%s]:%s" : "%s:%s", c.host, c.port);

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: a signal cuts the sleep short */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int tty = !once && isatty(1);
    tty_mode = tty;
    scrape sc[2];
    spw_prom_init(&sc[0].m);
    spw_prom_init(&sc[1].m);
    sc[0].ok = sc[1].ok = 0;
    int cur = 0, rc = 0, failing = 0;
    char err[512];
    if (tty)
        fputs("\033[?25l\033[2J", stdout);
    uint64_t next = spw_mono_ns();
    while (!stop_requested) {
        next += interval_ms * 1000000u;
        scrape *now = &sc[cur], *prev = sc[cur ^ 1].ok ? &sc[cur ^ 1] : NULL;
        if (do_scrape(&c, now, err, sizeof err) < 0) {
            if (once) {
                fprintf(stderr, "spillway top: %s\n", err);
                rc = 1;
                break;
            }
            if (tty) {
                char frame[1024];
                int n = snprintf(frame, sizeof frame, "spillway top - %s - every %s\n\n%s\nretrying every %s ...\n",
                                 server_name, interval_s, err, interval_s);
                int cols, rows;
                spw__top_term_size(&cols, &rows);
                spw__top_draw(frame, (size_t)n < sizeof frame ? (size_t)n : sizeof frame - 1, cols, rows);
            } else if (!failing) {
                fprintf(stderr, "spillway top: %s; retrying every %s\n", err, interval_s);
            }
            failing = 1;
            sc[cur ^ 1].ok = 0; /* rates restart after the gap */
        } else {
            if (failing && !tty)
                fprintf(stderr, "spillway top: the server at %s answers again\n", server_name);
            failing = 0;
            if (prev || tty) {
                view v;
                view_build(&v, prev, now);
                if (tty) {
                    int cols, rows;
                    spw__top_term_size(&cols, &rows);
                    char *text = NULL;
                    size_t len = 0;
                    FILE *mf = open_memstream(&text, &len);
                    if (mf) {
                        spw__top_render_head(mf, &v, now, server_name, interval_s);
                        spw__top_render_sinks(mf, &v);
                        spw__top_render_hot(mf, &v);
                        fflush(mf);
                        int used = 0;
                        for (size_t i = 0; i < len; i++)
                            used += text[i] == '\n';
                        spw__top_render_streams(mf, &v, rows - used);
                        fclose(mf);
                        spw__top_draw(text, len, cols, rows);
                        free(text);
                    }
                } else {
                    spw__top_print_plain(stdout, &v, now, server_name);
                }
                spw_free(v.rows);
                spw_free(v.sinks);
                spw_free(v.hot);
                if (once && prev)
                    break;
            }
            cur ^= 1;
        }
        uint64_t t = spw_mono_ns();
        if (next < t)
            next = t; /* a slow scrape: no burst of catch-up rounds */
        while (!stop_requested && spw_sleep_until(next) == EINTR) { /* until next, or a stop signal */
        }
    }
    if (tty)
        fputs("\033[?25h\n", stdout);
    fflush(stdout);
    spw_prom_fini(&sc[0].m);
    spw_prom_fini(&sc[1].m);
    spw_httpc_close(&c);
    return rc;
}
