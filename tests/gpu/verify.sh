#!/usr/bin/env bash
# tests/gpu/verify.sh - the CUDA flavour's checks on a GPU machine, one command, under 8 minutes.
# Run it from the folder tools/gpu-bundle.sh builds (it is copied there as verify.sh):
#
#     ./verify.sh [OUT_DIR]        (default: ./out; the summary is OUT_DIR/summary.txt)
#
# Needs the CUDA driver, cuBLASLt (the toolkit's or PyTorch's), PyTorch with numpy and
# safetensors, compute-sanitizer; nothing from the network.  Prints one summary:
#   device and driver; copy bandwidth; every kernel run on the device inside tb_forward_gpu
#   under compute-sanitizer memcheck and racecheck (f16, bf16, q8_0, q4_0 and q4_k_m models:
#   GEMV, GEMM, integer and K-quant GEMVs, both attentions, RoPE, norms, KV writes); logits of every prompt position
#   against the cpu flavour's reference outputs; TinyStories greedy tokens; graphs on vs off;
#   a `turbine serve` deployment on engine_cuda answering chat, stream and a cancelled stream
#   through curl; the speed table against a plain PyTorch loop (tests/gpu/gpu_speed.py).
# Exit 0 when every check passed, 1 otherwise.
set -u
B=$(cd "$(dirname "$0")" && pwd)
W=${1:-$B/out}
mkdir -p "$W"
SUM=$W/summary.txt
LOG=$W/log.txt
: >"$SUM"
: >"$LOG"
T0=$(date +%s)
FAILED=0

result() { # NAME PASS|FAIL|SKIP DETAIL
    printf '%-30s %-5s %s\n' "$1" "$2" "$3" >>"$SUM"
    [ "$2" = FAIL ] && FAILED=1
    return 0
}

# Libraries: the bundle's, then cuBLASLt from the toolkit or from PyTorch's wheels.
CUBLAS_DIR=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)
export TURBINE_PLUGIN_PATH=$B/plugins # also when turbine runs through the bundled loader
export LD_LIBRARY_PATH=$B/lib:/usr/local/cuda/lib64:${CUBLAS_DIR}:${LD_LIBRARY_PATH:-}
# The machine's glibc may be older than the one the bundle was built against: then every
# program runs through the bundled loader.
RUN=()
if ! "$B/bin/turbine" version >>"$LOG" 2>&1; then
    RUN=("$B/lib/glibc/ld-linux-x86-64.so.2" --library-path "$LD_LIBRARY_PATH:$B/lib/glibc")
    if ! "${RUN[@]}" "$B/bin/turbine" version >>"$LOG" 2>&1; then
        result "bundle" FAIL "bin/turbine does not run here (see $LOG)"
    fi
fi
export TB_RUN_PREFIX
TB_RUN_PREFIX=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${RUN[@]}")
FWD=("${RUN[@]}" "$B/bin/tb_forward_gpu")
PROMPT=$(cat "$B/refs/prompt.txt")

# 1. device, driver
DEV=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>>"$LOG")
if [ -n "$DEV" ]; then result "device" PASS "$DEV"; else result "device" FAIL "nvidia-smi found none"; fi

# 2. the flavour refuses nothing here: TinyStories greedy tokens equal the cpu flavour's
greedy() { # MODEL OUTJSON [extra...]
    "${FWD[@]}" "$1" --backend cuda --prompt 1,450,300,12,99 --prompt "$PROMPT" --generate 32 \
        --block-size 16 --logits-out "$2.logits" "${@:3}" >"$2" 2>>"$LOG"
}
if greedy "$B/models/tinystories-656k" "$W/ts-greedy.json"; then
    r=$(python3 "$B/py/gpu_check.py" tokens "$B/refs/tinystories-656k-greedy.json" "$W/ts-greedy.json")
    result "tinystories greedy" "${r%% *}" "${r#* }"
    if greedy "$B/models/tinystories-656k" "$W/ts-nographs.json" --no-cuda-graphs; then
        r=$(python3 "$B/py/gpu_check.py" same "$W/ts-greedy.json.logits" "$W/ts-nographs.json.logits" 2)
        result "graphs on = off" "${r%% *}" "${r#* }"
    else
        result "graphs on = off" FAIL "tb_forward_gpu --no-cuda-graphs failed (see $LOG)"
    fi
else
    result "tinystories greedy" FAIL "tb_forward_gpu failed (see $LOG)"
fi

# 3. logits of every prompt position against the cpu flavour (tolerances: docs/engine-cuda.md)
# (the K-quants: the cpu flavour quantizes their activations in blocks of 256, the cuda flavour
# in blocks of 32, hence the looser tolerance and argmax agreement)
declare -A TOL=([tinystories-656k]=1e-3 [small-f16]=1e-2 [small-bf16]=5e-2 [small-q8_0]=1e-3
                [small-q4_0]=3e-2 [small-q4_k_m]=6e-2)
declare -A AGREE=([small-q4_k_m]=0.8)
for tag in tinystories-656k small-f16 small-bf16 small-q8_0 small-q4_0 small-q4_k_m; do
    m=$B/models/$tag
    [ -e "$m" ] || m=$m.gguf
    if "${FWD[@]}" "$m" --backend cuda --prompt "$PROMPT" --all-logits "$W/$tag-all" \
        --block-size 16 --max-batch-tokens 64 >>"$LOG" 2>&1; then
        r=$(python3 "$B/py/gpu_check.py" logits "$B/refs/$tag-all/0.npy" "$W/$tag-all/0.npy" \
            "${TOL[$tag]}" "${AGREE[$tag]:-0.95}")
        result "logits $tag" "${r%% *}" "${r#* }"
    else
        result "logits $tag" FAIL "tb_forward_gpu failed (see $LOG)"
    fi
done

# 4. every kernel on the device under compute-sanitizer
if command -v compute-sanitizer >/dev/null; then
    for tool in memcheck racecheck; do
        bad=""
        for tag in small-f16 small-bf16 small-q8_0 small-q4_0 small-q4_k_m; do
            if ! compute-sanitizer --tool "$tool" --error-exitcode 9 "${FWD[@]}" \
                "$B/models/$tag.gguf" --backend cuda --prompt "$PROMPT" --prompt 1,2,3 \
                --generate 3 --stagger 1 --block-size 16 >>"$LOG" 2>&1; then
                bad="$bad $tag"
            fi
        done
        if [ -z "$bad" ]; then
            result "compute-sanitizer $tool" PASS "5 models (prefill GEMM, decode graphs, mixed steps)"
        else
            result "compute-sanitizer $tool" FAIL "errors on:$bad (see $LOG)"
        fi
    done
else
    result "compute-sanitizer" FAIL "not on PATH"
fi

# 5. turbine serve on engine_cuda: chat, stream, a cancelled stream, then a clean stop
PORT=18631
sed -e "s|\${TURBINE_MODEL:-../shared/models/tinystories-656k}|$B/models/tinystories-656k|" \
    -e "s|\${TURBINE_HTTP_PORT:-8000}|$PORT|" "$B/cuda.yaml" >"$W/cuda.yaml"
"${RUN[@]}" "$B/bin/turbine" serve "$W/cuda.yaml" >"$W/serve.log" 2>&1 &
SPID=$!
ready=0
for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 $SPID 2>/dev/null || break
    sleep 0.5
done
if [ $ready = 1 ]; then
    URL=http://127.0.0.1:$PORT/v1/chat/completions
    H='Content-Type: application/json'
    chat=$(curl -s -m 60 "$URL" -H "$H" -d '{"model":"tinystories","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":24}')
    stream=$(curl -s -N -m 60 "$URL" -H "$H" -d '{"model":"tinystories","messages":[{"role":"user","content":"Tell a story"}],"max_tokens":24,"stream":true}')
    curl -s -N -m 0.3 "$URL" -H "$H" -d '{"model":"tinystories","messages":[{"role":"user","content":"A long story"}],"max_tokens":400,"stream":true}' >/dev/null 2>&1
    after=$(curl -s -m 60 "$URL" -H "$H" -d '{"model":"tinystories","messages":[{"role":"user","content":"Again"}],"max_tokens":8}')
    ok=1
    echo "$chat" | grep -q '"choices"' || ok=0
    echo "$stream" | grep -q 'data: \[DONE\]' || ok=0
    echo "$after" | grep -q '"choices"' || ok=0
    kill -TERM $SPID
    wait $SPID
    src=$?
    [ $src = 0 ] || ok=0
    if [ $ok = 1 ]; then
        result "serve engine_cuda" PASS "chat, stream, cancelled stream, next request, exit 0"
    else
        result "serve engine_cuda" FAIL "chat/stream/cancel/exit $src (see $W/serve.log)"
    fi
else
    kill -TERM $SPID 2>/dev/null
    wait $SPID 2>/dev/null
    result "serve engine_cuda" FAIL "not ready (see $W/serve.log)"
fi

# 6. speed, in what is left of 8 minutes
LEFT=$((420 - ($(date +%s) - T0)))
if [ $LEFT -gt 90 ] && PYTHONPATH=$B/py timeout $LEFT python3 "$B/py/gpu_speed.py" "$B" \
    "${TMPDIR:-/tmp}/tb-gpu-speed" $((LEFT - 30)) >"$W/speed.txt" 2>>"$LOG"; then
    result "speed" PASS "table below"
else
    result "speed" FAIL "gpu_speed.py failed or ran out of time (see $LOG)"
fi

echo "== turbine CUDA flavour on $(hostname), bundle $(cat "$B/COMMIT" 2>/dev/null), $(($(date +%s) - T0)) s"
cat "$SUM"
[ -s "$W/speed.txt" ] && cat "$W/speed.txt"
exit $FAILED
