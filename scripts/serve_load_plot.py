#!/usr/bin/env python3
"""Plot bench/serve_load's JSON (a list of rows: format x clients): generated tokens/s and
inter-token latency p50/p99 against concurrent clients, one line per format.

Usage: serve_load_plot.py RESULTS.json -o PLOT.png  (Debian's /usr/bin/python3 with matplotlib)
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("results")
ap.add_argument("-o", "--out", required=True)
a = ap.parse_args()
rows = json.load(open(a.results))
formats = list(dict.fromkeys(r["format"] for r in rows))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
for f in formats:
    rs = sorted((r for r in rows if r["format"] == f), key=lambda r: r["clients"])
    c = [r["clients"] for r in rs]
    ax1.plot(c, [r["generated_tokens_per_s"] for r in rs], marker="o", label=f)
    line, = ax2.plot(c, [r["itl_p99_ms"] for r in rs], marker="o", label=f"{f} p99")
    ax2.plot(c, [r["itl_p50_ms"] for r in rs], marker=".", linestyle="--", color=line.get_color(), label=f"{f} p50")
slo = next((r["slo_ms"] for r in rows if r.get("slo_ms")), None)
if slo:
    ax2.axhline(slo, color="grey", linewidth=0.8)
    ax2.text(1, slo * 1.05, f"SLO {slo:g} ms", color="grey", fontsize=8)
for ax in (ax1, ax2):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent streaming clients")
    ax.grid(alpha=0.3)
ax2.set_yscale("log")
ax1.set_ylabel("generated tokens/s (all clients)")
ax2.set_ylabel("inter-token latency, ms")
ax1.legend(fontsize=8)
ax2.legend(fontsize=7, ncol=2)
fig.suptitle("mfqat serve under load (bench/serve_load, synthetic 2048-wide model)")
fig.tight_layout()
fig.savefig(a.out, dpi=110)
print(a.out)
