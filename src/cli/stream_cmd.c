/*
 * `spillway stream create|list|show|delete`: the stream endpoints of the
 * HTTP API (docs/api.md) in a readable form. Each prints the server's own
 * error sentence on failure; --json prints the server's body as it came.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <stdio.h>

#include "core/help.h"
#include "cli/cmds.h"
#include "cli/cluster.h"
#include "core/buf.h"
#include "core/name.h"
#include "core/config.h"
#include "core/json.h"

static const char stream_usage[] =
    "usage: spillway stream create NAME [--partitions N] [--key PTR]\n"
    "                             [--timestamp PTR] [--format json|bytes] [--ack L]\n"
    "                             [--retention T | --retention-ms N]\n"
    "                             [--retention-bytes S] [--max-event-bytes S]\n"
    "                             [--compression none|lz4|zstd] [--hot-keys JSON]\n"
    "       spillway stream list [--json]\n"
    "       spillway stream show NAME [--json]\n"
    "       spillway stream delete NAME\n"
    "Every form takes --server HOST:PORT (default " SPW_CLI_DEFAULT_SERVER ") and --token T (a bearer\n"
    "token for a server with tokens; default $SPILLWAY_TOKEN). A cluster: --server=A,B,C runs the\n"
    "command on every node in turn.\n";

static const char create_help[] =
    "usage: spillway stream create NAME [options]\n"
    "Creates stream NAME (PUT /v1/streams/NAME). Succeeds too if an identical stream exists;\n"
    "fails (exit 1) if one exists with another definition.\n\n"
    "  --server HOST:PORT        HOST:PORT or http://HOST:PORT (default $SPILLWAY_SERVER, else " SPW_CLI_DEFAULT_SERVER ")\n"
    "  --token T                 bearer token (an admin one) for a server with tokens (default: $SPILLWAY_TOKEN)\n"
    "  --partitions N            1..1024 (server default 4)\n"
    "  --key PTR                 JSON pointer of the partitioning key, e.g. /device_id\n"
    "  --timestamp PTR           JSON pointer of the event time (integer ms since the epoch), e.g. /ts\n"
    "  --format json|bytes       json (default): events are JSON objects; bytes: opaque values\n"
    "  --ack L                   default durability: none, written, fsync (default) or replicated\n"
    "  --retention T             delete segments older than T (a duration: 90s, 12h, 7d)\n"
    "  --retention-ms N          the same in milliseconds\n"
    "  --retention-bytes S       keep at most about S per partition (bytes, or 512MiB, 10GiB)\n"
    "  --max-event-bytes S       largest event accepted (server default 1MiB)\n"
    "  --compression C           none (default), lz4 or zstd: how the server writes new batches\n"
    "  --hot-keys JSON           spread hot keys over k partitions, e.g. '{\"split\":4,\"above_per_s\":1000}'\n"
    "                            (docs/api.md \"Hot keys\")\n";

/* A JSON string literal of s into out (truncated to cap). */
static void json_str(char *out, size_t cap, const char *s)
{
    spw_buf b = SPW_BUF_INIT;
    int r = spw_json_put_str(&b, s, strlen(s));
    snprintf(out, cap, "%.*s", r ? 0 : (int)b.len, (const char *)b.p);
    spw_buf_fini(&b);
}

/* "1.5 GiB" style, for tables. */
static void human_bytes(char *out, size_t cap, uint64_t b)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(out, cap, "%" PRIu64 " B", b);
    else
        snprintf(out, cap, "%.1f %s", v, u[i]);
}

static void human_ms(char *out, size_t cap, int64_t ms)
{
    if (ms % 86400000 == 0)
        snprintf(out, cap, "%" PRId64 "d", ms / 86400000);
    else if (ms % 3600000 == 0)
        snprintf(out, cap, "%" PRId64 "h", ms / 3600000);
    else if (ms % 60000 == 0)
        snprintf(out, cap, "%" PRId64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(out, cap, "%" PRId64 "s", ms / 1000);
    else
        snprintf(out, cap, "%" PRId64 "ms", ms);
}

/* Prints a stream's configuration object, one setting a line. */
static void print_config(const spw_json_span *o)
{
    char s[300], h[64];
    spw__cli_str(o, "name", s, sizeof s);
    printf("stream           %s\n", s);
    printf("partitions       %" PRId64 "\n", spw__cli_int(o, "partitions", 0));
    spw__cli_str(o, "format", s, sizeof s);
    printf("format           %s\n", s);
    spw__cli_str(o, "key", s, sizeof s);
    printf("key              %s\n", s[0] ? s : "(none: events spread round-robin)");
    spw__cli_str(o, "timestamp", s, sizeof s);
    printf("timestamp        %s\n", s[0] ? s : "(none: arrival time)");
    spw__cli_str(o, "ack", s, sizeof s);
    printf("ack              %s\n", s);
    spw_json_span r;
    int64_t rms = -1, rbytes = -1;
    if (spw__cli_member(o, "retention", &r)) {
        rms = spw__cli_int(&r, "ms", -1);
        rbytes = spw__cli_int(&r, "bytes", -1);
    }
    if (rms > 0) {
        human_ms(h, sizeof h, rms);
        printf("retention time   %s (%" PRId64 " ms)\n", h, rms);
    } else {
        printf("retention time   none\n");
    }
    if (rbytes > 0) {
        human_bytes(h, sizeof h, (uint64_t)rbytes);
        printf("retention bytes  %s (%" PRId64 " bytes)\n", h, rbytes);
    } else {
        printf("retention bytes  none\n");
    }
    int64_t d = spw__cli_int(o, "dedupe_window_ms", 0);
    human_ms(h, sizeof h, d);
    printf("dedupe window    %s\n", d ? h : "0 (off)");
    human_bytes(h, sizeof h, (uint64_t)spw__cli_int(o, "max_event_bytes", 0));
    printf("max event size   %s\n", h);
    spw_json_span v;
    if (spw__cli_member(o, "compression", &v) && v.type == SPW_JSON_STRING)
        printf("compression      %.*s\n", (int)v.n - 2, v.p + 1);
    if (spw__cli_member(o, "coalesce", &v) && v.type == SPW_JSON_TRUE)
        printf("coalesce         true\n");
    if (spw__cli_member(o, "versioned", &v) && v.type == SPW_JSON_TRUE)
        printf("versioned        true\n");
    if (spw__cli_member(o, "hot_keys", &v))
        printf("hot keys         %.*s\n", (int)v.n, v.p);
    spw_json_span hs, arr, e, parts;
    if (spw__cli_member(o, "hot_keys_state", &hs)) { /* docs/api.md "Hot keys" */
        const char *cur = NULL;
        int n = 0;
        printf("split keys       ");
        if (spw__cli_member(&hs, "split", &arr))
            while (spw__cli_array_next(&arr, &cur, &e)) {
                char k[300], how[16];
                spw__cli_str(&e, "key", k, sizeof k);
                spw__cli_str(&e, "how", how, sizeof how);
                printf("%s%s (%" PRId64 " ways, %s, partitions ", n++ ? ", " : "", k, spw__cli_int(&e, "split", 0),
                       how);
                if (spw__cli_member(&e, "partitions", &parts))
                    printf("%.*s", (int)parts.n - 2, parts.p + 1);
                printf(")");
            }
        printf("%s\n", n ? "" : "none");
        cur = NULL;
        n = 0;
        printf("hottest keys     ");
        if (spw__cli_member(&hs, "top", &arr))
            while (spw__cli_array_next(&arr, &cur, &e)) {
                char k[300];
                spw__cli_str(&e, "key", k, sizeof k);
                spw_json_span r;
                printf("%s%s %.*s/s", n++ ? ", " : "", k, spw__cli_member(&e, "per_s", &r) ? (int)r.n : 1,
                       spw__cli_member(&e, "per_s", &r) ? r.p : "?");
            }
        printf("%s\n", n ? "" : "none in the last complete window");
    }
    if (spw__cli_member(o, "rate_limit", &v)) {
        spw__cli_str(&v, "per", s, sizeof s);
        spw_json_span rate, burst;
        if (spw__cli_member(&v, "rate", &rate) && spw__cli_member(&v, "burst", &burst))
            printf("rate limit       %.*s events/s, burst %.*s, per %s\n", (int)rate.n, rate.p, (int)burst.n, burst.p,
                   s);
    }
}

/* Sums a stream detail's partition_state: retained events and bytes. */
static int stream_totals(const spw_json_span *o, uint64_t *events, uint64_t *bytes, uint64_t *segments)
{
    spw_json_span ps, e;
    if (!spw__cli_member(o, "partition_state", &ps))
        return -1;
    *events = *bytes = *segments = 0;
    const char *cur = NULL;
    while (spw__cli_array_next(&ps, &cur, &e)) {
        int64_t so = spw__cli_int(&e, "start_offset", 0), eo = spw__cli_int(&e, "end_offset", 0);
        *events += eo > so ? (uint64_t)(eo - so) : 0;
        *bytes += (uint64_t)spw__cli_int(&e, "bytes", 0);
        *segments += (uint64_t)spw__cli_int(&e, "segments", 0);
    }
    return 0;
}

static int cmd_create(spw_httpc *c, const char *name, int argc, char **argv)
{
    char body[2048], tmp[600];
    size_t n = 0;
    int64_t ret_ms = -1, ret_bytes = -1;
    body[n++] = '{';
#define ADD(...)                                                                                                       \
    do {                                                                                                               \
        int k_ = snprintf(body + n, sizeof body - n, "%s", n > 1 ? "," : "");                                        \
        n += (size_t)k_;                                                                                               \
        k_ = snprintf(body + n, sizeof body - n, __VA_ARGS__);                                                         \
        if (k_ < 0 || (size_t)k_ >= sizeof body - n) {                                                                 \
            fputs("spillway stream create: options too long\n", stderr);                                             \
            return 2;                                                                                                  \
        }                                                                                                              \
        n += (size_t)k_;                                                                                               \
    } while (0)
    for (int i = 0; i < argc; i++) {
        const char *v, *opt = argv[i];
        uint64_t u;
        int m;
        if ((m = spw__cli_opt("stream create", argc, argv, &i, "--partitions", &v))) {
            if (m < 0)
                return 2;
            if (spw__cli_u64(v, 1, 1024, &u)) {
                fprintf(stderr, "spillway stream create: --partitions takes 1 to 1024, not '%s'\n", v);
                return 2;
            }
            ADD("\"partitions\":%" PRIu64, u);
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--key", &v)) ||
                   (m = spw__cli_opt("stream create", argc, argv, &i, "--timestamp", &v))) {
            if (m < 0)
                return 2;
            const char *field = strncmp(opt, "--key", 5) == 0 ? "key" : "timestamp";
            if (strlen(v) > 127 || (v[0] && v[0] != '/')) {
                fprintf(stderr, "spillway stream create: --%s takes a JSON pointer such as /device_id, not '%s'\n",
                        field, v);
                return 2;
            }
            json_str(tmp, sizeof tmp, v);
            ADD("\"%s\":%s", field, tmp);
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--format", &v))) {
            if (m < 0)
                return 2;
            if (strcmp(v, "json") && strcmp(v, "bytes")) {
                fprintf(stderr, "spillway stream create: --format takes json or bytes, not '%s'\n", v);
                return 2;
            }
            ADD("\"format\":\"%s\"", v);
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--ack", &v))) {
            if (m < 0)
                return 2;
            if (strcmp(v, "none") && strcmp(v, "written") && strcmp(v, "fsync") && strcmp(v, "replicated")) {
                fprintf(stderr, "spillway stream create: --ack takes none, written, fsync or replicated, not '%s'\n",
                        v);
                return 2;
            }
            ADD("\"ack\":\"%s\"", v);
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--retention", &v))) {
            if (m < 0)
                return 2;
            if (spw_parse_duration_ms(v, &u) || u == 0 || u > INT64_MAX / 2) {
                fprintf(stderr, "spillway stream create: --retention takes a duration (ms, or 90s, 12h, 7d), "
                                "not '%s'\n",
                        v);
                return 2;
            }
            ret_ms = (int64_t)u;
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--retention-ms", &v))) {
            if (m < 0)
                return 2;
            if (spw__cli_u64(v, 1, INT64_MAX / 2, &u)) { /* milliseconds, as its name says */
                fprintf(stderr, "spillway stream create: --retention-ms takes milliseconds (a whole number; "
                                "--retention takes a duration with a unit), not '%s'\n",
                        v);
                return 2;
            }
            ret_ms = (int64_t)u;
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--retention-bytes", &v))) {
            if (m < 0)
                return 2;
            if (spw_parse_size(v, &u) || u == 0 || u > INT64_MAX / 2) {
                fprintf(stderr, "spillway stream create: --retention-bytes takes a size (bytes, or 512MiB, 10GiB), "
                                "not '%s'\n",
                        v);
                return 2;
            }
            ret_bytes = (int64_t)u;
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--max-event-bytes", &v))) {
            if (m < 0)
                return 2;
            if (spw_parse_size(v, &u) || u == 0 || u > (64u << 20)) {
                fprintf(stderr, "spillway stream create: --max-event-bytes takes a size from 1 to 64MiB, not '%s'\n",
                        v);
                return 2;
            }
            ADD("\"max_event_bytes\":%" PRIu64, u);
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--compression", &v))) {
            if (m < 0)
                return 2;
            if (strcmp(v, "none") && strcmp(v, "lz4") && strcmp(v, "zstd")) {
                fprintf(stderr, "spillway stream create: --compression takes none, lz4 or zstd, not '%s'\n", v);
                return 2;
            }
            ADD("\"compression\":\"%s\"", v);
        } else if ((m = spw__cli_opt("stream create", argc, argv, &i, "--hot-keys", &v))) {
            if (m < 0)
                return 2;
            if (v[0] != '{') {
                fprintf(stderr, "spillway stream create: --hot-keys takes a JSON object such as "
                                "'{\"split\":4,\"above_per_s\":1000}', not '%s'\n",
                        v);
                return 2;
            }
            ADD("\"hot_keys\":%s", v); /* the server checks it (400 with the reason) */
        } else {
            fprintf(stderr, "spillway stream create: unexpected argument '%s'\n", argv[i]);
            spw_help_write(stderr, stream_usage, SPW_HELP_WIDTH);
            return 2;
        }
    }
    if (ret_ms > 0 || ret_bytes > 0) {
        char r[128];
        if (ret_ms > 0 && ret_bytes > 0)
            snprintf(r, sizeof r, "{\"ms\":%" PRId64 ",\"bytes\":%" PRId64 "}", ret_ms, ret_bytes);
        else if (ret_ms > 0)
            snprintf(r, sizeof r, "{\"ms\":%" PRId64 "}", ret_ms);
        else
            snprintf(r, sizeof r, "{\"bytes\":%" PRId64 "}", ret_bytes);
        ADD("\"retention\":%s", r);
    }
#undef ADD
    if (n + 2 > sizeof body)
        return 2;
    body[n++] = '}';
    body[n] = 0;
    char target[200];
    snprintf(target, sizeof target, "/v1/streams/%s", name);
    spw_httpc_resp r;
    int st = spw_httpc_request(c, "PUT", target, "application/json", NULL, body, n, SPW_CLI_CONNECT_WAIT_MS, &r);
    if (st < 0) {
        spw__cli_conn_error("stream create", c);
        return 1;
    }
    if (st != 200 && st != 201) {
        spw__cli_server_error("stream create", &r);
        return 1;
    }
    printf(st == 201 ? "created stream %s\n" : "stream %s already exists with this definition\n", name);
    spw_json_span o;
    if (spw__cli_parse(r.body, r.body_len, &o) == 0)
        print_config(&o);
    return 0;
}

static int cmd_show(spw_httpc *c, const char *name, int json)
{
    char target[200];
    snprintf(target, sizeof target, "/v1/streams/%s", name);
    spw_httpc_resp r;
    int st = spw_httpc_request(c, "GET", target, NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, &r);
    if (st < 0) {
        spw__cli_conn_error("stream show", c);
        return 1;
    }
    if (st != 200) {
        spw__cli_server_error("stream show", &r);
        return 1;
    }
    if (json) {
        fwrite(r.body, 1, r.body_len, stdout);
        return 0;
    }
    spw_json_span o, ps, e;
    if (spw__cli_parse(r.body, r.body_len, &o) || !spw__cli_member(&o, "partition_state", &ps)) {
        fprintf(stderr, "spillway stream show: the server's answer is not a stream description: %.*s\n",
                (int)(r.body_len > 300 ? 300 : r.body_len), r.body);
        return 1;
    }
    print_config(&o);
    printf("\n%-10s %14s %14s %14s %12s %9s\n", "partition", "start_offset", "end_offset", "events", "bytes",
           "segments");
    const char *cur = NULL;
    while (spw__cli_array_next(&ps, &cur, &e)) {
        int64_t so = spw__cli_int(&e, "start_offset", 0), eo = spw__cli_int(&e, "end_offset", 0);
        printf("%-10" PRId64 " %14" PRId64 " %14" PRId64 " %14" PRId64 " %12" PRId64 " %9" PRId64 "\n",
               spw__cli_int(&e, "partition", -1), so, eo, eo - so, spw__cli_int(&e, "bytes", 0),
               spw__cli_int(&e, "segments", 0));
    }
    uint64_t ev, by, sg;
    stream_totals(&o, &ev, &by, &sg);
    char h[64];
    human_bytes(h, sizeof h, by);
    printf("%-10s %14s %14s %14" PRIu64 " %12" PRIu64 " %9" PRIu64 "   (%s)\n", "total", "", "", ev, by, sg, h);
    return 0;
}

static int cmd_list(spw_httpc *c, int json)
{
    spw_httpc_resp r;
    int st = spw_httpc_request(c, "GET", "/v1/streams", NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, &r);
    if (st < 0) {
        spw__cli_conn_error("stream list", c);
        return 1;
    }
    if (st != 200) {
        spw__cli_server_error("stream list", &r);
        return 1;
    }
    if (json) {
        fwrite(r.body, 1, r.body_len, stdout);
        return 0;
    }
    /* The list answer is overwritten by the detail requests: keep a copy. */
    char *copy = spw_xmalloc(r.body_len + 1);
    memcpy(copy, r.body, r.body_len);
    size_t len = r.body_len;
    spw_json_span arr, e;
    if (spw__cli_list_array("stream list", copy, len, 0, "streams", "stream", &arr)) {
        spw_free(copy);
        return 1;
    }
    const char *cur = NULL;
    int count = 0;
    while (spw__cli_array_next(&arr, &cur, &e)) {
        char name[130], fmt[16], key[130], ack[16];
        spw__cli_str(&e, "name", name, sizeof name);
        spw__cli_str(&e, "format", fmt, sizeof fmt);
        spw__cli_str(&e, "key", key, sizeof key);
        spw__cli_str(&e, "ack", ack, sizeof ack);
        if (count++ == 0)
            printf("%-24s %10s %-6s %-16s %-7s %14s %12s\n", "NAME", "PARTITIONS", "FORMAT", "KEY", "ACK", "EVENTS",
                   "BYTES");
        /* Events and bytes come with each stream's detail (one keep-alive request each). */
        char evs[32] = "-", bys[32] = "-", target[200];
        snprintf(target, sizeof target, "/v1/streams/%s", name);
        spw_httpc_resp d;
        spw_json_span dobj;
        uint64_t ev, by, sg;
        if (spw_httpc_request(c, "GET", target, NULL, NULL, NULL, 0, 0, &d) == 200 &&
            spw__cli_parse(d.body, d.body_len, &dobj) == 0 && stream_totals(&dobj, &ev, &by, &sg) == 0) {
            snprintf(evs, sizeof evs, "%" PRIu64, ev);
            human_bytes(bys, sizeof bys, by);
        }
        printf("%-24s %10" PRId64 " %-6s %-16s %-7s %14s %12s\n", name, spw__cli_int(&e, "partitions", 0), fmt,
               key[0] ? key : "-", ack, evs, bys);
    }
    if (count == 0)
        puts("no streams");
    spw_free(copy);
    return 0;
}

static int cmd_delete(spw_httpc *c, const char *name)
{
    char target[200];
    snprintf(target, sizeof target, "/v1/streams/%s", name);
    spw_httpc_resp r;
    int st = spw_httpc_request(c, "DELETE", target, NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, &r);
    if (st < 0) {
        spw__cli_conn_error("stream delete", c);
        return 1;
    }
    if (st != 204 && st != 200) {
        spw__cli_server_error("stream delete", &r);
        return 1;
    }
    printf("deleted stream %s\n", name);
    return 0;
}

int spw_cmd_stream(int argc, char **argv)
{
    if (argc < 2) {
    spw_help_write(stderr, stream_usage, SPW_HELP_WIDTH);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        spw_help_write(stdout, stream_usage, SPW_HELP_WIDTH);
        return 0;
    }
    if (strcmp(sub, "create") && strcmp(sub, "list") && strcmp(sub, "show") && strcmp(sub, "delete")) {
        fprintf(stderr, "spillway stream: unknown subcommand '%s'\n", sub);
        spw_help_write(stderr, stream_usage, SPW_HELP_WIDTH);
        return 2;
    }
    /* Common options first (--server, --json, --help); the rest is the subcommand's. */
    const char *server = NULL, *name = NULL, *token = NULL;
    int json = 0, n_rest = 0;
    char **rest = spw_xcalloc((size_t)argc, sizeof *rest);
    int rc = -1;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "stream %s", sub);
    for (int i = 2; i < argc && rc < 0; i++) {
        const char *a = argv[i];
        int m;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spw_help_write(stdout, strcmp(sub, "create") == 0 ? create_help : stream_usage, SPW_HELP_WIDTH);
            rc = 0;
        } else if ((m = spw__cli_opt(cmd, argc, argv, &i, "--server", &server))) {
            if (m < 0)
                rc = 2;
        } else if ((m = spw__cli_opt(cmd, argc, argv, &i, "--token", &token))) {
            if (m < 0)
                rc = 2;
        } else if (strcmp(a, "--json") == 0 && (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0)) {
            json = 1;
        } else if (a[0] != '-' && !name && strcmp(sub, "list") != 0) {
            name = a;
        } else if (strcmp(sub, "create") == 0 && a[0] == '-') {
            /* create's own options, with their values, go to cmd_create. */
            static const char *const opts[] = {"--partitions", "--key",           "--timestamp",
                                               "--format",     "--ack",           "--retention", "--retention-ms",
                                               "--retention-bytes", "--max-event-bytes", "--compression",
                                               "--hot-keys"};
            int matched = 0;
            for (size_t k = 0; k < sizeof opts / sizeof *opts && !matched; k++) {
                int at = i;
                const char *v;
                m = spw__cli_opt(cmd, argc, argv, &i, opts[k], &v);
                if (m < 0)
                    rc = 2;
                if (m) {
                    matched = 1;
                    rest[n_rest++] = argv[at];
                    if (i != at)
                        rest[n_rest++] = argv[i];
                }
            }
            if (!matched) {
                fprintf(stderr, "spillway %s: unknown option '%s'\n", cmd, a);
                spw_help_write(stderr, create_help, SPW_HELP_WIDTH);
                rc = 2;
            }
        } else {
            fprintf(stderr, "spillway %s: unexpected argument '%s'\n", cmd, a);
            spw_help_write(stderr, stream_usage, SPW_HELP_WIDTH);
            rc = 2;
        }
    }
    if (rc < 0 && strcmp(sub, "list") != 0) {
        if (!name) {
            fprintf(stderr, "spillway %s: a stream NAME is required\n", cmd);
            spw_help_write(stderr, stream_usage, SPW_HELP_WIDTH);
            rc = 2;
        } else if (!spw__cli_stream_name_ok(name)) {
            fprintf(stderr,
                    "spillway %s: '%s' is not a stream name (" SPW_NAME_RULE ")\n",
                    cmd, name);
            rc = 2;
        }
    }
    /* A cluster (--server A,B,C, cli/cluster.h): the command on every node
     * in turn, each node's output after a "node HOST:PORT:" line; the exit
     * code is the worst of them. */
    static spw_cli_cluster cl;
    uint32_t nodes = 1;
    if (rc < 0 && server && strchr(server, ',')) {
        if ((rc = spw__cli_cluster_parse(cmd, server, NULL, &cl)) == 0)
            rc = -1;
        nodes = cl.n;
    }
    int worst = 0;
    for (uint32_t i = 0; rc < 0 && i < nodes; i++) {
        spw_httpc c;
        int r;
        const char *where = server;
        if (cl.n) {
            where = spw__cli_cluster_name(&cl, i);
            printf("node %s:\n", where);
            fflush(stdout);
        }
        if ((r = spw__cli_server(cmd, where, &c)) == 0) {
            if (cl.n)
                c.tls = cl.tls[i];
            if ((r = spw__cli_token(cmd, token, &c, &token)) == 0) {
                if (strcmp(sub, "create") == 0)
                    r = cmd_create(&c, name, n_rest, rest);
                else if (strcmp(sub, "show") == 0)
                    r = cmd_show(&c, name, json);
                else if (strcmp(sub, "list") == 0)
                    r = cmd_list(&c, json);
                else
                    r = cmd_delete(&c, name);
            }
            spw_httpc_close(&c);
        }
        if (r > worst)
            worst = r;
        if (r == 2)
            break; /* a usage error is the same on every node */
    }
    if (rc < 0)
        rc = worst;
    spw__cli_cluster_free(&cl);
    spw_free(rest);
    return rc;
}
