// The Jinja subset of src/hf/jinja.cpp, construct by construct, with exact expected output (each
// string is what jinja2 3.1 renders with transformers' settings: trim_blocks and lstrip_blocks on;
// tests/chat/chat_template_oracle_test.py checks the same against jinja2 itself).
#include <gtest/gtest.h>

#include <string>

#include "mfqat/hf/jinja.h"

using mfqat::hf::JinjaError;
using mfqat::hf::JinjaTemplate;
using json = nlohmann::ordered_json;

namespace {

std::string render(const std::string& src, const json& ctx = json::object()) { return JinjaTemplate(src).render(ctx); }

// The error message of rendering (or parsing) src; "" when it renders.
std::string error_of(const std::string& src, const json& ctx = json::object()) {
  try {
    (void)JinjaTemplate(src, "t").render(ctx);
  } catch (const JinjaError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Jinja, TextExpressionsAndComments) {
  EXPECT_EQ(render("plain text"), "plain text");
  EXPECT_EQ(render("a {{ 'b' }} c{# comment #}d"), "a b cd");
  EXPECT_EQ(render("{{ x }}-{{ y }}", {{"x", "X"}, {"y", 3}}), "X-3");
  EXPECT_EQ(render("{ not a tag } {x}"), "{ not a tag } {x}");
}

TEST(Jinja, TrimBlocksEatsTheNewlineAfterABlockTag) {
  EXPECT_EQ(render("{% if true %}\nyes\n{% endif %}\nafter"), "yes\nafter");
  // not after a variable tag
  EXPECT_EQ(render("{{ 'a' }}\n{{ 'b' }}"), "a\nb");
  EXPECT_EQ(render("{# c #}\nx"), "x");
}

TEST(Jinja, LstripBlocksStripsIndentBeforeABlockTagOnly) {
  EXPECT_EQ(render("  {% if true %}\n    x\n  {% endif %}\n"), "    x\n");
  EXPECT_EQ(render("a  {% if true %}b{% endif %}"), "a  b");  // text before the tag on its line: kept
  EXPECT_EQ(render("  {{ 'v' }}"), "  v");                   // variable tags are not stripped
  EXPECT_EQ(render("x\n  {%+ if true %}y{% endif %}"), "x\n  y");  // + keeps it
}

TEST(Jinja, MinusMarkersStripAllWhitespace) {
  EXPECT_EQ(render("a  \n  {{- 'b' -}}  \n  c"), "abc");
  EXPECT_EQ(render("a \n {%- if true -%} \n b \n {%- endif %}"), "ab");
  EXPECT_EQ(render("x {#- gone -#} y"), "xy");
}

TEST(Jinja, TrailingNewlineAndCrlf) {
  EXPECT_EQ(render("line\n"), "line");
  EXPECT_EQ(render("line\n\n"), "line\n");
  EXPECT_EQ(render("a\r\nb\rc"), "a\nb\nc");
}

TEST(Jinja, IfElifElse) {
  const std::string t = "{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %}";
  EXPECT_EQ(render(t, {{"n", 1}}), "one");
  EXPECT_EQ(render(t, {{"n", 2}}), "two");
  EXPECT_EQ(render(t, {{"n", 5}}), "many");
  EXPECT_EQ(render("{% if missing %}a{% else %}b{% endif %}"), "b");
}

TEST(Jinja, ForLoopVariables) {
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}|{% endfor %}",
                   {{"xs", {"a", "b"}}}),
            "10TrueFalse2|21FalseTrue2|");
  EXPECT_EQ(render("{% for x in xs if x > 1 %}{{ x }}/{{ loop.length }} {% endfor %}", {{"xs", {1, 2, 3}}}), "2/2 3/2 ");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"z", 1}, {"a", 2}}}}), "z=1;a=2;");
  EXPECT_EQ(render("{% for x in range(9) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"), "023");
}

TEST(Jinja, SetScopesAndNamespaces) {
  // a set inside a loop does not leak out of it; one inside an if does
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}"), "231");
  EXPECT_EQ(render("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"), "6");
  EXPECT_EQ(render("{% set b %}in{{ 1 }}{% endset %}[{{ b }}]"), "[in1]");
}

TEST(Jinja, Literals) {
  EXPECT_EQ(render(R"({{ 'a\nb\t\'q\' \\ \x41\u00e9 \d' }})"), "a\nb\t'q' \\ A\xC3\xA9 \\d");
  EXPECT_EQ(render(R"({{ "dq 'x'" 'adj' }})"), "dq 'x'adj");
  EXPECT_EQ(render("{{ none }} {{ true }} {{ False }} {{ 1.0 }} {{ 1e20 }} {{ 0.0001 }} {{ 1e-5 }}"), "None True False 1.0 1e+20 0.0001 1e-05");
  EXPECT_EQ(render("{{ [1, 'a', none] }} {{ {'k': \"it's\"} }}"), "[1, 'a', None] {'k': \"it's\"}");
}

TEST(Jinja, Operators) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }}"), "7 -4 2 3.5 1024 0.30000000000000004");
  EXPECT_EQ(render("{{ 'a' + 'b' ~ 1 ~ none }} {{ [1] + [2] }} {{ 'ab' * 2 }}"), "ab1None [1, 2] abab");
  EXPECT_EQ(render("{{ 1 < 2 }} {{ 'a' > 'b' }} {{ 1 == 1.0 }} {{ [1] != [1] }}"), "True False True False");
  EXPECT_EQ(render("{{ true and 'x' }} {{ false or 'y' }} {{ not 0 }} {{ 1 and 0 }}"), "x y True 0");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }}"), "True True True True");
  EXPECT_EQ(render("{{ 'y' if x else 'n' }}[{{ 'only' if false }}]", {{"x", 1}}), "y[]");
  // filters bind tighter than arithmetic: messages|length - 1
  EXPECT_EQ(render("{{ xs|length - 1 }}", {{"xs", {1, 2, 3}}}), "2");
}

TEST(Jinja, Tests) {
  const json ctx = {{"x", "v"}, {"n", nullptr}, {"f", false}, {"d", json::object()}};
  EXPECT_EQ(render("{{ x is defined }} {{ y is defined }} {{ y is not defined }} {{ n is none }} {{ x is not none }}", ctx),
            "True False True True True");
  EXPECT_EQ(render("{{ x is string }} {{ 3 is number }} {{ 3 is integer }} {{ 3.0 is float }} {{ f is false }} {{ d is mapping }}", ctx),
            "True True True True True True");
  EXPECT_EQ(render("{{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ x is eq 'v' }}", ctx), "True True True True");
  EXPECT_EQ(render("{{ not y is defined }}", ctx), "True");  // `is` binds tighter than not
}

TEST(Jinja, AttributesSubscriptsSlices) {
  const json ctx = {{"m", {{"role", "user"}, {"content", "hi"}}}, {"xs", {1, 2, 3, 4}}, {"s", "h\xC3\xA9llo"}};
  EXPECT_EQ(render("{{ m.role }} {{ m['content'] }} {{ xs[0] }} {{ xs[-1] }} {{ xs.1 }} [{{ m.missing }}]", ctx), "user hi 1 4 2 []");
  EXPECT_EQ(render("{{ xs[1:] }} {{ xs[:2] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[-2:] }}", ctx), "[2, 3, 4] [1, 2] [4, 3, 2, 1] [1, 3] [3, 4]");
  EXPECT_EQ(render("{{ s[::-1] }} {{ s[1:3] }} {{ s | length }}", ctx), "oll\xC3\xA9h \xC3\xA9l 5");  // code points
  EXPECT_EQ(render("{{ m.get('role') }} {{ m.get('no', 'd') }}", ctx), "user d");
}

TEST(Jinja, Filters) {
  const json ctx = {{"xs", {1, 2, 3}}};
  EXPECT_EQ(render("[{{ '  x \n' | trim }}] [{{ 'xxaxx' | trim('x') }}]"), "[x] [a]");
  EXPECT_EQ(render("{{ xs | length }} {{ y | default('d') }} {{ '' | default('e', true) }} {{ xs | join(', ') }}", ctx), "3 d e 1, 2, 3");
  EXPECT_EQ(render("{{ xs | first }}{{ xs | last }} {{ 'Ab' | upper }}{{ 'Ab' | lower }} {{ 'a-b' | replace('-', '+') }}", ctx), "13 ABab a+b");
  EXPECT_EQ(render("{{ xs | reverse | list }} {{ '12' | int + 1 }} {{ 3 | string }}", ctx), "[3, 2, 1] 13 3");
  EXPECT_EQ(render("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}",
                   {{"ms", {{{"role", "user"}, {"content", "a"}}, {{"role", "assistant"}, {"content", "b"}}, {{"role", "user"}, {"content", "c"}}}}}),
            "a,c");
}

TEST(Jinja, TojsonIsPythonJsonDumpsWithoutAsciiEscapes) {
  const json ctx = {{"d", {{"b", 1}, {"a", {true, nullptr, "\xC3\xBC", 2.5}}, {"c", "q\"\t"}}}};
  EXPECT_EQ(render("{{ d | tojson }}", ctx), "{\"b\": 1, \"a\": [true, null, \"\xC3\xBC\", 2.5], \"c\": \"q\\\"\\t\"}");
  EXPECT_EQ(render("{{ {'k': [1]} | tojson(indent=2) }}"), "{\n  \"k\": [\n    1\n  ]\n}");
}

TEST(Jinja, StringMethods) {
  const json ctx = {{"s", "<a>text</a>"}, {"w", " \t padded \n"}};
  EXPECT_EQ(render("{{ s.startswith('<a>') }} {{ s.endswith('</a>') }} {{ s.startswith(('x', '<')) }}", ctx), "True True True");
  EXPECT_EQ(render("[{{ w.strip() }}][{{ w.lstrip() }}][{{ w.rstrip() }}]", ctx), "[padded][padded \n][ \t padded]");
  EXPECT_EQ(render("{{ s.split('>') }} {{ 'a b  c'.split() }} {{ 'a,b,c'.split(',', 1) }} {{ '\\n\\nx\\n'.strip('\\n') }}", ctx),
            "['<a', 'text</a', ''] ['a', 'b', 'c'] ['a', 'b,c'] x");
  EXPECT_EQ(render("{{ s.split('</a>')[0].split('<a>')[-1] }}", ctx), "text");
}

TEST(Jinja, ErrorsAreOneLineWithThePosition) {
  EXPECT_EQ(error_of("ab\n{% if x %}no end"), "t:2:17: unexpected end of template, expected one of: 'elif', 'else', 'endif'");
  EXPECT_EQ(error_of("{{ x | frobnicate }}"), "t:1:8: no filter named 'frobnicate'");
  EXPECT_EQ(error_of("{{ x is frob }}"), "t:1:6: no test named 'frob'");
  EXPECT_EQ(error_of("{{ x.y.z }}"), "t:1:5: 'x' is undefined");
  EXPECT_EQ(error_of("x\n  {{ raise_exception('Roles must\nalternate') }}"), "t:2:21: raise_exception: Roles must alternate");
  EXPECT_EQ(error_of("{{ x "), "t:1:1: unexpected end of template, expected '}}'");
  EXPECT_EQ(error_of("{% frob %}"), "t:1:4: unknown or unsupported tag 'frob'");
  EXPECT_EQ(error_of("{{ 'a' + 1 }}"), "t:1:8: unsupported operand types for +: 'str' and 'int'");
  EXPECT_EQ(error_of("{# open"), "t:1:1: missing end of comment tag");
  EXPECT_EQ(error_of("{{ 2 ** 80 }}"), "t:1:6: integer overflow in ** (integers are 64-bit here)");
  EXPECT_EQ(error_of("{{ 9223372036854775807 + 1 }}"), "t:1:24: integer overflow in + (integers are 64-bit here)");
}

TEST(Jinja, LimitsStopRunawayTemplates) {
  mfqat::hf::JinjaLimits lim;
  lim.max_output = 100;
  EXPECT_THROW(JinjaTemplate("{% for i in range(1000) %}xx{% endfor %}").render(json::object(), lim), JinjaError);
  lim = {};
  lim.max_steps = 1000;
  EXPECT_THROW(JinjaTemplate("{% for i in range(1000) %}{% endfor %}").render(json::object(), lim), JinjaError);
  std::string deep(500, '(');
  EXPECT_THROW(JinjaTemplate("{{ " + deep + "1" + std::string(500, ')') + " }}"), JinjaError);
}

TEST(Jinja, ChatTemplateFromTokenizerConfig) {
  const auto t = mfqat::hf::chat_template_from_config(
      R"({"chat_template": "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
          "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null})");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->special_tokens.dump(), R"({"bos_token":"<s>","eos_token":"</s>"})");
  const json msgs = json::array({{{"role", "user"}, {"content", "hi"}}});
  EXPECT_EQ(JinjaTemplate(t->source).render(mfqat::hf::chat_template_context(*t, msgs, true)), "<s><user>hi<assistant>");
  EXPECT_EQ(JinjaTemplate(t->source).render(mfqat::hf::chat_template_context(*t, msgs, false)), "<s><user>hi");
  // tools and documents are None, as transformers passes them
  EXPECT_EQ(render("{{ tools is none }}{{ documents is defined }}", mfqat::hf::chat_template_context(*t, msgs, true)), "TrueTrue");

  EXPECT_FALSE(mfqat::hf::chat_template_from_config(R"({"bos_token": "<s>"})").has_value());
  const auto named = mfqat::hf::chat_template_from_config(R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  ASSERT_TRUE(named.has_value());
  EXPECT_EQ(named->source, "D");
  EXPECT_THROW(mfqat::hf::chat_template_from_config("{not json"), JinjaError);
  EXPECT_THROW(mfqat::hf::chat_template_from_config(R"({"chat_template": 3})"), JinjaError);
}
