/*
 * A view holds retention at the offsets its store has flushed, not at
 * those it applied (docs/api.md "Views", "Retention"): records a crash
 * would make it apply again stay in the log. With a flush interval longer
 * than the test, a view that applied every record still holds the
 * partition's start, so retention deletes no segment; once the store is
 * flushed (closing the views flushes), retention deletes what the view no
 * longer needs. A view whose stream has records it has not applied keeps
 * them too: it is created at offset 0.
 */
#include <string.h>

#include "catalog/catalog.h"
#include "core/clock.h"
#include "core/msg.h"
#include "log/log.h"
#include "view/view.h"
#include "test.h"
#include "view_setup.h"

static uint64_t start_of(spw_stream *s)
{
    spw_part_state st;
    spw_part_state_get(s->parts[0], &st);
    return st.start_offset;
}

static void wait_applied(spw_views *m, spw_stream *s)
{
    spw_part_state st;
    spw_part_state_get(s->parts[0], &st);
    spw_view_min min = {0, st.next_offset - 1};
    for (int i = 0; i < 30000 && spw_views_applied(m, "v", &min, 1) != 1; i++)
        spw_sleep_until(spw_mono_ns() + 1000000u);
    CHECK_EQ(spw_views_applied(m, "v", &min, 1), 1);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    vs_env env;
    vs_open(&env, "viewret", 4096);
    spw_catalog *cat = env.cat;
    const char *dir = env.dir;
    char err[256];
    spw_stream *s = vs_stream(&env, "s", "{\"partitions\":1,\"retention\":{\"ms\":1},\"dedupe_window_ms\":0}");
    for (int b = 0; b < 40; b++) {
        spw_record r[10];
        char v[10][128];
        for (int i = 0; i < 10; i++) {
            snprintf(v[i], sizeof v[i], "{\"n\":%d,\"pad\":\"%080d\"}", b * 10 + i, 0);
            r[i] = (spw_record){.key = "k", .key_len = 1, .value = v[i], .value_len = (uint32_t)strlen(v[i]),
                                .ts = 1700000000000};
        }
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(s->parts[0], r, 10, NULL, SPW_ACK_FSYNC, &res));
    }
    spw_part_state st;
    spw_part_state_get(s->parts[0], &st);
    CHECK(st.segments > 3);
    spw_views *m;
    CHECK_OK(spw_views_open(cat, dir, 3600000, &m)); /* no flush during the test but at close */
    vs_put_view(m, "v", "{\"stream\":\"s\",\"kind\":\"sum\",\"field\":\"/n\"}");
    spw_buf b = SPW_BUF_INIT;
    wait_applied(m, s);
    spw_catalog_retention(cat, spw_wall_ms() + 3600000);
    CHECK_EQ(start_of(s), 0); /* applied, not flushed: held */
    /* closing flushes; reopened, the view holds at its flushed offsets */
    spw_views_close(m);
    CHECK_OK(spw_views_open(cat, dir, 3600000, &m));
    wait_applied(m, s);
    spw_catalog_retention(cat, spw_wall_ms() + 3600000);
    CHECK(start_of(s) > 0);
    b.len = 0;
    CHECK_OK(spw_views_read_key(m, "v", "k", 1, 0, &b, err, sizeof err));
    spw_buf_put(&b, "", 1);
    CHECK(strstr((const char *)b.p, "\"count\":400,\"sum\":79800") != NULL);
    spw_buf_fini(&b);
    spw_views_close(m);
    spw_stream_put(s);
    vs_close(&env);
    printf("test_view_retention: ok\n");
    return 0;
}
