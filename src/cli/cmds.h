/*
 * Client commands of the spillway binary (docs/api.md "Command line") that talk to a running
 * server over HTTP: produce, consume, stream create|list|show|delete, top,
 * sink create|list|show|delete, group list|show|reset.
 * Each takes argv with argv[0] the command name and returns the process
 * exit code: 0 ok, 1 failure (server error, rejected events, cannot
 * connect), 2 usage.
 *
 * The spw__cli_* helpers (cli_common.c) are shared by these commands only.
 */
#ifndef SPW_CLI_CMDS_H
#define SPW_CLI_CMDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/httpc.h"
#include "core/json.h"

int spw_cmd_produce(int argc, char **argv);
int spw_cmd_consume(int argc, char **argv);
int spw_cmd_stream(int argc, char **argv);
int spw_cmd_top(int argc, char **argv);
int spw_cmd_view(int argc, char **argv);
int spw_cmd_sink(int argc, char **argv);
int spw_cmd_group(int argc, char **argv);

#define SPW_CLI_DEFAULT_SERVER "127.0.0.1:7700"
/* The --server line of a command's help (spw__cli_server reads it so). */
#define SPW_CLI_SERVER_HELP                                                                                            \
    "  --server HOST:PORT   HOST:PORT or http://HOST:PORT (default $SPILLWAY_SERVER, else " SPW_CLI_DEFAULT_SERVER   \
    ")\n"
/* How long a command waits for a server that refuses connections. */
#define SPW_CLI_CONNECT_WAIT_MS 2000

/*
 * Matches argv[*i] against "--name VALUE" or "--name=VALUE". Returns 1 and
 * sets *v (advancing *i past a separate value), 0 if argv[*i] is another
 * option, -1 (after printing "cmd: --name needs a value") if the value is
 * missing.
 */
int spw__cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **v);
/* Parses a decimal integer in [lo, hi]. Returns 0 or -1. */
int spw__cli_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* Sets up c from a --server value (NULL: $SPILLWAY_SERVER, else the default). Returns 0, or 2
 * after printing a usage message. */
int spw__cli_server(const char *cmd, const char *server, spw_httpc *c);
/*
 * The bearer token of a command: opt (--token), else $SPILLWAY_TOKEN, else
 * none. Sets *out (NULL for none) and, if c is not NULL, c's token.
 * Returns 0, or 2 after printing why the token cannot be sent.
 */
int spw__cli_token(const char *cmd, const char *opt, spw_httpc *c, const char **out);
#define SPW_CLI_TOKEN_HELP                                                                                             \
    "  --token T            bearer token for a server with tokens (default: $SPILLWAY_TOKEN)\n"
/* Is s a valid stream name (docs/architecture.md)? */
int spw__cli_stream_name_ok(const char *s);

/* Prints "spillway CMD: cannot reach HOST:PORT: reason" for a failed request. */
void spw__cli_conn_error(const char *cmd, const spw_httpc *c);
/* Prints the server's error sentence (the "error" member of its JSON body,
 * or the status and body if it is not one) as "spillway CMD: ..." */
void spw__cli_server_error(const char *cmd, const spw_httpc_resp *r);
/* Copies the error sentence and code of an error body into msg/code
 * (either may be NULL). Returns 0, or -1 if the body is not an error object. */
int spw__cli_error_parts(const char *body, size_t len, char *msg, size_t msg_cap, char *code, size_t code_cap);

/* Finds member name of the object span obj. Returns 1 found, 0 not. */
int spw__cli_member(const spw_json_span *obj, const char *name, spw_json_span *out);
/* Parses the whole of [p, p + n) as one JSON value. Returns 0 or -1. */
int spw__cli_parse(const char *p, size_t n, spw_json_span *out);
/* The array member `member` of a list answer (GET /v1/streams, /v1/sinks,
 * .../groups) into arr: 0. With json set, prints the body as it came
 * instead and returns 1. If the body is not such an object, says
 * "spillway CMD: the server's answer is not a WHAT list" and returns -1. */
int spw__cli_list_array(const char *cmd, const char *body, size_t len, int json, const char *member, const char *what,
                        spw_json_span *arr);
/* Next element of an array span; *cursor starts at NULL. Returns 1 or 0 at the end. */
int spw__cli_array_next(const spw_json_span *arr, const char **cursor, spw_json_span *elem);
/* A string member decoded into out (NUL-terminated, truncated to cap); "" if absent or not a string. */
void spw__cli_str(const spw_json_span *obj, const char *name, char *out, size_t cap);
/* An integer member; def if absent or not an integer. */
int64_t spw__cli_int(const spw_json_span *obj, const char *name, int64_t def);

#endif
