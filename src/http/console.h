/*
 * The web console's files (http/console.c, docs/operations.md "Console"):
 * its page at /, and /console/console.js, /console/console.css,
 * /console/chart.min.js, built into the binary.
 */
#ifndef SPW_HTTP_CONSOLE_H
#define SPW_HTTP_CONSOLE_H

#include "http/http.h"

/* Answers req if its path is one of the console's files (200, 304 when
 * If-None-Match names its ETag, 405 for a method other than GET and
 * HEAD) and returns 1; returns 0, answering nothing, for any other path.
 * Needs no token: the files hold no data. On req's loop thread. */
int spw_console_route(spw_http_req *req);

#endif
