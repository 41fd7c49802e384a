"""Model file helpers shared by tools/tb_make_model.py and tools/tb_ref_forward.py.

Our own safetensors reader and writer (a few lines over json + numpy), Hugging Face folder and
GGUF loading into one canonical naming (the one plugins/common/tb_model.h uses), the llama.cpp
Q/K row permutation, and tokenizer vocabularies for the test-model writer.  GGUF files are read
and written with the `gguf` package; nothing here imports torch.
"""
import json
import os
import struct
import zlib

import numpy as np

# Canonical per-layer tensor kinds, with their names in HF folders and in GGUF files.
LAYER_KINDS = [
    # kind,      HF suffix (after model.layers.N.),  GGUF suffix (after blk.N.)
    ('attn_norm', 'input_layernorm.weight', 'attn_norm.weight'),
    ('wq', 'self_attn.q_proj.weight', 'attn_q.weight'),
    ('wk', 'self_attn.k_proj.weight', 'attn_k.weight'),
    ('wv', 'self_attn.v_proj.weight', 'attn_v.weight'),
    ('bq', 'self_attn.q_proj.bias', 'attn_q.bias'),
    ('bk', 'self_attn.k_proj.bias', 'attn_k.bias'),
    ('bv', 'self_attn.v_proj.bias', 'attn_v.bias'),
    ('wo', 'self_attn.o_proj.weight', 'attn_output.weight'),
    ('ffn_norm', 'post_attention_layernorm.weight', 'ffn_norm.weight'),
    ('w_gate', 'mlp.gate_proj.weight', 'ffn_gate.weight'),
    ('w_up', 'mlp.up_proj.weight', 'ffn_up.weight'),
    ('w_down', 'mlp.down_proj.weight', 'ffn_down.weight'),
    ('q_norm', 'self_attn.q_norm.weight', 'attn_q_norm.weight'),  # Qwen3
    ('k_norm', 'self_attn.k_norm.weight', 'attn_k_norm.weight'),
    ('router', 'mlp.gate.weight', 'ffn_gate_inp.weight'),  # MoE (Mixtral: MIXTRAL_HF below)
    ('sh_gate', 'mlp.shared_expert.gate_proj.weight', 'ffn_gate_shexp.weight'),  # Qwen2-MoE
    ('sh_up', 'mlp.shared_expert.up_proj.weight', 'ffn_up_shexp.weight'),
    ('sh_down', 'mlp.shared_expert.down_proj.weight', 'ffn_down_shexp.weight'),
    ('sh_gate_inp', 'mlp.shared_expert_gate.weight', 'ffn_gate_inp_shexp.weight'),
]
# Each routed expert: canonical layers.N.experts.E.KIND; HF names per expert (Qwen MoE, Mixtral),
# GGUF one 3-D tensor per layer and kind holding every expert (blk.N.ffn_gate_exps.weight).
EXPERT_KINDS = [
    # kind,    Qwen MoE HF,        Mixtral HF,  GGUF 3-D
    ('w_gate', 'gate_proj.weight', 'w1.weight', 'ffn_gate_exps.weight'),
    ('w_up', 'up_proj.weight', 'w3.weight', 'ffn_up_exps.weight'),
    ('w_down', 'down_proj.weight', 'w2.weight', 'ffn_down_exps.weight'),
]
MIXTRAL_HF = {'router': 'block_sparse_moe.gate.weight'}
# HF model_type -> (GGUF architecture, HF class) of the archs written by the generic path
# (Gemma and Phi-3 have their own: family_hf_config)
ARCHS = {'llama': ('llama', 'LlamaForCausalLM'), 'qwen2': ('qwen2', 'Qwen2ForCausalLM'),
         'qwen3': ('qwen3', 'Qwen3ForCausalLM'), 'mixtral': ('llama', 'MixtralForCausalLM'),
         'qwen3_moe': ('qwen3moe', 'Qwen3MoeForCausalLM'),
         'qwen2_moe': ('qwen2moe', 'Qwen2MoeForCausalLM')}
# The kinds Gemma adds (HF names as Gemma2/Gemma3 write them; Gemma's post_attention_layernorm
# normalises the attention output, and its pre_feedforward_layernorm is the MLP's input norm).
# Gemma 3's q_norm / k_norm are LAYER_KINDS' (shared with Qwen3).
FAMILY_KINDS = [
    ('attn_post_norm', 'post_attention_layernorm.weight', 'post_attention_norm.weight'),
    ('ffn_post_norm', 'post_feedforward_layernorm.weight', 'post_ffw_norm.weight'),
]
GEMMA_HF_FFN_NORM = 'pre_feedforward_layernorm.weight'
GEMMA_ARCHS = ('gemma2', 'gemma3')
# Phi-3's fused matrices: (HF suffix, GGUF suffix, canonical parts)
PHI3_FUSED = [('self_attn.qkv_proj.weight', 'attn_qkv.weight', ('wq', 'wk', 'wv')),
              ('mlp.gate_up_proj.weight', 'ffn_up.weight', ('w_gate', 'w_up'))]


def _layer_kinds(arch):
    """(kind, HF suffix, GGUF suffix) of `arch`'s per-layer tensors."""
    if arch not in GEMMA_ARCHS:
        return LAYER_KINDS
    out = [(k, GEMMA_HF_FFN_NORM if k == 'ffn_norm' else h, g) for k, h, g in LAYER_KINDS]
    return out + FAMILY_KINDS

GLOBALS = [
    ('tok_embd', 'model.embed_tokens.weight', 'token_embd.weight'),
    ('out_norm', 'model.norm.weight', 'output_norm.weight'),
    ('output', 'lm_head.weight', 'output.weight'),
    ('rope_freqs', None, 'rope_freqs.weight'),
]


def hf_name(canon, arch='llama'):
    for c, h, _ in GLOBALS:
        if c == canon:
            return h
    parts = canon.split('.')
    if len(parts) == 5:  # layers.N.experts.E.KIND
        _, layer, _, e, kind = parts
        for k, qh, mh, _ in EXPERT_KINDS:
            if k == kind:
                if arch == 'mixtral':
                    return 'model.layers.%s.block_sparse_moe.experts.%s.%s' % (layer, e, mh)
                return 'model.layers.%s.mlp.experts.%s.%s' % (layer, e, qh)
        raise KeyError(canon)
    _, layer, kind = parts
    if arch == 'mixtral' and kind in MIXTRAL_HF:
        return 'model.layers.%s.%s' % (layer, MIXTRAL_HF[kind])
    for k, h, _ in _layer_kinds(arch):
        if k == kind:
            return 'model.layers.%s.%s' % (layer, h)
    raise KeyError(canon)


def gguf_name(canon, arch='llama'):
    """The GGUF name; for an expert, the 3-D tensor of its layer and kind that holds it."""
    for c, _, g in GLOBALS:
        if c == canon:
            return g
    parts = canon.split('.')
    if len(parts) == 5:
        for k, _, _, g in EXPERT_KINDS:
            if k == parts[4]:
                return 'blk.%s.%s' % (parts[1], g)
        raise KeyError(canon)
    _, layer, kind = parts
    for k, _, g in _layer_kinds(arch):
        if k == kind:
            return 'blk.%s.%s' % (layer, g)
    raise KeyError(canon)


def canon_from_hf(name, arch='llama'):
    for c, h, _ in GLOBALS:
        if h == name:
            return c
    if name.startswith('model.layers.'):
        layer, rest = name[len('model.layers.'):].split('.', 1)
        for k, h, _ in _layer_kinds(arch):
            if h == rest:
                return 'layers.%d.%s' % (int(layer), k)
        if rest == MIXTRAL_HF['router']:
            return 'layers.%d.router' % int(layer)
        for pre, col in (('mlp.experts.', 1), ('block_sparse_moe.experts.', 2)):
            if rest.startswith(pre):
                e, suffix = rest[len(pre):].split('.', 1)
                for row in EXPERT_KINDS:
                    if row[col] == suffix:
                        return 'layers.%d.experts.%d.%s' % (int(layer), int(e), row[0])
    return None


def canon_from_gguf(name, arch='llama'):
    """The canonical name, or for a 3-D expert tensor 'layers.N.experts.*.KIND'."""
    for c, _, g in GLOBALS:
        if g == name:
            return c
    if name.startswith('blk.'):
        layer, rest = name[len('blk.'):].split('.', 1)
        for k, _, g in _layer_kinds(arch):
            if g == rest:
                return 'layers.%d.%s' % (int(layer), k)
        for k, _, _, g in EXPERT_KINDS:
            if g == rest:
                return 'layers.%d.experts.*.%s' % (int(layer), k)
    return None


# ---------------------------------------------------------------------------------------------
# dtypes

def f32_to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even (NaN kept quiet)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


ST_DTYPES = {'F32': (np.float32, 4), 'F16': (np.float16, 2), 'BF16': (np.uint16, 2),
             'F64': (np.float64, 8), 'I8': (np.int8, 1), 'U8': (np.uint8, 1),
             'I16': (np.int16, 2), 'I32': (np.int32, 4), 'I64': (np.int64, 8)}


# ---------------------------------------------------------------------------------------------
# safetensors

def read_safetensors(path):
    """Returns ({name: float32 array}, metadata).  BF16/F16 are widened to float32."""
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode='r')
    start = 8 + n
    meta = header.pop('__metadata__', {}) or {}
    out = {}
    for name, e in header.items():
        b, end = e['data_offsets']
        dt, _ = ST_DTYPES[e['dtype']]
        arr = np.frombuffer(raw[start + b:start + end].tobytes(), dtype=dt)
        if e['dtype'] == 'BF16':
            arr = bf16_bits_to_f32(arr)
        out[name] = arr.astype(np.float32).reshape(e['shape'])
    return out, meta


class SafetensorsWriter:
    """Streams tensors into a .safetensors file: declare every tensor first (name, dtype, shape),
    then write their bytes in declaration order."""

    def __init__(self, path, metadata=None):
        self.path = path
        self.metadata = metadata or {}
        self.entries = []

    def declare(self, name, dtype, shape):
        size = ST_DTYPES[dtype][1] * int(np.prod(shape, dtype=np.int64))
        self.entries.append((name, dtype, list(shape), size))

    def write(self, produce):
        """`produce(name)` returns the tensor's bytes (or an array) for each declared name."""
        header = {}
        if self.metadata:
            header['__metadata__'] = self.metadata
        off = 0
        for name, dtype, shape, size in self.entries:
            header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + size]}
            off += size
        hj = json.dumps(header, separators=(',', ':')).encode()
        hj += b' ' * ((8 - len(hj) % 8) % 8)  # keeps the data area 8-byte aligned
        with open(self.path, 'wb') as f:
            f.write(struct.pack('<Q', len(hj)))
            f.write(hj)
            for name, dtype, shape, size in self.entries:
                data = produce(name)
                data = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
                if len(data) != size:
                    raise ValueError('%s: %d bytes, declared %d' % (name, len(data), size))
                f.write(data)


def to_st_bytes(a, dtype):
    if dtype == 'F32':
        return np.ascontiguousarray(a, dtype=np.float32)
    if dtype == 'F16':
        return np.ascontiguousarray(a, dtype=np.float16)
    if dtype == 'BF16':
        return f32_to_bf16_bits(a)
    raise ValueError('unsupported safetensors dtype %s' % dtype)


# ---------------------------------------------------------------------------------------------
# model description

class Spec:
    """The shape and hyper-parameters of a Llama-family model (Llama, Mistral, Qwen2, Qwen3), of
    Gemma 2/3 or Phi-3, or of a mixture of experts (Mixtral, Qwen3-MoE, Qwen2-MoE).  `arch` is the
    HF model_type ('gemma3' for gemma3_text)."""

    def __init__(self, **kw):
        self.arch = kw.get('arch', 'llama')
        if self.arch not in ARCHS and self.arch not in GEMMA_ARCHS + ('phi3',):
            raise ValueError('arch %r is not supported' % self.arch)
        self.n_layers = kw['n_layers']
        self.hidden = kw['hidden']
        self.n_heads = kw['n_heads']
        self.n_kv_heads = kw.get('n_kv_heads') or self.n_heads
        self.head_dim = kw.get('head_dim') or self.hidden // self.n_heads
        self.intermediate = kw['intermediate']
        self.vocab = kw['vocab']
        self.context = kw.get('context', 2048)
        self.rms_eps = kw.get('rms_eps', 1e-5)
        self.rope_theta = kw.get('rope_theta', 10000.0)
        self.rope_scaling = kw.get('rope_scaling')  # None or an HF rope_scaling dict
        self.tied = kw.get('tied', False)
        self.qkv_bias = kw.get('qkv_bias', self.arch in ('qwen2', 'qwen2_moe'))
        self.bos_id = kw.get('bos_id', 1)
        self.eos_id = kw.get('eos_id', 2)
        # Mistral's attention window W (None: none): position i attends to i - W < j <= i
        self.sliding_window = kw.get('sliding_window') or None
        # Gemma 2/3 and Phi-3 (docs/models.md): soft-caps (0: none), the query scale's
        # query_pre_attn_scalar (None: head_dim), Gemma 3's local RoPE base, the sliding/global
        # pattern (every period-th layer global), Phi-3's original context for LongRoPE
        g3 = self.arch == 'gemma3'
        self.attn_softcap = kw.get('attn_softcap', 50.0 if self.arch == 'gemma2' else 0.0)
        self.final_softcap = kw.get('final_softcap', 30.0 if self.arch == 'gemma2' else 0.0)
        self.query_pre_attn_scalar = kw.get('query_pre_attn_scalar') or self.head_dim
        self.rope_local_theta = kw.get('rope_local_theta', 10000.0) if g3 else None
        self.window_period = kw.get('window_period') or (6 if g3 else 2)
        self.original_context = kw.get('original_context')
        # layers that attend globally although the model has a window (HF layer_types, qwen2's
        # max_window_layers); None: Gemma's pattern or, for other archs, none
        self.full_layers = kw.get('full_layers')
        if self.is_gemma:
            self.tied = True
        # per-head RMSNorm on q and k before RoPE: Qwen3's plain weight, Gemma 3's (1 + weight)
        self.qk_norm = self.arch in ('qwen3', 'qwen3_moe', 'gemma3')
        # mixture of experts: 0 experts is a dense MLP
        self.n_experts = kw.get('n_experts') or 0
        self.n_experts_used = kw.get('n_experts_used') or 0
        self.expert_intermediate = kw.get('expert_intermediate') or self.intermediate
        if self.arch == 'mixtral':  # Mixtral's intermediate_size is each expert's width
            self.intermediate = self.expert_intermediate
        # top-k weights: softmax over the k chosen logits (Mixtral, norm_topk_prob) or the
        # chosen entries of the softmax over all experts (Qwen MoE without norm_topk_prob)
        self.norm_topk_prob = kw.get('norm_topk_prob', True)
        self.shared_intermediate = kw.get('shared_intermediate') or 0
        # Qwen MoE's dense layers among the expert layers (transformers' rule, layer_sparse):
        # the layers listed, and those i with (i + 1) not a multiple of the step; a dense layer
        # has the MLP of `intermediate` width and no router, experts or shared expert
        self.mlp_only_layers = sorted(kw.get('mlp_only_layers') or [])
        self.decoder_sparse_step = kw.get('decoder_sparse_step') or 1
        if (self.mlp_only_layers or self.decoder_sparse_step != 1) and \
                self.arch not in ('qwen3_moe', 'qwen2_moe'):
            raise ValueError('dense layers among the experts are a Qwen MoE setting, not %s'
                             % self.arch)
        if self.arch in ('mixtral', 'qwen3_moe', 'qwen2_moe') and not self.n_experts:
            raise ValueError('arch %s needs experts' % self.arch)
        if self.n_experts and not 1 <= self.n_experts_used <= self.n_experts:
            raise ValueError('experts used %d is out of range 1..%d'
                             % (self.n_experts_used, self.n_experts))

    def layer_sparse(self, i):
        """Whether layer i runs the routed experts (else the dense MLP)."""
        return bool(self.n_experts) and i not in self.mlp_only_layers and \
            (i + 1) % self.decoder_sparse_step == 0

    @property
    def is_gemma(self):
        return self.arch in GEMMA_ARCHS

    def layer_full(self, i):
        """Whether layer i attends globally although the model has a window."""
        if self.full_layers is not None:
            return i in self.full_layers
        if not self.is_gemma:
            return False
        return i % self.window_period == self.window_period - 1

    @property
    def gguf_arch(self):
        return ARCHS[self.arch][0] if self.arch in ARCHS else self.arch

    def tensor_shapes(self, with_rope_freqs=False):
        """[(canonical name, shape)] in llama.cpp's file order; matrices are (rows, cols)."""
        h, qd, kvd = self.hidden, self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        out = [('tok_embd', (self.vocab, h))]
        if with_rope_freqs:
            out.append(('rope_freqs', (self.head_dim // 2,)))
        for i in range(self.n_layers):
            p = 'layers.%d.' % i
            out += [(p + 'attn_norm', (h,)), (p + 'wq', (qd, h)), (p + 'wk', (kvd, h)),
                    (p + 'wv', (kvd, h))]
            if self.qkv_bias:
                out += [(p + 'bq', (qd,)), (p + 'bk', (kvd,)), (p + 'bv', (kvd,))]
            if self.qk_norm:
                out += [(p + 'q_norm', (self.head_dim,)), (p + 'k_norm', (self.head_dim,))]
            out.append((p + 'wo', (h, qd)))
            if self.is_gemma:
                out.append((p + 'attn_post_norm', (h,)))
            out.append((p + 'ffn_norm', (h,)))
            if not self.layer_sparse(i):
                out += [(p + 'w_gate', (self.intermediate, h)),
                        (p + 'w_up', (self.intermediate, h)),
                        (p + 'w_down', (h, self.intermediate))]
                if self.is_gemma:
                    out.append((p + 'ffn_post_norm', (h,)))
                continue
            ff, sh = self.expert_intermediate, self.shared_intermediate
            out.append((p + 'router', (self.n_experts, h)))
            for e in range(self.n_experts):
                q = '%sexperts.%d.' % (p, e)
                out += [(q + 'w_gate', (ff, h)), (q + 'w_up', (ff, h)), (q + 'w_down', (h, ff))]
            if sh:
                out += [(p + 'sh_gate', (sh, h)), (p + 'sh_up', (sh, h)),
                        (p + 'sh_down', (h, sh)), (p + 'sh_gate_inp', (1, h))]
        out.append(('out_norm', (h,)))
        if not self.tied:
            out.append(('output', (self.vocab, h)))
        return out

    def n_params(self):
        return sum(int(np.prod(s)) for n, s in self.tensor_shapes())

    def hf_config(self, torch_dtype='float32'):
        if self.is_gemma or self.arch == 'phi3':
            return family_hf_config(self, torch_dtype)
        cls = ARCHS[self.arch][1]
        c = {
            'architectures': [cls], 'model_type': self.arch, 'hidden_act': 'silu',
            'hidden_size': self.hidden, 'intermediate_size': self.intermediate,
            'num_hidden_layers': self.n_layers, 'num_attention_heads': self.n_heads,
            'num_key_value_heads': self.n_kv_heads, 'vocab_size': self.vocab,
            'max_position_embeddings': self.context, 'rms_norm_eps': self.rms_eps,
            'rope_theta': self.rope_theta, 'rope_scaling': self.rope_scaling,
            'tie_word_embeddings': self.tied, 'bos_token_id': self.bos_id,
            'eos_token_id': self.eos_id, 'torch_dtype': torch_dtype,
            'attention_dropout': 0.0, 'initializer_range': 0.02, 'use_cache': True,
        }
        if self.arch in ('llama', 'mixtral'):
            c['attention_bias'] = False
            if self.arch == 'llama':
                c['mlp_bias'] = False
            if self.sliding_window and self.arch == 'llama':
                c['architectures'] = ['MistralForCausalLM']
                c['model_type'] = 'mistral'
            c['sliding_window'] = self.sliding_window
        elif self.sliding_window:
            c['use_sliding_window'] = True
            c['sliding_window'] = self.sliding_window
            c['max_window_layers'] = 0  # every layer slides
        else:
            c['use_sliding_window'] = False
        if self.head_dim * self.n_heads != self.hidden or self.qk_norm:
            c['head_dim'] = self.head_dim
        if self.sliding_window and self.full_layers and self.arch.startswith('qwen') and \
                self.full_layers == set(range(len(self.full_layers))):
            c['max_window_layers'] = len(self.full_layers)  # qwen: layers from it on slide
        elif self.sliding_window and self.full_layers:
            c['layer_types'] = ['full_attention' if i in self.full_layers else 'sliding_attention'
                                for i in range(self.n_layers)]
        if self.qk_norm:
            c['attention_bias'] = False
        if self.arch == 'mixtral':
            c.update(num_local_experts=self.n_experts, num_experts_per_tok=self.n_experts_used,
                     intermediate_size=self.expert_intermediate, router_jitter_noise=0.0,
                     output_router_logits=False)
        elif self.n_experts:
            c.update(num_experts=self.n_experts, num_experts_per_tok=self.n_experts_used,
                     moe_intermediate_size=self.expert_intermediate,
                     norm_topk_prob=self.norm_topk_prob,
                     decoder_sparse_step=self.decoder_sparse_step,
                     mlp_only_layers=list(self.mlp_only_layers), output_router_logits=False)
            if self.arch == 'qwen2_moe':
                c['shared_expert_intermediate_size'] = self.shared_intermediate
        return c

    @classmethod
    def from_hf_config(cls, c):
        arch = c.get('model_type', 'llama')
        if arch == 'mistral':
            arch = 'llama'
        if arch in ('gemma2', 'gemma3_text', 'phi3'):
            return family_spec_from_hf(cls, c)
        if arch not in ARCHS:
            raise ValueError('model_type %r is not supported' % arch)
        eos = c.get('eos_token_id', 2)
        moe = {}
        if arch == 'mixtral':
            moe = dict(n_experts=c['num_local_experts'],
                       n_experts_used=c.get('num_experts_per_tok', 2),
                       expert_intermediate=c['intermediate_size'], norm_topk_prob=True)
        elif arch in ('qwen3_moe', 'qwen2_moe'):
            moe = dict(n_experts=c['num_experts'],
                       n_experts_used=c.get('num_experts_per_tok',
                                            8 if arch == 'qwen3_moe' else 4),
                       expert_intermediate=c['moe_intermediate_size'],
                       norm_topk_prob=bool(c.get('norm_topk_prob', False)),
                       shared_intermediate=c.get('shared_expert_intermediate_size', 0),
                       mlp_only_layers=c.get('mlp_only_layers') or [],
                       decoder_sparse_step=c.get('decoder_sparse_step', 1))
        return cls(sliding_window=hf_sliding_window(c, arch), full_layers=hf_full_layers(c, arch),
                   arch=arch, n_layers=c['num_hidden_layers'], hidden=c['hidden_size'],
                   n_heads=c['num_attention_heads'], n_kv_heads=c.get('num_key_value_heads'),
                   head_dim=c.get('head_dim'), intermediate=c['intermediate_size'],
                   vocab=c['vocab_size'], context=c.get('max_position_embeddings', 2048),
                   rms_eps=c.get('rms_norm_eps', 1e-6), rope_theta=c.get('rope_theta', 10000.0),
                   rope_scaling=c.get('rope_scaling'), tied=c.get('tie_word_embeddings', False),
                   qkv_bias=(arch in ('qwen2', 'qwen2_moe')), bos_id=c.get('bos_token_id', 1),
                   eos_id=eos[0] if isinstance(eos, list) else eos, **moe)


def family_hf_config(spec, torch_dtype):
    """config.json of a Gemma 2 / Gemma 3 / Phi-3 test model, keys as transformers writes them."""
    s = spec
    c = {'hidden_size': s.hidden, 'intermediate_size': s.intermediate,
         'num_hidden_layers': s.n_layers, 'num_attention_heads': s.n_heads,
         'num_key_value_heads': s.n_kv_heads, 'head_dim': s.head_dim, 'vocab_size': s.vocab,
         'max_position_embeddings': s.context, 'rms_norm_eps': s.rms_eps,
         'rope_theta': s.rope_theta, 'rope_scaling': s.rope_scaling,
         'tie_word_embeddings': s.tied, 'bos_token_id': s.bos_id, 'eos_token_id': s.eos_id,
         'torch_dtype': torch_dtype, 'attention_dropout': 0.0, 'attention_bias': False,
         'initializer_range': 0.02, 'use_cache': True}
    if s.arch == 'phi3':
        c.update({'architectures': ['Phi3ForCausalLM'], 'model_type': 'phi3',
                  'hidden_act': 'silu', 'sliding_window': s.sliding_window,
                  'original_max_position_embeddings': s.original_context or s.context,
                  'embd_pdrop': 0.0, 'resid_pdrop': 0.0, 'pad_token_id': None})
        return c
    c.update({'hidden_activation': 'gelu_pytorch_tanh', 'hidden_act': 'gelu_pytorch_tanh',
              'query_pre_attn_scalar': s.query_pre_attn_scalar,
              'attn_logit_softcapping': s.attn_softcap or None,
              'final_logit_softcapping': s.final_softcap or None,
              'sliding_window': s.sliding_window or 4096, 'pad_token_id': 0})
    if s.arch == 'gemma2':
        c.update({'architectures': ['Gemma2ForCausalLM'], 'model_type': 'gemma2',
                  'cache_implementation': 'hybrid'})
    else:
        c.update({'architectures': ['Gemma3ForCausalLM'], 'model_type': 'gemma3_text',
                  'rope_local_base_freq': s.rope_local_theta,
                  'sliding_window_pattern': s.window_period})
    return c


def family_spec_from_hf(cls, c):
    arch = 'gemma3' if c['model_type'] == 'gemma3_text' else c['model_type']
    eos = c.get('eos_token_id', 2)
    gemma = arch in GEMMA_ARCHS
    kw = dict(arch=arch, n_layers=c['num_hidden_layers'], hidden=c['hidden_size'],
              n_heads=c['num_attention_heads'], n_kv_heads=c.get('num_key_value_heads'),
              head_dim=c.get('head_dim'), intermediate=c['intermediate_size'],
              vocab=c['vocab_size'], context=c.get('max_position_embeddings', 2048),
              rms_eps=c.get('rms_norm_eps', 1e-6),
              rope_theta=c.get('rope_theta', 1e6 if arch == 'gemma3' else 10000.0),
              rope_scaling=c.get('rope_scaling'), tied=c.get('tie_word_embeddings', gemma),
              bos_id=c.get('bos_token_id', 1), eos_id=eos[0] if isinstance(eos, list) else eos,
              sliding_window=c.get('sliding_window'),
              original_context=c.get('original_max_position_embeddings'))
    if gemma:
        kw.update(attn_softcap=c.get('attn_logit_softcapping') or 0.0,
                  final_softcap=c.get('final_logit_softcapping') or 0.0,
                  query_pre_attn_scalar=c.get('query_pre_attn_scalar', 256),
                  rope_local_theta=c.get('rope_local_base_freq', 10000.0),
                  window_period=c.get('sliding_window_pattern'))
    return cls(**kw)


def hf_sliding_window(c, arch):
    """The window transformers applies (on the layers hf_full_layers does not name), or None."""
    w = c.get('sliding_window')
    if not w or not c.get('use_sliding_window', not arch.startswith('qwen')):
        return None
    n = c['num_hidden_layers']
    return w if len(hf_full_layers(c, arch) or ()) < n else None


def hf_full_layers(c, arch):
    """The layers without the window, as transformers decides: layer_types when listed, else
    qwen2's layers below max_window_layers (default 28); None: every layer slides."""
    n = c['num_hidden_layers']
    if c.get('layer_types') is not None:
        return {i for i, t in enumerate(c['layer_types']) if t != 'sliding_attention'}
    if arch.startswith('qwen'):
        return set(range(min(n, c.get('max_window_layers', 28))))
    return None


def rope_scaling_type(rs):
    if not rs:
        return 'none'
    return rs.get('rope_type', rs.get('type', 'default'))


def llama3_rope_factors(head_dim, theta, rs):
    """Per-pair divisors of the base inverse frequencies for Llama-3 rope scaling, the values
    llama.cpp stores in a GGUF's rope_freqs.weight."""
    factor = rs['factor']
    lo, hi = rs['low_freq_factor'], rs['high_freq_factor']
    old = rs['original_max_position_embeddings']
    out = []
    for i in range(head_dim // 2):
        inv = theta ** (-(2.0 * i) / head_dim)
        wavelen = 2 * np.pi / inv
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def permute_qk(w, n_head):
    """llama.cpp's converter order for Q/K rows (or bias entries): inside each head of size d,
    the output row 2i + a is input row a * d/2 + i (a = 0, 1), so rotary pairs that HF keeps
    d/2 apart become adjacent."""
    rows = w.shape[0]
    d = rows // n_head
    return w.reshape(n_head, 2, d // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_seed(seed, name):
    return [seed, zlib.crc32(name.encode())]


def random_tensor(spec, seed, name, shape):
    """Random weights scaled like a trained model's: matrices N(0, 0.02), norms 1 + N(0, 0.05),
    biases N(0, 0.02).  Deterministic per (seed, canonical name), whatever the output format."""
    rng = np.random.default_rng(tensor_seed(seed, name))
    kind = name.split('.')[-1]
    if kind in ('attn_norm', 'ffn_norm', 'out_norm', 'attn_post_norm', 'ffn_post_norm', 'q_norm',
                'k_norm'):
        return (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    if kind == 'rope_freqs':
        raise ValueError('rope_freqs is computed, not random')
    return (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# loading whole models (for the reference and for conversion)

def load_hf(folder):
    """Returns (spec, config dict, {canonical: float32 array}) with tied output resolved."""
    with open(os.path.join(folder, 'config.json')) as f:
        config = json.load(f)
    spec = Spec.from_hf_config(config)
    index = os.path.join(folder, 'model.safetensors.index.json')
    raw = {}
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)['weight_map'].values()))
        for fn in files:
            raw.update(read_safetensors(os.path.join(folder, fn))[0])
    else:
        raw = read_safetensors(os.path.join(folder, 'model.safetensors'))[0]
    tensors = {}
    for name, a in raw.items():
        if split_fused(name, a, spec, tensors, hf=True):
            continue
        c = canon_from_hf(name, spec.arch)
        if c is None:
            if name.endswith('rotary_emb.inv_freq'):
                continue
            raise ValueError('unexpected tensor %s' % name)
        tensors[c] = a
    if spec.is_gemma:  # Gemma's RMSNorm multiplies by 1 + weight: canonical holds the factor
        for c in tensors:
            if c.endswith('norm'):
                tensors[c] = tensors[c] + np.float32(1.0)
    if spec.tied:
        emb = tensors.get('tok_embd', tensors.get('output'))
        tensors['tok_embd'] = emb
        tensors.pop('output', None)
    return spec, config, tensors


def split_fused(name, a, spec, tensors, hf):
    """Phi-3's fused qkv / gate_up matrices into their canonical parts; False for others."""
    prefix = 'model.layers.' if hf else 'blk.'
    if spec.arch != 'phi3' or not name.startswith(prefix):
        return False
    layer, rest = name[len(prefix):].split('.', 1)
    for h, g, parts in PHI3_FUSED:
        if rest == (h if hf else g):
            qd, kvd = spec.n_heads * spec.head_dim, spec.n_kv_heads * spec.head_dim
            rows = [qd, kvd, kvd] if len(parts) == 3 else [spec.intermediate] * 2
            for part, piece in zip(parts, np.split(a, np.cumsum(rows)[:-1], axis=0)):
                tensors['layers.%d.%s' % (int(layer), part)] = piece
            return True
    return False


def gguf_field(reader, key):
    """A GGUF metadata value as a Python value (str, number, bool or list)."""
    import gguf
    f = reader.get_field(key)
    if f is None:
        return None
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode('utf-8')
    if t == gguf.GGUFValueType.ARRAY:
        et = f.types[1] if len(f.types) > 1 else None
        if et == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode('utf-8', errors='replace') for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    v = f.parts[f.data[0]].tolist()[0]
    return bool(v) if t == gguf.GGUFValueType.BOOL else v


def load_gguf(path):
    """Returns (spec, meta dict, {canonical: float32 array (dequantized)}, rope_layout).
    Tensors are as stored: GGUF llama Q/K rows stay in llama.cpp's interleaved order."""
    import gguf
    r = gguf.GGUFReader(path)
    arch = gguf_field(r, 'general.architecture')
    if arch not in ('llama', 'qwen2', 'qwen3', 'qwen3moe', 'qwen2moe', 'gemma2', 'gemma3', 'phi3'):
        raise ValueError('architecture %r is not supported' % arch)
    g = lambda k, d=None: (lambda v: d if v is None else v)(gguf_field(r, '%s.%s' % (arch, k)))
    meta = {f: gguf_field(r, f) for f in r.fields}
    n_heads = g('attention.head_count')
    hidden = g('embedding_length')
    head_dim = g('attention.key_length', hidden // n_heads)
    raw = {}
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]  # rows first
        if t.tensor_type == gguf.GGMLQuantizationType.BF16:
            a = bf16_bits_to_f32(np.asarray(t.data).view(np.uint16))
        else:
            a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        raw[t.name] = np.asarray(a, dtype=np.float32).reshape(shape)
    rs = None
    if g('rope.scaling.type') == 'linear':
        rs = {'rope_type': 'linear', 'factor': g('rope.scaling.factor')}
    if 'rope_factors_short.weight' in raw:
        rs = {'rope_type': 'longrope', 'short_factor': raw.pop('rope_factors_short.weight'),
              'long_factor': raw.pop('rope_factors_long.weight'),
              'attention_factor': g('rope.scaling.attn_factor', 1.0)}
    fam = {}
    if arch in GEMMA_ARCHS:
        big = g('block_count') == (62 if arch == 'gemma3' else 46)
        scale = g('attention.scale', None)
        qpas = 1.0 / scale ** 2 if scale else (hidden / n_heads if big else head_dim)
        fam = dict(attn_softcap=g('attn_logit_softcapping', 0.0),
                   final_softcap=g('final_logit_softcapping', 0.0), query_pre_attn_scalar=qpas,
                   rope_local_theta=g('rope.freq_base_swa', 10000.0),
                   window_period=g('attention.sliding_window_pattern'))
    hf_arch = {'qwen3moe': 'qwen3_moe', 'qwen2moe': 'qwen2_moe'}.get(arch, arch)
    moe = {}
    if g('expert_count'):
        hf_arch = 'mixtral' if arch == 'llama' else hf_arch
        moe = dict(n_experts=g('expert_count'), n_experts_used=g('expert_used_count'),
                   expert_intermediate=g('expert_feed_forward_length',
                                         g('feed_forward_length')),
                   norm_topk_prob=g('expert_weights_norm', arch != 'qwen2moe'),
                   shared_intermediate=g('expert_shared_feed_forward_length', 0))
    probe = Spec(arch=hf_arch, n_layers=g('block_count'), hidden=hidden, n_heads=n_heads,
                 n_kv_heads=g('attention.head_count_kv', n_heads), head_dim=head_dim,
                 intermediate=g('feed_forward_length'), vocab=1, **moe)
    tensors = {}
    for name, a in raw.items():
        if split_fused(name, a, probe, tensors, hf=False):
            continue
        c = canon_from_gguf(name, arch)
        if c is None:
            raise ValueError('unexpected tensor %s' % name)
        if '.experts.*.' in c:  # a 3-D tensor of every expert: one 2-D tensor each
            for e in range(a.shape[0]):
                tensors[c.replace('*', str(e))] = a[e]
        else:
            tensors[c] = a
    if moe and hf_arch != 'mixtral':
        # GGUF has no key for Qwen MoE's dense layers: a layer with the dense MLP is one
        moe['mlp_only_layers'] = [i for i in range(g('block_count'))
                                  if 'layers.%d.w_gate' % i in tensors]
    spec = Spec(arch=hf_arch, original_context=g('rope.scaling.original_context_length'), **fam,
                **moe, n_layers=g('block_count'), hidden=hidden, n_heads=n_heads,
                n_kv_heads=g('attention.head_count_kv', n_heads),
                head_dim=head_dim,
                intermediate=g('feed_forward_length'), vocab=tensors['tok_embd'].shape[0],
                context=g('context_length'), rms_eps=g('attention.layer_norm_rms_epsilon'),
                rope_theta=g('rope.freq_base', 10000.0), rope_scaling=rs,
                tied='output' not in tensors, qkv_bias='layers.0.bq' in tensors,
                bos_id=meta.get('tokenizer.ggml.bos_token_id', 1),
                eos_id=meta.get('tokenizer.ggml.eos_token_id', 2),
                sliding_window=g('attention.sliding_window',
                                 4096 if arch in GEMMA_ARCHS else None))
    layout = 'interleaved' if arch == 'llama' else 'neox'
    return spec, meta, tensors, layout


# ---------------------------------------------------------------------------------------------
# tokenizer vocabularies

BYTE_TOKEN, NORMAL_TOKEN, UNKNOWN_TOKEN, CONTROL_TOKEN, USER_TOKEN = 6, 1, 2, 3, 4


def spm_vocab_from_gguf(path):
    """(tokens, scores, types) of a vocab-only GGUF (e.g. ggml-vocab-llama-spm.gguf)."""
    import gguf
    r = gguf.GGUFReader(path)
    return (gguf_field(r, 'tokenizer.ggml.tokens'), gguf_field(r, 'tokenizer.ggml.scores'),
            gguf_field(r, 'tokenizer.ggml.token_type'))


def spm_vocab_resized(tokens, scores, types, n):
    """The first n entries of an SPM vocabulary (its pieces are ordered by merge rank, so a
    prefix is a smaller valid vocabulary), padded with unused control tokens past its end."""
    if n < 259:
        raise ValueError('vocab %d is too small for <unk>, <s>, </s> and 256 byte tokens' % n)
    tokens, scores, types = list(tokens[:n]), list(scores[:n]), list(types[:n])
    while len(tokens) < n:
        tokens.append('<extra_%d>' % (len(tokens)))
        scores.append(0.0)
        types.append(CONTROL_TOKEN)
    return tokens, scores, types


def spm_vocab_from_tokenizer_json(tj):
    """(tokens, scores, types) for a GGUF "llama" tokenizer from an HF BPE tokenizer.json with
    byte fallback: scores rank tokens by the merge that creates them (earlier = higher)."""
    model = tj['model']
    if model.get('type') != 'BPE':
        raise ValueError('tokenizer.json model %r is not BPE' % model.get('type'))
    vocab = model['vocab']
    n = max(vocab.values()) + 1
    for t in tj.get('added_tokens', []):
        n = max(n, t['id'] + 1)
    tokens = ['<unused_%d>' % i for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    rank = {}
    for r, m in enumerate(model.get('merges', [])):
        a, b = m.split(' ', 1) if isinstance(m, str) else m
        rank.setdefault(a + b, r)
    scores = [0.0] * n
    types = [NORMAL_TOKEN] * n
    for t, i in vocab.items():
        scores[i] = -float(rank[t]) if t in rank else 0.0
        if len(t) == 6 and t.startswith('<0x') and t.endswith('>'):
            types[i] = BYTE_TOKEN
    special = {t['id'] for t in tj.get('added_tokens', []) if t.get('special')}
    for t in tj.get('added_tokens', []):
        tokens[t['id']] = t['content']
        types[t['id']] = CONTROL_TOKEN if t['id'] in special else USER_TOKEN
    unk = model.get('unk_token')
    if unk in vocab:
        types[vocab[unk]] = UNKNOWN_TOKEN
    return tokens, scores, types


def gemma_style_tokenizer(tj):
    """Makes a tokenizer.json from tokenizer_json_from_spm Gemma's: SentencePiece without the
    dummy prefix (spaces become U+2581, nothing is prepended, the decoder strips nothing)."""
    tj['normalizer'] = {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '\u2581'}
    tj['decoder']['decoders'] = [d for d in tj['decoder']['decoders'] if d['type'] != 'Strip']
    return tj


def tokenizer_json_from_spm(tokens, scores, types, bos_id=1, eos_id=2, unk_id=0):
    """An HF tokenizer.json (BPE with byte fallback, SentencePiece-style normalizer) equivalent
    to an SPM vocabulary: a merge (a, b) exists for every split of a normal piece into two
    pieces, ranked by the merged piece's score, as HF's own SentencePiece conversion does."""
    ids = {t: i for i, t in enumerate(tokens)}
    merges = []
    for i, t in enumerate(tokens):
        if types[i] != NORMAL_TOKEN or len(t) < 2:
            continue
        for k in range(1, len(t)):
            a, b = t[:k], t[k:]
            if a in ids and b in ids and types[ids[a]] in (NORMAL_TOKEN, BYTE_TOKEN) \
                    and types[ids[b]] in (NORMAL_TOKEN, BYTE_TOKEN):
                merges.append((-scores[i], i, ids[a], ids[b], a, b))
    merges.sort()
    vocab = {t: i for i, t in enumerate(tokens)}
    added = []
    for i, t in enumerate(tokens):
        if types[i] in (CONTROL_TOKEN, UNKNOWN_TOKEN, USER_TOKEN):
            added.append({'id': i, 'content': t, 'single_word': False, 'lstrip': False,
                          'rstrip': False, 'normalized': False,
                          'special': types[i] != USER_TOKEN})
    bos = tokens[bos_id]
    return {
        'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': added,
        'normalizer': {'type': 'Sequence', 'normalizers': [
            {'type': 'Prepend', 'prepend': '\u2581'},
            {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '\u2581'}]},
        'pre_tokenizer': None,
        'post_processor': {
            'type': 'TemplateProcessing',
            'single': [{'SpecialToken': {'id': bos, 'type_id': 0}},
                       {'Sequence': {'id': 'A', 'type_id': 0}}],
            'pair': [{'SpecialToken': {'id': bos, 'type_id': 0}},
                     {'Sequence': {'id': 'A', 'type_id': 0}},
                     {'SpecialToken': {'id': bos, 'type_id': 1}},
                     {'Sequence': {'id': 'B', 'type_id': 1}}],
            'special_tokens': {bos: {'id': bos, 'ids': [bos_id], 'tokens': [bos]}}},
        'decoder': {'type': 'Sequence', 'decoders': [
            {'type': 'Replace', 'pattern': {'String': '\u2581'}, 'content': ' '},
            {'type': 'ByteFallback'}, {'type': 'Fuse'},
            {'type': 'Strip', 'content': ' ', 'start': 1, 'stop': 0}]},
        'model': {'type': 'BPE', 'dropout': None, 'unk_token': tokens[unk_id],
                  'continuing_subword_prefix': None, 'end_of_word_suffix': None,
                  'fuse_unk': True, 'byte_fallback': True, 'ignore_merges': False,
                  'vocab': vocab, 'merges': [[m[4], m[5]] for m in merges]},
    }
