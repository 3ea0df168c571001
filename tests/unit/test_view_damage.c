/*
 * Records damaged on disk are skipped and counted (docs/api.md "Views"):
 * a batch whose CRC holds but whose records do not decode is damaged
 * whole (log/cursor.h, the damage rule); a view skips it to the cursor's
 * resume offset, counts its records in skipped_damaged, applies the
 * records on both sides of it, and its verifier, which skips the same
 * way, agrees with its store.
 */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "core/clock.h"
#include "core/crc32c.h"
#include "core/msg.h"
#include "core/varint.h"
#include "log/log.h"
#include "view/view.h"
#include "test.h"
#include "view_setup.h"

#define TS0 1700000000000

static void fill(spw_record *r, char (*v)[32], uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        snprintf(v[i], sizeof v[i], "{\"n\":1}");
        r[i] = (spw_record){.key = "k", .key_len = 1, .value = v[i], .value_len = (uint32_t)strlen(v[i]), .ts = TS0};
    }
}

static void appended(void *arg, int status, const spw_append_result *r)
{
    (void)r;
    CHECK_EQ(status, 0);
    atomic_store((_Atomic int *)arg, 1);
}

/* A batch of n records whose CRC holds but whose last record's
 * offset_delta is wrong: its records do not decode. */
static void append_spoiled(spw_part *p, uint32_t n)
{
    spw_record r[8];
    char v[8][32];
    fill(r, v, n);
    spw_buf b = SPW_BUF_INIT, scratch = SPW_BUF_INIT;
    CHECK_OK(spw_batch_encode(&b, &scratch, r, n, NULL));
    const uint8_t *q = b.p + SPW_BATCH_HEADER_LEN, *end = b.p + b.len;
    for (uint32_t i = 0; i < n - 1; i++) {
        uint64_t len;
        size_t k = spw_varint_get(q, end, &len);
        CHECK(k > 0);
        q += k + len;
    }
    uint64_t len;
    size_t k = spw_varint_get(q, end, &len);
    CHECK(k > 0);
    uint8_t *od = (uint8_t *)q + k + 1; /* after the length and the one-byte ts_delta */
    CHECK_EQ(*od, n - 1);
    *od = 0x7f;
    uint32_t crc = spw_crc32c(b.p + SPW_BATCH_CRC_START, b.len - SPW_BATCH_CRC_START);
    memcpy(b.p + 12, &crc, 4);
    _Atomic int done = 0;
    spw_append_result res;
    CHECK_OK(spw_part_append_batch(p, b.p, b.len, SPW_ACK_FSYNC, 0, appended, (void *)&done, &res));
    for (int i = 0; i < 10000 && !atomic_load(&done); i++)
        usleep(1000);
    CHECK(atomic_load(&done));
    spw_buf_fini(&b);
    spw_buf_fini(&scratch);
}

static void append_good(spw_part *p, uint32_t n)
{
    spw_record r[8];
    char v[8][32];
    fill(r, v, n);
    spw_append_result res;
    CHECK_OK(spw_part_append_wait(p, r, n, NULL, SPW_ACK_FSYNC, &res));
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    vs_env env;
    vs_open(&env, "viewdamage", 0);
    char err[256];
    spw_stream *s = vs_stream(&env, "s", "{\"partitions\":1}");
    append_good(s->parts[0], 5);    /* offsets 0..4 */
    append_spoiled(s->parts[0], 4); /* 5..8: damaged */
    append_good(s->parts[0], 3);    /* 9..11 */
    spw_views *m;
    CHECK_OK(spw_views_open(env.cat, env.dir, 0, &m));
    vs_put_view(m, "v", "{\"stream\":\"s\",\"kind\":\"sum\",\"field\":\"/n\"}");
    spw_buf b = SPW_BUF_INIT;
    spw_view_min min = {0, 11};
    for (int i = 0; i < 20000 && spw_views_applied(m, "v", &min, 1) != 1; i++)
        spw_sleep_until(spw_mono_ns() + 1000000u);
    CHECK_EQ(spw_views_applied(m, "v", &min, 1), 1);
    b.len = 0;
    CHECK_OK(spw_views_read_key(m, "v", "k", 1, 0, &b, err, sizeof err));
    spw_buf_put(&b, "", 1);
    CHECK(strcmp((const char *)b.p, "{\"key\":\"k\",\"count\":8,\"sum\":8}") == 0);
    b.len = 0;
    CHECK_OK(spw_views_get_json(m, "v", &b));
    spw_buf_put(&b, "", 1);
    CHECK(strstr((const char *)b.p, "\"skipped_damaged\":4,") != NULL);
    CHECK(strstr((const char *)b.p, "\"applied_total\":8,") != NULL);
    b.len = 0;
    CHECK_OK(spw_views_verify(m, "v", 1, &b, err, sizeof err));
    spw_buf_put(&b, "", 1);
    CHECK(strstr((const char *)b.p, "\"ok\":true") != NULL);
    spw_buf_fini(&b);
    spw_views_close(m);
    spw_stream_put(s);
    vs_close(&env);
    printf("test_view_damage: ok\n");
    return 0;
}
