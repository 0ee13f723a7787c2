#!/usr/bin/env bash
# The project's test command: sets up what the tests need, then runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# Mesa's shader cache makes repeated lavapipe runs much faster.
export MESA_SHADER_CACHE_DIR="${MESA_SHADER_CACHE_DIR:-$PWD/target/mesa-shader-cache}"
scripts/install-vulkan.sh
scripts/fetch-model.sh
# tests/hub_python.rs checks that the Hugging Face cache is shared with Python's huggingface_hub.
python3 -c 'import huggingface_hub, sys; sys.exit(huggingface_hub.__version__ != "0.36.0")' 2>/dev/null ||
  python3 -m pip install --quiet 'huggingface_hub==0.36.0' ||
  python3 -m pip install --quiet --break-system-packages 'huggingface_hub==0.36.0'
scripts/install-server-test-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --no-fail-fast "$@"
