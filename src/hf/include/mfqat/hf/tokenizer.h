// Tokenizers from Hugging Face `tokenizer.json` files: byte-level BPE (Llama 3, Qwen 2/3) and
// SentencePiece-style BPE with byte fallback (Llama 2, Mistral). What is supported and what is
// refused: docs/tokenizers.md.
//
// Text contract: encode() takes UTF-8. Text that is not valid UTF-8 is refused with a
// TokenizerError naming the byte offset; callers that want the lossy behaviour of a JavaScript
// TextDecoder (and of the oracle test) pass sanitize_utf8(bytes) instead (mfqat/hf/unicode.h).
// decode() returns the bytes the ids stand for (byte-fallback and byte-level tokens can split a
// character, so the bytes of a partial sequence need not be valid UTF-8); StreamDecoder emits
// only complete characters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mfqat::hf {

// Every refusal (unsupported component, malformed file, bad id, invalid UTF-8): one line.
class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
struct TokenizerImpl;
}

class Tokenizer {
 public:
  // PATH: a tokenizer.json, a directory holding one, or a file (e.g. model.safetensors) whose
  // directory holds one.
  static Tokenizer from_file(const std::string& path);
  // `origin` names the source in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& origin = "tokenizer.json");
  // Where from_file() looks for tokenizer.json given PATH (throws when there is none).
  static std::string resolve_path(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Ids of `text` (valid UTF-8). add_special_tokens: apply the file's post-processor (e.g. the
  // BOS of Llama 2's TemplateProcessing). Added tokens in the text (`<|im_start|>`...) are always
  // matched. Thread-safe.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // The bytes the ids stand for, after the file's decoder. skip_special_tokens drops added tokens
  // marked special. Unknown ids throw.
  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const;

  std::size_t vocab_size() const;  // one more than the largest id (model vocab and added tokens)
  // The token string as the file spells it ("Ġworld", "▁the", "<0x0A>"); empty for holes.
  const std::string& id_to_token(std::int32_t id) const;
  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  bool is_special(std::int32_t id) const;  // an added token with "special": true
  bool byte_level() const;                 // GPT-2 byte-level alphabet (Llama 3, Qwen)
  // One line: model kind, vocab size, merges, added tokens, pipeline.
  std::string describe() const;

  const detail::TokenizerImpl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::unique_ptr<detail::TokenizerImpl> impl);
  std::unique_ptr<detail::TokenizerImpl> impl_;
};

// Incremental decoding for generation: push ids one at a time, get text back as soon as it is a
// whole number of UTF-8 characters (a character split across byte tokens is held until its last
// byte arrives). Ill-formed bytes become U+FFFD, exactly as sanitize_utf8() would replace them in
// the full decode, so concatenating every push() and finish() equals
// sanitize_utf8(tokenizer.decode(ids)).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  std::string push(std::int32_t id);
  std::string finish();  // flushes what is held (an unfinished character becomes U+FFFD)

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::size_t index_ = 0;          // tokens decoded so far (after skipping)
  std::size_t strip_left_ = 0;     // leading characters still to strip (Strip decoder)
  std::string held_;               // bytes not yet emitted
};

}  // namespace mfqat::hf
