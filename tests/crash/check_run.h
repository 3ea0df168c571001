/*
 * Shared by the crash tests: run `spillway check DIR` as a child that dies
 * with the test, collect what it prints, and bound how long it may take.
 */
#ifndef SPW_TEST_CHECK_RUN_H
#define SPW_TEST_CHECK_RUN_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static inline int64_t spw_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Runs `bin check dir`, its stdout and stderr into out (cap bytes, NUL-
 * terminated; the rest is dropped), killing it after timeout_ms. *child
 * holds its pid while it runs, so a watchdog can kill it. Returns its exit
 * code, or -1 if it did not exit normally.
 */
static inline int spw_test_run_check(const char *bin, const char *dir, char *out, size_t cap, int timeout_ms,
                                     volatile sig_atomic_t *child)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        execl(bin, bin, "check", dir, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    *child = pid;
    size_t len = 0;
    int64_t deadline = spw_test_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - spw_test_now_ms();
        if (left <= 0)
            break;
        struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
        if (poll(&pf, 1, (int)left) <= 0)
            continue;
        char tmp[4096];
        ssize_t n = read(pfd[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t k = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(out + len, tmp, k);
        len += k;
    }
    out[len] = 0;
    kill(pid, SIGKILL); /* no-op when it exited; bounds a hung check */
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    *child = 0;
    close(pfd[0]);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
