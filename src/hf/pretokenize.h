// Pre-tokenizers of tokenizer.json: Sequence, Split, ByteLevel, Metaspace, Digits.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "json_util.h"

namespace mfqat::hf::detail {

// A section of normalized text cut into pieces ("words"); the model encodes each piece alone.
struct Pieces {
  std::string buf;
  std::vector<std::pair<std::size_t, std::size_t>> spans;  // [begin, end) into buf, non-empty, in order
  bool at_text_start = false;  // the section starts the input (Metaspace prepend_scheme "first")
  // Scratch, reused between calls.
  std::vector<std::pair<std::size_t, std::size_t>> matches, next;
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(Pieces& p) const = 0;
  virtual bool byte_level() const { return false; }  // maps bytes to the GPT-2 alphabet
  virtual std::string describe() const = 0;
};
using PreTokenizerPtr = std::unique_ptr<PreTokenizer>;

PreTokenizerPtr make_pre_tokenizer(const json& j, const JsonCtx& ctx, const std::string& path);

}  // namespace mfqat::hf::detail
