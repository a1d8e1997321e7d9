"""A random-weight Hugging Face checkpoint of a real model's shape (exact upstream layout, BF16,
sharded like the hub's files), for measuring import / anchor export time, peak RSS and decode
speed without downloading a model.

  /usr/bin/python3 scripts/make_synthetic_hf.py OUT_DIR [--shape llama32_1b] [--tokenizer tokenizer.json]
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "hf"))
import hf_models  # noqa: E402

SHAPES = {
    # meta-llama/Llama-3.2-1B's config.json
    "llama32_1b": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
                   "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                   "vocab_size": 128256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                   "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                    "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                   "tie_word_embeddings": True, "torch_dtype": "bfloat16", "hidden_act": "silu",
                   "bos_token_id": 128000, "eos_token_id": 128001},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="llama32_1b", choices=sorted(SHAPES))
    ap.add_argument("--tokenizer", help="a tokenizer.json to copy beside the weights")
    ap.add_argument("--shard-bytes", type=int, default=1 << 30)
    a = ap.parse_args()
    c = SHAPES[a.shape]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    rng = np.random.default_rng(1)
    shapes = hf_models.tensor_shapes(c)
    # shards of about shard_bytes, tensors in the hub's order
    shards, cur, size = [], [], 0
    for n, s in shapes.items():
        b = 2 * int(np.prod(s))
        if cur and size + b > a.shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(n)
        size += b
    shards.append(cur)
    weight_map, total = {}, 0
    for i, names in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for n in names:
            s = shapes[n]
            if n.endswith("norm.weight"):
                w = np.ones(s, np.float32)
            else:
                w = rng.standard_normal(s, dtype=np.float32) * np.float32(0.02 if n == "model.embed_tokens.weight" else 1 / np.sqrt(s[1]))
            tensors[n] = ("BF16", s, hf_models.bf16_bits(w).tobytes())
            del w
            weight_map[n] = fn
            total += len(tensors[n][2])
        hf_models.write_safetensors(os.path.join(a.out, fn), tensors, {"format": "pt"})
        print(f"wrote {fn} ({len(names)} tensors)", flush=True)
        del tensors
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    if a.tokenizer:
        shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    print(f"{a.out}: {a.shape}, {total / 1e9:.2f} GB of BF16 weights in {len(shards)} shards")


main()
