"""mfqat.torch: the autograd fake-quant, prepare() on a user's own model, the strategies, and
export_anchor for mfqat's LM (against `mfqat export`), a Hugging Face layout (against `mfqat export
DIR`) and a model of no known architecture (read by `mfqat inspect` / `convert`)."""
import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mfqat
import mfqat.torch as mt
from conftest import ROOT, bits, cli_error, read_safetensors, run

sys.path.insert(0, str(ROOT / "tests/hf"))
import hf_models  # noqa: E402 (tiny Hugging Face checkpoints in the upstream layout, written without mfqat)


def test_fake_quant_forward_is_the_core_and_backward_is_the_ste():
    x = (torch.randn(6, 3, 96) * 4).requires_grad_()
    for fmt in ["mxint4", "mxfp4_e2m1", "mxfp8_e4m3"]:
        y = mt.fake_quant(x, fmt)
        assert np.array_equal(bits(y.detach().numpy()), bits(mfqat.fake_quant(x.detach().numpy(), fmt)))
        g = torch.randn_like(x)
        (gx,) = torch.autograd.grad(y, x, g)
        assert torch.equal(gx, g)  # plain: the gradient passes unchanged
        # clipped: zero exactly where the element saturated (|x| past the block's largest code)
        sat = np.empty(x.shape, np.uint8)
        mfqat._core.fake_quant(x.detach().numpy(), fmt, saturated=sat)
        sat = torch.from_numpy(sat).bool()
        assert sat.any() and not sat.all()
        (gc,) = torch.autograd.grad(mt.fake_quant(x, fmt, ste="clipped"), x, g)
        assert torch.equal(gc, g.masked_fill(sat, 0.0))
        # saturated means clipped to the format's largest magnitude at the block's scale
        yv, xv = y.detach(), x.detach()
        assert torch.all(yv.abs()[sat] < xv.abs()[sat])
    # a non-contiguous input is read densely, as the trainer's op does
    xt = x.detach().transpose(0, 2)
    assert torch.equal(mt.fake_quant(xt, "mxint8"), mt.fake_quant(xt.contiguous(), "mxint8"))
    with pytest.raises(mfqat.Error, match="unknown --ste 'soft' \\(plain, clipped\\)"):
        mt.fake_quant(x, "mxint8", ste="soft")
    with pytest.raises(TypeError, match="float32"):
        mt.fake_quant(x.double(), "mxint8")
    with pytest.raises(mfqat.Error, match="unknown format 'int9'"):
        mt.fake_quant(x, "int9")


class UserNet(nn.Module):
    """Someone's model: linears in a Sequential, a head, an attention block (whose out_proj is an
    nn.Linear subclass its parent never calls), an embedding."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 64)
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.body = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
        self.head = nn.Linear(64, 10)

    def forward(self, tokens):
        h = self.emb(tokens)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.head(h + self.body(h))


def test_prepare_wraps_a_users_linears_in_place():
    torch.manual_seed(0)
    model = UserNet()
    names_before = list(model.state_dict())
    params_before = {n: p for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # built before prepare: must keep working
    x = torch.randint(0, 10, (2, 5))
    ref = model(x)
    qat = mt.prepare(model, formats="mxint4,mxint8", strategy="cycle", skip="head")
    assert sorted(qat.modules) == ["body.0", "body.2"]
    assert isinstance(model.body[0], mt.QuantLinear) and type(model.head) is nn.Linear
    assert list(model.state_dict()) == names_before
    assert all(p is params_before[n] for n, p in model.named_parameters())
    assert torch.equal(model(x), ref)  # fp32 outside a step
    with qat.format("mxint4"):
        w4 = torch.from_numpy(mfqat.fake_quant(model.body[0].weight.detach().numpy(), "mxint4"))
        h = model.emb(x)
        assert torch.equal(model.body[0](h), F.linear(h, w4, model.body[0].bias))
    assert model.body[0].format is None
    # one cycle step: the gradient of the format of step 0 only, then the optimizer moves the weights
    opt.zero_grad()
    loss = qat.backward(lambda: model(x).square().mean())
    with qat.format("mxint4"):
        want = torch.autograd.grad(model(x).square().mean(), model.body[0].weight)[0]
    assert torch.equal(model.body[0].weight.grad, want) and loss > 0
    w0 = model.body[0].weight.detach().clone()
    opt.step()
    assert not torch.equal(model.body[0].weight, w0)
    assert [f.name for f in qat.formats_for_step(1)] == ["mxint8"] and qat.step == 1
    # a prepared model deep-copies (EMA copies, checkpointing whole modules)
    import copy
    clone = copy.deepcopy(model)
    with clone.mfqat_qat.format("mxint4"), qat.format("mxint4"):
        assert torch.equal(clone(x), model(x))
    # skip by regex or callable; nothing left to wrap is an error
    assert sorted(mt.prepare(UserNet(), "int", skip=r"body\..*").modules) == ["head"]
    assert sorted(mt.prepare(UserNet(), "fp", skip=lambda n, m: m.out_features == 128).modules) == ["body.2", "head"]
    with pytest.raises(mfqat.Error, match="no nn.Linear to quantize"):
        mt.prepare(UserNet(), "int", skip=["body.0", "body.2", "head"])


def test_joint_averages_the_formats_gradients():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(8, 64)
    qat = mt.prepare(model, ["mxint2", "mxint4", "mxfp4"], strategy="joint")
    model.zero_grad()
    loss = qat.backward(lambda: model(x).square().mean())
    got = model[0].weight.grad.clone()
    grads, losses = [], []
    for f in qat.formats:
        model.zero_grad()
        with qat.format(f):
            l = model(x).square().mean()
            l.backward()
        grads.append(model[0].weight.grad.clone())
        losses.append(l.item())
    assert torch.allclose(got, sum(grads) / 3, rtol=1e-6, atol=1e-9)
    assert loss == pytest.approx(sum(losses) / 3, rel=1e-6)


def test_random_strategy_and_bad_options():
    model = nn.Sequential(nn.Linear(32, 32))
    qat = mt.prepare(model, ["mxint4", "mxint8"], strategy="random", weights=[0, 1], seed=3)
    assert {qat.formats_for_step()[0].name for _ in range(20)} == {"mxint8"}
    for kw, msg in [({"strategy": "all"}, "unknown strategy 'all' \\(joint, cycle, random\\)"),
                    ({"weights": [1]}, "--weights needs one weight per format"),
                    ({"rounding": "up"}, "unknown rounding 'up'"), ({"formats": "mxint9"}, "unknown format 'mxint9'")]:
        args = {"formats": ["mxint4", "mxint8"], **kw}
        with pytest.raises(mfqat.Error, match=msg):
            mt.prepare(nn.Sequential(nn.Linear(32, 32)), **args)


def test_export_anchor_of_mfqat_lm_is_what_mfqat_export_writes(work, tiny_master, tiny_anchor):
    model = mt.load_model(tiny_master)
    mt.prepare(model, ["mxint4", "mxint8"], skip="head")
    out = work / "py_a8.safetensors"
    stats = mt.export_anchor(model, "mxint8", out)
    assert stats["mx_tensors"] == 14
    mine, mine_meta = read_safetensors(out)
    cli, cli_meta = read_safetensors(tiny_anchor)
    assert mine.keys() == cli.keys()
    for k in cli:
        assert np.array_equal(mine[k], cli[k]), k
    for k in ["mfqat.model_config", "mfqat.anchor", "mfqat.anchor_block_size"]:
        assert mine_meta[k] == cli_meta[k]
    assert json.loads(mine_meta["mfqat.python.qat"])["formats"] == ["mxint4", "mxint8"]
    # the CLI and the engine load it: every format of the family, the same text as from the CLI's anchor
    a = run("generate", out, "-f", "mxint4", "-p", "It is", "-n", 20, "--json").stdout
    b = run("generate", tiny_anchor, "-f", "mxint4", "-p", "It is", "-n", 20, "--json").stdout
    assert json.loads(a)["token_ids"] == json.loads(b)["token_ids"]
    assert mfqat.Engine(out).formats == mfqat.Engine(tiny_anchor).formats
    # a loaded model evaluates like the anchor it came from: mfqat.torch forward vs the engine
    lm = mt.load_model(tiny_anchor, format="mxint4")
    ids = list(b"It is a truth universally ackn")
    ref = lm(torch.tensor([ids]))[0].detach().numpy()
    got = mfqat.Engine(tiny_anchor, prefill_acts="fp32").logits(ids, format="mxint4")
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5  # the runtime's contract (docs/numerics.md)
    # the default rounds the prompt's activations to int8 per block of 32 (where AVX-512 VNNI is)
    got8 = mfqat.Engine(tiny_anchor).logits(ids, format="mxint4")
    assert np.abs(got8 - ref).max() / np.abs(ref).max() < 4e-2
    with pytest.raises(ValueError, match="prefill-acts"):
        mfqat.Engine(tiny_anchor, prefill_acts="int4")


def test_export_anchor_refuses_what_export_refuses(work, tiny_master):
    model = mt.load_model(tiny_master)
    with pytest.raises(mfqat.Error, match="output must be .safetensors"):
        mt.export_anchor(model, "mxint8", work / "a.bin")
    with pytest.raises(mfqat.Error, match="unknown format 'mxint9'"):
        mt.export_anchor(model, "mxint9", work / "a.safetensors")
    model.blocks[0].wq.weight.data[0, 0] = float("nan")
    with pytest.raises(mfqat.Error, match="blocks.0.wq.weight"):
        mt.export_anchor(model, "mxint8", work / "nan.safetensors")
    assert not (work / "nan.safetensors").exists()
    extra = mt.load_model(tiny_master)
    extra.extra = nn.Linear(4, 4)
    with pytest.raises(mfqat.Error, match="parameter 'extra.weight' is not part of a mfqat model"):
        mt.export_anchor(extra, "mxint8", work / "x.safetensors")
    wrong = mt.load_model(tiny_master)
    wrong.blocks[0].wq.weight = nn.Parameter(torch.zeros(64, 32))
    with pytest.raises(mfqat.Error, match=r"parameter 'blocks.0.wq.weight' has shape \(64, 32\), the config says \(64, 64\)"):
        mt.export_anchor(wrong, "mxint8", work / "x.safetensors")
    del wrong.blocks[1].w2.weight
    wrong.blocks[0].wq.weight = nn.Parameter(torch.zeros(64, 64))
    with pytest.raises(mfqat.Error, match="parameter 'blocks.1.w2.weight' is missing"):
        mt.export_anchor(wrong, "mxint8", work / "x.safetensors")


class _HfConfig:
    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return dict(self.d)


def hf_module(values, config):
    """A module with transformers' parameter names (model.layers.N.self_attn.q_proj, ...,
    lm_head) holding `values`; the projections are nn.Linear, as in transformers."""
    root = nn.Module()

    def module_at(path):
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        return mod

    for name, v in values.items():
        prefix, leaf = name.rsplit(".", 1)
        *parent, last = prefix.split(".")
        t = nn.Parameter(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
        if last.endswith("_proj") or last == "lm_head":
            pm = module_at(parent)
            if not hasattr(pm, last):
                w = values[prefix + ".weight"]
                pm.add_module(last, nn.Linear(w.shape[1], w.shape[0], bias=prefix + ".bias" in values))
            setattr(getattr(pm, last), leaf, t)
        else:
            setattr(module_at(prefix.split(".")), leaf, t)
    root.config = _HfConfig(config)
    return root


@pytest.mark.parametrize("name", ["llama3", "qwen2", "qwen3"])
def test_export_anchor_of_a_hugging_face_layout_is_what_mfqat_export_writes(work, name):
    d = work / f"hf_{name}"
    config, values = hf_models.write_model(name, str(d), seed=sum(map(ord, name)))
    hf_models.write_tokenizer(str(d), config["vocab_size"])
    cli_out = work / f"hf_{name}.a8.safetensors"
    run("export", "--anchor", "mxint8", d, "-o", cli_out)
    model = hf_module(values, config)
    qat = mt.prepare(model, ["mxint4", "mxint8"], skip="lm_head")
    assert len(qat.modules) == 7 * config["num_hidden_layers"]
    out = work / f"hf_{name}.py.a8.safetensors"
    mt.export_anchor(model, "mxint8", out, tokenizer=d / "tokenizer.json")
    mine, mine_meta = read_safetensors(out)
    cli, cli_meta = read_safetensors(cli_out)
    assert mine.keys() == cli.keys()
    for k in cli:
        assert np.array_equal(mine[k], cli[k]), k
    assert mine_meta["mfqat.model_config"] == cli_meta["mfqat.model_config"]
    e = mfqat.Engine(out)
    assert e.encode("hello world") == mfqat.Engine(cli_out).encode("hello world")
    assert e.generate("hello", format="mxint4", max_tokens=8)["token_ids"] == \
        json.loads(run("generate", cli_out, "-f", "mxint4", "-p", "hello", "-n", 8, "--json").stdout)["token_ids"]
    # and the same directory read into mfqat.torch.LM (mfqat's names) exports the same anchor
    lm = mt.load_model(d)
    out2 = work / f"hf_{name}.lm.a8.safetensors"
    mt.export_anchor(lm, "mxint8", out2)
    assert all(np.array_equal(v, cli[k]) for k, v in read_safetensors(out2)[0].items())


def test_export_anchor_of_an_unknown_architecture(work):
    torch.manual_seed(2)
    model = UserNet()
    mt.prepare(model, "int", skip="head")
    out = work / "user.a8.safetensors"
    stats = mt.export_anchor(model, "mxint8", out)
    assert stats["mx_tensors"] == 2
    back = mfqat.load(out)
    for n in ["body.0.weight", "body.2.weight"]:
        p = back[n]
        assert isinstance(p, mfqat.Packed) and p.format.name == "mxint8"
        want = mfqat.quantize(dict(model.named_parameters())[n].detach(), "mxint8")
        assert np.array_equal(p.elements, want.elements) and np.array_equal(p.scales, want.scales)
    assert isinstance(back["head.weight"], np.ndarray) and back["head.weight"].dtype == np.float32
    info = json.loads(run("inspect", out, "--json").stdout)
    assert info
    run("convert", out, "--to", "mxint4", "-o", work / "user.a4.safetensors")
    assert mfqat.metadata(work / "user.a4.safetensors")["mfqat.anchor"] == "mxint4"
    with pytest.raises(mfqat.Error, match="no model config"):
        mfqat.Engine(out)


def test_mlp_classifier_exports_with_its_config(work):
    torch.manual_seed(3)
    model = mt.MLP({"model": "mlp", "inputs": 64, "hidden": [96, 32], "classes": 10})
    qat = mt.prepare(model, "mxfp4,mxfp8", skip="head")
    x = torch.randn(16, 64)
    qat.backward(lambda: F.cross_entropy(model(x), torch.arange(16) % 10))
    out = work / "mlp.a8.safetensors"
    mt.export_anchor(model, "mxfp8_e4m3", out)
    back = mt.load_model(out)  # the anchor's own format, dequantized
    for name, p in model.named_parameters():
        want = p.detach().numpy()
        if name.startswith("layers.") and name.endswith(".weight"):
            want = mfqat.fake_quant(want, "mxfp8_e4m3")
        assert np.array_equal(dict(back.named_parameters())[name].detach().numpy(), want), name
    assert json.loads(mfqat.metadata(out)["mfqat.model_config"])["model"] == "mlp"
    with pytest.raises(TypeError, match="meta"):
        m = nn.Sequential(nn.Linear(32, 32, device="meta"))
        mt.prepare(m, "mxint8").set_format("mxint8")
        m(torch.zeros(1, 32, device="meta"))
