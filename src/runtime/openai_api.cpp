#include "mfqat/runtime/openai_api.h"

#include <algorithm>
#include <cmath>

#include "mfqat/hf/tokenizer.h"
#include "mfqat/runtime/engine.h"

namespace mfqat::runtime {

using nlohmann::json;

const ChatTemplate ChatTemplate::Plain{ChatTemplate::Kind::Plain};
const ChatTemplate ChatTemplate::ChatMl{ChatTemplate::Kind::ChatMl};
const ChatTemplate ChatTemplate::Llama3{ChatTemplate::Kind::Llama3};

std::optional<ChatTemplate> ChatTemplate::from_tokenizer_config(const std::string& text, const std::string& origin, const hf::Tokenizer* tok) {
  auto src = hf::chat_template_from_config(text, origin);
  if (!src) return std::nullopt;
  ChatTemplate t;
  t.kind_ = Kind::Jinja;
  t.jinja_ = std::make_shared<const hf::JinjaTemplate>(src->source, origin);
  const auto bos = src->special_tokens.find("bos_token");
  if (tok && bos != src->special_tokens.end() && bos->is_string()) {
    const auto id = tok->token_to_id(bos->get<std::string>());
    const auto with = tok->encode("a", true), without = tok->encode("a", false);
    if (id && with.size() == without.size() + 1 && with.front() == *id) t.strip_bos_ = bos->get<std::string>();
  }
  t.source_ = std::make_shared<const hf::ChatTemplateSource>(std::move(*src));
  return t;
}

ChatTemplate chat_template_for(const Engine& e) {
  const hf::Tokenizer* tok = e.tokenizer();
  if (const auto cfg = e.tokenizer_config_json()) {
    const std::string path = e.checkpoint_path();
    if (auto t = ChatTemplate::from_tokenizer_config(*cfg, (path.empty() ? std::string() : path + ": ") + "chat_template", tok)) return *t;
  }
  if (!tok) return ChatTemplate::Plain;
  if (tok->token_to_id("<|im_start|>") && tok->token_to_id("<|im_end|>")) return ChatTemplate::ChatMl;
  if (tok->token_to_id("<|start_header_id|>") && tok->token_to_id("<|eot_id|>")) return ChatTemplate::Llama3;
  return ChatTemplate::Plain;
}

const char* chat_template_name(const ChatTemplate& t) {
  switch (t.kind()) {
    case ChatTemplate::Kind::Jinja: return "jinja";
    case ChatTemplate::Kind::ChatMl: return "chatml";
    case ChatTemplate::Kind::Llama3: return "llama3";
    default: return "plain";
  }
}

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages, const nlohmann::ordered_json& vars) {
  std::string out;
  switch (t.kind()) {
    case ChatTemplate::Kind::Jinja: {
      nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
      for (const auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
      try {
        out = t.jinja_->render(hf::chat_template_context(*t.source_, msgs, true, vars));
      } catch (const hf::JinjaError& ex) {
        throw RequestError(400, std::string("the model's chat template refused the conversation: ") + ex.what(), "messages");
      }
      if (!t.strip_bos_.empty() && out.compare(0, t.strip_bos_.size(), t.strip_bos_) == 0) out.erase(0, t.strip_bos_.size());
      return out;
    }
    case ChatTemplate::Kind::ChatMl:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      return out + "<|im_start|>assistant\n";
    case ChatTemplate::Kind::Llama3: {
      // The tokenizer's post-processor adds <|begin_of_text|>; Meta's template trims each content.
      auto trim = [](const std::string& s) {
        const auto b = s.find_first_not_of(" \t\n\r"), e = s.find_last_not_of(" \t\n\r");
        return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
      };
      for (const auto& m : messages) out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
      return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
    }
    default:
      for (const auto& m : messages) {
        std::string role = m.role;
        if (!role.empty()) role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
        out += role + ": " + m.content + "\n";
      }
      return out + "Assistant:";
  }
}

namespace {

std::vector<ChatMessage> parse_messages(const json& j) {
  if (!j.is_array() || j.empty()) throw RequestError(400, "'messages' must be a non-empty array", "messages");
  std::vector<ChatMessage> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const json& m = j[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw RequestError(400, at + " must be an object", "messages");
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it.key() != "role" && it.key() != "content" && it.key() != "name") throw RequestError(400, at + ": unknown field '" + it.key() + "'", "messages");
    }
    if (!m.contains("role") || !m["role"].is_string()) throw RequestError(400, at + ".role (a string) is required", "messages");
    ChatMessage cm;
    cm.role = m["role"].get<std::string>();
    if (cm.role != "system" && cm.role != "developer" && cm.role != "user" && cm.role != "assistant") {
      throw RequestError(400, at + ".role '" + cm.role + "' is not one of system, developer, user, assistant", "messages");
    }
    if (cm.role == "developer") cm.role = "system";  // OpenAI's newer name for the system message
    if (m.contains("name") && !m["name"].is_string()) throw RequestError(400, at + ".name must be a string", "messages");
    const json c = m.contains("content") ? m["content"] : json();
    if (c.is_string()) {
      cm.content = c.get<std::string>();
    } else if (c.is_array()) {  // content parts: text only
      for (const json& p : c) {
        if (!p.is_object() || !p.contains("type") || p["type"] != "text" || !p.contains("text") || !p["text"].is_string()) {
          throw RequestError(400, at + ".content: only parts {\"type\": \"text\", \"text\": ...} are supported", "messages");
        }
        cm.content += p["text"].get<std::string>();
      }
    } else if (!(c.is_null() && cm.role == "assistant")) {
      throw RequestError(400, at + ".content must be a string or an array of text parts", "messages");
    }
    out.push_back(std::move(cm));
  }
  return out;
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, const RequestLimits& lim,
                                           const std::function<std::string(const std::string&)>& canonical, bool chat,
                                           const RenderChat& render) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& ex) {
    std::string w = ex.what();
    for (auto& ch : w) ch = ch == '\n' ? ' ' : ch;
    throw RequestError(400, "malformed JSON: " + w);
  }
  if (!j.is_object()) throw RequestError(400, "the request must be a JSON object");
  static const char* common[] = {"model", "max_tokens", "temperature", "top_k", "top_p", "seed", "format", "stop", "stream",
                                 "stream_options", "n", "user", "presence_penalty", "frequency_penalty", "logprobs"};
  static const char* completion_only[] = {"prompt", "echo"};
  static const char* chat_only[] = {"messages", "max_completion_tokens", "chat_template_kwargs"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool ok = false;
    for (const char* k : common) ok |= it.key() == k;
    if (chat) {
      for (const char* k : chat_only) ok |= it.key() == k;
    } else {
      for (const char* k : completion_only) ok |= it.key() == k;
    }
    if (!ok) throw RequestError(400, "unknown field '" + it.key() + "'", it.key());
  }
  CompletionRequest r;
  r.chat = chat;
  if (chat) {
    if (!j.contains("messages")) throw RequestError(400, "'messages' (an array) is required", "messages");
    r.messages = parse_messages(j["messages"]);
    if (j.contains("chat_template_kwargs") && !j["chat_template_kwargs"].is_null()) {
      // vLLM's extension: variables for the model's chat template (Qwen 3's enable_thinking, ...)
      const json& kw = j["chat_template_kwargs"];
      if (!kw.is_object()) throw RequestError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs");
      for (auto it = kw.begin(); it != kw.end(); ++it) {
        for (const char* own : {"messages", "tools", "documents", "add_generation_prompt"}) {
          if (it.key() == own) throw RequestError(400, "'chat_template_kwargs' may not set '" + it.key() + "'", "chat_template_kwargs");
        }
        r.template_vars[it.key()] = nlohmann::ordered_json::parse(it.value().dump());
      }
    }
    r.prompt = render ? render(r.messages, r.template_vars) : render_chat(ChatTemplate::Plain, r.messages);
  } else {
    const json* p = j.contains("prompt") ? &j["prompt"] : nullptr;
    if (p && p->is_array() && p->size() == 1) p = &(*p)[0];  // a batch of one prompt
    if (!p || !p->is_string()) throw RequestError(400, "'prompt' (a string, or an array of one string) is required", "prompt");
    r.prompt = p->get<std::string>();
  }
  if (static_cast<std::int64_t>(r.prompt.size()) > lim.max_prompt_bytes) {
    throw RequestError(400, std::string(chat ? "the conversation" : "prompt") + " of " + std::to_string(r.prompt.size()) +
                                " bytes exceeds the limit of " + std::to_string(lim.max_prompt_bytes),
                       chat ? "messages" : "prompt");
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    if (!j[key].is_number_integer()) throw RequestError(400, std::string("'") + key + "' must be an integer", key);
    r.max_tokens = j[key].get<std::int64_t>();
    if (r.max_tokens < 1 || r.max_tokens > lim.max_tokens) {
      throw RequestError(400, std::string("'") + key + "' must be 1.." + std::to_string(lim.max_tokens), key);
    }
  }
  if (j.contains("temperature") && !j["temperature"].is_null()) {
    if (!j["temperature"].is_number() || !(j["temperature"].get<double>() >= 0) || !std::isfinite(j["temperature"].get<double>())) {
      throw RequestError(400, "'temperature' must be a number >= 0", "temperature");
    }
    r.sampling.temperature = j["temperature"].get<double>();
  }
  if (j.contains("top_k") && !j["top_k"].is_null()) {
    if (!j["top_k"].is_number_integer() || j["top_k"].get<std::int64_t>() < 0) throw RequestError(400, "'top_k' must be an integer >= 0", "top_k");
    r.sampling.top_k = static_cast<int>(std::min<std::int64_t>(j["top_k"].get<std::int64_t>(), 1 << 20));
  }
  if (j.contains("top_p") && !j["top_p"].is_null()) {
    if (!j["top_p"].is_number() || !(j["top_p"].get<double>() > 0 && j["top_p"].get<double>() <= 1)) {
      throw RequestError(400, "'top_p' must be in (0, 1]", "top_p");
    }
    r.sampling.top_p = j["top_p"].get<double>();
  }
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_unsigned()) throw RequestError(400, "'seed' must be a non-negative integer", "seed");
    r.sampling.seed = j["seed"].get<std::uint64_t>();
  }
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) throw RequestError(400, "'stop' must be a string or an array of up to 4 strings", "stop");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw RequestError(400, "'stop' must be a string or an array of up to 4 strings", "stop");
    }
    for (const auto& x : r.stop) {
      if (x.empty()) throw RequestError(400, "'stop' strings must not be empty", "stop");
    }
  }
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) throw RequestError(400, "'stream' must be true or false", "stream");
    r.stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& so = j["stream_options"];
    if (!so.is_object()) throw RequestError(400, "'stream_options' must be an object", "stream_options");
    for (auto it = so.begin(); it != so.end(); ++it) {
      if (it.key() != "include_usage" || !it.value().is_boolean()) throw RequestError(400, "'stream_options' takes only include_usage (true or false)", "stream_options");
      r.include_usage = it.value().get<bool>();
    }
  }
  if (j.contains("n") && !j["n"].is_null() && j["n"] != 1) throw RequestError(400, "'n' must be 1 (one choice per request)", "n");
  if (j.contains("user") && !j["user"].is_string()) throw RequestError(400, "'user' must be a string", "user");
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    if (j.contains(key) && !j[key].is_null() && !(j[key].is_number() && j[key].get<double>() == 0)) {
      throw RequestError(400, std::string("'") + key + "' is not supported (only 0)", key);
    }
  }
  if (j.contains("logprobs") && !j["logprobs"].is_null() && j["logprobs"] != false) throw RequestError(400, "'logprobs' is not supported", "logprobs");
  if (j.contains("echo") && j["echo"] != false) throw RequestError(400, "'echo' is not supported", "echo");
  // The format: "format" (mfqat's field) or else a model name that is a format (or "auto").
  if (j.contains("model") && !j["model"].is_null()) {
    if (!j["model"].is_string()) throw RequestError(400, "'model' must be a string", "model");
    const std::string m = j["model"].get<std::string>();
    if (!m.empty() && m != lim.model_id) {
      if (m == "auto") {
        r.format = "auto";
      } else {
        try {
          r.format = canonical(m);
        } catch (const std::invalid_argument&) {
          throw RequestError(404, "the model '" + m + "' does not exist: this server serves '" + lim.model_id +
                                      "' (a format name or \"auto\" as the model selects that format; GET /v1/models lists them)",
                             "model");
        }
      }
    }
  }
  if (j.contains("format")) {
    if (!j["format"].is_string()) throw RequestError(400, "'format' must be a string", "format");
    r.format = j["format"].get<std::string>();
    if (r.format != "auto") {
      try {
        r.format = canonical(r.format);
      } catch (const std::invalid_argument& ex) {
        throw RequestError(400, ex.what(), "format");
      }
    }
  }
  return r;
}

CompletionRequest parse_completion_request(const std::string& body, std::int64_t max_prompt_bytes, std::int64_t max_tokens,
                                           const std::function<std::string(const std::string&)>& canonical) {
  RequestLimits lim;
  lim.max_prompt_bytes = max_prompt_bytes;
  lim.max_tokens = max_tokens;
  return parse_completion_request(body, lim, canonical);
}

StopScan scan_stop(const std::string& text, const std::vector<std::string>& stop) {
  StopScan s;
  s.safe = text.size();
  for (const auto& x : stop) {
    const std::size_t at = text.find(x);
    if (at != std::string::npos) s.stop = std::min(s.stop, at);
  }
  if (s.stop != std::string::npos) {
    s.safe = s.stop;
    return s;
  }
  // hold back the longest end of the text that could still grow into a stop string
  for (const auto& x : stop) {
    for (std::size_t k = std::min(x.size() - 1, text.size()); k > 0; --k) {
      if (text.compare(text.size() - k, k, x, 0, k) == 0) {
        s.safe = std::min(s.safe, text.size() - k);
        break;
      }
    }
  }
  return s;
}

json error_json(int status, const std::string& message, const std::string& param) {
  const char* type = status == 404 ? "not_found_error" : status >= 500 ? (status == 503 ? "overloaded_error" : "server_error") : "invalid_request_error";
  return {{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? json() : json(param)}, {"code", status == 404 ? json("model_not_found") : json()}}}};
}

}  // namespace mfqat::runtime
