#!/usr/bin/env python3
"""`mfqat export --to compressed-tensors`: a Hugging Face directory in compressed-tensors'
mxfp4-pack-quantized format, read here with the format's own semantics (written from
compressed-tensors' MXFP4 compressor: weight_packed U8 [out, in/2] with element 2i in the low
nibble and 2i+1 in the high one, E2M1 codes 0..7 = 0, 0.5, 1, 1.5, 2, 3, 4, 6 and bit 3 the sign;
weight_scale U8 [out, in/32] holding E, value = e2m1 * 2^(E-127)); the dequantized model runs
through the independent numpy reference of the Hugging Face modeling code (tests/hf/hf_models.py)
and must give mfqat's engine's MXFP4 logits. Also: config.json's quantization_config, the dense
dtype (BF16 when exact), mfqat's byte LM with a byte-level tokenizer.json, and refusals.

  compressed_tensors_test.py MFQAT HF_LOGITS
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "hf"))
import hf_models  # noqa: E402

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float64)


def run(*cmd, ok=True):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if ok and r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        if v["dtype"] == "U8":
            a = np.frombuffer(raw, np.uint8)
        elif v["dtype"] == "BF16":
            a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif v["dtype"] == "F32":
            a = np.frombuffer(raw, np.float32)
        else:
            sys.exit(f"FAIL: {k}: unexpected dtype {v['dtype']}")
        out[k] = (v["dtype"], a.reshape(v["shape"]))
    return out


def dequantize(packed, scale):
    codes = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    codes[:, 0::2] = packed & 15
    codes[:, 1::2] = packed >> 4
    return E2M1[codes] * np.exp2(np.repeat(scale.astype(np.float64) - 127, 32, axis=1))


def main():
    mfqat, hf_logits = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("llama3", "qwen2", "qwen3"):
            d = os.path.join(tmp, name)
            c, _ = hf_models.write_model(name, d)
            hf_models.write_tokenizer(d, c["vocab_size"])
            out = os.path.join(tmp, name + "_ct")
            info = json.loads(run(mfqat, "export", "--to", "compressed-tensors", "--format", "mxfp4", d, "-o", out, "--json").stdout)
            cfg = json.load(open(os.path.join(out, "config.json")))
            q = cfg["quantization_config"]
            w = q["config_groups"]["group_0"]["weights"]
            assert q["quant_method"] == "compressed-tensors" and q["format"] == "mxfp4-pack-quantized", q
            assert q["quantization_status"] == "compressed" and q["ignore"] == ["lm_head"], q
            assert (w["num_bits"], w["type"], w["strategy"], w["group_size"], w["symmetric"], w["scale_dtype"]) == \
                (4, "float", "group", 32, True, "torch.uint8"), w
            assert cfg["architectures"] == c["architectures"] and cfg["vocab_size"] == c["vocab_size"], cfg
            assert os.path.exists(os.path.join(out, "tokenizer.json"))
            t = read_safetensors(os.path.join(out, "model.safetensors"))
            want_dense = "BF16" if c["torch_dtype"] == "bfloat16" else info["dense_dtype"]
            assert info["dense_dtype"] == want_dense, (name, info)
            weights = {}
            for k, (dt, a) in t.items():
                if k.endswith(".weight_packed"):
                    m = k[:-len(".weight_packed")]
                    scale = t[m + ".weight_scale"][1]
                    assert a.shape[1] * 2 == scale.shape[1] * 32, (k, a.shape, scale.shape)
                    weights[m + ".weight"] = dequantize(a, scale)
                elif not k.endswith(".weight_scale"):
                    assert dt == info["dense_dtype"], (k, dt)
                    weights[k] = a.astype(np.float64)
            assert not [k for k in t if "global_scale" in k or "zero_point" in k or "weight_shape" in k]
            n_lin = sum(k.endswith(".weight_packed") for k in t)
            assert n_lin == info["quantized_tensors"] == 7 * c["num_hidden_layers"], (n_lin, info)
            cfg_ref = dict(c)  # the reference follows the exported config
            cfg_ref.update({k: cfg[k] for k in ("rope_theta", "rms_norm_eps", "head_dim") if k in cfg})
            ids = np.random.default_rng(3).integers(0, c["vocab_size"] - 2, 24).tolist()
            ref = hf_models.forward(cfg_ref, weights, ids)
            npy = os.path.join(tmp, "z.npy")
            run(hf_logits, d, "mxfp4_e2m1", ",".join(map(str, ids)), npy)
            got = np.load(npy).astype(np.float64)
            err = np.abs(got - ref).max() / np.abs(ref).max()
            print(f"{name:>7}: {n_lin} MXFP4 linears + dense {info['dense_dtype']}; numpy reference on the compressed-tensors "
                  f"weights vs mfqat's MXFP4 logits: max error {err:.1e} of the logits' scale")
            if err > 1e-4:
                sys.exit(f"FAIL: {name}: the compressed-tensors directory is not mfqat's MXFP4 model")
        # mfqat's own byte LM: F32 dense tensors, a byte-level tokenizer.json with ids == bytes
        d = os.path.join(tmp, "mistral")
        c, _ = hf_models.write_model("mistral", d)
        hf_models.write_tokenizer(d, c["vocab_size"])
        master = os.path.join(tmp, "master.safetensors")
        run(mfqat, "import", d, "-o", master)
        # refusals: one line, nothing left behind
        for args, needle in ((["--format", "mxint8", master, "-o", os.path.join(tmp, "r1")], "mxfp4-pack-quantized"),
                             (["--format", "mxfp4", master, "-o", os.path.join(tmp, "llama3_ct")], "exists"),
                             ([master, "-o", os.path.join(tmp, "r2")], "needs --format")):
            r = run(mfqat, "export", "--to", "compressed-tensors", *args, ok=False)
            err = r.stderr.strip()
            if r.returncode == 0 or "\n" in err or needle not in err:
                sys.exit(f"FAIL: export {args}: exit {r.returncode}: {err!r}, wanted one line with {needle!r}")
        left = [n for n in os.listdir(tmp) if ".tmp." in n or n in ("r1", "r2")]
        assert not left, left
    print("PASS: compressed-tensors export is mfqat's MXFP4 model in the format's own semantics")


if __name__ == "__main__":
    main()
