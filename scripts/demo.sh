#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install what is missing, build, then `mfqat demo`:
# prepare the Austen novels, start from the shipped base LM (models/austen-base), multi-format QAT for
# the integer and the FP family, export one 8-bit anchor per family, serve every format of each
# family from its anchor (perplexity and decode speed), generate samples at three formats, and
# print one table. A second run reuses the cached stages (out/demo/); `--fresh` redoes them.
# Extra arguments go to `mfqat demo` (see `mfqat demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target mfqat
exec build/release/src/cli/mfqat demo --out "${MFQAT_OUT:-out/demo}" --data-dir "${MFQAT_DATA:-data}" "$@"
