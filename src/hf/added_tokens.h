// Added tokens (special or not): found in the raw text before normalization and BPE, leftmost
// first and longest at a position, with lstrip / rstrip / single_word as the Rust crate has them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mfqat::hf::detail {

class Regex;

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, normalized = false, single_word = false;
};

class AddedVocab {
 public:
  explicit AddedVocab(std::vector<AddedToken> tokens);
  ~AddedVocab();

  struct Section {
    std::size_t begin, end;  // bytes of the text
    std::int32_t token;      // index into tokens(), or -1 for plain text
  };
  // Cuts `text` into plain-text sections and added tokens, in order. Whitespace swallowed by an
  // lstrip / rstrip token belongs to no section.
  void split(std::string_view text, std::vector<Section>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  bool word_before(std::string_view text, std::size_t at) const;
  bool word_after(std::string_view text, std::size_t at) const;

  std::vector<AddedToken> tokens_;
  std::array<std::vector<std::uint32_t>, 256> by_first_byte_;  // longest first
  std::unique_ptr<Regex> word_end_, word_start_;               // \w$ and ^\w, for single_word
};

}  // namespace mfqat::hf::detail
