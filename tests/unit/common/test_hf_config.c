/* Unit tests for tb_hf_config: config.json, generation_config.json, tokenizer_config.json. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tb_errors.h"
#include "tb_hf_config.h"

#define LLAMA_BASE                                                                               \
    "\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","                         \
    "\"hidden_size\":128,\"intermediate_size\":384,\"num_hidden_layers\":2,"                     \
    "\"num_attention_heads\":8,\"vocab_size\":2048"

#define GEMMA2_BASE                                                                              \
    "\"architectures\":[\"Gemma2ForCausalLM\"],\"model_type\":\"gemma2\","                       \
    "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":4,"                      \
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,\"vocab_size\":300"
#define PHI3_BASE                                                                                \
    "\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":128,"                      \
    "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"vocab_size\":300,"                      \
    "\"max_position_embeddings\":64,\"original_max_position_embeddings\":16"

static int s_cfg(const char *json, struct tb_model_params *p, char *err, size_t n)
{
    tb_model_params_init(p);
    return tb_hf_config_parse(json, strlen(json), p, err, n);
}

static void test_tinystories_like(void **state)
{
    (void)state;
    const char *j = "{" LLAMA_BASE ",\"num_key_value_heads\":4,\"max_position_embeddings\":512,"
                    "\"rms_norm_eps\":1e-06,\"rope_theta\":10000.0,\"rope_scaling\":null,"
                    "\"tie_word_embeddings\":true,\"bos_token_id\":1,\"eos_token_id\":2,"
                    "\"hidden_act\":\"silu\",\"attention_bias\":false,\"mlp_bias\":false,"
                    "\"torch_dtype\":\"float32\",\"initializer_range\":0.02}";
    struct tb_model_params p;
    char err[256] = "";
    assert_int_equal(s_cfg(j, &p, err, sizeof err), 0);
    assert_string_equal(p.arch, "llama");
    assert_int_equal(p.format, TB_MODEL_FORMAT_HF);
    assert_int_equal(p.n_layers, 2);
    assert_int_equal(p.hidden, 128);
    assert_int_equal(p.intermediate, 384);
    assert_int_equal(p.n_heads, 8);
    assert_int_equal(p.n_kv_heads, 4);
    assert_int_equal(p.head_dim, 16);
    assert_int_equal(p.vocab, 2048);
    assert_int_equal(p.max_context, 512);
    assert_true(p.rms_eps == 1e-6);
    assert_true(p.rope_theta == 10000.0);
    assert_int_equal(p.rope_scaling.type, TB_ROPE_SCALING_NONE);
    assert_int_equal(p.rope_layout, TB_ROPE_NEOX);
    assert_true(p.tied_embeddings);
    assert_false(p.qkv_bias);
    assert_int_equal(p.bos_id, 1);
    assert_int_equal(p.eos_id, 2);
    assert_int_equal(p.n_eos_ids, 1);
    assert_int_equal(p.eos_ids[0], 2);
    assert_int_equal(p.pad_id, -1);
    tb_model_params_release(&p);
}

static void test_defaults_and_variants(void **state)
{
    (void)state;
    struct tb_model_params p;
    char err[256] = "";
    /* minimal: kv heads default to heads, defaults for theta/eps/context, untied */
    assert_int_equal(s_cfg("{" LLAMA_BASE "}", &p, err, sizeof err), 0);
    assert_int_equal(p.n_kv_heads, 8);
    assert_int_equal(p.max_context, 2048);
    assert_true(p.rope_theta == 10000.0);
    assert_false(p.tied_embeddings);
    assert_int_equal(p.eos_id, -1);
    /* explicit head_dim different from hidden / heads */
    assert_int_equal(s_cfg("{" LLAMA_BASE ",\"head_dim\":32}", &p, err, sizeof err), 0);
    assert_int_equal(p.head_dim, 32);
    /* qwen2: qkv bias; mistral: sliding window recorded */
    assert_int_equal(s_cfg("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":"
                           "128,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\""
                           ":300,\"sliding_window\":4096,\"use_sliding_window\":false}",
                           &p, err, sizeof err),
                     0);
    assert_string_equal(p.arch, "qwen2");
    assert_true(p.qkv_bias);
    assert_int_equal(p.sliding_window, 0);
    assert_int_equal(s_cfg("{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":64,"
                           "\"intermediate_size\":128,\"num_hidden_layers\":1,"
                           "\"num_attention_heads\":4,\"vocab_size\":300,"
                           "\"sliding_window\":4096,\"eos_token_id\":[5,6,5]}",
                           &p, err, sizeof err),
                     0);
    assert_string_equal(p.arch, "mistral");
    assert_int_equal(p.sliding_window, 4096);
    assert_int_equal(p.eos_id, 5);
    assert_int_equal(p.n_eos_ids, 2);
    /* which layers slide, as transformers decides: Mistral's null window is none; qwen2 slides
     * layers >= max_window_layers (default 28); layer_types, when listed, decides */
    static const struct {
        const char *arch, *extra;
        uint32_t want;
    } win[] = {
        {"mistral", "\"sliding_window\":null", 0},
        {"mistral",
         "\"sliding_window\":5,\"layer_types\":[\"sliding_attention\",\"sliding_attention\"]", 5},
        {"mistral",
         "\"sliding_window\":5,\"layer_types\":[\"full_attention\",\"full_attention\"]", 0},
        {"qwen2", "\"use_sliding_window\":true,\"sliding_window\":5", 0},
        {"qwen2", "\"use_sliding_window\":true,\"sliding_window\":5,\"max_window_layers\":2", 0},
        {"qwen2", "\"use_sliding_window\":true,\"sliding_window\":5,\"max_window_layers\":0", 5},
    };
    for (size_t i = 0; i < sizeof win / sizeof win[0]; i++) {
        char j[512];
        snprintf(j, sizeof j,
                 "{\"model_type\":\"%s\",\"hidden_size\":64,\"intermediate_size\":128,"
                 "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":300,%s}",
                 win[i].arch, win[i].extra);
        int rc = s_cfg(j, &p, err, sizeof err);
        if (rc != 0 || p.sliding_window != win[i].want) {
            fail_msg("window case %zu: rc %d (%s), sliding_window %u, expected %u", i, rc, err,
                     p.sliding_window, win[i].want);
        }
        tb_model_params_release(&p);
    }
    /* integral reals are accepted for integers */
    assert_int_equal(s_cfg("{" LLAMA_BASE ",\"max_position_embeddings\":4096.0}", &p, err,
                           sizeof err),
                     0);
    assert_int_equal(p.max_context, 4096);
}

/* Qwen3's q/k norms and the experts of Mixtral, Qwen3-MoE and Qwen2-MoE (their transformers
 * config classes' keys and defaults). */
static void test_qwen3_and_experts(void **state)
{
    (void)state;
    struct tb_model_params p;
    char err[256] = "";
    const char *q3 = "{\"model_type\":\"qwen3\",\"hidden_size\":128,\"intermediate_size\":384,"
                     "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"head_dim\":32,"
                     "\"num_key_value_heads\":4,\"vocab_size\":2048,\"attention_bias\":false,"
                     "\"use_sliding_window\":false,\"sliding_window\":4096}";
    assert_int_equal(s_cfg(q3, &p, err, sizeof err), 0);
    assert_string_equal(p.arch, "qwen3");
    assert_true(p.qk_norm);
    assert_false(p.qkv_bias);
    assert_int_equal(p.head_dim, 32);
    assert_int_equal(p.sliding_window, 0);
    assert_int_equal(p.n_experts, 0);
    assert_false(p.norm_plus_one); /* Qwen3's q/k norms take the plain weight (Gemma 3: 1 + w) */
    char feats[256];
    assert_int_equal(tb_model_params_family_features(&p, feats, sizeof feats), 1);
    assert_string_equal(feats, "q/k norms");
    tb_model_params_release(&p);

    const char *mx = "{\"architectures\":[\"MixtralForCausalLM\"],\"hidden_size\":128,"
                     "\"intermediate_size\":384,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":8,\"vocab_size\":2048,\"num_local_experts\":8,"
                     "\"num_experts_per_tok\":2,\"sliding_window\":null}";
    assert_int_equal(s_cfg(mx, &p, err, sizeof err), 0);
    assert_string_equal(p.arch, "mixtral");
    assert_false(p.qk_norm);
    assert_int_equal(p.n_experts, 8);
    assert_int_equal(p.n_experts_used, 2);
    assert_int_equal(p.expert_intermediate, 384);
    assert_int_equal(p.moe_gating, TB_MOE_SOFTMAX_TOPK);
    assert_int_equal(tb_model_params_family_features(&p, feats, sizeof feats), 1);
    assert_string_equal(feats, "mixture of experts");
    tb_model_params_release(&p);

    const char *qm = "{\"model_type\":\"qwen3_moe\",\"hidden_size\":128,"
                     "\"intermediate_size\":384,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":8,\"vocab_size\":2048,\"num_experts\":16,"
                     "\"moe_intermediate_size\":64%s}";
    char buf[1024];
    snprintf(buf, sizeof buf, qm, "");
    assert_int_equal(s_cfg(buf, &p, err, sizeof err), 0);
    assert_true(p.qk_norm);
    assert_int_equal(p.n_experts_used, 8); /* Qwen3MoeConfig's default */
    assert_int_equal(p.expert_intermediate, 64);
    assert_int_equal(p.moe_gating, TB_MOE_SOFTMAX_ALL); /* norm_topk_prob defaults to false */
    /* the cuda flavour (Llama's layer only) refuses both by these names */
    assert_int_equal(tb_model_params_family_features(&p, feats, sizeof feats), 2);
    assert_string_equal(feats, "q/k norms, mixture of experts");
    tb_model_params_release(&p);
    snprintf(buf, sizeof buf, qm, ",\"norm_topk_prob\":true,\"num_experts_per_tok\":4");
    assert_int_equal(s_cfg(buf, &p, err, sizeof err), 0);
    assert_int_equal(p.moe_gating, TB_MOE_SOFTMAX_TOPK);
    assert_int_equal(p.n_experts_used, 4);
    assert_int_equal(tb_model_moe_layer_count(&p), 2); /* every layer sparse by default */
    tb_model_params_release(&p);

    /* dense layers among the expert layers, as transformers picks them: layer i sparse iff it
     * is not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0 */
    const char *q4 = "{\"model_type\":\"qwen3_moe\",\"hidden_size\":128,"
                     "\"intermediate_size\":384,\"num_hidden_layers\":6,"
                     "\"num_attention_heads\":8,\"vocab_size\":2048,\"num_experts\":16,"
                     "\"moe_intermediate_size\":64%s}";
    const struct {
        const char *extra;
        bool dense[6];
    } mixed[] = {
        {",\"mlp_only_layers\":[0,4]", {true, false, false, false, true, false}},
        {",\"decoder_sparse_step\":2", {true, false, true, false, true, false}},
        {",\"decoder_sparse_step\":3,\"mlp_only_layers\":[5]",
         {true, true, false, true, true, true}},
        {",\"mlp_only_layers\":null,\"decoder_sparse_step\":1", {false}},
        {",\"mlp_only_layers\":[0,1,2,3,4,5]", {true, true, true, true, true, true}},
    };
    for (size_t i = 0; i < sizeof mixed / sizeof mixed[0]; i++) {
        snprintf(buf, sizeof buf, q4, mixed[i].extra);
        assert_int_equal(s_cfg(buf, &p, err, sizeof err), 0);
        uint32_t n_moe = 0;
        for (uint32_t l = 0; l < 6; l++) {
            assert_int_equal(p.layer_dense[l], mixed[i].dense[l]);
            assert_int_equal(tb_model_layer_is_moe(&p, l), !mixed[i].dense[l]);
            n_moe += !mixed[i].dense[l];
        }
        assert_int_equal(tb_model_moe_layer_count(&p), n_moe);
        assert_false(tb_model_layer_is_moe(&p, 6)); /* out of range */
        /* the cuda flavour refuses the mix by name */
        assert_int_equal(tb_model_params_family_features(&p, feats, sizeof feats),
                         n_moe < 6 ? 3 : 2);
        assert_true((strstr(feats, "dense layers among the experts") != NULL) == (n_moe < 6));
        tb_model_params_release(&p);
    }

    const struct {
        const char *extra, *why;
    } bad[] = {
        {",\"num_experts_per_tok\":17", "num_experts_per_tok 17 is more than the 16 experts"},
        {",\"mlp_only_layers\":[2]", "mlp_only_layers[0]: is not a layer index 0..1"},
        {",\"mlp_only_layers\":[0,-1]", "mlp_only_layers[1]: is not a layer index 0..1"},
        {",\"mlp_only_layers\":[\"0\"]", "mlp_only_layers[0]: is not a layer index"},
        {",\"mlp_only_layers\":0", "mlp_only_layers: is not a list"},
        {",\"decoder_sparse_step\":0", "decoder_sparse_step 0: is out of range"},
        {",\"norm_topk_prob\":1", "norm_topk_prob 1: is not true or false"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, qm, bad[i].extra);
        assert_int_equal(s_cfg(buf, &p, err, sizeof err), TB_EMODEL);
        assert_non_null(strstr(err, bad[i].why));
        tb_model_params_release(&p);
    }
    const char *q2 = "{\"model_type\":\"qwen2_moe\",\"hidden_size\":128,"
                     "\"intermediate_size\":384,\"num_hidden_layers\":2,"
                     "\"num_attention_heads\":8,\"vocab_size\":2048,\"num_experts\":4,"
                     "\"moe_intermediate_size\":64,\"shared_expert_intermediate_size\":96}";
    assert_int_equal(s_cfg(q2, &p, err, sizeof err), 0);
    assert_true(p.qkv_bias);
    assert_int_equal(p.n_experts_used, 4);
    assert_int_equal(p.shared_intermediate, 96);
    tb_model_params_release(&p);
    const char *q2_no_shared = "{\"model_type\":\"qwen2_moe\",\"hidden_size\":128,"
                               "\"intermediate_size\":384,\"num_hidden_layers\":2,"
                               "\"num_attention_heads\":8,\"vocab_size\":2048,"
                               "\"num_experts\":4,\"moe_intermediate_size\":64}";
    assert_int_equal(s_cfg(q2_no_shared, &p, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "shared_expert_intermediate_size"));
    tb_model_params_release(&p);
}

static void test_rope_scaling(void **state)
{
    (void)state;
    struct tb_model_params p;
    char err[256] = "";
    assert_int_equal(s_cfg("{" LLAMA_BASE
                           ",\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":8.0,"
                           "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                           "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}",
                           &p, err, sizeof err),
                     0);
    assert_int_equal(p.rope_scaling.type, TB_ROPE_SCALING_LLAMA3);
    assert_true(p.rope_scaling.factor == 8.0);
    assert_true(p.rope_scaling.low_freq_factor == 1.0);
    assert_true(p.rope_scaling.high_freq_factor == 4.0);
    assert_int_equal(p.rope_scaling.original_max_positions, 8192);
    assert_true(p.rope_theta == 500000.0);
    assert_int_equal(s_cfg("{" LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}",
                           &p, err, sizeof err),
                     0);
    assert_int_equal(p.rope_scaling.type, TB_ROPE_SCALING_LINEAR);
    assert_true(p.rope_scaling.factor == 2.0);
    assert_int_equal(s_cfg("{" LLAMA_BASE ",\"rope_parameters\":{\"rope_type\":\"default\","
                           "\"rope_theta\":1000.0}}",
                           &p, err, sizeof err),
                     0);
    assert_true(p.rope_theta == 1000.0);
    assert_int_equal(p.rope_scaling.type, TB_ROPE_SCALING_NONE);
}

struct bad {
    const char *json;
    const char *expect;
};

static void test_refusals_name_key_and_value(void **state)
{
    (void)state;
    const struct bad cases[] = {
        {"[]", "not a JSON object"},
        {"{", "invalid JSON"},
        {"{\"model_type\":\"gpt2\"}", "model_type \"gpt2\": is not supported"},
        {"{\"architectures\":[\"GPT2LMHeadModel\"]}", "architectures[0] \"GPT2LMHeadModel\""},
        {"{\"hidden_size\":4}", "neither model_type nor architectures"},
        {"{\"model_type\":\"llama\",\"hidden_size\":128}", "required key 'num_hidden_layers'"},
        {"{" LLAMA_BASE ",\"hidden_act\":\"gelu\"}", "hidden_act \"gelu\": is not supported"},
        {"{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
         "rope_scaling.rope_type \"yarn\": is not supported"},
        {"{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}",
         "needs 'low_freq_factor'"},
        {"{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"linear\"}}", "needs 'factor'"},
        {"{" LLAMA_BASE ",\"rope_scaling\":{\"factor\":2}}", "has no rope_type"},
        {"{" LLAMA_BASE ",\"rope_scaling\":[1]}", "rope_scaling [1]: is not an object"},
        {"{" LLAMA_BASE ",\"attention_bias\":true}", "attention_bias true"},
        {"{" LLAMA_BASE ",\"mlp_bias\":true}", "mlp_bias true"},
        {"{" LLAMA_BASE ",\"num_key_value_heads\":3}", "not a multiple of num_key_value_heads 3"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":1,\"hidden_size\":\"128\"}",
         "hidden_size \"128\": is not an integer"},
        {"{\"model_type\":\"llama\",\"hidden_size\":-1,\"intermediate_size\":1,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":1,\"vocab_size\":1}",
         "hidden_size -1: is out of range"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":100000}", "num_hidden_layers 100000"},
        {"{" LLAMA_BASE ",\"rms_norm_eps\":\"x\"}", "rms_norm_eps \"x\": is not a number"},
        {"{" LLAMA_BASE ",\"tie_word_embeddings\":1}", "tie_word_embeddings 1: is not true"},
        {"{" LLAMA_BASE ",\"eos_token_id\":[1,\"x\"]}", "eos_token_id [1,\"x\"]"},
        {"{" LLAMA_BASE ",\"bos_token_id\":[1]}", "bos_token_id [1]: is not an integer"},
        {"{" LLAMA_BASE ",\"partial_rotary_factor\":0.5}", "partial_rotary_factor 0.5"},
        {"{" LLAMA_BASE ",\"head_dim\":7}", "head_dim 7"},
        {"{" LLAMA_BASE ",\"text_config\":{}}", "text_config"},
        {"{\"model_type\":\"llama\",\"hidden_size\":100,\"intermediate_size\":1,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":7,\"vocab_size\":1}",
         "hidden_size 100 is not a multiple"},
        {"{" LLAMA_BASE ",\"model_type\":\"llama\"}", "duplicate"},
        {"{" LLAMA_BASE ",\"sliding_window\":0}", "sliding_window 0: is out of range"},
        {"{" LLAMA_BASE ",\"sliding_window\":8,\"layer_types\":[\"sliding_attention\"]}",
         "layer_types [\"sliding_attention\"]: is not a list of one type per layer"},
        {"{" LLAMA_BASE ",\"sliding_window\":8,\"layer_types\":[\"local\",\"local\"]}",
         "holds a type other than"},
        {"{" GEMMA2_BASE ",\"hidden_activation\":\"gelu\"}",
         "hidden_activation \"gelu\": is not supported (only gelu_pytorch_tanh"},
        {"{" GEMMA2_BASE ",\"attn_logit_softcapping\":-1}", "attn_logit_softcapping -1"},
        {"{" PHI3_BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1,1],"
         "\"long_factor\":[1,1,1,1]}}",
         "short_factor [1,1]: is not a list of 4 factors"},
        {"{" PHI3_BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":[1,1,1,0],"
         "\"long_factor\":[1,1,1,1]}}",
         "short_factor 0: is not a positive number"},
        {"{" LLAMA_BASE ",\"partial_rotary_factor\":0.5}", "only 1.0"},
        {NULL, NULL},
    };
    for (size_t i = 0; cases[i].json; i++) {
        struct tb_model_params p;
        char err[256] = "";
        int rc = s_cfg(cases[i].json, &p, err, sizeof err);
        if (rc != TB_EMODEL || !strstr(err, cases[i].expect) ||
            strncmp(err, "config.json: ", 13) != 0) {
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err, cases[i].expect);
        }
        tb_model_params_release(&p);
    }
}

static void test_generation_config(void **state)
{
    (void)state;
    struct tb_model_params p;
    char err[256] = "";
    tb_model_params_init(&p);
    p.eos_id = 2;
    p.eos_ids[p.n_eos_ids++] = 2;
    const char *j = "{\"bos_token_id\":1,\"eos_token_id\":[2,7,9],\"temperature\":0.6,"
                    "\"top_p\":0.9,\"top_k\":40,\"do_sample\":true,\"max_new_tokens\":100,"
                    "\"repetition_penalty\":1.1,\"max_length\":4096,\"pad_token_id\":0}";
    assert_int_equal(tb_hf_generation_config_parse(j, strlen(j), &p, err, sizeof err), 0);
    assert_true(p.gen.temperature == 0.6);
    assert_true(p.gen.top_p == 0.9);
    assert_int_equal(p.gen.top_k, 40);
    assert_int_equal(p.gen.do_sample, 1);
    assert_int_equal(p.gen.max_new_tokens, 100);
    assert_int_equal(p.gen.max_length, 4096);
    assert_true(p.gen.repetition_penalty == 1.1);
    assert_int_equal(p.eos_id, 2);
    assert_int_equal(p.n_eos_ids, 3);
    assert_int_equal(p.eos_ids[1], 7);
    assert_int_equal(p.eos_ids[2], 9);
    assert_int_equal(p.bos_id, 1);
    assert_int_equal(p.pad_id, 0);
    const char *bad[][2] = {
        {"{\"top_p\":1.5}", "generation_config.json: top_p 1.5: is out of range"},
        {"{\"temperature\":-1}", "temperature -1"},
        {"{\"top_k\":\"x\"}", "top_k \"x\""},
        {"{\"do_sample\":\"yes\"}", "do_sample \"yes\""},
        {"{\"eos_token_id\":[1,2,3,4,5,6,7,8,9,10]}", "too many"},
        {"7", "invalid JSON"},
        {"[1]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tb_hf_generation_config_parse(bad[i][0], strlen(bad[i][0]), &p, err, sizeof err);
        if (rc != TB_EMODEL || !strstr(err, bad[i][1])) {
            fail_msg("case %zu: rc %d, message '%s'", i, rc, err);
        }
    }
    tb_model_params_release(&p);
}

static void test_tokenizer_config(void **state)
{
    (void)state;
    struct tb_model_params p;
    char err[256] = "";
    tb_model_params_init(&p);
    const char *j = "{\"add_bos_token\":true,\"add_eos_token\":false,"
                    "\"model_max_length\":1000000000000000019884624838656,"
                    "\"bos_token\":{\"content\":\"<s>\"},\"eos_token\":\"</s>\","
                    "\"pad_token\":null,\"unk_token\":\"<unk>\","
                    "\"added_tokens_decoder\":{\"0\":{\"content\":\"<unk>\"},"
                    "\"1\":{\"content\":\"<s>\"},\"2\":{\"content\":\"</s>\"}},"
                    "\"chat_template\":\"{{ messages }}\"}";
    assert_int_equal(tb_hf_tokenizer_config_parse(j, strlen(j), &p, err, sizeof err), 0);
    assert_int_equal(p.add_bos, 1);
    assert_int_equal(p.add_eos, 0);
    assert_int_equal(p.bos_id, 1);
    assert_int_equal(p.eos_id, 2);
    assert_int_equal(p.n_eos_ids, 1);
    assert_int_equal(p.unk_id, 0);
    assert_int_equal(p.pad_id, -1);
    assert_string_equal(p.chat_template, "{{ messages }}");
    /* a list of named templates: "default" wins over the first */
    const char *l = "{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},"
                    "{\"name\":\"default\",\"template\":\"D\"}]}";
    assert_int_equal(tb_hf_tokenizer_config_parse(l, strlen(l), &p, err, sizeof err), 0);
    assert_string_equal(p.chat_template, "D");
    const char *bad = "{\"chat_template\":[{\"name\":1}]}";
    assert_int_equal(tb_hf_tokenizer_config_parse(bad, strlen(bad), &p, err, sizeof err),
                     TB_EMODEL);
    assert_non_null(strstr(err, "chat_template"));
    const char *bad2 = "{\"add_bos_token\":\"yes\"}";
    assert_int_equal(tb_hf_tokenizer_config_parse(bad2, strlen(bad2), &p, err, sizeof err),
                     TB_EMODEL);
    assert_non_null(strstr(err, "tokenizer_config.json: add_bos_token \"yes\""));
    tb_model_params_release(&p);
    assert_null(p.chat_template);
}

static void s_write(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void s_rm(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void test_load_folder(void **state)
{
    (void)state;
    char dir[] = "/tmp/tb_hfcfg_XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct tb_model_params p;
    char err[512] = "";
    tb_model_params_init(&p);
    assert_int_equal(tb_hf_config_load_folder(dir, &p, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "config.json': no such file"));
    s_write(dir, "config.json", "{" LLAMA_BASE ",\"eos_token_id\":2}");
    s_write(dir, "generation_config.json", "{\"eos_token_id\":[2,3]}");
    s_write(dir, "chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}");
    s_write(dir, "tokenizer.json", "{}");
    assert_int_equal(tb_hf_config_load_folder(dir, &p, err, sizeof err), 0);
    assert_int_equal(p.n_eos_ids, 2);
    assert_string_equal(p.chat_template, "{% for m in messages %}{{ m.content }}{% endfor %}");
    assert_int_equal(p.tokenizer_source, TB_TOKENIZER_HF_JSON);
    assert_non_null(strstr(p.tokenizer_path, "/tokenizer.json"));
    tb_model_params_release(&p);
    /* tokenizer_config's template wins over chat_template.jinja */
    tb_model_params_init(&p);
    s_write(dir, "tokenizer_config.json", "{\"chat_template\":\"TC\"}");
    assert_int_equal(tb_hf_config_load_folder(dir, &p, err, sizeof err), 0);
    assert_string_equal(p.chat_template, "TC");
    tb_model_params_release(&p);
    /* a bad generation config names its file */
    tb_model_params_init(&p);
    s_write(dir, "generation_config.json", "{\"top_k\":-3}");
    assert_int_equal(tb_hf_config_load_folder(dir, &p, err, sizeof err), TB_EMODEL);
    assert_non_null(strstr(err, "generation_config.json: top_k -3"));
    tb_model_params_release(&p);
    s_rm(dir, "config.json");
    s_rm(dir, "generation_config.json");
    s_rm(dir, "tokenizer_config.json");
    s_rm(dir, "chat_template.jinja");
    s_rm(dir, "tokenizer.json");
    rmdir(dir);
}

/* Per-layer windows (layer_types, qwen2's max_window_layers, Gemma's patterns), Gemma's and
 * Phi-3's settings with transformers' defaults. */
static void test_families(void **state)
{
    (void)state;
    struct tb_model_params p;
    char err[256] = "";
    const char *mixed = "{" LLAMA_BASE ",\"sliding_window\":8,\"layer_types\":["
                        "\"sliding_attention\",\"full_attention\"]}";
    assert_int_equal(s_cfg(mixed, &p, err, sizeof err), 0);
    assert_int_equal(p.sliding_window, 8);
    assert_false(p.layer_full[0]);
    assert_true(p.layer_full[1]);
    tb_model_params_release(&p);
    const char *qwen =
        "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"vocab_size\":300,"
        "\"use_sliding_window\":true,\"sliding_window\":8,\"max_window_layers\":1}";
    assert_int_equal(s_cfg(qwen, &p, err, sizeof err), 0);
    assert_int_equal(p.sliding_window, 8);
    assert_true(p.layer_full[0]);
    assert_false(p.layer_full[1] || p.layer_full[2] || p.layer_full[3]);
    tb_model_params_release(&p);

    assert_int_equal(s_cfg("{" GEMMA2_BASE "}", &p, err, sizeof err), 0);
    assert_string_equal(p.arch, "gemma2");
    assert_int_equal(p.ffn_act, TB_FFN_GELU_TANH);
    assert_true(p.norm_plus_one && p.post_norms && !p.qk_norm && p.tied_embeddings);
    assert_int_equal(p.sliding_window, 4096);
    assert_true(!p.layer_full[0] && p.layer_full[1] && !p.layer_full[2] && p.layer_full[3]);
    assert_true(p.attn_softcap == 50.0 && p.final_softcap == 30.0);
    assert_true(p.attn_scale == 1.0 / 16.0); /* query_pre_attn_scalar 256 */
    assert_true(p.embed_scale == 8.0);
    tb_model_params_release(&p);
    const char *g2 = "{" GEMMA2_BASE ",\"attn_logit_softcapping\":null,\"sliding_window\":5,"
                     "\"final_logit_softcapping\":7.5,\"query_pre_attn_scalar\":64}";
    assert_int_equal(s_cfg(g2, &p, err, sizeof err), 0);
    assert_true(p.attn_softcap == 0.0 && p.final_softcap == 7.5 && p.attn_scale == 0.125);
    assert_int_equal(p.sliding_window, 5);
    tb_model_params_release(&p);
    const char *g3 = "{\"model_type\":\"gemma3_text\",\"hidden_size\":64,\"intermediate_size\":"
                     "128,\"num_hidden_layers\":7,\"num_attention_heads\":4,\"vocab_size\":300,"
                     "\"sliding_window\":5,\"rope_scaling\":{\"rope_type\":\"linear\","
                     "\"factor\":8.0}}";
    assert_int_equal(s_cfg(g3, &p, err, sizeof err), 0);
    assert_string_equal(p.arch, "gemma3");
    assert_true(p.qk_norm && p.attn_softcap == 0.0 && p.final_softcap == 0.0);
    assert_true(p.rope_theta == 1e6 && p.rope_theta_local == 1e4);
    assert_int_equal(p.head_dim, 256);
    for (uint32_t l = 0; l < 7; l++) {
        assert_int_equal(p.layer_full[l], l == 5);
    }
    tb_model_params_release(&p);

    const char *phi = "{" PHI3_BASE ",\"rope_scaling\":{\"type\":\"longrope\","
                      "\"short_factor\":[1,1.5,2,4],\"long_factor\":[2,3,4,8]}}";
    assert_int_equal(s_cfg(phi, &p, err, sizeof err), 0);
    assert_string_equal(p.arch, "phi3");
    assert_int_equal(p.rope_scaling.type, TB_ROPE_SCALING_LONGROPE);
    assert_int_equal(p.rope_scaling.original_max_positions, 16);
    assert_true(p.rope_scaling.short_factor[3] == 4.0 && p.rope_scaling.long_factor[0] == 2.0);
    /* sqrt(1 + ln(64 / 16) / ln(16)) */
    assert_true(fabs(p.rope_scaling.attn_factor - sqrt(1.5)) < 1e-12);
    char feats[256];
    assert_int_equal(tb_model_params_family_features(&p, feats, sizeof feats), 1);
    assert_string_equal(feats, "LongRoPE");
    tb_model_params_release(&p);
    const char *partial = "{" PHI3_BASE ",\"partial_rotary_factor\":0.75}";
    assert_int_equal(s_cfg(partial, &p, err, sizeof err), 0);
    assert_int_equal(p.rope_dim, 6);
    tb_model_params_release(&p);
    assert_int_equal(s_cfg("{" GEMMA2_BASE "}", &p, err, sizeof err), 0);
    assert_int_equal(tb_model_params_family_features(&p, feats, sizeof feats), 7);
    assert_string_equal(feats, "GeGLU, (1 + weight) norms, post-norms, embedding scale, "
                               "attention scale, logit soft-caps, per-layer sliding windows");
    tb_model_params_release(&p);
    assert_int_equal(s_cfg("{" LLAMA_BASE "}", &p, err, sizeof err), 0);
    assert_int_equal(tb_model_params_family_features(&p, NULL, 0), 0);
    tb_model_params_release(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_tinystories_like),
        cmocka_unit_test(test_defaults_and_variants),
        cmocka_unit_test(test_qwen3_and_experts),
        cmocka_unit_test(test_rope_scaling),
        cmocka_unit_test(test_refusals_name_key_and_value),
        cmocka_unit_test(test_generation_config),
        cmocka_unit_test(test_tokenizer_config),
        cmocka_unit_test(test_load_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
