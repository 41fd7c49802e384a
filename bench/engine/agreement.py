#!/usr/bin/env python3
"""Our logits against llama.cpp's on the same GGUF file (a script like the benchmark; not in CI).

  .venv/bin/python bench/engine/agreement.py FILE.gguf [FILE.gguf ...] [--ctx 256] [--chunks 2]

For each file: llama.cpp's llama-perplexity (LLAMA_CPP_DIR, default
/work/peers/llama.cpp/build/bin) tokenizes a text (--text; default: this repository's docs
pages, concatenated), cuts it into --chunks windows of --ctx tokens (the first token of each
replaced by BOS) and saves, with --kl-divergence-base, the log-probabilities of every position
of the second half of each window (llama.cpp's own format: per position an f32 scale and
minimum, then the log-probabilities as 16-bit steps between max - 16 and max).  Our engine
(build/<mode>/tests/tools/tb_forward --all-logits) computes the logits of every position of the
same token windows.  Compared over those positions: top-1 agreement (our argmax equals
llama.cpp's), mean and max KL(llama.cpp || ours) in nats, and our mean |delta log p| of the
token llama.cpp ranks first.  Prints a markdown table and writes the figures as JSON
(--out, default $TB_BENCH_DIR/agreement-<time>.json).
"""
import argparse
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def log(msg):
    sys.stderr.write('[agreement] %s\n' % msg)
    sys.stderr.flush()


def default_text(path):
    with open(path, 'w') as f:
        for p in sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md'))):
            with open(p) as src:
                f.write(src.read())
                f.write('\n\n')


def llama_base(llama_dir, model, text, ctx, chunks, threads, out):
    """Runs llama-perplexity --kl-divergence-base; returns (n_ctx, n_vocab, windows, records):
    windows[c] the token ids of window c as llama.cpp evaluated them (BOS first), records[c] the
    [ctx - 1 - ctx // 2, n_vocab] log-probabilities of its positions ctx // 2 .. ctx - 2."""
    exe = os.path.join(llama_dir, 'llama-perplexity')
    cmd = [exe, '-m', model, '-f', text, '-c', str(ctx), '-b', str(ctx), '--chunks', str(chunks),
           '-t', str(threads), '--kl-divergence-base', out]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError('llama-perplexity exited %d: %s' % (r.returncode, r.stderr[-800:]))
    with open(out, 'rb') as f:
        data = f.read()
    if data[:8] != b'_logits_':
        raise RuntimeError('%s: not a llama-perplexity logits file' % out)
    n_ctx, n_vocab, n_chunk = struct.unpack_from('<iii', data, 8)
    off = 20
    tokens = np.frombuffer(data, dtype='<i4', count=n_ctx * n_chunk, offset=off)
    off += 4 * n_ctx * n_chunk
    nv = 2 * ((n_vocab + 1) // 2) + 4
    first = n_ctx // 2
    n_pos = n_ctx - 1 - first
    recs = np.frombuffer(data, dtype='<u2', count=n_chunk * n_pos * nv, offset=off)
    recs = recs.reshape(n_chunk, n_pos, nv)
    bos = bos_id(model)
    windows, records = [], []
    for c in range(n_chunk):
        w = tokens[c * n_ctx:(c + 1) * n_ctx].astype(np.int64).copy()
        if bos is not None:
            w[0] = bos
        head = recs[c, :, :4].copy().view('<f4')  # [n_pos, 2]: scale, min log-prob
        q = recs[c, :, 4:4 + n_vocab].astype(np.float64)
        lp = head[:, 1:2].astype(np.float64) + head[:, 0:1].astype(np.float64) * q
        windows.append(w)
        records.append(lp)
    return n_ctx, n_vocab, windows, records


def bos_id(model):
    """The BOS id llama.cpp puts first in every window: the file's tokenizer.ggml.bos_token_id
    when it asks for one (tokenizer.ggml.add_bos_token, true when absent as in llama.cpp's
    SentencePiece default), else None.  Read from the file, not from llama.cpp's log, whose
    wording and verbosity change between versions (a missed BOS shifted every window after the
    first and made the first runs of this script disagree)."""
    import gguf
    r = gguf.GGUFReader(model)

    def scalar(key):
        f = r.fields.get(key)
        return None if f is None else f.parts[f.data[0]][0]
    add = scalar('tokenizer.ggml.add_bos_token')
    bos = scalar('tokenizer.ggml.bos_token_id')
    if bos is None or (add is not None and not bool(add)):
        return None
    return int(bos)


def ours_logits(build, model, window, threads, workdir):
    exe = os.path.join(build, 'tests', 'tools', 'tb_forward')
    d = os.path.join(workdir, 'ours')
    os.makedirs(d, exist_ok=True)
    cmd = [exe, model, '--prompt', ','.join(str(int(t)) for t in window), '--all-logits', d,
           '--threads', str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError('tb_forward exited %d: %s' % (r.returncode, r.stderr[-800:]))
    return np.load(os.path.join(d, '0.npy'))


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def compare(llama_dir, build, model, a, workdir):
    base = os.path.join(workdir, 'base.kld')
    t0 = time.time()
    n_ctx, n_vocab, windows, records = llama_base(llama_dir, model, a.text, a.ctx, a.chunks,
                                                  a.threads, base)
    t1 = time.time()
    first = n_ctx // 2
    agree = total = 0
    kls, dtop = [], []
    for w, lp_l in zip(windows, records):
        logits = ours_logits(build, model, w, a.threads, workdir)  # [n_ctx, vocab]
        lp_o = log_softmax(logits[first:n_ctx - 1, :n_vocab])
        p_l = np.exp(lp_l)
        p_l /= p_l.sum(axis=-1, keepdims=True)
        kl = (p_l * (np.log(p_l + 1e-30) - lp_o)).sum(axis=-1)
        top_l = lp_l.argmax(axis=-1)
        top_o = lp_o.argmax(axis=-1)
        agree += int((top_l == top_o).sum())
        total += len(top_l)
        kls.extend(kl.tolist())
        dtop.extend(np.abs(lp_o[np.arange(len(top_l)), top_l] -
                           lp_l[np.arange(len(top_l)), top_l]).tolist())
    return {'file': model, 'positions': total, 'top1_agreement': agree / total if total else None,
            'kl_mean': float(np.mean(kls)), 'kl_max': float(np.max(kls)),
            'dlogp_top_mean': float(np.mean(dtop)), 'ctx': n_ctx, 'chunks': len(windows),
            'llama_seconds': t1 - t0, 'ours_seconds': time.time() - t1}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('files', nargs='+', help='GGUF files (e.g. made by llama-quantize)')
    ap.add_argument('--ctx', type=int, default=256, help='tokens per window')
    ap.add_argument('--chunks', type=int, default=2,
                    help='windows (each compares its second half: ctx / 2 - 1 positions)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--text', help='text file (default: docs/*.md concatenated)')
    ap.add_argument('--out', help='JSON results file')
    a = ap.parse_args()
    llama_dir = os.environ.get('LLAMA_CPP_DIR', '/work/peers/llama.cpp/build/bin')
    build = os.environ.get('TB_BUILD', os.path.join(ROOT, 'build', 'release'))
    if not os.path.exists(os.path.join(llama_dir, 'llama-perplexity')):
        raise SystemExit('agreement.py: no llama-perplexity in %s (set LLAMA_CPP_DIR)' % llama_dir)
    bench_dir = os.environ.get('TB_BENCH_DIR', '/tmp/tb-bench')
    os.makedirs(bench_dir, exist_ok=True)
    out = a.out or os.path.join(bench_dir, 'agreement-%s.json' % time.strftime('%Y%m%d-%H%M%S'))
    results = []
    with tempfile.TemporaryDirectory(prefix='tb-agree-') as work:
        if not a.text:
            a.text = os.path.join(work, 'text.txt')
            default_text(a.text)
        for f in a.files:
            log('%s' % f)
            try:
                res = compare(llama_dir, build, f, a, work)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as ex:
                log('failed: %s' % ex)
                res = {'file': f, 'error': str(ex)}
            results.append(res)
            with open(out, 'w') as fo:
                json.dump({'options': vars(a), 'results': results}, fo, indent=1)
    print('| file | positions | top-1 agreement | mean KL (nats) | max KL | mean abs dlogp top-1 |')
    print('|---|---|---|---|---|---|')
    for r in results:
        if 'error' in r:
            print('| %s | error: %s |' % (os.path.basename(r['file']), r['error'][:80]))
            continue
        print('| %s | %d | %.4f | %.2e | %.2e | %.2e |'
              % (os.path.basename(r['file']), r['positions'], r['top1_agreement'], r['kl_mean'],
                 r['kl_max'], r['dlogp_top_mean']))
    print('all figures: %s' % out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
