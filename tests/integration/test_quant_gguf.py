"""The reference dequantizers of plugins/common (tb_quant.c, through tests/tools/tb_dequant)
against the gguf package's (gguf.quants.dequantize), bit for bit, for every weight type a GGUF
file may carry here.  The blocks are random bytes with their f16 scales replaced by finite
values (random, and the edges: zeros of both signs, subnormals, the smallest normal, +-65504),
plus blocks whose quant bytes are all 0x00 or all 0xff (all-min / all-max codes) under each edge
scale."""
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import tool

gguf = pytest.importorskip('gguf')

# tb_dtype name -> (ggml type name, block bytes, byte offsets of the f16 fields)
TYPES = {
    'q8_0': ('Q8_0', 34, [0]),
    'q4_0': ('Q4_0', 18, [0]),
    'q4_1': ('Q4_1', 20, [0, 2]),
    'q5_0': ('Q5_0', 22, [0]),
    'q5_1': ('Q5_1', 24, [0, 2]),
    'iq4_nl': ('IQ4_NL', 18, [0]),
    'q2_k': ('Q2_K', 84, [80, 82]),
    'q3_k': ('Q3_K', 110, [108]),
    'q4_k': ('Q4_K', 144, [0, 2]),
    'q5_k': ('Q5_K', 176, [0, 2]),
    'q6_k': ('Q6_K', 210, [208]),
    'iq4_xs': ('IQ4_XS', 136, [0]),
}

# f16 bit patterns: +0, -0, smallest subnormal (both signs), largest subnormal, smallest
# normal, 1, -1, 0.5, the largest finite (both signs)
EDGE_F16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x3800, 0x7bff,
            0xfbff]


def random_f16(rng, n):
    """n random finite f16 bit patterns (every exponent but the inf/NaN one)."""
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    bad = (bits & 0x7c00) == 0x7c00
    bits[bad] &= 0xbfff  # clear the exponent's top bit: finite
    return bits


def make_blocks(rng, bsize, f16_offsets, n_random):
    blocks = [rng.integers(0, 256, size=(n_random, bsize), dtype=np.uint8)]
    for fill in (0x00, 0xff, None):
        for e in EDGE_F16:
            for sign_flip in (False, True):
                b = (rng.integers(0, 256, size=(1, bsize), dtype=np.uint8) if fill is None
                     else np.full((1, bsize), fill, dtype=np.uint8))
                for k, off in enumerate(f16_offsets):
                    v = e ^ (0x8000 if sign_flip and k == 1 else 0)  # dmin of the other sign
                    b[0, off:off + 2] = np.array([v], dtype='<u2').view(np.uint8)
                blocks.append(b)
    out = np.concatenate(blocks)
    r = random_f16(rng, n_random * len(f16_offsets)).reshape(n_random, len(f16_offsets))
    for k, off in enumerate(f16_offsets):
        out[:n_random, off:off + 2] = r[:, k:k + 1].astype('<u2').view(np.uint8)
    return out


def run_dequant(name, raw, tmp_path):
    exe = tool('tb_dequant')
    assert os.path.exists(exe), 'build %s first' % exe
    src, dst = tmp_path / ('%s.bin' % name), tmp_path / ('%s.f32' % name)
    src.write_bytes(raw.tobytes())
    p = subprocess.run([exe, name, str(src), str(dst)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return np.frombuffer(dst.read_bytes(), dtype='<f4')


@pytest.mark.parametrize('name', sorted(TYPES))
def test_dequantize_bit_exact(name, tmp_path):
    qname, bsize, offs = TYPES[name]
    qtype = getattr(gguf.GGMLQuantizationType, qname)
    block_elems, type_size = gguf.GGML_QUANT_SIZES[qtype]
    assert type_size == bsize
    rng = np.random.default_rng(1234 + bsize)
    blocks = make_blocks(rng, bsize, offs, 2000)
    want = gguf.quants.dequantize(blocks, qtype).astype(np.float32).reshape(-1)
    got = run_dequant(name, blocks, tmp_path)
    assert got.size == blocks.shape[0] * block_elems
    assert np.isfinite(want).all()  # the scales were chosen finite: so is every value
    diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    if diff.size:
        i = int(diff[0])
        pytest.fail('%s: %d of %d values differ; first at element %d (block %d): ours %r, gguf '
                    '%r; block bytes %s' % (name, diff.size, got.size, i, i // block_elems,
                                            float(got[i]), float(want[i]),
                                            blocks[i // block_elems].tobytes().hex()))


@pytest.mark.parametrize('name', ['f16', 'bf16'])
def test_float_types_bit_exact(name, tmp_path):
    """F16 and BF16 through the same tool: finite bit patterns, both signs, subnormals."""
    rng = np.random.default_rng(7)
    bits = np.concatenate([random_f16(rng, 20000) if name == 'f16'
                           else rng.integers(0, 1 << 16, size=20000).astype(np.uint16),
                           np.array(EDGE_F16, dtype=np.uint16)])
    if name == 'bf16':
        bits = bits[(bits & 0x7f80) != 0x7f80]  # finite bf16 only
    raw = bits.astype('<u2').view(np.uint8)
    qtype = getattr(gguf.GGMLQuantizationType, name.upper())
    want = gguf.quants.dequantize(raw.reshape(-1, 2), qtype).astype(np.float32).reshape(-1)
    got = run_dequant(name, raw, tmp_path)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_tool_refuses_partial_blocks(tmp_path):
    exe = tool('tb_dequant')
    src = tmp_path / 'x.bin'
    src.write_bytes(b'\0' * 145)  # one Q4_K block and a byte
    p = subprocess.run([exe, 'q4_k', str(src), str(tmp_path / 'y')], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1
    assert '145 bytes are not whole q4_k blocks of 144' in p.stderr


def write_mixed_model(path, rng, types=None):
    """A one-layer llama GGUF written by the gguf package: Q4_K and Q6_K matrices (random
    blocks, finite scales) and F32 norms, as a "Q4_K_M" file mixes them.  `types` overrides the
    type of some tensors (raw blocks of that type's size: ggml names as keys of TYPES, or a
    (ggml name, block bytes) pair for a type the loader refuses)."""
    w = gguf.GGUFWriter(str(path), 'llama')
    h, ff, vocab = 256, 512, 32
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(h)
    w.add_feed_forward_length(ff)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    q4k, q6k = 'q4_k', 'q6_k'
    mats = {'token_embd.weight': (vocab, h, q4k), 'blk.0.attn_q.weight': (h, h, q4k),
            'blk.0.attn_k.weight': (h, h, q4k), 'blk.0.attn_v.weight': (h, h, q6k),
            'blk.0.attn_output.weight': (h, h, q4k), 'blk.0.ffn_gate.weight': (ff, h, q4k),
            'blk.0.ffn_up.weight': (ff, h, q4k), 'blk.0.ffn_down.weight': (h, ff, q6k),
            'output.weight': (vocab, h, q6k)}
    want = {}
    for name, (rows, cols, t) in mats.items():
        t = (types or {}).get(name, t)
        qname, bsize, offs = TYPES[t] if t in TYPES else (t[0], t[1], [0])
        n_blocks = rows * cols // 256
        blocks = make_blocks(rng, bsize, offs, n_blocks)[:n_blocks]
        w.add_tensor(name, blocks.reshape(rows, cols // 256 * bsize),
                     raw_dtype=getattr(gguf.GGMLQuantizationType, qname))
        want[name] = (t, blocks.size)
    for name in ('blk.0.attn_norm.weight', 'blk.0.ffn_norm.weight', 'output_norm.weight'):
        w.add_tensor(name, np.ones(h, dtype=np.float32))
        want[name] = ('f32', h * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return want


def test_mixed_file_loads_and_cpu_engine_runs(tmp_path):
    """tb_model_open takes every tensor of a mixed-type file in its own type, and the CPU engine
    computes it (the logits' accuracy is test_forward_quant.py's)."""
    path = tmp_path / 'mixed.gguf'
    want = write_mixed_model(path, np.random.default_rng(5))
    p = subprocess.run([tool('tb_model_info'), str(path)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    got = {t['source']: (t['dtype'], t['size']) for t in json.loads(p.stdout)['tensors']}
    assert got == want
    p = subprocess.run([tool('tb_forward'), str(path), '--prompt', '1,2,3', '--generate', '2'],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_unsupported_type_refused_at_load(tmp_path):
    """A type the loader does not know (IQ2_XXS: 66-byte blocks of 256) is refused when the
    model opens, naming the tensor and type, before any engine sees it."""
    path = tmp_path / 'iq2.gguf'
    write_mixed_model(path, np.random.default_rng(6),
                      {'blk.0.attn_q.weight': ('IQ2_XXS', 66)})
    p = subprocess.run([tool('tb_forward'), str(path), '--prompt', '1'], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1
    assert "tensor 'blk.0.attn_q.weight': ggml type 16 (IQ2_XXS) is not supported" in p.stderr
