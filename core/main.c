/* turbine: command-line entry point; each command lives in its own module. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_bus_tools.h"
#include "tb_check.h"
#include "tb_keygen.h"
#include "tb_plugin.h"
#include "tb_serve.h"
#include "tb_tools.h"

static const char s_usage[] =
    "usage: turbine <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve FILE [--join ADDR] [--log-level L] [--log-format F]\n"
    "                     run the deployment in FILE until SIGTERM/SIGINT\n"
    "  check FILE...      validate FILE (or a deployment split into per-host files) without\n"
    "                     starting anything (exit 0, or 2 with errors)\n"
    "  keygen PREFIX [--force]\n"
    "                     write a CURVE key pair: PREFIX.key (secret) and PREFIX.pub\n"
    "  plugins [NAME] [--path DIR]\n"
    "                     list plugins, their versions and config keys\n"
    "  tokenize --model PATH [--text T] [--pieces] [--no-special]\n"
    "                     print the token ids of T (or stdin)\n"
    "  detokenize --model PATH IDS...\n"
    "                     print the text of token ids\n"
    "  routes --join ADDR [--watch SECONDS]\n"
    "                     print the routes of a running deployment (and their changes)\n"
    "  call --join ADDR ENDPOINT [--data TEXT]\n"
    "                     call an endpoint of a running deployment, print its chunks\n"
    "  version            print the version\n"
    "\n"
    "Run 'turbine <command> --help' for a command's options.  Docs: README.md, docs/.\n";

static const char s_serve_usage[] =
    "usage: turbine serve FILE [--join ADDR] [--log-level LEVEL] [--log-format text|json]\n"
    "\n"
    "Validates FILE, then starts every component it lists.  Nothing starts when FILE has an\n"
    "error (exit 2).  SIGTERM/SIGINT: stop accepting work, drain in-flight requests for\n"
    "shutdown.grace_period, exit 0.  SIGHUP reopens the log file.\n"
    "\n"
    "  --join ADDR        join the registry of a head process at ADDR (tcp://HOST:PORT or\n"
    "                     ipc://PATH) instead of running one here\n"
    "  --log-level LEVEL  error, warn, info (default), debug or trace; overrides log.level\n"
    "  --log-format F     text or json; overrides log.format\n";

static const char s_check_usage[] =
    "usage: turbine check FILE [FILE...]\n"
    "\n"
    "Validates a deployment file and the config of every component against its plugin, without\n"
    "starting anything or binding any port.  Prints each error as FILE:LINE:COLUMN with the "
    "key,\n"
    "the value, why it is wrong and how to fix it.  Exit 0 when valid, 2 otherwise.\n"
    "\n"
    "Several FILEs are the per-host files of one deployment: each is checked, then the whole:\n"
    "one namespace and discovery, a name in several files means replicas (same plugin and\n"
    "model), every router named exists, every model a preprocessor serves has an engine, and\n"
    "with bus.curve each process's public key is in every other's allowed keys.\n";

static const char s_plugins_usage[] =
    "usage: turbine plugins [NAME] [--path DIR]...\n"
    "\n"
    "Lists the plugins found on the search path (--path DIRs, then TURBINE_PLUGIN_PATH, then "
    "this\n"
    "build's plugins folder) with their versions and config keys: type, default, bounds, help.\n";

static bool s_wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return true;
        }
    }
    return false;
}

static int s_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"join", required_argument, NULL, 'j'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"log-format", required_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct tb_serve_opts o = {0};
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o.join = optarg;
            break;
        case 'l':
            o.log_level = optarg;
            break;
        case 'f':
            o.log_format = optarg;
            break;
        case 'h':
            fputs(s_serve_usage, stdout);
            return 0;
        default:
            fputs(s_serve_usage, stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "turbine serve: expected one deployment FILE\n%s", s_serve_usage);
        return 2;
    }
    o.file = argv[optind];
    return tb_serve_main(&o);
}

static int s_plugins(int argc, char **argv)
{
    static const struct option opts[] = {{"path", required_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dirs[32];
    int n = 0;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'p' && n < 32) {
            dirs[n++] = optarg;
        } else if (c == 'h') {
            fputs(s_plugins_usage, stdout);
            return 0;
        } else {
            fputs(s_plugins_usage, stderr);
            return 2;
        }
    }
    return tb_plugins_main(dirs, n, optind < argc ? argv[optind] : NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(s_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) {
        return s_serve(argc, argv);
    }
    if (strcmp(cmd, "check") == 0) {
        if (s_wants_help(argc, argv)) {
            fputs(s_check_usage, stdout);
            return 0;
        }
        if (argc < 3) {
            fprintf(stderr, "turbine check: expected a deployment FILE\n%s", s_check_usage);
            return 2;
        }
        if (argc == 3) {
            return tb_check_main(argv[2]);
        }
        return tb_check_files_main((const char *const *)argv + 2, (size_t)argc - 2);
    }
    if (strcmp(cmd, "plugins") == 0) {
        return s_plugins(argc, argv);
    }
    if (strcmp(cmd, "tokenize") == 0 || strcmp(cmd, "detokenize") == 0) {
        return tb_tools_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "routes") == 0 || strcmp(cmd, "call") == 0) {
        return tb_bus_tools_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "keygen") == 0) {
        return tb_keygen_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (s_wants_help(argc, argv)) {
            printf("usage: turbine version\n\nPrints turbine's version, plugin ABI and message "
                   "schema.\n");
            return 0;
        }
        printf("turbine %s (plugin ABI %d.%d) message schema %d.%d (fingerprint %016llx)\n",
               TB_VERSION, TB_ABI_MAJOR, TB_ABI_MINOR, TB_SCHEMA_MAJOR, TB_SCHEMA_MINOR,
               (unsigned long long)TB_SCHEMA_FINGERPRINT);
        return 0;
    }
    fprintf(stderr, "turbine: unknown command '%s'\n\n%s", cmd, s_usage);
    return 2;
}
