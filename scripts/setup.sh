#!/usr/bin/env bash
# Installs every Debian package mfqat needs to build, test and benchmark.
# Idempotent: when everything is already installed it touches nothing (no apt-get update).
# Works as root; otherwise uses sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  python3 python3-matplotlib python3-numpy zlib1g-dev
  clang clang-tidy libclang-rt-14-dev
  libtorch-dev libgloo-dev libopenblas-dev libcpp-httplib-dev
  libpcre2-dev libicu-dev nodejs
  pybind11-dev python3-dev python3-pytest python3-torch
  python3-jinja2
)
# npm: Debian's package, unless npm is already there (NodeSource's nodejs bundles it and conflicts
# with Debian's npm).
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: not root and no sudo; install these packages: ${missing[*]}" >&2; exit 1
  fi
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
