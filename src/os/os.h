/*
 * The only place the log calls the operating system for file I/O. Every call
 * goes through the table spw_os, which tests replace entry by entry to inject
 * faults (EIO, ENOSPC, short writes, slow fsync), as SQLite's os_unix.c does.
 * Each wrapper returns the syscall's result, or -errno on failure (never -1),
 * and retries EINTR. Short writes are completed by spw_os_pwrite_all.
 */
#ifndef SPW_OS_H
#define SPW_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct spw_os_vtab {
    int (*open)(const char *path, int flags, int mode);
    int (*close)(int fd);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int cnt, off_t off);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*ftruncate)(int fd, off_t len);
    int (*unlink)(const char *path);
    int (*rename)(const char *from, const char *to);
    int (*mkdir)(const char *path, int mode);
    off_t (*size)(int fd); /* fstat st_size, or -errno */
} spw_os_vtab;

extern spw_os_vtab spw_os;
extern const spw_os_vtab spw_os_default;

/* Writes all n bytes at off (looping over short writes). Returns 0 or -errno. */
int spw_os_pwrite_all(int fd, const void *buf, size_t n, off_t off);
/* Writes every byte of iov[0..cnt) at off (looping over short writes and
 * IOV_MAX). iov is modified. Returns 0 or -errno. */
int spw_os_pwritev_all(int fd, struct iovec *iov, int cnt, off_t off);
/* Reads up to n bytes at off, looping until n or end of file. Returns bytes read or -errno. */
ssize_t spw_os_pread_full(int fd, void *buf, size_t n, off_t off);
/* fsync of a directory, so a created or renamed entry survives power loss. */
int spw_os_fsync_dir(const char *dir);
/* mkdir -p; 0 if it exists. Each directory it makes is made durable: its
 * parent is fsynced (spw_os_fsync_dir) right after. */
int spw_os_mkdirs(const char *path, int mode);

/*
 * Small files (definitions, recovery points, group offsets, sink progress):
 * the one way the server writes and reads a whole file, through spw_os so
 * injected faults reach every such file.
 *
 * spw_os_write_file_atomic writes DIR/NAME so that after a crash it holds
 * either its old or its new bytes: n bytes into DIR/TMP (created or
 * truncated), that file synced (fdatasync with SPW_OS_SYNC_DATA, else
 * fsync), closed, renamed over DIR/NAME, and DIR fsynced. TMP is the temp
 * file's name within DIR; recovery code knows these names, so each caller
 * names its own. Returns 0 or -errno; on failure DIR/NAME is unchanged
 * (DIR/TMP may remain, and the next write truncates it).
 */
#define SPW_OS_SYNC_FULL 0
#define SPW_OS_SYNC_DATA 1
int spw_os_write_file_atomic(const char *dir, const char *name, const char *tmp, const void *p, size_t n,
                             int sync);
/*
 * Reads the whole file at path, which may hold at most max bytes, into a
 * new buffer (malloc'ed through core/alloc.h's spw_try_malloc: free with
 * spw_free) with a NUL after its *len bytes. Returns 0; -ENOENT; -EFBIG
 * when the file is larger than max (nothing read); -ENOMEM; or -errno.
 */
int spw_os_read_file(const char *path, size_t max, char **out, size_t *len);

/*
 * The data directory's lock (docs/operations.md "One server per data
 * directory"): an exclusive flock(2) on DIR/spillway.lock, which holds the
 * PID of its holder as text. The lock belongs to the open file: it is held
 * while *fd stays open (for the process's life: never closed, released by
 * the kernel at exit, kill -9 included, so a stale file never blocks).
 * Not through spw_os: it is no data I/O and no fault applies to it.
 * Returns 0; -EWOULDBLOCK when a live process holds it (*holder its PID
 * from the file, 0 if unknown); or another -errno.
 */
#define SPW_LOCK_FILE "spillway.lock"
int spw_os_lock_dir(const char *dir, int *fd, long *holder);
/* 1 if a live process holds DIR's lock (*holder its PID, 0 if unknown),
 * else 0; takes nothing. */
int spw_os_dir_locked(const char *dir, long *holder);

/*
 * File descriptors (docs/operations.md, "File descriptors").
 * spw_os_raise_fd_limit sets the soft RLIMIT_NOFILE to the hard one (the
 * most an unprivileged process may have) and returns the soft limit now
 * in force (or -errno). spw_os_fd_limit: the soft limit now. Not through
 * spw_os: no data I/O.
 */
long spw_os_raise_fd_limit(void);
uint64_t spw_os_fd_limit(void);
/* Open fds of the process (entries of /proc/self/fd), or -errno. */
int spw_os_count_fds(void);

#endif
