/*
 * Fuzz target: any bytes as a model's answer, through the tool-call parser of every format (held
 * and stream mode, cut into pieces whose sizes the first byte chooses) and the reasoning parser.
 * Checks: no crash, no leak; in held mode an answer with no call comes back whole as content
 * (nothing lost, nothing invented; llama3_json may drop leading whitespace and a lone
 * <|python_tag|>, so it is checked for crashes only); every released call has a name and its
 * arguments parse as a JSON object.
 *
 * FUZZ_SOURCES: plugins/common/tb_tool_parser.c plugins/common/tb_reasoning_parser.c plugins/common/tb_json_schema.c plugins/common/tb_grammar.c plugins/common/tb_grammar_stack.c schemas/tb_utf8.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tb_buf.h"
#include "tb_reasoning_parser.h"
#include "tb_tool_parser.h"

#define MAX_CALLS 64

static void s_run(tb_tool_format_t f, bool stream, const uint8_t *data, size_t size, size_t piece,
                  const json_t *tools)
{
    tb_tool_parser_t *p = NULL;
    if (tb_tool_parser_new(f, tools, stream, 1, &p) != 0) {
        abort();
    }
    struct tb_buf content = {0};
    struct tb_buf args[MAX_CALLS] = {{0}};
    size_t n_calls = 0;
    for (size_t at = 0; at <= size; at = at < size && at + piece > size ? size : at + piece) {
        size_t n = piece < size - at ? piece : size - at;
        if (at == size ? tb_tool_parser_finish(p)
                       : tb_tool_parser_push(p, (const char *)data + at, n)) {
            abort();
        }
        size_t len, nd;
        const char *c = tb_tool_parser_content(p, &len);
        if (c) {
            tb_buf_append(&content, c, len);
        }
        const struct tb_tool_delta *d = tb_tool_parser_deltas(p, &nd);
        for (size_t i = 0; i < nd; i++) {
            if (d[i].id && (!d[i].name || !d[i].name[0] || d[i].index != (int64_t)n_calls)) {
                abort();
            }
            n_calls += d[i].id ? 1 : 0;
            if (d[i].index < MAX_CALLS) {
                tb_buf_puts(&args[d[i].index], d[i].arguments);
            }
        }
        tb_tool_parser_take(p);
        if (at == size) {
            break;
        }
    }
    if (!stream && n_calls == 0 && f != TB_TOOL_FORMAT_LLAMA3 &&
        (content.len != size || (size && memcmp(content.data, data, size) != 0))) {
        abort(); /* text lost or invented */
    }
    for (size_t i = 0; !stream && i < n_calls && i < MAX_CALLS; i++) {
        json_error_t je;
        json_t *a = json_loadb((const char *)args[i].data, args[i].len, 0, &je);
        if (!json_is_object(a)) {
            abort(); /* a released call's arguments are an object */
        }
        json_decref(a);
    }
    for (size_t i = 0; i < MAX_CALLS; i++) {
        tb_buf_free(&args[i]);
    }
    tb_buf_free(&content);
    tb_tool_parser_destroy(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    size_t piece = 1 + data[0] % 17;
    data++;
    size--;
    json_error_t je;
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
                               "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]",
                               0, &je);
    for (int f = TB_TOOL_FORMAT_HERMES; f <= TB_TOOL_FORMAT_DEEPSEEK; f++) {
        s_run((tb_tool_format_t)f, false, data, size, piece, tools);
        s_run((tb_tool_format_t)f, true, data, size, piece, tools);
    }
    json_decref(tools);
    for (int opened = 0; opened < 2; opened++) {
        tb_reasoning_parser_t *r = NULL;
        if (tb_reasoning_parser_new(opened, &r) != 0) {
            abort();
        }
        size_t total = 0;
        for (size_t at = 0; at < size; at += piece) {
            size_t n = piece < size - at ? piece : size - at;
            tb_reasoning_parser_push(r, (const char *)data + at, n);
            size_t rl, cl;
            tb_reasoning_parser_reasoning(r, &rl);
            tb_reasoning_parser_content(r, &cl);
            total += rl + cl;
            tb_reasoning_parser_take(r);
        }
        tb_reasoning_parser_finish(r);
        size_t rl, cl;
        tb_reasoning_parser_reasoning(r, &rl);
        tb_reasoning_parser_content(r, &cl);
        if (total + rl + cl > size) {
            abort(); /* the parts are never more than the answer */
        }
        tb_reasoning_parser_destroy(&r);
    }
    return 0;
}
