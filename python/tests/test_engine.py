"""mfqat.Engine against `mfqat generate`: the same tokens at every format of the anchor, logits as
numpy, formats switched without reloading or re-deriving, bad input as the CLI's messages."""
import json
import threading

import numpy as np
import pytest

import mfqat
from conftest import cli_error, run

PROMPT = "It is a truth universally acknowledged"


def cli_generate(path, fmt, n, *extra):
    return json.loads(run("generate", path, "-f", fmt, "-p", PROMPT, "-n", n, "--json", *extra).stdout)


def test_generate_matches_the_cli_at_every_format(tiny_anchor):
    e = mfqat.Engine(tiny_anchor)
    assert e.anchor == "mxint8"
    assert e.formats == ["mxint8", "mxint7", "mxint6", "mxint5", "mxint4", "mxint3", "mxint2", "fp32"]
    for fmt in e.formats:
        g = e.generate(PROMPT, format=fmt, max_tokens=24)
        c = cli_generate(tiny_anchor, fmt, 24)
        assert (g["format"], g["prompt_ids"], g["token_ids"]) == (c["format"], c["prompt_ids"], c["token_ids"])
        assert g["text_bytes"] == bytes(c["token_ids"]) and g["text"] == c["text"]
    # sampling: the same seed and options give the CLI's tokens
    g = e.generate(PROMPT, format="mxint4", max_tokens=24, temperature=0.8, top_k=20, top_p=0.9, seed=7)
    c = cli_generate(tiny_anchor, "mxint4", 24, "--temperature", 0.8, "--top-k", 20, "--top-p", 0.9, "--seed", 7)
    assert g["token_ids"] == c["token_ids"]
    assert e.generate(b"\xffbytes", format="anchor", max_tokens=3)["prompt_ids"][0] == 255  # bytes prompts as they are


def test_logits_and_format_switching_without_reload(tiny_anchor):
    e = mfqat.Engine(tiny_anchor)
    ids = e.encode(PROMPT)
    assert ids == list(PROMPT.encode())
    l8 = e.logits(ids, format="mxint8")
    assert l8.shape == (len(ids), e.vocab) and l8.dtype == np.float32
    g = e.generate(PROMPT, format="mxint8", max_tokens=1)
    assert int(np.argmax(l8[-1])) == g["token_ids"][0]  # greedy decode reads the same last position
    l4 = e.logits(ids, format="mxint4")
    assert not np.array_equal(l4, l8)
    n = e.derivations
    assert n == 2
    for fmt in ["mxint8", "mxint4", "mxint8", "mxint4"]:  # switching back and forth derives nothing
        e.logits(ids[:5], format=fmt)
    assert e.derivations == n
    assert np.array_equal(e.logits(ids, format="mxint4"), l4)
    assert sorted(c["format"] for c in e.cache()) == ["mxint4", "mxint8"]
    e.evict("mxint4")
    e.logits(ids[:3], format="mxint4")
    assert e.derivations == n + 1


def test_an_fp32_master_serves_fp32_and_every_format(tiny_master):
    e = mfqat.Engine(tiny_master, ctx=48)
    assert e.anchor == "fp32" and e.max_seq == 48 and e.config["max_seq"] == 48 and "mxfp4_e2m1" in e.formats
    assert e.generate(PROMPT, format="fp32", max_tokens=5)["token_ids"] == \
        json.loads(run("generate", tiny_master, "-f", "fp32", "-p", PROMPT, "-n", 5, "--json", "--ctx", 48).stdout)["token_ids"]


def test_bad_input_raises_with_the_cli_message(work, tiny_anchor):
    e = mfqat.Engine(tiny_anchor)
    for fmt in ["mxfp9", "mxfp4", "mxint8_e4m3"]:
        with pytest.raises(mfqat.Error) as err:
            e.generate(PROMPT, format=fmt, max_tokens=2)
        assert str(err.value) == cli_error("generate", tiny_anchor, "-f", fmt, "-p", PROMPT, "-n", 2)
    with pytest.raises(mfqat.Error) as err:
        mfqat.Engine(work / "missing.safetensors")
    assert str(err.value) == cli_error("generate", work / "missing.safetensors")
    with pytest.raises(mfqat.Error) as err:
        mfqat.Engine(tiny_anchor, kernels="avx3")
    assert "avx3" in str(err.value)
    with pytest.raises(mfqat.Error, match="token 256 is out of the vocabulary"):
        e.logits([1, 256])
    with pytest.raises(mfqat.Error, match="token -1 is out of the vocabulary"):
        e.logits(np.array([1, -1]))
    with pytest.raises(mfqat.Error, match="exceeds the context of 64"):
        e.logits(list(range(65)))
    with pytest.raises(mfqat.Error, match="no tokens to feed"):
        e.logits([])
    with pytest.raises(TypeError, match="expected integers, got float"):
        e.logits([1.5])
    with pytest.raises(mfqat.Error, match="exceeds the context"):
        e.generate("x" * 80, max_tokens=1)
    with pytest.raises(TypeError, match="expected str or bytes"):
        e.generate(123)
    with pytest.raises(mfqat.Error, match="--top-p"):
        e.generate(PROMPT, top_p=1.5)


def test_concurrent_generation_from_threads(tiny_anchor):
    """The engine is shared by Python threads (the GIL is released in generate and logits): each
    thread gets the tokens a lone call gets."""
    e = mfqat.Engine(tiny_anchor)
    want = {f: e.generate(PROMPT, format=f, max_tokens=32)["token_ids"] for f in ["mxint8", "mxint4", "mxint2"]}
    got, errors = {}, []

    def worker(f):
        try:
            for _ in range(3):
                got.setdefault(f, []).append(e.generate(PROMPT, format=f, max_tokens=32)["token_ids"])
        except Exception as x:  # pragma: no cover - reported below
            errors.append(x)

    ts = [threading.Thread(target=worker, args=(f,)) for f in want]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert all(r == want[f] for f in want for r in got[f])
