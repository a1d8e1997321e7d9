#!/usr/bin/env bash
# scripts/study.sh at CI size (tiny models, a few steps, synthetic data, two seeds, the integer
# family with two trained formats and one unseen one): every job runs, the report has every
# table cell finite and the three plots per task, and a rerun does no work (resumable).
set -euo pipefail
BIN=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 "$ROOT/tests/synthetic_data.py" "$T/data"
echo '{"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq": 32}' > "$T/lm.json"
echo '{"model": "mlp", "hidden": [32]}' > "$T/mlp.json"
export BIN OUT="$T/out" DOCS="$T/docs" DATA="$T/data" SEEDS="0 1" FAMILIES=int STRATEGIES="joint cycle" \
  INT_TRAIN=mxint4,mxint8 INT_EVAL=mxint8,mxint4,mxint3 PRE_STEPS=30 QAT_STEPS=3 MLP_STEPS=30 MLP_QAT_STEPS=3 \
  EVAL_BATCHES=2 LM_INIT= LM_CONFIG="$T/lm.json" MLP_CONFIG="$T/mlp.json" LM_SEQ=32 LM_BATCH=8
bash "$ROOT/scripts/study.sh" > "$T/log.txt" 2>&1 || { cat "$T/log.txt"; exit 1; }
tail -3 "$T/log.txt"
jobs1=$(wc -l < "$T/out/times.jsonl")
for t in lm mlp; do
  for k in metric gap anchor; do
    f="$T/docs/study_${t}_$k.png"
    [ "$(head -c 4 "$f" | tail -c 3)" = "PNG" ] || { echo "no plot $f"; exit 1; }
  done
done
python3 - "$T/docs/results.md" <<'PY'
import re, sys
md = open(sys.argv[1]).read()
for want in ["## Byte-level LM", "## MLP classifier", "**INT family, bits/byte**", "**INT family, accuracy %**",
             "| mxint3 † |", "MF joint − SF", "Slice-and-Scale cost (MF)", "Wall time of the study", "Machine:",
             "**Next-word accuracy, %", "**Out-of-domain text, bits/byte"]:
    assert want in md, want
rows = [l for l in md.splitlines() if l.startswith("| mxint")]
assert len(rows) >= 12, rows
for l in rows:
    assert "nan" not in l.lower() and "inf" not in l.lower(), l
# every cell of the main tables is filled (the report itself fails on a missing required cell)
main = [l for l in rows if l.count("|") > 8]
assert main and all("–" not in l for l in main), main
assert re.search(r"± \d", md), "no seed spread"
PY
# resumable: a rerun skips every job
bash "$ROOT/scripts/study.sh" > "$T/log2.txt" 2>&1 || { cat "$T/log2.txt"; exit 1; }
[ "$(wc -l < "$T/out/times.jsonl")" -eq "$jobs1" ] || { echo "rerun redid jobs"; exit 1; }
echo "study smoke: ok"
