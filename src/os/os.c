/* OS wrappers: see os.h. */
#include "os/os.h"

#include "core/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETRY(expr)                                                                                                    \
    ({                                                                                                                 \
        __typeof__(expr) r_;                                                                                           \
        do                                                                                                             \
            r_ = (expr);                                                                                               \
        while (r_ < 0 && errno == EINTR);                                                                              \
        r_ < 0 ? -errno : r_;                                                                                          \
    })

static int os_open(const char *path, int flags, int mode) { return RETRY(open(path, flags | O_CLOEXEC, mode)); }
static int os_close(int fd) { return close(fd) < 0 && errno != EINTR ? -errno : 0; }
static ssize_t os_pwrite(int fd, const void *buf, size_t n, off_t off) { return RETRY(pwrite(fd, buf, n, off)); }
static ssize_t os_pwritev(int fd, const struct iovec *iov, int cnt, off_t off) { return RETRY(pwritev(fd, iov, cnt, off)); }
static ssize_t os_pread(int fd, void *buf, size_t n, off_t off) { return RETRY(pread(fd, buf, n, off)); }
static int os_fdatasync(int fd) { return RETRY(fdatasync(fd)); }
static int os_fsync(int fd) { return RETRY(fsync(fd)); }
static int os_ftruncate(int fd, off_t len) { return RETRY(ftruncate(fd, len)); }
static int os_unlink(const char *path) { return unlink(path) < 0 ? -errno : 0; }
static int os_rename(const char *a, const char *b) { return rename(a, b) < 0 ? -errno : 0; }
static int os_mkdir(const char *path, int mode) { return mkdir(path, (mode_t)mode) < 0 ? -errno : 0; }
static off_t os_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    return st.st_size;
}

const spw_os_vtab spw_os_default = {
    .open = os_open,
    .close = os_close,
    .pwrite = os_pwrite,
    .pwritev = os_pwritev,
    .pread = os_pread,
    .fdatasync = os_fdatasync,
    .fsync = os_fsync,
    .ftruncate = os_ftruncate,
    .unlink = os_unlink,
    .rename = os_rename,
    .mkdir = os_mkdir,
    .size = os_size,
};
spw_os_vtab spw_os = {
    .open = os_open,
    .close = os_close,
    .pwrite = os_pwrite,
    .pwritev = os_pwritev,
    .pread = os_pread,
    .fdatasync = os_fdatasync,
    .fsync = os_fsync,
    .ftruncate = os_ftruncate,
    .unlink = os_unlink,
    .rename = os_rename,
    .mkdir = os_mkdir,
    .size = os_size,
};

int spw_os_pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = spw_os.pwrite(fd, p, n, off);
        if (w < 0)
            return (int)w;
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

int spw_os_pwritev_all(int fd, struct iovec *iov, int cnt, off_t off)
{
    while (cnt > 0) {
        while (cnt > 0 && iov->iov_len == 0) {
            iov++;
            cnt--;
        }
        if (cnt == 0)
            break;
        ssize_t w = spw_os.pwritev(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt, off);
        if (w < 0)
            return (int)w;
        if (w == 0)
            return -EIO;
        off += w;
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0 && w > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

ssize_t spw_os_pread_full(int fd, void *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = spw_os.pread(fd, (char *)buf + got, n - got, off + (off_t)got);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int spw_os_fsync_dir(const char *dir)
{
    int fd = spw_os.open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int r = spw_os.fsync(fd);
    spw_os.close(fd);
    return r;
}

/* fsync of the directory holding path (a new entry in it survives power
 * loss only then). */
static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        return spw_os_fsync_dir(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    return spw_os_fsync_dir(dir);
}

int spw_os_mkdirs(const char *path, int mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            int r = spw_os.mkdir(buf, mode);
            if (r < 0 && r != -EEXIST)
                return r;
            /* A directory made here is durable only once its parent's entry
             * is: fsync the parent before going deeper (a power loss must not
             * leave a child whose parent is gone). */
            if (r == 0 && (r = fsync_parent(buf)) < 0)
                return r;
            buf[i] = c;
        }
    }
    return 0;
}

static long lock_holder(int fd)
{
    char b[32];
    ssize_t n = pread(fd, b, sizeof b - 1, 0);
    if (n <= 0)
        return 0;
    b[n] = 0;
    long pid = strtol(b, NULL, 10);
    return pid > 0 ? pid : 0;
}

int spw_os_lock_dir(const char *dir, int *fd_out, long *holder)
{
    char path[PATH_MAX];
    *holder = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, SPW_LOCK_FILE) >= sizeof path)
        return -ENAMETOOLONG;
    int fd = RETRY(open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd < 0)
        return fd;
    if (RETRY(flock(fd, LOCK_EX | LOCK_NB)) < 0) {
        int e = -errno;
        if (e == -EWOULDBLOCK)
            *holder = lock_holder(fd);
        close(fd);
        return e;
    }
    /* Ours: say who holds it (read only for the error of a second server). */
    char b[32];
    int n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, b, (size_t)n, 0) != n) {
        int e = -errno;
        close(fd);
        return e ? e : -EIO;
    }
    *fd_out = fd;
    return 0;
}

int spw_os_dir_locked(const char *dir, long *holder)
{
    char path[PATH_MAX];
    *holder = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, SPW_LOCK_FILE) >= sizeof path)
        return 0;
    int fd = RETRY(open(path, O_RDONLY | O_CLOEXEC));
    if (fd < 0)
        return 0;
    int held = 0;
    if (RETRY(flock(fd, LOCK_SH | LOCK_NB)) < 0) {
        held = errno == EWOULDBLOCK;
        if (held)
            *holder = lock_holder(fd);
    }
    close(fd); /* releases the shared lock if it was taken */
    return held;
}

int spw_os_write_file_atomic(const char *dir, const char *name, const char *tmp, const void *p, size_t n,
                             int sync)
{
    char tp[PATH_MAX], fp[PATH_MAX];
    if ((size_t)snprintf(tp, sizeof tp, "%s/%s", dir, tmp) >= sizeof tp ||
        (size_t)snprintf(fp, sizeof fp, "%s/%s", dir, name) >= sizeof fp)
        return -ENAMETOOLONG;
    int fd = spw_os.open(tp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fd;
    int r = spw_os_pwrite_all(fd, p, n, 0);
    if (r == 0)
        r = sync == SPW_OS_SYNC_DATA ? spw_os.fdatasync(fd) : spw_os.fsync(fd);
    spw_os.close(fd);
    if (r == 0)
        r = spw_os.rename(tp, fp);
    if (r == 0)
        r = spw_os_fsync_dir(dir);
    return r;
}

int spw_os_read_file(const char *path, size_t max, char **out, size_t *len)
{
    int fd = spw_os.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    off_t sz = spw_os.size(fd);
    int r = sz < 0 ? (int)sz : (uint64_t)sz > max ? -EFBIG : 0;
    char *b = r ? NULL : spw_try_malloc((size_t)sz + 1);
    if (!r && !b)
        r = -ENOMEM;
    ssize_t got = 0;
    if (!r) {
        got = spw_os_pread_full(fd, b, (size_t)sz, 0);
        r = got < 0 ? (int)got : 0;
    }
    spw_os.close(fd);
    if (r) {
        spw_free(b);
        return r;
    }
    b[got] = 0;
    *out = b;
    *len = (size_t)got;
    return 0;
}

long spw_os_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        /* The hard limit may be "unlimited" where the kernel caps at
         * nr_open: fall back to that, then keep what there is. */
        if (setrlimit(RLIMIT_NOFILE, &want) < 0) {
            FILE *f = fopen("/proc/sys/fs/nr_open", "r");
            unsigned long nr = 0;
            if (f) {
                if (fscanf(f, "%lu", &nr) != 1)
                    nr = 0;
                fclose(f);
            }
            want.rlim_cur = nr && nr < rl.rlim_max ? nr : rl.rlim_cur;
            setrlimit(RLIMIT_NOFILE, &want);
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
            return -errno;
    }
    return rl.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX : (long)rl.rlim_cur;
}

uint64_t spw_os_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    return (uint64_t)rl.rlim_cur;
}

int spw_os_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -errno;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}
