#!/usr/bin/env python3
"""Plot `mfqat plan --pareto` lines: held-out loss against average bits per weight, the uniform
formats joined by a line, the dp and greedy plans as points.

Usage: plot_pareto.py PARETO.jsonl [LABEL=PARETO.jsonl ...] -o PLOT.png (/usr/bin/python3, matplotlib)
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("inputs", nargs="+", help="FILE or LABEL=FILE")
ap.add_argument("-o", "--out", required=True)
a = ap.parse_args()
fig, axes = plt.subplots(1, len(a.inputs), figsize=(6 * len(a.inputs), 4.2), squeeze=False)
for ax, spec in zip(axes[0], a.inputs):
    label, path = spec.split("=", 1) if "=" in spec else (spec, spec)
    rows = [json.loads(line) for line in open(path)]
    uni = sorted((r for r in rows if r["kind"].startswith("uniform:")), key=lambda r: r["bits_per_weight"])
    ax.plot([r["bits_per_weight"] for r in uni], [r["loss"] for r in uni], "o-", color="grey", label="uniform formats")
    for r in uni:
        ax.annotate(r["kind"].split(":")[1], (r["bits_per_weight"], r["loss"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for kind, m, c in [("dp", "s", "tab:blue"), ("greedy", "^", "tab:orange")]:
        ps = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["bits_per_weight"])
        ax.plot([r["bits_per_weight"] for r in ps], [r["loss"] for r in ps], m, color=c, label=f"{kind} plans", markersize=6)
    ax.set_xlabel("average bits per weight (scales included)")
    ax.set_ylabel("held-out loss, nats/token")
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(a.out, dpi=110)
print(a.out)
