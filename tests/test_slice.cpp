// Slice-and-Scale equals quantize(dequantize(anchor)) bit for bit, for every pair, every block,
// every instruction-set path, including random bytes as anchors (NaN codes, -128, any scale).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common.h"
#include "mfqat/convert/slice.h"
#include "mfqat/mx/codec.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/mx/parallel.h"

using namespace mfqat;
using namespace mfqat::mx;
using convert::slice;

namespace {

std::vector<std::pair<std::string, std::string>> pairs() {
  std::vector<std::pair<std::string, std::string>> p;
  for (int b = 2; b <= 7; ++b) p.push_back({"mxint8", "mxint" + std::to_string(b)});
  for (const char* src : {"mxfp8_e4m3", "mxfp8_e5m2"}) {
    for (const char* dst : {"mxfp6_e3m2", "mxfp6_e2m3", "mxfp4_e2m1", "mxfp5_e2m2", "mxfp7_e3m3", "mxfp7_e5m1",
                            "mxfp4_e3m0", "mxfp3_e1m1"}) {
      p.push_back({src, dst});
    }
  }
  p.push_back({"mxint6", "mxint3"});
  p.push_back({"mxfp6_e3m2", "mxfp4_e2m1"});
  p.push_back({"mxint8", "mxint8"});  // identity
  return p;
}

std::vector<Isa> isas() {
  if (!isa_supported(Isa::Avx2)) {
    static const bool said = std::printf("[  paths   ] no AVX2+FMA on this CPU: slice() runs its scalar path only\n") > 0;
    (void)said;
    return {Isa::Scalar};
  }
  return {Isa::Scalar, Isa::Avx2};
}

// The definition: dequantize, then quantize (round-to-nearest-even).
PackedMatrix reference(const PackedMatrix& a, const Format& dst) {
  const std::vector<float> v = dequantize(a, Isa::Scalar);
  return quantize(dst, v.data(), a.rows, a.cols, {}, Isa::Scalar);
}

void expect_exact(const PackedMatrix& a, const Format& dst, const std::string& what) {
  const PackedMatrix want = reference(a, dst);
  for (Isa isa : isas()) {
    SCOPED_TRACE(what + " " + a.format.name + " -> " + dst.name + " " + isa_name(isa));
    convert::SliceStats st;
    const PackedMatrix got = slice(a, dst, &st, isa);
    ASSERT_EQ(got.scales, want.scales);
    ASSERT_EQ(got.elements, want.elements);
    ASSERT_EQ(st.blocks, static_cast<std::int64_t>(a.scales.size()));
  }
}

PackedMatrix random_anchor(const Format& f, std::int64_t rows, std::int64_t cols, std::uint32_t seed) {
  std::mt19937 rng(seed);
  PackedMatrix m;
  m.format = f;
  m.rows = rows;
  m.cols = cols;
  m.elements.resize(rows * f.packed_row_bytes(cols));
  m.scales.resize(rows * f.blocks_per_row(cols));
  for (auto& e : m.elements) e = static_cast<std::uint8_t>(rng());
  // row padding bits must be zero in a well-formed tensor
  std::vector<std::uint8_t> codes(cols);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::uint8_t* row = m.elements.data() + r * f.packed_row_bytes(cols);
    unpack_codes(row, cols, f.bits, codes.data());
    pack_codes(codes.data(), cols, f.bits, row);
  }
  for (auto& s : m.scales) s = static_cast<std::uint8_t>(rng());
  return m;
}

}  // namespace

TEST(Slice, EqualsRequantizeOnQuantizedTensors) {
  for (const auto& [s, d] : pairs()) {
    for (int bs : {32, 16}) {
      const Format src = find_format(s, bs), dst = find_format(d, bs);
      for (int kind = 0; kind < 4; ++kind) {
        for (std::int64_t cols : {64, 77, 1000}) {
          auto x = random_tensor(3 * cols, static_cast<std::uint32_t>(kind * 31 + cols), kind);
          const PackedMatrix a = quantize(src, x.data(), 3, cols);
          expect_exact(a, dst, "kind " + std::to_string(kind) + " cols " + std::to_string(cols) + " bs " + std::to_string(bs));
        }
      }
    }
  }
}

TEST(Slice, EqualsRequantizeOnRandomBytes) {
  // Arbitrary codes and scales: NaN/Inf codes, MXINT -128, scales at 0, 254, 255, blocks whose
  // maximum is below the top binade: all must still match the definition.
  for (const auto& [s, d] : pairs()) {
    const Format src = find_format(s), dst = find_format(d);
    for (std::uint32_t seed = 0; seed < 4; ++seed) {
      expect_exact(random_anchor(src, 5, 200, seed), dst, "random bytes seed " + std::to_string(seed));
    }
  }
}

TEST(Slice, EveryScaleByte) {
  // 256 blocks, block k with scale byte k and random codes whose first element is the largest
  // finite code: covers the bounds of the table path (X' clamping, values past 2^128).
  for (const auto& [s, d] : pairs()) {
    const Format src = find_format(s), dst = find_format(d);
    PackedMatrix a = random_anchor(src, 256, 32, 9);
    std::vector<std::uint8_t> codes(32);
    std::mt19937 rng(5);
    for (int k = 0; k < 256; ++k) {
      a.scales[k] = static_cast<std::uint8_t>(k);
      for (auto& c : codes) c = static_cast<std::uint8_t>(rng() % (src.max_code + 1));  // finite magnitudes
      codes[0] = static_cast<std::uint8_t>(src.max_code - (k % 3));
      codes[1] = static_cast<std::uint8_t>(src.family == Family::Int ? (1u << src.bits) - 5 : (1u << (src.bits - 1)) | 3);
      pack_codes(codes.data(), 32, src.bits, a.elements.data() + k * src.packed_row_bytes(32));
    }
    expect_exact(a, dst, "every scale byte");
  }
}

TEST(Slice, FloorZeroAndHugeBlocks) {
  for (const auto& [s, d] : pairs()) {
    const Format src = find_format(s), dst = find_format(d);
    std::vector<float> x(32 * 6, 0.0f);
    for (int i = 32; i < 64; ++i) x[i] = 1e-39f * static_cast<float>(i - 40);        // at the 2^-127 floor
    for (int i = 64; i < 96; ++i) x[i] = -0.0f;                                       // all negative zeros
    for (int i = 96; i < 128; ++i) x[i] = 3e38f * std::sin(static_cast<float>(i));    // near FLT_MAX
    for (int i = 128; i < 160; ++i) x[i] = std::ldexp(1.0f, -120) * static_cast<float>(i - 140);  // X' would clamp
    x[170] = NAN;
    const PackedMatrix a = quantize(src, x.data(), 1, 192);
    expect_exact(a, dst, "special blocks");
  }
}

TEST(Slice, CanonicalBlocksUseTheTable) {
  const Format src = find_format("mxfp8_e4m3"), dst = find_format("mxfp4");
  auto x = random_tensor(64 * 32, 1, 0);
  for (int i = 0; i < 32; ++i) x[i] = 1e-40f;  // one floor block
  const PackedMatrix a = quantize(src, x.data(), 64, 32);
  for (Isa isa : isas()) {
    convert::SliceStats st;
    slice(a, dst, &st, isa);
    EXPECT_EQ(st.blocks, 64);
    EXPECT_EQ(st.requant_blocks, 1) << isa_name(isa);
    EXPECT_EQ(st.table_blocks, 63) << isa_name(isa);
  }
  // Canonical blocks: the scale byte moves by emax_src - emax_dst = 8 - 2.
  const PackedMatrix b = slice(a, dst);
  for (int r = 1; r < 64; ++r) EXPECT_EQ(b.scales[r], a.scales[r] + 6);
}

TEST(Slice, NoWritesPastTheOutput) {
  // The SIMD packer writes scratch bytes past a block; none may land past the tensor (or, with
  // rows split over threads, past a run). Canaries after both outputs catch it without ASan.
  for (const auto& [s, d] : pairs()) {
    const Format src = find_format(s), dst = find_format(d);
    for (std::int64_t cols : {32, 64, 96, 128, 160, 200}) {
      auto x = random_tensor(2 * cols, static_cast<std::uint32_t>(cols), 0);
      const PackedMatrix a = quantize(src, x.data(), 2, cols);
      for (Isa isa : isas()) {
        std::vector<std::uint8_t> el(2 * dst.packed_row_bytes(cols) + 64, 0xA5), sc(2 * dst.blocks_per_row(cols) + 8, 0xA5);
        convert::slice(src, a.elements.data(), a.scales.data(), 2, cols, dst, el.data(), sc.data(), nullptr, isa);
        for (std::size_t i = 2 * dst.packed_row_bytes(cols); i < el.size(); ++i) ASSERT_EQ(el[i], 0xA5) << s << "->" << d << " cols " << cols;
        for (std::size_t i = 2 * dst.blocks_per_row(cols); i < sc.size(); ++i) ASSERT_EQ(sc[i], 0xA5);
      }
    }
  }
}

TEST(Slice, Refusals) {
  const Format i8 = find_format("mxint8"), i4 = find_format("mxint4"), f8 = find_format("mxfp8"), f4 = find_format("mxfp4");
  EXPECT_NE(convert::slice_refusal(i4, i8).find("not lower"), std::string::npos);
  EXPECT_NE(convert::slice_refusal(i8, f4).find("different families"), std::string::npos);
  EXPECT_NE(convert::slice_refusal(f8, find_format("mxfp8_e5m2")).find("not lower"), std::string::npos);
  EXPECT_NE(convert::slice_refusal(i8, find_format("mxint4", 16)).find("block size"), std::string::npos);
  EXPECT_EQ(convert::slice_refusal(i8, i4), "");
  EXPECT_EQ(convert::slice_refusal(f8, f4), "");
  std::vector<float> x(64, 1.0f);
  EXPECT_THROW(slice(quantize(i4, x.data(), 2, 32), i8), std::invalid_argument);
}

namespace {

// An independent dequantize -> requantize, element by element through the public codec API
// (decode_element, e8m0_to_float, shared_scale, encode_element, pack_codes): none of the block
// drivers or kernels that slice(), via_float() and reference() above share. Round-to-nearest-even.
PackedMatrix elementwise_requantize(const PackedMatrix& a, const Format& dst) {
  const Format& src = a.format;
  PackedMatrix out;
  out.format = dst;
  out.rows = a.rows;
  out.cols = a.cols;
  out.elements.assign(static_cast<std::size_t>(a.rows) * dst.packed_row_bytes(a.cols), 0);
  std::vector<std::uint8_t> in_codes(static_cast<std::size_t>(a.cols)), out_codes(in_codes.size());
  std::vector<float> v(in_codes.size());
  const std::int64_t nb = src.blocks_per_row(a.cols);
  for (std::int64_t r = 0; r < a.rows; ++r) {
    unpack_codes(a.elements.data() + r * src.packed_row_bytes(a.cols), a.cols, src.bits, in_codes.data());
    for (std::int64_t c = 0; c < a.cols; ++c) {  // dequantize: code value x 2^(scale - 127)
      v[c] = decode_element(src, in_codes[c]) * e8m0_to_float(a.scales[r * nb + c / src.block_size]);
    }
    for (std::int64_t c0 = 0; c0 < a.cols; c0 += dst.block_size) {  // requantize block by block
      const std::int64_t len = std::min<std::int64_t>(dst.block_size, a.cols - c0);
      float amax = 0;
      for (std::int64_t c = c0; c < c0 + len; ++c) amax = std::max(amax, std::fabs(v[c]));
      const std::uint8_t s = shared_scale(bits_of(amax), dst.emax);
      out.scales.push_back(s);
      for (std::int64_t c = c0; c < c0 + len; ++c) {
        out_codes[c] = static_cast<std::uint8_t>(encode_element(dst, std::ldexp(v[c], 127 - static_cast<int>(s)), Rounding::NearestEven));
      }
    }
    pack_codes(out_codes.data(), a.cols, dst.bits, out.elements.data() + r * dst.packed_row_bytes(a.cols));
  }
  return out;
}

}  // namespace

TEST(Slice, AndViaFloatEqualAnElementwiseDequantizeRequantize) {
  // slice() on every path and via_float() (which may also cross families) against the
  // element-wise definition, on quantized tensors of every kind, a partial last block, two
  // block sizes.
  std::vector<std::pair<std::string, std::string>> ps = pairs();
  ps.push_back({"mxint8", "mxfp4"});  // via_float only: slice() refuses across families
  ps.push_back({"mxfp8_e4m3", "mxint4"});
  int sliced = 0;
  for (const auto& [s, d] : ps) {
    for (int bs : {32, 16}) {
      const Format src = find_format(s, bs), dst = find_format(d, bs);
      for (int kind = 0; kind < 4; ++kind) {
        SCOPED_TRACE(s + " -> " + d + " bs " + std::to_string(bs) + " kind " + std::to_string(kind));
        auto x = random_tensor(4 * 77, static_cast<std::uint32_t>(kind + 2), kind);
        const PackedMatrix a = quantize(src, x.data(), 4, 77);
        const PackedMatrix want = elementwise_requantize(a, dst);
        const PackedMatrix v = convert::via_float(a, dst);
        ASSERT_EQ(v.scales, want.scales);
        ASSERT_EQ(v.elements, want.elements);
        if (!convert::slice_refusal(src, dst).empty()) continue;
        for (Isa isa : isas()) {
          const PackedMatrix got = slice(a, dst, nullptr, isa);
          ASSERT_EQ(got.scales, want.scales) << isa_name(isa);
          ASSERT_EQ(got.elements, want.elements) << isa_name(isa);
        }
        ++sliced;
      }
    }
  }
  EXPECT_EQ(sliced, static_cast<int>(pairs().size()) * 2 * 4);  // every same-family pair was sliced
}

TEST(Slice, ThreadCountDoesNotMatter) {
  auto x = random_tensor(9 * 20000, 4, 2);
  const PackedMatrix a = quantize(find_format("mxfp8_e5m2"), x.data(), 9, 20000);
  mfqat::set_num_threads(1);
  const PackedMatrix one = slice(a, find_format("mxfp6_e2m3"));
  mfqat::set_num_threads(4);
  const PackedMatrix four = slice(a, find_format("mxfp6_e2m3"));
  mfqat::set_num_threads(2);
  EXPECT_EQ(one.elements, four.elements);
  EXPECT_EQ(one.scales, four.scales);
}
