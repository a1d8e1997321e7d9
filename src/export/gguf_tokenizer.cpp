#include "gguf_tokenizer.h"

#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <stdexcept>

#include "mfqat/export/gguf_export.h"
#include "mfqat/hf/jinja.h"
#include "mfqat/hf/tokenizer.h"

namespace mfqat::exporter {

std::string byte_level_token(std::uint8_t b) {
  // GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 take the
  // code points 256, 257, ... in byte order.
  auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
  int cp = b;
  if (!printable(b)) {
    int n = 0;
    for (int c = 0; c < b; ++c)
      if (!printable(c)) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

namespace detail {

namespace {

// llama.cpp's token types (llama_token_type / gguf TokenType)
constexpr std::int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

// Llama 3's and Qwen 2's pre-tokenizer regexes, by which llama.cpp names them ("llama-bpe", "qwen2").
constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

std::string split_regex(const nlohmann::json& pre) {
  if (!pre.is_object()) return "";
  if (pre.value("type", "") == "Split" && pre.contains("pattern") && pre["pattern"].contains("Regex"))
    return pre["pattern"]["Regex"].get<std::string>();
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers"))
    for (const auto& p : pre["pretokenizers"])
      if (std::string r = split_regex(p); !r.empty()) return r;
  return "";
}

std::optional<std::int32_t> config_id(const std::optional<std::string>& cfg, const char* key, const hf::Tokenizer& tok) {
  if (!cfg) return std::nullopt;
  const auto j = nlohmann::json::parse(*cfg, nullptr, false);
  if (!j.is_object() || !j.contains(key)) return std::nullopt;
  const auto& v = j[key];
  std::string content;
  if (v.is_string()) content = v.get<std::string>();
  else if (v.is_object() && v.contains("content") && v["content"].is_string()) content = v["content"].get<std::string>();
  else return std::nullopt;
  return tok.token_to_id(content);
}

}  // namespace

std::vector<std::pair<std::string, gguf::Value>> tokenizer_metadata(const model::Checkpoint& ck, std::int64_t vocab) {
  using gguf::Value;
  std::vector<std::pair<std::string, Value>> kv;
  const std::optional<std::string> tj = ck.tokenizer_json();
  if (!tj) {
    if (vocab != 256) throw std::invalid_argument(ck.path() + ": a model without tokenizer.json must be mfqat's byte LM (vocab 256), not vocab " + std::to_string(vocab));
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_level_token(static_cast<std::uint8_t>(b)));
    kv.emplace_back("tokenizer.ggml.model", Value::str("gpt2"));
    kv.emplace_back("tokenizer.ggml.pre", Value::str("default"));
    kv.emplace_back("tokenizer.ggml.tokens", Value::strings(tokens));
    kv.emplace_back("tokenizer.ggml.token_type", Value::i32s(std::vector<std::int32_t>(256, kNormal)));
    kv.emplace_back("tokenizer.ggml.merges", Value::strings({}));
    // mfqat's LM has no special tokens; llama.cpp always has BOS/EOS ids (default byte 0x0B for
    // "gpt2"), and stops generating at EOS, so they name byte 0x00, which text does not contain.
    kv.emplace_back("tokenizer.ggml.bos_token_id", Value::u32(0));
    kv.emplace_back("tokenizer.ggml.eos_token_id", Value::u32(0));
    kv.emplace_back("tokenizer.ggml.add_bos_token", Value::boolean(false));
    kv.emplace_back("tokenizer.ggml.add_eos_token", Value::boolean(false));
    return kv;
  }
  const std::string origin = ck.path() + " (tokenizer.json)";
  const hf::Tokenizer tok = hf::Tokenizer::from_json(*tj, origin);
  const auto j = nlohmann::json::parse(*tj);
  const auto& model = j.at("model");
  const std::int64_t n_tok = static_cast<std::int64_t>(tok.vocab_size());
  if (n_tok > vocab)
    throw std::invalid_argument(origin + ": " + std::to_string(n_tok) + " tokens, more than the model's " + std::to_string(vocab) + " embeddings");
  const bool spm = !tok.byte_level();
  std::vector<std::string> tokens(static_cast<std::size_t>(vocab));
  std::vector<std::int32_t> types(static_cast<std::size_t>(vocab), kNormal);
  std::map<std::int64_t, bool> added_special;  // added_tokens: id -> special
  if (const auto at = j.find("added_tokens"); at != j.end() && at->is_array())
    for (const auto& t : *at)
      if (t.contains("id") && t["id"].is_number_integer()) added_special[t["id"].get<std::int64_t>()] = t.value("special", false);
  std::vector<float> scores;
  if (spm) scores.assign(static_cast<std::size_t>(vocab), 0.0f);
  for (std::int64_t id = 0; id < vocab; ++id) {
    const auto i = static_cast<std::size_t>(id);
    if (id >= n_tok || tok.id_to_token(static_cast<std::int32_t>(id)).empty()) {
      tokens[i] = "[PAD" + std::to_string(id) + "]";
      types[i] = kUnused;
      continue;
    }
    tokens[i] = tok.id_to_token(static_cast<std::int32_t>(id));
    if (const auto a = added_special.find(id); a != added_special.end()) {
      types[i] = a->second ? kControl : kUserDefined;
    } else if (spm && tokens[i].size() == 6 && tokens[i].rfind("<0x", 0) == 0 && tokens[i][5] == '>') {
      types[i] = kByte;
    }
  }
  if (spm) {
    // llama.cpp's SentencePiece tokenizer merges the adjacent pair whose merged piece scores
    // highest; tokenizer.json ranks merges by their place in the list. The score of a piece is
    // minus the rank of the first merge that makes it, so both pick the same pair. Pieces no merge
    // makes (single characters, bytes) are never the result of a merge: their score is unused.
    std::map<std::string, std::size_t> rank;
    std::size_t r = 0;
    for (const auto& m : model.at("merges")) {
      const std::string piece = m.is_string() ? [&] {
        std::string t = m.get<std::string>();
        const std::size_t sp = t.find(' ');
        return sp == std::string::npos ? t : t.substr(0, sp) + t.substr(sp + 1);
      }() : m.at(0).get<std::string>() + m.at(1).get<std::string>();
      rank.emplace(piece, r++);
    }
    for (std::int64_t id = 0; id < vocab; ++id) {
      const auto i = static_cast<std::size_t>(id);
      if (types[i] != kNormal) continue;
      const auto it = rank.find(tokens[i]);
      scores[i] = it == rank.end() ? -static_cast<float>(r + i) : -static_cast<float>(it->second);
    }
  }
  if (const auto unk = model.find("unk_token"); unk != model.end() && unk->is_string())
    if (auto id = tok.token_to_id(unk->get<std::string>()); id && *id < vocab) types[static_cast<std::size_t>(*id)] = kUnknown;

  const auto& cfg = ck.hf() ? ck.hf()->tokenizer_config_json() : std::optional<std::string>{};
  // BOS: the id the post-processor puts first, else tokenizer_config.json's bos_token.
  const std::vector<std::int32_t> empty = tok.encode("", true);
  std::optional<std::int32_t> bos = empty.empty() ? config_id(cfg, "bos_token", tok) : std::optional<std::int32_t>(empty.front());
  std::optional<std::int32_t> eos = config_id(cfg, "eos_token", tok);
  if (!eos)
    for (const char* s : {"<|end_of_text|>", "<|endoftext|>", "</s>", "<|im_end|>"})
      if ((eos = tok.token_to_id(s))) break;

  if (spm) {
    kv.emplace_back("tokenizer.ggml.model", Value::str("llama"));
    kv.emplace_back("tokenizer.ggml.pre", Value::str("default"));
  } else {
    const std::string re = split_regex(j.value("pre_tokenizer", nlohmann::json()));
    std::string pre;
    if (re == kLlama3Regex) pre = "llama-bpe";
    else if (re == kQwen2Regex) pre = "qwen2";
    else
      throw std::invalid_argument(origin + ": pre_tokenizer: this byte-level BPE's split regex is not one llama.cpp names (Llama 3's and Qwen 2's are exported)");
    kv.emplace_back("tokenizer.ggml.model", Value::str("gpt2"));
    kv.emplace_back("tokenizer.ggml.pre", Value::str(pre));
  }
  kv.emplace_back("tokenizer.ggml.tokens", Value::strings(tokens));
  if (spm) kv.emplace_back("tokenizer.ggml.scores", Value::f32s(scores));
  kv.emplace_back("tokenizer.ggml.token_type", Value::i32s(types));
  if (!spm) {
    std::vector<std::string> merges;
    for (const auto& m : model.at("merges")) {
      if (m.is_string()) merges.push_back(m.get<std::string>());
      else merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
    }
    kv.emplace_back("tokenizer.ggml.merges", Value::strings(merges));
  }
  if (bos) kv.emplace_back("tokenizer.ggml.bos_token_id", Value::u32(static_cast<std::uint32_t>(*bos)));
  if (eos) kv.emplace_back("tokenizer.ggml.eos_token_id", Value::u32(static_cast<std::uint32_t>(*eos)));
  if (spm)
    if (auto unk = tok.token_to_id("<unk>")) kv.emplace_back("tokenizer.ggml.unknown_token_id", Value::u32(static_cast<std::uint32_t>(*unk)));
  kv.emplace_back("tokenizer.ggml.add_bos_token", Value::boolean(!empty.empty()));
  kv.emplace_back("tokenizer.ggml.add_eos_token", Value::boolean(false));
  // The model's chat template (a Hugging Face directory's tokenizer_config.json, or the copy an
  // imported master or its anchors carry), which llama.cpp's server and chat tools render.
  if (const auto full = ck.tokenizer_config_json()) {
    if (const auto t = hf::chat_template_from_config(*full, ck.path() + " (tokenizer_config.json)")) {
      kv.emplace_back("tokenizer.chat_template", Value::str(t->source));
    }
  }
  return kv;
}

}  // namespace detail
}  // namespace mfqat::exporter
