/*
 * `spillway consume STREAM`: a plain reader over GET /v1/streams/{s}/events
 * (docs/api.md), NDJSON records to stdout.
 *
 * It reads each chosen partition from its start (or --offset / --from-ts)
 * to its end, partition after partition, in requests of at most 10000
 * records, continuing from each answer's Spillway-Next-Offset. With
 * --follow it then polls every partition in turn, sleeping between rounds
 * that found nothing (100 ms doubling to 1 s), until --max records or
 * Ctrl-C (SIGINT/SIGTERM: exit 0 after the records already printed).
 *
 * With --group G it is a member of consumer group G instead (docs/api.md
 * "Consumer groups"): it polls POST .../groups/G/poll (any partition the
 * server leases it), prints the records, then commits the lease up to the
 * answer's Spillway-Next-Offset — printed before committed, so a crash in
 * between prints those records again (at least once). Without --follow it
 * stops at the first poll that finds nothing; with --follow it long-polls
 * (1 s waits, so Ctrl-C is seen within a second) until --max or Ctrl-C.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/help.h"
#include "cli/cmds.h"
#include "core/name.h"

#define READ_LIMIT_MAX 10000
#define POLL_MIN_MS 100
#define POLL_MAX_MS 1000
#define GROUP_WAIT_MS 1000

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static const char consume_help[] =
    "usage: spillway consume STREAM [--server HOST:PORT] [--partition P]\n"
    "                        [--offset O | --from-ts T] [--max N] [--follow] [--values]\n"
    "       spillway consume STREAM --group G [--member M] [--start earliest|latest]\n"
    "                        [--max N] [--follow] [--values]\n"
    "Reads records of STREAM and prints them as NDJSON on stdout, one object a line:\n"
    "{\"partition\",\"offset\",\"id\",\"ts\",\"key\",\"value\"}. Without --partition every partition is read\n"
    "in turn.\n\n"
    SPW_CLI_SERVER_HELP SPW_CLI_TOKEN_HELP
    "  --partition P        read only partition P\n"
    "  --offset O           start at offset O (in every partition read), earliest (the oldest kept,\n"
    "                       the default) or latest (each partition's end: only new records)\n"
    "  --from-ts T          start at the first record with ts >= T (ms since the Unix epoch)\n"
    "  --max N              stop after N records in total\n"
    "  --follow             after the end, keep polling for new records until --max or Ctrl-C\n"
    "  --values             print only each record's value (the event as produced)\n"
    "  --group G            read as a member of consumer group G: leased partitions, each answer\n"
    "                       committed after it is printed (not with --partition, --offset, --from-ts)\n"
    "  --member M           this member's name in the group (default cli-PID)\n"
    "  --start W            where a new group starts: earliest (default) or latest\n";

typedef struct part_pos {
    uint64_t next;
    int started; /* next is known (from an answer or --offset) */
} part_pos;

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL); /* a signal cuts it short: that is the point */
}

static uint64_t header_u64(const spw_httpc_resp *r, const char *name, int *found)
{
    size_t n;
    const char *v = spw_httpc_header(r, name, &n);
    char buf[24];
    *found = 0;
    if (!v || n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, v, n);
    buf[n] = 0;
    uint64_t x;
    if (spw__cli_u64(buf, 0, UINT64_MAX, &x))
        return 0;
    *found = 1;
    return x;
}

/* Prints the records of one answer; returns how many. */
static uint64_t print_records(const char *p, size_t n, int values_only)
{
    uint64_t count = 0;
    const char *end = p + n;
    spw_json_ptr vp;
    spw_json_ptr_compile(&vp, "/value");
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p) {
            count++;
            spw_json_span v;
            spw_json_error e;
            const char *vend;
            if (values_only && spw_json_scan(p, le, &vp, 1, &v, &vend, &e) == 0 && v.type != SPW_JSON_NONE) {
                fwrite(v.p, 1, v.n, stdout);
                fputc('\n', stdout);
            } else {
                fwrite(p, 1, (size_t)(le - p), stdout);
                fputc('\n', stdout);
            }
        }
        p = nl ? nl + 1 : end;
    }
    return count;
}

/* The value of header name as a string into out (cap bytes); 1 found. */
static int header_str(const spw_httpc_resp *r, const char *name, char *out, size_t cap)
{
    size_t n;
    const char *v = spw_httpc_header(r, name, &n);
    if (!v || n == 0 || n >= cap)
        return 0;
    memcpy(out, v, n);
    out[n] = 0;
    return 1;
}

/* --group: poll, print, commit, until nothing is left (or --max, or
 * Ctrl-C with --follow). Returns the exit code. */
static int consume_group(spw_httpc *c, const char *stream, const char *group, const char *member,
                         const char *start, int follow, uint64_t max, int values)
{
    char target[600], body[160];
    uint64_t printed = 0;
    spw_httpc_resp r;
    while (!stop_requested && (!max || printed < max)) {
        uint64_t limit = READ_LIMIT_MAX;
        if (max && max - printed < limit)
            limit = max - printed;
        snprintf(target, sizeof target, "/v1/streams/%s/groups/%s/poll?max=%" PRIu64 "&wait_ms=%d&member=%s&start=%s",
                 stream, group, limit, follow ? GROUP_WAIT_MS : 0, member, start);
        int st = spw_httpc_request(c, "POST", target, NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, &r);
        if (st < 0) {
            if (stop_requested)
                break;
            spw__cli_conn_error("consume", c);
            return 1;
        }
        if (st == 204) {
            if (!follow)
                break;
            continue;
        }
        if (st != 200) {
            spw__cli_server_error("consume", &r);
            return 1;
        }
        char lease[64];
        int found;
        uint64_t next = header_u64(&r, "Spillway-Next-Offset", &found);
        if (!found || !header_str(&r, "Spillway-Lease", lease, sizeof lease)) {
            fputs("spillway consume: the server's poll answer has no Spillway-Lease or Spillway-Next-Offset\n",
                  stderr);
            return 1;
        }
        printed += print_records(r.body, r.body_len, values);
        fflush(stdout);
        snprintf(target, sizeof target, "/v1/streams/%s/groups/%s/commit", stream, group);
        int bl = snprintf(body, sizeof body, "{\"lease\":\"%s\",\"offset\":%" PRIu64 "}", lease, next);
        st = spw_httpc_request(c, "POST", target, "application/json", NULL, body, (size_t)bl, SPW_CLI_CONNECT_WAIT_MS,
                               &r);
        if (st < 0) {
            spw__cli_conn_error("consume", c);
            return 1;
        }
        if (st == 409) {
            /* The lease ran out before the commit: another member gets
             * these records again. Not an error of ours to stop for. */
            fprintf(stderr, "spillway consume: lease %s ended before its commit; its records will be delivered "
                            "again\n",
                    lease);
            continue;
        }
        if (st != 200) {
            spw__cli_server_error("consume", &r);
            return 1;
        }
    }
    fflush(stdout);
    return 0;
}

int spw_cmd_consume(int argc, char **argv)
{
    const char *server = NULL, *stream = NULL, *group = NULL, *token = NULL, *member = NULL, *start = "earliest";
    uint64_t partition = 0, offset = 0, max = 0;
    int64_t from_ts = 0;
    int has_part = 0, has_offset = 0, has_ts = 0, follow = 0, values = 0;
    int offset_mode = 0; /* --offset: 0 a number (or none), 1 earliest, 2 latest */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int m;
        uint64_t u;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            spw_help_write(stdout, consume_help, SPW_HELP_WIDTH);
            return 0;
        }
        if ((m = spw__cli_opt("consume", argc, argv, &i, "--server", &v))) {
            if (m < 0)
                return 2;
            server = v;
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--token", &v))) {
            if (m < 0)
                return 2;
            token = v;
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--partition", &v))) {
            if (m < 0 || spw__cli_u64(v, 0, 1023, &partition)) {
                if (m > 0)
                    fprintf(stderr, "spillway consume: --partition takes a partition number, not '%s'\n", v);
                return 2;
            }
            has_part = 1;
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--offset", &v))) {
            if (m > 0 && strcmp(v, "earliest") == 0) {
                has_offset = 0; /* the default: each partition's oldest kept record */
                offset_mode = 1;
                continue;
            }
            if (m > 0 && strcmp(v, "latest") == 0) {
                offset_mode = 2; /* each partition's end, read from the stream's description */
                continue;
            }
            if (m < 0 || spw__cli_u64(v, 0, UINT64_MAX, &offset)) {
                if (m > 0)
                    fprintf(stderr,
                            "spillway consume: --offset takes a non-negative integer, earliest or latest, not '%s'\n",
                            v);
                return 2;
            }
            has_offset = 1;
            offset_mode = 0;
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--from-ts", &v))) {
            int neg = v[0] == '-';
            if (m < 0 || spw__cli_u64(v + neg, 0, INT64_MAX, &u)) {
                if (m > 0)
                    fprintf(stderr, "spillway consume: --from-ts takes ms since the Unix epoch, not '%s'\n", v);
                return 2;
            }
            from_ts = neg ? -(int64_t)u : (int64_t)u;
            has_ts = 1;
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--max", &v))) {
            if (m < 0 || spw__cli_u64(v, 1, UINT64_MAX, &max)) {
                if (m > 0)
                    fprintf(stderr, "spillway consume: --max takes a positive integer, not '%s'\n", v);
                return 2;
            }
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--group", &v))) {
            if (m < 0)
                return 2;
            group = v;
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--member", &v))) {
            if (m < 0)
                return 2;
            member = v;
        } else if ((m = spw__cli_opt("consume", argc, argv, &i, "--start", &v))) {
            if (m < 0 || (strcmp(v, "earliest") && strcmp(v, "latest"))) {
                if (m > 0)
                    fprintf(stderr, "spillway consume: --start takes earliest or latest, not '%s'\n", v);
                return 2;
            }
            start = v;
        } else if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0) {
            follow = 1;
        } else if (strcmp(a, "--values") == 0) {
            values = 1;
        } else if (a[0] != '-' && !stream) {
            stream = a;
        } else {
            fprintf(stderr, "spillway consume: unexpected argument '%s'\n", a);
            spw_help_write(stderr, consume_help, SPW_HELP_WIDTH);
            return 2;
        }
    }
    if (!stream) {
        fputs("spillway consume: a STREAM is required\n", stderr);
        spw_help_write(stderr, consume_help, SPW_HELP_WIDTH);
        return 2;
    }
    if (!spw__cli_stream_name_ok(stream)) {
        fprintf(stderr, "spillway consume: '%s' is not a stream name (" SPW_NAME_RULE ")\n",
                stream);
        return 2;
    }
    if (offset_mode == 2 && has_ts) {
        fputs("spillway consume: give --offset or --from-ts, not both\n", stderr);
        return 2;
    }
    if (has_offset && has_ts) {
        fputs("spillway consume: give --offset or --from-ts, not both\n", stderr);
        return 2;
    }
    char member_buf[32];
    if (group) {
        if (!spw_name_ok(group, strlen(group), SPW_NAME_MAX)) {
            fprintf(stderr, "spillway consume: '%s' is not a group name (" SPW_NAME_RULE ")\n",
                    group);
            return 2;
        }
        if (has_part || has_offset || has_ts || offset_mode == 2) {
            fputs("spillway consume: --group reads where the group stands: no --partition, --offset or --from-ts\n",
                  stderr);
            return 2;
        }
        if (!member) {
            snprintf(member_buf, sizeof member_buf, "cli-%ld", (long)getpid());
            member = member_buf;
        }
        if (!spw_name_ok(member, strlen(member), 64)) {
            fprintf(stderr, "spillway consume: '%s' is not a member name (1 to 64 " SPW_NAME_CHARS ")\n",
                    member);
            return 2;
        }
    } else if (member || strcmp(start, "earliest")) {
        fputs("spillway consume: --member and --start go with --group\n", stderr);
        return 2;
    }
    spw_httpc c;
    int rc = spw__cli_server("consume", server, &c);
    if (!rc)
        rc = spw__cli_token("consume", token, &c, &token);
    if (rc)
        return rc;

    if (group) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        rc = consume_group(&c, stream, group, member, start, follow, max, values);
        spw_httpc_close(&c);
        return rc;
    }

    /* The stream's partition count. */
    char target[300];
    snprintf(target, sizeof target, "/v1/streams/%s", stream);
    spw_httpc_resp r;
    int st = spw_httpc_request(&c, "GET", target, NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, &r);
    if (st < 0) {
        spw__cli_conn_error("consume", &c);
        spw_httpc_close(&c);
        return 1;
    }
    if (st != 200) {
        spw__cli_server_error("consume", &r);
        spw_httpc_close(&c);
        return 1;
    }
    spw_json_span o;
    int64_t nparts = spw__cli_parse(r.body, r.body_len, &o) == 0 ? spw__cli_int(&o, "partitions", 0) : 0;
    if (nparts <= 0) {
        fputs("spillway consume: the server's stream description has no partition count\n", stderr);
        spw_httpc_close(&c);
        return 1;
    }
    if (has_part && partition >= (uint64_t)nparts) {
        fprintf(stderr, "spillway consume: stream %s has %" PRId64 " partition(s), so there is no partition %" PRIu64
                        "\n",
                stream, nparts, partition);
        spw_httpc_close(&c);
        return 1;
    }
    uint32_t first = has_part ? (uint32_t)partition : 0, count = has_part ? 1 : (uint32_t)nparts;
    part_pos *pos = spw_xcalloc(count, sizeof *pos);
    for (uint32_t k = 0; k < count; k++) {
        pos[k].next = offset;
        pos[k].started = has_offset;
    }
    if (offset_mode == 2) { /* latest: from each partition's end as described */
        spw_json_span ps, e;
        const char *cur = NULL;
        if (!spw__cli_member(&o, "partition_state", &ps)) {
            fputs("spillway consume: the server's stream description has no partition_state\n", stderr);
            spw_free(pos);
            spw_httpc_close(&c);
            return 1;
        }
        while (spw__cli_array_next(&ps, &cur, &e)) {
            /* the durable end: reads see durable records only, and one
             * past it is out of range (docs/api.md "Read") */
            int64_t p = spw__cli_int(&e, "partition", -1), end = spw__cli_int(&e, "durable_offset", -1);
            if (p >= (int64_t)first && p < (int64_t)first + count && end >= 0) {
                pos[p - first].next = (uint64_t)end;
                pos[p - first].started = 1;
            }
        }
        has_offset = 1; /* where to begin is named, as by a number */
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    uint64_t printed = 0;
    int sleep_for = POLL_MIN_MS;
    rc = 0;
    while (!stop_requested && rc == 0) {
        uint64_t round = 0;
        for (uint32_t k = 0; k < count && !stop_requested && rc == 0 && (!max || printed < max); k++) {
            uint32_t p = first + k;
            /* Read this partition until an answer comes back empty. */
            for (;;) {
                uint64_t limit = READ_LIMIT_MAX;
                if (max && max - printed < limit)
                    limit = max - printed;
                int n = snprintf(target, sizeof target, "/v1/streams/%s/events?partition=%u&limit=%" PRIu64, stream,
                                 p, limit);
                if (pos[k].started)
                    snprintf(target + n, sizeof target - (size_t)n, "&offset=%" PRIu64, pos[k].next);
                else if (has_ts)
                    snprintf(target + n, sizeof target - (size_t)n, "&from_ts=%" PRId64, from_ts);
                st = spw_httpc_request(&c, "GET", target, NULL, NULL, NULL, 0, SPW_CLI_CONNECT_WAIT_MS, &r);
                if (st < 0) {
                    spw__cli_conn_error("consume", &c);
                    rc = 1;
                    break;
                }
                int found;
                if (st == 416) {
                    uint64_t start = header_u64(&r, "Spillway-Start-Offset", &found);
                    if (found && pos[k].started && !has_offset && start > pos[k].next) {
                        /* Retention removed records ahead of us while following. */
                        fprintf(stderr, "spillway consume: partition %u: offsets %" PRIu64 "..%" PRIu64
                                        " were removed by retention; continuing at %" PRIu64 "\n",
                                p, pos[k].next, start - 1, start);
                        pos[k].next = start;
                        continue;
                    }
                    spw__cli_server_error("consume", &r);
                    rc = 1;
                    break;
                }
                if (st != 200) {
                    spw__cli_server_error("consume", &r);
                    rc = 1;
                    break;
                }
                uint64_t got = print_records(r.body, r.body_len, values);
                uint64_t next = header_u64(&r, "Spillway-Next-Offset", &found);
                if (!found) {
                    fputs("spillway consume: the server's answer has no Spillway-Next-Offset header\n", stderr);
                    rc = 1;
                    break;
                }
                pos[k].next = next;
                pos[k].started = 1;
                has_offset = 0; /* --offset only names where to begin */
                printed += got;
                round += got;
                if (got)
                    fflush(stdout);
                if (got == 0 || (max && printed >= max) || stop_requested)
                    break;
            }
        }
        if (!follow || (max && printed >= max))
            break;
        if (round == 0) {
            sleep_ms(sleep_for);
            sleep_for = sleep_for * 2 > POLL_MAX_MS ? POLL_MAX_MS : sleep_for * 2;
        } else {
            sleep_for = POLL_MIN_MS;
        }
    }
    fflush(stdout);
    spw_free(pos);
    spw_httpc_close(&c);
    return rc;
}
