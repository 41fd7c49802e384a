/*
 * tb_tools.h - the text tools: `turbine tokenize` and `turbine detokenize`, run by the
 * turbine-tokenize executable installed beside turbine (the core links no tokenizer).
 */
#ifndef TB_TOOLS_H
#define TB_TOOLS_H

/* argv[0] is "tokenize" or "detokenize".  Replaces the process with turbine-tokenize (whose exit
 * status is 0, 1 for a model problem or 2 for usage); returns 1 only when it cannot be run. */
int tb_tools_main(int argc, char **argv);

#endif /* TB_TOOLS_H */
