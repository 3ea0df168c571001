/*
 * Ids after a restart whose clock stepped back (core/id.h,
 * catalog/catalog.h spw_catalog_observe_ids): two requests reserve their
 * ids in order, A then B, but B's batch reaches the partition first, so
 * the partition's last batch is A's, with the lower ids. The process
 * stops; the clock goes back 10 minutes; at the next start every new id
 * must still be above B's — not only above the last batch's.
 */
#include "core/id.h"
#include "core/msg.h"
#include "log/log.h"
#include "catalog/catalog.h"
#include "test.h"

static int64_t fake_now;
static int64_t fake_clock(void) { return fake_now; }

static void append(spw_part *p, spw_idgen *g, uint64_t first, uint32_t n)
{
    uint64_t t[8];
    spw_record r[8];
    for (uint32_t i = 0; i < n; i++) {
        t[i] = first + i;
        r[i] = (spw_record){.key = NULL, .key_len = -1, .value = "{}", .value_len = 2, .ts = fake_now};
    }
    spw_batch_opts o = {.idgen = g, .tickets = t};
    spw_append_result res;
    CHECK_OK(spw_part_append_wait(p, r, n, &o, SPW_ACK_FSYNC, &res));
}

static void open_all(const char *dir, spw_log **log, spw_catalog **cat)
{
    CHECK_OK(spw_log_open(NULL, log));
    spw_log_idgen(*log)->clock_ms = fake_clock;
    CHECK_OK(spw_catalog_open(*log, dir, 0, cat));
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    char *dir = spw_test_tmpdir("idrestart");
    fake_now = spw_wall_ms();
    spw_log *log;
    spw_catalog *cat;
    open_all(dir, &log, &cat);
    spw_stream_config c;
    char err[256];
    CHECK_EQ(spw_stream_config_parse(&c, "s", "{\"partitions\":1}", 16, err, sizeof err), 0);
    CHECK_EQ(spw_catalog_create(cat, &c), 1);
    spw_stream *s = spw_stream_get(cat, "s", 1);
    CHECK(s != NULL);
    spw_idgen *g = spw_log_idgen(log);
    uint64_t a = spw_idgen_reserve(g, 3), b = spw_idgen_reserve(g, 3);
    CHECK(b > a);
    append(s->parts[0], g, b, 3); /* B first */
    append(s->parts[0], g, a, 3); /* then A: the last batch */
    uint64_t top = spw_id_from_ticket(g, b + 2);
    spw_stream_put(s);
    spw_catalog_close(cat);
    spw_log_close(log);

    /* Restart, the clock 10 minutes back. */
    fake_now -= 600 * 1000;
    open_all(dir, &log, &cat);
    g = spw_log_idgen(log);
    CHECK_EQ(spw_catalog_observe_ids(cat, 0), 2);
    for (int i = 0; i < 10; i++) {
        uint64_t id = spw_idgen_next(g);
        if (id <= top)
            fprintf(stderr, "id %" PRIu64 " issued again (stored up to %" PRIu64 ")\n", id, top);
        CHECK(id > top);
    }
    spw_catalog_close(cat);
    spw_log_close(log);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_idrestart: ok");
    return 0;
}
