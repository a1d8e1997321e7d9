#!/usr/bin/env bash
# The serving measurements of docs/runtime.md ("Measured under load"), on the synthetic
# 2048-wide, 16-layer model, 2 threads; run on an otherwise idle machine (~14 min):
#   1. the MXINT8 anchor: fixed mxint8 and "auto" (mxint8 > mxint4 under a 60 ms p90 target),
#      1, 4, 16 and 64 streaming clients          -> bench/results/serve_load_large.json
#   2. an MXFP8 anchor: fixed mxfp4_e2m1, the same loads -> bench/results/serve_load_large_fp4.json
#   3. the SLO prompt budget A/B: fixed mxint8 under the target at 4 clients with the adaptive
#      budget (floor 16) and without it (floor = the 256-token chunk), interleaved, 2 rounds
#                                                     -> bench/results/serve_prefill_budget_ab.json
set -euo pipefail
cd "$(dirname "$0")/.."
SL=${SL:-build/release/bench/serve_load}
OUT=${OUT:-bench/results}
common=(--synthetic large --seconds 30 --tokens 128)
"$SL" "${common[@]}" --clients 1,4,16,64 --formats mxint8,auto --slo-ms 60 --auto mxint8,mxint4 --json "$OUT/serve_load_large.json"
"$SL" "${common[@]}" --anchor mxfp8_e4m3 --clients 1,4,16,64 --formats mxfp4_e2m1 --json "$OUT/serve_load_large_fp4.json"
tmp=$(mktemp -d)
for r in 1 2; do
  for m in 256 16; do
    "$SL" "${common[@]}" --clients 4 --formats mxint8 --slo-ms 60 --auto mxint8,mxint4 --min-prefill-chunk $m --json "$tmp/ab_${m}_$r.json"
  done
done
/usr/bin/python3 - "$tmp" "$OUT/serve_prefill_budget_ab.json" <<'PY'
import glob, json, os, sys
rows = []
for p in sorted(glob.glob(os.path.join(sys.argv[1], "ab_*.json"))):
    m, r = os.path.basename(p)[3:-5].split("_")
    for row in json.load(open(p)):
        row.update(round=int(r))
        rows.append(row)
json.dump(rows, open(sys.argv[2], "w"), indent=2)
PY
rm -rf "$tmp"
