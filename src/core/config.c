/* Table-driven configuration: see config.h. */
#include "core/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int parse_num_unit(const char *s, uint64_t *out, const char *const *units, const uint64_t *mult, size_t nu)
{
    char *end;
    errno = 0;
    if (!s[0] || s[0] == '-')
        return -1;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    uint64_t m = mult[0]; /* no unit: the first */
    if (*end) {
        size_t i;
        for (i = 0; i < nu; i++)
            if (strcasecmp(end, units[i]) == 0)
                break;
        if (i == nu)
            return -1;
        m = mult[i];
    }
    double r = v * (double)m;
    if (r > 1.8e19)
        return -1;
    *out = (uint64_t)r;
    return 0;
}

int spw_parse_size(const char *s, uint64_t *out)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB", "K", "M", "G"};
    static const uint64_t m[] = {1, 1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40, 1000, 1000000, 1000000000,
                                 1000000000000ull, 1ull << 10, 1ull << 20, 1ull << 30};
    return parse_num_unit(s, out, u, m, sizeof m / sizeof *m);
}

int spw_parse_duration_ms(const char *s, uint64_t *out)
{
    static const char *const u[] = {"ms", "s", "m", "h", "d"};
    static const uint64_t m[] = {1, 1000, 60000, 3600000, 86400000};
    return parse_num_unit(s, out, u, m, sizeof m / sizeof *m);
}

const spw_cfg_entry *spw_cfg_find(const spw_cfg_entry *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

static int set_entry(const spw_cfg_entry *e, void *obj, const char *v, char *err, size_t cap)
{
    char *field = (char *)obj + e->off;
    uint64_t x;
    switch (e->type) {
    case SPW_CFG_STR:
        if (strlen(v) >= e->cap) {
            snprintf(err, cap, "%s: value longer than %zu bytes", e->name, e->cap - 1);
            return -1;
        }
        strcpy(field, v);
        return 0;
    case SPW_CFG_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
            *(int *)field = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
            *(int *)field = 0;
        else {
            snprintf(err, cap, "%s: expected true or false, got '%s'", e->name, v);
            return -1;
        }
        return 0;
    case SPW_CFG_U32: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (!v[0] || *end || errno || v[0] == '-' || u < e->min || u > e->max) {
            snprintf(err, cap, "%s: expected an integer from %llu to %llu, got '%s'", e->name,
                     (unsigned long long)e->min, (unsigned long long)e->max, v);
            return -1;
        }
        *(uint32_t *)field = (uint32_t)u;
        return 0;
    }
    case SPW_CFG_SIZE:
        if (spw_parse_size(v, &x) || x < e->min || x > e->max) {
            snprintf(err, cap, "%s: expected a size from %llu to %llu bytes (units B, KiB, MiB, GiB), got '%s'",
                     e->name, (unsigned long long)e->min, (unsigned long long)e->max, v);
            return -1;
        }
        *(uint64_t *)field = x;
        return 0;
    case SPW_CFG_DURATION:
        if (spw_parse_duration_ms(v, &x) || x < e->min || x > e->max) {
            snprintf(err, cap, "%s: expected a duration from %llu ms to %llu ms (units ms, s, m, h), got '%s'",
                     e->name, (unsigned long long)e->min, (unsigned long long)e->max, v);
            return -1;
        }
        *(uint64_t *)field = x;
        return 0;
    }
    return -1;
}

void spw_cfg_defaults(const spw_cfg_entry *t, size_t n, void *obj)
{
    char err[256];
    for (size_t i = 0; i < n; i++)
        if (set_entry(&t[i], obj, t[i].def, err, sizeof err))
            abort(); /* a default outside its own bounds is a programming error */
}

int spw_cfg_set(const spw_cfg_entry *t, size_t n, void *obj, const char *name, const char *value, char *err,
                size_t errcap)
{
    const spw_cfg_entry *e = spw_cfg_find(t, n, name);
    if (!e) {
        snprintf(err, errcap, "unknown setting '%s'", name);
        return -1;
    }
    return set_entry(e, obj, value, err, errcap);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

int spw_cfg_load(const spw_cfg_entry *t, size_t n, void *obj, const char *path, char *err, size_t errcap)
{
    return spw_cfg_load_ex(t, n, obj, path, NULL, NULL, NULL, err, errcap);
}

int spw_cfg_load_ex(const spw_cfg_entry *t, size_t n, void *obj, const char *path, const char *prefix,
                    spw_cfg_extra_fn fn, void *user, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t pl = prefix ? strlen(prefix) : 0;
    char line[SPW_CFG_LINE_MAX + 2];
    int ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        size_t ll = strlen(line);
        if (ll == sizeof line - 1 && line[ll - 1] != '\n' && !feof(f)) {
            snprintf(err, errcap, "%s:%d: line longer than %d bytes", path, ln, SPW_CFG_LINE_MAX);
            fclose(f);
            return -1;
        }
        char *eq = strchr(line, '=');
        char *hash = strchr(line, '#');
        /* A prefixed line's value runs to the end of the line: its JSON may hold '#'. */
        int extra = 0;
        if (pl && eq && (!hash || hash > eq)) {
            char *nm = line;
            while (*nm == ' ' || *nm == '\t')
                nm++;
            extra = strncmp(nm, prefix, pl) == 0;
        }
        if (hash && !extra)
            *hash = 0;
        char *s = trim(line);
        if (!*s)
            continue;
        eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errcap, "%s:%d: expected 'name = value'", path, ln);
            fclose(f);
            return -1;
        }
        *eq = 0;
        char *name = trim(s), *value = trim(eq + 1);
        char e2[600];
        if (extra) {
            if (fn && fn(user, name, value, e2, sizeof e2)) {
                snprintf(err, errcap, "%s:%d: %s", path, ln, e2);
                fclose(f);
                return -1;
            }
            continue;
        }
        if (!t)
            continue;
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = 0;
            value++;
        }
        if (spw_cfg_set(t, n, obj, name, value, e2, sizeof e2)) {
            snprintf(err, errcap, "%s:%d: %s", path, ln, e2);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

/*
 * Writes text to f word by word, lines at most width columns: the first
 * continues at column col, the others start with prefix (which is
 * width-counted) and indent spaces. A word longer than a line stands alone.
 */
static void wrap(FILE *f, const char *text, int col, const char *prefix, int indent, int width)
{
    int plen = (int)strlen(prefix);
    const char *p = text;
    int first = 1;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t wl = strcspn(p, " ");
        if (wl == 0)
            break;
        if (!first && col + 1 + (int)wl > width) {
            fprintf(f, "\n%s%*s", prefix, indent, "");
            col = plen + indent;
            first = 1;
        }
        if (!first) {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, wl, f);
        col += (int)wl;
        p += wl;
        first = 0;
    }
    fputc('\n', f);
}

static const char *kind_word[] = {"TEXT", "N", "SIZE", "DURATION", "BOOL"};

void spw_cfg_help(const spw_cfg_entry *t, size_t n, FILE *f)
{
    for (size_t i = 0; i < n; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", t[i].name, kind_word[t[i].type]);
        fprintf(f, "  %-32s %s (default %s)\n", flag, t[i].help, t[i].def[0] ? t[i].def : "\"\"");
    }
}

void spw_cfg_sample(const spw_cfg_entry *t, size_t n, FILE *f)
{
    for (size_t i = 0; i < n; i++) {
        fputs("\n# ", f);
        wrap(f, t[i].help, 2, "# ", 0, 78);
        fprintf(f, "#%s = %s\n", t[i].name, t[i].def[0] ? t[i].def : "\"\"");
    }
}
