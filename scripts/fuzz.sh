#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for SECONDS (default 60).
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     targets: safetensors npy config request gguf rdata idx gzip tokenizer_json plan chat_template
# (all of them by default). What each target does with an input: fuzz/harness.h, fuzz/harness_data.h.
# Crashes are written to build/fuzz/crashes/; a crash makes the script fail. Found crashes should
# become regression inputs in fuzz/regressions/ (replayed by the unit tests).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=${*:-safetensors npy config request gguf rdata idx gzip tokenizer_json plan chat_template}
bash scripts/setup.sh
CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMFQAT_FUZZ=ON \
  -DMFQAT_BUILD_TESTS=OFF -DMFQAT_BUILD_BENCH=OFF >/dev/null
cmake --build build/fuzz -j "$(nproc)" --target $(for t in $TARGETS; do echo -n "fuzz_$t "; done)
mkdir -p build/fuzz/crashes
for t in $TARGETS; do
  work=build/fuzz/corpus_$t
  mkdir -p "$work"
  echo "fuzz_$t: ${SECS}s"
  build/fuzz/fuzz/fuzz_$t "$work" fuzz/corpus/$t -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 \
    -artifact_prefix=build/fuzz/crashes/$t- -print_final_stats=1 2>&1 | tail -n 12
done
