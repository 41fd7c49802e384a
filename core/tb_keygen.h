/*
 * tb_keygen.h - `turbine keygen PREFIX [--force]`: a CURVE key pair for one process of a
 * deployment whose bus is authenticated and encrypted (docs/operations.md).
 */
#ifndef TB_KEYGEN_H
#define TB_KEYGEN_H

/* argv[0] is "keygen".  Writes PREFIX.key (the secret key, mode 0600) and PREFIX.pub; refuses to
 * replace either unless --force.  Exit status: 0, 1 when a file cannot be written, 2 for usage
 * or an existing file. */
int tb_keygen_main(int argc, char **argv);

#endif /* TB_KEYGEN_H */
