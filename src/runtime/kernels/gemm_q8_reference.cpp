// The int8 MX GEMM's reference: which formats have integer codes (IntCodes), the activation
// quantizer every path shares, and the scalar loop the SIMD kernel reproduces bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "gemm_internal.h"
#include "mfqat/mx/packed_view.h"
#include "mfqat/mx/parallel.h"

namespace mfqat::runtime::detail {

IntCodes IntCodes::make(const mx::Format& f) {
  IntCodes ic;
  if (f.block_size != 32 || f.bits > 8) return ic;
  float lut[256] = {};
  mx::decode_table(f, lut);
  const int count = 1 << f.bits;
  // The smallest power of two that makes every code an integer that fits.
  for (int k = 0; k <= 12 && !ic.ok; ++k) {
    bool fits = true;
    int lo = 0, hi = 0;
    for (int c = 0; c < count && fits; ++c) {
      const float v = std::ldexp(lut[c], k);
      fits = std::isfinite(v) && v == std::nearbyint(v) && v >= -128 && v <= 127;
      if (!fits) break;
      ic.ints[c] = static_cast<std::int8_t>(v);
      lo = std::min(lo, static_cast<int>(v));
      hi = std::max(hi, static_cast<int>(v));
    }
    if (fits && hi - lo <= 255) {
      ic.ok = true;
      ic.mul = std::ldexp(1.0f, -k);
      ic.off = -lo;
      ic.fits_maddubs = hi - lo <= 129;
    }
  }
  if (!ic.ok) return ic;
  bool identity = f.bits == 8;
  for (int c = 0; c < count && identity; ++c) identity = ic.ints[c] == static_cast<std::int8_t>(static_cast<std::uint8_t>(c));
  ic.kind = identity ? Kind::Byte : f.bits == 4 ? Kind::Nibble : Kind::Generic;
  return ic;
}

void quantize_rows(const float* x, std::int64_t n, std::int64_t cols, int off, Q8Rows& a) {
  const std::int64_t nb = (cols + 31) / 32;
  a.n = n;
  a.nb = nb;
  a.q.resize(static_cast<std::size_t>(n * nb * 32));
  a.scale.resize(static_cast<std::size_t>(n * nb));
  a.corr.resize(static_cast<std::size_t>(n * nb));
  parallel_for(n, std::max<std::int64_t>(1, 8192 / std::max<std::int64_t>(1, cols)), [&](std::int64_t j0, std::int64_t j1) {
    for (std::int64_t j = j0; j < j1; ++j) {
      for (std::int64_t b = 0; b < nb; ++b) {
        const float* xb = x + j * cols + b * 32;
        const std::int64_t len = std::min<std::int64_t>(32, cols - b * 32);
        std::int8_t* qb = a.q.data() + (j * nb + b) * 32;
        // A NaN or Inf anywhere makes the block's scale NaN (std::max alone would drop a NaN).
        float amax = 0;
        bool bad = false;
        for (std::int64_t i = 0; i < len; ++i) {
          const float v = std::fabs(xb[i]);
          amax = std::max(amax, v);
          bad |= !(v <= std::numeric_limits<float>::max());
        }
        const float s = bad ? NAN : amax / 127.0f;
        std::int32_t sum = 0;
        if (s > 0) {
          for (std::int64_t i = 0; i < len; ++i) {
            // x / s, not x * (1 / s): 1 / s overflows for a subnormal block maximum. Round to
            // nearest even by the 1.5 * 2^23 trick (|x / s| <= 127 + rounding here): what
            // std::nearbyint gives in the default rounding mode, without a libm call.
            const float v = (xb[i] / s + 12582912.0f) - 12582912.0f;
            qb[i] = static_cast<std::int8_t>(std::clamp(v, -127.0f, 127.0f));
            sum += qb[i];
          }
        } else {
          std::fill_n(qb, len, std::int8_t{0});
        }
        std::fill(qb + len, qb + 32, std::int8_t{0});
        a.scale[static_cast<std::size_t>(j * nb + b)] = s;
        a.corr[static_cast<std::size_t>(j * nb + b)] = -off * sum;
      }
    }
  });
}

namespace {

void gemm_q8_scalar(const IntCodes& ic, const MxView& w, const Q8Rows& a, float* y, std::int64_t r0, std::int64_t r1) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = a.nb, rb = static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::uint8_t codes[32];
  std::int8_t vals[32];
  for (std::int64_t r = r0; r < r1; ++r) {
    for (std::int64_t j = 0; j < a.n; ++j) y[j * w.rows + r] = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::int64_t len = std::min<std::int64_t>(32, w.cols - b * 32);
      mx::unpack_codes_at(w.elements + r * rb, b * 32 * f.bits, len, f.bits, codes);
      for (std::int64_t i = 0; i < len; ++i) vals[i] = ic.ints[codes[i]];
      const float ws = kScales.v[w.scales[r * nb + b]] * ic.mul;
      for (std::int64_t j = 0; j < a.n; ++j) {
        const std::int8_t* q = a.q.data() + (j * nb + b) * 32;
        std::int32_t dot = 0;
        for (std::int64_t i = 0; i < len; ++i) dot += vals[i] * q[i];
        float& acc = y[j * w.rows + r];
        acc = std::fma(static_cast<float>(dot), ws * a.scale[static_cast<std::size_t>(j * nb + b)], acc);
      }
    }
  }
}

}  // namespace

GemmQ8Fn scalar_gemm_q8() { return gemm_q8_scalar; }

}  // namespace mfqat::runtime::detail
