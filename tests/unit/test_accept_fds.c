/*
 * Accepting when the process is out of file descriptors (net/conn.h,
 * "File descriptors"): with the soft RLIMIT_NOFILE lowered to just above
 * what the process holds, clients connect (their sockets made before) and
 * the loop's accept fails with EMFILE. The loop then closes its reserve
 * fd, accepts that connection and closes it — so at least one waiting
 * client reads EOF at once instead of waiting unaccepted in the backlog —
 * counts the failure (fd_errors: bounded by the connection attempts, not
 * one per spin of a loop that keeps finding the listening socket
 * readable) and pauses accepting; with fds free again, it accepts again.
 * Also the connection bound shared by every listener
 * (spw_net_set_conn_fds): past it a connection is closed at once and
 * counted refused.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "net/conn.h"
#include "os/os.h"
#include "test.h"

#define CLIENTS 24

static uint32_t t_events(spw_netconn *c) { return (c->paused ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0); }

static void t_io(spw_netconn *c, uint32_t ev)
{
    if (c->closed || !(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    char b[64];
    ssize_t n = recv(c->fd, b, sizeof b, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN))
        spw_netconn_close(c);
}

static const spw_netproto tproto = {
    .name = "test",
    .conn_size = sizeof(spw_netconn),
    .loop_size = sizeof(spw_netloop),
    .events = t_events,
    .io = t_io,
};

static void connect_nb(int fd, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    CHECK(r == 0 || errno == EINPROGRESS);
}

/* 1 if fd reads EOF (the server closed it) within ms, else 0. */
static int eof_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return 0;
    char b;
    return recv(fd, &b, 1, MSG_DONTWAIT) == 0;
}

int main(void)
{
    static spw_netsrv ns;
    spw_netsrv_config cfg = {.listen = "127.0.0.1:0", .threads = 1, .max_connections = 10000};
    CHECK_EQ(spw_netsrv_start(&ns, &tproto, &cfg, NULL), 0);

    int cl[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        CHECK(cl[i] >= 0);
    }
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    /* Room for 2 accepted connections, then EMFILE. An fd is the lowest
     * number free and must be below the limit: fill the holes below the
     * highest fd open (inherited ones may sit high) first. */
    int highest = 0;
    for (int fd = 0; fd < 65536; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            highest = fd;
    int plugs[65536], nplugs = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        plugs[nplugs++] = fd;
        if (fd >= highest)
            break;
    }
    highest = plugs[nplugs - 1];
    low = old;
    low.rlim_cur = (rlim_t)highest + 3;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    for (int i = 0; i < CLIENTS; i++)
        connect_nb(cl[i], ns.port);

    /* Some client is told at once (bounded wait: 20 s). */
    int told = 0;
    for (int round = 0; round < 200 && !told; round++)
        for (int i = 0; i < CLIENTS && !told; i++)
            told = eof_within(cl[i], i == 0 ? 100 : 0);
    uint64_t errs = atomic_load(&ns.fd_errors);
    fprintf(stderr, "accepted %llu, open %u, fd errors %llu, refused %llu, a client told: %d\n",
           (unsigned long long)atomic_load(&ns.accepted), atomic_load(&ns.nconns), (unsigned long long)errs,
           (unsigned long long)atomic_load(&ns.refused), told);
    CHECK(told);
    CHECK(errs >= 1);
    CHECK(errs <= CLIENTS);
    CHECK(atomic_load(&ns.nconns) <= 3);

    /* Fds back: every client still waiting is accepted (bounded: 20 s). */
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    uint64_t settled = atomic_load(&ns.accepted) + atomic_load(&ns.refused);
    for (int i = 0; i < 2000 && atomic_load(&ns.accepted) + atomic_load(&ns.refused) < CLIENTS; i++)
        usleep(10000);
    settled = atomic_load(&ns.accepted) + atomic_load(&ns.refused);
    printf("after: accepted %llu, refused %llu, fd errors %llu\n", (unsigned long long)atomic_load(&ns.accepted),
           (unsigned long long)atomic_load(&ns.refused), (unsigned long long)atomic_load(&ns.fd_errors));
    CHECK_EQ(settled, CLIENTS);
    CHECK(atomic_load(&ns.fd_errors) <= CLIENTS);
    for (int i = 0; i < CLIENTS; i++)
        close(cl[i]);
    for (int i = 0; i < nplugs; i++)
        close(plugs[i]);
    for (int i = 0; i < 2000 && atomic_load(&ns.nconns) != 0; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&ns.nconns), 0);

    /* The process-wide connection bound: 2, then closed at once. */
    spw_net_set_conn_fds(2);
    uint64_t refused0 = atomic_load(&ns.refused);
    int c2[3];
    for (int i = 0; i < 3; i++) {
        c2[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect_nb(c2[i], ns.port);
    }
    for (int i = 0; i < 2000 && atomic_load(&ns.refused) == refused0; i++)
        usleep(10000);
    CHECK_EQ(atomic_load(&ns.refused), refused0 + 1);
    CHECK_EQ(spw_net_conn_fds_open(), 2);
    for (int i = 0; i < 3; i++)
        close(c2[i]);
    spw_net_set_conn_fds(UINT32_MAX);
    spw_netsrv_stop(&ns, 0);
    printf("ok\n");
    return 0;
}
