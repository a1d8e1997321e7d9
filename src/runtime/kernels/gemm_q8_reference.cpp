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
        std::int32_t sum = 0;
        const float s = quantize_block_q8(xb, len, qb, &sum);
        std::fill(qb + len, qb + 32, std::int8_t{0});
        a.scale[static_cast<std::size_t>(j * nb + b)] = s;
        a.corr[static_cast<std::size_t>(j * nb + b)] = -off * sum;
      }
    }
  });
}

void pack_scales(const IntCodes& ic, const MxView& w, std::int64_t r0, int rn, std::int64_t gb, std::int64_t b, Panel& p) {
  const std::int64_t nb = (w.cols + 31) / 32;
  for (int r = 0; r < kPanelRows; ++r) p.s[b * kPanelRows + r] = r < rn ? kScales.v[w.scales[(r0 + r) * nb + gb]] * ic.mul : 0.0f;
}

void pack_codes(const IntCodes& ic, const MxView& w, std::int64_t r0, int rn, std::int64_t gb, std::int64_t b, Panel& p) {
  const mx::Format& f = *w.format;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::uint8_t* dst = p.w + b * 8 * 64;
  std::uint8_t codes[32];
  for (int r = 0; r < kPanelRows; ++r) {
    const std::int64_t len = r < rn ? std::min<std::int64_t>(32, w.cols - gb * 32) : 0;
    const std::uint8_t* row = w.elements + (r0 + r) * rb;
    if (len == 32 && f.bits == 4) {
      for (int i = 0; i < 16; ++i) {
        codes[2 * i] = row[gb * 16 + i] & 0x0F;
        codes[2 * i + 1] = row[gb * 16 + i] >> 4;
      }
    } else if (len == 32 && f.bits == 8) {
      std::copy_n(row + gb * 32, 32, codes);
    } else if (len > 0) {
      mx::unpack_codes_at(row, gb * 32 * f.bits, len, f.bits, codes);
    }
    for (int i = 0; i < 32; ++i) dst[(i / 4) * 64 + r * 4 + i % 4] = static_cast<std::uint8_t>((i < len ? ic.ints[codes[i]] : 0) + ic.off);
  }
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
