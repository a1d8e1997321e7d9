// Scalar reference kernels: one element at a time, the definition the SIMD paths must match.
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels.h"

namespace mfqat::mx::detail {

KernelParams make_params(const Format& f) {
  KernelParams p;
  p.bits = f.bits;
  p.mbits = f.mbits;
  p.emin = f.emin;
  p.emax = f.emax;
  p.block_size = f.block_size;
  p.is_int = f.family == Family::Int;
  p.max_code = f.max_code;
  p.max_normal = static_cast<float>(f.max_normal);
  for (std::uint32_t c = 0; c < f.code_count(); ++c) p.lut[c] = decode_element(f, c);
  return p;
}

namespace {

std::uint32_t block_amax_bits(const float* x, std::int64_t len) {
  std::uint32_t m = 0;
  for (std::int64_t i = 0; i < len; ++i) {
    const std::uint32_t a = f2u(x[i]) & 0x7fffffffu;
    m = a > m ? a : m;
  }
  return m;
}

std::uint32_t draw(const RoundCtx& rc, std::int64_t i) {
  return rc.mode == Rounding::Stochastic ? stochastic_draw(rc.seed, rc.index0 + static_cast<std::uint64_t>(i)) : 0;
}

void fake_quantize_scalar(const KernelParams& p, const float* x, float* y, std::int64_t n, std::uint8_t* sat,
                          const RoundCtx& rc) {
  for (std::int64_t b0 = 0; b0 < n; b0 += p.block_size) {
    const std::int64_t len = n - b0 < p.block_size ? n - b0 : p.block_size;
    const std::uint8_t s = shared_scale(block_amax_bits(x + b0, len), p.emax);
    if (s == kE8M0Nan) {
      for (std::int64_t i = b0; i < b0 + len; ++i) {
        y[i] = std::numeric_limits<float>::quiet_NaN();
        if (sat) sat[i] = 0;
      }
      continue;
    }
    const int X = static_cast<int>(s) - 127;
    const float inv = pow2f(-X), scale = pow2f(X);
    for (std::int64_t i = b0; i < b0 + len; ++i) {
      const std::uint32_t xb = f2u(x[i]);
      const float a = u2f(xb & 0x7fffffffu) * inv;
      const ElemResult e = quantize_magnitude(p, a, rc.mode, draw(rc, i));
      std::uint32_t sign = xb & 0x80000000u;
      if (p.is_int && e.code == 0) sign = 0;  // two's complement has no -0
      y[i] = u2f(f2u(e.value * scale) | sign);
      if (sat) sat[i] = e.saturated;
    }
  }
}

void quantize_scalar(const KernelParams& p, const float* x, std::int64_t n, std::uint8_t* packed,
                     std::uint8_t* scales, const RoundCtx& rc) {
  std::uint8_t codes[kMaxBlockSize + 8];
  std::int64_t bitpos = 0;  // within the run
  for (std::int64_t b0 = 0, blk = 0; b0 < n; b0 += p.block_size, ++blk) {
    const std::int64_t len = n - b0 < p.block_size ? n - b0 : p.block_size;
    RoundCtx brc = rc;
    brc.index0 = rc.index0 + static_cast<std::uint64_t>(b0);
    scales[blk] = quantize_block_codes(p, x + b0, len, codes, brc);
    pack_codes_at(codes, len, p.bits, packed, bitpos);
    bitpos += len * p.bits;
  }
}

void dequantize_scalar(const KernelParams& p, const std::uint8_t* packed, const std::uint8_t* scales, std::int64_t n,
                       float* y) {
  std::uint8_t codes[kMaxBlockSize + 8];
  std::int64_t bitpos = 0;
  for (std::int64_t b0 = 0, blk = 0; b0 < n; b0 += p.block_size, ++blk) {
    const std::int64_t len = n - b0 < p.block_size ? n - b0 : p.block_size;
    unpack_codes_at(packed, bitpos, len, p.bits, codes);
    bitpos += len * p.bits;
    const float scale = e8m0_to_float(scales[blk]);
    for (std::int64_t i = 0; i < len; ++i) y[b0 + i] = p.lut[codes[i]] * scale;
  }
}

}  // namespace

std::uint8_t quantize_block_codes(const KernelParams& p, const float* x, std::int64_t len, std::uint8_t* codes,
                                  const RoundCtx& rc) {
  const std::uint8_t s = shared_scale(block_amax_bits(x, len), p.emax);
  if (s == kE8M0Nan) {
    std::memset(codes, 0, static_cast<std::size_t>(len));
    return s;
  }
  const float inv = pow2f(127 - static_cast<int>(s));
  for (std::int64_t i = 0; i < len; ++i) {
    const std::uint32_t xb = f2u(x[i]);
    const float a = u2f(xb & 0x7fffffffu) * inv;
    const ElemResult e = quantize_magnitude(p, a, rc.mode, draw(rc, i));
    codes[i] = static_cast<std::uint8_t>(sign_code(p, e.code, xb >> 31));
  }
  return s;
}

const KernelTable& scalar_kernels() {
  static const KernelTable t{fake_quantize_scalar, quantize_scalar, dequantize_scalar};
  return t;
}

}  // namespace mfqat::mx::detail
