/* libFuzzer target: the http frontend's JSON request decoder (both APIs) and the string escaper
 * answers are built with.  Any input must give a request or a 400-class error, never a crash or a
 * leak; escaped output must always be valid JSON.
 * FUZZ_SOURCES: plugins/http/tb_oai_request.c plugins/http/tb_oai_tools.c plugins/http/tb_oai_fields.c plugins/http/tb_oai_response.c plugins/common/tb_grammar.c plugins/common/tb_grammar_stack.c plugins/common/tb_json_schema.c */

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/http/tb_oai_request.h"  /* plugin-private header */
#include "../../plugins/http/tb_oai_response.h" /* plugin-private header */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    tb_oai_api_t api = (data[0] & 1) ? TB_OAI_COMPLETIONS : TB_OAI_CHAT;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    struct tb_oai_request *r = NULL;
    struct tb_oai_error e;
    int rc = tb_oai_request_parse(api, body, len, &r, &e);
    if (rc == 0) {
        if (!r || !r->model || !r->gen.mode) {
            abort();
        }
        /* The decoded strings go back out through the escaper: the result must parse. */
        struct tb_oai_head h = {
            .api = api, .id = "x", .model = r->model, .created = 1, .fingerprint = "fp"};
        struct tb_oai_usage u = {0};
        const char *text = r->gen.prompt ? r->gen.prompt : "";
        size_t blen = 0;
        char *out = tb_oai_final_body(&h, text, strlen(text), "stop", NULL, &u, &blen);
        if (out) {
            json_t *j = json_loadb(out, blen, 0, NULL);
            if (!j) {
                abort();
            }
            json_decref(j);
            free(out);
        }
        tb_oai_request_destroy(&r);
    } else if (r != NULL || (rc == TB_EINVAL && e.status != 400)) {
        abort();
    }

    /* Raw bytes through the escaper: always a JSON string. */
    struct tb_buf b;
    tb_buf_init(&b);
    if (tb_oai_json_string(&b, body, len) == 0) {
        json_t *j = json_loadb((const char *)b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                               NULL);
        if (!j || !json_is_string(j)) {
            abort();
        }
        json_decref(j);
    }
    tb_buf_free(&b);
    return 0;
}
