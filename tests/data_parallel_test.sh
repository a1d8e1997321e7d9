#!/usr/bin/env bash
# Data-parallel training (c10d Gloo on loopback), end to end on a tiny model and synthetic data:
# 2 ranks reach the weights of 1 process with the same global batch and seed (every mode and
# strategy, an odd batch, the classifier), a state written by N ranks resumes on M, only rank 0
# writes, and failures (a killed rank, a missing peer, mismatched options, bad flags) end every
# rank with a one-line message instead of a hang.
set -euo pipefail
BIN=$1
HERE=$(dirname "$0")
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT
python3 "$HERE/synthetic_data.py" "$T/data"
echo '{"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq": 32}' > "$T/tiny.json"
common=(--data-dir "$T/data" --seq 32 --json)
"$BIN" --threads 1 train --config "$T/tiny.json" -o "$T/p.safetensors" --steps 30 --lr 1e-2 --warmup 5 --batch 8 "${common[@]}" >/dev/null
TOL=1e-5   # float summation order differs (per-rank sums, then the all-reduce); measured 3e-8..6e-7

same() {  # same NAME ARGS...: 1 process vs 2 ranks, same global batch and seed
  local name=$1; shift
  "$BIN" --threads 1 train --init "$T/p.safetensors" -o "$T/${name}_1.safetensors" "$@" "${common[@]}" >/dev/null
  "$BIN" --threads 2 train --init "$T/p.safetensors" -o "$T/${name}_2.safetensors" --nproc 2 "$@" "${common[@]}" >/dev/null
  echo -n "$name: 1 vs 2 ranks: "
  python3 "$HERE/st_maxdiff.py" "$T/${name}_1.safetensors" "$T/${name}_2.safetensors" "$TOL"
}
same fp32 --steps 6 --batch 8
same sf --mode sf --format mxint4 --steps 6 --batch 8
for s in joint cycle random; do
  same "mf_$s" --mode mf --formats mxint2,mxint4,mxint8 --strategy "$s" --steps 6 --batch 8
done
same odd_batch --mode mf --formats mxfp4_e2m1,mxfp8_e4m3 --steps 6 --batch 7   # shares 4/7 and 3/7
"$BIN" --threads 1 train --model mlp -o "$T/mlp_1.safetensors" --steps 8 --batch 64 --data-dir "$T/data" --json >/dev/null
"$BIN" --threads 2 train --model mlp -o "$T/mlp_2.safetensors" --steps 8 --batch 64 --data-dir "$T/data" --nproc 2 --json >/dev/null
echo -n "mlp: 1 vs 2 ranks: "; python3 "$HERE/st_maxdiff.py" "$T/mlp_1.safetensors" "$T/mlp_2.safetensors" "$TOL"

# only rank 0 writes: one checkpoint, one state, one metrics line per step
ls "$T"/mf_random_2.safetensors* | sort > "$T/written"
printf '%s\n' "$T/mf_random_2.safetensors" "$T/mf_random_2.safetensors.state" | cmp - "$T/written"
"$BIN" --threads 2 train --init "$T/p.safetensors" -o "$T/m.safetensors" --steps 5 --batch 8 --metrics "$T/m.jsonl" --nproc 2 "${common[@]}" >/dev/null
[ "$(wc -l < "$T/m.jsonl")" -eq 5 ]

# a state written by 2 ranks resumes on 1, and one written by 1 resumes on 2
rs=(--init "$T/p.safetensors" --mode mf --formats mxint2,mxint4,mxint8 --strategy random --steps 12 --batch 8 "${common[@]}")
"$BIN" --threads 1 train "${rs[@]}" -o "$T/full.safetensors" >/dev/null
if "$BIN" --threads 2 train "${rs[@]}" -o "$T/a.safetensors" --nproc 2 --stop-after 5 >/dev/null 2>&1; then echo "--stop-after did not stop"; exit 1; fi
[ ! -e "$T/a.safetensors" ]
"$BIN" --threads 1 train "${rs[@]}" -o "$T/a.safetensors" --resume >/dev/null
echo -n "2 ranks -> resumed on 1: "; python3 "$HERE/st_maxdiff.py" "$T/full.safetensors" "$T/a.safetensors" "$TOL"
if "$BIN" --threads 1 train "${rs[@]}" -o "$T/b.safetensors" --stop-after 5 >/dev/null 2>&1; then echo "--stop-after did not stop"; exit 1; fi
"$BIN" --threads 2 train "${rs[@]}" -o "$T/b.safetensors" --resume --nproc 2 >/dev/null
echo -n "1 rank -> resumed on 2: "; python3 "$HERE/st_maxdiff.py" "$T/full.safetensors" "$T/b.safetensors" "$TOL"

one_line() {  # one_line PATTERN OUTPUT: one line (glog noise would break it), matching
  [ "$(wc -l <<<"$2")" -eq 1 ] && grep -q -- "$1" <<<"$2" || { echo "wanted one line matching '$1', got: $2"; exit 1; }
}
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
long=(--init "$T/p.safetensors" --steps 1000000 --batch 8 --data-dir "$T/data" --seq 32)
# a rank killed mid-run: the other reports the lost peer and exits, no hang, nothing written
port=$(free_port)
started() {  # started FILE: wait (up to 120 s: slow under ASan) until rank 0 logged its first steps
  for _ in $(seq 1200); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "training did not start within 120 s"; exit 1
}
# (killed only once training runs: a rank that dies before the rendezvous leaves the others
# waiting for it until --dist-timeout, which the next section tests)
"$BIN" --threads 1 train "${long[@]}" -o "$T/k.safetensors" --save-every 0 --metrics "$T/k.jsonl" --world-size 2 --rank 0 --master "127.0.0.1:$port" 2>"$T/k0.err" >/dev/null &
r0=$!
"$BIN" --threads 1 train "${long[@]}" -o "$T/k.safetensors" --save-every 0 --world-size 2 --rank 1 --master "127.0.0.1:$port" 2>/dev/null >/dev/null &
r1=$!
started "$T/k.jsonl"
kill -9 "$r1"
for _ in $(seq 300); do kill -0 "$r0" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$r0" 2>/dev/null; then echo "rank 0 still running 30 s after rank 1 was killed"; exit 1; fi
if wait "$r0"; then echo "rank 0 exited 0 after losing rank 1"; exit 1; fi
one_line "rank 0 of 2: the gradient all-reduce at step [0-9]* failed" "$(cat "$T/k0.err")"
echo "killed rank 1: $(cat "$T/k0.err")"
[ ! -e "$T/k.safetensors" ]
# the launcher: a rank killed ends the job with a message and no rank left behind
"$BIN" --threads 2 train "${long[@]}" -o "$T/l.safetensors" --metrics "$T/l.jsonl" --nproc 2 2>"$T/l.err" >/dev/null &
launcher=$!
started "$T/l.jsonl"
victim=$(pgrep -P "$launcher" | tail -1)
kill -9 "$victim"
for _ in $(seq 300); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$launcher" 2>/dev/null; then echo "launcher still running 30 s after a rank was killed"; exit 1; fi
if wait "$launcher"; then echo "launcher exited 0"; exit 1; fi
grep -q "rank 1 of 2 was killed by signal 9 (Killed); stopped the other ranks" "$T/l.err" || { cat "$T/l.err"; exit 1; }
if pgrep -f "$T/l.safetensors" >/dev/null; then echo "ranks left running"; exit 1; fi
echo "launcher: $(tail -1 "$T/l.err")"

# a peer that never comes: the rendezvous times out with one line, nothing written
port=$(free_port)
if err=$("$BIN" --threads 1 train "${long[@]}" -o "$T/t.safetensors" --world-size 2 --rank 1 --master "127.0.0.1:$port" --dist-timeout 2 2>&1 >/dev/null); then
  echo "rank 1 alone did not fail"; exit 1; fi
one_line "rank 1 of 2: rendezvous at 127.0.0.1:$port failed (timeout 2 s)" "$err"
if err=$("$BIN" --threads 1 train "${long[@]}" -o "$T/t.safetensors" --world-size 2 --rank 0 --master "127.0.0.1:$port" --dist-timeout 2 2>&1 >/dev/null); then
  echo "rank 0 alone did not fail"; exit 1; fi
one_line "rank 0 of 2: rendezvous at 127.0.0.1:$port failed (timeout 2 s)" "$err"
echo "no peer: $err"
[ ! -e "$T/t.safetensors" ] && [ ! -e "$T/t.safetensors.state" ]
# ranks started with other options stop before training
port=$(free_port)
"$BIN" --threads 1 train "${long[@]}" -o "$T/o.safetensors" --world-size 2 --rank 0 --master "127.0.0.1:$port" --seed 9 >/dev/null 2>&1 &
r0=$!
if err=$("$BIN" --threads 1 train "${long[@]}" -o "$T/o.safetensors" --world-size 2 --rank 1 --master "127.0.0.1:$port" --seed 10 2>&1 >/dev/null); then
  echo "mismatched --seed accepted"; exit 1; fi
wait "$r0" || true
one_line "rank 1: --seed is 10 here but 9 on rank 0" "$err"
echo "mismatch: $err"
# bad flags
for bad in "--world-size 2 --rank 2" "--world-size 2 --master nowhere" "--world-size 2 --master host:99999" "--nproc 2 --world-size 2"; do
  # shellcheck disable=SC2086
  if err=$("$BIN" --threads 1 train "${long[@]}" -o "$T/x.safetensors" $bad 2>&1 >/dev/null); then echo "accepted: $bad"; exit 1; fi
  [ "$(wc -l <<<"$err")" -eq 1 ] || { echo "not one line for $bad: $err"; exit 1; }
  echo "$bad: $err"
done
[ ! -e "$T/x.safetensors" ]
echo "data parallel: ok"
