/*
 * `spillway view create|list|show|get|series|top|rebuild|delete`: the
 * view endpoints of the HTTP API (docs/api.md "Views"). create builds the
 * definition from flags (or takes it whole with --body); list and show
 * print tables; get, series and top print the server's JSON answer, one
 * line. Each prints the server's own error sentence on failure. With
 * --server A,B,C (cli/cluster.h) get and series go to the key's node, top
 * merges every node's list (top_cluster), the rest run on every node.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/help.h"
#include "cli/cmds.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/json.h"
#include "core/name.h"
#include "cli/cluster.h"
#include "cli/view_merge.h"

static const char view_usage[] =
    "usage: spillway view create NAME --stream S --kind latest|aggregate|sum\n"
    "                            [--field PTR] [--group-by $key|PTR] [--windows 10s,1m,1h]\n"
    "                            [--time event|arrival] [--grace D] [--order-by offset|ts]\n"
    "       spillway view create NAME --body JSON\n"
    "                            (the definition whole, as PUT /v1/views/NAME takes it)\n"
    "       spillway view list [--json]\n"
    "       spillway view show NAME [--json]\n"
    "       spillway view get NAME KEY [--min-offsets P:O,...] [--wait-ms N]\n"
    "       spillway view series NAME KEY [--window W] [--from T] [--to T]\n"
    "                            [--min-offsets ...] [--wait-ms N]\n"
    "       spillway view top NAME [--window W] [--at T] [--by count|sum] [--n N]\n"
    "                            [--min-offsets ...] [--wait-ms N]\n"
    "       spillway view verify NAME [--sample N]\n"
    "                            (recompute from the log and compare; exit 1 on a difference)\n"
    "       spillway view rebuild NAME\n"
    "       spillway view delete NAME\n"
    "Every form takes --server HOST:PORT (default $SPILLWAY_SERVER, else " SPW_CLI_DEFAULT_SERVER ") and\n"
    "--token T (a bearer token for a server with tokens; default $SPILLWAY_TOKEN). Times are ms since the\n"
    "Unix epoch; durations take ms, s, m, h, d. docs/api.md \"Views\" says what each kind keeps.\n"
    "A cluster: --server=A,B,C. get and series of a view grouped by $key ask the node the ring\n"
    "names for KEY (the client library's ring; --ring LIST places keys by LIST's addresses\n"
    "instead, e.g. the nodes' binary ones, same count and order); of a view grouped by a field\n"
    "they ask every node and add the parts (a latest view ordered by offset with records on\n"
    "several nodes is refused); top asks every node for N (1000 when grouped by a field) and\n"
    "merges, exit 1 when that cannot be exact; the other forms run on every node in turn.\n"
    "docs/api.md \"Reads across nodes\".\n";

/* Appends s percent-encoded (all but unreserved bytes) to b. */
static void pct(spw_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p))
            spw_buf_xprintf(b, "%c", *p);
        else
            spw_buf_xprintf(b, "%%%02X", *p);
    }
}

typedef struct vopts {
    const char *stream, *kind, *field, *group_by, *windows, *time, *grace, *order_by, *body;
    const char *min_offsets, *wait_ms, *window, *from, *to, *at, *by, *n, *sample;
} vopts;

/* quiet: a 404 unknown_key is returned as -2, not printed (a node without
 * a part of the key, in a read over every node). */
static int request(spw_httpc *c, const char *cmd, const char *method, const char *target, const char *body,
                   spw_httpc_resp *r, int quiet)
{
    int st = spw_httpc_request(c, method, target, body ? "application/json" : NULL, NULL, body,
                               body ? strlen(body) : 0, SPW_CLI_CONNECT_WAIT_MS, r);
    if (st < 0) {
        spw__cli_conn_error(cmd, c);
        return -1;
    }
    char code[32];
    if (quiet && st == 404 && spw__cli_error_parts(r->body, r->body_len, NULL, 0, code, sizeof code) == 0 &&
        strcmp(code, "unknown_key") == 0)
        return -2;
    if (st >= 300) {
        spw__cli_server_error(cmd, r);
        return -1;
    }
    return st;
}

/* The definition from the flags (JSON strings escaped). */
static int build_def(const vopts *o, spw_buf *b)
{
    if (o->body) {
        spw_buf_xprintf(b, "%s", o->body);
        return 0;
    }
    if (!o->stream || !o->kind) {
        fprintf(stderr, "spillway view create: --stream and --kind are required (or --body)\n");
        spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
        return 2;
    }
    struct {
        const char *name, *v;
    } s[] = {{"stream", o->stream}, {"kind", o->kind},   {"field", o->field}, {"group_by", o->group_by},
             {"time", o->time},     {"grace", o->grace}, {"order_by", o->order_by}};
    spw_buf_xprintf(b, "{");
    int first = 1;
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        if (!s[i].v)
            continue;
        spw_buf_xprintf(b, "%s\"%s\":", first ? "" : ",", s[i].name);
        spw_json_xput_str(b, s[i].v, strlen(s[i].v));
        first = 0;
    }
    if (o->windows) {
        spw_buf_xprintf(b, ",\"windows\":[");
        const char *p = o->windows;
        int k = 0;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            spw_buf_xprintf(b, "%s", k++ ? "," : "");
            spw_json_xput_str(b, p, n);
            p += n + (e ? 1 : 0);
        }
        spw_buf_xprintf(b, "]");
    }
    spw_buf_xprintf(b, "}");
    return 0;
}

static void show_one(const spw_json_span *e, int header)
{
    char name[130], state[32], kind[32], stream[130];
    spw_json_span d;
    spw__cli_str(e, "name", name, sizeof name);
    spw__cli_str(e, "state", state, sizeof state);
    kind[0] = stream[0] = 0;
    if (spw__cli_member(e, "definition", &d)) {
        spw__cli_str(&d, "kind", kind, sizeof kind);
        spw__cli_str(&d, "stream", stream, sizeof stream);
    }
    if (header)
        printf("%-24s %-10s %-24s %-12s %12s %10s %10s %8s\n", "NAME", "KIND", "STREAM", "STATE", "APPLIED", "LAG",
               "KEYS", "LATE");
    printf("%-24s %-10s %-24s %-12s %12" PRId64 " %10" PRId64 " %10" PRId64 " %8" PRId64 "\n", name, kind, stream,
           state, spw__cli_int(e, "applied_total", 0), spw__cli_int(e, "lag_events", 0), spw__cli_int(e, "keys", 0),
           spw__cli_int(e, "late", 0));
}

/* Runs sub on one server. capture (reads over a cluster): the answer's body
 * is put there instead of printed, and a 404 unknown_key returns 3 unsaid. */
static int run_as(spw_httpc *c, const char *as, const char *sub, const char *name, const char *key, const vopts *o,
                  int json, spw_buf *capture);

static int run(spw_httpc *c, const char *sub, const char *name, const char *key, const vopts *o, int json,
               spw_buf *capture)
{
    return run_as(c, NULL, sub, name, key, o, json, capture);
}

/* run, its messages said as command as ("view top" reading the definition
 * it needs), or as "view SUB" when as is NULL. */
static int run_as(spw_httpc *c, const char *as, const char *sub, const char *name, const char *key, const vopts *o,
                  int json, spw_buf *capture)
{
    char cmd[32];
    if (as)
        snprintf(cmd, sizeof cmd, "%s", as);
    else
        snprintf(cmd, sizeof cmd, "view %s", sub);
    spw_buf t = SPW_BUF_INIT, body = SPW_BUF_INIT;
    spw_httpc_resp r;
    int rc = 1, st;
    spw_buf_xprintf(&t, "/v1/views");
    if (name) {
        spw_buf_xprintf(&t, "/");
        pct(&t, name);
    }
    if (strcmp(sub, "create") == 0) {
        if ((rc = build_def(o, &body)) != 0)
            goto out;
        rc = 1;
        spw_buf_put(&body, "", 1);
        spw_buf_put(&t, "", 1);
        if ((st = request(c, cmd, "PUT", (const char *)t.p, (const char *)body.p, &r, 0)) < 0)
            goto out;
        printf(st == 201 ? "created view %s: %.*s\n" : "view %s already exists with this definition: %.*s\n", name,
               (int)r.body_len, r.body);
        rc = 0;
        goto out;
    }
    const char *method = "GET";
    if (strcmp(sub, "rebuild") == 0) {
        spw_buf_xprintf(&t, "/rebuild");
        method = "POST";
    } else if (strcmp(sub, "delete") == 0) {
        method = "DELETE";
    } else if (strcmp(sub, "get") == 0 || strcmp(sub, "series") == 0) {
        spw_buf_xprintf(&t, "/keys/");
        pct(&t, key);
        if (strcmp(sub, "series") == 0)
            spw_buf_xprintf(&t, "/series");
    } else if (strcmp(sub, "top") == 0) {
        spw_buf_xprintf(&t, "/top");
    } else if (strcmp(sub, "verify") == 0) {
        spw_buf_xprintf(&t, "/verify");
    }
    const struct {
        const char *q, *v;
    } qs[] = {{"window", o->window}, {"from", o->from}, {"to", o->to}, {"at", o->at}, {"by", o->by},
              {"n", o->n}, {"min_offsets", o->min_offsets}, {"wait_ms", o->wait_ms}, {"sample", o->sample}};
    char sep = '?';
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        if (qs[i].v) {
            spw_buf_xprintf(&t, "%c%s=", sep, qs[i].q);
            pct(&t, qs[i].v);
            sep = '&';
        }
    spw_buf_put(&t, "", 1);
    if ((st = request(c, cmd, method, (const char *)t.p, strcmp(method, "POST") == 0 ? "" : NULL, &r,
                      capture != NULL)) < 0) {
        if (st == -2)
            rc = 3; /* the node has no part of the key */
        goto out;
    }
    rc = 0;
    if (capture) {
        spw_buf_put(capture, r.body, r.body_len);
    } else if (strcmp(sub, "delete") == 0) {
        printf("deleted view %s\n", name);
    } else if (strcmp(sub, "rebuild") == 0) {
        printf("view %s: rebuilding from the start of its stream\n", name);
    } else if (json || (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0)) {
        fwrite(r.body, 1, r.body_len, stdout);
        if (!r.body_len || r.body[r.body_len - 1] != '\n')
            putchar('\n'); /* one line */
        if (strcmp(sub, "verify") == 0 && !memmem(r.body, r.body_len, "\"ok\":true", 9))
            rc = 1; /* the view differs from its log */
    } else {
        spw_json_span obj, arr, e;
        if (spw__cli_parse(r.body, r.body_len, &obj) < 0) {
            fprintf(stderr, "spillway %s: the server's answer is not JSON\n", cmd);
            rc = 1;
        } else if (strcmp(sub, "show") == 0) {
            show_one(&obj, 1);
        } else if (spw__cli_member(&obj, "views", &arr)) {
            const char *cur = NULL;
            int n = 0;
            while (spw__cli_array_next(&arr, &cur, &e))
                show_one(&e, n++ == 0);
            if (!n)
                puts("no views");
        }
    }
out:
    spw_buf_fini(&t);
    spw_buf_fini(&body);
    return rc;
}

/* Opens node i of cl (no connection yet) with the token. 0, or 2 said. */
static int node_open(const spw_cli_cluster *cl, uint32_t i, const char *cmd, const char *token, spw_httpc *c)
{
    const char *t;
    int r = spw__cli_server(cmd, spw__cli_cluster_name(cl, i), c);
    if (r)
        return r;
    c->tls = cl->tls[i];
    if ((r = spw__cli_token(cmd, token, c, &t)) != 0)
        spw_httpc_close(c);
    return r;
}

/* What a read over a cluster needs of a view's definition. */
typedef struct vdef {
    char kind[16], group_by[256], order_by[16];
} vdef;

/* The definition of view name from c's node. 0, or 1 said. */
static int view_def(spw_httpc *c, const char *cmd, const char *name, vdef *d)
{
    static const vopts none;
    spw_buf b = SPW_BUF_INIT;
    spw_json_span obj, def;
    int rc = run_as(c, cmd, "show", name, NULL, &none, 1, &b);
    if (rc == 0) {
        if (spw__cli_parse((const char *)b.p, b.len, &obj) < 0 || !spw__cli_member(&obj, "definition", &def)) {
            fprintf(stderr, "spillway %s: the server's answer is not a view\n", cmd);
            rc = 1;
        } else {
            spw__cli_str(&def, "kind", d->kind, sizeof d->kind);
            spw__cli_str(&def, "group_by", d->group_by, sizeof d->group_by);
            spw__cli_str(&def, "order_by", d->order_by, sizeof d->order_by);
            if (!d->group_by[0])
                snprintf(d->group_by, sizeof d->group_by, "$key");
        }
    }
    spw_buf_fini(&b);
    return rc ? 1 : 0;
}

/* One entry of a node's top list (or, grouped, of the merged list). */
typedef struct top_ent {
    char key[512];
    double v;           /* the --by measure */
    double up;          /* grouped: the most it can be (parts a full node list left out added) */
    uint32_t node;
    int exact;          /* grouped: every part of it is known */
    const char *p;      /* its JSON text in the node's answer (or in the merged text) */
    size_t n, off;
} top_ent;

static int top_cmp(const void *a, const void *b)
{
    const top_ent *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return strcmp(x->key, y->key); /* ties by key, as one server orders them */
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(((const top_ent *)a)->key, ((const top_ent *)b)->key);
}

#define TOP_MAX 1000 /* the most one node lists (docs/api.md "Reads") */

/*
 * A view grouped by a field (not $key): a group may have a part on every
 * node, so the entries of one key are merged (view_merge.h) and the list
 * is sorted again. Each node was asked for TOP_MAX; a node that listed
 * that many may have left keys out, each worth at most its last entry
 * (or 0), so the merged top is exact only when every key kept has all its
 * parts (it is in every such node's list) and is above the most any other
 * key can reach. *exact says which.
 */
static top_ent *top_group(top_ent *ents, uint32_t nent, const uint32_t *listed, const double *last, uint32_t nodes,
                          uint32_t want, spw_buf *text, uint32_t *nout, int *exact)
{
    qsort(ents, nent, sizeof *ents, key_cmp);
    top_ent *m = spw_xmalloc((nent ? nent : 1) * sizeof *m);
    uint32_t nm = 0;
    double unseen = 0; /* the most a key in no list can reach */
    for (uint32_t i = 0; i < nodes; i++)
        if (listed[i] >= TOP_MAX && last[i] > 0)
            unseen += last[i];
    for (uint32_t a = 0, b; a < nent; a = b) {
        spw_json_span parts[SPW_CLI_NODES_MAX];
        uint64_t in = 0;
        double v = 0;
        for (b = a; b < nent && strcmp(ents[b].key, ents[a].key) == 0; b++) {
            parts[b - a] = (spw_json_span){ents[b].p, ents[b].n, SPW_JSON_OBJECT};
            in |= 1ull << ents[b].node;
            v += ents[b].v;
        }
        top_ent *t = &m[nm++];
        *t = ents[a];
        t->v = v;
        t->up = v;
        t->exact = 1;
        for (uint32_t i = 0; i < nodes; i++)
            if (listed[i] >= TOP_MAX && !(in & (1ull << i))) {
                t->exact = 0;
                if (last[i] > 0)
                    t->up += last[i];
            }
        t->off = text->len;
        spw__cli_view_merge(parts, b - a, text);
        t->n = text->len - t->off;
    }
    for (uint32_t k = 0; k < nm; k++)
        m[k].p = (const char *)text->p + m[k].off;
    qsort(m, nm, sizeof *m, top_cmp);
    uint32_t keep = want > 0 && nm > want ? want : nm;
    double bound = unseen;
    for (uint32_t k = keep; k < nm; k++)
        if (m[k].up > bound)
            bound = m[k].up;
    *exact = 1;
    for (uint32_t k = 0; k < keep; k++)
        if (!m[k].exact)
            *exact = 0;
    if (keep && bound > 0 && !(m[keep - 1].v > bound))
        *exact = 0;
    if (!keep && unseen > 0)
        *exact = 0;
    *nout = keep;
    return m;
}

/*
 * `view top --server a,b,c`: every node's top N, merged and cut to N.
 * Grouped by $key it is exact, as the ring gives each key to one node: a
 * key in the cluster's top N is in its own node's top N. Grouped by a
 * field, each node is asked for TOP_MAX and the parts of a group added
 * (top_group); when that cannot be exact, the command says so and exits 1.
 * A node answers for the bucket holding its highest time applied when
 * --at is not given; a node whose bucket starts earlier has no event in
 * the latest one, so the merge keeps the latest start and drops the lists
 * of older buckets.
 */
static int top_cluster(const spw_cli_cluster *cl, const char *token, const char *name, const vopts *o)
{
    spw_buf bodies[SPW_CLI_NODES_MAX], text = SPW_BUF_INIT;
    int rc = 0, grouped = 0;
    uint32_t nent = 0, cap = 0, listed[SPW_CLI_NODES_MAX] = {0};
    double last[SPW_CLI_NODES_MAX] = {0};
    top_ent *ents = NULL, *merged = NULL;
    int64_t start_max = INT64_MIN;
    int64_t starts[SPW_CLI_NODES_MAX];
    int final = 1;
    char window[64] = "", by[16];
    vopts ask = *o;
    snprintf(by, sizeof by, "%s", o->by ? o->by : "count");
    long want = o->n ? strtol(o->n, NULL, 10) : 10;
    for (uint32_t i = 0; i < cl->n; i++) {
        bodies[i] = (spw_buf)SPW_BUF_INIT;
        spw_httpc c;
        int r = node_open(cl, i, "view top", token, &c);
        if (r == 0 && i == 0) {
            vdef d;
            if ((r = view_def(&c, "view top", name, &d)) == 0 && strcmp(d.group_by, "$key") != 0) {
                grouped = 1;
                ask.n = "1000"; /* TOP_MAX: see top_group */
            }
        }
        if (r == 0)
            r = run(&c, "top", name, NULL, &ask, 0, &bodies[i]);
        if (r) {
            fprintf(stderr, "spillway view top: node %s failed: the top of the cluster is not known\n",
                    spw__cli_cluster_name(cl, i));
            rc = 1;
        }
        spw_httpc_close(&c);
        if (rc)
            break;
    }
    for (uint32_t i = 0; i < cl->n && !rc; i++) {
        spw_json_span obj, arr;
        if (spw__cli_parse((const char *)bodies[i].p, bodies[i].len, &obj) < 0 ||
            !spw__cli_member(&obj, "keys", &arr)) {
            fprintf(stderr, "spillway view top: node %s: the answer is not a top list\n", spw__cli_cluster_name(cl, i));
            rc = 1;
            break;
        }
        starts[i] = spw__cli_int(&obj, "start", INT64_MIN);
        if (starts[i] > start_max)
            start_max = starts[i];
    }
    for (uint32_t i = 0; i < cl->n && !rc; i++) {
        spw_json_span obj, arr, e, m;
        spw__cli_parse((const char *)bodies[i].p, bodies[i].len, &obj);
        spw__cli_member(&obj, "keys", &arr);
        if (starts[i] != start_max)
            continue; /* an older bucket: nothing of this node in the latest one */
        if (!window[0])
            spw__cli_str(&obj, "window", window, sizeof window);
        if (spw__cli_member(&obj, "final", &m) && m.type == SPW_JSON_FALSE)
            final = 0;
        const char *cur = NULL;
        while (spw__cli_array_next(&arr, &cur, &e)) {
            if (nent == cap) {
                cap = cap ? cap * 2 : 64;
                ents = spw_xrealloc(ents, cap * sizeof *ents);
            }
            top_ent *t = &ents[nent++];
            spw__cli_str(&e, "key", t->key, sizeof t->key);
            t->v = spw__cli_view_num(&e, by);
            t->node = i;
            t->p = e.p;
            t->n = e.n;
            listed[i]++;
            last[i] = t->v;
        }
    }
    uint32_t nout = nent;
    top_ent *list = ents;
    if (!rc && grouped) {
        int exact;
        list = merged = top_group(ents, nent, listed, last, cl->n, want > 0 ? (uint32_t)want : 0, &text, &nout,
                                  &exact);
        if (!exact) {
            fprintf(stderr,
                    "spillway view top: view %s groups by a field, not by the stream's key, so a group has parts "
                    "on several nodes, and a node listed %d keys: the top %ld of the cluster is not known exactly "
                    "(ask with --at for a smaller bucket, or group the view by $key)\n",
                    name, TOP_MAX, want);
            rc = 1;
        }
    } else if (!rc) {
        qsort(ents, nent, sizeof *ents, top_cmp);
        if (want > 0 && nent > (uint32_t)want)
            nout = (uint32_t)want;
    }
    if (!rc) {
        spw_buf out = SPW_BUF_INIT;
        spw_buf_xprintf(&out, "{");
        if (window[0]) {
            spw_buf_xprintf(&out, "\"window\":");
            spw_json_xput_str(&out, window, strlen(window));
            spw_buf_xprintf(&out, ",");
        }
        if (start_max != INT64_MIN)
            spw_buf_xprintf(&out, "\"start\":%" PRId64 ",\"final\":%s,", start_max, final ? "true" : "false");
        spw_buf_xprintf(&out, "\"by\":");
        spw_json_xput_str(&out, by, strlen(by));
        spw_buf_xprintf(&out, ",\"nodes\":%u,\"keys\":[", cl->n);
        for (uint32_t k = 0; k < nout; k++)
            spw_buf_xprintf(&out, "%s%.*s", k ? "," : "", (int)list[k].n, list[k].p);
        spw_buf_xprintf(&out, "]}\n");
        fwrite(out.p, 1, out.len, stdout);
        spw_buf_fini(&out);
    }
    spw_free(ents);
    spw_free(merged);
    spw_buf_fini(&text);
    for (uint32_t i = 0; i < cl->n; i++)
        spw_buf_fini(&bodies[i]);
    return rc;
}

/* Orders the buckets of a merged series by start. */
typedef struct bucket {
    int64_t start;
    spw_json_span e;
} bucket;

static int bucket_cmp(const void *a, const void *b)
{
    const bucket *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Is record id a (decimal text) later than b? */
static int id_later(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la != lb ? la > lb : strcmp(a, b) > 0;
}

/*
 * get/series of a view grouped by a field over a cluster: every node is
 * asked (a node without a part answers 404 unknown_key) and the parts are
 * merged: count and sum added, min and max (view_merge.h), series bucket
 * by bucket; a latest view's answer is the record with the highest ts when
 * it orders by ts; ordered by offset, offsets of different nodes do not
 * compare, so a key with records on several nodes is refused.
 */
static int key_scatter(const spw_cli_cluster *cl, const char *token, const char *sub, const char *name,
                       const char *key, const vopts *o, const vdef *d)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "view %s", sub);
    spw_buf bodies[SPW_CLI_NODES_MAX];
    spw_json_span parts[SPW_CLI_NODES_MAX];
    uint32_t np = 0;
    int rc = 0;
    for (uint32_t i = 0; i < cl->n; i++) {
        bodies[i] = (spw_buf)SPW_BUF_INIT;
        spw_httpc c;
        int r = node_open(cl, i, cmd, token, &c);
        if (r == 0) {
            r = run(&c, sub, name, key, o, 0, &bodies[i]);
            spw_httpc_close(&c);
        }
        if (r == 3)
            continue; /* no part here */
        if (r == 0 && spw__cli_parse((const char *)bodies[i].p, bodies[i].len, &parts[np]) == 0 &&
            parts[np].type == SPW_JSON_OBJECT) {
            np++;
            continue;
        }
        if (r == 0)
            fprintf(stderr, "spillway %s: node %s: the server's answer is not JSON\n", cmd,
                    spw__cli_cluster_name(cl, i));
        fprintf(stderr, "spillway %s: node %s failed: key %s of view %s (grouped by %s) has parts on every node: "
                        "the answer is not known without it\n",
                cmd, spw__cli_cluster_name(cl, i), key, name, d->group_by);
        rc = 1;
    }
    spw_buf out = SPW_BUF_INIT;
    if (rc) {
        /* said */
    } else if (np == 0) {
        fprintf(stderr, "spillway %s: no node of %u has key %s in view %s (HTTP 404, unknown_key)\n", cmd, cl->n,
                key, name);
        rc = 1;
    } else if (strcmp(d->kind, "latest") == 0) {
        uint32_t best = 0;
        if (np > 1 && strcmp(d->order_by, "ts") != 0) {
            fprintf(stderr,
                    "spillway %s: key %s of view %s (grouped by %s, order_by offset) has a latest record on %u "
                    "nodes, and offsets of different nodes do not order: which is the latest is not known "
                    "(order_by ts orders them; or ask each node with --server NODE)\n",
                    cmd, key, name, d->group_by, np);
            rc = 1;
        }
        for (uint32_t k = 1; k < np && !rc; k++) {
            int64_t tb = spw__cli_int(&parts[best], "ts", INT64_MIN), tk = spw__cli_int(&parts[k], "ts", INT64_MIN);
            char ib[32], ik[32];
            spw__cli_str(&parts[best], "id", ib, sizeof ib);
            spw__cli_str(&parts[k], "id", ik, sizeof ik);
            if (tk > tb || (tk == tb && id_later(ik, ib)))
                best = k;
        }
        if (!rc)
            spw_buf_xprintf(&out, "%.*s\n", (int)parts[best].n, parts[best].p);
    } else if (strcmp(sub, "get") == 0) {
        spw__cli_view_merge(parts, np, &out);
        out.len--; /* the closing brace */
        spw_buf_xprintf(&out, ",\"nodes\":%u}\n", np);
    } else { /* series */
        bucket *bs = NULL;
        size_t nb = 0, cap = 0;
        for (uint32_t k = 0; k < np; k++) {
            spw_json_span arr, e;
            const char *cur = NULL;
            if (!spw__cli_member(&parts[k], "buckets", &arr))
                continue;
            while (spw__cli_array_next(&arr, &cur, &e)) {
                if (nb == cap) {
                    cap = cap ? cap * 2 : 64;
                    bs = spw_xrealloc(bs, cap * sizeof *bs);
                }
                bs[nb++] = (bucket){spw__cli_int(&e, "start", 0), e};
            }
        }
        qsort(bs, nb, sizeof *bs, bucket_cmp);
        spw_json_span k0, w;
        spw_buf_xprintf(&out, "{");
        if (spw__cli_member(&parts[0], "key", &k0))
            spw_buf_xprintf(&out, "\"key\":%.*s,", (int)k0.n, k0.p);
        if (spw__cli_member(&parts[0], "window", &w))
            spw_buf_xprintf(&out, "\"window\":%.*s,", (int)w.n, w.p);
        spw_buf_xprintf(&out, "\"buckets\":[");
        for (size_t a = 0, b; a < nb; a = b) {
            spw_json_span same[SPW_CLI_NODES_MAX];
            for (b = a; b < nb && bs[b].start == bs[a].start && b - a < SPW_CLI_NODES_MAX; b++)
                same[b - a] = bs[b].e;
            if (a)
                spw_buf_xprintf(&out, ",");
            spw__cli_view_merge(same, b - a, &out);
        }
        spw_buf_xprintf(&out, "],\"nodes\":%u}\n", np);
        spw_free(bs);
    }
    if (!rc)
        fwrite(out.p, 1, out.len, stdout);
    spw_buf_fini(&out);
    for (uint32_t i = 0; i < cl->n; i++)
        spw_buf_fini(&bodies[i]);
    return rc;
}

/*
 * get/series over a cluster: the view's definition from the key's node
 * (one more request on the same connection); grouped by $key the key's
 * node answers alone, else every node is asked (key_scatter).
 */
static int key_cluster(const spw_cli_cluster *cl, const char *token, const char *sub, const char *name,
                       const char *key, const vopts *o)
{
    char cmd[32];
    snprintf(cmd, sizeof cmd, "view %s", sub);
    uint32_t node = spw__cli_cluster_node(cl, key, strlen(key));
    spw_httpc c;
    vdef d;
    int rc = node_open(cl, node, cmd, token, &c);
    if (rc)
        return rc;
    if ((rc = view_def(&c, cmd, name, &d)) == 0 && strcmp(d.group_by, "$key") == 0)
        rc = run(&c, sub, name, key, o, 0, NULL);
    spw_httpc_close(&c);
    if (rc == 0 && strcmp(d.group_by, "$key") != 0) {
        if (o->min_offsets) { /* P:O pairs are one node's offsets */
            fprintf(stderr,
                    "spillway %s: view %s groups by %s, so it is read from every node, and --min-offsets names "
                    "one node's offsets: wait on each node with --server NODE --min-offsets, then read\n",
                    cmd, name, d.group_by);
            return 1;
        }
        rc = key_scatter(cl, token, sub, name, key, o, &d);
    }
    return rc;
}

int spw_cmd_view(int argc, char **argv)
{
    static const char *const subs[] = {"create", "list", "show", "get", "series", "top", "verify", "rebuild", "delete"};
    if (argc < 2) {
    spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        spw_help_write(stdout, view_usage, SPW_HELP_WIDTH);
        return 0;
    }
    size_t si = 0;
    while (si < sizeof subs / sizeof subs[0] && strcmp(subs[si], sub))
        si++;
    if (si == sizeof subs / sizeof subs[0]) {
        fprintf(stderr, "spillway view: unknown subcommand '%s'\n", sub);
        spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
        return 2;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "view %s", sub);
    vopts o = {0};
    const char *server = NULL, *token = NULL, *name = NULL, *key = NULL, *ring = NULL;
    int json = 0;
    struct {
        const char *flag;
        const char **dst;
        const char *subs; /* where it is allowed */
    } flags[] = {
        {"--stream", &o.stream, "create"},       {"--kind", &o.kind, "create"},
        {"--field", &o.field, "create"},         {"--group-by", &o.group_by, "create"},
        {"--windows", &o.windows, "create"},     {"--time", &o.time, "create"},
        {"--grace", &o.grace, "create"},         {"--order-by", &o.order_by, "create"},
        {"--body", &o.body, "create"},           {"--window", &o.window, "series top"},
        {"--from", &o.from, "series"},           {"--to", &o.to, "series"},
        {"--at", &o.at, "top"},                  {"--by", &o.by, "top"},
        {"--n", &o.n, "top"},                    {"--min-offsets", &o.min_offsets, "get series top show"},
        {"--wait-ms", &o.wait_ms, "get series top show"},
        {"--sample", &o.sample, "verify"},
    };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spw_help_write(stdout, view_usage, SPW_HELP_WIDTH);
            return 0;
        }
        if ((m = spw__cli_opt(cmd, argc, argv, &i, "--server", &server)) ||
            (m = spw__cli_opt(cmd, argc, argv, &i, "--ring", &ring)) ||
            (m = spw__cli_opt(cmd, argc, argv, &i, "--token", &token))) {
            if (m < 0)
                return 2;
            continue;
        }
        if (strcmp(a, "--json") == 0 && (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0)) {
            json = 1;
            continue;
        }
        size_t k = 0;
        for (; k < sizeof flags / sizeof flags[0]; k++) {
            if ((m = spw__cli_opt(cmd, argc, argv, &i, flags[k].flag, flags[k].dst)) == 0)
                continue;
            if (m < 0)
                return 2;
            if (!strstr(flags[k].subs, sub)) {
                fprintf(stderr, "spillway %s: %s is not an option of view %s\n", cmd, flags[k].flag, sub);
                spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
                return 2;
            }
            break;
        }
        if (k < sizeof flags / sizeof flags[0])
            continue;
        if (a[0] == '-' && a[1]) {
            fprintf(stderr, "spillway %s: unknown option '%s'\n", cmd, a);
            spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
            return 2;
        }
        if (!name && strcmp(sub, "list") != 0)
            name = a;
        else if (!key && (strcmp(sub, "get") == 0 || strcmp(sub, "series") == 0))
            key = a;
        else {
            fprintf(stderr, "spillway %s: unexpected argument '%s'\n", cmd, a);
            spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
            return 2;
        }
    }
    if (strcmp(sub, "list") != 0 && (!name || !spw__cli_stream_name_ok(name))) {
        fprintf(stderr, "spillway %s: a view NAME is required (" SPW_NAME_RULE ")\n", cmd);
        spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
        return 2;
    }
    if ((strcmp(sub, "get") == 0 || strcmp(sub, "series") == 0) && (!key || !key[0])) {
        fprintf(stderr, "spillway %s: a KEY is required\n", cmd);
        spw_help_write(stderr, view_usage, SPW_HELP_WIDTH);
        return 2;
    }
    if (ring && !(server && strchr(server, ','))) {
        fprintf(stderr, "spillway %s: --ring goes with a --server list of several nodes\n", cmd);
        return 2;
    }
    if (server && strchr(server, ',')) {
        /* A cluster (docs/api.md "Reads across nodes"): a key's reads go
         * to the node the ring names; top asks every node and merges;
         * anything else runs on every node in turn. */
        spw_cli_cluster cl;
        int rc = spw__cli_cluster_parse(cmd, server, ring, &cl);
        if (rc)
            return rc;
        if (strcmp(sub, "top") == 0) {
            rc = top_cluster(&cl, token, name, &o);
        } else if (key) {
            rc = key_cluster(&cl, token, sub, name, key, &o);
        } else {
            for (uint32_t i = 0; i < cl.n; i++) {
                printf("node %s:\n", spw__cli_cluster_name(&cl, i));
                fflush(stdout);
                spw_httpc c;
                int r = spw__cli_server(cmd, spw__cli_cluster_name(&cl, i), &c);
                c.tls = cl.tls[i];
                if (r == 0 && (r = spw__cli_token(cmd, token, &c, &token)) == 0) {
                    r = run(&c, sub, name, key, &o, json, NULL);
                    spw_httpc_close(&c);
                }
                if (r > rc)
                    rc = r;
            }
        }
        spw__cli_cluster_free(&cl);
        return rc;
    }
    spw_httpc c;
    int rc = spw__cli_server(cmd, server, &c);
    if (rc == 0 && (rc = spw__cli_token(cmd, token, &c, &token)) == 0) {
        rc = run(&c, sub, name, key, &o, json, NULL);
        spw_httpc_close(&c);
    }
    return rc;
}
