// Error statistics of a quantized tensor against its source.
#pragma once

#include <cstdint>
#include <vector>

namespace mfqat::mx {

struct ErrorStats {
  std::int64_t count = 0;
  double mse = 0;            // mean of (y - x)^2 over finite pairs
  double sqnr_db = 0;        // 10 log10(sum x^2 / sum (y-x)^2); +inf when exact
  double max_abs_err = 0;
  double saturated_fraction = 0;  // from the saturation mask, when given
  std::int64_t nonfinite = 0;     // elements where x or y is Inf/NaN (left out of the sums)
};

ErrorStats error_stats(const float* x, const float* y, std::int64_t n, const std::uint8_t* saturated = nullptr);

// A weight-like test matrix: Gaussian rows with per-row scales spread over two decades and a few
// large outliers (about 1 in 1000 elements at 10-30 sigma), deterministic for a seed.
std::vector<float> synthetic_weights(std::int64_t rows, std::int64_t cols, std::uint64_t seed);

}  // namespace mfqat::mx
