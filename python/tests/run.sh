#!/usr/bin/env bash
# CTest PythonPackage: pytest over the staged package (build/release/python) with Debian's python.
# Usage: run.sh PYTHON STAGED_PACKAGE_DIR MFQAT_BINARY. Exits 77 (CTest SKIP) when something the
# package needs is missing, naming it.
set -uo pipefail
py=$1 stage=$2 bin=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }
[ -x "$py" ] || skip "$py not found (Debian's python3)"
ls "$stage"/mfqat/_core.*.so >/dev/null 2>&1 || skip "the extension module was not built (pybind11-dev missing? bash scripts/setup.sh installs it)"
for m in numpy torch pytest; do
  "$py" -c "import $m" >/dev/null 2>&1 || skip "python module '$m' missing (Debian: python3-$m; bash scripts/setup.sh installs it)"
done
stage=$(cd "$stage" && pwd) bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export PYTHONPATH="$stage${PYTHONPATH:+:$PYTHONPATH}" MFQAT_BIN="$bin"
# extra arguments (a test file, -k NAME, -x) go to pytest instead of the whole directory
cd "$here/../.." && exec "$py" -m pytest -q -p no:cacheprovider "${@:-python/tests}"
