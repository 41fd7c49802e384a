/*
 * fuzz_jinja.c - libFuzzer target: any bytes as template source, parsed and rendered against a
 * fixed chat-like context with tight limits.  Must never crash, leak or hang; every failure
 * must be an error code with a message.
 *
 * FUZZ_SOURCES: plugins/common/tb_jinja.c plugins/common/tb_jinja_lexer.c plugins/common/tb_jinja_parser.c plugins/common/tb_jinja_eval.c plugins/common/tb_jinja_builtins.c plugins/common/tb_jinja_methods.c plugins/common/tb_jinja_filters.c plugins/common/tb_jinja_value.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tb_jinja.h"

static const char s_ctx[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"You are helpful.\"},"
    " {\"role\": \"user\", \"content\": \" Hi \\u00e9\\u3000 \"},"
    " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"id\": \"c1\","
    " \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"x\": 1}}}]},"
    " {\"role\": \"tool\", \"content\": \"42\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\":"
    " {\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"integer\"}}}}}],"
    " \"documents\": null, \"add_generation_prompt\": true, \"bos_token\": \"<s>\","
    " \"eos_token\": \"</s>\", \"n\": 3, \"f\": 2.5, \"big\": 9223372036854775807}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *ctx;
    if (!ctx) {
        ctx = json_loads(s_ctx, 0, NULL);
        if (!ctx) {
            abort();
        }
    }
    struct tb_jinja_limits lim = {
        .max_template_bytes = 64 * 1024,
        .max_output_bytes = 256 * 1024,
        .max_loop_iterations = 20000,
        .max_steps = 200000,
        .max_depth = 48,
        .max_alloc_bytes = 32u * 1024 * 1024,
    };
    char err[512];
    tb_jinja_t *tpl = NULL;
    int rc = tb_jinja_parse_with_limits((const char *)data, size, &lim, &tpl, err, sizeof(err));
    if (rc != 0) {
        if (tpl || err[0] == '\0') {
            abort(); /* a failed parse leaves nothing behind and says why */
        }
        return 0;
    }
    char *out = NULL;
    size_t len = 0;
    rc = tb_jinja_render(tpl, ctx, &out, &len, err, sizeof(err));
    if (rc == 0) {
        if (!out || strlen(out) > len || len > lim.max_output_bytes) {
            abort();
        }
        free(out);
    } else if (out || err[0] == '\0') {
        abort();
    }
    tb_jinja_destroy(&tpl);
    return 0;
}
