"""GGUF `tokenizer.ggml.pre` values (docs/models.md): for each family of values, a byte-level BPE
vocabulary is trained with Hugging Face `tokenizers` on a multilingual corpus, with the split
regexes the family's published tokenizer.json uses (the originals: `(?i:...)`, `\\p{Lu}`...),
written as a vocabulary-only GGUF file naming the value, and tokenized by Turbine
(tests/tools/tb_tokenize) and by `tokenizers`: the ids must be equal for every text.  The merges
are learned on the text itself, so words become single tokens and any difference in where the
text is split shows as different ids.  An unknown value is refused naming it.
"""
import os

import pytest

from conftest import SHARED, run_tool

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r'\p{N}{1,3}', r'\p{N}')
O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
         r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+"
         r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
          r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
DS3 = [r'\p{N}{1,3}', '[一-龥\u3040-ゟ゠-ヿ]+',
       r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|"
       r" ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"]
# DeepSeek LLM's letter class, by code point (the cased letters of its tokenizer.json)
DS_LLM_LETTERS = """41-5A 61-7A B5 C0-D6 D8-F6 F8-1BA 1BC-1BF 1C4-293 295-2AF 370-373 376-377 37B-37D 37F 386
388-38A 38C 38E-3A1 3A3-3F5 3F7-481 48A-52F 531-556 10A0-10C5 13A0-13F5 13F8-13FD 1C90-1CBA
1CBD-1CBF 1D00-1D2B 1D6B-1D77 1D79-1D9A 1E00-1F15 1F18-1F1D 1F20-1F45 1F48-1F4D 1F50-1F57 1F59
1F5B 1F5D 1F5F-1F7D 1F80-1FB4 1FB6-1FBC 1FBE 1FC2-1FC4 1FC6-1FCC 1FD0-1FD3 1FD6-1FDB 1FE0-1FEC
1FF2-1FF4 1FF6-1FFC 2102 2107 210A-2113 2115 2119-211D 2124 2126 2128 212A-212D 212F-2134 2139
213C-213F 2145-2149 214E 2183-2184 2C00-2C7B 2C7E-2CE4 2CEB-2CEE 2CF2-2CF3 A640-A66D A680-A69B
A722-A76F A771-A787 A78B-A78E AB70-ABBF FB00-FB06 FB13-FB17 FF21-FF3A FF41-FF5A 10400-1044F
104B0-104D3 104D8-104FB 10C80-10CB2 10CC0-10CF2 118A0-118DF 1E900-1E943"""


def _class(spec):
    out = []
    for r in spec.split():
        a, _, b = r.partition('-')
        out.append(chr(int(a, 16)) + ('-' + chr(int(b, 16)) if b else ''))
    return ''.join(out)


DS_LLM = ['[\r\n]', r'\s?[' + _class(DS_LLM_LETTERS) + ']+',
          '\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+', r'\s+$',
          '[一-龥ࠀ-一가-퟿]+', r'\p{N}+']
DS_CODER = ['[\r\n]', r'\s?\p{L}+', r'\s?\p{P}+', '[一-龥ࠀ-一가-퟿]+', r'\p{N}']
BLOOM = [r' ?[^(\s|.,!?…。，、।۔،)]+']

# tokenizer.ggml.pre values -> the split regexes of the published tokenizer.json
FAMILIES = {
    'llama-bpe': [LLAMA3], 'falcon3': [LLAMA3], 'pixtral': [LLAMA3], 'dbrx': [LLAMA3],
    'chatglm-bpe': [LLAMA3], 'glm4': [LLAMA3],
    'qwen2': [QWEN2], 'deepseek-r1-qwen': [QWEN2], 'hunyuan': [QWEN2],
    'deepseek-v3': DS3, 'deepseek-llm': DS_LLM, 'deepseek-coder': DS_CODER,
    'gpt-4o': [O200K], 'llama4': [O200K], 'tekken': [TEKKEN],
    'gpt-2': [GPT2], 'olmo': [GPT2], 'trillion': [GPT2],
    'starcoder': [r'\p{N}', GPT2], 'smollm': [r'\p{N}', GPT2], 'refact': [r'\p{N}', GPT2],
    'command-r': [r'\p{N}', GPT2], 'exaone': [r'\p{N}', GPT2],
    'bloom': BLOOM, 'poro-chat': BLOOM,
    'falcon': [r'[\p{P}\$\+<=>\^~\|`]+', GPT2, '[0-9][0-9][0-9]'],
    'default': [r'[\p{P}\$\+<=>\^~\|]+', GPT2, r'\p{N}+', '[0-9][0-9][0-9]'],
}

EXTRA = ["I'll DON'T he's They'RE we've", 'HTTPServer parseJSON iPhone McDonald',
         '12345678 1,234.56 3.14159', '日本語のテキスト、カタカナとひらがな。漢字', '中文分词测试：你好，世界！',
         'Ελληνικά Кириллица Հայերեն ქართული', '  leading\ttabs\n\n\nnewlines  \r\n end   ',
         'path/to/file.py: x = y ** 2 # comment', 'emoji 🦙🚀 and ümlauts straße', '한국어 텍스트']


def corpus():
    path = os.path.join(SHARED, 'tokenizer-vectors', 'ggml-vocab-llama-spm.gguf.inp')
    if not os.path.exists(path):
        pytest.skip('../shared/tokenizer-vectors absent')
    raw = open(path, encoding='utf-8').read()
    return [t for t in raw.split('\n__ggml_vocab_test__\n') if t] + EXTRA


def train(regexes, texts):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), 'isolated') for r in regexes] +
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts * 3, trainer)
    return tok


def write_gguf(tok, pre, path):
    import json
    import gguf
    model = json.loads(tok.to_str())['model']
    vocab = model['vocab']
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [' '.join(m) if isinstance(m, list) else m for m in model['merges']]
    w = gguf.GGUFWriter(path, 'llama')
    w.add_tokenizer_model('gpt2')
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([1] * len(tokens))
    w.add_token_merges(merges)
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()


@pytest.mark.parametrize('pre', sorted(FAMILIES))
def test_pre_tokenizer_splits_as_tokenizers_does(pre, tmp_path):
    pytest.importorskip('tokenizers')
    texts = corpus()
    tok = train(FAMILIES[pre], texts)
    path = str(tmp_path / ('vocab-%s.gguf' % pre))
    write_gguf(tok, pre, path)
    data = b''.join(t.encode('utf-8') + b'\0' for t in texts)
    out = run_tool('tb_tokenize', [path, '--batch', '--no-special', '--no-parse-special'],
                   input=data, timeout=300).stdout.decode()
    got = [[int(x) for x in line.split()] for line in out.split('\n')[:-1]]
    assert len(got) == len(texts)
    for text, ours in zip(texts, got):
        theirs = tok.encode(text, add_special_tokens=False).ids
        assert ours == theirs, '%s: %r\n  tokenizers %s\n  turbine    %s' % (pre, text, theirs,
                                                                           ours)


def test_unknown_pre_tokenizer_is_refused(tmp_path):
    pytest.importorskip('tokenizers')
    tok = train([GPT2], ['hello world'])
    path = str(tmp_path / 'vocab-unknown.gguf')
    write_gguf(tok, 'no-such-pre', path)
    p = run_tool('tb_tokenize', [path, '--text', 'hi'], expect=1, timeout=60)
    assert "unknown pre-tokenizer 'no-such-pre'" in (p.stdout + p.stderr).decode()
