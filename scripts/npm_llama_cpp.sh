#!/usr/bin/env bash
# Installs node-llama-cpp 3.21.1 with its prebuilt linux-x64 CPU build of llama.cpp (the package
# @node-llama-cpp/linux-x64) into a cache OUTSIDE the repository, for the GGUF export tests'
# client tests/export/llama_cpp_client.mjs. Every package (node-llama-cpp, the binary package and
# all JavaScript dependencies) is pinned by version and sha512 through the lock file
# tests/export/llama_cpp.package-lock.json and installed with `npm ci`. Nothing is compiled or
# downloaded besides the npm tarballs: install scripts are disabled (node-llama-cpp's postinstall
# would otherwise try to fetch/build llama.cpp), optional dependencies (the CUDA/Vulkan/other-OS
# binaries, several hundred MB) are omitted.
#
#   bash scripts/npm_llama_cpp.sh [--offline]
#
# Install dir: ${MFQAT_NPM_CACHE:-$HOME/.cache/mfqat-npm}/node-llama-cpp-3.21.1 (holds
# node_modules/); it is printed on stdout, pass it to the client as --lib or MFQAT_LLAMA_CPP_DIR.
# Exit status: 0 ready; 77 not available (no node/npm, not linux x86-64 glibc, node < 20, registry
# unreachable, or --offline with an empty cache) -- callers turn that into a skip; 1 an integrity
# mismatch or another real failure (e.g. the prebuilt binary does not load).
set -euo pipefail

VERSION=3.21.1
CACHE=${MFQAT_NPM_CACHE:-$HOME/.cache/mfqat-npm}
DIR="$CACHE/node-llama-cpp-$VERSION"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG="$HERE/tests/export/llama_cpp.package.json"
LOCK="$HERE/tests/export/llama_cpp.package-lock.json"
OFFLINE=0
[ "${1:-}" = "--offline" ] && OFFLINE=1

skip() { echo "npm_llama_cpp: SKIP: $*" >&2; exit 77; }
fail() { echo "npm_llama_cpp: $*" >&2; exit 1; }

[ -f "$PKG" ] && [ -f "$LOCK" ] || fail "missing $PKG or $LOCK"
command -v node >/dev/null 2>&1 || skip "node is not installed (bash scripts/setup.sh installs nodejs and npm)"
[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] || skip "the prebuilt llama.cpp binary is linux-x64 only (this is $(uname -s) $(uname -m))"
node -e 'process.exit(process.report.getReport().header.glibcVersionRuntime ? 0 : 1)' 2>/dev/null \
  || skip "the prebuilt llama.cpp binary needs glibc"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || skip "node-llama-cpp $VERSION needs node >= 20 (this is $(node --version))"

# The stamp is the lock file's hash: a changed lock reinstalls.
stamp=$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write(c.createHash("sha256").update(f.readFileSync(process.argv[1])).update(f.readFileSync(process.argv[2])).digest("hex"))' "$PKG" "$LOCK")
ADDON="$DIR/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node"

# Loads the prebuilt binary the way the client does; prints the llama.cpp release on success.
# (A file, not `node -e`: node-llama-cpp tests the binding in a child process that inherits execArgv.)
smoke() {
  cat >"$DIR/.smoke.mjs" <<'EOF_SMOKE'
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
const llama = await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, progressLogs: false, logLevel: LlamaLogLevel.error });
if (llama.gpu !== false || llama.buildType !== "prebuilt") throw new Error(`unexpected build: gpu=${llama.gpu} buildType=${llama.buildType}`);
process.stdout.write(`${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`);
await llama.dispose();
EOF_SMOKE
  (cd "$DIR" && timeout 120 node .smoke.mjs)
}

if [ -f "$DIR/.verified" ] && [ "$(cat "$DIR/.verified")" = "$stamp" ] && [ -f "$ADDON" ] \
   && [ -f "$DIR/node_modules/node-llama-cpp/package.json" ]; then
  echo "$DIR"
  exit 0
fi
[ $OFFLINE = 1 ] && skip "node-llama-cpp@$VERSION is not installed in $DIR (run bash scripts/npm_llama_cpp.sh)"
command -v npm >/dev/null 2>&1 || skip "npm is not installed (bash scripts/setup.sh installs it)"

mkdir -p "$DIR"
rm -f "$DIR/.verified"
cp "$PKG" "$DIR/package.json"
cp "$LOCK" "$DIR/package-lock.json"
log="$DIR/.npm-ci.log"
echo "npm_llama_cpp: installing node-llama-cpp@$VERSION into $DIR" >&2
# --ignore-scripts + NODE_LLAMA_CPP_SKIP_DOWNLOAD: node-llama-cpp's postinstall must not try to
# download or compile llama.cpp. --omit=optional: only the linux-x64 CPU binary (a direct dependency).
if ! (cd "$DIR" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true timeout 900 npm ci --omit=optional --ignore-scripts \
      --no-audit --no-fund --loglevel=error --fetch-retries=1 --fetch-retry-mintimeout=1000 \
      --fetch-retry-maxtimeout=3000 --fetch-timeout=60000 >"$log" 2>&1); then
  if grep -q -E "EINTEGRITY|integrity checksum failed" "$log"; then
    fail "npm ci: integrity mismatch against $LOCK: $(grep -m1 -E "EINTEGRITY|integrity" "$log" | tr -d '\r')"
  fi
  skip "npm ci failed (registry unreachable?): $(grep -m1 -E "npm (ERR!|error)" "$log" | tr -d '\r')"
fi
[ -f "$ADDON" ] || fail "npm ci finished but $ADDON is missing"
release=$(smoke 2>"$DIR/.smoke.log") || fail "the prebuilt llama.cpp binary does not load: $(tail -n 1 "$DIR/.smoke.log")"
echo "npm_llama_cpp: ready ($release, prebuilt linux-x64 CPU)" >&2
echo "$stamp" >"$DIR/.verified"
echo "$DIR"
