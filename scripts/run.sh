#!/usr/bin/env bash
# The main job on a fresh machine: make sure a Vulkan driver and the default
# model are there, build, and generate text from the prompt given (or a default).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
scripts/install-vulkan.sh
scripts/fetch-model.sh
cargo build --release --quiet
prompt="${1:-The capital of France is}"
shift || true
exec "${CARGO_TARGET_DIR:-target}/release/llama-wgpu" generate -m models/SmolLM2-135M-Instruct.Q4_1.gguf -p "$prompt" -n 64 --temp 0 "$@"
