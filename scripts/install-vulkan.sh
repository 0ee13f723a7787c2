#!/usr/bin/env bash
# Makes sure a Vulkan driver exists. On a machine without a GPU driver this
# installs Mesa's lavapipe, a conformant Vulkan driver that runs on the CPU.
set -euo pipefail
has_icd() {
  # Mesa's package ships lavapipe beside its hardware drivers, so any ICD
  # file means either a GPU driver or lavapipe is there.
  [ -n "$(find /usr/share/vulkan/icd.d /etc/vulkan/icd.d -name '*.json' 2>/dev/null | head -n 1)" ]
}
if has_icd && ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: no Vulkan driver found; install your GPU's Vulkan driver (or Mesa's lavapipe)" >&2
  exit 1
fi
echo "no Vulkan driver found: installing Mesa's lavapipe (mesa-vulkan-drivers)..." >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
