/*
 * Starting, cutting and stopping tests/fuse/lossyfs.c from a test
 * (test_fusecut, test_lossyfs): the child prints "ready" once mounted and
 * "cut N ..." after each cut; it dies with the test.
 */
#ifndef SPW_TEST_LOSSY_H
#define SPW_TEST_LOSSY_H

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

typedef struct lossy {
    pid_t pid;
    FILE *out;
} lossy;

/* Mounts BACKING back at mnt (seeded); pause_ms > 0 sets
 * LOSSYFS_TEST_RENAME_PAUSE_MS. 0, or -1 (nothing left running) when it
 * does not come up: FUSE cannot be mounted here. */
static inline int lossy_start(lossy *l, const char *bin, const char *back, const char *mnt, unsigned seed,
                              unsigned pause_ms)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    l->pid = fork();
    CHECK(l->pid >= 0);
    if (l->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        char s[32];
        snprintf(s, sizeof s, "%u", seed);
        if (pause_ms) {
            char ms[16];
            snprintf(ms, sizeof ms, "%u", pause_ms);
            setenv("LOSSYFS_TEST_RENAME_PAUSE_MS", ms, 1);
        }
        execl(bin, bin, back, mnt, s, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    l->out = fdopen(pfd[0], "r");
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    char line[128];
    if (poll(&p, 1, 10000) != 1 || !fgets(line, sizeof line, l->out) || strncmp(line, "ready", 5) != 0) {
        kill(l->pid, SIGKILL);
        waitpid(l->pid, NULL, 0);
        fclose(l->out);
        *l = (lossy){0};
        return -1;
    }
    return 0;
}

/* Cuts the power and waits for lossyfs to say it is done. */
static inline void lossy_cut(lossy *l)
{
    CHECK(kill(l->pid, SIGUSR1) == 0);
    char line[256];
    struct pollfd p = {.fd = fileno(l->out), .events = POLLIN};
    CHECK(poll(&p, 1, 10000) == 1);
    CHECK(fgets(line, sizeof line, l->out) != NULL);
    CHECK(strncmp(line, "cut ", 4) == 0);
    if (getenv("SPW_TEST_VERBOSE"))
        printf("%s", line);
}

static inline void lossy_stop(lossy *l)
{
    kill(l->pid, SIGTERM);
    int st;
    for (int i = 0; i < 500; i++) {
        if (waitpid(l->pid, &st, WNOHANG) == l->pid) {
            fclose(l->out);
            return;
        }
        usleep(10000);
    }
    kill(l->pid, SIGKILL);
    waitpid(l->pid, &st, 0);
    fclose(l->out);
}

#endif
