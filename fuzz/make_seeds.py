#!/usr/bin/env python3
"""Writes the small hand-made seed inputs of fuzz/corpus/ and the bad-checkpoint regressions.

    python3 fuzz/make_seeds.py        # from the repository root; deterministic, rewrites the files

corpus/rdata    R XDR serializations (a character vector with NA, a lazy-load index), versions 2 and 3
corpus/idx      IDX images and labels, plain and gzip'd
corpus/gzip     a gzip file and an .rdb blob (4-byte big-endian length + zlib stream)
(bad_* files are malformed on purpose: the unit tests require them to be rejected, the others accepted)
corpus/safetensors/{anchor_mlp,master_mlp,bad_ckpt_*}.safetensors   tiny MLP checkpoints
corpus/gguf     GGUF v3 files (every metadata type, tensors of every type mfqat reads), written by
                this script (not by mfqat's writer), a truncated one and a bad alignment
regressions/npy-newline-in-dtype.npy  a .npy whose dtype text has a newline (echoed into the error)
regressions/checkpoint-*.safetensors   anchors whose MX tensors or metadata disagree (refused by
                                       model::Checkpoint, naming the tensor; see
                                       tests/test_fuzz_regressions.cpp)
Every file is under 2 KB.
"""
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))


def put(rel, data):
    path = os.path.join(ROOT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    assert len(data) < 2048, rel


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


# ---------------------------------------------------------------- R XDR serialization
def i32(v):
    return struct.pack(">i", v)


def header(version):
    out = b"X\n" + i32(version) + i32(0x040201) + i32(0x030500)
    if version == 3:
        out += i32(5) + b"UTF-8"
    return out


def charsxp(s):
    return i32(0x00040009) + i32(len(s)) + s.encode()


def strsxp(strings):
    out = i32(16) + i32(len(strings))
    for s in strings:
        out += i32(9) + i32(-1) if s is None else charsxp(s)
    return out


def names_attr(names, first):
    out = i32(0x00000402)  # LISTSXP with a tag
    out += i32(1) + charsxp("names") if first else i32(0x000001FF)  # SYMSXP, or REFSXP 1
    return out + strsxp(names) + i32(254)


def lazyload_index():
    # list(variables = list(emma = c(0L, 40L), persuasion = c(40L, 30L)), compressed = TRUE)
    out = i32(0x00000213) + i32(2)
    out += i32(0x00000213) + i32(2)
    for off, n in ((0, 40), (40, 30)):
        out += i32(13) + i32(2) + i32(off) + i32(n)
    out += names_attr(["emma", "persuasion"], True)
    out += i32(10) + i32(1) + i32(1)  # LGLSXP TRUE
    out += names_attr(["variables", "compressed"], False)
    return out


def reals():
    return i32(14) + i32(3) + struct.pack(">ddd", 1.5, -0.0, float("inf"))


# ---------------------------------------------------------------- IDX
def idx(dims, values):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(values)


# ---------------------------------------------------------------- safetensors checkpoints
MLP = {"model": "mlp", "inputs": 32, "hidden": [4, 4], "classes": 2, "quantize_head": False}


def safetensors(tensors, metadata):
    """tensors: list of (name, dtype, shape, bytes); metadata: dict str -> str."""
    h = {"__metadata__": dict(metadata, **{"mfqat.format_version": "1"})}
    off = 0
    for name, dtype, shape, data in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    text = json.dumps(h, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


BITS = {"mxint8": 8, "mxint4": 4}


def mx(name, fmt, rows, cols, block_size):
    """An MX tensor's two parts and its metadata entry (codes: a fixed pattern; scales: 2^0)."""
    row_bytes = (cols * BITS[fmt] + 7) // 8
    blocks = (cols + block_size - 1) // block_size
    el = bytes((i * 37 + 11) % 256 for i in range(rows * row_bytes))
    meta = {"format": fmt, "block_size": block_size, "shape": [rows, cols], "scale": "e8m0", "rounding": "even",
            "packing": "lsb-first", "element_bits": BITS[fmt], "axis": "last"}
    return ([(name + ".mx_elements", "U8", [rows, row_bytes], el),
             (name + ".mx_scales", "U8", [rows, blocks], bytes([127]) * (rows * blocks))],
            {"mfqat.mx." + name: json.dumps(meta, separators=(",", ":"))})


def f32(name, shape, seed):
    n = 1
    for d in shape:
        n *= d
    return (name, "F32", shape, struct.pack("<%df" % n, *[(seed + i) / 8.0 for i in range(n)]))


def mlp_checkpoint(anchor=True, fmt=None, bs=None, meta=None):
    """The MLP as an mxint8 anchor (block size 32); fmt/bs override one tensor's format/block size
    ({name: value}); meta overrides metadata keys (None removes one)."""
    fmt, bs, meta = fmt or {}, bs or {}, meta or {}
    tensors, metadata = [], {"mfqat.model_config": json.dumps(MLP, separators=(",", ":"))}
    if anchor:
        metadata.update({"mfqat.anchor": "mxint8", "mfqat.anchor_block_size": "32"})
    ins = MLP["inputs"]
    for i, h in enumerate(MLP["hidden"]):
        name = "layers.%d.weight" % i
        if anchor:
            parts, m = mx(name, fmt.get(name, "mxint8"), h, ins, bs.get(name, 32))
            tensors += parts
            metadata.update(m)
        else:
            tensors.append(f32(name, [h, ins], i))
        tensors.append(f32("layers.%d.bias" % i, [h], 3 * i))
        ins = h
    tensors.append(f32("head.weight", [MLP["classes"], ins], 5))
    tensors.append(f32("head.bias", [MLP["classes"]], 7))
    for k, v in meta.items():
        if v is None:
            metadata.pop(k, None)
        else:
            metadata[k] = v
    return safetensors(tensors, metadata)


# ---------------------------------------------------------------- GGUF (written here, not by mfqat)

def gguf(kv, tensors, alignment=32):
    """kv: [(key, type id, value)]; tensors: [(name, ne list, ggml type, bytes)]. GGUF v3."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}

    def val(t, v):
        if t == 8:
            return s(v)
        if t == 9:
            et, items = v
            return struct.pack("<IQ", et, len(items)) + b"".join(val(et, i) for i in items)
        return struct.pack(scalar[t], v)
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, t, v in kv:
        out += s(k) + struct.pack("<I", t) + val(t, v)
    off = 0
    for name, ne, gt, data in tensors:
        out += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<IQ", gt, off)
        off += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    for _, _, _, data in tensors:
        out += data + b"\0" * (-len(data) % alignment)
    return out


def gguf_model():
    kv = [("general.architecture", 8, "llama"), ("llama.block_count", 4, 1), ("llama.rope.freq_base", 6, 10000.0),
          ("tokenizer.ggml.add_bos_token", 7, 0), ("u8", 0, 7), ("i8", 1, -7), ("u16", 2, 7), ("i16", 3, -7), ("i32", 5, -7),
          ("u64", 10, 1 << 40), ("i64", 11, -(1 << 40)), ("f64", 12, 0.25),
          ("tokenizer.ggml.tokens", 9, (8, ["a", "\u0120b", ""])), ("tokenizer.ggml.token_type", 9, (5, [1, 1, 3]))]
    half_one = struct.pack("<H", 0x3C00)
    tensors = [
        ("f32", [4, 2], 0, struct.pack("<8f", *range(8))),
        ("f16", [2], 1, half_one * 2),
        ("bf16", [2], 30, struct.pack("<HH", 0x3F80, 0xBF80)),
        ("q8_0", [32], 8, half_one + bytes(range(32))),
        ("q4_0", [32], 2, half_one + bytes(range(16))),
        ("q5_0", [32], 6, half_one + b"\x0f\xf0\x00\xff" + bytes(range(16))),
        ("mxfp4", [64], 39, bytes([120] + list(range(16)) + [255] + list(range(16, 32)))),
    ]
    return gguf(kv, tensors)


def main():
    put("corpus/rdata/strings_v3.rds", header(3) + strsxp(["It is a truth", "", None, "universally acknowledged"]))
    put("corpus/rdata/index_v2.rds", header(2) + lazyload_index())
    put("corpus/rdata/reals_v3.rds", header(3) + reals())
    put("corpus/rdata/bad_truncated.rds", (header(3) + strsxp(["It is a truth"]))[:-4])

    images = idx([2, 3, 4], range(24))
    put("corpus/idx/images.idx", images)
    put("corpus/idx/labels.idx", idx([5], [0, 9, 3, 3, 1]))
    put("corpus/idx/images.idx.gz", gz(images))
    put("corpus/idx/bad_size.idx", images[:-1])

    text = b"".join(b"line %d of a small text\n" % i for i in range(12))
    put("corpus/gzip/text.gz", gz(text))
    blob = header(3) + strsxp(["EMMA", "By Jane Austen"])
    put("corpus/gzip/blob.rdb", struct.pack(">I", len(blob)) + zlib.compress(blob, 9))
    put("corpus/gzip/bad_truncated.gz", gz(text)[:-12])

    put("corpus/safetensors/anchor_mlp.safetensors", mlp_checkpoint())
    put("corpus/safetensors/master_mlp.safetensors", mlp_checkpoint(anchor=False))
    put("corpus/safetensors/bad_ckpt_mixed_block_size.safetensors", mlp_checkpoint(bs={"layers.1.weight": 16}))
    put("corpus/safetensors/bad_ckpt_mixed_format.safetensors", mlp_checkpoint(fmt={"layers.1.weight": "mxint4"}))

    model = gguf_model()
    put("corpus/gguf/model.gguf", model)
    put("corpus/gguf/aligned64.gguf", gguf([("general.alignment", 4, 64)], [("t", [3], 0, struct.pack("<3f", 1, 2, 3))], alignment=64))
    put("corpus/gguf/bad_truncated.gguf", model[:-40])  # into the last tensor, past its padding
    put("corpus/gguf/bad_misaligned.gguf", gguf([("general.alignment", 4, 48)], []))

    hdr = b"{'descr': '<f4\n', 'fortran_order': False, 'shape': (1,), }"
    hdr += b" " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + b"\n"
    put("regressions/npy-newline-in-dtype.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr + struct.pack("<f", 1.0))

    put("regressions/checkpoint-mixed-block-size.safetensors", mlp_checkpoint(bs={"layers.1.weight": 16}))
    put("regressions/checkpoint-mixed-block-size-no-key.safetensors",
        mlp_checkpoint(bs={"layers.1.weight": 16}, meta={"mfqat.anchor_block_size": None}))
    put("regressions/checkpoint-mixed-format.safetensors", mlp_checkpoint(fmt={"layers.1.weight": "mxint4"}))
    put("regressions/checkpoint-anchor-format-disagrees.safetensors", mlp_checkpoint(meta={"mfqat.anchor": "mxint4"}))
    put("regressions/checkpoint-block-size-key-disagrees.safetensors", mlp_checkpoint(meta={"mfqat.anchor_block_size": "16"}))
    put("regressions/checkpoint-mx-without-anchor-key.safetensors",
        mlp_checkpoint(meta={"mfqat.anchor": None, "mfqat.anchor_block_size": None}))


if __name__ == "__main__":
    main()
