/*
 * The shared part of an I/O loop (net/loop.h): listening socket, epoll,
 * eventfd and the post list.
 */
#include "net/loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"

int spw__net_parse_addr(const char *addr, struct sockaddr_in *sa)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return -EINVAL;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -EINVAL;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (host[0] == 0 || strcmp(host, "0.0.0.0") == 0)
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0)
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -EINVAL;
    return 0;
}

int spw__net_listen(struct sockaddr_in *sa, int reuseport)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* SO_REUSEADDR: a restart binds at once over old TIME_WAIT connections. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)sa, sizeof *sa) < 0 || listen(fd, 1024) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Adopts the listening socket lfd (closed on failure). */
static int base_open(spw__loop_base *b, int lfd)
{
    b->post_head = b->post_tail = NULL;
    b->lfd = lfd;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int r = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &b->lfd};
    if (b->epfd < 0 || b->efd < 0 || epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->lfd, &ev) < 0)
        r = -errno;
    ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &b->efd};
    if (r == 0 && epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->efd, &ev) < 0)
        r = -errno;
    if (r < 0) {
        close(b->lfd);
        if (b->epfd >= 0)
            close(b->epfd);
        if (b->efd >= 0)
            close(b->efd);
        b->lfd = b->epfd = b->efd = -1;
        return r;
    }
    pthread_mutex_init(&b->post_mu, NULL);
    return 0;
}

int spw__loop_bases_open(spw__loop_base *first, size_t stride, uint32_t n, struct sockaddr_in *sa)
{
    /* The probe: the address bound without SO_REUSEPORT, so it fails while
     * any other socket holds it — another process's group included (see
     * loop.h). Port 0 picks the port here; the loops then bind that one. */
    int probe = spw__net_listen(sa, 0);
    if (probe < 0)
        return probe;
    socklen_t sl = sizeof *sa;
    getsockname(probe, (struct sockaddr *)sa, &sl);
    close(probe);
    for (uint32_t i = 0; i < n; i++) {
        int fd = spw__net_listen(sa, 1);
        int r = fd < 0 ? fd : base_open((spw__loop_base *)((char *)first + i * stride), fd);
        if (r < 0) {
            while (i--)
                spw__loop_base_close((spw__loop_base *)((char *)first + i * stride));
            return r;
        }
    }
    return 0;
}

void spw__loop_base_stop_listening(spw__loop_base *b)
{
    if (b->lfd < 0)
        return;
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, b->lfd, NULL);
    close(b->lfd);
    b->lfd = -1;
}

void spw__loop_base_close(spw__loop_base *b)
{
    if (b->lfd >= 0)
        close(b->lfd);
    close(b->epfd);
    close(b->efd);
    spw__post *p = b->post_head;
    while (p) {
        spw__post *n = p->next;
        spw_free(p);
        p = n;
    }
    b->post_head = b->post_tail = NULL;
    b->lfd = b->epfd = b->efd = -1;
    pthread_mutex_destroy(&b->post_mu);
}

void spw__loop_wake(spw__loop_base *b)
{
    uint64_t one = 1;
    if (write(b->efd, &one, sizeof one) < 0) {
        /* EAGAIN only if the counter is near 2^64: it is read on every wake */
    }
}

void spw__loop_post(spw__loop_base *b, void (*fn)(void *), void *arg)
{
    spw__post *p = spw_xmalloc(sizeof *p);
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&b->post_mu);
    int was_empty = b->post_head == NULL;
    if (b->post_tail)
        b->post_tail->next = p;
    else
        b->post_head = p;
    b->post_tail = p;
    pthread_mutex_unlock(&b->post_mu);
    /* One wake per empty → non-empty transition: the loop takes the whole
     * list at once, so one eventfd write covers every post behind it. */
    if (was_empty)
        spw__loop_wake(b);
}

void spw__loop_run_posts(spw__loop_base *b)
{
    uint64_t v;
    if (read(b->efd, &v, sizeof v) < 0 && errno != EAGAIN)
        return;
    pthread_mutex_lock(&b->post_mu);
    spw__post *p = b->post_head;
    b->post_head = b->post_tail = NULL;
    pthread_mutex_unlock(&b->post_mu);
    while (p) {
        spw__post *n = p->next;
        p->fn(p->arg);
        spw_free(p);
        p = n;
    }
}

void spw__net_peer_str(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    out[0] = 0;
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
}
