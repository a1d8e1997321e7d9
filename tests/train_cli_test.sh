#!/usr/bin/env bash
# `mfqat train` end to end on a tiny model and a small synthetic text (no network): the loss
# falls, every mode and strategy runs, the same seed gives the same checkpoint bytes, bad input
# gives one-line errors.
set -euo pipefail
BIN=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/data/austen"
python3 - "$T/data/austen" <<'PY'
import random, sys
random.seed(1)
words = "the of and to a in that it was her she he you not be his as with had for but my at".split()
def text(n):
    return "\n".join(" ".join(random.choice(words) for _ in range(12)) + "." for _ in range(n)) + "\n"
open(sys.argv[1] + "/train.txt", "w").write(text(3000))
open(sys.argv[1] + "/valid.txt", "w").write(text(200))
PY
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
[ ! -e "$T/x.safetensors" ] && [ ! -e "$T/never.safetensors" ]
echo "train CLI: ok"
