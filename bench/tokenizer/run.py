#!/usr/bin/env python3
"""Tokenizer speed (moved out of the test suite: a speed is a figure, not a test).

Encoding speed on a few hundred KB of mixed text (prose, code, unicode) with each vocabulary of
../shared, printed and written to build/<mode>/tokenizer_bench.txt, and the growth of a long
piece (SentencePiece style: the whole text is one word): four times the text should take at most
ten times as long (a quadratic merge loop would take sixteen).  With --check, exits 1 when a
tokenizer encodes under 20,000 tokens/s or the long piece grows faster than that.

usage: .venv/bin/python bench/tokenizer/run.py [--build build/release] [--check]"""
import argparse
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
BUILD = os.path.join(ROOT, 'build', 'release')


def tool(name):
    return os.path.join(BUILD, 'tests', 'tools', name)


VECTORS = os.path.join(SHARED, 'tokenizer-vectors')
TINYSTORIES = os.path.join(SHARED, 'models', 'tinystories-656k')


def mixed_text(n_bytes, seed=11):
    rng = random.Random(seed)
    words = ('the a of and to in is was that it he she they little girl named Lily big '
             'dog park happy sun play friend tree ball house red blue said looked found '
             'went saw wanted very day time once upon there with for on at by from').split()
    code = ['def f(x):\n    return x * 2\n', 'for (i = 0; i < n; i++) { s += a[i]; }\n',
            '{"id": 42, "name": "x", "tags": ["a", "b"]}\n', 'SELECT * FROM t WHERE a > 10;\n']
    uni = ['日本語のテキスト。', 'Привет, мир! ', 'مرحبا بالعالم ', 'café naïve ', '🙂👍🏽 ',
           '한국어 문장 ', '3.14159 2025-11-24 ']
    out, size = [], 0
    while size < n_bytes:
        r = rng.random()
        if r < 0.8:
            s = ' '.join(rng.choice(words) for _ in range(rng.randint(5, 20))) + '. '
            if rng.random() < 0.2:
                s += '\n\n'
        elif r < 0.9:
            s = rng.choice(code)
        else:
            s = rng.choice(uni)
        out.append(s)
        size += len(s.encode())
    return ''.join(out)


def bench(model, text, runs):
    p = subprocess.run([tool('tb_tokenize'), model, '--no-special', '--bench', str(runs)],
                       input=text.encode(), capture_output=True, timeout=600)
    if p.returncode != 0:
        sys.exit('tb_tokenize failed (%d): %s' % (p.returncode, p.stderr.decode(errors='replace')))
    f = p.stdout.decode().split()
    return dict(zip(f[0::2], f[1::2]))


MODELS = [('gpt-2 (GGUF, byte-level)', os.path.join(VECTORS, 'ggml-vocab-gpt-2.gguf')),
          ('llama-spm (GGUF, SentencePiece)', os.path.join(VECTORS, 'ggml-vocab-llama-spm.gguf')),
          ('falcon (GGUF, byte-level)', os.path.join(VECTORS, 'ggml-vocab-falcon.gguf')),
          ('tinystories (tokenizer.json)', TINYSTORIES)]


def throughput():
    """Prints one line per vocabulary; returns the problems found."""
    present = [(n, p) for n, p in MODELS if os.path.exists(p)]
    if not present:
        sys.exit('../shared/tokenizer-vectors and ../shared/models absent')
    text = mixed_text(350_000)
    lines, problems = [], []
    for name, path in present:
        r = bench(path, text, 3)
        tps = float(r['tokens_per_s'])
        lines.append('%-34s %8s bytes %7s tokens %10.0f tokens/s %6s MB/s'
                     % (name, r['bytes'], r['tokens'], tps, r['MB_per_s']))
        print(lines[-1])
        if tps < 20_000:
            problems.append('%s: %.0f tokens/s, under 20,000' % (name, tps))
    with open(os.path.join(BUILD, 'tokenizer_bench.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return problems


def long_piece():
    path = os.path.join(VECTORS, 'ggml-vocab-llama-spm.gguf')
    if not os.path.exists(path):
        sys.exit('../shared/tokenizer-vectors absent')
    small = mixed_text(90_000, seed=3)
    large = small * 4
    t_small = min(float(bench(path, small, 1)['seconds']) for _ in range(3))
    t_large = min(float(bench(path, large, 1)['seconds']) for _ in range(3))
    ratio = t_large / max(t_small, 0.002)
    print('long piece: 90 kB %.4f s, 360 kB %.4f s, ratio %.1f (linear 4, quadratic 16)'
          % (t_small, t_large, ratio))
    return ['long piece: 4x the text took %.1fx as long' % ratio] if ratio >= 10 else []


def main():
    global BUILD
    ap = argparse.ArgumentParser()
    ap.add_argument('--build', default=BUILD)
    ap.add_argument('--check', action='store_true', help='exit 1 below the floors')
    a = ap.parse_args()
    BUILD = os.path.abspath(a.build)
    problems = throughput() + long_piece()
    for p in problems:
        print('below the floor: ' + p)
    return 1 if problems and a.check else 0


if __name__ == '__main__':
    sys.exit(main())
