// The int8 MX GEMM (n >= 2): which formats have integer codes, the activation quantizer, the
// scalar reference against exact products, and the AVX-512 VNNI kernel bit for bit against the
// reference on ragged shapes, every n from 2 to 65, 1, 3 and 8 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "../src/runtime/kernels/gemm_internal.h"
#include "common.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat;
namespace rd = mfqat::runtime::detail;

namespace {

std::vector<float> randn(std::int64_t n, std::uint32_t seed, float sd = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = nd(rng) * sd;
  for (std::size_t i = 0; i < v.size(); i += 37) v[i] *= 40;  // outliers: blocks with large ranges
  return v;
}

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

runtime::KernelOptions opts(mx::Isa isa, bool avx512 = true, bool vbmi = true) {
  runtime::KernelOptions k;
  k.isa = isa;
  k.avx512 = avx512;
  k.vbmi = vbmi;
  return k;
}

bool have_kernel() { return rd::avx512_gemm_q8() && rd::cpu_avx512(); }

void say_paths() {
  static bool said = false;
  if (said) return;
  said = true;
  std::printf("[  paths   ] %s\n", have_kernel()                             ? "scalar reference, AVX-512 VNNI and AVX2 kernels"
                                    : mx::isa_supported(mx::Isa::Avx2) ? "scalar reference and AVX2 kernel (no AVX-512 F/BW/VL/DQ/VNNI on this CPU: the VNNI kernel did not run)"
                                                                       : "scalar reference only (no AVX2 on this CPU: no SIMD kernel ran)");
}

}  // namespace

TEST(GemmQ8, IntegerCodesExistExactlyForTheFormatsWhoseValuesAreSmallIntegers) {
  for (const mx::Format& f : all_test_formats(32)) {
    const rd::IntCodes ic = rd::IntCodes::make(f);
    float lut[256];
    mx::decode_table(f, lut);
    if (ic.ok) {
      for (std::uint32_t c = 0; c < f.code_count(); ++c) {
        ASSERT_EQ(ic.ints[c] * ic.mul, lut[c]) << f.name << " code " << c;
        ASSERT_GE(ic.ints[c] + ic.off, 0) << f.name;
        ASSERT_LE(ic.ints[c] + ic.off, 255) << f.name;
      }
    }
    EXPECT_EQ(ic.ok, runtime::gemm_q8_supported(f)) << f.name;
  }
  const rd::IntCodes int8 = rd::IntCodes::make(mx::find_format("mxint8"));
  EXPECT_TRUE(int8.ok);
  EXPECT_EQ(int8.kind, rd::IntCodes::Kind::Byte);
  EXPECT_EQ(int8.off, 128);
  EXPECT_EQ(int8.mul, 1.0f / 64);
  const rd::IntCodes fp4 = rd::IntCodes::make(mx::find_format("mxfp4"));
  EXPECT_TRUE(fp4.ok);
  EXPECT_EQ(fp4.kind, rd::IntCodes::Kind::Nibble);
  EXPECT_EQ(fp4.off, 12);  // the doubled E2M1 grid, -12..12
  EXPECT_EQ(fp4.mul, 0.5f);
  for (const char* name : {"mxint2", "mxint3", "mxint4", "mxint5", "mxint6", "mxint7", "mxfp6_e2m3"}) {
    EXPECT_TRUE(runtime::gemm_q8_supported(mx::find_format(name))) << name;
  }
  for (const char* name : {"mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2"}) EXPECT_FALSE(runtime::gemm_q8_supported(mx::find_format(name))) << name;
  EXPECT_FALSE(runtime::gemm_q8_supported(mx::find_format("mxint8").with_block_size(16)));
  // the plain-AVX2 kernel takes every supported format but MXINT8 (vpmaddubsw would saturate)
  EXPECT_FALSE(int8.fits_maddubs);
  EXPECT_TRUE(fp4.fits_maddubs);
  for (const char* name : {"mxint2", "mxint3", "mxint4", "mxint5", "mxint6", "mxint7", "mxfp6_e2m3"}) {
    EXPECT_TRUE(rd::IntCodes::make(mx::find_format(name)).fits_maddubs) << name;
  }
}

TEST(GemmQ8, QuantizerRoundsHalfToEvenPadsWithZerosAndMarksNonFiniteBlocks) {
  // block 0: max 127 so that s = 1 and x / s is x: ties 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2
  std::vector<float> x(2 * 40, 0.0f);
  const float row0[] = {127, 0.5f, 1.5f, 2.5f, -2.5f, -0.0f, 3.49f, -127};
  std::copy(std::begin(row0), std::end(row0), x.begin());
  x[33] = 1e-40f;  // block 1 (columns 32..39): a subnormal maximum (1 / s would overflow)
  x[35] = -5e-41f;
  x[40 + 3] = NAN;   // row 1, block 0
  x[40 + 39] = 2.0f;  // row 1, block 1 (finite)
  rd::Q8Rows a;
  rd::quantize_rows(x.data(), 2, 40, 12, a);
  ASSERT_EQ(a.nb, 2);
  const int want[] = {127, 0, 2, 2, -2, 0, 3, -127};
  int sum = 0;
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(a.q[static_cast<std::size_t>(i)], want[i]) << i;
    sum += want[i];
  }
  EXPECT_EQ(a.scale[0], 1.0f);
  EXPECT_EQ(a.corr[0], -12 * sum);
  EXPECT_EQ(a.q[32 + 1], 127);
  // -5e-41 / (1e-40 / 127) is about -63.5 (subnormals are not exact): the rounded float ratio
  EXPECT_EQ(a.q[32 + 3], static_cast<int>(std::nearbyint(-5e-41f / a.scale[1])));
  EXPECT_NEAR(a.q[32 + 3], -63.5, 1.0);
  EXPECT_TRUE(std::isfinite(a.scale[1]) && a.scale[1] > 0);
  for (int i = 8; i < 32; ++i) EXPECT_EQ(a.q[32 + i], 0) << "padding";  // columns 40..63 of row 0 do not exist
  EXPECT_TRUE(std::isnan(a.scale[2]));
  for (int i = 0; i < 32; ++i) EXPECT_EQ(a.q[64 + static_cast<std::size_t>(i)], 0);
  EXPECT_EQ(a.scale[3], 2.0f / 127);
  x[40 + 3] = INFINITY;
  rd::quantize_rows(x.data(), 2, 40, 12, a);
  EXPECT_TRUE(std::isnan(a.scale[2]));
}

TEST(GemmQ8, ReferenceIsWithinTheActivationRoundingOfTheExactProduct) {
  for (const mx::Format& f : all_test_formats(32)) {
    if (!runtime::gemm_q8_supported(f)) continue;
    const std::int64_t rows = 7, cols = 100, n = 3;
    const auto w = randn(rows * cols, 1), x = randn(n * cols, 2, 1.0f);
    const mx::PackedMatrix q = mx::quantize(f, w.data(), rows, cols);
    const std::vector<float> wd = mx::dequantize(q);
    std::vector<float> y(static_cast<std::size_t>(n * rows), NAN);
    runtime::gemm_q8(runtime::view(q), x.data(), n, y.data(), opts(mx::Isa::Scalar));
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t r = 0; r < rows; ++r) {
        double exact = 0, bound = 0, abs_sum = 0;
        for (std::int64_t b0 = 0; b0 < cols; b0 += 32) {
          double amax = 0, wabs = 0;
          for (std::int64_t c = b0; c < std::min<std::int64_t>(cols, b0 + 32); ++c) {
            exact += static_cast<double>(wd[r * cols + c]) * x[j * cols + c];
            abs_sum += std::fabs(static_cast<double>(wd[r * cols + c]) * x[j * cols + c]);
            amax = std::max(amax, std::fabs(static_cast<double>(x[j * cols + c])));
            wabs += std::fabs(wd[r * cols + c]);
          }
          bound += wabs * amax / 127.0 * 0.5;  // each x moves by at most half a step
        }
        // plus one fp32 rounding per block (the scale product and the fma) on the partial sums
        const double tol = bound * 1.001 + 8 * std::ldexp(1.0, -24) * (abs_sum + bound);
        ASSERT_LE(std::fabs(y[j * rows + r] - exact), tol) << f.name << " j " << j << " r " << r;
      }
    }
  }
}

TEST(GemmQ8, SimdKernelsGiveTheReferenceBitsOnRaggedShapesEveryNAndThreadCount) {
  say_paths();
  // the AVX-512 VNNI kernel where the CPU has it, and the plain AVX2 (vpmaddubsw) one
  struct Path {
    bool w512, vbmi;
    const char* name;
  };
  std::vector<Path> widths;
  if (have_kernel() && rd::avx512_gemm_q8_vbmi()) widths.push_back({true, true, " avx512+vbmi"});
  if (have_kernel()) widths.push_back({true, false, " avx512"});
  if (mx::isa_supported(mx::Isa::Avx2)) widths.push_back({false, false, " avx2"});
  if (!rd::avx512_gemm_q8_vbmi()) std::printf("[ skipped  ] the AVX512-VBMI pack of 2/3/5/6/7-bit codes: this CPU lacks VBMI\n");
  if (widths.empty()) GTEST_SKIP() << "no AVX2 on this CPU: no SIMD kernel ran (the reference is tested above)";
  if (!have_kernel()) std::printf("[  paths   ] no AVX-512 VNNI here: the AVX2 kernel only\n");
  const int saved = num_threads();
  const std::vector<GemmCase> cases = ragged_gemm_cases();
  for (const char* name : {"mxint8", "mxfp4", "mxint4", "mxint6", "mxfp6_e2m3", "mxint3", "mxint2", "mxint5", "mxint7"}) {
    const mx::Format& f = mx::find_format(name);
    for (const GemmCase& c : cases) {
      auto w = randn(c.rows * c.cols, 3);
      const mx::PackedMatrix q = mx::quantize(f, w.data(), c.rows, c.cols);
      const std::int64_t nmax = *std::max_element(c.ns.begin(), c.ns.end());
      const auto x = randn(nmax * c.cols, 4, 1.0f);
      for (std::int64_t n : c.ns) {
        std::vector<float> ref(static_cast<std::size_t>(n * c.rows), NAN);
        runtime::gemm_q8(runtime::view(q), x.data(), n, ref.data(), opts(mx::Isa::Scalar));
        for (const Path& pth : widths) {
          for (int threads : {1, 3, 8}) {
            set_num_threads(threads);
            std::vector<float> y(ref.size(), NAN);
            runtime::gemm_q8(runtime::view(q), x.data(), n, y.data(), opts(mx::Isa::Avx2, pth.w512, pth.vbmi));
            for (std::size_t i = 0; i < y.size(); ++i) {
              ASSERT_TRUE(same_bits(y[i], ref[i])) << name << pth.name << " rows " << c.rows << " cols " << c.cols << " n " << n
                                                   << " threads " << threads << " at " << i << ": " << y[i] << " vs " << ref[i];
            }
          }
        }
      }
    }
  }
  set_num_threads(saved);
}

TEST(GemmQ8, RepackedPanelsGiveTheReferenceBitsOnRaggedShapesEveryNAndThreadCount) {
  say_paths();
  if (!have_kernel()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU: repack_q8 makes no panels here (tested: it returns nullptr)";
  const int saved = num_threads();
  std::vector<GemmCase> cases = ragged_gemm_cases();
  cases.push_back({48, 600, {1, 2, 8}});  // n = 1 too: the panels serve a single row
  for (const char* name : {"mxint8", "mxfp4", "mxint4", "mxint6", "mxfp6_e2m3", "mxint3", "mxint2", "mxint5", "mxint7"}) {
    const mx::Format& f = mx::find_format(name);
    for (const GemmCase& c : cases) {
      auto w = randn(c.rows * c.cols, 13);
      const mx::PackedMatrix q = mx::quantize(f, w.data(), c.rows, c.cols);
      const std::int64_t nmax = *std::max_element(c.ns.begin(), c.ns.end());
      const auto x = randn(nmax * c.cols, 14, 1.0f);
      for (bool vbmi : {true, false}) {
        const auto pk = runtime::repack_q8(runtime::view(q), opts(mx::Isa::Avx2, true, vbmi));
        ASSERT_NE(pk, nullptr) << name;
        // per 16 rows and block of 32 columns: the codes (one byte each, 4-bit ones half) and 16 fp32 scales
        const std::int64_t np = (c.rows + 15) / 16, nb = (c.cols + 31) / 32;
        EXPECT_EQ(runtime::panel_bytes(*pk), static_cast<std::uint64_t>(np * nb * ((f.bits == 4 ? 256 : 512) + 64))) << name;
        for (std::int64_t n : c.ns) {
          std::vector<float> ref(static_cast<std::size_t>(n * c.rows), NAN);
          runtime::gemm_q8(runtime::view(q), x.data(), n, ref.data(), opts(mx::Isa::Scalar));
          for (int threads : {1, 3, 8, 16}) {
            set_num_threads(threads);
            std::vector<float> y(ref.size(), NAN);
            runtime::gemm_q8(runtime::view(q), pk.get(), x.data(), n, y.data(), opts(mx::Isa::Avx2, true, vbmi));
            for (std::size_t i = 0; i < y.size(); ++i) {
              ASSERT_TRUE(same_bits(y[i], ref[i])) << name << (vbmi ? " vbmi" : "") << " rows " << c.rows << " cols " << c.cols << " n " << n
                                                   << " threads " << threads << " at " << i << ": " << y[i] << " vs " << ref[i];
            }
          }
        }
      }
    }
  }
  set_num_threads(saved);
  // shared matrices (Q, K, V: widths equal, rows not multiples of 16) with their panels, one
  // without (every matrix packed per call), a NaN row
  const mx::Format& f = mx::find_format("mxint8");
  const std::int64_t cols = 96, n = 5;
  const auto w1 = randn(24 * cols, 15), w2 = randn(7 * cols, 16), w3 = randn(40 * cols, 17);
  auto x = randn(n * cols, 18, 1.0f);
  x[3 * cols + 50] = NAN;
  const mx::PackedMatrix q1 = mx::quantize(f, w1.data(), 24, cols), q2 = mx::quantize(f, w2.data(), 7, cols), q3 = mx::quantize(f, w3.data(), 40, cols);
  const runtime::MxView ws[] = {runtime::view(q1), runtime::view(q2), runtime::view(q3)};
  const auto k = opts(mx::Isa::Avx2);
  const auto p1 = runtime::repack_q8(ws[0], k), p2 = runtime::repack_q8(ws[1], k), p3 = runtime::repack_q8(ws[2], k);
  for (int threads : {1, 3, 8}) {
    set_num_threads(threads);
    for (bool all : {true, false}) {
      std::vector<float> a[3], b[3];
      float* ys[3];
      for (int i = 0; i < 3; ++i) {
        a[i].assign(static_cast<std::size_t>(n * ws[i].rows), 0.0f);
        b[i].assign(a[i].size(), 1.0f);
        runtime::gemm_q8(ws[i], x.data(), n, a[i].data(), opts(mx::Isa::Scalar));
        ys[i] = b[i].data();
      }
      const runtime::Q8Panels* ps[] = {p1.get(), all ? p2.get() : nullptr, p3.get()};
      runtime::gemm_q8_shared(ws, ps, x.data(), n, ys, k);
      for (int i = 0; i < 3; ++i) {
        for (std::size_t e = 0; e < a[i].size(); ++e) {
          ASSERT_TRUE(same_bits(a[i][e], b[i][e]) || (std::isnan(a[i][e]) && std::isnan(b[i][e]))) << "matrix " << i << " at " << e;
          ASSERT_EQ(std::isnan(b[i][e]), static_cast<std::int64_t>(e) / ws[i].rows == 3) << "matrix " << i << " at " << e;
        }
      }
    }
  }
  set_num_threads(saved);
  // panels of another matrix are refused; none where another kernel runs
  std::vector<float> y(static_cast<std::size_t>(n * 40));
  EXPECT_THROW(runtime::gemm_q8(ws[2], p1.get(), x.data(), n, y.data(), k), std::invalid_argument);
  const mx::PackedMatrix q4 = mx::quantize(mx::find_format("mxfp4"), w3.data(), 40, cols);
  EXPECT_THROW(runtime::gemm_q8(runtime::view(q4), p3.get(), x.data(), n, y.data(), k), std::invalid_argument);
  EXPECT_EQ(runtime::repack_q8(ws[0], opts(mx::Isa::Scalar)), nullptr);
  EXPECT_EQ(runtime::repack_q8(ws[0], opts(mx::Isa::Avx2, false)), nullptr);
  auto no_gemm = k;
  no_gemm.int8_gemm = false;
  EXPECT_EQ(runtime::repack_q8(ws[0], no_gemm), nullptr);
  const auto we = randn(2 * 32, 10);
  const mx::PackedMatrix e4m3 = mx::quantize(mx::find_format("mxfp8_e4m3"), we.data(), 2, 32);
  EXPECT_EQ(runtime::repack_q8(runtime::view(e4m3), k), nullptr);
}

TEST(GemmQ8, NonFiniteActivationRowGivesNaNThereAndLeavesTheOtherRows) {
  say_paths();
  for (int path = 0; path < 3; ++path) {  // scalar, AVX-512 VNNI (where here), plain AVX2
    const mx::Isa isa = path == 0 ? mx::Isa::Scalar : mx::Isa::Avx2;
    if (isa == mx::Isa::Avx2 && !mx::isa_supported(isa)) continue;
    for (const char* name : {"mxint8", "mxfp4", "mxint6"}) {
      const std::int64_t rows = 20, cols = 70, n = 5;
      const auto w = randn(rows * cols, 5);
      auto x = randn(n * cols, 6, 1.0f);
      const mx::PackedMatrix q = mx::quantize(mx::find_format(name), w.data(), rows, cols);
      std::vector<float> clean(static_cast<std::size_t>(n * rows)), y(clean.size());
      runtime::gemm_q8(runtime::view(q), x.data(), n, clean.data(), opts(isa, path == 1));
      x[2 * cols + 40] = NAN;
      x[4 * cols + 69] = -INFINITY;
      runtime::gemm_q8(runtime::view(q), x.data(), n, y.data(), opts(isa, path == 1));
      for (std::int64_t j = 0; j < n; ++j) {
        for (std::int64_t r = 0; r < rows; ++r) {
          const float v = y[j * rows + r];
          if (j == 2 || j == 4) {
            ASSERT_TRUE(std::isnan(v)) << name << " " << mx::isa_name(isa) << " j " << j;
          } else {
            ASSERT_TRUE(same_bits(v, clean[j * rows + r])) << name << " " << mx::isa_name(isa) << " j " << j;
          }
        }
      }
    }
  }
}

TEST(GemmQ8, SharedMatricesGiveEachItsOwnBitsAndBadInputIsRefused) {
  const mx::Format& f = mx::find_format("mxfp4");
  const std::int64_t cols = 96, n = 7;
  const auto w1 = randn(24 * cols, 7), w2 = randn(40 * cols, 8), x = randn(n * cols, 9, 1.0f);
  const mx::PackedMatrix q1 = mx::quantize(f, w1.data(), 24, cols), q2 = mx::quantize(f, w2.data(), 40, cols);
  for (mx::Isa isa : {mx::Isa::Scalar, mx::Isa::Avx2}) {
    if (isa == mx::Isa::Avx2 && !mx::isa_supported(isa)) continue;
    std::vector<float> a1(static_cast<std::size_t>(n * 24)), a2(static_cast<std::size_t>(n * 40)), b1(a1.size()), b2(a2.size());
    runtime::gemm_q8(runtime::view(q1), x.data(), n, a1.data(), opts(isa));
    runtime::gemm_q8(runtime::view(q2), x.data(), n, a2.data(), opts(isa));
    const runtime::MxView ws[] = {runtime::view(q1), runtime::view(q2)};
    float* ys[] = {b1.data(), b2.data()};
    runtime::gemm_q8_shared(ws, x.data(), n, ys, opts(isa));
    EXPECT_EQ(std::memcmp(a1.data(), b1.data(), a1.size() * 4), 0);
    EXPECT_EQ(std::memcmp(a2.data(), b2.data(), a2.size() * 4), 0);
  }
  // n = 0 writes nothing
  std::vector<float> y(4, 42.0f);
  runtime::gemm_q8(runtime::view(q1), x.data(), 0, y.data(), opts(mx::Isa::Avx2));
  EXPECT_EQ(y[0], 42.0f);
  // a format without integer codes, widths that differ
  const auto we = randn(2 * 32, 10);
  const mx::PackedMatrix e4m3 = mx::quantize(mx::find_format("mxfp8_e4m3"), we.data(), 2, 32);
  EXPECT_THROW(runtime::gemm_q8(runtime::view(e4m3), x.data(), 2, y.data(), opts(mx::Isa::Scalar)), std::invalid_argument);
  const mx::PackedMatrix narrow = mx::quantize(f, we.data(), 2, 32);
  const runtime::MxView mixed[] = {runtime::view(q1), runtime::view(narrow)};
  float* ys2[] = {y.data(), y.data()};
  EXPECT_THROW(runtime::gemm_q8_shared(mixed, x.data(), 2, ys2, opts(mx::Isa::Scalar)), std::invalid_argument);
  // the active switch
  runtime::KernelOptions k = opts(mx::Isa::Avx2);
  EXPECT_EQ(runtime::gemm_q8_active(f, k), have_kernel() || mx::isa_supported(mx::Isa::Avx2));
  EXPECT_EQ(runtime::gemm_q8_active(mx::find_format("mxint8"), opts(mx::Isa::Avx2, false)), false);
  EXPECT_EQ(runtime::gemm_q8_active(mx::find_format("mxint8"), opts(mx::Isa::Avx2, true)), have_kernel());
  k.int8_gemm = false;
  EXPECT_FALSE(runtime::gemm_q8_active(f, k));
  EXPECT_FALSE(runtime::gemm_q8_active(mx::find_format("mxfp8_e4m3"), opts(mx::Isa::Avx2)));
}

TEST(GemmQ8, DecodesInt8ActivationsPropagateNaNAndInfToo) {
  // gemv_q8 (decode's opt-in int8 activations) once dropped a NaN in the block maximum and gave
  // finite outputs; a subnormal block maximum overflowed 1 / scale.
  for (const char* name : {"mxint8", "mxfp4"}) {
    const std::int64_t rows = 9, cols = 96;
    const auto w = randn(rows * cols, 11);
    const mx::PackedMatrix q = mx::quantize(mx::find_format(name), w.data(), rows, cols);
    for (mx::Isa isa : {mx::Isa::Scalar, mx::Isa::Avx2}) {
      if (isa == mx::Isa::Avx2 && !mx::isa_supported(isa)) continue;
      for (bool w512 : {false, true}) {
        for (float bad : {NAN, INFINITY}) {
          auto x = randn(cols, 12, 1.0f);
          x[50] = bad;
          std::vector<float> y(static_cast<std::size_t>(rows), 0.0f);
          runtime::gemv_q8(runtime::view(q), x.data(), y.data(), opts(isa, w512));
          for (float v : y) ASSERT_TRUE(std::isnan(v)) << name << " " << mx::isa_name(isa) << (w512 ? " 512" : " 256") << " input " << bad;
        }
        std::vector<float> x(static_cast<std::size_t>(cols), 0.0f), y(static_cast<std::size_t>(rows), NAN);
        x[3] = 1e-40f;  // subnormal block maximum: finite outputs
        runtime::gemv_q8(runtime::view(q), x.data(), y.data(), opts(isa, w512));
        for (float v : y) ASSERT_TRUE(std::isfinite(v)) << name << " " << mx::isa_name(isa);
      }
    }
  }
}
