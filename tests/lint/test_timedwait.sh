#!/bin/sh
# Every timed wait goes through core/clock.h (spw_cond_init +
# spw_cond_wait_ns/until, on CLOCK_MONOTONIC): no other file of src/ or
# include/ calls a POSIX timed wait itself, whose absolute deadline would
# be on CLOCK_REALTIME unless the waiter's attributes say otherwise
# (docs/architecture.md, "Timed waits"). Prints each breach; exits 1 on any.
root=${1:-.}
cd "$root" || exit 2
hits=$(grep -rnE '\b(pthread_cond_timedwait|pthread_cond_clockwait|sem_timedwait|sem_clockwait|pthread_mutex_timedlock|pthread_rwlock_timed(rd|wr)lock|mq_timed(send|receive)) *\(' \
    src include | grep -v '^src/core/clock\.c:')
if [ -n "$hits" ]; then
    echo "$hits" | sed 's/$/: a timed wait outside core\/clock.c (use spw_cond_wait_ns)/'
    exit 1
fi
exit 0
