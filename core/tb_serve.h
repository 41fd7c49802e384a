/*
 * tb_serve.h - the `turbine serve` and `turbine check` commands: validate the deployment, start
 * the bus node and every component, run until SIGINT/SIGTERM, drain, stop.
 */
#ifndef TB_SERVE_H
#define TB_SERVE_H

struct tb_deploy;

struct tb_serve_opts {
    const char *file;
    const char *join;      /* NULL: this process is the head */
    const char *log_level; /* NULL: from the file */
    const char *log_format;
};

/* Exit status: 0 after a clean stop, 1 when something failed to start, 2 for a bad config. */
int tb_serve_main(const struct tb_serve_opts *o);

/* Validates the file, loading the plugins it names but starting nothing.  Prints every error
 * (file:line:column) to stderr.  Exit status 0 or 2. */
int tb_check_main(const char *file);

/* The line `turbine check` prints for a valid file: its namespace and components. */
void tb_check_print_ok(const char *file, const struct tb_deploy *d);

/* Lists the plugins found on the search path with their versions and config keys. */
int tb_plugins_main(const char *const *dirs, int n_dirs, const char *only);

#endif /* TB_SERVE_H */
