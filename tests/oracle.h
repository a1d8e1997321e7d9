// Independent reference for the tests: values from the format definition in double precision,
// nearest-code search by brute force, shared exponent by frexp. Shares no code with src/mx.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "mfqat/mx/format.h"

namespace oracle {

using mfqat::mx::Family;
using mfqat::mx::Format;
using mfqat::mx::Specials;

// Value of a code straight from the definition (double; NaN/Inf per the specials).
inline double value(const Format& f, std::uint32_t code) {
  const int B = f.bits;
  if (f.family == Family::Int) {
    const int v = code >= (1u << (B - 1)) ? static_cast<int>(code) - (1 << B) : static_cast<int>(code);
    return v / std::pow(2.0, B - 2);
  }
  const int E = f.ebits, M = f.mbits;
  const int bias = (1 << (E - 1)) - 1;
  const bool neg = (code >> (B - 1)) & 1;
  const int e = (code >> M) & ((1 << E) - 1);
  const int m = code & ((1 << M) - 1);
  double v;
  if (f.specials == Specials::E4M3 && e == (1 << E) - 1 && m == (1 << M) - 1) {
    v = std::numeric_limits<double>::quiet_NaN();
  } else if (f.specials == Specials::Ieee && e == (1 << E) - 1) {
    v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    v = std::pow(2.0, 1 - bias) * (m / std::pow(2.0, M));
  } else {
    v = std::pow(2.0, e - bias) * (1.0 + m / std::pow(2.0, M));
  }
  return neg ? -v : v;
}

// Finite non-negative magnitudes, indexed by magnitude code (0 .. max_code).
inline std::vector<double> magnitudes(const Format& f) {
  std::vector<double> out;
  for (std::uint32_t c = 0; c < (1u << (f.bits - 1)); ++c) {
    const double v = value(f, c);
    if (!std::isfinite(v)) break;
    out.push_back(v);
  }
  return out;
}

enum class Mode { Even, Away };

// Nearest magnitude code to |v| (v already divided by the scale), saturating.
inline std::uint32_t nearest_mag(const std::vector<double>& mags, double a, Mode mode) {
  if (a >= mags.back()) return static_cast<std::uint32_t>(mags.size() - 1);
  std::uint32_t best = 0;
  double bd = std::numeric_limits<double>::infinity();
  for (std::uint32_t c = 0; c < mags.size(); ++c) {
    const double d = std::fabs(mags[c] - a);
    if (d < bd) {
      bd = d;
      best = c;
    } else if (d == bd) {  // tie between best (smaller) and c (larger)
      // IEEE ties-to-even: the candidate whose value is an even multiple of the grid step at the
      // tie. For M >= 1 that is the even code; for M = 0 (powers of two) it is the larger one.
      const double step = mags[c] - mags[best];
      if (mode == Mode::Away || std::fmod(mags[c] / step, 2.0) == 0.0) best = c;
    }
  }
  return best;
}

inline std::uint32_t signed_code(const Format& f, std::uint32_t mag, bool neg) {
  if (!neg) return mag;
  if (f.family == Family::Int) return ((1u << f.bits) - mag) & ((1u << f.bits) - 1);
  return mag | (1u << (f.bits - 1));
}

// Shared exponent X of a block via frexp (independent of the bit trick), clamped at -127.
inline int shared_exponent(const Format& f, const float* x, int n) {
  double amax = 0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
  if (amax == 0) return -127;
  int e;
  std::frexp(amax, &e);  // amax = m 2^e, m in [0.5, 1)
  return std::max(e - 1 - f.emax, -127);
}

}  // namespace oracle
