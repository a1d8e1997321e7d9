// A small Jinja interpreter for the chat templates of Hugging Face tokenizer_config.json files,
// rendering as transformers' apply_chat_template does: jinja2's ImmutableSandboxedEnvironment with
// trim_blocks=True, lstrip_blocks=True and the loopcontrols extension, keep_trailing_newline off,
// the globals raise_exception, strftime_now and namespace, and a tojson filter that is Python's
// json.dumps(ensure_ascii=False). The subset (docs/tokenizers.md, "Chat templates"): text,
// {{ }}, {% %}, {# #} with -/+ whitespace control; if/elif/else, for (loop.*, `if` filter, else,
// break/continue), set (names, namespace attributes, set blocks), generation blocks; literals
// (strings with Python escapes, numbers, lists, dicts, true/false/none), arithmetic, ~, comparisons,
// and/or/not, in/not in, `is` tests, conditional expressions, attributes, subscripts, slices, the
// filters and string/dict methods the supported models' templates use. Values follow Python's
// semantics (str(None) is "None", undefined renders as "", lengths and slices count code points).
//
// Every error (syntax, unknown filter or test, an undefined value used, raise_exception, a limit)
// throws JinjaError with one line: "<origin>:<line>:<column>: <what>".
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace mfqat::hf {

class JinjaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bounds on one render (fuzzing, untrusted templates): output bytes, evaluation steps, nesting.
struct JinjaLimits {
  std::size_t max_output = std::size_t{64} << 20;
  std::size_t max_steps = 20'000'000;
  int max_depth = 200;
};

class JinjaTemplate {
 public:
  // Parses the template (throws JinjaError on a syntax error, an unknown filter or test).
  explicit JinjaTemplate(std::string_view source, std::string origin = "template");
  // Renders with `context`'s members as the template's variables (an object; others: no variables).
  std::string render(const nlohmann::ordered_json& context, const JinjaLimits& limits = {}) const;
  const std::string& origin() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// What apply_chat_template needs from tokenizer_config.json: the template source and the special
// tokens transformers passes as variables (bos_token, eos_token, unk_token, pad_token, ...; strings,
// or AddedToken objects whose "content" is taken; absent or null ones are left out).
struct ChatTemplateSource {
  std::string source;
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();
};
// From the text of a tokenizer_config.json: nullopt when it has no chat_template. A list of named
// templates gives the one named "default". Throws JinjaError on malformed JSON or field types.
std::optional<ChatTemplateSource> chat_template_from_config(std::string_view tokenizer_config_json,
                                                            const std::string& origin = "tokenizer_config.json");

// transformers' variables for a conversation: the special tokens, messages, tools and documents
// (None), add_generation_prompt, and any `extra` members (e.g. enable_thinking).
nlohmann::ordered_json chat_template_context(const ChatTemplateSource& t, const nlohmann::ordered_json& messages,
                                             bool add_generation_prompt,
                                             const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());

}  // namespace mfqat::hf
