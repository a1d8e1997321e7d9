#!/usr/bin/env python3
"""Independent reader for mfqat MX checkpoints, Python standard library only.

Implements docs/checkpoint.md from scratch (no mfqat code): parses the safetensors container,
finds MX tensors in __metadata__, unpacks the little-endian bit streams, decodes elements from
the format name and applies the E8M0 scales.

usage: st_read.py FILE.safetensors                 # summary
       st_read.py FILE.safetensors --check REF.npy  # dequantize the only MX tensor, compare exactly
"""
import json
import math
import re
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        tensors[name] = (t["dtype"], t["shape"], data[b:e])
    return meta, tensors


def element_decoder(fmt):
    """Returns decode(code) -> float for an MX element format name."""
    m = re.fullmatch(r"mxint(\d)", fmt)
    if m:
        bits = int(m.group(1))
        def dec(c):
            v = c - (1 << bits) if c >= 1 << (bits - 1) else c  # two's complement
            return v / 2.0 ** (bits - 2)
        return bits, dec
    m = re.fullmatch(r"mxfp(\d)_e(\d)m(\d)", fmt)
    if not m:
        raise ValueError("unknown format " + fmt)
    bits, E, M = (int(g) for g in m.groups())
    bias = 2 ** (E - 1) - 1

    def dec(c):
        s = -1.0 if c >> (bits - 1) else 1.0
        e = (c >> M) & ((1 << E) - 1)
        f = c & ((1 << M) - 1)
        if fmt == "mxfp8_e4m3" and e == 15 and f == 7:
            return math.nan
        if fmt == "mxfp8_e5m2" and e == 31:
            return math.nan if f else s * math.inf
        if e == 0:
            return s * f / 2.0 ** M * 2.0 ** (1 - bias)
        return s * (1 + f / 2.0 ** M) * 2.0 ** (e - bias)
    return bits, dec


def dequantize(meta, tensors, name):
    d = json.loads(meta["mfqat.mx." + name])
    assert d["scale"] == "e8m0" and d["packing"] == "lsb-first", d
    rows, cols = d["shape"]
    bs = d["block_size"]
    bits, dec = element_decoder(d["format"])
    _, eshape, el = tensors[name + ".mx_elements"]
    _, sshape, sc = tensors[name + ".mx_scales"]
    row_bytes = (cols * bits + 7) // 8
    bpr = (cols + bs - 1) // bs
    assert eshape == [rows, row_bytes] and sshape == [rows, bpr], (eshape, sshape)
    out = []
    for r in range(rows):
        stream = int.from_bytes(el[r * row_bytes:(r + 1) * row_bytes], "little")
        for c in range(cols):
            code = (stream >> (c * bits)) & ((1 << bits) - 1)
            s = sc[r * bpr + c // bs]
            scale = math.nan if s == 255 else 2.0 ** (s - 127)
            out.append(dec(code) * scale)
    return rows, cols, out


def read_npy_f32(path):
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:6] == b"\x93NUMPY"
    hl = struct.unpack("<H", raw[8:10])[0]
    body = raw[10 + hl:]
    return list(struct.unpack("<%df" % (len(body) // 4), body))


def main(argv):
    meta, tensors = read_safetensors(argv[1])
    names = [k[len("mfqat.mx."):] for k in meta if k.startswith("mfqat.mx.")]
    if len(argv) > 3 and argv[2] == "--check":
        assert len(names) == 1, names
        rows, cols, vals = dequantize(meta, tensors, names[0])
        ref = read_npy_f32(argv[3])
        assert len(ref) == rows * cols, (len(ref), rows, cols)
        bad = sum(1 for a, b in zip(vals, ref) if not (a == b or (math.isnan(a) and math.isnan(b))))
        print("%s: %d x %d, %d mismatches" % (names[0], rows, cols, bad))
        return 1 if bad else 0
    for n in names:
        d = json.loads(meta["mfqat.mx." + n])
        print(n, d["format"], d["shape"])
    for n, (dt, shape, _) in tensors.items():
        print(" ", n, dt, shape)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
