/*
 * Checks stay on in the builds the tests use: assert() is compiled in (no
 * NDEBUG, CMakeLists.txt SPW_KEEP_ASSERTS), and a broken SPW_ASSERT
 * (core/invariant.h) stops the process with SIGABRT and a message naming
 * the check, while a kept one does nothing.
 */
#include <assert.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/invariant.h"
#include "test.h"

/* Runs fn in a child with stderr on a pipe: its wait status and what it wrote. */
static int run_child(void (*fn)(int), int arg, char *out, size_t cap)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        signal(SIGABRT, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(pfd[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(pfd[0]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    return st;
}

static void check_invariant(int x) { SPW_ASSERT(x == 2); }
static void check_assert(int x) { assert(x == 2); }

int main(void)
{
#ifdef NDEBUG
    CHECK(!"NDEBUG is defined: assert() is compiled out of the test build");
#endif
    char out[4096];
    int st = run_child(check_invariant, 1, out, sizeof out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    CHECK(strstr(out, "invariant broken at"));
    CHECK(strstr(out, "test_invariant.c"));
    CHECK(strstr(out, "x == 2"));

    st = run_child(check_invariant, 2, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ(out[0], 0);

    st = run_child(check_assert, 1, out, sizeof out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    st = run_child(check_assert, 2, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("test_invariant: ok\n");
    return 0;
}
