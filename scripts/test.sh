#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite twice: the
# Release build, then the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
# (separate build dir; skip with MFQAT_TEST_ASAN=0 for a quick local run), with a short run of
# every fuzz target in between (MFQAT_TEST_FUZZ=0 skips it, MFQAT_FUZZ_SECONDS sets its length),
# and last the library suite (mx, convert, checkpoints, runtime, server, the thread pool's stress
# tests at 3 s each) under ThreadSanitizer (MFQAT_TEST_TSAN=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
cmake --preset release -DMFQAT_BUILD_TESTS=ON -DMFQAT_BUILD_BENCH=ON >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"
if [ "${MFQAT_TEST_FUZZ:-1}" != "0" ]; then
  # a short run of every libFuzzer target (clang, ASan+UBSan); a crash fails the suite
  bash scripts/fuzz.sh "${MFQAT_FUZZ_SECONDS:-20}"
fi
if [ "${MFQAT_TEST_ASAN:-1}" != "0" ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  ctest --preset asan -j "$jobs"
fi
if [ "${MFQAT_TEST_TSAN:-1}" != "0" ]; then
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "$jobs"
  ctest --preset tsan -j "$jobs"
fi
