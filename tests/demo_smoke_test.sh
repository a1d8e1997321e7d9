#!/usr/bin/env bash
# `mfqat demo` end to end at CI size (tiny model, a few steps, synthetic data): every stage runs,
# the table is complete and finite, a second run reuses the cached stages, a changed recipe
# redoes only what depends on it, and a bad format fails before any work.
set -euo pipefail
BIN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 "$(dirname "$0")/synthetic_data.py" "$T/data"
echo '{"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq": 64}' > "$T/tiny.json"
args=(--out "$T/demo" --data-dir "$T/data" --pretrain --config "$T/tiny.json" --pretrain-steps 30 --pretrain-lr 1e-2 --qat-steps 3
      --seq 32 --batch 8 --ppl-windows 2 --tokens 8 --sample-bytes 20)
"$BIN" --threads 2 demo "${args[@]}" --json "$T/table.jsonl" > "$T/first.txt" 2>/dev/null
cat "$T/first.txt"
python3 - "$T/table.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
fmts = [(r["family"], r["format"]) for r in rows]
want = [("-", "fp32")] + [("int", f"mxint{b}") for b in range(8, 1, -1)] + \
       [("fp", f) for f in ["mxfp8_e4m3", "mxfp7_e3m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp5_e2m2", "mxfp4_e2m1"]]
assert fmts == want, fmts
for r in rows:
    for k in ("bits_per_weight", "weight_mib", "perplexity", "bits_per_byte", "decode_tokens_per_s"):
        assert math.isfinite(r[k]) and r[k] > 0, r
    lo, hi = r["decode_tokens_per_s_range"]   # median of the interleaved rounds, inside their range
    assert 0 < lo <= r["decode_tokens_per_s"] <= hi, r
    assert 1 < r["perplexity"] < 256, r   # better than uniform over bytes after 30 steps
assert rows[1]["source"] == "the anchor itself" and rows[2]["source"] == "sliced from mxint8", rows[:3]
# fewer bits per weight, fewer weight bytes
ints = [r for r in rows if r["family"] == "int"]
assert all(a["weight_mib"] > b["weight_mib"] for a, b in zip(ints, ints[1:])), ints
PY
grep -q "\[mxint2    \] " "$T/first.txt"          # three samples
[ "$(grep -c '^  \[mx' "$T/first.txt")" -eq 3 ]
# second run: pretraining and both MF-QAT models come from the cache
"$BIN" --threads 2 demo "${args[@]}" > "$T/second.txt" 2>/dev/null
[ "$(grep -c 'reusing' "$T/second.txt")" -eq 3 ] || { cat "$T/second.txt"; exit 1; }
# a changed QAT recipe keeps the pretrained model and redoes the QAT stage
"$BIN" --threads 2 demo "${args[@]}" --qat-lr 3e-4 > "$T/third.txt" 2>/dev/null
grep -q "reusing $T/demo/pre.safetensors" "$T/third.txt"
[ "$(grep -c 'reusing' "$T/third.txt")" -eq 1 ] || { cat "$T/third.txt"; exit 1; }
# from a given base model (what the default does with the shipped one): no pretraining stage,
# MF-QAT redone (another base), and the base's identity is in the recipe
cp "$T/demo/pre.safetensors" "$T/base.safetensors"
base_args=(--out "$T/demo" --data-dir "$T/data" --base "$T/base.safetensors" --qat-steps 3 --seq 32 --batch 8 --ppl-windows 2 --tokens 8
           --sample-bytes 20 --decode-rounds 1)
"$BIN" --threads 2 demo "${base_args[@]}" > "$T/fourth.txt" 2>/dev/null
grep -q "fp32 base model: $T/base.safetensors" "$T/fourth.txt"
[ "$(grep -c 'reusing' "$T/fourth.txt")" -eq 0 ] || { cat "$T/fourth.txt"; exit 1; }
"$BIN" --threads 2 demo "${base_args[@]}" > "$T/fifth.txt" 2>/dev/null
[ "$(grep -c 'reusing' "$T/fifth.txt")" -eq 2 ] || { cat "$T/fifth.txt"; exit 1; }
# a missing base model, or a model shape without --pretrain: one line, before any work
if err=$("$BIN" demo --out "$T/never" --data-dir "$T/data" --base "$T/nope.safetensors" 2>&1); then echo "no error"; exit 1; fi
[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "base model $T/nope.safetensors not found" <<<"$err"
if err=$("$BIN" demo --out "$T/never" --data-dir "$T/data" --config "$T/tiny.json" 2>&1); then echo "no error"; exit 1; fi
[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "only with --pretrain" <<<"$err"
# the shipped base model is the one its recipe made (a corrupted or LFS-pointer file fails here)
(cd "$(dirname "$0")/../models/austen-base" && sha256sum --quiet -c SHA256SUMS)
# a bad format fails at once, with one line, before touching anything
if err=$("$BIN" demo --out "$T/never" --data-dir "$T/data" --samples mxint4,mxint9 2>&1); then echo "no error"; exit 1; fi
[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "unknown format 'mxint9'" <<<"$err"
[ ! -e "$T/never" ]
echo "demo smoke: ok"
