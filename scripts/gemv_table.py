#!/usr/bin/env python3
"""Markdown tables from gemv_bench's JSON (stdlib only), per matrix shape and thread count: GB/s of
weight bytes, weights/s, share of a plain read of the matrix's own bytes timed right after each
GEMV call (`of_read`: the roof measured in the same seconds), share of the size-class read
measured once per thread count, and speed-up over fp32 sgemv in weights/s (first shape only).

Usage: gemv_table.py bench/results/gemv_bench.json
"""
import json
import sys

d = json.load(open(sys.argv[1]))
rows = {}
for b in d["benchmarks"]:
    name = b["name"].split("/min_time")[0].split("/manual_time")[0].split("/real_time")[0]
    rows[name] = b
threads = sorted({int(n.split("threads:")[1]) for n in rows})
shapes = [("mx_gemv", "8192 × 16384"), ("mx_gemv_5472", "24528 × 5472"), ("mx_gemv_2048", "65536 × 2048")]
for prefix, shape in shapes:
    if not any(n.startswith(prefix + "/") for n in rows):
        continue
    for t in threads:
        ts = f"threads:{t}"
        r64, r128 = rows[f"read/64MiB/{ts}"]["bytes_per_second"], rows[f"read/128MiB/{ts}"]["bytes_per_second"]
        sg = rows[f"sgemv_f32/{ts}"]
        print(f"\n**{shape}, {t} thread{'s' if t > 1 else ''}** — size-class read {r64/1e9:.1f} GB/s (64 MiB) / "
              f"{r128/1e9:.1f} GB/s (128 MiB); fp32 sgemv (8192 × 16384) {sg['bytes_per_second']/1e9:.1f} GB/s = "
              f"{sg['weights_per_s']/1e9:.2f} G weights/s\n")
        print("| format | path | bits/weight | GB/s (weight bytes) | G weights/s | read of the same bytes (GB/s) | "
              "% of that read | % of size-class read | × fp32 sgemv (weights/s) |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for n, b in rows.items():
            if not n.startswith(prefix + "/") or not n.endswith("/" + ts):
                continue
            _, fmt, path, _ = n.split("/")
            bpw = b["bits_per_weight"]
            roof = r64 if bpw < 6 else r128
            print(f"| {fmt} | {path} | {bpw:.2f} | {b['bytes_per_second']/1e9:.2f} | {b['weights_per_s']/1e9:.2f} | "
                  f"{b['read_same_bytes_per_s']/1e9:.1f} | {100*b['of_read']:.0f} % | {100*b['bytes_per_second']/roof:.0f} % | "
                  f"{b['weights_per_s']/sg['weights_per_s']:.2f} |")
