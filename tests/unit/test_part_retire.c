/*
 * A retired partition (log.h spw_part_retire, docs/architecture.md "Stream
 * incarnations") never uses its directory by path again. Partition "old"
 * is retired and its directory moved; a partition "new" is opened at the
 * same path and given the same records, so its segments have the same
 * base offsets as old's. Then, through old: an append is refused
 * (SPW_EDELETED), a read of a sealed segment whose files the fd cache
 * closed is refused (it would have opened new's file), retention deletes
 * nothing (it would have unlinked new's segments), and its close writes
 * no recovery point (it would have replaced new's). New keeps every
 * record, and so does a reopen of it.
 */
#include <sys/stat.h>

#include "core/error.h"
#include "core/msg.h"
#include "log/log.h"
#include "log/segment.h"
#include "test.h"

#define N 100

static void append_n(spw_part *p, uint32_t n)
{
    char v[100];
    memset(v, 'x', sizeof v);
    for (uint32_t i = 0; i < n; i++) {
        spw_record r = {.key_len = -1, .value = v, .value_len = sizeof v, .ts = 1};
        CHECK_OK(spw_part_append_wait(p, &r, 1, NULL, SPW_ACK_FSYNC, NULL));
    }
}

static spw_part_state state(spw_part *p)
{
    spw_part_state st;
    spw_part_state_get(p, &st);
    return st;
}

static int readable(spw_part *p, uint64_t off)
{
    spw_buf b = SPW_BUF_INIT;
    int r = spw_part_read(p, off, 64, &b, NULL);
    spw_buf_fini(&b);
    return r > 0;
}

static void all_readable(spw_part *p)
{
    spw_part_state st = state(p);
    CHECK_EQ(st.start_offset, 0);
    CHECK_EQ(st.next_offset, N);
    for (uint64_t o = 0; o < N; o++)
        CHECK(readable(p, o));
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    char *b = malloc(4096);
    *n = fread(b, 1, 4096, f);
    fclose(f);
    return b;
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    char *dir = spw_test_tmpdir("part-retire");
    spw_log_config lc;
    spw_log_config_default(&lc);
    lc.fd_cache_segments = 1; /* sealed segments are reopened by path */
    spw_log *log;
    CHECK_OK(spw_log_open(&lc, &log));
    spw_part_config pc;
    spw_part_config_default(&pc);
    pc.segment_bytes = 2048;
    pc.retention_bytes = 0; /* all but the active segment may go */
    char path[4096], moved[4200], rp[4200];
    snprintf(path, sizeof path, "%s/p", dir);
    snprintf(moved, sizeof moved, "%s/p.deleted", dir);
    snprintf(rp, sizeof rp, "%s/%s", path, SPW_RP_NAME);

    spw_part *old;
    CHECK_OK(spw_part_open(log, path, &pc, &old, NULL));
    append_n(old, N);
    CHECK(state(old).segments > 4);
    spw_part_retire(old);
    CHECK(spw_part_retired(old));
    CHECK_EQ(rename(path, moved), 0);

    spw_part *nw;
    CHECK_OK(spw_part_open(log, path, &pc, &nw, NULL));
    append_n(nw, N);
    CHECK_EQ(state(nw).segments, state(old).segments); /* the same bases */
    all_readable(nw); /* its sealed segments now in the fd cache, old's closed */

    /* Through old: nothing reaches new's files. */
    spw_record r = {.key_len = -1, .value = "y", .value_len = 1, .ts = 1};
    CHECK_EQ(spw_part_append_wait(old, &r, 1, NULL, SPW_ACK_FSYNC, NULL), SPW_EDELETED);
    CHECK(!readable(old, 0)); /* old's first segment: closed by the cache, never reopened */
    CHECK_EQ(spw_part_enforce_retention(old, spw_wall_ms()), 0);
    all_readable(nw);
    spw_part_close(nw); /* its recovery point written last */
    size_t rpn0, rpn1;
    char *rp0 = slurp(rp, &rpn0);
    spw_part_close(old);
    char *rp1 = slurp(rp, &rpn1);
    CHECK_EQ(rpn0, rpn1);
    CHECK(memcmp(rp0, rp1, rpn0) == 0); /* new's recovery point, untouched */
    free(rp0);
    free(rp1);

    /* New, after a reopen: every record. */
    CHECK_OK(spw_part_open(log, path, &pc, &nw, NULL));
    all_readable(nw);
    spw_part_close(nw);
    spw_log_close(log);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_part_retire: ok");
    return 0;
}
