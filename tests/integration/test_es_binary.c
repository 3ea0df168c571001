/*
 * PRODUCE with flag VERSIONED over raw frames (docs/protocol.md
 * "Versioned streams"): each record's version in the answer; a conflict
 * answered 409 version_conflict with the key's current version in the
 * error's last 8 bytes, nothing appended; the bad inputs, 400 and nothing
 * appended: the flag on a stream that is not versioned, a version past
 * 2^53 - 1, records of two keys with an expectation, an unknown expect
 * value, a record without a key, a partition other than the key's; and a
 * request without the flag to a versioned stream: versions given, none
 * in the answer (the answer of a client that does not know them).
 */
#include "binframe.h"
#include "catalog/stream.h"

static int fd;
static uint64_t rid = 1;
static uint64_t prod_id; /* the next PRODUCE's producer id and sequence (0: none) */
static uint32_t prod_seq;

/* A PRODUCE of n records (keys[i], or none when NULL) to stream; flags and
 * the expectation; returns the answer (caller frees f->body). */
static frame produce(const char *stream, const char *const *keys, int n, uint16_t flags, uint8_t expect,
                     uint64_t version, uint32_t partition)
{
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    CHECK_OK(spw_produce_req_begin(&b, stream, strlen(stream), SPW_ACK_FSYNC, 255, partition, prod_id, prod_seq, &ca));
    for (int i = 0; i < n; i++) {
        spw_frame_rec r = {.attrs = keys[i] ? SPW_REC_HAS_KEY : 0, .key = (const uint8_t *)keys[i],
                           .key_len = keys[i] ? (int32_t)strlen(keys[i]) : -1, .value = (const uint8_t *)"{}",
                           .value_len = 2};
        CHECK_OK(spw_produce_rec_put(&b, &r));
    }
    if (flags & SPW_PRODUCE_VERSIONED)
        CHECK_OK(spw_produce_req_put_expect(&b, expect, version));
    spw_produce_req_set_count(&b, ca, (uint32_t)n);
    spw_produce_req_set_flags(&b, ca, flags);
    send_frame(fd, SPW_OP_PRODUCE, rid++, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    return f;
}

static void want_error(frame f, int status, const char *word)
{
    char code[64] = "";
    CHECK_EQ(answer_status(&f, code, NULL), status);
    if (strcmp(code, word))
        fprintf(stderr, "wanted %s, got %s\n", word, code);
    CHECK(strcmp(code, word) == 0);
    free(f.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("esbin");
    srv S;
    srv_start(&S, argv[1], dir, NULL);
    put_stream(S.port, "v", "{\"versioned\":true,\"format\":\"bytes\",\"partitions\":4}");
    put_stream(S.port, "plain", "{\"format\":\"bytes\"}");
    fd = tcp_connect(S.binport);
    const char *a3[] = {"a", "b", "a"};

    /* Versions per record, in request order. */
    frame f = produce("v", a3, 3, SPW_PRODUCE_VERSIONED, SPW_EXPECT_ANY, 0, SPW_PARTITION_ANY);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    spw_produce_resp pr;
    const char *why;
    CHECK_EQ(spw_produce_resp_decode(f.body + 2, f.len - 2, &pr, &why), 0);
    CHECK(pr.versions != NULL);
    CHECK_EQ(spw_produce_resp_version(&pr, 0), 1);
    CHECK_EQ(spw_produce_resp_version(&pr, 1), 1);
    CHECK_EQ(spw_produce_resp_version(&pr, 2), 2);
    free(f.body);

    /* Without the flag: versions given, none in the answer. */
    f = produce("v", a3, 1, 0, 0, 0, SPW_PARTITION_ANY);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    CHECK_EQ(spw_produce_resp_decode(f.body + 2, f.len - 2, &pr, &why), 0);
    CHECK(pr.versions == NULL);
    free(f.body);

    /* Conflict: the current version (3) in the answer's last 8 bytes. */
    f = produce("v", a3, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, 2, SPW_PARTITION_ANY);
    {
        uint16_t st;
        const uint8_t *rest;
        size_t rl;
        spw_frame_error e;
        CHECK_EQ(spw_answer_decode(f.body, f.len, &st, &rest, &rl, &e, &why), 0);
        CHECK_EQ(st, 409);
        CHECK(e.code_len == 16 && memcmp(e.code, "version_conflict", 16) == 0);
        CHECK(e.has_next_offset);
        CHECK_EQ(e.next_offset, 3);
        free(f.body);
    }
    f = produce("v", a3, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, 3, SPW_PARTITION_ANY);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    CHECK_EQ(spw_produce_resp_decode(f.body + 2, f.len - 2, &pr, &why), 0);
    CHECK_EQ(spw_produce_resp_version(&pr, 0), 4);
    free(f.body);

    /* A resent idempotent request (same producer id and sequence) is a
     * duplicate whose answer carries the versions the first one got, even
     * after its keys moved on. */
    prod_id = 0x5157;
    prod_seq = 0;
    const char *bab[] = {"b", "a", "b"};
    f = produce("v", bab, 3, SPW_PRODUCE_VERSIONED, SPW_EXPECT_ANY, 0, SPW_PARTITION_ANY);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    CHECK_EQ(spw_produce_resp_decode(f.body + 2, f.len - 2, &pr, &why), 0);
    CHECK_EQ(spw_produce_resp_version(&pr, 0), 2);
    CHECK_EQ(spw_produce_resp_version(&pr, 1), 5);
    CHECK_EQ(spw_produce_resp_version(&pr, 2), 3);
    free(f.body);
    prod_id = 0;
    f = produce("v", bab, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, 3, SPW_PARTITION_ANY);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    free(f.body);
    prod_id = 0x5157;
    for (int again = 0; again < 2; again++) {
        f = produce("v", bab, 3, SPW_PRODUCE_VERSIONED, SPW_EXPECT_ANY, 0, SPW_PARTITION_ANY);
        CHECK_EQ(answer_status(&f, NULL, NULL), 0);
        CHECK_EQ(spw_produce_resp_decode(f.body + 2, f.len - 2, &pr, &why), 0);
        CHECK(pr.versions != NULL);
        CHECK_EQ(spw_produce_resp_version(&pr, 0), 2);
        CHECK_EQ(spw_produce_resp_version(&pr, 1), 5);
        CHECK_EQ(spw_produce_resp_version(&pr, 2), 3);
        free(f.body);
    }
    /* With an expectation the key no longer meets: still the duplicate. */
    prod_seq = 3;
    f = produce("v", bab, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, 4, SPW_PARTITION_ANY);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    CHECK_EQ(spw_produce_resp_decode(f.body + 2, f.len - 2, &pr, &why), 0);
    CHECK_EQ(spw_produce_resp_version(&pr, 0), 5);
    free(f.body);
    f = produce("v", bab, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, 4, SPW_PARTITION_ANY);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    CHECK_EQ(spw_produce_resp_decode(f.body + 2, f.len - 2, &pr, &why), 0);
    CHECK_EQ(spw_produce_resp_version(&pr, 0), 5);
    free(f.body);
    prod_id = 0;
    prod_seq = 0;

    /* Bad input: 400, nothing appended. */
    uint64_t ends[4];
    for (int p = 0; p < 4; p++)
        ends[p] = part_field(S.port, "/v1/streams/v", p, "end_offset");
    want_error(produce("plain", a3, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_ANY, 0, SPW_PARTITION_ANY), 400,
               "not_versioned");
    want_error(produce("v", a3, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, 1ull << 53, SPW_PARTITION_ANY), 400,
               "bad_expected_version");
    want_error(produce("v", a3, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, UINT64_MAX, SPW_PARTITION_ANY), 400,
               "bad_expected_version");
    want_error(produce("v", a3, 2, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXISTS, 0, SPW_PARTITION_ANY), 400,
               "mixed_keys");
    want_error(produce("v", a3, 1, SPW_PRODUCE_VERSIONED, 4, 0, SPW_PARTITION_ANY), 400, "bad_request");
    const char *nokey[] = {NULL};
    want_error(produce("v", nokey, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_ANY, 0, SPW_PARTITION_ANY), 400,
               "missing_key");
    want_error(produce("v", nokey, 1, 0, 0, 0, SPW_PARTITION_ANY), 400, "missing_key");
    uint32_t pa = spw_stream_partition("a", 1, 4);
    want_error(produce("v", a3, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_ANY, 0, (pa + 1) % 4), 400, "bad_parameter");
    for (int p = 0; p < 4; p++)
        CHECK_EQ(part_field(S.port, "/v1/streams/v", p, "end_offset"), ends[p]);
    /* The key's own partition is fine. */
    f = produce("v", a3, 1, SPW_PRODUCE_VERSIONED, SPW_EXPECT_EXACT, 5, pa);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    free(f.body);

    close(fd);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_binary: ok");
    return 0;
}
