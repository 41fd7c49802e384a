#!/usr/bin/env bash
# Kernel benchmark: memory-read bandwidth, batch-1 matvec GB/s and % of bandwidth per dtype on
# 1.1B-Llama-shaped matrices, a whole 1.1B decode step (batch 1 and 16 sequences), GFLOP/s at
# n_tok 16 and 512, and the thread pool's dispatch overhead.
# Usage: bench/kernels.sh [-t threads] [-q] [-d dtype]
#   -t N   threads (default 2)      -q   quick (skips n_tok 512 and the f32 decode step)
#   -d DT  one dtype only (f32, f16, bf16, q8_0, q4_0)
# TB_CPU_ISA=avx2 (or generic) measures the lower ISA paths on an AVX-512 machine.
# The machine should be otherwise idle: the figures are the best of several repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
scons -Q -j2 build/release/bench/bench_kernels >/dev/null
args=("$@")
if [ ${#args[@]} -eq 0 ] || ! printf '%s\n' "${args[@]}" | grep -qx -- '-t'; then
  args=(-t 2 "${args[@]}")
fi
exec build/release/bench/bench_kernels "${args[@]}"
