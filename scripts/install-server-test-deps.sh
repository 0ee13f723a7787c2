#!/usr/bin/env bash
# What tests/server.rs needs besides the model: the official OpenAI and
# Ollama Python clients, Debian's Chromium and playwright-core (pinned) to
# drive the web page headless. Cheap when already there.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check openai==2.8.1 ollama==0.6.1
if ! command -v chromium >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "error: tests/server.rs needs Chromium (/usr/bin/chromium)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  echo "installing Debian's chromium for the server's browser test..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --silent
fi
