/* libFuzzer target: config.json, generation_config.json and tokenizer_config.json parsing over
 * arbitrary bytes (each parser sees the same input). */
/* FUZZ_SOURCES: plugins/common/tb_hf_config.c plugins/common/tb_model.c plugins/common/tb_model_family.c plugins/common/tb_model_hf.c plugins/common/tb_model_gguf.c plugins/common/tb_model_moe.c plugins/common/tb_safetensors.c plugins/common/tb_gguf.c plugins/common/tb_dtype.c plugins/common/tb_quant.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tb_hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, data, size);
    char err[256];
    struct tb_model_params p;
    tb_model_params_init(&p);
    if (tb_hf_config_parse(copy, size, &p, err, sizeof err) == 0) {
        if (p.n_heads % p.n_kv_heads != 0 || p.head_dim % 2 != 0 || p.n_layers == 0) {
            abort(); /* accepted params must be consistent */
        }
        if (p.n_experts > 0 && (p.n_experts_used < 1 || p.n_experts_used > p.n_experts ||
                                p.expert_intermediate < 1)) {
            abort(); /* an expert model's top-k within its experts */
        }
        for (uint32_t l = p.n_layers; l < TB_MODEL_MAX_LAYERS; l++) {
            if (p.layer_dense[l]) {
                abort(); /* dense layers (mlp_only_layers) only among the model's layers */
            }
        }
    }
    (void)tb_hf_generation_config_parse(copy, size, &p, err, sizeof err);
    (void)tb_hf_tokenizer_config_parse(copy, size, &p, err, sizeof err);
    if (p.n_eos_ids > TB_MODEL_MAX_EOS) {
        abort();
    }
    tb_model_params_release(&p);
    free(copy);
    return 0;
}
