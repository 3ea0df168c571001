/* Operator messages: see msg.h. */
#include "core/clock.h"
#include "core/msg.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int min_level = SPW_MSG_INFO;
static void (*sink_fn)(void *, int, const char *);
static void *sink_arg;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void spw_msg_set_level(int level) { min_level = level; }

void spw_msg_set_sink(void (*sink)(void *, int, const char *), void *arg)
{
    pthread_mutex_lock(&mu);
    sink_fn = sink;
    sink_arg = arg;
    pthread_mutex_unlock(&mu);
}

void spw_msg(int level, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (level < min_level)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&mu);
    if (sink_fn) {
        sink_fn(sink_arg, level, line);
    } else {
        struct tm tm;
        int64_t ms = spw_wall_ms();
        time_t sec = (time_t)(ms / 1000);
        gmtime_r(&sec, &tm);
        fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ms % 1000), names[level & 3], line);
    }
    pthread_mutex_unlock(&mu);
}
