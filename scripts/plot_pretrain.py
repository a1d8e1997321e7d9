#!/usr/bin/python3
"""Loss curve of a pretraining run from `mfqat train --metrics` JSON lines.

usage: scripts/plot_pretrain.py METRICS.jsonl [more.jsonl ...] -o curve.png [--seq 256 --batch 16]

Train loss (per step, plus a running mean) and validation loss, both in bits/byte, against
step and bytes seen. A run resumed with --resume appends to its metrics file and repeats the
steps after its last saved state; the last line of each step wins. Several files are drawn
as several runs (e.g. the size scan), labelled by file name.
"""
import argparse
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LN2 = math.log(2.0)


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                rows[r["step"]] = r  # a resumed run repeats steps: keep the last
    return [rows[k] for k in sorted(rows)]


def running_mean(xs, n):
    out, s = [], 0.0
    for i, x in enumerate(xs):
        s += x
        if i >= n:
            s -= xs[i - n]
        out.append(s / min(i + 1, n))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--smooth", type=int, default=50, help="running-mean window of the train loss (steps)")
    ap.add_argument("--title", default="mfqat base LM pretraining (fp32, byte-level)")
    a = ap.parse_args()

    fig, ax = plt.subplots(figsize=(8, 4.5))
    per_step = a.seq * a.batch
    for path in a.metrics:
        rows = load(path)
        if not rows:
            continue
        label = os.path.basename(path).replace(".metrics.jsonl", "").replace(".jsonl", "")
        steps = [r["step"] for r in rows]
        loss = [r["loss"] / LN2 for r in rows]
        (line,) = ax.plot(steps, running_mean(loss, a.smooth), lw=1.2, label=f"{label} train (mean of {a.smooth})")
        ax.plot(steps, loss, lw=0.3, alpha=0.25, color=line.get_color())
        v = [(r["step"], r["valid_loss"] / LN2) for r in rows if "valid_loss" in r]
        if v:
            ax.plot(*zip(*v), "o-", ms=3, color=line.get_color(), label=f"{label} validation")
            ax.annotate(f"{v[-1][1]:.3f}", v[-1], textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("bits / byte")
    ax.set_title(a.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    sec = ax.secondary_xaxis("top", functions=(lambda s: s * per_step / 1e6, lambda b: b * 1e6 / per_step))
    sec.set_xlabel(f"MB of training bytes seen ({a.batch} x {a.seq} per step)")
    fig.tight_layout()
    fig.savefig(a.output, dpi=120)
    print(a.output)


if __name__ == "__main__":
    main()
