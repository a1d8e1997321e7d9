#include <gtest/gtest.h>

#include <cmath>

#include "common.h"
#include "mfqat/mx/quantize.h"
#include "oracle.h"

using namespace mfqat::mx;

namespace {

std::vector<std::uint8_t> unpacked(const PackedMatrix& m) {
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(m.rows * m.cols));
  const std::size_t rb = m.format.packed_row_bytes(m.cols);
  for (std::int64_t r = 0; r < m.rows; ++r) unpack_codes(m.elements.data() + r * rb, m.cols, m.format.bits, codes.data() + r * m.cols);
  return codes;
}

// Oracle quantization of a matrix: per block, X by frexp, each element by brute-force search.
void oracle_quantize(const Format& f, const std::vector<float>& x, std::int64_t rows, std::int64_t cols,
                     oracle::Mode mode, std::vector<std::uint8_t>* codes, std::vector<std::uint8_t>* scales) {
  const auto mags = oracle::magnitudes(f);
  codes->assign(x.size(), 0);
  scales->clear();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c0 = 0; c0 < cols; c0 += f.block_size) {
      const int len = static_cast<int>(std::min<std::int64_t>(f.block_size, cols - c0));
      const float* xb = x.data() + r * cols + c0;
      const int X = oracle::shared_exponent(f, xb, len);
      scales->push_back(static_cast<std::uint8_t>(X + 127));
      for (int i = 0; i < len; ++i) {
        const double a = std::fabs(static_cast<double>(xb[i])) / std::ldexp(1.0, X);
        (*codes)[r * cols + c0 + i] = static_cast<std::uint8_t>(oracle::signed_code(f, oracle::nearest_mag(mags, a, mode), std::signbit(xb[i])));
      }
    }
  }
}

}  // namespace

TEST(Quantize, MatchesOracleOnRandomTensors) {
  for (const Format& f : all_test_formats()) {
    for (int kind = 0; kind < 4; ++kind) {
      SCOPED_TRACE(f.name + " kind " + std::to_string(kind));
      const std::int64_t rows = 3, cols = 77;  // partial last block
      auto x = random_tensor(rows * cols, 100 + kind, kind);
      for (auto [r, m] : {std::pair{Rounding::NearestEven, oracle::Mode::Even}, std::pair{Rounding::NearestAway, oracle::Mode::Away}}) {
        QuantOptions opt;
        opt.rounding = r;
        const PackedMatrix q = quantize(f, x.data(), rows, cols, opt);
        std::vector<std::uint8_t> want_codes, want_scales;
        oracle_quantize(f, x, rows, cols, m, &want_codes, &want_scales);
        ASSERT_EQ(q.scales, want_scales);
        ASSERT_EQ(unpacked(q), want_codes);
      }
    }
  }
}

TEST(Quantize, FakeQuantEqualsDequantizeOfQuantize) {
  for (const Format& f : all_test_formats()) {
    for (Rounding r : {Rounding::NearestEven, Rounding::NearestAway, Rounding::Stochastic}) {
      SCOPED_TRACE(f.name + " " + rounding_name(r));
      const std::int64_t rows = 5, cols = 100;
      auto x = random_tensor(rows * cols, 5, 1);
      x[7] = -0.0f;
      x[8] = 1e-42f;  // fp32 subnormals
      x[9] = -3e-39f;
      QuantOptions opt{r, 99};
      const PackedMatrix q = quantize(f, x.data(), rows, cols, opt);
      const std::vector<float> dq = dequantize(q);
      std::vector<float> fq(x.size());
      fake_quantize(f, x.data(), rows, cols, fq.data(), opt);
      for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(bits_of(fq[i]), bits_of(dq[i])) << i;
    }
  }
}

// quantize(dequantize(q)) == q: elements and scales, for every format and block size.
TEST(Quantize, Idempotent) {
  for (int bs : {32, 16, 7}) {
    for (const Format& f : all_test_formats(bs)) {
      for (int kind = 0; kind < 4; ++kind) {
        SCOPED_TRACE(fmt_name(f) + " kind " + std::to_string(kind));
        const std::int64_t rows = 4, cols = 45;
        auto x = random_tensor(rows * cols, 300 + kind, kind);
        for (int i = 0; i < 10; ++i) x[i] *= 1e-38f;  // blocks near / at the 2^-127 scale floor
        const PackedMatrix q1 = quantize(f, x.data(), rows, cols);
        const std::vector<float> d1 = dequantize(q1);
        const PackedMatrix q2 = quantize(f, d1.data(), rows, cols);
        ASSERT_EQ(q1.scales, q2.scales);
        ASSERT_EQ(q1.elements, q2.elements);
        std::vector<float> fq(d1.size());
        fake_quantize(f, d1.data(), rows, cols, fq.data());
        for (std::size_t i = 0; i < d1.size(); ++i) ASSERT_EQ(bits_of(fq[i]), bits_of(d1[i]));
      }
    }
  }
}

TEST(Quantize, SaturatingBlocks) {
  // A block whose max is 957 under E4M3: X = floor(log2 957) - 8 = 1, 957/2 = 478.5 > 448 clips.
  {
    const Format f = find_format("mxfp8_e4m3");
    std::vector<float> x(32, 1.0f);
    x[3] = 957.0f;
    x[4] = -957.0f;
    std::vector<float> y(32);
    std::vector<std::uint8_t> sat(32);
    fake_quantize(f, x.data(), 1, 32, y.data(), {}, sat.data());
    EXPECT_EQ(y[3], 896.0f);
    EXPECT_EQ(y[4], -896.0f);
    EXPECT_EQ(sat[3], 1);
    EXPECT_EQ(sat[4], 1);
    EXPECT_EQ(sat[0], 0);
    const PackedMatrix q = quantize(f, x.data(), 1, 32);
    EXPECT_EQ(q.scales[0], 128);
    EXPECT_EQ(q.elements[3], 0x7e);
    EXPECT_EQ(q.elements[4], 0xfe);
  }
  // 127.9999 under E5M2: X = 6 - 15 = -9; 127.9999 * 2^9 rounds to 2^16 > 57344 and clips.
  {
    const Format f = find_format("mxfp8_e5m2");
    std::vector<float> x(32, 0.5f);
    x[0] = 127.9999f;
    std::vector<float> y(32);
    std::vector<std::uint8_t> sat(32);
    fake_quantize(f, x.data(), 1, 32, y.data(), {}, sat.data());
    EXPECT_EQ(y[0], 112.0f);  // 57344 * 2^-9
    EXPECT_EQ(sat[0], 1);
    EXPECT_EQ(quantize(f, x.data(), 1, 32).elements[0], 0x7b);
  }
}

TEST(Quantize, AmaxJustBelowPowerOfTwo) {
  const float a = 1048576.0f - 0.0625f;  // 2^20 - 2^-4
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    std::vector<float> x(32, 0.0f);
    x[0] = a;
    x[1] = 1.0f;
    const PackedMatrix q = quantize(f, x.data(), 1, 32);
    EXPECT_EQ(q.scales[0], 127 + 19 - f.emax);
    // The top element rounds up past max_normal in the 2^19 binade and saturates.
    EXPECT_EQ(dequantize(q)[0], static_cast<float>(f.max_normal) * std::ldexp(1.0f, 19 - f.emax));
  }
}

TEST(Quantize, AllZeroAndSubnormalBlocks) {
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    std::vector<float> x(64, 0.0f);
    for (int i = 32; i < 64; ++i) x[i] = (i % 2 ? 1 : -1) * 1e-40f * static_cast<float>(i - 31);  // fp32 subnormals
    const PackedMatrix q = quantize(f, x.data(), 1, 64);
    EXPECT_EQ(q.scales[0], 0);  // all zero -> 2^-127
    EXPECT_EQ(q.scales[1], 0);  // subnormal amax clamps to 2^-127
    const auto d = dequantize(q);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(bits_of(d[i]), 0u);
    // Relative to 2^-127, values up to ~2.2e-39 are < 2^-(emin-m)/2 of the element grid or not;
    // the oracle decides element by element.
    std::vector<std::uint8_t> codes, scales;
    oracle_quantize(f, x, 1, 64, oracle::Mode::Even, &codes, &scales);
    EXPECT_EQ(unpacked(q), codes);
  }
}

TEST(Quantize, NonFiniteMakesBlockNaN) {
  for (const Format& f : all_test_formats()) {
    for (float bad : {INFINITY, -INFINITY, NAN}) {
      SCOPED_TRACE(f.name);
      std::vector<float> x = random_tensor(96, 3, 0);
      x[40] = bad;
      const PackedMatrix q = quantize(f, x.data(), 1, 96);
      EXPECT_NE(q.scales[0], kE8M0Nan);
      EXPECT_EQ(q.scales[1], kE8M0Nan);
      EXPECT_NE(q.scales[2], kE8M0Nan);
      const auto d = dequantize(q);
      std::vector<float> fq(96);
      fake_quantize(f, x.data(), 1, 96, fq.data());
      for (int i = 0; i < 96; ++i) {
        EXPECT_EQ(std::isnan(d[i]), i >= 32 && i < 64);
        EXPECT_EQ(std::isnan(fq[i]), i >= 32 && i < 64);
      }
    }
  }
}

TEST(Quantize, PartialLastBlockActsZeroPadded) {
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    for (std::int64_t cols : {1, 5, 31, 33, 40, 63, 65}) {
      auto x = random_tensor(2 * cols, static_cast<std::uint32_t>(cols), 1);
      const std::int64_t padc = f.blocks_per_row(cols) * 32;
      std::vector<float> xp(2 * padc, 0.0f);
      for (int r = 0; r < 2; ++r) std::copy(x.begin() + r * cols, x.begin() + (r + 1) * cols, xp.begin() + r * padc);
      std::vector<float> y(x.size()), yp(xp.size());
      fake_quantize(f, x.data(), 2, cols, y.data());
      fake_quantize(f, xp.data(), 2, padc, yp.data());
      for (int r = 0; r < 2; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) ASSERT_EQ(bits_of(y[r * cols + c]), bits_of(yp[r * padc + c]));
      }
      const PackedMatrix q = quantize(f, x.data(), 2, cols);
      EXPECT_EQ(q.scales.size(), static_cast<std::size_t>(2 * f.blocks_per_row(cols)));
      EXPECT_EQ(q.elements.size(), 2 * f.packed_row_bytes(cols));
    }
  }
}

TEST(Quantize, PaddingBitsAreZero) {
  const Format f = find_format("mxint3");
  std::vector<float> x(2 * 5, -1.0f);
  const PackedMatrix q = quantize(f, x.data(), 2, 5);  // 15 bits per row -> 2 bytes, 1 padding bit
  ASSERT_EQ(q.elements.size(), 4u);
  EXPECT_EQ(q.elements[1] & 0x80, 0);
  EXPECT_EQ(q.elements[3] & 0x80, 0);
}

TEST(Quantize, IntMinCodeUnused) {
  const Format f = find_format("mxint8");
  std::vector<float> x = random_tensor(32 * 64, 11, 0);  // |x| < 16 for these draws
  // -15.9999 = -1.99999 * 2^3 is the block max; it rounds to -128/64 * 2^3 and must saturate to -127.
  for (std::size_t i = 0; i < x.size(); i += 32) x[i] = -15.9999f;
  const PackedMatrix q = quantize(f, x.data(), 64, 32);
  for (std::uint8_t c : q.elements) ASSERT_NE(c, 0x80);
  for (std::size_t i = 0; i < x.size(); i += 32) EXPECT_EQ(q.elements[i], 0x81);  // -127: -max_normal
}

TEST(Quantize, StochasticIsSeededAndUnbiased) {
  const Format f = find_format("mxint4");
  const std::int64_t n = 1 << 16;
  std::vector<float> x(n, 0.3f);
  x[0] = 1.0f;  // fixes X = 0 for the first block; every block has amax 0.3 or 1
  for (std::int64_t i = 32; i < n; i += 32) x[i] = 1.0f;
  std::vector<float> a(n), b(n), c(n);
  fake_quantize(f, x.data(), 1, n, a.data(), {Rounding::Stochastic, 1});
  fake_quantize(f, x.data(), 1, n, b.data(), {Rounding::Stochastic, 1});
  fake_quantize(f, x.data(), 1, n, c.data(), {Rounding::Stochastic, 2});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double sum = 0;
  std::int64_t cnt = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i % 32 == 0) continue;
    ASSERT_TRUE(a[i] == 0.25f || a[i] == 0.5f);
    sum += a[i];
    ++cnt;
  }
  // Mean of 63488 draws of {0.25, 0.5} with p = 0.2: sd of mean = 0.25*sqrt(.16/63488) = 4e-4.
  EXPECT_NEAR(sum / cnt, 0.3, 0.002);
}

TEST(Quantize, PackUnpackRoundTrip) {
  std::mt19937 rng(3);
  for (int bits = 2; bits <= 8; ++bits) {
    for (int n : {1, 7, 8, 9, 31, 32, 33, 100}) {
      std::vector<std::uint8_t> codes(n), back(n);
      for (auto& c : codes) c = static_cast<std::uint8_t>(rng() & ((1u << bits) - 1));
      std::vector<std::uint8_t> packed((n * bits + 7) / 8, 0xAA);
      pack_codes(codes.data(), n, bits, packed.data());
      unpack_codes(packed.data(), n, bits, back.data());
      ASSERT_EQ(codes, back) << bits << " " << n;
      // little-endian bit stream: element i at bits [i*B, (i+1)*B)
      for (int i = 0; i < n; ++i) {
        std::uint32_t v = 0;
        for (int k = 0; k < bits; ++k) {
          const int bit = i * bits + k;
          v |= ((packed[bit / 8] >> (bit % 8)) & 1u) << k;
        }
        ASSERT_EQ(v, codes[i]);
      }
    }
  }
}

TEST(Quantize, Mxfp4NibbleOrder) {
  const Format f = find_format("mxfp4");
  std::vector<float> x(32, 0.0f);
  x[0] = 6.0f;   // code 0x7
  x[1] = -0.5f;  // code 0x9
  const PackedMatrix q = quantize(f, x.data(), 1, 32);
  EXPECT_EQ(q.scales[0], 127);
  EXPECT_EQ(q.elements[0], 0x97);  // element 0 in the low nibble
}
