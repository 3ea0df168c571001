/*
 * `spillway bench`: load generator against a running server (docs/api.md "Command line").
 */
#ifndef SPW_BENCH_H
#define SPW_BENCH_H

/* argv[0] is "bench". Returns the process exit code (0 ok, 1 failure or
 * errors seen, 2 usage). */
int spw_cmd_bench(int argc, char **argv);

#endif
