#!/usr/bin/env python3
"""Markdown table of convert_bench's JSON (the counters of the paired benchmarks). Stdlib only.

usage: scripts/convert_table.py bench/results/convert_bench.json
"""
import json
import sys


def main(path):
    data = json.load(open(path))
    rows, mem = {}, {}
    for b in data["benchmarks"]:
        p = b["name"].split("/")
        if p[0] == "memcpy":
            mem[int(p[1][1:])] = b["memcpy_GBps"]
        elif p[0] == "pair":
            rows.setdefault((p[1], p[2]), {})[int(p[3][1:])] = b
    threads = sorted(mem)
    print("| anchor | target | " + " | ".join(
        f"slice t{t} | requant t{t} | speed-up t{t} | slice / memcpy t{t}" for t in threads) + " |")
    print("|---|---|" + "---:|" * (4 * len(threads)))
    worst = 1e9
    for (s, d), per in rows.items():
        cells = []
        for t in threads:
            b = per[t]
            cells += [f"{b['slice_GBps']:.2f}", f"{b['requant_GBps']:.2f}", f"**{b['speedup']:.1f}x**",
                      f"{b['slice_GBps'] / mem[t]:.2f}"]
            worst = min(worst, b["speedup"])
        print(f"| {s} | {d} | " + " | ".join(cells) + " |")
    print()
    print("GB/s of anchor bytes (elements + scales), best of the alternated iterations. memcpy of the same bytes: " +
          ", ".join(f"{mem[t]:.2f} GB/s on {t} thread(s)" for t in threads) +
          f". Smallest speed-up over dequantize->requantize: **{worst:.1f}x**.")


if __name__ == "__main__":
    main(sys.argv[1])
