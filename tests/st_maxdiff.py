#!/usr/bin/env python3
"""Largest absolute difference between the F32 tensors of two safetensors files (stdlib only).

Usage: st_maxdiff.py A B [TOL]  prints the difference; with TOL, exits 1 when it exceeds TOL
or when the files hold other tensor names or shapes.
"""
import array
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {t['dtype']}, not F32")
        a = array.array("f")
        b, e = t["data_offsets"]
        a.frombytes(body[b:e])
        out[name] = (t["shape"], a)
    return out


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if a.keys() != b.keys() or any(a[k][0] != b[k][0] for k in a):
    print("the files hold other tensors")
    sys.exit(1)
worst, where = 0.0, ""
for k in a:
    d = max((abs(x - y) for x, y in zip(a[k][1], b[k][1])), default=0.0)
    if d > worst:
        worst, where = d, k
print(f"max |difference| {worst:.3g}" + (f" (in {where})" if where else ""))
if len(sys.argv) > 3 and not worst <= float(sys.argv[3]):
    sys.exit(1)
