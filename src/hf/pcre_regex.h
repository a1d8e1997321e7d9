// PCRE2 (8-bit, UTF + UCP, JIT when available) for the patterns of tokenizer.json.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mfqat::hf::detail {

class Regex {
 public:
  // `pattern` as tokenizer.json spells it (Oniguruma / Rust regex syntax, which PCRE2 accepts for
  // the constructs these files use). \s and \S are rewritten to \p{White_Space} / \P{White_Space}:
  // PCRE2's \s also matches U+180E, the Rust tokenizers' does not. literal: match the text as is.
  // Throws std::invalid_argument with PCRE2's message when the pattern does not compile.
  Regex(std::string_view pattern, bool literal);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-empty, non-overlapping matches [begin, end) in valid UTF-8 `subject`, left to right. After
  // an empty match the search resumes one character later (as Rust's find_iter and JS matchAll).
  void find_all(std::string_view subject, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

  const std::string& source() const { return source_; }

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string source_;
};

// The \s / \S rewrite, exposed for the tests.
std::string translate_pattern(std::string_view pattern);

}  // namespace mfqat::hf::detail
