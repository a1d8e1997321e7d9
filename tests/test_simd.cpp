// Every compiled instruction-set path equals the scalar reference bit for bit, for lengths around
// the vector width, every format, rounding mode and several block sizes. Inputs sit in buffers
// followed by NaN so that an over-read would poison a block scale; outputs are followed by
// canaries so that an over-write shows.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "kernels.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/runtime/gemv.h"

using namespace mfqat::mx;

namespace {

std::vector<Isa> simd_isas() {
  std::vector<Isa> v;
  if (isa_supported(Isa::Avx2)) v.push_back(Isa::Avx2);
  return v;
}

const std::int64_t kLengths[] = {1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1000};
constexpr float kCanary = -12345.678f;

// What CPUID says, read here independently of the library's own checks.
bool cpu_has(const std::string& f) {
#if defined(__x86_64__) || defined(__i386__)
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
  if (f == "avx512vbmi") return __builtin_cpu_supports("avx512vbmi");
#endif
  return false;
}

}  // namespace

// The paths the library reports are the ones CPUID says the CPU has, and forcing a path selects
// that path's kernels (never a silent fallback) or throws where the CPU lacks it.
TEST(Simd, ReportsThePathsTheCpuHasAndForcingEachSelectsIt) {
#if defined(__x86_64__) || defined(__i386__)
  const bool x86 = true;
  // the AVX2 kernels are compiled into every x86 build (cmake adds the file there)
  ASSERT_NE(detail::avx2_kernels(), nullptr) << "the AVX2 kernels were not compiled into an x86 build";
#else
  const bool x86 = false;
#endif
  const bool avx2 = x86 && cpu_has("avx2") && cpu_has("fma");
  EXPECT_EQ(isa_supported(Isa::Avx2), avx2);
  EXPECT_TRUE(isa_supported(Isa::Scalar));
  EXPECT_TRUE(isa_supported(Isa::Auto));
  // The default: MFQAT_ISA=scalar forces the scalar path, otherwise the best the CPU has.
  const char* env = std::getenv("MFQAT_ISA");
  const bool forced_scalar = env != nullptr && std::string(env) == "scalar";
  EXPECT_EQ(default_isa(), avx2 && !forced_scalar ? Isa::Avx2 : Isa::Scalar) << "MFQAT_ISA=" << (env ? env : "(unset)");
  EXPECT_EQ(&detail::kernels_for(Isa::Auto), &detail::kernels_for(default_isa()));
  // Forcing a path gives its own kernel table, or an error.
  EXPECT_EQ(&detail::kernels_for(Isa::Scalar), &detail::scalar_kernels());
  if (avx2) {
    EXPECT_EQ(&detail::kernels_for(Isa::Avx2), detail::avx2_kernels());
    EXPECT_NE(detail::avx2_kernels(), &detail::scalar_kernels());
  } else {
    EXPECT_THROW(detail::kernels_for(Isa::Avx2), std::runtime_error);
  }
  // ... and each forced path runs: the same bits through each, an error where it is missing.
  const Format f = find_format("mxfp4");
  const std::vector<float> x = random_tensor(3 * 100, 1, 1);
  const PackedMatrix ref = quantize(f, x.data(), 3, 100, {}, Isa::Scalar);
  for (Isa isa : {Isa::Auto, Isa::Scalar, Isa::Avx2}) {
    if (!isa_supported(isa)) {
      EXPECT_THROW(quantize(f, x.data(), 3, 100, {}, isa), std::runtime_error) << isa_name(isa);
      continue;
    }
    const PackedMatrix q = quantize(f, x.data(), 3, 100, {}, isa);
    EXPECT_EQ(q.elements, ref.elements) << isa_name(isa);
    EXPECT_EQ(q.scales, ref.scales) << isa_name(isa);
  }
  // The runtime's 512-bit loops (the process default of its Isa overloads) are on exactly where
  // CPUID has F, BW, VL, DQ and VNNI, the vpermb lookup where the CPU also has VBMI; switching
  // them off and on again is seen.
  const bool avx512 = avx2 && cpu_has("avx512f") && cpu_has("avx512bw") && cpu_has("avx512vl") && cpu_has("avx512dq") &&
                      cpu_has("avx512vnni");
  const bool vbmi = avx512 && cpu_has("avx512vbmi");
  EXPECT_EQ(mfqat::runtime::avx512_active(), avx512);
  EXPECT_EQ(mfqat::runtime::vbmi_active(), vbmi);
  mfqat::runtime::set_vbmi(false);
  EXPECT_FALSE(mfqat::runtime::vbmi_active());
  mfqat::runtime::set_vbmi(true);
  mfqat::runtime::set_avx512(false);
  EXPECT_FALSE(mfqat::runtime::avx512_active());
  EXPECT_FALSE(mfqat::runtime::vbmi_active());
  mfqat::runtime::set_avx512(true);
  EXPECT_EQ(mfqat::runtime::avx512_active(), avx512);
  EXPECT_EQ(mfqat::runtime::vbmi_active(), vbmi);
  std::printf("paths: default %s; CPU: avx2+fma %s, avx512 f/bw/vl/dq/vnni %s, avx512vbmi %s; runtime: 512-bit loops %s, vpermb lookup %s\n",
              isa_name(default_isa()), avx2 ? "yes" : "no", avx512 ? "yes" : "no", vbmi ? "yes" : "no",
              mfqat::runtime::avx512_active() ? "on" : "off", mfqat::runtime::vbmi_active() ? "on" : "off");
}

TEST(Simd, FakeQuantMatchesScalar) {
  if (simd_isas().empty()) GTEST_SKIP() << "no AVX2+FMA on this CPU: the scalar path is the only one";
  for (Isa isa : simd_isas()) {
    for (int bs : {32, 16, 7}) {
      for (const Format& f : all_test_formats(bs)) {
        for (Rounding r : {Rounding::NearestEven, Rounding::NearestAway, Rounding::Stochastic}) {
          for (std::int64_t n : kLengths) {
            for (int kind = 0; kind < 4; ++kind) {
              SCOPED_TRACE(fmt_name(f) + " " + rounding_name(r) + " n=" + std::to_string(n) + " kind=" + std::to_string(kind));
              std::vector<float> x = random_tensor(n + 16, static_cast<std::uint32_t>(n * 7 + kind), kind);
              for (std::int64_t i = n; i < n + 16; ++i) x[i] = NAN;
              std::vector<float> ys(n + 16, kCanary), yv(n + 16, kCanary);
              std::vector<std::uint8_t> ss(n + 16, 7), sv(n + 16, 7);
              const QuantOptions opt{r, 42};
              fake_quantize(f, x.data(), 1, n, ys.data(), opt, ss.data(), Isa::Scalar);
              fake_quantize(f, x.data(), 1, n, yv.data(), opt, sv.data(), isa);
              for (std::int64_t i = 0; i < n + 16; ++i) ASSERT_EQ(bits_of(ys[i]), bits_of(yv[i])) << i;
              ASSERT_EQ(ss, sv);
              // and without the saturation mask
              std::vector<float> y2(n + 16, kCanary);
              fake_quantize(f, x.data(), 1, n, y2.data(), opt, nullptr, isa);
              for (std::int64_t i = 0; i < n + 16; ++i) ASSERT_EQ(bits_of(ys[i]), bits_of(y2[i])) << i;
            }
          }
        }
      }
    }
  }
}

TEST(Simd, QuantizeDequantizeMatchScalar) {
  if (simd_isas().empty()) GTEST_SKIP() << "no AVX2+FMA on this CPU: the scalar path is the only one";
  for (Isa isa : simd_isas()) {
    for (int bs : {32, 16, 7}) {
      for (const Format& f : all_test_formats(bs)) {
        for (Rounding r : {Rounding::NearestEven, Rounding::Stochastic}) {
          for (std::int64_t n : kLengths) {
            SCOPED_TRACE(fmt_name(f) + " " + rounding_name(r) + " n=" + std::to_string(n));
            const std::int64_t rows = 3;
            std::vector<float> x = random_tensor(rows * n + 16, static_cast<std::uint32_t>(n), static_cast<int>(n % 4));
            if (n > 3) x[2] = INFINITY;
            for (std::int64_t i = rows * n; i < rows * n + 16; ++i) x[i] = NAN;
            const QuantOptions opt{r, 5};
            const PackedMatrix qs = quantize(f, x.data(), rows, n, opt, Isa::Scalar);
            const PackedMatrix qv = quantize(f, x.data(), rows, n, opt, isa);
            ASSERT_EQ(qs.scales, qv.scales);
            ASSERT_EQ(qs.elements, qv.elements);
            std::vector<float> ds(rows * n + 8, kCanary), dv(rows * n + 8, kCanary);
            dequantize(f, qs.elements.data(), qs.scales.data(), rows, n, ds.data(), Isa::Scalar);
            dequantize(f, qs.elements.data(), qs.scales.data(), rows, n, dv.data(), isa);
            for (std::size_t i = 0; i < ds.size(); ++i) ASSERT_EQ(bits_of(ds[i]), bits_of(dv[i])) << i;
          }
        }
      }
    }
  }
}

// Large tensors take the threaded path: results must not depend on the thread count.
TEST(Threads, ResultsIndependentOfThreadCount) {
  const std::int64_t rows = 7, cols = 100003;  // odd sizes: runs split inside rows
  const std::vector<float> x = random_tensor(rows * cols, 9, 1);
  for (const char* name : {"mxfp4", "mxint8", "mxint3", "mxfp6_e3m2"}) {
    for (int bs : {32, 7}) {
      SCOPED_TRACE(std::string(name) + " bs " + std::to_string(bs));
      const Format f = find_format(name, bs);
      const QuantOptions opt{Rounding::Stochastic, 77};
      mfqat::set_num_threads(1);
      std::vector<float> y1(x.size()), y4(x.size());
      fake_quantize(f, x.data(), rows, cols, y1.data(), opt);
      const PackedMatrix q1 = quantize(f, x.data(), rows, cols, opt);
      const std::vector<float> d1 = dequantize(q1);
      mfqat::set_num_threads(4);
      fake_quantize(f, x.data(), rows, cols, y4.data(), opt);
      const PackedMatrix q4 = quantize(f, x.data(), rows, cols, opt);
      const std::vector<float> d4 = dequantize(q4);
      EXPECT_EQ(0, std::memcmp(y1.data(), y4.data(), y1.size() * 4));
      EXPECT_EQ(q1.elements, q4.elements);
      EXPECT_EQ(q1.scales, q4.scales);
      EXPECT_EQ(0, std::memcmp(d1.data(), d4.data(), d1.size() * 4));
      EXPECT_EQ(0, std::memcmp(y1.data(), d1.data(), y1.size() * 4));
    }
  }
  mfqat::set_num_threads(2);
}

TEST(Threads, ParallelForCoversRangeAndPropagatesErrors) {
  mfqat::set_num_threads(3);
  std::vector<int> hits(1001, 0);
  mfqat::parallel_for(1001, 10, [&](std::int64_t b, std::int64_t e) {
    EXPECT_EQ(b % 10, 0);
    for (std::int64_t i = b; i < e; ++i) ++hits[i];
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  EXPECT_THROW(mfqat::parallel_for(100, 1, [](std::int64_t b, std::int64_t) {
                 if (b == 0) throw std::runtime_error("boom");
               }),
               std::runtime_error);
  // the pool stays usable after an exception
  int total = 0;
  std::mutex mu;
  mfqat::parallel_for(100, 1, [&](std::int64_t b, std::int64_t e) {
    std::lock_guard<std::mutex> lk(mu);
    total += static_cast<int>(e - b);
  });
  EXPECT_EQ(total, 100);
  mfqat::set_num_threads(2);
}

TEST(Threads, BackToBackRegionsSleepingWorkersAndConcurrentCallers) {
  // The pool's lock-free hand-off: tens of thousands of tiny regions back to back (a late worker
  // must never run a part of a newer region), regions after the workers went to sleep, and
  // regions from two threads at once (one runs at a time), each part run exactly once.
  mfqat::set_num_threads(4);
  auto region = [](std::int64_t n, std::int64_t grain) {
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
    mfqat::parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)].fetch_add(1);
    });
    for (auto& h : hits) {
      if (h.load() != 1) return false;
    }
    return true;
  };
  int bad = 0;
  for (int i = 0; i < 20000; ++i) bad += !region(4 + i % 5, 1);
  EXPECT_EQ(bad, 0);
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // past the workers' spin
    EXPECT_TRUE(region(64, 1));
  }
  std::atomic<int> bad2{0};
  std::thread other([&] {
    for (int i = 0; i < 3000; ++i) bad2 += !region(7, 1);
  });
  for (int i = 0; i < 3000; ++i) bad2 += !region(9, 2);
  other.join();
  EXPECT_EQ(bad2.load(), 0);
  mfqat::set_num_threads(2);
}
