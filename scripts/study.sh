#!/usr/bin/env bash
# The multi-format QAT study (issue 6): one command, resumable, writes docs/results.md and plots.
#
#   bash scripts/study.sh                 # OUT=out/study, DOCS=docs; ~1.5 h on 2 cores
#
# For each task (the byte-level LM on Austen: bits per byte; the Fashion-MNIST MLP: accuracy):
#   - fp32 pretraining (one model, seed 0), PTQ at every format, from the master and from its
#     8-bit anchors (Slice-and-Scale), and (LM) an fp32 fine-tune with the QAT recipe;
#   - SF-QAT: one model per trained format, int {2,4,6,8} and fp {e2m1, e2m3, e4m3};
#   - MF-QAT: one model per family and strategy (joint, cycle, random);
#   - every QAT model at every format of its family (trained or not), from the master and from
#     its anchor (mxint8 / mxfp8_e4m3), for each seed in SEEDS.
# Then scripts/study_report.py writes DOCS/results.md and DOCS/study_*.png (needs matplotlib:
# Debian's /usr/bin/python3 with python3-matplotlib).
#
# Finished outputs are skipped, so an interrupted study resumes where it stopped. Jobs run
# JOBS at a time with THREADS threads each (default: one job per core, one thread each: on
# this model size that is ~15 % faster than one job on all cores).
#
# Knobs (env): OUT DOCS DATA SEEDS ("0 1 2") JOBS THREADS PRE_STEPS (450) QAT_STEPS (20)
#   QAT_LR (1e-4) EVAL_BATCHES (8) MLP_STEPS (2000) MLP_QAT_STEPS (300) MLP_QAT_LR (5e-4)
#   TASKS ("lm mlp") FAMILIES ("int fp") STRATEGIES ("joint cycle random")
#   INT_TRAIN INT_EVAL FP_TRAIN FP_EVAL (format lists) LM_CONFIG MLP_CONFIG (model config JSON,
#   for a tiny smoke run) LM_SEQ LM_BATCH (QAT sequence length / batch) PYTHON
#   LM_INIT: the LM's fp32 starting point (default: the shipped base model,
#     models/austen-base/base.safetensors, issue 25; empty: pretrain PRE_STEPS here as before)
#   OOD_TEXT: an out-of-domain text every LM model is also scored on (default: the GPL-3 text
#     Debian ships; empty: none)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release/src/cli/mfqat}
OUT=${OUT:-out/study}
DOCS=${DOCS:-docs}
DATA=${DATA:-data}
SEEDS=${SEEDS:-0 1 2}
JOBS=${JOBS:-$(nproc)}
THREADS=${THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}
PRE_STEPS=${PRE_STEPS:-450}
QAT_STEPS=${QAT_STEPS:-20}
QAT_LR=${QAT_LR:-1e-4}
EVAL_BATCHES=${EVAL_BATCHES:-8}
MLP_STEPS=${MLP_STEPS:-2000}
MLP_QAT_STEPS=${MLP_QAT_STEPS:-300}
MLP_QAT_LR=${MLP_QAT_LR:-5e-4}
TASKS=${TASKS:-lm mlp}
FAMILIES=${FAMILIES:-int fp}
STRATEGIES=${STRATEGIES:-joint cycle random}
INT_TRAIN=${INT_TRAIN:-mxint2,mxint4,mxint6,mxint8}
INT_EVAL=${INT_EVAL:-mxint8,mxint7,mxint6,mxint5,mxint4,mxint3,mxint2}
FP_TRAIN=${FP_TRAIN:-mxfp4_e2m1,mxfp6_e2m3,mxfp8_e4m3}
FP_EVAL=${FP_EVAL:-mxfp8_e4m3,mxfp8_e5m2,mxfp7_e3m3,mxfp6_e3m2,mxfp6_e2m3,mxfp5_e2m2,mxfp4_e2m1}
PYTHON=${PYTHON:-/usr/bin/python3}
LM_INIT=${LM_INIT-models/austen-base/base.safetensors}
OOD_TEXT=${OOD_TEXT-/usr/share/common-licenses/GPL-3}
mkdir -p "$OUT"
rm -f "$OUT/FAILED"
# a private copy of the binary: rebuilding the project during a long study must not break it
cp "$BIN" "$OUT/.mfqat.tmp" && mv "$OUT/.mfqat.tmp" "$OUT/.mfqat" && BIN="$OUT/.mfqat"
[ -e "$DATA/austen/train.txt" ] && [ -e "$DATA/fashion-mnist/t10k-labels-idx1-ubyte.gz" ] || $BIN data prepare --data-dir "$DATA"
START=$SECONDS
# the wall time of every invocation (finished or not) goes into the report
record_wall() {
  echo "{\"seconds\": $((SECONDS - START)), \"jobs\": $JOBS, \"threads\": $THREADS, \"finished\": $1, \"date\": \"$(date -u +%FT%TZ)\"}" >> "$OUT/wall.jsonl"
}
trap 'record_wall false' EXIT

# --- a small job runner: submit OUTPUT CMD... runs CMD unless OUTPUT exists, JOBS at a time;
# a failed job leaves OUT/FAILED and its log, and the next barrier stops the study.
submit() {
  local out=$1; shift
  [ -e "$out" ] && return 0
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  mkdir -p "$(dirname "$out")"
  (
    t0=$SECONDS
    if "$@" > "$out.log" 2>&1; then
      echo "{\"output\": \"${out#"$OUT"/}\", \"seconds\": $((SECONDS - t0)), \"threads\": $THREADS}" >> "$OUT/times.jsonl"
      printf '[study %5ds] %s (%ds)\n' $((SECONDS - START)) "${out#"$OUT"/}" $((SECONDS - t0))
    else
      echo "[study] FAILED: $out (log: $out.log)"; tail -n 3 "$out.log"; touch "$OUT/FAILED"
    fi
  ) &
}
barrier() {
  while [ -n "$(jobs -rp)" ]; do wait -n || true; done
  wait
  if [ -e "$OUT/FAILED" ]; then echo "study: a job failed (see above); rerun to resume" >&2; exit 1; fi
}
mf() { echo "$BIN --threads $THREADS"; }
# eval_job OUTPUT MODEL FORMATS [ARGS...]: JSON lines of `mfqat eval`, written atomically
eval_job() {
  local out=$1 model=$2 formats=$3; shift 3
  submit "$out" sh -c "$(mf) eval '$model' --data-dir '$DATA' --formats '$formats' --json $* > '$out.tmp' && mv '$out.tmp' '$out'"
}
# anchor_job ANCHOR MASTER FORMAT: export the master's anchor
anchor_job() { submit "$1" $(mf) export "$2" --anchor "$3" -o "$1"; }

fam_train() { [ "$1" = int ] && echo "$INT_TRAIN" || echo "$FP_TRAIN"; }
fam_eval() { [ "$1" = int ] && echo "$INT_EVAL" || echo "$FP_EVAL"; }
fam_anchor() { [ "$1" = int ] && echo mxint8 || echo mxfp8_e4m3; }
# formats derivable from the anchor: mxfp8_e5m2 has more exponent range than an E4M3 anchor
fam_anchor_eval() { fam_eval "$1" | tr ',' '\n' | grep -vx mxfp8_e5m2 | paste -sd, -; }
task_args() {  # common training arguments per task
  if [ "$1" = lm ]; then
    echo "--data-dir $DATA ${LM_CONFIG:+--config $LM_CONFIG} ${LM_SEQ:+--seq $LM_SEQ} ${LM_BATCH:+--batch $LM_BATCH}"
  else
    echo "--data-dir $DATA --model mlp ${MLP_CONFIG:+--config $MLP_CONFIG}"
  fi
}
task_eval_args() { [ "$1" = lm ] && echo "--batches $EVAL_BATCHES ${LM_SEQ:+--seq $LM_SEQ}" || echo ""; }
qat_args() {  # qat_args TASK SEED
  local init="$OUT/$1/pre.safetensors"
  if [ "$1" = lm ]; then
    echo "--init $init --data-dir $DATA ${LM_SEQ:+--seq $LM_SEQ} ${LM_BATCH:+--batch $LM_BATCH} --steps $QAT_STEPS --lr $QAT_LR --warmup 10 --seed $2 --json"
  else
    echo "--init $init --data-dir $DATA --steps $MLP_QAT_STEPS --lr $MLP_QAT_LR --warmup 20 --seed $2 --json"
  fi
}

# --- 1. fp32 pretraining (one model per task, all cores)
for t in $TASKS; do
  if [ "$t" = lm ] && [ -n "$LM_INIT" ]; then
    # the shipped base model: copied, so that a changed file under models/ cannot mix two bases in one OUT
    [ -e "$OUT/lm/pre.safetensors" ] || { mkdir -p "$OUT/lm" && cp "$LM_INIT" "$OUT/lm/pre.tmp" && mv "$OUT/lm/pre.tmp" "$OUT/lm/pre.safetensors"; }
  elif [ "$t" = lm ]; then
    submit "$OUT/lm/pre.safetensors" "$BIN" train $(task_args lm) -o "$OUT/lm/pre.safetensors" --steps "$PRE_STEPS" --warmup 30 --json
  else
    submit "$OUT/mlp/pre.safetensors" "$BIN" train $(task_args mlp) -o "$OUT/mlp/pre.safetensors" --steps "$MLP_STEPS" --lr 2e-3 --warmup 50 --json
  fi
  barrier
done

# --- 2. QAT models (longest first), the fp32 fine-tune baseline, PTQ anchors
for t in $TASKS; do
  for s in $SEEDS; do
    d="$OUT/$t/s$s"
    for fam in $FAMILIES; do
      for st in $STRATEGIES; do
        submit "$d/mf_${fam}_$st.safetensors" $(mf) train $(qat_args "$t" "$s") -o "$d/mf_${fam}_$st.safetensors" --mode mf --formats "$(fam_train "$fam")" --strategy "$st"
      done
    done
    for fam in $FAMILIES; do
      for f in $(fam_train "$fam" | tr ',' ' '); do
        submit "$d/sf_$f.safetensors" $(mf) train $(qat_args "$t" "$s") -o "$d/sf_$f.safetensors" --mode sf --format "$f"
      done
    done
    if [ "$t" = lm ]; then
      submit "$d/ft_fp32.safetensors" $(mf) train $(qat_args "$t" "$s") -o "$d/ft_fp32.safetensors" --mode fp32 --train-sequences 128
    fi
  done
  for fam in $FAMILIES; do anchor_job "$OUT/$t/pre.$fam.anchor.safetensors" "$OUT/$t/pre.safetensors" "$(fam_anchor "$fam")"; done
done
barrier

# --- 3. anchors of every QAT model
for t in $TASKS; do
  for s in $SEEDS; do
    d="$OUT/$t/s$s"
    for fam in $FAMILIES; do
      for m in $(for st in $STRATEGIES; do echo "mf_${fam}_$st"; done) $(fam_train "$fam" | tr ',' '\n' | sed 's/^/sf_/'); do
        anchor_job "$d/$m.anchor.safetensors" "$d/$m.safetensors" "$(fam_anchor "$fam")"
      done
    done
  done
done
barrier

# --- 4. evaluation: every model at every format of its family, from the master and the anchor
all_eval=fp32
for fam in $FAMILIES; do all_eval="$all_eval,$(fam_eval "$fam")"; done
for t in $TASKS; do
  ea=$(task_eval_args "$t")
  for s in $SEEDS; do
    d="$OUT/$t/s$s"
    for fam in $FAMILIES; do
      for m in $(for st in $STRATEGIES; do echo "mf_${fam}_$st"; done) $(fam_train "$fam" | tr ',' '\n' | sed 's/^/sf_/'); do
        eval_job "$d/eval.$m.master.jsonl" "$d/$m.safetensors" "$(fam_eval "$fam")" $ea
        eval_job "$d/eval.$m.anchor.jsonl" "$d/$m.anchor.safetensors" "$(fam_anchor_eval "$fam")" $ea
      done
    done
    if [ "$t" = lm ]; then eval_job "$d/eval.ft_fp32.master.jsonl" "$d/ft_fp32.safetensors" "$all_eval" $ea; fi
    if [ "$t" = lm ] && [ -n "$OOD_TEXT" ]; then  # off the training distribution: MF joint and SF, from the master
      for fam in $FAMILIES; do
        for m in "mf_${fam}_joint" $(fam_train "$fam" | tr ',' '\n' | sed 's/^/sf_/'); do
          eval_job "$d/eval.$m.ood.jsonl" "$d/$m.safetensors" "$(fam_eval "$fam")" --text "$OOD_TEXT" --batches 0 ${LM_SEQ:+--seq $LM_SEQ}
        done
      done
    fi
  done
  eval_job "$OUT/$t/eval.pre.master.jsonl" "$OUT/$t/pre.safetensors" "$all_eval" $ea
  if [ "$t" = lm ] && [ -n "$OOD_TEXT" ]; then
    eval_job "$OUT/$t/eval.pre.ood.jsonl" "$OUT/$t/pre.safetensors" "$all_eval" --text "$OOD_TEXT" --batches 0 ${LM_SEQ:+--seq $LM_SEQ}
  fi
  for fam in $FAMILIES; do
    eval_job "$OUT/$t/eval.pre.$fam.anchor.jsonl" "$OUT/$t/pre.$fam.anchor.safetensors" "$(fam_anchor_eval "$fam")" $ea
  done
done
barrier

echo "study: all jobs done in $((SECONDS - START)) s (this run)"
trap - EXIT
record_wall true
"$PYTHON" scripts/study_report.py "$OUT" "$DOCS"
