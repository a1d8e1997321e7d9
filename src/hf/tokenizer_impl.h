// The assembled pipeline behind mfqat::hf::Tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "added_tokens.h"
#include "bpe.h"
#include "decode.h"
#include "normalize.h"
#include "pretokenize.h"

namespace mfqat::hf::detail {

struct PostProcessor {
  std::vector<std::int32_t> prefix, suffix;  // around the single sequence
  std::string name;
};

struct TokenizerImpl {
  std::string origin;
  NormalizerPtr normalizer;
  PreTokenizerPtr pre_tokenizer;
  std::unique_ptr<Bpe> model;
  std::unique_ptr<AddedVocab> added;
  PostProcessor post;
  DecoderChain decoder;
  std::vector<std::string> id_to_token;
  std::vector<std::int32_t> added_of_id;  // id -> index into added->tokens(), or -1
  bool byte_level = false;

  mutable std::mutex cache_mu;  // encode() takes it with try_lock: contended callers go uncached
  mutable WordCache cache;
};

// Parses tokenizer.json text; throws TokenizerError naming `origin`.
std::unique_ptr<TokenizerImpl> load_tokenizer_json(std::string_view text, const std::string& origin);

}  // namespace mfqat::hf::detail
