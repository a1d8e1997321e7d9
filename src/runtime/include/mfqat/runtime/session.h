// One sequence being decoded: its KV cache, its position, the forward pass of the LM.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "mfqat/runtime/memory.h"

namespace mfqat::runtime {

class Engine;
struct Weights;

// One sequence: its KV cache and position, at one format (switch formats between sequences).
class Session {
 public:
  Session(const Engine& e, std::shared_ptr<const Weights> w);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Runs the tokens through the model (prefill when several); returns the logits [vocab] of the
  // last one. Throws when the sequence would exceed max_seq.
  std::vector<float> feed(const std::vector<int>& tokens);
  // All positions' logits [n, vocab] of the fed tokens (for perplexity).
  std::vector<float> feed_all(const std::vector<int>& tokens);
  std::int64_t position() const { return pos_; }
  const Weights& weights() const { return *w_; }

 private:
  void forward(const std::vector<int>& tokens, bool all_logits, std::vector<float>* out);
  // One chunk of at most ubatch tokens (checked by forward); which logits it computes.
  enum class Logits { None, Last, All };
  void run_chunk(const int* tokens, std::int64_t T, Logits logits, std::vector<float>* out);
  const Engine& e_;
  std::shared_ptr<const Weights> w_;
  std::int64_t pos_ = 0;
  // from the engine's idle buffers when one is there (see KvBuffer); k_, v_ point into it
  std::unique_ptr<KvBuffer> kv_;
  float* k_ = nullptr;
  float* v_ = nullptr;
};

}  // namespace mfqat::runtime
