#include "mfqat/mx/stats.h"

#include <cmath>
#include <limits>
#include <random>

namespace mfqat::mx {

ErrorStats error_stats(const float* x, const float* y, std::int64_t n, const std::uint8_t* saturated) {
  ErrorStats s;
  s.count = n;
  double sig = 0, err = 0, maxe = 0;
  std::int64_t sat = 0, finite = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (saturated && saturated[i]) ++sat;
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) {
      ++s.nonfinite;
      continue;
    }
    const double d = static_cast<double>(y[i]) - static_cast<double>(x[i]);
    sig += static_cast<double>(x[i]) * x[i];
    err += d * d;
    maxe = std::fabs(d) > maxe ? std::fabs(d) : maxe;
    ++finite;
  }
  s.mse = finite ? err / static_cast<double>(finite) : 0.0;
  s.sqnr_db = err > 0 ? 10.0 * std::log10(sig / err) : std::numeric_limits<double>::infinity();
  s.max_abs_err = maxe;
  s.saturated_fraction = n ? static_cast<double>(sat) / static_cast<double>(n) : 0.0;
  return s;
}

std::vector<float> synthetic_weights(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float row_scale = 0.02f * std::pow(10.0f, 2.0f * ud(rng) - 1.0f);
    for (std::int64_t c = 0; c < cols; ++c) {
      float v = nd(rng);
      if (ud(rng) < 1e-3f) v = (v < 0 ? -1.0f : 1.0f) * (10.0f + 20.0f * ud(rng));
      w[static_cast<std::size_t>(r * cols + c)] = v * row_scale;
    }
  }
  return w;
}

}  // namespace mfqat::mx
