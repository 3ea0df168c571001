/*
 * The power-loss simulator: see simdisk.h for the model. Layout:
 *
 *   inodes  every file ever seen under the root: current bytes, durable
 *           bytes, one dirty flag per 4 KiB page (set by writes and size
 *           changes since the last sync of that file);
 *   cur,dur the namespaces: sorted-free arrays of (relative path, inode or
 *           directory), current and durable;
 *   ops     directory operations not yet durable, in the order they ran;
 *   fds     what each descriptor opened through the table refers to.
 *
 * Every entry point takes the one mutex. The real call runs first; the
 * shadow changes only if it succeeded.
 */
#include "sim/simdisk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/os.h"

#define DIR_INODE (-1)

/* Page states (inode.dirty). A failed fsync leaves the pages it covered
 * PAGE_FAILED: the page cache still has the new bytes but marks them clean
 * (as Linux does after a failed writeback), so no later fsync writes them
 * and a power cut keeps the old ones; and the page cache may drop them: a
 * later read through the table may find the old bytes (simdisk_fail_syncs). */
enum { PAGE_CLEAN = 0, PAGE_DIRTY = 1, PAGE_FAILED = 2 };

typedef struct inode {
    uint8_t *cur, *dur;
    size_t cur_len, dur_len, cur_cap, dur_cap;
    uint8_t *dirty; /* one flag per page */
    size_t dirty_cap;
} inode;

typedef struct entry {
    char *path; /* relative to the root, no leading slash; "" is the root */
    int ino;    /* index in inodes, or DIR_INODE */
} entry;

typedef struct ns {
    entry *v;
    size_t n, cap;
} ns;

enum { OP_CREATE, OP_MKDIR, OP_UNLINK, OP_RENAME };

typedef struct op {
    int kind;
    char *dir; /* the directory whose fsync makes it durable */
    char *from, *to;
    int ino;
} op;

typedef struct fdinfo {
    int kind; /* 0 untracked, 1 file, 2 directory */
    int ino;
    char *path;
} fdinfo;

/* The outcome of a cut, ready to be written. */
typedef struct image_file {
    char *path;
    int is_dir;
    uint8_t *data;
    size_t len;
} image_file;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *root;
static size_t root_len;
static inode *inodes;
static size_t ninodes, inodes_cap;
static ns cur, dur;
static op *ops;
static size_t nops, ops_cap;
static fdinfo *fds;
static size_t fds_cap;
static int dead;
static uint64_t shadow_bytes;
static simdisk_stats stats;
static image_file *image;
static size_t nimage;
static int (*page_filter)(void *arg, const char *path, uint64_t page);
static void *page_filter_arg;
static uint32_t sync_fail_pct; /* simdisk_fail_syncs */
static uint64_t sync_rng;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "simdisk: out of memory\n");
        abort();
    }
    return q;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- paths and namespaces ---- */

/* The path relative to the root (malloc'ed), or NULL if it is not under it.
 * Repeated slashes, "." components and a trailing slash are dropped. */
static char *rel_path(const char *path)
{
    if (!root || strncmp(path, root, root_len) != 0 || (path[root_len] != '/' && path[root_len] != '\0'))
        return NULL;
    const char *p = path + root_len;
    char *out = xrealloc(NULL, strlen(p) + 1);
    size_t n = 0;
    while (*p) {
        while (*p == '/')
            p++;
        const char *e = p;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
            p = e;
            continue;
        }
        if (len == 2 && p[0] == '.' && p[1] == '.') { /* not expected under a test root */
            free(out);
            return NULL;
        }
        if (n)
            out[n++] = '/';
        memcpy(out + n, p, len);
        n += len;
        p = e;
    }
    out[n] = '\0';
    return out;
}

/* The parent of a relative path (malloc'ed); "" for top-level entries. */
static char *parent_of(const char *rel)
{
    const char *s = strrchr(rel, '/');
    size_t n = s ? (size_t)(s - rel) : 0;
    char *out = xrealloc(NULL, n + 1);
    memcpy(out, rel, n);
    out[n] = '\0';
    return out;
}

static entry *ns_find(ns *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].path, path) == 0)
            return &s->v[i];
    return NULL;
}

static void ns_set(ns *s, const char *path, int ino)
{
    entry *e = ns_find(s, path);
    if (e) {
        e->ino = ino;
        return;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = (entry){.path = xstrdup(path), .ino = ino};
}

static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (n == 0 || path[n] == '/');
}

static void ns_del(ns *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].path, path) == 0) {
            free(s->v[i].path);
            s->v[i] = s->v[--s->n];
            return;
        }
}

/* Renames an entry and, for a directory, everything under it. */
static void ns_rename(ns *s, const char *from, const char *to, int ino_hint)
{
    entry *e = ns_find(s, from);
    int ino = e ? e->ino : ino_hint;
    if (e)
        ns_del(s, from);
    if (ino == DIR_INODE) {
        size_t fl = strlen(from);
        for (size_t i = 0; i < s->n; i++)
            if (under(s->v[i].path, from) && fl > 0) {
                char *np = xrealloc(NULL, strlen(to) + strlen(s->v[i].path + fl) + 1);
                strcpy(np, to);
                strcat(np, s->v[i].path + fl);
                free(s->v[i].path);
                s->v[i].path = np;
            }
    }
    ns_set(s, to, ino);
}

static void ns_copy(ns *dst, const ns *src)
{
    dst->n = 0;
    dst->cap = src->n;
    dst->v = xrealloc(NULL, (src->n ? src->n : 1) * sizeof *dst->v);
    for (size_t i = 0; i < src->n; i++)
        dst->v[dst->n++] = (entry){.path = xstrdup(src->v[i].path), .ino = src->v[i].ino};
}

static void ns_free(ns *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].path);
    free(s->v);
    *s = (ns){0};
}

static void op_apply(ns *s, const op *o)
{
    switch (o->kind) {
    case OP_CREATE:
        ns_set(s, o->to, o->ino);
        break;
    case OP_MKDIR:
        ns_set(s, o->to, DIR_INODE);
        break;
    case OP_UNLINK:
        ns_del(s, o->from);
        break;
    case OP_RENAME:
        ns_rename(s, o->from, o->to, o->ino);
        break;
    }
}

static void op_push(int kind, const char *from, const char *to, int ino)
{
    if (nops == ops_cap) {
        ops_cap = ops_cap ? ops_cap * 2 : 64;
        ops = xrealloc(ops, ops_cap * sizeof *ops);
    }
    op o = {.kind = kind, .from = from ? xstrdup(from) : NULL, .to = to ? xstrdup(to) : NULL, .ino = ino};
    o.dir = parent_of(to ? to : from);
    ops[nops++] = o;
    stats.dir_ops++;
}

static void op_free(op *o)
{
    free(o->dir);
    free(o->from);
    free(o->to);
}

/* fsync of directory rel: its pending operations become durable, in order. */
static void dir_commit(const char *rel)
{
    size_t k = 0;
    for (size_t i = 0; i < nops; i++) {
        if (strcmp(ops[i].dir, rel) == 0) {
            op_apply(&dur, &ops[i]);
            op_free(&ops[i]);
        } else {
            ops[k++] = ops[i];
        }
    }
    nops = k;
    stats.dir_syncs++;
}

/* ---- inodes ---- */

static void reserve(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    shadow_bytes += c - *cap;
    if (shadow_bytes > SIMDISK_MAX_BYTES) {
        fprintf(stderr, "simdisk: more than %llu bytes shadowed; make the test smaller\n",
                (unsigned long long)SIMDISK_MAX_BYTES);
        abort();
    }
    *p = xrealloc(*p, c);
    *cap = c;
}

static int inode_new(const uint8_t *data, size_t len)
{
    if (ninodes == inodes_cap) {
        inodes_cap = inodes_cap ? inodes_cap * 2 : 64;
        inodes = xrealloc(inodes, inodes_cap * sizeof *inodes);
    }
    inode *in = &inodes[ninodes];
    *in = (inode){0};
    reserve(&in->cur, &in->cur_cap, len);
    reserve(&in->dur, &in->dur_cap, len);
    if (len) {
        memcpy(in->cur, data, len);
        memcpy(in->dur, data, len);
    }
    in->cur_len = in->dur_len = len;
    return (int)ninodes++;
}

static void mark_dirty(inode *in, size_t from, size_t to)
{
    if (from >= to)
        return;
    size_t last = (to - 1) / SIMDISK_PAGE;
    if (last >= in->dirty_cap) {
        size_t old = in->dirty_cap;
        reserve(&in->dirty, &in->dirty_cap, last + 1);
        memset(in->dirty + old, 0, in->dirty_cap - old);
    }
    for (size_t pg = from / SIMDISK_PAGE; pg <= last; pg++)
        in->dirty[pg] = PAGE_DIRTY;
}

/* Makes the current length len (zeros when growing), marking the change. */
static void inode_resize(inode *in, size_t len)
{
    if (len > in->cur_len) {
        reserve(&in->cur, &in->cur_cap, len);
        memset(in->cur + in->cur_len, 0, len - in->cur_len);
        mark_dirty(in, in->cur_len, len);
    } else {
        mark_dirty(in, len, in->cur_len);
    }
    in->cur_len = len;
}

static void inode_write(inode *in, const uint8_t *b, size_t n, size_t off)
{
    if (off + n > in->cur_len)
        inode_resize(in, off + n);
    memcpy(in->cur + off, b, n);
    mark_dirty(in, off, off + n);
}

/* fdatasync/fsync: the current bytes and size are durable. */
static void inode_sync(inode *in)
{
    reserve(&in->dur, &in->dur_cap, in->cur_len);
    if (in->cur_len > in->dur_len) /* what no dirty page covers: never written back (PAGE_FAILED) */
        memset(in->dur + in->dur_len, 0, in->cur_len - in->dur_len);
    size_t pages = in->dirty_cap;
    for (size_t pg = 0; pg < pages; pg++) {
        if (in->dirty[pg] != PAGE_DIRTY)
            continue;
        size_t a = pg * SIMDISK_PAGE, b = a + SIMDISK_PAGE;
        if (b > in->cur_len)
            b = in->cur_len;
        if (a < b)
            memcpy(in->dur + a, in->cur + a, b - a);
        in->dirty[pg] = 0;
    }
    in->dur_len = in->cur_len;
    stats.file_syncs++;
}

static fdinfo *fd_slot(int fd)
{
    if ((size_t)fd >= fds_cap) {
        size_t c = fds_cap ? fds_cap : 256;
        while (c <= (size_t)fd)
            c *= 2;
        fds = xrealloc(fds, c * sizeof *fds);
        memset(fds + fds_cap, 0, (c - fds_cap) * sizeof *fds);
        fds_cap = c;
    }
    return &fds[fd];
}

static fdinfo *fd_get(int fd) { return fd >= 0 && (size_t)fd < fds_cap && fds[fd].kind ? &fds[fd] : NULL; }

/* Reads a whole real file (for adoption). */
static uint8_t *slurp(int fd, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *b = xrealloc(NULL, n);
    while (got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    *len = got;
    return b;
}

static int adopt_file(const char *abs, const char *rel)
{
    int fd = open(abs, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    uint8_t *b = slurp(fd, &len);
    close(fd);
    int ino = inode_new(b, len);
    free(b);
    ns_set(&cur, rel, ino);
    ns_set(&dur, rel, ino);
    return ino;
}

static int adopt_walk(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    char *rel = rel_path(p);
    if (!rel)
        return 0;
    if (flag == FTW_D) {
        ns_set(&cur, rel, DIR_INODE);
        ns_set(&dur, rel, DIR_INODE);
    } else if (flag == FTW_F && S_ISREG(sb->st_mode)) {
        adopt_file(p, rel);
    }
    free(rel);
    return 0;
}

/* ---- the table ---- */

static int sim_open(const char *path, int flags, int mode)
{
    pthread_mutex_lock(&mu);
    if (dead) {
        pthread_mutex_unlock(&mu);
        return -EIO;
    }
    char *rel = rel_path(path);
    struct stat st0;
    int existed = rel ? stat(path, &st0) == 0 : 1;
    int fd = spw_os_default.open(path, flags, mode);
    if (fd >= 0 && rel) {
        fdinfo *f = fd_slot(fd);
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (!ns_find(&cur, rel)) { /* made outside the table: durable */
                ns_set(&cur, rel, DIR_INODE);
                ns_set(&dur, rel, DIR_INODE);
            }
            *f = (fdinfo){.kind = 2, .ino = DIR_INODE, .path = xstrdup(rel)};
        } else {
            entry *e = ns_find(&cur, rel);
            int ino;
            if (e && e->ino != DIR_INODE) {
                ino = e->ino;
            } else if (!existed) {
                ino = inode_new(NULL, 0);
                ns_set(&cur, rel, ino);
                op_push(OP_CREATE, NULL, rel, ino);
            } else {
                ino = adopt_file(path, rel);
            }
            if (ino >= 0) {
                if (flags & O_TRUNC)
                    inode_resize(&inodes[ino], 0);
                *f = (fdinfo){.kind = 1, .ino = ino, .path = xstrdup(rel)};
            }
        }
    }
    free(rel);
    pthread_mutex_unlock(&mu);
    return fd;
}

static int sim_close(int fd)
{
    pthread_mutex_lock(&mu);
    fdinfo *f = fd_get(fd);
    if (f) {
        free(f->path);
        *f = (fdinfo){0};
    }
    int r = spw_os_default.close(fd);
    pthread_mutex_unlock(&mu);
    return r;
}

static ssize_t sim_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    pthread_mutex_lock(&mu);
    ssize_t w = -EIO;
    if (!dead) {
        w = spw_os_default.pwrite(fd, buf, n, off);
        fdinfo *f = fd_get(fd);
        if (w > 0 && f && f->kind == 1) {
            inode_write(&inodes[f->ino], buf, (size_t)w, (size_t)off);
            stats.writes++;
        }
    }
    pthread_mutex_unlock(&mu);
    return w;
}

static ssize_t sim_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    pthread_mutex_lock(&mu);
    ssize_t w = -EIO;
    if (!dead) {
        w = spw_os_default.pwritev(fd, iov, cnt, off);
        fdinfo *f = fd_get(fd);
        if (w > 0 && f && f->kind == 1) {
            size_t left = (size_t)w, at = (size_t)off;
            for (int i = 0; i < cnt && left > 0; i++) {
                size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
                inode_write(&inodes[f->ino], iov[i].iov_base, k, at);
                at += k;
                left -= k;
            }
            stats.writes++;
        }
    }
    pthread_mutex_unlock(&mu);
    return w;
}

/* The page cache drops failed pages: each one in [off, off + n) goes, one
 * time in four, and reads give the bytes on disk again (the durable ones,
 * zeros past the durable size). REQUIRES: mu held. */
static void evict_failed(int fd, inode *in, size_t off, size_t n)
{
    if (!in->dirty_cap || n == 0)
        return;
    size_t last = (off + n - 1) / SIMDISK_PAGE;
    for (size_t pg = off / SIMDISK_PAGE; pg <= last && pg < in->dirty_cap; pg++) {
        if (in->dirty[pg] != PAGE_FAILED || mix(sync_rng++) % 4 != 0)
            continue;
        size_t a = pg * SIMDISK_PAGE, e = a + SIMDISK_PAGE;
        if (e > in->cur_len)
            e = in->cur_len;
        for (size_t i = a; i < e; i++)
            in->cur[i] = i < in->dur_len ? in->dur[i] : 0;
        if (a < e && spw_os_default.pwrite(fd, in->cur + a, e - a, (off_t)a) != (ssize_t)(e - a)) {
            fprintf(stderr, "simdisk: could not write an evicted page back\n");
            abort();
        }
        in->dirty[pg] = PAGE_CLEAN;
        stats.evicted_pages++;
    }
}

static ssize_t sim_pread(int fd, void *buf, size_t n, off_t off)
{
    pthread_mutex_lock(&mu);
    fdinfo *f = dead ? NULL : fd_get(fd);
    if (f && f->kind == 1)
        evict_failed(fd, &inodes[f->ino], (size_t)off, n);
    ssize_t r = dead ? -EIO : spw_os_default.pread(fd, buf, n, off);
    pthread_mutex_unlock(&mu);
    return r;
}

static int sim_sync(int fd)
{
    pthread_mutex_lock(&mu);
    int r = 0;
    if (dead) {
        r = -EIO;
    } else {
        fdinfo *f = fd_get(fd);
        if (f && f->kind == 1 && sync_fail_pct && mix(sync_rng++) % 100 < sync_fail_pct) {
            inode *in = &inodes[f->ino];
            for (size_t pg = 0; pg < in->dirty_cap; pg++)
                if (in->dirty[pg] == PAGE_DIRTY)
                    in->dirty[pg] = PAGE_FAILED;
            stats.failed_syncs++;
            r = -EIO;
        } else if (f && f->kind == 1)
            inode_sync(&inodes[f->ino]);
        else if (f && f->kind == 2)
            dir_commit(f->path);
        else
            r = spw_os_default.fsync(fd); /* not ours: the real thing */
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static int sim_ftruncate(int fd, off_t len)
{
    pthread_mutex_lock(&mu);
    int r = -EIO;
    if (!dead) {
        r = spw_os_default.ftruncate(fd, len);
        fdinfo *f = fd_get(fd);
        if (r == 0 && f && f->kind == 1) {
            inode_resize(&inodes[f->ino], (size_t)len);
            stats.writes++;
        }
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static int sim_unlink(const char *path)
{
    pthread_mutex_lock(&mu);
    int r = -EIO;
    if (!dead) {
        r = spw_os_default.unlink(path);
        char *rel = rel_path(path);
        if (r == 0 && rel) {
            entry *e = ns_find(&cur, rel);
            op_push(OP_UNLINK, rel, NULL, e ? e->ino : DIR_INODE);
            ns_del(&cur, rel);
        }
        free(rel);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static int sim_rename(const char *from, const char *to)
{
    pthread_mutex_lock(&mu);
    int r = -EIO;
    if (!dead) {
        char *rf = rel_path(from), *rt = rel_path(to);
        entry *e = rf ? ns_find(&cur, rf) : NULL;
        int ino = e ? e->ino : -2;
        r = spw_os_default.rename(from, to);
        if (r == 0 && rf && rt) {
            if (ino == -2) { /* made outside the table: adopt it under its new name */
                struct stat st;
                ino = stat(to, &st) == 0 && S_ISDIR(st.st_mode) ? DIR_INODE : adopt_file(to, rf);
                if (ino == DIR_INODE) {
                    ns_set(&cur, rf, DIR_INODE);
                    ns_set(&dur, rf, DIR_INODE);
                }
            }
            ns_rename(&cur, rf, rt, ino);
            op_push(OP_RENAME, rf, rt, ino);
        } else if (r == 0 && rf) {
            ns_del(&cur, rf); /* moved out of the root */
            op_push(OP_UNLINK, rf, NULL, ino);
        } else if (r == 0 && rt) {
            int ni = adopt_file(to, rt); /* moved in: durable as it is, the entry is not */
            ns_del(&dur, rt);
            op_push(OP_CREATE, NULL, rt, ni);
        }
        free(rf);
        free(rt);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static int sim_mkdir(const char *path, int mode)
{
    pthread_mutex_lock(&mu);
    int r = -EIO;
    if (!dead) {
        r = spw_os_default.mkdir(path, mode);
        char *rel = rel_path(path);
        if (r == 0 && rel) {
            ns_set(&cur, rel, DIR_INODE);
            op_push(OP_MKDIR, NULL, rel, DIR_INODE);
        }
        free(rel);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static off_t sim_size(int fd)
{
    pthread_mutex_lock(&mu);
    off_t r = dead ? -EIO : spw_os_default.size(fd);
    pthread_mutex_unlock(&mu);
    return r;
}

static const spw_os_vtab sim_vtab = {
    .open = sim_open,
    .close = sim_close,
    .pwrite = sim_pwrite,
    .pwritev = sim_pwritev,
    .pread = sim_pread,
    .fdatasync = sim_sync,
    .fsync = sim_sync,
    .ftruncate = sim_ftruncate,
    .unlink = sim_unlink,
    .rename = sim_rename,
    .mkdir = sim_mkdir,
    .size = sim_size,
};

/* ---- the cut ---- */

static void image_free(void)
{
    for (size_t i = 0; i < nimage; i++) {
        free(image[i].path);
        free(image[i].data);
    }
    free(image);
    image = NULL;
    nimage = 0;
}

/* The bytes a file holds after the cut. */
static void file_outcome(const inode *in, const char *path, uint64_t *rng, uint32_t keep_pct, image_file *out)
{
    size_t lo = in->dur_len < in->cur_len ? in->dur_len : in->cur_len;
    size_t hi = in->dur_len < in->cur_len ? in->cur_len : in->dur_len;
    size_t len;
    switch (page_filter ? 1 : mix((*rng)++) % 4) {
    case 0:
        len = in->dur_len;
        break;
    case 1:
        len = in->cur_len;
        break;
    default:
        len = lo + (hi > lo ? (size_t)(mix((*rng)++) % (hi - lo + 1)) : 0);
        break;
    }
    if (page_filter) { /* the durable size, grown to cover the pages kept */
        len = in->dur_len;
        for (size_t pg = 0; pg < in->dirty_cap; pg++)
            if (in->dirty[pg] == PAGE_DIRTY && page_filter(page_filter_arg, path, pg)) {
                size_t e = (pg + 1) * SIMDISK_PAGE < in->cur_len ? (pg + 1) * SIMDISK_PAGE : in->cur_len;
                if (e > len)
                    len = e;
            }
    }
    if (len != in->dur_len)
        stats.files_resized++;
    uint8_t *b = xrealloc(NULL, len);
    memset(b, 0, len);
    if (in->dur_len && len)
        memcpy(b, in->dur, in->dur_len < len ? in->dur_len : len);
    for (size_t pg = 0; pg < in->dirty_cap; pg++) {
        if (in->dirty[pg] != PAGE_DIRTY)
            continue;
        stats.dirty_pages++;
        if (page_filter ? !page_filter(page_filter_arg, path, pg) : mix((*rng)++) % 100 >= keep_pct)
            continue;
        stats.kept_pages++;
        int torn = !page_filter && mix((*rng)++) % 4 == 0;
        if (torn)
            stats.torn_pages++;
        for (size_t sec = 0; sec < SIMDISK_PAGE / SIMDISK_SECTOR; sec++) {
            if (torn && mix((*rng)++) % 2)
                continue;
            size_t a = pg * SIMDISK_PAGE + sec * SIMDISK_SECTOR, e = a + SIMDISK_SECTOR;
            /* New bytes only where the file now has them; a truncate that is
             * lost leaves the old bytes. */
            if (e > in->cur_len)
                e = in->cur_len;
            if (e > len)
                e = len;
            if (a < e)
                memcpy(b + a, in->cur + a, e - a);
        }
    }
    out->data = b;
    out->len = len;
}

void simdisk_power_cut(uint64_t seed)
{
    pthread_mutex_lock(&mu);
    dead = 1;
    image_free();
    uint64_t rng = mix(seed);
    static const uint32_t keep[] = {0, 25, 50, 75, 100};
    uint32_t keep_pct = keep[mix(rng++) % 5];
    stats.page_keep_pct = keep_pct;
    ns out;
    ns_copy(&out, &dur);
    size_t k = page_filter ? 0 : nops ? (size_t)(mix(rng++) % (nops + 1)) : 0;
    for (size_t i = 0; i < k; i++)
        op_apply(&out, &ops[i]);
    stats.pending_ops = (uint32_t)nops;
    stats.kept_ops = (uint32_t)k;
    image = xrealloc(NULL, (out.n ? out.n : 1) * sizeof *image);
    /* Draw each inode's outcome once (a file may have two names). */
    image_file *per = xrealloc(NULL, (ninodes ? ninodes : 1) * sizeof *per);
    memset(per, 0, (ninodes ? ninodes : 1) * sizeof *per);
    for (size_t i = 0; i < out.n; i++) {
        image_file f = {.path = xstrdup(out.v[i].path), .is_dir = out.v[i].ino == DIR_INODE};
        if (!f.is_dir) {
            image_file *o = &per[out.v[i].ino];
            if (!o->data)
                file_outcome(&inodes[out.v[i].ino], out.v[i].path, &rng, keep_pct, o);
            f.len = o->len;
            f.data = xrealloc(NULL, o->len);
            memcpy(f.data, o->data, o->len);
        }
        image[nimage++] = f;
    }
    for (size_t i = 0; i < ninodes; i++)
        free(per[i].data);
    free(per);
    ns_free(&out);
    pthread_mutex_unlock(&mu);
}

static int cmp_image(const void *a, const void *b)
{
    return strcmp(((const image_file *)a)->path, ((const image_file *)b)->path);
}

static int rm_walk(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    if (ftw->level == 0)
        return 0; /* keep the root itself */
    return remove(p);
}

int simdisk_materialise(const char *dir)
{
    pthread_mutex_lock(&mu);
    int r = 0;
    if (!dead || !root) {
        pthread_mutex_unlock(&mu);
        return -EINVAL;
    }
    const char *base = dir ? dir : root;
    if (!dir && nftw(root, rm_walk, 16, FTW_DEPTH | FTW_PHYS) != 0)
        r = -errno;
    /* Parents sort before their children; an entry whose parent did not
     * survive is gone with it. */
    qsort(image, nimage, sizeof *image, cmp_image);
    uint8_t *made = xrealloc(NULL, nimage ? nimage : 1);
    memset(made, 0, nimage ? nimage : 1);
    for (size_t i = 0; i < nimage && r == 0; i++) {
        image_file *f = &image[i];
        if (f->path[0] == '\0') {
            made[i] = 1; /* the root */
            continue;
        }
        char *par = parent_of(f->path);
        int par_ok = 0;
        for (size_t j = 0; j < i && !par_ok; j++)
            par_ok = made[j] && image[j].is_dir && strcmp(image[j].path, par) == 0;
        free(par);
        if (!par_ok)
            continue;
        made[i] = 1;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", base, f->path);
        if (f->is_dir) {
            if (mkdir(path, 0755) < 0 && errno != EEXIST)
                r = -errno;
            continue;
        }
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            r = -errno;
            break;
        }
        size_t done = 0;
        while (done < f->len && r == 0) {
            ssize_t w = write(fd, f->data + done, f->len - done);
            if (w <= 0)
                r = w < 0 ? -errno : -EIO;
            else
                done += (size_t)w;
        }
        close(fd);
    }
    free(made);
    pthread_mutex_unlock(&mu);
    return r;
}

int simdisk_start(const char *dir)
{
    pthread_mutex_lock(&mu);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    root = xrealloc(NULL, n + 1);
    memcpy(root, dir, n);
    root[n] = '\0';
    root_len = n;
    dead = 0;
    memset(&stats, 0, sizeof stats);
    int r = nftw(root, adopt_walk, 16, FTW_PHYS) == 0 ? 0 : -errno;
    ns_set(&cur, "", DIR_INODE);
    ns_set(&dur, "", DIR_INODE);
    spw_os = sim_vtab;
    pthread_mutex_unlock(&mu);
    return r;
}

void simdisk_stop(void)
{
    pthread_mutex_lock(&mu);
    spw_os = spw_os_default;
    for (size_t i = 0; i < ninodes; i++) {
        free(inodes[i].cur);
        free(inodes[i].dur);
        free(inodes[i].dirty);
    }
    free(inodes);
    inodes = NULL;
    ninodes = inodes_cap = 0;
    ns_free(&cur);
    ns_free(&dur);
    for (size_t i = 0; i < nops; i++)
        op_free(&ops[i]);
    free(ops);
    ops = NULL;
    nops = ops_cap = 0;
    for (size_t i = 0; i < fds_cap; i++)
        free(fds[i].path);
    free(fds);
    fds = NULL;
    fds_cap = 0;
    image_free();
    free(root);
    root = NULL;
    root_len = 0;
    shadow_bytes = 0;
    page_filter = NULL;
    page_filter_arg = NULL;
    sync_fail_pct = 0;
    dead = 0;
    pthread_mutex_unlock(&mu);
}

void simdisk_set_page_filter(int (*fn)(void *arg, const char *path, uint64_t page), void *arg)
{
    pthread_mutex_lock(&mu);
    page_filter = fn;
    page_filter_arg = arg;
    pthread_mutex_unlock(&mu);
}

void simdisk_fail_syncs(uint32_t pct, uint64_t seed)
{
    pthread_mutex_lock(&mu);
    sync_fail_pct = pct > 100 ? 100 : pct;
    sync_rng = mix(seed);
    pthread_mutex_unlock(&mu);
}

void simdisk_stats_get(simdisk_stats *out)
{
    pthread_mutex_lock(&mu);
    *out = stats;
    pthread_mutex_unlock(&mu);
}
