/*
 * lossyfs: a FUSE filesystem that loses power on command — the disk of the
 * end-to-end power-loss test (tests/fuse/test_fusecut.c, scripts/torture.sh).
 *
 *   spw_lossyfs BACKING MOUNTPOINT [SEED]
 *
 * Every file under MOUNTPOINT is the file of the same name under BACKING,
 * seen through a cache of unsynced writes kept here in memory, as a page
 * cache keeps them: write(2) and truncation change only that cache (4 KiB
 * pages and a pending size, per inode); fsync(2) / fdatasync(2) of a file
 * write its pages and size to BACKING and fsync them there, and only then
 * are they durable. Reads see the cache over BACKING. Files are opened
 * with direct_io and attributes are never cached by the kernel, so nothing
 * is kept behind this process's back.
 *
 * SIGUSR1 cuts the power: every unsynced page is dropped, except a random
 * few (seeded) that "reached the disk" anyway — some whole, some torn at a
 * 512-byte sector — as a real disk may write any subset of what the OS sent
 * it. Then "cut N dropped=D kept=K torn=T" is printed on stdout. The caller
 * kills the server with SIGKILL first, so nothing writes during the cut.
 * "ready" is printed once mounted. SIGTERM / SIGINT unmount.
 *
 * Limits (the in-process simulator, tests/sim, covers these): directory
 * operations (create, mkdir, rename, unlink) are applied to BACKING at once,
 * so they are durable without a directory fsync; a file's size grows in
 * BACKING only at its fsync.
 */
#define FUSE_USE_VERSION 31
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define PAGE 4096u
#define SECTOR 512u

typedef struct page {
    uint64_t idx;
    uint8_t data[PAGE];
} page;

/* The unsynced state of one inode. */
typedef struct dirty {
    ino_t ino;
    int fd;             /* a writable descriptor of the BACKING file, ours */
    uint64_t low;       /* BACKING's bytes at and past this are not the file's (cut by a truncation) */
    uint64_t size;      /* logical size */
    int size_changed;   /* size differs from BACKING's (truncated or grown) */
    page **pages;       /* sorted by idx */
    size_t n, cap;
    struct dirty *next;
} dirty;

static const char *backing;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static dirty *all;
static uint64_t rng;
static unsigned cuts;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void bpath(char *out, const char *path) { snprintf(out, PATH_MAX, "%s%s", backing, path); }

static dirty *find(ino_t ino)
{
    for (dirty *d = all; d; d = d->next)
        if (d->ino == ino)
            return d;
    return NULL;
}

static void dirty_free(dirty *d)
{
    close(d->fd);
    for (size_t i = 0; i < d->n; i++)
        free(d->pages[i]);
    free(d->pages);
    free(d);
}

static void forget(ino_t ino)
{
    for (dirty **pp = &all; *pp; pp = &(*pp)->next)
        if ((*pp)->ino == ino) {
            dirty *d = *pp;
            *pp = d->next;
            dirty_free(d);
            return;
        }
}

static dirty *get(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    dirty *d = find(st.st_ino);
    if (!d) {
        d = calloc(1, sizeof *d);
        d->ino = st.st_ino;
        d->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        d->size = d->low = (uint64_t)st.st_size;
        d->next = all;
        all = d;
    }
    return d;
}

static page *page_find(dirty *d, uint64_t idx, size_t *at)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->pages[mid]->idx < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return lo < d->n && d->pages[lo]->idx == idx ? d->pages[lo] : NULL;
}

/* The page idx of the file's logical content, made dirty (filled from BACKING). */
static page *page_get(dirty *d, int fd, uint64_t idx)
{
    size_t at;
    page *p = page_find(d, idx, &at);
    if (p)
        return p;
    p = calloc(1, sizeof *p);
    p->idx = idx;
    uint64_t off = idx * PAGE;
    if (off < d->low) {
        ssize_t got = pread(fd, p->data, PAGE, (off_t)off);
        if (got < 0)
            got = 0;
        uint64_t valid = d->low - off < PAGE ? d->low - off : PAGE;
        if ((uint64_t)got > valid)
            memset(p->data + valid, 0, PAGE - valid); /* cut by a truncation not yet synced */
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->pages = realloc(d->pages, d->cap * sizeof *d->pages);
    }
    memmove(d->pages + at + 1, d->pages + at, (d->n - at) * sizeof *d->pages);
    d->pages[at] = p;
    d->n++;
    return p;
}

static void set_size(dirty *d, uint64_t size)
{
    /* drop whole pages past the end; zero the tail of the last one */
    size_t keep = 0;
    while (keep < d->n && d->pages[keep]->idx * PAGE < size)
        keep++;
    for (size_t i = keep; i < d->n; i++)
        free(d->pages[i]);
    d->n = keep;
    if (keep && size % PAGE && d->pages[keep - 1]->idx == size / PAGE)
        memset(d->pages[keep - 1]->data + size % PAGE, 0, PAGE - size % PAGE);
    d->size = size;
    if (size < d->low)
        d->low = size;
    d->size_changed = 1;
}

/* Writes d's pages and size to BACKING through fd and fsyncs. */
static int sync_out(dirty *d, int fd)
{
    if (d->size_changed && (ftruncate(fd, (off_t)d->low) != 0 || ftruncate(fd, (off_t)d->size) != 0))
        return -errno;
    for (size_t i = 0; i < d->n; i++) {
        uint64_t off = d->pages[i]->idx * PAGE;
        if (off >= d->size)
            continue;
        size_t len = d->size - off < PAGE ? (size_t)(d->size - off) : PAGE;
        if (pwrite(fd, d->pages[i]->data, len, (off_t)off) != (ssize_t)len)
            return -EIO;
    }
    if (fsync(fd) != 0)
        return -errno;
    forget(d->ino);
    return 0;
}

/* ---- operations ---- */

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    cfg->direct_io = 1;
    cfg->kernel_cache = 0;
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->hard_remove = 1;
    return NULL;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    bpath(p, path);
    int r = fi ? fstat((int)fi->fh, st) : lstat(p, st);
    if (r != 0)
        return -errno;
    pthread_mutex_lock(&mu);
    dirty *d = S_ISREG(st->st_mode) ? find(st->st_ino) : NULL;
    if (d)
        st->st_size = (off_t)d->size;
    pthread_mutex_unlock(&mu);
    return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags)
{
    (void)off, (void)fi, (void)flags;
    char p[PATH_MAX];
    bpath(p, path);
    DIR *dp = opendir(p);
    if (!dp)
        return -errno;
    struct dirent *de;
    while ((de = readdir(dp))) {
        struct stat st = {.st_ino = de->d_ino, .st_mode = (mode_t)de->d_type << 12};
        if (fill(buf, de->d_name, &st, 0, 0))
            break;
    }
    closedir(dp);
    return 0;
}

static int op_mkdir(const char *path, mode_t mode)
{
    char p[PATH_MAX];
    bpath(p, path);
    return mkdir(p, mode) ? -errno : 0;
}

/*
 * An unlink or a rename over a file drops that file's unsynced state,
 * found by inode number. The number is free once BACKING's unlink or
 * rename is done, and BACKING's file system may give it at once to a file
 * created meanwhile (ext4 does; the kernel holds only the directories of
 * the unlink or rename, so a file made in another one is not held up): a
 * write to it must not come between, or the drop takes that file's pages
 * instead, and its fsync then succeeds with nothing written
 * (tests/fuse/test_lossyfs.c). Writes and truncations take mu, so mu is
 * held from before the BACKING operation until the state is dropped.
 */
static int op_unlink(const char *path)
{
    char p[PATH_MAX];
    bpath(p, path);
    struct stat st;
    pthread_mutex_lock(&mu);
    int have = lstat(p, &st) == 0;
    int r = unlink(p) != 0 ? -errno : 0;
    if (r == 0 && have && st.st_nlink <= 1)
        forget(st.st_ino);
    pthread_mutex_unlock(&mu);
    return r;
}

static int op_rmdir(const char *path)
{
    char p[PATH_MAX];
    bpath(p, path);
    return rmdir(p) ? -errno : 0;
}

/* tests/fuse/test_lossyfs.c: a pause between a rename's BACKING rename
 * and what it does to the replaced file's unsynced state
 * (LOSSYFS_TEST_RENAME_PAUSE_MS), to hold that window open. */
static unsigned rename_pause_ms;

static int op_rename(const char *from, const char *to, unsigned int flags)
{
    if (flags)
        return -EINVAL;
    char a[PATH_MAX], b[PATH_MAX];
    bpath(a, from);
    bpath(b, to);
    struct stat st;
    pthread_mutex_lock(&mu); /* as op_unlink */
    int have = lstat(b, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink <= 1;
    int r = rename(a, b) != 0 ? -errno : 0;
    if (r == 0 && rename_pause_ms)
        usleep(rename_pause_ms * 1000u);
    if (r == 0 && have)
        forget(st.st_ino);
    pthread_mutex_unlock(&mu);
    return r;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)fi;
    char p[PATH_MAX];
    bpath(p, path);
    return chmod(p, mode) ? -errno : 0;
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    (void)fi;
    char p[PATH_MAX];
    bpath(p, path);
    return utimensat(AT_FDCWD, p, tv, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

static int truncate_fd(int fd, off_t size)
{
    pthread_mutex_lock(&mu);
    dirty *d = get(fd);
    if (d)
        set_size(d, (uint64_t)size);
    pthread_mutex_unlock(&mu);
    return d ? 0 : -EIO;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (fi)
        return truncate_fd((int)fi->fh, size);
    char p[PATH_MAX];
    bpath(p, path);
    int fd = open(p, O_RDWR);
    if (fd < 0)
        return -errno;
    int r = truncate_fd(fd, size);
    close(fd);
    return r;
}

static int open_common(const char *path, int flags, mode_t mode, struct fuse_file_info *fi)
{
    char p[PATH_MAX];
    bpath(p, path);
    /* O_TRUNC is a truncation like any other: not durable until fsync. */
    /* Write-only opens read too: a partial page is filled from BACKING. */
    if ((flags & O_ACCMODE) == O_WRONLY)
        flags = (flags & ~O_ACCMODE) | O_RDWR;
    int fd = open(p, (flags & ~(O_TRUNC | O_APPEND)) | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    fi->fh = (uint64_t)fd;
    fi->direct_io = 1;
    if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
        return truncate_fd(fd, 0);
    return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi) { return open_common(path, fi->flags, 0, fi); }

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    return open_common(path, fi->flags | O_CREAT, mode, fi);
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    int fd = (int)fi->fh;
    pthread_mutex_lock(&mu);
    struct stat st;
    dirty *d = fstat(fd, &st) == 0 ? find(st.st_ino) : NULL;
    uint64_t fsize = d ? d->size : (uint64_t)st.st_size;
    if ((uint64_t)off >= fsize) {
        pthread_mutex_unlock(&mu);
        return 0;
    }
    if ((uint64_t)off + size > fsize)
        size = (size_t)(fsize - (uint64_t)off);
    size_t done = 0;
    while (done < size) {
        uint64_t pos = (uint64_t)off + done, idx = pos / PAGE, in = pos % PAGE;
        size_t n = PAGE - in < size - done ? (size_t)(PAGE - in) : size - done;
        size_t at;
        page *pg = d ? page_find(d, idx, &at) : NULL;
        if (pg) {
            memcpy(buf + done, pg->data + in, n);
        } else {
            uint64_t low = d ? d->low : fsize; /* past it: cut by a truncation not yet synced */
            ssize_t got = pos < low ? pread(fd, buf + done, low - pos < n ? (size_t)(low - pos) : n, (off_t)pos) : 0;
            if (got < 0)
                got = 0;
            if ((size_t)got < n)
                memset(buf + done + got, 0, n - (size_t)got); /* grown, not yet written back */
        }
        done += n;
    }
    pthread_mutex_unlock(&mu);
    return (int)size;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    int fd = (int)fi->fh;
    pthread_mutex_lock(&mu);
    dirty *d = get(fd);
    if (!d) {
        pthread_mutex_unlock(&mu);
        return -EIO;
    }
    size_t done = 0;
    while (done < size) {
        uint64_t pos = (uint64_t)off + done, idx = pos / PAGE, in = pos % PAGE;
        size_t n = PAGE - in < size - done ? (size_t)(PAGE - in) : size - done;
        page *pg = page_get(d, fd, idx);
        memcpy(pg->data + in, buf + done, n);
        done += n;
    }
    if ((uint64_t)off + size > d->size) {
        d->size = (uint64_t)off + size;
        d->size_changed = 1;
    }
    pthread_mutex_unlock(&mu);
    return (int)size;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path, (void)datasync;
    int fd = (int)fi->fh;
    pthread_mutex_lock(&mu);
    struct stat st;
    dirty *d = fstat(fd, &st) == 0 ? find(st.st_ino) : NULL;
    int r = d ? sync_out(d, fd) : (fsync(fd) ? -errno : 0);
    pthread_mutex_unlock(&mu);
    return r;
}

static int op_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)datasync, (void)fi;
    char p[PATH_MAX];
    bpath(p, path);
    int fd = open(p, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) ? -errno : 0;
    close(fd);
    return r;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int op_statfs(const char *path, struct statvfs *st)
{
    char p[PATH_MAX];
    bpath(p, path);
    return statvfs(p, st) ? -errno : 0;
}

static int op_access(const char *path, int mask)
{
    char p[PATH_MAX];
    bpath(p, path);
    return access(p, mask) ? -errno : 0;
}

/* ---- the power cut ---- */

static void cut(void)
{
    pthread_mutex_lock(&mu);
    unsigned dropped = 0, kept = 0, torn = 0;
    while (all) {
        dirty *d = all;
        all = d->next;
        int fd = d->fd;
        for (size_t i = 0; i < d->n; i++) {
            uint64_t r = rnd() % 6, off = d->pages[i]->idx * PAGE;
            size_t len = off < d->size ? (d->size - off < PAGE ? (size_t)(d->size - off) : PAGE) : 0;
            if (fd < 0 || len == 0 || r >= 3) {
                dropped++;
                continue;
            }
            if (r == 2) { /* torn: only the first sectors */
                size_t secs = (size_t)(rnd() % (PAGE / SECTOR));
                len = secs * SECTOR < len ? secs * SECTOR : len;
                torn++;
            } else {
                kept++;
            }
            if (len && pwrite(fd, d->pages[i]->data, len, (off_t)off) < 0)
                dropped++;
        }
        if (fd >= 0)
            fsync(fd);
        dirty_free(d);
    }
    cuts++;
    printf("cut %u dropped=%u kept=%u torn=%u\n", cuts, dropped, kept, torn);
    fflush(stdout);
    pthread_mutex_unlock(&mu);
}

static void *cutter(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) == 0 && sig == SIGUSR1)
            cut();
    }
    return NULL;
}

static const struct fuse_operations ops = {
    .init = op_init,
    .getattr = op_getattr,
    .readdir = op_readdir,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .chmod = op_chmod,
    .utimens = op_utimens,
    .truncate = op_truncate,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .fsync = op_fsync,
    .fsyncdir = op_fsyncdir,
    .release = op_release,
    .statfs = op_statfs,
    .access = op_access,
};

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s BACKING MOUNTPOINT [SEED]\n", argv[0]);
        return 2;
    }
    static char real[PATH_MAX];
    if (!realpath(argv[1], real)) {
        perror(argv[1]);
        return 1;
    }
    backing = real;
    if (getenv("LOSSYFS_TEST_RENAME_PAUSE_MS"))
        rename_pause_ms = (unsigned)strtoul(getenv("LOSSYFS_TEST_RENAME_PAUSE_MS"), NULL, 10);
    rng = argc > 3 ? strtoull(argv[3], NULL, 10) : (uint64_t)getpid();
    rng = rng * 0x9e3779b97f4a7c15ull + 1;
    /* SIGUSR1 is taken by the cutter thread alone. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t th;
    pthread_create(&th, NULL, cutter, &set);
    char *fargv[] = {argv[0], NULL};
    struct fuse_args args = FUSE_ARGS_INIT(1, fargv);
    struct fuse *f = fuse_new(&args, &ops, sizeof ops, NULL);
    if (!f)
        return 1;
    if (fuse_mount(f, argv[2]) != 0) {
        fuse_destroy(f);
        return 3;
    }
    if (fuse_set_signal_handlers(fuse_get_session(f)) != 0)
        return 1;
    printf("ready\n");
    fflush(stdout);
    int r = fuse_loop_mt(f, 0);
    fuse_remove_signal_handlers(fuse_get_session(f));
    fuse_unmount(f);
    fuse_destroy(f);
    return r ? 1 : 0;
}
