/*
 * Invariant checks that stay on in every build (TigerBeetle style).
 *
 * assert() is for checks worth their cost in test builds only (CMake keeps
 * it on in optimized builds unless SPW_KEEP_ASSERTS=OFF). SPW_ASSERT is for
 * the cheap invariants whose breach means the process's state is already
 * wrong (an offset going back, a count going below zero, a buffer written
 * past its end): continuing would corrupt data or answer wrongly, so the
 * process stops at once, naming the check, file and line. It is never for
 * bad input, which gets an error (docs/architecture.md "Invariants").
 */
#ifndef SPW_INVARIANT_H
#define SPW_INVARIANT_H

#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, cold, unused)) static void spw__invariant_failed(const char *file, int line,
                                                                          const char *what)
{
    fprintf(stderr, "spillway: invariant broken at %s:%d: %s; stopping\n", file, line, what);
    fflush(stderr);
    abort();
}

#define SPW_ASSERT(cond) (__builtin_expect(!!(cond), 1) ? (void)0 : spw__invariant_failed(__FILE__, __LINE__, #cond))

#endif
