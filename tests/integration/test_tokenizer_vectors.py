"""Every line of ../shared/tokenizer-vectors/*.gguf.out reproduced exactly from the matching
.gguf vocabulary and .inp text (no BOS/EOS, special-token text not parsed, as the reference
produced them), and decode(encode(text)) == text for each of those texts."""
import os

import pytest

from conftest import SHARED, run_tool

VECTORS = os.path.join(SHARED, 'tokenizer-vectors')
FILES = ['ggml-vocab-llama-spm.gguf', 'ggml-vocab-phi-3.gguf', 'ggml-vocab-gpt-2.gguf',
         'ggml-vocab-falcon.gguf', 'ggml-vocab-mpt.gguf']
SEP = '\n__ggml_vocab_test__\n'


def read_cases(name):
    raw = open(os.path.join(VECTORS, name + '.inp'), encoding='utf-8').read()
    texts, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            texts.append(raw[pos:])
            break
        texts.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    lines = open(os.path.join(VECTORS, name + '.out'), encoding='utf-8').read().split('\n')
    assert len(lines) >= len(texts)
    return texts, [[int(x) for x in line.split()] for line in lines[:len(texts)]]


def run(args, data):
    return run_tool('tb_tokenize', args, input=data, timeout=300).stdout


@pytest.mark.parametrize('name', FILES)
def test_vectors(name):
    path = os.path.join(VECTORS, name)
    if not os.path.exists(path):
        pytest.skip('../shared/tokenizer-vectors absent')
    texts, expected = read_cases(name)
    assert len(texts) == 46
    data = b''.join(t.encode('utf-8') + b'\0' for t in texts)
    out = run([path, '--batch', '--no-special', '--no-parse-special'], data).decode()
    got = [[int(x) for x in line.split()] for line in out.split('\n')[:-1]]
    assert len(got) == len(texts)
    for t, e, g in zip(texts, expected, got):
        assert g == e, 'text %r\n  expected %s\n  got      %s' % (t, e, g)


@pytest.mark.parametrize('name', FILES)
def test_vectors_round_trip(name):
    path = os.path.join(VECTORS, name)
    if not os.path.exists(path):
        pytest.skip('../shared/tokenizer-vectors absent')
    texts, expected = read_cases(name)
    data = b''.join(' '.join(map(str, ids)).encode() + b'\0' for ids in expected)
    for stream in ([], ['--stream']):
        out = run([path, '--decode', '--batch'] + stream, data).split(b'\0')[:-1]
        assert [o.decode('utf-8') for o in out] == texts


def test_gguf_special_tokens_and_bos():
    path = os.path.join(VECTORS, 'ggml-vocab-phi-3.gguf')
    if not os.path.exists(path):
        pytest.skip('../shared/tokenizer-vectors absent')
    info = dict(line.split(' ', 1) for line in
                run([path, '--info'], b'').decode().strip().split('\n'))
    assert info['bos'] == '1' and info['eos'] == '32000' and info['adds_bos'] == '1'
    # <|end|> ends generation too (llama.cpp's end-of-generation texts).
    assert '32007' in info['eos_ids'].split()
    # Parsed as one token (and the whitespace after it swallowed, as llama.cpp does for
    # Phi-3), or spelled out as text.
    parsed = run([path, '--text', '<|user|>\nHi<|end|>'], b'').decode().split()
    assert parsed[:2] == ['1', '32010'] and '32007' in parsed
    plain = run([path, '--no-parse-special', '--text', '<|user|>'], b'').decode().split()
    assert '32010' not in plain and len(plain) > 3
