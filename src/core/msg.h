/*
 * Operator messages (the server's log output, not the data log): one line
 * per event on stderr. Text format: "TS LEVEL component: text"; JSON format
 * (spw_msg_set_format): one object per line with the stable keys "ts"
 * (RFC 3339, UTC, milliseconds), "level" (debug|info|warn|error),
 * "msg" (the whole message), and the fields the message names at its
 * start: "component" ("catalog" for "catalog: ...", "stream" for "stream
 * NAME: ...") and, for "stream|partition|sink|view NAME: ...", a member
 * of that name holding NAME. docs/operations.md "Logs". Tests can capture
 * them with spw_msg_set_sink() to assert that recovery reported what it cut.
 */
#ifndef SPW_MSG_H
#define SPW_MSG_H

enum { SPW_MSG_DEBUG, SPW_MSG_INFO, SPW_MSG_WARN, SPW_MSG_ERROR };
enum { SPW_MSG_TEXT, SPW_MSG_JSON };

void spw_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define spw_debug(...) spw_msg(SPW_MSG_DEBUG, __VA_ARGS__)
#define spw_info(...) spw_msg(SPW_MSG_INFO, __VA_ARGS__)
#define spw_warn(...) spw_msg(SPW_MSG_WARN, __VA_ARGS__)
#define spw_error(...) spw_msg(SPW_MSG_ERROR, __VA_ARGS__)

/* Messages below level are dropped (default INFO). */
void spw_msg_set_level(int level);
/* SPW_MSG_TEXT (the default) or SPW_MSG_JSON. */
void spw_msg_set_format(int format);
/* "debug"|"info"|"warn"|"error" to a level, "text"|"json" to a format.
 * Return 0, or -1 for any other word. */
int spw_msg_level_parse(const char *s, int *level);
int spw_msg_format_parse(const char *s, int *format);
/* sink NULL restores stderr. Called with the formatted line, no newline. */
void spw_msg_set_sink(void (*sink)(void *arg, int level, const char *line), void *arg);

#endif
