#!/usr/bin/env bash
# The test command: installs what is missing, builds (Release) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release -DMFQAT_BUILD_TESTS=ON -DMFQAT_BUILD_BENCH=ON >/dev/null
cmake --build --preset release -j "$(nproc)"
ctest --preset release -j "$(nproc)"
