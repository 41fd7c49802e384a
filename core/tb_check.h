/*
 * tb_check.h - `turbine check A.yaml B.yaml ...`: a deployment split into per-host files,
 * validated as a whole without starting anything (docs/operations.md "Running on several
 * machines").
 *
 * Each file is first validated on its own, as `turbine check FILE` does.  When every file is
 * valid, the checks across files follow, each error naming the file, line and column of the key
 * at fault and the fix:
 *   - one namespace, and one discovery: the same etcd endpoints and prefix in every file, or (the
 *     embedded registry) exactly one head file with registry.listen, the others joining it;
 *   - a component name used in several files names replicas of one component: same plugin, same
 *     served model;
 *   - every `router:` a frontend or preprocessor names is a router component in some file, and a
 *     router has an engine to choose from in some file;
 *   - every model a preprocessor serves is served by a `tokens` engine in some file, and a
 *     frontend has some model to list;
 *   - CURVE in every file or in none; with CURVE, the public key of each process is in the allowed
 *     keys of every other, and the head's public key is the one the joining files name.
 */
#ifndef TB_CHECK_H
#define TB_CHECK_H

#include <stddef.h>

/* Validates `files` (n >= 2).  Prints one "ok" line per file and the deployment's summary to
 * stdout, every error to stderr.  Exit status 0, or 2 when any check fails. */
int tb_check_files_main(const char *const *files, size_t n);

#endif /* TB_CHECK_H */
