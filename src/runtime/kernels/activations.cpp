// Activation preparation for the SIMD loops: int8 activations (gemv_q8), the 512-bit loops'
// layouts of fp32 activations, and the block fixed-point parameters of the 4-bit AVX-512 loop
// (the digits themselves are made by gemv_avx512.cpp). Layouts: gemv_internal.h.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#include "gemv_internal.h"

namespace mfqat::runtime::detail {

int q8_offset(const Decoder& d) { return -*std::min_element(d.nib, d.nib + 16); }

std::int64_t q8_paired_blocks(const Decoder& d, std::int64_t cols, int bs) {
  if (!d.nibble || !d.aligned32 || bs != 32) return 0;
  if (q8_offset(d) + *std::max_element(d.nib, d.nib + 16) > 129) return 0;
  return cols / 32 / 8 * 8;
}

float quantize_block_q8(const float* x, std::int64_t len, std::int8_t* q, std::int32_t* sum) {
  // A NaN or Inf makes the scale NaN, so that the outputs are NaN (std::max alone drops a NaN,
  // and the int8 values would then be finite).
  float amax = 0;
  bool bad = false;
  for (std::int64_t i = 0; i < len; ++i) {
    const float v = std::fabs(x[i]);
    amax = std::max(amax, v);
    bad |= !(v <= std::numeric_limits<float>::max());
  }
  const float s = bad ? NAN : amax / 127.0f;
  *sum = 0;
  if (!(s > 0)) {
    std::fill_n(q, len, std::int8_t{0});
    return s;
  }
  for (std::int64_t i = 0; i < len; ++i) {
    // round to nearest even by the 1.5 * 2^23 trick (|x / s| <= 127 here): what std::nearbyint
    // gives in the default rounding mode, without a libm call per element; x / s, not
    // x * (1 / s), which overflows for a subnormal block maximum
    const float v = (x[i] / s + 12582912.0f) - 12582912.0f;
    q[i] = static_cast<std::int8_t>(std::clamp(v, -127.0f, 127.0f));
    *sum += q[i];
  }
  return s;
}

Q8Acts quantize_acts(const float* x, std::int64_t cols, int bs, bool nibble_order, std::int64_t grouped, int group) {
  Q8Acts a;
  const std::int64_t nb = (cols + bs - 1) / bs;
  a.q.assign(static_cast<std::size_t>(nb * bs), 0);
  a.scale.assign(static_cast<std::size_t>(nb), 0.0f);
  a.sum.assign(static_cast<std::size_t>(nb), 0);
  a.grouped = grouped;
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::int64_t c0 = b * bs, len = std::min<std::int64_t>(bs, cols - c0);
    // natural order first, then into the layout
    std::int8_t qb[mx::kMaxBlockSize];
    std::int32_t sum = 0;
    const float s = quantize_block_q8(x + c0, len, qb, &sum);
    a.scale[b] = s;
    if (!(s > 0)) continue;  // all zero, or NaN: q stays 0
    std::int8_t* dst = a.q.data() + c0;
    if (!(nibble_order && len == 32)) {
      std::copy_n(qb, len, dst);
    } else {
      // [evens | odds]; a grouped block: its group starts (b % group) blocks before it, with the
      // evens of the group's blocks first (16 each), then their odds
      const std::int64_t k = b % group;
      std::int8_t* ev = b < grouped ? dst - k * 32 + k * 16 : dst;
      std::int8_t* od = b < grouped ? dst - k * 32 + group * 16 + k * 16 : dst + 16;
      for (int t = 0; t < 16; ++t) {
        ev[t] = qb[2 * t];
        od[t] = qb[2 * t + 1];
      }
    }
    a.sum[b] = sum;
  }
  return a;
}

X512 x512_layout(const Decoder& d) {
  if (!d.aligned32) return X512::None;
  if (d.bits == 4) return X512::Nibble;
  if (d.bits == 8 && d.is_int) return X512::Int8;
  if (d.half8) return X512::Fp8;
  return X512::None;
}

const float* prepare_x512(const Decoder& d, const float* x, std::int64_t cols, AlignedVec<float>& xp) {
  const std::int64_t full = cols / 32;
  if (x512_layout(d) == X512::Int8) return x;  // read as it is
  xp.resize(static_cast<std::size_t>(full * 32));
  switch (x512_layout(d)) {
    case X512::Nibble:
      for (std::int64_t b = 0; b < full; ++b) {
        float* o = xp.data() + b * 32;
        const float* in = x + b * 32;
        for (int i = 0; i < 16; ++i) {
          o[i] = in[2 * i];
          o[16 + i] = in[2 * i + 1];
        }
      }
      return xp.data();
    case X512::Fp8: {
      const float k = std::ldexp(1.0f, 15 - d.bias);
      float amax = 0;  // of the finite inputs: is one of them too large to scale?
      for (std::int64_t i = 0; i < full * 32; ++i) amax = std::max(amax, std::isfinite(x[i]) ? std::fabs(x[i]) : 0.0f);
      if (std::isinf(amax * k)) return nullptr;
      for (std::int64_t i = 0; i < full * 32; ++i) xp[static_cast<std::size_t>(i)] = x[i] * k;
      return xp.data();
    }
    case X512::Int8:
    case X512::None: break;
  }
  return nullptr;
}

bool fx_supported(const Decoder& d) { return d.aligned32 && d.bits == 4 && d.nibble; }

FxParams fx_params(const Decoder& d, int digits) {
  int m = 1;  // the block's dot: 32 * max|nib| * Xmax < 2^31
  for (const std::int8_t v : d.nib) m = std::max(m, std::abs(static_cast<int>(v)));
  const std::int32_t range = digits == 2 ? 127 * (1 + 256) : 127 * (1 + 256 + 65536);
  FxParams p;
  p.xmax = std::min<std::int32_t>(range, std::numeric_limits<std::int32_t>::max() / (32 * m));
  p.k = std::ilogb(static_cast<double>(p.xmax)) - 1;
  return p;
}

namespace {
std::atomic<int> g_digits{3};  // the process default of the Isa overloads
}  // namespace

int fx_digits() { return g_digits.load(); }

void set_fx_digits(int digits) {
  if (digits != 2 && digits != 3) throw std::invalid_argument("fixed-point digits: 2 or 3, not " + std::to_string(digits));
  g_digits = digits;
}

}  // namespace mfqat::runtime::detail
