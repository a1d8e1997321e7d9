#!/usr/bin/env bash
# A file written by mfqat is read by an independent reader (scripts/st_read.py, Python stdlib):
# for several formats, its dequantized values equal `mfqat dequantize` bit for bit.
set -euo pipefail
BIN=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$(command -v /usr/bin/python3 || command -v python3)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" compare --formats mxint8 --rows 5 --cols 77 --write-input "$T/w.npy" >/dev/null
for f in mxint8 mxint3 mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2 mxfp4 mxfp5_e2m2; do
  "$BIN" quantize --packed -f "$f" -i "$T/w.npy" -o "$T/$f.safetensors"
  "$BIN" dequantize "$T/$f.safetensors" -o "$T/$f.npy"
  "$PY" "$ROOT/scripts/st_read.py" "$T/$f.safetensors" --check "$T/$f.npy"
done
# and a sliced file
"$BIN" convert "$T/mxfp8_e4m3.safetensors" --to mxfp4 -o "$T/s.safetensors" >/dev/null
"$BIN" dequantize "$T/s.safetensors" -o "$T/s.npy"
"$PY" "$ROOT/scripts/st_read.py" "$T/s.safetensors" --check "$T/s.npy"
