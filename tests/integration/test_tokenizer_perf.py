"""Encoding speed on a few hundred KB of mixed text (prose, code, unicode), written to
$TB_BUILD/tokenizer_bench.txt, and a check that a long piece (SentencePiece style: the whole
text is one word) encodes in O(n log n): four times the text may take at most ten times as long
(a quadratic merge loop would take sixteen)."""
import os
import random
import subprocess

import pytest

from conftest import BUILD, SHARED, tool

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
    assert p.returncode == 0, p.stderr.decode(errors='replace')
    f = p.stdout.decode().split()
    return dict(zip(f[0::2], f[1::2]))


MODELS = [('gpt-2 (GGUF, byte-level)', os.path.join(VECTORS, 'ggml-vocab-gpt-2.gguf')),
          ('llama-spm (GGUF, SentencePiece)', os.path.join(VECTORS, 'ggml-vocab-llama-spm.gguf')),
          ('falcon (GGUF, byte-level)', os.path.join(VECTORS, 'ggml-vocab-falcon.gguf')),
          ('tinystories (tokenizer.json)', TINYSTORIES)]


def test_encode_throughput():
    present = [(n, p) for n, p in MODELS if os.path.exists(p)]
    if not present:
        pytest.skip('../shared/tokenizer-vectors and ../shared/models absent')
    text = mixed_text(350_000)
    lines = []
    for name, path in present:
        r = bench(path, text, 3)
        tps = float(r['tokens_per_s'])
        lines.append('%-34s %8s bytes %7s tokens %10.0f tokens/s %6s MB/s'
                     % (name, r['bytes'], r['tokens'], tps, r['MB_per_s']))
        assert int(r['tokens']) > 50_000
        assert tps > 20_000, lines[-1]
    with open(os.path.join(BUILD, 'tokenizer_bench.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def test_long_piece_is_not_quadratic():
    path = os.path.join(VECTORS, 'ggml-vocab-llama-spm.gguf')
    if not os.path.exists(path):
        pytest.skip('../shared/tokenizer-vectors absent')
    small = mixed_text(90_000, seed=3)
    large = small * 4
    t_small = min(float(bench(path, small, 1)['seconds']) for _ in range(3))
    t_large = min(float(bench(path, large, 1)['seconds']) for _ in range(3))
    assert t_large < 10 * max(t_small, 0.002), (t_small, t_large)
