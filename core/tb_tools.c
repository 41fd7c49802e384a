/*
 * tb_tools: `turbine tokenize` and `turbine detokenize`.  The core links no tokenizer: these
 * commands exec the turbine-tokenize tool installed beside the turbine executable, with the same
 * arguments, so its output, messages and exit status are the command's.
 */
#include "tb_tools.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TOOL_NAME "turbine-tokenize"

/* Writes "<folder of this executable>/turbine-tokenize" into path.  0, or -1 when it does not
 * fit or /proc/self/exe cannot be read. */
static int s_tool_path(char *path, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        return -1;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash) {
        return -1;
    }
    *slash = '\0';
    int w = snprintf(path, size, "%s/%s", self, TOOL_NAME);
    return w > 0 && (size_t)w < size ? 0 : -1;
}

int tb_tools_main(int argc, char **argv)
{
    char path[PATH_MAX];
    if (s_tool_path(path, sizeof(path)) != 0) {
        fprintf(stderr, "turbine %s: cannot find the folder of the turbine executable\n",
                argv[0]);
        return 1;
    }
    /* The tool's argv: its own name, then "tokenize"/"detokenize" and the options. */
    char *args[argc + 2];
    args[0] = (char *)TOOL_NAME;
    for (int i = 0; i < argc; i++) {
        args[i + 1] = argv[i];
    }
    args[argc + 1] = NULL;
    fflush(NULL);
    execv(path, args);
    fprintf(stderr,
            "turbine %s: cannot run '%s': %s (it is built and installed beside turbine)\n",
            argv[0], path, strerror(errno));
    return 1;
}
