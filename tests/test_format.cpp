#include <gtest/gtest.h>

#include <cmath>

#include "mfqat/mx/format.h"

using namespace mfqat::mx;

TEST(Registry, BuiltinRows) {
  const auto& r = registry();
  ASSERT_EQ(r.size(), 12u);
  struct Want {
    const char* name;
    int bits, emax;
    double max, min_sub;
    std::uint32_t max_code;
  };
  const Want want[] = {
      {"mxfp8_e4m3", 8, 8, 448, std::ldexp(1.0, -9), 0x7e},  {"mxfp8_e5m2", 8, 15, 57344, std::ldexp(1.0, -16), 0x7b},
      {"mxfp6_e3m2", 6, 4, 28, 0.0625, 0x1f},                {"mxfp6_e2m3", 6, 2, 7.5, 0.125, 0x1f},
      {"mxfp4_e2m1", 4, 2, 6, 0.5, 0x7},                     {"mxint8", 8, 0, 127.0 / 64, 1.0 / 64, 127},
      {"mxint7", 7, 0, 63.0 / 32, 1.0 / 32, 63},             {"mxint6", 6, 0, 31.0 / 16, 1.0 / 16, 31},
      {"mxint5", 5, 0, 15.0 / 8, 1.0 / 8, 15},               {"mxint4", 4, 0, 7.0 / 4, 1.0 / 4, 7},
      {"mxint3", 3, 0, 3.0 / 2, 1.0 / 2, 3},                 {"mxint2", 2, 0, 1.0, 1.0, 1},
  };
  for (std::size_t i = 0; i < r.size(); ++i) {
    SCOPED_TRACE(want[i].name);
    EXPECT_EQ(r[i].name, want[i].name);
    EXPECT_EQ(r[i].bits, want[i].bits);
    EXPECT_EQ(r[i].emax, want[i].emax);
    EXPECT_EQ(r[i].max_normal, want[i].max);
    EXPECT_EQ(r[i].min_subnormal, want[i].min_sub);
    EXPECT_EQ(r[i].max_code, want[i].max_code);
    EXPECT_EQ(r[i].block_size, 32);
    EXPECT_EQ(r[i].packed_bytes_per_block(), static_cast<std::size_t>(4 * want[i].bits));
  }
}

TEST(Registry, AliasesAndCase) {
  EXPECT_EQ(find_format("mxfp8").name, "mxfp8_e4m3");
  EXPECT_EQ(find_format("mxfp6").name, "mxfp6_e2m3");
  EXPECT_EQ(find_format("MXFP4").name, "mxfp4_e2m1");
  EXPECT_EQ(find_format("mxint5").bits, 5);
}

TEST(Registry, GenericFormats) {
  const Format f = find_format("mxfp5_e2m2");
  EXPECT_FALSE(f.builtin);
  EXPECT_EQ(f.bits, 5);
  EXPECT_EQ(f.bias, 1);
  EXPECT_EQ(f.max_normal, 7.0);  // 2^2 * 1.75, all codes finite
  EXPECT_EQ(f.min_subnormal, 0.25);
  const Format g = find_format("mxfp7_e3m3");
  EXPECT_EQ(g.max_normal, 30.0);  // 2^4 * 1.875
  // A generic name with OCP E/M resolves to the OCP row (E4M3 keeps its NaN code).
  EXPECT_EQ(find_format("mxfp8_e4m3").specials, Specials::E4M3);
  EXPECT_TRUE(find_format("mxfp8_e4m3").builtin);
}

TEST(Registry, BadNames) {
  for (const char* bad : {"mxfp9_e5m3", "mxfp5_e2m1", "fp8", "mxint9", "mxint1", "mxfp8_e6m1", "", "mxfp_e2m1", "mxfp4_e2m"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(find_format(bad), std::invalid_argument);
  }
  try {
    find_format("mxfp9");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("mxfp9"), std::string::npos);
  }
}

TEST(Registry, BlockSizes) {
  const Format f = find_format("mxfp4", 16);
  EXPECT_EQ(f.block_size, 16);
  EXPECT_EQ(f.packed_bytes_per_block(), 8u);
  EXPECT_DOUBLE_EQ(f.bits_per_weight(), 4.5);
  EXPECT_EQ(find_format("mxint3", 10).packed_bytes_per_block(), 4u);  // 30 bits
  EXPECT_THROW(find_format("mxint8", 0), std::invalid_argument);
  EXPECT_THROW(find_format("mxint8", kMaxBlockSize + 1), std::invalid_argument);
}

TEST(Registry, FormatLists) {
  EXPECT_EQ(parse_format_list("int").size(), 7u);
  EXPECT_EQ(parse_format_list("fp").size(), 5u);
  EXPECT_EQ(parse_format_list("all").size(), 12u);
  const auto l = parse_format_list("mxfp4,mxint8,mxfp5_e2m2");
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[2].name, "mxfp5_e2m2");
  EXPECT_THROW(parse_format_list("mxfp4,nope"), std::invalid_argument);
  EXPECT_THROW(parse_format_list(","), std::invalid_argument);
}
