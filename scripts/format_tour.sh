#!/usr/bin/env bash
# A tour of the MX formats (no training): installs what is missing, builds, tours the formats on a sample tensor and
# slices an 8-bit anchor checkpoint to lower formats.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release -DMFQAT_BUILD_TESTS=OFF -DMFQAT_BUILD_BENCH=OFF >/dev/null
cmake --build --preset release -j "$(nproc)" --target mfqat
BIN=build/release/src/cli/mfqat
OUT=${MFQAT_OUT:-out/tour}
mkdir -p "$OUT"

echo; echo "== 1. The format registry"
$BIN formats --also mxfp5_e2m2 --also mxfp7_e3m3

echo; echo "== 2. One weight-like matrix (256x1024, outliers) in every format"
$BIN compare --formats all,mxfp5_e2m2,mxfp7_e3m3 --write-input "$OUT/sample.npy"

echo; echo "== 3. Fake-quantize the .npy file, three formats, three roundings"
for f in mxint8 mxfp6 mxfp4; do
  for r in even away stochastic; do
    $BIN quantize --format "$f" --rounding "$r" --seed 1 --input "$OUT/sample.npy" --output "$OUT/sample.$f.$r.npy" --stats
  done
done
echo; echo "== 4. An MXINT8 anchor checkpoint, sliced to MXINT4 and MXINT2 on the packed bits"
$BIN quantize --packed -f mxint8 -i "$OUT/sample.npy" -o "$OUT/anchor_int8.safetensors" --name blk.0.w --stats
$BIN convert "$OUT/anchor_int8.safetensors" --to mxint4 -o "$OUT/int4.safetensors"
$BIN convert "$OUT/anchor_int8.safetensors" --to mxint2 -o "$OUT/int2.safetensors"
$BIN inspect "$OUT/int4.safetensors"

echo; echo "== 5. The same for an MXFP8 (E4M3) anchor -> MXFP6 / MXFP4"
$BIN quantize --packed -f mxfp8_e4m3 -i "$OUT/sample.npy" -o "$OUT/anchor_fp8.safetensors" --name blk.0.w
$BIN convert "$OUT/anchor_fp8.safetensors" --to mxfp6_e2m3 -o "$OUT/fp6.safetensors"
$BIN convert "$OUT/anchor_fp8.safetensors" --to mxfp4 -o "$OUT/fp4.safetensors"

echo; echo "outputs in $OUT/"
