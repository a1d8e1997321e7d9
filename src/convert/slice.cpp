#include "mfqat/convert/slice.h"

#include <cmath>
#include <cstring>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "slice_internal.h"

namespace mfqat::convert {

using mx::Family;
using mx::Format;

std::string slice_refusal(const Format& src, const Format& dst) {
  const std::string pair = src.name + " -> " + dst.name;
  if (src.family != dst.family) {
    return "cannot slice " + pair + ": different families (" + src.family_name() + " -> " + dst.family_name() +
           ")";
  }
  if (src.block_size != dst.block_size) {
    return "cannot slice " + pair + ": block size " + std::to_string(src.block_size) + " -> " +
           std::to_string(dst.block_size);
  }
  if (src.name == dst.name) return "";
  if (dst.bits >= src.bits) {
    return "cannot slice " + pair + ": " + std::to_string(dst.bits) + "-bit target is not lower than the " +
           std::to_string(src.bits) + "-bit source (slicing only goes down)";
  }
  return "";
}

namespace detail {

namespace {

SlicePlan make_plan(const Format& src, const Format& dst) {
  SlicePlan p;
  p.src = mx::detail::make_params(src);
  p.dst = mx::detail::make_params(dst);
  p.shift = src.emax - dst.emax;
  p.top_code = src.family == Family::Int ? (1u << (src.bits - 2))
                                         : static_cast<std::uint32_t>(src.emax + src.bias) << src.mbits;
  p.max_scale = 254 - src.emax;  // X + emax_src <= 127: the block's values stay below 2^128
  // Canonical block: X' = X + shift, so an element's scaled value is decode(src) * 2^-shift.
  const float f = std::ldexp(1.0f, -p.shift);
  for (std::uint32_t m = 0; m <= src.max_code && m < 128; ++m) {
    const float a = p.src.lut[m] * f;
    p.map[m] = static_cast<std::uint8_t>(mx::detail::quantize_magnitude(p.dst, a, mx::Rounding::NearestEven, 0).code);
  }
  return p;
}

}  // namespace

std::uint8_t requant_block(const SlicePlan& p, const std::uint8_t* codes, std::uint8_t scale, std::int64_t len,
                           std::uint8_t* out) {
  float v[mx::kMaxBlockSize];
  const float s = mx::e8m0_to_float(scale);
  for (std::int64_t i = 0; i < len; ++i) v[i] = p.src.lut[codes[i]] * s;  // = dequantize
  return mx::detail::quantize_block_codes(p.dst, v, len, out);            // = quantize
}

namespace {

// Maps one block to target codes (one per byte): table path when canonical, requant otherwise;
// returns the target scale byte.
std::uint8_t slice_block_codes(const SlicePlan& p, const std::uint8_t* c, std::uint8_t s, std::int64_t len,
                               std::uint8_t* out, RunCounts* cnt) {
  std::uint32_t maxmag = 0;
  for (std::int64_t i = 0; i < len; ++i) {
    const std::uint32_t m = magnitude(p.src, c[i]);
    maxmag = m > maxmag ? m : maxmag;
  }
  if (!canonical(p, maxmag, s)) {
    ++cnt->requant;
    return requant_block(p, c, s, len, out);
  }
  const std::uint32_t dst_sign = 1u << (p.dst.bits - 1), dst_mask = (1u << p.dst.bits) - 1;
  for (std::int64_t i = 0; i < len; ++i) {
    const std::uint32_t code = c[i];
    const std::uint32_t t = p.map[magnitude(p.src, code)];
    const bool neg = (code >> (p.src.bits - 1)) & 1;
    std::uint32_t o;
    if (p.dst.is_int) {
      o = neg ? (0u - t) & dst_mask : t;
    } else {
      o = neg ? t | dst_sign : t;
    }
    out[i] = static_cast<std::uint8_t>(o);
  }
  ++cnt->table;
  return static_cast<std::uint8_t>(s + p.shift);
}

}  // namespace

void slice_run_scalar(const SlicePlan& p, const std::uint8_t* codes, const std::uint8_t* scales, std::int64_t n,
                      std::uint8_t* out, std::uint8_t* out_scales, RunCounts* cnt) {
  const std::int64_t bs = p.src.block_size;
  std::uint8_t buf[mx::kMaxBlockSize];
  for (std::int64_t b0 = 0, blk = 0; b0 < n; b0 += bs, ++blk) {
    const std::int64_t len = n - b0 < bs ? n - b0 : bs;
    out_scales[blk] = slice_block_codes(p, codes + b0, scales[blk], len, buf, cnt);
    mx::detail::pack_codes_at(buf, len, p.dst.bits, out, b0 * p.dst.bits);
  }
}

#if !MFQAT_HAVE_AVX2
SliceRunFn slice_run_avx2() { return nullptr; }
#endif

}  // namespace detail

void slice(const Format& src, const std::uint8_t* elements, const std::uint8_t* scales, std::int64_t rows,
           std::int64_t cols, const Format& dst, std::uint8_t* out_elements, std::uint8_t* out_scales, SliceStats* stats,
           mx::Isa isa) {
  const std::string why = slice_refusal(src, dst);
  if (!why.empty()) throw std::invalid_argument(why);
  const detail::SlicePlan plan = detail::make_plan(src, dst);
  detail::SliceRunFn fn = detail::slice_run_scalar;
  if (isa == mx::Isa::Auto) isa = mx::default_isa();
  if (isa == mx::Isa::Avx2) {
    if (!mx::isa_supported(mx::Isa::Avx2)) throw std::runtime_error("instruction set avx2 is not available on this CPU");
    fn = detail::slice_run_avx2();
  }
  const std::int64_t bpr = src.blocks_per_row(cols);
  const std::size_t src_rb = src.packed_row_bytes(cols), dst_rb = dst.packed_row_bytes(cols);
  std::atomic<std::int64_t> table{0}, requant{0};
  mx::detail::for_each_run(src.block_size, src.bits, dst.bits, rows, cols,
                           [&](std::int64_t row, std::int64_t blk, std::int64_t col, std::int64_t n) {
    const std::uint8_t* src_bytes = elements + row * src_rb + col * src.bits / 8;
    std::vector<std::uint8_t> unpacked;
    if (src.bits != 8) {
      unpacked.resize(static_cast<std::size_t>(n));
      mx::unpack_codes(src_bytes, n, src.bits, unpacked.data());
    }
    detail::RunCounts cnt;
    fn(plan, src.bits == 8 ? src_bytes : unpacked.data(), scales + row * bpr + blk, n,
       out_elements + row * dst_rb + col * dst.bits / 8, out_scales + row * bpr + blk, &cnt);
    table += cnt.table;
    requant += cnt.requant;
  });
  if (stats) {
    stats->blocks += table + requant;
    stats->table_blocks += table;
    stats->requant_blocks += requant;
  }
}

mx::PackedMatrix slice(const mx::PackedMatrix& src, const Format& dst, SliceStats* stats, mx::Isa isa) {
  mx::PackedMatrix out;
  out.format = dst;
  out.rows = src.rows;
  out.cols = src.cols;
  out.elements.resize(static_cast<std::size_t>(src.rows) * dst.packed_row_bytes(src.cols));
  out.scales.resize(static_cast<std::size_t>(src.rows * dst.blocks_per_row(src.cols)));
  slice(src.format, src.elements.data(), src.scales.data(), src.rows, src.cols, dst, out.elements.data(),
        out.scales.data(), stats, isa);
  return out;
}

mx::PackedMatrix via_float(const mx::PackedMatrix& src, const Format& dst, mx::Rounding rounding) {
  const std::vector<float> v = mx::dequantize(src);
  mx::QuantOptions o;
  o.rounding = rounding;
  return mx::quantize(dst, v.data(), src.rows, src.cols, o);
}

}  // namespace mfqat::convert
