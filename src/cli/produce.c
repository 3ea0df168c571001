/*
 * `spillway produce STREAM [FILE|-]`: NDJSON in, POST /v1/streams/{s}/events
 * out (docs/api.md), over one keep-alive connection.
 *
 * Lines are read with a bounded buffer (a line longer than the limit is
 * skipped, not buffered, and reported with its length), blank lines are
 * skipped, and the rest go out --batch lines per request, at most
 * max_request_bytes per request (the server's /v1/status says how much).
 * Up to --pipeline requests are in flight; answers come back in order.
 *
 * The server validates a request whole and names the first bad line in it
 * ("line K (byte B): ..."). The client maps K back to the file's line
 * number, counts that line as rejected with the server's sentence, and
 * sends the request's other lines again (the lines before K were valid;
 * those after are checked again), so one bad line costs only itself. With
 * --pipeline above 1 a re-sent remainder lands after the requests already
 * in flight: use --pipeline 1 (the default) to keep the file's order
 * exactly. 429/503 answers are retried after Retry-After (bounded); any
 * other failure stops the run, and a lost connection leaves the requests
 * in flight unknown (reported, never re-sent: they may have been stored).
 *
 * A summary goes to stderr at the end; a progress line too while stderr is
 * a terminal. Exit 0 only if every non-blank line was accepted.
 *
 * A cluster (--server A,B,C): one such pass per node over the same input,
 * each sending the lines the ring gives its node (route, produce_cluster
 * below), so a key's lines keep the file's order on their one node.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/help.h"
#include "cli/cmds.h"
#include "core/id.h"
#include "core/name.h"
#include "cli/cluster.h"
#include "core/alloc.h"
#include "core/json.h"

#define PIPELINE_MAX 64
#define RETRIES_MAX 60 /* per request, for 429/503 */
#define REJECTS_SHOWN 10

static const char produce_help[] =
    "usage: spillway produce STREAM [FILE|-] [--server HOST:PORT] [--ack L]\n"
    "                        [--batch N] [--pipeline D] [--max-rejects N]\n"
    "                        [--expected-version E]\n"
    "Sends the NDJSON lines of FILE (or stdin: '-' or no FILE) to STREAM, one event a line, blank\n"
    "lines skipped. A line the server refuses is reported with its line number in FILE and the\n"
    "server's reason, and the other lines of its request are sent again. Prints a summary\n"
    "(accepted, rejected, elapsed, events/s) on stderr, and a progress line while stderr is a\n"
    "terminal. Exit 0 if every line was accepted, 1 if any was rejected or the run failed.\n\n"
    SPW_CLI_SERVER_HELP SPW_CLI_TOKEN_HELP
    "  --ack L              none|written|fsync|replicated (default: the stream's)\n"
    "  --batch N            lines per request (default 1000, at most 100000)\n"
    "  --pipeline D         requests in flight on the connection (default 1 keeps the file's order\n"
    "                       even around rejected lines; at most 64)\n"
    "  --max-rejects N      stop reading after N rejected lines (default 100)\n"
    "  --expected-version E a versioned stream: append only if the key is at version E (any, none,\n"
    "                       exists or a number; docs/api.md \"Event sourcing\"). All lines go in one\n"
    "                       request, of one key; a conflict (409) appends nothing and exits 1\n"
    "For a stream of format bytes, each line (without its newline) is one event, one per request.\n"
    "A cluster: --server=A,B,C sends each line to the node the client library's ring names for its\n"
    "key (the stream's key, read as the server reads it; --ring LIST places keys by LIST's addresses,\n"
    "e.g. the nodes' binary ones, same count and order), one pass over FILE per node; lines without a\n"
    "key go round robin over the nodes that answer. The lines of a node that does not answer fail\n"
    "(counted per node, exit 1), never sent to another node.\n";

/* ---- bounded line reader ---- */

typedef struct reader {
    int fd;
    char *buf;
    size_t cap, start, end;
    int eof;
    uint64_t line;       /* number of the last line returned (1-based) */
    uint64_t bytes_read; /* for the progress line */
} reader;

/*
 * Next line without its newline. Returns 1 with p and n set, 2 for a line
 * longer than the buffer (skipped; n is its length), 0 at the end, -1 on a
 * read error. The line stays valid until the next call.
 */
static int next_line(reader *r, const char **p, size_t *n)
{
    size_t skipped = 0;
    int skipping = 0;
    for (;;) {
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        if (nl) {
            size_t len = (size_t)(nl - (r->buf + r->start));
            r->line++;
            if (skipping) {
                *n = skipped + len;
                r->start += len + 1;
                return 2;
            }
            *p = r->buf + r->start;
            *n = len;
            r->start += len + 1;
            return 1;
        }
        if (r->eof) {
            size_t len = r->end - r->start;
            if (len == 0 && !skipping)
                return 0;
            r->line++;
            r->start = r->end;
            if (skipping) {
                *n = skipped + len;
                return 2;
            }
            *p = r->buf + r->end - len;
            *n = len;
            return 1;
        }
        if (r->start == 0 && r->end == r->cap) {
            /* Too long for the buffer: drop what we have, look for its end. */
            skipping = 1;
            skipped += r->end;
            r->end = 0;
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        ssize_t k = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            r->eof = 1;
        r->end += (size_t)k;
        r->bytes_read += (uint64_t)k;
    }
}

/* ---- requests ---- */

typedef struct req {
    spw_buf body;
    uint64_t *lines; /* file line number of each event line */
    size_t *offs;    /* where each line starts in body */
    uint32_t n, cap;
    uint32_t retries;
} req;

typedef struct run {
    const char *cmd;
    spw_httpc c;
    char target[300];
    char extra[128];
    const char *ctype;
    int bytes_stream;
    uint64_t accepted, rejected, failed, unknown, not_sent;
    char shown[REJECTS_SHOWN][700];
    uint32_t n_shown;
    int fatal;
    uint64_t requests_sent; /* first sends (for --expected-version: one) */
} run;

static void req_add(req *q, uint64_t line, const char *p, size_t n, int newline)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 64;
        q->lines = spw_xrealloc(q->lines, q->cap * sizeof *q->lines);
        q->offs = spw_xrealloc(q->offs, q->cap * sizeof *q->offs);
    }
    if (spw_buf_reserve(&q->body, q->body.len + n + 1))
        abort();
    q->lines[q->n] = line;
    q->offs[q->n] = q->body.len;
    q->n++;
    memcpy(q->body.p + q->body.len, p, n);
    q->body.len += n;
    if (newline)
        q->body.p[q->body.len++] = '\n';
}

/* Drops line k of q, rebuilding the body without it. */
static void req_drop(req *q, uint32_t k)
{
    size_t from = q->offs[k], to = k + 1 < q->n ? q->offs[k + 1] : q->body.len;
    memmove(q->body.p + from, q->body.p + to, q->body.len - to);
    q->body.len -= to - from;
    for (uint32_t j = k + 1; j < q->n; j++) {
        q->lines[j - 1] = q->lines[j];
        q->offs[j - 1] = q->offs[j] - (to - from);
    }
    q->n--;
}

static void reject(run *R, uint64_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reject(run *R, uint64_t line, const char *fmt, ...)
{
    R->rejected++;
    if (R->n_shown == REJECTS_SHOWN)
        return;
    char *s = R->shown[R->n_shown++];
    int n = snprintf(s, sizeof R->shown[0], "line %" PRIu64 ": ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s + n, sizeof R->shown[0] - (size_t)n, fmt, ap);
    va_end(ap);
}

static int send_req(run *R, req *q)
{
    char head[512 + sizeof R->c.auth];
    int hn = spw_httpc_head(&R->c, head, sizeof head, "POST", R->target, R->ctype, R->extra, q->body.len);
    if (hn < 0)
        return -1;
    if (spw_httpc_send(&R->c, head, (size_t)hn) || spw_httpc_send(&R->c, q->body.p, q->body.len))
        return -1;
    return 0;
}

/*
 * Handles the answer to q. Returns 0 when q is finished, 1 when q must be
 * sent again (its bad line removed, or after a 429/503 wait).
 */
static int handle_answer(run *R, req *q, const spw_httpc_resp *r)
{
    if (r->status == 202) {
        R->accepted += q->n;
        return 0;
    }
    char msg[600] = "", code[64] = "";
    if (spw__cli_error_parts(r->body, r->body_len, msg, sizeof msg, code, sizeof code))
        snprintf(msg, sizeof msg, "HTTP %d: %.*s", r->status, (int)(r->body_len > 300 ? 300 : r->body_len), r->body);
    if (r->status == 429 || r->status == 503) {
        if (++q->retries > RETRIES_MAX) {
            fprintf(stderr, "spillway %s: the server still refuses after %d tries: %s\n", R->cmd, RETRIES_MAX, msg);
            R->fatal = 1;
            R->failed += q->n;
            return 0;
        }
        size_t vl;
        const char *v = spw_httpc_header(r, "Retry-After", &vl);
        int secs = v ? atoi(v) : 1;
        if (secs < 1 || secs > 60)
            secs = 1;
        sleep((unsigned)secs);
        return 1;
    }
    /* One event per request (bytes streams, or a single line): the answer is about that line. */
    unsigned k = 0;
    size_t byte = 0;
    int at = 0;
    int names_line = r->status == 400 && sscanf(msg, "line %u (byte %zu): %n", &k, &byte, &at) == 2 && at > 0 &&
                     k >= 1 && k <= q->n;
    if (!names_line && q->n == 1 && (r->status == 400 || (r->status == 413 && strcmp(code, "event_too_large") == 0))) {
        reject(R, q->lines[0], "%s (%s)", msg, code);
        return 0;
    }
    if (!names_line) {
        fprintf(stderr, "spillway %s: lines %" PRIu64 "..%" PRIu64 " refused, stopping: %s (HTTP %d, %s)\n", R->cmd,
                q->lines[0], q->lines[q->n - 1], msg, r->status, code[0] ? code : "no code");
        R->fatal = 1;
        R->failed += q->n;
        return 0;
    }
    /* "line K (byte B): reason; nothing was appended" -> the file's line. */
    char *reason = msg + at;
    char *tail = strstr(reason, "; nothing was appended");
    if (tail)
        *tail = 0;
    size_t in_line = byte >= q->offs[k - 1] ? byte - q->offs[k - 1] : 0;
    reject(R, q->lines[k - 1], "%s (%s, byte %zu of the line)", reason, code, in_line);
    req_drop(q, k - 1);
    return q->n ? 1 : 0;
}

static void progress(const reader *rd, const run *R, off_t size, uint64_t t0, int done)
{
    double secs = (double)(spw_mono_ns() - t0) / 1e9;
    double rate = secs > 0 ? (double)R->accepted / secs : 0;
    char bar[32] = "";
    if (size > 0) {
        double f = (double)rd->bytes_read / (double)size;
        if (f > 1)
            f = 1;
        int w = (int)(f * 20);
        for (int i = 0; i < 20; i++)
            bar[i] = i < w ? '#' : '.';
        bar[20] = 0;
        fprintf(stderr, "\r[%s] %3d%% ", bar, (int)(f * 100));
    } else {
        fputs("\r", stderr);
    }
    fprintf(stderr, "line %" PRIu64 ", %" PRIu64 " accepted, %" PRIu64 " rejected, %.0f events/s\033[K", rd->line,
            R->accepted, R->rejected, rate);
    if (done)
        fputs("\r\033[K", stderr);
}

/*
 * A cluster (--server A,B,C; cli/cluster.h): the input is read once per
 * node that answered, and each pass sends the lines whose key the ring
 * gives that node, in the file's order (so a key's lines keep their
 * order). The key is read as the server reads it: the stream's `key`
 * pointer, a string's decoded bytes or a number's text. Lines without a
 * key (no key on the stream, a bytes stream) go round robin over the nodes
 * that answered; a line whose key cannot be read goes to the first of
 * them, which answers why it refuses it. The lines of a node that did not
 * answer are not sent: they are counted, by the first pass, as failed for
 * that node, never sent to another (that would break the key's order).
 */
typedef struct route {
    const spw_cli_cluster *cl;
    uint32_t node;                     /* this pass's node */
    const int *up;                     /* up[i]: node i answered */
    uint32_t nup, first_up;
    int first;                         /* this is the first pass: it counts the lines of nodes that are down */
    int keyed;
    spw_json_ptr kp;
    uint64_t seen;                     /* non-blank lines seen this pass (round robin) */
    uint64_t down_lines[SPW_CLI_NODES_MAX];
    char *kbuf;
    size_t kcap;
} route;

/* The node of a line (REQUIRES: not blank). */
static uint32_t route_node(route *rt, const char *p, size_t n)
{
    if (!rt->keyed) {
        uint64_t k = rt->seen++ % rt->nup;
        for (uint32_t i = 0; i < rt->cl->n; i++)
            if (rt->up[i] && k-- == 0)
                return i;
    }
    spw_json_span found;
    const char *vend;
    spw_json_error e;
    if (spw_json_scan(p, p + n, &rt->kp, 1, &found, &vend, &e) ||
        (found.type != SPW_JSON_STRING && found.type != SPW_JSON_NUMBER))
        return rt->first_up;
    if (found.type == SPW_JSON_NUMBER)
        return spw__cli_cluster_node(rt->cl, found.p, found.n);
    if (rt->kcap < found.n) {
        rt->kcap = found.n;
        rt->kbuf = spw_xrealloc(rt->kbuf, rt->kcap);
    }
    long kl = spw_json_unescape(&found, rt->kbuf, rt->kcap);
    return kl < 0 ? rt->first_up : spw__cli_cluster_node(rt->cl, rt->kbuf, (size_t)kl);
}

/* Is the line this pass's? Counts it for its node when that one is down. */
static int route_mine(route *rt, const char *p, size_t n)
{
    uint32_t i = route_node(rt, p, n);
    if (!rt->up[i] && rt->first)
        rt->down_lines[i]++;
    return i == rt->node;
}

/* What a pass over the input needs (spw_cmd_produce works it out). */
typedef struct pass_in {
    int fd;
    const char *label, *stream;
    uint64_t line_limit;
    const char *limit_name;
    uint64_t req_cap, batch, pipeline, max_rejects;
    const char *expect;
} pass_in;

/*
 * Sends the input's lines (those rt gives R's node, or all when rt is
 * NULL) over R->c and prints the summary. Returns the exit code: 0 if
 * every line sent was accepted.
 */
static int produce_pass(run *R, const pass_in *in, route *rt)
{
    int fd = in->fd, st;
    const char *label = in->label, *stream = in->stream, *limit_name = in->limit_name, *expect = in->expect;
    uint64_t line_limit = in->line_limit, req_cap = in->req_cap, batch = in->batch, pipeline = in->pipeline,
             max_rejects = in->max_rejects;
    spw_httpc_resp r;
    struct stat sb;
    off_t size = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? sb.st_size : 0;
    int tty = isatty(2);
    reader rd = {.fd = fd};
    /* Room for one line at the limit plus some trailing blanks; at least 64 KiB for efficient reads. */
    rd.cap = (size_t)line_limit + 4096 > (64u << 10) ? (size_t)line_limit + 4096 : (64u << 10);
    rd.buf = spw_xmalloc(rd.cap);

    uint32_t D = expect ? 1 : (uint32_t)pipeline;
    req slots[PIPELINE_MAX];
    memset(slots, 0, sizeof slots);
    uint32_t head = 0, inflight = 0;
    int input_done = 0, conn_lost = 0;
    uint64_t t0 = spw_mono_ns(), last_progress = 0;
    /* A line read but not yet placed (it did not fit the request being built). */
    int have_pending = 0;
    const char *pp = NULL;
    size_t pn = 0;
    uint64_t pline = 0;

    for (uint64_t guard = 0; guard < UINT64_MAX; guard++) {
        /* Fill the pipeline. */
        while (!input_done && !R->fatal && !conn_lost && inflight < D) {
            if (R->rejected >= max_rejects) {
                input_done = 1;
                break;
            }
            req *q = &slots[(head + inflight) % D];
            q->n = 0;
            q->body.len = 0;
            q->retries = 0;
            while (q->n < batch) {
                if (!have_pending) {
                    int k = next_line(&rd, &pp, &pn);
                    if (k < 0) {
                        fprintf(stderr, "spillway produce: reading %s: %s\n", label, strerror(errno));
                        R->fatal = 1;
                        input_done = 1;
                        break;
                    }
                    if (k == 0) {
                        input_done = 1;
                        break;
                    }
                    if (k == 2) {
                        if (rt && !rt->first)
                            continue; /* counted once, by the first pass */
                        reject(R, rd.line, "%zu bytes, over %s (%" PRIu64 " bytes); not sent", pn, limit_name,
                               line_limit);
                        if (R->rejected >= max_rejects)
                            break;
                        continue;
                    }
                    pline = rd.line;
                    /* Blank lines (whitespace only, \r included) are skipped. */
                    size_t b = 0;
                    while (b < pn && (pp[b] == ' ' || pp[b] == '\t' || pp[b] == '\r'))
                        b++;
                    if (b == pn)
                        continue;
                    if (rt && !route_mine(rt, pp, pn))
                        continue; /* another node's line */
                    size_t t = pn;
                    while (t > 0 && (pp[t - 1] == ' ' || pp[t - 1] == '\t' || pp[t - 1] == '\r'))
                        t--;
                    if ((uint64_t)(t - b) > line_limit) {
                        reject(R, pline, "%zu bytes, over %s (%" PRIu64 " bytes); not sent", t - b, limit_name,
                               line_limit);
                        if (R->rejected >= max_rejects)
                            break;
                        continue;
                    }
                    have_pending = 1;
                }
                if (q->n > 0 && q->body.len + pn + 1 > req_cap)
                    break; /* full: the line starts the next request */
                req_add(q, pline, pp, pn, !R->bytes_stream);
                have_pending = 0;
            }
            if (have_pending && q->n == 0)
                abort(); /* cannot happen: a line within the limit always fits an empty request */
            /* The pending line points into the reader's buffer, which the next read moves:
             * it is placed before any further read, as the loop above only reads when
             * have_pending is 0. */
            if (q->n == 0)
                break;
            if (expect && (have_pending || q->n == batch || R->requests_sent)) {
                fprintf(stderr, "spillway produce: with --expected-version every line must fit one request "
                                "(at most %" PRIu64 " lines, %" PRIu64 " bytes); nothing was sent\n",
                        batch, req_cap);
                R->not_sent += q->n;
                R->fatal = 1;
                input_done = 1;
                break;
            }
            R->requests_sent++;
            if (R->c.fd < 0 && spw_httpc_connect(&R->c, SPW_CLI_CONNECT_WAIT_MS)) {
                conn_lost = 1;
                R->not_sent += q->n;
                break;
            }
            if (send_req(R, q)) {
                conn_lost = 1;
                R->unknown += q->n;
                break;
            }
            inflight++;
        }
        if (tty && spw_mono_ns() - last_progress > 100000000ull) {
            last_progress = spw_mono_ns();
            progress(&rd, R, size, t0, 0);
        }
        if (inflight == 0)
            break;
        /* The oldest answer. */
        req *q = &slots[head];
        st = conn_lost ? -1 : spw_httpc_read(&R->c, &r);
        if (st < 0) {
            if (!conn_lost)
                fprintf(stderr, "spillway produce: connection to %s:%s lost: %s\n", R->c.host, R->c.port,
                        strerror(errno));
            conn_lost = 1;
            for (uint32_t k = 0; k < inflight; k++) {
                req *x = &slots[(head + k) % D];
                if (x->n)
                    fprintf(stderr, "spillway produce: lines %" PRIu64 "..%" PRIu64
                                    " were in flight: not known whether they were stored\n",
                            x->lines[0], x->lines[x->n - 1]);
                R->unknown += x->n;
            }
            inflight = 0;
            break;
        }
        int again = handle_answer(R, q, &r);
        if (r.close && !conn_lost) {
            /* The server closes after this answer: later requests on it are lost. */
            spw_httpc_close(&R->c);
        }
        head = (head + 1) % D;
        inflight--;
        if (again && !R->fatal) {
            /* Back of the queue, same buffers: swap it into the free slot. */
            req *dst = &slots[(head + inflight) % D];
            if (dst != q) {
                req tmp = *dst;
                *dst = *q;
                *q = tmp;
            }
            if (R->c.fd < 0 && spw_httpc_connect(&R->c, SPW_CLI_CONNECT_WAIT_MS)) {
                conn_lost = 1;
                R->not_sent += dst->n;
            } else if (send_req(R, dst)) {
                conn_lost = 1;
                R->unknown += dst->n;
            } else {
                inflight++;
            }
        } else if (again) {
            R->not_sent += q->n;
        }
    }
    if (tty)
        progress(&rd, R, size, t0, 1);
    double secs = (double)(spw_mono_ns() - t0) / 1e9;
    fprintf(stderr, "produced %s to stream %s%s%s: %" PRIu64 " accepted, %" PRIu64 " rejected", label, stream,
            rt ? " on node " : "", rt ? spw__cli_cluster_name(rt->cl, rt->node) : "", R->accepted, R->rejected);
    if (R->failed)
        fprintf(stderr, ", %" PRIu64 " failed (their requests were refused)", R->failed);
    if (R->unknown)
        fprintf(stderr, ", %" PRIu64 " unknown (in flight when the connection failed)", R->unknown);
    if (R->not_sent)
        fprintf(stderr, ", %" PRIu64 " not sent", R->not_sent);
    fprintf(stderr, " in %.3f s (%.0f events/s)\n", secs, secs > 0 ? (double)R->accepted / secs : 0.0);
    for (uint32_t i = 0; i < R->n_shown; i++)
        fprintf(stderr, "rejected %s\n", R->shown[i]);
    if (R->rejected > R->n_shown)
        fprintf(stderr, "... and %" PRIu64 " more rejected line(s)\n", R->rejected - R->n_shown);
    if (R->fatal || conn_lost || R->rejected >= max_rejects)
        fprintf(stderr, "stopped at line %" PRIu64 " of %s%s; the lines after it were not sent\n", rd.line, label,
                !R->fatal && !conn_lost ? " (--max-rejects reached)" : "");
    for (uint32_t i = 0; i < PIPELINE_MAX; i++) {
        spw_buf_fini(&slots[i].body);
        spw_free(slots[i].lines);
        spw_free(slots[i].offs);
    }
    spw_free(rd.buf);
    return R->rejected || R->failed || R->unknown || R->not_sent || R->fatal || conn_lost ? 1 : 0;
}

/*
 * Asks R's server for the stream's format, event limit and key pointer
 * and for its request limits, and sets up R and in (all but fd, label,
 * pipeline and max_rejects) to send to it. key (may be NULL; 128 bytes)
 * gets the stream's key pointer ("" for none). Returns 0,
 * or 1 after saying why on stderr.
 */
static int probe(run *R, const char *stream, const char *ack, const char *expect, uint64_t *batch, pass_in *in,
                 char *key)
{
    spw_httpc_resp r;
    snprintf(R->target, sizeof R->target, "/v1/streams/%s", stream);
    int st = spw_httpc_request(&R->c, "GET", R->target, NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, &r);
    if (st != 200) {
        if (st < 0)
            spw__cli_conn_error("produce", &R->c);
        else
            spw__cli_server_error("produce", &r);
        if (st == 404)
            fprintf(stderr, "(create it with: spillway stream create %s)\n", stream);
        return 1;
    }
    spw_json_span o, lim;
    char fmt[16] = "json";
    uint64_t max_event = 1 << 20, max_request = 16u << 20, max_pending = 64u << 20;
    if (spw__cli_parse(r.body, r.body_len, &o) == 0) {
        spw__cli_str(&o, "format", fmt, sizeof fmt);
        max_event = (uint64_t)spw__cli_int(&o, "max_event_bytes", (int64_t)max_event);
        if (key)
            spw__cli_str(&o, "key", key, 128);
    }
    if (spw_httpc_request(&R->c, "GET", "/v1/status", NULL, NULL, NULL, 0, 0, &r) == 200 &&
        spw__cli_parse(r.body, r.body_len, &o) == 0 && spw__cli_member(&o, "limits", &lim)) {
        max_request = (uint64_t)spw__cli_int(&lim, "max_request_bytes", (int64_t)max_request);
        max_pending = (uint64_t)spw__cli_int(&lim, "max_pending_bytes", (int64_t)max_pending);
    }
    /* A request's batches must also fit the server's pending-bytes budget. */
    uint64_t req_cap = max_request < max_pending / 4 ? max_request : max_pending / 4;
    if (req_cap < 1024)
        req_cap = 1024;
    R->bytes_stream = strcmp(fmt, "bytes") == 0;
    uint64_t line_limit = R->bytes_stream ? (max_event < max_request ? max_event : max_request)
                                          : (max_event < req_cap - 1 ? max_event : req_cap - 1);
    const char *limit_name = line_limit == max_event ? "the stream's max_event_bytes" : "the server's request size limit";
    if (R->bytes_stream)
        *batch = 1;
    snprintf(R->target, sizeof R->target, "/v1/streams/%s/events", stream);
    R->ctype = R->bytes_stream ? "application/octet-stream" : "application/x-ndjson";
    if (ack)
        snprintf(R->extra, sizeof R->extra, "Spillway-Ack: %s\r\n", ack);
    if (expect) {
        /* One request: the expectation holds for all of it, never for a part. */
        size_t el = strlen(R->extra);
        snprintf(R->extra + el, sizeof R->extra - el, "Spillway-Expected-Version: %s\r\n", expect);
        *batch = 100000;
    }
    *in = (pass_in){.stream = stream, .line_limit = line_limit, .limit_name = limit_name, .req_cap = req_cap,
                    .batch = *batch, .expect = expect};
    return 0;
}

/* `produce --server A,B,C`: one pass over the input per node (route
 * above). The input is copied to an unlinked temporary file first when it
 * cannot be read again (stdin, a pipe). */
static int produce_cluster(const char *server, const char *ring, const char *stream, int fd, const char *label,
                           const char *ack, const char *token, uint64_t batch, uint64_t pipeline,
                           uint64_t max_rejects)
{
    static spw_cli_cluster cl;
    int rc = spw__cli_cluster_parse("produce", server, ring, &cl);
    if (rc)
        return rc;
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || lseek(fd, 0, SEEK_CUR) < 0) {
        const char *dir = getenv("TMPDIR");
        char tmpl[4096];
        snprintf(tmpl, sizeof tmpl, "%s/spillway-produce-XXXXXX", dir && dir[0] ? dir : "/tmp");
        int t = mkstemp(tmpl);
        if (t < 0) {
            fprintf(stderr, "spillway produce: a temporary copy of %s (%s): %s\n", label, tmpl, strerror(errno));
            spw__cli_cluster_free(&cl);
            return 1;
        }
        unlink(tmpl);
        char buf[1 << 16];
        ssize_t k;
        while ((k = read(fd, buf, sizeof buf)) != 0) {
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 || write(t, buf, (size_t)k) != k) {
                fprintf(stderr, "spillway produce: copying %s to a temporary file: %s\n", label, strerror(errno));
                close(t);
                spw__cli_cluster_free(&cl);
                return 1;
            }
        }
        if (fd > 0)
            close(fd);
        fd = t;
    }
    static run R[SPW_CLI_NODES_MAX];
    static pass_in in[SPW_CLI_NODES_MAX];
    int up[SPW_CLI_NODES_MAX] = {0};
    route rt = {.cl = &cl, .up = up};
    char key[128] = "", key0[128] = "";
    for (uint32_t i = 0; i < cl.n; i++) {
        R[i] = (run){.cmd = "produce"};
        uint64_t b = batch;
        if ((rc = spw__cli_server("produce", spw__cli_cluster_name(&cl, i), &R[i].c)) == 0) {
            R[i].c.tls = cl.tls[i];
            rc = spw__cli_token("produce", token, &R[i].c, &token);
        }
        if (rc)
            break;
        key[0] = 0;
        if (probe(&R[i], stream, ack, NULL, &b, &in[i], key)) {
            fprintf(stderr, "spillway produce: node %s cannot take the stream: the lines of its keys are not sent\n",
                    spw__cli_cluster_name(&cl, i));
            continue;
        }
        if (rt.nup == 0) {
            rt.first_up = i;
            snprintf(key0, sizeof key0, "%s", key);
            rt.keyed = key[0] && !R[i].bytes_stream;
        } else if (strcmp(key, key0) || R[i].bytes_stream != R[rt.first_up].bytes_stream) {
            fprintf(stderr, "spillway produce: stream %s differs between nodes %s and %s (key or format): nothing "
                            "was sent\n", stream, spw__cli_cluster_name(&cl, rt.first_up),
                    spw__cli_cluster_name(&cl, i));
            rc = 1;
            break;
        }
        in[i].fd = fd;
        in[i].label = label;
        in[i].pipeline = pipeline;
        in[i].max_rejects = max_rejects;
        up[i] = 1;
        rt.nup++;
    }
    if (!rc && rt.nup == 0) {
        fprintf(stderr, "spillway produce: no node of %s answers: nothing was sent\n", server);
        rc = 1;
    }
    if (!rc && rt.keyed && spw_json_ptr_compile(&rt.kp, key0)) {
        fprintf(stderr, "spillway produce: the stream's key pointer '%s' is not one this command reads\n", key0);
        rc = 1;
    }
    uint64_t accepted = 0, rejected = 0, other = 0, down = 0;
    int worst = 0;
    for (uint32_t i = 0; i < cl.n && !rc; i++) {
        if (!up[i])
            continue;
        if (lseek(fd, 0, SEEK_SET) < 0) {
            fprintf(stderr, "spillway produce: rewinding %s: %s\n", label, strerror(errno));
            worst = 1;
            break;
        }
        rt.node = i;
        rt.first = i == rt.first_up;
        rt.seen = 0;
        int r = produce_pass(&R[i], &in[i], &rt);
        if (r > worst)
            worst = r;
        accepted += R[i].accepted;
        rejected += R[i].rejected;
        other += R[i].failed + R[i].unknown + R[i].not_sent;
    }
    for (uint32_t i = 0; i < cl.n; i++) {
        spw_httpc_close(&R[i].c);
        if (!up[i] && rt.down_lines[i]) {
            fprintf(stderr, "node %s: %" PRIu64 " line(s) of its keys failed: the node did not answer (above)\n",
                    spw__cli_cluster_name(&cl, i), rt.down_lines[i]);
            down += rt.down_lines[i];
        }
    }
    if (!rc)
        fprintf(stderr, "produced %s to stream %s over %u node(s): %" PRIu64 " accepted, %" PRIu64 " rejected, %" PRIu64
                        " failed (their node did not answer), %" PRIu64 " not known or not sent\n",
                label, stream, cl.n, accepted, rejected, down, other);
    if (down)
        worst = 1;
    spw_free(rt.kbuf);
    if (fd > 0)
        close(fd);
    spw__cli_cluster_free(&cl);
    return rc ? rc : worst;
}

int spw_cmd_produce(int argc, char **argv)
{
    const char *server = NULL, *stream = NULL, *file = NULL, *ack = NULL, *token = NULL, *expect = NULL, *ring = NULL;
    uint64_t batch = 1000, pipeline = 1, max_rejects = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int m;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spw_help_write(stdout, produce_help, SPW_HELP_WIDTH);
            return 0;
        }
        if ((m = spw__cli_opt("produce", argc, argv, &i, "--server", &v))) {
            if (m < 0)
                return 2;
            server = v;
        } else if ((m = spw__cli_opt("produce", argc, argv, &i, "--ring", &v))) {
            if (m < 0)
                return 2;
            ring = v;
        } else if ((m = spw__cli_opt("produce", argc, argv, &i, "--token", &v))) {
            if (m < 0)
                return 2;
            token = v;
        } else if ((m = spw__cli_opt("produce", argc, argv, &i, "--ack", &v))) {
            if (m < 0)
                return 2;
            if (strcmp(v, "none") && strcmp(v, "written") && strcmp(v, "fsync") && strcmp(v, "replicated")) {
                fprintf(stderr, "spillway produce: --ack takes none, written, fsync or replicated, not '%s'\n", v);
                return 2;
            }
            ack = v;
        } else if ((m = spw__cli_opt("produce", argc, argv, &i, "--batch", &v))) {
            if (m < 0 || spw__cli_u64(v, 1, 100000, &batch)) {
                if (m > 0)
                    fprintf(stderr, "spillway produce: --batch takes 1 to 100000, not '%s'\n", v);
                return 2;
            }
        } else if ((m = spw__cli_opt("produce", argc, argv, &i, "--pipeline", &v))) {
            if (m < 0 || spw__cli_u64(v, 1, PIPELINE_MAX, &pipeline)) {
                if (m > 0)
                    fprintf(stderr, "spillway produce: --pipeline takes 1 to %d, not '%s'\n", PIPELINE_MAX, v);
                return 2;
            }
        } else if ((m = spw__cli_opt("produce", argc, argv, &i, "--expected-version", &v))) {
            if (m < 0)
                return 2;
            /* the server checks the value; here only that it is a word or a number */
            size_t vl = strlen(v);
            if (vl == 0 || vl > 31 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789") != vl) {
                fprintf(stderr, "spillway produce: --expected-version takes any, none, exists or a number, not '%s'\n",
                        v);
                return 2;
            }
            expect = v;
        } else if ((m = spw__cli_opt("produce", argc, argv, &i, "--max-rejects", &v))) {
            if (m < 0 || spw__cli_u64(v, 1, UINT64_MAX, &max_rejects)) {
                if (m > 0)
                    fprintf(stderr, "spillway produce: --max-rejects takes a positive integer, not '%s'\n", v);
                return 2;
            }
        } else if ((a[0] != '-' || strcmp(a, "-") == 0) && !stream) {
            stream = a;
        } else if ((a[0] != '-' || strcmp(a, "-") == 0) && !file) {
            file = a;
        } else {
            fprintf(stderr, "spillway produce: unexpected argument '%s'\n", a);
            spw_help_write(stderr, produce_help, SPW_HELP_WIDTH);
            return 2;
        }
    }
    if (!stream) {
        fputs("spillway produce: a STREAM is required\n", stderr);
        spw_help_write(stderr, produce_help, SPW_HELP_WIDTH);
        return 2;
    }
    if (!spw__cli_stream_name_ok(stream)) {
        fprintf(stderr, "spillway produce: '%s' is not a stream name (" SPW_NAME_RULE ")\n",
                stream);
        return 2;
    }
    const char *label = file && strcmp(file, "-") ? file : "stdin";
    int fd = 0;
    if (file && strcmp(file, "-")) {
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "spillway produce: %s: %s\n", file, strerror(errno));
            return 1;
        }
    }
    if (ring && !(server && strchr(server, ','))) {
        fprintf(stderr, "spillway produce: --ring goes with a --server list of several nodes\n");
        if (fd > 0)
            close(fd);
        return 2;
    }
    if (server && strchr(server, ',')) {
        if (expect) {
            fprintf(stderr, "spillway produce: --expected-version takes one --server (the node of the key)\n");
            if (fd > 0)
                close(fd);
            return 2;
        }
        return produce_cluster(server, ring, stream, fd, label, ack, token, batch, pipeline, max_rejects);
    }
    run R = {.cmd = "produce"};
    int rc = spw__cli_server("produce", server, &R.c);
    if (!rc)
        rc = spw__cli_token("produce", token, &R.c, &token);
    if (rc) {
        if (fd > 0)
            close(fd);
        return rc;
    }

    pass_in in;
    rc = probe(&R, stream, ack, expect, &batch, &in, NULL);
    if (rc) {
        spw_httpc_close(&R.c);
        if (fd > 0)
            close(fd);
        return rc;
    }
    in.fd = fd;
    in.label = label;
    in.pipeline = pipeline;
    in.max_rejects = max_rejects;
    rc = produce_pass(&R, &in, NULL);
    spw_httpc_close(&R.c);
    if (fd > 0)
        close(fd);
    return rc;
}
