// Internal to src/runtime/kernels/: the int8 MX GEMM (n >= 2 activation rows: prefill, batched
// decode). Weights stay in their packed MX bytes; a format whose every code is a small integer
// times one power of two (MXINT2-8, MXFP4 E2M1 x2, MXFP6 E2M3 x8, ...) multiplies those integers
// with int8 activations in exact int32 dot products (vpdpbusd), then scales each block once.
// The plan and the reasons: docs/prefill-plan.md; the numerics: docs/numerics.md.
#pragma once

#include <cstdint>
#include <string>

#include "gemv_internal.h"

namespace mfqat::runtime::detail {

// A format's codes as integers: value(c) = ints[c] * mul for every code c (mul a power of two),
// ints in [-128, 127], and off = -min(ints) with off + max(ints) <= 255, so that ints + off is an
// unsigned byte (vpdpbusd's unsigned operand). ok = false when no such table exists (a NaN/Inf
// code, or values wider than 8 bits after one power of two: MXFP6 E3M2, MXFP8) or the block
// size is not 32.
struct IntCodes {
  enum class Kind : std::uint8_t { Generic, Nibble, Byte };
  bool ok = false;
  Kind kind = Kind::Generic;  // Nibble: 4-bit codes; Byte: 8-bit codes equal to their integer (MXINT8)
  std::int8_t ints[256] = {};
  float mul = 1;
  int off = 0;
  // off + max(ints) <= 129: every vpmaddubsw pair stays within int16 (2 * 129 * 127 = 32766), so
  // the plain-AVX2 kernel is exact (MXFP4, MXINT2-7, MXFP6 E2M3; not MXINT8)
  bool fits_maddubs = false;
  static IntCodes make(const mx::Format& f);
};

// Activation rows quantized for the GEMM, per row j and block b of 32 columns (the row padded
// with zeros to whole blocks): q = round-half-even(x / s) with s = max|x| / 127 over the block,
// so |q| <= 127. A block holding a NaN or an Inf gets s = NaN and q = 0, which makes every output
// of that row NaN and leaves the other rows alone.
struct Q8Rows {
  std::int64_t n = 0, nb = 0;      // rows; blocks per row (q's row stride is nb * 32 bytes)
  AlignedVec<std::int8_t> q;       // [n, nb * 32]
  AlignedVec<float> scale;         // [n, nb]
  AlignedVec<std::int32_t> corr;   // [n, nb]: -off * sum(q) over the block (the unsigned weights' correction)
};
// Fills a (parallel over rows); off is IntCodes::off of the weights it will meet.
void quantize_rows(const float* x, std::int64_t n, std::int64_t cols, int off, Q8Rows& a);

// A k-panel of a 16-row micro-panel, packed for the SIMD kernels: per block, 8 vectors of 64
// bytes, vector g holding elements 4g..4g+3 of the 16 rows (dword lane r = row r) as unsigned
// bytes (integer + off), and the 16 rows' block scales times mul (0 for rows past the matrix).
constexpr int kPanelRows = 16;
constexpr std::int64_t kPanelBlocks = 16;  // 512 columns
struct alignas(64) Panel {
  std::uint8_t w[kPanelBlocks * 8 * 64];  // [block][group g][row r][4 bytes]
  float s[kPanelBlocks * kPanelRows];     // [block][row r]
};
// Panel block b <- block gb of rows [r0, r0 + rn) of w (rn <= 16): the scales, and the codes in
// portable code (4- and 8-bit codes from their bytes, other widths by unpack_codes_at; codes
// past the matrix's rows or columns are integer 0).
void pack_scales(const IntCodes& ic, const MxView& w, std::int64_t r0, int rn, std::int64_t gb, std::int64_t b, Panel& p);
void pack_codes(const IntCodes& ic, const MxView& w, std::int64_t r0, int rn, std::int64_t gb, std::int64_t b, Panel& p);

}  // namespace mfqat::runtime::detail

namespace mfqat::runtime {
// A matrix's micro-panels packed once (repack_q8), in the order the kernel reads them: for each
// 16-row panel p, for each k-panel kp (16 blocks, the last one nbk <= 16), the codes of its
// blocks as in Panel::w (block_bytes each), then their scales as in Panel::s (64 bytes each).
// 4-bit codes stay at 4 bits (nibble): per block 4 vectors of 64 bytes, vector h holding for row
// r (dword lane r) elements 8h..8h+3 in the low nibbles and 8h+4..8h+7 in the high ones, as
// codes the kernel looks up in lut; half the bytes, so a small batch streams the weights at
// the GEMV's rate. Each block takes block_bytes + 64 bytes wherever it lies, so (p, kp) starts
// at (p * nb + 16 kp) * (block_bytes + 64): no padding to whole k-panels.
struct Q8Panels {
  std::string format;  // the matrix's format name (block size 32)
  std::int64_t rows = 0, cols = 0, nb = 0, nkp = 0;
  bool nibble = false;
  std::int64_t block_bytes = 512;  // 256 when nibble
  std::uint8_t lut[16] = {};       // nibble: code -> its integer + off (the unsigned byte of Panel)
  detail::AlignedVec<std::uint8_t> bytes;
  std::int64_t at(std::int64_t p, std::int64_t kp) const { return (p * nb + kp * detail::kPanelBlocks) * (block_bytes + 64); }
};
}  // namespace mfqat::runtime

namespace mfqat::runtime::detail {

// Rows [r0, r1) of Y = X W^T (Y is [n, w.rows]). Every path computes, per output (j, r),
//   acc = 0; for b in block order: acc = fma(float(idot_b), (scale_w(r, b) * mul) * s(j, b), acc)
// with idot_b the exact integer dot of the block, so every path gives the same bits.
using GemmQ8Fn = void (*)(const IntCodes& ic, const MxView& w, const Q8Rows& a, float* y, std::int64_t r0, std::int64_t r1);
GemmQ8Fn scalar_gemm_q8();
GemmQ8Fn avx512_gemm_q8();  // nullptr when not compiled in
// the same with the 2/3/5/6/7-bit codes packed by vpmultishiftqb; nullptr without AVX512-VBMI
GemmQ8Fn avx512_gemm_q8_vbmi();
// Panels [p0, p1) (rows [16 p0, min(16 p1, rows))) from repacked panels: the avx512 kernel's
// tiles on pk's bytes, the same bits as avx512_gemm_q8.
using GemmQ8PanelsFn = void (*)(const Q8Panels& pk, const Q8Rows& a, float* y, std::int64_t p0, std::int64_t p1);
GemmQ8PanelsFn avx512_gemm_q8_panels();  // nullptr when not compiled in
// Fills panels [p0, p1) of pk from w with the avx512 kernel's packing (vbmi: its VBMI packer).
using RepackQ8Fn = void (*)(const IntCodes& ic, const MxView& w, Q8Panels& pk, std::int64_t p0, std::int64_t p1, bool vbmi);
RepackQ8Fn avx512_repack_q8();  // nullptr when not compiled in
GemmQ8Fn avx2_gemm_q8();

// The bf16 GEMM (gemm_bf16_avx512.cpp) for formats without integer codes: activation rows as
// bf16 pairs (dword k of a row = elements 2k, 2k + 1; nb blocks of 16 dwords, zero-padded), and
// which rows hold a NaN or an Inf (their outputs are set to NaN afterwards).
struct Bf16Rows {
  std::int64_t n = 0, nb = 0;
  AlignedVec<std::uint32_t> x;     // [n, nb * 16]
  std::vector<std::uint8_t> bad;   // [n]
};
using Bf16PrepareFn = void (*)(const float* x, std::int64_t n, std::int64_t cols, Bf16Rows& a);
using GemmBf16Fn = void (*)(const Decoder& d, const MxView& w, const Bf16Rows& a, float* y, std::int64_t r0, std::int64_t r1);
GemmBf16Fn avx512_gemm_bf16();       // nullptr without AVX512-BF16 (or not compiled in)
Bf16PrepareFn avx512_bf16_prepare();  // likewise    // plain AVX2 (vpmaddubsw), formats with fits_maddubs; nullptr when not compiled in

}  // namespace mfqat::runtime::detail
