// The encode / decode pipeline: added tokens -> normalizer -> pre-tokenizer -> BPE ->
// post-processor, and the decoder chain back to bytes.
#include "mfqat/hf/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mfqat/hf/unicode.h"
#include "tokenizer_impl.h"

namespace mfqat::hf {

using detail::TokenizerImpl;

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::string Tokenizer::resolve_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    const fs::path t = p / "tokenizer.json";
    if (!fs::is_regular_file(t, ec)) throw TokenizerError(path + ": directory has no tokenizer.json");
    return t.string();
  }
  if (!fs::exists(p, ec)) throw TokenizerError(path + ": no such file or directory");
  if (p.extension() == ".json") return p.string();
  // A model file: its tokenizer sits next to it.
  const fs::path t = (p.has_parent_path() ? p.parent_path() : fs::path(".")) / "tokenizer.json";
  if (!fs::is_regular_file(t, ec)) throw TokenizerError(path + ": not a .json file, and no tokenizer.json next to it");
  return t.string();
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  const std::string file = resolve_path(path);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw TokenizerError(file + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw TokenizerError(file + ": read error");
  return from_json(ss.str(), file);
}

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& origin) {
  return Tokenizer(detail::load_tokenizer_json(json_text, origin));
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const TokenizerImpl& im = *impl_;
  if (const std::size_t bad = find_invalid_utf8(text); bad != kValidUtf8) {
    static const char* hex = "0123456789ABCDEF";
    const auto b = static_cast<unsigned char>(text[bad]);
    throw TokenizerError("text is not valid UTF-8 (byte " + std::to_string(bad) + " is 0x" + hex[b >> 4] + hex[b & 15] + ")");
  }
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = im.post.prefix;

  std::unique_lock<std::mutex> lock(im.cache_mu, std::try_to_lock);
  detail::WordCache* cache = lock.owns_lock() ? &im.cache : nullptr;
  thread_local std::vector<detail::AddedVocab::Section> sections;
  thread_local detail::Pieces pieces;
  im.added->split(text, sections);
  for (const auto& s : sections) {
    if (s.token >= 0) {
      ids.push_back(im.added->tokens()[s.token].id);
      continue;
    }
    pieces.buf.assign(text.substr(s.begin, s.end - s.begin));
    if (im.normalizer) im.normalizer->apply(pieces.buf);
    if (pieces.buf.empty()) continue;
    pieces.spans.assign(1, {0, pieces.buf.size()});
    pieces.at_text_start = s.begin == 0;
    if (im.pre_tokenizer) im.pre_tokenizer->apply(pieces);
    for (const auto& [b, e] : pieces.spans) im.model->encode_piece(std::string_view(pieces.buf).substr(b, e - b), ids, cache);
  }
  if (add_special_tokens) ids.insert(ids.end(), im.post.suffix.begin(), im.post.suffix.end());
  return ids;
}

namespace {
void check(const TokenizerImpl& im, std::int32_t id) {
  if (id < 0 || static_cast<std::size_t>(id) >= im.id_to_token.size() || im.id_to_token[id].empty())
    throw TokenizerError("id " + std::to_string(id) + " is not a token of " + im.origin);
}

std::size_t count_prefix(std::string_view s, std::string_view c, std::size_t max) {
  std::size_t n = 0, at = 0;
  while (n < max && !c.empty() && s.size() - at >= c.size() && s.compare(at, c.size(), c) == 0) {
    ++n;
    at += c.size();
  }
  return n;
}

std::size_t count_suffix(std::string_view s, std::string_view c, std::size_t max) {
  std::size_t n = 0, end = s.size();
  while (n < max && !c.empty() && end >= c.size() && s.compare(end - c.size(), c.size(), c) == 0) {
    ++n;
    end -= c.size();
  }
  return n;
}
}  // namespace

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special_tokens) const {
  const TokenizerImpl& im = *impl_;
  std::string out;
  std::size_t index = 0;
  for (const std::int32_t id : ids) {
    check(im, id);
    if (skip_special_tokens && is_special(id)) continue;
    im.decoder.token_bytes(im.id_to_token[id], im.added_of_id[id] >= 0, index++, out);
  }
  const auto& c = im.decoder.strip_content;
  if (!c.empty()) {
    out.erase(0, count_prefix(out, c, im.decoder.strip_start) * c.size());
    out.resize(out.size() - count_suffix(out, c, im.decoder.strip_stop) * c.size());
  }
  return out;
}

std::size_t Tokenizer::vocab_size() const { return impl_->id_to_token.size(); }

const std::string& Tokenizer::id_to_token(std::int32_t id) const {
  static const std::string empty;
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->id_to_token.size()) return empty;
  return impl_->id_to_token[id];
}

std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const auto& t : impl_->added->tokens())
    if (t.content == token) return t.id;
  const auto& v = impl_->model->vocab();
  if (auto it = v.find(token); it != v.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::is_special(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->added_of_id.size()) return false;
  const std::int32_t a = impl_->added_of_id[id];
  return a >= 0 && impl_->added->tokens()[a].special;
}

bool Tokenizer::byte_level() const { return impl_->byte_level; }

std::string Tokenizer::describe() const {
  const TokenizerImpl& im = *impl_;
  std::size_t special = 0;
  for (const auto& t : im.added->tokens()) special += t.special;
  const auto& o = im.model->options();
  std::string s = std::string("BPE ") + (im.byte_level ? "byte-level" : "character-level");
  if (o.byte_fallback) s += " +byte_fallback";
  if (o.ignore_merges) s += " +ignore_merges";
  s += ", vocab " + std::to_string(vocab_size()) + ", merges " + std::to_string(im.model->merges()) + ", added tokens " +
       std::to_string(im.added->tokens().size()) + " (" + std::to_string(special) + " special)";
  s += "; normalizer " + (im.normalizer ? im.normalizer->describe() : std::string("none"));
  s += "; pre-tokenizer " + (im.pre_tokenizer ? im.pre_tokenizer->describe() : std::string("none"));
  s += "; post-processor " + (im.post.name.empty() ? std::string("none") : im.post.name);
  if (!im.post.prefix.empty() || !im.post.suffix.empty())
    s += " (+" + std::to_string(im.post.prefix.size()) + " before, +" + std::to_string(im.post.suffix.size()) + " after)";
  s += "; decoder " + (im.decoder.present ? im.decoder.name : std::string("none"));
  return s;
}

// ---- streaming ----

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(&tokenizer), skip_special_(skip_special_tokens), strip_left_(tokenizer.impl().decoder.strip_start) {}

std::string StreamDecoder::push(std::int32_t id) {
  const TokenizerImpl& im = tok_->impl();
  check(im, id);
  if (skip_special_ && tok_->is_special(id)) return {};
  im.decoder.token_bytes(im.id_to_token[id], im.added_of_id[id] >= 0, index_++, held_);
  const auto& c = im.decoder.strip_content;
  // Leading Strip characters of the whole output: nothing is emitted until they are settled.
  while (strip_left_ > 0) {
    const std::size_t n = count_prefix(held_, c, strip_left_);
    held_.erase(0, n * c.size());
    strip_left_ -= n;
    if (strip_left_ == 0 || held_.empty()) break;
    if (held_.size() < c.size() && c.compare(0, held_.size(), held_) == 0) break;  // may still become one
    strip_left_ = 0;
  }
  if (strip_left_ > 0) return {};
  std::size_t keep = held_.size();
  if (!c.empty() && im.decoder.strip_stop > 0) keep -= count_suffix(held_, c, im.decoder.strip_stop) * c.size();
  const std::size_t k = complete_utf8_prefix(std::string_view(held_).substr(0, keep));
  if (k == 0) return {};
  std::string out = sanitize_utf8(std::string_view(held_).substr(0, k));
  held_.erase(0, k);
  return out;
}

std::string StreamDecoder::finish() {
  const TokenizerImpl& im = tok_->impl();
  const auto& c = im.decoder.strip_content;
  if (!c.empty() && im.decoder.strip_stop > 0) held_.resize(held_.size() - count_suffix(held_, c, im.decoder.strip_stop) * c.size());
  std::string out = sanitize_utf8(held_);
  held_.clear();
  return out;
}

}  // namespace mfqat::hf
