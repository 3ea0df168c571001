/*
 * `spillway sink ...` and `spillway group ...` against a real server, and
 * the endpoints behind group: GET /v1/streams/{s}/groups and POST
 * /v1/streams/{s}/groups/{g}/reset (docs/api.md "Consumer groups"):
 * - sink create (from --definition and from a file), list, show, delete,
 *   with the server's errors (exists, no such stream, bad JSON) and usage
 *   errors (exit 2);
 * - group list and show over a group with committed offsets;
 * - group reset is refused (409 group_active, exit 1) while a member holds
 *   a lease, and changes nothing; then latest, earliest, an offset on one
 *   partition (the others untouched), an offset past the end (refused),
 *   an unknown group (404); a reset survives a restart, and a poll after
 *   it delivers from the reset offset.
 */
#include "server.h"

static const char *bin;
static char srv_opt[64];

static cli_out run(const char *fmt, const char *a, const char *b)
{
    char args[2048];
    snprintf(args, sizeof args, fmt, a, b);
    return cli_run(bin, "%s %s", args, srv_opt);
}

static void expect(cli_out o, int rc, const char *needle)
{
    if (o.rc != rc || (needle && !strstr(o.text, needle)))
        fprintf(stderr, "unexpected (rc %d, want %d, want text '%s'):\n%s\n", o.rc, rc, needle ? needle : "",
                o.text);
    CHECK_EQ(o.rc, rc);
    if (needle)
        CHECK(strstr(o.text, needle) != NULL);
    free(o.text);
}

/* Polls group g of stream orders once: the lease (into lease), its
 * partition and first and next offsets. Returns the status. */
static int poll_once(int port, const char *g, char *lease, uint64_t *part, uint64_t *first, uint64_t *next)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/orders/groups/%s/poll?max=100&member=w1&lease_ms=60000", g);
    resp r = http(port, "POST", path, NULL, "", 0);
    int st = r.status;
    if (st == 200) {
        CHECK(header(&r, "Spillway-Lease", lease, 64));
        *part = header_u64(&r, "Spillway-Partition");
        *first = header_u64(&r, "Spillway-First-Offset");
        *next = header_u64(&r, "Spillway-Next-Offset");
    }
    free(r.body);
    return st;
}

static void commit(int port, const char *g, const char *lease, uint64_t next)
{
    char path[256], body[128];
    snprintf(path, sizeof path, "/v1/streams/orders/groups/%s/commit", g);
    snprintf(body, sizeof body, "{\"lease\":\"%s\",\"offset\":%llu}", lease, (unsigned long long)next);
    CHECK_EQ(req_status(port, "POST", path, body), 200);
}

#define GPATH "/v1/streams/orders/groups/billing"

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    char *dir = spw_test_tmpdir("admincmds");
    char data[4200], file[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    srv s;
    srv_start(&s, bin, data, NULL);
    snprintf(srv_opt, sizeof srv_opt, "--server 127.0.0.1:%d", s.port);
    put_stream(s.port, "orders", "{\"partitions\":2,\"key\":\"/k\"}");
    put_stream(s.port, "copy", "{\"partitions\":1}");

    /* ---- sinks ---- */
    char def[512];
    snprintf(def, sizeof def,
             "'{\"stream\":\"orders\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":"
             "\"copy\"}}'",
             s.binport);
    expect(run("sink create to-copy --definition %s%s", def, ""), 0, "created sink to-copy");
    expect(run("sink create to-copy --definition %s%s", def, ""), 0, "already exists with this definition");
    snprintf(file, sizeof file, "%s/def.json", dir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"stream\":\"orders\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:%d\","
               "\"stream\":\"nowhere\"}}\n", s.binport);
    fclose(f);
    expect(run("sink create to-copy --file %s%s", file, ""), 1, "exists");
    expect(run("sink create second --file %s%s", file, ""), 0, "created sink second");
    expect(run("sink create third --definition '[1]'%s%s", "", ""), 2, "not a JSON object");
    expect(run("sink create third%s%s", "", ""), 2, "--file FILE or --definition JSON");
    expect(run("sink create third --definition '{\"stream\":\"none\",\"kind\":\"forward\",\"options\":"
               "{\"address\":\"127.0.0.1:1\",\"stream\":\"x\"}}'%s%s", "", ""), 1, "none");
    expect(run("sink bogus%s%s", "", ""), 2, "unknown subcommand");
    expect(run("sink show .bad%s%s", "", ""), 2, "not a sink name");
    cli_out o = run("sink list%s%s", "", "");
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "to-copy") && strstr(o.text, "second") && strstr(o.text, "forward"));
    CHECK(strstr(o.text, "second") < strstr(o.text, "to-copy")); /* sorted by name */
    free(o.text);
    /* produce, then the sink's delivery shows in sink show */
    const char *ev = "{\"k\":\"a\"}\n{\"k\":\"b\"}\n{\"k\":\"c\"}\n{\"k\":\"d\"}\n{\"k\":\"e\"}\n{\"k\":\"f\"}\n";
    resp r = http(s.port, "POST", "/v1/streams/orders/events", "application/x-ndjson", ev, strlen(ev));
    CHECK(r.status == 200 || r.status == 202);
    free(r.body);
    CHECK_EQ(wait_part_field(s.port, "/v1/streams/copy", 0, "end_offset", 6), 6);
    int shown = 0;
    for (int i = 0; i < 500 && !shown; i++) {
        o = run("sink show to-copy%s%s", "", "");
        CHECK_EQ(o.rc, 0);
        shown = strstr(o.text, "delivered        6 records") != NULL;
        if (shown) {
            CHECK(strstr(o.text, "stream           orders") != NULL);
            CHECK(strstr(o.text, "kind             forward") != NULL);
            CHECK(strstr(o.text, "lag              0") != NULL);
        }
        free(o.text);
        if (!shown)
            usleep(10000);
    }
    CHECK(shown);
    o = run("sink show to-copy --json%s%s", "", "");
    CHECK_EQ(o.rc, 0);
    CHECK(strncmp(o.text, "{\"name\":\"to-copy\"", 17) == 0);
    free(o.text);
    expect(run("sink delete second%s%s", "", ""), 0, "deleted sink second");
    expect(run("sink delete second%s%s", "", ""), 1, "no sink named second");
    expect(run("sink show second%s%s", "", ""), 1, "no sink named second");
    o = run("sink list%s%s", "", "");
    CHECK(o.rc == 0 && strstr(o.text, "second") == NULL && strstr(o.text, "to-copy"));
    free(o.text);

    /* ---- groups ---- */
    expect(run("group list orders%s%s", "", ""), 0, "stream orders has no consumer groups");
    char lease[64];
    uint64_t part, first, next, ends[2];
    ends[0] = part_field(s.port, "/v1/streams/orders", 0, "end_offset");
    ends[1] = part_field(s.port, "/v1/streams/orders", 1, "end_offset");
    CHECK_EQ(ends[0] + ends[1], 6);
    CHECK(ends[0] > 1 && ends[1] > 1); /* a..f spread over both */
    CHECK_EQ(poll_once(s.port, "billing", lease, &part, &first, &next), 200);
    CHECK_EQ(first, 0);
    /* a member holds a lease: refused, nothing changed */
    r = http_json(s.port, "POST", GPATH "/reset", "{\"to\":\"latest\"}");
    CHECK_EQ(r.status, 409);
    CHECK(strstr(r.body, "\"code\":\"group_active\"") && strstr(r.body, "w1"));
    free(r.body);
    expect(run("group reset orders billing --to latest%s%s", "", ""), 1, "active members");
    o = run("group list orders%s%s", "", "");
    CHECK(o.rc == 0 && strstr(o.text, "billing") && strstr(o.text, "active (1 partition(s) leased)"));
    free(o.text);
    CHECK_EQ(part_field(s.port, GPATH, (int)part, "committed"), 0);
    commit(s.port, "billing", lease, next);
    CHECK_EQ(part_field(s.port, GPATH, (int)part, "committed"), next);
    o = run("group show orders billing%s%s", "", "");
    CHECK(o.rc == 0 && strstr(o.text, "consumer group billing") && strstr(o.text, "total"));
    free(o.text);
    o = run("group list orders --json%s%s", "", "");
    CHECK(o.rc == 0 && strstr(o.text, "{\"group\":\"billing\",\"partitions\":2,") &&
          strstr(o.text, "\"active\":false"));
    free(o.text);

    /* latest: every partition at its end, lag 0 */
    expect(run("group reset orders billing --to latest%s%s", "", ""), 0, "reset consumer group billing");
    CHECK_EQ(part_field(s.port, GPATH, 0, "committed"), ends[0]);
    CHECK_EQ(part_field(s.port, GPATH, 1, "committed"), ends[1]);
    /* earliest */
    expect(run("group reset orders billing --to=earliest%s%s", "", ""), 0, NULL);
    CHECK_EQ(part_field(s.port, GPATH, 0, "committed"), 0);
    CHECK_EQ(part_field(s.port, GPATH, 1, "committed"), 0);
    /* an offset on one partition: the other untouched */
    expect(run("group reset orders billing --to 1 --partition 1%s%s", "", ""), 0, NULL);
    CHECK_EQ(part_field(s.port, GPATH, 0, "committed"), 0);
    CHECK_EQ(part_field(s.port, GPATH, 1, "committed"), 1);
    /* refused: past the end, no such partition, no such group, bad body */
    expect(run("group reset orders billing --to 99%s%s", "", ""), 1, "outside partition");
    CHECK_EQ(part_field(s.port, GPATH, 1, "committed"), 1);
    expect(run("group reset orders billing --to 0 --partition 7%s%s", "", ""), 1, "partitions 0 to 1");
    expect(run("group reset orders nobody --to 0%s%s", "", ""), 1, "no consumer group named nobody");
    expect(run("group reset orders billing --to soon%s%s", "", ""), 2, "--to takes earliest");
    expect(run("group reset orders billing%s%s", "", ""), 2, "--to earliest|latest|OFFSET is required");
    CHECK_EQ(req_status(s.port, "POST", GPATH "/reset", "{\"to\":\"now\"}"), 400);
    CHECK_EQ(req_status(s.port, "POST", GPATH "/reset", "{\"to\":1,\"extra\":2}"), 400);
    CHECK_EQ(req_status(s.port, "POST", GPATH "/reset", "[]"), 400);
    CHECK_EQ(req_status(s.port, "GET", GPATH "/reset", NULL), 405);
    CHECK_EQ(req_status(s.port, "POST", "/v1/streams/orders/groups", "{}"), 405);
    CHECK_EQ(req_status(s.port, "GET", "/v1/streams/nostream/groups", NULL), 404);

    /* durable: after a restart, and the next poll of partition 1 starts at 1 */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    srv_start(&s, bin, data, NULL);
    snprintf(srv_opt, sizeof srv_opt, "--server 127.0.0.1:%d", s.port);
    CHECK_EQ(part_field(s.port, GPATH, 1, "committed"), 1);
    expect(run("group reset orders billing --to latest --partition 0%s%s", "", ""), 0, NULL);
    CHECK_EQ(poll_once(s.port, "billing", lease, &part, &first, &next), 200);
    CHECK_EQ(part, 1);
    CHECK_EQ(first, 1);
    CHECK_EQ(next, ends[1]);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_admin_cmds: ok");
    return 0;
}
