/*
 * Operator messages (the server's log output, not the data log): one line
 * each on stderr, "LEVEL component: text". Tests can capture them with
 * spw_msg_set_sink() to assert that recovery reported what it cut.
 */
#ifndef SPW_MSG_H
#define SPW_MSG_H

enum { SPW_MSG_DEBUG, SPW_MSG_INFO, SPW_MSG_WARN, SPW_MSG_ERROR };

void spw_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define spw_info(...) spw_msg(SPW_MSG_INFO, __VA_ARGS__)
#define spw_warn(...) spw_msg(SPW_MSG_WARN, __VA_ARGS__)
#define spw_error(...) spw_msg(SPW_MSG_ERROR, __VA_ARGS__)

/* Messages below level are dropped (default INFO). */
void spw_msg_set_level(int level);
/* sink NULL restores stderr. Called with the formatted line, no newline. */
void spw_msg_set_sink(void (*sink)(void *arg, int level, const char *line), void *arg);

#endif
