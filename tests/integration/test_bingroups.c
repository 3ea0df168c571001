/*
 * Consumer groups over the binary protocol (docs/protocol.md GROUP_POLL,
 * GROUP_COMMIT) against a real server, with raw frames: two members share
 * the partitions, a member that stops polling has its records redelivered
 * to the other after its lease expires, long-poll (the "nothing" answer
 * after the wait, woken by a write), bad frames and names (400, the
 * connection stays usable, nothing changes), stale and expired leases
 * (409), HTTP and binary members of one group seeing the same state (each
 * commits the other's lease), commits surviving a restart, and the token
 * checks (401, 403), and a poll parked at shutdown answered "nothing".
 */
#include "binframe.h"
#include "groups.h"

static const char *bin;
static const char *tbin; /* spillway_test: with the fault hook (/debug/faults) */
static uint64_t next_id = 1;

#define NPARTS 4

typedef struct gpolled {
    int delivered;
    uint32_t partition;
    uint64_t lease_id, first, next;
    uint32_t count;
    uint64_t offsets[64]; /* of the first records */
    char values[64][64];  /* their values (truncated) */
} gpolled;

/* One GROUP_POLL frame, not waiting for its answer. */
static void send_poll(int fd, const char *group, const char *member, uint8_t start, uint32_t max, uint32_t wait_ms,
                      uint32_t lease_ms)
{
    spw_buf b = SPW_BUF_INIT;
    spw_gpoll_req q = {.stream = "s", .stream_len = 1, .group = group, .group_len = (uint16_t)strlen(group),
                       .member = member, .member_len = (uint16_t)strlen(member), .start = start, .max = max,
                       .wait_ms = wait_ms, .lease_ms = lease_ms};
    CHECK_OK(spw_gpoll_req_encode(&b, &q));
    send_frame(fd, SPW_OP_GROUP_POLL, next_id++, &b);
    spw_buf_fini(&b);
}

/* Reads a GROUP_POLL answer: its status (0 with *out filled); the error's
 * code into code. */
static int read_poll(int fd, gpolled *out, char *code)
{
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    CHECK_EQ(f.h.opcode, SPW_OP_GROUP_POLL);
    int st = answer_status(&f, code, NULL);
    if (st == 0) {
        spw_gpoll_resp r;
        const char *why;
        CHECK_EQ(spw_gpoll_resp_decode(f.body + 2, f.len - 2, &r, &why), 0);
        memset(out, 0, sizeof *out);
        out->delivered = r.delivered;
        out->partition = r.partition;
        out->lease_id = r.lease_id;
        out->first = r.first_offset;
        out->next = r.next_offset;
        out->count = r.count;
        spw_fetch_iter it;
        spw_fetch_rec fr;
        spw_gpoll_iter_init(&it, &r);
        uint64_t want = r.first_offset;
        for (uint32_t i = 0; spw_fetch_iter_next(&it, &fr); i++) {
            CHECK_EQ(fr.offset, want); /* dense, in order, from first */
            want++;
            if (i < 64) {
                out->offsets[i] = fr.offset;
                size_t n = fr.value_len < 63 ? fr.value_len : 63;
                memcpy(out->values[i], fr.value, n);
                out->values[i][n] = 0;
            }
        }
        if (r.delivered)
            CHECK_EQ(want, r.next_offset);
    }
    free(f.body);
    return st;
}

static int bpoll(int fd, const char *group, const char *member, uint32_t max, uint32_t wait_ms, uint32_t lease_ms,
                 gpolled *out, char *code)
{
    send_poll(fd, group, member, SPW_GPOLL_EARLIEST, max, wait_ms, lease_ms);
    return read_poll(fd, out, code);
}

static int bcommit(int fd, const char *group, uint32_t part, uint64_t lease, uint64_t offset, char *code)
{
    return bin_gcommit(fd, next_id++, "s", group, part, lease, offset, code);
}

/* A raw request body; the answer's status and code. */
static int raw(int fd, uint8_t op, const void *body, size_t len, char *code)
{
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_buf_reserve(&b, len + 1));
    if (len)
        memcpy(b.p, body, len);
    b.len = len;
    send_frame(fd, op, next_id++, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    int st = answer_status(&f, code, NULL);
    free(f.body);
    return st;
}

/* Two binary members share the partitions: each delivered to exactly one,
 * nothing left for a third while all are held; then everything is
 * committed and the lag is 0. */
static void test_share(int port, int binport)
{
    int fd1 = tcp_connect(binport), fd2 = tcp_connect(binport), fd3 = tcp_connect(binport);
    int held[NPARTS] = {0};
    gpolled g[NPARTS];
    for (int i = 0; i < NPARTS; i++) {
        gpolled r;
        CHECK_EQ(bpoll(i % 2 ? fd2 : fd1, "g", i % 2 ? "b2" : "b1", 1000, 0, 0, &r, NULL), 0);
        CHECK_EQ(r.delivered, 1);
        CHECK(r.partition < NPARTS);
        CHECK(!held[r.partition]); /* never two holders */
        held[r.partition] = 1;
        CHECK_EQ(r.first, 0);
        CHECK_EQ(r.next, end_offset(port, (int)r.partition));
        CHECK_EQ(r.count, (uint32_t)r.next);
        g[r.partition] = r;
    }
    gpolled r;
    CHECK_EQ(bpoll(fd3, "g", "b3", 0, 0, 0, &r, NULL), 0);
    CHECK_EQ(r.delivered, 0);
    resp h = http_json(port, "GET", "/v1/streams/s/groups/g", NULL);
    CHECK_EQ(h.status, 200);
    CHECK(strstr(h.body, "\"holder\":\"b1\"") && strstr(h.body, "\"holder\":\"b2\""));
    free(h.body);
    /* Partition 0 committed one short: its last record comes again, alone. */
    for (int p = 0; p < NPARTS; p++) {
        uint64_t o = p == 0 ? g[p].next - 1 : g[p].next;
        CHECK_EQ(bcommit(p % 2 ? fd1 : fd2, "g", (uint32_t)p, g[p].lease_id, o, NULL), 0);
        CHECK_EQ(group_field(port, "g", p, "committed"), o);
    }
    CHECK_EQ(bpoll(fd3, "g", "b3", 0, 0, 0, &r, NULL), 0);
    CHECK_EQ(r.delivered, 1);
    CHECK_EQ(r.partition, 0);
    CHECK_EQ(r.first, g[0].next - 1);
    CHECK_EQ(r.count, 1);
    char code[64];
    /* Outside the lease's records: 400, nothing changes. */
    CHECK_EQ(bcommit(fd3, "g", 0, r.lease_id, r.next + 1, code), 400);
    CHECK(strcmp(code, "bad_offset") == 0);
    CHECK_EQ(bcommit(fd3, "g", 0, r.lease_id, r.first - 1, code), 400);
    CHECK_EQ(group_field(port, "g", 0, "committed"), r.first);
    CHECK_EQ(bcommit(fd3, "g", 0, r.lease_id, r.next, NULL), 0);
    /* Committed twice, or a lease of another partition: 409 stale_lease. */
    CHECK_EQ(bcommit(fd3, "g", 0, r.lease_id, r.next, code), 409);
    CHECK(strcmp(code, "stale_lease") == 0);
    CHECK_EQ(bcommit(fd3, "g", 1, r.lease_id, r.next, code), 409);
    CHECK_EQ(bcommit(fd3, "g", 999, r.lease_id, 0, code), 409);
    for (int p = 0; p < NPARTS; p++)
        CHECK_EQ(group_field(port, "g", p, "lag"), 0);
    close(fd1);
    close(fd2);
    close(fd3);
}

/* A member takes a short lease and stops polling: after it expires the
 * other member gets the same records from the same offset; the first
 * member's late commit is 409. A lease that expired with nobody taking
 * over is 409 lease_expired. */
static void test_member_dies(int port, int binport)
{
    produce(port, 40, 1000);
    int fdd = tcp_connect(binport), fda = tcp_connect(binport);
    uint64_t end[NPARTS];
    for (int p = 0; p < NPARTS; p++)
        end[p] = end_offset(port, p);
    gpolled dead, r;
    CHECK_EQ(bpoll(fdd, "g", "dying", 0, 0, 300, &dead, NULL), 0);
    CHECK_EQ(dead.delivered, 1);
    int got_dead = 0;
    for (int i = 0; i < 50 && !got_dead; i++) {
        CHECK_EQ(bpoll(fda, "g", "alive", 0, 5000, 30000, &r, NULL), 0);
        CHECK_EQ(r.delivered, 1); /* the dying lease expires long before the wait ends */
        if (r.partition == dead.partition) {
            got_dead = 1;
            CHECK_EQ(r.first, dead.first);
            CHECK_EQ(r.count, dead.count);
            for (uint32_t k = 0; k < r.count && k < 64; k++)
                CHECK(strcmp(r.values[k], dead.values[k]) == 0);
        }
        CHECK_EQ(bcommit(fda, "g", r.partition, r.lease_id, r.next, NULL), 0);
    }
    CHECK(got_dead);
    char code[64];
    CHECK_EQ(bcommit(fdd, "g", dead.partition, dead.lease_id, dead.next, code), 409);
    CHECK(strcmp(code, "stale_lease") == 0);
    for (int p = 0; p < NPARTS; p++)
        CHECK_EQ(group_field(port, "g", p, "committed"), end[p]);
    /* Expired, nobody took over. */
    produce(port, 4, 2000);
    CHECK_EQ(bpoll(fdd, "g", "slow", 0, 0, 100, &r, NULL), 0);
    CHECK_EQ(r.delivered, 1);
    /* Wait until the server itself reports the lease gone (bounded). */
    int held = 1;
    for (int i = 0; i < 1000 && held; i++) {
        resp h = http_json(port, "GET", "/v1/streams/s/groups/g", NULL);
        held = strstr(h.body, "\"holder\":\"slow\"") != NULL;
        free(h.body);
        if (held)
            usleep(20000);
    }
    CHECK(!held);
    CHECK_EQ(bcommit(fdd, "g", r.partition, r.lease_id, r.next, code), 409);
    CHECK(strcmp(code, "lease_expired") == 0);
    /* Drain what is left so later tests start with lag 0. */
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(bpoll(fda, "g", "alive", 0, 0, 0, &r, NULL), 0);
        if (!r.delivered)
            break;
        CHECK_EQ(bcommit(fda, "g", r.partition, r.lease_id, r.next, NULL), 0);
    }
    CHECK_EQ(r.delivered, 0);
    close(fdd);
    close(fda);
}

/* Long-poll: the "nothing" answer once the wait is over; a parked poll is
 * answered by a write, and the connection's other requests go on while it
 * waits (and so do other connections). */
static void test_long_poll(int port, int binport)
{
    int fd = tcp_connect(binport);
    gpolled r;
    CHECK_EQ(bpoll(fd, "g", "lp", 0, 200, 0, &r, NULL), 0);
    CHECK_EQ(r.delivered, 0);
    send_poll(fd, "g", "lp", SPW_GPOLL_EARLIEST, 0, 60000, 0);
    /* While it is parked: a METADATA on the same connection is answered. */
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_metadata_req_encode(&b, "s", 1));
    send_frame(fd, SPW_OP_METADATA, next_id++, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    CHECK_EQ(f.h.opcode, SPW_OP_METADATA);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    free(f.body);
    produce(port, 1, 3000);
    CHECK_EQ(read_poll(fd, &r, NULL), 0);
    CHECK_EQ(r.delivered, 1);
    CHECK_EQ(r.count, 1);
    CHECK(strstr(r.values[0], "\"n\":3000") != NULL);
    CHECK_EQ(bcommit(fd, "g", r.partition, r.lease_id, r.next, NULL), 0);
    close(fd);
}

/* Bad frames and names: 400 with a reason, nothing created or changed,
 * the connection still answers. */
static void test_bad_input(int port, int binport)
{
    int fd = tcp_connect(binport);
    char code[64];
    uint8_t junk[3] = {1, 0, 's'};
    CHECK_EQ(raw(fd, SPW_OP_GROUP_POLL, junk, sizeof junk, code), 400); /* truncated */
    CHECK(strcmp(code, "bad_request") == 0);
    CHECK_EQ(raw(fd, SPW_OP_GROUP_COMMIT, junk, sizeof junk, code), 400);
    CHECK_EQ(raw(fd, SPW_OP_GROUP_POLL, NULL, 0, code), 400);
    /* A valid poll with one byte more. */
    spw_buf b = SPW_BUF_INIT;
    spw_gpoll_req q = {.stream = "s", .stream_len = 1, .group = "bad", .group_len = 3};
    CHECK_OK(spw_gpoll_req_encode(&b, &q));
    CHECK_OK(spw_buf_reserve(&b, b.len + 1));
    b.p[b.len++] = 0;
    CHECK_EQ(raw(fd, SPW_OP_GROUP_POLL, b.p, b.len, code), 400);
    /* start 2, wait over a minute, lease below 100 ms */
    b.len = 0;
    q.start = 2;
    CHECK_OK(spw_gpoll_req_encode(&b, &q));
    CHECK_EQ(raw(fd, SPW_OP_GROUP_POLL, b.p, b.len, code), 400);
    b.len = 0;
    q.start = 0;
    q.wait_ms = 60001;
    CHECK_OK(spw_gpoll_req_encode(&b, &q));
    CHECK_EQ(raw(fd, SPW_OP_GROUP_POLL, b.p, b.len, code), 400);
    b.len = 0;
    q.wait_ms = 0;
    q.lease_ms = 99;
    CHECK_OK(spw_gpoll_req_encode(&b, &q));
    CHECK_EQ(raw(fd, SPW_OP_GROUP_POLL, b.p, b.len, code), 400);
    spw_buf_fini(&b);
    gpolled r;
    CHECK_EQ(bpoll(fd, "a/b", "m", 0, 0, 0, &r, code), 400);
    CHECK(strcmp(code, "bad_name") == 0);
    CHECK_EQ(bpoll(fd, ".hidden", "m", 0, 0, 0, &r, code), 400);
    CHECK_EQ(bpoll(fd, "bad", "no spaces", 0, 0, 0, &r, code), 400);
    CHECK(strcmp(code, "bad_name") == 0);
    CHECK_EQ(bcommit(fd, "a/b", 0, 1, 0, code), 400);
    /* None of those created a group. */
    resp h = http_json(port, "GET", "/v1/streams/s/groups/bad", NULL);
    CHECK_EQ(h.status, 404);
    free(h.body);
    /* Unknown group or stream: 404. */
    CHECK_EQ(bcommit(fd, "nosuch", 0, 1, 0, code), 404);
    CHECK(strcmp(code, "no_such_group") == 0);
    spw_buf c = SPW_BUF_INIT;
    spw_gpoll_req q2 = {.stream = "nostream", .stream_len = 8, .group = "g", .group_len = 1};
    CHECK_OK(spw_gpoll_req_encode(&c, &q2));
    CHECK_EQ(raw(fd, SPW_OP_GROUP_POLL, c.p, c.len, code), 404);
    CHECK(strcmp(code, "no_such_stream") == 0);
    spw_buf_fini(&c);
    /* The connection still works. */
    CHECK_EQ(bpoll(fd, "g", "m", 0, 0, 0, &r, NULL), 0);
    CHECK_EQ(r.delivered, 0);
    for (int p = 0; p < NPARTS; p++)
        CHECK_EQ(group_field(port, "g", p, "lag"), 0);
    close(fd);
}

/* HTTP and binary members of one group: a partition leased over one
 * protocol is not given over the other, and each commits the other's
 * lease (same leases, same offsets). */
static void test_mixed(int port, int binport)
{
    produce(port, 40, 4000);
    int fd = tcp_connect(binport);
    gpolled r;
    CHECK_EQ(bpoll(fd, "g", "binm", 0, 0, 0, &r, NULL), 0);
    CHECK_EQ(r.delivered, 1);
    int seen[NPARTS] = {0};
    seen[r.partition] = 1;
    gpolled bin_lease = r;
    char hlease[64] = "";
    uint64_t hnext = 0;
    int hpart = -1;
    for (int i = 0; i < NPARTS; i++) {
        resp h = http(port, "POST", "/v1/streams/s/groups/g/poll?member=httpm", NULL, "", 0);
        if (h.status == 204) {
            free(h.body);
            break;
        }
        CHECK_EQ(h.status, 200);
        char v[64];
        CHECK(header(&h, "Spillway-Partition", v, sizeof v));
        int p = atoi(v);
        CHECK(p >= 0 && p < NPARTS);
        CHECK(!seen[p]); /* never the binary member's partition */
        seen[p] = 1;
        CHECK(header(&h, "Spillway-Next-Offset", v, sizeof v));
        uint64_t next = strtoull(v, NULL, 10);
        char lease[64];
        CHECK(header(&h, "Spillway-Lease", lease, sizeof lease));
        free(h.body);
        if (hpart < 0) {
            /* Committed below over the binary protocol. */
            hpart = p;
            hnext = next;
            snprintf(hlease, sizeof hlease, "%s", lease);
        } else {
            char body[160];
            snprintf(body, sizeof body, "{\"lease\":\"%s\",\"offset\":%" PRIu64 "}", lease, next);
            h = http_json(port, "POST", "/v1/streams/s/groups/g/commit", body);
            CHECK_EQ(h.status, 200);
            free(h.body);
        }
    }
    resp h = http_json(port, "GET", "/v1/streams/s/groups/g", NULL);
    CHECK_EQ(h.status, 200);
    CHECK(strstr(h.body, "\"holder\":\"binm\"") != NULL);
    free(h.body);
    /* The binary lease committed over HTTP: "P-" + 16 hex digits. */
    char body[160];
    snprintf(body, sizeof body, "{\"lease\":\"%" PRIu32 "-%016" PRIx64 "\",\"offset\":%" PRIu64 "}",
             bin_lease.partition, bin_lease.lease_id, bin_lease.next);
    h = http_json(port, "POST", "/v1/streams/s/groups/g/commit", body);
    CHECK_EQ(h.status, 200);
    free(h.body);
    CHECK_EQ(group_field(port, "g", (int)bin_lease.partition, "committed"), bin_lease.next);
    /* The HTTP lease committed over the binary protocol. */
    CHECK(hpart >= 0);
    const char *dash = strchr(hlease, '-');
    CHECK(dash != NULL);
    CHECK_EQ(strtoul(hlease, NULL, 10), (unsigned long)hpart);
    uint64_t hid = strtoull(dash + 1, NULL, 16);
    CHECK_EQ(bcommit(fd, "g", (uint32_t)hpart, hid, hnext, NULL), 0);
    CHECK_EQ(group_field(port, "g", hpart, "committed"), hnext);
    for (int p = 0; p < NPARTS; p++)
        CHECK_EQ(group_field(port, "g", p, "lag"), 0);
    close(fd);
}

#define ENTRY(tok, streams, perms)                                                                                     \
    "{\"token\":\"" tok "\",\"tenant\":\"t\",\"streams\":" streams ",\"permissions\":" perms "}"
#define T_ADMIN "admin-a1a1a1a1a1a1a1a1a1a1"
#define T_PROD "prod-b2b2b2b2b2b2b2b2b2b2"
#define T_CONS "cons-c3c3c3c3c3c3c3c3c3c3"

static int bin_auth(int fd, const char *tok)
{
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_auth_req_encode(&b, tok, strlen(tok)));
    send_frame(fd, SPW_OP_AUTH, next_id++, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    int st = answer_status(&f, NULL, NULL);
    free(f.body);
    return st;
}

/* GROUP_POLL and GROUP_COMMIT need consume on the stream. */
static void test_auth(const char *tmp)
{
    char data[4096 + 16], tokens[4096 + 16];
    snprintf(data, sizeof data, "%s/authdata", tmp);
    snprintf(tokens, sizeof tokens, "%s/tokens.json", tmp);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\":[" ENTRY(T_ADMIN, "[\"*\"]", "[\"produce\",\"consume\",\"admin\"]") "," ENTRY(
              T_PROD, "[\"s\"]", "[\"produce\"]") "," ENTRY(T_CONS, "[\"s\"]", "[\"consume\"]") "]}\n",
          f);
    fclose(f);
    const char *extra[] = {"--tokens-file", tokens, NULL};
    srv a;
    srv_start(&a, bin, data, extra);
    CHECK(a.binport > 0);
    resp h = http_ex(a.port, "PUT", "/v1/streams/s", "application/json", "Authorization: Bearer " T_ADMIN "\r\n",
                     "{\"partitions\":1}", 16);
    CHECK_EQ(h.status, 201);
    free(h.body);
    int fd = tcp_connect(a.binport);
    gpolled r;
    char code[64];
    CHECK_EQ(bpoll(fd, "g", "m", 0, 0, 0, &r, code), 401);
    CHECK_EQ(bcommit(fd, "g", 0, 1, 0, code), 401);
    CHECK_EQ(bin_auth(fd, T_PROD), 0);
    CHECK_EQ(bpoll(fd, "g", "m", 0, 0, 0, &r, code), 403);
    CHECK_EQ(bcommit(fd, "g", 0, 1, 0, code), 403);
    h = http_ex(a.port, "GET", "/v1/streams/s/groups/g", NULL, "Authorization: Bearer " T_ADMIN "\r\n", NULL, 0);
    CHECK_EQ(h.status, 404); /* the refused poll created nothing */
    free(h.body);
    CHECK_EQ(bin_auth(fd, T_CONS), 0);
    CHECK_EQ(bpoll(fd, "g", "m", 0, 0, 0, &r, code), 0);
    CHECK_EQ(r.delivered, 0);
    CHECK_EQ(bcommit(fd, "g", 0, 1, 0, code), 409);
    close(fd);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
}

/*
 * A binary GROUP_POLL never delivers records that are not durable
 * (docs/architecture.md, "What readers see"): records acknowledged at
 * ack=written while every fsync fails are not delivered; once the disk
 * works again, recovery keeps them (they validate on disk) and syncs them,
 * and a poll parked meanwhile is woken by that durable advance and gets
 * them. The fsync timer is 10 minutes: only the poll's request and the
 * recovery make anything durable here.
 */
static void test_not_durable(const char *tmp)
{
    char data[4200];
    snprintf(data, sizeof data, "%s/nd", tmp);
    const char *slow[] = {"--fsync-interval", "600s", NULL};
    srv a;
    srv_start(&a, tbin, data, slow);
    CHECK(a.binport > 0);
    put_stream(a.port, "s", "{\"partitions\":1,\"key\":\"/k\"}");
    produce_ack(a.port, 4, 0, "fsync");
    int fd = tcp_connect(a.binport);
    gpolled g;
    CHECK_EQ(bpoll(fd, "nd", "m1", 100, 0, 0, &g, NULL), 0);
    CHECK_EQ(g.delivered, 1);
    CHECK_EQ(g.first, 0);
    CHECK_EQ(g.count, 4);
    CHECK_EQ(bcommit(fd, "nd", 0, g.lease_id, 4, NULL), 0);

    resp r = http(a.port, "POST", "/debug/faults?fsync_err=EIO", NULL, "", 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
    produce_ack(a.port, 3, 100, "written");
    CHECK_EQ(end_offset(a.port, 0), 7);
    /* The poll asks for the fsync, which fails: nothing delivered. */
    CHECK_EQ(bpoll(fd, "nd", "m1", 100, 300, 0, &g, NULL), 0);
    CHECK_EQ(g.delivered, 0);
    CHECK_EQ(part_field(a.port, "/v1/streams/s", 0, "durable_offset"), 4);

    /* A poll parks; the disk comes back; recovery keeps and syncs the
     * three records: the durable advance wakes the poll. */
    send_poll(fd, "nd", "m1", SPW_GPOLL_EARLIEST, 100, 30000, 0);
    r = http(a.port, "DELETE", "/debug/faults", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
    CHECK_EQ(read_poll(fd, &g, NULL), 0);
    CHECK_EQ(g.delivered, 1);
    CHECK_EQ(g.first, 4);
    CHECK_EQ(g.count, 3);
    CHECK(strstr(g.values[0], "\"n\":100}") && strstr(g.values[2], "\"n\":102}"));
    CHECK_EQ(bcommit(fd, "nd", 0, g.lease_id, 7, NULL), 0);
    close(fd);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    bin = argv[1];
    tbin = argv[2];
    char *tmp = spw_test_tmpdir("bingroups");
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, bin, data, NULL);
    CHECK(a.binport > 0);
    resp r = http_json(a.port, "PUT", "/v1/streams/s", "{\"partitions\":4,\"key\":\"/k\"}");
    CHECK_EQ(r.status, 201);
    free(r.body);
    produce(a.port, 100, 0);
    for (int p = 0; p < NPARTS; p++)
        CHECK(end_offset(a.port, p) > 0); /* 13 keys over 4 partitions: every one has records */

    test_share(a.port, a.binport);
    test_member_dies(a.port, a.binport);
    test_long_poll(a.port, a.binport);
    test_bad_input(a.port, a.binport);
    test_mixed(a.port, a.binport);

    /* Commits survive SIGTERM and kill -9; leases do not (409 after). */
    produce(a.port, 20, 8000);
    int fd = tcp_connect(a.binport);
    gpolled g;
    CHECK_EQ(bpoll(fd, "g", "m1", 3, 0, 0, &g, NULL), 0);
    CHECK_EQ(g.delivered, 1);
    CHECK_EQ(bcommit(fd, "g", g.partition, g.lease_id, g.next, NULL), 0);
    uint64_t committed[NPARTS];
    for (int i = 0; i < NPARTS; i++)
        committed[i] = group_field(a.port, "g", i, "committed");
    CHECK_EQ(committed[g.partition], g.next);
    gpolled held;
    CHECK_EQ(bpoll(fd, "g", "m1", 2, 0, 0, &held, NULL), 0);
    CHECK_EQ(held.delivered, 1);
    /* A poll parked at shutdown is answered "nothing" (a METADATA answered
     * after it proves it was dispatched and parked). */
    send_poll(fd, "idle", "m9", SPW_GPOLL_LATEST, 0, 60000, 0);
    spw_buf mb = SPW_BUF_INIT;
    CHECK_OK(spw_metadata_req_encode(&mb, "s", 1));
    send_frame(fd, SPW_OP_METADATA, next_id++, &mb);
    spw_buf_fini(&mb);
    frame mf;
    CHECK_EQ(read_frame(fd, &mf), 0);
    CHECK_EQ(mf.h.opcode, SPW_OP_METADATA);
    free(mf.body);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    gpolled idle;
    CHECK_EQ(read_poll(fd, &idle, NULL), 0);
    CHECK_EQ(idle.delivered, 0);
    close(fd);
    srv_start(&a, bin, data, NULL);
    for (int i = 0; i < NPARTS; i++)
        CHECK_EQ(group_field(a.port, "g", i, "committed"), committed[i]);
    fd = tcp_connect(a.binport);
    char code[64];
    CHECK_EQ(bcommit(fd, "g", held.partition, held.lease_id, held.next, code), 409); /* leases end with the process */
    /* The held records come again from the committed offset. */
    CHECK_EQ(bpoll(fd, "g", "m1", 1000, 0, 0, &g, NULL), 0);
    CHECK_EQ(g.delivered, 1);
    CHECK_EQ(g.first, committed[g.partition]);
    CHECK_EQ(bcommit(fd, "g", g.partition, g.lease_id, g.next, NULL), 0);
    committed[g.partition] = g.next;
    close(fd);
    srv_stop(&a, SIGKILL);
    srv_start(&a, bin, data, NULL);
    for (int i = 0; i < NPARTS; i++)
        CHECK_EQ(group_field(a.port, "g", i, "committed"), committed[i]);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    test_auth(tmp);
    test_not_durable(tmp);
    spw_test_rmrf(tmp);
    free(tmp);
    return 0;
}
