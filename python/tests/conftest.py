"""Shared fixtures: the CLI binary (MFQAT_BIN, set by run.sh), a tiny LM trained and exported by
the CLI itself (so every comparison is against files the CLI wrote), and helpers to run the CLI."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("MFQAT_BIN") or str(ROOT / "build/release/src/cli/mfqat")

# A small LM of mfqat's architecture; blocks of 32 along every linear's input.
TINY = {"model": "lm", "dim": 64, "n_layers": 2, "n_heads": 4, "max_seq": 64}


def run(*args, check=True):
    """Runs the CLI; returns the CompletedProcess (stdout/stderr as bytes)."""
    p = subprocess.run([BIN, *map(str, args)], capture_output=True)
    if check and p.returncode != 0:
        raise AssertionError(f"mfqat {' '.join(map(str, args))} failed: {p.stderr.decode(errors='replace')}")
    return p


def cli_error(*args):
    """The CLI's one-line error (the text after 'mfqat: error: ') for a command that must fail."""
    p = run(*args, check=False)
    assert p.returncode != 0, f"mfqat {args} should have failed"
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfqat: error: "), lines
    return lines[0][len("mfqat: error: "):]


def bits(a):
    """float32 values as their bit patterns (NaN payloads and the sign of zero compared too)."""
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def read_safetensors(path):
    """An independent reader (standard library + numpy, not mfqat): {name: array}, metadata."""
    raw = pathlib.Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    dt = {"F32": "<f4", "U8": "|u1", "F16": "<f2", "I64": "<i8"}
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=dt[h["dtype"]]).reshape(h["shape"])
    return out, meta


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("mfqat")


@pytest.fixture(scope="session")
def text_file(work):
    """~80 KB of English (the repository's docs, in a fixed order): the LM's training text."""
    text = b"".join(p.read_bytes() for p in sorted((ROOT / "docs").glob("*.md")))[:80_000]
    path = work / "text.txt"
    path.write_bytes(text)
    return path


@pytest.fixture(scope="session")
def tiny_master(work, text_file):
    """An fp32 master written by `mfqat train` (a short pretraining of TINY on text_file)."""
    cfg = work / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = work / "pre.safetensors"
    run("--threads", 1, "train", "--config", cfg, "--text", text_file, "-o", out, "--steps", 30, "--seq", 32, "--batch", 8,
        "--lr", 1e-2, "--warmup", 5, "--seed", 1, "--json")
    return out


@pytest.fixture(scope="session")
def tiny_anchor(work, tiny_master):
    """The mxint8 anchor `mfqat export --anchor mxint8` writes of tiny_master."""
    out = work / "pre.a8.safetensors"
    run("export", tiny_master, "--anchor", "mxint8", "-o", out)
    return out
