// Normalizers of tokenizer.json: Sequence, Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase, Strip.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "json_util.h"

namespace mfqat::hf::detail {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& text) const = 0;  // valid UTF-8 in and out
  virtual std::string describe() const = 0;
};
using NormalizerPtr = std::unique_ptr<Normalizer>;

// null -> nullptr. Anything else that is not supported throws a one-line TokenizerError.
// A {"String": s} or {"Regex": r} pattern object -> (pattern, literal).
std::pair<std::string, bool> parse_pattern(const json& j, const JsonCtx& ctx, const std::string& path);

NormalizerPtr make_normalizer(const json& j, const JsonCtx& ctx, const std::string& path);

}  // namespace mfqat::hf::detail
