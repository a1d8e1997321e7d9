#include "mfqat/export/ggml_blocks.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "mfqat/mx/codec.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/mx/quantize.h"

namespace mfqat::gguf {

namespace {

constexpr int kBlock = 32;

struct IntRange {
  std::int64_t lo, hi;
};
std::optional<IntRange> int_range(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return IntRange{-128, 127};
    case GgmlType::Q5_0: return IntRange{-16, 15};
    case GgmlType::Q4_0: return IntRange{-8, 7};
    default: return std::nullopt;
  }
}

// q(code) = elem(code) * 2^p as an integer; `finite` false for NaN/Inf codes.
struct IntTable {
  std::array<std::int64_t, 256> q{};
  std::array<bool, 256> finite{};
};
IntTable int_table(const mx::Format& f) {
  IntTable t;
  const int p = fraction_bits(f);
  for (std::uint32_t c = 0; c < f.code_count(); ++c) {
    const double v = std::ldexp(static_cast<double>(mx::decode_element(f, c)), p);
    t.finite[c] = std::isfinite(v);
    t.q[c] = t.finite[c] ? static_cast<std::int64_t>(v) : 0;
  }
  return t;
}

void put_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
std::uint16_t get_u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

std::string where(std::int64_t row, std::int64_t block) {
  return "row " + std::to_string(row) + ", block " + std::to_string(block);
}

// The shift s (d = 2^(dexp+s), integers q >> s) closest to 0 that makes the block exact in range r.
std::optional<int> find_shift(const std::int64_t* q, int dexp, IntRange r) {
  int tz = 63;  // the most trailing zero bits every nonzero q has
  std::int64_t amax = 0;
  for (int i = 0; i < kBlock; ++i) {
    if (q[i] == 0) continue;
    const auto a = static_cast<std::uint64_t>(q[i] < 0 ? -q[i] : q[i]);
    tz = std::min(tz, std::countr_zero(a));
    amax = std::max<std::int64_t>(amax, static_cast<std::int64_t>(a));
  }
  auto fits = [&](int s) {
    if (dexp + s < -24 || dexp + s > 15) return false;
    if (s > tz) return false;
    for (int i = 0; i < kBlock; ++i) {
      const std::int64_t v = s >= 0 ? q[i] / (std::int64_t{1} << s) : q[i] * (std::int64_t{1} << -s);
      if (v < r.lo || v > r.hi) return false;
    }
    return true;
  };
  if (amax > (std::int64_t{1} << 40)) return std::nullopt;
  for (int k = 0; k <= 48; ++k) {
    if (fits(k)) return k;
    if (k > 0 && fits(-k)) return -k;
  }
  return std::nullopt;
}

}  // namespace

bool is_e2m1(const mx::Format& f) { return f.family == mx::Family::Fp && f.bits == 4 && f.ebits == 2 && f.mbits == 1; }

std::vector<std::uint8_t> dense_bytes(const std::vector<float>& v, GgmlType t, const std::string& name) {
  std::vector<std::uint8_t> out;
  if (t == GgmlType::F32) {
    out.resize(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
    return out;
  }
  if (t != GgmlType::F16 && t != GgmlType::BF16) throw std::invalid_argument(std::string("dense values are not written as ") + info(t).name);
  out.resize(v.size() * 2);
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::uint16_t h = t == GgmlType::F16 ? float_to_half(v[i]) : float_to_bf16(v[i]);
    const float back = t == GgmlType::F16 ? half_to_float(h) : bf16_to_float(h);
    if (back != v[i])
      throw InexactError(name + ": element " + std::to_string(i) + " (" + std::to_string(v[i]) + ") is not exact in " + info(t).name +
                         "; export the dense tensors as f32");
    put_u16(out.data() + 2 * i, h);
  }
  return out;
}

int fraction_bits(const mx::Format& f) {
  if (f.family == mx::Family::Int) return f.mbits;
  return f.mbits - f.emin;
}

std::optional<GgmlType> default_type(const mx::Format& f) {
  if (f.block_size != kBlock) return std::nullopt;
  if (is_e2m1(f)) return GgmlType::MXFP4;
  if (f.family == mx::Family::Int) {
    if (f.bits <= 4) return GgmlType::Q4_0;
    if (f.bits == 5) return GgmlType::Q5_0;
    return GgmlType::Q8_0;
  }
  // E2M3 (and any FP grid whose integers fit int8): Q8_0
  const IntTable t = int_table(f);
  for (std::uint32_t c = 0; c < f.code_count(); ++c)
    if (!t.finite[c] || t.q[c] < -128 || t.q[c] > 127) return std::nullopt;
  return GgmlType::Q8_0;
}

std::string type_refusal(const mx::Format& f, GgmlType t) {
  if (t == GgmlType::F32 || t == GgmlType::F16) return "";
  if (f.block_size != kBlock)
    return f.name + " with blocks of " + std::to_string(f.block_size) + " has no ggml block type (ggml's blocks hold 32)";
  if (t == GgmlType::MXFP4) return is_e2m1(f) ? "" : "ggml's MXFP4 holds E2M1 elements only, not " + f.name;
  if (!int_range(t)) return std::string("mfqat does not write ggml type ") + info(t).name;
  if (f.family == mx::Family::Int && ((t == GgmlType::Q4_0 && f.bits > 4) || (t == GgmlType::Q5_0 && f.bits > 5)))
    return f.name + " has " + std::to_string(f.bits) + "-bit integers; " + info(t).name + " holds " +
           (t == GgmlType::Q4_0 ? "4" : "5");
  return "";  // decided block by block
}

std::vector<std::uint8_t> from_mx(const mx::PackedView& m, GgmlType t) {
  const mx::Format& f = *m.format;
  if (const std::string why = type_refusal(f, t); !why.empty()) throw std::invalid_argument(why);
  const TypeInfo& ti = info(t);
  if (m.cols % ti.block != 0)
    throw std::invalid_argument("rows of " + std::to_string(m.cols) + " elements are not whole " + ti.name + " blocks of " +
                                std::to_string(ti.block));
  const std::int64_t nb = m.cols / ti.block;  // ggml blocks per row
  const std::uint64_t row_out = static_cast<std::uint64_t>(nb) * ti.bytes;
  std::vector<std::uint8_t> out(static_cast<std::size_t>(row_out * static_cast<std::uint64_t>(m.rows)));
  const std::size_t row_bytes = f.packed_row_bytes(m.cols);
  const std::int64_t bpr = f.blocks_per_row(m.cols);
  const IntTable tab = int_table(f);
  const int p = fraction_bits(f);
  float dec[256];
  mx::decode_table(f, dec);
  const std::optional<IntRange> range = int_range(t);

  mfqat::parallel_for(m.rows, 8, [&](std::int64_t r0, std::int64_t r1) {
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(m.cols));
    for (std::int64_t r = r0; r < r1; ++r) {
      mx::unpack_codes(m.elements + static_cast<std::size_t>(r) * row_bytes, m.cols, f.bits, codes.data());
      const std::uint8_t* sc = m.scales + r * bpr;
      std::uint8_t* o = out.data() + static_cast<std::size_t>(r) * row_out;
      if (t == GgmlType::F32 || t == GgmlType::F16) {
        for (std::int64_t c = 0; c < m.cols; ++c) {
          const std::uint8_t e = sc[c / f.block_size];
          const float v = e == mx::kE8M0Nan ? std::numeric_limits<float>::quiet_NaN()
                                            : dec[codes[static_cast<std::size_t>(c)]] * mx::e8m0_to_float(e);
          if (!std::isfinite(v)) throw InexactError(where(r, c / f.block_size) + ": NaN or Inf value");
          if (t == GgmlType::F32) {
            std::memcpy(o + 4 * c, &v, 4);
          } else {
            const std::uint16_t h = float_to_half(v);
            if (half_to_float(h) != v)
              throw InexactError("row " + std::to_string(r) + ", column " + std::to_string(c) + ": value " + std::to_string(v) +
                                 " is not a half-precision number");
            put_u16(o + 2 * c, h);
          }
        }
        continue;
      }
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::uint8_t* cb = codes.data() + b * kBlock;
        const std::uint8_t e = sc[b];
        if (e == mx::kE8M0Nan) throw InexactError(where(r, b) + ": NaN scale (E8M0 255)");
        std::uint8_t* ob = o + static_cast<std::size_t>(b) * ti.bytes;
        if (t == GgmlType::MXFP4) {
          ob[0] = e;
          for (int j = 0; j < 16; ++j) ob[1 + j] = static_cast<std::uint8_t>(cb[j] | (cb[j + 16] << 4));
          continue;
        }
        std::int64_t q[kBlock];
        bool zero = true;
        for (int i = 0; i < kBlock; ++i) {
          if (!tab.finite[cb[i]]) throw InexactError(where(r, b) + ": NaN or Inf element");
          q[i] = tab.q[cb[i]];
          zero = zero && q[i] == 0;
        }
        const int dexp = static_cast<int>(e) - 127 - p;
        std::uint16_t d = 0;
        if (!zero) {
          const std::optional<int> s = find_shift(q, dexp, *range);
          if (!s)
            throw InexactError(where(r, b) + ": scale 2^" + std::to_string(static_cast<int>(e) - 127) + " has no " + ti.name +
                               " image (no half-precision d = 2^k with every integer in [" + std::to_string(range->lo) + ", " +
                               std::to_string(range->hi) + "])");
          d = *half_pow2(dexp + *s);
          for (int i = 0; i < kBlock; ++i) q[i] = *s >= 0 ? q[i] / (std::int64_t{1} << *s) : q[i] * (std::int64_t{1} << -*s);
        }
        put_u16(ob, d);
        if (t == GgmlType::Q8_0) {
          for (int i = 0; i < kBlock; ++i) ob[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q[i]));
        } else if (t == GgmlType::Q4_0) {
          for (int j = 0; j < 16; ++j) ob[2 + j] = static_cast<std::uint8_t>((q[j] + 8) | ((q[j + 16] + 8) << 4));
        } else {  // Q5_0: low nibbles as Q4_0, the fifth bits in a little-endian u32 (bit j: element j)
          std::uint32_t qh = 0;
          for (int j = 0; j < 16; ++j) {
            const auto n0 = static_cast<std::uint32_t>(q[j] + 16), n1 = static_cast<std::uint32_t>(q[j + 16] + 16);
            ob[6 + j] = static_cast<std::uint8_t>((n0 & 15u) | ((n1 & 15u) << 4));
            qh |= (n0 >> 4) << j;
            qh |= (n1 >> 4) << (j + 16);
          }
          for (int k = 0; k < 4; ++k) ob[2 + k] = static_cast<std::uint8_t>(qh >> (8 * k));
        }
      }
    }
  });
  return out;
}

void to_f32(GgmlType t, std::span<const std::uint8_t> data, std::int64_t n, float* out) {
  const TypeInfo& ti = info(t);
  if (n % ti.block != 0 || data.size() < static_cast<std::uint64_t>(n / ti.block) * ti.bytes)
    throw std::invalid_argument(std::string("to_f32: ") + ti.name + ": " + std::to_string(n) + " elements do not fit the data");
  if (n == 0) return;  // an empty tensor's span may have no data pointer
  const std::uint8_t* p = data.data();
  switch (t) {
    case GgmlType::F32: std::memcpy(out, p, static_cast<std::size_t>(n) * 4); return;
    case GgmlType::F16:
      for (std::int64_t i = 0; i < n; ++i) out[i] = half_to_float(get_u16(p + 2 * i));
      return;
    case GgmlType::BF16:
      for (std::int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(get_u16(p + 2 * i));
      return;
    default: break;
  }
  static constexpr float kMxfp4[16] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.f, -.5f, -1, -1.5f, -2, -3, -4, -6};
  for (std::int64_t b = 0; b < n / kBlock; ++b) {
    const std::uint8_t* blk = p + static_cast<std::size_t>(b) * ti.bytes;
    float* o = out + b * kBlock;
    if (t == GgmlType::MXFP4) {
      const float d = blk[0] == 255 ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, blk[0] - 127);
      for (int j = 0; j < 16; ++j) {
        o[j] = kMxfp4[blk[1 + j] & 15] * d;
        o[j + 16] = kMxfp4[blk[1 + j] >> 4] * d;
      }
      continue;
    }
    const float d = half_to_float(get_u16(blk));
    if (t == GgmlType::Q8_0) {
      for (int j = 0; j < kBlock; ++j) o[j] = d * static_cast<float>(static_cast<std::int8_t>(blk[2 + j]));
    } else if (t == GgmlType::Q4_0) {
      for (int j = 0; j < 16; ++j) {
        o[j] = d * static_cast<float>((blk[2 + j] & 15) - 8);
        o[j + 16] = d * static_cast<float>((blk[2 + j] >> 4) - 8);
      }
    } else if (t == GgmlType::Q5_0) {
      const std::uint32_t qh = blk[2] | (blk[3] << 8) | (blk[4] << 16) | (static_cast<std::uint32_t>(blk[5]) << 24);
      for (int j = 0; j < 16; ++j) {
        const int n0 = (blk[6 + j] & 15) | static_cast<int>(((qh >> j) & 1u) << 4);
        const int n1 = (blk[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
        o[j] = d * static_cast<float>(n0 - 16);
        o[j + 16] = d * static_cast<float>(n1 - 16);
      }
    } else {
      throw std::invalid_argument(std::string("to_f32: ggml type ") + ti.name + " is not read by mfqat");
    }
  }
}

mx::PackedMatrix to_mx(GgmlType t, std::span<const std::uint8_t> data, std::int64_t rows, std::int64_t cols, const mx::Format& f) {
  if (t == GgmlType::MXFP4 && is_e2m1(f) && f.block_size == kBlock && cols % kBlock == 0) {
    mx::PackedMatrix m{f, rows, cols, std::vector<std::uint8_t>(f.packed_row_bytes(cols) * static_cast<std::size_t>(rows)),
                       std::vector<std::uint8_t>(static_cast<std::size_t>(rows * f.blocks_per_row(cols)))};
    const std::int64_t nb = cols / kBlock;
    if (data.size() < static_cast<std::uint64_t>(rows * nb) * 17) throw std::invalid_argument("to_mx: MXFP4 data too short");
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t b = 0; b < nb; ++b) {
        const std::uint8_t* blk = data.data() + static_cast<std::size_t>(r * nb + b) * 17;
        m.scales[static_cast<std::size_t>(r * nb + b)] = blk[0];
        for (int j = 0; j < 16; ++j) {
          codes[static_cast<std::size_t>(b * kBlock + j)] = blk[1 + j] & 15;
          codes[static_cast<std::size_t>(b * kBlock + j + 16)] = blk[1 + j] >> 4;
        }
      }
      mx::pack_codes(codes.data(), cols, 4, m.elements.data() + static_cast<std::size_t>(r) * f.packed_row_bytes(cols));
    }
    return m;
  }
  std::vector<float> v(static_cast<std::size_t>(rows * cols));
  to_f32(t, data, rows * cols, v.data());
  return mx::quantize(f, v.data(), rows, cols);
}

bool same_bits(const mx::PackedMatrix& a, const mx::PackedMatrix& b, bool zero_sign_may_differ) {
  if (a.rows != b.rows || a.cols != b.cols || a.format.name != b.format.name || a.scales != b.scales) return false;
  if (a.elements == b.elements) return true;
  if (!zero_sign_may_differ || a.format.family != mx::Family::Fp) return false;
  const std::uint32_t neg_zero = 1u << (a.format.bits - 1);
  const std::size_t row_bytes = a.format.packed_row_bytes(a.cols);
  std::vector<std::uint8_t> ca(static_cast<std::size_t>(a.cols)), cb(ca.size());
  for (std::int64_t r = 0; r < a.rows; ++r) {
    mx::unpack_codes(a.elements.data() + static_cast<std::size_t>(r) * row_bytes, a.cols, a.format.bits, ca.data());
    mx::unpack_codes(b.elements.data() + static_cast<std::size_t>(r) * row_bytes, b.cols, b.format.bits, cb.data());
    for (std::size_t i = 0; i < ca.size(); ++i) {
      const std::uint32_t x = ca[i] == neg_zero ? 0u : ca[i], y = cb[i] == neg_zero ? 0u : cb[i];
      if (x != y) return false;
    }
  }
  return true;
}

}  // namespace mfqat::gguf
