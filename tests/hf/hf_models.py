"""Tiny random-init Hugging Face checkpoints in the exact upstream layout, and an independent
reference forward that follows the Hugging Face modeling code (transformers' LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM), in float64 numpy.

Nothing here uses mfqat's code: the safetensors writer, the bf16/fp16 rounding, the rotary tables
(including Llama 3's rope scaling), grouped-query attention, q/k/v biases and per-head q/k
RMSNorm are written from the upstream semantics.
"""
import json
import math
import os
import struct

import numpy as np

# name: (architecture, config overrides, dtype, sharded)
MODELS = {
    # Llama 3.x: GQA (4 query heads, 2 kv heads), untied head, llama3 rope scaling, bf16, sharded
    "llama3": ("LlamaForCausalLM", {"num_key_value_heads": 2, "rope_theta": 500000.0, "tie_word_embeddings": False,
                                    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16}},
               "bf16", True),
    # Llama 3.2 1B style: tied embeddings, GQA, fp16
    "llama32_tied": ("LlamaForCausalLM", {"num_key_value_heads": 1, "tie_word_embeddings": True,
                                          "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8}},
                     "f16", False),
    # Llama 2 / Mistral: multi-head attention, no scaling, fp32; Mistral with a sliding window
    "mistral": ("MistralForCausalLM", {"num_key_value_heads": 2, "sliding_window": 4096, "tie_word_embeddings": False}, "f32", False),
    # Qwen2: q/k/v biases, tied head
    "qwen2": ("Qwen2ForCausalLM", {"num_key_value_heads": 2, "tie_word_embeddings": True, "use_sliding_window": False,
                                   "sliding_window": 4096, "rope_theta": 1000000.0}, "bf16", False),
    # Qwen3: per-head q/k RMSNorm, head_dim larger than hidden_size / heads, untied
    "qwen3": ("Qwen3ForCausalLM", {"num_key_value_heads": 2, "head_dim": 32, "tie_word_embeddings": False,
                                   "rope_theta": 1000000.0}, "bf16", True),
}

BASE = {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "rms_norm_eps": 1e-6, "max_position_embeddings": 128, "hidden_act": "silu"}


def config_for(name):
    arch, over, dtype, _ = MODELS[name]
    c = dict(BASE)
    c.update(over)
    c["architectures"] = [arch]
    c["model_type"] = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
                       "Qwen3ForCausalLM": "qwen3"}[arch]
    c["torch_dtype"] = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[dtype]
    return c


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def tensor_shapes(c):
    """Hugging Face parameter names and shapes (the modeling code's nn.Linear [out, in])."""
    d, f, hd = c["hidden_size"], c["intermediate_size"], head_dim(c)
    nh, nkv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    arch = c["architectures"][0]
    out = {"model.embed_tokens.weight": (c["vocab_size"], d)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = (d,)
        out[p + "post_attention_layernorm.weight"] = (d,)
        out[p + "self_attn.q_proj.weight"] = (nh * hd, d)
        out[p + "self_attn.k_proj.weight"] = (nkv * hd, d)
        out[p + "self_attn.v_proj.weight"] = (nkv * hd, d)
        out[p + "self_attn.o_proj.weight"] = (d, nh * hd)
        if arch == "Qwen2ForCausalLM":
            out[p + "self_attn.q_proj.bias"] = (nh * hd,)
            out[p + "self_attn.k_proj.bias"] = (nkv * hd,)
            out[p + "self_attn.v_proj.bias"] = (nkv * hd,)
        if arch == "Qwen3ForCausalLM":
            out[p + "self_attn.q_norm.weight"] = (hd,)
            out[p + "self_attn.k_norm.weight"] = (hd,)
        out[p + "mlp.gate_proj.weight"] = (f, d)
        out[p + "mlp.up_proj.weight"] = (f, d)
        out[p + "mlp.down_proj.weight"] = (d, f)
    out["model.norm.weight"] = (d,)
    if not c.get("tie_word_embeddings", False):
        out["lm_head.weight"] = (c["vocab_size"], d)
    return out


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (as torch's .to(torch.bfloat16))."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def bf16_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def random_weights(c, seed):
    rng = np.random.default_rng(seed)
    w = {}
    for n, s in tensor_shapes(c).items():
        if n.endswith("norm.weight"):
            w[n] = (1.0 + 0.1 * rng.standard_normal(s)).astype(np.float32)
        elif n.endswith(".bias"):
            w[n] = (0.1 * rng.standard_normal(s)).astype(np.float32)
        elif n == "model.embed_tokens.weight":
            w[n] = (0.5 * rng.standard_normal(s)).astype(np.float32)
        else:
            w[n] = (rng.standard_normal(s) / math.sqrt(s[1])).astype(np.float32)
    return w


def encode(w, dtype):
    """The stored bytes and the float32 values they hold."""
    if dtype == "bf16":
        b = bf16_bits(w)
        return "BF16", b.tobytes(), bf16_to_f32(b).reshape(w.shape)
    if dtype == "f16":
        h = w.astype(np.float16)
        return "F16", h.tobytes(), h.astype(np.float32)
    return "F32", w.astype(np.float32).tobytes(), w.astype(np.float32)


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> (dtype, shape, bytes), written in the order given."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    for n, (dt, shape, b) in tensors.items():
        header[n] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, (_, _, b) in tensors.items():
            f.write(b)


def write_model(name, out_dir, seed=1):
    """Writes config.json and the weights; returns (config, float32 values as stored)."""
    c = config_for(name)
    _, _, dtype, sharded = MODELS[name]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    w = random_weights(c, seed)
    stored, values = {}, {}
    for n, v in w.items():
        dt, b, val = encode(v, dtype)
        stored[n] = (dt, v.shape, b)
        values[n] = val
    if not sharded:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), stored, {"format": "pt"})
    else:
        names = list(stored)
        half = len(names) // 2
        parts = [names[:half], names[half:]]
        weight_map = {}
        for i, part in enumerate(parts):
            fn = f"model-{i + 1:05d}-of-{len(parts):05d}.safetensors"
            write_safetensors(os.path.join(out_dir, fn), {n: stored[n] for n in part}, {"format": "pt"})
            for n in part:
                weight_map[n] = fn
        total = sum(len(stored[n][2]) for n in names)
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return c, values


# ---- reference forward (transformers' modeling code, float64) ----

def rms_norm(x, w, eps):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return w * (x / np.sqrt(var + eps))


def inv_freq(c):
    hd = head_dim(c)
    base = c.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = c.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":  # _compute_llama3_parameters
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(c, w, ids, linear_weight=None):
    """Logits [T, vocab] for token ids; linear_weight(name, W) may replace a linear's weight
    (MX fake-quant of the quantized linears)."""
    lw = linear_weight or (lambda n, W: W)
    g = lambda n: np.asarray(w[n], np.float64)
    T = len(ids)
    d, hd = c["hidden_size"], head_dim(c)
    nh, nkv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    eps = c["rms_norm_eps"]
    arch = c["architectures"][0]
    x = g("model.embed_tokens.weight")[np.asarray(ids)]
    pos = np.arange(T, dtype=np.float64)
    freqs = np.outer(pos, inv_freq(c))
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        lin = lambda n, v: v @ np.asarray(lw(p + n + ".weight", g(p + n + ".weight")), np.float64).T + (
            g(p + n + ".bias") if (p + n + ".bias") in w else 0.0)
        h = rms_norm(x, g(p + "input_layernorm.weight"), eps)
        q = lin("self_attn.q_proj", h).reshape(T, nh, hd)
        k = lin("self_attn.k_proj", h).reshape(T, nkv, hd)
        v = lin("self_attn.v_proj", h).reshape(T, nkv, hd)
        if arch == "Qwen3ForCausalLM":
            q = rms_norm(q, g(p + "self_attn.q_norm.weight"), eps)
            k = rms_norm(k, g(p + "self_attn.k_norm.weight"), eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv  # repeat_kv: query head j reads kv head j // rep
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, nh * hd)
        x = x + lin("self_attn.o_proj", o)
        h = rms_norm(x, g(p + "post_attention_layernorm.weight"), eps)
        gate, up = lin("mlp.gate_proj", h), lin("mlp.up_proj", h)
        x = x + lin("mlp.down_proj", gate / (1 + np.exp(-gate)) * up)
    x = rms_norm(x, g("model.norm.weight"), eps)
    head = g("model.embed_tokens.weight") if c.get("tie_word_embeddings", False) else g("lm_head.weight")
    return x @ head.T


# ---- a tiny byte-level BPE tokenizer.json in the layout of Llama 3's (for the fixtures) ----

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                r"|\s+(?!\S)|\s+")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def write_tokenizer(out_dir, vocab_size):
    """256 byte tokens, merges of a few English pairs, then <|begin_of_text|> and <|end_of_text|>
    as the last two ids; the post-processor adds the first as BOS."""
    m = bytes_to_unicode()
    vocab = {m[b]: b for b in range(256)}
    pairs = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s"), ("r", "e"),
             ("a", "t"), ("e", "n"), ("Ġ", "w"), ("o", "u"), ("n", "d"), ("Ġa", "nd"), ("i", "s"), ("Ġ", "o"), ("Ġ", "h")]
    merges = []
    for a, b in pairs:
        if len(vocab) >= vocab_size - 2:
            break
        vocab[a + b] = len(vocab)
        merges.append([a, b])
    bos, eos = vocab_size - 2, vocab_size - 1
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
             for i, t in ((bos, "<|begin_of_text|>"), (eos, "<|end_of_text|>"))]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos], "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True, "vocab": vocab, "merges": merges},
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    return bos, eos
