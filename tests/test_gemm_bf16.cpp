// The bf16 MX GEMM (n >= 2) for MXFP8 and MXFP6 E3M2 (AVX-512 BF16): which formats take it,
// its error against an independent double-precision product on the same bf16-rounded
// activations (fp32 summation bound) and against the fp32 product (plus the rounding), results
// independent of the thread count and of the batch, NaN/Inf rows, bad input.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "common.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat;

namespace {

std::vector<float> randn(std::int64_t n, std::uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = nd(rng) * sd;
  for (std::size_t i = 0; i < v.size(); i += 41) v[i] *= 30;  // blocks with large ranges
  return v;
}

// bf16 by round-to-nearest-even of the fp32 bits (finite inputs)
float to_bf16(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  u += 0x7FFF + ((u >> 16) & 1);
  return std::bit_cast<float>(u & 0xFFFF0000u);
}

runtime::KernelOptions opts() { return {}; }

bool have() { return runtime::gemm_bf16_active(mx::find_format("mxfp8_e4m3"), opts()); }

}  // namespace

TEST(GemmBf16, TakesTheFpFormatsWithoutIntegerCodes) {
  for (const char* f : {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2"}) EXPECT_TRUE(runtime::gemm_bf16_supported(mx::find_format(f))) << f;
  for (const char* f : {"mxfp4_e2m1", "mxfp6_e2m3", "mxint8", "mxint4"}) EXPECT_FALSE(runtime::gemm_bf16_supported(mx::find_format(f))) << f;
  auto k = opts();
  k.bf16_gemm = false;
  EXPECT_FALSE(runtime::gemm_bf16_active(mx::find_format("mxfp8_e4m3"), k));
  k = opts();
  k.avx512 = false;
  EXPECT_FALSE(runtime::gemm_bf16_active(mx::find_format("mxfp8_e4m3"), k));
  if (!have()) std::printf("[ skipped  ] the bf16 kernel: this CPU lacks AVX-512 F/BW/VL/DQ/VNNI with BF16 (the fp32 GEMM runs these formats)\n");
}

TEST(GemmBf16, WithinTheStatedBoundOnRaggedShapesAndIndependentOfThreadsAndBatch) {
  if (!have()) GTEST_SKIP() << "no AVX512-BF16 on this CPU: the fp32 GEMM runs MXFP8 / MXFP6 E3M2 prompts here";
  const int saved = num_threads();
  const std::vector<GemmCase> cases = ragged_gemm_cases();
  for (const char* name : {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2"}) {
    const mx::Format& f = mx::find_format(name);
    for (const GemmCase& c : cases) {
      const auto w = randn(c.rows * c.cols, 3, 0.05f);
      const mx::PackedMatrix q = mx::quantize(f, w.data(), c.rows, c.cols);
      std::vector<float> wd(static_cast<std::size_t>(c.rows * c.cols));
      mx::dequantize(f, q.elements.data(), q.scales.data(), c.rows, c.cols, wd.data());
      const std::int64_t nmax = *std::max_element(c.ns.begin(), c.ns.end());
      const auto x = randn(nmax * c.cols, 4, 1.0f);
      std::vector<float> first;  // row 0's outputs at the first n: every later n and thread count must equal them
      for (std::int64_t n : c.ns) {
        for (int threads : {1, 3, 8}) {
          set_num_threads(threads);
          std::vector<float> y(static_cast<std::size_t>(n * c.rows), NAN);
          runtime::gemm_bf16(runtime::view(q), x.data(), n, y.data(), opts());
          if (first.empty()) first.assign(y.begin(), y.begin() + c.rows);
          ASSERT_EQ(std::memcmp(first.data(), y.data(), first.size() * 4), 0) << name << " n " << n << " threads " << threads;
          if (threads != 3) continue;
          for (std::int64_t j = 0; j < n; ++j) {
            for (std::int64_t r = 0; r < c.rows; ++r) {
              double rounded = 0, exact = 0, mag = 0;
              for (std::int64_t i = 0; i < c.cols; ++i) {
                const double wv = wd[static_cast<std::size_t>(r * c.cols + i)], xv = x[static_cast<std::size_t>(j * c.cols + i)];
                rounded += wv * to_bf16(static_cast<float>(xv));
                exact += wv * xv;
                mag += std::fabs(wv * xv);
              }
              const double got = y[static_cast<std::size_t>(j * c.rows + r)];
              const double sum_bound = static_cast<double>(c.cols + 2) * std::ldexp(1.0, -24) * mag * 1.01 + 1e-30;
              ASSERT_LE(std::fabs(got - rounded), sum_bound) << name << " rows " << c.rows << " cols " << c.cols << " n " << n << " at " << j << "," << r;
              ASSERT_LE(std::fabs(got - exact), std::ldexp(1.0, -8) * mag * 1.0001 + sum_bound) << name << " at " << j << "," << r;
            }
          }
        }
      }
    }
  }
  set_num_threads(saved);
}

TEST(GemmBf16, NonFiniteActivationRowGivesNaNThereAndLeavesTheOtherRows) {
  if (!have()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  const std::int64_t rows = 20, cols = 70, n = 5;
  const auto w = randn(rows * cols, 5, 0.05f);
  auto x = randn(n * cols, 6, 1.0f);
  const mx::PackedMatrix q = mx::quantize(mx::find_format("mxfp8_e4m3"), w.data(), rows, cols);
  std::vector<float> clean(static_cast<std::size_t>(n * rows)), y(clean.size());
  runtime::gemm_bf16(runtime::view(q), x.data(), n, clean.data(), opts());
  x[2 * cols + 40] = NAN;
  x[4 * cols + 69] = -INFINITY;
  runtime::gemm_bf16(runtime::view(q), x.data(), n, y.data(), opts());
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t r = 0; r < rows; ++r) {
      const float v = y[static_cast<std::size_t>(j * rows + r)];
      if (j == 2 || j == 4) {
        ASSERT_TRUE(std::isnan(v)) << j;
      } else {
        ASSERT_EQ(std::bit_cast<std::uint32_t>(v), std::bit_cast<std::uint32_t>(clean[static_cast<std::size_t>(j * rows + r)])) << j;
      }
    }
  }
  // n = 0 writes nothing; a format it does not take is refused
  std::vector<float> z(4, 42.0f);
  runtime::gemm_bf16(runtime::view(q), x.data(), 0, z.data(), opts());
  EXPECT_EQ(z[0], 42.0f);
  const mx::PackedMatrix q4 = mx::quantize(mx::find_format("mxfp4_e2m1"), w.data(), rows, cols);
  EXPECT_THROW(runtime::gemm_bf16(runtime::view(q4), x.data(), 2, y.data(), opts()), std::invalid_argument);
}
