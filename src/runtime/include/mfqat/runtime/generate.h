// Whole-text entry points on an engine: generation from a prompt and perplexity of a text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mfqat/runtime/sampling.h"

namespace mfqat::hf {
class StreamDecoder;
}

namespace mfqat::runtime {

class Engine;
struct Weights;

// Prompt text -> the ids the model reads: the model's tokenizer (BOS where its post-processor
// adds one), or bytes for mfqat's byte LM (an empty prompt reads "\n"). Throws on a prompt that
// encodes to nothing.
std::vector<int> encode_prompt(const Engine& e, const std::string& prompt);

// Generated ids -> text, one token at a time, in whole UTF-8 characters (a character split over
// tokens or bytes comes out with its last piece). A special token (end of text / of turn) adds
// no text and ends the stream; so does an id past the tokenizer's vocabulary (a padded head row)
// add none, as in Hugging Face's decode.
class TextStream {
 public:
  explicit TextStream(const Engine& e);
  ~TextStream();
  std::string push(int id);
  std::string finish();  // what is held (an unfinished character becomes U+FFFD)
  bool ended() const { return ended_; }

 private:
  const Engine& e_;
  std::unique_ptr<hf::StreamDecoder> dec_;
  std::string held_;  // byte LM: the start of an unfinished UTF-8 character
  bool ended_ = false;
};

struct Generation {
  std::string text;  // the generated text (prompt excluded)
  std::int64_t prompt_tokens = 0, new_tokens = 0;
  std::vector<int> prompt_ids, token_ids;  // what the model read and wrote
  double prefill_seconds = 0, decode_seconds = 0;
};

// Prompt -> up to n new tokens (stops early at the context's end, and with a tokenizer at a
// special token such as the end of text, which is not part of the text). Models with a tokenizer
// (engine.tokenizer()) encode the prompt with it (BOS where its post-processor adds one) and
// decode the output as whole UTF-8 characters; mfqat's byte LM reads and writes bytes.
Generation generate(const Engine& e, std::shared_ptr<const Weights> w, const std::string& prompt, std::int64_t n,
                    const SamplingOptions& s);

// Mean next-byte cross-entropy (nats) over windows of `seq` + 1 bytes of `text`. max_windows 0
// (or more windows than the text holds): consecutive windows, every byte after the first scored
// once; otherwise max_windows windows spread evenly from the start to the end of the text (as
// the trainer's evaluation does), so that a sample is not just the text's opening pages.
struct Perplexity {
  double loss = 0;
  std::int64_t bytes = 0;
};
Perplexity perplexity(const Engine& e, const std::shared_ptr<const Weights>& w, const std::vector<std::uint8_t>& text, std::int64_t seq,
                      std::int64_t max_windows = 0);

// The evaluation contract of `mfqat eval --ctx N` (docs/models.md): `ids` (a whole text as the
// tokenizer encodes it by default) cut into consecutive windows of `ctx` tokens (the last one
// shorter), every token of a window after its first scored; nll is the mean natural-log loss per
// scored token.
struct TokenScore {
  std::int64_t tokens = 0;  // scored
  double nll = 0;
};
TokenScore score_windows(const Engine& e, const std::shared_ptr<const Weights>& w, const std::vector<int>& ids, std::int64_t ctx);

}  // namespace mfqat::runtime
