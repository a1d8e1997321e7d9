#!/usr/bin/env python3
"""The bits-budget evidence of docs/budget.md from scripts/budget_pareto.sh's files.

For each model NAME it reads bench/results/plan_pareto_NAME.jsonl (plans chosen with the direct
measure) and, when present, plan_pareto_NAME_fisher.jsonl (plans chosen with the first-order
score) and both sensitivity files, and prints Markdown:
  1. per budget: the measured held-out loss of the dp plan of each score against the uniform
     line interpolated at the plan's bits (below it = the plan wins), and against uniform 6-bit;
  2. how well each score predicts the measured loss increase of every evaluated weight set
     (uniform formats and every plan of both runs, each predicted from its formats): Spearman
     and Pearson correlation, and the median ratio predicted / measured;
and draws one Pareto panel per model.

Usage: /usr/bin/python3 scripts/budget_report.py NAME [NAME ...] [--results DIR] [-o PLOT.png]
"""
import argparse
import json
import os

import numpy as np


def load_lines(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def monotone_costs(sens):
    """Per linear: format -> cost made monotone as the solvers see it (plan::monotone)."""
    out = {}
    for layer in sens["layers"]:
        opts = sorted(layer["options"], key=lambda o: -o["bits"])
        floor, costs = 0.0, {}
        for o in opts:
            floor = max(floor, o["cost"])
            costs[o["format"]] = floor
        out[layer["name"]] = costs
    return out


def predict(costs, formats_by_linear=None, uniform=None):
    if uniform is not None:
        return sum(c[uniform] for c in costs.values())
    return sum(costs[name][f] for name, f in formats_by_linear.items())


def ranks(x):
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    # average ties
    xs = np.asarray(x)
    for v in np.unique(xs):
        m = xs == v
        r[m] = r[m].mean()
    return r


def spearman(a, b):
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def frontier(uni):
    """The uniform line: at each bits per weight the best uniform format (two 6.25-bit FP formats
    share one point: the better one), sorted by bits."""
    best = {}
    for u in uni:
        b = u["bits_per_weight"]
        if b not in best or u["loss"] < best[b]["loss"]:
            best[b] = u
    return [best[b] for b in sorted(best)]


def interp_uniform(uni, bits):
    """The uniform line at `bits`, linear between its points."""
    f = frontier(uni)
    return float(np.interp(bits, [u["bits_per_weight"] for u in f], [u["loss"] for u in f]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+")
    ap.add_argument("--results", default="bench/results")
    ap.add_argument("-o", "--out")
    a = ap.parse_args()
    panels = []
    for name in a.names:
        direct = load_lines(f"{a.results}/plan_pareto_{name}.jsonl")
        fisher = load_lines(f"{a.results}/plan_pareto_{name}_fisher.jsonl")
        sens = {}
        for score, suffix in (("direct", ""), ("fisher", "_fisher")):
            p = f"{a.results}/plan_sens_{name}{suffix}.json"
            if os.path.exists(p):
                sens[score] = json.load(open(p))
        uni = sorted((r for r in direct if r["kind"].startswith("uniform:")), key=lambda r: r["bits_per_weight"])
        ref = max(uni, key=lambda r: r["bits_per_weight"])
        six = [u for u in frontier(uni) if 6 <= u["bits_per_weight"] < 7]  # the best 6-bit format
        print(f"\n### {name}\n")
        print("uniform: " + ", ".join(f"{u['kind'][8:]} {u['bits_per_weight']:.2f} b: +{u['loss'] - ref['loss']:.5f}" for u in uni))
        print()
        if six:
            print(f"best uniform 6-bit: {six[0]['kind'][8:]}\n")
        print("| budget | score | bits | measured Δ | uniform line at those bits | below the line | vs uniform 6-bit |")
        print("|---:|---|---:|---:|---:|---|---|")
        for run, score in ((direct, "direct"), (fisher, "fisher")):
            for r in sorted((r for r in run if r["kind"] == "dp"), key=lambda r: r["budget_bits"]):
                line = interp_uniform(uni, r["bits_per_weight"])
                d = r["loss"] - ref["loss"]
                beat6 = ""
                if six:
                    beat6 = "beats" if r["loss"] < six[0]["loss"] else "loses"
                print(f"| {r['budget_bits']:.2f} | {score} | {r['bits_per_weight']:.3f} | {d:+.5f} | {line - ref['loss']:+.5f} | "
                      f"{'yes' if r['loss'] < line else 'no'} ({r['loss'] - line:+.5f}) | {beat6} |")
        # prediction quality over every evaluated weight set
        sets = []
        for r in uni:
            sets.append(("uniform", r["kind"][8:], r["loss"] - ref["loss"]))
        for run in (direct, fisher):
            for r in run:
                if "formats" in r:
                    sets.append(("plan", r["formats"], r["loss"] - ref["loss"]))
        if sens:
            print()
            print("| score | weight sets | Spearman | Pearson | median predicted / measured (Δ > 0.0005) | sensitivity time |")
            print("|---|---:|---:|---:|---:|---:|")
            for score, s in sens.items():
                costs = monotone_costs(s)
                pred = [predict(costs, uniform=x) if kind == "uniform" else predict(costs, x) for kind, x, _ in sets]
                meas = [m for _, _, m in sets]
                ratio = [p / m for p, m in zip(pred, meas) if m > 0.0005]
                print(f"| {score} | {len(sets)} | {spearman(pred, meas):.3f} | {float(np.corrcoef(pred, meas)[0, 1]):.3f} | "
                      f"{float(np.median(ratio)) if ratio else float('nan'):.2f} | {s['seconds']:.1f} s |")
        panels.append((name, uni, direct, fisher))
    if a.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = 2 if len(panels) > 2 else len(panels)
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.4 * rows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (name, uni, direct, fisher) in zip(axes.flat, panels):
            f = frontier(uni)
            ax.plot([u["bits_per_weight"] for u in f], [u["loss"] for u in f], "-", color="grey", label="uniform line (best format at each bits)")
            ax.plot([u["bits_per_weight"] for u in uni], [u["loss"] for u in uni], "o", color="grey")
            for u in uni:
                ax.annotate(u["kind"][8:], (u["bits_per_weight"], u["loss"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
            for run, label, m, c in ((direct, "dp plans, direct score", "s", "tab:blue"), (fisher, "dp plans, Fisher score", "^", "tab:orange")):
                ps = sorted((r for r in run if r["kind"] == "dp"), key=lambda r: r["bits_per_weight"])
                if ps:
                    ax.plot([r["bits_per_weight"] for r in ps], [r["loss"] for r in ps], m, color=c, label=label, markersize=6)
            ax.set_xlabel("average bits per weight (scales included)")
            ax.set_ylabel("held-out loss, nats/token (byte LM: per byte)")
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.out, dpi=110)
        print(f"\n{a.out}")


if __name__ == "__main__":
    main()
