#!/usr/bin/env bash
# Pareto evidence of bits budgets (docs/budget.md): for each model, the sensitivity of every
# linear (cached in bench/results/plan_sens_<name>.json) and the held-out loss of every uniform
# format and of the dp/greedy plans at six budgets (bench/results/plan_pareto_<name>.jsonl).
#   bash scripts/budget_pareto.sh                # the study's SF-QAT, MF-QAT (int, fp) anchors, seed 0
#   SCORE=fisher bash scripts/budget_pareto.sh   # the same with the first-order score
# ~10 min per model on 2 cores (sensitivity ~6 min, 16 held-out evaluations).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release/src/cli/mfqat}
STUDY=${STUDY:-out/study_base/lm/s0}
SCORE=${SCORE:-direct}
OUT=${OUT:-bench/results}
BUDGETS=${BUDGETS:-4.5,4.75,5,5.5,6,7}
INT=mxint8,mxint6,mxint5,mxint4
FP=mxfp8_e4m3,mxfp6_e2m3,mxfp6_e3m2,mxfp4_e2m1
MODELS=${MODELS:-"sf_int8:$STUDY/sf_mxint8.anchor.safetensors:$INT mf_int:$STUDY/mf_int_joint.anchor.safetensors:$INT mf_fp:$STUDY/mf_fp_joint.anchor.safetensors:$FP"}
for m in $MODELS; do
  IFS=: read -r name model formats <<<"$m"
  suffix=$name$([ "$SCORE" = direct ] || echo "_$SCORE")
  echo "== $name ($model, $formats, score $SCORE)"
  /usr/bin/time -f "%e s wall" "$B" plan "$model" --formats "$formats" --windows 128 --score "$SCORE" \
    --sensitivity "$OUT/plan_sens_$suffix.json" --pareto "$OUT/plan_pareto_$suffix.jsonl" --budgets "$BUDGETS" --eval-windows 400
done
