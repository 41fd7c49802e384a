"""The cpu engine on GGUF files that mix weight types per tensor, held to the independent
reference (tools/tb_ref_forward.py, PyTorch float64 on the weights the gguf package dequantizes)
through tests/tools/tb_forward, and served once through the plugin.

The models are random-weight Llama shapes written by tb_make_model.py --block-types (random
valid blocks, RMS 0.02):
  q4_k_m  llama.cpp's Q4_K_M mix: Q4_K matrices and embedding, Q6_K output head and attn_v /
          ffn_down of every other layer, F32 norms;
  mix     Q5_K, Q3_K, Q2_K, IQ4_XS, Q4_1, Q5_0, Q5_1, IQ4_NL given to the matrices in turn (the
          embedding Q5_K, the output head IQ4_NL).

Relative error as in test_forward.py: per position, max |ours - ref| / max |ref|.
- Against the plain reference (64 positions, chunked prefill, f32 and f16 KV cache): within
  the tolerance docs/engine-cpu.md states for 8-bit activations, like Q8_0 / Q4_0, and the
  argmax of at least 90% of the positions agrees.
- Against the reference with the kernels' activation quantization simulated (per matmul: Q8_K
  blocks of 256 for the K-quants and IQ4_XS, blocks of 32 for the others; one layer, 6 tokens):
  within 1e-5 on every instruction set this CPU has, and not vacuously (the plain reference is
  further off).
- A prompt alone and among others in staggered batches: bitwise the same logits and tokens.
- turbine serves the q4_k_m file: one completion, and the start line names the types.
"""
import numpy as np
import pytest

from serving_util import Turbine, deployment, free_port, http_component, post, wait_ready
from test_forward import (check_exact_quant_acts, check_tolerance, need_shared, prompt,
                          q8_1_min_term, q8_act, ref_logits_quant_acts, run_batch)

gguf = pytest.importorskip('gguf')

RECIPES = {'q4_k_m': 'q4_k_m', 'mix': 'q5_k,q3_k,q2_k,iq4_xs,q4_1,q5_0,q5_1,iq4_nl'}
SHAPE = ['--hidden', 256, '--heads', 4, '--kv-heads', 2, '--intermediate', 512, '--vocab', 2048,
         '--untied', '--seed', 3]
# The element count of each type's activation block (tb_quant.h: Q8_K or Q8_32).
ACT_BLOCK = {'q2_k': 256, 'q3_k': 256, 'q4_k': 256, 'q5_k': 256, 'q6_k': 256, 'iq4_xs': 256,
             'q4_1': 32, 'q5_0': 32, 'q5_1': 32, 'iq4_nl': 32}
# Largest relative error against the plain reference, and the smallest argmax agreement.
# Measured (64 positions, 2 layers, avx512): q4_k_m 3.1e-2 / 3.3e-2 (f32 / f16 KV), agreement
# 0.94 / 0.95; mix 2.1e-2 / 2.0e-2, agreement 0.95 / 0.98 (docs/engine-cpu.md).
TOL = {'q4_k_m': (6e-2, 0.85), 'mix': (6e-2, 0.85)}


@pytest.fixture(scope='module')
def qmodels(tmp_path_factory):
    base = tmp_path_factory.mktemp('quant-models')
    made = {}

    def get(recipe, layers=2):
        key = (recipe, layers)
        if key not in made:
            need_shared()
            import tb_make_model
            out = str(base / ('%s-%d.gguf' % (recipe, layers)))
            argv = ['--out', out, '--format', 'gguf', '--block-types', RECIPES[recipe],
                    '--layers', layers] + SHAPE
            assert tb_make_model.main([str(a) for a in argv]) == 0
            made[key] = out
        return made[key]
    return get


def tensor_types(path):
    """{canonical name: our type name} of a GGUF file's matrices."""
    import tb_modelio as mio
    r = gguf.GGUFReader(path)
    return {mio.canon_from_gguf(t.name): t.tensor_type.name.lower() for t in r.tensors}


@pytest.mark.parametrize('kv', ['f32', 'f16'])
@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_mixed_types_within_stated_tolerance(qmodels, recipe, kv, tmp_path):
    model = qmodels(recipe)
    types = set(tensor_types(model).values())
    want = {'f32'} | set(RECIPES[recipe].split(',')) if recipe == 'mix' else \
        {'f32', 'q4_k', 'q6_k'}
    assert types == want  # the file really mixes these types
    check_tolerance(model, recipe, kv, TOL[recipe], tmp_path)


def block_mins(path):
    """{canonical name: (rows, blocks) float64 of each block's min} for the Q4_1 / Q5_1 matrices
    (the min is the block's second f16, after d, in both layouts)."""
    import torch
    import tb_modelio as mio
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        kind = t.tensor_type.name.lower()
        if kind in ('q4_1', 'q5_1'):
            raw = np.asarray(t.data, dtype=np.uint8)
            rows = raw.shape[0]
            blocks = raw.reshape(rows, -1, 20 if kind == 'q4_1' else 24)
            m = blocks[:, :, 2:4].copy().view(np.float16)[:, :, 0]
            out[mio.canon_from_gguf(t.name)] = torch.from_numpy(m.astype(np.float64))
    return out


def ref_logits_per_type(path, tokens):
    """tb_ref_forward's math with every matmul input quantized as the cpu kernels quantize it
    for that weight's type (and the Q4_1 / Q5_1 mins times the activations' f16 s)."""
    types = tensor_types(path)
    mins = block_mins(path)
    return ref_logits_quant_acts(
        path, tokens, lambda x, name: q8_act(x, ACT_BLOCK[types[name]]),
        lambda x, name: q8_1_min_term(x, mins[name]) if name in mins else None)


@pytest.mark.parametrize('isa', ['avx512', 'avx2', 'generic'])
@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_exact_against_quantized_activations(qmodels, recipe, isa, tmp_path):
    """With each matmul's activation quantization simulated, our logits agree to float
    rounding: the kernels compute what they say, on every instruction set."""
    check_exact_quant_acts(qmodels(recipe, layers=1), isa, tmp_path, ref_logits_per_type)


@pytest.mark.parametrize('recipe', sorted(RECIPES))
def test_alone_and_in_batches_bitwise(qmodels, recipe, tmp_path):
    model = qmodels(recipe)
    target = prompt(2048, 13, seed=77)
    rng = np.random.default_rng(3)
    others = [prompt(2048, int(rng.integers(3, 41)), seed=100 + i) for i in range(7)]
    _, alone_toks, alone_rows = run_batch(model, [target], 12, tmp_path, 'alone', '--threads', 1,
                                          '--block-size', 8)
    for at in (0, 4):
        prompts = others[:at] + [target] + others[at:]
        res, toks, rows = run_batch(model, prompts, 12, tmp_path, 'at%d' % at, '--threads', 2,
                                    '--stagger', 1, '--max-batch-tokens', 32, '--block-size', 8)
        assert toks[at] == alone_toks[0]
        assert np.array_equal(rows[at], alone_rows[0]), 'logits differ at position %d' % at
        assert res['load']['steps'] > 12  # the batch really interleaved prefills and decodes


def test_serve_q4_k_m(qmodels, tmp_path):
    """The plugin path: turbine loads the Q4_K_M-style file, names its types in the start
    line, and answers a completion with as many tokens as asked."""
    model = qmodels('q4_k_m')
    port = free_port()
    comps = [http_component(port),
             ('pre', 'preprocessor', 1, {'served_model_name': 'qk', 'model': model}),
             ('engine', 'engine_cpu', 1, {'served_model_name': 'qk', 'model': model,
                                          'kv_cache': '16MiB', 'threads': 2})]
    with Turbine(tmp_path, deployment(port, comps)) as t:
        # q4_k: the embedding, 5 matrices of layer 0, 7 of layer 1; q6_k: the output head,
        # layer 0's attn_v and ffn_down; f32: 2 norms per layer and the output norm.  Every
        # matrix but the embedding gets its packed Kx16 copy, whose file pages are released
        t.wait_log(r'cpu backend \(\w+, 2 threads, weights q4_k x 13, f32 x 5, q6_k x 3, '
                   r'packed copies [0-9.]+ MiB made in [0-9]+ ms '
                   r'\(file pages released [0-9.]+ MiB\)\)', timeout=30)
        wait_ready(port, timeout=30)
        r = post(port, '/v1/completions', {'model': 'qk', 'prompt': 'Once upon a time',
                                           'max_tokens': 8, 'temperature': 0,
                                           'ignore_eos': True}, timeout=60)
        assert r.status == 200, r.body
        body = r.json()
        assert body['usage']['completion_tokens'] == 8
        assert body['choices'][0]['text']
