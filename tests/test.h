/*
 * Minimal test support: CHECK* abort the test with file:line and the values
 * on failure (so ctest reports it); temp dirs are made under $TMPDIR and
 * removed with spw_test_rmrf. Every test binary returns 0 only if every
 * check passed.
 */
#ifndef SPW_TEST_H
#define SPW_TEST_H

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define CHECK_EQ(a, b)                                                                                                 \
    do {                                                                                                               \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                            \
        if (a_ != b_) {                                                                                                \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #a, #b, a_, b_);  \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define CHECK_OK(expr)                                                                                                 \
    do {                                                                                                               \
        long long r_ = (long long)(expr);                                                                              \
        if (r_ < 0) {                                                                                                  \
            fprintf(stderr, "%s:%d: %s failed: %lld\n", __FILE__, __LINE__, #expr, r_);                               \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static inline int spw_test__rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void spw_test_rmrf(const char *dir) { nftw(dir, spw_test__rm, 16, FTW_DEPTH | FTW_PHYS); }

/* Makes a fresh temp dir; returns a malloc'ed path. */
static inline char *spw_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/spw-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        abort();
    }
    return p;
}

#endif
