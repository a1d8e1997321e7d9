#!/usr/bin/env bash
# Fault injection on everything mfqat writes (no network, synthetic data):
#  1. SIGKILL at random moments of `mfqat export` and `mfqat convert` over an existing good file:
#     the path always holds either the previous good bytes or the complete new file.
#  2. SIGKILL at random moments of training (state saved every step): resuming after each kill
#     reaches the same checkpoint, byte for byte, as an uninterrupted run.
#  3. A full disk (RLIMIT_FSIZE with SIGXFSZ ignored: writes fail with EFBIG) during export,
#     convert and training: a one-line error naming the file, a non-zero exit, the previous file
#     (or state) intact, no temp file left behind.
# Knobs: KILLS (default 12) random kills per writer.
set -euo pipefail
BIN=$1
KILLS=${KILLS:-12}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 "$(dirname "$0")/synthetic_data.py" "$T/data"
echo '{"dim": 128, "n_layers": 2, "n_heads": 2, "max_seq": 32}' > "$T/m.json"
common=(--data-dir "$T/data" --seq 32 --batch 4 --json)
"$BIN" --threads 1 train --config "$T/m.json" -o "$T/p.safetensors" --steps 3 "${common[@]}" >/dev/null
"$BIN" --threads 1 train --config "$T/m.json" --init "$T/p.safetensors" -o "$T/q.safetensors" --steps 1 --lr 1e-2 "${common[@]}" >/dev/null
"$BIN" export "$T/p.safetensors" --anchor mxint8 -o "$T/good_p.safetensors" >/dev/null
"$BIN" export "$T/q.safetensors" --anchor mxint8 -o "$T/good_q.safetensors" >/dev/null
cmp -s "$T/good_p.safetensors" "$T/good_q.safetensors" && { echo "the two anchors should differ"; exit 1; }
"$BIN" convert "$T/good_q.safetensors" --to mxint4 -o "$T/good_c.safetensors" >/dev/null

rand_delay() { python3 -c "import random; print(f'{random.uniform(0, $1):.3f}')"; }
# kill_writer NAME GOOD_OLD GOOD_NEW CMD...: CMD writes $T/NAME over GOOD_OLD's bytes; kill it at random
kill_writer() {
  local name=$1 old=$2 new=$3; shift 3
  local t0 t1 full
  t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
  full=$(python3 -c "print(max(0.02, ($t1 - $t0) / 1e9))")
  local killed=0 kept=0 replaced=0
  for _ in $(seq "$KILLS"); do
    cp "$old" "$T/$name"
    "$@" >/dev/null 2>&1 &
    local pid=$!
    sleep "$(rand_delay "$full")"
    kill -9 "$pid" 2>/dev/null && killed=$((killed + 1)) || true
    wait "$pid" 2>/dev/null || true
    if cmp -s "$T/$name" "$old"; then kept=$((kept + 1))
    elif cmp -s "$T/$name" "$new"; then replaced=$((replaced + 1))
    else echo "$name: corrupt after SIGKILL"; exit 1; fi
  done
  rm -f "$T/$name".tmp.*   # what a killed writer cannot clean up: its temp file, never the target
  echo "$name: $KILLS runs, $killed killed mid-way: previous file kept $kept, new file complete $replaced, corrupt 0"
}
kill_writer anchor.safetensors "$T/good_p.safetensors" "$T/good_q.safetensors" "$BIN" export "$T/q.safetensors" --anchor mxint8 -o "$T/anchor.safetensors"
kill_writer conv.safetensors "$T/good_p.safetensors" "$T/good_c.safetensors" "$BIN" convert "$T/good_q.safetensors" --to mxint4 -o "$T/conv.safetensors"

# 2. training killed at random moments and resumed == uninterrupted
tr=(--threads 1 train --init "$T/p.safetensors" --mode mf --formats mxint2,mxint4,mxint8 --strategy random --steps 16
    --save-every 1 "${common[@]}")
t0=$(date +%s%N); "$BIN" "${tr[@]}" -o "$T/full.safetensors" >/dev/null; t1=$(date +%s%N)
full=$(python3 -c "print(($t1 - $t0) / 1e9)")
kills=0
for attempt in $(seq 40); do
  [ -e "$T/cut.safetensors" ] && break
  resume=(); [ -e "$T/cut.safetensors.state" ] && resume=(--resume)
  "$BIN" "${tr[@]}" -o "$T/cut.safetensors" "${resume[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "$(rand_delay "$(python3 -c "print($full / 3)")")"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1)) || true
  wait "$pid" 2>/dev/null || true
done
if [ ! -e "$T/cut.safetensors" ]; then "$BIN" "${tr[@]}" -o "$T/cut.safetensors" --resume >/dev/null; fi
rm -f "$T"/cut.safetensors*.tmp.*   # a run killed while saving its state leaves its temp file, never a bad state
cmp "$T/full.safetensors" "$T/cut.safetensors"
echo "training: killed $kills times at random moments, resumed each time: final checkpoint identical to the uninterrupted run"

# 3. disk full: writes fail with EFBIG beyond 64 KiB
fail_full() {  # fail_full PATH_EXPECTED_IN_ERROR CMD...
  local want=$1; shift
  local err
  if err=$(bash -c 'trap "" XFSZ; ulimit -f 64; exec "$@"' _ "$@" 2>&1 >/dev/null); then echo "no error: $*"; exit 1; fi
  [ "$(wc -l <<<"$err")" -eq 1 ] || { echo "not one line: $err"; exit 1; }
  grep -q -- "$want" <<<"$err" || { echo "wanted '$want' in: $err"; exit 1; }
  echo "disk full: $err"
}
cp "$T/good_p.safetensors" "$T/anchor.safetensors"
fail_full "$T/anchor.safetensors" "$BIN" export "$T/q.safetensors" --anchor mxint8 -o "$T/anchor.safetensors"
cmp "$T/anchor.safetensors" "$T/good_p.safetensors"
cp "$T/good_p.safetensors" "$T/conv.safetensors"
fail_full "$T/conv.safetensors" "$BIN" convert "$T/good_q.safetensors" --to mxint4 -o "$T/conv.safetensors"
cmp "$T/conv.safetensors" "$T/good_p.safetensors"
# training whose state no longer fits: stops with an error, the last good state stays loadable
"$BIN" "${tr[@]}" -o "$T/df.safetensors" --stop-after 4 >/dev/null 2>&1 || true
cp "$T/df.safetensors.state" "$T/df.state.good"
fail_full "df.safetensors.state" "$BIN" "${tr[@]}" -o "$T/df.safetensors" --resume
cmp "$T/df.safetensors.state" "$T/df.state.good"
[ ! -e "$T/df.safetensors" ]
"$BIN" "${tr[@]}" -o "$T/df.safetensors" --resume >/dev/null
cmp "$T/df.safetensors" "$T/full.safetensors"
# 3b. read-only directory: a one-line error naming the file, the file there untouched, nothing
#     left; training refuses before its first step. Root ignores permissions, so as root the
#     commands run as nobody (setpriv) from a copy of the binary nobody can reach.
ro="$T/ro"
mkdir "$ro"
cp "$T/good_p.safetensors" "$ro/anchor.safetensors"
chmod 555 "$ro"
as=(); RB=$BIN
if [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$T"; cp "$BIN" "$T/mfqat_nobody"; RB="$T/mfqat_nobody"
  as=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
for cmd in "export $T/q.safetensors --anchor mxint8 -o $ro/anchor.safetensors" \
           "convert $T/good_q.safetensors --to mxint4 -o $ro/anchor.safetensors" \
           "train --init $T/p.safetensors -o $ro/anchor.safetensors --steps 1 ${common[*]}"; do
  # shellcheck disable=SC2086
  if err=$("${as[@]}" "$RB" --threads 1 $cmd 2>&1 >/dev/null); then echo "wrote into a read-only directory: $cmd"; exit 1; fi
  [ "$(wc -l <<<"$err")" -eq 1 ] || { echo "not one line: $err"; exit 1; }
  grep -q "$ro/anchor.safetensors.*cannot create temporary file in $ro: Permission denied" <<<"$err" || { echo "bad message: $err"; exit 1; }
  echo "read-only: ${cmd%% *}: $err"
done
cmp "$ro/anchor.safetensors" "$T/good_p.safetensors"
[ "$(ls "$ro")" = anchor.safetensors ]
chmod 755 "$ro"
# 4. numerical fault: a diverging run (absurd learning rate) stops at the first non-finite loss,
#    naming the tensor, writes no checkpoint, and its last good state resumes
div=(--threads 1 train --init "$T/p.safetensors" -o "$T/div.safetensors" --steps 30 --lr 1e4 --clip 1e30 --warmup 0 --save-every 1 "${common[@]}")
if err=$("$BIN" "${div[@]}" 2>&1 >/dev/null); then echo "diverging run did not stop"; exit 1; fi
[ "$(wc -l <<<"$err")" -eq 1 ] && grep -q "loss is not finite at step .* is not finite); last good state: $T/div.safetensors.state at step" <<<"$err" \
  || { echo "bad divergence message: $err"; exit 1; }
echo "divergence: $err"
[ ! -e "$T/div.safetensors" ]
k=$(sed 's/.* at step \([0-9]*\)$/\1/' <<<"$err")
div[8]=$k   # --steps K: resume the last good state, run no step, write its weights
"$BIN" "${div[@]}" --resume >/dev/null
"$BIN" export "$T/div.safetensors" --anchor mxint8 -o "$T/div_a.safetensors" >/dev/null   # every weight finite
if ls "$T"/*.tmp.* >/dev/null 2>&1; then echo "temp files left behind:"; ls "$T"/*.tmp.*; exit 1; fi
echo "fault injection: ok"
