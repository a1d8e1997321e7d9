// Fused MX kernels: every path against the mx core's dequantize and against exact (double)
// products, for every registry format and odd shapes.
#include <gtest/gtest.h>

#include <cblas.h>

#include <bit>
#include <cmath>
#include <random>

#include "../src/runtime/kernels/gemv_internal.h"
#include "common.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat;

namespace {

std::vector<float> weights(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> w(static_cast<std::size_t>(n));
  for (auto& v : w) v = nd(rng) * 0.05f;
  for (std::size_t i = 0; i < w.size(); i += 37) w[i] *= 40;  // outliers
  if (n > 5) w[5] = 0;
  return w;
}

// Classical bound for any summation order of m terms: |fl(sum) - sum| <= m * u * sum|terms|
// (u = 2^-24, to first order). Each output sums cols products plus one add per block, and a
// scale multiply per block, so m = cols + 2 * blocks + 8 covers every path.
// NOLINTNEXTLINE(bugprone-integer-division): cols / 16 + 1 bounds the block count on purpose
double tolerance(std::int64_t cols, double abs_sum) { return static_cast<double>(cols + 2 * (cols / 16 + 1) + 8) * std::ldexp(1.0, -24) * abs_sum; }

// The exact (double) product of one dequantized row with x, and the sum of the |terms|.
struct ExactRow {
  double value = 0, abs_sum = 0;
};
ExactRow exact_row(const float* wd_row, const float* x, std::int64_t cols) {
  ExactRow e;
  for (std::int64_t c = 0; c < cols; ++c) {
    e.value += static_cast<double>(wd_row[c]) * x[c];
    e.abs_sum += std::fabs(static_cast<double>(wd_row[c]) * x[c]);
  }
  return e;
}

const char* width() {
  if (!runtime::avx512_active()) return "256-bit";
  if (!runtime::fixed_point_acts()) return "512-bit fp32";
  if (runtime::fx_digits() == 2) return runtime::vbmi_active() ? "512-bit fixed-point, 2 digits, vpermb" : "512-bit fixed-point, 2 digits, vpshufb";
  return runtime::vbmi_active() ? "512-bit fixed-point, 3 digits, vpermb" : "512-bit fixed-point, 3 digits, vpshufb";
}

// The ISAs to compare: scalar, and AVX2 where the CPU has it (else says so).
std::vector<mx::Isa> scalar_and_avx2() {
  if (!mx::isa_supported(mx::Isa::Avx2)) {
    std::printf("[  paths   ] no AVX2+FMA on this CPU: the scalar loops only\n");
    return {mx::Isa::Scalar};
  }
  return {mx::Isa::Scalar, mx::Isa::Avx2};
}

// Runs body once per kernel family this CPU has: where AVX-512 is here, the 512-bit loops with
// block fixed-point activations (the default there: 3 digits, the vpermb lookup where the CPU
// has VBMI), again with the vpshufb lookup, with 2 digits, then with fp32 activations; then the
// 256-bit loops. Prints the paths it ran, and why the 512-bit ones did not where they did not.
template <class F>
void each_width(F&& body) {
  std::string ran;
  auto once = [&] {
    body();
    ran += (ran.empty() ? "" : "; ") + std::string(width());
  };
  once();
  if (runtime::avx512_active()) {
    if (runtime::vbmi_active()) {
      runtime::set_vbmi(false);
      once();
      runtime::set_vbmi(true);
    }
    runtime::set_fx_digits(2);
    once();
    runtime::set_fx_digits(3);
    runtime::set_fixed_point_acts(false);
    once();
    runtime::set_fixed_point_acts(true);
    runtime::set_avx512(false);
    once();
    runtime::set_avx512(true);
  }
  const char* why = !runtime::avx512_active() ? " (no AVX-512 F/BW/VL/DQ/VNNI on this CPU: the 512-bit loops did not run)"
                    : !runtime::vbmi_active() ? " (no AVX512-VBMI on this CPU: the vpermb lookup did not run)"
                                              : "";
  std::printf("[  paths   ] %s%s\n", ran.c_str(), why);
}

// The block shift t of the fixed-point activations (FxActs), computed here from its definition:
// t = K + 1 - e when the block maximum rounded at that shift fits Xmax, else K - e.
int block_shift(const runtime::detail::FxParams& p, float amax) {
  const int e = std::ilogb(amax);
  return std::nearbyint(std::ldexp(static_cast<double>(amax), p.k + 1 - e)) <= p.xmax ? p.k + 1 - e : p.k - e;
}

// The extra error of the block fixed-point path where gemv takes it (else 0): each x in a whole
// block of 32 moves by at most 2^(-t-1), t the block's shift.
double fixed_point_error(const mx::Format& f, mx::Isa isa, std::int64_t n, const float* wd_row, const float* x, std::int64_t cols) {
  const auto d = runtime::detail::Decoder::make(f);
  if (isa != mx::Isa::Avx2 || n != 1 || !runtime::avx512_active() || !runtime::fixed_point_acts() || !runtime::detail::fx_supported(d)) {
    return 0;
  }
  const runtime::detail::FxParams p = runtime::detail::fx_params(d, runtime::fx_digits());
  double err = 0;
  for (std::int64_t b0 = 0; b0 + 32 <= cols; b0 += 32) {
    float amax = 0;
    double wabs = 0;
    for (std::int64_t c = b0; c < b0 + 32; ++c) {
      amax = std::max(amax, std::fabs(x[c]));
      wabs += std::fabs(wd_row[c]);
    }
    if (amax == 0) continue;
    if (std::ilogb(amax) < runtime::detail::kFxMinExp) return 0;  // the fp32 loop runs
    err += wabs * std::ldexp(1.0, -block_shift(p, amax) - 1);
  }
  return err;
}

}  // namespace

TEST(Gemv, RowDecodeEqualsTheMxCoreForEveryFormat) {
  const bool avx2 = runtime::detail::avx2_decode_row() != nullptr && mx::isa_supported(mx::Isa::Avx2);
  if (!avx2) std::printf("[  paths   ] no AVX2+FMA on this CPU: the scalar decode only\n");
  for (int bs : {32, 16}) {
    for (const mx::Format& f : all_test_formats(bs)) {
      for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{3, 100}, {2, 32}, {1, 257}, {4, 7}}) {
        const auto w = weights(rows * cols, 1);
        const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
        const std::vector<float> ref = mx::dequantize(q);
        const auto d = runtime::detail::Decoder::make(f);
        std::vector<float> a(static_cast<std::size_t>(cols)), b(a.size());
        for (std::int64_t r = 0; r < rows; ++r) {
          runtime::detail::decode_row_scalar(d, runtime::view(q), r, a.data());
          ASSERT_EQ(0, std::memcmp(a.data(), ref.data() + r * cols, a.size() * 4)) << f.name << " bs " << bs;
          if (avx2) {
            runtime::detail::avx2_decode_row()(d, runtime::view(q), r, b.data());
            // Equal values; the 4-bit shuffle path decodes the code -0 as +0 (an int8 table has
            // no -0), which changes no product or sum but the sign of an exact zero.
            for (std::int64_t c = 0; c < cols; ++c) {
              ASSERT_EQ(b[c], ref[r * cols + c]) << f.name << " bs " << bs << " cols " << cols << " c " << c;
              if (!d.nibble) {
                ASSERT_EQ(std::signbit(b[c]), std::signbit(ref[r * cols + c])) << f.name;
              }
            }
          }
        }
      }
    }
  }
}

TEST(Gemv, EveryPathWithinTheSummationBoundOfTheExactProduct) {
  const std::vector<mx::Isa> isas = scalar_and_avx2();
  each_width([&] {
  for (int bs : {32, 16}) {
    for (const mx::Format& f : all_test_formats(bs)) {
      // 8229 columns: the fixed-point loop's column panels (128 blocks) twice and a part
      for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{5, 33}, {9, 257}, {1, 1}, {3, 64}, {2, 1000}, {2, 1056}, {3, 8229}}) {
        for (std::int64_t n : {1, 2, 5}) {
          const auto w = weights(rows * cols, 2);
          const auto x = weights(n * cols, 3);
          const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
          const std::vector<float> wd = mx::dequantize(q);
          for (mx::Isa isa : isas) {
            std::vector<float> y(static_cast<std::size_t>(n * rows), NAN);
            if (n == 1) {
              runtime::gemv(runtime::view(q), x.data(), y.data(), isa);
            } else {
              runtime::gemm(runtime::view(q), x.data(), n, y.data(), isa);
            }
            for (std::int64_t j = 0; j < n; ++j) {
              for (std::int64_t r = 0; r < rows; ++r) {
                const ExactRow e = exact_row(wd.data() + r * cols, x.data() + j * cols, cols);
                const double fx = fixed_point_error(f, isa, n, wd.data() + r * cols, x.data(), cols);
                ASSERT_LE(std::fabs(y[j * rows + r] - e.value), fx * 1.001 + tolerance(cols, e.abs_sum + fx))
                    << f.name << " bs " << bs << " " << mx::isa_name(isa) << " " << width() << " rows " << rows << " cols " << cols << " n " << n;
              }
            }
          }
        }
      }
    }
  }
  });
}

TEST(GemvFixedPoint, DigitsRebuildTheRoundedActivationsExactlyForEvery4BitFormat) {
  if (!runtime::avx512_active() || !runtime::detail::avx512_fx_prepare()) GTEST_SKIP() << "no AVX-512 here";
  // blocks of every kind: zero, the smallest and largest maxima taken, wide range inside a
  // block (subnormals beside 2^-100), ties
  const std::int64_t cols = 32 * 19 + 5;
  std::vector<float> x = weights(cols, 21);
  for (int i = 32; i < 64; ++i) x[i] = 0;
  for (int i = 64; i < 96; ++i) x[i] = static_cast<float>(i - 80) * 1e-41f;
  x[70] = std::ldexp(1.0f, runtime::detail::kFxMinExp);
  for (int i = 96; i < 128; ++i) x[i] = static_cast<float>(i - 100) * 3e36f;
  x[130] = 1e30f;  // one huge value beside small ones
  x[160] = 1.0f;   // with 3 digits X of 0.5 (t = 21, K + 1 = 22 does not fit) ... rounds to even
  x[161] = std::ldexp(1.0f, -22);
  x[162] = std::ldexp(3.0f, -22);
  x[163] = std::ldexp(1.0f, -14);  // with 2 digits (t = 14): 0.5 and 1.5
  x[164] = std::ldexp(3.0f, -14);
  x[192] = std::nextafter(2.0f, 0.0f);  // rounds up to |X| = 2^(K+1) (t = K)
  x[193] = -std::nextafter(2.0f, 0.0f);
  for (int i = 224; i < 256; ++i) x[i] = (i % 2 ? 1.0f : -1.0f) * (1.0f + static_cast<float>(i - 224) / 32);  // max 1.97: t = K + 1 with 2 digits
  EXPECT_FALSE(runtime::detail::fx_supported(runtime::detail::Decoder::make(mx::find_format("mxint8"))));
  EXPECT_FALSE(runtime::detail::fx_supported(runtime::detail::Decoder::make(mx::find_format("mxfp4_e2m1").with_block_size(16))));
  for (const char* name : {"mxfp4_e2m1", "mxint4"}) {
    const auto d = runtime::detail::Decoder::make(mx::find_format(name));
    const auto p2 = runtime::detail::fx_params(d, 2), p3 = runtime::detail::fx_params(d, 3);
    EXPECT_EQ(p2.k, 13) << name;
    EXPECT_EQ(p2.xmax, 32639) << name;  // 127 + 256 * 127: the largest two int8 digits
    EXPECT_EQ(p3.k, 21) << name;
    // 32 * 12 * Xmax < 2^31 for MXFP4 (|nib| <= 12); MXINT4 (|nib| <= 8) keeps the digits' range
    EXPECT_EQ(p3.xmax, std::string(name) == "mxint4" ? 127 * (1 + 256 + 65536) : INT32_MAX / (32 * 12)) << name;
  }
  for (const int nd : {2, 3}) {
  runtime::set_fx_digits(nd);
  for (const mx::Format& f : all_test_formats(32)) {
    if (f.bits != 4) continue;
    const char* name = f.name.c_str();
    const auto d = runtime::detail::Decoder::make(f);
    ASSERT_TRUE(runtime::detail::fx_supported(d)) << name;
    const runtime::detail::FxParams p = runtime::detail::fx_params(d, nd);
    int m = 0;
    for (const std::int8_t v : d.nib) m = std::max(m, std::abs(static_cast<int>(v)));
    EXPECT_LE(std::int64_t{32} * m * p.xmax, std::int64_t{INT32_MAX}) << name;  // the block dot fits
    EXPECT_LE(std::int64_t{1} << (p.k + 1), p.xmax) << name;                    // 2^(K+1) fits, 2^(K+2) does not
    EXPECT_GT(std::int64_t{1} << (p.k + 2), p.xmax) << name;
    runtime::detail::FxActs a;
    ASSERT_TRUE(runtime::detail::avx512_fx_prepare()(d, x.data(), cols, a));
    ASSERT_EQ(a.nd, nd);
    const std::int64_t full = cols / 32;
    ASSERT_EQ(a.digits.size(), 32u * 32 * static_cast<std::size_t>(nd));
    int upgraded = 0;
    for (std::int64_t b = 0; b < 32; ++b) {  // 19 whole blocks and the zero padding to 32
      float amax = 0;
      for (std::int64_t i = 0; b < full && i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
      const int t = amax > 0 ? block_shift(p, amax) : 0;
      if (amax > 0) {
        upgraded += t == p.k + 1 - std::ilogb(amax);
        // the shift is the largest that keeps the block maximum within Xmax
        EXPECT_LE(std::nearbyint(std::ldexp(static_cast<double>(amax), t)), p.xmax) << name << " block " << b;
        EXPECT_GT(std::nearbyint(std::ldexp(static_cast<double>(amax), t + 1)), p.xmax) << name << " block " << b;
      }
      const std::int64_t pos = (b & ~15) + 4 * (b % 4) + (b & 15) / 4;
      EXPECT_EQ(a.scale[pos], amax > 0 ? std::ldexp(d.nib_mul, -t) : 0.0f) << name << " block " << b;
      std::int64_t sum = 0;
      for (int i = 0; i < 32; ++i) {
        // where element i's digits are (FxActs' layout: the top digit first)
        std::int64_t got = 0;
        for (int j = 0; j < nd; ++j) {
          const std::int64_t at = b / 4 * (128 * nd) + 128 * j + (i % 2) * 64 + b % 4 * 16 + i / 2;
          got = got * 256 + a.digits[static_cast<std::size_t>(at)];
        }
        const double want = b < full && amax > 0 ? std::nearbyint(std::ldexp(static_cast<double>(x[b * 32 + i]), t)) : 0;
        ASSERT_EQ(static_cast<double>(got), want) << name << " digits " << nd << " block " << b << " element " << i;
        ASSERT_LE(std::abs(got), p.xmax);
        sum += got;
      }
      EXPECT_EQ(a.corr[pos], static_cast<std::int32_t>(static_cast<std::uint32_t>(-runtime::detail::q8_offset(d) * sum))) << name;
    }
    EXPECT_GT(upgraded, 0) << name << " digits " << nd;  // both choices of t occur
    EXPECT_LT(upgraded, 19 - 1) << name << " digits " << nd;
  }
  }
  runtime::set_fx_digits(3);
  EXPECT_THROW(runtime::set_fx_digits(4), std::invalid_argument);
  EXPECT_EQ(runtime::fx_digits(), 3);
  // not taken (the fp32 loop runs): a NaN, an infinity, a block maximum below 2^-100
  const auto d4 = runtime::detail::Decoder::make(mx::find_format("mxint4"));
  runtime::detail::FxActs a;
  for (const float v : {NAN, INFINITY, std::ldexp(1.0f, runtime::detail::kFxMinExp) / 2}) {
    auto xo = x;
    if (!std::isfinite(v)) {
      xo[7] = v;
    } else {
      for (int i = 64; i < 96; ++i) xo[i] = v;
    }
    EXPECT_FALSE(runtime::detail::avx512_fx_prepare()(d4, xo.data(), cols, a)) << v;
  }
}

TEST(GemvFixedPoint, ExtremeCodesAndActivationsStayInInt32AndNonFiniteInputsPropagate) {
  // every weight at the largest magnitude of its format and every activation rounding up to
  // |X| = 2^(K+1) or at Xmax: the largest block dots the integer loops can meet
  for (const char* name : {"mxfp4_e2m1", "mxint4"}) {
    const mx::Format f = mx::find_format(name);
    const std::int64_t rows = 4, cols = 32 * 21;
    mx::PackedMatrix q = mx::quantize(f, weights(rows * cols, 3).data(), rows, cols);
    const int bytes_per_row = static_cast<int>(f.packed_row_bytes(cols));
    for (std::int64_t r = 0; r < rows; ++r) {
      // row 0: largest positive codes (+6, +7/4), row 1: most negative (-6, -8/4), rows 2-3: alternating
      const std::uint8_t pos = 0x77;
      const std::uint8_t neg = f.family == mx::Family::Int ? 0x88 : 0xFF;
      for (int c = 0; c < bytes_per_row; ++c) q.elements[r * bytes_per_row + c] = r == 0 ? pos : r == 1 ? neg : (c + r) % 2 ? pos : neg;
    }
    for (auto& s : q.scales) s = 127;
    const std::vector<float> wd = mx::dequantize(q);
    std::vector<float> x(static_cast<std::size_t>(cols), -std::nextafter(2.0f, 0.0f));
    for (std::int64_t c = 64; c < 128; ++c) x[c] = std::nextafter(2.0f, 0.0f);
    // blocks whose X reach Xmax at the shift K + 1: 2 digits; 3 digits MXFP4 (int32 bound), MXINT4
    for (std::int64_t c = 128; c < 160; ++c) x[c] = 32639.0f / 16384;
    for (std::int64_t c = 160; c < 192; ++c) x[c] = -5592405.0f / 4194304;
    for (std::int64_t c = 192; c < 224; ++c) x[c] = 8355711.0f / 4194304;
    each_width([&] {
      std::vector<float> y(rows);
      runtime::gemv(runtime::view(q), x.data(), y.data());
      for (std::int64_t r = 0; r < rows; ++r) {
        const ExactRow e = exact_row(wd.data() + r * cols, x.data(), cols);
        const double fx = fixed_point_error(f, mx::Isa::Avx2, 1, wd.data() + r * cols, x.data(), cols);
        ASSERT_LE(std::fabs(y[r] - e.value), fx * 1.001 + tolerance(cols, e.abs_sum + fx)) << name << " row " << r << " " << width();
      }
      // tiny activations (block maximum ~2^-117, below 2^kFxMinExp: the fp32 loop) stay accurate
      {
        std::vector<float> xt(static_cast<std::size_t>(cols), 0.0f);
        for (std::int64_t c = 32; c < 64; ++c) xt[c] = static_cast<float>(c - 40) * 1e-36f;
        runtime::gemv(runtime::view(q), xt.data(), y.data());
        for (std::int64_t r = 0; r < rows; ++r) {
          const ExactRow e = exact_row(wd.data() + r * cols, xt.data(), cols);
          ASSERT_LE(std::fabs(y[r] - e.value), tolerance(cols, e.abs_sum)) << name << " row " << r << " " << width();
        }
      }
      // a NaN or an infinity in x reaches y as the fp32 loops give it
      auto xn = x;
      xn[100] = NAN;
      runtime::gemv(runtime::view(q), xn.data(), y.data());
      for (float v : y) EXPECT_TRUE(std::isnan(v)) << name << " " << width();
      xn[100] = INFINITY;
      runtime::gemv(runtime::view(q), xn.data(), y.data());
      EXPECT_EQ(y[0], wd[100] > 0 ? INFINITY : -INFINITY) << name << " " << width();
    });
  }
}

TEST(GemvFixedPoint, RowGroupsAndPairsEqualTheRowsOneByOne) {
  if (!runtime::avx512_active() || !runtime::detail::avx512_fx_prepare()) GTEST_SKIP() << "no AVX-512 here";
  // Past 8192 columns the loop takes column panels over groups of 16 rows. 291 rows of 8229
  // (three panels, one partial block): groups cut at every 16 rows of a part, parts of 128 rows
  // over 1 and 4 threads; within a group rows go by pairs, an odd one alone. Each row must get
  // the bits it gets alone (a 1-row matrix: one group, no pair). And 291 x 1000 (no panels:
  // whole rows, one at a time).
  const int t = num_threads();
  for (const std::int64_t cols : {8229, 1000}) {
  const std::int64_t rows = 291;
  const auto w = weights(rows * cols, 31), x = weights(cols, 32);
  for (const char* name : {"mxfp4_e2m1", "mxint4"}) {
    const mx::Format f = mx::find_format(name);
    const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
    std::vector<float> alone(rows);
    for (std::int64_t r = 0; r < rows; ++r) {
      runtime::MxView v = runtime::view(q);
      v.elements += r * static_cast<std::int64_t>(f.packed_row_bytes(cols));
      v.scales += r * f.blocks_per_row(cols);
      v.rows = 1;
      runtime::gemv(v, x.data(), &alone[static_cast<std::size_t>(r)]);
    }
    for (int threads : {1, 4}) {
      set_num_threads(threads);
      std::vector<float> y(rows, NAN);
      runtime::gemv(runtime::view(q), x.data(), y.data());
      for (std::int64_t r = 0; r < rows; ++r) {
        ASSERT_EQ(std::bit_cast<std::uint32_t>(y[r]), std::bit_cast<std::uint32_t>(alone[r])) << name << " row " << r << " threads " << threads << " cols " << cols;
      }
    }
  }
  }
  set_num_threads(t);
}

TEST(GemvFixedPoint, VbmiLookupGivesTheBitsOfTheShuffleLookup) {
  if (!runtime::vbmi_active()) GTEST_SKIP() << "no AVX512-VBMI here";
  // The two lookups of the fixed-point loop (vpermb without masks, vpshufb after masking) must
  // produce the same table values, so the same bits: every 4-bit format with an int8 table, odd
  // shapes (a masked last group of 16 blocks, a partial block, column panels past 8192).
  for (const mx::Format& f : all_test_formats(32)) {
    if (!runtime::detail::fx_supported(runtime::detail::Decoder::make(f))) continue;
    for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{7, 33}, {5, 1000}, {19, 4128}, {3, 8229}}) {
      const auto w = weights(rows * cols, 41), x = weights(cols, 42);
      const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
      std::vector<float> with(static_cast<std::size_t>(rows), NAN), without(with);
      runtime::gemv(runtime::view(q), x.data(), with.data());
      runtime::set_vbmi(false);
      runtime::gemv(runtime::view(q), x.data(), without.data());
      runtime::set_vbmi(true);
      for (std::int64_t r = 0; r < rows; ++r) {
        ASSERT_EQ(std::bit_cast<std::uint32_t>(with[r]), std::bit_cast<std::uint32_t>(without[r])) << f.name << " " << rows << "x" << cols << " row " << r;
      }
    }
  }
}

TEST(Gemv, Fp8HalfConversionCoversTheFp8FormatsAndFallsBackWhenTheScaledInputWouldOverflow) {
  for (const mx::Format& f : all_test_formats(32)) {
    const auto d = runtime::detail::Decoder::make(f);
    // every 8-bit FP format with at least 2 mantissa bits (at most 5 exponent bits) has a half
    EXPECT_EQ(d.half8, f.bits == 8 && f.family != mx::Family::Int && f.mbits >= 2) << f.name;
  }
  EXPECT_TRUE(runtime::detail::Decoder::make(mx::find_format("mxfp8_e4m3")).half8);
  EXPECT_TRUE(runtime::detail::Decoder::make(mx::find_format("mxfp8_e5m2")).half8);
  // E4M3's half reads 2^-8 of the value, so the 512-bit loop multiplies x by 2^8: an x near
  // the fp32 limit would overflow there, and the 256-bit loop must take it.
  const mx::Format f = mx::find_format("mxfp8_e4m3");
  const std::int64_t rows = 3, cols = 96;
  const auto w = weights(rows * cols, 11);
  auto x = weights(cols, 12);
  x[40] = 2e36f;  // x 2^8 overflows; its weight is small beside its block's outlier (w[37])
  const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
  const std::vector<float> wd = mx::dequantize(q);
  runtime::detail::AlignedVec<float> xp;
  EXPECT_EQ(runtime::detail::prepare_x512(runtime::detail::Decoder::make(f), x.data(), cols, xp), nullptr);
  std::vector<float> y(rows);
  runtime::gemv(runtime::view(q), x.data(), y.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    const ExactRow e = exact_row(wd.data() + r * cols, x.data(), cols);
    ASSERT_TRUE(std::isfinite(y[r]));
    ASSERT_LE(std::fabs(y[r] - e.value), tolerance(cols, e.abs_sum));
  }
}

TEST(Gemv, ThreadCountDoesNotChangeTheResult) {
  // 301 rows of 512: three parts of 128 rows, so the pool's threads take some (each row is
  // computed the same way whoever takes it: equal bits)
  const std::int64_t rows = 301, cols = 512;
  const auto w = weights(rows * cols, 4), x = weights(cols * 3, 5);
  const int t = num_threads();
  each_width([&] {
    for (const char* name : {"mxfp4", "mxint8", "mxfp8_e4m3", "mxint4", "mxfp6_e2m3"}) {
      const mx::Format f = mx::find_format(name);
      const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
      std::vector<float> a(rows * 3), b(rows * 3), a1(rows), b1(rows), aq(rows), bq(rows);
      const bool q8 = runtime::q8_supported(f);
      set_num_threads(1);
      runtime::gemm(runtime::view(q), x.data(), 3, a.data());
      runtime::gemv(runtime::view(q), x.data(), a1.data());
      if (q8) runtime::gemv_q8(runtime::view(q), x.data(), aq.data());
      set_num_threads(4);
      runtime::gemm(runtime::view(q), x.data(), 3, b.data());
      runtime::gemv(runtime::view(q), x.data(), b1.data());
      if (q8) runtime::gemv_q8(runtime::view(q), x.data(), bq.data());
      EXPECT_EQ(a, b) << name << " " << width();
      EXPECT_EQ(a1, b1) << name << " " << width();
      EXPECT_EQ(aq, bq) << name << " " << width();
    }
  });
  set_num_threads(t);
}

TEST(Gemv, SharedActivationsGiveEachMatrixTheBitsOfItsOwnGemv) {
  // Q/K/V-like matrices (different row counts, odd ones, one empty) in one gemv_shared call:
  // the parts of the one parallel region cross from one matrix to the next; every path (fixed
  // point with 2 and 3 digits, 512-bit fp32, 256-bit, scalar) over 1 and 4 threads.
  const int t = num_threads();
  for (const std::int64_t cols : {std::int64_t{8229}, std::int64_t{1000}, std::int64_t{33}}) {
    const std::int64_t rows[3] = {301, 0, 77};
    each_width([&] {
      for (const mx::Format& f : all_test_formats(32)) {
        std::vector<mx::PackedMatrix> qs;
        qs.reserve(3);
        for (int i = 0; i < 3; ++i) qs.push_back(mx::quantize(f, weights(rows[i] * cols, 50 + i).data(), rows[i], cols));
        const auto x = weights(cols, 60);
        const runtime::MxView ws[3] = {runtime::view(qs[0]), runtime::view(qs[1]), runtime::view(qs[2])};
        for (mx::Isa isa : {mx::Isa::Auto, mx::Isa::Scalar}) {
          if (isa == mx::Isa::Scalar && cols > 1000) continue;  // (slow; its parts cross matrices at 1000 too)
          std::vector<float> own[3], got[3];
          for (int i = 0; i < 3; ++i) {
            own[i].assign(static_cast<std::size_t>(rows[i]), NAN);
            runtime::gemv(ws[i], x.data(), own[i].data(), isa);
          }
          for (int threads : {1, 4}) {
            set_num_threads(threads);
            for (auto& g : got) g.assign(own[&g - got].size(), NAN);
            float* ys[3] = {got[0].data(), got[1].data(), got[2].data()};
            runtime::gemv_shared(ws, x.data(), ys, isa);
            for (int i = 0; i < 3; ++i) {
              for (std::int64_t r = 0; r < rows[i]; ++r) {
                ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i][r]), std::bit_cast<std::uint32_t>(own[i][r]))
                    << f.name << " " << width() << " " << mx::isa_name(isa) << " cols " << cols << " matrix " << i << " row " << r << " threads " << threads;
              }
            }
          }
          set_num_threads(t);
        }
      }
    });
  }
  // one format and one width, as many outputs as matrices
  const auto w = weights(64 * 4, 70), x = weights(64, 71);
  const mx::PackedMatrix a = mx::quantize(mx::find_format("mxint8"), w.data(), 4, 64), b = mx::quantize(mx::find_format("mxint4"), w.data(), 4, 64),
                         c = mx::quantize(mx::find_format("mxint8"), w.data(), 8, 32);
  std::vector<float> y0(8), y1(8);
  float* ys[2] = {y0.data(), y1.data()};
  const runtime::MxView ab[2] = {runtime::view(a), runtime::view(b)}, ac[2] = {runtime::view(a), runtime::view(c)};
  EXPECT_THROW(runtime::gemv_shared(ab, x.data(), ys), std::invalid_argument);
  EXPECT_THROW(runtime::gemv_shared(ac, x.data(), ys), std::invalid_argument);
  EXPECT_THROW(runtime::gemv_shared(std::span<const runtime::MxView>(ab, 1), x.data(), ys), std::invalid_argument);
}

TEST(Gemv, Fp32BaselinesAgreeWithTheDoubleProduct) {
  // 17 rows: one part; 3001 rows of 45: split over the pool (OpenBLAS single-threaded per part)
  for (const std::int64_t rows : {17, 3001}) {
    const std::int64_t cols = 45, n = 3;
    const auto w = weights(rows * cols, 6), x = weights(n * cols, 7);
    std::vector<float> y1(rows), yn(n * rows);
    const int blas_threads = openblas_get_num_threads();
    runtime::gemv_f32(w.data(), rows, cols, x.data(), y1.data());
    runtime::gemm_f32(w.data(), rows, cols, x.data(), n, yn.data());
    EXPECT_EQ(openblas_get_num_threads(), blas_threads);  // the caller's setting is back
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t r = 0; r < rows; ++r) {
        double e = 0, a = 0;
        for (std::int64_t c = 0; c < cols; ++c) {
          e += static_cast<double>(w[r * cols + c]) * x[j * cols + c];
          a += std::fabs(static_cast<double>(w[r * cols + c]) * x[j * cols + c]);
        }
        EXPECT_LE(std::fabs(yn[j * rows + r] - e), tolerance(cols, a));
        if (j == 0) {
          EXPECT_LE(std::fabs(y1[r] - e), tolerance(cols, a));
        }
      }
    }
  }
}

TEST(GemvQ8, WithinTheActivationRoundingBoundAndAvx2AgreesWithTheReference) {
  const std::vector<mx::Isa> isas = scalar_and_avx2();
  each_width([&] {
  for (int bs : {32, 16}) {
    for (const mx::Format& f : all_test_formats(bs)) {
      if (!runtime::q8_supported(f)) {
        EXPECT_TRUE(f.bits != 4 && f.name != "mxint8") << f.name;  // every 4-bit format has an int8 table
        continue;
      }
      // 8-block groups (the fast loops), leftover whole blocks and a partial block, in mixes
      // 512-bit: groups of 16 and of 4 blocks, single blocks and a partial one, in mixes
      for (auto [rows, cols] : {std::pair<std::int64_t, std::int64_t>{5, 33}, {9, 257}, {1, 1}, {3, 64}, {2, 1000}, {3, 1056}, {2, 512}, {2, 5472}}) {
        const auto w = weights(rows * cols, 8), x = weights(cols, 9);
        const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
        const std::vector<float> wd = mx::dequantize(q);
        std::vector<float> ref(static_cast<std::size_t>(rows));
        for (mx::Isa isa : isas) {
          std::vector<float> y(static_cast<std::size_t>(rows), NAN);
          runtime::gemv_q8(runtime::view(q), x.data(), y.data(), isa);
          if (isa == mx::Isa::Scalar) ref = y;
          for (std::int64_t r = 0; r < rows; ++r) {
            double exact = 0, abs_sum = 0, act_err = 0;
            for (std::int64_t c = 0; c < cols; ++c) {
              exact += static_cast<double>(wd[r * cols + c]) * x[c];
              abs_sum += std::fabs(static_cast<double>(wd[r * cols + c]) * x[c]);
            }
            // activation rounding: each x moves by at most half its block's step amax/127
            for (std::int64_t b0 = 0; b0 < cols; b0 += bs) {
              double amax = 0, wabs = 0;
              for (std::int64_t c = b0; c < std::min<std::int64_t>(cols, b0 + bs); ++c) {
                amax = std::max(amax, static_cast<double>(std::fabs(x[c])));
                wabs += std::fabs(wd[r * cols + c]);
              }
              act_err += wabs * amax / 127.0 * 0.5;
            }
            const double tol = act_err * 1.001 + 2 * tolerance(cols, abs_sum + act_err);
            ASSERT_LE(std::fabs(y[r] - exact), tol) << f.name << " bs " << bs << " " << mx::isa_name(isa) << " " << width() << " cols " << cols;
            // the paths differ only in fp32 summation order
            ASSERT_LE(std::fabs(y[r] - ref[r]), 2 * tolerance(cols, abs_sum + act_err)) << f.name << " " << mx::isa_name(isa);
          }
        }
      }
    }
  }
  });
  const mx::Format e4m3 = mx::find_format("mxfp8_e4m3");
  EXPECT_FALSE(runtime::q8_supported(e4m3));
  std::vector<float> w(64, 0.5f), x(32, 1.0f), y(2);
  const mx::PackedMatrix q = mx::quantize(e4m3, w.data(), 2, 32);
  EXPECT_THROW(runtime::gemv_q8(runtime::view(q), x.data(), y.data()), std::invalid_argument);
}
