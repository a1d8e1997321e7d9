"""Multi-format QAT in a plain PyTorch loop against `mfqat train --mode mf` on the same data.

The honest version of "same data and seed": both start from the same fp32 master written by the
CLI (`mfqat train`), and the PyTorch loop is fed the CLI's batches: `mfqat train --text` cuts the
text's last tenth off for validation and, with `--train-sequences 0`, draws each window start from
std::uniform_int_distribution over std::mt19937_64(seed) (mfqat._core._std_uniform_draws gives the
same draws from the same standard library). The loop is what a user writes: AdamW (betas 0.9/0.95,
weight decay 0.1), the CLI's warm-up + cosine learning rate (restated below), gradient clipping at
1.0, and mfqat.torch.prepare(..., strategy="joint") on mfqat.torch.LM (skip="head": mfqat's LM
keeps its head in fp32). One thread on both sides.

Tolerance: zero. Both sides run the same libtorch 1.13 (Debian's python3-torch and libtorch-dev
are one source package: the same libtorch_cpu.so), the same MX kernel, the same operations in the
same order on one thread (mfqat.torch.LM restates src/train/model.cpp op for op; torch.optim.AdamW
and clip_grad_norm_ compute what their C++ twins do), so every step's loss and every final weight
are asserted bit-identical; measured: identical. A mistake anywhere (the 1/n scaling of joint, an
operation order, the schedule, a batch) shows at the first step. `random` is not compared: the CLI
draws its formats from the same generator as its batches, interleaved, which a user's loop has no
reason to reproduce.
"""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mfqat
import mfqat.torch as mt
from conftest import read_safetensors, run

STEPS, BATCH, SEQ, LR, WARMUP, SEED = 8, 4, 32, 2e-3, 3, 5
FORMATS = ["mxint4", "mxint8", "mxfp4_e2m1"]


def lr_at(step):
    """mfqat's schedule (src/train/trainer.cpp lr_at): linear warm-up, cosine to 10 % of the peak."""
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    p = (step - WARMUP) / (STEPS - WARMUP) if STEPS > WARMUP else 1.0
    return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def cli_train(work, tiny_master, text_file, strategy, ste):
    out = work / f"mf_{strategy}_{ste}.safetensors"
    metrics = work / f"mf_{strategy}_{ste}.jsonl"
    run("--threads", 1, "train", "--init", tiny_master, "--text", text_file, "-o", out, "--mode", "mf", "--formats", ",".join(FORMATS),
        "--strategy", strategy, "--ste", ste, "--steps", STEPS, "--batch", BATCH, "--seq", SEQ, "--train-sequences", 0, "--lr", LR,
        "--warmup", WARMUP, "--seed", SEED, "--metrics", metrics, "--json")
    losses = [json.loads(l)["loss"] for l in metrics.read_text().splitlines()]
    return out, losses


@pytest.mark.parametrize("strategy,ste", [("joint", "plain"), ("cycle", "clipped")])
def test_prepare_in_a_plain_loop_matches_mfqat_train(work, tiny_master, text_file, strategy, ste):
    cli_ckpt, cli_losses = cli_train(work, tiny_master, text_file, strategy, ste)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = mt.load_model(tiny_master)
    qat = mt.prepare(model, formats=FORMATS, strategy=strategy, ste=ste, skip="head")
    assert len(qat.modules) == 7 * 2  # the blocks' seven linears, not the head
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.1)

    text = text_file.read_bytes()
    train = torch.tensor(list(text[:len(text) - len(text) // 10]), dtype=torch.int64)
    starts = mfqat._core._std_uniform_draws(SEED, 0, len(train) - SEQ - 1, STEPS * BATCH)
    losses = []
    for step in range(STEPS):
        win = torch.stack([train[s:s + SEQ + 1] for s in starts[step * BATCH:(step + 1) * BATCH]])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad()
        loss = qat.backward(lambda: F.cross_entropy(model(win[:, :-1]).reshape(-1, 256), win[:, 1:].reshape(-1)))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss)

    assert len(cli_losses) == STEPS
    loss_err = max(abs(a - b) / abs(b) for a, b in zip(losses, cli_losses))
    want, _ = read_safetensors(cli_ckpt)
    weight_err, moved = 0.0, 0.0
    start, _ = read_safetensors(tiny_master)
    for name, p in model.named_parameters():
        w = p.detach().numpy()
        weight_err = max(weight_err, float(np.abs(w - want[name]).max() / np.abs(want[name]).max()))
        moved = max(moved, float(np.abs(want[name] - start[name]).max() / np.abs(want[name]).max()))
    torch.set_num_threads(threads)
    print(f"\nQAT match over {STEPS} {strategy} ({ste} STE) steps of {FORMATS}: max relative loss difference {loss_err:.3g}, "
          f"max weight difference {weight_err:.3g} of the tensor's largest |w| (training moved weights by up to {moved:.3g})")
    assert moved > 1e-3  # the comparison is not of untouched weights
    assert loss_err == 0, (losses, cli_losses)
    assert weight_err == 0
