/*
 * A sink reading across a damaged batch (docs/architecture.md, "The sink
 * loop"): a window whose first read returns records and whose next read
 * (the next segment) meets a batch that fails its CRC delivers the records
 * it has, then skips exactly the damaged batch, logged and counted — and the
 * server does not crash (it did: the records' pointers were left as arena
 * offsets on that path).
 */
#include <dirent.h>
#include <inttypes.h>

#include "server.h"

static const char *BIN;

static void produce(int port, const char *stream, int first, int n)
{
    char *body = malloc((size_t)n * 160 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "{\"u\":%d,\"pad\":\"%080d\"}\n", first + i, 0);
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    resp r = http(port, "POST", path, "application/x-ndjson", body, len);
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(body);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Flips a byte in the body of the first batch of the second segment. */
static void damage_second_segment(const char *pdir)
{
    DIR *d = opendir(pdir);
    CHECK(d != NULL);
    char *names[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256)
        if (strlen(de->d_name) == 24 && strcmp(de->d_name + 20, ".log") == 0)
            names[n++] = strdup(de->d_name);
    closedir(d);
    CHECK(n >= 3); /* the second is closed, not the newest */
    qsort(names, (size_t)n, sizeof *names, cmp);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", pdir, names[1]);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    uint8_t c;
    CHECK_EQ(pread(fd, &c, 1, 100), 1);
    c ^= 0x40;
    CHECK_EQ(pwrite(fd, &c, 1, 100), 1);
    close(fd);
    for (int i = 0; i < n; i++)
        free(names[i]);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *edir = spw_test_tmpdir("sinkdmg-edge"), *cdir = spw_test_tmpdir("sinkdmg-core");
    const char *extra[] = {"--segment-bytes", "4096", NULL};
    srv edge, core;
    srv_start(&edge, BIN, edir, extra);
    put_stream(edge.port, "src", "{\"partitions\":1}");
    for (int i = 0; i < 12; i++)
        produce(edge.port, "src", i * 20, 20); /* one batch of ~2.4 KiB each: a segment each */
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    char pdir[4200];
    snprintf(pdir, sizeof pdir, "%s/streams/src/0", edir);
    damage_second_segment(pdir);

    srv_start(&core, BIN, cdir, NULL);
    put_stream(core.port, "dst", "{\"partitions\":1}");
    srv_start(&edge, BIN, edir, extra);
    /* a window larger than a segment: its first read ends at the first
     * segment's end, the next meets the damage */
    put_forward_sink(edge.port, "fw", "src", core.binport, "dst");
    uint64_t got = wait_part_field(core.port, "/v1/streams/dst", 0, "end_offset", 220);
    CHECK_EQ(got, 220); /* 240 less the damaged batch's 20 */
    CHECK(wait_sink_past_damage(edge.port, "fw", 240));
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0); /* alive: 0, not 128 + SIGSEGV */
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(edir);
    spw_test_rmrf(cdir);
    free(edir);
    free(cdir);
    printf("test_sink_damage: ok\n");
    return 0;
}
