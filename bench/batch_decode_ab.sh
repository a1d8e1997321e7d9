#!/usr/bin/env bash
# Batched decode steps (continuous batching's step: N sessions advance one token together) with
# the int8 GEMM on weights repacked once at load against packing per call (--no-repack), on the
# synthetic large model (2048 wide, 16 layers), 2 threads, interleaved per round. Run on an
# otherwise idle machine (~6 min):
#   bash bench/batch_decode_ab.sh   -> bench/results/batch_decode_ab.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release/src/cli/mfqat}
OUT=${OUT:-bench/results/batch_decode_ab.jsonl}
: >"$OUT"
for round in 1 2; do
  for n in 2 4 8 16; do
    for mode in repacked per-call; do
      flag=""
      [ "$mode" = per-call ] && flag="--no-repack"
      "$B" --threads 2 bench --synthetic large --anchor mxint8,mxfp8_e4m3 --formats mxint8,mxfp4 --prompt 32 --tokens 16 --batch "$n" $flag --json |
        /usr/bin/python3 -c "
import json, sys
for line in sys.stdin:
    if line.startswith('{'):
        j = json.loads(line); j.update(mode='$mode', round=$round); print(json.dumps(j))" >>"$OUT"
    done
  done
done
