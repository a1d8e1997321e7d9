#!/usr/bin/env python3
"""Tables, plots and automatic claim checks for scripts/study.sh.

Usage: study_report.py OUT DOCS
Reads OUT/{lm,mlp}/... (eval.*.jsonl, times.jsonl) and writes DOCS/results.md and
DOCS/study_<task>_{metric,gap,anchor}.png. DOCS/results_reading.md, when present, is the
hand-written reading and is copied into results.md. Fails (non-zero) when a table cell the
study should have produced is missing or not finite.
"""
import glob
import json
import math
import os
import platform
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT, DOCS = sys.argv[1], sys.argv[2]
os.makedirs(DOCS, exist_ok=True)
FAMILY_ANCHOR = {"int": "mxint8", "fp": "mxfp8_e4m3"}
STRATEGIES = ["joint", "cycle", "random"]
TASKS = {
    "lm": {"title": "Byte-level LM on Austen (test novel: Persuasion)", "key": "bits_per_byte", "unit": "bits/byte",
           "lower": True, "fmt": "{:.4f}", "scale": 1.0},
    "mlp": {"title": "MLP classifier on Fashion-MNIST (test set, 10 000 images)", "key": "accuracy", "unit": "accuracy %",
            "lower": False, "fmt": "{:.2f}", "scale": 100.0},
}
problems = []


def load(path):
    if not os.path.exists(path):
        return {}
    return {r["format"]: r for r in map(json.loads, open(path))}


class MS(tuple):
    """(mean, std) that also knows how many values it summarises (.n)."""


def mean_std(xs):
    xs = [x for x in xs if x is not None]
    r = MS((statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (None, None))
    r.n = len(xs)
    return r


def train_formats(task_dir, fam):
    """Trained formats of a family = the SF models present (seed directories)."""
    names = set()
    for p in glob.glob(os.path.join(task_dir, "s*", "sf_*.safetensors")):
        n = os.path.basename(p)[3:-len(".safetensors")]
        if not n.endswith(".anchor") and (n.startswith("mxint") == (fam == "int")):
            names.add(n)
    return names


def task_report(task):
    spec = TASKS[task]
    tdir = os.path.join(OUT, task)
    if not os.path.isdir(tdir):
        return None
    key, scale, lower = spec["key"], spec["scale"], spec["lower"]
    seeds = sorted(int(m.group(1)) for d in glob.glob(os.path.join(tdir, "s*"))
                   if (m := re.fullmatch(r"s(\d+)", os.path.basename(d))))

    def val(rows, f):
        r = rows.get(f)
        if r is None or r.get(key) is None:
            return None
        v = r[key] * scale
        if not math.isfinite(v):
            problems.append(f"{task}: non-finite {key} at {f}")
        return v

    def better(a, b):  # signed gap a-b, positive = a is worse
        return (a - b) if lower else (b - a)

    pre = load(os.path.join(tdir, "eval.pre.master.jsonl"))
    res = {"task": task, "spec": spec, "seeds": seeds, "families": {}, "fp32": val(pre, "fp32")}
    ft = {s: load(os.path.join(tdir, f"s{s}", "eval.ft_fp32.master.jsonl")) for s in seeds}
    res["ft_fp32"] = mean_std([val(ft[s], "fp32") for s in seeds]) if any(ft.values()) else None
    for fam in FAMILY_ANCHOR:
        trained = train_formats(tdir, fam)
        if not trained:
            continue
        pre_anchor = load(os.path.join(tdir, f"eval.pre.{fam}.anchor.jsonl"))
        models = [f"mf_{fam}_{st}" for st in STRATEGIES] + [f"sf_{f}" for f in sorted(trained)]
        ev = {(m, s, src): load(os.path.join(tdir, f"s{s}", f"eval.{m}.{src}.jsonl"))
              for m in models for s in seeds for src in ("master", "anchor")}
        models = [m for m in models if any(ev[(m, s, "master")] for s in seeds)]
        # evaluated formats, in the order of the evaluations (highest precision first)
        formats = []
        for m in models:
            for s in seeds:
                for f in ev[(m, s, "master")]:
                    if f not in formats:
                        formats.append(f)
        bpw = {}
        for rows in ev.values():
            for f, r in rows.items():
                bpw[f] = r["bits_per_weight"]

        def per_seed(m, f, src="master"):
            return [val(ev[(m, s, src)], f) for s in seeds]

        rows = []
        for f in formats:
            row = {"format": f, "bpw": bpw[f], "trained": f in trained, "ptq": val(pre, f), "ptq_anchor": val(pre_anchor, f)}
            if any(ft.values()):
                row["ft"] = mean_std([val(ft[s], f) for s in seeds])
            # SF reference: the model trained at f; at an unseen format the best SF model there
            if f in trained:
                row["sf_ref"], row["sf_name"] = f"sf_{f}", f"sf_{f}"
            else:
                cands = [(mean_std(per_seed(m, f))[0], m) for m in models if m.startswith("sf_")]
                cands = [c for c in cands if c[0] is not None]
                best = (min if lower else max)(cands) if cands else (None, None)
                row["sf_ref"], row["sf_name"] = best[1], f"best SF ({best[1]})" if best[1] else None
            row["sf"] = mean_std(per_seed(row["sf_ref"], f)) if row["sf_ref"] else (None, None)
            for m in models:
                row[m + ".seeds"] = per_seed(m, f)
                row[m] = mean_std(row[m + ".seeds"])
                a, ms = per_seed(m, f, "anchor"), per_seed(m, f)
                row[m + ".anchor"] = mean_std(a)
                row[m + ".ss"] = [x - y for x, y in zip(a, ms) if x is not None and y is not None]
            for st in STRATEGIES:
                m = f"mf_{fam}_{st}"
                if m in models and row["sf_ref"]:
                    row[m + ".gap"] = [better(x, y) for x, y in zip(per_seed(m, f), per_seed(row["sf_ref"], f))
                                       if x is not None and y is not None]
            rows.append(row)
        res["families"][fam] = {"rows": rows, "models": models, "trained": trained, "formats": formats}
    return res


def cell(ms, spec, n=None):
    m, s = ms if isinstance(ms, tuple) else (ms, None)
    if m is None:
        return "–"
    t = spec["fmt"].format(m)
    k = getattr(ms, "n", None)
    if s is not None and n and n > 1 and k and k > 1:
        t += " ± " + spec["fmt"].format(s)
    if n and k is not None and k < n:
        t += f" (n={k})"
    return t


def gap_cell(xs, spec):
    if not xs:
        return "–"
    m, s = mean_std(xs)
    f = "{:+.4f}" if spec["key"] == "bits_per_byte" else "{:+.2f}"
    return f.format(m) + (" ± " + f.format(s)[1:] if len(xs) > 1 else "")


def tables(res, md):
    spec, n = res["spec"], len(res["seeds"])
    for fam, d in res["families"].items():
        anchor = FAMILY_ANCHOR[fam]
        tr = ", ".join(f for f in d["formats"] if f in d["trained"])
        md.append(f"\n**{fam.upper()} family, {spec['unit']}** ({'lower' if spec['lower'] else 'higher'} is better; "
                  f"mean ± std over {n} seed{'s' if n > 1 else ''}). Trained formats: {tr}; † = no model saw this "
                  f"format in training. fp32 model: {cell(res['fp32'], spec)}"
                  + (f", fp32 fine-tune: {cell(res['ft_fp32'], spec, n)}" if res.get("ft_fp32") else "") + ".\n")
        has_ft = any("ft" in r for r in d["rows"])
        mf = [m for m in d["models"] if m.startswith("mf_")]
        head = ["format", "bits/w", "PTQ", f"PTQ via {anchor} anchor"] + (["PTQ of fp32 fine-tune"] if has_ft else []) + \
               ["SF-QAT (model trained at this format)"] + [f"MF {m.split('_')[-1]}" for m in mf] + \
               [f"MF {m.split('_')[-1]} via anchor" for m in mf]
        md.append("| " + " | ".join(head) + " |")
        md.append("|---|---:|" + "---:|" * (len(head) - 2))
        for r in d["rows"]:
            c = [r["format"] + ("" if r["trained"] else " †"), f"{r['bpw']:.2f}", cell(r["ptq"], spec), cell(r["ptq_anchor"], spec)]
            if has_ft:
                c.append(cell(r.get("ft", (None, None)), spec, n))
            sf = cell(r["sf"], spec, n)
            c.append(sf if r["trained"] or sf == "–" else f"{sf} ({r['sf_ref']})")
            c += [cell(r[m], spec, n) for m in mf] + [cell(r[m + ".anchor"], spec, n) for m in mf]
            md.append("| " + " | ".join(c) + " |")
            needed = [r["ptq"], r["sf"][0]] + [r[m][0] for m in mf]
            if any(v is None for v in needed):
                problems.append(f"{res['task']} {fam}: missing cell at {r['format']}")
        # every SF model at every format: does a single-format model transfer?
        sf = [m for m in d["models"] if m.startswith("sf_")]
        md.append(f"\nEvery SF-QAT model of the {fam.upper()} family at every format (mean over seeds, master weights):\n")
        md.append("| format | " + " | ".join(sf) + " |")
        md.append("|---|" + "---:|" * len(sf))
        for r in d["rows"]:
            md.append(f"| {r['format']} | " + " | ".join(cell(r[m][0], spec) for m in sf) + " |")


def checks(res, md):
    """The three claims, measured: MF vs SF at trained formats, unseen formats, Slice-and-Scale cost."""
    spec = res["spec"]
    md.append(f"\nMF-minus-SF gap, per seed then mean ± std (positive = MF is worse, in {spec['unit']}); at a trained "
              f"format against the SF model trained there, at an unseen format (†) against the best SF model there. "
              f"Slice-and-Scale cost = (from anchor) − (from master), positive = the anchor path is worse; "
              f"over seeds and the three MF strategies.\n")
    for fam, d in res["families"].items():
        mf = [m for m in d["models"] if m.startswith("mf_")]
        md.append(f"\n| {fam.upper()} format | " + " | ".join(f"MF {m.split('_')[-1]} − SF" for m in mf) +
                  " | Slice-and-Scale cost (MF) | Slice-and-Scale cost (PTQ) |")
        md.append("|---|" + "---:|" * (len(mf) + 2))
        for r in d["rows"]:
            ss = [x for m in mf for x in r[m + ".ss"]]
            ss = [x if spec["lower"] else -x for x in ss]
            ptq_ss = None if r["ptq_anchor"] is None or r["ptq"] is None else (r["ptq_anchor"] - r["ptq"]) * (1 if spec["lower"] else -1)
            md.append(f"| {r['format'] + ('' if r['trained'] else ' †')} | " + " | ".join(gap_cell(r.get(m + '.gap'), spec) for m in mf) +
                      f" | {gap_cell(ss, spec)} | {gap_cell([ptq_ss] if ptq_ss is not None else [], spec)} |")
    # One model for every format: each model's worst gap, over the trained formats, to the SF
    # model trained at that format (per seed, then mean ± std).
    md.append(f"\nOne model for all formats: each single model's worst gap over the trained formats to the SF model "
              f"trained at that format (per seed, then mean ± std; positive = worse, {spec['unit']}).\n")
    for fam, d in res["families"].items():
        trained = [r for r in d["rows"] if r["trained"]]
        md.append(f"| {fam.upper()} model | worst gap | at |")
        md.append("|---|---:|---|")
        for m in d["models"]:
            per = []
            for i in range(len(res["seeds"])):
                gaps = []
                for r in trained:
                    a, b = r[m + ".seeds"][i], r[r["sf_ref"] + ".seeds"][i]
                    if a is not None and b is not None:
                        gaps.append(((a - b) if spec["lower"] else (b - a), r["format"]))
                if gaps:
                    per.append(max(gaps))
            if not per:
                continue
            worst_at = max(set(f for _, f in per), key=lambda f: sum(1 for _, g in per if g == f))
            md.append(f"| {m} | {gap_cell([g for g, _ in per], spec)} | {worst_at} |")
        md.append("")


def side_tables(res, md):
    """LM only: next-word accuracy on the test windows, and bits/byte on the out-of-domain text
    (eval.*.ood.jsonl, OOD_TEXT of study.sh): PTQ of the base, MF joint and SF at each format."""
    if res["task"] != "lm":
        return
    tdir, seeds, n = os.path.join(OUT, res["task"]), res["seeds"], len(res["seeds"])
    pct = {"fmt": "{:.2f}"}
    bpb = res["spec"]
    for title, src, key, scale, spec in [
            ("Next-word accuracy, % (greedy decoding from the true prefix writes the whole next word and the byte that ends it; "
             "same test windows as above; higher is better)", "master", "next_word_accuracy", 100.0, pct),
            ("Out-of-domain text, bits/byte (OOD_TEXT of study.sh, the whole text; lower is better)", "ood", "bits_per_byte", 1.0, bpb)]:
        pre = load(os.path.join(tdir, f"eval.pre.{src}.jsonl"))
        if not pre or not any(key in r for r in pre.values()):
            continue
        md.append(f"\n**{title}.** Mean ± std over {n} seeds.\n")
        for fam, d in res["families"].items():
            models = [f"mf_{fam}_joint"] + [m for m in d["models"] if m.startswith("sf_")]
            ev = {(m, sd): load(os.path.join(tdir, f"s{sd}", f"eval.{m}.{src}.jsonl")) for m in models for sd in seeds}
            models = [m for m in models if any(ev[(m, sd)] for sd in seeds)]
            md.append(f"| {fam.upper()} format | PTQ of the base | " + " | ".join(models) + " |")
            md.append("|---|---:|" + "---:|" * len(models))
            for r in d["rows"]:
                f = r["format"]
                def v(rows):
                    x = rows.get(f, {}).get(key)
                    return None if x is None else x * scale
                c = [f + ("" if r["trained"] else " †"), cell(v(pre), spec)]
                c += [cell(mean_std([v(ev[(m, sd)]) for sd in seeds]), spec, n) for m in models]
                md.append("| " + " | ".join(c) + " |")
            md.append("")


def nz(v):
    return float("nan") if v is None else v


def plots(res):
    spec, task = res["spec"], res["task"]
    fams = list(res["families"].items())
    if not fams:
        return []
    files = []

    # 1. metric against bits per weight, per method, one panel per family
    fig, axes = plt.subplots(1, len(fams), figsize=(6.2 * len(fams), 4.4), squeeze=False)
    for ax, (fam, d) in zip(axes[0], fams):
        rows = sorted(d["rows"], key=lambda r: (r["bpw"], r["format"]))
        seen = {}
        xs = []
        for r in rows:  # two formats with the same bits per weight (e.g. e4m3/e5m2) side by side
            k = seen.get(r["bpw"], 0)
            seen[r["bpw"]] = k + 1
            xs.append(r["bpw"] + 0.12 * k)
        ax.plot(xs, [nz(r["ptq"]) for r in rows], "k--", marker="x", label="PTQ of the fp32 model")
        for m, style in [(f"mf_{fam}_{st}", st) for st in STRATEGIES]:
            if m in d["models"]:
                ax.errorbar(xs, [nz(r[m][0]) for r in rows], yerr=[nz(r[m][1]) for r in rows], marker="o", ms=4, capsize=2,
                            label=f"MF-QAT {style}")
        tx = [(x, r) for x, r in zip(xs, rows) if r["trained"]]
        ax.errorbar([x for x, _ in tx], [nz(r["sf"][0]) for _, r in tx], yerr=[nz(r["sf"][1]) for _, r in tx], fmt="s", ms=7, mfc="none",
                    capsize=2, color="crimson", label="SF-QAT at its own format")
        for x, r in zip(xs, rows):
            y = next((v for v in (r["ptq"], r[d["models"][0]][0]) if v is not None), None)
            if y is None:
                continue
            ax.annotate(r["format"].replace("mx", ""), (x, y), fontsize=7, rotation=60, xytext=(2, 4), textcoords="offset points")
        ax.set_xlabel("bits per weight (incl. the shared scale)")
        ax.set_ylabel(spec["unit"])
        ax.set_title(f"{task.upper()}: {fam.upper()} family")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(f"study_{task}_metric.png")
    fig.savefig(os.path.join(DOCS, files[-1]), dpi=110)
    plt.close(fig)

    # 2. MF - SF gap per format; 3. anchor - master per format
    for kind in ("gap", "anchor"):
        fig, axes = plt.subplots(1, len(fams), figsize=(6.2 * len(fams), 3.8), squeeze=False)
        for ax, (fam, d) in zip(axes[0], fams):
            rows = d["rows"]
            mf = [m for m in d["models"] if m.startswith("mf_")]
            series = [(m.split("_")[-1], [r.get(m + ".gap") or [] for r in rows]) for m in mf] if kind == "gap" else \
                [(m.split("_")[-1], [[x if spec["lower"] else -x for x in r[m + ".ss"]] for r in rows]) for m in mf] + \
                [("PTQ", [[(r["ptq_anchor"] - r["ptq"]) * (1 if spec["lower"] else -1)] if r["ptq_anchor"] is not None and r["ptq"] is not None else [] for r in rows])]
            w = 0.8 / max(1, len(series))
            for i, (name, vals) in enumerate(series):
                ms = [mean_std(v) if v else (0.0, 0.0) for v in vals]
                ax.bar([j + i * w for j in range(len(rows))], [m for m, _ in ms], w, yerr=[s for _, s in ms], capsize=2, label=name)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks([j + 0.4 - w / 2 for j in range(len(rows))])
            ax.set_xticklabels([r["format"].replace("mx", "") + ("" if r["trained"] else "†") for r in rows], rotation=35, fontsize=8)
            ax.set_ylabel(("MF − SF" if kind == "gap" else "anchor − master") + f" ({spec['unit']}, + = worse)")
            ax.set_title(f"{task.upper()} {fam.upper()}: " + ("MF-QAT minus SF-QAT" if kind == "gap" else "Slice-and-Scale cost"))
            ax.grid(alpha=0.3, axis="y")
            ax.legend(fontsize=8)
        fig.tight_layout()
        files.append(f"study_{task}_{kind}.png")
        fig.savefig(os.path.join(DOCS, files[-1]), dpi=110)
        plt.close(fig)
    return files


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


md = ["# Results: the multi-format QAT study", "",
      "Produced by `bash scripts/study.sh` (this file and the `study_*.png` plots are written by "
      "`scripts/study_report.py`; the reading at the end is written by hand from these numbers). "
      "Methods, recipes and knobs are in the script's header and in [training.md](training.md).", ""]
reports = [r for r in (task_report(t) for t in TASKS) if r]
for res in reports:
    spec = res["spec"]
    md.append(f"## {spec['title']}\n")
    md.append(f"Seeds: {', '.join(map(str, res['seeds']))} (QAT seeds; one fp32 pretrained model per task).")
    tables(res, md)
    side_tables(res, md)
    md.append("\n### Claims, measured\n")
    checks(res, md)
    md.append("")
    for f in plots(res):
        md.append(f"![{f}]({f})")
    md.append("")

times = os.path.join(OUT, "times.jsonl")
walls = os.path.join(OUT, "wall.jsonl")
md.append("## Cost\n")
if os.path.exists(times):
    tt = list(map(json.loads, open(times)))
    md.append(f"{len(tt)} jobs, {sum(t['seconds'] for t in tt) / 60:.1f} job-minutes in all "
              f"(pretraining {sum(t['seconds'] for t in tt if t['output'].endswith('pre.safetensors')) / 60:.1f}).")
if os.path.exists(walls):
    ww = list(map(json.loads, open(walls)))
    md.append(f"Wall time of the study: {sum(w['seconds'] for w in ww) / 60:.1f} min over {len(ww)} invocation(s) of "
              f"`scripts/study.sh` ({', '.join(str(w['jobs']) + ' jobs x ' + str(w['threads']) + ' thread(s)' for w in ww[-1:])}).")
md.append(f"Machine: {machine()}.\n")

reading = os.path.join(DOCS, "results_reading.md")
md.append("## Reading\n")
md.append(open(reading).read().strip() if os.path.exists(reading) else "(no hand-written reading for this run)")
open(os.path.join(DOCS, "results.md"), "w").write("\n".join(md) + "\n")
print(f"study_report: wrote {os.path.join(DOCS, 'results.md')}")
if problems:
    print("study_report: incomplete or non-finite results:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
