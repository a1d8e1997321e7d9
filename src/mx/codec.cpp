#include "mfqat/mx/codec.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace mfqat::mx {

const char* rounding_name(Rounding r) {
  switch (r) {
    case Rounding::NearestEven: return "even";
    case Rounding::NearestAway: return "away";
    case Rounding::Stochastic: return "stochastic";
  }
  return "?";
}

Rounding parse_rounding(std::string_view s) {
  if (s == "even" || s == "rne" || s == "nearest-even") return Rounding::NearestEven;
  if (s == "away" || s == "nearest-away") return Rounding::NearestAway;
  if (s == "stochastic" || s == "sr") return Rounding::Stochastic;
  throw std::invalid_argument("unknown rounding '" + std::string(s) + "' (even, away or stochastic)");
}

float e8m0_to_float(std::uint8_t s) {
  if (s == kE8M0Nan) return std::numeric_limits<float>::quiet_NaN();
  return detail::pow2f(static_cast<int>(s) - 127);
}

std::uint8_t shared_scale(std::uint32_t amax_bits, int emax) {
  amax_bits &= 0x7fffffffu;
  if (amax_bits >= 0x7f800000u) return kE8M0Nan;
  const int x = static_cast<int>(amax_bits >> 23) - 127 - emax;  // exponent field 0 (zero, subnormal) lands below -127
  return static_cast<std::uint8_t>((x < -127 ? -127 : x) + 127);
}

float decode_element(const Format& f, std::uint32_t code) {
  const std::uint32_t mask = (1u << f.bits) - 1;
  code &= mask;
  if (f.family == Family::Int) {
    const std::int32_t v = (code & (1u << (f.bits - 1))) ? static_cast<std::int32_t>(code) - (1 << f.bits)
                                                         : static_cast<std::int32_t>(code);
    return std::ldexp(static_cast<float>(v), -f.mbits);
  }
  const bool neg = code >> (f.bits - 1);
  const std::uint32_t mag = code & (mask >> 1);
  const int field = static_cast<int>(mag >> f.mbits);
  const std::uint32_t frac = mag & ((1u << f.mbits) - 1);
  const int top = (1 << f.ebits) - 1;
  float v;
  if (f.specials == Specials::E4M3 && field == top && frac == (1u << f.mbits) - 1) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (f.specials == Specials::Ieee && field == top) {
    v = frac ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else if (field == 0) {
    v = std::ldexp(static_cast<float>(frac), f.emin - f.mbits);
  } else {
    v = std::ldexp(static_cast<float>(frac + (1u << f.mbits)), field - f.bias - f.mbits);
  }
  return neg ? -v : v;
}

std::uint32_t encode_element(const Format& f, float v, Rounding r, std::uint32_t rand24, bool* saturated) {
  const detail::KernelParams p = detail::make_params(f);
  const bool neg = std::signbit(v);
  if (std::isnan(v)) {
    if (saturated) *saturated = false;
    if (f.specials == Specials::AllFinite) return 0;
    return (1u << f.bits) - 1;  // all ones: NaN for E4M3 and E5M2
  }
  float a = std::fabs(v);
  bool sat_inf = false;
  if (a >= std::ldexp(1.0f, f.emax + 1)) {  // beyond the last binade (incl. Inf): clip
    a = static_cast<float>(f.max_normal);
    sat_inf = true;
  }
  const detail::ElemResult e = detail::quantize_magnitude(p, a, r, rand24 & 0xffffffu);
  if (saturated) *saturated = sat_inf || e.saturated;
  return detail::sign_code(p, e.code, neg);
}

}  // namespace mfqat::mx
