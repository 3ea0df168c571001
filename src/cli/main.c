/*
 * The spillway command: one binary, subcommands (docs/api.md "Command line"). Exit codes:
 * 0 ok, 1 failure (or damage found), 2 usage.
 */
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdlib.h>

#include "core/help.h"
#include "cli/bench.h"
#include "cli/check.h"
#include "cli/cmds.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/error.h"
#include "core/version.h"
#include "os/os.h"
#include "server/server.h"
#include "server/sink_config.h"
#include "catalog/stream.h"
#include "sink/sink.h"
#include "view/view.h"


static void usage(FILE *f)
{
    spw_help_write(f,
                   "usage: spillway <command> [options]\n"
                   "\n"
                   "commands:\n"
                   "  serve     run the server\n"
                   "  produce   send NDJSON lines to a stream\n"
                   "  consume   print a stream's records as NDJSON\n"
                   "  stream    create, list, show or delete streams\n"
                   "  view      create, list, show, read, rebuild or delete views\n"
                   "  sink      create, list, show or delete sinks\n"
                   "  group     list, show or reset a stream's consumer groups\n"
                   "  bench     load a running server and measure it\n"
                   "  top       live rates, pending bytes, rejections\n"
                   "  check     verify the segments at or below a directory (read only)\n"
                   "  dump      print a segment file's batches and records\n"
                   "  version   print the version and the commit\n"
                   "\n"
                   "Client commands (produce, consume, stream, view, sink, group, bench, top) take --server HOST:PORT\n"
                   "or http://HOST:PORT, an IPv6 address in brackets ([::1]:7700) (default\n"
                   "$SPILLWAY_SERVER, else 127.0.0.1:7700) and\n"
                   "--token T (a bearer token for a server with a tokens file; default\n"
                   "$SPILLWAY_TOKEN). produce, consume, stream, view, sink, group and top also take\n"
                   "https://HOST:PORT (a server with TLS) and --cacert FILE (the CA certificates\n"
                   "that verify it; default $SPILLWAY_CACERT, else the system's). Options are --name VALUE or --name=VALUE. Sizes take\n"
                   "B/KiB/MiB/GiB, durations ms/s/m/h. Run 'spillway <command> --help' for a\n"
                   "command's options.\n",
                   SPW_HELP_WIDTH);
}

static void serve_help(FILE *out)
{
    /* written whole, then wrapped at 80 columns */
    char *text = NULL;
    size_t text_len = 0;
    FILE *f = open_memstream(&text, &text_len);
    if (!f)
        return;
    fputs("usage: spillway serve [--config FILE] [--SETTING VALUE ...]\n"
          "Runs the server until SIGTERM or SIGINT (then: stop accepting, finish requests\n"
          "in flight, flush and fsync, exit 0); SIGHUP reloads the tokens file. Every\n"
          "setting can be given in the config file as 'name = value' or as a flag; flags\n"
          "win. Sizes take B/KiB/MiB/GiB, durations ms/s/m/h.\n\n"
          "  --config FILE                    read settings from FILE first\n"
          "  --print-config                   print every setting at its default, as a config file\n"
          "  --ready-fd N                     once listening, write \"HTTP_PORT BIN_PORT\\n\" to fd N "
          "(BIN_PORT 0 when the binary listener is off; with --listen-kafka a third number, "
          "KAFKA_PORT)\n",
          f);
    spw_cfg_help(spw_server_cfg_table, spw_server_cfg_count, f);
    spw_buf h = SPW_BUF_INIT;
    spw_stream_help(&h);
    fprintf(f, "\nStreams: the body of PUT /v1/streams/NAME.\n%.*s", (int)h.len, h.p ? (const char *)h.p : "");
    h.len = 0;
    spw_sinks_help(&h);
    fprintf(f,
            "\nSinks: 'sink.NAME = {JSON}' lines in the config file, or PUT /v1/sinks/NAME with\n"
            "the same body. Definitions that differ only in spacing, field order or defaults\n"
            "written out are the same.\n"
            "%.*s",
            (int)h.len, h.p ? (const char *)h.p : "");
    h.len = 0;
    spw_views_help(&h);
    fprintf(f, "\nViews: the body of PUT /v1/views/NAME (docs/api.md \"Views\").\n%.*s", (int)h.len,
            h.p ? (const char *)h.p : "");
    spw_buf_fini(&h);
    fclose(f);
    spw_help_write(out, text, SPW_HELP_WIDTH);
    free(text);
}

static int cmd_serve(int argc, char **argv)
{
    spw_server_config c;
    char err[512];
    int ready_fd = -1;
    memset(&c, 0, sizeof c);
    spw_cfg_defaults(spw_server_cfg_table, spw_server_cfg_count, &c);
    /* The config file first, so flags override it wherever they stand. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            serve_help(stdout);
            return 0;
        }
        if (strcmp(a, "--print-config") == 0) {
            printf("# spillway serve's settings, each at its default: uncomment a line to change it.\n"
                   "# Sizes take B/KiB/MiB/GiB, durations ms/s/m/h. Flags given to spillway serve\n"
                   "# win over this file; SIGHUP reloads what can change without a restart. Sinks\n"
                   "# can be defined here too, one per line: sink.NAME = {JSON} (spillway serve\n"
                   "# --help).\n");
            spw_cfg_sample(spw_server_cfg_table, spw_server_cfg_count, stdout);
            return 0;
        }
        if (strncmp(a, "--config", 8) == 0 && (a[8] == 0 || a[8] == '=')) {
            const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fputs("spillway serve: --config needs a file\n", stderr);
                return 2;
            }
            /* sink lines are applied once the data directory is open (server.c) */
            if (spw_cfg_load_ex(spw_server_cfg_table, spw_server_cfg_count, &c, v, SPW_SINK_CONFIG_PREFIX, NULL, NULL,
                                err, sizeof err)) {
                fprintf(stderr, "spillway serve: %s\n", err);
                return 2;
            }
            if (strlen(v) >= sizeof c.config) {
                fputs("spillway serve: --config: path too long\n", stderr);
                return 2;
            }
            strcpy(c.config, v); /* SIGHUP reads it again */
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "spillway serve: unexpected argument '%s'\n", a);
            return 2;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) {
            fprintf(stderr, "spillway serve: unknown option '%s'\n", a);
            return 2;
        }
        memcpy(name, a + 2, nl);
        name[nl] = 0;
        const char *v = eq ? eq + 1 : NULL;
        const spw_cfg_entry *e = spw_cfg_find(spw_server_cfg_table, spw_server_cfg_count, name);
        if (!v && e && e->type == SPW_CFG_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
            v = "true";
        if (!v)
            v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) {
            fprintf(stderr, "spillway serve: --%s needs a value\n", name);
            return 2;
        }
        if (strcmp(name, "config") == 0)
            continue;
        if (strcmp(name, "ready-fd") == 0) {
            ready_fd = atoi(v);
            continue;
        }
        if (spw_cfg_set(spw_server_cfg_table, spw_server_cfg_count, &c, name, v, err, sizeof err)) {
            fprintf(stderr, "spillway serve: %s (see spillway serve --help)\n", err);
            return 2;
        }
        c.from_flag[e - spw_server_cfg_table] = 1; /* set, so e is a row of the table */
    }
    return spw_server_run(&c, ready_fd);
}

static int cmd_check(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc == 2 ? stdout : stderr;
        spw_help_write(f,
                       "usage: spillway check DIR\n"
                       "Verifies the header, CRC32C and every record of every batch in every segment\n"
                       "of every partition directory at or below DIR, and that offsets are dense.\n"
                       "Prints one DAMAGED line per damaged range and INDEX lines for index files\n"
                       "that do not fit their data (indexes are rebuilt when the partition opens).\n"
                       "Checks each stream's hot_keys file (its CRC and entries) too: DAMAGED when not whole.\n"
                       "Changes nothing. Exit 0 clean, 1 damage, 2 usage or DIR is not a directory,\n"
                       "3 a running server holds DIR (or a directory above it): stop it first,\n"
                       "4 DIR could not be read to the end.\n",
                       SPW_HELP_WIDTH);
        return argc == 2 ? 0 : 2;
    }
    struct stat st;
    if (stat(argv[1], &st) != 0 || !S_ISDIR(st.st_mode)) { /* nothing to check is not damage */
        fprintf(stderr, "spillway check: %s: %s\n", argv[1],
                stat(argv[1], &st) != 0 ? strerror(errno) : "not a directory");
        return 2;
    }
    /* A live server changes the files as they are read (an active
     * segment's tail is mid-write): its directory — DIR or one above it —
     * is not checked. */
    char dir[PATH_MAX];
    if (realpath(argv[1], dir)) {
        for (;;) {
            long pid;
            if (spw_os_dir_locked(dir, &pid)) {
                if (pid)
                    fprintf(stderr, "spillway check: %s is in use by a running spillway server (pid %ld holds %s/%s); "
                                    "stop it first: a live server's files change while they are read\n",
                            dir, pid, dir, SPW_LOCK_FILE);
                else
                    fprintf(stderr, "spillway check: %s is in use by a running spillway server (it holds %s/%s); "
                                    "stop it first: a live server's files change while they are read\n",
                            dir, dir, SPW_LOCK_FILE);
                return 3;
            }
            char *slash = strrchr(dir, '/');
            if (!slash || slash == dir)
                break;
            *slash = 0;
        }
    }
    spw_check_result res;
    int r = spw_check_dir(argv[1], stdout, &res);
    if (r < 0) {
        fprintf(stderr, "spillway check: %s: %s\n", argv[1], spw_strerror(r));
        return 4;
    }
    printf("checked %u partition(s), %u segment(s), %llu batches, %llu records, %llu bytes, %u hot_keys file(s): "
           "%u damaged range(s) or file(s), %u index issue(s)\n",
           res.partitions, res.segments, res.batches, res.records, res.bytes, res.hot_keys_files, res.damaged,
           res.index_issues);
    return res.damaged ? 1 : 0;
}

static int cmd_dump(int argc, char **argv)
{
    int headers = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            spw_help_write(stdout,
                           "usage: spillway dump SEGMENT [--headers]\n"
                           "Prints each batch header of a .log segment file and, unless --headers, each "
                           "record (offset, id, ts, key, value, headers; bytes outside printable ASCII as "
                           "\\xNN).\n",
                           SPW_HELP_WIDTH);
            return 0;
        }
        if (strcmp(argv[i], "--headers") == 0)
            headers = 1;
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "spillway dump: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        spw_help_write(stderr, "usage: spillway dump SEGMENT [--headers]\n", SPW_HELP_WIDTH);
        return 2;
    }
    int r = spw_dump_segment(path, stdout, headers);
    if (r < 0) {
        fprintf(stderr, "spillway dump: %s: %s\n", path, spw_strerror(r));
        return 1;
    }
    return r ? 1 : 0;
}

/* --cacert FILE (or --cacert=FILE) of a client command: taken out of
 * argv into $SPILLWAY_CACERT, which spw__cli_server reads. 0 or 2. */
static int take_cacert(int *argc, char **argv)
{
    for (int i = 2; i < *argc; i++) {
        const char *v = NULL;
        int n = 0;
        if (strcmp(argv[i], "--cacert") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "spillway %s: --cacert needs a value\n", argv[1]);
                return 2;
            }
            v = argv[i + 1];
            n = 2;
        } else if (strncmp(argv[i], "--cacert=", 9) == 0) {
            v = argv[i] + 9;
            n = 1;
        } else {
            continue;
        }
        if (access(v, R_OK) != 0) {
            fprintf(stderr, "spillway %s: --cacert %s: %s\n", argv[1], v, strerror(errno));
            return 2;
        }
        setenv("SPILLWAY_CACERT", v, 1);
        memmove(argv + i, argv + i + n, (size_t)(*argc - i - n + 1) * sizeof *argv);
        *argc -= n;
        i--;
    }
    return 0;
}

/*
 * Options written before the command (`spillway --server H:P stream list`)
 * are moved after it, where every command reads its options: the
 * leading `--flag value` and `--flag=value` words, in their order, go to
 * the end. --help, -h and --version before any command keep their
 * meaning. A flag followed by a word that is a command is taken to have
 * no value.
 */
static int is_command(const char *w)
{
    static const char *const cmds[] = {"serve", "produce", "consume", "stream", "view", "sink", "group",
                                       "bench", "top", "check", "version", "help", NULL};
    for (int i = 0; cmds[i]; i++)
        if (strcmp(w, cmds[i]) == 0)
            return 1;
    return 0;
}

static void options_after_command(int argc, char **argv)
{
    int lead = 1;
    while (lead < argc && strncmp(argv[lead], "--", 2) == 0 && strcmp(argv[lead], "--help") != 0 &&
           strcmp(argv[lead], "--version") != 0) {
        if (!strchr(argv[lead], '=') && lead + 1 < argc && strncmp(argv[lead + 1], "--", 2) != 0 &&
            !is_command(argv[lead + 1]))
            lead += 2;
        else
            lead += 1;
    }
    if (lead == 1 || lead >= argc)
        return;
    /* rotate argv[1..lead) behind argv[lead..argc) */
    int n = lead - 1;
    char **opts = malloc((size_t)n * sizeof *opts);
    if (!opts)
        return;
    memcpy(opts, argv + 1, (size_t)n * sizeof *opts);
    memmove(argv + 1, argv + lead, (size_t)(argc - lead) * sizeof *argv);
    memcpy(argv + 1 + (argc - lead), opts, (size_t)n * sizeof *opts);
    free(opts);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    options_after_command(argc, argv);
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("spillway %s (commit %s)\n", spw_version, spw_commit);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "produce") == 0 || strcmp(cmd, "consume") == 0 || strcmp(cmd, "stream") == 0 ||
        strcmp(cmd, "view") == 0 || strcmp(cmd, "sink") == 0 || strcmp(cmd, "group") == 0 ||
        strcmp(cmd, "top") == 0) {
        int r = take_cacert(&argc, argv);
        if (r)
            return r;
    }
    if (strcmp(cmd, "produce") == 0)
        return spw_cmd_produce(argc - 1, argv + 1);
    if (strcmp(cmd, "consume") == 0)
        return spw_cmd_consume(argc - 1, argv + 1);
    if (strcmp(cmd, "stream") == 0)
        return spw_cmd_stream(argc - 1, argv + 1);
    if (strcmp(cmd, "view") == 0)
        return spw_cmd_view(argc - 1, argv + 1);
    if (strcmp(cmd, "sink") == 0)
        return spw_cmd_sink(argc - 1, argv + 1);
    if (strcmp(cmd, "group") == 0)
        return spw_cmd_group(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return spw_cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "top") == 0)
        return spw_cmd_top(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "dump") == 0)
        return cmd_dump(argc - 1, argv + 1);
    fprintf(stderr, "spillway: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
