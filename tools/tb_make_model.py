#!/usr/bin/env python3
"""Writes random-weight Llama-family test models, as Hugging Face folders or GGUF files, or
converts an existing HF folder to GGUF.  Run with .venv/bin/python (numpy + the gguf package).

  tb_make_model.py --preset 15m --format gguf --dtype q8_0 --out /tmp/m15.gguf
  tb_make_model.py --layers 2 --hidden 64 --heads 4 --kv-heads 2 --intermediate 128 \\
                   --vocab 2048 --format hf --dtype bf16 --out /tmp/tiny
  tb_make_model.py --from ../shared/models/tinystories-656k --format gguf --dtype f16 --out x.gguf
  tb_make_model.py --preset 1b --format gguf --block-types q4_k_m --out /tmp/1b-q4_k_m.gguf

Weights are N(0, 0.02) (norms 1 + N(0, 0.05)), drawn per tensor from (seed, canonical name),
so the same seed gives the same weights in every format.  GGUF files follow llama.cpp's
conventions (llama.* keys, permuted Q/K rows, tokenizer.ggml.* metadata, 1-D tensors in F32,
rope_freqs.weight for Llama-3 rope scaling) so llama.cpp can load them.  See docs/models.md.

--block-types (GGUF, random weights) writes the matrices in GGUF block types the gguf package
cannot quantize into (the K-quants, IQ4_XS, ...): each is made of random valid blocks (random
bytes, per-block f16 scales, the mins set so a block's values centre on zero), scaled so the
matrix's RMS is 0.02 like the f32 weights'; 1-D tensors stay F32.  The recipe is q4_k_m
(llama.cpp's mix: Q4_K, with Q6_K for the output head and for attn_v / ffn_down of every other
layer) or a comma list of types given to the matrices in file order, cyclically.  These
weights are not the seed's f32 weights quantized: compare against the file's own dequantized
values (tb_ref_forward.py reads them so).
"""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tb_modelio as mio  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('TB_SHARED') or os.path.join(os.path.dirname(ROOT), 'shared')
TINYSTORIES = os.path.join(SHARED, 'models', 'tinystories-656k')
SPM_VOCAB = os.path.join(SHARED, 'tokenizer-vectors', 'ggml-vocab-llama-spm.gguf')

PRESETS = {
    # a few-layer model for unit and integration tests
    'tiny': dict(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, intermediate=128, vocab=2048,
                 context=512, tied=True),
    # llama2.c's stories15M shape
    '15m': dict(n_layers=6, hidden=288, n_heads=6, n_kv_heads=6, intermediate=768, vocab=32000,
                context=2048, tied=True),
    # llama2.c's stories110M shape
    '110m': dict(n_layers=12, hidden=768, n_heads=12, n_kv_heads=12, intermediate=2048,
                 vocab=32000, context=2048, tied=True),
    # TinyLlama-1.1B's shape
    '1b': dict(n_layers=22, hidden=2048, n_heads=32, n_kv_heads=4, intermediate=5632,
               vocab=32000, context=2048, tied=False, rms_eps=1e-5),
    # a Mixtral-style mixture of experts of about 1.1B parameters (0.33B active per token):
    # 8 experts of width 2560 per layer, top-2
    'moe1b': dict(arch='mixtral', n_layers=16, hidden=1024, n_heads=16, n_kv_heads=4,
                  intermediate=2560, n_experts=8, n_experts_used=2, vocab=32000, context=2048,
                  tied=False, rms_eps=1e-5),
}

# Our own minimal chat template for generated models (Zephyr-like turn markers).
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

GGUF_TYPES = {'f32': 'F32', 'f16': 'F16', 'bf16': 'BF16', 'q8_0': 'Q8_0', 'q4_0': 'Q4_0'}
FILE_TYPES = {'f32': 0, 'f16': 1, 'q4_0': 2, 'q8_0': 7, 'bf16': 32}

# --block-types: where each block type keeps its f16 scale d (byte offset), and its min m (Q4_1,
# Q5_1: value = q * d + m) or dmin (K-quants: value = d * sc * q - dmin * mn) as (offset,
# factor of d) that centres the values on zero for uniform random codes and scales.
BLOCK_F16 = {'q4_1': (0, (2, -7.5)), 'q5_0': (0, None), 'q5_1': (0, (2, -15.5)),
             'iq4_nl': (0, None), 'q2_k': (80, (82, 1.5)), 'q3_k': (108, None),
             'q4_k': (0, (2, 7.5)), 'q5_k': (0, (2, 15.5)), 'q6_k': (208, None),
             'iq4_xs': (0, None), 'q8_0': (0, None), 'q4_0': (0, None)}
BLOCK_RMS = 0.02


def block_type_for(recipe, cname, index):
    """The type of matrix `cname`, the index-th matrix in file order, under `recipe`."""
    if recipe == 'q4_k_m':
        kind = cname.split('.')[-1]
        if kind == 'output':
            return 'q6_k'
        if kind in ('wv', 'w_down') and int(cname.split('.')[1]) % 2 == 0:
            return 'q6_k'
        return 'q4_k'
    types = recipe.split(',')
    return types[index % len(types)]


def random_blocks(rng, btype, shape):
    """A [rows, cols] matrix of random valid `btype` blocks with RMS BLOCK_RMS, as the raw
    uint8 array [rows, row bytes] the gguf writer takes."""
    import gguf
    qt = getattr(gguf.GGMLQuantizationType, btype.upper())
    be, bb = gguf.GGML_QUANT_SIZES[qt]
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    if cols % be:
        raise SystemExit('tb_make_model: %s needs row lengths that are multiples of %d (got %d)'
                         % (btype, be, cols))
    n = rows * cols // be
    blocks = rng.integers(0, 256, size=(n, bb), dtype=np.uint8)
    d = rng.uniform(0.5, 1.5, size=(n, 1))
    d_off, mn = BLOCK_F16[btype]

    def set_scales(mult):
        blocks[:, d_off:d_off + 2] = (d * mult).astype(np.float16).view(np.uint8)
        if mn is not None:
            blocks[:, mn[0]:mn[0] + 2] = (d * mult * mn[1]).astype(np.float16).view(np.uint8)

    set_scales(1.0)
    rms = float(np.sqrt(np.mean(gguf.quants.dequantize(blocks, qt).astype(np.float64) ** 2)))
    set_scales(BLOCK_RMS / rms)
    return blocks.reshape(tuple(shape[:-1]) + (cols // be * bb,))


def parse_rope_scaling(s):
    """none | linear:FACTOR | llama3:FACTOR,LOW,HIGH,ORIG"""
    if not s or s == 'none':
        return None
    kind, _, rest = s.partition(':')
    vals = [float(x) for x in rest.split(',')] if rest else []
    if kind == 'linear' and len(vals) == 1:
        return {'rope_type': 'linear', 'factor': vals[0]}
    if kind == 'llama3' and len(vals) == 4:
        return {'rope_type': 'llama3', 'factor': vals[0], 'low_freq_factor': vals[1],
                'high_freq_factor': vals[2], 'original_max_position_embeddings': int(vals[3])}
    raise SystemExit('tb_make_model: bad --rope-scaling %r (none, linear:F, '
                     'llama3:F,LOW,HIGH,ORIG)' % s)


# ---------------------------------------------------------------------------------------------
# tokenizers

def vocab_for(spec):
    """(tokens, scores, types, tokenizer.json dict or None to copy TinyStories' files)."""
    if spec.vocab == 2048 and os.path.isdir(TINYSTORIES) and not spec.is_gemma:
        with open(os.path.join(TINYSTORIES, 'tokenizer.json')) as f:
            tj = json.load(f)
        t, s, ty = mio.spm_vocab_from_tokenizer_json(tj)
        return t, s, ty, None
    if not os.path.exists(SPM_VOCAB):
        raise SystemExit('tb_make_model: %s is absent: it is needed to build a vocabulary of %d '
                         'tokens' % (SPM_VOCAB, spec.vocab))
    t, s, ty = mio.spm_vocab_resized(*mio.spm_vocab_from_gguf(SPM_VOCAB), spec.vocab)
    tj = mio.tokenizer_json_from_spm(t, s, ty, spec.bos_id, spec.eos_id, 0)
    if spec.is_gemma:
        mio.gemma_style_tokenizer(tj)
    return t, s, ty, tj


def write_hf_tokenizer(spec, out):
    tokens, _, _, tj = vocab_for(spec)
    if tj is None:
        for fn in ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'):
            shutil.copyfile(os.path.join(TINYSTORIES, fn), os.path.join(out, fn))
        return
    with open(os.path.join(out, 'tokenizer.json'), 'w') as f:
        json.dump(tj, f, ensure_ascii=False)
    tc = {
        'add_bos_token': True, 'add_eos_token': False, 'bos_token': tokens[spec.bos_id],
        'eos_token': tokens[spec.eos_id], 'unk_token': tokens[0], 'pad_token': None,
        'clean_up_tokenization_spaces': False, 'legacy': False,
        'model_max_length': spec.context, 'tokenizer_class': 'LlamaTokenizer',
        'chat_template': CHAT_TEMPLATE,
        'added_tokens_decoder': {str(a['id']): {k: v for k, v in a.items() if k != 'id'}
                                 for a in tj['added_tokens']},
    }
    with open(os.path.join(out, 'tokenizer_config.json'), 'w') as f:
        json.dump(tc, f, indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# writers

def hf_dtype(d):
    m = {'f32': 'F32', 'f16': 'F16', 'bf16': 'BF16'}
    if d not in m:
        raise SystemExit('tb_make_model: an HF folder holds f32, f16 or bf16, not %s' % d)
    return m[d]


def file_tensors(spec, hf, with_rope_freqs=False):
    """[(file name, shape, [canonical parts])]: one part per tensor, except Phi-3's fused
    qkv_proj / gate_up_proj (attn_qkv / ffn_up), made of their canonical parts' rows; in GGUF
    each layer's experts are one 3-D tensor per kind (gguf_tensor_shapes)."""
    out = []
    fused = {}
    for h, g, parts in mio.PHI3_FUSED if spec.arch == 'phi3' else []:
        fused[parts[0]] = (h if hf else g, parts)
    skip = {p for _, _, parts in mio.PHI3_FUSED for p in parts[1:]} if fused else set()
    shapes = spec.tensor_shapes(with_rope_freqs=with_rope_freqs) if hf else \
        gguf_tensor_shapes(spec, with_rope_freqs)
    for cname, shape in shapes:
        kind = cname.split('.')[-1]
        if kind in skip:
            continue
        if kind in fused:
            fname, parts = fused[kind]
            layer = cname.split('.')[1]
            pre = 'model.layers.%s.' % layer if hf else 'blk.%s.' % layer
            names = ['layers.%s.%s' % (layer, k) for k in parts]
            shapes = dict(spec.tensor_shapes())
            rows = sum(shapes[n][0] for n in names)
            out.append((pre + fname, (rows, shape[1]), names))
            continue
        out.append((mio.hf_name(cname, spec.arch) if hf else mio.gguf_name(cname, spec.arch),
                    shape, [cname]))
    return out


def file_tensor_data(spec, produce, parts, hf):
    """The f32 data of one file tensor: its parts' rows stacked; Gemma's HF norms store
    weight = factor - 1 (its RMSNorm multiplies by 1 + weight)."""
    shapes = dict(spec.tensor_shapes())
    a = np.concatenate([produce(n, shapes[n]) for n in parts], axis=0) if len(parts) > 1 \
        else produce(parts[0], shapes[parts[0]])
    if hf and spec.is_gemma and parts[0].endswith('norm'):
        a = a - np.float32(1.0)
    return a


def write_hf(spec, produce, out, dtype, shard_mb=0, generation=None):
    """`produce(canonical name, shape)` returns float32 weights."""
    st = hf_dtype(dtype)
    os.makedirs(out, exist_ok=True)
    torch_dtype = {'F32': 'float32', 'F16': 'float16', 'BF16': 'bfloat16'}[st]
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(spec.hf_config(torch_dtype), f, indent=2)
    gen = {'bos_token_id': spec.bos_id, 'eos_token_id': spec.eos_id}
    gen.update(generation or {})
    with open(os.path.join(out, 'generation_config.json'), 'w') as f:
        json.dump(gen, f, indent=2)
    shapes = [(fn, shape) for fn, shape, _ in file_tensors(spec, True)]
    parts_of = {fn: parts for fn, _, parts in file_tensors(spec, True)}
    esize = {'F32': 4, 'F16': 2, 'BF16': 2}[st]
    groups = [[]]
    size = 0
    for name, shape in shapes:
        n = esize * int(np.prod(shape))
        if shard_mb and groups[-1] and size + n > shard_mb << 20:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += n
    for fn in ('model.safetensors', 'model.safetensors.index.json'):
        if os.path.exists(os.path.join(out, fn)):
            os.remove(os.path.join(out, fn))
    weight_map = {}
    for gi, group in enumerate(groups):
        fn = 'model.safetensors' if len(groups) == 1 else \
            'model-%05d-of-%05d.safetensors' % (gi + 1, len(groups))
        w = mio.SafetensorsWriter(os.path.join(out, fn), {'format': 'pt'})
        for name, shape in group:
            w.declare(name, st, shape)
            weight_map[name] = fn
        w.write(lambda hn: mio.to_st_bytes(file_tensor_data(spec, produce, parts_of[hn], True),
                                           st))
    if len(groups) > 1:
        total = sum(esize * int(np.prod(s)) for _, s in shapes)
        with open(os.path.join(out, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': {'total_size': total}, 'weight_map': weight_map}, f, indent=2)
    write_hf_tokenizer(spec, out)


def gguf_tensor_bytes(a, dtype):
    import gguf
    if dtype == 'f32':
        return np.ascontiguousarray(a, dtype=np.float32)
    if dtype == 'f16':
        return np.ascontiguousarray(a, dtype=np.float16)
    if dtype == 'bf16':
        return mio.f32_to_bf16_bits(a)
    qt = getattr(gguf.GGMLQuantizationType, GGUF_TYPES[dtype])
    return gguf.quants.quantize(np.ascontiguousarray(a, dtype=np.float32), qt)


def write_gguf(spec, produce, out, dtype, name='turbine-test', tokenizer=None, chat_template=None,
               add_bos=True, add_eos=False, block_types=None, seed=0):
    """`tokenizer` is (tokens, scores, types) or None to choose one from the vocab size;
    `block_types` a --block-types recipe (the matrices are then random blocks from `seed`)."""
    import gguf
    if dtype not in GGUF_TYPES:
        raise SystemExit('tb_make_model: unknown dtype %s' % dtype)
    if dtype in ('q8_0', 'q4_0'):
        for n in (spec.hidden, spec.intermediate, spec.n_heads * spec.head_dim,
                  spec.expert_intermediate, spec.shared_intermediate or 32):
            if n % 32:
                raise SystemExit('tb_make_model: %s needs row lengths that are multiples of 32 '
                                 '(got %d)' % (dtype, n))
    arch = spec.gguf_arch
    rs = spec.rope_scaling
    rtype = mio.rope_scaling_type(rs)
    if rtype not in ('none', 'default', 'linear', 'llama3', 'longrope'):
        raise SystemExit('tb_make_model: rope scaling %s is not supported' % rtype)
    w = gguf.GGUFWriter(out, arch)
    w.add_name(name)
    if block_types == 'q4_k_m':
        w.add_file_type(15)  # llama.cpp's MOSTLY_Q4_K_M
    elif block_types is None:
        w.add_file_type(FILE_TYPES[dtype])
    if dtype in ('q8_0', 'q4_0'):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(spec.context)
    w.add_embedding_length(spec.hidden)
    w.add_block_count(spec.n_layers)
    w.add_feed_forward_length(spec.intermediate)
    w.add_head_count(spec.n_heads)
    w.add_head_count_kv(spec.n_kv_heads)
    w.add_layer_norm_rms_eps(spec.rms_eps)
    w.add_rope_freq_base(spec.rope_theta)
    w.add_rope_dimension_count(spec.head_dim)
    if spec.head_dim * spec.n_heads != spec.hidden:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.head_dim)
    if arch == 'llama':
        w.add_vocab_size(spec.vocab)
    if spec.sliding_window:
        w.add_sliding_window(spec.sliding_window)
    write_gguf_family_keys(w, spec)
    if spec.n_experts:
        write_gguf_moe_keys(w, spec)
    if rtype == 'linear':
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rs['factor'])
    if tokenizer is None:
        t, s, ty, tj = vocab_for(spec)
        tokenizer = (t, s, ty)
        if tj is not None and chat_template is None:
            chat_template = CHAT_TEMPLATE
    tokens, scores, types = tokenizer
    if len(tokens) != spec.vocab:
        raise SystemExit('tb_make_model: tokenizer has %d tokens, the model %d'
                         % (len(tokens), spec.vocab))
    w.add_tokenizer_model('llama')
    w.add_tokenizer_pre('default')
    w.add_token_list(tokens)
    w.add_token_scores([float(x) for x in scores])
    w.add_token_types([int(x) for x in types])
    w.add_bos_token_id(spec.bos_id)
    w.add_eos_token_id(spec.eos_id)
    w.add_unk_token_id(0)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(add_eos)
    if spec.is_gemma:
        w.add_add_space_prefix(False)  # Gemma's SentencePiece adds no dummy prefix
    if chat_template:
        w.add_chat_template(chat_template)

    llama3 = rtype == 'llama3'
    plan = []
    n_mat = 0
    if rtype == 'longrope':
        for which in ('long', 'short'):
            a = np.array(rs[which + '_factor'], dtype=np.float32)
            w.add_tensor_info('rope_factors_%s.weight' % which, a.shape, np.dtype(np.float32),
                              a.nbytes, raw_dtype=gguf.GGMLQuantizationType.F32)
            plan.append(('rope_factors_%s.weight' % which, a, 'raw', None))
    for fname, shape, parts in file_tensors(spec, False, with_rope_freqs=llama3):
        cname = parts[0]
        kind = cname.split('.')[-1]
        vector = len(shape) == 1 or kind in ('router', 'sh_gate_inp')  # llama.cpp keeps F32
        td = 'f32' if vector else dtype
        if not vector and block_types:
            td = block_type_for(block_types, cname, n_mat)
            n_mat += 1
            if td not in BLOCK_F16:
                raise SystemExit('tb_make_model: unknown block type %s' % td)
        elems = int(np.prod(shape))
        raw = getattr(gguf.GGMLQuantizationType, GGUF_TYPES.get(td, td.upper()))
        be, bb = gguf.GGML_QUANT_SIZES[raw]
        nbytes = elems // be * bb
        w.add_tensor_info(fname, shape, np.dtype(np.float32), nbytes, raw_dtype=raw)
        plan.append((cname, shape, td, parts))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for cname, shape, td, parts in plan:
        if td == 'raw':
            w.write_tensor_data(shape)
            continue
        if cname == 'rope_freqs':
            a = mio.llama3_rope_factors(spec.head_dim, spec.rope_theta, rs)
        elif td in BLOCK_F16 and block_types:
            rng = np.random.default_rng(mio.tensor_seed(seed, cname))
            w.write_tensor_data(random_blocks(rng, td, shape))
            continue
        elif '.experts.*.' in cname:  # every expert of a layer, stacked: [n_experts, rows, cols]
            a = np.stack([produce(cname.replace('*', str(e)), shape[1:])
                          for e in range(shape[0])])
        else:
            a = file_tensor_data(spec, produce, parts, False).reshape(shape)
            kind = cname.split('.')[-1]
            if arch == 'llama' and kind in ('wq', 'bq'):
                a = mio.permute_qk(a, spec.n_heads)
            elif arch == 'llama' and kind in ('wk', 'bk'):
                a = mio.permute_qk(a, spec.n_kv_heads)
        w.write_tensor_data(gguf_tensor_bytes(a, td))
    w.close()


def write_gguf_family_keys(w, spec):
    """The keys llama.cpp's converter writes for Gemma 2/3 and Phi-3."""
    arch = spec.arch
    if spec.is_gemma:
        if spec.attn_softcap:
            w.add_float32('%s.attn_logit_softcapping' % arch, spec.attn_softcap)
        if spec.final_softcap:
            w.add_float32('%s.final_logit_softcapping' % arch, spec.final_softcap)
        if spec.query_pre_attn_scalar != spec.head_dim:
            w.add_float32('%s.attention.scale' % arch, spec.query_pre_attn_scalar ** -0.5)
        if arch == 'gemma3' and spec.rope_local_theta != 10000.0:
            w.add_float32('gemma3.rope.freq_base_swa', spec.rope_local_theta)
        if spec.window_period != (6 if arch == 'gemma3' else 2):
            w.add_uint32('%s.attention.sliding_window_pattern' % arch, spec.window_period)
    if arch == 'phi3' and mio.rope_scaling_type(spec.rope_scaling) == 'longrope':
        orig = spec.original_context or spec.context
        w.add_uint32('phi3.rope.scaling.original_context_length', orig)
        scale = spec.context / orig
        af = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0
        w.add_float32('phi3.rope.scaling.attn_factor', af)


def parse_family(a, kw):
    """--arch gemma2/gemma3/phi3 options into Spec keywords."""
    if a.attn_softcap is not None:
        kw['attn_softcap'] = a.attn_softcap
    if a.final_softcap is not None:
        kw['final_softcap'] = a.final_softcap
    if a.query_pre_attn_scalar:
        kw['query_pre_attn_scalar'] = a.query_pre_attn_scalar
    if a.window_period:
        kw['window_period'] = a.window_period
    if a.original_context:
        kw['original_context'] = a.original_context
    if a.full_layers:
        if a.format != 'hf' or not a.sliding_window:
            raise SystemExit('tb_make_model: --full-layers needs --format hf and --sliding-window')
        kw['full_layers'] = {int(x) for x in a.full_layers.split(',')}
    if a.longrope:
        rng = np.random.default_rng(a.seed + 7)
        d = (kw.get('head_dim') or kw['hidden'] // kw['n_heads']) // 2
        kw['rope_scaling'] = {'type': 'longrope',
                              'short_factor': [float(x) for x in 1 + rng.random(d)],
                              'long_factor': [float(x) for x in 1 + 8 * rng.random(d)]}


def gguf_tensor_shapes(spec, llama3):
    """spec.tensor_shapes with each layer's experts as 3-D tensors 'layers.N.experts.*.KIND' of
    shape [n_experts, rows, cols], as llama.cpp stores them (ffn_gate_exps ...), and the shared
    expert's gate as the vector llama.cpp writes."""
    out = []
    for cname, shape in spec.tensor_shapes(with_rope_freqs=llama3):
        parts = cname.split('.')
        if len(parts) == 5:
            if parts[3] != '0':
                continue
            cname = '.'.join(parts[:3] + ['*', parts[4]])
            shape = (spec.n_experts,) + tuple(shape)
        elif parts[-1] == 'sh_gate_inp':
            shape = (spec.hidden,)
        out.append((cname, shape))
    return out


def write_gguf_moe_keys(w, spec):
    """llama.cpp's expert keys: count, used count, widths; expert_weights_norm when the top-k
    weights are not renormalised (Qwen MoE with norm_topk_prob false)."""
    w.add_expert_count(spec.n_experts)
    w.add_expert_used_count(spec.n_experts_used)
    if spec.gguf_arch != 'llama':
        w.add_expert_feed_forward_length(spec.expert_intermediate)
    if spec.shared_intermediate:
        w.add_expert_shared_feed_forward_length(spec.shared_intermediate)
    default_norm = spec.gguf_arch != 'qwen2moe'
    if spec.norm_topk_prob != default_norm:
        w.add_bool('%s.expert_weights_norm' % spec.gguf_arch, bool(spec.norm_topk_prob))


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, help='folder (hf) or .gguf file to write')
    ap.add_argument('--format', choices=['hf', 'gguf'], default='hf')
    ap.add_argument('--dtype', default='f32', choices=sorted(GGUF_TYPES))
    ap.add_argument('--from', dest='src', help='convert this HF folder (to gguf or hf)')
    ap.add_argument('--preset', choices=sorted(PRESETS))
    ap.add_argument('--arch', choices=sorted(mio.ARCHS) + ['gemma2', 'gemma3', 'phi3'],
                    help='HF model_type: llama, qwen2, qwen3, gemma2, gemma3 (gemma3_text), phi3, '
                         'and the mixtures of experts mixtral, qwen3_moe, qwen2_moe (which need '
                         '--experts)')
    ap.add_argument('--attn-softcap', type=float, help='gemma: attention logit soft-cap (0: none)')
    ap.add_argument('--final-softcap', type=float, help='gemma: final logit soft-cap (0: none)')
    ap.add_argument('--query-pre-attn-scalar', type=float, help='gemma: scores * this^-0.5')
    ap.add_argument('--window-period', type=int, help='gemma: every Nth layer global')
    ap.add_argument('--original-context', type=int, help='phi3: LongRoPE original context')
    ap.add_argument('--full-layers', default=None,
                    help='hf, with --sliding-window: comma list of layers without the window '
                         '(config.json layer_types)')
    ap.add_argument('--longrope', action='store_true',
                    help='phi3: random LongRoPE short/long factors')
    ap.add_argument('--experts', type=int, help='routed experts per layer (MoE archs)')
    ap.add_argument('--experts-used', type=int, help='top-k: experts per token')
    ap.add_argument('--expert-intermediate', type=int,
                    help="each expert's FFN width (default --intermediate)")
    ap.add_argument('--shared-intermediate', type=int,
                    help="the shared expert's FFN width (qwen2_moe)")
    ap.add_argument('--mlp-only-layers', default=None,
                    help='Qwen MoE: comma list of layers with a dense MLP of --intermediate '
                         'width instead of the experts (config.json mlp_only_layers; in GGUF '
                         'those layers carry ffn_gate/ffn_up/ffn_down)')
    ap.add_argument('--decoder-sparse-step', type=int, default=None,
                    help='Qwen MoE: layer i has the experts only when (i + 1) is a multiple '
                         'of this (the others dense)')
    ap.add_argument('--no-norm-topk-prob', dest='norm_topk_prob', action='store_false',
                    default=True, help='Qwen MoE: keep the top-k softmax probabilities as '
                                       'they are (norm_topk_prob false)')
    ap.add_argument('--layers', type=int)
    ap.add_argument('--hidden', type=int)
    ap.add_argument('--heads', type=int)
    ap.add_argument('--kv-heads', type=int)
    ap.add_argument('--head-dim', type=int)
    ap.add_argument('--intermediate', type=int)
    ap.add_argument('--vocab', type=int)
    ap.add_argument('--context', type=int)
    ap.add_argument('--rms-eps', type=float)
    ap.add_argument('--rope-theta', type=float)
    ap.add_argument('--rope-scaling', help='none | linear:F | llama3:F,LOW,HIGH,ORIG')
    tie = ap.add_mutually_exclusive_group()
    tie.add_argument('--tied', dest='tied', action='store_true', default=None)
    tie.add_argument('--untied', dest='tied', action='store_false')
    ap.add_argument('--qkv-bias', action='store_true', help='q/k/v biases (arch qwen2)')
    ap.add_argument('--sliding-window', type=int,
                    help='attention window W (Mistral: position i attends to i - W < j <= i)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--shard-mb', type=int, default=0,
                    help='hf: split model.safetensors into shards of about this many MiB')
    ap.add_argument('--generation', default=None,
                    help='hf: JSON object merged into generation_config.json')
    ap.add_argument('--name', default='turbine-test')
    ap.add_argument('--block-types', default=None,
                    help='gguf: matrices as random blocks of these types: q4_k_m, or a comma '
                         'list (q5_k,q3_k,iq4_xs,...) given to the matrices in turn')
    a = ap.parse_args(argv)
    if a.block_types and (a.format != 'gguf' or a.src):
        raise SystemExit('tb_make_model: --block-types writes random-weight GGUF files only')

    if a.src:
        spec, config, tensors = mio.load_hf(a.src)
        produce = lambda n, s: tensors[n] if n != 'output' or not spec.tied else None
        if a.format == 'gguf':
            tok = None
            tj_path = os.path.join(a.src, 'tokenizer.json')
            tmpl = None
            add_bos, add_eos = True, False
            tc_path = os.path.join(a.src, 'tokenizer_config.json')
            if os.path.exists(tc_path):
                with open(tc_path) as f:
                    tc = json.load(f)
                tmpl = tc.get('chat_template') if isinstance(tc.get('chat_template'), str) \
                    else None
                add_bos = bool(tc.get('add_bos_token', True))
                add_eos = bool(tc.get('add_eos_token', False))
            if os.path.exists(tj_path):
                with open(tj_path) as f:
                    tok = mio.spm_vocab_from_tokenizer_json(json.load(f))
                if len(tok[0]) < spec.vocab:  # the model's vocab may be padded past the tokenizer
                    pad = spec.vocab - len(tok[0])
                    tok = (tok[0] + ['<extra_%d>' % i for i in range(pad)],
                           tok[1] + [0.0] * pad, tok[2] + [mio.CONTROL_TOKEN] * pad)
            write_gguf(spec, produce, a.out, a.dtype, name=os.path.basename(a.src.rstrip('/')),
                       tokenizer=tok, chat_template=tmpl, add_bos=add_bos, add_eos=add_eos)
        else:
            write_hf(spec, produce, a.out, a.dtype, a.shard_mb)
        return 0

    kw = dict(PRESETS[a.preset or 'tiny'])
    over = {'arch': a.arch, 'n_layers': a.layers, 'hidden': a.hidden, 'n_heads': a.heads,
            'n_kv_heads': a.kv_heads, 'head_dim': a.head_dim, 'intermediate': a.intermediate,
            'vocab': a.vocab, 'context': a.context, 'rms_eps': a.rms_eps,
            'rope_theta': a.rope_theta, 'tied': a.tied, 'sliding_window': a.sliding_window,
            'n_experts': a.experts, 'n_experts_used': a.experts_used,
            'expert_intermediate': a.expert_intermediate,
            'shared_intermediate': a.shared_intermediate,
            'decoder_sparse_step': a.decoder_sparse_step,
            'mlp_only_layers': [int(x) for x in a.mlp_only_layers.split(',') if x.strip()]
            if a.mlp_only_layers is not None else None}
    if a.heads and not a.kv_heads:
        over['n_kv_heads'] = a.heads
    kw.update({k: v for k, v in over.items() if v is not None})
    if a.qkv_bias and kw.get('arch', 'llama') == 'llama':
        kw['arch'] = 'qwen2'
    if a.rope_scaling is not None:
        kw['rope_scaling'] = parse_rope_scaling(a.rope_scaling)
    parse_family(a, kw)
    kw['norm_topk_prob'] = a.norm_topk_prob or kw.get('arch') == 'mixtral'
    try:
        spec = mio.Spec(**kw)
    except ValueError as ex:
        raise SystemExit('tb_make_model: %s' % ex)
    if spec.n_heads % spec.n_kv_heads:
        raise SystemExit('tb_make_model: heads %d is not a multiple of kv heads %d'
                         % (spec.n_heads, spec.n_kv_heads))
    if spec.arch != 'llama' and mio.rope_scaling_type(spec.rope_scaling) == 'llama3':
        raise SystemExit('tb_make_model: llama3 rope scaling needs arch llama')
    produce = lambda n, s: mio.random_tensor(spec, a.seed, n, s)
    if a.format == 'hf':
        write_hf(spec, produce, a.out, a.dtype, a.shard_mb,
                 json.loads(a.generation) if a.generation else None)
    else:
        write_gguf(spec, produce, a.out, a.dtype, name=a.name, block_types=a.block_types,
                   seed=a.seed)
    print('tb_make_model: wrote %s (%s, %s, %.1fM parameters)'
          % (a.out, a.format, a.block_types or a.dtype, spec.n_params() / 1e6))
    return 0


if __name__ == '__main__':
    sys.exit(main())
