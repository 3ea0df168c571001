/*
 * The segment fd cache (fdcache.h): an LRU list of sealed segments whose
 * files are open and that no reader pins, most recently unpinned first.
 * A pin takes a segment off the list (opening its files if the cache had
 * closed them); the last unpin puts it back at the head; whenever more
 * than `capacity` sealed segments are open, segments are closed from the
 * tail. Pinned segments are never closed, so the cache can be over its
 * capacity by the number of segments being read at that moment.
 */
#include "log/fdcache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/msg.h"
#include "log/segment.h"
#include "os/os.h"

struct spw_fdcache {
    pthread_mutex_t mu; /* a leaf */
    uint32_t capacity;
    uint32_t open, pinned;
    spw_segment *head, *tail; /* the LRU: head most recent */
    uint64_t hits, misses, evictions, open_errors;
};

spw_fdcache *spw_fdcache_create(uint32_t capacity)
{
    spw_fdcache *c = spw_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->capacity = capacity ? capacity : 1;
    return c;
}

void spw_fdcache_destroy(spw_fdcache *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    spw_free(c);
}

void spw_fdcache_stats_get(spw_fdcache *c, spw_fdcache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = (spw_fdcache_stats){.capacity = c->capacity,
                               .open = c->open,
                               .pinned = c->pinned,
                               .hits = c->hits,
                               .misses = c->misses,
                               .evictions = c->evictions,
                               .open_errors = c->open_errors};
    pthread_mutex_unlock(&c->mu);
}

static void lru_remove(spw_fdcache *c, spw_segment *s)
{
    if (s->lru_prev)
        s->lru_prev->lru_next = s->lru_next;
    else
        c->head = s->lru_next;
    if (s->lru_next)
        s->lru_next->lru_prev = s->lru_prev;
    else
        c->tail = s->lru_prev;
    s->lru_prev = s->lru_next = NULL;
}

static void lru_push(spw_fdcache *c, spw_segment *s)
{
    s->lru_prev = NULL;
    s->lru_next = c->head;
    if (c->head)
        c->head->lru_prev = s;
    c->head = s;
    if (!c->tail)
        c->tail = s;
}

static int in_lru(spw_fdcache *c, spw_segment *s) { return s->lru_prev || s->lru_next || c->head == s; }

static void close_fds(spw_segment *s)
{
    if (s->fd >= 0)
        spw_os.close(s->fd);
    if (s->idx_fd >= 0)
        spw_os.close(s->idx_fd);
    s->fd = s->idx_fd = -1;
}

/* Closes unpinned segments from the tail while over capacity. REQUIRES: c->mu. */
static void trim(spw_fdcache *c)
{
    while (c->open > c->capacity && c->tail) {
        spw_segment *v = c->tail;
        lru_remove(c, v);
        close_fds(v);
        c->open--;
        c->evictions++;
    }
}

void spw_seg_use_cache(spw_segment *s, spw_fdcache *c, const char *dir)
{
    s->fdc = c;
    s->dir = dir;
    s->sealed = 0;
}

void spw_seg_seal(spw_segment *s)
{
    spw_fdcache *c = s->fdc;
    if (!c || s->sealed)
        return;
    pthread_mutex_lock(&c->mu);
    s->sealed = 1;
    c->open++;
    if (s->pins)
        c->pinned++;
    else
        lru_push(c, s);
    trim(c);
    pthread_mutex_unlock(&c->mu);
}

/* Opens a sealed segment's files again, read-only. REQUIRES: c->mu. */
static int reopen(spw_segment *s)
{
    if (s->retired)
        return SPW_EDELETED;
    char path[4096];
    spw_seg_path(path, sizeof path, s->dir, s->base_offset, ".log");
    int fd = spw_os.open(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    spw_seg_path(path, sizeof path, s->dir, s->base_offset, ".idx");
    int ifd = spw_os.open(path, O_RDONLY, 0);
    if (ifd < 0) {
        spw_os.close(fd);
        return ifd;
    }
    s->fd = fd;
    s->idx_fd = ifd;
    return 0;
}

int spw_seg_pin(spw_segment *s)
{
    spw_fdcache *c = s->fdc;
    if (!c)
        return 0;
    int r = 0;
    pthread_mutex_lock(&c->mu);
    if (!s->sealed) {
        s->pins++; /* active: always open; the count tells seal */
    } else if (s->fd >= 0) {
        if (s->pins++ == 0) {
            lru_remove(c, s);
            c->pinned++;
        }
        c->hits++;
    } else if ((r = reopen(s)) == 0) {
        s->pins = 1;
        c->open++;
        c->pinned++;
        c->misses++;
        trim(c);
    } else {
        c->open_errors++;
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

void spw_seg_unpin(spw_segment *s)
{
    spw_fdcache *c = s->fdc;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    if (--s->pins == 0 && s->sealed) {
        c->pinned--;
        lru_push(c, s);
        trim(c);
    }
    pthread_mutex_unlock(&c->mu);
}

void spw__fdcache_forget(spw_segment *s)
{
    spw_fdcache *c = s->fdc;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    if (s->sealed) {
        if (in_lru(c, s))
            lru_remove(c, s);
        else if (s->pins)
            c->pinned--;
        if (s->fd >= 0)
            c->open--;
    }
    s->fdc = NULL;
    pthread_mutex_unlock(&c->mu);
}

void spw__fdcache_retire(spw_segment *s)
{
    spw_fdcache *c = s->fdc;
    if (!c) {
        s->retired = 1; /* no cache: nothing reopens it */
        return;
    }
    pthread_mutex_lock(&c->mu);
    s->retired = 1;
    pthread_mutex_unlock(&c->mu);
}
