#!/usr/bin/env bash
# clang-tidy with the project's .clang-tidy on the project's own sources (src, tests, bench,
# fuzz), using the Release build's compile_commands.json. Findings are errors.
#   bash scripts/tidy.sh [FILE...]        (default: every torch-free .cpp; ~7 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-tidy >/dev/null || bash scripts/setup.sh
[ -e build/release/compile_commands.json ] || cmake --preset release >/dev/null
files=("$@")
# Files that include libtorch are left out: clang 14 cannot parse libtorch 1.13's headers with
# libstdc++ 12 (c10::IValue is incomplete inside std::vector), so clang-tidy would report only that.
# The default list: tracked and new (not ignored) files that exist in the work tree, so that a
# file moved or added before its commit is checked and a deleted one is not.
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(git ls-files --cached --others --exclude-standard 'src/*.cpp' 'tests/*.cpp' 'bench/*.cpp' |
  sort -u | while read -r f; do [ -e "$f" ] && printf '%s\n' "$f"; done |
  xargs grep -L -E '#include [<"](torch/|mfqat/train/(trainer|model|quant_linear|dist)\.h)')
printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p build/release --quiet
echo "tidy: ${#files[@]} files clean"
