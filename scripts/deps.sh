#!/usr/bin/env bash
# Installs the Debian 12 packages Palmline builds and tests with; idempotent (installs only
# what is missing). Sourced by scripts/demo and scripts/test.
set -euo pipefail
PALMLINE_APT_PACKAGES=(
  libopencv-dev clang libclang-dev pkg-config libudev-dev libinput-dev libxkbcommon-dev
  libfontconfig1-dev nasm xvfb xauth imagemagick ca-certificates
  # scripts/fuzz-api: schemathesis in a venv (from PyPI), curl and jq to seed and check.
  python3 python3-venv python3-pip curl jq
)
missing=()
for p in "${PALMLINE_APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "palmline: installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "palmline: cargo not found; install Rust (https://rustup.rs) and run again" >&2
  exit 1
fi
