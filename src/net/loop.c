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
#include "core/hostport.h"

int spw__net_parse_addr(const char *addr, spw__net_addr *sa)
{
    char host[256];
    uint16_t port;
    int v6;
    memset(sa, 0, sizeof *sa);
    if (addr[0] == ':') { /* ":PORT": any IPv4 address */
        char *end;
        long p = strtol(addr + 1, &end, 10);
        if (addr[1] == 0 || *end || p < 0 || p > 65535)
            return -EINVAL;
        host[0] = 0;
        port = (uint16_t)p;
        v6 = 0;
    } else if (spw_hostport_parse(addr, host, sizeof host, &port, 1, &v6)) {
        return -EINVAL;
    }
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa->ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return -EINVAL;
        sa->len = sizeof *s6;
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&sa->ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    sa->len = sizeof *s4;
    if (host[0] == 0 || strcmp(host, "0.0.0.0") == 0)
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0)
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
        return -EINVAL;
    return 0;
}

int spw__net_addr_port(const spw__net_addr *sa)
{
    if (sa->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&sa->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&sa->ss)->sin_port);
}

int spw__net_listen(spw__net_addr *sa, int reuseport)
{
    int fd = socket(sa->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* SO_REUSEADDR: a restart binds at once over old TIME_WAIT connections. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (sa->ss.ss_family == AF_INET6) {
        /* [::] is dual stack whatever net.ipv6.bindv6only says, and an
         * IPv4-mapped address takes that IPv4 address's clients; any other
         * IPv6 address is IPv6 only. */
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&sa->ss;
        int only = !IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr) && !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only) < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
    }
    if (bind(fd, (struct sockaddr *)&sa->ss, sa->len) < 0 || listen(fd, 1024) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Adopts the listening socket lfd (closed on failure). */
static int base_open(spw__loop_base *b, int lfd)
{
    b->post_head = b->post_tail = b->post_free = NULL;
    b->n_post_free = 0;
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

int spw__loop_bases_open(spw__loop_base *first, size_t stride, uint32_t n, spw__net_addr *sa)
{
    /* The probe: the address bound without SO_REUSEPORT, so it fails while
     * any other socket holds it — another process's group included (see
     * loop.h). Port 0 picks the port here; the loops then bind that one. */
    int probe = spw__net_listen(sa, 0);
    if (probe < 0)
        return probe;
    socklen_t sl = sizeof sa->ss;
    getsockname(probe, (struct sockaddr *)&sa->ss, &sl);
    sa->len = sl;
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
    for (int i = 0; i < 2; i++) {
        spw__post *p = i ? b->post_free : b->post_head;
        while (p) {
            spw__post *n = p->next;
            spw_free(p);
            p = n;
        }
    }
    b->post_head = b->post_tail = b->post_free = NULL;
    b->n_post_free = 0;
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
    pthread_mutex_lock(&b->post_mu);
    spw__post *p = b->post_free;
    if (p) {
        b->post_free = p->next;
        b->n_post_free--;
    } else {
        pthread_mutex_unlock(&b->post_mu);
        p = spw_xmalloc(sizeof *p);
        pthread_mutex_lock(&b->post_mu);
    }
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
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
    spw__post *head = p, *tail = NULL;
    uint32_t n_run = 0;
    while (p) {
        p->fn(p->arg);
        tail = p;
        n_run++;
        p = p->next;
    }
    if (!head)
        return;
    /* The nodes go back to the free list in one splice, past its bound
     * freed. */
    pthread_mutex_lock(&b->post_mu);
    if (b->n_post_free + n_run <= SPW__POST_FREE_MAX) {
        tail->next = b->post_free;
        b->post_free = head;
        b->n_post_free += n_run;
        head = NULL;
    }
    pthread_mutex_unlock(&b->post_mu);
    while (head) {
        spw__post *n = head->next;
        spw_free(head);
        head = n;
    }
}

void spw__net_peer_str(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    out[0] = 0;
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
    } else if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) /* an IPv4 client of a dual-stack listener: as IPv4 */
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)cap);
    }
}
