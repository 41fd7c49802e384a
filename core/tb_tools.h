/*
 * tb_tools.h - the text tools: `turbine tokenize` and `turbine detokenize`.
 */
#ifndef TB_TOOLS_H
#define TB_TOOLS_H

/* argv[0] is "tokenize" or "detokenize".  Exit status 0, 1 (model problem) or 2 (usage). */
int tb_tools_main(int argc, char **argv);

#endif /* TB_TOOLS_H */
