// JavaScript oracle for the C++ tokenizer: encodes every record of a corpus with
// @lenml/tokenizers (transformers.js' tokenizers) and compares with the ids mfqat wrote.
//
//   node tests/tokenizer_oracle.js ORACLE_MAIN_JS MODEL_DIR CORPUS CPP_IDS NAME
//
// CORPUS: NUL-separated records of raw bytes; each is decoded with TextDecoder (ill-formed UTF-8
// -> U+FFFD, the contract mfqat's --lossy / sanitize_utf8 implements). CPP_IDS: one line of
// space-separated ids per record (mfqat tokenize --records). Prints a summary line, the first
// mismatches, and the oracle's own encode speed (one thread); exit status 1 on any mismatch.
"use strict";
const fs = require("fs");
const path = require("path");

const [oracleMain, modelDir, corpusPath, cppPath, name] = process.argv.slice(2);
if (!name) {
  console.error("usage: node tokenizer_oracle.js ORACLE_MAIN_JS MODEL_DIR CORPUS CPP_IDS NAME");
  process.exit(2);
}
const { TokenizerLoader } = require(path.resolve(oracleMain));
const readJson = (f) => JSON.parse(fs.readFileSync(path.join(modelDir, f), "utf8"));
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: readJson("tokenizer.json"),
  tokenizerConfig: readJson("tokenizer_config.json"),
});

const corpus = fs.readFileSync(corpusPath);
const records = [];
let start = 0;
for (let i = 0; i <= corpus.length; ++i) {
  if (i === corpus.length || corpus[i] === 0) {
    if (i > start || i < corpus.length) records.push(corpus.subarray(start, i));
    start = i + 1;
  }
}
const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const texts = records.map((r) => decoder.decode(r));
let bytes = 0;
for (const t of texts) bytes += Buffer.byteLength(t, "utf8");

const t0 = process.hrtime.bigint();
const jsIds = texts.map((t) => tok.encode(t));  // add_special_tokens: true, as mfqat's default
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;

const cppLines = fs.readFileSync(cppPath, "utf8").split("\n");
if (cppLines.length && cppLines[cppLines.length - 1] === "") cppLines.pop();
let mismatches = 0;
const shown = [];
const show = (s, n = 160) => JSON.stringify(s.length > n ? s.slice(0, n) + "..." : s);
if (cppLines.length !== texts.length) {
  console.log(`oracle ${name}: C++ wrote ${cppLines.length} lines for ${texts.length} records`);
  process.exit(1);
}
for (let i = 0; i < texts.length; ++i) {
  const want = jsIds[i].join(" ");
  if (want === cppLines[i]) continue;
  ++mismatches;
  if (shown.length < 10) {
    const got = cppLines[i] === "" ? [] : cppLines[i].split(" ").map(Number);
    let k = 0;
    while (k < got.length && k < jsIds[i].length && got[k] === jsIds[i][k]) ++k;
    const tokens = (ids) => ids.slice(Math.max(0, k - 2), k + 4).map((id) => JSON.stringify(tok.model.vocab[id] ?? `#${id}`));
    shown.push(
      `  record ${i} ${show(texts[i])}\n    first difference at id #${k}: js [${tokens(jsIds[i]).join(", ")}] c++ [${tokens(got).join(", ")}]`,
    );
  }
}
const invalid = records.filter((r, i) => !Buffer.from(texts[i], "utf8").equals(r)).length;
console.log(
  `oracle ${name}: ${texts.length} records (${invalid} not valid UTF-8), ${bytes} bytes: ${mismatches} mismatches; ` +
    `js encode ${(bytes / 1e6 / seconds).toFixed(2)} MB/s (1 thread, ${seconds.toFixed(2)} s)`,
);
for (const s of shown) console.log(s);
process.exit(mismatches ? 1 : 0);
