/*
 * `spillway group list|show|reset`: a stream's consumer groups over the
 * HTTP API (docs/api.md "Consumer groups"): the list, one group's offsets
 * and lag per partition, and the reset of its committed offsets to
 * earliest, latest or an offset (refused by the server while a member
 * holds a lease, as kafka-consumer-groups --reset-offsets is while the
 * group has members). --json prints the server's body as it came.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cmds.h"
#include "core/alloc.h"
#include "core/help.h"
#include "core/name.h"

static const char group_usage[] =
    "usage: spillway group list STREAM [--json]\n"
    "       spillway group show STREAM GROUP [--json]\n"
    "       spillway group reset STREAM GROUP --to earliest|latest|OFFSET [--partition P]\n"
    "list: the stream's consumer groups, their lag and whether a member holds a lease.\n"
    "show: a group's committed offset, end, lag and lease holder per partition.\n"
    "reset: sets the group's committed offsets (every partition, or partition P) to\n"
    "the oldest stored offset (earliest), the end (latest: the group skips what is\n"
    "stored) or OFFSET. Refused (exit 1) while a member holds a lease: stop the\n"
    "group's consumers first. Needs an admin token on a server with tokens.\n\n"
    "  --to WHERE           earliest, latest or an offset (reset)\n"
    "  --partition P        reset only partition P\n"
    "  --json               print the server's JSON answer as it came\n" SPW_CLI_SERVER_HELP SPW_CLI_TOKEN_HELP;

static int get(spw_httpc *c, const char *cmd, const char *target, spw_httpc_resp *r)
{
    int st = spw_httpc_request(c, "GET", target, NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, r);
    if (st < 0) {
        spw__cli_conn_error(cmd, c);
        return -1;
    }
    if (st != 200) {
        spw__cli_server_error(cmd, r);
        return -1;
    }
    return 0;
}

static int cmd_list(spw_httpc *c, const char *stream, int json)
{
    char target[300];
    snprintf(target, sizeof target, "/v1/streams/%s/groups", stream);
    spw_httpc_resp r;
    if (get(c, "group list", target, &r))
        return 1;
    spw_json_span arr, e;
    int l = spw__cli_list_array("group list", r.body, r.body_len, json, "groups", "group", &arr);
    if (l)
        return l < 0;
    const char *cur = NULL;
    int count = 0;
    while (spw__cli_array_next(&arr, &cur, &e)) {
        char name[SPW_NAME_MAX + 1];
        spw__cli_str(&e, "group", name, sizeof name);
        if (count++ == 0)
            printf("%-32s %10s %14s %s\n", "GROUP", "PARTITIONS", "LAG", "MEMBERS");
        int64_t leased = spw__cli_int(&e, "leased_partitions", 0);
        char members[64];
        if (leased)
            snprintf(members, sizeof members, "active (%" PRId64 " partition(s) leased)", leased);
        else
            snprintf(members, sizeof members, "none");
        printf("%-32s %10" PRId64 " %14" PRId64 " %s\n", name, spw__cli_int(&e, "partitions", 0),
               spw__cli_int(&e, "lag", 0), members);
    }
    if (count == 0)
        printf("stream %s has no consumer groups\n", stream);
    return 0;
}

/* Prints a describe answer (or a reset's, with before). */
static int print_parts(const char *cmd, const spw_httpc_resp *r, int reset)
{
    spw_json_span o, arr, e;
    if (spw__cli_parse(r->body, r->body_len, &o) || !spw__cli_member(&o, "partitions", &arr)) {
        fprintf(stderr, "spillway %s: the server's answer is not a group description\n", cmd);
        return 1;
    }
    if (reset)
        printf("%-10s %14s %14s\n", "PARTITION", "BEFORE", "COMMITTED");
    else
        printf("%-10s %14s %14s %14s  %s\n", "PARTITION", "COMMITTED", "END", "LAG", "HOLDER");
    const char *cur = NULL;
    while (spw__cli_array_next(&arr, &cur, &e)) {
        if (reset) {
            printf("%-10" PRId64 " %14" PRId64 " %14" PRId64 "\n", spw__cli_int(&e, "partition", -1),
                   spw__cli_int(&e, "before", 0), spw__cli_int(&e, "committed", 0));
            continue;
        }
        char holder[SPW_NAME_MAX + 1];
        spw__cli_str(&e, "holder", holder, sizeof holder);
        char h[256] = "-";
        if (holder[0])
            snprintf(h, sizeof h, "%s (%" PRId64 " ms left)", holder, spw__cli_int(&e, "lease_ms_left", 0));
        printf("%-10" PRId64 " %14" PRId64 " %14" PRId64 " %14" PRId64 "  %s\n", spw__cli_int(&e, "partition", -1),
               spw__cli_int(&e, "committed", 0), spw__cli_int(&e, "end", 0), spw__cli_int(&e, "lag", 0), h);
    }
    if (!reset)
        printf("%-10s %14s %14s %14" PRId64 "\n", "total", "", "", spw__cli_int(&o, "lag", 0));
    return 0;
}

static int cmd_show(spw_httpc *c, const char *stream, const char *group, int json)
{
    char target[400];
    snprintf(target, sizeof target, "/v1/streams/%s/groups/%s", stream, group);
    spw_httpc_resp r;
    if (get(c, "group show", target, &r))
        return 1;
    if (json) {
        fwrite(r.body, 1, r.body_len, stdout);
        return 0;
    }
    printf("stream %s, consumer group %s\n", stream, group);
    return print_parts("group show", &r, 0);
}

static int cmd_reset(spw_httpc *c, const char *stream, const char *group, const char *to, const char *part, int json)
{
    char body[128], target[400];
    uint64_t off = 0, p = 0;
    int n;
    if (strcmp(to, "earliest") == 0 || strcmp(to, "latest") == 0)
        n = snprintf(body, sizeof body, "{\"to\":\"%s\"", to);
    else if (spw__cli_u64(to, 0, INT64_MAX, &off) == 0)
        n = snprintf(body, sizeof body, "{\"to\":%" PRIu64, off);
    else {
        fprintf(stderr, "spillway group reset: --to takes earliest, latest or an offset, not '%s'\n", to);
        return 2;
    }
    if (part) {
        if (spw__cli_u64(part, 0, UINT32_MAX, &p)) {
            fprintf(stderr, "spillway group reset: --partition takes a partition number, not '%s'\n", part);
            return 2;
        }
        n += snprintf(body + n, sizeof body - (size_t)n, ",\"partition\":%" PRIu64, p);
    }
    n += snprintf(body + n, sizeof body - (size_t)n, "}");
    snprintf(target, sizeof target, "/v1/streams/%s/groups/%s/reset", stream, group);
    spw_httpc_resp r;
    int st = spw_httpc_request(c, "POST", target, "application/json", NULL, body, (size_t)n, SPW_CLI_CONNECT_WAIT_MS,
                               &r);
    if (st < 0) {
        spw__cli_conn_error("group reset", c);
        return 1;
    }
    if (st != 200) {
        spw__cli_server_error("group reset", &r);
        return 1;
    }
    if (json) {
        fwrite(r.body, 1, r.body_len, stdout);
        return 0;
    }
    printf("reset consumer group %s of stream %s to %s%s%s\n", group, stream, to, part ? " on partition " : "",
           part ? part : "");
    return print_parts("group reset", &r, 1);
}

int spw_cmd_group(int argc, char **argv)
{
    if (argc < 2) {
        spw_help_write(stderr, group_usage, SPW_HELP_WIDTH);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        spw_help_write(stdout, group_usage, SPW_HELP_WIDTH);
        return 0;
    }
    if (strcmp(sub, "list") && strcmp(sub, "show") && strcmp(sub, "reset")) {
        fprintf(stderr, "spillway group: unknown subcommand '%s'\n", sub);
        spw_help_write(stderr, group_usage, SPW_HELP_WIDTH);
        return 2;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "group %s", sub);
    const char *server = NULL, *token = NULL, *to = NULL, *part = NULL, *pos[2] = {NULL, NULL};
    int json = 0, npos = 0, want = strcmp(sub, "list") == 0 ? 1 : 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        int m;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spw_help_write(stdout, group_usage, SPW_HELP_WIDTH);
            return 0;
        } else if ((m = spw__cli_opt(cmd, argc, argv, &i, "--server", &server)) ||
                   (m = spw__cli_opt(cmd, argc, argv, &i, "--token", &token))) {
            if (m < 0)
                return 2;
        } else if (strcmp(sub, "reset") == 0 && ((m = spw__cli_opt(cmd, argc, argv, &i, "--to", &to)) ||
                                                 (m = spw__cli_opt(cmd, argc, argv, &i, "--partition", &part)))) {
            if (m < 0)
                return 2;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (a[0] != '-' && npos < want) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "spillway %s: unexpected argument '%s'\n", cmd, a);
            spw_help_write(stderr, group_usage, SPW_HELP_WIDTH);
            return 2;
        }
    }
    if (npos < want) {
        fprintf(stderr, "spillway %s: %s required\n", cmd, want == 1 ? "a STREAM is" : "a STREAM and a GROUP are");
        spw_help_write(stderr, group_usage, SPW_HELP_WIDTH);
        return 2;
    }
    if (!spw__cli_stream_name_ok(pos[0])) {
        fprintf(stderr, "spillway %s: '%s' is not a stream name (" SPW_NAME_RULE ")\n", cmd, pos[0]);
        return 2;
    }
    if (pos[1] && !spw_name_ok(pos[1], strlen(pos[1]), SPW_NAME_MAX)) {
        fprintf(stderr, "spillway %s: '%s' is not a group name (" SPW_NAME_RULE ")\n", cmd, pos[1]);
        return 2;
    }
    if (strcmp(sub, "reset") == 0 && !to) {
        fprintf(stderr, "spillway group reset: --to earliest|latest|OFFSET is required\n");
        return 2;
    }
    spw_httpc c;
    int rc = spw__cli_server(cmd, server, &c);
    if (rc)
        return rc;
    if ((rc = spw__cli_token(cmd, token, &c, &token)) == 0) {
        if (strcmp(sub, "list") == 0)
            rc = cmd_list(&c, pos[0], json);
        else if (strcmp(sub, "show") == 0)
            rc = cmd_show(&c, pos[0], pos[1], json);
        else
            rc = cmd_reset(&c, pos[0], pos[1], to, part, json);
    }
    spw_httpc_close(&c);
    return rc;
}
