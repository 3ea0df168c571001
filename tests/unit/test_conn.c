/*
 * The connection core (net/conn.h) under a tiny protocol of its own: a
 * byte 'r' from the client is a request that stays in flight until the
 * test completes it from another thread (the way the log's flusher posts
 * an fsync acknowledgement to the request's loop); the answer is the byte
 * 'k'. Checked:
 *   - the drain asks every loop: with 70 loops, a request in flight on a
 *     loop past the 64th keeps spw_netsrv_stop waiting, even with a drain
 *     time of 0, until its completion has been posted, has run on the loop
 *     and its answer is written; the client then reads 'k' and EOF;
 *   - a connection whose client leaves while its request is in flight
 *     stays allocated (a zombie) until the completion runs, which then
 *     finds it closed and frees nothing twice (ASan: no use after free);
 *   - connection counts: open and accepted.
 * Which loop takes a connection is the kernel's choice (SO_REUSEPORT
 * hashing): the test connects until a request lands past loop 64, a
 * bounded number of times.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "net/conn.h"
#include "test.h"

#define LOOPS 70

typedef struct tloop {
    union {
        spw_netloop nl;
        struct {
            SPW_NETLOOP_FIELDS
        };
    };
    uint32_t index;
} tloop;

typedef struct tconn {
    union {
        spw_netconn nc;
        struct {
            SPW_NETCONN_FIELDS
        };
    };
    int completed; /* answers sent after the socket closed (counted, not written) */
} tconn;

static _Atomic uint32_t next_index;
static _Atomic(tconn *) pending;     /* the last request seen */
static _Atomic uint32_t pending_loop; /* its loop's index */
static _Atomic int completions;      /* completions run */
static _Atomic int freed;            /* connections freed */

static void t_loop_init(spw_netloop *l, void *owner)
{
    (void)owner;
    ((tloop *)l)->index = atomic_fetch_add(&next_index, 1);
}

static uint32_t t_events(spw_netconn *c) { return (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0); }

static void t_io(spw_netconn *c, uint32_t ev)
{
    if (ev & EPOLLOUT)
        spw_netconn_send(c);
    if (c->closed || !(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    char b[64];
    ssize_t n = recv(c->fd, b, sizeof b, 0);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            spw_netconn_close(c);
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        if (b[i] == 'r') {
            c->inflight++;
            c->nl->inflight++;
            atomic_store(&pending_loop, ((tloop *)c->nl)->index);
            atomic_store(&pending, (tconn *)c);
        }
}

static void t_conn_free(spw_netconn *c)
{
    (void)c;
    atomic_fetch_add(&freed, 1);
}

static void t_stop_reading(spw_netconn *c)
{
    c->paused = 1;
    spw_netconn_set_events(c);
}

static const spw_netproto tproto = {
    .name = "test",
    .conn_size = sizeof(tconn),
    .loop_size = sizeof(tloop),
    .loop_init = t_loop_init,
    .events = t_events,
    .io = t_io,
    .conn_free = t_conn_free,
    .stop_reading = t_stop_reading,
};

/* On the request's loop: the answer. */
static void complete(void *arg)
{
    tconn *c = arg;
    c->inflight--;
    c->nl->inflight--;
    atomic_fetch_add(&completions, 1);
    if (c->closed) {
        c->completed++;
        return;
    }
    CHECK_OK(spw_buf_puts(&c->out, "k"));
    spw_netconn_send(&c->nc);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends a request on fd and waits (bounded) until a loop has it. */
static tconn *request(int fd)
{
    atomic_store(&pending, NULL);
    CHECK(send(fd, "r", 1, MSG_NOSIGNAL) == 1);
    for (int i = 0; i < 30000 && !atomic_load(&pending); i++)
        usleep(1000);
    tconn *c = atomic_load(&pending);
    CHECK(c != NULL);
    return c;
}

static spw_netsrv ns;
static _Atomic int stopped;

static void *stopper(void *arg)
{
    (void)arg;
    spw_netsrv_stop(&ns, 0);
    atomic_store(&stopped, 1);
    return NULL;
}

int main(void)
{
    spw_netsrv_config cfg = {.listen = "127.0.0.1:0", .threads = LOOPS, .max_connections = 10000};
    CHECK_EQ(spw_netsrv_start(&ns, &tproto, &cfg, NULL), 0);
    CHECK(ns.port > 0);
    CHECK_EQ(ns.nloops, LOOPS);

    /* A client that leaves while its request is in flight: the connection
     * waits as a zombie, and the completion finds it closed. */
    int fd = connect_to(ns.port);
    tconn *z = request(fd);
    uint32_t zl = atomic_load(&pending_loop);
    close(fd);
    for (int i = 0; i < 30000 && atomic_load(&ns.nconns) != 0; i++)
        usleep(1000);
    CHECK_EQ(atomic_load(&ns.nconns), 0);
    CHECK_EQ(atomic_load(&freed), 0); /* closed, not freed: its request is in flight */
    spw_netloop_post(spw_netsrv_loop(&ns, zl), complete, z);
    for (int i = 0; i < 30000 && atomic_load(&freed) == 0; i++)
        usleep(1000);
    CHECK_EQ(atomic_load(&freed), 1);
    CHECK_EQ(atomic_load(&completions), 1);

    /* Requests until one is in flight on a loop past the 64th; the others
     * are answered and closed. */
    tconn *far = NULL;
    int far_fd = -1;
    for (int k = 0; k < 2000 && !far; k++) {
        fd = connect_to(ns.port);
        tconn *c = request(fd);
        uint32_t li = atomic_load(&pending_loop);
        if (li >= 64) {
            far = c;
            far_fd = fd;
            break;
        }
        spw_netloop_post(spw_netsrv_loop(&ns, li), complete, c);
        char a;
        CHECK(recv(fd, &a, 1, 0) == 1 && a == 'k');
        close(fd);
    }
    CHECK(far != NULL);
    uint32_t far_loop = atomic_load(&pending_loop);
    CHECK(atomic_load(&ns.accepted) >= 2);

    /* The drain, with no time: it must still wait for the request. */
    int before = atomic_load(&completions);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, stopper, NULL) == 0);
    /* However long this takes, the drain cannot end before the completion
     * below is posted (the sleep only gives a drain that wrongly ends
     * early the time to show it). */
    usleep(300000);
    CHECK_EQ(atomic_load(&stopped), 0);
    spw_netloop_post(spw_netsrv_loop(&ns, far_loop), complete, far);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(atomic_load(&stopped), 1);
    CHECK_EQ(atomic_load(&completions), before + 1);
    /* Its answer went out before the connection was closed. */
    char a = 0;
    CHECK(recv(far_fd, &a, 1, 0) == 1);
    CHECK_EQ(a, 'k');
    CHECK(recv(far_fd, &a, 1, 0) == 0);
    close(far_fd);
    CHECK_EQ(atomic_load(&ns.nconns), 0);
    CHECK(ns.loops == NULL);
    printf("test_conn: ok\n");
    return 0;
}
