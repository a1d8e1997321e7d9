"""mfqat from Python: OCP Microscaling (MX) numerics, Slice-and-Scale, anchors and the engine.

Bindings over mfqat's C++ core (``mfqat._core``), not a second implementation: every number is the
one the ``mfqat`` CLI computes, bit for bit. numpy arrays and CPU torch tensors are read in place
(zero-copy) when they are C-contiguous float32; anything else raises ``TypeError`` (type, dtype) or
``mfqat.Error`` (a ``ValueError``) with the CLI's one-line message. Long C++ calls release the GIL.

    import mfqat
    p = mfqat.quantize(w, "mxint8")             # Packed: .elements, .scales, .codes(), .shape
    w8 = mfqat.dequantize(p)                     # float32 numpy array
    p4 = mfqat.slice(p, "mxint4")                # Slice-and-Scale on the packed bits
    y = mfqat.fake_quant(x, "mxfp4_e2m1")        # same kind as x (numpy or torch)
    e = mfqat.Engine("anchor.safetensors"); e.generate("Hello", format="mxint4")

The PyTorch part (autograd fake-quant, ``prepare`` for multi-format QAT, ``export_anchor``, the LM)
is ``mfqat.torch`` (imported on first use). See docs/python.md.
"""
import importlib as _importlib

from . import _core
from ._core import Engine, Error, Format, Packed, format, formats, metadata, num_threads, parse_formats, set_num_threads

__all__ = [
    "Engine", "Error", "Format", "Packed", "dequantize", "fake_quant", "format", "formats", "load", "metadata",
    "num_threads", "parse_formats", "quantize", "save", "set_num_threads", "slice",
]

ROUNDINGS = ("even", "away", "stochastic")


def _is_tensor(x):
    m = type(x).__module__
    return (m == "torch" or m.startswith("torch.")) and hasattr(x, "detach")


def _numpy(x, what="x"):
    """x as a numpy array without copying: a numpy array as it is, a CPU torch tensor as the view
    ``.detach().numpy()`` (the C++ side then checks dtype and layout)."""
    if not _is_tensor(x):
        return x
    if x.device.type != "cpu":
        raise TypeError(f"{what}: a tensor on {x.device}; mfqat computes on the CPU (.cpu() copies)")
    try:
        return x.detach().numpy()
    except (TypeError, RuntimeError):  # dtypes numpy has no equivalent for (bfloat16, ...)
        raise TypeError(f"{what}: dtype '{x.dtype}' is not float32 little-endian ('<f4')") from None


def quantize(x, format, rounding="even", seed=0, block_size=0):
    """MX-quantize x (numpy or CPU torch, float32, blocks along the last axis) into a Packed
    tensor: what ``mfqat quantize --packed`` stores. rounding: even | away | stochastic (seeded)."""
    return _core.quantize(_numpy(x), format, rounding, seed, block_size)


def dequantize(packed, out=None):
    """The float32 values of a Packed tensor, as a numpy array of its shape (or into ``out``)."""
    if out is not None and _is_tensor(out):
        _core.dequantize(packed, _numpy(out, "out"))
        return out
    return _core.dequantize(packed, out)


def fake_quant(x, format, rounding="even", seed=0, block_size=0, out=None):
    """dequantize(quantize(x)) in one pass, bit-identical to it and to ``mfqat quantize``. Returns
    the kind x is (a numpy array, or a torch tensor: no autograd here, see mfqat.torch.fake_quant)."""
    if _is_tensor(x):
        import torch
        xn = _numpy(x)
        if out is None:
            out = torch.empty(tuple(x.shape), dtype=torch.float32)
        _core.fake_quant(xn, format, rounding, seed, block_size, _numpy(out, "out"))
        return out
    return _core.fake_quant(x, format, rounding, seed, block_size, _numpy(out, "out") if out is not None else None)


def slice(packed, to, via_float=False):  # noqa: A001 (the operation's name in mfqat)
    """Slice-and-Scale: a lower format of the same family derived on the packed bits (the result
    equals quantize(dequantize(packed), to) bit for bit). Going up or across families is refused
    unless via_float=True (dequantize + requantize, as ``mfqat convert --via-float``)."""
    return _core.slice(packed, to, via_float)


def load(path):
    """A safetensors file (any mfqat checkpoint, or another tool's): {name: numpy array (read-only
    view of the mapped file; BF16 widened to float32) or Packed (MX tensors)}."""
    return _core.load(str(path))


def save(path, tensors, metadata=None):
    """Writes a safetensors file atomically: Packed values as MX tensors (docs/checkpoint.md),
    numpy arrays and CPU tensors as themselves; metadata: {str: str}."""
    arrays = {name: (v if isinstance(v, Packed) else _numpy(v, f"tensor '{name}'")) for name, v in tensors.items()}
    _core.save(str(path), arrays, dict(metadata or {}))


def __getattr__(name):  # mfqat.torch on first use (importing torch takes a second or two)
    if name == "torch":
        return _importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'mfqat' has no attribute '{name}'")
