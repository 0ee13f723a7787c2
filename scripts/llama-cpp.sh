#!/usr/bin/env bash
# Builds llama.cpp's command-line tools from the llama.cpp that the
# `llama-cpp-python` sdist on PyPI vendors, for side-by-side checks against
# llama-wgpu (scripts/side-by-side.py, docs/interop.md). Not part of CI.
#
#   scripts/llama-cpp.sh deps              apt packages the builds need (Debian)
#   scripts/llama-cpp.sh fetch             download and unpack the sdist only
#   scripts/llama-cpp.sh build [cpu|vulkan|vulkan-portable|all]   (default: all;
#                                          vulkan-portable: llama-bench for the GPU bundle)
#   scripts/llama-cpp.sh bin BACKEND TOOL  print the path of a built tool
#
# Everything lands in target/llama.cpp/ (git-ignored). The version is pinned
# with its sha256 so two runs compare against the same llama.cpp; override with
# LLAMA_CPP_PYTHON_VERSION (then LLAMA_CPP_PYTHON_SHA256 too, or "any").
# Why the sdist: PyPI is the reachable source that carries llama.cpp, and only
# that one file is fetched (`pip download --no-binary :all:` would also build
# its build dependencies, cmake included, from source).
#
# Environment: LLAMA_CPP_JOBS (default 2), LLAMA_CPP_DIR (default
# target/llama.cpp). Builds run under `nice -n 19` because the machine is shared.
#
# The Vulkan build needs two things on Debian 12: an #ifdef around the one
# spot in ggml-vulkan.cpp that uses VK_EXT_layer_settings (Debian's headers,
# 1.3.239, predate it), applied here idempotently; and at run time
# GGML_VK_VISIBLE_DEVICES=0, because ggml-vulkan skips CPU devices such as
# lavapipe unless a device list names them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
if [ -n "${LLAMA_CPP_PYTHON_VERSION:-}" ]; then
  sha256="${LLAMA_CPP_PYTHON_SHA256:-}"
else
  sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
fi
cache="${LLAMA_CPP_DIR:-$repo/target/llama.cpp}"
jobs="${LLAMA_CPP_JOBS:-2}"
sdist_dir="$cache/llama_cpp_python-$version"
src="$sdist_dir/vendor/llama.cpp"
# Tools used by the harness and the interop check (llama-quantize: its
# dequantization of our quantized files). llama-cli is left out on
# purpose: in this llama.cpp it is a client of the server, which would pull in
# the server and its web UI; llama-completion is the classic one-shot CLI.
targets=(llama-bench llama-simple llama-completion llama-perplexity llama-eval-callback llama-tokenize llama-quantize)

die() { echo "error: $*" >&2; exit 1; }

deps() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    build-essential cmake glslc spirv-headers libvulkan-dev mesa-vulkan-drivers >/dev/null
}

fetch() {
  mkdir -p "$cache"
  local tarball="$cache/llama_cpp_python-$version.tar.gz"
  if [ ! -f "$tarball" ]; then
    # PyPI's JSON API names the one sdist file of the release. The project
    # document (not the per-version one, which some mirrors lack) lists every
    # release; a file's url may be relative (mirrors), so it is resolved
    # against the API address.
    local api="https://pypi.org/pypi/llama-cpp-python/json"
    local line
    line="$(curl -fsSL "$api" | python3 -c '
import json, sys, urllib.parse
api, version = sys.argv[1], sys.argv[2]
d = json.load(sys.stdin)
s = [u for u in d["releases"].get(version, []) if u["packagetype"] == "sdist"]
if not s:
    sys.exit(f"no sdist of llama-cpp-python {version} in {api}")
print(urllib.parse.urljoin(api, s[0]["url"]), s[0]["digests"]["sha256"])
' "$api" "$version")" || die "cannot find the sdist through $api"
    local url="${line% *}" published="${line#* }"
    [ -z "$sha256" ] && sha256="$published"
    echo "downloading $url" >&2
    curl -fsSL -o "$tarball.part" "$url" || die "download of $url failed"
    mv "$tarball.part" "$tarball"
  fi
  # An unpinned version without LLAMA_CPP_PYTHON_SHA256 was checked against
  # PyPI's digest when it was downloaded.
  if [ -n "$sha256" ] && [ "$sha256" != any ]; then
    echo "$sha256  $tarball" | sha256sum -c --quiet - || die "$tarball: sha256 is not $sha256"
  fi
  if [ ! -f "$src/CMakeLists.txt" ]; then
    # The submodule's git dir comes along so llama.cpp's build-info records
    # the real llama.cpp commit.
    tar -xzf "$tarball" -C "$cache" \
      "llama_cpp_python-$version/vendor/llama.cpp" \
      "llama_cpp_python-$version/.git/modules/vendor/llama.cpp" 2>/dev/null \
      || tar -xzf "$tarball" -C "$cache" "llama_cpp_python-$version/vendor/llama.cpp"
  fi
  patch_layer_settings
}

# Wraps the VK_EXT_layer_settings use in `#ifdef VK_EXT_layer_settings`, with
# the plain InstanceCreateInfo as the #else. Idempotent: a marker comment says
# the file is already patched. Validation layers are a debugging aid; nothing
# llama-bench measures depends on them.
patch_layer_settings() {
  local f="$src/ggml/src/ggml-vulkan/ggml-vulkan.cpp"
  [ -f "$f" ] || die "$f not found"
  grep -q 'llama-wgpu: layer_settings guard' "$f" && return 0
  python3 - "$f" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
start = text.find("    VkBool32 enable_best_practice = layer_settings;")
end_marker = "&layer_setting_info);\n"
end = text.find(end_marker, start)
if start < 0 or end < 0:
    sys.exit(f"{path}: the VK_EXT_layer_settings block was not found; "
             "this llama.cpp version needs a new patch")
end += len(end_marker)
block = text[start:end]
plain = ("    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, "
         "&app_info, layers, extensions);\n")
patched = ("#ifdef VK_EXT_layer_settings // llama-wgpu: layer_settings guard\n"
           + block + "#else\n" + plain + "#endif\n")
open(path, "w").write(text[:start] + patched + text[end:])
EOF
}

build_one() {
  local backend="$1" dir="$cache/build-$1" flags=() native=ON tools=("${targets[@]}")
  case "$backend" in
    cpu) flags=(-DGGML_VULKAN=OFF) ;;
    vulkan) flags=(-DGGML_VULKAN=ON) ;;
    # For the lent GPU machine (scripts/gpu-bundle.sh): its processor is not
    # this one, so no -march=native; llama-bench alone.
    vulkan-portable) flags=(-DGGML_VULKAN=ON); native=OFF; tools=(llama-bench) ;;
    *) die "unknown backend '$backend' (cpu, vulkan or vulkan-portable)" ;;
  esac
  command -v cmake >/dev/null || die "cmake not found (scripts/llama-cpp.sh deps)"
  if [ "$backend" != cpu ]; then
    command -v glslc >/dev/null || die "glslc not found (scripts/llama-cpp.sh deps)"
  fi
  local t0=$SECONDS
  nice -n 19 cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE="$native" \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_OPENSSL=OFF \
    "${flags[@]}" >"$cache/cmake-$backend.log" 2>&1 \
    || { tail -n 30 "$cache/cmake-$backend.log" >&2; die "cmake configure ($backend) failed; log: $cache/cmake-$backend.log"; }
  nice -n 19 cmake --build "$dir" -j "$jobs" --target "${tools[@]}" \
    >"$cache/build-$backend.log" 2>&1 \
    || { grep -m 20 -E 'error|Error' "$cache/build-$backend.log" >&2; die "build ($backend) failed; log: $cache/build-$backend.log"; }
  [ "$backend" = vulkan-portable ] || build_logits "$dir" "$backend"
  echo "llama.cpp $backend build: $((SECONDS - t0)) s, tools in $dir/bin" >&2
}

# scripts/llama-logits.cpp (full logits and greedy ids from llama.cpp, for
# docs/interop.md), linked against the static libraries just built.
build_logits() {
  local dir="$1" backend="$2" libs extra=()
  mapfile -t libs < <(find "$dir" -name libllama.a -o -name 'libggml*.a')
  [ "${#libs[@]}" -gt 0 ] || die "no llama.cpp libraries under $dir"
  [ "$backend" = vulkan ] && extra=(-lvulkan)
  nice -n 19 g++ -O2 -std=c++17 -I"$src/include" -I"$src/ggml/include" \
    "$repo/scripts/llama-logits.cpp" -o "$dir/bin/llama-logits" \
    -Wl,--start-group "${libs[@]}" -Wl,--end-group "${extra[@]}" -fopenmp -lpthread -ldl \
    || die "building llama-logits ($backend) failed"
}

cmd="${1:-}"
case "$cmd" in
  deps) deps ;;
  fetch) fetch ;;
  build)
    fetch
    case "${2:-all}" in
      all) build_one cpu; build_one vulkan ;;
      cpu | vulkan | vulkan-portable) build_one "$2" ;;
      *) die "unknown backend '$2' (cpu, vulkan, vulkan-portable or all)" ;;
    esac
    ;;
  bin)
    [ $# -eq 3 ] || die "usage: $0 bin cpu|vulkan|vulkan-portable TOOL"
    b="$cache/build-$2/bin/$3"
    [ -x "$b" ] || die "$b not built (scripts/llama-cpp.sh build $2)"
    echo "$b"
    ;;
  *)
    echo "usage: $0 deps | fetch | build [cpu|vulkan|vulkan-portable|all] | bin cpu|vulkan|vulkan-portable TOOL" >&2
    exit 2
    ;;
esac
