#!/usr/bin/env bash
# Data-parallel step time on this machine: the default LM (seq 128, global batch 16) in fp32
# and in MF-QAT joint {mxint2,4,6,8}, as 1 process x 1 thread, 1 process x all threads, and
# N processes x 1 thread (c10d Gloo on loopback). Prints a markdown table; JSON lines in $OUT.
# Usage: scripts/dp_bench.sh [DATA_DIR] [NPROC]   (needs a Release build and prepared data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data}
N=${2:-$(nproc)}
BIN=build/release/src/cli/mfqat
OUT=${OUT:-$(mktemp -d)}
run() {  # run LABEL THREADS NPROC STEPS MODE_ARGS...
  local label=$1 threads=$2 np=$3 steps=$4; shift 4
  local extra=(); [ "$np" -gt 1 ] && extra=(--nproc "$np")
  "$BIN" --threads "$threads" train --data-dir "$DATA" -o "$OUT/dp.safetensors" --steps "$steps" --save-every 0 \
    --eval-batches 1 --json "$@" "${extra[@]}" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read())
d['label'] = '$label'; d['threads'] = $threads; d['nproc'] = $np
print(json.dumps(d))" >> "$OUT/dp.jsonl"
}
rm -f "$OUT/dp.jsonl"
for rep in 1 2; do
  for mode in fp32 mf; do
    if [ "$mode" = fp32 ]; then args=(); steps=12; else args=(--mode mf --formats mxint2,mxint4,mxint6,mxint8 --strategy joint); steps=4; fi
    run "$mode 1x1" 1 1 "$steps" "${args[@]}"
    run "$mode 1x$N" "$N" 1 "$steps" "${args[@]}"
    run "$mode ${N}x1" "$N" "$N" "$steps" "${args[@]}"
  done
done
python3 - "$OUT/dp.jsonl" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
best = collections.OrderedDict()
for r in rows:  # the faster of the repeats (the machine is shared and noisy)
    k = r["label"]
    if k not in best or r["tokens_per_s"] > best[k]["tokens_per_s"]:
        best[k] = r
print("| run | processes x threads | step time (ms) | tokens/s | all-reduce per step (ms) | vs 1 process x 1 thread |")
print("|---|---|---|---|---|---|")
for k, r in best.items():
    mode = k.split()[0]
    base = best[f"{mode} 1x1"]["tokens_per_s"]
    step = 1000 * r["seconds"] / r["steps"]
    comm = 1000 * r["comm_seconds"] / r["steps"]
    print(f"| {mode} | {r['nproc']} x {1 if r['nproc'] > 1 else r['threads']} | {step:.0f} | {r['tokens_per_s']:.0f} | {comm:.1f} | {r['tokens_per_s'] / base:.2f}x |")
PY
echo "raw: $OUT/dp.jsonl"
