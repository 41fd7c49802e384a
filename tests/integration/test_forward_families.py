"""Gemma 2, Gemma 3 and Phi-3 (docs/models.md): random-weight models of each family from
tools/tb_make_model.py, as HF folders and GGUF files, through the cpu backend (tests/tools/
tb_forward: the engine's scheduler, KV manager and sampler) against the PyTorch reference
(tools/tb_ref_forward.py, float64), and the reference against transformers' own Gemma2 / Phi3
implementations where the installed transformers has them (Gemma 3 came after 4.46).

- F32 weights, f32 KV cache: every prompt position (chunked prefill) and 12 greedy decode steps
  within 1e-4 relative of the reference, with the reference's greedy tokens.
- What each family exercises: Gemma 2's sliding/global alternation (window 5 over 40 tokens),
  attention and final soft-caps, query_pre_attn_scalar other than head_dim, GeGLU, (1 + w)
  norms, post-norms, embedding scaling; Gemma 3's q/k norms, local RoPE base against a scaled
  global one, a pattern of every 3rd layer global; Phi-3's fused qkv / gate_up matrices, a
  window on every layer and LongRoPE (short factors within the original context of 48,
  attention factor from 64 / 48).
- Bad files are errors naming the tensor: a fused matrix that does not match the heads, a q_norm
  of the wrong length, a Gemma 3 tensor in a Gemma 2 config.
"""
import json
import os
import shutil

import numpy as np
import pytest

import test_forward as tf
from test_models import info

COMMON = ['--layers', 4, '--hidden', 64, '--heads', 4, '--kv-heads', 2, '--intermediate', 96,
          '--vocab', 300]
FAMILY = {
    'gemma2': ['--arch', 'gemma2', '--head-dim', 16, '--sliding-window', 5, '--attn-softcap', 3,
               '--final-softcap', 2, '--query-pre-attn-scalar', 24],
    'gemma3': ['--arch', 'gemma3', '--head-dim', 16, '--sliding-window', 5, '--window-period', 3,
               '--rope-theta', 1000000, '--rope-scaling', 'linear:4'],
    'phi3': ['--arch', 'phi3', '--untied', '--sliding-window', 9, '--longrope',
             '--original-context', 48, '--context', 64],
}
NAMES = ['%s-%s' % (f, fmt) for f in sorted(FAMILY) for fmt in ('hf', 'gguf')]


def fam_spec(name):
    fam, fmt = name.rsplit('-', 1)
    return fmt, ['--dtype', 'f32', '--seed', 5] + COMMON + FAMILY[fam]


@pytest.fixture(scope='session')
def fam_models(tmp_path_factory):
    return tf.model_writer(tmp_path_factory.mktemp('fam-models'), fam_spec)


@pytest.mark.parametrize('name', NAMES)
def test_family_logits_match_reference(fam_models, name, tmp_path):
    tf.check_f32(fam_models(name), tmp_path)


@pytest.mark.parametrize('fam', sorted(FAMILY))
def test_hf_and_gguf_give_the_same_reference(fam_models, fam):
    toks = tf.prompt(300, 24, seed=2)
    a = tf.ref_logits(fam_models(fam + '-hf'), toks)
    b = tf.ref_logits(fam_models(fam + '-gguf'), toks)
    assert tf.rel_err(b, a).max() < 1e-6


@pytest.mark.parametrize('fam', ['gemma2', 'phi3'])
def test_reference_matches_transformers(fam_models, fam):
    transformers = pytest.importorskip('transformers')
    import torch
    torch.set_grad_enabled(False)
    path = fam_models(fam + '-hf')
    toks = tf.prompt(300, 15, seed=3)  # Phi-3: within original_max_position_embeddings (48)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        path, torch_dtype=torch.float64, attn_implementation='eager')
    theirs = hf(torch.tensor([toks]), use_cache=False).logits[0].numpy()
    assert tf.rel_err(tf.ref_logits(path, toks), theirs).max() < 1e-5


def test_gemma_settings_change_the_logits(fam_models, tmp_path):
    """The soft-caps and the window are applied: without them the logits differ."""
    path = fam_models('gemma2-hf')
    toks = tf.prompt(300, 30, seed=4)
    ours = tf.all_logits(path, toks, tmp_path / 'a', '--kv-f32')
    assert np.abs(ours).max() <= 2.0 + 1e-6  # final soft-cap 2
    plain = str(tmp_path / 'plain')
    shutil.copytree(path, plain)
    with open(os.path.join(plain, 'config.json')) as f:
        c = json.load(f)
    c.update(attn_logit_softcapping=None, final_logit_softcapping=None, sliding_window=4096)
    with open(os.path.join(plain, 'config.json'), 'w') as f:
        json.dump(c, f)
    other = tf.all_logits(plain, toks, tmp_path / 'b', '--kv-f32')
    assert tf.rel_err(other, ours).max() > 1e-2


def _edit_config(src, dst, **changes):
    shutil.copytree(src, dst)
    with open(os.path.join(dst, 'config.json')) as f:
        c = json.load(f)
    c.update(changes)
    with open(os.path.join(dst, 'config.json'), 'w') as f:
        json.dump(c, f)
    return dst


def test_bad_family_files_are_errors(fam_models, tmp_path):
    phi = _edit_config(fam_models('phi3-hf'), str(tmp_path / 'phi'), num_key_value_heads=4)
    err = info(phi, expect_ok=False)
    assert "tensor 'model.layers.0.self_attn.qkv_proj.weight' has 128 rows, the config " \
           "implies 192" in err
    g3 = _edit_config(fam_models('gemma3-hf'), str(tmp_path / 'g3'), model_type='gemma2',
                      architectures=['Gemma2ForCausalLM'])
    assert "q_norm.weight' is not part of a gemma2 model" in info(g3, expect_ok=False)
    g3h = _edit_config(fam_models('gemma3-hf'), str(tmp_path / 'g3h'), head_dim=32,
                       num_attention_heads=2, num_key_value_heads=1)
    assert 'has shape' in info(g3h, expect_ok=False)


@pytest.mark.parametrize('name', NAMES)
def test_family_params_read_back(fam_models, name):
    p = info(fam_models(name))['params']
    fam = name.rsplit('-', 1)[0]
    assert p['arch'] == fam
    assert p['sliding_window'] == {'gemma2': 5, 'gemma3': 5, 'phi3': 9}[fam]


# Per-layer windows for Llama-family configs: config.json layer_types (Mistral) and qwen2's
# max_window_layers mark some layers full, the others slide (refused before this change).
MIXED = {
    'mistral-layer-types-hf': ['--sliding-window', 5, '--full-layers', '1,2', '--untied'],
    'qwen2-window-layers-hf': ['--arch', 'qwen2', '--qkv-bias', '--sliding-window', 5,
                               '--full-layers', '0'],
}


@pytest.mark.parametrize('name', sorted(MIXED))
def test_per_layer_windows_match_reference(name, tmp_path):
    tf.need_shared()
    import tb_make_model
    out = str(tmp_path / name)
    argv = ['--out', out, '--format', 'hf', '--dtype', 'f32', '--seed', 6] + COMMON + MIXED[name]
    assert tb_make_model.main([str(a) for a in argv]) == 0
    spec = tf.ref(out).spec
    full = [spec.layer_full(i) for i in range(spec.n_layers)]
    assert spec.sliding_window == 5 and any(full) and not all(full)
    with open(os.path.join(out, 'config.json')) as f:
        c = json.load(f)
    assert ('max_window_layers' in c) == (spec.arch == 'qwen2')
    tf.check_f32(out, tmp_path)


def test_longrope_long_factors_from_the_original_context(fam_models, tmp_path):
    """Past original_max_position_embeddings (48) each position turns with the long factors
    (docs/models.md: the set is chosen per position so cached keys stay valid); the positions
    before keep the short ones.  transformers instead recomputes the whole sequence with the
    long set once it is longer than 48, which a KV cache cannot do."""
    for fmt in ('hf', 'gguf'):
        path = fam_models('phi3-' + fmt)
        toks = tf.prompt(300, 60, seed=8)
        ours = tf.all_logits(path, toks, tmp_path / fmt, '--kv-f32', '--block-size', 8,
                             '--max-batch-tokens', 24)
        m = tf.ref(path)
        m.longrope_per_position = True
        try:
            expect = m.forward(toks).numpy()
        finally:
            m.longrope_per_position = False
        assert tf.rel_err(ours, expect).max() <= tf.F32_TOL
        whole = m.forward(toks).numpy()  # transformers' rule differs before position 48
        assert tf.rel_err(ours[:48], whole[:48]).max() > 1e-3


def test_gemma_sentencepiece_without_prefix_space(tmp_path):
    """Gemma's SentencePiece adds no dummy prefix: its tokenizer.json (normalizer: spaces to
    U+2581 only) and the GGUF vocabulary (tokenizer.ggml.add_space_prefix false) give the ids
    Hugging Face tokenizers gives, through the existing SentencePiece paths (llama's 32000-piece
    vocabulary: a cut-down one lacks pieces such as U+2581 itself)."""
    tf.need_shared()
    import tb_make_model
    from conftest import run_tool
    from tokenizers import Tokenizer
    paths = []
    for fmt in ('hf', 'gguf'):
        out = str(tmp_path / ('g2tok' + ('.gguf' if fmt == 'gguf' else '')))
        argv = ['--arch', 'gemma2', '--layers', 1, '--hidden', 32, '--heads', 2, '--head-dim',
                16, '--intermediate', 32, '--vocab', 32000, '--format', fmt, '--out', out]
        assert tb_make_model.main([str(a) for a in argv]) == 0
        paths.append(out)
    texts = ['Hello world', ' leading space', 'two  spaces\nand a newline', 'ümlaut ß 日本',
             'x', '']
    hf = Tokenizer.from_file(os.path.join(paths[0], 'tokenizer.json'))
    want = [hf.encode(t, add_special_tokens=False).ids for t in texts]
    data = b''.join(t.encode('utf-8') + b'\0' for t in texts)
    for path in paths:
        out = run_tool('tb_tokenize', [path, '--batch', '--no-special', '--no-parse-special'],
                       input=data, timeout=120).stdout.decode()
        got = [[int(x) for x in line.split()] for line in out.split('\n')[:-1]]
        assert got == want, path
    # no dummy prefix: "Hello" at the start is not "▁Hello"
    assert want[0][0] != hf.encode(' Hello world', add_special_tokens=False).ids[0]
