/*
 * A small producer built on the client library (include/spillway.h):
 *
 *   producer_example SERVERS STREAM [COUNT] [ACK]
 *
 * sends COUNT (default 100000) JSON events {"device":"dN","seq":I} keyed by
 * device to the comma-separated binary-protocol SERVERS (host:port), at ack
 * level ACK (none, written, fsync; default fsync), then flushes and prints
 * how many were acknowledged, how many failed, and the rate. The stream
 * must exist (spillway stream create, or PUT /v1/streams/STREAM).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spillway.h"

typedef struct tally {
    pthread_mutex_t mu;
    uint64_t ok, failed;
    int first_error;
} tally;

/* Runs on the producer's I/O thread, once per record. */
static void delivered(void *arg, const spillway_delivery *d)
{
    tally *t = arg;
    pthread_mutex_lock(&t->mu);
    if (d->status == 0) {
        t->ok++;
    } else {
        if (!t->failed)
            t->first_error = d->status;
        t->failed++;
    }
    pthread_mutex_unlock(&t->mu);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s SERVERS STREAM [COUNT] [none|written|fsync]\n", argv[0]);
        return 2;
    }
    long count = argc > 3 ? atol(argv[3]) : 100000;
    int ack = SPILLWAY_ACK_LEVEL_FSYNC;
    if (argc > 4)
        ack = strcmp(argv[4], "none") == 0      ? SPILLWAY_ACK_LEVEL_NONE
              : strcmp(argv[4], "written") == 0 ? SPILLWAY_ACK_LEVEL_WRITTEN
                                                : SPILLWAY_ACK_LEVEL_FSYNC;
    tally t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    spillway_producer_config cfg;
    spillway_producer_config_init(&cfg);
    cfg.on_delivery = delivered;
    cfg.opaque = &t;
    spillway_producer *p;
    int r = spillway_producer_new(argv[1], &cfg, &p);
    if (r) {
        fprintf(stderr, "producer: %s\n", spillway_errstr(r));
        return 1;
    }
    double t0 = now_s();
    for (long i = 0; i < count; i++) {
        char key[32], val[96];
        int kl = snprintf(key, sizeof key, "d%ld", i % 1000);
        int vl = snprintf(val, sizeof val, "{\"device\":\"%s\",\"seq\":%ld}", key, i);
        r = spillway_producer_send(p, argv[2], key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, ack, NULL);
        if (r) {
            fprintf(stderr, "send: %s\n", spillway_errstr(r));
            break;
        }
    }
    r = spillway_producer_flush(p, 60000);
    double secs = now_s() - t0;
    spillway_producer_close(p, 1000);
    printf("acknowledged %" PRIu64 ", failed %" PRIu64 " in %.2f s: %.0f events/s\n", t.ok, t.failed, secs,
           (double)t.ok / secs);
    if (t.failed)
        printf("first error: %s\n", spillway_errstr(t.first_error));
    return r || t.failed ? 1 : 0;
}
