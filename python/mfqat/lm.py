"""mfqat's models in PyTorch, operation for operation as the C++ trainer builds them
(src/train/model.cpp): the Llama-style LM (RMSNorm, rotary embeddings with half-split pairs,
SwiGLU, causal attention, grouped-query attention, Qwen2's q/k/v biases, Qwen3's q/k norms, tied
embeddings) and the MLP classifier. Parameter names and order are mfqat's, so a checkpoint written
by ``mfqat train`` / ``mfqat import`` loads as it is and ``mfqat.torch.export_anchor`` writes the
model config with the anchor. The config is validated and completed by the C++ core (no default is
restated here); the linears are plain ``nn.Linear`` until ``mfqat.torch.prepare`` wraps them.
"""
import json
import math

import torch
import torch.nn.functional as F
from torch import nn

from . import _core


def config_info(config=None, layout="mfqat", ctx=0):
    """The config as mfqat reads it: {"config": {...as written...}, "kind", "lm" | "mlp": sizes,
    "params": [{"name", "shape", "quantized", "hf_name"}]}. config: dict, JSON text or None (the
    default LM); layout "hf" reads a Hugging Face config.json (dict or text)."""
    if config is None:
        config = {"model": "lm"}
    text = config if isinstance(config, str) else json.dumps(config)
    return json.loads(_core.model_config(text, layout, ctx))


def _linear(n_in, n_out, bias):
    lin = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():  # as QuantLinearImpl: uniform(+-1/sqrt(in)), zero bias
        bound = 1.0 / math.sqrt(n_in)
        lin.weight.uniform_(-bound, bound)
        if bias:
            lin.bias.zero_()
    return lin


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def apply_rope(x, cos, sin):
    """Rotary embedding on x [B, T, H, D], half-split pairs (x[i], x[i + D/2])."""
    T, half = x.size(1), x.size(3) // 2
    c, s = cos[:T].view(1, T, 1, half), sin[:T].view(1, T, 1, half)
    x1, x2 = x[..., :half], x[..., half:2 * half]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], 3)


class Block(nn.Module):
    def __init__(self, l):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = l["n_heads"], l["kv_heads"], l["head_dim"]
        q_dim, kv_dim = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        # registration order = the C++ module's = its parameters() order (gradient clipping sums in it)
        self.attn_norm = RMSNorm(l["dim"], l["norm_eps"])
        self.mlp_norm = RMSNorm(l["dim"], l["norm_eps"])
        self.wq = _linear(l["dim"], q_dim, l["qkv_bias"])
        self.wk = _linear(l["dim"], kv_dim, l["qkv_bias"])
        self.wv = _linear(l["dim"], kv_dim, l["qkv_bias"])
        self.wo = _linear(q_dim, l["dim"], False)
        self.w1 = _linear(l["dim"], l["hidden"], False)
        self.w2 = _linear(l["hidden"], l["dim"], False)
        self.w3 = _linear(l["dim"], l["hidden"], False)
        self.qk_norm = l["qk_norm"]
        if self.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, l["norm_eps"])
            self.k_norm = RMSNorm(self.head_dim, l["norm_eps"])

    def forward(self, x, cos, sin):
        B, T = x.size(0), x.size(1)
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(h).view(B, T, self.n_kv, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q, cos, sin).transpose(1, 2)
        k = apply_rope(k, cos, sin).transpose(1, 2)
        v = self.wv(h).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        if self.n_kv != self.n_heads:
            k = k.repeat_interleave(self.n_heads // self.n_kv, 1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, 1)
        att = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = torch.softmax(att.masked_fill(mask, float("-inf")), -1)
        o = torch.matmul(att, v).transpose(1, 2).contiguous().view(B, T, self.n_heads * self.head_dim)
        x2 = x + self.wo(o)
        m = self.mlp_norm(x2)
        return x2 + self.w2(F.silu(self.w1(m)) * self.w3(m))


class LM(nn.Module):
    """mfqat's LM (``"model": "lm"``, any ``arch`` mfqat imports). tokens [B, T] int64 -> logits
    [B, T, vocab]. ``mfqat_config`` is the config export_anchor writes."""

    def __init__(self, config=None):
        super().__init__()
        info = config_info(config)
        if info["kind"] != "lm":
            raise ValueError(f"config: model '{info['kind']}' is not a language model (use mfqat.torch.MLP)")
        self.mfqat_config = info["config"]
        l = self.lm = info["lm"]
        self.tok_emb = nn.Embedding(l["vocab"], l["dim"])
        self.blocks = nn.ModuleList([Block(l) for _ in range(l["n_layers"])])
        self.norm = RMSNorm(l["dim"], l["norm_eps"])
        self.head = None if l["tie_embeddings"] else _linear(l["dim"], l["vocab"], False)
        with torch.no_grad():
            nn.init.normal_(self.tok_emb.weight, 0.0, 0.02)
        inv = torch.tensor(l["rope_inv_freq"], dtype=torch.float64)
        ang = torch.outer(torch.arange(0, l["max_seq"], dtype=torch.float64), inv)
        self.register_buffer("rope_cos", torch.cos(ang).to(torch.float32), persistent=False)
        self.register_buffer("rope_sin", torch.sin(ang).to(torch.float32), persistent=False)

    def forward(self, tokens):
        if tokens.dim() != 2 or tokens.size(1) > self.lm["max_seq"]:
            raise ValueError(f"tokens must be [batch, time] with time <= max_seq = {self.lm['max_seq']}")
        x = self.tok_emb(tokens)
        for b in self.blocks:
            x = b(x, self.rope_cos, self.rope_sin)
        if self.head is None:
            return F.linear(self.norm(x), self.tok_emb.weight)
        return self.head(self.norm(x))


class MLP(nn.Module):
    """mfqat's classifier (``"model": "mlp"``): linears with bias and ReLU, then the head."""

    def __init__(self, config=None):
        super().__init__()
        info = config_info(config if config is not None else {"model": "mlp"})
        if info["kind"] != "mlp":
            raise ValueError(f"config: model '{info['kind']}' is not the mlp classifier (use mfqat.torch.LM)")
        self.mfqat_config = info["config"]
        m = info["mlp"]
        sizes = [m["inputs"]] + list(m["hidden"])
        self.layers = nn.ModuleList([_linear(a, b, True) for a, b in zip(sizes, sizes[1:])])
        self.head = _linear(sizes[-1], m["classes"], True)

    def forward(self, x):
        for l in self.layers:
            x = torch.relu(l(x))
        return self.head(x)


def load_model(path, format=None, ctx=0):
    """The model of any checkpoint mfqat opens, in PyTorch with its weights: an fp32 master
    (``mfqat train`` / ``import``), an anchor (its own format dequantized, or ``format=`` derived by
    Slice-and-Scale first), or a Hugging Face directory (Llama, Mistral, Qwen2, Qwen3). A
    tokenizer.json that travels with the model is kept as ``model.mfqat_tokenizer`` (text)."""
    info, arrays, tokenizer, _anchor = _core.read_model(str(path), format, ctx)
    info = json.loads(info)
    model = (LM if info["kind"] == "lm" else MLP)(info["config"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.from_numpy(arrays[name]))
    model.mfqat_tokenizer = tokenizer
    return model
