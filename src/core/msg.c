/* Operator messages: see msg.h. */
#include "core/clock.h"
#include "core/json.h"
#include "core/msg.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Set at start and by SIGHUP (log-level) while every thread logs: atomic. */
static _Atomic int min_level = SPW_MSG_INFO;
static _Atomic int out_format = SPW_MSG_TEXT;
static void (*sink_fn)(void *, int, const char *);
static void *sink_arg;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_words[] = {"debug", "info", "warn", "error"};

void spw_msg_set_level(int level) { min_level = level; }
void spw_msg_set_format(int format) { out_format = format; }

void spw_msg_set_sink(void (*sink)(void *, int, const char *), void *arg)
{
    pthread_mutex_lock(&mu);
    sink_fn = sink;
    sink_arg = arg;
    pthread_mutex_unlock(&mu);
}

int spw_msg_level_parse(const char *s, int *level)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_words[i]) == 0) {
            *level = i;
            return 0;
        }
    return -1;
}

int spw_msg_format_parse(const char *s, int *format)
{
    if (strcmp(s, "text") == 0)
        *format = SPW_MSG_TEXT;
    else if (strcmp(s, "json") == 0)
        *format = SPW_MSG_JSON;
    else
        return -1;
    return 0;
}

/* s as a JSON string into f: as spw_json_put_str (valid UTF-8 kept, other
 * bytes as \ufffd), without allocating. */
static void put_json_str(FILE *f, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    fputc('"', f);
    while (p < end) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            size_t k = spw_utf8_seq_len(p, end);
            if (k) {
                fwrite(p, 1, k, f);
                p += k;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

/*
 * The fields a message names at its start: "catalog: ..." has component
 * "catalog"; "stream NAME: ...", "partition DIR: ...", "sink NAME: ...", and
 * "view NAME: ..." have that component and a member of the same name
 * holding NAME. Sets *cl (0: no component) and *vo, *vl (the NAME, vl 0 if
 * none).
 */
static void msg_fields(const char *line, size_t *cl, size_t *vo, size_t *vl)
{
    static const char *const named[] = {"stream", "partition", "sink", "view"};
    size_t n = 0;
    *cl = *vo = *vl = 0;
    while ((line[n] >= 'a' && line[n] <= 'z') || (line[n] >= 'A' && line[n] <= 'Z') || line[n] == '_' ||
           line[n] == '-')
        n++;
    if (n == 0)
        return;
    if (line[n] == ':') {
        *cl = n;
        return;
    }
    if (line[n] != ' ')
        return;
    for (size_t i = 0; i < sizeof named / sizeof *named; i++) {
        if (strlen(named[i]) != n || memcmp(line, named[i], n) != 0)
            continue;
        size_t e = n + 1;
        while (line[e] && line[e] != ' ' && line[e] != ':')
            e++;
        if (e > n + 1 && line[e] == ':') {
            *cl = n;
            *vo = n + 1;
            *vl = e - n - 1;
        }
        return;
    }
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
        char ts[64];
        snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ms % 1000));
        if (out_format == SPW_MSG_JSON) {
            /* one write per line: flockfile keeps lines whole */
            flockfile(stderr);
            fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, level_words[level & 3]);
            size_t cl, vo, vl;
            msg_fields(line, &cl, &vo, &vl);
            if (cl) {
                fputs(",\"component\":", stderr);
                put_json_str(stderr, line, cl);
            }
            if (vl) {
                fputc(',', stderr);
                put_json_str(stderr, line, cl);
                fputc(':', stderr);
                put_json_str(stderr, line + vo, vl);
            }
            fputs(",\"msg\":", stderr);
            put_json_str(stderr, line, strlen(line));
            fputs("}\n", stderr);
            funlockfile(stderr);
        } else {
            fprintf(stderr, "%s %s %s\n", ts, names[level & 3], line);
        }
    }
    pthread_mutex_unlock(&mu);
}
