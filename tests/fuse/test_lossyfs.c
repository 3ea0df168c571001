/*
 * lossyfs's own model (tests/fuse/lossyfs.c), the disk of test_fusecut:
 * what fsync(2) returned 0 for must be in BACKING.
 *
 * A rename over a file (or an unlink) drops the replaced file's unsynced
 * pages, found by inode number. The BACKING rename frees that number, and
 * the file system may give it at once to a file created meanwhile (ext4
 * does: the lowest free inode of the group). If that file's writes reach
 * lossyfs before the rename has dropped the old file's state, the drop
 * takes the new file's writes instead: they vanish from the cache, the
 * file's fsync finds nothing to write and succeeds, and what it
 * acknowledged never reaches BACKING. In test_fusecut the new file is a
 * segment made by a roll while a consumer group's commit (or a recovery
 * point) is renamed into place: its fsynced, acknowledged batches read
 * back as a damaged range.
 *
 * The window is held open with LOSSYFS_TEST_RENAME_PAUSE_MS (a pause
 * after the BACKING rename); meanwhile files are created and written
 * through the mount until one gets the replaced file's inode number; each
 * is fsynced, and its bytes are then looked for in the mount and BACKING.
 *
 *   test_lossyfs LOSSYFS
 *
 * Exits 77 (skipped) where FUSE cannot be mounted. Where BACKING's file
 * system does not reuse inode numbers at once (tmpfs) it passes without
 * having met the race; on ext4 it fails without lossyfs's fix.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fuse/lossy.h"
#include "test.h"

#define PAUSE_MS 1500
#define MAX_FILES 1000

static char back[4200], mnt[4200];
static _Atomic int renamed;

/* Writes a file through the mount and fsyncs it: durable, no unsynced state. */
static void put_synced(const char *name, const char *text)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", mnt, name);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
    CHECK_EQ(fsync(fd), 0);
    CHECK_EQ(close(fd), 0);
}

static ino_t back_ino(const char *name)
{
    char p[4300];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", back, name);
    return stat(p, &st) == 0 ? st.st_ino : 0;
}

/* Does lossyfs (pid) still hold a descriptor of BACKING's file name? */
static int lossy_holds(pid_t pid, const char *name)
{
    char dir[64], want[4300], link[4300], got[4300];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "%s/%s", back, name);
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(link, sizeof link, "%s/%d", dir, fd);
        ssize_t n = readlink(link, got, sizeof got - 1);
        if (n <= 0)
            continue;
        got[n] = 0;
        if (strcmp(got, want) == 0)
            return 1;
    }
    return 0;
}

static void *renamer(void *arg)
{
    (void)arg;
    char a[4300], b[4300];
    snprintf(a, sizeof a, "%s/r/new", mnt);
    snprintf(b, sizeof b, "%s/r/old", mnt);
    CHECK_EQ(rename(a, b), 0); /* returns after lossyfs's pause */
    atomic_store(&renamed, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s LOSSYFS\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    char *dir = spw_test_tmpdir("lossyfs");
    snprintf(back, sizeof back, "%s/back", dir);
    snprintf(mnt, sizeof mnt, "%s/mnt", dir);
    CHECK(mkdir(back, 0755) == 0 && mkdir(mnt, 0755) == 0);
    lossy fs = {0};
    if (access("/dev/fuse", R_OK | W_OK) != 0 || lossy_start(&fs, argv[1], back, mnt, 1, PAUSE_MS) != 0) {
        printf("test_lossyfs: skipped: cannot mount a FUSE filesystem here\n");
        spw_test_rmrf(dir);
        return 77;
    }

    /* r/old and r/new durable; lossyfs keeps no descriptor of r/old (its
     * release is asynchronous), so the rename frees its inode number. The
     * new files go to another directory: the kernel holds r's lock for
     * the whole rename, as it does for a group file's rename while a
     * partition directory gets a segment in test_fusecut. */
    char sub[4300];
    snprintf(sub, sizeof sub, "%s/r", mnt);
    CHECK_EQ(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof sub, "%s/w", mnt);
    CHECK_EQ(mkdir(sub, 0755), 0);
    put_synced("r/old", "the replaced file\n");
    put_synced("r/new", "the file renamed over it\n");
    ino_t old_ino = back_ino("r/old");
    CHECK(old_ino != 0);
    for (int i = 0; i < 500 && lossy_holds(fs.pid, "r/old"); i++)
        usleep(10000);
    CHECK(!lossy_holds(fs.pid, "r/old"));

    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, renamer, NULL), 0);
    /* The BACKING rename is done (lossyfs now pauses before it drops the
     * replaced file's state)... Bounded by 10 s, not the pause: on a
     * loaded machine the renamer thread and lossyfs may take longer than
     * half a second to get there (then the loop below may find the pause
     * over and make one file only: it passes without meeting the race, as
     * on a file system that does not reuse inode numbers). */
    for (int i = 0; i < 10000 && back_ino("r/old") == old_ino; i++)
        usleep(1000);
    CHECK(back_ino("r/old") != old_ino);

    /* ...and, while the rename is under way, files are made and written
     * through the mount, until one gets the freed inode number. (With
     * lossyfs holding its lock across the rename, the first one waits
     * for the rename to finish.) */
    static char data[8192];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)('a' + i % 26);
    static int fds[MAX_FILES];
    int nf = 0, reused = -1;
    while (nf < MAX_FILES && reused < 0 && (nf == 0 || !atomic_load(&renamed))) {
        char p[4300], name[64];
        snprintf(name, sizeof name, "w/seg-%d", nf);
        snprintf(p, sizeof p, "%s/%s", mnt, name);
        int f = open(p, O_CREAT | O_EXCL | O_RDWR, 0644);
        CHECK(f >= 0);
        CHECK_EQ(pwrite(f, data, sizeof data, 0), (long long)sizeof data);
        if (back_ino(name) == old_ino)
            reused = nf;
        fds[nf++] = f;
    }
    CHECK_EQ(pthread_join(th, NULL), 0);
    if (reused >= 0)
        printf("test_lossyfs: w/seg-%d got the replaced file's inode number %lu and was written before the rename "
               "had finished\n",
               reused, (unsigned long)old_ino);
    else
        printf("test_lossyfs: none of the %d file(s) made during the rename got the replaced file's inode number\n",
               nf);

    /* fsync said durable: every file's bytes are in the cache and in BACKING. */
    for (int i = 0; i < nf; i++) {
        CHECK_EQ(fsync(fds[i]), 0);
        static char got[sizeof data], bgot[sizeof data];
        ssize_t n = pread(fds[i], got, sizeof got, 0);
        close(fds[i]);
        char p[4300];
        snprintf(p, sizeof p, "%s/w/seg-%d", back, i);
        int bfd = open(p, O_RDONLY);
        CHECK(bfd >= 0);
        ssize_t bn = pread(bfd, bgot, sizeof bgot, 0);
        close(bfd);
        if (n != (ssize_t)sizeof data || bn != (ssize_t)sizeof data)
            printf("test_lossyfs: w/seg-%d: read back %zd bytes through the mount, %zd from BACKING after fsync (of "
                   "%zu written)\n",
                   i, n, bn, sizeof data);
        CHECK_EQ(n, (long long)sizeof data);
        CHECK(memcmp(got, data, sizeof data) == 0);
        CHECK_EQ(bn, (long long)sizeof data);
        CHECK(memcmp(bgot, data, sizeof data) == 0);
    }

    lossy_stop(&fs);
    spw_test_rmrf(dir);
    free(dir);
    printf("test_lossyfs: ok\n");
    return 0;
}
