"""The MX numerics from Python against the CLI's own outputs: `mfqat formats --json`, `mfqat
quantize` (.npy and --packed safetensors), `mfqat convert` (Slice-and-Scale), `mfqat dequantize`;
bad input as exceptions with the CLI's messages; zero-copy inputs and outputs; the GIL released."""
import json
import threading
import time

import numpy as np
import pytest
import torch

import mfqat
from conftest import bits, cli_error, read_safetensors, run

ALL = [f.name for f in mfqat.formats()] + ["mxfp5_e2m2", "mxfp3_e1m1"]


def sample(rows=37, cols=100, seed=0):
    """Weight-like values plus the awkward ones: zeros of both signs, a wide dynamic range,
    fp32 subnormals, values at and past the formats' ranges, a NaN and an Inf (in their own
    blocks: they make the whole block NaN / saturate it)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * np.exp(rng.uniform(-8, 8, (rows, 1)))).astype(np.float32)
    if rows < 5 or cols < 71:
        return x
    x[0, :8] = [0.0, -0.0, 1e-40, -3e-39, 448.0, -57344.0, 6.0, 0.25]
    x[1, :4] = [1e30, -1e-30, 2.0 ** -126, 3.0]
    x[2, 40] = np.nan
    x[3, 70] = np.inf
    x[4, 5] = -np.inf
    return x


@pytest.fixture(scope="module")
def x_npy(work):
    path = work / "x.npy"
    np.save(path, sample())
    return path


def test_formats_are_the_cli_registry():
    cli = json.loads(run("formats", "--json").stdout)
    assert [f.to_dict() for f in mfqat.formats()] == cli
    also = json.loads(run("formats", "--json", "--also", "mxfp5_e2m2").stdout)[-1]
    assert mfqat.format("MXFP5_E2M2").to_dict() == also
    assert mfqat.format("mxfp4") == mfqat.format("mxfp4_e2m1") and mfqat.format("mxfp4", 16).block_size == 16
    assert [f.name for f in mfqat.parse_formats("int")] == ["mxint8", "mxint7", "mxint6", "mxint5", "mxint4", "mxint3", "mxint2"]


@pytest.mark.parametrize("fmt", ALL)
@pytest.mark.parametrize("rounding,seed,block", [("even", 0, 32), ("away", 0, 32), ("stochastic", 7, 32), ("even", 0, 16)])
def test_fake_quant_is_bit_identical_to_cli_quantize(work, x_npy, fmt, rounding, seed, block):
    out = work / f"fq_{fmt}_{rounding}_{block}.npy"
    run("quantize", "-f", fmt, "-i", x_npy, "-o", out, "--rounding", rounding, "--seed", seed, "--block-size", block)
    want = np.load(out)
    x = np.load(x_npy)
    got = mfqat.fake_quant(x, fmt, rounding=rounding, seed=seed, block_size=block)
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(bits(got), bits(want))
    # the packed round trip gives the same bits, and so does a torch tensor (read in place)
    p = mfqat.quantize(x, fmt, rounding=rounding, seed=seed, block_size=block)
    assert np.array_equal(bits(mfqat.dequantize(p)), bits(want))
    t = mfqat.fake_quant(torch.from_numpy(x), fmt, rounding=rounding, seed=seed, block_size=block)
    assert isinstance(t, torch.Tensor) and np.array_equal(bits(t.numpy()), bits(want))


@pytest.mark.parametrize("fmt", ["mxint8", "mxint4", "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp4_e2m1", "mxfp5_e2m2"])
def test_packed_is_what_cli_quantize_packed_stores(work, x_npy, fmt):
    out = work / f"q_{fmt}.safetensors"
    run("quantize", "--packed", "-f", fmt, "-i", x_npy, "-o", out, "--name", "w")
    tensors, meta = read_safetensors(out)  # not mfqat's reader
    p = mfqat.quantize(np.load(x_npy), fmt)
    assert np.array_equal(p.elements, tensors["w.mx_elements"])
    assert np.array_equal(p.scales, tensors["w.mx_scales"])
    info = json.loads(meta["mfqat.mx.w"])
    assert (info["format"], info["block_size"], info["shape"]) == (p.format.name, p.block_size, list(p.shape))
    # mfqat.load reads it back; mfqat.save writes the same bytes the CLI wrote
    q = mfqat.load(out)["w"]
    assert isinstance(q, mfqat.Packed) and np.array_equal(q.elements, p.elements) and np.array_equal(q.scales, p.scales)
    mine = work / f"q_{fmt}_py.safetensors"
    mfqat.save(mine, {"w": p}, {k: v for k, v in meta.items() if not k.startswith("mfqat.mx.")})
    assert mine.read_bytes() == out.read_bytes()


def test_codes_follow_the_documented_packing():
    x = sample(4, 64)
    p = mfqat.quantize(x, "mxfp4")
    codes, el = p.codes(), p.elements
    assert codes.shape == (4, 64) and el.shape == (4, 32) and p.scales.shape == (4, 2)
    assert np.array_equal(codes[:, 0::2], el & 0xF) and np.array_equal(codes[:, 1::2], el >> 4)  # element 2i: low nibble
    # Packed from its parts round-trips
    q = mfqat.Packed(el, p.scales, p.shape, "mxfp4")
    assert np.array_equal(mfqat.dequantize(q), mfqat.dequantize(p))


@pytest.mark.parametrize("src,dst", [("mxint8", "mxint7"), ("mxint8", "mxint4"), ("mxint8", "mxint2"), ("mxfp8_e4m3", "mxfp6_e2m3"),
                                     ("mxfp8_e4m3", "mxfp4_e2m1"), ("mxfp8_e5m2", "mxfp6_e3m2"), ("mxfp6_e2m3", "mxfp4_e2m1")])
def test_slice_is_bit_identical_to_cli_convert(work, x_npy, src, dst):
    q = work / f"s_{src}.safetensors"
    run("quantize", "--packed", "-f", src, "-i", x_npy, "-o", q, "--name", "w")
    c = work / f"s_{src}_{dst}.safetensors"
    run("convert", q, "--to", dst, "-o", c)
    tensors, _ = read_safetensors(c)
    s = mfqat.slice(mfqat.quantize(np.load(x_npy), src), dst)
    assert s.format.name == mfqat.format(dst).name
    assert np.array_equal(s.elements, tensors["w.mx_elements"]) and np.array_equal(s.scales, tensors["w.mx_scales"])
    # and equals dequantize -> requantize (the definition), as packed bits
    r = mfqat.quantize(mfqat.dequantize(mfqat.load(q)["w"]), dst)
    assert np.array_equal(s.elements, r.elements) and np.array_equal(s.scales, r.scales)


def test_dequantize_is_bit_identical_to_cli_dequantize(work, x_npy):
    q = work / "d.safetensors"
    run("quantize", "--packed", "-f", "mxfp6_e3m2", "-i", x_npy, "-o", q, "--name", "w")
    d = work / "d.npy"
    run("dequantize", q, "-o", d)
    assert np.array_equal(bits(mfqat.dequantize(mfqat.load(q)["w"])), bits(np.load(d)))


def test_zero_copy_in_and_out():
    x = torch.from_numpy(sample(8, 64))
    y = torch.empty(8, 64)
    ptr = y.data_ptr()
    assert mfqat.fake_quant(x, "mxint4", out=y) is y and y.data_ptr() == ptr
    assert np.array_equal(bits(y.numpy()), bits(mfqat.fake_quant(x.numpy(), "mxint4")))
    z = x.clone()
    mfqat.fake_quant(z, "mxint4", out=z)  # in place
    assert torch.equal(z, y)
    # a tensor that requires grad is read through a detached view, N-D shapes keep their shape
    w = torch.randn(2, 3, 64, requires_grad=True)
    p = mfqat.quantize(w, "mxfp8")
    assert p.shape == (2, 3, 64) and mfqat.dequantize(p).shape == (2, 3, 64)
    out = np.empty((2, 3, 64), np.float32)
    assert mfqat.dequantize(p, out=out) is out
    # Packed's parts and a loaded file's arrays are read-only views, not copies
    assert p.elements.base is not None and not p.elements.flags.writeable
    with pytest.raises(ValueError):
        p.scales[0, 0] = 1


def test_empty_arrays():
    for shape in [(0, 32), (3, 0), (0,)]:
        x = np.zeros(shape, np.float32)
        assert mfqat.fake_quant(x, "mxint8").shape == shape
        assert mfqat.dequantize(mfqat.quantize(x, "mxint8")).shape == shape


def test_bad_input_raises_with_the_cli_message(work, x_npy):
    x = np.load(x_npy)
    # unknown format, rounding, block size: the CLI's message word for word
    with pytest.raises(mfqat.Error) as e:
        mfqat.quantize(x, "mxfp9")
    assert str(e.value) == cli_error("quantize", "-f", "mxfp9", "-i", x_npy, "-o", work / "n.npy")
    assert isinstance(e.value, ValueError)
    with pytest.raises(ValueError) as e:
        mfqat.fake_quant(x, "mxfp4", rounding="nearest")
    assert str(e.value) == cli_error("quantize", "-f", "mxfp4", "-i", x_npy, "-o", work / "n.npy", "--rounding", "nearest")
    with pytest.raises(ValueError) as e:
        mfqat.fake_quant(x, "mxfp4", block_size=2000)
    assert str(e.value) == cli_error("quantize", "-f", "mxfp4", "-i", x_npy, "-o", work / "n.npy", "--block-size", 2000)
    # wrong dtype and Fortran order: the CLI's .npy reader's words, naming the argument for the file
    np.save(work / "f64.npy", x.astype(np.float64))
    msg = cli_error("quantize", "-f", "mxfp4", "-i", work / "f64.npy", "-o", work / "n.npy")
    with pytest.raises(TypeError) as e:
        mfqat.quantize(x.astype(np.float64), "mxfp4")
    assert str(e.value) == "x: " + msg.split(": ", 1)[1]
    np.save(work / "fortran.npy", np.asfortranarray(x))
    msg = cli_error("quantize", "-f", "mxfp4", "-i", work / "fortran.npy", "-o", work / "n.npy")
    with pytest.raises(ValueError) as e:
        mfqat.fake_quant(np.asfortranarray(x), "mxfp4")
    assert str(e.value) == "x: " + msg.split(": ", 1)[1]
    # non-contiguous (numpy and torch), 0-d, not an array, other dtypes, CUDA-less devices
    for bad in [x[:, ::2], torch.from_numpy(x).t(), np.array(1.0, np.float32)]:
        with pytest.raises(ValueError, match="non-contiguous|fortran_order|0-d"):
            mfqat.fake_quant(bad, "mxint8")
    with pytest.raises(TypeError, match="got list"):
        mfqat.quantize([1.0, 2.0], "mxint8")
    with pytest.raises(TypeError, match="bfloat16"):
        mfqat.fake_quant(torch.zeros(4, 32, dtype=torch.bfloat16), "mxint8")
    with pytest.raises(TypeError, match="'<f8'"):
        mfqat.fake_quant(torch.zeros(4, 32, dtype=torch.float64), "mxint8")
    with pytest.raises(TypeError, match="meta"):
        mfqat.fake_quant(torch.zeros(4, 32, device="meta"), "mxint8")
    with pytest.raises(TypeError):
        mfqat.quantize(x, 4)
    # out= of the wrong shape, dtype or writability
    with pytest.raises(ValueError, match=r"out: shape \(37, 99\), expected \(37, 100\)"):
        mfqat.fake_quant(x, "mxint8", out=np.empty((37, 99), np.float32))
    with pytest.raises(TypeError, match="out: dtype"):
        mfqat.fake_quant(x, "mxint8", out=np.empty((37, 100), np.float64))
    ro = np.empty((37, 100), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        mfqat.fake_quant(x, "mxint8", out=ro)


def test_packed_parts_must_fit_the_shape_and_format():
    p = mfqat.quantize(sample(4, 70), "mxint4")
    with pytest.raises(ValueError, match=r"elements shape \(4, 35\), expected \(4, 36\) for mxint4 \(block size 32\) of shape \(4, 71\)"):
        mfqat.Packed(p.elements, p.scales, (4, 71), "mxint4")
    with pytest.raises(ValueError, match=r"scales shape \(4, 3\), expected \(4, 5\) for mxint4 \(block size 16\)"):
        mfqat.Packed(np.zeros((4, 35), np.uint8), p.scales, (4, 70), "mxint4", block_size=16)
    with pytest.raises(TypeError, match="scales: dtype '<i4'"):
        mfqat.Packed(p.elements, p.scales.astype(np.int32), (4, 70), "mxint4")


def test_slice_refusals_are_the_cli_convert_reasons(work, x_npy):
    q4 = work / "q4.safetensors"
    run("quantize", "--packed", "-f", "mxint4", "-i", x_npy, "-o", q4, "--name", "w")
    for to in ["mxint8", "mxfp4"]:
        cli = cli_error("convert", q4, "--to", to, "-o", work / "n.safetensors")
        reason = cli.split("tensor 'w': ", 1)[1].split("; use --via-float", 1)[0]
        with pytest.raises(ValueError) as e:
            mfqat.slice(mfqat.load(q4)["w"], to)
        assert str(e.value) == reason + "; use via_float=True to dequantize and requantize"
    up = mfqat.slice(mfqat.load(q4)["w"], "mxint8", via_float=True)  # allowed through fp32, as --via-float
    assert np.array_equal(mfqat.dequantize(up), mfqat.dequantize(mfqat.load(q4)["w"]), equal_nan=True)


def test_save_and_load_plain_arrays(work):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(4, dtype=np.int64),
              "c": torch.ones(3, dtype=torch.float16), "p": mfqat.quantize(sample(2, 64), "mxfp6")}
    path = work / "mixed.safetensors"
    mfqat.save(path, arrays, {"note": "x"})
    back = mfqat.load(path)
    assert np.array_equal(back["a"], arrays["a"]) and back["b"].dtype == np.int64 and back["c"].dtype == np.float16
    assert mfqat.metadata(path)["note"] == "x"
    assert json.loads(run("inspect", path, "--json").stdout)  # the CLI reads what Python wrote
    with pytest.raises(ValueError, match="not a safetensors|too short|header|cannot open|No such"):
        mfqat.load(work / "x.npy")
    with pytest.raises(TypeError, match="has no safetensors dtype"):
        mfqat.save(work / "n.safetensors", {"z": np.zeros(2, np.complex64)})


def test_long_calls_release_the_gil():
    """A fake-quant of 16M elements on one thread (~50 ms) runs while the main thread keeps
    executing Python: the main thread's timestamps fall inside the call. With the GIL held
    through the call none could (the switch interval is 1 ms, the window starts 25 % in)."""
    x = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    out = np.empty_like(x)
    old = mfqat.num_threads()
    mfqat.set_num_threads(1)
    marks, span = [], {}

    def work():
        span["t0"] = time.perf_counter()
        mfqat.fake_quant(x, "mxint8", rounding="stochastic", seed=1, out=out)
        span["t1"] = time.perf_counter()

    import sys
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        t = threading.Thread(target=work)
        t.start()
        while t.is_alive():
            marks.append(time.perf_counter())
        t.join()
    finally:
        sys.setswitchinterval(old_switch)
        mfqat.set_num_threads(old)
    d = span["t1"] - span["t0"]
    inside = [m for m in marks if span["t0"] + 0.25 * d < m < span["t1"] - 0.25 * d]
    assert d > 0.01 and len(inside) > 100, (d, len(inside))


def test_formats_and_packed_tensors_pickle():
    import copy
    import pickle
    f = mfqat.format("mxfp6_e3m2", 16)
    assert pickle.loads(pickle.dumps(f)) == f and copy.deepcopy(f).block_size == 16
    p = mfqat.quantize(sample(3, 50), "mxint5", rounding="away")
    q = pickle.loads(pickle.dumps(p))
    assert (q.shape, q.format, q.rounding) == (p.shape, p.format, "away")
    assert np.array_equal(q.elements, p.elements) and np.array_equal(q.scales, p.scales)
