#!/usr/bin/env node
// Client side of the GGUF export tests: drives llama.cpp through node-llama-cpp's prebuilt CPU
// binary (installed by scripts/npm_llama_cpp.sh) and prints one JSON object on stdout.
//
//   node tests/export/llama_cpp_client.mjs [--lib DIR] tokenize MODEL.gguf TEXTFILE
//       [--records] -> {"ids":[...]}   (no BOS/EOS added, special-token text is NOT parsed;
//       --records: TEXTFILE holds NUL-terminated records, "ids" is one list per record)
//   node tests/export/llama_cpp_client.mjs [--lib DIR] score MODEL.gguf IDS.json [--threads T] [--ctx N]
//       -> {"top1":[...],"nll":[...],"mean_nll":x, ...}
//          IDS.json is a JSON array of token ids or {"ids":[...]}. Position i (0 <= i < len-1) gets
//          the greedy id and -ln p(ids[i+1]) under llama.cpp's full-vocab softmax (temperature 1,
//          no penalties/top-k/top-p/min-p). The ids are evaluated in consecutive, non-overlapping
//          windows of N tokens, each on an empty KV cache (one pass when len <= N); the last
//          position of a window predicts the first id of the next window. No BOS is inserted.
//   node tests/export/llama_cpp_client.mjs [--lib DIR] bench MODEL.gguf [--threads T] [--prompt P]
//       [--tokens N] [--rounds R] [--warmup W]
//       -> prefill and decode tokens/s per round and their medians (fixed token ids, greedy,
//          timing only the evaluation calls, KV cache cleared before every round).
//
// DIR is the node_modules folder holding node-llama-cpp (or the folder containing node_modules);
// default: $MFQAT_LLAMA_CPP_DIR. llama.cpp's log goes to stderr at level $MFQAT_LLAMA_CPP_LOG
// (default "error"). Any failure: one line on stderr, exit status 1 (2 for usage errors).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

const PROG = "llama_cpp_client";

class UsageError extends Error {}

function parseArgs(argv) {
  const pos = [];
  const opt = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq >= 0) { opt[a.slice(2, eq)] = a.slice(eq + 1); continue; }
      if (a === "--records") { opt.records = true; continue; }  // the one flag without a value
      if (i + 1 >= argv.length) throw new UsageError(`option ${a} needs a value`);
      opt[a.slice(2)] = argv[++i];
    } else {
      pos.push(a);
    }
  }
  return { pos, opt };
}

function intOpt(opt, name, def, min = 1) {
  if (opt[name] === undefined) return def;
  const v = Number(opt[name]);
  if (!Number.isInteger(v) || v < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${opt[name]}'`);
  return v;
}

function resolveLib(opt) {
  const dir = opt.lib ?? process.env.MFQAT_LLAMA_CPP_DIR;
  if (!dir) throw new UsageError("no node-llama-cpp location: pass --lib DIR or set MFQAT_LLAMA_CPP_DIR");
  for (const cand of [path.join(dir, "node-llama-cpp"), path.join(dir, "node_modules", "node-llama-cpp")]) {
    const pj = path.join(cand, "package.json");
    if (fs.existsSync(pj)) {
      const pkg = JSON.parse(fs.readFileSync(pj, "utf8"));
      return { entry: path.join(cand, pkg.main ?? "dist/index.js"), version: pkg.version };
    }
  }
  throw new Error(`node-llama-cpp not found under ${dir} (run scripts/npm_llama_cpp.sh)`);
}

function checkFile(f, what) {
  if (!f) throw new UsageError(`missing ${what}`);
  if (!fs.existsSync(f)) throw new Error(`${what} not found: ${f}`);
  return path.resolve(f);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? null : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

async function openLlama(lib, threads) {
  const nlc = await import(pathToFileURL(lib.entry).href);
  const levelName = (process.env.MFQAT_LLAMA_CPP_LOG ?? "error").toLowerCase();
  const level = nlc.LlamaLogLevel[levelName];
  if (level === undefined) throw new UsageError(`MFQAT_LLAMA_CPP_LOG: unknown level '${levelName}'`);
  const llama = await nlc.getLlama({
    gpu: false,
    build: "never",          // only the prebuilt binary; never download or compile llama.cpp
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: level,
    logger: (lvl, msg) => { process.stderr.write(msg.endsWith("\n") ? msg : msg + "\n"); },
    // without this, context threads are capped at max(4, math cores)
    ...(threads ? { maxThreads: threads } : {}),
  });
  return { nlc, llama };
}

async function loadModel(llama, modelPath, extra = {}) {
  return await llama.loadModel({ modelPath, gpuLayers: 0, ...extra });
}

// vocabulary size from the GGUF metadata node-llama-cpp parsed (tokenizer.ggml.tokens), else token_embd
function vocabSize(model) {
  const toks = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
  if (Array.isArray(toks) && toks.length > 0) return toks.length;
  const te = model.fileInfo?.tensorInfo?.find((t) => t.name === "token_embd.weight");
  const n = te ? Number(te.dimensions[1]) : NaN;
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

function readIds(file) {
  let v = JSON.parse(fs.readFileSync(file, "utf8"));
  if (!Array.isArray(v)) v = v?.ids;
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= 0))
    throw new Error(`${file}: expected a JSON array of non-negative integer ids or {"ids":[...]}`);
  return v;
}

async function cmdTokenize(lib, pos, opt) {
  const records = "records" in opt;  // TEXTFILE holds NUL-terminated records: one id list each
  const modelPath = checkFile(pos[1], "MODEL.gguf");
  const textPath = checkFile(pos[2], "TEXTFILE");
  const buf = fs.readFileSync(textPath);
  const text = buf.toString("utf8");
  // node-llama-cpp takes a JS string; make sure it reproduces the file's bytes exactly
  if (!Buffer.from(text, "utf8").equals(buf)) throw new Error(`${textPath} is not valid UTF-8`);
  const { llama } = await openLlama(lib);
  const model = await loadModel(llama, modelPath, { vocabOnly: true });
  // specialTokens=false: llama_tokenize(add_special=false, parse_special=false)
  const ids = records ? text.split("\0").slice(0, -1).map((r) => Array.from(model.tokenize(r, false)))
                      : Array.from(model.tokenize(text, false));
  await model.dispose();
  await llama.dispose();
  return { ids };
}

async function cmdScore(lib, pos, opt) {
  const modelPath = checkFile(pos[1], "MODEL.gguf");
  const ids = readIds(checkFile(pos[2], "IDS.json"));
  const threads = intOpt(opt, "threads", 0, 0);
  const ctxN = intOpt(opt, "ctx", 512, 2);
  if (ids.length < 2) throw new Error("need at least 2 token ids to score");
  const { llama } = await openLlama(lib, threads);
  const model = await loadModel(llama, modelPath);
  const nVocab = vocabSize(model);
  for (const t of ids) if (nVocab !== undefined && t >= nVocab) throw new Error(`token id ${t} >= vocab size ${nVocab}`);
  const win = Math.min(ctxN, ids.length);
  const context = await model.createContext({
    contextSize: win + 64, sequences: 1, batchSize: Math.min(win, 512), flashAttention: false,
    ...(threads ? { threads: { ideal: threads, min: threads } } : {}),
  });
  // room beyond the window: a full context would make node-llama-cpp shift it (drop the first
  // tokens) before the window's last position is evaluated
  if (context.contextSize < win + 1) throw new Error(`context size ${context.contextSize} < window ${win}`);
  const seq = context.getSequence();
  const top1 = [], nll = [];
  let underflow = 0;
  // temperature 0 -> node-llama-cpp's sampler chain is only llama_sampler_init_greedy, which does
  // not touch the logits; the returned probabilities are softmax(raw logits) over the full vocab.
  const gen = { generateNext: { probabilities: true, options: { temperature: 0 } } };
  for (let s = 0; s < ids.length - 1; s += win) {
    await seq.clearHistory();
    const chunk = ids.slice(s, s + win);
    const input = chunk.map((t, j) => (s + j < ids.length - 1 ? [t, gen] : t));
    const out = await seq.controlledEvaluate(input);
    for (let j = 0; j < chunk.length && s + j < ids.length - 1; j++) {
      const probs = out[j]?.next?.probabilities;
      if (!probs) throw new Error(`no probabilities returned for position ${s + j}`);
      if (nVocab !== undefined && probs.size !== nVocab) throw new Error(`probabilities cover ${probs.size} of ${nVocab} tokens`);
      top1.push(probs.keys().next().value); // map is sorted by probability, highest first
      const p = probs.get(ids[s + j + 1]) ?? 0;
      if (p > 0) nll.push(-Math.log(p));
      else { underflow++; nll.push(-Math.log(1.401298464324817e-45)); } // float32 underflow: lower bound
    }
  }
  const mean = nll.reduce((a, b) => a + b, 0) / nll.length;
  const res = { top1, nll, mean_nll: mean, n: nll.length, window: win, threads: context.idealThreads,
                n_vocab: nVocab ?? null, underflow };
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return res;
}

async function cmdBench(lib, pos, opt) {
  const modelPath = checkFile(pos[1], "MODEL.gguf");
  const threads = intOpt(opt, "threads", 0, 0);
  const P = intOpt(opt, "prompt", 128);
  const N = intOpt(opt, "tokens", 32);
  const R = intOpt(opt, "rounds", 3);
  const W = intOpt(opt, "warmup", 1, 0);
  const { llama } = await openLlama(lib, threads);
  const model = await loadModel(llama, modelPath);
  const nVocab = vocabSize(model);
  if (!nVocab) throw new Error("cannot determine the vocabulary size");
  const tok = (i) => (i * 7919 + 13) % nVocab; // fixed, deterministic token ids
  const prompt = Array.from({ length: P }, (_, i) => tok(i));
  const decodeIds = Array.from({ length: N }, (_, i) => tok(P + i));
  const context = await model.createContext({
    contextSize: P + N + 64, sequences: 1, batchSize: Math.min(P, 2048), flashAttention: false,
    ...(threads ? { threads: { ideal: threads, min: threads } } : {}),
  });
  const seq = context.getSequence();
  const greedy = { generateNext: { token: true, options: { temperature: 0 } } };
  const prefill = [], decode = [];
  for (let r = 0; r < W + R; r++) {
    await seq.clearHistory();
    const input = prompt.map((t, i) => (i === P - 1 ? [t, greedy] : t)); // logits only for the last prompt token
    let t0 = performance.now();
    await seq.controlledEvaluate(input);
    const tp = (performance.now() - t0) / 1000;
    t0 = performance.now();
    for (const t of decodeIds) await seq.controlledEvaluate([[t, greedy]]);
    const td = (performance.now() - t0) / 1000;
    if (r >= W) { prefill.push(P / tp); decode.push(N / td); }
  }
  const res = {
    prompt: P, tokens: N, rounds: R, warmup: W, threads: context.idealThreads,
    prefill_tok_s: prefill, decode_tok_s: decode,
    prefill_tok_s_median: median(prefill), decode_tok_s_median: median(decode),
    llama_cpp: llama.llamaCppRelease, build: llama.buildType,
  };
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return res;
}

async function main() {
  const { pos, opt } = parseArgs(process.argv.slice(2));
  const cmd = pos[0];
  if (!["tokenize", "score", "bench"].includes(cmd))
    throw new UsageError("usage: llama_cpp_client.mjs [--lib DIR] tokenize|score|bench MODEL.gguf ... (see the header)");
  const lib = resolveLib(opt);
  const res = cmd === "tokenize" ? await cmdTokenize(lib, pos, opt)
            : cmd === "score" ? await cmdScore(lib, pos, opt)
            : await cmdBench(lib, pos, opt);
  await new Promise((resolve) => process.stdout.write(JSON.stringify(res) + "\n", resolve));
}

main().then(() => process.exit(0), (err) => {
  const msg = String(err?.message ?? err).replace(/\s+/g, " ").trim();
  process.stderr.write(`${PROG}: ${msg}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
