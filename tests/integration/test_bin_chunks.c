/*
 * A PRODUCE frame's records reach the produce service SPW_PRODUCE_EVS (64)
 * at a time (svc/produce.h spw_produce_next_many). Frames of 1, 63, 64,
 * 65, 128 and 200 records are accepted whole, each record where its
 * answer says; a 200-record frame with one bad record (the first, the
 * last of a group of 64, the first of the next, one in the middle of the
 * third, the last) is refused naming that record, and nothing of it is
 * appended.
 */
#include "core/endian.h"
#include "wire/frame.h"
#include "binframe.h"
#include "server.h"

static uint64_t next_id = 1;

/* A frame of n records "{"k":"key<i%5>","i":<tag+i>}" (record bad broken
 * JSON, if bad < n), keys beside the values. */
static void produce_body(spw_buf *b, uint32_t n, uint32_t bad, int tag)
{
    size_t ca;
    b->len = 0;
    CHECK_OK(spw_produce_req_begin(b, "s", 1, SPW_ACK_FSYNC, 1, SPW_PARTITION_ANY, 0, 0, &ca));
    for (uint32_t i = 0; i < n; i++) {
        char key[16], val[64];
        snprintf(key, sizeof key, "key%u", i % 5);
        snprintf(val, sizeof val, i == bad ? "{\"k\":\"%s\",\"i\":%d" : "{\"k\":\"%s\",\"i\":%d}", key,
                 tag + (int)i);
        spw_frame_rec r = {.attrs = SPW_REC_HAS_KEY,
                           .key = (const uint8_t *)key,
                           .key_len = (int32_t)strlen(key),
                           .value = (const uint8_t *)val,
                           .value_len = (uint32_t)strlen(val)};
        CHECK_OK(spw_produce_rec_put(b, &r));
    }
    spw_produce_req_set_count(b, ca, n);
}

static int call(int fd, const spw_buf *body, char *code, frame *out)
{
    uint64_t my = next_id++;
    send_frame(fd, SPW_OP_PRODUCE, my, body);
    CHECK(read_frame(fd, out) == 0);
    CHECK_EQ(out->h.request_id, my);
    return answer_status(out, code, NULL);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("binchunks");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    srv s;
    srv_start(&s, argv[1], data, NULL);
    CHECK(s.binport > 0);
    put_stream(s.port, "s", "{\"partitions\":1,\"key\":\"/k\"}");
    int fd = tcp_connect(s.binport);
    spw_buf b = SPW_BUF_INIT;
    char code[128];
    frame f;

    static const uint32_t sizes[] = {1, 63, 64, 65, 128, 200};
    uint64_t offset = 0;
    for (int k = 0; k < 6; k++) {
        produce_body(&b, sizes[k], UINT32_MAX, k * 1000);
        CHECK_EQ(call(fd, &b, code, &f), 0);
        uint32_t nslots;
        spw_produce_slot sl = produce_slot0(&f, &nslots);
        CHECK_EQ(nslots, 1);
        CHECK_EQ(sl.first_offset, offset);
        CHECK_EQ(sl.count, sizes[k]);
        offset += sizes[k];
        free(f.body);
    }

    static const uint32_t bads[] = {0, 63, 64, 150, 199};
    for (int k = 0; k < 5; k++) {
        produce_body(&b, 200, bads[k], 9000);
        CHECK_EQ(call(fd, &b, code, &f), 400);
        CHECK(strcmp(code, "invalid_json") == 0);
        char want[32];
        snprintf(want, sizeof want, "record %u ", bads[k]);
        CHECK(memmem(f.body, f.len, want, strlen(want)) != NULL);
        free(f.body);
    }
    /* Nothing of the refused frames was appended: the next frame starts
     * where the accepted ones ended. */
    produce_body(&b, 3, UINT32_MAX, 50000);
    CHECK_EQ(call(fd, &b, code, &f), 0);
    CHECK_EQ(produce_slot0(&f, NULL).first_offset, offset);
    free(f.body);
    offset += 3;

    /* Read back: record i of frame k is {"i":k*1000+i}, in order. */
    resp r = http(s.port, "GET", "/v1/streams/s/events?partition=0&offset=0&limit=1000", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    const char *p = r.body;
    for (int k = 0; k < 7; k++) {
        uint32_t n = k < 6 ? sizes[k] : 3;
        int tag = k < 6 ? k * 1000 : 50000;
        for (uint32_t i = 0; i < n; i++) {
            char want[64];
            snprintf(want, sizeof want, "\"key\":\"key%u\",\"value\":{\"k\":\"key%u\",\"i\":%d}", i % 5, i % 5,
                     tag + (int)i);
            const char *q = strstr(p, want);
            if (!q) {
                fprintf(stderr, "frame %d record %u not read back in order\n", k, i);
                CHECK(0);
            }
            p = q + strlen(want);
        }
    }
    CHECK(strstr(r.body, "\"i\":9") == NULL); /* no refused record (9000..9199) */
    free(r.body);

    spw_buf_fini(&b);
    close(fd);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_bin_chunks: ok");
    return 0;
}
