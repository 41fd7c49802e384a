"""Our tokenizer.json support against Hugging Face's own `tokenizers` library.

Besides the TinyStories tokenizer in ../shared/models, the test builds further tokenizer.json
files with `tokenizers` itself from the vocabularies in ../shared/tokenizer-vectors: GPT-2
byte-level, a Llama-3-style split regex (ignore_merges, BOS template, lstrip special token),
Qwen2-style (NFC + split regex), Falcon-style (punctuation / digits steps), MPT/NeoX-style (NFC,
whitespace added tokens), SentencePiece-style with byte fallback (normalizer flavour and
Metaspace flavour) and a Phi-3-style one (rstrip special tokens).  Each is compared on a varied
corpus of more than 200 strings (unicode, whitespace runs, digits, code, special tokens inside
text) for encode (with and without special tokens, with and without parsing them), decode,
streaming decode and continuation of a prompt.  The ids are computed by tests/tools/tb_tokenize.
"""
import os
import random

import pytest

from conftest import SHARED, run_tool as run_built

tokenizers = pytest.importorskip('tokenizers')
gguf = pytest.importorskip('gguf')
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,  # noqa: E402
                        normalizers, pre_tokenizers, processors)

VECTORS = os.path.join(SHARED, 'tokenizer-vectors')
TINYSTORIES = os.path.join(SHARED, 'models', 'tinystories-656k')

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


# ---- corpus --------------------------------------------------------------------------------

BASE = [
    '', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\t\t\n  \n',
    'Hello world', ' Hello world', 'Hello World!', 'Hello, world!', '  Hello',
    '    Hello\n    Hello',
    'Once upon a time, there was a little girl named Lily.',
    "I'm sure you'll love it; they've said it's theirs, we'd go, he'll see.",
    "I'M SURE YOU'LL LOVE IT, THEY'VE", "don't won't can't shan't y'all ' era",
    '3', '33', '333', '3333', '33333', '333333', '1234567890', '3.14159', '1,000,000.00',
    '-42 +7 1e10 0x1F 0b1010', 'version 2.10.3-rc1', '½ ² ³ ⅛ Ⅷ ٣٤٥ ०१२ 𝟙𝟚',
    'def f(x):\n    return x ** 2  # square\n',
    'for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n',
    '{"key": [1, 2, {"nested": null}], "s": "a\\"b"}',
    '<div class="x">&nbsp;<br/></div>', 'SELECT * FROM t WHERE a >= 10 AND b <> \'x\';',
    'https://example.com/path?q=1&r=two#frag', 'user@example.org', '$HOME/.config/~tmp',
    'café naïve résumé coöperate', 'e\u0301 vs \u00e9 (combining vs precomposed)',
    'Ångström Å Å', 'ﬁ ﬀ ＡＢＣ full-width ｱｲｳ', 'straße STRASSE İstanbul ǅ',
    '日本語のテキストです。', '中文字符和标点，还有数字123。', '한국어 문장입니다.',
    'ภาษาไทยไม่มีช่องว่าง', 'हिन्दी में पाठ', 'مرحبا بالعالم', 'שלום עולם', 'Привет, мир!',
    'Ελληνικά κείμενα', 'ქართული', 'ខ្មែរ', '🙂 😀😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✅',
    '🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)',
    'tab\tseparated\tvalues', 'trailing spaces   ', '   leading spaces', 'a\u00a0b\u3000c',
    'a\u0085b\u2028c\u2029d', 'zero\u200bwidth\u200djoiner', '\u2581already metaspace\u2581',
    'ĠGPT-2 alphabet Ġ Ċ', '<0x0A> <0xE2> text that looks like byte tokens',
    '!!!!!!', '???!!!...', '-----', '=====', '___', '***bold***', '((()))', '[[1]]',
    'mixedCASEwords camelCase snake_case kebab-case', 'ALLCAPS lowercase Titlecase',
    'a' * 300, ' '.join(['word'] * 80), 'x' + ' ' * 40 + 'y', '\n' * 12 + 'z',
    'The quick brown fox jumps over the lazy dog. ' * 6,
]

FRAGMENTS = ['the', 'The', ' quick', 'fox', "it's", '12', '345', '6789', '3.5', '!', '?',
             '...', ',', ';', '\t', '\n', '  ', '   ', 'é', 'ß', '日本', '語', '🙂', '👍🏽',
             'x=1', '(a+b)', '{', '}', '<', '>', '|', '/', '\\', '"', "'", '_', '#', '$', '%',
             'naïve', 'Привет', 'مرحبا', 'ок', 'A', 'Z', '0', ' 0', '\u2581', 'Ġ']


def corpus(specials):
    rng = random.Random(1234)
    texts = list(BASE)
    for _ in range(160):
        n = rng.randint(1, 12)
        texts.append(''.join(rng.choice(FRAGMENTS) + rng.choice(['', ' ', '', '\n', '  '])
                             for _ in range(n)))
    for s in specials:
        texts += [s, 'Hello' + s, s + 'Hello', 'Hello ' + s + ' world', s + s,
                  ' ' + s + '\n', 'a' + s + 'b' + s + 'c', s[:-1], 'x' + s[1:],
                  '  ' + s + '  text', s + '\n\nNext paragraph ' + s]
    return texts


# ---- tokenizers built with HF tokenizers -----------------------------------------------------

def gguf_vocab(name):
    path = os.path.join(VECTORS, name)
    r = gguf.GGUFReader(path)

    def strs(key):
        f = r.fields.get(key)
        return [] if f is None else [bytes(f.parts[i]).decode('utf-8') for i in f.data]

    def nums(key):
        f = r.fields.get(key)
        return [] if f is None else [f.parts[i][0].item() for i in f.data]

    return strs('tokenizer.ggml.tokens'), strs('tokenizer.ggml.merges'), \
        nums('tokenizer.ggml.scores'), nums('tokenizer.ggml.token_type')


def bpe_from_gguf(name, **kw):
    toks, merges, _, _ = gguf_vocab(name)
    vocab = {t: i for i, t in enumerate(toks)}
    pairs = [tuple(m.split(' ', 1)) for m in merges]
    return Tokenizer(models.BPE(vocab=vocab, merges=pairs, **kw)), toks


def spm_from_gguf(name):
    """A SentencePiece-style BPE (byte fallback) from a GGUF 'llama' vocabulary, its merges
    derived from the scores the way transformers' converter does."""
    toks, _, scores, _ = gguf_vocab(name)
    vocab = {t: i for i, t in enumerate(toks)}
    merges = []
    for piece, score in zip(toks, scores):
        local = []
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                local.append((a, b, score))
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2], reverse=True)
    bpe = models.BPE(vocab=vocab, merges=[(a, b) for a, b, _ in merges], unk_token='<unk>',
                     fuse_unk=True, byte_fallback=True)
    return Tokenizer(bpe)


def build_all(out_dir):
    built = {}

    def save(name, tk, specials):
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        tk.save(os.path.join(d, 'tokenizer.json'))
        built[name] = (d, specials)

    # GPT-2 byte-level, plus a non-special single_word added token.
    tk, _ = bpe_from_gguf('ggml-vocab-gpt-2.gguf')
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.add_special_tokens([AddedToken('<|endoftext|>', special=True, normalized=False)])
    tk.add_tokens([AddedToken('foobar', single_word=True, normalized=False)])
    save('gpt2', tk, ['<|endoftext|>', 'foobar', ' foobar ', 'foobars'])

    # Llama-3 style: split regex + ByteLevel without its regex, ignore_merges, BOS template.
    tk, toks = bpe_from_gguf('ggml-vocab-gpt-2.gguf', ignore_merges=True)
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior='isolated', invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    specials = ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>']
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tk.add_special_tokens([AddedToken('<|eot_id|>', special=True, normalized=False,
                                      lstrip=True)])
    bos = tk.token_to_id('<|begin_of_text|>')
    tk.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single='<|begin_of_text|> $A',
                                      special_tokens=[('<|begin_of_text|>', bos)])])
    save('llama3_style', tk, specials + ['<|eot_id|>'])

    # Qwen2 style: NFC, per-digit split regex, chat special tokens.
    tk, _ = bpe_from_gguf('ggml-vocab-mpt.gguf')
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior='isolated', invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    save('qwen2_style', tk, specials)

    # Falcon style: punctuation, byte-level with regex, digits, 3-digit split.
    tk, _ = bpe_from_gguf('ggml-vocab-falcon.gguf')
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior='contiguous'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex('[0-9][0-9][0-9]'), behavior='isolated', invert=False)])
    tk.decoder = decoders.ByteLevel()
    specials = ['>>TITLE<<', '>>ABSTRACT<<', '<|endoftext|>']
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    save('falcon_style', tk, specials)

    # MPT / GPT-NeoX style: NFC, byte-level, whitespace-run added tokens (not special).
    tk, toks = bpe_from_gguf('ggml-vocab-mpt.gguf')
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken('<|endoftext|>', special=True, normalized=False)])
    tk.add_tokens([AddedToken(' ' * k, normalized=False) for k in range(2, 25)])
    save('mpt_style', tk, ['<|endoftext|>', '          '])

    # SentencePiece style, normalizer flavour (Llama 2 / TinyLlama / Mistral tokenizer.json).
    tk = spm_from_gguf('ggml-vocab-llama-spm.gguf')
    tk.normalizer = normalizers.Sequence([normalizers.Prepend('\u2581'),
                                          normalizers.Replace(' ', '\u2581')])
    tk.decoder = decoders.Sequence([decoders.Replace('\u2581', ' '), decoders.ByteFallback(),
                                    decoders.Fuse(), decoders.Strip(' ', 1, 0)])
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False)
                           for s in ['<unk>', '<s>', '</s>']])
    tk.post_processor = processors.TemplateProcessing(single='<s> $A',
                                                      special_tokens=[('<s>', 1)])
    save('spm_normalizer', tk, ['<s>', '</s>', '<unk>'])

    # SentencePiece style, Metaspace flavour (prepend_scheme first, no split).
    tk = spm_from_gguf('ggml-vocab-llama-spm.gguf')
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement='\u2581', prepend_scheme='first',
                                                split=False)
    tk.decoder = decoders.Sequence([decoders.ByteFallback(),
                                    decoders.Metaspace(replacement='\u2581',
                                                       prepend_scheme='first', split=False)])
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False)
                           for s in ['<unk>', '<s>', '</s>']])
    tk.post_processor = processors.TemplateProcessing(single='<s> $A',
                                                      special_tokens=[('<s>', 1)])
    save('spm_metaspace', tk, ['<s>', '</s>'])

    # Phi-3 style: chat special tokens that swallow the whitespace after them.
    tk = spm_from_gguf('ggml-vocab-phi-3.gguf')
    tk.normalizer = normalizers.Sequence([normalizers.Prepend('\u2581'),
                                          normalizers.Replace(' ', '\u2581')])
    tk.decoder = decoders.Sequence([decoders.Replace('\u2581', ' '), decoders.ByteFallback(),
                                    decoders.Fuse(), decoders.Strip(' ', 1, 0)])
    specials = ['<|user|>', '<|assistant|>', '<|end|>', '<|system|>']
    tk.add_special_tokens([AddedToken('<s>', special=True, normalized=False)])
    tk.add_special_tokens([AddedToken(s, special=True, normalized=False, rstrip=True)
                           for s in specials])
    tk.post_processor = processors.TemplateProcessing(single='<s> $A',
                                                      special_tokens=[('<s>', 1)])
    save('phi3_style', tk, specials)
    return built


@pytest.fixture(scope='session')
def models_dir(tmp_path_factory):
    if not os.path.isdir(VECTORS):
        pytest.skip('../shared/tokenizer-vectors absent')
    d = str(tmp_path_factory.mktemp('hf_tokenizers'))
    built = build_all(d)
    if os.path.isdir(TINYSTORIES):
        built['tinystories'] = (TINYSTORIES, ['<|start_story|>', '<|end_story|>', '<unk>'])
    return built


NAMES = ['gpt2', 'llama3_style', 'qwen2_style', 'falcon_style', 'mpt_style', 'spm_normalizer',
         'spm_metaspace', 'phi3_style', 'tinystories']


# ---- driving tb_tokenize -------------------------------------------------------------------

def run_tool(args, data):
    return run_built('tb_tokenize', args, input=data).stdout


def our_encode(model, texts, *flags):
    data = b''.join(t.encode('utf-8') + b'\0' for t in texts)
    lines = run_tool([model, '--batch'] + list(flags), data).decode().split('\n')
    assert len(lines) == len(texts) + 1
    return [[int(x) for x in line.split()] for line in lines[:-1]]


def our_decode(model, id_lists, *flags):
    data = b''.join(' '.join(map(str, ids)).encode() + b'\0' for ids in id_lists)
    out = run_tool([model, '--decode', '--batch'] + list(flags), data)
    parts = out.split(b'\0')
    assert len(parts) == len(id_lists) + 1
    return [p.decode('utf-8') for p in parts[:-1]]


def hf_tokenizer(path):
    return Tokenizer.from_file(os.path.join(path, 'tokenizer.json'))


def model_or_skip(models_dir, name):
    if name not in models_dir:
        pytest.skip('%s absent' % name)
    return models_dir[name]


# ---- encode --------------------------------------------------------------------------------

@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('mode', ['add_special', 'no_special', 'no_parse_special'])
def test_encode_matches_hf(models_dir, name, mode):
    path, specials = model_or_skip(models_dir, name)
    texts = corpus(specials)
    hf = hf_tokenizer(path)
    flags = {'add_special': [], 'no_special': ['--no-special'],
             'no_parse_special': ['--no-special', '--no-parse-special']}[mode]
    if mode == 'no_parse_special':
        hf.encode_special_tokens = True
    assert len(texts) >= 200, 'the corpus the module docstring promises'
    expected = [hf.encode(t, add_special_tokens=(mode == 'add_special')).ids for t in texts]
    got = our_encode(path, texts, *flags)
    bad = [(t, e, g) for t, e, g in zip(texts, expected, got) if e != g]
    assert not bad, '%d/%d differ, first: %r\n  hf  %s\n  ours %s' % (
        len(bad), len(texts), bad[0][0], bad[0][1], bad[0][2])


# ---- decode --------------------------------------------------------------------------------

def lossy_model(hf, ids, skip):
    """Our documented rule for byte-fallback tokenizers: the bytes of every token, with each
    ill-formed UTF-8 subsequence replaced by one U+FFFD (what Python's 'replace' does).  HF's
    ByteFallback decoder instead replaces every byte of a byte-token run that is not valid as a
    whole, which would make a streaming decoder hold text back until the run ends."""
    out = b''
    for i in ids:
        piece = hf.id_to_token(i)
        if skip and piece in ('<s>', '</s>', '<unk>', '<|start_story|>', '<|end_story|>'):
            continue
        if len(piece) == 6 and piece.startswith('<0x') and piece.endswith('>'):
            out += bytes([int(piece[3:5], 16)])
        else:
            out += piece.replace('\u2581', ' ').encode()
    text = out.decode('utf-8', errors='replace')
    return text[1:] if text.startswith(' ') else text


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('skip', [False, True])
def test_decode_matches_hf(models_dir, name, skip):
    path, specials = model_or_skip(models_dir, name)
    hf = hf_tokenizer(path)
    texts = corpus(specials)
    id_lists = [hf.encode(t).ids for t in texts]
    # Sequences that start mid-word (or mid-character) and contain specials in odd places.
    rng = random.Random(7)
    for ids in list(id_lists[:80]):
        if len(ids) > 3:
            k = rng.randint(1, len(ids) - 1)
            id_lists.append(ids[k:])
    expected = [hf.decode(ids, skip_special_tokens=skip) for ids in id_lists]
    byte_fallback = name.startswith('spm') or name in ('phi3_style', 'tinystories')
    n_model = 0
    for k, ids in enumerate(id_lists):
        if byte_fallback and '\ufffd' in expected[k]:
            expected[k] = lossy_model(hf, ids, skip)
            n_model += 1
    flags = ['--skip-special'] if skip else []
    for stream in ([], ['--stream']):
        got = our_decode(path, id_lists, *(flags + stream))
        bad = [(i, e, g) for i, e, g in zip(id_lists, expected, got) if e != g]
        assert not bad, '%s: %d differ, first ids %s\n  want %r\n  ours %r' % (
            stream, len(bad), bad[0][0][:20], bad[0][1], bad[0][2])
    assert n_model < len(id_lists) // 4


@pytest.mark.parametrize('name', NAMES)
def test_stream_continuation_matches_hf(models_dir, name):
    """Streaming the ids after a prompt gives what decode(prompt + ids) adds to
    decode(prompt): the leading space of the continuation is kept."""
    path, specials = model_or_skip(models_dir, name)
    hf = hf_tokenizer(path)
    compared = 0
    cases = []
    for t in corpus(specials):
        ids = hf.encode(t, add_special_tokens=False).ids
        if len(ids) < 2:
            continue
        k = len(ids) // 2
        whole = hf.decode(ids, skip_special_tokens=True)
        head = hf.decode(ids[:k], skip_special_tokens=True)
        if not whole.startswith(head) or '\ufffd' in whole:
            continue  # the prompt ends inside a character: no clean split exists
        cases.append((ids, k, whole[len(head):]))
    data = b''.join(('%d:' % k + ' '.join(map(str, ids))).encode() + b'\0'
                    for ids, k, _ in cases)
    outs = run_tool([path, '--decode', '--batch', '--skip-special'], data).split(b'\0')[:-1]
    assert len(outs) == len(cases)
    for (ids, k, want), out in zip(cases, outs):
        out = out.decode('utf-8')
        assert out == want, 'ids %s k %d: hf %r ours %r' % (ids[:20], k, want, out)
        compared += 1
    assert compared >= 100


# ---- configs and ids -----------------------------------------------------------------------

def test_tinystories_info_and_bos():
    if not os.path.isdir(TINYSTORIES):
        pytest.skip('../shared/models/tinystories-656k absent')
    info = run_tool([TINYSTORIES, '--info'], b'').decode()
    fields = dict(line.split(' ', 1) for line in info.strip().split('\n'))
    assert fields['kind'] == 'spm'
    assert fields['vocab_size'] == '2048'
    assert fields['bos'] == '1' and fields['eos'] == '2'
    assert fields['adds_bos'] == '1' and fields['adds_eos'] == '0'
    assert fields['eos_ids'].split() == ['2']
    ids = our_encode(TINYSTORIES, ['Once upon a time'])[0]
    assert ids[0] == 1


def test_config_add_eos_and_eos_list(models_dir, tmp_path):
    """tokenizer_config.json add_eos_token and generation_config.json eos lists apply."""
    path, _ = model_or_skip(models_dir, 'spm_normalizer')
    d = tmp_path / 'm'
    d.mkdir()
    (d / 'tokenizer.json').write_bytes(open(os.path.join(path, 'tokenizer.json'), 'rb').read())
    (d / 'tokenizer_config.json').write_text(
        '{"add_bos_token": false, "add_eos_token": true, "bos_token": "<s>", '
        '"eos_token": {"content": "</s>"}, "model_max_length": 1e30}')
    (d / 'generation_config.json').write_text('{"eos_token_id": [2, 29889, 2]}')
    ids = our_encode(str(d), ['Hello'])[0]
    assert ids[0] != 1 and ids[-1] == 2
    info = dict(line.split(' ', 1) for line in
                run_tool([str(d), '--info'], b'').decode().strip().split('\n'))
    assert info['eos_ids'].split() == ['2', '29889']
    assert info['adds_bos'] == '0' and info['adds_eos'] == '1'


def test_unsupported_and_malformed_are_errors(tmp_path):
    def refused(path):
        return run_built('tb_tokenize', [path, '--text', 'a'], expect=1).stderr
    bad = tmp_path / 'wordpiece.json'
    bad.write_text('{"model": {"type": "WordPiece", "vocab": {"a": 0}}}')
    assert b'WordPiece' in refused(bad)
    broken = tmp_path / 'broken.json'
    broken.write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}')
    assert b'merges[0]' in refused(broken)
    assert b'cannot open tokenizer' in refused(tmp_path / 'none')


# ---- GGUF families against the equivalent tokenizer.json -----------------------------------

def write_gguf(path, pre, toks, merges, specials, bos):
    w = gguf.GGUFWriter(path, 'llama')
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre(pre)
    w.add_token_list(toks + specials)
    w.add_token_types([1] * len(toks) + [3] * len(specials))
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize('pre,hf_name,vocab', [('llama-bpe', 'llama3_style', 'gpt-2'),
                                               ('qwen2', 'qwen2_style', 'mpt')])
def test_gguf_pre_families_match_hf(models_dir, tmp_path, pre, hf_name, vocab):
    """GGUF vocabularies that name the Llama-3 and Qwen2 pre-tokenizers encode like the
    tokenizer.json built with the same vocabulary and split regex (texts that NFC changes are
    left out: GGUF models are not normalized)."""
    import unicodedata
    path, specials = model_or_skip(models_dir, hf_name)
    hf = hf_tokenizer(path)
    toks, merges, _, _ = gguf_vocab('ggml-vocab-%s.gguf' % vocab)
    extra = [t.content for i, t in sorted(hf.get_added_tokens_decoder().items())
             if i >= len(toks)]
    bos = hf.token_to_id('<|begin_of_text|>') if hf_name == 'llama3_style' else 0
    g = str(tmp_path / ('%s.gguf' % pre))
    write_gguf(g, pre, toks, merges, extra, bos)
    texts = [t for t in corpus(specials) if unicodedata.normalize('NFC', t) == t]
    hf.encode_special_tokens = True
    add = hf_name == 'llama3_style'
    expected = [hf.encode(t, add_special_tokens=add).ids for t in texts]
    got = our_encode(g, texts, '--no-parse-special', *([] if add else ['--no-special']))
    bad = [(t, e, o) for t, e, o in zip(texts, expected, got) if e != o]
    assert len(texts) >= 200
    assert not bad, '%d differ, first %r\n  hf   %s\n  ours %s' % (len(bad), bad[0][0],
                                                                  bad[0][1], bad[0][2])
