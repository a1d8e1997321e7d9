#!/usr/bin/env bash
# clang-tidy with the project's .clang-tidy on the project's own sources (src, tests, bench,
# fuzz), using the Release build's compile_commands.json. Findings are errors.
#   bash scripts/tidy.sh [FILE...]        (default: every .cpp; ~1 min per torch file on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-tidy >/dev/null || bash scripts/setup.sh
[ -e build/release/compile_commands.json ] || cmake --preset release >/dev/null
files=("$@")
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(git ls-files 'src/*.cpp' 'tests/*.cpp' 'bench/*.cpp' 'fuzz/*.cpp' | grep -v '^fuzz/')
printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p build/release --quiet
echo "tidy: ${#files[@]} files clean"
