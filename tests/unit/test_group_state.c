/*
 * Consumer-group state (catalog/groups.h): names, lease ids on the wire,
 * leases (one holder per partition, round robin, expiry, retention clamp),
 * commits (stale, expired, out of range), and the offsets file (saved,
 * reloaded, a failed fsync leaves the group dirty, bad files skipped).
 */
#include <errno.h>
#include <sys/stat.h>

#include "os/os.h"
#include "catalog/groups.h"
#include "test.h"

static void test_names(void)
{
    CHECK(spw_group_name_ok("billing", 7));
    CHECK(spw_group_name_ok("a.b_c-D9", 8));
    CHECK(!spw_group_name_ok("", 0));
    CHECK(!spw_group_name_ok(".hidden", 7));
    CHECK(!spw_group_name_ok("..", 2));
    CHECK(!spw_group_name_ok("a/b", 3));
    CHECK(!spw_group_name_ok("a%2F", 4));
    char big[200];
    memset(big, 'x', sizeof big);
    CHECK(spw_group_name_ok(big, 128));
    CHECK(!spw_group_name_ok(big, 129));
    CHECK(spw_group_member_ok(big, 64));
    CHECK(!spw_group_member_ok(big, 65));
}

static void test_lease_text(void)
{
    spw_lease l = {.partition = 17, .id = 0xabcdef0123456789ull};
    char s[48];
    spw_lease_format(&l, s, sizeof s);
    CHECK(strcmp(s, "17-abcdef0123456789") == 0);
    uint32_t p;
    uint64_t id;
    CHECK_EQ(spw_lease_parse(s, strlen(s), &p, &id), 0);
    CHECK_EQ(p, 17);
    CHECK(id == l.id);
    const char *bad[] = {"", "-abcdef0123456789", "17abcdef0123456789", "17-abcdef012345678", "17-abcdef01234567890",
                         "17-ABCDEF0123456789", "x-abcdef0123456789", "99999-abcdef0123456789", "17-abcdef012345678g"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_EQ(spw_lease_parse(bad[i], strlen(bad[i]), &p, &id), -EINVAL);
}

static void test_leases(const char *dir)
{
    spw_groups *gs;
    CHECK_OK(spw_groups_open(dir, &gs));
    uint64_t start[3] = {0, 0, 0}, end[3] = {5, 0, 3}, first[3] = {0, 0, 0};
    int created;
    spw_group *g = spw_group_find(gs, "s", 0, "g", 1, 3, start, &created);
    CHECK(g && created);
    CHECK(spw_group_find(gs, "s", 0, "g", 1, 3, start, &created) == g && !created);
    CHECK(spw_group_find(gs, "s", 0, "other", 0, 0, NULL, NULL) == NULL);
    spw_lease a, b, c;
    CHECK_EQ(spw_group_acquire(g, end, first, 3, 1000, 500, "m1", &a), 1);
    CHECK_EQ(a.partition, 0);
    CHECK_EQ(a.from, 0);
    CHECK_EQ(spw_group_acquire(g, end, first, 3, 1000, 500, "m2", &b), 1);
    CHECK_EQ(b.partition, 2); /* 1 has no records */
    CHECK(a.id != b.id);
    CHECK_EQ(spw_group_acquire(g, end, first, 3, 1000, 500, "m3", &c), 0);
    CHECK(!spw_group_ready(g, end, first, 3, 1000));
    CHECK_OK(spw_group_lease_delivered(g, &a, 4));
    CHECK_OK(spw_group_lease_delivered(g, &b, 3));
    spw_group_part_info info[3];
    spw_group_info(g, info, 3, 1100);
    CHECK(info[0].held && strcmp(info[0].holder, "m1") == 0 && info[0].lease_left_ms == 400);
    CHECK(!info[1].held);
    CHECK(info[2].held && strcmp(info[2].holder, "m2") == 0);
    /* Commits: out of range, wrong id, wrong partition, then good. */
    CHECK_EQ(spw_group_commit(g, 0, a.id, 5, 1100), -ERANGE);
    CHECK_EQ(spw_group_commit(g, 0, a.id + 1, 4, 1100), -ESTALE);
    CHECK_EQ(spw_group_commit(g, 1, a.id, 4, 1100), -ESTALE);
    CHECK_EQ(spw_group_commit(g, 7, a.id, 4, 1100), -EINVAL);
    CHECK_EQ(spw_group_commit(g, 0, a.id, 3, 1100), 0); /* partial */
    CHECK_EQ(spw_group_commit(g, 0, a.id, 3, 1100), -ESTALE); /* the lease ended */
    /* Partition 0 again, from 3; partition 2's lease expires at 1500. */
    CHECK_EQ(spw_group_acquire(g, end, first, 3, 1200, 500, "m3", &c), 1);
    CHECK_EQ(c.partition, 0);
    CHECK_EQ(c.from, 3);
    CHECK(!spw_group_ready(g, end, first, 3, 1499));
    CHECK(spw_group_ready(g, end, first, 3, 1500));
    CHECK_EQ(spw_group_commit(g, 2, b.id, 3, 1500), -ETIME);
    spw_lease d;
    CHECK_EQ(spw_group_acquire(g, end, first, 3, 1500, 500, "m1", &d), 1);
    CHECK_EQ(d.partition, 2);
    CHECK_EQ(d.from, 0); /* redelivered from the committed offset */
    CHECK_EQ(spw_group_commit(g, 2, b.id, 3, 1501), -ESTALE); /* taken over */
    spw_group_release(g, &d);
    /* Retention removed offsets below 2 of partition 2: the lease starts at 2. */
    uint64_t first2[3] = {0, 0, 2};
    CHECK_EQ(spw_group_acquire(g, end, first2, 3, 1600, 500, "m1", &d), 1);
    CHECK_EQ(d.partition, 2);
    CHECK_EQ(d.from, 2);
    CHECK_OK(spw_group_lease_delivered(g, &d, 3));
    CHECK_EQ(spw_group_commit(g, 2, d.id, 1, 1600), -ERANGE);
    CHECK_EQ(spw_group_commit(g, 2, d.id, 3, 1600), 0);
    spw_group_info(g, info, 3, 1600);
    CHECK_EQ(info[0].committed, 3);
    CHECK_EQ(info[2].committed, 3);
    /* Retention removed every record partition 1 had not read (committed
     * 0, oldest kept = end = 6): nothing to lease there, not ready. */
    uint64_t end3[3] = {3, 6, 3}, first3[3] = {0, 6, 0};
    CHECK(!spw_group_ready(g, end3, first3, 3, 1700));
    CHECK_EQ(spw_group_acquire(g, end3, first3, 3, 1700, 500, "m1", &d), 0);
    end3[1] = 7; /* one new record: leased from the oldest kept */
    CHECK(spw_group_ready(g, end3, first3, 3, 1700));
    CHECK_EQ(spw_group_acquire(g, end3, first3, 3, 1700, 500, "m1", &d), 1);
    CHECK_EQ(d.partition, 1);
    CHECK_EQ(d.from, 6);
    spw_group_release(g, &d);
    CHECK_OK(spw_group_save(gs, g));
    spw_groups_close(gs);
}

static int fail_fsync(int fd)
{
    (void)fd;
    return -EIO;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_file(const char *dir)
{
    /* test_leases saved s/g as {3,0,3}. */
    spw_groups *gs;
    CHECK_OK(spw_groups_open(dir, &gs));
    spw_group *g = spw_group_find(gs, "s", 0, "g", 0, 0, NULL, NULL);
    CHECK(g != NULL);
    CHECK_EQ(spw_group_nparts(g), 3);
    spw_group_part_info info[3];
    spw_group_info(g, info, 3, 0);
    CHECK_EQ(info[0].committed, 3);
    CHECK_EQ(info[1].committed, 0);
    CHECK_EQ(info[2].committed, 3);
    CHECK(!info[0].held); /* leases do not survive */
    /* A failed fsync: error, file unchanged, still dirty; the next save writes it. */
    uint64_t end[3] = {9, 9, 9}, first[3] = {0, 0, 0};
    spw_lease l;
    CHECK_EQ(spw_group_acquire(g, end, first, 3, 0, 1000, "m", &l), 1);
    CHECK_OK(spw_group_lease_delivered(g, &l, 9));
    CHECK_EQ(spw_group_commit(g, l.partition, l.id, 9, 0), 0);
    spw_os.fsync = fail_fsync;
    CHECK_EQ(spw_group_save(gs, g), -EIO);
    spw_os = spw_os_default;
    spw_groups_close(gs);
    CHECK_OK(spw_groups_open(dir, &gs));
    g = spw_group_find(gs, "s", 0, "g", 0, 0, NULL, NULL);
    spw_group_info(g, info, 3, 0);
    CHECK_EQ(info[l.partition].committed, l.partition == 1 ? 0 : 3); /* the failed save changed nothing */
    CHECK_EQ(spw_group_acquire(g, end, first, 3, 0, 1000, "m", &l), 1);
    CHECK_OK(spw_group_lease_delivered(g, &l, 9));
    CHECK_EQ(spw_group_commit(g, l.partition, l.id, 9, 0), 0);
    spw_os.fsync = fail_fsync;
    CHECK_EQ(spw_group_save(gs, g), -EIO);
    spw_os = spw_os_default;
    CHECK_OK(spw_group_save(gs, g)); /* still dirty: written now */
    spw_groups_close(gs);
    CHECK_OK(spw_groups_open(dir, &gs));
    g = spw_group_find(gs, "s", 0, "g", 0, 0, NULL, NULL);
    spw_group_info(g, info, 3, 0);
    CHECK_EQ(info[l.partition].committed, 9);
    spw_groups_close(gs);

    /* Files that are not offsets files are skipped, never fatal. */
    char path[4096 + 64];
    const char *bad[] = {"", "{}", "not json", "{\"version\":2,\"stream\":\"s\",\"group\":\"b\",\"committed\":[1]}",
                         "{\"version\":1,\"stream\":\"other\",\"group\":\"b\",\"committed\":[1]}",
                         "{\"version\":1,\"stream\":\"s\",\"group\":\"b\",\"committed\":[]}",
                         "{\"version\":1,\"stream\":\"s\",\"group\":\"b\",\"committed\":[-1]}",
                         "{\"version\":1,\"stream\":\"s\",\"group\":\"b\",\"committed\":[1.5]}"};
    snprintf(path, sizeof path, "%s/groups/s/b", dir);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(path, bad[i]);
        CHECK_OK(spw_groups_open(dir, &gs));
        CHECK(spw_group_find(gs, "s", 0, "b", 0, 0, NULL, NULL) == NULL);
        CHECK(spw_group_find(gs, "s", 0, "g", 0, 0, NULL, NULL) != NULL);
        spw_groups_close(gs);
    }
    write_text(path, "{\"version\":1,\"stream\":\"s\",\"group\":\"b\",\"committed\":[7, 8]}\n");
    /* A temp file a crash left and a dot-name: ignored. */
    snprintf(path, sizeof path, "%s/groups/s/.b.tmp", dir);
    write_text(path, "{\"version\":1,\"stream\":\"s\",\"group\":\".b.tmp\",\"committed\":[1]}\n");
    CHECK_OK(spw_groups_open(dir, &gs));
    g = spw_group_find(gs, "s", 0, "b", 0, 0, NULL, NULL);
    CHECK(g != NULL);
    CHECK_EQ(spw_group_nparts(g), 2);
    spw_group_info(g, info, 2, 0);
    CHECK_EQ(info[0].committed, 7);
    CHECK_EQ(info[1].committed, 8);
    CHECK(spw_group_find(gs, "s", 0, ".b.tmp", 0, 0, NULL, NULL) == NULL);
    spw_groups_close(gs);
}

/* A deleted stream's groups: gone from lookups and disk, the memory kept
 * for whoever still points at them, leasing nothing, never saved again. */
static void test_drop(const char *dir)
{
    spw_groups *gs;
    CHECK_OK(spw_groups_open(dir, &gs));
    uint64_t start[2] = {0, 0}, end[2] = {4, 4}, first[2] = {0, 0};
    spw_group *g = spw_group_find(gs, "dropme", 0, "g1", 1, 2, start, NULL);
    CHECK(g != NULL);
    CHECK_OK(spw_group_save(gs, g));
    spw_lease l;
    CHECK_EQ(spw_group_acquire(g, end, first, 2, 0, 1000, "m", &l), 1);
    CHECK_OK(spw_group_lease_delivered(g, &l, 4));
    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/groups/dropme/g1", dir);
    CHECK(access(path, F_OK) == 0);
    CHECK_OK(spw_groups_drop_stream(gs, "dropme"));
    CHECK(access(path, F_OK) != 0);
    CHECK(spw_group_find(gs, "dropme", 0, "g1", 0, 0, NULL, NULL) == NULL);
    CHECK(spw_group_find(gs, "s", 0, "g", 0, 0, NULL, NULL) != NULL); /* other streams' groups stay */
    CHECK_EQ(spw_group_commit(g, l.partition, l.id, 4, 0), 0);     /* a commit in flight: harmless */
    CHECK_OK(spw_group_save(gs, g));
    CHECK(access(path, F_OK) != 0); /* not written again */
    CHECK_EQ(spw_group_acquire(g, end, first, 2, 5000, 1000, "m", &l), 0);
    CHECK(!spw_group_ready(g, end, first, 2, 5000));
    CHECK_OK(spw_groups_drop_stream(gs, "never-had-groups"));
    spw_groups_close(gs);
}

/* A stream deleted and created again under its name is another
 * incarnation: a group file left from the old one (its removal cut by a
 * crash) is never served to the new one, and is removed. */
static void test_incarnation(const char *dir)
{
    spw_groups *gs;
    CHECK_OK(spw_groups_open(dir, &gs));
    uint64_t start[2] = {0, 0}, end[2] = {50, 50}, first[2] = {0, 0};
    spw_group *g = spw_group_find(gs, "re", 5, "g", 1, 2, start, NULL);
    CHECK(g != NULL);
    spw_lease l;
    CHECK_EQ(spw_group_acquire(g, end, first, 2, 0, 1000, "m", &l), 1);
    CHECK_OK(spw_group_lease_delivered(g, &l, 40));
    CHECK_EQ(spw_group_commit(g, l.partition, l.id, 40, 0), 0);
    CHECK_OK(spw_group_save(gs, g));
    uint32_t moved = l.partition;
    spw_groups_close(gs);

    char path[4096 + 64];
    snprintf(path, sizeof path, "%s/groups/re/g", dir);
    CHECK_OK(spw_groups_open(dir, &gs));
    g = spw_group_find(gs, "re", 5, "g", 0, 0, NULL, NULL); /* the same incarnation: kept */
    CHECK(g != NULL);
    spw_group_part_info info[2];
    spw_group_info(g, info, 2, 0);
    CHECK_EQ(info[moved].committed, 40);
    /* Another incarnation: not served, file gone; created afresh at start. */
    CHECK(spw_group_find(gs, "re", 9, "g", 0, 0, NULL, NULL) == NULL);
    CHECK(access(path, F_OK) != 0);
    int created = 0;
    g = spw_group_find(gs, "re", 9, "g", 1, 2, start, &created);
    CHECK(g != NULL && created);
    spw_group_info(g, info, 2, 0);
    CHECK_EQ(info[moved].committed, 0);
    CHECK_OK(spw_group_save(gs, g));
    spw_groups_close(gs);
    CHECK_OK(spw_groups_open(dir, &gs));
    /* A request still holding the deleted stream: nothing, and the new
     * incarnation's group stays. */
    CHECK(spw_group_find(gs, "re", 5, "g", 1, 2, start, NULL) == NULL);
    CHECK(spw_group_find(gs, "re", 9, "g", 0, 0, NULL, NULL) != NULL);
    spw_groups_close(gs);
}

int main(void)
{
    char *dir = spw_test_tmpdir("groups");
    test_names();
    test_lease_text();
    test_leases(dir);
    test_file(dir);
    test_drop(dir);
    test_incarnation(dir);
    spw_test_rmrf(dir);
    free(dir);
    return 0;
}
