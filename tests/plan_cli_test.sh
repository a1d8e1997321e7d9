#!/usr/bin/env bash
# `mfqat plan` end to end on a tiny model (synthetic data): a plan within its budget that the
# engine loads, the sensitivity cache reused, --pareto lines, and bad input refused with one
# line before anything is written.
set -euo pipefail
BIN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 "$(dirname "$0")/synthetic_data.py" "$T/data" > /dev/null
echo '{"dim": 32, "n_layers": 2, "n_heads": 2, "max_seq": 32}' > "$T/tiny.json"
"$BIN" --threads 2 train --config "$T/tiny.json" --data-dir "$T/data" --steps 20 --seq 32 --batch 8 -o "$T/m.safetensors" > /dev/null 2>&1
"$BIN" export "$T/m.safetensors" --anchor mxint8 -o "$T/a.safetensors" > /dev/null
args=("$T/a.safetensors" --formats mxint8,mxint6,mxint4,mxint2 --data-dir "$T/data" --windows 4 --sensitivity "$T/sens.json")
"$BIN" --threads 3 plan "${args[@]}" --budget 5 -o "$T/plan.json" > "$T/out1.txt" 2>/dev/null
grep -q "sensitivity: 14 linears x 4 formats" "$T/out1.txt"
python3 - "$T/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
assert p["mfqat"] == "plan" and p["reference"] == "mxint8" and p["solver"] == "dp", p
assert len(p["formats"]) == 14 and set(p["formats"].values()) <= {"mxint8", "mxint6", "mxint4", "mxint2"}, p
assert p["bits_per_weight"] <= 5.0 + 1e-9, p
PY
# generate and bench run the plan (bench: beside the uniform formats, same JSON)
"$BIN" generate "$T/a.safetensors" --plan "$T/plan.json" -p "ab" -n 5 --json | grep -q '"format":"plan:plan"'
# a budget planned at load from the cached sensitivity: the same plan as the file of that budget
"$BIN" generate "$T/a.safetensors" --budget 5 --sensitivity "$T/sens.json" -p "ab" -n 5 --json > "$T/gen_b.json"
grep -q '"format":"budget:5"' "$T/gen_b.json"
# eval: plan rows beside the formats; a plan of one format scores exactly as that format
python3 - "$T/plan.json" "$T/uni4.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
json.dump({"mfqat": "plan", "reference": "mxint8", "formats": {k: "mxint4" for k in p["formats"]}}, open(sys.argv[2], "w"))
PY
for m in a m; do  # the anchor (sliced per linear) and the master (quantized per linear)
  "$BIN" --threads 3 eval "$T/$m.safetensors" --formats mxint4 --plan "$T/uni4.json" --plan "$T/plan.json" --budget 5 --sensitivity "$T/sens.json" \
    --data-dir "$T/data" --batches 2 --batch 2 --json > "$T/eval_$m.jsonl"
  python3 - "$T/eval_$m.jsonl" <<'PY'
import json, sys
rows = {r["format"]: r for r in map(json.loads, open(sys.argv[1]))}
assert set(rows) == {"mxint4", "plan:uni4", "plan:plan", "budget:5"}, rows.keys()
assert rows["plan:uni4"]["loss"] == rows["mxint4"]["loss"], rows
assert rows["plan:plan"]["loss"] == rows["budget:5"]["loss"], rows
assert rows["plan:uni4"]["bits_per_weight"] == 4.25 and rows["plan:plan"]["bits_per_weight"] <= 5.0 + 1e-9, rows
PY
done
"$BIN" bench "$T/a.safetensors" --formats mxint8 --plan "$T/plan.json" --prompt 4 --tokens 4 --json > "$T/bench.jsonl"
grep -q '"format":"plan:plan"' "$T/bench.jsonl"
# the cached sensitivity is read, not measured again; a byte budget works the same way
"$BIN" plan "${args[@]}" --budget 5 -o "$T/plan2.json" --solver greedy > "$T/out2.txt" 2>/dev/null
grep -q "sensitivity: $T/sens.json" "$T/out2.txt"
"$BIN" plan "${args[@]}" --pareto "$T/pareto.jsonl" --budgets 4.5,6 --eval-windows 4 > /dev/null 2>&1
[ "$(wc -l < "$T/pareto.jsonl")" -eq 8 ]   # 4 uniform formats + 2 budgets x 2 solvers
# the first-order score: squared gradients, one backward per window; its own cache
"$BIN" --threads 3 plan "$T/a.safetensors" --formats mxint8,mxint6,mxint4,mxint2 --data-dir "$T/data" --windows 4 --score fisher \
  --sensitivity "$T/sensf.json" --budget 5 -o "$T/planf.json" > "$T/outf.txt" 2>/dev/null
grep -q "sensitivity (fisher): 14 linears x 4 formats" "$T/outf.txt"
python3 - "$T/sensf.json" "$T/planf.json" <<'PY'
import json, sys
s, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert s["score"] == "fisher" and len(s["layers"]) == 14, s.keys()
for l in s["layers"]:
    c = [o["cost"] for o in l["options"]]
    assert c[0] == 0 and all(x > 0 for x in c[1:]), l
assert p["bits_per_weight"] <= 5.0 + 1e-9, p
PY
# an imported Hugging Face model (Qwen3 layout, random weights, its own tokenizer): the text is
# scored in the tokenizer's ids, both scores, a plan that eval and generate run
/usr/bin/python3 - "$T/hf" <<PY
import sys; sys.path.insert(0, "$(dirname "$0")/hf"); import hf_models as h
h.write_model("qwen3", sys.argv[1]); h.write_tokenizer(sys.argv[1], 300)
PY
"$BIN" import "$T/hf" -o "$T/q.safetensors" > /dev/null
"$BIN" export "$T/q.safetensors" --anchor mxint8 -o "$T/q8.safetensors" > /dev/null
head -c 20000 "$T/data/austen/valid.txt" > "$T/calib.txt"
qargs=("$T/q8.safetensors" --formats mxint8,mxint6,mxint4 --calib "$T/calib.txt" --windows 4 --seq 32)
"$BIN" plan "${qargs[@]}" --budget 5 -o "$T/qplan.json" > "$T/q1.txt" 2>/dev/null
grep -q "sensitivity: 14 linears x 3 formats on 4 windows of 32 tokens" "$T/q1.txt"
"$BIN" plan "${qargs[@]}" --score fisher --budget 5 -o "$T/qplanf.json" > "$T/q2.txt" 2>/dev/null
grep -q "sensitivity (fisher): 14 linears x 3 formats from squared gradients on 4 windows of 32 tokens" "$T/q2.txt"
"$BIN" eval "$T/q8.safetensors" --text "$T/calib.txt" --ctx 32 --formats mxint4 --plan "$T/qplan.json" --json > "$T/qeval.jsonl"
grep -q '"format":"plan:qplan"' "$T/qeval.jsonl"
"$BIN" generate "$T/q8.safetensors" --plan "$T/qplanf.json" -p "It is" -n 4 --json | grep -q '"format":"plan:qplanf"'
# bad input: one line on stderr, non-zero, no file written
fail() {  # fail PATTERN ARGS...: the command must fail with one line matching PATTERN
  local pat=$1; shift
  if err=$("$BIN" plan "$@" 2>&1 >/dev/null); then echo "no error: $*"; exit 1; fi
  [ "$(wc -l <<<"$err")" -eq 1 ] && grep -q -- "$pat" <<<"$err" || { echo "unexpected: $err"; exit 1; }
}
fail "unknown format 'mxint9'" "$T/a.safetensors" --formats mxint8,mxint9 --data-dir "$T/data" --budget 5 -o "$T/never.json"
fail "below the least precise plan" "${args[@]}" --budget 2 -o "$T/never.json"
fail "unit must be" "${args[@]}" --budget 3TB -o "$T/never.json"
fail "go together" "${args[@]}" --budget 5
echo '{"mfqat": "sensitivity", "layers": []}' > "$T/bad.json"
fail "bad.json" "$T/a.safetensors" --formats mxint8,mxint4 --sensitivity "$T/bad.json" --budget 5 -o "$T/never.json"
[ ! -e "$T/never.json" ]
fail "above the reference mxint8" "${args[@]}" --budget 9 -o "$T/never.json"
fail "a direct sensitivity, not fisher" "${args[@]}" --score fisher --budget 5 -o "$T/never.json"
# plans and budgets where a model runs them: the same refusals, one line each
run_fail() {  # run_fail PATTERN SUBCOMMAND ARGS...
  local pat=$1; shift
  if err=$("$BIN" "$@" 2>&1 >/dev/null); then echo "no error: $*"; exit 1; fi
  [ "$(wc -l <<<"$err")" -eq 1 ] && grep -q -- "$pat" <<<"$err" || { echo "unexpected: $err"; exit 1; }
}
echo '{"dim": 64, "n_layers": 2, "n_heads": 2, "max_seq": 32}' > "$T/wide.json"
"$BIN" --threads 2 train --config "$T/wide.json" --data-dir "$T/data" --steps 2 --seq 32 --batch 2 -o "$T/w.safetensors" > /dev/null 2>&1
run_fail "made for another model" generate "$T/w.safetensors" --plan "$T/plan.json" -p ab -n 2
run_fail "made for another model" serve "$T/w.safetensors" --budget 5 --sensitivity "$T/sens.json" --port 0
run_fail "above the reference" eval "$T/a.safetensors" --budget 9 --sensitivity "$T/sens.json" --data-dir "$T/data"
run_fail "below the least precise plan" bench "$T/a.safetensors" --budget 2 --sensitivity "$T/sens.json" --prompt 4 --tokens 4
run_fail "needs --sensitivity" generate "$T/a.safetensors" --budget 5 -p ab -n 2
python3 - "$T/plan.json" "$T/fp.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["formats"][next(iter(p["formats"]))] = "mxfp4_e2m1"
json.dump(p, open(sys.argv[2], "w"))
PY
run_fail "cannot be derived from the mxint8 anchor" eval "$T/a.safetensors" --plan "$T/fp.json" --data-dir "$T/data"
echo "plan cli: ok"
