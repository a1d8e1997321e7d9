#include "mfqat/runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "mfqat/hf/tokenizer.h"

#include "mfqat/runtime/engine.h"
#include "mfqat/runtime/sampling.h"
#include "mfqat/runtime/session.h"

namespace mfqat::runtime {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// -log softmax(row)[target] over V logits, the sum in double.
double token_nll(const float* row, std::int64_t V, std::int64_t target) {
  const float m = *std::max_element(row, row + V);
  double z = 0;
  for (std::int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(row[i] - m));
  return std::log(z) + m - row[target];
}

}  // namespace

std::vector<int> encode_prompt(const Engine& e, const std::string& prompt) {
  std::vector<int> toks;
  if (const hf::Tokenizer* tok = e.tokenizer()) {
    for (const std::int32_t id : tok->encode(prompt)) toks.push_back(id);
    if (toks.empty()) throw std::invalid_argument("an empty prompt (this tokenizer adds no BOS): give some text");
  } else {
    for (unsigned char ch : prompt.empty() ? std::string("\n") : prompt) toks.push_back(ch);
  }
  return toks;
}

TextStream::TextStream(const Engine& e) : e_(e) {
  if (e.tokenizer()) dec_ = std::make_unique<hf::StreamDecoder>(*e.tokenizer());
}

TextStream::~TextStream() = default;

std::string TextStream::push(int id) {
  if (ended_) return {};
  if (const hf::Tokenizer* tok = e_.tokenizer()) {
    // a model's vocabulary may be padded past its tokenizer's (Qwen: 151936 rows, 151669
    // tokens): such an id has no text, as in Hugging Face's decode
    const bool text = static_cast<std::size_t>(id) < tok->vocab_size() && !tok->id_to_token(id).empty();
    if (text && tok->is_special(id)) {  // end of text / of turn
      ended_ = true;
      return {};
    }
    return text ? dec_->push(id) : std::string();
  }
  held_.push_back(static_cast<char>(id));
  // emit up to the last complete UTF-8 character; a lead byte's sequence length from its high bits
  std::size_t cut = held_.size();
  for (std::size_t back = 1; back <= std::min<std::size_t>(4, held_.size()); ++back) {
    const auto c = static_cast<unsigned char>(held_[held_.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const std::size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (need > back && c >= 0xC0 && c < 0xF8) cut = held_.size() - back;  // unfinished: hold it
    break;
  }
  std::string out = held_.substr(0, cut);
  held_.erase(0, cut);
  return out;
}

std::string TextStream::finish() {
  std::string out = dec_ ? dec_->finish() : std::string();
  if (!held_.empty()) out += "\xEF\xBF\xBD";  // U+FFFD
  held_.clear();
  return out;
}

Generation generate(const Engine& e, std::shared_ptr<const Weights> w, const std::string& prompt, std::int64_t n, const SamplingOptions& s) {
  Session sess(e, std::move(w));
  Sampler sampler(s);
  Generation g;
  g.prompt_ids = encode_prompt(e, prompt);
  const std::vector<int>& toks = g.prompt_ids;
  if (static_cast<std::int64_t>(toks.size()) > e.config().max_seq) {
    throw std::invalid_argument("prompt of " + std::to_string(toks.size()) + " tokens exceeds the context of " + std::to_string(e.config().max_seq));
  }
  g.prompt_tokens = static_cast<std::int64_t>(toks.size());
  TextStream out(e);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = sess.feed(toks);
  g.prefill_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (std::int64_t i = 0; i < n; ++i) {
    const int id = sampler.sample(logits);
    g.token_ids.push_back(id);
    ++g.new_tokens;
    g.text += out.push(id);
    if (out.ended()) break;
    if (sess.position() >= e.config().max_seq) break;
    logits = sess.feed({id});
  }
  g.text += out.finish();
  g.decode_seconds = seconds_since(t0);
  return g;
}

TokenScore score_windows(const Engine& e, const std::shared_ptr<const Weights>& w, const std::vector<int>& ids, std::int64_t ctx) {
  if (ctx < 2) throw std::invalid_argument("--ctx must be at least 2 tokens");
  if (ctx > e.config().max_seq) throw std::invalid_argument("--ctx " + std::to_string(ctx) + " exceeds the model's context of " + std::to_string(e.config().max_seq));
  const std::int64_t V = e.config().vocab, N = static_cast<std::int64_t>(ids.size());
  double sum = 0;
  TokenScore out;
  for (std::int64_t s0 = 0; s0 + 1 < N; s0 += ctx) {
    const std::int64_t len = std::min(ctx, N - s0);
    Session sess(e, w);
    const std::vector<float> lg = sess.feed_all(std::vector<int>(ids.begin() + s0, ids.begin() + s0 + len));
    for (std::int64_t t = 0; t + 1 < len; ++t) {
      sum += token_nll(lg.data() + t * V, V, ids[static_cast<std::size_t>(s0 + t + 1)]);
      ++out.tokens;
    }
  }
  if (out.tokens == 0) throw std::invalid_argument("the text has fewer than 2 tokens: nothing to score");
  out.nll = sum / static_cast<double>(out.tokens);
  return out;
}

Perplexity perplexity(const Engine& e, const std::shared_ptr<const Weights>& w, const std::vector<std::uint8_t>& text, std::int64_t seq,
                      std::int64_t max_windows) {
  const std::int64_t len = std::min<std::int64_t>(seq + 1, static_cast<std::int64_t>(text.size()));
  if (len < 2) throw std::invalid_argument("text too short for perplexity");
  const std::int64_t span = static_cast<std::int64_t>(text.size()) - len, V = e.config().vocab;
  const std::int64_t all = span / (len - 1) + 1;
  const bool spread = max_windows > 0 && max_windows < all;
  const std::int64_t n = spread ? max_windows : all;
  double sum = 0;
  std::int64_t bytes = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t s0 = !spread ? i * (len - 1) : n == 1 ? 0 : i * span / (n - 1);
    Session sess(e, w);
    std::vector<int> toks(text.begin() + s0, text.begin() + s0 + len - 1);
    const std::vector<float> lg = sess.feed_all(toks);
    for (std::int64_t t = 0; t < len - 1; ++t) {
      sum += token_nll(lg.data() + t * V, V, text[static_cast<std::size_t>(s0 + t + 1)]);
      ++bytes;
    }
  }
  return {sum / static_cast<double>(bytes), bytes};
}

}  // namespace mfqat::runtime
