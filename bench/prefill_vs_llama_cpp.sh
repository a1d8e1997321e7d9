#!/usr/bin/env bash
# Prefill and decode of mfqat against llama.cpp on the same weights (issue 28): the synthetic
# large shape (2048 wide, 16 layers, 16 heads, FFN 5472, vocab 256, max_seq 2048) as one random
# fp32 master, exported as mfqat anchors and as GGUFs (MXFP4 from the FP8 anchor, Q8_0 from the
# INT8 anchor, F32 from the master; each GGUF read back bit-identical), then for every thread
# count and prompt length bench/llama_cpp_export_bench.py runs `mfqat bench` and llama.cpp
# (node-llama-cpp's prebuilt CPU build, scripts/npm_llama_cpp.sh) one after the other, per round,
# per format, and prints medians, ranges and same-round ratios. Keep the machine otherwise idle.
#
#   bash bench/prefill_vs_llama_cpp.sh [WORK_DIR] [MFQAT_BIN]      # ~25 minutes on 2 cores
#   (THREADS="2 1" PROMPTS="128 512 1536" ROUNDS=3 override the defaults)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-/tmp/mfqat-large}
BIN=${2:-$ROOT/build/release/src/cli/mfqat}
THREADS=${THREADS:-"2 1"}
PROMPTS=${PROMPTS:-"128 512 1536"}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$ROOT/bench/results/prefill_vs_llama_cpp.jsonl}
mkdir -p "$WORK"
if [ ! -f "$WORK/f32.gguf" ]; then
  /usr/bin/python3 "$ROOT/bench/make_large_master.py" "$WORK/master.safetensors"
  "$BIN" export "$WORK/master.safetensors" --anchor mxint8 -o "$WORK/a_int8.safetensors"
  "$BIN" export "$WORK/master.safetensors" --anchor mxfp8_e4m3 -o "$WORK/a_fp8.safetensors"
  "$BIN" export --to gguf --format mxfp4_e2m1 "$WORK/a_fp8.safetensors" -o "$WORK/mxfp4.gguf"
  "$BIN" export --to gguf --format mxint8 "$WORK/a_int8.safetensors" -o "$WORK/q8_0.gguf"
  "$BIN" export --to gguf --format fp32 "$WORK/master.safetensors" -o "$WORK/f32.gguf"
fi
for t in $THREADS; do
  for p in $PROMPTS; do
    /usr/bin/python3 "$ROOT/bench/llama_cpp_export_bench.py" "$BIN" \
      --case "mxfp4_e2m1:$WORK/a_fp8.safetensors:$WORK/mxfp4.gguf" \
      --case "mxint8:$WORK/a_int8.safetensors:$WORK/q8_0.gguf" \
      --case "fp32:$WORK/master.safetensors:$WORK/f32.gguf" \
      --threads "$t" --prompt "$p" --tokens 16 --rounds "$ROUNDS" --inner 1 --json "$OUT"
  done
done
