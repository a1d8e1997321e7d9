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
  // capacity: the positions its KV cache may hold (0: the model's max_seq); feeding past it
  // throws. Pages are taken as positions are reached, not for the whole capacity up front.
  Session(const Engine& e, std::shared_ptr<const Weights> w, std::int64_t capacity = 0);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Runs the tokens through the model (prefill when several); returns the logits [vocab] of the
  // last one. Throws when the sequence would exceed max_seq.
  std::vector<float> feed(const std::vector<int>& tokens);
  // All positions' logits [n, vocab] of the fed tokens (for perplexity).
  std::vector<float> feed_all(const std::vector<int>& tokens);
  std::int64_t position() const { return pos_; }
  std::int64_t capacity() const { return cap_; }
  const Weights& weights() const { return *w_; }
  const std::shared_ptr<const Weights>& weights_ptr() const { return w_; }
  // Continues the sequence in another format (elastic precision mid-stream): the cache keeps the
  // keys and values the earlier format computed (fp32 either way); the next tokens use `w`.
  void set_weights(std::shared_ptr<const Weights> w);

  // One piece of a batched step: n tokens for one session (a chunk of its prompt, or the one
  // token of a decode step), and whether the logits of its last token are wanted.
  struct Piece {
    Session* session = nullptr;
    const int* tokens = nullptr;
    std::int64_t n = 0;
    bool logits = true;
  };
  // Runs several sessions' tokens as one batch (continuous batching): every linear sees the rows
  // of all pieces at once, so a step of 16 sessions reads each weight once, not 16 times;
  // attention runs per piece against its own session's cache. Every row is computed on its own,
  // so a session's result does not depend on the other pieces in the batch, only on whether
  // the batch has one row (GEMV) or several (GEMM: int8 prompt activations by default).
  // Pieces: distinct sessions of one engine and one format; their rows together at most
  // ubatch. out[i]: the logits [vocab] of piece i's last token (empty when not wanted).
  // Checks everything before changing any session (throws std::invalid_argument).
  static void step(const std::vector<Piece>& pieces, std::vector<std::vector<float>>* out);

 private:
  void forward(const std::vector<int>& tokens, bool all_logits, std::vector<float>* out);
  enum class Logits { None, Last, All };
  struct Segment {
    Session* s;
    const int* tokens;
    std::int64_t n;
    Logits logits;
  };
  // One batch of segments, at most ubatch rows in all (checked by the callers): out[i] receives
  // segment i's logits ([n, vocab] for All, [vocab] for Last, nothing for None).
  static void run(const std::vector<Segment>& segs, std::vector<std::vector<float>>* out);
  void check(const int* tokens, std::int64_t n) const;
  const Engine& e_;
  std::shared_ptr<const Weights> w_;
  std::int64_t pos_ = 0, cap_ = 0;
  // Takes pages from the engine's pool until positions [0, positions) have one.
  void hold(std::int64_t positions);
  // The KV cache: page i holds positions [i, i + 1) * kKvPageTokens (kv_pool.h), taken as the
  // sequence reaches them; keys in its first half, values in its second.
  std::vector<std::unique_ptr<HugeBuffer>> pages_;
};

}  // namespace mfqat::runtime
