/* Fuzz target: the deployment file reader (YAML, ${VAR} expansion, core and plugin field
 * validation).  Any input must give either a deployment or diagnostics, never a crash.
 * FUZZ_SOURCES: core/tb_deploy.c core/tb_fields.c core/tb_diag.c core/tb_loader.c bus/tb_arena.c bus/tb_curve.c bus/tb_log.c bus/tb_metrics.c schemas/tb_codec.c $BUILD/obj/schemas/tb_msgs_desc.c */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tb_deploy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("deploy", 0);
    if (fd < 0) {
        return 0;
    }
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct tb_diag diag;
    tb_diag_init(&diag);
    tb_loader_t *loader = NULL;
    struct tb_deploy *d = NULL;
    tb_deploy_load(path, &loader, &d, &diag);
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        tb_diag_print(&diag, null);
        fclose(null);
    }
    tb_deploy_destroy(&d);
    tb_loader_destroy(&loader);
    tb_diag_release(&diag);
    close(fd);
    return 0;
}
