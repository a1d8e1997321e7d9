// The OpenAI-compatible request and response shapes of `mfqat serve`: parsing and checking of
// /v1/completions and /v1/chat/completions bodies (the fuzzed entry point), the chat templates
// that turn messages into a prompt, and the JSON of answers, stream chunks and errors.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mfqat/hf/jinja.h"
#include "mfqat/runtime/sampling.h"

namespace mfqat::hf {
class Tokenizer;
}

namespace mfqat::runtime {

class Engine;

struct ChatMessage {
  std::string role, content;
};

// How a conversation becomes prompt text. A model's own template: the Jinja chat_template of its
// tokenizer_config.json (kept in the checkpoint by `mfqat import`, carried to its anchors), rendered
// by mfqat/hf/jinja.h as transformers' apply_chat_template renders it (add_generation_prompt on).
// Otherwise built in: ChatML (Qwen2/2.5/3: <|im_start|>role\ncontent<|im_end|>\n), Llama 3
// (<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>), and Plain for models without
// chat markers (mfqat's byte LM, Llama 2): "Role: content\n" per message, then "Assistant:".
class ChatTemplate {
 public:
  enum class Kind { Plain, ChatMl, Llama3, Jinja };
  ChatTemplate() = default;  // Plain
  ChatTemplate(Kind k) : kind_(k) {}  // NOLINT(google-explicit-constructor): the built-ins by name
  static const ChatTemplate Plain, ChatMl, Llama3;
  // Parses the chat_template of a tokenizer_config.json text (nullopt: it has none); throws
  // hf::JinjaError, one line naming `origin` and the position, when the template does not parse.
  // `tok` (may be null): when its post-processor already puts the template's bos_token first, the
  // rendered text's leading bos_token is dropped, so the ids are those of transformers'
  // apply_chat_template(tokenize=True), which encodes without special tokens.
  static std::optional<ChatTemplate> from_tokenizer_config(const std::string& tokenizer_config_json, const std::string& origin,
                                                           const hf::Tokenizer* tok = nullptr);
  Kind kind() const { return kind_; }
  bool operator==(const ChatTemplate& o) const { return kind_ == o.kind_ && jinja_ == o.jinja_; }
  bool operator!=(const ChatTemplate& o) const { return !(*this == o); }

 private:
  friend std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages, const nlohmann::ordered_json& vars);
  Kind kind_ = Kind::Plain;
  std::shared_ptr<const hf::JinjaTemplate> jinja_;
  std::shared_ptr<const hf::ChatTemplateSource> source_;
  std::string strip_bos_;  // the leading text to drop (see from_tokenizer_config), "" none
};
// The model's own Jinja template when its checkpoint has one (throws hf::JinjaError naming the
// checkpoint when it does not parse), else a built-in chosen from the tokenizer's special tokens.
ChatTemplate chat_template_for(const Engine& e);
const char* chat_template_name(const ChatTemplate& t);  // "jinja", "chatml", "llama3", "plain"
// The conversation, ending with the opening of the assistant's turn (add_generation_prompt). A
// Jinja template that refuses the conversation (raise_exception, an error) throws RequestError 400.
// vars: the request's chat_template_kwargs (e.g. {"enable_thinking": false} for Qwen 3), passed to
// a Jinja template as variables beside messages and add_generation_prompt, as transformers'
// apply_chat_template(..., **kwargs) does; the built-in templates have no variables and ignore them.
std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                        const nlohmann::ordered_json& vars = nlohmann::ordered_json::object());
using RenderChat = std::function<std::string(const std::vector<ChatMessage>&, const nlohmann::ordered_json& vars)>;

// A request error: the HTTP status it answers and the request field it names ("" none).
struct RequestError : std::invalid_argument {
  RequestError(int status_, const std::string& what, std::string param_ = {})
      : std::invalid_argument(what), status(status_), param(std::move(param_)) {}
  int status;
  std::string param;
};

// A checked completion or chat completion request.
struct CompletionRequest {
  bool chat = false;
  std::string prompt;                 // completions: as given; chat: the rendered conversation
  std::vector<ChatMessage> messages;  // chat only
  nlohmann::ordered_json template_vars = nlohmann::ordered_json::object();  // chat only: chat_template_kwargs
  std::string format = "anchor";      // a canonical format name, "anchor" or "auto"
  std::int64_t max_tokens = 64;
  SamplingOptions sampling;
  std::vector<std::string> stop;  // up to 4 non-empty strings; the text ends before the first found
  bool stream = false, include_usage = false;
};

struct RequestLimits {
  std::int64_t max_prompt_bytes = 0;  // of the prompt (chat: as rendered)
  std::int64_t max_tokens = 256;
  std::string model_id = "mfqat";  // the name /v1/models lists; `model` may also name a format or "auto"
};

// Parses and checks a request body (any bytes). Throws RequestError with a one-line reason on
// malformed JSON, unknown fields, wrong types, values out of range, options mfqat does not
// implement (n > 1, penalties, logprobs, echo), an unknown model (404). `canonical` maps a format
// name to the engine's name for it and throws std::invalid_argument naming an unknown one;
// `render` turns chat messages into the prompt (chat only).
CompletionRequest parse_completion_request(const std::string& body, const RequestLimits& limits,
                                           const std::function<std::string(const std::string&)>& canonical, bool chat = false,
                                           const RenderChat& render = {});
// The completions form with the old limits argument order (kept for callers and the fuzzer).
CompletionRequest parse_completion_request(const std::string& body, std::int64_t max_prompt_bytes, std::int64_t max_tokens,
                                           const std::function<std::string(const std::string&)>& canonical);

// Where the stop strings cut a growing text: `safe` bytes of it can be sent (no stop string can
// start before it), and `stop` is the offset of the first stop string found (npos: none).
struct StopScan {
  std::size_t safe = 0, stop = std::string::npos;
};
StopScan scan_stop(const std::string& text, const std::vector<std::string>& stop);

// OpenAI's error object: {"error": {"message", "type", "param", "code"}}.
nlohmann::json error_json(int status, const std::string& message, const std::string& param = {});

}  // namespace mfqat::runtime
