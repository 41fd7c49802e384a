#!/usr/bin/env python3
"""Our logits against llama.cpp's on the same GGUF file (a script like the benchmark; not in CI).

  .venv/bin/python bench/engine/agreement.py FILE.gguf [FILE.gguf ...] [--ctx 256] [--chunks 2]
  .venv/bin/python bench/engine/agreement.py --quantize F16.gguf --types Q4_K_M,Q6_K,Q8_0 \
      [--keep DIR] [--text FILE] ...

--quantize runs llama.cpp's llama-quantize on F16.gguf once per type of --types (into --keep,
default a temporary folder) and compares every file it writes, after F16.gguf itself.
--llama-args passes more arguments to llama-perplexity (e.g. "--no-repack" to take llama.cpp's
plain, not its repacked, kernels).

For each file: llama.cpp's llama-perplexity (LLAMA_CPP_DIR, default
/work/peers/llama.cpp/build/bin; its default path, flash attention on where the CPU backend
has it, is the reference) tokenizes a text (--text; default: this repository's docs pages,
concatenated), cuts it into --chunks windows of --ctx tokens (the first token of each replaced
by BOS) and saves, with --kl-divergence-base, the log-probabilities of every position of the
second half of each window (llama.cpp's own format: per position an f32 scale and minimum, then
the log-probabilities as 16-bit steps between max - 16 and max).  Our engine
(build/<mode>/tests/tools/tb_forward --all-logits) computes the logits of every position of the
same token windows.  Compared over those positions:
- top-1 agreement (our argmax equals llama.cpp's), with the number of disagreements;
- top-1 agreement over the positions where llama.cpp's top token leads its second by more than
  --margin nats (default 0.05), and the median and largest such lead where we disagree: two
  correct implementations part on near-ties, since every 8-bit activation quantization turns
  a last-bit difference into a whole quantization step now and then;
- mean and max KL(llama.cpp || ours) in nats, ours first stored as llama.cpp stores its own
  (so that it compares like with like with the columns below), and our mean |delta log p| of
  the token llama.cpp ranks first.
Then (--no-floor skips it) two more llama.cpp runs, flash attention on and off: ours against
flash attention off (which rounds the query and the softmax weights to f16), and llama.cpp
against itself, on against off: the same weights and activation quantization, another
attention, i.e. the agreement two correct implementations reach on this model and text, the
measure's noise floor.  Prints a markdown table and writes the figures as JSON (--out, default
$TB_BENCH_DIR/agreement-<time>.json).  bench/engine/make_trained_model.py makes a trained model
and text for it (docs/performance.md).
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


def llama_base(llama_dir, model, text, ctx, chunks, threads, out, extra=()):
    """Runs llama-perplexity --kl-divergence-base; returns (n_ctx, n_vocab, windows, records):
    windows[c] the token ids of window c as llama.cpp evaluated them (BOS first), records[c] the
    [ctx - 1 - ctx // 2, n_vocab] log-probabilities of its positions ctx // 2 .. ctx - 2."""
    exe = os.path.join(llama_dir, 'llama-perplexity')
    cmd = [exe, '-m', model, '-f', text, '-c', str(ctx), '-b', str(ctx), '--chunks', str(chunks),
           '-t', str(threads), '--kl-divergence-base', out] + list(extra)
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


def tensor_types(model):
    """'q4_k 14, q6_k 2, f32 5': the GGUF block types of a file's tensors, with counts."""
    import gguf
    counts = {}
    for t in gguf.GGUFReader(model).tensors:
        name = t.tensor_type.name.lower()
        counts[name] = counts.get(name, 0) + 1
    return ', '.join('%s %d' % kv for kv in sorted(counts.items(), key=lambda kv: -kv[1]))


def quantize(llama_dir, src, types, folder):
    """llama-quantize src into folder/<type>.gguf per type; returns the paths."""
    exe = os.path.join(llama_dir, 'llama-quantize')
    out = []
    for t in types:
        dst = os.path.join(folder, '%s.gguf' % t.lower())
        r = subprocess.run([exe, src, dst, t], capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            log('llama-quantize %s failed: %s' % (t, r.stderr[-400:]))
            continue
        out.append(dst)
    return out


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def stored(lp):
    """Log-probabilities as llama-perplexity stores them (its log_softmax): values below
    max - 16 raised to it, the rest in 65535 steps, renormalized; the KL of ours against
    llama.cpp's then compares like with like, as the flash-attention floor does."""
    mx = lp.max(axis=-1, keepdims=True)
    lo = np.maximum(lp.min(axis=-1, keepdims=True), mx - 16)
    step = (mx - lo) / 65535
    q = np.round((np.maximum(lp, lo) - lo) / np.where(step > 0, step, 1))
    return log_softmax(lo + step * q)


def margins(lp):
    """Per position, the log-probability of the top token minus that of the second (nats)."""
    top2 = np.partition(lp, -2, axis=-1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def against(lp_l, lp_o):
    """Per position of two [positions, vocab] log-probability arrays (l is llama.cpp's stored
    one): (top-1 match, KL(l || o), |delta log p| of l's top token)."""
    p_l = np.exp(lp_l)
    p_l /= p_l.sum(axis=-1, keepdims=True)
    kl = (p_l * (np.log(p_l + 1e-30) - lp_o)).sum(axis=-1)
    top_l = lp_l.argmax(axis=-1)
    rows = np.arange(len(top_l))
    return top_l == lp_o.argmax(axis=-1), kl, np.abs(lp_o[rows, top_l] - lp_l[rows, top_l])


def summary(match, margin, min_margin):
    """Top-1 figures of one comparison: agreement, agreement over the positions whose reference
    margin exceeds min_margin, and the reference margins where the two disagree."""
    sure = margin > min_margin
    miss = margin[~match]
    return {'top1': float(match.mean()),
            'top1_sure': float(match[sure].mean()) if sure.any() else None,
            'sure_positions': int(sure.sum()), 'disagreements': int((~match).sum()),
            'miss_margin_median': float(np.median(miss)) if len(miss) else None,
            'miss_margin_max': float(miss.max()) if len(miss) else None}


def llama_fa_runs(llama_dir, model, a, workdir):
    """llama.cpp's log-probabilities of the same windows with flash attention on and with it
    off (the same weights and quantized activations, another attention: off rounds the query
    and the softmax weights to f16): [positions, vocab] each."""
    extra = a.llama_args.split()
    runs = [llama_base(llama_dir, model, a.text, a.ctx, a.chunks, a.threads,
                       os.path.join(workdir, 'fa-%s.kld' % fa), extra + ['-fa', fa])[3]
            for fa in ('on', 'off')]
    return [log_softmax(np.concatenate(r)) for r in runs]


def compare(llama_dir, build, model, a, workdir):
    base = os.path.join(workdir, 'base.kld')
    t0 = time.time()
    n_ctx, n_vocab, windows, records = llama_base(llama_dir, model, a.text, a.ctx, a.chunks,
                                                  a.threads, base, a.llama_args.split())
    t1 = time.time()
    first = n_ctx // 2
    ours = []
    for w in windows:
        logits = ours_logits(build, model, w, a.threads, workdir)  # [n_ctx, vocab]
        ours.append(log_softmax(logits[first:n_ctx - 1, :n_vocab]))
    t2 = time.time()
    ours = np.concatenate(ours)
    ref = log_softmax(np.concatenate(records))
    margin = margins(ref)
    match, kl_raw, dtop = against(ref, ours)
    kl = against(ref, stored(ours))[1]
    res = {'file': model, 'types': tensor_types(model), 'positions': len(ref),
           'kl_mean': float(np.mean(kl)), 'kl_max': float(np.max(kl)),
           'kl_mean_unstored': float(np.mean(kl_raw)), 'dlogp_top_mean': float(np.mean(dtop)),
           'min_margin': a.margin, 'ctx': n_ctx, 'chunks': len(windows),
           'llama_seconds': t1 - t0, 'ours_seconds': t2 - t1}
    res.update(summary(match, margin, a.margin))
    if a.floor:
        on, off = llama_fa_runs(llama_dir, model, a, workdir)
        m_off, kl_off, _ = against(off, stored(ours))
        res['vs_fa_off'] = dict(summary(m_off, margins(off), a.margin),
                                kl_mean=float(np.mean(kl_off)))
        m_fl, kl_fl, _ = against(on, off)
        res['llama_fa_on_off'] = dict(summary(m_fl, margins(on), a.margin),
                                      kl_mean=float(np.mean(kl_fl)))
    return res


def row(r):
    """One markdown table row of a result."""
    if 'error' in r:
        return '| %s | error: %s |' % (os.path.basename(r['file']), r['error'][:80])

    def top(x):
        return '%.4f (%d)' % (x['top1'], x['disagreements'])

    def sure(x):
        return '-' if x['top1_sure'] is None else '%.4f' % x['top1_sure']

    def miss(x):
        return '-' if x['miss_margin_max'] is None else \
            '%.3f / %.3f' % (x['miss_margin_median'], x['miss_margin_max'])
    cols = [os.path.basename(r['file']), r['types'], '%d' % r['positions'], top(r), sure(r),
            miss(r), '%.2e' % r['kl_mean'], '%.2e' % r['kl_max'], '%.2e' % r['dlogp_top_mean']]
    for k in ('vs_fa_off', 'llama_fa_on_off'):
        x = r.get(k)
        cols += ['-', '-', '-'] if x is None else [top(x), sure(x), '%.2e' % x['kl_mean']]
    return '| %s |' % ' | '.join(cols)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('files', nargs='*', help='GGUF files (e.g. made by llama-quantize)')
    ap.add_argument('--quantize', metavar='F16.gguf',
                    help='make the files with llama-quantize from this file (see --types)')
    ap.add_argument('--types', default='Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K,IQ4_XS,Q4_0',
                    help='llama-quantize types for --quantize (comma list)')
    ap.add_argument('--keep', help='--quantize: write the files here (default: temporary)')
    ap.add_argument('--llama-args', default='', help='more llama-perplexity arguments')
    ap.add_argument('--no-floor', dest='floor', action='store_false',
                    help='skip the llama.cpp flash-attention on/off runs (ours against flash '
                    'attention off, llama.cpp against itself)')
    ap.add_argument('--margin', type=float, default=0.05,
                    help="top-1 agreement also over the positions where the reference's top "
                    'token leads the second by more than this many nats (default 0.05)')
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
        if a.quantize:
            folder = a.keep or work
            os.makedirs(folder, exist_ok=True)
            a.files = [a.quantize] + a.files + quantize(llama_dir, a.quantize,
                                                        a.types.split(','), folder)
        if not a.files:
            raise SystemExit('agreement.py: no files (give FILE.gguf or --quantize)')
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
    m = '%g' % a.margin
    print('| file | tensor types | positions | top-1 agreement (disagreements) | top-1, margin > '
          + m + ' | llama.cpp margin at disagreements: median / max | mean KL (nats) | max KL '
          '| mean abs dlogp top-1 | vs llama.cpp FA off: top-1 | top-1, margin > ' + m +
          ' | mean KL | llama.cpp FA on vs off: top-1 | top-1, margin > ' + m + ' | mean KL |')
    print('|---' * 15 + '|')
    for r in results:
        print(row(r))
    print('all figures: %s' % out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
