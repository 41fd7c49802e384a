/* Unit tests of deployment validation: each bad config gives its message at its line:column, with
 * the key and a fix; valid configs load with defaults, replicas and ${VAR} expansion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tb_deploy.h"

/* The ABI minor as text, so the expected messages follow TB_ABI_MINOR. */
#define S_STR(x) #x
#define S_XSTR(x) S_STR(x)
#define S_ABI_MINOR S_XSTR(TB_ABI_MINOR)

static char s_dir[256];

static const char *write_file(const char *text)
{
    static char path[320];
    snprintf(path, sizeof(path), "%s/deploy.yaml", s_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

struct bad {
    const char *name;
    const char *yaml;
    int line, column;
    const char *key; /* substring of the key path, or NULL */
    const char *why; /* substring of why */
    const char *fix; /* substring of the fix, or NULL */
};

#define HEAD "components:\n  - name: e\n    plugin: stub_ok\n    config:\n"

static const struct bad s_bad[] = {
    {"dynamo 847: a path as served_model_name",
     HEAD
     "      served_model_name: /app/modelscope/models/deepseek-ai/DeepSeek-R1-Distill-Llama-8B\n",
     5, 26, "served_model_name", "looks like a filesystem path",
     "use a short name such as 'deepseek-r1-distill-llama-8b'"},
    {"path under served_model_name also says where it goes",
     HEAD "      served_model_name: ./models/tiny\n", 5, 26, "served_model_name",
     "filesystem path", "put the path under 'model'"},
    {"empty served_model_name", HEAD "      served_model_name: \"\"\n", 5, 26,
     "served_model_name", "cannot be empty", NULL},
    {"whitespace in served_model_name", HEAD "      served_model_name: my model\n", 5, 26,
     "served_model_name", "whitespace", "replace spaces"},
    {"control character in served_model_name", HEAD "      served_model_name: \"a\\tb\"\n", 5, 26,
     "served_model_name", "control characters", NULL},
    {"double slash in served_model_name", HEAD "      served_model_name: org//model\n", 5, 26,
     "served_model_name", "filesystem path", NULL},
    {"dot-dot in served_model_name", HEAD "      served_model_name: a/../b\n", 5, 26,
     "served_model_name", "filesystem path", NULL},
    {"served_model_name over 128 bytes",
     HEAD
     "      served_model_name: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
     5, 26, "served_model_name", "at most 128 bytes", NULL},
    {"required served_model_name missing", HEAD "      count: 2\n", 5, 7, "served_model_name",
     "required key is missing", "add 'served_model_name:"},
    {"unknown plugin key with a suggestion", HEAD "      served_model_name: m\n      cout: 3\n",
     6, 7, "config.cout", "unknown key", "did you mean 'count'?"},
    {"integer out of range", HEAD "      served_model_name: m\n      count: 0\n", 6, 14,
     "config.count", "out of range", "between 1 and 64"},
    {"integer that is not one", HEAD "      served_model_name: m\n      count: four\n", 6, 14,
     "config.count", "expected an integer", NULL},
    {"number out of range", HEAD "      served_model_name: m\n      ratio: 1.5\n", 6, 14,
     "config.ratio", "out of range", NULL},
    {"enum with a typo", HEAD "      served_model_name: m\n      mode: fsat\n", 6, 13,
     "config.mode", "not one of the allowed values", "did you mean 'fast'?"},
    {"bool that is not one", HEAD "      served_model_name: m\n      flag: maybe\n", 6, 13,
     "config.flag", "expected a boolean", "true or false"},
    {"bad size unit", HEAD "      served_model_name: m\n      budget: 12XB\n", 6, 15,
     "config.budget", "expected a size", "512MiB"},
    {"size below its minimum", HEAD "      served_model_name: m\n      budget: 12\n", 6, 15,
     "config.budget", "out of range", NULL},
    {"bad duration", HEAD "      served_model_name: m\n      timeout: soon\n", 6, 16,
     "config.timeout", "expected a duration", "250ms"},
    {"model path that does not exist",
     HEAD "      served_model_name: m\n      model: /nonexistent/tb-model\n", 6, 14,
     "config.model", "cannot access it", NULL},
    {"list given as a mapping", HEAD "      served_model_name: m\n      stops: {a: 1}\n", 6, 14,
     "config.stops", "expected a list of strings", NULL},
    {"unset environment variable", HEAD "      served_model_name: ${TB_TEST_UNSET_VAR}\n", 5, 26,
     "served_model_name", "environment variable 'TB_TEST_UNSET_VAR' is not set",
     "${NAME:-value}"},
    {"unclosed variable reference", HEAD "      served_model_name: ${OOPS\n", 5, 26,
     "served_model_name", "without a closing", NULL},
    {"duplicate key in a config",
     HEAD "      served_model_name: m\n      count: 2\n      count: 3\n", 7, 7, "config.count",
     "appears twice", NULL},
    {"unknown top-level key", "componets:\n  - name: e\n", 1, 1, "componets", "unknown key",
     "did you mean 'components'?"},
    {"no components", "namespace: demo\n", 1, 1, "components", "no components", NULL},
    {"components not a list", "components:\n  name: e\n", 1, 1, "components", "must be a list",
     NULL},
    {"component without plugin", "components:\n  - name: e\n", 2, 5, "components[0]",
     "'plugin' is missing", "available:"},
    {"component without name", "components:\n  - plugin: echo\n", 2, 5, "components[0]",
     "'name' is missing", NULL},
    {"bad component name", "components:\n  - name: Engine 1\n    plugin: echo\n", 2, 11,
     "components[0].name", "[a-z0-9_-]", NULL},
    {"duplicate component name",
     "components:\n  - name: e\n    plugin: echo\n  - name: e\n    plugin: echo\n", 4, 5,
     "components[1]", "already used on line 2", "replicas"},
    {"plugin setting at component level",
     "components:\n  - name: e\n    plugin: stub_ok\n    served_model_name: m\n", 4, 5,
     "components[0].served_model_name", "unknown key", "plugin settings go under 'config'"},
    {"unknown plugin with a suggestion", "components:\n  - name: e\n    plugin: stub_okk\n", 3,
     13, "components[0].plugin", "not found", "did you mean 'stub_ok'?"},
    {"plugin built for another ABI major", "components:\n  - name: e\n    plugin: stub_major\n",
     3, 13, "plugin",
     "plugin ABI 2." S_ABI_MINOR " does not match this turbine's ABI 1." S_ABI_MINOR, "rebuild"},
    {"plugin needing a newer ABI minor", "components:\n  - name: e\n    plugin: stub_minor\n", 3,
     13, "plugin", ", newer than this turbine's ABI 1." S_ABI_MINOR, NULL},
    {"plugin descriptor too short", "components:\n  - name: e\n    plugin: stub_short\n", 3, 13,
     "plugin", "smaller than the", NULL},
    {"config rows shorter than a row", "components:\n  - name: e\n    plugin: stub_badstride\n",
     3, 13, "plugin", "config_field_size is 8, smaller than", NULL},
    {"config rows of a future ABI, read with their stride",
     "components:\n  - name: e\n    plugin: stub_stride\n    config:\n      served_model_name: "
     "m\n"
     "      count: 65\n",
     6, 14, "config.count", "out of range", "between 1 and 64"},
    {"plugin without the entry symbol", "components:\n  - name: e\n    plugin: stub_nosym\n", 3,
     13, "plugin", "does not export the symbol 'tb_plugin_entry'", NULL},
    {"YAML syntax error", "components:\n  - name: e\n   plugin: [echo\n", 3, 4, NULL,
     "YAML syntax error", "fix the YAML syntax"},
    {"empty file", "", 0, 0, NULL, "the file is empty", NULL},
    {"root is a list", "- a\n- b\n", 1, 1, NULL, "must be a mapping", NULL},
    {"replicas out of range", "components:\n  - name: e\n    plugin: echo\n    replicas: 0\n", 4,
     15, "replicas", "between 1 and 64", NULL},
    {"lease ttl not above heartbeat",
     "registry:\n  heartbeat_interval: 2s\n  lease_ttl: 1s\ncomponents:\n  - name: e\n    "
     "plugin: "
     "echo\n",
     3, 14, "registry.lease_ttl", "must be longer than heartbeat_interval", NULL},
    {"bad log level", "log:\n  level: loud\ncomponents:\n  - name: e\n    plugin: echo\n", 2, 10,
     "log.level", "not one of the allowed values", "error, warn, info, debug, trace"},
    {"bad namespace", "namespace: My Space\ncomponents:\n  - name: e\n    plugin: echo\n", 1, 12,
     "namespace", "[a-z0-9_-]", NULL},
};

/* One bad config: its error must be reported at its line:column with its key, why and fix. */
static void test_one_bad_config(void **state)
{
    const struct bad *b = *state;
    const char *path = write_file(b->yaml);
    struct tb_diag diag;
    tb_diag_init(&diag);
    tb_loader_t *loader = NULL;
    struct tb_deploy *d = NULL;
    int rc = tb_deploy_load(path, &loader, &d, &diag);
    bool found = false;
    for (size_t k = 0; rc == TB_ECONFIG && k < diag.n && !found; k++) {
        const struct tb_diag_entry *e = &diag.v[k];
        found = e->line == b->line && e->column == b->column && e->why &&
                strstr(e->why, b->why) && (!b->key || (e->key && strstr(e->key, b->key))) &&
                (!b->fix || (e->fix && strstr(e->fix, b->fix))) && strcmp(e->file, path) == 0;
    }
    if (!found) {
        print_error("wanted %d:%d key~'%s' why~'%s' fix~'%s' (rc %d); got:\n", b->line, b->column,
                    b->key ? b->key : "", b->why, b->fix ? b->fix : "", rc);
        tb_diag_print(&diag, stderr);
    }
    tb_diag_release(&diag);
    tb_loader_destroy(&loader);
    tb_deploy_destroy(&d);
    assert_true(found);
}

static void test_every_error_collected(void **state)
{
    (void)state;
    const char *path = write_file("log:\n  level: loud\ncomponents:\n  - name: e\n    plugin: "
                                  "stub_ok\n    config:\n      count: 0\n      mode: x\n");
    struct tb_diag diag;
    tb_diag_init(&diag);
    tb_loader_t *loader = NULL;
    struct tb_deploy *d = NULL;
    assert_int_equal(tb_deploy_load(path, &loader, &d, &diag), TB_ECONFIG);
    /* level, count, mode, and the missing served_model_name: all four at once */
    assert_int_equal(diag.n, 4);
    tb_diag_release(&diag);
    tb_loader_destroy(&loader);
}

static void test_valid_config_with_defaults(void **state)
{
    (void)state;
    setenv("TB_TEST_MODEL_NAME", "tiny-stories", 1);
    const char *path = write_file(
        "namespace: demo\n"
        "shutdown:\n  grace_period: 250ms\n"
        "components:\n"
        "  - name: e\n    plugin: stub_ok\n    replicas: 3\n"
        "    config:\n"
        "      served_model_name: ${TB_TEST_MODEL_NAME}\n"
        "      label: ${TB_TEST_UNSET_VAR:-fallback}\n"
        "      budget: 2GiB\n"
        "      stops: [\"a\", \"b\"]\n"
        "      model: /tmp\n"
        "  - name: org-name\n    plugin: stub_ok\n"
        "    config:\n      served_model_name: meta-llama/Llama-3-8B\n");
    struct tb_diag diag;
    tb_diag_init(&diag);
    tb_loader_t *loader = NULL;
    struct tb_deploy *d = NULL;
    int rc = tb_deploy_load(path, &loader, &d, &diag);
    if (rc != 0) {
        tb_diag_print(&diag, stderr);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(d->core.ns, "demo");
    assert_true(d->core.grace_s == 0.25);
    assert_true(d->core.heartbeat_s == 1.0);
    assert_true(d->core.lease_ttl_s == 3.0);
    assert_int_equal(d->n_comps, 2);
    assert_int_equal(d->comps[0].replicas, 3);
    struct {
        bool flag;
        int64_t count;
        double ratio;
        const char *label;
        int mode;
        const char *served_model_name;
        const char *model;
        int64_t budget;
        double timeout;
        struct tb_str_list stops;
    } *cfg = d->comps[0].config;
    assert_string_equal(cfg->served_model_name, "tiny-stories");
    assert_string_equal(cfg->label, "fallback");
    assert_int_equal(cfg->count, 4);
    assert_int_equal(cfg->mode, 2);
    assert_true(cfg->budget == ((int64_t)2 << 30));
    assert_true(cfg->timeout == 2.0);
    assert_int_equal(cfg->stops.count, 2);
    assert_string_equal(cfg->stops.items[1], "b");
    tb_deploy_destroy(&d);
    tb_loader_destroy(&loader);
    tb_diag_release(&diag);
}

int main(void)
{
    const char *build = getenv("TB_BUILD");
    char plugins[1024];
    snprintf(plugins, sizeof(plugins), "%s/tests/plugins:%s/plugins",
             build ? build : "build/release", build ? build : "build/release");
    setenv("TURBINE_PLUGIN_PATH", plugins, 1);
    unsetenv("TB_TEST_UNSET_VAR");
    snprintf(s_dir, sizeof(s_dir), "/tmp/tb-test-deploy-%d", (int)getpid());
    mkdir(s_dir, 0700);
    size_t n_bad = sizeof(s_bad) / sizeof(s_bad[0]);
    struct CMUnitTest tests[64];
    size_t n = 0;
    for (size_t i = 0; i < n_bad && n < 60; i++) {
        tests[n++] = (struct CMUnitTest){s_bad[i].name, test_one_bad_config, NULL, NULL,
                                         (void *)&s_bad[i]};
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_every_error_collected);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_valid_config_with_defaults);
    int rc = _cmocka_run_group_tests("deploy", tests, n, NULL, NULL);
    char path[320];
    snprintf(path, sizeof(path), "%s/deploy.yaml", s_dir);
    unlink(path);
    rmdir(s_dir);
    return rc;
}
