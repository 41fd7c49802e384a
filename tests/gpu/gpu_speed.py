"""The speed table of tests/gpu/verify.sh (run on the GPU machine, with its PyTorch).

  gpu_speed.py BUNDLE WORKDIR SECONDS_LEFT

Measures the device-to-device copy bandwidth (bytes read + written per second, PyTorch), writes
random-weight models with tb_make_model.py (TinyLlama-1.1B's shape in F16 (HF safetensors) and
Q4_0 (GGUF, random valid blocks); a Llama-3-8B shape in F16 when time allows), and for each runs
  ours:  bin/tb_forward_gpu --bench: batch 1, 16 and 64 decode tokens/s, prefill tokens/s
  torch: a plain PyTorch greedy loop on the same F16 weights (static KV cache, SDPA attention)
Prints one table; batch-1 decode also as the share of the copy bandwidth its weight reads use
(tokens/s x weight bytes / copy bandwidth).  Q4_0 has no PyTorch row (no Q4_0 kernels there).
"""
import json
import os
import subprocess
import sys
import time

import torch

SHAPES = {
    '1.1b': ['--preset', '1b'],  # TinyLlama-1.1B: 22 layers, 2048 wide, GQA 32/4, vocab 32000
    '8b': ['--preset', '1b', '--layers', '32', '--hidden', '4096', '--heads', '32',
           '--kv-heads', '8', '--intermediate', '14336'],  # Llama-3-8B's layer shape
}
GEN = 64      # decode steps timed per batch size
PROMPT = 128  # prompt tokens before decoding
PREFILL = (8, 512)


def copy_bandwidth():
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device='cuda')
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10):
        b.copy_(a)
    e.record()
    torch.cuda.synchronize()
    return 2.0 * n * 10 / (s.elapsed_time(e) / 1e3)


def make_model(bundle, work, shape, dtype):
    fmt = 'hf' if dtype == 'f16' else 'gguf'
    out = os.path.join(work, '%s-%s%s' % (shape, dtype, '.gguf' if fmt == 'gguf' else ''))
    if os.path.exists(out):
        return out
    args = [sys.executable, os.path.join(bundle, 'py', 'tb_make_model.py'), '--out', out,
            '--format', fmt] + SHAPES[shape]
    args += ['--dtype', 'f16'] if dtype == 'f16' else ['--block-types', 'q4_0']
    env = dict(os.environ, TB_SHARED=os.path.join(bundle, 'shared'),
               PYTHONPATH=os.path.join(bundle, 'py'))
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL)
    return out


def ours(bundle, run, model, batch, gen, prompt_len, extra=()):
    cmd = run + [os.path.join(bundle, 'bin', 'tb_forward_gpu'), model, '--random',
                 '%d:%d:%d' % (batch, prompt_len, prompt_len), '--generate', str(gen), '--bench',
                 '--backend', 'cuda', '--max-batch-seqs', str(max(batch, 1)),
                 '--max-batch-tokens', '4096'] + list(extra)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout)


def decode_tps(res, batch):
    for d in res['bench']['decode']:
        if d['batch'] == batch:
            return d['tokens_per_s']
    return float('nan')


class TorchLlama:
    """Greedy generation with a static KV cache on the HF-format weights (F16)."""

    def __init__(self, path):
        from safetensors.torch import load_file
        with open(os.path.join(path, 'config.json')) as f:
            c = json.load(f)
        self.c = c
        w = {}
        for fn in sorted(os.listdir(path)):
            if fn.endswith('.safetensors'):
                w.update(load_file(os.path.join(path, fn), device='cuda'))
        self.w = {k: v.half() for k, v in w.items()}
        self.nh, self.nkv = c['num_attention_heads'], c['num_key_value_heads']
        self.hd = c['hidden_size'] // self.nh
        self.L = c['num_hidden_layers']
        self.eps = c.get('rms_norm_eps', 1e-5)
        inv = 1.0 / (c.get('rope_theta', 10000.0) **
                     (torch.arange(0, self.hd, 2, device='cuda').float() / self.hd))
        self.inv = inv

    def norm(self, x, wt):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).half() * wt

    def rope(self, x, pos):
        ang = pos[:, :, None].float() * self.inv  # [B, T, hd/2]
        cos, sin = ang.cos()[:, None].half(), ang.sin()[:, None].half()
        x1, x2 = x[..., :self.hd // 2], x[..., self.hd // 2:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def forward(self, tok, pos, kc, vc, start):
        w, B, T = self.w, tok.shape[0], tok.shape[1]
        x = w['model.embed_tokens.weight'][tok]
        for i in range(self.L):
            p = 'model.layers.%d.' % i
            h = self.norm(x, w[p + 'input_layernorm.weight'])
            q = (h @ w[p + 'self_attn.q_proj.weight'].T).view(B, T, self.nh, self.hd).transpose(1, 2)
            k = (h @ w[p + 'self_attn.k_proj.weight'].T).view(B, T, self.nkv, self.hd).transpose(1, 2)
            v = (h @ w[p + 'self_attn.v_proj.weight'].T).view(B, T, self.nkv, self.hd).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            kc[i][:, :, start:start + T] = k
            vc[i][:, :, start:start + T] = v
            a = torch.nn.functional.scaled_dot_product_attention(
                q, kc[i][:, :, :start + T], vc[i][:, :, :start + T], is_causal=T > 1,
                enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(B, T, -1) @ w[p + 'self_attn.o_proj.weight'].T
            h = self.norm(x, w[p + 'post_attention_layernorm.weight'])
            g = torch.nn.functional.silu(h @ w[p + 'mlp.gate_proj.weight'].T)
            x = x + (g * (h @ w[p + 'mlp.up_proj.weight'].T)) @ w[p + 'mlp.down_proj.weight'].T
        x = self.norm(x[:, -1:], w['model.norm.weight'])
        return x @ w['lm_head.weight'].T

    @torch.no_grad()
    def run(self, batch, prompt_len, gen):
        """(decode tokens/s, prefill tokens/s) for `batch` sequences."""
        L, ctx = self.L, prompt_len + gen
        kc = [torch.empty(batch, self.nkv, ctx, self.hd, dtype=torch.half, device='cuda')
              for _ in range(L)]
        vc = [torch.empty_like(t) for t in kc]
        tok = torch.randint(3, self.c['vocab_size'], (batch, prompt_len), device='cuda')
        pos = torch.arange(prompt_len, device='cuda')[None].expand(batch, -1)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        nxt = self.forward(tok, pos, kc, vc, 0).argmax(-1)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        for s in range(gen):
            p = torch.full((batch, 1), prompt_len + s, device='cuda')
            nxt = self.forward(nxt, p, kc, vc, prompt_len + s).argmax(-1)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        return batch * gen / (t2 - t1), batch * prompt_len / (t1 - t0)


def main(argv):
    bundle, work, budget = argv[1], argv[2], float(argv[3])
    t_start = time.time()
    run = json.loads(os.environ.get('TB_RUN_PREFIX', '[]'))
    os.makedirs(work, exist_ok=True)
    bw = copy_bandwidth()
    print('copy bandwidth (device to device, read + write): %.0f GB/s' % (bw / 1e9))
    rows = []
    for shape, dtype in [('1.1b', 'f16'), ('1.1b', 'q4_0'), ('8b', 'f16')]:
        if time.time() - t_start > budget * (0.45 if shape == '8b' else 0.8):
            rows.append((shape, dtype, 'skipped: out of time'))
            continue
        model = make_model(bundle, work, shape, dtype)
        r1 = ours(bundle, run, model, 1, GEN, PROMPT)
        wbytes = r1['cuda']['weight_bytes']
        r16 = ours(bundle, run, model, 16, GEN, PROMPT)
        r64 = ours(bundle, run, model, 64, GEN // 2, PROMPT)
        rp = ours(bundle, run, model, PREFILL[0], 1, PREFILL[1])
        d1 = decode_tps(r1, 1)
        line = ('turbine', shape, dtype, d1, 100.0 * d1 * wbytes / bw, decode_tps(r16, 16),
                decode_tps(r64, 64), rp['bench']['prefill']['tokens_per_s'])
        rows.append(line)
        if dtype == 'f16':
            tm = TorchLlama(model)
            t1, _ = tm.run(1, PROMPT, GEN)
            t16, _ = tm.run(16, PROMPT, GEN)
            t64, _ = tm.run(64, PROMPT, GEN // 2)
            _, tp = tm.run(PREFILL[0], PREFILL[1], 1)
            rows.append(('torch', shape, dtype, t1, 100.0 * t1 * wbytes / bw, t16, t64, tp))
            del tm
            torch.cuda.empty_cache()
    print('%-8s %-5s %-5s %12s %10s %12s %12s %12s' % ('engine', 'model', 'type', 'b1 tok/s',
                                                       'b1 % bw', 'b16 tok/s', 'b64 tok/s',
                                                       'prefill t/s'))
    for r in rows:
        if len(r) == 3:
            print('%-8s %-5s %-5s %s' % ('turbine', r[0], r[1], r[2]))
        else:
            print('%-8s %-5s %-5s %12.1f %9.1f%% %12.1f %12.1f %12.1f' % r)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
