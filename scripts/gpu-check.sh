#!/usr/bin/env bash
# One short check on a real GPU (see scripts/gpu-bundle.sh): the adapter, the
# Llama 2 7B and SmolLM2 shapes with pp512/tg128 side by side (the SmolLM2
# file itself is over the device tool's 64 MiB carry; its synthetic twin has
# the same tensors, types and bytes per token), the decode tuning sweep,
# llama.cpp's Vulkan backend side by side on a synthetic 7B file, a profile,
# then the kernel and model correctness tests with what time is left.
# Results go to $OUT (the device tool's folder) or ./gpu-check-results.
#
# GPU_CHECK_BUDGET (seconds, default 540) bounds the whole script, so that it
# ends inside the device tool's 600 s command limit with its summary written:
# each step gets at most 240 s and what is left of the budget; a step that
# would start with under 20 s left is skipped, and the summary says so.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check-results}"
mkdir -p "$out"
b=gpu-bundle
budget=${GPU_CHECK_BUDGET:-540}
: >"$out/summary.txt"
say() { echo "$*" | tee -a "$out/summary.txt"; }

# The device machine's image may lack the Vulkan loader: gpu-bundle.sh packs
# Debian's libvulkan1, unpacked here only when none is installed.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    for f in "$b"/deb/*.deb; do
        [ -e "$f" ] && dpkg -x "$f" / && say "unpacked $(basename "$f") (no Vulkan loader installed)"
    done
    ldconfig
fi
# NVIDIA's ICD lives under the driver's read-only mount there, outside the
# loader's search path.
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$nv_icd" ]; then
    export VK_DRIVER_FILES=$nv_icd
    say "VK_DRIVER_FILES=$nv_icd"
fi
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv >"$out/nvidia-smi.txt" 2>&1

run() { # name, command...
    local name=$1; shift
    local left=$((budget - SECONDS))
    if [ "$left" -lt 20 ]; then
        say "== $name: skipped, ${left} s of the ${budget} s budget left"
        return
    fi
    local limit=$((left < 240 ? left : 240))
    say "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    say "exit $? after $((SECONDS - t0)) s (limit $limit s)"
}

run devices "$b/llama-wgpu" devices
# -v logs the adapter's own tuning ("tuning: <profile>: ...").
run bench_7b "$b/llama-wgpu" -v bench --synthetic llama2-7b:q4_0,llama2-7b:q4_k -p 512 -n 128 -r 3
run bench_smollm2_shape "$b/llama-wgpu" bench --synthetic smollm2-135m:q4_1 -p 512 -n 128 -r 3
# Decode tuning, same command for each: every vendor's default in
# Tuning::for_adapter (rows x group: NVIDIA/RDNA 1 x 64, GCN 2 x 64, Intel
# 2 x 16, Apple 4 x 32) plus 4 x 64 and 1 x 32.
for rg in "1 64" "2 64" "4 64" "2 16" "4 32" "1 32"; do
    set -- $rg
    run "bench_7b_matvec_${1}x$2" "$b/llama-wgpu" bench --synthetic llama2-7b:q4_0 -p 0 -n 64 -r 2 --matvec-rows "$1" --matvec-group "$2"
done
# Side by side with llama.cpp's Vulkan backend on one file both load: a
# synthetic Llama 2 7B Q4_0 (random weights, Llama 2's vocabulary; 3.8 GB
# written in /tmp), three interleaved rounds of pp512 and tg128.
sbs_model=/tmp/llama2-7b-q4_0.gguf
lb=$b/llama.cpp/build-vulkan-portable/bin/llama-bench
if [ -e "$b/llama-bench.xz" ] && [ -e "$b/ggml-vocab-llama-spm.gguf" ]; then
    mkdir -p "$(dirname "$lb")"
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$b/llama-bench.xz" "$lb" && chmod +x "$lb"
    run synthetic_7b_file "$b/synthetic_gguf" llama2-7b:q4_0 "$b/ggml-vocab-llama-spm.gguf" "$sbs_model"
    run side_by_side_7b python3 scripts/side-by-side.py -m "$sbs_model" -p 512 -n 128 -r 3 \
        --engines wgpu,vulkan-portable --llama-wgpu "$b/llama-wgpu" --llama-cpp-dir "$b/llama.cpp"
    # Load time with NVIDIA's shader disk cache off (every pipeline compiled
    # by the driver, as on a first run) and on: whether creating pipelines on
    # several threads would pay.
    for cache in 0 1; do
        run "generate_7b_shader_cache_$cache" env __GL_SHADER_DISK_CACHE=$cache "$b/llama-wgpu" \
            generate -m "$sbs_model" -p "The capital of France is" -n 16 --temp 0
    done
else
    say "== side_by_side_7b: skipped, the bundle has no llama-bench.xz or vocabulary"
fi
# Prefill tuning (GPUs default to an 8 x 8 register tile): does 16 x 16 spill here?
run bench_7b_matmul_regs_16 "$b/llama-wgpu" bench --synthetic llama2-7b:q4_0 -p 512 -n 0 -r 3 --matmul-regs 16
run profile_7b "$b/llama-wgpu" bench --synthetic llama2-7b:q4_0 -p 512 -n 16 -r 1 --profile
run gpu_kernels "$b/gpu_kernels" --test-threads 1
run gpu_model "$b/gpu_model" --test-threads 1 --skip smollm2

{
    echo
    echo "== adapter and tuning"
    grep -h -m1 -o 'GPU: .*' "$out/bench_7b.txt"
    grep -h -m1 -o 'tuning: .*' "$out/bench_7b.txt"
    echo "== bench tables (pp512/tg128: t/s, GB/token, GB/s, % of the adapter's peak)"
    for f in "$out"/bench_*.txt; do
        echo "-- $(basename "$f" .txt)"
        grep -h '^| ' "$f" | grep -v -e '^| model' -e '^| ---' || tail -n 3 "$f"
    done
    echo "== side by side with llama.cpp (synthetic Llama 2 7B Q4_0 file)"
    grep -h -e '^model:' -e '^- ' -e '^| ' "$out/side_by_side_7b.txt"
    echo "== generate on that file (load, prompt, generation)"
    grep -h -H 'load:' "$out"/generate_7b_*.txt
    echo "== profile"
    grep -h -i -e 'dispatches' -e 'submissions' "$out/profile_7b.txt"
    echo "== tests"
    grep -h '^test result' "$out/gpu_kernels.txt" "$out/gpu_model.txt"
    echo "== whole script: $SECONDS s"
} 2>/dev/null | tee -a "$out/summary.txt"
