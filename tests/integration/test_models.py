"""Model loading end to end: tools/tb_make_model.py writes models of several shapes and dtypes
(HF folders and GGUF files), tests/tools/tb_model_info (tb_model_open) reads them back, and the
params and every tensor's bytes must be what the writer wrote.  Also: the TinyStories folder,
HF -> GGUF conversion, and the reference forward pass agreeing across formats."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import exitcheck
from conftest import BUILD, ROOT, SHARED, tool

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import tb_modelio as mio  # noqa: E402

PY = sys.executable
MAKE = os.path.join(ROOT, 'tools', 'tb_make_model.py')
REF = os.path.join(ROOT, 'tools', 'tb_ref_forward.py')
TINYSTORIES = os.path.join(SHARED, 'models', 'tinystories-656k')
SPM = os.path.join(SHARED, 'tokenizer-vectors', 'ggml-vocab-llama-spm.gguf')


def need_shared():
    # the writer takes its vocabularies from ../shared (TinyStories' tokenizer, llama's SPM)
    if not os.path.exists(SPM) or not os.path.isdir(TINYSTORIES):
        pytest.skip('../shared tokenizer data absent (%s, %s)' % (SPM, TINYSTORIES))


def make(out, *args):
    """Runs tools/tb_make_model.py in this process (its main(argv))."""
    need_shared()
    import tb_make_model
    assert tb_make_model.main(['--out', str(out)] + [str(a) for a in args]) == 0
    return str(out)


def info(path, expect_ok=True):
    exe = tool('tb_model_info')
    assert os.path.exists(exe), 'build %s first' % exe
    p = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=300)
    exitcheck.check_exit(p.returncode, p.stdout + p.stderr, 0 if expect_ok else 1,
                         'tb_model_info')
    if not expect_ok:
        return p.stderr.strip()
    return json.loads(p.stdout)


def fnv1a64(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return '%016x' % h


def hf_raw_tensors(folder):
    """{hf name: (dtype, shape, bytes)} straight from the safetensors files."""
    out = {}
    index = os.path.join(folder, 'model.safetensors.index.json')
    files = sorted(set(json.load(open(index))['weight_map'].values())) \
        if os.path.exists(index) else ['model.safetensors']
    for fn in files:
        with open(os.path.join(folder, fn), 'rb') as f:
            blob = f.read()
        (n,) = struct.unpack('<Q', blob[:8])
        header = json.loads(blob[8:8 + n])
        header.pop('__metadata__', None)
        for name, e in header.items():
            b, end = e['data_offsets']
            out[name] = (e['dtype'], e['shape'], blob[8 + n + b:8 + n + end])
    return out


def gguf_raw_tensors(path):
    import gguf
    r = gguf.GGUFReader(path)
    return {t.name: (t.tensor_type.name, [int(x) for x in reversed(t.shape.tolist())],
                     np.asarray(t.data).tobytes()) for t in r.tensors}


def expected_inv_freq(p):
    d, theta = p['head_dim'], p['rope_theta']
    base = [theta ** (-(2.0 * i) / d) for i in range(d // 2)]
    rs = p['rope_scaling']
    if rs['type'] == 'linear':
        return [b / rs['factor'] for b in base]
    if rs['type'] in ('llama3', 'freq_factors'):
        return None  # compared across formats instead
    return base


CASES = [
    # id, tool args, expected params subset
    ('hf-f32-tied-vocab2048', ['--format', 'hf', '--dtype', 'f32'],
     dict(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, head_dim=16, vocab=2048,
          tied_embeddings=True, rope_layout='neox', dtype='f32', qkv_bias=False)),
    ('hf-bf16-untied-gqa', ['--format', 'hf', '--dtype', 'bf16', '--layers', '3', '--hidden',
                            '96', '--heads', '6', '--kv-heads', '3', '--intermediate', '160',
                            '--vocab', '512', '--untied', '--context', '1024'],
     dict(n_layers=3, hidden=96, n_heads=6, n_kv_heads=3, head_dim=16, vocab=512,
          tied_embeddings=False, dtype='bf16', max_context=1024)),
    ('hf-f16-qwen2-bias', ['--format', 'hf', '--dtype', 'f16', '--qkv-bias', '--vocab', '300',
                           '--untied'],
     dict(arch='qwen2', qkv_bias=True, dtype='f16', vocab=300, rope_layout='neox')),
    ('hf-f32-llama3-sharded', ['--format', 'hf', '--dtype', 'f32', '--vocab', '1000',
                               '--rope-theta', '500000', '--rope-scaling', 'llama3:8,1,4,64',
                               '--shard-mb', '1', '--head-dim', '32', '--heads', '4',
                               '--kv-heads', '1'],
     dict(head_dim=32, n_kv_heads=1, rope_theta=500000.0, vocab=1000)),
    ('hf-linear-mha', ['--format', 'hf', '--heads', '4', '--kv-heads', '4', '--vocab', '400',
                       '--rope-scaling', 'linear:4', '--generation',
                       '{"temperature": 0.7, "top_p": 0.9, "top_k": 20, "eos_token_id": [2, 5]}'],
     dict(n_kv_heads=4)),
    ('gguf-f32', ['--format', 'gguf', '--dtype', 'f32'],
     dict(dtype='f32', rope_layout='interleaved', tokenizer_source='gguf', tied_embeddings=True)),
    ('gguf-f16-untied', ['--format', 'gguf', '--dtype', 'f16', '--untied', '--vocab', '512'],
     dict(dtype='f16', tied_embeddings=False, vocab=512)),
    ('gguf-bf16', ['--format', 'gguf', '--dtype', 'bf16'], dict(dtype='bf16')),
    ('gguf-q8_0', ['--format', 'gguf', '--dtype', 'q8_0', '--untied'],
     dict(dtype='q8_0', tied_embeddings=False)),
    ('gguf-q4_0', ['--format', 'gguf', '--dtype', 'q4_0'], dict(dtype='q4_0')),
    ('gguf-qwen2-q8_0', ['--format', 'gguf', '--dtype', 'q8_0', '--qkv-bias', '--vocab', '300'],
     dict(arch='qwen2', qkv_bias=True, rope_layout='neox', dtype='q8_0')),
    ('gguf-llama3', ['--format', 'gguf', '--vocab', '512', '--rope-theta', '500000',
                     '--rope-scaling', 'llama3:8,1,4,64'],
     dict(rope_theta=500000.0)),
    ('gguf-linear', ['--format', 'gguf', '--vocab', '512', '--rope-scaling', 'linear:2'],
     dict()),
]


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_written_model_reads_back(tmp_path, case):
    name, args, want = case
    fmt = args[args.index('--format') + 1]
    out = make(tmp_path / ('m.gguf' if fmt == 'gguf' else 'm'), *args, '--seed', 7)
    d = info(out)
    p = d['params']
    for k, v in want.items():
        assert p[k] == v, (k, p[k], v)
    assert p['format'] == fmt
    assert d['copied_bytes'] == 0
    assert p['bos_id'] == 1 and p['eos_id'] == 2 and 2 in p['eos_ids']
    raw = hf_raw_tensors(out) if fmt == 'hf' else gguf_raw_tensors(out)
    listed = {t['source'] for t in d['tensors']}
    assert listed == set(raw), 'every file tensor is in the table and nothing else'
    for t in d['tensors']:
        dtype, shape, data = raw[t['source']]
        if fmt == 'hf':
            assert dtype == t['dtype'].upper()
        else:
            assert dtype == t['dtype'].upper()
        assert shape == t['shape'], t['name']
        assert len(data) == t['size']
        assert fnv1a64(data) == t['fnv1a64'], t['name']
    names = {t['name'] for t in d['tensors']}
    assert {'tok_embd', 'output', 'out_norm'} <= names
    per_layer = 12 if p['qkv_bias'] else 9
    assert len([n for n in names if n.startswith('layers.')]) == p['n_layers'] * per_layer
    if p['tied_embeddings']:
        out_t = [t for t in d['tensors'] if t['name'] == 'output'][0]
        emb_t = [t for t in d['tensors'] if t['name'] == 'tok_embd'][0]
        assert out_t['fnv1a64'] == emb_t['fnv1a64'] and out_t['source'] == emb_t['source']
    inv = expected_inv_freq(p)
    if inv is not None:
        np.testing.assert_allclose(d['rope_inv_freq'], inv, rtol=1e-12)
    if fmt == 'hf':
        cfg = json.load(open(os.path.join(out, 'config.json')))
        assert p['hidden'] == cfg['hidden_size'] and p['n_layers'] == cfg['num_hidden_layers']
        assert p['tokenizer_source'] == 'hf_json'
        assert p['rms_eps'] == cfg['rms_norm_eps']
    if name == 'hf-linear-mha':
        g = p['generation']
        assert (g['temperature'], g['top_p'], g['top_k']) == (0.7, 0.9, 20)
        assert p['eos_ids'] == [2, 5]
    if name.startswith('gguf') and p['vocab'] != 2048:
        assert p['chat_template'] and 'add_generation_prompt' in p['chat_template']


def test_llama3_inv_freq_same_from_config_and_rope_freqs(tmp_path):
    args = ['--vocab', '512', '--rope-theta', '500000', '--rope-scaling', 'llama3:8,1,4,64',
            '--head-dim', '32', '--heads', '4', '--kv-heads', '2', '--seed', '3']
    hf = info(make(tmp_path / 'hf', '--format', 'hf', *args))
    gg = info(make(tmp_path / 'm.gguf', '--format', 'gguf', *args))
    assert hf['params']['rope_scaling']['type'] == 'llama3'
    assert hf['params']['rope_scaling']['original_max_positions'] == 64
    assert gg['params']['rope_scaling']['type'] == 'freq_factors'
    # rope_freqs.weight is stored in float32: agreement to float32 precision
    np.testing.assert_allclose(hf['rope_inv_freq'], gg['rope_inv_freq'], rtol=1e-6)
    inv = np.array(hf['rope_inv_freq'])
    base = 500000.0 ** (-np.arange(0, 32, 2) / 32.0)
    wavelen = 2 * np.pi / base
    assert np.allclose(inv[wavelen < 64 / 4], base[wavelen < 64 / 4])  # high freq unchanged
    assert np.allclose(inv[wavelen > 64 / 1], base[wavelen > 64 / 1] / 8)  # low freq / factor


@pytest.mark.pure_python
def test_same_seed_same_weights_across_formats(tmp_path):
    """GGUF llama Q/K rows are HF's rows permuted the llama.cpp way; everything else equal."""
    args = ['--vocab', '512', '--untied', '--seed', '11', '--heads', '4', '--kv-heads', '2']
    spec, _, hf = mio.load_hf(make(tmp_path / 'hf', '--format', 'hf', *args))
    _, _, gg, layout = mio.load_gguf(make(tmp_path / 'm.gguf', '--format', 'gguf', *args))
    assert layout == 'interleaved'
    assert set(hf) == set(gg)
    for k, a in hf.items():
        b = gg[k]
        if k.endswith('.wq'):
            a = mio.permute_qk(a, spec.n_heads)
        elif k.endswith('.wk'):
            a = mio.permute_qk(a, spec.n_kv_heads)
        np.testing.assert_array_equal(a, b, err_msg=k)
    # the permutation: inside a head of d rows, row 2i+a of the GGUF is row a*d/2+i of HF
    d = spec.head_dim
    wq_hf, wq_gg = hf['layers.0.wq'], gg['layers.0.wq']
    np.testing.assert_array_equal(wq_gg[d + 2 * 3 + 1], wq_hf[d + d // 2 + 3])


def ref_logits(model, tokens):
    """tools/tb_ref_forward.py's model, in this process, float64."""
    import torch
    import tb_ref_forward
    with torch.no_grad():
        return tb_ref_forward.Model(str(model), torch.float64).forward(tokens).numpy()


@pytest.mark.pure_python
@pytest.mark.parametrize('extra', [
    [], ['--qkv-bias'], ['--rope-theta', '500000', '--rope-scaling', 'llama3:8,1,4,64'],
    ['--rope-scaling', 'linear:2', '--heads', '4', '--kv-heads', '4']],
    ids=['llama-gqa', 'qwen2-bias', 'llama3-scaling', 'linear-mha'])
def test_reference_forward_agrees_across_formats(tmp_path, extra):
    """The same weights as HF (rotate-half RoPE) and as GGUF (permuted rows, interleaved RoPE)
    give the same logits in the reference: checks the reference and the writer together."""
    args = ['--vocab', '512', '--untied', '--seed', '5', '--layers', '2'] + extra
    hf = make(tmp_path / 'hf', '--format', 'hf', *args)
    gg = make(tmp_path / 'm.gguf', '--format', 'gguf', *args)
    toks = [1] + list(range(3, 90))  # 88 positions: past llama3's original 64
    a = ref_logits(hf, toks)
    b = ref_logits(gg, toks)
    assert a.shape == (len(toks), 512)
    assert 0.05 < a.std() < 5, 'random weights scaled like a trained model give sane logits'
    # GGUF stores rms_eps (and llama3's rope_freqs) in float32, HF configs in decimal
    tol = 1e-6 if 'llama3:8,1,4,64' in extra else 1e-8
    assert np.abs(a - b).max() <= tol * np.abs(a).max()
    q = ref_logits(make(tmp_path / 'q.gguf', '--format', 'gguf', '--dtype', 'q8_0', *args), toks)
    assert np.abs(a - q).max() < 0.05 * np.abs(a).max(), 'q8_0 stays close to f32'


def test_tinystories_loads(tmp_path):
    if not os.path.isdir(TINYSTORIES):
        pytest.skip('%s absent' % TINYSTORIES)
    d = info(TINYSTORIES)
    p = d['params']
    assert (p['arch'], p['n_layers'], p['hidden'], p['n_heads'], p['n_kv_heads']) == \
        ('llama', 2, 128, 8, 4)
    assert (p['intermediate'], p['vocab'], p['max_context']) == (384, 2048, 512)
    assert p['tied_embeddings'] and p['rms_eps'] == 1e-6 and p['rope_theta'] == 10000.0
    assert (p['bos_id'], p['eos_id'], p['add_bos'], p['add_eos']) == (1, 2, 1, 0)
    assert p['chat_template'] is None
    assert p['tokenizer_path'].endswith('tinystories-656k/tokenizer.json')
    emb = [t for t in d['tensors'] if t['name'] == 'tok_embd'][0]
    assert emb['source'] == 'lm_head.weight'  # the file stores only lm_head (tied)
    assert d['weight_bytes'] == os.path.getsize(os.path.join(TINYSTORIES, 'model.safetensors')) \
        - 8 - 2160
    # converted to GGUF in every dtype, it loads with the same shape
    for dt in ('f32', 'q8_0', 'q4_0'):
        out = make(tmp_path / ('ts-%s.gguf' % dt), '--from', TINYSTORIES, '--format', 'gguf',
                   '--dtype', dt)
        g = info(out)['params']
        assert (g['vocab'], g['n_layers'], g['hidden'], g['dtype']) == (2048, 2, 128, dt)
        assert g['tied_embeddings'] and g['tokenizer_source'] == 'gguf'
        assert (g['bos_id'], g['eos_id'], g['add_bos']) == (1, 2, 1)


@pytest.mark.pure_python
def test_tinystories_reference_story():
    """Greedy decoding from BOS with the reference gives the coherent story the README
    promises (a known-good independent check of the reference's math)."""
    if not os.path.isdir(TINYSTORIES):
        pytest.skip('%s absent' % TINYSTORIES)
    p = subprocess.run([PY, REF, TINYSTORIES, '--generate', '40', '--text', '--json'],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    text = json.loads(p.stdout)['text']
    assert text.startswith('Once upon a time, there was a little girl named Lily.'), text


def test_truncated_and_lying_files_are_refused(tmp_path):
    out = make(tmp_path / 'm.gguf', '--format', 'gguf', '--dtype', 'q8_0', '--vocab', '300')
    blob = open(out, 'rb').read()
    for n in [0, 3, 8, 24, 100, 1000, len(blob) // 2, len(blob) - 1]:
        cut = tmp_path / ('cut%d.gguf' % n)
        cut.write_bytes(blob[:n])
        msg = info(cut, expect_ok=False)
        assert msg.startswith("cannot load model '%s'" % cut), msg
    folder = make(tmp_path / 'hf', '--format', 'hf', '--vocab', '300')
    st = os.path.join(folder, 'model.safetensors')
    blob = open(st, 'rb').read()
    open(st, 'wb').write(blob[:-1])
    assert 'outside the data area' in info(folder, expect_ok=False)
    open(st, 'wb').write(blob)
    cfg_path = os.path.join(folder, 'config.json')
    cfg = json.load(open(cfg_path))
    cfg['model_type'] = 'gpt_neox'
    cfg['architectures'] = ['GPTNeoXForCausalLM']
    json.dump(cfg, open(cfg_path, 'w'))
    msg = info(folder, expect_ok=False)
    assert 'config.json: model_type "gpt_neox": is not supported' in msg
    cfg['model_type'] = 'llama'
    cfg['architectures'] = ['LlamaForCausalLM']
    cfg['rope_scaling'] = {'rope_type': 'dynamic', 'factor': 2.0}
    json.dump(cfg, open(cfg_path, 'w'))
    assert 'rope_scaling.rope_type "dynamic": is not supported' in info(folder, expect_ok=False)
