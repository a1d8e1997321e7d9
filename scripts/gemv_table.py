#!/usr/bin/env python3
"""Markdown table from gemv_bench's JSON (stdlib only): GB/s of weight bytes, weights/s, share of
the read roof (a plain read of a buffer of the nearest size), and speed-up over fp32 sgemv in
weights/s, per thread count.

Usage: gemv_table.py docs/gemv_bench.json
"""
import json
import sys

d = json.load(open(sys.argv[1]))
rows = {}
for b in d["benchmarks"]:
    name = b["name"].split("/min_time")[0]
    rows[name] = b
threads = sorted({int(n.split("threads:")[1]) for n in rows})
for t in threads:
    ts = f"threads:{t}"
    r64, r128 = rows[f"read/64MiB/{ts}"]["bytes_per_second"], rows[f"read/128MiB/{ts}"]["bytes_per_second"]
    sg = rows[f"sgemv_f32/{ts}"]
    print(f"\n**{t} thread{'s' if t > 1 else ''}** — read roof {r64/1e9:.1f} GB/s (64 MiB) / {r128/1e9:.1f} GB/s (128 MiB); "
          f"fp32 sgemv {sg['bytes_per_second']/1e9:.1f} GB/s = {sg['weights_per_s']/1e9:.2f} G weights/s\n")
    print("| format | path | bits/weight | GB/s (weight bytes) | G weights/s | % of read roof | × fp32 sgemv (weights/s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for n, b in rows.items():
        if not n.startswith("mx_gemv/") or not n.endswith(ts):
            continue
        _, fmt, path, _ = n.split("/")
        bpw = b["bits_per_weight"]
        roof = r64 if bpw < 6 else r128
        print(f"| {fmt} | {path} | {bpw:.2f} | {b['bytes_per_second']/1e9:.2f} | {b['weights_per_s']/1e9:.2f} | "
              f"{100*b['bytes_per_second']/roof:.0f} % | {b['weights_per_s']/sg['weights_per_s']:.2f} |")
