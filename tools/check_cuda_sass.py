#!/usr/bin/env python3
"""Static check of the CUDA flavour's SASS (issue 11): the weight and KV loads of the GEMV and
attention kernels must be 128-bit (LDG.E.128...), on every architecture the library carries.

Usage: check_cuda_sass.py build/release/lib/libtb_cuda_kernels.a

Reads the SASS with cuobjdump: from PATH, NVCC's toolkit, or the nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm wheels of tools/requirements.txt (.venv).  Exit 0 when every kernel
passes, 1 when one does not, 2 when the SASS cannot be read."""
import glob
import os
import re
import shutil
import subprocess
import sys

# kernel name (as it appears in the mangled symbol) -> the least number of distinct 128-bit
# global loads it must have: weight + activation for the GEMVs, key + value for attention.  The
# K-quant GEMVs (gemv_k.cu) read per unit of 64 values 1 (Q2_K), 2 (Q3_K, Q4_K, IQ4_XS), 4
# (Q5_K) or 3 (Q6_K) 128-bit words of quants and one 16-byte scale record, and 4 words of
# activations for each of the 8 tokens (unrolled): every one of those must be a 128-bit load
# (Q2_K 2 + 32, Q3_K and Q4_K 3 + 32, IQ4_XS 2 + 32 (its 8-byte record is a 64-bit load), Q5_K
# 5 + 32, Q6_K 4 + 32; the narrower loads are the activation scales, the bias and the f16
# super-block scales).
REQUIRED = {
    'tb_gemv_kernel': 2,
    'tb_gemv_q_kernel': 2,
    'tb_gemv_k45_kernelILi11E': 35,  # Q4_K (the template argument is the dtype's value)
    'tb_gemv_k45_kernelILi12E': 37,  # Q5_K
    'tb_gemv_k45_kernelILi14E': 34,  # IQ4_XS (its record is 8 bytes: a 64-bit load)
    'tb_gemv_k16_kernelILi13E': 36,  # Q6_K
    'tb_gemv_k16_kernelILi10E': 35,  # Q3_K
    'tb_gemv_k16_kernelILi9E': 34,  # Q2_K
    'tb_attn_split_kernel': 2,
    'tb_attn_prefill_kernel': 2,
}
INSTANTIATIONS = {'tb_gemv_kernel': 3, 'tb_gemv_q_kernel': 2}
ARCHS = ['sm_80', 'sm_90']


def find_tool(name):
    """Path of `name` from PATH, the CUDA toolkit or the project's .venv wheels, or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cands = [shutil.which(name), '/usr/local/cuda/bin/' + name]
    cands += glob.glob(os.path.join(root, '.venv', 'lib', 'python3*', 'site-packages', 'nvidia',
                                    '*', 'bin', name))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    return None


def parse(sass):
    """{(arch, function): [load instruction mnemonics]} from cuobjdump -sass output."""
    out, arch, fn = {}, None, None
    for line in sass.splitlines():
        m = re.match(r'\s*arch = (sm_\d+)', line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r'\s*Function : (\S+)', line)
        if m:
            fn = m.group(1)
            out.setdefault((arch, fn), [])
            continue
        if fn is None:
            continue
        ins = re.search(r'\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s', line)
        if ins and ins.group(1).startswith('LDG'):
            out[(arch, fn)].append(ins.group(1))
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    cuobjdump = find_tool('cuobjdump')
    nvdisasm = find_tool('nvdisasm')
    if not cuobjdump or not nvdisasm:
        print('check_cuda_sass: cuobjdump or nvdisasm not found (run tools/setup.sh, which '
              'installs the nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels)')
        return 2
    env = dict(os.environ, PATH=os.path.dirname(nvdisasm) + os.pathsep + os.environ['PATH'])
    p = subprocess.run([cuobjdump, '-sass', sys.argv[1]], capture_output=True, text=True,
                       env=env)
    if p.returncode != 0:
        print('check_cuda_sass: cuobjdump failed:\n' + p.stderr)
        return 2
    funcs = parse(p.stdout)
    failed = 0
    for kernel, least in sorted(REQUIRED.items()):
        for arch in ARCHS:
            found = [(fn, loads) for (a, fn), loads in funcs.items()
                     if a == arch and kernel in fn]
            if len(found) < INSTANTIATIONS.get(kernel, 1):
                print('FAIL %s %s: %d instantiations in the SASS, want %d'
                      % (arch, kernel, len(found), INSTANTIATIONS.get(kernel, 1)))
                failed += 1
                continue
            for fn, loads in sorted(found):
                wide = [l for l in loads if '.128' in l]
                ok = len(wide) >= least
                failed += not ok
                print('%-4s %s %-40s %2d of %2d global loads 128-bit (%s)'
                      % ('ok' if ok else 'FAIL', arch, fn[:40], len(wide), len(loads),
                         ', '.join(sorted(set(loads)))))
    print('check_cuda_sass: %s' % ('failed' if failed else 'all kernels pass'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
