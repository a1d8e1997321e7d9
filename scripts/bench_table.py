#!/usr/bin/env python3
"""Turns mx_bench's JSON into the Markdown tables of docs/perf.md (standard library only).

usage: scripts/bench_table.py bench/results/mx_bench.json
"""
import json
import sys
from collections import defaultdict


def main(path):
    data = json.load(open(path))
    gbs = {}
    for b in data["benchmarks"]:
        name = b["name"].replace("/real_time", "")
        gbs[name] = b["bytes_per_second"] / 1e9
    threads = sorted({int(n.rsplit("/t", 1)[1]) for n in gbs if n.startswith("memcpy/")})
    tmax = threads[-1]
    mem1 = gbs["memcpy/t1"]
    memn = gbs[f"memcpy/t{tmax}"]
    ctx = data.get("context", {})
    print(f"Machine: {ctx.get('num_cpus')} CPUs @ {ctx.get('mhz_per_cpu')} MHz, "
          f"build {ctx.get('library_build_type')}, date {ctx.get('date')}.\n")
    print(f"memcpy of the same 64 MiB buffer: **{mem1:.2f} GB/s** on 1 thread, **{memn:.2f} GB/s** on {tmax}.\n")
    formats = []
    for n in gbs:
        parts = n.split("/")
        if parts[0] == "fake_quant" and parts[1] not in formats:
            formats.append(parts[1])
    for op in ("fake_quant", "quantize", "dequantize"):
        print(f"### {op} (GB/s of fp32 data; ratio = SIMD / memcpy at the same thread count)\n")
        print(f"| format | scalar t1 | avx2 t1 | ratio t1 | avx2 t{tmax} | ratio t{tmax} | speed-up vs scalar |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for f in formats:
            s = gbs.get(f"{op}/{f}/scalar/t1")
            v1 = gbs.get(f"{op}/{f}/avx2/t1")
            vn = gbs.get(f"{op}/{f}/avx2/t{tmax}")
            cell = lambda x: f"{x:.2f}" if x is not None else "-"
            r1 = f"{v1 / mem1:.2f}" if v1 else "-"
            rn = f"{vn / memn:.2f}" if vn else "-"
            sp = f"{v1 / s:.1f}x" if (v1 and s) else "-"
            print(f"| {f} | {cell(s)} | {cell(v1)} | {r1} | {cell(vn)} | {rn} | {sp} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
