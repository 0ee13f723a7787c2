#!/usr/bin/env bash
# Prepares a device check. The lent GPU machine has no network, so it gets
# prebuilt executables: the release binary and the GPU test executables,
# under gpu-bundle/ (git-ignored; pass it as `carry`: ~40 MB, and the working
# tree that travels with it ~6 MB, of the tool's 64 MiB), llama.cpp's
# llama-bench and what makes a model file both engines load, and Debian's
# Vulkan loader for a machine whose image has none. Then run scripts/gpu-check.sh
# there (carry gpu-bundle, timeout_s 600: it bounds itself to 540 s).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
rm -rf gpu-bundle && mkdir -p gpu-bundle
cargo build --release --quiet --bin llama-wgpu --example synthetic_gguf
cp "$target/release/llama-wgpu" "$target/release/examples/synthetic_gguf" gpu-bundle/
# The vocabulary of the synthetic Llama 2 7B file that both engines load
# there (examples/synthetic_gguf.rs).
cp ../shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf gpu-bundle/ 2>/dev/null ||
    echo "warning: ggml-vocab-llama-spm.gguf not found; gpu-check.sh skips the llama.cpp side by side" >&2
for t in gpu_kernels gpu_model; do
    exe=$(cargo test --release --no-run --test "$t" --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
    cp "$exe" "gpu-bundle/$t"
done
strip gpu-bundle/* 2>/dev/null || true
# llama.cpp's llama-bench, Vulkan, built without -march=native (that
# machine's processor is not this one): 38 MB stripped, 6 MB as xz.
lb="${LLAMA_CPP_DIR:-$target/llama.cpp}/build-vulkan-portable/bin/llama-bench"
if [ -x "$lb" ]; then
    strip -o gpu-bundle/llama-bench "$lb" && xz -T0 -6 gpu-bundle/llama-bench
else
    echo "warning: $lb not built (scripts/llama-cpp.sh build vulkan-portable, ~6 min); gpu-check.sh skips the llama.cpp side by side" >&2
fi
# The device machine has no network; gpu-check.sh unpacks this only where
# `ldconfig -p` lists no libvulkan.so.1.
mkdir -p gpu-bundle/deb
(cd gpu-bundle/deb && apt-get download libvulkan1 2>/dev/null) ||
    echo "warning: could not download libvulkan1 (apt-get download); the bundle relies on the machine's own loader" >&2
du -sh gpu-bundle
