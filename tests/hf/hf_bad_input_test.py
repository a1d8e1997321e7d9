"""Bad Hugging Face input: each case gets one line on stderr naming the file and the thing, a
non-zero exit, and nothing written.

  hf_bad_input_test.py MFQAT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_models  # noqa: E402

MFQAT = sys.argv[1]
failures = []


def expect_refusal(what, d, must_name, cmd="import"):
    out = os.path.join(os.path.dirname(d), "out.safetensors")
    if os.path.exists(out):
        os.remove(out)
    if cmd == "import":
        args = [MFQAT, "import", d, "-o", out]
    elif cmd == "export":
        args = [MFQAT, "export", "--anchor", "mxint8", d, "-o", out]
    else:
        args = [MFQAT] + cmd
    r = subprocess.run(args, capture_output=True, text=True)
    err = r.stderr.strip()
    ok = r.returncode != 0 and err.count("\n") == 0 and all(m in err for m in must_name) and not os.path.exists(out)
    leftovers = [f for f in os.listdir(os.path.dirname(d)) if ".tmp." in f]
    ok = ok and not leftovers
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: rc {r.returncode}: {err}")
    if not ok:
        failures.append(what)


def fresh(tmp, name="llama3"):
    d = os.path.join(tmp, "m")
    shutil.rmtree(d, ignore_errors=True)
    hf_models.write_model(name, d, seed=3)
    return d


def edit_json(path, f):
    with open(path) as fh:
        j = json.load(fh)
    f(j)
    with open(path, "w") as fh:
        json.dump(j, fh)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        d = fresh(tmp)
        os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
        expect_refusal("a missing shard", d, ["model-00002-of-00002.safetensors", "missing"])

        d = fresh(tmp)
        idx = os.path.join(d, "model.safetensors.index.json")
        with open(idx) as fh:
            text = fh.read()
        # a repeated key (json.load would keep only the last): add one by hand
        text = text.replace('"weight_map": {', '"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors", ', 1)
        with open(idx, "w") as fh:
            fh.write(text)
        expect_refusal("an index naming a tensor twice", d, ["index.json", "model.norm.weight", "twice"])

        d = fresh(tmp)
        edit_json(os.path.join(d, "model.safetensors.index.json"), lambda j: j["weight_map"].pop("model.layers.1.mlp.up_proj.weight"))
        expect_refusal("an index naming a tensor not at all", d, ["model.layers.1.mlp.up_proj.weight", "missing"])

        d = fresh(tmp)
        edit_json(os.path.join(d, "config.json"), lambda j: j.update(intermediate_size=80))
        expect_refusal("a tensor shape that disagrees with config.json", d, ["mlp.", "has shape", "config.json implies", "80"])

        d = fresh(tmp, "mistral")
        st = os.path.join(d, "model.safetensors")
        with open(st, "rb") as fh:
            raw = bytearray(fh.read())
        n = int.from_bytes(raw[:8], "little")
        header = raw[8:8 + n].decode()
        header = header.replace('"model.norm.weight": {"dtype": "F32"', '"model.norm.weight": {"dtype": "I32"', 1)
        raw[8:8 + n] = header.encode()
        with open(st, "wb") as fh:
            fh.write(raw)
        expect_refusal("a tensor dtype that is not a float", d, ["model.safetensors", "model.norm.weight", "I32"])

        d = fresh(tmp, "mistral")
        st = os.path.join(d, "model.safetensors")
        os.truncate(st, os.path.getsize(st) - 100)
        expect_refusal("a truncated file", d, ["model.safetensors"])

        d = fresh(tmp)
        edit_json(os.path.join(d, "config.json"), lambda j: j.update(architectures=["GPT2LMHeadModel"]))
        expect_refusal("another architecture", d, ["config.json", "GPT2LMHeadModel"])

        d = fresh(tmp)
        edit_json(os.path.join(d, "config.json"), lambda j: j.update(rope_scaling={"rope_type": "yarn", "factor": 4.0}))
        expect_refusal("another rope scaling", d, ["config.json", "yarn"])

        d = fresh(tmp, "qwen2")
        edit_json(os.path.join(d, "config.json"), lambda j: j.update(use_sliding_window=True))
        expect_refusal("a sliding window in effect", d, ["config.json", "use_sliding_window"])

        d = fresh(tmp)
        edit_json(os.path.join(d, "config.json"), lambda j: j.update(num_local_experts=8))
        expect_refusal("a mixture of experts", d, ["config.json", "num_local_experts"], cmd="export")

        d = fresh(tmp)
        hf_models.write_tokenizer(d, hf_models.BASE["vocab_size"])
        edit_json(os.path.join(d, "tokenizer.json"), lambda j: j["model"].update(type="WordPiece"))
        expect_refusal("a tokenizer.json of an unknown model type", d, ["tokenizer.json", "WordPiece"])

        d = fresh(tmp)
        hf_models.write_tokenizer(d, hf_models.BASE["vocab_size"])
        bad = os.path.join(tmp, "latin1.txt")
        with open(bad, "wb") as fh:
            fh.write(b"caf\xe9 au lait\n")
        expect_refusal("a text that is not UTF-8", d, ["latin1.txt", "UTF-8"], cmd=["eval", d, "--text", bad, "--ctx", "16"])
    if failures:
        print(f"{len(failures)} failed: " + ", ".join(failures))
        sys.exit(1)
    print("every bad input refused in one line")


main()
