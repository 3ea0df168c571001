/*
 * The OS layer (os/os.h): spw_os_mkdirs makes each missing directory and
 * fsyncs its parent right after (before going deeper), touches nothing
 * that exists, and reports a failed fsync. The small-file pair
 * (spw_os_write_file_atomic, spw_os_read_file) goes through spw_os (so a
 * fault injected there reaches it), syncs the temp file before the rename
 * and the directory after it, keeps the old bytes when a step fails, and
 * refuses a file over its bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "core/alloc.h"
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

static int rec_fdatasync(int fd)
{
    note("fdatasync", fd >= 0 && fd < 1024 ? fd_path[fd] : "?");
    return spw_os_default.fdatasync(fd);
}

static int rec_rename(const char *from, const char *to)
{
    int r = spw_os_default.rename(from, to);
    size_t n = strlen(journal);
    snprintf(journal + n, sizeof journal - n, "rename %s %s\n", from, to);
    return r;
}

static int fail_open(const char *path, int flags, int mode)
{
    (void)path, (void)flags, (void)mode;
    return -EIO;
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

    /* The small-file pair. */
    spw_os.fsync = rec_fsync;
    spw_os.fdatasync = rec_fdatasync;
    spw_os.rename = rec_rename;
    snprintf(path, sizeof path, "%s/a", tmp);
    journal[0] = 0;
    CHECK_OK(spw_os_write_file_atomic(path, "f.json", "f.json.tmp", "hello", 5, SPW_OS_SYNC_FULL));
    snprintf(want, sizeof want, "fsync %s/a/f.json.tmp\nrename %s/a/f.json.tmp %s/a/f.json\nfsync %s/a\n", tmp, tmp,
             tmp, tmp);
    if (strcmp(journal, want) != 0)
        fprintf(stderr, "journal:\n%swant:\n%s", journal, want);
    CHECK(strcmp(journal, want) == 0);
    journal[0] = 0;
    CHECK_OK(spw_os_write_file_atomic(path, "f.json", "f.json.tmp", "hello", 5, SPW_OS_SYNC_DATA));
    CHECK(strncmp(journal, "fdatasync ", 10) == 0);
    char fp[4300], *text = NULL;
    size_t len = 0;
    snprintf(fp, sizeof fp, "%s/f.json", path);
    CHECK_OK(spw_os_read_file(fp, 5, &text, &len));
    CHECK_EQ(len, 5);
    CHECK(memcmp(text, "hello", 6) == 0); /* with its NUL */
    spw_free(text);
    /* Over the bound: -EFBIG, nothing returned. */
    text = NULL;
    CHECK_EQ(spw_os_read_file(fp, 4, &text, &len), -EFBIG);
    CHECK(text == NULL);
    snprintf(want, sizeof want, "%s/none", path);
    CHECK_EQ(spw_os_read_file(want, 100, &text, &len), -ENOENT);
    /* A failed fsync: the error, and the old bytes stay. */
    spw_os.fsync = fail_fsync;
    CHECK_EQ(spw_os_write_file_atomic(path, "f.json", "f.json.tmp", "world!", 6, SPW_OS_SYNC_FULL), -EIO);
    spw_os.fsync = rec_fsync;
    CHECK_OK(spw_os_read_file(fp, 100, &text, &len));
    CHECK(len == 5 && memcmp(text, "hello", 5) == 0);
    spw_free(text);
    /* Both go through spw_os.open. */
    spw_os.open = fail_open;
    CHECK_EQ(spw_os_read_file(fp, 100, &text, &len), -EIO);
    CHECK_EQ(spw_os_write_file_atomic(path, "f.json", "f.json.tmp", "x", 1, SPW_OS_SYNC_FULL), -EIO);

    spw_os = spw_os_default;
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_os: ok\n");
    return 0;
}
