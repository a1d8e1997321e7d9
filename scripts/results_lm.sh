#!/usr/bin/env bash
# Issue 4's first results on the default LM: fp32 pretraining, PTQ at every format, SF-QAT at
# mxint4 and mxfp4_e2m1, MF-QAT (joint) on {mxint2,4,6,8} and {mxfp4_e2m1, mxfp6_e2m3,
# mxfp8_e4m3}, each model evaluated at every format of its family (trained or not), MF models
# both from the master and from their anchor (Slice-and-Scale). Writes OUT/*.jsonl and prints
# the markdown table (scripts/results_table.py). Resumable: finished steps are skipped.
#
#   bash scripts/results_lm.sh            # OUT=out/results, ~25 min on 2 cores (+10 min pretraining)
# Knobs (env): OUT, DATA, PRE_STEPS (450), QAT_STEPS (20), QAT_LR (1e-4), EVAL_BATCHES (16)
# (docs/results.md also shows QAT_STEPS=100 QAT_LR=5e-4, which overfits the 128 sequences)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/src/cli/mfqat}
OUT=${OUT:-out/results}
DATA=${DATA:-data}
PRE_STEPS=${PRE_STEPS:-450}
QAT_STEPS=${QAT_STEPS:-20}
QAT_LR=${QAT_LR:-1e-4}
EVAL_BATCHES=${EVAL_BATCHES:-16}
INT=mxint8,mxint7,mxint6,mxint5,mxint4,mxint3,mxint2
FP=mxfp8_e4m3,mxfp8_e5m2,mxfp7_e3m3,mxfp6_e3m2,mxfp6_e2m3,mxfp5_e2m2,mxfp4_e2m1
mkdir -p "$OUT"
[ -e "$DATA/austen/train.txt" ] || $BIN data prepare --data-dir "$DATA"

run() {  # run OUTPUT CMD...: skip when OUTPUT exists; log the wall time
  local out=$1; shift
  [ -e "$out" ] && return 0
  local t0=$SECONDS
  "$@"
  echo "{\"output\": \"$out\", \"seconds\": $((SECONDS - t0))}" >> "$OUT/times.jsonl"
}
ev() {  # ev NAME MODEL FORMATS [--from X]
  local name=$1 model=$2 formats=$3; shift 3
  run "$OUT/eval.$name.jsonl" sh -c "$BIN eval '$model' --data-dir '$DATA' --formats '$formats' --batches $EVAL_BATCHES --json $* > '$OUT/eval.$name.jsonl.tmp' && mv '$OUT/eval.$name.jsonl.tmp' '$OUT/eval.$name.jsonl'"
}
qat=(--data-dir "$DATA" --steps "$QAT_STEPS" --lr "$QAT_LR" --warmup 10)

run "$OUT/pre.safetensors" $BIN train --data-dir "$DATA" -o "$OUT/pre.safetensors" --steps "$PRE_STEPS" --warmup 30 --metrics "$OUT/pre.metrics.jsonl"
# The same recipe without quantization: what fine-tuning on the 128 sequences does by itself.
run "$OUT/ft_fp32.safetensors" $BIN train --init "$OUT/pre.safetensors" -o "$OUT/ft_fp32.safetensors" --mode fp32 --train-sequences 128 "${qat[@]}"
run "$OUT/sf_mxint4.safetensors" $BIN train --init "$OUT/pre.safetensors" -o "$OUT/sf_mxint4.safetensors" --mode sf --format mxint4 "${qat[@]}"
run "$OUT/sf_mxfp4.safetensors" $BIN train --init "$OUT/pre.safetensors" -o "$OUT/sf_mxfp4.safetensors" --mode sf --format mxfp4_e2m1 "${qat[@]}"
run "$OUT/mf_int.safetensors" $BIN train --init "$OUT/pre.safetensors" -o "$OUT/mf_int.safetensors" --mode mf --formats mxint2,mxint4,mxint6,mxint8 --strategy joint "${qat[@]}"
run "$OUT/mf_fp.safetensors" $BIN train --init "$OUT/pre.safetensors" -o "$OUT/mf_fp.safetensors" --mode mf --formats mxfp4_e2m1,mxfp6_e2m3,mxfp8_e4m3 --strategy joint "${qat[@]}"
run "$OUT/mf_int.a8.safetensors" $BIN export "$OUT/mf_int.safetensors" --anchor mxint8 -o "$OUT/mf_int.a8.safetensors"
run "$OUT/mf_fp.a8.safetensors" $BIN export "$OUT/mf_fp.safetensors" --anchor mxfp8_e4m3 -o "$OUT/mf_fp.a8.safetensors"

ev pre "$OUT/pre.safetensors" "fp32,$INT,$FP"
ev ft_fp32 "$OUT/ft_fp32.safetensors" "fp32,$INT,$FP"
ev sf_mxint4 "$OUT/sf_mxint4.safetensors" "$INT"
ev sf_mxfp4 "$OUT/sf_mxfp4.safetensors" "$FP"
ev mf_int "$OUT/mf_int.safetensors" "$INT"
ev mf_fp "$OUT/mf_fp.safetensors" "$FP"
ev mf_int.anchor "$OUT/mf_int.a8.safetensors" int
ev mf_fp.anchor "$OUT/mf_fp.a8.safetensors" fp,mxfp7_e3m3,mxfp5_e2m2
python3 scripts/results_table.py "$OUT"
