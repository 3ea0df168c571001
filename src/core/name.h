/*
 * The name rule: streams, sinks, consumer groups and their members are
 * named by it (docs/api.md "Streams"), and the names become directory and
 * file names under the data directory. A name is 1 to max characters of
 * a-z, A-Z, 0-9, '.', '_' or '-', and does not start with '.' (so never
 * "." or "..", and never the server's own ".deleted-*" or ".NAME.tmp"
 * entries beside them). The sentence every refusal quotes is
 * SPW_NAME_RULE (or SPW_NAME_CHARS after another length).
 */
#ifndef SPW_NAME_H
#define SPW_NAME_H

#include <stddef.h>

#define SPW_NAME_MAX 128 /* streams, sinks, groups */
#define SPW_NAME_CHARS "characters of a-z, A-Z, 0-9, '.', '_' or '-', not starting with '.'"
#define SPW_NAME_RULE "1 to 128 " SPW_NAME_CHARS

/* Is c one of the characters a name may hold? */
static inline int spw_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

/* Does name[0..len) follow the rule, with at most max characters? */
static inline int spw_name_ok(const char *name, size_t len, size_t max)
{
    if (len < 1 || len > max || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!spw_name_char(name[i]))
            return 0;
    return 1;
}

#endif
