/*
 * `spillway sink create|list|show|delete`: the sink endpoints of the HTTP
 * API (docs/api.md "Sinks") in a readable form. A definition is the body
 * of PUT /v1/sinks/NAME, given as a file, '-' for stdin, or inline.
 * --json prints the server's body as it came.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cmds.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/help.h"
#include "core/name.h"

#define SINK_DEF_MAX (1u << 20)

static const char sink_usage[] =
    "usage: spillway sink create NAME (--file FILE | --definition JSON)\n"
    "       spillway sink list [--json]\n"
    "       spillway sink show NAME [--json]\n"
    "       spillway sink delete NAME\n"
    "       spillway sink reshard-abort NAME\n"
    "create: defines sink NAME (PUT /v1/sinks/NAME) from a definition, the JSON\n"
    "object of docs/api.md \"Sinks\" (stream, kind, batch, retry, dlq, options; the\n"
    "kinds' options are listed by 'spillway serve --help'). An identical sink is left\n"
    "as it is; a postgres sink with shards appended (or only its reshard_* options\n"
    "changed) is changed online, a reshard (docs/operations.md \"Adding a PostgreSQL\n"
    "shard\"); any other change of a sink's definition is an error (delete it first).\n"
    "The definition 'show --json' prints has its secrets redacted: a postgres\n"
    "shard's string sent back in its place stands for the running one; write\n"
    "other secrets, and new shards' connection strings, whole.\n"
    "list: every sink with its stream, kind, state, lag and last error.\n"
    "show: one sink's definition (secrets redacted), state and progress per\n"
    "partition. delete: stops and removes it (its target and DLQ are untouched).\n"
    "reshard-abort: rolls a postgres sink's reshard back to its old shards (before\n"
    "cutover; POST /v1/sinks/NAME/reshard/abort).\n\n"
    "  --file FILE          the definition is in FILE ('-': standard input)\n"
    "  --definition JSON    the definition itself\n"
    "  --json               print the server's JSON answer as it came\n" SPW_CLI_SERVER_HELP SPW_CLI_TOKEN_HELP;

static int request(spw_httpc *c, const char *cmd, const char *method, const char *target, const char *body,
                   size_t len, spw_httpc_resp *r)
{
    int st = spw_httpc_request(c, method, target, body ? "application/json" : NULL, NULL, body, len,
                               SPW_CLI_CONNECT_WAIT_MS, r);
    if (st < 0) {
        spw__cli_conn_error(cmd, c);
        return -1;
    }
    if (st < 200 || st > 299) {
        spw__cli_server_error(cmd, r);
        return -1;
    }
    return st;
}

/* "stream", "kind" and "dlq" of a sink answer's definition. */
static void def_fields(const spw_json_span *o, char *stream, char *kind, char *dlq, size_t cap)
{
    spw_json_span d;
    stream[0] = kind[0] = dlq[0] = 0;
    if (!spw__cli_member(o, "definition", &d))
        return;
    spw__cli_str(&d, "stream", stream, cap);
    spw__cli_str(&d, "kind", kind, cap);
    spw__cli_str(&d, "dlq", dlq, cap);
}

static void print_sink(const spw_json_span *o)
{
    char name[SPW_NAME_MAX + 1], stream[SPW_NAME_MAX + 1], kind[SPW_NAME_MAX + 1], dlq[SPW_NAME_MAX + 1];
    char state[32], err[600];
    spw__cli_str(o, "name", name, sizeof name);
    def_fields(o, stream, kind, dlq, sizeof stream);
    spw__cli_str(o, "state", state, sizeof state);
    spw__cli_str(o, "last_error", err, sizeof err);
    printf("sink             %s\n", name);
    printf("stream           %s\n", stream);
    printf("kind             %s\n", kind);
    printf("dlq              %s\n", dlq[0] ? dlq : "(none: a rejected record stops the sink)");
    printf("state            %s\n", state);
    printf("lag              %" PRId64 "\n", spw__cli_int(o, "lag", 0));
    printf("delivered        %" PRId64 " records, %" PRId64 " bytes\n", spw__cli_int(o, "delivered_total", 0),
           spw__cli_int(o, "delivered_bytes_total", 0));
    printf("dead-lettered    %" PRId64 "\n", spw__cli_int(o, "dlq_total", 0));
    printf("errors           %" PRId64 "\n", spw__cli_int(o, "errors_total", 0));
    printf("last error       %s\n", err[0] ? err : "none");
    spw_json_span d;
    if (spw__cli_member(o, "definition", &d))
        printf("definition       %.*s\n", (int)d.n, d.p);
    spw_json_span rs, bf;
    if (spw__cli_member(o, "reshard", &rs) && rs.type == SPW_JSON_OBJECT) {
        char phase[32], rerr[600];
        spw__cli_str(&rs, "phase", phase, sizeof phase);
        spw__cli_str(&rs, "last_error", rerr, sizeof rerr);
        printf("reshard          %s, %" PRId64 " to %" PRId64 " shards", phase, spw__cli_int(&rs, "from_shards", 0),
               spw__cli_int(&rs, "to_shards", 0));
        if (spw__cli_member(&rs, "backfill", &bf))
            printf("; backfill %" PRId64 " rows copied, %" PRId64 " of %" PRId64 " ranges done", spw__cli_int(&bf, "copied", 0),
                   spw__cli_int(&bf, "ranges_done", 0), spw__cli_int(&bf, "ranges", 0));
        printf("%s%s\n", rerr[0] ? "; last error: " : "", rerr);
    }
    spw_json_span parts, e;
    if (spw__cli_member(o, "partitions", &parts)) {
        printf("\n%-10s %14s %14s %14s\n", "partition", "position", "end", "lag");
        const char *cur = NULL;
        while (spw__cli_array_next(&parts, &cur, &e))
            printf("%-10" PRId64 " %14" PRId64 " %14" PRId64 " %14" PRId64 "\n", spw__cli_int(&e, "partition", -1),
                   spw__cli_int(&e, "position", 0), spw__cli_int(&e, "end", 0), spw__cli_int(&e, "lag", 0));
    }
}

/* Reads the definition: --definition text, or the whole of --file. */
static int read_def(const char *file, const char *inline_def, spw_buf *out)
{
    if (inline_def)
        return spw_buf_puts(out, inline_def) ? -1 : 0;
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "spillway sink create: %s: %s\n", file, strerror(errno));
        return -1;
    }
    char chunk[8192];
    size_t k;
    int rc = 0;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + k > SINK_DEF_MAX) {
            fprintf(stderr, "spillway sink create: %s: larger than %u bytes\n", file, SINK_DEF_MAX);
            rc = -1;
            break;
        }
        spw_buf_put(out, chunk, k);
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "spillway sink create: reading %s: %s\n", file, strerror(errno));
        rc = -1;
    }
    if (f != stdin)
        fclose(f);
    return rc;
}

static int cmd_create(spw_httpc *c, const char *name, const char *file, const char *def, int json)
{
    spw_buf b = SPW_BUF_INIT;
    if (read_def(file, def, &b)) {
        spw_buf_fini(&b);
        return 1;
    }
    spw_json_span o;
    if (spw__cli_parse((const char *)b.p, b.len, &o) || o.type != SPW_JSON_OBJECT) {
        fprintf(stderr, "spillway sink create: the definition is not a JSON object (docs/api.md \"Sinks\")\n");
        spw_buf_fini(&b);
        return 2;
    }
    char target[200];
    snprintf(target, sizeof target, "/v1/sinks/%s", name);
    spw_httpc_resp r;
    int st = request(c, "sink create", "PUT", target, (const char *)b.p, b.len, &r);
    spw_buf_fini(&b);
    if (st < 0)
        return 1;
    if (json) {
        fwrite(r.body, 1, r.body_len, stdout);
        return 0;
    }
    printf(st == 201   ? "created sink %s\n"
           : st == 202 ? "sink %s: definition changed online (a reshard: see 'spillway sink show')\n"
                       : "sink %s already exists with this definition\n",
           name);
    return 0;
}

static int cmd_show(spw_httpc *c, const char *name, int json)
{
    char target[200];
    snprintf(target, sizeof target, "/v1/sinks/%s", name);
    spw_httpc_resp r;
    if (request(c, "sink show", "GET", target, NULL, 0, &r) < 0)
        return 1;
    if (json) {
        fwrite(r.body, 1, r.body_len, stdout);
        return 0;
    }
    spw_json_span o;
    if (spw__cli_parse(r.body, r.body_len, &o) || o.type != SPW_JSON_OBJECT) {
        fprintf(stderr, "spillway sink show: the server's answer is not a sink\n");
        return 1;
    }
    print_sink(&o);
    return 0;
}

static int cmd_list(spw_httpc *c, int json)
{
    spw_httpc_resp r;
    if (request(c, "sink list", "GET", "/v1/sinks", NULL, 0, &r) < 0)
        return 1;
    spw_json_span arr, e;
    int l = spw__cli_list_array("sink list", r.body, r.body_len, json, "sinks", "sink", &arr);
    if (l)
        return l < 0;
    const char *cur = NULL;
    int count = 0;
    while (spw__cli_array_next(&arr, &cur, &e)) {
        char name[SPW_NAME_MAX + 1], stream[SPW_NAME_MAX + 1], kind[SPW_NAME_MAX + 1], dlq[SPW_NAME_MAX + 1];
        char state[32], err[600];
        spw__cli_str(&e, "name", name, sizeof name);
        def_fields(&e, stream, kind, dlq, sizeof stream);
        spw__cli_str(&e, "state", state, sizeof state);
        spw__cli_str(&e, "last_error", err, sizeof err);
        if (count++ == 0)
            printf("%-20s %-20s %-9s %-9s %12s  %s\n", "NAME", "STREAM", "KIND", "STATE", "LAG", "LAST ERROR");
        printf("%-20s %-20s %-9s %-9s %12" PRId64 "  %s\n", name, stream, kind, state, spw__cli_int(&e, "lag", 0),
               err[0] ? err : "-");
    }
    if (count == 0)
        puts("no sinks");
    return 0;
}

static int cmd_reshard_abort(spw_httpc *c, const char *name)
{
    char target[240];
    snprintf(target, sizeof target, "/v1/sinks/%s/reshard/abort", name);
    spw_httpc_resp r;
    if (request(c, "sink reshard-abort", "POST", target, "", 0, &r) < 0)
        return 1;
    printf("sink %s: reshard aborted; back on its old shards\n", name);
    return 0;
}

static int cmd_delete(spw_httpc *c, const char *name)
{
    char target[200];
    snprintf(target, sizeof target, "/v1/sinks/%s", name);
    spw_httpc_resp r;
    if (request(c, "sink delete", "DELETE", target, NULL, 0, &r) < 0)
        return 1;
    printf("deleted sink %s\n", name);
    return 0;
}

int spw_cmd_sink(int argc, char **argv)
{
    if (argc < 2) {
        spw_help_write(stderr, sink_usage, SPW_HELP_WIDTH);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        spw_help_write(stdout, sink_usage, SPW_HELP_WIDTH);
        return 0;
    }
    if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "show") && strcmp(sub, "delete") &&
        strcmp(sub, "reshard-abort")) {
        fprintf(stderr, "spillway sink: unknown subcommand '%s'\n", sub);
        spw_help_write(stderr, sink_usage, SPW_HELP_WIDTH);
        return 2;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "sink %s", sub);
    const char *server = NULL, *token = NULL, *name = NULL, *file = NULL, *def = NULL;
    int json = 0, is_list = strcmp(sub, "list") == 0, is_create = strcmp(sub, "create") == 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spw_help_write(stdout, sink_usage, SPW_HELP_WIDTH);
            return 0;
        } else if ((m = spw__cli_opt(cmd, argc, argv, &i, "--server", &server)) ||
                   (m = spw__cli_opt(cmd, argc, argv, &i, "--token", &token))) {
            if (m < 0)
                return 2;
        } else if (is_create && ((m = spw__cli_opt(cmd, argc, argv, &i, "--file", &file)) ||
                                 (m = spw__cli_opt(cmd, argc, argv, &i, "--definition", &def)))) {
            if (m < 0)
                return 2;
        } else if (strcmp(a, "--json") == 0 && strcmp(sub, "delete") != 0 && strcmp(sub, "reshard-abort") != 0) {
            json = 1;
        } else if (a[0] != '-' && !name && !is_list) {
            name = a;
        } else {
            fprintf(stderr, "spillway %s: unexpected argument '%s'\n", cmd, a);
            spw_help_write(stderr, sink_usage, SPW_HELP_WIDTH);
            return 2;
        }
    }
    if (!is_list) {
        if (!name) {
            fprintf(stderr, "spillway %s: a sink NAME is required\n", cmd);
            spw_help_write(stderr, sink_usage, SPW_HELP_WIDTH);
            return 2;
        }
        if (!spw__cli_stream_name_ok(name)) {
            fprintf(stderr, "spillway %s: '%s' is not a sink name (" SPW_NAME_RULE ")\n", cmd, name);
            return 2;
        }
    }
    if (is_create && !file == !def) {
        fprintf(stderr, "spillway sink create: give the definition with --file FILE or --definition JSON (one)\n");
        return 2;
    }
    spw_httpc c;
    int rc = spw__cli_server(cmd, server, &c);
    if (rc)
        return rc;
    if ((rc = spw__cli_token(cmd, token, &c, &token)) == 0) {
        if (is_create)
            rc = cmd_create(&c, name, file, def, json);
        else if (is_list)
            rc = cmd_list(&c, json);
        else if (strcmp(sub, "show") == 0)
            rc = cmd_show(&c, name, json);
        else if (strcmp(sub, "reshard-abort") == 0)
            rc = cmd_reshard_abort(&c, name);
        else
            rc = cmd_delete(&c, name);
    }
    spw_httpc_close(&c);
    return rc;
}
