#!/usr/bin/env python3
"""A random fp32 master of the synthetic large shape (`bench --synthetic large`: 2048 wide, 16 layers,
16 heads, FFN 5472, vocab 256; here max_seq 2048) in mfqat's LM checkpoint layout, so that the same
weights can be exported as anchors and as GGUFs for llama.cpp (bench/prefill_vs_llama_cpp.sh).

  /usr/bin/python3 bench/make_large_master.py OUT.safetensors [--seed 1] [--max-seq 2048]
"""
import argparse
import json
import struct

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seq", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--ffn", type=int, default=5472)
    a = ap.parse_args()
    d, f, v = a.dim, a.ffn, 256
    shapes = [("tok_emb.weight", (v, d))]
    for l in range(a.layers):
        p = f"blocks.{l}."
        shapes += [(p + "attn_norm.weight", (d,)), (p + "mlp_norm.weight", (d,)), (p + "wq.weight", (d, d)), (p + "wk.weight", (d, d)),
                   (p + "wv.weight", (d, d)), (p + "wo.weight", (d, d)), (p + "w1.weight", (f, d)), (p + "w2.weight", (d, f)),
                   (p + "w3.weight", (f, d))]
    shapes += [("norm.weight", (d,)), ("head.weight", (v, d))]
    cfg = {"dim": d, "ffn_dim": f, "max_seq": a.max_seq, "model": "lm", "n_heads": a.heads, "n_layers": a.layers, "norm_eps": 1e-5,
           "quantize_head": False, "rope_theta": 10000.0, "vocab": v}
    header, off = {}, 0
    for name, shp in shapes:
        n = int(np.prod(shp)) * 4
        header[name] = {"dtype": "F32", "shape": list(shp), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"mfqat.format_version": "1", "mfqat.model_config": json.dumps(cfg, separators=(",", ":"))}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    rng = np.random.default_rng(a.seed)
    with open(a.out, "wb") as fo:
        fo.write(struct.pack("<Q", len(hb)))
        fo.write(hb)
        for name, shp in shapes:
            if name.endswith("norm.weight"):
                x = np.ones(shp, np.float32)
            else:
                # 1/sqrt(fan-in) keeps the activations of a random deep stack in range
                x = (rng.standard_normal(shp, dtype=np.float32) / np.sqrt(shp[-1])).astype(np.float32)
            fo.write(x.tobytes())
    print(f"{a.out}: {off / 2**30:.2f} GiB fp32, {len(shapes)} tensors")


if __name__ == "__main__":
    main()
