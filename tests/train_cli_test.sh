#!/usr/bin/env bash
# `mfqat train` end to end on a tiny model and a small synthetic text (no network): the loss
# falls, every mode and strategy runs, the same seed gives the same checkpoint bytes, bad input
# gives one-line errors.
set -euo pipefail
BIN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 "$(dirname "$0")/synthetic_data.py" "$T/data"
echo '{"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq": 32}' > "$T/tiny.json"
common=(--data-dir "$T/data" --seq 32 --batch 8 --json)
out=$("$BIN" train --config "$T/tiny.json" -o "$T/p.safetensors" --steps 60 --lr 1e-2 --warmup 5 "${common[@]}")
echo "$out"
python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d['last_loss'] < 0.7*d['first_loss'], d" "$out"
"$BIN" train --config "$T/tiny.json" -o "$T/p2.safetensors" --steps 60 --lr 1e-2 --warmup 5 "${common[@]}" >/dev/null
cmp "$T/p.safetensors" "$T/p2.safetensors"   # same seed and threads: same bytes
"$BIN" train --init "$T/p.safetensors" -o "$T/sf.safetensors" --mode sf --format mxint4 --steps 5 "${common[@]}" >/dev/null
for s in joint cycle random; do
  "$BIN" train --init "$T/p.safetensors" -o "$T/mf_$s.safetensors" --mode mf --formats mxint2,mxint4,mxint8 \
    --strategy "$s" --steps 6 --ste clipped "${common[@]}" >/dev/null
done
"$BIN" inspect "$T/mf_joint.safetensors" | grep -q '"strategy":"joint"'
# resume: 5 steps, an interruption, then the rest == 12 uninterrupted steps, byte for byte
# (mf random exercises the restored RNG, AdamW moments and the fixed fine-tune set)
rs=(--init "$T/p.safetensors" --mode mf --formats mxint2,mxint4,mxint8 --strategy random --steps 12 "${common[@]}")
"$BIN" train "${rs[@]}" -o "$T/full.safetensors" >/dev/null
if "$BIN" train "${rs[@]}" -o "$T/cut.safetensors" --stop-after 5 >/dev/null 2>&1; then echo "--stop-after did not stop"; exit 1; fi
[ ! -e "$T/cut.safetensors" ] && [ -e "$T/cut.safetensors.state" ]
"$BIN" train "${rs[@]}" -o "$T/cut.safetensors" --resume >/dev/null
cmp "$T/full.safetensors" "$T/cut.safetensors"
# killed after the last state save but before the checkpoint: resuming runs no step and writes
# the same checkpoint (its metadata once said 0 steps: found by the fault-injection test)
rm "$T/cut.safetensors"
"$BIN" train "${rs[@]}" -o "$T/cut.safetensors" --resume >/dev/null
cmp "$T/full.safetensors" "$T/cut.safetensors"
# export + eval: the anchor at its own format scores exactly what the master scores under
# fake-quant; a lower format derived inside eval scores exactly what `mfqat convert`'s file does.
"$BIN" export "$T/p.safetensors" --anchor mxint8 -o "$T/a8.safetensors" >/dev/null
"$BIN" inspect "$T/a8.safetensors" | grep -q 'metadata mfqat.anchor = mxint8'
ev=(--text "$T/data/austen/valid.txt" --batches 2 --batch 4 --json)
"$BIN" eval "$T/p.safetensors" --formats fp32,mxint8,mxint4 "${ev[@]}" > "$T/master.jsonl"
"$BIN" eval "$T/a8.safetensors" --formats int "${ev[@]}" > "$T/anchor.jsonl"
"$BIN" convert "$T/a8.safetensors" --to mxint4 -o "$T/a4.safetensors" >/dev/null
"$BIN" eval "$T/a4.safetensors" --formats mxint4 "${ev[@]}" > "$T/a4.jsonl"
python3 - "$T" <<'PY'
import json, math, sys
t = sys.argv[1]
rows = lambda f: {r["format"]: r for r in map(json.loads, open(f"{t}/{f}"))}
m, a, a4 = rows("master.jsonl"), rows("anchor.jsonl"), rows("a4.jsonl")
assert list(a) == ["mxint8", "mxint7", "mxint6", "mxint5", "mxint4", "mxint3", "mxint2"], list(a)
assert a["mxint8"]["loss"] == m["mxint8"]["loss"], (a["mxint8"], m["mxint8"])   # own format == fake-quant
assert a["mxint4"]["loss"] == a4["mxint4"]["loss"], (a["mxint4"], a4["mxint4"])  # slice in eval == convert
assert a["mxint4"]["source"] == "anchor mxint8->mxint4 (sliced)"
for r in list(m.values()) + list(a.values()):
    assert math.isfinite(r["loss"]) and abs(r["perplexity"] - math.exp(r["loss"])) < 1e-9 * r["perplexity"], r
assert m["fp32"]["loss"] < a["mxint2"]["loss"], (m["fp32"], a["mxint2"])
PY
# the classifier on the synthetic Fashion-MNIST-shaped set (class = which image quarter is bright)
"$BIN" train --model mlp --data-dir "$T/data" -o "$T/mlp.safetensors" --steps 20 --json >/dev/null
"$BIN" train --init "$T/mlp.safetensors" --data-dir "$T/data" -o "$T/mlp_mf.safetensors" --mode mf --formats mxfp4,mxfp8 --steps 5 --json >/dev/null
"$BIN" export "$T/mlp_mf.safetensors" --anchor mxfp8_e4m3 -o "$T/mlp_a.safetensors" >/dev/null
"$BIN" eval "$T/mlp_a.safetensors" --data-dir "$T/data" --formats fp --json > "$T/mlp.jsonl"
python3 - "$T/mlp.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows[0]["format"] == "mxfp8_e4m3" and rows[0]["units"] == 300, rows[0]
assert all(r["accuracy"] > 0.9 for r in rows if r["bits_per_weight"] >= 6), rows
PY
fail() {  # expect a one-line error containing $1
  local want=$1; shift
  if err=$("$BIN" "$@" 2>&1 >/dev/null); then echo "no error: $*"; exit 1; fi
  [ "$(wc -l <<<"$err")" -eq 1 ] || { echo "not one line: $err"; exit 1; }
  grep -q -- "$want" <<<"$err" || { echo "wanted '$want', got: $err"; exit 1; }
}
echo '{"dim": 30, "n_heads": 4}' > "$T/bad.json"
fail "does not divide" train --config "$T/bad.json" -o "$T/x.safetensors" "${common[@]}"
fail "mfqat data prepare" train --config "$T/tiny.json" -o "$T/x.safetensors" --data-dir "$T/none"
fail "mode mf needs --formats" train --init "$T/p.safetensors" -o "$T/x.safetensors" --mode mf "${common[@]}"
echo '{"dim": 64, "n_layers": 1, "n_heads": 2, "max_seq": 32}' > "$T/other.json"
fail "tensor 'tok_emb.weight'" train --config "$T/other.json" --init "$T/p.safetensors" -o "$T/x.safetensors" "${common[@]}"
fail "no training state" train "${rs[@]}" -o "$T/never.safetensors" --resume
fail "cannot derive mxfp4_e2m1 from the mxint8 anchor" eval "$T/a8.safetensors" --formats mxfp4 "${ev[@]}"
fail "an fp32 master, not an anchor" eval "$T/p.safetensors" --from anchor "${ev[@]}"
fail "already an anchor" export "$T/a8.safetensors" --anchor mxint4 -o "$T/x.safetensors"
fail "unknown format" export "$T/p.safetensors" --anchor mxint9 -o "$T/x.safetensors"
fail "--text is for language models" eval "$T/mlp_a.safetensors" --text "$T/data/austen/valid.txt"
fail "fashion-mnist/t10k-images-idx3-ubyte.gz: missing" eval "$T/mlp_a.safetensors" --data-dir "$T/none"
[ ! -e "$T/x.safetensors" ] && [ ! -e "$T/never.safetensors" ]
echo "train CLI: ok"
