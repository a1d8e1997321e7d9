#include "mfqat/runtime/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mfqat::runtime {

int Sampler::sample(const std::vector<float>& logits) {
  const int V = static_cast<int>(logits.size());
  if (o_.temperature <= 0) return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int> idx(static_cast<std::size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  std::size_t keep = idx.size();
  if (o_.top_k > 0) keep = std::min<std::size_t>(keep, static_cast<std::size_t>(o_.top_k));
  std::vector<double> p(keep);
  const double mx_ = logits[idx[0]];
  double sum = 0;
  for (std::size_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[idx[i]] - mx_) / o_.temperature);
  if (o_.top_p < 1.0) {
    double cum = 0;
    std::size_t n = 0;
    while (n < keep && cum < o_.top_p * sum) cum += p[n++];
    keep = std::max<std::size_t>(1, n);
    sum = cum;
  }
  const double u = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  double cum = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace mfqat::runtime
