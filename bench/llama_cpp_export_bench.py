#!/usr/bin/env python3
"""Decode and prefill speed of the same exported model in llama.cpp and in mfqat, interleaved.

The model: an MX anchor (mfqat) and the GGUF exported from it by `mfqat export --to gguf`
(llama.cpp, run through node-llama-cpp's prebuilt CPU binary and tests/export/llama_cpp_client.mjs):
the same weights bit for bit. Every round runs, for every format, `mfqat bench` and the llama.cpp
client one after the other (each process measures --inner rounds after a warm-up and reports
their median); the table gives the median over rounds, the range, and the median of the
same-round ratios mfqat / llama.cpp.

  /usr/bin/python3 bench/llama_cpp_export_bench.py MFQAT \\
      --case mxfp4_e2m1:ANCHOR_FP8:MODEL_MXFP4.gguf --case mxint8:ANCHOR_INT8:MODEL_Q8_0.gguf \\
      [--threads 2] [--prompt 128] [--tokens 64] [--rounds 3] [--inner 3] [--json OUT.jsonl]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "tests", "export", "llama_cpp_client.mjs")


def run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr.strip()[-1500:]}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mfqat")
    ap.add_argument("--case", action="append", required=True, help="FORMAT:ANCHOR:GGUF")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    lib = run(["bash", os.path.join(ROOT, "scripts", "npm_llama_cpp.sh")]).strip()
    cases = [c.split(":") for c in a.case]
    res = {(f, tool): {"prefill": [], "decode": []} for f, _, _ in cases for tool in ("mfqat", "llama.cpp")}
    out = open(a.json, "a") if a.json else None
    for r in range(a.rounds):
        for fmt, anchor, gguf in cases:
            j = json.loads(run([a.mfqat, "--threads", a.threads, "bench", anchor, "--formats", fmt, "--prompt", a.prompt, "--tokens", a.tokens,
                                "--rounds", a.inner, "--ctx", a.prompt + a.tokens + 64, "--json"]).strip().splitlines()[-1])
            m = {"prefill": j["prefill_tokens_per_s"], "decode": j["decode_tokens_per_s"]}
            lc = json.loads(run(["node", CLIENT, "--lib", lib, "bench", gguf, "--threads", a.threads, "--prompt", a.prompt,
                                 "--tokens", a.tokens, "--rounds", a.inner, "--warmup", 1]))
            l = {"prefill": lc["prefill_tok_s_median"], "decode": lc["decode_tok_s_median"]}
            for tool, v in (("mfqat", m), ("llama.cpp", l)):
                for k in v:
                    res[(fmt, tool)][k].append(v[k])
            line = {"round": r, "format": fmt, "threads": a.threads, "prompt": a.prompt, "tokens": a.tokens, "mfqat": m,
                    "llama_cpp": l, "llama_cpp_release": lc.get("llama_cpp"), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            print(json.dumps(line), flush=True)
            if out:
                out.write(json.dumps(line) + "\n")
    print(f"\n{a.threads} threads, prompt {a.prompt}, {a.tokens} decode tokens; medians over {a.rounds} rounds [range]")
    print("| format | phase | mfqat tok/s | llama.cpp tok/s | mfqat / llama.cpp |")
    print("|---|---|---:|---:|---:|")
    for fmt, _, _ in cases:
        for k in ("decode", "prefill"):
            m, l = res[(fmt, "mfqat")][k], res[(fmt, "llama.cpp")][k]
            ratio = statistics.median(x / y for x, y in zip(m, l))
            print(f"| {fmt} | {k} | {statistics.median(m):.1f} [{min(m):.1f}-{max(m):.1f}] | "
                  f"{statistics.median(l):.1f} [{min(l):.1f}-{max(l):.1f}] | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
