#include "mfqat/mx/stats.h"

#include <cmath>
#include <limits>

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

}  // namespace mfqat::mx
