/*
 * RocksDB's bound on a key's chain of merge operands in the memtable
 * (max_successive_merges) is on only once a view wrote VIEW_CHAIN_MAX
 * (64) batches since its last flush, and off again after the flush
 * (docs/architecture.md "Views"): a batch writes one operand per entry,
 * so no chain is longer than the batches since the flush, and the bound
 * costs a memtable search per operand. What the store runs with is read
 * from its newest OPTIONS file (RocksDB writes one at open and at every
 * SetOptions).
 *
 * With batches of one record (spw__view_batch_records) a view applying N
 * records of one key writes N batches: 10 leave the bound off, 200 turn
 * it on, and the flush at close turns it off. The sum stays exact.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/msg.h"
#include "view/view.h"
#include "test.h"
#include "view_fold.h"
#include "view_setup.h"

/* max_successive_merges in the newest OPTIONS file of view v's store. */
static long chain_bound(const char *dir)
{
    char db[4200], path[4600];
    snprintf(db, sizeof db, "%s/views/v/db", dir);
    DIR *d = opendir(db);
    CHECK(d != NULL);
    unsigned long best = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "OPTIONS-", 8) == 0 && !strstr(de->d_name, ".dbtmp")) {
            unsigned long n = strtoul(de->d_name + 8, NULL, 10);
            if (n > best)
                best = n;
        }
    closedir(d);
    CHECK(best > 0);
    snprintf(path, sizeof path, "%s/OPTIONS-%06lu", db, best);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[512];
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "max_successive_merges=");
        if (p)
            v = strtol(p + strlen("max_successive_merges="), NULL, 10);
    }
    fclose(f);
    CHECK(v >= 0);
    return v;
}

static void append(spw_stream *s, int n)
{
    for (int i = 0; i < n; i++) {
        spw_record r = {.key = "k", .key_len = 1, .value = "{\"n\":2}", .value_len = 7, .ts = 1700000000000};
        spw_append_result res;
        CHECK_OK(spw_part_append_wait(s->parts[0], &r, 1, NULL, SPW_ACK_FSYNC, &res));
    }
}

static void check_sum(spw_views *m, long count)
{
    spw_buf b = SPW_BUF_INIT;
    char err[256], want[128];
    CHECK_OK(spw_views_read_key(m, "v", "k", 1, 0, &b, err, sizeof err));
    spw_buf_put(&b, "", 1);
    snprintf(want, sizeof want, "\"count\":%ld,\"sum\":%ld", count, 2 * count);
    if (!strstr((const char *)b.p, want))
        fprintf(stderr, "read: %s, want %s\n", (const char *)b.p, want);
    CHECK(strstr((const char *)b.p, want) != NULL);
    spw_buf_fini(&b);
}

int main(void)
{
    spw_msg_set_level(SPW_MSG_ERROR + 1);
    vs_env env;
    vs_open(&env, "viewchain", 0);
    spw_stream *s = vs_stream(&env, "s", "{\"partitions\":1}");
    atomic_store(&spw__view_batch_records, 1);
    append(s, 10);
    spw_views *m;
    CHECK_OK(spw_views_open(env.cat, env.dir, 3600000, &m)); /* no flush but at close */
    vs_put_view(m, "v", "{\"stream\":\"s\",\"kind\":\"sum\",\"field\":\"/n\"}");
    vf_wait_applied(m, "v", s);
    check_sum(m, 10);
    CHECK_EQ(chain_bound(env.dir), 0); /* 10 batches: off */
    append(s, 190);
    vf_wait_applied(m, "v", s);
    check_sum(m, 200);
    CHECK_EQ(chain_bound(env.dir), 64); /* past 64 batches without a flush: on */
    spw_views_close(m);                   /* flushes */
    CHECK_EQ(chain_bound(env.dir), 0);
    CHECK_OK(spw_views_open(env.cat, env.dir, 3600000, &m));
    check_sum(m, 200);
    spw_views_close(m);
    spw_stream_put(s);
    vs_close(&env);
    printf("test_view_chain: ok\n");
    return 0;
}
