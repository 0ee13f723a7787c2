#!/usr/bin/env bash
# Prepares a device check. The lent GPU machine has no network, so it gets
# prebuilt executables: the release binary and the GPU test executables,
# under gpu-bundle/ (git-ignored; pass it as `carry`, ~60 MB with the tests
# below). Then run scripts/gpu-check.sh there.
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
du -sh gpu-bundle
