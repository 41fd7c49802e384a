#!/usr/bin/env python3
"""An independent reference forward pass for Llama-family models, written from the math in
PyTorch (float64 by default), to check Turbine's engines against.

  tb_ref_forward.py MODEL --tokens 1,450,4996 [--logits out.npy] [--generate 20]
  tb_ref_forward.py ../shared/models/tinystories-656k --generate 60 --text

MODEL is a Hugging Face folder (weights read by our own safetensors reader) or a GGUF file
(read with the gguf package, Q8_0/Q4_0/BF16 dequantized).  The computation per layer:

  h  = RMSNorm(x) * w_attn_norm              RMSNorm(x) = x / sqrt(mean(x^2) + eps)
  q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
  rotate q, k by pos * inv_freq[i] on pairs (i, i + d/2) for HF weights ("neox") or
      (2i, 2i+1) for GGUF llama weights, whose Q/K rows llama.cpp permuted ("interleaved");
      inv_freq[i] = theta^(-2i/d), then divided per rope scaling (linear, llama3, rope_freqs)
  attention per head with causal mask, scores / sqrt(d); q head j reads kv head j // (H/KV);
      with a sliding window W (Mistral), position i sees only keys j with i - W < j <= i
      (transformers' sliding_window_overlay: kv_idx > q_idx - W)
  x += attn Wo^T
  x += W_down (silu(W_gate h2) * (W_up h2)),  h2 = RMSNorm(x) * w_ffn_norm
  logits = RMSNorm(x) * w_out_norm  W_output^T   (W_output = tok_embd when tied)

Gemma 2 / Gemma 3 (transformers' Gemma2/Gemma3 definitions): x = embedding * sqrt(hidden);
norms multiply by (1 + weight) (the loader folds the 1 in: GGUF files store it so); per layer
  h = RMSNorm(x)*w_in;  q, k, v;  Gemma 3: q, k = RMSNorm per head * w_q_norm, w_k_norm
  RoPE (Gemma 3: sliding layers with rope_local_base_freq and no scaling)
  scores = q k^T * query_pre_attn_scalar^-0.5, then c * tanh(scores / c) (attn soft-cap),
      sliding layers (Gemma 2: even ones; Gemma 3: all but every 6th) masked to the window
  x += RMSNorm(attn Wo^T) * w_post_attn
  x += RMSNorm(W_down (gelu_tanh(W_gate h2) * (W_up h2))) * w_post_ffn,  h2 = RMSNorm(x) * w_pre_ffn
  logits = c * tanh(logits / c) with the final soft-cap.
Phi-3: Llama's layer on the fused qkv / gate_up matrices (split by rows), sliding window on
every layer, LongRoPE: inv_freq[i] = theta^(-2i/d) / factor[i] with the short factors, or the
long ones when the sequence is longer than original_max_position_embeddings (transformers'
rule; Model.longrope_per_position picks the set per position instead, as the engines do), and
cos, sin multiplied by the attention factor.

Qwen3 (transformers' Qwen3Attention): before RoPE, every head of q and k is RMS-normed over its
head_dim values and scaled by q_norm / k_norm (eps = rms_norm_eps), the same step as Gemma 3's
with the plain weight.

Mixture of experts (Mixtral: MixtralSparseMoeBlock; Qwen3-MoE / Qwen2-MoE: *SparseMoeBlock) in
place of the MLP:
  r = h2 Router^T; p = softmax(r) over all experts; the k largest p (top-k);
  weights: renormalised to sum 1 (Mixtral always, Qwen with norm_topk_prob), else as they are;
  x += sum over the chosen experts e of weight_e * W_down_e (silu(W_gate_e h2) * (W_up_e h2))
  Qwen2-MoE adds sigmoid(h2 . w_sh_gate_inp) * (the shared expert's MLP of h2).
Qwen MoE's dense layers (Qwen2MoeDecoderLayer / Qwen3MoeDecoderLayer): layer i keeps the
dense MLP of intermediate_size (no router, experts or shared expert) when i is in
mlp_only_layers or (i + 1) % decoder_sparse_step != 0.

Prints the argmax per position and the greedy continuation; --logits saves every position's
logits (prompt and generated) as a float64 or float32 .npy array of shape [positions, vocab].
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tb_modelio as mio  # noqa: E402


class Model:
    def __init__(self, path, dtype):
        self.path = path
        if os.path.isdir(path):
            self.spec, self.config, raw = mio.load_hf(path)
            self.layout = 'neox'
            rope_freqs = None
        else:
            self.spec, self.meta, raw, self.layout = mio.load_gguf(path)
            rope_freqs = raw.pop('rope_freqs', None)
        s = self.spec
        self.w = {k: torch.from_numpy(np.array(v, dtype=np.float32)).to(dtype) for k, v in raw.items()}
        if 'output' not in self.w:
            self.w['output'] = self.w['tok_embd']
        self.dtype = dtype
        # LongRoPE: False picks one factor set by the sequence length (transformers); True the
        # set per position, long from original_max_position_embeddings on (the engines' rule,
        # which a KV cache can keep)
        self.longrope_per_position = False
        self.act_quant = None
        self.inv_freq = torch.tensor(self._inv_freq(rope_freqs), dtype=torch.float64)

    def _inv_freq(self, rope_freqs):
        """theta^(-2i/d) for i < d/2, then the rope scaling (computed in float64)."""
        s = self.spec
        d = s.head_dim
        base = [s.rope_theta ** (-(2.0 * i) / d) for i in range(d // 2)]
        rs = s.rope_scaling or {}
        kind = mio.rope_scaling_type(rs)
        if rope_freqs is not None:
            return [b / float(f) for b, f in zip(base, rope_freqs)]
        if kind == 'linear':
            return [b / rs['factor'] for b in base]
        if kind == 'llama3':
            factor, lo, hi = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor']
            old = rs['original_max_position_embeddings']
            out = []
            for f in base:
                wavelen = 2 * math.pi / f
                if wavelen < old / hi:
                    out.append(f)
                elif wavelen > old / lo:
                    out.append(f / factor)
                else:
                    smooth = (old / wavelen - lo) / (hi - lo)
                    out.append((1 - smooth) * f / factor + smooth * f)
            return out
        if kind in ('longrope', 'su'):
            return base  # per forward (_longrope): the factor set depends on the length
        if kind not in ('none', 'default'):
            raise SystemExit('tb_ref_forward: rope scaling %s is not implemented' % kind)
        return base

    def lin(self, x, name):
        """x W^T for weight `name`; with act_quant set (tests), x as act_quant(x, name) gives it:
        the engines' int8 kernels quantize a matmul's input, which a test can simulate."""
        if self.act_quant is not None:
            x = self.act_quant(x, name)
        return x @ self.w[name].T

    def rmsnorm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.spec.rms_eps) * w

    def _layer_rope(self, layer, T):
        """(inv_freq, cos/sin factor) of layer `layer` for a sequence of T tokens."""
        s = self.spec
        rs = s.rope_scaling or {}
        if mio.rope_scaling_type(rs) in ('longrope', 'su'):
            orig = s.original_context or s.context
            f64 = lambda v: torch.tensor([float(f) for f in v], dtype=torch.float64)
            if self.longrope_per_position:  # the engines' rule: the long set from orig on
                lng = (torch.arange(T) >= orig)[:, None]
                inv = torch.where(lng, self.inv_freq / f64(rs['long_factor']),
                                  self.inv_freq / f64(rs['short_factor']))
            else:
                fac = rs['long_factor'] if T > orig else rs['short_factor']
                inv = self.inv_freq / f64(fac)
            scale = s.context / orig
            af = rs.get('attention_factor') or (
                math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
            return inv, af
        if s.arch == 'gemma3' and s.sliding_window and not s.layer_full(layer):
            d = s.head_dim
            return torch.tensor([s.rope_local_theta ** (-(2.0 * i) / d) for i in range(d // 2)],
                                dtype=torch.float64), 1.0
        return self.inv_freq, 1.0

    def rope(self, x, pos, inv_freq=None, factor=1.0):
        """x: [T, heads, d]; rotates pair i by pos * inv_freq[i]; cos, sin times `factor`."""
        d = x.shape[-1]
        inv_freq = self.inv_freq if inv_freq is None else inv_freq
        if inv_freq.dim() == 1:
            inv_freq = inv_freq[None, :]
        ang = pos[:, None].to(torch.float64) * inv_freq  # [T, d/2]
        cos = (torch.cos(ang) * factor).to(x.dtype)[:, None, :]
        sin = (torch.sin(ang) * factor).to(x.dtype)[:, None, :]
        if self.layout == 'neox':
            a, b = x[..., :d // 2], x[..., d // 2:]
            return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def forward(self, tokens):
        """Logits [T, vocab] for every position of `tokens` (one sequence from position 0)."""
        s, w = self.spec, self.w
        T = len(tokens)
        pos = torch.arange(T)
        x = w['tok_embd'][torch.tensor(tokens, dtype=torch.long)]
        if s.is_gemma:
            x = x * math.sqrt(s.hidden)
        i, j = pos[:, None], pos[None, :]
        full = torch.zeros((T, T), dtype=self.dtype).masked_fill(~(j <= i), float('-inf'))
        slide = full
        if s.sliding_window:
            seen = (j <= i) & (j > i - s.sliding_window)
            slide = torch.zeros((T, T), dtype=self.dtype).masked_fill(~seen, float('-inf'))
        for li in range(s.n_layers):
            mask = full if s.layer_full(li) else slide
            x = self.layer(li, x, pos, mask)
        logits = self.lin(self.rmsnorm(x, w['out_norm']), 'output')
        if s.final_softcap:
            logits = torch.tanh(logits / s.final_softcap) * s.final_softcap
        return logits

    def layer(self, li, x, pos, mask):
        s, w = self.spec, self.w
        T = x.shape[0]
        H, KV, d = s.n_heads, s.n_kv_heads, s.head_dim
        p = 'layers.%d.' % li
        h = self.rmsnorm(x, w[p + 'attn_norm'])
        q = self.lin(h, p + 'wq')
        k = self.lin(h, p + 'wk')
        v = self.lin(h, p + 'wv')
        if s.qkv_bias:
            q, k, v = q + w[p + 'bq'], k + w[p + 'bk'], v + w[p + 'bv']
        q, k, v = q.view(T, H, d), k.view(T, KV, d), v.view(T, KV, d)
        if s.qk_norm:  # Qwen3, Gemma 3 (its 1 + weight folded in by the loader)
            q = self.rmsnorm(q, w[p + 'q_norm'])
            k = self.rmsnorm(k, w[p + 'k_norm'])
        inv, af = self._layer_rope(li, T)
        q = self.rope(q, pos, inv, af)
        k = self.rope(k, pos, inv, af)
        rep = H // KV
        k = k.repeat_interleave(rep, dim=1)  # q head j uses kv head j // rep
        v = v.repeat_interleave(rep, dim=1)
        scale = s.query_pre_attn_scalar ** -0.5 if s.is_gemma else 1 / math.sqrt(d)
        att = torch.einsum('thd,shd->hts', q, k) * scale
        if s.is_gemma and s.attn_softcap:
            att = torch.tanh(att / s.attn_softcap) * s.attn_softcap
        att = torch.softmax(att + mask, dim=-1)
        o = self.lin(torch.einsum('hts,shd->thd', att, v).reshape(T, H * d), p + 'wo')
        if s.is_gemma:
            o = self.rmsnorm(o, w[p + 'attn_post_norm'])
        x = x + o
        h = self.rmsnorm(x, w[p + 'ffn_norm'])
        f = self.moe(h, p) if s.layer_sparse(li) else self.mlp(h, p)
        if s.is_gemma:
            f = self.rmsnorm(f, w[p + 'ffn_post_norm'])
        return x + f

    def mlp(self, h, p):
        g = self.lin(h, p + 'w_gate')
        u = self.lin(h, p + 'w_up')
        act = torch.nn.functional.gelu(g, approximate='tanh') if self.spec.is_gemma else \
            torch.nn.functional.silu(g)
        return self.lin(act * u, p + 'w_down')

    def moe(self, h, p):
        """The sparse MoE block: each token's top-k experts, weighted (see the header)."""
        s, w = self.spec, self.w
        probs = torch.softmax(self.lin(h, p + 'router'), dim=-1)  # [T, E]
        top_p, top_e = torch.topk(probs, s.n_experts_used, dim=-1)
        if s.norm_topk_prob:
            top_p = top_p / top_p.sum(-1, keepdim=True)
        out = torch.zeros_like(h)
        for e in range(s.n_experts):
            rows, slot = torch.nonzero(top_e == e, as_tuple=True)
            if len(rows) == 0:
                continue
            out[rows] += top_p[rows, slot, None] * self.mlp(h[rows], '%sexperts.%d.' % (p, e))
        if s.shared_intermediate:
            gate = torch.sigmoid(h @ w[p + 'sh_gate_inp'].reshape(-1))
            g = torch.nn.functional.silu(self.lin(h, p + 'sh_gate')) * self.lin(h, p + 'sh_up')
            out = out + gate[:, None] * self.lin(g, p + 'sh_down')
        return out

    def generate(self, tokens, n, stop_at_eos=True):
        """Greedy continuation; returns (all tokens, logits of every position)."""
        toks = list(tokens)
        logits = None
        for step in range(n + 1):
            logits = self.forward(toks)
            if step == n:
                break
            nxt = int(torch.argmax(logits[-1]))
            toks.append(nxt)
            if stop_at_eos and nxt == self.spec.eos_id:
                logits = self.forward(toks)
                break
        return toks, logits


def decode(path, ids):
    tj = os.path.join(path, 'tokenizer.json') if os.path.isdir(path) else None
    if not tj or not os.path.exists(tj):
        return None
    from tokenizers import Tokenizer
    return Tokenizer.from_file(tj).decode(ids, skip_special_tokens=True)


def check_transformers(path, toks, ours):
    """Max |ours - transformers| / max |transformers| over every position's logits."""
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float64,
                                              attn_implementation='eager')
    theirs = hf(torch.tensor([toks])).logits[0].numpy()
    return float(np.abs(ours.astype(np.float64) - theirs).max() / np.abs(theirs).max())


def main(argv=None):
    ap = argparse.ArgumentParser(description='Reference Llama forward pass (PyTorch)')
    ap.add_argument('model')
    ap.add_argument('--tokens', default=None, help='comma-separated ids (default: BOS only)')
    ap.add_argument('--prompt', default=None, help='text, tokenized with tokenizer.json')
    ap.add_argument('--generate', type=int, default=0, help='greedy tokens to add')
    ap.add_argument('--no-stop', action='store_true', help='do not stop at EOS')
    ap.add_argument('--float32', action='store_true', help='compute in float32, not float64')
    ap.add_argument('--logits', default=None, help='save logits [positions, vocab] to .npy')
    ap.add_argument('--json', action='store_true', help='print one JSON object')
    ap.add_argument('--text', action='store_true', help='decode the tokens with tokenizer.json')
    ap.add_argument('--check-transformers', action='store_true',
                    help='HF folders: also run transformers (tools/requirements.txt) in '
                         'float64 on the same tokens and print the difference')
    a = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    m = Model(a.model, torch.float32 if a.float32 else torch.float64)
    if a.prompt is not None:
        from tokenizers import Tokenizer
        tokens = Tokenizer.from_file(os.path.join(a.model, 'tokenizer.json')).encode(
            a.prompt).ids
    elif a.tokens:
        tokens = [int(t) for t in a.tokens.split(',') if t.strip()]
    else:
        tokens = [m.spec.bos_id]
    for t in tokens:
        if not 0 <= t < m.spec.vocab:
            raise SystemExit('tb_ref_forward: token %d is outside the vocabulary' % t)
    toks, logits = m.generate(tokens, a.generate, stop_at_eos=not a.no_stop)
    lg = logits.numpy()
    if a.logits:
        np.save(a.logits, lg)
    out = {'prompt': tokens, 'tokens': toks, 'generated': toks[len(tokens):],
           'argmax': [int(i) for i in lg.argmax(-1)]}
    if a.text:
        out['text'] = decode(a.model, toks)
    if a.check_transformers:
        out['transformers_max_rel_diff'] = check_transformers(a.model, toks, lg)
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print('%s: %s' % (k, v))
    return 0


if __name__ == '__main__':
    sys.exit(main())
