#!/usr/bin/env bash
# One short check on a real GPU (see scripts/gpu-bundle.sh): the adapter, the
# kernel and model correctness tests (random and synthetic data; SmolLM2 is
# not carried), prefill vs decode side by side, and the Llama 2 7B shape.
# Results go to $OUT (the device tool's folder) or ./gpu-check-results.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check-results}"
mkdir -p "$out"
b=gpu-bundle
run() { # name, command...
    local name=$1; shift
    echo "== $name: $*" | tee -a "$out/summary.txt"
    local t0=$SECONDS
    timeout 240 "$@" >"$out/$name.txt" 2>&1
    echo "exit $? after $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
}
run devices "$b/llama-wgpu" devices
run gpu_kernels "$b/gpu_kernels" --test-threads 1
run gpu_model "$b/gpu_model" --test-threads 1 --skip smollm2
run bench_smollm2_shape "$b/llama-wgpu" bench --synthetic smollm2-135m:q4_1 -p 512 -n 128 -r 3
run bench_7b "$b/llama-wgpu" -v bench --synthetic llama2-7b:q4_0,llama2-7b:q4_k -p 512 -n 128 -r 3
run profile_7b "$b/llama-wgpu" bench --synthetic llama2-7b:q4_0 -p 512 -n 16 -r 1 --profile
# Decode tuning, same command for each: every vendor's default in
# Tuning::for_adapter (rows x group: NVIDIA/RDNA 1 x 64, GCN 2 x 64, Intel
# 2 x 16, Apple 4 x 32) plus 4 x 64 and 1 x 32. bench_7b's log names the
# adapter's own ("tuning:").
for rg in "1 64" "2 64" "4 64" "2 16" "4 32" "1 32"; do
    set -- $rg
    run "bench_7b_matvec_${1}x$2" "$b/llama-wgpu" bench --synthetic llama2-7b:q4_0 -p 0 -n 64 -r 2 --matvec-rows "$1" --matvec-group "$2"
done
# Prefill tuning (GPUs default to an 8 x 8 register tile): does 16 x 16 spill here?
run bench_7b_matmul_regs_16 "$b/llama-wgpu" bench --synthetic llama2-7b:q4_0 -p 512 -n 0 -r 3 --matmul-regs 16
tail -n 4 "$out"/bench_*.txt >>"$out/summary.txt"
cat "$out/summary.txt"
