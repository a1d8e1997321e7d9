"""Hugging Face model parity: tiny random checkpoints in the exact upstream layout (one per
supported architecture, with GQA, tied and untied heads, q/k/v biases, q/k norm, Llama 3 rope
scaling, BF16/F16/F32, one file and sharded), run by mfqat's engine (and trainer) straight from the
directory, after `mfqat import`, and from an anchor by Slice-and-Scale, against the independent
numpy reference of hf_models.py.

  hf_parity_test.py MFQAT HF_LOGITS [HF_LOGITS_TORCH]
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models  # noqa: E402

MFQAT, LOGITS = sys.argv[1], sys.argv[2]
LOGITS_TORCH = sys.argv[3] if len(sys.argv) > 3 else None
TOL = 1e-4  # max |logit - reference| / max |reference|: fp32 arithmetic against float64
QUANTIZED = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
             "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
failures = []


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(" ".join(args) + " failed: " + r.stderr.strip())
    return r.stdout


def logits(tool, model, fmt, ids, tmp):
    out = os.path.join(tmp, "logits.npy")
    run(tool, model, fmt, ",".join(map(str, ids)), out)
    return np.load(out).astype(np.float64)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check(what, got, want, tol=TOL):
    e = rel(got, want)
    ok = e <= tol
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: max rel error {e:.2e} (tolerance {tol:.0e})")
    if not ok:
        failures.append(what)


def fake_quant(w, fmts, tmp):
    """The weight as mfqat's MX fake-quant gives it, through each format in turn (`mfqat quantize`)."""
    src = os.path.join(tmp, "w.npy")
    np.save(src, np.asarray(w, np.float32))
    for f in fmts:
        dst = os.path.join(tmp, "wq.npy")
        run(MFQAT, "quantize", "-f", f, "-i", src, "-o", dst)
        src = dst
    return np.load(src)


def quantized_forward(c, values, ids, fmts, tmp):
    cache = {}

    def lw(name, W):
        if name.endswith(QUANTIZED):
            if name not in cache:
                cache[name] = fake_quant(values[name], fmts, tmp)
            return cache[name]
        return W
    return hf_models.forward(c, values, ids, lw)


def check_eval_contract(tmp):
    """`mfqat eval --ctx N --json` against the reference: the text's ids (`mfqat tokenize`, which
    the tokenizer tests hold to the JS oracle), consecutive windows of N, every token after a
    window's first scored, mean natural-log loss."""
    import json
    name = "llama3"
    d = os.path.join(tmp, name)
    c = hf_models.config_for(name)
    values = hf_models.write_model(name, d, seed=sum(map(ord, name)))[1]
    hf_models.write_tokenizer(d, c["vocab_size"])
    text = os.path.join(tmp, "text.txt")
    with open(text, "w") as f:
        f.write("the sea and the weather in the north. " * 6 + "On the hill there is a house where the wind blows.\n" * 3)
    with open(text) as f:
        content = f.read()
    ids = json.loads(run(MFQAT, "tokenize", d, "--text", content, "--json"))["ids"]
    ctx, nll, n = 16, 0.0, 0
    for s0 in range(0, len(ids) - 1, ctx):
        win = ids[s0:s0 + ctx]
        lg = hf_models.forward(c, values, win)
        for t in range(len(win) - 1):
            row = lg[t] - lg[t].max()
            nll += np.log(np.exp(row).sum()) - row[win[t + 1]]
            n += 1
    got = json.loads(run(MFQAT, "eval", d, "--text", text, "--ctx", str(ctx), "--formats", "fp32", "--json").strip().splitlines()[0])
    ok = got["tokens"] == n and abs(got["nll"] - nll / n) < 1e-4 and abs(got["ppl"] - np.exp(nll / n)) < 1e-3 * np.exp(nll / n)
    print(f"  {'ok  ' if ok else 'FAIL'} eval contract: {got['tokens']} tokens scored (reference {n}), nll {got['nll']:.6f} "
          f"(reference {nll / n:.6f})")
    if not ok:
        failures.append("eval contract")
    # 40 tokens of a random model: some land on ids the tiny tokenizer does not have (its vocab is
    # padded, as Qwen's is), which decode to no text
    g = json.loads(run(MFQAT, "generate", d, "-p", content[:40], "-n", "40", "--temperature", "1", "--seed", "3", "--json"))
    want = json.loads(run(MFQAT, "tokenize", d, "--text", content[:40], "--json"))["ids"]
    ok = g["prompt_ids"] == want and len(g["token_ids"]) >= 1
    print(f"  {'ok  ' if ok else 'FAIL'} generate --json reports the prompt's ids {g['prompt_ids'][:6]}... and the new ones {g['token_ids'][:8]}...")
    if not ok:
        failures.append("generate ids")
    # MF-QAT of the imported model on its own tokens, then its anchor at a derived format
    out = os.path.join(tmp, "mf.safetensors")
    run(MFQAT, "train", "--init", d, "--text", text, "--mode", "mf", "--formats", "mxint4,mxint8", "--steps", "3", "--seq", "16",
        "--batch", "2", "--json", "-o", out)
    anchor = os.path.join(tmp, "mf_a8.safetensors")
    run(MFQAT, "export", "--anchor", "mxint8", out, "-o", anchor)
    e = json.loads(run(MFQAT, "eval", anchor, "--text", text, "--ctx", str(ctx), "--formats", "mxint4", "--json").strip())
    ok = e["format"] == "mxint4" and e["tokens"] == n and np.isfinite(e["nll"])
    print(f"  {'ok  ' if ok else 'FAIL'} train --init DIR --text (MF-QAT on its tokens) -> anchor -> eval mxint4: nll {e['nll']:.4f} over {e['tokens']} tokens")
    if not ok:
        failures.append("train --init")


def main():
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in hf_models.MODELS if m in os.environ.get("MFQAT_HF_MODELS", m)]:
            print(name)
            d = os.path.join(tmp, name)
            c, values = hf_models.write_model(name, d, seed=sum(map(ord, name)))
            ids = [int(i) for i in rng.integers(0, c["vocab_size"], 24)]
            ref = hf_models.forward(c, values, ids)
            direct = logits(LOGITS, d, "fp32", ids, tmp)
            check(f"{name} engine fp32 from the directory", direct, ref)
            if LOGITS_TORCH:
                check(f"{name} trainer (libtorch) fp32 from the directory", logits(LOGITS_TORCH, d, "fp32", ids, tmp), ref)
            imported = os.path.join(tmp, name + ".safetensors")
            run(MFQAT, "import", d, "-o", imported)
            same = np.array_equal(logits(LOGITS, imported, "fp32", ids, tmp), direct)
            print(f"  {'ok  ' if same else 'FAIL'} {name} imported master gives the directory's logits bit for bit")
            if not same:
                failures.append(name + " import")
            for fmt in ("mxint8", "mxfp4_e2m1"):
                check(f"{name} engine {fmt} (quantized from the master)", logits(LOGITS, d, fmt, ids, tmp),
                      quantized_forward(c, values, ids, [fmt], tmp))
            anchor = os.path.join(tmp, name + "_mxint8.safetensors")
            run(MFQAT, "export", "--anchor", "mxint8", d, "-o", anchor)
            check(f"{name} engine mxint4 sliced from the mxint8 anchor", logits(LOGITS, anchor, "mxint4", ids, tmp),
                  quantized_forward(c, values, ids, ["mxint8", "mxint4"], tmp))
            if LOGITS_TORCH and name == "qwen3":
                check(f"{name} trainer (libtorch) mxint4 fake-quant", logits(LOGITS_TORCH, d, "mxint4", ids, tmp),
                      quantized_forward(c, values, ids, ["mxint4"], tmp))
        check_eval_contract(tmp)
    if failures:
        print(f"{len(failures)} failed: " + ", ".join(failures))
        sys.exit(1)
    print("all Hugging Face parity checks passed")


main()
