/*
 * The producer's sequence rollover (src/client/client_int.h): a batch
 * never runs its sequence past 2^32 - 1 under one producer id; the
 * producer takes a new id (never 0, never the old one) and starts at 0, so
 * no (producer id, sequence) comes round again within the server's dedupe
 * window.
 */
#include "client/client_int.h"
#include "test.h"

typedef struct ids {
    uint64_t v[4];
    int n, calls;
} ids;

static uint64_t next_id(void *arg)
{
    ids *x = arg;
    x->calls++;
    return x->v[x->n++];
}

int main(void)
{
    ids x = {.v = {500, 0, 7, 9}};
    uint64_t pid = 7, got_pid;
    uint32_t next = 0, seq;
    /* Ordinary batches: consecutive sequences under one id. */
    CHECK_EQ(spw__producer_seq_take(&pid, &next, 10, next_id, &x, &got_pid, &seq), 0);
    CHECK_EQ(got_pid, 7);
    CHECK_EQ(seq, 0);
    CHECK_EQ(next, 10);
    CHECK_EQ(spw__producer_seq_take(&pid, &next, 5, next_id, &x, &got_pid, &seq), 0);
    CHECK_EQ(seq, 10);
    CHECK_EQ(next, 15);
    /* Near the end: a batch that ends exactly at UINT32_MAX still fits. */
    next = UINT32_MAX - 3;
    CHECK_EQ(spw__producer_seq_take(&pid, &next, 3, next_id, &x, &got_pid, &seq), 0);
    CHECK_EQ(got_pid, 7);
    CHECK_EQ(seq, UINT32_MAX - 3);
    CHECK_EQ(next, UINT32_MAX);
    CHECK_EQ(x.calls, 0);
    /* The next would pass it (one record takes UINT32_MAX, the next 2^32):
     * a new id, from 0. */
    CHECK_EQ(spw__producer_seq_take(&pid, &next, 2, next_id, &x, &got_pid, &seq), 1);
    CHECK_EQ(got_pid, 500);
    CHECK_EQ(pid, 500);
    CHECK_EQ(seq, 0);
    CHECK_EQ(next, 2);
    /* A new id is never 0 nor the old one: the generator is asked again. */
    next = UINT32_MAX - 1;
    pid = 0; /* (never so in a producer; here the old id is 0 and 7 is new) */
    x.n = 1;
    x.calls = 0;
    CHECK_EQ(spw__producer_seq_take(&pid, &next, 5, next_id, &x, &got_pid, &seq), 1);
    CHECK_EQ(got_pid, 7);
    CHECK_EQ(x.calls, 2);
    x.n = 2;
    x.calls = 0;
    next = UINT32_MAX;
    CHECK_EQ(spw__producer_seq_take(&pid, &next, 1, next_id, &x, &got_pid, &seq), 1);
    CHECK_EQ(got_pid, 9); /* 7 was the old one */
    CHECK_EQ(x.calls, 2);
    CHECK_EQ(seq, 0);
    printf("test_client_seq: ok\n");
    return 0;
}
