"""mfqat.torch.fake_quant (the C++ kernel through a zero-copy numpy view) against a fake-quant
written in plain torch ops, the way Python MX emulators do it (amax per block, floor(log2),
round, clamp). MXINT8, blocks of 32, forward and forward+backward (straight-through), median of
`--reps` runs, on the threads torch and mfqat are given.

    PYTHONPATH=build/release/python /usr/bin/python3 python/bench/fake_quant.py --threads 2
"""
import argparse
import statistics
import time

import torch

import mfqat
import mfqat.torch as mt


def torch_mxint8(x):
    """MXINT8 fake-quant in torch ops (a baseline for speed; not bit-checked against mfqat)."""
    b = x.reshape(-1, 32)
    amax = b.abs().amax(1, keepdim=True)
    step = torch.exp2(torch.floor(torch.log2(amax.clamp_min(2.0 ** -127))) - 6)
    q = torch.clamp(torch.round(b / step), -127, 127) * step
    return x + (q.reshape(x.shape) - x).detach()  # straight-through


def timeit(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=9)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    mfqat.set_num_threads(a.threads)
    print(f"threads {a.threads}; MXINT8, block 32; median of {a.reps}")
    print(f"{'shape':>14} {'pass':>8} {'mfqat ms':>9} {'torch ms':>9} {'speed-up':>8} {'mfqat Melem/s':>13}")
    for shape in [(64, 64), (1024, 1024), (4096, 4096)]:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn(*shape)
        for name, fa, fb in [("fwd", lambda: mt.fake_quant(x, "mxint8"), lambda: torch_mxint8(x)),
                             ("fwd+bwd", lambda: mt.fake_quant(x, "mxint8").backward(g), lambda: torch_mxint8(x).backward(g))]:
            ta, tb = timeit(fa, a.reps), timeit(fb, a.reps)
            n = shape[0] * shape[1]
            print(f"{str(shape):>14} {name:>8} {ta * 1e3:9.3f} {tb * 1e3:9.3f} {tb / ta:7.1f}x {n / ta / 1e6:13.0f}")


if __name__ == "__main__":
    main()
