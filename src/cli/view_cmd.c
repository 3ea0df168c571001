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
    "A cluster: --server=A,B,C. get and series ask the node the ring names for KEY (the client\n"
    "library's ring; --ring LIST places keys by LIST's addresses instead, e.g. the nodes' binary\n"
    "ones, same count and order); top asks every node for N and merges; the other forms run on\n"
    "every node in turn. docs/api.md \"Reads across nodes\".\n";

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

static int request(spw_httpc *c, const char *cmd, const char *method, const char *target, const char *body,
                   spw_httpc_resp *r)
{
    int st = spw_httpc_request(c, method, target, body ? "application/json" : NULL, NULL, body,
                               body ? strlen(body) : 0, SPW_CLI_CONNECT_WAIT_MS, r);
    if (st < 0) {
        spw__cli_conn_error(cmd, c);
        return -1;
    }
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

/* Runs sub on one server. capture (top over a cluster): the answer's body
 * is put there instead of printed. */
static int run(spw_httpc *c, const char *sub, const char *name, const char *key, const vopts *o, int json,
               spw_buf *capture)
{
    char cmd[32];
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
        if ((st = request(c, cmd, "PUT", (const char *)t.p, (const char *)body.p, &r)) < 0)
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
    if ((st = request(c, cmd, method, (const char *)t.p, strcmp(method, "POST") == 0 ? "" : NULL, &r)) < 0)
        goto out;
    rc = 0;
    if (capture) {
        spw_buf_put(capture, r.body, r.body_len);
    } else if (strcmp(sub, "delete") == 0) {
        printf("deleted view %s\n", name);
    } else if (strcmp(sub, "rebuild") == 0) {
        printf("view %s: rebuilding from the start of its stream\n", name);
    } else if (json || (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0)) {
        fwrite(r.body, 1, r.body_len, stdout);
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

/* One entry of a node's top list. */
typedef struct top_ent {
    char key[512];
    double v;           /* the --by measure */
    const char *p;      /* its JSON text in the node's answer */
    size_t n;
} top_ent;

static int top_cmp(const void *a, const void *b)
{
    const top_ent *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return strcmp(x->key, y->key); /* ties by key, as one server orders them */
}

/*
 * `view top --server a,b,c`: every node's top N, merged and cut to N.
 * Exact, as the ring gives each key to one node: a key in the cluster's
 * top N is in its own node's top N. A node answers for the bucket holding
 * its highest time applied when --at is not given; a node whose bucket
 * starts earlier has no event in the latest one, so the merge keeps the
 * latest start and drops the lists of older buckets.
 */
static int top_cluster(const spw_cli_cluster *cl, const char *token, const char *name, const vopts *o)
{
    spw_buf bodies[SPW_CLI_NODES_MAX];
    int rc = 0;
    uint32_t nent = 0, cap = 0;
    top_ent *ents = NULL;
    int64_t start_max = INT64_MIN;
    int64_t starts[SPW_CLI_NODES_MAX];
    int final = 1;
    char window[64] = "", by[16];
    snprintf(by, sizeof by, "%s", o->by ? o->by : "count");
    long want = o->n ? strtol(o->n, NULL, 10) : 10;
    for (uint32_t i = 0; i < cl->n; i++) {
        bodies[i] = (spw_buf)SPW_BUF_INIT;
        spw_httpc c;
        int r = spw__cli_server("view top", spw__cli_cluster_name(cl, i), &c);
        c.tls = cl->tls[i];
        const char *t;
        if (r || spw__cli_token("view top", token, &c, &t) ||
            run(&c, "top", name, NULL, o, 0, &bodies[i])) {
            fprintf(stderr, "spillway view top: node %s failed: the top of the cluster is not known\n",
                    spw__cli_cluster_name(cl, i));
            rc = 1;
        }
        spw_httpc_close(&c);
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
            t->v = spw__cli_member(&e, by, &m) && m.type == SPW_JSON_NUMBER ? strtod(m.p, NULL) : 0;
            t->p = e.p;
            t->n = e.n;
        }
    }
    if (!rc) {
        qsort(ents, nent, sizeof *ents, top_cmp);
        if (want > 0 && nent > (uint32_t)want)
            nent = (uint32_t)want;
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
        for (uint32_t k = 0; k < nent; k++)
            spw_buf_xprintf(&out, "%s%.*s", k ? "," : "", (int)ents[k].n, ents[k].p);
        spw_buf_xprintf(&out, "]}\n");
        fwrite(out.p, 1, out.len, stdout);
        spw_buf_fini(&out);
    }
    spw_free(ents);
    for (uint32_t i = 0; i < cl->n; i++)
        spw_buf_fini(&bodies[i]);
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
        } else {
            uint32_t only = key ? spw__cli_cluster_node(&cl, key, strlen(key)) : UINT32_MAX;
            for (uint32_t i = 0; i < cl.n; i++) {
                if (only != UINT32_MAX && i != only)
                    continue;
                if (only == UINT32_MAX) {
                    printf("node %s:\n", spw__cli_cluster_name(&cl, i));
                    fflush(stdout);
                }
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
