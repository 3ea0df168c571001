/*
 * What the HTTP and the binary-protocol listeners share about an I/O loop:
 * the listening socket, its epoll instance, and the one cross-thread path into it —
 * a mutex-protected list of posted functions and an eventfd that wakes the
 * loop when the list goes from empty to non-empty. Everything else about a
 * connection lives on the loop's thread. The connection core (net/conn.h)
 * embeds a spw__loop_base in its loop struct.
 *
 * epoll registration: the listening socket and the eventfd are added with
 * data.ptr = &b->lfd and &b->efd, so a loop tells them from its connections
 * by address.
 *
 * Each loop has its own SO_REUSEPORT listening socket on the address, so
 * the kernel hashes connections evenly over the loops (with one shared
 * socket woken with EPOLLEXCLUSIVE, whichever loop happens to be idle takes
 * the next connection, so a burst of connects can land on one loop).
 * Another process must not join that group and take
 * half the connections: before binding them, spw__loop_bases_open binds the
 * address once WITHOUT SO_REUSEPORT — which fails (EADDRINUSE) while any
 * socket holds it — and closes that probe. A second server started later
 * is refused the same way by its own probe. (Two started in the same
 * instant could both pass: the data directory's lock still keeps them
 * off each other's files.)
 */
#ifndef SPW_LOOP_H
#define SPW_LOOP_H

#include <netinet/in.h>
#include <pthread.h>

#include <sys/socket.h>

/* A listening address: IPv4 or IPv6. */
typedef struct spw__net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} spw__net_addr;

/* "host:port" (an IPv4 address, "localhost", "" or 0.0.0.0 for any) or
 * "[ipv6]:port" ("[::]" for any address, IPv6 and IPv4 both: dual stack)
 * → sa (core/hostport.h). 0 or -EINVAL. */
int spw__net_parse_addr(const char *addr, spw__net_addr *sa);
/* The port of sa (host order). */
int spw__net_addr_port(const spw__net_addr *sa);
/* A non-blocking listening socket with SO_REUSEADDR (and SO_REUSEPORT if
 * reuseport), or -errno. An IPv6 socket takes IPv4 connections only when
 * bound to "::" (dual stack) or to an IPv4-mapped address (IPV6_V6ONLY off
 * there, on elsewhere). */
int spw__net_listen(spw__net_addr *sa, int reuseport);
/* The text of an accepted peer's address into out: "a.b.c.d" for IPv4
 * and for an IPv4-mapped IPv6 address (::ffff:a.b.c.d, a dual-stack
 * listener's IPv4 clients), the IPv6 text otherwise ("" for other
 * families). cap >= INET6_ADDRSTRLEN. */
void spw__net_peer_str(const struct sockaddr_storage *ss, char *out, size_t cap);

typedef struct spw__post {
    struct spw__post *next;
    void (*fn)(void *);
    void *arg;
} spw__post;

typedef struct spw__loop_base {
    int epfd, lfd, efd;
    pthread_t th;
    pthread_mutex_t post_mu;
    spw__post *post_head, *post_tail;
    /* Nodes of posts already run, for the next posts (under post_mu; at
     * most SPW__POST_FREE_MAX): a group commit posts one per request. */
    spw__post *post_free;
    uint32_t n_post_free;
} spw__loop_base;

#define SPW__POST_FREE_MAX 1024

/*
 * Opens n loop bases, one inside each of n loop structs stride bytes apart
 * (first: the base inside the first), all on one socket bound to *sa (port
 * 0: a free one, written back into *sa). Returns 0, or -errno with none
 * left open.
 */
int spw__loop_bases_open(spw__loop_base *first, size_t stride, uint32_t n, spw__net_addr *sa);
/* Stops accepting: removes the listening socket from epoll and closes it. */
void spw__loop_base_stop_listening(spw__loop_base *b);
/* Closes everything and frees posts never run. REQUIRES: the loop's thread
 * has exited. */
void spw__loop_base_close(spw__loop_base *b);
/* Runs fn(arg) on the loop's thread soon. Callable from any thread. */
void spw__loop_post(spw__loop_base *b, void (*fn)(void *), void *arg);
/* Wakes the loop without posting (its epoll_wait returns). */
void spw__loop_wake(spw__loop_base *b);
/* On the loop's thread, when the eventfd is readable: runs every post. */
void spw__loop_run_posts(spw__loop_base *b);

#endif
