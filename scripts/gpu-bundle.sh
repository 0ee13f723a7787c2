#!/usr/bin/env bash
# Prepares a device check. The lent GPU machine has no network, so it gets
# prebuilt executables: the release binary and the GPU test executables,
# under gpu-bundle/ (git-ignored; pass it as `carry`: ~32 MB, and the working
# tree that travels with it ~6 MB, of the tool's 64 MiB), and Debian's Vulkan
# loader for a machine whose image has none. Then run scripts/gpu-check.sh
# there (carry gpu-bundle, timeout_s 600: it bounds itself to 540 s).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
rm -rf gpu-bundle && mkdir -p gpu-bundle
cargo build --release --quiet
cp "$target/release/llama-wgpu" gpu-bundle/
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
# The device machine has no network; gpu-check.sh unpacks this only where
# `ldconfig -p` lists no libvulkan.so.1.
mkdir -p gpu-bundle/deb
(cd gpu-bundle/deb && apt-get download libvulkan1 2>/dev/null) ||
    echo "warning: could not download libvulkan1 (apt-get download); the bundle relies on the machine's own loader" >&2
du -sh gpu-bundle
