/*
 * The OS layer (os/os.h): spw_os_mkdirs makes each missing directory and
 * fsyncs its parent right after (before going deeper), touches nothing
 * that exists, and reports a failed fsync.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "os/os.h"
#include "test.h"

/* The journal: "mkdir P" and "fsync P" lines, in order. */
static char journal[8192];
static char fd_path[1024][512];

static void note(const char *what, const char *path)
{
    size_t n = strlen(journal);
    snprintf(journal + n, sizeof journal - n, "%s %s\n", what, path);
}

static int rec_open(const char *path, int flags, int mode)
{
    int fd = spw_os_default.open(path, flags, mode);
    if (fd >= 0 && fd < 1024)
        snprintf(fd_path[fd], sizeof fd_path[fd], "%s", path);
    return fd;
}

static int rec_mkdir(const char *path, int mode)
{
    int r = spw_os_default.mkdir(path, mode);
    if (r == 0)
        note("mkdir", path);
    return r;
}

static int rec_fsync(int fd)
{
    note("fsync", fd >= 0 && fd < 1024 ? fd_path[fd] : "?");
    return spw_os_default.fsync(fd);
}

static int fail_fsync(int fd)
{
    (void)fd;
    return -EIO;
}

int main(void)
{
    char *tmp = spw_test_tmpdir("os");
    char path[4200], want[8192];
    spw_os.open = rec_open;
    spw_os.mkdir = rec_mkdir;
    spw_os.fsync = rec_fsync;

    /* Three new levels under tmp: each made, then its parent fsynced. */
    snprintf(path, sizeof path, "%s/a/b/c", tmp);
    CHECK_OK(spw_os_mkdirs(path, 0755));
    snprintf(want, sizeof want, "mkdir %s/a\nfsync %s\nmkdir %s/a/b\nfsync %s/a\nmkdir %s/a/b/c\nfsync %s/a/b\n", tmp,
             tmp, tmp, tmp, tmp, tmp);
    if (strcmp(journal, want) != 0)
        fprintf(stderr, "journal:\n%swant:\n%s", journal, want);
    CHECK(strcmp(journal, want) == 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));

    /* All there: nothing made, nothing fsynced. */
    journal[0] = 0;
    CHECK_OK(spw_os_mkdirs(path, 0755));
    CHECK(journal[0] == 0);

    /* One new level: one fsync, of its parent. */
    snprintf(path, sizeof path, "%s/a/b/c/d", tmp);
    CHECK_OK(spw_os_mkdirs(path, 0755));
    snprintf(want, sizeof want, "mkdir %s/a/b/c/d\nfsync %s/a/b/c\n", tmp, tmp);
    CHECK(strcmp(journal, want) == 0);

    /* A failed fsync of the parent is reported. */
    spw_os.fsync = fail_fsync;
    snprintf(path, sizeof path, "%s/x/y", tmp);
    CHECK_EQ(spw_os_mkdirs(path, 0755), -EIO);

    spw_os = spw_os_default;
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_os: ok\n");
    return 0;
}
