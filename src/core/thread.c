#include "core/thread.h"

#include <stdarg.h>
#include <stdio.h>

void spw_thread_name(pthread_t th, const char *fmt, ...)
{
    char name[SPW_THREAD_NAME_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    (void)pthread_setname_np(th, name);
}
