/*
 * Thread names: what `top -H`, `ps -L`, `perf report --sort comm` and
 * /proc/PID/task/TID/comm show for each of the server's threads, so the
 * CPU of the I/O loops, the flusher, the fsync pool and each sink can be
 * told apart (docs/operations.md "Threads"). Linux keeps 15 bytes of a
 * name; the rest is cut. Best effort: nothing depends on a name.
 */
#ifndef SPW_THREAD_H
#define SPW_THREAD_H

#include <pthread.h>

enum { SPW_THREAD_NAME_MAX = 15 };

/* Names thread th from a printf format (cut to SPW_THREAD_NAME_MAX bytes). */
void spw_thread_name(pthread_t th, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
