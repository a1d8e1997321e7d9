#!/usr/bin/env python3
"""Turns `mfqat bench --json` lines into the decode table of docs/perf.md (standard library only).

usage: scripts/decode_table.py bench/results/runtime_bench_default.jsonl [more.jsonl ...]

Each row: the median decode and prefill tokens/s (over --rounds interleaved rounds when the lines
carry them, with the range), and decode relative to fp32 and to mxint8 from the same file: with
rounds, the median of the per-round ratios (each round measures every format once, back to back,
so a ratio within a round is not moved by the machine's drift between rounds).
"""
import json
import sys


def rows(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def main(paths):
    for path in paths:
        data = rows(path)
        by = {d["format"]: d for d in data}
        def runs(d):
            return d.get("decode_runs", [d["decode_tokens_per_s"]])

        def ratio(d, base):
            if base not in by:
                return "–"
            a, b = runs(d), runs(by[base])
            r = sorted(x / y for x, y in zip(a, b))
            n = len(r)
            return f"{(r[n // 2] if n % 2 else 0.5 * (r[n // 2 - 1] + r[n // 2])):.2f}"

        act = "int8" if data and data[0].get("int8_activations") else "fp32"
        rounds = data[0].get("rounds", 1) if data else 1
        print(f"`{path.split('/')[-1]}`: activations {act}, medians of {rounds} interleaved round(s), "
              f"{data[0].get('threads')} threads\n")
        print("| format | anchor | bits/weight | weights (MiB) | derive (s) | prefill tok/s | decode tok/s | decode range | × fp32 | × mxint8 |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for d in data:
            dec = d["decode_tokens_per_s"]
            rng = f"{min(runs(d)):.1f}–{max(runs(d)):.1f}"
            xf, xi = ratio(d, "fp32"), ratio(d, "mxint8")
            print(f"| {d['format']} | {d['anchor']} | {d['bits_per_weight']:.2f} | {d['weight_bytes'] / 2**20:.0f} | "
                  f"{d['derive_seconds']:.2f} | {d['prefill_tokens_per_s']:.1f} | {dec:.1f} | {rng} | {xf} | {xi} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
