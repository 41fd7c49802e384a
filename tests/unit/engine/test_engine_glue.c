/*
 * test_engine_glue.c - what the engine's bus glue owns apart from the serving loop:
 *  - tb_sampling_params_from_msg, the one conversion of a gen_request's sampling fields: OpenAI
 *    defaults, then the model's generation config, then the request, field by field;
 *  - tb_engine_plugin, the descriptor a flavour gets: the shared keys then the flavour's own,
 *    moved past the shared config struct, and the flavour's name, probe and config size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tb_engine.h"
#include "tb_sampling_msg.h"

static void test_defaults_without_anything(void **state)
{
    (void)state;
    struct tb_msg_gen_request q = {.mode = "tokens"};
    struct tb_sampling_params p, want;
    tb_sampling_params_from_msg(&p, &q, NULL);
    tb_sampling_params_init(&want);
    assert_memory_equal(&p, &want, sizeof p);
}

static void test_model_defaults_then_request(void **state)
{
    (void)state;
    struct tb_generation_defaults g = {.temperature = 0.6,
                                       .top_p = 0.9,
                                       .top_k = 40,
                                       .repetition_penalty = 1.2,
                                       .do_sample = -1,
                                       .max_new_tokens = 77};
    struct tb_msg_gen_request q = {.mode = "tokens"};
    struct tb_sampling_params p;
    tb_sampling_params_from_msg(&p, &q, &g);
    assert_float_equal(p.temperature, 0.6f, 1e-6);
    assert_float_equal(p.top_p, 0.9f, 1e-6);
    assert_int_equal(p.top_k, 40);
    assert_float_equal(p.repetition_penalty, 1.2f, 1e-6);
    assert_int_equal(p.max_tokens, 77);

    /* do_sample false: greedy, whatever the temperature */
    g.do_sample = 0;
    tb_sampling_params_from_msg(&p, &q, &g);
    assert_float_equal(p.temperature, 0.0f, 0);

    /* every field the request sets wins */
    static const int32_t stops[] = {5, 9};
    q = (struct tb_msg_gen_request){.mode = "tokens",
                                    .temperature = 1.3,
                                    .has_temperature = true,
                                    .top_p = 0.5,
                                    .has_top_p = true,
                                    .top_k = 3,
                                    .has_top_k = true,
                                    .min_p = 0.1,
                                    .has_min_p = true,
                                    .presence_penalty = 0.25,
                                    .has_presence_penalty = true,
                                    .frequency_penalty = -0.5,
                                    .has_frequency_penalty = true,
                                    .repetition_penalty = 1.05,
                                    .has_repetition_penalty = true,
                                    .seed = 1234,
                                    .has_seed = true,
                                    .max_tokens = 10,
                                    .has_max_tokens = true,
                                    .min_tokens = 2,
                                    .has_min_tokens = true,
                                    .ignore_eos = true,
                                    .has_ignore_eos = true,
                                    .stop_token_ids = stops,
                                    .stop_token_ids_count = 2,
                                    .top_logprobs = 50,
                                    .has_top_logprobs = true};
    tb_sampling_params_from_msg(&p, &q, &g);
    assert_float_equal(p.temperature, 1.3f, 1e-6);
    assert_float_equal(p.top_p, 0.5f, 1e-6);
    assert_int_equal(p.top_k, 3);
    assert_float_equal(p.min_p, 0.1f, 1e-6);
    assert_float_equal(p.presence_penalty, 0.25f, 1e-6);
    assert_float_equal(p.frequency_penalty, -0.5f, 1e-6);
    assert_float_equal(p.repetition_penalty, 1.05f, 1e-6);
    assert_true(p.has_seed);
    assert_int_equal(p.seed, 1234);
    assert_int_equal(p.max_tokens, 10);
    assert_int_equal(p.min_tokens, 2);
    assert_true(p.ignore_eos);
    assert_ptr_equal(p.stop_ids, stops);
    assert_int_equal(p.n_stop_ids, 2);
    assert_true(p.logprobs); /* implied by top_logprobs */
    assert_int_equal(p.top_logprobs, TB_SAMPLER_MAX_TOP_LOGPROBS);

    /* max_tokens 0 or less is unset: the model's max_new_tokens stays */
    q = (struct tb_msg_gen_request){.mode = "tokens",
                                    .max_tokens = 0,
                                    .has_max_tokens = true,
                                    .logprobs = true,
                                    .has_logprobs = true};
    tb_sampling_params_from_msg(&p, &q, &g);
    assert_int_equal(p.max_tokens, 77);
    assert_true(p.logprobs);
    assert_int_equal(p.top_logprobs, 0);
}

/* ---- a flavour with two keys of its own ---- */

struct fake_config {
    int64_t streams;
    double memory_fraction;
};

static const struct tb_config_field s_fake_fields[] = {
    {.key = "streams",
     .type = TB_CFG_INT,
     .offset = offsetof(struct fake_config, streams),
     .default_value = "2",
     .help = "streams"},
    {.key = "gpu_memory_utilization",
     .type = TB_CFG_DOUBLE,
     .offset = offsetof(struct fake_config, memory_fraction),
     .default_value = "0.9",
     .help = "fraction of device memory"},
};

static int s_probe(const struct tb_host *host, char *why, size_t why_len)
{
    (void)host;
    (void)why;
    (void)why_len;
    return 0;
}

static const struct tb_backend_ops s_fake_ops = {.name = "fake"};

static const struct tb_engine_flavour s_fake = {
    .plugin_name = "engine_fake",
    .version = "9.9.9",
    .description = "a test flavour",
    .ops = &s_fake_ops,
    .fields = s_fake_fields,
    .field_count = 2,
    .config_size = sizeof(struct fake_config),
    .probe = s_probe,
};

static void test_flavour_descriptor(void **state)
{
    (void)state;
    const struct tb_plugin *pl = tb_engine_plugin(&s_fake);
    assert_non_null(pl);
    assert_ptr_equal(tb_engine_plugin(&s_fake), pl); /* built once */
    assert_int_equal(pl->struct_size, sizeof(struct tb_plugin));
    assert_int_equal(pl->abi_major, TB_ABI_MAJOR);
    assert_string_equal(pl->name, "engine_fake");
    assert_string_equal(pl->version, "9.9.9");
    assert_ptr_equal(pl->probe, s_probe);
    assert_non_null(pl->create);
    assert_non_null(pl->start);
    assert_non_null(pl->stop);
    assert_non_null(pl->destroy);
    assert_int_equal(pl->config_field_count, TB_ENGINE_CONFIG_FIELD_COUNT + 2);
    assert_int_equal(pl->config_size, TB_ENGINE_FLAVOUR_OFFSET + sizeof(struct fake_config));
    assert_true(TB_ENGINE_FLAVOUR_OFFSET >= sizeof(struct tb_engine_config));
    assert_int_equal(TB_ENGINE_FLAVOUR_OFFSET % 16, 0);
    for (size_t i = 0; i < TB_ENGINE_CONFIG_FIELD_COUNT; i++) {
        assert_string_equal(pl->config_fields[i].key, tb_engine_config_fields[i].key);
        assert_int_equal(pl->config_fields[i].offset, tb_engine_config_fields[i].offset);
        assert_true(pl->config_fields[i].offset < sizeof(struct tb_engine_config));
        assert_string_not_equal(pl->config_fields[i].key, "threads"); /* a CPU key */
    }
    const struct tb_config_field *f = &pl->config_fields[TB_ENGINE_CONFIG_FIELD_COUNT];
    assert_string_equal(f[0].key, "streams");
    assert_int_equal(f[0].offset,
                     TB_ENGINE_FLAVOUR_OFFSET + offsetof(struct fake_config, streams));
    assert_string_equal(f[1].key, "gpu_memory_utilization");
    assert_int_equal(f[1].offset,
                     TB_ENGINE_FLAVOUR_OFFSET + offsetof(struct fake_config, memory_fraction));
    assert_int_equal(f[1].type, TB_CFG_DOUBLE);
    /* the flavour's own table is untouched */
    assert_int_equal(s_fake_fields[0].offset, 0);
    /* one flavour per plugin file */
    struct tb_engine_flavour other = s_fake;
    assert_null(tb_engine_plugin(&other));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_anything),
        cmocka_unit_test(test_model_defaults_then_request),
        cmocka_unit_test(test_flavour_descriptor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
