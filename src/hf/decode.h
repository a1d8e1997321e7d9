// Decoders of tokenizer.json, as a per-token byte transform plus start/end stripping of the whole
// output: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace. Working on bytes
// (not on JS/Rust strings) lets a byte-fallback character split over several tokens decode
// exactly, and lets the stream decoder produce the same text as the full decode.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "json_util.h"

namespace mfqat::hf::detail {

class DecoderChain {
 public:
  enum class Kind { Replace, ByteFallback, ByteLevel, Metaspace, Strip };
  struct Step {
    Kind kind;
    std::string from, to;             // Replace; Metaspace: from = replacement
    std::size_t start = 0, stop = 0;  // Strip; Metaspace: start = 1 strips the first token's space
    std::string content;              // Strip
  };

  // Appends the bytes of the index-th decoded token. `added`: an added token (never byte-level
  // mapped, as in transformers.js).
  void token_bytes(std::string_view token, bool added, std::size_t index, std::string& out) const;

  bool present = false;           // no decoder: tokens joined with spaces (as the Rust crate)
  std::vector<Step> steps;        // per token, before any Fuse
  std::string strip_content;      // Strip after Fuse: on the whole output
  std::size_t strip_start = 0, strip_stop = 0;
  std::string name;
};

DecoderChain make_decoder(const json& j, const JsonCtx& ctx, const std::string& path);

}  // namespace mfqat::hf::detail
