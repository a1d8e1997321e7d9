// GGUF: half conversions, the exact MX -> ggml block relayout (against byte layouts written out
// by hand from ggml-common.h / ggml-quants.c), the writer, and the validating reader.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "common.h"
#include "mfqat/export/ggml_blocks.h"
#include "mfqat/export/gguf.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/mx/quantize.h"

using namespace mfqat;
using namespace mfqat::gguf;

namespace {

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("mfqat_gguf_" + std::to_string(::getpid()) + "_" + name)).string();
}

// One MX block of 32 elements from codes and an E8M0 byte.
mx::PackedMatrix block(const mx::Format& f, const std::vector<std::uint8_t>& codes, std::uint8_t e) {
  mx::PackedMatrix m{f, 1, 32, std::vector<std::uint8_t>(f.packed_row_bytes(32)), {e}};
  mx::pack_codes(codes.data(), 32, f.bits, m.elements.data());
  return m;
}

}  // namespace

TEST(Half, EveryHalfRoundTripsAndRoundingIsNearestEven) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f))));
      continue;
    }
    ASSERT_EQ(float_to_half(f), h) << h;
  }
  EXPECT_EQ(half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);                          // rounds to Inf
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and the smallest subnormal -> 0
  EXPECT_EQ(float_to_half(std::ldexp(3.0f, -26)), 0x0001);
  for (int e = -30; e <= 20; ++e) {
    const auto h = half_pow2(e);
    EXPECT_EQ(h.has_value(), e >= -24 && e <= 15) << e;
    if (h) {
      EXPECT_EQ(half_to_float(*h), std::ldexp(1.0f, e)) << e;
    }
  }
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie -> even
  EXPECT_EQ(bf16_to_float(0x3f81), 1.0f + std::ldexp(1.0f, -7));
}

TEST(GgmlBlocks, LayoutsMatchGgmlByteForByte) {
  // MXFP4: {e, qs[16]}, qs[j] = code j (low nibble) | code j+16 (high nibble).
  std::vector<std::uint8_t> c(32);
  for (int i = 0; i < 32; ++i) c[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>((i * 7 + 3) & 15);
  auto m = block(mx::find_format("mxfp4_e2m1"), c, 120);
  auto b = from_mx(mx::view(m), GgmlType::MXFP4);
  ASSERT_EQ(b.size(), 17u);
  EXPECT_EQ(b[0], 120);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[static_cast<std::size_t>(1 + j)], c[static_cast<std::size_t>(j)] | (c[static_cast<std::size_t>(j + 16)] << 4)) << j;

  // MXINT4 -> Q4_0: d = 2^(E-127-2) as a half, qs nibbles = q + 8.
  for (int i = 0; i < 32; ++i) c[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i % 15 + 1);  // two's complement 1..15 -> 1..7, -8..-1
  m = block(mx::find_format("mxint4"), c, 130);
  b = from_mx(mx::view(m), GgmlType::Q4_0);
  ASSERT_EQ(b.size(), 18u);
  EXPECT_EQ(b[0] | (b[1] << 8), *half_pow2(130 - 127 - 2));
  auto q4 = [&](int i) { const int v = c[static_cast<std::size_t>(i)]; return (v >= 8 ? v - 16 : v) + 8; };
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[static_cast<std::size_t>(2 + j)], q4(j) | (q4(j + 16) << 4)) << j;

  // MXINT5 -> Q5_0: {d, qh (u32 LE: bit j = fifth bit of element j), qs (low nibbles as Q4_0)}, n = q + 16.
  for (int i = 0; i < 32; ++i) c[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>((i * 11 + 5) % 31 + 1);
  m = block(mx::find_format("mxint5"), c, 127);
  b = from_mx(mx::view(m), GgmlType::Q5_0);
  ASSERT_EQ(b.size(), 22u);
  EXPECT_EQ(b[0] | (b[1] << 8), *half_pow2(-3));
  auto n5 = [&](int i) { const int v = c[static_cast<std::size_t>(i)]; return static_cast<std::uint32_t>((v >= 16 ? v - 32 : v) + 16); };
  std::uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= (n5(j) >> 4) << j;
  EXPECT_EQ(b[2] | (b[3] << 8) | (b[4] << 16) | (static_cast<std::uint32_t>(b[5]) << 24), qh);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[static_cast<std::size_t>(6 + j)], (n5(j) & 15) | ((n5(j + 16) & 15) << 4)) << j;

  // MXINT8 -> Q8_0: {d, int8 qs[32]} with the codes themselves.
  for (int i = 0; i < 32; ++i) c[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i * 37 + 1);
  m = block(mx::find_format("mxint8"), c, 125);
  b = from_mx(mx::view(m), GgmlType::Q8_0);
  ASSERT_EQ(b.size(), 34u);
  EXPECT_EQ(b[0] | (b[1] << 8), *half_pow2(125 - 133));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b[static_cast<std::size_t>(2 + j)], c[static_cast<std::size_t>(j)]);
}

TEST(GgmlBlocks, EveryFormatRoundTripsThroughItsDefaultTypeAndF32) {
  const mx::Format* last = nullptr;
  for (const mx::Format& f : all_test_formats(32)) {
    // weights of several scales, as a layer has; cols a multiple of 32
    const std::int64_t rows = 7, cols = 96;
    std::vector<float> x = random_tensor(static_cast<std::size_t>(rows * cols), 5, 0);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] *= std::ldexp(1.0f, static_cast<int>(i / 32 % 9) - 6);
    const mx::PackedMatrix m = mx::quantize(f, x.data(), rows, cols);
    const std::vector<float> want = mx::dequantize(m);
    std::vector<GgmlType> types = {GgmlType::F32};
    if (auto t = default_type(f)) types.push_back(*t);
    for (GgmlType t : types) {
      const auto bytes = from_mx(mx::view(m), t);
      ASSERT_EQ(bytes.size(), static_cast<std::size_t>(rows * cols / info(t).block) * info(t).bytes);
      std::vector<float> got(want.size());
      to_f32(t, bytes, rows * cols, got.data());
      for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << f.name << " " << info(t).name << " " << i;
      EXPECT_TRUE(same_bits(to_mx(t, bytes, rows, cols, f), m, true)) << f.name << " " << info(t).name;
    }
    last = &f;
  }
  ASSERT_NE(last, nullptr);
  // the table of default types
  EXPECT_EQ(default_type(mx::find_format("mxfp4")), GgmlType::MXFP4);
  EXPECT_EQ(default_type(mx::find_format("mxint8")), GgmlType::Q8_0);
  EXPECT_EQ(default_type(mx::find_format("mxint7")), GgmlType::Q8_0);
  EXPECT_EQ(default_type(mx::find_format("mxint6")), GgmlType::Q8_0);
  EXPECT_EQ(default_type(mx::find_format("mxint5")), GgmlType::Q5_0);
  EXPECT_EQ(default_type(mx::find_format("mxint3")), GgmlType::Q4_0);
  EXPECT_EQ(default_type(mx::find_format("mxfp6_e2m3")), GgmlType::Q8_0);
  EXPECT_FALSE(default_type(mx::find_format("mxfp6_e3m2")));
  EXPECT_FALSE(default_type(mx::find_format("mxfp8_e4m3")));
  EXPECT_FALSE(default_type(mx::find_format("mxint8", 64)));
}

TEST(GgmlBlocks, RowsSplitOverMoreThreadsThanCoresGiveTheSameBytesAndTheSameRefusal) {
  // from_mx runs over rows in parallel (grain 8): 203 rows are many parts at 3, 8 and 16 threads.
  struct Restore {
    int n = num_threads();
    ~Restore() { set_num_threads(n); }
  } restore;
  const std::int64_t rows = 203, cols = 64;
  std::vector<float> x = random_tensor(static_cast<std::size_t>(rows * cols), 9, 0);
  for (const char* name : {"mxfp4", "mxint8", "mxint5", "mxint4"}) {
    const mx::Format f = mx::find_format(name);
    const mx::PackedMatrix m = mx::quantize(f, x.data(), rows, cols);
    set_num_threads(1);
    const auto one = from_mx(mx::view(m), *default_type(f));
    for (int t : {3, 8, 16}) {
      set_num_threads(t);
      EXPECT_EQ(from_mx(mx::view(m), *default_type(f)), one) << name << " at " << t << " threads";
    }
  }
  // a block without an exact Q8_0 image in a late row: refused whatever the split
  mx::PackedMatrix m = mx::quantize(mx::find_format("mxint8"), x.data(), rows, cols);
  const std::size_t rb = m.format.packed_row_bytes(cols);
  m.scales[static_cast<std::size_t>(190 * 2)] = 90;  // row 190, block 0: d = 2^-43
  m.elements[190 * rb] = 1;                          // an odd integer: no shift helps
  for (int t : {1, 3, 8, 16}) {
    set_num_threads(t);
    EXPECT_NE(error_of([&] { from_mx(mx::view(m), GgmlType::Q8_0); }).find("row 190, block 0"), std::string::npos) << t;
  }
}

TEST(GgmlBlocks, ScalesOutsideTheHalfRangeAreRescaledWhenExactAndRefusedOtherwise) {
  const mx::Format f = mx::find_format("mxint8");
  std::vector<std::uint8_t> c(32, 0);
  // E = 100: d = 2^-33 is no half; codes that are multiples of 2^9... do not fit int8, but
  // multiples of 2^k with a small k let d = 2^(-33+k) ... still below 2^-24 unless k >= 9: refused.
  c[0] = 64;  // q = 64 = 2^6: d = 2^(-33+6) = 2^-27, still too small: refused
  auto m = block(f, c, 100);
  EXPECT_NE(error_of([&] { from_mx(mx::view(m), GgmlType::Q8_0); }).find("row 0, block 0: scale 2^-27 has no q8_0 image"), std::string::npos)
      << error_of([&] { from_mx(mx::view(m), GgmlType::Q8_0); });
  m = block(f, c, 108);  // d = 2^-25 with q = 64 -> 2^-24 with q = 32: exact
  auto b = from_mx(mx::view(m), GgmlType::Q8_0);
  EXPECT_EQ(b[0] | (b[1] << 8), *half_pow2(-24));
  EXPECT_EQ(static_cast<std::int8_t>(b[2]), 32);
  std::vector<float> v(32);
  to_f32(GgmlType::Q8_0, b, 32, v.data());
  EXPECT_EQ(v[0], mx::dequantize(m)[0]);
  c[0] = 65;  // odd: no shift
  m = block(f, c, 108);
  EXPECT_NE(error_of([&] { from_mx(mx::view(m), GgmlType::Q8_0); }).find("no q8_0 image"), std::string::npos);
  // large E: q = 1 at E = 150 -> d = 2^17 (no half) -> q = 4, d = 2^15: exact
  c[0] = 1;
  m = block(f, c, 150);
  b = from_mx(mx::view(m), GgmlType::Q8_0);
  EXPECT_EQ(b[0] | (b[1] << 8), *half_pow2(15));
  EXPECT_EQ(static_cast<std::int8_t>(b[2]), 4);
  // an all-zero block: d = 0 whatever E says
  c.assign(32, 0);
  m = block(f, c, 3);
  b = from_mx(mx::view(m), GgmlType::Q8_0);
  EXPECT_EQ(b[0] | (b[1] << 8), 0);
  // NaN scale
  m = block(f, c, 255);
  EXPECT_NE(error_of([&] { from_mx(mx::view(m), GgmlType::Q8_0); }).find("NaN scale"), std::string::npos);
  EXPECT_NE(error_of([&] { from_mx(mx::view(m), GgmlType::MXFP4); }).find("E2M1"), std::string::npos);
  // types that cannot hold a format at all
  EXPECT_NE(type_refusal(mx::find_format("mxint8"), GgmlType::Q4_0).find("8-bit integers"), std::string::npos);
  EXPECT_NE(type_refusal(mx::find_format("mxint5"), GgmlType::Q4_0), "");
  EXPECT_EQ(type_refusal(mx::find_format("mxint4"), GgmlType::Q5_0), "");
  EXPECT_EQ(type_refusal(mx::find_format("mxfp4"), GgmlType::Q8_0), "");  // E2M1 doubled is an integer grid
  // F16: exact values only (E4M3's 448 * 2^10 is no half)
  const mx::Format e4 = mx::find_format("mxfp8_e4m3");
  c.assign(32, 0x7e);  // 448
  m = block(e4, c, 137);
  EXPECT_NE(error_of([&] { from_mx(mx::view(m), GgmlType::F16); }).find("is not a half-precision number"), std::string::npos);
}

TEST(Gguf, WriterAndReaderRoundTripMetadataAndTensors) {
  const std::string p = tmp_path("rt.gguf");
  {
    Writer w(p);
    w.set("general.architecture", Value::str("llama"));
    w.set("a.u32", Value::u32(7));
    w.set("a.i32", Value::i32(-7));
    w.set("a.u64", Value::u64(1ull << 40));
    w.set("a.f32", Value::f32(0.5f));
    w.set("a.bool", Value::boolean(true));
    w.set("a.strings", Value::strings({"x", "", "ĠHello"}));
    w.set("a.i32s", Value::i32s({1, -2, 3}));
    w.set("a.f32s", Value::f32s({1.5f}));
    w.declare("t.f32", GgmlType::F32, {3, 2});
    w.declare("t.q8", GgmlType::Q8_0, {64});
    const float v[6] = {1, 2, 3, 4, 5, 6};
    w.write("t.f32", {reinterpret_cast<const std::uint8_t*>(v), sizeof v});
    std::vector<std::uint8_t> q(68, 9);
    w.write("t.q8", q);
    w.commit();
  }
  const File f = File::open(p);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.metadata().size(), 9u);
  EXPECT_EQ(f.get("general.architecture", ValueType::String).s, "llama");
  EXPECT_EQ(f.get("a.u32", ValueType::U32).u, 7u);
  EXPECT_EQ(f.find_value("a.i32")->i, -7);
  EXPECT_EQ(f.find_value("a.u64")->u, 1ull << 40);
  EXPECT_EQ(f.find_value("a.f32")->f, 0.5);
  EXPECT_EQ(f.find_value("a.bool")->i, 1);
  EXPECT_EQ(f.find_value("a.strings")->arr.at(2).s, "ĠHello");
  EXPECT_EQ(f.find_value("a.i32s")->arr.at(1).i, -2);
  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorInfo* t = f.find("t.q8");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bytes, 68u);
  EXPECT_EQ(t->offset % 32, 0u);
  EXPECT_EQ(t->offset, 32u);  // after 24 bytes of F32, padded to 32
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.data(*t)[0], 9);
  const auto d = f.data(*f.find("t.f32"));
  float back[6];
  std::memcpy(back, d.data(), 24);
  EXPECT_EQ(back[5], 6.0f);
  std::filesystem::remove(p);

  // nothing left without commit, or on a wrong write
  {
    Writer w(p);
    w.declare("a", GgmlType::F32, {1});
    EXPECT_THROW(w.write("b", std::vector<std::uint8_t>(4)), std::logic_error);
  }
  EXPECT_FALSE(std::filesystem::exists(p));
  EXPECT_THROW(Writer(p).declare("x", GgmlType::Q8_0, {33}), std::invalid_argument);
}

TEST(Gguf, ReaderRefusesBadFilesWithOneLine) {
  const std::string p = tmp_path("good.gguf");
  {
    Writer w(p);
    w.set("general.architecture", Value::str("llama"));
    w.set("k.arr", Value::i32s({1, 2, 3}));
    w.declare("t", GgmlType::Q4_0, {64, 2});
    w.write("t", std::vector<std::uint8_t>(72, 1));
    w.commit();
  }
  const std::vector<std::uint8_t> good = ckpt::read_file(p);
  std::filesystem::remove(p);
  (void)File::from_bytes(good, "ok.gguf");
  auto err = [](std::vector<std::uint8_t> b) {
    try {
      File::from_bytes(std::move(b), "bad.gguf");
    } catch (const std::runtime_error& e) {
      const std::string w = e.what();
      EXPECT_EQ(w.rfind("bad.gguf: ", 0), 0u) << w;
      EXPECT_EQ(w.find('\n'), std::string::npos) << w;
      return w;
    }
    return std::string("accepted");
  };
  // every truncation is refused (the data section ends the file)
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_NE(err({good.begin(), good.begin() + static_cast<long>(n)}), "accepted") << n;
  auto b = good;
  b[0] = 'X';
  EXPECT_NE(err(b).find("no \"GGUF\" magic"), std::string::npos);
  b = good;
  b[4] = 1;
  EXPECT_NE(err(b).find("version 1 is not supported"), std::string::npos);
  b = good;
  b[15] = 0x7f;  // tensor count
  EXPECT_NE(err(b).find("tensor count"), std::string::npos);
  b = good;
  b[23] = 0x7f;  // metadata count
  EXPECT_NE(err(b).find("metadata count"), std::string::npos);
  // find the tensor info's type (Q4_0 = 2) and offset: the last 12 bytes before the padding
  const File f = File::from_bytes(good, "x");
  std::size_t info_end = 0;
  for (std::size_t i = 0; i + 1 < good.size(); ++i)
    if (good[i] == 't' && good[i - 8] == 1 && i + 1 + 4 + 16 + 4 + 8 <= f.data_offset()) info_end = i + 1 + 4 + 16 + 4 + 8;
  ASSERT_GT(info_end, 0u);
  b = good;
  b[info_end - 12] = 99;  // type
  EXPECT_NE(err(b).find("ggml type 99 is not known"), std::string::npos);
  b = good;
  b[info_end - 8] = 4;  // offset 4: not aligned
  EXPECT_NE(err(b).find("not a multiple of the alignment"), std::string::npos);
  b = good;
  b[info_end - 7] = 1;  // offset 256: past the end
  EXPECT_NE(err(b).find("runs past the end"), std::string::npos);
  b = good;
  b[info_end - 12 - 16] = 63;  // ne0 = 63: not whole Q4_0 blocks
  EXPECT_NE(err(b).find("not whole q4_0 blocks"), std::string::npos);
  // a nested array: rewrite k.arr's element type (I32 = 5) to ARRAY (9)
  b = good;
  for (std::size_t i = 0; i + 5 < good.size(); ++i)
    if (std::memcmp(&good[i], "k.arr", 5) == 0) {
      b[i + 5 + 4] = 9;
      break;
    }
  EXPECT_NE(err(b).find("nested arrays"), std::string::npos);
}
