// Next-byte sampling from logits: greedy, or temperature with top-k / top-p.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace mfqat::runtime {

struct SamplingOptions {
  double temperature = 0;  // 0: greedy
  int top_k = 0;           // 0: off
  double top_p = 1.0;      // 1: off
  std::uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o) : o_(o), rng_(o.seed) {}
  int sample(const std::vector<float>& logits);

 private:
  SamplingOptions o_;
  std::mt19937_64 rng_;
};

}  // namespace mfqat::runtime
