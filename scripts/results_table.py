#!/usr/bin/env python3
"""Markdown tables from scripts/results_lm.sh's eval.*.jsonl (stdlib only).

Usage: results_table.py OUT_DIR   (prints markdown to stdout)
"""
import json
import os
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, f"eval.{name}.jsonl")
    if not os.path.exists(path):
        return {}
    return {r["format"]: r for r in map(json.loads, open(path))}


pre = load("pre")
ft = load("ft_fp32")  # fp32 fine-tune with the QAT recipe: what fine-tuning alone does
families = {
    "int": {
        "formats": ["mxint8", "mxint7", "mxint6", "mxint5", "mxint4", "mxint3", "mxint2"],
        "trained": {"mxint2", "mxint4", "mxint6", "mxint8"},
        "cols": [("PTQ (fp32 model)", pre)] + ([("PTQ of fp32 fine-tune", ft)] if ft else []) + [("SF-QAT mxint4", load("sf_mxint4")),
                 ("MF-QAT joint, master", load("mf_int")), ("MF-QAT joint, from mxint8 anchor", load("mf_int.anchor"))],
    },
    "fp": {
        "formats": ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp7_e3m3", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp5_e2m2", "mxfp4_e2m1"],
        "trained": {"mxfp4_e2m1", "mxfp6_e2m3", "mxfp8_e4m3"},
        "cols": [("PTQ (fp32 model)", pre)] + ([("PTQ of fp32 fine-tune", ft)] if ft else []) + [("SF-QAT mxfp4_e2m1", load("sf_mxfp4")),
                 ("MF-QAT joint, master", load("mf_fp")), ("MF-QAT joint, from mxfp8_e4m3 anchor", load("mf_fp.anchor"))],
    },
}


def cell(rows, f):
    r = rows.get(f)
    return f"{r['bits_per_byte']:.4f}" if r else "–"


for fam, d in families.items():
    print(f"\n**{fam.upper()} family** — bits per byte on the test novel (lower is better); "
          f"fp32 model unquantized: {cell(pre, 'fp32')}"
          + (f", fp32 fine-tune unquantized: {cell(ft, 'fp32')}" if ft else "") + ". MF-QAT trained on "
          f"{{{', '.join(sorted(d['trained'], key=d['formats'].index))}}}; other formats (†) it never saw.\n")
    print("| format | bits/weight | " + " | ".join(c for c, _ in d["cols"]) + " |")
    print("|---|---:|" + "---:|" * len(d["cols"]))
    for f in d["formats"]:
        bpw = next((rows[f]["bits_per_weight"] for _, rows in d["cols"] if f in rows), None)
        name = f if f in d["trained"] else f + " †"
        print(f"| {name} | {bpw:.2f} | " + " | ".join(cell(rows, f) for _, rows in d["cols"]) + " |" if bpw else f"| {name} | – |")
times = os.path.join(out, "times.jsonl")
if os.path.exists(times):
    print("\nWall time per output (s): " + ", ".join(f"{os.path.basename(t['output'])} {t['seconds']}" for t in map(json.loads, open(times))))
