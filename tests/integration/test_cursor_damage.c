/*
 * One damaged batch, every reader (docs/architecture.md, "The record
 * cursor"): a batch whose CRC holds but whose records do not decode is
 * written into a stopped server's partition (offsets 5..8, between good
 * records 0..4 and 9..11). Then every reader gives the same answer —
 * damage at offsets 5..8, resume at 9:
 *   - HTTP read: 200 with 0..4 (stops before the damage), then 500
 *     damaged with Spillway-Next-Offset 9, from 5 and from 7 alike;
 *   - binary FETCH, records and batches mode: 500 damaged whose error
 *     answer carries next_offset 9 (docs/protocol.md, "Answers"), which
 *     the C client gives as spillway_client_resume_offset;
 *   - consumer-group polls over HTTP and over the binary protocol: after
 *     0..4 are committed the group skips the damage (logged, counted) and
 *     the next poll delivers from 9 (first offset 9);
 *   - a forward sink: delivers 0..4 and 9..11, never stalls, counts the
 *     skip in errors_total and logs the damaged offsets and the resume
 *     offset.
 */
#include <inttypes.h>
#include <stdatomic.h>

#include "binframe.h"
#include "core/crc32c.h"
#include "core/varint.h"
#include "log/log.h"
#include "spillway.h"

static const char *BIN;
static uint64_t next_id = 1;

#define TS0 1700000000000

static void make_records(spw_record *r, char (*v)[32], uint64_t from, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        snprintf(v[i], sizeof v[i], "{\"u\":%llu}", (unsigned long long)(from + i));
        r[i] = (spw_record){.key_len = -1, .value = v[i], .value_len = (uint32_t)strlen(v[i]), .ts = TS0};
    }
}

static void appended(void *arg, int status, const spw_append_result *r)
{
    (void)r;
    CHECK_EQ(status, 0);
    atomic_store((_Atomic int *)arg, 1);
}

/* Opens the stopped server's partition with the log library and appends
 * 4 records whose last one's offset_delta is wrong (the CRC recomputed, so
 * it holds), then 3 good ones at ack=fsync. */
static void write_damage(const char *pdir)
{
    spw_log_config lc;
    spw_log_config_default(&lc);
    spw_log *log;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_part_config pc;
    spw_part_config_default(&pc);
    spw_part *p;
    CHECK_OK(spw_part_open(log, pdir, &pc, &p, NULL));
    spw_part_state st;
    spw_part_state_get(p, &st);
    CHECK_EQ(st.next_offset, 5);

    spw_record r[4];
    char v[4][32];
    make_records(r, v, 5, 4);
    spw_buf b = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    CHECK_OK(spw_batch_encode(&b, &scratch, r, 4, NULL));
    const uint8_t *q = b.p + SPW_BATCH_HEADER_LEN, *end = b.p + b.len;
    uint64_t len;
    for (int i = 0; i < 3; i++) {
        size_t k = spw_varint_get(q, end, &len);
        CHECK(k > 0);
        q += k + len;
    }
    size_t k = spw_varint_get(q, end, &len);
    CHECK(k > 0);
    uint8_t *od = (uint8_t *)q + k + 1; /* after the length and the one-byte ts_delta */
    CHECK_EQ(*od, 3);
    *od = 0x7f;
    uint32_t crc = spw_crc32c(b.p + SPW_BATCH_CRC_START, b.len - SPW_BATCH_CRC_START);
    memcpy(b.p + 12, &crc, 4);
    spw_batch_hdr h;
    CHECK_OK(spw_batch_check(b.p, b.len, &h));
    _Atomic int done = 0;
    CHECK_OK(spw_part_append_batch(p, b.p, b.len, SPW_ACK_WRITTEN, 0, appended, (void *)&done, NULL));
    for (int i = 0; i < 10000 && !atomic_load(&done); i++)
        usleep(1000);
    CHECK(atomic_load(&done));

    make_records(r, v, 9, 3);
    spw_append_result res;
    CHECK_OK(spw_part_append_wait(p, r, 3, NULL, SPW_ACK_FSYNC, &res));
    CHECK_EQ(res.base_offset, 9);
    spw_part_close(p);
    spw_log_close(log);
    spw_buf_fini(&b);
    spw_buf_fini(&scratch);
}

/* HTTP read of partition 0 of src at offset: the response. */
static resp read_at(int port, uint64_t offset)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/src/events?partition=0&offset=%" PRIu64 "&limit=100", offset);
    return http_json(port, "GET", path, NULL);
}

/* A FETCH at offset in mode: for an error answer, its status, code and
 * the next_offset it carries (UINT64_MAX when none); for status 0, the
 * count and next_offset. */
static int fetch_at(int port, uint64_t offset, uint8_t mode, char *code, uint64_t *next, uint32_t *count)
{
    int fd = tcp_connect(port);
    spw_buf b = SPW_BUF_INIT;
    spw_fetch_req q = {.stream = "src", .stream_len = 3, .partition = 0, .offset = offset, .mode = mode};
    CHECK_OK(spw_fetch_req_encode(&b, &q));
    send_frame(fd, SPW_OP_FETCH, next_id++, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    close(fd);
    CHECK(f.len >= 2);
    uint16_t st;
    memcpy(&st, f.body, 2);
    *next = UINT64_MAX;
    *count = 0;
    if (st == 0) {
        spw_fetch_resp r;
        const char *why;
        CHECK_EQ(spw_fetch_resp_decode(f.body + 2, f.len - 2, &r, &why), 0);
        *next = r.next_offset;
        *count = r.count;
    } else {
        /* u32 retry_after_ms, u8 code_len, code, u16 msg_len, msg, [u64 next_offset] */
        size_t pos = 6;
        CHECK(f.len > pos);
        uint8_t cl = f.body[pos++];
        CHECK(f.len >= pos + cl + 2);
        memcpy(code, f.body + pos, cl);
        code[cl] = 0;
        pos += cl;
        uint16_t ml;
        memcpy(&ml, f.body + pos, 2);
        pos += 2 + ml;
        CHECK(f.len >= pos);
        if (f.len - pos == 8)
            memcpy(next, f.body + pos, 8);
        else
            CHECK_EQ(f.len - pos, 0);
    }
    free(f.body);
    return st;
}

/* An HTTP group poll of group g; *first and *next from its headers. */
static int hpoll(int port, const char *g, char *lease, uint64_t *first, uint64_t *next)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/src/groups/%s/poll?max=100&member=m", g);
    resp r = http(port, "POST", path, NULL, "", 0);
    if (r.status == 200) {
        CHECK(header(&r, "Spillway-Lease", lease, 64));
        *first = header_u64(&r, "Spillway-First-Offset");
        *next = header_u64(&r, "Spillway-Next-Offset");
    }
    int st = r.status;
    if (st != 200 && getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "poll %s: %d %s\n", g, st, r.body);
    free(r.body);
    return st;
}

/* A binary group poll of group g on fd; *first, *next and *lease. */
static int bpoll(int fd, const char *g, uint64_t *lease, uint32_t *part, uint64_t *first, uint64_t *next, char *code)
{
    spw_buf b = SPW_BUF_INIT;
    spw_gpoll_req q = {.stream = "src", .stream_len = 3, .group = g, .group_len = (uint16_t)strlen(g),
                       .member = "b", .member_len = 1, .start = SPW_GPOLL_EARLIEST, .max = 100};
    CHECK_OK(spw_gpoll_req_encode(&b, &q));
    send_frame(fd, SPW_OP_GROUP_POLL, next_id++, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    int st = answer_status(&f, code, NULL);
    if (st == 0) {
        spw_gpoll_resp r;
        const char *why;
        CHECK_EQ(spw_gpoll_resp_decode(f.body + 2, f.len - 2, &r, &why), 0);
        CHECK_EQ(r.delivered, 1);
        *lease = r.lease_id;
        *part = r.partition;
        *first = r.first_offset;
        *next = r.next_offset;
    }
    free(f.body);
    return st;
}

static int bcommit(int fd, const char *g, uint32_t part, uint64_t lease, uint64_t offset)
{
    return bin_gcommit(fd, next_id++, "src", g, part, lease, offset, NULL);
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *edir = spw_test_tmpdir("curdmg-edge"), *cdir = spw_test_tmpdir("curdmg-core");
    char logpath[4200];
    snprintf(logpath, sizeof logpath, "%s.log", edir);
    srv edge, core;
    srv_start(&edge, BIN, edir, NULL);
    put_stream(edge.port, "src", "{\"partitions\":1}");
    const char *five = "{\"u\":0}\n{\"u\":1}\n{\"u\":2}\n{\"u\":3}\n{\"u\":4}\n";
    resp r = http(edge.port, "POST", "/v1/streams/src/events", "application/x-ndjson", five, strlen(five));
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    char pdir[4200];
    snprintf(pdir, sizeof pdir, "%s/streams/src/0", edir);
    write_damage(pdir);
    srv_start_log(&edge, BIN, edir, NULL, logpath);
    CHECK_EQ(part_field(edge.port, "/v1/streams/src", 0, "end_offset"), 12);

    /* HTTP read: the records before the damage, then the damage. */
    r = read_at(edge.port, 0);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Offset"), 5);
    CHECK(strstr(r.body, "\"offset\":4,") != NULL);
    CHECK(strstr(r.body, "\"offset\":5,") == NULL);
    free(r.body);
    for (uint64_t at = 5; at <= 7; at += 2) {
        r = read_at(edge.port, at);
        CHECK_EQ(r.status, 500);
        CHECK(strstr(r.body, "\"damaged\"") != NULL);
        CHECK_EQ(header_u64(&r, "Spillway-Next-Offset"), 9);
        free(r.body);
    }
    r = read_at(edge.port, 9);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Offset"), 12);
    free(r.body);

    /* FETCH, both modes. */
    char code[256];
    uint64_t next;
    uint32_t count;
    for (uint8_t mode = 0; mode <= 1; mode++) {
        CHECK_EQ(fetch_at(edge.binport, 0, mode, code, &next, &count), 0);
        CHECK_EQ(next, 5);
        CHECK(mode == 0 ? count == 5 : count >= 1);
        for (uint64_t at = 5; at <= 7; at += 2) {
            CHECK_EQ(fetch_at(edge.binport, at, mode, code, &next, &count), 500);
            CHECK(strcmp(code, "damaged") == 0);
            CHECK_EQ(next, 9);
        }
        CHECK_EQ(fetch_at(edge.binport, 9, mode, code, &next, &count), 0);
        CHECK_EQ(next, 12);
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", edge.binport);
    spillway_client *cl;
    CHECK_OK(spillway_client_connect(addr, 5000, &cl));
    spillway_fetch_result *fr;
    CHECK_EQ(spillway_client_fetch(cl, "src", 0, 6, 0, &fr), SPILLWAY_ERR_INTERNAL);
    CHECK_EQ(spillway_client_resume_offset(cl), 9);
    CHECK(strstr(spillway_client_last_error(cl), "damaged") != NULL);
    CHECK_OK(spillway_client_fetch(cl, "src", 0, 9, 0, &fr));
    CHECK_EQ(spillway_client_resume_offset(cl), 0);
    CHECK_EQ(spillway_fetch_count(fr), 3);
    spillway_fetch_free(fr);
    spillway_client_close(cl);

    /* HTTP group poll. */
    char lease[64], body[256];
    uint64_t first;
    CHECK_EQ(hpoll(edge.port, "gh", lease, &first, &next), 200);
    CHECK_EQ(first, 0);
    CHECK_EQ(next, 5);
    snprintf(body, sizeof body, "{\"lease\":\"%s\",\"offset\":5}", lease);
    CHECK_EQ(req_status(edge.port, "POST", "/v1/streams/src/groups/gh/commit", body), 200);
    CHECK_EQ(hpoll(edge.port, "gh", lease, &first, &next), 200);
    CHECK_EQ(first, 9);
    CHECK_EQ(next, 12);

    /* Binary group poll. */
    int fd = tcp_connect(edge.binport);
    uint64_t bl;
    uint32_t part;
    CHECK_EQ(bpoll(fd, "gb", &bl, &part, &first, &next, code), 0);
    CHECK_EQ(first, 0);
    CHECK_EQ(next, 5);
    CHECK_EQ(bcommit(fd, "gb", part, bl, 5), 0);
    CHECK_EQ(bpoll(fd, "gb", &bl, &part, &first, &next, code), 0);
    CHECK_EQ(first, 9);
    CHECK_EQ(next, 12);
    close(fd);
    r = http_json(edge.port, "GET", "/metrics", NULL);
    CHECK(strstr(r.body, "\nspillway_group_damaged_skipped_total 8\n") != NULL);
    free(r.body);

    /* A forward sink: goes on past the damage. */
    srv_start(&core, BIN, cdir, NULL);
    put_stream(core.port, "dst", "{\"partitions\":1}");
    put_forward_sink(edge.port, "fw", "src", core.binport, "dst");
    uint64_t got = wait_part_field(core.port, "/v1/streams/dst", 0, "durable_offset", 8);
    CHECK_EQ(got, 8); /* 12 less the damaged 4 */
    r = http_json(core.port, "GET", "/v1/streams/dst/events?partition=0&offset=5&limit=10", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "{\"u\":9}") != NULL);
    free(r.body);
    CHECK(wait_sink_past_damage(edge.port, "fw", 12));
    CHECK(file_has(logpath, "sink fw: partition 0: offsets 5..8 are damaged"));
    CHECK(file_has(logpath, "resuming at offset 9"));

    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(edir);
    spw_test_rmrf(cdir);
    unlink(logpath);
    free(edir);
    free(cdir);
    printf("test_cursor_damage: ok\n");
    return 0;
}
