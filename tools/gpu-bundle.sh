#!/usr/bin/env bash
# tools/gpu-bundle.sh [OUT_DIR] - builds the self-contained folder that tests/gpu/verify.sh runs
# from on a GPU machine that has the CUDA driver, toolkit and PyTorch but none of Debian's
# libraries and no network (docs/engine-cuda.md "On a GPU").
#
#   bin/      turbine, turbine-tokenize, tb_forward (cpu + emulated cuda), tb_forward_gpu
#   plugins/  every plugin, tb_engine_cuda.so included
#   lib/      the shared libraries those need that are not glibc (ZeroMQ, msgpack, libyaml,
#             jansson, libmicrohttpd, PCRE2, utf8proc, libstdc++ and their own dependencies);
#   lib/glibc the C library they were linked against, with its loader: verify.sh runs the
#             programs through it only when the machine's own glibc is older
#   models/   TinyStories and small random-weight test models (f16, bf16, q8_0, q4_0, and a
#             Q4_K_M file: Q4_K + Q6_K)
#   refs/     the cpu flavour's outputs on them (logits of every prompt position, greedy tokens)
#   shared/   what tb_make_model.py reads (TB_SHARED): TinyStories' and llama's vocabularies
#   py/       tb_make_model.py, tb_modelio.py and the gguf package (to write the speed models
#             on the device), tests/gpu/*.py
#   verify.sh tests/gpu/verify.sh
# Needs a release build with nvcc (scons -Q -j2).  Prints the folder's size; fails above 60 MB.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build/release
OUT=${1:-$ROOT/build/gpu-bundle}
PY=$ROOT/.venv/bin/python
[ -x "$PY" ] || PY=python3
SHARED=$(cd "$ROOT/.." && pwd)/shared

for f in bin/turbine plugins/tb_engine_cuda.so tests/tools/tb_forward tests/tools/tb_forward_gpu; do
    if [ ! -e "$B/$f" ]; then
        echo "gpu-bundle: $B/$f is missing: build first (scons -Q -j2, with nvcc)" >&2
        exit 1
    fi
done

rm -rf "$OUT"
mkdir -p "$OUT"/{bin,plugins,lib/glibc,models,refs,py,shared/models,shared/tokenizer-vectors}
cp "$B"/bin/turbine "$B"/bin/turbine-tokenize "$OUT/bin/"
cp "$B"/tests/tools/tb_forward "$B"/tests/tools/tb_forward_gpu "$OUT/bin/"
cp "$B"/plugins/*.so "$OUT/plugins/"
cp "$B"/lib/*.so* "$OUT/lib/"
strip --strip-debug "$OUT"/bin/* "$OUT"/plugins/*.so "$OUT"/lib/*.so*

# The libraries every program and plugin resolves (transitively: ldd lists the closure), split
# into glibc's (lib/glibc) and everything else (lib).  The CUDA driver is the machine's own.
GLIBC_RE='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux-x86-64)\.so'
for f in "$OUT"/bin/* "$OUT"/plugins/*.so "$OUT"/lib/*.so*; do
    ldd "$f" | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}'
done | sort -u | while read -r lib; do
    name=$(basename "$lib")
    case "$name" in libturbine-bus.so*) continue ;; esac
    if [[ $name =~ $GLIBC_RE ]]; then
        cp -L "$lib" "$OUT/lib/glibc/$name"
    else
        cp -L "$lib" "$OUT/lib/$name"
    fi
done
strip --strip-unneeded "$OUT"/lib/*.so* 2>/dev/null || true

# Models: TinyStories and one small random model per weight type (the shape of the cpu forward
# tests), then the cpu flavour's reference outputs on each.
cp -r "$SHARED/models/tinystories-656k" "$OUT/models/"
# what tb_make_model.py reads from ../shared (TB_SHARED) to write the speed models on the device
ln -s ../../models/tinystories-656k "$OUT/shared/models/tinystories-656k"
cp "$SHARED/tokenizer-vectors/ggml-vocab-llama-spm.gguf" "$OUT/shared/tokenizer-vectors/"
SHAPE=(--layers 4 --hidden 128 --heads 4 --kv-heads 2 --intermediate 384 --vocab 2048 --untied
       --seed 3)
for dt in f16 bf16 q8_0 q4_0; do
    (cd "$ROOT/tools" && "$PY" tb_make_model.py --out "$OUT/models/small-$dt.gguf" --format gguf \
        --dtype "$dt" "${SHAPE[@]}" >/dev/null)
done
# the K-quants need rows that are multiples of 256: a wider shape, llama.cpp's Q4_K_M mix
(cd "$ROOT/tools" && "$PY" tb_make_model.py --out "$OUT/models/small-q4_k_m.gguf" --format gguf \
    --block-types q4_k_m --layers 2 --hidden 256 --heads 4 --kv-heads 2 --intermediate 512 \
    --vocab 2048 --untied --seed 3 >/dev/null)
PROMPT=1,450,300,12,99,7,31,64,5,18,222,17,1000,42,3,9,1500,8,77,200,11,400,60,33
for m in tinystories-656k small-f16.gguf small-bf16.gguf small-q8_0.gguf small-q4_0.gguf \
    small-q4_k_m.gguf; do
    tag=${m%.gguf}
    "$B/tests/tools/tb_forward" "$OUT/models/$m" --prompt "$PROMPT" --all-logits \
        "$OUT/refs/$tag-all" --block-size 16 --max-batch-tokens 64 >/dev/null
    "$B/tests/tools/tb_forward" "$OUT/models/$m" --prompt 1,450,300,12,99 \
        --prompt "$PROMPT" --generate 32 --block-size 16 >"$OUT/refs/$tag-greedy.json"
done
echo "$PROMPT" >"$OUT/refs/prompt.txt"

cp "$ROOT/tools/tb_make_model.py" "$ROOT/tools/tb_modelio.py" "$OUT/py/"
GGUF_DIR=$("$PY" -c 'import gguf, os; print(os.path.dirname(gguf.__file__))')
cp -r "$GGUF_DIR" "$OUT/py/gguf"
find "$OUT/py" -name __pycache__ -prune -exec rm -rf {} +
cp "$ROOT"/tests/gpu/*.py "$OUT/py/"
cp "$ROOT/tests/gpu/verify.sh" "$OUT/verify.sh"
chmod +x "$OUT/verify.sh"
cp "$ROOT/examples/cuda.yaml" "$OUT/cuda.yaml"
git -C "$ROOT" rev-parse HEAD >"$OUT/COMMIT" 2>/dev/null || true

# Self-check: through the bundled loader with only the bundle's folders on its path (searched
# before the system's), every program and plugin must resolve every library inside the bundle,
# and the CPU-side programs must run.
LD="$OUT/lib/glibc/ld-linux-x86-64.so.2"
LP="$OUT/lib:$OUT/lib/glibc"
export TURBINE_PLUGIN_PATH="$OUT/plugins" # the loader is /proc/self/exe then, not turbine
for f in "$OUT"/bin/* "$OUT"/plugins/*.so; do
    outside=$("$LD" --library-path "$LP" --list "$f" | awk '/=> \//{print $3}' |
        grep -v "^$OUT/" || true)
    if [ -n "$outside" ]; then
        echo "gpu-bundle: $f resolves outside the bundle: $outside" >&2
        exit 1
    fi
done
"$LD" --library-path "$LP" "$OUT/bin/turbine" version >/dev/null
"$LD" --library-path "$LP" "$OUT/bin/turbine" check "$OUT/cuda.yaml" >/dev/null
"$LD" --library-path "$LP" "$OUT/bin/tb_forward" "$OUT/models/tinystories-656k" \
    --prompt 1,450,300 --generate 4 --backend cuda >/dev/null
if "$LD" --library-path "$LP" "$OUT/bin/tb_forward_gpu" "$OUT/models/tinystories-656k" \
    --prompt 1,2 --generate 1 --backend cuda 2>"$OUT/.nodev" >/dev/null; then
    echo "gpu-bundle: note: tb_forward_gpu found a device here"
elif ! grep -q "no CUDA device was found" "$OUT/.nodev"; then
    echo "gpu-bundle: tb_forward_gpu failed otherwise: $(cat "$OUT/.nodev")" >&2
    exit 1
fi
rm -f "$OUT/.nodev"
echo "gpu-bundle: every program and plugin resolves its libraries in the bundle; turbine," \
    "tb_forward (emulated cuda) and tb_forward_gpu (refusing: no device) ran from it"

SIZE=$(du -sm "$OUT" | cut -f1)
echo "gpu-bundle: $OUT, ${SIZE} MB"
if [ "$SIZE" -ge 60 ]; then
    echo "gpu-bundle: larger than 60 MB" >&2
    exit 1
fi
