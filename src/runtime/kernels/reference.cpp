// The reference of the fused MX products: each format's decoder (its decode table and what the
// SIMD loops need from it), the scalar row loops every other path is checked against (fp32 and
// int8 activations), and the helpers the SIMD loops share with them (a row's partial last block,
// a row decoded to fp32).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "gemv_internal.h"
#include "mfqat/mx/codec.h"
#include "mfqat/mx/packed_view.h"

namespace mfqat::runtime::detail {

ScaleTable::ScaleTable() {
  for (int s = 0; s < 256; ++s) v[s] = mx::e8m0_to_float(static_cast<std::uint8_t>(s));
}
const ScaleTable kScales;

Decoder Decoder::make(const mx::Format& f) {
  Decoder d;
  mx::decode_table(f, d.lut);
  d.is_int = f.family == mx::Family::Int;
  d.bits = f.bits;
  d.mbits = f.mbits;
  d.bias = f.bias;
  d.aligned32 = f.block_size == 32;  // 32 * B bits: always whole bytes
  d.int_mul = d.is_int ? std::ldexp(1.0f, -(f.bits - 2)) : 1.0f;
  d.sub_off = std::ldexp(1.0f, 1 - f.bias);
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 4; ++j) d.gather_idx[4 * i + j] = static_cast<std::int8_t>(std::min(i * f.bits / 8 + j, 7));
    d.gather_shift[i] = i * f.bits % 8;
  }
  if (f.bits == 8 && !d.is_int && f.mbits >= 2) {
    // The half whose exponent field is the code's: sign to bit 15, magnitude << (10 - M).
    d.half8 = true;
    const float k = std::ldexp(1.0f, 15 - f.bias);
    for (int c = 0; c < 256 && d.half8; ++c) {
      if (!std::isfinite(d.lut[c])) continue;  // NaN/Inf codes never reach a kernel
      const int mag = c & 0x7F, e = mag >> f.mbits, m = mag & ((1 << f.mbits) - 1);
      const float h = e == 0 ? std::ldexp(static_cast<float>(m), -14 - f.mbits)
                             : e == 31 ? NAN : std::ldexp(1.0f + std::ldexp(static_cast<float>(m), -f.mbits), e - 15);
      d.half8 = (c & 0x80 ? -h : h) * k == d.lut[c];
    }
  }
  if (f.bits == 4) {
    // Smallest power-of-two multiplier that makes every code an integer in int8 range.
    for (int k = 0; k <= 6 && !d.nibble; ++k) {
      bool ok = true;
      for (int c = 0; c < 16 && ok; ++c) {
        const float v = std::ldexp(d.lut[c], k);
        ok = std::isfinite(v) && v == std::nearbyint(v) && std::fabs(v) <= 127;
        if (ok) d.nib[c] = static_cast<std::int8_t>(v);
      }
      if (ok) {
        d.nibble = true;
        d.nib_mul = std::ldexp(1.0f, -k);
      }
    }
  }
  return d;
}

float partial_block(const Decoder& d, const mx::Format& f, const std::uint8_t* row, std::uint8_t scale, const float* x, std::int64_t cols) {
  const std::int64_t full = cols / 32, len = cols - full * 32;
  std::uint8_t codes[32];
  mx::unpack_codes_at(row, full * 32 * f.bits, len, f.bits, codes);
  float dot = 0;
  for (std::int64_t i = 0; i < len; ++i) dot += d.lut[codes[i]] * x[full * 32 + i];
  return kScales.v[scale] * dot;
}

float partial_block_q8(const mx::Format& f, const std::int8_t* table, float mul, const std::uint8_t* row, std::uint8_t scale,
                       const Q8Acts& a, std::int64_t cols) {
  const std::int64_t full = cols / 32, len = cols - full * 32;
  std::uint8_t codes[32];
  mx::unpack_codes_at(row, full * 32 * f.bits, len, f.bits, codes);
  std::int32_t dot = 0;
  for (std::int64_t i = 0; i < len; ++i) dot += table[codes[i]] * a.q[static_cast<std::size_t>(full * 32 + i)];
  return static_cast<float>(dot) * (kScales.v[scale] * mul * a.scale[static_cast<std::size_t>(full)]);
}

void decode_row_scalar(const Decoder& d, const MxView& w, std::int64_t r, float* out) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), bs = f.block_size;
  const std::uint8_t* row = w.elements + r * static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::uint8_t codes[mx::kMaxBlockSize];
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::int64_t c0 = b * bs, len = std::min(bs, w.cols - c0);
    mx::unpack_codes_at(row, c0 * f.bits, len, f.bits, codes);
    const float s = mx::e8m0_to_float(w.scales[r * nb + b]);
    for (std::int64_t i = 0; i < len; ++i) out[c0 + i] = d.lut[codes[i]] * s;
  }
}

namespace {

// The reference: per block, dot of decoded codes and x in fp32 (in order), times the scale,
// added to the fp32 row sum.
void rows_scalar(const Decoder& d, const MxView& w, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), bs = f.block_size;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::uint8_t codes[mx::kMaxBlockSize];
  float vals[mx::kMaxBlockSize];
  for (std::int64_t r = r0; r < r1; ++r) {
    for (std::int64_t j = 0; j < n; ++j) y[j * w.rows + r] = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::int64_t c0 = b * bs, len = std::min(bs, w.cols - c0);
      mx::unpack_codes_at(w.elements + r * rb, c0 * f.bits, len, f.bits, codes);
      for (std::int64_t i = 0; i < len; ++i) vals[i] = d.lut[codes[i]];
      const float s = mx::e8m0_to_float(w.scales[r * nb + b]);
      for (std::int64_t j = 0; j < n; ++j) {
        const float* xj = x + j * w.cols + c0;
        float dot = 0;
        for (std::int64_t i = 0; i < len; ++i) dot += vals[i] * xj[i];
        y[j * w.rows + r] += s * dot;
      }
    }
  }
}

}  // namespace

RowsFn scalar_rows() { return rows_scalar; }

bool q8_ints(const Decoder& d, std::int8_t* table, float* mul) {
  if (d.nibble) {
    std::copy_n(d.nib, 16, table);
    *mul = d.nib_mul;
    return true;
  }
  if (d.is_int && d.bits == 8) {
    for (int c = 0; c < 256; ++c) table[c] = static_cast<std::int8_t>(static_cast<std::uint8_t>(c));
    *mul = d.int_mul;
    return true;
  }
  return false;
}

namespace {

// Reference: exact int32 dot per block, then float(dot) * (s_w * mul * s_x) added in block order.
void q8_rows_scalar(const Decoder& d, const MxView& w, const Q8Acts& a, float* y, std::int64_t r0, std::int64_t r1) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), bs = f.block_size;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::int8_t table[256];
  float mul = 1;
  q8_ints(d, table, &mul);
  std::uint8_t codes[mx::kMaxBlockSize];
  for (std::int64_t r = r0; r < r1; ++r) {
    float sum = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::int64_t c0 = b * bs, len = std::min(bs, w.cols - c0);
      mx::unpack_codes_at(w.elements + r * rb, c0 * f.bits, len, f.bits, codes);
      std::int32_t dot = 0;
      for (std::int64_t i = 0; i < len; ++i) dot += table[codes[i]] * a.q[c0 + i];
      sum += static_cast<float>(dot) * (mx::e8m0_to_float(w.scales[r * nb + b]) * mul * a.scale[b]);
    }
    y[r] = sum;
  }
}

}  // namespace

Q8RowsFn scalar_q8_rows() { return q8_rows_scalar; }

}  // namespace mfqat::runtime::detail
