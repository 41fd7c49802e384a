#!/usr/bin/env python3
"""A trained Llama whose every matrix width is a multiple of 256, for the llama.cpp agreement
check (bench/engine/agreement.py), and a text it predicts well.  Not in CI.

  .venv/bin/python bench/engine/make_trained_model.py [--out /tmp/tb-bench/trained]

The shared trained model (../shared/models/tinystories-656k: hidden 128, intermediate 384,
vocab 2048) is too narrow for the 256-value super-blocks of the K-quants.  This script widens it
without changing the function it computes, so the result keeps its trained (peaked, confident)
predictions while every tensor is dense:

- hidden 128 -> 256: the RMSNorm weights are folded into the matrices that read the normed
  vector, the residual stream is zero-padded to 256 values and rotated by a random orthogonal
  256 x 256 matrix R (readers W -> W R^T, writers W -> R W, embedding rows e -> R e).  RMSNorm
  is rotation invariant; the zero padding halves mean(x^2), which the new norm weights
  (1/sqrt(2) times a random positive factor that the readers divide back out) and eps / 2
  compensate exactly.  The output head is untied (the final norm folds into it, not into the
  embedding).
- heads 8 -> 16, key/value heads 4 -> 8 (head_dim 16): every head is duplicated (q, k, v rows
  repeated; o_proj reads each copy with half weight), so the attention output is unchanged.
- intermediate 384 -> 768: every SiLU-gated neuron is split in two copies with the same gate
  and up rows whose down_proj columns are a and 1 - a times the original (a per neuron in
  [0.2, 0.8]), then the 768 neurons are permuted at random.

It checks with the float64 PyTorch reference (tools/tb_ref_forward.py) that the widened model's
logits equal the original's, writes the HF folder (OUT/hf), its F16 GGUF (OUT/f16.gguf, with
tools/tb_make_model.py --from) and OUT/stories.txt: stories sampled from the original model
(temperature --temperature, seeds 0..--stories-1), the text agreement.py scores.  The model and
text are written outside the repository (default /tmp/tb-bench/trained); the source model is
read from ../shared by path.  Then, e.g.:

  llama-quantize OUT/f16.gguf OUT/q4_k_m.gguf Q4_K_M
  .venv/bin/python bench/engine/agreement.py OUT/*.gguf --text OUT/stories.txt --ctx 256 --chunks 4
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import tb_modelio as mio  # noqa: E402

SHARED = os.environ.get('TB_SHARED') or os.path.join(os.path.dirname(ROOT), 'shared')
SOURCE = os.path.join(SHARED, 'models', 'tinystories-656k')
TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
                   'generation_config.json']


def log(msg):
    sys.stderr.write('[make_trained_model] %s\n' % msg)
    sys.stderr.flush()


def random_rotation(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.sign(np.diag(r))).astype(np.float64)


def widen(raw, cfg, rng):
    """raw: the HF tensors (float32) of a tied Llama; returns (tensors, config) of the model
    twice as wide in hidden, heads and intermediate that computes the same function."""
    H, I = cfg['hidden_size'], cfg['intermediate_size']
    nh, nkv = cfg['num_attention_heads'], cfg['num_key_value_heads']
    hd = H // nh
    H2, I2 = 2 * H, 2 * I
    R = random_rotation(rng, H2)
    f = {k: v.astype(np.float64) for k, v in raw.items()}
    out = {}

    def pad_cols(w):  # [rows, H] -> [rows, H2], zero columns
        return np.concatenate([w, np.zeros((w.shape[0], H2 - H))], axis=1)

    def reader(w, norm_w, new_norm):  # W diag(norm_w) on the padded, rotated stream
        # the new norm's output is sqrt(2) * new_norm times the old one's (rotated, padded)
        return pad_cols(w * norm_w[None, :]) @ R.T / (np.sqrt(2.0) * new_norm[None, :])

    def writer(w):  # [H, k] -> R [w; 0]
        return R @ np.concatenate([w, np.zeros((H2 - H, w.shape[1]))], axis=0)

    def new_norm():  # 1/sqrt(2) for the zero padding, times a factor the readers divide out
        return np.exp(rng.normal(0.0, 0.1, H2)) / np.sqrt(2.0)

    emb = f.get('model.embed_tokens.weight', f.get('lm_head.weight'))  # tied: either name
    out['model.embed_tokens.weight'] = pad_cols(emb) @ R.T
    for li in range(cfg['num_hidden_layers']):
        p = 'model.layers.%d.' % li
        g = new_norm()
        out[p + 'input_layernorm.weight'] = g
        nw = f[p + 'input_layernorm.weight']
        for name, n in (('q_proj', nh), ('k_proj', nkv), ('v_proj', nkv)):
            w = reader(f[p + 'self_attn.%s.weight' % name], nw, g)
            out[p + 'self_attn.%s.weight' % name] = np.concatenate([w, w], axis=0)  # heads x2
        o = f[p + 'self_attn.o_proj.weight']  # [H, nh * hd]
        out[p + 'self_attn.o_proj.weight'] = writer(np.concatenate([o / 2, o / 2], axis=1))
        g = new_norm()
        out[p + 'post_attention_layernorm.weight'] = g
        nw = f[p + 'post_attention_layernorm.weight']
        gate = reader(f[p + 'mlp.gate_proj.weight'], nw, g)
        up = reader(f[p + 'mlp.up_proj.weight'], nw, g)
        down = f[p + 'mlp.down_proj.weight']  # [H, I]
        a = rng.uniform(0.2, 0.8, I)
        perm = rng.permutation(I2)
        out[p + 'mlp.gate_proj.weight'] = np.concatenate([gate, gate], axis=0)[perm]
        out[p + 'mlp.up_proj.weight'] = np.concatenate([up, up], axis=0)[perm]
        d2 = np.concatenate([down * a[None, :], down * (1 - a)[None, :]], axis=1)
        out[p + 'mlp.down_proj.weight'] = writer(d2)[:, perm]
    g = new_norm()
    out['model.norm.weight'] = g
    head = f.get('lm_head.weight', emb)
    out['lm_head.weight'] = reader(head, f['model.norm.weight'], g)
    c = dict(cfg)
    c.update(hidden_size=H2, intermediate_size=I2, num_attention_heads=2 * nh,
             num_key_value_heads=2 * nkv, head_dim=hd, rms_norm_eps=cfg['rms_norm_eps'] / 2,
             tie_word_embeddings=False, torch_dtype='float32')
    return {k: v.astype(np.float32) for k, v in out.items()}, c


def write_hf(folder, tensors, cfg, src):
    os.makedirs(folder, exist_ok=True)
    w = mio.SafetensorsWriter(os.path.join(folder, 'model.safetensors'))
    for name in tensors:
        w.declare(name, 'F32', tensors[name].shape)
    w.write(lambda name: np.ascontiguousarray(tensors[name], dtype=np.float32))
    with open(os.path.join(folder, 'config.json'), 'w') as fo:
        json.dump(cfg, fo, indent=2)
    for fn in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src, fn)):
            shutil.copy(os.path.join(src, fn), os.path.join(folder, fn))


def sample_stories(model, n, temperature, max_tokens):
    """n stories from BOS, sampled at `temperature` (seed i for story i), as token lists."""
    stories = []
    for i in range(n):
        rng = np.random.default_rng(1000 + i)
        toks = [model.spec.bos_id]
        while len(toks) < max_tokens:
            logits = model.forward(toks)[-1].numpy().astype(np.float64) / temperature
            p = np.exp(logits - logits.max())
            t = int(rng.choice(len(p), p=p / p.sum()))
            if t == model.spec.eos_id:
                break
            toks.append(t)
        stories.append(toks[1:])
    return stories


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--source', default=SOURCE, help='trained tied Llama HF folder')
    ap.add_argument('--out', default=os.path.join(os.environ.get('TB_BENCH_DIR', '/tmp/tb-bench'),
                                                  'trained'))
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--stories', type=int, default=48, help='stories in stories.txt')
    ap.add_argument('--temperature', type=float, default=0.7)
    ap.add_argument('--max-tokens', type=int, default=400, help='tokens per story at most')
    a = ap.parse_args()
    import torch
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import tb_ref_forward as ref
    torch.set_grad_enabled(False)
    with open(os.path.join(a.source, 'config.json')) as fi:
        cfg = json.load(fi)
    if cfg.get('model_type') != 'llama' or not cfg.get('tie_word_embeddings', False):
        raise SystemExit('make_trained_model.py: %s is not a tied Llama' % a.source)
    raw, _ = mio.read_safetensors(os.path.join(a.source, 'model.safetensors'))
    tensors, wcfg = widen(raw, cfg, np.random.default_rng(a.seed))
    hf = os.path.join(a.out, 'hf')
    write_hf(hf, tensors, wcfg, a.source)
    log('wrote %s (hidden %d, intermediate %d, heads %d/%d)' % (
        hf, wcfg['hidden_size'], wcfg['intermediate_size'], wcfg['num_attention_heads'],
        wcfg['num_key_value_heads']))
    src = ref.Model(a.source, torch.float64)
    wide = ref.Model(hf, torch.float64)
    stories = sample_stories(src, a.stories, a.temperature, a.max_tokens)
    toks = [src.spec.bos_id] + stories[0][:200]
    l0, l1 = src.forward(toks).numpy(), wide.forward(toks).numpy()
    rel = float(np.abs(l0 - l1).max() / np.abs(l0).max())
    log('widened against original logits over %d positions: max rel diff %.2e' % (len(toks), rel))
    if rel > 1e-5:
        raise SystemExit('make_trained_model.py: the widened model computes another function')
    # (the story-end marker comes back as text from the decoder; llama.cpp would split it)
    text = '\n\n'.join(ref.decode(a.source, s).replace('<|end_story|>', '').strip()
                         for s in stories) + '\n'
    with open(os.path.join(a.out, 'stories.txt'), 'w') as fo:
        fo.write(text)
    log('wrote %s (%d stories, %d tokens)' % (os.path.join(a.out, 'stories.txt'), len(stories),
                                             sum(len(s) for s in stories)))
    gguf = os.path.join(a.out, 'f16.gguf')
    subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'tb_make_model.py'), '--from', hf,
                    '--format', 'gguf', '--dtype', 'f16', '--out', gguf], check=True)
    log('wrote %s' % gguf)
    return 0


if __name__ == '__main__':
    sys.exit(main())
