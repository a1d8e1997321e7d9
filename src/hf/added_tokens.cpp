// Added-token matching on the raw text.
#include "added_tokens.h"

#include <algorithm>
#include <utility>

#include "pcre_regex.h"
#include "text.h"

namespace mfqat::hf::detail {

AddedVocab::AddedVocab(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  bool single_word = false;
  for (std::uint32_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
    single_word = single_word || tokens_[i].single_word;
  }
  for (auto& v : by_first_byte_)
    std::stable_sort(v.begin(), v.end(), [&](std::uint32_t a, std::uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  if (single_word) {
    word_end_ = std::make_unique<Regex>("\\w$", false);
    word_start_ = std::make_unique<Regex>("^\\w", false);
  }
}

AddedVocab::~AddedVocab() = default;

bool AddedVocab::word_before(std::string_view text, std::size_t at) const {
  if (at == 0) return false;
  std::size_t s = at - 1;
  while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
  std::vector<std::pair<std::size_t, std::size_t>> m;
  word_end_->find_all(text.substr(s, at - s), m);
  return !m.empty();
}

bool AddedVocab::word_after(std::string_view text, std::size_t at) const {
  if (at >= text.size()) return false;
  const std::size_t n = std::min(utf8_len(static_cast<unsigned char>(text[at])), text.size() - at);
  std::vector<std::pair<std::size_t, std::size_t>> m;
  word_start_->find_all(text.substr(at, n), m);
  return !m.empty();
}

void AddedVocab::split(std::string_view text, std::vector<Section>& out) const {
  out.clear();
  std::size_t plain = 0;  // start of the current plain-text section
  std::size_t i = 0;
  while (i < text.size()) {
    const auto& cands = by_first_byte_[static_cast<unsigned char>(text[i])];
    std::int32_t hit = -1;
    for (const std::uint32_t c : cands) {
      const AddedToken& t = tokens_[c];
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word && (word_before(text, i) || word_after(text, i + t.content.size()))) continue;
      hit = static_cast<std::int32_t>(c);
      break;
    }
    if (hit < 0) {
      ++i;
      continue;
    }
    const AddedToken& t = tokens_[hit];
    std::size_t b = i, e = i + t.content.size();
    if (t.lstrip) {
      while (b > plain) {
        std::size_t s = b - 1;
        while (s > plain && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        std::size_t k = s;
        if (!is_white_space(next_codepoint(text, k))) break;
        b = s;
      }
    }
    if (t.rstrip) {
      while (e < text.size()) {
        std::size_t k = e;
        if (!is_white_space(next_codepoint(text, k))) break;
        e = k;
      }
    }
    if (b > plain) out.push_back({plain, b, -1});
    out.push_back({b, e, hit});
    plain = i = e;
  }
  if (plain < text.size()) out.push_back({plain, text.size(), -1});
}

}  // namespace mfqat::hf::detail
