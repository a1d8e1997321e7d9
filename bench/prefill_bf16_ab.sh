#!/usr/bin/env bash
# Prefill of the formats without integer codes (MXFP8 E4M3, MXFP6 E3M2) with the bf16 GEMM
# (default where the CPU has AVX512-BF16) against fp32 activations (--prefill-acts fp32), on the
# synthetic large model from an MXFP8 anchor, 2 threads, prompts of 128 and 400 tokens, the two
# settings alternating, 3 rounds each (interleaved within a run). Idle machine, ~5 min:
#   bash bench/prefill_bf16_ab.sh   -> bench/results/prefill_bf16_ab.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release/src/cli/mfqat}
OUT=${OUT:-bench/results/prefill_bf16_ab.jsonl}
: >"$OUT"
for prompt in 128 400; do
  for acts in int8 fp32; do
    "$B" --threads 2 bench --synthetic large --anchor mxfp8_e4m3 --formats mxfp8_e4m3,mxfp6_e3m2 --prompt "$prompt" --tokens 8 --rounds 3 \
      --prefill-acts "$acts" --json |
      /usr/bin/python3 -c "
import json, sys
for line in sys.stdin:
    if line.startswith('{'):
        j = json.loads(line); j.update(prompt=$prompt, prefill_acts='$acts'); print(json.dumps(j))" >>"$OUT"
  done
done
