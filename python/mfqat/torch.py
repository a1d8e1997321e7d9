"""Multi-format QAT in PyTorch, over mfqat's C++ kernels.

* ``fake_quant(x, fmt, ste=...)``: an autograd function. Forward = the mx core's fake-quant (blocks
  along the last axis; the C++ kernel reads and writes the tensors' memory, no Python loop),
  backward = straight-through: ``plain`` passes the gradient, ``clipped`` zeroes it exactly where the
  element saturated. The same op as the trainer's ``mx_fake_quant``.
* ``prepare(model, formats, strategy)``: wraps every ``nn.Linear`` of any model in a ``QuantLinear``
  (same Parameters, same names) and returns the controller that runs a step's formats: ``joint``
  (every format, gradients averaged), ``cycle`` (one per step, in order), ``random`` (one sampled).
* ``export_anchor(model, fmt, path)``: the anchor ``mfqat export --anchor`` would write, with the
  model config where mfqat knows the architecture (its LM and MLP, Hugging Face Llama / Mistral /
  Qwen2 / Qwen3 layouts), so that the CLI and ``mfqat.Engine`` load it.
* ``LM``, ``MLP``, ``load_model``: mfqat's own models in PyTorch (mfqat/lm.py).
"""
import contextlib
import json
import os
import random
import re
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import _core
from .lm import LM, MLP, apply_rope, config_info, load_model  # noqa: F401 (re-exported)

STES = ("plain", "clipped")
STRATEGIES = ("joint", "cycle", "random")


def _check_tensor(x, what="x"):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: expected a torch tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise TypeError(f"{what}: a tensor on {x.device}; mfqat computes on the CPU (.cpu() copies)")
    if x.dtype != torch.float32:
        raise TypeError(f"{what}: dtype '{x.dtype}' is not float32 little-endian ('<f4')")


def _ste(ste):
    if ste not in STES:
        raise _core.Error(f"unknown --ste '{ste}' (plain, clipped)")  # the CLI's words
    return ste


class _FakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fmt, rounding, seed, ste):
        xc = x.detach()
        if not xc.is_contiguous():
            xc = xc.contiguous()  # as the trainer's op: blocks along the last axis of the dense tensor
        y = torch.empty(tuple(xc.shape), dtype=torch.float32)
        sat = torch.empty(tuple(xc.shape), dtype=torch.uint8) if ste == "clipped" else None
        _core.fake_quant(xc.numpy(), fmt, rounding, seed, 0, y.numpy(), None if sat is None else sat.numpy())
        ctx.clipped = sat is not None
        if ctx.clipped:
            ctx.save_for_backward(sat)
        return y

    @staticmethod
    def backward(ctx, grad):
        if ctx.clipped:
            (sat,) = ctx.saved_tensors
            grad = grad.masked_fill(sat.to(torch.bool), 0.0)
        return grad, None, None, None, None


def fake_quant(x, format, ste="plain", rounding="even", seed=0, block_size=0):
    """MX fake-quant of a CPU float32 tensor with a straight-through gradient (plain | clipped)."""
    _check_tensor(x)
    return _FakeQuant.apply(x, _core.format(format, block_size), rounding, seed, _ste(ste))


def _format_list(formats, block_size=0):
    """A list of Formats from "int", "mxint4,mxint8", a Format, or a list of names / Formats."""
    if isinstance(formats, (str, _core.Format)):
        formats = [formats]
    out = []
    for f in formats:
        if isinstance(f, str):
            out.extend(_core.parse_formats(f, block_size or 32))
        else:
            out.append(_core.format(f, block_size))
    if not out:
        raise _core.Error("no format to train")
    return out


class QuantLinear(nn.Linear):
    """An ``nn.Linear`` whose weight (and, with ``quantize_input``, input) is MX fake-quantized in
    ``format`` (None: fp32). ``from_linear`` takes over a linear's Parameters (no copy), so the
    names, the state dict and an optimizer built before ``prepare`` stay valid."""

    format = None  # an mfqat.Format, or None: fp32
    ste = "plain"
    rounding = "even"
    seed = 0
    quantize_input = False

    @classmethod
    def from_linear(cls, lin):
        q = cls.__new__(cls)
        nn.Module.__init__(q)
        q.in_features, q.out_features = lin.in_features, lin.out_features
        q.weight = lin.weight
        if lin.bias is None:
            q.register_parameter("bias", None)
        else:
            q.bias = lin.bias
        q.train(lin.training)
        return q

    def forward(self, x):
        w, inp = self.weight, x
        if self.format is not None:
            _check_tensor(self.weight, "weight")
            w = _FakeQuant.apply(self.weight, self.format, self.rounding, self.seed, self.ste)
            if self.quantize_input:
                inp = _FakeQuant.apply(x, self.format, self.rounding, self.seed, self.ste)
        return F.linear(inp, w, self.bias)

    def extra_repr(self):
        f = "fp32" if self.format is None else self.format.name
        return super().extra_repr() + f", format={f}, ste={self.ste}"


def _skipper(skip):
    if skip is None:
        return lambda name, mod: False
    if callable(skip):
        return skip
    pats = [skip] if isinstance(skip, str) else list(skip)
    res = [re.compile(p) for p in pats]
    # a name or a regex: "head" skips the module named head; "lm_head|embed" any that matches
    return lambda name, mod: any(name == p or r.fullmatch(name) for p, r in zip(pats, res))


class MultiFormatQAT:
    """What ``prepare`` returns: the wrapped linears and the step's formats.

        qat = mfqat.torch.prepare(model, formats=["mxint4", "mxint8"], strategy="joint")
        for x, y in data:
            opt.zero_grad()
            loss = qat.backward(lambda: F.cross_entropy(model(x), y))   # forward+backward per format
            opt.step()

    ``backward`` runs the step's formats (joint: all, cycle: formats[step % n], random: one drawn
    with ``weights``), each loss scaled by 1/len(run) so that the gradients are their mean, as
    ``mfqat train --mode mf`` does, and leaves the model in fp32. ``with qat.format("mxint4"):``
    evaluates at one format."""

    def __init__(self, model, modules, formats, strategy, ste, rounding, seed, weights):
        self.model = model
        self.modules = modules  # {module name: QuantLinear}
        self.formats = formats
        self.strategy = strategy
        self.ste = ste
        self.rounding = rounding
        self.weights = weights
        self.step = 0
        self._rng = random.Random(seed)
        self.current = None
        for m in modules.values():
            m.ste, m.rounding, m.seed = ste, rounding, seed

    @property
    def quantized(self):
        """The quantized weights' parameter names."""
        return [f"{n}.weight" for n in self.modules]

    def formats_for_step(self, step=None):
        step = self.step if step is None else step
        if self.strategy == "joint":
            return list(self.formats)
        if self.strategy == "cycle":
            return [self.formats[step % len(self.formats)]]
        return self._rng.choices(self.formats, weights=self.weights)

    def set_format(self, fmt):
        """Every wrapped linear to ``fmt`` (a name or Format; None or "fp32": no quantization)."""
        f = None if fmt is None or fmt == "fp32" else _core.format(fmt)
        for m in self.modules.values():
            m.format = f
        self.current = f

    @contextlib.contextmanager
    def format(self, fmt):
        prev = self.current
        self.set_format(fmt)
        try:
            yield self
        finally:
            self.set_format(prev)

    def backward(self, loss_fn):
        """One step's forward/backward passes: loss_fn() -> scalar loss at the current format.
        Returns the mean loss over the step's formats (a float)."""
        run = self.formats_for_step()
        total = 0.0
        try:
            for f in run:
                self.set_format(f)
                loss = loss_fn() * (1.0 / len(run))
                loss.backward()
                total += loss.item()
        finally:
            self.set_format(None)
        self.step += 1
        return total

    def describe(self):
        return {"formats": [f.name for f in self.formats], "strategy": self.strategy, "ste": self.ste,
                "rounding": self.rounding, "steps": self.step, "quantized": len(self.modules)}


def prepare(model, formats, strategy="joint", skip=None, ste="plain", rounding="even", weights=None, seed=0,
            quantize_input=False, block_size=0):
    """Wraps every ``nn.Linear`` of ``model`` (exactly that class; subclasses such as attention's
    out_proj, which their parent never calls, are left alone) in a QuantLinear, except those
    ``skip`` names (a module name or regex, a list of them, or a callable(name, module) -> bool).
    formats: "int" / "fp" / "mxint4,mxint8" / a list. Returns a MultiFormatQAT (also
    ``model.mfqat_qat``)."""
    fmts = _format_list(formats, block_size)
    if strategy not in STRATEGIES:
        raise _core.Error(f"unknown strategy '{strategy}' (joint, cycle, random)")
    _ste(ste)
    rounding = _core.rounding(rounding)
    if weights is not None and len(weights) != len(fmts):
        raise _core.Error("--weights needs one weight per format")
    if isinstance(model, nn.Linear):
        raise TypeError("prepare(): the model is itself an nn.Linear; wrap it in a module")
    skipped = _skipper(skip)
    wrapped = {}
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, QuantLinear):
                wrapped[name] = child
            elif type(child) is nn.Linear and not skipped(name, child):
                q = QuantLinear.from_linear(child)
                q.quantize_input = quantize_input
                setattr(parent, child_name, q)
                wrapped[name] = q
    if not wrapped:
        raise _core.Error("prepare(): no nn.Linear to quantize" + (" (skip= left none)" if skip is not None else ""))
    qat = MultiFormatQAT(model, wrapped, fmts, strategy, ste, rounding, seed, weights)
    model.mfqat_qat = qat
    return qat


def set_format(model, fmt):
    """Every QuantLinear of ``model`` to ``fmt`` (None / "fp32": unquantized)."""
    f = None if fmt is None or fmt == "fp32" else _core.format(fmt)
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.format = f


def _read_text(x):
    """A JSON document given as its text, or as the path of its file."""
    if isinstance(x, os.PathLike) or (isinstance(x, str) and not x.lstrip().startswith("{")):
        with open(x, encoding="utf-8") as f:
            return f.read()
    if not isinstance(x, str):
        raise TypeError(f"expected JSON text or a file path, got {type(x).__name__}")
    return x


def _architecture(model, config):
    """(layout, config JSON text) where mfqat knows the architecture, else (None, None)."""
    if config is None:
        if hasattr(model, "mfqat_config"):
            return "mfqat", json.dumps(model.mfqat_config)
        hf = getattr(model, "config", None)
        if hf is not None and hasattr(hf, "to_dict"):  # a transformers PreTrainedModel
            return "hf", json.dumps(hf.to_dict())
        return None, None
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    text = _read_text(config) if isinstance(config, (str, os.PathLike)) else json.dumps(config)
    d = json.loads(text)
    if "architectures" in d or "model_type" in d:
        return "hf", text
    return "mfqat", text


def _tokenizer_text(model, tokenizer):
    if tokenizer is None:
        return getattr(model, "mfqat_tokenizer", None)
    if hasattr(tokenizer, "backend_tokenizer"):  # a transformers fast tokenizer
        return tokenizer.backend_tokenizer.to_str()
    return _read_text(tokenizer)


def export_anchor(model, format, path, config=None, tokenizer=None, metadata=None):
    """Writes the anchor of ``model`` in ``format`` (mxint8 for the integer family, mxfp8_e4m3 for
    the FP family; any format is accepted) to ``path`` (.safetensors), as ``mfqat export --anchor``:
    the quantized weights in MX (round-to-nearest-even), everything else float32, the config.

    Known architectures (``model.mfqat_config`` of mfqat.torch.LM / MLP; a transformers model's
    ``.config``; or ``config=``: an mfqat config or a Hugging Face config.json, as a dict, JSON text
    or file) go through the CLI's own export (model::export_anchor), and the CLI and mfqat.Engine
    load the result. Which weights are quantized is the architecture's rule (the blocks' linears;
    the head only with "quantize_head"). Any other model is written as its parameters with every
    nn.Linear weight (the ``prepare``-wrapped ones, when it was prepared) in MX and no config:
    ``mfqat convert / inspect / dequantize`` read it, the engine cannot run it.
    ``tokenizer``: tokenizer.json (path or text) or a transformers fast tokenizer, stored with it."""
    path = str(path)
    if not path.endswith(".safetensors"):
        raise _core.Error(f"{path}: output must be .safetensors")
    fmt = _core.format(format)
    params = {n: p.detach().to("cpu", torch.float32).contiguous().numpy() for n, p in model.named_parameters()}
    qat = getattr(model, "mfqat_qat", None)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if qat is not None:
        meta.setdefault("mfqat.python.qat", json.dumps(qat.describe()))
    layout, text = _architecture(model, config)
    if layout is None:
        quantized = qat.quantized if qat is not None else [f"{n}.weight" for n, m in model.named_modules() if type(m) is nn.Linear]
        return _core.export_weights(params, quantized, fmt, path, meta)
    if qat is not None:
        info = config_info(text, layout)
        key = "hf_name" if layout == "hf" else "name"
        exported = {p[key] for p in info["params"] if p["quantized"]}
        trained = set(qat.quantized)
        if exported != trained:
            warnings.warn(f"export_anchor: the anchor quantizes {len(exported)} weights, prepare() trained {len(trained)} "
                          f"quantized (e.g. {sorted(exported ^ trained)[:3]}); the served model differs from the trained one "
                          "there", stacklevel=2)
    return _core.export_anchor(text, layout, params, fmt, path, _tokenizer_text(model, tokenizer), meta)
