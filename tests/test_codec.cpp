#include <gtest/gtest.h>

#include <cmath>

#include "common.h"
#include "mfqat/mx/codec.h"
#include "oracle.h"

using namespace mfqat::mx;

namespace {

bool same_value(double a, float b) { return (std::isnan(a) && std::isnan(b)) || a == static_cast<double>(b); }

}  // namespace

TEST(Codec, E2M1TableFromSpec) {
  const Format f = find_format("mxfp4_e2m1");
  const float want[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (std::uint32_t c = 0; c < 8; ++c) {
    EXPECT_EQ(decode_element(f, c), want[c]);
    EXPECT_EQ(decode_element(f, c | 8), -want[c]);
  }
}

TEST(Codec, SpecialCodes) {
  const Format e4 = find_format("mxfp8_e4m3");
  EXPECT_TRUE(std::isnan(decode_element(e4, 0x7f)));
  EXPECT_TRUE(std::isnan(decode_element(e4, 0xff)));
  EXPECT_EQ(decode_element(e4, 0x7e), 448.0f);
  EXPECT_EQ(decode_element(e4, 0x78), 256.0f);  // E=1111, M=000 is a normal number in E4M3
  EXPECT_EQ(decode_element(e4, 0x01), std::ldexp(1.0f, -9));
  const Format e5 = find_format("mxfp8_e5m2");
  EXPECT_TRUE(std::isinf(decode_element(e5, 0x7c)));
  EXPECT_TRUE(std::isinf(decode_element(e5, 0xfc)) && decode_element(e5, 0xfc) < 0);
  EXPECT_TRUE(std::isnan(decode_element(e5, 0x7d)));
  EXPECT_EQ(decode_element(e5, 0x7b), 57344.0f);
  EXPECT_EQ(decode_element(find_format("mxfp6_e3m2"), 0x1f), 28.0f);
  EXPECT_EQ(decode_element(find_format("mxfp6_e2m3"), 0x1f), 7.5f);
  // MXINT8: 0x80 (-128) is never produced; it decodes to the OCP value -2.
  EXPECT_EQ(decode_element(find_format("mxint8"), 0x80), -2.0f);
  EXPECT_EQ(decode_element(find_format("mxint8"), 0x81), -127.0f / 64);
  EXPECT_EQ(decode_element(find_format("mxint2"), 0x3), -1.0f);
}

TEST(Codec, DecodeEveryCodeMatchesDefinition) {
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    for (std::uint32_t c = 0; c < f.code_count(); ++c) {
      ASSERT_TRUE(same_value(oracle::value(f, c), decode_element(f, c))) << "code " << c;
    }
    // The registry's max_normal / min_subnormal are the decoded extremes.
    EXPECT_EQ(decode_element(f, f.max_code), f.max_normal);
    const auto mags = oracle::magnitudes(f);
    EXPECT_EQ(mags.size() - 1, f.max_code);
    EXPECT_EQ(mags[1], f.min_subnormal);
    for (std::size_t i = 1; i < mags.size(); ++i) ASSERT_LT(mags[i - 1], mags[i]);  // codes are monotonic
  }
}

TEST(Codec, RoundTripEveryFiniteCode) {
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    for (std::uint32_t c = 0; c < f.code_count(); ++c) {
      const float v = decode_element(f, c);
      if (!std::isfinite(v)) continue;
      if (f.family == Family::Int && c == (1u << (f.bits - 1))) continue;  // the unused -2^(B-1)
      for (Rounding r : {Rounding::NearestEven, Rounding::NearestAway, Rounding::Stochastic}) {
        bool sat = true;
        ASSERT_EQ(encode_element(f, v, r, 0x123456, &sat), c) << "code " << c << " mode " << rounding_name(r);
        ASSERT_FALSE(sat);
      }
    }
  }
}

TEST(Codec, IntMinCodeNeverProduced) {
  for (int b = 2; b <= 8; ++b) {
    const Format f = find_format("mxint" + std::to_string(b));
    const std::uint32_t minc = 1u << (b - 1);
    // -2^(B-1)/2^(B-2) = -2 and everything below saturates to -max (code -(2^(B-1)-1)).
    for (float v : {-2.0f, -1.999f, -1000.0f, -INFINITY, -static_cast<float>(f.max_normal) - 0.01f}) {
      const std::uint32_t c = encode_element(f, v, Rounding::NearestEven);
      EXPECT_NE(c, minc) << f.name << " " << v;
      EXPECT_EQ(decode_element(f, c), -static_cast<float>(f.max_normal));
    }
  }
}

// Every midpoint between neighbouring magnitudes: RNE picks the even code, away the larger;
// one fp32 ulp either side must go to the nearer code in both modes.
TEST(Codec, TiesAtEveryMidpoint) {
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    const auto mags = oracle::magnitudes(f);
    for (std::size_t c = 0; c + 1 < mags.size(); ++c) {
      const float mid = static_cast<float>((mags[c] + mags[c + 1]) / 2);
      ASSERT_EQ(static_cast<double>(mid), (mags[c] + mags[c + 1]) / 2);  // exactly representable
      // Ties go to the even code, except in M = 0 formats (powers of two) where IEEE's even
      // integral significand is the larger neighbour (or 0 between 0 and the smallest value).
      std::uint32_t even = (c % 2 == 0) ? static_cast<std::uint32_t>(c) : static_cast<std::uint32_t>(c + 1);
      if (f.family == Family::Fp && f.mbits == 0) even = c == 0 ? 0 : static_cast<std::uint32_t>(c + 1);
      for (const bool neg : {false, true}) {
        const float v = neg ? -mid : mid;
        ASSERT_EQ(encode_element(f, v, Rounding::NearestEven), oracle::signed_code(f, even, neg)) << mid;
        ASSERT_EQ(encode_element(f, v, Rounding::NearestAway), oracle::signed_code(f, c + 1, neg)) << mid;
        const float below = std::nextafter(v, 0.0f), above = std::nextafter(v, neg ? -INFINITY : INFINITY);
        for (Rounding r : {Rounding::NearestEven, Rounding::NearestAway}) {
          ASSERT_EQ(encode_element(f, below, r), oracle::signed_code(f, c, neg)) << mid;
          ASSERT_EQ(encode_element(f, above, r), oracle::signed_code(f, c + 1, neg)) << mid;
        }
      }
    }
  }
}

TEST(Codec, RandomValuesMatchBruteForce) {
  std::mt19937 rng(7);
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    const auto mags = oracle::magnitudes(f);
    std::uniform_real_distribution<double> u(0.0, mags.back() * 1.2);
    for (int i = 0; i < 4000; ++i) {
      float v = static_cast<float>(u(rng));
      if (i % 3 == 0) v = static_cast<float>(std::ldexp(u(rng), -static_cast<int>(rng() % 20)));  // small values
      const bool neg = rng() & 1;
      for (auto [r, m] : {std::pair{Rounding::NearestEven, oracle::Mode::Even}, std::pair{Rounding::NearestAway, oracle::Mode::Away}}) {
        const std::uint32_t want = oracle::signed_code(f, oracle::nearest_mag(mags, v, m), neg);
        ASSERT_EQ(encode_element(f, neg ? -v : v, r), want) << v;
      }
    }
  }
}

TEST(Codec, SaturationAndSpecialInputs) {
  for (const Format& f : all_test_formats()) {
    SCOPED_TRACE(f.name);
    bool sat = false;
    EXPECT_EQ(encode_element(f, INFINITY, Rounding::NearestEven, 0, &sat), f.max_code);
    EXPECT_TRUE(sat);
    EXPECT_EQ(decode_element(f, encode_element(f, -1e30f, Rounding::NearestEven)), -static_cast<float>(f.max_normal));
    EXPECT_EQ(encode_element(f, static_cast<float>(f.max_normal), Rounding::NearestEven, 0, &sat), f.max_code);
    EXPECT_FALSE(sat);
    // -0 keeps its sign in FP formats; two's complement INT has no -0.
    const std::uint32_t nz = encode_element(f, -0.0f, Rounding::NearestEven);
    EXPECT_EQ(nz, f.family == Family::Int ? 0u : 1u << (f.bits - 1));
  }
  EXPECT_EQ(encode_element(find_format("mxfp8_e4m3"), NAN, Rounding::NearestEven), 0xffu);
  EXPECT_EQ(encode_element(find_format("mxfp8_e5m2"), NAN, Rounding::NearestEven), 0xffu);
}

TEST(Codec, StochasticRoundsToNeighbours) {
  const Format f = find_format("mxint4");
  // 0.3 lies between codes 1 (0.25) and 2 (0.5): frac = 0.2 of the step.
  int up = 0;
  const int n = 1 << 14;
  for (int i = 0; i < n; ++i) {
    const std::uint32_t r24 = static_cast<std::uint32_t>((static_cast<std::uint64_t>(i) << 24) / n);
    const std::uint32_t c = encode_element(f, 0.3f, Rounding::Stochastic, r24);
    ASSERT_TRUE(c == 1 || c == 2);
    up += c == 2;
  }
  // With evenly spread draws the up-fraction equals frac to within one draw step.
  EXPECT_NEAR(static_cast<double>(up) / n, (0.3f * 4 - 1), 2.0 / n);
}

TEST(E8M0, ValuesAndNaN) {
  for (int s = 0; s < 255; ++s) {
    EXPECT_EQ(static_cast<double>(e8m0_to_float(static_cast<std::uint8_t>(s))), std::ldexp(1.0, s - 127));
  }
  EXPECT_TRUE(std::isnan(e8m0_to_float(0xff)));
}

TEST(E8M0, SharedScaleFromBits) {
  const int emax_e4m3 = 8;
  EXPECT_EQ(shared_scale(bits_of(1.0f), 0), 127);
  EXPECT_EQ(shared_scale(bits_of(1.9999999f), 0), 127);
  EXPECT_EQ(shared_scale(bits_of(2.0f), 0), 128);
  EXPECT_EQ(shared_scale(bits_of(-448.0f), emax_e4m3), 127);
  // 2^20 - 2^-4: floor(log2) is 19, while log2f rounds up to exactly 20.
  const float just_below = 1048576.0f - 0.0625f;
  ASSERT_EQ(std::log2(just_below), 20.0f);
  EXPECT_EQ(shared_scale(bits_of(just_below), 0), 127 + 19);
  EXPECT_EQ(shared_scale(bits_of(just_below), emax_e4m3), 127 + 19 - 8);
  EXPECT_EQ(shared_scale(0, 8), 0);                          // all-zero block: 2^-127
  EXPECT_EQ(shared_scale(bits_of(1e-40f), 0), 0);            // fp32 subnormal amax clamps
  EXPECT_EQ(shared_scale(bits_of(std::ldexp(1.0f, -120)), 8), 0);  // -128 clamps to -127
  EXPECT_EQ(shared_scale(bits_of(std::ldexp(1.0f, -119)), 8), 0);  // exactly -127
  EXPECT_EQ(shared_scale(bits_of(std::ldexp(1.0f, -118)), 8), 1);
  EXPECT_EQ(shared_scale(bits_of(3.4e38f), 0), 254);         // largest finite: X = 127
  EXPECT_EQ(shared_scale(bits_of(INFINITY), 8), kE8M0Nan);
  EXPECT_EQ(shared_scale(bits_of(NAN), 8), kE8M0Nan);
}
