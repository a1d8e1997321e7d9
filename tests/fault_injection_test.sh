#!/usr/bin/env bash
# Fault injection on everything mfqat writes (no network, synthetic data):
#  1. SIGKILL at random moments of `mfqat export` and `mfqat convert` over an existing good file:
#     the path always holds either the previous good bytes or the complete new file. Then kills
#     aimed at the write itself (the moment the writer's temp file appears, plus up to 2 ms):
#     a kill counts as mid-write when the temp file was there at the kill and is left behind
#     (the rename never happened); the path must then hold the previous file, or nothing when
#     there was none. Retried until MID_KILLS such kills landed; fails if they never do.
#  2. SIGKILL at random moments of training (state saved every step): resuming after each kill
#     reaches the same checkpoint, byte for byte, as an uninterrupted run.
#  3. A full disk (RLIMIT_FSIZE with SIGXFSZ ignored: writes fail with EFBIG) during export,
#     convert and training: a one-line error naming the file, a non-zero exit, the previous file
#     (or state) intact, no temp file left behind.
# Knobs: KILLS (default 12) random kills per writer; MID_KILLS (default 4) kills that must land
# mid-write per writer, within MID_TRIES (default 40) aimed tries.
set -euo pipefail
BIN=$1
KILLS=${KILLS:-12}
MID_KILLS=${MID_KILLS:-4}
MID_TRIES=${MID_TRIES:-40}
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
# killer.py MODE ARG TARGET CMD...: runs CMD and SIGKILLs it ARG s after the start (MODE random),
# or the moment TARGET's temp file (TARGET.tmp.*) appears plus a random 0..ARG s (MODE temp).
# Prints "killed", or "finished" when CMD ended first.
cat > "$T/killer.py" <<'PY'
import os, random, signal, subprocess, sys, time
mode, arg, target, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
d, prefix = os.path.dirname(target), os.path.basename(target) + ".tmp."
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if mode == "random":
    time.sleep(arg)
else:
    while p.poll() is None and not any(n.startswith(prefix) for n in os.listdir(d)):
        pass
    if arg > 0:
        time.sleep(random.uniform(0, arg))
if p.poll() is None:
    os.kill(p.pid, signal.SIGKILL)
print("killed" if p.wait() == -signal.SIGKILL else "finished")
PY
# kill_writer NAME GOOD_OLD GOOD_NEW CMD...: CMD writes $T/NAME over GOOD_OLD's bytes; kill it at
# random moments, then aimed at the write, and check what the path holds after each kill
kill_writer() {
  local name=$1 old=$2 new=$3; shift 3
  local t0 t1 full nbytes
  t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
  full=$(python3 -c "print(max(0.02, ($t1 - $t0) / 1e9))")
  nbytes=$(stat -c %s "$new")
  local early=0 mid=0 partial=0 late=0 finished=0 tries=0 absent=0
  # one_kill MODE ARG HAD_OLD CMD...: one run killed as killer.py says, over the previous file
  # (HAD_OLD 1) or none (0); classifies where the kill landed and checks the path
  one_kill() {
    local mode=$1 arg=$2 had_old=$3 how size tmp; shift 3
    rm -f "$T/$name" "$T/$name".tmp.*
    if [ "$had_old" -eq 1 ]; then cp "$old" "$T/$name"; fi
    how=$(python3 "$T/killer.py" "$mode" "$arg" "$T/$name" "$@")
    tmp=$(find "$T" -maxdepth 1 -name "$name.tmp.*")
    if [ "$how" = finished ]; then
      [ -z "$tmp" ] && cmp -s "$T/$name" "$new" || { echo "$name: a run that ended by itself left a bad file"; exit 1; }
      finished=$((finished + 1))
    elif [ -n "$tmp" ]; then
      # killed between creating its temp file and the rename (a finished or failed writer removes
      # it): what it holds is what had been written at the kill, a prefix of the new file; the
      # path keeps the previous file, or nothing
      [ "$(wc -l <<<"$tmp")" -eq 1 ] || { echo "$name: several temp files: $tmp"; exit 1; }
      size=$(stat -c %s "$tmp")
      cmp -s -n "$size" "$tmp" "$new" || { echo "$name: the temp file is not a prefix of the new file"; exit 1; }
      if [ "$had_old" -eq 1 ]; then
        cmp -s "$T/$name" "$old" || { echo "$name: killed mid-write ($size of $nbytes bytes written) and the previous file is gone or changed"; exit 1; }
      else
        [ ! -e "$T/$name" ] || { echo "$name: killed mid-write ($size of $nbytes bytes written) and the path exists"; exit 1; }
        absent=$((absent + 1))
      fi
      mid=$((mid + 1))
      if [ "$size" -gt 0 ] && [ "$size" -lt "$nbytes" ]; then partial=$((partial + 1)); fi
    elif [ "$had_old" -eq 1 ] && cmp -s "$T/$name" "$old"; then early=$((early + 1))   # before the temp file
    elif cmp -s "$T/$name" "$new"; then late=$((late + 1))                              # after the rename
    elif [ "$had_old" -eq 0 ] && [ ! -e "$T/$name" ]; then early=$((early + 1))
    else echo "$name: corrupt after SIGKILL"; exit 1; fi
  }
  for _ in $(seq "$KILLS"); do one_kill random "$(rand_delay "$full")" 1 "$@"; done
  local random_mid=$mid
  # aimed kills: half of them at once (mostly while the bytes are written), half up to 2 ms
  # later (mostly in the fsync); in each half, one kill in two with no previous file at the path
  while [ "$mid" -lt $((random_mid + MID_KILLS)) ] && [ "$tries" -lt "$MID_TRIES" ]; do
    tries=$((tries + 1))
    if [ $((tries % 4)) -lt 2 ]; then one_kill temp 0 $((tries % 2)) "$@"; else one_kill temp 0.002 $((tries % 2)) "$@"; fi
  done
  rm -f "$T/$name".tmp.*   # what a killed writer cannot clean up: its temp file, never the target
  if [ "$mid" -lt $((random_mid + MID_KILLS)) ]; then
    echo "$name: only $((mid - random_mid)) of $MID_TRIES aimed kills landed mid-write (wanted $MID_KILLS): the atomic write was not tested"
    exit 1
  fi
  echo "$name: $KILLS random + $tries aimed kills: $early before the write, $mid mid-write ($partial partly written, $absent with no previous file), $late after the rename, $finished finished first; previous file (or no file) kept after every mid-write kill, corrupt 0"
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
