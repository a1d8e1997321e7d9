#!/usr/bin/env bash
# `mfqat data prepare` on the real Debian package: six novels with their known line counts,
# Persuasion held out whole, and a second run served from the cache. The data dir is given
# relative to the working directory, as the README's default `data` is.
set -euo pipefail
BIN=$(realpath "$1")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
out=$("$BIN" data prepare --data-dir rel/data --only austen 2>/dev/null)
T=$T/rel/data
echo "$out"
for want in "emma                16235" "mansfieldpark       15349" "northangerabbey      7856" \
            "persuasion           8328" "prideprejudice      13030" "sensesensibility    12624"; do
  grep -q "$want lines" <<<"$out" || { echo "missing: $want"; exit 1; }
done
head -1 "$T/austen/test.txt" | grep -q "^Persuasion" || { echo "test split is not Persuasion"; exit 1; }
[ "$(wc -c <"$T/austen/train.txt")" -gt 3000000 ] || { echo "train split too small"; exit 1; }
"$BIN" data prepare --data-dir "$T" --only austen 2>/dev/null | grep -q "already prepared" || { echo "cache not used"; exit 1; }
