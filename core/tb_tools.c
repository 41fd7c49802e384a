/* tb_tools: tokenize/detokenize commands; they arrive with the tokenizer library. */
#include "tb_tools.h"

#include <stdio.h>

int tb_tools_main(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "turbine %s: not available in this build yet\n", argv[0]);
    return 2;
}
